public import BlobCore
import Synchronization

/// A ``ServiceClock`` that moves only when a test says so.
///
/// `advance(by:)` moves the monotonic and the wall reading together and wakes every sleeper
/// whose deadline has come, earliest first. The same clock can be the metadata database's
/// (``databaseClock``), so liveness in memory and times in the database move as one.
public final class ManualClock: ServiceClock {
    private struct Sleeper {
        var id: UInt64
        var deadline: Duration
        var continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var elapsed: Duration = .zero
        var wallOrigin: Int64
        var nextID: UInt64 = 0
        var sleepers: [Sleeper] = []
    }

    private let state: Mutex<State>

    /// A clock whose wall reading starts at `wallMilliseconds` (default: a fixed day in 2026,
    /// so stored times are the same in every run).
    public init(wallMilliseconds: Int64 = 1_790_000_000_000) {
        state = Mutex(State(wallOrigin: wallMilliseconds))
    }

    public var elapsed: Duration { state.withLock { $0.elapsed } }

    /// How many tasks are asleep on this clock: a test waits for a service to be asleep before
    /// it advances the clock past the service's deadline.
    public var sleeperCount: Int { state.withLock { $0.sleepers.count } }

    public var wallMilliseconds: Int64 { state.withLock { $0.wallOrigin + $0.elapsed.wholeMilliseconds } }

    /// The wall reading as a database clock (`MetadataLocation.withStore(clock:)`).
    public var databaseClock: @Sendable () -> Int64 { { [self] in self.wallMilliseconds } }

    public func sleep(for duration: Duration) async throws {
        let id = state.withLock { state -> UInt64 in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let wakeNow = state.withLock { state -> Bool in
                    if Task.isCancelled || duration <= .zero { return true }
                    state.sleepers.append(
                        Sleeper(id: id, deadline: state.elapsed + duration, continuation: continuation))
                    return false
                }
                if wakeNow {
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        continuation.resume()
                    }
                }
            }
        } onCancel: {
            let sleeper = state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves the clock on and wakes the sleepers that are due, in deadline order.
    public func advance(by duration: Duration) {
        precondition(duration >= .zero, "a clock does not go back")
        let due = state.withLock { state -> [Sleeper] in
            state.elapsed += duration
            let now = state.elapsed
            let due = state.sleepers.filter { $0.deadline <= now }.sorted { $0.deadline < $1.deadline }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }
}
