/// Manifests and file versions: what the master stores and serves (docs/api.md).

/// One chunk of a file version, in order: where its plain bytes sit in the file.
public struct ManifestEntry: Codable, Sendable, Hashable {
    public var chunkID: ChunkID
    public var offset: Int64
    public var length: Int64

    public init(chunkID: ChunkID, offset: Int64, length: Int64) {
        self.chunkID = chunkID
        self.offset = offset
        self.length = length
    }
}

/// What a client asks the master to commit after its chunks are durable.
public struct ManifestCommit: Codable, Sendable, Hashable {
    public var path: BlobPath
    public var size: Int64
    public var contentType: String
    /// SHA-256 of the whole file, lowercase hex.
    public var sha256: String
    public var chunks: [ManifestEntry]
    /// Write acknowledgements not yet sent to the master, recorded in the commit's transaction
    /// (saves a writer one request and one durable transaction per file).
    public var acknowledgements: [ReplicaAcknowledgement]?
    /// User metadata (S3's `x-amz-meta-*`): lowercase names, at most 2 KiB in all; plus object
    /// attributes kept by the gateway under names starting with ':' (``ObjectAttribute``).
    public var metadata: [String: String]?

    /// What must hold of the path's current version for the commit to happen, checked in the
    /// commit's transaction (S3's conditional writes); nil for none.
    public var precondition: WritePrecondition?

    /// The bucket this write belongs to (set by gateways): the commit fails with 404
    /// `bucket.notFound` unless the bucket exists, checked in the commit's transaction so a
    /// bucket deleted meanwhile never ends up holding an object. Nil for plain paths.
    public var bucket: String?

    /// The writer's id for this commit (at most 128 printable ASCII characters, e.g. a UUID):
    /// a commit sent again after its reply was lost, to any master, returns the version the
    /// first one made instead of making a second. Nil: no such protection.
    public var requestID: String?

    /// The user's part of ``metadata`` (names not starting with ':'), as S3 allows.
    public static let maxMetadataByteCount = 2048
    /// All of ``metadata``, attributes included.
    public static let maxMetadataWithAttributesByteCount = 8192

    public init(
        path: BlobPath, size: Int64, contentType: String, sha256: String, chunks: [ManifestEntry],
        acknowledgements: [ReplicaAcknowledgement]? = nil, metadata: [String: String]? = nil,
        precondition: WritePrecondition? = nil, bucket: String? = nil, requestID: String? = nil
    ) {
        self.requestID = requestID
        self.bucket = bucket
        self.metadata = metadata
        self.precondition = precondition
        self.path = path
        self.size = size
        self.contentType = contentType
        self.sha256 = sha256
        self.chunks = chunks
        self.acknowledgements = acknowledgements
    }

