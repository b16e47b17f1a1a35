public import BlobCore
import Foundation

/// Buckets, S3 access keys and multipart uploads, for gateways (see ``MetadataStore``).
extension MetadataStore {
    // MARK: Buckets

    /// Creates a bucket, dated by the database clock; `alreadyExists` when it does, unless it was
    /// created under the same `requestID` (a creation sent again after a lost reply): then the
    /// answer is that bucket, as the first creation left it.
    @discardableResult
    public func createBucket(_ bucket: BucketRecord, requestID: String? = nil) async throws -> BucketRecord {
        try await write(repeatable: requestID != nil) { tx in
            let now = try await tx.now()
            // ON CONFLICT DO NOTHING: of two concurrent creations one inserts, the other sees no row.
            if try await tx.execute(
                """
                INSERT INTO buckets (name, created_ms, public_read, request_id) VALUES (?, ?, ?, ?)
                ON CONFLICT(name) DO NOTHING RETURNING name
                """,
                [
                    .text(bucket.name), .integer(now), .integer(bucket.publicRead ? 1 : 0),
                    requestID.map { .text($0) } ?? .null,
                ]) == 1
            {
                var created = bucket
                created.createdAtMilliseconds = now
                return created
            }
            if let requestID,
                let row = try await tx.row(
                    "SELECT name, created_ms, public_read, lifecycle FROM buckets WHERE name = ? AND request_id = ?",
                    [.text(bucket.name), .text(requestID)])
            {
                return try Self.bucketRecord(row)
            }
            throw BlobError(.alreadyExists, reason: "bucket.exists", "bucket \(bucket.name) already exists")
        }
    }

