public import BlobCore
import Foundation

/// Membership, ring, settings, and the repair, rebalance, drain, gc and fsck queries (see
/// ``MetadataStore``).
extension MetadataStore {
    // MARK: Servers and rings

    /// Saves (inserts or replaces) what the master knows of a chunk server.
    public func saveServer(_ server: ServerRecord) async throws {
        try await write { tx in
            try await tx.execute(
                """
                INSERT INTO servers (id, address, zone, weight, capacity_bytes, registered_ms) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET address = excluded.address, zone = excluded.zone,
                    weight = excluded.weight, capacity_bytes = excluded.capacity_bytes
                """,
                [
                    .text(server.id), .text(server.address), .text(server.zone), .real(server.weight),
                    .optional(server.capacityBytes), .integer(server.registeredAtMilliseconds),
                ])
        }
    }

    /// Every chunk server the master has known, by id.
    public func servers() async throws -> [ServerRecord] {
        try await database.rows(
            "SELECT id, address, zone, weight, capacity_bytes, registered_ms FROM servers ORDER BY id"
        ).map { row in
            ServerRecord(
                id: try row.text(0), address: try row.text(1), zone: try row.text(2), weight: try row.double(3),
                capacityBytes: try row.optionalInt(4), registeredAtMilliseconds: try row.int(5))
        }
    }

    /// Forgets a server: its record and every replica fact naming it.
    public func deleteServer(_ serverID: String) async throws {
        try await write { tx in
            try await tx.execute("DELETE FROM replicas WHERE server_id = ?", [.text(serverID)])
            try await tx.execute("DELETE FROM gc_orphans WHERE server_id = ?", [.text(serverID)])
            try await tx.execute("DELETE FROM servers WHERE id = ?", [.text(serverID)])
        }
    }

    /// Saves a ring epoch (as its JSON), compare-and-set: only the epoch right after the newest
    /// saved one is taken (the first is 1), so of two masters that made the next ring from the
    /// same one, exactly one saves it; the other gets `staleEpoch` and reloads.
    public func saveRing(epoch: UInt64, json: [UInt8]) async throws {
        do {
            try await write { tx in
                let newest = try await tx.row("SELECT MAX(epoch) FROM rings")?.optionalInt(0) ?? 0
                guard Int64(epoch) == newest + 1 else {
                    throw BlobError(
                        .staleEpoch, reason: "ring.staleEpoch",
                        "ring epoch \(epoch) does not follow the newest saved epoch \(newest)")
                }
                try await tx.execute(
                    "INSERT INTO rings (epoch, json) VALUES (?, ?)", [.integer(Int64(epoch)), .blob(json)])
            }
        } catch  where database.isUniqueViolation(error) {
            throw BlobError(
                .staleEpoch, reason: "ring.staleEpoch", "ring epoch \(epoch) was saved by another master first")
        }
    }

    /// The newest saved ring's JSON, if any.
    public func latestRing() async throws -> [UInt8]? {
        try await database.row("SELECT json FROM rings ORDER BY epoch DESC LIMIT 1")?.blob(0)
    }

    // MARK: Settings

    /// A small persisted value (operation state), by key.
    public func setting(_ key: String) async throws -> [UInt8]? {
        try await database.row("SELECT value FROM settings WHERE key = ?", [.text(key)])?.blob(0)
    }

    /// Saves a setting, compare-and-set: only while its stored value is `expected` (nil: not
    /// set). Otherwise throws `versionConflict` and changes nothing: another writer changed it
    /// since the caller read it.
    public func saveSetting(_ key: String, _ value: [UInt8], expected: [UInt8]?) async throws {
        let conflict = BlobError(
            .versionConflict, reason: "setting.changed",
            "setting \(key) was changed by another writer; read it again and retry")
        do {
            try await write { tx in
                if let expected {
                    guard
                        try await tx.execute(
                            "UPDATE settings SET value = ? WHERE key = ? AND value = ? RETURNING key",
                            [.blob(value), .text(key), .blob(expected)]) == 1
                    else { throw conflict }
                } else {
                    // A concurrent insert of the same key makes this one a unique violation.
                    try await tx.execute("INSERT INTO settings (key, value) VALUES (?, ?)", [.text(key), .blob(value)])
                }
            }
        } catch  where database.isUniqueViolation(error) {
            throw conflict
        }
    }

