import BlobCore
import Crypto
public import Foundation

/// AWS Signature Version 4 as S3 uses it: in the Authorization header, or in the query
/// (presigned URLs). Signatures are compared in constant time.
public struct SigV4: Sendable {
    /// What a verified request tells about its body.
    public enum Payload: Sendable, Equatable {
        /// The body's SHA-256 (lowercase hex), to check once read.
        case sha256(String)
        case unsigned
        /// `aws-chunked` with a signature per chunk, chained from the seed signature.
        case streamingSigned(seed: String)
        /// `aws-chunked` without chunk signatures (trailing checksums).
        case streamingUnsigned
    }

    public struct Verified: Sendable {
        public var accessKeyID: String
        public var payload: Payload
        public var signingKey: [UInt8]
        public var amzDate: String
        public var scope: String
    }

    public struct Credential {
        public var accessKeyID: String
        public var date: String
        public var region: String
        public var service: String
        public var scope: String { "\(date)/\(region)/\(service)/aws4_request" }

        public init(_ text: String) throws {
            let parts = text.split(separator: "/", omittingEmptySubsequences: false).map(String.init)
            guard parts.count == 5, parts[4] == "aws4_request", !parts[0].isEmpty, parts[1].count == 8 else {
                throw S3Error(
                    "AuthorizationHeaderMalformed", .badRequest,
                    "The credential \(text) is malformed; expected KEY/DATE/REGION/s3/aws4_request")
            }
            accessKeyID = parts[0]
            date = parts[1]
            region = parts[2]
            service = parts[3]
        }
    }

    public static let algorithm = "AWS4-HMAC-SHA256"
    public static let maxClockSkewSeconds: Int64 = 15 * 60
    public static let maxPresignSeconds: Int64 = 7 * 86_400

    /// Verifies a request signed in its Authorization header.
    /// `headers`: every header, names lowercased, values as sent (repeats joined by ",").
    public static func verifyHeader(
        method: String, rawPath: String, rawQuery: String, headers: [String: String],
        secret: (String) async throws -> String?, now: Date = Date()
    ) async throws -> Verified {
        guard let authorization = headers["authorization"], authorization.hasPrefix(algorithm + " ") else {
            throw S3Error("AuthorizationHeaderMalformed", .badRequest, "only AWS4-HMAC-SHA256 signatures are supported")
        }
        var fields: [String: String] = [:]
        for part in authorization.dropFirst(algorithm.count + 1).split(separator: ",") {
            let kv = part.trimmingCharacters(in: .whitespaces)
            guard let eq = kv.firstIndex(of: "=") else { continue }
            fields[String(kv[..<eq])] = String(kv[kv.index(after: eq)...])
        }
        guard let credentialText = fields["Credential"], let signedHeaders = fields["SignedHeaders"],
            let signature = fields["Signature"]
        else {
            throw S3Error(
                "AuthorizationHeaderMalformed", .badRequest,
                "the Authorization header lacks Credential, SignedHeaders or Signature")
        }
        let credential = try Credential(credentialText)
        guard let amzDate = headers["x-amz-date"] ?? headers["date"].flatMap(Self.amzDate(fromHTTPDate:)) else {
            throw S3Error.accessDenied("AWS authentication requires a valid Date or x-amz-date header")
        }
        try checkSkew(amzDate, credential: credential, now: now)
        guard let contentHash = headers["x-amz-content-sha256"] else {
            throw S3Error(
                "InvalidRequest", .badRequest, "Missing required header for this request: x-amz-content-sha256")
        }
        let payload: Payload
        switch contentHash {
        case "UNSIGNED-PAYLOAD": payload = .unsigned
        case "STREAMING-AWS4-HMAC-SHA256-PAYLOAD": payload = .streamingSigned(seed: signature)
        case "STREAMING-UNSIGNED-PAYLOAD-TRAILER": payload = .streamingUnsigned
        default:
            guard contentHash.count == 64, contentHash.allSatisfy(\.isHexDigit) else {
                throw S3Error(
                    "InvalidArgument", .badRequest,
                    "x-amz-content-sha256 must be a SHA-256 hex digest or a known payload mode")
            }
            payload = .sha256(contentHash.lowercased())
        }
        let names = signedHeaders.split(separator: ";").map(String.init)
        guard names.contains("host") else { throw S3Error.accessDenied("the host header must be signed") }
        for name in names where headers[name] == nil {
            throw S3Error.accessDenied("the signed header \(name) is missing")
        }
        let canonical = canonicalRequest(
            method: method, rawPath: rawPath, query: canonicalQuery(rawQuery, excluding: nil),
            headers: headers, signedHeaders: names, payloadHash: contentHash)
        guard let secretKey = try await secret(credential.accessKeyID) else { throw S3Error.invalidAccessKey() }
        let key = signingKey(secret: secretKey, credential: credential)
        let expected = sign(canonical, amzDate: amzDate, scope: credential.scope, key: key)
        guard constantTimeEqual(expected, signature.lowercased()) else { throw S3Error.signatureDoesNotMatch() }
        return Verified(
            accessKeyID: credential.accessKeyID, payload: payload, signingKey: key, amzDate: amzDate,
            scope: credential.scope)
    }

