import BlobClient
import BlobCore
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
    /// S3's limit for one PUT.
    static let maxObjectByteCount: Int64 = 5 << 30

    func register(on router: Router<BasicRequestContext>) {
        for method in [HTTPRequest.Method.get, .head, .put, .post, .delete] {
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
        var resource: String { "/" + [bucket, key].compactMap { $0 }.joined(separator: "/") }
    }

    func target(_ request: Request) -> Target {
        let rawPath = request.uri.path
        let rawQuery = request.uri.query ?? ""
        let decoded = SigV4.percentDecode(rawPath)
        var bucket: String?
        var keyPart = Substring(decoded.dropFirst())
        if let suffix = configuration.virtualHostSuffix, let host = request.head.authority {
            let name = host.split(separator: ":").first.map(String.init) ?? host
            if name.hasSuffix("." + suffix) {
                bucket = String(name.dropLast(suffix.count + 1))
            }
        }
        if bucket == nil {
            let parts = keyPart.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
            if let first = parts.first, !first.isEmpty { bucket = String(first) }
            keyPart = parts.count > 1 ? parts[1] : ""
        }
        return Target(bucket: bucket, key: keyPart.isEmpty ? nil : String(keyPart), rawPath: rawPath, rawQuery: rawQuery,
                      query: SigV4.parseQuery(rawQuery))
    }

    func handle(_ request: Request) async -> Response {
        let requestID = String(UInt64.random(in: 0...UInt64.max), radix: 16, uppercase: true)
        let target = target(request)
        do {
            var response = try await route(request, target)
            response.headers[HTTPField.Name("x-amz-request-id")!] = requestID
            return response
        } catch {
            let s3 = S3Error.from(error)
            if s3.status.code >= 500 {
                logger.warning("gateway request failed", metadata: ["error.message": "\(error)", "path": "\(target.resource)"])
            }
            var headers = HTTPFields()
            headers[.contentType] = "application/xml"
            headers[HTTPField.Name("x-amz-request-id")!] = requestID
            if let size = s3.objectSize { headers[.contentRange] = "bytes */\(size)" }
            // A HEAD answer has no body; its status says it all.
            let body = request.method == .head ? ByteBuffer() : ByteBuffer(string: s3.xml(resource: target.resource, requestID: requestID))
            return Response(status: s3.status, headers: headers, body: .init(byteBuffer: body))
        }
    }

    // MARK: Authentication

    enum Caller {
        case anonymous
        case signed(SigV4.Verified)
    }

    func authenticate(_ request: Request, _ target: Target) async throws -> Caller {
        var headers: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName.lowercased()
            headers[name] = headers[name].map { $0 + "," + field.value } ?? field.value
        }
        if headers["host"] == nil, let authority = request.head.authority { headers["host"] = authority }
        let secret: (String) async throws -> String? = { id in try await keys.secret(for: id) }
        if headers["authorization"] != nil {
            return .signed(try await SigV4.verifyHeader(method: request.method.rawValue, rawPath: target.rawPath,
                                                        rawQuery: target.rawQuery, headers: headers, secret: secret))
        }
        if target.query["X-Amz-Signature"] != nil {
            return .signed(try await SigV4.verifyQuery(method: request.method.rawValue, rawPath: target.rawPath,
                                                       rawQuery: target.rawQuery, headers: headers, secret: secret))
        }
        if target.query["Signature"] != nil, target.query["AWSAccessKeyId"] != nil {
            // V2 signs /BUCKET/KEY as the client wrote it, whatever the addressing style.
            let pathStyle = configuration.virtualHostSuffix == nil || !(request.head.authority ?? "").contains("." + (configuration.virtualHostSuffix ?? ""))
            let resource = pathStyle ? target.rawPath : "/" + (target.bucket ?? "") + target.rawPath
            return .signed(try await SigV4.verifyQueryV2(method: request.method.rawValue, resource: resource,
                                                         rawQuery: target.rawQuery, secret: secret))
        }
        return .anonymous
    }

    // MARK: Routing

    func route(_ request: Request, _ target: Target) async throws -> Response {
        let caller = try await authenticate(request, target)
        let method = request.method
        guard let bucketName = target.bucket else {
            guard method == .get else { throw S3Error("MethodNotAllowed", .methodNotAllowed, "only GET is allowed on the service") }
            guard case .signed = caller else { throw S3Error.accessDenied() }
            return try await listBuckets()
        }
        // Anonymous callers may only read objects of public buckets.
        if case .anonymous = caller {
            guard method == .get || method == .head, target.key != nil, target.query.isEmpty,
                  let bucket = try await buckets.bucket(bucketName), bucket.publicRead else {
                throw S3Error.accessDenied()
            }
        }
        guard let key = target.key else {
            switch method {
            case .put:
                if target.query.isEmpty { return try await createBucket(bucketName, request) }
                throw S3Error.notImplemented("this bucket subresource (\(target.query.keys.sorted().joined(separator: ",")))")
            case .delete: return try await deleteBucket(bucketName)
            case .head: return try await headBucket(bucketName)
            case .get:
                if target.query["location"] != nil { return try await bucketLocation(bucketName) }
                if target.query["uploads"] != nil { return try await listUploads(bucketName, target.query) }
                let known: Set = ["list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after", "marker",
                                  "encoding-type", "fetch-owner"]
                if let other = target.query.keys.first(where: { !known.contains($0) }) {
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
        // parts of uploads) is reachable by a key.
        _ = try await requireBucket(bucketName)
        let path = try objectPath(bucketName, key)
        if method == .get || method == .head, target.query["partNumber"] != nil || target.query["versionId"].map({ $0 != "null" }) == true {
            throw S3Error.notImplemented(target.query["partNumber"] != nil ? "GET by part number" : "object versions")
        }
        if method == .put, request.headers[.ifMatch] != nil || request.headers[.ifNoneMatch] != nil {
            throw S3Error.notImplemented("conditional writes (If-Match, If-None-Match on PUT)")
        }
        if request.headers.contains(where: { $0.name.canonicalName.lowercased().hasPrefix("x-amz-copy-source-if-") }) {
            throw S3Error.notImplemented("conditional copies (x-amz-copy-source-if-*)")
        }
        let signing: Set = ["AWSAccessKeyId", "Expires", "Signature", "versionId", "uploads", "uploadId", "partNumber",
                            "max-parts", "part-number-marker", "x-id"]
        let objectQueries = target.query.keys.filter { !$0.hasPrefix("X-Amz-") && !$0.hasPrefix("response-") && !signing.contains($0) }
        if let sub = objectQueries.first { throw S3Error.notImplemented("the object subresource ?\(sub)") }
        if target.query["uploads"] != nil {
            guard method == .post, case .signed = caller else { throw S3Error("MethodNotAllowed", .methodNotAllowed, "use POST ?uploads") }
            return try await createUpload(path, bucket: bucketName, key: key, request)
        }
        if let uploadID = target.query["uploadId"] {
            guard case .signed(let verified) = caller else { throw S3Error.accessDenied() }
            let upload = try await requireUpload(uploadID, path: path)
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
            return try await getObject(path, request, head: method == .head, bucket: bucketName)
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

    /// `BUCKET/KEY` as a store path; keys the store cannot hold are refused, never altered.
    func objectPath(_ bucket: String, _ key: String) throws -> BlobPath {
        guard key.utf8.count <= 1024 else { throw S3Error("KeyTooLongError", .badRequest, "Your key is too long.") }
        do {
            return try BlobPath(bucket + "/" + key)
        } catch {
            throw S3Error.invalidArgument("this gateway cannot store the key \"\(key)\": \(S3Error.from(error).message)")
        }
    }

    func requireBucket(_ name: String) async throws -> BucketRecord {
        guard let bucket = try await buckets.bucket(name) else { throw S3Error.noSuchBucket(name) }
        return bucket
    }

    // MARK: Buckets

    func listBuckets() async throws -> Response {
        let all = try await client.buckets()
        let body = XML.document("ListAllMyBucketsResult", [
            XML.element("Owner", children: [XML.element("ID", "blobstore"), XML.element("DisplayName", "blobstore")]),
            XML.element("Buckets", children: all.map { b in
                XML.element("Bucket", children: [XML.element("Name", b.name), XML.element("CreationDate", XML.timestamp(b.createdAtMilliseconds))])
            }),
        ])
        return xmlResponse(body)
    }

    func createBucket(_ name: String, _ request: Request) async throws -> Response {
        do {
            try BucketRecord.validate(name)
        } catch {
            throw S3Error("InvalidBucketName", .badRequest, "The specified bucket is not valid: \(name)")
        }
        let acl = request.headers[HTTPField.Name("x-amz-acl")!]
        guard acl == nil || acl == "private" || acl == "public-read" else {
            throw S3Error.notImplemented("the canned ACL \(acl ?? "")")
        }
        _ = try await client.createBucket(name, publicRead: acl == "public-read")
        await buckets.forget(name)
        var headers = HTTPFields()
        headers[.location] = "/" + name
        return Response(status: .ok, headers: headers)
    }

    func deleteBucket(_ name: String) async throws -> Response {
        do {
            try await client.deleteBucket(name)
        } catch let error as BlobError where error.code == .notFound {
            throw S3Error.noSuchBucket(name)
        }
        await buckets.forget(name)
        return Response(status: .noContent)
    }

    func headBucket(_ name: String) async throws -> Response {
        _ = try await requireBucket(name)
        var headers = HTTPFields()
        headers[HTTPField.Name("x-amz-bucket-region")!] = configuration.region
        return Response(status: .ok, headers: headers)
    }

    func bucketLocation(_ name: String) async throws -> Response {
        _ = try await requireBucket(name)
        let region = configuration.region == "us-east-1" ? "" : configuration.region
        return xmlResponse("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                           + XML.escape(region) + "</LocationConstraint>")
    }

    // MARK: Listing

    /// ListObjects v1 and v2: keys in byte order under `prefix`, with `delimiter` rolling keys up
    /// into common prefixes, at most `max-keys` (1,000) entries per page.
    func listObjects(_ bucket: String, _ query: [String: String]) async throws -> Response {
        _ = try await requireBucket(bucket)
        let v2 = query["list-type"] == "2"
        let prefix = query["prefix"] ?? ""
        let delimiter = query["delimiter"].flatMap { $0.isEmpty ? nil : $0 }
        guard let maxKeys = Int(query["max-keys"] ?? "1000"), maxKeys >= 0 else {
            throw S3Error.invalidArgument("max-keys must be a non-negative integer")
        }
        let limit = min(maxKeys, 1000)
        let urlEncoded = query["encoding-type"] == "url"
        if let encoding = query["encoding-type"], encoding != "url" {
            throw S3Error.invalidArgument("Invalid Encoding Method specified in Request")
        }
        var start: String?
        if v2 {
            if let token = query["continuation-token"] {
                guard let data = Data(base64Encoded: token), let text = String(data: data, encoding: .utf8) else {
                    throw S3Error.invalidArgument("The continuation token provided is incorrect")
                }
                start = text
            } else {
                start = query["start-after"]
            }
        } else {
            start = query["marker"]
        }
        let base = bucket + "/"
        var after: String? = start.map { base + $0 }
        var contents: [FileVersion] = []
        var prefixes: [String] = []
        var truncated = false
        var lastReturned: String?
        // A page that resumes from a common prefix (the last entry of the page before) must not
        // list it again.
        var resumedPrefix: String?
        if let delimiter, let start, start.hasPrefix(prefix), start.hasSuffix(delimiter),
           start.dropFirst(prefix.count).range(of: delimiter)?.upperBound == start.endIndex {
            resumedPrefix = start
        }
        scan: while true {
            let page = try await client.list(prefix: base + prefix, after: after, limit: 1000)
            for file in page.files {
                let key = String(file.path.value.dropFirst(base.count))
                if let delimiter, let range = key.dropFirst(prefix.count).range(of: delimiter) {
                    let common = String(key[..<range.upperBound])
                    if prefixes.last != common && resumedPrefix != common {
                        if contents.count + prefixes.count == limit {
                            truncated = true
                            break scan
                        }
                        prefixes.append(common)
                        lastReturned = common
                    }
                    // Skip the rest of this common prefix in one step; always past this key, so
                    // a key that sorts after the skip mark (it holds U+10FFFF) cannot stall the scan.
                    let skip = base + common + "\u{10FFFF}"
                    after = Array(skip.utf8).lexicographicallyPrecedes(Array(file.path.value.utf8)) ? file.path.value : skip
                    continue scan
                }
                if contents.count + prefixes.count == limit {
                    truncated = true
                    break scan
                }
                contents.append(file)
                lastReturned = key
                after = file.path.value
            }
            if page.next == nil { break }
        }
        if limit == 0 { truncated = false }
        let encode: (String) -> String = { urlEncoded ? SigV4.uriEncode($0, keepSlash: true) : $0 }
        var children = [XML.element("Name", bucket), XML.element("Prefix", encode(prefix))]
        if let delimiter { children.append(XML.element("Delimiter", encode(delimiter))) }
        children.append(XML.element("MaxKeys", String(maxKeys)))
        if urlEncoded { children.append(XML.element("EncodingType", "url")) }
        children.append(XML.element("IsTruncated", truncated ? "true" : "false"))
        if v2 {
            children.append(XML.element("KeyCount", String(contents.count + prefixes.count)))
            if let token = query["continuation-token"] { children.append(XML.element("ContinuationToken", token)) }
            if let startAfter = query["start-after"] { children.append(XML.element("StartAfter", encode(startAfter))) }
            if truncated, let lastReturned {
                children.append(XML.element("NextContinuationToken", Data(lastReturned.utf8).base64EncodedString()))
            }
        } else {
            children.append(XML.element("Marker", encode(query["marker"] ?? "")))
            if truncated, let lastReturned, delimiter != nil { children.append(XML.element("NextMarker", encode(lastReturned))) }
        }
        for file in contents {
            children.append(XML.element("Contents", children: [
                XML.element("Key", encode(String(file.path.value.dropFirst(base.count)))),
                XML.element("LastModified", XML.timestamp(file.createdAtMilliseconds)),
                XML.element("ETag", "\"\(file.sha256)\""),
                XML.element("Size", String(file.size)),
                XML.element("StorageClass", "STANDARD"),
            ]))
        }
        for common in prefixes {
            children.append(XML.element("CommonPrefixes", children: [XML.element("Prefix", encode(common))]))
        }
        return xmlResponse(XML.document("ListBucketResult", children))
    }

    // MARK: Objects

    func headers(for file: FileVersion) -> HTTPFields {
        var headers = HTTPFields()
        headers[.eTag] = "\"\(file.sha256)\""
        headers[.lastModified] = HTTPDate.format(file.createdAtMilliseconds)
        headers[.contentType] = file.contentType.isEmpty ? "application/octet-stream" : file.contentType
        headers[.acceptRanges] = "bytes"
        for (name, value) in file.metadata ?? [:] {
            if let field = HTTPField.Name("x-amz-meta-" + name) { headers[field] = value }
        }
        return headers
    }

    /// The request's `x-amz-meta-*` headers (names lowercased, without the prefix); nil when none.
    /// S3 allows 2 KiB in all.
    static func userMetadata(_ request: Request) throws -> [String: String]? {
        var out: [String: String] = [:]
        for field in request.headers {
            let name = field.name.canonicalName.lowercased()
            guard name.hasPrefix("x-amz-meta-") else { continue }
            let key = String(name.dropFirst("x-amz-meta-".count))
            out[key] = out[key].map { $0 + "," + field.value } ?? field.value
        }
        guard !out.isEmpty else { return nil }
        guard out.reduce(0, { $0 + $1.key.utf8.count + $1.value.utf8.count }) <= ManifestCommit.maxMetadataByteCount else {
            throw S3Error("MetadataTooLarge", .badRequest, "Your metadata headers exceed the maximum allowed metadata size (2 KiB).")
        }
        return out
    }

    /// GET and HEAD: conditional requests (RFC 9110 order), single ranges (`N-M`, `N-`, `-N`),
    /// 206 with Content-Range, 416 with `bytes */SIZE`. The body streams with a bounded
    /// read-ahead, so a reader that stops early costs a few chunks.
    func getObject(_ path: BlobPath, _ request: Request, head: Bool, bucket: String) async throws -> Response {
        // One master round trip where it can be: the plan of the bytes asked for carries the
        // file's facts too. A suffix range, If-Range or HEAD needs the facts first (stat).
        var plan: ReadPlan?
        let file: FileVersion
        do {
            let rangeText = request.headers[.range]
            if !head, request.headers[HTTPField.Name("If-Range")!] == nil,
               let (start, last) = rangeText.map(Self.explicitStart) ?? (0, nil) {
                do {
                    plan = try await client.readPlan(path, offset: start, length: last.map { $0 - start + 1 })
                } catch let error as BlobError where error.code == .invalidArgument {
                    plan = nil  // starts past the end: the stat below answers 416
                }
            }
            if let planned = plan?.file {
                file = planned
            } else {
                file = try await client.stat(path)
            }
        } catch let error as BlobError where error.code == .notFound {
            _ = try await requireBucket(bucket)
            throw S3Error.noSuchKey()
        }
        var headers = headers(for: file)
        let etag = "\"\(file.sha256)\""
        let modifiedSeconds = file.createdAtMilliseconds / 1000
        if let ifMatch = request.headers[.ifMatch], !Self.etagMatches(ifMatch, etag, weak: false) {
            throw S3Error("PreconditionFailed", .preconditionFailed, "At least one of the pre-conditions you specified did not hold")
        }
        if request.headers[.ifMatch] == nil, let since = request.headers[.ifUnmodifiedSince].flatMap(HTTPDate.parse),
           modifiedSeconds > since {
            throw S3Error("PreconditionFailed", .preconditionFailed, "At least one of the pre-conditions you specified did not hold")
        }
        if let ifNoneMatch = request.headers[.ifNoneMatch] {
            if Self.etagMatches(ifNoneMatch, etag) { return Response(status: .notModified, headers: headers) }
        } else if let since = request.headers[.ifModifiedSince].flatMap(HTTPDate.parse), modifiedSeconds <= since {
            return Response(status: .notModified, headers: headers)
        }
        var range: (Int64, Int64)?
        if let rangeText = request.headers[.range] {
            var honour = true
            if let ifRange = request.headers[HTTPField.Name("If-Range")!] {
                if ifRange.hasPrefix("\"") || ifRange.hasPrefix("W/") {
                    honour = ifRange == etag
                } else {
                    honour = HTTPDate.parse(ifRange).map { modifiedSeconds == $0 } ?? false
                }
            }
            if honour, let parsed = try Self.parseRange(rangeText, size: file.size) { range = parsed }
        }
        let offset = range?.0 ?? 0
        let end = range.map { $0.1 + 1 } ?? file.size
        headers[.contentLength] = String(end - offset)
        var status = HTTPResponse.Status.ok
        if let range {
            status = .partialContent
            headers[.contentRange] = "bytes \(range.0)-\(range.1)/\(file.size)"
        }
        if head || end == offset {
            return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer()))
        }
        let covers = plan.map { p in
            p.chunks.first.map { $0.chunk.offset <= offset } == true && p.chunks.last.map { $0.chunk.offset + $0.chunk.length >= end } == true
        } ?? false
        let readPlan: ReadPlan
        if covers, let plan {
            readPlan = plan
        } else {
            readPlan = try await client.readPlan(path, offset: offset, length: end - offset)
        }
        guard readPlan.file.sha256 == file.sha256, readPlan.file.version == file.version else {
            throw S3Error("ServiceUnavailable", .serviceUnavailable, "the object changed while being read; retry")
        }
        let client = self.client
        let whole = range == nil
        let body = ResponseBody(contentLength: Int(end - offset)) { writer in
            _ = try await client.stream(readPlan, of: path, offset: offset, end: end, readAhead: 4, checkWholeFile: whole) { slice in
                try await writer.write(ByteBuffer(bytes: slice))
            }
            try await writer.finish(nil)
        }
        return Response(status: status, headers: headers, body: body)
    }

    /// `bytes=N-M` or `bytes=N-` as (N, M?); nil for anything else (suffix, several ranges).
    static func explicitStart(_ text: String) -> (Int64, Int64?)? {
        guard text.hasPrefix("bytes="), !text.contains(",") else { return nil }
        let spec = text.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-"), let start = Int64(spec[..<dash]), start >= 0 else { return nil }
        let last = spec[spec.index(after: dash)...]
        if last.isEmpty { return (start, nil) }
        guard let end = Int64(last), end >= start, end < Int64.max / 2 else { return (start, nil) }
        return (start, end)
    }

    /// If-None-Match compares weakly (a `W/` tag matches); If-Match strongly.
    static func etagMatches(_ header: String, _ etag: String, weak: Bool = true) -> Bool {
        header.split(separator: ",").contains { candidate in
            let c = candidate.trimmingCharacters(in: .whitespaces)
            return c == "*" || c == etag || (weak && c == "W/" + etag)
        }
    }

    /// One byte range, resolved against the size; nil to ignore the header (not bytes, or
    /// several ranges: the whole object is sent); throws InvalidRange when unsatisfiable.
    static func parseRange(_ text: String, size: Int64) throws -> (Int64, Int64)? {
        guard text.hasPrefix("bytes=") else { return nil }
        let spec = text.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash], last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            guard let count = Int64(last), count > 0 else {
                if Int64(last) == 0 { throw S3Error.invalidRange(size: size) }
                return nil
            }
            // A suffix of an empty object is satisfiable and empty (RFC 9110 §14.1.1): send it whole.
            guard size > 0 else { return nil }
            return (max(0, size - count), size - 1)
        }
        guard let start = Int64(first), start >= 0 else { return nil }
        let end: Int64
        if last.isEmpty {
            end = size - 1
        } else {
            guard let e = Int64(last), e >= start else { return nil }
            end = min(e, size - 1)  // no arithmetic on the client's number: it may be Int64.max
        }
        guard start < size else { throw S3Error.invalidRange(size: size) }
        return (start, end)
    }

    func putObject(_ path: BlobPath, _ request: Request, _ verified: SigV4.Verified, bucket: String) async throws -> Response {
        _ = try await requireBucket(bucket)
        let metadata = try Self.userMetadata(request)
        let spool = configuration.spoolDirectory + "/put-\(UUID().uuidString)"
        defer { unlink(spool) }
        let received = try await spoolBody(request, verified, to: spool)
        if let md5 = request.headers[HTTPField.Name("Content-MD5")!] {
            guard Data(base64Encoded: md5).map({ [UInt8]($0) }) == received.md5 else {
                throw S3Error("BadDigest", .badRequest, "The Content-MD5 you specified did not match what we received.")
            }
        }
        let contentType = request.headers[.contentType] ?? ContentTypes.forPath(path.value)
        let result = try await client.put(.file(spool), to: path, options: PutOptions(contentType: contentType, metadata: metadata))
        var headers = HTTPFields()
        headers[.eTag] = "\"\(result.file.sha256)\""
        return Response(status: .ok, headers: headers)
    }

    struct Received {
        var byteCount: Int64
        var md5: [UInt8]
    }

    /// Writes the body (decoded from aws-chunked when so sent) to a spool file, checking its
    /// SHA-256 against the signed one and its length against the declared one.
    func spoolBody(_ request: Request, _ verified: SigV4.Verified, to spool: String) async throws -> Received {
        guard FileManager.default.createFile(atPath: spool, contents: nil, attributes: [.posixPermissions: 0o600]),
              let handle = FileHandle(forWritingAtPath: spool) else {
            throw S3Error("InternalError", .internalServerError, "cannot create a spool file in \(configuration.spoolDirectory)")
        }
        defer { try? handle.close() }
        var sha = SHA256()
        var md5 = Insecure.MD5()
        var count: Int64 = 0
        let chunked = request.headers[.contentEncoding]?.contains("aws-chunked") == true
            || verified.payload == .streamingUnsigned || { if case .streamingSigned = verified.payload { return true } else { return false } }()
        var decoder: AwsChunkedDecoder?
        if chunked {
            if case .streamingSigned(let seed) = verified.payload {
                decoder = AwsChunkedDecoder(seedSignature: seed, signing: (verified.signingKey, verified.amzDate, verified.scope))
            } else {
                decoder = AwsChunkedDecoder(seedSignature: "", signing: nil)
            }
        }
        func write(_ piece: UnsafeRawBufferPointer) throws {
            count += Int64(piece.count)
            guard count <= Self.maxObjectByteCount else {
                throw S3Error("EntityTooLarge", .badRequest, "Your proposed upload exceeds the maximum allowed size (5 GiB per PUT).")
            }
            sha.update(bufferPointer: piece)
            md5.update(bufferPointer: piece)
            try handle.write(contentsOf: Data(piece))
        }
        for try await buffer in request.body {
            try buffer.withUnsafeReadableBytes { raw in
                if decoder != nil {
                    try decoder!.feed(raw, emit: write)
                } else {
                    try write(raw)
                }
            }
        }
        if let decoder, !decoder.isDone { throw AwsChunkedDecoder.malformed("it ended before the final chunk") }
        let declared = chunked ? request.headers[HTTPField.Name("x-amz-decoded-content-length")!].flatMap { Int64($0) }
                               : request.headers[.contentLength].flatMap { Int64($0) }
        if let declared, declared != count {
            throw S3Error("IncompleteBody", .badRequest, "You did not provide the number of bytes specified by the Content-Length HTTP header.")
        }
        if case .sha256(let expected) = verified.payload {
            guard SigV4.hex(sha.finalize()) == expected else {
                throw S3Error("XAmzContentSHA256Mismatch", .badRequest, "The provided 'x-amz-content-sha256' header does not match what was computed.")
            }
        }
        return Received(byteCount: count, md5: Array(md5.finalize()))
    }

    /// Server-side copy: the new object shares the source's chunks.
    func copyVersion(from source: String, to path: BlobPath, contentType: String? = nil,
                     metadata: [String: String]? = nil) async throws -> FileVersion {
        let decoded = SigV4.percentDecode(source.split(separator: "?").first.map(String.init) ?? source)
        let trimmed = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : decoded
        guard let slash = trimmed.firstIndex(of: "/") else { throw S3Error.invalidArgument("x-amz-copy-source must be BUCKET/KEY") }
        let sourceBucket = String(trimmed[..<slash])
        _ = try await requireBucket(sourceBucket)
        let sourcePath = try objectPath(sourceBucket, String(trimmed[trimmed.index(after: slash)...]))
        do {
            return try await client.copy(sourcePath, to: path, contentType: contentType, metadata: metadata)
        } catch let error as BlobError where error.code == .notFound {
            throw S3Error.noSuchKey()
        }
    }

    func copyObject(from source: String, to path: BlobPath, _ request: Request) async throws -> Response {
        let directive = request.headers[HTTPField.Name("x-amz-metadata-directive")!] ?? "COPY"
        guard directive == "COPY" || directive == "REPLACE" else { throw S3Error.invalidArgument("Unknown metadata directive.") }
        let replace = directive == "REPLACE"
        let version = try await copyVersion(from: source, to: path, contentType: replace ? request.headers[.contentType] : nil,
                                            metadata: replace ? (try Self.userMetadata(request) ?? [:]) : nil)
        return xmlResponse(XML.document("CopyObjectResult", [
            XML.element("LastModified", XML.timestamp(version.createdAtMilliseconds)),
            XML.element("ETag", "\"\(version.sha256)\""),
        ]))
    }

    func deleteObject(_ path: BlobPath, bucket: String) async throws -> Response {
        _ = try await requireBucket(bucket)
        do {
            _ = try await client.delete(path)
        } catch let error as BlobError where error.code == .notFound {
            // S3 answers 204 for a key that is not there.
        }
        return Response(status: .noContent)
    }

    /// DeleteObjects: up to 1,000 keys; each result is reported (only errors when Quiet).
    func deleteObjects(_ bucket: String, _ request: Request) async throws -> Response {
        _ = try await requireBucket(bucket)
        let body = String(buffer: try await request.body.collect(upTo: 2 << 20))
        let keys = Self.elements("Key", in: body).map(XML.unescape)
        guard !keys.isEmpty, keys.count <= 1000 else {
            throw S3Error("MalformedXML", .badRequest, "The XML you provided was not well-formed or did not validate against our published schema (1 to 1000 keys).")
        }
        let quiet = Self.elements("Quiet", in: body).first?.lowercased() == "true"
        var children: [String] = []
        for key in keys {
            do {
                _ = try await client.delete(try objectPath(bucket, key))
                if !quiet { children.append(XML.element("Deleted", children: [XML.element("Key", key)])) }
            } catch let error as BlobError where error.code == .notFound {
                if !quiet { children.append(XML.element("Deleted", children: [XML.element("Key", key)])) }
            } catch {
                let s3 = S3Error.from(error)
                children.append(XML.element("Error", children: [XML.element("Key", key), XML.element("Code", s3.code),
                                                                XML.element("Message", s3.message)]))
            }
        }
        return xmlResponse(XML.document("DeleteResult", children))
    }

    /// The text of every `<tag>…</tag>` in document order (no nesting of the same tag).
    static func elements(_ tag: String, in xml: String) -> [String] {
        var out: [String] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<\(tag)>"), let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex) {
            out.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return out
    }

    // MARK: Multipart uploads

    func requireUpload(_ id: String, path: BlobPath) async throws -> MultipartUpload {
        let upload: MultipartUpload
        do {
            upload = try await client.upload(id)
        } catch let error as BlobError where error.code == .notFound || error.code == .invalidArgument {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.")
        }
        guard upload.path == path else {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist for this key.")
        }
        return upload
    }

    func createUpload(_ path: BlobPath, bucket: String, key: String, _ request: Request) async throws -> Response {
        _ = try await requireBucket(bucket)
        let metadata = try Self.userMetadata(request)
        let contentType = request.headers[.contentType] ?? ContentTypes.forPath(path.value)
        let upload = try await client.createUpload(to: path, contentType: contentType, metadata: metadata)
        return xmlResponse(XML.document("InitiateMultipartUploadResult", [
            XML.element("Bucket", bucket), XML.element("Key", key), XML.element("UploadId", upload.id),
        ]))
    }

    /// A part is stored like any file (chunked, deduplicated, compressed) at the upload's part path.
    func uploadPart(_ upload: MultipartUpload, number: Int, _ request: Request, _ verified: SigV4.Verified) async throws -> Response {
        let spool = configuration.spoolDirectory + "/part-\(UUID().uuidString)"
        defer { unlink(spool) }
        let received = try await spoolBody(request, verified, to: spool)
        if let md5 = request.headers[HTTPField.Name("Content-MD5")!] {
            guard Data(base64Encoded: md5).map({ [UInt8]($0) }) == received.md5 else {
                throw S3Error("BadDigest", .badRequest, "The Content-MD5 you specified did not match what we received.")
            }
        }
        let result: PutResult
        do {
            result = try await client.put(.file(spool), to: try upload.partPath(number),
                                          options: PutOptions(contentType: "application/octet-stream"))
        } catch let error as BlobError where error.reason == "upload.notFound" {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist: it was completed or aborted.")
        }
        var headers = HTTPFields()
        headers[.eTag] = "\"\(result.file.sha256)\""
        return Response(status: .ok, headers: headers)
    }

    func uploadPartCopy(_ upload: MultipartUpload, number: Int, from source: String, _ request: Request) async throws -> Response {
        if request.headers[HTTPField.Name("x-amz-copy-source-range")!] != nil {
            throw S3Error.notImplemented("x-amz-copy-source-range")
        }
        let version = try await copyVersion(from: source, to: try upload.partPath(number))
        return xmlResponse(XML.document("CopyPartResult", [
            XML.element("LastModified", XML.timestamp(version.createdAtMilliseconds)),
            XML.element("ETag", "\"\(version.sha256)\""),
        ]))
    }

    func listParts(_ upload: MultipartUpload, bucket: String, key: String, _ query: [String: String]) async throws -> Response {
        let maxParts = min(1000, Int(query["max-parts"] ?? "1000") ?? 1000)
        let marker = Int(query["part-number-marker"] ?? "0") ?? 0
        var parts: [(Int, FileVersion)] = []
        var after: String? = marker > 0 ? try upload.partPath(marker).value : nil
        var truncated = false
        outer: while true {
            let page = try await client.list(prefix: upload.partsPrefix, after: after, limit: 1000)
            for file in page.files {
                if parts.count == maxParts {
                    truncated = maxParts > 0
                    break outer
                }
                if let number = Int(file.path.value.dropFirst(upload.partsPrefix.count)) { parts.append((number, file)) }
                after = file.path.value
            }
            if page.next == nil { break }
        }
        var children = [XML.element("Bucket", bucket), XML.element("Key", key), XML.element("UploadId", upload.id),
                         XML.element("PartNumberMarker", String(marker)), XML.element("MaxParts", String(maxParts)),
                         XML.element("IsTruncated", truncated ? "true" : "false"), XML.element("StorageClass", "STANDARD")]
        if truncated, let last = parts.last { children.append(XML.element("NextPartNumberMarker", String(last.0))) }
        for (number, file) in parts {
            children.append(XML.element("Part", children: [
                XML.element("PartNumber", String(number)), XML.element("LastModified", XML.timestamp(file.createdAtMilliseconds)),
                XML.element("ETag", "\"\(file.sha256)\""), XML.element("Size", String(file.size)),
            ]))
        }
        return xmlResponse(XML.document("ListPartsResult", children))
    }

    /// Completion: the parts' manifests in order become the object's; no bytes are copied.
    func completeUpload(_ upload: MultipartUpload, bucket: String, key: String, _ request: Request) async throws -> Response {
        let body = try await request.body.collect(upTo: 4 << 20)
        let parts = try Self.parseCompletion(String(buffer: body))
        guard !parts.isEmpty else { throw S3Error("MalformedXML", .badRequest, "The XML you provided was not well-formed or did not validate against our published schema.") }
        for i in 1..<max(1, parts.count) where parts[i].number <= parts[i - 1].number {
            throw S3Error("InvalidPartOrder", .badRequest, "The list of parts was not in ascending order. Parts must be ordered by part number.")
        }
        let version: FileVersion
        do {
            version = try await client.completeUpload(upload.id, parts: parts)
        } catch let error as BlobError where error.reason == "upload.invalidPart" {
            throw S3Error("InvalidPart", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.partTooSmall" {
            throw S3Error("EntityTooSmall", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.partOrder" {
            throw S3Error("InvalidPartOrder", .badRequest, error.message)
        } catch let error as BlobError where error.reason == "upload.notFound" {
            throw S3Error("NoSuchUpload", .notFound, "The specified upload does not exist: it may have been completed or aborted.")
        }
        return xmlResponse(XML.document("CompleteMultipartUploadResult", [
            XML.element("Location", "/\(bucket)/\(key)"), XML.element("Bucket", bucket), XML.element("Key", key),
            XML.element("ETag", "\"\(version.sha256)\""),
        ]))
    }

    /// `<Part><PartNumber>N</PartNumber><ETag>"…"</ETag></Part>` entries, in document order.
    static func parseCompletion(_ xml: String) throws -> [CompletedPart] {
        var parts: [CompletedPart] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<Part>") {
            guard let close = rest.range(of: "</Part>", range: open.upperBound..<rest.endIndex) else {
                throw S3Error("MalformedXML", .badRequest, "The XML you provided was not well-formed or did not validate against our published schema.")
            }
            let block = rest[open.upperBound..<close.lowerBound]
            func value(_ tag: String) -> String? {
                guard let a = block.range(of: "<\(tag)>"), let b = block.range(of: "</\(tag)>", range: a.upperBound..<block.endIndex) else { return nil }
                return String(block[a.upperBound..<b.lowerBound])
            }
            guard let number = value("PartNumber").flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) }),
                  let etag = value("ETag") else {
                throw S3Error("MalformedXML", .badRequest, "Each Part needs a PartNumber and an ETag.")
            }
            let digest = XML.unescape(etag).replacingOccurrences(of: "\"", with: "").trimmingCharacters(in: .whitespaces)
            parts.append(CompletedPart(number: number, sha256: digest))
            rest = rest[close.upperBound...]
        }
        return parts
    }

    func listUploads(_ bucket: String, _ query: [String: String]) async throws -> Response {
        _ = try await requireBucket(bucket)
        let prefix = query["prefix"] ?? ""
        let uploads = try await client.uploads(prefix: bucket + "/" + prefix, limit: 1000)
        var children = [XML.element("Bucket", bucket), XML.element("Prefix", prefix), XML.element("MaxUploads", "1000"),
                        XML.element("IsTruncated", "false")]
        for u in uploads {
            children.append(XML.element("Upload", children: [
                XML.element("Key", String(u.path.value.dropFirst(bucket.count + 1))), XML.element("UploadId", u.id),
                XML.element("Initiated", XML.timestamp(u.createdAtMilliseconds)), XML.element("StorageClass", "STANDARD"),
            ]))
        }
        return xmlResponse(XML.document("ListMultipartUploadsResult", children))
    }

    func xmlResponse(_ body: String, status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/xml"
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: body)))
    }
}
