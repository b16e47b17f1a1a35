public import BlobChunkServer
public import BlobClient
public import BlobCore
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
        heartbeatInterval: .milliseconds(200), suspectAfter: .seconds(2),
        downAfter: .seconds(5))
    public var repairInterval: Duration = .milliseconds(500)
    public var gcGrace: Duration = .seconds(1)
    /// The master's clock (liveness, pass intervals); a ``ManualClock`` makes them the test's.
    public var masterClock: any ServiceClock = SystemClock()
    /// Disk faults of server i (by index).
    public var diskFaults: [Int: any DiskFaultInjector] = [:]
    /// Faults of the requests server i sends its peers (by index).
    public var peerFaults: [Int: any PeerFaultInjector] = [:]

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
/// process per role. Made and stopped by ``withTestCluster(_:_:)``.
public struct TestCluster: Sendable {
    public let directory: String
    public let secret: [UInt8]
    public let masterAddress: String
    public let servers: [TestChunkServer]
    /// A client of the cluster, as `blobctl` and the gateway use it.
    public let client: ClusterClient

    public var masterURL: String { "http://\(masterAddress)" }
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
    let logger = Logger(label: "test.cluster", factory: { _ in SwiftLogNoOpLogHandler() })
    var tasks: [Task<Void, any Error>] = []
    func stopAll() async {
        for task in tasks { task.cancel() }
        for task in tasks { _ = await task.result }
    }

    var configuration = MasterConfiguration(
        dataDirectory: directory + "/master", replicaCount: options.replicaCount, partitionPower: 8,
        liveness: options.liveness, secret: secret)
    configuration.repairInterval = options.repairInterval
    configuration.gcGrace = options.gcGrace
    let master = MasterServer(configuration: configuration, logger: logger, clock: options.masterClock)
    let masterBox = AddressBox("")
    tasks.append(Task { try await master.run { address in masterBox.set(address) } })
    do {
        let masterAddress = try await bound(masterBox, what: "the master", task: tasks[0])
        var servers: [TestChunkServer] = []
        for i in 0..<options.servers {
            var server = ChunkServerConfiguration(
                dataDirectory: "\(directory)/cs\(i)", zone: "z\(i % (options.zones ?? options.servers))",
                secret: secret,
                scrubBytesPerSecond: 0, forwardTimeout: .seconds(10), diskThreadCount: 4,
                masterURL: "http://\(masterAddress)", heartbeatInterval: options.liveness.heartbeatInterval)
            server.diskFaults = options.diskFaults[i]
            server.peerFaults = options.peerFaults[i]
            let box = AddressBox("")
            let ids = IDBox()
            let chunkServer = ChunkServer(configuration: server, logger: logger)
            tasks.append(
                Task {
                    try await chunkServer.run { address, id in
                        ids.set(id)
                        box.set(address)
                    }
                })
            let address = try await bound(box, what: "chunk server \(i)", task: tasks[tasks.count - 1])
            servers.append(TestChunkServer(id: ids.value, address: address, dataDirectory: server.dataDirectory))
        }
        let client = try ClusterClient(address: ClusterAddress(masterURL: "http://\(masterAddress)", secret: secret))
        do {
            let formed = try await eventually(within: .seconds(30)) {
                let status = try await client.clusterStatus()
                return status.ringEpoch != nil
                    && status.servers.filter { $0.inRing && $0.state == .alive }.count == options.servers
            }
            guard formed else { throw TestClusterError("the in-process cluster did not form within 30 s") }
            let cluster = TestCluster(
                directory: directory, secret: secret, masterAddress: masterAddress, servers: servers,
                client: client)
            let result = try await body(cluster)
            try await client.shutdown()
            await stopAll()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    } catch {
        await stopAll()
        throw error
    }
}

/// Waits (bounded) for a server to bind; a server that stops first is a failure.
private func bound(_ box: AddressBox, what: String, task: Task<Void, any Error>) async throws -> String {
    let bound = try await eventually(within: .seconds(30)) { box.isBound }
    guard bound else {
        task.cancel()
        if case .failure(let error) = await task.result { throw error }
        throw TestClusterError("\(what) did not start listening within 30 s")
    }
    return box.current
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes (then checks once more);
/// an error from the condition ends the wait.
public func eventually(within timeout: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
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
