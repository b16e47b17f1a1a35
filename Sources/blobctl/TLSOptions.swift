import ArgumentParser
import BlobCore
import BlobTransport
import Foundation

/// The TLS options every server role shares: the certificate it serves, and the CA it verifies
/// the cluster's other servers against.
struct TLSOptions: ParsableArguments {
    @Option(
        help: """
            PEM certificate chain to serve HTTPS with (the server's certificate first); with --tls-key. \
            Read again on SIGHUP.
            """)
    var tlsCert: String?

    @Option(help: "PEM private key of --tls-cert.")
    var tlsKey: String?

    @Option(
        help: """
            PEM file of the CA certificates the cluster's servers are verified against (default: the \
            system's trust store). Env: BLOBCTL_TLS_CA.
            """)
    var tlsCA: String?

    func validate() throws {
        try Self.checkPair(tlsCert, tlsKey)
    }

    static func checkPair(_ certificateFile: String?, _ keyFile: String?) throws {
        guard (certificateFile == nil) == (keyFile == nil) else {
            throw ValidationError("--tls-cert and --tls-key go together: give both (PEM files), or neither")
        }
    }

    /// The trust roots file: the flag, else `BLOBCTL_TLS_CA`.
    var trustRootsFile: String? {
        tlsCA ?? ProcessInfo.processInfo.environment["BLOBCTL_TLS_CA"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// The certificate to serve, read now (nil without --tls-cert).
    func certificate() throws -> ServerCertificate? {
        try Self.certificate(tlsCert, tlsKey)
    }

    static func certificate(_ certificateFile: String?, _ keyFile: String?) throws -> ServerCertificate? {
        guard let certificateFile, let keyFile else { return nil }
        do {
            return try ServerCertificate(certificateFile: certificateFile, keyFile: keyFile)
        } catch let error as BlobError {
            throw ValidationError(error.message)
        }
    }

    /// How this server reaches the cluster's other servers: the masters' scheme when it has
    /// masters, else its own. A server that serves TLS in a cluster whose masters are plain (or
    /// the reverse) could not be reached by its peers, so that is refused at start.
    func clusterTransport(masterURLs: [String]?, serving certificate: ServerCertificate?) throws -> ClusterTransport {
        do {
            guard let masterURLs, !masterURLs.isEmpty else {
                if certificate == nil, let tlsCA {
                    throw ValidationError(
                        "--tls-ca \(tlsCA) is given without --tls-cert; a cluster is all HTTPS or all HTTP")
                }
                // BLOBCTL_TLS_CA left in the environment by another cluster does not matter here.
                return certificate == nil ? .plain : try .tls(trustRootsFile: trustRootsFile)
            }
            let transport = try ClusterTransport.forMasters(
                masterURLs, trustRootsFile: trustRootsFile, trustRootsNamed: tlsCA != nil)
            if transport.isSecure != (certificate != nil) {
                throw ValidationError(
                    transport.isSecure
                        ? "the masters are https:// but this server has no --tls-cert; in an HTTPS cluster every "
                            + "server serves TLS"
                        : "this server has --tls-cert but the masters are http://; give them as https://HOST:PORT "
                            + "(a cluster is all HTTPS or all HTTP)")
            }
            return transport
        } catch let error as BlobError {
            throw ValidationError(error.message)
        }
    }
}
