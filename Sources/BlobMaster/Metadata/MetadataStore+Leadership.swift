import BlobCore
import Foundation

/// A leader's term: the fencing token of one tenure of the leader lease. Terms only grow; a
/// write or a command stamped with a term lower than the newest is from a replaced leader.
public struct LeaderTerm: Sendable, Hashable, Codable, CustomStringConvertible {
    /// The master instance that holds (or held) the lease.
    public var holder: String
    public var term: Int64

    public init(holder: String, term: Int64) {
        self.holder = holder
        self.term = term
    }

    public var description: String { "term \(term) of \(holder)" }
}

/// The lease row as stored, in database milliseconds.
public struct LeaseRecord: Sendable, Hashable, Codable {
    public var holder: String
    public var address: String
    public var term: Int64
    public var acquiredMilliseconds: Int64
    public var renewedMilliseconds: Int64
    public var expiresMilliseconds: Int64
    /// Since when masters have been receiving heartbeats without a gap (no master running,
    /// or none reaching the database): silence before it is not held against a server.
    public var observedSinceMilliseconds: Int64
}

/// What one round of the election found.
public struct LeaseClaim: Sendable {
    /// Whether the claimer holds the lease now (renewed or newly taken).
    public var leading: Bool
    /// The lease as it stands after the round.
    public var lease: LeaseRecord
    /// The database clock during the round.
    public var nowMilliseconds: Int64
}

/// A master that is running on this database, as it last said so.
public struct MasterRecord: Sendable, Hashable, Codable {
    public var id: String
    public var address: String
    public var startedMilliseconds: Int64
    public var seenMilliseconds: Int64
}

/// The fence of the current task: a leader's term, checked inside every write transaction the
/// task runs (``MetadataStore/write(_:)``) and sent with every command to a chunk server.
///
/// Leader-only work runs inside `LeaderFence.$current.withValue(fence) { … }`, so no write in
/// it can forget the check: a stale term writes nothing.
public struct LeaderFence: Sendable {
    @TaskLocal public static var current: LeaderFence?

    public let term: LeaderTerm
    /// Whether the holder still counts itself leader on its own monotonic clock.
    public let isCurrent: @Sendable () async -> Bool

    public init(term: LeaderTerm, isCurrent: @escaping @Sendable () async -> Bool) {
        self.term = term
        self.isCurrent = isCurrent
    }

    /// Throws `notLeader` when the holder's own deadline has passed: checked before each
    /// command to a chunk server, so a leader that cannot renew stops acting on its own.
    public func check() async throws {
        guard await isCurrent() else {
            throw BlobError(
                .notLeader, reason: "leader.expired",
                "this master's \(term) ended before it could renew the lease; the work stops here")
        }
    }
}

extension MetadataStore {
    /// The lease that decides which master runs background work.
    static let backgroundLease = "background"

    static let leaseColumns =
        "holder, address, term, acquired_ms, renewed_ms, expires_ms, observed_since_ms"

    static func leaseRecord(_ row: SQLRow) throws -> LeaseRecord {
        LeaseRecord(
            holder: try row.text(0), address: try row.text(1), term: try row.int(2),
            acquiredMilliseconds: try row.int(3), renewedMilliseconds: try row.int(4),
            expiresMilliseconds: try row.int(5), observedSinceMilliseconds: try row.int(6))
    }

