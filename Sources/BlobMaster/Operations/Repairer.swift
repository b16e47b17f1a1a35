import BlobCore
import BlobServerSupport
import Foundation
import Logging
import ServiceLifecycle
import Synchronization

/// Puts chunks back to R live copies, server to server, throttled, fewest copies first.
///
/// What it looks at, each pass: the replicas on servers down past the grace period (and not in
/// maintenance), chunks whose replicas were reported corrupt or vanished since the last pass,
/// and, at start and then every `fullScanInterval`, every chunk. A server back inside the grace
/// period was never down, so it causes no copies.
actor Repairer {
    let store: MetadataStore
    let membership: Membership
    let peer: ChunkServerPeer
    let throttle: CopyThrottle
    let logger: Logger
    /// On ``clock``'s monotonic reading.
    private var lastFullScan: Duration?
    private var fullScanRunning = false
    private var fullScanCursor: ChunkID?
    private var serverCursors: [String: ChunkID] = [:]
    let fullScanInterval: Duration
    let clock: any ServiceClock
    static let maxChunksPerPass = 100_000
    static let concurrency = 4

    /// Totals since the master started.
    private(set) var copiedChunks: Int64 = 0
    private(set) var copiedBytes: Int64 = 0
    private(set) var failures: Int64 = 0
    private(set) var passes: Int64 = 0
    /// What the last pass found short, and left short.
    private var lastShort: Int64?
    private var lastLeft: Int64?

    var activity: RepairActivity {
        RepairActivity(
            passes: passes, copiedChunks: copiedChunks, copiedBytes: copiedBytes, failures: failures,
            underReplicatedChunks: lastShort, queuedChunks: lastLeft)
    }

    init(
        store: MetadataStore, membership: Membership, peer: ChunkServerPeer, bytesPerSecond: Int64?,
        fullScanInterval: Duration, logger: Logger, clock: any ServiceClock = SystemClock()
    ) {
        self.store = store
        self.clock = clock
        self.membership = membership
        self.peer = peer
        self.throttle = CopyThrottle(bytesPerSecond: bytesPerSecond)
        self.fullScanInterval = fullScanInterval
        self.logger = logger
    }

    /// Chunks to look at in the next pass (a replica was reported corrupt or removed): kept in
    /// the database, so the leader sees reports that reached any master, and a new leader
    /// those its predecessor had not handled.
    func noteDamaged(_ ids: [ChunkID]) async throws {
        try await store.reportDamage(ids)
    }

    /// One pass; returns how many chunks got copies.
    @discardableResult
    func pass(fullScan forced: Bool = false) async throws -> Int {
        guard let ring = await membership.ring else {
            passes += 1
            return 0
        }
        let reported = try await store.damageReports(limit: Self.maxChunksPerPass)
        var candidates = Set(reported)
        let gone = Set(await membership.serversNeedingRepair())
        // Copies that still count: on servers that are not down past the grace.
        func counted(_ f: ChunkFacts) -> Int { f.servers.count { !gone.contains($0) } }
        // Each down server's chunks are walked from where the last pass stopped, so a server
        // with more chunks than one pass takes is covered in turn, not its first ones forever.
        for server in gone.sorted() {
            var after = serverCursors[server]
            var restarted = after == nil
            while candidates.count < Self.maxChunksPerPass {
                let page = try await store.replicas(onServer: server, after: after, limit: 10_000)
                guard let last = page.last else {
                    after = nil
                    if restarted { break }
                    restarted = true
                    continue
                }
                for (id, _) in page { candidates.insert(id) }
                after = last.0
            }
            serverCursors[server] = after
        }
        serverCursors = serverCursors.filter { gone.contains($0.key) }
        var facts = try await store.chunkFacts(of: Array(candidates))
        // The full scan also goes a bounded batch per pass, resuming where it stopped.
        if forced { fullScanCursor = nil }
        if forced || lastFullScan.map({ clock.elapsed - $0 >= fullScanInterval }) ?? true { fullScanRunning = true }
        if fullScanRunning {
            var after = fullScanCursor
            let known = candidates
            while facts.count < Self.maxChunksPerPass {
                let page = try await store.chunkFacts(after: after, limit: 10_000)
                guard let last = page.last else {
                    fullScanRunning = false
                    lastFullScan = clock.elapsed
                    after = nil
                    break
                }
                for f in page where !known.contains(f.id) && counted(f) < ring.replicaCount {
                    facts.append(f)
                }
                after = last.id
            }
            fullScanCursor = after
        }
        var work = facts.map { ($0, counted($0)) }.filter { $0.1 < ring.replicaCount }
        work.sort { $0.1 < $1.1 }
        // A few copies at once (each a read on one server and a fsynced write on another), in
        // order of fewest copies; the throttle paces them together.
        var repaired = 0
        var index = 0
        while index < work.count, !Task.isCancelled {
            let batch = work[index..<min(index + Self.concurrency, work.count)]
            index += batch.count
            repaired += try await withThrowingTaskGroup(of: Bool.self) { group in
                for (f, counted) in batch { group.addTask { try await self.repair(f, counted: counted) } }
                var done = 0
                for try await ok in group where ok { done += 1 }
                return done
            }
        }
        // Reports are handled once their chunks were looked at; a chunk still short is found
        // again by the server walk or the full scan.
        if !Task.isCancelled { try await store.clearDamageReports(reported) }
        if repaired > 0 || !work.isEmpty {
            logger.info("repair pass", metadata: ["chunk.count": "\(work.count)", "repaired": "\(repaired)"])
        }
        if !Task.isCancelled {
            passes += 1
            lastShort = Int64(work.count)
            lastLeft = Int64(work.count - repaired)
        }
        return repaired
    }

    /// Copies one chunk from a live holder to as many new servers as it lacks.
    func repair(_ facts: ChunkFacts, counted: Int) async throws -> Bool {
        guard let ring = await membership.ring else { return false }
        let choice = await membership.targetChoice(ring)
        let targets = choice.writeTargets(for: facts.id).filter { !facts.servers.contains($0) }
            .prefix(ring.replicaCount - counted)
        guard !targets.isEmpty else { return false }
        var sources: [ServerEndpoint] = []
        for s in facts.servers where await membership.isUsable(s) {
            if let e = await membership.endpoint(s) { sources.append(e) }
        }
        var endpoints: [ServerEndpoint] = []
        for t in targets { if let e = await membership.endpoint(t) { endpoints.append(e) } }
        for source in sources {
            do {
                let result = try await peer.copy(facts.id, from: source, to: endpoints)
                for server in result.storedServerIDs {
                    try await store.recordReplicas([facts.report], on: server)
                }
                guard !result.storedServerIDs.isEmpty else {
                    failures += 1
                    continue
                }
                copiedChunks += 1
                copiedBytes += facts.storedByteCount * Int64(result.storedServerIDs.count)
                try await throttle.pace(facts.storedByteCount * Int64(result.storedServerIDs.count))
                return true
            } catch let error as BlobError where error.code == .corruptChunk || error.code == .notFound {
                // That copy is gone or bad (the server quarantined it): forget it, try another.
                try await store.removeReplicas([facts.id], on: source.id)
                failures += 1
            } catch is CancellationError {
                throw CancellationError()
            } catch let error as BlobError where error.code == .notLeader {
                throw error
            } catch {
                failures += 1
                logger.debug(
                    "repair copy failed", metadata: ["chunk.id": "\(facts.id.shortHex)", "error.message": "\(error)"])
            }
        }
        return false
    }

}

