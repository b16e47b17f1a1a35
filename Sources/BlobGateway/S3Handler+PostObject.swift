import BlobS3Wire
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
        var options = PutOptions(contentType: accepted.contentType, metadata: metadata)
        options.bucket = bucket
        let result = try await client.put(.file(spool), to: accepted.path, options: options)
        return Self.postResponse(
            fields: received.form.fields, bucket: bucket, key: accepted.upload.key, etag: Self.etag(result.file))
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
            let handle = FileHandle(forWritingAtPath: spool)
        else {
            throw S3Error(
                "InternalError", .internalServerError, "cannot create a spool file in \(configuration.spoolDirectory)")
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
        return AcceptedPost(
            upload: upload, path: path, contentType: declared ?? ContentTypes.forPath(path.value),
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
            throw S3Error(
                "MetadataTooLarge", .badRequest,
                "Your metadata headers exceed the maximum allowed metadata size (2 KiB).")
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
            let body =
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<PostResponse>"
                + [
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
            !base.contains(where: { $0.isWhitespace || $0.isNewline })
        else { return nil }
        let fragmentStart = base.firstIndex(of: "#") ?? base.endIndex
        let head = String(base[..<fragmentStart])
        let fragment = String(base[fragmentStart...])
        let query = [("bucket", bucket), ("key", key), ("etag", etag)]
            .map { "\($0.0)=\(SigV4.uriEncode($0.1, keepSlash: false))" }.joined(separator: "&")
        let separator = head.contains("?") ? "&" : "?"
        return head + separator + query + fragment
    }
}
