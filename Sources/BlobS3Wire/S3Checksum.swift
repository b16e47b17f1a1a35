import Crypto
import Foundation

/// The S3 "flexible checksum" algorithms (x-amz-checksum-*).
public enum S3ChecksumAlgorithm: String, CaseIterable, Sendable {
    case crc32 = "CRC32"
    case crc32c = "CRC32C"
    case crc64nvme = "CRC64NVME"
    case sha1 = "SHA1"
    case sha256 = "SHA256"

    /// The header carrying this checksum, lowercase: `x-amz-checksum-crc32` etc.
    public var headerName: String { "x-amz-checksum-" + rawValue.lowercased() }

    /// From a header name such as `x-amz-checksum-crc32c` (any case). Other
    /// `x-amz-checksum-*` headers (`-algorithm`, `-type`, `-mode`) give nil.
    public init?(headerName: String) {
        let name = headerName.lowercased()
        let prefix = "x-amz-checksum-"
        guard name.hasPrefix(prefix) else { return nil }
        self.init(algorithmName: String(name.dropFirst(prefix.count)))
    }

    /// From the value of x-amz-checksum-algorithm / x-amz-sdk-checksum-algorithm, case-insensitively.
    public init?(algorithmName: String) {
        self.init(rawValue: algorithmName.uppercased())
    }

    /// The length of the raw (decoded) digest.
    public var digestByteCount: Int {
        switch self {
        case .crc32, .crc32c: 4
        case .crc64nvme: 8
        case .sha1: 20
        case .sha256: 32
        }
    }

    public var isCRC: Bool {
        switch self {
        case .crc32, .crc32c, .crc64nvme: true
        case .sha1, .sha256: false
        }
    }
}

/// An incremental S3 checksum. CRCs are slicing-by-8 table lookups over 8-byte loads; the
/// SHAs go through swift-crypto. Digests are big-endian bytes, as S3 base64-encodes them.
public struct S3ChecksumState: Sendable {
    public let algorithm: S3ChecksumAlgorithm
    /// The running CRC register (pre-inversion applied, final xorout not yet), 32-bit CRCs in the low half.
    private var crc: UInt64
    // Optionals mutated through `!` update in place, so the hashers' copy-on-write contexts are not copied.
    private var sha1: Insecure.SHA1?
    private var sha256: SHA256?

    public init(_ algorithm: S3ChecksumAlgorithm) {
        self.algorithm = algorithm
        switch algorithm {
        case .crc32, .crc32c: crc = 0xFFFF_FFFF
        case .crc64nvme: crc = ~0
        case .sha1:
            crc = 0
            sha1 = Insecure.SHA1()
        case .sha256:
            crc = 0
            sha256 = SHA256()
        }
    }

    public mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard !bytes.isEmpty else { return }
        switch algorithm {
        case .crc32:
            crc = UInt64(
                CRCTables.crc32.withUnsafeBufferPointer {
                    CRCTables.update32(UInt32(truncatingIfNeeded: crc), bytes, $0)
                })
        case .crc32c:
            crc = UInt64(
                CRCTables.crc32c.withUnsafeBufferPointer {
                    CRCTables.update32(UInt32(truncatingIfNeeded: crc), bytes, $0)
                })
        case .crc64nvme: crc = CRCTables.crc64nvme.withUnsafeBufferPointer { CRCTables.update64(crc, bytes, $0) }
        case .sha1: sha1!.update(bufferPointer: bytes)
        case .sha256: sha256!.update(bufferPointer: bytes)
        }
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// The digest so far (the state is not consumed; more updates may follow).
    public func finalize() -> [UInt8] {
        switch algorithm {
        case .crc32, .crc32c: Self.bigEndianBytes(crc ^ 0xFFFF_FFFF, count: 4)
        case .crc64nvme: Self.bigEndianBytes(~crc, count: 8)
        case .sha1: Array(sha1!.finalize())
        case .sha256: Array(sha256!.finalize())
        }
    }

