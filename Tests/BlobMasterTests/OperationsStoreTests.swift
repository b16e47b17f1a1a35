import BlobCore
@testable import BlobMaster
import Foundation
import Testing

@Suite("garbage collection and rebalance decisions")
struct OperationsStoreTests {
    @Test(
        "a version superseded before the cutoff lets go of its chunks; marks, re-sends and new references keep chunks",
        arguments: Backend.allCases)
    func markAndCollect(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let a = try await MetadataTesting.upload(store, "logs/a.log", sizes: [100, 200], seed: 1)
            clock.set(10)
            _ = try await store.commit(a)
            let b = try await MetadataTesting.upload(store, "logs/b.log", sizes: [300], seed: 2)
            _ = try await store.commit(b)
            clock.set(100)
            _ = try await store.delete(a.path)

            // Superseded at 100: not before a cutoff of 50, but before 100.
            #expect(try await store.pruneVersions(supersededBefore: 50, dryRun: false) == 0)
            #expect(try await store.pruneVersions(supersededBefore: 100, dryRun: true) == 1)
            #expect(try await store.unreferencedChunks(after: nil, limit: 10).isEmpty, "a dry run drops nothing")
            #expect(try await store.pruneVersions(supersededBefore: 100, dryRun: false) == 1)
            #expect(try await store.manifest(of: a.path, version: 1) == nil, "a pruned version is no longer readable")
            #expect(try await store.stat(b.path) != nil)

            let ids = a.chunks.map(\.chunkID)
            clock.set(200)
            #expect(try await store.markUnreferencedChunks() == 2)
            #expect(try await store.garbageCandidates(among: ids + b.chunks.map(\.chunkID)) == Set(ids))
            // A second mark keeps the first time.
            clock.set(500)
            _ = try await store.markUnreferencedChunks()
            #expect(try await store.unreferencedChunks(after: nil, limit: 10).allSatisfy { $0.markedAt == 200 })

            // Not yet a grace since the mark.
            #expect(try await store.collect(ids, markedBefore: 199).isEmpty)
            // A writer sent the first chunk again after the mark: kept, and no longer a candidate.
            clock.set(300)
            try await store.recordReplicas(
                [ReplicaReport(chunkID: ids[0], plainByteCount: 100, storedByteCount: 50)], on: "cs-2")
            let collected = try await store.collect(ids, markedBefore: 250)
            #expect(collected.map(\.0.id) == [ids[1]])
            #expect(collected.first?.0.servers == ["cs-1"] && collected.first?.markedAt == 200)
            #expect(try await store.chunkFacts(of: ids).map(\.id) == [ids[0]])
            #expect(try await store.garbageCandidates(among: ids).isEmpty)

            // A chunk referenced again between mark and collection is kept.
            let c = try await MetadataTesting.upload(store, "logs/c.log", sizes: [700], seed: 3)
            clock.set(600)
            _ = try await store.commit(c)
            _ = try await store.delete(c.path)
            _ = try await store.pruneVersions(supersededBefore: 600, dryRun: false)
            clock.set(700)
            _ = try await store.markUnreferencedChunks()
            let again = ManifestCommit(
                path: try BlobPath("logs/c2.log"), size: 700, contentType: "text/plain",
                sha256: String(repeating: "cd", count: 32), chunks: c.chunks)
            clock.set(800)
            _ = try await store.commit(again)
            #expect(try await store.collect(c.chunks.map(\.chunkID), markedBefore: 10_000).isEmpty)
            #expect(try await store.checkIntegrity())
        }
    }

    @Test("holdings count sole copies; orphan notes keep their first time", arguments: Backend.allCases)
    func holdingsAndOrphans(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let a = try await MetadataTesting.upload(store, "x", sizes: [10, 20], seed: 4, server: "cs-1")
            try await store.recordReplicas(
                [ReplicaReport(chunkID: a.chunks[0].chunkID, plainByteCount: 10, storedByteCount: 5)],
                on: "cs-2")
            let h = try await store.holdings(of: "cs-1")
            #expect(h.chunks == 2 && h.bytes == 15 && h.soleCopies == 1)
            #expect(try await store.replicas(onServer: "cs-2", after: nil, limit: 10).map(\.0) == [a.chunks[0].chunkID])
            let id = a.chunks[1].chunkID
            clock.set(5)
            #expect(try await store.noteOrphans([(id, "cs-3")]) == [5])
            clock.set(9)
            #expect(try await store.noteOrphans([(id, "cs-3")]) == [5])
            try await store.forgetOrphans([(id, "cs-3")])
            #expect(try await store.noteOrphans([(id, "cs-3")]) == [9])
        }
    }

    static func ring(_ ids: [String]) throws -> PlacementRing {
        try PlacementRing.build(
            members: ids.map { RingMember(id: $0, zone: $0, weight: 1) }, replicaCount: 3, partitionPower: 6)
    }

    @Test(
        "a chunk move copies to ring servers lacking it, from a surplus holder first; blocked if a target is not alive"
    )
    func chunkMovePlan() throws {
        let ring = try Self.ring(["a", "b", "c", "d"])
        let id = ChunkID(hashing: [1, 2, 3])
        let wanted = ring.replicaIDs(for: id)
        let other = try #require(["a", "b", "c", "d"].first { !wanted.contains($0) })
        let alive: Set = ["a", "b", "c", "d"]

        let settled = ChunkFacts(id: id, plainByteCount: 10, storedByteCount: 8, servers: wanted.sorted())
        #expect(ChunkMove.plan(settled, ring: ring, alive: alive).isEmpty)

        // Held by the unwanted server and two wanted ones: one copy, from the unwanted one.
        let held = [other, wanted[0], wanted[1]].sorted()
        let move = ChunkMove.plan(
            ChunkFacts(id: id, plainByteCount: 10, storedByteCount: 8, servers: held), ring: ring, alive: alive)
        #expect(move.copies == [ChunkMove.Copy(source: other, target: wanted[2])])
        #expect(move.surplus == [other] && !move.blocked)

        // The missing target is down: nothing to copy, blocked, the surplus stays listed.
        let blocked = ChunkMove.plan(
            ChunkFacts(id: id, plainByteCount: 10, storedByteCount: 8, servers: held), ring: ring,
            alive: alive.subtracting([wanted[2]]))
        #expect(blocked.copies.isEmpty && blocked.blocked)
    }
}
