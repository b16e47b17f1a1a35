public import AsyncHTTPClient
import BlobCore
public import NIOSSL

/// How the components of one cluster reach each other: plain HTTP (loopback development), or
/// HTTPS with every server's certificate verified against the cluster's trust roots.
///
/// A cluster is all one or all the other: its masters' URL scheme says which, and a master
/// serving TLS speaks HTTPS to its chunk servers. Addresses stay `HOST:PORT` everywhere (the
/// ring, the registry, read plans); the scheme is added when a request is made.
public struct ClusterTransport: Sendable {
    public enum Scheme: String, Sendable { case http, https }

    public let scheme: Scheme
    /// The certificates servers are verified against (nil: the system's trust store).
    public let trustRoots: [NIOSSLCertificate]?
    /// The file ``trustRoots`` came from, for messages and for processes started from here.
    public let trustRootsFile: String?

    /// Plain HTTP.
    public static let plain = ClusterTransport(scheme: .http, trustRoots: nil, trustRootsFile: nil)

    private init(scheme: Scheme, trustRoots: [NIOSSLCertificate]?, trustRootsFile: String?) {
        self.scheme = scheme
        self.trustRoots = trustRoots
        self.trustRootsFile = trustRootsFile
    }

    /// HTTPS, verifying servers against the PEM certificates in `trustRootsFile` (nil: the
    /// system's trust store). The file is read now, so a bad one is reported at start.
    public static func tls(trustRootsFile: String?) throws -> ClusterTransport {
        guard let trustRootsFile else { return ClusterTransport(scheme: .https, trustRoots: nil, trustRootsFile: nil) }
        let roots: [NIOSSLCertificate]
        do {
            roots = try NIOSSLCertificate.fromPEMFile(trustRootsFile)
        } catch {
            throw BlobError(
                .invalidArgument, reason: "tls.trustRoots",
                "cannot read certificates from \(trustRootsFile) (\(error)); --tls-ca takes a PEM file of the "
                    + "CA certificates that sign the cluster's servers")
        }
        guard !roots.isEmpty else {
            throw BlobError(
                .invalidArgument, reason: "tls.trustRoots",
                "\(trustRootsFile) holds no PEM certificate; --tls-ca takes the CA certificates that sign the "
                    + "cluster's servers")
        }
        return ClusterTransport(scheme: .https, trustRoots: roots, trustRootsFile: trustRootsFile)
    }

    /// The transport of a cluster whose masters are at `masterURLs`: HTTPS when they are
    /// `https://` (all of them, or it is an error), verified against `trustRootsFile`. A trust
    /// roots file with plain masters is an error when it was asked for by name (`--tls-ca`), and
    /// ignored when it came from the environment (a shell left with another cluster's CA).
    public static func forMasters(
        _ masterURLs: [String], trustRootsFile: String?, trustRootsNamed: Bool = true
    ) throws -> ClusterTransport {
        let secure = masterURLs.filter { $0.hasPrefix("https://") }.count
        if secure == 0 {
            if let trustRootsFile, trustRootsNamed {
                throw BlobError(
                    .invalidArgument, reason: "tls.schemeMismatch",
                    "--tls-ca \(trustRootsFile) is given but the masters are plain http:// URLs; "
                        + "give them as https://HOST:PORT")
            }
            return .plain
        }
        guard secure == masterURLs.count else {
            throw BlobError(
                .invalidArgument, reason: "tls.schemeMismatch",
                "the masters \(masterURLs.joined(separator: ",")) mix http:// and https://; "
                    + "a cluster uses one or the other")
        }
        return try .tls(trustRootsFile: trustRootsFile)
    }

    public var isSecure: Bool { scheme == .https }

    /// `SCHEME://ADDRESS/PATH?QUERY` for a server at `address` (`HOST:PORT`).
    public func url(_ address: String, _ pathAndQuery: String) -> String {
        "\(scheme.rawValue)://\(address)\(pathAndQuery)"
    }

    /// Client TLS: the server's certificate chain must lead to a trust root and name the host
    /// (or IP address) connected to.
    public var clientTLSConfiguration: TLSConfiguration? {
        guard isSecure else { return nil }
        var configuration = TLSConfiguration.makeClientConfiguration()
        configuration.certificateVerification = .fullVerification
        configuration.minimumTLSVersion = .tlsv12
        if let trustRoots { configuration.trustRoots = .certificates(trustRoots) }
        return configuration
    }

    /// `base` with this transport's client TLS.
    public func configure(_ base: HTTPClient.Configuration) -> HTTPClient.Configuration {
        var configuration = base
        if let tls = clientTLSConfiguration { configuration.tlsConfiguration = tls }
        return configuration
    }
}

extension ClusterTransport {
    /// What a failed TLS handshake means and what to do about it; nil when `error` is not one.
    /// Such a failure is the same on every try: callers report it rather than retry.
    public static func tlsProblem(_ error: any Error) -> String? {
        let text = String(describing: error)
        if text.contains("CERTIFICATE_VERIFY_FAILED") {
            return "its TLS certificate did not verify (CERTIFICATE_VERIFY_FAILED): not signed by a CA this "
                + "process trusts, expired or not yet valid, or sent without its intermediate certificates; "
                + "check the server's certificate (openssl x509 -noout -dates -issuer), and pass --tls-ca "
                + "(env BLOBCTL_TLS_CA) with the CA that signed it"
        }
        if text.contains("failedToValidateHostname") || text.contains("unableToValidateCertificate") {
            return "its TLS certificate does not name the host or IP address connected to; the server's "
                + "certificate needs it among its subject alternative names"
        }
        if text.contains("WRONG_VERSION_NUMBER") || text.contains("HTTP_REQUEST") {
            return "it does not speak TLS; a plain HTTP cluster is given as http://HOST:PORT"
        }
        if text.contains("handshakeFailed") {
            return "the TLS handshake failed (\(text))"
        }
        return nil
    }
}

extension ClusterTransport: CustomStringConvertible {
    public var description: String {
        switch scheme {
        case .http: "plain HTTP"
        case .https: "HTTPS verified against \(trustRootsFile ?? "the system's trust store")"
        }
    }
}
