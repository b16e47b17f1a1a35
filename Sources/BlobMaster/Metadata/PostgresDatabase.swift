public import BlobCore
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
    let primary: PostgresPrimary
    let location: PostgresLocation
    let clock: (@Sendable () -> Int64)?
    let logger: Logger
    public let dialect = SQLDialect.postgres
    /// How long a request waits for a connection before the pool's server is checked.
    static let stallCheck = Duration.seconds(3)

    init(primary: PostgresPrimary, location: PostgresLocation, clock: (@Sendable () -> Int64)?, logger: Logger) {
        self.primary = primary
        self.location = location
        self.clock = clock
        self.logger = logger
    }

    /// Connects to the location's primary, migrates its schema, runs `body` with the database,
    /// and closes the pool when `body` ends. `clock` replaces the server's clock (tests only).
    public static func withDatabase<T: Sendable>(
        _ location: PostgresLocation, logger: Logger, clock: (@Sendable () -> Int64)? = nil,
        maximumConnections: Int = 16, _ body: (PostgresDatabase) async throws -> T
    ) async throws -> T {
        // One direct connection first: the pool retries a refused connection quietly, and an
        // operator who got the address or the password wrong should hear it at once.
        let (found, errors) = await PostgresPrimary.findPrimary(location: location, first: nil, logger: logger)
        guard let endpoint = found else {
            let hosts = location.hosts
            if hosts.count == 1 {
                // The one host's own explanation (unreachable, login refused, no database…).
                do {
                    let connection = try await PostgresConnection.connect(
                        configuration: location.connectionConfiguration(hosts[0]), id: 0, logger: logger)
                    try? await connection.close()
                } catch {
                    throw location.explain(error, at: hosts[0])
                }
            }
            throw BlobError(
                .unavailable, reason: "metadata.noPrimary",
                "no writable PostgreSQL primary among \(hosts.map(\.description).joined(separator: ", ")) "
                    + "(\(errors.joined(separator: "; "))); point --metadata at the primary, or list every node "
                    + "(postgres://USER@H1:P1,H2:P2/DB)")
        }
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: location.connectionConfiguration(endpoint), id: 0, logger: logger)
        } catch {
            throw location.explain(error, at: endpoint)
        }
        do {
            try await PostgresSchema.migrate(connection, location: location, logger: logger)
        } catch {
            try? await connection.close()
            throw location.explain(error, at: endpoint)
        }
        try? await connection.close()

        let primary = PostgresPrimary(location: location, maximumConnections: maximumConnections, logger: logger)
        let database = PostgresDatabase(primary: primary, location: location, clock: clock, logger: logger)
        do {
            let result = try await body(database)
            await primary.close()
            return result
        } catch {
            await primary.close()
            throw error
        }
    }

    public func query(_ statement: SQLStatement) async throws -> [SQLRow] {
        let query = try Self.postgresQuery(statement)
        let logger = self.logger
        return try await onPrimary { connection in
            let run: @Sendable () async throws -> [SQLRow] = {
                try await Self.collect(try await connection.query(query, logger: logger))
            }
            guard let lease = Self.currentLease else { return try await run() }
            return try await lease.guarded(run)
        }
    }

    public func read<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T {
        try await transaction(begin: "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
    }

    public func write<T: Sendable>(_ body: (any SQLTransaction) async throws -> T) async throws -> T {
        try await transaction(begin: "BEGIN ISOLATION LEVEL READ COMMITTED", body)
    }

    func transaction<T: Sendable>(begin: String, _ body: (any SQLTransaction) async throws -> T) async throws -> T {
        let readOnly = begin.contains("READ ONLY")
        return try await onPrimary { connection in
            let transaction = Transaction(connection: connection, logger: logger, clock: clock)
            let result = try await transaction.begun(begin, body)
            do {
                try await transaction.run("COMMIT")
            } catch  where !readOnly && PostgresPrimary.meansPrimaryLost(error) {
                throw CommitOutcomeUnknown(underlying: error)
            } catch  where readOnly && PostgresPrimary.meansPrimaryLost(error) {
                // A read has its answer; the pool finds out about the connection on its own.
            }
            return result
        }
    }

    /// The COMMIT was sent and its answer lost with the connection: the transaction may or may
    /// not have committed.
    struct CommitOutcomeUnknown: Error { var underlying: any Error }

    /// Runs `work` on a connection to the primary. When the primary is lost before `work`
    /// could commit anything, the pool is dropped, the primary found again (waiting up to the
    /// location's `failoverWait`) and `work` run again from the start: nothing of the failed
    /// attempt was committed. A lost COMMIT is not run again: it throws 503
    /// `metadata.commitUnknown`, which a caller with a request id settles by looking it up.
    func onPrimary<T: Sendable>(_ work: (PostgresConnection) async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + location.failoverWait
        while true {
            let pool = try await primary.current(until: deadline)
            let leased = LeaseFlag()
            // The attempt runs in a task of its own (awaited at once, task-locals inherited), so
            // that a wait for a connection can be given up: a pool dropped meanwhile never
            // serves its queue. A leased connection is never interrupted.
            let outcome: Result<T, any Error> = await withoutActuallyEscaping(work) { work in
                let work = UncheckedBox(work)
                let attempt = Task {
                    try await pool.client.withConnection { connection in
                        leased.set(connection)
                        return try await Self.$currentLease.withValue(leased) { try await work.value(connection) }
                    }
                }
                // A query left waiting on a connection that closed under it (postgres-nio can
                // leave a query that was in flight when the server died waiting forever) is
                // answered with `metadata.connectionLost`.
                let watchdog = Task { [primary, logger] in
                    let started = ContinuousClock.now
                    var checked = false
                    var closedSince: ContinuousClock.Instant?
                    while !Task.isCancelled {
                        try? await Task.sleep(for: Self.watchInterval)
                        guard !Task.isCancelled else { return }
                        if let connection = leased.connection {
                            guard connection.isClosed else { continue }
                            let since = closedSince ?? ContinuousClock.now
                            closedSince = since
                            if ContinuousClock.now - since >= Self.watchInterval * 4 {
                                leased.abandonQuery(
                                    BlobError(
                                        .unavailable, reason: Self.connectionLost,
                                        "the connection to PostgreSQL at \(pool.endpoint) closed during a request"))
                            }
                            continue
                        }
                        if !checked && ContinuousClock.now - started >= Self.stallCheck {
                            checked = true
                            logger.debug("metadata connection stalled", metadata: ["generation": "\(pool.generation)"])
                            await primary.checkStalled(pool.generation)
                        }
                        if await !primary.isCurrent(pool.generation) && !leased.isSet {
                            attempt.cancel()
                        }
                    }
                }
                defer { watchdog.cancel() }
                do {
                    return .success(
                        try await withTaskCancellationHandler {
                            try await attempt.value
                        } onCancel: {
                            attempt.cancel()
                        })
                } catch {
                    return .failure(error)
                }
            }
            do {
                return try outcome.get()
            } catch let error as BlobError where error.reason == Self.connectionLost {
                await primary.lost(pool.generation, because: error)
                guard ContinuousClock.now < deadline else { throw error }
            } catch  where !leased.isSet && !Task.isCancelled && !(error is BlobError) {
                // No connection was had from a pool that was dropped meanwhile: nothing ran.
                await primary.lost(pool.generation, because: error)
                guard ContinuousClock.now < deadline else { throw location.explain(error, at: pool.endpoint) }
                continue
            } catch let unknown as CommitOutcomeUnknown {
                await primary.lost(pool.generation, because: unknown.underlying)
                throw BlobError(
                    .unavailable, reason: MetadataStore.commitUnknown,
                    "the connection to PostgreSQL at \(pool.endpoint) broke during a COMMIT: it may or may not have "
                        + "been applied; send the request again")
            } catch let error as BlobError {
                throw error
            } catch  where PostgresPrimary.meansPrimaryLost(error) {
                logger.debug(
                    "metadata attempt lost its primary",
                    metadata: ["generation": "\(pool.generation)", "error.message": "\(String(reflecting: error))"])
                await primary.lost(pool.generation, because: error)
                guard ContinuousClock.now < deadline else { throw location.explain(error, at: pool.endpoint) }
            } catch  where isTransient(error) || isUniqueViolation(error) {
                throw error
            } catch {
                throw location.explain(error, at: pool.endpoint)
            }
        }
    }

    /// How often a request waiting for a connection checks that its pool is still the current one.
    static let watchInterval = Duration.milliseconds(250)

    /// A value carried into the attempt's task, which the caller awaits at once: never used
    /// from two tasks at a time.
    struct UncheckedBox<Value>: @unchecked Sendable {
        let value: Value
        init(_ value: Value) { self.value = value }
    }

    /// The attempt a transaction runs in, for its COMMIT to say it was sent.
    @TaskLocal static var currentLease: LeaseFlag?

    static let connectionLost = "metadata.connectionLost"

    /// A request's connection once it holds one, and the query it waits on.
    final class LeaseFlag: Sendable {
        private struct State {
            var connection: PostgresConnection?
            var abandon: (@Sendable (any Error) -> Void)?
        }
        private let state = Mutex(State())
        var isSet: Bool { connection != nil }
        var connection: PostgresConnection? { state.withLock { $0.connection } }
        func set(_ connection: PostgresConnection) { state.withLock { $0.connection = connection } }

        /// Answers the query being waited on with `error`.
        func abandonQuery(_ error: any Error) {
            state.withLock { $0.abandon }?(error)
        }

        /// Runs `query` in a task of its own, answered by its end or by ``abandonQuery(_:)``; an
        /// abandoned task is left suspended (it holds nothing but the connection).
        func guarded<T: Sendable>(_ query: @escaping @Sendable () async throws -> T) async throws -> T {
            let answer = Answer<T>()
            state.withLock { $0.abandon = { answer.give(.failure($0)) } }
            defer { state.withLock { $0.abandon = nil } }
            Task {
                do { answer.give(.success(try await query())) } catch { answer.give(.failure(error)) }
            }
            return try await answer.value.get()
        }
    }

    /// The first of several answers, for one waiter.
    final class Answer<T: Sendable>: Sendable {
        private let state = Mutex<
            (result: Result<T, any Error>?, waiter: CheckedContinuation<Result<T, any Error>, Never>?)
        >(
            (nil, nil))

        func give(_ result: Result<T, any Error>) {
            let waiter = state.withLock { state -> CheckedContinuation<Result<T, any Error>, Never>? in
                guard state.result == nil else { return nil }
                state.result = result
                defer { state.waiter = nil }
                return state.waiter
            }
            waiter?.resume(returning: result)
        }

        var value: Result<T, any Error> {
            get async {
                await withCheckedContinuation { continuation in
                    let ready = state.withLock { state -> Result<T, any Error>? in
                        if let result = state.result { return result }
                        state.waiter = continuation
                        return nil
                    }
                    if let ready { continuation.resume(returning: ready) }
                }
            }
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

    /// `pg_current_wal_lsn()`: the primary's WAL write position. A commit that returned was
    /// flushed, so it lies before this.
    public func writePosition() async throws -> MetadataPosition? {
        guard let text = try await query(SQLStatement(Self.writePositionSQL)).first.map({ try $0.text(0) }),
            let position = MetadataPosition(text)
        else {
            throw BlobError(.internal, reason: "metadata.position", "PostgreSQL answered no WAL position")
        }
        return position
    }

    static let writePositionSQL = "SELECT CAST(pg_current_wal_lsn() AS TEXT)"

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

        /// Sends `begin`, then runs `body`: rolled back (and its error thrown) when it throws. The
        /// COMMIT, and what its failure means, is the caller's.
        func begun<T: Sendable>(_ begin: String, _ body: (any SQLTransaction) async throws -> T) async throws -> T {
            try await run(begin)
            do {
                return try await body(self)
            } catch {
                try? await run("ROLLBACK")
                throw error
            }
        }

        func run(_ sql: String) async throws {
            let (connection, logger) = (self.connection, self.logger)
            try await guarded { _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger) }
        }

        func query(_ statement: SQLStatement) async throws -> [SQLRow] {
            let (connection, logger) = (self.connection, self.logger)
            let query = try PostgresDatabase.postgresQuery(statement)
            return try await guarded {
                try await PostgresDatabase.collect(try await connection.query(query, logger: logger))
            }
        }

        private func guarded<T: Sendable>(_ query: @escaping @Sendable () async throws -> T) async throws -> T {
            guard let lease = PostgresDatabase.currentLease else { return try await query() }
            return try await lease.guarded(query)
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