    /// Holds a bucket's row `FOR SHARE` for a write into it (the commit's transaction): a delete
    /// of the bucket then waits for the write, and sees its object; notFound when it is gone.
    static func lockBucketForWrite(_ name: String, in tx: any SQLTransaction) async throws {
        guard try await tx.row("SELECT 1 FROM buckets WHERE name = ?" + tx.dialect.forShare, [.text(name)]) != nil
        else {
            throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name); create it first")
        }
    }

    /// Deletes a bucket; `failedPrecondition` while any live file is under `NAME/`. The bucket's
    /// row is locked `FOR UPDATE` before the emptiness check, so a write into it that holds the
    /// row finishes first (and is seen), and one that comes after finds no bucket.
    public func deleteBucket(_ name: String) async throws {
        try await write { tx in
            guard try await tx.row("SELECT 1 FROM buckets WHERE name = ?" + tx.dialect.forUpdate, [.text(name)]) != nil
            else {
                throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name)")
            }
            let range = Self.prefixRange(Array((name + "/").utf8))
            guard try await tx.row("SELECT 1 FROM current_files WHERE \(range.sql) LIMIT 1", range.arguments) == nil
            else {
                throw BlobError(
                    .failedPrecondition, reason: "bucket.notEmpty",
                    "bucket \(name) is not empty; delete its objects first")
            }
            try await tx.execute("DELETE FROM buckets WHERE name = ?", [.text(name)])
        }
    }

    static func bucketRecord(_ row: SQLRow) throws -> BucketRecord {
        let text = try row.text(3)
        let lifecycle = text.isEmpty ? nil : try? JSONDecoder().decode(BucketLifecycle.self, from: Data(text.utf8))
        return BucketRecord(
            name: try row.text(0), createdAtMilliseconds: try row.int(1), publicRead: try row.int(2) != 0,
            lifecycle: lifecycle)
    }

    public func setBucketLifecycle(_ name: String, _ lifecycle: BucketLifecycle?) async throws {
        let text = try lifecycle.map { String(decoding: try JSONEncoder().encode($0), as: UTF8.self) } ?? ""
        try await write { tx in
            guard
                try await tx.execute(
                    "UPDATE buckets SET lifecycle = ? WHERE name = ? RETURNING name", [.text(text), .text(name)]) > 0
            else { throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name)") }
        }
    }

    public func buckets() async throws -> [BucketRecord] {
        try await database.rows("SELECT name, created_ms, public_read, lifecycle FROM buckets ORDER BY name").map(
            Self.bucketRecord)
    }

    public func bucket(_ name: String) async throws -> BucketRecord? {
        try await database.row(
            "SELECT name, created_ms, public_read, lifecycle FROM buckets WHERE name = ?", [.text(name)]
        )
        .map(Self.bucketRecord)
    }

    public func setBucketAccess(_ name: String, publicRead: Bool) async throws {
        try await write { tx in
            guard
                try await tx.execute(
                    "UPDATE buckets SET public_read = ? WHERE name = ? RETURNING name",
                    [.integer(publicRead ? 1 : 0), .text(name)]) > 0
            else { throw BlobError(.notFound, reason: "bucket.notFound", "no bucket \(name)") }
        }
    }

    // MARK: Access keys

    public func createAccessKey(_ key: AccessKey) async throws {
        try await write { tx in
            guard
                try await tx.execute(
                    """
                    INSERT INTO access_keys (id, secret, name, created_ms) VALUES (?, ?, ?, ?)
                    ON CONFLICT(id) DO NOTHING RETURNING id
                    """,
                    [
                        .text(key.accessKeyID), .text(key.secretAccessKey ?? ""), .text(key.name),
                        .integer(key.createdAtMilliseconds),
                    ]) == 1
            else {
                throw BlobError(.alreadyExists, reason: "key.exists", "access key \(key.accessKeyID) already exists")
            }
        }
    }

    public func accessKeys() async throws -> [AccessKey] {
        try await database.rows("SELECT id, name, created_ms FROM access_keys ORDER BY id").map { row in
            AccessKey(
                accessKeyID: try row.text(0), secretAccessKey: nil, name: try row.text(1),
                createdAtMilliseconds: try row.int(2))
        }
    }

    public func accessKey(_ id: String) async throws -> AccessKey? {
        try await database.row("SELECT id, secret, name, created_ms FROM access_keys WHERE id = ?", [.text(id)]).map {
            row in
            AccessKey(
                accessKeyID: try row.text(0), secretAccessKey: try row.text(1), name: try row.text(2),
                createdAtMilliseconds: try row.int(3))
        }
    }

    public func deleteAccessKey(_ id: String) async throws {
        try await write { tx in
            guard try await tx.execute("DELETE FROM access_keys WHERE id = ? RETURNING id", [.text(id)]) > 0 else {
                throw BlobError(.notFound, reason: "key.notFound", "no access key \(id)")
            }
        }
    }

    // MARK: Multipart uploads

    static let uploadColumns = "id, path, content_type, created_ms, metadata"

    static func uploadRecord(_ row: SQLRow) throws -> MultipartUpload {
        MultipartUpload(
            id: try row.text(0), path: try row.path(1), contentType: try row.text(2),
            createdAtMilliseconds: try row.int(3), metadata: decodeMetadata(try row.text(4)))
    }

    /// Starts an upload, dated by the database clock; returns it as stored.
    @discardableResult
    public func createUpload(_ upload: MultipartUpload) async throws -> MultipartUpload {
        try await write { tx in
            var stored = upload
            stored.createdAtMilliseconds = try await tx.now()
            try await tx.execute(
                "INSERT INTO uploads (id, path, content_type, created_ms, metadata) VALUES (?, ?, ?, ?, ?)",
                [
                    .text(upload.id), .blob(upload.path), .text(upload.contentType),
                    .integer(stored.createdAtMilliseconds), .text(Self.encodeMetadata(upload.metadata)),
                ])
            return stored
        }
    }

    public func upload(_ id: String) async throws -> MultipartUpload? {
        try await database.row("SELECT \(Self.uploadColumns) FROM uploads WHERE id = ?", [.text(id)]).map(
            Self.uploadRecord)
    }

    /// Uploads in progress whose target path starts with `prefix`, by path then id; with
    /// `createdBefore`, only those begun before that time (so old ones are found however many
    /// newer ones come first).
    public func uploads(prefix: String, createdBefore: Int64? = nil, limit: Int) async throws -> [MultipartUpload] {
        let range = Self.prefixRange(Array(prefix.utf8))
        var sql = "SELECT \(Self.uploadColumns) FROM uploads WHERE \(range.sql)"
        var arguments = range.arguments
        if let createdBefore {
            sql += " AND created_ms < ?"
            arguments.append(.integer(createdBefore))
        }
        return try await database.rows(sql + " ORDER BY path, id LIMIT ?", arguments + [.int(limit)]).map(
            Self.uploadRecord)
    }

    /// The upload, its row locked `FOR UPDATE` (a part commit holds it `FOR SHARE`).
    static func lockUpload(_ id: String, in tx: any SQLTransaction) async throws -> MultipartUpload {
        guard
            let row = try await tx.row(
                "SELECT \(uploadColumns) FROM uploads WHERE id = ?" + tx.dialect.forUpdate, [.text(id)])
        else {
            throw BlobError(.notFound, reason: "upload.notFound", "no multipart upload \(id)")
        }
        return try uploadRecord(row)
    }

    /// Tombstones every live part of an upload, inside the caller's transaction.
    static func tombstoneParts(of upload: MultipartUpload, in tx: any SQLTransaction) async throws {
        let range = prefixRange(Array(upload.partsPrefix.utf8))
        for row in try await tx.rows("SELECT path FROM current_files WHERE \(range.sql) ORDER BY path", range.arguments)
        {
            _ = try await tombstone(try row.blob(0), in: tx)
        }
    }

    /// Aborts: tombstones every part and forgets the upload (gc reclaims the parts' chunks).
    public func abortUpload(_ id: String) async throws {
        try await write { tx in
            let upload = try await Self.lockUpload(id, in: tx)
            try await Self.tombstoneParts(of: upload, in: tx)
            try await tx.execute("DELETE FROM uploads WHERE id = ?", [.text(id)])
        }
    }

    /// In one transaction: checks each named part exists with that digest (parts other than the
    /// last at least `minimumPartSize`), commits the target as the parts' manifests in order,
    /// tombstones every part and forgets the upload. No chunk bytes move.
    public func completeUpload(
        _ id: String, parts: [CompletedPart], attributes: [String: String]? = nil,
        precondition: WritePrecondition? = nil, bucket: String? = nil,
        minimumPartSize: Int64
    ) async throws -> FileVersion {
        guard !parts.isEmpty else {
            throw BlobError(.invalidArgument, reason: "upload.noParts", "a completion must name at least one part")
        }
        for i in parts.indices.dropFirst() where parts[i].number <= parts[i - 1].number {
            throw BlobError(
                .invalidArgument, reason: "upload.partOrder", "parts must be listed in ascending order of number")
        }
        // The completion's commit carries a request id made from the upload's: a completion sent
        // again after a lost reply finds the upload gone and answers the version the first made.
        let requestID = MultipartUpload.completionRequestID(id)
        return try await write(repeatable: true) { tx in
            let upload: MultipartUpload
            do {
                upload = try await Self.lockUpload(id, in: tx)
            } catch let error as BlobError where error.reason == "upload.notFound" {
                guard let done = try await Self.committed(byRequests: [requestID], in: tx)[requestID] else {
                    throw error
                }
                return done
            }
            let partPaths = try parts.map { try upload.partPath($0.number) }
            var current: [[UInt8]: SQLRow] = [:]
            for row in try await Self.batched(
                partPaths,
                { batch in
                    try await tx.rows(
                        "SELECT path, version_id, size, sha256, metadata FROM current_files WHERE path IN "
                            + SQLStatement.placeholders(batch.count), batch.map { .blob($0) })
                })
            {
                current[try row.blob(0)] = row
            }
            var versionIDs: [Int64] = []
            var recorded: [FilePart] = []
            var offset: Int64 = 0
            for (i, part) in parts.enumerated() {
                guard let row = current[Array(partPaths[i].value.utf8)], (try row.text(3)) == part.sha256 else {
                    throw BlobError(
                        .invalidArgument, reason: "upload.invalidPart",
                        "part \(part.number) was not uploaded, or its digest is not \(part.sha256)")
                }
                let size = try row.int(2)
                guard i == parts.count - 1 || size >= minimumPartSize else {
                    throw BlobError(
                        .invalidArgument, reason: "upload.partTooSmall",
                        "part \(part.number) is \(size) bytes; "
                            + "every part but the last must be at least \(minimumPartSize)"
                    )
                }
                let partAttributes = (Self.decodeMetadata(try row.text(4)) ?? [:]).filter {
                    ObjectAttribute.isAttribute($0.key)
                }
                recorded.append(
                    FilePart(
                        number: part.number, offset: offset, size: size,
                        attributes: partAttributes.isEmpty ? nil : partAttributes))
                versionIDs.append(try row.int(1))
                offset += size
            }
            var entries: [ManifestEntry] = []
            var byVersion: [Int64: [(chunk: ChunkID, length: Int64)]] = [:]
            for row in try await Self.batched(
                versionIDs,
                { batch in
                    try await tx.rows(
                        "SELECT version_id, chunk_id, length FROM manifest_entries WHERE version_id IN "
                            + SQLStatement.placeholders(batch.count) + " ORDER BY version_id, seq",
                        batch.map { .integer($0) })
                })
            {
                byVersion[try row.int(0), default: []].append((try row.chunkID(1), try row.int(2)))
            }
            var entryOffset: Int64 = 0
            for versionID in versionIDs {
                for entry in byVersion[versionID] ?? [] {
                    entries.append(ManifestEntry(chunkID: entry.chunk, offset: entryOffset, length: entry.length))
                    entryOffset += entry.length
                }
            }
            var metadata = upload.metadata ?? [:]
            for (name, value) in attributes ?? [:] where ObjectAttribute.isAttribute(name) { metadata[name] = value }
            let manifest = ManifestCommit(
                path: upload.path, size: entryOffset, contentType: upload.contentType,
                sha256: ManifestCommit.compositeDigest(ofParts: parts.map(\.sha256)), chunks: entries,
                metadata: metadata.isEmpty ? nil : metadata, precondition: precondition, bucket: bucket,
                requestID: requestID)
            try manifest.validate(maxChunks: Self.maxManifestChunks)
            let (version, versionID) = try await Self.commit(manifest, in: tx)
            _ = try await Self.batched(recorded) { batch -> [Int] in
                try await tx.execute(
                    """
                    INSERT INTO version_parts (version_id, part_number, "offset", size, attributes)
                    VALUES \(Array(repeating: "(?, ?, ?, ?, ?)", count: batch.count).joined(separator: ", "))
                    """,
                    batch.flatMap { part -> [SQLValue] in
                        [
                            .integer(versionID), .int(part.number), .integer(part.offset), .integer(part.size),
                            .text(Self.encodeMetadata(part.attributes)),
                        ]
                    })
                return []
            }
            try await Self.tombstoneParts(of: upload, in: tx)
            try await tx.execute("DELETE FROM uploads WHERE id = ?", [.text(id)])
            return version
        }
    }

    /// The current version of `path` and, when a multipart upload made it, its parts in order.
    public func parts(of path: BlobPath) async throws -> FileParts? {
        try await database.read { tx in
            guard
                let row = try await tx.row(
                    "SELECT \(Self.currentColumns), version_id FROM current_files WHERE path = ?",
                    [.blob(path)])
            else { return nil }
            let parts = try await tx.rows(
                """
                SELECT part_number, "offset", size, attributes FROM version_parts
                WHERE version_id = ? ORDER BY part_number
                """, [.integer(try row.int(10))]
            ).map { part in
                FilePart(
                    number: Int(try part.int(0)), offset: try part.int(1), size: try part.int(2),
                    attributes: Self.decodeMetadata(try part.text(3)))
            }
            return FileParts(file: try Self.fileVersion(row), parts: parts)
        }
    }
}
