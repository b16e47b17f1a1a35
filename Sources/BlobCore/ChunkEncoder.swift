/// Turns plain chunks into stored frames in one pass: compresses (or not) straight into the
/// frame's buffer, so each chunk is copied at most once on the write path.
public final class ChunkEncoder {
    private let compressor: ChunkCompressor

    /// Makes an encoder applying `policy`.
    public init(policy: CompressionPolicy = .default) {
        compressor = ChunkCompressor(policy: policy)
    }

    /// The policy applied.
    public var policy: CompressionPolicy { compressor.policy }

    /// The stored frame of a plain chunk (header then zstd or raw payload).
    public func frame(for plain: UnsafeRawBufferPointer) -> [UInt8] {
        compressor.frame(for: plain)
    }

    /// The stored frame of a plain chunk.
    public func frame(for plain: [UInt8]) -> [UInt8] {
        plain.withUnsafeBytes { compressor.frame(for: $0) }
    }
}
