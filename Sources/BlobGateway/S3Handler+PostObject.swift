import BlobClient
import BlobCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// S3's POST Object: browser form uploads (`POST /BUCKET`, multipart/form-data), signed by the
/// form's own policy (Signature Version 2 or 4) rather than by headers or the query.
extension S3Handler {
    // MARK: POST Object

    /// Whether a request carries a browser form: `multipart/form-data` with a boundary. The router
    /// sends such a `POST /BUCKET` here before any header or query authentication.
    static func isPostObjectForm(_ request: Request) -> Bool {
        request.headers[.contentType].flatMap(MultipartFormParser.boundary(contentType:)) != nil
    }

    /// The form's fields are read first (at most 64 KiB in all); once the file part starts, the
    /// signature, the policy and the bucket are checked, then the file streams to a spool file
    /// and is stored as putObject stores a body. Fields after the file are ignored, as S3 does.
    func postObject(_ bucket: String, _ request: Request) async throws -> Response {
        guard let boundary = request.headers[.contentType].flatMap(MultipartFormParser.boundary(contentType:)) else {
            throw MultipartFormParser.malformed("the Content-Type is not multipart/form-data with a boundary")
        }
        let spool = configuration.spoolDirectory + "/post-\(UUID().uuidString)"
        defer { unlink(spool) }
        let received = try await receivePost(request, boundary: boundary, bucket: bucket, spool: spool)
        let accepted = received.accepted
        try accepted.upload.policy.checkContentLength(received.byteCount)
        var metadata = accepted.metadata ?? [:]
        metadata[ObjectAttribute.etag] = SigV4.hex(received.md5)
        let result = try await client.put(.file(spool), to: accepted.path,
                                          options: PutOptions(contentType: accepted.contentType, metadata: metadata))
        return Self.postResponse(fields: received.form.fields, bucket: bucket, key: accepted.upload.key, etag: Self.etag(result.file))
    }

    /// A form whose signature, policy and bucket were checked: where and how the file is stored.
    struct AcceptedPost {
        var upload: PostUpload
        var path: BlobPath
        var contentType: String
        var metadata: [String: String]?
    }

    struct ReceivedPost {
        var form: PostForm
        var accepted: AcceptedPost
        var byteCount: Int64
        /// The file's MD5, S3's ETag of a single-part object.
        var md5: [UInt8]
    }

    /// Reads the whole form, the file going to `spool` (0600). The form is accepted (or refused)
    /// as soon as the file part starts, so a refused upload costs at most one body buffer on disk;
    /// an accepted one stops at the policy's largest content length or 5 GiB.
    func receivePost(_ request: Request, boundary: String, bucket: String, spool: String) async throws -> ReceivedPost {
        guard FileManager.default.createFile(atPath: spool, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: spool) else {
            throw S3Error("InternalError", .internalServerError, "cannot create a spool file in \(configuration.spoolDirectory)")
        }
        defer { try? handle.close() }
        var reader = PostFormReader(boundary: boundary)
        var accepted: AcceptedPost?
        var byteCount: Int64 = 0
        var byteLimit = Self.maxObjectByteCount
        var md5 = Insecure.MD5()
        for try await buffer in request.body {
            try buffer.withUnsafeReadableBytes { raw in
                try reader.feed(raw) { piece in
                    byteCount += Int64(piece.count)
                    guard byteCount <= byteLimit else { throw PostPolicy.entityTooLarge() }
                    md5.update(bufferPointer: piece)
                    try handle.write(contentsOf: Data(piece))
                }
            }
            if accepted == nil, reader.fileStarted {
                let post = try await acceptPost(reader.form, bucket: bucket)
                byteLimit = min(byteLimit, post.upload.policy.maxContentLength ?? byteLimit)
                guard byteCount <= byteLimit else { throw PostPolicy.entityTooLarge() }
                accepted = post
            }
        }
        let form = try reader.finish()
        guard form.fileName != nil, let acceptedPost = accepted else {
            if form.fields["key"] == nil { throw PostForm.missingField("key") }
            throw PostForm.missingFile()
        }
        return ReceivedPost(form: form, accepted: acceptedPost, byteCount: byteCount, md5: Array(md5.finalize()))
    }

