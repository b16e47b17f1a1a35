/// Where every chunk's replicas live: a partition table, versioned by an epoch.
///
/// The hash space of chunk ids is cut into `2^partitionPower` equal partitions (a chunk's
/// partition is the top bits of its id); each partition has `replicaCount` members on distinct
/// failure domains. The table is computed by the master and shipped whole, so every process
/// agrees exactly; a lookup is one shift and one array read.
///
/// A membership change makes the next epoch from the previous table, moving only the replicas
/// that the new quotas require (see ``PartitionAssignment``). A ring value is immutable.
public struct PlacementRing: Sendable, Hashable {
    /// Increases by one with every change; the first ring is epoch 1.
    public let epoch: UInt64
    /// The table has `2^partitionPower` partitions.
    public let partitionPower: Int
    /// Replicas per chunk, R.
    public let replicaCount: Int
    /// What the replicas of a partition never share.
    public let failureDomain: FailureDomain
    /// The members, sorted by id. Members with weight 0 hold nothing and are being drained.
    public let members: [RingMember]
    /// Member indices, `replicaCount` per partition.
    let table: [UInt16]

    /// The allowed partition powers: 2 to 4 partitions per... up to 16 M partitions.
    public static let partitionPowerRange = 1...24
    /// The default partition power: 16,384 partitions, enough to keep a few hundred servers
    /// within 1% of their share, and a 96 KiB table for R=3.
    public static let defaultPartitionPower = 14

    /// The number of partitions.
    public var partitionCount: Int { 1 << partitionPower }

    // MARK: Building

    /// The first ring of a cluster (epoch 1).
    public static func build(
        members: [RingMember],
        replicaCount: Int = 3,
        partitionPower: Int = defaultPartitionPower,
        failureDomain policy: FailureDomainPolicy = .automatic
    ) throws(RingError) -> PlacementRing {
        let sorted = try validated(members, replicaCount: replicaCount, partitionPower: partitionPower)
        let domain = resolve(policy, members: sorted, replicaCount: replicaCount)
        let partitions = 1 << partitionPower
        let quotas = try ReplicaQuotas(
            members: sorted, failureDomain: domain, partitionCount: partitions, replicaCount: replicaCount)
        let assignment = PartitionAssignment(
            firstLayoutWith: quotas, members: sorted, partitionCount: partitions, replicaCount: replicaCount)
        try assignment.check()
        return PlacementRing(
            epoch: 1, partitionPower: partitionPower, replicaCount: replicaCount, failureDomain: domain,
            members: sorted, table: assignment.table)
    }

    /// The next epoch for a new membership (servers added, removed, re-weighted or re-zoned),
    /// computed from this ring's table so that only the replicas the change requires move.
    public func next(
        members newMembers: [RingMember], failureDomain policy: FailureDomainPolicy = .automatic
    ) throws(RingError) -> PlacementRing {
        let sorted = try Self.validated(newMembers, replicaCount: replicaCount, partitionPower: partitionPower)
        let domain = Self.resolve(policy, members: sorted, replicaCount: replicaCount)
        let quotas = try ReplicaQuotas(
            members: sorted, failureDomain: domain, partitionCount: partitionCount, replicaCount: replicaCount)
        var newIndex: [String: UInt16] = [:]
        for (i, m) in sorted.enumerated() { newIndex[m.id] = UInt16(i) }
        let translation = members.map { newIndex[$0.id] ?? PartitionAssignment.empty }
        let translated = table.map { translation[Int($0)] }
        var assignment = PartitionAssignment(
            previous: translated, quotas: quotas, memberCount: sorted.count,
            partitionCount: partitionCount, replicaCount: replicaCount)
        try assignment.rebalance()
        return PlacementRing(
            epoch: epoch + 1, partitionPower: partitionPower, replicaCount: replicaCount, failureDomain: domain,
            members: sorted, table: assignment.table)
    }

    /// The next epoch with one more member. Throws if the id is taken.
    public func adding(_ member: RingMember) throws(RingError) -> PlacementRing {
        guard !members.contains(where: { $0.id == member.id }) else {
            throw .invalidMember("server \(member.id) is already in the ring")
        }
        return try next(members: members + [member])
    }

