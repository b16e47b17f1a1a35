import ArgumentParser
import BlobClient
import BlobCore
import BlobTransport
import AsyncHTTPClient
import Foundation

/// `blobctl dev up|down|status|env`: a local cluster of real processes on 127.0.0.1.
struct DevCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dev",
        abstract: "Run a local cluster: a master and chunk servers as background processes on 127.0.0.1.",
        subcommands: [DevUpCommand.self, DevDownCommand.self, DevStatusCommand.self, DevEnvCommand.self]
    )
}

struct DevDirectoryOption: ParsableArguments {
    @Option(
        help:
            "Cluster directory: data, logs, secret and PIDs (default: $BLOBCTL_DEV_DIR or ~/.local/share/blobctl/dev).")
    var dir: String?

    var path: String {
        let environment = ProcessInfo.processInfo.environment
        let chosen =
            dir ?? environment["BLOBCTL_DEV_DIR"].flatMap { $0.isEmpty ? nil : $0 }
            ?? ((environment["XDG_DATA_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.local/share")
                + "/blobctl/dev")
        return URL(fileURLWithPath: chosen).standardizedFileURL.path
    }
}

/// What `dev up` started, saved as `DIR/cluster.json`.
struct DevCluster: Codable {
    struct Member: Codable {
        var name: String
        var role: String
        var pid: Int32
        var address: String
        var dataDirectory: String
        var log: String
        /// Its metrics listener (`/metrics`, `/healthz`, `/readyz`), HOST:PORT, once known.
        var metricsAddress: String?
    }

    var masterURL: String
    var secretFile: String
    var replicas: Int
    var members: [Member]
    /// The HTTP and S3 gateway, and the S3 key `up` created for it.
    var gatewayURL: String?
    var accessKeyID: String?
    var secretAccessKey: String?
    /// With `--ha`: the `--port` the database's ports sit below (``DevHA``).
    var haPort: Int?
    /// With `--tls`: the CA every process's certificate is signed by (``DevCertificates``).
    var tlsCA: String?

    /// The cluster's address for a client of this process.
    func address() -> ClusterAddress {
        let secret = RequestSigner.secret(
            fromFileText: (try? String(contentsOfFile: secretFile, encoding: .utf8)) ?? "")
        return ClusterAddress(masterURL: masterURL, secret: secret, trustRootsFile: tlsCA)
    }

    static func file(_ dir: String) -> String { dir + "/cluster.json" }

    static func load(_ dir: String) -> DevCluster? {
        guard let data = FileManager.default.contents(atPath: file(dir)) else { return nil }
        return try? JSONDecoder().decode(DevCluster.self, from: data)
    }

