import BlobS3Wire
import BlobClient
import BlobCore
import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// CopyObject: the source named by `x-amz-copy-source`, its conditions, and the new version (no chunk bytes move).
extension S3Handler {
    /// The object `x-amz-copy-source` names (`BUCKET/KEY`, URL-encoded, optional leading '/').
    func copySourcePath(_ source: String) async throws -> BlobPath {
        let decoded = SigV4.percentDecode(source.split(separator: "?").first.map(String.init) ?? source)
        let trimmed = decoded.hasPrefix("/") ? String(decoded.dropFirst()) : decoded
        guard let slash = trimmed.firstIndex(of: "/") else {
            throw S3Error.invalidArgument("x-amz-copy-source must be BUCKET/KEY")
        }
        let sourceBucket = String(trimmed[..<slash])
        _ = try await requireBucket(sourceBucket)
        return try objectPath(sourceBucket, String(trimmed[trimmed.index(after: slash)...]))
    }

    /// The copy source's current version, checked against `x-amz-copy-source-if-*`.
    func copySource(_ sourcePath: BlobPath, _ request: Request) async throws -> FileVersion {
        let file: FileVersion
        do {
            file = try await client.stat(sourcePath)
        } catch let error as BlobError where error.code == .notFound {
            throw S3Error.noSuchKey()
        }
        let etag = Self.etag(file)
        let modifiedSeconds = file.createdAtMilliseconds / 1000
        let header: (String) -> String? = { request.headers[HTTPField.Name("x-amz-copy-source-" + $0)!] }
        let failed = S3Error(
            "PreconditionFailed", .preconditionFailed, "At least one of the pre-conditions you specified did not hold")
        if let ifMatch = header("if-match") {
            guard S3Headers.etagMatches(ifMatch, etag, weak: false) else { throw failed }
        } else if let since = header("if-unmodified-since").flatMap(HTTPDate.parse), modifiedSeconds > since {
            throw failed
        }
        if let ifNoneMatch = header("if-none-match") {
            if S3Headers.etagMatches(ifNoneMatch, etag) { throw failed }
        } else if let since = header("if-modified-since").flatMap(HTTPDate.parse), modifiedSeconds <= since {
            throw failed
        }
        return file
    }

    /// Server-side copy of that version: the new object shares the source's chunks. With
    /// `metadata` nil the source's metadata and attributes are kept.
    func copyVersion(
        _ source: FileVersion, to path: BlobPath, contentType: String? = nil,
        metadata: [String: String]? = nil, bucket: String? = nil
    ) async throws -> FileVersion {
        do {
            let copied = try await client.copy(
                source.path, to: path, contentType: contentType, metadata: metadata, bucket: bucket)
            guard copied.sha256 == source.sha256 else {
                throw S3Error(
                    "ServiceUnavailable", .serviceUnavailable, "the source object changed during the copy; retry")
            }
            return copied
        } catch let error as BlobError where error.code == .notFound {
            throw S3Error.noSuchKey()
        }
    }

    func copyObject(from source: String, to path: BlobPath, _ request: Request) async throws -> Response {
        let directive = request.headers[HTTPField.Name("x-amz-metadata-directive")!] ?? "COPY"
        guard directive == "COPY" || directive == "REPLACE" else {
            throw S3Error.invalidArgument("Unknown metadata directive.")
        }
        let replace = directive == "REPLACE"
        let sourcePath = try await copySourcePath(source)
        if sourcePath == path, !replace {
            throw S3Error(
                "InvalidRequest", .badRequest,
                "This copy request is illegal because it is trying to copy an object to itself "
                    + "without changing the object's metadata, storage class, website redirect location "
                    + "or encryption attributes."
            )
        }
        let file = try await copySource(sourcePath, request)
        var metadata = file.metadata.map { $0.filter { $0.key != ObjectAttribute.upload } }
        if replace {
            // New user metadata and stored headers; the content's ETag and checksums stay.
            var replaced = try Self.userMetadata(request) ?? [:]
            for (name, value) in file.metadata ?? [:]
            where name == ObjectAttribute.etag || name.hasPrefix(":checksum-") {
                replaced[name] = value
            }
            metadata = replaced
        }
        let version = try await copyVersion(
            file, to: path, contentType: replace ? request.headers[.contentType] : nil, metadata: metadata,
            bucket: path.value.split(separator: "/", maxSplits: 1).first.map(String.init))
        return xmlResponse(
            XML.document(
                "CopyObjectResult",
                [
                    XML.element("LastModified", XML.timestamp(version.createdAtMilliseconds)),
                    XML.element("ETag", Self.etag(version)),
                ]))
    }
}
