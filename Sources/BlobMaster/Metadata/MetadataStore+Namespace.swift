public import BlobCore
import Foundation

/// Replica facts, commits and deletes: the namespace rules (see ``MetadataStore``).
extension MetadataStore {
    // MARK: Replicas

    /// Records that `serverID` durably holds these chunks (write acknowledgements, reports).
    public func recordReplicas(_ reports: [ReplicaReport], on serverID: String) async throws {
        guard !reports.isEmpty else { return }
        // Recording a fact twice records it once: safe to run again after a lost COMMIT.
        try await write(repeatable: true) { tx in try await Self.recordReplicas(reports, on: serverID, in: tx) }
    }

    /// Records replica facts inside the caller's transaction: two multi-row upserts per batch,
    /// in chunk id order (concurrent writers then lock rows in one order and cannot deadlock).
    static func recordReplicas(_ reports: [ReplicaReport], on serverID: String, in tx: any SQLTransaction) async throws
    {
        var unique: [ChunkID: ReplicaReport] = [:]
        for r in reports where unique[r.chunkID] == nil || unique[r.chunkID]?.blockDigests == nil {
            unique[r.chunkID] = r
        }
        let sorted = unique.values.sorted { $0.chunkID.digestBytes.lexicographicallyPrecedes($1.chunkID.digestBytes) }
        let now = try await tx.now()
        _ = try await batched(sorted) { batch -> [Int] in
            var chunkArguments: [SQLValue] = []
            var replicaArguments: [SQLValue] = []
            for r in batch {
                // Digests of the wrong size for the chunk are dropped, not kept: a ranged read
                // would only fail on them and fall back to whole chunks.
                let digests = r.blockDigests.flatMap {
                    (0...Int64(Limits.maxChunkByteCount)).contains(r.plainByteCount)
                        && BlockDigests.isWellFormed($0, plainByteCount: Int(r.plainByteCount)) ? $0 : nil
                }
                chunkArguments += [
                    .blob(r.chunkID), .integer(r.plainByteCount), .integer(r.storedByteCount), .integer(now),
                    digests.map { .blob($0) } ?? .null,
                ]
                replicaArguments += [.blob(r.chunkID), .text(serverID), .integer(now)]
            }
            let rows = Array(repeating: "(?, ?, ?, ?, ?)", count: batch.count).joined(separator: ", ")
            try await tx.execute(
                """
                INSERT INTO chunks (id, plain_size, stored_size, first_seen_ms, block_digests) VALUES \(rows)
                ON CONFLICT(id) DO UPDATE SET block_digests = excluded.block_digests
                    WHERE chunks.block_digests IS NULL AND excluded.block_digests IS NOT NULL
                    AND chunks.plain_size = excluded.plain_size
                """, chunkArguments)
            try await tx.execute(
                """
                INSERT INTO replicas (chunk_id, server_id, reported_ms)
                VALUES \(Array(repeating: "(?, ?, ?)", count: batch.count).joined(separator: ", "))
                ON CONFLICT(chunk_id, server_id) DO UPDATE SET reported_ms = excluded.reported_ms
                """, replicaArguments)
            return []
        }
    }

    /// Forgets that `serverID` holds these chunks (deleted or quarantined there).
    public func removeReplicas(_ chunkIDs: [ChunkID], on serverID: String) async throws {
        guard !chunkIDs.isEmpty else { return }
        try await write { tx in
            _ = try await Self.batched(chunkIDs) { batch -> [Int] in
                try await tx.execute(
                    "DELETE FROM replicas WHERE server_id = ? AND chunk_id IN "
                        + "\(SQLStatement.placeholders(batch.count))",
                    [.text(serverID)] + batch.map { .blob($0) })
                return []
            }
        }
    }

    // MARK: Commits

