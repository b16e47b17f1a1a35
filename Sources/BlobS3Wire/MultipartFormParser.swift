import BlobCore
import Crypto
import Foundation

/// A streaming multipart/form-data parser (RFC 7578, RFC 2046 §5.1): bytes go in as they arrive,
/// in pieces of any size; part starts, part data and part ends come out. It holds back at most a
/// possible start of the delimiter, or one unfinished header block (at most 8 KiB), so its memory
/// is bounded whatever the parts' sizes.
public struct MultipartFormParser {
    public struct PartHeaders: Sendable, Equatable {
        /// The Content-Disposition `name`, as sent.
        public var name: String
        public var filename: String?
        public var contentType: String?
    }

    public enum Event {
        case begin(PartHeaders)
        /// Valid only during the call it is given to.
        case data(UnsafeRawBufferPointer)
        case end
    }

    public enum State {
        case preamble
        /// Just after a delimiter: CRLF (a part follows) or `--` (the last one).
        case afterDelimiter
        case headers
        case body
        case epilogue
    }

    public static let maxHeaderBlockByteCount = 8 << 10
    public static let headerBlockEnd: [UInt8] = [13, 10, 13, 10]

    /// CRLF `--` boundary: what ends a part's data.
    public let delimiter: [UInt8]
    private(set) var state = State.preamble
    /// Bytes not yet used: a possible start of the delimiter, or an unfinished header block. The
    /// first delimiter has no CRLF before it (the body starts with `--boundary`): one is assumed.
    private var carry: [UInt8] = [13, 10]

    public init(boundary: String) {
        delimiter = Array("\r\n--\(boundary)".utf8)
    }

    /// The closing delimiter was seen: the form is whole.
    public var isComplete: Bool { state == .epilogue }

