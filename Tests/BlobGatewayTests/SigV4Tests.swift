import BlobCore
@testable import BlobGateway
import BlobS3Wire
import Foundation
import Testing

/// Signatures against AWS's own published examples (S3 API reference, "Signature Calculations
/// for the Authorization Header"), so the signing code is right, not merely self-consistent.
@Suite("SigV4 and aws-chunked against AWS's published examples")
struct SigV4Tests {
    static let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    /// 2013-05-24T00:00:00Z, the examples' x-amz-date.
    static let signedAt = Date(timeIntervalSince1970: 1_369_353_600)

    static func getHeaders(signature: String, range: String = "bytes=0-9") -> [String: String] {
        [
            "host": "examplebucket.s3.amazonaws.com", "range": range,
            "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "x-amz-date": "20130524T000000Z",
            "authorization": "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
                + "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=\(signature)",
        ]
    }

    static func verify(_ headers: [String: String], now: Date = signedAt) async throws -> SigV4.Verified {
        try await SigV4.verifyHeader(
            method: "GET", rawPath: "/test.txt", rawQuery: "", headers: headers,
            secret: { $0 == "AKIAIOSFODNN7EXAMPLE" ? secret : nil }, now: now)
    }

    static func code(_ body: () async throws -> Void) async -> String? {
        do {
            try await body()
            return nil
        } catch let error as S3Error {
            return error.code
        } catch {
            return "\(error)"
        }
    }

    @Test("the GET Object example verifies; a changed signature, header, clock or key does not")
    func getObjectExample() async throws {
        let good = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        let verified = try await Self.verify(Self.getHeaders(signature: good))
        #expect(
            verified.accessKeyID == "AKIAIOSFODNN7EXAMPLE" && verified.scope == "20130524/us-east-1/s3/aws4_request")
        let flipped = "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb40"
        #expect(
            await Self.code { _ = try await Self.verify(Self.getHeaders(signature: flipped)) }
                == "SignatureDoesNotMatch")
        #expect(
            await Self.code { _ = try await Self.verify(Self.getHeaders(signature: good, range: "bytes=0-99")) }
                == "SignatureDoesNotMatch")
        #expect(
            await Self.code {
                _ = try await Self.verify(Self.getHeaders(signature: good), now: Self.signedAt + 16 * 60)
            }
                == "RequestTimeTooSkewed")
        var unknown = Self.getHeaders(signature: good)
        unknown["authorization"] = unknown["authorization"]!.replacingOccurrences(
            of: "AKIAIOSFODNN7EXAMPLE", with: "AKIAOTHER")
        #expect(await Self.code { _ = try await Self.verify(unknown) } == "InvalidAccessKeyId")
    }

    static func chunkedBody(_ signatures: [String], tamper: Bool = false) -> [UInt8] {
        var body: [UInt8] = []
        for (size, signature) in zip([65_536, 1024, 0], signatures) {
            body += Array("\(String(size, radix: 16));chunk-signature=\(signature)\r\n".utf8)
            var data = [UInt8](repeating: UInt8(ascii: "a"), count: size)
            if tamper && size == 1024 { data[0] = UInt8(ascii: "b") }
            body += data + Array("\r\n".utf8)
        }
        return body
    }

    static let chunkSignatures = [
        "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
        "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
        "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
    ]

    /// Feeds the body in uneven pieces, as a socket delivers it; returns the decoded bytes.
    static func decode(_ body: [UInt8]) throws -> (bytes: Int, done: Bool) {
        let credential = try SigV4.Credential("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request")
        var decoder = AwsChunkedDecoder(
            seedSignature: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9",
            signing: (SigV4.signingKey(secret: secret, credential: credential), "20130524T000000Z", credential.scope))
        var decoded: [UInt8] = []
        var offset = 0
        var piece = 1
        while offset < body.count {
            let end = min(body.count, offset + piece)
            try body[offset..<end].withUnsafeBytes { raw in
                try decoder.feed(raw) { decoded += Array($0) }
            }
            offset = end
            piece = piece * 3 + 7
        }
        #expect(decoded.allSatisfy { $0 == UInt8(ascii: "a") })
        return (decoded.count, decoder.isDone)
    }

    @Test("the chunked-upload example decodes to its 66,560 bytes; a changed byte or signature is refused")
    func chunkedUploadExample() throws {
        let good = try Self.decode(Self.chunkedBody(Self.chunkSignatures))
        #expect(good.bytes == 66_560 && good.done)
        #expect(throws: S3Error.self) { _ = try Self.decode(Self.chunkedBody(Self.chunkSignatures, tamper: true)) }
        var wrong = Self.chunkSignatures
        wrong[2] = String(wrong[2].dropLast()) + "0"
        #expect(throws: S3Error.self) { _ = try Self.decode(Self.chunkedBody(wrong)) }
        // Cut before the final chunk: never done, so the gateway refuses the upload.
        let truncated = Self.chunkedBody(Self.chunkSignatures)
        let partial = try Self.decode(Array(truncated.prefix(65_536 + 100)))
        #expect(!partial.done)
    }
}

