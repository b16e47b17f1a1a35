import BlobCore
import Foundation

/// The measurements of `blobctl bench core`, all on the calling thread.
struct CoreBenchmark {
    let repeatCount: Int
    let level: Int32

    struct Figure: Codable {
        var name: String
        var data: String
        var megabytesPerSecond: Double
        var note: String?
    }

    struct Results: Codable {
        var machine: String
        var build: String
        var zstdLevel: Int32
        var logBytes: Int
        var randomBytes: Int
        var figures: [Figure]
        var lookupNanosecondsPerChunk: Double
        var logChunks: Int
        var logCompressionRatio: Double

        var table: String {
            var lines: [String] = [
                "machine: \(machine); build: \(build); zstd level \(zstdLevel); single core, best of runs",
                "logs: \(logBytes) bytes (\(logChunks) chunks, "
                    + "ratio \(String(format: "%.2f", logCompressionRatio))); random: \(randomBytes) bytes",
                "",
                "what".padding(toLength: 42, withPad: " ", startingAt: 0) + "data    " + "    MB/s",
                String(repeating: "-", count: 62),
            ]
            for f in figures {
                let mbps = String(format: "%8.0f", f.megabytesPerSecond)
                lines.append(
                    f.name.padding(toLength: 42, withPad: " ", startingAt: 0)
                        + f.data.padding(toLength: 8, withPad: " ", startingAt: 0) + mbps
                        + (f.note.map { "  (\($0))" } ?? ""))
            }
            lines.append(
                String(
                    format: "ring lookup (2^14 partitions, 20 servers): %.1f ns per chunk id", lookupNanosecondsPerChunk
                ))
            return lines.joined(separator: "\n")
        }
    }

    /// Best throughput of `repeatCount` runs of `body` over `byteCount` bytes, in MB/s.
    func measure(_ byteCount: Int, _ body: () -> Void) -> Double {
        var best = Duration.seconds(1_000_000)
        for _ in 0..<repeatCount {
            let elapsed = ContinuousClock().measure(body)
            best = min(best, elapsed)
        }
        let seconds = best.inSeconds
        return Double(byteCount) / seconds / 1e6
    }

    /// Cut points only: the bytes are lent in place, as the write pipeline uses them.
    func cutPoints(_ data: [UInt8]) -> Int {
        var splitter = try! ChunkSplitter(configuration: .default)
        var count = 0
        var offset = 0
        data.withUnsafeBytes { raw in
            while offset < raw.count {
                offset += splitter.append(
                    UnsafeRawBufferPointer(rebasing: raw[offset..<min(raw.count, offset + Limits.chunkerReadByteCount)])
                )
                while splitter.withNextChunk(isFinal: false, { _, _ in }) != nil { count += 1 }
            }
        }
        while splitter.withNextChunk(isFinal: true, { _, _ in }) != nil { count += 1 }
        return count
    }

    func chunks(_ data: [UInt8]) -> [Chunk] {
        var splitter = try! ChunkSplitter(configuration: .default)
        var out: [Chunk] = []
        var offset = 0
        data.withUnsafeBytes { raw in
            while offset < raw.count {
                offset += splitter.append(
                    UnsafeRawBufferPointer(rebasing: raw[offset..<min(raw.count, offset + Limits.chunkerReadByteCount)])
                )
                while let c = splitter.nextChunk(isFinal: false) { out.append(c) }
            }
        }
        while let c = splitter.nextChunk(isFinal: true) { out.append(c) }
        return out
    }

