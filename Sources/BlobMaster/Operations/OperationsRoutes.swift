import BlobCore
import BlobServerSupport
import Foundation
import HTTPTypes
import Hummingbird

/// The operator routes: nodes, rebalance, garbage collection, fsck (docs/api.md, "Operations").
struct OperationsRoutes: Sendable {
    let membership: Membership
    let store: MetadataStore
    let signer: RequestSigner
    let rebalancer: Rebalancer
    let collector: GarbageCollector
    let checker: ConsistencyCheck
    let repairer: Repairer
    let gcGrace: Duration
    /// Rebalance, drain, gc and fsck are the leader's: a follower answers `notLeader` (503,
    /// naming the leader), and clients try the next master.
    let election: LeaderElection

    func register(on routes: AuthenticatedRoutes) {
        let clients: Set<RequestRole> = [.client, .master]
        routes.get("/v1/nodes/:id", roles: clients) { request, context in try await node(request, context) }
        routes.post("/v1/nodes/:id/admit", roles: clients) { request, context in try await admit(request, context) }
        routes.post("/v1/nodes/:id/weight", roles: clients) { request, context in try await weight(request, context) }
        routes.post("/v1/nodes/:id/drain", roles: clients) { request, context in try await drain(request, context) }
        routes.post("/v1/nodes/:id/maintenance", roles: clients) { request, context in
            try await maintenance(request, context)
        }
        routes.delete("/v1/nodes/:id", roles: clients) { request, context in try await remove(request, context) }
        routes.get("/v1/rebalance/plan", roles: clients) { request, context in try await plan(request, context) }
        routes.get("/v1/rebalance", roles: clients) { request, context in try await rebalanceStatus(request, context) }
        routes.post("/v1/rebalance", roles: clients) { request, context in try await startRebalance(request, context) }
        routes.post("/v1/rebalance/stop", roles: clients) { request, context in
            try await stopRebalance(request, context)
        }
        routes.post("/v1/gc", roles: clients) { request, context in try await gc(request, context) }
        routes.post("/v1/fsck", roles: clients) { request, context in try await fsck(request, context) }
    }

    func serverID(_ context: ClusterRequestContext) async throws -> String {
        let id = context.parameters.get("id") ?? ""
        guard await membership.endpoint(id) != nil else {
            throw BlobError(
                .notFound, reason: "server.unknown", "no server \(id); list them with `blobctl cluster status`")
        }
        return id
    }

    func report(_ id: String) async throws -> NodeReport {
        let holdings = try await store.holdings(of: id)
        let status = await membership.status().servers.first { $0.id == id }
        return NodeReport(
            id: id, address: status?.address ?? "", state: status?.state ?? .unknown, weight: status?.weight ?? 0,
            inRing: status?.inRing ?? false, chunks: holdings.chunks, storedBytes: holdings.bytes,
            soleCopies: holdings.soleCopies, maintenanceUntilMilliseconds: await membership.maintenanceEnd(id))
    }

    func node(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        return try jsonResponse(try await report(try await serverID(context)))
    }

    func admit(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try await serverID(context)
        try await membership.admit([id])
        return try jsonResponse(try await report(id))
    }

    func weight(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try await serverID(context)
        let change = try await decodeJSONBody(NodeWeightChange.self, from: request, maxByteCount: 4096)
        try await membership.setWeight(id, change.weight)
        return try jsonResponse(try await report(id))
    }

    /// Weight 0, then a rebalance moves everything off; the report says what is left.
    func drain(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try await serverID(context)
        try await election.asLeader {
            try await membership.setWeight(id, 0)
            let current = try await rebalancer.currentStatus()
            _ = try await rebalancer.start(
                maxBytesPerSecond: current.state == .running ? current.maxBytesPerSecond : nil)
        }
        return try jsonResponse(try await report(id))
    }

