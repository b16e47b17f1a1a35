import BlobCore
import Foundation

/// An offline copy of a whole metadata database into an empty one on another engine (SQLite to
/// PostgreSQL, as a growing cluster moves), verified table by table: the destination must hold
/// the same number of rows and the same checksum of their values as the source.
///
/// Tables are read in pages by their primary key (keyset pagination, one lower bound, so every
/// page is one index seek) and written a page per transaction; foreign keys are satisfied by
/// the order of ``tables``. The checksum is order-independent (a sum of per-row SHA-256 digests),
/// so engines that sort text differently still agree.
public enum MetadataMigration {
    /// A table to copy: its columns, the first ones its primary key.
    struct Table: Sendable {
        var name: String
        var columns: [String]
        var keyCount: Int
        /// The key is a generated identity (versions.id): inserted as given, then the generator
        /// moved past the largest.
        var hasIdentity = false

        var key: [String] { Array(columns.prefix(keyCount)) }
    }

    /// Every table, parents before children.
    static let tables: [Table] = [
        Table(
            name: "chunks", columns: ["id", "plain_size", "stored_size", "first_seen_ms", "block_digests"],
            keyCount: 1),
        Table(name: "replicas", columns: ["chunk_id", "server_id", "reported_ms"], keyCount: 2),
        Table(
            name: "versions",
            columns: [
                "id", "path", "version", "size", "content_type", "sha256", "created_ms", "deleted",
                "stored_bytes", "chunk_count", "metadata",
            ], keyCount: 1, hasIdentity: true),
        Table(
            name: "manifest_entries", columns: ["version_id", "seq", "chunk_id", "\"offset\"", "length"], keyCount: 2),
        Table(
            name: "current_files",
            columns: [
                "path", "version_id", "version", "size", "content_type", "sha256", "created_ms",
                "stored_bytes", "chunk_count", "metadata",
            ], keyCount: 1),
        Table(name: "path_heads", columns: ["path", "last_version"], keyCount: 1),
        Table(
            name: "version_parts", columns: ["version_id", "part_number", "\"offset\"", "size", "attributes"],
            keyCount: 2),
        Table(
            name: "servers", columns: ["id", "address", "zone", "weight", "capacity_bytes", "registered_ms"],
            keyCount: 1),
        Table(name: "rings", columns: ["epoch", "json"], keyCount: 1),
        Table(name: "gc_candidates", columns: ["chunk_id", "marked_ms"], keyCount: 1),
        Table(name: "gc_orphans", columns: ["chunk_id", "server_id", "first_seen_ms"], keyCount: 2),
        Table(name: "settings", columns: ["key", "value"], keyCount: 1),
        Table(name: "buckets", columns: ["name", "created_ms", "public_read", "lifecycle"], keyCount: 1),
        Table(name: "access_keys", columns: ["id", "secret", "name", "created_ms"], keyCount: 1),
        Table(name: "uploads", columns: ["id", "path", "content_type", "created_ms", "metadata"], keyCount: 1),
    ]

    /// What was copied of one table, and what the destination holds after.
    public struct TableReport: Sendable, Codable, Equatable {
        public var table: String
        public var sourceRows: Int64
        public var destinationRows: Int64
        public var sourceChecksum: String
        public var destinationChecksum: String
        public var matches: Bool { sourceRows == destinationRows && sourceChecksum == destinationChecksum }
    }

    /// Rows a page: one read, one multi-row insert per 100 rows, one transaction.
    static let pageRows = 2000

    /// Copies every table of `source` into `destination`, which must be empty, then verifies.
    /// Throws `failedPrecondition` before writing anything when the destination holds any row,
    /// and `internal` after the copy when a table's count or checksum differs.
    public static func copy(
        from source: any SQLDatabase, to destination: any SQLDatabase,
        progress: (String, Int64) -> Void = { _, _ in }
    ) async throws -> [TableReport] {
        for table in tables {
            let rows = try await destination.rows("SELECT COUNT(*) FROM \(table.name)").first?.int(0) ?? 0
            guard rows == 0 else {
                throw BlobError(
                    .failedPrecondition, reason: "migrate.notEmpty",
                    "the destination already holds \(rows) rows in \(table.name); migrate only into a new, empty "
                        + "database (`createdb -O USER NEW`)")
            }
        }
        var reports: [TableReport] = []
        for table in tables {
            let (count, checksum) = try await scan(table, in: source) { page in
                try await insert(page, into: table, of: destination)
            }
            if table.hasIdentity, let reset = destination.dialect.identityReset(table.name, table.columns[0]) {
                _ = try await destination.write { tx in try await tx.execute(reset) }
            }
            progress(table.name, count)
            let (copied, copiedChecksum) = try await scan(table, in: destination) { _ in }
            reports.append(
                TableReport(
                    table: table.name, sourceRows: count, destinationRows: copied,
                    sourceChecksum: checksum, destinationChecksum: copiedChecksum))
        }
        if let bad = reports.first(where: { !$0.matches }) {
            throw BlobError(
                .internal, reason: "migrate.mismatch",
                "table \(bad.table) differs after the copy (\(bad.sourceRows) rows, "
                    + "checksum \(bad.sourceChecksum.prefix(16)) in the source; \(bad.destinationRows) rows, "
                    + "\(bad.destinationChecksum.prefix(16)) in the destination); "
                    + "drop the destination database and run the migration again")
        }
        return reports
    }

