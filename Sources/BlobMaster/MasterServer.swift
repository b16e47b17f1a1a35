public import BlobCore
import BlobServerSupport
import Foundation
import Hummingbird
import AsyncHTTPClient
public import Logging
import ServiceLifecycle

/// Everything a master needs to run.
public struct MasterConfiguration: Sendable {
    /// Holds `listen-address`, and `master.sqlite` (WAL files beside it) unless ``metadata``
    /// names another place.
    public var dataDirectory: String
    /// Where the metadata lives; nil: `sqlite:DATA/master.sqlite`.
    public var metadata: MetadataLocation?
    public var host: String
    public var port: Int
    public var replicaCount: Int
    public var partitionPower: Int
    public var liveness: LivenessPolicy
    /// New servers join the ring when they first register.
    public var autoAdmit: Bool
    public var secret: [UInt8]
    /// How often repair looks for chunks below R copies, and its copy rate (nil: unthrottled).
    public var repairInterval: Duration = .seconds(30)
    public var repairBytesPerSecond: Int64? = 200 << 20
    /// How often repair checks every chunk, beyond the ones it is told about.
    public var repairFullScanInterval: Duration = .seconds(3600)
    /// How long an unreferenced chunk (or an unrecorded file) stays before gc deletes it, and
    /// how long a superseded version stays readable.
    public var gcGrace: Duration = .seconds(3600)
    /// How often buckets' lifecycle rules are applied.
    public var lifecycleInterval: Duration = .seconds(3600)
    /// Multipart uploads older than this are aborted by gc.
    public var staleUploadAge: Duration = .seconds(7 * 86_400)

    public init(
        dataDirectory: String, host: String = "127.0.0.1", port: Int = 0, replicaCount: Int = 3,
        partitionPower: Int = PlacementRing.defaultPartitionPower, liveness: LivenessPolicy = .init(),
        autoAdmit: Bool = true, secret: [UInt8]
    ) {
        self.dataDirectory = dataDirectory
        self.host = host
        self.port = port
        self.replicaCount = replicaCount
        self.partitionPower = partitionPower
        self.liveness = liveness
        self.autoAdmit = autoAdmit
        self.secret = secret
    }
}

/// A master: metadata store, membership and ring, HTTP API, background passes. Runs until its
/// service group shuts down gracefully or the task is cancelled; signals are the caller's, so a
/// test runs it in-process.
public struct MasterServer: Sendable {
    public let configuration: MasterConfiguration
    public let logger: Logger
    /// Liveness, grace periods and the intervals of background passes run on it.
    public let clock: any ServiceClock

    public init(configuration: MasterConfiguration, logger: Logger, clock: any ServiceClock = SystemClock()) {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
    }

    public func run(
        onListening: @escaping @Sendable (_ address: String) async -> Void = { _ in }
    ) async throws {
        let signer = try RequestSigner(secret: configuration.secret)
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        // Opening runs the schema migrations. A full integrity check reads the whole database, so
        // it is left to tests and to fsck rather than paid at every start.
        let location = configuration.metadata ?? .sqlite(path: configuration.dataDirectory + "/master.sqlite")
        try await location.withStore(logger: logger) { store in
            try await run(store: store, signer: signer, onListening: onListening)
        }
    }

    func run(
        store: MetadataStore, signer: RequestSigner,
        onListening: @escaping @Sendable (_ address: String) async -> Void
    ) async throws {
        var logger = self.logger
        logger[metadataKey: "node.role"] = "master"
        let membership = Membership(
            store: store, policy: configuration.liveness, replicaCount: configuration.replicaCount,
            partitionPower: configuration.partitionPower, autoAdmit: configuration.autoAdmit, logger: logger,
            clock: clock)
        try await membership.load()
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: .init(
                timeout: .init(connect: .seconds(2), read: .seconds(60))))
        let peer = ChunkServerPeer(client: client, signer: signer)
        let repairer = Repairer(
            store: store, membership: membership, peer: peer, bytesPerSecond: configuration.repairBytesPerSecond,
            fullScanInterval: configuration.repairFullScanInterval, logger: logger, clock: clock)
        let rebalancer = Rebalancer(store: store, membership: membership, peer: peer, logger: logger, clock: clock)
        try await rebalancer.load()
        let router = makeRouter(
            store: store, signer: signer, membership: membership, peer: peer, repairer: repairer,
            rebalancer: rebalancer,
            logger: logger
        ).router
        let configuration = self.configuration
        let app = Application(
            router: router,
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { [logger] channel in
                let bound = "\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"
                try? Data((bound + "\n").utf8).write(
                    to: URL(fileURLWithPath: configuration.dataDirectory + "/listen-address"), options: .atomic)
                logger.info("master listening", metadata: ["address": "\(bound)"])
                await onListening(bound)
            },
            logger: logger)
        let repair = PeriodicService(
            name: "repair", interval: configuration.repairInterval, clock: clock, logger: logger
        ) {
            try await repairer.pass()
        }
        let expirer = LifecycleExpirer(store: store, logger: logger)
        let lifecycle = PeriodicService(
            name: "lifecycle", interval: configuration.lifecycleInterval, clock: clock, logger: logger
        ) {
            _ = try await expirer.pass(nowMilliseconds: try await store.now())
        }
        let group = ServiceGroup(
            configuration: .init(
                services: [app, repair, lifecycle], gracefulShutdownSignals: [], logger: logger))
        do {
            try await group.run()
        } catch {
            await rebalancer.stopForShutdown()
            try? await client.shutdown()
            throw error
        }
        await rebalancer.stopForShutdown()
        try? await client.shutdown()
        logger.info("master stopped")
    }

    /// Every route of the master, each behind the token check for the roles it declares.
    func makeRouter(
        store: MetadataStore, signer: RequestSigner, membership: Membership, peer: ChunkServerPeer, repairer: Repairer,
        rebalancer: Rebalancer, logger: Logger
    ) -> AuthenticatedRoutes {
        let router = Router(context: ClusterRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(node: "master"))
        let routes = AuthenticatedRoutes(router: router, signer: signer)
        MasterRoutes(
            membership: membership, store: store, signer: signer, repairer: repairer, commits: CommitQueue(store: store)
        ).register(on: routes)
        OperationsRoutes(
            membership: membership, store: store, signer: signer, rebalancer: rebalancer,
            collector: GarbageCollector(
                store: store, membership: membership, peer: peer, logger: logger,
                staleUploadAge: configuration.staleUploadAge),
            checker: ConsistencyCheck(
                store: store, membership: membership, peer: peer, repairer: repairer, logger: logger),
            repairer: repairer, gcGrace: configuration.gcGrace
        ).register(on: routes)
        GatewayRoutes(store: store, signer: signer).register(on: routes)
        return routes
    }
}
