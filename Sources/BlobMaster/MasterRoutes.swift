import BlobCore
import BlobServerSupport
import Foundation
import HTTPTypes
import Hummingbird

/// The master's HTTP routes (docs/api.md).
struct MasterRoutes: Sendable {
    let membership: Membership
    let store: MetadataStore
    let signer: RequestSigner
    let repairer: Repairer
    /// Concurrent commits go to the database in groups.
    let commits: CommitQueue
    let election: LeaderElection
    let metrics: ServerMetrics
    /// How often masters renew their entries (a lease round): "reachable" is three of them.
    var configuredRound: Duration { election.policy.renewInterval }
    static let maxPlacementBatch = 10_000
    static let maxBodyByteCount = 64 << 20

    func register(on routes: AuthenticatedRoutes) {
        let everyone: Set<RequestRole> = [.client, .server, .master]
        let clients: Set<RequestRole> = [.client, .master]
        routes.post("/v1/cluster/servers", roles: [.server]) { request, context in
            try await registerServer(request, context)
        }
        routes.post("/v1/cluster/servers/:id/heartbeat", roles: [.server]) { request, context in
            try await heartbeat(request, context)
        }
        routes.post("/v1/cluster/servers/:id/reports", roles: [.server]) { request, context in
            try await reports(request, context)
        }
        routes.get("/v1/cluster/status", roles: everyone) { request, context in
            try await clusterStatus(request, context)
        }
        routes.get("/v1/ring", roles: everyone) { request, context in try await ring(request, context) }
        routes.post("/v1/placement", roles: clients) { request, context in try await placement(request, context) }
        routes.post("/v1/replicas", roles: clients) { request, context in try await acknowledge(request, context) }
        routes.post("/v1/replicas/suspect", roles: clients) { request, context in try await suspect(request, context) }
        routes.post("/v1/files", roles: clients) { request, context in try await commit(request, context) }
        routes.get("/v1/files", roles: clients) { request, context in try await stat(request, context) }
        routes.delete("/v1/files", roles: clients) { request, context in try await delete(request, context) }
        routes.get("/v1/files/plan", roles: clients) { request, context in try await plan(request, context) }
        routes.get("/v1/list", roles: clients) { request, context in try await list(request, context) }
    }

    func registerServer(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let registration = try await decodeJSONBody(ServerRegistration.self, from: request, maxByteCount: 1 << 20)
        let reply = try await membership.register(registration, nowMilliseconds: Self.now())
        return try jsonResponse(reply)
    }

    func heartbeat(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let beat = try await decodeJSONBody(ServerHeartbeat.self, from: request, maxByteCount: 1 << 20)
        guard beat.serverID == context.parameters.get("id") else {
            throw BlobError(.invalidArgument, reason: "heartbeat.id", "the body's server id differs from the path's")
        }
        let reply = try await membership.heartbeat(beat)
        return try jsonResponse(reply)
    }

    func reports(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = context.parameters.get("id") ?? ""
        guard await membership.endpoint(id) != nil else {
            throw BlobError(.notFound, reason: "server.unknown", "server \(id) is not registered; register first")
        }
        let report = try await decodeJSONBody(ChunkReport.self, from: request, maxByteCount: Self.maxBodyByteCount)
        try await store.recordReplicas(
            report.added.map {
                ReplicaReport(
                    chunkID: $0.id, plainByteCount: $0.plainByteCount, storedByteCount: $0.storedByteCount,
                    blockDigests: $0.blockDigests)
            },
            on: id)
        try await store.removeReplicas(report.removed + report.quarantined, on: id)
        // A quarantined copy leaves its chunk short: the next repair pass looks at it.
        if !report.quarantined.isEmpty { try await repairer.noteDamaged(report.quarantined) }
        return Response(status: .noContent)
    }

    func clusterStatus(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        try jsonResponse(
            try await ClusterStatusReader(membership: membership, repairer: repairer, store: store, election: election)
                .read())
    }

    func ring(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        guard let ring = await membership.ring else {
            throw BlobError(
                .notFound, reason: "ring.missing", "no ring yet; start at least as many chunk servers as replicas")
        }
        return try jsonResponse(ring)
    }

    func placement(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let ask = try await decodeJSONBody(PlacementRequest.self, from: request, maxByteCount: Self.maxBodyByteCount)
        guard ask.chunks.count <= Self.maxPlacementBatch else {
            throw BlobError(
                .invalidArgument, reason: "placement.batch",
                "at most \(Self.maxPlacementBatch) chunks per placement request, got \(ask.chunks.count)")
        }
        let reply = try await membership.place(ask.chunks)
        return try jsonResponse(reply)
    }

    /// A reader found a replica's bytes corrupt: stop sending reads there. The location fact is
    /// dropped (the server's own scrub or its next full inventory puts it back if the copy is
    /// sound); other codes (unreachable, timeout) are liveness, which heartbeats decide.
    func suspect(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let body = try await decodeJSONBody(SuspectReplicas.self, from: request, maxByteCount: 1 << 20)
        guard body.replicas.count <= Self.maxPlacementBatch else {
            throw BlobError(
                .invalidArgument, reason: "replicas.batch", "at most \(Self.maxPlacementBatch) replicas per request")
        }
        var corrupt: [String: [ChunkID]] = [:]
        for report in body.replicas where report.code == BlobErrorCode.corruptChunk.rawValue {
            corrupt[report.serverID, default: []].append(report.id)
        }
        for (server, ids) in corrupt.sorted(by: { $0.key < $1.key }) {
            try await store.removeReplicas(ids, on: server)
            try await repairer.noteDamaged(ids)
        }
        return Response(status: .noContent)
    }

