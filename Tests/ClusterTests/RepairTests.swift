import BlobChunkServer
import BlobClient
import BlobCore
import BlobMaster
import BlobTestSupport
import Foundation
import Glibc
import Synchronization
import Testing

/// Repair on the in-process cluster, with the master's clock in the test's hand: liveness and
/// the grace period move only when the test moves them, and each step waits until the running
/// servers have heartbeated and a repair pass has ended, so every assertion follows evidence.
@Suite("Repair on an in-process cluster with a manual master clock", .timeLimit(.minutes(5)))
struct RepairTests {
    static func options(servers: Int, clock: ManualClock) -> TestClusterOptions {
        var options = TestClusterOptions()
        options.servers = servers
        options.masterClock = clock
        options.liveness = LivenessPolicy(
            heartbeatInterval: .milliseconds(100), suspectAfter: .seconds(2), downAfter: .seconds(5))
        options.repairInterval = .milliseconds(500)
        return options
    }

    /// Advances the master's clock by `seconds`, one second a step; after each step waits until
    /// every server in `running` has heartbeated since and one more repair pass has ended.
    static func age(_ cluster: TestCluster, _ clock: ManualClock, seconds: Int, running: Set<String>) async throws {
        for _ in 0..<seconds {
            let passes = try await cluster.client.clusterStatus().repair?.passes ?? 0
            clock.advance(by: .seconds(1))
            let settled = try await eventually(within: .seconds(20)) {
                let status = try await cluster.client.clusterStatus()
                let heard = status.servers.filter { running.contains($0.id) }
                    .allSatisfy { $0.millisecondsSinceHeartbeat == 0 }
                return heard && (status.repair?.passes ?? 0) > passes
            }
            guard settled else { throw TestClusterError("the cluster did not settle after a clock step") }
        }
    }

    /// Ages the master's clock a second at a time (at most 30) until every chunk of `files` has
    /// three copies on servers other than `without`; whether it came to that.
    static func ageUntilRepaired(
        _ cluster: TestCluster, _ clock: ManualClock, _ files: [(BlobPath, [UInt8])], without: String,
        running: Set<String>
    ) async throws -> Bool {
        for _ in 0..<30 {
            try await age(cluster, clock, seconds: 1, running: running)
            var short = false
            for (path, _) in files where !short {
                let plan = try await cluster.client.readPlan(path)
                short = plan.chunks.contains { $0.replicas.filter { $0.id != without }.count < 3 }
            }
            if !short { return true }
        }
        return false
    }

    static func putFiles(_ cluster: TestCluster, count: Int, seed: UInt64) async throws -> [(BlobPath, [UInt8])] {
        var files: [(BlobPath, [UInt8])] = []
        for i in 0..<count {
            let bytes = SyntheticData.random(byteCount: 20_000 + (i * 7919) % 150_000, seed: seed &+ UInt64(i))
            let path = try BlobPath("files/\(seed)-\(i)")
            _ = try await cluster.client.put(
                .bytes(bytes), to: path, options: PutOptions(chunker: .fixed(byteCount: 64 << 10)))
            files.append((path, bytes))
        }
        return files
    }

    static func readsBack(_ cluster: TestCluster, _ files: [(BlobPath, [UInt8])]) async throws -> Bool {
        for (path, bytes) in files {
            let out = cluster.directory + "/read-\(UUID().uuidString)"
            _ = try await cluster.client.get(path, to: .file(out))
            defer { try? FileManager.default.removeItem(atPath: out) }
            guard try Data(contentsOf: URL(fileURLWithPath: out)) == Data(bytes) else { return false }
        }
        return true
    }

    @Test("a server back inside the grace period causes no copies, though repair passes ran past its deadline")
    func restartInsideGrace() async throws {
        let clock = ManualClock()
        try await withTestCluster(Self.options(servers: 4, clock: clock)) { cluster in
            let files = try await Self.putFiles(cluster, count: 12, seed: 300)
            let all = Set(cluster.servers.map(\.id))
            let away = cluster.servers[0].id
            await cluster.stopServer(0)
            try await Self.age(cluster, clock, seconds: 3, running: all.subtracting([away]))
            let state = try await cluster.client.clusterStatus().servers.first { $0.id == away }?.state
            #expect(state == .suspect, "three seconds of silence: suspect, not down")
            try await cluster.startServer(0)
            // Four more seconds: seven since it left, past the five it would have taken to be down.
            try await Self.age(cluster, clock, seconds: 4, running: all)
            let repair = try #require(try await cluster.client.clusterStatus().repair)
            #expect(repair.passes >= 7)
            #expect(repair.copiedChunks == 0 && repair.failures == 0, "\(repair)")
            #expect(try await cluster.client.clusterStatus().servers.allSatisfy { $0.state == .alive })
            #expect(try await Self.readsBack(cluster, files))
        }
    }

