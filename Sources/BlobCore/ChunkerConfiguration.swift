/// Why a chunker or codec configuration cannot be used.
public enum ChunkerError: CodedError, Sendable, Equatable {
    case invalidConfiguration(String)

    public var code: BlobErrorCode { .invalidArgument }
    public var reason: String { "chunker.invalidConfiguration" }
    public var message: String {
        switch self {
        case .invalidConfiguration(let what): what
        }
    }
}

/// How a byte stream is cut into chunks.
public enum ChunkerConfiguration: Sendable, Hashable, Codable {
    /// FastCDC content-defined chunking: cut points depend on content, so an insertion or an
    /// append changes only the chunks around it. Sizes in bytes; the average is a power of two.
    case contentDefined(minByteCount: Int, averageByteCount: Int, maxByteCount: Int)
    /// Every chunk is exactly this long except the last.
    case fixed(byteCount: Int)

    /// Content-defined, min 256 KiB, average 1 MiB, max 4 MiB.
    public static let `default` = ChunkerConfiguration.contentDefined(
        minByteCount: Limits.defaultMinChunkByteCount,
        averageByteCount: Limits.defaultAverageChunkByteCount,
        maxByteCount: Limits.defaultMaxChunkByteCount)

    /// The largest chunk this configuration can produce.
    public var maxByteCount: Int {
        switch self {
        case .contentDefined(_, _, let max): max
        case .fixed(let n): n
        }
    }

    /// Checks the sizes are consistent and within ``Limits``.
    public func validate() throws(ChunkerError) {
        switch self {
        case .fixed(let n):
            guard n >= 1, n <= Limits.maxChunkByteCount else {
                throw .invalidConfiguration("fixed chunk size \(n) must be in 1...\(Limits.maxChunkByteCount)")
            }
        case .contentDefined(let min, let avg, let max):
            guard avg >= 256, avg.nonzeroBitCount == 1 else {
                throw .invalidConfiguration("average chunk size \(avg) must be a power of two, at least 256")
            }
            guard min >= 64, min <= avg, avg <= max else {
                throw .invalidConfiguration(
                    "chunk sizes must satisfy 64 <= min <= average <= max, got \(min), \(avg), \(max)")
            }
            guard max <= Limits.maxChunkByteCount else {
                throw .invalidConfiguration("max chunk size \(max) exceeds the hard limit \(Limits.maxChunkByteCount)")
            }
        }
    }
}
