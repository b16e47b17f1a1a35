import BlobCore
import Foundation
public import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// ``SQLDatabase`` on PostgreSQL through postgres-nio's pooled `PostgresClient`: the backend for
/// several masters on one database.
///
/// Write transactions run at READ COMMITTED (PostgreSQL's default); the store's rules take the
/// row locks they need. Read transactions run at REPEATABLE READ READ ONLY, one snapshot.
/// Serialization failures (40001) and deadlocks (40P01) are transient: the store retries them.
///
/// The client's pool runs only inside ``withDatabase(_:logger:clock:_:)``, which also checks the
/// server is reachable and the login accepted, and runs the schema migrations, before handing
/// the database out.
public final class PostgresDatabase: SQLDatabase {
    let client: PostgresClient
    let location: PostgresLocation
    let clock: (@Sendable () -> Int64)?
    let logger: Logger
    public let dialect = SQLDialect.postgres

    init(client: PostgresClient, location: PostgresLocation, clock: (@Sendable () -> Int64)?, logger: Logger) {
        self.client = client
        self.location = location
        self.clock = clock
        self.logger = logger
    }

    /// Connects to `location`, migrates its schema, runs `body` with the database, and closes
    /// the pool when `body` ends. `clock` replaces the server's clock (tests only).
    public static func withDatabase<T: Sendable>(
        _ location: PostgresLocation, logger: Logger, clock: (@Sendable () -> Int64)? = nil,
        maximumConnections: Int = 16, _ body: (PostgresDatabase) async throws -> T
    ) async throws -> T {
        // One direct connection first: the pool retries a refused connection quietly, and an
        // operator who got the address or the password wrong should hear it at once.
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: location.connectionConfiguration, id: 0, logger: logger)
        } catch {
            throw location.explain(error)
        }
        do {
            try await PostgresSchema.migrate(connection, location: location, logger: logger)
        } catch {
            try? await connection.close()
            throw location.explain(error)
        }
        try? await connection.close()

        var configuration = location.clientConfiguration
        configuration.options.maximumConnections = maximumConnections
        let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
        let database = PostgresDatabase(client: client, location: location, clock: clock, logger: logger)
        // Detached: the pool must not see the master's graceful shutdown (PostgresClient.run
        // ends on it), which would close it under the last writes of the shutdown itself, such
        // as giving the leader lease up. It ends when `body` does.
        let pool = Task.detached { await client.run() }
        do {
            let result = try await body(database)
            pool.cancel()
            await pool.value
            return result
        } catch {
            pool.cancel()
            await pool.value
            throw error
        }
    }

    public func query(_ statement: SQLStatement) async throws -> [SQLRow] {
        do {
            return try await Self.collect(try await client.query(try Self.postgresQuery(statement), logger: logger))
        } catch {
            throw location.explain(error)
        }
    }

    public func read<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T {
        try await transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
    }

    public func write<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T {
        try await transaction(begin: "BEGIN ISOLATION LEVEL READ COMMITTED", body)
    }

    func transaction<T: Sendable>(begin: String, _ body: (any SQLTransaction) async throws -> T) async throws -> T {
        do {
            return try await client.withConnection { connection in
                let transaction = Transaction(connection: connection, logger: logger, clock: clock)
                try await transaction.run(begin)
                let result: T
                do {
                    result = try await body(transaction)
                } catch {
                    try? await transaction.run("ROLLBACK")
                    throw error
                }
                try await transaction.run("COMMIT")
                return result
            }
        } catch let error as BlobError {
            throw error
        } catch  where isTransient(error) || isUniqueViolation(error) {
            throw error
        } catch {
            throw location.explain(error)
        }
    }

    public func isTransient(_ error: any Error) -> Bool {
        let state = Self.sqlState(error)
        return state == "40001" || state == "40P01"
    }

    public func isUniqueViolation(_ error: any Error) -> Bool { Self.sqlState(error) == "23505" }

    static func sqlState(_ error: any Error) -> String? {
        (error as? PSQLError)?.serverInfo?[.sqlState]
    }

    /// PostgreSQL checks its pages itself (with data checksums on); this checks what the schema
    /// cannot declare: every current file names a version of its own path.
    public func checkIntegrity() async throws -> Bool {
        let rows = try await query(
            SQLStatement(
                """
                SELECT COUNT(*) FROM current_files f LEFT JOIN versions v ON v.id = f.version_id
                WHERE v.id IS NULL OR v.path <> f.path OR v.deleted <> 0
                """))
        return try rows.first?.int(0) == 0
    }

    public func now() async throws -> Int64 {
        if let clock { return clock() }
        return try await query(SQLStatement(Self.nowSQL)).first?.int(0) ?? 0
    }

    static let nowSQL = "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"

    // MARK: Statements

    /// The statement with `?` turned into `$1`, `$2`, … (outside quoted text) and its binds.
    static func postgresQuery(_ statement: SQLStatement) throws -> PostgresQuery {
        var sql = ""
        sql.reserveCapacity(statement.sql.utf8.count + 16)
        var number = 0
        var quoted: Character?
        for character in statement.sql {
            if let q = quoted {
                if character == q { quoted = nil }
                sql.append(character)
            } else if character == "'" || character == "\"" {
                quoted = character
                sql.append(character)
            } else if character == "?" {
                number += 1
                sql += "$\(number)"
            } else {
                sql.append(character)
            }
        }
        var binds = PostgresBindings(capacity: statement.arguments.count)
        for value in statement.arguments {
            switch value {
            case .null: binds.appendNull()
            case .integer(let v): binds.append(v)
            case .real(let v): binds.append(v)
            case .text(let v): binds.append(v)
            case .blob(let v): binds.append(ByteBuffer(bytes: v))
            }
        }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    static func collect(_ rows: PostgresRowSequence) async throws -> [SQLRow] {
        var out: [SQLRow] = []
        for try await row in rows {
            var values: [SQLValue] = []
            for cell in row {
                values.append(try value(of: cell))
            }
            out.append(SQLRow(values))
        }
        return out
    }

    static func value(of cell: PostgresCell) throws -> SQLValue {
        guard var bytes = cell.bytes else { return .null }
        switch cell.dataType {
        case .int2, .int4, .int8: return .integer(try cell.decode(Int64.self))
        case .float4, .float8: return .real(try cell.decode(Double.self))
        case .bool: return .integer(try cell.decode(Bool.self) ? 1 : 0)
        case .bytea: return .blob(bytes.readBytes(length: bytes.readableBytes) ?? [])
        case .numeric:
            let text = try cell.decode(String.self)
            if let integer = Int64(text) { return .integer(integer) }
            return .real(Double(text) ?? 0)
        default: return .text(try cell.decode(String.self))
        }
    }

    /// One open transaction on a leased connection.
    struct Transaction: SQLTransaction {
        let connection: PostgresConnection
        let logger: Logger
        let clock: (@Sendable () -> Int64)?
        let time = TimeOfTransaction()
        var dialect: SQLDialect { .postgres }

        func run(_ sql: String) async throws {
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }

        func query(_ statement: SQLStatement) async throws -> [SQLRow] {
            try await PostgresDatabase.collect(
                try await connection.query(try PostgresDatabase.postgresQuery(statement), logger: logger))
        }

        func now() async throws -> Int64 {
            if let known = time.value.withLock({ $0 }) { return known }
            let now: Int64
            if let clock {
                now = clock()
            } else {
                now = try await query(SQLStatement(PostgresDatabase.nowSQL)).first?.int(0) ?? 0
            }
            time.value.withLock { $0 = now }
            return now
        }
    }

    /// The database clock as a transaction first asked for it.
    final class TimeOfTransaction: Sendable {
        let value = Mutex<Int64?>(nil)
    }
}
