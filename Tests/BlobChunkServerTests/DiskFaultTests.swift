@testable import BlobChunkServer
import BlobCore
import Foundation
import Glibc
import Synchronization
import Testing

/// Injects one ``DiskFaultAction`` at the first matching operation, `proceed` elsewhere.
final class OneFault: DiskFaultInjector {
    let matches: @Sendable (DiskOperation) -> Bool
    let fault: DiskFaultAction
    private let fired = Mutex(false)

    init(_ fault: DiskFaultAction, when matches: @escaping @Sendable (DiskOperation) -> Bool) {
        self.fault = fault
        self.matches = matches
    }

    func action(at operation: DiskOperation) -> DiskFaultAction {
        guard matches(operation) else { return .proceed }
        return fired.withLock { fired in
            if fired { return .proceed }
            fired = true
            return fault
        }
    }
}

@Suite("Disk faults: torn writes, crashes before the rename, a full disk")
struct DiskFaultTests {
    static func frame(seed: UInt64) -> (ChunkID, [UInt8]) {
        let plain = SyntheticData.random(byteCount: 300_000, seed: seed)
        return (ChunkID(hashing: plain), ChunkEncoder().frame(for: plain))
    }

    static func withDirectory(_ body: (String) throws -> Void) throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("diskfaults-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try body(dir)
    }

    static func temporaryFiles(_ dir: String) -> [String] {
        (try? FileManager.default.contentsOfDirectory(atPath: dir + "/tmp")) ?? []
    }

    @Test(
        "a torn write (half the frame, then a crash) is never visible under the chunk's id; the restart removes it"
    )
    func tornWrite() throws {
        try Self.withDirectory { dir in
            let (id, frame) = Self.frame(seed: 1)
            let faults = OneFault(.crashAfterWriting(bytes: frame.count / 2)) {
                if case .write = $0 { return true } else { return false }
            }
            let store = DiskChunkStore(root: dir, faults: faults)
            _ = try store.prepare()
            #expect(throws: SimulatedCrash.self) { try store.writeFrame(frame, for: id, sequence: 1) }
            #expect(try store.readFrame(id) == nil, "nothing under the id")
            #expect(!FileManager.default.fileExists(atPath: store.path(for: id)))
            let torn = Self.temporaryFiles(dir)
            #expect(torn.count == 1, "the torn temporary file is left as a crash leaves it")
            let size = (try? FileManager.default.attributesOfItem(atPath: dir + "/tmp/" + torn[0])[.size] as? Int) ?? 0
            #expect(size == frame.count / 2)
            // The restart: leftovers go, the id is still absent, and the same write then succeeds.
            let restarted = DiskChunkStore(root: dir)
            #expect(try restarted.prepare() == 1)
            #expect(Self.temporaryFiles(dir).isEmpty)
            #expect(try restarted.readFrame(id) == nil)
            try restarted.writeFrame(frame, for: id, sequence: 2)
            #expect(try restarted.readFrame(id) == frame)
        }
    }

    @Test("a crash between fsync and rename leaves the id absent; the restart removes the complete temporary file")
    func crashBeforeRename() throws {
        try Self.withDirectory { dir in
            let (id, frame) = Self.frame(seed: 2)
            let faults = OneFault(.crash) { if case .rename = $0 { return true } else { return false } }
            let store = DiskChunkStore(root: dir, faults: faults)
            _ = try store.prepare()
            #expect(throws: SimulatedCrash.self) { try store.writeFrame(frame, for: id, sequence: 1) }
            #expect(try store.readFrame(id) == nil)
            let left = Self.temporaryFiles(dir)
            #expect(left.count == 1)
            #expect(try Data(contentsOf: URL(fileURLWithPath: dir + "/tmp/" + left[0])) == Data(frame), "fsynced whole")
            #expect(try DiskChunkStore(root: dir).prepare() == 1)
            #expect(try store.readFrame(id) == nil)
        }
    }

    @Test(
        "a disk that fills mid-write: the write fails with disk.full, and neither the id nor a temporary file remains")
    func diskFullMidWrite() throws {
        try Self.withDirectory { dir in
            let (id, frame) = Self.frame(seed: 3)
            let faults = OneFault(.writePartially(bytes: 4096, thenErrno: ENOSPC)) {
                if case .write = $0 { return true } else { return false }
            }
            let store = DiskChunkStore(root: dir, faults: faults)
            _ = try store.prepare()
            do {
                try store.writeFrame(frame, for: id, sequence: 1)
                Issue.record("a write to a full disk succeeded")
            } catch let error as DiskError {
                #expect(error.code == .insufficientStorage && error.reason == "disk.full", "\(error)")
                #expect(error.message.contains("No space left"), "\(error.message)")
            }
            #expect(try store.readFrame(id) == nil)
            #expect(Self.temporaryFiles(dir).isEmpty, "the partial temporary file is removed")
        }
    }

    @Test("EIO on read is an I/O error, not a missing chunk")
    func readError() throws {
        try Self.withDirectory { dir in
            let (id, frame) = Self.frame(seed: 4)
            let faults = OneFault(.fail(errno: EIO)) { if case .read = $0 { return true } else { return false } }
            let store = DiskChunkStore(root: dir, faults: faults)
            _ = try store.prepare()
            try store.writeFrame(frame, for: id, sequence: 1)
            do {
                _ = try store.readFrame(id)
                Issue.record("a failing read returned data")
            } catch let error as DiskError {
                #expect(error.code == .io, "\(error)")
            }
            #expect(try store.readFrame(id) == frame, "the next read succeeds")
        }
    }
}
