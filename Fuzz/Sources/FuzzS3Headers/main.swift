import BlobS3Wire

/// Range and conditional headers: the input is `SIZE\nRANGE\nIF-MATCH\nETAG`. A range is
/// ignored, refused (416) or resolved to a non-empty span inside the object; when the quick
/// reader of `bytes=N-…` (used to plan the read early) gives a start, the full reader agrees.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzS3Headers(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
    guard lines.count >= 2, let size = Int64(lines[0]), size >= 0 else { return 0 }
    let range = lines[1]
    do {
        if let (first, last) = try S3Headers.range(range, size: size) {
            guard first >= 0, first <= last, last < size else {
                fatalError("\(range.debugDescription) of \(size) bytes resolved to \(first)-\(last)")
            }
            if let (quickStart, _) = S3Headers.explicitStart(range), quickStart != first {
                fatalError(
                    "\(range.debugDescription): the early reader starts at \(quickStart), the answer at \(first)")
            }
        }
    } catch {}
    if lines.count >= 4 {
        _ = S3Headers.etagMatches(lines[2], lines[3])
        _ = S3Headers.etagMatches(lines[2], lines[3], weak: false)
    }
    return 0
}
