import BlobClient
import BlobCore
import BlobMaster
import BlobTestSupport
import Foundation
import Testing

/// Membership over real HTTP between the servers, with the master's clock in the test's hand:
/// states change exactly at the policy's boundaries, with no waiting on a real clock.
@Suite("Liveness on an in-process cluster with a manual master clock", .timeLimit(.minutes(5)))
struct LivenessTests {
    @Test("a stopped server turns suspect, then down at the grace period; started again it is alive at a new address")
    func suspectDownAlive() async throws {
        let clock = ManualClock()
        try await withTestCluster(RepairTests.options(servers: 3, clock: clock)) { cluster in
            let ids = Set(cluster.servers.map(\.id))
            #expect(Set(try await cluster.client.clusterStatus().servers.map(\.id)) == ids)
            let victim = cluster.servers[1]
            func state() async throws -> ServerState? {
                try await cluster.client.clusterStatus().servers.first { $0.id == victim.id }?.state
            }
            await cluster.stopServer(1)
            let running = ids.subtracting([victim.id])
            try await RepairTests.age(cluster, clock, seconds: 1, running: running)
            #expect(try await state() == .alive, "1 s of silence is within suspectAfter (2 s)")
            try await RepairTests.age(cluster, clock, seconds: 1, running: running)
            #expect(try await state() == .suspect)
            try await RepairTests.age(cluster, clock, seconds: 2, running: running)
            #expect(try await state() == .suspect, "4 s is within downAfter (5 s)")
            try await RepairTests.age(cluster, clock, seconds: 1, running: running)
            #expect(try await state() == .down)
            for id in running {
                #expect(try await cluster.client.clusterStatus().servers.first { $0.id == id }?.state == .alive)
            }
            let restarted = try await cluster.startServer(1)
            #expect(restarted.id == victim.id, "the same data directory keeps its id")
            let back = try await eventually(within: .seconds(20)) { try await state() == .alive }
            #expect(back)
            let entry = try await cluster.client.clusterStatus().servers.first { $0.id == victim.id }
            #expect(entry?.address == restarted.address, "the restarted server's new address is known")
            let ring = try await cluster.client.clusterStatus()
            #expect(ring.servers.filter(\.inRing).count == 3, "the ring kept its members")
        }
    }
}
