public import BlobCore
import Foundation
import GRDB

/// Repair, rebalance, drain, garbage collection and fsck queries (see ``MetadataStore``).
extension SQLiteMetadataStore {
    // MARK: Operations

    public func chunkFacts(after: ChunkID?, limit: Int) async throws -> [ChunkFacts] {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT c.id, c.plain_size, c.stored_size, r.server_id
                FROM (SELECT id, plain_size, stored_size FROM chunks WHERE id > ? ORDER BY id LIMIT ?) c
                LEFT JOIN replicas r ON r.chunk_id = c.id
                ORDER BY c.id, r.server_id
                """, arguments: [Data(after?.digestBytes ?? []), limit])
            return try Self.groupFacts(rows)
        }
    }

    public func chunkFacts(of ids: [ChunkID]) async throws -> [ChunkFacts] {
        try await pool.read { db in
            var out: [ChunkFacts] = []
            for id in ids {
                let rows = try Row.fetchAll(db, sql: """
                    SELECT c.id, c.plain_size, c.stored_size, r.server_id
                    FROM chunks c LEFT JOIN replicas r ON r.chunk_id = c.id WHERE c.id = ? ORDER BY r.server_id
                    """, arguments: [Self.blob(id)])
                out += try Self.groupFacts(rows)
            }
            return out
        }
    }

    /// Rows of (id, plain, stored, server or NULL), ordered by id, as one fact per chunk.
    static func groupFacts(_ rows: [Row]) throws -> [ChunkFacts] {
        var out: [ChunkFacts] = []
        for row in rows {
            let idBytes: Data = row[0]
            let server: String? = row[3]
            if let last = out.last, last.id.digestBytes.elementsEqual(idBytes) {
                if let server { out[out.count - 1].servers.append(server) }
            } else {
                out.append(ChunkFacts(id: try ChunkID(digestBytes: [UInt8](idBytes)), plainByteCount: row[1],
                                      storedByteCount: row[2], servers: server.map { [$0] } ?? []))
            }
        }
        return out
    }

    public func replicas(onServer serverID: String, after: ChunkID?, limit: Int) async throws -> [(ChunkID, Int64)] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.chunk_id, c.stored_size FROM replicas r JOIN chunks c ON c.id = r.chunk_id
                WHERE r.server_id = ? AND r.chunk_id > ? ORDER BY r.chunk_id LIMIT ?
                """, arguments: [serverID, Data(after?.digestBytes ?? []), limit]).map { row in
                (try ChunkID(digestBytes: [UInt8](row[0] as Data)), row[1] as Int64)
            }
        }
    }

    public func holdings(of serverID: String) async throws -> (chunks: Int64, bytes: Int64, soleCopies: Int64) {
        try await pool.read { db in
            let row = try Row.fetchOne(db, sql: """
                SELECT COUNT(*), COALESCE(SUM(c.stored_size), 0),
                       COALESCE(SUM((SELECT COUNT(*) FROM replicas o WHERE o.chunk_id = r.chunk_id) = 1), 0)
                FROM replicas r JOIN chunks c ON c.id = r.chunk_id WHERE r.server_id = ?
                """, arguments: [serverID])
            return (row?[0] ?? 0, row?[1] ?? 0, row?[2] ?? 0)
        }
    }

    public func deleteServer(_ serverID: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM replicas WHERE server_id = ?", arguments: [serverID])
            try db.execute(sql: "DELETE FROM gc_orphans WHERE server_id = ?", arguments: [serverID])
            try db.execute(sql: "DELETE FROM servers WHERE id = ?", arguments: [serverID])
        }
    }

    public func setting(_ key: String) async throws -> [UInt8]? {
        try await pool.read { db in
            try Data.fetchOne(db, sql: "SELECT value FROM settings WHERE key = ?", arguments: [key]).map { [UInt8]($0) }
        }
    }

    public func saveSetting(_ key: String, _ value: [UInt8]) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value
                """, arguments: [key, Data(value)])
        }
    }

    /// Versions that are not current and have a newer version (live or tombstone) created
    /// before the cutoff, and still have manifest entries.
    static let prunableVersions = """
        SELECT v.id FROM versions v
        WHERE v.deleted = 0 AND v.chunk_count > 0
          AND NOT EXISTS (SELECT 1 FROM current_files f WHERE f.path = v.path AND f.version_id = v.id)
          AND EXISTS (SELECT 1 FROM versions n WHERE n.path = v.path AND n.version = v.version + 1 AND n.created_ms <= ?)
        """

    public func pruneVersions(supersededBefore cutoff: Int64, dryRun: Bool) async throws -> Int64 {
        if dryRun {
            return try await pool.read { db in
                try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM (\(Self.prunableVersions))", arguments: [cutoff]) ?? 0
            }
        }
        return try await pool.write { db in
            let ids = try Int64.fetchAll(db, sql: Self.prunableVersions, arguments: [cutoff])
            for id in ids {
                try db.execute(sql: "DELETE FROM manifest_entries WHERE version_id = ?", arguments: [id])
                try db.execute(sql: "DELETE FROM version_parts WHERE version_id = ?", arguments: [id])
                // The row stays (numbering, history), marked as holding nothing.
                try db.execute(sql: "UPDATE versions SET chunk_count = 0, stored_bytes = 0 WHERE id = ?", arguments: [id])
            }
            return Int64(ids.count)
        }
    }

    public func markUnreferencedChunks(nowMilliseconds: Int64) async throws -> Int64 {
        try await pool.write { db in
            try db.execute(sql: """
                DELETE FROM gc_candidates
                WHERE EXISTS (SELECT 1 FROM manifest_entries m WHERE m.chunk_id = gc_candidates.chunk_id)
                   OR NOT EXISTS (SELECT 1 FROM chunks c WHERE c.id = gc_candidates.chunk_id)
                """)
            try db.execute(sql: """
                INSERT INTO gc_candidates (chunk_id, marked_ms)
                SELECT c.id, ? FROM chunks c
                WHERE NOT EXISTS (SELECT 1 FROM manifest_entries m WHERE m.chunk_id = c.id)
                ON CONFLICT(chunk_id) DO NOTHING
                """, arguments: [nowMilliseconds])
            return try Int64.fetchOne(db, sql: "SELECT COUNT(*) FROM gc_candidates") ?? 0
        }
    }

    public func unreferencedChunks(after: ChunkID?, limit: Int) async throws -> [(ChunkFacts, markedAt: Int64?)] {
        try await pool.read { db in
            let rows = try Row.fetchAll(db, sql: """
                SELECT c.id, c.plain_size, c.stored_size, r.server_id, g.marked_ms
                FROM (SELECT id, plain_size, stored_size FROM chunks
                      WHERE id > ? AND NOT EXISTS (SELECT 1 FROM manifest_entries m WHERE m.chunk_id = chunks.id)
                      ORDER BY id LIMIT ?) c
                LEFT JOIN replicas r ON r.chunk_id = c.id
                LEFT JOIN gc_candidates g ON g.chunk_id = c.id
                ORDER BY c.id, r.server_id
                """, arguments: [Data(after?.digestBytes ?? []), limit])
            let facts = try Self.groupFacts(rows)
            var marks: [ChunkID: Int64] = [:]
            for row in rows {
                if let marked: Int64 = row[4] { marks[try ChunkID(digestBytes: [UInt8](row[0] as Data))] = marked }
            }
            return facts.map { ($0, marks[$0.id]) }
        }
    }

    public func collect(_ ids: [ChunkID], markedBefore: Int64) async throws -> [(ChunkFacts, markedAt: Int64)] {
        try await pool.write { db in
            var out: [(ChunkFacts, markedAt: Int64)] = []
            for id in ids {
                let key = Self.blob(id)
                guard let marked = try Int64.fetchOne(
                    db, sql: "SELECT marked_ms FROM gc_candidates WHERE chunk_id = ?", arguments: [key]),
                    marked <= markedBefore
                else { continue }
                let referenced = try Row.fetchOne(db, sql: "SELECT 1 FROM manifest_entries WHERE chunk_id = ? LIMIT 1",
                                                  arguments: [key]) != nil
                // A writer that sent the chunk again after the mark (its acknowledgement is newer)
                // is about to commit a manifest naming it: keep it.
                let rewritten = (try Int64.fetchOne(db, sql: "SELECT MAX(reported_ms) FROM replicas WHERE chunk_id = ?",
                                                    arguments: [key]) ?? 0) > marked
                if referenced || rewritten {
                    try db.execute(sql: "DELETE FROM gc_candidates WHERE chunk_id = ?", arguments: [key])
                    continue
                }
                let rows = try Row.fetchAll(db, sql: """
                    SELECT c.id, c.plain_size, c.stored_size, r.server_id
                    FROM chunks c LEFT JOIN replicas r ON r.chunk_id = c.id WHERE c.id = ? ORDER BY r.server_id
                    """, arguments: [key])
                guard let facts = try Self.groupFacts(rows).first else { continue }
                try db.execute(sql: "DELETE FROM replicas WHERE chunk_id = ?", arguments: [key])
                try db.execute(sql: "DELETE FROM chunks WHERE id = ?", arguments: [key])
                try db.execute(sql: "DELETE FROM gc_candidates WHERE chunk_id = ?", arguments: [key])
                out.append((facts, marked))
            }
            return out
        }
    }

    public func garbageCandidates(among ids: [ChunkID]) async throws -> Set<ChunkID> {
        try await pool.read { db in
            var out: Set<ChunkID> = []
            let statement = try db.cachedStatement(sql: "SELECT 1 FROM gc_candidates WHERE chunk_id = ?")
            for id in ids where try Row.fetchOne(statement, arguments: [Self.blob(id)]) != nil {
                out.insert(id)
            }
            return out
        }
    }

    public func noteOrphans(_ orphans: [(ChunkID, String)], nowMilliseconds: Int64) async throws -> [Int64] {
        try await pool.write { db in
            try orphans.map { id, server in
                try db.execute(sql: """
                    INSERT INTO gc_orphans (chunk_id, server_id, first_seen_ms) VALUES (?, ?, ?)
                    ON CONFLICT(chunk_id, server_id) DO NOTHING
                    """, arguments: [Self.blob(id), server, nowMilliseconds])
                return try Int64.fetchOne(db, sql: "SELECT first_seen_ms FROM gc_orphans WHERE chunk_id = ? AND server_id = ?",
                                          arguments: [Self.blob(id), server]) ?? nowMilliseconds
            }
        }
    }

    public func forgetOrphans(_ orphans: [(ChunkID, String)]) async throws {
        try await pool.write { db in
            for (id, server) in orphans {
                try db.execute(sql: "DELETE FROM gc_orphans WHERE chunk_id = ? AND server_id = ?",
                               arguments: [Self.blob(id), server])
            }
        }
    }

    public func files(using ids: [ChunkID], limit: Int) async throws -> [ChunkID: [String]] {
        try await pool.read { db in
            var out: [ChunkID: [String]] = [:]
            for id in ids {
                let paths = try Data.fetchAll(db, sql: """
                    SELECT DISTINCT f.path FROM manifest_entries m
                    JOIN versions v ON v.id = m.version_id
                    JOIN current_files f ON f.path = v.path AND f.version_id = v.id
                    WHERE m.chunk_id = ? LIMIT ?
                    """, arguments: [Self.blob(id), limit]).map { String(decoding: $0, as: UTF8.self) }
                if !paths.isEmpty { out[id] = paths }
            }
            return out
        }
    }
}
