import AsyncHTTPClient
import BlobChunkServer
import BlobClient
import BlobCore
import BlobTestSupport
import Dispatch
import Foundation
import Glibc
import NIOCore
import Synchronization
import Testing

/// A disk that holds `budget` more bytes of chunk writes, then answers ENOSPC.
final class FillingDisk: DiskFaultInjector {
    private let remaining: Mutex<Int>
    private let refusals = Atomic<Int>(0)

    init(budget: Int) { remaining = Mutex(budget) }

    var refused: Int { refusals.load(ordering: .relaxed) }

    func action(at operation: DiskOperation) -> DiskFaultAction {
        guard case .write(_, _, let count) = operation else { return .proceed }
        let allowed = remaining.withLock { left -> Int in
            let n = min(left, count)
            left -= n
            return n
        }
        if allowed == count { return .proceed }
        refusals.add(1, ordering: .relaxed)
        return .writePartially(bytes: allowed, thenErrno: ENOSPC)
    }
}

/// Answers 503 for every request to the addresses in ``refused``.
final class RefusingPeer: PeerFaultInjector {
    let refused = Mutex<Set<String>>([])
    private let answered = Atomic<Int>(0)

    var refusals: Int { answered.load(ordering: .relaxed) }

    func action(target: String, method: String, path: String) async -> PeerFaultAction {
        guard refused.withLock({ $0.contains(target) }) else { return .proceed }
        answered.add(1, ordering: .relaxed)
        return .answer(status: 503)
    }
}

/// Holds the fsync of chunk writes until the test opens the gate (bounded: 60 s).
final class FsyncGate: DiskFaultInjector {
    private let reached = Atomic<Bool>(false)
    private let gate = DispatchSemaphore(value: 0)

    var isHolding: Bool { reached.load(ordering: .acquiring) }

    func open() { gate.signal() }

    func action(at operation: DiskOperation) -> DiskFaultAction {
        guard case .fsync = operation else { return .proceed }
        reached.store(true, ordering: .releasing)
        _ = gate.wait(timeout: .now() + 60)
        return .proceed
    }
}

@Suite("Faults injected into an in-process cluster", .timeLimit(.minutes(5)))
struct FaultInjectionTests {
    static func file(_ byteCount: Int, seed: UInt64) -> [UInt8] {
        SyntheticData.random(byteCount: byteCount, seed: seed)
    }

    static let smallChunks = ChunkerConfiguration.fixed(byteCount: 256 << 10)

