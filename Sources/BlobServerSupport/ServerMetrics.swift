import BlobCore
import Foundation
public import Metrics
import Prometheus
import Synchronization

/// One server's metrics: swift-metrics instruments on a Prometheus registry of its own (not the
/// process-wide `MetricsSystem`, so several servers in one test process keep theirs apart),
/// rendered in the Prometheus text format by ``render()``.
///
/// Every role has the request metrics of ``RequestObserver`` and ``BodyByteCounter``, the
/// process start time and build info; each role adds its own instruments, and gauges read at
/// scrape time through ``onScrape(_:)``.
public final class ServerMetrics: Sendable {
    public let role: String
    private let factory: PrometheusMetricsFactory
    private let registry: PrometheusCollectorRegistry
    private let requests = Mutex<[RouteKey: RouteInstruments]>([:])
    private let collectors = Mutex<[@Sendable () async -> Void]>([])
    /// 5xx answers and failed background passes, for the status page.
    public let recentErrors = RecentErrors()
    public let receivedBytes: Metrics.Counter
    public let sentBytes: Metrics.Counter

    /// Latency buckets, in seconds, for request and commit histograms: 1 ms to 30 s.
    public static let latencyBuckets: [Duration] = [
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
        .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
    ]

    public init(role: String) {
        self.role = role
        registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = Self.latencyBuckets
        self.factory = factory
        receivedBytes = Metrics.Counter(label: "blob_http_received_bytes_total", factory: factory)
        sentBytes = Metrics.Counter(label: "blob_http_sent_bytes_total", factory: factory)
        Metrics.Gauge(
            label: "blob_build_info", dimensions: [("version", Blobstore.version), ("role", role)], factory: factory
        )
        .record(1)
        Metrics.Gauge(label: "process_start_time_seconds", factory: factory).record(Date().timeIntervalSince1970)
    }

    // MARK: Instruments

    public func counter(_ name: String, _ labels: [(String, String)] = []) -> Metrics.Counter {
        Metrics.Counter(label: name, dimensions: labels, factory: factory)
    }

    public func gauge(_ name: String, _ labels: [(String, String)] = []) -> Metrics.Gauge {
        Metrics.Gauge(label: name, dimensions: labels, factory: factory)
    }

    /// A latency histogram in seconds (``latencyBuckets``).
    public func timer(_ name: String, _ labels: [(String, String)] = []) -> Metrics.Timer {
        Metrics.Timer(label: name, dimensions: labels, factory: factory)
    }

    private let timers = Mutex<[String: Metrics.Timer]>([:])
    private let labelledCounters = Mutex<[String: Metrics.Counter]>([:])

    /// Adds one to the counter `name` with `labels` (from a small, bounded set of values).
    public func count(_ name: String, _ labels: [(String, String)]) {
        let key = labels.reduce(name) { $0 + "\u{0}" + $1.0 + "=" + $1.1 }
        let counter = labelledCounters.withLock { cache in
            if let found = cache[key] { return found }
            let made = self.counter(name, labels)
            cache[key] = made
            return made
        }
        counter.increment()
    }

    /// Records one duration into the unlabelled latency histogram `name`.
    public func observe(_ name: String, _ duration: Duration) {
        let timer = timers.withLock { timers in
            if let found = timers[name] { return found }
            let made = self.timer(name)
            timers[name] = made
            return made
        }
        timer.recordNanoseconds(duration.wholeNanoseconds)
    }

    // MARK: Requests

    struct RouteKey: Hashable {
        var route: String
        var method: String
        var statusClass: Int
    }

    struct RouteInstruments {
        var count: Metrics.Counter
        var duration: Metrics.Timer
    }

    /// Counts one answered request and its latency, by route pattern, method and status class.
    public func recordRequest(route: String, method: String, status: Int, duration: Duration) {
        let key = RouteKey(route: route, method: method, statusClass: status / 100)
        let instruments = requests.withLock { cache -> RouteInstruments in
            if let found = cache[key] { return found }
            // An unbounded label set would grow without end: unknown paths share one route.
            let made = RouteInstruments(
                count: counter(
                    "blob_http_requests_total",
                    [("route", route), ("method", method), ("status_class", "\(key.statusClass)xx")]),
                duration: timer("blob_http_request_duration_seconds", [("route", route), ("method", method)]))
            cache[key] = made
            return made
        }
        instruments.count.increment()
        instruments.duration.recordNanoseconds(duration.wholeNanoseconds)
    }

    // MARK: Scraping

    /// `collect` runs before every scrape, to set gauges from the role's state.
    public func onScrape(_ collect: @escaping @Sendable () async -> Void) {
        collectors.withLock { $0.append(collect) }
    }

    /// The Prometheus text exposition of every instrument, gauges collected first.
    public func render() async -> [UInt8] {
        for collect in collectors.withLock({ $0 }) { await collect() }
        var buffer: [UInt8] = []
        buffer.reserveCapacity(16 << 10)
        registry.emit(into: &buffer)
        return buffer
    }
}

/// Keeps a counter equal to a running total kept elsewhere (a storage statistic, a pass's
/// totals), by adding what the total grew since the last scrape.
public final class CounterMirror: Sendable {
    private let counter: Metrics.Counter
    private let last = Mutex<Int64>(0)

    public init(_ counter: Metrics.Counter) { self.counter = counter }

    public func update(to total: Int64) {
        let delta = last.withLock { last -> Int64 in
            defer { last = max(last, total) }
            return total - last
        }
        if delta > 0 { counter.increment(by: delta) }
    }
}
