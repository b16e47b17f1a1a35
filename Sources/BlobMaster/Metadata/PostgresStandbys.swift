public import BlobCore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// A read that a hot standby may answer (stat, list, a read plan), and who answered it.
///
/// A route runs the store's read inside ``serving(position:_:)``; without it every read goes to
/// the primary (the leader's passes, fsck, anything that decides a write).
public final class StandbyRead: Sendable {
    /// The client's last write position: a standby answers once it has replayed that far (and
    /// lags the primary by at most the master's bound). Nil: the read must see everything
    /// committed before it arrived, so a standby answers only once it has replayed as far as the
    /// primary's WAL reached when the read began.
    public let position: MetadataPosition?
    private let answer = Mutex<String>("primary")

    init(position: MetadataPosition?) { self.position = position }

    /// `primary`, or `standby HOST:PORT`.
    public var answeredBy: String { answer.withLock { $0 } }
    func answered(by standby: PostgresEndpoint) { answer.withLock { $0 = "standby \(standby)" } }

    @TaskLocal static var current: StandbyRead?

    /// Runs `body` with its metadata reads allowed on a hot standby; returns its value and who
    /// answered.
    public static func serving<T: Sendable>(
        position: MetadataPosition?, _ body: () async throws -> T
    ) async throws -> (value: T, answeredBy: String) {
        let read = StandbyRead(position: position)
        let value = try await $current.withValue(read) { try await body() }
        return (value, read.answeredBy)
    }
}

/// Hot standbys of the metadata database (`--metadata-replicas`), each with a small pool, and
/// the rule for when one may answer a read.
///
/// A standby answers only once it has replayed as far as the read's floor:
/// - a read that carries its client's last write position: that position, and never less than
///   the primary's position of `maxLag` ago (sampled every second), so its answer is at most
///   about `maxLag` old;
/// - a read without one: the primary's write position when the read began (one cheap query
///   on the primary), so it sees every commit that returned before it, as the primary would.
///
/// The check is its own statement, before the read's transaction begins: the transaction's
/// snapshot is taken after it, and holds everything replayed by then. A standby that is behind,
/// unreachable, promoted (no longer in recovery) or slow leaves the read to the primary.
final class PostgresStandbys: Sendable {
    struct Standby: Sendable {
        let endpoint: PostgresEndpoint
        let client: PostgresClient
        let run: Task<Void, Never>
    }

    struct State {
        /// How far each standby had replayed when last asked.
        var replayed: [Int: MetadataPosition] = [:]
        /// A standby that failed is left alone until then.
        var restingUntil: [Int: ContinuousClock.Instant] = [:]
        /// The primary's write position, sampled every second: oldest first.
        var samples: [(at: ContinuousClock.Instant, position: MetadataPosition)] = []
        var next = 0
    }

    let standbys: [Standby]
    let primary: any SQLDatabase
    /// The primary's write position, one query for many callers: for write answers and for
    /// the floor of reads without a position.
    let primaryPosition: PositionCoalescer
    let maxLag: Duration
    let logger: Logger
    private let state = Mutex(State())

    /// A standby read that has not answered by then goes to the primary.
    static let readTimeout = Duration.seconds(5)
    /// A standby read that has no connection by then goes to the primary: postgres-nio's pool
    /// keeps a lease request waiting while it retries a server that refuses connections.
    static let connectionWait = Duration.milliseconds(500)
    /// How long a standby that failed is left alone.
    static let rest = Duration.seconds(5)
    static let sampleInterval = Duration.seconds(1)

    private init(standbys: [Standby], primary: any SQLDatabase, maxLag: Duration, logger: Logger) {
        self.standbys = standbys
        self.primary = primary
        self.primaryPosition = PositionCoalescer { try await primary.writePosition() }
        self.maxLag = maxLag
        self.logger = logger
    }

