import BlobCore

/// Paths and keys as clients send them, and chunk ids as they appear in URLs: a path is
/// accepted or refused with a typed error; an accepted one never climbs out (`..`), holds no
/// NUL, no `.` and no empty segment (but for one trailing `/`: S3's folder markers), and reads
/// back as itself; a chunk id is 64 hex digits or refused.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzBlobPath(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: start, count: count)
    let text = String(decoding: bytes, as: UTF8.self)
    if let path = try? BlobPath(text) {
        let body = path.description.hasSuffix("/") ? String(path.description.dropLast()) : path.description
        let segments = body.split(separator: "/", omittingEmptySubsequences: false)
        if segments.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) || path.description.contains("\0") {
            fatalError("accepted a path with a dot, empty or NUL segment: \(path.description.debugDescription)")
        }
        guard let again = try? BlobPath(path.description), again == path else {
            fatalError("an accepted path does not read back as itself: \(path.description.debugDescription)")
        }
    }
    if let id = try? ChunkID(hex: text) {
        guard id.hex == text.lowercased(), text.utf8.count == 64 else {
            fatalError("a chunk id was read from \(text.debugDescription)")
        }
    }
    return 0
}
