import BlobCore
import Foundation
import Testing

/// Repair, rebalance, drain, gc and fsck as an operator runs them: `blobctl` commands against a
/// master and chunk servers that are separate processes on 127.0.0.1.
@Suite("operations: repair, rebalance, drain, gc, fsck", .timeLimit(.minutes(10)))
struct OperationsTests {
    /// Liveness quick enough to see a server go down in seconds; repair looks twice a second.
    static let masterArguments = [
        "--heartbeat-interval", "200", "--suspect-after", "2000", "--down-after", "5000",
        "--repair-interval", "500ms", "--gc-grace", "1s",
    ]

    struct Cluster {
        let master: DaemonProcess
        var servers: [DaemonProcess]
        let client: TestClient
        let dir: URL

        var secretFile: URL { dir.appendingPathComponent("secret") }
        var flags: [String] { ["--master", "http://\(master.address)", "--secret-file", secretFile.path] }
        var environment: [String: String] { ["BLOBCTL_CONFIG": dir.appendingPathComponent("no-config.json").path] }

        func run(_ args: [String]) async throws -> BlobctlProcess.Output {
            try await BlobctlProcess.run(args + flags, timeout: .seconds(300), environment: environment)
        }

        /// Runs a command with `--json` that must succeed; returns its JSON object.
        func json(_ args: [String]) async throws -> [String: Any] {
            let out = try await run(args + ["--json"])
            guard out.status == 0 else {
                throw TestFailure("\(args.joined(separator: " ")) failed (\(out.status)): \(out.stderr)")
            }
            return try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] ?? [:]
        }

        func put(_ local: URL, _ path: String, chunkSize: String = "64K") async throws {
            let out = try await run(["put", local.path, path, "--chunk-size", chunkSize])
            guard out.status == 0 else { throw TestFailure("put \(path) failed: \(out.stderr)") }
        }

        /// Gets `path` and compares it with `original`.
        func readsBack(_ path: String, _ original: URL) async throws -> Bool {
            let local = dir.appendingPathComponent("got-\(UUID().uuidString)")
            defer { try? FileManager.default.removeItem(at: local) }
            let out = try await run(["get", path, local.path])
            guard out.status == 0 else { throw TestFailure("get \(path) failed: \(out.stderr)") }
            return try await ClientTests.sameBytes(local, original)
        }

        /// A new chunk server process pointed at this master (stopped by the caller).
        func newServer(_ name: String, zone: String) -> DaemonProcess {
            DaemonProcess(
                dataDirectory: dir.appendingPathComponent(name), secretFile: secretFile,
                extraArguments: ["--master", "http://\(master.address)", "--zone", zone, "--scrub-rate", "0"])
        }

