import BlobCore
import Testing

@Suite("Chunk codec and frame")
struct ChunkFrameTests {
    static func logText(_ count: Int, seed: UInt64 = 1) -> [UInt8] {
        SyntheticData.logs(byteCount: count, seed: seed)
    }

    static func randomBytes(_ count: Int, seed: UInt64 = 2) -> [UInt8] {
        SyntheticData.random(byteCount: count, seed: seed)
    }

    @Test("XXH3-64 of the empty input is the published vector")
    func xxh3Vector() {
        #expect(Checksum.xxh3([UInt8]()) == 0x2D06_8005_38D3_94C2)
    }

    @Test("compressible chunks are stored with zstd and decode to the same bytes")
    func zstdRoundTrip() throws {
        let plain = Self.logText(1 << 20)
        let encoded = ChunkCompressor().encode(plain)
        #expect(encoded.codec == .zstd)
        #expect(encoded.payload.count < plain.count / 2)
        let frame = ChunkFrame.make(encoded)
        let decoded = try ChunkFrame.decode(frame, expectedID: ChunkID(hashing: plain))
        #expect(decoded == plain)
    }

    @Test("incompressible chunks are stored raw, recognised by the probe", arguments: [0, 16 << 10])
    func rawRoundTrip(probe: Int) throws {
        let plain = Self.randomBytes(1 << 20)
        let encoded = ChunkCompressor(policy: CompressionPolicy(probeSampleByteCount: probe)).encode(plain)
        #expect(encoded.codec == .raw)
        #expect(encoded.payload == plain)
        let frame = ChunkFrame.make(encoded)
        #expect(frame.count == FrameHeader.byteCount + plain.count)
        #expect(try ChunkFrame.decode(frame, expectedID: ChunkID(hashing: plain)) == plain)
    }

    @Test("tiny and empty chunks round-trip")
    func tinyChunks() throws {
        for n in [0, 1, 2, 31, 32, 33, 100] {
            let plain = Self.logText(n)
            let frame = ChunkFrame.make(ChunkCompressor().encode(plain))
            #expect(try ChunkFrame.decode(frame, expectedID: ChunkID(hashing: plain)) == plain)
        }
    }

