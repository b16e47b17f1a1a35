import BlobCore
import BlobTestSupport
import Foundation
import Testing

/// `blobctl put/get/ls/stat/rm` as a user runs them, against a master and chunk servers that
/// are separate processes on 127.0.0.1.
@Suite("blobctl put and get", .timeLimit(.minutes(10)))
struct ClientTests {
    /// A cluster, and a way to run client commands pointed at it by flags.
    struct Cluster {
        let master: DaemonProcess
        let servers: [DaemonProcess]
        let client: TestClient
        let dir: URL

        var flags: [String] {
            ["--master", "http://\(master.address)", "--secret-file", dir.appendingPathComponent("secret").path]
        }
        /// No user config leaks in, and none is written.
        var environment: [String: String] { ["BLOBCTL_CONFIG": dir.appendingPathComponent("no-config.json").path] }

        func run(_ args: [String], stdin: URL? = nil, stdout: URL? = nil) async throws -> BlobctlProcess.Output {
            try await BlobctlProcess.run(
                args + flags, timeout: .seconds(300), environment: environment,
                standardInput: stdin, standardOutput: stdout)
        }

        /// `put --json`, which must succeed; returns its fields.
        func put(_ local: URL, _ path: String) async throws -> [String: Any] {
            let out = try await run(["put", local.path, path, "--json"])
            guard out.status == 0 else { throw TestFailure("put \(path) failed (\(out.status)): \(out.stderr)") }
            return try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] ?? [:]
        }

        /// `get` to a file, which must succeed.
        func get(_ path: String, _ local: URL, _ extra: [String] = []) async throws {
            let out = try await run(["get", path, local.path] + extra)
            guard out.status == 0 else { throw TestFailure("get \(path) failed (\(out.status)): \(out.stderr)") }
        }

