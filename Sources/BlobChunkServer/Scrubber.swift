import BlobCore
import Foundation
import Logging
import ServiceLifecycle

/// Where the scrub is, kept in the data directory (`scrub-progress.json`) so that a restart
/// resumes the pass under way instead of starting it over (a large store at 32 MB/s takes days
/// per pass, longer than servers stay up), and waits out the interval from when the last pass
/// finished rather than from the restart.
struct ScrubProgress: Codable, Equatable, Sendable {
    /// The last chunk checked in the pass under way (hex); nil when no pass is under way.
    var after: String?
    /// When the last complete pass finished, milliseconds since 1970; nil before the first.
    var lastPassFinishedMilliseconds: Int64?

    static let fileName = "scrub-progress.json"

    /// The saved progress, or a fresh start when there is none or it cannot be read.
    static func load(from path: String) -> ScrubProgress {
        guard let data = FileManager.default.contents(atPath: path),
            let progress = try? JSONDecoder().decode(ScrubProgress.self, from: data)
        else { return ScrubProgress() }
        if let after = progress.after, (try? ChunkID(hex: after)) == nil { return ScrubProgress() }
        return progress
    }

    /// Written whole (temporary file, then rename). Not fsynced: a lost update costs re-checking
    /// one page of chunks, never a skipped one.
    func save(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try encoder.encode(self).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

/// Background verification of every stored chunk, throttled to a byte rate: each frame's
/// checksum is checked and its plain bytes are hashed against its id; a failure is
/// quarantined and counted exactly as a failed read is. Passes run in id order, one every
/// `passInterval`, resuming across restarts from ``ScrubProgress``. Ends on graceful shutdown.
struct Scrubber: Service {
    let storage: ChunkStorage
    let bytesPerSecond: Int64
    let passInterval: Duration
    /// Where ``ScrubProgress`` is kept.
    let progressFile: String
    let logger: Logger
    /// Waits between passes (wall time, kept across restarts) and the rate throttle run on it.
    let clock: any ServiceClock
    /// Chunks per inventory page; the progress is saved after each.
    var pageSize = 64

    func run() async throws {
        guard bytesPerSecond > 0 else {
            // Turned off: stay in the group until shutdown, since a service that returns early
            // would stop the whole server.
            try? await gracefulShutdown()
            return
        }
        do {
            try await cancelWhenGracefulShutdown {
                var progress = ScrubProgress.load(from: progressFile)
                while !Task.isCancelled {
                    if progress.after == nil, let finished = progress.lastPassFinishedMilliseconds {
                        // Wall time, since it must hold across restarts; clamped, so a clock that
                        // jumped neither skips passes nor waits longer than one interval.
                        let interval = passInterval.components.seconds * 1000
                        let wait = min(max(finished + interval - clock.wallMilliseconds, 0), interval)
                        if wait > 0 {
                            logger.info(
                                "next scrub pass in \(wait / 1000) s", metadata: ["last.finished.ms": "\(finished)"])
                            try await clock.sleep(for: .milliseconds(wait))
                        }
                    }
                    let resumed = progress.after != nil
                    let (checked, failed) = try await scrubOnePass(
                        after: progress.after.flatMap { try? ChunkID(hex: $0) }
                    ) { last in
                        progress.after = last.hex
                        save(progress)
                    }
                    progress = ScrubProgress(after: nil, lastPassFinishedMilliseconds: clock.wallMilliseconds)
                    save(progress)
                    logger.info(
                        "scrub pass finished",
                        metadata: [
                            "chunk.count": "\(checked)", "error.count": "\(failed)", "resumed": "\(resumed)",
                        ])
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: the pass resumes after the last saved page at the next start.
        }
    }

    private func save(_ progress: ScrubProgress) {
        do {
            try progress.save(to: progressFile)
        } catch {
            logger.warning("cannot save scrub progress", metadata: ["file": "\(progressFile)", "error": "\(error)"])
        }
    }

    /// Checks every chunk after `after` (all of them when nil) once, calling `pageDone` with the
    /// last chunk of each page; returns how many were checked and how many failed.
    func scrubOnePass(after start: ChunkID? = nil, pageDone: (ChunkID) -> Void = { _ in }) async throws -> (Int, Int) {
        var after = start
        var checked = 0
        var failed = 0
        while !Task.isCancelled {
            let page = try await storage.inventory(after: after, limit: pageSize)
            for (id, size) in page {
                let start = clock.elapsed
                if try await !storage.scrub(id) { failed += 1 }
                checked += 1
                // Throttle: this chunk may take size / rate seconds in all.
                let budget = Duration.nanoseconds(Int64(size) * 1_000_000_000 / bytesPerSecond)
                let spent = clock.elapsed - start
                if spent < budget { try await clock.sleep(for: budget - spent) }
            }
            guard let last = page.last else { break }
            after = last.0
            pageDone(last.0)
        }
        return (checked, failed)
    }
}

extension ChunkStorage {
    /// Verifies one stored chunk fully (checksum, decompression, SHA-256 against its id).
    /// Returns false when it failed and was quarantined; true when intact or gone meanwhile.
    func scrub(_ id: ChunkID) async throws -> Bool {
        guard let frame = try await readForScrub(id) else { return true }
        count("scrubbed")
        do throws(FrameError) {
            _ = try ChunkFrame.decode(frame, expectedID: id)
            return true
        } catch {
            count("checksumFailures")
            count("scrubFailures")
            try await quarantine(id, storedByteCount: frame.count, because: error.message)
            return false
        }
    }
}
