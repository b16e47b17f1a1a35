public import BlobCore
import Foundation
import GRDB

/// ``MetadataStore`` on an embedded SQLite database (GRDB), in WAL mode.
///
/// Durability: `synchronous = FULL`, so the WAL is fsynced at every commit and an acknowledged
/// commit survives a power cut (WAL with NORMAL stays consistent but may lose the last commits).
/// Paths are stored as BLOBs of their UTF-8 bytes, so order and prefix ranges are plain byte
/// comparisons that use the primary key, and listing never scans with OFFSET.
public final class SQLiteMetadataStore: MetadataStore {
    public static let maxManifestChunks = 1 << 18
    private let pool: DatabasePool

    /// Opens (creating and migrating) the database at `path`.
    public init(path: String) throws {
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        configuration.busyMode = .timeout(10)
        pool = try DatabasePool(path: path, configuration: configuration)
        try Self.migrator.migrate(pool)
    }

    /// Versioned schema migrations; each runs once, in order, in its own transaction.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: namespace, chunks, replicas") { db in
            try db.execute(sql: """
                CREATE TABLE chunks (
                    id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 32),
                    plain_size INTEGER NOT NULL CHECK (plain_size >= 0),
                    stored_size INTEGER NOT NULL CHECK (stored_size >= 0),
                    first_seen_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE replicas (
                    chunk_id BLOB NOT NULL REFERENCES chunks(id),
                    server_id TEXT NOT NULL,
                    reported_ms INTEGER NOT NULL,
                    PRIMARY KEY (chunk_id, server_id)
                ) WITHOUT ROWID;
                CREATE INDEX replicas_by_server ON replicas(server_id, chunk_id);
                CREATE TABLE versions (
                    id INTEGER PRIMARY KEY,
                    path BLOB NOT NULL,
                    version INTEGER NOT NULL,
                    size INTEGER NOT NULL,
                    content_type TEXT NOT NULL,
                    sha256 TEXT NOT NULL,
                    created_ms INTEGER NOT NULL,
                    deleted INTEGER NOT NULL DEFAULT 0,
                    stored_bytes INTEGER NOT NULL DEFAULT 0,
                    chunk_count INTEGER NOT NULL DEFAULT 0,
                    UNIQUE (path, version)
                );
                CREATE TABLE manifest_entries (
                    version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
                    seq INTEGER NOT NULL,
                    chunk_id BLOB NOT NULL REFERENCES chunks(id),
                    offset INTEGER NOT NULL,
                    length INTEGER NOT NULL,
                    PRIMARY KEY (version_id, seq)
                ) WITHOUT ROWID;
                CREATE INDEX manifest_entries_by_chunk ON manifest_entries(chunk_id);
                CREATE TABLE current_files (
                    path BLOB PRIMARY KEY NOT NULL,
                    version_id INTEGER NOT NULL REFERENCES versions(id)
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v2: servers and rings") { db in
            try db.execute(sql: """
                CREATE TABLE servers (
                    id TEXT PRIMARY KEY NOT NULL,
                    address TEXT NOT NULL,
                    zone TEXT NOT NULL,
                    weight REAL NOT NULL,
                    capacity_bytes INTEGER,
                    registered_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE rings (
                    epoch INTEGER PRIMARY KEY NOT NULL,
                    json BLOB NOT NULL
                );
                """)
        }
        migrator.registerMigration("v3: listing fields in current_files") { db in
            // A list page then reads one contiguous key range of current_files instead of also
            // looking up each row's version (1,000 random B-tree probes per page on a large store).
            try db.execute(sql: """
                ALTER TABLE current_files ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE current_files ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE current_files ADD COLUMN content_type TEXT NOT NULL DEFAULT '';
                ALTER TABLE current_files ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
                ALTER TABLE current_files ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE current_files ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE current_files ADD COLUMN chunk_count INTEGER NOT NULL DEFAULT 0;
                UPDATE current_files SET
                    version = (SELECT v.version FROM versions v WHERE v.id = current_files.version_id),
                    size = (SELECT v.size FROM versions v WHERE v.id = current_files.version_id),
                    content_type = (SELECT v.content_type FROM versions v WHERE v.id = current_files.version_id),
                    sha256 = (SELECT v.sha256 FROM versions v WHERE v.id = current_files.version_id),
                    created_ms = (SELECT v.created_ms FROM versions v WHERE v.id = current_files.version_id),
                    stored_bytes = (SELECT v.stored_bytes FROM versions v WHERE v.id = current_files.version_id),
                    chunk_count = (SELECT v.chunk_count FROM versions v WHERE v.id = current_files.version_id);
                """)
        }
        migrator.registerMigration("v4: garbage collection and operation state") { db in
            try db.execute(sql: """
                CREATE TABLE gc_candidates (
                    chunk_id BLOB PRIMARY KEY NOT NULL,
                    marked_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE TABLE gc_orphans (
                    chunk_id BLOB NOT NULL,
                    server_id TEXT NOT NULL,
                    first_seen_ms INTEGER NOT NULL,
                    PRIMARY KEY (chunk_id, server_id)
                ) WITHOUT ROWID;
                CREATE TABLE settings (
                    key TEXT PRIMARY KEY NOT NULL,
                    value BLOB NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v5: buckets and access keys") { db in
            try db.execute(sql: """
                CREATE TABLE buckets (
                    name TEXT PRIMARY KEY NOT NULL,
                    created_ms INTEGER NOT NULL,
                    public_read INTEGER NOT NULL DEFAULT 0
                ) WITHOUT ROWID;
                CREATE TABLE access_keys (
                    id TEXT PRIMARY KEY NOT NULL,
                    secret TEXT NOT NULL,
                    name TEXT NOT NULL,
                    created_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                """)
        }
        migrator.registerMigration("v6: multipart uploads") { db in
            try db.execute(sql: """
                CREATE TABLE uploads (
                    id TEXT PRIMARY KEY NOT NULL,
                    path BLOB NOT NULL,
                    content_type TEXT NOT NULL,
                    created_ms INTEGER NOT NULL
                ) WITHOUT ROWID;
                CREATE INDEX uploads_by_path ON uploads(path, id);
                """)
        }
        migrator.registerMigration("v7: user metadata") { db in
            try db.execute(sql: """
                ALTER TABLE versions ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
                ALTER TABLE current_files ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
                ALTER TABLE uploads ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
                """)
        }
        return migrator
    }

    // MARK: Chunks and replicas

    public func recordReplicas(_ reports: [ReplicaReport], on serverID: String, nowMilliseconds: Int64) async throws {
        try await pool.write { db in try Self.recordReplicas(reports, on: serverID, in: db, nowMilliseconds: nowMilliseconds) }
    }

    static func recordReplicas(_ reports: [ReplicaReport], on serverID: String, in db: Database, nowMilliseconds: Int64) throws {
        for r in reports {
            try db.execute(sql: """
                INSERT INTO chunks (id, plain_size, stored_size, first_seen_ms) VALUES (?, ?, ?, ?)
                ON CONFLICT(id) DO NOTHING
                """, arguments: [Self.blob(r.chunkID), r.plainByteCount, r.storedByteCount, nowMilliseconds])
            try db.execute(sql: """
                INSERT INTO replicas (chunk_id, server_id, reported_ms) VALUES (?, ?, ?)
                ON CONFLICT(chunk_id, server_id) DO UPDATE SET reported_ms = excluded.reported_ms
                """, arguments: [Self.blob(r.chunkID), serverID, nowMilliseconds])
        }
    }

    public func removeReplicas(_ chunkIDs: [ChunkID], on serverID: String) async throws {
        try await pool.write { db in
            for id in chunkIDs {
                try db.execute(sql: "DELETE FROM replicas WHERE chunk_id = ? AND server_id = ?",
                               arguments: [Self.blob(id), serverID])
            }
        }
    }

    public func replicaLocations(of chunkIDs: [ChunkID]) async throws -> [ChunkID: [String]] {
        try await pool.read { db in
            var out: [ChunkID: [String]] = [:]
            for id in chunkIDs {
                let servers = try String.fetchAll(
                    db, sql: "SELECT server_id FROM replicas WHERE chunk_id = ? ORDER BY server_id", arguments: [Self.blob(id)])
                if !servers.isEmpty { out[id] = servers }
            }
            return out
        }
    }

    public func storedSizes(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Int64] {
        try await pool.read { db in
            var out: [ChunkID: Int64] = [:]
            for id in chunkIDs {
                if let size = try Int64.fetchOne(db, sql: "SELECT stored_size FROM chunks WHERE id = ?", arguments: [Self.blob(id)]) {
                    out[id] = size
                }
            }
            return out
        }
    }

    public func referenceCounts(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Int] {
        try await pool.read { db in
            var out: [ChunkID: Int] = [:]
            for id in chunkIDs {
                out[id] = try Int.fetchOne(
                    db, sql: "SELECT COUNT(*) FROM manifest_entries WHERE chunk_id = ?", arguments: [Self.blob(id)]) ?? 0
            }
            return out
        }
    }

    // MARK: Namespace

    public func commit(_ manifest: ManifestCommit, recording replicas: [String: [ReplicaReport]],
                       nowMilliseconds: Int64) async throws -> FileVersion {
        try manifest.validate(maxChunks: Self.maxManifestChunks)
        return try await pool.write { db in
            for (server, reports) in replicas.sorted(by: { $0.key < $1.key }) {
                try Self.recordReplicas(reports, on: server, in: db, nowMilliseconds: nowMilliseconds)
            }
            return try Self.commit(manifest, in: db, nowMilliseconds: nowMilliseconds)
        }
    }

    public func commit(batch manifests: [ManifestCommit], nowMilliseconds: Int64) async throws -> [FileVersion] {
        for manifest in manifests { try manifest.validate(maxChunks: Self.maxManifestChunks) }
        return try await pool.write { db in
            try manifests.map { try Self.commit($0, in: db, nowMilliseconds: nowMilliseconds) }
        }
    }

    /// One commit inside the caller's write transaction.
    static func commit(_ manifest: ManifestCommit, in db: Database, nowMilliseconds: Int64) throws -> FileVersion {
        // A part of an upload that was completed or aborted meanwhile would never be collected.
        let parts = MultipartUpload.partsRoot + "/"
        if manifest.path.value.hasPrefix(parts) {
            let id = manifest.path.value.dropFirst(parts.count).prefix { $0 != "/" }
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM uploads WHERE id = ?", arguments: [String(id)]) != nil else {
                throw BlobError(.notFound, reason: "upload.notFound", "no multipart upload \(id): it was completed or aborted")
            }
        }
        var storedBytes: Int64 = 0
        var checked: [ChunkID: Int64] = [:]
        for (i, entry) in manifest.chunks.enumerated() {
            if let stored = checked[entry.chunkID] {
                storedBytes += stored
                continue
            }
            guard let row = try Row.fetchOne(db, sql: """
                SELECT c.plain_size AS plain, c.stored_size AS stored,
                       (SELECT COUNT(*) FROM replicas r WHERE r.chunk_id = c.id) AS copies
                FROM chunks c WHERE c.id = ?
                """, arguments: [blob(entry.chunkID)]), (row["copies"] as Int64) > 0
            else {
                throw BlobError(.invalidArgument, reason: "manifest.unknownChunk",
                                "chunk \(i) (\(entry.chunkID.shortHex)…) is not durable on any server; "
                                    + "upload it before committing the manifest")
            }
            guard (row["plain"] as Int64) == entry.length else {
                throw BlobError(.invalidArgument, reason: "manifest.chunkLength",
                                "chunk \(i) (\(entry.chunkID.shortHex)…) is \(row["plain"] as Int64) bytes, "
                                    + "the manifest says \(entry.length)")
            }
            checked[entry.chunkID] = row["stored"]
            storedBytes += row["stored"] as Int64
        }
        let path = blob(manifest.path)
        let version = (try Int64.fetchOne(db, sql: "SELECT MAX(version) FROM versions WHERE path = ?", arguments: [path]) ?? 0) + 1
        let metadata = encodeMetadata(manifest.metadata)
        try db.execute(sql: """
            INSERT INTO versions (path, version, size, content_type, sha256, created_ms, deleted, stored_bytes, chunk_count, metadata)
            VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?)
            """, arguments: [path, version, manifest.size, manifest.contentType, manifest.sha256, nowMilliseconds,
                             storedBytes, manifest.chunks.count, metadata])
        let versionID = db.lastInsertedRowID
        let insert = try db.cachedStatement(sql: """
            INSERT INTO manifest_entries (version_id, seq, chunk_id, offset, length) VALUES (?, ?, ?, ?, ?)
            """)
        for (seq, entry) in manifest.chunks.enumerated() {
            try insert.execute(arguments: [versionID, seq, blob(entry.chunkID), entry.offset, entry.length])
        }
        try db.execute(sql: """
            INSERT INTO current_files (path, version_id, version, size, content_type, sha256, created_ms, stored_bytes,
                                       chunk_count, metadata)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(path) DO UPDATE SET version_id = excluded.version_id, version = excluded.version,
                size = excluded.size, content_type = excluded.content_type, sha256 = excluded.sha256,
                created_ms = excluded.created_ms, stored_bytes = excluded.stored_bytes, chunk_count = excluded.chunk_count,
                metadata = excluded.metadata
            """, arguments: [path, versionID, version, manifest.size, manifest.contentType, manifest.sha256, nowMilliseconds,
                             storedBytes, manifest.chunks.count, metadata])
        return FileVersion(
            path: manifest.path, version: version, size: manifest.size, contentType: manifest.contentType,
            sha256: manifest.sha256, createdAtMilliseconds: nowMilliseconds, isDeleted: false,
            storedBytes: storedBytes, chunkCount: manifest.chunks.count,
            metadata: manifest.metadata.flatMap { $0.isEmpty ? nil : $0 })
    }

    public func stat(_ path: BlobPath) async throws -> FileVersion? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT \(Self.currentColumns) FROM current_files WHERE path = ?",
                             arguments: [Self.blob(path)]).map(Self.fileVersion)
        }
    }

    public func manifest(of path: BlobPath, version: Int64?) async throws -> (FileVersion, [ManifestEntry])? {
        try await pool.read { db in
            let row: Row?
            if let version {
                row = try Row.fetchOne(db, sql: "SELECT \(Self.versionColumns), id FROM versions WHERE path = ? AND version = ? "
                                           + "AND NOT (chunk_count = 0 AND size > 0)",
                                       arguments: [Self.blob(path), version])
            } else {
                row = try Row.fetchOne(db, sql: """
                    SELECT \(Self.currentColumns), version_id FROM current_files WHERE path = ?
                    """, arguments: [Self.blob(path)])
            }
            guard let row else { return nil }
            let entries = try Row.fetchAll(db, sql: """
                SELECT chunk_id, offset, length FROM manifest_entries WHERE version_id = ? ORDER BY seq
                """, arguments: [row[10] as Int64]).map { entry in
                ManifestEntry(chunkID: try ChunkID(digestBytes: [UInt8](entry[0] as Data)),
                              offset: entry[1], length: entry[2])
            }
            return (try Self.fileVersion(row), entries)
        }
    }

    public func list(prefix: String, after: String?, limit: Int) async throws -> FileListPage {
        guard (1...10_000).contains(limit) else {
            throw BlobError(.invalidArgument, reason: "list.limit", "limit must be between 1 and 10000, got \(limit)")
        }
        let prefixBytes = Array(prefix.utf8)
        let upper = Self.prefixUpperBound(prefixBytes)
        // One lower bound, so SQLite seeks straight to it: with two (`>= prefix AND > after`) it
        // seeks to the prefix and filters every row up to the cursor, a scan that grows with the
        // number of files before the cursor (85 ms pages at 1M files).
        let lowerBound: (bytes: [UInt8], inclusive: Bool)
        if let after, Array(after.utf8).lexicographicallyPrecedes(prefixBytes) == false {
            lowerBound = (Array(after.utf8), false)
        } else {
            lowerBound = (prefixBytes, true)
        }
        return try await pool.read { db in
            var sql = "SELECT \(Self.currentColumns) FROM current_files f WHERE f.path \(lowerBound.inclusive ? ">=" : ">") ?"
            var arguments: StatementArguments = [Data(lowerBound.bytes)]
            if let upper {
                sql += " AND f.path < ?"
                arguments += [Data(upper)]
            }
            sql += " ORDER BY f.path LIMIT ?"
            arguments += [limit]
            let files = try Row.fetchAll(db, sql: sql, arguments: arguments).map(Self.fileVersion)
            return FileListPage(files: files, next: files.count == limit ? files.last?.path.value : nil)
        }
    }

    public func delete(_ path: BlobPath, nowMilliseconds: Int64) async throws -> FileVersion {
        try await pool.write { db in
            let key = Self.blob(path)
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM current_files WHERE path = ?", arguments: [key]) != nil else {
                throw BlobError(.notFound, reason: "file.notFound", "no file at \(path); list with `blobctl ls`")
            }
            let version = (try Int64.fetchOne(db, sql: "SELECT MAX(version) FROM versions WHERE path = ?", arguments: [key]) ?? 0) + 1
            try db.execute(sql: """
                INSERT INTO versions (path, version, size, content_type, sha256, created_ms, deleted)
                VALUES (?, ?, 0, '', '', ?, 1)
                """, arguments: [key, version, nowMilliseconds])
            try db.execute(sql: "DELETE FROM current_files WHERE path = ?", arguments: [key])
            return FileVersion(path: path, version: version, size: 0, contentType: "", sha256: "",
                               createdAtMilliseconds: nowMilliseconds, isDeleted: true, storedBytes: 0, chunkCount: 0)
        }
    }

    public func checkIntegrity() async throws -> Bool {
        try await pool.read { db in
            let result = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            let foreignKeys = try Row.fetchAll(db, sql: "PRAGMA foreign_key_check")
            return result == ["ok"] && foreignKeys.isEmpty
        }
    }

    // MARK: Membership

    public func saveServer(_ server: ServerRecord) async throws {
        try await pool.write { db in
            try db.execute(sql: """
                INSERT INTO servers (id, address, zone, weight, capacity_bytes, registered_ms) VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET address = excluded.address, zone = excluded.zone, weight = excluded.weight,
                    capacity_bytes = excluded.capacity_bytes
                """, arguments: [server.id, server.address, server.zone, server.weight, server.capacityBytes,
                                 server.registeredAtMilliseconds])
        }
    }

    public func servers() async throws -> [ServerRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM servers ORDER BY id").map { row in
                ServerRecord(id: row["id"], address: row["address"], zone: row["zone"], weight: row["weight"],
                             capacityBytes: row["capacity_bytes"], registeredAtMilliseconds: row["registered_ms"])
            }
        }
    }

    public func saveRing(epoch: UInt64, json: [UInt8]) async throws {
        try await pool.write { db in
            let newest = try Int64.fetchOne(db, sql: "SELECT MAX(epoch) FROM rings") ?? 0
            guard Int64(epoch) > newest else {
                throw BlobError(.staleEpoch, reason: "ring.staleEpoch", "ring epoch \(epoch) is not newer than \(newest)")
            }
            try db.execute(sql: "INSERT INTO rings (epoch, json) VALUES (?, ?)", arguments: [Int64(epoch), Data(json)])
        }
    }

    public func latestRing() async throws -> [UInt8]? {
        try await pool.read { db in
            try Data.fetchOne(db, sql: "SELECT json FROM rings ORDER BY epoch DESC LIMIT 1").map { [UInt8]($0) }
        }
    }

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

    // MARK: Buckets and access keys

    public func createBucket(_ bucket: BucketRecord) async throws {
        try await pool.write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM buckets WHERE name = ?", arguments: [bucket.name]) == nil else {
                throw BlobError(.alreadyExists, reason: "bucket.exists", "bucket \(bucket.name) already exists")
            }
            try db.execute(sql: "INSERT INTO buckets (name, created_ms, public_read) VALUES (?, ?, ?)",
                           arguments: [bucket.name, bucket.createdAtMilliseconds, bucket.publicRead ? 1 : 0])
        }
    }

    public func deleteBucket(_ name: String) async throws {
        try await pool.write { db in
            guard try Row.fetchOne(db, sql: "SELECT 1 FROM buckets WHERE name = ?", arguments: [name]) != nil else {
                throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name)")
            }
            let prefix = Array((name + "/").utf8)
            var sql = "SELECT 1 FROM current_files WHERE path >= ?"
            var arguments: StatementArguments = [Data(prefix)]
            if let upper = Self.prefixUpperBound(prefix) {
                sql += " AND path < ?"
                arguments += [Data(upper)]
            }
            guard try Row.fetchOne(db, sql: sql + " LIMIT 1", arguments: arguments) == nil else {
                throw BlobError(.failedPrecondition, reason: "bucket.notEmpty", "bucket \(name) is not empty; delete its objects first")
            }
            try db.execute(sql: "DELETE FROM buckets WHERE name = ?", arguments: [name])
        }
    }

    static func bucketRecord(_ row: Row) -> BucketRecord {
        BucketRecord(name: row[0], createdAtMilliseconds: row[1], publicRead: (row[2] as Int64) != 0)
    }

    public func buckets() async throws -> [BucketRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, created_ms, public_read FROM buckets ORDER BY name").map(Self.bucketRecord)
        }
    }

    public func bucket(_ name: String) async throws -> BucketRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT name, created_ms, public_read FROM buckets WHERE name = ?", arguments: [name])
                .map(Self.bucketRecord)
        }
    }

    public func setBucketAccess(_ name: String, publicRead: Bool) async throws {
        try await pool.write { db in
            try db.execute(sql: "UPDATE buckets SET public_read = ? WHERE name = ?", arguments: [publicRead ? 1 : 0, name])
            guard db.changesCount > 0 else { throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name)") }
        }
    }

    public func createAccessKey(_ key: AccessKey) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO access_keys (id, secret, name, created_ms) VALUES (?, ?, ?, ?)",
                           arguments: [key.accessKeyID, key.secretAccessKey ?? "", key.name, key.createdAtMilliseconds])
        }
    }

    public func accessKeys() async throws -> [AccessKey] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT id, name, created_ms FROM access_keys ORDER BY id").map { row in
                AccessKey(accessKeyID: row[0], secretAccessKey: nil, name: row[1], createdAtMilliseconds: row[2])
            }
        }
    }

    public func accessKey(_ id: String) async throws -> AccessKey? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, secret, name, created_ms FROM access_keys WHERE id = ?", arguments: [id]).map { row in
                AccessKey(accessKeyID: row[0], secretAccessKey: row[1], name: row[2], createdAtMilliseconds: row[3])
            }
        }
    }

    public func deleteAccessKey(_ id: String) async throws {
        try await pool.write { db in
            try db.execute(sql: "DELETE FROM access_keys WHERE id = ?", arguments: [id])
            guard db.changesCount > 0 else { throw BlobError(.notFound, reason: "key.notFound", "no access key \(id)") }
        }
    }

    // MARK: Multipart uploads

    static func uploadRecord(_ row: Row) -> MultipartUpload {
        MultipartUpload(id: row[0], path: BlobPath(validated: String(decoding: row[1] as Data, as: UTF8.self)),
                        contentType: row[2], createdAtMilliseconds: row[3], metadata: decodeMetadata(row[4]))
    }

    public func createUpload(_ upload: MultipartUpload) async throws {
        try await pool.write { db in
            try db.execute(sql: "INSERT INTO uploads (id, path, content_type, created_ms, metadata) VALUES (?, ?, ?, ?, ?)",
                           arguments: [upload.id, Self.blob(upload.path), upload.contentType, upload.createdAtMilliseconds,
                                       Self.encodeMetadata(upload.metadata)])
        }
    }

    public func upload(_ id: String) async throws -> MultipartUpload? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT id, path, content_type, created_ms, metadata FROM uploads WHERE id = ?", arguments: [id])
                .map(Self.uploadRecord)
        }
    }

    public func uploads(prefix: String, limit: Int) async throws -> [MultipartUpload] {
        try await pool.read { db in
            let bytes = Array(prefix.utf8)
            var sql = "SELECT id, path, content_type, created_ms, metadata FROM uploads WHERE path >= ?"
            var arguments: StatementArguments = [Data(bytes)]
            if let upper = Self.prefixUpperBound(bytes) {
                sql += " AND path < ?"
                arguments += [Data(upper)]
            }
            return try Row.fetchAll(db, sql: sql + " ORDER BY path, id LIMIT ?", arguments: arguments + [limit]).map(Self.uploadRecord)
        }
    }

    /// Tombstones every live part of an upload, inside the caller's transaction.
    static func tombstoneParts(of upload: MultipartUpload, in db: Database, nowMilliseconds: Int64) throws {
        let prefix = Array(upload.partsPrefix.utf8)
        var sql = "SELECT path FROM current_files WHERE path >= ?"
        var arguments: StatementArguments = [Data(prefix)]
        if let upper = prefixUpperBound(prefix) {
            sql += " AND path < ?"
            arguments += [Data(upper)]
        }
        for path in try Data.fetchAll(db, sql: sql, arguments: arguments) {
            let version = (try Int64.fetchOne(db, sql: "SELECT MAX(version) FROM versions WHERE path = ?", arguments: [path]) ?? 0) + 1
            try db.execute(sql: """
                INSERT INTO versions (path, version, size, content_type, sha256, created_ms, deleted) VALUES (?, ?, 0, '', '', ?, 1)
                """, arguments: [path, version, nowMilliseconds])
            try db.execute(sql: "DELETE FROM current_files WHERE path = ?", arguments: [path])
        }
    }

    public func abortUpload(_ id: String, nowMilliseconds: Int64) async throws {
        try await pool.write { db in
            guard let upload = try Row.fetchOne(db, sql: "SELECT id, path, content_type, created_ms, metadata FROM uploads WHERE id = ?",
                                                arguments: [id]).map(Self.uploadRecord) else {
                throw BlobError(.notFound, reason: "upload.notFound", "no multipart upload \(id)")
            }
            try Self.tombstoneParts(of: upload, in: db, nowMilliseconds: nowMilliseconds)
            try db.execute(sql: "DELETE FROM uploads WHERE id = ?", arguments: [id])
        }
    }

    public func completeUpload(_ id: String, parts: [CompletedPart], minimumPartSize: Int64,
                               nowMilliseconds: Int64) async throws -> FileVersion {
        try await pool.write { db in
            guard let upload = try Row.fetchOne(db, sql: "SELECT id, path, content_type, created_ms, metadata FROM uploads WHERE id = ?",
                                                arguments: [id]).map(Self.uploadRecord) else {
                throw BlobError(.notFound, reason: "upload.notFound", "no multipart upload \(id)")
            }
            guard !parts.isEmpty else {
                throw BlobError(.invalidArgument, reason: "upload.noParts", "a completion must name at least one part")
            }
            var entries: [ManifestEntry] = []
            var offset: Int64 = 0
            for (i, part) in parts.enumerated() {
                guard i == 0 || part.number > parts[i - 1].number else {
                    throw BlobError(.invalidArgument, reason: "upload.partOrder", "parts must be listed in ascending order of number")
                }
                let path = Self.blob(try upload.partPath(part.number))
                guard let row = try Row.fetchOne(db, sql: "SELECT version_id, size, sha256 FROM current_files WHERE path = ?",
                                                 arguments: [path]), (row[2] as String) == part.sha256 else {
                    throw BlobError(.invalidArgument, reason: "upload.invalidPart",
                                    "part \(part.number) was not uploaded, or its digest is not \(part.sha256)")
                }
                let size: Int64 = row[1]
                guard i == parts.count - 1 || size >= minimumPartSize else {
                    throw BlobError(.invalidArgument, reason: "upload.partTooSmall",
                                    "part \(part.number) is \(size) bytes; every part but the last must be at least \(minimumPartSize)")
                }
                for entry in try Row.fetchAll(db, sql: """
                    SELECT chunk_id, length FROM manifest_entries WHERE version_id = ? ORDER BY seq
                    """, arguments: [row[0] as Int64]) {
                    let length: Int64 = entry[1]
                    entries.append(ManifestEntry(chunkID: try ChunkID(digestBytes: [UInt8](entry[0] as Data)), offset: offset, length: length))
                    offset += length
                }
            }
            let manifest = ManifestCommit(
                path: upload.path, size: offset, contentType: upload.contentType,
                sha256: ManifestCommit.compositeDigest(ofParts: parts.map(\.sha256)), chunks: entries, metadata: upload.metadata)
            try manifest.validate(maxChunks: Self.maxManifestChunks)
            let version = try Self.commit(manifest, in: db, nowMilliseconds: nowMilliseconds)
            try Self.tombstoneParts(of: upload, in: db, nowMilliseconds: nowMilliseconds)
            try db.execute(sql: "DELETE FROM uploads WHERE id = ?", arguments: [id])
            return version
        }
    }

    // MARK: Encoding

    static func blob(_ id: ChunkID) -> Data { Data(id.digestBytes) }
    static func blob(_ path: BlobPath) -> Data { Data(path.value.utf8) }

    /// The smallest byte string greater than every string with this prefix; nil when the prefix
    /// is empty or all 0xFF (no upper bound needed).
    static func prefixUpperBound(_ prefix: [UInt8]) -> [UInt8]? {
        var bytes = prefix
        while let last = bytes.last {
            if last < 0xFF {
                bytes[bytes.count - 1] = last + 1
                return bytes
            }
            bytes.removeLast()
        }
        return nil
    }

    /// The columns of current_files that make a ``FileVersion`` (a live file: never deleted), in
    /// the order ``fileVersion(_:)`` reads them.
    static let currentColumns =
        "path, version, size, content_type, sha256, created_ms, 0 AS deleted, stored_bytes, chunk_count, metadata"
    /// The same columns of versions.
    static let versionColumns =
        "path, version, size, content_type, sha256, created_ms, deleted, stored_bytes, chunk_count, metadata"

    /// User metadata as stored: JSON with sorted keys, or '' for none.
    static func encodeMetadata(_ metadata: [String: String]?) -> String {
        guard let metadata, !metadata.isEmpty else { return "" }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return (try? encoder.encode(metadata)).map { String(decoding: $0, as: UTF8.self) } ?? ""
    }

    static func decodeMetadata(_ text: String) -> [String: String]? {
        text.isEmpty ? nil : try? JSONDecoder().decode([String: String].self, from: Data(text.utf8))
    }

    /// Reads columns by position: GRDB's lookup by name folds case and hashes on every access,
    /// which was most of the time of a 1,000-entry list page. Paths were validated when stored.
    static func fileVersion(_ row: Row) throws -> FileVersion {
        let pathBytes: Data = row[0]
        return FileVersion(
            path: BlobPath(validated: String(decoding: pathBytes, as: UTF8.self)), version: row[1], size: row[2],
            contentType: row[3], sha256: row[4], createdAtMilliseconds: row[5],
            isDeleted: (row[6] as Int64) != 0, storedBytes: row[7], chunkCount: row[8], metadata: decodeMetadata(row[9]))
    }
}
