import BlobS3Wire
import BlobClient
import BlobCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Bucket operations and object listings.
extension S3Handler {
    // MARK: Buckets

    func listBuckets() async throws -> Response {
        let all = try await client.buckets()
        let body = XML.document(
            "ListAllMyBucketsResult",
            [
                Self.ownerElement,
                XML.element(
                    "Buckets",
                    children: all.map { b in
                        XML.element(
                            "Bucket",
                            children: [
                                XML.element("Name", b.name),
                                XML.element("CreationDate", XML.timestamp(b.createdAtMilliseconds)),
                            ])
                    }),
            ])
        return xmlResponse(body)
    }

    /// Buckets and objects belong to the cluster: every key acts for this one owner.
    static let ownerID = "blobstore"
    static var ownerElement: String {
        XML.element("Owner", children: [XML.element("ID", ownerID), XML.element("DisplayName", ownerID)])
    }

    /// GET ?acl of a bucket or an object: the owner's FULL_CONTROL, and READ for everyone when
    /// the bucket is public-read (objects take their bucket's access).
    func getACL(_ bucketName: String) async throws -> Response {
        let bucket = try await requireBucket(bucketName)
        let xsi = "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\""
        var grants = [
            "<Grant><Grantee \(xsi) xsi:type=\"CanonicalUser\">" + XML.element("ID", Self.ownerID)
                + XML.element("DisplayName", Self.ownerID) + "</Grantee>" + XML.element("Permission", "FULL_CONTROL")
                + "</Grant>"
        ]
        if bucket.publicRead {
            grants.append(
                "<Grant><Grantee \(xsi) xsi:type=\"Group\">"
                    + XML.element("URI", "http://acs.amazonaws.com/groups/global/AllUsers")
                    + "</Grantee>" + XML.element("Permission", "READ") + "</Grant>")
        }
        return xmlResponse(
            XML.document(
                "AccessControlPolicy",
                [Self.ownerElement, "<AccessControlList>" + grants.joined() + "</AccessControlList>"]))
    }

    /// PUT ?acl: a canned `x-amz-acl` (private or public-read) or an ACL document whose only
    /// other grant is READ for AllUsers. On a bucket it sets the bucket's access; on an object
    /// it is accepted when it asks for the access the object already has through its bucket.
    func putACL(_ bucketName: String, objectPath: BlobPath?, _ request: Request) async throws -> Response {
        let bucket = try await requireBucket(bucketName)
        let publicRead: Bool
        if let canned = request.headers[HTTPField.Name("x-amz-acl")!] {
            guard canned == "private" || canned == "public-read" else {
                throw S3Error.notImplemented("the canned ACL \(canned)")
            }
            publicRead = canned == "public-read"
        } else {
            let body = String(buffer: try await request.body.collect(upTo: 64 << 10))
            guard body.contains("<AccessControlPolicy") else {
                throw S3Error(
                    "MalformedACLError", .badRequest,
                    "The XML you provided was not well-formed or did not validate against our published schema.")
            }
            let permissions = XML.elements("Permission", in: body)
            let allUsers = body.contains("http://acs.amazonaws.com/groups/global/AllUsers")
            guard permissions.allSatisfy({ $0 == "FULL_CONTROL" || ($0 == "READ" && allUsers) }),
                permissions.filter({ $0 == "FULL_CONTROL" }).count <= 1
            else {
                throw S3Error.notImplemented("ACL grants other than the owner's FULL_CONTROL and READ for AllUsers")
            }
            publicRead = allUsers && permissions.contains("READ")
        }
        if let objectPath {
            do {
                _ = try await client.stat(objectPath)
            } catch let error as BlobError where error.code == .notFound {
                throw S3Error.noSuchKey()
            }
            guard publicRead == bucket.publicRead else {
                throw S3Error.notImplemented("an object ACL different from its bucket's (set the bucket's ACL instead)")
            }
            return Response(status: .ok)
        }
        if publicRead != bucket.publicRead {
            _ = try await client.setBucketAccess(bucketName, publicRead: publicRead)
            await buckets.forget(bucketName)
        }
        return Response(status: .ok)
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
        do {
            _ = try await client.createBucket(name, publicRead: acl == "public-read")
        } catch let error as BlobError where error.code == .alreadyExists {
            // Every access key belongs to the one account a store has: the bucket is the caller's.
            throw S3Error("BucketAlreadyOwnedByYou", .conflict, "The bucket \(name) already exists, and you own it")
        }
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
        return xmlResponse(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                + "<LocationConstraint xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
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
        // Keys always come in order, which any unordered listing may be; RGW refuses the
        // combination with a delimiter, and so do we.
        if query["allow-unordered"] == "true", delimiter != nil {
            throw S3Error.invalidArgument("allow-unordered cannot be combined with a delimiter")
        }
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
            start.dropFirst(prefix.count).range(of: delimiter)?.upperBound == start.endIndex
        {
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
                    after =
                        Array(skip.utf8).lexicographicallyPrecedes(Array(file.path.value.utf8)) ? file.path.value : skip
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
        // v1 echoes the prefix as sent (clients decode only v2's).
        var children = [XML.element("Name", bucket), XML.element("Prefix", v2 ? encode(prefix) : prefix)]
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
            if truncated, let lastReturned, delimiter != nil {
                children.append(XML.element("NextMarker", encode(lastReturned)))
            }
        }
        let withOwner = !v2 || query["fetch-owner"] == "true"
        for file in contents {
            var fields = [
                XML.element("Key", encode(String(file.path.value.dropFirst(base.count)))),
                XML.element("LastModified", XML.timestamp(file.createdAtMilliseconds)),
                XML.element("ETag", Self.etag(file)),
                XML.element("Size", String(file.size)),
                XML.element("StorageClass", "STANDARD"),
            ]
            if withOwner { fields.append(Self.ownerElement) }
            children.append(XML.element("Contents", children: fields))
        }
        for common in prefixes {
            children.append(XML.element("CommonPrefixes", children: [XML.element("Prefix", encode(common))]))
        }
        return xmlResponse(XML.document("ListBucketResult", children))
    }
}
