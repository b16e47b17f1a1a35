import ArgumentParser
import BlobClient
import BlobCore
import Foundation

/// `blobctl dev down | status | env`: stopping and inspecting the cluster `dev up` started.
struct DevDownCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "down", abstract: "Stop the local cluster's processes (by the PIDs `dev up` saved); data stays.")

    @OptionGroup var directory: DevDirectoryOption

    @Flag(help: "Also delete the cluster directory: data, logs and secret.")
    var purge = false

    func run() async throws {
        let dir = directory.path
        guard let cluster = DevCluster.load(dir) else {
            print("no local cluster in \(dir)")
            return
        }
        let stopped = await cluster.stop()
        try? FileManager.default.removeItem(atPath: DevCluster.file(dir))
        if purge { try? FileManager.default.removeItem(atPath: dir) }
        if let config = ClientConfigFile.load(), config.devDirectory == dir {
            try? FileManager.default.removeItem(atPath: ClientConfigFile.path)
        }
        print("stopped \(stopped) processes of the local cluster in \(dir)\(purge ? " and deleted its data" : "")")
    }
}

struct DevStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Show the local cluster's processes and whether they run.")

    @OptionGroup var directory: DevDirectoryOption

    @Flag(help: "Print JSON instead of text.")
    var json = false

    struct Output: Encodable {
        struct Process: Encodable {
            var name: String
            var role: String
            var pid: Int32
            var address: String
            var running: Bool
            var log: String
            /// What it does now: `leader` for the master holding the lease; for a PostgreSQL node
            /// under Patroni, `primary`, `synchronous standby` or `standby`.
            var duty: String?
        }
        var directory: String
        var masterURL: String?
        var processes: [Process]
    }

    func run() async throws {
        let dir = directory.path
        guard let cluster = DevCluster.load(dir) else {
            if json {
                try printJSON(Output(directory: dir, masterURL: nil, processes: []))
            } else {
                print("no local cluster in \(dir); start one with `blobctl dev up`")
            }
            throw ExitCode(ExitStatus.notFound.rawValue)
        }
        let duties = await Self.duties(cluster, dir)
        let processes = cluster.members.map {
            Output.Process(
                name: $0.name, role: $0.role, pid: $0.pid, address: $0.address, running: DevCluster.isRunning($0),
                log: $0.log, duty: duties[$0.address])
        }
        if json {
            try printJSON(Output(directory: dir, masterURL: cluster.masterURL, processes: processes))
        } else {
            print("local cluster in \(dir), master \(cluster.masterURL)")
            var rows = [["NAME", "ROLE", "PID", "ADDRESS", "STATE", "DUTY"]]
            for p in processes {
                rows.append([p.name, p.role, "\(p.pid)", p.address, p.running ? "running" : "stopped", p.duty ?? ""])
            }
            print(columns(rows))
        }
        if processes.contains(where: { !$0.running }) { throw ExitCode(ExitStatus.unavailable.rawValue) }
    }
}

extension DevStatusCommand {
    /// By address: the leading master, and each Patroni node's role.
    static func duties(_ cluster: DevCluster, _ dir: String) async -> [String: String] {
        var duties: [String: String] = [:]
        if let haPort = cluster.haPort, let members = await DevHA(directory: dir + "/ha", port: haPort).members() {
            let names = ["leader": "primary", "sync_standby": "synchronous standby", "replica": "standby"]
            for member in members {
                duties["127.0.0.1:\(member.port)"] = (names[member.role] ?? member.role) + " (\(member.state))"
            }
        }
        if let client = try? ClusterClient(address: cluster.address()) {
            if let leader = (try? await client.clusterStatus())?.leader {
                duties[leader.address] = "leader (term \(leader.term))"
            }
            try? await client.shutdown()
        }
        return duties
    }
}

struct DevEnvCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "env",
        abstract: "Print shell exports that point blobctl at the local cluster: eval \"$(blobctl dev env)\".")

    @OptionGroup var directory: DevDirectoryOption

    func run() async throws {
        let dir = directory.path
        guard let cluster = DevCluster.load(dir) else {
            FileHandle.standardError.write(
                Data("blobctl: error: no local cluster in \(dir); start one with `blobctl dev up`\n".utf8))
            throw ExitCode(ExitStatus.notFound.rawValue)
        }
        func quoted(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        print("export BLOBCTL_MASTER=\(quoted(cluster.masterURL))")
        print("export BLOBCTL_SECRET_FILE=\(quoted(cluster.secretFile))")
        if let ca = cluster.tlsCA {
            print("export BLOBCTL_TLS_CA=\(quoted(ca))")
            // The aws CLI, boto3, curl and Python verify the gateway against it too.
            print("export AWS_CA_BUNDLE=\(quoted(ca))")
        }
    }
}
