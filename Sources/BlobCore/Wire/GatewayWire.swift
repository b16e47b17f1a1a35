/// The JSON bodies of the master's bucket and access-key API, which gateways use
/// (docs/api.md, "Buckets and keys").

/// A bucket: a top-level namespace (its objects are the paths `NAME/KEY`).
public struct BucketRecord: Codable, Sendable, Hashable {
    public var name: String
    public var createdAtMilliseconds: Int64
    /// Anonymous GET and HEAD of its objects are allowed (media served to browsers and players).
    public var publicRead: Bool
    /// Expiration rules the master applies to its objects; nil for none.
    public var lifecycle: BucketLifecycle?

    public init(name: String, createdAtMilliseconds: Int64, publicRead: Bool, lifecycle: BucketLifecycle? = nil) {
        self.name = name
        self.createdAtMilliseconds = createdAtMilliseconds
        self.publicRead = publicRead
        self.lifecycle = lifecycle
    }

    /// S3's rules: 3 to 63 characters of lowercase letters, digits, dots and hyphens, starting
    /// and ending with a letter or digit, no `..`, not an IPv4 address.
    public static func validate(_ name: String) throws(BlobError) {
        let bytes = Array(name.utf8)
        let allowed = bytes.allSatisfy { (97...122).contains($0) || (48...57).contains($0) || $0 == 46 || $0 == 45 }
        let isAlphanumeric: (UInt8) -> Bool = { (97...122).contains($0) || (48...57).contains($0) }
        let looksLikeIP =
            name.split(separator: ".", omittingEmptySubsequences: false).count == 4
            && name.split(separator: ".").allSatisfy { $0.allSatisfy(\.isNumber) }
        guard (3...63).contains(bytes.count), allowed, isAlphanumeric(bytes.first!), isAlphanumeric(bytes.last!),
            !name.contains(".."), !name.contains(".-"), !name.contains("-."), !looksLikeIP
        else {
            throw BlobError(
                .invalidArgument, reason: "bucket.name",
                "bucket name \"\(name)\" is invalid: use 3 to 63 lowercase letters, digits, dots and hyphens, "
                    + "starting and ending with a letter or digit, with no '..', '.-' or '-.'")
        }
        guard !reservedNames.contains(name) else {
            throw BlobError(
                .invalidArgument, reason: "bucket.reserved",
                "bucket name \"\(name)\" is reserved: gateways answer GET /\(name) as a health probe; choose another")
        }
    }

    /// Names that gateways' probe routes (`/healthz`, `/readyz`) take.
    public static let reservedNames: Set<String> = ["healthz", "readyz"]
}

public struct BucketCreate: Codable, Sendable, Hashable {
    public var name: String
    public var publicRead: Bool
    /// The creation's request id: sent again after a lost reply, the creation answers the bucket
    /// it made instead of `bucket.exists` (see ``ManifestCommit/validate(requestID:reason:)``).
    public var requestID: String?

    public init(name: String, publicRead: Bool = false, requestID: String? = nil) {
        self.name = name
        self.publicRead = publicRead
        self.requestID = requestID
    }
}

/// A bucket's lifecycle configuration: the rules the master applies, and the document as the
/// client sent it (S3's GetBucketLifecycleConfiguration answers it back).
public struct BucketLifecycle: Codable, Sendable, Hashable {
    public var rules: [LifecycleRule]
    public var document: String

    public init(rules: [LifecycleRule], document: String) {
        self.rules = rules
        self.document = document
    }

    public static let maxRules = 1000
}

/// One rule: objects under `prefix` (inside the bucket) expire `expirationDays` days after they
/// were written; multipart uploads are aborted `abortUploadsAfterDays` days after they began.
public struct LifecycleRule: Codable, Sendable, Hashable {
    public var id: String?
    public var prefix: String
    public var enabled: Bool
    public var expirationDays: Int?
    public var abortUploadsAfterDays: Int?

    public init(id: String?, prefix: String, enabled: Bool, expirationDays: Int?, abortUploadsAfterDays: Int?) {
        self.id = id
        self.prefix = prefix
        self.enabled = enabled
        self.expirationDays = expirationDays
        self.abortUploadsAfterDays = abortUploadsAfterDays
    }

    public static let dayMilliseconds: Int64 = 86_400_000
    /// The largest day count a rule may give (S3's is a 32-bit integer).
    public static let maxDays = Int(Int32.max)
}

/// Sets (or, with nil, removes) a bucket's lifecycle configuration.
public struct BucketLifecycleUpdate: Codable, Sendable, Hashable {
    public var lifecycle: BucketLifecycle?
    public init(lifecycle: BucketLifecycle?) { self.lifecycle = lifecycle }
}

public struct BucketAccess: Codable, Sendable, Hashable {
    public var publicRead: Bool
    public init(publicRead: Bool) { self.publicRead = publicRead }
}

/// An S3 access key. The secret is shown when the key is created and to gateways (which need it
/// to check SigV4 signatures); listings leave it out.
public struct AccessKey: Codable, Sendable, Hashable {
    public var accessKeyID: String
    public var secretAccessKey: String?
    public var name: String
    public var createdAtMilliseconds: Int64

    public init(accessKeyID: String, secretAccessKey: String?, name: String, createdAtMilliseconds: Int64) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.name = name
        self.createdAtMilliseconds = createdAtMilliseconds
    }
}

public struct AccessKeyCreate: Codable, Sendable, Hashable {
    public var name: String
    public init(name: String) { self.name = name }
}

