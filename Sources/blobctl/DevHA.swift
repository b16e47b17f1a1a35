import AsyncHTTPClient
import Foundation

/// The highly available parts of `blobctl dev up --ha`, all on 127.0.0.1 and all from Debian's
/// packages: one etcd, three PostgreSQL nodes under Patroni in synchronous mode
/// (`synchronous_mode_strict`: a commit is acknowledged only once a standby has it), and
/// HAProxy in front of two gateways. Ports sit below `--port`: etcd on PORT-10 and PORT-9,
/// PostgreSQL on PORT-8…PORT-6, Patroni's REST API on PORT-5…PORT-3.
struct DevHA {
    let directory: String
    let port: Int
    static let nodes = 3

    var etcdClientPort: Int { port - 10 }
    var etcdPeerPort: Int { port - 9 }
    func postgresPort(_ node: Int) -> Int { port - 8 + node }
    func restPort(_ node: Int) -> Int { port - 5 + node }
    func nodeDirectory(_ node: Int) -> String { directory + "/pg-\(node + 1)" }
    var etcdDirectory: String { directory + "/etcd" }

    /// Every node: the masters write to whichever Patroni made the primary.
    var metadataURL: String {
        "postgres://postgres@"
            + (0..<Self.nodes).map { "127.0.0.1:\(postgresPort($0))" }.joined(separator: ",") + "/postgres"
    }

    static let packages = [
        ("/usr/bin/etcd", "etcd-server"), ("/usr/bin/patroni", "patroni"), ("/usr/sbin/haproxy", "haproxy"),
    ]

    /// Installs etcd, Patroni and HAProxy with apt when one is missing (as root, or with sudo),
    /// without letting their packages start system services.
    static func installPackages(log: String) throws {
        let missing = packages.filter { !FileManager.default.isExecutableFile(atPath: $0.0) }.map(\.1)
        guard !missing.isEmpty else { return }
        FileHandle.standardError.write(
            Data("dev up --ha: installing \(missing.joined(separator: " ")) with apt\n".utf8))
        let sudo = geteuid() == 0 ? "" : "sudo "
        let script = """
            set -e
            export DEBIAN_FRONTEND=noninteractive
            \(sudo)sh -c 'printf "#!/bin/sh\\nexit 101\\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
            trap '\(sudo)rm -f /usr/sbin/policy-rc.d' EXIT
            \(sudo)apt-get install -y -q \(missing.joined(separator: " ")) || { \(sudo)apt-get update -q && \
            \(sudo)apt-get install -y -q \(missing.joined(separator: " ")); }
            """
        do {
            try DevPostgres(directory: "/", port: 0).run(["/bin/sh", "-c", script], log: log, what: "apt-get install")
        } catch {
            throw CLIError(
                .failure,
                "dev up --ha needs \(missing.joined(separator: ", ")) and could not install them (see \(log)); "
                    + "install them with `sudo apt-get install \(missing.joined(separator: " "))`")
        }
    }

    /// `command` as the postgres user when we are root, with a clean environment (Patroni runs
    /// initdb and PostgreSQL, which refuse root; the postgres user cannot read root's home).
    func asPostgres(_ command: [String], home: String) -> [String] {
        let environment = [
            "/usr/bin/env", "-i", "PATH=/usr/bin:/bin", "HOME=\(home)", "LANG=C.UTF-8", "LC_ALL=C.UTF-8",
        ]
        return DevPostgres.asOwner(environment + command)
    }

    func etcdCommand() -> [String] {
        [
            "/usr/bin/etcd", "--name", "blob-dev", "--data-dir", etcdDirectory + "/data",
            "--listen-client-urls", "http://127.0.0.1:\(etcdClientPort)",
            "--advertise-client-urls", "http://127.0.0.1:\(etcdClientPort)",
            "--listen-peer-urls", "http://127.0.0.1:\(etcdPeerPort)",
            "--initial-advertise-peer-urls", "http://127.0.0.1:\(etcdPeerPort)",
            "--initial-cluster", "blob-dev=http://127.0.0.1:\(etcdPeerPort)", "--initial-cluster-state", "new",
            "--logger", "zap", "--log-outputs", "stderr",
        ]
    }

