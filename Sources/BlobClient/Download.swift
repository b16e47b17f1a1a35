public import BlobCore
import Crypto

/// A byte range of a file, as `START-END` (inclusive, like HTTP), `START-` or `-LAST`.
public enum ByteRange: Sendable, Hashable, CustomStringConvertible {
    case from(Int64, through: Int64?)
    case last(Int64)

    /// Parses `START-END`, `START-` or `-LAST`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        let bad = BlobError(
            .invalidArgument, reason: "range.syntax",
            "range \"\(text)\" is not START-END, START- or -LAST (bytes, END inclusive), e.g. 0-1048575")
        guard parts.count == 2 else { throw bad }
        if parts[0].isEmpty {
            guard let last = Int64(parts[1]), last > 0 else { throw bad }
            self = .last(last)
            return
        }
        guard let start = Int64(parts[0]), start >= 0 else { throw bad }
        if parts[1].isEmpty {
            self = .from(start, through: nil)
            return
        }
        guard let end = Int64(parts[1]), end >= start else {
            throw BlobError(.invalidArgument, reason: "range.order", "range \"\(text)\" ends before it starts")
        }
        self = .from(start, through: end)
    }

    public var description: String {
        switch self {
        case .from(let start, let end): return "\(start)-\(end.map(String.init) ?? "")"
        case .last(let n): return "-\(n)"
        }
    }

    /// Offset and length within a file of `size` bytes; an end past the file is clamped, a
    /// start at or past the end is an error.
    public func resolve(size: Int64) throws -> (offset: Int64, length: Int64) {
        switch self {
        case .last(let n):
            let length = min(n, size)
            return (size - length, length)
        case .from(let start, let end):
            guard start < size else {
                throw BlobError(
                    .invalidArgument, reason: "range.invalid",
                    "range \(self) starts at byte \(start) but the file has \(size) bytes; the last byte is \(size - 1)"
                )
            }
            let last = min(end ?? (size - 1), size - 1)
            return (start, last - start + 1)
        }
    }
}

/// Where a get writes.
public enum GetDestination: Sendable {
    /// A local file, written to a temporary file beside it and renamed into place at the end.
    case file(String)
    case standardOutput
}

public struct GetOptions: Sendable {
    /// Chunks fetched ahead of the one being written (bounds memory).
    public var readAhead: Int
    public var range: ByteRange?
    /// Fsync the local file (and its directory) before it is renamed into place, so it survives
    /// a power cut; off by default, like cp, curl and rsync (the cluster keeps the durable copy).
    public var fsync: Bool

    public init(readAhead: Int = 8, range: ByteRange? = nil, fsync: Bool = false) {
        self.readAhead = readAhead
        self.range = range
        self.fsync = fsync
    }
}

/// What a get did.
public struct GetResult: Sendable, Hashable {
    public var file: FileVersion
    public var offset: Int64
    public var byteCount: Int64
    public var chunkCount: Int
    /// Replica reads that failed and were retried on another replica.
    public var failovers: Int
}

/// One chunk's plain bytes (all of them, or the blocks a range needs) and what it took to get them.
private struct FetchedChunk: Sendable {
    /// The chunk's plain bytes from `base` on.
    var plain: [UInt8]
    var base: Int = 0
    var suspects: [SuspectReplica]
    var failovers: Int
}

extension ClusterClient {
    /// Streams a file (or a range of it) in order, with a bounded read-ahead. Each chunk comes
    /// from the first replica of its plan entry (the master rotates them, so reads spread over
    /// the replicas) and is checked against its id; an error, a timeout or a mismatch moves on
    /// to the next replica, and corrupt replicas are reported to the master. A whole-file get
    /// also checks the file's SHA-256. A file destination appears only when complete.
    public func get(
        _ path: BlobPath, to destination: GetDestination, options: GetOptions = GetOptions(),
        progress: (@Sendable (Int64, Int64) -> Void)? = nil
    ) async throws -> GetResult {
        var offset: Int64 = 0
        var length: Int64?
        switch options.range {
        case nil: break
        case .last(let count)?:
            let file = try await stat(path)
            (offset, length) = try ByteRange.last(count).resolve(size: file.size)
        case .from(let start, let end)?:
            offset = start
            length = end.map { $0 - start + 1 }
        }
        let plan = try await readPlan(path, offset: offset, length: length)
        if let range = options.range {
            (offset, length) = try range.resolve(size: plan.file.size)
        }
        let end = length.map { offset + $0 } ?? plan.file.size
        let writer = try LocalWriter(destination, durable: options.fsync)
        var result = GetResult(
            file: plan.file, offset: offset, byteCount: end - offset, chunkCount: plan.chunks.count, failovers: 0)
        do {
            var written: Int64 = 0
            result.failovers = try await stream(
                plan, of: path, offset: offset, end: end, readAhead: options.readAhead,
                checkWholeFile: options.range == nil
            ) { slice in
                try slice.withUnsafeBytes { try writer.write($0) }
                written += Int64(slice.count)
                progress?(written, end - offset)
            }
            try writer.commit()
        } catch {
            writer.abort()
            throw error
        }
        return result
    }

