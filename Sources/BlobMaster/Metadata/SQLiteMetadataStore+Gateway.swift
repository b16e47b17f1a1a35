public import BlobCore
import Foundation
import GRDB

/// Buckets, S3 access keys and multipart uploads, for gateways (see ``MetadataStore``).
extension SQLiteMetadataStore {
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
        let lifecycle = (row[3] as String).isEmpty ? nil
            : try? JSONDecoder().decode(BucketLifecycle.self, from: Data((row[3] as String).utf8))
        return BucketRecord(name: row[0], createdAtMilliseconds: row[1], publicRead: (row[2] as Int64) != 0, lifecycle: lifecycle)
    }

    public func setBucketLifecycle(_ name: String, _ lifecycle: BucketLifecycle?) async throws {
        let text = try lifecycle.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) } ?? ""
        try await pool.write { db in
            try db.execute(sql: "UPDATE buckets SET lifecycle = ? WHERE name = ?", arguments: [text, name])
            guard db.changesCount > 0 else { throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name)") }
        }
    }

    public func buckets() async throws -> [BucketRecord] {
        try await pool.read { db in
            try Row.fetchAll(db, sql: "SELECT name, created_ms, public_read, lifecycle FROM buckets ORDER BY name").map(Self.bucketRecord)
        }
    }

    public func bucket(_ name: String) async throws -> BucketRecord? {
        try await pool.read { db in
            try Row.fetchOne(db, sql: "SELECT name, created_ms, public_read, lifecycle FROM buckets WHERE name = ?", arguments: [name])
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

    public func uploads(prefix: String, createdBefore: Int64?, limit: Int) async throws -> [MultipartUpload] {
        try await pool.read { db in
            let bytes = Array(prefix.utf8)
            var sql = "SELECT id, path, content_type, created_ms, metadata FROM uploads WHERE path >= ?"
            var arguments: StatementArguments = [Data(bytes)]
            if let upper = Self.prefixUpperBound(bytes) {
                sql += " AND path < ?"
                arguments += [Data(upper)]
            }
            if let createdBefore {
                sql += " AND created_ms < ?"
                arguments += [createdBefore]
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
            _ = try tombstone(path, in: db, nowMilliseconds: nowMilliseconds)
        }
    }

    /// Writes a tombstone version of `path` and drops it from the live files, inside the caller's
    /// transaction; returns the tombstone's version number.
    static func tombstone(_ path: Data, in db: Database, nowMilliseconds: Int64) throws -> Int64 {
        let version = (try Int64.fetchOne(db, sql: "SELECT MAX(version) FROM versions WHERE path = ?", arguments: [path]) ?? 0) + 1
        try db.execute(sql: """
            INSERT INTO versions (path, version, size, content_type, sha256, created_ms, deleted) VALUES (?, ?, 0, '', '', ?, 1)
            """, arguments: [path, version, nowMilliseconds])
        try db.execute(sql: "DELETE FROM current_files WHERE path = ?", arguments: [path])
        return version
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

    public func completeUpload(_ id: String, parts: [CompletedPart], attributes: [String: String]? = nil,
                               precondition: WritePrecondition? = nil, minimumPartSize: Int64,
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
            var recorded: [FilePart] = []
            for (i, part) in parts.enumerated() {
                guard i == 0 || part.number > parts[i - 1].number else {
                    throw BlobError(.invalidArgument, reason: "upload.partOrder", "parts must be listed in ascending order of number")
                }
                let path = Self.blob(try upload.partPath(part.number))
                guard let row = try Row.fetchOne(db, sql: "SELECT version_id, size, sha256, metadata FROM current_files WHERE path = ?",
                                                 arguments: [path]), (row[2] as String) == part.sha256 else {
                    throw BlobError(.invalidArgument, reason: "upload.invalidPart",
                                    "part \(part.number) was not uploaded, or its digest is not \(part.sha256)")
                }
                let size: Int64 = row[1]
                let partAttributes = (Self.decodeMetadata(row[3]) ?? [:]).filter { ObjectAttribute.isAttribute($0.key) }
                recorded.append(FilePart(number: part.number, offset: offset, size: size,
                                         attributes: partAttributes.isEmpty ? nil : partAttributes))
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
            var metadata = upload.metadata ?? [:]
            for (name, value) in attributes ?? [:] where ObjectAttribute.isAttribute(name) { metadata[name] = value }
            let manifest = ManifestCommit(
                path: upload.path, size: offset, contentType: upload.contentType,
                sha256: ManifestCommit.compositeDigest(ofParts: parts.map(\.sha256)), chunks: entries,
                metadata: metadata.isEmpty ? nil : metadata, precondition: precondition)
            try manifest.validate(maxChunks: Self.maxManifestChunks)
            let version = try Self.commit(manifest, in: db, nowMilliseconds: nowMilliseconds)
            let versionID = try Int64.fetchOne(db, sql: "SELECT id FROM versions WHERE path = ? AND version = ?",
                                               arguments: [Self.blob(upload.path), version.version])
            let insert = try db.cachedStatement(sql: """
                INSERT INTO version_parts (version_id, part_number, offset, size, attributes) VALUES (?, ?, ?, ?, ?)
                """)
            for part in recorded {
                try insert.execute(arguments: [versionID, part.number, part.offset, part.size, Self.encodeMetadata(part.attributes)])
            }
            try Self.tombstoneParts(of: upload, in: db, nowMilliseconds: nowMilliseconds)
            try db.execute(sql: "DELETE FROM uploads WHERE id = ?", arguments: [id])
            return version
        }
    }

    /// The current version of `path` and, when a multipart upload made it, its parts in order.
    public func parts(of path: BlobPath) async throws -> FileParts? {
        try await pool.read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT \(Self.currentColumns), version_id FROM current_files WHERE path = ?",
                                             arguments: [Self.blob(path)]) else { return nil }
            let parts = try Row.fetchAll(db, sql: """
                SELECT part_number, offset, size, attributes FROM version_parts WHERE version_id = ? ORDER BY part_number
                """, arguments: [row[10] as Int64]).map { part in
                FilePart(number: part[0], offset: part[1], size: part[2], attributes: Self.decodeMetadata(part[3]))
            }
            return FileParts(file: try Self.fileVersion(row), parts: parts)
        }
    }
}
