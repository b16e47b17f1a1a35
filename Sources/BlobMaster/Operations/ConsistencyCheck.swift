import BlobCore
import Foundation
import Logging

/// fsck: the master's facts against every server's inventory and quarantine, and every chunk's
/// copies against R and the ring.
struct ConsistencyCheck: Sendable {
    let store: MetadataStore
    let membership: Membership
    let peer: ChunkServerPeer
    let repairer: Repairer
    let logger: Logger
    var record = OperationsRecord()
    static let maxProblems = 1000

    func run(repair: Bool) async throws -> FsckReport {
        var report = try await check()
        record.checked(report, at: try await store.now())
        guard repair else { return report }
        // Forget replicas whose files are gone, adopt files the master lost track of, then copy
        // whatever is below R; then look again, so the answer says what is still wrong.
        let (forgotten, adopted, damaged) = try await fix()
        try await repairer.noteDamaged(damaged)
        let repaired = try await repairer.pass(fullScan: true)
        report = try await check()
        report.repairedChunks = Int64(repaired)
        report.forgottenReplicas = forgotten
        report.adoptedReplicas = adopted
        record.checked(report, at: try await store.now())
        return report
    }

    struct ServerFindings {
        var missing: [ChunkID: [String]] = [:]
        var orphans: [(ChunkID, String)] = []
        var corrupt: [(ChunkID, String)] = []
        var unreachable: [String] = []
        var checked = 0
    }

    func inspectServers() async -> ServerFindings {
        var findings = ServerFindings()
        for id in await membership.serverIDs {
            guard let endpoint = await membership.endpoint(id) else { continue }
            do {
                let comparison = try await InventoryComparison.compare(server: endpoint, store: store, peer: peer)
                for chunk in comparison.missing { findings.missing[chunk, default: []].append(id) }
                findings.orphans += comparison.orphans.map { ($0.id, id) }
                // A quarantined copy counts as corrupt until a good one is back on that server.
                let quarantined = try await peer.quarantine(of: endpoint)
                let held = Set(try await store.chunkFacts(of: quarantined).filter { $0.servers.contains(id) }.map(\.id))
                for chunk in quarantined where !held.contains(chunk) {
                    findings.corrupt.append((chunk, id))
                }
                findings.checked += 1
            } catch {
                findings.unreachable.append(id)
            }
        }
        return findings
    }

