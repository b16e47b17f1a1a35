import Foundation
import Testing

/// `blobctl dev up/status/env/down` exactly as the README has a newcomer run them.
@Suite("blobctl dev", .timeLimit(.minutes(5)))
struct DevClusterTests {
    struct Running: Decodable {
        struct Process: Decodable {
            var name: String
            var pid: Int32
            var running: Bool
        }
        var processes: [Process]
    }

    @Test("dev up starts a cluster that plain put/get use; up again reuses it; down stops exactly its PIDs")
    func upPutGetDown() async throws {
        try await withTemporaryDirectory { dir in
            let clusterDir = dir.appendingPathComponent("cluster").path
            let environment = [
                "BLOBCTL_CONFIG": dir.appendingPathComponent("config.json").path,
                "BLOBCTL_DEV_DIR": clusterDir,
            ]
            func blobctl(_ args: [String], stdout: URL? = nil) async throws -> BlobctlProcess.Output {
                try await BlobctlProcess.run(
                    args, timeout: .seconds(120), environment: environment, standardOutput: stdout)
            }
            // Fixed ports, as a user gets them; a few bases in case one is taken on this machine.
            var port = 0
            var up = BlobctlProcess.Output(status: -1, stdout: "", stderr: "")
            for _ in 0..<4 {
                port = Int.random(in: 20_000...60_000)
                up = try await blobctl(["dev", "up", "--port", "\(port)"])
                if up.status == 0 { break }
            }
            #expect(up.status == 0, "\(up.stderr)")
            var pids: [Int32] = []
            do {
                #expect(up.stdout.contains("http://127.0.0.1:\(port)"))
                let statusOut = try await blobctl(["dev", "status", "--json"])
                let running = try JSONDecoder().decode(Running.self, from: Data(statusOut.stdout.utf8))
                pids = running.processes.map(\.pid)
                #expect(
                    running.processes.count == 5 && running.processes.allSatisfy(\.running),
                    "master, 3 servers, gateway")
                // The gateway is up on the port after the servers' and refuses an unsigned listing.
                #expect(up.stdout.contains("S3 and HTTP gateway: http://127.0.0.1:\(port + 4)"), "\(up.stdout)")
                let anonymous = try await GatewayTests.curl("http://127.0.0.1:\(port + 4)/", dir: dir)
                #expect(anonymous.status == 403)

                let local = dir.appendingPathComponent("hello.txt")
                try Data("hello, blobstore\n".utf8).write(to: local)
                let put = try await blobctl(["put", local.path, "docs/hello.txt"])
                #expect(put.status == 0, "\(put.stderr)")
                let out = dir.appendingPathComponent("hello.out")
                let get = try await blobctl(["get", "docs/hello.txt", out.path])
                #expect(get.status == 0, "\(get.stderr)")
                #expect(try Data(contentsOf: out) == Data(contentsOf: local))
                let cluster = try await blobctl(["cluster", "status", "--json"])
                let status = try JSONSerialization.jsonObject(with: Data(cluster.stdout.utf8)) as? [String: Any]
                let servers = status?["servers"] as? [[String: Any]] ?? []
                #expect(servers.count == 3 && servers.allSatisfy { $0["state"] as? String == "alive" })
                #expect((status?["stored_bytes"] as? Int).map { $0 >= 0 } == true)

                let again = try await blobctl(["dev", "up", "--port", "\(port)"])
                #expect(again.status == 0 && again.stderr.contains("reusing"), "\(again.stderr)")
                let after = try JSONDecoder().decode(
                    Running.self, from: Data(try await blobctl(["dev", "status", "--json"]).stdout.utf8))
                #expect(after.processes.map(\.pid) == pids, "the same processes")

                let env = try await blobctl(["dev", "env"])
                #expect(env.stdout.contains("export BLOBCTL_MASTER='http://127.0.0.1:\(port)'"))
            } catch {
                _ = try? await blobctl(["dev", "down"])
                throw error
            }
            let down = try await blobctl(["dev", "down"])
            #expect(down.status == 0 && down.stdout.contains("stopped 5"), "\(down.stdout) \(down.stderr)")
            for pid in pids {
                // Gone, or a zombie waiting for its reaper (an empty command line).
                let cmdline = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") ?? Data()
                #expect(kill(pid, 0) != 0 || cmdline.isEmpty, "process \(pid) is gone")
            }
            let stopped = try await blobctl(["ls"])
            #expect(stopped.status != 0 && stopped.stderr.contains("blobctl dev up"), "\(stopped.stderr)")
        }
    }
}