    /// Pools to every host of `location`, and the primary's position sampled, while `body` runs.
    static func withStandbys<T: Sendable>(
        _ location: PostgresLocation, primary: any SQLDatabase, maxLag: Duration, logger: Logger,
        _ body: (PostgresStandbys) async throws -> T
    ) async throws -> T {
        // The pool retries a standby that refuses connections many times a second while a read
        // waits for one (500 ms at most): that is the master's log line, not each attempt's.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        let standbys = location.hosts.map { endpoint in
            var configuration = location.clientConfiguration(endpoint)
            configuration.options.maximumConnections = 8
            configuration.options.connectTimeout = .seconds(2)
            let client = PostgresClient(configuration: configuration, backgroundLogger: poolLogger)
            // Detached, as the primary's pool: the master's graceful shutdown must not close it.
            return Standby(endpoint: endpoint, client: client, run: Task.detached { await client.run() })
        }
        let set = PostgresStandbys(standbys: standbys, primary: primary, maxLag: maxLag, logger: logger)
        let sampler = Task { await set.sample() }
        defer {
            sampler.cancel()
            for standby in standbys { standby.run.cancel() }
        }
        return try await body(set)
    }

    /// Records the primary's write position every ``sampleInterval``, keeping what `maxLag`
    /// needs.
    private func sample() async {
        while !Task.isCancelled {
            if let position = try? await primary.writePosition() {
                let now = ContinuousClock.now
                state.withLock { state in
                    state.samples.append((now, position))
                    while state.samples.count > 2, now - state.samples[1].at >= maxLag {
                        state.samples.removeFirst()
                    }
                }
            }
            try? await Task.sleep(for: Self.sampleInterval)
        }
    }

    /// The primary's position of `maxLag` ago (the newest sample at least that old, else the
    /// oldest); nil when the newest sample is older than `maxLag`: the primary has not been
    /// reachable, and how stale a standby is cannot be bounded.
    func lagFloor(now: ContinuousClock.Instant = .now) -> MetadataPosition? {
        state.withLock { state in
            guard let newest = state.samples.last, now - newest.at <= maxLag else { return nil }
            return (state.samples.last { now - $0.at >= maxLag } ?? state.samples[0]).position
        }
    }

    /// `body` run on a standby that has replayed as far as the read's floor, in one
    /// REPEATABLE READ READ ONLY transaction; nil when none can answer it (the primary then does).
    func read<T: Sendable>(
        _ request: StandbyRead, _ body: (any SQLTransaction) async throws -> T
    ) async throws -> T? {
        guard var index = nextStandby() else { return nil }
        let floor: MetadataPosition
        if let position = request.position {
            guard let lag = lagFloor() else { return nil }
            floor = max(position, lag)
        } else {
            guard let now = try? await primaryPosition.position() else { return nil }
            floor = now
        }
        // A standby that fails is passed over for the next one, within this read; one that is
        // merely behind leaves the read to the primary.
        for attempt in 0..<standbys.count {
            if attempt > 0 {
                guard let next = nextStandby() else { return nil }
                index = next
            }
            do {
                let answer = try await read(on: index, floor: floor, body)
                if answer != nil { request.answered(by: standbys[index].endpoint) }
                return answer
            } catch let error as BlobError where !Self.isStandbyFailure(error) {
                throw error
            } catch {
                // Unreachable, promoted, too slow, or a query cancelled by a recovery conflict:
                // this standby rests. The primary among the listed nodes is left out every time it
                // comes round, as configured (every node may be listed): that is no news.
                let promoted = (error as? BlobError)?.reason == "metadata.standbyPromoted"
                logger.log(
                    level: promoted ? .debug : .notice, "metadata standby left out",
                    metadata: ["postgres.endpoint": "\(standbys[index].endpoint)", "error.message": "\(error)"])
                state.withLock {
                    $0.replayed[index] = nil
                    $0.restingUntil[index] = .now + Self.rest
                }
            }
        }
        return nil
    }

    /// `body` on standby `index` if it has replayed as far as `floor`; nil when it is behind.
    private func read<T: Sendable>(
        on index: Int, floor: MetadataPosition, _ body: (any SQLTransaction) async throws -> T
    ) async throws -> T? {
        let standby = standbys[index]
        let known = state.withLock { $0.replayed[index] }
        return try await onStandby(standby) { connection in
            let transaction = PostgresDatabase.Transaction(connection: connection, logger: logger, clock: nil)
            if known.map({ $0 < floor }) ?? true {
                let row = try await transaction.query(
                    SQLStatement(
                        "SELECT pg_is_in_recovery(), CAST(COALESCE(pg_last_wal_replay_lsn(), '0/0') AS TEXT)"))
                guard let row = row.first, try row.int(0) != 0, let replayed = MetadataPosition(try row.text(1))
                else {
                    throw BlobError(
                        .unavailable, reason: "metadata.standbyPromoted", "\(standby.endpoint) is no longer a standby")
                }
                state.withLock { $0.replayed[index] = replayed }
                guard replayed >= floor else { return nil }
            }
            let result = try await transaction.begun("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", body)
            try? await transaction.run("COMMIT")
            return result
        }
    }

    static func isStandbyFailure(_ error: BlobError) -> Bool {
        [PostgresDatabase.connectionLost, "metadata.standbyPromoted", "metadata.standbyTimeout"].contains(error.reason)
    }

    /// The next standby in turn that is not resting.
    private func nextStandby() -> Int? {
        state.withLock { state in
            let now = ContinuousClock.now
            for step in 0..<standbys.count {
                let index = (state.next + step) % standbys.count
                if let until = state.restingUntil[index], until > now { continue }
                state.restingUntil[index] = nil
                state.next = index + 1
                return index
            }
            return nil
        }
    }

    /// Runs `work` on a connection of `standby`: a wait for a connection is cancelled after
    /// ``connectionWait``, and a query still in flight after ``readTimeout`` is answered with
    /// `metadata.standbyTimeout`
    /// (the way ``PostgresDatabase/onPrimary(_:)`` guards against a query stranded on a dead
    /// server).
    private func onStandby<T: Sendable>(
        _ standby: Standby, _ work: (PostgresConnection) async throws -> T
    ) async throws -> T {
        let leased = PostgresDatabase.LeaseFlag()
        return try await withoutActuallyEscaping(work) { work in
            let work = PostgresDatabase.UncheckedBox(work)
            let attempt = Task {
                try await standby.client.withConnection { connection in
                    leased.set(connection)
                    return try await PostgresDatabase.$currentLease.withValue(leased) {
                        try await work.value(connection)
                    }
                }
            }
            let watchdog = Task {
                let started = ContinuousClock.now
                while !Task.isCancelled {
                    try? await Task.sleep(for: .milliseconds(100))
                    let waited = ContinuousClock.now - started
                    guard !Task.isCancelled, waited >= (leased.isSet ? Self.readTimeout : Self.connectionWait)
                    else { continue }
                    if leased.isSet {
                        leased.abandonQuery(
                            BlobError(
                                .unavailable, reason: "metadata.standbyTimeout",
                                "the standby \(standby.endpoint) did not answer within \(Self.readTimeout)"))
                    } else {
                        attempt.cancel()
                    }
                }
            }
            defer { watchdog.cancel() }
            return try await withTaskCancellationHandler {
                try await attempt.value
            } onCancel: {
                attempt.cancel()
            }
        }
    }

    /// Where each standby is, for `cluster status` and logs.
    var endpoints: [PostgresEndpoint] { standbys.map(\.endpoint) }
}

