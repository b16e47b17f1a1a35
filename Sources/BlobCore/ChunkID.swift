import Crypto

/// Why a string or byte sequence is not a chunk id.
public enum ChunkIDError: CodedError, Sendable, Equatable {
    /// The text is not exactly 64 characters long.
    case wrongLength(Int)
    /// The text contains a character other than `0-9` and `a-f` (upper case is rejected too,
    /// so that one chunk has exactly one spelling on the wire and on disk).
    case invalidCharacter(offset: Int)
    /// Raw digest bytes were not 32 bytes long.
    case wrongByteCount(Int)

    public var code: BlobErrorCode { .invalidArgument }
    public var reason: String {
        switch self {
        case .wrongLength: "chunkID.wrongLength"
        case .invalidCharacter: "chunkID.invalidCharacter"
        case .wrongByteCount: "chunkID.wrongByteCount"
        }
    }
    public var message: String {
        switch self {
        case .wrongLength(let n):
            "a chunk id is 64 lowercase hex characters (a SHA-256 digest), got \(n) characters"
        case .invalidCharacter(let offset):
            "a chunk id is 64 lowercase hex characters (0-9, a-f); character \(offset) is not one"
        case .wrongByteCount(let n):
            "a chunk id digest is 32 bytes, got \(n)"
        }
    }
}

/// The id of a chunk: the SHA-256 digest of its plain (uncompressed) bytes.
///
/// Written as 64 lowercase hex characters on the wire and on disk. Stored as four big-endian
/// words so ids compare, hash and sort cheaply; ordering equals the ordering of the hex text.
public struct ChunkID: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Digest bytes 0..<8, 8..<16, 16..<24 and 24..<32, each read big-endian.
    public let words: (UInt64, UInt64, UInt64, UInt64)

    /// Makes an id from its four big-endian digest words.
    public init(words: (UInt64, UInt64, UInt64, UInt64)) {
        self.words = words
    }

    /// Makes an id from 32 raw digest bytes.
    public init(digestBytes bytes: some Collection<UInt8>) throws(ChunkIDError) {
        guard bytes.count == 32 else { throw .wrongByteCount(bytes.count) }
        // Four big-endian loads: this runs for every chunk of every manifest the master reads.
        if let words = bytes.withContiguousStorageIfAvailable({ Self.words(UnsafeRawBufferPointer($0)) }) {
            self.words = words
        } else {
            self.words = Array(bytes).withUnsafeBytes(Self.words)
        }
    }

    private static func words(_ raw: UnsafeRawBufferPointer) -> (UInt64, UInt64, UInt64, UInt64) {
        func word(_ i: Int) -> UInt64 { UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self)) }
        return (word(0), word(1), word(2), word(3))
    }

    /// Parses the canonical spelling: exactly 64 characters from `0-9a-f`.
    public init(hex: some StringProtocol) throws(ChunkIDError) {
        let utf8 = hex.utf8
        guard utf8.count == 64 else { throw .wrongLength(hex.count) }
        var w: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        var acc: UInt64 = 0
        var i = 0
        for c in utf8 {
            let v: UInt64
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): v = UInt64(c &- UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): v = UInt64(c &- UInt8(ascii: "a") &+ 10)
            default: throw .invalidCharacter(offset: i)
            }
            acc = (acc << 4) | v
            i += 1
            if i & 15 == 0 {
                switch i >> 4 {
                case 1: w.0 = acc
                case 2: w.1 = acc
                case 3: w.2 = acc
                default: w.3 = acc
                }
                acc = 0
            }
        }
        self.words = w
    }

    /// The id of the given plain bytes: their SHA-256 digest.
    public init(hashing bytes: UnsafeRawBufferPointer) {
        var hasher = SHA256()
        hasher.update(bufferPointer: bytes)
        self.init(digest: hasher.finalize())
    }

    /// The id of the given plain bytes: their SHA-256 digest.
    public init(hashing bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { ChunkID(hashing: $0) }
    }

    /// The id named by a finished SHA-256 digest.
    init(digest: SHA256.Digest) {
        self = digest.withUnsafeBytes { raw in
            func word(_ at: Int) -> UInt64 {
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: at, as: UInt64.self))
            }
            return ChunkID(words: (word(0), word(8), word(16), word(24)))
        }
    }

    /// The 32 digest bytes.
    public var digestBytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(32)
        for w in [words.0, words.1, words.2, words.3] {
            for shift in stride(from: 56, through: 0, by: -8) {
                out.append(UInt8(truncatingIfNeeded: w >> UInt64(shift)))
            }
        }
        return out
    }

    /// The canonical 64-character lowercase hex spelling.
    public var hex: String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 64) { buf in
            var i = 0
            for w in [words.0, words.1, words.2, words.3] {
                for shift in stride(from: 60, through: 0, by: -4) {
                    buf[i] = digits[Int((w >> UInt64(shift)) & 0xF)]
                    i += 1
                }
            }
            return 64
        }
    }

    /// A short form for logs and messages: the first 12 hex characters.
    public var shortHex: String { String(hex.prefix(12)) }

    public var description: String { hex }

    /// The first 32 bits of the digest; the ring takes its partition from their top bits.
    public var leadingBits32: UInt32 { UInt32(truncatingIfNeeded: words.0 >> 32) }

    public static func == (a: ChunkID, b: ChunkID) -> Bool {
        a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2 && a.words.3 == b.words.3
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(words.0)
        hasher.combine(words.1)
    }

    public static func < (a: ChunkID, b: ChunkID) -> Bool {
        if a.words.0 != b.words.0 { return a.words.0 < b.words.0 }
        if a.words.1 != b.words.1 { return a.words.1 < b.words.1 }
        if a.words.2 != b.words.2 { return a.words.2 < b.words.2 }
        return a.words.3 < b.words.3
    }
}

extension ChunkID: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(hex: text)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        try c.encode(hex)
    }
}

extension ManifestCommit {
    /// The digest of a file assembled from parts: SHA-256 of the parts' digests (their text, in
    /// order), then `-` and the number of parts.
    public static func compositeDigest(ofParts digests: [String]) -> String {
        var hash = SHA256()
        for d in digests { hash.update(data: Array(d.utf8)) }
        // A SHA-256 is 32 bytes, so it always makes a ChunkID; its hex is the digest's.
        let hex = (try? ChunkID(digestBytes: Array(hash.finalize())).hex) ?? ""
        return hex + "-\(digests.count)"
    }
}
