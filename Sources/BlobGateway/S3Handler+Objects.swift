import BlobS3Wire
import BlobClient
import BlobCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Object reads (ranges, conditionals) and deletes; writes and copies are in
/// S3Handler+ObjectWrites.swift and S3Handler+CopyObject.swift.
extension S3Handler {
    // MARK: Objects

    /// S3's ETag of a version, quoted: the MD5 kept when the gateway wrote it, else the SHA-256
    /// (files put with blobctl).
    static func etag(_ file: FileVersion) -> String {
        "\"" + (file.metadata?[ObjectAttribute.etag] ?? file.sha256) + "\""
    }

    func headers(for file: FileVersion) -> HTTPFields {
        var headers = HTTPFields()
        headers[.eTag] = Self.etag(file)
        headers[.lastModified] = HTTPDate.format(file.createdAtMilliseconds)
        headers[.contentType] = file.contentType.isEmpty ? "application/octet-stream" : file.contentType
        headers[.acceptRanges] = "bytes"
        for (name, value) in file.metadata ?? [:] {
            if ObjectAttribute.isAttribute(name) {
                let header = String(name.dropFirst())
                if ObjectAttribute.storedHeaders.contains(header), let field = HTTPField.Name(header) {
                    headers[field] = value
                }
            } else if let field = HTTPField.Name("x-amz-meta-" + name) {
                headers[field] = value
            }
        }
        return headers
    }

    /// The request's `x-amz-meta-*` headers (names lowercased, without the prefix) and the
    /// stored headers (Cache-Control, Expires, …) as attributes; nil when none. S3 allows 2 KiB
    /// of user metadata in all.
    static func userMetadata(_ request: Request) throws -> [String: String]? {
        var out: [String: String] = [:]
        var user = 0
        for field in request.headers {
            let name = field.name.canonicalName.lowercased()
            if ObjectAttribute.storedHeaders.contains(name) {
                var value = field.value
                if name == "content-encoding" {
                    // aws-chunked describes the request body, not the object: S3 drops it.
                    value = value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
                        .filter { !$0.isEmpty && $0.lowercased() != "aws-chunked" }.joined(separator: ",")
                    if value.isEmpty { continue }
                }
                out[ObjectAttribute.header(name)] = value
                continue
            }
            guard name.hasPrefix("x-amz-meta-") else { continue }
            let key = String(name.dropFirst("x-amz-meta-".count))
            user += key.utf8.count + field.value.utf8.count
            out[key] = out[key].map { $0 + "," + field.value } ?? field.value
        }
        guard !out.isEmpty else { return nil }
        guard user <= ManifestCommit.maxMetadataByteCount else {
            throw S3Error(
                "MetadataTooLarge", .badRequest,
                "Your metadata headers exceed the maximum allowed metadata size (2 KiB).")
        }
        return out
    }

