import AsyncHTTPClient
import BlobCore
import BlobTransport
import Foundation
import NIOCore

/// The master's calls to chunk servers, for repair, rebalance, garbage collection and fsck. It
/// carries no chunk bytes: copies go from server to server.
struct ChunkServerPeer: Sendable {
    let client: HTTPClient
    let signer: RequestSigner
    var transport: ClusterTransport = .plain
    static let timeout: TimeAmount = .seconds(60)

    /// Asks `source` to send chunk `id` to `targets`; returns where it is now durable.
    func copy(_ id: ChunkID, from source: ServerEndpoint, to targets: [ServerEndpoint]) async throws -> ChunkWriteResult
    {
        let body = try JSONEncoder().encode(ChunkCopyRequest(targets: targets.map(\.address)))
        let data = try await call(
            "POST", source.address, "/v1/chunks/\(id.hex)/copy", body: [UInt8](body), okStatuses: [200, 503])
        return try JSONDecoder().decode(ChunkWriteResult.self, from: Data(data))
    }

    /// Deletes one replica. With `unlessWrittenAfter`, the server keeps a chunk written since
    /// then (answers versionConflict). True when deleted, false when it was not there.
    func delete(_ id: ChunkID, at server: ServerEndpoint, unlessWrittenAfter: Int64? = nil) async throws -> Bool {
        var path = "/v1/chunks/\(id.hex)"
        if let unlessWrittenAfter { path += "?unless-written-after=\(unlessWrittenAfter)" }
        do {
            _ = try await call("DELETE", server.address, path, body: nil, okStatuses: [204])
            return true
        } catch let error as BlobError where error.code == .notFound {
            return false
        }
    }

    /// One page of a server's inventory, in id order.
    func inventory(of server: ServerEndpoint, after: ChunkID?, limit: Int = 10_000) async throws -> InventoryPage {
        var path = "/v1/chunks?limit=\(limit)"
        if let after { path += "&after=\(after.hex)" }
        let data = try await call("GET", server.address, path, body: nil, okStatuses: [200])
        return try JSONDecoder().decode(InventoryPage.self, from: Data(data))
    }

    /// Whether the server has the chunk's file now (HEAD).
    func holds(_ id: ChunkID, at server: ServerEndpoint) async throws -> Bool {
        do {
            _ = try await call("HEAD", server.address, "/v1/chunks/\(id.hex)", body: nil, okStatuses: [200])
            return true
        } catch let error as BlobError where error.code == .notFound {
            return false
        }
    }

    func quarantine(of server: ServerEndpoint) async throws -> [ChunkID] {
        let data = try await call("GET", server.address, "/v1/quarantine", body: nil, okStatuses: [200])
        return try JSONDecoder().decode(QuarantineList.self, from: Data(data)).chunks.compactMap {
            try? ChunkID(hex: $0)
        }
    }

    func call(
        _ method: String, _ address: String, _ pathAndQuery: String, body: [UInt8]?, okStatuses: Set<UInt>
    ) async throws -> [UInt8] {
        var request = HTTPClientRequest(url: transport.url(address, pathAndQuery))
        request.method = .init(rawValue: method)
        // Leader work carries its term; a leader past its own deadline sends nothing more.
        if let fence = LeaderFence.current {
            try await fence.check()
            request.headers.add(name: "x-blob-leader-term", value: "\(fence.term.term)")
        }
        request.headers.add(
            name: "Authorization",
            value: signer.token(
                role: .master, method: method, pathAndQuery: pathAndQuery,
                expiry: Int64(Date().timeIntervalSince1970) + RequestSigner.defaultLifetimeSeconds))
        if let requestID = RequestID.current { request.headers.add(name: RequestID.headerName, value: requestID) }
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await client.execute(request, timeout: Self.timeout)
        } catch {
            throw BlobError(
                .unavailable, reason: "peer.unreachable", "chunk server \(address) is unreachable: \(error)")
        }
        let data = [UInt8](buffer: try await response.body.collect(upTo: 64 << 20))
        guard okStatuses.contains(response.status.code) else {
            if let error = try? JSONDecoder().decode(ErrorBody.self, from: Data(data)) { throw error.error }
            if response.status.code == 404 {
                throw BlobError(.notFound, reason: "peer.notFound", "\(address) has no \(pathAndQuery)")
            }
            throw BlobError(
                .unavailable, reason: "peer.http", "chunk server \(address) answered HTTP \(response.status.code)")
        }
        return data
    }
}

/// Paces copies to a byte rate: a token bucket holding at most one second of bytes, so an idle
/// period earns no burst beyond that.
actor CopyThrottle {
    private var bytesPerSecond: Int64?
    private var tokens: Double = 0
    private var refilled = ContinuousClock.now

    init(bytesPerSecond: Int64?) {
        self.bytesPerSecond = bytesPerSecond.flatMap { $0 > 0 ? $0 : nil }
        tokens = Double(self.bytesPerSecond ?? 0)
    }

    func setRate(_ rate: Int64?) {
        bytesPerSecond = rate.flatMap { $0 > 0 ? $0 : nil }
        tokens = 0
        refilled = .now
    }

    /// Takes `count` bytes' worth of tokens, sleeping while the bucket is in debt.
    func pace(_ count: Int64) async throws {
        guard let rate = bytesPerSecond else { return }
        let now = ContinuousClock.now
        let elapsed = refilled.duration(to: now)
        tokens = min(
            Double(rate),
            tokens + Double(rate)
                * (Double(elapsed.components.seconds)
                    + Double(elapsed.components.attoseconds) / 1e18))
        refilled = now
        tokens -= Double(count)
        if tokens < 0 { try await Task.sleep(for: .nanoseconds(Int64(-tokens / Double(rate) * 1e9))) }
    }

    var rate: Int64? { bytesPerSecond }
}
