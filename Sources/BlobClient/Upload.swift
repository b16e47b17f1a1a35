public import BlobCore
import Crypto
#if canImport(Glibc)
    import Glibc
#endif

/// Where a put reads its bytes.
public enum PutSource: Sendable {
    case file(String)
    case standardInput
    /// Bytes already in memory, such as a small request body the gateway has checked.
    case bytes([UInt8])

    var name: String {
        switch self {
        case .file(let path): return path
        case .standardInput: return "standard input"
        case .bytes: return "memory"
        }
    }
}

/// How a put chunks, compresses and sends.
public struct PutOptions: Sendable {
    /// Stored with the version; see ``ContentTypes``.
    public var contentType: String
    public var chunker: ChunkerConfiguration
    public var compression: CompressionPolicy
    /// Chunks being compressed or sent at once (bounds memory: each is at most one maximum chunk
    /// and its frame).
    public var maxChunksInFlight: Int
    /// Chunks asked about in one placement request.
    public var placementBatch: Int
    /// Copies that must be durable before a chunk counts as written; nil means a majority of the
    /// cluster's replica count (the rest are made by the chunk servers' forwarding, or by repair).
    public var writeQuorum: Int?
    /// User metadata stored with the version (S3's `x-amz-meta-*`).
    public var metadata: [String: String]?
    /// Checked against the path's current version when the manifest commits (conditional writes).
    public var precondition: WritePrecondition?
    /// The bucket the path belongs to (gateways): the commit fails unless it exists, checked in
    /// the master's commit transaction (``ManifestCommit/bucket``).
    public var bucket: String?

    /// zstd level 6 by default: on log text it stores 13% less than level 1 (0.417 against 0.479
    /// bytes per byte for 3 copies of 1 GiB) at 16% less upload speed (69 against 82 MB/s), and random data is stored
    /// raw whatever the level (docs/benchmarks.md, "Side by side with SeaweedFS").
    public static let defaultCompression = CompressionPolicy(level: 6)

    public init(
        contentType: String = "application/octet-stream", chunker: ChunkerConfiguration = .default,
        compression: CompressionPolicy = PutOptions.defaultCompression, maxChunksInFlight: Int = 8,
        placementBatch: Int = 8,
        writeQuorum: Int? = nil, metadata: [String: String]? = nil
    ) {
        self.metadata = metadata
        self.contentType = contentType
        self.chunker = chunker
        self.compression = compression
        self.maxChunksInFlight = maxChunksInFlight
        self.placementBatch = placementBatch
        self.writeQuorum = writeQuorum
    }
}

/// What a put did.
public struct PutResult: Sendable, Hashable {
    public var file: FileVersion
    /// Chunks in the manifest.
    public var chunkCount: Int
    /// Chunks this put sent (the others were already in the cluster, or repeated in the file).
    public var newChunkCount: Int
    /// Plain bytes of the chunks this put sent.
    public var newBytes: Int64
    /// Frame bytes this put sent to chunk servers (each chunk once; servers forward the copies).
    public var sentBytes: Int64
    /// Bytes newly written to disks, all replicas together.
    public var storedBytes: Int64
}

/// The plain bytes of one chunk on its way to the cluster.
private struct PendingChunk: Sendable {
    var id: ChunkID
    var bytes: [UInt8]
}

/// One chunk written: the acknowledgement to give the master and what it cost.
private struct ChunkWritten: Sendable {
    var acknowledgement: ReplicaAcknowledgement?
    var plainBytes: Int64
    var sentBytes: Int64
    var storedBytes: Int64
}

extension ClusterClient {
    /// Streams `source` into the cluster as the new version of `path`: content-defined chunks,
    /// each hashed, asked about in batches (chunks the cluster already holds are not sent),
    /// compressed once and sent once to its first target, which forwards to the others; a
    /// bounded number in flight; then the manifest is committed. Memory stays bounded by the
    /// options whatever the size of the source. `progress` gets the bytes read so far.
    public func put(
        _ source: PutSource, to path: BlobPath, options: PutOptions = PutOptions(),
        progress: (@Sendable (Int64) -> Void)? = nil
    ) async throws -> PutResult {
        var chunker: FileChunker
        switch source {
        case .file(let file): chunker = try FileChunker(path: file, configuration: options.chunker)
        case .standardInput:
            chunker = try FileChunker(fileDescriptor: dup(0), name: "standard input", configuration: options.chunker)
        case .bytes(let bytes): chunker = try FileChunker(bytes: bytes, configuration: options.chunker)
        }
        defer { chunker.close() }
        var session = UploadSession(client: self, options: options)
        var wholeFile = SHA256()
        var entries: [ManifestEntry] = []
        var pending: [PendingChunk] = []
        var size: Int64 = 0
        do {
            while let chunk = chunker.next() {
                let id = ChunkID(hashing: chunk.bytes)
                wholeFile.update(data: chunk.bytes)
                entries.append(ManifestEntry(chunkID: id, offset: chunk.offset, length: Int64(chunk.byteCount)))
                size += Int64(chunk.byteCount)
                pending.append(PendingChunk(id: id, bytes: chunk.bytes))
                progress?(size)
                if pending.count >= options.placementBatch {
                    try await session.send(pending)
                    pending.removeAll()
                }
            }
            if let error = chunker.error { throw error }
            try await session.send(pending)
            pending.removeAll()
            try await session.finish()
        } catch {
            session.cancel()
            throw error
        }
        let sha256 = try ChunkID(digestBytes: Array(wholeFile.finalize())).hex
        let manifest = ManifestCommit(
            path: path, size: size, contentType: options.contentType, sha256: sha256,
            chunks: entries, acknowledgements: session.acknowledgements, metadata: options.metadata,
            precondition: options.precondition, bucket: options.bucket)
        let version = try await commit(manifest)
        return PutResult(
            file: version, chunkCount: entries.count, newChunkCount: session.newChunks,
            newBytes: session.newBytes, sentBytes: session.sentBytes, storedBytes: session.storedBytes)
    }
}

