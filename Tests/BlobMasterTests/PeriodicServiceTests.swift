@testable import BlobMaster
import BlobTestSupport
import Logging
import Synchronization
import Testing

/// Background passes on a manual clock: on time, and at once when triggered.
@Suite("periodic passes")
struct PeriodicServiceTests {
    @Test("a trigger runs the next pass at once, without the clock moving")
    func triggerRunsPassAtOnce() async throws {
        let clock = ManualClock()
        let passes = Mutex(0)
        let trigger = PassTrigger()
        let service = PeriodicService(
            name: "test", interval: .seconds(3600), clock: clock, logger: Logger(label: "test.periodic"),
            trigger: trigger
        ) { passes.withLock { $0 += 1 } }
        let running = Task { try await service.run() }
        defer { running.cancel() }
        let count = { passes.withLock { $0 } }
        #expect(try await eventually(within: .seconds(10)) { count() == 1 }, "the first pass runs at start")
        trigger.fire()
        #expect(try await eventually(within: .seconds(10)) { count() == 2 }, "a trigger wakes the sleeping service")
        #expect(clock.elapsed == .zero)
        #expect(try await eventually(within: .seconds(10)) { clock.sleeperCount == 1 })
        clock.advance(by: .seconds(3600))
        #expect(try await eventually(within: .seconds(10)) { count() == 3 }, "and the interval still runs passes")
        running.cancel()
        _ = await running.result
        #expect(count() == 3, "cancelling stops the service")
    }

    @Test("a trigger fired before anyone waits is kept once; a cancelled wait returns")
    func triggerKeepsOneEarlyFire() async throws {
        let trigger = PassTrigger()
        trigger.fire()
        trigger.fire()
        await trigger.wait()  // returns at once: the fire was kept
        let waiting = Task { await trigger.wait() }
        waiting.cancel()
        await waiting.value  // a cancelled wait returns rather than hanging
        trigger.fire()
        await trigger.wait()
    }
}
