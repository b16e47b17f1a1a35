import ArgumentParser
import BlobClient
import BlobCore
import BlobGateway
import BlobTransport
import Foundation
import Logging

/// `blobctl gateway`: the HTTP and S3 front end, in the foreground.
struct GatewayCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: "Run an HTTP and S3 gateway in front of a cluster.",
        discussion: """
            Serves S3 (path style, and virtual-host style with --virtual-host-suffix; SigV4 in headers \
            and presigned URLs, keys from `blobctl key create`) and plain HTTP GET and HEAD of objects \
            in public-read buckets, with ranges and conditional requests, for browsers and players. \
            Keeps no state of its own: run as many as you like against one cluster.
            """
    )

    @Option(help: "Address to listen on, HOST:PORT.")
    var listen: String = "127.0.0.1:9480"

    @OptionGroup var cluster: ClusterOptions

    @Option(help: "Bucket names as the first label of HOST when HOST ends with .SUFFIX (e.g. s3.localhost).")
    var virtualHostSuffix: String?

    @Option(help: "The region clients sign for.")
    var region: String = "us-east-1"

    @Option(help: "Directory for uploads in progress (each is chunked from there, then removed).")
    var spoolDir: String = NSTemporaryDirectory()

    @Option(help: "Write the bound HOST:PORT to this file.")
    var addressFile: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @OptionGroup var observability: ObservabilityOptions

    @Option(help: "PEM certificate chain to serve HTTPS (S3) with; with --tls-key. Read again on SIGHUP.")
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    func validate() throws {
        try TLSOptions.checkPair(tlsCert, tlsKey)
    }

    func run() async throws {
        let (host, port) = try ChunkServerCommand.parseAddress(listen)
        let address = try cluster.address()
        let serving = try TLSOptions.certificate(tlsCert, tlsKey)
        var configuration = GatewayConfiguration(
            host: host, port: port, cluster: address, virtualHostSuffix: virtualHostSuffix, region: region,
            spoolDirectory: spoolDir, addressFile: addressFile)
        configuration.certificate = serving
        configuration.metricsListener = try observability.listener(defaultFile: nil, certificate: serving)
        configuration.observeRequests = observability.observeRequests
        observability.bootstrap(level: logLevel)
        let logger = Logger(label: "blobctl.gateway")
        let server = GatewayServer(configuration: configuration, logger: logger)
        try await runUntilSignalled(logger: logger) {
            try await server.run { bound in
                let scheme = serving == nil ? "http" : "https"
                FileHandle.standardOutput.write(Data("gateway listening on \(scheme)://\(bound)\n".utf8))
            }
        }
    }
}

struct KeyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key", abstract: "S3 access keys, kept by the master for every gateway.",
        subcommands: [KeyCreateCommand.self, KeyListCommand.self, KeyDeleteCommand.self])
}

struct KeyCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "create", abstract: "Create an access key; its secret is printed once.")
    @Option(help: "A name to remember it by.") var name: String = ""
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let key = try await cluster.withClient { try await $0.createAccessKey(name: name) }
        if cluster.json { return try printJSON(key) }
        print("access key id:     \(key.accessKeyID)\nsecret access key: \(key.secretAccessKey ?? "")")
    }
}

struct KeyListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List access keys (not their secrets).")
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let keys = try await cluster.withClient { try await $0.accessKeys() }
        if cluster.json { return try printJSON(keys) }
        print(
            columns(
                [["ACCESS KEY ID", "NAME", "CREATED"]]
                    + keys.map {
                        [$0.accessKeyID, $0.name, UTCTime.iso8601(milliseconds: $0.createdAtMilliseconds)]
                    }))
    }
}

struct KeyDeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "delete", abstract: "Delete an access key (gateways stop accepting it within a minute).")
    @Argument(help: "Access key id.") var id: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        try await cluster.withClient { try await $0.deleteAccessKey(id) }
        if cluster.json { try printJSON(["deleted": id]) } else { print("deleted access key \(id)") }
    }
}

struct BucketCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bucket", abstract: "Buckets: the top-level names the S3 gateway serves.",
        subcommands: [
            BucketCreateCommand.self, BucketListCommand.self, BucketDeleteCommand.self, BucketAccessCommand.self,
        ])
}

func printBucket(_ b: BucketRecord, json: Bool) throws {
    if json { return try printJSON(b) }
    print(
        "bucket \(b.name): \(b.publicRead ? "public-read (anyone may list it and GET or HEAD its objects)" : "private")"
    )
}

struct BucketCreateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "create", abstract: "Create a bucket.")
    @Argument(help: "Bucket name (3-63 lowercase letters, digits, dots, hyphens).") var name: String
    @Flag(help: "Let anyone GET and HEAD its objects without signing (media for browsers and players).")
    var publicRead = false
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let b = try await cluster.withClient { try await $0.createBucket(name, publicRead: publicRead) }
        try printBucket(b, json: cluster.json)
    }
}

struct BucketListCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List buckets.")
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        let all = try await cluster.withClient { try await $0.buckets() }
        if cluster.json { return try printJSON(all) }
        print(columns([["NAME", "ACCESS"]] + all.map { [$0.name, $0.publicRead ? "public-read" : "private"] }))
    }
}

struct BucketDeleteCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete an empty bucket.")
    @Argument(help: "Bucket name.") var name: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        try await cluster.withClient { try await $0.deleteBucket(name) }
        if cluster.json { try printJSON(["deleted": name]) } else { print("deleted bucket \(name)") }
    }
}

struct BucketAccessCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "set-access", abstract: "Make a bucket public-read or private.")
    @Argument(help: "Bucket name.") var name: String
    @Argument(help: "public-read or private.") var access: String
    @OptionGroup var cluster: ClusterOptions

    func run() async throws {
        guard access == "public-read" || access == "private" else {
            throw CLIError.exit(
                CLIError(.usage, "access must be public-read or private, got \(access)"), json: cluster.json)
        }
        let b = try await cluster.withClient { try await $0.setBucketAccess(name, publicRead: access == "public-read") }
        try printBucket(b, json: cluster.json)
    }
}
