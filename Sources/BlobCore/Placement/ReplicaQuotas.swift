/// The number of replica slots each member should hold: its weighted share of all
/// `partitionCount × replicaCount` slots, with no failure domain above one replica per
/// partition (the excess water-filled onto the others), rounded to whole slots so that the
/// quotas add up exactly.
struct ReplicaQuotas {
    /// Domain index of each member.
    let domainOfMember: [Int]
    /// Quota of each member, in slots.
    let memberQuotas: [Int]
    /// Quota of each domain, in slots; never above the partition count.
    let domainQuotas: [Int]
    let domainCount: Int

    init(
        members: [RingMember], failureDomain: FailureDomain, partitionCount: Int, replicaCount: Int
    ) throws(RingError) {
        // Domains are numbered in the sorted order of their keys: the same in every process.
        let keys = members.map { failureDomain == .zone ? $0.zone : $0.id }
        let sortedKeys = Array(Set(keys)).sorted()
        var indexOfKey: [String: Int] = [:]
        for (i, k) in sortedKeys.enumerated() { indexOfKey[k] = i }
        let domainOf = keys.map { indexOfKey[$0]! }
        domainOfMember = domainOf
        domainCount = sortedKeys.count

        var domainWeights = [Double](repeating: 0, count: domainCount)
        for (m, member) in members.enumerated() { domainWeights[domainOf[m]] += member.weight }
        let weighted = domainWeights.filter { $0 > 0 }.count
        guard weighted >= replicaCount else {
            throw .insufficientFailureDomains(needed: replicaCount, available: weighted, domain: failureDomain)
        }
        let totalSlots = partitionCount * replicaCount
        let domainQuotas = Self.waterFill(weights: domainWeights, total: totalSlots, cap: partitionCount)
        self.domainQuotas = domainQuotas

        var quotas = [Int](repeating: 0, count: members.count)
        for d in 0..<sortedKeys.count {
            let inDomain = (0..<members.count).filter { domainOf[$0] == d }
            let split = Self.apportion(
                weights: inDomain.map { members[$0].weight }, total: domainQuotas[d], cap: Int.max)
            for (i, m) in inDomain.enumerated() { quotas[m] = split[i] }
        }
        memberQuotas = quotas
    }

    /// Integer quotas proportional to weight, none above `cap`, summing to `total`.
    /// Caps are found by water-filling; the rest is apportioned by largest remainder.
    static func waterFill(weights: [Double], total: Int, cap: Int) -> [Int] {
        var capped = [Bool](repeating: false, count: weights.count)
        while true {
            let remaining = total - capped.filter { $0 }.count * cap
            let free = weights.indices.filter { !capped[$0] && weights[$0] > 0 }
            let sum = free.reduce(0.0) { $0 + weights[$1] }
            var changed = false
            for i in free where Double(remaining) * weights[i] / sum > Double(cap) * (1 + 1e-12) {
                capped[i] = true
                changed = true
            }
            if !changed { break }
        }
        let remaining = total - capped.filter { $0 }.count * cap
        let freeWeights = weights.indices.map { capped[$0] ? 0 : weights[$0] }
        let split = apportion(weights: freeWeights, total: remaining, cap: cap)
        return weights.indices.map { capped[$0] ? cap : split[$0] }
    }

    /// Hamilton's largest-remainder apportionment of `total` by `weights`, never above `cap`;
    /// ties go to the lower index, so the result is the same everywhere.
    static func apportion(weights: [Double], total: Int, cap: Int) -> [Int] {
        let sum = weights.reduce(0, +)
        guard sum > 0, total > 0 else { return [Int](repeating: 0, count: weights.count) }
        let exact = weights.map { Double(total) * $0 / sum }
        var quotas = exact.map { min(cap, Int($0.rounded(.down))) }
        var left = total - quotas.reduce(0, +)
        let order = weights.indices.sorted { a, b in
            let fa = exact[a] - exact[a].rounded(.down)
            let fb = exact[b] - exact[b].rounded(.down)
            return fa != fb ? fa > fb : a < b
        }
        var pass = 0
        while left > 0 && pass < 4 {
            for i in order where left > 0 && weights[i] > 0 && quotas[i] < cap {
                quotas[i] += 1
                left -= 1
            }
            pass += 1
        }
        return quotas
    }
}
