import AsyncHTTPClient
@testable import BlobChunkServer
import BlobCore
import BlobServerSupport
import BlobTestSupport
import Foundation
import Logging
import NIOPosix
import Testing

@Suite("Chunk server route authentication")
struct ChunkServerRouteAuthenticationTests {
    /// Every route the chunk server registers refuses a request without a token (401) and a
    /// valid token of a role it does not accept (403): deleting and copying chunks is the
    /// master's alone. A route added outside `AuthenticatedRoutes` fails here.
    @Test("every chunk server route refuses unsigned and wrong-role requests")
    func everyRouteIsAuthenticated() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("routes-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let secret = Array("route-authentication-test-secret".utf8)
        let signer = try RequestSigner(secret: secret)
        let threads = NIOThreadPool(numberOfThreads: 2)
        threads.start()
        let storage = ChunkStorage(
            configuration: ChunkServerConfiguration(dataDirectory: dir.path, secret: secret),
            logger: Logger(label: "test.routes"), threadPool: threads)
        let serverID = try await storage.open()
        let client = HTTPClient(eventLoopGroupProvider: .singleton)
        let chunkRoutes = ChunkRoutes(
            storage: storage,
            forwarder: ReplicationForwarder(
                transport: HTTPPeerTransport(client: client), signer: signer, timeout: .seconds(5)),
            signer: signer, serverID: serverID, addressBox: AddressBox("127.0.0.1:1"),
            terms: LeaderTermGuard(dataDirectory: dir.path))
        let routes = ChunkServer.makeRouter(
            routes: chunkRoutes, signer: signer, inFlight: InFlightCounter(),
            metrics: ServerMetrics(role: "chunkserver"),
            readiness: ChunkServerMetrics.readiness(storage: storage, registration: nil),
            logger: {
                var quiet = Logger(label: "test.routes")
                quiet.logLevel = .warning
                return quiet
            }())
        let failures = try await RouteAuthenticationCheck.failures(
            of: routes, signer: signer, parameters: ["id": ChunkID(hashing: Array("absent".utf8)).hex])
        try await client.shutdown()
        try await threads.shutdownGracefully()
        #expect(failures == [])
        #expect(routes.router.routes.count == 10)
    }
}