        func stat(_ path: String) async throws -> [String: Any] {
            let out = try await run(["stat", path, "--json"])
            guard out.status == 0 else { throw TestFailure("stat \(path) failed (\(out.status)): \(out.stderr)") }
            return try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any] ?? [:]
        }

        /// Random bytes written to a local file named `path` and put at `path`; the local file
        /// and the stored file's chunks (`stat --json`).
        func putRandomFile(
            _ path: String, byteCount: Int, seed: UInt64
        ) async throws -> (local: URL, chunks: [[String: Any]]) {
            let local = dir.appendingPathComponent(path)
            try await ClientTests.makeFile(local, byteCount: byteCount, seed: seed)
            _ = try await put(local, path)
            return (local, try await stat(path)["chunks"] as? [[String: Any]] ?? [])
        }
    }

    /// A master and `servers` chunk servers, the ring built; all stopped by PID afterwards.
    static func withCluster<T>(servers: Int = 3, _ body: (Cluster) async throws -> T) async throws -> T {
        // Liveness slow enough that a machine loaded by many client processes does not make
        // heartbeating servers look down, quick enough that a killed server is noticed.
        let liveness = ["--heartbeat-interval", "200", "--suspect-after", "2000", "--down-after", "6000"]
        return try await MasterTests.withCluster(servers: servers, liveness: liveness) { master, servers, client, dir in
            let ready = try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                let status = try await MasterTests.status(client, master)
                return status.ringEpoch != nil
                    && status.servers.filter { $0.state == .alive && $0.inRing }.count == servers.count
            }
            guard ready else { throw TestFailure("the cluster did not form") }
            return try await body(Cluster(master: master, servers: servers, client: client, dir: dir))
        }
    }

    /// Writes `byteCount` bytes of synthetic data (random or log text) in pieces.
    static func makeFile(_ url: URL, byteCount: Int, logs: Bool = false, seed: UInt64) async throws {
        try await offCooperativePool { try writeFile(url, byteCount: byteCount, logs: logs, seed: seed) }
    }

    private static func writeFile(_ url: URL, byteCount: Int, logs: Bool, seed: UInt64) throws {
        _ = FileManager.default.createFile(atPath: url.path, contents: nil)
        let handle = try FileHandle(forWritingTo: url)
        defer { try? handle.close() }
        var written = 0
        var piece: UInt64 = 0
        while written < byteCount {
            let n = min(8 << 20, byteCount - written)
            let bytes =
                logs
                ? SyntheticData.logs(byteCount: n, seed: seed &* 1000 &+ piece)
                : SyntheticData.random(byteCount: n, seed: seed &* 1000 &+ piece)
            try handle.write(contentsOf: bytes)
            written += n
            piece += 1
        }
    }

    /// Whether two files hold the same bytes, compared piece by piece (off the cooperative pool).
    static func sameBytes(_ a: URL, _ b: URL) async throws -> Bool {
        try await offCooperativePool { try compareFiles(a, b) }
    }

    private static func compareFiles(_ a: URL, _ b: URL) throws -> Bool {
        let ha = try FileHandle(forReadingFrom: a)
        let hb = try FileHandle(forReadingFrom: b)
        defer {
            try? ha.close()
            try? hb.close()
        }
        while true {
            let x = try ha.read(upToCount: 4 << 20) ?? Data()
            let y = try hb.read(upToCount: 4 << 20) ?? Data()
            if x != y { return false }
            if x.isEmpty { return true }
        }
    }

    static func bytes(_ url: URL, _ range: Range<Int>) throws -> Data {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        try handle.seek(toOffset: UInt64(range.lowerBound))
        return try handle.read(upToCount: range.count) ?? Data()
    }

    @Test("round trips of 0 B, 1 B, one chunk, and hundreds of MiB of random and log data are identical")
    func roundTrips() async throws {
        try await Self.withCluster { cluster in
            let dir = cluster.dir
            let cases: [(String, Int, Bool)] = [
                ("empty", 0, false), ("one-byte", 1, false), ("one-chunk", 256 << 10, false),
                ("random.bin", 200 << 20, false), ("logs.log", 100 << 20, true),
            ]
            for (i, (name, size, logs)) in cases.enumerated() {
                let local = dir.appendingPathComponent(name)
                try await Self.makeFile(local, byteCount: size, logs: logs, seed: UInt64(i + 1))
                let put = try await cluster.put(local, "round/\(name)")
                #expect(put["size"] as? Int == size)
                if name == "one-chunk" { #expect(put["chunks"] as? Int == 1) }
                if name == "empty" { #expect(put["chunks"] as? Int == 0) }
                let copy = dir.appendingPathComponent(name + ".copy")
                try await cluster.get("round/\(name)", copy)
                #expect(try await Self.sameBytes(local, copy), "\(name) came back identical")
                try? FileManager.default.removeItem(at: copy)
                if logs {
                    let stat = try await cluster.stat("round/\(name)")
                    let stored = stat["stored_bytes"] as? Int ?? 0
                    #expect(
                        stored > 0 && stored < size,
                        "log text is stored compressed: \(stored) bytes on disks for \(size)")
                    #expect(put["content_type"] as? String == "text/plain; charset=utf-8")
                }
            }
            let ls = try await cluster.run(["ls", "round/"])
            #expect(ls.stdout.split(separator: "\n").map(String.init) == cases.map { "round/\($0.0)" }.sorted())
        }
    }

    @Test("ranges at the start, the end and across chunk boundaries; invalid ranges are refused")
    func ranges() async throws {
        try await Self.withCluster { cluster in
            let size = 12 << 20
            let (local, chunks) = try await cluster.putRandomFile("ranged.bin", byteCount: size, seed: 7)
            #expect(chunks.count >= 3)
            let boundary = chunks[1]["offset"] as? Int ?? 0
            let secondBoundary = chunks[2]["offset"] as? Int ?? 0
            let cases: [(String, Range<Int>)] = [
                ("0-99", 0..<100), ("\(size - 100)-", (size - 100)..<size), ("-100", (size - 100)..<size),
                ("\(boundary - 10)-\(boundary + 9)", (boundary - 10)..<(boundary + 10)),
                ("\(boundary - 1)-\(secondBoundary)", (boundary - 1)..<(secondBoundary + 1)),
                ("\(size - 5)-\(size + 1000)", (size - 5)..<size),
            ]
            for (text, expected) in cases {
                let out = cluster.dir.appendingPathComponent("range.out")
                try await cluster.get("ranged.bin", out, ["--range=\(text)"])
                #expect(try Data(contentsOf: out) == (try Self.bytes(local, expected)), "range \(text)")
            }
            for bad in ["\(size)-", "\(size + 10)-\(size + 20)", "10-5", "abc", "5"] {
                let out = try await cluster.run(["get", "ranged.bin", "-", "--range=\(bad)"])
                #expect(out.status != 0 && out.stderr.contains("range"), "range \(bad): \(out.stderr)")
            }
        }
    }

    @Test(
        "a range in a chunk reads just its blocks, checked by block digests; bad replicas fall back to whole chunks"
    )
    func rangesReadBlocks() async throws {
        try await Self.withCluster { cluster in
            let (local, chunks) = try await cluster.putRandomFile("blocks.bin", byteCount: 8 << 20, seed: 17)
            let block = BlockDigests.blockByteCount
            guard let big = chunks.first(where: { ($0["size"] as? Int ?? 0) >= 4 * block }),
                let start = big["offset"] as? Int, let id = big["id"] as? String
            else {
                throw TestFailure("no chunk of 4 blocks or more in \(chunks)")
            }
            func partial() async throws -> (reads: Int64, bytes: Int64) {
                var reads: Int64 = 0
                var bytes: Int64 = 0
                for server in cluster.servers {
                    let status = try await cluster.client.send(.GET, server.address, "/v1/status").json(
                        ChunkServerStatus.self)
                    reads += status.counters["partialReads"] ?? 0
                    bytes += status.counters["partialBytesSent"] ?? 0
                }
                return (reads, bytes)
            }
            // 100 bytes inside the chunk's second block: one block crosses the network.
            let inside = (start + block + 500)..<(start + block + 600)
            let out = cluster.dir.appendingPathComponent("blocks.out")
            let before = try await partial()
            try await cluster.get("blocks.bin", out, ["--range=\(inside.lowerBound)-\(inside.upperBound - 1)"])
            #expect(try Data(contentsOf: out) == (try Self.bytes(local, inside)))
            let after = try await partial()
            #expect(
                after.reads - before.reads == 1 && after.bytes - before.bytes == Int64(block),
                "partial reads \(before) → \(after)")
            // A range over several blocks: its first block is fetched on its own, so the first
            // bytes go out sooner, then the rest; three blocks in all.
            let across = (start + block + 10)..<(start + 3 * block + 10)
            try await cluster.get("blocks.bin", out, ["--range=\(across.lowerBound)-\(across.upperBound - 1)"])
            #expect(try Data(contentsOf: out) == (try Self.bytes(local, across)))
            let split = try await partial()
            #expect(
                split.reads - after.reads == 2 && split.bytes - after.bytes == Int64(3 * block),
                "partial reads \(after) → \(split)")
            // Damage the block the first range reads on two of the chunk's three servers: the
            // range still reads back right: a range's first chunk is asked of its holders in
            // server id order, so the damaged block comes first and fails its digest, and the
            // read falls back to a whole chunk checked against its id.
            for server in cluster.servers.sorted(by: { $0.serverID < $1.serverID }).prefix(2) {
                for file in ChunkServerFaultTests.chunkFiles(server) where file.lastPathComponent == id {
                    var bytes = [UInt8](try Data(contentsOf: file))
                    bytes[FrameHeader.byteCount + block + 550] ^= 0x01
                    try Data(bytes).write(to: file)
                }
            }
            let damaged = try await cluster.run([
                "get", "blocks.bin", out.path, "--range=\(inside.lowerBound)-\(inside.upperBound - 1)", "--json",
            ])
            #expect(damaged.status == 0, "\(damaged.stderr)")
            #expect(
                try Data(contentsOf: out) == (try Self.bytes(local, inside)), "range \(inside) with damaged replicas")
            let report = try JSONSerialization.jsonObject(with: Data(damaged.stdout.utf8)) as? [String: Any]
            #expect(
                (report?["failovers"] as? Int ?? 0) >= 1,
                "the damaged copies were tried and passed over: \(damaged.stdout)")
            // Blocks the damage did not touch still read back right, from whichever copy is left.
            let later = (start + 3 * block - 10)..<(start + 3 * block + 10)
            try await cluster.get("blocks.bin", out, ["--range=\(later.lowerBound)-\(later.upperBound - 1)"])
            #expect(try Data(contentsOf: out) == (try Self.bytes(local, later)), "range \(later) with damaged replicas")
        }
    }

    @Test("a second put of the same file sends nothing; a log grown by 1% sends under 5% of its size")
    func deduplication() async throws {
        try await Self.withCluster { cluster in
            let local = cluster.dir.appendingPathComponent("day.log")
            let size = 20 << 20
            try await Self.makeFile(local, byteCount: size, logs: true, seed: 3)
            let first = try await cluster.put(local, "logs/day.log")
            #expect(first["new_chunks"] as? Int == first["chunks"] as? Int)
            let second = try await cluster.put(local, "logs/day-again.log")
            #expect(
                second["new_chunks"] as? Int == 0 && second["sent_bytes"] as? Int == 0
                    && second["stored_bytes"] as? Int == 0)
            let handle = try FileHandle(forWritingTo: local)
            try handle.seekToEnd()
            try handle.write(contentsOf: SyntheticData.logs(byteCount: size / 100, seed: 99))
            try handle.close()
            let grown = try await cluster.put(local, "logs/day.log")
            let sent = grown["new_bytes"] as? Int ?? Int.max
            #expect(sent <= (size + size / 100) / 20, "a 1% append sent \(sent) plain bytes of \(size + size / 100)")
            #expect(grown["version"] as? Int == 2)
            let copy = cluster.dir.appendingPathComponent("day.copy")
            try await cluster.get("logs/day.log", copy)
            #expect(try await Self.sameBytes(local, copy))
        }
    }

    @Test("kill -9 of one chunk server: every file still reads back identical")
    func readsSurviveAKilledServer() async throws {
        try await Self.withCluster { cluster in
            var files: [(URL, String)] = []
            for i in 0..<4 {
                let local = cluster.dir.appendingPathComponent("f\(i)")
                try await Self.makeFile(local, byteCount: (3 + i) << 20, logs: i % 2 == 0, seed: UInt64(20 + i))
                _ = try await cluster.put(local, "survive/f\(i)")
                files.append((local, "survive/f\(i)"))
            }
            try await cluster.servers[1].kill()
            for (local, path) in files {
                let copy = cluster.dir.appendingPathComponent("copy")
                let out = try await cluster.run(["get", path, copy.path, "--json"])
                #expect(out.status == 0, "\(out.stderr)")
                #expect(try await Self.sameBytes(local, copy), "\(path) identical with a server killed")
            }
        }
    }

    @Test("a corrupt replica is skipped for another, the file reads back identical, and reads stop going there")
    func corruptReplicaFailover() async throws {
        try await Self.withCluster { cluster in
            let (local, chunks) = try await cluster.putRandomFile("damaged.bin", byteCount: 6 << 20, seed: 61)
            #expect(chunks.count >= 3)
            // Damage every chunk of the file on one server (the scrub is off in these clusters).
            let victim = cluster.servers[0]
            let ids = Set(chunks.compactMap { $0["id"] as? String })
            for file in ChunkServerFaultTests.chunkFiles(victim) where ids.contains(file.lastPathComponent) {
                var bytes = [UInt8](try Data(contentsOf: file))
                bytes[bytes.count / 2] ^= 0x01
                try Data(bytes).write(to: file)
            }
            let copy = cluster.dir.appendingPathComponent("damaged.copy")
            let out = try await cluster.run(["get", "damaged.bin", copy.path, "--json"])
            #expect(out.status == 0, "\(out.stderr)")
            #expect(try await Self.sameBytes(local, copy))
            let report = try JSONSerialization.jsonObject(with: Data(out.stdout.utf8)) as? [String: Any]
            let failovers = report?["failovers"] as? Int ?? 0
            #expect(
                failovers >= 1, "reads rotate over the replicas, so some chunk was asked of the damaged server first")
            // The damaged copies that were read (the server quarantined them) are no longer
            // offered for reads: the client's report, or the server's next one, drops them.
            // Repair may then put a good copy back on the same server (it is the ring's place
            // for the chunk), so the check is what a reader sees: reads meet no damaged copy.
            let quarantined = Set(
                try await cluster.client.send(.GET, victim.address, "/v1/quarantine").json(QuarantineList.self).chunks
            ).intersection(ids)
            #expect(!quarantined.isEmpty, "the read met a damaged copy and the server quarantined it")
            let clean = try await ChunkServerFaultTests.eventually(within: .seconds(60)) {
                let again = try await cluster.run(["get", "damaged.bin", copy.path, "--json"])
                guard again.status == 0, try await Self.sameBytes(local, copy) else { return false }
                let report = try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any]
                return report?["failovers"] as? Int == 0
            }
            #expect(clean, "later reads go to intact copies only")
        }
    }

    @Test("a put killed half-way, run again, sends only the chunks that are missing")
    func resumeAfterKilledPut() async throws {
        try await Self.withCluster { cluster in
            let local = cluster.dir.appendingPathComponent("big.bin")
            try await Self.makeFile(local, byteCount: 120 << 20, seed: 11)
            let process = Process()
            process.executableURL = try BlobctlProcess.executableURL
            process.arguments = ["put", local.path, "big.bin", "--in-flight", "1"] + cluster.flags
            process.environment = ProcessInfo.processInfo.environment.merging(cluster.environment) { $1 }
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.launchSerially()
            // Kill once the servers hold at least 24 chunks and the put is still running.
            let server = cluster.servers[0]
            let started = try await ChunkServerFaultTests.eventually(within: .seconds(120)) {
                let reply = try await cluster.client.send(.GET, server.address, "/v1/status")
                let status = try reply.json(ChunkServerStatus.self)
                return status.chunkCount >= 24 || !process.isRunning
            }
            #expect(started && process.isRunning, "the put was still running when killed")
            try await process.exit(within: .zero)
            let rerun = try await cluster.put(local, "big.bin")
            let total = rerun["chunks"] as? Int ?? 0
            let sent = rerun["new_chunks"] as? Int ?? Int.max
            #expect(total > 60 && sent <= total - 16, "the re-run sent \(sent) of \(total) chunks")
            let copy = cluster.dir.appendingPathComponent("big.copy")
            try await cluster.get("big.bin", copy)
            #expect(try await Self.sameBytes(local, copy))
        }
    }

    @Test("8 concurrent puts and gets to different paths, and 8 concurrent puts to one path")
    func concurrentClients() async throws {
        try await Self.withCluster { cluster in
            var sources: [URL] = []
            for i in 0..<8 {
                let url = cluster.dir.appendingPathComponent("c\(i)")
                try await Self.makeFile(url, byteCount: (2 << 20) + i * 100_000, logs: i % 2 == 1, seed: UInt64(40 + i))
                sources.append(url)
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, url) in sources.enumerated() {
                    group.addTask { _ = try await cluster.put(url, "many/\(i)") }
                    group.addTask { _ = try await cluster.put(url, "same") }
                }
                try await group.waitForAll()
            }
            let results = LockedList<Bool>()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (i, url) in sources.enumerated() {
                    group.addTask {
                        let copy = cluster.dir.appendingPathComponent("c\(i).copy")
                        try await cluster.get("many/\(i)", copy)
                        results.append(try await Self.sameBytes(url, copy))
                    }
                }
                try await group.waitForAll()
            }
            #expect(results.items.count == 8 && results.items.allSatisfy { $0 })
            let same = cluster.dir.appendingPathComponent("same.copy")
            try await cluster.get("same", same)
            var whole = false
            for source in sources where !whole { whole = try await Self.sameBytes(source, same) }
            #expect(whole, "the path holds one whole version, not a mix")
            #expect(try await cluster.stat("same")["version"] as? Int == 8)
        }
    }

    @Test("put from standard input and get to standard output")
    func standardStreams() async throws {
        try await Self.withCluster { cluster in
            let local = cluster.dir.appendingPathComponent("piped.log")
            try await Self.makeFile(local, byteCount: 9 << 20, logs: true, seed: 5)
            let put = try await cluster.run(["put", "-", "piped/in.log"], stdin: local)
            #expect(put.status == 0, "\(put.stderr)")
            let out = cluster.dir.appendingPathComponent("piped.out")
            let get = try await cluster.run(["get", "piped/in.log", "-"], stdout: out)
            #expect(get.status == 0, "\(get.stderr)")
            #expect(try await Self.sameBytes(local, out))
            let rm = try await cluster.run(["rm", "piped/in.log"])
            #expect(rm.status == 0)
            let gone = try await cluster.run(["stat", "piped/in.log"])
            #expect(gone.status == 2 && gone.stderr.contains("no file"))
        }
    }

    @Test(
        "put --recursive stores regular files at PREFIX/<path> once, skips links/FIFOs; ls to a closed pipe is quiet"
    )
    func recursivePut() async throws {
        try await Self.withCluster { cluster in
            let tree = cluster.dir.appendingPathComponent("tree")
            let nested = tree.appendingPathComponent("a/b")
            try FileManager.default.createDirectory(at: nested, withIntermediateDirectories: true)
            try FileManager.default.createDirectory(
                at: tree.appendingPathComponent("c"), withIntermediateDirectories: true)
            let files = ["x.log": 300_000, "a/b/y.bin": 70_000, "a/empty": 0, "c/z.txt": 1]
            for (name, size) in files {
                try await Self.makeFile(
                    tree.appendingPathComponent(name), byteCount: size, logs: name.hasSuffix(".log"), seed: UInt64(size)
                )
            }
            try FileManager.default.createSymbolicLink(
                atPath: tree.appendingPathComponent("link").path, withDestinationPath: "x.log")
            #expect(mkfifo(tree.appendingPathComponent("fifo").path, 0o600) == 0)

            let first = try await cluster.run(["put", "-r", tree.path, "media/tree/", "--json"])
            #expect(first.status == 0, "\(first.stderr)")
            let report = try #require(try JSONSerialization.jsonObject(with: Data(first.stdout.utf8)) as? [String: Any])
            #expect(
                report["file_count"] as? Int == 4 && report["skipped"] as? Int == 2
                    && (report["failed"] as? [Any])?.isEmpty == true,
                "\(first.stdout)")
            let stored = (report["files"] as? [[String: Any]] ?? []).compactMap { $0["path"] as? String }
            #expect(stored == ["media/tree/a/b/y.bin", "media/tree/a/empty", "media/tree/c/z.txt", "media/tree/x.log"])
            for name in files.keys {
                let copy = cluster.dir.appendingPathComponent("copy-" + name.replacingOccurrences(of: "/", with: "-"))
                try await cluster.get("media/tree/" + name, copy)
                #expect(try await Self.sameBytes(tree.appendingPathComponent(name), copy), "\(name)")
            }
            let again = try await cluster.run(["put", "--recursive", tree.path, "media/tree", "--json"])
            let second = try #require(try JSONSerialization.jsonObject(with: Data(again.stdout.utf8)) as? [String: Any])
            #expect(
                again.status == 0 && second["new_chunks"] as? Int == 0 && second["stored_bytes"] as? Int == 0,
                "\(again.stdout)")

            let directory = try await cluster.run(["put", tree.path, "media/x"])
            #expect(directory.status == 64 && directory.stderr.contains("--recursive"), "\(directory.stderr)")
            let notDirectory = try await cluster.run([
                "put", "-r", tree.appendingPathComponent("x.log").path, "media/x",
            ])
            #expect(
                notDirectory.status == 64 && notDirectory.stderr.contains("not a directory"), "\(notDirectory.stderr)")

            // `blobctl ls -l | head -1` over more than a pipe holds (1,100 lines, ~88 KB): the
            // listing's reader goes away mid-write; no crash, no error.
            let many = cluster.dir.appendingPathComponent("many")
            try FileManager.default.createDirectory(at: many, withIntermediateDirectories: true)
            for index in 0..<1100 {
                try Data([UInt8(index % 256)]).write(to: many.appendingPathComponent(String(format: "f%04d", index)))
            }
            let manyPut = try await cluster.run(["put", "-r", many.path, "media/many", "--parallel", "16"])
            #expect(
                manyPut.status == 0 && manyPut.stdout.contains("put 1100 files under media/many/"),
                "\(manyPut.stdout.suffix(500)) \(manyPut.stderr.suffix(800))")
            // `put -` with standard input closed: an error, and nothing stored (not an empty file).
            let closed = try await Self.shell(
                "\"$0\" put - media/closed \"$@\" <&-", [BlobctlProcess.executableURL.path] + cluster.flags,
                environment: cluster.environment)
            #expect(closed.status != 0 && closed.stderr.contains("standard input"), "\(closed)")
            #expect(try await cluster.run(["stat", "media/closed"]).status == 2)

            let script = "set -o pipefail; \"$0\" ls -l media/many/ \"$@\" | head -1"
            let pipe = try await Self.shell(
                script, [BlobctlProcess.executableURL.path] + cluster.flags, environment: cluster.environment)
            #expect(pipe.status == 0 && pipe.stdout.hasSuffix("media/many/f0000\n") && pipe.stderr.isEmpty, "\(pipe)")
        }
    }

    /// `bash -c SCRIPT ARGS...`, bounded.
    static func shell(
        _ script: String, _ arguments: [String], environment: [String: String]
    ) async throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script] + arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        // Output goes to files, not pipes: a child that fills a pipe nobody reads never exits.
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("shell-out-\(UUID().uuidString)")
        let err = FileManager.default.temporaryDirectory.appendingPathComponent("shell-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = FileHandle.nullDevice
        try process.launchSerially()
        try await process.exit(within: .seconds(60))
        guard !process.isRunning else { throw TestFailure("bash -c \(script) did not finish in 60 s") }
        let stdout = (try? String(contentsOf: out, encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        return (process.terminationStatus, stdout, stderr)
    }

    @Test("bad input: missing file, invalid path, unreachable master, wrong secret, no cluster")
    func badInput() async throws {
        try await Self.withCluster(servers: 3) { cluster in
            let missing = try await cluster.run(["put", cluster.dir.appendingPathComponent("nope").path, "x"])
            #expect(missing.status == 2 && missing.stderr.contains("cannot read") && missing.stderr.contains("nope"))
            // put, get, ls, stat and rm are parsed on their own (see BlobctlMain): usage and help
            // must still name them as `blobctl put`.
            let usage = try await cluster.run(["put"])
            #expect(usage.status == 64 && usage.stderr.contains("Usage: blobctl put"), "\(usage.stderr)")
            let help = try await cluster.run(["get", "--help"])
            #expect(help.status == 0 && help.stdout.contains("USAGE: blobctl get"), "\(help.stdout)")
            let sized = cluster.dir.appendingPathComponent("sized")
            try await Self.makeFile(sized, byteCount: 5_000_000, seed: 2)
            let human = try await cluster.run(["put", sized.path, "sized"])
            #expect(
                human.status == 0 && human.stdout.contains(": 4.77 MiB in ")
                    && human.stdout.range(of: #", [0-9]+\.[0-9] MB/s"#, options: .regularExpression) != nil,
                "\(human.stdout)")
            let local = cluster.dir.appendingPathComponent("small")
            try await Self.makeFile(local, byteCount: 1000, seed: 1)
            for path in ["../etc/passwd", "a//b", "/abs", "a/./b", ""] {
                let out = try await cluster.run(["put", local.path, path])
                #expect(out.status == 64 && out.stderr.contains("path"), "path \(path): \(out.stderr)")
            }
            let secret = cluster.dir.appendingPathComponent("secret").path
            let unreachable = try await BlobctlProcess.run(
                ["put", local.path, "x", "--master", "http://127.0.0.1:1", "--secret-file", secret],
                environment: cluster.environment)
            #expect(
                unreachable.status == 3 && unreachable.stderr.contains("cannot reach the master")
                    && unreachable.stderr.contains("blobctl dev up"), "\(unreachable.stderr)")
            let wrong = cluster.dir.appendingPathComponent("wrong-secret")
            try Data(String(repeating: "w", count: 32).utf8).write(to: wrong)
            let denied = try await BlobctlProcess.run(
                ["ls", "--master", "http://\(cluster.master.address)", "--secret-file", wrong.path],
                environment: cluster.environment)
            #expect(denied.status == 4 && denied.stderr.contains("secret"), "\(denied.stderr)")
            let none = try await BlobctlProcess.run(
                ["ls"],
                environment: cluster.environment.merging(
                    ["BLOBCTL_MASTER": "", "BLOBCTL_SECRET_FILE": ""]) { $1 })
            #expect(none.status != 0 && none.stderr.contains("blobctl dev up"), "\(none.stderr)")
            let json = try await cluster.run(["get", "nothing-here", "-", "--json"])
            #expect(json.status == 2 && json.stdout.contains("\"reason\":\"file.notFound\""), "\(json.stdout)")
        }
    }
}
