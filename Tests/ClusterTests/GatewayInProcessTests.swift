import AsyncHTTPClient
import BlobClient
import BlobCore
import BlobTestSupport
import Foundation
import NIOCore
import Testing

@Suite("The gateway on an in-process cluster", .timeLimit(.minutes(5)))
struct GatewayInProcessTests {
    @Test("a public bucket's object streams over plain HTTP: whole, by range (206), past the end (416)")
    func plainHTTPRanges() async throws {
        var options = TestClusterOptions()
        options.masterClock = ManualClock()  // liveness holds still: a loaded machine makes no server suspect
        options.gateway = true
        try await withTestCluster(options) { cluster in
            let gateway = try #require(cluster.gatewayAddress)
            _ = try await cluster.client.createBucket("films", publicRead: true)
            let bytes = SyntheticData.random(byteCount: 3 << 20, seed: 7)
            var put = PutOptions(contentType: "video/mp4", chunker: .fixed(byteCount: 512 << 10))
            put.bucket = "films"
            _ = try await cluster.client.put(.bytes(bytes), to: try BlobPath("films/clip.mp4"), options: put)
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            func get(_ range: String?) async throws -> (UInt, [UInt8]) {
                var request = HTTPClientRequest(url: "http://\(gateway)/films/clip.mp4")
                if let range { request.headers.add(name: "Range", value: range) }
                let response = try await http.execute(request, timeout: .seconds(30))
                let body = try await response.body.collect(upTo: 8 << 20)
                return (response.status.code, Array(body.readableBytesView))
            }
            do {
                let whole = try await get(nil)
                #expect(whole.0 == 200 && whole.1 == bytes)
                // A range across a chunk boundary.
                let part = try await get("bytes=524000-524799")
                #expect(part.0 == 206 && part.1 == Array(bytes[524_000...524_799]))
                let tail = try await get("bytes=-100")
                #expect(tail.0 == 206 && tail.1 == Array(bytes.suffix(100)))
                #expect(try await get("bytes=\(bytes.count)-").0 == 416)
                try await http.shutdown()
            } catch {
                try? await http.shutdown()
                throw error
            }
        }
    }

    @Test("a copy and a bucket creation sent again under their request ids answer what the first made")
    func repeatedCopyAndCreation() async throws {
        var options = TestClusterOptions()
        options.masterClock = ManualClock()  // liveness holds still: a loaded machine makes no server suspect
        try await withTestCluster(options) { cluster in
            let client = cluster.client
            let bucket = try await client.createBucket("clips", requestID: "make-clips")
            #expect(try await client.createBucket("clips", requestID: "make-clips") == bucket)
            let taken = await #expect(throws: BlobError.self) { try await client.createBucket("clips") }
            #expect(taken?.reason == "bucket.exists")

            let bytes = SyntheticData.random(byteCount: 300_000, seed: 11)
            var put = PutOptions(contentType: "video/mp4")
            put.bucket = "clips"
            let source = try BlobPath("clips/a.mp4")
            let target = try BlobPath("clips/b.mp4")
            _ = try await client.put(.bytes(bytes), to: source, options: put)
            let copied = try await client.copy(source, to: target, bucket: "clips", requestID: "copy-1")
            #expect(try await client.copy(source, to: target, bucket: "clips", requestID: "copy-1") == copied)
            // Even once the source is gone, the copy's request still answers its version.
            _ = try await client.delete(source)
            #expect(try await client.copy(source, to: target, bucket: "clips", requestID: "copy-1") == copied)
            let current = try await client.stat(target)
            #expect(copied.version == 1 && current == copied, "one version for three sends")
            let out = cluster.directory + "/copied.mp4"
            _ = try await client.get(target, to: .file(out))
            #expect(try Array(Data(contentsOf: URL(fileURLWithPath: out))) == bytes)
        }
    }
}
