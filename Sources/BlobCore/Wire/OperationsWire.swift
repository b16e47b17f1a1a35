/// The JSON bodies of the operator API: repair, rebalance, drain, garbage collection and fsck
/// (docs/api.md, "Operations").

/// The master asks a chunk server to send one of its chunks to other servers.
public struct ChunkCopyRequest: Codable, Sendable, Equatable {
    /// `host:port` of each server to copy to.
    public var targets: [String]

    public init(targets: [String]) { self.targets = targets }
}

/// Bytes and chunks that one (source → target) pair of a plan moves.
public struct PlannedTransfer: Codable, Sendable, Hashable {
    public var source: String
    public var target: String
    public var chunks: Int64
    public var bytes: Int64

    public init(source: String, target: String, chunks: Int64, bytes: Int64) {
        self.source = source
        self.target = target
        self.chunks = chunks
        self.bytes = bytes
    }
}

/// What a rebalance does to one server's disk.
public struct ServerDiskChange: Codable, Sendable, Hashable {
    public var server: String
    /// Bytes copied onto it.
    public var incomingBytes: Int64
    /// Bytes of surplus replicas deleted from it once their replacements are durable.
    public var deletedBytes: Int64
    /// The most extra disk it may need at once: every copy lands before any deletion frees room.
    public var peakExtraBytes: Int64

    public init(server: String, incomingBytes: Int64, deletedBytes: Int64, peakExtraBytes: Int64) {
        self.server = server
        self.incomingBytes = incomingBytes
        self.deletedBytes = deletedBytes
        self.peakExtraBytes = peakExtraBytes
    }
}

/// The difference between where replicas are and where the ring wants them.
public struct RebalancePlan: Codable, Sendable, Hashable {
    public var ringEpoch: UInt64
    public var replicaCount: Int
    /// Chunks the master knows and bytes stored for them (all replicas).
    public var chunksChecked: Int64
    public var storedBytes: Int64
    public var transfers: [PlannedTransfer]
    public var copyChunks: Int64
    public var copyBytes: Int64
    /// Surplus replicas deleted after their replacements are durable.
    public var deleteChunks: Int64
    public var deleteBytes: Int64
    /// Copies that cannot be made now (the ring wants a server that is not alive, or no live
    /// replica can be read); repair or a later run takes them.
    public var blockedChunks: Int64
    public var servers: [ServerDiskChange]
    public var maxBytesPerSecond: Int64?
    /// `copyBytes` at the throttle; nil when unthrottled.
    public var expectedSeconds: Double?

    public init(
        ringEpoch: UInt64, replicaCount: Int, chunksChecked: Int64, storedBytes: Int64,
        transfers: [PlannedTransfer], copyChunks: Int64, copyBytes: Int64, deleteChunks: Int64,
        deleteBytes: Int64, blockedChunks: Int64, servers: [ServerDiskChange], maxBytesPerSecond: Int64?,
        expectedSeconds: Double?
    ) {
        self.ringEpoch = ringEpoch
        self.replicaCount = replicaCount
        self.chunksChecked = chunksChecked
        self.storedBytes = storedBytes
        self.transfers = transfers
        self.copyChunks = copyChunks
        self.copyBytes = copyBytes
        self.deleteChunks = deleteChunks
        self.deleteBytes = deleteBytes
        self.blockedChunks = blockedChunks
        self.servers = servers
        self.maxBytesPerSecond = maxBytesPerSecond
        self.expectedSeconds = expectedSeconds
    }
}

/// Starts a rebalance.
public struct RebalanceStart: Codable, Sendable, Hashable {
    /// Copy rate limit in bytes per second; nil or 0: as fast as the servers go.
    public var maxBytesPerSecond: Int64?

    public init(maxBytesPerSecond: Int64?) { self.maxBytesPerSecond = maxBytesPerSecond }
}

/// A rebalance's progress; persisted by the master, so it survives a restart.
public struct RebalanceStatus: Codable, Sendable, Hashable {
    public enum State: String, Codable, Sendable, Hashable {
        /// Never started.
        case idle
        case running
        /// Stopped by an operator; `rebalance` resumes it.
        case stopped
        /// Placement equals the ring (or what remains is blocked; see `blockedChunks`).
        case finished
    }

