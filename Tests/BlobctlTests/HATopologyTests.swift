import BlobCore
import BlobTestSupport
import Foundation
import Synchronization
import Testing

/// `blobctl dev up --ha` as an operator runs it: etcd, three PostgreSQL nodes under Patroni in
/// synchronous mode, three masters, chunk servers, two gateways behind HAProxy. Failures are
/// real kills of real processes.
@Suite("dev up --ha: Patroni, several masters, HAProxy", .serialized)
struct HATopologyTests {
    struct Status: Decodable {
        struct Process: Decodable {
            var name: String
            var role: String
            var pid: Int32
            var running: Bool
            var duty: String?
            var address: String?
        }
        var processes: [Process]
    }

    /// What the put clients saw.
    final class Outcomes: Sendable {
        let acknowledged = Mutex<[(path: String, local: URL)]>([])
        let failed = Mutex<[(path: String, local: URL, error: String)]>([])
        let puts = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
    }

    /// Runs `body` with a running `dev up --ha` cluster in `dir`; `dev down --purge` after.
    static func withHACluster<T>(
        _ dir: URL,
        _ body: (_ blobctl: @escaping @Sendable ([String]) async throws -> BlobctlProcess.Output) async throws -> T
    ) async throws -> T {
        let clusterDir = dir.appendingPathComponent("cluster").path
        let environment = [
            "BLOBCTL_CONFIG": dir.appendingPathComponent("config.json").path, "BLOBCTL_DEV_DIR": clusterDir,
        ]
        let blobctl: @Sendable ([String]) async throws -> BlobctlProcess.Output = { args in
            try await BlobctlProcess.run(args, timeout: .seconds(300), environment: environment)
        }
        var up = BlobctlProcess.Output(status: -1, stdout: "", stderr: "")
        for _ in 0..<3 {
            up = try await blobctl(["dev", "up", "--ha", "--port", "\(Int.random(in: 20_000...60_000))"])
            if up.status == 0 { break }
            _ = try await blobctl(["dev", "down", "--purge"])
        }
        guard up.status == 0 else {
            _ = try await blobctl(["dev", "down", "--purge"])
            throw TestFailure("dev up --ha failed: \(up.stderr.suffix(3000))")
        }
        do {
            let result = try await body(blobctl)
            _ = try await blobctl(["dev", "down", "--purge"])
            return result
        } catch {
            _ = try await blobctl(["dev", "down", "--purge"])
            throw error
        }
    }

    static func status(_ blobctl: ([String]) async throws -> BlobctlProcess.Output) async throws -> Status {
        let out = try await blobctl(["dev", "status", "--json"])
        return try JSONDecoder().decode(Status.self, from: Data(out.stdout.utf8))
    }

