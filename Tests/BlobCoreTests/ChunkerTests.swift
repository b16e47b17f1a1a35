import BlobCore
import Foundation
import Testing

@Suite("Chunker")
struct ChunkerTests {
    static func chunks(_ data: [UInt8], _ configuration: ChunkerConfiguration = .default) throws -> [Chunk] {
        var splitter = try ChunkSplitter(configuration: configuration)
        var out: [Chunk] = []
        var offset = 0
        // Feed in uneven pieces to exercise buffering and the resumable scan.
        var piece = 1
        while offset < data.count {
            let n = data.withUnsafeBytes { raw in
                splitter.append(UnsafeRawBufferPointer(rebasing: raw[offset..<min(data.count, offset + piece)]))
            }
            offset += n
            piece = piece * 7 % 300_001 + 1
            while let c = splitter.nextChunk(isFinal: false) { out.append(c) }
        }
        while let c = splitter.nextChunk(isFinal: true) { out.append(c) }
        return out
    }

    static let small = ChunkerConfiguration.contentDefined(
        minByteCount: 2048, averageByteCount: 8192, maxByteCount: 32768)

    @Test(
        "chunks concatenate to the input, sit inside [min, max] except the last, and offsets add up",
        arguments: [ChunkerConfiguration.default, small, .fixed(byteCount: 100_000)])
    func concatenation(configuration: ChunkerConfiguration) throws {
        let data = SyntheticData.logs(byteCount: 6 << 20, seed: 11)
        let chunks = try Self.chunks(data, configuration)
        #expect(chunks.flatMap(\.bytes) == data)
        var offset: Int64 = 0
        for (i, c) in chunks.enumerated() {
            #expect(c.offset == offset)
            offset += Int64(c.byteCount)
            #expect(c.byteCount <= configuration.maxByteCount)
            if i < chunks.count - 1, case .contentDefined(let lo, _, _) = configuration {
                #expect(c.byteCount >= lo)
            }
            if i < chunks.count - 1, case .fixed(let n) = configuration { #expect(c.byteCount == n) }
        }
    }

    @Test("the same input gives the same boundaries, however it is fed")
    func determinism() async throws {
        let data = SyntheticData.random(byteCount: 3 << 20, seed: 5)
        let a = try Self.chunks(data, Self.small).map(\.offset)
        // Async path with odd element sizes.
        let pieces = stride(from: 0, to: data.count, by: 12_345).map { Array(data[$0..<min(data.count, $0 + 12_345)]) }
        var b: [Int64] = []
        var total = 0
        for try await chunk in ChunkSequence(AsyncPieces(pieces), configuration: Self.small) {
            b.append(chunk.offset)
            total += chunk.byteCount
        }
        #expect(a == b)
        #expect(total == data.count)
        #expect(a.count > 100)
    }

    @Test("average chunk size is near the configured average")
    func averageSize() throws {
        let data = SyntheticData.random(byteCount: 8 << 20, seed: 9)
        let chunks = try Self.chunks(data, Self.small)
        let mean = Double(data.count) / Double(chunks.count)
        #expect(mean > 8192 * 0.7 && mean < 8192 * 1.5, "mean chunk \(mean)")
    }

    @Test("inserting 100 bytes near the start of a 64 MiB log changes at most 3 chunks")
    func insertion() throws {
        let original = SyntheticData.logs(byteCount: 64 << 20, seed: 21)
        var edited = original
        edited.insert(contentsOf: SyntheticData.random(byteCount: 100, seed: 22), at: 5_000)
        let before = Set(try Self.chunks(original).map { ChunkID(hashing: $0.bytes) })
        let after = try Self.chunks(edited).map { ChunkID(hashing: $0.bytes) }
        let changed = after.filter { !before.contains($0) }.count
        #expect(before.count > 40)
        #expect(changed <= 3, "\(changed) of \(after.count) chunks changed")
    }

    @Test("appending 1% keeps every chunk of the original except its last")
    func append() throws {
        let grown = SyntheticData.logs(byteCount: 32 << 20, seed: 31)
        let original = Array(grown.prefix(grown.count * 100 / 101))
        let before = try Self.chunks(original)
        let after = try Self.chunks(grown)
        let kept = Set(after.map { ChunkID(hashing: $0.bytes) })
        for c in before.dropLast() { #expect(kept.contains(ChunkID(hashing: c.bytes))) }
        #expect(zip(before.dropLast(), after).allSatisfy { $0.offset == $1.offset && $0.byteCount == $1.byteCount })
    }

    @Test("configurations outside the limits are refused with a message")
    func validation() {
        #expect(throws: ChunkerError.self) { try ChunkSplitter(configuration: .fixed(byteCount: 0)) }
        #expect(throws: ChunkerError.self) {
            try ChunkSplitter(configuration: .fixed(byteCount: Limits.maxChunkByteCount + 1))
        }
        #expect(throws: ChunkerError.self) {
            try ChunkSplitter(
                configuration: .contentDefined(minByteCount: 4096, averageByteCount: 3000, maxByteCount: 8192))
        }
        #expect(throws: ChunkerError.self) {
            try ChunkSplitter(
                configuration: .contentDefined(minByteCount: 8192, averageByteCount: 4096, maxByteCount: 65536))
        }
        #expect(throws: ChunkerError.self) {
            try ChunkSplitter(
                configuration: .contentDefined(
                    minByteCount: 1 << 20, averageByteCount: 1 << 22, maxByteCount: Limits.maxChunkByteCount * 2))
        }
    }

    @Test("the empty stream has no chunks")
    func emptyInput() throws {
        #expect(try Self.chunks([]).isEmpty)
    }
}

