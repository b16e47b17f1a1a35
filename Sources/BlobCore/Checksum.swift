import CXXHash

/// XXH3-64 of stored chunk bytes, from Debian's libxxhash. Not cryptographic: it detects
/// bit rot and torn writes cheaply on every read; the SHA-256 chunk id guards identity.
public enum Checksum {
    /// XXH3-64 (seed 0) of the bytes. The empty input gives `0x2D06800538D394C2`.
    public static func xxh3(_ bytes: UnsafeRawBufferPointer) -> UInt64 {
        XXH3_64bits(bytes.baseAddress, bytes.count)
    }

    /// XXH3-64 (seed 0) of the bytes.
    public static func xxh3(_ bytes: [UInt8]) -> UInt64 {
        bytes.withUnsafeBytes { xxh3($0) }
    }
}
