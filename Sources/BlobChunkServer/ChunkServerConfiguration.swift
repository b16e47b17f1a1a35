import BlobCore
public import BlobServerSupport
public import BlobTransport

/// Everything a chunk server needs to run; no hidden globals.
public struct ChunkServerConfiguration: Sendable {
    /// The data directory; every file the server writes lives below it.
    public var dataDirectory: String
    /// Address to bind; port 0 picks a free port.
    public var host: String
    public var port: Int
    /// The address peers and clients use, when it differs from the bound one.
    public var advertisedHost: String?
    public var zone: String
    public var weight: Double
    /// Most bytes of frames this server may hold; nil means the disk decides.
    public var capacityBytes: Int64?
    /// Free disk space kept back; nil means min(5% of the file system, 4 GiB).
    public var reserveBytes: Int64?
    /// The cluster secret that signs and checks request tokens.
    public var secret: [UInt8]
    /// Background scrub rate; 0 turns scrubbing off.
    public var scrubBytesPerSecond: Int64
    /// Pause between two scrub passes over all chunks.
    public var scrubPassInterval: Duration
    /// Time allowed for forwarding one chunk to one peer.
    public var forwardTimeout: Duration
    /// Time allowed to connect to a peer; a peer that is down fails the forward after this.
    public var peerConnectTimeout: Duration
    /// Threads for blocking file calls (reads, writes, fsync).
    public var diskThreadCount: Int
    /// The master to register and heartbeat with (`http://host:port`); nil runs standalone.
    public var masterURL: String?
    /// Heartbeat interval until the master names one.
    public var heartbeatInterval: Duration
    /// Faults to inject into disk calls (tests only); nil in servers.
    public var diskFaults: (any DiskFaultInjector)?
    /// Faults to inject into requests to peers (tests only); nil in servers.
    public var peerFaults: (any PeerFaultInjector)?
    /// The metrics listener (`/metrics` and the probes); nil: none.
    public var metricsListener: ObservabilityListenerConfiguration?
    /// Count, time and log every request (``RequestObserver``); off only to
    /// measure what that costs (`--no-observe-requests`).
    public var observeRequests = true
    /// The certificate this server serves HTTPS with (nil: plain HTTP), reloaded on SIGHUP.
    public var certificate: ServerCertificate?
    /// How this server reaches the master and its peers (the masters' scheme, verified against
    /// `--tls-ca`).
    public var transport: ClusterTransport = .plain

    public init(
        dataDirectory: String, host: String = "127.0.0.1", port: Int = 0, advertisedHost: String? = nil,
        zone: String = "default", weight: Double = 1, capacityBytes: Int64? = nil, reserveBytes: Int64? = nil,
        secret: [UInt8], scrubBytesPerSecond: Int64 = 32 << 20, scrubPassInterval: Duration = .seconds(3600),
        forwardTimeout: Duration = .seconds(30), peerConnectTimeout: Duration = .seconds(1), diskThreadCount: Int = 16,
        masterURL: String? = nil, heartbeatInterval: Duration = .seconds(5)
    ) {
        self.dataDirectory = dataDirectory
        self.host = host
        self.port = port
        self.advertisedHost = advertisedHost
        self.zone = zone
        self.weight = weight
        self.capacityBytes = capacityBytes
        self.reserveBytes = reserveBytes
        self.secret = secret
        self.scrubBytesPerSecond = scrubBytesPerSecond
        self.scrubPassInterval = scrubPassInterval
        self.forwardTimeout = forwardTimeout
        self.peerConnectTimeout = peerConnectTimeout
        self.diskThreadCount = diskThreadCount
        self.masterURL = masterURL
        self.heartbeatInterval = heartbeatInterval
    }
}
