import BlobCore
public import Foundation
public import NIOSSL
import Synchronization

/// A server's TLS identity, read from a certificate chain and a private key (PEM files), and
/// read again on ``reload()`` (SIGHUP): connections accepted after a reload use the new
/// certificate, connections already open keep the one they started with.
public final class ServerCertificate: Sendable {
    public let certificateFile: String
    public let keyFile: String
    private let state: Mutex<Loaded>

    /// What one reading of the files gave.
    public struct Loaded: Sendable {
        public let context: NIOSSLContext
        /// The leaf certificate's serial number, hex, for logs.
        public let serial: String
        /// When the leaf certificate expires.
        public let notValidAfter: Date
    }

    /// Reads both files now: a missing or malformed one fails the server's start.
    public init(certificateFile: String, keyFile: String) throws {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        state = Mutex(try Self.load(certificateFile: certificateFile, keyFile: keyFile))
    }

    /// The context a new connection's handshake uses.
    public var context: NIOSSLContext { state.withLock { $0.context } }

    public var current: Loaded { state.withLock { $0 } }

    /// Reads the files again and, if they make a valid identity, uses it for new connections.
    /// On failure the previous identity stays and the error is thrown.
    @discardableResult
    public func reload() throws -> Loaded {
        let loaded = try Self.load(certificateFile: certificateFile, keyFile: keyFile)
        state.withLock { $0 = loaded }
        return loaded
    }

    static func load(certificateFile: String, keyFile: String) throws -> Loaded {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw BlobError(
                .invalidArgument, reason: "tls.certificate",
                "cannot read a certificate chain from \(certificateFile) (\(error)); --tls-cert takes a PEM file, "
                    + "the server's certificate first")
        }
        guard let leaf = chain.first else {
            throw BlobError(
                .invalidArgument, reason: "tls.certificate",
                "\(certificateFile) holds no PEM certificate; --tls-cert takes the server's certificate chain")
        }
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw BlobError(
                .invalidArgument, reason: "tls.key",
                "cannot read a private key from \(keyFile) (\(error)); --tls-key takes the PEM private key of "
                    + "the --tls-cert certificate")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        configuration.minimumTLSVersion = .tlsv12
        let context: NIOSSLContext
        do {
            // BoringSSL checks here that the key belongs to the certificate.
            context = try NIOSSLContext(configuration: configuration)
        } catch {
            throw BlobError(
                .invalidArgument, reason: "tls.keyMismatch",
                "\(keyFile) and \(certificateFile) do not make a TLS identity (\(error)); is the key the "
                    + "certificate's own?")
        }
        return Loaded(
            context: context,
            serial: leaf.serialNumber.map { String($0, radix: 16) }.map {
                $0.count == 1 ? "0" + $0 : $0
            }.joined(),
            notValidAfter: Date(timeIntervalSince1970: TimeInterval(leaf.notValidAfter)))
    }
}

/// Whether a listener on `host` can be reached from other machines: anything but a loopback
/// name or address. A server that listens there without TLS warns at start.
public enum ListenAddress {
    public static func isLoopback(_ host: String) -> Bool {
        let bare = host.hasPrefix("[") && host.hasSuffix("]") ? String(host.dropFirst().dropLast()) : host
        if bare == "localhost" || bare == "::1" { return true }
        let parts = bare.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }
}
