import ArgumentParser
import BlobClient
import BlobCore
import Foundation
#if canImport(Glibc)
    import Glibc
#endif

/// Parses durations such as 500ms, 30s, 10m, 1h, 2d (a bare number is seconds).
enum DurationParser {
    static func parse(_ text: String) -> Duration? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        let digits = t.prefix { $0.isNumber || $0 == "." }
        guard let value = Double(digits), value >= 0 else { return nil }
        let scale: Double
        switch t.dropFirst(digits.count) {
        case "ms": scale = 0.001
        case "", "s": scale = 1
        case "m": scale = 60
        case "h": scale = 3600
        case "d": scale = 86_400
        default: return nil
        }
        return .milliseconds(Int64(value * scale * 1000))
    }

    static func parseOption(_ text: String, name: String) throws -> Duration {
        guard let d = parse(text) else {
            throw ValidationError("\(name) \(text) is not a duration; use e.g. 500ms, 30s, 10m, 1h")
        }
        return d
    }
}

// MARK: node

struct NodeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "node", abstract: "Add, re-weight, drain, remove or pause repair of a chunk server.",
        subcommands: [
            NodeStatusCommand.self, NodeAddCommand.self, NodeSetWeightCommand.self, NodeDrainCommand.self,
            NodeRemoveCommand.self, NodeMaintenanceCommand.self,
        ])
}

/// Prints a node report as text or JSON.
func printNode(_ node: NodeReport, json: Bool, note: String? = nil) throws {
    if json { return try printJSON(node) }
    var lines: [String] = [
        "server \(node.id) at \(node.address): \(node.state.rawValue), weight \(node.weight)"
            + "\(node.inRing ? "" : ", not in the ring")",
        "holds \(node.chunks) chunks, \(HumanSize.format(node.storedBytes)); sole copy of \(node.soleCopies)",
    ]
    if let until = node.maintenanceUntilMilliseconds {
        lines.append(
            "maintenance until \(Date(timeIntervalSince1970: Double(until) / 1000)) (repair of its data paused)")
    }
    if let note { lines.append(note) }
    print(lines.joined(separator: "\n"))
}

struct NodeStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "What the master records on one server (chunks, bytes, sole copies).")
    @Argument(help: "Server id (see `blobctl cluster status`).") var id: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let node = try await cluster.withClient { try await $0.node(id) }
        try printNode(node, json: cluster.json)
    }
}

struct NodeAddCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "add",
        abstract: "Admit a registered server into the ring (a master started with --no-auto-admit).",
        discussion:
            "Start the server with `blobctl chunkserver --master URL`; "
            + "it registers and waits outside the ring until added. "
            + "Then run `blobctl rebalance` to give it its share of the existing data.")
    @Argument(help: "Server id.") var id: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let node = try await cluster.withClient { try await $0.admitNode(id) }
        try printNode(node, json: cluster.json, note: "run `blobctl rebalance --dry-run` to see what moves to it")
    }
}

struct NodeSetWeightCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-weight", abstract: "Change a server's ring weight (a new ring epoch); 0 drains it.")
    @Argument(help: "Server id.") var id: String
    @Argument(help: "New weight, e.g. 1, 2.5, 0.") var weight: Double
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let node = try await cluster.withClient { try await $0.setNodeWeight(id, weight) }
        try printNode(node, json: cluster.json, note: "run `blobctl rebalance` to move data to match")
    }
}

struct NodeDrainCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "drain", abstract: "Set weight 0 and move everything off the server (a rebalance).",
        discussion: "Watch it with `blobctl node status ID` (bytes left) or `blobctl rebalance status`; when it holds "
            + "nothing, `blobctl node remove ID`.")
    @Argument(help: "Server id.") var id: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let node = try await cluster.withClient { try await $0.drainNode(id) }
        try printNode(node, json: cluster.json, note: "draining: a rebalance is moving its data off")
    }
}

struct NodeRemoveCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "remove",
        abstract: "Take a server out of the cluster; refused while it holds the only copy of anything.")
    @Argument(help: "Server id.") var id: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        try await cluster.withClient { try await $0.removeNode(id) }
        if cluster.json { try printJSON(["removed": id]) } else { print("removed server \(id); stop its process") }
    }
}

struct NodeMaintenanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "maintenance", abstract: "Pause repair of a server's data for a planned outage (a reboot).")
    @Argument(help: "Server id.") var id: String
    @Option(name: .customLong("for"), help: "How long, e.g. 30m, 2h; 0 ends maintenance.") var duration: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let d = try DurationParser.parseOption(duration, name: "--for")
        let node = try await cluster.withClient { try await $0.setNodeMaintenance(id, seconds: d.components.seconds) }
        try printNode(node, json: cluster.json)
    }
}

// MARK: rebalance

struct RebalanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebalance", abstract: "Move replicas to where the ring wants them: plan, run, status, stop.",
        subcommands: [RebalanceRunCommand.self, RebalanceStatusCommand.self, RebalanceStopCommand.self],
        defaultSubcommand: RebalanceRunCommand.self)
}

