/// The FastCDC cut-point search (Xia et al., USENIX ATC 2016, "FastCDC: a Fast and Efficient
/// Content-Defined Chunking Approach for Data Deduplication"), with normalized chunking level 2.
///
/// A gear hash rolls over the bytes after the minimum size; a cut is made after the first byte
/// where the hash's top bits are all zero. Before the average size the mask has two more bits
/// (harder), after it two fewer (easier), which pulls sizes towards the average. The scan is
/// resumable: when the buffered bytes end before a cut, the next call continues where it
/// stopped instead of hashing the same bytes again.
struct FastCDCScanner {
    let minByteCount: Int
    let averageByteCount: Int
    let maxByteCount: Int
    private let maskSmall: UInt64
    private let maskLarge: UInt64
    /// The next offset to hash, counted from the chunk's first byte.
    private var position: Int
    private var hash: UInt64

    init(minByteCount: Int, averageByteCount: Int, maxByteCount: Int) {
        self.minByteCount = minByteCount
        self.averageByteCount = averageByteCount
        self.maxByteCount = maxByteCount
        let bits = averageByteCount.trailingZeroBitCount
        // High-bit masks (bits 62 down): the high bits of a gear hash depend on the most recent
        // 63 bytes. Bit 63 stays out of the mask so that `mask << 1` loses nothing, which lets
        // the scan below test odd positions on the doubled hash (FastCDC 2020's two-byte roll).
        self.maskSmall = Self.mask(bits: bits + 2)
        self.maskLarge = Self.mask(bits: bits - 2)
        self.position = minByteCount
        self.hash = 0
    }

    static func mask(bits: Int) -> UInt64 {
        (~UInt64(0) << UInt64(64 - Swift.min(62, Swift.max(1, bits)))) >> 1
    }

    /// Forgets the scan state; call after a cut.
    mutating func reset() {
        position = minByteCount
        hash = 0
    }

    /// Looks for the end of the chunk that starts at `bytes[0]`.
    ///
    /// - Returns: the chunk's length if a cut point lies within the `count` bytes given (or
    ///   `isFinal` says no more bytes will come), nil if more bytes are needed.
    mutating func cutLength(_ bytes: UnsafePointer<UInt8>, count: Int, isFinal: Bool) -> Int? {
        if count <= minByteCount {
            return isFinal && count > 0 ? count : nil
        }
        let limit = Swift.min(count, maxByteCount)
        let normal = Swift.min(averageByteCount, limit)
        var i = position
        var h = hash
        let cut: Int? = GearTable.values.withUnsafeBufferPointer { gear -> Int? in
            GearTable.shiftedValues.withUnsafeBufferPointer { shiftedGear -> Int? in
                let g = gear.baseAddress!
                let gs = shiftedGear.baseAddress!
                // Two bytes per step. With t = h << 2: t + (g[a] << 1) is the hash after the
                // first byte, doubled, and t + (g[a] << 1) + g[b] the hash after the second; the
                // loop-carried chain is one shift and one add per two bytes.
                func scan(to end: Int, mask: UInt64) -> Int? {
                    let maskShifted = mask << 1
                    while i + 2 <= end {
                        let a = gs[Int(bytes[i])]
                        let b = g[Int(bytes[i + 1])]
                        let t = h << 2
                        if (t &+ a) & maskShifted == 0 {
                            i += 1
                            return i
                        }
                        h = t &+ (a &+ b)
                        i += 2
                        if h & mask == 0 { return i }
                    }
                    if i < end {
                        h = (h << 1) &+ g[Int(bytes[i])]
                        i += 1
                        if h & mask == 0 { return i }
                    }
                    return nil
                }
                if let cut = scan(to: normal, mask: maskSmall) { return cut }
                return scan(to: limit, mask: maskLarge)
            }
        }
        if let cut { return cut }
        if limit == maxByteCount { return maxByteCount }
        position = i
        hash = h
        return isFinal ? count : nil
    }
}

/// Cuts a stream into chunks while holding at most one maximum chunk plus one read in memory.
///
/// The caller pours bytes in with ``fill(_:)`` or ``append(_:)`` and takes finished chunks out
/// with ``nextChunk(isFinal:)``. Used by the synchronous file chunker and the async chunk
/// sequence alike, so both cut at exactly the same places.
public struct ChunkSplitter {
    public let configuration: ChunkerConfiguration
    private var scanner: FastCDCScanner?
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    /// Plain offset, in the whole stream, of the next chunk to be returned.
    public private(set) var nextOffset: Int64 = 0

