public import BlobCore
import Foundation

/// The master's namespace and cluster queries (docs/api.md, "Master").
extension ClusterClient {
    /// The current version of `path`; `notFound` when there is none.
    public func stat(_ path: BlobPath) async throws -> FileVersion {
        try await master("GET", "/v1/files?path=\(Self.query(path.value))", as: FileVersion.self)
    }

    /// The chunks of the current version of `path` overlapping `[offset, offset + length)` (the
    /// whole file when `length` is nil), each with the servers that hold it, preferred first.
    public func readPlan(_ path: BlobPath, offset: Int64 = 0, length: Int64? = nil) async throws -> ReadPlan {
        var query = "/v1/files/plan?path=\(Self.query(path.value))"
        if offset > 0 { query += "&offset=\(offset)" }
        if let length { query += "&length=\(length)" }
        return try await master("GET", query, as: ReadPlan.self)
    }

    /// One page of live files under `prefix`, after the cursor `after`.
    public func list(prefix: String, after: String? = nil, limit: Int = 1000) async throws -> FileListPage {
        var query = "/v1/list?prefix=\(Self.query(prefix))&limit=\(limit)"
        if let after { query += "&after=\(Self.query(after))" }
        return try await master("GET", query, as: FileListPage.self)
    }

    /// Writes a tombstone: `path` disappears from stat and list. Sent under a request id, so a
    /// delete sent again after a lost reply, to any master, returns the first one's tombstone
    /// rather than `notFound`.
    public func delete(_ path: BlobPath) async throws -> FileVersion {
        let requestID = UUID().uuidString.lowercased()
        return try await master(
            "DELETE", "/v1/files?path=\(Self.query(path.value))&request=\(requestID)", as: FileVersion.self,
            idempotent: true)
    }

    /// Servers, their states and usage, and the ring epoch.
    /// Whether some master can serve: its `/readyz` answered 200 (the others are asked in turn).
    public func masterReady() async throws {
        _ = try await masterBytes("GET", "/readyz", body: nil as String?)
    }

    public func clusterStatus() async throws -> ClusterStatus {
        try await master("GET", "/v1/cluster/status", as: ClusterStatus.self)
    }

    func place(_ chunks: [PlacementRequestEntry]) async throws -> PlacementReply {
        // A placement changes nothing: safe to ask again.
        try await master(
            "POST", "/v1/placement", body: PlacementRequest(chunks: chunks), as: PlacementReply.self, idempotent: true)
    }

    func acknowledge(_ acks: [ReplicaAcknowledgement]) async throws {
        // Recording a fact twice records it once.
        try await masterNoReply("POST", "/v1/replicas", body: ReplicaAcknowledgements(chunks: acks), idempotent: true)
    }

    /// Commits under a request id (a new one unless the manifest has one), so a commit sent
    /// again after a lost reply, to any master, returns the version the first one made.
    func commit(_ manifest: ManifestCommit) async throws -> FileVersion {
        var manifest = manifest
        if manifest.requestID == nil { manifest.requestID = UUID().uuidString.lowercased() }
        return try await master("POST", "/v1/files", body: manifest, as: FileVersion.self, idempotent: true)
    }

    func reportSuspect(_ replicas: [SuspectReplica]) async throws {
        try await masterNoReply(
            "POST", "/v1/replicas/suspect", body: SuspectReplicas(replicas: replicas), idempotent: true)
    }
}
