import BlobS3Wire
import BlobClient
import BlobCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Object writes: PutObject with its preconditions, Content-MD5 and checksums, and the body spooled as it streams in.
extension S3Handler {
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
}
