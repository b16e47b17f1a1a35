import BlobCore
import Foundation
import Testing

/// The chunk server run as a separate process, over HTTP on 127.0.0.1, as users and peers use it.
@Suite("blobctl chunkserver", .timeLimit(.minutes(5)))
struct ChunkServerTests {
    static func frame(_ plain: [UInt8]) -> (ChunkID, [UInt8]) {
        (ChunkID(hashing: plain), ChunkEncoder().frame(for: plain))
    }

    @Test("chunks of 0 B, 1 B and 4 MiB, compressible and not, round-trip byte-identical and verified")
    func roundTrip() async throws {
        try await withChunkServers(1) { servers, client, _ in
            let a = servers[0].address
            let inputs: [[UInt8]] = [
                [], [7], SyntheticData.logs(byteCount: 4 << 20, seed: 3),
                SyntheticData.random(byteCount: 4 << 20, seed: 4),
            ]
            for plain in inputs {
                let (id, frame) = Self.frame(plain)
                let put = try await client.send(.PUT, a, "/v1/chunks/\(id.hex)", body: frame)
                #expect(put.status == 201, "\(put.text)")
                let result = try put.json(ChunkWriteResult.self)
                #expect(result.stored == [a] && result.quorumMet && !result.alreadyPresent)
                let got = try await client.send(.GET, a, "/v1/chunks/\(id.hex)")
                #expect(got.status == 200)
                #expect(got.body == frame)
                #expect(try ChunkFrame.decode(got.body, expectedID: id) == plain)
                let plainReply = try await client.send(.GET, a, "/v1/chunks/\(id.hex)?format=plain")
                #expect(plainReply.body == plain)
                let head = try await client.send(.HEAD, a, "/v1/chunks/\(id.hex)")
                #expect(head.status == 200)
                #expect(head.headers.first(name: "X-Blob-Plain-Length") == String(plain.count))
                // A second write of the same chunk stores nothing new.
                let again = try await client.send(.PUT, a, "/v1/chunks/\(id.hex)", body: frame)
                #expect(again.status == 200)
                #expect(try again.json(ChunkWriteResult.self).alreadyPresent)
            }
            let status = try await client.send(.GET, a, "/v1/status").json(ChunkServerStatus.self)
            #expect(status.chunkCount == 4)
            #expect(status.logicalBytes == Int64(8 << 20) + 1)
            #expect(status.storedBytes < status.logicalBytes)
            let page = try await client.send(.GET, a, "/v1/chunks?limit=3").json(InventoryPage.self)
            #expect(page.chunks.count == 3 && page.next != nil)
            let rest = try await client.send(.GET, a, "/v1/chunks?limit=3&after=\(page.next!)").json(InventoryPage.self)
            #expect(rest.chunks.count == 1 && rest.next == nil)
            #expect((page.chunks + rest.chunks).map(\.id) == (page.chunks + rest.chunks).map(\.id).sorted())
        }
    }

