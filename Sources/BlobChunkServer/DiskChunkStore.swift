import BlobCore
import Glibc

/// Why the disk layer failed; converted to ``BlobError`` at the HTTP edge.
struct DiskError: CodedError, Sendable {
    let code: BlobErrorCode
    let reason: String
    let message: String

    static func errno(_ operation: String, _ path: String, _ value: Int32) -> DiskError {
        let text = String(cString: strerror(value))
        if value == ENOSPC || value == EDQUOT {
            return DiskError(
                code: .insufficientStorage, reason: "disk.full",
                message: "\(operation) \(path) failed: \(text); the write was discarded, free space or add servers")
        }
        return DiskError(
            code: value == ENOENT ? .notFound : .io, reason: "disk.\(operation)",
            message: "\(operation) \(path) failed: \(text)")
    }
}

/// The on-disk layout and the synchronous, durable file operations of a chunk server.
///
/// ```
/// DIR/server-id              the server's stable id
/// DIR/chunks/ab/cd/<id>      one stored frame per chunk (ab, cd: the id's first hex pairs)
/// DIR/tmp/<id>.<n>.tmp       writes in progress; removed at startup
/// DIR/quarantine/<id>.<t>    frames that failed a check, kept for inspection
/// ```
///
/// Paths are built only from a parsed ``ChunkID`` (64 lowercase hex characters), never from
/// caller text, so no request can name a path outside DIR. All calls block: run them on a
/// thread pool.
struct DiskChunkStore: Sendable {
    let root: String
    /// Fault points for tests (``DiskFaultInjector``); nil in servers.
    let faults: (any DiskFaultInjector)?
    var chunksDirectory: String { root + "/chunks" }
    var temporaryDirectory: String { root + "/tmp" }
    var quarantineDirectory: String { root + "/quarantine" }

    init(root: String, faults: (any DiskFaultInjector)? = nil) {
        self.root = root
        self.faults = faults
    }

    func directory(for id: ChunkID) -> String {
        let hex = id.hex
        return "\(chunksDirectory)/\(hex.prefix(2))/\(hex.dropFirst(2).prefix(2))"
    }

    func path(for id: ChunkID) -> String { directory(for: id) + "/" + id.hex }

    /// Creates the directories and removes temporary files a crash left behind.
    func prepare() throws -> Int {
        for dir in [root, chunksDirectory, temporaryDirectory, quarantineDirectory] {
            try makeDirectory(dir)
        }
        var removed = 0
        for name in try listDirectory(temporaryDirectory) {
            if unlink("\(temporaryDirectory)/\(name)") == 0 { removed += 1 }
        }
        return removed
    }

    /// Reads or creates the server's id, a random 128-bit hex string written durably once.
    func loadOrCreateServerID() throws -> String {
        let path = root + "/server-id"
        if let text = try? readSmallFile(path) {
            let id = String(decoding: text, as: UTF8.self).filter { !$0.isWhitespace }
            if !id.isEmpty { return id }
        }
        var rng = SystemRandomNumberGenerator()
        let id = "cs-" + String(rng.next() as UInt64, radix: 16) + String(rng.next() as UInt64, radix: 16)
        try writeDurably(Array((id + "\n").utf8), to: path, temporaryPath: path + ".tmp", directory: root)
        return id
    }

    // MARK: Chunks

