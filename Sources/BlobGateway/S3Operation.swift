import BlobServerSupport
import HTTPTypes

/// The S3 operation a request asks for, by AWS's names (`GetObject`, `UploadPart` …), for
/// metrics: a small fixed set, whatever the keys and queries.
enum S3Operation {
    static func name(method: HTTPRequest.Method, target: S3Handler.Target, headers: HTTPFields) -> String {
        let query = target.query
        guard target.bucket != nil else { return method == .get ? "ListBuckets" : "Unknown" }
        if method == .options { return "PreflightCORS" }
        guard target.key != nil else {
            switch method {
            case .put:
                if query["acl"] != nil { return "PutBucketAcl" }
                if query["lifecycle"] != nil { return "PutBucketLifecycle" }
                return "CreateBucket"
            case .delete: return query["lifecycle"] != nil ? "DeleteBucketLifecycle" : "DeleteBucket"
            case .head: return "HeadBucket"
            case .get:
                if query["location"] != nil { return "GetBucketLocation" }
                if query["uploads"] != nil { return "ListMultipartUploads" }
                if query["acl"] != nil { return "GetBucketAcl" }
                if query["lifecycle"] != nil { return "GetBucketLifecycle" }
                return query["list-type"] == "2" ? "ListObjectsV2" : "ListObjects"
            case .post:
                if query["delete"] != nil { return "DeleteObjects" }
                return headers[.contentType]?.lowercased().hasPrefix("multipart/form-data") == true
                    ? "PostObject" : "Unknown"
            default: return "Unknown"
            }
        }
        switch method {
        case .get:
            if query["acl"] != nil { return "GetObjectAcl" }
            if query["attributes"] != nil { return "GetObjectAttributes" }
            if query["uploadId"] != nil { return "ListParts" }
            return "GetObject"
        case .head: return "HeadObject"
        case .put:
            if query["acl"] != nil { return "PutObjectAcl" }
            let copy = headers[HTTPField.Name("x-amz-copy-source")!] != nil
            if query["uploadId"] != nil { return copy ? "UploadPartCopy" : "UploadPart" }
            return copy ? "CopyObject" : "PutObject"
        case .post:
            if query["uploads"] != nil { return "CreateMultipartUpload" }
            if query["uploadId"] != nil { return "CompleteMultipartUpload" }
            return "Unknown"
        case .delete: return query["uploadId"] != nil ? "AbortMultipartUpload" : "DeleteObject"
        default: return "Unknown"
        }
    }
}

/// The gateway's S3 metrics: operations by name and answer code, and how long a GET waits for
/// its first byte of object data.
struct GatewayMetrics: Sendable {
    let metrics: ServerMetrics

    /// `code` is the S3 error code, or `OK`.
    func recordOperation(_ operation: String, code: String) {
        metrics.count("blob_s3_operations_total", [("operation", operation), ("code", code)])
    }

    func recordFirstByte(_ duration: Duration) {
        metrics.observe("blob_s3_get_first_byte_seconds", duration)
    }
}
