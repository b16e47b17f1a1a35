public import BlobCore
public import Foundation
import GRDB

/// ``MetadataStore`` on an embedded SQLite database (GRDB), in WAL mode.
///
/// Durability: `synchronous = FULL`, so the WAL is fsynced at every commit and an acknowledged
/// commit survives a power cut (WAL with NORMAL stays consistent but may lose the last commits).
/// Paths are stored as BLOBs of their UTF-8 bytes, so order and prefix ranges are plain byte
/// comparisons that use the primary key, and listing never scans with OFFSET.
public final class SQLiteMetadataStore: MetadataStore {
    public static let maxManifestChunks = 1 << 18
    let pool: DatabasePool

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

    // MARK: Chunks and replicas

    public func recordReplicas(_ reports: [ReplicaReport], on serverID: String, nowMilliseconds: Int64) async throws {
        try await pool.write { db in try Self.recordReplicas(reports, on: serverID, in: db, nowMilliseconds: nowMilliseconds) }
    }

    static func recordReplicas(_ reports: [ReplicaReport], on serverID: String, in db: Database, nowMilliseconds: Int64) throws {
        for r in reports {
            // Digests of the wrong size for the chunk are dropped, not kept: a ranged read
            // would only fail on them and fall back to whole chunks.
            let digests = r.blockDigests.flatMap {
                (0...Int64(Limits.maxChunkByteCount)).contains(r.plainByteCount)
                    && BlockDigests.isWellFormed($0, plainByteCount: Int(r.plainByteCount)) ? $0 : nil
            }
            try db.execute(sql: """
                INSERT INTO chunks (id, plain_size, stored_size, first_seen_ms, block_digests) VALUES (?, ?, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET block_digests = excluded.block_digests
                    WHERE chunks.block_digests IS NULL AND excluded.block_digests IS NOT NULL
                    AND chunks.plain_size = excluded.plain_size
                """, arguments: [Self.blob(r.chunkID), r.plainByteCount, r.storedByteCount, nowMilliseconds, digests])
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

    public func blockDigests(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Data] {
        try await pool.read { db in
            var out: [ChunkID: Data] = [:]
            let select = try db.cachedStatement(sql: "SELECT block_digests FROM chunks WHERE id = ?")
            for id in chunkIDs {
                if let digests = try Data.fetchOne(select, arguments: [Self.blob(id)]) { out[id] = digests }
            }
            return out
        }
    }

    public func readPlanFacts(of path: BlobPath, overlapping range: Range<Int64>) async throws -> ReadPlanFacts? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: """
                SELECT \(Self.currentColumns), version_id FROM current_files WHERE path = ?
                """), arguments: [Self.blob(path)]) else { return nil }
            let file = try Self.fileVersion(row)
            let rows = try Row.fetchAll(db.cachedStatement(sql: """
                SELECT chunk_id, offset, length FROM manifest_entries
                WHERE version_id = ? AND offset < ? AND offset + length > ? ORDER BY seq
                """), arguments: [row[10] as Int64, range.upperBound, range.lowerBound])
            var facts = ReadPlanFacts(file: file, entries: [], locations: [:], storedSizes: [:], blockDigests: [:])
            facts.entries = try rows.map { entry in
                ManifestEntry(chunkID: try ChunkID(digestBytes: [UInt8](entry[0] as Data)), offset: entry[1], length: entry[2])
            }
            let end = min(range.upperBound, file.size)
            let locations = try db.cachedStatement(sql: "SELECT server_id FROM replicas WHERE chunk_id = ? ORDER BY server_id")
            let chunk = try db.cachedStatement(sql: "SELECT stored_size, block_digests FROM chunks WHERE id = ?")
            for entry in facts.entries where facts.storedSizes[entry.chunkID] == nil {
                let id = Self.blob(entry.chunkID)
                let servers = try String.fetchAll(locations, arguments: [id])
                if !servers.isEmpty { facts.locations[entry.chunkID] = servers }
                guard let chunkRow = try Row.fetchOne(chunk, arguments: [id]) else { continue }
                facts.storedSizes[entry.chunkID] = chunkRow[0]
                // Only a chunk the range starts or ends inside is read by blocks.
                if entry.offset < range.lowerBound || entry.offset + entry.length > end, let digests = chunkRow[1] as Data? {
                    facts.blockDigests[entry.chunkID] = digests
                }
            }
            return facts
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
        if let precondition = manifest.precondition {
            let current = try Row.fetchOne(db, sql: "SELECT sha256, metadata FROM current_files WHERE path = ?",
                                           arguments: [blob(manifest.path)])
            switch precondition {
            case .absent:
                guard current == nil else {
                    throw BlobError(.failedPrecondition, reason: WritePrecondition.failedReason, "\(manifest.path) exists")
                }
            case .present:
                guard current != nil else {
                    throw BlobError(.notFound, reason: "file.notFound", "no file at \(manifest.path)")
                }
            case .etag(let etag):
                guard let current else {
                    throw BlobError(.notFound, reason: "file.notFound", "no file at \(manifest.path)")
                }
                let currentETag = decodeMetadata(current[1])?[ObjectAttribute.etag] ?? (current[0] as String)
                guard currentETag == etag else {
                    throw BlobError(.failedPrecondition, reason: WritePrecondition.failedReason,
                                    "the current version of \(manifest.path) has ETag \(currentETag), not \(etag)")
                }
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

    /// The version (the current one when `version` is nil) and its manifest entries; with
    /// `overlapping`, only the entries holding bytes of that range (a ranged read of a large
    /// file then decodes a few entries, not all of them).
    public func manifest(of path: BlobPath, version: Int64?, overlapping range: Range<Int64>? = nil) async throws -> (FileVersion, [ManifestEntry])? {
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
            let rows: [Row]
            if let range {
                rows = try Row.fetchAll(db, sql: """
                    SELECT chunk_id, offset, length FROM manifest_entries
                    WHERE version_id = ? AND offset < ? AND offset + length > ? ORDER BY seq
                    """, arguments: [row[10] as Int64, range.upperBound, range.lowerBound])
            } else {
                rows = try Row.fetchAll(db, sql: """
                    SELECT chunk_id, offset, length FROM manifest_entries WHERE version_id = ? ORDER BY seq
                    """, arguments: [row[10] as Int64])
            }
            let entries = try rows.map { entry in
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
        try await delete(path, ifVersion: nil, nowMilliseconds: nowMilliseconds)
    }

    /// Deletes the current version; with `ifVersion`, only while that version is still current
    /// (else 409 `file.precondition`: a writer got there first).
    public func delete(_ path: BlobPath, ifVersion expected: Int64?, nowMilliseconds: Int64) async throws -> FileVersion {
        try await pool.write { db in
            let key = Self.blob(path)
            guard let current = try Int64.fetchOne(db, sql: "SELECT version FROM current_files WHERE path = ?", arguments: [key]) else {
                throw BlobError(.notFound, reason: "file.notFound", "no file at \(path); list with `blobctl ls`")
            }
            if let expected, expected != current {
                throw BlobError(.failedPrecondition, reason: WritePrecondition.failedReason,
                                "\(path) is at version \(current), not \(expected)")
            }
            let version = try Self.tombstone(key, in: db, nowMilliseconds: nowMilliseconds)
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