    /// Verifies a presigned URL (`X-Amz-Signature` in the query).
    public static func verifyQuery(
        method: String, rawPath: String, rawQuery: String, headers: [String: String],
        secret: (String) async throws -> String?, now: Date = Date()
    ) async throws -> Verified {
        let query = parseQuery(rawQuery)
        guard query["X-Amz-Algorithm"] == algorithm, let credentialText = query["X-Amz-Credential"],
            let amzDate = query["X-Amz-Date"], let expiresText = query["X-Amz-Expires"],
            let signedHeaders = query["X-Amz-SignedHeaders"], let signature = query["X-Amz-Signature"]
        else {
            throw S3Error(
                "AuthorizationQueryParametersError", .badRequest,
                "a presigned URL needs X-Amz-Algorithm=AWS4-HMAC-SHA256, X-Amz-Credential, X-Amz-Date, "
                    + "X-Amz-Expires, X-Amz-SignedHeaders and X-Amz-Signature"
            )
        }
        let credential = try Credential(credentialText)
        guard let expires = Int64(expiresText), (1...maxPresignSeconds).contains(expires) else {
            throw S3Error.accessDenied("X-Amz-Expires must be between 1 and 604800 seconds")
        }
        guard let signedAt = parseAmzDate(amzDate) else { throw S3Error.accessDenied("X-Amz-Date is malformed") }
        let nowSeconds = Int64(now.timeIntervalSince1970)
        guard signedAt - maxClockSkewSeconds <= nowSeconds else {
            throw S3Error(
                "RequestTimeTooSkewed", .forbidden,
                "The difference between the request time and the server's time is too large.")
        }
        guard nowSeconds <= signedAt + expires else { throw S3Error.accessDenied("Request has expired") }
        let names = signedHeaders.split(separator: ";").map(String.init)
        guard names.contains("host") else { throw S3Error.accessDenied("the host header must be signed") }
        guard amzDate.hasPrefix(credential.date) else {
            throw S3Error.accessDenied("X-Amz-Date does not match the credential's date")
        }
        for name in names where headers[name] == nil {
            throw S3Error.accessDenied("the signed header \(name) is missing")
        }
        let canonical = canonicalRequest(
            method: method, rawPath: rawPath, query: canonicalQuery(rawQuery, excluding: "X-Amz-Signature"),
            headers: headers, signedHeaders: names, payloadHash: "UNSIGNED-PAYLOAD")
        guard let secretKey = try await secret(credential.accessKeyID) else { throw S3Error.invalidAccessKey() }
        let key = signingKey(secret: secretKey, credential: credential)
        let expected = sign(canonical, amzDate: amzDate, scope: credential.scope, key: key)
        guard constantTimeEqual(expected, signature.lowercased()) else { throw S3Error.signatureDoesNotMatch() }
        return Verified(
            accessKeyID: credential.accessKeyID, payload: .unsigned, signingKey: key, amzDate: amzDate,
            scope: credential.scope)
    }

