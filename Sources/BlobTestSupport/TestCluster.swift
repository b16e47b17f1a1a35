public import BlobChunkServer
public import BlobClient
public import BlobCore
import BlobGateway
public import BlobMaster
import BlobServerSupport
import Foundation
import Logging
import Synchronization

/// What an in-process cluster is made of.
public struct TestClusterOptions: Sendable {
    /// Chunk servers; each in its own zone unless ``zones`` is set.
    public var servers: Int = 3
    /// Zones the servers are spread over (server i is in zone i % zones); nil: one each.
    public var zones: Int?
    public var replicaCount: Int = 3
    /// Quick enough to see a server go down in a test; the master tells servers the interval.
    public var liveness = LivenessPolicy(
        heartbeatInterval: .milliseconds(200), suspectAfter: .seconds(2), downAfter: .seconds(5))
    public var repairInterval: Duration = .milliseconds(500)
    public var gcGrace: Duration = .seconds(1)
    /// The master's clock (liveness, pass intervals); a ``ManualClock`` makes them the test's.
    public var masterClock: any ServiceClock = SystemClock()
    /// The chunk servers' clock (heartbeats, scrub passes).
    public var serverClock: any ServiceClock = SystemClock()
    /// Disk faults of server i (by index).
    public var diskFaults: [Int: any DiskFaultInjector] = [:]
    /// Faults of the requests server i sends its peers (by index).
    public var peerFaults: [Int: any PeerFaultInjector] = [:]
    /// Also run an S3 and HTTP gateway (``TestCluster/gatewayAddress``).
    public var gateway = false
    /// The lone master leads from the start; a day-long lease keeps it leader across the large
    /// steps tests advance a manual clock by (a real master renews every few seconds).
    public var leaderLease = LeasePolicy(timeToLive: .seconds(86_400))
    /// The master's metadata; nil: SQLite in the cluster's directory.
    public var metadata: MetadataLocation?
    /// Hot standbys that may answer the master's stat, list and read plans, and their lag bound.
    public var metadataStandbys: PostgresLocation?
    public var maxStandbyLag: Duration = .seconds(5)
    /// Give every server a metrics listener (``TestCluster/metricsAddress(of:)``).
    public var metricsListeners = false

    public init() {}
}

/// One chunk server of a ``TestCluster``.
public struct TestChunkServer: Sendable {
    public var id: String
    public var address: String
    public var dataDirectory: String

    /// Where the frame of `chunk` lives on this server's disk.
    public func chunkPath(_ chunk: ChunkID) -> String {
        "\(dataDirectory)/chunks/\(chunk.hex.prefix(2))/\(chunk.hex.dropFirst(2).prefix(2))/\(chunk.hex)"
    }

    /// Files under `tmp/`: writes in progress, or left by a crash.
    public func temporaryFiles() -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: dataDirectory + "/tmp")) ?? []
    }
}

/// A master and N chunk servers running as services inside the test process, on 127.0.0.1
/// and port 0, in a temporary directory: the same server code `blobctl` runs, without a
/// process per role. Made and stopped by ``withTestCluster(_:_:)``; a server can be stopped,
/// started again on its data, or added.
public final class TestCluster: Sendable {
    public let directory: String
    public let secret: [UInt8]
    public let masterAddress: String
    /// A client of the cluster, as `blobctl` and the gateway use it.
    public let client: ClusterClient
    /// `host:port` of the gateway, when ``TestClusterOptions/gateway`` asked for one.
    public var gatewayAddress: String? { state.withLock { $0.gatewayAddress } }
    let options: TestClusterOptions
    let logger: Logger

    private struct State {
        var servers: [TestChunkServer] = []
        var configurations: [ChunkServerConfiguration] = []
        var tasks: [Int: Task<Void, any Error>] = [:]
        var gatewayAddress: String?
        var gatewayTask: Task<Void, any Error>?
    }
    private let state = Mutex(State())

    public var masterURL: String { "http://\(masterAddress)" }
    public var servers: [TestChunkServer] { state.withLock { $0.servers } }

    init(
        directory: String, secret: [UInt8], masterAddress: String, client: ClusterClient,
        options: TestClusterOptions, logger: Logger
    ) {
        self.directory = directory
        self.secret = secret
        self.masterAddress = masterAddress
        self.client = client
        self.options = options
        self.logger = logger
    }

