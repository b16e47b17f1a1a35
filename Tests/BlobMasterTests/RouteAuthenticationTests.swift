import AsyncHTTPClient
import BlobCore
@testable import BlobMaster
import BlobServerSupport
import BlobTestSupport
import Foundation
import Logging
import Testing

@Suite("Master route authentication")
struct MasterRouteAuthenticationTests {
    /// Every route the master registers, however it was added, refuses a request without a
    /// token (401) and a valid token of a role it does not accept (403), and lets its own roles
    /// through. A route added with `router.get(...)` instead of `AuthenticatedRoutes` fails here.
    @Test("every master route refuses unsigned and wrong-role requests")
    func everyRouteIsAuthenticated() async throws {
        try await MetadataTesting.withStore(.sqlite) { store, _ in
            let secret = Array("route-authentication-test-secret".utf8)
            let signer = try RequestSigner(secret: secret)
            let logger = Logger(label: "test.routes")
            let server = MasterServer(
                configuration: MasterConfiguration(dataDirectory: NSTemporaryDirectory(), secret: secret),
                logger: logger)
            let membership = Membership(
                store: store, policy: LivenessPolicy(), replicaCount: 3, autoAdmit: true, logger: logger)
            let client = HTTPClient(eventLoopGroupProvider: .singleton)
            let peer = ChunkServerPeer(client: client, signer: signer)
            let repairer = Repairer(
                store: store, membership: membership, peer: peer, bytesPerSecond: nil,
                fullScanInterval: .seconds(3600), logger: logger)
            let rebalancer = Rebalancer(store: store, membership: membership, peer: peer, logger: logger)
            let routes = server.makeRouter(
                store: store, signer: signer, membership: membership, peer: peer,
                repairer: repairer, rebalancer: rebalancer,
                election: LeaderElection(store: store, policy: LeasePolicy(), takeOverAtStart: true, logger: logger),
                metrics: ServerMetrics(role: "master"), operations: OperationsRecord(), logger: logger)
            let failures = try await RouteAuthenticationCheck.failures(
                of: routes, signer: signer, parameters: ["id": "cs-unknown", "name": "no-such-bucket"])
            await rebalancer.stopForShutdown()
            try await client.shutdown()
            #expect(failures == [])
            // The table is the master's whole API: a route lost from registration shows here.
            #expect(routes.router.routes.count == 44)
        }
    }
}
