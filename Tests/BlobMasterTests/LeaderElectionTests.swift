import BlobCore
@testable import BlobMaster
import BlobTestSupport
import Foundation
import Logging
import Testing

/// The election on a manual clock that is also the database's: no sleeping, on both engines.
@Suite("leader election and fencing")
struct LeaderElectionTests {
    static let lease = LeasePolicy(timeToLive: .seconds(10), renewInterval: .seconds(3), safetyMargin: .seconds(2))

    /// A manual local clock, with the database clock following it.
    struct Clocks {
        let local = ManualClock()
        let database: SettableDatabaseClock

        init(_ database: SettableDatabaseClock) {
            self.database = database
            database.set(local.wallMilliseconds)
        }

        func advance(by duration: Duration) {
            local.advance(by: duration)
            database.set(local.wallMilliseconds)
        }
    }

    static func election(_ store: MetadataStore, _ clocks: Clocks, takeOver: Bool = false) -> LeaderElection {
        LeaderElection(
            store: store, policy: lease, takeOverAtStart: takeOver, logger: Logger(label: "test.election"),
            clock: clocks.local)
    }

    /// A write only a leader may make, under `fence`: a setting named after the term.
    static func leaderWrite(_ store: MetadataStore, _ fence: LeaderFence, key: String) async throws {
        try await LeaderFence.$current.withValue(fence) {
            try await store.saveSetting(key, Array("\(fence.term)".utf8), expected: nil)
        }
    }

    @Test(
        "a silent leader stops on its own clock before its lease ends; the next takes a higher term; old writes fail",
        arguments: Backend.allCases)
    func takeover(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, databaseClock in
            let clocks = Clocks(databaseClock)
            let a = Self.election(store, clocks)
            let b = Self.election(store, clocks)
            await a.round()
            await b.round()
            let first = try #require(await a.currentTerm)
            #expect(first.term == 1)
            #expect(await b.currentTerm == nil)
            #expect(await b.lastSeen?.holder == a.holder)
            let staleFence = try #require(await a.fence)

            clocks.advance(by: .seconds(5))
            await a.round()
            await b.round()
            #expect(await a.currentTerm == first, "renewed, same term")
            #expect(await b.currentTerm == nil)

            // a goes silent (paused, cut off). At its own deadline (last renewal sent at 5 s,
            // + 10 s lease - 2 s margin) it stops counting itself leader; the lease still holds
            // in the database, so b cannot take it yet: never two leaders.
            clocks.advance(by: .seconds(8))
            #expect(await a.currentTerm == nil, "stopped on its own clock")
            await b.round()
            #expect(await b.currentTerm == nil, "the lease has not expired in the database")

            clocks.advance(by: .seconds(3))
            await b.round()
            let second = try #require(await b.currentTerm)
            #expect(second.term == 2 && second.holder == b.holder)

            // The old term's leader-only writes change nothing; the new term's land.
            await #expect(throws: BlobError.self) {
                try await Self.leaderWrite(store, staleFence, key: "leader.stale")
            }
            #expect(try await store.setting("leader.stale") == nil)
            try await Self.leaderWrite(store, try #require(await b.fence), key: "leader.current")
            #expect(try await store.setting("leader.current") == Array("\(second)".utf8))

            // a comes back: it follows, and knows who leads.
            await a.round()
            #expect(await a.currentTerm == nil)
            #expect(await a.lastSeen?.term == 2)
            #expect(await a.notLeaderError().message.contains("term 2"))
        }
    }

    @Test(
        "concurrent claims on a fresh database and on an expired lease give exactly one leader each time",
        arguments: Backend.allCases)
    func concurrentClaims(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, databaseClock in
            let clocks = Clocks(databaseClock)
            let elections = (0..<8).map { _ in Self.election(store, clocks) }
            for expected in Int64(1)...3 {
                await withTaskGroup(of: Void.self) { group in
                    for election in elections { group.addTask { await election.round() } }
                }
                var leaders: [LeaderTerm] = []
                for election in elections { if let term = await election.currentTerm { leaders.append(term) } }
                #expect(leaders.count == 1, "round \(expected): \(leaders)")
                #expect(leaders.first?.term == expected)
                let stored = try await store.lease()
                #expect(stored?.term == expected)
                // The leader dies; its lease runs out.
                clocks.advance(by: .seconds(11))
            }
        }
    }

    @Test(
        "a released lease is taken at once; a lone master takes an unexpired one at start", arguments: Backend.allCases)
    func releaseAndTakeOver(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, databaseClock in
            let clocks = Clocks(databaseClock)
            let a = Self.election(store, clocks)
            let b = Self.election(store, clocks)
            await a.round()
            #expect(await a.currentTerm?.term == 1)
            let listed = try await store.masters().masters
            #expect(listed.count == 1)
            await a.release()
            #expect(await a.currentTerm == nil)
            let left = try await store.masters().masters
            #expect(left.isEmpty, "a stopping master leaves the list")
            await b.round()
            #expect(await b.currentTerm?.term == 2, "no wait for the released lease")
            // A lone master (SQLite) restarted within its old lease does not wait it out.
            let restarted = Self.election(store, clocks, takeOver: true)
            await restarted.round()
            #expect(await restarted.currentTerm?.term == 3)
            await b.round()
            #expect(await b.currentTerm == nil)
        }
    }

    @Test("leadership transitions are announced: gained, then lost when the term lapses", arguments: [Backend.sqlite])
    func transitions(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, databaseClock in
            let clocks = Clocks(databaseClock)
            let a = Self.election(store, clocks)
            let seen = TermLog()
            await a.onTransition { term in await seen.append(term) }
            await a.round()
            clocks.advance(by: .seconds(9))
            await a.noticeLapse()
            await a.round()
            #expect(
                await seen.terms == [LeaderTerm(holder: a.holder, term: 1), nil, LeaderTerm(holder: a.holder, term: 1)])
        }
    }
}

actor TermLog {
    var terms: [LeaderTerm?] = []
    func append(_ term: LeaderTerm?) { terms.append(term) }
}
