public import Foundation

/// Starts a process from a thread of its own that lives until ``release()``. The parent-death
/// signal (setpriv --pdeathsig) follows the thread that spawned the child, not the process,
/// and a thread of Swift's pool may end at any time: the server would be killed with it.
public final class ThreadSpawner: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    public init() {}

    public func start(_ process: Process) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread { [done] in
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                continuation.resume()
                done.wait()
            }
            thread.start()
        }
    }

    public func release() { done.signal() }
}
