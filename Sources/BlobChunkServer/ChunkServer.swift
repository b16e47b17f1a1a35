import AsyncHTTPClient
public import BlobCore
import BlobServerSupport
import BlobTransport
import Foundation
import Hummingbird
public import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// A chunk server process: storage, HTTP API, scrubber, run until SIGTERM or SIGINT.
public struct ChunkServer: Sendable {
    public let configuration: ChunkServerConfiguration
    public let logger: Logger
    /// Heartbeats, backoff and scrub passes run on it.
    public let clock: any ServiceClock

    public init(configuration: ChunkServerConfiguration, logger: Logger, clock: any ServiceClock = SystemClock()) {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
    }

    /// Runs until its service group shuts down gracefully or the task is cancelled; signals
    /// are the caller's (`blobctl` owns SIGTERM and SIGINT), so a test runs it in-process.
    /// `onListening` receives the bound `host:port` and the server id once requests are
    /// accepted; the address is also written to `DIR/listen-address`.
    public func run(
        onListening: @escaping @Sendable (_ address: String, _ serverID: String) async -> Void = { _, _ in }
    ) async throws {
        let signer = try RequestSigner(secret: configuration.secret)
        let diskThreads = NIOThreadPool(numberOfThreads: configuration.diskThreadCount)
        diskThreads.start()
        do {
            try await run(diskThreads: diskThreads, signer: signer, onListening: onListening)
        } catch {
            try? await diskThreads.shutdownGracefully()
            throw error
        }
        try await diskThreads.shutdownGracefully()
    }

    private func run(
        diskThreads: NIOThreadPool, signer: RequestSigner,
        onListening: @escaping @Sendable (_ address: String, _ serverID: String) async -> Void
    ) async throws {
        let metrics = ServerMetrics(role: "chunkserver")
        let storage = ChunkStorage(
            configuration: configuration, logger: logger, threadPool: diskThreads, metrics: metrics)
        let serverID = try await storage.open()
        var logger = self.logger
        logger[metadataKey: "node.id"] = "\(serverID)"
        logger[metadataKey: "node.role"] = "chunkserver"
        // A peer that is down refuses connections; AHC retries until the connect timeout, so
        // keep that short: the write answers with the failure instead of waiting for it.
        var clientConfiguration = HTTPClient.Configuration()
        clientConfiguration.timeout = .init(
            connect: .nanoseconds(
                Int64(configuration.peerConnectTimeout.components.seconds) * 1_000_000_000
                    + configuration.peerConnectTimeout.components.attoseconds / 1_000_000_000),
            read: .seconds(Int64(configuration.forwardTimeout.components.seconds)))
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: configuration.transport.configure(clientConfiguration))
        let plain = HTTPPeerTransport(client: client)
        let transport: any PeerTransport =
            configuration.peerFaults.map { FaultyPeerTransport(base: plain, faults: $0) } ?? plain
        let box = AddressBox("\(configuration.advertisedHost ?? configuration.host):\(configuration.port)")
        let routes = ChunkRoutes(
            storage: storage,
            forwarder: ReplicationForwarder(
                transport: transport, signer: signer, timeout: configuration.forwardTimeout,
                scheme: configuration.transport),
            signer: signer, serverID: serverID, addressBox: box,
            terms: LeaderTermGuard(dataDirectory: configuration.dataDirectory))
        let inFlight = InFlightCounter<ClusterRequestContext>()
        let registration = configuration.masterURL == nil ? nil : MasterLink.Registration()
        let readiness = ChunkServerMetrics.readiness(storage: storage, registration: registration)
        let router = Self.makeRouter(
            routes: routes, signer: signer, inFlight: inFlight, metrics: metrics, readiness: readiness, logger: logger,
            observeRequests: configuration.observeRequests
        ).router
        let progressFile = configuration.dataDirectory + "/" + ScrubProgress.fileName
        ChunkServerMetrics.register(metrics, storage: storage, scrubProgressFile: progressFile)
        let configuration = self.configuration
        ServerCertificate.announce(
            configuration.certificate, host: configuration.host, role: "chunk server", logger: logger)
        let app = Application(
            router: router,
            server: .blobHTTP1(
                certificate: configuration.certificate, malformed: MalformedRequestAnswer.json(node: "\(serverID)")),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { [logger] channel in
                let port = channel.localAddress?.port ?? configuration.port
                let bound = "\(configuration.advertisedHost ?? configuration.host):\(port)"
                box.set(bound)
                let file = configuration.dataDirectory + "/listen-address"
                try? Data((bound + "\n").utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
                logger.info("chunk server listening", metadata: ["address": "\(bound)"])
                await onListening(bound, serverID)
            },
            logger: logger)
        let scrubber = Scrubber(
            storage: storage, bytesPerSecond: configuration.scrubBytesPerSecond,
            passInterval: configuration.scrubPassInterval,
            progressFile: progressFile, logger: logger, clock: clock)
        var services: [any Service] = [app, scrubber]
        if let masterURL = configuration.masterURL, let registration {
            services.append(
                MasterLink(
                    masterURL: masterURL, client: client, signer: signer, storage: storage, serverID: serverID,
                    addressBox: box, inFlight: { inFlight.current }, defaultInterval: configuration.heartbeatInterval,
                    logger: logger, clock: clock, registration: registration))
        }
        if let listener = configuration.metricsListener {
            services.append(
                ObservabilityListener.make(
                    configuration: listener, metrics: metrics, readiness: readiness, logger: logger))
        }
        if let certificate = configuration.certificate {
            services.append(CertificateReloader(certificate: certificate, logger: logger))
        }
        let group = ServiceGroup(
            configuration: .init(
                services: services, gracefulShutdownSignals: [], logger: logger))
        do {
            try await group.run()
        } catch {
            try? await client.shutdown()
            throw error
        }
        try await client.shutdown()
        logger.info("chunk server stopped")
    }

    /// Every route of the chunk server, each behind the token check for the roles it declares.
    static func makeRouter(
        routes: ChunkRoutes, signer: RequestSigner, inFlight: InFlightCounter<ClusterRequestContext>,
        metrics: ServerMetrics, readiness: @escaping ReadinessCheck, logger: Logger, observeRequests: Bool = true
    )
        -> AuthenticatedRoutes
    {
        let router = Router(context: ClusterRequestContext.self)
        if observeRequests { router.add(middleware: RequestObserver(metrics: metrics, logger: logger)) }
        router.add(middleware: inFlight)
        router.add(middleware: JSONErrorMiddleware(node: routes.serverID))
        let authenticated = AuthenticatedRoutes(router: router, signer: signer)
        authenticated.probes(role: "chunkserver", readiness: readiness)
        routes.register(on: authenticated)
        return authenticated
    }
}
