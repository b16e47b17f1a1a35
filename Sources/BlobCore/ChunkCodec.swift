import CZstd

/// How a chunk's payload is stored.
public enum ChunkCodec: UInt8, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// The plain bytes, unchanged: for data that does not compress (video, audio, archives).
    case raw = 0
    /// One zstd frame holding the plain bytes.
    case zstd = 1

    public var description: String {
        switch self {
        case .raw: "raw"
        case .zstd: "zstd"
        }
    }
}

/// How a writer decides between zstd and raw storage for each chunk.
public struct CompressionPolicy: Sendable, Hashable, Codable {
    /// zstd level. 1 is the default: on generated logs it compresses at about 1.4x the speed
    /// of level 3 for about 2% more stored bytes (docs/benchmarks.md has the measurement).
    public var level: Int32
    /// A chunk is stored raw when zstd would keep more than this fraction of its size.
    public var maxStoredFraction: Double
    /// Bytes of each of three evenly spaced samples compressed first to recognise incompressible
    /// data without paying for a whole compression. Zero compresses every chunk in full.
    public var probeSampleByteCount: Int

    public init(level: Int32 = 1, maxStoredFraction: Double = 0.97, probeSampleByteCount: Int = 16 << 10) {
        self.level = level
        self.maxStoredFraction = maxStoredFraction
        self.probeSampleByteCount = probeSampleByteCount
    }

    /// The default policy.
    public static let `default` = CompressionPolicy()

    /// Checks the policy's values are usable.
    public func validate() throws(ChunkerError) {
        guard (-7...22).contains(level) else {
            throw .invalidConfiguration("zstd level \(level) is outside -7...22; 1 is the default")
        }
        guard maxStoredFraction > 0, maxStoredFraction <= 1 else {
            throw .invalidConfiguration("the raw-storage threshold must be in (0, 1], got \(maxStoredFraction)")
        }
        guard probeSampleByteCount >= 0 else {
            throw .invalidConfiguration("the probe sample size must not be negative")
        }
    }
}

/// A chunk's stored form: the codec and the payload bytes.
public struct EncodedChunk: Sendable {
    public var codec: ChunkCodec
    /// The stored bytes; for ``ChunkCodec/raw`` these are the plain bytes.
    public var payload: [UInt8]
    /// The length of the plain bytes.
    public var plainByteCount: Int
}

/// Compresses chunks with one reusable zstd context. Not thread-safe: use one per task.
public final class ChunkCompressor {
    private let context: OpaquePointer
    /// The policy this compressor applies.
    public let policy: CompressionPolicy
    private var scratch: [UInt8]

