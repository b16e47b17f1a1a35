import BlobCore
import BlobTestSupport
import Foundation
import Testing

/// The HTTP and S3 gateway as users reach it: curl for media semantics, boto3, the aws CLI and
/// rclone for S3, against a master, chunk servers and a gateway that are separate processes.
@Suite("gateway: HTTP media and S3", .timeLimit(.minutes(10)))
struct GatewayTests {
    /// A running gateway process in front of a test cluster, stopped by its PID.
    final class Gateway: @unchecked Sendable {
        let process = Process()
        var address = ""

        init(master: String, secretFile: URL, dir: URL) throws {
            let addressFile = dir.appendingPathComponent("gateway-address")
            let log = dir.appendingPathComponent("gateway.log")
            _ = FileManager.default.createFile(atPath: log.path, contents: nil)
            process.executableURL = try BlobctlProcess.executableURL
            process.arguments = [
                "gateway", "--listen", "127.0.0.1:0", "--master", "http://\(master)", "--secret-file", secretFile.path,
                "--spool-dir", dir.appendingPathComponent("spool").path, "--address-file", addressFile.path,
                "--virtual-host-suffix", "s3.localhost",
                "--log-level", "warning",
            ]
            let handle = try FileHandle(forWritingTo: log)
            process.standardOutput = handle
            process.standardError = handle
            process.standardInput = FileHandle.nullDevice
            try process.launchSerially()
        }

        func waitUntilListening(_ dir: URL) async throws {
            let file = dir.appendingPathComponent("gateway-address")
            let ok = try await ChunkServerFaultTests.eventually(within: .seconds(20)) {
                if let text = try? String(contentsOf: file, encoding: .utf8), !text.isEmpty {
                    address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                    return true
                }
                return !process.isRunning
            }
            guard ok, process.isRunning else { throw TestFailure("the gateway did not start") }
        }

        /// SIGTERM, then SIGKILL if it has not exited within 20 s.
        func stop() async throws {
            if process.isRunning { kill(process.processIdentifier, SIGTERM) }
            try await process.exit(within: .seconds(20))
        }
    }

    static func withGateway<T>(_ body: (OperationsTests.Cluster, Gateway) async throws -> T) async throws -> T {
        try await OperationsTests.withCluster(servers: 3) { cluster in
            let gateway = try Gateway(master: cluster.master.address, secretFile: cluster.secretFile, dir: cluster.dir)
            do {
                try await gateway.waitUntilListening(cluster.dir)
                let result = try await body(cluster, gateway)
                try await gateway.stop()
                return result
            } catch {
                try? await gateway.stop()
                throw error
            }
        }
    }

    struct CurlReply {
        var status: Int
        var headers: [String: String]
        var body: Data
    }

    /// One curl request; headers lowercased.
    static func curl(_ url: String, _ args: [String] = [], dir: URL) async throws -> CurlReply {
        let headersFile = dir.appendingPathComponent("curl-headers-\(UUID().uuidString)")
        let bodyFile = dir.appendingPathComponent("curl-body-\(UUID().uuidString)")
        defer {
            try? FileManager.default.removeItem(at: headersFile)
            try? FileManager.default.removeItem(at: bodyFile)
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/curl")
        p.arguments = ["-s", "--max-time", "60", "-D", headersFile.path, "-o", bodyFile.path] + args + [url]
        try p.launchSerially()
        try await p.exit(within: .seconds(70))
        let text = (try? String(contentsOf: headersFile, encoding: .utf8)) ?? ""
        var status = 0
        var headers: [String: String] = [:]
        for line in text.split(separator: "\r\n") {
            if line.hasPrefix("HTTP/") {
                status = Int(line.split(separator: " ")[1]) ?? 0
            } else if let colon = line.firstIndex(of: ":") {
                headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                    in: .whitespaces)
            }
        }
        return CurlReply(status: status, headers: headers, body: (try? Data(contentsOf: bodyFile)) ?? Data())
    }

