import BlobCore
import Synchronization

/// The primary's WAL write position, asked once for many callers. A caller is answered by a
/// query that began after it asked, so the position lies after every commit that had returned
/// by then: what a write's answer and a read's floor need. Callers that arrive while a query
/// runs share the next one; under load that is one query at a time whatever the request rate.
final class PositionCoalescer: Sendable {
    typealias Waiter = CheckedContinuation<Result<MetadataPosition?, any Error>, Never>
    private struct State {
        var waiting: [Waiter] = []
        var running = false
    }

    private let ask: @Sendable () async throws -> MetadataPosition?
    private let state = Mutex(State())

    init(_ ask: @escaping @Sendable () async throws -> MetadataPosition?) {
        self.ask = ask
    }

    /// Callers waiting for a query that has not begun (tests).
    var waitingCount: Int { state.withLock { $0.waiting.count } }

    func position() async throws -> MetadataPosition? {
        let result = await withCheckedContinuation { (waiter: Waiter) in
            let start = state.withLock { state -> Bool in
                state.waiting.append(waiter)
                guard !state.running else { return false }
                state.running = true
                return true
            }
            if start { Task { await self.drain() } }
        }
        return try result.get()
    }

    /// Runs one query per batch of waiters until none is left.
    private func drain() async {
        while true {
            let batch = state.withLock { state -> [Waiter] in
                let batch = state.waiting
                state.waiting = []
                if batch.isEmpty { state.running = false }
                return batch
            }
            guard !batch.isEmpty else { return }
            let result: Result<MetadataPosition?, any Error>
            do { result = .success(try await ask()) } catch { result = .failure(error) }
            for waiter in batch { waiter.resume(returning: result) }
        }
    }
}
