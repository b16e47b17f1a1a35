import BlobCore
@testable import BlobMaster
import BlobTestSupport
import Synchronization
import Testing

@Suite("one WAL position query for many callers")
struct PositionCoalescerTests {
    /// A query that waits until the test opens it, and answers the number it was started as.
    final class Queries: Sendable {
        let started = Atomic<UInt64>(0)
        let open = Atomic<Bool>(false)
    }

    @Test("callers that arrive while a query runs share the next one, which began after they asked")
    func coalesces() async throws {
        let queries = Queries()
        let coalescer = PositionCoalescer {
            let number = queries.started.add(1, ordering: .sequentiallyConsistent).newValue
            _ = try await eventually(within: .seconds(30)) { queries.open.load(ordering: .sequentiallyConsistent) }
            return MetadataPosition(number)
        }
        let first = Task { try await coalescer.position() }
        #expect(try await eventually(within: .seconds(30)) { queries.started.load(ordering: .relaxed) == 1 })
        // Twenty callers while the first query runs: none may take its answer (it began before them).
        let later = (0..<20).map { _ in Task { try await coalescer.position() } }
        #expect(try await eventually(within: .seconds(30)) { coalescer.waitingCount == 20 })
        queries.open.store(true, ordering: .sequentiallyConsistent)
        #expect(try await first.value == MetadataPosition(1))
        for task in later { #expect(try await task.value == MetadataPosition(2)) }
        #expect(queries.started.load(ordering: .relaxed) == 2, "two queries for 21 callers")
        // An error reaches every caller of that query, and the next caller starts afresh.
        let failing = PositionCoalescer { throw BlobError(.unavailable, reason: "test", "no primary") }
        await #expect(throws: BlobError.self) { try await failing.position() }
    }
}