    /// Signature and policy first (nothing about the bucket is told to an unsigned form), then
    /// the bucket, the key and the metadata.
    func acceptPost(_ form: PostForm, bucket: String) async throws -> AcceptedPost {
        let upload = try await form.authorize(bucket: bucket, secret: { id in try await keys.secret(for: id) })
        _ = try await requireBucket(bucket)
        let path = try objectPath(bucket, upload.key)
        let metadata = try Self.formMetadata(form.fields)
        let declared = form.fields["content-type"].flatMap { $0.isEmpty ? nil : $0 }
        return AcceptedPost(upload: upload, path: path, contentType: declared ?? ContentTypes.forPath(path.value),
                            metadata: metadata)
    }

    /// The form's `x-amz-meta-*` fields (names lowercased, without the prefix) and stored headers
    /// (Cache-Control, Expires, …) as attributes, by the rules of ``userMetadata(_:)``: nil when
    /// none, 2 KiB of user metadata in all. Unlike a header's, a field's name may hold any
    /// character: one that could not be a header name is refused, so a form cannot set an
    /// attribute (`x-amz-meta-:etag`) that headers cannot.
    static func formMetadata(_ fields: [String: String]) throws -> [String: String]? {
        var out: [String: String] = [:]
        var user = 0
        for (name, value) in fields {
            if ObjectAttribute.storedHeaders.contains(name) {
                out[ObjectAttribute.header(name)] = value
                continue
            }
            guard name.hasPrefix("x-amz-meta-") else { continue }
            let key = String(name.dropFirst("x-amz-meta-".count))
            guard HTTPField.Name(name) != nil, !key.isEmpty, !ObjectAttribute.isAttribute(key) else {
                throw S3Error.invalidArgument("The form field \(name) is not a valid metadata name.")
            }
            user += key.utf8.count + value.utf8.count
            out[key] = value
        }
        guard !out.isEmpty else { return nil }
        guard user <= ManifestCommit.maxMetadataByteCount else {
            throw S3Error("MetadataTooLarge", .badRequest, "Your metadata headers exceed the maximum allowed metadata size (2 KiB).")
        }
        return out
    }

    /// S3's answers to a stored form: 303 to `success_action_redirect` (or `redirect`) with
    /// `bucket`, `key` and `etag` appended; else `success_action_status` 200 or 204 (empty), 201
    /// (a PostResponse document); 204 when absent or anything else.
    static func postResponse(fields: [String: String], bucket: String, key: String, etag: String) -> Response {
        let location = "/\(bucket)/" + SigV4.uriEncode(key, keepSlash: true)
        var headers = HTTPFields()
        headers[.eTag] = etag
        headers[.location] = location
        let redirect = fields["success_action_redirect"] ?? fields["redirect"]
        if let target = redirect.flatMap({ redirectLocation($0, bucket: bucket, key: key, etag: etag) }) {
            headers[.location] = target
            return Response(status: .seeOther, headers: headers)
        }
        switch fields["success_action_status"] {
        case "200":
            return Response(status: .ok, headers: headers)
        case "201":
            // S3's PostResponse carries no namespace.
            let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse>" + [
                XML.element("Location", location), XML.element("Bucket", bucket),
                XML.element("Key", key), XML.element("ETag", etag),
            ].joined() + "</PostResponse>"
            headers[.contentType] = "application/xml"
            return Response(status: .created, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
        default:
            return Response(status: .noContent, headers: headers)
        }
    }

    /// The redirect URL with `?bucket=…&key=…&etag=…` appended (before any fragment); nil when it
    /// is not an absolute http(s) URL, which S3 ignores.
    static func redirectLocation(_ base: String, bucket: String, key: String, etag: String) -> String? {
        let lowered = base.lowercased()
        guard let scheme = ["http://", "https://"].first(where: { lowered.hasPrefix($0) }), base.count > scheme.count,
              !base.contains(where: { $0.isWhitespace || $0.isNewline }) else { return nil }
        let fragmentStart = base.firstIndex(of: "#") ?? base.endIndex
        let head = String(base[..<fragmentStart])
        let fragment = String(base[fragmentStart...])
        let query = [("bucket", bucket), ("key", key), ("etag", etag)]
            .map { "\($0.0)=\(SigV4.uriEncode($0.1, keepSlash: false))" }.joined(separator: "&")
        let separator = head.contains("?") ? "&" : "?"
        return head + separator + query + fragment
    }
}

