import BlobCore
import BlobServerSupport
import Foundation

/// The chunk server's own metrics, read from its storage at each scrape (see
/// `docs/operations.md`, "Metrics", for their meaning).
enum ChunkServerMetrics {
    /// Storage statistics exported as counters: statistic name → metric name.
    static let counters: [(String, String)] = [
        ("writes", "blob_chunkserver_chunk_writes_total"),
        ("bytesWritten", "blob_chunkserver_written_bytes_total"),
        ("writesAlreadyPresent", "blob_chunkserver_writes_already_present_total"),
        ("writeErrors", "blob_chunkserver_write_errors_total"),
        ("writesRefusedFull", "blob_chunkserver_writes_refused_full_total"),
        ("reads", "blob_chunkserver_chunk_reads_total"),
        ("bytesRead", "blob_chunkserver_read_bytes_total"),
        ("readsNotFound", "blob_chunkserver_reads_not_found_total"),
        ("deletes", "blob_chunkserver_chunk_deletes_total"),
        ("checksumFailures", "blob_chunkserver_checksum_failures_total"),
        ("quarantined", "blob_chunkserver_quarantined_chunks_total"),
        ("scrubbed", "blob_chunkserver_scrub_checked_chunks_total"),
        ("scrubFailures", "blob_chunkserver_scrub_errors_total"),
        ("forwardFailures", "blob_chunkserver_forward_failures_total"),
        ("copiesSent", "blob_chunkserver_copies_sent_total"),
        ("bytesCopied", "blob_chunkserver_copied_bytes_total"),
    ]

    static func register(_ metrics: ServerMetrics, storage: ChunkStorage, scrubProgressFile: String) {
        let mirrors = counters.map { ($0.0, CounterMirror(metrics.counter($0.1))) }
        metrics.onScrape {
            let stats = storage.snapshot
            metrics.gauge("blob_chunkserver_chunks").record(stats.chunkCount)
            metrics.gauge("blob_chunkserver_stored_bytes").record(stats.storedBytes)
            metrics.gauge("blob_chunkserver_logical_bytes").record(stats.logicalBytes)
            for (statistic, mirror) in mirrors { mirror.update(to: stats.counters[statistic] ?? 0) }
            if let (free, reserve) = try? await storage.space() {
                metrics.gauge("blob_chunkserver_disk_free_bytes").record(free)
                metrics.gauge("blob_chunkserver_disk_reserved_bytes").record(reserve)
            }
            let progress = ScrubProgress.load(from: scrubProgressFile)
            metrics.gauge("blob_chunkserver_scrub_pass_progress_ratio").record(progress.fractionDone)
            if let finished = progress.lastPassFinishedMilliseconds {
                metrics.gauge("blob_chunkserver_scrub_last_pass_finished_timestamp_seconds")
                    .record(Double(finished) / 1000)
            }
        }
    }

    /// Ready when the master knows this server (if it has one) and writes have room.
    static func readiness(storage: ChunkStorage, registration: MasterLink.Registration?) -> ReadinessCheck {
        {
            if let registration, !registration.isRegistered {
                return NotReady(reason: "master.unregistered", "this server is not registered with a master yet")
            }
            do {
                let (free, reserve) = try await storage.space()
                if free <= reserve {
                    return NotReady(
                        reason: "disk.full",
                        "the disk has \(free) bytes free, within the \(reserve)-byte reserve; free space or add servers"
                    )
                }
                return nil
            } catch {
                return NotReady(reason: "disk.unreadable", "cannot read the disk's free space: \(error)")
            }
        }
    }
}

extension ScrubProgress {
    /// How far the current pass is through the chunk ids (uniform hashes, so the share of the
    /// id space passed is the share of chunks checked); 0 between passes.
    var fractionDone: Double {
        guard let after, after.count >= 16, let prefix = UInt64(after.prefix(16), radix: 16) else { return 0 }
        return Double(prefix) / Double(UInt64.max)
    }
}