    public var state: State
    public var ringEpoch: UInt64?
    public var maxBytesPerSecond: Int64?
    public var startedAtMilliseconds: Int64?
    public var updatedAtMilliseconds: Int64?
    /// Copy bytes the plan had when the run started (or resumed), plus what was moved before.
    public var plannedBytes: Int64
    public var movedBytes: Int64
    public var movedChunks: Int64
    public var deletedChunks: Int64
    public var blockedChunks: Int64
    public var errors: Int64
    public var lastError: String?

    public init(
        state: State = .idle, ringEpoch: UInt64? = nil, maxBytesPerSecond: Int64? = nil,
        startedAtMilliseconds: Int64? = nil, updatedAtMilliseconds: Int64? = nil, plannedBytes: Int64 = 0,
        movedBytes: Int64 = 0, movedChunks: Int64 = 0, deletedChunks: Int64 = 0, blockedChunks: Int64 = 0,
        errors: Int64 = 0, lastError: String? = nil
    ) {
        self.state = state
        self.ringEpoch = ringEpoch
        self.maxBytesPerSecond = maxBytesPerSecond
        self.startedAtMilliseconds = startedAtMilliseconds
        self.updatedAtMilliseconds = updatedAtMilliseconds
        self.plannedBytes = plannedBytes
        self.movedBytes = movedBytes
        self.movedChunks = movedChunks
        self.deletedChunks = deletedChunks
        self.blockedChunks = blockedChunks
        self.errors = errors
        self.lastError = lastError
    }
}

/// Changes a server's ring weight (0 drains it).
public struct NodeWeightChange: Codable, Sendable, Hashable {
    public var weight: Double
    public init(weight: Double) { self.weight = weight }
}

/// Suspends repair of a server's data for a planned outage.
public struct NodeMaintenance: Codable, Sendable, Hashable {
    /// How long from now; 0 ends maintenance.
    public var seconds: Int64
    public init(seconds: Int64) { self.seconds = seconds }
}

/// What the master holds on one server, and what a drain has left to move.
public struct NodeReport: Codable, Sendable, Hashable {
    public var id: String
    public var address: String
    public var state: ServerState
    public var weight: Double
    public var inRing: Bool
    /// Replicas the master records on it.
    public var chunks: Int64
    public var storedBytes: Int64
    /// Chunks for which it holds the only recorded copy.
    public var soleCopies: Int64
    public var maintenanceUntilMilliseconds: Int64?

    public init(
        id: String, address: String, state: ServerState, weight: Double, inRing: Bool, chunks: Int64,
        storedBytes: Int64, soleCopies: Int64, maintenanceUntilMilliseconds: Int64?
    ) {
        self.id = id
        self.address = address
        self.state = state
        self.weight = weight
        self.inRing = inRing
        self.chunks = chunks
        self.storedBytes = storedBytes
        self.soleCopies = soleCopies
        self.maintenanceUntilMilliseconds = maintenanceUntilMilliseconds
    }
}

/// Runs garbage collection (or only reports it).
public struct GCRequest: Codable, Sendable, Hashable {
    public var dryRun: Bool
    /// A longer grace period for this run; shorter than the master's configured one is refused.
    public var graceSeconds: Int64?

    public init(dryRun: Bool, graceSeconds: Int64? = nil) {
        self.dryRun = dryRun
        self.graceSeconds = graceSeconds
    }
}

/// Bytes garbage collection frees (or would free) on one server.
public struct ServerReclaim: Codable, Sendable, Hashable {
    public var server: String
    /// Chunks past the grace period: deleted by this run (or by a run now, for a dry run).
    public var chunks: Int64
    public var bytes: Int64
    /// Unreferenced chunks still inside the grace period.
    public var pendingChunks: Int64
    public var pendingBytes: Int64
    /// Files on the server the master has no record of.
    public var orphanChunks: Int64
    public var orphanBytes: Int64

    public init(
        server: String, chunks: Int64 = 0, bytes: Int64 = 0, pendingChunks: Int64 = 0, pendingBytes: Int64 = 0,
        orphanChunks: Int64 = 0, orphanBytes: Int64 = 0
    ) {
        self.server = server
        self.chunks = chunks
        self.bytes = bytes
        self.pendingChunks = pendingChunks
        self.pendingBytes = pendingBytes
        self.orphanChunks = orphanChunks
        self.orphanBytes = orphanBytes
    }
}

