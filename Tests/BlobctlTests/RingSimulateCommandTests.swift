import Foundation
import Testing

@Suite("blobctl ring simulate", .timeLimit(.minutes(3)))
struct RingSimulateCommandTests {
    /// A small scenarios file in the benchmark's format: 6 equal servers gain a seventh, and a
    /// 2x3 zoned set loses a server.
    static let scenarios = """
        {
          "format": "placement-scenarios/v1", "replicas": 3,
          "keys": {"count": 2000, "seed": "test-keys"},
          "partitions": {"part_power": 9},
          "device_sets": {
            "eq6": {"failure_domain": "device", "devices": [
              {"id": 0, "name": "d0", "weight": 1, "zone": 1}, {"id": 1, "name": "d1", "weight": 1, "zone": 2},
              {"id": 2, "name": "d2", "weight": 1, "zone": 3}, {"id": 3, "name": "d3", "weight": 1, "zone": 4},
              {"id": 4, "name": "d4", "weight": 1, "zone": 5}, {"id": 5, "name": "d5", "weight": 1, "zone": 6}]},
            "eq6.add": {"failure_domain": "device", "devices": [
              {"id": 0, "name": "d0", "weight": 1, "zone": 1}, {"id": 1, "name": "d1", "weight": 1, "zone": 2},
              {"id": 2, "name": "d2", "weight": 1, "zone": 3}, {"id": 3, "name": "d3", "weight": 1, "zone": 4},
              {"id": 4, "name": "d4", "weight": 1, "zone": 5}, {"id": 5, "name": "d5", "weight": 1, "zone": 6},
              {"id": 6, "name": "d6", "weight": 1, "zone": 7}]},
            "z3x3": {"failure_domain": "zone", "devices": [
              {"id": 0, "name": "d0", "weight": 1, "zone": 1}, {"id": 1, "name": "d1", "weight": 1, "zone": 1},
              {"id": 2, "name": "d2", "weight": 1, "zone": 2}, {"id": 3, "name": "d3", "weight": 1, "zone": 2},
              {"id": 4, "name": "d4", "weight": 1, "zone": 3}, {"id": 5, "name": "d5", "weight": 1, "zone": 3},
              {"id": 6, "name": "d6", "weight": 1, "zone": 4}]},
            "z3x3.remove": {"failure_domain": "zone", "devices": [
              {"id": 0, "name": "d0", "weight": 1, "zone": 1}, {"id": 1, "name": "d1", "weight": 1, "zone": 1},
              {"id": 2, "name": "d2", "weight": 1, "zone": 2}, {"id": 3, "name": "d3", "weight": 1, "zone": 2},
              {"id": 4, "name": "d4", "weight": 1, "zone": 3}, {"id": 5, "name": "d5", "weight": 1, "zone": 3}]}
          },
          "scenarios": [
            {"id": "eq6-add", "before": "eq6", "after": "eq6.add", "ideal_moved_fraction": 0.142857142857},
            {"id": "z-remove", "before": "z3x3", "after": "z3x3.remove", "ideal_moved_fraction": 0.142857142857},
            {"id": "never", "before": "eq6", "after": "eq6", "feasible": false}
          ]
        }
        """

    static func readDump(_ url: URL) throws -> [[Int]] {
        try String(contentsOf: url, encoding: .utf8).split(separator: "\n")
            .filter { !$0.hasPrefix("#") }
            .enumerated().map { index, line in
                let fields = line.split(separator: "\t")
                #expect(Int(fields[0]) == index)
                return fields[1].split(separator: ",").map { Int($0)! }
            }
    }

    @Test("simulate writes dumps whose after-state is balanced, valid and moves only the new server's share")
    func simulateSmallScenarios() async throws {
        try await withTemporaryDirectory { dir in
            let file = dir.appendingPathComponent("scenarios.json")
            try Self.scenarios.write(to: file, atomically: true, encoding: .utf8)
            let out = dir.appendingPathComponent("dumps")
            let result = try await BlobctlProcess.run(["ring", "simulate", "--scenarios", file.path, "--out", out.path])
            #expect(result.status == 0, "\(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("never.before.tsv").path))

            let before = try Self.readDump(out.appendingPathComponent("eq6-add.before.tsv"))
            let after = try Self.readDump(out.appendingPathComponent("eq6-add.after.tsv"))
            #expect(before.count == 512 && after.count == 512)
            var moved = 0
            var load = [Int](repeating: 0, count: 7)
            for (b, a) in zip(before, after) {
                #expect(Set(a).count == 3)
                moved += Set(a).subtracting(b).count
                for d in a { load[d] += 1 }
            }
            // 512 partitions x 3 replicas over 7 servers: 219 or 220 each.
            #expect(load.allSatisfy { (219...220).contains($0) }, "\(load)")
            #expect(moved == load[6], "only the new server's replicas move")

            let zBefore = try Self.readDump(out.appendingPathComponent("z-remove.before.tsv"))
            let zAfter = try Self.readDump(out.appendingPathComponent("z-remove.after.tsv"))
            let zone = [1, 1, 2, 2, 3, 3, 4]
            var zMoved = 0
            for (b, a) in zip(zBefore, zAfter) {
                #expect(Set(a.map { zone[$0] }).count == 3, "replicas in three distinct zones")
                #expect(!a.contains(6))
                zMoved += Set(a).subtracting(b).count
            }
            #expect(zMoved == zBefore.joined().filter { $0 == 6 }.count, "only the removed server's replicas move")
        }
    }

    @Test("a missing scenarios file is a clear error, not a crash")
    func missingFile() async throws {
        let result = try await BlobctlProcess.run([
            "ring", "simulate", "--scenarios", "/nonexistent/s.json", "--out", "/tmp/x",
        ])
        #expect(result.status != 0)
        #expect(result.stderr.contains("cannot read scenarios file"))
    }
}
