import Foundation

/// The clock a server's timed work runs on: a monotonic reading for intervals, deadlines and
/// liveness inside one process, the wall clock for times it stores or shows, and sleeping.
///
/// Servers take one (``SystemClock`` by default); tests pass a manual clock and advance it, so
/// liveness, grace periods and pass intervals are tested without waiting. Times compared
/// across processes come from the metadata database's clock, not from here.
public protocol ServiceClock: Sendable {
    /// Time since an origin fixed for the clock's life; never goes back.
    var elapsed: Duration { get }
    /// Wall time in milliseconds since 1970.
    var wallMilliseconds: Int64 { get }
    /// Suspends the calling task until `duration` has passed on this clock; throws
    /// `CancellationError` when the task is cancelled first.
    func sleep(for duration: Duration) async throws
}

/// The real clocks: `ContinuousClock` (monotonic, counts suspended time) and the system's wall clock.
public struct SystemClock: ServiceClock {
    private let origin: ContinuousClock.Instant

    public init() {
        origin = .now
    }

    public var elapsed: Duration { origin.duration(to: .now) }
    public var wallMilliseconds: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    public func sleep(for duration: Duration) async throws {
        try await Task.sleep(for: duration, clock: .continuous)
    }
}

extension Duration {
    /// Whole milliseconds, rounded toward zero.
    public var wholeMilliseconds: Int64 {
        components.seconds * 1000 + components.attoseconds / 1_000_000_000_000_000
    }

    /// The duration in seconds, as a floating-point number, for rates and reports.
    public var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }

    /// Whole nanoseconds, rounded toward zero.
    public var wholeNanoseconds: Int64 {
        components.seconds * 1_000_000_000 + components.attoseconds / 1_000_000_000
    }
}
