public import BlobCore
import Foundation
public import Logging

/// How long a leader's lease lasts, and how often it is renewed.
public struct LeasePolicy: Sendable, Hashable {
    /// How long a lease lasts from its last renewal, in database time. Another master takes
    /// over at most this long after a leader dies.
    public var timeToLive: Duration
    /// How often the leader renews (and followers try to take over).
    public var renewInterval: Duration
    /// How much earlier than the lease the leader stops on its own clock: room for its clock
    /// running slower than the database's.
    public var safetyMargin: Duration

    public init(timeToLive: Duration = .seconds(10), renewInterval: Duration? = nil, safetyMargin: Duration? = nil) {
        self.timeToLive = timeToLive
        self.renewInterval = renewInterval ?? timeToLive / 4
        self.safetyMargin = safetyMargin ?? timeToLive / 5
    }
}

/// One master's part in electing the leader: the lease row in the database, a term per tenure.
///
/// Each round (every ``LeasePolicy/renewInterval``) the leader renews its lease and every other
/// master tries to take an expired one (``MetadataStore/claimLease``). The leader counts itself
/// leader only until its own deadline: the time it *sent* its last successful renewal plus the
/// lease's time to live, less a margin, on its monotonic clock. That deadline falls before the
/// lease can expire in the database, so a leader that cannot renew (paused, cut off from the
/// database) stops before anyone else can start. Writes are fenced in the database as well
/// (``LeaderFence``), and chunk servers refuse commands from a lower term.
public actor LeaderElection {
    /// This master's instance id: new at every start, so a restarted master is a new holder.
    public nonisolated let holder: String
    let store: MetadataStore
    nonisolated let policy: LeasePolicy
    let clock: any ServiceClock
    let logger: Logger
    /// Take the lease at once even if unexpired: the only master of a SQLite database.
    let takeOverAtStart: Bool
    private var tookOver = false
    private var address = ""
    private var startedMilliseconds: Int64?
    private var tenure: (term: Int64, deadline: Duration)?
    /// The lease as the last round saw it.
    public private(set) var lastSeen: LeaseRecord?
    private var lapseAnnounced = false
    private var transitions: [@Sendable (LeaderTerm?) async -> Void] = []

    public init(
        store: MetadataStore, policy: LeasePolicy, takeOverAtStart: Bool, logger: Logger,
        clock: any ServiceClock = SystemClock(), holder: String? = nil
    ) {
        self.store = store
        self.policy = policy
        self.takeOverAtStart = takeOverAtStart
        self.logger = logger
        self.clock = clock
        self.holder = holder ?? UUID().uuidString.lowercased()
    }

    /// The address other masters and operators see for this master; a round records it soon
    /// (in a task of its own: the server's start does not wait on the database).
    public func setAddress(_ address: String) {
        self.address = address
        Task { await self.round() }
    }

    /// Called with the new term when this master becomes leader, and with nil when it stops
    /// being leader (lost, lapsed or released).
    public func onTransition(_ body: @escaping @Sendable (LeaderTerm?) async -> Void) {
        transitions.append(body)
    }

    /// This master's term while it leads by its own clock; nil otherwise.
    public var currentTerm: LeaderTerm? {
        guard let tenure, clock.elapsed < tenure.deadline else { return nil }
        return LeaderTerm(holder: holder, term: tenure.term)
    }

    /// The fence for leader-only work in the current term; nil when not leading.
    public var fence: LeaderFence? {
        guard let term = currentTerm else { return nil }
        return LeaderFence(term: term) { [self] in await self.currentTerm == term }
    }

    /// Runs `work` as the leader, fenced by the current term; throws `notLeader` (naming the
    /// leader when known) when this master does not lead.
    public func asLeader<T: Sendable>(_ work: @Sendable () async throws -> T) async throws -> T {
        guard let fence else { throw notLeaderError() }
        return try await LeaderFence.$current.withValue(fence) { try await work() }
    }

    /// The error a follower answers leader-only requests with.
    public func notLeaderError() -> BlobError {
        var message = "this master is not the leader"
        if let lease = lastSeen, lease.holder != holder {
            message += "; the leader is \(lease.address.isEmpty ? "master " + lease.holder : lease.address)"
            message += " (term \(lease.term))"
        }
        return BlobError(.notLeader, reason: "master.notLeader", message + "; ask it, or retry")
    }

    /// One round: renew, take over, or follow. Errors (the database unreachable) are logged;
    /// the tenure then lapses on its own deadline.
    public func round() async {
        let sentAt = clock.elapsed
        let wasLeading = currentTerm
        do {
            if startedMilliseconds == nil { startedMilliseconds = try await store.now() }
            let claim = try await store.claimLease(
                holder: holder, address: address, startedMilliseconds: startedMilliseconds ?? 0,
                term: tenure?.term, ttlMilliseconds: policy.timeToLive.wholeMilliseconds,
                gapMilliseconds: policy.timeToLive.wholeMilliseconds * 2,
                takeOver: takeOverAtStart && !tookOver)
            lastSeen = claim.lease
            if claim.leading {
                tookOver = true
                if tenure?.term != claim.lease.term {
                    logger.info(
                        "became leader", metadata: ["leader.term": "\(claim.lease.term)", "master.id": "\(holder)"])
                }
                tenure = (claim.lease.term, sentAt + policy.timeToLive - policy.safetyMargin)
                lapseAnnounced = false
            } else {
                if tenure != nil {
                    logger.warning(
                        "leadership lost",
                        metadata: ["leader.term": "\(claim.lease.term)", "leader.address": "\(claim.lease.address)"])
                }
                tenure = nil
            }
        } catch {
            logger.warning("leader lease round failed", metadata: ["error.message": "\(error)"])
        }
        await announce(from: wasLeading)
    }

    private func announce(from before: LeaderTerm?) async {
        let now = currentTerm
        guard now != before else { return }
        // A lapse already announced is not announced again when the round ends it for good.
        if now == nil, lapseAnnounced { return }
        for transition in transitions { await transition(now) }
    }

    /// Rounds until the task is cancelled; then gives the lease up, so another master takes over
    /// without waiting for it to expire.
    public func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                while !Task.isCancelled {
                    await self.round()
                    do { try await self.clock.sleep(for: self.policy.renewInterval) } catch { break }
                }
            }
            // A round can hang on an unreachable database: the deadline is watched apart.
            group.addTask {
                while !Task.isCancelled {
                    await self.noticeLapse()
                    do { try await self.clock.sleep(for: self.policy.renewInterval / 2) } catch { break }
                }
            }
            await group.waitForAll()
        }
        // In a task of its own: this one is cancelled, and the release must still reach the database.
        await Task { await self.release() }.value
    }

    /// Gives up the lease now (graceful stop).
    public func release() async {
        let before = currentTerm
        guard let tenure else { return }
        self.tenure = nil
        do {
            try await store.releaseLease(LeaderTerm(holder: holder, term: tenure.term))
            logger.info("leader lease released", metadata: ["leader.term": "\(tenure.term)"])
        } catch {
            logger.warning("leader lease release failed", metadata: ["error.message": "\(error)"])
        }
        await announce(from: before)
    }

    /// Announces a tenure that ran out on this master's clock while no round could end it (a
    /// round hanging on an unreachable database).
    func noticeLapse() async {
        guard let tenure, clock.elapsed >= tenure.deadline, !lapseAnnounced else { return }
        lapseAnnounced = true
        logger.warning("leader lease lapsed: no renewal in time", metadata: ["leader.term": "\(tenure.term)"])
        for transition in transitions { await transition(nil) }
    }
}