/// An async sequence over fixed pieces, standing in for a network or file source.
struct AsyncPieces: AsyncSequence, Sendable {
    let pieces: [[UInt8]]
    init(_ pieces: [[UInt8]]) { self.pieces = pieces }
    func makeAsyncIterator() -> Iterator { Iterator(pieces: pieces) }
    struct Iterator: AsyncIteratorProtocol {
        var pieces: [[UInt8]]
        var index = 0
        mutating func next() async -> [UInt8]? {
            guard index < pieces.count else { return nil }
            defer { index += 1 }
            return pieces[index]
        }
    }
}

@Suite("File chunker")
struct FileChunkerTests {
    @Test("chunking a file reads it in bounded pieces and cuts where the in-memory splitter cuts")
    func matchesSplitter() throws {
        let data = SyntheticData.logs(byteCount: 5 << 20, seed: 41)
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("filechunker-\(UUID().uuidString)")
        try Data(data).write(to: url)
        defer { try? FileManager.default.removeItem(at: url) }
        var fileChunks = try FileChunker(path: url.path, configuration: ChunkerTests.small)
        var fromFile: [Chunk] = []
        while let chunk = fileChunks.next() { fromFile.append(chunk) }
        #expect(fileChunks.error == nil)
        #expect(fromFile.map(\.offset) == (try ChunkerTests.chunks(data, ChunkerTests.small)).map(\.offset))
        #expect(fromFile.flatMap(\.bytes) == data)
    }

    @Test("chunking bytes in memory cuts where the file chunker cuts; empty bytes give no chunk")
    func memory() throws {
        let data = SyntheticData.logs(byteCount: 5 << 20, seed: 43)
        var memoryChunks = try FileChunker(bytes: data, configuration: ChunkerTests.small)
        var fromMemory: [Chunk] = []
        while let chunk = memoryChunks.next() { fromMemory.append(chunk) }
        #expect(fromMemory.count > 1)
        #expect(fromMemory.map(\.offset) == (try ChunkerTests.chunks(data, ChunkerTests.small)).map(\.offset))
        #expect(fromMemory.flatMap(\.bytes) == data)
        var empty = try FileChunker(bytes: [])
        #expect(empty.next() == nil)
    }

    @Test("a missing file is a notFound error naming the path")
    func missingFile() {
        #expect(throws: FileReadError.self) { try FileChunker(path: "/nonexistent/blob") }
        do {
            _ = try FileChunker(path: "/nonexistent/blob")
        } catch let error as FileReadError {
            #expect(error.code == .notFound && error.message.contains("/nonexistent/blob"))
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}