    /// Reads a setting, transforms it and saves the result compare-and-set, again from a fresh
    /// read when another writer got there first (bounded); returns what was saved.
    @discardableResult
    public func updateSetting(_ key: String, _ transform: ([UInt8]?) throws -> [UInt8]) async throws -> [UInt8] {
        var attempt = 0
        while true {
            let old = try await setting(key)
            let new = try transform(old)
            do {
                try await saveSetting(key, new, expected: old)
                return new
            } catch let error as BlobError where error.code == .versionConflict && attempt < 16 {
                attempt += 1
            }
        }
    }

    // MARK: Chunk facts

    /// Known chunks after `after` in id order, each with the servers recorded as holding it.
    public func chunkFacts(after: ChunkID?, limit: Int) async throws -> [ChunkFacts] {
        try Self.groupFacts(
            try await database.rows(
                """
                SELECT c.id, c.plain_size, c.stored_size, r.server_id
                FROM (SELECT id, plain_size, stored_size FROM chunks WHERE id > ? ORDER BY id LIMIT ?) c
                LEFT JOIN replicas r ON r.chunk_id = c.id
                ORDER BY c.id, r.server_id
                """, [.blob(after?.digestBytes ?? []), .int(limit)]))
    }

    /// The same facts for these chunks; unknown ones are absent.
    public func chunkFacts(of ids: [ChunkID]) async throws -> [ChunkFacts] {
        try await database.read { tx in try await Self.chunkFacts(of: ids, in: tx) }
    }

    static func chunkFacts(of ids: [ChunkID], in tx: any SQLTransaction) async throws -> [ChunkFacts] {
        try await batched(ids) { batch in
            try groupFacts(
                try await tx.rows(
                    """
                    SELECT c.id, c.plain_size, c.stored_size, r.server_id
                    FROM chunks c LEFT JOIN replicas r ON r.chunk_id = c.id
                    WHERE c.id IN \(SQLStatement.placeholders(batch.count)) ORDER BY c.id, r.server_id
                    """, batch.map { .blob($0) }))
        }
    }

    /// Rows of (id, plain, stored, server or NULL), ordered by id, as one fact per chunk.
    static func groupFacts(_ rows: [SQLRow]) throws -> [ChunkFacts] {
        var out: [ChunkFacts] = []
        for row in rows {
            let id = try row.blob(0)
            let server = try row.optionalText(3)
            if let last = out.last, last.id.digestBytes.elementsEqual(id) {
                if let server { out[out.count - 1].servers.append(server) }
            } else {
                out.append(
                    ChunkFacts(
                        id: try ChunkID(digestBytes: id), plainByteCount: try row.int(1),
                        storedByteCount: try row.int(2), servers: server.map { [$0] } ?? []))
            }
        }
        return out
    }

    /// Chunks recorded on one server after `after`, in id order, with stored sizes.
    public func replicas(onServer serverID: String, after: ChunkID?, limit: Int) async throws -> [(ChunkID, Int64)] {
        try await database.rows(
            """
            SELECT r.chunk_id, c.stored_size FROM replicas r JOIN chunks c ON c.id = r.chunk_id
            WHERE r.server_id = ? AND r.chunk_id > ? ORDER BY r.chunk_id LIMIT ?
            """, [.text(serverID), .blob(after?.digestBytes ?? []), .int(limit)]
        ).map { row in
            (try row.chunkID(0), try row.int(1))
        }
    }

