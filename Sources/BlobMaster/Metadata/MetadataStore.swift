public import BlobCore
public import Foundation

/// The master's metadata: namespace (paths → versions → manifests), chunks, and where their
/// replicas really are, over any ``SQLDatabase`` (SQLite, PostgreSQL).
///
/// Every rule is here, once, for every engine: version numbers, write preconditions, multipart
/// completion, bucket creation and emptiness, garbage-collection marks and collection, ring
/// epochs and settings as compare-and-set. None relies on a single writer: under PostgreSQL
/// several masters write at once, so each rule takes the row lock that makes it hold under
/// concurrent READ COMMITTED transactions (see `docs/architecture.md`, "Metadata"):
/// - a path's versions come from its `path_heads` row, incremented in place: the upsert locks
///   the path, so concurrent commits to one path queue and get consecutive numbers, and a
///   precondition read after it sees every earlier commit;
/// - a write into a bucket holds the bucket's row `FOR SHARE`; a bucket delete takes it
///   `FOR UPDATE` before checking emptiness;
/// - a commit holds its chunks' rows `FOR SHARE`; garbage collection takes them `FOR UPDATE`
///   before it re-checks that nothing references them.
/// Writes retry, bounded and with jitter, when the engine reports a serialization failure or a
/// deadlock. Times compared across processes come from the database clock
/// (``SQLDatabase/now()``).
public final class MetadataStore: Sendable {
    public static let maxManifestChunks = 1 << 18
    /// Values per `IN (…)` list: a batch is one round trip, well under every engine's limit.
    static let batchSize = 500
    /// Attempts of a write transaction that keeps meeting serialization failures or deadlocks.
    static let maxWriteAttempts = 12

    public let database: any SQLDatabase
    /// Write transactions retried after a conflict, and failed (`blob_master_database_*`).
    public let tally = DatabaseTally()
    /// Hot standbys that may answer stat, list and read plans (`--metadata-replicas`).
    let standbys: PostgresStandbys?
    var dialect: SQLDialect { database.dialect }

    public init(database: any SQLDatabase) {
        self.database = database
        self.standbys = nil
    }

    init(database: any SQLDatabase, standbys: PostgresStandbys?) {
        self.database = database
        self.standbys = standbys
    }

    /// Where a client's write that has just returned lies in the primary's WAL, for it to carry
    /// on its reads; nil when this master reads from no standby (nothing to wait for).
    public func writePositionForClient() async throws -> MetadataPosition? {
        guard let standbys else { return nil }
        return try await standbys.primaryPosition.position()
    }

    /// The PostgreSQL nodes of the metadata as they answer now (`cluster status`); nil on SQLite.
    public func metadataNodes() async -> [MetadataNodeStatus]? {
        guard let postgres = database as? PostgresDatabase else { return nil }
        return await postgres.nodeStatus(standbys: standbys?.endpoints ?? [])
    }

    /// Runs a read a hot standby may answer: on one, when the request allows it
    /// (``StandbyRead/current``) and one has replayed far enough; else on the primary, in one
    /// read transaction, or (`oneStatement`) as a single autocommit statement.
    func readAllowingStandby<T: Sendable>(
        oneStatement: Bool = false, _ body: (any SQLTransaction) async throws -> T
    ) async throws -> T {
        if let standbys, let request = StandbyRead.current, let answer = try await standbys.read(request, body) {
            return answer
        }
        if oneStatement { return try await body(Autocommit(database: database)) }
        return try await database.read(body)
    }

    /// The reason of the error a write gets when its COMMIT's answer was lost.
    static let commitUnknown = "metadata.commitUnknown"

    /// The database clock, in milliseconds since 1970.
    public func now() async throws -> Int64 { try await database.now() }

    /// Runs `body` as one write transaction, again (bounded, with jittered backoff) while the
    /// engine reports a transient conflict; every other error ends it. Inside leader-only work
    /// (``LeaderFence/current``) the transaction first checks the leader's term, and a stale
    /// term writes nothing.
    ///
    /// `repeatable` says the body finds its own earlier commit (by a request id) and answers
    /// with it: such a write is also run again when its COMMIT's outcome was lost with the
    /// connection (`metadata.commitUnknown`, a database failover), and that settles it.
    @discardableResult
    func write<T: Sendable>(
        repeatable: Bool = false, _ body: (any SQLTransaction) async throws -> T
    ) async throws -> T {
        var attempt = 1
        var unknownOutcomes = 0
        let fence = LeaderFence.current
        while true {
            do {
                return try await database.write { tx in
                    if let fence { try await Self.requireLeadership(fence.term, in: tx) }
                    return try await body(tx)
                }
            } catch let error as BlobError
                where repeatable && error.reason == Self.commitUnknown && unknownOutcomes < Self.maxWriteAttempts
            {
                unknownOutcomes += 1
                tally.retried()
            } catch  where attempt < Self.maxWriteAttempts && database.isTransient(error) {
                tally.retried()
                // 1, 2, 4 … ms, capped at 100 ms, each a random 50-100% so colliders spread out.
                let ceiling = min(100_000, 1000 << min(attempt - 1, 7))
                try await Task.sleep(for: .microseconds(Int.random(in: ceiling / 2...ceiling)))
                attempt += 1
            } catch {
                // A rule's own refusal (a precondition, a conflict it reports) is an answer, not
                // a database failure.
                if !(error is any CodedError) || (error as? BlobError)?.reason.hasPrefix("metadata.") == true {
                    tally.failed()
                }
                throw error
            }
        }
    }

