import BlobCore
import BlobServerSupport
import Foundation
import HTTPTypes
import Hummingbird

/// Buckets and S3 access keys, kept by the master for every gateway (docs/api.md).
struct GatewayRoutes: Sendable {
    let store: MetadataStore
    let signer: RequestSigner

    func register(on routes: AuthenticatedRoutes) {
        let clients: Set<RequestRole> = [.client, .master]
        routes.get("/v1/buckets", roles: clients) { request, _ in try await listBuckets(request) }
        routes.post("/v1/buckets", roles: clients) { request, _ in try await createBucket(request) }
        routes.get("/v1/buckets/:name", roles: clients) { request, context in try await bucket(request, context) }
        routes.delete("/v1/buckets/:name", roles: clients) { request, context in
            try await deleteBucket(request, context)
        }
        routes.post("/v1/buckets/:name/access", roles: clients) { request, context in
            try await setAccess(request, context)
        }
        routes.post("/v1/buckets/:name/lifecycle", roles: clients) { request, context in
            try await setLifecycle(request, context)
        }
        routes.get("/v1/files/parts", roles: clients) { request, _ in try await parts(request) }
        routes.get("/v1/keys", roles: clients) { request, _ in try await listKeys(request) }
        routes.post("/v1/keys", roles: clients) { request, _ in try await createKey(request) }
        routes.get("/v1/keys/:id", roles: clients) { request, context in try await key(request, context) }
        routes.delete("/v1/keys/:id", roles: clients) { request, context in try await deleteKey(request, context) }
        routes.post("/v1/files/copy", roles: clients) { request, _ in try await copy(request) }
        routes.post("/v1/uploads", roles: clients) { request, _ in try await createUpload(request) }
        routes.get("/v1/uploads", roles: clients) { request, _ in try await listUploads(request) }
        routes.get("/v1/uploads/:id", roles: clients) { request, context in try await upload(request, context) }
        routes.delete("/v1/uploads/:id", roles: clients) { request, context in try await abortUpload(request, context) }
        routes.post("/v1/uploads/:id/complete", roles: clients) { request, context in
            try await completeUpload(request, context)
        }
    }

    /// S3's smallest part but the last.
    static let minimumPartSize: Int64 = 5 << 20

    func createUpload(_ request: Request) async throws -> Response {
        let body = try await decodeJSONBody(MultipartUploadCreate.self, from: request, maxByteCount: 1 << 16)
        var rng = SystemRandomNumberGenerator()
        let id = String(rng.next() as UInt64, radix: 16) + String(rng.next() as UInt64, radix: 16)
        let upload = MultipartUpload(
            id: id, path: body.path, contentType: body.contentType, createdAtMilliseconds: MasterRoutes.now(),
            metadata: body.metadata)
        // Checked now, so a bad upload fails at its start rather than at its completion; room is
        // kept for the attributes the completion adds (ETag, checksum, upload id).
        try ManifestCommit(
            path: body.path, size: 0, contentType: body.contentType, sha256: String(repeating: "0", count: 64),
            chunks: [], metadata: body.metadata
        ).validate(maxChunks: 1)
        let total = (body.metadata ?? [:]).reduce(0) { $0 + $1.key.utf8.count + $1.value.utf8.count }
        guard total <= ManifestCommit.maxMetadataWithAttributesByteCount - Self.completionAttributesReserve else {
            throw BlobError(
                .invalidArgument, reason: "manifest.metadata",
                "an upload's metadata and headers may take at most "
                    + "\(ManifestCommit.maxMetadataWithAttributesByteCount - Self.completionAttributesReserve) bytes")
        }
        return try jsonResponse(try await store.createUpload(upload), status: .created)
    }

    /// Bytes of metadata kept free at an upload's start for the attributes its completion adds.
    static let completionAttributesReserve = 512

    func listUploads(_ request: Request) async throws -> Response {
        let query = request.uri.queryParameters
        let limit = try MasterRoutes.integer(query.get("limit"), name: "limit") ?? 1000
        let prefix = query.get("prefix").map(MasterRoutes.native) ?? ""
        return try jsonResponse(try await store.uploads(prefix: prefix, limit: Int(min(limit, 10_000))))
    }

    func upload(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        guard let upload = try await store.upload(id) else {
            throw BlobError(.notFound, reason: "upload.notFound", "no multipart upload \(id)")
        }
        return try jsonResponse(upload)
    }

    func abortUpload(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        try await store.abortUpload(context.parameters.get("id") ?? "")
        return Response(status: .noContent)
    }

    func completeUpload(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let body = try await decodeJSONBody(MultipartCompletion.self, from: request, maxByteCount: 4 << 20)
        guard body.parts.count <= 10_000 else {
            throw BlobError(.invalidArgument, reason: "upload.tooManyParts", "at most 10000 parts")
        }
        let version = try await store.completeUpload(
            context.parameters.get("id") ?? "", parts: body.parts, attributes: body.attributes,
            precondition: body.precondition, bucket: body.bucket,
            minimumPartSize: Self.minimumPartSize)
        return try jsonResponse(version, status: .created)
    }

