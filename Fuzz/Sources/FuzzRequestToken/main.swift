import BlobCore

let signer = try! RequestSigner(secret: Array("fuzzing-secret-of-32-bytes-long!".utf8))

/// The tokens between components: an Authorization header, method and path as a server gets
/// them. A token is refused unless this signer made it for exactly that method and path.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzRequestToken(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    let parts = text.split(separator: "\n", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
    let header = parts[0]
    let method = parts.count > 1 ? parts[1] : "GET"
    let path = parts.count > 2 ? parts[2] : "/v1/chunks"
    let now: Int64 = 1_800_000_000
    if let role = try? signer.verify(
        header: header, method: method, pathAndQuery: path, now: now, allowed: [.client, .server, .master])
    {
        // Only a token this signer made verifies; the fuzzer cannot forge one.
        let expiry = header.split(separator: ":").dropFirst(2).first.flatMap { Int64($0) } ?? 0
        guard signer.token(role: role, method: method, pathAndQuery: path, expiry: expiry) == header else {
            fatalError("a token the signer did not make verified: \(header.debugDescription)")
        }
    }
    return 0
}
