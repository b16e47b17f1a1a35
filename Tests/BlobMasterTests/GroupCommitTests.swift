import BlobCore
@testable import BlobMaster
import Foundation
import Testing

/// Group commit (``MetadataStore/commitGroup``, ``CommitQueue``): the single commit's rules,
/// per manifest, for many manifests in one transaction.
@Suite("group commit", .timeLimit(.minutes(5)))
struct GroupCommitTests {
    @Test(
        "a group commits each manifest on its own: a missing chunk or bucket fails that one, the others commit",
        arguments: Backend.allCases)
    func failuresStayAlone(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            _ = try await store.createBucket(BucketRecord(name: "media", createdAtMilliseconds: 0, publicRead: false))
            var good = try await MetadataTesting.upload(store, "media/a", sizes: [100, 200], seed: 1)
            good.bucket = "media"
            let second = try await MetadataTesting.upload(store, "plain/b", sizes: [300], seed: 2)
            var unknownChunk = second
            unknownChunk.path = try BlobPath("plain/c")
            unknownChunk.chunks[0].chunkID = ChunkID(hashing: Array("never uploaded".utf8))
            var noBucket = try await MetadataTesting.upload(store, "gone/d", sizes: [50], seed: 3)
            noBucket.bucket = "gone"
            let outcomes = try await store.commitGroup([good, unknownChunk, second, noBucket])
            #expect(try outcomes[0].get().version == 1 && outcomes[0].get().storedBytes == 150)
            #expect(try outcomes[2].get().version == 1)
            // Each failure is that manifest's own, with its reason (a success here fails the test).
            let reasons = outcomes.map { outcome -> String? in
                if case .failure(let error) = outcome { return error.reason }
                return nil
            }
            #expect(reasons == [nil, "manifest.unknownChunk", nil, "bucket.notFound"])
            #expect(try await store.stat(good.path)?.version == 1)
            #expect(try await store.stat(second.path)?.size == 300)
            #expect(try await store.stat(unknownChunk.path) == nil)
            #expect(try await store.stat(noBucket.path) == nil)
            // Manifests read back in order; a later single commit continues the numbering.
            let (_, entries) = try #require(try await store.manifest(of: good.path, version: nil))
            #expect(entries == good.chunks)
            #expect(try await store.commit(good).version == 2)
            // All or none: one failure writes nothing at all.
            var other = second
            other.path = try BlobPath("plain/e")
            await #expect(throws: BlobError.self) { try await store.commit(batch: [other, unknownChunk]) }
            #expect(try await store.stat(other.path) == nil)
            #expect(try await store.checkIntegrity())
        }
    }

    @Test(
        "groups and single commits racing on the same paths give every path distinct, consecutive versions",
        arguments: Backend.allCases)
    func racingGroups(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            var commits: [ManifestCommit] = []
            for i in 0..<6 {
                commits.append(try await MetadataTesting.upload(store, "race/\(i)", sizes: [64], seed: UInt64(i)))
            }
            let all = commits
            try await withThrowingTaskGroup(of: Void.self) { group in
                for round in 0..<8 {
                    group.addTask {
                        // Each group names every path; rotating the order shows the lock order is the store's.
                        let cut: Int = round % all.count
                        let rotated: [ManifestCommit] = Array(all[cut...]) + Array(all[..<cut])
                        for outcome in try await store.commitGroup(rotated) { _ = try outcome.get() }
                    }
                    group.addTask { _ = try await store.commit(all[round % all.count]) }
                }
                try await group.waitForAll()
            }
            for (i, commit) in commits.enumerated() {
                let singles: Int = (0..<8).filter { round in round % all.count == i }.count
                let expected: Int = 8 + singles
                #expect(try await store.stat(commit.path)?.version == Int64(expected), "\(commit.path)")
                for version in 1...expected {
                    #expect(try await store.manifest(of: commit.path, version: Int64(version)) != nil)
                }
            }
        }
    }

    @Test(
        "the commit queue groups concurrent commits, one path's commits in separate groups, preconditions alone",
        arguments: Backend.allCases)
    func queue(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            let queue = CommitQueue(store: store)
            var commits: [ManifestCommit] = []
            for i in 0..<40 {
                commits.append(try await MetadataTesting.upload(store, "q/\(i % 20)", sizes: [128], seed: UInt64(i)))
            }
            var createOnly = try await MetadataTesting.upload(store, "q/once", sizes: [16], seed: 99)
            createOnly.precondition = .absent
            let all = commits
            let once = createOnly
            let versions = try await withThrowingTaskGroup(of: (String, Int64).self) { group in
                for commit in all {
                    group.addTask { (commit.path.value, try await queue.commit(commit, recording: [:]).version) }
                }
                group.addTask { ("q/once", try await queue.commit(once, recording: [:]).version) }
                return try await group.reduce(into: [String: [Int64]]()) { $0[$1.0, default: []].append($1.1) }
            }
            for i in 0..<20 { #expect(versions["q/\(i)"]?.sorted() == [1, 2], "q/\(i): \(versions["q/\(i)"] ?? [])") }
            #expect(versions["q/once"] == [1])
            await #expect(throws: BlobError.self) { try await queue.commit(once, recording: [:]) }
        }
    }

    @Test(
        "a commit sent again under its request id returns its first version: alone, in a group, racing itself",
        arguments: Backend.allCases)
    func requestIDs(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            var manifest = try await MetadataTesting.upload(store, "r/alone", sizes: [1000])
            manifest.requestID = "req-alone"
            let first = try await store.commit(manifest)
            let again = try await store.commit(manifest)
            #expect(again == first)
            // A later commit of the same path without that id is a new version.
            var other = manifest
            other.requestID = "req-other"
            #expect(try await store.commit(other).version == 2)
            #expect(try await store.commit(manifest).version == 1, "still the version its request made")

            var grouped: [ManifestCommit] = []
            for i in 0..<4 {
                var m = try await MetadataTesting.upload(store, "r/group\(i)", sizes: [500 + i], seed: UInt64(10 + i))
                m.requestID = "req-group-\(i)"
                grouped.append(m)
            }
            let firstGroup = try await store.commitGroup(grouped).map { try $0.get() }
            // The retry of the group, with one new commit in it.
            var retry = grouped
            var fresh = try await MetadataTesting.upload(store, "r/fresh", sizes: [700], seed: 30)
            fresh.requestID = "req-fresh"
            retry.append(fresh)
            let secondGroup = try await store.commitGroup(retry).map { try $0.get() }
            #expect(Array(secondGroup.prefix(4)) == firstGroup)
            #expect(secondGroup[4].version == 1)

            // Eight copies of one commit at once: one version.
            var racing = try await MetadataTesting.upload(store, "r/race", sizes: [900], seed: 40)
            racing.requestID = "req-race"
            let racer = racing
            let results = try await withThrowingTaskGroup(of: FileVersion.self) { group in
                for _ in 0..<8 { group.addTask { try await store.commit(racer) } }
                return try await group.reduce(into: [FileVersion]()) { $0.append($1) }
            }
            #expect(Set(results.map(\.version)) == [1])
            for path in ["r/alone", "r/group0", "r/race", "r/fresh"] {
                let count = try await store.database.rows(
                    "SELECT COUNT(*) FROM versions WHERE path = ?", [.blob(try BlobPath(path))]
                ).first?.int(0)
                #expect(count == (path == "r/alone" ? 2 : 1), "\(path)")
            }
            // A malformed request id is refused before anything is written.
            var bad = manifest
            bad.requestID = "has space"
            await #expect(throws: BlobError.self) { try await store.commit(bad) }
        }
    }

    @Test(
        "a delete sent again under its request id returns its tombstone, racing itself or not, and writes one",
        arguments: Backend.allCases)
    func deleteRequestIDs(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            let path = try BlobPath("d/once")
            _ = try await store.commit(try await MetadataTesting.upload(store, path.value, sizes: [800]))
            let first = try await store.delete(path, ifVersion: nil, requestID: "del-1")
            #expect(first.isDeleted && first.version == 2)
            // Without the id, a second delete finds nothing; with it, the first tombstone answers.
            await #expect(throws: BlobError.self) { try await store.delete(path, ifVersion: nil, requestID: nil) }
            let again = try await store.delete(path, ifVersion: nil, requestID: "del-1")
            #expect(again.version == first.version && again.isDeleted && again.path == path)
            // The id names one path only.
            let reused = await #expect(throws: BlobError.self) {
                try await store.delete(try BlobPath("d/other"), ifVersion: nil, requestID: "del-1")
            }
            #expect(reused?.reason == "request.reused")

            // Eight copies of one delete at once: one tombstone, every copy answered with it.
            let racePath = try BlobPath("d/race")
            _ = try await store.commit(try await MetadataTesting.upload(store, racePath.value, sizes: [600], seed: 3))
            let results = try await withThrowingTaskGroup(of: FileVersion.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await store.delete(racePath, ifVersion: nil, requestID: "del-race") }
                }
                return try await group.reduce(into: [FileVersion]()) { $0.append($1) }
            }
            #expect(Set(results.map(\.version)) == [2])
            for (file, versions) in [(path, 2), (racePath, 2)] {
                let count = try await store.database.rows(
                    "SELECT COUNT(*) FROM versions WHERE path = ?", [.blob(file)]
                ).first?.int(0)
                #expect(count == Int64(versions), "\(file)")
            }
            #expect(try await store.stat(racePath) == nil)
        }
    }

    @Test(
        "a bucket creation sent again under its request id answers its bucket, racing itself or not",
        arguments: Backend.allCases)
    func bucketRequestIDs(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            let media = BucketRecord(name: "media", createdAtMilliseconds: 0, publicRead: true)
            let first = try await store.createBucket(media, requestID: "mk-1")
            #expect(try await store.createBucket(media, requestID: "mk-1") == first)
            // Another request, or none, finds the bucket taken.
            for other in ["mk-2", nil] {
                let taken = await #expect(throws: BlobError.self) {
                    try await store.createBucket(media, requestID: other)
                }
                #expect(taken?.reason == "bucket.exists", "\(other ?? "no id")")
            }
            // Eight copies of one creation at once: one bucket, every copy answered with it.
            let logs = BucketRecord(name: "logs", createdAtMilliseconds: 0, publicRead: false)
            let results = try await withThrowingTaskGroup(of: BucketRecord.self) { group in
                for _ in 0..<8 { group.addTask { try await store.createBucket(logs, requestID: "mk-race") } }
                return try await group.reduce(into: [BucketRecord]()) { $0.append($1) }
            }
            #expect(Set(results).count == 1 && results[0].name == "logs")
            #expect(try await store.buckets().map(\.name) == ["logs", "media"])
        }
    }

    @Test(
        "a multipart completion sent again, alone or racing, answers the version the first one made",
        arguments: Backend.allCases)
    func repeatedCompletion(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, _ in
            for (name, racing) in [("alone", false), ("race", true)] {
                let upload = try await store.createUpload(
                    MultipartUpload(
                        id: "up\(name)", path: try BlobPath("m/\(name)"), contentType: "video/mp4",
                        createdAtMilliseconds: 0))
                var part = try await MetadataTesting.upload(
                    store, try upload.partPath(1).value, sizes: [900], seed: racing ? 7 : 8)
                part.sha256 = String(repeating: "cd", count: 32)
                _ = try await store.commit(part)
                let parts = [CompletedPart(number: 1, sha256: part.sha256)]
                let complete: @Sendable () async throws -> FileVersion = {
                    try await store.completeUpload(upload.id, parts: parts, minimumPartSize: 1)
                }
                let results: [FileVersion]
                if racing {
                    results = try await withThrowingTaskGroup(of: FileVersion.self) { group in
                        for _ in 0..<6 { group.addTask { try await complete() } }
                        return try await group.reduce(into: [FileVersion]()) { $0.append($1) }
                    }
                } else {
                    results = [try await complete(), try await complete()]
                }
                #expect(Set(results).count == 1 && results[0].version == 1 && results[0].size == 900, "\(name)")
                let count = try await store.database.rows(
                    "SELECT COUNT(*) FROM versions WHERE path = ?", [.blob(upload.path)]
                ).first?.int(0)
                #expect(count == 1, "\(name): one version")
            }
            // An upload that never existed is still not found.
            await #expect(throws: BlobError.self) {
                try await store.completeUpload(
                    "nothing", parts: [CompletedPart(number: 1, sha256: String(repeating: "cd", count: 32))],
                    minimumPartSize: 1)
            }
        }
    }
}