/// The outcome of a garbage collection run.
public struct GCReport: Codable, Sendable, Hashable {
    public var dryRun: Bool
    public var graceSeconds: Int64
    /// Superseded and deleted versions older than the grace whose manifests were dropped.
    public var prunedVersions: Int64
    public var servers: [ServerReclaim]
    public var reclaimableChunks: Int64
    public var reclaimableBytes: Int64
    public var deletedChunks: Int64
    public var deletedBytes: Int64
    /// Deletions a server refused (the chunk was written again meanwhile) or failed; kept.
    public var keptChunks: Int64
    /// Multipart uploads older than the master's limit, aborted (their parts go as garbage).
    public var abortedUploads: Int64

    public init(
        dryRun: Bool, graceSeconds: Int64, prunedVersions: Int64, servers: [ServerReclaim],
        reclaimableChunks: Int64, reclaimableBytes: Int64, deletedChunks: Int64, deletedBytes: Int64,
        keptChunks: Int64, abortedUploads: Int64 = 0
    ) {
        self.abortedUploads = abortedUploads
        self.dryRun = dryRun
        self.graceSeconds = graceSeconds
        self.prunedVersions = prunedVersions
        self.servers = servers
        self.reclaimableChunks = reclaimableChunks
        self.reclaimableBytes = reclaimableBytes
        self.deletedChunks = deletedChunks
        self.deletedBytes = deletedBytes
        self.keptChunks = keptChunks
    }
}

/// Runs a consistency check.
public struct FsckRequest: Codable, Sendable, Hashable {
    /// Fix what can be fixed: forget replicas whose files are gone, adopt files the master lost
    /// track of, re-replicate chunks below R copies.
    public var repair: Bool
    public init(repair: Bool) { self.repair = repair }
}

/// One chunk fsck found wrong, and the files it belongs to.
public struct ChunkProblem: Codable, Sendable, Hashable {
    public enum Kind: String, Codable, Sendable, Hashable {
        /// The master records a replica the server does not have.
        case missing
        /// Fewer than R live copies (but at least one).
        case underReplicated
        /// No live copy at all.
        case lost
        /// Copies on servers the ring does not name.
        case misplaced
        /// On a server but unknown to the master there.
        case orphaned
        /// Failed a check and was quarantined on a server.
        case corrupt
    }

    public var kind: Kind
    public var chunk: String
    public var server: String?
    public var liveCopies: Int?
    /// Current files that use the chunk (at most a few).
    public var files: [String]

    public init(kind: Kind, chunk: String, server: String?, liveCopies: Int?, files: [String]) {
        self.kind = kind
        self.chunk = chunk
        self.server = server
        self.liveCopies = liveCopies
        self.files = files
    }
}

/// What fsck found.
public struct FsckReport: Codable, Sendable, Hashable {
    public var chunksChecked: Int64
    public var serversChecked: Int
    /// Servers whose inventory could not be read (their facts were not verified).
    public var unreachableServers: [String]
    public var missing: Int64
    public var underReplicated: Int64
    public var lost: Int64
    public var misplaced: Int64
    public var orphaned: Int64
    public var corrupt: Int64
    /// Up to 1,000 problems, the most serious first.
    public var problems: [ChunkProblem]
    /// Current files with at least one lost chunk.
    public var filesAtRisk: [String]
    /// True while any chunk is lost, missing or below R live copies.
    public var dataAtRisk: Bool
    /// With repair: copies made, facts dropped and adopted.
    public var repairedChunks: Int64
    public var forgottenReplicas: Int64
    public var adoptedReplicas: Int64

    public init(
        chunksChecked: Int64, serversChecked: Int, unreachableServers: [String], missing: Int64,
        underReplicated: Int64, lost: Int64, misplaced: Int64, orphaned: Int64, corrupt: Int64,
        problems: [ChunkProblem], filesAtRisk: [String], dataAtRisk: Bool, repairedChunks: Int64,
        forgottenReplicas: Int64, adoptedReplicas: Int64
    ) {
        self.chunksChecked = chunksChecked
        self.serversChecked = serversChecked
        self.unreachableServers = unreachableServers
        self.missing = missing
        self.underReplicated = underReplicated
        self.lost = lost
        self.misplaced = misplaced
        self.orphaned = orphaned
        self.corrupt = corrupt
        self.problems = problems
        self.filesAtRisk = filesAtRisk
        self.dataAtRisk = dataAtRisk
        self.repairedChunks = repairedChunks
        self.forgottenReplicas = forgottenReplicas
        self.adoptedReplicas = adoptedReplicas
    }
}

/// A chunk server's quarantine: ids of frames that failed a check there.
public struct QuarantineList: Codable, Sendable, Hashable {
    public var chunks: [String]
    public init(chunks: [String]) { self.chunks = chunks }
}
