import BlobCore
import Foundation
import Synchronization
import Testing

/// Several `blobctl master` processes on one PostgreSQL (the test run's own), chunk servers and
/// clients given every master: a master killed at any moment, the leader killed mid-rebalance.
@Suite("several masters on one PostgreSQL: failover and fencing", .serialized, .timeLimit(.minutes(10)))
struct SeveralMastersTests {
    static let leaderLease = "3s"

    struct Cluster: Sendable {
        let masters: [DaemonProcess]
        var servers: [DaemonProcess]
        let client: TestClient
        let dir: URL

        var secretFile: URL { dir.appendingPathComponent("secret") }
        var masterList: String { masters.map { "http://\($0.address)" }.joined(separator: ",") }
        var flags: [String] { ["--master", masterList, "--secret-file", secretFile.path] }
        var environment: [String: String] { ["BLOBCTL_CONFIG": dir.appendingPathComponent("no-config.json").path] }

        func run(_ args: [String], timeout: Duration = .seconds(300)) async throws -> BlobctlProcess.Output {
            try await BlobctlProcess.run(args + flags, timeout: timeout, environment: environment)
        }

        func json(_ args: [String]) async throws -> [String: Any] {
            let out = try await run(args + ["--json"])
            guard out.status == 0 else {
                throw TestFailure("\(args.joined(separator: " ")) failed (\(out.status)): \(out.stderr)")
            }
            return try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] ?? [:]
        }

        /// The status as one master answers it (nil when it does not).
        func status(from master: DaemonProcess) async -> ClusterStatus? {
            guard let reply = try? await client.send(.GET, master.address, "/v1/cluster/status"), reply.status == 200
            else { return nil }
            return try? reply.json(ClusterStatus.self)
        }

        /// The index of the master holding an unexpired lease, and its term, as the live masters see it.
        func leader(among live: [Int]) async -> (index: Int, term: Int64)? {
            for i in live {
                guard let leader = await status(from: masters[i])?.leader, leader.expiresInMilliseconds > 0,
                    let index = masters.firstIndex(where: { $0.address == leader.address }), live.contains(index)
                else { continue }
                return (index, leader.term)
            }
            return nil
        }

        struct Fsck: CustomStringConvertible {
            var chunks: Int
            var missing: Int
            var misplaced: Int
            var under: Int
            var description: String { "chunks \(chunks), missing \(missing), misplaced \(misplaced), under \(under)" }
        }

        /// `blobctl fsck` (answered by the leader), its counts.
        func fsck() async throws -> Fsck {
            let report = try await json(["fsck"])
            func count(_ key: String) -> Int { report[key] as? Int ?? -1 }
            return Fsck(
                chunks: count("chunks_checked"), missing: count("missing"), misplaced: count("misplaced"),
                under: count("under_replicated"))
        }