    /// Writes node `node`'s Patroni configuration (once; its data directory is kept across
    /// `down` and `up`) and returns its path.
    func preparePatroni(_ node: Int, log: String) throws -> String {
        let dir = nodeDirectory(node)
        let config = dir + "/patroni.yml"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let yaml = """
            scope: blob-dev
            namespace: /blobstore/
            name: pg-\(node + 1)
            log:
              level: WARNING
            restapi:
              listen: 127.0.0.1:\(restPort(node))
              connect_address: 127.0.0.1:\(restPort(node))
            etcd3:
              hosts: 127.0.0.1:\(etcdClientPort)
              protocol: http
            bootstrap:
              dcs:
                ttl: 10
                loop_wait: 1
                retry_timeout: 4
                maximum_lag_on_failover: 1048576
                synchronous_mode: true
                synchronous_mode_strict: true
                postgresql:
                  use_pg_rewind: true
                  use_slots: true
                  parameters:
                    hot_standby: "on"
                    wal_level: replica
                    wal_log_hints: "on"
                    max_wal_senders: 10
                    max_replication_slots: 10
                    max_connections: 200
                    wal_keep_size: 128MB
                    wal_retrieve_retry_interval: 500ms
              initdb:
                - encoding: UTF8
                - locale: C.UTF-8
                - data-checksums
            postgresql:
              listen: 127.0.0.1:\(postgresPort(node))
              connect_address: 127.0.0.1:\(postgresPort(node))
              data_dir: \(dir)/data
              bin_dir: \(try DevPostgres.binaries())
              pgpass: \(dir)/pgpass
              basebackup:
                - checkpoint: fast
              authentication:
                superuser:
                  username: postgres
                  password: blob-dev
                replication:
                  username: replicator
                  password: blob-dev
                rewind:
                  username: rewinder
                  password: blob-dev
              parameters:
                unix_socket_directories: '\(dir)'
              pg_hba:
                - local all all trust
                - host replication replicator 127.0.0.1/32 trust
                - host all all 127.0.0.1/32 trust
            watchdog:
              mode: off
            """
        try Data((yaml + "\n").utf8).write(to: URL(fileURLWithPath: config), options: .atomic)
        if DevPostgres.isRoot {
            let postgres = DevPostgres(directory: directory, port: 0)
            try postgres.run(["/bin/chown", "-R", "postgres:postgres", dir], log: log, what: "chown \(dir)")
            try postgres.run(["/bin/chmod", "0700", dir], log: log, what: "chmod \(dir)")
            // The postgres user must pass through the directories above (execute only).
            var parent = (dir as NSString).deletingLastPathComponent
            while parent != "/" && !parent.isEmpty {
                if let mode = (try? FileManager.default.attributesOfItem(atPath: parent))?[.posixPermissions] as? Int,
                    mode & 0o001 == 0
                {
                    try? FileManager.default.setAttributes([.posixPermissions: mode | 0o001], ofItemAtPath: parent)
                }
                parent = (parent as NSString).deletingLastPathComponent
            }
        }
        return config
    }

    func patroniCommand(_ node: Int, config: String) -> [String] {
        asPostgres(["/usr/bin/patroni", config], home: nodeDirectory(node))
    }

