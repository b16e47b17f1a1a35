import AsyncHTTPClient
import BlobClient
import BlobCore
@testable import BlobMaster
import BlobTestSupport
import Foundation
import NIOCore
import Testing

/// Reads from a hot standby (`--metadata-replicas`): a read carrying its client's write
/// position is answered by the standby only once it has replayed that far.
extension PostgresFailoverTests {
    @Test("a lagging standby: a read carrying a write's position goes to the primary until the standby replayed it")
    func laggingStandby() async throws {
        try await Self.withPrimaryAndStandby { primary, standby, _ in
            let location = try PostgresLocation(
                url: "postgres://blobtest@127.0.0.1:\(primary.port)/postgres", password: nil)
            // The primary is listed too (it is no standby), and a port nothing listens on: both are
            // passed over.
            let standbys = try PostgresLocation(
                url: "postgres://blobtest@127.0.0.1:\(primary.port),127.0.0.1:1,127.0.0.1:\(standby.port)/postgres",
                password: nil)
            let onStandby = "standby 127.0.0.1:\(standby.port)"
            try await MetadataLocation.postgres(location).withStore(
                logger: Self.logger, standbys: standbys, maxStandbyLag: .seconds(60)
            ) { store in
                let path = try BlobPath("lag/file")
                _ = try await store.commit(try await MetadataTesting.upload(store, path.value, sizes: [100]))
                let first = try #require(try await store.database.writePosition())
                // Once the standby has replayed the first commit, it answers a read carrying it.
                let caughtUp = try await eventually(within: .seconds(30)) {
                    let read = try await StandbyRead.serving(position: first) { try await store.stat(path) }
                    return read.answeredBy == onStandby && read.value?.version == 1
                }
                #expect(caughtUp, "the standby answers once it has replayed the write")

                #expect(try await Self.pauseReplay(standby), "the standby's replay pauses")
                _ = try await store.commit(try await MetadataTesting.upload(store, path.value, sizes: [200], seed: 2))
                let second = try #require(try await store.database.writePosition())
                #expect(second > first)

                // The writer reads its own write: stat, list and the read plan come from the primary.
                let stat = try await StandbyRead.serving(position: second) { try await store.stat(path) }
                #expect(stat.answeredBy == "primary" && stat.value?.version == 2)
                let list = try await StandbyRead.serving(position: second) {
                    try await store.list(prefix: "lag/", after: nil, limit: 10)
                }
                #expect(list.answeredBy == "primary" && list.value.files.map(\.version) == [2])
                let plan = try await StandbyRead.serving(position: second) {
                    try await store.readPlanFacts(of: path, overlapping: 0..<200)
                }
                #expect(plan.answeredBy == "primary" && plan.value?.file.size == 200)
                // A read without a position must see every commit before it: the primary answers.
                let latest = try await StandbyRead.serving(position: nil) { try await store.stat(path) }
                #expect(latest.answeredBy == "primary" && latest.value?.version == 2)
                // A read carrying only the first position is the standby's, as it stands: behind.
                let older = try await StandbyRead.serving(position: first) { try await store.stat(path) }
                #expect(older.answeredBy == onStandby && older.value?.version == 1, "\(older.answeredBy)")

                _ = try await Self.sql(standby.port, "SELECT pg_wal_replay_resume()")
                let resumed = try await eventually(within: .seconds(30)) {
                    let read = try await StandbyRead.serving(position: second) { try await store.stat(path) }
                    return read.answeredBy == onStandby && read.value?.version == 2
                }
                #expect(resumed, "the standby answers again once it has replayed the second write")
            }

            // With a 1 s lag bound, a standby whose replay is paused behind the primary stops
            // answering even reads that carry an old position.
            #expect(try await Self.pauseReplay(standby), "the standby's replay pauses")
            try await MetadataLocation.postgres(location).withStore(
                logger: Self.logger, standbys: standbys, maxStandbyLag: .seconds(1)
            ) { store in
                let path = try BlobPath("lag/bounded")
                _ = try await store.commit(try await MetadataTesting.upload(store, path.value, sizes: [300], seed: 3))
                let position = try #require(try await store.database.writePosition())
                let bounded = try await eventually(within: .seconds(30)) {
                    let read = try await StandbyRead.serving(position: MetadataPosition(1)) {
                        try await store.stat(path)
                    }
                    return read.answeredBy == "primary" && read.value?.size == 300
                }
                #expect(bounded, "a standby more than the bound behind answers nothing (write at \(position))")
            }
            _ = try await Self.sql(standby.port, "SELECT pg_wal_replay_resume()")
        }
    }

