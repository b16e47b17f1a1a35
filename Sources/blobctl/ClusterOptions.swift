import ArgumentParser
import BlobClient
import BlobCore
import Foundation

/// The options every client command shares: which cluster, and how to print.
struct ClusterOptions: ParsableArguments {
    @Option(
        help: """
            The master, http://HOST:PORT, or several separated by commas (requests are spread over \
            them and fail over). Env: BLOBCTL_MASTER; default: the cluster `blobctl dev up` started.
            """)
    var master: String?

    @Option(help: "File holding the cluster secret. Env: BLOBCTL_SECRET_FILE.")
    var secretFile: String?

    @Option(
        help: """
            PEM file of the CA certificates an https:// cluster's servers are verified against (default: \
            the system's trust store). Env: BLOBCTL_TLS_CA.
            """)
    var tlsCA: String?

    @Flag(help: "Print JSON instead of text.")
    var json = false

    /// The cluster to talk to: flags, then the environment, then the config `dev up` wrote.
    func address() throws -> ClusterAddress {
        let environment = ProcessInfo.processInfo.environment
        let saved = ClientConfigFile.load()
        guard let master = master ?? environment["BLOBCTL_MASTER"] ?? saved?.master else {
            throw CLIError(
                .usage,
                "no cluster configured: start a local one with `blobctl dev up`, "
                    + "or pass --master http://HOST:PORT and --secret-file FILE")
        }
        guard let secretFile = secretFile ?? environment["BLOBCTL_SECRET_FILE"] ?? saved?.secretFile else {
            throw CLIError(
                .usage,
                "no cluster secret: pass --secret-file FILE (or set BLOBCTL_SECRET_FILE); "
                    + "`blobctl dev env` prints both for a local cluster")
        }
        let url = try ChunkServerCommand.parseMasterURL(master)
        let secret = try ChunkServerCommand.loadSecret(secretFile)
        // The saved CA goes with the saved cluster only.
        let trustRoots =
            tlsCA ?? environment["BLOBCTL_TLS_CA"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (master == saved?.master ? saved?.tlsCA : nil)
        // A CA from the environment or the saved config is for an https:// cluster; a plain one
        // ignores it (only --tls-ca with http:// masters is refused).
        let plain = !url.contains("https://")
        return ClusterAddress(
            masterURL: url, secret: secret, trustRootsFile: plain && tlsCA == nil ? nil : trustRoots)
    }

    /// Runs `body` with a client, turning every failure into a message and an exit code.
    func withClient<T>(_ body: (ClusterClient) async throws -> T) async throws -> T {
        let client: ClusterClient
        do {
            client = try ClusterClient(address: try address())
        } catch {
            throw CLIError.exit(error, json: json)
        }
        do {
            let result = try await body(client)
            try? await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw CLIError.exit(error, json: json)
        }
    }
}

/// Where `blobctl dev up` records the cluster it started, so plain commands find it.
struct ClientConfigFile: Codable {
    var master: String
    var secretFile: String
    var devDirectory: String?
    /// The CA an https:// cluster's servers are verified against (`dev up --tls`).
    var tlsCA: String?

    /// `BLOBCTL_CONFIG`, else `$XDG_CONFIG_HOME/blobctl/config.json`, else `~/.config/blobctl/config.json`.
    static var path: String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["BLOBCTL_CONFIG"], !path.isEmpty { return path }
        let base =
            environment["XDG_CONFIG_HOME"].flatMap { $0.isEmpty ? nil : $0 }
            ?? (NSHomeDirectory() + "/.config")
        return base + "/blobctl/config.json"
    }

    static func load() -> ClientConfigFile? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? JSONDecoder().decode(ClientConfigFile.self, from: data)
    }

    func save() throws {
        let url = URL(fileURLWithPath: Self.path)
        try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try encoder.encode(self).write(to: url, options: .atomic)
    }
}

/// Exit codes of the client commands (docs/cli.md).
enum ExitStatus: Int32 {
    case failure = 1
    case notFound = 2
    case unavailable = 3
    case unauthenticated = 4
    case corrupt = 5
    /// fsck found chunks lost, missing or below R copies.
    case dataAtRisk = 6
    case usage = 64
}

/// A failure the CLI reports: a message for people (or JSON) and an exit code.
struct CLIError: Error, CustomStringConvertible {
    var status: ExitStatus
    var message: String
    var code: String?
    var reason: String?

    init(_ status: ExitStatus, _ message: String, code: String? = nil, reason: String? = nil) {
        self.status = status
        self.message = message
        self.code = code
        self.reason = reason
    }

    var description: String { message }

    /// Prints the error (text on stderr, or a JSON object on stdout with --json) and returns
    /// the exit code to throw.
    static func exit(_ error: any Error, json: Bool) -> ExitCode {
        let failure = CLIError(error)
        // An answer from a server (a coded error) names the request, for its logs.
        let requestID = failure.code == nil ? nil : RequestID.current
        if json {
            var body: [String: String] = [
                "error": failure.message, "code": failure.code ?? "", "reason": failure.reason ?? "",
            ]
            if let requestID { body["request_id"] = requestID }
            if let data = try? snakeCaseJSONEncoder().encode(body) { print(String(decoding: data, as: UTF8.self)) }
        }
        let suffix = requestID.map { " (request id \($0))" } ?? ""
        FileHandle.standardError.write(Data("blobctl: error: \(failure.message)\(suffix)\n".utf8))
        return ExitCode(failure.status.rawValue)
    }

    init(_ error: any Error) {
        if let error = error as? CLIError {
            self = error
            return
        }
        if let error = error as? ValidationError {
            self.init(.usage, error.message)
            return
        }
        if let error = error as? any CodedError {
            let status: ExitStatus
            switch error.code {
            case .notFound: status = .notFound
            case .unavailable, .timeout, .insufficientReplicas: status = .unavailable
            case .unauthenticated, .permissionDenied: status = .unauthenticated
            case .corruptChunk: status = .corrupt
            case .invalidArgument: status = .usage
            default: status = .failure
            }
            self.init(status, error.message, code: error.code.rawValue, reason: error.reason)
            return
        }
        self.init(.failure, "\(error)")
    }
}
