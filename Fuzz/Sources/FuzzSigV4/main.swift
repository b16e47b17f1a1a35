import BlobS3Wire
import Dispatch
import Foundation

/// AWS's example key pair (the S3 API reference's signature examples), so a seed that is one of
/// those requests verifies and the fuzzer starts from the deepest path.
let accessKeyID = "AKIAIOSFODNN7EXAMPLE"
let secretKey = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
/// 2013-05-24T00:00:00Z, the examples' time.
let signedAt = Date(timeIntervalSince1970: 1_369_353_600)

/// Runs an async check to its end on this thread's behalf (the fuzzer calls synchronously).
func wait(_ body: @escaping @Sendable () async -> Void) {
    let done = DispatchSemaphore(value: 0)
    Task {
        await body()
        done.signal()
    }
    done.wait()
}

/// A request's signature as S3 clients send it: the input is `METHOD\nPATH\nQUERY\n` then
/// `name: value` header lines. Every verifier (SigV4 in the header and in the query, V2 in the
/// header and in the query) must answer or throw an S3 error, never trap or hang.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzSigV4(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard lines.count >= 3 else { return 0 }
    let method = lines[0]
    let path = lines[1]
    let query = lines[2]
    var headers: [String: String] = [:]
    for line in lines.dropFirst(3) {
        guard let colon = line.firstIndex(of: ":") else { continue }
        let name = line[..<colon].lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        headers[name] = headers[name].map { $0 + "," + value } ?? value
    }
    let sent = headers
    let lookup: @Sendable (String) async throws -> String? = { $0 == accessKeyID ? secretKey : nil }
    wait {
        _ = try? await SigV4.verifyHeader(
            method: method, rawPath: path, rawQuery: query, headers: sent, secret: lookup, now: signedAt)
        _ = try? await SigV4.verifyQuery(
            method: method, rawPath: path, rawQuery: query, headers: sent, secret: lookup, now: signedAt)
        _ = try? await SigV4.verifyHeaderV2(
            method: method, resource: path, rawQuery: query, headers: sent, secret: lookup, now: signedAt)
        _ = try? await SigV4.verifyQueryV2(
            method: method, resource: path, rawQuery: query, secret: lookup, now: signedAt)
    }
    return 0
}
