import BlobCore

/// One server's files against the master's facts about it, compared page by page in id order
/// (a merge of two sorted streams, so memory stays bounded whatever the server holds).
struct InventoryComparison: Sendable {
    /// Files on the server that the master records no replica of there.
    var orphans: [(id: ChunkID, storedBytes: Int64)] = []
    /// Replicas the master records there whose file is not on the server.
    var missing: [ChunkID] = []
    var matched: Int64 = 0
    static let maxListed = 1_000_000

    /// Reads every inventory page; any error throws (callers that delete must abort).
    static func compare(
        server: ServerEndpoint, store: MetadataStore, peer: ChunkServerPeer
    ) async throws -> InventoryComparison {
        var out = InventoryComparison()
        var inventory = try await peer.inventory(of: server, after: nil)
        var i = 0
        var facts = try await store.replicas(onServer: server.id, after: nil, limit: 10_000)
        var factsEnded = facts.count < 10_000
        var f = 0
        while true {
            if i == inventory.chunks.count, let next = inventory.next {
                inventory = try await peer.inventory(of: server, after: try ChunkID(hex: next))
                i = 0
            }
            if f == facts.count, !factsEnded, let last = facts.last {
                facts = try await store.replicas(onServer: server.id, after: last.0, limit: 10_000)
                factsEnded = facts.count < 10_000
                f = 0
            }
            let onDisk = i < inventory.chunks.count ? inventory.chunks[i] : nil
            let recorded = f < facts.count ? facts[f].0 : nil
            switch (onDisk, recorded) {
            case (nil, nil):
                return out
            case (let disk?, let fact?) where disk.id == fact.hex:
                out.matched += 1
                i += 1
                f += 1
            case (let disk?, let fact) where fact == nil || disk.id < fact!.hex:
                if out.orphans.count < maxListed, let id = try? ChunkID(hex: disk.id) {
                    out.orphans.append((id, Int64(disk.storedBytes)))
                }
                i += 1
            default:
                if out.missing.count < maxListed, let fact = recorded { out.missing.append(fact) }
                f += 1
            }
        }
    }
}
