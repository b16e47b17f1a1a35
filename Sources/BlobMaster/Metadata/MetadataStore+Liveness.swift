public import BlobCore
import Foundation

/// A chunk server's last heartbeat as stored, in database milliseconds.
public struct HeartbeatRecord: Sendable, Hashable {
    public var serverID: String
    public var heardMilliseconds: Int64
    public var sequence: Int64
    public var usage: ServerUsage
}

/// Everything a master needs to judge the chunk servers, read in one go (``MetadataStore/clusterView()``).
public struct ClusterView: Sendable {
    public var servers: [ServerRecord]
    public var heartbeats: [HeartbeatRecord]
    /// Server id → end of its maintenance window, in database milliseconds.
    public var maintenance: [String: Int64]
    public var ringEpoch: UInt64?
    public var lease: LeaseRecord?
    public var nowMilliseconds: Int64
}

/// Liveness, maintenance windows and damage reports: state every master shares (see
/// ``MetadataStore``).
extension MetadataStore {
    /// Records heartbeats in one transaction, each at the time it carries (the receiving
    /// master's reading of the database clock when it arrived; 0: now), never going back from
    /// a later one another master recorded; returns the database's now.
    @discardableResult
    public func recordHeartbeats(_ beats: [HeartbeatRecord]) async throws -> Int64 {
        let encoder = JSONEncoder()
        let rows = try beats.map { ($0, String(decoding: try encoder.encode($0.usage), as: UTF8.self)) }
        return try await write { tx in
            let now = try await tx.now()
            _ = try await Self.batched(rows) { slice -> [Int] in
                try await tx.execute(
                    "INSERT INTO server_liveness (server_id, heard_ms, sequence, usage) VALUES "
                        + Array(repeating: "(?, ?, ?, ?)", count: slice.count).joined(separator: ", ")
                            + """
                             ON CONFLICT(server_id) DO UPDATE SET heard_ms = excluded.heard_ms,
                                sequence = excluded.sequence, usage = excluded.usage
                             WHERE server_liveness.heard_ms < excluded.heard_ms
                            """,
                    slice.flatMap { beat, usage in
                        let heard = beat.heardMilliseconds > 0 ? min(beat.heardMilliseconds, now) : now
                        return [SQLValue.text(beat.serverID), .integer(heard), .integer(beat.sequence), .text(usage)]
                    })
                return []
            }
            return now
        }
    }

    /// The servers, their last heartbeats, maintenance windows, the newest ring epoch and the
    /// lease, with the database clock: one read.
    public func clusterView() async throws -> ClusterView {
        try await database.read { tx in
            let now = try await tx.now()
            let servers = try await tx.rows(
                "SELECT id, address, zone, weight, capacity_bytes, registered_ms FROM servers ORDER BY id"
            ).map { row in
                ServerRecord(
                    id: try row.text(0), address: try row.text(1), zone: try row.text(2), weight: try row.double(3),
                    capacityBytes: try row.optionalInt(4), registeredAtMilliseconds: try row.int(5))
            }
            let decoder = JSONDecoder()
            let heartbeats = try await tx.rows(
                "SELECT server_id, heard_ms, sequence, usage FROM server_liveness ORDER BY server_id"
            ).map { row in
                HeartbeatRecord(
                    serverID: try row.text(0), heardMilliseconds: try row.int(1), sequence: try row.int(2),
                    usage: try decoder.decode(ServerUsage.self, from: Data(try row.text(3).utf8)))
            }
            var maintenance: [String: Int64] = [:]
            for row in try await tx.rows("SELECT server_id, until_ms FROM maintenance_windows") {
                maintenance[try row.text(0)] = try row.int(1)
            }
            let epoch = try await tx.row("SELECT MAX(epoch) FROM rings")?.optionalInt(0).map { UInt64($0) }
            let lease = try await tx.row(
                "SELECT \(Self.leaseColumns) FROM leader_lease WHERE name = ?", [.text(Self.backgroundLease)]
            ).map(Self.leaseRecord)
            return ClusterView(
                servers: servers, heartbeats: heartbeats, maintenance: maintenance, ringEpoch: epoch, lease: lease,
                nowMilliseconds: now)
        }
    }

    /// Starts (`seconds` > 0, from the database's now) or ends a server's maintenance window;
    /// returns its end in database milliseconds.
    @discardableResult
    public func setMaintenance(serverID: String, seconds: Int64) async throws -> Int64? {
        try await write { tx in
            guard seconds > 0 else {
                try await tx.execute("DELETE FROM maintenance_windows WHERE server_id = ?", [.text(serverID)])
                return nil
            }
            let until = try await tx.now() + seconds * 1000
            try await tx.execute(
                """
                INSERT INTO maintenance_windows (server_id, until_ms) VALUES (?, ?)
                ON CONFLICT(server_id) DO UPDATE SET until_ms = excluded.until_ms
                """, [.text(serverID), .integer(until)])
            return until
        }
    }

    /// Notes chunks found damaged, for repair to look at first (any master takes reports).
    public func reportDamage(_ ids: [ChunkID]) async throws {
        guard !ids.isEmpty else { return }
        let unique = Array(Set(ids)).sorted()
        try await write { tx in
            let now = try await tx.now()
            _ = try await Self.batched(unique) { slice -> [Int] in
                try await tx.execute(
                    "INSERT INTO damage_reports (chunk_id, reported_ms) VALUES "
                        + Array(repeating: "(?, ?)", count: slice.count).joined(separator: ", ")
                        + " ON CONFLICT(chunk_id) DO NOTHING",
                    slice.flatMap { [SQLValue.blob($0), .integer(now)] })
                return []
            }
        }
    }

    /// Damage reports not yet handled, oldest first.
    public func damageReports(limit: Int) async throws -> [ChunkID] {
        try await database.rows(
            "SELECT chunk_id FROM damage_reports ORDER BY reported_ms, chunk_id LIMIT ?", [.int(limit)]
        ).map { try $0.chunkID(0) }
    }

    /// Forgets damage reports that repair has handled.
    public func clearDamageReports(_ ids: [ChunkID]) async throws {
        guard !ids.isEmpty else { return }
        try await write { tx in
            _ = try await Self.batched(ids) { slice -> [Int] in
                try await tx.execute(
                    "DELETE FROM damage_reports WHERE chunk_id IN \(SQLStatement.placeholders(slice.count))",
                    slice.map { .blob($0) })
                return []
            }
        }
    }
}
