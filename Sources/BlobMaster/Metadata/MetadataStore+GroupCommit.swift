public import BlobCore
import Foundation

/// Group commit: many manifests in one transaction, set-based, so a burst of concurrent puts
/// costs a handful of statements (and one fsync) for the whole group instead of eight round
/// trips each. The rules are the single commit's (``commit(_:recording:)``), applied to every
/// manifest of the group; each manifest succeeds or fails on its own.
extension MetadataStore {
    /// Whether a commit may share a group: one with a precondition, or a part of a multipart
    /// upload, goes alone (its checks read the path or the upload under its own lock).
    public static func isGroupable(_ manifest: ManifestCommit) -> Bool {
        manifest.precondition == nil && !manifest.path.value.hasPrefix(MultipartUpload.partsRoot + "/")
    }

    /// Commits `manifests` (distinct paths, each ``isGroupable(_:)``) in one write transaction.
    ///
    /// Per manifest, as a single commit would: its bucket must exist (held `FOR SHARE`), each
    /// chunk must be durable somewhere with the stated length (chunk rows held `FOR SHARE`), and
    /// its version number comes from its `path_heads` row. A manifest that fails a check fails
    /// alone, before anything is written for it; the others commit. Locks are taken in one order
    /// (buckets, chunks, paths, each sorted) so groups cannot deadlock one another. `replicas`
    /// (server id → chunks it acknowledged) are recorded first, in the same transaction.
    /// With `allOrNone`, the first failing manifest fails the whole group and nothing is written.
    public func commitGroup(
        _ manifests: [ManifestCommit], recording replicas: [String: [ReplicaReport]] = [:], allOrNone: Bool = false
    ) async throws -> [Result<FileVersion, BlobError>] {
        precondition(Set(manifests.map(\.path)).count == manifests.count, "a group holds distinct paths")
        var invalid: [Int: BlobError] = [:]
        for (i, manifest) in manifests.enumerated() {
            precondition(Self.isGroupable(manifest), "a commit with a precondition or of a part goes alone")
            do { try manifest.validate(maxChunks: Self.maxManifestChunks) } catch { invalid[i] = error }
        }
        return try await write(repeatable: manifests.allSatisfy { $0.requestID != nil }) { tx in
            var failures = invalid
            for (server, reports) in replicas.sorted(by: { $0.key < $1.key }) {
                try await Self.recordReplicas(reports, on: server, in: tx)
            }
            // Retried commits whose first attempt committed: answered with that version.
            var files: [Int: FileVersion] = [:]
            let requests = manifests.indices.compactMap { failures[$0] == nil ? manifests[$0].requestID : nil }
            if !requests.isEmpty {
                let done = try await Self.committed(byRequests: requests, in: tx)
                for (i, manifest) in manifests.enumerated() {
                    if let id = manifest.requestID, let file = done[id] {
                        files[i] = file
                        failures[i] = nil
                    }
                }
            }
            func pending(_ i: Int) -> Bool { failures[i] == nil && files[i] == nil }
            // Buckets: held FOR SHARE, as a single commit holds its bucket.
            let names = Set(manifests.indices.compactMap { pending($0) ? manifests[$0].bucket : nil }).sorted()
            var buckets: Set<String> = []
            for row in try await Self.batched(
                names,
                { batch in
                    try await tx.rows(
                        "SELECT name FROM buckets WHERE name IN \(SQLStatement.placeholders(batch.count)) ORDER BY name"
                            + tx.dialect.forShare, batch.map { .text($0) })
                })
            {
                buckets.insert(try row.text(0))
            }
            for (i, manifest) in manifests.enumerated() where pending(i) {
                if let bucket = manifest.bucket, !buckets.contains(bucket) {
                    failures[i] = BlobError(
                        .notFound, reason: "bucket.notFound", "no bucket \(bucket); create it first")
                }
            }
            // Chunks: one read of every chunk the group names, held FOR SHARE.
            let known = try await Self.commitFacts(
                of: manifests.indices.filter(pending).flatMap { manifests[$0].chunks.map(\.chunkID) },
                in: tx)
            var storedBytes: [Int: Int64] = [:]
            for (i, manifest) in manifests.enumerated() where pending(i) {
                do { storedBytes[i] = try Self.storedBytes(of: manifest, known: known) } catch let error as BlobError {
                    failures[i] = error
                }
            }
            if allOrNone, let first = failures.min(by: { $0.key < $1.key }) { throw first.value }
            let live = manifests.indices.filter(pending).sorted {
                Array(manifests[$0].path.value.utf8).lexicographicallyPrecedes(Array(manifests[$1].path.value.utf8))
            }
            var versions: [String: Int64] = [:]
            if !live.isEmpty {
                // Version numbers: one upsert for every path of the group, in path order.
                _ = try await Self.batched(live) { batch -> [Int] in
                    let rows = try await tx.rows(
                        """
                        INSERT INTO path_heads (path, last_version)
                        VALUES \(Array(repeating: "(?, 1)", count: batch.count).joined(separator: ", "))
                        ON CONFLICT(path) DO UPDATE SET last_version = path_heads.last_version + 1
                        RETURNING path, last_version
                        """, batch.map { .blob(manifests[$0].path) })
                    for row in rows { versions[try row.path(0).value] = try row.int(1) }
                    return []
                }
                let now = try await tx.now()
                for i in live {
                    let manifest = manifests[i]
                    guard let version = versions[manifest.path.value] else {
                        throw BlobError(
                            .internal, reason: "metadata.version", "no version number was returned for a path")
                    }
                    files[i] = FileVersion(
                        path: manifest.path, version: version, size: manifest.size, contentType: manifest.contentType,
                        sha256: manifest.sha256, createdAtMilliseconds: now, isDeleted: false,
                        storedBytes: storedBytes[i] ?? 0, chunkCount: manifest.chunks.count,
                        metadata: manifest.metadata.flatMap { $0.isEmpty ? nil : $0 })
                }
                let ids = try await Self.insertVersions(live.map { (manifests[$0], files[$0]!) }, in: tx)
                try await Self.insertEntries(
                    live.map { (ids[manifests[$0].path.value]!, manifests[$0].chunks) }, in: tx)
                try await Self.upsertCurrent(
                    live.map { (files[$0]!, ids[manifests[$0].path.value]!, manifests[$0]) }, in: tx)
            }
            return manifests.indices.map { i in
                if let file = files[i] { return .success(file) }
                return .failure(
                    failures[i]
                        ?? BlobError(.internal, reason: "metadata.group", "a commit of the group has no outcome"))
            }
        }
    }