    @Test("a server gone past the grace period: repair brings every chunk back to three live copies")
    func repairAfterStop() async throws {
        let clock = ManualClock()
        try await withTestCluster(Self.options(servers: 4, clock: clock)) { cluster in
            let files = try await Self.putFiles(cluster, count: 20, seed: 100)
            let gone = cluster.servers[1].id
            let running = Set(cluster.servers.map(\.id)).subtracting([gone])
            await cluster.stopServer(1)
            try await Self.age(cluster, clock, seconds: 4, running: running)
            #expect(try await cluster.client.clusterStatus().repair?.copiedChunks == 0, "nothing before the grace")
            let repaired = try await Self.ageUntilRepaired(cluster, clock, files, without: gone, running: running)
            #expect(repaired, "every chunk back to three copies on live servers")
            let state = try await cluster.client.clusterStatus().servers.first { $0.id == gone }?.state
            #expect(state == .down)
            #expect(try await cluster.client.clusterStatus().repair?.copiedChunks ?? 0 > 0)
            #expect(try await Self.readsBack(cluster, files))
        }
    }

    @Test("a server in maintenance is not repaired while down; ending maintenance repairs it")
    func maintenanceSuspendsRepair() async throws {
        let clock = ManualClock()
        try await withTestCluster(Self.options(servers: 4, clock: clock)) { cluster in
            let files = try await Self.putFiles(cluster, count: 12, seed: 350)
            let resting = cluster.servers[2].id
            let running = Set(cluster.servers.map(\.id)).subtracting([resting])
            _ = try await cluster.client.setNodeMaintenance(resting, seconds: 600)
            await cluster.stopServer(2)
            try await Self.age(cluster, clock, seconds: 8, running: running)
            let state = try await cluster.client.clusterStatus().servers.first { $0.id == resting }?.state
            #expect(state == .down)
            #expect(try await cluster.client.clusterStatus().repair?.copiedChunks == 0, "down, but in maintenance")
            _ = try await cluster.client.setNodeMaintenance(resting, seconds: 0)
            let repaired = try await Self.ageUntilRepaired(cluster, clock, files, without: resting, running: running)
            #expect(repaired, "repair runs once maintenance ends")
        }
    }
}

/// A disk that answers EIO to every chunk read once switched on (writes go through).
final class FailingReads: DiskFaultInjector {
    private let on = Mutex(false)
    private let fired = Mutex(0)

    func switchOn() { on.withLock { $0 = true } }
    var failures: Int { fired.withLock { $0 } }

    func action(at operation: DiskOperation) -> DiskFaultAction {
        guard case .read = operation, on.withLock({ $0 }) else { return .proceed }
        fired.withLock { $0 += 1 }
        return .fail(errno: EIO)
    }
}

@Suite("Repair and reads around a failing disk", .timeLimit(.minutes(5)))
struct FailingDiskRepairTests {
    @Test("with one server's disk failing every read, reads fail over and repair copies from the healthy holders")
    func repairAroundFailingDisk() async throws {
        let clock = ManualClock()
        let failing = FailingReads()
        // Five servers: the ring has room to place copies around the failing one.
        var options = RepairTests.options(servers: 5, clock: clock)
        options.diskFaults = [0: failing]
        try await withTestCluster(options) { cluster in
            let files = try await RepairTests.putFiles(cluster, count: 16, seed: 700)
            failing.switchOn()
            // Reads: every chunk the failing server is asked for comes from another replica.
            #expect(try await RepairTests.readsBack(cluster, files))
            #expect(failing.failures > 0, "some read went to the failing disk first")
            // Repair: server 1 goes away past the grace; its chunks are copied from holders whose
            // disks answer, and where the failing server was tried first, from the next one.
            let gone = cluster.servers[1].id
            let running = Set(cluster.servers.map(\.id)).subtracting([gone])
            await cluster.stopServer(1)
            let repaired = try await RepairTests.ageUntilRepaired(
                cluster, clock, files, without: gone, running: running)
            #expect(repaired, "every chunk back to three copies on live servers")
            if !repaired {
                var short: [String] = []
                for (path, _) in files {
                    for chunk in try await cluster.client.readPlan(path).chunks
                    where chunk.replicas.filter({ $0.id != gone }).count < 3 {
                        short.append("\(chunk.chunk.chunkID.shortHex): \(chunk.replicas.map(\.id))")
                    }
                }
                let status = try await cluster.client.clusterStatus()
                let states = status.servers.map { "\($0.id)=\($0.state)" }
                let repair = String(describing: status.repair)
                Issue.record("short: \(short.prefix(5)) of \(short.count); repair \(repair); servers \(states)")
            }
            #expect(try await RepairTests.readsBack(cluster, files))
        }
    }
}
