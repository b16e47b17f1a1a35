/// The JSON bodies of the chunk server's HTTP API (docs/api.md).

/// The body of every error response.
public struct ErrorBody: Codable, Sendable, Equatable {
    public var code: String
    public var reason: String
    public var message: String
    public var node: String?

    public init(code: String, reason: String, message: String, node: String?) {
        self.code = code
        self.reason = reason
        self.message = message
        self.node = node
    }

    /// The error this body describes, as the client rebuilds it.
    public var error: BlobError {
        BlobError(BlobErrorCode(rawValue: code), reason: reason, message, node: node)
    }
}

/// One target of a replicated write that did not confirm.
public struct ReplicaFailure: Codable, Sendable, Equatable {
    /// The target's address (`host:port`).
    public var target: String
    public var code: String
    public var message: String

    public init(target: String, code: String, message: String) {
        self.target = target
        self.code = code
        self.message = message
    }
}

/// The answer to a chunk write: where the chunk is now durable and where it failed.
public struct ChunkWriteResult: Codable, Sendable, Equatable {
    public var id: String
    /// Addresses holding the chunk durably, the receiving server first.
    public var stored: [String]
    /// Server ids matching ``stored``, where known.
    public var storedServerIDs: [String]
    public var failed: [ReplicaFailure]
    /// Whether the write reached its quorum.
    public var quorumMet: Bool
    /// True when the receiving server already had the chunk and wrote nothing.
    public var alreadyPresent: Bool

    public init(
        id: String, stored: [String], storedServerIDs: [String], failed: [ReplicaFailure],
        quorumMet: Bool, alreadyPresent: Bool
    ) {
        self.id = id
        self.stored = stored
        self.storedServerIDs = storedServerIDs
        self.failed = failed
        self.quorumMet = quorumMet
        self.alreadyPresent = alreadyPresent
    }
}

/// One entry of a chunk server's inventory.
public struct InventoryEntry: Codable, Sendable, Equatable {
    public var id: String
    public var storedBytes: Int

    public init(id: String, storedBytes: Int) {
        self.id = id
        self.storedBytes = storedBytes
    }
}

/// One page of a chunk server's inventory, in id order.
public struct InventoryPage: Codable, Sendable, Equatable {
    public var chunks: [InventoryEntry]
    /// The cursor for the next page (`after=`), or nil at the end.
    public var next: String?

    public init(chunks: [InventoryEntry], next: String?) {
        self.chunks = chunks
        self.next = next
    }
}

/// A chunk server's view of itself.
public struct ChunkServerStatus: Codable, Sendable, Equatable {
    public var serverID: String
    public var address: String
    public var zone: String
    public var weight: Double
    public var capacityBytes: Int64?
    public var reserveBytes: Int64
    public var usedBytes: Int64
    public var freeDiskBytes: Int64
    public var chunkCount: Int64
    public var logicalBytes: Int64
    public var storedBytes: Int64
    public var counters: [String: Int64]

    public init(
        serverID: String, address: String, zone: String, weight: Double, capacityBytes: Int64?,
        reserveBytes: Int64, usedBytes: Int64, freeDiskBytes: Int64, chunkCount: Int64,
        logicalBytes: Int64, storedBytes: Int64, counters: [String: Int64]
    ) {
        self.serverID = serverID
        self.address = address
        self.zone = zone
        self.weight = weight
        self.capacityBytes = capacityBytes
        self.reserveBytes = reserveBytes
        self.usedBytes = usedBytes
        self.freeDiskBytes = freeDiskBytes
        self.chunkCount = chunkCount
        self.logicalBytes = logicalBytes
        self.storedBytes = storedBytes
        self.counters = counters
    }
}
