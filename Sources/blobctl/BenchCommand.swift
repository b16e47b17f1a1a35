import ArgumentParser
import BlobCore
import Foundation

struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure the store's building blocks and paths.",
        subcommands: [BenchCoreCommand.self, BenchChunkServerCommand.self, BenchMetadataCommand.self]
    )
}

/// Single-core throughput of the core's data path: chunking, hashing, compression, framing.
struct BenchCoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Single-core MB/s of chunking, SHA-256, XXH3, zstd and the whole write pipeline.",
        discussion: """
            Runs on one thread over data held in memory, so the figures are CPU limits, not disk \
            or network ones. Build in release first (swift build -c release). Without --logs / \
            --random it generates deterministic data itself; pass files from \
            shared/bench/data/gen.py to compare with other systems on the same bytes. \
            MB = 10^6 bytes; each figure is the best of --repeat runs.
            """
    )

    @Option(help: "Bytes of generated data per kind (K, M, G suffixes), when no file is given.")
    var size: String = "128M"

    @Option(help: "A log file to use instead of generated log text (e.g. from gen.py logs).")
    var logs: String?

    @Option(help: "An incompressible file to use instead of generated random bytes.")
    var random: String?

    @Option(help: "zstd level of the codec and the pipeline.")
    var level: Int32 = CompressionPolicy.default.level

    @Option(help: "Also measure these zstd levels on logs (comma-separated), for choosing the default.")
    var compareLevels: String = "1,2,3"

    @Option(help: "Runs per figure; the best is reported.")
    var `repeat`: Int = 3

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        guard let byteCount = ByteCountParser.parse(size), byteCount > 0 else {
            throw ValidationError("--size \(size) is not a size; use e.g. 64M or 1G")
        }
        guard self.repeat >= 1 else { throw ValidationError("--repeat must be at least 1") }
        #if DEBUG
            FileHandle.standardError.write(
                Data(
                    "warning: this is a debug build; figures are not meaningful. Use swift build -c release.\n".utf8))
        #endif
        let logData = try logs.map(Self.read) ?? SyntheticData.logs(byteCount: byteCount, seed: 1)
        let randomData = try random.map(Self.read) ?? SyntheticData.random(byteCount: byteCount, seed: 2)
        let levels = compareLevels.split(separator: ",").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }
        let bench = CoreBenchmark(repeatCount: self.repeat, level: level)
        let results = bench.run(logs: logData, random: randomData, compareLevels: levels)
        if json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(results), as: UTF8.self))
        } else {
            print(results.table)
        }
    }

    static func read(_ path: String) throws -> [UInt8] {
        do {
            return [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        } catch {
            throw ValidationError("cannot read \(path): \(error.localizedDescription)")
        }
    }
}

/// Parses human sizes: 123, 4K, 64M, 1G, 2GiB (binary units).
enum ByteCountParser {
    static func parse(_ text: String) -> Int? {
        let t = text.trimmingCharacters(in: .whitespaces).uppercased()
        let digits = t.prefix { $0.isNumber || $0 == "." }
        let unit = t.dropFirst(digits.count).replacingOccurrences(of: "IB", with: "").replacingOccurrences(
            of: "B", with: "")
        guard let value = Double(digits) else { return nil }
        let scale: Double
        switch unit {
        case "": scale = 1
        case "K": scale = 1024
        case "M": scale = 1024 * 1024
        case "G": scale = 1024 * 1024 * 1024
        case "T": scale = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        return Int(value * scale)
    }
}
