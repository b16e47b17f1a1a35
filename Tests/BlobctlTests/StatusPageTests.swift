import BlobCore
import BlobTestSupport
import Foundation
import Testing

/// The master's status page as an operator opens it: headless Chromium on the metrics listener
/// of a real master, with a chunk server killed.
@Suite("the master's status page in a browser", .timeLimit(.minutes(5)))
struct StatusPageTests {
    /// Runs headless Chromium on `url` (its own profile, killed with this process) and returns
    /// what it printed: the DOM after load with `--dump-dom`.
    static func chromium(_ arguments: [String], url: String, dir: URL) async throws -> String {
        let profile = dir.appendingPathComponent("chromium-\(UUID().uuidString)")
        let out = dir.appendingPathComponent("chromium-out-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        process.arguments =
            [
                "--pdeathsig", "KILL", "--", "/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu",
                "--no-first-run", "--hide-scrollbars", "--user-data-dir=\(profile.path)",
            ] + arguments + [url]
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        let spawner = ThreadSpawner()
        try await spawner.start(process)
        defer {
            spawner.release()
            try? FileManager.default.removeItem(at: profile)
        }
        let ended = try await eventually(within: .seconds(90)) { !process.isRunning }
        if !ended {
            kill(process.processIdentifier, SIGKILL)
            throw TestFailure("chromium did not finish within 90 s")
        }
        return (try? String(contentsOf: out, encoding: .utf8)) ?? ""
    }

    @Test("a killed chunk server shows as down on the page Chromium renders; a screenshot is taken")
    func killedServerShowsDown() async throws {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") else {
            throw TestFailure("Chromium is not installed: `apt-get install chromium` (Scripts/test-tools.sh does)")
        }
        try await MasterTests.withCluster(servers: 3) { master, servers, client, dir in
            let listener = try String(
                contentsOf: master.dataDirectory.appendingPathComponent("metrics-address"), encoding: .utf8
            ).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(
                try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    try await MasterTests.status(client, master).servers.count { $0.state == .alive } == 3
                })
            let victim = servers[2].serverID
            try await servers[2].kill()
            #expect(
                try await ChunkServerFaultTests.eventually(within: .seconds(30)) {
                    try await MasterTests.status(client, master).servers.first { $0.id == victim }?.state == .down
                }, "the master calls the killed server down")

            let dom = try await Self.chromium(["--dump-dom"], url: "http://\(listener)/status", dir: dir)
            // The victim's row, as the browser built it: marked and labelled down.
            let row = dom.components(separatedBy: "<tr").first { $0.contains("data-server=\"\(victim)\"") } ?? ""
            #expect(row.contains("class=\"state-down\"") && row.contains(">down<"), "row: \(row)")
            for server in servers.prefix(2) {
                let alive = dom.components(separatedBy: "<tr").first { $0.contains(server.serverID) } ?? ""
                #expect(alive.contains(">alive<"), "\(server.serverID): \(alive)")
            }
            #expect(dom.contains("2 of 3 chunk servers alive"), "\(dom.prefix(2000))")

            // The screenshot docs/status-page.png was taken this way (BLOB_STATUS_SCREENSHOT=PATH).
            let screenshot =
                ProcessInfo.processInfo.environment["BLOB_STATUS_SCREENSHOT"]
                ?? dir.appendingPathComponent("status.png").path
            _ = try await Self.chromium(
                ["--window-size=1400,820", "--screenshot=\(screenshot)"], url: "http://\(listener)/status", dir: dir)
            let png = FileManager.default.contents(atPath: screenshot) ?? Data()
            #expect(png.starts(with: [0x89, 0x50, 0x4E, 0x47]) && png.count > 10_000, "a PNG of the page")
        }
    }
}
