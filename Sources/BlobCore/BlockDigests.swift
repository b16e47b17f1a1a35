import CXXHash
public import Foundation

/// Per-block digests of a chunk's plain bytes, so a ranged read can fetch and check the few
/// blocks it needs instead of the whole chunk (whose SHA-256, the chunk id, can only be checked
/// over all of it).
///
/// The writer computes them from the bytes it chunked and hands them to the master with the
/// chunk's acknowledgement; the master keeps them per chunk and puts them in the read plans of
/// ranges that start or end inside a chunk. Each block of ``blockByteCount`` bytes (the last
/// one shorter) has the 16-byte XXH3-128 of its bytes, big-endian, concatenated in block order.
/// XXH3 is not cryptographic: these digests catch corruption on disk, in transit or in a
/// server, as the frame checksums do; whole-chunk reads still check the SHA-256.
public enum BlockDigests {
    /// Bytes per block: small enough that the first block of a range arrives and checks in
    /// well under a millisecond.
    public static let blockByteCount = 64 << 10
    /// Bytes of one block's digest.
    public static let digestByteCount = 16

    /// Whether a chunk of `plainByteCount` bytes gets block digests: one that fits in one
    /// block gains nothing from them.
    public static func applies(toChunkOf plainByteCount: Int) -> Bool {
        plainByteCount > blockByteCount
    }

    /// Blocks in a chunk of `plainByteCount` bytes.
    public static func blockCount(plainByteCount: Int) -> Int {
        (plainByteCount + blockByteCount - 1) / blockByteCount
    }

    /// The digests of `plain`, block by block.
    public static func compute(_ plain: UnsafeRawBufferPointer) -> Data {
        let blocks = blockCount(plainByteCount: plain.count)
        var out = Data(count: blocks * digestByteCount)
        out.withUnsafeMutableBytes { raw in
            for block in 0..<blocks {
                let start = block * blockByteCount
                let end = min(plain.count, start + blockByteCount)
                store(
                    digest(UnsafeRawBufferPointer(rebasing: plain[start..<end])), into: raw, at: block * digestByteCount
                )
            }
        }
        return out
    }

    /// The digests of `plain`, block by block.
    public static func compute(_ plain: [UInt8]) -> Data {
        plain.withUnsafeBytes { compute($0) }
    }

    /// Whether `digests` is the right size for a chunk of `plainByteCount` bytes.
    public static func isWellFormed(_ digests: Data, plainByteCount: Int) -> Bool {
        (0...Limits.maxChunkByteCount).contains(plainByteCount)
            && digests.count == blockCount(plainByteCount: plainByteCount) * digestByteCount
    }

    /// The whole blocks covering bytes `range` of a chunk of `plainByteCount` bytes, as a
    /// byte range of the chunk: what a ranged read fetches so it can check every byte it uses.
    public static func blockAlignedSpan(covering range: Range<Int>, plainByteCount: Int) -> Range<Int> {
        let start = range.lowerBound / blockByteCount * blockByteCount
        let end = min(plainByteCount, (range.upperBound + blockByteCount - 1) / blockByteCount * blockByteCount)
        return start..<max(start, end)
    }

    /// Checks `bytes`, which are the chunk's bytes from `offset` (a block boundary) on, block by
    /// block against `digests`; the bytes must end at a block boundary or at the chunk's end.
    public static func verify(
        _ bytes: UnsafeRawBufferPointer, at offset: Int, plainByteCount: Int, against digests: Data
    ) -> Bool {
        guard offset % blockByteCount == 0, offset + bytes.count <= plainByteCount,
            isWellFormed(digests, plainByteCount: plainByteCount),
            bytes.count % blockByteCount == 0 || offset + bytes.count == plainByteCount
        else { return false }
        return digests.withUnsafeBytes { expected in
            var position = 0
            var block = offset / blockByteCount
            while position < bytes.count {
                let end = min(bytes.count, position + blockByteCount)
                let actual = digest(UnsafeRawBufferPointer(rebasing: bytes[position..<end]))
                let base = block * digestByteCount
                guard UInt64(bigEndian: expected.loadUnaligned(fromByteOffset: base, as: UInt64.self)) == actual.high,
                    UInt64(bigEndian: expected.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self)) == actual.low
                else { return false }
                position = end
                block += 1
            }
            return true
        }
    }

    private static func digest(_ bytes: UnsafeRawBufferPointer) -> (high: UInt64, low: UInt64) {
        let hash = XXH3_128bits(bytes.baseAddress, bytes.count)
        return (hash.high64, hash.low64)
    }

    private static func store(
        _ digest: (high: UInt64, low: UInt64), into raw: UnsafeMutableRawBufferPointer, at offset: Int
    ) {
        raw.storeBytes(of: digest.high.bigEndian, toByteOffset: offset, as: UInt64.self)
        raw.storeBytes(of: digest.low.bigEndian, toByteOffset: offset + 8, as: UInt64.self)
    }
}