    /// Starts a new chunk server (data in `DIR/csN`) and waits until it listens.
    @discardableResult
    public func addServer(zone: String? = nil) async throws -> TestChunkServer {
        let index = state.withLock { $0.configurations.count }
        var configuration = ChunkServerConfiguration(
            dataDirectory: "\(directory)/cs\(index)",
            zone: zone ?? "z\(index % (options.zones ?? max(options.servers, 1)))", secret: secret,
            scrubBytesPerSecond: 0, forwardTimeout: .seconds(10), diskThreadCount: 4,
            masterURL: masterURL, heartbeatInterval: options.liveness.heartbeatInterval)
        configuration.diskFaults = options.diskFaults[index]
        configuration.peerFaults = options.peerFaults[index]
        if options.metricsListeners {
            configuration.metricsListener = ObservabilityListenerConfiguration(
                addressFile: configuration.dataDirectory + "/metrics-address")
        }
        state.withLock {
            $0.configurations.append(configuration)
            $0.servers.append(TestChunkServer(id: "", address: "", dataDirectory: configuration.dataDirectory))
        }
        return try await startServer(index)
    }

    /// Starts server `index` again on its data directory (same id, a new port).
    @discardableResult
    public func startServer(_ index: Int) async throws -> TestChunkServer {
        let configuration = state.withLock { $0.configurations[index] }
        let box = AddressBox("")
        let ids = IDBox()
        let server = ChunkServer(configuration: configuration, logger: logger, clock: options.serverClock)
        let task = Task {
            try await server.run { address, id in
                ids.set(id)
                box.set(address)
            }
        }
        state.withLock { $0.tasks[index] = task }
        let address = try await bound(box, what: "chunk server \(index)", task: task)
        let started = TestChunkServer(id: ids.value, address: address, dataDirectory: configuration.dataDirectory)
        state.withLock { $0.servers[index] = started }
        return started
    }

    /// Stops server `index` (its task is cancelled; the data stays) and waits until it has.
    public func stopServer(_ index: Int) async {
        guard let task = state.withLock({ $0.tasks.removeValue(forKey: index) }) else { return }
        task.cancel()
        _ = await task.result
    }

    /// Starts the gateway on this cluster and waits until it listens.
    func startGateway() async throws {
        let spool = directory + "/gateway-spool"
        try FileManager.default.createDirectory(atPath: spool, withIntermediateDirectories: true)
        var configuration = GatewayConfiguration(
            cluster: ClusterAddress(masterURL: masterURL, secret: secret), spoolDirectory: spool)
        if options.metricsListeners {
            configuration.metricsListener = ObservabilityListenerConfiguration(
                addressFile: directory + "/gateway-metrics-address")
        }
        let gateway = GatewayServer(configuration: configuration, logger: logger)
        let box = AddressBox("")
        let task = Task { try await gateway.run { address in box.set(address) } }
        state.withLock { $0.gatewayTask = task }
        let address = try await bound(box, what: "the gateway", task: task)
        state.withLock { $0.gatewayAddress = address }
    }

    func stopAllServers() async {
        let tasks = state.withLock { state -> [Task<Void, any Error>] in
            defer {
                state.tasks = [:]
                state.gatewayTask = nil
            }
            return Array(state.tasks.values) + (state.gatewayTask.map { [$0] } ?? [])
        }
        for task in tasks { task.cancel() }
        for task in tasks { _ = await task.result }
    }

    public enum Role: Sendable {
        case master
        case chunkServer(Int)
        case gateway
    }

