import BlobCore
import BlobServerSupport
import Glibc
import Logging
import NIOPosix
import Synchronization

/// The chunk server's storage engine: verified, durable, deduplicated writes; verified reads;
/// quarantine; statistics. Blocking file work runs on NIO's thread pool, never on the
/// cooperative pool.
///
/// Memory per stored chunk: none. There is no in-memory index; the file system is the index
/// (`DIR/chunks/ab/cd/<id>`), and the statistics are a few counters updated on each change.
final class ChunkStorage: Sendable {
    struct Statistics: Sendable {
        var chunkCount: Int64 = 0
        var storedBytes: Int64 = 0
        var logicalBytes: Int64 = 0
        var counters: [String: Int64] = [:]
    }

    let disk: DiskChunkStore
    let configuration: ChunkServerConfiguration
    let logger: Logger
    private let statistics = Mutex(Statistics())
    private let sequence = Atomic<UInt64>(0)
    private let gate = WriteGate()
    private let threadPool: NIOThreadPool

    private let freeSpace = Mutex<(free: Int64, reserve: Int64, checked: ContinuousClock.Instant?)>((0, 0, nil))
    /// Changes not yet reported to the master, oldest first; bounded (see ``noteForReport``).
    private let pendingReport = Mutex(ChunkReport(added: [], removed: [], quarantined: []))
    static let maxPendingReportEntries = 1 << 20

    /// `threadPool` runs the blocking file calls; it must be started and is not shut down here.
    /// Several threads let concurrent writes wait on fsync together (ext4 commits them in one
    /// journal transaction) instead of queueing behind one another.
    init(
        configuration: ChunkServerConfiguration, logger: Logger, threadPool: NIOThreadPool,
        metrics: ServerMetrics? = nil
    ) {
        self.disk = DiskChunkStore(root: configuration.dataDirectory, faults: configuration.diskFaults)
        self.configuration = configuration
        self.logger = logger
        self.threadPool = threadPool
        self.metrics = metrics
    }

    /// Where durable-write latencies go (`blob_chunkserver_durable_write_duration_seconds`).
    let metrics: ServerMetrics?

    /// Creates the layout, removes leftovers of a crash, counts what is stored.
    func open() async throws -> String {
        try await threadPool.runIfActive { [disk] in
            let removed = try disk.prepare()
            let id = try disk.loadOrCreateServerID()
            var stats = Statistics()
            var after: ChunkID?
            while true {
                let page = try disk.inventory(after: after, limit: 1000)
                for (chunk, size) in page {
                    stats.chunkCount += 1
                    stats.storedBytes += Int64(size)
                    stats.logicalBytes += Int64(disk.readHeader(chunk)?.plainByteCount ?? 0)
                }
                guard let last = page.last else { break }
                after = last.0
            }
            stats.counters["temporaryFilesRemovedAtStart"] = Int64(removed)
            self.statistics.withLock { $0 = stats }
            return id
        }
    }

    /// Queues a change for the next report to the master. Past the bound the oldest entries are
    /// dropped and counted; the full inventory sent at every registration repairs the gap.
    func noteForReport(added: ReplicaAcknowledgement? = nil, removed: ChunkID? = nil, quarantined: ChunkID? = nil) {
        let dropped = pendingReport.withLock { report -> Bool in
            if let added { report.added.append(added) }
            if let removed { report.removed.append(removed) }
            if let quarantined { report.quarantined.append(quarantined) }
            let total = report.added.count + report.removed.count + report.quarantined.count
            guard total > Self.maxPendingReportEntries else { return false }
            if !report.added.isEmpty {
                report.added.removeFirst()
            } else if !report.removed.isEmpty {
                report.removed.removeFirst()
            } else {
                report.quarantined.removeFirst()
            }
            return true
        }
        if dropped { count("reportEntriesDropped") }
    }

