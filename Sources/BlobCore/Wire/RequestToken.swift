import Crypto

/// Who signed a request. Servers allow each route to a set of roles.
public enum RequestRole: String, Sendable, Codable, CaseIterable {
    /// A user-facing client (blobctl, the gateway).
    case client
    /// A chunk server talking to a peer (replication, repair).
    case server
    /// The master; only it may delete chunks.
    case master
}

/// Why a request was not authenticated.
public enum AuthError: CodedError, Sendable, Equatable {
    case missingToken
    case malformedToken
    case badSignature
    case expired
    case tooFarInFuture
    case roleNotAllowed(RequestRole)

    public var code: BlobErrorCode {
        if case .roleNotAllowed = self { return .permissionDenied }
        return .unauthenticated
    }
    public var reason: String {
        switch self {
        case .missingToken: "auth.missingToken"
        case .malformedToken: "auth.malformedToken"
        case .badSignature: "auth.badSignature"
        case .expired: "auth.expired"
        case .tooFarInFuture: "auth.tooFarInFuture"
        case .roleNotAllowed: "auth.roleNotAllowed"
        }
    }
    public var message: String {
        switch self {
        case .missingToken:
            "the request has no Authorization token; sign it with the cluster secret (blobctl --secret-file)"
        case .malformedToken: "the Authorization token is not of the form 'BlobToken v1:<role>:<expiry>:<signature>'"
        case .badSignature: "the token's signature does not match; client and server must share the same cluster secret"
        case .expired: "the token has expired; check that the clocks of client and server agree"
        case .tooFarInFuture:
            "the token expires too far in the future; check that the clocks of client and server agree"
        case .roleNotAllowed(let role): "a \(role.rawValue) token may not do this"
        }
    }
}

extension BlobErrorCode {
    /// The request carries no valid credentials.
    public static let unauthenticated = BlobErrorCode(rawValue: "unauthenticated")
    /// The credentials are valid but do not allow this operation.
    public static let permissionDenied = BlobErrorCode(rawValue: "permissionDenied")
    /// The server has no room for the write.
    public static let insufficientStorage = BlobErrorCode(rawValue: "insufficientStorage")
    /// The body is larger than the server accepts.
    public static let tooLarge = BlobErrorCode(rawValue: "tooLarge")
}

/// Short-lived request tokens signed with the cluster secret.
///
/// `Authorization: BlobToken v1:<role>:<expiry>:<hex HMAC-SHA256>` where the HMAC covers
/// `v1`, the role, the expiry (Unix seconds), the method and the path with its query, joined by
/// newlines. A token is valid for one request shape only, until its expiry, which may lie at
/// most ``maxLifetimeSeconds`` ahead of the verifier's clock.
public struct RequestSigner: Sendable {
    public static let scheme = "BlobToken"
    public static let maxLifetimeSeconds: Int64 = 15 * 60
    /// Default token lifetime: short, yet long enough for a 4 MiB body on a slow link.
    public static let defaultLifetimeSeconds: Int64 = 5 * 60

    private let key: SymmetricKey

    /// Makes a signer from the cluster secret (at least 16 bytes).
    public init(secret: [UInt8]) throws(AuthError) {
        guard secret.count >= 16 else { throw .malformedToken }
        key = SymmetricKey(data: secret)
    }

    /// Parses a secret file's text: surrounding whitespace is ignored.
    public static func secret(fromFileText text: String) -> [UInt8] {
        let bytes = Array(text.utf8)
        let isSpace: (UInt8) -> Bool = { $0 == 0x20 || $0 == 0x09 || $0 == 0x0A || $0 == 0x0D }
        guard let first = bytes.firstIndex(where: { !isSpace($0) }),
            let last = bytes.lastIndex(where: { !isSpace($0) })
        else { return [] }
        return Array(bytes[first...last])
    }

    /// The Authorization header value for one request.
    public func token(role: RequestRole, method: String, pathAndQuery: String, expiry: Int64) -> String {
        let mac = signature(role: role, method: method, pathAndQuery: pathAndQuery, expiry: expiry)
        return "\(Self.scheme) v1:\(role.rawValue):\(expiry):\(mac)"
    }

    /// Checks an Authorization header value and returns the signer's role.
    public func verify(
        header: String?, method: String, pathAndQuery: String, now: Int64, allowed: Set<RequestRole>
    ) throws(AuthError) -> RequestRole {
        guard let header, !header.isEmpty else { throw .missingToken }
        guard header.hasPrefix(Self.scheme + " ") else { throw .malformedToken }
        let parts = header.dropFirst(Self.scheme.count + 1).split(separator: ":", omittingEmptySubsequences: false)
        // The expiry as the signer writes it, decimal digits without a sign or leading zero: a
        // token has one spelling (Int64 alone would also take "+18…" and "018…").
        guard parts.count == 4, parts[0] == "v1", let role = RequestRole(rawValue: String(parts[1])),
            parts[2].utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
            parts[2].first != "0" || parts[2] == "0", let expiry = Int64(parts[2]), parts[3].utf8.count == 64
        else { throw .malformedToken }
        let expected = signature(role: role, method: method, pathAndQuery: pathAndQuery, expiry: expiry)
        guard Self.constantTimeEqual(Array(expected.utf8), Array(parts[3].utf8)) else { throw .badSignature }
        guard expiry >= now else { throw .expired }
        guard expiry <= now + Self.maxLifetimeSeconds else { throw .tooFarInFuture }
        guard allowed.contains(role) else { throw .roleNotAllowed(role) }
        return role
    }

    private func signature(role: RequestRole, method: String, pathAndQuery: String, expiry: Int64) -> String {
        let message = "v1\n\(role.rawValue)\n\(expiry)\n\(method)\n\(pathAndQuery)"
        let mac = HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: key)
        return mac.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }

    /// Compares without an early exit, so timing does not reveal how many bytes matched.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in a.indices { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
