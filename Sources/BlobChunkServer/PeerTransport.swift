import AsyncHTTPClient
import BlobCore
import NIOCore
import NIOHTTP1

/// How a chunk server sends requests to its peers (forwarded writes). The server uses
/// AsyncHTTPClient directly; tests wrap it to drop, delay or refuse requests.
protocol PeerTransport: Sendable {
    func execute(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> HTTPClientResponse
}

struct HTTPPeerTransport: PeerTransport {
    let client: HTTPClient

    func execute(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> HTTPClientResponse {
        try await client.execute(request, timeout: timeout)
    }
}

/// What happens to one request to a peer.
public enum PeerFaultAction: Sendable, Hashable {
    case proceed
    /// The peer is not reached: the request fails as a refused connection would.
    case drop
    /// The request is sent after this much time (the caller's timeout still applies).
    case delay(Duration)
    /// The peer answers this status with an empty body, and the request is not sent.
    case answer(status: Int)
}

/// Decides the fate of each request a chunk server sends a peer, by the peer's address and the
/// request's path. Servers run without one; tests pass one in
/// ``ChunkServerConfiguration/peerFaults``.
public protocol PeerFaultInjector: Sendable {
    func action(target: String, method: String, path: String) async -> PeerFaultAction
}

/// A refused connection that a ``PeerFaultAction/drop`` stands for.
struct DroppedRequest: Error, CustomStringConvertible {
    let target: String
    var description: String { "connection to \(target) dropped (injected fault)" }
}

/// A transport that consults a ``PeerFaultInjector`` before each request.
struct FaultyPeerTransport: PeerTransport {
    let base: any PeerTransport
    let faults: any PeerFaultInjector

    func execute(_ request: HTTPClientRequest, timeout: TimeAmount) async throws -> HTTPClientResponse {
        let (target, path) = Self.split(request.url)
        switch await faults.action(target: target, method: request.method.rawValue, path: path) {
        case .proceed:
            return try await base.execute(request, timeout: timeout)
        case .drop:
            throw DroppedRequest(target: target)
        case .delay(let duration):
            let budget = Duration.nanoseconds(timeout.nanoseconds)
            if duration >= budget {
                try await Task.sleep(for: budget)
                throw HTTPClientError.deadlineExceeded
            }
            try await Task.sleep(for: duration)
            return try await base.execute(request, timeout: timeout)
        case .answer(let status):
            return HTTPClientResponse(status: HTTPResponseStatus(statusCode: status))
        }
    }

    /// `host:port` and the path of `http://host:port/path` (or `https://`).
    static func split(_ url: String) -> (String, String) {
        let rest = url.firstRange(of: "://").map { url[$0.upperBound...] } ?? Substring(url)
        guard let slash = rest.firstIndex(of: "/") else { return (String(rest), "/") }
        return (String(rest[..<slash]), String(rest[slash...]))
    }
}
