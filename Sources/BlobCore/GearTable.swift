/// The 256 random 64-bit values of the FastCDC gear hash.
///
/// Generated from a fixed SplitMix64 seed, never from Swift's per-process seeded `Hasher`, so
/// every machine and every run cuts the same bytes at the same places. Changing the seed
/// changes every chunk boundary and so defeats deduplication against stored data: never do.
enum GearTable {
    static let seed: UInt64 = 0x426C_6F62_4344_4331  // "BlobCDC1"

    static let values: [UInt64] = {
        var rng = SplitMix64(seed: seed)
        return (0..<256).map { _ in rng.next() }
    }()

    /// Each value shifted left by one, for the two-byte step of the scan.
    static let shiftedValues: [UInt64] = values.map { $0 << 1 }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny seedable generator, the same on every platform.
/// Used for the gear table, deterministic test data and replayable randomised tests.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The finaliser alone: a stable 64-bit mix of one value.
    public static func mix(_ value: UInt64) -> UInt64 {
        var z = value &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
