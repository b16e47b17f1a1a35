public import BlobClient
import BlobCore
public import BlobServerSupport
import BlobS3Wire
public import BlobTransport
import Foundation
import Hummingbird
public import Logging
import ServiceLifecycle

/// Everything a gateway needs: where to listen, which cluster, and how to name buckets.
public struct GatewayConfiguration: Sendable {
    public var host: String
    public var port: Int
    public var cluster: ClusterAddress
    /// With a suffix such as `s3.localhost`, `BUCKET.s3.localhost` names a bucket
    /// (virtual-host style); path style (`/BUCKET/KEY`) always works.
    public var virtualHostSuffix: String?
    public var region: String
    /// Uploads are spooled here (then chunked by the client library), so memory stays bounded.
    public var spoolDirectory: String
    /// Where the bound address is written, if anywhere.
    public var addressFile: String?
    /// The metrics listener (`/metrics` and the probes); nil: none.
    public var metricsListener: ObservabilityListenerConfiguration?
    /// Count, time and log every request (``RequestObserver``); off only to
    /// measure what that costs (`--no-observe-requests`).
    public var observeRequests = true
    /// The certificate this gateway serves HTTPS with (nil: plain HTTP), reloaded on SIGHUP.
    public var certificate: ServerCertificate?

    public init(
        host: String = "127.0.0.1", port: Int = 0, cluster: ClusterAddress, virtualHostSuffix: String? = nil,
        region: String = "us-east-1", spoolDirectory: String = "/tmp", addressFile: String? = nil
    ) {
        self.host = host
        self.port = port
        self.cluster = cluster
        self.virtualHostSuffix = virtualHostSuffix
        self.region = region
        self.spoolDirectory = spoolDirectory
        self.addressFile = addressFile
    }
}

/// An HTTP and S3 gateway: a stateless front end (beyond short caches) on the client library.
public struct GatewayServer: Sendable {
    public let configuration: GatewayConfiguration
    public let logger: Logger

    public init(configuration: GatewayConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    /// Runs until its service group shuts down gracefully or the task is cancelled; signals
    /// are the caller's (`blobctl` owns SIGTERM and SIGINT).
    public func run(
        onListening: @escaping @Sendable (_ address: String) async -> Void = { _ in }
    ) async throws {
        var logger = self.logger
        logger[metadataKey: "node.role"] = "gateway"
        try FileManager.default.createDirectory(atPath: configuration.spoolDirectory, withIntermediateDirectories: true)
        // Behind a load balancer, an S3 client's next request may reach another gateway, which
        // knows nothing of this one's writes: every read sees everything committed before it.
        let client = try ClusterClient(address: configuration.cluster, metadataReads: .latest)
        let metrics = ServerMetrics(role: "gateway")
        let handler = S3Handler(
            client: client, configuration: configuration, keys: KeyCache(client: client),
            buckets: BucketCache(client: client), logger: logger, metrics: GatewayMetrics(metrics: metrics))
        let router = Router()
        if configuration.observeRequests {
            router.add(middleware: RequestObserver(metrics: metrics, logger: logger, bodiesStream: true))
        }
        let readiness = Self.readiness(client)
        // Bucket names `healthz` and `readyz` are reserved for these (``BucketRecord/reservedNames``).
        Probes.register(on: router, role: "gateway", readiness: readiness)
        handler.register(on: router)
        let configuration = self.configuration
        ServerCertificate.announce(configuration.certificate, host: configuration.host, role: "gateway", logger: logger)
        let app = Application(
            router: router,
            // An idle connection (including one that stopped sending a body) is closed after a minute.
            server: .blobHTTP1(
                .init(additionalChannelHandlers: [ContinueHandler()], idleTimeout: .seconds(60)),
                certificate: configuration.certificate, malformed: S3Error.malformedRequest),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { [logger] channel in
                let bound = "\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"
                if let file = configuration.addressFile {
                    try? Data((bound + "\n").utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
                }
                logger.info("gateway listening", metadata: ["address": "\(bound)"])
                await onListening(bound)
            },
            logger: logger)
        var services: [any Service] = [app]
        if let listener = configuration.metricsListener {
            services.append(
                ObservabilityListener.make(
                    configuration: listener, metrics: metrics, readiness: readiness, logger: logger))
        }
        if let certificate = configuration.certificate {
            services.append(CertificateReloader(certificate: certificate, logger: logger))
        }
        let group = ServiceGroup(configuration: .init(services: services, gracefulShutdownSignals: [], logger: logger))
        do {
            try await group.run()
        } catch {
            try? await client.shutdown()
            throw error
        }
        try? await client.shutdown()
        logger.info("gateway stopped")
    }
}

extension GatewayServer {
    /// Ready when a master answers that it is ready.
    static func readiness(_ client: ClusterClient) -> ReadinessCheck {
        {
            do {
                try await client.masterReady()
                return nil
            } catch {
                return NotReady(reason: "master.unreachable", "no master is ready: \(error)")
            }
        }
    }
}

/// Access keys fetched from the master, kept a minute (a deleted key stops working within it).
actor KeyCache {
    let client: ClusterClient
    private var entries: [String: (secret: String?, fetched: ContinuousClock.Instant)] = [:]

    init(client: ClusterClient) { self.client = client }

    func secret(for id: String) async throws -> String? {
        if let entry = entries[id], entry.fetched.duration(to: .now) < .seconds(entry.secret == nil ? 2 : 60) {
            return entry.secret
        }
        let secret: String?
        do {
            secret = try await client.accessKey(id).secretAccessKey
        } catch let error as BlobError where error.code == .notFound {
            secret = nil
        }
        if entries.count > 10_000 { entries.removeAll() }
        entries[id] = (secret, .now)
        return secret
    }
}

/// Bucket records, kept a few seconds (existence and public access).
actor BucketCache {
    let client: ClusterClient
    private var entries: [String: (record: BucketRecord?, fetched: ContinuousClock.Instant)] = [:]

    init(client: ClusterClient) { self.client = client }

    func bucket(_ name: String) async throws -> BucketRecord? {
        if let entry = entries[name], entry.fetched.duration(to: .now) < .seconds(2) { return entry.record }
        let record: BucketRecord?
        do {
            record = try await client.bucket(name)
        } catch let error as BlobError where error.code == .notFound {
            record = nil
        }
        if entries.count > 10_000 { entries.removeAll() }
        entries[name] = (record, .now)
        return record
    }

    func forget(_ name: String) { entries[name] = nil }
}

extension S3Error {
    /// What the gateway answers a request its HTTP parser refuses: S3's error document.
    static let malformedRequest: @Sendable (any Error) -> MalformedRequestAnswer = { error in
        let headersTooLarge = MalformedRequestAnswer.status(for: error) == .requestHeaderFieldsTooLarge
        let s3 =
            error is RequestHeadTimeout
            ? S3Error(
                "RequestTimeout", .badRequest,
                "Your socket connection to the server was not read from or written to within the timeout period.")
            : S3Error.malformedRequest(headersTooLarge: headersTooLarge, detail: "\(error)")
        return MalformedRequestAnswer(
            status: s3.status, contentType: "application/xml", body: s3.xml(resource: "", requestID: ""))
    }
}
