import Foundation
import Synchronization

/// The last errors a server met (5xx answers, failed background passes), newest first, for
/// the master's status page; at most ``capacity``.
public final class RecentErrors: Sendable {
    public struct Entry: Sendable, Equatable {
        public var milliseconds: Int64
        public var message: String
    }

    public static let capacity = 50
    private let entries = Mutex<[Entry]>([])

    public init() {}

    public func note(_ message: String) {
        let entry = Entry(milliseconds: Int64(Date().timeIntervalSince1970 * 1000), message: message)
        entries.withLock {
            $0.insert(entry, at: 0)
            if $0.count > Self.capacity { $0.removeLast($0.count - Self.capacity) }
        }
    }

    public var all: [Entry] { entries.withLock { $0 } }
}
