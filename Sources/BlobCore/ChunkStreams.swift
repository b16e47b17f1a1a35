#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Chunks of any async sequence of byte collections, cut with a ``ChunkSplitter``.
///
/// Memory: one maximum chunk plus one read of buffer, plus the source's current element.
/// The sequence pulls from its source only when asked for the next chunk, so a slow consumer
/// slows the producer (backpressure) as long as the source itself waits for demand.
public struct ChunkSequence<Base: AsyncSequence & Sendable>: AsyncSequence, Sendable
where Base.Element: Collection<UInt8> {
    public typealias Element = Chunk
    let base: Base
    let configuration: ChunkerConfiguration

    /// Chunks `base` with `configuration`; the configuration is checked when iteration starts.
    public init(_ base: Base, configuration: ChunkerConfiguration = .default) {
        self.base = base
        self.configuration = configuration
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(base: base.makeAsyncIterator(), configuration: configuration)
    }

    public struct Iterator: AsyncIteratorProtocol {
        var base: Base.AsyncIterator
        let configuration: ChunkerConfiguration
        var splitter: ChunkSplitter?
        var pending: [UInt8] = []
        var pendingStart = 0
        var sourceEnded = false

        init(base: Base.AsyncIterator, configuration: ChunkerConfiguration) {
            self.base = base
            self.configuration = configuration
        }

        public mutating func next() async throws -> Chunk? {
            if splitter == nil { splitter = try ChunkSplitter(configuration: configuration) }
            while true {
                if let chunk = splitter!.nextChunk(isFinal: sourceEnded && pendingStart == pending.count) {
                    return chunk
                }
                if pendingStart < pending.count {
                    let taken = pending.withUnsafeBytes { raw in
                        splitter!.append(UnsafeRawBufferPointer(rebasing: raw[pendingStart...]))
                    }
                    pendingStart += taken
                    continue
                }
                if sourceEnded { return nil }
                guard let element = try await base.next() else {
                    sourceEnded = true
                    continue
                }
                pending = Array(element)
                pendingStart = 0
            }
        }
    }
}

/// Why a local file could not be read.
public struct FileReadError: CodedError, Sendable {
    public let path: String
    public let errno: Int32
    public var code: BlobErrorCode { errno == ENOENT ? .notFound : .io }
    public var reason: String { "file.read" }
    public var message: String {
        "cannot read \(path): \(String(cString: strerror(errno))); check the path and its permissions"
    }
}

/// Synchronous chunking of a local file with read(2), one maximum chunk plus one read of
/// memory whatever the file size. For benchmarks and tools that own their thread. Also chunks
/// bytes already in memory (a small request body), cut at exactly the same places.
public struct FileChunker: Sequence, IteratorProtocol {
    private enum Source {
        case descriptor(Int32)
        /// The bytes, and how many the splitter has taken.
        case memory([UInt8], taken: Int)
    }

    private var splitter: ChunkSplitter
    private var source: Source
    private let path: String
    private var ended = false
    /// The first read error, after which iteration stops.
    public private(set) var error: FileReadError?

    /// Opens `path` for chunking.
    public init(path: String, configuration: ChunkerConfiguration = .default) throws {
        splitter = try ChunkSplitter(configuration: configuration)
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileReadError(path: path, errno: errno) }
        source = .descriptor(fd)
        self.path = path
    }

    /// Chunks an open descriptor (standard input, a pipe), which the chunker then owns and
    /// closes; `name` is what errors call it. A negative descriptor (a failed `dup`) is refused.
    public init(fileDescriptor: Int32, name: String, configuration: ChunkerConfiguration = .default) throws {
        guard fileDescriptor >= 0 else { throw FileReadError(path: name, errno: errno == 0 ? EBADF : errno) }
        splitter = try ChunkSplitter(configuration: configuration)
        source = .descriptor(fileDescriptor)
        path = name
    }

    /// Chunks `bytes`.
    public init(bytes: [UInt8], configuration: ChunkerConfiguration = .default) throws {
        splitter = try ChunkSplitter(configuration: configuration)
        source = .memory(bytes, taken: 0)
        path = "memory"
    }

    /// Closes the file; iteration ends.
    public mutating func close() {
        if !ended, case .descriptor(let fd) = source { _ = Glibc.close(fd) }
        ended = true
    }

    public mutating func next() -> Chunk? {
        while true {
            if let chunk = splitter.nextChunk(isFinal: ended) { return chunk }
            if ended { return nil }
            switch source {
            case .memory(let bytes, let taken):
                let more = bytes.withUnsafeBytes { raw in
                    splitter.append(UnsafeRawBufferPointer(rebasing: raw[taken...]))
                }
                source = .memory(bytes, taken: taken + more)
                if taken + more == bytes.count { close() }
            case .descriptor(let fd):
                var failure: Int32 = 0
                let n = splitter.fill { raw in
                    let count = Swift.min(raw.count, Limits.chunkerReadByteCount)
                    let r = read(fd, raw.baseAddress, count)
                    if r < 0 { failure = errno }
                    return Swift.max(r, 0)
                }
                if failure == EINTR { continue }
                if failure != 0 {
                    error = FileReadError(path: path, errno: failure)
                    close()
                    return nil
                }
                if n == 0 { close() }
            }
        }
    }
}
