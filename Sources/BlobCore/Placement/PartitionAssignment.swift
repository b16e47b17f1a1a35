/// The replica-slot table of a ring and the two ways it is made: a first layout for a new
/// cluster, and the least-movement adjustment of a previous table to new quotas.
///
/// The table holds `partitionCount × replicaCount` member indices; slot `p × R + c` is the
/// c-th replica of partition p. ``empty`` marks a slot whose member left.
struct PartitionAssignment {
    static let empty = UInt16.max

    let partitionCount: Int
    let replicaCount: Int
    let quotas: ReplicaQuotas
    var table: [UInt16]
    private(set) var loads: [Int]

    /// Spreads partitions so neighbouring ids do not share replica sets; a bijection on
    /// `0..<partitionCount` because the multiplier is odd.
    static func scatter(_ x: Int, partitionCount: Int) -> Int {
        (x &* 0x9E37_79B1) & (partitionCount - 1)
    }

    /// The first layout (McNaughton's wrap-around rule): each domain's quota, then each
    /// member's within it, is laid out as one run over the sequence of all slots, filling
    /// replica column after column. A domain's run is at most one column long, so it can never
    /// meet itself in a partition: every partition gets R distinct domains, and every member
    /// gets exactly its quota. Heavy domains come first, which keeps the lightest members out
    /// of each other's partitions (the later removal of a heavy member then needs no extra moves).
    init(firstLayoutWith quotas: ReplicaQuotas, members: [RingMember], partitionCount: Int, replicaCount: Int) {
        self.partitionCount = partitionCount
        self.replicaCount = replicaCount
        self.quotas = quotas
        var table = [UInt16](repeating: Self.empty, count: partitionCount * replicaCount)
        let domainOrder = (0..<quotas.domainCount).sorted { a, b in
            quotas.domainQuotas[a] != quotas.domainQuotas[b] ? quotas.domainQuotas[a] > quotas.domainQuotas[b] : a < b
        }
        var k = 0
        for d in domainOrder {
            let inDomain = members.indices.filter { quotas.domainOfMember[$0] == d }
            // Interleave the domain's members along its run (smooth weighted round robin), so each
            // member meets every other domain's members; a member added to this domain later then
            // finds surplus everywhere it may go.
            var credit = [Int](repeating: 0, count: inDomain.count)
            let run = quotas.domainQuotas[d]
            for _ in 0..<run {
                var pick = 0
                for i in inDomain.indices {
                    credit[i] += quotas.memberQuotas[inDomain[i]]
                    if credit[i] > credit[pick] { pick = i }
                }
                credit[pick] -= run
                let p = Self.scatter(k % partitionCount, partitionCount: partitionCount)
                let column = (k / partitionCount + p) % replicaCount
                table[p * replicaCount + column] = UInt16(inDomain[pick])
                k += 1
            }
        }
        self.table = table
        self.loads = quotas.memberQuotas
        mixWithinWeightClasses(members: members)
    }

    /// Swaps replicas between partitions, only between members of equal weight in domains of
    /// equal weight, whenever the failure-domain rule still holds after the swap.
    ///
    /// The wrap-around layout puts each member in a contiguous run, so a member shares its
    /// partitions with only two or three others; when it leaves, those few could take none of
    /// its replicas and the rest would have to move twice. Mixing spreads every member's
    /// partners over all members of their class. It keeps each partition's pattern of weight
    /// classes, which is what lets a heavy member later grow to one replica per partition
    /// without displacing light ones (the het5 scenarios of the placement benchmark).
    /// Loads do not change. The swaps come from a fixed-seed generator: the same everywhere.
    private mutating func mixWithinWeightClasses(members: [RingMember]) {
        var domainWeight = [Double](repeating: 0, count: quotas.domainCount)
        for (m, member) in members.enumerated() { domainWeight[quotas.domainOfMember[m]] += member.weight }
        var classOf: [String: Int] = [:]
        let memberClass = members.indices.map { m -> Int in
            let key = "\(members[m].weight)/\(domainWeight[quotas.domainOfMember[m]])"
            if let c = classOf[key] { return c }
            classOf[key] = classOf.count
            return classOf.count - 1
        }
        var slotsOfClass = [[Int]](repeating: [], count: classOf.count)
        for slot in table.indices { slotsOfClass[memberClass[Int(table[slot])]].append(slot) }
        var rng = SplitMix64(seed: 0x4D49_5850_4C41_4345)  // "MIXPLACE"
        for slots in slotsOfClass where slots.count > 1 {
            for _ in 0..<(2 * slots.count) {
                let a = slots[Int(rng.next() % UInt64(slots.count))]
                let b = slots[Int(rng.next() % UInt64(slots.count))]
                let (pa, pb) = (a / replicaCount, b / replicaCount)
                let (ma, mb) = (Int(table[a]), Int(table[b]))
                guard pa != pb, ma != mb,
                    canReplace(column: a % replicaCount, in: pa, with: mb),
                    canReplace(column: b % replicaCount, in: pb, with: ma)
                else { continue }
                table[a] = UInt16(mb)
                table[b] = UInt16(ma)
            }
        }
    }

