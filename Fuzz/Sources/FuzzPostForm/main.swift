import BlobS3Wire

/// A browser's POST Object upload (multipart/form-data) as a socket delivers it: the first
/// byte picks the piece size, the rest is the body with the boundary `XyZ`. The reader answers
/// with a form or an S3 error, never traps; the file bytes it passes on are never more than it
/// was fed.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPostForm(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let all = UnsafeRawBufferPointer(start: start, count: count)
    guard let first = all.first else { return 0 }
    let body = UnsafeRawBufferPointer(rebasing: all[1...])
    let piece = Int(first % 97) + 1
    var reader = PostFormReader(boundary: "XyZ")
    var fileBytes = 0
    var offset = 0
    do {
        while offset < body.count {
            let end = min(body.count, offset + piece)
            try reader.feed(UnsafeRawBufferPointer(rebasing: body[offset..<end])) { fileBytes += $0.count }
            offset = end
        }
        _ = try reader.finish()
    } catch {}
    if fileBytes > body.count { fatalError("passed on \(fileBytes) file bytes from a body of \(body.count)") }
    return 0
}