    @Test("plain HTTP for media: ranges, 206 and 416, HEAD, conditional requests, 403 and 404 bodies")
    func httpMedia() async throws {
        try await Self.withGateway { cluster, gateway in
            #expect(try await cluster.run(["bucket", "create", "public", "--public-read"]).status == 0)
            #expect(try await cluster.run(["bucket", "create", "private"]).status == 0)
            let local = cluster.dir.appendingPathComponent("video.mp4")
            try await ClientTests.makeFile(local, byteCount: 6 << 20, seed: 2100)
            let bytes = try Data(contentsOf: local)
            try await cluster.put(local, "public/video.mp4", chunkSize: "256K")
            try await cluster.put(local, "private/video.mp4", chunkSize: "256K")
            let url = "http://\(gateway.address)/public/video.mp4"
            let size = bytes.count

            let whole = try await Self.curl(url, dir: cluster.dir)
            #expect(whole.status == 200 && whole.body == bytes)
            #expect(whole.headers["accept-ranges"] == "bytes" && whole.headers["content-type"] == "video/mp4")
            let etag = try #require(whole.headers["etag"])
            let lastModified = try #require(whole.headers["last-modified"])

            // Start, end, across chunk boundaries (256 KiB average), open-ended, suffix.
            let cases: [(String, Int, Int)] = [
                ("0-99", 0, 99), ("\(size - 10)-\(size - 1)", size - 10, size - 1),
                ("200000-900000", 200_000, 900_000), ("\(size - 5000)-", size - 5000, size - 1),
                ("-4096", size - 4096, size - 1), ("5000000-99999999", 5_000_000, size - 1),
            ]
            for (spec, from, to) in cases {
                let r = try await Self.curl(url, ["-H", "Range: bytes=\(spec)"], dir: cluster.dir)
                #expect(r.status == 206, "bytes=\(spec)")
                #expect(r.headers["content-range"] == "bytes \(from)-\(to)/\(size)", "bytes=\(spec)")
                #expect(r.body == bytes[from...to], "bytes=\(spec)")
            }
            // Numbers at the edge of Int64 are answered, not trapped on.
            let huge = try await Self.curl(url, ["-H", "Range: bytes=0-9223372036854775807"], dir: cluster.dir)
            #expect(huge.status == 206 && huge.body == bytes, "\(huge.status)")
            let hugeStart = try await Self.curl(
                url, ["-H", "Range: bytes=9223372036854775806-9223372036854775807"], dir: cluster.dir)
            #expect(hugeStart.status == 416)
            let unsatisfiable = try await Self.curl(url, ["-H", "Range: bytes=\(size)-"], dir: cluster.dir)
            #expect(unsatisfiable.status == 416 && unsatisfiable.headers["content-range"] == "bytes */\(size)")
            #expect(String(decoding: unsatisfiable.body, as: UTF8.self).contains("<Code>InvalidRange</Code>"))

            let head = try await Self.curl(url, ["-I"], dir: cluster.dir)
            // With -I curl writes the headers where the body would go: no object bytes follow them.
            #expect(head.status == 200 && head.headers["content-length"] == String(size) && head.body.count < 2000)

            #expect(try await Self.curl(url, ["-H", "If-None-Match: \(etag)"], dir: cluster.dir).status == 304)
            #expect(
                try await Self.curl(url, ["-H", "If-Modified-Since: \(lastModified)"], dir: cluster.dir).status == 304)
            #expect(try await Self.curl(url, ["-H", "If-Match: \"nope\""], dir: cluster.dir).status == 412)
            #expect(try await Self.curl(url, ["-H", "If-Match: \(etag)"], dir: cluster.dir).status == 200)
            let staleRange = try await Self.curl(
                url, ["-H", "Range: bytes=0-9", "-H", "If-Range: \"other\""], dir: cluster.dir)
            #expect(
                staleRange.status == 200 && staleRange.body.count == size,
                "If-Range that does not match: the whole object")
            let freshRange = try await Self.curl(
                url, ["-H", "Range: bytes=0-9", "-H", "If-Range: \(etag)"], dir: cluster.dir)
            #expect(freshRange.status == 206 && freshRange.body.count == 10)

