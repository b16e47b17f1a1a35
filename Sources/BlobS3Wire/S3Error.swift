import BlobCore
import Foundation
public import HTTPTypes

/// An S3 error: the standard code, HTTP status and message, answered as S3's XML.
public struct S3Error: Error, Sendable {
    public let code: String
    public let status: HTTPResponse.Status
    public let message: String
    /// For InvalidRange: the object's size, answered as `Content-Range: bytes */SIZE`.
    public var objectSize: Int64?

    public init(_ code: String, _ status: HTTPResponse.Status, _ message: String, objectSize: Int64? = nil) {
        self.code = code
        self.status = status
        self.message = message
        self.objectSize = objectSize
    }

    public static func accessDenied(_ message: String = "Access Denied") -> S3Error {
        S3Error("AccessDenied", .forbidden, message)
    }
    public static func signatureDoesNotMatch() -> S3Error {
        S3Error(
            "SignatureDoesNotMatch", .forbidden,
            "The request signature we calculated does not match the signature you provided. "
                + "Check your key and signing method."
        )
    }
    public static func invalidAccessKey() -> S3Error {
        S3Error("InvalidAccessKeyId", .forbidden, "The AWS Access Key Id you provided does not exist in our records.")
    }
    public static func noSuchBucket(_ name: String) -> S3Error {
        S3Error("NoSuchBucket", .notFound, "The specified bucket does not exist: \(name)")
    }
    public static func noSuchKey() -> S3Error { S3Error("NoSuchKey", .notFound, "The specified key does not exist.") }
    public static func notImplemented(_ what: String) -> S3Error {
        S3Error("NotImplemented", .notImplemented, "\(what) is not implemented by this gateway.")
    }
    public static func invalidArgument(_ message: String) -> S3Error {
        S3Error("InvalidArgument", .badRequest, message)
    }
    public static func invalidRange(size: Int64) -> S3Error {
        S3Error(
            "InvalidRange", .rangeNotSatisfiable, "The requested range is not satisfiable (object size \(size)).",
            objectSize: size)
    }

    /// A store error as the nearest S3 error.
    /// The answer to a request the HTTP parser refuses (BlobServerSupport's
    /// `MalformedRequestAnswer`): S3's code and an XML body. Headers over the limits are
    /// `RequestHeaderSectionTooLarge`, as S3 answers them.
    public static func malformedRequest(headersTooLarge: Bool, detail: String) -> S3Error {
        headersTooLarge
            ? S3Error(
                "RequestHeaderSectionTooLarge", .badRequest,
                "Your request header section exceeds the maximum allowed size.")
            : S3Error("BadRequest", .badRequest, "The request is not valid HTTP/1.1 (\(detail)).")
    }

    public static func from(_ error: any Error) -> S3Error {
        if let e = error as? S3Error { return e }
        if let e = error as? any CodedError {
            switch e.code {
            case .notFound where e.reason == "bucket.notFound": return S3Error("NoSuchBucket", .notFound, e.message)
            case .notFound: return S3Error("NoSuchKey", .notFound, e.message)
            case .invalidArgument: return S3Error("InvalidArgument", .badRequest, e.message)
            case .alreadyExists: return S3Error("BucketAlreadyExists", .conflict, e.message)
            case .failedPrecondition: return S3Error("BucketNotEmpty", .conflict, e.message)
            case .unauthenticated, .permissionDenied: return S3Error("AccessDenied", .forbidden, e.message)
            case .unavailable, .insufficientReplicas, .timeout:
                return S3Error("ServiceUnavailable", .serviceUnavailable, e.message)
            case .insufficientStorage: return S3Error("ServiceUnavailable", .serviceUnavailable, e.message)
            default: return S3Error("InternalError", .internalServerError, e.message)
            }
        }
        return S3Error("InternalError", .internalServerError, "\(error)")
    }

    public func xml(resource: String, requestID: String) -> String {
        // S3's error documents carry no namespace (clients look for a bare <Error>).
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>"
            + [
                XML.element("Code", code), XML.element("Message", message),
                XML.element("Resource", resource), XML.element("RequestId", requestID),
            ].joined() + "</Error>"
    }
}

/// Just enough XML writing for S3's answers, escaped.
public enum XML {
    public static func escape(_ text: String) -> String { Markup.escape(text) }

    /// The five predefined entities and numeric character references, decoded.
    /// Entity and character references read back (`&lt;`, `&#x65E5;`…); anything else stays as
    /// written. Works on Unicode scalars: a combining mark after `&` or `;` makes one Swift
    /// Character with it, and a search by Character would miss the reference (found by the XML
    /// fuzz target). The search for a reference's `;` is bounded.
    public static func unescape(_ text: String) -> String {
        let scalars = text.unicodeScalars
        guard scalars.contains("&") else { return text }
        var out = String.UnicodeScalarView()
        var i = scalars.startIndex
        while i < scalars.endIndex {
            let c = scalars[i]
            let next = scalars.index(after: i)
            guard c == "&",
                let semi = scalars[next...].prefix(Self.longestReference).firstIndex(of: ";"),
                let replacement = Self.reference(String(scalars[next..<semi]))
            else {
                out.append(c)
                i = next
                continue
            }
            out.append(replacement)
            i = scalars.index(after: semi)
        }
        return String(out)
    }

    /// How far after `&` its `;` is looked for: `#x10FFFF;` is 9, and a few leading zeros more.
    static let longestReference = 12

    static func reference(_ name: String) -> Unicode.Scalar? {
        switch name {
        case "amp": return "&"
        case "lt": return "<"
        case "gt": return ">"
        case "quot": return "\""
        case "apos": return "'"
        default:
            // Digits only (UInt32 would also take a sign). `&#0;` reads back as the NUL that
            // `Markup.escape` writes so; a key holding one is refused by BlobPath after.
            let hex = name.hasPrefix("#x") ? name.dropFirst(2) : nil
            let decimal = hex == nil && name.hasPrefix("#") ? name.dropFirst() : nil
            let number: UInt32?
            if let hex, !hex.isEmpty, hex.allSatisfy(\.isHexDigit) {
                number = UInt32(hex, radix: 16)
            } else if let decimal, !decimal.isEmpty, decimal.allSatisfy({ ("0"..."9").contains($0) }) {
                number = UInt32(decimal)
            } else {
                number = nil
            }
            return number.flatMap(Unicode.Scalar.init)
        }
    }

    public static func element(_ name: String, _ value: String) -> String { "<\(name)>\(escape(value))</\(name)>" }
    public static func element(_ name: String, children: [String]) -> String {
        "<\(name)>" + children.joined() + "</\(name)>"
    }

    public static func document(_ root: String, _ children: [String]) -> String {
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<\(root) xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            + children.joined() + "</\(root)>"
    }

    /// ISO 8601 with milliseconds, as S3 lists times.
    public static func timestamp(_ milliseconds: Int64) -> String {
        let seconds = UTCTime.seconds(milliseconds: milliseconds)
        return UTCTime(secondsSince1970: seconds).iso8601(milliseconds: Int(milliseconds - seconds * 1000))
    }
}

/// HTTP dates (RFC 9110 IMF-fixdate) for Last-Modified and the conditional headers.
public enum HTTPDate {
    public static func format(_ milliseconds: Int64) -> String {
        UTCTime(secondsSince1970: UTCTime.seconds(milliseconds: milliseconds)).imfFixdate
    }

    /// Seconds since 1970, or nil when the text is not an HTTP date.
    public static func parse(_ text: String) -> Int64? {
        UTCTime.parseHTTPDate(text.trimmingCharacters(in: .whitespaces))
    }
}