    /// The checksum as S3 sends it in headers and XML: standard base64 of the digest bytes.
    public static func base64(_ digest: [UInt8]) -> String {
        Data(digest).base64EncodedString()
    }

    /// Decodes a header value; nil unless it is valid base64 of exactly the algorithm's digest length.
    public static func digest(fromBase64 text: String, algorithm: S3ChecksumAlgorithm) -> [UInt8]? {
        guard let data = Data(base64Encoded: text), data.count == algorithm.digestByteCount else { return nil }
        return Array(data)
    }

    /// One-shot digest.
    public static func digest(_ algorithm: S3ChecksumAlgorithm, of bytes: UnsafeRawBufferPointer) -> [UInt8] {
        var state = S3ChecksumState(algorithm)
        state.update(bytes)
        return state.finalize()
    }

    public static func digest(_ algorithm: S3ChecksumAlgorithm, of bytes: [UInt8]) -> [UInt8] {
        bytes.withUnsafeBytes { digest(algorithm, of: $0) }
    }

    /// A multipart object's COMPOSITE checksum: base64 of the algorithm applied to the
    /// concatenated raw part digests, then "-" and the part count.
    public static func composite(_ algorithm: S3ChecksumAlgorithm, partDigests: [[UInt8]]) -> String {
        var state = S3ChecksumState(algorithm)
        for part in partDigests { state.update(part) }
        return base64(state.finalize()) + "-\(partDigests.count)"
    }

    /// The CRC of A followed by B, from CRC(A), CRC(B) and B's length (digests big-endian, as
    /// `finalize()` returns them): for FULL_OBJECT checksums of multipart uploads. This is zlib's
    /// crc32_combine: CRC(A‖B) = CRC(A)·x^(8·len(B)) mod P ⊕ CRC(B), valid because init == xorout.
    public static func combineCRC(
        algorithm: S3ChecksumAlgorithm, _ a: [UInt8], _ b: [UInt8], lengthOfB: Int64
    ) -> [UInt8] {
        let width = algorithm.digestByteCount
        precondition(algorithm.isCRC, "combineCRC needs a CRC algorithm, not \(algorithm)")
        precondition(a.count == width && b.count == width, "combineCRC: digests must be \(width) bytes")
        precondition(lengthOfB >= 0, "combineCRC: negative length")
        if lengthOfB == 0 { return a }
        let crcA = fromBigEndian(a)
        let crcB = fromBigEndian(b)
        let model: CRCTables.Model
        switch algorithm {
        case .crc32: model = CRCTables.crc32Model
        case .crc32c: model = CRCTables.crc32cModel
        default: model = CRCTables.crc64nvmeModel
        }
        let shift = model.xPow8n(UInt64(lengthOfB))
        return bigEndianBytes(model.multiply(shift, crcA) ^ crcB, count: width)
    }

    private static func bigEndianBytes(_ value: UInt64, count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: value >> (8 * UInt64(count - 1 - $0))) }
    }

    private static func fromBigEndian(_ bytes: [UInt8]) -> UInt64 {
        bytes.reduce(0) { $0 << 8 | UInt64($1) }
    }
}

/// Reflected CRC tables and kernels. Each table is 8 × 256 entries, slice k at offset 256·k:
/// slice 0 is the classic byte table, slice k advances a byte through k further zero bytes.
private enum CRCTables {
    public static let crc32: [UInt32] = makeTable(poly: UInt32(0xEDB8_8320))
    public static let crc32c: [UInt32] = makeTable(poly: UInt32(0x82F6_3B78))
    public static let crc64nvme: [UInt64] = makeTable(poly: UInt64(0x9A6C_9329_AC4B_C9B5))

    public static let crc32Model = Model(poly: 0xEDB8_8320, width: 32)
    public static let crc32cModel = Model(poly: 0x82F6_3B78, width: 32)
    public static let crc64nvmeModel = Model(poly: 0x9A6C_9329_AC4B_C9B5, width: 64)