    /// What the master records on a server: replicas, their bytes, and how many are the only
    /// recorded copy of their chunk.
    public func holdings(of serverID: String) async throws -> (chunks: Int64, bytes: Int64, soleCopies: Int64) {
        let row = try await database.row(
            """
            SELECT COUNT(*), CAST(COALESCE(SUM(c.stored_size), 0) AS BIGINT),
                   CAST(COALESCE(SUM(CASE WHEN (SELECT COUNT(*) FROM replicas o WHERE o.chunk_id = r.chunk_id) = 1
                                          THEN 1 ELSE 0 END), 0) AS BIGINT)
            FROM replicas r JOIN chunks c ON c.id = r.chunk_id WHERE r.server_id = ?
            """, [.text(serverID)])
        return (try row?.int(0) ?? 0, try row?.int(1) ?? 0, try row?.int(2) ?? 0)
    }

    /// Current files using each chunk, at most `limit` per chunk.
    public func files(using ids: [ChunkID], limit: Int) async throws -> [ChunkID: [String]] {
        var out: [ChunkID: [String]] = [:]
        for row in try await Self.batched(
            ids,
            { batch in
                try await database.rows(
                    """
                    SELECT DISTINCT m.chunk_id, f.path FROM manifest_entries m
                    JOIN versions v ON v.id = m.version_id
                    JOIN current_files f ON f.path = v.path AND f.version_id = v.id
                    WHERE m.chunk_id IN \(SQLStatement.placeholders(batch.count)) ORDER BY m.chunk_id, f.path
                    """, batch.map { .blob($0) })
            })
        {
            let id = try row.chunkID(0)
            if out[id, default: []].count < limit {
                out[id, default: []].append(String(decoding: try row.blob(1), as: UTF8.self))
            }
        }
        return out
    }

    // MARK: Garbage collection

    /// Versions that are not current and have a newer version (live or tombstone) created
    /// before the cutoff, and still have manifest entries.
    static let prunableVersions = """
        SELECT v.id FROM versions v
        WHERE v.deleted = 0 AND v.chunk_count > 0
          AND NOT EXISTS (SELECT 1 FROM current_files f WHERE f.path = v.path AND f.version_id = v.id)
          AND EXISTS (SELECT 1 FROM versions n WHERE n.path = v.path AND n.version = v.version + 1
                      AND n.created_ms <= ?)
        """

    /// Drops the manifests of versions superseded (by a newer version or a delete) before
    /// `cutoff` (database time): they stop holding their chunks. Counts them only, with `dryRun`.
    public func pruneVersions(supersededBefore cutoff: Int64, dryRun: Bool) async throws -> Int64 {
        if dryRun {
            return try await database.row("SELECT COUNT(*) FROM (\(Self.prunableVersions)) p", [.integer(cutoff)])?.int(
                0) ?? 0
        }
        return try await write { tx in
            let ids = try await tx.rows(Self.prunableVersions, [.integer(cutoff)]).map { try $0.int(0) }
            _ = try await Self.batched(ids) { batch -> [Int] in
                let list = SQLStatement.placeholders(batch.count)
                let arguments = batch.map { SQLValue.integer($0) }
                try await tx.execute("DELETE FROM manifest_entries WHERE version_id IN \(list)", arguments)
                try await tx.execute("DELETE FROM version_parts WHERE version_id IN \(list)", arguments)
                // The row stays (numbering, history), marked as holding nothing.
                try await tx.execute(
                    "UPDATE versions SET chunk_count = 0, stored_bytes = 0 WHERE id IN \(list)", arguments)
                return []
            }
            return Int64(ids.count)
        }
    }