/// The sending half of a put: placement asks, the window of chunk writes, acknowledgements.
private struct UploadSession {
    let client: ClusterClient
    let options: PutOptions
    /// Chunks of this put already sent or found present: a repeat is not sent again.
    var handled = Set<ChunkID>()
    var window: [Task<ChunkWritten, any Error>] = []
    var acknowledgements: [ReplicaAcknowledgement] = []
    var newChunks = 0
    var newBytes: Int64 = 0
    var sentBytes: Int64 = 0
    var storedBytes: Int64 = 0
    /// Small, so that an interrupted put loses little: acknowledged chunks are not sent again.
    static let acknowledgementBatch = 4

    init(client: ClusterClient, options: PutOptions) {
        self.client = client
        self.options = options
    }

    /// Asks where a batch goes and starts writing the chunks the cluster lacks.
    mutating func send(_ batch: [PendingChunk]) async throws {
        var fresh: [PendingChunk] = []
        for chunk in batch where handled.insert(chunk.id).inserted {
            fresh.append(chunk)
        }
        guard !fresh.isEmpty else { return }
        let reply = try await client.place(
            fresh.map { PlacementRequestEntry(id: $0.id, plainByteCount: Int64($0.bytes.count)) })
        let answers = Dictionary(reply.chunks.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        let quorum = options.writeQuorum ?? (reply.replicaCount / 2 + 1)
        for chunk in fresh {
            guard let answer = answers[chunk.id] else {
                throw BlobError(
                    .internal, reason: "placement.missing",
                    "the master gave no placement for chunk \(chunk.id.shortHex)…")
            }
            if answer.isPresent { continue }
            guard !answer.targets.isEmpty else {
                throw BlobError(
                    .insufficientReplicas, reason: "placement.noTargets",
                    "no live chunk server can take chunk \(chunk.id.shortHex)…; check `blobctl cluster status`")
            }
            while window.count >= options.maxChunksInFlight {
                try await collectOldest()
            }
            let client = self.client
            let policy = options.compression
            let targets = answer.targets
            let needed = min(quorum, targets.count)
            window.append(
                Task {
                    try await Self.write(chunk, targets: targets, quorum: needed, policy: policy, client: client)
                })
        }
    }

    /// Waits for every chunk write; the acknowledgements left over go with the commit.
    mutating func finish() async throws {
        while !window.isEmpty {
            try await collectOldest()
        }
    }

    func cancel() {
        for task in window { task.cancel() }
    }

    mutating func collectOldest() async throws {
        let written = try await window.removeFirst().value
        sentBytes += written.sentBytes
        storedBytes += written.storedBytes
        newChunks += 1
        newBytes += written.plainBytes
        if let ack = written.acknowledgement { acknowledgements.append(ack) }
        if acknowledgements.count >= Self.acknowledgementBatch {
            try await flushAcknowledgements()
        }
    }

    /// Acknowledgements go to the master as writes finish, so an interrupted put's chunks count
    /// as present when it is run again.
    mutating func flushAcknowledgements() async throws {
        guard !acknowledgements.isEmpty else { return }
        try await client.acknowledge(acknowledgements)
        acknowledgements.removeAll()
    }

    /// Compresses one chunk and writes it to the first target that takes it, which forwards to
    /// the rest; a failed first target passes the lead to the next one.
    static func write(
        _ chunk: PendingChunk, targets: [ServerEndpoint], quorum: Int, policy: CompressionPolicy,
        client: ClusterClient
    ) async throws -> ChunkWritten {
        let frame = ChunkEncoder(policy: policy).frame(for: chunk.bytes)
        var lastError: (any Error)?
        for lead in 0..<targets.count {
            try Task.checkCancellation()
            let order = Array(targets[lead...] + targets[..<lead])
            do {
                let result = try await client.putChunk(frame, id: chunk.id, targets: order, quorum: quorum)
                if result.quorumMet {
                    let digests =
                        BlockDigests.applies(toChunkOf: chunk.bytes.count) ? BlockDigests.compute(chunk.bytes) : nil
                    let ack = ReplicaAcknowledgement(
                        id: chunk.id, plainByteCount: Int64(chunk.bytes.count),
                        storedByteCount: Int64(frame.count),
                        serverIDs: result.storedServerIDs, blockDigests: digests)
                    let stored = result.alreadyPresent ? 0 : Int64(frame.count) * Int64(result.storedServerIDs.count)
                    return ChunkWritten(
                        acknowledgement: ack, plainBytes: Int64(chunk.bytes.count), sentBytes: Int64(frame.count),
                        storedBytes: stored)
                }
                let failures = result.failed.map { "\($0.target): \($0.message)" }.joined(separator: "; ")
                lastError = BlobError(
                    .insufficientReplicas, reason: "chunk.quorum",
                    "chunk \(chunk.id.shortHex)… reached \(result.stored.count) of \(quorum) copies (\(failures)); "
                        + "check `blobctl cluster status`")
            } catch let error as BlobError
                where error.code == .unavailable || error.code == .insufficientStorage
                || error.code == .insufficientReplicas || error.code == .timeout
            {
                lastError = error
            }
        }
        throw lastError
            ?? BlobError(.insufficientReplicas, reason: "chunk.noTarget", "no target for chunk \(chunk.id.shortHex)…")
    }
}