    /// Starts from a previous table (already translated to the new member indices, with
    /// departed members' slots ``empty``). Slots that now break the failure-domain rule are
    /// emptied; ``rebalance()`` then moves the fewest slots that meet every quota.
    init(previous table: [UInt16], quotas: ReplicaQuotas, memberCount: Int, partitionCount: Int, replicaCount: Int) {
        self.partitionCount = partitionCount
        self.replicaCount = replicaCount
        self.quotas = quotas
        self.table = table
        self.loads = [Int](repeating: 0, count: memberCount)
        for p in 0..<partitionCount {
            for c in 0..<replicaCount {
                let m = self.table[p * replicaCount + c]
                guard m != Self.empty else { continue }
                let d = quotas.domainOfMember[Int(m)]
                let clash = (0..<c).contains { c2 in
                    let o = self.table[p * replicaCount + c2]
                    return o != Self.empty && quotas.domainOfMember[Int(o)] == d
                }
                if clash {
                    self.table[p * replicaCount + c] = Self.empty
                } else {
                    loads[Int(m)] += 1
                }
            }
        }
    }

    /// Slots a member holds beyond its quota (negative: slots it lacks).
    private func surplus(_ m: Int) -> Int { loads[m] - quotas.memberQuotas[m] }

    /// The column of partition `p` that member `u` should take, or nil if none may go to it.
    ///
    /// `u` may replace an empty slot or a member holding more than its quota, provided no other
    /// replica of `p` is in u's failure domain. When one is, only that replica's slot may go.
    private func column(for u: Int, in p: Int) -> Int? {
        let base = p * replicaCount
        let du = quotas.domainOfMember[u]
        var sameDomainColumn: Int?
        for c in 0..<replicaCount {
            let m = table[base + c]
            if m != Self.empty && quotas.domainOfMember[Int(m)] == du {
                if sameDomainColumn != nil || Int(m) == u { return nil }
                sameDomainColumn = c
            }
        }
        func usable(_ c: Int) -> Bool {
            let m = table[base + c]
            return m == Self.empty || surplus(Int(m)) > 0
        }
        if let c = sameDomainColumn { return usable(c) ? c : nil }
        var best: Int?
        var bestSurplus = Int.min
        for c in 0..<replicaCount {
            let m = table[base + c]
            if m == Self.empty { return c }
            let s = surplus(Int(m))
            if s > 0 && s > bestSurplus {
                best = c
                bestSurplus = s
            }
        }
        return best
    }

    private mutating func assign(_ u: Int, toPartition p: Int, column c: Int) {
        let slot = p * replicaCount + c
        let old = table[slot]
        if old != Self.empty { loads[Int(old)] -= 1 }
        table[slot] = UInt16(u)
        loads[u] += 1
    }

    private struct Candidate {
        var isEmptySlot: Bool
        var harm: Int
        var order: UInt64
        var partition: Int
    }

    /// Moves slots until every member holds exactly its quota.
    ///
    /// Each member short of its quota (most constrained first) takes slots from empty places
    /// and from members over their quota, in partitions where its failure domain is absent.
    /// Among its choices it prefers partitions that the other members still short of their
    /// quota cannot use, so nobody is left without a place; what remains is scattered by a
    /// fixed hash. Each slot taken is one replica moved, and only surplus moves, so the total
    /// equals the least possible: the sum of the quota increases. Should a member still find no
    /// place (rare: all remaining surplus sits in partitions that already hold its domain), it
    /// displaces a member at exactly its quota, which then looks for a place in the next round:
    /// one extra move per such step.
    mutating func rebalance() throws(RingError) {
        let memberCount = loads.count
        for _ in 0..<(memberCount + 4) {
            let short = (0..<memberCount).filter { surplus($0) < 0 }
            if short.isEmpty { break }
            let slack = short.map { u in availablePartitionCount(for: u) + surplus(u) }
            let order = short.indices.sorted { slack[$0] != slack[$1] ? slack[$0] < slack[$1] : short[$0] < short[$1] }
            var progress = false
            for i in order {
                let u = short[i]
                let before = surplus(u)
                fill(u, competitors: short.filter { $0 != u && surplus($0) < 0 })
                progress = progress || surplus(u) != before
            }
            if !progress { break }
        }
        // What direct moves could not place goes along augmenting paths, one slot at a time.
        for u in 0..<memberCount {
            while surplus(u) < 0 {
                guard augment(from: u) else { break }
            }
        }
        try check()
    }