        /// Whether every chunk of `files` has `copies` replicas in the read plan of a live master.
        func allChunksHave(_ copies: Int, files: [String], asking master: DaemonProcess) async throws -> Bool {
            for path in files {
                let reply = try await client.send(.GET, master.address, "/v1/files/plan?path=\(path)")
                guard reply.status == 200 else { return false }
                if try reply.json(ReadPlan.self).chunks.contains(where: { $0.replicas.count < copies }) { return false }
            }
            return true
        }
    }

    static func withCluster<T>(
        masters count: Int, servers serverCount: Int, _ body: (Cluster) async throws -> T
    ) async throws -> T {
        try await PostgresTestDatabase.with { url in
            try await withChunkServers(0) { _, client, dir in
                let secretFile = dir.appendingPathComponent("secret")
                // Liveness a little slower than the one-master tests': a heartbeat reaches the
                // other masters through the database, a refresh (0.5 s) after it arrives.
                let arguments = [
                    "--heartbeat-interval", "200", "--suspect-after", "5000", "--down-after", "15000",
                    "--repair-interval", "500ms", "--gc-grace", "1s", "--metadata", url, "--leader-lease", leaderLease,
                ]
                let masters = (0..<count).map {
                    DaemonProcess(
                        dataDirectory: dir.appendingPathComponent("master-\($0)"), secretFile: secretFile,
                        extraArguments: arguments, role: "master")
                }
                var servers: [DaemonProcess] = []
                do {
                    for master in masters { try await master.start() }
                    let list = masters.map { "http://\($0.address)" }.joined(separator: ",")
                    for i in 0..<serverCount {
                        let server = DaemonProcess(
                            dataDirectory: dir.appendingPathComponent("cs\(i)"), secretFile: secretFile,
                            extraArguments: ["--master", list, "--zone", "z\(i)", "--scrub-rate", "0"])
                        try await server.start()
                        servers.append(server)
                    }
                    let cluster = Cluster(masters: masters, servers: servers, client: client, dir: dir)
                    let formed = try await ChunkServerFaultTests.eventually(within: .seconds(60)) {
                        for master in masters {
                            guard let status = await cluster.status(from: master),
                                status.servers.filter({ $0.inRing && $0.state == .alive }).count == serverCount
                            else { return false }
                        }
                        return await cluster.leader(among: Array(masters.indices)) != nil
                    }
                    guard formed else { throw TestFailure("the cluster of \(count) masters did not form") }
                    let result = try await body(cluster)
                    for server in servers { try await server.stop() }
                    for master in masters { try await master.stop() }
                    return result
                } catch {
                    for server in servers { try? await server.kill() }
                    for master in masters { try? await master.kill() }
                    throw error
                }
            }
        }
    }

    /// The highest leader term each chunk server recorded (`DATA/leader-term`), where one did.
    static func leaderTerms(_ servers: [DaemonProcess]) -> [Int64] {
        servers.compactMap { server in
            (try? String(contentsOf: server.dataDirectory.appendingPathComponent("leader-term"), encoding: .utf8))
                .flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
    }

    /// What the client loops saw.
    final class Outcomes: Sendable {
        let acknowledged = Mutex<[(path: String, local: URL)]>([])
        let deleted = Mutex<[String]>([])
        let failures = Mutex<[String]>([])
        let operations = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
    }

    @Test("kill -9 the leader while 4 clients put, get and delete: no command fails, every acknowledged put reads back")
    func masterKilledUnderLoad() async throws {
        try await Self.withCluster(masters: 3, servers: 3) { cluster in
            let outcomes = Outcomes()
            let (leader, term) = try #require(await cluster.leader(among: [0, 1, 2]))
            try await withThrowingTaskGroup(of: Void.self) { group in
                for client in 0..<4 {
                    group.addTask {
                        var i = 0
                        while !outcomes.stop.load(ordering: .relaxed) {
                            let path = "load/c\(client)-\(i)"
                            let local = cluster.dir.appendingPathComponent("load-\(client)-\(i)")
                            let seed = UInt64(client * 10_000 + i)
                            try Data(SyntheticData.random(byteCount: 30_000 + Int(seed % 7) * 40_000, seed: seed))
                                .write(to: local)
                            let put = try await cluster.run(["put", local.path, path, "--chunk-size", "64K"])
                            outcomes.operations.add(1, ordering: .relaxed)
                            if put.status != 0 {
                                outcomes.failures.withLock { $0.append("put \(path): \(put.stderr)") }
                            } else if i % 4 == 3 {
                                // Every fourth put is deleted again: a delete whose reply is lost
                                // when its master dies is sent again and must not fail either.
                                let rm = try await cluster.run(["rm", path])
                                outcomes.operations.add(1, ordering: .relaxed)
                                if rm.status == 0 {
                                    outcomes.deleted.withLock { $0.append(path) }
                                } else {
                                    outcomes.failures.withLock { $0.append("rm \(path): \(rm.stderr)") }
                                }
                            } else {
                                outcomes.acknowledged.withLock { $0.append((path, local)) }
                            }
                            // Read back an earlier acknowledged put of this client.
                            if let earlier = outcomes.acknowledged.withLock({ all in
                                all.filter { $0.path.hasPrefix("load/c\(client)-") }.randomElement()
                            }) {
                                let copy = cluster.dir.appendingPathComponent("copy-\(client)-\(i)")
                                let get = try await cluster.run(["get", earlier.path, copy.path])
                                outcomes.operations.add(1, ordering: .relaxed)
                                if get.status != 0 {
                                    outcomes.failures.withLock { $0.append("get \(earlier.path): \(get.stderr)") }
                                } else if !(try await ClientTests.sameBytes(copy, earlier.local)) {
                                    outcomes.failures.withLock { $0.append("get \(earlier.path): different bytes") }
                                }
                                try? FileManager.default.removeItem(at: copy)
                            }
                            i += 1
                        }
                    }
                }
                group.addTask {
                    // Some load first (bounded waits for progress), then the leader dies without
                    // a word, and the load goes on until as much again has been done after it.
                    defer { outcomes.stop.store(true, ordering: .relaxed) }
                    _ = try await ChunkServerFaultTests.eventually(within: .seconds(60)) {
                        outcomes.operations.load(ordering: .relaxed) >= 40
                    }
                    let before = outcomes.operations.load(ordering: .relaxed)
                    try await cluster.masters[leader].kill()
                    _ = try await ChunkServerFaultTests.eventually(within: .seconds(90)) {
                        outcomes.operations.load(ordering: .relaxed) >= 2 * before
                    }
                }
                try await group.waitForAll()
            }
            let failures = outcomes.failures.withLock { $0 }
            #expect(failures.isEmpty, "\(failures.prefix(5))")
            let live = [0, 1, 2].filter { $0 != leader }
            let successor = try #require(await cluster.leader(among: live))
            #expect(successor.term > term && successor.index != leader, "another master took over")
            // Every acknowledged put reads back identical, through the masters left.
            let acknowledged = outcomes.acknowledged.withLock { $0 }
            #expect(acknowledged.count >= 20, "the clients made progress: \(acknowledged.count) puts")
            for (path, local) in acknowledged {
                let copy = cluster.dir.appendingPathComponent("final-copy")
                let get = try await cluster.run(["get", path, copy.path])
                #expect(get.status == 0, "\(path): \(get.stderr)")
                #expect(try await ClientTests.sameBytes(copy, local), "\(path)")
            }
            // And every acknowledged delete holds.
            let deleted = outcomes.deleted.withLock { $0 }
            #expect(!deleted.isEmpty)
            for path in deleted {
                let stat = try await cluster.run(["stat", path])
                #expect(stat.status != 0 && stat.stderr.contains("no file"), "\(path): \(stat.stdout)")
            }
        }
    }

    @Test("kill -9 the leader in the middle of a rebalance: another takes over and finishes; never below 3 copies")
    func leaderKilledDuringRebalance() async throws {
        try await Self.withCluster(masters: 3, servers: 3) { cluster in
            var files: [(String, URL)] = []
            for i in 0..<4 {
                let local = cluster.dir.appendingPathComponent("big-\(i)")
                try await ClientTests.makeFile(local, byteCount: 6 << 20, seed: 1700 + UInt64(i))
                let put = try await cluster.run(["put", local.path, "media/big-\(i)", "--chunk-size", "256K"])
                #expect(put.status == 0, "\(put.stderr)")
                files.append(("media/big-\(i)", local))
            }
            let list = cluster.masterList
            let newcomer = DaemonProcess(
                dataDirectory: cluster.dir.appendingPathComponent("cs-new"), secretFile: cluster.secretFile,
                extraArguments: ["--master", list, "--zone", "z3", "--scrub-rate", "0"])
            do {
                try await newcomer.start()
                let joined = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    await cluster.status(from: cluster.masters[0])?.servers.filter { $0.inRing && $0.state == .alive }
                        .count == 4
                }
                #expect(joined)
                let (leader, term) = try #require(await cluster.leader(among: [0, 1, 2]))
                let started = try await cluster.json(["rebalance", "--max-bytes-per-sec", "1M", "--detach"])
                #expect(started["state"] as? String == "running")
                let moving = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    (try await cluster.json(["rebalance", "status"])["moved_bytes"] as? Int ?? 0) > 0
                }
                #expect(moving)
                #expect(try await cluster.json(["rebalance", "status"])["state"] as? String == "running")
                try await cluster.masters[leader].kill()
                let live = [0, 1, 2].filter { $0 != leader }
                // Until it finishes, every chunk keeps three copies, as the live masters see it.
                let paths = files.map(\.0)
                var belowThree = 0
                let finished = try await ChunkServerFaultTests.eventually(within: .seconds(120)) {
                    if !(try await cluster.allChunksHave(3, files: paths, asking: cluster.masters[live[0]])) {
                        belowThree += 1
                    }
                    return (try? await cluster.json(["rebalance", "status"])["state"] as? String) == "finished"
                }
                #expect(finished, "the new leader finished the rebalance")
                #expect(belowThree == 0, "a chunk had fewer than 3 copies during the run")
                let successor = try #require(await cluster.leader(among: live))
                #expect(successor.term > term)
                let fsck = try await cluster.json(["fsck"])
                #expect((fsck["misplaced"] as? Int) == 0, "\(fsck)")
                for (path, local) in files {
                    let copy = cluster.dir.appendingPathComponent("copy")
                    #expect(try await cluster.run(["get", path, copy.path]).status == 0)
                    #expect(try await ClientTests.sameBytes(copy, local), "\(path)")
                }
                // The new leader's commands reached the chunk servers under its term (recorded
                // before they ran), and no server saw a term beyond it.
                let terms = Self.leaderTerms(cluster.servers + [newcomer])
                #expect(terms.contains(successor.term) && terms.allSatisfy { $0 <= successor.term }, "\(terms)")
                try await newcomer.stop()
            } catch {
                try? await newcomer.kill()
                throw error
            }
        }
    }

    @Test("SIGSTOP the leader past its lease, another takes over, SIGCONT: the old one writes and commands nothing")
    func pausedLeaderIsFenced() async throws {
        try await Self.withCluster(masters: 3, servers: 3) { cluster in
            var files: [(String, URL)] = []
            for i in 0..<3 {
                let local = cluster.dir.appendingPathComponent("paused-\(i)")
                try await ClientTests.makeFile(local, byteCount: 6 << 20, seed: 2700 + UInt64(i))
                let put = try await cluster.run(["put", local.path, "media/paused-\(i)", "--chunk-size", "256K"])
                #expect(put.status == 0, "\(put.stderr)")
                files.append(("media/paused-\(i)", local))
            }
            let newcomer = DaemonProcess(
                dataDirectory: cluster.dir.appendingPathComponent("cs-new"), secretFile: cluster.secretFile,
                extraArguments: ["--master", cluster.masterList, "--zone", "z3", "--scrub-rate", "0"])
            let (old, oldTerm) = try #require(await cluster.leader(among: [0, 1, 2]))
            do {
                try await newcomer.start()
                _ = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    await cluster.status(from: cluster.masters[0])?.servers.filter { $0.inRing && $0.state == .alive }
                        .count == 4
                }
                // The leader is paused in the middle of a rebalance it runs: copies and deletes
                // in flight, its lease running out while it cannot notice.
                _ = try await cluster.json(["rebalance", "--max-bytes-per-sec", "1M", "--detach"])
                let moving = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    (try await cluster.json(["rebalance", "status"])["moved_bytes"] as? Int ?? 0) > 0
                }
                #expect(moving)
                cluster.masters[old].signal(SIGSTOP)
                let live = [0, 1, 2].filter { $0 != old }
                let tookOver = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    await cluster.leader(among: live).map { $0.term > oldTerm } ?? false
                }
                #expect(tookOver)
                let (successor, newTerm) = try #require(await cluster.leader(among: live))
                let finished = try await ChunkServerFaultTests.eventually(within: .seconds(120)) {
                    (try? await cluster.json(["rebalance", "status"])["state"] as? String) == "finished"
                }
                #expect(finished, "the new leader resumed the run and finished it")
                let settled = try await cluster.fsck()

                // The old leader wakes up with its in-flight work and its old term.
                cluster.masters[old].signal(SIGCONT)
                let stepped = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    guard let seen = await cluster.status(from: cluster.masters[old])?.leader else { return false }
                    return seen.term == newTerm && seen.address == cluster.masters[successor].address
                }
                #expect(stepped, "the old leader sees the new term and follows")
                // Its writes were refused: the lease, the rebalance state and the facts are the
                // new leader's; its commands were refused: no chunk server went below the new
                // term, and every chunk is where fsck found it before the old leader woke.
                #expect(
                    await cluster.leader(among: [0, 1, 2]).map { $0.index == successor && $0.term == newTerm } == true)
                #expect(try await cluster.json(["rebalance", "status"])["state"] as? String == "finished")
                let after = try await cluster.fsck()
                #expect(after.missing == 0 && after.misplaced == 0 && after.under == 0, "\(after)")
                #expect(after.chunks == settled.chunks)
                let terms = Self.leaderTerms(cluster.servers + [newcomer])
                #expect(terms.contains(newTerm) && terms.allSatisfy { $0 <= newTerm }, "\(terms)")
                for (path, local) in files {
                    let copy = cluster.dir.appendingPathComponent("copy")
                    #expect(try await cluster.run(["get", path, copy.path]).status == 0)
                    #expect(try await ClientTests.sameBytes(copy, local), "\(path)")
                }
                try await newcomer.stop()
            } catch {
                cluster.masters[old].signal(SIGCONT)
                try? await newcomer.kill()
                throw error
            }
        }
    }
}
