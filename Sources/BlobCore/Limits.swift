/// Hard limits that protect every process from hostile or corrupt input, and the defaults
/// that size memory per stream. A value here is a promise the benchmarks and tests check.
public enum Limits {
    /// The largest plain chunk any component accepts. Chunker maxima above this are refused,
    /// and a frame header that claims more is rejected before anything is allocated.
    public static let maxChunkByteCount = 16 << 20

    /// The largest stored payload a frame may carry: zstd's worst-case expansion of the
    /// largest plain chunk. Raw chunks are never larger than their plain bytes.
    public static let maxStoredByteCount = maxChunkByteCount + (maxChunkByteCount >> 7) + (1 << 17)

    /// Default content-defined chunking sizes (FastCDC): min 256 KiB, average 1 MiB, max 4 MiB.
    public static let defaultMinChunkByteCount = 256 << 10
    /// See ``defaultMinChunkByteCount``.
    public static let defaultAverageChunkByteCount = 1 << 20
    /// See ``defaultMinChunkByteCount``.
    public static let defaultMaxChunkByteCount = 4 << 20

    /// Bytes a chunker reads from its source at a time, on top of one maximum chunk.
    public static let chunkerReadByteCount = 256 << 10
}
