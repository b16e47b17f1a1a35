import BlobCore
@testable import BlobMaster
import BlobTestSupport
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing

/// A PostgreSQL primary with a synchronous streaming standby, both started here (initdb and
/// pg_basebackup as the `postgres` user, free ports, a temporary directory), and the store's
/// writes going on across a kill -9 of the primary and the promotion of the standby.
@Suite("metadata on a PostgreSQL primary that fails over", .serialized)
struct PostgresFailoverTests {
    static let logger = Logger(label: "test.postgres-failover")

    /// One PostgreSQL server process, stopped by its PID.
    final class Server: Sendable {
        let process: Process
        let port: Int
        let dataDirectory: String
        let spawner: Spawner

        init(process: Process, port: Int, dataDirectory: String, spawner: Spawner) {
            self.process = process
            self.port = port
            self.dataDirectory = dataDirectory
            self.spawner = spawner
        }

        func kill(_ signal: Int32) { _ = Foundation.kill(process.processIdentifier, signal) }
    }

    typealias Spawner = ThreadSpawner

    static let binaries = "/usr/lib/postgresql/15/bin"
    static var asOwner: [String] {
        geteuid() == 0 ? ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"] : []
    }

    static func freePort() throws -> Int { try freeLoopbackPort() }

    /// Runs a program to its end (bounded), as the postgres user when we are root.
    static func run(_ arguments: [String], log: String) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: (asOwner + arguments)[0])
        process.arguments = Array((asOwner + arguments).dropFirst())
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.launchSerially()
        let deadline = ContinuousClock.now + .seconds(120)
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            Foundation.kill(process.processIdentifier, SIGKILL)
            throw TestFailure("\(arguments[0]) did not finish within 120 s; see \(log)")
        }
        guard process.terminationStatus == 0 else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestFailure("\(arguments[0]) failed: \(text.suffix(1000))")
        }
    }

    /// Starts `postgres` on `port` (a free one when nil); it dies with this process
    /// (parent-death signal).
    static func start(
        _ data: String, socket: String, log: String, settings: [String] = [], port: Int? = nil
    ) async throws -> Server {
        let port = try port ?? freePort()
        let process = Process()
        var arguments = asOwner + ["--pdeathsig", "KILL", "--"]
        if asOwner.isEmpty { arguments = ["/usr/bin/setpriv", "--pdeathsig", "KILL", "--"] }
        arguments += [
            binaries + "/postgres", "-D", data, "-p", "\(port)", "-k", socket, "-c", "listen_addresses=127.0.0.1",
        ]
        for setting in settings { arguments += ["-c", setting] }
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        let spawner = Spawner()
        try await spawner.start(process)
        let server = Server(process: process, port: port, dataDirectory: data, spawner: spawner)
        let ready = try await eventually(within: .seconds(60)) {
            guard process.isRunning else { return true }
            return
                (try? await run(
                    [binaries + "/pg_isready", "-q", "-h", "127.0.0.1", "-p", "\(port)"], log: log + ".ready"))
                != nil
        }
        guard ready, process.isRunning else {
            let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
            throw TestFailure("postgres did not start: \(text.suffix(1500))")
        }
        return server
    }

    /// Stops a server by its PID (fast shutdown), bounded; then SIGKILL.
    static func stop(_ server: Server) async {
        defer { server.spawner.release() }
        guard server.process.isRunning else { return }
        server.kill(SIGINT)
        let stopped = (try? await eventually(within: .seconds(30)) { !server.process.isRunning }) ?? false
        if !stopped { server.kill(SIGKILL) }
        _ = try? await eventually(within: .seconds(30)) { !server.process.isRunning }
    }

    /// A primary and a synchronous hot standby of it, in a temporary directory.
    static func withPrimaryAndStandby<T>(_ body: (Server, Server, String) async throws -> T) async throws -> T {
        guard FileManager.default.isExecutableFile(atPath: binaries + "/initdb") else {
            throw TestFailure("PostgreSQL 15 is not installed: `apt-get install postgresql-15` (Scripts/test.sh does)")
        }
        let dir = "/tmp/blob-pgfailover-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir + "/socket", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        if geteuid() == 0 {
            // chown runs as root: not through `run`, which drops to the postgres user.
            let chown = Process()
            chown.executableURL = URL(fileURLWithPath: "/bin/chown")
            chown.arguments = ["-R", "postgres:postgres", dir]
            try chown.launchSerially()
            _ = try await eventually(within: .seconds(30)) { !chown.isRunning }
        }
        try await run(
            [
                binaries + "/initdb", "-D", dir + "/primary", "-U", "blobtest", "--auth=trust", "-E", "UTF8",
                "--no-locale",
            ],
            log: dir + "/initdb.log")
        // Synchronous: a commit the primary acknowledged is on the standby too, as under
        // Patroni's synchronous_mode_strict.
        let primary = try await start(
            dir + "/primary", socket: dir + "/socket", log: dir + "/primary.log",
            settings: ["synchronous_standby_names=*", "wal_level=replica", "max_wal_senders=5"])
        var standby: Server?
        do {
            try await run(
                [
                    binaries + "/pg_basebackup", "-h", "127.0.0.1", "-p", "\(primary.port)", "-U", "blobtest", "-D",
                    dir + "/standby", "-R", "-X", "stream",
                ], log: dir + "/basebackup.log")
            standby = try await start(dir + "/standby", socket: dir + "/socket", log: dir + "/standby.log")
            let result = try await body(primary, standby!, dir)
            await stop(primary)
            if let standby { await stop(standby) }
            return result
        } catch {
            await stop(primary)
            if let standby { await stop(standby) }
            throw error
        }
    }

    /// What the writers saw.
    final class Progress: Sendable {
        let acknowledged = Mutex<[String: FileVersion]>([:])
        let failures = Mutex<[String]>([])
        let commits = Atomic<Int>(0)
        let stop = Atomic<Bool>(false)
    }

    static func sql(_ port: Int, _ text: String) async throws -> [PostgresRow] {
        let location = try PostgresLocation(url: "postgres://blobtest@127.0.0.1:\(port)/postgres", password: nil)
        let connection = try await PostgresConnection.connect(
            configuration: location.connectionConfiguration(location.hosts[0]), id: 9, logger: logger)
        defer { Task { try? await connection.close() } }
        var rows: [PostgresRow] = []
        for try await row in try await connection.query(PostgresQuery(unsafeSQL: text), logger: logger) {
            rows.append(row)
        }
        return rows
    }

    @Test(
        "kill -9 the primary under 4 writers, promote the standby: writes resume, none lost or made twice"
    )
    func primaryKilledUnderWrites() async throws {
        try await Self.withPrimaryAndStandby { primary, standby, _ in
            var location = try PostgresLocation(
                url: "postgres://blobtest@127.0.0.1:\(standby.port),127.0.0.1:\(primary.port)/postgres", password: nil)
            location.failoverWait = .seconds(60)
            // The standby is listed first: the master must find the primary itself.
            #expect(try await Self.sql(standby.port, "SELECT pg_is_in_recovery()").first?.decode(Bool.self) == true)
            try await PostgresDatabase.withDatabase(location, logger: Self.logger) { database in
                let store = MetadataStore(database: database)
                let progress = Progress()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for writer in 0..<4 {
                        group.addTask {
                            var i = 0
                            while !progress.stop.load(ordering: .relaxed) {
                                let path = "fo/w\(writer)-\(i)"
                                do {
                                    var manifest = try await MetadataTesting.upload(
                                        store, path, sizes: [100 + i], seed: UInt64(writer * 100_000 + i))
                                    manifest.requestID = "fo-\(writer)-\(i)"
                                    let file = try await store.commit(manifest)
                                    progress.acknowledged.withLock { $0[path] = file }
                                } catch {
                                    progress.failures.withLock { $0.append("\(path): \(error)") }
                                }
                                progress.commits.add(1, ordering: .relaxed)
                                i += 1
                            }
                        }
                    }
                    group.addTask {
                        defer { progress.stop.store(true, ordering: .relaxed) }
                        _ = try await eventually(within: .seconds(60)) {
                            progress.commits.load(ordering: .relaxed) >= 200
                        }
                        primary.kill(SIGKILL)
                        _ = try await eventually(within: .seconds(30)) { !primary.process.isRunning }
                        // What an HA manager does: promote the synchronous standby.
                        _ = try await Self.sql(standby.port, "SELECT pg_promote(true, 30)")
                        let before = progress.commits.load(ordering: .relaxed)
                        _ = try await eventually(within: .seconds(90)) {
                            progress.commits.load(ordering: .relaxed) >= before + 100
                        }
                    }
                    try await group.waitForAll()
                }
                let failed = progress.failures.withLock { $0 }
                #expect(failed.isEmpty, "\(failed.prefix(5))")
                #expect(
                    try await Self.sql(standby.port, "SELECT pg_is_in_recovery()").first?.decode(Bool.self) == false)
                // Every acknowledged commit is on the promoted standby, once.
                let files = progress.acknowledged.withLock { $0 }
                #expect(files.count >= 300, "writes resumed after the failover")
                for (path, file) in files {
                    let stored = try await store.stat(try BlobPath(path))
                    #expect(stored?.version == file.version && stored?.size == file.size, "\(path)")
                }
                let twice = try await database.rows(
                    "SELECT COUNT(*) FROM versions WHERE path LIKE 'fo/%' GROUP BY path HAVING COUNT(*) > 1", [])
                #expect(twice.isEmpty, "paths committed twice: \(twice.count)")
            }
        }
    }
}
