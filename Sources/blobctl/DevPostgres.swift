import Foundation

/// The PostgreSQL that `blobctl dev up --masters N` runs in the cluster directory, for several
/// masters to share: Debian's `initdb` makes it once (`DIR/postgres/data`, kept across
/// `down` and `up`), and the server runs as a member of the cluster, on 127.0.0.1, stopped by
/// its PID. PostgreSQL refuses to run as root: under root, it runs as the `postgres` user.
struct DevPostgres {
    let directory: String
    let port: Int

    var dataDirectory: String { directory + "/data" }
    var socketDirectory: String { directory + "/socket" }
    /// The database URL the masters use (trust authentication, loopback only).
    var url: String { "postgres://blob@127.0.0.1:\(port)/postgres" }

    /// The newest installed PostgreSQL's programs (`/usr/lib/postgresql/VERSION/bin`).
    static func binaries() throws -> String {
        let root = "/usr/lib/postgresql"
        let versions = ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).compactMap(Int.init)
        guard let newest = versions.max(), FileManager.default.isExecutableFile(atPath: "\(root)/\(newest)/bin/initdb")
        else {
            throw CLIError(
                .failure,
                "several masters share a PostgreSQL, and none is installed: `sudo apt-get install postgresql` "
                    + "(its service need not run; dev up starts its own)")
        }
        return "\(root)/\(newest)/bin"
    }

    static var isRoot: Bool { geteuid() == 0 }

    /// `command` as the `postgres` user when we are root (initdb and postgres refuse root).
    static func asOwner(_ command: [String]) -> [String] {
        isRoot
            ? ["/usr/bin/setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] + command : command
    }

    /// Makes the database directory once.
    func initialize(log: String) throws {
        let bin = try Self.binaries()
        if FileManager.default.fileExists(atPath: dataDirectory + "/PG_VERSION") { return }
        try FileManager.default.createDirectory(atPath: socketDirectory, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: dataDirectory, withIntermediateDirectories: true)
        if Self.isRoot {
            try run(
                ["/bin/chown", "-R", "postgres:postgres", directory], log: log, what: "chown the database directory")
            // The postgres user must pass through the cluster directory (execute only: it lists
            // nothing, and the secret files stay mode 0600).
            let parent = (directory as NSString).deletingLastPathComponent
            if let mode = (try? FileManager.default.attributesOfItem(atPath: parent))?[.posixPermissions] as? Int {
                try? FileManager.default.setAttributes([.posixPermissions: mode | 0o001], ofItemAtPath: parent)
            }
            guard (try? run(Self.asOwner(["/usr/bin/test", "-w", dataDirectory]), log: log, what: "")) != nil else {
                throw CLIError(
                    .failure,
                    "PostgreSQL runs as the postgres user, which cannot reach \(dataDirectory) (a directory "
                        + "above it is closed to other users, like /root); pass --dir under /tmp or /var/tmp, "
                        + "or run dev up as a user other than root")
            }
        }
        try run(
            Self.asOwner([
                bin + "/initdb", "-D", dataDirectory, "-U", "blob", "--auth=trust", "-E", "UTF8", "--no-locale",
            ]), log: log, what: "initdb")
    }

    /// The server's command line (run detached by `dev up`).
    func serverCommand() throws -> [String] {
        Self.asOwner([
            try Self.binaries() + "/postgres", "-D", dataDirectory, "-c", "listen_addresses=127.0.0.1", "-p", "\(port)",
            "-k", socketDirectory, "-c", "max_connections=200",
        ])
    }

    /// Waits (bounded) until the server accepts connections (`pg_isready`).
    func waitUntilAccepting(pid: pid_t, log: String, timeout: Duration = .seconds(60)) async throws {
        let bin = try Self.binaries()
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            reapChildren()
            guard kill(pid, 0) == 0 else {
                let tail = (try? String(contentsOfFile: log, encoding: .utf8)).map { String($0.suffix(1500)) } ?? ""
                throw CLIError(
                    .failure,
                    "PostgreSQL exited at start; is port \(port) taken? Pick another --port. Its log, \(log), "
                        + "ends with:\n\(tail)")
            }
            if (try? run([bin + "/pg_isready", "-q", "-h", "127.0.0.1", "-p", "\(port)"], log: log, what: "")) != nil {
                return
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CLIError(.unavailable, "PostgreSQL did not accept connections within \(timeout); see \(log)")
    }

    /// Runs a program to its end (bounded: 120 s), output appended to `log`.
    @discardableResult
    func run(_ arguments: [String], log: String, what: String) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }
        handle.seekToEndOfFile()
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            throw CLIError(.failure, "\(what) did not finish within 120 s; see \(log)")
        }
        guard process.terminationStatus == 0 else {
            throw CLIError(.failure, "\(what) failed (exit \(process.terminationStatus)); see \(log)")
        }
        return process.terminationStatus
    }
}