    /// Commits a new version at the manifest's path, after checking that every chunk it names is
    /// durable on at least one server and has the length the manifest says. Readers see the old
    /// version or the new one, never a mix; of two concurrent commits the later one is current.
    /// With `replicas` (server id → chunks it acknowledged), records those facts first, in the
    /// same transaction: a writer's last acknowledgements ride on its commit.
    public func commit(
        _ manifest: ManifestCommit, recording replicas: [String: [ReplicaReport]] = [:]
    ) async throws -> FileVersion {
        try manifest.validate(maxChunks: Self.maxManifestChunks)
        do {
            return try await write(repeatable: manifest.requestID != nil) { tx in
                for (server, reports) in replicas.sorted(by: { $0.key < $1.key }) {
                    try await Self.recordReplicas(reports, on: server, in: tx)
                }
                return try await Self.commit(manifest, in: tx).file
            }
        } catch  where manifest.requestID != nil && database.isUniqueViolation(error) {
            // The same request committed concurrently (a retry racing its first attempt at
            // another master): that one's version is the answer.
            guard let requestID = manifest.requestID,
                let file = try await database.read({ tx in try await Self.committed(byRequests: [requestID], in: tx) })[
                    requestID]
            else { throw error }
            return file
        }
    }

    /// The version already committed under `requestID`, if one was (a copy sent again after a
    /// lost reply answers it even when its source has been deleted since).
    public func committed(byRequest requestID: String) async throws -> FileVersion? {
        try await database.read { tx in try await Self.committed(byRequests: [requestID], in: tx) }[requestID]
    }

    /// Versions already committed under these request ids (a retried commit), by request id.
    static func committed(
        byRequests requestIDs: [String], in tx: any SQLTransaction
    ) async throws -> [String: FileVersion] {
        var found: [String: FileVersion] = [:]
        for row in try await batched(
            Array(Set(requestIDs)),
            { batch in
                try await tx.rows(
                    "SELECT \(versionColumns), request_id FROM versions WHERE request_id IN "
                        + SQLStatement.placeholders(batch.count), batch.map { .text($0) })
            })
        {
            found[try row.text(row.values.count - 1)] = try fileVersion(row)
        }
        return found
    }

    /// Commits many manifests in one transaction (imports, benchmarks' bulk loads): all or none.
    public func commit(batch manifests: [ManifestCommit]) async throws -> [FileVersion] {
        if manifests.allSatisfy(Self.isGroupable), Set(manifests.map(\.path)).count == manifests.count {
            return try await commitGroup(manifests, allOrNone: true).map { try $0.get() }
        }
        for manifest in manifests { try manifest.validate(maxChunks: Self.maxManifestChunks) }
        return try await write { tx in
            var out: [FileVersion] = []
            for manifest in manifests { out.append(try await Self.commit(manifest, in: tx).file) }
            return out
        }
    }

    /// The next version number of `path`, from its `path_heads` row. The upsert holds the row's
    /// lock until the transaction ends, so whatever the caller reads of the path after this sees
    /// every commit that took a number before it (`MAX(version) + 1` would hand two concurrent
    /// writers the same number, and let both pass an `If-None-Match: *` check).
    static func nextVersion(of path: [UInt8], in tx: any SQLTransaction) async throws -> Int64 {
        guard
            let row = try await tx.row(
                """
                INSERT INTO path_heads (path, last_version) VALUES (?, 1)
                ON CONFLICT(path) DO UPDATE SET last_version = path_heads.last_version + 1
                RETURNING last_version
                """, [.blob(path)])
        else {
            throw BlobError(.internal, reason: "metadata.version", "no version number was returned for a path")
        }
        return try row.int(0)
    }

