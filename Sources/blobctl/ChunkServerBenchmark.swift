import ArgumentParser
import AsyncHTTPClient
import BlobCore
import Foundation
import NIOCore

/// `blobctl bench chunkserver`: real chunk server processes on 127.0.0.1, 1 MiB chunks.
struct BenchChunkServerCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chunkserver",
        abstract: "Write and read MB/s of real chunk server processes over loopback.",
        discussion: """
            Starts three `blobctl chunkserver` processes with data directories under --dir, then \
            writes --size bytes of distinct 1 MiB incompressible chunks and reads them back, with \
            1 and 8 concurrent streams, with R=1 (one server) and R=3 (each write names the other \
            two servers, which the receiving server forwards to). Next to it, the same durable \
            write pattern without HTTP (temp file, write, fsync, rename, fsync directory) gives \
            this disk's limit for it. Build in release first.
            """
    )

    @Option(help: "Bytes written per case (K, M, G).")
    var size: String = "256M"

    @Option(help: "Directory for the servers' data (a fresh temporary one by default).")
    var dir: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    struct Figure: Codable {
        var name: String
        var streams: Int
        var replicas: Int
        var megabytesPerSecond: Double
        var diskMegabytesPerSecond: Double
    }

    func run() async throws {
        guard let total = ByteCountParser.parse(size), total >= 1 << 20 else {
            throw ValidationError("--size \(size) is not a size of at least 1M")
        }
        let root = dir ?? (NSTemporaryDirectory() + "blobctl-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { if dir == nil { try? FileManager.default.removeItem(atPath: root) } }
        let chunkCount = total >> 20
        FileHandle.standardError.write(Data("preparing \(chunkCount) chunks of 1 MiB...\n".utf8))
        let encoder = ChunkEncoder()
        var rng = SplitMix64(seed: UInt64(Date().timeIntervalSince1970))
        // Four sets of distinct chunks, one per write case, so no write is a duplicate.
        let sets: [[(ChunkID, [UInt8])]] = (0..<4).map { _ in
            (0..<chunkCount).map { _ in
                let plain = SyntheticData.random(byteCount: 1 << 20, seed: rng.next())
                return (ChunkID(hashing: plain), encoder.frame(for: plain))
            }
        }
        var figures: [Figure] = []
        figures.append(
            try diskBaseline(root: root + "/baseline", frames: sets[0].prefix(min(chunkCount, 128)).map(\.1)))

        let secret = (0..<32).map { _ in UInt8.random(in: 97...122) }
        try Data(secret).write(to: URL(fileURLWithPath: root + "/secret"))
        let servers = try (0..<3).map { try BenchServer(directory: root + "/cs\($0)", secretFile: root + "/secret") }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let signer = try RequestSigner(secret: secret)
        let client = BenchHTTP(http: http, signer: signer, address: "")
        do {
            for s in servers { try await s.start() }
            var setIndex = 0
            for (replicas, streams) in [(1, 1), (1, 8), (3, 1), (3, 8)] {
                let set = sets[setIndex]
                setIndex += 1
                let targets = replicas == 1 ? [servers[0].address] : servers.map(\.address)
                let writeSeconds = try await timed(set, streams: streams) { index, chunk in
                    let primary = targets[index % targets.count]
                    let others = targets.filter { $0 != primary }
                    let query = others.isEmpty ? "" : "?replicas=" + others.joined(separator: ",")
                    try await send(
                        client, "PUT", primary, "/v1/chunks/\(chunk.0.hex)\(query)", body: chunk.1, expect: [201])
                }
                let bytes = Double(set.count << 20)
                figures.append(
                    Figure(
                        name: "write", streams: streams, replicas: replicas,
                        megabytesPerSecond: bytes / writeSeconds / 1e6,
                        diskMegabytesPerSecond: bytes * Double(replicas) / writeSeconds / 1e6))
                let readSeconds = try await timed(set, streams: streams) { index, chunk in
                    try await send(
                        client, "GET", targets[index % targets.count], "/v1/chunks/\(chunk.0.hex)",
                        body: nil, expect: [200])
                }
                figures.append(
                    Figure(
                        name: "read", streams: streams, replicas: replicas,
                        megabytesPerSecond: bytes / readSeconds / 1e6, diskMegabytesPerSecond: 0))
            }
        } catch {
            for s in servers { s.stop() }
            try? await http.shutdown()
            throw error
        }
        for s in servers { s.stop() }
        try await http.shutdown()
        print(json ? String(decoding: try JSONEncoder().encode(figures), as: UTF8.self) : table(figures))
    }

    func table(_ figures: [Figure]) -> String {
        var lines = [
            "1 MiB incompressible chunks, 127.0.0.1, release; MB = 10^6 bytes", "",
            "case                                   streams  R      MB/s   disk MB/s",
        ]
        for f in figures {
            lines.append(
                f.name.padding(toLength: 40, withPad: " ", startingAt: 0)
                    + String(
                        format: "%5d %3d %9.0f %11.0f", f.streams, f.replicas, f.megabytesPerSecond,
                        f.diskMegabytesPerSecond))
        }
        return lines.joined(separator: "\n")
    }

    /// Runs `body` over every chunk with `streams` workers; returns the elapsed seconds.
    func timed(
        _ set: [(ChunkID, [UInt8])], streams: Int,
        _ body: @escaping @Sendable (Int, (ChunkID, [UInt8])) async throws -> Void
    ) async throws -> Double {
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for worker in 0..<streams {
                group.addTask {
                    var i = worker
                    while i < set.count {
                        try await body(i, set[i])
                        i += streams
                    }
                }
            }
            try await group.waitForAll()
        }
        return (ContinuousClock.now - start).inSeconds
    }

    func send(
        _ client: BenchHTTP, _ method: String, _ address: String, _ path: String,
        body: [UInt8]?, expect: Set<UInt>
    ) async throws {
        let status = try await client.send(method, to: address, path, bytes: body)
        guard expect.contains(status) else {
            throw ValidationError("\(method) \(path) on \(address) answered \(status)")
        }
    }

    /// The same durable write pattern as the server, without HTTP or verification.
    func diskBaseline(root: String, frames: [[UInt8]]) throws -> Figure {
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let start = ContinuousClock.now
        for (i, frame) in frames.enumerated() {
            let path = "\(root)/\(i)"
            let fd = open(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            guard fd >= 0 else { throw ValidationError("cannot write under \(root)") }
            _ = frame.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            fsync(fd)
            close(fd)
            rename(path + ".tmp", path)
            let dfd = open(root, O_RDONLY | O_DIRECTORY)
            fsync(dfd)
            close(dfd)
        }
        let seconds = (ContinuousClock.now - start).inSeconds
        let bytes = Double(frames.count << 20)
        return Figure(
            name: "disk limit: write+fsync+rename (no HTTP)", streams: 1, replicas: 1,
            megabytesPerSecond: bytes / seconds / 1e6, diskMegabytesPerSecond: bytes / seconds / 1e6)
    }
}

