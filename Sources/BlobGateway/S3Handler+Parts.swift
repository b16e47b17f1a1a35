import BlobS3Wire
import BlobClient
import BlobCore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// Reads by part number and GetObjectAttributes: both use the parts the master keeps for a
/// version a multipart upload made (their offsets, sizes, ETags and checksums).
extension S3Handler {
    func fileParts(_ path: BlobPath, bucket: String) async throws -> FileParts {
        do {
            return try await client.parts(of: path)
        } catch let error as BlobError where error.code == .notFound {
            _ = try await requireBucket(bucket)
            throw S3Error.noSuchKey()
        }
    }

    static func invalidPart(_ number: Int) -> S3Error {
        S3Error("InvalidPart", .badRequest, "The requested part number \(number) is not part of this object.")
    }

    /// GET and HEAD with `?partNumber=N`: that part's bytes (206 with its range), its ETag and
    /// `x-amz-mp-parts-count`. An object not made by a multipart upload has one part, itself.
    func getObjectPart(
        _ path: BlobPath, _ numberText: String, _ request: Request, head: Bool, bucket: String
    ) async throws -> Response {
        guard let number = Int(numberText), (1...10_000).contains(number) else {
            throw S3Error.invalidArgument("Part number must be an integer between 1 and 10000, inclusive")
        }
        guard request.headers[.range] == nil else {
            throw S3Error.invalidArgument("A request may not name both a Range and a partNumber")
        }
        let info = try await fileParts(path, bucket: bucket)
        if info.parts.isEmpty {
            guard number == 1 else { throw Self.invalidPart(number) }
            return try await getObject(path, request, head: head, bucket: bucket)
        }
        guard let part = info.parts.first(where: { $0.number == number }) else { throw Self.invalidPart(number) }
        let file = info.file
        var headers = headers(for: file)
        // Conditions are on the object, as for a whole GET.
        if let notModified = try Self.conditionalAnswer(request, file: file, headers: headers) { return notModified }
        headers[.eTag] = "\"" + (part.attributes?[ObjectAttribute.etag] ?? file.sha256) + "\""
        headers[HTTPField.Name("x-amz-mp-parts-count")!] = String(info.parts.count)
        headers[.contentLength] = String(part.size)
        guard part.size > 0 else {
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer()))
        }
        headers[.contentRange] = "bytes \(part.offset)-\(part.offset + part.size - 1)/\(file.size)"
        if head { return Response(status: .partialContent, headers: headers, body: .init(byteBuffer: ByteBuffer())) }
        let plan = try await client.readPlan(path, offset: part.offset, length: part.size)
        guard plan.file.version == file.version else {
            throw S3Error("ServiceUnavailable", .serviceUnavailable, "the object changed while being read; retry")
        }
        let client = self.client
        let body = ResponseBody(contentLength: Int(part.size)) { writer in
            _ = try await client.stream(
                plan, of: path, offset: part.offset, end: part.offset + part.size, readAhead: 4,
                checkWholeFile: false
            ) { slice in
                try await writer.write(ByteBuffer(bytes: slice))
            }
            try await writer.finish(nil)
        }
        return Response(status: .partialContent, headers: headers, body: body)
    }

    /// GetObjectAttributes (`GET ?attributes`, the attributes named in `x-amz-object-attributes`):
    /// ETag, Checksum, ObjectParts (paged by `x-amz-max-parts` and `x-amz-part-number-marker`),
    /// StorageClass, ObjectSize.
    func getObjectAttributes(_ path: BlobPath, _ request: Request, bucket: String) async throws -> Response {
        let wanted = Set(
            (request.headers[HTTPField.Name("x-amz-object-attributes")!] ?? "")
                .split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        let known: Set = ["ETag", "Checksum", "ObjectParts", "StorageClass", "ObjectSize"]
        guard !wanted.isEmpty, wanted.isSubset(of: known) else {
            throw S3Error(
                "InvalidArgument", .badRequest,
                "x-amz-object-attributes must name some of ETag, Checksum, ObjectParts, StorageClass, ObjectSize")
        }
        let info = try await fileParts(path, bucket: bucket)
        let file = info.file
        var children: [String] = []
        if wanted.contains("ETag") {
            children.append(XML.element("ETag", String(Self.etag(file).dropFirst().dropLast())))
        }
        if wanted.contains("Checksum") {
            var sums: [String] = []
            for algorithm in S3ChecksumAlgorithm.allCases {
                if let value = file.metadata?[RequestedChecksum.attribute(algorithm)] {
                    sums.append(XML.element("Checksum" + algorithm.rawValue, value))
                    sums.append(
                        XML.element("ChecksumType", file.metadata?[RequestedChecksum.typeAttribute] ?? "FULL_OBJECT"))
                }
            }
            if !sums.isEmpty { children.append(XML.element("Checksum", children: sums)) }
        }
        if wanted.contains("ObjectParts"), !info.parts.isEmpty {
            let maxParts = min(1000, max(0, Int(request.headers[HTTPField.Name("x-amz-max-parts")!] ?? "1000") ?? 1000))
            let marker = Int(request.headers[HTTPField.Name("x-amz-part-number-marker")!] ?? "0") ?? 0
            let after = info.parts.filter { $0.number > marker }
            let page = Array(after.prefix(maxParts))
            var parts = [
                XML.element("PartsCount", String(info.parts.count)), XML.element("PartNumberMarker", String(marker)),
                XML.element("MaxParts", String(maxParts)),
                XML.element("IsTruncated", after.count > page.count ? "true" : "false"),
            ]
            if after.count > page.count, let last = page.last {
                parts.append(XML.element("NextPartNumberMarker", String(last.number)))
            }
            for part in page {
                var fields = [XML.element("PartNumber", String(part.number)), XML.element("Size", String(part.size))]
                for algorithm in S3ChecksumAlgorithm.allCases {
                    if let value = part.attributes?[RequestedChecksum.attribute(algorithm)] {
                        fields.append(XML.element("Checksum" + algorithm.rawValue, value))
                    }
                }
                parts.append(XML.element("Part", children: fields))
            }
            children.append(XML.element("ObjectParts", children: parts))
        }
        if wanted.contains("StorageClass") { children.append(XML.element("StorageClass", "STANDARD")) }
        if wanted.contains("ObjectSize") { children.append(XML.element("ObjectSize", String(file.size))) }
        var response = xmlResponse(XML.document("GetObjectAttributesResponse", children))
        response.headers[.lastModified] = HTTPDate.format(file.createdAtMilliseconds)
        return response
    }
}
