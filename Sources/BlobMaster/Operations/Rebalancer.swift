import BlobCore
import Foundation
import Logging

/// What the ring asks of one chunk: copies to make (source → target) and replicas it no longer
/// wants. Pure, so the dry run and the execution decide alike.
struct ChunkMove: Sendable, Equatable {
    struct Copy: Sendable, Hashable {
        var source: String
        var target: String
    }

    var copies: [Copy]
    var surplus: [String]
    /// A server the ring names is not alive, or no live replica exists to copy from.
    var blocked: Bool

    var isEmpty: Bool { copies.isEmpty && surplus.isEmpty }

    /// Copies go to each server the ring names that lacks the chunk, from a live replica the
    /// ring no longer wants when there is one (it is leaving anyway), else from any live one.
    static func plan(_ facts: ChunkFacts, ring: PlacementRing, alive: Set<String>) -> ChunkMove {
        let wanted = ring.replicaIDs(for: facts.id)
        let held = Set(facts.servers)
        let surplus = facts.servers.filter { !wanted.contains($0) }
        let liveHolders = facts.servers.filter { alive.contains($0) }
        let leaving = surplus.filter { alive.contains($0) }
        let sources = leaving.isEmpty ? liveHolders : leaving
        var copies: [Copy] = []
        var blocked = false
        for target in wanted where !held.contains(target) {
            guard alive.contains(target), !sources.isEmpty else {
                blocked = true
                continue
            }
            copies.append(Copy(source: sources[copies.count % sources.count], target: target))
        }
        return ChunkMove(copies: copies, surplus: surplus, blocked: blocked)
    }
}