    /// One commit inside the caller's write transaction; returns the version and its row id.
    static func commit(
        _ manifest: ManifestCommit, in tx: any SQLTransaction
    ) async throws -> (file: FileVersion, id: Int64) {
        let dialect = tx.dialect
        if let requestID = manifest.requestID,
            let row = try await tx.row(
                "SELECT \(versionColumns), id FROM versions WHERE request_id = ?", [.text(requestID)])
        {
            return (try fileVersion(row), try row.int(row.values.count - 1))
        }
        // A part of an upload that was completed or aborted meanwhile would never be collected;
        // the shared lock keeps the upload from completing or aborting until this commit ends.
        let parts = MultipartUpload.partsRoot + "/"
        if manifest.path.value.hasPrefix(parts) {
            let id = String(manifest.path.value.dropFirst(parts.count).prefix { $0 != "/" })
            guard try await tx.row("SELECT 1 FROM uploads WHERE id = ?" + dialect.forShare, [.text(id)]) != nil else {
                throw BlobError(
                    .notFound, reason: "upload.notFound", "no multipart upload \(id): it was completed or aborted")
            }
        }
        if let bucket = manifest.bucket {
            try await lockBucketForWrite(bucket, in: tx)
        }
        let path = Array(manifest.path.value.utf8)
        let version = try await nextVersion(of: path, in: tx)
        if let precondition = manifest.precondition {
            let current = try await tx.row("SELECT sha256, metadata FROM current_files WHERE path = ?", [.blob(path)])
            try check(precondition, current: current, path: manifest.path)
        }
        let storedBytes = try await checkChunks(of: manifest, in: tx)
        let now = try await tx.now()
        let metadata = encodeMetadata(manifest.metadata)
        guard
            let inserted = try await tx.row(
                """
                INSERT INTO versions (path, version, size, content_type, sha256, created_ms, deleted,
                                      stored_bytes, chunk_count, metadata, request_id)
                VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING id
                """,
                [
                    .blob(path), .integer(version), .integer(manifest.size), .text(manifest.contentType),
                    .text(manifest.sha256),
                    .integer(now), .integer(storedBytes), .int(manifest.chunks.count), .text(metadata),
                    manifest.requestID.map { .text($0) } ?? .null,
                ])
        else {
            throw BlobError(.internal, reason: "metadata.version", "no row id was returned for a new version")
        }
        let versionID = try inserted.int(0)
        var seq = 0
        _ = try await batched(manifest.chunks) { batch -> [Int] in
            var arguments: [SQLValue] = []
            arguments.reserveCapacity(batch.count * 5)
            for entry in batch {
                arguments += [
                    .integer(versionID), .int(seq), .blob(entry.chunkID), .integer(entry.offset),
                    .integer(entry.length),
                ]
                seq += 1
            }
            try await tx.execute(
                """
                INSERT INTO manifest_entries (version_id, seq, chunk_id, "offset", length)
                VALUES \(Array(repeating: "(?, ?, ?, ?, ?)", count: batch.count).joined(separator: ", "))
                """, arguments)
            return []
        }
        try await tx.execute(
            """
            INSERT INTO current_files (path, version_id, version, size, content_type, sha256, created_ms, stored_bytes,
                                       chunk_count, metadata)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            ON CONFLICT(path) DO UPDATE SET version_id = excluded.version_id, version = excluded.version,
                size = excluded.size, content_type = excluded.content_type, sha256 = excluded.sha256,
                created_ms = excluded.created_ms, stored_bytes = excluded.stored_bytes,
                chunk_count = excluded.chunk_count, metadata = excluded.metadata
            """,
            [
                .blob(path), .integer(versionID), .integer(version), .integer(manifest.size),
                .text(manifest.contentType),
                .text(manifest.sha256), .integer(now), .integer(storedBytes), .int(manifest.chunks.count),
                .text(metadata),
            ])
        let file = FileVersion(
            path: manifest.path, version: version, size: manifest.size, contentType: manifest.contentType,
            sha256: manifest.sha256, createdAtMilliseconds: now, isDeleted: false,
            storedBytes: storedBytes, chunkCount: manifest.chunks.count,
            metadata: manifest.metadata.flatMap { $0.isEmpty ? nil : $0 })
        return (file, versionID)
    }

    static func check(_ precondition: WritePrecondition, current: SQLRow?, path: BlobPath) throws {
        switch precondition {
        case .absent:
            guard current == nil else {
                throw BlobError(.failedPrecondition, reason: WritePrecondition.failedReason, "\(path) exists")
            }
        case .present:
            guard current != nil else { throw BlobError(.notFound, reason: "file.notFound", "no file at \(path)") }
        case .etag(let etag):
            guard let current else { throw BlobError(.notFound, reason: "file.notFound", "no file at \(path)") }
            let digest = try current.text(0)
            let currentETag = decodeMetadata(try current.text(1))?[ObjectAttribute.etag] ?? digest
            guard currentETag == etag else {
                throw BlobError(
                    .failedPrecondition, reason: WritePrecondition.failedReason,
                    "the current version of \(path) has ETag \(currentETag), not \(etag)")
            }
        }
    }

    /// Checks every chunk of the manifest is known, durable somewhere and of the stated length,
    /// holding the chunks' rows `FOR SHARE` so garbage collection cannot take one until this
    /// transaction ends; returns the stored bytes of the manifest.
    static func checkChunks(of manifest: ManifestCommit, in tx: any SQLTransaction) async throws -> Int64 {
        try storedBytes(of: manifest, known: try await commitFacts(of: manifest.chunks.map(\.chunkID), in: tx))
    }

