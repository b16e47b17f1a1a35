/// Why a string is not a usable blob path.
public struct BlobPathError: CodedError, Sendable, Equatable {
    public let path: String
    public let problem: String

    public var code: BlobErrorCode { .invalidArgument }
    public var reason: String { "path.invalid" }
    public var message: String {
        "\"\(path.prefix(80))\" is not a valid path: \(problem). Paths are '/'-separated names such as "
            + "videos/2026/intro.mp4, at most \(BlobPath.maxByteCount) bytes"
    }
}

/// A validated path in the namespace: non-empty UTF-8, '/'-separated segments, no empty, `.`
/// or `..` segment, no control characters, no leading '/' (one trailing '/' is allowed, for
/// S3's folder markers), at most
/// ``maxByteCount`` bytes and ``maxSegmentByteCount`` per segment. Byte order of the UTF-8 is
/// the listing order.
public struct BlobPath: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    public static let maxByteCount = 1024
    public static let maxSegmentByteCount = 255

    public let value: String

    public init(_ text: String) throws(BlobPathError) {
        func fail(_ problem: String) -> BlobPathError { BlobPathError(path: text, problem: problem) }
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty else { throw fail("it is empty") }
        guard bytes.count <= Self.maxByteCount else { throw fail("it is \(bytes.count) bytes long") }
        guard bytes.first != UInt8(ascii: "/") else { throw fail("it starts with '/'") }
        for scalar in text.unicodeScalars
        where scalar.value < 0x20 || scalar.value == 0x7F
            || (0x80...0x9F).contains(scalar.value)
        {
            throw fail("it contains the control character U+\(String(scalar.value, radix: 16, uppercase: true))")
        }
        // One trailing '/' is allowed: S3 tools keep "folder/" marker objects.
        let body = bytes.last == UInt8(ascii: "/") ? Substring(text.dropLast()) : Substring(text)
        for segment in body.split(separator: "/", omittingEmptySubsequences: false) {
            if segment.isEmpty { throw fail("it has an empty segment ('//')") }
            if segment == "." || segment == ".." { throw fail("it has a '\(segment)' segment") }
            if segment.utf8.count > Self.maxSegmentByteCount {
                throw fail("a segment is longer than \(Self.maxSegmentByteCount) bytes")
            }
        }
        // Native storage, whatever produced the text.
        value = String(decoding: bytes, as: UTF8.self)
    }

    /// A path read back from the store that validated it when it was written.
    package init(validated value: String) {
        self.value = value
    }

    public var description: String { value }

    public static func < (a: BlobPath, b: BlobPath) -> Bool {
        a.value.utf8.lexicographicallyPrecedes(b.value.utf8)
    }

    public init(from decoder: any Decoder) throws {
        try self.init(try decoder.singleValueContainer().decode(String.self))
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(value)
    }
}
