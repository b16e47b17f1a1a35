import Foundation
public import BlobTransport
public import Hummingbird
import HTTPTypes
public import Logging
import NIOCore
public import ServiceLifecycle
import Synchronization

/// Why a server cannot serve right now: `/readyz` answers 503 with it.
public struct NotReady: Error, Sendable {
    public var reason: String
    public var message: String

    public init(reason: String, _ message: String) {
        self.reason = reason
        self.message = message
    }
}

/// A role's readiness check: nil when it can serve.
public typealias ReadinessCheck = @Sendable () async -> NotReady?

/// The answers of `/healthz` and `/readyz`.
public struct ProbeAnswer: Codable, Sendable, Equatable {
    public var status: String
    public var role: String
    public var reason: String?
    public var message: String?
}

public enum Probes {
    /// How long a readiness check may take before it counts as not ready.
    public static let readinessTimeout = Duration.seconds(2)

    /// `GET /healthz` (the process answers) and `GET /readyz` (it can serve: 200, or 503 with
    /// the reason), unauthenticated: load balancers, systemd and Kubernetes probe them.
    public static func register<Context: RequestContext>(
        on router: Router<Context>, role: String, readiness: @escaping ReadinessCheck
    ) {
        let probe = ReadinessProbe(readiness)
        router.get("/healthz") { _, _ in
            try jsonResponse(ProbeAnswer(status: "ok", role: role))
        }
        router.get("/readyz") { _, _ in
            if let problem = await probe.check() {
                return try jsonResponse(
                    ProbeAnswer(status: "not ready", role: role, reason: problem.reason, message: problem.message),
                    status: .serviceUnavailable)
            }
            return try jsonResponse(ProbeAnswer(status: "ready", role: role))
        }
    }
}

/// Runs a readiness check for the probes: one at a time (probes that arrive meanwhile share
/// it), and answered within ``Probes/readinessTimeout`` even when the check hangs (a database
/// that stopped answering): the check goes on alone, and the probe says it timed out.
final class ReadinessProbe: Sendable {
    private let readiness: ReadinessCheck
    private let running = Mutex<Task<NotReady?, Never>?>(nil)

    init(_ readiness: @escaping ReadinessCheck) { self.readiness = readiness }

    func check() async -> NotReady? {
        let task = running.withLock { running -> Task<NotReady?, Never> in
            if let running { return running }
            let made = Task { [readiness] in
                let answer = await readiness()
                self.running.withLock { $0 = nil }
                return answer
            }
            running = made
            return made
        }
        let timeout = Probes.readinessTimeout
        return await withCheckedContinuation { (continuation: CheckedContinuation<NotReady?, Never>) in
            let answered = AnswerOnce(continuation)
            Task { answered.resume(await task.value) }
            Task {
                try? await Task.sleep(for: timeout)
                answered.resume(
                    NotReady(reason: "readiness.timeout", "the readiness check took longer than \(timeout)"))
            }
        }
    }
}

/// Resumes a continuation with the first of several answers.
private final class AnswerOnce: Sendable {
    private let continuation: CheckedContinuation<NotReady?, Never>
    private let done = Atomic<Bool>(false)

    init(_ continuation: CheckedContinuation<NotReady?, Never>) { self.continuation = continuation }

    func resume(_ value: NotReady?) {
        if !done.exchange(true, ordering: .acquiringAndReleasing) { continuation.resume(returning: value) }
    }
}

/// Where a role's metrics listener is and what it serves.
public struct ObservabilityListenerConfiguration: Sendable {
    public var host: String
    public var port: Int
    /// The bound `host:port` is written here, if anywhere (`DIR/metrics-address`).
    public var addressFile: String?
    /// The server's own certificate, when it serves TLS: the listener serves HTTPS too.
    public var certificate: ServerCertificate?

    public init(
        host: String = "127.0.0.1", port: Int = 0, addressFile: String? = nil, certificate: ServerCertificate? = nil
    ) {
        self.host = host
        self.port = port
        self.addressFile = addressFile
        self.certificate = certificate
    }
}

/// The metrics listener: `GET /metrics` (Prometheus text format), `/healthz` and `/readyz`, and
/// any pages a role adds (the master's status page), on an address of its own that is bound to
/// loopback unless the operator says otherwise. Nothing on it changes state; what it shows is
/// for whoever can reach that address, as with SeaweedFS's `-metricsPort`.
public enum ObservabilityListener {
    public static func make(
        configuration: ObservabilityListenerConfiguration, metrics: ServerMetrics, readiness: @escaping ReadinessCheck,
        logger: Logger, onListening: @escaping @Sendable (String) async -> Void = { _ in },
        addRoutes: (Router<BasicRequestContext>) -> Void = { _ in }
    ) -> any Service {
        let router = Router()
        router.add(middleware: RequestObserver(metrics: metrics, logger: logger))
        router.get("/metrics") { _, _ in
            let text = await metrics.render()
            var headers = HTTPFields()
            headers[.contentType] = "text/plain; version=0.0.4; charset=utf-8"
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: text)))
        }
        Probes.register(on: router, role: metrics.role, readiness: readiness)
        addRoutes(router)
        return Application(
            router: router,
            server: .blobHTTP1(
                certificate: configuration.certificate, malformed: MalformedRequestAnswer.json(node: metrics.role)),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { channel in
                let bound = "\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"
                if let file = configuration.addressFile {
                    try? Data((bound + "\n").utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
                }
                logger.info("metrics listening", metadata: ["address": "\(bound)"])
                await onListening(bound)
            },
            logger: logger)
    }
}
