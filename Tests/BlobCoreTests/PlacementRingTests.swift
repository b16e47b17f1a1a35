import BlobCore
import Foundation
import Testing

@Suite("Placement ring")
struct PlacementRingTests {
    static func equal(_ n: Int, zones: Int? = nil) -> [RingMember] {
        (0..<n).map { RingMember(id: "cs-\($0)", zone: "z\($0 % (zones ?? n))", weight: 1) }
    }

    /// Checks the invariants every ring must hold: R distinct failure domains per partition and
    /// every member within one slot of its exact weighted (capped) share.
    static func expectValid(_ ring: PlacementRing, sourceLocation: SourceLocation = #_sourceLocation) {
        var counts = [Int](repeating: 0, count: ring.members.count)
        for p in 0..<ring.partitionCount {
            let replicas = ring.replicaIndices(forPartition: p).map { ring.members[Int($0)] }
            #expect(replicas.count == ring.replicaCount, sourceLocation: sourceLocation)
            let keys = replicas.map { ring.failureDomain == .zone ? $0.zone : $0.id }
            #expect(
                Set(keys).count == ring.replicaCount, "partition \(p) repeats a domain", sourceLocation: sourceLocation)
            for m in ring.replicaIndices(forPartition: p) { counts[Int(m)] += 1 }
        }
        #expect(counts == ring.slotCounts, sourceLocation: sourceLocation)
        let shares = idealShares(ring)
        let slots = Double(ring.partitionCount * ring.replicaCount)
        for (i, share) in shares.enumerated() {
            #expect(
                abs(Double(counts[i]) - share * slots) <= 1.0 + 1e-6,
                "member \(ring.members[i].id) holds \(counts[i]), ideal \(share * slots)",
                sourceLocation: sourceLocation)
        }
    }

    /// Water-filled ideal shares, computed independently of the ring's own code.
    static func idealShares(_ ring: PlacementRing) -> [Double] {
        let key: (RingMember) -> String = { ring.failureDomain == .zone ? $0.zone : $0.id }
        var domainWeight: [String: Double] = [:]
        for m in ring.members { domainWeight[key(m), default: 0] += m.weight }
        let cap = 1.0 / Double(ring.replicaCount)
        var capped = Set<String>()
        var share: [String: Double] = [:]
        while true {
            let free = domainWeight.filter { !capped.contains($0.key) }
            let rest = 1.0 - Double(capped.count) * cap
            let sum = free.values.reduce(0, +)
            var changed = false
            for (d, w) in free where sum > 0 {
                share[d] = rest * w / sum
                if share[d]! > cap + 1e-12 {
                    capped.insert(d)
                    share[d] = cap
                    changed = true
                }
            }
            if !changed { break }
        }
        return ring.members.map { m in
            let w = domainWeight[key(m)]!
            return w > 0 ? (share[key(m)] ?? 0) * m.weight / w : 0
        }
    }

    /// The least number of replica slots any ring must move between two rings' ideal shares.
    static func idealMoves(_ a: PlacementRing, _ b: PlacementRing) -> Double {
        let slots = Double(a.partitionCount * a.replicaCount)
        let before = Dictionary(uniqueKeysWithValues: zip(a.members.map(\.id), idealShares(a)))
        return zip(b.members, idealShares(b)).reduce(0) { total, pair in
            total + max(0, pair.1 - (before[pair.0.id] ?? 0)) * slots
        }
    }

    @Test("building twice gives the same table, and JSON round-trips it exactly")
    func determinismAndJSON() throws {
        let members = Self.equal(7, zones: 4)
        let a = try PlacementRing.build(members: members, partitionPower: 10)
        let b = try PlacementRing.build(members: members.reversed(), partitionPower: 10)
        #expect(a == b)
        let next = try a.adding(RingMember(id: "cs-new", zone: "z1", weight: 2))
        let data = try JSONEncoder().encode(next)
        let decoded = try JSONDecoder().decode(PlacementRing.self, from: data)
        #expect(decoded == next)
        #expect(decoded.epoch == 2)
        #expect(next.failureDomain == .zone)
    }

    @Test("a table naming a missing member or repeating a domain is refused when decoded")
    func decodeRejectsBadTables() throws {
        let ring = try PlacementRing.build(members: Self.equal(3), partitionPower: 2)
        var json = try JSONSerialization.jsonObject(with: JSONEncoder().encode(ring)) as! [String: Any]
        // Partition 0 with replicas (0, 0, 0): a repeated server.
        var bytes = [UInt8](repeating: 0, count: 4 * 3 * 2)
        json["table"] = Data(bytes).base64EncodedString()
        #expect(throws: RingError.self) {
            try JSONDecoder().decode(PlacementRing.self, from: JSONSerialization.data(withJSONObject: json))
        }
        bytes[0] = 9
        json["table"] = Data(bytes).base64EncodedString()
        #expect(throws: RingError.self) {
            try JSONDecoder().decode(PlacementRing.self, from: JSONSerialization.data(withJSONObject: json))
        }
        json["table"] = "AAAA"
        #expect(throws: RingError.self) {
            try JSONDecoder().decode(PlacementRing.self, from: JSONSerialization.data(withJSONObject: json))
        }
    }

    @Test("a chunk's partition is the top bits of its id")
    func partitionOfID() throws {
        let ring = try PlacementRing.build(members: Self.equal(3), partitionPower: 8)
        let id = try ChunkID(hex: "ab" + String(repeating: "0", count: 62))
        #expect(ring.partition(for: id) == 0xAB)
        #expect(ring.replicaIDs(for: id).count == 3)
        #expect(Set(ring.replicaIDs(for: id)).count == 3)
    }

    @Test("adding one of N equal servers moves exactly its share", arguments: [3, 5, 10, 20])
    func addOneEqual(n: Int) throws {
        let ring = try PlacementRing.build(members: Self.equal(n), partitionPower: 12)
        Self.expectValid(ring)
        let grown = try ring.adding(RingMember(id: "cs-new", zone: "znew", weight: 1))
        Self.expectValid(grown)
        let moved = Double(ring.movedReplicaCount(to: grown))
        let slots = Double(ring.partitionCount * 3)
        #expect(abs(moved / slots - 1.0 / Double(n + 1)) < 0.002, "moved \(moved / slots)")
    }

    @Test("a weight that exceeds one replica per partition is capped, and doubling it then moves nothing")
    func capped() throws {
        let ring = try PlacementRing.build(members: Self.equal(3), partitionPower: 10)
        let doubled = try ring.settingWeight(2, of: "cs-0")
        Self.expectValid(doubled)
        #expect(ring.movedReplicaCount(to: doubled) == 0)
    }

    @Test("draining a server to weight 0 empties it, and removing it then moves nothing")
    func drain() throws {
        let ring = try PlacementRing.build(members: Self.equal(5), partitionPower: 10)
        let drained = try ring.settingWeight(0, of: "cs-4")
        Self.expectValid(drained)
        #expect(drained.slotCounts[drained.members.firstIndex { $0.id == "cs-4" }!] == 0)
        let removed = try drained.removing("cs-4")
        #expect(drained.movedReplicaCount(to: removed) == 0)
        #expect(removed.epoch == 3)
    }

    @Test("with fewer zones than replicas the ring falls back to distinct servers; forced zones are refused")
    func failureDomains() throws {
        let twoZones = Self.equal(6, zones: 2)
        let ring = try PlacementRing.build(members: twoZones, partitionPower: 8)
        #expect(ring.failureDomain == .server)
        Self.expectValid(ring)
        #expect(throws: RingError.insufficientFailureDomains(needed: 3, available: 2, domain: .zone)) {
            try PlacementRing.build(members: twoZones, partitionPower: 8, failureDomain: .zone)
        }
        // Growing to a third zone switches to zone placement and repairs every violation.
        let third = try ring.adding(RingMember(id: "cs-z", zone: "z9", weight: 1))
        #expect(third.failureDomain == .zone)
        Self.expectValid(third)
    }

    @Test("bad members and parameters get typed errors")
    func validation() {
        #expect(throws: RingError.self) { try PlacementRing.build(members: Self.equal(2)) }
        #expect(throws: RingError.self) {
            try PlacementRing.build(members: Self.equal(3) + [RingMember(id: "cs-0", zone: "z", weight: 1)])
        }
        #expect(throws: RingError.self) {
            try PlacementRing.build(members: Self.equal(3) + [RingMember(id: "x", zone: "z", weight: -1)])
        }
        #expect(throws: RingError.self) {
            try PlacementRing.build(members: Self.equal(3) + [RingMember(id: "x", zone: "z", weight: .nan)])
        }
        #expect(throws: RingError.self) { try PlacementRing.build(members: Self.equal(3), partitionPower: 30) }
        #expect(throws: RingError.self) { try PlacementRing.build(members: Self.equal(3), replicaCount: 0) }
        #expect(throws: RingError.unknownMember("nope")) {
            try PlacementRing.build(members: Self.equal(3)).removing("nope")
        }
    }

    @Test(
        "random membership histories keep every invariant and move close to the minimum",
        arguments: Self.seeds)
    func randomHistories(seed: UInt64) throws {
        var rng = SplitMix64(seed: seed)
        let zones = Int.random(in: 1...5, using: &rng)
        var members = (0..<Int.random(in: 4...12, using: &rng)).map {
            RingMember(
                id: "s\($0)", zone: "z\(Int.random(in: 0..<zones, using: &rng))",
                weight: Double(Int.random(in: 1...4, using: &rng)))
        }
        var ring = try PlacementRing.build(members: members, partitionPower: 10)
        Self.expectValid(ring)
        var nextID = members.count
        for step in 0..<12 {
            switch Int.random(in: 0..<3, using: &rng) {
            case 0:
                members.append(
                    RingMember(
                        id: "s\(nextID)", zone: "z\(Int.random(in: 0..<(zones + 1), using: &rng))",
                        weight: Double(Int.random(in: 1...4, using: &rng))))
                nextID += 1
            case 1 where members.count > 4:
                members.remove(at: Int.random(in: 0..<members.count, using: &rng))
            default:
                let i = Int.random(in: 0..<members.count, using: &rng)
                members[i].weight = Double(Int.random(in: 0...4, using: &rng))
            }
            let attempt = Result { () throws(RingError) in try ring.next(members: members) }
            if case .failure(let error) = attempt, case .insufficientFailureDomains = error {
                continue  // the history drew too few weighted servers; the ring refuses, as it should
            }
            let next = try attempt.get()
            Self.expectValid(next)
            #expect(next.epoch == ring.epoch + 1)
            let moved = Double(ring.movedReplicaCount(to: next))
            let ideal = Self.idealMoves(ring, next)
            // A switch of failure domain (zones <-> servers) may force extra moves. So may a domain
            // at or near its cap (a replica in every partition, or nearly) before or after: the
            // change then couples domains, and the previous table may already hold partitions that
            // must change twice (the ideal counts shares only, not the table it starts from).
            // Otherwise the move is within 10% of the ideal.
            let slots = Double(ring.partitionCount)
            let tolerance =
                ring.failureDomain != next.failureDomain
                ? Double.infinity
                : (Self.hasNearlyCappedDomain(ring) || Self.hasNearlyCappedDomain(next)) ? 1.5 : 1.10
            #expect(
                moved <= ideal * tolerance + slots * 0.02, "seed \(seed) step \(step): moved \(moved), ideal \(ideal)")
            ring = next
        }
    }

    static func hasNearlyCappedDomain(_ ring: PlacementRing) -> Bool {
        let key: (RingMember) -> String = { ring.failureDomain == .zone ? $0.zone : $0.id }
        var share: [String: Double] = [:]
        for (m, s) in zip(ring.members, idealShares(ring)) { share[key(m), default: 0] += s }
        return share.values.contains { $0 >= 0.85 / Double(ring.replicaCount) }
    }

    static var seeds: [UInt64] {
        if let s = ProcessInfo.processInfo.environment["BLOB_TEST_SEED"], let v = UInt64(s) { return [v] }
        return Array(1...12)
    }
}