    /// GET and HEAD: conditional requests (RFC 9110 order), single ranges (`N-M`, `N-`, `-N`),
    /// 206 with Content-Range, 416 with `bytes */SIZE`. The body streams with a bounded
    /// read-ahead, so a reader that stops early costs a few chunks.
    func getObject(_ path: BlobPath, _ request: Request, head: Bool, bucket: String) async throws -> Response {
        // One master round trip where it can be: the plan of the bytes asked for carries the
        // file's facts too. A suffix range, If-Range or HEAD needs the facts first (stat).
        var plan: ReadPlan?
        let file: FileVersion
        do {
            let rangeText = request.headers[.range]
            if !head, request.headers[HTTPField.Name("If-Range")!] == nil,
                let (start, last) = rangeText.map(S3Headers.explicitStart) ?? (0, nil)
            {
                do {
                    // An open-ended read plans its first page only; the stream plans the rest.
                    plan = try await client.readPlan(
                        path, offset: start, length: last.map { $0 - start + 1 } ?? ClusterClient.firstPlanPageByteCount
                    )
                } catch let error as BlobError where error.code == .invalidArgument {
                    plan = nil  // starts past the end: the stat below answers 416
                }
            }
            if let planned = plan?.file {
                file = planned
            } else {
                file = try await client.stat(path)
            }
        } catch let error as BlobError where error.code == .notFound {
            _ = try await requireBucket(bucket)
            throw S3Error.noSuchKey()
        }
        var headers = headers(for: file)
        let etag = Self.etag(file)
        let modifiedSeconds = file.createdAtMilliseconds / 1000
        if let notModified = try Self.conditionalAnswer(request, file: file, headers: headers) { return notModified }
        var range: (Int64, Int64)?
        if let rangeText = request.headers[.range] {
            var honour = true
            if let ifRange = request.headers[HTTPField.Name("If-Range")!] {
                if ifRange.hasPrefix("\"") || ifRange.hasPrefix("W/") {
                    honour = ifRange == etag
                } else {
                    honour = HTTPDate.parse(ifRange).map { modifiedSeconds == $0 } ?? false
                }
            }
            if honour, let parsed = try S3Headers.range(rangeText, size: file.size) { range = parsed }
        }
        let offset = range?.0 ?? 0
        let end = range.map { $0.1 + 1 } ?? file.size
        headers[.contentLength] = String(end - offset)
        // The stored checksum covers the whole object: sent on request with a whole answer only
        // (not with a 304, a 206 or an error).
        if range == nil, request.headers[HTTPField.Name("x-amz-checksum-mode")!]?.uppercased() == "ENABLED" {
            Self.addChecksumHeaders(file, to: &headers)
        }
        var status = HTTPResponse.Status.ok
        if let range {
            status = .partialContent
            headers[.contentRange] = "bytes \(range.0)-\(range.1)/\(file.size)"
        }
        if head || end == offset {
            return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer()))
        }
        // The plan must start where the answer does; where it ends before the answer does, the
        // stream plans the rest a page at a time.
        let startsHere = plan.map { $0.chunks.first.map { $0.chunk.offset <= offset } == true } ?? false
        let readPlan: ReadPlan
        if startsHere, let plan {
            readPlan = plan
        } else {
            readPlan = try await client.readPlan(
                path, offset: offset, length: min(end - offset, ClusterClient.firstPlanPageByteCount))
        }
        guard readPlan.file.sha256 == file.sha256, readPlan.file.version == file.version else {
            throw S3Error("ServiceUnavailable", .serviceUnavailable, "the object changed while being read; retry")
        }
        let client = self.client
        let whole = range == nil
        let body = ResponseBody(contentLength: Int(end - offset)) { writer in
            _ = try await client.stream(
                readPlan, of: path, offset: offset, end: end, readAhead: 4, checkWholeFile: whole
            ) { slice in
                try await writer.write(ByteBuffer(bytes: slice))
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// The conditional headers of a read (RFC 9110 order) against the object's ETag and time:
    /// 412 thrown for If-Match or If-Unmodified-Since, a 304 answer for If-None-Match or
    /// If-Modified-Since, nil to go on.
    static func conditionalAnswer(_ request: Request, file: FileVersion, headers: HTTPFields) throws -> Response? {
        let etag = Self.etag(file)
        let modifiedSeconds = file.createdAtMilliseconds / 1000
        if let ifMatch = request.headers[.ifMatch], !S3Headers.etagMatches(ifMatch, etag, weak: false) {
            throw S3Error(
                "PreconditionFailed", .preconditionFailed,
                "At least one of the pre-conditions you specified did not hold")
        }
        if request.headers[.ifMatch] == nil, let since = request.headers[.ifUnmodifiedSince].flatMap(HTTPDate.parse),
            modifiedSeconds > since
        {
            throw S3Error(
                "PreconditionFailed", .preconditionFailed,
                "At least one of the pre-conditions you specified did not hold")
        }
        if let ifNoneMatch = request.headers[.ifNoneMatch] {
            if S3Headers.etagMatches(ifNoneMatch, etag) { return Response(status: .notModified, headers: headers) }
        } else if let since = request.headers[.ifModifiedSince].flatMap(HTTPDate.parse), modifiedSeconds <= since {
            return Response(status: .notModified, headers: headers)
        }
        return nil
    }

    func deleteObject(_ path: BlobPath, bucket: String) async throws -> Response {
        _ = try await requireBucket(bucket)
        do {
            _ = try await client.delete(path)
        } catch let error as BlobError where error.code == .notFound {
            // S3 answers 204 for a key that is not there.
        }
        return Response(status: .noContent)
    }

    /// DeleteObjects: up to 1,000 keys; each result is reported (only errors when Quiet).
    func deleteObjects(_ bucket: String, _ request: Request) async throws -> Response {
        _ = try await requireBucket(bucket)
        let body = String(buffer: try await request.body.collect(upTo: 2 << 20))
        let keys = XML.elements("Key", in: body).map(XML.unescape)
        guard !keys.isEmpty, keys.count <= 1000 else {
            throw S3Error(
                "MalformedXML", .badRequest,
                "The XML you provided was not well-formed or did not validate against our published schema "
                    + "(1 to 1000 keys)."
            )
        }
        let quiet = XML.elements("Quiet", in: body).first?.lowercased() == "true"
        var children: [String] = []
        for key in keys {
            do {
                _ = try await client.delete(try objectPath(bucket, key))
                if !quiet { children.append(XML.element("Deleted", children: [XML.element("Key", key)])) }
            } catch let error as BlobError where error.code == .notFound {
                if !quiet { children.append(XML.element("Deleted", children: [XML.element("Key", key)])) }
            } catch {
                let s3 = S3Error.from(error)
                children.append(
                    XML.element(
                        "Error",
                        children: [
                            XML.element("Key", key), XML.element("Code", s3.code),
                            XML.element("Message", s3.message),
                        ]))
            }
        }
        return xmlResponse(XML.document("DeleteResult", children))
    }
}
