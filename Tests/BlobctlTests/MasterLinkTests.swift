import BlobCore
import Foundation
import Hummingbird
import ServiceLifecycle
import Synchronization
import Testing

/// A recording stand-in for the master's side of the membership protocol: it checks tokens and
/// bodies exactly as the master will and remembers what it was sent. The master itself (issue 5)
/// will be tested with the same chunk server against its real routes.
final class RecordingMaster: Sendable {
    let registrations = LockedList<ServerRegistration>()
    let heartbeats = LockedList<ServerHeartbeat>()
    let refused = LockedList<String>()
    let reports = LockedList<ChunkReport>()
    private let forgetServers = Mutex(false)
    let signer: RequestSigner

    init(signer: RequestSigner) { self.signer = signer }

    /// From now on, answer heartbeats with 404, as a master that lost its state would.
    func forget(_ value: Bool) { forgetServers.withLock { $0 = value } }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.post("/v1/cluster/servers") { request, _ -> Response in
            guard self.authorized(request) else { return Self.status(401) }
            let body = try await request.body.collect(upTo: 1 << 20)
            self.registrations.append(try JSONDecoder().decode(ServerRegistration.self, from: Data(buffer: body)))
            self.forget(false)
            return try Self.reply()
        }
        router.post("/v1/cluster/servers/:id/heartbeat") { request, context -> Response in
            guard self.authorized(request) else { return Self.status(401) }
            if self.forgetServers.withLock({ $0 }) {
                let body = ErrorBody(
                    code: "notFound", reason: "server.unknown", message: "unknown server", node: "master")
                return Response(
                    status: .notFound, body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(body))))
            }
            let body = try await request.body.collect(upTo: 1 << 20)
            let beat = try JSONDecoder().decode(ServerHeartbeat.self, from: Data(buffer: body))
            guard beat.serverID == context.parameters.get("id") else { return Self.status(400) }
            self.heartbeats.append(beat)
            return try Self.reply()
        }
        router.post("/v1/cluster/servers/:id/reports") { request, _ -> Response in
            guard self.authorized(request) else { return Self.status(401) }
            let body = try await request.body.collect(upTo: 16 << 20)
            self.reports.append(try JSONDecoder().decode(ChunkReport.self, from: Data(buffer: body)))
            return Self.status(204)
        }
        return router
    }

    func authorized(_ request: Request) -> Bool {
        do {
            _ = try signer.verify(
                header: request.headers[.authorization], method: request.method.rawValue,
                pathAndQuery: request.head.path ?? "", now: Int64(Date().timeIntervalSince1970),
                allowed: [.server])
            return true
        } catch {
            refused.append("\(error)")
            return false
        }
    }

    static func status(_ code: Int) -> Response { Response(status: .init(code: code)) }

    static func reply() throws -> Response {
        let reply = MembershipReply(heartbeatIntervalMilliseconds: 100, ringEpoch: 1)
        return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: try JSONEncoder().encode(reply))))
    }
}

@Suite("blobctl chunkserver --master", .timeLimit(.minutes(3)))
struct MasterLinkTests {
    @Test("a chunk server registers, heartbeats its usage at the master's interval, and registers again when forgotten")
    func registerAndHeartbeat() async throws {
        try await withTemporaryDirectory { dir in
            let secretFile = dir.appendingPathComponent("secret")
            let secret = Array("a-test-cluster-secret-of-32-byte".utf8)
            try Data(secret).write(to: secretFile)
            let signer = try RequestSigner(secret: secret)
            let master = RecordingMaster(signer: signer)
            let port = Mutex(0)
            let app = Application(
                router: master.router(), configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in port.withLock { $0 = channel.localAddress?.port ?? 0 } })
            let group = ServiceGroup(configuration: .init(services: [app], logger: .init(label: "test-master")))
            try await withThrowingTaskGroup(of: Void.self) { tasks in
                tasks.addTask { try await group.run() }
                defer { tasks.cancelAll() }
                #expect(try await ChunkServerFaultTests.eventually(within: .seconds(30)) { port.withLock { $0 } != 0 })
                let server = ChunkServerProcess(
                    dataDirectory: dir.appendingPathComponent("cs"), secretFile: secretFile,
                    extraArguments: [
                        "--master", "http://127.0.0.1:\(port.withLock { $0 })", "--zone", "rack-7",
                        "--weight", "2", "--heartbeat-interval", "100",
                    ])
                do {
                    try await server.start()
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                            master.registrations.count >= 1
                        })
                    let registration = try #require(master.registrations.items.first)
                    #expect(registration.serverID == server.serverID)
                    #expect(registration.address == server.address)
                    #expect(registration.zone == "rack-7" && registration.weight == 2)

                    // A write shows up in the usage of a later heartbeat.
                    let http = HTTPClientForTests.make()
                    let client = TestClient(http: http, signer: signer)
                    let plain = SyntheticData.logs(byteCount: 200_000, seed: 1)
                    let id = ChunkID(hashing: plain)
                    #expect(
                        try await client.send(
                            .PUT, server.address, "/v1/chunks/\(id.hex)",
                            body: ChunkEncoder().frame(for: plain)
                        ).status == 201)
                    try await http.shutdown()
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                            master.heartbeats.items.contains {
                                $0.usage.chunkCount == 1 && $0.usage.logicalBytes == 200_000
                            }
                        })
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                            master.reports.items.contains {
                                $0.added.contains { $0.id == id && $0.plainByteCount == 200_000 }
                            }
                        }, "the new chunk is reported")
                    let sequences = master.heartbeats.items.map(\.sequence)
                    #expect(sequences == sequences.sorted() && Set(sequences).count == sequences.count)

                    // A master that forgets the server gets a new registration.
                    master.forget(true)
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                            master.registrations.count >= 2
                        })
                    #expect(master.refused.items.isEmpty, "\(master.refused.items)")
                    // After registering again it reports its whole inventory.
                    #expect(
                        try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                            master.reports.items.filter { $0.added.contains { $0.id == id } }.count >= 2
                        })
                    try await server.stop()
                } catch {
                    try? await server.kill()
                    throw error
                }
                await group.triggerGracefulShutdown()
            }
        }
    }
}