    /// Records every chunk no manifest names as a garbage candidate (marked now, by the database
    /// clock, unless marked before), and drops candidates that are referenced again. Returns how
    /// many are candidates.
    @discardableResult
    public func markUnreferencedChunks() async throws -> Int64 {
        try await write { tx in
            try await tx.execute(
                """
                DELETE FROM gc_candidates
                WHERE EXISTS (SELECT 1 FROM manifest_entries m WHERE m.chunk_id = gc_candidates.chunk_id)
                   OR NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = gc_candidates.chunk_id)
                """)
            try await tx.execute(
                """
                INSERT INTO gc_candidates (chunk_id, marked_ms)
                SELECT c.id, ? FROM chunks c
                WHERE NOT EXISTS (SELECT 1 FROM manifest_entries m WHERE m.chunk_id = c.id)
                ON CONFLICT(chunk_id) DO NOTHING
                """, [.integer(try await tx.now())])
            return try await tx.row("SELECT COUNT(*) FROM gc_candidates")?.int(0) ?? 0
        }
    }

    /// Unreferenced chunks after `after`, in id order, with facts and when they were marked
    /// (nil: not marked yet).
    public func unreferencedChunks(after: ChunkID?, limit: Int) async throws -> [(ChunkFacts, markedAt: Int64?)] {
        let rows = try await database.rows(
            """
            SELECT c.id, c.plain_size, c.stored_size, r.server_id, g.marked_ms
            FROM (SELECT id, plain_size, stored_size FROM chunks
                  WHERE id > ? AND NOT EXISTS (SELECT 1 FROM manifest_entries m WHERE m.chunk_id = chunks.id)
                  ORDER BY id LIMIT ?) c
            LEFT JOIN replicas r ON r.chunk_id = c.id
            LEFT JOIN gc_candidates g ON g.chunk_id = c.id
            ORDER BY c.id, r.server_id
            """, [.blob(after?.digestBytes ?? []), .int(limit)])
        let facts = try Self.groupFacts(rows)
        var marks: [ChunkID: Int64] = [:]
        for row in rows {
            if let marked = try row.optionalInt(4) { marks[try row.chunkID(0)] = marked }
        }
        return facts.map { ($0, marks[$0.id]) }
    }

    /// In one transaction: of these candidates, those still unreferenced, marked at or before
    /// `markedBefore` and not written by anyone since their mark lose their facts (chunk,
    /// replicas, mark). Returns them, with the servers that held them and their mark time.
    ///
    /// The chunks' rows are locked `FOR UPDATE` before anything is checked: a commit that holds
    /// one `FOR SHARE` finishes first and its manifest entries are then seen here, and a commit
    /// that comes after finds the chunk gone and is refused, so no live version ever names a
    /// collected chunk.
    public func collect(_ ids: [ChunkID], markedBefore: Int64) async throws -> [(ChunkFacts, markedAt: Int64)] {
        let sorted = Array(Set(ids)).sorted { $0.digestBytes.lexicographicallyPrecedes($1.digestBytes) }
        return try await write { tx in
            try await Self.batched(sorted) { batch in
                try await Self.collectBatch(Array(batch), markedBefore: markedBefore, in: tx)
            }
        }
    }

