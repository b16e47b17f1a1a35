public import BlobCore
public import BlobServerSupport
public import BlobTransport
import Foundation
import Hummingbird
import HTTPTypes
import NIOCore
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
    /// The leader lease: how long it lasts and how often it is renewed.
    public var leaderLease = LeasePolicy()
    /// How often this master reads the cluster state other masters wrote (heartbeats they
    /// received, their ring changes) and writes the heartbeats it received; nil: every
    /// heartbeat interval, from 0.5 to 2 s.
    public var membershipRefreshInterval: Duration?
    /// Hot standbys of the PostgreSQL metadata that may answer stat, list and read plans
    /// (`--metadata-replicas`), and how far behind the primary one may be (the garbage
    /// collection grace period must be longer: a stale read plan must not name deleted chunks).
    public var metadataStandbys: PostgresLocation?
    public var maxStandbyLag: Duration = .seconds(5)
    /// The metrics listener (`/metrics`, probes, status page); nil: none.
    public var metricsListener: ObservabilityListenerConfiguration?
    /// Count, time and log every request (``RequestObserver``); off only to
    /// measure what that costs (`--no-observe-requests`).
    public var observeRequests = true
    /// The certificate this master serves HTTPS with (nil: plain HTTP), reloaded on SIGHUP.
    public var certificate: ServerCertificate?
    /// How this master reaches chunk servers: HTTPS, verified against `--tls-ca`, when it
    /// serves TLS itself (a cluster is all one or the other).
    public var peerTransport: ClusterTransport = .plain

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

    /// Replaces the database's clock (tests: the same manual clock as ``clock``).
    public let databaseClock: (@Sendable () -> Int64)?

    public init(
        configuration: MasterConfiguration, logger: Logger, clock: any ServiceClock = SystemClock(),
        databaseClock: (@Sendable () -> Int64)? = nil
    ) {
        self.configuration = configuration
        self.logger = logger
        self.clock = clock
        self.databaseClock = databaseClock
    }

    public func run(
        onListening: @escaping @Sendable (_ address: String) async -> Void = { _ in }
    ) async throws {
        let signer = try RequestSigner(secret: configuration.secret)
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        // Opening runs the schema migrations. A full integrity check reads the whole database, so
        // it is left to tests and to fsck rather than paid at every start.
        let location = configuration.metadata ?? .sqlite(path: configuration.dataDirectory + "/master.sqlite")
        // A SQLite database has one master: it leads from the start, without waiting out the
        // lease of its own previous run.
        let lone: Bool
        if case .sqlite = location { lone = true } else { lone = false }
        if configuration.metadataStandbys != nil {
            // A read plan from a standby is at most about maxStandbyLag (plus a sampling
            // interval) old; the chunks it names must outlive that.
            let needed = configuration.maxStandbyLag + PostgresStandbys.sampleInterval * 2
            guard configuration.gcGrace > needed else {
                throw BlobError(
                    .invalidArgument, reason: "metadata.replicaLag",
                    "--gc-grace (\(configuration.gcGrace)) must be longer than --metadata-replica-max-lag plus 2 s "
                        + "(\(needed)): a read plan from a standby must not name chunks gc has deleted")
            }
        }
        try await location.withStore(
            logger: logger, clock: databaseClock, standbys: configuration.metadataStandbys,
            maxStandbyLag: configuration.maxStandbyLag
        ) { store in
            try await run(store: store, signer: signer, lone: lone, onListening: onListening)
        }
    }

    func run(
        store: MetadataStore, signer: RequestSigner, lone: Bool,
        onListening: @escaping @Sendable (_ address: String) async -> Void
    ) async throws {
        var logger = self.logger
        logger[metadataKey: "node.role"] = "master"
        let metrics = ServerMetrics(role: "master")
        let operations = OperationsRecord()
        let election = LeaderElection(
            store: store, policy: configuration.leaderLease, takeOverAtStart: lone, logger: logger, clock: clock)
        let membership = Membership(
            store: store, policy: configuration.liveness, replicaCount: configuration.replicaCount,
            partitionPower: configuration.partitionPower, autoAdmit: configuration.autoAdmit, logger: logger,
            clock: clock)
        await membership.setLeadership(election)
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton,
            configuration: configuration.peerTransport.configure(
                .init(timeout: .init(connect: .seconds(2), read: .seconds(60)))))
        let peer = ChunkServerPeer(client: client, signer: signer, transport: configuration.peerTransport)
        let repairer = Repairer(
            store: store, membership: membership, peer: peer, bytesPerSecond: configuration.repairBytesPerSecond,
            fullScanInterval: configuration.repairFullScanInterval, logger: logger, clock: clock)
        let rebalancer = Rebalancer(store: store, membership: membership, peer: peer, logger: logger, clock: clock)
        try await rebalancer.load()
        // A new leader resumes a rebalance its predecessor left running; a leader that loses the
        // lease stops its run (the saved state stays, for the next one).
        await election.onTransition { [logger] term in
            if term != nil {
                do {
                    try await election.asLeader { try await rebalancer.resumeIfRunning() }
                } catch {
                    logger.warning("rebalance resume failed", metadata: ["error.message": "\(error)"])
                }
            } else {
                await rebalancer.stopForShutdown()
            }
        }
        // The first round before serving: a lone master leads at once, and every master knows
        // the lease (and so the observation period) before it judges any server.
        await election.round()
        try await membership.load()
        // A master that becomes leader later runs its first repair and lifecycle passes at once,
        // not up to an interval after its predecessor died.
        let repairNow = PassTrigger()
        let lifecycleNow = PassTrigger()
        await election.onTransition { term in
            guard term != nil else { return }
            repairNow.fire()
            lifecycleNow.fire()
        }
        let router = makeRouter(
            store: store, signer: signer, membership: membership, peer: peer, repairer: repairer,
            rebalancer: rebalancer, election: election, metrics: metrics, operations: operations,
            logger: logger
        ).router
        MasterMetrics(
            metrics: metrics, membership: membership, election: election, repairer: repairer, rebalancer: rebalancer,
            store: store, operations: operations
        ).register()
        let configuration = self.configuration
        ServerCertificate.announce(configuration.certificate, host: configuration.host, role: "master", logger: logger)
        let app = Application(
            router: router,
            server: .blobHTTP1(
                certificate: configuration.certificate, malformed: MalformedRequestAnswer.json(node: "master")),
            configuration: .init(address: .hostname(configuration.host, port: configuration.port), serverName: nil),
            onServerRunning: { [logger] channel in
                let bound = "\(configuration.host):\(channel.localAddress?.port ?? configuration.port)"
                await election.setAddress(bound)
                try? Data((bound + "\n").utf8).write(
                    to: URL(fileURLWithPath: configuration.dataDirectory + "/listen-address"), options: .atomic)
                logger.info("master listening", metadata: ["address": "\(bound)"])
                await onListening(bound)
            },
            logger: logger)
        // Repair and lifecycle run on the leader alone, each pass inside its fence.
        let repair = PeriodicService(
            name: "repair", interval: configuration.repairInterval, clock: clock, logger: logger, trigger: repairNow,
            failures: metrics.recentErrors
        ) {
            guard await election.currentTerm != nil else { return }
            try await election.asLeader { _ = try await repairer.pass() }
        }
        let expirer = LifecycleExpirer(store: store, logger: logger)
        let lifecycle = PeriodicService(
            name: "lifecycle", interval: configuration.lifecycleInterval, clock: clock, logger: logger,
            trigger: lifecycleNow, failures: metrics.recentErrors
        ) {
            guard await election.currentTerm != nil else { return }
            try await election.asLeader { _ = try await expirer.pass(nowMilliseconds: try await store.now()) }
        }
        // Every master reads what the others wrote; masters gone for a day leave the list.
        let refresh = PeriodicService(
            name: "membership refresh",
            interval: configuration.membershipRefreshInterval
                ?? max(.milliseconds(500), min(configuration.liveness.heartbeatInterval, .seconds(2))),
            clock: clock, logger: logger
        ) {
            try await membership.refresh()
        }
        let forget = PeriodicService(name: "master list", interval: .seconds(600), clock: clock, logger: logger) {
            try await store.forgetMasters(unseenFor: 86_400_000)
        }
        var services: [any Service] = [app, ElectionService(election: election), refresh, repair, lifecycle, forget]
        if let certificate = configuration.certificate {
            services.append(CertificateReloader(certificate: certificate, logger: logger))
        }
        if let listener = configuration.metricsListener {
            let page = StatusPage(
                reader: ClusterStatusReader(
                    membership: membership, repairer: repairer, store: store, election: election),
                rebalancer: rebalancer, operations: operations, errors: metrics.recentErrors)
            services.append(
                ObservabilityListener.make(
                    configuration: listener, metrics: metrics, readiness: MasterMetrics.readiness(store),
                    logger: logger,
                    addRoutes: { router in
                        for path in ["/", "/status"] {
                            router.get(RouterPath(path)) { _, _ in
                                var headers = HTTPFields()
                                headers[.contentType] = "text/html; charset=utf-8"
                                headers[.cacheControl] = "no-store"
                                return Response(
                                    status: .ok, headers: headers,
                                    body: .init(byteBuffer: ByteBuffer(string: await page.render())))
                            }
                        }
                    }))
        }
        let group = ServiceGroup(
            configuration: .init(services: services, gracefulShutdownSignals: [], logger: logger))
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
        rebalancer: Rebalancer, election: LeaderElection, metrics: ServerMetrics, operations: OperationsRecord,
        logger: Logger
    ) -> AuthenticatedRoutes {
        let router = Router(context: ClusterRequestContext.self)
        if configuration.observeRequests {
            router.add(
                middleware: RequestObserver(
                    metrics: metrics, logger: logger,
                    quietRoutes: RequestObserver<ClusterRequestContext>.routineRoutes.union([
                        "/v1/cluster/servers/{id}/heartbeat", "/v1/cluster/servers/{id}/reports",
                    ])))
        }
        router.add(middleware: JSONErrorMiddleware(node: "master"))
        router.add(middleware: MetadataPositionMiddleware(store: store))
        let routes = AuthenticatedRoutes(router: router, signer: signer)
        routes.probes(role: "master", readiness: MasterMetrics.readiness(store))
        MasterRoutes(
            membership: membership, store: store, signer: signer, repairer: repairer,
            commits: CommitQueue(store: store),
            election: election, metrics: metrics
        ).register(on: routes)
        OperationsRoutes(
            membership: membership, store: store, signer: signer, rebalancer: rebalancer,
            collector: GarbageCollector(
                store: store, membership: membership, peer: peer, logger: logger,
                staleUploadAge: configuration.staleUploadAge, record: operations),
            checker: ConsistencyCheck(
                store: store, membership: membership, peer: peer, repairer: repairer, logger: logger,
                record: operations),
            repairer: repairer, gcGrace: configuration.gcGrace, election: election
        ).register(on: routes)
        GatewayRoutes(store: store, signer: signer).register(on: routes)
        return routes
    }
}

/// Runs the election until shutdown; then gives the lease up, so another master need not wait
/// for it to expire.
struct ElectionService: Service {
    let election: LeaderElection

    func run() async throws {
        await cancelWhenGracefulShutdown { await election.run() }
    }
}
