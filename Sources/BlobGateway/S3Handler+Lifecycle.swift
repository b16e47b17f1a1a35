import BlobS3Wire
import BlobClient
import BlobCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Bucket lifecycle configuration (`?lifecycle`): expiration of current objects after some days
/// and aborting of old multipart uploads, applied by the master (`--lifecycle-interval`).
extension S3Handler {
    func putLifecycle(_ bucketName: String, _ request: Request) async throws -> Response {
        _ = try await requireBucket(bucketName)
        let document = String(buffer: try await request.body.collect(upTo: 1 << 20))
        let rules = try Self.lifecycleRules(document)
        _ = try await client.setBucketLifecycle(bucketName, BucketLifecycle(rules: rules, document: document))
        await buckets.forget(bucketName)
        return Response(status: .ok)
    }

    func getLifecycle(_ bucketName: String) async throws -> Response {
        guard let lifecycle = try await requireBucket(bucketName).lifecycle else {
            throw S3Error("NoSuchLifecycleConfiguration", .notFound, "The lifecycle configuration does not exist.")
        }
        return xmlResponse(lifecycle.document)
    }

    func deleteLifecycle(_ bucketName: String) async throws -> Response {
        _ = try await requireBucket(bucketName)
        _ = try await client.setBucketLifecycle(bucketName, nil)
        await buckets.forget(bucketName)
        return Response(status: .noContent)
    }

    /// The rules of a `LifecycleConfiguration` document. Supported: ID, Status, a prefix (bare
    /// or in Filter), Expiration by Days, AbortIncompleteMultipartUpload; ExpiredObjectDeleteMarker
    /// and NoncurrentVersionExpiration are accepted and have nothing to act on (no versions are
    /// exposed). Anything else (dates, tags, transitions) is NotImplemented, never ignored.
    static func lifecycleRules(_ document: String) throws -> [LifecycleRule] {
        let malformed = S3Error(
            "MalformedXML", .badRequest,
            "The XML you provided was not well-formed or did not validate against our published schema.")
        guard document.contains("<LifecycleConfiguration") else { throw malformed }
        let blocks = XML.elements("Rule", in: document)
        guard !blocks.isEmpty, blocks.count <= BucketLifecycle.maxRules else { throw malformed }
        var rules: [LifecycleRule] = []
        var ids = Set<String>()
        for block in blocks {
            for unsupported in [
                "Transition", "NoncurrentVersionTransition", "Tag", "And", "ObjectSizeGreaterThan",
                "ObjectSizeLessThan", "Date",
            ]
            where block.contains("<\(unsupported)>") {
                throw S3Error.notImplemented("the lifecycle element \(unsupported)")
            }
            let id = XML.elements("ID", in: block).first.map(XML.unescape)
            if let id {
                guard id.count <= 255, ids.insert(id).inserted else {
                    throw S3Error.invalidArgument("Rule ID must be unique and at most 255 characters")
                }
            }
            guard let status = XML.elements("Status", in: block).first, status == "Enabled" || status == "Disabled"
            else {
                throw malformed
            }
            let prefix = XML.unescape(XML.elements("Prefix", in: block).first ?? "")
            var expirationDays: Int?
            var hasAction = false
            if let expiration = XML.elements("Expiration", in: block).first {
                if let days = XML.elements("Days", in: expiration).first {
                    guard let value = Int(days.trimmingCharacters(in: .whitespaces)),
                        (1...LifecycleRule.maxDays).contains(value)
                    else {
                        throw S3Error.invalidArgument("'Days' for Expiration action must be a positive integer")
                    }
                    expirationDays = value
                } else if XML.elements("ExpiredObjectDeleteMarker", in: expiration).isEmpty {
                    throw malformed
                }
                hasAction = true
            }
            var abortDays: Int?
            if let abort = XML.elements("AbortIncompleteMultipartUpload", in: block).first {
                guard
                    let days = XML.elements("DaysAfterInitiation", in: abort).first.flatMap({
                        Int($0.trimmingCharacters(in: .whitespaces))
                    }),
                    (1...LifecycleRule.maxDays).contains(days)
                else {
                    throw S3Error.invalidArgument(
                        "'DaysAfterInitiation' for AbortIncompleteMultipartUpload action must be a positive integer")
                }
                abortDays = days
                hasAction = true
            }
            if block.contains("<NoncurrentVersionExpiration>") { hasAction = true }
            guard hasAction else { throw malformed }
            rules.append(
                LifecycleRule(
                    id: id, prefix: prefix, enabled: status == "Enabled", expirationDays: expirationDays,
                    abortUploadsAfterDays: abortDays))
        }
        return rules
    }
}
