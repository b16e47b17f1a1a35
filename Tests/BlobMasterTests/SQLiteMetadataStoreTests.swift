import BlobCore
import BlobMaster
import Foundation
import Testing

@Suite("SQLite metadata store")
struct SQLiteMetadataStoreTests {
    static func withStore(_ body: (SQLiteMetadataStore, String) async throws -> Void) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("meta-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let path = dir.appendingPathComponent("master.sqlite").path
        try await body(try SQLiteMetadataStore(path: path), path)
    }

    /// Chunks of the given sizes, recorded as durable on `server`, and a manifest tiling them.
    static func upload(_ store: SQLiteMetadataStore, _ path: String, sizes: [Int], seed: UInt64 = 1,
                       server: String = "cs-1") async throws -> ManifestCommit {
        var entries: [ManifestEntry] = []
        var offset: Int64 = 0
        var reports: [ReplicaReport] = []
        for (i, n) in sizes.enumerated() {
            let id = ChunkID(hashing: SyntheticData.random(byteCount: n, seed: seed &* 1000 &+ UInt64(i)))
            entries.append(ManifestEntry(chunkID: id, offset: offset, length: Int64(n)))
            reports.append(ReplicaReport(chunkID: id, plainByteCount: Int64(n), storedByteCount: Int64(n / 2)))
            offset += Int64(n)
        }
        try await store.recordReplicas(reports, on: server, nowMilliseconds: 1)
        return ManifestCommit(path: try BlobPath(path), size: offset, contentType: "video/mp4",
                              sha256: String(repeating: "ab", count: 32), chunks: entries)
    }

    @Test("a commit is stat-able, its manifest reads back in order, and an overwrite makes version 2")
    func commitAndStat() async throws {
        try await Self.withStore { store, _ in
            let first = try await Self.upload(store, "videos/intro.mp4", sizes: [1000, 2000, 500])
            let v1 = try await store.commit(first, nowMilliseconds: 10)
            #expect(v1.version == 1 && v1.size == 3500 && v1.chunkCount == 3 && v1.storedBytes == 1750)
            #expect(try await store.stat(first.path) == v1)
            let (version, entries) = try #require(try await store.manifest(of: first.path, version: nil))
            #expect(version == v1 && entries == first.chunks)

            let second = try await Self.upload(store, "videos/intro.mp4", sizes: [42], seed: 2)
            let v2 = try await store.commit(second, nowMilliseconds: 20)
            #expect(v2.version == 2)
            #expect(try await store.stat(first.path)?.version == 2)
            #expect(try await store.manifest(of: first.path, version: 1)?.1 == first.chunks)
            #expect(try await store.checkIntegrity())
        }
    }

    @Test("delete writes a tombstone: the path leaves stat and list, old versions stay readable")
    func deleteTombstone() async throws {
        try await Self.withStore { store, _ in
            let commit = try await Self.upload(store, "logs/a.log", sizes: [10])
            _ = try await store.commit(commit, nowMilliseconds: 1)
            let tombstone = try await store.delete(commit.path, nowMilliseconds: 2)
            #expect(tombstone.isDeleted && tombstone.version == 2)
            #expect(try await store.stat(commit.path) == nil)
            #expect(try await store.list(prefix: "", after: nil, limit: 10).files.isEmpty)
            #expect(try await store.manifest(of: commit.path, version: 1)?.1 == commit.chunks)
            await #expect(throws: BlobError.self) { try await store.delete(commit.path, nowMilliseconds: 3) }
            // A new commit after a delete continues the version sequence.
            #expect(try await store.commit(commit, nowMilliseconds: 4).version == 3)
        }
    }

