/// A stable, machine-readable error category. Every error the store reports carries one; the
/// HTTP APIs map it to a status code in one place, and clients rebuild the same code.
public struct BlobErrorCode: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    public let rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public var description: String { rawValue }

    /// The named object does not exist.
    public static let notFound = BlobErrorCode(rawValue: "notFound")
    /// The object exists and the request would create it again.
    public static let alreadyExists = BlobErrorCode(rawValue: "alreadyExists")
    /// The caller sent something malformed or out of range; retrying the same input fails again.
    public static let invalidArgument = BlobErrorCode(rawValue: "invalidArgument")
    /// An optimistic check failed: someone else changed the object first.
    public static let versionConflict = BlobErrorCode(rawValue: "versionConflict")
    /// The system is not in a state that allows the operation (e.g. removing a server that holds
    /// the only copy of a chunk); change the state first.
    public static let failedPrecondition = BlobErrorCode(rawValue: "failedPrecondition")
    /// The caller's ring or layout epoch is older than the server's.
    public static let staleEpoch = BlobErrorCode(rawValue: "staleEpoch")
    /// Leader-only work asked of a master that does not hold the leader lease now; another
    /// master (the leader, when the error names it) can do it.
    public static let notLeader = BlobErrorCode(rawValue: "notLeader")
    /// A command carried a leader term lower than one already seen: it came from a leader that
    /// has since been replaced, and nothing was done.
    public static let staleTerm = BlobErrorCode(rawValue: "staleTerm")
    /// Stored or transferred chunk bytes failed a checksum or hash check.
    public static let corruptChunk = BlobErrorCode(rawValue: "corruptChunk")
    /// Not enough live servers or failure domains to place or read the replicas asked for.
    public static let insufficientReplicas = BlobErrorCode(rawValue: "insufficientReplicas")
    /// A dependency is down or shutting down; retrying later may succeed.
    public static let unavailable = BlobErrorCode(rawValue: "unavailable")
    /// The operation's deadline passed.
    public static let timeout = BlobErrorCode(rawValue: "timeout")
    /// A local file or device operation failed.
    public static let io = BlobErrorCode(rawValue: "io")
    /// A broken invariant inside the store: a bug to report.
    public static let `internal` = BlobErrorCode(rawValue: "internal")

    /// Whether an operation that failed with this code may succeed if simply retried.
    public var isRetryable: Bool {
        self == .unavailable || self == .timeout || self == .staleEpoch || self == .notLeader
    }
}

/// An error with a stable category, a stable fine-grained reason, and a message for people.
///
/// Each concern of the core has its own typed error (``ChunkIDError``, ``FrameError``,
/// ``ChunkerError``, ``RingError``); all of them conform, so the HTTP layers can turn any of
/// them into the same JSON body and status code.
public protocol CodedError: Error, CustomStringConvertible {
    /// The coarse category that decides the HTTP status and whether to retry.
    var code: BlobErrorCode { get }
    /// A stable identifier of the exact failure, such as `frame.badMagic`.
    var reason: String { get }
    /// What happened, to which object, and what to do next.
    var message: String { get }
}

extension CodedError {
    public var description: String { "\(code) (\(reason)): \(message)" }
}

/// The error that crosses process boundaries: a code, a reason, a message, the node that
/// reported it, and the error underneath when there is one.
public struct BlobError: CodedError, Sendable {
    public var code: BlobErrorCode
    public var reason: String
    public var message: String
    /// The id of the node that reported the error, when it came from a remote node.
    public var node: String?
    /// The error that caused this one, if any.
    public var underlying: (any Error & Sendable)?
    /// Where the error was raised, for logs.
    public var file: String
    /// See ``file``.
    public var line: Int

    public init(
        _ code: BlobErrorCode,
        reason: String? = nil,
        _ message: String,
        node: String? = nil,
        underlying: (any Error & Sendable)? = nil,
        file: String = #fileID,
        line: Int = #line
    ) {
        self.code = code
        self.reason = reason ?? code.rawValue
        self.message = message
        self.node = node
        self.underlying = underlying
        self.file = file
        self.line = line
    }

    /// Wraps any coded error, keeping its code, reason and message.
    public init(_ error: some CodedError & Sendable, node: String? = nil, file: String = #fileID, line: Int = #line) {
        self.init(
            error.code, reason: error.reason, error.message, node: node, underlying: error, file: file, line: line)
    }
}
