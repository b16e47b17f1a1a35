import BlobCore
import BlobTestSupport
import Foundation
import Testing

/// A fresh database on the throw-away PostgreSQL that `Scripts/test.sh` starts
/// (`BLOB_TEST_POSTGRES_URL`), made and dropped with PostgreSQL's own `createdb`/`dropdb`.
enum PostgresTestDatabase {
    static let bin = ProcessInfo.processInfo.environment["POSTGRES_BIN"] ?? "/usr/lib/postgresql/15/bin"

    static func server() throws -> URLComponents {
        guard let url = ProcessInfo.processInfo.environment["BLOB_TEST_POSTGRES_URL"],
            let components = URLComponents(string: url)
        else {
            throw TestFailure(
                "BLOB_TEST_POSTGRES_URL is not set: run the tests with `bash Scripts/test.sh`, "
                    + "which starts a throw-away PostgreSQL"
            )
        }
        return components
    }

    static func tool(_ name: String, _ args: [String]) async throws {
        let server = try server()
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "\(bin)/\(name)")
        process.arguments =
            ["-h", server.host ?? "127.0.0.1", "-p", "\(server.port ?? 5432)", "-U", server.user ?? "postgres"] + args
        process.standardInput = FileHandle.nullDevice
        try process.launchSerially()
        try await process.exit(within: .seconds(60))
        guard !process.isRunning, process.terminationStatus == 0 else {
            let outcome = process.isRunning ? "did not finish" : "failed with \(process.terminationStatus)"
            throw TestFailure("\(name) \(args) \(outcome)")
        }
    }

    /// `postgres://USER@127.0.0.1:PORT/NAME` of a new, empty database, dropped after `body`.
    static func with<T>(_ body: (String) async throws -> T) async throws -> T {
        let server = try server()
        let name = "blobe2e_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        try await tool("createdb", [name])
        do {
            let result = try await body(
                "postgres://\(server.user ?? "postgres")@\(server.host ?? "127.0.0.1"):\(server.port ?? 5432)/\(name)")
            try await tool("dropdb", ["--force", name])
            return result
        } catch {
            try? await tool("dropdb", ["--force", name])
            throw error
        }
    }
}

