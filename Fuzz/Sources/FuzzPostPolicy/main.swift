import BlobS3Wire
import Foundation

/// A POST policy document (JSON) and the form fields it is checked against: the input is the
/// policy, a NUL, then `name=value` lines. Parsing and checking answer or throw an S3 error,
/// never trap.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPostPolicy(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let all = UnsafeRawBufferPointer(start: start, count: count)
    let split = all.firstIndex(of: 0) ?? all.count
    let policyBytes = Data(UnsafeRawBufferPointer(rebasing: all[..<split]))
    let rest = split < all.count ? String(decoding: all[(split + 1)...], as: UTF8.self) : ""
    var fields: [String: String] = [:]
    for line in rest.split(separator: "\n") {
        guard let equals = line.firstIndex(of: "=") else { continue }
        fields[line[..<equals].lowercased()] = String(line[line.index(after: equals)...])
    }
    guard let policy = try? PostPolicy(json: policyBytes) else {
        _ = try? PostPolicy(base64: String(decoding: policyBytes, as: UTF8.self))
        return 0
    }
    _ = try? policy.check(
        fields: fields, bucket: fields["bucket"] ?? "media", now: Date(timeIntervalSince1970: 1_900_000_000))
    _ = try? policy.checkContentLength(Int64(fields.count) << 20)
    return 0
}