    @Test("kill -9 the PostgreSQL primary under 4 put clients: Patroni promotes a standby, puts resume, none is lost")
    func primaryKilledUnderPuts() async throws {
        try await withTemporaryDirectory { dir in
            try await Self.withHACluster(dir) { blobctl in
                let before = try await Self.status(blobctl)
                let stopped = before.processes.filter { !$0.running }.map(\.name)
                #expect(stopped.isEmpty, "\(stopped)")
                #expect(before.processes.filter { $0.role == "master" }.count == 3)
                #expect(before.processes.filter { $0.role == "gateway" }.count == 2)
                let roles = Set(before.processes.map(\.role))
                #expect(roles.contains("haproxy") && roles.contains("etcd") && roles.contains("patroni"))
                let primary = try #require(before.processes.first { $0.duty?.hasPrefix("primary") == true })
                #expect(before.processes.contains { $0.duty?.hasPrefix("synchronous standby") == true })
                #expect(before.processes.contains { $0.duty?.hasPrefix("leader") == true }, "a master leads")
                // cluster status shows the database's nodes as a master finds them: Patroni's
                // primary, and two standbys the masters read from.
                let cluster = try await blobctl(["cluster", "status", "--json"])
                let nodes = try #require(
                    (try JSONSerialization.jsonObject(with: Data(cluster.stdout.utf8)) as? [String: Any])?[
                        "metadata_nodes"] as? [[String: Any]], "\(cluster.stdout)")
                let primaries = nodes.filter { $0["role"] as? String == "primary" }
                #expect(primaries.count == 1 && primaries.first?["endpoint"] as? String == primary.address, "\(nodes)")
                #expect(nodes.filter { $0["role"] as? String == "standby" }.count == 2, "\(nodes)")
                #expect(nodes.allSatisfy { $0["serves_reads"] as? Bool == true }, "\(nodes)")

                let outcomes = Outcomes()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for client in 0..<4 {
                        group.addTask {
                            var i = 0
                            while !outcomes.stop.load(ordering: .relaxed) {
                                let path = "ha/c\(client)-\(i)"
                                let local = dir.appendingPathComponent("put-\(client)-\(i)")
                                let seed = UInt64(client * 10_000 + i)
                                try await offCooperativePool {
                                    try Data(
                                        SyntheticData.random(byteCount: 20_000 + Int(seed % 5) * 50_000, seed: seed)
                                    )
                                    .write(to: local)
                                }
                                let put = try await blobctl(["put", local.path, path, "--chunk-size", "64K"])
                                if put.status == 0 {
                                    outcomes.acknowledged.withLock { $0.append((path, local)) }
                                } else {
                                    outcomes.failed.withLock { $0.append((path, local, put.stderr)) }
                                }
                                outcomes.puts.add(1, ordering: .relaxed)
                                i += 1
                            }
                        }
                    }
                    group.addTask {
                        defer { outcomes.stop.store(true, ordering: .relaxed) }
                        _ = try await ChunkServerFaultTests.eventually(within: .seconds(120)) {
                            outcomes.puts.load(ordering: .relaxed) >= 20
                        }
                        // The whole primary node dies: Patroni and its PostgreSQL, so the leader
                        // key expires and a standby is promoted (Patroni alone would restart it).
                        let node = dir.appendingPathComponent("cluster/ha/\(primary.name)/data/postmaster.pid")
                        let postmaster = try #require(
                            try String(contentsOf: node, encoding: .utf8).split(separator: "\n").first.flatMap {
                                Int32($0)
                            })
                        kill(primary.pid, SIGKILL)
                        kill(postmaster, SIGKILL)
                        let killedAt = outcomes.acknowledged.withLock { $0.count }
                        let resumed = try await ChunkServerFaultTests.eventually(within: .seconds(180)) {
                            outcomes.acknowledged.withLock { $0.count } >= killedAt + 20
                        }
                        #expect(resumed, "puts resumed after the primary died")
                    }
                    try await group.waitForAll()
                }
                let after = try await Self.status(blobctl)
                let promoted = after.processes.first { $0.duty?.hasPrefix("primary") == true }
                #expect(
                    promoted != nil && promoted?.name != primary.name, "\(after.processes.map { ($0.name, $0.duty) })")

                // Every acknowledged put reads back identical; a put that failed is absent or whole.
                let acknowledged = outcomes.acknowledged.withLock { $0 }
                for (path, local) in acknowledged {
                    let copy = dir.appendingPathComponent("copy")
                    let get = try await blobctl(["get", path, copy.path])
                    #expect(get.status == 0, "\(path): \(get.stderr)")
                    #expect(try await ClientTests.sameBytes(copy, local), "\(path)")
                }
                for (path, local, error) in outcomes.failed.withLock({ $0 }) {
                    let copy = dir.appendingPathComponent("copy")
                    let get = try await blobctl(["get", path, copy.path])
                    if get.status == 0 {
                        #expect(try await ClientTests.sameBytes(copy, local), "\(path) failed (\(error)) yet differs")
                    } else {
                        #expect(get.stderr.contains("no file"), "\(path): \(get.stderr)")
                    }
                }
            }
        }
    }

    @Test("kill -9 one gateway behind HAProxy under a boto3 load: no request fails beyond boto3's own retries")
    func gatewayKilledBehindHAProxy() async throws {
        try await withTemporaryDirectory { dir in
            try await Self.withHACluster(dir) { blobctl in
                let cluster = try #require(
                    try JSONSerialization.jsonObject(
                        with: Data(contentsOf: dir.appendingPathComponent("cluster/cluster.json"))) as? [String: Any])
                let front = try #require(cluster["gatewayURL"] as? String)
                let id = try #require(cluster["accessKeyID"] as? String)
                let secret = try #require(cluster["secretAccessKey"] as? String)
                let gateway = try #require(try await Self.status(blobctl).processes.first { $0.name == "gateway-1" })
                let work = dir.appendingPathComponent("s3-load")
                try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
                let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .appendingPathComponent("Gateway/s3_load.py")
                let output = work.appendingPathComponent("summary.json")
                let errors = work.appendingPathComponent("stderr.txt")
                _ = FileManager.default.createFile(atPath: output.path, contents: nil)
                _ = FileManager.default.createFile(atPath: errors.path, contents: nil)
                let load = Process()
                load.executableURL = URL(fileURLWithPath: "/usr/bin/env")
                load.arguments = ["python3", script.path, front, id, secret, "load-test", work.path]
                load.standardOutput = try FileHandle(forWritingTo: output)
                load.standardError = try FileHandle(forWritingTo: errors)
                load.standardInput = FileHandle.nullDevice
                try load.launchSerially()
                func progress() -> Int {
                    (try? String(contentsOf: work.appendingPathComponent("progress"), encoding: .utf8)).flatMap {
                        Int($0)
                    } ?? 0
                }
                _ = try await ChunkServerFaultTests.eventually(within: .seconds(120)) { progress() >= 100 }
                let atKill = progress()
                kill(gateway.pid, SIGKILL)
                let continued = try await ChunkServerFaultTests.eventually(within: .seconds(120)) {
                    progress() >= atKill + 200
                }
                try Data().write(to: work.appendingPathComponent("stop"))
                try await load.exit(within: .seconds(300))
                #expect(continued, "the load went on through the other gateway")
                let text = (try? String(contentsOf: output, encoding: .utf8)) ?? ""
                let summary = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
                let stderr = (try? String(contentsOf: errors, encoding: .utf8)) ?? ""
                #expect(load.terminationStatus == 0, "\(stderr.suffix(2000))")
                #expect((summary?["failures"] as? [String])?.isEmpty == true, "\(summary ?? [:])")
                #expect((summary?["mismatched"] as? [String])?.isEmpty == true, "\(summary ?? [:])")
                #expect((summary?["acknowledged"] as? Int ?? 0) >= 50, "\(summary ?? [:])")
                let after = try await Self.status(blobctl)
                #expect(after.processes.first { $0.name == "gateway-1" }?.running == false)
            }
        }
    }
}
