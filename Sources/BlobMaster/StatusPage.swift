import BlobCore
import BlobServerSupport
import Foundation
import Synchronization

/// The cluster status as `GET /v1/cluster/status` answers it: servers, repair, masters, the
/// leader's lease and the metadata nodes.
struct ClusterStatusReader: Sendable {
    let membership: Membership
    let repairer: Repairer
    let store: MetadataStore
    let election: LeaderElection

    func read() async throws -> ClusterStatus {
        var status = await membership.status()
        status.repair = await repairer.activity
        let (masters, now) = try await store.masters()
        let lease = try await store.lease()
        let fresh = 3 * election.policy.renewInterval.wholeMilliseconds
        status.masters = masters.map { m in
            MasterStatusEntry(
                id: m.id, address: m.address, reachable: now - m.seenMilliseconds <= fresh,
                isLeader: lease.map { $0.holder == m.id && $0.expiresMilliseconds > now } ?? false,
                millisecondsSinceSeen: max(0, now - m.seenMilliseconds), startedAtMilliseconds: m.startedMilliseconds)
        }
        status.leader = lease.map {
            LeaderStatus(
                id: $0.holder, address: $0.address, term: $0.term,
                leaseAgeMilliseconds: max(0, now - $0.renewedMilliseconds),
                expiresInMilliseconds: $0.expiresMilliseconds - now)
        }
        status.answeredBy = election.holder
        status.metadataNodes = await store.metadataNodes()
        return status
    }
}

/// A rate from samples of a running total taken at each render, over the last minute.
final class RateWindow: Sendable {
    private let samples = Mutex<[(at: ContinuousClock.Instant, value: Int64)]>([])

    /// Adds a sample; returns the rate per second over the window, once it spans a second.
    func sample(_ value: Int64) -> Double? {
        let now = ContinuousClock.now
        return samples.withLock { samples in
            samples.append((now, value))
            samples.removeAll { now - $0.at > .seconds(60) }
            guard let first = samples.first, case let span = (now - first.at).inSeconds, span >= 1 else { return nil }
            return Double(value - first.value) / span
        }
    }
}

/// The master's status page (`GET /status` on its metrics listener): plain server-rendered
/// HTML and CSS that refreshes itself every 5 s. It has the metrics listener's access rule:
/// whoever can reach that address (loopback by default) can read it; it changes nothing.
struct StatusPage: Sendable {
    let reader: ClusterStatusReader
    let rebalancer: Rebalancer
    let operations: OperationsRecord
    let errors: RecentErrors
    let repairRate = RateWindow()
    let rebalanceRate = RateWindow()

    func render() async -> String {
        let status: ClusterStatus
        do {
            status = try await reader.read()
        } catch {
            return Self.page(
                body: "<p class=\"problem\">The metadata database does not answer: \(Self.escape("\(error)"))</p>")
        }
        let rebalance = await rebalancer.status
        let record = operations.current
        var body = summary(status)
        body += servers(status)
        body += repair(status.repair)
        body += rebalanceSection(rebalance)
        body += garbageCollection(record)
        body += masters(status)
        body += recentErrors()
        return Self.page(body: body)
    }

    func summary(_ status: ClusterStatus) -> String {
        let alive = status.servers.count { $0.state == .alive }
        let ring = status.ringEpoch.map { "ring epoch \($0)" } ?? "no ring yet"
        let leader = status.leader.map { "leader term \($0.term) at \(Self.escape($0.address))" } ?? "no leader"
        return """
            <p class="summary"><span id="ring-epoch">\(ring)</span> · \(status.replicaCount) replicas · \
            <span id="servers-alive">\(alive) of \(status.servers.count) chunk servers alive</span> · \(leader) · \
            page from master \(Self.escape(status.answeredBy ?? "")) at \
            \(UTCTime.iso8601(milliseconds: Self.nowMilliseconds))</p>

            """
    }

