import Foundation
import Testing

/// HTTPS everywhere, as a user runs it: `blobctl dev up --tls`, blobctl, curl and the S3
/// clients against it, a certificate renewed under a live connection, and the refusals a
/// misconfigured process meets.
@Suite("TLS", .timeLimit(.minutes(10)))
struct TLSTests {
    struct DevUp: Decodable {
        var masterURL: String
        var gatewayURL: String
        var accessKeyID: String
        var secretAccessKey: String
        var tlsCA: String?
        var members: [Member]
        struct Member: Decodable {
            var name: String
            var role: String
            var pid: Int32
            var address: String
            var log: String
        }
    }

    @Test(
        "dev up --tls: put/get and S3 clients over verified HTTPS; untrusted and plain clients refused; SIGHUP reload"
    )
    func devUpWithTLS() async throws {
        try await withTemporaryDirectory { dir in
            let clusterDir = dir.appendingPathComponent("cluster").path
            let environment = [
                "BLOBCTL_CONFIG": dir.appendingPathComponent("config.json").path, "BLOBCTL_DEV_DIR": clusterDir,
                "BLOBCTL_MASTER": "", "BLOBCTL_SECRET_FILE": "", "BLOBCTL_TLS_CA": "",
            ]
            func blobctl(_ args: [String], _ extra: [String: String] = [:]) async throws -> BlobctlProcess.Output {
                try await BlobctlProcess.run(
                    args, timeout: .seconds(120), environment: environment.merging(extra) { $1 })
            }
            var up = BlobctlProcess.Output(status: -1, stdout: "", stderr: "")
            for _ in 0..<4 {
                up = try await blobctl(["dev", "up", "--tls", "--port", "\(Int.random(in: 20_000...60_000))"])
                if up.status == 0 { break }
            }
            try #require(up.status == 0, "\(up.stderr)")
            let cluster = try JSONDecoder().decode(
                DevUp.self, from: Data(contentsOf: URL(fileURLWithPath: clusterDir + "/cluster.json")))
            do {
                try await checks(cluster, dir: dir, clusterDir: clusterDir, blobctl: blobctl)
            } catch {
                _ = try? await blobctl(["dev", "down"])
                throw error
            }
            let down = try await blobctl(["dev", "down"])
            #expect(down.status == 0, "\(down.stderr)")
        }
    }