    /// Finds the shortest chain u → m1 → … → mk where each member may take a slot of the next
    /// one (failure domains permitting) and mk holds more than its quota (or the slot is empty),
    /// then shifts one slot along it: u gains one, mk loses one, the members between keep their
    /// counts. Each step is one moved replica; used only for the few slots direct moves leave.
    private mutating func augment(from u: Int) -> Bool {
        struct Step {
            var previous: Int
            var partition: Int
            var column: Int
        }
        var visited = [Bool](repeating: false, count: loads.count)
        var via = [Step?](repeating: nil, count: loads.count)
        var queue = [u]
        visited[u] = true
        var head = 0
        while head < queue.count {
            let x = queue[head]
            head += 1
            for p in 0..<partitionCount {
                for c in 0..<replicaCount where canReplace(column: c, in: p, with: x) {
                    let y = table[p * replicaCount + c]
                    if y == Self.empty || surplus(Int(y)) > 0 {
                        // Shift along the chain, from the end back to u.
                        var taker = x
                        var slot = (p, c)
                        while true {
                            assign(taker, toPartition: slot.0, column: slot.1)
                            guard let step = via[taker] else { break }
                            slot = (step.partition, step.column)
                            taker = step.previous
                        }
                        return true
                    }
                    if !visited[Int(y)] {
                        visited[Int(y)] = true
                        via[Int(y)] = Step(previous: x, partition: p, column: c)
                        queue.append(Int(y))
                    }
                }
            }
        }
        return false
    }

    /// Whether member x may take column c of partition p: x is not in p already, and no other
    /// replica of p shares x's failure domain.
    private func canReplace(column c: Int, in p: Int, with x: Int) -> Bool {
        let base = p * replicaCount
        let current = table[base + c]
        if current != Self.empty && Int(current) == x { return false }
        let dx = quotas.domainOfMember[x]
        for c2 in 0..<replicaCount where c2 != c {
            let m = table[base + c2]
            if m != Self.empty && quotas.domainOfMember[Int(m)] == dx { return false }
        }
        return true
    }

    private func availablePartitionCount(for u: Int) -> Int {
        var n = 0
        for p in 0..<partitionCount where column(for: u, in: p) != nil { n += 1 }
        return n
    }

    private mutating func fill(_ u: Int, competitors: [Int]) {
        var candidates: [Candidate] = []
        // Competition is a tie-breaker; past a few dozen short members it costs more than it saves.
        let rivals = competitors.count <= 32 ? competitors : []
        for p in 0..<partitionCount {
            guard let c = column(for: u, in: p) else { continue }
            var harm = 0
            for v in rivals where column(for: v, in: p) != nil { harm += 1 }
            candidates.append(
                Candidate(
                    isEmptySlot: table[p * replicaCount + c] == Self.empty, harm: harm,
                    order: SplitMix64.mix(UInt64(p) &+ UInt64(u) << 32), partition: p))
        }
        candidates.sort { a, b in
            if a.isEmptySlot != b.isEmptySlot { return a.isEmptySlot }
            if a.harm != b.harm { return a.harm < b.harm }
            return a.order < b.order
        }
        for candidate in candidates {
            if surplus(u) >= 0 { break }
            // Earlier takes may have used up the surplus this candidate relied on: look again.
            guard let c = column(for: u, in: candidate.partition) else { continue }
            assign(u, toPartition: candidate.partition, column: c)
        }
    }

    /// Every slot filled, every partition on distinct domains, every member at its quota.
    func check() throws(RingError) {
        let off = loads.indices.filter { loads[$0] != quotas.memberQuotas[$0] }
        if let m = off.first {
            let others = off.dropFirst().map { "\($0): \(loads[$0] - quotas.memberQuotas[$0])" }.joined(separator: ", ")
            throw .assignmentFailed(
                "member \(m) holds \(loads[m]) slots, quota \(quotas.memberQuotas[m])"
                    + (others.isEmpty ? "" : "; also off by: \(others)"))
        }
        for p in 0..<partitionCount {
            var seen: [Int] = []
            for c in 0..<replicaCount {
                let m = table[p * replicaCount + c]
                guard m != Self.empty else { throw .assignmentFailed("partition \(p) has an empty slot") }
                let d = quotas.domainOfMember[Int(m)]
                if seen.contains(d) { throw .assignmentFailed("partition \(p) repeats a failure domain") }
                seen.append(d)
            }
        }
    }
}
