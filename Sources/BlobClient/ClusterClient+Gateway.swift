public import BlobCore
import Foundation

/// Buckets, access keys and server-side copies (docs/api.md, "Buckets and keys").
extension ClusterClient {
    public func buckets() async throws -> [BucketRecord] {
        try await master("GET", "/v1/buckets", as: [BucketRecord].self)
    }

    public func bucket(_ name: String) async throws -> BucketRecord {
        try await master("GET", "/v1/buckets/\(Self.query(name))", as: BucketRecord.self)
    }

    /// Creates bucket `name`. Sent again after a lost reply, to any master, it answers the bucket
    /// the first creation made (the creation carries a request id: `requestID`, or a new UUID).
    public func createBucket(
        _ name: String, publicRead: Bool = false, requestID: String? = nil
    ) async throws -> BucketRecord {
        let body = BucketCreate(
            name: name, publicRead: publicRead, requestID: requestID ?? UUID().uuidString.lowercased())
        return try await master("POST", "/v1/buckets", body: body, as: BucketRecord.self, idempotent: true)
    }

    public func deleteBucket(_ name: String) async throws {
        _ = try await masterBytes("DELETE", "/v1/buckets/\(Self.query(name))", body: Optional<Int>.none)
    }

    public func setBucketAccess(_ name: String, publicRead: Bool) async throws -> BucketRecord {
        try await master(
            "POST", "/v1/buckets/\(Self.query(name))/access", body: BucketAccess(publicRead: publicRead),
            as: BucketRecord.self, idempotent: true)
    }

    /// The current version of `path` and its parts, when a multipart upload made it.
    public func parts(of path: BlobPath) async throws -> FileParts {
        try await master("GET", "/v1/files/parts?path=\(Self.query(path.value))", as: FileParts.self)
    }

    public func setBucketLifecycle(_ name: String, _ lifecycle: BucketLifecycle?) async throws -> BucketRecord {
        try await master(
            "POST", "/v1/buckets/\(Self.query(name))/lifecycle", body: BucketLifecycleUpdate(lifecycle: lifecycle),
            as: BucketRecord.self, idempotent: true)
    }

    public func accessKeys() async throws -> [AccessKey] {
        try await master("GET", "/v1/keys", as: [AccessKey].self)
    }

    public func accessKey(_ id: String) async throws -> AccessKey {
        try await master("GET", "/v1/keys/\(Self.query(id))", as: AccessKey.self)
    }

    public func createAccessKey(name: String) async throws -> AccessKey {
        try await master("POST", "/v1/keys", body: AccessKeyCreate(name: name), as: AccessKey.self)
    }

    public func deleteAccessKey(_ id: String) async throws {
        _ = try await masterBytes("DELETE", "/v1/keys/\(Self.query(id))", body: Optional<Int>.none)
    }

    /// A new version at `to` with the chunks of `from`'s current version: no chunk bytes move.
    /// Sent again after a lost reply, it answers the version the first copy made (the copy is
    /// committed under a request id: `requestID`, or a new UUID).
    public func copy(
        _ from: BlobPath, to: BlobPath, contentType: String? = nil, metadata: [String: String]? = nil,
        bucket: String? = nil, requestID: String? = nil
    ) async throws -> FileVersion {
        try await master(
            "POST", "/v1/files/copy",
            body: FileCopy(
                from: from, to: to, contentType: contentType, metadata: metadata, bucket: bucket,
                requestID: requestID ?? UUID().uuidString.lowercased()),
            as: FileVersion.self, idempotent: true)
    }

    public func createUpload(
        to path: BlobPath, contentType: String, metadata: [String: String]? = nil
    ) async throws -> MultipartUpload {
        try await master(
            "POST", "/v1/uploads",
            body: MultipartUploadCreate(path: path, contentType: contentType, metadata: metadata),
            as: MultipartUpload.self)
    }

    public func upload(_ id: String) async throws -> MultipartUpload {
        try await master("GET", "/v1/uploads/\(Self.query(id))", as: MultipartUpload.self)
    }

    public func uploads(prefix: String, limit: Int = 1000) async throws -> [MultipartUpload] {
        try await master("GET", "/v1/uploads?prefix=\(Self.query(prefix))&limit=\(limit)", as: [MultipartUpload].self)
    }

    public func abortUpload(_ id: String) async throws {
        _ = try await masterBytes("DELETE", "/v1/uploads/\(Self.query(id))", body: Optional<Int>.none)
    }

    /// Completes upload `id`. Sent again after a lost reply, to any master, it answers the
    /// version the first completion made (the master commits it under the upload's id).
    public func completeUpload(
        _ id: String, parts: [CompletedPart], attributes: [String: String]? = nil,
        precondition: WritePrecondition? = nil, bucket: String? = nil
    ) async throws -> FileVersion {
        try await master(
            "POST", "/v1/uploads/\(Self.query(id))/complete",
            body: MultipartCompletion(parts: parts, attributes: attributes, precondition: precondition, bucket: bucket),
            as: FileVersion.self, idempotent: true)
    }
}
