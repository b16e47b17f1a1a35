import ArgumentParser
import BlobCore
import Foundation

struct RingCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring",
        abstract: "Inspect and simulate the placement ring.",
        subcommands: [RingSimulateCommand.self]
    )
}

/// Replays the placement benchmark's scenarios through the ring's real build and change path.
struct RingSimulateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "simulate",
        abstract: "Write before/after placement dumps for the placement benchmark's scenarios.",
        discussion: """
            For every feasible scenario, builds the 'before' ring, applies the membership change \
            the way the master does (PlacementRing.next), and writes DIR/<scenario>.before.tsv \
            and DIR/<scenario>.after.tsv: one line per partition, the device ids of its replicas \
            in replica order. Score them with shared/bench/placement/score.sh DIR --units partitions.
            """
    )

    @Option(help: "The scenarios file (placement-scenarios/v1), e.g. ../shared/bench/placement/scenarios.json.")
    var scenarios: String

    @Option(help: "Directory for the dumps; created if missing.")
    var out: String

    @Option(help: "Unit of the dumps: 'partitions' (the ring's own units) or 'keys' (each benchmark key).")
    var units: SimulationUnits = .partitions

    @Option(help: "Partition power; defaults to the scenarios file's part_power.")
    var partitionPower: Int?

    @Option(help: "Only these scenario ids (comma-separated).")
    var only: String?

    func run() throws {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: scenarios))
        } catch {
            throw ValidationError("cannot read scenarios file \(scenarios): \(error.localizedDescription)")
        }
        let file: ScenarioFile
        do {
            file = try JSONDecoder().decode(ScenarioFile.self, from: data)
        } catch {
            throw ValidationError("\(scenarios) is not a placement-scenarios/v1 file: \(error)")
        }
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let power = partitionPower ?? file.partitions.part_power
        let wanted = only.map { Set($0.split(separator: ",").map(String.init)) }
        let keys = units == .keys ? ScenarioKeys(count: file.keys.count, seed: file.keys.seed) : nil
        for scenario in file.scenarios where scenario.feasible ?? true {
            if let wanted, !wanted.contains(scenario.id) { continue }
            guard let before = file.device_sets[scenario.before], let after = file.device_sets[scenario.after] else {
                throw ValidationError("scenario \(scenario.id) names a device set that is not in the file")
            }
            let start = ContinuousClock.now
            let ring0 = try PlacementRing.build(
                members: before.members, replicaCount: file.replicas, partitionPower: power,
                failureDomain: before.policy)
            let ring1 = try ring0.next(members: after.members, failureDomain: after.policy)
            let elapsed = ContinuousClock.now - start
            try write(ring0, to: "\(out)/\(scenario.id).before.tsv", keys: keys)
            try write(ring1, to: "\(out)/\(scenario.id).after.tsv", keys: keys)
            let moved = ring0.movedReplicaCount(to: ring1)
            let fraction = Double(moved) / Double(ring0.partitionCount * ring0.replicaCount)
            print(
                "\(scenario.id): epoch \(ring0.epoch) -> \(ring1.epoch), "
                    + "moved \(String(format: "%.3f", 100 * fraction))% "
                    + "(ideal \(String(format: "%.3f", 100 * (scenario.ideal_moved_fraction ?? 0)))%), \(elapsed)")
        }
    }

    private func write(_ ring: PlacementRing, to path: String, keys: ScenarioKeys?) throws {
        let deviceID = ring.members.map { Array(String(Int($0.id) ?? -1).utf8) }
        var bytes = Array(
            ("# blobctl ring simulate: epoch \(ring.epoch), 2^\(ring.partitionPower) partitions, "
                + "failure domain \(ring.failureDomain)\n").utf8)
        bytes.reserveCapacity(ring.partitionCount * 16)
        func line(_ unit: Int, _ partition: Int) {
            bytes.append(contentsOf: String(unit).utf8)
            bytes.append(UInt8(ascii: "\t"))
            for (i, m) in ring.replicaIndices(forPartition: partition).enumerated() {
                if i > 0 { bytes.append(UInt8(ascii: ",")) }
                bytes.append(contentsOf: deviceID[Int(m)])
            }
            bytes.append(UInt8(ascii: "\n"))
        }
        if let keys {
            for i in 0..<keys.count { line(i, ring.partition(for: keys.id(i))) }
        } else {
            for p in 0..<ring.partitionCount { line(p, p) }
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}

enum SimulationUnits: String, ExpressibleByArgument {
    case partitions, keys
}

/// Benchmark key i is the SHA-256 of "<seed>:<i>".
struct ScenarioKeys {
    let count: Int
    let seed: String
    func id(_ i: Int) -> ChunkID { ChunkID(hashing: Array("\(seed):\(i)".utf8)) }
}

struct ScenarioFile: Decodable {
    struct Keys: Decodable {
        let count: Int
        let seed: String
    }
    struct Partitions: Decodable { let part_power: Int }
    struct Device: Decodable {
        let id: Int
        let name: String
        let weight: Double
        let zone: Int
    }
    struct DeviceSet: Decodable {
        let devices: [Device]
        let failure_domain: String
        // Device ids (as text) are the member ids, so the dumps can name devices by id.
        var members: [RingMember] {
            devices.map { RingMember(id: String($0.id), zone: "z\($0.zone)", weight: $0.weight) }
        }
        var policy: FailureDomainPolicy { failure_domain == "zone" ? .zone : .server }
    }
    struct Scenario: Decodable {
        let id: String
        let before: String
        let after: String
        let feasible: Bool?
        let ideal_moved_fraction: Double?
    }
    let replicas: Int
    let keys: Keys
    let partitions: Partitions
    let device_sets: [String: DeviceSet]
    let scenarios: [Scenario]
}