// MARK: - multipart/form-data

/// A streaming multipart/form-data parser (RFC 7578, RFC 2046 §5.1): bytes go in as they arrive,
/// in pieces of any size; part starts, part data and part ends come out. It holds back at most a
/// possible start of the delimiter, or one unfinished header block (at most 8 KiB), so its memory
/// is bounded whatever the parts' sizes.
struct MultipartFormParser {
    struct PartHeaders: Sendable, Equatable {
        /// The Content-Disposition `name`, as sent.
        var name: String
        var filename: String?
        var contentType: String?
    }

    enum Event {
        case begin(PartHeaders)
        /// Valid only during the call it is given to.
        case data(UnsafeRawBufferPointer)
        case end
    }

    enum State {
        case preamble
        /// Just after a delimiter: CRLF (a part follows) or `--` (the last one).
        case afterDelimiter
        case headers
        case body
        case epilogue
    }

    static let maxHeaderBlockByteCount = 8 << 10
    static let headerBlockEnd: [UInt8] = [13, 10, 13, 10]

    /// CRLF `--` boundary: what ends a part's data.
    let delimiter: [UInt8]
    private(set) var state = State.preamble
    /// Bytes not yet used: a possible start of the delimiter, or an unfinished header block. The
    /// first delimiter has no CRLF before it (the body starts with `--boundary`): one is assumed.
    private var carry: [UInt8] = [13, 10]

    init(boundary: String) {
        delimiter = Array("\r\n--\(boundary)".utf8)
    }

    /// The closing delimiter was seen: the form is whole.
    var isComplete: Bool { state == .epilogue }

    /// The `boundary` parameter of a `multipart/form-data` Content-Type (1 to 70 characters,
    /// quotes removed); nil for any other type.
    static func boundary(contentType: String) -> String? {
        let parts = contentType.split(separator: ";")
        guard let type = parts.first, type.trimmingCharacters(in: .whitespaces).lowercased() == "multipart/form-data" else {
            return nil
        }
        for parameter in parts.dropFirst() {
            let pair = parameter.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, pair[0].trimmingCharacters(in: .whitespaces).lowercased() == "boundary" else { continue }
            var value = pair[1].trimmingCharacters(in: .whitespaces)
            if value.count >= 2, value.hasPrefix("\""), value.hasSuffix("\"") { value = String(value.dropFirst().dropLast()) }
            return (1...70).contains(value.utf8.count) ? value : nil
        }
        return nil
    }

    static func malformed(_ why: String) -> S3Error {
        S3Error("MalformedPOSTRequest", .badRequest, "The body of your POST request is not well-formed multipart/form-data: \(why).")
    }

