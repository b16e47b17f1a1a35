/// The JSON bodies of the chunk server ↔ master membership protocol (docs/api.md).
///
/// A chunk server registers once at start (`POST /v1/cluster/servers`), then heartbeats
/// (`POST /v1/cluster/servers/{id}/heartbeat`) at the interval the master asks for. A heartbeat
/// answered 404 means the master does not know the server (for example after losing its
/// state): the server registers again. Work for the server will ride heartbeat replies.

/// What a chunk server tells the master about itself when it starts.
public struct ServerRegistration: Codable, Sendable, Equatable {
    public var serverID: String
    /// `host:port` where peers and clients reach the server.
    public var address: String
    public var zone: String
    public var weight: Double
    public var capacityBytes: Int64?
    public var usage: ServerUsage

    public init(
        serverID: String, address: String, zone: String, weight: Double, capacityBytes: Int64?, usage: ServerUsage
    ) {
        self.serverID = serverID
        self.address = address
        self.zone = zone
        self.weight = weight
        self.capacityBytes = capacityBytes
        self.usage = usage
    }
}

/// A chunk server's usage, sent at registration and with every heartbeat.
public struct ServerUsage: Codable, Sendable, Hashable {
    public var usedBytes: Int64
    public var freeDiskBytes: Int64
    public var chunkCount: Int64
    public var logicalBytes: Int64
    /// Requests being served when the heartbeat was sent.
    public var inFlightRequests: Int64

    public init(usedBytes: Int64, freeDiskBytes: Int64, chunkCount: Int64, logicalBytes: Int64, inFlightRequests: Int64)
    {
        self.usedBytes = usedBytes
        self.freeDiskBytes = freeDiskBytes
        self.chunkCount = chunkCount
        self.logicalBytes = logicalBytes
        self.inFlightRequests = inFlightRequests
    }
}

/// A chunk server's periodic sign of life.
public struct ServerHeartbeat: Codable, Sendable, Equatable {
    public var serverID: String
    public var address: String
    public var usage: ServerUsage
    /// Increases by one with every heartbeat since the server started.
    public var sequence: Int64

    public init(serverID: String, address: String, usage: ServerUsage, sequence: Int64) {
        self.serverID = serverID
        self.address = address
        self.usage = usage
        self.sequence = sequence
    }
}

/// The master's answer to a registration or a heartbeat.
public struct MembershipReply: Codable, Sendable, Equatable {
    /// How often the master wants heartbeats, in milliseconds.
    public var heartbeatIntervalMilliseconds: Int64
    /// The master's current ring epoch, so a server can tell it is behind.
    public var ringEpoch: UInt64?

    public init(heartbeatIntervalMilliseconds: Int64, ringEpoch: UInt64?) {
        self.heartbeatIntervalMilliseconds = heartbeatIntervalMilliseconds
        self.ringEpoch = ringEpoch
    }
}
