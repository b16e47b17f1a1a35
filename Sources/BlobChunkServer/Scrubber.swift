import BlobCore
import Logging
import ServiceLifecycle

/// Background verification of every stored chunk, throttled to a byte rate: each frame's
/// checksum is checked and its plain bytes are hashed against its id; a failure is
/// quarantined and counted exactly as a failed read is. Ends on graceful shutdown.
struct Scrubber<C: Clock>: Service where C.Duration == Duration {
    let storage: ChunkStorage
    let bytesPerSecond: Int64
    let passInterval: Duration
    let logger: Logger
    let clock: C

    func run() async throws {
        guard bytesPerSecond > 0 else {
            // Turned off: stay in the group until shutdown, since a service that returns early
            // would stop the whole server.
            try? await gracefulShutdown()
            return
        }
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    let (checked, failed) = try await scrubOnePass()
                    logger.info("scrub pass finished", metadata: ["chunk.count": "\(checked)", "error.count": "\(failed)"])
                    try await clock.sleep(for: passInterval)
                }
            }
        } catch is CancellationError {
            // Graceful shutdown: an unfinished pass simply starts again at the next start.
        }
    }

    /// Checks every chunk once; returns how many were checked and how many failed.
    func scrubOnePass() async throws -> (Int, Int) {
        var after: ChunkID?
        var checked = 0
        var failed = 0
        while !Task.isCancelled {
            let page = try await storage.inventory(after: after, limit: 256)
            for (id, size) in page {
                let start = clock.now
                if try await !storage.scrub(id) { failed += 1 }
                checked += 1
                // Throttle: this chunk may take size / rate seconds in all.
                let budget = Duration.nanoseconds(Int64(size) * 1_000_000_000 / bytesPerSecond)
                let spent = start.duration(to: clock.now)
                if spent < budget { try await clock.sleep(for: budget - spent) }
            }
            guard let last = page.last else { break }
            after = last.0
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