    mutating func feed(_ bytes: UnsafeRawBufferPointer, _ handle: (Event) throws -> Void) throws {
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
                guard bytes[i] == 13, bytes[i + 1] == 10 else { throw Self.malformed("a boundary is followed by neither CRLF nor \"--\"") }
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
                    guard bytes.count - i <= Self.maxHeaderBlockByteCount + 3 else { throw Self.malformed("a part's headers are too long") }
                    return i
                }
                guard blockEnd - i <= Self.maxHeaderBlockByteCount else { throw Self.malformed("a part's headers are too long") }
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
    static func find(_ needle: [UInt8], in bytes: UnsafeRawBufferPointer, from start: Int) -> Int? {
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
    static func delimiterStartLength(_ delimiter: [UInt8], atEndOf bytes: UnsafeRawBufferPointer, from start: Int) -> Int {
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
    static func partHeaders(_ block: UnsafeRawBufferPointer) throws -> PartHeaders {
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
    static func dispositionParameters(_ value: String) -> (type: String, parameters: [String: String]) {
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
struct PostForm: Sendable, Equatable {
    /// Names lowercased (form field names are case-insensitive), values as sent.
    var fields: [String: String]
    /// The file part's filename ("" when it gave none); nil when no file part came.
    var fileName: String?

    static func missingField(_ name: String) -> S3Error {
        S3Error.invalidArgument("Bucket POST must contain a field named '\(name)'. If it is specified, please check the order of the fields.")
    }

    static func missingFile() -> S3Error { S3Error.invalidArgument("POST requires exactly one file upload per request.") }
}

/// Collects a form from its multipart body: fields before the file are kept (64 KiB in all),
/// the file's data goes to the caller as it comes, and every part after the file is dropped.
struct PostFormReader {
    enum Part {
        case field(String)
        case file
        case ignored
    }

    /// S3's limit on the fields before the file.
    static let maxFieldsByteCount = 64 << 10

    private var parser: MultipartFormParser
    private(set) var fields: [String: String] = [:]
    private(set) var fileName: String?
    private var part: Part?
    private var value: [UInt8] = []
    private var fieldsByteCount = 0

    init(boundary: String) {
        parser = MultipartFormParser(boundary: boundary)
    }

    /// The file part has begun: the fields that count are all known.
    var fileStarted: Bool { fileName != nil }
    var form: PostForm { PostForm(fields: fields, fileName: fileName) }

    mutating func feed(_ bytes: UnsafeRawBufferPointer, writeFile: (UnsafeRawBufferPointer) throws -> Void) throws {
        var parser = self.parser
        defer { self.parser = parser }
        try parser.feed(bytes) { event in try take(event, writeFile: writeFile) }
    }

    /// The form, once the body has ended; throws if it ended before the closing boundary.
    func finish() throws -> PostForm {
        guard parser.isComplete else { throw MultipartFormParser.malformed("the body ended before the closing boundary") }
        return form
    }

    private mutating func take(_ event: MultipartFormParser.Event, writeFile: (UnsafeRawBufferPointer) throws -> Void) throws {
        switch event {
        case .begin(let headers):
            let name = headers.name.lowercased()
            if fileName != nil {
                part = .ignored
            } else if name == "file" {
                fileName = headers.filename ?? ""
                part = .file
            } else {
                guard fields[name] == nil else { throw S3Error.invalidArgument("The form field '\(name)' is given more than once.") }
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
            throw S3Error("MaxPostPreDataLengthExceeded", .badRequest, "Your POST request fields preceding the upload file were too large.")
        }
    }
}

// MARK: - Signature and policy

/// A form that passed its signature and policy: the key to store (with `${filename}` replaced).
struct PostUpload: Sendable {
    var key: String
    var policy: PostPolicy
    var accessKeyID: String
}

extension PostForm {
    /// Checks the form as S3 does: `key` present, the policy signed by a known key (V4 when any
    /// `x-amz-algorithm`, `x-amz-credential` or `x-amz-signature` field is given, else V2), the
    /// policy well-formed, unexpired and met by every field (the key after `${filename}` is
    /// replaced, so the stored key is the one the policy allows). A form without a policy is
    /// refused: anonymous uploads are not supported.
    func authorize(bucket: String, secret: (String) async throws -> String?, now: Date = Date()) async throws -> PostUpload {
        guard let rawKey = fields["key"] else { throw Self.missingField("key") }
        let (accessKeyID, policyText) = try await verifySignature(secret: secret)
        let policy = try PostPolicy(base64: policyText)
        let key = rawKey.replacingOccurrences(of: "${filename}", with: fileName ?? "")
        guard !key.isEmpty else { throw S3Error.invalidArgument("User key must have a length greater than 0.") }
        var checked = fields
        checked["key"] = key
        try policy.check(fields: checked, bucket: bucket, now: now)
        // Objects take their bucket's access: an ACL field is only checked against the policy.
        if let acl = fields["acl"], acl != "private", acl != "public-read" { throw S3Error.notImplemented("the canned ACL \(acl)") }
        return PostUpload(key: key, policy: policy, accessKeyID: accessKeyID)
    }

    /// The access key and the (base64) policy it signed.
    func verifySignature(secret: (String) async throws -> String?) async throws -> (accessKeyID: String, policy: String) {
        guard let policy = fields["policy"] else { throw Self.missingField("Policy") }
        if fields["x-amz-algorithm"] != nil || fields["x-amz-credential"] != nil || fields["x-amz-signature"] != nil {
            guard let algorithm = fields["x-amz-algorithm"] else { throw Self.missingField("X-Amz-Algorithm") }
            guard algorithm == SigV4.algorithm else { throw S3Error.invalidArgument("X-Amz-Algorithm only supports 'AWS4-HMAC-SHA256'") }
            guard let credentialText = fields["x-amz-credential"] else { throw Self.missingField("X-Amz-Credential") }
            guard let amzDate = fields["x-amz-date"] else { throw Self.missingField("X-Amz-Date") }
            guard let signature = fields["x-amz-signature"] else { throw Self.missingField("X-Amz-Signature") }
            let credential = try SigV4.Credential(credentialText)
            guard SigV4.parseAmzDate(amzDate) != nil, amzDate.hasPrefix(credential.date) else {
                throw S3Error.invalidArgument("X-Amz-Date must be yyyyMMdd'T'HHmmss'Z' on the credential's date")
            }
            guard let secretKey = try await secret(credential.accessKeyID) else { throw S3Error.invalidAccessKey() }
            let expected = PostSignature.v4(policy: policy, secret: secretKey, credential: credential)
            guard SigV4.constantTimeEqual(expected, signature.lowercased()) else { throw S3Error.signatureDoesNotMatch() }
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
enum PostSignature {
    /// Signature Version 2: base64(HMAC-SHA1(secret, policy)).
    static func v2(policy: String, secret: String) -> String {
        let mac = HMAC<Insecure.SHA1>.authenticationCode(for: Array(policy.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        return Data(mac).base64EncodedString()
    }

    /// Signature Version 4: hex(HMAC-SHA256(signing key of the credential's scope, policy)).
    static func v4(policy: String, secret: String, credential: SigV4.Credential) -> String {
        SigV4.hex(SigV4.hmac(SigV4.signingKey(secret: secret, credential: credential), policy))
    }
}

/// A POST policy (base64 JSON): `expiration` (ISO 8601, UTC) and `conditions`, each an object
/// with one field (exact match), `["eq" | "starts-with", "$field", "value"]`, or
/// `["content-length-range", min, max]`. Element names are case-sensitive, field names are not.
struct PostPolicy: Sendable, Equatable {
    enum Condition: Sendable, Equatable, CustomStringConvertible {
        case equals(field: String, value: String)
        case startsWith(field: String, prefix: String)
        case contentLengthRange(min: Int64, max: Int64)

        /// The (lowercased) field it is about.
        var field: String {
            switch self {
            case .equals(let field, _), .startsWith(let field, _): field
            case .contentLengthRange: "content-length-range"
            }
        }

        var description: String {
            switch self {
            case .equals(let field, let value): "[\"eq\", \"$\(field)\", \(PostPolicy.quoted(value))]"
            case .startsWith(let field, let prefix): "[\"starts-with\", \"$\(field)\", \(PostPolicy.quoted(prefix))]"
            case .contentLengthRange(let min, let max): "[\"content-length-range\", \(min), \(max)]"
            }
        }

        /// Content length is checked once the file is in (``PostPolicy/checkContentLength(_:)``).
        func isMet(by value: String) -> Bool {
            switch self {
            case .equals(_, let expected):
                return value == expected
            case .startsWith(let field, let prefix):
                // S3: each of several comma-separated content types must start with the prefix.
                if field == "content-type", value.contains(",") {
                    return value.split(separator: ",").allSatisfy { $0.trimmingCharacters(in: .whitespaces).hasPrefix(prefix) }
                }
                return value.hasPrefix(prefix)
            case .contentLengthRange:
                return true
            }
        }
    }

    var expiration: Date
    var conditions: [Condition]

    /// Fields no condition needs to name.
    static let exemptFields: Set<String> = ["file", "policy", "signature", "x-amz-signature", "awsaccesskeyid"]

    static func invalid(_ why: String) -> S3Error { S3Error("InvalidPolicyDocument", .badRequest, "Invalid Policy: \(why)") }
    static func entityTooLarge() -> S3Error {
        S3Error("EntityTooLarge", .badRequest, "Your proposed upload exceeds the maximum allowed size.")
    }
    static func entityTooSmall() -> S3Error {
        S3Error("EntityTooSmall", .badRequest, "Your proposed upload is smaller than the minimum allowed size.")
    }

    /// The policy field as sent (whitespace, which some encoders wrap lines with, is ignored).
    init(base64 text: String) throws {
        guard let json = Data(base64Encoded: text.filter { !$0.isWhitespace }) else { throw Self.invalid("Invalid Base64 Encoding.") }
        try self.init(json: json)
    }

    init(json: Data) throws {
        let document: PolicyJSON
        do {
            document = try JSONDecoder().decode(PolicyJSON.self, from: json)
        } catch {
            throw Self.invalid("Invalid JSON.")
        }
        guard case .object(let top) = document else { throw Self.invalid("The policy must be a JSON object.") }
        guard case .string(let expirationText)? = top["expiration"] else { throw Self.invalid("Policy missing expiration.") }
        guard let expiration = Self.parseExpiration(expirationText) else {
            throw Self.invalid("Invalid 'expiration' value: '\(expirationText)'")
        }
        guard case .array(let items)? = top["conditions"] else { throw Self.invalid("Policy missing conditions.") }
        self.expiration = expiration
        self.conditions = try items.map(Self.condition)
    }

    /// `yyyy-MM-ddTHH:mm:ss[.fraction]Z`, nothing else.
    static func parseExpiration(_ text: String) -> Date? {
        let bytes = Array(text.utf8)
        let shape = Array("dddd-dd-ddTdd:dd:dd".utf8)
        guard bytes.count > shape.count, bytes.last == UInt8(ascii: "Z") else { return nil }
        for (byte, expected) in zip(bytes, shape) {
            let fits = expected == UInt8(ascii: "d") ? (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) : byte == expected
            guard fits else { return nil }
        }
        let fraction = bytes[shape.count..<(bytes.count - 1)]
        if let dot = fraction.first {
            guard dot == UInt8(ascii: "."), fraction.count > 1,
                  fraction.dropFirst().allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else { return nil }
        }
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime]
        formatter.timeZone = TimeZone(identifier: "UTC")
        guard let seconds = formatter.date(from: String(decoding: bytes[0..<shape.count], as: UTF8.self) + "Z") else { return nil }
        let subsecond = fraction.isEmpty ? 0 : Double("0" + String(decoding: fraction, as: UTF8.self)) ?? 0
        return seconds.addingTimeInterval(subsecond)
    }

    static func condition(_ item: PolicyJSON) throws -> Condition {
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
            guard case .string(let operation)? = elements.first else { throw invalid("A condition array must start with its operation.") }
            switch operation.lowercased() {
            case "eq", "starts-with":
                guard elements.count == 3, case .string(let name) = elements[1], let field = fieldName(name, dollar: true),
                      let value = elements[2].text else {
                    throw invalid("Condition '\(operation)' takes a $field and a string value.")
                }
                return operation.lowercased() == "eq" ? .equals(field: field, value: value) : .startsWith(field: field, prefix: value)
            case "content-length-range":
                guard elements.count == 3, case .integer(let min) = elements[1], case .integer(let max) = elements[2],
                      min >= 0, min <= max else {
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
    static func fieldName(_ raw: String, dollar needsDollar: Bool) -> String? {
        guard !needsDollar || raw.hasPrefix("$") else { return nil }
        let name = (raw.hasPrefix("$") ? String(raw.dropFirst()) : raw).lowercased()
        return name.isEmpty ? nil : name
    }

    static func isExempt(_ field: String) -> Bool { exemptFields.contains(field) || field.hasPrefix("x-ignore-") }

    /// Unexpired, every field named by a condition, every condition met (`bucket` against the
    /// bucket the form was posted to; a field the form lacks counts as empty). The policy must
    /// name its bucket: every key acts for the one owner of all buckets, so a policy handed to a
    /// browser for one bucket must not write into the others.
    func check(fields: [String: String], bucket: String, now: Date = Date()) throws {
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
    var maxContentLength: Int64? {
        var smallest: Int64?
        for case .contentLengthRange(_, let max) in conditions {
            smallest = Swift.min(smallest ?? max, max)
        }
        return smallest
    }

    func checkContentLength(_ byteCount: Int64) throws {
        for case .contentLengthRange(let min, let max) in conditions {
            if byteCount > max { throw Self.entityTooLarge() }
            if byteCount < min { throw Self.entityTooSmall() }
        }
    }

    static func quoted(_ text: String) -> String {
        "\"" + text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
    }
}

/// Any JSON value, integers kept apart from other numbers.
enum PolicyJSON: Decodable, Equatable {
    case string(String)
    case integer(Int64)
    case number(Double)
    case bool(Bool)
    case null
    case array([PolicyJSON])
    case object([String: PolicyJSON])

    init(from decoder: any Decoder) throws {
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
    var text: String? {
        switch self {
        case .string(let value): value
        case .integer(let value): String(value)
        default: nil
        }
    }
}