    /// Bytes of a file one read plan asks the master for at a time, when a read does not need
    /// more: an open-ended read of a large file starts after one small plan, not after the
    /// master listed every chunk of it.
    public static let planPageByteCount: Int64 = 64 << 20
    /// The first page of an open-ended read: smaller, so its first byte waits on a plan of a
    /// few chunks.
    public static let firstPlanPageByteCount: Int64 = 8 << 20

    /// Streams bytes `[offset, end)` of a planned file to `sink` in order, fetching a window of
    /// `readAhead` chunks ahead of it (so memory is that window, whatever the size), each checked
    /// against its id. With `checkWholeFile` (the whole file is read) the file's SHA-256 is
    /// checked before the last bytes are handed over. Returns how many replica failovers it took.
    ///
    /// `plan` must start at or before `offset`; it may end before `end`: the rest is planned
    /// a page (``planPageByteCount``) at a time as the read gets there, and must be of the same
    /// version of the file.
    public func stream(
        _ plan: ReadPlan, of path: BlobPath, offset: Int64, end: Int64, readAhead: Int = 8,
        checkWholeFile: Bool, sink: (ArraySlice<UInt8>) async throws -> Void
    ) async throws -> Int {
        var window: [Task<FetchedChunk, any Error>] = []
        var failovers = 0
        do {
            // A file assembled from parts has no whole-file SHA-256 to check (its chunks are).
            var wholeFile = checkWholeFile && ManifestCommit.isWholeFileDigest(plan.file.sha256) ? SHA256() : nil
            var pieces = Self.pieces(of: plan, offset: offset, end: end, splitFirst: true)
            var covered = plan.chunks.last.map { $0.chunk.offset + $0.chunk.length } ?? offset
            var next = 0
            var written: Int64 = 0
            var suspects: [SuspectReplica] = []
            // A first block fetched on its own is fetched alone: the pieces behind it would
            // compete with it for the servers and the cores.
            let leadAlone = pieces.count > 1 && pieces[0].entry.chunk.offset == pieces[1].entry.chunk.offset
            while next < pieces.count || !window.isEmpty || covered < end {
                if next == pieces.count && covered < end {
                    // The next page of the plan, while the window's fetches run.
                    let page = try await readPlan(
                        path, offset: covered, length: min(end - covered, Self.planPageByteCount))
                    guard page.file.version == plan.file.version, page.file.sha256 == plan.file.sha256 else {
                        throw BlobError(
                            .unavailable, reason: "file.changed",
                            "\(path) changed while being read (version \(plan.file.version), "
                                + "now \(page.file.version)); read it again"
                        )
                    }
                    let more = Self.pieces(of: page, offset: covered, end: end, splitFirst: false)
                    guard let last = page.chunks.last, last.chunk.offset + last.chunk.length > covered, !more.isEmpty
                    else {
                        throw BlobError(
                            .internal, reason: "plan.gap", "the master planned nothing of \(path) from byte \(covered)")
                    }
                    pieces += more
                    covered = last.chunk.offset + last.chunk.length
                }
                while next < pieces.count && window.count < (leadAlone && next == 1 ? 1 : max(1, readAhead)) {
                    let (entry, needed) = pieces[next]
                    window.append(Task { [self] in try await fetch(entry, needing: needed, of: path) })
                    next += 1
                }
                let needed = pieces[next - window.count].needed
                let fetched = try await window.removeFirst().value
                let (from, to) = (needed.lowerBound, needed.upperBound)
                let slice = fetched.plain[(from - fetched.base)..<(to - fetched.base)]
                slice.withUnsafeBytes { wholeFile?.update(bufferPointer: $0) }
                failovers += fetched.failovers
                suspects += fetched.suspects
                if next == pieces.count && window.isEmpty && covered >= end, let digest = wholeFile?.finalize() {
                    // The last piece goes out only once the whole file matched.
                    let hex = try ChunkID(digestBytes: Array(digest)).hex
                    guard hex == plan.file.sha256 else {
                        throw BlobError(
                            .corruptChunk, reason: "file.sha256",
                            "\(path) read back with SHA-256 \(hex) but was stored with \(plan.file.sha256)")
                    }
                }
                try await sink(slice)
                written += Int64(to - from)
            }
            if plan.chunks.isEmpty, let digest = wholeFile?.finalize(),
                try ChunkID(digestBytes: Array(digest)).hex != plan.file.sha256
            {
                throw BlobError(
                    .corruptChunk, reason: "file.sha256",
                    "\(path) is empty but was stored with SHA-256 \(plan.file.sha256)")
            }
            if !suspects.isEmpty { try? await reportSuspect(suspects) }
            guard written == end - offset else {
                throw BlobError(.internal, reason: "file.length", "read \(written) bytes of \(end - offset) of \(path)")
            }
        } catch {
            for task in window { task.cancel() }
            throw error
        }
        return failovers
    }

