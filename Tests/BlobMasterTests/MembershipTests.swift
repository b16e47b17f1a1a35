import BlobCore
import BlobMaster
import BlobTestSupport
import Foundation
import Logging
import Testing

@Suite("Membership and placement")
struct MembershipTests {
    static func withMembership(
        servers: Int, zones: Int, policy: LivenessPolicy, clock: ManualClock = ManualClock(),
        _ body: (Membership, MetadataStore) async throws -> Void
    ) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("membership-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = MetadataStore(
            database: try SQLiteDatabase(
                path: dir.appendingPathComponent("m.sqlite").path,
                clock: clock.databaseClock))
        let membership = Membership(
            store: store, policy: policy, replicaCount: 3, partitionPower: 8, autoAdmit: true,
            logger: Logger(label: "test"), clock: clock)
        for i in 0..<servers {
            _ = try await membership.register(Self.registration(i, zones: zones), nowMilliseconds: 1)
        }
        try await body(membership, store)
    }

    static func registration(_ i: Int, zones: Int, address: String? = nil) -> ServerRegistration {
        ServerRegistration(
            serverID: "cs-\(i)", address: address ?? "127.0.0.1:\(9000 + i)", zone: "z\(i % zones)", weight: 1,
            capacityBytes: nil,
            usage: ServerUsage(
                usedBytes: 0, freeDiskBytes: 0, chunkCount: 0,
                logicalBytes: 0, inFlightRequests: 0))
    }

    static func heartbeat(_ membership: Membership, _ i: Int, sequence: Int64) async throws {
        let r = registration(i, zones: 1)
        _ = try await membership.heartbeat(
            ServerHeartbeat(serverID: r.serverID, address: r.address, usage: r.usage, sequence: sequence))
    }

    static let ids = (0..<200).map { ChunkID(hashing: Array("placement:\($0)".utf8)) }

    @Test("the ring appears once R failure domains registered, and every placement names R distinct zones")
    func ringAndPlacement() async throws {
        try await Self.withMembership(servers: 2, zones: 3, policy: .init()) { membership, _ in
            #expect(await membership.ring == nil, "two servers cannot hold three replicas")
            await #expect(throws: BlobError.self) {
                try await membership.place([PlacementRequestEntry(id: Self.ids[0], plainByteCount: 1)])
            }
            _ = try await membership.register(Self.registration(2, zones: 3), nowMilliseconds: 2)
            _ = try await membership.register(Self.registration(3, zones: 3), nowMilliseconds: 2)
            let ring = try #require(await membership.ring)
            #expect(ring.members.count == 4 && ring.failureDomain == .zone)
            let reply = try await membership.place(Self.ids.map { PlacementRequestEntry(id: $0, plainByteCount: 1) })
            for answer in reply.chunks {
                #expect(!answer.isPresent)
                #expect(answer.targets.map(\.id) == ring.replicaIDs(for: answer.id))
                let zones = answer.targets.map { Int($0.id.dropFirst(3))! % 3 }
                #expect(Set(zones).count == 3)
            }
        }
    }

    @Test("servers go suspect then down without heartbeats; placement routes around them, keeping zones distinct")
    func routesAroundDownServers() async throws {
        let policy = LivenessPolicy(
            heartbeatInterval: .seconds(5), suspectAfter: .seconds(15), downAfter: .seconds(600))
        let clock = ManualClock()
        try await Self.withMembership(servers: 6, zones: 3, policy: policy, clock: clock) { membership, _ in
            let ring = try #require(await membership.ring)
            // Everyone but cs-4 heartbeats every 5 s; cs-4 is silent from the start.
            var sequence: Int64 = 0
            func tick(_ seconds: Int) async throws {
                for _ in 0..<(seconds / 5) {
                    clock.advance(by: .seconds(5))
                    sequence += 1
                    for i in [0, 1, 2, 3, 5] { try await Self.heartbeat(membership, i, sequence: sequence) }
                }
            }
            try await tick(10)
            #expect(await membership.state(of: "cs-4") == .alive, "10 s of silence is within suspectAfter")
            try await tick(5)
            #expect(await membership.state(of: "cs-4") == .suspect, "suspect at exactly suspectAfter")
            #expect(await membership.needsRepair("cs-4") == false, "suspect data is not repaired")
            try await tick(580)
            #expect(await membership.state(of: "cs-4") == .suspect, "595 s is still within the grace period")
            try await tick(5)
            #expect(await membership.state(of: "cs-4") == .down)
            #expect(await membership.needsRepair("cs-4"))
            for i in [0, 1, 2, 3, 5] { #expect(await membership.state(of: "cs-\(i)") == .alive) }
            let reply = try await membership.place(Self.ids.map { PlacementRequestEntry(id: $0, plainByteCount: 1) })
            var substituted = 0
            for answer in reply.chunks {
                #expect(answer.targets.count == 3)
                #expect(!answer.targets.contains { $0.id == "cs-4" })
                #expect(Set(answer.targets.map { Int($0.id.dropFirst(3))! % 3 }).count == 3, "zones stay distinct")
                let wanted = ring.replicaIDs(for: answer.id)
                if wanted.contains("cs-4") {
                    substituted += 1
                    // The usable replicas keep their places; only cs-4 is replaced, by its zone-mate.
                    #expect(Array(answer.targets.map(\.id).prefix(2)) == wanted.filter { $0 != "cs-4" })
                    #expect(answer.targets[2].id == "cs-1")
                }
            }
            #expect(substituted > 0)
            // Back: a heartbeat makes it alive and placement uses it again.
            try await Self.heartbeat(membership, 4, sequence: sequence + 1)
            #expect(await membership.state(of: "cs-4") == .alive)
            #expect(await membership.needsRepair("cs-4") == false)
        }
    }

    @Test("a server in maintenance is not repaired while its window lasts, and is once it ends")
    func maintenanceWindow() async throws {
        let policy = LivenessPolicy(heartbeatInterval: .seconds(5), suspectAfter: .seconds(15), downAfter: .seconds(60))
        let clock = ManualClock()
        try await Self.withMembership(servers: 3, zones: 3, policy: policy, clock: clock) { membership, _ in
            let end = try await membership.setMaintenance("cs-2", seconds: 300)
            #expect(end == clock.wallMilliseconds + 300_000)
            clock.advance(by: .seconds(120))
            #expect(await membership.state(of: "cs-2") == .down)
            #expect(await membership.needsRepair("cs-2") == false, "down but in maintenance")
            #expect(await membership.maintenanceEnd("cs-2") == end)
            clock.advance(by: .seconds(180))
            #expect(await membership.needsRepair("cs-2"), "the window ended")
            #expect(await membership.maintenanceEnd("cs-2") == nil)
        }
    }

    @Test("silence while no master ran is not held against a server: unknown, then down after a grace period")
    func unknownAfterMasterGap() async throws {
        let policy = LivenessPolicy(heartbeatInterval: .seconds(5), suspectAfter: .seconds(15), downAfter: .seconds(60))
        let clock = ManualClock()
        let lease = LeasePolicy(timeToLive: .seconds(10))
        try await Self.withMembership(servers: 3, zones: 3, policy: policy, clock: clock) { _, store in
            // The first master led, then died without a word (its lease runs out on its own).
            let first = LeaderElection(
                store: store, policy: lease, takeOverAtStart: true, logger: Logger(label: "test"), clock: clock)
            await first.round()
            #expect(await first.currentTerm?.term == 1)
            // Two minutes with no master at all: nobody could hear a heartbeat.
            clock.advance(by: .seconds(120))
            let election = LeaderElection(
                store: store, policy: lease, takeOverAtStart: true, logger: Logger(label: "test"), clock: clock)
            await election.round()
            #expect(await election.currentTerm?.term == 2)
            let restarted = Membership(
                store: store, policy: policy, replicaCount: 3, partitionPower: 8, autoAdmit: true,
                logger: Logger(label: "test"), clock: clock)
            await restarted.setLeadership(election)
            try await restarted.load()
            #expect(await restarted.state(of: "cs-1") == .unknown, "heard only before the gap")
            #expect(await restarted.hasUnsettledRingMembers())
            clock.advance(by: .seconds(59))
            #expect(await restarted.state(of: "cs-1") == .unknown)
            clock.advance(by: .seconds(1))
            #expect(await restarted.state(of: "cs-1") == .down)
            #expect(await restarted.needsRepair("cs-1"))
            try await Self.heartbeat(restarted, 1, sequence: 1)
            #expect(await restarted.state(of: "cs-1") == .alive)
        }
    }

    @Test("a heartbeat that reached one master counts at every other, in database time")
    func heartbeatsShared() async throws {
        let policy = LivenessPolicy(heartbeatInterval: .seconds(5), suspectAfter: .seconds(15), downAfter: .seconds(60))
        let clock = ManualClock()
        try await Self.withMembership(servers: 3, zones: 3, policy: policy, clock: clock) { first, store in
            let second = Membership(
                store: store, policy: policy, replicaCount: 3, partitionPower: 8, autoAdmit: true,
                logger: Logger(label: "test"), clock: clock)
            try await second.load()
            #expect(await second.state(of: "cs-0") == .alive, "registered at the first master")
            #expect(await second.ring?.epoch == (await first.ring?.epoch))
            clock.advance(by: .seconds(40))
            // cs-0 heartbeats to the first master only; the second sees it at its next refresh.
            try await Self.heartbeat(first, 0, sequence: 1)
            try await first.refresh()  // writes the heartbeats it received
            let before = await second.state(of: "cs-0")
            #expect(before == .suspect, "silent for 40 s as far as the second master has read")
            try await second.refresh()
            #expect(await second.state(of: "cs-0") == .alive)
            #expect(await second.state(of: "cs-1") == .suspect, "silent for 40 s")
            // A maintenance window set at one master holds at the other.
            _ = try await first.setMaintenance("cs-1", seconds: 300)
            clock.advance(by: .seconds(30))
            try await second.refresh()
            #expect(await second.state(of: "cs-1") == .down)
            #expect(await second.needsRepair("cs-1") == false, "in maintenance, set at the other master")
        }
    }

    @Test("with too few alive servers, suspect ones fill the write targets; down ones never do")
    func suspectServersFillIn() async throws {
        let policy = LivenessPolicy(heartbeatInterval: .seconds(5), suspectAfter: .seconds(15), downAfter: .seconds(60))
        let clock = ManualClock()
        try await Self.withMembership(servers: 3, zones: 3, policy: policy, clock: clock) { membership, _ in
            clock.advance(by: .seconds(20))
            // All three are silent now; cs-0 heartbeats, so it alone is alive.
            try await Self.heartbeat(membership, 0, sequence: 1)
            #expect(await membership.state(of: "cs-0") == .alive)
            #expect(await membership.state(of: "cs-1") == .suspect)
            #expect(await membership.state(of: "cs-2") == .suspect)
            let reply = try await membership.place(Self.ids.map { PlacementRequestEntry(id: $0, plainByteCount: 1) })
            for answer in reply.chunks {
                #expect(answer.targets.count == 3, "suspect servers still take writes when nothing else can")
                #expect(answer.targets.first?.id == "cs-0", "the alive server leads")
            }
            // cs-0 and cs-1 heartbeat; cs-2 stays silent until it is down.
            try await Self.heartbeat(membership, 1, sequence: 1)
            clock.advance(by: .seconds(45))
            try await Self.heartbeat(membership, 0, sequence: 2)
            try await Self.heartbeat(membership, 1, sequence: 2)
            #expect(await membership.state(of: "cs-2") == .down)
            let again = try await membership.place(Self.ids.map { PlacementRequestEntry(id: $0, plainByteCount: 1) })
            for answer in again.chunks {
                #expect(
                    answer.targets.count == 2 && !answer.targets.contains { $0.id == "cs-2" },
                    "a down server is never a target")
            }
        }
    }

    @Test("chunks with R live holders are present; with a holder down they are placed again")
    func presence() async throws {
        let policy = LivenessPolicy(heartbeatInterval: .seconds(5), suspectAfter: .seconds(15), downAfter: .seconds(60))
        let clock = ManualClock()
        try await Self.withMembership(servers: 3, zones: 3, policy: policy, clock: clock) { membership, store in
            let id = Self.ids[7]
            for server in ["cs-0", "cs-1", "cs-2"] {
                try await store.recordReplicas(
                    [ReplicaReport(chunkID: id, plainByteCount: 10, storedByteCount: 10)],
                    on: server)
            }
            for i in [0, 1, 2] { try await Self.heartbeat(membership, i, sequence: 1) }
            let present = try await membership.place([PlacementRequestEntry(id: id, plainByteCount: 10)])
            #expect(present.chunks[0].isPresent && present.chunks[0].holders.count == 3)
            clock.advance(by: .seconds(20))
            for i in [0, 1] { try await Self.heartbeat(membership, i, sequence: 2) }
            #expect(await membership.state(of: "cs-2") == .suspect)
            let suspect = try await membership.place([PlacementRequestEntry(id: id, plainByteCount: 10)])
            #expect(!suspect.chunks[0].isPresent, "a suspect holder does not count as a live copy")
            clock.advance(by: .seconds(45))
            for i in [0, 1] { try await Self.heartbeat(membership, i, sequence: 3) }
            #expect(await membership.state(of: "cs-2") == .down)
            let again = try await membership.place([PlacementRequestEntry(id: id, plainByteCount: 10)])
            #expect(!again.chunks[0].isPresent)
            #expect(Set(again.chunks[0].holders.map(\.id)) == ["cs-0", "cs-1"])
        }
    }

    @Test("a heartbeat from an unknown server or a new address is answered notFound, so the server registers again")
    func unknownAndMoved() async throws {
        try await Self.withMembership(servers: 3, zones: 3, policy: .init()) { membership, _ in
            let stranger = Self.registration(9, zones: 3)
            await #expect(throws: BlobError.self) {
                try await membership.heartbeat(
                    ServerHeartbeat(serverID: "cs-9", address: stranger.address, usage: stranger.usage, sequence: 1))
            }
            let moved = Self.registration(1, zones: 3, address: "127.0.0.1:7777")
            await #expect(throws: BlobError.self) {
                try await membership.heartbeat(
                    ServerHeartbeat(serverID: "cs-1", address: moved.address, usage: moved.usage, sequence: 1))
            }
            _ = try await membership.register(moved, nowMilliseconds: 5)
            #expect(await membership.endpoint("cs-1")?.address == "127.0.0.1:7777")
            let epoch = await membership.ring?.epoch
            _ = try await membership.register(moved, nowMilliseconds: 6)
            #expect(await membership.ring?.epoch == epoch, "re-registering a member does not change the ring")
        }
    }
}
