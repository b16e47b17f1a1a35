/// Why bytes are not a valid stored chunk frame.
public enum FrameError: CodedError, Sendable, Equatable {
    /// Fewer bytes than a header.
    case truncatedHeader(Int)
    /// The first four bytes are not the frame magic.
    case badMagic
    /// A format version this build does not read.
    case unsupportedVersion(UInt8)
    /// A codec number this build does not know.
    case unknownCodec(UInt8)
    /// Reserved header bits are not zero.
    case reservedBitsSet
    /// The header's own checksum does not match its fields.
    case headerChecksumMismatch
    /// A length field is over the hard limit or contradicts the codec.
    case invalidLength(String)
    /// The payload is shorter or longer than the header says.
    case payloadLengthMismatch(expected: Int, actual: Int)
    /// The payload's XXH3-64 does not match the header.
    case payloadChecksumMismatch
    /// The zstd payload did not decompress to the declared plain length.
    case decompressionFailed
    /// The plain bytes do not hash to the chunk id they were stored or sent under.
    case idMismatch(expected: ChunkID, actual: ChunkID)

    public var code: BlobErrorCode { .corruptChunk }

    public var reason: String {
        switch self {
        case .truncatedHeader: "frame.truncatedHeader"
        case .badMagic: "frame.badMagic"
        case .unsupportedVersion: "frame.unsupportedVersion"
        case .unknownCodec: "frame.unknownCodec"
        case .reservedBitsSet: "frame.reservedBitsSet"
        case .headerChecksumMismatch: "frame.headerChecksumMismatch"
        case .invalidLength: "frame.invalidLength"
        case .payloadLengthMismatch: "frame.payloadLengthMismatch"
        case .payloadChecksumMismatch: "frame.payloadChecksumMismatch"
        case .decompressionFailed: "frame.decompressionFailed"
        case .idMismatch: "frame.idMismatch"
        }
    }

    public var message: String {
        let fix = "; read another replica"
        switch self {
        case .truncatedHeader(let n):
            return "chunk frame is \(n) bytes, shorter than its \(FrameHeader.byteCount)-byte header\(fix)"
        case .badMagic: return "bytes do not start with the chunk frame magic\(fix)"
        case .unsupportedVersion(let v):
            return
                "chunk frame format version \(v) is not supported "
                + "(this build reads version \(FrameHeader.currentVersion))"
        case .unknownCodec(let c): return "chunk frame names unknown codec \(c)\(fix)"
        case .reservedBitsSet: return "chunk frame has reserved header bits set\(fix)"
        case .headerChecksumMismatch: return "chunk frame header failed its checksum\(fix)"
        case .invalidLength(let what): return "chunk frame \(what)\(fix)"
        case .payloadLengthMismatch(let e, let a):
            return "chunk frame payload is \(a) bytes, header says \(e)\(fix)"
        case .payloadChecksumMismatch: return "chunk frame payload failed its XXH3 checksum\(fix)"
        case .decompressionFailed: return "chunk frame payload did not decompress to its declared length\(fix)"
        case .idMismatch(let e, let a):
            return "chunk \(e.shortHex)… holds bytes that hash to \(a.shortHex)…; the copy is corrupt\(fix)"
        }
    }
}

/// The fixed 32-byte header in front of every stored chunk, on disk and on the wire.
///
/// Layout, little-endian:
/// ```
/// 0  magic "BLBC"        4 bytes
/// 4  format version      1 (currently 1)
/// 5  codec               1 (0 raw, 1 zstd)
/// 6  flags               2 (reserved, zero)
/// 8  plain length        4
/// 12 stored length       4
/// 16 XXH3-64 of payload  8
/// 24 reserved            4 (zero)
/// 28 header check        4 (low 32 bits of XXH3-64 of bytes 0..<28)
/// ```
/// The header check makes every single-bit flip in the header detectable before a length is
/// trusted; the lengths are then bounded by ``Limits`` so a hostile header cannot make a
/// reader allocate more than the hard limit.
public struct FrameHeader: Sendable, Hashable {
    public static let byteCount = 32
    public static let magic: [UInt8] = Array("BLBC".utf8)
    public static let currentVersion: UInt8 = 1

    public var codec: ChunkCodec
    public var plainByteCount: Int
    public var storedByteCount: Int
    public var payloadChecksum: UInt64

    public init(codec: ChunkCodec, plainByteCount: Int, storedByteCount: Int, payloadChecksum: UInt64) {
        self.codec = codec
        self.plainByteCount = plainByteCount
        self.storedByteCount = storedByteCount
        self.payloadChecksum = payloadChecksum
    }

    /// The total frame length: header plus payload.
    public var frameByteCount: Int { Self.byteCount + storedByteCount }

