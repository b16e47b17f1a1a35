import BlobCore
import Foundation
public import Logging
import NIOSSL
import PostgresNIO

/// Where a master keeps its metadata: `sqlite:PATH` (the default, embedded) or
/// `postgres://USER@HOST:PORT/DB` (several masters on one database).
public enum MetadataLocation: Sendable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(PostgresLocation)

    /// Parses `--metadata`. A PostgreSQL password never comes from the URL (it would show in
    /// `ps` and shell history): it is read from `passwordFile`, else from the environment's
    /// `BLOBCTL_METADATA_PASSWORD`, else there is none (trust or peer authentication).
    public static func parse(
        _ text: String, passwordFile: String? = nil,
        environment: [String: String]? = nil
    ) throws -> MetadataLocation {
        let environment = environment ?? ProcessInfo.processInfo.environment
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            guard !path.isEmpty else {
                throw BlobError(
                    .invalidArgument, reason: "metadata.location",
                    "--metadata sqlite: needs a path, e.g. sqlite:/var/lib/blob/master.sqlite")
            }
            return .sqlite(path: path)
        }
        guard text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") else {
            throw BlobError(
                .invalidArgument, reason: "metadata.location",
                "--metadata \(text) is neither sqlite:PATH nor postgres://USER@HOST:PORT/DATABASE")
        }
        var password: String?
        if let passwordFile {
            guard let data = FileManager.default.contents(atPath: passwordFile) else {
                throw BlobError(
                    .invalidArgument, reason: "metadata.passwordFile",
                    "cannot read the password file \(passwordFile); create it (mode 600) with the password on one line")
            }
            password = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .newlines)
        } else if let fromEnvironment = environment["BLOBCTL_METADATA_PASSWORD"] {
            password = fromEnvironment
        }
        return .postgres(try PostgresLocation(url: text, password: password))
    }

    public var description: String {
        switch self {
        case .sqlite(let path): return "sqlite:\(path)"
        case .postgres(let location): return location.description
        }
    }

    /// Opens the store (running migrations), runs `body` with it, and closes it after.
    /// `clock` replaces the database clock (tests only).
    /// With `standbys` (PostgreSQL only), stat, list and read plans may be answered by those
    /// hot standbys (``PostgresStandbys``), lagging the primary by at most `maxStandbyLag`.
    public func withStore<T: Sendable>(
        logger: Logger, clock: (@Sendable () -> Int64)? = nil, standbys: PostgresLocation? = nil,
        maxStandbyLag: Duration = .seconds(5), _ body: (MetadataStore) async throws -> T
    ) async throws -> T {
        switch self {
        case .sqlite(let path):
            guard standbys == nil else {
                throw BlobError(
                    .invalidArgument, reason: "metadata.replicas",
                    "--metadata-replicas needs PostgreSQL metadata (--metadata postgres://…); SQLite has no standbys")
            }
            return try await body(MetadataStore(database: try SQLiteDatabase(path: path, clock: clock)))
        case .postgres(let location):
            return try await PostgresDatabase.withDatabase(location, logger: logger, clock: clock) { database in
                guard let standbys else { return try await body(MetadataStore(database: database)) }
                return try await PostgresStandbys.withStandbys(
                    standbys, primary: database, maxLag: maxStandbyLag, logger: logger
                ) { set in
                    try await body(MetadataStore(database: database, standbys: set))
                }
            }
        }
    }
}

/// One PostgreSQL server: a host and a port.
public struct PostgresEndpoint: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// A PostgreSQL database named by
/// `postgres://USER@HOST:PORT[,HOST:PORT…]/DATABASE[?sslmode=disable|prefer|require]`. With several
/// hosts (a primary and its standbys, in any order), the master writes to whichever is the
/// primary (`pg_is_in_recovery()` is false) and finds it again after a failover.
public struct PostgresLocation: Sendable, CustomStringConvertible {
    public var user: String
    public var hosts: [PostgresEndpoint]
    public var database: String
    var password: String?
    public var sslMode: String
    /// How long a request waits for a primary when the one it used is lost: longer than the
    /// HA manager takes to promote a standby (Patroni: about its TTL).
    public var failoverWait: Duration = .seconds(30)

    /// The first host: the one a single-host location names.
    public var host: String { hosts[0].host }
    public var port: Int { hosts[0].port }