    /// Takes up to `limit` queued changes for one report.
    func takeReport(limit: Int) -> ChunkReport {
        pendingReport.withLock { report in
            let added = Array(report.added.prefix(limit))
            report.added.removeFirst(added.count)
            let removed = Array(report.removed.prefix(limit - added.count))
            report.removed.removeFirst(removed.count)
            let quarantined = Array(report.quarantined.prefix(limit - added.count - removed.count))
            report.quarantined.removeFirst(quarantined.count)
            return ChunkReport(added: added, removed: removed, quarantined: quarantined)
        }
    }

    /// Puts back a report that could not be delivered, ahead of newer changes.
    func requeue(_ failed: ChunkReport) {
        pendingReport.withLock { report in
            report.added.insert(contentsOf: failed.added, at: 0)
            report.removed.insert(contentsOf: failed.removed, at: 0)
            report.quarantined.insert(contentsOf: failed.quarantined, at: 0)
        }
    }

    func count(_ name: String, _ delta: Int64 = 1) {
        statistics.withLock { $0.counters[name, default: 0] += delta }
    }

    var snapshot: Statistics { statistics.withLock { $0 } }

    /// Free disk bytes and the reserve that writes must leave; statvfs at most once a second,
    /// minus what was written since.
    func space() async throws -> (free: Int64, reserve: Int64) {
        let cached = freeSpace.withLock { $0 }
        if let checked = cached.checked, checked.duration(to: .now) < .seconds(1) {
            return (cached.free, cached.reserve)
        }
        let fresh: (free: Int64, reserve: Int64) = try await threadPool.runIfActive { [disk, configuration] in
            let (free, total) = disk.diskSpace()
            let reserve = configuration.reserveBytes ?? min(total / 20, 4 << 30)
            return (free, reserve)
        }
        freeSpace.withLock { $0 = (fresh.free, fresh.reserve, .now) }
        return fresh
    }

    /// Refuses a write of `byteCount` bytes that would pass the capacity or eat the reserve.
    func checkRoom(for byteCount: Int) async throws {
        let used = snapshot.storedBytes
        if let capacity = configuration.capacityBytes, used + Int64(byteCount) > capacity {
            count("writesRefusedFull")
            throw BlobError(
                .insufficientStorage, reason: "capacity.exceeded",
                "server holds \(used) of its \(capacity)-byte capacity; a \(byteCount)-byte chunk does not fit. "
                    + "Write to another server, or raise --capacity")
        }
        let (free, reserve) = try await space()
        if free - Int64(byteCount) < reserve {
            count("writesRefusedFull")
            throw BlobError(
                .insufficientStorage, reason: "disk.reserve",
                "the disk has \(free) bytes free and \(reserve) are kept in reserve; "
                    + "write to another server or free space"
            )
        }
    }

    /// Verifies a frame sent by a caller: header, checksum, decompression, and that the plain
    /// bytes hash to `id`. Nothing is stored unless this passes. A copy forwarded by the peer
    /// that took the write from its client (`forwarded`) was checked all through there, so it
    /// is checked for its header and checksum only, which catch damage on the way (the first
    /// server that receives a chunk verifies its id; DESIGN.md, Integrity).
    /// CPU work only (checksum, decompression, SHA-256), so it runs on the caller's task.
    func verifyIncoming(_ frame: [UInt8], id: ChunkID, forwarded: Bool) throws(FrameError) -> FrameHeader {
        if forwarded { return try ChunkFrame.verify(frame) }
        let header = try FrameHeader(parsing: frame)
        _ = try ChunkFrame.decode(frame, expectedID: id)  // checks the frame too
        return header
    }