    func servers(_ status: ClusterStatus) -> String {
        var rows = ""
        for server in status.servers.sorted(by: { ($0.zone, $0.id) < ($1.zone, $1.id) }) {
            let used = server.usage?.usedBytes ?? 0
            let free = server.usage?.freeDiskBytes ?? 0
            let total = max(used + free, 1)
            let percent = Double(used) / Double(total) * 100
            let heard = server.millisecondsSinceHeartbeat.map {
                "\(HumanSize.fixed(Double($0) / 1000, digits: 1)) s ago"
            }
            rows += """
                <tr class="state-\(server.state.rawValue)" data-server="\(Self.escape(server.id))">\
                <td class="id">\(Self.escape(server.id))</td><td>\(Self.escape(server.address))</td>\
                <td>\(Self.escape(server.zone))</td>\
                <td class="state"><span class="badge">\(server.state.rawValue)</span></td>\
                <td>\(server.inRing ? "yes" : "no")</td><td class="num">\(server.usage?.chunkCount ?? 0)</td>\
                <td><div class="bar" title="\(HumanSize.fixed(percent, digits: 1))% used">\
                <span style="width: \(HumanSize.fixed(percent, digits: 1))%"></span></div>\
                \(HumanSize.format(used)) used · \(HumanSize.format(free)) free</td>\
                <td>\(heard ?? "never")</td></tr>

                """
        }
        return """
            <section id="servers"><h2>Chunk servers</h2>
            <table><thead><tr><th>server</th><th>address</th><th>zone</th><th>state</th><th>in ring</th>\
            <th>chunks</th><th>disk</th><th>last heartbeat</th></tr></thead><tbody>
            \(rows)</tbody></table></section>

            """
    }

    func repair(_ activity: RepairActivity?) -> String {
        let activity = activity ?? RepairActivity(passes: 0, copiedChunks: 0, copiedBytes: 0, failures: 0)
        let rate = repairRate.sample(activity.copiedBytes)
        let queued = activity.queuedChunks ?? 0
        var eta = "—"
        if queued > 0, let rate, rate > 0, activity.copiedChunks > 0 {
            let bytesPerChunk = Double(activity.copiedBytes) / Double(activity.copiedChunks)
            eta = Self.duration(Double(queued) * bytesPerChunk / rate)
        }
        return """
            <section id="repair"><h2>Repair</h2><p>\
            <span id="under-replicated">\(activity.underReplicatedChunks ?? 0) under-replicated chunks</span> \
            found by the last pass · \(queued) still queued · \(activity.copiedChunks) chunks \
            (\(HumanSize.format(activity.copiedBytes))) copied since this master started · \
            \(rate.map { HumanSize.rate($0) } ?? "—") · ETA \(eta) · \(activity.failures) failed copies · \
            passes run: \(activity.passes)</p></section>

            """
    }

    func rebalanceSection(_ status: RebalanceStatus) -> String {
        let rate = rebalanceRate.sample(status.movedBytes)
        let remaining = max(status.plannedBytes - status.movedBytes, 0)
        let percent = status.plannedBytes > 0 ? Double(status.movedBytes) / Double(status.plannedBytes) * 100 : 0
        var eta = "—"
        if status.state == .running, let rate, rate > 0 { eta = Self.duration(Double(remaining) / rate) }
        return """
            <section id="rebalance"><h2>Rebalance</h2><p>\(status.state.rawValue) · \
            \(HumanSize.format(status.movedBytes)) of \(HumanSize.format(status.plannedBytes)) moved \
            <span class="bar inline"><span style="width: \(HumanSize.fixed(percent, digits: 1))%"></span></span> · \
            \(rate.map { HumanSize.rate($0) } ?? "—") · ETA \(eta) · \(status.blockedChunks) blocked · \
            \(status.errors) errors\(status.lastError.map { " (last: \(Self.escape($0)))" } ?? "")</p></section>

            """
    }

    func garbageCollection(_ record: OperationsRecord.State) -> String {
        let last = record.gcLastRun.map { UTCTime.iso8601(milliseconds: $0) } ?? "not since this master started"
        var text = """
            <section id="gc"><h2>Garbage collection and fsck</h2><p>last collection: \(last) · \
            \(HumanSize.format(record.gcFreedBytes)) in \(record.gcDeletedChunks) chunks freed since this master started
            """
        if let fsck = record.lastFsck, let at = record.fsckLastRun {
            text += """
                <br>last fsck: \(UTCTime.iso8601(milliseconds: at)) · \(fsck.underReplicated) under-replicated · \
                \(fsck.misplaced) misplaced · \(fsck.lost) lost · \(fsck.corrupt) corrupt
                """
        }
        return text + "</p></section>\n"
    }