    public init(url: String, password: String?) throws {
        let invalid = { (why: String) in
            BlobError(
                .invalidArgument, reason: "metadata.location",
                "--metadata \(url): \(why); expected postgres://USER@HOST:PORT[,HOST:PORT…]/DATABASE")
        }
        // URLComponents takes one host only; the host list is split by hand, each host checked
        // by URLComponents on its own.
        guard let schemeEnd = url.range(of: "://") else { throw invalid("no postgres:// scheme") }
        var rest = Substring(url[schemeEnd.upperBound...])
        var query = ""
        if let mark = rest.firstIndex(of: "?") {
            query = String(rest[rest.index(after: mark)...])
            rest = rest[..<mark]
        }
        guard let slash = rest.firstIndex(of: "/") else { throw invalid("no database name") }
        let database = String(rest[rest.index(after: slash)...])
        var authority = rest[..<slash]
        guard let at = authority.lastIndex(of: "@") else { throw invalid("no user") }
        let userInfo = authority[..<at]
        authority = authority[authority.index(after: at)...]
        guard !userInfo.contains(":") else {
            throw invalid(
                "a password in the URL would show in `ps` and shell history; "
                    + "put it in --metadata-password-file or BLOBCTL_METADATA_PASSWORD"
            )
        }
        let user = userInfo.removingPercentEncoding ?? String(userInfo)
        guard !user.isEmpty else { throw invalid("no user") }
        guard !database.isEmpty, !database.contains("/") else { throw invalid("no database name") }
        var hosts: [PostgresEndpoint] = []
        for item in authority.split(separator: ",", omittingEmptySubsequences: false) {
            guard let parsed = URLComponents(string: "postgres://\(item)"), let host = parsed.host, !host.isEmpty,
                parsed.path.isEmpty
            else { throw invalid("\"\(item)\" is not HOST or HOST:PORT") }
            let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
            let endpoint = PostgresEndpoint(host: bare, port: parsed.port ?? 5432)
            guard !hosts.contains(endpoint) else { throw invalid("\(endpoint) is listed twice") }
            hosts.append(endpoint)
        }
        guard !hosts.isEmpty else { throw invalid("no host") }
        self.user = user
        self.hosts = hosts
        self.database = database
        self.password = password
        let sslMode =
            URLComponents(string: "postgres://h/d?\(query)")?.queryItems?.first { $0.name == "sslmode" }?.value
            ?? "prefer"
        self.sslMode = sslMode
        guard ["disable", "prefer", "require"].contains(sslMode) else {
            throw invalid("sslmode must be disable, prefer or require")
        }
    }

    public var description: String {
        "postgres://\(user)@\(hosts.map(\.description).joined(separator: ","))/\(database)"
    }

    var tls: PostgresConnection.Configuration.TLS {
        switch sslMode {
        case "disable": return .disable
        case "require": return (try? .require(.init(configuration: .makeClientConfiguration()))) ?? .disable
        default: return (try? .prefer(.init(configuration: .makeClientConfiguration()))) ?? .disable
        }
    }

    /// A direct connection's configuration for `endpoint`, giving up after `connectTimeout`.
    func connectionConfiguration(
        _ endpoint: PostgresEndpoint, connectTimeout: TimeAmount = .seconds(10)
    ) -> PostgresConnection.Configuration {
        var configuration = PostgresConnection.Configuration(
            host: endpoint.host, port: endpoint.port, username: user, password: password, database: database,
            tls: tls)
        configuration.options.connectTimeout = connectTimeout
        return configuration
    }

    func clientConfiguration(_ endpoint: PostgresEndpoint) -> PostgresClient.Configuration {
        let clientTLS: PostgresClient.Configuration.TLS
        switch sslMode {
        case "disable": clientTLS = .disable
        case "require": clientTLS = .require(.makeClientConfiguration())
        default: clientTLS = .prefer(.makeClientConfiguration())
        }
        return PostgresClient.Configuration(
            host: endpoint.host, port: endpoint.port, username: user, password: password, database: database,
            tls: clientTLS)
    }

    /// The error as an operator can act on it: what failed, and what to do.
    func explain(_ error: any Error, at endpoint: PostgresEndpoint? = nil) -> any Error {
        let endpoint = endpoint ?? hosts[0]
        let host = endpoint.host
        let port = endpoint.port
        if error is BlobError || error is CancellationError { return error }
        guard let error = error as? PSQLError else { return error }
        let message = error.serverInfo?[.message] ?? "\(error.code)"
        switch error.serverInfo?[.sqlState] {
        case "28P01", "28000":
            return BlobError(
                .permissionDenied, reason: "metadata.login",
                "PostgreSQL at \(host):\(port) refused the login of \(user) (\(message)); put the right password in "
                    + "the file named by --metadata-password-file (or BLOBCTL_METADATA_PASSWORD), "
                    + "or allow the user in pg_hba.conf"
            )
        case "3D000":
            return BlobError(
                .notFound, reason: "metadata.noDatabase",
                "database \(database) does not exist on \(host):\(port); "
                    + "create it with `createdb -O \(user) \(database)`"
            )
        case "42501":
            return BlobError(
                .permissionDenied, reason: "metadata.permission",
                "PostgreSQL refused \(user) a permission on \(database) (\(message)); make \(user) the owner of the "
                    + "database (`ALTER DATABASE \(database) OWNER TO \(user)`) "
                    + "or grant it CREATE and the table privileges"
            )
        case .some:
            return error
        case nil:
            break
        }
        if error.code == .authMechanismRequiresPassword {
            return BlobError(
                .permissionDenied, reason: "metadata.login",
                "PostgreSQL at \(host):\(port) asks \(user) for a password and none was given; put it in the file "
                    + "named by --metadata-password-file (or BLOBCTL_METADATA_PASSWORD)")
        }
        return BlobError(
            .unavailable, reason: "metadata.unreachable",
            "cannot reach PostgreSQL at \(host):\(port) as \(user) "
                + "(\(error.code)\(error.underlying.map { ": \($0)" } ?? "")); "
                + "start it, or fix the address in --metadata")
    }
}
