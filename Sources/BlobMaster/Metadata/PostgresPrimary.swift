import BlobCore
import Foundation
import Logging
import NIOCore
import PostgresNIO
import Synchronization

/// The writable PostgreSQL server among a location's hosts, and a connection pool to it.
///
/// It is found by asking each host `pg_is_in_recovery()`: a primary answers false, a hot
/// standby true. When the pool's server stops answering, or turns out to be a standby (it was
/// demoted in a failover), the pool is dropped and the primary found again, waiting up to the
/// location's `failoverWait` for one to appear (Patroni promotes a standby within its TTL).
actor PostgresPrimary {
    /// A pool to one server; `generation` tells a stale pool from the current one.
    struct Pool: Sendable {
        let client: PostgresClient
        let endpoint: PostgresEndpoint
        let generation: Int
        let run: Task<Void, Never>
    }

    let location: PostgresLocation
    let maximumConnections: Int
    let logger: Logger
    private var pool: Pool?
    private var finding: Task<Pool, any Error>?
    private var generation = 0
    private var closed = false
    /// Where the primary was last found: asked first next time.
    private var lastPrimary: PostgresEndpoint?

    init(location: PostgresLocation, maximumConnections: Int, logger: Logger) {
        self.location = location
        self.maximumConnections = maximumConnections
        self.logger = logger
    }

    /// The current pool, found first if there is none; waits for a primary until `deadline`.
    func current(until deadline: ContinuousClock.Instant) async throws -> Pool {
        if let pool { return pool }
        guard !closed else { throw CancellationError() }
        let task: Task<Pool, any Error>
        if let finding {
            task = finding
        } else {
            task = Task { try await self.find(until: deadline) }
            finding = task
        }
        do {
            let found = try await task.value
            if finding == task { finding = nil }
            return found
        } catch {
            if finding == task { finding = nil }
            throw error
        }
    }

    /// The pool of `generation` failed in a way that says its server is gone or no longer the
    /// primary: it is shut down (its waiting requests fail and go again) and the next request
    /// finds the primary anew. A report about an older pool changes nothing.
    func lost(_ generation: Int, because error: any Error) {
        guard let pool, pool.generation == generation else { return }
        logger.warning(
            "metadata primary lost; looking for it again",
            metadata: ["postgres.endpoint": "\(pool.endpoint)", "error.message": "\(error)"])
        pool.run.cancel()
        self.pool = nil
    }

    /// A request has waited long for a connection of pool `generation`: if its server no longer
    /// answers as the primary, the pool is dropped (the queue behind a busy pool is left alone).
    func checkStalled(_ generation: Int) async {
        guard let pool, pool.generation == generation else { return }
        if (try? await Self.isPrimary(pool.endpoint, location: location, logger: logger)) == true { return }
        lost(generation, because: BlobError(.unavailable, reason: "metadata.stalled", "no connection in time"))
    }

    /// Whether `generation` is the current pool's.
    func isCurrent(_ generation: Int) -> Bool { pool?.generation == generation }

    /// Shuts the pool down; later requests fail.
    func close() async {
        closed = true
        finding?.cancel()
        if let pool {
            pool.run.cancel()
            await pool.run.value
        }
        pool = nil
    }

    private func find(until deadline: ContinuousClock.Instant) async throws -> Pool {
        var pause = Duration.milliseconds(100)
        var errors: [String] = []
        while true {
            let (found, attemptErrors) = await Self.findPrimary(
                location: location, first: lastPrimary, logger: logger)
            errors = attemptErrors
            if let found {
                generation += 1
                var configuration = location.clientConfiguration(found)
                configuration.options.maximumConnections = maximumConnections
                configuration.options.connectTimeout = .seconds(3)
                let client = PostgresClient(configuration: configuration, backgroundLogger: logger)
                // Detached: the pool must not see the master's graceful shutdown (PostgresClient.run
                // ends on it), which would close it under the last writes of the shutdown itself,
                // such as giving the leader lease up. ``close()`` ends it.
                let run = Task.detached { await client.run() }
                let pool = Pool(client: client, endpoint: found, generation: generation, run: run)
                if lastPrimary != nil && lastPrimary != found || generation > 1 {
                    logger.notice("metadata primary found", metadata: ["postgres.endpoint": "\(found)"])
                }
                lastPrimary = found
                self.pool = pool
                return pool
            }
            guard ContinuousClock.now + pause < deadline, !closed else { break }
            try await Task.sleep(for: pause)
            pause = min(pause * 2, .seconds(1))
        }
        throw BlobError(
            .unavailable, reason: "metadata.noPrimary",
            "no writable PostgreSQL primary among \(location.hosts.map(\.description).joined(separator: ", ")) "
                + "(\(errors.joined(separator: "; "))); start PostgreSQL, or wait for its HA manager to promote "
                + "a standby")
    }

    /// One pass over the hosts, `first` first: the first that answers as a primary, and what
    /// each of the others said.
    static func findPrimary(
        location: PostgresLocation, first: PostgresEndpoint?, logger: Logger
    ) async -> (PostgresEndpoint?, [String]) {
        var order = location.hosts
        if let first, let index = order.firstIndex(of: first) { order.insert(order.remove(at: index), at: 0) }
        var errors: [String] = []
        for endpoint in order {
            do {
                if try await isPrimary(endpoint, location: location, logger: logger) { return (endpoint, errors) }
                errors.append("\(endpoint) is a standby")
            } catch {
                errors.append("\(endpoint): \(location.explain(error, at: endpoint))")
            }
        }
        return (nil, errors)
    }

    /// Whether `endpoint` answers, and as a primary.
    static func isPrimary(_ endpoint: PostgresEndpoint, location: PostgresLocation, logger: Logger) async throws -> Bool
    {
        let connection = try await PostgresConnection.connect(
            configuration: location.connectionConfiguration(endpoint, connectTimeout: .seconds(2)), id: 0,
            logger: logger)
        do {
            var inRecovery = true
            for try await row in try await connection.query("SELECT pg_is_in_recovery()", logger: logger) {
                inRecovery = try row.decode(Bool.self)
            }
            try await connection.close()
            return !inRecovery
        } catch {
            try? await connection.close()
            throw error
        }
    }

    /// Whether `error` says the pool's server is gone or is no longer the primary: the
    /// connection broke, the server is shutting down or starting, or it refuses writes as a
    /// standby does.
    static func meansPrimaryLost(_ error: any Error) -> Bool {
        if error is ChannelError || error is IOError { return true }
        if let error = error as? BlobError { return error.reason == PostgresDatabase.connectionLost }
        guard let error = error as? PSQLError else {
            return "\(type(of: error))".contains("ConnectionPoolError")
        }
        switch error.code {
        case .serverClosedConnection, .connectionError, .uncleanShutdown, .clientClosedConnection, .poolClosed:
            return true
        default:
            break
        }
        guard let state = error.serverInfo?[.sqlState] else { return false }
        // 08: connection exceptions; 57P01-57P03: admin or crash shutdown, cannot connect now;
        // 25006: a read-only transaction, as on a standby.
        return state.hasPrefix("08") || ["57P01", "57P02", "57P03", "25006"].contains(state)
    }
}
