@testable import BlobGateway
import BlobS3Wire
import Crypto
import Foundation
import Testing

/// S3 flexible checksums against published check values and values computed independently
/// in Python, plus self-consistency (pieces, combination) on pseudo-random data.
@Suite("S3 flexible checksums")
struct S3ChecksumTests {
    static let crcs: [S3ChecksumAlgorithm] = [.crc32, .crc32c, .crc64nvme]

    /// Deterministic bytes (SplitMix64), so a failure reproduces.
    static func bytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        var out: [UInt8] = []
        out.reserveCapacity(count)
        while out.count < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            for i in 0..<min(8, count - out.count) { out.append(UInt8(truncatingIfNeeded: z >> (8 * UInt64(i)))) }
        }
        return out
    }

    static func digest(_ algorithm: S3ChecksumAlgorithm, _ bytes: [UInt8]) -> [UInt8] {
        S3ChecksumState.digest(algorithm, of: bytes)
    }

    static func base64(_ algorithm: S3ChecksumAlgorithm, _ text: String) -> String {
        S3ChecksumState.base64(digest(algorithm, Array(text.utf8)))
    }

    @Test("the catalogued check values for \"123456789\"")
    func checkValues() {
        let check = Array("123456789".utf8)
        #expect(Self.digest(.crc32, check) == [0xCB, 0xF4, 0x39, 0x26])
        #expect(Self.digest(.crc32c, check) == [0xE3, 0x06, 0x92, 0x83])
        #expect(Self.digest(.crc64nvme, check) == [0xAE, 0x8B, 0x14, 0x86, 0x0A, 0x79, 0x98, 0x88])
    }

    /// Expected values computed with Python 3:
    ///   CRC32:     base64.b64encode(struct.pack(">I", zlib.crc32(s)))
    ///   CRC32C:    a bitwise reflected CRC (poly 0x82F63B78, init/xorout 0xFFFFFFFF), packed ">I"
    ///   CRC64NVME: a bitwise reflected CRC (poly 0x9A6C9329AC4BC9B5, init/xorout all ones), packed ">Q"
    ///   SHA1/SHA256: base64.b64encode(hashlib.sha1(s).digest()) / hashlib.sha256(s).digest()
    @Test("base64 digests of \"\", \"Hello world\" and \"123456789\" as computed in Python")
    func pythonValues() {
        let expected: [(String, S3ChecksumAlgorithm, String)] = [
            ("", .crc32, "AAAAAA=="),
            ("", .crc32c, "AAAAAA=="),
            ("", .crc64nvme, "AAAAAAAAAAA="),
            ("", .sha1, "2jmj7l5rSw0yVb/vlWAYkK/YBwk="),
            ("", .sha256, "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="),
            ("Hello world", .crc32, "i9aeUg=="),
            ("Hello world", .crc32c, "crUfeA=="),
            ("Hello world", .crc64nvme, "OOJZ0D8xKts="),
            ("Hello world", .sha1, "e1AsOh9IyGCa4hLN+2Od7jlnP14="),
            ("Hello world", .sha256, "ZOyIygCyaOW6GjVnihtTFtIS9PNmskdyMlNKiuyjfzw="),
            ("123456789", .crc32, "y/Q5Jg=="),
            ("123456789", .crc32c, "4waSgw=="),
            ("123456789", .crc64nvme, "rosUhgp5mIg="),
            ("123456789", .sha1, "98O8HYCOBHMq32eZZczDTKeuNEE="),
            ("123456789", .sha256, "FeKw08M4keuw8e9gnsQZQgwg4yDOlMZfvIwzEkSOsiU="),
        ]
        for (text, algorithm, base64) in expected {
            #expect(Self.base64(algorithm, text) == base64, "\(algorithm) of \"\(text)\"")
            #expect(
                S3ChecksumState.digest(fromBase64: base64, algorithm: algorithm)
                    == Self.digest(algorithm, Array(text.utf8)))
        }
    }

    @Test("feeding the data in pieces of every size, at every alignment, gives the same digest")
    func pieces() {
        let data = Self.bytes(3000, seed: 1)
        for algorithm in S3ChecksumAlgorithm.allCases {
            let whole = Self.digest(algorithm, data)
            #expect(whole.count == algorithm.digestByteCount)
            for size in Array(1...33) + [63, 64, 65, 511, 1000, 2999, 3000, 4096] {
                var state = S3ChecksumState(algorithm)
                var offset = 0
                while offset < data.count {
                    let end = min(offset + size, data.count)
                    data[offset..<end].withUnsafeBytes { state.update($0) }
                    offset = end
                }
                state.update([])
                #expect(state.finalize() == whole, "\(algorithm) in pieces of \(size)")
            }
            // Irregular pieces, so every piece starts at a different alignment.
            var state = S3ChecksumState(algorithm)
            var offset = 0
            var size = 0
            while offset < data.count {
                size = size % 17 + 1
                let end = min(offset + size, data.count)
                state.update(Array(data[offset..<end]))
                offset = end
            }
            #expect(state.finalize() == whole, "\(algorithm) in irregular pieces")
            // finalize() does not consume the state.
            var partial = S3ChecksumState(algorithm)
            partial.update(Array(data[..<1000]))
            _ = partial.finalize()
            partial.update(Array(data[1000...]))
            #expect(partial.finalize() == whole, "\(algorithm) after an intermediate finalize")
        }
    }

    @Test("SHA-1 and SHA-256 match swift-crypto's one-shot hashes")
    func shasMatchCrypto() {
        for (index, count) in [0, 1, 55, 56, 63, 64, 65, 1000, 100_000].enumerated() {
            let data = Self.bytes(count, seed: UInt64(10 + index))
            #expect(Self.digest(.sha1, data) == Array(Insecure.SHA1.hash(data: data)))
            #expect(Self.digest(.sha256, data) == Array(SHA256.hash(data: data)))
        }
    }

    @Test("combineCRC(crc(a), crc(b), len(b)) is the CRC of a followed by b")
    func combine() {
        let lengths = [0, 1, 3, 7, 8, 9, 64, 1000, 65_537]
        var seed: UInt64 = 100
        for algorithm in Self.crcs {
            for lengthA in lengths {
                for lengthB in lengths {
                    seed += 2
                    let a = Self.bytes(lengthA, seed: seed)
                    let b = Self.bytes(lengthB, seed: seed + 1)
                    let combined = S3ChecksumState.combineCRC(
                        algorithm: algorithm, Self.digest(algorithm, a), Self.digest(algorithm, b),
                        lengthOfB: Int64(lengthB))
                    #expect(combined == Self.digest(algorithm, a + b), "\(algorithm) of \(lengthA) + \(lengthB) bytes")
                }
            }
            // A full-object CRC folded over several parts, as for a multipart upload.
            let parts = [5000, 0, 1, 4096, 777].enumerated().map {
                Self.bytes($0.element, seed: 900 + UInt64($0.offset))
            }
            var running = Self.digest(algorithm, [])
            for part in parts {
                running = S3ChecksumState.combineCRC(
                    algorithm: algorithm, running, Self.digest(algorithm, part), lengthOfB: Int64(part.count))
            }
            #expect(running == Self.digest(algorithm, parts.flatMap { $0 }), "\(algorithm) folded over parts")
        }
    }

    /// Expected values computed with Python 3:
    ///   base64.b64encode(struct.pack(">I", zlib.crc32(
    ///       struct.pack(">I", zlib.crc32(b"a")) + struct.pack(">I", zlib.crc32(b"b"))))) + "-2"
    ///   base64.b64encode(hashlib.sha256(
    ///       hashlib.sha256(b"a").digest() + hashlib.sha256(b"b").digest()).digest()) + "-2"
    @Test("COMPOSITE checksums hash the concatenated part digests and append the part count")
    func composite() {
        let crcParts = ["a", "b"].map { Self.digest(.crc32, Array($0.utf8)) }
        #expect(S3ChecksumState.composite(.crc32, partDigests: crcParts) == "7pJxdw==-2")
        let shaParts = ["a", "b"].map { Self.digest(.sha256, Array($0.utf8)) }
        #expect(
            S3ChecksumState.composite(.sha256, partDigests: shaParts)
                == "5aAf7hTg7VxIcU8iGA8lrYNltT+XefedxKPX6Tlj+Uo=-2")
    }

    @Test("header and algorithm names")
    func names() {
        #expect(
            S3ChecksumAlgorithm.allCases.map(\.headerName) == [
                "x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme", "x-amz-checksum-sha1",
                "x-amz-checksum-sha256",
            ])
        #expect(S3ChecksumAlgorithm.allCases.map(\.digestByteCount) == [4, 4, 8, 20, 32])
        for algorithm in S3ChecksumAlgorithm.allCases {
            #expect(S3ChecksumAlgorithm(headerName: algorithm.headerName) == algorithm)
            #expect(S3ChecksumAlgorithm(headerName: algorithm.headerName.uppercased()) == algorithm)
            #expect(S3ChecksumAlgorithm(algorithmName: algorithm.rawValue) == algorithm)
            #expect(S3ChecksumAlgorithm(algorithmName: algorithm.rawValue.lowercased()) == algorithm)
        }
        #expect(S3ChecksumAlgorithm(algorithmName: "Crc64Nvme") == .crc64nvme)
        #expect(S3ChecksumAlgorithm(headerName: "x-amz-checksum-algorithm") == nil)
        #expect(S3ChecksumAlgorithm(headerName: "x-amz-checksum-type") == nil)
        #expect(S3ChecksumAlgorithm(headerName: "content-md5") == nil)
        #expect(S3ChecksumAlgorithm(algorithmName: "MD5") == nil)
        #expect(S3ChecksumState.digest(fromBase64: "AAAAAA==", algorithm: .crc64nvme) == nil)
        #expect(S3ChecksumState.digest(fromBase64: "not base64", algorithm: .crc32) == nil)
    }
}
