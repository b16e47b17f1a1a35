import ArgumentParser
import BlobCore
import BlobMaster
import Foundation
import Logging

/// `blobctl master`: runs the master in the foreground.
struct MasterCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "master",
        abstract: "Run the master: namespace, membership, ring and placement.",
        discussion: """
            Keeps its metadata in DIR/master.sqlite (SQLite in WAL mode, synchronous=FULL), answers \
            the HTTP API of docs/api.md and stops gracefully on SIGTERM or SIGINT. With port 0 it \
            picks a free port; the bound address is printed and written to DIR/listen-address.
            """
    )

    @Option(help: "Data directory (created if missing).")
    var data: String

    @Option(
        help: ArgumentHelp(
            "Where the metadata lives: sqlite:PATH (default DIR/master.sqlite) or postgres://USER@HOST:PORT/DATABASE.",
            valueName: "location"))
    var metadata: String?

    @Option(help: "File holding the PostgreSQL password (else env BLOBCTL_METADATA_PASSWORD; never in the URL).")
    var metadataPasswordFile: String?

    @Option(
        help: ArgumentHelp(
            """
            PostgreSQL hot standbys that may answer stat, list and read plans: postgres://USER@H1:P1,H2:P2/DATABASE \
            (the same user, password and database as --metadata; a host that is the primary is skipped).
            """,
            valueName: "location"))
    var metadataReplicas: String?

    @Option(help: "A standby lagging the primary by more than this (e.g. 5s) answers no read; below --gc-grace.")
    var metadataReplicaMaxLag: String = "5s"

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen: String = "127.0.0.1:9400"

    @Option(help: "Replicas per chunk.")
    var replicas: Int = 3

    @Option(help: "The ring has 2^P partitions.")
    var partitionPower: Int = PlacementRing.defaultPartitionPower

    @Option(help: "Heartbeat interval asked of chunk servers, in milliseconds.")
    var heartbeatInterval: Int = 5000

    @Option(help: "A server is suspect after this many milliseconds without a heartbeat.")
    var suspectAfter: Int = 15_000

    @Option(help: "A server is down (its data to be re-replicated) after this many milliseconds.")
    var downAfter: Int = 600_000

    @Option(help: "How often repair looks for chunks below R copies (e.g. 30s).")
    var repairInterval: String = "30s"

    @Option(help: "Repair copy rate limit in bytes per second, e.g. 200M; 0: unthrottled.")
    var repairRate: String = "200M"

    @Option(help: "How often repair checks every chunk, beyond those it is told about (e.g. 1h).")
    var repairFullScan: String = "1h"

    @Option(help: "Grace period before gc deletes an unreferenced chunk or unrecorded file (e.g. 1h).")
    var gcGrace: String = "1h"

    @Option(help: "gc aborts multipart uploads older than this (e.g. 7d).")
    var gcStaleUploads: String = "7d"

    @Option(help: "How often buckets' lifecycle rules (S3 expiration) are applied (e.g. 1h).")
    var lifecycleInterval: String = "1h"

    @Option(
        help: """
            The leader lease (e.g. 10s): with several masters, another takes over at most this long after \
            the leader dies; the leader renews every quarter of it.
            """)
    var leaderLease: String = "10s"

    @Flag(inversion: .prefixedNo, help: "Admit a server into the ring when it first registers.")
    var autoAdmit = true

    @Option(help: "File holding the cluster secret (at least 16 bytes). Env: BLOBCTL_SECRET_FILE.")
    var secretFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @OptionGroup var observability: ObservabilityOptions

    @OptionGroup var tls: TLSOptions

    func run() async throws {
        let (host, port) = try ChunkServerCommand.parseAddress(listen)
        guard (1...16).contains(replicas) else { throw ValidationError("--replicas must be between 1 and 16") }
        guard PlacementRing.partitionPowerRange.contains(partitionPower) else {
            throw ValidationError("--partition-power must be in \(PlacementRing.partitionPowerRange)")
        }
        guard heartbeatInterval >= 10, suspectAfter > heartbeatInterval, downAfter >= suspectAfter else {
            throw ValidationError("need 10 <= --heartbeat-interval < --suspect-after <= --down-after (milliseconds)")
        }
        guard let rate = ByteCountParser.parse(repairRate) else {
            throw ValidationError("--repair-rate \(repairRate) is not a size; use e.g. 200M, or 0 for no limit")
        }
        var configuration = MasterConfiguration(
            dataDirectory: URL(fileURLWithPath: data).standardizedFileURL.path, host: host, port: port,
            replicaCount: replicas, partitionPower: partitionPower,
            liveness: LivenessPolicy(
                heartbeatInterval: .milliseconds(heartbeatInterval),
                suspectAfter: .milliseconds(suspectAfter), downAfter: .milliseconds(downAfter)),
            autoAdmit: autoAdmit, secret: try ChunkServerCommand.loadSecret(secretFile))
        do {
            configuration.metadata = try metadata.map {
                try MetadataLocation.parse($0, passwordFile: metadataPasswordFile)
            }
            if let metadataReplicas {
                guard
                    case .postgres(let standbys) = try MetadataLocation.parse(
                        metadataReplicas, passwordFile: metadataPasswordFile)
                else {
                    throw ValidationError("--metadata-replicas takes postgres://USER@H1:P1,H2:P2/DATABASE")
                }
                configuration.metadataStandbys = standbys
            }
        } catch let error as BlobError {
            throw ValidationError(error.message)
        }
        configuration.maxStandbyLag = try DurationParser.parseOption(
            metadataReplicaMaxLag, name: "--metadata-replica-max-lag")
        guard configuration.maxStandbyLag >= .seconds(1) else {
            throw ValidationError("--metadata-replica-max-lag must be at least 1s, got \(metadataReplicaMaxLag)")
        }
        configuration.repairInterval = try DurationParser.parseOption(repairInterval, name: "--repair-interval")
        configuration.repairBytesPerSecond = rate > 0 ? Int64(rate) : nil
        configuration.repairFullScanInterval = try DurationParser.parseOption(
            repairFullScan, name: "--repair-full-scan")
        configuration.gcGrace = try DurationParser.parseOption(gcGrace, name: "--gc-grace")
        configuration.staleUploadAge = try DurationParser.parseOption(gcStaleUploads, name: "--gc-stale-uploads")
        configuration.lifecycleInterval = try DurationParser.parseOption(
            lifecycleInterval, name: "--lifecycle-interval")
        guard configuration.repairInterval >= .milliseconds(100) else {
            throw ValidationError("--repair-interval must be >= 100ms")
        }
        let lease = try DurationParser.parseOption(leaderLease, name: "--leader-lease")
        guard lease >= .seconds(1), lease <= .seconds(3600) else {
            throw ValidationError("--leader-lease must be between 1s and 1h, got \(leaderLease)")
        }
        configuration.leaderLease = LeasePolicy(timeToLive: lease)
        configuration.certificate = try tls.certificate()
        configuration.peerTransport = try tls.clusterTransport(masterURLs: nil, serving: configuration.certificate)
        configuration.metricsListener = try observability.listener(
            defaultFile: configuration.dataDirectory + "/metrics-address", certificate: configuration.certificate)
        configuration.observeRequests = observability.observeRequests
        observability.bootstrap(level: logLevel)
        let logger = Logger(label: "blobctl.master")
        let server = MasterServer(configuration: configuration, logger: logger)
        let scheme = configuration.peerTransport.scheme.rawValue
        try await runUntilSignalled(logger: logger) {
            try await server.run { address in
                FileHandle.standardOutput.write(Data("master listening on \(scheme)://\(address)\n".utf8))
            }
        }
    }
}