    /// Built once per polynomial, so generic code costs nothing on the hot path.
    public static func makeTable<Word: FixedWidthInteger & UnsignedInteger>(poly: Word) -> [Word] {
        var table = [Word](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = Word(i)
            for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ poly : c >> 1 }
            table[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let previous = table[256 * (k - 1) + i]
                table[256 * k + i] = (previous >> 8) ^ table[Int(previous & 0xFF)]
            }
        }
        return table
    }

    /// Slicing-by-8 over a reflected 32-bit CRC register.
    @inline(__always)
    public static func update32(
        _ crc: UInt32, _ bytes: UnsafeRawBufferPointer, _ t: UnsafeBufferPointer<UInt32>
    ) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        var crc = crc
        var offset = 0
        let count = bytes.count
        while count - offset >= 8 {
            let word = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            let lo = crc ^ UInt32(truncatingIfNeeded: word)
            let hi = UInt32(truncatingIfNeeded: word >> 32)
            crc =
                t[0x700 + Int(lo & 0xFF)] ^ t[0x600 + Int((lo >> 8) & 0xFF)]
                ^ t[0x500 + Int((lo >> 16) & 0xFF)] ^ t[0x400 + Int(lo >> 24)]
                ^ t[0x300 + Int(hi & 0xFF)] ^ t[0x200 + Int((hi >> 8) & 0xFF)]
                ^ t[0x100 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
            offset &+= 8
        }
        while offset < count {
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            crc = (crc >> 8) ^ t[Int((crc ^ UInt32(byte)) & 0xFF)]
            offset &+= 1
        }
        return crc
    }

    /// Slicing-by-8 over a reflected 64-bit CRC register.
    @inline(__always)
    public static func update64(
        _ crc: UInt64, _ bytes: UnsafeRawBufferPointer, _ t: UnsafeBufferPointer<UInt64>
    ) -> UInt64 {
        guard let base = bytes.baseAddress else { return crc }
        var crc = crc
        var offset = 0
        let count = bytes.count
        while count - offset >= 8 {
            let x = crc ^ UInt64(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            crc =
                t[0x700 + Int(x & 0xFF)] ^ t[0x600 + Int((x >> 8) & 0xFF)]
                ^ t[0x500 + Int((x >> 16) & 0xFF)] ^ t[0x400 + Int((x >> 24) & 0xFF)]
                ^ t[0x300 + Int((x >> 32) & 0xFF)] ^ t[0x200 + Int((x >> 40) & 0xFF)]
                ^ t[0x100 + Int((x >> 48) & 0xFF)] ^ t[Int(x >> 56)]
            offset &+= 8
        }
        while offset < count {
            let byte = base.load(fromByteOffset: offset, as: UInt8.self)
            crc = (crc >> 8) ^ t[Int((crc ^ UInt64(byte)) & 0xFF)]
            offset &+= 1
        }
        return crc
    }

    /// Polynomial arithmetic modulo a reflected CRC polynomial (zlib's multmodp / x2nmodp),
    /// widths 32 and 64 held in UInt64. In the reflected form x^0 is the top bit.
    public struct Model: Sendable {
        public let poly: UInt64
        public let top: UInt64
        /// x^(2^k) mod P for k in 0..<67: enough for 8·n with any n below 2^64.
        public let powers: [UInt64]

        public init(poly: UInt64, width: Int) {
            self.poly = poly
            top = 1 << UInt64(width - 1)
            var powers: [UInt64] = []
            var p = top >> 1  // x^1
            for _ in 0..<67 {
                powers.append(p)
                p = Self.multiply(p, p, poly: poly, top: top)
            }
            self.powers = powers
        }

        public static func multiply(_ a: UInt64, _ b: UInt64, poly: UInt64, top: UInt64) -> UInt64 {
            var a = a
            var b = b
            var product: UInt64 = 0
            var m = top
            while a != 0 && m != 0 {
                if a & m != 0 {
                    product ^= b
                    a ^= m
                }
                m >>= 1
                b = b & 1 != 0 ? (b >> 1) ^ poly : b >> 1
            }
            return product
        }

        public func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
            Self.multiply(a, b, poly: poly, top: top)
        }

        /// x^(8·n) mod P.
        public func xPow8n(_ n: UInt64) -> UInt64 {
            var result = top  // x^0
            var n = n
            var k = 3
            while n != 0 {
                if n & 1 != 0 { result = multiply(powers[k], result) }
                n >>= 1
                k += 1
            }
            return result
        }
    }
}