    /// A legacy (Signature Version 2) presigned URL, as boto3 and older SDKs still make by
    /// default: `AWSAccessKeyId`, `Expires`, `Signature` = base64 HMAC-SHA1 of the method, the
    /// (empty) content MD5 and type, the expiry and the path. GET and HEAD only.
    public static func verifyQueryV2(
        method: String, resource: String, rawQuery: String,
        secret: (String) async throws -> String?, now: Date = Date()
    ) async throws -> Verified {
        let query = parseQuery(rawQuery)
        // Sub-resources and response overrides would have to be signed too: only plain GETs.
        guard Set(query.keys).isSubset(of: ["AWSAccessKeyId", "Expires", "Signature"]) else {
            throw S3Error.accessDenied(
                "legacy presigned URLs may carry only AWSAccessKeyId, Expires and Signature; sign with SigV4")
        }
        guard let id = query["AWSAccessKeyId"], let expiresText = query["Expires"], let signature = query["Signature"],
            let expires = Int64(expiresText)
        else {
            throw S3Error(
                "AuthorizationQueryParametersError", .badRequest,
                "a presigned URL needs AWSAccessKeyId, Expires and Signature")
        }
        guard method == "GET" || method == "HEAD" else {
            throw S3Error.accessDenied("legacy presigned URLs are accepted for GET and HEAD only")
        }
        guard Int64(now.timeIntervalSince1970) <= expires else { throw S3Error.accessDenied("Request has expired") }
        guard let secretKey = try await secret(id) else { throw S3Error.invalidAccessKey() }
        let stringToSign = "\(method)\n\n\n\(expiresText)\n\(resource)"
        let mac = HMAC<Insecure.SHA1>.authenticationCode(
            for: Array(stringToSign.utf8), using: SymmetricKey(data: Array(secretKey.utf8)))
        let expected = Data(mac).base64EncodedString()
        guard constantTimeEqual(expected, signature) else { throw S3Error.signatureDoesNotMatch() }
        return Verified(accessKeyID: id, payload: .unsigned, signingKey: [], amzDate: "", scope: "")
    }

    /// Signature Version 2 in the header (`Authorization: AWS KEY:SIGNATURE`): HMAC-SHA1 of the
    /// method, Content-MD5, Content-Type, Date (empty when x-amz-date is sent), the x-amz-*
    /// headers and the resource with its sub-resources. The payload is not signed.
    public static func verifyHeaderV2(
        method: String, resource: String, rawQuery: String, headers: [String: String],
        secret: (String) async throws -> String?, now: Date = Date()
    ) async throws -> Verified {
        guard let authorization = headers["authorization"], authorization.hasPrefix("AWS "),
            let colon = authorization.lastIndex(of: ":")
        else {
            throw S3Error.invalidArgument(
                "the Authorization header must be AWS4-HMAC-SHA256 … or AWS ACCESS_KEY:SIGNATURE")
        }
        let id = authorization.dropFirst(4)[..<colon].trimmingCharacters(in: .whitespaces)
        let signature = String(authorization[authorization.index(after: colon)...])
        guard !id.isEmpty, !signature.isEmpty else {
            throw S3Error.invalidArgument("the Authorization header must be AWS ACCESS_KEY:SIGNATURE")
        }
        let dateText = headers["x-amz-date"] ?? headers["date"]
        guard let dateText, let signedAt = HTTPDate.parse(dateText), signedAt >= 0 else {
            throw S3Error.accessDenied("AWS authentication requires a valid Date or x-amz-date header")
        }
        guard abs(signedAt - Int64(now.timeIntervalSince1970)) <= maxClockSkewSeconds else {
            throw S3Error(
                "RequestTimeTooSkewed", .forbidden,
                "The difference between the request time and the server's time is too large.")
        }
        guard let secretKey = try await secret(id) else { throw S3Error.invalidAccessKey() }
        let amzHeaders = headers.filter { $0.key.hasPrefix("x-amz-") }.sorted { $0.key < $1.key }
            .map { "\($0.key):\(normalizeSpaces($0.value))\n" }.joined()
        let head =
            [
                method, headers["content-md5"] ?? "", headers["content-type"] ?? "",
                headers["x-amz-date"] == nil ? (headers["date"] ?? "") : "",
            ].joined(separator: "\n") + "\n" + amzHeaders
        // A bucket's resource is /BUCKET/; some clients sign it as sent, without the slash.
        var resources = [resource]
        if resource.dropFirst().firstIndex(of: "/") == nil { resources.insert(resource + "/", at: 0) }
        let matches = resources.contains { candidate in
            let stringToSign = head + candidate + subresourcesV2(rawQuery)
            let mac = HMAC<Insecure.SHA1>.authenticationCode(
                for: Array(stringToSign.utf8), using: SymmetricKey(data: Array(secretKey.utf8)))
            return constantTimeEqual(Data(mac).base64EncodedString(), signature)
        }
        guard matches else { throw S3Error.signatureDoesNotMatch() }
        return Verified(accessKeyID: id, payload: .unsigned, signingKey: [], amzDate: "", scope: "")
    }