    /// The metrics listener of a role (with ``TestClusterOptions/metricsListeners``), once it
    /// has written its address.
    public func metricsAddress(of role: Role) async throws -> String {
        let file: String
        switch role {
        case .master: file = directory + "/master/metrics-address"
        case .chunkServer(let index): file = "\(directory)/cs\(index)/metrics-address"
        case .gateway: file = directory + "/gateway-metrics-address"
        }
        var address: String?
        _ = try await eventually(within: .seconds(30)) {
            address = (try? String(contentsOfFile: file, encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines)
            return address?.isEmpty == false
        }
        guard let address, !address.isEmpty else { throw TestClusterError("no metrics address in \(file)") }
        return address
    }

    /// Waits (bounded) until the ring holds `count` servers and all of them are alive. 90 s: in
    /// a full test run on two cores a cluster has been seen to need more than 30 s.
    public func waitUntilFormed(servers count: Int, within timeout: Duration = .seconds(90)) async throws {
        let formed = try await eventually(within: timeout) {
            let status = try await client.clusterStatus()
            return status.ringEpoch != nil && status.servers.filter { $0.inRing && $0.state == .alive }.count == count
        }
        guard formed else { throw TestClusterError("the in-process cluster did not form within \(timeout)") }
    }
}

/// Starts a master (SQLite) and the chunk servers in-process, waits until the ring holds
/// every server and all are alive, runs `body`, then stops everything (cancellation) and
/// removes the directory, whatever `body` did.
public func withTestCluster<T: Sendable>(
    _ options: TestClusterOptions = TestClusterOptions(), _ body: (TestCluster) async throws -> T
) async throws -> T {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cluster-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let secret = Array(UUID().uuidString.utf8)
    // BLOB_TEST_CLUSTER_LOG=1 shows the in-process servers' logs (debugging a test).
    let verbose = ProcessInfo.processInfo.environment["BLOB_TEST_CLUSTER_LOG"] == "1"
    let logger = Logger(
        label: "test.cluster",
        factory: { label -> any LogHandler in
            verbose ? StreamLogHandler.standardError(label: label) : SwiftLogNoOpLogHandler()
        })

    var configuration = MasterConfiguration(
        dataDirectory: directory + "/master", replicaCount: options.replicaCount, partitionPower: 8,
        liveness: options.liveness, secret: secret)
    configuration.repairInterval = options.repairInterval
    configuration.gcGrace = options.gcGrace
    configuration.leaderLease = options.leaderLease
    configuration.metadata = options.metadata
    configuration.metadataStandbys = options.metadataStandbys
    configuration.maxStandbyLag = options.maxStandbyLag
    if options.metricsListeners {
        configuration.metricsListener = ObservabilityListenerConfiguration(
            addressFile: directory + "/master/metrics-address")
    }
    // A manual master clock is the database's clock too: liveness and leases move as one.
    let master = MasterServer(
        configuration: configuration, logger: logger, clock: options.masterClock,
        databaseClock: (options.masterClock as? ManualClock)?.databaseClock)
    let masterBox = AddressBox("")
    let masterTask = Task { try await master.run { address in masterBox.set(address) } }
    var cluster: TestCluster?
    do {
        let masterAddress = try await bound(masterBox, what: "the master", task: masterTask)
        let client = try ClusterClient(address: ClusterAddress(masterURL: "http://\(masterAddress)", secret: secret))
        let made = TestCluster(
            directory: directory, secret: secret, masterAddress: masterAddress, client: client, options: options,
            logger: logger)
        cluster = made
        for _ in 0..<options.servers { try await made.addServer() }
        try await made.waitUntilFormed(servers: options.servers)
        if options.gateway { try await made.startGateway() }
        let result = try await body(made)
        try await client.shutdown()
        await made.stopAllServers()
        masterTask.cancel()
        _ = await masterTask.result
        return result
    } catch {
        try? await cluster?.client.shutdown()
        await cluster?.stopAllServers()
        masterTask.cancel()
        _ = await masterTask.result
        throw error
    }
}

/// Waits (bounded) for a server to bind; a server that stops first is a failure.
private func bound(_ box: AddressBox, what: String, task: Task<Void, any Error>) async throws -> String {
    let bound = try await eventually(within: .seconds(60)) { box.isBound }
    guard bound else {
        task.cancel()
        if case .failure(let error) = await task.result { throw error }
        throw TestClusterError("\(what) did not start listening within 60 s")
    }
    return box.current
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes (then checks once more);
/// an error from the condition ends the wait.
///
/// Time this waiter could not run does not count: a 20 ms pause that took a second means the
/// test process was starved (two cores, tests in parallel), and so was whatever the condition
/// waits for. The deadline moves on by the stall, up to three times `timeout` in all.
public func eventually(within timeout: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
    let start = ContinuousClock.now
    let latest = start + timeout * 3
    var deadline = start + timeout
    let pause = Duration.milliseconds(20)
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        let before = ContinuousClock.now
        try await Task.sleep(for: pause)
        let stalled = ContinuousClock.now - before - pause
        if stalled > .milliseconds(250) { deadline = min(deadline + stalled, latest) }
    }
    return try await condition()
}

public struct TestClusterError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

private final class IDBox: Sendable {
    private let id = Mutex("")
    func set(_ value: String) { id.withLock { $0 = value } }
    var value: String { id.withLock { $0 } }
}
