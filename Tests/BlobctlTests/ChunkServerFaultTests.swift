import BlobCore
import BlobTestSupport
import Foundation
import Testing

/// Crashes, corruption and full disks, against real chunk server processes.
@Suite("blobctl chunkserver faults", .timeLimit(.minutes(5)))
struct ChunkServerFaultTests {
    static func chunkFiles(_ server: ChunkServerProcess) -> [URL] {
        let root = server.dataDirectory.appendingPathComponent("chunks")
        let names = FileManager.default.enumerator(atPath: root.path)?.allObjects.compactMap { $0 as? String } ?? []
        return names.filter { $0.split(separator: "/").count == 3 }.map { root.appendingPathComponent($0) }
    }

    /// Polls `condition` until it holds or `timeout` passes.
    static func eventually(within timeout: Duration, _ condition: () async throws -> Bool) async throws -> Bool {
        try await BlobTestSupport.eventually(within: timeout, condition)
    }

    @Test("kill -9 during concurrent writes: every acknowledged chunk survives and verifies, no partial file remains")
    func crashDuringWrites() async throws {
        try await withChunkServers(1, extraArguments: ["--scrub-rate", "0"]) { servers, client, _ in
            let server = servers[0]
            let acknowledged = LockedList<ChunkID>()
            let address = server.address
            try await withThrowingTaskGroup(of: Void.self) { group in
                for writer in 0..<8 {
                    group.addTask {
                        for i in 0..<400 {
                            let plain = SyntheticData.random(byteCount: 64 << 10 + i, seed: UInt64(writer * 1000 + i))
                            let id = ChunkID(hashing: plain)
                            guard
                                let reply = try? await client.send(
                                    .PUT, address, "/v1/chunks/\(id.hex)", body: ChunkEncoder().frame(for: plain))
                            else { return }  // the server is gone
                            if reply.status == 201 || reply.status == 200 { acknowledged.append(id) }
                        }
                    }
                }
                group.addTask {
                    // Kill once writes are flowing, in the middle of the stream.
                    _ = try await Self.eventually(within: .seconds(30)) { acknowledged.count >= 40 }
                    try await server.kill()
                }
                try await group.waitForAll()
            }
            let acked = acknowledged.items
            #expect(acked.count >= 40)
            try await server.start()
            for id in acked {
                let reply = try await client.send(.GET, server.address, "/v1/chunks/\(id.hex)")
                #expect(reply.status == 200, "acknowledged chunk \(id.shortHex) lost")
                #expect((try? ChunkFrame.decode(reply.body, expectedID: id)) != nil)
            }
            // Every file under an id is a whole, valid frame of that id; temporary files are gone.
            for file in Self.chunkFiles(server) {
                let id = try ChunkID(hex: file.lastPathComponent)
                let bytes = [UInt8](try Data(contentsOf: file))
                #expect(
                    (try? ChunkFrame.decode(bytes, expectedID: id)) != nil, "partial chunk \(file.lastPathComponent)")
            }
            let leftovers = try FileManager.default.contentsOfDirectory(
                atPath: server.dataDirectory.appendingPathComponent("tmp").path)
            #expect(leftovers.isEmpty)
        }
    }

    @Test("a flipped bit on disk is answered with a checksum error and quarantined; scrub finds the same on its own")
    func corruption() async throws {
        try await withChunkServers(1, extraArguments: ["--scrub-rate", "1G", "--scrub-interval", "1"]) {
            servers, client, _ in
            let server = servers[0]
            let a = server.address
            var ids: [ChunkID] = []
            for seed in [1, 2] as [UInt64] {
                let plain = SyntheticData.logs(byteCount: 100_000, seed: seed)
                let id = ChunkID(hashing: plain)
                #expect(
                    try await client.send(.PUT, a, "/v1/chunks/\(id.hex)", body: ChunkEncoder().frame(for: plain))
                        .status == 201)
                ids.append(id)
            }
            func flipBit(_ id: ChunkID) throws {
                let file = try #require(Self.chunkFiles(server).first { $0.lastPathComponent == id.hex })
                var bytes = [UInt8](try Data(contentsOf: file))
                bytes[bytes.count / 2] ^= 0x10
                try Data(bytes).write(to: file)
            }
            // Read path: the next read reports the damage and quarantines the copy.
            try flipBit(ids[0])
            // (The once-a-second scrub may get there first on a loaded machine: then the copy is
            // already quarantined and the read is 404; either way no damaged byte is served.)
            let read = try await client.send(.GET, a, "/v1/chunks/\(ids[0].hex)")
            #expect(read.status == 422 || read.status == 404)
            #expect(
                try read.json(ErrorBody.self).reason == (read.status == 422 ? "chunk.quarantined" : "chunk.notFound"))
            #expect(try await client.send(.GET, a, "/v1/chunks/\(ids[0].hex)").status == 404)
            let quarantined = try FileManager.default.contentsOfDirectory(
                atPath: server.dataDirectory.appendingPathComponent("quarantine").path)
            #expect(quarantined.contains { $0.hasPrefix(ids[0].hex) })

            // Scrub path: nobody reads the second chunk; the scrubber must find it.
            try flipBit(ids[1])
            // Wait for this chunk's quarantine, not any scrub failure: the scrub may have been the
            // one to find the first chunk.
            let found = try await Self.eventually(within: .seconds(60)) {
                let status = try await client.send(.GET, a, "/v1/status").json(ChunkServerStatus.self)
                return (status.counters["scrubFailures"] ?? 0) >= 1 && status.counters["quarantined"] == 2
            }
            #expect(found, "scrub did not find the damaged chunk")
            #expect(!Self.chunkFiles(server).contains { $0.lastPathComponent == ids[1].hex })
            let status = try await client.send(.GET, a, "/v1/status").json(ChunkServerStatus.self)
            #expect(status.counters["quarantined"] == 2)
            #expect(status.chunkCount == 0)
        }
    }

    @Test(
        "a scrub pass resumes after a restart from its saved progress; a finished pass waits for its interval"
    )
    func scrubResumes() async throws {
        try await withChunkServers(1, extraArguments: ["--scrub-rate", "0"]) { servers, client, dir in
            let server = servers[0]
            var ids: [ChunkID] = []
            for seed in 0..<12 as Range<UInt64> {
                let plain = SyntheticData.random(byteCount: 10_000 + Int(seed), seed: seed + 100)
                let id = ChunkID(hashing: plain)
                #expect(
                    try await client.send(
                        .PUT, server.address, "/v1/chunks/\(id.hex)", body: ChunkEncoder().frame(for: plain)
                    ).status == 201)
                ids.append(id)
            }
            try await server.stop()
            // As if a pass had checked the first five chunks in id order when the server stopped.
            let progressFile = server.dataDirectory.appendingPathComponent("scrub-progress.json")
            try Data(#"{"after":"\#(ids.map(\.hex).sorted()[4])"}"#.utf8).write(to: progressFile)
            func progress() -> [String: Any] {
                (FileManager.default.contents(atPath: progressFile.path)
                    .flatMap { try? JSONSerialization.jsonObject(with: $0) as? [String: Any] }) ?? [:]
            }
            let arguments = ["--scrub-rate", "1G", "--scrub-interval", "3600", "--log-level", "info"]
            for round in 0..<2 {
                let scrubbing = ChunkServerProcess(
                    dataDirectory: server.dataDirectory, secretFile: dir.appendingPathComponent("secret"),
                    extraArguments: arguments)
                let logStart = scrubbing.log.utf8.count  // the log file is shared by the server's runs
                func log() -> String { String(decoding: scrubbing.log.utf8.dropFirst(logStart), as: UTF8.self) }
                try await scrubbing.start()
                do {
                    if round == 0 {
                        // The rest of the pass, and only the rest, is checked; then its end is recorded.
                        let finished = try await Self.eventually(within: .seconds(20)) {
                            progress()["after"] == nil && progress()["lastPassFinishedMilliseconds"] != nil
                        }
                        #expect(finished, "\(progress())")
                        let status = try await client.send(.GET, scrubbing.address, "/v1/status").json(
                            ChunkServerStatus.self)
                        #expect(status.counters["scrubbed"] == 7)
                    } else {
                        // Started again right after a finished pass: it waits for the interval.
                        let waiting = try await Self.eventually(within: .seconds(20)) {
                            log().contains("next scrub pass in")
                        }
                        #expect(waiting, "\(log().suffix(2000))")
                        let status = try await client.send(.GET, scrubbing.address, "/v1/status").json(
                            ChunkServerStatus.self)
                        #expect((status.counters["scrubbed"] ?? 0) == 0)
                    }
                    try await scrubbing.stop()
                } catch {
                    try? await scrubbing.kill()
                    throw error
                }
            }
        }
    }

    @Test("a write past --capacity gets 507 and stores nothing; reads keep working")
    func capacity() async throws {
        try await withChunkServers(1, extraArguments: ["--capacity", "300K", "--scrub-rate", "0"]) {
            servers, client, _ in
            let a = servers[0].address
            let first = SyntheticData.random(byteCount: 200_000, seed: 1)
            let firstID = ChunkID(hashing: first)
            #expect(
                try await client.send(.PUT, a, "/v1/chunks/\(firstID.hex)", body: ChunkEncoder().frame(for: first))
                    .status == 201)
            let second = SyntheticData.random(byteCount: 200_000, seed: 2)
            let secondID = ChunkID(hashing: second)
            let refused = try await client.send(
                .PUT, a, "/v1/chunks/\(secondID.hex)", body: ChunkEncoder().frame(for: second))
            #expect(refused.status == 507)
            #expect(try refused.json(ErrorBody.self).reason == "capacity.exceeded")
            #expect(try await client.send(.GET, a, "/v1/chunks/\(secondID.hex)").status == 404)
            let read = try await client.send(.GET, a, "/v1/chunks/\(firstID.hex)?format=plain")
            #expect(read.status == 200 && read.body == first)
            let status = try await client.send(.GET, a, "/v1/status").json(ChunkServerStatus.self)
            #expect(status.chunkCount == 1)
            #expect(status.counters["writesRefusedFull"] == 1)
        }
    }
}
