import BlobClient
import BlobCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Multipart uploads: parts are files, completion composes their manifests on the master.
extension S3Handler {
    // MARK: Multipart uploads

    func requireUpload(_ id: String, path: BlobPath) async throws -> MultipartUpload {
        let upload: MultipartUpload
        do {
            upload = try await client.upload(id)
        } catch let error as BlobError where error.code == .notFound || error.code == .invalidArgument {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")
        }
        guard upload.path == path else {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist for this key.")
        }
        return upload
    }

    func createUpload(_ path: BlobPath, bucket: String, key: String, _ request: Request) async throws -> Response {
        _ = try await requireBucket(bucket)
        let metadata = try Self.userMetadata(request)
        let contentType = request.headers[.contentType] ?? ContentTypes.forPath(path.value)
        let upload = try await client.createUpload(to: path, contentType: contentType, metadata: metadata)
        return xmlResponse(XML.document("InitiateMultipartUploadResult", [
            XML.element("Bucket", bucket), XML.element("Key", key), XML.element("UploadId", upload.id),
        ]))
    }

    /// A part is stored like any file (chunked, deduplicated, compressed) at the upload's part path.
    func uploadPart(_ upload: MultipartUpload, number: Int, _ request: Request, _ verified: SigV4.Verified) async throws -> Response {
        let spool = configuration.spoolDirectory + "/part-\(UUID().uuidString)"
        defer { unlink(spool) }
        let received = try await spoolBody(request, verified, to: spool)
        if let md5 = request.headers[HTTPField.Name("Content-MD5")!] {
            guard Data(base64Encoded: md5).map({ [UInt8]($0) }) == received.md5 else {
                throw S3Error("BadDigest", .badRequest, "The Content-MD5 you specified did not match what we received.")
            }
        }
        let result: PutResult
        do {
            result = try await client.put(.file(spool), to: try upload.partPath(number),
                                          options: PutOptions(contentType: "application/octet-stream"))
        } catch let error as BlobError where error.reason == "upload.notFound" {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist: it was completed or aborted.")
        }
        var headers = HTTPFields()
        headers[.eTag] = "\"\(result.file.sha256)\""
        return Response(status: .ok, headers: headers)
    }

    func uploadPartCopy(_ upload: MultipartUpload, number: Int, from source: String, _ request: Request) async throws -> Response {
        if request.headers[HTTPField.Name("x-amz-copy-source-range")!] != nil {
            throw S3Error.notImplemented("x-amz-copy-source-range")
        }
        let version = try await copyVersion(from: source, to: try upload.partPath(number))
        return xmlResponse(XML.document("CopyPartResult", [
            XML.element("LastModified", XML.timestamp(version.createdAtMilliseconds)),
            XML.element("ETag", "\"\(version.sha256)\""),
        ]))
    }

    func listParts(_ upload: MultipartUpload, bucket: String, key: String, _ query: [String: String]) async throws -> Response {
        let maxParts = min(1000, Int(query["max-parts"] ?? "1000") ?? 1000)
        let marker = Int(query["part-number-marker"] ?? "0") ?? 0
        var parts: [(Int, FileVersion)] = []
        var after: String? = marker > 0 ? try upload.partPath(marker).value : nil
        var truncated = false
        outer: while true {
            let page = try await client.list(prefix: upload.partsPrefix, after: after, limit: 1000)
            for file in page.files {
                if parts.count == maxParts {
                    truncated = maxParts > 0
                    break outer
                }
                if let number = Int(file.path.value.dropFirst(upload.partsPrefix.count)) { parts.append((number, file)) }
                after = file.path.value
            }
            if page.next == nil { break }
        }
        var children = [XML.element("Bucket", bucket), XML.element("Key", key), XML.element("UploadId", upload.id),
                         XML.element("PartNumberMarker", String(marker)), XML.element("MaxParts", String(maxParts)),
                         XML.element("IsTruncated", truncated ? "true" : "false"), XML.element("StorageClass", "STANDARD")]
        if truncated, let last = parts.last { children.append(XML.element("NextPartNumberMarker", String(last.0))) }
        for (number, file) in parts {
            children.append(XML.element("Part", children: [
                XML.element("PartNumber", String(number)), XML.element("LastModified", XML.timestamp(file.createdAtMilliseconds)),
                XML.element("ETag", "\"\(file.sha256)\""), XML.element("Size", String(file.size)),
            ]))
        }
        return xmlResponse(XML.document("ListPartsResult", children))
    }

    /// Completion: the parts' manifests in order become the object's; no bytes are copied.
    func completeUpload(_ upload: MultipartUpload, bucket: String, key: String, _ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 4 << 20)
        let parts = try Self.parseCompletion(String(buffer: body))
        guard !parts.isEmpty else { throw S3Error("MalformedXML", .badRequest, "The XML you provided was not well-formed or did not validate against our published schema.") }
        for i in 1..<max(1, parts.count) where parts[i].number <= parts[i - 1].number {
            throw S3Error("InvalidPartOrder", .badRequest, "The list of parts was not in ascending order. Parts must be ordered by part number.")
        }
        let version: FileVersion
        do {
            version = try await client.completeUpload(upload.id, parts: parts)
        } catch let error as BlobError where error.reason == "upload.invalidPart" {
            throw S3Error("InvalidPart", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.partTooSmall" {
            throw S3Error("EntityTooSmall", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.partOrder" {
            throw S3Error("InvalidPartOrder", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.notFound" {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist: it may have been completed or aborted.")
        }
        return xmlResponse(XML.document("CompleteMultipartUploadResult", [
            XML.element("Location", "/\(bucket)/\(key)"), XML.element("Bucket", bucket), XML.element("Key", key),
            XML.element("ETag", "\"\(version.sha256)\""),
        ]))
    }

    /// `<Part><PartNumber>N</PartNumber><ETag>"…"</ETag></Part>` entries, in document order.
    static func parseCompletion(_ xml: String) throws -> [CompletedPart] {
        var parts: [CompletedPart] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<Part>") {
            guard let close = rest.range(of: "</Part>", range: open.upperBound..<rest.endIndex) else {
                throw S3Error("MalformedXML", .badRequest, "The XML you provided was not well-formed or did not validate against our published schema.")
            }
            let block = String(rest[open.upperBound..<close.lowerBound])
            guard let number = Self.elements("PartNumber", in: block).first.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }),
                  let etag = Self.elements("ETag", in: block).first else {
                throw S3Error("MalformedXML", .badRequest, "Each Part needs a PartNumber and an ETag.")
            }
            let digest = XML.unescape(etag).replacingOccurrences(of: "\"", with: "").trimmingCharacters(in: .whitespaces)
            parts.append(CompletedPart(number: number, sha256: digest))
            rest = rest[close.upperBound...]
        }
        return parts
    }

    func listUploads(_ bucket: String, _ query: [String: String]) async throws -> Response {
        _ = try await requireBucket(bucket)
        let prefix = query["prefix"] ?? ""
        let uploads = try await client.uploads(prefix: bucket + "/" + prefix, limit: 1000)
        var children = [XML.element("Bucket", bucket), XML.element("Prefix", prefix), XML.element("MaxUploads", "1000"),
                        XML.element("IsTruncated", "false")]
        for u in uploads {
            children.append(XML.element("Upload", children: [
                XML.element("Key", String(u.path.value.dropFirst(bucket.count + 1))), XML.element("UploadId", u.id),
                XML.element("Initiated", XML.timestamp(u.createdAtMilliseconds)), XML.element("StorageClass", "STANDARD"),
            ]))
        }
        return xmlResponse(XML.document("ListMultipartUploadsResult", children))
    }
}
