import BlobCore
import BlobTransport
import Testing

@Suite("cluster transport")
struct ClusterTransportTests {
    @Test("the masters' scheme is the cluster's: plain, HTTPS, or refused when mixed or a CA comes with http://")
    func schemeFromMasters() throws {
        let plain = try ClusterTransport.forMasters(
            ["http://127.0.0.1:9400", "http://127.0.0.1:9401"], trustRootsFile: nil)
        #expect(!plain.isSecure && plain.url("10.0.0.5:9401", "/v1/chunks/ab") == "http://10.0.0.5:9401/v1/chunks/ab")
        #expect(plain.clientTLSConfiguration == nil)
        let secure = try ClusterTransport.forMasters(["https://m1:9400", "https://m2:9400"], trustRootsFile: nil)
        #expect(secure.isSecure && secure.url("cs-1:9401", "/x?y=1") == "https://cs-1:9401/x?y=1")
        let tls = try #require(secure.clientTLSConfiguration)
        #expect(tls.certificateVerification == .fullVerification)
        #expect(throws: BlobError.self) {
            try ClusterTransport.forMasters(["https://m1:9400", "http://m2:9400"], trustRootsFile: nil)
        }
        #expect(throws: BlobError.self) {
            try ClusterTransport.forMasters(["http://m1:9400"], trustRootsFile: "/etc/ssl/certs/ca-certificates.crt")
        }
        // A CA left in the environment (BLOBCTL_TLS_CA) by another cluster: a plain one ignores it.
        let ignored = try ClusterTransport.forMasters(
            ["http://m1:9400"], trustRootsFile: "/nonexistent/ca.pem", trustRootsNamed: false)
        #expect(!ignored.isSecure && ignored.trustRootsFile == nil)
    }

    @Test("a trust roots file that is missing or holds no certificate fails at start, naming --tls-ca")
    func badTrustRoots() {
        for file in ["/nonexistent/ca.pem", "/etc/hostname"] {
            do {
                _ = try ClusterTransport.tls(trustRootsFile: file)
                Issue.record("\(file) was accepted")
            } catch let error as BlobError {
                #expect(error.reason == "tls.trustRoots" && error.message.contains("--tls-ca"), "\(error)")
            } catch {
                Issue.record("\(error)")
            }
        }
    }

    @Test("loopback listeners are told apart from ones other machines reach (those warn without TLS)")
    func loopback() {
        for host in ["127.0.0.1", "127.1.2.3", "localhost", "::1", "[::1]"] {
            #expect(ListenAddress.isLoopback(host), "\(host)")
        }
        for host in ["0.0.0.0", "10.0.0.5", "::", "example.com", "127.0.0.1.example.com", "1127.0.0.1", ""] {
            #expect(!ListenAddress.isLoopback(host), "\(host)")
        }
    }
}