    /// The next epoch without the member `id`; its replicas move to the others.
    public func removing(_ id: String) throws(RingError) -> PlacementRing {
        guard members.contains(where: { $0.id == id }) else { throw .unknownMember(id) }
        return try next(members: members.filter { $0.id != id })
    }

    /// The next epoch with the member's weight changed (0 drains it).
    public func settingWeight(_ weight: Double, of id: String) throws(RingError) -> PlacementRing {
        guard let i = members.firstIndex(where: { $0.id == id }) else { throw .unknownMember(id) }
        var changed = members
        changed[i].weight = weight
        return try next(members: changed)
    }

    // MARK: Lookup

    /// The partition of a chunk: the top `partitionPower` bits of its id.
    @inlinable
    public func partition(for id: ChunkID) -> Int {
        Int(id.leadingBits32 >> UInt32(32 - partitionPower))
    }

    /// Indices into ``members`` of the replicas of a partition, in replica order.
    public func replicaIndices(forPartition partition: Int) -> ArraySlice<UInt16> {
        table[(partition * replicaCount)..<((partition + 1) * replicaCount)]
    }

    /// The members that should hold a chunk, first replica first.
    public func replicas(for id: ChunkID) -> [RingMember] {
        replicaIndices(forPartition: partition(for: id)).map { members[Int($0)] }
    }

    /// The ids of the servers that should hold a chunk, first replica first.
    public func replicaIDs(for id: ChunkID) -> [String] {
        replicaIndices(forPartition: partition(for: id)).map { members[Int($0)].id }
    }

    /// Replica slots held by each member, in member order.
    public var slotCounts: [Int] {
        var counts = [Int](repeating: 0, count: members.count)
        for m in table { counts[Int(m)] += 1 }
        return counts
    }

    /// Replicas that must be written somewhere new to go from this ring to `other`: summed over
    /// partitions, the members of `other`'s replica set that this ring's set lacks.
    public func movedReplicaCount(to other: PlacementRing) -> Int {
        precondition(other.partitionCount == partitionCount && other.replicaCount == replicaCount)
        var moved = 0
        for p in 0..<partitionCount {
            let before = Set(replicaIndices(forPartition: p).map { members[Int($0)].id })
            for m in other.replicaIndices(forPartition: p) where !before.contains(other.members[Int(m)].id) {
                moved += 1
            }
        }
        return moved
    }

    // MARK: Validation

    static func validated(
        _ members: [RingMember], replicaCount: Int, partitionPower: Int
    ) throws(RingError) -> [RingMember] {
        guard partitionPowerRange.contains(partitionPower) else {
            throw .invalidParameters("partition power \(partitionPower) is outside \(partitionPowerRange)")
        }
        guard (1...16).contains(replicaCount) else {
            throw .invalidParameters("replica count \(replicaCount) is outside 1...16")
        }
        guard members.count < Int(PartitionAssignment.empty) else {
            throw .invalidParameters("a ring holds at most \(Int(PartitionAssignment.empty) - 1) servers")
        }
        var seen = Set<String>()
        for m in members {
            guard !m.id.isEmpty, m.id.utf8.count <= 128 else {
                throw .invalidMember("server id must be 1 to 128 bytes, got \"\(m.id)\"")
            }
            guard m.zone.utf8.count <= 128 else { throw .invalidMember("zone of \(m.id) is over 128 bytes") }
            guard m.weight.isFinite, m.weight >= 0 else {
                throw .invalidMember("weight of \(m.id) must be a finite number >= 0, got \(m.weight)")
            }
            guard seen.insert(m.id).inserted else { throw .invalidMember("server id \(m.id) appears twice") }
        }
        return members.sorted { $0.id < $1.id }
    }

    static func resolve(_ policy: FailureDomainPolicy, members: [RingMember], replicaCount: Int) -> FailureDomain {
        switch policy {
        case .zone: return .zone
        case .server: return .server
        case .automatic:
            let zones = Set(members.filter { $0.weight > 0 }.map(\.zone))
            return zones.count >= replicaCount ? .zone : .server
        }
    }

    init(
        epoch: UInt64, partitionPower: Int, replicaCount: Int, failureDomain: FailureDomain,
        members: [RingMember], table: [UInt16]
    ) {
        self.epoch = epoch
        self.partitionPower = partitionPower
        self.replicaCount = replicaCount
        self.failureDomain = failureDomain
        self.members = members
        self.table = table
    }
}