    /// Plain and stored sizes of chunks, and whether any server holds them, read in id order and
    /// held `FOR SHARE` until the transaction ends (garbage collection takes them `FOR UPDATE`).
    static func commitFacts(
        of chunkIDs: [ChunkID], in tx: any SQLTransaction
    ) async throws
        -> [ChunkID: (plain: Int64, stored: Int64, durable: Bool)]
    {
        let ids = Set(chunkIDs).sorted { $0.digestBytes.lexicographicallyPrecedes($1.digestBytes) }
        var known: [ChunkID: (plain: Int64, stored: Int64, durable: Bool)] = [:]
        for row in try await batched(
            ids,
            { batch in
                try await tx.rows(
                    """
                    SELECT id, plain_size, stored_size,
                           CASE WHEN EXISTS (SELECT 1 FROM replicas r WHERE r.chunk_id = chunks.id) THEN 1 ELSE 0 END
                    FROM chunks WHERE id IN \(SQLStatement.placeholders(batch.count)) ORDER BY id
                    """ + tx.dialect.forShare, batch.map { .blob($0) })
            })
        {
            known[try row.chunkID(0)] = (try row.int(1), try row.int(2), try row.int(3) != 0)
        }
        return known
    }

    /// The manifest's stored bytes, after checking every chunk it names is durable somewhere and
    /// has the length the manifest says.
    static func storedBytes(
        of manifest: ManifestCommit, known: [ChunkID: (plain: Int64, stored: Int64, durable: Bool)]
    )
        throws(BlobError) -> Int64
    {
        var storedBytes: Int64 = 0
        for (i, entry) in manifest.chunks.enumerated() {
            guard let facts = known[entry.chunkID], facts.durable else {
                throw BlobError(
                    .invalidArgument, reason: "manifest.unknownChunk",
                    "chunk \(i) (\(entry.chunkID.shortHex)…) is not durable on any server; "
                        + "upload it before committing the manifest")
            }
            guard facts.plain == entry.length else {
                throw BlobError(
                    .invalidArgument, reason: "manifest.chunkLength",
                    "chunk \(i) (\(entry.chunkID.shortHex)…) is \(facts.plain) bytes, "
                        + "the manifest says \(entry.length)"
                )
            }
            storedBytes += facts.stored
        }
        return storedBytes
    }

