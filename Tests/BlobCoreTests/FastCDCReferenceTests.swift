@testable import BlobCore
import Testing

@Suite("FastCDC scan")
struct FastCDCReferenceTests {
    /// The plain one-byte-at-a-time definition of the cut rule, to check the two-byte scan against.
    static func referenceCuts(_ data: [UInt8], min: Int, avg: Int, max: Int) -> [Int] {
        let bits = avg.trailingZeroBitCount
        let small = FastCDCScanner.mask(bits: bits + 2)
        let large = FastCDCScanner.mask(bits: bits - 2)
        var cuts: [Int] = []
        var start = 0
        while start < data.count {
            let n = data.count - start
            var cut = n
            if n > min {
                var h: UInt64 = 0
                var i = min
                let limit = Swift.min(n, max)
                cut = limit
                while i < limit {
                    h = (h << 1) &+ GearTable.values[Int(data[start + i])]
                    i += 1
                    if h & (i <= Swift.min(avg, limit) ? small : large) == 0 {
                        cut = i
                        break
                    }
                }
            }
            start += cut
            cuts.append(start)
        }
        return cuts
    }

    @Test("the two-byte scan cuts exactly where the one-byte definition does", arguments: [1, 2, 3, 4])
    func matchesReference(seed: UInt64) throws {
        let data =
            seed % 2 == 0
            ? SyntheticData.random(byteCount: 2 << 20, seed: seed)
            : SyntheticData.logs(byteCount: 2 << 20, seed: seed)
        let (lo, avg, hi) = (1000, 4096, 16384)
        var splitter = try ChunkSplitter(
            configuration: .contentDefined(minByteCount: lo, averageByteCount: avg, maxByteCount: hi))
        var cuts: [Int] = []
        var offset = 0
        while offset < data.count {
            offset += data.withUnsafeBytes {
                splitter.append(UnsafeRawBufferPointer(rebasing: $0[offset..<Swift.min($0.count, offset + 777)]))
            }
            while let c = splitter.nextChunk(isFinal: false) { cuts.append(Int(c.offset) + c.byteCount) }
        }
        while let c = splitter.nextChunk(isFinal: true) { cuts.append(Int(c.offset) + c.byteCount) }
        #expect(cuts == Self.referenceCuts(data, min: lo, avg: avg, max: hi))
    }

    @Test("the gear table is fixed: its first value never changes")
    func gearTableIsStable() {
        // Changing the table moves every chunk boundary and breaks deduplication with stored data.
        #expect(GearTable.values.count == 256)
        var gear = SplitMix64(seed: GearTable.seed)
        #expect(GearTable.values[0] == gear.next())
        var rng = SplitMix64(seed: 0)
        #expect(rng.next() == 0xE220_A839_7B1D_CDAF)  // SplitMix64's published first output for seed 0
    }
}