    @Test("a client that has just written reads its own write over HTTP while the standby's replay is paused")
    func readYourWritesOverHTTP() async throws {
        try await Self.withPrimaryAndStandby { primary, standby, _ in
            var options = TestClusterOptions()
            options.masterClock = ManualClock()  // liveness holds still: a loaded machine makes no server suspect
            options.metadata = .postgres(
                try PostgresLocation(url: "postgres://blobtest@127.0.0.1:\(primary.port)/postgres", password: nil))
            options.metadataStandbys = try PostgresLocation(
                url: "postgres://blobtest@127.0.0.1:\(standby.port)/postgres", password: nil)
            options.maxStandbyLag = .seconds(60)
            options.gcGrace = .seconds(120)
            try await withTestCluster(options) { cluster in
                let client = cluster.client
                let path = try BlobPath("own/clip.bin")
                let first = SyntheticData.random(byteCount: 200_000, seed: 1)
                _ = try await client.put(.bytes(first), to: path)
                #expect(client.writePosition != nil, "the master answers a write with its position")
                // Signed GETs to the master, with or without a position, and who answered them.
                let signer = try RequestSigner(secret: cluster.secret)
                let http = HTTPClient(eventLoopGroupProvider: .singleton)
                do {
                    try await Self.readOwnWrites(cluster, client, path, standby, signer, http)
                    try await http.shutdown()
                } catch {
                    try? await http.shutdown()
                    throw error
                }
            }
        }
    }

    static func readOwnWrites(
        _ cluster: TestCluster, _ client: ClusterClient, _ path: BlobPath, _ standby: Server, _ signer: RequestSigner,
        _ http: HTTPClient
    ) async throws {
        let afterFirst = try #require(client.writePosition)
        func stat(_ position: MetadataPosition?) async throws -> (answeredBy: String, version: Int64) {
            let pathAndQuery = "/v1/files?path=own/clip.bin"
            var request = HTTPClientRequest(url: "http://\(cluster.masterAddress)\(pathAndQuery)")
            request.headers.add(
                name: "Authorization",
                value: signer.token(
                    role: .client, method: "GET", pathAndQuery: pathAndQuery,
                    expiry: Int64(Date().timeIntervalSince1970) + 300))
            if let position { request.headers.add(name: MetadataPosition.header, value: "\(position)") }
            let response = try await http.execute(request, timeout: .seconds(30))
            let body = try await response.body.collect(upTo: 1 << 20)
            let file = try JSONDecoder().decode(FileVersion.self, from: Data(body.readableBytesView))
            return (response.headers.first(name: MetadataPosition.answeredByHeader) ?? "", file.version)
        }
        let caughtUp = try await eventually(within: .seconds(30)) {
            try await stat(afterFirst).answeredBy == "standby 127.0.0.1:\(standby.port)"
        }
        #expect(caughtUp, "the standby answers reads once it has replayed the write")

        #expect(try await Self.pauseReplay(standby), "the standby's replay pauses")
        let second = SyntheticData.random(byteCount: 300_000, seed: 2)
        _ = try await client.put(.bytes(second), to: path)
        // The client's own write, whole: its stat, read plan and bytes are the new version's.
        #expect(try await client.stat(path).size == Int64(second.count))
        let out = cluster.directory + "/own.bin"
        _ = try await client.get(path, to: .file(out))
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: out))) == second, "reads its own write")
        // The standby was behind all along: with the first position it answers version 1.
        let stale = try await stat(afterFirst)
        #expect(stale.answeredBy.hasPrefix("standby") && stale.version == 1, "\(stale)")
        let own = try await stat(client.writePosition)
        #expect(own.answeredBy == "primary" && own.version == 2, "\(own)")
        _ = try await Self.sql(standby.port, "SELECT pg_wal_replay_resume()")
    }

    /// Pauses the standby's WAL replay; true once it reports paused (within 30 s).
    static func pauseReplay(_ standby: Server) async throws -> Bool {
        _ = try await sql(standby.port, "SELECT pg_wal_replay_pause()")
        return try await eventually(within: .seconds(30)) {
            try await sql(standby.port, "SELECT CAST(pg_get_wal_replay_pause_state() AS TEXT)").first?
                .decode(String.self) == "paused"
        }
    }
}