    /// The `boundary` parameter of a `multipart/form-data` Content-Type (1 to 70 characters,
    /// quotes removed); nil for any other type.
    public static func boundary(contentType: String) -> String? {
        let parts = contentType.split(separator: ";")
        guard let type = parts.first, type.trimmingCharacters(in: .whitespaces).lowercased() == "multipart/form-data"
        else {
            return nil
        }
        for parameter in parts.dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else {
                continue
            }
            var value = pair[1].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") {
                value = String(value.dropFirst().dropLast())
            }
            return (1...70).contains(value.utf8.count) ? value : nil
        }
        return nil
    }

    public static func malformed(_ why: String) -> S3Error {
        S3Error(
            "MalformedPOSTRequest", .badRequest,
            "The body of your POST request is not well-formed multipart/form-data: \(why).")
    }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, _ handle: (Event) throws -> Void) throws {
        guard state != .epilogue else { return }  // the epilogue is ignored
        if carry.isEmpty {
            let used = try process(bytes, handle)
            carry = Array(bytes[used...])
        } else {
            var joined = carry
            joined.append(contentsOf: bytes)
            carry = []
            let used = try joined.withUnsafeBytes { try process($0, handle) }
            carry = Array(joined[used...])
        }
    }

    /// Parses what it can; returns how many bytes it used (the rest is kept for the next feed).
    private mutating func process(_ bytes: UnsafeRawBufferPointer, _ handle: (Event) throws -> Void) throws -> Int {
        var i = 0
        while i < bytes.count {
            switch state {
            case .preamble:
                guard let found = Self.find(delimiter, in: bytes, from: i) else {
                    return max(i, bytes.count - (delimiter.count - 1))
                }
                i = found + delimiter.count
                state = .afterDelimiter
            case .afterDelimiter:
                // Transport padding (spaces, tabs) may follow a delimiter.
                while i < bytes.count, bytes[i] == 0x20 || bytes[i] == 0x09 { i += 1 }
                guard bytes.count - i >= 2 else { return i }
                if bytes[i] == 0x2D, bytes[i + 1] == 0x2D {
                    state = .epilogue
                    return bytes.count
                }
                guard bytes[i] == 13, bytes[i + 1] == 10 else {
                    throw Self.malformed("a boundary is followed by neither CRLF nor \"--\"")
                }
                i += 2
                state = .headers
            case .headers:
                let blockEnd: Int
                let next: Int
                if bytes.count - i >= 2, bytes[i] == 13, bytes[i + 1] == 10 {
                    blockEnd = i  // no header lines at all
                    next = i + 2
                } else if let found = Self.find(Self.headerBlockEnd, in: bytes, from: i) {
                    blockEnd = found
                    next = found + Self.headerBlockEnd.count
                } else {
                    guard bytes.count - i <= Self.maxHeaderBlockByteCount + 3 else {
                        throw Self.malformed("a part's headers are too long")
                    }
                    return i
                }
                guard blockEnd - i <= Self.maxHeaderBlockByteCount else {
                    throw Self.malformed("a part's headers are too long")
                }
                try handle(.begin(Self.partHeaders(UnsafeRawBufferPointer(rebasing: bytes[i..<blockEnd]))))
                i = next
                state = .body
            case .body:
                if let found = Self.find(delimiter, in: bytes, from: i) {
                    if found > i { try handle(.data(UnsafeRawBufferPointer(rebasing: bytes[i..<found]))) }
                    try handle(.end)
                    i = found + delimiter.count
                    state = .afterDelimiter
                } else {
                    let safeEnd = bytes.count - Self.delimiterStartLength(delimiter, atEndOf: bytes, from: i)
                    if safeEnd > i { try handle(.data(UnsafeRawBufferPointer(rebasing: bytes[i..<safeEnd]))) }
                    return safeEnd
                }
            case .epilogue:
                return bytes.count
            }
        }
        return i
    }

    /// Where `needle` first occurs whole in `bytes` at or after `start`.
    public static func find(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
        guard let base = bytes.baseAddress, let first = needle.first else { return nil }
        let lastStart = bytes.count - needle.count
        var position = start
        while position <= lastStart {
            guard let hit = memchr(base + position, Int32(first), lastStart - position + 1) else { return nil }
            let candidate = base.distance(to: UnsafeRawPointer(hit))
            var matched = 1
            while matched < needle.count, bytes[candidate + matched] == needle[matched] { matched += 1 }
            if matched == needle.count { return candidate }
            position = candidate + 1
        }
        return nil
    }

    /// The length of the longest end of `bytes` (after `start`) that begins the delimiter: those
    /// bytes wait for the next feed to tell whether they are data.
    public static func delimiterStartLength(
        _ delimiter: [UInt8], atEndOf bytes: UnsafeRawBufferPointer, from start: Int
    ) -> Int {
        let longest = min(delimiter.count - 1, bytes.count - start)
        guard longest > 0 else { return 0 }
        for length in stride(from: longest, through: 1, by: -1) {
            let offset = bytes.count - length
            var matched = 0
            while matched < length, bytes[offset + matched] == delimiter[matched] { matched += 1 }
            if matched == length { return length }
        }
        return 0
    }

    /// A part's Content-Disposition (`form-data`, `name`, `filename`) and Content-Type.
    public static func partHeaders(_ block: UnsafeRawBufferPointer) throws -> PartHeaders {
        var disposition: String?
        var contentType: String?
        for line in String(decoding: block, as: UTF8.self).split(whereSeparator: \.isNewline) {
            guard let colon = line.firstIndex(of: ":") else { throw malformed("a part header has no colon") }
            let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            if name == "content-disposition" {
                disposition = value
            } else if name == "content-type" {
                contentType = value
            }
        }
        guard let disposition else { throw malformed("a part has no Content-Disposition") }
        let (type, parameters) = dispositionParameters(disposition)
        guard type.lowercased() == "form-data", let name = parameters["name"] else {
            throw malformed("a part is not form-data with a name")
        }
        return PartHeaders(name: name, filename: parameters["filename"], contentType: contentType)
    }

    /// `form-data; name="a"; filename="b"` as the type and its parameters (names lowercased).
    /// Quoted values end at the next quote: browsers percent-encode quotes in names and send
    /// backslashes as they are (HTML's form encoding), so no escapes are undone.
    public static func dispositionParameters(_ value: String) -> (type: String, parameters: [String: String]) {
        let scalars = Array(value.unicodeScalars)
        var i = 0
        var type = ""
        while i < scalars.count, scalars[i] != ";" {
            type.unicodeScalars.append(scalars[i])
            i += 1
        }
        var parameters: [String: String] = [:]
        while i < scalars.count {
            i += 1  // past the ";"
            var name = ""
            while i < scalars.count, scalars[i] != "=", scalars[i] != ";" {
                name.unicodeScalars.append(scalars[i])
                i += 1
            }
            var parameterValue = ""
            if i < scalars.count, scalars[i] == "=" {
                i += 1
                while i < scalars.count, scalars[i] == " " || scalars[i] == "\t" { i += 1 }
                if i < scalars.count, scalars[i] == "\"" {
                    i += 1
                    while i < scalars.count, scalars[i] != "\"" {
                        parameterValue.unicodeScalars.append(scalars[i])
                        i += 1
                    }
                    while i < scalars.count, scalars[i] != ";" { i += 1 }
                } else {
                    while i < scalars.count, scalars[i] != ";" {
                        parameterValue.unicodeScalars.append(scalars[i])
                        i += 1
                    }
                    parameterValue = parameterValue.trimmingCharacters(in: .whitespaces)
                }
            }
            let key = name.trimmingCharacters(in: .whitespaces).lowercased()
            if !key.isEmpty, parameters[key] == nil { parameters[key] = parameterValue }
        }
        return (type.trimmingCharacters(in: .whitespaces), parameters)
    }
}

