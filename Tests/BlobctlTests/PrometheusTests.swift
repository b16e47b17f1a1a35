import AsyncHTTPClient
import BlobCore
import BlobTestSupport
import Foundation
import NIOCore
import Testing

/// A local cluster as `blobctl dev up` starts it, scraped by a real Prometheus (Debian's
/// `prometheus`) with the configuration `dev up` wrote; one request followed through every
/// process's log by its id.
@Suite("metrics scraped by Prometheus, request ids across processes", .timeLimit(.minutes(5)))
struct PrometheusTests {
    static let prometheus = "/usr/bin/prometheus"

    struct Cluster: Decodable {
        struct Member: Decodable {
            var name: String
            var role: String
            var log: String
            var metricsAddress: String?
        }
        var members: [Member]
        var gatewayURL: String?
        var accessKeyID: String?
        var secretAccessKey: String?
    }

    /// PromQL `query` through Prometheus's HTTP API: each series' labels and value.
    static func query(_ http: HTTPClient, _ port: Int, _ query: String) async throws -> [([String: String], Double)] {
        var components = URLComponents(string: "http://127.0.0.1:\(port)/api/v1/query")!
        components.queryItems = [URLQueryItem(name: "query", value: query)]
        let response = try await http.execute(HTTPClientRequest(url: components.string!), timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 1 << 20)
        struct Answer: Decodable {
            struct Data: Decodable {
                struct Series: Decodable {
                    var metric: [String: String]
                    var value: [ValueOrTime]
                }
                var result: [Series]
            }
            var status: String
            var data: Data?
        }
        enum ValueOrTime: Decodable {
            case time(Double)
            case text(String)
            init(from decoder: any Decoder) throws {
                let container = try decoder.singleValueContainer()
                if let time = try? container.decode(Double.self) {
                    self = .time(time)
                } else {
                    self = .text(try container.decode(String.self))
                }
            }
        }
        guard response.status == .ok else { return [] }
        let answer = try JSONDecoder().decode(Answer.self, from: Data(buffer: body))
        return (answer.data?.result ?? []).map { series in
            var value = Double.nan
            if case .text(let text) = series.value.last { value = Double(text) ?? .nan }
            return (series.metric, value)
        }
    }

    /// Whether Prometheus accepts `query` (parses and evaluates it).
    static func accepts(_ http: HTTPClient, _ port: Int, _ query: String) async throws -> Bool {
        var components = URLComponents(string: "http://127.0.0.1:\(port)/api/v1/query")!
        components.queryItems = [URLQueryItem(name: "query", value: query)]
        let response = try await http.execute(HTTPClientRequest(url: components.string!), timeout: .seconds(10))
        _ = try await response.body.collect(upTo: 1 << 20)
        return response.status == .ok
    }

    /// Received body bytes per job, as Prometheus last scraped them.
    static func receivedBytes(_ http: HTTPClient, _ port: Int) async throws -> [String: Double] {
        var out: [String: Double] = [:]
        for (labels, value) in try await query(http, port, "sum by (job) (blob_http_received_bytes_total)") {
            out[labels["job"] ?? ""] = value
        }
        return out
    }