    /// Every file under `chunks/` of a server is a whole frame whose bytes hash to its name.
    static func everyChunkFileIsWhole(_ server: TestChunkServer) throws -> Int {
        let root = server.dataDirectory + "/chunks"
        guard let walker = FileManager.default.enumerator(atPath: root) else { return 0 }
        var count = 0
        for case let relative as String in walker where relative.split(separator: "/").last?.count == 64 {
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: root + "/" + relative)))
            let id = try ChunkID(hex: String(relative.split(separator: "/").last!))
            let plain = try ChunkFrame.decode(bytes)
            #expect(ChunkID(hashing: plain) == id, "\(relative) holds other bytes than its id")
            count += 1
        }
        return count
    }

    @Test(
        "a disk filling during a put: the put fails naming the full disk, no visible file, no partial chunk stored"
    )
    func diskFillsDuringPut() async throws {
        var options = TestClusterOptions()
        options.masterClock = ManualClock()  // liveness holds still: a loaded machine makes no server suspect
        let disks = [FillingDisk(budget: 600 << 10), FillingDisk(budget: 600 << 10)]
        options.diskFaults = [0: disks[0], 1: disks[1]]
        try await withTestCluster(options) { cluster in
            let path = try BlobPath("media/too-big.bin")
            let putOptions = PutOptions(chunker: Self.smallChunks)
            do {
                _ = try await cluster.client.put(.bytes(Self.file(4 << 20, seed: 11)), to: path, options: putOptions)
                Issue.record("a put onto two full disks of three succeeded")
            } catch let error as BlobError {
                #expect(error.code == .insufficientReplicas || error.code == .insufficientStorage, "\(error)")
                #expect(
                    error.message.contains("No space left on device"),
                    "the message names the full disk: \(error.message)")
            }
            #expect(disks[0].refused + disks[1].refused > 0, "the disks did fill")
            await #expect(throws: BlobError.self) { try await cluster.client.stat(path) }
            for server in cluster.servers {
                _ = try Self.everyChunkFileIsWhole(server)
                #expect(server.temporaryFiles().isEmpty, "no temporary file left on \(server.id)")
            }
            // The cluster still takes a small file with a quorum of one: the client hands the lead
            // to the server that has room.
            let fits = try BlobPath("media/fits.bin")
            let small = Self.file(20_000, seed: 12)
            var one = PutOptions()
            one.writeQuorum = 1
            _ = try await cluster.client.put(.bytes(small), to: fits, options: one)
            #expect(try await cluster.client.stat(fits).size == 20_000)
        }
    }

    @Test("one replica answering 503 to its peers: writes reach their quorum and read back identical")
    func replicaAnswering503() async throws {
        var options = TestClusterOptions()
        options.masterClock = ManualClock()  // liveness holds still: a loaded machine makes no server suspect
        let peers = (0..<3).map { _ in RefusingPeer() }
        options.peerFaults = [0: peers[0], 1: peers[1], 2: peers[2]]
        try await withTestCluster(options) { cluster in
            for peer in peers { peer.refused.withLock { $0 = [cluster.servers[2].address] } }
            let bytes = Self.file(3 << 20, seed: 21)
            let path = try BlobPath("media/quorum.bin")
            let result = try await cluster.client.put(
                .bytes(bytes), to: path, options: PutOptions(chunker: Self.smallChunks))
            #expect(result.chunkCount > 3)
            #expect(peers.map(\.refusals).reduce(0, +) > 0, "forwards to the refusing replica were made and refused")
            let plan = try await cluster.client.readPlan(path)
            for chunk in plan.chunks {
                #expect(chunk.replicas.count >= 2, "\(chunk.chunk.chunkID.shortHex) has \(chunk.replicas.count) copies")
            }
            let out = cluster.directory + "/quorum.out"
            _ = try await cluster.client.get(path, to: .file(out))
            #expect(try Data(contentsOf: URL(fileURLWithPath: out)) == Data(bytes))

            // A quorum of three is met too: the client hands the lead to the replica the others
            // cannot reach, and it forwards to them.
            var all = PutOptions(chunker: Self.smallChunks)
            all.writeQuorum = 3
            let three = try BlobPath("media/three.bin")
            _ = try await cluster.client.put(.bytes(Self.file(1 << 20, seed: 22)), to: three, options: all)
            for chunk in try await cluster.client.readPlan(three).chunks {
                #expect(chunk.replicas.count == 3, "\(chunk.chunk.chunkID.shortHex) has \(chunk.replicas.count) copies")
            }
        }
    }

    @Test("a slow fsync: the chunk write is acknowledged only after the fsync completes")
    func slowFsync() async throws {
        var options = TestClusterOptions()
        options.masterClock = ManualClock()  // liveness holds still: a loaded machine makes no server suspect
        let gate = FsyncGate()
        options.diskFaults = [0: gate]
        try await withTestCluster(options) { cluster in
            let plain = Self.file(200_000, seed: 31)
            let id = ChunkID(hashing: plain)
            let frame = ChunkEncoder().frame(for: plain)
            let server = cluster.servers[0]
            let signer = try RequestSigner(secret: cluster.secret)
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let answered = Flag()
            let pathAndQuery = "/v1/chunks/\(id.hex)?quorum=1"
            var request = HTTPClientRequest(url: "http://\(server.address)\(pathAndQuery)")
            request.method = .PUT
            request.headers.add(
                name: "Authorization",
                value: signer.token(
                    role: .client, method: "PUT", pathAndQuery: pathAndQuery,
                    expiry: Int64(Date().timeIntervalSince1970) + 300))
            request.body = .bytes(ByteBuffer(bytes: frame))
            let write = Task { [request] in
                let response = try await http.execute(request, timeout: .seconds(60))
                answered.set()
                _ = try await response.body.collect(upTo: 1 << 20)
                return response.status.code
            }
            let holding = try await eventually(within: .seconds(20)) { gate.isHolding }
            #expect(holding, "the write reached its fsync")
            #expect(!answered.isSet, "no acknowledgement while the fsync is held")
            #expect(
                !FileManager.default.fileExists(atPath: server.chunkPath(id)), "nothing under the id before the fsync")
            gate.open()
            let status = try await write.value
            #expect(status == 201)
            #expect(FileManager.default.fileExists(atPath: server.chunkPath(id)))
            try await http.shutdown()
        }
    }
}

final class Flag: Sendable {
    private let value = Atomic<Bool>(false)
    func set() { value.store(true, ordering: .releasing) }
    var isSet: Bool { value.load(ordering: .acquiring) }
}