        func fsck(repair: Bool = false) async throws -> (status: Int32, report: [String: Any]) {
            let out = try await run(["fsck", "--json"] + (repair ? ["--repair"] : []))
            let report = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] ?? [:]
            return (out.status, report)
        }

        /// Runs `gc` (with `--dry-run` when asked) until its report satisfies `done`, at most
        /// `within`; returns whether it did, and the last report.
        func gc(
            dryRun: Bool = false, until done: ([String: Any]) -> Bool,
            within: Duration = .seconds(20)
        ) async throws -> (reached: Bool, report: [String: Any]) {
            var last: [String: Any] = [:]
            let reached = try await ChunkServerFaultTests.eventually(within: within) {
                last = try await json(["gc"] + (dryRun ? ["--dry-run"] : []))
                return done(last)
            }
            return (reached, last)
        }

        /// Every chunk of every file has at least `copies` replicas on servers the master calls alive.
        func allChunksHave(_ copies: Int, files: [String]) async throws -> Bool {
            for path in files {
                let reply = try await client.send(.GET, master.address, "/v1/files/plan?path=\(path)")
                guard reply.status == 200 else { return false }
                let plan = try reply.json(ReadPlan.self)
                if plan.chunks.contains(where: { $0.replicas.count < copies }) { return false }
            }
            return true
        }
    }

    static func withCluster<T>(
        servers: Int, masterArguments extra: [String] = [], serverArguments: [String] = ["--scrub-rate", "0"],
        _ body: (Cluster) async throws -> T
    ) async throws -> T {
        try await MasterTests.withCluster(
            servers: servers, liveness: masterArguments + extra,
            serverArguments: serverArguments
        ) { master, servers, client, dir in
            let ready = try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                let status = try await MasterTests.status(client, master)
                return status.ringEpoch != nil
                    && status.servers.filter { $0.state == .alive && $0.inRing }.count == servers.count
            }
            guard ready else { throw TestFailure("the cluster did not form") }
            return try await body(Cluster(master: master, servers: servers, client: client, dir: dir))
        }
    }

    /// `count` small files of random bytes (sizes vary, a few chunks each), put four at a time.
    static func putFiles(_ cluster: Cluster, count: Int, prefix: String, seed: UInt64) async throws -> [(String, URL)] {
        let files = try (0..<count).map { i -> (String, URL) in
            let local = cluster.dir.appendingPathComponent("\(prefix)-\(i)")
            try Data(SyntheticData.random(byteCount: 20_000 + (i * 7919) % 200_000, seed: seed &+ UInt64(i))).write(
                to: local)
            return ("\(prefix)/file-\(i)", local)
        }
        for batch in stride(from: 0, to: files.count, by: 4) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (path, local) in files[batch..<min(batch + 4, files.count)] {
                    group.addTask { try await cluster.put(local, path) }
                }
                try await group.waitForAll()
            }
        }
        return files
    }

    /// Chunk files under a server's data directory.
    static func chunkFiles(_ server: DaemonProcess) -> [URL] {
        let root = server.dataDirectory.appendingPathComponent("chunks")
        guard let walker = FileManager.default.enumerator(at: root, includingPropertiesForKeys: [.isRegularFileKey])
        else { return [] }
        return walker.compactMap { $0 as? URL }.filter { $0.lastPathComponent.count == 64 }
    }

    static func counter(_ cluster: Cluster, _ server: DaemonProcess, _ name: String) async throws -> Int64 {
        let status = try await cluster.client.send(.GET, server.address, "/v1/status").json(ChunkServerStatus.self)
        return status.counters[name] ?? 0
    }

    @Test(
        "kill -9 one of 4 servers: files read at once, 3 live copies after the grace; kill 2 more, all still reads"
    )
    func repairAfterKill() async throws {
        try await Self.withCluster(servers: 4) { cluster in
            let files = try await Self.putFiles(cluster, count: 200, prefix: "repair", seed: 100)
            let dead = cluster.servers[1].serverID
            try await cluster.servers[1].kill()
            // Reads route around the dead server at once.
            for (path, local) in files.prefix(20) { #expect(try await cluster.readsBack(path, local)) }
            let down = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                try await MasterTests.status(cluster.client, cluster.master).servers.first { $0.id == dead }?.state
                    == .down
            }
            #expect(down)
            let repaired = try await ChunkServerFaultTests.eventually(within: .seconds(90)) {
                try await cluster.allChunksHave(3, files: files.map(\.0))
            }
            #expect(repaired, "every chunk back to 3 live copies after the grace period")
            let (status, report) = try await cluster.fsck()
            #expect((report["lost"] as? Int) == 0 && (report["under_replicated"] as? Int) == 0, "\(report)")
            // The dead server is still unreachable, so fsck says its facts are unverified: at risk.
            #expect(status == 6)
            // With three copies on the three survivors, any one of them holds everything.
            try await cluster.servers[2].kill()
            try await cluster.servers[3].kill()
            for (path, local) in files { #expect(try await cluster.readsBack(path, local), "\(path)") }
        }
    }

    @Test(
        "add a fourth server: dry run plans ~a quarter of the bytes; the run matches the ring, never below 3 copies"
    )
    func rebalanceAfterAdd() async throws {
        try await Self.withCluster(servers: 3) { cluster in
            var files: [(String, URL)] = []
            for i in 0..<6 {
                let local = cluster.dir.appendingPathComponent("big-\(i)")
                try await ClientTests.makeFile(local, byteCount: 8 << 20, seed: 500 + UInt64(i))
                try await cluster.put(local, "media/big-\(i)", chunkSize: "32K")
                files.append(("media/big-\(i)", local))
            }
            let newcomer = cluster.newServer("cs-new", zone: "z3")
            do {
                try await newcomer.start()
                let joined = try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                    try await MasterTests.status(cluster.client, cluster.master).servers.filter {
                        $0.inRing && $0.state == .alive
                    }.count == 4
                }
                #expect(joined)
                let plan = try await cluster.json(["rebalance", "--dry-run"])
                let stored = Double(plan["stored_bytes"] as? Int ?? 0)
                let copy = Double(plan["copy_bytes"] as? Int ?? 0)
                #expect(stored > 0)
                #expect(
                    abs(copy - stored / 4) <= 0.1 * stored / 4, "planned \(copy) of \(stored) stored bytes; ideal 1/4")
                // Sample while it runs: every chunk keeps 3 live copies throughout.
                // A sample that fails to read the plans counts as an error, never as a pass.
                // Samples until it is cancelled (the rebalance ended) or one sees a chunk short,
                // pausing between samples by waiting (bounded) for that cancellation.
                let sampling = Task { () -> (samples: Int, errors: [String], neverBelow: Bool) in
                    var samples = 0
                    var errors: [String] = []
                    while !Task.isCancelled {
                        do {
                            if try await !cluster.allChunksHave(3, files: files.map(\.0)) {
                                return (samples, errors, false)
                            }
                            samples += 1
                        } catch is CancellationError {
                            break  // the rebalance finished and the sampler was stopped mid-request
                        } catch {
                            errors.append("\(error)")
                        }
                        _ = try? await ChunkServerFaultTests.eventually(within: .milliseconds(100)) { Task.isCancelled }
                    }
                    return (samples, errors, true)
                }
                let status = try await cluster.json(["rebalance", "--max-bytes-per-sec", "16M"])
                sampling.cancel()
                let sampled = await sampling.value
                #expect(sampled.neverBelow, "a sample saw a chunk below 3 live copies")
                #expect(sampled.samples > 3 && sampled.errors.isEmpty, "\(sampled)")
                #expect(status["state"] as? String == "finished")
                #expect(abs(Double(status["moved_bytes"] as? Int ?? 0) - copy) <= 0.05 * copy)
                let after = try await cluster.fsck()
                #expect(after.status == 0)
                #expect((after.report["misplaced"] as? Int) == 0, "placement equals the ring: \(after.report)")
                #expect(Self.chunkFiles(newcomer).count > 0)
                for (path, local) in files { #expect(try await cluster.readsBack(path, local)) }
                try await newcomer.stop()
            } catch {
                try? await newcomer.kill()
                throw error
            }
        }
    }

    @Test("kill -9 the master in the middle of a rebalance: it resumes and finishes")
    func masterRestartResumes() async throws {
        try await Self.withCluster(servers: 3) { cluster in
            var files: [(String, URL)] = []
            for i in 0..<4 {
                let local = cluster.dir.appendingPathComponent("big-\(i)")
                try await ClientTests.makeFile(local, byteCount: 8 << 20, seed: 700 + UInt64(i))
                try await cluster.put(local, "media/big-\(i)")
                files.append(("media/big-\(i)", local))
            }
            let newcomer = cluster.newServer("cs-new", zone: "z3")
            do {
                try await newcomer.start()
                _ = try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                    try await MasterTests.status(cluster.client, cluster.master).servers.filter {
                        $0.inRing && $0.state == .alive
                    }.count == 4
                }
                let started = try await cluster.json(["rebalance", "--max-bytes-per-sec", "8M", "--detach"])
                #expect(started["state"] as? String == "running")
                let moving = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    (try await cluster.json(["rebalance", "status"])["moved_bytes"] as? Int ?? 0) > 0
                }
                #expect(moving)
                let port = Int(cluster.master.address.split(separator: ":").last ?? "") ?? 0
                try await cluster.master.kill()
                try await cluster.master.start(port: port)
                let finished = try await ChunkServerFaultTests.eventually(within: .seconds(120)) {
                    (try? await cluster.json(["rebalance", "status"])["state"] as? String) == "finished"
                }
                #expect(finished)
                let after = try await cluster.fsck()
                #expect((after.report["misplaced"] as? Int) == 0, "\(after.report)")
                for (path, local) in files { #expect(try await cluster.readsBack(path, local)) }
                try await newcomer.stop()
            } catch {
                try? await newcomer.kill()
                throw error
            }
        }
    }

    @Test("drain a server to empty, then remove it; removing a server with sole copies is refused")
    func drainAndRemove() async throws {
        try await Self.withCluster(servers: 4) { cluster in
            let files = try await Self.putFiles(cluster, count: 16, prefix: "drain", seed: 900)
            let victim = cluster.servers[3]
            let drained = try await cluster.json(["node", "drain", victim.serverID])
            #expect(drained["weight"] as? Double == 0)
            let empty = try await ChunkServerFaultTests.eventually(within: .seconds(60)) {
                (try await cluster.json(["node", "status", victim.serverID])["chunks"] as? Int) == 0
            }
            #expect(empty, "the drained server's bytes reach zero")
            let removed = try await cluster.run(["node", "remove", victim.serverID])
            #expect(removed.status == 0, "\(removed.stderr)")
            try await victim.stop()
            #expect(try await MasterTests.status(cluster.client, cluster.master).servers.count == 3)
            for (path, local) in files { #expect(try await cluster.readsBack(path, local)) }
            #expect(try await cluster.allChunksHave(3, files: files.map(\.0)))
        }
        // One copy per chunk: every server holds sole copies.
        try await Self.withCluster(servers: 2, masterArguments: ["--replicas", "1"]) { cluster in
            _ = try await Self.putFiles(cluster, count: 4, prefix: "sole", seed: 950)
            let refused = try await cluster.run(["node", "remove", cluster.servers[0].serverID])
            #expect(refused.status != 0)
            #expect(refused.stderr.contains("only copy"), "\(refused.stderr)")
            #expect(try await MasterTests.status(cluster.client, cluster.master).servers.count == 2)
        }
    }

    @Test("flip a bit in a stored chunk: the scrub detects it and the master puts a good copy back")
    func bitFlipRepaired() async throws {
        try await Self.withCluster(servers: 4, serverArguments: ["--scrub-rate", "256M", "--scrub-interval", "1"]) {
            cluster in
            let files = try await Self.putFiles(cluster, count: 4, prefix: "flip", seed: 1100)
            let server = cluster.servers[0]
            guard let victim = Self.chunkFiles(server).first else { throw TestFailure("no chunk on server 0") }
            var bytes = try Data(contentsOf: victim)
            bytes[bytes.count - 1] ^= 0x01
            try bytes.write(to: victim)
            let id = victim.lastPathComponent
            let quarantined = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                let list = try await cluster.client.send(.GET, server.address, "/v1/quarantine").json(
                    QuarantineList.self)
                return list.chunks.contains(id)
            }
            #expect(quarantined, "the scrub found the flipped bit")
            let healed = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                let (status, report) = try await cluster.fsck()
                return status == 0 && (report["under_replicated"] as? Int) == 0
            }
            #expect(healed, "fsck clean: the chunk is back to 3 copies")
            for (path, local) in files { #expect(try await cluster.readsBack(path, local)) }
        }
    }

    @Test(
        "a chunk file the master has no record of is reported by fsck and gc, and collected a grace after first seen"
    )
    func orphanCollected() async throws {
        try await Self.withCluster(servers: 3) { cluster in
            let files = try await Self.putFiles(cluster, count: 2, prefix: "keep", seed: 1700)
            // As an interrupted upload leaves it: a valid frame on disk that nobody recorded.
            let plain = SyntheticData.random(byteCount: 50_000, seed: 1799)
            let id = ChunkID(hashing: plain)
            let server = cluster.servers[1]
            let dir = server.dataDirectory.appendingPathComponent(
                "chunks/\(id.hex.prefix(2))/\(id.hex.dropFirst(2).prefix(2))")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let orphan = dir.appendingPathComponent(id.hex)
            try Data(ChunkEncoder().frame(for: plain)).write(to: orphan)

            let fsck = try await cluster.fsck()
            #expect((fsck.report["orphaned"] as? Int) == 1, "\(fsck.report)")
            let dry = try await cluster.json(["gc", "--dry-run"])
            let perServer = (dry["servers"] as? [[String: Any]] ?? []).first {
                $0["server"] as? String == server.serverID
            }
            #expect(perServer?["orphan_chunks"] as? Int == 1, "\(dry)")
            let firstSeen = ContinuousClock.now
            let first = try await cluster.json(["gc"])
            #expect(first["deleted_chunks"] as? Int == 0, "\(first)")
            #expect(FileManager.default.fileExists(atPath: orphan.path), "kept until a grace after it was first seen")
            let collected = try await cluster.gc(until: { ($0["deleted_chunks"] as? Int ?? 0) >= 1 })
            #expect(collected.reached, "collected once a grace passed: \(collected.report)")
            #expect(ContinuousClock.now - firstSeen >= .seconds(1), "not before the 1 s grace")
            #expect(!FileManager.default.fileExists(atPath: orphan.path))
            for (path, local) in files { #expect(try await cluster.readsBack(path, local)) }
        }
    }

    @Test("with --no-auto-admit servers wait outside the ring until `node add`")
    func nodeAddAdmits() async throws {
        try await MasterTests.withCluster(servers: 3, liveness: Self.masterArguments + ["--no-auto-admit"]) {
            master, servers, client, dir in
            let cluster = Cluster(master: master, servers: servers, client: client, dir: dir)
            let registered = try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                try await MasterTests.status(client, master).servers.filter { $0.state == .alive }.count == 3
            }
            #expect(registered)
            #expect(try await MasterTests.status(client, master).servers.allSatisfy { !$0.inRing })
            // The ring needs R failure domains: the first two wait, the third builds it.
            for server in servers {
                let node = try await cluster.json(["node", "add", server.serverID])
                #expect(node["id"] as? String == server.serverID)
            }
            let status = try await MasterTests.status(client, master)
            #expect(status.ringEpoch != nil && status.servers.allSatisfy(\.inRing))
            let local = dir.appendingPathComponent("one")
            try Data(SyntheticData.random(byteCount: 100_000, seed: 1900)).write(to: local)
            try await cluster.put(local, "admitted/one")
            #expect(try await cluster.readsBack("admitted/one", local))
        }
    }

    @Test("gc aborts a multipart upload older than the limit; its parts become garbage")
    func staleUploadAborted() async throws {
        try await Self.withCluster(servers: 3, masterArguments: ["--gc-stale-uploads", "1s"]) { cluster in
            #expect(try await cluster.run(["bucket", "create", "uploads"]).status == 0)
            let reply = try await MasterTests.post(
                cluster.client, cluster.master, "/v1/uploads",
                MultipartUploadCreate(path: try BlobPath("uploads/big.bin"), contentType: "video/mp4"))
            let upload = try reply.json(MultipartUpload.self)
            let part = cluster.dir.appendingPathComponent("part")
            try Data(SyntheticData.random(byteCount: 200_000, seed: 2300)).write(to: part)
            try await cluster.put(part, try upload.partPath(1).value)
            // A dry run reports the upload once it is older than the limit, and aborts nothing.
            let stale = try await cluster.gc(dryRun: true, until: { $0["aborted_uploads"] as? Int == 1 })
            #expect(stale.reached, "the upload became stale: \(stale.report)")
            #expect(
                try await cluster.client.send(.GET, cluster.master.address, "/v1/uploads/\(upload.id)").status == 200)
            let first = try await cluster.json(["gc"])
            #expect(first["aborted_uploads"] as? Int == 1, "\(first)")
            let gone = try await cluster.client.send(.GET, cluster.master.address, "/v1/uploads/\(upload.id)")
            #expect(gone.status == 404)
            #expect(
                try await cluster.run(["stat", try upload.partPath(1).value]).status == 2, "the part is tombstoned")
            // Then, a grace after the tombstone and a grace after the mark, its chunks go.
            let last = try await cluster.gc(until: { ($0["deleted_chunks"] as? Int ?? 0) > 0 })
            #expect(last.reached, "the part's chunks are reclaimed: \(last.report)")
        }
    }

    @Test(
        "gc reclaims a deleted file's chunks after the grace, keeps chunks a put reuses, aborts on an inventory error"
    )
    func garbageCollection() async throws {
        try await Self.withCluster(servers: 3) { cluster in
            let doomed = try await Self.putFiles(cluster, count: 3, prefix: "doomed", seed: 1300)
            let reused = try await Self.putFiles(cluster, count: 2, prefix: "reused", seed: 1400)
            let kept = try await Self.putFiles(cluster, count: 2, prefix: "kept", seed: 1500)
            let before = cluster.servers.map { Self.chunkFiles($0).count }
            for (path, _) in doomed + reused { #expect(try await cluster.run(["rm", path]).status == 0) }
            // The deletes must be a grace old before their versions let go of their chunks: the
            // dry run says when; the first real run then marks the chunks and deletes none.
            let dueFirst = try await cluster.gc(dryRun: true, until: { $0["pruned_versions"] as? Int == 5 })
            #expect(dueFirst.reached, "the five deleted files' versions became prunable: \(dueFirst.report)")
            let first = try await cluster.json(["gc"])
            #expect(first["pruned_versions"] as? Int == 5, "\(first)")
            #expect(first["deleted_chunks"] as? Int == 0, "nothing is deleted before a grace has passed since the mark")
            let pending = (first["servers"] as? [[String: Any]] ?? []).reduce(0) {
                $0 + ($1["pending_chunks"] as? Int ?? 0)
            }
            #expect(pending > 0, "the unreferenced chunks were marked: \(first)")
            // A put that deduplicates against marked chunks keeps them.
            for (path, local) in reused { try await cluster.put(local, path) }
            let dry = try await cluster.gc(dryRun: true, until: { ($0["reclaimable_bytes"] as? Int ?? 0) > 0 })
            #expect(dry.reached, "the marks came due: \(dry.report)")
            #expect(cluster.servers.map { Self.chunkFiles($0).count } == before, "a dry run deletes nothing")
            let second = try await cluster.json(["gc"])
            #expect((second["deleted_chunks"] as? Int ?? 0) > 0, "\(second)")
            let after = cluster.servers.map { Self.chunkFiles($0).count }
            #expect(zip(after, before).allSatisfy { $0 < $1 }, "chunk files went from \(before) to \(after)")
            for (path, local) in reused + kept { #expect(try await cluster.readsBack(path, local), "\(path)") }
            for (path, _) in doomed { #expect(try await cluster.run(["stat", path]).status == 2) }
            let fsck = try await cluster.fsck()
            #expect(fsck.status == 0, "\(fsck.report)")

            // An unreadable inventory aborts the run before anything is deleted.
            for (path, _) in kept { #expect(try await cluster.run(["rm", path]).status == 0) }
            // Wait until deletions are due, so that "nothing deleted" below means something.
            // A dry run prunes nothing, so it sees both deletes come due (real runs in a row could
            // prune one each, the two deletes being made apart); then one real run prunes and marks.
            let due = try await cluster.gc(dryRun: true, until: { $0["pruned_versions"] as? Int == 2 })
            #expect(due.reached, "the kept files' versions became prunable: \(due.report)")
            let marked = try await cluster.json(["gc"])
            #expect(marked["pruned_versions"] as? Int == 2, "\(marked)")
            let ripe = try await cluster.gc(dryRun: true, until: { ($0["reclaimable_chunks"] as? Int ?? 0) > 0 })
            #expect(ripe.reached, "the kept files' chunks came due: \(ripe.report)")
            try await cluster.servers[2].kill()
            let survivors = cluster.servers.prefix(2).map { Self.chunkFiles($0).count }
            let aborted = try await cluster.run(["gc"])
            #expect(aborted.status != 0)
            #expect(aborted.stderr.contains("aborted"), "\(aborted.stderr)")
            #expect(cluster.servers.prefix(2).map { Self.chunkFiles($0).count } == survivors, "nothing deleted")
        }
    }
}