    /// The query parameters V2 signs, as `?a&b=v` sorted by name, values decoded.
    public static let signedSubresourcesV2: Set = [
        "acl", "cors", "delete", "lifecycle", "location", "logging", "notification", "partNumber", "policy",
        "requestPayment",
        "restore", "tagging", "torrent", "uploadId", "uploads", "versionId", "versioning", "versions", "website",
        "response-content-type", "response-content-language", "response-expires", "response-cache-control",
        "response-content-disposition", "response-content-encoding",
    ]

    public static func subresourcesV2(_ rawQuery: String) -> String {
        let pairs = rawQuery.split(separator: "&").compactMap { pair -> (String, String?)? in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(String(parts[0]))
            guard signedSubresourcesV2.contains(name) else { return nil }
            return (name, parts.count > 1 ? percentDecode(String(parts[1])) : nil)
        }.sorted { $0.0 < $1.0 }
        guard !pairs.isEmpty else { return "" }
        return "?" + pairs.map { name, value in value.map { name + "=" + $0 } ?? name }.joined(separator: "&")
    }

    public static func checkSkew(_ amzDate: String, credential: Credential, now: Date) throws {
        guard let signedAt = parseAmzDate(amzDate), amzDate.hasPrefix(credential.date) else {
            throw S3Error.accessDenied("x-amz-date is malformed or does not match the credential's date")
        }
        guard abs(signedAt - Int64(now.timeIntervalSince1970)) <= maxClockSkewSeconds else {
            throw S3Error(
                "RequestTimeTooSkewed", .forbidden,
                "The difference between the request time and the server's time is too large.")
        }
    }

    // MARK: Canonical forms

    public static func canonicalRequest(
        method: String, rawPath: String, query: String, headers: [String: String],
        signedHeaders: [String], payloadHash: String
    ) -> String {
        let canonicalHeaders = signedHeaders.map { name in
            "\(name):\(normalizeSpaces(headers[name] ?? ""))\n"
        }.joined()
        return [
            method, canonicalURI(rawPath), query, canonicalHeaders, signedHeaders.joined(separator: ";"), payloadHash,
        ]
        .joined(separator: "\n")
    }

    /// The path decoded and encoded again the way SDKs do (every byte but unreserved ones and `/`),
    /// so any equivalent spelling the client sent gives the same form. S3 does not normalise dot
    /// segments or double slashes.
    public static func canonicalURI(_ rawPath: String) -> String {
        let path = rawPath.isEmpty ? "/" : rawPath
        return uriEncode(percentDecode(path), keepSlash: true)
    }

