import BlobCore
import Crypto
public import Foundation

/// A form that passed its signature and policy: the key to store (with `${filename}` replaced).
public struct PostUpload: Sendable {
    public var key: String
    public var policy: PostPolicy
    public var accessKeyID: String
}

extension PostForm {
    /// Checks the form as S3 does: `key` present, the policy signed by a known key (V4 when any
    /// `x-amz-algorithm`, `x-amz-credential` or `x-amz-signature` field is given, else V2), the
    /// policy well-formed, unexpired and met by every field (the key after `${filename}` is
    /// replaced, so the stored key is the one the policy allows). A form without a policy is
    /// refused: anonymous uploads are not supported.
    public func authorize(
        bucket: String, secret: (String) async throws -> String?, now: Date = Date()
    ) async throws -> PostUpload {
        guard let rawKey = fields["key"] else { throw Self.missingField("key") }
        let (accessKeyID, policyText) = try await verifySignature(secret: secret)
        let policy = try PostPolicy(base64: policyText)
        let key = rawKey.replacingOccurrences(of: "${filename}", with: fileName ?? "")
        guard !key.isEmpty else { throw S3Error.invalidArgument("User key must have a length greater than 0.") }
        var checked = fields
        checked["key"] = key
        try policy.check(fields: checked, bucket: bucket, now: now)
        // Objects take their bucket's access: an ACL field is only checked against the policy.
        if let acl = fields["acl"], acl != "private", acl != "public-read" {
            throw S3Error.notImplemented("the canned ACL \(acl)")
        }
        return PostUpload(key: key, policy: policy, accessKeyID: accessKeyID)
    }

    /// The access key and the (base64) policy it signed.
    public func verifySignature(
        secret: (String) async throws -> String?
    ) async throws -> (accessKeyID: String, policy: String) {
        guard let policy = fields["policy"] else { throw Self.missingField("Policy") }
        if fields["x-amz-algorithm"] != nil || fields["x-amz-credential"] != nil || fields["x-amz-signature"] != nil {
            guard let algorithm = fields["x-amz-algorithm"] else { throw Self.missingField("X-Amz-Algorithm") }
            guard algorithm == SigV4.algorithm else {
                throw S3Error.invalidArgument("X-Amz-Algorithm only supports 'AWS4-HMAC-SHA256'")
            }
            guard let credentialText = fields["x-amz-credential"] else { throw Self.missingField("X-Amz-Credential") }
            guard let amzDate = fields["x-amz-date"] else { throw Self.missingField("X-Amz-Date") }
            guard let signature = fields["x-amz-signature"] else { throw Self.missingField("X-Amz-Signature") }
            let credential = try SigV4.Credential(credentialText)
            guard SigV4.parseAmzDate(amzDate) != nil, amzDate.hasPrefix(credential.date) else {
                throw S3Error.invalidArgument("X-Amz-Date must be yyyyMMdd'T'HHmmss'Z' on the credential's date")
            }
            guard let secretKey = try await secret(credential.accessKeyID) else { throw S3Error.invalidAccessKey() }
            let expected = PostSignature.v4(policy: policy, secret: secretKey, credential: credential)
            guard SigV4.constantTimeEqual(expected, signature.lowercased()) else {
                throw S3Error.signatureDoesNotMatch()
            }
            return (credential.accessKeyID, policy)
        }
        guard let signature = fields["signature"] else { throw Self.missingField("Signature") }
        guard let accessKeyID = fields["awsaccesskeyid"] else { throw Self.missingField("AWSAccessKeyId") }
        guard let secretKey = try await secret(accessKeyID) else { throw S3Error.invalidAccessKey() }
        let expected = PostSignature.v2(policy: policy, secret: secretKey)
        guard SigV4.constantTimeEqual(expected, signature) else { throw S3Error.signatureDoesNotMatch() }
        return (accessKeyID, policy)
    }
}