    @Test("the decoder refuses bytes that hash to another id")
    func idMismatch() throws {
        let plain = Self.logText(4096)
        let frame = ChunkFrame.make(ChunkCompressor().encode(plain))
        let other = ChunkID(hashing: [1, 2, 3])
        #expect(throws: FrameError.idMismatch(expected: other, actual: ChunkID(hashing: plain))) {
            try ChunkFrame.decode(frame, expectedID: other)
        }
    }

    /// Every outcome of decoding damaged bytes must be a typed error or the exact original bytes.
    static func expectErrorOrOriginal(_ frame: [UInt8], _ plain: [UInt8], id: ChunkID) {
        do {
            let decoded = try ChunkFrame.decode(frame, expectedID: id)
            #expect(decoded == plain)
        } catch {
            #expect(error.code == .corruptChunk)
        }
    }

    @Test("every truncation of a valid frame is a typed error", arguments: [ChunkCodec.raw, .zstd])
    func truncations(codec: ChunkCodec) {
        let plain = codec == .raw ? Self.randomBytes(3000) : Self.logText(3000)
        let frame = ChunkFrame.make(ChunkCompressor(policy: .init(probeSampleByteCount: 0)).encode(plain))
        let id = ChunkID(hashing: plain)
        for n in 0..<frame.count {
            #expect(throws: FrameError.self) { try ChunkFrame.decode(Array(frame.prefix(n)), expectedID: id) }
        }
    }

    @Test("a flipped bit anywhere in the header or payload is detected", arguments: [ChunkCodec.raw, .zstd])
    func bitFlips(codec: ChunkCodec) throws {
        let plain = codec == .raw ? Self.randomBytes(700) : Self.logText(2000)
        let frame = ChunkFrame.make(ChunkCompressor(policy: .init(probeSampleByteCount: 0)).encode(plain))
        #expect(try FrameHeader(parsing: frame).codec == codec)
        for bit in 0..<(frame.count * 8) {
            var damaged = frame
            damaged[bit / 8] ^= UInt8(1 << (bit % 8))
            // Without the id check too: the frame's own checks must catch every single flip.
            #expect(throws: FrameError.self) { try ChunkFrame.decode(damaged) }
        }
    }

    @Test("random bytes, and random bytes behind a valid magic, never crash the decoder", arguments: [7, 8, 9])
    func randomInput(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let plain = Self.logText(5000, seed: seed)
        let id = ChunkID(hashing: plain)
        for _ in 0..<300 {
            let n = Int.random(in: 0...200, using: &rng)
            var junk = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            if n >= 4 && Bool.random(using: &rng) { junk.replaceSubrange(0..<4, with: FrameHeader.magic) }
            Self.expectErrorOrOriginal(junk, plain, id: id)
        }
    }

    @Test("a hostile header that passes its own checksum cannot claim more than the hard limit")
    func hostileLengths() {
        for (plain, stored) in [
            (Limits.maxChunkByteCount + 1, 10), (10, Limits.maxStoredByteCount + 1), (1 << 31, 1 << 31),
        ] {
            let header = FrameHeader(codec: .zstd, plainByteCount: plain, storedByteCount: stored, payloadChecksum: 0)
            #expect(throws: FrameError.self) { try FrameHeader(parsing: header.bytes) }
        }
        let raw = FrameHeader(codec: .raw, plainByteCount: 10, storedByteCount: 11, payloadChecksum: 0)
        #expect(throws: FrameError.self) { try FrameHeader(parsing: raw.bytes) }
    }

    @Test("a zstd payload that claims a different plain length is refused")
    func lyingPlainLength() throws {
        let plain = Self.logText(10_000)
        let encoded = ChunkCompressor().encode(plain)
        #expect(encoded.codec == .zstd)
        var lying = encoded
        lying.plainByteCount = plain.count + 1
        let frame = ChunkFrame.make(lying)
        #expect(throws: FrameError.decompressionFailed) { try ChunkFrame.decode(frame) }
    }

    @Test("a policy outside its ranges is refused")
    func policyValidation() {
        #expect(throws: ChunkerError.self) { try CompressionPolicy(level: 40).validate() }
        #expect(throws: ChunkerError.self) { try CompressionPolicy(maxStoredFraction: 0).validate() }
        #expect(throws: Never.self) { try CompressionPolicy.default.validate() }
    }

    @Test("block digests check the blocks a range needs and catch a flipped bit in any of them")
    func blockDigests() {
        let size = 5 * BlockDigests.blockByteCount + 1234
        let plain = Self.randomBytes(size, seed: 9)
        let digests = BlockDigests.compute(plain)
        #expect(BlockDigests.isWellFormed(digests, plainByteCount: size))
        #expect(!BlockDigests.applies(toChunkOf: BlockDigests.blockByteCount))
        #expect(BlockDigests.applies(toChunkOf: BlockDigests.blockByteCount + 1))
        let block = BlockDigests.blockByteCount
        #expect(BlockDigests.blockAlignedSpan(covering: 10..<20, plainByteCount: size) == 0..<block)
        #expect(
            BlockDigests.blockAlignedSpan(covering: (block - 1)..<(block + 1), plainByteCount: size) == 0..<(2 * block))
        #expect(BlockDigests.blockAlignedSpan(covering: (size - 5)..<size, plainByteCount: size) == (5 * block)..<size)
        let spans = [0..<block, (2 * block)..<(4 * block), (5 * block)..<size, 0..<size]
        for span in spans {
            var part = Array(plain[span])
            #expect(
                part.withUnsafeBytes {
                    BlockDigests.verify($0, at: span.lowerBound, plainByteCount: size, against: digests)
                })
            part[part.count - 1] ^= 0x10
            #expect(
                !part.withUnsafeBytes {
                    BlockDigests.verify($0, at: span.lowerBound, plainByteCount: size, against: digests)
                })
        }
        // Unaligned starts, ends inside a block, or bytes from the wrong place are refused.
        let shifted = Array(plain[1..<(block + 1)])
        #expect(!shifted.withUnsafeBytes { BlockDigests.verify($0, at: 1, plainByteCount: size, against: digests) })
        let short = Array(plain[0..<(block - 1)])
        #expect(!short.withUnsafeBytes { BlockDigests.verify($0, at: 0, plainByteCount: size, against: digests) })
        let wrongPlace = Array(plain[0..<block])
        #expect(
            !wrongPlace.withUnsafeBytes { BlockDigests.verify($0, at: block, plainByteCount: size, against: digests) })
    }
}