    func checks(
        _ cluster: DevUp, dir: URL, clusterDir: String,
        blobctl: ([String], [String: String]) async throws -> BlobctlProcess.Output
    ) async throws {
        let ca = try #require(cluster.tlsCA)
        #expect(cluster.masterURL.hasPrefix("https://127.0.0.1:") && cluster.gatewayURL.hasPrefix("https://"))
        // Plain commands use the cluster and its CA from the client config dev up wrote. A file
        // of several chunks is written to one server, which forwards it to two others over TLS.
        let local = dir.appendingPathComponent("clip.bin")
        try Data((0..<(9 << 20)).map { _ in UInt8.random(in: 0...255) }).write(to: local)
        let put = try await blobctl(["put", local.path, "files/clip.bin"], [:])
        #expect(put.status == 0, "\(put.stderr)")
        let back = dir.appendingPathComponent("clip.out")
        let get = try await blobctl(["get", "files/clip.bin", back.path], [:])
        #expect(get.status == 0, "\(get.stderr)")
        #expect(try Data(contentsOf: back) == Data(contentsOf: local))
        let status = try await blobctl(["cluster", "status", "--json"], [:])
        let servers =
            (try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["servers"]
            as? [[String: Any]] ?? []
        #expect(servers.count == 3 && servers.allSatisfy { $0["state"] as? String == "alive" }, "\(status.stdout)")
        // fsck: the master asks every chunk server for its inventory, over HTTPS.
        let fsck = try await blobctl(["fsck", "--json"], [:])
        #expect(fsck.status == 0, "\(fsck.stdout) \(fsck.stderr)")

        // curl: refused without the CA, answered with it; a plain request to the TLS port gets no HTTP answer.
        let health = cluster.masterURL + "/healthz"
        let (untrusted, _) = try await GatewayTests.tool("/usr/bin/curl", ["-s", "-o", "/dev/null", health], dir: dir)
        #expect(untrusted == 60, "curl's exit status for an unverified certificate")
        let trusted = try await GatewayTests.curl(health, ["--cacert", ca], dir: dir)
        #expect(trusted.status == 200)
        let plain = try await GatewayTests.curl(health.replacingOccurrences(of: "https://", with: "http://"), dir: dir)
        #expect(plain.status == 0 || plain.status == 400, "no HTTP answer over plain HTTP: \(plain.status)")

        // A client that trusts another CA is refused at once, with the fix in the message; one
        // that speaks plain HTTP to the HTTPS master is told to use https://.
        let strangerDir = dir.appendingPathComponent("stranger")
        try FileManager.default.createDirectory(at: strangerDir, withIntermediateDirectories: true)
        let stranger = strangerDir.appendingPathComponent("ca.pem").path
        let (made, _) = try await GatewayTests.tool(
            "/usr/bin/openssl",
            [
                "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
                strangerDir.appendingPathComponent("ca.key").path, "-subj", "/CN=stranger", "-days", "1", "-out",
                stranger,
            ], dir: dir)
        try #require(made == 0)
        let secret = clusterDir + "/secret"
        let refused = try await blobctl(
            ["ls", "files/", "--master", cluster.masterURL, "--secret-file", secret, "--tls-ca", stranger], [:])
        #expect(refused.status == 3, "\(refused.stderr)")
        #expect(
            refused.stderr.contains("CERTIFICATE_VERIFY_FAILED") && refused.stderr.contains("--tls-ca"),
            "\(refused.stderr)")
        let http = cluster.masterURL.replacingOccurrences(of: "https://", with: "http://")
        let plainClient = try await blobctl(["ls", "files/", "--master", http, "--secret-file", secret], [:])
        #expect(plainClient.status == 3 && plainClient.stderr.contains("https://"), "\(plainClient.stderr)")

        // A server configured against the cluster's scheme does not start.
        let tls = clusterDir + "/tls"
        let mismatch = try await blobctl(
            [
                "chunkserver", "--data", dir.appendingPathComponent("cs-x").path, "--listen", "127.0.0.1:0",
                "--master", http, "--secret-file", secret, "--tls-cert", tls + "/cs-1.pem", "--tls-key",
                tls + "/cs-1.key",
            ], [:])
        #expect(mismatch.status == 64 && mismatch.stderr.contains("https://"), "\(mismatch.stderr)")
        let wrongKey = try await blobctl(
            [
                "master", "--data", dir.appendingPathComponent("m-x").path, "--listen", "127.0.0.1:0",
                "--secret-file", secret, "--tls-cert", tls + "/cs-1.pem", "--tls-key", tls + "/master.key",
            ], [:])
        #expect(wrongKey.status == 64 && wrongKey.stderr.contains("TLS identity"), "\(wrongKey.stderr)")

        // Prometheus is told to scrape over HTTPS with the CA.
        let scrape = try String(contentsOfFile: clusterDir + "/prometheus.yml", encoding: .utf8)
        #expect(scrape.contains("scheme: https") && scrape.contains(ca))

        // boto3 (whose uploads over TLS are aws-chunked with trailing checksums), the aws CLI
        // and rclone, with the same checks they pass over plain HTTP.
        let key = try await blobctl(["key", "create", "--name", "tls", "--json"], [:])
        let created = try JSONSerialization.jsonObject(with: Data(key.stdout.utf8)) as? [String: Any]
        let id = try #require(created?["access_key_id"] as? String, "\(key.stdout) \(key.stderr)")
        let secretKey = try #require(created?["secret_access_key"] as? String)
        let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Gateway")
        let work = dir.appendingPathComponent("s3-clients")
        try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
        let (s3Status, s3Output) = try await GatewayTests.tool(
            "/usr/bin/env",
            [
                "AWS_CA_BUNDLE=\(ca)", "SSL_CERT_FILE=\(ca)", "RCLONE_CA_CERT=\(ca)", "BIG_MIB=64", "python3",
                scripts.appendingPathComponent("s3_clients.py").path, cluster.gatewayURL, id, secretKey, work.path,
            ], dir: dir, timeout: .seconds(400), mergeErrors: true)
        #expect(s3Status == 0 && s3Output.contains("all S3 client checks passed"), "\(s3Output.suffix(3000))")

        // The gateway's certificate renewed on SIGHUP under a connection that stays open.
        let gateway = try #require(cluster.members.first { $0.role == "gateway" })
        let port = try #require(gateway.address.split(separator: ":").last.map(String.init))
        let (reloadStatus, reloadOutput) = try await GatewayTests.tool(
            "/usr/bin/env",
            [
                "python3", scripts.appendingPathComponent("tls_reload.py").path, "127.0.0.1", port,
                "\(gateway.pid)", tls + "/gateway.pem", tls + "/gateway.key", ca, tls + "/ca.key", gateway.log,
            ], dir: dir, timeout: .seconds(120), mergeErrors: true)
        #expect(
            reloadStatus == 0 && reloadOutput.contains("certificate reload checks passed"),
            "\(reloadOutput.suffix(3000))")
        // And the cluster still serves through it.
        let again = try await GatewayTests.curl(cluster.gatewayURL + "/healthz", ["--cacert", ca], dir: dir)
        #expect(again.status == 200)
    }
}