/// A POST form as far as S3 reads it: the fields before the file, and the file's name.
public struct PostForm: Sendable, Equatable {
    /// Names lowercased (form field names are case-insensitive), values as sent.
    public var fields: [String: String]
    /// The file part's filename ("" when it gave none); nil when no file part came.
    public var fileName: String?

    public init(fields: [String: String], fileName: String?) {
        self.fields = fields
        self.fileName = fileName
    }

    public static func missingField(_ name: String) -> S3Error {
        S3Error.invalidArgument(
            "Bucket POST must contain a field named '\(name)'. "
                + "If it is specified, please check the order of the fields."
        )
    }

    public static func missingFile() -> S3Error {
        S3Error.invalidArgument("POST requires exactly one file upload per request.")
    }
}

/// Collects a form from its multipart body: fields before the file are kept (64 KiB in all),
/// the file's data goes to the caller as it comes, and every part after the file is dropped.
public struct PostFormReader {
    public enum Part {
        case field(String)
        case file
        case ignored
    }

    /// S3's limit on the fields before the file.
    public static let maxFieldsByteCount = 64 << 10

    private var parser: MultipartFormParser
    private(set) var fields: [String: String] = [:]
    private(set) var fileName: String?
    private var part: Part?
    private var value: [UInt8] = []
    private var fieldsByteCount = 0

    public init(boundary: String) {
        parser = MultipartFormParser(boundary: boundary)
    }

    /// The file part has begun: the fields that count are all known.
    public var fileStarted: Bool { fileName != nil }
    public var form: PostForm { PostForm(fields: fields, fileName: fileName) }

    public mutating func feed(
        _ bytes: UnsafeRawBufferPointer, writeFile: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        var parser = self.parser
        defer { self.parser = parser }
        try parser.feed(bytes) { event in try take(event, writeFile: writeFile) }
    }

    /// The form, once the body has ended; throws if it ended before the closing boundary.
    public func finish() throws -> PostForm {
        guard parser.isComplete else {
            throw MultipartFormParser.malformed("the body ended before the closing boundary")
        }
        return form
    }

    private mutating func take(
        _ event: MultipartFormParser.Event, writeFile: (UnsafeRawBufferPointer) throws -> Void
    ) throws {
        switch event {
        case .begin(let headers):
            let name = headers.name.lowercased()
            if fileName != nil {
                part = .ignored
            } else if name == "file" {
                fileName = headers.filename ?? ""
                part = .file
            } else {
                guard fields[name] == nil else {
                    throw S3Error.invalidArgument("The form field '\(name)' is given more than once.")
                }
                try addFieldBytes(name.utf8.count)
                part = .field(name)
                value = []
            }
        case .data(let piece):
            switch part {
            case .file?:
                try writeFile(piece)
            case .field?:
                try addFieldBytes(piece.count)
                value.append(contentsOf: piece)
            case .ignored?, nil:
                break
            }
        case .end:
            if case .field(let name)? = part { fields[name] = String(decoding: value, as: UTF8.self) }
            value = []
            part = nil
        }
    }

    private mutating func addFieldBytes(_ byteCount: Int) throws {
        fieldsByteCount += byteCount
        guard fieldsByteCount <= Self.maxFieldsByteCount else {
            throw S3Error(
                "MaxPostPreDataLengthExceeded", .badRequest,
                "Your POST request fields preceding the upload file were too large.")
        }
    }
}