            // Virtual-host style: the bucket is the first label of the Host.
            let port = gateway.address.split(separator: ":").last.map(String.init) ?? ""
            let virtual = try await Self.curl(
                "http://\(gateway.address)/video.mp4",
                ["-H", "Host: public.s3.localhost:\(port)", "-H", "Range: bytes=10-19"], dir: cluster.dir)
            #expect(virtual.status == 206 && virtual.body == bytes[10...19], "\(virtual.status)")
            let virtualPrivate = try await Self.curl(
                "http://\(gateway.address)/video.mp4",
                ["-H", "Host: private.s3.localhost:\(port)"], dir: cluster.dir)
            #expect(virtualPrivate.status == 403)

            let missing = try await Self.curl("http://\(gateway.address)/public/nothing.mp4", dir: cluster.dir)
            #expect(
                missing.status == 404
                    && String(decoding: missing.body, as: UTF8.self).contains("<Code>NoSuchKey</Code>"))
            let denied = try await Self.curl("http://\(gateway.address)/private/video.mp4", dir: cluster.dir)
            #expect(
                denied.status == 403
                    && String(decoding: denied.body, as: UTF8.self).contains("<Code>AccessDenied</Code>"))
        }
    }

    /// Runs a tool to completion (bounded); returns its status and standard output.
    /// With `mergeErrors`, standard error goes to the same output (for a script's tracebacks).
    static func tool(
        _ path: String, _ args: [String], dir: URL, timeout: Duration = .seconds(120),
        mergeErrors: Bool = false
    ) async throws -> (Int32, String) {
        let out = dir.appendingPathComponent("tool-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: path)
        p.arguments = args
        let handle = try FileHandle(forWritingTo: out)
        p.standardOutput = handle
        p.standardError = mergeErrors ? handle : FileHandle.nullDevice
        p.standardInput = FileHandle.nullDevice
        try p.launchSerially()
        try await p.exit(within: timeout)
        try handle.close()
        guard !p.isRunning else { throw TestFailure("\(path) did not finish within \(timeout)") }
        return (p.terminationStatus, (try? String(contentsOf: out, encoding: .utf8)) ?? "")
    }

    @Test("ffmpeg: a video put in a public bucket is probed, counted and seeked into over HTTP ranges")
    func ffmpegOverHTTP() async throws {
        try await Self.withGateway { cluster, gateway in
            let clip = cluster.dir.appendingPathComponent("clip.mp4")
            // 5 s at 25 frames/s; the index (moov) at the end, as cameras write it, so a player must seek.
            let (made, _) = try await Self.tool(
                "/usr/bin/ffmpeg",
                [
                    "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=duration=5:size=320x240:rate=25", "-c:v", "mpeg4",
                    "-q:v", "5", clip.path,
                ], dir: cluster.dir)
            #expect(made == 0)
            #expect(try await cluster.run(["bucket", "create", "videos", "--public-read"]).status == 0)
            try await cluster.put(clip, "videos/clip.mp4", chunkSize: "64K")
            let url = "http://\(gateway.address)/videos/clip.mp4"
            let (probed, frames) = try await Self.tool(
                "/usr/bin/ffprobe",
                [
                    "-v", "error", "-count_frames", "-select_streams", "v:0",
                    "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", url,
                ],
                dir: cluster.dir)
            #expect(probed == 0 && frames.trimmingCharacters(in: .whitespacesAndNewlines) == "125", "frames: \(frames)")
            let (timed, duration) = try await Self.tool(
                "/usr/bin/ffprobe",
                [
                    "-v", "error", "-show_entries", "format=duration",
                    "-of", "csv=p=0", url,
                ], dir: cluster.dir)
            #expect(
                timed == 0 && abs((Double(duration.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) - 5) < 0.1,
                "\(duration)")
            // Seek to 3 s and decode one frame, then count what is left from there: 2 s of frames.
            let frame = cluster.dir.appendingPathComponent("frame.png")
            let (seeked, _) = try await Self.tool(
                "/usr/bin/ffmpeg",
                [
                    "-v", "error", "-y", "-ss", "3", "-i", url, "-frames:v", "1",
                    frame.path,
                ], dir: cluster.dir)
            #expect(seeked == 0 && FileManager.default.fileExists(atPath: frame.path))
            let (counted, rest) = try await Self.tool(
                "/usr/bin/ffmpeg",
                [
                    "-v", "error", "-ss", "3", "-i", url, "-map", "0:v",
                    "-f", "framemd5", "-",
                ], dir: cluster.dir)
            let decoded = rest.split(separator: "\n").filter { !$0.hasPrefix("#") }.count
            #expect(counted == 0 && (48...52).contains(decoded), "frames decoded after seeking to 3 s: \(decoded)")
        }
    }

    @Test("a real browser: headless Chromium loads a <video> from the gateway, seeks to 3 s and plays past it")
    func browserPlaysVideo() async throws {
        try await Self.withGateway { cluster, gateway in
            let clip = cluster.dir.appendingPathComponent("clip.webm")
            let (made, _) = try await Self.tool(
                "/usr/bin/ffmpeg",
                [
                    "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=duration=6:size=320x240:rate=25", "-c:v", "libvpx",
                    "-b:v", "300k", clip.path,
                ], dir: cluster.dir)
            #expect(made == 0)
            #expect(try await cluster.run(["bucket", "create", "web", "--public-read"]).status == 0)
            try await cluster.put(clip, "web/clip.webm", chunkSize: "64K")
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Gateway/browser_video.py")
            let (status, reports) = try await Self.tool(
                "/usr/bin/env",
                [
                    "python3", script.path,
                    "http://\(gateway.address)/web/clip.webm", "60",
                ],
                dir: cluster.dir, timeout: .seconds(90))
            #expect(status == 0, "the browser reported: \(reports)")
            #expect(
                reports.contains("duration=6") && reports.contains("seeked=3.00") && reports.contains("played=3."),
                "\(reports)")
        }
    }

    @Test(
        "hostile input on raw sockets: a 4xx with a JSON or S3 XML body, or a close; nothing stored changes"
    )
    func hostileInput() async throws {
        try await Self.withGateway { cluster, gateway in
            try await Self.runScript(
                "hostile.py", cluster: cluster, timeout: .seconds(200), expecting: "hostile input checks passed"
            ) { id, secret in
                [
                    cluster.master.address, cluster.servers[0].address, gateway.address, cluster.secretFile.path, id,
                    secret,
                ]
            }
        }
    }

    /// Runs `Tests/Gateway/SCRIPT` with python3 and a fresh S3 key (its arguments from
    /// `arguments(id, secret)`); expects exit 0 and `expecting` in its output.
    static func runScript(
        _ script: String, cluster: OperationsTests.Cluster, timeout: Duration, expecting: String,
        arguments: (String, String) -> [String]
    ) async throws {
        let key = try await cluster.json(["key", "create", "--name", script])
        let id = try #require(key["access_key_id"] as? String)
        let secret = try #require(key["secret_access_key"] as? String)
        let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Gateway/\(script)")
        let (status, output) = try await tool(
            "/usr/bin/env", ["python3", path.path] + arguments(id, secret), dir: cluster.dir, timeout: timeout,
            mergeErrors: true)
        #expect(status == 0, "\(output.suffix(3000))")
        #expect(output.contains(expecting), "\(output.suffix(3000))")
    }

    @Test(
        "boto3, aws CLI, rclone: put, get, multipart, list 2,500 keys, presign, copy, sync; bad input gets S3 errors"
    )
    func s3Clients() async throws {
        try await Self.withGateway { cluster, gateway in
            let work = cluster.dir.appendingPathComponent("s3-clients")
            try FileManager.default.createDirectory(at: work, withIntermediateDirectories: true)
            try await Self.runScript(
                "s3_clients.py", cluster: cluster, timeout: .seconds(400), expecting: "all S3 client checks passed"
            ) { id, secret in ["http://\(gateway.address)", id, secret, work.path] }
        }
    }
}
