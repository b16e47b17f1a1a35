import BlobCore
import Foundation
import Logging

/// Deletes chunks no live file version references, and files on servers the master has no
/// record of, each only one grace period after it was first seen unreferenced.
///
/// A run: (1) reads every server's inventory, and any error aborts the run before anything is
/// deleted; (2) drops the manifests of versions superseded more than a grace ago; (3) marks the
/// chunks no manifest names (a mark keeps its first time); (4) collects the chunks marked more
/// than a grace ago, in one transaction that re-checks each is still unreferenced and was not
/// sent again since its mark, then deletes their files with a condition (`unless written after
/// the mark`) that a concurrent writer's touch defeats. Placement offers a marked chunk as
/// absent, so a writer that deduplicates against it sends it again and keeps it alive.
struct GarbageCollector: Sendable {
    let store: MetadataStore
    let membership: Membership
    let peer: ChunkServerPeer
    let logger: Logger
    /// Multipart uploads older than this are aborted: their parts become garbage.
    let staleUploadAge: Duration
    var record = OperationsRecord()

    func run(dryRun: Bool, grace: Duration) async throws -> GCReport {
        // Marks, acknowledgements and orphan notes are dated by the database clock, which every
        // master shares; the cutoff is too.
        let now = try await store.now()
        let graceMilliseconds = grace.wholeMilliseconds
        let cutoff = now - graceMilliseconds
        var reclaim: [String: ServerReclaim] = [:]

        // 1. Inventories first: a server we cannot read aborts the run.
        var orphans: [(id: ChunkID, server: ServerEndpoint, bytes: Int64)] = []
        for id in await membership.serverIDs {
            guard let endpoint = await membership.endpoint(id) else { continue }
            let comparison: InventoryComparison
            do {
                comparison = try await InventoryComparison.compare(server: endpoint, store: store, peer: peer)
            } catch {
                throw BlobError(
                    .unavailable, reason: "gc.inventory",
                    "garbage collection aborted, nothing deleted: cannot read the inventory of server \(id) "
                        + "(\(error)); bring it back, or take it out with `blobctl node remove \(id)`")
            }
            orphans += comparison.orphans.map { ($0.id, endpoint, $0.storedBytes) }
        }

        // Uploads left unfinished: their parts are tombstoned like deleted files.
        var abortedUploads: Int64 = 0
        let staleBefore = now - staleUploadAge.wholeMilliseconds
        for upload in try await store.uploads(prefix: "", createdBefore: staleBefore, limit: 10_000) {
            abortedUploads += 1
            if !dryRun { try await store.abortUpload(upload.id) }
        }

        // 2. and 3.
        let pruned = try await store.pruneVersions(supersededBefore: cutoff, dryRun: dryRun)
        // Marked at the moment of marking, not the run's start: reading inventories may take
        // long, and a mark dated earlier would shorten the grace a writer gets.
        if !dryRun { _ = try await store.markUnreferencedChunks() }

        // 4. Unreferenced chunks: due ones are collected, the rest reported as pending.
        var reclaimableChunks: Int64 = 0
        var reclaimableBytes: Int64 = 0
        var deletedChunks: Int64 = 0
        var deletedBytes: Int64 = 0
        var kept: Int64 = 0
        var after: ChunkID?
        while true {
            let page = try await store.unreferencedChunks(after: after, limit: 1000)
            guard let last = page.last else { break }
            after = last.0.id
            var due: [ChunkID] = []
            for (facts, marked) in page {
                let isDue = marked.map { $0 <= cutoff } ?? false
                for server in facts.servers {
                    var r = reclaim[server, default: ServerReclaim(server: server)]
                    if isDue {
                        r.chunks += 1
                        r.bytes += facts.storedByteCount
                    } else {
                        r.pendingChunks += 1
                        r.pendingBytes += facts.storedByteCount
                    }
                    reclaim[server] = r
                }
                if isDue {
                    due.append(facts.id)
                    reclaimableChunks += 1
                    reclaimableBytes += facts.storedByteCount * Int64(facts.servers.count)
                }
            }
            guard !dryRun, !due.isEmpty else { continue }
            for (facts, marked) in try await store.collect(due, markedBefore: cutoff) {
                for server in facts.servers {
                    guard let endpoint = await membership.endpoint(server) else { continue }
                    do {
                        if try await peer.delete(facts.id, at: endpoint, unlessWrittenAfter: marked) {
                            deletedChunks += 1
                            deletedBytes += facts.storedByteCount
                        }
                    } catch {
                        // Kept: written again since the mark (its writer records it anew), or
                        // the server failed; either way its file stays and a later run sees it.
                        kept += 1
                        logger.info(
                            "gc kept a chunk",
                            metadata: ["chunk.id": "\(facts.id.shortHex)", "error.message": "\(error)"])
                    }
                }
            }
        }

        // Orphans: adopted when the master knows the chunk, else deleted a grace after first seen.
        var adopt: [String: [ReplicaReport]] = [:]
        var unknown: [(id: ChunkID, server: ServerEndpoint, bytes: Int64)] = []
        for batch in stride(from: 0, to: orphans.count, by: 1000) {
            let slice = orphans[batch..<min(batch + 1000, orphans.count)]
            let known = Dictionary(
                uniqueKeysWithValues: try await store.chunkFacts(of: slice.map(\.id)).map { ($0.id, $0) })
            for orphan in slice {
                if let facts = known[orphan.id] {
                    adopt[orphan.server.id, default: []].append(facts.report)
                } else {
                    unknown.append(orphan)
                }
            }
        }
        if !dryRun {
            // The inventory and the facts were read at different moments: a copy deleted in
            // between (by a rebalance, fact first) looks unrecorded. Adopt only files still there.
            for (server, reports) in adopt.sorted(by: { $0.key < $1.key }) {
                guard let endpoint = await membership.endpoint(server) else { continue }
                var present: [ReplicaReport] = []
                for report in reports where (try? await peer.holds(report.chunkID, at: endpoint)) == true {
                    present.append(report)
                }
                try await store.recordReplicas(present, on: server)
            }
        }
        let firstSeen =
            dryRun
            ? unknown.map { _ in now }
            : try await store.noteOrphans(unknown.map { ($0.id, $0.server.id) })
        var forgotten: [(ChunkID, String)] = []
        for (orphan, seen) in zip(unknown, firstSeen) {
            var r = reclaim[orphan.server.id, default: ServerReclaim(server: orphan.server.id)]
            r.orphanChunks += 1
            r.orphanBytes += orphan.bytes
            reclaim[orphan.server.id] = r
            guard seen <= cutoff else { continue }
            reclaimableChunks += 1
            reclaimableBytes += orphan.bytes
            guard !dryRun else { continue }
            // Recorded since (a slow writer's acknowledgement)? Then it is no orphan.
            if let facts = try await store.chunkFacts(of: [orphan.id]).first, facts.servers.contains(orphan.server.id) {
                forgotten.append((orphan.id, orphan.server.id))
                continue
            }
            do {
                if try await peer.delete(orphan.id, at: orphan.server, unlessWrittenAfter: seen) {
                    deletedChunks += 1
                    deletedBytes += orphan.bytes
                }
                forgotten.append((orphan.id, orphan.server.id))
            } catch {
                kept += 1
            }
        }
        if !dryRun { try await store.forgetOrphans(forgotten) }
        let report = GCReport(
            dryRun: dryRun, graceSeconds: grace.components.seconds, prunedVersions: pruned,
            servers: reclaim.values.sorted { $0.server < $1.server }, reclaimableChunks: reclaimableChunks,
            reclaimableBytes: reclaimableBytes, deletedChunks: deletedChunks, deletedBytes: deletedBytes,
            keptChunks: kept,
            abortedUploads: abortedUploads)
        if !dryRun {
            logger.info(
                "gc finished", metadata: ["deleted.chunks": "\(deletedChunks)", "deleted.bytes": "\(deletedBytes)"])
        }
        record.collected(report, at: now)
        return report
    }

}