    /// The stored frame, or nil if absent. Reads at most the largest legal frame.
    func readFrame(_ id: ChunkID) throws -> [UInt8]? {
        let path = path(for: id)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return nil }
            throw DiskError.errno("open", path, errno)
        }
        defer { close(fd) }
        try injectFault(.read(chunk: id), path: path)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw DiskError.errno("stat", path, errno) }
        let size = Int(st.st_size)
        guard size <= FrameHeader.byteCount + Limits.maxStoredByteCount else {
            // Cannot be a valid frame: report it as corrupt without reading it all.
            return [UInt8](repeating: 0, count: 0)
        }
        return try Self.readBytes(fd, count: size, at: 0, path: path)
    }

    /// Up to `count` bytes of `fd` from byte `offset` (fewer only at the end of the file).
    static func readBytes(_ fd: Int32, count: Int, at offset: Int, path: String) throws -> [UInt8] {
        try [UInt8](unsafeUninitializedCapacity: count) { buf, initialized in
            var done = 0
            while done < count {
                let n = pread(fd, buf.baseAddress! + done, count - done, off_t(offset + done))
                if n < 0 {
                    if errno == EINTR { continue }
                    throw DiskError.errno("read", path, errno)
                }
                if n == 0 { break }
                done += n
            }
            initialized = done
        }
    }

    /// Bytes `span` of a chunk stored raw, read from their place in the frame without reading
    /// the rest: `.absent` if there is no such chunk, `.notRaw` if it is compressed or its
    /// header does not check (the caller then reads and checks the whole frame).
    func readRawSpan(_ id: ChunkID, _ span: Range<Int>) throws -> RawSpanRead {
        let path = path(for: id)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        if fd < 0 {
            if errno == ENOENT { return .absent }
            throw DiskError.errno("open", path, errno)
        }
        defer { close(fd) }
        try injectFault(.read(chunk: id), path: path)
        let headerBytes = try Self.readBytes(fd, count: FrameHeader.byteCount, at: 0, path: path)
        guard let header = try? FrameHeader(parsing: headerBytes), header.codec == .raw else { return .notRaw }
        guard span.upperBound <= header.plainByteCount else { return .outOfRange(header.plainByteCount) }
        let bytes = try Self.readBytes(fd, count: span.count, at: FrameHeader.byteCount + span.lowerBound, path: path)
        return bytes.count == span.count ? .bytes(bytes) : .notRaw
    }

    enum RawSpanRead: Sendable {
        case bytes([UInt8])
        case absent
        case notRaw
        /// The span ends past the chunk's plain bytes (their count).
        case outOfRange(Int)
    }

    /// Size of the stored frame, or nil if absent.
    func storedSize(_ id: ChunkID) -> Int? {
        var st = stat()
        return stat(path(for: id), &st) == 0 ? Int(st.st_size) : nil
    }

    /// Writes a verified frame under its id: temporary file, write, fsync, rename, fsync of the
    /// directory. A crash at any point leaves either no file or the whole frame under the id.
    func writeFrame(_ frame: [UInt8], for id: ChunkID, sequence: UInt64) throws {
        let dir = directory(for: id)
        try makeDirectory(chunksDirectory + "/" + id.hex.prefix(2))
        try makeDirectory(dir)
        let temporary = "\(temporaryDirectory)/\(id.hex).\(sequence).tmp"
        try writeDurably(frame, to: path(for: id), temporaryPath: temporary, directory: dir, chunk: id)
    }

    /// Marks a chunk as just written (its mtime), when a write found it already stored: a
    /// garbage collector's conditional delete then keeps it.
    func touch(_ id: ChunkID) {
        _ = utimensat(AT_FDCWD, path(for: id), nil, 0)
    }

    /// When the chunk was last written or touched, in milliseconds since 1970; nil if absent.
    func modifiedMilliseconds(_ id: ChunkID) -> Int64? {
        var st = stat()
        guard stat(path(for: id), &st) == 0 else { return nil }
        return Int64(st.st_mtim.tv_sec) * 1000 + Int64(st.st_mtim.tv_nsec) / 1_000_000
    }

    /// Ids of the quarantined frames, at most `limit`.
    func quarantinedIDs(limit: Int) throws -> [ChunkID] {
        var out: [ChunkID] = []
        for name in try listDirectory(quarantineDirectory).sorted() where out.count < limit {
            if let id = try? ChunkID(hex: String(name.prefix(64))), !out.contains(id) { out.append(id) }
        }
        return out
    }

    /// Removes a chunk; returns its size, or nil if it was absent. With `unlessWrittenAfter`
    /// (milliseconds since 1970), a chunk written or touched after that instant is kept and
    /// ``DiskError`` `versionConflict` is thrown.
    func remove(_ id: ChunkID, unlessWrittenAfter: Int64? = nil) throws -> Int? {
        let path = path(for: id)
        guard let size = storedSize(id) else { return nil }
        if let unlessWrittenAfter, let modified = modifiedMilliseconds(id), modified > unlessWrittenAfter {
            throw DiskError(
                code: .versionConflict, reason: "chunk.rewritten",
                message: "chunk \(id.shortHex)… was written again after \(unlessWrittenAfter); kept")
        }
        guard unlink(path) == 0 else {
            if errno == ENOENT { return nil }
            throw DiskError.errno("unlink", path, errno)
        }
        try syncDirectory(directory(for: id))
        return size
    }

    /// Moves a chunk that failed a check out of the way, keeping it for inspection.
    func quarantine(_ id: ChunkID, stamp: Int64) throws -> Bool {
        let target = "\(quarantineDirectory)/\(id.hex).\(stamp)"
        guard rename(path(for: id), target) == 0 else {
            if errno == ENOENT { return false }
            throw DiskError.errno("rename", path(for: id), errno)
        }
        try syncDirectory(directory(for: id))
        try syncDirectory(quarantineDirectory)
        return true
    }

    /// Up to `limit` chunk ids greater than `after`, in order, with their stored sizes.
    func inventory(after: ChunkID?, limit: Int) throws -> [(ChunkID, Int)] {
        var out: [(ChunkID, Int)] = []
        let afterHex = after?.hex ?? ""
        let firstLevel = try listDirectory(chunksDirectory).filter { Self.isHexPair($0) }.sorted()
        for a in firstLevel where a >= afterHex.prefix(2) {
            let secondLevel = try listDirectory("\(chunksDirectory)/\(a)").filter { Self.isHexPair($0) }.sorted()
            for b in secondLevel where a + b >= afterHex.prefix(4) {
                let dir = "\(chunksDirectory)/\(a)/\(b)"
                let names = try listDirectory(dir).filter { $0 > afterHex && $0.hasPrefix(a + b) }.sorted()
                for name in names {
                    guard let id = try? ChunkID(hex: name) else { continue }
                    var st = stat()
                    guard stat("\(dir)/\(name)", &st) == 0 else { continue }
                    out.append((id, Int(st.st_size)))
                    if out.count >= limit { return out }
                }
            }
        }
        return out
    }

    /// The first 32 bytes of a stored frame, for counting logical bytes at startup.
    func readHeader(_ id: ChunkID) -> FrameHeader? {
        let path = path(for: id)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        return (try? Self.readBytes(fd, count: FrameHeader.byteCount, at: 0, path: path)).flatMap {
            try? FrameHeader(parsing: $0)
        }
    }

    /// Free bytes for unprivileged writers, and the file system's size.
    func diskSpace() -> (free: Int64, total: Int64) {
        var st = statvfs()
        guard statvfs(root, &st) == 0 else { return (0, 0) }
        return (Int64(st.f_bavail) * Int64(st.f_frsize), Int64(st.f_blocks) * Int64(st.f_frsize))
    }

    // MARK: Primitives

    static func isHexPair(_ name: String) -> Bool {
        name.utf8.count == 2 && name.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    func makeDirectory(_ path: String) throws {
        if mkdir(path, 0o755) == 0 {
            // Make the new directory's entry durable in its parent.
            if let slash = path.lastIndex(of: "/") { try syncDirectory(String(path[..<slash])) }
            return
        }
        guard errno == EEXIST else { throw DiskError.errno("mkdir", path, errno) }
    }

    func syncDirectory(_ path: String) throws {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw DiskError.errno("open", path, errno) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw DiskError.errno("fsync", path, errno) }
    }

    func listDirectory(_ path: String) throws -> [String] {
        guard let dir = opendir(path) else {
            if errno == ENOENT { return [] }
            throw DiskError.errno("opendir", path, errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    func readSmallFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw DiskError.errno("open", path, errno) }
        defer { close(fd) }
        var out = [UInt8](repeating: 0, count: 4096)
        let n = out.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4096) }
        guard n >= 0 else { throw DiskError.errno("read", path, errno) }
        return Array(out.prefix(n))
    }

    /// temp → write → fsync → rename → fsync(directory); the temporary file is removed on
    /// every failure path, so a failed write leaves nothing behind.
    /// `chunk` names the frame being written, for the fault points (nil: not a chunk).
    func writeDurably(
        _ bytes: [UInt8], to path: String, temporaryPath: String, directory: String,
        chunk: ChunkID? = nil
    ) throws {
        let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw DiskError.errno("create", temporaryPath, errno) }
        var closed = false
        do {
            try bytes.withUnsafeBytes { raw in
                var done = 0
                while done < raw.count {
                    var count = raw.count - done
                    var failAfter: Int32?
                    if let chunk, let faults {
                        switch faults.action(at: .write(chunk: chunk, offset: done, count: count)) {
                        case .proceed: break
                        case .fail(let value): throw DiskError.errno("write", temporaryPath, value)
                        case .writePartially(let bytes, let value):
                            count = min(count, max(0, bytes))
                            failAfter = value
                        case .crash: throw SimulatedCrash()
                        case .crashAfterWriting(let bytes):
                            if bytes > 0 { _ = write(fd, raw.baseAddress! + done, min(count, bytes)) }
                            throw SimulatedCrash()
                        }
                    }
                    let n = count == 0 ? 0 : write(fd, raw.baseAddress! + done, count)
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw DiskError.errno("write", temporaryPath, errno)
                    }
                    done += n
                    if let failAfter { throw DiskError.errno("write", temporaryPath, failAfter) }
                }
            }
            if let chunk { try injectFault(.fsync(chunk: chunk), path: temporaryPath) }
            guard fsync(fd) == 0 else { throw DiskError.errno("fsync", temporaryPath, errno) }
            closed = true
            guard close(fd) == 0 else { throw DiskError.errno("close", temporaryPath, errno) }
            if let chunk { try injectFault(.rename(chunk: chunk), path: temporaryPath) }
            guard rename(temporaryPath, path) == 0 else { throw DiskError.errno("rename", temporaryPath, errno) }
        } catch is SimulatedCrash {
            // A dead process closes nothing and removes nothing (the kernel closes the file).
            if !closed { close(fd) }
            throw SimulatedCrash()
        } catch {
            if !closed { close(fd) }
            unlink(temporaryPath)
            throw error
        }
        try syncDirectory(directory)
    }

    /// Asks the fault injector, if any, what happens at `operation` (see ``DiskFaultAction``).
    func injectFault(_ operation: DiskOperation, path: String) throws {
        guard let faults else { return }
        switch faults.action(at: operation) {
        case .proceed: return
        case .fail(let value), .writePartially(_, let value):
            throw DiskError.errno(Self.operationName(operation), path, value)
        case .crash, .crashAfterWriting: throw SimulatedCrash()
        }
    }

    static func operationName(_ operation: DiskOperation) -> String {
        switch operation {
        case .write: "write"
        case .fsync: "fsync"
        case .rename: "rename"
        case .read: "read"
        }
    }
}
