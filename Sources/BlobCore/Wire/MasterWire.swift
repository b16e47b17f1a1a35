/// The JSON bodies of the master's client-facing API (docs/api.md).
public import Foundation

/// One chunk a writer is about to send: its id and plain size.
public struct PlacementRequestEntry: Codable, Sendable, Hashable {
    public var id: ChunkID
    public var plainByteCount: Int64

    public init(id: ChunkID, plainByteCount: Int64) {
        self.id = id
        self.plainByteCount = plainByteCount
    }
}

/// A server as placement answers name it.
public struct ServerEndpoint: Codable, Sendable, Hashable {
    public var id: String
    public var address: String

    public init(id: String, address: String) {
        self.id = id
        self.address = address
    }
}

/// Where one chunk is, or where it should go.
public struct PlacementAnswer: Codable, Sendable, Hashable {
    public var id: ChunkID
    /// True when the chunk already has enough live replicas: do not send it again.
    public var isPresent: Bool
    /// Live servers holding it now.
    public var holders: [ServerEndpoint]
    /// When not present: the servers to write to, first replica first (send to the first,
    /// naming the others as replicas).
    public var targets: [ServerEndpoint]

    public init(id: ChunkID, isPresent: Bool, holders: [ServerEndpoint], targets: [ServerEndpoint]) {
        self.id = id
        self.isPresent = isPresent
        self.holders = holders
        self.targets = targets
    }
}

public struct PlacementRequest: Codable, Sendable, Hashable {
    public var chunks: [PlacementRequestEntry]
    public init(chunks: [PlacementRequestEntry]) { self.chunks = chunks }
}

public struct PlacementReply: Codable, Sendable, Hashable {
    public var ringEpoch: UInt64
    public var replicaCount: Int
    public var chunks: [PlacementAnswer]
    public init(ringEpoch: UInt64, replicaCount: Int, chunks: [PlacementAnswer]) {
        self.ringEpoch = ringEpoch
        self.replicaCount = replicaCount
        self.chunks = chunks
    }
}

/// A writer's acknowledgement: these servers answered that the chunk is durable.
public struct ReplicaAcknowledgement: Codable, Sendable, Hashable {
    public var id: ChunkID
    public var plainByteCount: Int64
    public var storedByteCount: Int64
    public var serverIDs: [String]
    /// The writer's ``BlockDigests`` of the plain bytes (base64 in JSON), for chunks larger
    /// than one block; the master keeps the first well-formed set it is given.
    public var blockDigests: Data?

    public init(
        id: ChunkID, plainByteCount: Int64, storedByteCount: Int64, serverIDs: [String], blockDigests: Data? = nil
    ) {
        self.id = id
        self.plainByteCount = plainByteCount
        self.storedByteCount = storedByteCount
        self.serverIDs = serverIDs
        self.blockDigests = blockDigests
    }
}

public struct ReplicaAcknowledgements: Codable, Sendable, Hashable {
    public var chunks: [ReplicaAcknowledgement]
    public init(chunks: [ReplicaAcknowledgement]) { self.chunks = chunks }
}

/// A chunk server's batch report of changes on its disk.
public struct ChunkReport: Codable, Sendable, Hashable {
    public var added: [ReplicaAcknowledgement]
    public var removed: [ChunkID]
    public var quarantined: [ChunkID]

    public init(added: [ReplicaAcknowledgement], removed: [ChunkID], quarantined: [ChunkID]) {
        self.added = added
        self.removed = removed
        self.quarantined = quarantined
    }
}

/// One chunk of a read plan: the manifest entry and where to read it, preferred first.
public struct ReadPlanEntry: Codable, Sendable, Hashable {
    public var chunk: ManifestEntry
    public var replicas: [ServerEndpoint]
    /// Bytes the chunk takes on one disk (its frame), when the master knows it.
    public var storedByteCount: Int64?
    /// The chunk's ``BlockDigests``, given when the planned range starts or ends inside the
    /// chunk and the master has them: the reader then fetches only the blocks it needs.
    public var blockDigests: Data?

    public init(
        chunk: ManifestEntry, replicas: [ServerEndpoint], storedByteCount: Int64? = nil, blockDigests: Data? = nil
    ) {
        self.chunk = chunk
        self.replicas = replicas
        self.storedByteCount = storedByteCount
        self.blockDigests = blockDigests
    }
}

/// A reader's report that a replica gave bytes that failed a check, or did not answer.
public struct SuspectReplica: Codable, Sendable, Hashable {
    public var id: ChunkID
    public var serverID: String
    /// `corruptChunk`, `unavailable`, `timeout`, …: the error code the reader saw.
    public var code: String

    public init(id: ChunkID, serverID: String, code: String) {
        self.id = id
        self.serverID = serverID
        self.code = code
    }
}

public struct SuspectReplicas: Codable, Sendable, Hashable {
    public var replicas: [SuspectReplica]
    public init(replicas: [SuspectReplica]) { self.replicas = replicas }
}

public struct ReadPlan: Codable, Sendable, Hashable {
    public var file: FileVersion
    public var chunks: [ReadPlanEntry]

    public init(file: FileVersion, chunks: [ReadPlanEntry]) {
        self.file = file
        self.chunks = chunks
    }
}

/// Liveness of a chunk server as the master sees it.
public enum ServerState: String, Codable, Sendable, Hashable {
    /// Heartbeats arrive on time.
    case alive
    /// Heartbeats are late; reads and writes route around it, no repair yet.
    case suspect
    /// Silent past the grace period; its data is to be re-replicated.
    case down
    /// Known from before a master restart, not heard from since.
    case unknown
}