/// Makes actual replica locations equal the ring's: plans (`--dry-run`), copies server to
/// server at a byte rate, deletes a surplus replica only once R other live copies are durable
/// and recorded, and keeps its state in the database, so a stop or a master restart resumes
/// without redoing work (the plan is always recomputed from the facts, which record what is done).
actor Rebalancer {
    let store: MetadataStore
    let membership: Membership
    let peer: ChunkServerPeer
    let logger: Logger
    private(set) var status = RebalanceStatus()
    /// The status as last saved or loaded: the expected value of the next compare-and-set.
    private var savedStatus: [UInt8]?
    private let saveGate = SerialGate()
    private var task: Task<Void, Never>?
    private let throttle = CopyThrottle(bytesPerSecond: nil)
    static let statusKey = "rebalance.status"
    static let concurrency = 4

    /// Pauses between passes and the wait for servers after a restart run on it.
    let clock: any ServiceClock

    init(
        store: MetadataStore, membership: Membership, peer: ChunkServerPeer, logger: Logger,
        clock: any ServiceClock = SystemClock()
    ) {
        self.store = store
        self.clock = clock
        self.membership = membership
        self.peer = peer
        self.logger = logger
    }

    /// Reads the saved state (the leader's, or a previous leader's).
    func load() async throws {
        if let json = try await store.setting(Self.statusKey) {
            savedStatus = json
            status = try JSONDecoder().decode(RebalanceStatus.self, from: Data(json))
        }
    }

    /// The status: this master's run while it runs one, else as saved by whoever ran it last.
    func currentStatus() async throws -> RebalanceStatus {
        if task == nil { try await load() }
        return status
    }

    /// Run by a master that has just become leader (inside its fence): a run that was going
    /// when the previous leader stopped or lost the lease goes on here.
    func resumeIfRunning() async throws {
        try await load()
        guard status.state == .running, task == nil else { return }
        logger.info("resuming rebalance", metadata: ["moved.bytes": "\(status.movedBytes)"])
        await throttle.setRate(status.maxBytesPerSecond)
        launch()
    }

    /// The plan: every chunk's facts against the current ring.
    func plan(maxBytesPerSecond: Int64?) async throws -> RebalancePlan {
        guard let ring = await membership.ring else {
            throw BlobError(.insufficientReplicas, reason: "ring.missing", "no ring yet; start more chunk servers")
        }
        let alive = await aliveServers()
        var pairs: [String: PlannedTransfer] = [:]
        var disk: [String: ServerDiskChange] = [:]
        var checked: Int64 = 0
        var stored: Int64 = 0
        var copyChunks: Int64 = 0
        var copyBytes: Int64 = 0
        var deleteChunks: Int64 = 0
        var deleteBytes: Int64 = 0
        var blocked: Int64 = 0
        var after: ChunkID?
        while true {
            let page = try await store.chunkFacts(after: after, limit: 10_000)
            guard let last = page.last else { break }
            after = last.id
            for f in page {
                checked += 1
                stored += f.storedByteCount * Int64(f.servers.count)
                let move = ChunkMove.plan(f, ring: ring, alive: alive)
                if move.blocked { blocked += 1 }
                for copy in move.copies {
                    let (source, target) = (copy.source, copy.target)
                    pairs[
                        "\(source)\u{0}\(target)",
                        default: PlannedTransfer(source: source, target: target, chunks: 0, bytes: 0)
                    ]
                    .chunks += 1
                    pairs["\(source)\u{0}\(target)"]!.bytes += f.storedByteCount
                    disk[
                        target,
                        default: ServerDiskChange(server: target, incomingBytes: 0, deletedBytes: 0, peakExtraBytes: 0)
                    ]
                    .incomingBytes += f.storedByteCount
                    copyChunks += 1
                    copyBytes += f.storedByteCount
                }
                for s in move.surplus {
                    disk[s, default: ServerDiskChange(server: s, incomingBytes: 0, deletedBytes: 0, peakExtraBytes: 0)]
                        .deletedBytes += f.storedByteCount
                    deleteChunks += 1
                    deleteBytes += f.storedByteCount
                }
            }
        }
        let servers = disk.values.sorted { $0.server < $1.server }.map { change in
            var c = change
            c.peakExtraBytes = c.incomingBytes
            return c
        }
        let rate = maxBytesPerSecond.flatMap { $0 > 0 ? $0 : nil }
        return RebalancePlan(
            ringEpoch: ring.epoch, replicaCount: ring.replicaCount, chunksChecked: checked, storedBytes: stored,
            transfers: pairs.values.sorted { ($0.source, $0.target) < ($1.source, $1.target) },
            copyChunks: copyChunks, copyBytes: copyBytes, deleteChunks: deleteChunks, deleteBytes: deleteBytes,
            blockedChunks: blocked, servers: servers, maxBytesPerSecond: rate,
            expectedSeconds: rate.map { Double(copyBytes) / Double($0) })
    }

    /// Starts (or resumes) a run; while one runs, only changes its rate.
    func start(maxBytesPerSecond: Int64?) async throws -> RebalanceStatus {
        let rate = maxBytesPerSecond.flatMap { $0 > 0 ? $0 : nil }
        await throttle.setRate(rate)
        status.maxBytesPerSecond = rate
        if status.state == .running, task != nil {
            try await save()
            return status
        }
        let plan = try await plan(maxBytesPerSecond: rate)
        let resuming = status.state == .stopped
        if !resuming {
            status = RebalanceStatus(state: .running, maxBytesPerSecond: rate, startedAtMilliseconds: Self.now())
        }
        status.state = .running
        status.ringEpoch = plan.ringEpoch
        status.plannedBytes = status.movedBytes + plan.copyBytes
        status.blockedChunks = plan.blockedChunks
        status.lastError = nil
        try await save()
        logger.info(
            "rebalance started", metadata: ["copy.bytes": "\(plan.copyBytes)", "delete.chunks": "\(plan.deleteChunks)"])
        launch()
        return status
    }

    func stop() async throws -> RebalanceStatus {
        task?.cancel()
        task = nil
        if status.state == .running {
            status.state = .stopped
            try await save()
        }
        return status
    }

    /// Ends the run's task without changing its saved state: the next leader resumes it (a
    /// shutdown, or leadership lost).
    func stopForShutdown() {
        task?.cancel()
        task = nil
    }

    /// Starts the run's task. It inherits the caller's ``LeaderFence``: every write it makes
    /// and every command it sends is stamped with the term that started it.
    private func launch() {
        task?.cancel()
        task = Task { await self.runPasses() }
    }

    /// Passes over every chunk until one moves nothing (new writes follow the ring, so this
    /// settles); at most a few, then finished, with whatever is blocked counted.
    private func runPasses() async {
        // After a master restart every server is unknown until it heartbeats: wait (bounded)
        // for them, or every move would look blocked.
        let deadline = clock.elapsed + .seconds(30)
        while await membership.hasUnsettledRingMembers(), clock.elapsed < deadline, !Task.isCancelled {
            try? await clock.sleep(for: .milliseconds(200))
        }
        // Passes until one moves nothing. A pass that moved nothing while some chunks are
        // blocked by a server not heard from yet, or that failed, is retried after a pause
        // (bounded): finishing then would leave the work undone.
        for attempt in 0..<20 {
            if Task.isCancelled { return }
            do {
                let moved = try await runOnePass()
                if Task.isCancelled { return }
                if moved > 0 { continue }
                let waiting = status.blockedChunks > 0 ? await membership.hasUnsettledRingMembers() : false
                if !waiting { break }
            } catch is CancellationError {
                return
            } catch let error as BlobError where error.code == .notLeader {
                // The term ended: the next leader resumes from the saved state.
                logger.warning("rebalance stops: leadership ended", metadata: ["error.message": "\(error)"])
                task = nil
                return
            } catch {
                status.errors += 1
                status.lastError = "\(error)"
                logger.warning("rebalance pass failed", metadata: ["error.message": "\(error)"])
            }
            try? await clock.sleep(for: .seconds(min(30, 1 << min(attempt, 5))))
        }
        guard !Task.isCancelled else { return }
        status.state = .finished
        status.updatedAtMilliseconds = Self.now()
        try? await save()
        task = nil
        logger.info(
            "rebalance finished",
            metadata: ["moved.bytes": "\(status.movedBytes)", "blocked": "\(status.blockedChunks)"])
    }

    /// One pass; returns how many chunks it changed.
    private func runOnePass() async throws -> Int {
        var after: ChunkID?
        var changed = 0
        var blocked: Int64 = 0
        var lastSave = clock.elapsed
        while !Task.isCancelled {
            let page = try await store.chunkFacts(after: after, limit: 1000)
            guard let last = page.last else { break }
            after = last.id
            guard let ring = await membership.ring else { throw CancellationError() }
            let alive = await aliveServers()
            let moves = page.map { ($0, ChunkMove.plan($0, ring: ring, alive: alive)) }.filter { !$0.1.isEmpty }
            blocked += Int64(moves.count { $0.1.blocked })
            // A few chunks at once, so one slow copy does not idle the rest.
            var index = 0
            while index < moves.count {
                try Task.checkCancellation()
                let batch = moves[index..<min(index + Self.concurrency, moves.count)]
                index += batch.count
                let outcomes = await withTaskGroup(of: MoveOutcome.self) { group in
                    for (facts, move) in batch {
                        group.addTask {
                            await self.execute(move, of: facts, replicaCount: ring.replicaCount, alive: alive)
                        }
                    }
                    var all: [MoveOutcome] = []
                    for await o in group { all.append(o) }
                    return all
                }
                for o in outcomes {
                    status.movedBytes += o.copiedBytes
                    status.movedChunks += o.copies
                    status.deletedChunks += o.deletes
                    if o.copies > 0 || o.deletes > 0 { changed += 1 }
                    if let error = o.error {
                        status.errors += 1
                        status.lastError = error
                    }
                }
                for o in outcomes where o.copiedBytes > 0 { try await throttle.pace(o.copiedBytes) }
            }
            if clock.elapsed - lastSave > .seconds(1) {
                status.updatedAtMilliseconds = Self.now()
                try await save()
                lastSave = clock.elapsed
            }
        }
        status.blockedChunks = blocked
        status.updatedAtMilliseconds = Self.now()
        try await save()
        return changed
    }

    struct MoveOutcome: Sendable {
        var copies: Int64 = 0
        var copiedBytes: Int64 = 0
        var deletes: Int64 = 0
        var error: String?
    }

    /// Copies first; each surplus replica is then deleted only when R other live copies are
    /// recorded (each recorded only after its server fsynced it), its fact dropped before its
    /// file, so the facts never claim more than the disks hold.
    private nonisolated func execute(
        _ move: ChunkMove, of facts: ChunkFacts, replicaCount: Int, alive: Set<String>
    ) async -> MoveOutcome {
        var outcome = MoveOutcome()
        var holders = Set(facts.servers)
        let bySource = Dictionary(grouping: move.copies, by: \.source)
        for (source, copies) in bySource.sorted(by: { $0.key < $1.key }) {
            guard let from = await membership.endpoint(source) else { continue }
            var targets: [ServerEndpoint] = []
            for c in copies { if let e = await membership.endpoint(c.target) { targets.append(e) } }
            do {
                let result = try await peer.copy(facts.id, from: from, to: targets)
                for server in result.storedServerIDs {
                    try await store.recordReplicas([facts.report], on: server)
                    holders.insert(server)
                }
                outcome.copies += Int64(result.storedServerIDs.count)
                outcome.copiedBytes += facts.storedByteCount * Int64(result.storedServerIDs.count)
                if let failure = result.failed.first {
                    outcome.error = "\(facts.id.shortHex)… to \(failure.target): \(failure.message)"
                }
            } catch {
                outcome.error = "\(facts.id.shortHex)… from \(source): \(error)"
            }
        }
        for server in move.surplus where alive.contains(server) {
            // Decide on fresh facts and liveness, not the page's: a copy counted a while ago
            // may have been quarantined, reported corrupt or lost with its server since.
            guard let fresh = try? await store.chunkFacts(of: [facts.id]).first, fresh.servers.contains(server),
                await membership.isUsable(server), let endpoint = await membership.endpoint(server)
            else { continue }
            var others = 0
            for s in fresh.servers where s != server && holders.contains(s) {
                if await membership.isUsable(s) { others += 1 }
            }
            guard others >= replicaCount else { continue }
            do {
                let removedAt = Self.now()
                try await store.removeReplicas([facts.id], on: server)
                holders.remove(server)
                do {
                    // A writer that sent the chunk to this server since the fact was dropped
                    // touched the file: the server keeps it, and so does the fact.
                    _ = try await peer.delete(facts.id, at: endpoint, unlessWrittenAfter: removedAt)
                    outcome.deletes += 1
                } catch let error as BlobError where error.code == .versionConflict {
                    try await store.recordReplicas([facts.report], on: server)
                    holders.insert(server)
                }
            } catch {
                // The fact is gone and the file may stay: garbage collection's orphan sweep
                // (or fsck --repair, which adopts it back after checking it is there) settles it.
                outcome.error = "delete \(facts.id.shortHex)… on \(server): \(error)"
            }
        }
        return outcome
    }

    private func aliveServers() async -> Set<String> {
        var alive: Set<String> = []
        for id in await membership.serverIDs where await membership.isUsable(id) { alive.insert(id) }
        return alive
    }

    /// Saves the status compare-and-set against what this rebalancer last saved or loaded: a
    /// status another master wrote since is not overwritten (the save fails instead).
    ///
    /// Saves queue on a gate: the actor is reentrant, and two saves in flight from one
    /// `savedStatus` would have the second refused as a conflict with the first.
    private func save() async throws {
        await saveGate.enter()
        do {
            let json = [UInt8](try JSONEncoder().encode(status))
            if json != savedStatus {
                try await store.saveSetting(Self.statusKey, json, expected: savedStatus)
                savedStatus = json
            }
            await saveGate.leave()
        } catch {
            await saveGate.leave()
            throw error
        }
    }

    /// Wall time on this machine: for the status shown to operators, and for the chunk
    /// server's "unless written after" check, which compares with its own file times.
    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