@Suite("lifecycle configuration documents")
struct LifecycleDocumentTests {
    @Test(
        "rules with a bare or filtered prefix, expiration days and upload aborts are read; other elements are refused"
    )
    func parse() throws {
        let document = """
            <LifecycleConfiguration><Rule><ID>logs</ID><Filter><Prefix>logs/</Prefix></Filter><Status>Enabled</Status>\
            <Expiration><Days>30</Days></Expiration>\
            <AbortIncompleteMultipartUpload><DaysAfterInitiation>2</DaysAfterInitiation>\
            </AbortIncompleteMultipartUpload></Rule><Rule><ID>tmp</ID><Prefix>tmp/</Prefix><Status>Disabled</Status>\
            <Expiration><Days>1</Days></Expiration></Rule></LifecycleConfiguration>
            """
        let rules = try S3Handler.lifecycleRules(document)
        #expect(
            rules == [
                LifecycleRule(id: "logs", prefix: "logs/", enabled: true, expirationDays: 30, abortUploadsAfterDays: 2),
                LifecycleRule(id: "tmp", prefix: "tmp/", enabled: false, expirationDays: 1, abortUploadsAfterDays: nil),
            ])
        let transition =
            "<LifecycleConfiguration><Rule><Status>Enabled</Status>"
            + "<Transition><Days>1</Days></Transition></Rule></LifecycleConfiguration>"
        #expect(throws: S3Error.self) { try S3Handler.lifecycleRules(transition) }
        let date =
            "<LifecycleConfiguration><Rule><Status>Enabled</Status>"
            + "<Expiration><Date>2030-01-01T00:00:00Z</Date></Expiration></Rule></LifecycleConfiguration>"
        #expect(throws: S3Error.self) { try S3Handler.lifecycleRules(date) }
        let zero =
            "<LifecycleConfiguration><Rule><Status>Enabled</Status>"
            + "<Expiration><Days>0</Days></Expiration></Rule></LifecycleConfiguration>"
        #expect(throws: S3Error.self) { try S3Handler.lifecycleRules(zero) }
        let noStatus =
            "<LifecycleConfiguration><Rule><Expiration><Days>3</Days></Expiration></Rule></LifecycleConfiguration>"
        #expect(throws: S3Error.self) { try S3Handler.lifecycleRules(noStatus) }
    }
}

@Suite("UTC dates for HTTP and S3")
struct UTCTimeTests {
    @Test("the RFC 9110 example in its three forms, X-Amz-Date and S3's ISO 8601 times")
    func vectors() {
        #expect(HTTPDate.format(0) == "Thu, 01 Jan 1970 00:00:00 GMT")
        #expect(HTTPDate.format(784_111_777_000) == "Sun, 06 Nov 1994 08:49:37 GMT")
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994",
            " Sun, 06 Nov 1994 08:49:37 UTC ",
        ] {
            #expect(HTTPDate.parse(text) == 784_111_777, "\(text)")
        }
        #expect(SigV4.parseAmzDate("19941106T084937Z") == 784_111_777)
        #expect(SigV4.amzDate(fromHTTPDate: "Sun, 06 Nov 1994 08:49:37 GMT") == "19941106T084937Z")
        #expect(XML.timestamp(951_782_400_123) == "2000-02-29T00:00:00.123Z")
        #expect(HTTPDate.format(-1000) == "Wed, 31 Dec 1969 23:59:59 GMT")
        #expect(XML.timestamp(-1) == "1969-12-31T23:59:59.999Z")
        #expect(XML.timestamp(253_402_300_799_999) == "9999-12-31T23:59:59.999Z")
        #expect(HTTPDate.parse("Fri, 31 Dec 9999 23:59:59 GMT") == 253_402_300_799)
        #expect(HTTPDate.parse("Sun, 6 Nov 1994 08:49:37 GMT") == 784_111_777)
        #expect(UTCTime.iso8601(milliseconds: 784_111_777_999) == "1994-11-06T08:49:37Z")
        for bad in [
            "Sun, 31 Feb 1994 08:49:37 GMT", "Sun, 06 Nov 1994 08:49:37 PST", "Sun, 06 Nov 1994 25:49:37 GMT",
            "yesterday", "", "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            #expect(HTTPDate.parse(bad) == nil, "\(bad)")
        }
        for bad in ["19941306T084937Z", "19941106084937Z", "1994-11-06T08:49:37Z", "19941106T084937"] {
            #expect(SigV4.parseAmzDate(bad) == nil, "\(bad)")
        }
    }

    @Test("formatting and parsing agree with Foundation's DateFormatter from 1970 to 2100")
    func agreesWithFoundation() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let iso = ISO8601DateFormatter()
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<3000 {
            let seconds = Int64.random(in: 0..<4_102_444_800, using: &generator)
            let expected = formatter.string(from: Date(timeIntervalSince1970: Double(seconds)))
            #expect(HTTPDate.format(seconds * 1000) == expected)
            #expect(HTTPDate.parse(expected) == seconds)
            #expect(
                UTCTime.iso8601(milliseconds: seconds * 1000)
                    == iso.string(from: Date(timeIntervalSince1970: Double(seconds))))
        }
    }
}