    /// Makes a compressor; the policy must be valid (see ``CompressionPolicy/validate()``).
    public init(policy: CompressionPolicy = .default) {
        guard let cctx = ZSTD_createCCtx() else {
            preconditionFailure("ZSTD_createCCtx returned NULL: out of memory")
        }
        self.context = cctx
        self.policy = policy
        self.scratch = []
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, policy.level)
        // The frame checksum of zstd is redundant with our XXH3 and SHA-256 checks.
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0)
        ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1)
    }

    deinit { ZSTD_freeCCtx(context) }

    /// Encodes a chunk: zstd when it saves enough, raw otherwise.
    public func encode(_ plain: UnsafeRawBufferPointer) -> EncodedChunk {
        if plain.count == 0 || !probeSuggestsCompressible(plain) {
            return EncodedChunk(codec: .raw, payload: Array(plain), plainByteCount: plain.count)
        }
        let limit = Int(Double(plain.count) * policy.maxStoredFraction)
        let bound = ZSTD_compressBound(plain.count)
        let out = [UInt8](unsafeUninitializedCapacity: bound) { buf, initialized in
            let n = ZSTD_compress2(context, buf.baseAddress, bound, plain.baseAddress, plain.count)
            initialized = ZSTD_isError(n) != 0 ? 0 : n
        }
        if out.isEmpty || out.count > limit {
            return EncodedChunk(codec: .raw, payload: Array(plain), plainByteCount: plain.count)
        }
        return EncodedChunk(codec: .zstd, payload: out, plainByteCount: plain.count)
    }

    /// Builds the whole stored frame directly: header, then the zstd payload written in place,
    /// or the plain bytes copied once when the chunk is stored raw.
    func frame(for plain: UnsafeRawBufferPointer) -> [UInt8] {
        let headerSize = FrameHeader.byteCount
        var codec = ChunkCodec.raw
        var stored = plain.count
        var frame: [UInt8]
        if plain.count > 0 && probeSuggestsCompressible(plain) {
            let limit = Int(Double(plain.count) * policy.maxStoredFraction)
            let bound = ZSTD_compressBound(plain.count)
            frame = [UInt8](unsafeUninitializedCapacity: headerSize + bound) { buf, initialized in
                let n = ZSTD_compress2(context, buf.baseAddress! + headerSize, bound, plain.baseAddress, plain.count)
                if ZSTD_isError(n) == 0 && n <= limit {
                    codec = .zstd
                    stored = n
                    initialized = headerSize + n
                } else {
                    initialized = 0
                }
            }
            if codec == .zstd {
                writeHeader(into: &frame, codec: codec, plainByteCount: plain.count, storedByteCount: stored)
                return frame
            }
        }
        frame = [UInt8](unsafeUninitializedCapacity: headerSize + plain.count) { buf, initialized in
            if plain.count > 0 {
                UnsafeMutableRawPointer(buf.baseAddress! + headerSize).copyMemory(
                    from: plain.baseAddress!, byteCount: plain.count)
            }
            initialized = headerSize + plain.count
        }
        writeHeader(into: &frame, codec: .raw, plainByteCount: plain.count, storedByteCount: plain.count)
        return frame
    }

    private func writeHeader(into frame: inout [UInt8], codec: ChunkCodec, plainByteCount: Int, storedByteCount: Int) {
        let checksum = frame.withUnsafeBytes {
            Checksum.xxh3(UnsafeRawBufferPointer(rebasing: $0[FrameHeader.byteCount...]))
        }
        let header = FrameHeader(
            codec: codec, plainByteCount: plainByteCount, storedByteCount: storedByteCount, payloadChecksum: checksum)
        frame.withUnsafeMutableBytes { raw in
            header.bytes.withUnsafeBytes {
                raw.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: FrameHeader.byteCount)
            }
        }
    }

    /// Encodes a chunk: zstd when it saves enough, raw otherwise.
    public func encode(_ plain: [UInt8]) -> EncodedChunk {
        plain.withUnsafeBytes { encode($0) }
    }

    /// Compresses three evenly spaced samples; if together they stay above the raw threshold the
    /// whole chunk almost surely does too (random, video, already-compressed data).
    private func probeSuggestsCompressible(_ plain: UnsafeRawBufferPointer) -> Bool {
        let sample = policy.probeSampleByteCount
        guard sample > 0, plain.count >= sample * 8 else { return true }
        let bound = ZSTD_compressBound(sample)
        if scratch.count < bound { scratch = [UInt8](repeating: 0, count: bound) }
        var stored = 0
        let starts = [0, (plain.count - sample) / 2, plain.count - sample]
        scratch.withUnsafeMutableBytes { out in
            for start in starts {
                let n = ZSTD_compressCCtx(
                    context, out.baseAddress, bound, plain.baseAddress! + start, sample, 1)
                stored += ZSTD_isError(n) != 0 ? sample : n
            }
        }
        // Re-arm the advanced parameters that ZSTD_compressCCtx reset to the sample's level.
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, policy.level)
        ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 0)
        ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 1)
        return Double(stored) <= Double(sample * starts.count) * policy.maxStoredFraction
    }
}

/// Decompresses zstd payloads with one reusable context. Not thread-safe: use one per task.
public final class ChunkDecompressor {
    private let context: OpaquePointer

    public init() {
        guard let dctx = ZSTD_createDCtx() else {
            preconditionFailure("ZSTD_createDCtx returned NULL: out of memory")
        }
        self.context = dctx
        // Refuse windows larger than the largest chunk: a hostile frame cannot make us allocate more.
        ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 25)
    }

    deinit { ZSTD_freeDCtx(context) }

    /// Decompresses a payload that must expand to exactly `plainByteCount` bytes.
    /// Returns nil when the payload is not a valid zstd frame of that size.
    public func decompress(_ payload: UnsafeRawBufferPointer, plainByteCount: Int) -> [UInt8]? {
        precondition(plainByteCount <= Limits.maxChunkByteCount, "caller must check the hard limit")
        let declared = ZSTD_getFrameContentSize(payload.baseAddress, payload.count)
        guard declared == UInt64(plainByteCount) else { return nil }
        var ok = false
        let out = [UInt8](unsafeUninitializedCapacity: plainByteCount) { buf, initialized in
            ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
            let n = ZSTD_decompressDCtx(context, buf.baseAddress, plainByteCount, payload.baseAddress, payload.count)
            ok = ZSTD_isError(n) == 0 && n == plainByteCount
            initialized = ok ? plainByteCount : 0
        }
        return ok ? out : nil
    }
}
