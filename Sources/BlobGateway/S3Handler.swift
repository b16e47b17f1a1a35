import BlobS3Wire
import BlobClient
import BlobCore
import BlobServerSupport
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import NIOCore

/// The gateway's requests: S3 (path and virtual-host style, SigV4) and plain HTTP GET/HEAD of
/// public buckets' objects, with ranges and conditional requests (docs/api.md, "Gateway").
struct S3Handler: Sendable {
    let client: ClusterClient
    let configuration: GatewayConfiguration
    let keys: KeyCache
    let buckets: BucketCache
    let logger: Logger
    var metrics = GatewayMetrics(metrics: ServerMetrics(role: "gateway"))
    /// S3's limit for one PUT.
    static let maxObjectByteCount: Int64 = 5 << 30

    func register(on router: Router<BasicRequestContext>) {
        for method in [HTTPRequest.Method.get, .head, .put, .post, .delete, .options] {
            router.on("/", method: method) { request, _ in await handle(request) }
            router.on("/**", method: method) { request, _ in await handle(request) }
        }
    }

    /// Where a request points: bucket and key, from the Host (virtual host) or the path.
    struct Target {
        var bucket: String?
        var key: String?
        var rawPath: String
        var rawQuery: String
        var query: [String: String]
        /// The bucket came from the Host (virtual-host style), not from the path.
        var virtualHost = false
        var resource: String { "/" + [bucket, key].compactMap { $0 }.joined(separator: "/") }
    }

    func target(_ request: Request) -> Target {
        let rawPath = request.uri.path
        let rawQuery = request.uri.query ?? ""
        let decoded = SigV4.percentDecode(rawPath)
        var bucket: String?
        var fromHost = false
        var keyPart = Substring(decoded.dropFirst())
        if let suffix = configuration.virtualHostSuffix, let host = request.head.authority {
            let name = host.split(separator: ":").first.map(String.init) ?? host
            if name.hasSuffix("." + suffix) {
                bucket = String(name.dropLast(suffix.count + 1))
                fromHost = true
            }
        }
        if bucket == nil {
            let parts = keyPart.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            if let first = parts.first, !first.isEmpty { bucket = String(first) }
            keyPart = parts.count > 1 ? parts[1] : ""
        }
        return Target(
            bucket: bucket, key: keyPart.isEmpty ? nil : String(keyPart), rawPath: rawPath, rawQuery: rawQuery,
            query: SigV4.parseQuery(rawQuery), virtualHost: fromHost)
    }

    func handle(_ request: Request) async -> Response {
        let started = ContinuousClock.now
        // The id the request observer gave this request (the client's Blob-Request-ID, if it
        // sent one): the same id is in every log line it causes, on every process.
        let requestID = RequestID.current ?? RequestID.make()
        let target = target(request)
        let operation = S3Operation.name(method: request.method, target: target, headers: request.headers)
        do {
            var response = try await route(request, target)
            response.headers[HTTPField.Name("x-amz-request-id")!] = requestID
            metrics.recordOperation(operation, code: "OK")
            if operation == "GetObject", response.status.code < 300 {
                // Time to first byte: until the first bytes of the object leave for the client.
                let body = response.body
                let metrics = self.metrics
                response.body = ResponseBody(contentLength: body.contentLength) { writer in
                    let tally = BodyTally()
                    // The body fetches the chunks as it streams: under the request's id.
                    try await RequestID.$current.withValue(requestID) {
                        try await body.write(CountingWriter(base: writer, tally: tally))
                    }
                    if let first = tally.firstByte { metrics.recordFirstByte(first - started) }
                }
            }
            return response
        } catch {
            let s3 = S3Error.from(error)
            metrics.recordOperation(operation, code: s3.code)
            if s3.status.code >= 500 {
                logger.warning(
                    "gateway request failed", metadata: ["error.message": "\(error)", "path": "\(target.resource)"])
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/xml"
            headers[HTTPField.Name("x-amz-request-id")!] = requestID
            if let size = s3.objectSize { headers[.contentRange] = "bytes */\(size)" }
            // A HEAD answer has no body; its status says it all.
            let body =
                request.method == .head
                ? ByteBuffer() : ByteBuffer(string: s3.xml(resource: target.resource, requestID: requestID))
            return Response(status: s3.status, headers: headers, body: .init(byteBuffer: body))
        }
    }

    // MARK: Authentication

    enum Caller {
        case anonymous
        case signed(SigV4.Verified)
    }

    /// The request's headers by lowercased name; repeated ones joined with ','.
    static func headerDictionary(_ request: Request) -> [String: String] {
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName.lowercased()
            headers[name] = headers[name].map { $0 + "," + field.value } ?? field.value
        }
        return headers
    }