    /// A whole file's SHA-256: 64 lowercase hex characters.
    public static func isWholeFileDigest(_ text: String) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy { (48...57).contains($0) || (97...102).contains($0) }
    }

    /// A file assembled from parts (multipart upload) has no whole-file SHA-256 without reading it
    /// all: its digest is the SHA-256 of the parts' digests, then `-` and the number of parts (as
    /// S3 spells a multipart ETag). Each chunk is still checked against its id on every read.
    public static func isCompositeDigest(_ text: String) -> Bool {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 2, let n = Int(parts[1]), (1...10_000).contains(n) else { return false }
        return isWholeFileDigest(String(parts[0]))
    }

    /// A request id (of a commit or a delete) is 1 to 128 printable ASCII characters, no spaces.
    public static func validate(requestID: String, reason: String) throws(BlobError) {
        guard (1...128).contains(requestID.utf8.count), requestID.utf8.allSatisfy({ (0x21...0x7E).contains($0) })
        else {
            throw BlobError(
                .invalidArgument, reason: reason,
                "a request id is 1 to 128 printable ASCII characters without spaces (a UUID, for example)")
        }
    }

    /// Checks the parts a store cannot: lengths, tiling, hash spelling, limits.
    public func validate(maxChunks: Int) throws(BlobError) {
        guard size >= 0 else {
            throw BlobError(.invalidArgument, reason: "manifest.size", "file size \(size) is negative")
        }
        if let requestID { try Self.validate(requestID: requestID, reason: "manifest.requestID") }
        guard chunks.count <= maxChunks else {
            throw BlobError(
                .invalidArgument, reason: "manifest.tooManyChunks",
                "a manifest holds at most \(maxChunks) chunks, this one \(chunks.count); split the file")
        }
        guard Self.isWholeFileDigest(sha256) || Self.isCompositeDigest(sha256) else {
            throw BlobError(
                .invalidArgument, reason: "manifest.sha256",
                "sha256 must be 64 lowercase hex characters (or, for a file assembled from parts, that and -PARTS)")
        }
        guard contentType.utf8.count <= 255, !contentType.unicodeScalars.contains(where: { $0.value < 0x20 }) else {
            throw BlobError(
                .invalidArgument, reason: "manifest.contentType", "content type must be at most 255 printable bytes")
        }
        if let metadata {
            let size: (Dictionary<String, String>.Element) -> Int = { $0.key.utf8.count + $0.value.utf8.count }
            let user = metadata.filter { !ObjectAttribute.isAttribute($0.key) }.reduce(0) { $0 + size($1) }
            let total = metadata.reduce(0) { $0 + size($1) }
            let printable: (String) -> Bool = { !$0.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F } }
            guard user <= Self.maxMetadataByteCount, total <= Self.maxMetadataWithAttributesByteCount,
                metadata.allSatisfy({ !$0.key.isEmpty && printable($0.key) && printable($0.value) })
            else {
                throw BlobError(
                    .invalidArgument, reason: "manifest.metadata",
                    "user metadata must be printable and at most \(Self.maxMetadataByteCount) bytes in all "
                        + "(\(Self.maxMetadataWithAttributesByteCount) with object attributes)")
            }
        }
        var next: Int64 = 0
        for (i, entry) in chunks.enumerated() {
            guard entry.length > 0, entry.length <= Int64(Limits.maxChunkByteCount) else {
                throw BlobError(
                    .invalidArgument, reason: "manifest.chunkLength",
                    "chunk \(i) has length \(entry.length); lengths are 1...\(Limits.maxChunkByteCount)")
            }
            guard entry.offset == next else {
                throw BlobError(
                    .invalidArgument, reason: "manifest.tiling",
                    "chunk \(i) starts at \(entry.offset) but the previous one ends at \(next); "
                        + "chunks must tile the file without gaps or overlaps")
            }
            next += entry.length
        }
        guard next == size else {
            throw BlobError(
                .invalidArgument, reason: "manifest.tiling",
                "chunks cover \(next) bytes but the file size is \(size)")
        }
    }
}

/// A committed version of a file (or its tombstone).
public struct FileVersion: Codable, Sendable, Hashable {
    public var path: BlobPath
    /// 1 for the first commit at a path, then +1 with every commit or delete.
    public var version: Int64
    public var size: Int64
    public var contentType: String
    public var sha256: String
    /// Milliseconds since 1970.
    public var createdAtMilliseconds: Int64
    public var isDeleted: Bool
    /// Bytes the chunks take on disk, per replica (compressed); 0 for a tombstone.
    public var storedBytes: Int64
    public var chunkCount: Int
    /// User metadata given at the commit; nil when none.
    public var metadata: [String: String]?

    public init(
        path: BlobPath, version: Int64, size: Int64, contentType: String, sha256: String,
        createdAtMilliseconds: Int64, isDeleted: Bool, storedBytes: Int64, chunkCount: Int,
        metadata: [String: String]? = nil
    ) {
        self.metadata = metadata
        self.path = path
        self.version = version
        self.size = size
        self.contentType = contentType
        self.sha256 = sha256
        self.createdAtMilliseconds = createdAtMilliseconds
        self.isDeleted = isDeleted
        self.storedBytes = storedBytes
        self.chunkCount = chunkCount
    }
}

/// One page of a listing, in path order.
public struct FileListPage: Codable, Sendable, Hashable {
    public var files: [FileVersion]
    /// Pass as `after` for the next page; nil at the end.
    public var next: String?

    public init(files: [FileVersion], next: String?) {
        self.files = files
        self.next = next
    }
}

/// A condition on a path's current version for a write to go ahead.
public enum WritePrecondition: Codable, Sendable, Hashable {
    /// No current version (S3's `If-None-Match: *`).
    case absent
    /// Some current version (S3's `If-Match: *`).
    case present
    /// The current version's ETag is this one (S3's `If-Match`): its ``ObjectAttribute/etag``
    /// when it has one, else its SHA-256; without quotes.
    case etag(String)

    /// Refused: the master answers 409 with this reason.
    public static let failedReason = "file.precondition"
}
