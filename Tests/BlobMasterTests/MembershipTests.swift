import BlobCore
import BlobMaster
import Foundation
import Logging
import Testing

@Suite("Membership and placement")
struct MembershipTests {
    static func withMembership(
        servers: Int, zones: Int, policy: LivenessPolicy, _ body: (Membership, MetadataStore) async throws -> Void
    ) async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("membership-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let store = MetadataStore(database: try SQLiteDatabase(path: dir.appendingPathComponent("m.sqlite").path))
        let membership = Membership(store: store, policy: policy, replicaCount: 3, partitionPower: 8, autoAdmit: true,
                                    logger: Logger(label: "test"))
        for i in 0..<servers {
            _ = try await membership.register(Self.registration(i, zones: zones), nowMilliseconds: 1)
        }
        try await body(membership, store)
    }

    static func registration(_ i: Int, zones: Int, address: String? = nil) -> ServerRegistration {
        ServerRegistration(serverID: "cs-\(i)", address: address ?? "127.0.0.1:\(9000 + i)", zone: "z\(i % zones)", weight: 1,
                           capacityBytes: nil, usage: ServerUsage(usedBytes: 0, freeDiskBytes: 0, chunkCount: 0,
                                                                  logicalBytes: 0, inFlightRequests: 0))
    }

    static func heartbeat(_ membership: Membership, _ i: Int, sequence: Int64) async throws {
        let r = registration(i, zones: 1)
        _ = try await membership.heartbeat(ServerHeartbeat(serverID: r.serverID, address: r.address, usage: r.usage, sequence: sequence))
    }

    static let ids = (0..<200).map { ChunkID(hashing: Array("placement:\($0)".utf8)) }

    @Test("the ring appears once R failure domains registered, and every placement names R distinct zones")
    func ringAndPlacement() async throws {
        try await Self.withMembership(servers: 2, zones: 3, policy: .init()) { membership, _ in
            #expect(await membership.ring == nil, "two servers cannot hold three replicas")
            await #expect(throws: BlobError.self) { try await membership.place([PlacementRequestEntry(id: Self.ids[0], plainByteCount: 1)]) }
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
        // Wide enough margins that a loaded machine (the whole suite runs in parallel) does not
        // make the heartbeating servers late too.
        let policy = LivenessPolicy(heartbeatInterval: .milliseconds(10), suspectAfter: .milliseconds(2500),
                                    downAfter: .milliseconds(5000))
        try await Self.withMembership(servers: 6, zones: 3, policy: policy) { membership, _ in
            let ring = try #require(await membership.ring)
            // Keep all but cs-4 alive until cs-4 is down.
            var sequence: Int64 = 0
            var sawSuspect = false
            let deadline = ContinuousClock.now + .seconds(20)
            while await membership.state(of: "cs-4") != .down && ContinuousClock.now < deadline {
                sequence += 1
                for i in [0, 1, 2, 3, 5] { try await Self.heartbeat(membership, i, sequence: sequence) }
                if await membership.state(of: "cs-4") == .suspect { sawSuspect = true }
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(sawSuspect)
            #expect(await membership.state(of: "cs-4") == .down)
            for i in [0, 1, 2, 3, 5] { try await Self.heartbeat(membership, i, sequence: sequence + 1) }
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
        }
    }

    @Test("with too few alive servers, suspect ones fill the write targets; down ones never do")
    func suspectServersFillIn() async throws {
        // Margins wide enough for a loaded machine (the suite runs in parallel with real clusters).
        let policy = LivenessPolicy(heartbeatInterval: .milliseconds(10), suspectAfter: .milliseconds(1500),
                                    downAfter: .milliseconds(60_000))
        try await Self.withMembership(servers: 3, zones: 3, policy: policy) { membership, _ in
            let deadline = ContinuousClock.now + .seconds(20)
            while await membership.state(of: "cs-2") != .suspect && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            // All three are silent now; cs-0 heartbeats, so it alone is alive.
            try await Self.heartbeat(membership, 0, sequence: 1)
            #expect(await membership.state(of: "cs-0") == .alive)
            #expect(await membership.state(of: "cs-2") == .suspect)
            let reply = try await membership.place(Self.ids.map { PlacementRequestEntry(id: $0, plainByteCount: 1) })
            for answer in reply.chunks {
                #expect(answer.targets.count == 3, "suspect servers still take writes when nothing else can")
                #expect(answer.targets.first?.id == "cs-0", "the alive server leads")
            }
        }
        let quick = LivenessPolicy(heartbeatInterval: .milliseconds(10), suspectAfter: .milliseconds(1000),
                                   downAfter: .milliseconds(2000))
        try await Self.withMembership(servers: 3, zones: 3, policy: quick) { membership, _ in
            let deadline = ContinuousClock.now + .seconds(20)
            while await membership.state(of: "cs-2") != .down && ContinuousClock.now < deadline {
                try await Self.heartbeat(membership, 0, sequence: 1)
                try await Self.heartbeat(membership, 1, sequence: 1)
                try await Task.sleep(for: .milliseconds(20))
            }
            try await Self.heartbeat(membership, 0, sequence: 2)
            try await Self.heartbeat(membership, 1, sequence: 2)
            let reply = try await membership.place(Self.ids.map { PlacementRequestEntry(id: $0, plainByteCount: 1) })
            for answer in reply.chunks {
                #expect(answer.targets.count == 2 && !answer.targets.contains { $0.id == "cs-2" }, "a down server is never a target")
            }
        }
    }

    @Test("chunks with R live holders are present; with a holder down they are placed again")
    func presence() async throws {
        let policy = LivenessPolicy(heartbeatInterval: .milliseconds(10), suspectAfter: .milliseconds(2500),
                                    downAfter: .milliseconds(5000))
        try await Self.withMembership(servers: 3, zones: 3, policy: policy) { membership, store in
            let id = Self.ids[7]
            for server in ["cs-0", "cs-1", "cs-2"] {
                try await store.recordReplicas([ReplicaReport(chunkID: id, plainByteCount: 10, storedByteCount: 10)],
                                               on: server)
            }
            for i in [0, 1, 2] { try await Self.heartbeat(membership, i, sequence: 1) }
            let present = try await membership.place([PlacementRequestEntry(id: id, plainByteCount: 10)])
            #expect(present.chunks[0].isPresent && present.chunks[0].holders.count == 3)
            let deadline = ContinuousClock.now + .seconds(20)
            var sequence: Int64 = 1
            while await membership.state(of: "cs-2") == .alive && ContinuousClock.now < deadline {
                sequence += 1
                for i in [0, 1] { try await Self.heartbeat(membership, i, sequence: sequence) }
                try await Task.sleep(for: .milliseconds(20))
            }
            for i in [0, 1] { try await Self.heartbeat(membership, i, sequence: sequence + 1) }
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
                try await membership.heartbeat(ServerHeartbeat(serverID: "cs-9", address: stranger.address, usage: stranger.usage, sequence: 1))
            }
            let moved = Self.registration(1, zones: 3, address: "127.0.0.1:7777")
            await #expect(throws: BlobError.self) {
                try await membership.heartbeat(ServerHeartbeat(serverID: "cs-1", address: moved.address, usage: moved.usage, sequence: 1))
            }
            _ = try await membership.register(moved, nowMilliseconds: 5)
            #expect(await membership.endpoint("cs-1")?.address == "127.0.0.1:7777")
            let epoch = await membership.ring?.epoch
            _ = try await membership.register(moved, nowMilliseconds: 6)
            #expect(await membership.ring?.epoch == epoch, "re-registering a member does not change the ring")
        }
    }
}
