import AsyncHTTPClient
public import BlobCore
public import BlobTransport
import Foundation
import NIOCore
import Synchronization

/// Where a cluster is and how to sign requests to it.
public struct ClusterAddress: Sendable, Hashable {
    /// `http://HOST:PORT` of each master.
    public var masterURLs: [String]
    public var secret: [UInt8]
    /// PEM file of the CA certificates the cluster's servers are verified against, when the
    /// masters are `https://` (nil: the system's trust store).
    public var trustRootsFile: String?

    /// The masters as given: one URL, or several separated by commas.
    public var masterURL: String { masterURLs.joined(separator: ",") }

    /// `masterURL`: one master's URL, or several separated by commas.
    public init(masterURL: String, secret: [UInt8], trustRootsFile: String? = nil) {
        self.masterURLs = masterURL.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter {
            !$0.isEmpty
        }
        self.secret = secret
        self.trustRootsFile = trustRootsFile
    }
}

/// Signed JSON requests to the master and frame transfers to chunk servers, over one
/// AsyncHTTPClient. Every failure comes back as a ``BlobError`` whose message names the fix.
public final class ClusterClient: Sendable {
    public let address: ClusterAddress
    let signer: RequestSigner
    let http: HTTPClient
    /// http or https for the masters and chunk servers alike.
    public let transport: ClusterTransport
    /// Deadline of one master request: with several masters, short enough that a master that
    /// stopped answering (paused, partitioned) costs one wait before the next is asked.
    let masterTimeout: TimeAmount
    /// Where the next master request starts, so requests spread over the masters.
    private let nextMaster = Atomic<Int>(Int.random(in: 0..<1024))
    /// Rounds over every master before a request gives up, and the pause after each round.
    static let masterRounds = 4
    static func roundPause(_ round: Int) -> Duration { .milliseconds(200 << min(round, 4)) }
    /// Deadline of one chunk transfer (a 16 MiB frame over a slow link still fits).
    let chunkTimeout: TimeAmount = .seconds(120)

    /// Which metadata a read may be answered with, where masters have hot standbys
    /// (`--metadata-replicas`).
    public enum MetadataReads: Sendable {
        /// This client's own writes, and everything else as of at most the masters' standby lag
        /// bound ago: reads carry the position of this client's last write.
        case session
        /// Everything committed before the read: for a client that shares what it writes with
        /// others (a gateway behind a load balancer), and for one that has not written yet.
        case latest
    }

    public let metadataReads: MetadataReads
    /// The furthest write position a master answered this client with (0: none yet).
    private let lastWritePosition = Atomic<UInt64>(0)

