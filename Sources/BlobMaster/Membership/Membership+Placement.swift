public import BlobCore

extension Membership {
    /// For each chunk: present (enough live replicas; do not send it) or the servers to write it
    /// to, from the ring, with servers that are not alive replaced by the next usable ones.
    public func place(_ entries: [PlacementRequestEntry]) async throws -> PlacementReply {
        guard let ring else {
            throw BlobError(
                .insufficientReplicas, reason: "ring.missing",
                "no ring yet: \(status().servers.count) servers registered, \(replicaCount) failure domains "
                    + "needed; start more chunk servers")
        }
        let locations = try await store.replicaLocations(of: entries.map(\.id))
        // A garbage candidate is offered as absent: the writer sends it again, which records a
        // fresh acknowledgement (and touches the file), so collection keeps it.
        let candidates = try await store.garbageCandidates(among: entries.map(\.id))
        let choice = TargetChoice(ring: ring, alive: { self.isUsable($0) }, notDown: { self.state(of: $0) != .down })
        var answers: [PlacementAnswer] = []
        answers.reserveCapacity(entries.count)
        for entry in entries {
            let holders = (locations[entry.id] ?? []).filter { isUsable($0) }.compactMap { endpoint($0) }
            if holders.count >= ring.replicaCount && !candidates.contains(entry.id) {
                answers.append(PlacementAnswer(id: entry.id, isPresent: true, holders: holders, targets: []))
            } else {
                let targets = choice.writeTargets(for: entry.id).compactMap { endpoint($0) }
                answers.append(PlacementAnswer(id: entry.id, isPresent: false, holders: holders, targets: targets))
            }
        }
        return PlacementReply(ringEpoch: ring.epoch, replicaCount: ring.replicaCount, chunks: answers)
    }

    /// Write targets for the current liveness (repair).
    func targetChoice(_ ring: PlacementRing) -> TargetChoice {
        TargetChoice(ring: ring, alive: { self.isUsable($0) }, notDown: { self.state(of: $0) != .down })
    }

    /// The manifest entries of the current version of `path` that overlap the byte range, each
    /// with the servers holding it: alive ones first, rotated per chunk to spread reads.
    public func readPlan(path: BlobPath, offset: Int64, length: Int64?) async throws -> ReadPlan {
        guard offset >= 0, (length ?? 0) >= 0 else {
            throw BlobError(.invalidArgument, reason: "range.invalid", "a range needs a non-negative offset and length")
        }
        let requestedEnd =
            length.map { offset.addingReportingOverflow($0) }.map { $0.overflow ? Int64.max : $0.partialValue }
            ?? Int64.max
        guard let facts = try await store.readPlanFacts(of: path, overlapping: offset..<requestedEnd) else {
            throw BlobError(.notFound, reason: "file.notFound", "no file at \(path); list with `blobctl ls`")
        }
        let file = facts.file
        guard offset <= file.size else {
            throw BlobError(
                .invalidArgument, reason: "range.invalid",
                "range starting at \(offset) is outside the file of \(file.size) bytes")
        }
        var plan: [ReadPlanEntry] = []
        plan.reserveCapacity(facts.entries.count)
        for (i, entry) in facts.entries.enumerated() {
            let servers = facts.locations[entry.chunkID] ?? []
            let alive = servers.filter { state(of: $0) == .alive }
            let others = servers.filter {
                let s = state(of: $0)
                return s != .alive && s != .down
            }
            let rotated = alive.isEmpty ? alive : Array(alive[(i % alive.count)...] + alive[..<(i % alive.count)])
            plan.append(
                ReadPlanEntry(
                    chunk: entry, replicas: (rotated + others).compactMap { endpoint($0) },
                    storedByteCount: facts.storedSizes[entry.chunkID],
                    blockDigests: facts.blockDigests[entry.chunkID]))
        }
        return ReadPlan(file: file, chunks: plan)
    }
}

/// Write targets for one placement answer: who is alive and who is not down is read once per
/// request, not once per chunk.
struct TargetChoice {
    let ring: PlacementRing
    let alive: Set<String>
    let notDown: Set<String>
    /// Distinct failure domains among the members that can take data, per set.
    let aliveDomains: Int
    let notDownDomains: Int

    init(ring: PlacementRing, alive isAlive: (String) -> Bool, notDown isNotDown: (String) -> Bool) {
        self.ring = ring
        let key = Self.domainKey(ring)
        let members = ring.members.filter { $0.weight > 0 }
        let alive = Set(members.map(\.id).filter(isAlive))
        let notDown = Set(members.map(\.id).filter(isNotDown))
        self.alive = alive
        self.notDown = notDown
        aliveDomains = Set(members.filter { alive.contains($0.id) }.map(key)).count
        notDownDomains = Set(members.filter { notDown.contains($0.id) }.map(key)).count
    }

    static func domainKey(_ ring: PlacementRing) -> (RingMember) -> String {
        ring.failureDomain == .zone ? { $0.zone } : { $0.id }
    }

    /// The ring's replicas of the chunk's partition, in order, keeping the alive ones; each
    /// other one is replaced by the next alive member found in the following partitions that
    /// keeps the failure domains distinct. When too few servers are alive, suspect or unknown
    /// ones (late heartbeats: often just busy) fill the rest rather than leaving the write with
    /// fewer copies; down ones never. Deterministic for a given ring and liveness.
    func writeTargets(for id: ChunkID) -> [String] {
        let strict = targets(for: id, usable: alive, domains: aliveDomains)
        guard strict.count < ring.replicaCount else { return strict }
        let relaxed = targets(for: id, usable: notDown, domains: notDownDomains)
        let key = Self.domainKey(ring)
        let byID = Dictionary(ring.members.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var chosen = strict
        var domains = Set(strict.compactMap { byID[$0].map(key) })
        for candidate in relaxed where chosen.count < ring.replicaCount && !chosen.contains(candidate) {
            guard let member = byID[candidate], domains.insert(key(member)).inserted else { continue }
            chosen.append(candidate)
        }
        return chosen
    }

    /// Walks the ring from the chunk's partition, keeping members in `usable`, until R distinct
    /// failure domains or all `domains` of them are taken.
    func targets(for id: ChunkID, usable: Set<String>, domains domainCount: Int) -> [String] {
        let key = Self.domainKey(ring)
        let partition = ring.partition(for: id)
        let wanted = ring.replicaIndices(forPartition: partition).map { ring.members[Int($0)] }
        var chosen = wanted.filter { usable.contains($0.id) }
        var domains = Set(chosen.map(key))
        let limit = min(ring.replicaCount, max(domainCount, chosen.count))
        var step = 1
        while chosen.count < limit && step < ring.partitionCount {
            let next = (partition + step) % ring.partitionCount
            for index in ring.replicaIndices(forPartition: next) where chosen.count < ring.replicaCount {
                let member = ring.members[Int(index)]
                guard member.weight > 0, usable.contains(member.id), !domains.contains(key(member)),
                    !wanted.contains(where: { $0.id == member.id })
                else { continue }
                chosen.append(member)
                domains.insert(key(member))
            }
            step += 1
        }
        return chosen.map(\.id)
    }
}