    func acknowledge(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let acks = try await decodeJSONBody(
            ReplicaAcknowledgements.self, from: request, maxByteCount: Self.maxBodyByteCount)
        let byServer = try await reportsByServer(acks.chunks)
        for (server, reports) in byServer.sorted(by: { $0.key < $1.key }) {
            try await store.recordReplicas(reports, on: server)
        }
        return Response(status: .noContent)
    }

    /// Checks acknowledgements (batch size, sizes, known servers) and groups them by server.
    func reportsByServer(_ acks: [ReplicaAcknowledgement]) async throws -> [String: [ReplicaReport]] {
        guard acks.count <= Self.maxPlacementBatch else {
            throw BlobError(
                .invalidArgument, reason: "replicas.batch", "at most \(Self.maxPlacementBatch) chunks per request")
        }
        var byServer: [String: [ReplicaReport]] = [:]
        for ack in acks {
            guard ack.plainByteCount >= 0, ack.plainByteCount <= Int64(Limits.maxChunkByteCount),
                ack.storedByteCount >= 0
            else {
                throw BlobError(
                    .invalidArgument, reason: "replicas.size", "chunk \(ack.id.shortHex)… has an impossible size")
            }
            if let digests = ack.blockDigests,
                !BlockDigests.isWellFormed(digests, plainByteCount: Int(ack.plainByteCount))
            {
                let expected =
                    BlockDigests.blockCount(plainByteCount: Int(ack.plainByteCount)) * BlockDigests.digestByteCount
                throw BlobError(
                    .invalidArgument, reason: "replicas.blockDigests",
                    "chunk \(ack.id.shortHex)… has \(digests.count) bytes of block digests; "
                        + "a chunk of \(ack.plainByteCount) bytes has \(expected)"
                )
            }
            for server in ack.serverIDs {
                guard await membership.endpoint(server) != nil else {
                    throw BlobError(
                        .invalidArgument, reason: "replicas.unknownServer", "no server \(server) is registered")
                }
                byServer[server, default: []].append(
                    ReplicaReport(
                        chunkID: ack.id, plainByteCount: ack.plainByteCount, storedByteCount: ack.storedByteCount,
                        blockDigests: ack.blockDigests))
            }
        }
        return byServer
    }

    func commit(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let commit = try await decodeJSONBody(ManifestCommit.self, from: request, maxByteCount: Self.maxBodyByteCount)
        let replicas = try await reportsByServer(commit.acknowledgements ?? [])
        let started = ContinuousClock.now
        let version = try await commits.commit(commit, recording: replicas)
        metrics.observe("blob_master_commit_duration_seconds", ContinuousClock.now - started)
        return try jsonResponse(version, status: .created)
    }

    func stat(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let path = try Self.path(request)
        let read = try await StandbyRead.serving(position: try Self.position(request)) { try await store.stat(path) }
        guard let file = read.value else {
            throw BlobError(.notFound, reason: "file.notFound", "no file at \(path); list with `blobctl ls`")
        }
        return try Self.answered(jsonResponse(file), by: read.answeredBy)
    }

    func delete(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let path = try Self.path(request)
        let requestID = request.uri.queryParameters.get("request").map { String($0) }
        if let requestID { try ManifestCommit.validate(requestID: requestID, reason: "request.id") }
        let version = try await store.delete(path, ifVersion: nil, requestID: requestID)
        return try jsonResponse(version)
    }

    func plan(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let offset = try Self.integer(query.get("offset"), name: "offset") ?? 0
        let length = try Self.integer(query.get("length"), name: "length")
        let path = try Self.path(request)
        let read = try await StandbyRead.serving(position: try Self.position(request)) {
            try await membership.readPlan(path: path, offset: offset, length: length)
        }
        return try Self.answered(jsonResponse(read.value), by: read.answeredBy)
    }

    func list(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let query = request.uri.queryParameters
        let limit = try Self.integer(query.get("limit"), name: "limit") ?? 1000
        let prefix = query.get("prefix").map(Self.native) ?? ""
        let after = query.get("after").map(Self.native)
        let read = try await StandbyRead.serving(position: try Self.position(request)) {
            try await store.list(prefix: prefix, after: after, limit: Int(limit))
        }
        return try Self.answered(jsonResponse(read.value), by: read.answeredBy)
    }

    /// The client's last write position (``MetadataPosition/header``), if it sent one.
    static func position(_ request: Request) throws -> MetadataPosition? {
        guard let text = request.headers[HTTPField.Name(MetadataPosition.header)!] else { return nil }
        guard let position = MetadataPosition(text) else {
            throw BlobError(
                .invalidArgument, reason: "header.position",
                "\(MetadataPosition.header) must be a WAL position such as 16/B374D848, got \(text)")
        }
        return position
    }

    /// `response` with who answered its metadata read (``MetadataPosition/answeredByHeader``).
    static func answered(_ response: Response, by answeredBy: String) -> Response {
        var response = response
        response.headers[HTTPField.Name(MetadataPosition.answeredByHeader)!] = answeredBy
        return response
    }

    static func path(_ request: Request) throws -> BlobPath {
        guard let text = request.uri.queryParameters.get("path") else {
            throw BlobError(.invalidArgument, reason: "path.missing", "add ?path=<file path> to the request")
        }
        return try BlobPath(native(text))
    }

    static func integer(_ text: String?, name: String) throws -> Int64? {
        guard let text else { return nil }
        guard let value = Int64(text), value >= 0 else {
            throw BlobError(
                .invalidArgument, reason: "query.\(name)", "\(name) must be a whole number >= 0, got \(text)")
        }
        return value
    }

    /// Query values as native Swift strings (they may arrive as bridged ones).
    static func native(_ text: some StringProtocol) -> String { String(decoding: Array(text.utf8), as: UTF8.self) }

    static func now() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}