    /// Runs `fetch` over `values` in batches of ``batchSize`` and joins the results.
    static func batched<V, T>(_ values: [V], _ fetch: (ArraySlice<V>) async throws -> [T]) async throws -> [T] {
        var out: [T] = []
        var start = 0
        while start < values.count {
            let end = min(start + batchSize, values.count)
            out += try await fetch(values[start..<end])
            start = end
        }
        return out
    }

    // MARK: Reads

    /// The current version of a path; nil when absent or deleted.
    public func stat(_ path: BlobPath) async throws -> FileVersion? {
        try await readAllowingStandby(oneStatement: true) { tx in
            try await tx.row("SELECT \(Self.currentColumns) FROM current_files WHERE path = ?", [.blob(path)])
        }.map(Self.fileVersion)
    }

    /// A version (the current one when `version` is nil) with its manifest entries in order;
    /// with `overlapping`, only the entries holding bytes of that range.
    public func manifest(
        of path: BlobPath, version: Int64?, overlapping range: Range<Int64>? = nil
    )
        async throws -> (FileVersion, [ManifestEntry])?
    {
        try await database.read { tx in
            let row: SQLRow?
            if let version {
                row = try await tx.row(
                    "SELECT \(Self.versionColumns), id FROM versions WHERE path = ? AND version = ? "
                        + "AND NOT (chunk_count = 0 AND size > 0)", [.blob(path), .integer(version)])
            } else {
                row = try await tx.row(
                    "SELECT \(Self.currentColumns), version_id FROM current_files WHERE path = ?",
                    [.blob(path)])
            }
            guard let row else { return nil }
            let entries = try await Self.entries(of: try row.int(10), overlapping: range, in: tx)
            return (try Self.fileVersion(row), entries)
        }
    }

    static func entries(
        of versionID: Int64, overlapping range: Range<Int64>?, in tx: any SQLTransaction
    )
        async throws -> [ManifestEntry]
    {
        let rows: [SQLRow]
        if let range {
            rows = try await tx.rows(
                """
                SELECT chunk_id, "offset", length FROM manifest_entries
                WHERE version_id = ? AND "offset" < ? AND "offset" + length > ? ORDER BY seq
                """, [.integer(versionID), .integer(range.upperBound), .integer(range.lowerBound)])
        } else {
            rows = try await tx.rows(
                """
                SELECT chunk_id, "offset", length FROM manifest_entries WHERE version_id = ? ORDER BY seq
                """, [.integer(versionID)])
        }
        return try rows.map { ManifestEntry(chunkID: try $0.chunkID(0), offset: try $0.int(1), length: try $0.int(2)) }
    }

    /// The version and all of its manifest entries.
    public func manifest(of path: BlobPath, version: Int64?) async throws -> (FileVersion, [ManifestEntry])? {
        try await manifest(of: path, version: version, overlapping: nil)
    }

    /// Live files whose path starts with `prefix`, after the cursor `after`, in path order.
    public func list(prefix: String, after: String?, limit: Int) async throws -> FileListPage {
        guard (1...10_000).contains(limit) else {
            throw BlobError(.invalidArgument, reason: "list.limit", "limit must be between 1 and 10000, got \(limit)")
        }
        let prefixBytes = Array(prefix.utf8)
        // One lower bound, so the engine seeks straight to it: with two (`>= prefix AND >
        // after`) SQLite seeks to the prefix and filters every row up to the cursor, a scan that
        // grows with the number of files before the cursor (85 ms pages at 1M files).
        let lowerBound: (bytes: [UInt8], inclusive: Bool)
        if let after, Array(after.utf8).lexicographicallyPrecedes(prefixBytes) == false {
            lowerBound = (Array(after.utf8), false)
        } else {
            lowerBound = (prefixBytes, true)
        }
        var sql = "SELECT \(Self.currentColumns) FROM current_files WHERE path \(lowerBound.inclusive ? ">=" : ">") ?"
        var arguments: [SQLValue] = [.blob(lowerBound.bytes)]
        if let upper = Self.prefixUpperBound(prefixBytes) {
            sql += " AND path < ?"
            arguments.append(.blob(upper))
        }
        sql += " ORDER BY path LIMIT ?"
        arguments.append(.int(limit))
        let files = try await readAllowingStandby(oneStatement: true) { tx in try await tx.rows(sql, arguments) }
            .map(Self.fileVersion)
        return FileListPage(files: files, next: files.count == limit ? files.last?.path.value : nil)
    }

