public import BlobCore

/// The operator API (docs/api.md, "Operations"): nodes, rebalance, garbage collection, fsck.
///
/// Every call but a node's removal is safe to send again after an unknown outcome (a master
/// that stopped answering): each sets a state, or looks again at the facts.
extension ClusterClient {
    public func node(_ id: String) async throws -> NodeReport {
        try await master("GET", "/v1/nodes/\(Self.query(id))", as: NodeReport.self, idempotent: true)
    }

    public func admitNode(_ id: String) async throws -> NodeReport {
        try await master(
            "POST", "/v1/nodes/\(Self.query(id))/admit", body: [String: String](), as: NodeReport.self, idempotent: true
        )
    }

    public func setNodeWeight(_ id: String, _ weight: Double) async throws -> NodeReport {
        try await master(
            "POST", "/v1/nodes/\(Self.query(id))/weight", body: NodeWeightChange(weight: weight), as: NodeReport.self,
            idempotent: true)
    }

    public func drainNode(_ id: String) async throws -> NodeReport {
        try await master(
            "POST", "/v1/nodes/\(Self.query(id))/drain", body: [String: String](), as: NodeReport.self, idempotent: true
        )
    }

    public func setNodeMaintenance(_ id: String, seconds: Int64) async throws -> NodeReport {
        try await master(
            "POST", "/v1/nodes/\(Self.query(id))/maintenance", body: NodeMaintenance(seconds: seconds),
            as: NodeReport.self, idempotent: true)
    }

    public func removeNode(_ id: String) async throws {
        _ = try await masterBytes("DELETE", "/v1/nodes/\(Self.query(id))", body: Optional<Int>.none)
    }

    public func rebalancePlan(maxBytesPerSecond: Int64?) async throws -> RebalancePlan {
        var query = "/v1/rebalance/plan"
        if let maxBytesPerSecond { query += "?max_bytes_per_sec=\(maxBytesPerSecond)" }
        return try await master("GET", query, as: RebalancePlan.self)
    }

    public func startRebalance(maxBytesPerSecond: Int64?) async throws -> RebalanceStatus {
        try await master(
            "POST", "/v1/rebalance", body: RebalanceStart(maxBytesPerSecond: maxBytesPerSecond),
            as: RebalanceStatus.self, idempotent: true)
    }

    public func rebalanceStatus() async throws -> RebalanceStatus {
        try await master("GET", "/v1/rebalance", as: RebalanceStatus.self)
    }

    public func stopRebalance() async throws -> RebalanceStatus {
        try await master(
            "POST", "/v1/rebalance/stop", body: [String: String](), as: RebalanceStatus.self, idempotent: true)
    }

    public func collectGarbage(dryRun: Bool, graceSeconds: Int64?) async throws -> GCReport {
        try await master(
            "POST", "/v1/gc", body: GCRequest(dryRun: dryRun, graceSeconds: graceSeconds), as: GCReport.self,
            idempotent: true)
    }

    public func fsck(repair: Bool) async throws -> FsckReport {
        try await master("POST", "/v1/fsck", body: FsckRequest(repair: repair), as: FsckReport.self, idempotent: true)
    }
}