    func save(_ dir: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: Self.file(dir)), options: .atomic)
        // It holds the S3 secret key: owner only, like the cluster secret.
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: Self.file(dir))
    }

    /// Whether `member` is still the process `dev up` started: alive, and its command line
    /// names its own data directory (a recycled PID does not).
    static func isRunning(_ member: Member) -> Bool {
        guard kill(member.pid, 0) == 0 || errno == EPERM else { return false }
        guard let data = FileManager.default.contents(atPath: "/proc/\(member.pid)/cmdline") else { return false }
        let words = data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        // PostgreSQL, etcd, Patroni and HAProxy name their data directory or configuration, not a
        // blobctl role.
        return words.contains(member.dataDirectory)
            && (infrastructure.contains(member.role) || words.contains(member.role))
    }

    /// The processes that are not blobctl's own.
    static let infrastructure: Set<String> = ["postgres", "patroni", "etcd", "haproxy"]

    /// SIGTERM to every running member (chunk servers first, so none is left heartbeating to a
    /// master that is gone), a bounded wait, then SIGKILL to any left; the database last, once
    /// the masters are gone: PostgreSQL with a fast shutdown (SIGINT), Patroni with SIGTERM (it
    /// stops its PostgreSQL; a postmaster left behind is stopped by the PID in its data
    /// directory), then etcd. Returns how many were running.
    func stop(timeout: Duration = .seconds(20)) async -> Int {
        let running = members.filter(Self.isRunning)
        let order = ["chunkserver", "haproxy", "gateway", "master"]
        let servers = running.filter { order.contains($0.role) }
            .sorted { (order.firstIndex(of: $0.role) ?? 9) < (order.firstIndex(of: $1.role) ?? 9) }
        for member in servers { kill(member.pid, SIGTERM) }
        await Self.waitUntilStopped(servers, timeout: timeout)
        let database = running.filter { $0.role == "postgres" }
        for member in database { kill(member.pid, SIGINT) }
        await Self.waitUntilStopped(database, timeout: timeout)
        let patroni = running.filter { $0.role == "patroni" }
        for member in patroni { kill(member.pid, SIGTERM) }
        await Self.waitUntilStopped(patroni, timeout: .seconds(40))
        for member in members where member.role == "patroni" {
            let node = (member.dataDirectory as NSString).deletingLastPathComponent
            let data = node + "/data"
            guard let text = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8),
                let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) }), pid > 0,
                let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline"),
                cmdline.split(separator: 0).contains(where: { String(decoding: $0, as: UTF8.self) == data })
            else { continue }
            kill(pid, SIGINT)
            let deadline = ContinuousClock.now + timeout
            while kill(pid, 0) == 0 && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(50)) }
            if kill(pid, 0) == 0 { kill(pid, SIGKILL) }
        }
        let etcd = running.filter { $0.role == "etcd" }
        for member in etcd { kill(member.pid, SIGTERM) }
        await Self.waitUntilStopped(etcd, timeout: timeout)
        return running.count
    }

    private static func waitUntilStopped(_ members: [Member], timeout: Duration) async {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline, members.contains(where: isRunning) {
            reapChildren()
            try? await Task.sleep(for: .milliseconds(50))
        }
        for member in members where isRunning(member) { kill(member.pid, SIGKILL) }
        reapChildren()
    }
}

/// Collects exited children of this process (a `dev up` that failed half-way).
func reapChildren() {
    var status: Int32 = 0
    while waitpid(-1, &status, WNOHANG) > 0 {}
}