    @Test("manifests naming unknown chunks, wrong lengths or gaps are refused and change nothing")
    func badManifests() async throws {
        try await Self.withStore { store, _ in
            let good = try await Self.upload(store, "a/b", sizes: [100, 200])
            var unknown = good
            unknown.chunks[1].chunkID = ChunkID(hashing: [9, 9, 9])
            await #expect(throws: BlobError.self) { try await store.commit(unknown, nowMilliseconds: 1) }
            var wrongLength = good
            wrongLength.chunks[1].length = 199
            wrongLength.size = 299
            await #expect(throws: BlobError.self) { try await store.commit(wrongLength, nowMilliseconds: 1) }
            var gap = good
            gap.chunks[1].offset = 101
            await #expect(throws: BlobError.self) { try await store.commit(gap, nowMilliseconds: 1) }
            var badSize = good
            badSize.size = 301
            await #expect(throws: BlobError.self) { try await store.commit(badSize, nowMilliseconds: 1) }
            // A chunk whose only replica was removed is no longer durable anywhere.
            try await store.removeReplicas([good.chunks[0].chunkID], on: "cs-1")
            await #expect(throws: BlobError.self) { try await store.commit(good, nowMilliseconds: 1) }
            #expect(try await store.stat(good.path) == nil)
            #expect(try await store.referenceCounts(of: [good.chunks[1].chunkID]) == [good.chunks[1].chunkID: 0])
        }
    }

    @Test("a precondition is checked in the commit: absent only creates, an ETag only replaces that version")
    func preconditions() async throws {
        try await Self.withStore { store, _ in
            var commit = try await Self.upload(store, "media/once.bin", sizes: [10])
            commit.precondition = .absent
            let first = try await store.commit(commit, nowMilliseconds: 1)
            await #expect(throws: BlobError.self) { try await store.commit(commit, nowMilliseconds: 2) }
            commit.precondition = .etag("0123")
            await #expect(throws: BlobError.self) { try await store.commit(commit, nowMilliseconds: 3) }
            commit.precondition = .etag(first.sha256)
            #expect(try await store.commit(commit, nowMilliseconds: 4).version == 2)
            commit.metadata = [ObjectAttribute.etag: "md5tag"]
            commit.precondition = nil
            _ = try await store.commit(commit, nowMilliseconds: 5)
            commit.precondition = .etag(first.sha256)  // the attribute, when there is one, is the ETag
            await #expect(throws: BlobError.self) { try await store.commit(commit, nowMilliseconds: 6) }
            commit.precondition = .etag("md5tag")
            #expect(try await store.commit(commit, nowMilliseconds: 7).version == 4)
            // A delete bound to a version that is no longer current changes nothing.
            await #expect(throws: BlobError.self) { try await store.delete(commit.path, ifVersion: 2, nowMilliseconds: 8) }
            #expect(try await store.stat(commit.path)?.version == 4)
            _ = try await store.delete(commit.path, ifVersion: 4, nowMilliseconds: 8)
            commit.precondition = .absent  // a deleted path counts as absent
            #expect(try await store.commit(commit, nowMilliseconds: 9).version == 6)
        }
    }

    @Test("an empty file commits with no chunks")
    func emptyFile() async throws {
        try await Self.withStore { store, _ in
            let empty = ManifestCommit(path: try BlobPath("empty"), size: 0, contentType: "application/octet-stream",
                                       sha256: String(repeating: "e3", count: 32), chunks: [])
            #expect(try await store.commit(empty, nowMilliseconds: 1).size == 0)
        }
    }

    @Test("listing pages by cursor in byte order and stays inside the prefix")
    func listing() async throws {
        try await Self.withStore { store, _ in
            let names = ["a/1", "a/2", "a/10", "a/b/c", "a\u{00e9}", "ab", "b", "a/\u{1F600}"]
            for name in names {
                _ = try await store.commit(try await Self.upload(store, name, sizes: [5]), nowMilliseconds: 1)
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
            #expect(try await store.list(prefix: "a/", after: "a/2", limit: 100).files.map(\.path.value)
                    == Array(expected.drop { $0 != "a/2" }.dropFirst()))
            #expect(try await store.list(prefix: "a/", after: "b", limit: 100).files.isEmpty)
            await #expect(throws: BlobError.self) { try await store.list(prefix: "", after: nil, limit: 0) }
        }
    }