    @Test("concurrent writes of one chunk are safe and store it once")
    func concurrentSameChunk() async throws {
        try await withChunkServers(1) { servers, client, _ in
            let (id, frame) = Self.frame(SyntheticData.logs(byteCount: 1 << 20, seed: 8))
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        try await client.send(.PUT, servers[0].address, "/v1/chunks/\(id.hex)", body: frame).status
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses.filter { $0 == 201 }.count == 1)
            #expect(statuses.filter { $0 == 200 }.count == 7)
            let status = try await client.send(.GET, servers[0].address, "/v1/status").json(ChunkServerStatus.self)
            #expect(status.chunkCount == 1)
        }
    }

    @Test("a write naming two peers lands on all three; with one peer stopped the answer names it")
    func forwarding() async throws {
        try await withChunkServers(3) { servers, client, _ in
            let (a, b, c) = (servers[0].address, servers[1].address, servers[2].address)
            let (id, frame) = Self.frame(SyntheticData.logs(byteCount: 300_000, seed: 5))
            let put = try await client.send(.PUT, a, "/v1/chunks/\(id.hex)?replicas=\(b),\(c)", body: frame)
            #expect(put.status == 201, "\(put.text)")
            let result = try put.json(ChunkWriteResult.self)
            #expect(result.stored.first == a && Set(result.stored) == [a, b, c] && result.failed.isEmpty)
            #expect(Set(result.storedServerIDs) == Set(servers.map(\.serverID)))
            for s in [a, b, c] {
                #expect(try await client.send(.GET, s, "/v1/chunks/\(id.hex)").body == frame)
            }

            try await servers[2].stop()
            let (id2, frame2) = Self.frame(SyntheticData.random(byteCount: 200_000, seed: 6))
            let degraded = try await client.send(.PUT, a, "/v1/chunks/\(id2.hex)?replicas=\(b),\(c)", body: frame2)
            #expect(degraded.status == 503)
            let partial = try degraded.json(ChunkWriteResult.self)
            #expect(!partial.quorumMet)
            #expect(Set(partial.stored) == [a, b])
            #expect(partial.failed.map(\.target) == [c])
            for s in [a, b] { #expect(try await client.send(.GET, s, "/v1/chunks/\(id2.hex)").body == frame2) }
            // With a quorum of 2 the same situation is a success that still reports the failure.
            let (id3, frame3) = Self.frame(SyntheticData.random(byteCount: 1000, seed: 7))
            let quorum2 = try await client.send(
                .PUT, a, "/v1/chunks/\(id3.hex)?replicas=\(b),\(c)&quorum=2", body: frame3)
            #expect(quorum2.status == 201)
            #expect(try quorum2.json(ChunkWriteResult.self).failed.map(\.target) == [c])
        }
    }

    @Test("bad input gets a 4xx JSON error and stores nothing; no path escapes the data directory")
    func badInput() async throws {
        try await withChunkServers(1, extraArguments: ["--scrub-rate", "0"]) { servers, client, dir in
            let a = servers[0].address
            let (id, frame) = Self.frame(SyntheticData.logs(byteCount: 50_000, seed: 9))
            func expectError(
                _ reply: TestClient.Reply, _ status: Int, _ reason: String,
                sourceLocation: SourceLocation = #_sourceLocation
            ) {
                #expect(reply.status == status, "\(reply.text)", sourceLocation: sourceLocation)
                let body = try? reply.json(ErrorBody.self)
                #expect(body?.reason == reason, "\(reply.text)", sourceLocation: sourceLocation)
                #expect((body?.message.count ?? 0) > 10, sourceLocation: sourceLocation)
            }
            expectError(
                try await client.send(.PUT, a, "/v1/chunks/\(id.hex.uppercased())", body: frame), 400,
                "chunkID.invalidCharacter")
            expectError(try await client.send(.PUT, a, "/v1/chunks/abc", body: frame), 400, "chunkID.wrongLength")
            let other = ChunkID(hashing: [1, 2, 3])
            expectError(try await client.send(.PUT, a, "/v1/chunks/\(other.hex)", body: frame), 422, "frame.idMismatch")
            expectError(
                try await client.send(.PUT, a, "/v1/chunks/\(id.hex)", body: Array(frame.dropLast())), 422,
                "frame.payloadLengthMismatch")
            var flipped = frame
            flipped[40] ^= 1
            expectError(
                try await client.send(.PUT, a, "/v1/chunks/\(id.hex)", body: flipped), 422,
                "frame.payloadChecksumMismatch")
            // A copy forwarded by a peer (server role) is checked for damage on the way too; its
            // id was checked by the peer that took the write from the client.
            expectError(
                try await client.send(.PUT, a, "/v1/chunks/\(id.hex)", body: flipped, role: .server), 422,
                "frame.payloadChecksumMismatch")
            expectError(
                try await client.send(.PUT, a, "/v1/chunks/\(id.hex)", body: Array(repeating: 0, count: 17 << 20)),
                413, "body.tooLarge")
            expectError(
                try await client.send(.PUT, a, "/v1/chunks/\(id.hex)?replicas=../../etc", body: frame), 400,
                "replicas.badTarget")
            expectError(
                try await client.send(.PUT, a, "/v1/chunks/\(id.hex)?quorum=5", body: frame), 400, "quorum.outOfRange")
            expectError(try await client.send(.GET, a, "/v1/nothing-here"), 404, "http.noRoute")
            expectError(try await client.send(.GET, a, "/v1/chunks/\(id.hex)"), 404, "chunk.notFound")
            expectError(try await client.send(.GET, a, "/v1/chunks?limit=0"), 400, "inventory.limit")
            // Traversal attempts: encoded and raw dot segments never reach the file system.
            let outside = dir.appendingPathComponent("outside-\(UUID().uuidString)")
            for path in [
                "/v1/chunks/..%2F..%2F\(outside.lastPathComponent)", "/v1/chunks/%2e%2e",
                "/v1/chunks/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
            ] {
                let reply = try await client.send(.PUT, a, path, body: frame)
                #expect((400...499).contains(reply.status), "\(path): \(reply.status)")
                #expect((try? reply.json(ErrorBody.self)) != nil)
            }
            #expect(!FileManager.default.fileExists(atPath: outside.path))
            let status = try await client.send(.GET, a, "/v1/status").json(ChunkServerStatus.self)
            #expect(status.chunkCount == 0, "nothing was stored")
            let chunkFiles =
                FileManager.default.enumerator(atPath: servers[0].dataDirectory.appendingPathComponent("chunks").path)?
                .allObjects.compactMap { $0 as? String }.filter { $0.count > 10 } ?? []
            #expect(chunkFiles.isEmpty)
        }
    }

    @Test("requests without a token, with a bad signature, expired, or from the wrong role are refused")
    func authentication() async throws {
        try await withChunkServers(1) { servers, client, _ in
            let a = servers[0].address
            let (id, frame) = Self.frame([1, 2, 3, 4])
            let path = "/v1/chunks/\(id.hex)"
            let none = try await client.send(.PUT, a, path, body: frame, token: .some(nil))
            #expect(none.status == 401)
            #expect(try none.json(ErrorBody.self).reason == "auth.missingToken")
            let wrong = try RequestSigner(secret: Array("another-secret-of-32-bytes-long!".utf8))
            let forged = wrong.token(
                role: .client, method: "PUT", pathAndQuery: path, expiry: Int64(Date().timeIntervalSince1970) + 60)
            let bad = try await client.send(.PUT, a, path, body: frame, token: forged)
            #expect(bad.status == 401)
            #expect(try bad.json(ErrorBody.self).reason == "auth.badSignature")
            let old = client.signer.token(
                role: .client, method: "PUT", pathAndQuery: path, expiry: Int64(Date().timeIntervalSince1970) - 5)
            let expired = try await client.send(.PUT, a, path, body: frame, token: old)
            #expect(expired.status == 401)
            #expect(try expired.json(ErrorBody.self).reason == "auth.expired")
            // A token for another path does not carry over.
            let other = client.signer.token(
                role: .client, method: "PUT", pathAndQuery: "/v1/chunks/x",
                expiry: Int64(Date().timeIntervalSince1970) + 60)
            #expect(try await client.send(.PUT, a, path, body: frame, token: other).status == 401)
            #expect(try await client.send(.PUT, a, path, body: frame).status == 201)
            let clientDelete = try await client.send(.DELETE, a, path)
            #expect(clientDelete.status == 403)
            #expect(try await client.send(.GET, a, path).status == 200)
            // A master's delete must carry the leader's term; a lower term than one seen is refused.
            let unfenced = try await client.send(.DELETE, a, path, role: .master)
            let unfencedReason = try unfenced.json(ErrorBody.self).reason
            #expect(unfenced.status == 400 && unfencedReason == "leader.termMissing")
            let term = LeaderTermGuardHeader.name
            #expect(try await client.send(.DELETE, a, path, role: .master, headers: [(term, "5")]).status == 204)
            #expect(try await client.send(.GET, a, path).status == 404)
            #expect(try await client.send(.PUT, a, path, body: frame).status == 201)
            let stale = try await client.send(.DELETE, a, path, role: .master, headers: [(term, "4")])
            let staleReason = try stale.json(ErrorBody.self).reason
            #expect(stale.status == 409 && staleReason == "leader.staleTerm")
            #expect(try await client.send(.GET, a, path).status == 200, "a stale leader's delete did nothing")
            #expect(try await client.send(.DELETE, a, path, role: .master, headers: [(term, "5")]).status == 204)
        }
    }
}

/// The header a leader's commands carry its term in (the chunk server's `LeaderTermGuard`).
enum LeaderTermGuardHeader {
    static let name = "x-blob-leader-term"
}