    /// A client with its own connection pool; call ``shutdown()`` when done.
    public init(address: ClusterAddress, metadataReads: MetadataReads = .session) throws {
        self.metadataReads = metadataReads
        guard !address.masterURLs.isEmpty else {
            throw BlobError(
                .invalidArgument, reason: "master.none", "no master URL given; pass --master http://HOST:PORT")
        }
        self.address = address
        masterTimeout = address.masterURLs.count > 1 ? .seconds(15) : .seconds(60)
        signer = try RequestSigner(secret: address.secret)
        transport = try ClusterTransport.forMasters(address.masterURLs, trustRootsFile: address.trustRootsFile)
        var configuration = HTTPClient.Configuration()
        configuration.timeout.connect = .seconds(2)
        configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 16
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: transport.configure(configuration))
    }

    public func shutdown() async throws {
        try await http.shutdown()
    }

    // MARK: Master

    /// A signed JSON request to the master; decodes the reply as `Reply`.
    func master<Reply: Decodable>(
        _ method: String, _ pathAndQuery: String, body: (some Encodable)? = Optional<Int>.none,
        as: Reply.Type, idempotent: Bool? = nil
    ) async throws -> Reply {
        let bytes = try await masterBytes(method, pathAndQuery, body: body, idempotent: idempotent)
        do {
            return try JSONDecoder().decode(Reply.self, from: Data(bytes))
        } catch {
            throw BlobError(
                .internal, reason: "master.reply",
                "the master's reply to \(method) \(pathAndQuery) is not "
                    + "what this client expects (\(error)); are client and master the same version?")
        }
    }

    /// A signed request to the master that answers no body (204).
    func masterNoReply(
        _ method: String, _ pathAndQuery: String, body: some Encodable, idempotent: Bool? = nil
    ) async throws {
        _ = try await masterBytes(method, pathAndQuery, body: body, idempotent: idempotent)
    }

    /// A signed request to the masters. It starts at the next master in turn and fails over to
    /// the others on a refused connection, on a 503 (`unavailable`, `notLeader`: the master did
    /// nothing) and, for a request that is safe to repeat (`idempotent`; GET and HEAD always
    /// are), on a timeout or a connection lost mid-request; bounded rounds, with a pause after
    /// each. Any other answer (a 4xx, say) is the answer.
    func masterBytes(
        _ method: String, _ pathAndQuery: String, body: (some Encodable)?, idempotent: Bool? = nil
    ) async throws -> [UInt8] {
        let urls = address.masterURLs
        let repeatable = idempotent ?? (method == "GET" || method == "HEAD")
        let payload = try body.map { try JSONEncoder().encode($0) }
        let first = nextMaster.add(1, ordering: .relaxed).oldValue
        var lastError: BlobError?
        for round in 0..<Self.masterRounds {
            // A lone master that cannot be reached is reported at once; one that answers 503
            // (its database failing over, say) is asked again after the pause.
            var busy = false
            for step in 0..<urls.count {
                let url = urls[(first + step) % urls.count]
                switch await masterAttempt(url, method, pathAndQuery, payload) {
                case .answered(let bytes):
                    return bytes
                case .refused(let error):
                    throw error
                case .notSent(let error):
                    lastError = error
                    busy = busy || (error.reason != "master.unreachable" && error.reason != "master.tls")
                case .unknownOutcome(let error):
                    guard repeatable else { throw error }
                    lastError = error
                }
            }
            if urls.count == 1 && !busy { break }
            if round + 1 < Self.masterRounds { try await Task.sleep(for: Self.roundPause(round)) }
        }
        throw lastError
            ?? BlobError(.unavailable, reason: "master.unreachable", "no master answered \(method) \(pathAndQuery)")
    }

    enum MasterOutcome {
        /// A 2xx answer.
        case answered([UInt8])
        /// An answer that is the request's outcome (a 4xx, or a 5xx other than 503).
        case refused(BlobError)
        /// The master did nothing: the connection was refused, or it answered 503.
        case notSent(BlobError)
        /// The request may or may not have been carried out (a timeout, a lost connection).
        case unknownOutcome(BlobError)
    }

    private func masterAttempt(
        _ url: String, _ method: String, _ pathAndQuery: String, _ payload: Data?
    ) async -> MasterOutcome {
        var request = HTTPClientRequest(url: url + pathAndQuery)
        request.method = .RAW(value: method)
        request.headers.add(name: "Authorization", value: token(method: method, pathAndQuery: pathAndQuery))
        Self.carryRequestID(&request)
        if method == "GET", metadataReads == .session, Self.mayReadStandby(pathAndQuery) {
            let position = lastWritePosition.load(ordering: .relaxed)
            if position > 0 {
                request.headers.add(name: MetadataPosition.header, value: "\(MetadataPosition(position))")
            }
        }
        if let payload {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: payload))
        }
        let bytes: [UInt8]
        let status: UInt
        do {
            let response = try await http.execute(request, timeout: masterTimeout)
            status = response.status.code
            if let text = response.headers.first(name: MetadataPosition.header), let position = MetadataPosition(text) {
                advanceWritePosition(to: position)
            }
            bytes = Array(try await response.body.collect(upTo: 256 << 20).readableBytesView)
        } catch {
            if let problem = ClusterTransport.tlsProblem(error) {
                // Nothing was sent: another master may do (one with a bad certificate must not
                // stop the rest), but this one is not asked again after a pause.
                return .notSent(
                    BlobError(
                        .unavailable, reason: "master.tls", "cannot talk to the master at \(url): \(problem)",
                        underlying: error))
            }
            var hint = ""
            if !transport.isSecure, let closed = error as? HTTPClientError, closed == .remoteConnectionClosed {
                hint = "; if the cluster serves HTTPS, give the master as https://HOST:PORT"
            }
            let failure = BlobError(
                .unavailable, reason: "master.unreachable",
                "cannot reach the master at \(url) (\(Self.describe(error))\(hint)); start a local "
                    + "cluster with `blobctl dev up`, or point --master / BLOBCTL_MASTER at a running one",
                underlying: error)
            return Self.neverSent(error) ? .notSent(failure) : .unknownOutcome(failure)
        }
        guard (200..<300).contains(status) else {
            let error = Self.error(from: bytes, status: status, peer: "the master at \(url)")
            // The master lost the answer of its own database COMMIT: the request may have been
            // carried out.
            if status == 503, error.reason == "metadata.commitUnknown" { return .unknownOutcome(error) }
            if status == 503, error.code == .unavailable || error.code == .notLeader { return .notSent(error) }
            return .refused(error)
        }
        return .answered(bytes)
    }

    /// Passes the id of the request being served (``RequestID/current``) on to the next process.
    static func carryRequestID(_ request: inout HTTPClientRequest) {
        if let id = RequestID.current { request.headers.add(name: RequestID.headerName, value: id) }
    }

    /// Stat, list and read plans: the reads a master may hand to a hot standby.
    static func mayReadStandby(_ pathAndQuery: String) -> Bool {
        pathAndQuery.hasPrefix("/v1/files?") || pathAndQuery.hasPrefix("/v1/files/plan?")
            || pathAndQuery.hasPrefix("/v1/list?")
    }

    /// The position of this client's furthest write so far (nil: it has written nothing).
    public var writePosition: MetadataPosition? {
        let value = lastWritePosition.load(ordering: .relaxed)
        return value == 0 ? nil : MetadataPosition(value)
    }

    private func advanceWritePosition(to position: MetadataPosition) {
        var current = lastWritePosition.load(ordering: .relaxed)
        while current < position.value {
            let (exchanged, found) = lastWritePosition.compareExchange(
                expected: current, desired: position.value, ordering: .relaxed)
            if exchanged { return }
            current = found
        }
    }

    /// Whether a request that failed with `error` never reached a master (safe to send again).
    static func neverSent(_ error: any Error) -> Bool {
        if let error = error as? HTTPClientError, error == .connectTimeout { return true }
        let text = "\(error)"
        return text.contains("refused") || text.contains("connectTimeout") || text.contains("unreachable")
    }

    // MARK: Chunk servers

    /// Writes a frame to `targets[0]`, which forwards to the others; `quorum` copies must be durable.
    func putChunk(
        _ frame: [UInt8], id: ChunkID, targets: [ServerEndpoint], quorum: Int
    ) async throws -> ChunkWriteResult {
        var path = "/v1/chunks/\(id.hex)"
        if targets.count > 1 {
            path += "?replicas=" + targets.dropFirst().map(\.address).joined(separator: ",") + "&quorum=\(quorum)"
        }
        var request = HTTPClientRequest(url: transport.url(targets[0].address, path))
        request.method = .PUT
        request.headers.add(name: "Authorization", value: token(method: "PUT", pathAndQuery: path))
        Self.carryRequestID(&request)
        request.headers.add(name: "Content-Type", value: "application/x-blob-frame")
        request.body = .bytes(ByteBuffer(bytes: frame))
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: chunkTimeout)
        } catch {
            throw BlobError(
                .unavailable, reason: "chunkserver.unreachable",
                "chunk server \(targets[0].id) at \(targets[0].address): \(Self.describe(error))", underlying: error)
        }
        let bytes = Array(try await response.body.collect(upTo: 1 << 20).readableBytesView)
        if let result = try? JSONDecoder().decode(ChunkWriteResult.self, from: Data(bytes)),
            (200..<300).contains(response.status.code) || response.status.code == 503
        {
            return result
        }
        throw Self.error(from: bytes, status: response.status.code, peer: "chunk server \(targets[0].id)")
    }

    /// Reads one chunk's frame from one server and returns its plain bytes, checked against `id`.
    func getChunk(_ id: ChunkID, from server: ServerEndpoint, decompressor: ChunkDecompressor) async throws -> [UInt8] {
        let body = try await getFromChunkServer(
            "/v1/chunks/\(id.hex)", server: server,
            upTo: FrameHeader.byteCount + Limits.maxStoredByteCount)
        let result = body.withUnsafeReadableBytes { raw in
            Result { () throws(FrameError) in try ChunkFrame.decode(raw, expectedID: id, decompressor: decompressor) }
        }
        switch result {
        case .success(let plain): return plain
        case .failure(let error):
            throw BlobError(
                .corruptChunk, reason: error.reason,
                "chunk \(id.shortHex)… from \(server.id): \(error.message)", node: server.id)
        }
    }

    /// Bytes `span` of a chunk's plain bytes, unchecked: the caller checks them against the
    /// chunk's ``BlockDigests``.
    func getChunkPart(_ id: ChunkID, span: Range<Int>, from server: ServerEndpoint) async throws -> [UInt8] {
        let body = try await getFromChunkServer(
            "/v1/chunks/\(id.hex)?format=plain&offset=\(span.lowerBound)&length=\(span.count)",
            server: server, upTo: Limits.maxChunkByteCount)
        return Array(body.readableBytesView)
    }

    /// A signed GET of `pathAndQuery` on a chunk server: its 200 body (at most `upTo` bytes), or
    /// the server's error, or `unavailable` when it cannot be reached in time.
    func getFromChunkServer(_ pathAndQuery: String, server: ServerEndpoint, upTo limit: Int) async throws -> ByteBuffer
    {
        var request = HTTPClientRequest(url: transport.url(server.address, pathAndQuery))
        request.headers.add(name: "Authorization", value: token(method: "GET", pathAndQuery: pathAndQuery))
        Self.carryRequestID(&request)
        let response: HTTPClientResponse
        do {
            response = try await http.execute(request, timeout: chunkTimeout)
        } catch {
            throw BlobError(
                .unavailable, reason: "chunkserver.unreachable",
                "chunk server \(server.id) at \(server.address): \(Self.describe(error))", underlying: error)
        }
        let body = try await response.body.collect(upTo: limit)
        guard response.status.code == 200 else {
            throw Self.error(
                from: Array(body.readableBytesView), status: response.status.code, peer: "chunk server \(server.id)")
        }
        return body
    }

    // MARK: Helpers

    func token(method: String, pathAndQuery: String) -> String {
        signer.token(
            role: .client, method: method, pathAndQuery: pathAndQuery,
            expiry: Int64(Date().timeIntervalSince1970) + RequestSigner.defaultLifetimeSeconds)
    }

    /// The store's JSON error body as a ``BlobError``, or a plain one naming the status.
    static func error(from body: [UInt8], status: UInt, peer: String) -> BlobError {
        if var error = (try? JSONDecoder().decode(ErrorBody.self, from: Data(body)))?.error {
            if error.code == .unauthenticated {
                error.message += "; check that --secret-file (BLOBCTL_SECRET_FILE) holds this cluster's secret"
            }
            return error
        }
        return BlobError(
            status >= 500 ? .unavailable : .invalidArgument, reason: "http.status",
            "\(peer) answered HTTP \(status)")
    }

    static func describe(_ error: any Error) -> String {
        if let problem = ClusterTransport.tlsProblem(error) { return problem }
        if let error = error as? HTTPClientError {
            switch error {
            case .connectTimeout: return "connection timed out"
            case .deadlineExceeded, .readTimeout: return "no answer in time"
            case .remoteConnectionClosed: return "the connection closed"
            default: return "\(error)"
            }
        }
        let text = "\(error)"
        if text.contains("refused") { return "connection refused" }
        return text
    }

    /// Percent-encodes a query value byte by byte (paths may hold any UTF-8).
    static func query(_ value: String) -> String {
        var out = ""
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"),
                UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "~"), UInt8(ascii: "/"):
                out.unicodeScalars.append(Unicode.Scalar(byte))
            default:
                out += "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
            }
        }
        return out
    }
}