    // MARK: Deletes

    /// Writes a tombstone version; the path disappears from stat and list. Throws notFound when
    /// there is nothing live at the path.
    public func delete(_ path: BlobPath) async throws -> FileVersion {
        try await delete(path, ifVersion: nil)
    }

    /// Deletes the current version; with `ifVersion`, only while that version is still current
    /// (else 409 `file.precondition`: a writer got there first). With `requestID`, a delete sent
    /// again after a lost reply, to any master, returns the tombstone the first one wrote
    /// instead of `notFound`.
    public func delete(
        _ path: BlobPath, ifVersion expected: Int64?, requestID: String? = nil
    ) async throws -> FileVersion {
        do {
            return try await write(repeatable: requestID != nil) { tx in
                try await Self.deleteCurrent(path, ifVersion: expected, requestID: requestID, in: tx)
            }
        } catch let repeated as RepeatedRequest {
            return try Self.repeated(repeated.done, at: path)
        } catch  where requestID != nil && database.isUniqueViolation(error) {
            // The same delete ran concurrently at another master: its tombstone is the answer.
            guard let requestID,
                let done = try await database.read({ tx in try await Self.committed(byRequests: [requestID], in: tx) })[
                    requestID]
            else { throw error }
            return try Self.repeated(done, at: path)
        }
    }

    /// A request already carried out: its first outcome, thrown to roll the repeat back.
    private struct RepeatedRequest: Error { var done: FileVersion }

    /// The earlier outcome of a repeated request, which must have been for the same path.
    private static func repeated(_ done: FileVersion, at path: BlobPath) throws -> FileVersion {
        guard done.path == path else {
            throw BlobError(
                .invalidArgument, reason: "request.reused",
                "request id was already used for \(done.path); send a new id with each new request")
        }
        return done
    }

    private static func deleteCurrent(
        _ path: BlobPath, ifVersion expected: Int64?, requestID: String?, in tx: any SQLTransaction
    ) async throws -> FileVersion {
        let key = Array(path.value.utf8)
        let version = try await nextVersion(of: key, in: tx)
        // Checked under the path's lock: a copy of this delete that committed while this one
        // waited for the lock is seen here (its tombstone left nothing live to delete).
        if let requestID, let done = try await committed(byRequests: [requestID], in: tx)[requestID] {
            throw RepeatedRequest(done: done)  // rolls back the version number just taken
        }
        guard let current = try await tx.row("SELECT version FROM current_files WHERE path = ?", [.blob(key)]) else {
            throw BlobError(.notFound, reason: "file.notFound", "no file at \(path); list with `blobctl ls`")
        }
        let currentVersion = try current.int(0)
        if let expected, expected != currentVersion {
            throw BlobError(
                .failedPrecondition, reason: WritePrecondition.failedReason,
                "\(path) is at version \(currentVersion), not \(expected)")
        }
        let now = try await writeTombstone(key, version: version, requestID: requestID, in: tx)
        return FileVersion(
            path: path, version: version, size: 0, contentType: "", sha256: "",
            createdAtMilliseconds: now, isDeleted: true, storedBytes: 0, chunkCount: 0)
    }

    /// Writes a tombstone of `path` and drops it from the live files, inside the caller's
    /// transaction; returns the tombstone's version number.
    static func tombstone(_ path: [UInt8], in tx: any SQLTransaction) async throws -> Int64 {
        let version = try await nextVersion(of: path, in: tx)
        _ = try await writeTombstone(path, version: version, in: tx)
        return version
    }

    /// Returns the tombstone's time.
    static func writeTombstone(
        _ path: [UInt8], version: Int64, requestID: String? = nil, in tx: any SQLTransaction
    ) async throws -> Int64 {
        let now = try await tx.now()
        try await tx.execute(
            """
            INSERT INTO versions (path, version, size, content_type, sha256, created_ms, deleted, request_id)
            VALUES (?, ?, 0, '', '', ?, 1, ?)
            """, [.blob(path), .integer(version), .integer(now), requestID.map { .text($0) } ?? .null])
        try await tx.execute("DELETE FROM current_files WHERE path = ?", [.blob(path)])
        return now
    }
}
