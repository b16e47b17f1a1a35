import BlobCore
import Testing

@Suite("ChunkID")
struct ChunkIDTests {
    @Test("the id of the empty input is the SHA-256 of nothing, in lowercase hex")
    func emptyDigest() {
        let id = ChunkID(hashing: [UInt8]())
        #expect(id.hex == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test("the id of 'abc' matches the FIPS 180-2 test vector and round-trips through hex")
    func abcDigest() throws {
        let id = ChunkID(hashing: Array("abc".utf8))
        #expect(id.hex == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try ChunkID(hex: id.hex) == id)
        #expect(try ChunkID(digestBytes: id.digestBytes) == id)
        #expect(id.shortHex == "ba7816bf8f01")
    }

    @Test("parsing rejects wrong lengths, upper case and non-hex characters with a typed error")
    func rejectsBadText() {
        let good = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        #expect(throws: ChunkIDError.wrongLength(63)) { try ChunkID(hex: String(good.dropLast())) }
        #expect(throws: ChunkIDError.wrongLength(65)) { try ChunkID(hex: good + "0") }
        #expect(throws: ChunkIDError.wrongLength(0)) { try ChunkID(hex: "") }
        #expect(throws: ChunkIDError.invalidCharacter(offset: 0)) { try ChunkID(hex: "B" + good.dropFirst()) }
        #expect(throws: ChunkIDError.invalidCharacter(offset: 63)) { try ChunkID(hex: good.dropLast() + "g") }
        #expect(throws: ChunkIDError.invalidCharacter(offset: 10)) {
            try ChunkID(hex: good.prefix(10) + "/" + good.dropFirst(11))
        }
        // A multi-byte character counts as more UTF-8 bytes than characters.
        #expect(throws: ChunkIDError.self) { try ChunkID(hex: "é" + good.dropFirst(2)) }
        #expect(throws: ChunkIDError.wrongByteCount(31)) { try ChunkID(digestBytes: [UInt8](repeating: 0, count: 31)) }
    }

    @Test("ordering of ids equals ordering of their hex text", arguments: [1, 2, 3])
    func orderingMatchesHex(seed: UInt64) {
        var rng = SplitMix64(seed: seed)
        let ids = (0..<200).map { _ in ChunkID(hashing: (0..<8).map { _ in UInt8.random(in: 0...255, using: &rng) }) }
        #expect(ids.sorted().map(\.hex) == ids.map(\.hex).sorted())
    }

    @Test("errors carry a stable code, reason and a message that says what to do")
    func errorShape() {
        let error = ChunkIDError.wrongLength(3)
        #expect(error.code == .invalidArgument)
        #expect(error.reason == "chunkID.wrongLength")
        #expect(error.message.contains("64 lowercase hex"))
        let wrapped = BlobError(error)
        #expect(wrapped.code == .invalidArgument && wrapped.reason == error.reason)
    }
}