/// The whole user path on a master that keeps its metadata in PostgreSQL: real processes.
@Suite("a cluster whose master keeps its metadata in PostgreSQL", .timeLimit(.minutes(10)))
struct PostgresClusterTests {
    @Test(
        "put, get, ls, rm, gc, rebalance on a PostgreSQL master; a killed, restarted master has it all; no SQLite file"
    )
    func endToEnd() async throws {
        try await PostgresTestDatabase.with { url in
            try await OperationsTests.withCluster(servers: 3, masterArguments: ["--metadata", url]) { cluster in
                let files = try await OperationsTests.putFiles(cluster, count: 12, prefix: "pg", seed: 4000)
                for (path, local) in files { #expect(try await cluster.readsBack(path, local), "\(path)") }
                let ls = try await cluster.run(["ls", "pg/"])
                #expect(ls.status == 0)
                for (path, _) in files { #expect(ls.stdout.contains(path), "ls lists \(path)") }
                #expect(
                    !FileManager.default.fileExists(
                        atPath: cluster.master.dataDirectory.appendingPathComponent("master.sqlite").path))

                // rm, then gc reclaims the removed files' chunks once a grace (1 s) has passed
                // since their versions were superseded and then since the chunks were marked.
                let (removed, kept) = (files.prefix(4), files.dropFirst(4))
                let before = cluster.servers.map { OperationsTests.chunkFiles($0).count }
                for (path, _) in removed { #expect(try await cluster.run(["rm", path]).status == 0) }
                for (path, _) in removed { #expect(try await cluster.run(["stat", path]).status == 2) }
                var deleted = 0
                let collected = try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    deleted += try await cluster.json(["gc"])["deleted_chunks"] as? Int ?? 0
                    return deleted > 0
                }
                #expect(collected, "gc deleted no chunk of the removed files")
                let after = cluster.servers.map { OperationsTests.chunkFiles($0).count }
                #expect(zip(after, before).allSatisfy { $0 < $1 }, "chunk files went from \(before) to \(after)")
                for (path, local) in kept { #expect(try await cluster.readsBack(path, local), "\(path)") }

                // A fourth server joins (an epoch saved compare-and-set); the rebalance moves data to it.
                let newcomer = cluster.newServer("cs-pg-new", zone: "z3")
                do {
                    try await newcomer.start()
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                            try await MasterTests.status(cluster.client, cluster.master).servers.filter {
                                $0.inRing && $0.state == .alive
                            }.count == 4
                        })
                    let status = try await cluster.json(["rebalance"])
                    #expect(status["state"] as? String == "finished", "\(status)")
                    #expect((status["moved_bytes"] as? Int ?? 0) > 0)
                    #expect(OperationsTests.chunkFiles(newcomer).count > 0)
                    let fsck = try await cluster.fsck()
                    #expect(fsck.status == 0 && (fsck.report["misplaced"] as? Int) == 0, "\(fsck.report)")

                    // A master killed and restarted on the same database knows every file and the ring.
                    let port = Int(cluster.master.address.split(separator: ":").last ?? "") ?? 0
                    try await cluster.master.kill()
                    try await cluster.master.start(port: port)
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                            try await MasterTests.status(cluster.client, cluster.master).servers.filter {
                                $0.inRing && $0.state == .alive
                            }.count == 4
                        })
                    for (path, local) in kept {
                        #expect(try await cluster.readsBack(path, local), "\(path) after the restart")
                    }
                    try await newcomer.stop()
                } catch {
                    try? await newcomer.kill()
                    throw error
                }
            }
        }
    }

    @Test(
        "metadata migrate: SQLite to PostgreSQL, verified, refused into a non-empty database; the master carries on"
    )
    func migrateToPostgres() async throws {
        try await PostgresTestDatabase.with { url in
            try await OperationsTests.withCluster(servers: 3) { cluster in
                let files = try await OperationsTests.putFiles(cluster, count: 8, prefix: "moving", seed: 4100)
                #expect(try await cluster.run(["rm", files[0].0]).status == 0)
                let sqlite = cluster.master.dataDirectory.appendingPathComponent("master.sqlite").path
                let port = Int(cluster.master.address.split(separator: ":").last ?? "") ?? 0
                try await cluster.master.stop()

                let migrate = try await BlobctlProcess.run([
                    "metadata", "migrate", "--from", "sqlite:\(sqlite)", "--to", url, "--json",
                ])
                #expect(migrate.status == 0, "\(migrate.stderr)")
                let reports =
                    try JSONSerialization.jsonObject(with: Data(migrate.stdout.utf8)) as? [[String: Any]] ?? []
                let byTable = Dictionary(
                    uniqueKeysWithValues: reports.compactMap { r in (r["table"] as? String).map { ($0, r) } })
                #expect((byTable["current_files"]?["source_rows"] as? Int) == 7)
                #expect((byTable["versions"]?["source_rows"] as? Int) == 9, "8 files and a tombstone")
                #expect(reports.count == 15, "every table reported")
                for report in reports {
                    #expect(report["source_checksum"] as? String != nil)
                    #expect(report["source_rows"] as? Int == report["destination_rows"] as? Int, "\(report)")
                    #expect(
                        report["source_checksum"] as? String == report["destination_checksum"] as? String, "\(report)")
                }
                let again = try await BlobctlProcess.run([
                    "metadata", "migrate", "--from", "sqlite:\(sqlite)", "--to", url,
                ])
                #expect(again.status != 0 && again.stderr.contains("empty database"), "\(again.stderr)")

                // The same master, now on PostgreSQL: every file, the delete, and new versions after the old ones.
                let moved = DaemonProcess(
                    dataDirectory: cluster.master.dataDirectory, secretFile: cluster.secretFile,
                    extraArguments: OperationsTests.masterArguments + ["--metadata", url], role: "master")
                do {
                    try await moved.start(port: port)
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                            try await MasterTests.status(cluster.client, moved).servers.filter {
                                $0.inRing && $0.state == .alive
                            }.count == 3
                        })
                    for (path, local) in files.dropFirst() {
                        #expect(try await cluster.readsBack(path, local), "\(path)")
                    }
                    #expect(try await cluster.run(["stat", files[0].0]).status == 2)
                    try await cluster.put(files[1].1, files[1].0)
                    let stat = try await cluster.json(["stat", files[1].0])
                    #expect(stat["version"] as? Int == 2, "\(stat)")
                    try await cluster.put(files[0].1, files[0].0)
                    #expect(
                        try await cluster.json(["stat", files[0].0])["version"] as? Int == 3,
                        "after version 1 and its tombstone")
                    try await moved.stop()
                } catch {
                    try? await moved.kill()
                    throw error
                }
            }
        }
    }

    @Test(
        "a master given an unreachable server, a missing database or a URL password says what is wrong and what to do"
    )
    func clearErrors() async throws {
        try await withTemporaryDirectory { dir in
            let server = try PostgresTestDatabase.server()
            let host = "\(server.host ?? "127.0.0.1"):\(server.port ?? 5432)"
            let secret = dir.appendingPathComponent("secret")
            try Data("0123456789abcdef0123456789abcdef\n".utf8).write(to: secret)
            func master(_ metadata: String) async throws -> BlobctlProcess.Output {
                try await BlobctlProcess.run(
                    [
                        "master", "--data", dir.appendingPathComponent("m").path, "--listen", "127.0.0.1:0",
                        "--metadata", metadata, "--secret-file", secret.path,
                    ], timeout: .seconds(60))
            }
            // Port 1 on loopback: nothing listens there.
            let unreachable = try await master("postgres://blobtest@127.0.0.1:1/blob")
            #expect(unreachable.status != 0)
            #expect(unreachable.stderr.contains("cannot reach PostgreSQL at 127.0.0.1:1"), "\(unreachable.stderr)")
            let missing = try await master("postgres://\(server.user ?? "postgres")@\(host)/no_such_database")
            #expect(missing.status != 0)
            #expect(
                missing.stderr.contains("does not exist") && missing.stderr.contains("createdb"), "\(missing.stderr)")
            let password = try await master("postgres://\(server.user ?? "postgres"):secret@\(host)/blob")
            #expect(password.status != 0)
            #expect(password.stderr.contains("--metadata-password-file"), "\(password.stderr)")
            let scheme = try await master("mysql://x@\(host)/blob")
            #expect(scheme.status != 0 && scheme.stderr.contains("sqlite:PATH"), "\(scheme.stderr)")
        }
    }
}