    /// What a read plan of `range` of the current version of `path` needs, in one read
    /// transaction and three round trips whatever the number of chunks; nil when there is no
    /// such file.
    public func readPlanFacts(of path: BlobPath, overlapping range: Range<Int64>) async throws -> ReadPlanFacts? {
        try await readAllowingStandby { tx in
            guard
                let row = try await tx.row(
                    "SELECT \(Self.currentColumns), version_id FROM current_files WHERE path = ?",
                    [.blob(path)])
            else { return nil }
            let file = try Self.fileVersion(row)
            var facts = ReadPlanFacts(file: file, entries: [], locations: [:], storedSizes: [:], blockDigests: [:])
            facts.entries = try await Self.entries(of: try row.int(10), overlapping: range, in: tx)
            let end = min(range.upperBound, file.size)
            var seen: Set<ChunkID> = []
            let ids = facts.entries.map(\.chunkID).filter { seen.insert($0).inserted }
            // Only a chunk the range starts or ends inside is read by blocks.
            let edges = Set(
                facts.entries.filter { $0.offset < range.lowerBound || $0.offset + $0.length > end }.map(\.chunkID))
            for row in try await Self.batched(
                ids,
                { batch in
                    try await tx.rows(
                        "SELECT id, stored_size, block_digests FROM chunks WHERE id IN "
                            + "\(SQLStatement.placeholders(batch.count))",
                        batch.map { .blob($0) })
                })
            {
                let id = try row.chunkID(0)
                facts.storedSizes[id] = try row.int(1)
                if edges.contains(id), let digests = try row.optionalBlob(2) { facts.blockDigests[id] = Data(digests) }
            }
            facts.locations = try await Self.locations(of: ids, in: tx)
            return facts
        }
    }

    static func locations(of ids: [ChunkID], in tx: any SQLTransaction) async throws -> [ChunkID: [String]] {
        var out: [ChunkID: [String]] = [:]
        for row in try await batched(
            ids,
            { batch in
                try await tx.rows(
                    """
                    SELECT chunk_id, server_id FROM replicas WHERE chunk_id IN \(SQLStatement.placeholders(batch.count))
                    ORDER BY chunk_id, server_id
                    """, batch.map { .blob($0) })
            })
        {
            out[try row.chunkID(0), default: []].append(try row.text(1))
        }
        return out
    }

    /// The servers known to hold each chunk; chunks with none are absent from the answer.
    public func replicaLocations(of chunkIDs: [ChunkID]) async throws -> [ChunkID: [String]] {
        try await database.read { tx in try await Self.locations(of: chunkIDs, in: tx) }
    }

    /// The ``BlockDigests`` kept for each chunk that has them.
    public func blockDigests(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Data] {
        var out: [ChunkID: Data] = [:]
        for row in try await Self.batched(
            chunkIDs,
            { batch in
                try await database.rows(
                    """
                    SELECT id, block_digests FROM chunks
                    WHERE block_digests IS NOT NULL AND id IN \(SQLStatement.placeholders(batch.count))
                    """, batch.map { .blob($0) })
            })
        {
            out[try row.chunkID(0)] = Data(try row.blob(1))
        }
        return out
    }

    /// How many manifest entries of live or old versions name each chunk.
    public func referenceCounts(of chunkIDs: [ChunkID]) async throws -> [ChunkID: Int] {
        var out = Dictionary(uniqueKeysWithValues: Set(chunkIDs).map { ($0, 0) })
        for row in try await Self.batched(
            Array(Set(chunkIDs)),
            { batch in
                try await database.rows(
                    """
                    SELECT chunk_id, COUNT(*) FROM manifest_entries
                    WHERE chunk_id IN \(SQLStatement.placeholders(batch.count))
                    GROUP BY chunk_id
                    """, batch.map { .blob($0) })
            })
        {
            out[try row.chunkID(0)] = Int(try row.int(1))
        }
        return out
    }

    /// Runs the database's own consistency check; true when it passes.
    public func checkIntegrity() async throws -> Bool { try await database.checkIntegrity() }

    // MARK: Encoding

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

    /// `path >= ? [AND path < ?]` for every path under `prefix`, and its arguments.
    static func prefixRange(_ prefix: [UInt8], column: String = "path") -> (sql: String, arguments: [SQLValue]) {
        guard let upper = prefixUpperBound(prefix) else { return ("\(column) >= ?", [.blob(prefix)]) }
        return ("\(column) >= ? AND \(column) < ?", [.blob(prefix), .blob(upper)])
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

    static func fileVersion(_ row: SQLRow) throws -> FileVersion {
        FileVersion(
            path: try row.path(0), version: try row.int(1), size: try row.int(2),
            contentType: try row.text(3), sha256: try row.text(4), createdAtMilliseconds: try row.int(5),
            isDeleted: try row.int(6) != 0, storedBytes: try row.int(7), chunkCount: Int(try row.int(8)),
            metadata: decodeMetadata(try row.text(9)))
    }
}
