public import BlobCore

/// One point in a durable chunk write or a read where a test may inject a fault.
public enum DiskOperation: Sendable, Hashable {
    /// `count` bytes about to be written at `offset` of the temporary file of `chunk`.
    case write(chunk: ChunkID, offset: Int, count: Int)
    /// The temporary file of `chunk`, fully written, about to be fsynced.
    case fsync(chunk: ChunkID)
    /// The fsynced temporary file of `chunk` about to be renamed to its id.
    case rename(chunk: ChunkID)
    /// The stored frame of `chunk`, opened, about to be read (a chunk that is not there is
    /// reported absent before this point).
    case read(chunk: ChunkID)
}

/// What the disk layer does at a ``DiskOperation``.
public enum DiskFaultAction: Sendable, Hashable {
    case proceed
    /// The call fails with this errno (`ENOSPC`, `EIO`, …), as the kernel would report it; the
    /// write path cleans up as it does for a real failure.
    case fail(errno: Int32)
    /// Only the first `bytes` of this write reach the file, then the call fails with `errno`
    /// (a disk that fills mid-write).
    case writePartially(bytes: Int, thenErrno: Int32)
    /// The process dies here: the call stops with no clean-up at all, leaving the files as a
    /// crash would (a complete temporary file not yet renamed, say).
    case crash
    /// Only the first `bytes` of this write reach the file, then the process dies (a torn write).
    case crashAfterWriting(bytes: Int)
}

/// Decides, on the disk thread, what happens at each fault point of ``DiskChunkStore``. It
/// may block (a slow fsync holds the write until the test lets it go). Servers run without
/// one; tests pass one in ``ChunkServerConfiguration/diskFaults``.
public protocol DiskFaultInjector: Sendable {
    func action(at operation: DiskOperation) -> DiskFaultAction
}

/// The error of ``DiskFaultAction/crash``: the simulated process is gone, nothing was cleaned up.
public struct SimulatedCrash: Error, CodedError, Sendable {
    public var code: BlobErrorCode { .unavailable }
    public var reason: String { "disk.simulatedCrash" }
    public var message: String { "the chunk server's process died here (a test's simulated crash)" }
}
