import AsyncHTTPClient
import BlobClient
import BlobCore
import BlobServerSupport
import BlobTestSupport
import Foundation
import NIOCore
import Testing

@Suite("metrics, probes and request ids on an in-process cluster", .timeLimit(.minutes(5)))
struct ObservabilityTests {
    struct Answer {
        var status: UInt
        var headers: [(String, String)]
        var bytes: [UInt8]
        var body: String { String(decoding: bytes, as: UTF8.self) }

        func header(_ name: String) -> String? { headers.first { $0.0.lowercased() == name.lowercased() }?.1 }
    }

    static func get(_ http: HTTPClient, _ url: String, headers: [(String, String)] = []) async throws -> Answer {
        var request = HTTPClientRequest(url: url)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        let response = try await http.execute(request, timeout: .seconds(30))
        let body = try await response.body.collect(upTo: 16 << 20)
        return Answer(
            status: response.status.code, headers: response.headers.map { ($0.name, $0.value) },
            bytes: Array(body.readableBytesView))
    }

    static func scrape(_ http: HTTPClient, _ address: String) async throws -> MetricsScrape {
        let answer = try await get(http, "http://\(address)/metrics")
        #expect(answer.status == 200 && answer.header("Content-Type")?.hasPrefix("text/plain") == true)
        return MetricsScrape(answer.body)
    }

    @Test("every role answers /metrics, /healthz and /readyz; a put and a GET grow each role's counters")
    func metricsGrow() async throws {
        var options = TestClusterOptions()
        options.masterClock = ManualClock()  // liveness holds still: a loaded machine makes no server suspect
        options.gateway = true
        options.metricsListeners = true
        try await withTestCluster(options) { cluster in
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                let gateway = try #require(cluster.gatewayAddress)
                let master = try await cluster.metricsAddress(of: .master)
                let servers = [
                    try await cluster.metricsAddress(of: .chunkServer(0)),
                    try await cluster.metricsAddress(of: .chunkServer(1)),
                    try await cluster.metricsAddress(of: .chunkServer(2)),
                ]
                let gatewayMetrics = try await cluster.metricsAddress(of: .gateway)
                // Probes: on the metrics listener of every role, and on the serving port too.
                let roles = [("master", master), ("gateway", gatewayMetrics)] + servers.map { ("chunkserver", $0) }
                for (role, address) in roles {
                    for probe in ["healthz", "readyz"] {
                        // Ready within a bound: on a loaded machine a check can pass its 2 s and
                        // answer 503 readiness.timeout for a while, which is what it is for.
                        var answer = try await Self.get(http, "http://\(address)/\(probe)")
                        _ = try await eventually(within: .seconds(30)) {
                            answer = try await Self.get(http, "http://\(address)/\(probe)")
                            return answer.status == 200
                        }
                        let decoded = try JSONDecoder().decode(ProbeAnswer.self, from: Data(answer.body.utf8))
                        #expect(answer.status == 200 && decoded.role == role, "\(role) /\(probe): \(answer.body)")
                    }
                    let scrape = try await Self.scrape(http, address)
                    #expect(scrape.sum("blob_build_info", ["role": role, "version": Blobstore.version]) == 1)
                    #expect(scrape.sum("process_start_time_seconds") > 1_700_000_000)
                }
                for address in [cluster.masterAddress, gateway] + cluster.servers.map(\.address) {
                    #expect(
                        try await eventually(within: .seconds(30)) {
                            try await Self.get(http, "http://\(address)/readyz").status == 200
                        }, "\(address)")
                }

                let beforeMaster = try await Self.scrape(http, master)
                var beforeServers: [MetricsScrape] = []
                for address in servers { beforeServers.append(try await Self.scrape(http, address)) }
                let beforeGateway = try await Self.scrape(http, gatewayMetrics)

                _ = try await cluster.client.createBucket("films", publicRead: true)
                let bytes = SyntheticData.random(byteCount: 3 << 20, seed: 21)
                var put = PutOptions(contentType: "video/mp4", chunker: .fixed(byteCount: 512 << 10))
                put.bucket = "films"
                _ = try await cluster.client.put(.bytes(bytes), to: try BlobPath("films/clip.mp4"), options: put)
                // A GET through the gateway that names its request id: the id comes back.
                let read = try await Self.get(
                    http, "http://\(gateway)/films/clip.mp4", headers: [(RequestID.headerName, "trace-clip-1")])
                #expect(read.status == 200 && read.bytes == bytes)
                #expect(read.header(RequestID.headerName) == "trace-clip-1")
                #expect(read.header("x-amz-request-id") == "trace-clip-1")
                let missing = try await Self.get(http, "http://\(gateway)/no-such-bucket")
                #expect(missing.status == 404)
                // An id that could forge log text is replaced by one of the server's own.
                let forged = try await Self.get(
                    http, "http://\(cluster.masterAddress)/healthz", headers: [(RequestID.headerName, "a b\"c")])
                #expect(forged.header(RequestID.headerName).map { $0.count == 16 && $0 != "a b\"c" } == true)

                let afterMaster = try await Self.scrape(http, master)
                #expect(
                    afterMaster.sum("blob_http_received_bytes_total")
                        > beforeMaster.sum("blob_http_received_bytes_total"))
                #expect(afterMaster.sum("blob_http_sent_bytes_total") > beforeMaster.sum("blob_http_sent_bytes_total"))
                #expect(
                    afterMaster.sum(
                        "blob_http_requests_total", ["route": "/v1/files", "method": "POST", "status_class": "2xx"])
                        >= 1)
                #expect(afterMaster.sum("blob_master_commit_duration_seconds_count") >= 1)
                #expect(afterMaster.sum("blob_master_servers", ["state": "alive"]) == 3)
                #expect(afterMaster.sum("blob_master_is_leader") == 1)
                #expect(afterMaster.sum("blob_master_ring_epoch") >= 1)
                var writes = 0.0
                var received = 0.0
                var stored = 0.0
                for (index, address) in servers.enumerated() {
                    let after = try await Self.scrape(http, address)
                    writes +=
                        after.sum("blob_chunkserver_chunk_writes_total")
                        - beforeServers[index].sum("blob_chunkserver_chunk_writes_total")
                    received +=
                        after.sum("blob_http_received_bytes_total")
                        - beforeServers[index].sum("blob_http_received_bytes_total")
                    stored += after.sum("blob_chunkserver_stored_bytes")
                    #expect(after.sum("blob_chunkserver_durable_write_duration_seconds_count") >= 1)
                    #expect(after.sum("blob_chunkserver_disk_free_bytes") > 0)
                }
                // Six 512 KiB chunks, three copies each, every copy received once by its server.
                #expect(writes == 18, "chunk writes: \(writes)")
                #expect(received >= Double(3 * bytes.count), "chunk server bytes received: \(received)")
                #expect(stored >= Double(3 * bytes.count))
                let afterGateway = try await Self.scrape(http, gatewayMetrics)
                #expect(
                    afterGateway.sum("blob_http_sent_bytes_total") - beforeGateway.sum("blob_http_sent_bytes_total")
                        >= Double(bytes.count))
                #expect(afterGateway.sum("blob_s3_operations_total", ["operation": "GetObject", "code": "OK"]) == 1)
                #expect(
                    afterGateway.sum("blob_s3_operations_total", ["operation": "ListObjects", "code": "NoSuchBucket"])
                        == 1)
                #expect(afterGateway.sum("blob_s3_get_first_byte_seconds_count") == 1)
                try await http.shutdown()
            } catch {
                try? await http.shutdown()
                throw error
            }
        }
    }
}
