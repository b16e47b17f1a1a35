import BlobCore
import Foundation
import Testing

/// The seeds of one property run: `BLOB_PROPERTY_SEED` alone (to replay a failure, whose
/// message names its seed), else `count` seeds from a base that changes every run. Inputs come
/// from ``SplitMix64`` seeded with each.
enum PropertySeeds {
    static func seeds(_ count: Int) -> [UInt64] {
        if let text = ProcessInfo.processInfo.environment["BLOB_PROPERTY_SEED"], let seed = UInt64(text) {
            return [seed]
        }
        let base = UInt64.random(in: 0..<(UInt64.max / 2))
        return (0..<UInt64(count)).map { base + $0 }
    }
}

@Suite("round trips, as properties over seeded random inputs")
struct RoundTripPropertyTests {
    /// Plain bytes of a random kind: noise, runs, text-like, or empty.
    static func plainBytes(_ rng: inout SplitMix64) -> [UInt8] {
        let count = [0, 1, 17, Int.random(in: 2...70_000, using: &rng), Int.random(in: 0...(1 << 20), using: &rng)]
            .randomElement(using: &rng)!
        switch Int.random(in: 0..<3, using: &rng) {
        case 0:
            return (0..<count).map { _ in UInt8.random(in: 0...255, using: &rng) }
        case 1:
            let byte = UInt8.random(in: 0...255, using: &rng)
            return [UInt8](repeating: byte, count: count)
        default:
            let words = ["GET", "/v1/files", "200", "status=ok", "level=info", "latency_ms=", "\n", " "]
            var out: [UInt8] = []
            out.reserveCapacity(count)
            while out.count < count { out += Array(words.randomElement(using: &rng)!.utf8) }
            return Array(out.prefix(count))
        }
    }

    @Test("frame: every plain chunk encodes to a frame that decodes, checked against its id, to the same bytes")
    func frameRoundTrip() throws {
        let encoder = ChunkEncoder()
        for seed in PropertySeeds.seeds(60) {
            var rng = SplitMix64(seed: seed)
            let plain = Self.plainBytes(&rng)
            let frame = encoder.frame(for: plain)
            let header = try FrameHeader(parsing: frame)
            #expect(header.plainByteCount == plain.count, "seed \(seed)")
            #expect(header.storedByteCount + FrameHeader.byteCount == frame.count, "seed \(seed)")
            let decoded = try ChunkFrame.decode(frame, expectedID: ChunkID(hashing: plain))
            #expect(decoded == plain, "seed \(seed): \(plain.count) bytes, codec \(header.codec)")
            // One changed byte anywhere is refused, never decoded to other bytes.
            if !frame.isEmpty {
                var damaged = frame
                let at = Int.random(in: 0..<damaged.count, using: &rng)
                damaged[at] ^= UInt8.random(in: 1...255, using: &rng)
                #expect(
                    (try? ChunkFrame.decode(damaged, expectedID: ChunkID(hashing: plain))) == nil,
                    "seed \(seed): byte \(at) of \(frame.count) changed and still decoded")
            }
        }
    }

    @Test("ring: any valid ring encodes to JSON and decodes to an equal ring with the same placements")
    func ringRoundTrip() throws {
        var built = 0
        let seeds = PropertySeeds.seeds(25)
        for seed in seeds {
            var rng = SplitMix64(seed: seed)
            let replicas = Int.random(in: 1...4, using: &rng)
            let zones = Int.random(in: 1...6, using: &rng)
            let count = Int.random(in: max(replicas, zones >= replicas ? 1 : replicas)...24, using: &rng)
            let members = (0..<count).map { i in
                RingMember(
                    id: "cs-\(i)-\(UInt32.random(in: 0...UInt32.max, using: &rng))", zone: "z\(i % zones)",
                    weight: [0.5, 1, 1, 2, 3.25].randomElement(using: &rng)!)
            }
            let power = Int.random(in: 2...11, using: &rng)
            guard let first = try? PlacementRing.build(members: members, replicaCount: replicas, partitionPower: power)
            else { continue }
            built += 1
            // A later epoch too, so moved tables are covered, not only first layouts.
            var ring = first
            if let next = try? first.next(members: Array(members.dropLast())) { ring = next }
            let json = try JSONEncoder().encode(ring)
            let back = try JSONDecoder().decode(PlacementRing.self, from: json)
            #expect(back == ring, "seed \(seed)")
            for _ in 0..<50 {
                let id = ChunkID(hashing: (0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) })
                #expect(back.replicas(for: id) == ring.replicas(for: id), "seed \(seed)")
            }
        }
        #expect(built * 2 >= seeds.count, "most generated memberships make a ring (\(built) of \(seeds.count))")
    }
}
