import Crypto
import Foundation
import SwiftASN1
import X509

/// The local cluster's certificate authority (`dev up --tls`): a CA made once and kept in
/// `DIR/tls/` (its key mode 0600), and a certificate per process it signs, for 127.0.0.1 and
/// localhost. Clients trust `DIR/tls/ca.pem`.
struct DevCertificates {
    let directory: String

    var caFile: String { directory + "/ca.pem" }
    var caKeyFile: String { directory + "/ca.key" }
    func certificateFile(_ name: String) -> String { directory + "/\(name).pem" }
    func keyFile(_ name: String) -> String { directory + "/\(name).key" }

    /// The CA's lifetime; the servers' certificates are made anew at each `up`, for 90 days.
    static let caLifetime: TimeInterval = 10 * 365 * 86_400
    static let serverLifetime: TimeInterval = 90 * 86_400

    /// The CA in `directory`, made if missing (or unreadable).
    func authority() throws -> (certificate: Certificate, key: P256.Signing.PrivateKey) {
        if let certificateText = try? String(contentsOfFile: caFile, encoding: .utf8),
            let keyText = try? String(contentsOfFile: caKeyFile, encoding: .utf8),
            let certificate = try? Certificate(pemEncoded: certificateText),
            let key = try? P256.Signing.PrivateKey(pemRepresentation: keyText),
            certificate.notValidAfter > Date().addingTimeInterval(Self.serverLifetime)
        {
            return (certificate, key)
        }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("Blobstore")
            CommonName("Blobstore local cluster CA")
        }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Self.caLifetime),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            },
            issuerPrivateKey: .init(key))
        try write(key.pemRepresentation, to: caKeyFile, secret: true)
        try write(try certificate.serializeAsPEM().pemString, to: caFile, secret: false)
        return (certificate, key)
    }

    /// A server certificate for `name` on 127.0.0.1 and localhost, signed by the CA; writes
    /// `name.pem` and `name.key` (0600).
    func issue(_ name: String) throws {
        let (ca, caKey) = try authority()
        let key = P256.Signing.PrivateKey()
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-300), notValidAfter: now.addingTimeInterval(Self.serverLifetime),
            issuer: ca.subject,
            subject: try DistinguishedName {
                OrganizationName("Blobstore")
                CommonName(name)
            },
            signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                SubjectAlternativeNames([
                    .dnsName("localhost"), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1])),
                ])
            },
            issuerPrivateKey: .init(caKey))
        try write(key.pemRepresentation, to: keyFile(name), secret: true)
        try write(try certificate.serializeAsPEM().pemString, to: certificateFile(name), secret: false)
    }

    /// Writes `text` to a new file made with its final mode (a key is never readable by others,
    /// even for a moment), then renames it over `path`.
    private func write(_ text: String, to path: String, secret: Bool) throws {
        let temporary = path + ".new"
        unlink(temporary)
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, secret ? 0o600 : 0o644)
        guard fd >= 0 else {
            throw CLIError(.failure, "cannot create \(temporary): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(text.utf8)
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        let synced = fsync(fd)
        close(fd)
        guard written == bytes.count, synced == 0, rename(temporary, path) == 0 else {
            unlink(temporary)
            throw CLIError(.failure, "cannot write \(path): \(String(cString: strerror(errno)))")
        }
    }
}