/// Runs a background pass (repair, lifecycle) at an interval until shutdown; a failed pass is
/// logged and the next one runs on time. A `trigger` starts the next pass at once (a master that
/// has just become leader does not wait out an interval before its first pass).
struct PeriodicService: Service {
    let name: String
    let interval: Duration
    let clock: any ServiceClock
    let logger: Logger
    var trigger: PassTrigger? = nil
    /// Where failed passes are noted for the status page, if anywhere.
    var failures: RecentErrors? = nil
    let pass: @Sendable () async throws -> Void

    func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do {
                        try await pass()
                    } catch is CancellationError {
                        return
                    } catch {
                        logger.warning("\(name) pass failed", metadata: ["error.message": "\(error)"])
                        failures?.note("\(name) pass failed: \(error)")
                    }
                    try await pause()
                }
            }
        } catch is CancellationError {
            // Graceful shutdown.
        }
    }

    /// Sleeps one interval, or less if the trigger fires first.
    private func pause() async throws {
        guard let trigger else { return try await clock.sleep(for: interval) }
        let clock = self.clock
        let interval = self.interval
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await clock.sleep(for: interval) }
            group.addTask { await trigger.wait() }
            defer { group.cancelAll() }
            try await group.next()
        }
        try Task.checkCancellation()
    }
}

/// A wake-up call for one waiter: `fire` before `wait` is kept (once) until the wait.
final class PassTrigger: Sendable {
    private let state = Mutex<(pending: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    init() {}

    func fire() {
        let waiter = state.withLock { state -> CheckedContinuation<Void, Never>? in
            guard let waiter = state.waiter else {
                state.pending = true
                return nil
            }
            state.waiter = nil
            return waiter
        }
        waiter?.resume()
    }

    /// Returns when fired, or when the waiting task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let now = state.withLock { state -> Bool in
                    if state.pending || Task.isCancelled {
                        state.pending = false
                        return true
                    }
                    state.waiter = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            state.withLock { state -> CheckedContinuation<Void, Never>? in
                defer { state.waiter = nil }
                return state.waiter
            }?.resume()
        }
    }
}