    /// One round of the election, in one transaction on the database clock:
    /// - the holder of `term` renews it while it has not expired;
    /// - anyone takes it, as term + 1, once it has expired (or at once with `takeOver`: the one
    ///   master of a SQLite database, which has no one to wait for);
    /// - otherwise the claim reports who holds it.
    ///
    /// A taker that finds the lease expired for longer than `gapMilliseconds` starts a new
    /// observation period: no master was hearing heartbeats during the gap. The round also
    /// records that this master is running (``masters()``).
    public func claimLease(
        holder: String, address: String, startedMilliseconds: Int64, term: Int64?, ttlMilliseconds: Int64,
        gapMilliseconds: Int64, takeOver: Bool = false
    ) async throws -> LeaseClaim {
        try await write { tx in
            let now = try await tx.now()
            try await tx.execute(
                """
                INSERT INTO masters (id, address, started_ms, seen_ms) VALUES (?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET seen_ms = excluded.seen_ms,
                    address = CASE WHEN excluded.address = '' THEN masters.address ELSE excluded.address END
                """, [.text(holder), .text(address), .integer(startedMilliseconds), .integer(now)])
            // The first claim ever creates the row; a concurrent first claim waits for it and
            // then sees it below (ON CONFLICT DO NOTHING), so there is never a second term 1.
            let created = try await tx.rows(
                """
                INSERT INTO leader_lease (name, \(Self.leaseColumns)) VALUES (?, ?, ?, 1, ?, ?, ?, ?)
                ON CONFLICT(name) DO NOTHING RETURNING \(Self.leaseColumns)
                """,
                [
                    .text(Self.backgroundLease), .text(holder), .text(address), .integer(now), .integer(now),
                    .integer(now + ttlMilliseconds), .integer(now),
                ])
            if let row = created.first {
                return LeaseClaim(leading: true, lease: try Self.leaseRecord(row), nowMilliseconds: now)
            }
            guard
                let row = try await tx.row(
                    "SELECT \(Self.leaseColumns) FROM leader_lease WHERE name = ?" + tx.dialect.forUpdate,
                    [.text(Self.backgroundLease)])
            else {
                throw BlobError(.internal, reason: "leader.leaseMissing", "the leader lease row vanished")
            }
            var lease = try Self.leaseRecord(row)
            if lease.holder == holder, lease.term == term, lease.expiresMilliseconds > now {
                lease.renewedMilliseconds = now
                lease.expiresMilliseconds = now + ttlMilliseconds
                // A round that began before the master knew its address does not erase it.
                if !address.isEmpty { lease.address = address }
                try await tx.execute(
                    "UPDATE leader_lease SET renewed_ms = ?, expires_ms = ?, address = ? WHERE name = ?",
                    [
                        .integer(now), .integer(lease.expiresMilliseconds), .text(lease.address),
                        .text(Self.backgroundLease),
                    ])
                return LeaseClaim(leading: true, lease: lease, nowMilliseconds: now)
            }
            guard lease.expiresMilliseconds <= now || takeOver else {
                return LeaseClaim(leading: false, lease: lease, nowMilliseconds: now)
            }
            let observedSince =
                now - lease.expiresMilliseconds > gapMilliseconds ? now : lease.observedSinceMilliseconds
            lease = LeaseRecord(
                holder: holder, address: address, term: lease.term + 1, acquiredMilliseconds: now,
                renewedMilliseconds: now, expiresMilliseconds: now + ttlMilliseconds,
                observedSinceMilliseconds: observedSince)
            try await tx.execute(
                """
                UPDATE leader_lease SET holder = ?, address = ?, term = ?, acquired_ms = ?, renewed_ms = ?,
                    expires_ms = ?, observed_since_ms = ? WHERE name = ?
                """,
                [
                    .text(holder), .text(address), .integer(lease.term), .integer(now), .integer(now),
                    .integer(lease.expiresMilliseconds), .integer(observedSince), .text(Self.backgroundLease),
                ])
            return LeaseClaim(leading: true, lease: lease, nowMilliseconds: now)
        }
    }

    /// Ends a tenure early (a master stopping gracefully), so another master need not wait for
    /// the lease to run out. Changes nothing if the term is no longer the holder's.
    public func releaseLease(_ term: LeaderTerm) async throws {
        try await write { tx in
            let now = try await tx.now()
            try await tx.execute(
                "UPDATE leader_lease SET expires_ms = ? WHERE name = ? AND holder = ? AND term = ? AND expires_ms > ?",
                [.integer(now), .text(Self.backgroundLease), .text(term.holder), .integer(term.term), .integer(now)])
            try await tx.execute("DELETE FROM masters WHERE id = ?", [.text(term.holder)])
        }
    }

    /// The lease as stored, if any master ever took it.
    public func lease() async throws -> LeaseRecord? {
        try await database.row(
            "SELECT \(Self.leaseColumns) FROM leader_lease WHERE name = ?", [.text(Self.backgroundLease)]
        ).map(Self.leaseRecord)
    }

    /// The masters that said they were running, newest first, with the database clock.
    public func masters() async throws -> (masters: [MasterRecord], nowMilliseconds: Int64) {
        try await database.read { tx in
            let now = try await tx.now()
            let rows = try await tx.rows(
                "SELECT id, address, started_ms, seen_ms FROM masters ORDER BY seen_ms DESC, id")
            return (
                try rows.map {
                    MasterRecord(
                        id: try $0.text(0), address: try $0.text(1), startedMilliseconds: try $0.int(2),
                        seenMilliseconds: try $0.int(3))
                }, now
            )
        }
    }

    /// Forgets masters not seen for `olderThanMilliseconds` (stopped without a word).
    public func forgetMasters(unseenFor olderThanMilliseconds: Int64) async throws {
        try await write { tx in
            let now = try await tx.now()
            try await tx.execute("DELETE FROM masters WHERE seen_ms < ?", [.integer(now - olderThanMilliseconds)])
        }
    }

    /// The fence, inside a write transaction: the term must still hold an unexpired lease, in
    /// database time. On PostgreSQL the row is read `FOR SHARE`, which waits for a takeover in
    /// flight (it updates the row) and then sees the new term, so a takeover and a fenced
    /// write never interleave.
    static func requireLeadership(_ term: LeaderTerm, in tx: any SQLTransaction) async throws {
        let now = try await tx.now()
        guard
            try await tx.row(
                "SELECT term FROM leader_lease WHERE name = ? AND holder = ? AND term = ? AND expires_ms > ?"
                    + tx.dialect.forShare,
                [.text(backgroundLease), .text(term.holder), .integer(term.term), .integer(now)]) != nil
        else {
            throw BlobError(
                .notLeader, reason: "leader.fenced",
                "\(term) no longer holds the leader lease; the write was refused and nothing was changed")
        }
    }
}
