import BlobCore
import Foundation
import Synchronization

/// The highest leader term this chunk server has seen, kept on disk: the storage-side fence.
///
/// Every command a leader sends (copy, delete) carries its term. A term lower than the highest
/// seen comes from a leader that has since been replaced (paused, cut off, or slow to notice),
/// and is refused before anything is done. A higher term is written to `DATA/leader-term`
/// (atomically and durably) before the command runs, so a restart does not forget it.
final class LeaderTermGuard: Sendable {
    static let header = "x-blob-leader-term"
    private let highest: Mutex<Int64>
    private let path: String

    init(dataDirectory: String) {
        path = dataDirectory + "/leader-term"
        let stored = (try? String(contentsOfFile: path, encoding: .utf8))
            .flatMap { Int64($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        highest = Mutex(stored ?? 0)
    }

    var highestSeen: Int64 { highest.withLock { $0 } }

    /// Checks a command's term header; throws `staleTerm` for a lower term than one seen, and
    /// `invalidArgument` for a missing or malformed one.
    func admit(_ header: String?) throws {
        guard let header, let term = Int64(header), term > 0 else {
            throw BlobError(
                .invalidArgument, reason: "leader.termMissing",
                "a copy or delete must carry the leader's term in \(Self.header); only a master leader sends them")
        }
        try highest.withLock { highest in
            guard term >= highest else {
                throw BlobError(
                    .staleTerm, reason: "leader.staleTerm",
                    "leader term \(term) is older than term \(highest), already seen here; the command was refused")
            }
            guard term > highest else { return }
            try Self.persist(term, to: path)
            highest = term
        }
    }

    /// Write to a temporary file, fsync it, rename it over the old one, fsync the directory.
    private static func persist(_ term: Int64, to path: String) throws {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw ioError("open \(temporary)") }
        let text = Array("\(term)\n".utf8)
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == text.count, synced == 0 else { throw ioError("write \(temporary)") }
        guard rename(temporary, path) == 0 else { throw ioError("rename \(temporary)") }
        let directory = open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            _ = fsync(directory)
            close(directory)
        }
    }

    private static func ioError(_ what: String) -> BlobError {
        BlobError(.io, reason: "leader.termWrite", "cannot record the leader term: \(what): errno \(errno)")
    }
}