    /// Stores a verified frame durably. Returns true when an intact copy was already there
    /// (nothing is rewritten). Concurrent writes of one id are serialised, so they share one
    /// file write.
    func write(_ frame: [UInt8], header: FrameHeader, id: ChunkID) async throws -> Bool {
        await gate.acquire(id)
        do {
            let n = sequence.add(1, ordering: .relaxed).newValue
            // One trip to the thread pool: keep an intact existing copy, else write.
            let outcome = try await threadPool.runIfActive { [disk, metrics] () throws -> WriteOutcome in
                // Temporary file, write, fsync, rename, fsync of the directory.
                func writeDurably() throws {
                    let started = ContinuousClock.now
                    try disk.writeFrame(frame, for: id, sequence: n)
                    metrics?.observe(
                        "blob_chunkserver_durable_write_duration_seconds", ContinuousClock.now - started)
                }
                if let existing = try disk.readFrame(id) {
                    if (try? ChunkFrame.verify(existing)) != nil {
                        disk.touch(id)
                        return .alreadyPresent
                    }
                    // Keep the damaged copy for inspection, then store the good one.
                    _ = try disk.quarantine(id, stamp: Int64(time(nil)))
                    try writeDurably()
                    return .replacedDamaged(existing.count)
                }
                try writeDurably()
                return .written
            }
            statistics.withLock {
                switch outcome {
                case .alreadyPresent:
                    $0.counters["writesAlreadyPresent", default: 0] += 1
                case .written, .replacedDamaged:
                    if case .replacedDamaged(let size) = outcome {
                        // The damaged copy went to quarantine and the good one took its place.
                        $0.chunkCount -= 1
                        $0.storedBytes -= Int64(size)
                        $0.counters["quarantined", default: 0] += 1
                        $0.counters["damagedCopiesReplaced", default: 0] += 1
                    }
                    $0.chunkCount += 1
                    $0.storedBytes += Int64(frame.count)
                    $0.logicalBytes += Int64(header.plainByteCount)
                    $0.counters["writes", default: 0] += 1
                    $0.counters["bytesWritten", default: 0] += Int64(frame.count)
                }
            }
            freeSpace.withLock { $0.free -= Int64(frame.count) }
            noteForReport(
                added: ReplicaAcknowledgement(
                    id: id, plainByteCount: Int64(header.plainByteCount), storedByteCount: Int64(frame.count),
                    serverIDs: []))
            await gate.release(id)
            return outcome == .alreadyPresent
        } catch {
            count("writeErrors")
            await gate.release(id)
            throw error
        }
    }

    enum WriteOutcome: Equatable, Sendable {
        case written, alreadyPresent
        case replacedDamaged(Int)
    }

    /// The stored frame after checking its header and checksum. A frame that fails is moved to
    /// quarantine and reported as corrupt, so the caller reads another replica.
    func read(_ id: ChunkID) async throws -> [UInt8] {
        guard let frame = try await threadPool.runIfActive({ [disk] in try disk.readFrame(id) }) else {
            count("readsNotFound")
            throw BlobError(.notFound, reason: "chunk.notFound", "chunk \(id.shortHex)… is not stored on this server")
        }
        do throws(FrameError) {
            try ChunkFrame.verify(frame)
        } catch {
            count("checksumFailures")
            try await quarantine(id, storedByteCount: frame.count, because: error.message)
            throw BlobError(
                .corruptChunk, reason: "chunk.quarantined",
                "chunk \(id.shortHex)… failed its check on this server (\(error.reason)); "
                    + "moved to quarantine; read another replica", underlying: error)
        }
        statistics.withLock {
            $0.counters["reads", default: 0] += 1
            $0.counters["bytesRead", default: 0] += Int64(frame.count)
        }
        return frame
    }

    func quarantine(_ id: ChunkID, storedByteCount: Int, because reason: String) async throws {
        let stamp = Int64(time(nil))
        let moved = try await threadPool.runIfActive { [disk] in try disk.quarantine(id, stamp: stamp) }
        guard moved else { return }
        noteForReport(quarantined: id)
        statistics.withLock {
            $0.chunkCount -= 1
            $0.storedBytes -= Int64(storedByteCount)
            $0.counters["quarantined", default: 0] += 1
        }
        logger.warning("chunk quarantined", metadata: ["chunk.id": "\(id.shortHex)", "error.reason": "\(reason)"])
    }

