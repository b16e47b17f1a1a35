import BlobCore
import BlobServerSupport
import Synchronization

/// Failed and retried metadata transactions, counted where the store runs them.
public final class DatabaseTally: Sendable {
    private let counts = Mutex<(retries: Int64, errors: Int64)>((0, 0))

    public init() {}

    func retried() { counts.withLock { $0.retries += 1 } }
    func failed() { counts.withLock { $0.errors += 1 } }

    public var retries: Int64 { counts.withLock { $0.retries } }
    public var errors: Int64 { counts.withLock { $0.errors } }
}

/// What garbage collection and fsck found when they last ran on this master, for metrics and
/// the status page.
final class OperationsRecord: Sendable {
    struct State {
        var gcFreedBytes: Int64 = 0
        var gcDeletedChunks: Int64 = 0
        /// Wall milliseconds of the last collection that deleted (not a dry run).
        var gcLastRun: Int64?
        var lastFsck: FsckReport?
        var fsckLastRun: Int64?
    }
    private let state = Mutex(State())

    var current: State { state.withLock { $0 } }

    func collected(_ report: GCReport, at milliseconds: Int64) {
        guard !report.dryRun else { return }
        state.withLock {
            $0.gcFreedBytes += report.deletedBytes
            $0.gcDeletedChunks += report.deletedChunks
            $0.gcLastRun = milliseconds
        }
    }

    func checked(_ report: FsckReport, at milliseconds: Int64) {
        state.withLock {
            $0.lastFsck = report
            $0.fsckLastRun = milliseconds
        }
    }
}

/// The master's own metrics, read from its state at each scrape (see `docs/operations.md`,
/// "Metrics", for their meaning).
struct MasterMetrics {
    let metrics: ServerMetrics
    let membership: Membership
    let election: LeaderElection
    let repairer: Repairer
    let rebalancer: Rebalancer
    let store: MetadataStore
    let operations: OperationsRecord

    func register() {
        let metrics = self.metrics
        let repairPasses = CounterMirror(metrics.counter("blob_master_repair_passes_total"))
        let repairedChunks = CounterMirror(metrics.counter("blob_master_repair_copied_chunks_total"))
        let repairedBytes = CounterMirror(metrics.counter("blob_master_repair_copied_bytes_total"))
        let repairFailures = CounterMirror(metrics.counter("blob_master_repair_failures_total"))
        let databaseRetries = CounterMirror(metrics.counter("blob_master_database_retries_total"))
        let databaseErrors = CounterMirror(metrics.counter("blob_master_database_errors_total"))
        let gcFreed = CounterMirror(metrics.counter("blob_master_gc_freed_bytes_total"))
        let gcDeleted = CounterMirror(metrics.counter("blob_master_gc_deleted_chunks_total"))
        let (membership, election, repairer, rebalancer, store, operations) = (
            self.membership, self.election, self.repairer, self.rebalancer, self.store, self.operations
        )
        metrics.onScrape {
            let status = await membership.status()
            let states: [ServerState] = [.alive, .suspect, .down, .unknown]
            for state in states {
                metrics.gauge("blob_master_servers", [("state", state.rawValue)])
                    .record(status.servers.count { $0.state == state })
            }
            metrics.gauge("blob_master_servers_in_ring").record(status.servers.count(where: \.inRing))
            metrics.gauge("blob_master_ring_epoch").record(Int64(status.ringEpoch ?? 0))
            let term = await election.currentTerm
            metrics.gauge("blob_master_is_leader").record(term == nil ? 0 : 1)
            metrics.gauge("blob_master_leader_term").record(term?.term ?? 0)
            let repair = await repairer.activity
            repairPasses.update(to: repair.passes)
            repairedChunks.update(to: repair.copiedChunks)
            repairedBytes.update(to: repair.copiedBytes)
            repairFailures.update(to: repair.failures)
            metrics.gauge("blob_master_under_replicated_chunks").record(repair.underReplicatedChunks ?? 0)
            metrics.gauge("blob_master_repair_queue_chunks").record(repair.queuedChunks ?? 0)
            let rebalance = await rebalancer.status
            metrics.gauge("blob_master_rebalance_running").record(rebalance.state == .running ? 1 : 0)
            metrics.gauge("blob_master_rebalance_planned_bytes").record(rebalance.plannedBytes)
            metrics.gauge("blob_master_rebalance_moved_bytes").record(rebalance.movedBytes)
            let record = operations.current
            gcFreed.update(to: record.gcFreedBytes)
            gcDeleted.update(to: record.gcDeletedChunks)
            if let last = record.gcLastRun {
                metrics.gauge("blob_master_gc_last_run_timestamp_seconds").record(Double(last) / 1000)
            }
            if let fsck = record.lastFsck, let at = record.fsckLastRun {
                metrics.gauge("blob_master_fsck_misplaced_chunks").record(fsck.misplaced)
                metrics.gauge("blob_master_fsck_under_replicated_chunks").record(fsck.underReplicated)
                metrics.gauge("blob_master_fsck_lost_chunks").record(fsck.lost)
                metrics.gauge("blob_master_fsck_last_run_timestamp_seconds").record(Double(at) / 1000)
            }
            databaseRetries.update(to: store.tally.retries)
            databaseErrors.update(to: store.tally.errors)
        }
    }

    /// Ready when the metadata database answers a query.
    static func readiness(_ store: MetadataStore) -> ReadinessCheck {
        {
            do {
                _ = try await store.database.query(SQLStatement("SELECT 1"))
                return nil
            } catch {
                return NotReady(
                    reason: "metadata.unreachable", "the metadata database does not answer: \(error)")
            }
        }
    }
}