    func authenticate(_ request: Request, _ target: Target) async throws -> Caller {
        var headers = Self.headerDictionary(request)
        if headers["host"] == nil, let authority = request.head.authority { headers["host"] = authority }
        let secret: (String) async throws -> String? = { id in try await keys.secret(for: id) }
        // V2 signs /BUCKET/KEY as the client wrote it, whatever the addressing style: the same
        // bucket the request is routed to.
        let resourceV2 = target.virtualHost ? "/" + (target.bucket ?? "") + target.rawPath : target.rawPath
        if let authorization = headers["authorization"], authorization.hasPrefix("AWS ") {
            return .signed(
                try await SigV4.verifyHeaderV2(
                    method: request.method.rawValue, resource: resourceV2, rawQuery: target.rawQuery,
                    headers: headers, secret: secret))
        }
        if headers["authorization"] != nil {
            return .signed(
                try await SigV4.verifyHeader(
                    method: request.method.rawValue, rawPath: target.rawPath,
                    rawQuery: target.rawQuery, headers: headers, secret: secret))
        }
        if target.query["X-Amz-Signature"] != nil {
            return .signed(
                try await SigV4.verifyQuery(
                    method: request.method.rawValue, rawPath: target.rawPath,
                    rawQuery: target.rawQuery, headers: headers, secret: secret))
        }
        if target.query["Signature"] != nil, target.query["AWSAccessKeyId"] != nil {
            return .signed(
                try await SigV4.verifyQueryV2(
                    method: request.method.rawValue, resource: resourceV2,
                    rawQuery: target.rawQuery, secret: secret))
        }
        return .anonymous
    }

    // MARK: Routing

    /// The largest header section answered (S3 allows 8 KiB on a PUT; browsers' cookies may need
    /// more on a GET). Above about 80 KiB the HTTP parser refuses the request with a bare 400.
    static let maxHeaderSectionByteCount = 16 << 10

