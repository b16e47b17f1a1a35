import BlobCore
import BlobMaster
import Foundation
import Testing

/// A master and chunk servers as separate processes on 127.0.0.1, talking HTTP.
@Suite("blobctl master", .timeLimit(.minutes(5)))
struct MasterTests {
    static let fastLiveness = ["--heartbeat-interval", "100", "--suspect-after", "600", "--down-after", "1500"]

    /// A master and `servers` chunk servers registered with it; everything stopped by PID afterwards.
    static func withCluster<T>(
        servers count: Int, liveness: [String] = fastLiveness, serverArguments: [String] = ["--scrub-rate", "0"],
        _ body: (DaemonProcess, [DaemonProcess], TestClient, URL) async throws -> T
    ) async throws -> T {
        try await withChunkServers(0) { _, client, dir in
            let secretFile = dir.appendingPathComponent("secret")
            let master = DaemonProcess(
                dataDirectory: dir.appendingPathComponent("master"), secretFile: secretFile,
                extraArguments: liveness, role: "master")
            var servers: [DaemonProcess] = []
            do {
                try await master.start()
                for i in 0..<count {
                    let s = DaemonProcess(
                        dataDirectory: dir.appendingPathComponent("cs\(i)"), secretFile: secretFile,
                        extraArguments: ["--master", "http://\(master.address)", "--zone", "z\(i)"] + serverArguments)
                    try await s.start()
                    servers.append(s)
                }
                let result = try await body(master, servers, client, dir)
                for s in servers { try await s.stop() }
                try await master.stop()
                return result
            } catch {
                for s in servers { try? await s.kill() }
                try? await master.kill()
                throw error
            }
        }
    }

    static func status(_ client: TestClient, _ master: DaemonProcess) async throws -> ClusterStatus {
        try await client.send(.GET, master.address, "/v1/cluster/status").json(ClusterStatus.self)
    }

    static func post<T: Encodable>(
        _ client: TestClient, _ master: DaemonProcess, _ path: String, _ body: T
    ) async throws -> TestClient.Reply {
        try await client.send(.POST, master.address, path, body: Array(try JSONEncoder().encode(body)))
    }