    func masters(_ status: ClusterStatus) -> String {
        var rows = ""
        for master in status.masters ?? [] {
            rows += """
                <tr><td>\(Self.escape(master.id))</td><td>\(Self.escape(master.address))</td>\
                <td>\(master.isLeader ? "leader" : "follower")</td>\
                <td>\(master.reachable ? "reachable" : "unreachable")</td>\
                <td>\(HumanSize.fixed(Double(master.millisecondsSinceSeen) / 1000, digits: 1)) s ago</td></tr>

                """
        }
        var nodes = ""
        for node in status.metadataNodes ?? [] {
            nodes += """
                <tr><td>\(Self.escape(node.endpoint))</td><td>\(Self.escape(node.role))</td>\
                <td>\(node.bytesBehind.map { HumanSize.format($0) + " behind" } ?? "")</td></tr>

                """
        }
        return """
            <section id="masters"><h2>Masters</h2>
            <table><thead><tr><th>master</th><th>address</th><th>role</th><th>reachable</th><th>seen</th></tr></thead>
            <tbody>\(rows)</tbody></table>\
            \(nodes.isEmpty ? "" : "<h3>Metadata database</h3><table><tbody>\(nodes)</tbody></table>")</section>

            """
    }

    func recentErrors() -> String {
        let entries = errors.all.prefix(20)
        guard !entries.isEmpty else { return "<section id=\"errors\"><h2>Recent errors</h2><p>none</p></section>\n" }
        var items = ""
        for entry in entries {
            let time = UTCTime.iso8601(milliseconds: entry.milliseconds)
            items += "<li><time>\(time)</time> \(Self.escape(entry.message))</li>\n"
        }
        return "<section id=\"errors\"><h2>Recent errors</h2><ul>\n\(items)</ul></section>\n"
    }

    static var nowMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// `3 min 20 s`, `2 h 5 min`.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "—" }
        let s = Int(seconds.rounded())
        if s < 60 { return "\(s) s" }
        if s < 3600 { return "\(s / 60) min \(s % 60) s" }
        return "\(s / 3600) h \((s % 3600) / 60) min"
    }

    static func escape(_ text: String) -> String { Markup.escape(text) }

    static func page(body: String) -> String {
        """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="5">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Blobstore cluster status</title>
        <style>
        body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1.5rem 2rem; color: #1d2430; }
        h1 { font-size: 1.4rem; margin: 0 0 .3rem; } h2 { font-size: 1.05rem; margin: 1.4rem 0 .4rem; }
        table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .3rem .6rem; }
        thead th { border-bottom: 2px solid #d0d6e0; font-weight: 600; } tbody tr { border-bottom: 1px solid #eceff4; }
        td.num { text-align: right; } td.id { font-family: ui-monospace, monospace; font-size: 12px; }
        .summary { color: #4a5568; } .problem { color: #b42318; font-weight: 600; }
        .badge { padding: .1rem .5rem; border-radius: .6rem; font-size: 12px; font-weight: 600; }
        .state-alive .badge { background: #dcfae6; color: #067647; }
        .state-suspect .badge { background: #fef0c7; color: #93370d; }
        .state-down .badge, .state-unknown .badge { background: #fee4e2; color: #b42318; }
        .state-down { background: #fff6f5; }
        .bar { display: block; width: 12rem; height: .6rem; background: #eceff4; border-radius: .3rem;
          overflow: hidden; }
        .bar.inline { display: inline-block; vertical-align: middle; width: 8rem; }
        .bar span { display: block; height: 100%; background: #4f7cff; }
        ul { padding-left: 1.2rem; } time { color: #667085; font-family: ui-monospace, monospace; font-size: 12px; }
        </style></head>
        <body><h1>Blobstore cluster status</h1>
        \(body)</body></html>

        """
    }
}