/// What a POST form signs: its base64 policy, as sent.
public enum PostSignature {
    /// Signature Version 2: base64(HMAC-SHA1(secret, policy)).
    public static func v2(policy: String, secret: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(
            for: Array(policy.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// Signature Version 4: hex(HMAC-SHA256(signing key of the credential's scope, policy)).
    public static func v4(policy: String, secret: String, credential: SigV4.Credential) -> String {
        SigV4.hex(SigV4.hmac(SigV4.signingKey(secret: secret, credential: credential), policy))
    }
}

/// A POST policy (base64 JSON): `expiration` (ISO 8601, UTC) and `conditions`, each an object
/// with one field (exact match), `["eq" | "starts-with", "$field", "value"]`, or
/// `["content-length-range", min, max]`. Element names are case-sensitive, field names are not.
public struct PostPolicy: Sendable, Equatable {
    public enum Condition: Sendable, Equatable, CustomStringConvertible {
        case equals(field: String, value: String)
        case startsWith(field: String, prefix: String)
        case contentLengthRange(min: Int64, max: Int64)

        /// The (lowercased) field it is about.
        public var field: String {
            switch self {
            case .equals(let field, _), .startsWith(let field, _): field
            case .contentLengthRange: "content-length-range"
            }
        }

        public var description: String {
            switch self {
            case .equals(let field, let value): "[\"eq\", \"$\(field)\", \(PostPolicy.quoted(value))]"
            case .startsWith(let field, let prefix): "[\"starts-with\", \"$\(field)\", \(PostPolicy.quoted(prefix))]"
            case .contentLengthRange(let min, let max): "[\"content-length-range\", \(min), \(max)]"
            }
        }

        /// Content length is checked once the file is in (``PostPolicy/checkContentLength(_:)``).
        public func isMet(by value: String) -> Bool {
            switch self {
            case .equals(_, let expected):
                return value == expected
            case .startsWith(let field, let prefix):
                // S3: each of several comma-separated content types must start with the prefix.
                if field == "content-type", value.contains(",") {
                    return value.split(separator: ",").allSatisfy {
                        $0.trimmingCharacters(in: .whitespaces).hasPrefix(prefix)
                    }
                }
                return value.hasPrefix(prefix)
            case .contentLengthRange:
                return true
            }
        }
    }

    public var expiration: Date
    public var conditions: [Condition]

    /// Fields no condition needs to name.
    public static let exemptFields: Set<String> = ["file", "policy", "signature", "x-amz-signature", "awsaccesskeyid"]

    public static func invalid(_ why: String) -> S3Error {
        S3Error("InvalidPolicyDocument", .badRequest, "Invalid Policy: \(why)")
    }
    public static func entityTooLarge() -> S3Error {
        S3Error("EntityTooLarge", .badRequest, "Your proposed upload exceeds the maximum allowed size.")
    }
    public static func entityTooSmall() -> S3Error {
        S3Error("EntityTooSmall", .badRequest, "Your proposed upload is smaller than the minimum allowed size.")
    }

    /// The policy field as sent (whitespace, which some encoders wrap lines with, is ignored).
    public init(base64 text: String) throws {
        guard let json = Data(base64Encoded: text.filter { !$0.isWhitespace }) else {
            throw Self.invalid("Invalid Base64 Encoding.")
        }
        try self.init(json: json)
    }

    public init(json: Data) throws {
        let document: PolicyJSON
        do {
            document = try JSONDecoder().decode(PolicyJSON.self, from: json)
        } catch {
            throw Self.invalid("Invalid JSON.")
        }
        guard case .object(let top) = document else { throw Self.invalid("The policy must be a JSON object.") }
        guard case .string(let expirationText)? = top["expiration"] else {
            throw Self.invalid("Policy missing expiration.")
        }
        guard let expiration = Self.parseExpiration(expirationText) else {
            throw Self.invalid("Invalid 'expiration' value: '\(expirationText)'")
        }
        guard case .array(let items)? = top["conditions"] else { throw Self.invalid("Policy missing conditions.") }
        self.expiration = expiration
        self.conditions = try items.map(Self.condition)
    }

    /// `yyyy-MM-ddTHH:mm:ss[.fraction]Z`, nothing else.
    public static func parseExpiration(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        let shape = Array("dddd-dd-ddTdd:dd:dd".utf8)
        guard bytes.count > shape.count, bytes.last == UInt8(ascii: "Z") else { return nil }
        for (byte, expected) in zip(bytes, shape) {
            let fits =
                expected == UInt8(ascii: "d")
                ? (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) : byte == expected
            guard fits else { return nil }
        }
        let fraction = bytes[shape.count..<(bytes.count - 1)]
        if let dot = fraction.first {
            guard dot == UInt8(ascii: "."), fraction.count > 1,
                fraction.dropFirst().allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
            else { return nil }
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        guard let seconds = formatter.date(from: String(decoding: bytes[0..<shape.count], as: UTF8.self) + "Z") else {
            return nil
        }
        let subsecond = fraction.isEmpty ? 0 : Double("0" + String(decoding: fraction, as: UTF8.self)) ?? 0
        return seconds.addingTimeInterval(subsecond)
    }

    public static func condition(_ item: PolicyJSON) throws -> Condition {
        switch item {
        case .object(let pairs):
            guard pairs.count == 1, let pair = pairs.first, let field = fieldName(pair.key, dollar: false) else {
                throw invalid("Each condition object must name exactly one field.")
            }
            guard field != "content-length-range", let text = pair.value.text else {
                throw invalid("Condition value for '\(pair.key)' must be a string.")
            }
            return .equals(field: field, value: text)
        case .array(let elements):
            guard case .string(let operation)? = elements.first else {
                throw invalid("A condition array must start with its operation.")
            }
            switch operation.lowercased() {
            case "eq", "starts-with":
                guard elements.count == 3, case .string(let name) = elements[1],
                    let field = fieldName(name, dollar: true),
                    let value = elements[2].text
                else {
                    throw invalid("Condition '\(operation)' takes a $field and a string value.")
                }
                return operation.lowercased() == "eq"
                    ? .equals(field: field, value: value) : .startsWith(field: field, prefix: value)
            case "content-length-range":
                guard elements.count == 3, case .integer(let min) = elements[1], case .integer(let max) = elements[2],
                    min >= 0, min <= max
                else {
                    throw invalid("content-length-range takes two integers, 0 <= min <= max.")
                }
                return .contentLengthRange(min: min, max: max)
            default:
                throw invalid("Unknown condition operation '\(operation)'.")
            }
        default:
            throw invalid("Each condition must be an object or an array.")
        }
    }

    /// A condition's field name lowercased, without its `$` (required in arrays, optional in objects).
    public static func fieldName(_ raw: String, dollar needsDollar: Bool) -> String? {
        guard !needsDollar || raw.hasPrefix("$") else { return nil }
        let name = (raw.hasPrefix("$") ? String(raw.dropFirst()) : raw).lowercased()
        return name.isEmpty ? nil : name
    }

    public static func isExempt(_ field: String) -> Bool {
        exemptFields.contains(field) || field.hasPrefix("x-ignore-")
    }

    /// Unexpired, every field named by a condition, every condition met (`bucket` against the
    /// bucket the form was posted to; a field the form lacks counts as empty). The policy must
    /// name its bucket: every key acts for the one owner of all buckets, so a policy handed to a
    /// browser for one bucket must not write into the others.
    public func check(fields: [String: String], bucket: String, now: Date = Date()) throws {
        guard now < expiration else { throw S3Error.accessDenied("Invalid according to Policy: Policy expired.") }
        guard conditions.contains(where: { $0.field == "bucket" }) else {
            throw S3Error.accessDenied("Invalid according to Policy: the policy must have a bucket condition.")
        }
        let named = Set(conditions.map(\.field))
        for name in fields.keys.sorted() where !Self.isExempt(name) && !named.contains(name) {
            throw S3Error.accessDenied("Invalid according to Policy: Extra input fields: \(name)")
        }
        for condition in conditions {
            let value = condition.field == "bucket" ? bucket : fields[condition.field] ?? ""
            guard condition.isMet(by: value) else {
                throw S3Error.accessDenied("Invalid according to Policy: Policy Condition failed: \(condition)")
            }
        }
    }

    /// The smallest of the content-length-range maxima, to stop a too-large upload early.
    public var maxContentLength: Int64? {
        var smallest: Int64?
        for case .contentLengthRange(_, let max) in conditions {
            smallest = Swift.min(smallest ?? max, max)
        }
        return smallest
    }

    public func checkContentLength(_ byteCount: Int64) throws {
        for case .contentLengthRange(let min, let max) in conditions {
            if byteCount > max { throw Self.entityTooLarge() }
            if byteCount < min { throw Self.entityTooSmall() }
        }
    }

    public static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

/// Any JSON value, integers kept apart from other numbers.
public enum PolicyJSON: Decodable, Equatable {
    case string(String)
    case integer(Int64)
    case number(Double)
    case bool(Bool)
    case null
    case array([PolicyJSON])
    case object([String: PolicyJSON])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode([PolicyJSON].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: PolicyJSON].self))
        }
    }

    /// A string, or an integer as its digits (`{"success_action_status": 201}`).
    public var text: String? {
        switch self {
        case .string(let value): value
        case .integer(let value): String(value)
        default: nil
        }
    }
}
