public import BlobCore
import BlobServerSupport
import Foundation
import Hummingbird
public import Logging
import ServiceLifecycle
public import UnixSignals

/// Everything a master needs to run.
public struct MasterConfiguration: Sendable {
    /// Holds `master.sqlite` (WAL files beside it) and `listen-address`.
    public var dataDirectory: String
    public var host: String
    public var port: Int
    public var replicaCount: Int
    public var partitionPower: Int
    public var liveness: LivenessPolicy
    /// New servers join the ring when they first register.
    public var autoAdmit: Bool
    public var secret: [UInt8]

    public init(dataDirectory: String, host: String = "127.0.0.1", port: Int = 0, replicaCount: Int = 3,
                partitionPower: Int = PlacementRing.defaultPartitionPower, liveness: LivenessPolicy = .init(),
                autoAdmit: Bool = true, secret: [UInt8]) {
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

/// A master process: metadata store, membership and ring, HTTP API; runs until SIGTERM/SIGINT.
public struct MasterServer: Sendable {
    public let configuration: MasterConfiguration
    public let logger: Logger

    public init(configuration: MasterConfiguration, logger: Logger) {
        self.configuration = configuration
        self.logger = logger
    }

    public func run(
        gracefulShutdownSignals: [UnixSignal] = [.sigterm, .sigint],
        onListening: @escaping @Sendable (_ address: String) async -> Void = { _ in }
    ) async throws {
        let signer = try RequestSigner(secret: configuration.secret)
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        // Opening runs the schema migrations. A full integrity check reads the whole database, so
        // it is left to tests and to fsck rather than paid at every start.
        let store = try SQLiteMetadataStore(path: configuration.dataDirectory + "/master.sqlite")
        var logger = self.logger
        logger[metadataKey: "node.role"] = "master"
        let membership = Membership(
            store: store, policy: configuration.liveness, replicaCount: configuration.replicaCount,
            partitionPower: configuration.partitionPower, autoAdmit: configuration.autoAdmit, logger: logger)
        try await membership.load()
        let router = Router()
        router.add(middleware: JSONErrorMiddleware(node: "master"))
        MasterRoutes(membership: membership, store: store, signer: signer).register(on: router)
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
        let group = ServiceGroup(configuration: .init(
            services: [app], gracefulShutdownSignals: gracefulShutdownSignals, logger: logger))
        try await group.run()
        logger.info("master stopped")
    }
}
