public import BlobCore

/// A chunk's durable copy on one server, as a write acknowledgement or a server's report says.
public struct ReplicaReport: Sendable, Hashable {
    public var chunkID: ChunkID
    public var plainByteCount: Int64
    public var storedByteCount: Int64

    public init(chunkID: ChunkID, plainByteCount: Int64, storedByteCount: Int64) {
        self.chunkID = chunkID
        self.plainByteCount = plainByteCount
        self.storedByteCount = storedByteCount
    }
}

/// The master's metadata: namespace (paths → versions → manifests), chunks, and where their
/// replicas really are. Every method is one ACID transaction. Implementations: SQLite
/// (``SQLiteMetadataStore``); PostgreSQL later, behind this same protocol, so nothing here
/// may depend on SQLite-only behaviour.
public protocol MetadataStore: Sendable {
    /// Records that `serverID` durably holds these chunks (write acknowledgements, reports).
    func recordReplicas(_ reports: [ReplicaReport], on serverID: String, nowMilliseconds: Int64) async throws

    /// Forgets that `serverID` holds these chunks (deleted or quarantined there).
    func removeReplicas(_ chunkIDs: [ChunkID], on serverID: String) async throws

    /// The servers known to hold each chunk; chunks with none are absent from the answer.
    func replicaLocations(of chunkIDs: [ChunkID]) async throws -> [ChunkID: [String]]

    /// Commits a new version at the manifest's path, after checking that every chunk it names is
    /// durable on at least one server and has the length the manifest says. Readers see the old
    /// version or the new one, never a mix; of two concurrent commits the later one is current.
    /// With `replicas` (server id → chunks it acknowledged), records those facts first, in the
    /// same transaction: a writer's last acknowledgements ride on its commit.
    func commit(_ manifest: ManifestCommit, recording replicas: [String: [ReplicaReport]],
                nowMilliseconds: Int64) async throws -> FileVersion

    /// Commits many manifests in one transaction (imports, benchmarks' bulk loads): all or none.
    func commit(batch manifests: [ManifestCommit], nowMilliseconds: Int64) async throws -> [FileVersion]

    /// The current version of a path; nil when absent or deleted.
    func stat(_ path: BlobPath) async throws -> FileVersion?

    /// A version (the current one when `version` is nil) with its manifest, in order.
    func manifest(of path: BlobPath, version: Int64?) async throws -> (FileVersion, [ManifestEntry])?

    /// Live files whose path starts with `prefix`, after the cursor `after`, in path order.
    func list(prefix: String, after: String?, limit: Int) async throws -> FileListPage

    /// Writes a tombstone version; the path disappears from stat and list. Throws notFound when
    /// there is nothing live at the path.
    func delete(_ path: BlobPath, nowMilliseconds: Int64) async throws -> FileVersion

    /// The stored (framed, compressed) size of each chunk; unknown chunks are absent.
    func storedSizes(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Int64]

    /// How many manifest entries of live or old versions name each chunk.
    func referenceCounts(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Int]

    /// Runs the database's own consistency check; true when it passes.
    func checkIntegrity() async throws -> Bool

    /// Saves (inserts or replaces) what the master knows of a chunk server.
    func saveServer(_ server: ServerRecord) async throws

    /// Every chunk server the master has known, by id.
    func servers() async throws -> [ServerRecord]

    /// Saves a ring epoch (as its JSON); epochs only grow.
    func saveRing(epoch: UInt64, json: [UInt8]) async throws

    /// The newest saved ring's JSON, if any.
    func latestRing() async throws -> [UInt8]?
}

extension MetadataStore {
    /// A commit that records no acknowledgements of its own.
    public func commit(_ manifest: ManifestCommit, nowMilliseconds: Int64) async throws -> FileVersion {
        try await commit(manifest, recording: [:], nowMilliseconds: nowMilliseconds)
    }
}

/// A chunk server as the master persists it: identity, address and placement attributes.
/// Liveness is not persisted: after a master restart every server is unknown until it
/// heartbeats again.
public struct ServerRecord: Sendable, Hashable, Codable {
    public var id: String
    public var address: String
    public var zone: String
    public var weight: Double
    public var capacityBytes: Int64?
    public var registeredAtMilliseconds: Int64

    public init(id: String, address: String, zone: String, weight: Double, capacityBytes: Int64?, registeredAtMilliseconds: Int64) {
        self.id = id
        self.address = address
        self.zone = zone
        self.weight = weight
        self.capacityBytes = capacityBytes
        self.registeredAtMilliseconds = registeredAtMilliseconds
    }
}
