import BlobCore
import Foundation
import Testing

@Suite("Request tokens")
struct RequestSignerTests {
    let signer = try! RequestSigner(secret: Array("0123456789abcdef0123456789abcdef".utf8))
    let now: Int64 = 1_800_000_000

    @Test("a token verifies for exactly the method, path, role and time it was made for")
    func roundTrip() throws {
        let token = signer.token(
            role: .client, method: "PUT", pathAndQuery: "/v1/chunks/ab?replicas=x:1", expiry: now + 60)
        #expect(
            try signer.verify(
                header: token, method: "PUT", pathAndQuery: "/v1/chunks/ab?replicas=x:1",
                now: now, allowed: [.client]) == .client)
        #expect(throws: AuthError.badSignature) {
            try signer.verify(
                header: token, method: "GET", pathAndQuery: "/v1/chunks/ab?replicas=x:1", now: now, allowed: [.client])
        }
        #expect(throws: AuthError.badSignature) {
            try signer.verify(
                header: token, method: "PUT", pathAndQuery: "/v1/chunks/ab?replicas=y:1", now: now, allowed: [.client])
        }
        #expect(throws: AuthError.expired) {
            try signer.verify(
                header: token, method: "PUT", pathAndQuery: "/v1/chunks/ab?replicas=x:1", now: now + 61,
                allowed: [.client])
        }
        #expect(throws: AuthError.roleNotAllowed(.client)) {
            try signer.verify(
                header: token, method: "PUT", pathAndQuery: "/v1/chunks/ab?replicas=x:1", now: now, allowed: [.master])
        }
    }

    @Test("a changed role in the token text breaks its signature; far-future expiry is refused")
    func tampering() throws {
        let token = signer.token(role: .client, method: "DELETE", pathAndQuery: "/v1/chunks/ab", expiry: now + 60)
        let promoted = token.replacingOccurrences(of: ":client:", with: ":master:")
        #expect(throws: AuthError.badSignature) {
            try signer.verify(
                header: promoted, method: "DELETE", pathAndQuery: "/v1/chunks/ab", now: now, allowed: [.master])
        }
        let late = signer.token(
            role: .client, method: "GET", pathAndQuery: "/", expiry: now + RequestSigner.maxLifetimeSeconds + 1)
        #expect(throws: AuthError.tooFarInFuture) {
            try signer.verify(header: late, method: "GET", pathAndQuery: "/", now: now, allowed: [.client])
        }
    }

    @Test("missing and malformed headers get their own errors")
    func malformed() {
        #expect(throws: AuthError.missingToken) {
            try signer.verify(header: nil, method: "GET", pathAndQuery: "/", now: now, allowed: [.client])
        }
        for header in [
            "Bearer x", "BlobToken v2:client:1:aa", "BlobToken v1:root:1:" + String(repeating: "a", count: 64),
            "BlobToken v1:client:soon:" + String(repeating: "a", count: 64), "BlobToken v1:client:1:abc",
        ] {
            #expect(throws: AuthError.malformedToken) {
                try signer.verify(header: header, method: "GET", pathAndQuery: "/", now: now, allowed: [.client])
            }
        }
        #expect(throws: AuthError.self) { try RequestSigner(secret: Array("short".utf8)) }
    }

    /// Found by Scripts/fuzz.sh FuzzRequestToken: Int64 read "01800000100" and "+1800000100" as
    /// the signed expiry, so one token had several spellings. It has one now.
    @Test("an expiry written with a leading zero or a sign is malformed, though it reads as the signed number")
    func expirySpelling() throws {
        let token = signer.token(role: .client, method: "GET", pathAndQuery: "/v1/ring", expiry: now + 60)
        #expect(
            try signer.verify(header: token, method: "GET", pathAndQuery: "/v1/ring", now: now, allowed: [.client])
                == .client)
        let expiry = "\(now + 60)"
        for spelling in ["0" + expiry, "+" + expiry, "00" + expiry] {
            let respelled = token.replacingOccurrences(of: ":\(expiry):", with: ":\(spelling):")
            #expect(throws: AuthError.malformedToken) {
                try signer.verify(
                    header: respelled, method: "GET", pathAndQuery: "/v1/ring", now: now, allowed: [.client])
            }
        }
    }

    @Test("secret files are read without surrounding whitespace")
    func secretFile() {
        #expect(RequestSigner.secret(fromFileText: "  abc\n") == Array("abc".utf8))
        #expect(RequestSigner.secret(fromFileText: "\n\n").isEmpty)
    }
}
