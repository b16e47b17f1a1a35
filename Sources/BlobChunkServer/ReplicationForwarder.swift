import AsyncHTTPClient
import BlobCore
import BlobTransport
import Foundation
import NIOCore

/// Sends a verified frame from the receiving server to the other replicas (fan-out), so the
/// client's uplink carries each byte once.
struct ReplicationForwarder: Sendable {
    let transport: any PeerTransport
    let signer: RequestSigner
    let timeout: Duration
    /// http or https: the peers' scheme.
    var scheme: ClusterTransport = .plain

    /// Parses `host:port` targets; anything else is refused before a byte moves.
    static func parseTargets(_ text: String?) throws -> [String] {
        guard let text, !text.isEmpty else { return [] }
        // Rebuilt from UTF-8 so they are native Swift strings, whatever decoded the query.
        let targets = text.split(separator: ",").map { String(decoding: Array($0.utf8), as: UTF8.self) }
        guard targets.count <= 15 else {
            throw BlobError(
                .invalidArgument, reason: "replicas.tooMany",
                "at most 15 replica targets per write, got \(targets.count)")
        }
        for t in targets {
            guard let colon = t.lastIndex(of: ":"), let port = Int(t[t.index(after: colon)...]),
                (1...65535).contains(port),
                !t[..<colon].isEmpty,
                t[..<colon].allSatisfy({ $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" })
            else {
                throw BlobError(
                    .invalidArgument, reason: "replicas.badTarget",
                    "replica target \"\(t)\" is not host:port (e.g. 127.0.0.1:9401)")
            }
        }
        guard Set(targets).count == targets.count else {
            throw BlobError(.invalidArgument, reason: "replicas.duplicate", "replica targets repeat a server")
        }
        return targets
    }

    /// Writes the frame to one peer; returns its server id, or throws its error.
    func forward(_ frame: ByteBuffer, id: ChunkID, to target: String) async throws -> String {
        let path = "/v1/chunks/\(id.hex)"
        var request = HTTPClientRequest(url: scheme.url(target, path))
        request.method = .PUT
        request.headers.add(
            name: "Authorization",
            value: signer.token(
                role: .server, method: "PUT", pathAndQuery: path,
                expiry: Int64(Date().timeIntervalSince1970) + RequestSigner.defaultLifetimeSeconds))
        request.headers.add(name: "Content-Type", value: "application/x-blob-frame")
        if let requestID = RequestID.current { request.headers.add(name: RequestID.headerName, value: requestID) }
        request.body = .bytes(frame)
        let response = try await transport.execute(
            request, timeout: .nanoseconds(Int64(timeout.components.seconds) * 1_000_000_000))
        let body = try await response.body.collect(upTo: 1 << 20)
        if response.status.code >= 200 && response.status.code < 300,
            let result = try? JSONDecoder().decode(ChunkWriteResult.self, from: Data(buffer: body))
        {
            return result.storedServerIDs.first ?? target
        }
        if let error = try? JSONDecoder().decode(ErrorBody.self, from: Data(buffer: body)) {
            throw error.error
        }
        throw BlobError(.unavailable, reason: "replica.http", "peer \(target) answered HTTP \(response.status.code)")
    }
}