    /// A new version at the target with the source's manifest: chunks are shared, none move.
    func copy(_ request: Request) async throws -> Response {
        let body = try await decodeJSONBody(FileCopy.self, from: request, maxByteCount: 1 << 16)
        if let requestID = body.requestID {
            try ManifestCommit.validate(requestID: requestID, reason: "copy.requestID")
            if let version = try await store.committed(byRequest: requestID) {
                return try jsonResponse(version, status: .created)
            }
        }
        guard let (file, entries) = try await store.manifest(of: body.from, version: nil) else {
            throw BlobError(.notFound, reason: "file.notFound", "no file at \(body.from)")
        }
        let manifest = ManifestCommit(
            path: body.to, size: file.size, contentType: body.contentType ?? file.contentType,
            sha256: file.sha256, chunks: entries, metadata: body.metadata ?? file.metadata,
            bucket: body.bucket, requestID: body.requestID)
        let version = try await store.commit(manifest)
        return try jsonResponse(version, status: .created)
    }

    func listBuckets(_ request: Request) async throws -> Response {
        return try jsonResponse(try await store.buckets())
    }

    func createBucket(_ request: Request) async throws -> Response {
        let body = try await decodeJSONBody(BucketCreate.self, from: request, maxByteCount: 4096)
        try BucketRecord.validate(body.name)
        if let requestID = body.requestID {
            try ManifestCommit.validate(requestID: requestID, reason: "bucket.requestID")
        }
        let record = BucketRecord(
            name: body.name, createdAtMilliseconds: MasterRoutes.now(), publicRead: body.publicRead)
        return try jsonResponse(try await store.createBucket(record, requestID: body.requestID), status: .created)
    }

    func bucket(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        return try await bucketResponse(name)
    }

    /// The bucket's record as the answer; 404 when there is none.
    func bucketResponse(_ name: String) async throws -> Response {
        guard let record = try await store.bucket(name) else {
            throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name)")
        }
        return try jsonResponse(record)
    }

    func deleteBucket(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        try await store.deleteBucket(context.parameters.get("name") ?? "")
        return Response(status: .noContent)
    }

    func setAccess(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        let body = try await decodeJSONBody(BucketAccess.self, from: request, maxByteCount: 4096)
        try await store.setBucketAccess(name, publicRead: body.publicRead)
        return try await bucketResponse(name)
    }

    func parts(_ request: Request) async throws -> Response {
        let path = try MasterRoutes.path(request)
        guard let parts = try await store.parts(of: path) else {
            throw BlobError(.notFound, reason: "file.notFound", "no file at \(path)")
        }
        return try jsonResponse(parts)
    }

    func setLifecycle(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let name = context.parameters.get("name") ?? ""
        let body = try await decodeJSONBody(BucketLifecycleUpdate.self, from: request, maxByteCount: 1 << 20)
        if let lifecycle = body.lifecycle {
            guard !lifecycle.rules.isEmpty, lifecycle.rules.count <= BucketLifecycle.maxRules,
                lifecycle.rules.allSatisfy({
                    (1...LifecycleRule.maxDays).contains($0.expirationDays ?? 1)
                        && (1...LifecycleRule.maxDays).contains($0.abortUploadsAfterDays ?? 1)
                })
            else {
                throw BlobError(
                    .invalidArgument, reason: "bucket.lifecycle",
                    "a lifecycle needs 1 to \(BucketLifecycle.maxRules) rules with positive day counts")
            }
        }
        try await store.setBucketLifecycle(name, body.lifecycle)
        return try await bucketResponse(name)
    }

    func listKeys(_ request: Request) async throws -> Response {
        return try jsonResponse(try await store.accessKeys())
    }

    /// A new key: a 20-character id (AWS's shape, `BK` + 18 of A-Z0-9) and a 40-character secret
    /// from the system's random source.
    func createKey(_ request: Request) async throws -> Response {
        let body = try await decodeJSONBody(AccessKeyCreate.self, from: request, maxByteCount: 4096)
        guard body.name.utf8.count <= 128 else {
            throw BlobError(.invalidArgument, reason: "key.name", "a key name is at most 128 bytes")
        }
        var rng = SystemRandomNumberGenerator()
        let idAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        let secretAlphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
        let id = "BK" + String((0..<18).map { _ in idAlphabet[Int(rng.next(upperBound: UInt32(idAlphabet.count)))] })
        let secret = String(
            (0..<40).map { _ in secretAlphabet[Int(rng.next(upperBound: UInt32(secretAlphabet.count)))] })
        let key = AccessKey(
            accessKeyID: id, secretAccessKey: secret, name: body.name, createdAtMilliseconds: MasterRoutes.now())
        try await store.createAccessKey(key)
        return try jsonResponse(key, status: .created)
    }

    func key(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        guard let key = try await store.accessKey(id) else {
            throw BlobError(.notFound, reason: "key.notFound", "no access key \(id)")
        }
        return try jsonResponse(key)
    }

    func deleteKey(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        try await store.deleteAccessKey(context.parameters.get("id") ?? "")
        return Response(status: .noContent)
    }
}