    func run(logs: [UInt8], random: [UInt8], compareLevels: [Int32]) -> Results {
        var figures: [Figure] = []
        let policy = CompressionPolicy(level: level)
        let logChunks = chunks(logs)
        let randomChunks = chunks(random)
        var sink: UInt64 = 0

        for (name, data) in [("logs", logs), ("random", random)] {
            figures.append(
                Figure(
                    name: "chunking (FastCDC, 1 MiB average)", data: name,
                    megabytesPerSecond: measure(data.count) { sink &+= UInt64(cutPoints(data)) }))
        }
        figures.append(
            Figure(
                name: "SHA-256", data: "logs",
                megabytesPerSecond: measure(logs.count) {
                    for c in logChunks { sink &+= ChunkID(hashing: c.bytes).words.0 }
                }))
        figures.append(
            Figure(
                name: "XXH3-64", data: "logs",
                megabytesPerSecond: measure(logs.count) {
                    for c in logChunks { sink &+= Checksum.xxh3(c.bytes) }
                }))
        var storedLogBytes = 0
        for (name, set) in [("logs", logChunks), ("random", randomChunks)] {
            let total = set.reduce(0) { $0 + $1.byteCount }
            let compressor = ChunkCompressor(policy: policy)
            var encoded: [EncodedChunk] = []
            figures.append(
                Figure(
                    name: "zstd compress (level \(level), with probe)", data: name,
                    megabytesPerSecond: measure(total) {
                        encoded = set.map { compressor.encode($0.bytes) }
                    }, note: "\(encoded.filter { $0.codec == .raw }.count) of \(set.count) chunks stored raw"))
            if name == "logs" { storedLogBytes = encoded.reduce(0) { $0 + $1.payload.count } }
            let frames = encoded.map(ChunkFrame.make)
            let decompressor = ChunkDecompressor()
            if name == "logs" {
                figures.append(
                    Figure(
                        name: "zstd decompress", data: name,
                        megabytesPerSecond: measure(total) {
                            for e in encoded {
                                sink &+= UInt64(
                                    e.payload.withUnsafeBytes {
                                        decompressor.decompress($0, plainByteCount: e.plainByteCount)?.count ?? 0
                                    })
                            }
                        }))
            }
            figures.append(
                Figure(
                    name: "decode (checksum + zstd + SHA-256)", data: name,
                    megabytesPerSecond: measure(total) {
                        for (f, c) in zip(frames, set) {
                            sink &+= UInt64(
                                (try? ChunkFrame.decode(
                                    f, expectedID: ChunkID(hashing: c.bytes), decompressor: decompressor))?.count ?? 0)
                        }
                    }, note: "includes hashing the expected id"))
        }
        for (name, data) in [("logs", logs), ("random", random)] {
            let encoder = ChunkEncoder(policy: policy)
            figures.append(
                Figure(
                    name: "write pipeline (chunk+hash+zstd+frame)", data: name,
                    megabytesPerSecond: measure(data.count) {
                        var splitter = try! ChunkSplitter(configuration: .default)
                        var offset = 0
                        func drain(_ isFinal: Bool) {
                            while let n = splitter.withNextChunk(
                                isFinal: isFinal,
                                { _, bytes in
                                    ChunkID(hashing: bytes).words.0 &+ UInt64(encoder.frame(for: bytes).count)
                                })
                            { sink &+= n }
                        }
                        data.withUnsafeBytes { raw in
                            while offset < raw.count {
                                let end = min(raw.count, offset + Limits.chunkerReadByteCount)
                                offset += splitter.append(UnsafeRawBufferPointer(rebasing: raw[offset..<end]))
                                drain(false)
                            }
                        }
                        drain(true)
                    }))
        }
        for l in compareLevels where l != level {
            let compressor = ChunkCompressor(policy: CompressionPolicy(level: l))
            var stored = 0
            let mbps = measure(logs.count) {
                stored = logChunks.reduce(0) { $0 + compressor.encode($1.bytes).payload.count }
            }
            figures.append(
                Figure(
                    name: "zstd compress (level \(l))", data: "logs", megabytesPerSecond: mbps,
                    note: String(format: "ratio %.2f", Double(logs.count) / Double(max(1, stored)))))
        }
        let lookup = lookupNanoseconds()
        if sink == 42 { print("") }  // keeps the optimiser from dropping the work
        return Results(
            machine: Self.machine, build: Self.build, zstdLevel: level, logBytes: logs.count, randomBytes: random.count,
            figures: figures, lookupNanosecondsPerChunk: lookup, logChunks: logChunks.count,
            logCompressionRatio: Double(logs.count) / Double(max(1, storedLogBytes)))
    }

    func lookupNanoseconds() -> Double {
        let members = (0..<20).map { RingMember(id: "cs-\($0)", zone: "z\($0 % 4)", weight: 1) }
        let ring = try! PlacementRing.build(members: members)
        let ids = (0..<100_000).map { ChunkID(hashing: Array("key:\($0)".utf8)) }
        var sink = 0
        var best = Duration.seconds(1000)
        for _ in 0..<max(3, repeatCount) {
            best = min(
                best,
                ContinuousClock().measure {
                    for id in ids { sink &+= Int(ring.replicaIndices(forPartition: ring.partition(for: id)).first!) }
                })
        }
        if sink == -1 { print("") }
        let seconds = best.inSeconds
        return seconds / Double(ids.count) * 1e9
    }

    static var build: String {
        #if DEBUG
            "debug"
        #else
            "release"
        #endif
    }

    static var machine: String {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let memory = ProcessInfo.processInfo.physicalMemory >> 30
        let cpu =
            (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8))?
            .split(separator: "\n").first { $0.hasPrefix("model name") }?
            .split(separator: ":").last?.trimmingCharacters(in: .whitespaces) ?? "unknown CPU"
        return "\(cpu), \(cores) cores, \(memory) GiB"
    }
}
