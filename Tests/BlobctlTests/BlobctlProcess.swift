import BlobTestSupport
import Foundation
import Testing

/// Runs the built `blobctl` binary as a user would, with a time limit, and stops it by PID.
struct BlobctlProcess {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// The `blobctl` next to this test bundle (SwiftPM builds both into the same folder).
    static var executableURL: URL {
        get throws {
            if let path = ProcessInfo.processInfo.environment["BLOBCTL_PATH"] {
                return URL(fileURLWithPath: path)
            }
            var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
            for _ in 0..<4 {
                let candidate = dir.appendingPathComponent("blobctl")
                if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
                dir = dir.deletingLastPathComponent()
            }
            throw TestFailure("blobctl binary not found near \(CommandLine.arguments[0]); build it or set BLOBCTL_PATH")
        }
    }

    /// Runs `blobctl args...`, waits at most `timeout`, and returns its status and output.
    static func run(
        _ args: [String], timeout: Duration = .seconds(120), environment: [String: String] = [:],
        standardInput: URL? = nil, standardOutput: URL? = nil
    ) async throws -> Output {
        let process = Process()
        process.executableURL = try executableURL
        process.arguments = args
        // An empty value unsets the variable for the child.
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }.filter {
            !$0.value.isEmpty
        }
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("blobctl-out-\(UUID().uuidString)")
        let err = FileManager.default.temporaryDirectory.appendingPathComponent("blobctl-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer {
            try? FileManager.default.removeItem(at: out)
            try? FileManager.default.removeItem(at: err)
        }
        if let standardOutput { _ = FileManager.default.createFile(atPath: standardOutput.path, contents: nil) }
        process.standardOutput = try FileHandle(forWritingTo: standardOutput ?? out)
        process.standardError = try FileHandle(forWritingTo: err)
        process.standardInput = try standardInput.map { try FileHandle(forReadingFrom: $0) } ?? FileHandle.nullDevice
        try process.launchSerially()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(20))
        }
        if process.isRunning {
            try await process.exit(within: .zero)
            throw TestFailure("blobctl \(args.joined(separator: " ")) did not finish within \(timeout)")
        }
        return Output(
            status: process.terminationStatus,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOf: err, encoding: .utf8)) ?? "")
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A fresh temporary directory, removed at the end of `body`.
func withTemporaryDirectory<T>(_ body: (URL) async throws -> T) async throws -> T {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blobtest-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    return try await body(dir)
}

extension Process {
    /// Waits for the process to exit without blocking a thread of Swift's cooperative pool (a
    /// blocking `waitUntilExit()` there can starve every other test in the same run). After
    /// `timeout` it is killed by its PID. After the kill, the wait is bounded too, and a process
    /// the kernel has ended (gone, or a zombie that Foundation has not yet reaped on a loaded
    /// machine) counts as exited. Read `terminationStatus` only while `isRunning` is false.
    func exit(within timeout: Duration) async throws {
        let deadline = ContinuousClock.now + timeout
        while isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        guard isRunning else { return }
        let pid = processIdentifier
        kill(pid, SIGKILL)
        let killed = ContinuousClock.now + .seconds(60)
        while isRunning && !Self.hasEnded(pid) && ContinuousClock.now < killed {
            try await Task.sleep(for: .milliseconds(20))
        }
        if isRunning && !Self.hasEnded(pid) { throw TestFailure("process \(pid) did not exit after SIGKILL") }
    }

    /// Whether the kernel has ended `pid`: no such process, or a zombie.
    static func hasEnded(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return true }
        // The state follows the command name in parentheses: "PID (NAME) S …".
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).prefix(1)
        return state == "Z" || state == "X"
    }
}

/// Runs CPU- or disk-heavy synchronous work (generating hundreds of MiB of test data) on a
/// thread of its own: on Swift's cooperative pool (two threads here) it would starve every
/// in-process server of the same test run for seconds.
func offCooperativePool<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        let thread = Thread { continuation.resume(with: Result { try work() }) }
        thread.stackSize = 8 << 20
        thread.start()
    }
}