public struct ServerStatusEntry: Codable, Sendable, Hashable {
    public var id: String
    public var address: String
    public var zone: String
    public var weight: Double
    public var capacityBytes: Int64?
    public var state: ServerState
    public var inRing: Bool
    public var usage: ServerUsage?
    public var millisecondsSinceHeartbeat: Int64?

    public init(
        id: String, address: String, zone: String, weight: Double, capacityBytes: Int64? = nil,
        state: ServerState, inRing: Bool, usage: ServerUsage?, millisecondsSinceHeartbeat: Int64?
    ) {
        self.id = id
        self.address = address
        self.zone = zone
        self.weight = weight
        self.capacityBytes = capacityBytes
        self.state = state
        self.inRing = inRing
        self.usage = usage
        self.millisecondsSinceHeartbeat = millisecondsSinceHeartbeat
    }
}

public struct ClusterStatus: Codable, Sendable, Hashable {
    public var ringEpoch: UInt64?
    public var replicaCount: Int
    public var servers: [ServerStatusEntry]
    /// What repair has done since this master started (only the leader repairs).
    public var repair: RepairActivity?
    /// Every master running on the metadata database, as the database last heard from it.
    public var masters: [MasterStatusEntry]?
    /// The leader lease: who holds it, its term, and how fresh it is.
    public var leader: LeaderStatus?
    /// The id of the master that answered.
    public var answeredBy: String?
    /// The PostgreSQL nodes of the metadata (`--metadata` and `--metadata-replicas` hosts), each
    /// as it answered the master that answered now; nil on SQLite.
    public var metadataNodes: [MetadataNodeStatus]?

    public init(ringEpoch: UInt64?, replicaCount: Int, servers: [ServerStatusEntry]) {
        self.ringEpoch = ringEpoch
        self.replicaCount = replicaCount
        self.servers = servers
    }
}

/// One PostgreSQL node of the metadata, as a master found it just now.
public struct MetadataNodeStatus: Codable, Sendable, Hashable {
    /// HOST:PORT.
    public var endpoint: String
    /// `primary`, `standby`, or `unreachable` (with ``error``).
    public var role: String
    /// The primary's WAL write position, or a standby's replayed one.
    public var position: String?
    /// How far a standby's replay is behind the primary, in bytes of WAL.
    public var bytesBehind: Int64?
    /// Whether masters may read from it (`--metadata-replicas` names it).
    public var servesReads: Bool
    public var error: String?

    public init(
        endpoint: String, role: String, position: String? = nil, bytesBehind: Int64? = nil, servesReads: Bool,
        error: String? = nil
    ) {
        self.endpoint = endpoint
        self.role = role
        self.position = position
        self.bytesBehind = bytesBehind
        self.servesReads = servesReads
        self.error = error
    }
}

/// One master, as the metadata database last heard from it (each master renews its entry at
/// every lease round).
public struct MasterStatusEntry: Codable, Sendable, Hashable {
    /// The master's instance id (new at every start).
    public var id: String
    public var address: String
    /// Heard from within three lease rounds.
    public var reachable: Bool
    public var isLeader: Bool
    public var millisecondsSinceSeen: Int64
    public var startedAtMilliseconds: Int64

    public init(
        id: String, address: String, reachable: Bool, isLeader: Bool, millisecondsSinceSeen: Int64,
        startedAtMilliseconds: Int64
    ) {
        self.id = id
        self.address = address
        self.reachable = reachable
        self.isLeader = isLeader
        self.millisecondsSinceSeen = millisecondsSinceSeen
        self.startedAtMilliseconds = startedAtMilliseconds
    }
}

/// The leader lease as a master sees it.
public struct LeaderStatus: Codable, Sendable, Hashable {
    /// The holder's instance id and address.
    public var id: String
    public var address: String
    /// The fencing token of its tenure.
    public var term: Int64
    /// Since the lease was last renewed.
    public var leaseAgeMilliseconds: Int64
    /// Until it expires unless renewed (negative: expired).
    public var expiresInMilliseconds: Int64

    public init(id: String, address: String, term: Int64, leaseAgeMilliseconds: Int64, expiresInMilliseconds: Int64) {
        self.id = id
        self.address = address
        self.term = term
        self.leaseAgeMilliseconds = leaseAgeMilliseconds
        self.expiresInMilliseconds = expiresInMilliseconds
    }
}

/// Repair's counters since the master started: how many passes ended, and what they copied.
public struct RepairActivity: Codable, Sendable, Hashable {
    /// Passes that ran to their end (a pass with nothing to repair counts too).
    public var passes: Int64
    public var copiedChunks: Int64
    public var copiedBytes: Int64
    public var failures: Int64
    /// Chunks below R live copies that the last pass found (all of them once a full scan has
    /// ended; between full scans, those on down servers and those reported damaged).
    public var underReplicatedChunks: Int64?
    /// Of those, the ones still short when the last pass ended (a copy failed, or no live
    /// source or target was there).
    public var queuedChunks: Int64?

    public init(
        passes: Int64, copiedChunks: Int64, copiedBytes: Int64, failures: Int64, underReplicatedChunks: Int64? = nil,
        queuedChunks: Int64? = nil
    ) {
        self.passes = passes
        self.copiedChunks = copiedChunks
        self.copiedBytes = copiedBytes
        self.failures = failures
        self.underReplicatedChunks = underReplicatedChunks
        self.queuedChunks = queuedChunks
    }
}