    /// Reads a whole table in key order, a page at a time, handing each page to `body`;
    /// returns the row count and the checksum of the rows.
    static func scan(
        _ table: Table, in database: any SQLDatabase,
        _ body: ([SQLRow]) async throws -> Void
    ) async throws -> (Int64, String) {
        let columns = table.columns.joined(separator: ", ")
        let key = table.key.joined(separator: ", ")
        var after: [SQLValue]?
        var count: Int64 = 0
        var sum = ChecksumSum()
        while true {
            var sql = "SELECT \(columns) FROM \(table.name)"
            var arguments: [SQLValue] = []
            if let after {
                sql +=
                    table.keyCount == 1
                    ? " WHERE \(key) > ?"
                    : " WHERE (\(key)) > (\(Array(repeating: "?", count: table.keyCount).joined(separator: ", ")))"
                arguments = after
            }
            sql += " ORDER BY \(key) LIMIT ?"
            let page = try await database.rows(sql, arguments + [.int(pageRows)])
            guard let last = page.last else { break }
            for row in page { sum.add(row) }
            count += Int64(page.count)
            try await body(page)
            after = Array(last.values.prefix(table.keyCount))
            if page.count < pageRows { break }
        }
        return (count, sum.hex)
    }

    static func insert(_ page: [SQLRow], into table: Table, of database: any SQLDatabase) async throws {
        let placeholders = "(" + Array(repeating: "?", count: table.columns.count).joined(separator: ", ") + ")"
        let overriding = table.hasIdentity ? database.dialect.overridingIdentity : ""
        _ = try await database.write { tx in
            var start = 0
            while start < page.count {
                let batch = page[start..<min(start + 100, page.count)]
                try await tx.execute(
                    "INSERT INTO \(table.name) (\(table.columns.joined(separator: ", ")))\(overriding) VALUES "
                        + Array(repeating: placeholders, count: batch.count).joined(separator: ", "),
                    batch.flatMap(\.values))
                start += batch.count
            }
            return page.count
        }
    }

    /// An order-independent checksum: the sum, lane by lane, of each row's SHA-256.
    struct ChecksumSum {
        var lanes: [UInt64] = [0, 0, 0, 0]

        mutating func add(_ row: SQLRow) {
            // Each value typed and length-prefixed, so no two rows encode alike.
            var bytes: [UInt8] = []
            for value in row.values {
                switch value {
                case .null: bytes.append(0)
                case .integer(let v): bytes += [1] + withUnsafeBytes(of: v.bigEndian, Array.init)
                case .real(let v): bytes += [2] + withUnsafeBytes(of: v.bitPattern.bigEndian, Array.init)
                case .text(let v):
                    bytes += [3] + withUnsafeBytes(of: UInt32(v.utf8.count).bigEndian, Array.init) + Array(v.utf8)
                case .blob(let v): bytes += [4] + withUnsafeBytes(of: UInt32(v.count).bigEndian, Array.init) + v
                }
            }
            let digest = ChunkID(hashing: bytes).digestBytes  // SHA-256
            for lane in 0..<4 {
                let word = digest[lane * 8..<lane * 8 + 8].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                lanes[lane] &+= word
            }
        }

        var hex: String { lanes.map { String($0, radix: 16).leftPadded(to: 16) }.joined() }
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

extension SQLDialect {
    /// After `INSERT INTO t (cols)`: lets an identity column take the given values.
    var overridingIdentity: String { name == "postgres" ? " OVERRIDING SYSTEM VALUE" : "" }

    /// Moves an identity column's generator past the largest value (nil where the engine does
    /// it by itself: SQLite's INTEGER PRIMARY KEY).
    func identityReset(_ table: String, _ column: String) -> String? {
        guard name == "postgres" else { return nil }
        return "SELECT setval(pg_get_serial_sequence('\(table)', '\(column)'), "
            + "(SELECT COALESCE(MAX(\(column)), 0) + 1 FROM \(table)), false)"
    }
}
