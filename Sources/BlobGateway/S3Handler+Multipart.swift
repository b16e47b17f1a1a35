import BlobS3Wire
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
            throw S3Error(
                "NoSuchUpload", .notFound,
                "The specified upload does not exist. The upload ID may be invalid, "
                    + "or the upload may have been aborted or completed."
            )
        }
        guard upload.path == path else {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist for this key.")
        }
        return upload
    }

    func createUpload(_ path: BlobPath, bucket: String, key: String, _ request: Request) async throws -> Response {
        _ = try await requireBucket(bucket)
        var metadata = try Self.userMetadata(request)
        let contentType = request.headers[.contentType] ?? ContentTypes.forPath(path.value)
        var responseHeaders = HTTPFields()
        if let name = request.headers[HTTPField.Name("x-amz-checksum-algorithm")!] {
            // Every part is checked with this algorithm; the object's checksum is made from theirs.
            guard let algorithm = S3ChecksumAlgorithm(algorithmName: name) else {
                throw S3Error("InvalidRequest", .badRequest, "Checksum algorithm \(name) is not supported")
            }
            let type =
                request.headers[HTTPField.Name("x-amz-checksum-type")!]?.uppercased()
                ?? (algorithm == .crc64nvme ? "FULL_OBJECT" : "COMPOSITE")
            guard type == "COMPOSITE" || type == "FULL_OBJECT", type == "COMPOSITE" || algorithm.isCRC,
                type == "FULL_OBJECT" || algorithm != .crc64nvme
            else {
                throw S3Error(
                    "InvalidRequest", .badRequest,
                    "The \(type) checksum type cannot be used with the \(algorithm.rawValue) checksum algorithm.")
            }
            metadata = (metadata ?? [:]).merging([
                RequestedChecksum.algorithmAttribute: algorithm.rawValue,
                RequestedChecksum.typeAttribute: type,
            ]) { $1 }
            responseHeaders[HTTPField.Name("x-amz-checksum-algorithm")!] = algorithm.rawValue
            responseHeaders[HTTPField.Name("x-amz-checksum-type")!] = type
        }
        let upload = try await client.createUpload(to: path, contentType: contentType, metadata: metadata)
        var response = xmlResponse(
            XML.document(
                "InitiateMultipartUploadResult",
                [
                    XML.element("Bucket", bucket), XML.element("Key", key), XML.element("UploadId", upload.id),
                ]))
        response.headers.append(contentsOf: responseHeaders)
        return response
    }

    /// The checksum algorithm the upload was created with, if any.
    static func checksumAlgorithm(of upload: MultipartUpload) -> S3ChecksumAlgorithm? {
        upload.metadata?[RequestedChecksum.algorithmAttribute].flatMap(S3ChecksumAlgorithm.init(algorithmName:))
    }

    /// A part is stored like any file (chunked, deduplicated, compressed) at the upload's part path.
    func uploadPart(
        _ upload: MultipartUpload, number: Int, _ request: Request, _ verified: SigV4.Verified
    ) async throws -> Response {
        let spool = configuration.spoolDirectory + "/part-\(UUID().uuidString)"
        defer { unlink(spool) }
        let checksum = try RequestedChecksum.from(
            Self.headerDictionary(request), fallback: Self.checksumAlgorithm(of: upload))
        let received = try await spoolBody(request, verified, to: spool, checksum: checksum)
        try Self.checkContentMD5(request, received.md5)
        var attributes: [String: String] = [:]
        if let checksum, let value = received.checksum {
            attributes[RequestedChecksum.attribute(checksum.algorithm)] = value
        }
        let file = try await storePart(spool, md5: received.md5, upload: upload, number: number, attributes: attributes)
        var headers = HTTPFields()
        headers[.eTag] = Self.etag(file)
        Self.addChecksumHeaders(file, to: &headers)
        headers[HTTPField.Name("x-amz-checksum-type")!] = nil
        return Response(status: .ok, headers: headers)
    }

    /// A spooled part body stored at the part's path, its MD5 kept as its ETag.
    func storePart(
        _ spool: String, md5: [UInt8], upload: MultipartUpload, number: Int,
        attributes: [String: String] = [:]
    ) async throws -> FileVersion {
        do {
            return try await client.put(
                .file(spool), to: try upload.partPath(number),
                options: PutOptions(
                    contentType: "application/octet-stream",
                    metadata: attributes.merging([ObjectAttribute.etag: SigV4.hex(md5)]) { $1 })
            ).file
        } catch let error as BlobError where error.reason == "upload.notFound" {
            throw S3Error(
                "NoSuchUpload", .notFound, "The specified upload does not exist: it was completed or aborted.")
        }
    }

    /// UploadPartCopy: a whole source shares its chunks with the part; a range
    /// (`x-amz-copy-source-range: bytes=FIRST-LAST`) is read and stored as a new part.
    func uploadPartCopy(
        _ upload: MultipartUpload, number: Int, from source: String, _ request: Request
    ) async throws -> Response {
        let sourcePath = try await copySourcePath(source)
        let file = try await copySource(sourcePath, request)
        let part: FileVersion
        if let rangeText = request.headers[HTTPField.Name("x-amz-copy-source-range")!] {
            let (first, last) = try Self.copySourceRange(rangeText, size: file.size)
            let spool = configuration.spoolDirectory + "/copy-\(UUID().uuidString)"
            defer { unlink(spool) }
            let md5 = try await spoolRange(of: file, first: first, last: last, to: spool)
            part = try await storePart(spool, md5: md5, upload: upload, number: number)
        } else {
            let etag = file.metadata?[ObjectAttribute.etag] ?? file.sha256
            part = try await copyVersion(file, to: try upload.partPath(number), metadata: [ObjectAttribute.etag: etag])
        }
        return xmlResponse(
            XML.document(
                "CopyPartResult",
                [
                    XML.element("LastModified", XML.timestamp(part.createdAtMilliseconds)),
                    XML.element("ETag", Self.etag(part)),
                ]))
    }

    /// `bytes=FIRST-LAST` inside an object of `size` bytes.
    static func copySourceRange(_ text: String, size: Int64) throws -> (Int64, Int64) {
        let spec = text.hasPrefix("bytes=") ? text.dropFirst(6) : ""
        let bounds = spec.split(separator: "-", omittingEmptySubsequences: false)
        guard bounds.count == 2, let first = Int64(bounds[0]), let last = Int64(bounds[1]), first >= 0, last >= first
        else {
            throw S3Error.invalidArgument(
                "The x-amz-copy-source-range value must be of the form bytes=first-last "
                    + "where first and last are the zero-based offsets of the first and last bytes to copy"
            )
        }
        guard last < size else {
            throw S3Error(
                "InvalidRange", .rangeNotSatisfiable,
                "The x-amz-copy-source-range is outside the source object (\(size) bytes).")
        }
        return (first, last)
    }

    /// Bytes FIRST...LAST of that version written to a spool file (0600); their MD5.
    func spoolRange(of file: FileVersion, first: Int64, last: Int64, to spool: String) async throws -> [UInt8] {
        guard FileManager.default.createFile(atPath: spool, contents: nil, attributes: [.posixPermissions: 0o600]),
            let handle = FileHandle(forWritingAtPath: spool)
        else {
            throw S3Error(
                "InternalError", .internalServerError, "cannot create a spool file in \(configuration.spoolDirectory)")
        }
        defer { try? handle.close() }
        let plan = try await client.readPlan(file.path, offset: first, length: last - first + 1)
        guard plan.file.version == file.version else {
            throw S3Error("ServiceUnavailable", .serviceUnavailable, "the source object changed during the copy; retry")
        }
        var md5 = Insecure.MD5()
        _ = try await client.stream(
            plan, of: file.path, offset: first, end: last + 1, readAhead: 4, checkWholeFile: false
        ) { slice in
            slice.withUnsafeBytes { md5.update(bufferPointer: $0) }
            try handle.write(contentsOf: Data(slice))
        }
        return Array(md5.finalize())
    }

    func listParts(
        _ upload: MultipartUpload, bucket: String, key: String, _ query: [String: String]
    ) async throws -> Response {
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
                if let number = Int(file.path.value.dropFirst(upload.partsPrefix.count)) {
                    parts.append((number, file))
                }
                after = file.path.value
            }
            if page.next == nil { break }
        }
        var children = [
            XML.element("Bucket", bucket), XML.element("Key", key), XML.element("UploadId", upload.id),
            XML.element("PartNumberMarker", String(marker)), XML.element("MaxParts", String(maxParts)),
            XML.element("IsTruncated", truncated ? "true" : "false"), XML.element("StorageClass", "STANDARD"),
        ]
        if truncated, let last = parts.last { children.append(XML.element("NextPartNumberMarker", String(last.0))) }
        for (number, file) in parts {
            children.append(
                XML.element(
                    "Part",
                    children: [
                        XML.element("PartNumber", String(number)),
                        XML.element("LastModified", XML.timestamp(file.createdAtMilliseconds)),
                        XML.element("ETag", Self.etag(file)), XML.element("Size", String(file.size)),
                    ]))
        }
        return xmlResponse(XML.document("ListPartsResult", children))
    }

    /// Completion: the parts' manifests in order become the object's; no bytes are copied.
    func completeUpload(
        _ upload: MultipartUpload, bucket: String, key: String, _ request: Request
    ) async throws -> Response {
        let precondition = try await writePrecondition(request, upload.path)
        let body = try await request.body.collect(upTo: 4 << 20)
        let parts = try Self.parseCompletion(String(buffer: body))
        guard !parts.isEmpty else {
            throw S3Error(
                "MalformedXML", .badRequest,
                "The XML you provided was not well-formed or did not validate against our published schema.")
        }
        for i in 1..<max(1, parts.count) where parts[i].number <= parts[i - 1].number {
            throw S3Error(
                "InvalidPartOrder", .badRequest,
                "The list of parts was not in ascending order. Parts must be ordered by part number.")
        }
        // The client names parts by their ETags (MD5s); the master by their SHA-256.
        let stored = try await partFiles(upload)
        var digests: [CompletedPart] = []
        var partMD5s: [UInt8] = []
        var allMD5 = true
        for part in parts {
            guard let file = stored[part.number],
                part.sha256 == file.sha256 || part.sha256 == file.metadata?[ObjectAttribute.etag]
            else {
                throw S3Error(
                    "InvalidPart", .badRequest,
                    "One or more of the specified parts could not be found. "
                        + "The part may not have been uploaded, or the specified entity tag may not match "
                        + "the part's entity tag (part \(part.number))."
                )
            }
            digests.append(CompletedPart(number: part.number, sha256: file.sha256))
            if let md5 = file.metadata?[ObjectAttribute.etag].flatMap(SigV4.hexBytes), md5.count == 16 {
                partMD5s += md5
            } else {
                allMD5 = false
            }
        }
        var attributes = [ObjectAttribute.upload: upload.id]
        if allMD5 {
            attributes[ObjectAttribute.etag] = SigV4.hex(Insecure.MD5.hash(data: partMD5s)) + "-\(parts.count)"
        }
        let given = Self.partChecksums(String(buffer: body))
        for part in parts {
            for (algorithm, value) in given[part.number] ?? [:]
            where stored[part.number]?.metadata?[RequestedChecksum.attribute(algorithm)]
                != value.trimmingCharacters(in: .whitespaces)
            {
                throw S3Error(
                    "InvalidPart", .badRequest,
                    "The \(algorithm.rawValue) checksum given for part \(part.number) is not the part's.")
            }
        }
        let objectChecksum = Self.objectChecksum(upload, parts: parts.compactMap { stored[$0.number] })
        if let (name, value, type) = objectChecksum {
            attributes[name] = value
            attributes[RequestedChecksum.typeAttribute] = type
        }
        // A checksum of the whole object given with the completion must be the one made from the parts.
        let headers = Self.headerDictionary(request)
        for algorithm in S3ChecksumAlgorithm.allCases {
            guard let given = headers[algorithm.headerName]?.trimmingCharacters(in: .whitespaces),
                objectChecksum?.0 == RequestedChecksum.attribute(algorithm)
                    || Self.checksumAlgorithm(of: upload) == algorithm
            else { continue }
            guard let made = objectChecksum?.1, given == made || given + "-\(parts.count)" == made else {
                throw S3Error(
                    "BadDigest", .badRequest,
                    "The \(algorithm.rawValue) you specified for the object did not match "
                        + "the one calculated from its parts."
                )
            }
        }
        let version: FileVersion
        do {
            version = try await Self.conditionalWrite {
                try await client.completeUpload(
                    upload.id, parts: digests, attributes: attributes, precondition: precondition,
                    bucket: bucket)
            }
        } catch let error as BlobError where error.reason == "upload.invalidPart" {
            throw S3Error("InvalidPart", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.partTooSmall" {
            throw S3Error("EntityTooSmall", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.partOrder" {
            throw S3Error("InvalidPartOrder", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.notFound" {
            if let done = try await completedUpload(upload.id, path: upload.path, bucket: bucket, key: key) {
                return done
            }
            throw S3Error(
                "NoSuchUpload", .notFound, "The specified upload does not exist: it may have been completed or aborted."
            )
        }
        return completionResult(version, bucket: bucket, key: key)
    }

    func completionResult(_ version: FileVersion, bucket: String, key: String) -> Response {
        var children = [
            XML.element("Location", "/\(bucket)/\(key)"), XML.element("Bucket", bucket), XML.element("Key", key),
            XML.element("ETag", Self.etag(version)),
        ]
        for algorithm in S3ChecksumAlgorithm.allCases {
            if let value = version.metadata?[RequestedChecksum.attribute(algorithm)] {
                children.append(XML.element("Checksum" + algorithm.rawValue, value))
                children.append(
                    XML.element("ChecksumType", version.metadata?[RequestedChecksum.typeAttribute] ?? "COMPOSITE"))
            }
        }
        return xmlResponse(XML.document("CompleteMultipartUploadResult", children))
    }

    /// `<ChecksumALG>` values of each `<Part>` in a completion document, by part number.
    static func partChecksums(_ xml: String) -> [Int: [S3ChecksumAlgorithm: String]] {
        var out: [Int: [S3ChecksumAlgorithm: String]] = [:]
        for block in XML.elements("Part", in: xml) {
            guard
                let number = XML.elements("PartNumber", in: block).first.flatMap({
                    Int($0.trimmingCharacters(in: .whitespaces))
                })
            else { continue }
            for algorithm in S3ChecksumAlgorithm.allCases {
                if let value = XML.elements("Checksum" + algorithm.rawValue, in: block).first {
                    out[number, default: [:]][algorithm] = value
                }
            }
        }
        return out
    }

    /// The object's checksum from its parts': the upload's algorithm (else the one every part
    /// has), COMPOSITE (the checksum of the parts' checksums, `-N`) or FULL_OBJECT (the CRCs
    /// combined, as if computed over the whole object). Nil when a part has none.
    static func objectChecksum(_ upload: MultipartUpload, parts: [FileVersion]) -> (String, String, String)? {
        let declared = checksumAlgorithm(of: upload)
        let algorithm =
            declared
            ?? S3ChecksumAlgorithm.allCases.first { algorithm in
                !parts.isEmpty && parts.allSatisfy { $0.metadata?[RequestedChecksum.attribute(algorithm)] != nil }
            }
        guard let algorithm else { return nil }
        let name = RequestedChecksum.attribute(algorithm)
        let digests = parts.compactMap {
            $0.metadata?[name].flatMap { S3ChecksumState.digest(fromBase64: $0, algorithm: algorithm) }
        }
        guard digests.count == parts.count, !parts.isEmpty else { return nil }
        let type =
            upload.metadata?[RequestedChecksum.typeAttribute]
            ?? (algorithm.isCRC && declared == nil ? "FULL_OBJECT" : "COMPOSITE")
        if type == "FULL_OBJECT", algorithm.isCRC {
            var combined = S3ChecksumState.digest(algorithm, of: [UInt8]())
            for (part, digest) in zip(parts, digests) {
                combined = S3ChecksumState.combineCRC(algorithm: algorithm, combined, digest, lengthOfB: part.size)
            }
            return (name, S3ChecksumState.base64(combined), "FULL_OBJECT")
        }
        return (name, S3ChecksumState.composite(algorithm, partDigests: digests), "COMPOSITE")
    }

    /// A completion repeated after it succeeded answers the same, while the object is still the
    /// version that upload made; nil otherwise.
    func completedUpload(_ id: String, path: BlobPath, bucket: String, key: String) async throws -> Response? {
        guard let current = try? await client.stat(path), current.metadata?[ObjectAttribute.upload] == id else {
            return nil
        }
        return completionResult(current, bucket: bucket, key: key)
    }

    /// The upload's stored parts by number.
    func partFiles(_ upload: MultipartUpload) async throws -> [Int: FileVersion] {
        var out: [Int: FileVersion] = [:]
        var after: String?
        for _ in 0..<20 {  // 10,000 parts at 1,000 a page
            let page = try await client.list(prefix: upload.partsPrefix, after: after, limit: 1000)
            for file in page.files {
                if let number = Int(file.path.value.dropFirst(upload.partsPrefix.count)) { out[number] = file }
                after = file.path.value
            }
            if page.next == nil { break }
        }
        return out
    }

    /// `<Part><PartNumber>N</PartNumber><ETag>"…"</ETag></Part>` entries, in document order.
    static func parseCompletion(_ xml: String) throws -> [CompletedPart] {
        var parts: [CompletedPart] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<Part>") {
            guard let close = rest.range(of: "</Part>", range: open.upperBound..<rest.endIndex) else {
                throw S3Error(
                    "MalformedXML", .badRequest,
                    "The XML you provided was not well-formed or did not validate against our published schema.")
            }
            let block = String(rest[open.upperBound..<close.lowerBound])
            guard
                let number = XML.elements("PartNumber", in: block).first.flatMap({
                    Int($0.trimmingCharacters(in: .whitespaces))
                }),
                let etag = XML.elements("ETag", in: block).first
            else {
                throw S3Error("MalformedXML", .badRequest, "Each Part needs a PartNumber and an ETag.")
            }
            let digest = XML.unescape(etag).replacingOccurrences(of: "\"", with: "").trimmingCharacters(
                in: .whitespaces)
            parts.append(CompletedPart(number: number, sha256: digest))
            rest = rest[close.upperBound...]
        }
        return parts
    }

    func listUploads(_ bucket: String, _ query: [String: String]) async throws -> Response {
        _ = try await requireBucket(bucket)
        let prefix = query["prefix"] ?? ""
        let uploads = try await client.uploads(prefix: bucket + "/" + prefix, limit: 1000)
        var children = [
            XML.element("Bucket", bucket), XML.element("Prefix", prefix), XML.element("MaxUploads", "1000"),
            XML.element("IsTruncated", "false"),
        ]
        for u in uploads {
            children.append(
                XML.element(
                    "Upload",
                    children: [
                        XML.element("Key", String(u.path.value.dropFirst(bucket.count + 1))),
                        XML.element("UploadId", u.id),
                        XML.element("Initiated", XML.timestamp(u.createdAtMilliseconds)),
                        XML.element("StorageClass", "STANDARD"),
                    ]))
        }
        return xmlResponse(XML.document("ListMultipartUploadsResult", children))
    }
}