    @Test("concurrent commits to one path all land with distinct versions; the last is current")
    func concurrentCommits() async throws {
        try await Self.withStore { store, _ in
            let commit = try await Self.upload(store, "same/path", sizes: [64])
            let versions = try await withThrowingTaskGroup(of: Int64.self) { group in
                for i in 0..<16 { group.addTask { try await store.commit(commit, nowMilliseconds: Int64(i)).version } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(versions.sorted() == Array(1...16))
            #expect(try await store.stat(commit.path)?.version == 16)
        }
    }

    @Test("replica locations and reference counts are facts the store keeps")
    func replicasAndReferences() async throws {
        try await Self.withStore { store, _ in
            let commit = try await Self.upload(store, "x", sizes: [10, 20])
            let id = commit.chunks[0].chunkID
            try await store.recordReplicas([ReplicaReport(chunkID: id, plainByteCount: 10, storedByteCount: 5)], on: "cs-2",
                                           nowMilliseconds: 2)
            #expect(try await store.replicaLocations(of: [id]) == [id: ["cs-1", "cs-2"]])
            _ = try await store.commit(commit, nowMilliseconds: 3)
            _ = try await store.commit(commit, nowMilliseconds: 4)
            #expect(try await store.referenceCounts(of: [id])[id] == 2)
        }
    }

    @Test("block digests: the first well-formed set is kept, a later or malformed one changes nothing")
    func blockDigestsAreKept() async throws {
        try await Self.withStore { store, _ in
            let plain = SyntheticData.random(byteCount: 200_000, seed: 5)
            let id = ChunkID(hashing: plain)
            let digests = BlockDigests.compute(plain)
            #expect(digests.count == 4 * BlockDigests.digestByteCount)
            // A report without digests (a server's report of a copy) records the chunk only.
            try await store.recordReplicas([ReplicaReport(chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040)],
                                           on: "cs-1", nowMilliseconds: 1)
            #expect(try await store.blockDigests(of: [id]).isEmpty)
            // The wrong size is dropped.
            try await store.recordReplicas([ReplicaReport(chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040,
                                                          blockDigests: digests.prefix(16))], on: "cs-2", nowMilliseconds: 2)
            #expect(try await store.blockDigests(of: [id]).isEmpty)
            try await store.recordReplicas([ReplicaReport(chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040,
                                                          blockDigests: digests)], on: "cs-2", nowMilliseconds: 3)
            #expect(try await store.blockDigests(of: [id]) == [id: digests])
            // A different set later does not replace the first.
            var other = digests
            other[0] ^= 0xFF
            try await store.recordReplicas([ReplicaReport(chunkID: id, plainByteCount: 200_000, storedByteCount: 200_040,
                                                          blockDigests: other)], on: "cs-3", nowMilliseconds: 4)
            #expect(try await store.blockDigests(of: [id]) == [id: digests])
            #expect(try await store.replicaLocations(of: [id]) == [id: ["cs-1", "cs-2", "cs-3"]])
        }
    }

    @Test("commits survive reopening the database")
    func reopen() async throws {
        try await Self.withStore { store, path in
            let commit = try await Self.upload(store, "keep/me", sizes: [7])
            _ = try await store.commit(commit, nowMilliseconds: 1)
            let reopened = try SQLiteMetadataStore(path: path)
            #expect(try await reopened.stat(commit.path)?.version == 1)
            #expect(try await reopened.checkIntegrity())
        }
    }
}

@Suite("Blob paths")
struct BlobPathTests {
    @Test("valid paths are accepted as given", arguments: ["a", "videos/2026/intro.mp4", "with space/é/😀", "a.b/..c/d..", "folder/", "a/b/"])
    func valid(text: String) throws {
        #expect(try BlobPath(text).value == text)
    }

    @Test("empty, dot segments, control characters, a leading or doubled slash and overlong paths are refused",
          arguments: ["", "/a", "/", "a//", "a//b", "../", ".", "..", "a/../b", "a/./b", "a\u{0}b", "a\nb", "a\u{7f}",
                      String(repeating: "x", count: 1025), String(repeating: "y", count: 256) + "/z"])
    func invalid(text: String) {
        #expect(throws: BlobPathError.self) { try BlobPath(text) }
    }
}
