@testable import BlobChunkServer
import BlobCore
import BlobServerSupport
import Foundation
import Testing

@Suite("Disk chunk store")
struct DiskChunkStoreTests {
    static func withStore(_ body: (DiskChunkStore) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diskstore-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = DiskChunkStore(root: dir.path)
        _ = try store.prepare()
        try body(store)
    }

    @Test("frames are written under chunks/ab/cd/<id> and read back identical")
    func layout() throws {
        try Self.withStore { store in
            let plain = SyntheticData.logs(byteCount: 10_000, seed: 1)
            let id = ChunkID(hashing: plain)
            let frame = ChunkEncoder().frame(for: plain)
            try store.writeFrame(frame, for: id, sequence: 1)
            let hex = id.hex
            #expect(store.path(for: id) == "\(store.root)/chunks/\(hex.prefix(2))/\(hex.dropFirst(2).prefix(2))/\(hex)")
            #expect(try store.readFrame(id) == frame)
            #expect(store.readHeader(id)?.plainByteCount == plain.count)
            #expect(try store.remove(id) == frame.count)
            #expect(try store.readFrame(id) == nil)
            #expect(try store.remove(id) == nil)
        }
    }

    @Test("the inventory pages through every chunk in id order, from any cursor")
    func inventoryPaging() throws {
        try Self.withStore { store in
            var ids: [ChunkID] = []
            for i in 0..<300 {
                let plain = SyntheticData.random(byteCount: 100 + i, seed: UInt64(i))
                let id = ChunkID(hashing: plain)
                try store.writeFrame(ChunkEncoder().frame(for: plain), for: id, sequence: UInt64(i))
                ids.append(id)
            }
            ids.sort()
            var seen: [ChunkID] = []
            var after: ChunkID?
            for _ in 0..<100 {
                let page = try store.inventory(after: after, limit: 7)
                seen += page.map(\.0)
                guard let last = page.last else { break }
                after = last.0
            }
            #expect(seen == ids)
            #expect(try store.inventory(after: ids[149], limit: 1).first?.0 == ids[150])
        }
    }

    @Test("prepare removes temporary files left by a crash and keeps chunks")
    func prepareCleansTemporaries() throws {
        try Self.withStore { store in
            let plain = [UInt8](repeating: 7, count: 1000)
            let id = ChunkID(hashing: plain)
            try store.writeFrame(ChunkEncoder().frame(for: plain), for: id, sequence: 1)
            _ = FileManager.default.createFile(
                atPath: store.temporaryDirectory + "/\(id.hex).9.tmp", contents: Data([1, 2, 3]))
            #expect(try store.prepare() == 1)
            #expect(try FileManager.default.contentsOfDirectory(atPath: store.temporaryDirectory).isEmpty)
            #expect(try store.readFrame(id) != nil)
        }
    }

    @Test("a server id is created once and kept")
    func serverID() throws {
        try Self.withStore { store in
            let first = try store.loadOrCreateServerID()
            #expect(first.hasPrefix("cs-") && first.count > 10)
            #expect(try store.loadOrCreateServerID() == first)
        }
    }

    @Test("error codes map to one HTTP status each")
    func statusMapping() {
        #expect(ErrorStatus.status(for: .invalidArgument).code == 400)
        #expect(ErrorStatus.status(for: .unauthenticated).code == 401)
        #expect(ErrorStatus.status(for: .permissionDenied).code == 403)
        #expect(ErrorStatus.status(for: .notFound).code == 404)
        #expect(ErrorStatus.status(for: .tooLarge).code == 413)
        #expect(ErrorStatus.status(for: .corruptChunk).code == 422)
        #expect(ErrorStatus.status(for: .unavailable).code == 503)
        #expect(ErrorStatus.status(for: .insufficientStorage).code == 507)
        #expect(ErrorStatus.status(for: .internal).code == 500)
    }
}