    @Test("Prometheus scrapes all of dev up's cluster (up == 1); a put grows master, gateway and chunk server bytes")
    func prometheusScrapesTheCluster() async throws {
        guard FileManager.default.isExecutableFile(atPath: Self.prometheus) else {
            throw TestFailure("Prometheus is not installed: `apt-get install prometheus` (Scripts/test-tools.sh does)")
        }
        try await withTemporaryDirectory { dir in
            let clusterDir = dir.appendingPathComponent("cluster").path
            let environment = [
                "BLOBCTL_CONFIG": dir.appendingPathComponent("config.json").path, "BLOBCTL_DEV_DIR": clusterDir,
            ]
            func blobctl(_ args: [String]) async throws -> BlobctlProcess.Output {
                try await BlobctlProcess.run(args, timeout: .seconds(120), environment: environment)
            }
            var up = BlobctlProcess.Output(status: -1, stdout: "", stderr: "")
            for _ in 0..<4 {
                up = try await blobctl(["dev", "up", "--port", "\(Int.random(in: 20_000...60_000))"])
                if up.status == 0 { break }
            }
            try #require(up.status == 0, "\(up.stderr)")
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let spawner = ThreadSpawner()
            let server = Process()
            do {
                let config = clusterDir + "/prometheus.yml"
                #expect(up.stdout.contains(config), "dev up says where the scrape configuration is")
                let cluster = try JSONDecoder().decode(
                    Cluster.self, from: Data(contentsOf: URL(fileURLWithPath: clusterDir + "/cluster.json")))
                #expect(cluster.members.allSatisfy { $0.metricsAddress != nil }, "cluster.json names every listener")

                let port = try freeLoopbackPort()
                server.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
                server.arguments = [
                    "--pdeathsig", "KILL", "--", Self.prometheus, "--config.file=\(config)",
                    "--storage.tsdb.path=\(dir.path)/prometheus-data", "--web.listen-address=127.0.0.1:\(port)",
                ]
                let log = dir.appendingPathComponent("prometheus.log")
                _ = FileManager.default.createFile(atPath: log.path, contents: nil)
                server.standardOutput = try FileHandle(forWritingTo: log)
                server.standardError = try FileHandle(forWritingTo: log)
                server.standardInput = FileHandle.nullDevice
                try await spawner.start(server)

                // Every target up: 1 master, 3 chunk servers, 1 gateway.
                var up: [([String: String], Double)] = []
                let allUp = try await eventually(within: .seconds(90)) {
                    up = (try? await Self.query(http, port, "up")) ?? []
                    return up.count == 5 && up.allSatisfy { $0.1 == 1 }
                }
                #expect(allUp, "up: \(up); \((try? String(contentsOf: log, encoding: .utf8))?.suffix(1500) ?? "")")
                let jobs = Set(up.compactMap { $0.0["job"] })
                #expect(jobs == ["blobstore-master", "blobstore-chunkserver", "blobstore-gateway"], "\(jobs)")
                let before = try await Self.receivedBytes(http, port)

                // A put through the gateway (boto3), then a presigned GET that names its request id.
                let local = dir.appendingPathComponent("clip.bin")
                try Data(SyntheticData.random(byteCount: 2 << 20, seed: 31)).write(to: local)
                let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                    .appendingPathComponent("Gateway/put_and_presign.py")
                let gateway = try #require(cluster.gatewayURL)
                let (status, output) = try await GatewayTests.tool(
                    "/usr/bin/env",
                    [
                        "python3", script.path, gateway, cluster.accessKeyID ?? "", cluster.secretAccessKey ?? "",
                        "media", "clip.bin", local.path,
                    ], dir: dir, timeout: .seconds(120), mergeErrors: true)
                #expect(status == 0, "\(output.suffix(2000))")
                let url = try #require(output.split(separator: "\n").last.map(String.init))
                let requestID = "prom-\(UInt32.random(in: 0...UInt32.max))"
                let read = try await GatewayTests.curl(url, ["-H", "Blob-Request-ID: \(requestID)"], dir: dir)
                let sent = try Data(contentsOf: local)
                #expect(read.status == 200 && read.body == sent)
                #expect(read.headers["x-amz-request-id"] == requestID && read.headers["blob-request-id"] == requestID)

                // Prometheus sees the bytes arrive at every role (it scrapes every 5 s).
                var after: [String: Double] = [:]
                let grew = try await eventually(within: .seconds(60)) {
                    after = try await Self.receivedBytes(http, port)
                    // Random bytes: the chunk servers receive at least their size (zstd keeps them raw).
                    let needed = [
                        "blobstore-master": 1.0, "blobstore-chunkserver": Double(2 << 20),
                        "blobstore-gateway": Double(2 << 20),
                    ]
                    return needed.allSatisfy { job, bytes in (after[job] ?? 0) - (before[job] ?? 0) >= bytes }
                }
                #expect(grew, "before \(before), after \(after)")
                #expect(
                    (after["blobstore-chunkserver"] ?? 0) - (before["blobstore-chunkserver"] ?? 0) >= Double(2 << 20))

                // Every query of the Grafana dashboard in docs/ is one Prometheus accepts.
                let dashboardFile = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                    .deletingLastPathComponent().deletingLastPathComponent()
                    .appendingPathComponent("docs/grafana-dashboard.json")
                struct Dashboard: Decodable {
                    struct Panel: Decodable {
                        struct Target: Decodable { var expr: String }
                        var title: String
                        var targets: [Target]
                    }
                    var panels: [Panel]
                }
                let dashboard = try JSONDecoder().decode(Dashboard.self, from: Data(contentsOf: dashboardFile))
                #expect(dashboard.panels.count >= 10)
                for panel in dashboard.panels {
                    for target in panel.targets {
                        #expect(try await Self.accepts(http, port, target.expr), "\(panel.title): \(target.expr)")
                    }
                }

                // The GET's id is in the master's log (its read plan) and a chunk server's (the chunk).
                func logged(_ role: String) -> Bool {
                    cluster.members.filter { $0.role == role }.contains { member in
                        ((try? String(contentsOfFile: member.log, encoding: .utf8)) ?? "").contains(
                            "request.id=\(requestID)")
                    }
                }
                #expect(try await eventually(within: .seconds(10)) { logged("master") && logged("chunkserver") })

                // A failed command names its request id, and the master logged the request under it.
                let missing = try await blobctl(["get", "media/absent", dir.appendingPathComponent("x").path])
                let id = missing.stderr.components(separatedBy: "(request id ").dropFirst().first?.prefix(16)
                #expect(missing.status != 0 && id != nil, "\(missing.stderr)")
                if let id {
                    let master = cluster.members.first { $0.role == "master" }
                    let text = master.flatMap { try? String(contentsOfFile: $0.log, encoding: .utf8) } ?? ""
                    #expect(text.contains("request.id=\(id)"), "the master's log names the failed command's request")
                }
            } catch {
                if server.isRunning { kill(server.processIdentifier, SIGKILL) }
                spawner.release()
                try? await http.shutdown()
                _ = try? await blobctl(["dev", "down"])
                throw error
            }
            if server.isRunning {
                kill(server.processIdentifier, SIGTERM)
                _ = try? await eventually(within: .seconds(20)) { !server.isRunning }
                if server.isRunning { kill(server.processIdentifier, SIGKILL) }
            }
            spawner.release()
            try await http.shutdown()
            let down = try await blobctl(["dev", "down"])
            #expect(down.status == 0)
        }
    }
}
