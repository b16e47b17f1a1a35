public import Hummingbird
import Synchronization

/// The address the server answers on, known only once the port is bound.
public final class AddressBox: Sendable {
    private struct State {
        var address: String
        var isBound = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }
    private let state: Mutex<State>

    public init(_ initial: String) {
        state = Mutex(State(address: initial))
    }

    /// Records the bound address and wakes everyone waiting for it.
    public func set(_ address: String) {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            state.address = address
            state.isBound = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    public var current: String { state.withLock { $0.address } }

    /// Returns once the server is listening (at once if it already is), or when the calling
    /// task is cancelled; the caller checks ``isBound`` or cancellation afterwards.
    public func waitUntilBound() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                let ready = state.withLock { state -> Bool in
                    if state.isBound || Task.isCancelled { return true }
                    state.waiters.append(continuation)
                    return false
                }
                if ready { continuation.resume() }
            }
        } onCancel: {
            let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
                defer { state.waiters = [] }
                return state.waiters
            }
            for waiter in waiters { waiter.resume() }
        }
    }

    public var isBound: Bool { state.withLock { $0.isBound } }
}

/// Counts requests being served, for heartbeats.
public final class InFlightCounter<Context: RequestContext>: RouterMiddleware, Sendable {
    private let count = Atomic<Int64>(0)

    public init() {}

    public var current: Int64 { count.load(ordering: .relaxed) }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        count.add(1, ordering: .relaxed)
        defer { count.subtract(1, ordering: .relaxed) }
        return try await next(request, context)
    }
}
