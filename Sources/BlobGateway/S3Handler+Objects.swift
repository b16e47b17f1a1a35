import BlobClient
import BlobCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Object reads (ranges, conditionals), writes, copies and deletes.
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
                let (start, last) = rangeText.map(Self.explicitStart) ?? (0, nil)
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
            if honour, let parsed = try Self.parseRange(rangeText, size: file.size) { range = parsed }
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
        if let ifMatch = request.headers[.ifMatch], !Self.etagMatches(ifMatch, etag, weak: false) {
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
            if Self.etagMatches(ifNoneMatch, etag) { return Response(status: .notModified, headers: headers) }
        } else if let since = request.headers[.ifModifiedSince].flatMap(HTTPDate.parse), modifiedSeconds <= since {
            return Response(status: .notModified, headers: headers)
        }
        return nil
    }

    /// `bytes=N-M` or `bytes=N-` as (N, M?); nil for anything else (suffix, several ranges).
    static func explicitStart(_ text: String) -> (Int64, Int64?)? {
        guard text.hasPrefix("bytes="), !text.contains(",") else { return nil }
        let spec = text.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-"), let start = Int64(spec[..<dash]), start >= 0 else { return nil }
        let last = spec[spec.index(after: dash)...]
        if last.isEmpty { return (start, nil) }
        guard let end = Int64(last), end >= start, end < Int64.max / 2 else { return (start, nil) }
        return (start, end)
    }

    /// If-None-Match compares weakly (a `W/` tag matches); If-Match strongly.
    static func etagMatches(_ header: String, _ etag: String, weak: Bool = true) -> Bool {
        header.split(separator: ",").contains { candidate in
            let c = candidate.trimmingCharacters(in: .whitespaces)
            return c == "*" || c == etag || (weak && c == "W/" + etag)
        }
    }

    /// One byte range, resolved against the size; nil to ignore the header (not bytes, or
    /// several ranges: the whole object is sent); throws InvalidRange when unsatisfiable.
    static func parseRange(_ text: String, size: Int64) throws -> (Int64, Int64)? {
        guard text.hasPrefix("bytes=") else { return nil }
        let spec = text.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash]
        let last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            guard let count = Int64(last), count > 0 else {
                if Int64(last) == 0 { throw S3Error.invalidRange(size: size) }
                return nil
            }
            // A suffix of an empty object is satisfiable and empty (RFC 9110 §14.1.1): send it whole.
            guard size > 0 else { return nil }
            return (max(0, size - count), size - 1)
        }
        guard let start = Int64(first), start >= 0 else { return nil }
        let end: Int64
        if last.isEmpty {
            end = size - 1
        } else {
            guard let e = Int64(last), e >= start else { return nil }
            end = min(e, size - 1)  // no arithmetic on the client's number: it may be Int64.max
        }
        guard start < size else { throw S3Error.invalidRange(size: size) }
        return (start, end)
    }

    func putObject(
        _ path: BlobPath, _ request: Request, _ verified: SigV4.Verified, bucket: String
    ) async throws -> Response {
        _ = try await requireBucket(bucket)
        var metadata = try Self.userMetadata(request) ?? [:]
        _ = try Self.contentMD5(request)
        let precondition = try await writePrecondition(request, path)
        // A small body is checked in memory: a spool file cost each small PUT a file created,
        // written, read back and unlinked.
        let small = (Self.bodyFraming(request, verified).declaredByteCount ?? .max) <= Self.inMemoryBodyLimit
        let spool = small ? nil : configuration.spoolDirectory + "/put-\(UUID().uuidString)"
        defer { if let spool { unlink(spool) } }
        let checksum = try RequestedChecksum.from(Self.headerDictionary(request))
        let received = try await spoolBody(request, verified, to: spool, checksum: checksum)
        try Self.checkContentMD5(request, received.md5)
        let contentType = request.headers[.contentType] ?? ContentTypes.forPath(path.value)
        metadata[ObjectAttribute.etag] = SigV4.hex(received.md5)
        if let checksum, let value = received.checksum {
            metadata[RequestedChecksum.attribute(checksum.algorithm)] = value
            metadata[RequestedChecksum.typeAttribute] = "FULL_OBJECT"
        }
        var options = PutOptions(contentType: contentType, metadata: metadata)
        options.precondition = precondition
        options.bucket = bucket
        let source: PutSource = received.bytes.map { .bytes($0) } ?? .file(spool!)
        let result = try await Self.conditionalWrite { try await client.put(source, to: path, options: options) }
        var headers = HTTPFields()
        headers[.eTag] = Self.etag(result.file)
        Self.addChecksumHeaders(result.file, to: &headers)
        return Response(status: .ok, headers: headers)
    }

    /// S3's conditional write headers as the commit's precondition: `If-None-Match: *` (the key
    /// must not exist) or `If-Match: "ETAG"` (its current ETag). Checked here first, so a write
    /// bound to fail sends no bytes, and again atomically when the manifest commits.
    func writePrecondition(_ request: Request, _ path: BlobPath) async throws -> WritePrecondition? {
        let ifMatch = request.headers[.ifMatch]
        let ifNoneMatch = request.headers[.ifNoneMatch]
        guard ifMatch != nil || ifNoneMatch != nil else { return nil }
        let precondition: WritePrecondition
        switch (ifMatch, ifNoneMatch) {
        case (nil, let noneMatch?):
            guard noneMatch.trimmingCharacters(in: .whitespaces) == "*" else {
                throw S3Error.notImplemented("If-None-Match with a value other than * on a write")
            }
            precondition = .absent
        case (let match?, nil):
            let tag = match.trimmingCharacters(in: .whitespaces)
            guard !tag.contains(","), !tag.hasPrefix("W/") else {
                throw S3Error.notImplemented("If-Match with a list or a weak ETag on a write")
            }
            precondition = tag == "*" ? .present : .etag(tag.replacingOccurrences(of: "\"", with: ""))
        default:
            throw S3Error.notImplemented("If-Match together with If-None-Match on a write")
        }
        let current: FileVersion?
        do {
            current = try await client.stat(path)
        } catch let error as BlobError where error.code == .notFound {
            current = nil
        }
        switch precondition {
        case .absent where current != nil: throw Self.preconditionFailed()
        case .present where current == nil, .etag where current == nil: throw S3Error.noSuchKey()
        case .etag(let tag) where current.map({ Self.etag($0) != "\"\(tag)\"" }) == true:
            throw Self.preconditionFailed()
        default: return precondition
        }
    }

    static func preconditionFailed() -> S3Error {
        S3Error(
            "PreconditionFailed", .preconditionFailed, "At least one of the pre-conditions you specified did not hold")
    }

    /// A commit refused by its precondition as S3's errors.
    static func conditionalWrite<T>(_ write: () async throws -> T) async throws -> T {
        do {
            return try await write()
        } catch let error as BlobError where error.reason == WritePrecondition.failedReason {
            throw preconditionFailed()
        }
    }

    /// Content-MD5, when sent, must be 16 bytes in base64 (else InvalidDigest) and match the body
    /// (else BadDigest).
    static func contentMD5(_ request: Request) throws -> [UInt8]? {
        guard let text = request.headers[HTTPField.Name("Content-MD5")!] else { return nil }
        guard let bytes = Data(base64Encoded: text.trimmingCharacters(in: .whitespaces)), bytes.count == 16 else {
            throw S3Error("InvalidDigest", .badRequest, "The Content-MD5 you specified was invalid.")
        }
        return [UInt8](bytes)
    }

    static func checkContentMD5(_ request: Request, _ received: [UInt8]) throws {
        guard let expected = try contentMD5(request) else { return }
        guard expected == received else {
            throw S3Error("BadDigest", .badRequest, "The Content-MD5 you specified did not match what we received.")
        }
    }

    struct Received {
        var byteCount: Int64
        var md5: [UInt8]
        /// The flexible checksum asked for, checked, in base64.
        var checksum: String?
        /// The body, when it was kept in memory instead of spooled.
        var bytes: [UInt8]?
    }

    /// Bodies up to this size (as declared) are kept in memory while they are checked.
    static let inMemoryBodyLimit: Int64 = 1 << 20

    /// Whether the body is aws-chunked, and the byte count the request declares for the
    /// decoded body (`x-amz-decoded-content-length` when chunked, else Content-Length).
    static func bodyFraming(
        _ request: Request, _ verified: SigV4.Verified
    ) -> (chunked: Bool, declaredByteCount: Int64?) {
        let chunked =
            request.headers[.contentEncoding]?.contains("aws-chunked") == true
            || verified.payload == .streamingUnsigned
            || { if case .streamingSigned = verified.payload { return true } else { return false } }()
        let declared =
            chunked
            ? request.headers[HTTPField.Name("x-amz-decoded-content-length")!].flatMap { Int64($0) }
            : request.headers[.contentLength].flatMap { Int64($0) }
        return (chunked, declared)
    }

    /// `x-amz-checksum-ALG` (and `x-amz-checksum-type`) for the checksum a version keeps.
    static func addChecksumHeaders(_ file: FileVersion, to headers: inout HTTPFields) {
        for algorithm in S3ChecksumAlgorithm.allCases {
            if let value = file.metadata?[RequestedChecksum.attribute(algorithm)],
                let name = HTTPField.Name(algorithm.headerName)
            {
                headers[name] = value
                headers[HTTPField.Name("x-amz-checksum-type")!] =
                    file.metadata?[RequestedChecksum.typeAttribute] ?? "FULL_OBJECT"
            }
        }
    }

    /// Writes the body (decoded from aws-chunked when so sent) to a spool file, or keeps it in
    /// memory when `spool` is nil (for a body declared at most ``inMemoryBodyLimit``), checking
    /// its SHA-256 against the signed one and its length against the declared one.
    func spoolBody(
        _ request: Request, _ verified: SigV4.Verified, to spool: String?,
        checksum: RequestedChecksum? = nil
    ) async throws -> Received {
        let (chunked, declared) = Self.bodyFraming(request, verified)
        var handle: FileHandle?
        var memory: [UInt8]?
        if let spool {
            guard FileManager.default.createFile(atPath: spool, contents: nil, attributes: [.posixPermissions: 0o600]),
                let file = FileHandle(forWritingAtPath: spool)
            else {
                throw S3Error(
                    "InternalError", .internalServerError,
                    "cannot create a spool file in \(configuration.spoolDirectory)")
            }
            handle = file
        } else {
            memory = []
            memory!.reserveCapacity(Int(min(declared ?? 0, Self.inMemoryBodyLimit)))
        }
        defer { try? handle?.close() }
        var sha = SHA256()
        var md5 = Insecure.MD5()
        var flexible = checksum.map { S3ChecksumState($0.algorithm) }
        var count: Int64 = 0
        var decoder: AwsChunkedDecoder?
        if chunked {
            if case .streamingSigned(let seed) = verified.payload {
                decoder = AwsChunkedDecoder(
                    seedSignature: seed, signing: (verified.signingKey, verified.amzDate, verified.scope))
            } else {
                decoder = AwsChunkedDecoder(seedSignature: "", signing: nil)
            }
        }
        func write(_ piece: UnsafeRawBufferPointer) throws {
            count += Int64(piece.count)
            guard count <= Self.maxObjectByteCount else {
                throw S3Error(
                    "EntityTooLarge", .badRequest,
                    "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT).")
            }
            sha.update(bufferPointer: piece)
            md5.update(bufferPointer: piece)
            flexible?.update(piece)
            // A body longer than it declared is refused as it comes: not spooled, not buffered.
            if let declared, count > declared { throw Self.incompleteBody() }
            if let handle {
                try handle.write(contentsOf: Data(piece))
            } else {
                // Memory is used only for a declared length within the limit.
                guard declared != nil else { throw Self.incompleteBody() }
                memory!.append(contentsOf: piece)
            }
        }
        for try await buffer in request.body {
            try buffer.withUnsafeReadableBytes { raw in
                if decoder != nil {
                    try decoder!.feed(raw, emit: write)
                } else {
                    try write(raw)
                }
            }
        }
        if let decoder, !decoder.isDone { throw AwsChunkedDecoder.malformed("it ended before the final chunk") }
        if let declared, declared != count { throw Self.incompleteBody() }
        if case .sha256(let expected) = verified.payload {
            guard SigV4.hex(sha.finalize()) == expected else {
                throw S3Error(
                    "XAmzContentSHA256Mismatch", .badRequest,
                    "The provided 'x-amz-content-sha256' header does not match what was computed.")
            }
        }
        let value = try flexible.map { try checksum!.check($0.finalize(), trailers: decoder?.trailers ?? [:]) }
        return Received(byteCount: count, md5: Array(md5.finalize()), checksum: value, bytes: memory)
    }

    static func incompleteBody() -> S3Error {
        S3Error(
            "IncompleteBody", .badRequest,
            "You did not provide the number of bytes specified by the Content-Length HTTP header.")
    }

    /// The object `x-amz-copy-source` names (`BUCKET/KEY`, URL-encoded, optional leading '/').
    func copySourcePath(_ source: String) async throws -> BlobPath {
        let decoded = SigV4.percentDecode(source.split(separator: "?").first.map(String.init) ?? source)
        let trimmed = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : decoded
        guard let slash = trimmed.firstIndex(of: "/") else {
            throw S3Error.invalidArgument("x-amz-copy-source must be BUCKET/KEY")
        }
        let sourceBucket = String(trimmed[..<slash])
        _ = try await requireBucket(sourceBucket)
        return try objectPath(sourceBucket, String(trimmed[trimmed.index(after: slash)...]))
    }

    /// The copy source's current version, checked against `x-amz-copy-source-if-*`.
    func copySource(_ sourcePath: BlobPath, _ request: Request) async throws -> FileVersion {
        let file: FileVersion
        do {
            file = try await client.stat(sourcePath)
        } catch let error as BlobError where error.code == .notFound {
            throw S3Error.noSuchKey()
        }
        let etag = Self.etag(file)
        let modifiedSeconds = file.createdAtMilliseconds / 1000
        let header: (String) -> String? = { request.headers[HTTPField.Name("x-amz-copy-source-" + $0)!] }
        let failed = S3Error(
            "PreconditionFailed", .preconditionFailed, "At least one of the pre-conditions you specified did not hold")
        if let ifMatch = header("if-match") {
            guard Self.etagMatches(ifMatch, etag, weak: false) else { throw failed }
        } else if let since = header("if-unmodified-since").flatMap(HTTPDate.parse), modifiedSeconds > since {
            throw failed
        }
        if let ifNoneMatch = header("if-none-match") {
            if Self.etagMatches(ifNoneMatch, etag) { throw failed }
        } else if let since = header("if-modified-since").flatMap(HTTPDate.parse), modifiedSeconds <= since {
            throw failed
        }
        return file
    }

    /// Server-side copy of that version: the new object shares the source's chunks. With
    /// `metadata` nil the source's metadata and attributes are kept.
    func copyVersion(
        _ source: FileVersion, to path: BlobPath, contentType: String? = nil,
        metadata: [String: String]? = nil, bucket: String? = nil
    ) async throws -> FileVersion {
        do {
            let copied = try await client.copy(
                source.path, to: path, contentType: contentType, metadata: metadata, bucket: bucket)
            guard copied.sha256 == source.sha256 else {
                throw S3Error(
                    "ServiceUnavailable", .serviceUnavailable, "the source object changed during the copy; retry")
            }
            return copied
        } catch let error as BlobError where error.code == .notFound {
            throw S3Error.noSuchKey()
        }
    }

    func copyObject(from source: String, to path: BlobPath, _ request: Request) async throws -> Response {
        let directive = request.headers[HTTPField.Name("x-amz-metadata-directive")!] ?? "COPY"
        guard directive == "COPY" || directive == "REPLACE" else {
            throw S3Error.invalidArgument("Unknown metadata directive.")
        }
        let replace = directive == "REPLACE"
        let sourcePath = try await copySourcePath(source)
        if sourcePath == path, !replace {
            throw S3Error(
                "InvalidRequest", .badRequest,
                "This copy request is illegal because it is trying to copy an object to itself "
                    + "without changing the object's metadata, storage class, website redirect location "
                    + "or encryption attributes."
            )
        }
        let file = try await copySource(sourcePath, request)
        var metadata = file.metadata.map { $0.filter { $0.key != ObjectAttribute.upload } }
        if replace {
            // New user metadata and stored headers; the content's ETag and checksums stay.
            var replaced = try Self.userMetadata(request) ?? [:]
            for (name, value) in file.metadata ?? [:]
            where name == ObjectAttribute.etag || name.hasPrefix(":checksum-") {
                replaced[name] = value
            }
            metadata = replaced
        }
        let version = try await copyVersion(
            file, to: path, contentType: replace ? request.headers[.contentType] : nil, metadata: metadata,
            bucket: path.value.split(separator: "/", maxSplits: 1).first.map(String.init))
        return xmlResponse(
            XML.document(
                "CopyObjectResult",
                [
                    XML.element("LastModified", XML.timestamp(version.createdAtMilliseconds)),
                    XML.element("ETag", Self.etag(version)),
                ]))
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
        let keys = Self.elements("Key", in: body).map(XML.unescape)
        guard !keys.isEmpty, keys.count <= 1000 else {
            throw S3Error(
                "MalformedXML", .badRequest,
                "The XML you provided was not well-formed or did not validate against our published schema "
                    + "(1 to 1000 keys)."
            )
        }
        let quiet = Self.elements("Quiet", in: body).first?.lowercased() == "true"
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

    /// The text of every `<tag>…</tag>` in document order (no nesting of the same tag).
    static func elements(_ tag: String, in xml: String) -> [String] {
        var out: [String] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<\(tag)>"),
            let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex)
        {
            out.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return out
    }
}
