import BlobCore
@testable import BlobMaster
import Foundation
import Testing

/// Rules that SQLite's single writer made true by itself, under concurrent transactions on
/// separate connections. On PostgreSQL each of these fails when its rule is written in the
/// single-writer form (read, check, then write, with no row lock): `MAX(version) + 1`, a
/// precondition read before the path is locked, a bucket or chunk checked without `FOR SHARE`
/// and deleted without `FOR UPDATE`. On SQLite they pass either way; they run on both.
@Suite("metadata rules under concurrent writers", .timeLimit(.minutes(5)))
struct MetadataConcurrencyTests {
    @Test(
        "16 concurrent commits to one path get 16 distinct, consecutive versions; the last is current",
        arguments: Backend.allCases)
    func concurrentVersions(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            let commit = try await MetadataTesting.upload(store, "same/path", sizes: [64])
            let versions = try await withThrowingTaskGroup(of: Int64.self) { group in
                for _ in 0..<16 { group.addTask { try await store.commit(commit).version } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(versions.sorted() == Array(1...16))
            #expect(try await store.stat(commit.path)?.version == 16)
            // The stored history has every number once.
            for version in 1...16 { #expect(try await store.manifest(of: commit.path, version: Int64(version)) != nil) }
        }
    }

    @Test("of two racing If-None-Match: * writers exactly one wins, round after round", arguments: Backend.allCases)
    func racingCreateOnly(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            for round in 0..<25 {
                var commit = try await MetadataTesting.upload(store, "once/\(round)", sizes: [32], seed: UInt64(round))
                commit.precondition = .absent
                let createOnly = commit
                let outcomes = await withTaskGroup(of: Result<FileVersion, any Error>.self) { group in
                    for _ in 0..<2 {
                        group.addTask {
                            do { return .success(try await store.commit(createOnly)) } catch { return .failure(error) }
                        }
                    }
                    return await group.reduce(into: []) { $0.append($1) }
                }
                let wins = outcomes.compactMap { try? $0.get() }
                #expect(wins.count == 1, "round \(round): \(outcomes)")
                for case .failure(let error) in outcomes {
                    #expect((error as? BlobError)?.reason == WritePrecondition.failedReason, "round \(round): \(error)")
                }
                #expect(try await store.stat(commit.path)?.version == 1)
            }
        }
    }

    @Test(
        "a bucket delete racing puts into the bucket never leaves an object in a deleted bucket",
        arguments: Backend.allCases)
    func bucketDeleteRacingPut(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            var deletedRounds = 0
            for round in 0..<20 {
                let bucket = "race\(round)"
                try await store.createBucket(BucketRecord(name: bucket, createdAtMilliseconds: 0, publicRead: false))
                var commits: [ManifestCommit] = []
                for i in 0..<4 {
                    var commit = try await MetadataTesting.upload(
                        store, "\(bucket)/object-\(i)", sizes: [16],
                        seed: UInt64(round * 10 + i))
                    commit.bucket = bucket
                    commits.append(commit)
                }
                let deleted = await withTaskGroup(of: Bool?.self) { group in
                    for commit in commits {
                        group.addTask {
                            _ = try? await store.commit(commit)
                            return nil
                        }
                    }
                    group.addTask { (try? await store.deleteBucket(bucket)) != nil }
                    return await group.reduce(into: false) { $0 = $0 || ($1 ?? false) }
                }
                let objects = try await store.list(prefix: bucket + "/", after: nil, limit: 100).files
                if deleted {
                    deletedRounds += 1
                    #expect(try await store.bucket(bucket) == nil)
                    #expect(objects.isEmpty, "round \(round): bucket deleted but holds \(objects.map(\.path.value))")
                } else {
                    #expect(try await store.bucket(bucket) != nil && !objects.isEmpty, "round \(round)")
                }
            }
            // A put after the delete is refused as NoSuchBucket.
            var late = try await MetadataTesting.upload(store, "gone/late", sizes: [8], seed: 999)
            late.bucket = "gone"
            await #expect(throws: BlobError.self) { try await store.commit(late) }
            #expect(try await store.stat(late.path) == nil)
            print("bucket race: the delete won \(deletedRounds) of 20 rounds on \(backend)")
        }
    }