func parseRate(_ text: String?) throws -> Int64? {
    guard let text else { return nil }
    guard let value = ByteCountParser.parse(text.replacingOccurrences(of: "/s", with: "")), value >= 0 else {
        throw CLIError(.usage, "--max-bytes-per-sec \(text) is not a size; use e.g. 50M or 1G")
    }
    return Int64(value)
}

struct RebalanceRunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Plan (--dry-run) or run a rebalance; it runs in the master, and this waits with a progress bar.",
        discussion: """
            The plan is the difference between where replicas are and where the current ring wants them: \
            bytes and chunks per (source -> target) pair, totals, time at the throttle, and the extra disk \
            each server needs before surplus copies are deleted. Copies go server to server; a surplus \
            replica is deleted only once R other copies are durable. Stop with `blobctl rebalance stop`; \
            running it again resumes. Interrupting this command leaves the rebalance running.
            """)
    @Flag(help: "Print the plan; move nothing.") var dryRun = false
    @Option(help: "Copy rate limit, e.g. 50M (bytes per second; default: unthrottled).") var maxBytesPerSec: String?
    @Flag(help: "Start it and return at once.") var detach = false
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let json = cluster.json
        let rate: Int64?
        do { rate = try parseRate(maxBytesPerSec) } catch { throw CLIError.exit(error, json: json) }
        if dryRun {
            let plan = try await cluster.withClient { try await $0.rebalancePlan(maxBytesPerSecond: rate) }
            return try printPlan(plan, json: json)
        }
        let status = try await cluster.withClient { client -> RebalanceStatus in
            let started = try await client.startRebalance(maxBytesPerSecond: rate)
            guard !detach else { return started }
            let bar = ProgressBar(label: "rebalance", total: started.plannedBytes, enabled: !json)
            var status = started
            while status.state == .running {
                try await Task.sleep(for: .milliseconds(250))
                status = try await client.rebalanceStatus()
                bar.update(status.movedBytes, total: status.plannedBytes)
            }
            bar.finish()
            return status
        }
        try printRebalanceStatus(status, json: json)
    }

    func printPlan(_ plan: RebalancePlan, json: Bool) throws {
        if json { return try printJSON(plan) }
        var out =
            "rebalance plan for ring epoch \(plan.ringEpoch) (R=\(plan.replicaCount)): \(plan.chunksChecked) chunks, "
            + "\(HumanSize.format(plan.storedBytes)) stored\n"
        if plan.transfers.isEmpty {
            out += "nothing to copy: placement matches the ring\n"
        } else {
            out +=
                columns(
                    [["SOURCE", "", "TARGET", "CHUNKS", "BYTES"]]
                        + plan.transfers.map {
                            [$0.source, "->", $0.target, "\($0.chunks)", HumanSize.format($0.bytes)]
                        }) + "\n"
        }
        out +=
            "copy \(plan.copyChunks) chunks, \(HumanSize.format(plan.copyBytes)); "
            + "then delete \(plan.deleteChunks) surplus replicas, \(HumanSize.format(plan.deleteBytes))\n"
        if let seconds = plan.expectedSeconds, let rate = plan.maxBytesPerSecond {
            out += String(format: "expected duration at %@: %.0f s\n", HumanSize.rate(Double(rate)), seconds)
        } else {
            out += "unthrottled: duration depends on the servers' disks (set --max-bytes-per-sec for an estimate)\n"
        }
        if plan.blockedChunks > 0 {
            out +=
                "\(plan.blockedChunks) chunks cannot move now (a target is not alive); "
                + "repair or a later run takes them\n"
        }
        if !plan.servers.isEmpty {
            out +=
                "peak extra disk per server:\n"
                + columns(
                    [["SERVER", "INCOMING", "DELETED", "PEAK EXTRA"]]
                        + plan.servers.map {
                            [
                                $0.server, HumanSize.format($0.incomingBytes), HumanSize.format($0.deletedBytes),
                                HumanSize.format($0.peakExtraBytes),
                            ]
                        })
        }
        print(out.hasSuffix("\n") ? String(out.dropLast()) : out)
    }
}

func printRebalanceStatus(_ status: RebalanceStatus, json: Bool) throws {
    if json { return try printJSON(status) }
    var line =
        "rebalance \(status.state.rawValue): moved \(status.movedChunks) copies, \(HumanSize.format(status.movedBytes))"
        + " of \(HumanSize.format(status.plannedBytes)) planned; deleted \(status.deletedChunks) surplus replicas"
    if let rate = status.maxBytesPerSecond { line += "; limit \(HumanSize.rate(Double(rate)))" }
    if status.blockedChunks > 0 { line += "\n\(status.blockedChunks) chunks blocked (a target is not alive)" }
    if status.errors > 0 { line += "\n\(status.errors) errors; last: \(status.lastError ?? "")" }
    print(line)
}

