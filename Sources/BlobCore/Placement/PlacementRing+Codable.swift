import Foundation

/// The JSON form every process exchanges: the table travels as base64 of little-endian
/// 16-bit member indices, so the master, servers and clients hold exactly the same ring.
extension PlacementRing: Codable {
    static let format = "blobstore-ring/v1"

    enum CodingKeys: String, CodingKey {
        case format, epoch, partitionPower, replicaCount, failureDomain, members, table
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(Self.format, forKey: .format)
        try c.encode(epoch, forKey: .epoch)
        try c.encode(partitionPower, forKey: .partitionPower)
        try c.encode(replicaCount, forKey: .replicaCount)
        try c.encode(failureDomain, forKey: .failureDomain)
        try c.encode(members, forKey: .members)
        var bytes = [UInt8]()
        bytes.reserveCapacity(table.count * 2)
        for m in table {
            bytes.append(UInt8(truncatingIfNeeded: m))
            bytes.append(UInt8(truncatingIfNeeded: m >> 8))
        }
        try c.encode(Data(bytes).base64EncodedString(), forKey: .table)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let format = try c.decode(String.self, forKey: .format)
        guard format == Self.format else {
            throw RingError.malformed("ring format \"\(format)\" is not \(Self.format); upgrade this program")
        }
        let epoch = try c.decode(UInt64.self, forKey: .epoch)
        let power = try c.decode(Int.self, forKey: .partitionPower)
        let replicas = try c.decode(Int.self, forKey: .replicaCount)
        let domain = try c.decode(FailureDomain.self, forKey: .failureDomain)
        let members = try c.decode([RingMember].self, forKey: .members)
        let sorted = try Self.validated(members, replicaCount: replicas, partitionPower: power)
        guard sorted == members else { throw RingError.malformed("ring members are not sorted by id") }
        guard let data = Data(base64Encoded: try c.decode(String.self, forKey: .table)),
            data.count == (1 << power) * replicas * 2
        else { throw RingError.malformed("ring table is not \((1 << power) * replicas) base64 16-bit entries") }
        var table = [UInt16](repeating: 0, count: data.count / 2)
        data.withUnsafeBytes { raw in
            for i in table.indices {
                table[i] = UInt16(raw[2 * i]) | UInt16(raw[2 * i + 1]) << 8
            }
        }
        for p in 0..<(1 << power) {
            var domains = Set<String>()
            for c in 0..<replicas {
                let m = Int(table[p * replicas + c])
                guard m < members.count else {
                    throw RingError.malformed("ring table names member \(m) of \(members.count)")
                }
                let key = domain == .zone ? members[m].zone : members[m].id
                guard domains.insert(key).inserted else {
                    throw RingError.malformed("partition \(p) repeats failure domain \(key)")
                }
            }
        }
        self.init(
            epoch: epoch, partitionPower: power, replicaCount: replicas, failureDomain: domain,
            members: members, table: table)
    }
}
