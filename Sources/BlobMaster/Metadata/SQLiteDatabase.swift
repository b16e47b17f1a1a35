import BlobCore
import Foundation
import GRDB

/// ``SQLDatabase`` on an embedded SQLite file (GRDB), in WAL mode: the default backend.
///
/// Durability: `synchronous = FULL`, so the WAL is fsynced at every commit and an acknowledged
/// commit survives a power cut. Paths are stored as BLOBs of their UTF-8 bytes, so order and
/// prefix ranges are plain byte comparisons on the primary key.
///
/// A write transaction is `BEGIN IMMEDIATE` on GRDB's one writer connection, its statements run
/// there synchronously, then `COMMIT` (the fsync) as an async hop; ``writeGate`` keeps a second
/// transaction's statements from interleaving with the first's. Reads run on the reader pool beside writes.
public final class SQLiteDatabase: SQLDatabase {
    let pool: DatabasePool
    let writeGate = SerialGate()
    let clock: @Sendable () -> Int64
    public let dialect = SQLDialect.sqlite

    /// Opens (creating and migrating) the database at `path`. `clock` is the database clock
    /// (wall time by default; tests pass a manual one).
    public init(path: String, clock: (@Sendable () -> Int64)? = nil) throws {
        self.clock = clock ?? { Int64(Date().timeIntervalSince1970 * 1000) }
        var configuration = Configuration()
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
        }
        configuration.busyMode = .timeout(10)
        // Transactions span several writer accesses (one per statement), serialised by the gate.
        configuration.allowsUnsafeTransactions = true
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
        } catch {
            throw BlobError(
                .unavailable, reason: "metadata.open",
                "cannot open the SQLite metadata database \(path) (\(error)); check the path and its permissions")
        }
        let migrator = Self.migrator
        if try pool.read({ db in try migrator.hasBeenSuperseded(db) }) {
            throw BlobError(
                .failedPrecondition, reason: "metadata.schemaNewer",
                "the metadata database \(path) has a schema newer than this blobctl; run the blobctl that "
                    + "wrote it, or a newer one")
        }
        try migrator.migrate(pool)
    }

    public func query(_ statement: SQLStatement) async throws -> [SQLRow] {
        try await pool.read { db in try Self.run(statement, in: db) }
    }

    public func read<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T {
        try await body(ReadTransaction(pool: pool, clock: clock))
    }

    public func write<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T {
        await writeGate.enter()
        do {
            try Self.begin(pool)
            let transaction = WriteTransaction(pool: pool, now: clock())
            let result: T
            do {
                result = try await body(transaction)
                try await pool.writeWithoutTransaction { db in try db.execute(sql: "COMMIT") }
            } catch {
                try? await pool.writeWithoutTransaction { db in
                    if db.isInsideTransaction { try db.execute(sql: "ROLLBACK") }
                }
                throw error
            }
            await writeGate.leave()
            return result
        } catch {
            await writeGate.leave()
            throw error
        }
    }

    static func begin(_ pool: DatabasePool) throws {
        try pool.writeWithoutTransaction { db in
            // A transaction left open by a cancelled task is rolled back before the next.
            if db.isInsideTransaction { try db.execute(sql: "ROLLBACK") }
            try db.execute(sql: "BEGIN IMMEDIATE")
        }
    }

    public func isTransient(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return error.resultCode == .SQLITE_BUSY || error.resultCode == .SQLITE_LOCKED
    }

    public func isUniqueViolation(_ error: any Error) -> Bool {
        guard let error = error as? DatabaseError else { return false }
        return error.extendedResultCode == .SQLITE_CONSTRAINT_PRIMARYKEY
            || error.extendedResultCode == .SQLITE_CONSTRAINT_UNIQUE
    }

    public func checkIntegrity() async throws -> Bool {
        try await pool.read { db in
            let result = try String.fetchAll(db, sql: "PRAGMA integrity_check")
            let foreignKeys = try Row.fetchAll(db, sql: "PRAGMA foreign_key_check")
            return result == ["ok"] && foreignKeys.isEmpty
        }
    }

    public func now() async throws -> Int64 { clock() }

    /// Runs one statement on a connection, from GRDB's statement cache.
    static func run(_ statement: SQLStatement, in db: Database) throws -> [SQLRow] {
        let prepared = try db.cachedStatement(sql: statement.sql)
        let arguments = StatementArguments(statement.arguments.map(databaseValue))
        guard prepared.columnCount > 0 else {
            try prepared.execute(arguments: arguments)
            return []
        }
        var out: [SQLRow] = []
        let rows = try Row.fetchCursor(prepared, arguments: arguments)
        while let row = try rows.next() {
            var values: [SQLValue] = []
            values.reserveCapacity(row.count)
            for value in row.databaseValues {
                switch value.storage {
                case .null: values.append(.null)
                case .int64(let v): values.append(.integer(v))
                case .double(let v): values.append(.real(v))
                case .string(let v): values.append(.text(v))
                case .blob(let v): values.append(.blob([UInt8](v)))
                }
            }
            out.append(SQLRow(values))
        }
        return out
    }

    static func databaseValue(_ value: SQLValue) -> DatabaseValue {
        switch value {
        case .null: return .null
        case .integer(let v): return v.databaseValue
        case .real(let v): return v.databaseValue
        case .text(let v): return v.databaseValue
        case .blob(let v): return Data(v).databaseValue
        }
    }

    /// Statements of a read: each on the reader pool, seeing the newest commit.
    struct ReadTransaction: SQLTransaction {
        let pool: DatabasePool
        let clock: @Sendable () -> Int64
        var dialect: SQLDialect { .sqlite }

        func query(_ statement: SQLStatement) async throws -> [SQLRow] {
            try await pool.read { db in try SQLiteDatabase.run(statement, in: db) }
        }

        func now() async throws -> Int64 { clock() }
    }

    /// Statements of a write: each on the writer connection, inside the open transaction.
    struct WriteTransaction: SQLTransaction {
        let pool: DatabasePool
        let time: Int64
        var dialect: SQLDialect { .sqlite }

        init(pool: DatabasePool, now: Int64) {
            self.pool = pool
            self.time = now
        }

        /// Runs on the writer connection synchronously: the gate gives this transaction the
        /// writer alone, so the call does not wait, and a statement takes microseconds. An async
        /// hop per statement cost a wait for a cooperative thread each, which under load held
        /// the gate (and every other writer) for milliseconds per transaction.
        func query(_ statement: SQLStatement) async throws -> [SQLRow] {
            try Self.runOnWriter(statement, pool: pool)
        }

        static func runOnWriter(_ statement: SQLStatement, pool: DatabasePool) throws -> [SQLRow] {
            try pool.writeWithoutTransaction { db in try SQLiteDatabase.run(statement, in: db) }
        }

        func now() async throws -> Int64 { time }
    }
}

/// A first-come, first-served gate that one task holds at a time.
actor SerialGate {
    private var held = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    func enter() async {
        guard held else {
            held = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
    }

    func leave() {
        if waiting.isEmpty {
            held = false
        } else {
            // Handed straight to the next task: `held` stays true.
            waiting.removeFirst().resume()
        }
    }
}
