import AsyncHTTPClient
import BlobCore
import BlobServerSupport
import Foundation
import Logging
import NIOCore
import ServiceLifecycle
import Synchronization

/// The chunk server's side of the membership protocol, in one place: register with the master,
/// then heartbeat at the interval it asks for; register again when it forgets us. Failures are
/// logged and retried with capped exponential backoff and jitter; the loop ends on graceful
/// shutdown.
///
/// With several masters (`masterURL` lists them, comma-separated) the server talks to one at a
/// time, chosen by its id so servers spread over them, and moves to the next when that one
/// does not answer: every master shares what it is told through the database.
struct MasterLink: Service {
    let masterURL: String
    let client: HTTPClient
    let signer: RequestSigner
    let storage: ChunkStorage
    let serverID: String
    let addressBox: AddressBox
    let inFlight: @Sendable () -> Int64
    let defaultInterval: Duration
    let logger: Logger
    /// Heartbeat intervals and backoff run on it.
    let clock: any ServiceClock
    /// Whether the master knows this server now (`/readyz`).
    var registration = Registration()

    final class Registration: Sendable {
        private let state = Atomic<Bool>(false)
        var isRegistered: Bool { state.load(ordering: .relaxed) }
        func set(_ value: Bool) { state.store(value, ordering: .relaxed) }
    }

    func run() async throws {
        // Register only once the port is bound, so the master learns the real address.
        await cancelWhenGracefulShutdown { await addressBox.waitUntilBound() }
        guard addressBox.isBound, !Task.isCancelled else { return }
        do {
            try await cancelWhenGracefulShutdown {
                var interval = defaultInterval
                var registered = false
                var failures = 0
                var sequence: Int64 = 0
                while !Task.isCancelled {
                    do {
                        let reply: MembershipReply
                        if registered {
                            sequence += 1
                            reply = try await heartbeat(sequence: sequence)
                            try await sendPendingReports()
                        } else {
                            reply = try await register()
                            // The master's facts may be gone (new master, lost state): tell it all.
                            try await sendFullInventory()
                            registered = true
                            registration.set(true)
                            logger.info("registered with master", metadata: ["peer.id": "\(masterURL)"])
                        }
                        failures = 0
                        interval = .milliseconds(min(max(reply.heartbeatIntervalMilliseconds, 50), 60_000))
                        try await clock.sleep(for: interval)
                    } catch let error as BlobError where error.code == .notFound {
                        // The master does not know us (it lost its state or removed us): register again.
                        registered = false
                        registration.set(false)
                        logger.info("master does not know this server; registering again")
                    } catch is CancellationError {
                        return
                    } catch {
                        failures += 1
                        let backoff = Self.backoff(failures: failures, cap: max(interval, .seconds(5)))
                        logger.debug(
                            "master unreachable",
                            metadata: [
                                "peer.id": "\(masterURL)", "error.message": "\(error)", "retry.in": "\(backoff)",
                            ])
                        try await clock.sleep(for: backoff)
                    }
                }
            }
        } catch is CancellationError {
            // Graceful shutdown.
        }
    }

    /// 100 ms doubling up to `cap`, with up to 50% random jitter so a restarted cluster does not
    /// hit the master in lockstep.
    static func backoff(failures: Int, cap: Duration) -> Duration {
        let base = Duration.milliseconds(100) * (1 << min(failures - 1, 10))
        let capped = min(base, cap)
        return capped + capped * Double.random(in: 0..<0.5)
    }

    func usage() async throws -> ServerUsage {
        let stats = storage.snapshot
        let (free, _) = try await storage.space()
        return ServerUsage(
            usedBytes: stats.storedBytes, freeDiskBytes: free, chunkCount: stats.chunkCount,
            logicalBytes: stats.logicalBytes, inFlightRequests: inFlight())
    }

    func register() async throws -> MembershipReply {
        let configuration = storage.configuration
        let body = ServerRegistration(
            serverID: serverID, address: addressBox.current, zone: configuration.zone, weight: configuration.weight,
            capacityBytes: configuration.capacityBytes, usage: try await usage())
        return try await post("/v1/cluster/servers", body)
    }