    @Test(
        "garbage collection racing a commit that reuses its candidate chunks never deletes a chunk a live version uses",
        arguments: Backend.allCases)
    func collectRacingCommit(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            var collectedRounds = 0
            for round in 0..<15 {
                // Chunks that an old, deleted and pruned file used: unreferenced, marked, due.
                clock.set(1000 * Int64(round) + 10)
                let old = try await MetadataTesting.upload(
                    store, "gc/old-\(round)", sizes: [40, 50, 60, 70], seed: UInt64(500 + round))
                _ = try await store.commit(old)
                clock.set(1000 * Int64(round) + 20)
                _ = try await store.delete(old.path)
                _ = try await store.pruneVersions(supersededBefore: 1000 * Int64(round) + 30, dryRun: false)
                clock.set(1000 * Int64(round) + 40)
                try await store.markUnreferencedChunks()
                let ids = old.chunks.map(\.chunkID)
                #expect(try await store.garbageCandidates(among: ids) == Set(ids))

                // A writer deduplicates against them and commits, while gc collects them.
                var reuse = old
                reuse.path = try BlobPath("gc/new-\(round)")
                async let committed: Result<FileVersion, any Error> = {
                    do { return .success(try await store.commit(reuse)) } catch { return .failure(error) }
                }()
                async let collected: Result<[(ChunkFacts, markedAt: Int64)], any Error> = {
                    do { return .success(try await store.collect(ids, markedBefore: 1000 * Int64(round) + 50)) } catch {
                        return .failure(error)
                    }
                }()
                let (commitResult, collectResult) = await (committed, collected)

                let gone = try collectResult.get().map(\.0.id)
                switch commitResult {
                case .success(let version):
                    #expect(gone.isEmpty, "round \(round): version \(version.version) uses chunks gc took: \(gone)")
                    let facts = try await store.chunkFacts(of: ids)
                    #expect(facts.count == ids.count && facts.allSatisfy { !$0.servers.isEmpty }, "round \(round)")
                    #expect(try await store.manifest(of: reuse.path, version: nil)?.1 == reuse.chunks)
                case .failure(let error):
                    // Only because gc got there first, and then every chunk is gone.
                    #expect((error as? BlobError)?.reason == "manifest.unknownChunk", "round \(round): \(error)")
                    #expect(Set(gone) == Set(ids), "round \(round)")
                    #expect(try await store.stat(reuse.path) == nil)
                    collectedRounds += 1
                }
            }
            #expect(try await store.checkIntegrity())
            print("gc race: gc won \(collectedRounds) of 15 rounds on \(backend)")
        }
    }

    @Test(
        "ring epochs are compare-and-set: of two masters saving the same next epoch one wins; a gap is refused",
        arguments: Backend.allCases)
    func ringEpochs(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            try await store.saveRing(epoch: 1, json: Array("one".utf8))
            let outcomes = await withTaskGroup(of: Bool.self) { group in
                for i in 0..<4 {
                    group.addTask { (try? await store.saveRing(epoch: 2, json: Array("two-\(i)".utf8))) != nil }
                }
                return await group.reduce(into: [Bool]()) { $0.append($1) }
            }
            #expect(outcomes.filter { $0 }.count == 1)
            await #expect(throws: BlobError.self) { try await store.saveRing(epoch: 4, json: []) }
            await #expect(throws: BlobError.self) { try await store.saveRing(epoch: 2, json: []) }
            #expect(try await store.latestRing().map { String(decoding: $0, as: UTF8.self) }?.hasPrefix("two-") == true)
        }
    }

    @Test("settings are compare-and-set: concurrent read-modify-writes lose no update", arguments: Backend.allCases)
    func settingsUpdates(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<8 {
                    group.addTask {
                        try await store.updateSetting("members") { old in
                            var all = try old.map { try JSONDecoder().decode([Int].self, from: Data($0)) } ?? []
                            all.append(i)
                            return [UInt8](try JSONEncoder().encode(all))
                        }
                    }
                }
                try await group.waitForAll()
            }
            let saved = try #require(try await store.setting("members"))
            #expect(try JSONDecoder().decode([Int].self, from: Data(saved)).sorted() == Array(0..<8))
            // A blind save against a stale value is refused and changes nothing.
            await #expect(throws: BlobError.self) { try await store.saveSetting("members", [1], expected: [2]) }
            #expect(try await store.setting("members") == saved)
        }
    }
}
