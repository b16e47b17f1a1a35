public import BlobCore
public import Foundation

/// A chunk's durable copy on one server, as a write acknowledgement or a server's report says.
public struct ReplicaReport: Sendable, Hashable {
    public var chunkID: ChunkID
    public var plainByteCount: Int64
    public var storedByteCount: Int64
    /// The writer's ``BlockDigests``, kept for the chunk if it has none yet.
    public var blockDigests: Data?

    public init(chunkID: ChunkID, plainByteCount: Int64, storedByteCount: Int64, blockDigests: Data? = nil) {
        self.chunkID = chunkID
        self.plainByteCount = plainByteCount
        self.storedByteCount = storedByteCount
        self.blockDigests = blockDigests
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
    func manifest(of path: BlobPath, version: Int64?, overlapping range: Range<Int64>?) async throws -> (FileVersion, [ManifestEntry])?

    /// Live files whose path starts with `prefix`, after the cursor `after`, in path order.
    func list(prefix: String, after: String?, limit: Int) async throws -> FileListPage

    /// Writes a tombstone version; the path disappears from stat and list. Throws notFound when
    /// there is nothing live at the path.
    func delete(_ path: BlobPath, nowMilliseconds: Int64) async throws -> FileVersion
    /// Deletes the current version only while it is `ifVersion` (409 `file.precondition` otherwise).
    func delete(_ path: BlobPath, ifVersion: Int64?, nowMilliseconds: Int64) async throws -> FileVersion

    /// What a read plan of `range` of the current version of `path` needs, in one transaction;
    /// nil when there is no such file.
    func readPlanFacts(of path: BlobPath, overlapping range: Range<Int64>) async throws -> ReadPlanFacts?
    /// The ``BlockDigests`` kept for each chunk that has them.
    func blockDigests(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Data]

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

    // MARK: Operations (repair, rebalance, drain, gc, fsck)

    /// Known chunks after `after` in id order, each with the servers recorded as holding it.
    func chunkFacts(after: ChunkID?, limit: Int) async throws -> [ChunkFacts]

    /// The same facts for these chunks; unknown ones are absent.
    func chunkFacts(of ids: [ChunkID]) async throws -> [ChunkFacts]

    /// Chunks recorded on one server after `after`, in id order, with stored sizes.
    func replicas(onServer serverID: String, after: ChunkID?, limit: Int) async throws -> [(ChunkID, Int64)]

    /// What the master records on a server: replicas, their bytes, and how many are the only
    /// recorded copy of their chunk.
    func holdings(of serverID: String) async throws -> (chunks: Int64, bytes: Int64, soleCopies: Int64)

    /// Forgets a server: its record and every replica fact naming it.
    func deleteServer(_ serverID: String) async throws

    /// A small persisted value (operation state), by key.
    func setting(_ key: String) async throws -> [UInt8]?
    func saveSetting(_ key: String, _ value: [UInt8]) async throws

    /// Drops the manifests of versions superseded (by a newer version or a delete) before
    /// `cutoff`: they stop holding their chunks. Counts them only, with `dryRun`.
    func pruneVersions(supersededBefore cutoff: Int64, dryRun: Bool) async throws -> Int64

    /// Records every chunk no manifest names as a garbage candidate (marked now, unless marked
    /// before), and drops candidates that are referenced again. Returns how many are candidates.
    func markUnreferencedChunks(nowMilliseconds: Int64) async throws -> Int64

    /// Unreferenced chunks after `after`, in id order, with facts and when they were marked
    /// (nil: not marked yet).
    func unreferencedChunks(after: ChunkID?, limit: Int) async throws -> [(ChunkFacts, markedAt: Int64?)]

    /// In one transaction: of these candidates, those still unreferenced, marked at or before
    /// `markedBefore` and not written by anyone since their mark lose their facts (chunk,
    /// replicas, mark). Returns them, with the servers that held them and their mark time.
    func collect(_ ids: [ChunkID], markedBefore: Int64) async throws -> [(ChunkFacts, markedAt: Int64)]

    /// Which of these chunks are garbage candidates: placement must not offer them as present.
    func garbageCandidates(among ids: [ChunkID]) async throws -> Set<ChunkID>

    /// Files on servers that the master has no fact for: remembers when each was first seen
    /// (the grace runs from then) and returns that time per (chunk, server).
    func noteOrphans(_ orphans: [(ChunkID, String)], nowMilliseconds: Int64) async throws -> [Int64]

    /// Forgets orphan notes (deleted, adopted or recorded since).
    func forgetOrphans(_ orphans: [(ChunkID, String)]) async throws

    /// Current files using each chunk, at most `limit` per chunk.
    func files(using ids: [ChunkID], limit: Int) async throws -> [ChunkID: [String]]

    // MARK: Buckets and access keys (gateways)

    /// Creates a bucket; `alreadyExists` when it does.
    func createBucket(_ bucket: BucketRecord) async throws
    /// Deletes a bucket; `failedPrecondition` while any live file is under `NAME/`.
    func deleteBucket(_ name: String) async throws
    func buckets() async throws -> [BucketRecord]
    func bucket(_ name: String) async throws -> BucketRecord?
    func setBucketAccess(_ name: String, publicRead: Bool) async throws
    func setBucketLifecycle(_ name: String, _ lifecycle: BucketLifecycle?) async throws
    /// The current version of a path and, when a multipart upload made it, its parts.
    func parts(of path: BlobPath) async throws -> FileParts?

    func createAccessKey(_ key: AccessKey) async throws
    func accessKeys() async throws -> [AccessKey]
    func accessKey(_ id: String) async throws -> AccessKey?
    func deleteAccessKey(_ id: String) async throws

    // MARK: Multipart uploads

    func createUpload(_ upload: MultipartUpload) async throws
    func upload(_ id: String) async throws -> MultipartUpload?
    /// Uploads in progress whose target path starts with `prefix`, by path then id; with
    /// `createdBefore`, only those begun before that time (so old ones are found however many
    /// newer ones come first).
    func uploads(prefix: String, createdBefore: Int64?, limit: Int) async throws -> [MultipartUpload]
    /// Aborts: tombstones every part and forgets the upload (gc reclaims the parts' chunks).
    func abortUpload(_ id: String, nowMilliseconds: Int64) async throws
    /// In one transaction: checks each named part exists with that digest (parts other than the
    /// last at least `minimumPartSize`), commits the target as the parts' manifests in order,
    /// tombstones every part and forgets the upload. No chunk bytes move.
    func completeUpload(_ id: String, parts: [CompletedPart], attributes: [String: String]?, precondition: WritePrecondition?, minimumPartSize: Int64, nowMilliseconds: Int64) async throws -> FileVersion
}

/// A chunk the master knows, with the servers recorded as holding it.
public struct ChunkFacts: Sendable, Hashable {
    public var id: ChunkID
    public var plainByteCount: Int64
    public var storedByteCount: Int64
    public var servers: [String]

