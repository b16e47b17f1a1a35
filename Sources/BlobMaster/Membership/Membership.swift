public import BlobCore
import Foundation
public import Logging

/// Liveness rules: a server is suspect when a heartbeat is `suspectAfter` late, down after
/// `downAfter` (the grace period before its data is re-replicated).
public struct LivenessPolicy: Sendable, Hashable {
    public var heartbeatInterval: Duration
    public var suspectAfter: Duration
    public var downAfter: Duration

    public init(
        heartbeatInterval: Duration = .seconds(5), suspectAfter: Duration = .seconds(15),
        downAfter: Duration = .seconds(600)
    ) {
        self.heartbeatInterval = heartbeatInterval
        self.suspectAfter = suspectAfter
        self.downAfter = downAfter
    }

    /// The state of a server last heard from `silence` ago (nil: not since the master started).
    public func state(silence: Duration?) -> ServerState {
        guard let silence else { return .unknown }
        if silence >= downAfter { return .down }
        if silence >= suspectAfter { return .suspect }
        return .alive
    }
}

/// The registry of chunk servers and the owner of the ring.
///
/// Registrations are persisted; heartbeats and usage live in memory. Admission: with
/// `autoAdmit` (the default, for local and small clusters) a server that registers for the
/// first time joins the ring at once, which makes a new epoch; without it, it waits outside the
/// ring, holding no data, until an operator adds it (`blobctl node add`, issue 7).
public actor Membership {
    struct Live {
        /// On ``clock``'s monotonic reading.
        var lastHeartbeat: Duration
        var usage: ServerUsage
        var sequence: Int64
    }

    let store: MetadataStore
    let policy: LivenessPolicy
    let replicaCount: Int
    let partitionPower: Int
    let autoAdmit: Bool
    let logger: Logger
    /// Liveness, grace periods and maintenance windows run on it (tests advance a manual one).
    let clock: any ServiceClock
    private var records: [String: ServerRecord] = [:]
    private var live: [String: Live] = [:]
    public private(set) var ring: PlacementRing?
    /// Servers whose data repair leaves alone until then (planned reboots).
    private var maintenanceUntil: [String: (until: Duration, wallMilliseconds: Int64)] = [:]
    /// Servers an operator removed: they may not register again under the same id.
    private var removed: Set<String> = []
    /// A server not heard from since the master started counts its silence from here.
    private let startedAt: Duration
    static let removedServersKey = "membership.removedServers"

    public init(
        store: MetadataStore, policy: LivenessPolicy, replicaCount: Int,
        partitionPower: Int = PlacementRing.defaultPartitionPower, autoAdmit: Bool, logger: Logger,
        clock: any ServiceClock = SystemClock()
    ) {
        self.store = store
        self.clock = clock
        self.startedAt = clock.elapsed
        self.policy = policy
        self.replicaCount = replicaCount
        self.partitionPower = partitionPower
        self.autoAdmit = autoAdmit
        self.logger = logger
    }

    /// Loads the known servers and the newest ring.
    public func load() async throws {
        for record in try await store.servers() { records[record.id] = record }
        if let json = try await store.latestRing() {
            ring = try JSONDecoder().decode(PlacementRing.self, from: Data(json))
        }
        if let json = try await store.setting(Self.removedServersKey) {
            removed = try JSONDecoder().decode(Set<String>.self, from: Data(json))
        }
    }

    public func register(_ registration: ServerRegistration, nowMilliseconds: Int64) async throws -> MembershipReply {
        guard !registration.serverID.isEmpty, registration.serverID.utf8.count <= 128,
            registration.weight.isFinite, registration.weight >= 0, registration.zone.utf8.count <= 128
        else {
            throw BlobError(.invalidArgument, reason: "server.invalid", "server id, zone or weight is out of range")
        }
        guard !removed.contains(registration.serverID) else {
            throw BlobError(
                .permissionDenied, reason: "server.removed",
                "server \(registration.serverID) was removed from the cluster; to join again, start it "
                    + "with an empty data directory (a new id)")
        }
        let known = records[registration.serverID]
        // After the first registration the weight is the operator's (`blobctl node set-weight`).
        let record = ServerRecord(
            id: registration.serverID, address: registration.address, zone: registration.zone,
            weight: known?.weight ?? registration.weight, capacityBytes: registration.capacityBytes,
            registeredAtMilliseconds: known?.registeredAtMilliseconds ?? nowMilliseconds)
        if known != record {
            try await store.saveServer(record)
            records[record.id] = record
            if known?.address != record.address {
                logger.info("server registered", metadata: ["peer.id": "\(record.id)", "address": "\(record.address)"])
            }
        }
        live[record.id] = Live(lastHeartbeat: clock.elapsed, usage: registration.usage, sequence: 0)
        if autoAdmit, ring?.members.contains(where: { $0.id == record.id }) != true {
            try await admit([record.id])
        }
        return reply
    }

    public func heartbeat(_ beat: ServerHeartbeat) throws -> MembershipReply {
        guard let record = records[beat.serverID] else {
            throw BlobError(
                .notFound, reason: "server.unknown", "server \(beat.serverID) is not registered; register first")
        }
        if record.address != beat.address {
            throw BlobError(
                .notFound, reason: "server.moved", "server \(beat.serverID) changed address; register again")
        }
        live[beat.serverID] = Live(lastHeartbeat: clock.elapsed, usage: beat.usage, sequence: beat.sequence)
        return reply
    }

    var reply: MembershipReply {
        MembershipReply(
            heartbeatIntervalMilliseconds: policy.heartbeatInterval.wholeMilliseconds, ringEpoch: ring?.epoch)
    }

    /// Adds servers to the ring (a new epoch), as far as the ring can be built: with fewer
    /// failure domains than replicas there is no ring yet, and placement answers that.
    public func admit(_ ids: [String]) async throws {
        var members = ring?.members ?? []
        for id in Set(ids).union(pending).sorted() {
            guard let record = records[id] else {
                throw BlobError(.notFound, reason: "server.unknown", "no server \(id)")
            }
            members.removeAll { $0.id == id }
            members.append(RingMember(id: id, zone: record.zone, weight: record.weight))
        }
        let attempt = Result { () throws(RingError) -> PlacementRing in
            if let ring { return try ring.next(members: members) }
            return try PlacementRing.build(members: members, replicaCount: replicaCount, partitionPower: partitionPower)
        }
        let next: PlacementRing
        switch attempt {
        case .success(let ring):
            next = ring
        case .failure(.insufficientFailureDomains(let needed, let available, _)):
            logger.info("ring waits for servers", metadata: ["needed": "\(needed)", "available": "\(available)"])
            pending.formUnion(ids)
            return
        case .failure(let error):
            throw error
        }
        try await install(next)
        pending.subtract(next.members.map(\.id))
    }

    /// Servers admitted while the ring could not yet be built.
    private var pending: Set<String> = []

    public func state(of id: String) -> ServerState {
        if let heard = live[id] { return policy.state(silence: clock.elapsed - heard.lastHeartbeat) }
        // Not heard from since this master started: unknown, and down once a whole grace
        // period has passed without a word (else a server that died with the old master
        // would never be repaired).
        return clock.elapsed - startedAt >= policy.downAfter ? .down : .unknown
    }

    /// Whether a ring member has not been heard from since this master started.
    public func hasUnknownRingMembers() -> Bool {
        ring?.members.contains { state(of: $0.id) == .unknown } ?? false
    }

    /// Down past the grace period and not in maintenance: its data is to be re-replicated.
    public func needsRepair(_ id: String) -> Bool {
        guard state(of: id) == .down else { return false }
        if let window = maintenanceUntil[id], window.until > clock.elapsed { return false }
        return true
    }

    /// Servers whose replicas no longer count as copies.
    public func serversNeedingRepair() -> [String] {
        records.keys.sorted().filter { needsRepair($0) }
    }

    /// Suspends (or, with 0, ends) repair of a server's data.
    public func setMaintenance(_ id: String, seconds: Int64) throws -> Int64? {
        guard records[id] != nil else {
            throw BlobError(
                .notFound, reason: "server.unknown", "no server \(id); list them with `blobctl cluster status`")
        }
        guard seconds > 0 else {
            maintenanceUntil[id] = nil
            return nil
        }
        let wall = clock.wallMilliseconds + seconds * 1000
        maintenanceUntil[id] = (clock.elapsed + .seconds(seconds), wall)
        logger.info("server in maintenance", metadata: ["peer.id": "\(id)", "seconds": "\(seconds)"])
        return wall
    }

    public func maintenanceEnd(_ id: String) -> Int64? {
        maintenanceUntil[id].flatMap { $0.until > clock.elapsed ? $0.wallMilliseconds : nil }
    }

    public var serverIDs: [String] { records.keys.sorted() }

    /// Sets a server's weight in its record and the ring (a new epoch); 0 drains it.
    public func setWeight(_ id: String, _ weight: Double) async throws {
        guard var record = records[id] else {
            throw BlobError(
                .notFound, reason: "server.unknown", "no server \(id); list them with `blobctl cluster status`")
        }
        guard weight.isFinite, weight >= 0, weight <= 1_000_000 else {
            throw BlobError(
                .invalidArgument, reason: "weight.invalid", "weight must be between 0 and 1000000, got \(weight)")
        }
        record.weight = weight
        try await store.saveServer(record)
        records[id] = record
        guard let ring, ring.members.contains(where: { $0.id == id }) else { return }
        try await install(ring.settingWeight(weight, of: id))
    }

    /// Takes a server out of the ring and forgets it (its replica facts too); it may not
    /// register again under this id. The caller checks that nothing depends on it.
    public func remove(_ id: String) async throws {
        guard records[id] != nil else {
            throw BlobError(
                .notFound, reason: "server.unknown", "no server \(id); list them with `blobctl cluster status`")
        }
        if let ring, ring.members.contains(where: { $0.id == id }) {
            try await install(ring.removing(id))
        }
        // Read-modify-write, compare-and-set: another master's removal since is kept.
        let saved = try await store.updateSetting(Self.removedServersKey) { old in
            var all = try old.map { try JSONDecoder().decode(Set<String>.self, from: Data($0)) } ?? []
            all.insert(id)
            return [UInt8](try JSONEncoder().encode(all))
        }
        removed = try JSONDecoder().decode(Set<String>.self, from: Data(saved))
        try await store.deleteServer(id)
        records[id] = nil
        live[id] = nil
        maintenanceUntil[id] = nil
        pending.remove(id)
        logger.info("server removed", metadata: ["peer.id": "\(id)"])
    }

    func install(_ next: PlacementRing) async throws {
        let json = try JSONEncoder().encode(next)
        try await store.saveRing(epoch: next.epoch, json: [UInt8](json))
        ring = next
        logger.info(
            "ring epoch changed", metadata: ["ring.epoch": "\(next.epoch)", "server.count": "\(next.members.count)"])
    }

    public func endpoint(_ id: String) -> ServerEndpoint? {
        records[id].map { ServerEndpoint(id: $0.id, address: $0.address) }
    }

    /// Servers that reads and writes may use now: alive ones only.
    public func isUsable(_ id: String) -> Bool { state(of: id) == .alive }

    public func status() -> ClusterStatus {
        let inRing = Set(ring?.members.map(\.id) ?? [])
        let servers = records.values.sorted { $0.id < $1.id }.map { r in
            let l = live[r.id]
            return ServerStatusEntry(
                id: r.id, address: r.address, zone: r.zone, weight: r.weight, capacityBytes: r.capacityBytes,
                state: state(of: r.id),
                inRing: inRing.contains(r.id), usage: l?.usage,
                millisecondsSinceHeartbeat: l.map { (clock.elapsed - $0.lastHeartbeat).wholeMilliseconds })
        }
        return ClusterStatus(ringEpoch: ring?.epoch, replicaCount: replicaCount, servers: servers)
    }
}