    func check() async throws -> FsckReport {
        guard let ring = await membership.ring else {
            throw BlobError(.insufficientReplicas, reason: "ring.missing", "no ring yet; start more chunk servers")
        }
        let inspected = await inspectServers()
        let gone = Set(await membership.serversNeedingRepair())
        // Counts are exact; lists keep the first `maxProblems` of each kind, so memory stays
        // bounded whatever the store holds.
        var lostCount: Int64 = 0
        var underCount: Int64 = 0
        var misplacedCount: Int64 = 0
        var lost: [ChunkID] = []
        var under: [(ChunkID, Int)] = []
        var misplaced: [ChunkID] = []
        var short: Set<ChunkID> = []
        let quarantinedIDs = Set(inspected.corrupt.map(\.0))
        var checked: Int64 = 0
        var after: ChunkID?
        while true {
            let page = try await store.chunkFacts(after: after, limit: 10_000)
            guard let last = page.last else { break }
            after = last.id
            var noCopy: [ChunkID] = []
            for f in page {
                checked += 1
                let missingOn = Set(inspected.missing[f.id] ?? [])
                let live = f.servers.count { !gone.contains($0) && !missingOn.contains($0) }
                if live == 0 {
                    noCopy.append(f.id)
                } else if live < ring.replicaCount {
                    underCount += 1
                    if under.count < Self.maxProblems { under.append((f.id, live)) }
                    if quarantinedIDs.contains(f.id) { short.insert(f.id) }
                }
                if Set(f.servers) != Set(ring.replicaIDs(for: f.id)) {
                    misplacedCount += 1
                    if misplaced.count < Self.maxProblems { misplaced.append(f.id) }
                }
            }
            // A chunk with no copy matters only when some version still uses it.
            let references = try await store.referenceCounts(of: noCopy)
            for id in noCopy where (references[id] ?? 0) > 0 {
                lostCount += 1
                if lost.count < Self.maxProblems { lost.append(id) }
                if quarantinedIDs.contains(id) { short.insert(id) }
            }
        }
        // A quarantined copy matters while its chunk is below R (not yet replaced elsewhere).
        let corrupt = inspected.corrupt.filter { short.contains($0.0) }
        let missingCount = Int64(inspected.missing.values.reduce(0) { $0 + $1.count })
        let listed =
            lost + Array(inspected.missing.keys.prefix(Self.maxProblems)) + corrupt.prefix(Self.maxProblems).map(\.0)
            + under.map(\.0)
        let files = try await store.files(using: Array(Set(listed)), limit: 5)
        var problems: [ChunkProblem] = []
        for id in lost {
            problems.append(
                ChunkProblem(kind: .lost, chunk: id.hex, server: nil, liveCopies: 0, files: files[id] ?? []))
        }
        for (id, servers) in inspected.missing.sorted(by: { $0.key.hex < $1.key.hex }).prefix(Self.maxProblems) {
            for s in servers {
                problems.append(
                    ChunkProblem(kind: .missing, chunk: id.hex, server: s, liveCopies: nil, files: files[id] ?? []))
            }
        }
        for (id, s) in corrupt.prefix(Self.maxProblems) {
            problems.append(
                ChunkProblem(kind: .corrupt, chunk: id.hex, server: s, liveCopies: nil, files: files[id] ?? []))
        }
        for (id, live) in under {
            problems.append(
                ChunkProblem(
                    kind: .underReplicated, chunk: id.hex, server: nil, liveCopies: live, files: files[id] ?? []))
        }
        for (id, s) in inspected.orphans.prefix(Self.maxProblems) {
            problems.append(ChunkProblem(kind: .orphaned, chunk: id.hex, server: s, liveCopies: nil, files: []))
        }
        for id in misplaced {
            problems.append(ChunkProblem(kind: .misplaced, chunk: id.hex, server: nil, liveCopies: nil, files: []))
        }
        return FsckReport(
            chunksChecked: checked, serversChecked: inspected.checked, unreachableServers: inspected.unreachable,
            missing: missingCount, underReplicated: underCount, lost: lostCount,
            misplaced: misplacedCount, orphaned: Int64(inspected.orphans.count), corrupt: Int64(corrupt.count),
            problems: Array(problems.prefix(Self.maxProblems)),
            filesAtRisk: Array(Set(lost.flatMap { files[$0] ?? [] })).sorted(),
            dataAtRisk: lostCount > 0 || underCount > 0 || missingCount > 0 || !corrupt.isEmpty
                || !inspected.unreachable.isEmpty,
            repairedChunks: 0, forgottenReplicas: 0, adoptedReplicas: 0)
    }

    /// Returns (facts forgotten, replicas adopted, chunks to re-replicate).
    func fix() async throws -> (Int64, Int64, [ChunkID]) {
        let findings = await inspectServers()
        var forgotten: Int64 = 0
        var damaged: [ChunkID] = []
        for (id, servers) in findings.missing {
            for s in servers { try await store.removeReplicas([id], on: s) }
            forgotten += Int64(servers.count)
            damaged.append(id)
        }
        var adopted: Int64 = 0
        for batch in stride(from: 0, to: findings.orphans.count, by: 1000) {
            let slice = findings.orphans[batch..<min(batch + 1000, findings.orphans.count)]
            let known = Dictionary(
                uniqueKeysWithValues: try await store.chunkFacts(of: slice.map(\.0)).map { ($0.id, $0) })
            for (id, server) in slice {
                // Only a file still there: it may have been deleted since the inventory was read.
                guard let facts = known[id], let endpoint = await membership.endpoint(server),
                    (try? await peer.holds(id, at: endpoint)) == true
                else { continue }
                try await store.recordReplicas([facts.report], on: server)
                adopted += 1
            }
        }
        damaged += findings.corrupt.map(\.0)
        return (forgotten, adopted, damaged)
    }
}
