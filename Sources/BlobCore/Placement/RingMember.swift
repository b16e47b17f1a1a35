/// A chunk server as the ring sees it.
public struct RingMember: Sendable, Hashable, Codable {
    /// The server's stable id.
    public var id: String
    /// The failure zone (rack, room, host group) the server is in.
    public var zone: String
    /// Relative capacity: a server of weight 2 gets twice the replicas of one of weight 1
    /// (unless its failure domain is capped at one replica per partition). Zero drains it.
    public var weight: Double

    public init(id: String, zone: String, weight: Double) {
        self.id = id
        self.zone = zone
        self.weight = weight
    }
}

/// What the R replicas of a partition must not share.
public enum FailureDomain: String, Sendable, Hashable, Codable {
    /// Replicas on R distinct zones (and so on R distinct servers).
    case zone
    /// Replicas on R distinct servers; zones are not considered.
    case server
}

/// How a ring chooses its ``FailureDomain``.
public enum FailureDomainPolicy: String, Sendable, Hashable, Codable {
    /// Zones when the members with weight span at least R zones, servers otherwise.
    case automatic
    /// Always zones; a membership with fewer than R zones is refused.
    case zone
    /// Always servers.
    case server
}

/// Why a ring cannot be built or read.
public enum RingError: CodedError, Sendable, Equatable {
    /// A member's id, zone or weight is unusable, or ids repeat.
    case invalidMember(String)
    /// Partition power or replica count out of range.
    case invalidParameters(String)
    /// Fewer failure domains with weight than replicas.
    case insufficientFailureDomains(needed: Int, available: Int, domain: FailureDomain)
    /// A change names a member the ring does not have.
    case unknownMember(String)
    /// A change was prepared against another epoch than the current one.
    case epochMismatch(expected: UInt64, actual: UInt64)
    /// A serialised ring is malformed or inconsistent.
    case malformed(String)
    /// The assignment could not meet every quota: a bug, reported with its inputs.
    case assignmentFailed(String)

    public var code: BlobErrorCode {
        switch self {
        case .invalidMember, .invalidParameters, .unknownMember, .malformed: .invalidArgument
        case .insufficientFailureDomains: .insufficientReplicas
        case .epochMismatch: .staleEpoch
        case .assignmentFailed: .internal
        }
    }

    public var reason: String {
        switch self {
        case .invalidMember: "ring.invalidMember"
        case .invalidParameters: "ring.invalidParameters"
        case .insufficientFailureDomains: "ring.insufficientFailureDomains"
        case .unknownMember: "ring.unknownMember"
        case .epochMismatch: "ring.epochMismatch"
        case .malformed: "ring.malformed"
        case .assignmentFailed: "ring.assignmentFailed"
        }
    }

    public var message: String {
        switch self {
        case .invalidMember(let what), .invalidParameters(let what), .malformed(let what):
            return what
        case .insufficientFailureDomains(let needed, let available, let domain):
            let unit = domain == .zone ? "zones" : "servers"
            return "\(needed) replicas need \(needed) \(unit) with weight, the ring has \(available); "
                + "add \(unit) or lower the replica count"
        case .unknownMember(let id):
            return "no server \(id) in the ring; list members with `blobctl cluster status`"
        case .epochMismatch(let expected, let actual):
            return "the change was prepared for ring epoch \(expected) but the ring is at epoch \(actual); "
                + "look at the current ring and prepare the change again"
        case .assignmentFailed(let what):
            return "the ring could not place every replica (\(what)); this is a bug, please report it"
        }
    }
}
