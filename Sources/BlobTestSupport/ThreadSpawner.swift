public import Foundation

/// Starts a process from a thread of its own that lives until ``release()``. The parent-death
/// signal (setpriv --pdeathsig) follows the thread that spawned the child, not the process,
/// and a thread of Swift's pool may end at any time: the server would be killed with it.
public final class ThreadSpawner: @unchecked Sendable {
    private let done = DispatchSemaphore(value: 0)

    public init() {}

    public func start(_ process: Process) async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            let thread = Thread { [done] in
                do {
                    try process.launchSerially()
                } catch {
                    continuation.resume(throwing: error)
                    return
                }
                continuation.resume()
                done.wait()
            }
            thread.start()
        }
    }

    public func release() { done.signal() }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick).
public func freeLoopbackPort() throws -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer -> Int32 in
            guard bind(fd, pointer, length) == 0 else { return -1 }
            return getsockname(fd, pointer, &length)
        }
    }
    guard bound == 0 else { throw TestClusterError("no free port on 127.0.0.1") }
    return Int(UInt16(bigEndian: address.sin_port))
}

/// One `Process.run()` at a time in the test process. A full test run starts children from
/// many suites at once, and one such run crashed inside Foundation's `Process.run()` (a memcpy
/// past a buffer, on Linux) while others were launching; every test starts its children here.
private let launchLock = NSLock()

extension Process {
    public func launchSerially() throws {
        try launchLock.withLock { try run() }
    }
}