extension PostgresDatabase {
    /// Every node of the metadata (this database's hosts and `standbys`), asked just now on a
    /// direct connection each (2 s to connect): primary or standby, and where its WAL is.
    func nodeStatus(standbys: [PostgresEndpoint]) async -> [MetadataNodeStatus] {
        var endpoints = location.hosts
        for endpoint in standbys where !endpoints.contains(endpoint) { endpoints.append(endpoint) }
        let (location, logger) = (self.location, self.logger)
        var found = await withTaskGroup(of: (Int, MetadataNodeStatus).self) { group in
            for (index, endpoint) in endpoints.enumerated() {
                group.addTask {
                    let servesReads = standbys.contains(endpoint)
                    do {
                        let connection = try await PostgresConnection.connect(
                            configuration: location.connectionConfiguration(endpoint, connectTimeout: .seconds(2)),
                            id: index, logger: logger)
                        defer { Task { try? await connection.close() } }
                        var answer: (Bool, String) = (true, "0/0")
                        let query: PostgresQuery = """
                            SELECT pg_is_in_recovery(), CAST(CASE WHEN pg_is_in_recovery()
                            THEN COALESCE(pg_last_wal_replay_lsn(), '0/0') ELSE pg_current_wal_lsn() END AS TEXT)
                            """
                        for try await row in try await connection.query(query, logger: logger) {
                            answer = try row.decode((Bool, String).self)
                        }
                        return (
                            index,
                            MetadataNodeStatus(
                                endpoint: endpoint.description, role: answer.0 ? "standby" : "primary",
                                position: answer.1, servesReads: servesReads)
                        )
                    } catch {
                        return (
                            index,
                            MetadataNodeStatus(
                                endpoint: endpoint.description, role: "unreachable", servesReads: servesReads,
                                error: "\(location.explain(error, at: endpoint))")
                        )
                    }
                }
            }
            return await group.reduce(into: [(Int, MetadataNodeStatus)]()) { $0.append($1) }
        }
        found.sort { $0.0 < $1.0 }
        let primary = found.first { $0.1.role == "primary" }.flatMap { $0.1.position.flatMap(MetadataPosition.init) }
        return found.map { _, node in
            var node = node
            if node.role == "standby", let primary, let replayed = node.position.flatMap(MetadataPosition.init) {
                node.bytesBehind = primary.value >= replayed.value ? Int64(primary.value - replayed.value) : 0
            }
            return node
        }
    }
}
