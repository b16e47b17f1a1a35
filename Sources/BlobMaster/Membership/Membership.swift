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
/// Everything here is shared by every master through the database: registrations, each
/// server's last heartbeat (in database time, whichever master received it), maintenance
/// windows, removed servers and the ring. This actor is one master's view of it, kept fresh by
/// ``refresh()``; a heartbeat or a change made here is written through at once.
///
/// Admission: with `autoAdmit` (the default, for local and small clusters) a server that
/// registers for the first time joins the ring, which makes a new epoch; the leader does that
/// (``leadership``). Without it, the server waits outside the ring, holding no data, until an
/// operator adds it (`blobctl node add`). Ring changes are compare-and-set on the epoch: a
/// master that lost the race reloads the ring and makes its change again.
public actor Membership {
    struct Live {
        /// Database milliseconds.
        var heardMilliseconds: Int64
        var usage: ServerUsage
        var sequence: Int64
    }

    let store: MetadataStore
    let policy: LivenessPolicy
    let replicaCount: Int
    let partitionPower: Int
    let autoAdmit: Bool
    let logger: Logger
    /// Runs the estimate of the database clock between reads of it (tests advance a manual one,
    /// which is then also the database's clock).
    let clock: any ServiceClock
    /// Who may admit servers automatically: the leader. Nil: this membership always may (a
    /// lone master, and unit tests).
    private var leadership: LeaderElection?
    private var records: [String: ServerRecord] = [:] { didSet { localChanges &+= 1 } }
    private var live: [String: Live] = [:]
    public private(set) var ring: PlacementRing?
    /// Server id → end of its maintenance window (database milliseconds): repair leaves its
    /// data alone until then (planned reboots).
    private var maintenanceUntil: [String: Int64] = [:] { didSet { localChanges &+= 1 } }
    /// Counts changes to ``records`` and ``maintenanceUntil``: a refresh whose database read
    /// overlapped one (a weight set, a registration) does not put its older snapshot over it.
    private var localChanges = 0
    /// Servers an operator removed: they may not register again under the same id.
    private var removed: Set<String> = []
    /// Since when masters have been hearing heartbeats without a gap (database milliseconds): a
    /// server not heard from since counts its silence from here.
    private var observedSince: Int64 = 0
    /// The database clock at a local reading: `databaseNow` runs on from it.
    private var anchor: (database: Int64, local: Duration) = (0, .zero)
    static let removedServersKey = "membership.removedServers"

    public init(
        store: MetadataStore, policy: LivenessPolicy, replicaCount: Int,
        partitionPower: Int = PlacementRing.defaultPartitionPower, autoAdmit: Bool, logger: Logger,
        clock: any ServiceClock = SystemClock()
    ) {
        self.store = store
        self.clock = clock
        self.policy = policy
        self.replicaCount = replicaCount
        self.partitionPower = partitionPower
        self.autoAdmit = autoAdmit
        self.logger = logger
    }

    /// Makes automatic admission the leader's alone.
    public func setLeadership(_ leadership: LeaderElection) { self.leadership = leadership }

    /// The database clock now, estimated from the last reading of it.
    var databaseNow: Int64 { anchor.database + (clock.elapsed - anchor.local).wholeMilliseconds }

    private func anchor(at databaseMilliseconds: Int64) {
        anchor = (databaseMilliseconds, clock.elapsed)
        // Observation starts with the first reading of the database clock, unless the lease
        // says since when masters have been observing (``refresh()``).
        if observedSince == 0 { observedSince = databaseMilliseconds }
    }

    /// Loads the shared state: servers, heartbeats, maintenance windows, removed servers, ring.
    public func load() async throws {
        try await refresh()
    }

    /// Reads the shared state again (every master, every few seconds): registrations and
    /// heartbeats that reached other masters, their ring changes and maintenance windows.
    public func refresh() async throws {
        try await saveHeartbeats()
        let changesBefore = localChanges
        let view = try await store.clusterView()
        anchor(at: view.nowMilliseconds)
        // A change made here while the view was read is newer than the view: the next
        // refresh brings the rest.
        let current = localChanges == changesBefore
        if current { records = Dictionary(uniqueKeysWithValues: view.servers.map { ($0.id, $0) }) }
        for beat in view.heartbeats {
            if let known = live[beat.serverID], known.heardMilliseconds >= beat.heardMilliseconds { continue }
            live[beat.serverID] = Live(
                heardMilliseconds: beat.heardMilliseconds, usage: beat.usage, sequence: beat.sequence)
        }
        live = live.filter { records[$0.key] != nil }
        if current { maintenanceUntil = view.maintenance }
        // Before any master took the lease, observation starts with this master.
        observedSince =
            view.lease?.observedSinceMilliseconds ?? (observedSince == 0 ? view.nowMilliseconds : observedSince)
        if let epoch = view.ringEpoch, epoch != ring?.epoch { try await reloadRing() }
        if let json = try await store.setting(Self.removedServersKey) {
            removed = try JSONDecoder().decode(Set<String>.self, from: Data(json))
        }
        try await admitWaitingServers()
    }

    private func reloadRing() async throws {
        if let json = try await store.latestRing() {
            ring = try JSONDecoder().decode(PlacementRing.self, from: Data(json))
        }
    }

    /// The leader admits servers that registered (perhaps at another master) and are not in
    /// the ring yet.
    private func admitWaitingServers() async throws {
        guard autoAdmit else { return }
        let inRing = Set(ring?.members.map(\.id) ?? [])
        let waiting = records.keys.filter { !inRing.contains($0) && !removed.contains($0) }.sorted()
        guard !waiting.isEmpty else { return }
        try await asLeader { try await self.admit(waiting) }
    }

    /// Runs `work` as the leader when there is leadership to check; skips it on a follower.
    private func asLeader(_ work: @Sendable () async throws -> Void) async throws {
        guard let leadership else { return try await work() }
        guard await leadership.currentTerm != nil else { return }
        try await leadership.asLeader(work)
    }

    public func register(_ registration: ServerRegistration, nowMilliseconds: Int64) async throws -> MembershipReply {
        guard !registration.serverID.isEmpty, registration.serverID.utf8.count <= 128,
            registration.weight.isFinite, registration.weight >= 0, registration.zone.utf8.count <= 128
        else {
            throw BlobError(.invalidArgument, reason: "server.invalid", "server id, zone or weight is out of range")
        }
        if let json = try await store.setting(Self.removedServersKey) {
            removed = try JSONDecoder().decode(Set<String>.self, from: Data(json))
        }
        guard !removed.contains(registration.serverID) else {
            throw BlobError(
                .permissionDenied, reason: "server.removed",
                "server \(registration.serverID) was removed from the cluster; to join again, start it "
                    + "with an empty data directory (a new id)")
        }
        // Another master may have its record: read it rather than trust this master's copy.
        let known = try await store.servers().first { $0.id == registration.serverID }
        // After the first registration the weight is the operator's (`blobctl node set-weight`).
        let record = ServerRecord(
            id: registration.serverID, address: registration.address, zone: registration.zone,
            weight: known?.weight ?? registration.weight, capacityBytes: registration.capacityBytes,
            registeredAtMilliseconds: known?.registeredAtMilliseconds ?? nowMilliseconds)
        if known != record {
            try await store.saveServer(record)
            if known?.address != record.address {
                logger.info("server registered", metadata: ["peer.id": "\(record.id)", "address": "\(record.address)"])
            }
        }
        records[record.id] = record
        let heard = try await store.recordHeartbeats([
            HeartbeatRecord(serverID: record.id, heardMilliseconds: 0, sequence: 0, usage: registration.usage)
        ])
        anchor(at: heard)
        live[record.id] = Live(heardMilliseconds: heard, usage: registration.usage, sequence: 0)
        unsaved[record.id] = nil
        if autoAdmit, ring?.members.contains(where: { $0.id == record.id }) != true {
            try await asLeader { try await self.admit([record.id]) }
        }
        return reply
    }

    public func heartbeat(_ beat: ServerHeartbeat) async throws -> MembershipReply {
        var record = records[beat.serverID]
        if record == nil || record?.address != beat.address {
            // Registered (or moved) through another master since this one last looked.
            record = try await store.servers().first { $0.id == beat.serverID }
            if let record { records[record.id] = record }
        }
        guard let record else {
            throw BlobError(
                .notFound, reason: "server.unknown", "server \(beat.serverID) is not registered; register first")
        }
        if record.address != beat.address {
            throw BlobError(
                .notFound, reason: "server.moved", "server \(beat.serverID) changed address; register again")
        }
        // Kept here and written with the next refresh, all at once: a write (and an fsync) per
        // heartbeat would cost more than the liveness it records, which tolerates seconds.
        let heard = databaseNow
        live[beat.serverID] = Live(heardMilliseconds: heard, usage: beat.usage, sequence: beat.sequence)
        unsaved[beat.serverID] = HeartbeatRecord(
            serverID: beat.serverID, heardMilliseconds: heard, sequence: beat.sequence, usage: beat.usage)
        return reply
    }

    /// Heartbeats received since the last refresh, not yet in the database.
    private var unsaved: [String: HeartbeatRecord] = [:]

    /// Writes the heartbeats received since the last time, in one transaction, at the
    /// database's time.
    func saveHeartbeats() async throws {
        guard !unsaved.isEmpty else { return }
        let beats = unsaved.values.sorted { $0.serverID < $1.serverID }
        unsaved = [:]
        do {
            anchor(at: try await store.recordHeartbeats(beats))
        } catch {
            for beat in beats where unsaved[beat.serverID] == nil { unsaved[beat.serverID] = beat }
            throw error
        }
    }

    var reply: MembershipReply {
        MembershipReply(
            heartbeatIntervalMilliseconds: policy.heartbeatInterval.wholeMilliseconds, ringEpoch: ring?.epoch)
    }

    /// Adds servers to the ring (a new epoch), as far as the ring can be built: with fewer
    /// failure domains than replicas there is no ring yet, and placement answers that.
    public func admit(_ ids: [String]) async throws {
        for id in ids where records[id] == nil {
            throw BlobError(.notFound, reason: "server.unknown", "no server \(id)")
        }
        let wanted = Set(ids).union(pending).filter { records[$0] != nil }
        let installed = try await changeRing { ring throws(RingError) -> PlacementRing? in
            var members = ring?.members ?? []
            let missing = wanted.filter { id in !members.contains { $0.id == id } }
            guard !missing.isEmpty || ring == nil else { return nil }
            for id in wanted.sorted() {
                guard let record = self.records[id] else { continue }
                members.removeAll { $0.id == id }
                members.append(RingMember(id: id, zone: record.zone, weight: record.weight))
            }
            if let ring { return try ring.next(members: members) }
            return try PlacementRing.build(
                members: members, replicaCount: self.replicaCount, partitionPower: self.partitionPower)
        }
        switch installed {
        case .success(let next):
            if let next { pending.subtract(next.members.map(\.id)) }
        case .failure(.insufficientFailureDomains(let needed, let available, _)):
            if !wanted.isSubset(of: pending) {
                logger.info("ring waits for servers", metadata: ["needed": "\(needed)", "available": "\(available)"])
            }
            pending.formUnion(wanted)
        case .failure(let error):
            throw error
        }
    }

    /// Servers admitted while the ring could not yet be built.
    private var pending: Set<String> = []

    /// Makes the next ring from the current one and installs it, compare-and-set on the epoch:
    /// when another master installed an epoch first, the ring is read again and the change made
    /// again on it (bounded). `make` returning nil means there is nothing to change.
    @discardableResult
    func changeRing(
        _ make: (PlacementRing?) throws(RingError) -> PlacementRing?
    ) async throws -> Result<PlacementRing?, RingError> {
        var attempt = 0
        while true {
            let next: PlacementRing?
            do {
                next = try make(ring)
            } catch {
                return .failure(error)
            }
            guard let next else { return .success(nil) }
            do {
                try await install(next)
                return .success(next)
            } catch let error as BlobError where error.code == .staleEpoch && attempt < 16 {
                attempt += 1
                try await reloadRing()
            }
        }
    }

    public func state(of id: String) -> ServerState {
        let now = databaseNow
        if let heard = live[id]?.heardMilliseconds, heard >= observedSince {
            return policy.state(silence: .milliseconds(max(0, now - heard)))
        }
        // Not heard from since masters began observing (a fresh start, or after a time with
        // no master): unknown, and down once a whole grace period has passed without a word
        // (else a server that died while no master ran would never be repaired).
        return now - observedSince >= policy.downAfter.wholeMilliseconds ? .down : .unknown
    }

    /// Whether a ring member is neither alive nor down: not heard from since masters began
    /// observing, or late (a master that has just started again reads heartbeats from before
    /// its stop, and the servers' next ones are on their way). Work that moves data waits for
    /// them to settle rather than count them out.
    public func hasUnsettledRingMembers() -> Bool {
        ring?.members.contains {
            let state = state(of: $0.id)
            return state == .unknown || state == .suspect
        } ?? false
    }

    /// Down past the grace period and not in maintenance: its data is to be re-replicated.
    public func needsRepair(_ id: String) -> Bool {
        guard state(of: id) == .down else { return false }
        if let until = maintenanceUntil[id], until > databaseNow { return false }
        return true
    }

    /// Servers whose replicas no longer count as copies.
    public func serversNeedingRepair() -> [String] {
        records.keys.sorted().filter { needsRepair($0) }
    }

    /// Suspends (or, with 0, ends) repair of a server's data; returns the window's end
    /// (milliseconds since 1970, database time).
    public func setMaintenance(_ id: String, seconds: Int64) async throws -> Int64? {
        guard records[id] != nil else {
            throw BlobError(
                .notFound, reason: "server.unknown", "no server \(id); list them with `blobctl cluster status`")
        }
        let until = try await store.setMaintenance(serverID: id, seconds: seconds)
        maintenanceUntil[id] = until
        if until != nil {
            logger.info("server in maintenance", metadata: ["peer.id": "\(id)", "seconds": "\(seconds)"])
        }
        return until
    }

    public func maintenanceEnd(_ id: String) -> Int64? {
        maintenanceUntil[id].flatMap { $0 > databaseNow ? $0 : nil }
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
        _ = try await changeRing { ring throws(RingError) -> PlacementRing? in
            guard let ring, let member = ring.members.first(where: { $0.id == id }), member.weight != weight else {
                return nil
            }
            return try ring.settingWeight(weight, of: id)
        }.get()
    }

    /// Takes a server out of the ring and forgets it (its replica facts too); it may not
    /// register again under this id. The caller checks that nothing depends on it.
    public func remove(_ id: String) async throws {
        guard records[id] != nil else {
            throw BlobError(
                .notFound, reason: "server.unknown", "no server \(id); list them with `blobctl cluster status`")
        }
        _ = try await changeRing { ring throws(RingError) -> PlacementRing? in
            guard let ring, ring.members.contains(where: { $0.id == id }) else { return nil }
            return try ring.removing(id)
        }.get()
        // Read-modify-write, compare-and-set: another master's removal since is kept.
        let saved = try await store.updateSetting(Self.removedServersKey) { old in
            var all = try old.map { try JSONDecoder().decode(Set<String>.self, from: Data($0)) } ?? []
            all.insert(id)
            return [UInt8](try JSONEncoder().encode(all))
        }
        removed = try JSONDecoder().decode(Set<String>.self, from: Data(saved))
        try await store.deleteServer(id)
        try await store.setMaintenance(serverID: id, seconds: 0)
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
        let now = databaseNow
        let servers = records.values.sorted { $0.id < $1.id }.map { r in
            let l = live[r.id]
            return ServerStatusEntry(
                id: r.id, address: r.address, zone: r.zone, weight: r.weight, capacityBytes: r.capacityBytes,
                state: state(of: r.id),
                inRing: inRing.contains(r.id), usage: l?.usage,
                millisecondsSinceHeartbeat: l.map { max(0, now - $0.heardMilliseconds) })
        }
        return ClusterStatus(ringEpoch: ring?.epoch, replicaCount: replicaCount, servers: servers)
    }
}
