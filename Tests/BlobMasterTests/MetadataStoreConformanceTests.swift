import BlobCore
import BlobMaster
import Foundation
import Testing

@Suite("metadata store conformance, on SQLite and on PostgreSQL")
struct MetadataStoreConformanceTests {
    @Test(
        "a commit is stat-able, its manifest reads back in order, and an overwrite makes version 2",
        arguments: Backend.allCases)
    func commitAndStat(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let first = try await MetadataTesting.upload(store, "videos/intro.mp4", sizes: [1000, 2000, 500])
            clock.set(10)
            let v1 = try await store.commit(first)
            #expect(v1.version == 1 && v1.size == 3500 && v1.chunkCount == 3 && v1.storedBytes == 1750)
            #expect(try await store.stat(first.path) == v1)
            let (version, entries) = try #require(try await store.manifest(of: first.path, version: nil))
            #expect(version == v1 && entries == first.chunks)

            let second = try await MetadataTesting.upload(store, "videos/intro.mp4", sizes: [42], seed: 2)
            clock.set(20)
            let v2 = try await store.commit(second)
            #expect(v2.version == 2)
            #expect(try await store.stat(first.path)?.version == 2)
            #expect(try await store.manifest(of: first.path, version: 1)?.1 == first.chunks)
            #expect(try await store.checkIntegrity())
        }
    }

    @Test(
        "delete writes a tombstone: the path leaves stat and list, old versions stay readable",
        arguments: Backend.allCases)
    func deleteTombstone(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let commit = try await MetadataTesting.upload(store, "logs/a.log", sizes: [10])
            clock.set(1)
            _ = try await store.commit(commit)
            clock.set(2)
            let tombstone = try await store.delete(commit.path)
            #expect(tombstone.isDeleted && tombstone.version == 2)
            #expect(try await store.stat(commit.path) == nil)
            #expect(try await store.list(prefix: "", after: nil, limit: 10).files.isEmpty)
            #expect(try await store.manifest(of: commit.path, version: 1)?.1 == commit.chunks)
            clock.set(3)
            await #expect(throws: BlobError.self) { try await store.delete(commit.path) }
            // A new commit after a delete continues the version sequence.
            clock.set(4)
            #expect(try await store.commit(commit).version == 3)
        }
    }

    @Test(
        "manifests naming unknown chunks, wrong lengths or gaps are refused and change nothing",
        arguments: Backend.allCases)
    func badManifests(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let good = try await MetadataTesting.upload(store, "a/b", sizes: [100, 200])
            var unknown = good
            unknown.chunks[1].chunkID = ChunkID(hashing: [9, 9, 9])
            clock.set(1)
            await #expect(throws: BlobError.self) { try await store.commit(unknown) }
            var wrongLength = good
            wrongLength.chunks[1].length = 199
            wrongLength.size = 299
            await #expect(throws: BlobError.self) { try await store.commit(wrongLength) }
            var gap = good
            gap.chunks[1].offset = 101
            await #expect(throws: BlobError.self) { try await store.commit(gap) }
            var badSize = good
            badSize.size = 301
            await #expect(throws: BlobError.self) { try await store.commit(badSize) }
            // A chunk whose only replica was removed is no longer durable anywhere.
            try await store.removeReplicas([good.chunks[0].chunkID], on: "cs-1")
            await #expect(throws: BlobError.self) { try await store.commit(good) }
            #expect(try await store.stat(good.path) == nil)
            #expect(try await store.referenceCounts(of: [good.chunks[1].chunkID]) == [good.chunks[1].chunkID: 0])
        }
    }

    @Test(
        "a precondition is checked in the commit: absent only creates, an ETag only replaces that version",
        arguments: Backend.allCases)
    func preconditions(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            var commit = try await MetadataTesting.upload(store, "media/once.bin", sizes: [10])
            commit.precondition = .absent
            clock.set(1)
            let first = try await store.commit(commit)
            clock.set(2)
            await #expect(throws: BlobError.self) { try await store.commit(commit) }
            commit.precondition = .etag("0123")
            clock.set(3)
            await #expect(throws: BlobError.self) { try await store.commit(commit) }
            commit.precondition = .etag(first.sha256)
            clock.set(4)
            #expect(try await store.commit(commit).version == 2)
            commit.metadata = [ObjectAttribute.etag: "md5tag"]
            commit.precondition = nil
            clock.set(5)
            _ = try await store.commit(commit)
            commit.precondition = .etag(first.sha256)  // the attribute, when there is one, is the ETag
            clock.set(6)
            await #expect(throws: BlobError.self) { try await store.commit(commit) }
            commit.precondition = .etag("md5tag")
            clock.set(7)
            #expect(try await store.commit(commit).version == 4)
            // A delete bound to a version that is no longer current changes nothing.
            clock.set(8)
            await #expect(throws: BlobError.self) { try await store.delete(commit.path, ifVersion: 2) }
            #expect(try await store.stat(commit.path)?.version == 4)
            _ = try await store.delete(commit.path, ifVersion: 4)
            commit.precondition = .absent  // a deleted path counts as absent
            clock.set(9)
            #expect(try await store.commit(commit).version == 6)
        }
    }

    @Test("an empty file commits with no chunks", arguments: Backend.allCases)
    func emptyFile(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let empty = ManifestCommit(
                path: try BlobPath("empty"), size: 0, contentType: "application/octet-stream",
                sha256: String(repeating: "e3", count: 32), chunks: [])
            clock.set(1)
            #expect(try await store.commit(empty).size == 0)
        }
    }

    @Test("listing pages by cursor in byte order and stays inside the prefix", arguments: Backend.allCases)
    func listing(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let names = ["a/1", "a/2", "a/10", "a/b/c", "a\u{00e9}", "ab", "b", "a/\u{1F600}"]
            for name in names {
                clock.set(1)
                _ = try await store.commit(try await MetadataTesting.upload(store, name, sizes: [5]))
            }
            var seen: [String] = []
            var after: String?
            for _ in 0..<10 {
                let page = try await store.list(prefix: "a/", after: after, limit: 2)
                seen += page.files.map(\.path.value)
                guard let next = page.next else { break }
                after = next
            }
            let expected = names.filter { $0.hasPrefix("a/") }.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
            #expect(seen == expected)
            #expect(try await store.list(prefix: "", after: nil, limit: 100).files.count == names.count)
            #expect(try await store.list(prefix: "zzz", after: nil, limit: 100).files.isEmpty)
            // A cursor before the prefix starts at the prefix; one past it ends the listing.
            #expect(try await store.list(prefix: "a/", after: "0", limit: 100).files.map(\.path.value) == expected)
            #expect(try await store.list(prefix: "a/", after: "a/", limit: 100).files.map(\.path.value) == expected)
            #expect(
                try await store.list(prefix: "a/", after: "a/2", limit: 100).files.map(\.path.value)
                    == Array(expected.drop { $0 != "a/2" }.dropFirst()))
            #expect(try await store.list(prefix: "a/", after: "b", limit: 100).files.isEmpty)
            await #expect(throws: BlobError.self) { try await store.list(prefix: "", after: nil, limit: 0) }
        }
    }

    @Test("replica locations and reference counts are facts the store keeps", arguments: Backend.allCases)
    func replicasAndReferences(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let commit = try await MetadataTesting.upload(store, "x", sizes: [10, 20])
            let id = commit.chunks[0].chunkID
            clock.set(2)
            try await store.recordReplicas(
                [ReplicaReport(chunkID: id, plainByteCount: 10, storedByteCount: 5)], on: "cs-2")
            #expect(try await store.replicaLocations(of: [id]) == [id: ["cs-1", "cs-2"]])
            clock.set(3)
            _ = try await store.commit(commit)
            clock.set(4)
            _ = try await store.commit(commit)
            #expect(try await store.referenceCounts(of: [id])[id] == 2)
        }
    }

    @Test(
        "block digests: the first well-formed set is kept, a later or malformed one changes nothing",
        arguments: Backend.allCases)
    func blockDigestsAreKept(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            let plain = SyntheticData.random(byteCount: 200_000, seed: 5)
            let id = ChunkID(hashing: plain)
            let digests = BlockDigests.compute(plain)
            #expect(digests.count == 4 * BlockDigests.digestByteCount)
            // A report without digests (a server's report of a copy) records the chunk only.
            try await store.recordReplicas(
                [ReplicaReport(chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040)],
                on: "cs-1")
            #expect(try await store.blockDigests(of: [id]).isEmpty)
            // The wrong size is dropped.
            try await store.recordReplicas(
                [
                    ReplicaReport(
                        chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040,
                        blockDigests: digests.prefix(16))
                ], on: "cs-2")
            #expect(try await store.blockDigests(of: [id]).isEmpty)
            try await store.recordReplicas(
                [
                    ReplicaReport(
                        chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040,
                        blockDigests: digests)
                ], on: "cs-2")
            #expect(try await store.blockDigests(of: [id]) == [id: digests])
            // A different set later does not replace the first.
            var other = digests
            other[0] ^= 0xFF
            try await store.recordReplicas(
                [
                    ReplicaReport(
                        chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040,
                        blockDigests: other)
                ], on: "cs-3")
            #expect(try await store.blockDigests(of: [id]) == [id: digests])
            #expect(try await store.replicaLocations(of: [id]) == [id: ["cs-1", "cs-2", "cs-3"]])
        }
    }

    @Test("commits survive reopening the database", arguments: Backend.allCases)
    func reopen(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock, reopen in
            let commit = try await MetadataTesting.upload(store, "keep/me", sizes: [7])
            clock.set(1)
            _ = try await store.commit(commit)
            try await reopen.withStore(logger: MetadataTesting.logger) {
                (reopened: MetadataStore) async throws -> Void in
                #expect(try await reopened.stat(commit.path)?.version == 1)
                #expect(try await reopened.checkIntegrity())
            }
        }
    }
}

@Suite("Blob paths")
struct BlobPathTests {
    @Test(
        "valid paths are accepted as given",
        arguments: ["a", "videos/2026/intro.mp4", "with space/é/😀", "a.b/..c/d..", "folder/", "a/b/"])
    func valid(text: String) throws {
        #expect(try BlobPath(text).value == text)
    }

    @Test(
        "empty, dot segments, control characters, a leading or doubled slash and overlong paths are refused",
        arguments: [
            "", "/a", "/", "a//", "a//b", "../", ".", "..", "a/../b", "a/./b", "a\u{0}b", "a\nb", "a\u{7f}",
            String(repeating: "x", count: 1025), String(repeating: "y", count: 256) + "/z",
        ])
    func invalid(text: String) {
        #expect(throws: BlobPathError.self) { try BlobPath(text) }
    }
}
