import BlobCore
import Foundation

/// The ring as the master ships it (JSON): decoding checks it whole, so any ring that decodes
/// places every chunk on its replica count of distinct members, and encodes back to itself.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRingJSON(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let data = Data(bytes: start, count: count)
    guard let ring = try? JSONDecoder().decode(PlacementRing.self, from: data) else { return 0 }
    for word in [UInt64(0), 1, .max / 3, .max] {
        let replicas = ring.replicas(for: ChunkID(words: (word, word, word, word)))
        guard replicas.count == ring.replicaCount, Set(replicas.map(\.id)).count == replicas.count else {
            fatalError("a decoded ring places a chunk on \(replicas.map(\.id)) with R=\(ring.replicaCount)")
        }
    }
    guard let encoded = try? JSONEncoder().encode(ring),
        let back = try? JSONDecoder().decode(PlacementRing.self, from: encoded), back == ring
    else { fatalError("a decoded ring does not round-trip") }
    return 0
}