struct DevUpCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "up",
        abstract: "Start (or reuse) a local cluster and make it the default for blobctl commands.",
        discussion: """
            Starts a master (embedded SQLite) and N chunk servers as background processes on \
            127.0.0.1 (master on --port, servers on the ports after it), each with its own data \
            directory under DIR, a generated cluster secret, logs in DIR/logs, and PIDs in \
            DIR/cluster.json; waits until every server is registered and in the ring; writes the \
            client config so plain `blobctl put` and `get` use this cluster. Data survives \
            `dev down` and the next `dev up`. Running `up` again while it runs reuses it.
            """
    )

    @OptionGroup var directory: DevDirectoryOption

    @Option(help: "Chunk servers to start.")
    var servers: Int = 3

    @Option(help: "Replicas per chunk.")
    var replicas: Int = 3

    @Option(help: "Master port; further masters, then chunk servers and the gateway take the ports after it.")
    var port: Int = 9400

    @Option(
        help: """
            Masters to start. One keeps its metadata in SQLite; several share a PostgreSQL that dev up \
            starts in DIR/postgres (Debian's postgresql package; on the port before --port) and elect a leader.
            """)
    var masters: Int = 1

    @Flag(
        help: """
            The whole highly available topology: etcd, three PostgreSQL nodes under Patroni (synchronous, \
            on the ports below --port), three masters, the chunk servers, and two gateways behind HAProxy \
            (Debian's etcd-server, patroni and haproxy, installed with apt when missing).
            """)
    var ha = false

    @Flag(
        inversion: .prefixedNo,
        help: "With --ha: the masters read stat, list and read plans from the PostgreSQL standbys too.")
    var standbyReads = true

    @Option(help: "Log level of every server (default: info; the gateways log warnings only).")
    var serverLogLevel: String?

    @Flag(
        inversion: .prefixedNo,
        help: "Servers count, time and log every request; off only to measure what that costs.")
    var observeRequests = true

    @Flag(
        help: """
            Serve HTTPS everywhere: a local CA (made once, in DIR/tls) signs a certificate per process, \
            every process verifies the others against it, and the client config trusts it.
            """)
    var tls = false

    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// Masters to start: three with --ha unless --masters says otherwise.
    var masterCount: Int { ha && masters == 1 ? 3 : masters }
    var gatewayCount: Int { ha ? 2 : 1 }

    func run() async throws {
        guard replicas >= 1, servers >= replicas, servers <= 64 else {
            throw CLIError.exit(
                CLIError(
                    .usage,
                    "need 1 <= --replicas <= --servers <= 64 (each replica on its own server), "
                        + "got \(replicas) replicas on \(servers) servers"), json: json)
        }
        guard (1...9).contains(masters) else {
            throw CLIError.exit(CLIError(.usage, "--masters takes 1 to 9, got \(masters)"), json: json)
        }
        guard !(ha && tls) else {
            throw CLIError.exit(
                CLIError(
                    .usage,
                    "--tls does not combine with --ha yet (HAProxy's checks and PostgreSQL speak plain HTTP and TCP "
                        + "there); run one or the other"), json: json)
        }
        guard !ha || masterCount >= 2 else {
            throw CLIError.exit(CLIError(.usage, "--ha runs several masters; drop --masters 1"), json: json)
        }
        let above = masterCount + servers + gatewayCount + (ha ? 2 : 0)
        let below = ha ? 10 : 1
        guard port >= 1024 + below, port + above <= 65535 else {
            throw CLIError.exit(
                CLIError(
                    .usage,
                    "--port must leave room for \(masterCount) masters, \(servers) chunk servers and the gateways on "
                        + "the ports after it, and the database's \(below) before it "
                        + "(\(1024 + below)...\(65535 - above))"
                ),
                json: json)
        }
        let dir = directory.path
        do {
            let cluster = try await up(dir)
            try ClientConfigFile(
                master: cluster.masterURL, secretFile: cluster.secretFile, devDirectory: dir, tlsCA: cluster.tlsCA
            ).save()
            if json {
                try printJSON(cluster)
            } else {
                print(
                    """
                    local cluster up: \(masterCount == 1 ? "master" : "masters") \(cluster.masterURL), \
                    \(cluster.members.count { $0.role == "chunkserver" }) chunk servers, \
                    \(cluster.replicas) replicas; data and logs in \(dir)
                    try:   blobctl put FILE some/path   then   blobctl get some/path COPY
                    """)
                if let gateway = cluster.gatewayURL, let id = cluster.accessKeyID, let secret = cluster.secretAccessKey
                {
                    print(
                        """
                        S3 and HTTP gateway: \(gateway)   (access key id \(id), secret access key \(secret))
                          \(cluster.tlsCA.map { "AWS_CA_BUNDLE=\($0) " } ?? "")AWS_ACCESS_KEY_ID=\(id) \
                        AWS_SECRET_ACCESS_KEY='\(secret)' aws --endpoint-url \(gateway) s3 ls
                        """)
                }
                let scrapeConfig = DevObservability.prometheusConfigFile(dir)
                print("metrics: a Prometheus scrape configuration for it is in \(scrapeConfig)")
                print("stop:  blobctl dev down\(directory.dir == nil ? "" : " --dir \(dir)")")
            }
        } catch {
            throw CLIError.exit(error, json: json)
        }
    }

    func up(_ dir: String) async throws -> DevCluster {
        if let existing = DevCluster.load(dir) {
            // A running cluster is reused only if it speaks the scheme asked for.
            if existing.members.allSatisfy(DevCluster.isRunning), (existing.tlsCA != nil) == tls,
                (try? await waitUntilReady(existing, timeout: .seconds(5))) != nil
            {
                if !json {
                    FileHandle.standardError.write(Data("reusing the cluster already running in \(dir)\n".utf8))
                }
                return existing
            }
            _ = await existing.stop()
        }
        try FileManager.default.createDirectory(atPath: dir + "/logs", withIntermediateDirectories: true)
        let secretFile = dir + "/secret"
        if !FileManager.default.fileExists(atPath: secretFile) {
            let secret = Data((0..<32).map { _ in UInt8.random(in: 0...255) }).base64EncodedString()
            guard
                FileManager.default.createFile(
                    atPath: secretFile, contents: Data((secret + "\n").utf8),
                    attributes: [.posixPermissions: 0o600])
            else {
                throw CLIError(.failure, "cannot write \(secretFile); check that \(dir) is writable")
            }
        }
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        let masterAddresses = (0..<masterCount).map { "127.0.0.1:\(port + $0)" }
        let certificates = tls ? DevCertificates(directory: dir + "/tls") : nil
        let scheme = tls ? "https://" : "http://"
        let masterURL = masterAddresses.map { scheme + $0 }.joined(separator: ",")
        let firstServerPort = port + masterCount
        var cluster = DevCluster(masterURL: masterURL, secretFile: secretFile, replicas: replicas, members: [])
        if let certificates {
            _ = try certificates.authority()
            cluster.tlsCA = certificates.caFile
        }
        // The S3 key made by an earlier `up` is still in the master's database: keep using it.
        if let previous = DevCluster.load(dir) {
            cluster.accessKeyID = previous.accessKeyID
            cluster.secretAccessKey = previous.secretAccessKey
        }
        func start(name: String, role: String, address: String, arguments: [String]) throws {
            let data = dir + "/" + name
            let log = dir + "/logs/\(name).log"
            // The gateway keeps no data: its directory is where uploads are spooled.
            let dataFlag = role == "gateway" ? "--spool-dir" : "--data"
            // Each server's metrics listener takes a free loopback port and writes it down.
            var observability = ["--metrics-address-file", data + "/metrics-address"]
            if !observeRequests { observability.append("--no-observe-requests") }
            if let serverLogLevel { observability += ["--log-level", serverLogLevel] }
            var tlsArguments: [String] = []
            if let certificates {
                try certificates.issue(name)
                tlsArguments = [
                    "--tls-cert", certificates.certificateFile(name), "--tls-key", certificates.keyFile(name),
                    "--tls-ca", certificates.caFile,
                ]
            }
            let pid = try spawnDetached(
                [executable, role, dataFlag, data, "--listen", address, "--secret-file", secretFile]
                    + arguments + tlsArguments + observability, log: log)
            cluster.members.append(
                .init(name: name, role: role, pid: pid, address: address, dataDirectory: data, log: log))
            try cluster.save(dir)
        }
        do {
            var metadata: [String] = []
            if ha {
                // Every node is also named a standby to read from: the primary among them is left out.
                let url = try await startDatabaseUnderPatroni(dir, &cluster)
                metadata = ["--metadata", url] + (standbyReads ? ["--metadata-replicas", url] : [])
            } else if masterCount > 1 {
                let postgres = DevPostgres(directory: dir + "/postgres", port: port - 1)
                let log = dir + "/logs/postgres.log"
                try postgres.initialize(log: log)
                let pid = try spawnDetached(try postgres.serverCommand(), log: log)
                cluster.members.append(
                    .init(
                        name: "postgres", role: "postgres", pid: pid, address: "127.0.0.1:\(postgres.port)",
                        dataDirectory: postgres.dataDirectory, log: log))
                try cluster.save(dir)
                try await postgres.waitUntilAccepting(pid: pid, log: log)
                metadata = ["--metadata", postgres.url]
            }
            for (i, address) in masterAddresses.enumerated() {
                try start(
                    name: masterCount == 1 ? "master" : "master-\(i + 1)", role: "master", address: address,
                    arguments: [
                        "--replicas", "\(replicas)", "--heartbeat-interval", "1000", "--suspect-after", "3000",
                        "--down-after", "60000",
                    ] + metadata)
            }
            for i in 1...servers {
                try start(
                    name: "cs-\(i)", role: "chunkserver", address: "127.0.0.1:\(firstServerPort + i - 1)",
                    arguments: ["--zone", "zone-\(i)", "--master", masterURL, "--heartbeat-interval", "1000"])
            }
            var gateways: [String] = []
            for i in 0..<gatewayCount {
                let name = gatewayCount == 1 ? "gateway" : "gateway-\(i + 1)"
                let gateway = "127.0.0.1:\(firstServerPort + servers + i)"
                try FileManager.default.createDirectory(atPath: dir + "/" + name, withIntermediateDirectories: true)
                try start(
                    name: name, role: "gateway", address: gateway,
                    arguments: ["--master", masterURL, "--log-level", "warning"])
                gateways.append(gateway)
            }
            cluster.gatewayURL = scheme + gateways[0]
            if ha {
                // HAProxy in front of the gateways: the cluster's S3 and HTTP address.
                let front = firstServerPort + servers + gatewayCount
                let config = dir + "/ha/haproxy.cfg"
                try Data(DevHA.haproxyConfig(front: front, stats: front + 1, gateways: gateways).utf8).write(
                    to: URL(fileURLWithPath: config), options: .atomic)
                let log = dir + "/logs/haproxy.log"
                let pid = try spawnDetached(["/usr/sbin/haproxy", "-db", "-f", config], log: log)
                cluster.members.append(
                    .init(
                        name: "haproxy", role: "haproxy", pid: pid, address: "127.0.0.1:\(front)",
                        dataDirectory: config,
                        log: log))
                cluster.gatewayURL = "http://127.0.0.1:\(front)"
            }
            try cluster.save(dir)
            try await waitUntilReady(cluster, timeout: .seconds(60))
            try await createKey(&cluster)
            try await DevObservability.recordMetricsAddresses(&cluster)
            try cluster.save(dir)
            try DevObservability.writePrometheusConfig(cluster, to: DevObservability.prometheusConfigFile(dir))
        } catch {
            _ = await cluster.stop()
            throw error
        }
        return cluster
    }

    /// etcd, then three PostgreSQL nodes under Patroni, until Patroni reports a leader and a
    /// synchronous standby; returns the masters' `--metadata` (every node).
    func startDatabaseUnderPatroni(_ dir: String, _ cluster: inout DevCluster) async throws -> String {
        try DevHA.installPackages(log: dir + "/logs/apt.log")
        let ha = DevHA(directory: dir + "/ha", port: port)
        try FileManager.default.createDirectory(atPath: ha.etcdDirectory, withIntermediateDirectories: true)
        let etcdLog = dir + "/logs/etcd.log"
        let etcd = try spawnDetached(ha.etcdCommand(), log: etcdLog)
        cluster.members.append(
            .init(
                name: "etcd", role: "etcd", pid: etcd, address: "127.0.0.1:\(ha.etcdClientPort)",
                dataDirectory: ha.etcdDirectory + "/data", log: etcdLog))
        try cluster.save(dir)
        let etcdUp = ContinuousClock.now + .seconds(30)
        while await DevHA.get("http://127.0.0.1:\(ha.etcdClientPort)/health") == nil {
            reapChildren()
            guard ContinuousClock.now < etcdUp, DevCluster.isRunning(cluster.members.last!) else {
                throw CLIError(
                    .failure,
                    "etcd did not answer on 127.0.0.1:\(ha.etcdClientPort) within 30 s; is the port taken? "
                        + "Pick another --port. See \(etcdLog)")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        var patroni: [DevCluster.Member] = []
        for node in 0..<DevHA.nodes {
            let log = dir + "/logs/pg-\(node + 1).log"
            let config = try ha.preparePatroni(node, log: log)
            let pid = try spawnDetached(ha.patroniCommand(node, config: config), log: log)
            let member = DevCluster.Member(
                name: "pg-\(node + 1)", role: "patroni", pid: pid, address: "127.0.0.1:\(ha.postgresPort(node))",
                dataDirectory: config, log: log)
            patroni.append(member)
            cluster.members.append(member)
            try cluster.save(dir)
        }
        try await ha.waitUntilHealthy(patroni: patroni, timeout: .seconds(180))
        cluster.haPort = port
        try cluster.save(dir)
        return ha.metadataURL
    }

    /// An S3 key for the local cluster, made once and kept in cluster.json (mode 0600, like the secret).
    func createKey(_ cluster: inout DevCluster) async throws {
        guard cluster.accessKeyID == nil else { return }
        let client = try ClusterClient(address: cluster.address())
        let key: AccessKey
        do {
            key = try await client.createAccessKey(name: "dev")
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
        cluster.accessKeyID = key.accessKeyID
        cluster.secretAccessKey = key.secretAccessKey
    }

    /// Waits until the master answers and every chunk server is alive and in the ring.
    func waitUntilReady(_ cluster: DevCluster, timeout: Duration) async throws {
        let client = try ClusterClient(address: cluster.address())
        defer { Task { try? await client.shutdown() } }
        let deadline = ContinuousClock.now + timeout
        var last = "the master did not answer"
        while ContinuousClock.now < deadline {
            reapChildren()
            if let dead = cluster.members.first(where: { !DevCluster.isRunning($0) }) {
                let tail =
                    (try? String(contentsOfFile: dead.log, encoding: .utf8)).map { String($0.suffix(1500)) } ?? ""
                throw CLIError(
                    .failure,
                    "\(dead.name) (\(dead.role) on \(dead.address)) exited; is the port taken? "
                        + "Try --port with a free one. Its log, \(dead.log), ends with:\n\(tail)")
            }
            if let status = try? await client.clusterStatus() {
                let ready = status.servers.filter { $0.state == .alive && $0.inRing }.count
                let wanted = cluster.members.count { $0.role == "chunkserver" }
                if status.ringEpoch != nil && ready >= wanted {
                    guard let gateway = cluster.gatewayURL else { return }
                    if await Self.answers(gateway, transport: client.transport) { return }
                    last = "the gateway at \(gateway) did not answer"
                } else {
                    last = "\(ready) of \(wanted) chunk servers alive and in the ring"
                }
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw CLIError(
            .unavailable,
            "the local cluster did not come up within \(timeout) (\(last)); see the logs in "
                + "\(cluster.members.first.map { URL(fileURLWithPath: $0.log).deletingLastPathComponent().path } ?? "")"
        )
    }
}

extension DevUpCommand {
    /// Whether anything answers HTTP at `url` (any status: the gateway refuses unsigned requests).
    static func answers(_ url: String, transport: ClusterTransport) async -> Bool {
        let client = HTTPClient(eventLoopGroupProvider: .singleton, configuration: transport.configure(.init()))
        defer { Task { try? await client.shutdown() } }
        var request = HTTPClientRequest(url: url + "/")
        request.method = .GET
        return (try? await client.execute(request, timeout: .seconds(2))) != nil
    }
}

/// Starts a process in its own session (so a terminal's Ctrl-C or hang-up does not reach it),
/// standard input from /dev/null, output appended to `log`. Returns its PID.
func spawnDetached(_ arguments: [String], log: String) throws -> pid_t {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    // Nothing else of ours leaks in: a parent watching a pipe for our exit (Foundation's Process
    // does) would otherwise wait for the daemons too.
    let inherited = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []).compactMap {
        Int32($0)
    }
    for fd in inherited where fd > 2 && fcntl(fd, F_GETFD) >= 0 {
        posix_spawn_file_actions_addclose(&actions, fd)
    }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }
    // POSIX_SPAWN_SETSID (glibc, 0x80): a new session, detached from our terminal. With
    // POSIX_SPAWN_SETSIGMASK (0x08) and POSIX_SPAWN_SETSIGDEF (0x04): no signal blocked and the
    // stop signals at their defaults, whatever this process did with them (a child that is not
    // ours, such as Patroni, keeps a blocked SIGTERM across exec and would never stop).
    var none = sigset_t()
    sigemptyset(&none)
    posix_spawnattr_setsigmask(&attributes, &none)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGPIPE] { sigaddset(&defaults, signal) }
    posix_spawnattr_setsigdefault(&attributes, &defaults)
    posix_spawnattr_setflags(&attributes, Int16(0x80 | 0x08 | 0x04))
    let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let rc = posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ)
    guard rc == 0 else {
        throw CLIError(.failure, "cannot start \(arguments[0]): \(String(cString: strerror(rc)))")
    }
    return pid
}