    /// Deletes a chunk; false when it was not there. With `unlessWrittenAfter`, a chunk written
    /// (or found present by a write) after that instant is kept and `versionConflict` thrown;
    /// writes of the same id wait on the same gate, so the check and the unlink are atomic to them.
    func remove(_ id: ChunkID, unlessWrittenAfter: Int64? = nil) async throws -> Bool {
        await gate.acquire(id)
        let header: FrameHeader?
        let size: Int?
        do {
            header = try await threadPool.runIfActive { [disk] in disk.readHeader(id) }
            size = try await threadPool.runIfActive { [disk] in
                try disk.remove(id, unlessWrittenAfter: unlessWrittenAfter)
            }
        } catch {
            await gate.release(id)
            throw error
        }
        await gate.release(id)
        guard let size else { return false }
        noteForReport(removed: id)
        statistics.withLock {
            $0.chunkCount -= 1
            $0.storedBytes -= Int64(size)
            $0.logicalBytes -= Int64(header?.plainByteCount ?? 0)
            $0.counters["deletes", default: 0] += 1
        }
        return true
    }

    /// The stored frame as it is on disk, unchecked, for the scrubber.
    func readForScrub(_ id: ChunkID) async throws -> [UInt8]? {
        try await threadPool.runIfActive { [disk] in try disk.readFrame(id) }
    }

    /// Bytes `span` of a raw chunk's plain bytes, read alone; nil when the chunk must be read
    /// whole (compressed, or its header fails), so ``read(_:)`` checks and quarantines it.
    func readRawSpan(_ id: ChunkID, _ span: Range<Int>) async throws -> [UInt8]? {
        switch try await threadPool.runIfActive({ [disk] in try disk.readRawSpan(id, span) }) {
        case .bytes(let bytes):
            statistics.withLock {
                $0.counters["reads", default: 0] += 1
                $0.counters["bytesRead", default: 0] += Int64(bytes.count)
            }
            return bytes
        case .absent:
            count("readsNotFound")
            throw BlobError(.notFound, reason: "chunk.notFound", "chunk \(id.shortHex)… is not stored on this server")
        case .notRaw:
            return nil
        case .outOfRange(let plainByteCount):
            throw BlobError(
                .invalidArgument, reason: "chunk.span",
                "bytes \(span.lowerBound)..<\(span.upperBound) are outside chunk \(id.shortHex)… "
                    + "of \(plainByteCount) bytes"
            )
        }
    }

    /// The stored frame's header, without reading or checking the payload.
    func diskHeader(_ id: ChunkID) async throws -> FrameHeader? {
        try await threadPool.runIfActive { [disk] in disk.readHeader(id) }
    }

    func quarantined(limit: Int) async throws -> [ChunkID] {
        try await threadPool.runIfActive { [disk] in try disk.quarantinedIDs(limit: limit) }
    }

    func inventory(after: ChunkID?, limit: Int) async throws -> [(ChunkID, Int)] {
        try await threadPool.runIfActive { [disk] in try disk.inventory(after: after, limit: limit) }
    }
}

/// Serialises work on one chunk id: the second writer of an id waits for the first, then finds
/// the chunk present and writes nothing.
actor WriteGate {
    private var waiting: [ChunkID: [CheckedContinuation<Void, Never>]] = [:]

    func acquire(_ id: ChunkID) async {
        if waiting[id] == nil {
            waiting[id] = []
            return
        }
        await withCheckedContinuation { waiting[id]!.append($0) }
    }

    func release(_ id: ChunkID) {
        guard var queue = waiting[id], !queue.isEmpty else {
            waiting[id] = nil
            return
        }
        let next = queue.removeFirst()
        waiting[id] = queue
        next.resume()
    }
}