    /// Inserts the versions (multi-row, in batches); returns each path's new version row id.
    static func insertVersions(
        _ rows: [(ManifestCommit, FileVersion)], in tx: any SQLTransaction
    ) async throws
        -> [String: Int64]
    {
        var ids: [String: Int64] = [:]
        _ = try await batched(rows) { batch -> [Int] in
            var arguments: [SQLValue] = []
            for (manifest, file) in batch {
                arguments += [
                    .blob(file.path), .integer(file.version), .integer(file.size), .text(file.contentType),
                    .text(file.sha256), .integer(file.createdAtMilliseconds), .integer(file.storedBytes),
                    .int(file.chunkCount), .text(encodeMetadata(manifest.metadata)),
                    manifest.requestID.map { .text($0) } ?? .null,
                ]
            }
            let values = Array(repeating: "(?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?)", count: batch.count).joined(
                separator: ", ")
            for row in try await tx.rows(
                """
                INSERT INTO versions (path, version, size, content_type, sha256, created_ms, deleted, stored_bytes,
                                      chunk_count, metadata, request_id)
                VALUES \(values) RETURNING id, path
                """, arguments)
            {
                ids[try row.path(1).value] = try row.int(0)
            }
            return []
        }
        return ids
    }

    /// Inserts the manifest entries of several versions, at most ``batchSize`` rows a statement.
    static func insertEntries(
        _ versions: [(versionID: Int64, chunks: [ManifestEntry])], in tx: any SQLTransaction
    )
        async throws
    {
        var rows: [SQLValue] = []
        var count = 0
        func flush() async throws {
            guard count > 0 else { return }
            try await tx.execute(
                """
                INSERT INTO manifest_entries (version_id, seq, chunk_id, "offset", length)
                VALUES \(Array(repeating: "(?, ?, ?, ?, ?)", count: count).joined(separator: ", "))
                """, rows)
            rows.removeAll(keepingCapacity: true)
            count = 0
        }
        for (versionID, chunks) in versions {
            for (seq, entry) in chunks.enumerated() {
                rows += [
                    .integer(versionID), .int(seq), .blob(entry.chunkID), .integer(entry.offset),
                    .integer(entry.length),
                ]
                count += 1
                if count == batchSize { try await flush() }
            }
        }
        try await flush()
    }

    /// Makes each version its path's current file (multi-row upsert, in batches).
    static func upsertCurrent(
        _ rows: [(file: FileVersion, versionID: Int64, manifest: ManifestCommit)],
        in tx: any SQLTransaction
    ) async throws {
        _ = try await batched(rows) { batch -> [Int] in
            var arguments: [SQLValue] = []
            for (file, versionID, manifest) in batch {
                arguments += [
                    .blob(file.path), .integer(versionID), .integer(file.version), .integer(file.size),
                    .text(file.contentType), .text(file.sha256), .integer(file.createdAtMilliseconds),
                    .integer(file.storedBytes), .int(file.chunkCount), .text(encodeMetadata(manifest.metadata)),
                ]
            }
            try await tx.execute(
                """
                INSERT INTO current_files (path, version_id, version, size, content_type, sha256, created_ms,
                                           stored_bytes, chunk_count, metadata)
                VALUES \(Array(repeating: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", count: batch.count).joined(separator: ", "))
                ON CONFLICT(path) DO UPDATE SET version_id = excluded.version_id, version = excluded.version,
                    size = excluded.size, content_type = excluded.content_type, sha256 = excluded.sha256,
                    created_ms = excluded.created_ms, stored_bytes = excluded.stored_bytes,
                    chunk_count = excluded.chunk_count, metadata = excluded.metadata
                """, arguments)
            return []
        }
    }
}