    /// What to fetch, in order: each planned chunk's bytes within `[offset, end)`. When the
    /// first one can be read by blocks, its first block is a piece of its own, so the first
    /// bytes go out after one block rather than after the rest of that chunk.
    static func pieces(
        of plan: ReadPlan, offset: Int64, end: Int64, splitFirst: Bool
    ) -> [(entry: ReadPlanEntry, needed: Range<Int>)] {
        var pieces: [(entry: ReadPlanEntry, needed: Range<Int>)] = []
        pieces.reserveCapacity(plan.chunks.count + 1)
        for (i, entry) in plan.chunks.enumerated() {
            let chunk = entry.chunk
            guard chunk.offset < end, chunk.offset + chunk.length > offset else { continue }
            let needed =
                Int(
                    max(offset, chunk.offset) - chunk.offset)..<Int(
                    min(end, chunk.offset + chunk.length) - chunk.offset)
            let firstBlockEnd = (needed.lowerBound / BlockDigests.blockByteCount + 1) * BlockDigests.blockByteCount
            if i == 0, splitFirst, entry.blockDigests != nil,
                needed.upperBound - firstBlockEnd >= BlockDigests.blockByteCount
            {
                pieces.append((entry, needed.lowerBound..<firstBlockEnd))
                pieces.append((entry, firstBlockEnd..<needed.upperBound))
            } else {
                pieces.append((entry, needed))
            }
        }
        return pieces
    }

    /// One chunk from the first replica that gives bytes matching its id. When every replica of
    /// the plan failed and one said the chunk is gone (a rebalance moved it since the plan was
    /// made), asks the master where it is now and tries the new holders.
    ///
    /// When only part of the chunk is `needed` and the plan carries the chunk's block digests,
    /// the first replica is asked for just the blocks covering that part, each checked against
    /// its digest; any failure there falls back to the whole chunk and its SHA-256.
    private func fetch(
        _ entry: ReadPlanEntry, needing needed: Range<Int>, of path: BlobPath
    ) async throws -> FetchedChunk {
        let id = entry.chunk.chunkID
        guard !entry.replicas.isEmpty else {
            throw BlobError(
                .insufficientReplicas, reason: "chunk.noReplica",
                "no live server holds chunk \(id.shortHex)… (bytes \(entry.chunk.offset)…); "
                    + "check `blobctl cluster status` and restart the down servers")
        }
        let length = Int(entry.chunk.length)
        var replicas = entry.replicas
        if let digests = entry.blockDigests, needed.count < length, let server = entry.replicas.first {
            let span = BlockDigests.blockAlignedSpan(covering: needed, plainByteCount: length)
            if span.count < length {
                do {
                    let part = try await getChunkPart(id, span: span, from: server)
                    if part.count == span.count,
                        part.withUnsafeBytes({
                            BlockDigests.verify($0, at: span.lowerBound, plainByteCount: length, against: digests)
                        })
                    {
                        return FetchedChunk(plain: part, base: span.lowerBound, suspects: [], failovers: 0)
                    }
                } catch let error as BlobError where error.code == .unavailable || error.code == .timeout {
                    // A server that did not answer is asked for the whole chunk last, not first.
                    replicas = Array(replicas.dropFirst()) + [server]
                } catch {}
                try Task.checkCancellation()
            }
        }
        let decompressor = ChunkDecompressor()
        var suspects: [SuspectReplica] = []
        var errors: [String] = []
        var tried: Set<String> = []
        var moved = false
        func attempt(_ replicas: [ServerEndpoint]) async throws -> [UInt8]? {
            for server in replicas where !tried.contains(server.id) {
                try Task.checkCancellation()
                tried.insert(server.id)
                do {
                    let plain = try await getChunk(id, from: server, decompressor: decompressor)
                    guard plain.count == Int(entry.chunk.length) else {
                        throw BlobError(
                            .corruptChunk, reason: "chunk.length",
                            "chunk \(id.shortHex)… from \(server.id) has \(plain.count) bytes, "
                                + "the manifest says \(entry.chunk.length)"
                        )
                    }
                    return plain
                } catch let error as BlobError {
                    errors.append("\(server.id): \(error.message)")
                    if error.code == .notFound {
                        moved = true
                    } else {
                        suspects.append(SuspectReplica(id: id, serverID: server.id, code: error.code.rawValue))
                    }
                }
            }
            return nil
        }
        if let plain = try await attempt(replicas) {
            return FetchedChunk(plain: plain, suspects: suspects, failovers: errors.count)
        }
        if moved, let fresh = try? await readPlan(path, offset: entry.chunk.offset, length: 1),
            let now = fresh.chunks.first, now.chunk.chunkID == id,
            let plain = try await attempt(now.replicas)
        {
            return FetchedChunk(plain: plain, suspects: suspects, failovers: errors.count)
        }
        throw BlobError(
            .unavailable, reason: "chunk.allReplicasFailed",
            "every replica of chunk \(id.shortHex)… failed: " + errors.joined(separator: "; "))
    }
}