    /// The 32 header bytes.
    public var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: Self.byteCount)
        out.withUnsafeMutableBytes { raw in
            raw.copyBytes(from: Self.magic)
            raw[4] = Self.currentVersion
            raw[5] = codec.rawValue
            raw.storeBytes(of: UInt32(plainByteCount).littleEndian, toByteOffset: 8, as: UInt32.self)
            raw.storeBytes(of: UInt32(storedByteCount).littleEndian, toByteOffset: 12, as: UInt32.self)
            raw.storeBytes(of: payloadChecksum.littleEndian, toByteOffset: 16, as: UInt64.self)
            let check = UInt32(truncatingIfNeeded: Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[0..<28])))
            raw.storeBytes(of: check.littleEndian, toByteOffset: 28, as: UInt32.self)
        }
        return out
    }

    /// Parses and checks a header from the first ``byteCount`` bytes of `raw`.
    public init(parsing raw: UnsafeRawBufferPointer) throws(FrameError) {
        guard raw.count >= Self.byteCount else { throw .truncatedHeader(raw.count) }
        guard raw[0] == Self.magic[0], raw[1] == Self.magic[1], raw[2] == Self.magic[2], raw[3] == Self.magic[3]
        else { throw .badMagic }
        let check = UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 28, as: UInt32.self))
        let computed = UInt32(truncatingIfNeeded: Checksum.xxh3(UnsafeRawBufferPointer(rebasing: raw[0..<28])))
        guard check == computed else { throw .headerChecksumMismatch }
        guard raw[4] == Self.currentVersion else { throw .unsupportedVersion(raw[4]) }
        guard let codec = ChunkCodec(rawValue: raw[5]) else { throw .unknownCodec(raw[5]) }
        let flags = raw.loadUnaligned(fromByteOffset: 6, as: UInt16.self)
        let reserved = raw.loadUnaligned(fromByteOffset: 24, as: UInt32.self)
        guard flags == 0, reserved == 0 else { throw .reservedBitsSet }
        let plain = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt32.self)))
        let stored = Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: 12, as: UInt32.self)))
        guard plain <= Limits.maxChunkByteCount else {
            throw .invalidLength("plain length \(plain) exceeds the hard limit \(Limits.maxChunkByteCount)")
        }
        guard stored <= Limits.maxStoredByteCount else {
            throw .invalidLength("stored length \(stored) exceeds the hard limit \(Limits.maxStoredByteCount)")
        }
        switch codec {
        case .raw:
            guard stored == plain else {
                throw .invalidLength("raw payload length \(stored) differs from plain length \(plain)")
            }
        case .zstd:
            guard stored > 0, plain > 0 else { throw .invalidLength("zstd payload or plain length is zero") }
        }
        self.codec = codec
        self.plainByteCount = plain
        self.storedByteCount = stored
        self.payloadChecksum = UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
    }

    /// Parses and checks a header from the first ``byteCount`` bytes.
    public init(parsing bytes: [UInt8]) throws(FrameError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(FrameError) in try FrameHeader(parsing: raw) } }
        self = try result.get()
    }
}

/// Encoding and decoding of whole stored chunk frames.
public enum ChunkFrame {
    /// Builds the frame for an encoded chunk: header then payload.
    public static func make(_ encoded: EncodedChunk) -> [UInt8] {
        let header = FrameHeader(
            codec: encoded.codec,
            plainByteCount: encoded.plainByteCount,
            storedByteCount: encoded.payload.count,
            payloadChecksum: Checksum.xxh3(encoded.payload))
        var out = [UInt8]()
        out.reserveCapacity(FrameHeader.byteCount + encoded.payload.count)
        out.append(contentsOf: header.bytes)
        out.append(contentsOf: encoded.payload)
        return out
    }

    /// Checks a whole frame (header, lengths, payload checksum) without decompressing it.
    @discardableResult
    public static func verify(_ frame: UnsafeRawBufferPointer) throws(FrameError) -> FrameHeader {
        let header = try FrameHeader(parsing: frame)
        let payload = UnsafeRawBufferPointer(rebasing: frame[FrameHeader.byteCount...])
        guard payload.count == header.storedByteCount else {
            throw .payloadLengthMismatch(expected: header.storedByteCount, actual: payload.count)
        }
        guard Checksum.xxh3(payload) == header.payloadChecksum else { throw .payloadChecksumMismatch }
        return header
    }

    /// Checks a whole frame (header, lengths, payload checksum) without decompressing it.
    @discardableResult
    public static func verify(_ frame: [UInt8]) throws(FrameError) -> FrameHeader {
        let result = frame.withUnsafeBytes { raw in Result { () throws(FrameError) in try verify(raw) } }
        return try result.get()
    }

    /// Checks a frame and returns its plain bytes; with `expectedID`, also checks that the plain
    /// bytes hash to it (SHA-256), so a reader never hands out bytes other than the chunk's.
    public static func decode(
        _ frame: UnsafeRawBufferPointer,
        expectedID: ChunkID? = nil,
        decompressor: ChunkDecompressor? = nil
    ) throws(FrameError) -> [UInt8] {
        let header = try verify(frame)
        let payload = UnsafeRawBufferPointer(rebasing: frame[FrameHeader.byteCount...])
        let plain: [UInt8]
        switch header.codec {
        case .raw:
            plain = Array(payload)
        case .zstd:
            let d = decompressor ?? ChunkDecompressor()
            guard let out = d.decompress(payload, plainByteCount: header.plainByteCount) else {
                throw .decompressionFailed
            }
            plain = out
        }
        if let expectedID {
            let actual = ChunkID(hashing: plain)
            guard actual == expectedID else { throw .idMismatch(expected: expectedID, actual: actual) }
        }
        return plain
    }

    /// See ``decode(_:expectedID:decompressor:)-(UnsafeRawBufferPointer,_,_)``.
    public static func decode(
        _ frame: [UInt8], expectedID: ChunkID? = nil, decompressor: ChunkDecompressor? = nil
    ) throws(FrameError) -> [UInt8] {
        let result = frame.withUnsafeBytes { raw in
            Result { () throws(FrameError) in try decode(raw, expectedID: expectedID, decompressor: decompressor) }
        }
        return try result.get()
    }
}