    static func collectBatch(
        _ batch: [ChunkID], markedBefore: Int64, in tx: any SQLTransaction
    )
        async throws -> [(ChunkFacts, markedAt: Int64)]
    {
        let list = SQLStatement.placeholders(batch.count)
        let arguments = batch.map { SQLValue.blob($0) }
        _ = try await tx.rows("SELECT id FROM chunks WHERE id IN \(list) ORDER BY id" + tx.dialect.forUpdate, arguments)
        var marks: [ChunkID: Int64] = [:]
        for row in try await tx.rows(
            "SELECT chunk_id, marked_ms FROM gc_candidates WHERE chunk_id IN \(list)", arguments)
        {
            marks[try row.chunkID(0)] = try row.int(1)
        }
        let referenced = Set(
            try await tx.rows(
                "SELECT DISTINCT chunk_id FROM manifest_entries WHERE chunk_id IN \(list)", arguments
            ).map { try $0.chunkID(0) })
        var lastWritten: [ChunkID: Int64] = [:]
        for row in try await tx.rows(
            "SELECT chunk_id, MAX(reported_ms) FROM replicas WHERE chunk_id IN \(list) GROUP BY chunk_id",
            arguments)
        {
            lastWritten[try row.chunkID(0)] = try row.int(1)
        }
        var keep: [ChunkID] = []
        var due: [ChunkID] = []
        for id in batch {
            guard let marked = marks[id], marked <= markedBefore else { continue }
            // A writer that sent the chunk again after the mark (its acknowledgement is newer)
            // is about to commit a manifest naming it: keep it.
            if referenced.contains(id) || (lastWritten[id] ?? 0) > marked {
                keep.append(id)
            } else {
                due.append(id)
            }
        }
        if !keep.isEmpty {
            try await tx.execute(
                "DELETE FROM gc_candidates WHERE chunk_id IN \(SQLStatement.placeholders(keep.count))",
                keep.map { .blob($0) })
        }
        guard !due.isEmpty else { return [] }
        let facts = try await chunkFacts(of: due, in: tx)
        let dueList = SQLStatement.placeholders(due.count)
        let dueArguments = due.map { SQLValue.blob($0) }
        try await tx.execute("DELETE FROM replicas WHERE chunk_id IN \(dueList)", dueArguments)
        try await tx.execute("DELETE FROM gc_candidates WHERE chunk_id IN \(dueList)", dueArguments)
        try await tx.execute("DELETE FROM chunks WHERE id IN \(dueList)", dueArguments)
        return facts.map { ($0, marks[$0.id] ?? 0) }
    }

    /// Which of these chunks are garbage candidates: placement must not offer them as present.
    public func garbageCandidates(among ids: [ChunkID]) async throws -> Set<ChunkID> {
        Set(
            try await Self.batched(ids) { batch in
                try await database.rows(
                    "SELECT chunk_id FROM gc_candidates WHERE chunk_id IN \(SQLStatement.placeholders(batch.count))",
                    batch.map { .blob($0) }
                ).map { try $0.chunkID(0) }
            })
    }

    /// Files on servers that the master has no fact for: remembers when each was first seen
    /// (database time; the grace runs from then) and returns that time per (chunk, server).
    public func noteOrphans(_ orphans: [(ChunkID, String)]) async throws -> [Int64] {
        guard !orphans.isEmpty else { return [] }
        return try await write { tx in
            let now = try await tx.now()
            var firstSeen: [ChunkID: [String: Int64]] = [:]
            _ = try await Self.batched(orphans) { batch -> [Int] in
                try await tx.execute(
                    """
                    INSERT INTO gc_orphans (chunk_id, server_id, first_seen_ms)
                    VALUES \(Array(repeating: "(?, ?, ?)", count: batch.count).joined(separator: ", "))
                    ON CONFLICT(chunk_id, server_id) DO NOTHING
                    """, batch.flatMap { [SQLValue.blob($0.0), .text($0.1), .integer(now)] })
                for row in try await tx.rows(
                    """
                    SELECT chunk_id, server_id, first_seen_ms FROM gc_orphans
                    WHERE chunk_id IN \(SQLStatement.placeholders(batch.count))
                    """, batch.map { .blob($0.0) })
                {
                    firstSeen[try row.chunkID(0), default: [:]][try row.text(1)] = try row.int(2)
                }
                return []
            }
            return orphans.map { firstSeen[$0.0]?[$0.1] ?? now }
        }
    }

    /// Forgets orphan notes (deleted, adopted or recorded since).
    public func forgetOrphans(_ orphans: [(ChunkID, String)]) async throws {
        guard !orphans.isEmpty else { return }
        try await write { tx in
            _ = try await Self.batched(orphans) { batch -> [Int] in
                try await tx.execute(
                    "DELETE FROM gc_orphans WHERE "
                        + Array(repeating: "(chunk_id = ? AND server_id = ?)", count: batch.count).joined(
                            separator: " OR "),
                    batch.flatMap { [SQLValue.blob($0.0), .text($0.1)] })
                return []
            }
        }
    }
}
