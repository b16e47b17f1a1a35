import AsyncHTTPClient
import BlobCore
import BlobTestSupport
import Foundation
import NIOCore
import NIOHTTP1
import Synchronization
import Testing

/// A `blobctl chunkserver` or `blobctl master` child process with its own data directory,
/// stopped by its PID.
final class ChunkServerProcess: @unchecked Sendable {
    // Mutated only from the owning test task: start, stop and kill run sequentially.
    let dataDirectory: URL
    let secretFile: URL
    let extraArguments: [String]
    let role: String
    private(set) var process: Process?
    private(set) var address = ""
    private(set) var serverID = ""
    private var logURL: URL

    init(dataDirectory: URL, secretFile: URL, extraArguments: [String] = [], role: String = "chunkserver") {
        self.dataDirectory = dataDirectory
        self.secretFile = secretFile
        self.extraArguments = extraArguments
        self.role = role
        self.logURL = dataDirectory.deletingLastPathComponent().appendingPathComponent(
            dataDirectory.lastPathComponent + ".log")
    }

    /// Starts the server (again, keeping its directory) and waits until it accepts requests.
    func start(port: Int = 0, timeout: Duration = .seconds(30)) async throws {
        let addressFile = dataDirectory.appendingPathComponent("listen-address")
        try? FileManager.default.removeItem(at: addressFile)
        let p = Process()
        p.executableURL = try BlobctlProcess.executableURL
        p.arguments =
            [
                role, "--data", dataDirectory.path, "--listen", "127.0.0.1:\(port)",
                "--secret-file", secretFile.path, "--log-level", "warning",
            ] + extraArguments
        if !FileManager.default.fileExists(atPath: logURL.path) {
            _ = FileManager.default.createFile(atPath: logURL.path, contents: nil)
        }
        let log = try FileHandle(forWritingTo: logURL)
        log.seekToEndOfFile()
        p.standardOutput = log
        p.standardError = log
        p.standardInput = FileHandle.nullDevice
        try p.launchSerially()
        process = p
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let text = try? String(contentsOf: addressFile, encoding: .utf8), !text.isEmpty {
                address = text.trimmingCharacters(in: .whitespacesAndNewlines)
                serverID =
                    (try? String(contentsOf: dataDirectory.appendingPathComponent("server-id"), encoding: .utf8))?
                    .trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
                return
            }
            guard p.isRunning else { throw TestFailure("\(role) exited early: \(log_())") }
            try await Task.sleep(for: .milliseconds(20))
        }
        try await kill()
        throw TestFailure("\(role) did not start within \(timeout): \(log_())")
    }

    private func log_() -> String { (try? String(contentsOf: logURL, encoding: .utf8)) ?? "" }

    /// SIGTERM, then waits (bounded) for a graceful exit; SIGKILL if it does not come.
    func stop(timeout: Duration = .seconds(20)) async throws {
        guard let p = process, p.isRunning else { return }
        Foundation.kill(p.processIdentifier, SIGTERM)
        try await p.exit(within: timeout)
        process = nil
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the running process, by its PID.
    func signal(_ signal: Int32) {
        if let p = process, p.isRunning { Foundation.kill(p.processIdentifier, signal) }
    }

    /// SIGKILL: no chance to clean up, as in a crash or power cut of the process.
    func kill() async throws {
        guard let p = process else { return }
        try await p.exit(within: .zero)
        process = nil
    }

    var log: String { log_() }
}

/// A signing HTTP client for tests.
struct TestClient: Sendable {
    let http: HTTPClient
    let signer: RequestSigner

    struct Reply: Sendable {
        var status: Int
        var body: [UInt8]
        var headers: HTTPHeaders
        var text: String { String(decoding: body, as: UTF8.self) }
        func json<T: Decodable>(_ type: T.Type) throws -> T { try JSONDecoder().decode(type, from: Data(body)) }
    }

    func send(
        _ method: HTTPMethod, _ address: String, _ pathAndQuery: String, body: [UInt8]? = nil,
        role: RequestRole = .client, token: String?? = nil, headers extra: [(String, String)] = []
    ) async throws -> Reply {
        var request = HTTPClientRequest(url: "http://\(address)\(pathAndQuery)")
        request.method = method
        let authorization =
            token
            ?? signer.token(
                role: role, method: method.rawValue, pathAndQuery: pathAndQuery,
                expiry: Int64(Date().timeIntervalSince1970) + 60)
        if let authorization { request.headers.add(name: "Authorization", value: authorization) }
        for (k, v) in extra { request.headers.add(name: k, value: v) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response = try await http.execute(request, timeout: .seconds(30))
        let collected = try await response.body.collect(upTo: 64 << 20)
        return Reply(status: Int(response.status.code), body: Array(buffer: collected), headers: response.headers)
    }
}

/// A small cluster of chunk server processes sharing a secret, torn down even when the body throws.
func withChunkServers<T>(
    _ count: Int, extraArguments: [String] = [], _ body: ([ChunkServerProcess], TestClient, URL) async throws -> T
) async throws -> T {
    try await withTemporaryDirectory { dir in
        let secretFile = dir.appendingPathComponent("secret")
        let secret = (0..<32).map { _ in UInt8.random(in: 97...122) }
        try Data(secret).write(to: secretFile)
        let servers = (0..<count).map {
            ChunkServerProcess(
                dataDirectory: dir.appendingPathComponent("cs\($0)"), secretFile: secretFile,
                extraArguments: extraArguments)
        }
        let http = HTTPClient(eventLoopGroupProvider: .singleton)
        let client = TestClient(http: http, signer: try RequestSigner(secret: secret))
        do {
            for s in servers { try await s.start() }
            let result = try await body(servers, client, dir)
            for s in servers { try await s.stop() }
            try await http.shutdown()
            return result
        } catch {
            for s in servers { try? await s.kill() }
            try? await http.shutdown()
            throw error
        }
    }
}

/// A list that concurrent tasks append to.
final class LockedList<Element: Sendable>: Sendable {
    private let storage = Mutex<[Element]>([])
    func append(_ element: Element) { storage.withLock { $0.append(element) } }
    var items: [Element] { storage.withLock { $0 } }
    var count: Int { storage.withLock { $0.count } }
}

enum HTTPClientForTests {
    static func make() -> HTTPClient { HTTPClient(eventLoopGroupProvider: .singleton) }
}

/// The same helper runs `blobctl master`.
typealias DaemonProcess = ChunkServerProcess
