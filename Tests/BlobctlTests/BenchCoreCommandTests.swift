import Foundation
import Testing

@Suite("blobctl bench core", .timeLimit(.minutes(3)))
struct BenchCoreCommandTests {
    @Test("bench core measures every stage and reports JSON with positive rates")
    func benchCoreJSON() async throws {
        let result = try await BlobctlProcess.run(
            ["bench", "core", "--size", "4M", "--repeat", "1", "--compare-levels", "3", "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let figures = try #require(json["figures"] as? [[String: Any]])
        let names = Set(figures.compactMap { $0["name"] as? String })
        for stage in [
            "SHA-256", "XXH3-64", "write pipeline (chunk+hash+zstd+frame)", "chunking (FastCDC, 1 MiB average)",
        ] {
            #expect(names.contains(stage), "missing \(stage)")
        }
        #expect(figures.allSatisfy { ($0["megabytesPerSecond"] as? Double ?? 0) > 0 })
        #expect((json["logCompressionRatio"] as? Double ?? 0) > 2, "generated logs compress")
    }

    @Test("a bad size is refused with a message naming the fix")
    func badSize() async throws {
        let result = try await BlobctlProcess.run(["bench", "core", "--size", "lots"])
        #expect(result.status != 0)
        #expect(result.stderr.contains("64M"))
    }
}