/// A `blobctl chunkserver` child process started from this same binary.
final class BenchServer: @unchecked Sendable {
    // Used from one task at a time: start, then stop.
    let directory: String
    let secretFile: String
    let role: String
    var process: Process?
    var address = ""

    let extraArguments: [String]

    init(directory: String, secretFile: String, role: String = "chunkserver", extraArguments: [String] = []) throws {
        self.extraArguments = extraArguments
        self.directory = directory
        self.secretFile = secretFile
        self.role = role
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func start() async throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        p.arguments =
            [
                role, "--data", directory, "--listen", "127.0.0.1:0", "--secret-file", secretFile,
                "--log-level", "warning",
            ] + (role == "chunkserver" ? ["--scrub-rate", "0"] : []) + extraArguments
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        try p.run()
        process = p
        let file = directory + "/listen-address"
        for _ in 0..<3000 {
            if let text = try? String(contentsOfFile: file, encoding: .utf8), !text.isEmpty {
                address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                return
            }
            try await Task.sleep(for: .milliseconds(10))
        }
        stop()
        throw ValidationError("\(role) in \(directory) did not start within 10 s")
    }

    /// Peak resident memory of the process (VmHWM), in MiB.
    func peakRSSMebibytes() -> Double {
        guard let p = process,
            let text = try? String(contentsOfFile: "/proc/\(p.processIdentifier)/status", encoding: .utf8),
            let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { return 0 }
        return kib / 1024
    }

    /// SIGTERM, a bounded wait for a graceful exit, then SIGKILL.
    func stop() {
        guard let p = process else { return }
        if p.isRunning { kill(p.processIdentifier, SIGTERM) }
        for _ in 0..<2000 where p.isRunning { usleep(10_000) }
        if p.isRunning { kill(p.processIdentifier, SIGKILL) }
        p.waitUntilExit()
        process = nil
    }
}
