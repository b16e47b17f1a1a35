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

    public init(
        id: String, address: String, zone: String, weight: Double, capacityBytes: Int64?,
        registeredAtMilliseconds: Int64
    ) {
        self.id = id
        self.address = address
        self.zone = zone
        self.weight = weight
        self.capacityBytes = capacityBytes
        self.registeredAtMilliseconds = registeredAtMilliseconds
    }
}