    func route(_ request: Request, _ target: Target) async throws -> Response {
        let headerBytes = request.headers.reduce(0) { $0 + $1.name.canonicalName.utf8.count + $1.value.utf8.count + 4 }
        guard headerBytes <= Self.maxHeaderSectionByteCount else {
            throw S3Error(
                "RequestHeaderSectionTooLarge", .badRequest,
                "Your request header section exceeds the maximum allowed size "
                    + "(\(Self.maxHeaderSectionByteCount) bytes)."
            )
        }
        let method = request.method
        if method == .options {
            // CORS preflight: no bucket has a CORS configuration.
            guard request.headers[HTTPField.Name("Origin")!] != nil else {
                throw S3Error("BadRequest", .badRequest, "Insufficient information. Origin request header needed.")
            }
            throw S3Error("AccessForbidden", .forbidden, "CORSResponse: CORS is not enabled for this bucket.")
        }
        let caller = try await authenticate(request, target)
        guard let bucketName = target.bucket else {
            guard method == .get else {
                throw S3Error("MethodNotAllowed", .methodNotAllowed, "only GET is allowed on the service")
            }
            guard case .signed = caller else { throw S3Error.accessDenied() }
            return try await listBuckets()
        }
        // A browser form upload (POST Object) carries its own signed policy.
        if method == .post, target.key == nil, target.query.isEmpty,
            request.headers[.contentType]?.lowercased().hasPrefix("multipart/form-data") == true
        {
            return try await postObject(bucketName, request)
        }
        // Anonymous callers may only read public buckets: their objects and their listings.
        if case .anonymous = caller {
            let listing =
                target.key == nil && method == .get && target.query.keys.allSatisfy(Self.listingParameters.contains)
            // As S3 does, a bucket that does not exist is said so, to anyone.
            guard let bucket = try await buckets.bucket(bucketName) else { throw S3Error.noSuchBucket(bucketName) }
            guard (method == .get || method == .head) && (target.key != nil && target.query.isEmpty || listing),
                bucket.publicRead
            else {
                throw S3Error.accessDenied()
            }
        }
        guard let key = target.key else {
            switch method {
            case .put:
                if target.query.isEmpty { return try await createBucket(bucketName, request) }
                if target.query.keys.sorted() == ["acl"] {
                    return try await putACL(bucketName, objectPath: nil, request)
                }
                if target.query.keys.sorted() == ["lifecycle"] { return try await putLifecycle(bucketName, request) }
                throw S3Error.notImplemented(
                    "this bucket subresource (\(target.query.keys.sorted().joined(separator: ",")))")
            case .delete:
                let subresources = target.query.keys.filter { $0 != "x-id" }.sorted()
                if subresources == ["lifecycle"] { return try await deleteLifecycle(bucketName) }
                guard subresources.isEmpty else {
                    throw S3Error.notImplemented("this bucket subresource (\(subresources.joined(separator: ",")))")
                }
                return try await deleteBucket(bucketName)
            case .head: return try await headBucket(bucketName)
            case .get:
                if target.query["location"] != nil { return try await bucketLocation(bucketName) }
                if target.query["uploads"] != nil { return try await listUploads(bucketName, target.query) }
                if target.query["acl"] != nil { return try await getACL(bucketName) }
                if target.query["lifecycle"] != nil { return try await getLifecycle(bucketName) }
                if let other = target.query.keys.first(where: { !Self.listingParameters.contains($0) }) {
                    throw S3Error.notImplemented("the bucket subresource ?\(other)")
                }
                return try await listObjects(bucketName, target.query)
            case .post:
                if target.query["delete"] != nil {
                    guard case .signed = caller else { throw S3Error.accessDenied() }
                    return try await deleteObjects(bucketName, request)
                }
                throw S3Error.notImplemented("this bucket POST")
            default:
                throw S3Error("MethodNotAllowed", .methodNotAllowed, "method not allowed on a bucket")
            }
        }
        // Every object operation names an existing bucket: nothing outside buckets (such as the
        // parts of uploads) is reachable by a key. A plain GET or HEAD asks about the bucket and
        // the object at once (below), so a read after the bucket's short cache expired costs
        // one master round trip, not two.
        let plainRead =
            (method == .get || method == .head)
            && target.query.keys.allSatisfy {
                $0.hasPrefix("X-Amz-") || $0.hasPrefix("response-") || Self.presignParameters.contains($0)
            }
        if !plainRead { _ = try await requireBucket(bucketName) }
        let path: BlobPath
        do {
            path = try objectPath(bucketName, key)
        } catch {
            if plainRead { _ = try await requireBucket(bucketName) }  // NoSuchBucket first, as for the rest
            throw error
        }
        if method == .get || method == .head, target.query["versionId"].map({ $0 != "null" }) == true {
            throw S3Error.notImplemented("object versions")
        }
        if method == .get || method == .head, target.query["uploadId"] == nil, let number = target.query["partNumber"] {
            return try await getObjectPart(path, number, request, head: method == .head, bucket: bucketName)
        }
        if method == .get, target.query["attributes"] != nil {
            guard case .signed = caller else { throw S3Error.accessDenied() }
            return try await getObjectAttributes(path, request, bucket: bucketName)
        }
        if method == .put, request.headers[.ifMatch] != nil || request.headers[.ifNoneMatch] != nil,
            target.query["uploadId"] != nil || request.headers[HTTPField.Name("x-amz-copy-source")!] != nil
        {
            throw S3Error.notImplemented(
                "If-Match and If-None-Match on a copy or a part (only PutObject and CompleteMultipartUpload take them)")
        }
        if target.query["acl"] != nil {
            switch method {
            case .get:
                do {
                    _ = try await client.stat(path)
                } catch let error as BlobError where error.code == .notFound {
                    throw S3Error.noSuchKey()
                }
                return try await getACL(bucketName)
            case .put: return try await putACL(bucketName, objectPath: path, request)
            default: throw S3Error("MethodNotAllowed", .methodNotAllowed, "use GET or PUT with ?acl")
            }
        }
        let signing: Set = [
            "AWSAccessKeyId", "Expires", "Signature", "versionId", "uploads", "uploadId", "partNumber",
            "max-parts", "part-number-marker", "x-id",
        ]
        let objectQueries = target.query.keys.filter {
            !$0.hasPrefix("X-Amz-") && !$0.hasPrefix("response-") && !signing.contains($0)
        }
        if let sub = objectQueries.first { throw S3Error.notImplemented("the object subresource ?\(sub)") }
        if target.query["uploads"] != nil {
            guard method == .post, case .signed = caller else {
                throw S3Error("MethodNotAllowed", .methodNotAllowed, "use POST ?uploads")
            }
            return try await createUpload(path, bucket: bucketName, key: key, request)
        }
        if let uploadID = target.query["uploadId"] {
            guard case .signed(let verified) = caller else { throw S3Error.accessDenied() }
            let upload: MultipartUpload
            do {
                upload = try await requireUpload(uploadID, path: path)
            } catch let error as S3Error where error.code == "NoSuchUpload" && method == .post {
                if let done = try await completedUpload(uploadID, path: path, bucket: bucketName, key: key) {
                    return done
                }
                throw error
            }
            switch method {
            case .put:
                guard let number = target.query["partNumber"].flatMap(Int.init), (1...10_000).contains(number) else {
                    throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive")
                }
                if let source = request.headers[HTTPField.Name("x-amz-copy-source")!] {
                    return try await uploadPartCopy(upload, number: number, from: source, request)
                }
                return try await uploadPart(upload, number: number, request, verified)
            case .get: return try await listParts(upload, bucket: bucketName, key: key, target.query)
            case .post: return try await completeUpload(upload, bucket: bucketName, key: key, request)
            case .delete:
                try await client.abortUpload(upload.id)
                return Response(status: .noContent)
            default: throw S3Error("MethodNotAllowed", .methodNotAllowed, "method not allowed on an upload")
            }
        }
        switch method {
        case .get, .head:
            var response: Response
            if plainRead {
                async let bucket = requireBucket(bucketName)
                do {
                    response = try await getObject(path, request, head: method == .head, bucket: bucketName)
                } catch {
                    _ = try await bucket  // NoSuchBucket comes before anything about the key
                    throw error
                }
                _ = try await bucket
            } else {
                response = try await getObject(path, request, head: method == .head, bucket: bucketName)
            }
            // response-* parameters override the answer's headers, for signed requests only.
            let overrides = target.query.filter { $0.key.hasPrefix("response-") }
            if !overrides.isEmpty {
                guard case .signed = caller else {
                    throw S3Error(
                        "InvalidRequest", .badRequest,
                        "Request specific response headers cannot be used for anonymous GET requests.")
                }
                for (name, value) in overrides {
                    let header = String(name.dropFirst("response-".count))
                    guard Self.overridableHeaders.contains(header), let field = HTTPField.Name(header) else {
                        throw S3Error.invalidArgument("\(name) is not a response header S3 lets a request override")
                    }
                    response.headers[field] = value
                }
            }
            return response
        case .put:
            guard case .signed(let verified) = caller else { throw S3Error.accessDenied() }
            if let source = request.headers[HTTPField.Name("x-amz-copy-source")!] {
                return try await copyObject(from: source, to: path, request)
            }
            return try await putObject(path, request, verified, bucket: bucketName)
        case .delete:
            return try await deleteObject(path, bucket: bucketName)
        default:
            throw S3Error("MethodNotAllowed", .methodNotAllowed, "method not allowed on an object")
        }
    }

