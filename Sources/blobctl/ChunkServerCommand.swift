import ArgumentParser
import BlobChunkServer
import BlobCore
import Foundation
import Logging

/// `blobctl chunkserver`: runs one chunk server in the foreground.
struct ChunkServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chunkserver",
        abstract: "Run a chunk server: durable, verified chunk storage over HTTP.",
        discussion: """
            Stores chunk frames under DIR/chunks, answers the HTTP API of docs/api.md, scrubs in \
            the background, and stops gracefully on SIGTERM or SIGINT. With port 0 it picks a free \
            port; the bound address is printed and written to DIR/listen-address.
            """
    )

    @Option(help: "Data directory (created if missing).")
    var data: String

    @Option(help: "Address to listen on, HOST:PORT (port 0 picks a free one).")
    var listen: String = "127.0.0.1:0"

    @Option(help: "Address peers and clients should use, if not the listen address.")
    var advertise: String?

    @Option(help: "Failure zone of this server.")
    var zone: String = "default"

    @Option(help: "Relative capacity weight in the ring.")
    var weight: Double = 1

    @Option(help: "Most bytes of chunks to hold (K, M, G, T suffixes).")
    var capacity: String?

    @Option(help: "Free disk space to keep (default: 5% of the disk or 4 GiB, whichever is smaller).")
    var reserve: String?

    @Option(help: "File holding the cluster secret (at least 16 bytes). Env: BLOBCTL_SECRET_FILE.")
    var secretFile: String?

    @Option(help: "Background scrub rate in bytes per second (K, M suffixes); 0 turns it off.")
    var scrubRate: String = "32M"

    @Option(help: "Seconds between two scrub passes.")
    var scrubInterval: Int = 3600

    @Option(
        help:
            """
            The masters to register and heartbeat with: http://HOST:PORT, several separated by commas. \
            Env: BLOBCTL_MASTER.
            """
    )
    var master: String?

    @Option(help: "Heartbeat interval in milliseconds until the master names one.")
    var heartbeatInterval: Int = 5000

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @OptionGroup var observability: ObservabilityOptions

    @OptionGroup var tls: TLSOptions

    func run() async throws {
        let (host, port) = try Self.parseAddress(listen)
        let advertisedHost = try advertise.map { try Self.parseAddress($0).host }
        let secret = try Self.loadSecret(secretFile)
        func size(_ text: String?, _ name: String) throws -> Int64? {
            guard let text else { return nil }
            guard let n = ByteCountParser.parse(text), n >= 0 else {
                throw ValidationError("--\(name) \(text) is not a size; use e.g. 500G or 2T")
            }
            return Int64(n)
        }
        guard weight.isFinite, weight >= 0 else { throw ValidationError("--weight must be a number >= 0") }
        let masterURL = try (master ?? ProcessInfo.processInfo.environment["BLOBCTL_MASTER"]).map(Self.parseMasterURL)
        guard heartbeatInterval >= 10 else { throw ValidationError("--heartbeat-interval must be at least 10 ms") }
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        var configuration = ChunkServerConfiguration(
            dataDirectory: URL(fileURLWithPath: data).standardizedFileURL.path, host: host, port: port,
            advertisedHost: advertisedHost, zone: zone, weight: weight,
            capacityBytes: try size(capacity, "capacity"), reserveBytes: try size(reserve, "reserve"),
            secret: secret, scrubBytesPerSecond: try size(scrubRate, "scrub-rate") ?? 0,
            scrubPassInterval: .seconds(max(1, scrubInterval)), masterURL: masterURL,
            heartbeatInterval: .milliseconds(heartbeatInterval))
        configuration.certificate = try tls.certificate()
        configuration.transport = try tls.clusterTransport(
            masterURLs: masterURL.map { $0.split(separator: ",").map(String.init) },
            serving: configuration.certificate)
        configuration.metricsListener = try observability.listener(
            defaultFile: configuration.dataDirectory + "/metrics-address", certificate: configuration.certificate)
        configuration.observeRequests = observability.observeRequests
        observability.bootstrap(level: logLevel)
        let logger = Logger(label: "blobctl.chunkserver")
        let server = ChunkServer(configuration: configuration, logger: logger)
        let scheme = configuration.transport.scheme.rawValue
        try await runUntilSignalled(logger: logger) {
            try await server.run { address, serverID in
                FileHandle.standardOutput.write(
                    Data("chunkserver \(serverID) listening on \(scheme)://\(address)\n".utf8))
            }
        }
    }

    static func parseAddress(_ text: String) throws -> (host: String, port: Int) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
            (0...65535).contains(port), !text[..<colon].isEmpty
        else { throw ValidationError("\(text) is not HOST:PORT (e.g. 127.0.0.1:9401)") }
        return (String(text[..<colon]), port)
    }

    /// `--master`: one master URL, or several separated by commas (`http://H1:P1,http://H2:P2`);
    /// `http://` may be left out. Returns them, normalized, joined by commas.
    static func parseMasterURL(_ text: String) throws -> String {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map {
            $0.trimmingCharacters(in: .whitespaces)
        }
        guard !parts.isEmpty, !parts.contains(where: \.isEmpty) else {
            throw ValidationError(
                "--master \(text) has an empty entry; give http://HOST:PORT, or several separated by commas")
        }
        var urls: [String] = []
        for part in parts {
            let full = part.hasPrefix("http://") || part.hasPrefix("https://") ? part : "http://" + part
            let trimmed = full.hasSuffix("/") ? String(full.dropLast()) : full
            let rest = trimmed.drop(while: { $0 != "/" }).dropFirst(2)
            guard let address = try? parseAddress(String(rest)), address.port > 0 else {
                throw ValidationError(
                    "--master \(part) is not http://HOST:PORT or https://HOST:PORT "
                        + "(e.g. http://127.0.0.1:9400; several: separated by commas)"
                )
            }
            if !urls.contains(trimmed) { urls.append(trimmed) }
        }
        return urls.joined(separator: ",")
    }

    static func loadSecret(_ path: String?) throws -> [UInt8] {
        guard let path = path ?? ProcessInfo.processInfo.environment["BLOBCTL_SECRET_FILE"] else {
            throw ValidationError(
                "no cluster secret: pass --secret-file FILE (or set BLOBCTL_SECRET_FILE); "
                    + "create one with: head -c 32 /dev/urandom | base64 > secret")
        }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ValidationError("cannot read the secret file \(path); check the path and its permissions")
        }
        let secret = RequestSigner.secret(fromFileText: text)
        guard secret.count >= 16 else {
            throw ValidationError("the secret in \(path) is shorter than 16 bytes; make a longer one")
        }
        return secret
    }
}