    public static func canonicalQuery(_ rawQuery: String, excluding excluded: String?) -> String {
        var pairs: [(String, String)] = []
        for item in rawQuery.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = percentDecode(plusAsSpace(String(parts[0])))
            if name == excluded { continue }
            let value = parts.count > 1 ? percentDecode(plusAsSpace(String(parts[1]))) : ""
            pairs.append((uriEncode(name, keepSlash: false), uriEncode(value, keepSlash: false)))
        }
        pairs.sort { $0.0 == $1.0 ? $0.1 < $1.1 : $0.0 < $1.0 }
        return pairs.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// Query parameters decoded (last one wins).
    public static func parseQuery(_ rawQuery: String) -> [String: String] {
        var out: [String: String] = [:]
        for item in rawQuery.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            out[percentDecode(plusAsSpace(String(parts[0])))] =
                parts.count > 1 ? percentDecode(plusAsSpace(String(parts[1]))) : ""
        }
        return out
    }

    public static func plusAsSpace(_ s: String) -> String { s }

    public static func normalizeSpaces(_ value: String) -> String {
        value.trimmingCharacters(in: .whitespaces).split(separator: " ", omittingEmptySubsequences: true).joined(
            separator: " ")
    }

    public static func uriEncode(_ text: String, keepSlash: Bool) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            case UInt8(ascii: "/") where keepSlash:
                out += "/"
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// Decodes %XX escapes into bytes (invalid escapes stay as they are).
    public static func percentDecode(_ text: String) -> String {
        let bytes = Array(text.utf8)
        guard bytes.contains(UInt8(ascii: "%")) else { return text }
        var out: [UInt8] = []
        out.reserveCapacity(bytes.count)
        var i = 0
        while i < bytes.count {
            if bytes[i] == UInt8(ascii: "%"), i + 2 < bytes.count, let hi = hexValue(bytes[i + 1]),
                let lo = hexValue(bytes[i + 2])
            {
                out.append(hi << 4 | lo)
                i += 3
            } else {
                out.append(bytes[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    public static func hexValue(_ c: UInt8) -> UInt8? {
        switch c {
        case 48...57: c - 48
        case 65...70: c - 55
        case 97...102: c - 87
        default: nil
        }
    }

    // MARK: Signing

    public static func signingKey(secret: String, credential: Credential) -> [UInt8] {
        var key = hmac(Array(("AWS4" + secret).utf8), credential.date)
        key = hmac(key, credential.region)
        key = hmac(key, credential.service)
        return hmac(key, "aws4_request")
    }

    public static func sign(_ canonicalRequest: String, amzDate: String, scope: String, key: [UInt8]) -> String {
        let stringToSign = [algorithm, amzDate, scope, hex(SHA256.hash(data: Array(canonicalRequest.utf8)))].joined(
            separator: "\n")
        return hex(hmac(key, stringToSign))
    }

    /// The signature of one `aws-chunked` chunk, chained from the previous one.
    public static func chunkSignature(
        previous: String, chunk: some DataProtocol, amzDate: String, scope: String, key: [UInt8]
    ) -> String {
        let emptyHash = hex(SHA256.hash(data: [UInt8]()))
        let stringToSign = [
            "AWS4-HMAC-SHA256-PAYLOAD", amzDate, scope, previous, emptyHash, hex(SHA256.hash(data: chunk)),
        ]
        .joined(separator: "\n")
        return hex(hmac(key, stringToSign))
    }

    public static func hmac(_ key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    public static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    /// Lowercase or uppercase hex as bytes; nil for anything else.
    public static func hexBytes(_ text: String) -> [UInt8]? {
        let chars = Array(text.utf8)
        guard chars.count % 2 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(chars.count / 2)
        var i = 0
        while i < chars.count {
            guard let high = hexValue(chars[i]), let low = hexValue(chars[i + 1]) else { return nil }
            out.append(high << 4 | low)
            i += 2
        }
        return out
    }

    public static func constantTimeEqual(_ a: String, _ b: String) -> Bool {
        let x = Array(a.utf8)
        let y = Array(b.utf8)
        guard x.count == y.count else { return false }
        var diff: UInt8 = 0
        for i in 0..<x.count { diff |= x[i] ^ y[i] }
        return diff == 0
    }

    public static func parseAmzDate(_ text: String) -> Int64? {
        UTCTime.parseAmzDate(text)
    }

    public static func amzDate(fromHTTPDate text: String) -> String? {
        HTTPDate.parse(text).map { UTCTime(secondsSince1970: $0).amzDate }
    }
}