    /// HAProxy in front of the gateways: round robin, health-checked every 500 ms, and a
    /// request that found a gateway gone is sent to the other (`retry-on`, `redispatch`).
    static func haproxyConfig(front: Int, stats: Int, gateways: [String]) -> String {
        let servers = gateways.enumerated().map { "    server gateway-\($0.offset + 1) \($0.element) check" }
            .joined(separator: "\n")
        return """
            global
                maxconn 1024
                hard-stop-after 5s
            defaults
                mode http
                timeout connect 1s
                timeout client 120s
                timeout server 120s
                timeout check 1s
                retries 3
            frontend s3
                bind 127.0.0.1:\(front)
                default_backend gateways
            backend gateways
                balance roundrobin
                option redispatch 1
                retry-on all-retryable-errors
                http-request disable-l7-retry if METH_POST || METH_PUT
                option httpchk GET /readyz
                http-check expect status 200
                default-server inter 500ms fastinter 200ms downinter 500ms fall 2 rise 2
            \(servers)
            listen stats
                bind 127.0.0.1:\(stats)
                stats enable
                stats uri /

            """
    }

    /// Each node's name, role (`leader`, `sync_standby`, `replica`) and state, as Patroni's
    /// REST API (`GET /cluster`, from any node that answers) reports them.
    func members() async -> [(name: String, role: String, state: String, port: Int)]? {
        for node in 0..<Self.nodes {
            guard let body = await Self.get("http://127.0.0.1:\(restPort(node))/cluster"),
                let json = try? JSONSerialization.jsonObject(with: Data(body)) as? [String: Any],
                let members = json["members"] as? [[String: Any]]
            else { continue }
            return members.map {
                (
                    $0["name"] as? String ?? "?", $0["role"] as? String ?? "?", $0["state"] as? String ?? "?",
                    $0["port"] as? Int ?? 0
                )
            }
        }
        return nil
    }

    /// Waits (bounded) until Patroni reports one running leader and two running standbys, one
    /// of them synchronous.
    func waitUntilHealthy(patroni: [DevCluster.Member], timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        var last = "no Patroni node answered"
        while ContinuousClock.now < deadline {
            reapChildren()
            if let dead = patroni.first(where: { !DevCluster.isRunning($0) }) {
                let tail =
                    (try? String(contentsOfFile: dead.log, encoding: .utf8)).map { String($0.suffix(1500)) } ?? ""
                throw CLIError(.failure, "\(dead.name) (Patroni) exited; its log, \(dead.log), ends with:\n\(tail)")
            }
            // Each node's own answer (etcd may still hold a previous run's members): PostgreSQL
            // runs on all three, one is the primary and one the synchronous standby.
            var health = 0
            var primaries = 0
            var synchronous = 0
            for node in 0..<Self.nodes {
                let rest = "http://127.0.0.1:\(restPort(node))"
                if await Self.get(rest + "/health") != nil { health += 1 }
                if await Self.get(rest + "/primary") != nil { primaries += 1 }
                if await Self.get(rest + "/sync") != nil { synchronous += 1 }
            }
            if health == Self.nodes && primaries == 1 && synchronous == 1 { return }
            last =
                "\(health) of \(Self.nodes) nodes running PostgreSQL, \(primaries) primary, "
                + "\(synchronous) synchronous standby"
            try await Task.sleep(for: .milliseconds(200))
        }
        throw CLIError(
            .unavailable,
            "the PostgreSQL cluster under Patroni was not healthy within \(timeout) (\(last)); see the logs in "
                + directory)
    }

    /// The PID of node `node`'s postmaster when it runs (first line of `postmaster.pid`, and a
    /// command line that names its data directory).
    func postmaster(_ node: Int) -> pid_t? {
        let data = nodeDirectory(node) + "/data"
        guard let text = try? String(contentsOfFile: data + "/postmaster.pid", encoding: .utf8),
            let pid = text.split(separator: "\n").first.flatMap({ pid_t($0) }), pid > 0,
            let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
        else { return nil }
        let words = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return words.contains(data) ? pid : nil
    }

    static func get(_ url: String) async -> [UInt8]? {
        var request = HTTPClientRequest(url: url)
        request.method = .GET
        guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(2)),
            response.status == .ok,
            let body = try? await response.body.collect(upTo: 1 << 20)
        else { return nil }
        return Array(body.readableBytesView)
    }
}