/// A server-side copy: `to` gets a new version sharing `from`'s chunks.
public struct FileCopy: Codable, Sendable, Hashable {
    public var from: BlobPath
    public var to: BlobPath
    /// The copy's content type; nil keeps the source's.
    public var contentType: String?
    /// The copy's user metadata; nil keeps the source's.
    public var metadata: [String: String]?
    /// The bucket of the target (``ManifestCommit/bucket``).
    public var bucket: String?
    /// The copy's request id: the new version is committed under it (``ManifestCommit/requestID``),
    /// so a copy sent again after a lost reply answers the version the first one made.
    public var requestID: String?

    public init(
        from: BlobPath, to: BlobPath, contentType: String?, metadata: [String: String]? = nil, bucket: String? = nil,
        requestID: String? = nil
    ) {
        self.requestID = requestID
        self.bucket = bucket
        self.metadata = metadata
        self.from = from
        self.to = to
        self.contentType = contentType
    }
}

/// A multipart upload in progress; its parts are files at ``partPath(_:)``.
public struct MultipartUpload: Codable, Sendable, Hashable {
    public var id: String
    public var path: BlobPath
    public var contentType: String
    public var createdAtMilliseconds: Int64
    /// The object's user metadata, given when the upload starts.
    public var metadata: [String: String]?

    public init(
        id: String, path: BlobPath, contentType: String, createdAtMilliseconds: Int64, metadata: [String: String]? = nil
    ) {
        self.metadata = metadata
        self.id = id
        self.path = path
        self.contentType = contentType
        self.createdAtMilliseconds = createdAtMilliseconds
    }

    /// Where the parts of uploads live: outside every bucket (bucket names cannot start with `.`).
    public static let partsRoot = ".uploads"

    public var partsPrefix: String { "\(Self.partsRoot)/\(id)/" }

    /// The request id of the commit that completes upload `id`: a repeated completion finds it.
    public static func completionRequestID(_ id: String) -> String { "upload/" + id }

    /// The path of part `number` (1...10000), zero-padded so parts list in order.
    public func partPath(_ number: Int) throws -> BlobPath {
        let digits = String(number)
        return try BlobPath(partsPrefix + String(repeating: "0", count: max(0, 5 - digits.count)) + digits)
    }
}

public struct MultipartUploadCreate: Codable, Sendable, Hashable {
    public var path: BlobPath
    public var contentType: String
    public var metadata: [String: String]?

    public init(path: BlobPath, contentType: String, metadata: [String: String]? = nil) {
        self.metadata = metadata
        self.path = path
        self.contentType = contentType
    }
}

/// One part named in a completion: its number and the digest its upload answered.
public struct CompletedPart: Codable, Sendable, Hashable {
    public var number: Int
    public var sha256: String

    public init(number: Int, sha256: String) {
        self.number = number
        self.sha256 = sha256
    }
}

public struct MultipartCompletion: Codable, Sendable, Hashable {
    public var parts: [CompletedPart]
    /// Object attributes (``ObjectAttribute``) added to the upload's metadata in the new version.
    public var attributes: [String: String]?
    /// A condition on the path's current version (``ManifestCommit/precondition``).
    public var precondition: WritePrecondition?
    /// The bucket of the target (``ManifestCommit/bucket``).
    public var bucket: String?
    public init(
        parts: [CompletedPart], attributes: [String: String]? = nil, precondition: WritePrecondition? = nil,
        bucket: String? = nil
    ) {
        self.bucket = bucket
        self.parts = parts
        self.attributes = attributes
        self.precondition = precondition
    }
}

/// Facts about an object that the S3 gateway keeps with the version, in its metadata under
/// names that start with ':' (no `x-amz-meta-*` name can): they are not user metadata.
public enum ObjectAttribute {
    /// S3's ETag when it is not the SHA-256: the MD5 of a PUT body, or the MD5 of the parts' MD5s
    /// followed by `-N` for a multipart upload.
    public static let etag = ":etag"
    /// The multipart upload whose completion made this version (a repeated completion answers again).
    public static let upload = ":upload"
    /// Stored HTTP headers, given at PUT and returned with the object.
    public static let storedHeaders = [
        "cache-control", "content-disposition", "content-encoding", "content-language", "expires",
    ]

    public static func header(_ name: String) -> String { ":" + name }

    public static func isAttribute(_ name: String) -> Bool { name.hasPrefix(":") }

    /// The user metadata alone.
    public static func userMetadata(_ metadata: [String: String]?) -> [String: String] {
        (metadata ?? [:]).filter { !isAttribute($0.key) }
    }
}

/// One part of a version made by a multipart upload: its number, where its bytes sit in the
/// object, and the part's attributes (``ObjectAttribute``: its ETag and checksums).
public struct FilePart: Codable, Sendable, Hashable {
    public var number: Int
    public var offset: Int64
    public var size: Int64
    public var attributes: [String: String]?

    public init(number: Int, offset: Int64, size: Int64, attributes: [String: String]?) {
        self.number = number
        self.offset = offset
        self.size = size
        self.attributes = attributes
    }
}

/// A path's current version and its parts (none when it was not made by a multipart upload).
public struct FileParts: Codable, Sendable, Hashable {
    public var file: FileVersion
    public var parts: [FilePart]

    public init(file: FileVersion, parts: [FilePart]) {
        self.file = file
        self.parts = parts
    }
}