struct RebalanceStatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "status", abstract: "Progress of the current or last rebalance.")
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let status = try await cluster.withClient { try await $0.rebalanceStatus() }
        try printRebalanceStatus(status, json: cluster.json)
    }
}

struct RebalanceStopCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stop",
        abstract: "Stop a running rebalance; `blobctl rebalance` resumes it without redoing finished copies.")
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let status = try await cluster.withClient { try await $0.stopRebalance() }
        try printRebalanceStatus(status, json: cluster.json)
    }
}

// MARK: gc

struct GCCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc", abstract: "Delete chunks no live file version uses, after a grace period.",
        discussion: """
            A chunk is deleted only one grace period (the master's --gc-grace, default 1h) after a run first \
            found it unreferenced, and only if no writer sent it again meanwhile; a run reads every server's \
            inventory first, and any error there aborts it before anything is deleted. Files on a server \
            that the master has no record of are deleted one grace after they were first seen. Versions \
            replaced or deleted more than a grace ago stop holding their chunks.
            """)
    @Flag(help: "Report what would be freed; delete nothing.") var dryRun = false
    @Option(help: "A longer grace period for this run, e.g. 2h.") var grace: String?
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let json = cluster.json
        let graceSeconds: Int64?
        do {
            graceSeconds = try grace.map { try DurationParser.parseOption($0, name: "--grace").components.seconds }
        } catch {
            throw CLIError.exit(error, json: json)
        }
        let report = try await cluster.withClient {
            try await $0.collectGarbage(dryRun: dryRun, graceSeconds: graceSeconds)
        }
        if json { return try printJSON(report) }
        var out = dryRun ? "gc dry run (grace \(report.graceSeconds) s):\n" : "gc (grace \(report.graceSeconds) s):\n"
        if !report.servers.isEmpty {
            out +=
                columns(
                    [["SERVER", "RECLAIMABLE", "CHUNKS", "IN GRACE", "ORPHANS"]]
                        + report.servers.map {
                            [
                                $0.server, HumanSize.format($0.bytes), "\($0.chunks)",
                                HumanSize.format($0.pendingBytes),
                                "\($0.orphanChunks) (\(HumanSize.format($0.orphanBytes)))",
                            ]
                        }) + "\n"
        }
        out += "reclaimable now: \(report.reclaimableChunks) chunks, \(HumanSize.format(report.reclaimableBytes))"
        if !dryRun {
            out +=
                "\ndeleted \(report.deletedChunks) replicas, \(HumanSize.format(report.deletedBytes)); "
                + "kept \(report.keptChunks); \(report.prunedVersions) old versions dropped; "
                + "\(report.abortedUploads) stale multipart uploads aborted"
        }
        print(out)
    }
}

// MARK: fsck

struct FsckCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "fsck", abstract: "Check the master's facts against every server; exit 6 while data is at risk.",
        discussion: """
            Reports missing (recorded but not on the server), under-replicated, lost, misplaced, orphaned \
            and corrupt (quarantined, not yet replaced) chunks, and the files they belong to. --repair \
            forgets missing replicas, adopts files the master lost track of, re-replicates what is below R, \
            then checks again.
            """)
    @Flag(help: "Fix what can be fixed, then check again.") var repair = false
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let report = try await cluster.withClient { try await $0.fsck(repair: repair) }
        if cluster.json {
            try printJSON(report)
        } else {
            var out = "checked \(report.chunksChecked) chunks on \(report.serversChecked) servers\n"
            out += columns([
                ["lost", "\(report.lost)"], ["missing", "\(report.missing)"],
                ["under-replicated", "\(report.underReplicated)"],
                ["corrupt", "\(report.corrupt)"], ["orphaned", "\(report.orphaned)"],
                ["misplaced", "\(report.misplaced)"],
            ])
            if !report.unreachableServers.isEmpty {
                out += "\nunreachable (not verified): \(report.unreachableServers.joined(separator: ", "))"
            }
            for p in report.problems.prefix(20) where p.kind != .misplaced {
                out +=
                    "\n  \(p.kind.rawValue) \(p.chunk.prefix(16))…" + (p.server.map { " on \($0)" } ?? "")
                    + (p.files.isEmpty ? "" : " (" + p.files.joined(separator: ", ") + ")")
            }
            if repair {
                out +=
                    "\nrepair: \(report.repairedChunks) chunks re-replicated, "
                    + "\(report.forgottenReplicas) missing replicas forgotten, \(report.adoptedReplicas) files adopted"
            }
            out += report.dataAtRisk ? "\nDATA AT RISK: run `blobctl fsck --repair`" : "\nno data at risk"
            if report.misplaced > 0 { out += "; \(report.misplaced) chunks misplaced: `blobctl rebalance` fixes that" }
            print(out)
        }
        if report.dataAtRisk { throw ExitCode(ExitStatus.dataAtRisk.rawValue) }
    }
}