    func heartbeat(sequence: Int64) async throws -> MembershipReply {
        let body = ServerHeartbeat(
            serverID: serverID, address: addressBox.current, usage: try await usage(), sequence: sequence)
        return try await post("/v1/cluster/servers/\(serverID)/heartbeat", body)
    }

    static let reportBatch = 10_000

    /// Sends queued changes in batches; a batch that fails goes back to the queue.
    func sendPendingReports() async throws {
        for _ in 0..<100 {
            let report = storage.takeReport(limit: Self.reportBatch)
            if report.added.isEmpty && report.removed.isEmpty && report.quarantined.isEmpty { return }
            do {
                try await send(report)
            } catch {
                storage.requeue(report)
                throw error
            }
        }
    }

    /// Reports every stored chunk, page by page (plain sizes from the frame headers).
    func sendFullInventory() async throws {
        var after: ChunkID?
        while true {
            let page = try await storage.inventory(after: after, limit: Self.reportBatch)
            guard let last = page.last else { return }
            var added: [ReplicaAcknowledgement] = []
            for (id, stored) in page {
                guard let header = try await storage.diskHeader(id) else { continue }
                added.append(
                    ReplicaAcknowledgement(
                        id: id, plainByteCount: Int64(header.plainByteCount), storedByteCount: Int64(stored),
                        serverIDs: []))
            }
            try await send(ChunkReport(added: added, removed: [], quarantined: []))
            after = last.0
        }
    }

    func send(_ report: ChunkReport) async throws {
        let path = "/v1/cluster/servers/\(serverID)/reports"
        _ = try await request(path, report)
    }

    func post<Body: Encodable>(_ path: String, _ body: Body) async throws -> MembershipReply {
        let data = try await request(path, body)
        return try JSONDecoder().decode(MembershipReply.self, from: data)
    }

    /// The masters, and which one is asked first.
    var masterURLs: [String] { masterURL.split(separator: ",").map(String.init) }
    let current = Current()

    final class Current: Sendable {
        private let index = Mutex<Int?>(nil)
        func get(_ initial: () -> Int) -> Int { index.withLock { value in value ?? initial() } }
        func set(_ value: Int) { index.withLock { $0 = value } }
    }

    /// Sends to the current master; when it cannot be reached or answers 5xx, to the others in
    /// turn (each once). Every request here is safe to repeat: registrations, heartbeats and
    /// reports record facts.
    func request<Body: Encodable>(_ path: String, _ body: Body) async throws -> Data {
        let urls = masterURLs
        let start = current.get { serverID.utf8.reduce(0) { $0 &+ Int($1) } % max(urls.count, 1) }
        var lastError: any Error = BlobError(.unavailable, reason: "master.none", "no master to send to")
        for step in 0..<urls.count {
            let index = (start + step) % urls.count
            do {
                let data = try await request(urls[index], path, body)
                if step > 0 {
                    current.set(index)
                    logger.info("heartbeats go to another master", metadata: ["peer.id": "\(urls[index])"])
                }
                return data
            } catch let error as BlobError where error.code != .unavailable && error.code != .notLeader {
                throw error
            } catch {
                lastError = error
            }
        }
        throw lastError
    }

    func request<Body: Encodable>(_ url: String, _ path: String, _ body: Body) async throws -> Data {
        var request = HTTPClientRequest(url: url + path)
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.headers.add(
            name: "Authorization",
            value: signer.token(
                role: .server, method: "POST", pathAndQuery: path,
                expiry: Int64(Date().timeIntervalSince1970) + RequestSigner.defaultLifetimeSeconds))
        request.body = .bytes(ByteBuffer(bytes: try JSONEncoder().encode(body)))
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: .seconds(masterURLs.count > 1 ? 10 : 30))
        } catch {
            throw BlobError(
                .unavailable, reason: "master.unreachable", "cannot reach the master at \(url): \(error)",
                underlying: error)
        }
        let data = Data(buffer: try await response.body.collect(upTo: 4 << 20))
        guard (200..<300).contains(response.status.code) else {
            if let error = try? JSONDecoder().decode(ErrorBody.self, from: data) { throw error.error }
            if response.status.code == 404 { throw BlobError(.notFound, "master answered 404 for \(path)") }
            throw BlobError(
                .unavailable, reason: "master.http", "master answered HTTP \(response.status.code) for \(path)")
        }
        return data
    }
}