    func maintenance(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try await serverID(context)
        let body = try await decodeJSONBody(NodeMaintenance.self, from: request, maxByteCount: 4096)
        guard (0...(30 * 86_400)).contains(body.seconds) else {
            throw BlobError(
                .invalidArgument, reason: "maintenance.duration",
                "maintenance lasts 0 to 30 days, got \(body.seconds) s")
        }
        _ = try await membership.setMaintenance(id, seconds: body.seconds)
        return try jsonResponse(try await report(id))
    }

    func remove(_ request: Request, _ context: ClusterRequestContext) async throws -> Response {
        let id = try await serverID(context)
        // Copies elsewhere count only on servers that are not down: a chunk whose other copies
        // are all on dead servers has its only reachable copy here.
        var notDown: Set<String> = []
        for server in await membership.serverIDs where await membership.state(of: server) != .down {
            notDown.insert(server)
        }
        let replicaCount = await membership.ring?.replicaCount ?? 1
        var sole: Int64 = 0
        var short: [ChunkID] = []
        var after: ChunkID?
        while true {
            let page = try await store.replicas(onServer: id, after: after, limit: 10_000)
            guard let last = page.last else { break }
            after = last.0
            for facts in try await store.chunkFacts(of: page.map(\.0)) {
                let elsewhere = facts.servers.count { $0 != id && notDown.contains($0) }
                if elsewhere == 0 { sole += 1 } else if elsewhere < replicaCount { short.append(facts.id) }
            }
        }
        guard sole == 0 else {
            throw BlobError(
                .failedPrecondition, reason: "node.soleCopies",
                "server \(id) holds the only copy of \(sole) chunks (no other live server has them); drain it "
                    + "first (`blobctl node drain \(id)`) and wait until `blobctl node status \(id)` shows 0 chunks")
        }
        try await membership.remove(id)
        // Chunks that keep fewer than R copies: repaired at the next pass, not the next full scan.
        try await repairer.noteDamaged(short)
        return Response(status: .noContent)
    }

    func plan(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let rate = try MasterRoutes.integer(
            request.uri.queryParameters.get("max_bytes_per_sec"), name: "max_bytes_per_sec")
        return try jsonResponse(try await rebalancer.plan(maxBytesPerSecond: rate))
    }

    func rebalanceStatus(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        return try jsonResponse(try await rebalancer.currentStatus())
    }

    func startRebalance(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let body = try await decodeJSONBody(RebalanceStart.self, from: request, maxByteCount: 4096)
        guard (body.maxBytesPerSecond ?? 0) >= 0 else {
            throw BlobError(.invalidArgument, reason: "rebalance.rate", "max bytes per second must be >= 0")
        }
        let status = try await election.asLeader {
            try await rebalancer.start(maxBytesPerSecond: body.maxBytesPerSecond)
        }
        return try jsonResponse(status, status: .accepted)
    }

    func stopRebalance(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        return try jsonResponse(try await election.asLeader { try await rebalancer.stop() })
    }

    func gc(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let body = try await decodeJSONBody(GCRequest.self, from: request, maxByteCount: 4096)
        var grace = gcGrace
        if let seconds = body.graceSeconds {
            guard seconds <= 10 * 365 * 86_400 else {
                throw BlobError(.invalidArgument, reason: "gc.grace", "a grace period of at most 10 years, please")
            }
            guard Duration.seconds(seconds) >= gcGrace else {
                throw BlobError(
                    .invalidArgument, reason: "gc.grace",
                    "the grace period may not be shorter than the master's (\(gcGrace.components.seconds) s; "
                        + "set with `blobctl master --gc-grace`)")
            }
            grace = .seconds(seconds)
        }
        let chosen = grace
        let report = try await election.asLeader { try await collector.run(dryRun: body.dryRun, grace: chosen) }
        return try jsonResponse(report)
    }

    func fsck(_ request: Request, _ _: ClusterRequestContext) async throws -> Response {
        let body = try await decodeJSONBody(FsckRequest.self, from: request, maxByteCount: 4096)
        return try jsonResponse(try await election.asLeader { try await checker.run(repair: body.repair) })
    }
}