    public init(id: ChunkID, plainByteCount: Int64, storedByteCount: Int64, servers: [String]) {
        self.id = id
        self.plainByteCount = plainByteCount
        self.storedByteCount = storedByteCount
        self.servers = servers
    }

    public var report: ReplicaReport {
        ReplicaReport(chunkID: id, plainByteCount: plainByteCount, storedByteCount: storedByteCount)
    }
}

/// The facts behind a read plan, read together.
public struct ReadPlanFacts: Sendable {
    public var file: FileVersion
    /// The version's entries that overlap the range, in file order.
    public var entries: [ManifestEntry]
    /// The servers holding each chunk.
    public var locations: [ChunkID: [String]]
    /// The stored (framed, compressed) size of each chunk.
    public var storedSizes: [ChunkID: Int64]
    /// The ``BlockDigests`` of the chunks the range starts or ends inside, where kept.
    public var blockDigests: [ChunkID: Data]
}

extension MetadataStore {
    /// Uploads in progress whose target path starts with `prefix`, by path then id.
    public func uploads(prefix: String, limit: Int) async throws -> [MultipartUpload] {
        try await uploads(prefix: prefix, createdBefore: nil, limit: limit)
    }

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

extension MetadataStore {
    /// The version and all of its manifest entries.
    public func manifest(of path: BlobPath, version: Int64?) async throws -> (FileVersion, [ManifestEntry])? {
        try await manifest(of: path, version: version, overlapping: nil)
    }
}
