import BlobCore

/// A stored chunk frame as it comes off the disk or the network: the header parse, the
/// checked decode (with and without an id to check the plain bytes against) must return or
/// throw a typed error, never trap; what decodes against an id hashes to it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzChunkFrame(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    _ = try? FrameHeader(parsing: bytes)
    if let plain = try? ChunkFrame.decode(bytes) {
        let id = ChunkID(hashing: plain)
        guard let again = try? ChunkFrame.decode(bytes, expectedID: id), again == plain else {
            fatalError("a frame that decoded once did not decode again against its own id")
        }
    }
    // Against an id it cannot hash to: never accepted.
    if (try? ChunkFrame.decode(bytes, expectedID: ChunkID(words: (1, 2, 3, 4)))) != nil {
        fatalError("a frame was accepted for an id its bytes do not hash to")
    }
    return 0
}