/// What a request asks of S3's flexible checksums: the algorithm, and the value to check the
/// body against (from a header, or from the aws-chunked trailer once the body is read).
public struct RequestedChecksum: Sendable {
    public var algorithm: S3ChecksumAlgorithm
    /// Base64 as sent; nil when only the algorithm was named (the value is computed and kept).
    public var expected: String?
    /// The value comes in the body's trailer.
    public var inTrailer: Bool

    /// The attribute a version keeps its checksum under, such as `:checksum-crc32`.
    public static func attribute(_ algorithm: S3ChecksumAlgorithm) -> String {
        ":" + algorithm.headerName.dropFirst("x-amz-".count)
    }
    public static let typeAttribute = ":checksum-type"
    public static let algorithmAttribute = ":checksum-algorithm"

    /// From `x-amz-checksum-ALG: VALUE`, `x-amz-trailer: x-amz-checksum-ALG`, or
    /// `x-amz-sdk-checksum-algorithm` / `x-amz-checksum-algorithm` (`fallback`, an upload's
    /// algorithm, when none); nil when the request names no checksum.
    public static func from(
        _ headers: [String: String], fallback: S3ChecksumAlgorithm? = nil
    ) throws -> RequestedChecksum? {
        let given = headers.compactMap { name, value in S3ChecksumAlgorithm(headerName: name).map { ($0, value) } }
        guard given.count <= 1 else {
            throw S3Error(
                "InvalidRequest", .badRequest,
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed.")
        }
        if let (algorithm, value) = given.first {
            return RequestedChecksum(algorithm: algorithm, expected: value, inTrailer: false)
        }
        if let trailer = headers["x-amz-trailer"] {
            guard let algorithm = S3ChecksumAlgorithm(headerName: trailer.trimmingCharacters(in: .whitespaces)) else {
                throw S3Error(
                    "InvalidRequest", .badRequest, "The value specified in the x-amz-trailer header is not supported")
            }
            return RequestedChecksum(algorithm: algorithm, expected: nil, inTrailer: true)
        }
        if let name = headers["x-amz-sdk-checksum-algorithm"] ?? headers["x-amz-checksum-algorithm"] {
            guard let algorithm = S3ChecksumAlgorithm(algorithmName: name) else {
                throw S3Error("InvalidRequest", .badRequest, "Checksum algorithm \(name) is not supported")
            }
            return RequestedChecksum(algorithm: algorithm, expected: nil, inTrailer: false)
        }
        return fallback.map { RequestedChecksum(algorithm: $0, expected: nil, inTrailer: false) }
    }

    /// The computed digest checked against the expected value (BadDigest when they differ);
    /// its base64.
    public func check(_ digest: [UInt8], trailers: [String: String]) throws -> String {
        let actual = S3ChecksumState.base64(digest)
        let expected = inTrailer ? trailers[algorithm.headerName] : self.expected
        if inTrailer, expected == nil {
            throw S3Error(
                "InvalidRequest", .badRequest,
                "The body ended without the \(algorithm.headerName) trailer it announced.")
        }
        if let expected, expected.trimmingCharacters(in: .whitespaces) != actual {
            throw S3Error(
                "BadDigest", .badRequest,
                "The \(algorithm.rawValue) you specified did not match the calculated checksum.")
        }
        return actual
    }
}
