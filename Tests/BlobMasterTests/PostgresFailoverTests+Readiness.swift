import AsyncHTTPClient
import BlobCore
@testable import BlobMaster
import BlobServerSupport
import BlobTestSupport
import Foundation
import Testing

extension PostgresFailoverTests {
    @Test("/readyz turns 503 when the master's database stops answering, and 200 once it is back")
    func readinessFollowsTheDatabase() async throws {
        try await Self.withPrimaryAndStandby { primary, standby, dir in
            let location = try PostgresLocation(
                url: "postgres://blobtest@127.0.0.1:\(primary.port)/postgres", password: nil)
            var configuration = MasterConfiguration(
                dataDirectory: dir + "/master", secret: Array("readiness-test-secret-0123".utf8))
            configuration.metadata = .postgres(location)
            configuration.metricsListener = ObservabilityListenerConfiguration(
                addressFile: dir + "/master-metrics-address")
            let master = MasterServer(configuration: configuration, logger: Self.logger)
            let address = AddressBox("")
            let running = Task { try await master.run { address.set($0) } }
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                _ = try await eventually(within: .seconds(60)) { address.isBound }
                let metrics = try await eventually(within: .seconds(30)) {
                    FileManager.default.fileExists(atPath: dir + "/master-metrics-address")
                }
                #expect(address.isBound && metrics)
                let listener = try String(contentsOfFile: dir + "/master-metrics-address", encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
                func ready(_ host: String) async throws -> (UInt, ProbeAnswer?) {
                    let response = try await http.execute(
                        HTTPClientRequest(url: "http://\(host)/readyz"), timeout: .seconds(10))
                    let body = try await response.body.collect(upTo: 1 << 16)
                    return (response.status.code, try? JSONDecoder().decode(ProbeAnswer.self, from: Data(buffer: body)))
                }
                for host in [address.current, listener] {
                    #expect(try await ready(host).0 == 200, "ready on \(host) while the database answers")
                }
                // The database goes away: both ports say why the master cannot serve.
                await Self.stop(primary)
                var answer: (UInt, ProbeAnswer?) = (0, nil)
                #expect(
                    try await eventually(within: .seconds(30)) {
                        answer = try await ready(address.current)
                        return answer.0 == 503
                    })
                #expect(answer.1?.status == "not ready" && answer.1?.reason?.isEmpty == false, "\(answer)")
                #expect(try await ready(listener).0 == 503)
                #expect(
                    try await http.execute(
                        HTTPClientRequest(url: "http://\(address.current)/healthz"), timeout: .seconds(10)
                    ).status.code == 200,
                    "the process still answers")
                // Back on the same port: ready again, without a restart of the master.
                let back = try await Self.start(
                    primary.dataDirectory, socket: dir + "/socket", log: dir + "/primary-again.log",
                    settings: ["synchronous_standby_names=*", "wal_level=replica", "max_wal_senders=5"],
                    port: primary.port)
                defer { Task { await Self.stop(back) } }
                #expect(try await eventually(within: .seconds(60)) { try await ready(address.current).0 == 200 })
                #expect(try await ready(listener).0 == 200)
                _ = standby
                await Self.stop(back)
            } catch {
                running.cancel()
                _ = await running.result
                try? await http.shutdown()
                throw error
            }
            running.cancel()
            _ = await running.result
            try await http.shutdown()
        }
    }
}