    @Test("placement, chunk writes, acknowledgements, commit, stat, list and read plan over HTTP")
    func writeAndReadPlan() async throws {
        try await Self.withCluster(servers: 3) { master, servers, client, _ in
            #expect(
                try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    try await Self.status(client, master).ringEpoch != nil
                })
            let plains = [
                SyntheticData.logs(byteCount: 300_000, seed: 1), SyntheticData.random(byteCount: 200_000, seed: 2),
            ]
            let ids = plains.map { ChunkID(hashing: $0) }
            let ask = PlacementRequest(
                chunks: zip(ids, plains).map { PlacementRequestEntry(id: $0, plainByteCount: Int64($1.count)) })
            let placement = try await Self.post(client, master, "/v1/placement", ask).json(PlacementReply.self)
            #expect(
                placement.chunks.count == 2 && placement.chunks.allSatisfy { !$0.isPresent && $0.targets.count == 3 })
            var acks: [ReplicaAcknowledgement] = []
            for (answer, plain) in zip(placement.chunks, plains) {
                #expect(Set(answer.targets.map(\.id)) == Set(servers.map(\.serverID)))
                let frame = ChunkEncoder().frame(for: plain)
                let first = answer.targets[0].address
                let others = answer.targets.dropFirst().map(\.address).joined(separator: ",")
                let put = try await client.send(
                    .PUT, first, "/v1/chunks/\(answer.id.hex)?replicas=\(others)", body: frame)
                #expect(put.status == 201)
                let result = try put.json(ChunkWriteResult.self)
                acks.append(
                    ReplicaAcknowledgement(
                        id: answer.id, plainByteCount: Int64(plain.count),
                        storedByteCount: Int64(frame.count), serverIDs: result.storedServerIDs))
            }
            #expect(
                try await Self.post(client, master, "/v1/replicas", ReplicaAcknowledgements(chunks: acks)).status == 204
            )
            let again = try await Self.post(client, master, "/v1/placement", ask).json(PlacementReply.self)
            #expect(again.chunks.allSatisfy { $0.isPresent && $0.holders.count == 3 }, "deduplication: nothing to send")

            let commit = ManifestCommit(
                path: try BlobPath("media/clip one.mp4"), size: Int64(plains[0].count + plains[1].count),
                contentType: "video/mp4",
                sha256: ChunkID(hashing: plains[0] + plains[1]).hex,
                chunks: [
                    ManifestEntry(chunkID: ids[0], offset: 0, length: Int64(plains[0].count)),
                    ManifestEntry(chunkID: ids[1], offset: Int64(plains[0].count), length: Int64(plains[1].count)),
                ])
            let committed = try await Self.post(client, master, "/v1/files", commit)
            #expect(committed.status == 201, "\(committed.text)")
            let query = "path=media/clip%20one.mp4"
            let stat = try await client.send(.GET, master.address, "/v1/files?\(query)").json(FileVersion.self)
            #expect(stat.version == 1 && stat.size == commit.size && stat.contentType == "video/mp4")
            let list = try await client.send(.GET, master.address, "/v1/list?prefix=media/").json(FileListPage.self)
            #expect(list.files.map(\.path.value) == ["media/clip one.mp4"])
            // A range inside the second chunk plans only that chunk, with all three replicas.
            let plan = try await client.send(.GET, master.address, "/v1/files/plan?\(query)&offset=300100&length=1000")
                .json(ReadPlan.self)
            #expect(plan.chunks.map(\.chunk.chunkID) == [ids[1]])
            #expect(plan.chunks[0].replicas.count == 3)
            let full = try await client.send(.GET, master.address, "/v1/files/plan?\(query)").json(ReadPlan.self)
            #expect(full.chunks.map(\.chunk) == commit.chunks)
            // The replicas of consecutive chunks start at different servers, spreading reads.
            #expect(full.chunks[0].replicas.first != full.chunks[1].replicas.first)
            let deleted = try await client.send(.DELETE, master.address, "/v1/files?\(query)").json(FileVersion.self)
            #expect(deleted.isDeleted && deleted.version == 2)
            #expect(try await client.send(.GET, master.address, "/v1/files?\(query)").status == 404)
        }
    }

    @Test("chunk servers report what they store: a chunk written without acknowledgements becomes present")
    func reportsBuildFacts() async throws {
        try await Self.withCluster(servers: 3) { master, servers, client, _ async throws -> Void in
            #expect(
                try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    try await Self.status(client, master).ringEpoch != nil
                })
            let plain = SyntheticData.logs(byteCount: 50_000, seed: 9)
            let id = ChunkID(hashing: plain)
            let others = servers.dropFirst().map(\.address).joined(separator: ",")
            #expect(
                try await client.send(
                    .PUT, servers[0].address, "/v1/chunks/\(id.hex)?replicas=\(others)",
                    body: ChunkEncoder().frame(for: plain)
                ).status == 201)
            let ask = PlacementRequest(chunks: [PlacementRequestEntry(id: id, plainByteCount: 50_000)])
            // Reports travel on the servers' heartbeats; on a loaded two-core machine running every
            // suite at once, those processes can be starved for longer than this one.
            #expect(
                try await ChunkServerFaultTests.eventually(within: .seconds(60)) {
                    let reply = try await Self.post(client, master, "/v1/placement", ask).json(PlacementReply.self)
                    return reply.chunks.first?.isPresent == true && reply.chunks.first?.holders.count == 3
                }, "the master learned all three replicas from the servers' reports")
            // A deletion on one server is reported too: the chunk is no longer fully present.
            #expect(
                try await client.send(
                    .DELETE, servers[2].address, "/v1/chunks/\(id.hex)", role: .master,
                    headers: [(LeaderTermGuardHeader.name, "1")]
                ).status == 204)
            #expect(
                try await ChunkServerFaultTests.eventually(within: .seconds(60)) {
                    let reply = try await Self.post(client, master, "/v1/placement", ask).json(PlacementReply.self)
                    return reply.chunks.first?.isPresent == false && reply.chunks.first?.holders.count == 2
                }, "the master learned of the deletion from the server's report")
        }
    }

    @Test("bad input gets a 4xx JSON error and changes nothing")
    func badInput() async throws {
        try await Self.withCluster(servers: 0) { master, _, client, _ in
            func expectError(
                _ reply: TestClient.Reply, _ status: Int, _ reason: String,
                sourceLocation: SourceLocation = #_sourceLocation
            ) {
                #expect(reply.status == status, "\(reply.text)", sourceLocation: sourceLocation)
                #expect(
                    (try? reply.json(ErrorBody.self))?.reason == reason, "\(reply.text)", sourceLocation: sourceLocation
                )
            }
            let unknown = ChunkID(hashing: [1])
            let commit = ManifestCommit(
                path: try BlobPath("a/b"), size: 10, contentType: "text/plain",
                sha256: unknown.hex, chunks: [ManifestEntry(chunkID: unknown, offset: 0, length: 10)])
            expectError(try await Self.post(client, master, "/v1/files", commit), 400, "manifest.unknownChunk")
            var gap = commit
            gap.chunks[0].offset = 1
            expectError(try await Self.post(client, master, "/v1/files", gap), 400, "manifest.tiling")
            expectError(
                try await client.send(.POST, master.address, "/v1/files", body: Array("{not json".utf8)), 400,
                "body.json")
            let badPath =
                #"{"path": "../etc/passwd", "size": 0, "contentType": "x", "sha256": "\#(unknown.hex)", "chunks": []}"#
            expectError(
                try await client.send(.POST, master.address, "/v1/files", body: Array(badPath.utf8)), 400,
                "path.invalid")
            expectError(try await client.send(.GET, master.address, "/v1/files?path=a//b"), 400, "path.invalid")
            expectError(try await client.send(.GET, master.address, "/v1/files"), 400, "path.missing")
            expectError(try await client.send(.GET, master.address, "/v1/files?path=nothing"), 404, "file.notFound")
            let tooMany = PlacementRequest(
                chunks: (0..<10_001).map { _ in PlacementRequestEntry(id: unknown, plainByteCount: 1) })
            expectError(try await Self.post(client, master, "/v1/placement", tooMany), 400, "placement.batch")
            expectError(
                try await Self.post(client, master, "/v1/placement", PlacementRequest(chunks: [])), 503, "ring.missing")
            let unknownServer = ReplicaAcknowledgements(chunks: [
                ReplicaAcknowledgement(
                    id: unknown, plainByteCount: 1,
                    storedByteCount: 1, serverIDs: ["cs-x"])
            ])
            expectError(
                try await Self.post(client, master, "/v1/replicas", unknownServer), 400, "replicas.unknownServer")
            expectError(try await client.send(.GET, master.address, "/v1/list?limit=0"), 400, "list.limit")
            let unsigned = try await client.send(.GET, master.address, "/v1/cluster/status", token: .some(nil))
            expectError(unsigned, 401, "auth.missingToken")
            let asClient = try await client.send(.POST, master.address, "/v1/cluster/servers", body: Array("{}".utf8))
            expectError(asClient, 403, "auth.roleNotAllowed")
            #expect(try await client.send(.GET, master.address, "/v1/list").json(FileListPage.self).files.isEmpty)
        }
    }

    @Test("kill -9 of the master during a stream of commits loses no acknowledged commit")
    func crashDuringCommits() async throws {
        try await Self.withCluster(servers: 1) { master, servers, client, _ in
            #expect(
                try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    try await Self.status(client, master).servers.first?.state == .alive
                })
            let plain = SyntheticData.random(byteCount: 1000, seed: 3)
            let id = ChunkID(hashing: plain)
            let ack = ReplicaAcknowledgements(chunks: [
                ReplicaAcknowledgement(
                    id: id, plainByteCount: 1000, storedByteCount: 1032, serverIDs: [servers[0].serverID])
            ])
            #expect(try await Self.post(client, master, "/v1/replicas", ack).status == 204)
            let acknowledged = LockedList<String>()
            let address = master.address
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<4 {
                    group.addTask {
                        for i in 0..<2000 {
                            let path = "crash/w\(writer)/f\(i)"
                            let commit = ManifestCommit(
                                path: try BlobPath(path), size: 1000, contentType: "application/octet-stream",
                                sha256: id.hex, chunks: [ManifestEntry(chunkID: id, offset: 0, length: 1000)])
                            guard
                                let reply = try? await client.send(
                                    .POST, address, "/v1/files",
                                    body: Array(try JSONEncoder().encode(commit)))
                            else { return }
                            if reply.status == 201 { acknowledged.append(path) }
                        }
                    }
                }
                group.addTask {
                    // Bounded generously: on a loaded machine 4 writers may take a while to 100.
                    _ = try await ChunkServerFaultTests.eventually(within: .seconds(180)) { acknowledged.count >= 100 }
                    try await master.kill()
                }
                try await group.waitForAll()
            }
            let committed = acknowledged.items
            #expect(committed.count >= 100)
            let database = master.dataDirectory.appendingPathComponent("master.sqlite").path
            let store = MetadataStore(database: try SQLiteDatabase(path: database))
            #expect(try await store.checkIntegrity())
            for path in committed {
                #expect(try await store.stat(try BlobPath(path)) != nil, "acknowledged commit \(path) lost")
            }
            try await master.start()
            let listed = try await client.send(.GET, master.address, "/v1/list?prefix=crash/&limit=10000").json(
                FileListPage.self)
            #expect(Set(listed.files.map(\.path.value)).isSuperset(of: committed))
        }
    }
}