    /// Makes a splitter; throws if the configuration is invalid.
    public init(configuration: ChunkerConfiguration = .default) throws(ChunkerError) {
        try configuration.validate()
        self.configuration = configuration
        if case .contentDefined(let lo, let avg, let hi) = configuration {
            scanner = FastCDCScanner(minByteCount: lo, averageByteCount: avg, maxByteCount: hi)
        }
        // Not zero-filled: only bytes a read or an append wrote are ever looked at, and filling
        // 4.25 MiB first touched all ~1,100 of its pages, a page fault each, before a small
        // file's first read (a third of a 20 KiB `blobctl put`'s CPU).
        let count = configuration.maxByteCount + Limits.chunkerReadByteCount
        buffer = [UInt8](unsafeUninitializedCapacity: count) { _, initializedCount in initializedCount = count }
    }

    /// How many bytes ``append(_:)`` or ``fill(_:)`` can take now.
    public var freeByteCount: Int {
        buffer.count - (end - start)
    }

    /// Bytes buffered but not yet returned in a chunk.
    public var bufferedByteCount: Int { end - start }

    /// Lets `read` write directly into free buffer space; returns what `read` returned (bytes
    /// written, 0 at end of input).
    public mutating func fill(_ read: (UnsafeMutableRawBufferPointer) throws -> Int) rethrows -> Int {
        compactIfNeeded()
        let n = try buffer.withUnsafeMutableBytes { raw in
            try read(UnsafeMutableRawBufferPointer(rebasing: raw[end..<raw.count]))
        }
        precondition(n >= 0 && end + n <= buffer.count, "read returned an impossible count")
        end += n
        return n
    }

    /// Copies up to ``freeByteCount`` bytes in; returns how many were taken.
    public mutating func append(_ bytes: UnsafeRawBufferPointer) -> Int {
        compactIfNeeded()
        let n = Swift.min(bytes.count, buffer.count - end)
        guard n > 0 else { return 0 }
        buffer.withUnsafeMutableBytes { raw in
            UnsafeMutableRawBufferPointer(rebasing: raw[end..<(end + n)])
                .copyMemory(from: UnsafeRawBufferPointer(rebasing: bytes[0..<n]))
        }
        end += n
        return n
    }

    /// The next finished chunk, or nil when more bytes are needed (or, with `isFinal`, when
    /// every byte has been returned).
    public mutating func nextChunk(isFinal: Bool) -> Chunk? {
        withNextChunk(isFinal: isFinal) { offset, bytes in Chunk(offset: offset, bytes: Array(bytes)) }
    }

    /// Lends the next finished chunk's bytes, in place, to `body` (no copy); nil when more bytes
    /// are needed. The bytes are valid only inside `body`.
    public mutating func withNextChunk<T>(
        isFinal: Bool, _ body: (_ offset: Int64, _ bytes: UnsafeRawBufferPointer) throws -> T
    ) rethrows -> T? {
        let available = end - start
        guard available > 0 else { return nil }
        let length: Int?
        switch configuration {
        case .fixed(let size):
            length = available >= size ? size : (isFinal ? available : nil)
        case .contentDefined:
            length = buffer.withUnsafeBufferPointer { buf in
                scanner!.cutLength(buf.baseAddress! + start, count: available, isFinal: isFinal)
            }
        }
        guard let length else { return nil }
        let result = try buffer.withUnsafeBytes { raw in
            try body(nextOffset, UnsafeRawBufferPointer(rebasing: raw[start..<(start + length)]))
        }
        start += length
        nextOffset += Int64(length)
        scanner?.reset()
        return result
    }

    /// Moves the unreturned bytes to the front when the free tail gets small, so a read always
    /// has room; the bytes moved are at most one read plus a partial chunk.
    private mutating func compactIfNeeded() {
        guard start > 0, buffer.count - end < Limits.chunkerReadByteCount || start == end else { return }
        let count = end - start
        if count > 0 {
            buffer.withUnsafeMutableBytes { raw in
                let base = raw.baseAddress!
                base.copyMemory(from: base + start, byteCount: count)
            }
        }
        start = 0
        end = count
    }
}

/// One chunk of a stream: its plain bytes and where they start in the stream.
public struct Chunk: Sendable {
    /// Plain offset of the first byte within the stream.
    public var offset: Int64
    /// The plain bytes.
    public var bytes: [UInt8]

    public init(offset: Int64, bytes: [UInt8]) {
        self.offset = offset
        self.bytes = bytes
    }

    /// The number of plain bytes.
    public var byteCount: Int { bytes.count }
}