    /// The headers a signed GET may override with `response-HEADER=VALUE`.
    /// Query parameters of V2 presigned URLs and the SDKs' operation tag: not sub-resources.
    static let presignParameters: Set = ["AWSAccessKeyId", "Expires", "Signature", "x-id"]

    static let overridableHeaders: Set = [
        "content-type", "content-language", "expires", "cache-control", "content-disposition",
        "content-encoding",
    ]

    /// The query parameters of ListObjects v1 and v2.
    static let listingParameters: Set = [
        "list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after", "marker",
        "encoding-type", "fetch-owner", "allow-unordered",
    ]

    /// `BUCKET/KEY` as a store path; keys the store cannot hold are refused, never altered.
    func objectPath(_ bucket: String, _ key: String) throws -> BlobPath {
        guard key.utf8.count <= 1024 else { throw S3Error("KeyTooLongError", .badRequest, "Your key is too long.") }
        do {
            return try BlobPath(bucket + "/" + key)
        } catch {
            throw S3Error.invalidArgument(
                "this gateway cannot store the key \"\(key)\": \(S3Error.from(error).message)")
        }
    }

    func requireBucket(_ name: String) async throws -> BucketRecord {
        guard let bucket = try await buckets.bucket(name) else { throw S3Error.noSuchBucket(name) }
        return bucket
    }

    func xmlResponse(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/xml"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
