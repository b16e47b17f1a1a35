import BlobS3Wire

/// S3 XML request bodies (CompleteMultipartUpload, DeleteObjects, ACLs, lifecycle) as the
/// gateway reads them: elements by tag and entity decoding never trap; what escape writes,
/// unescape reads back.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzS3XML(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let text = String(decoding: UnsafeRawBufferPointer(start: start, count: count), as: UTF8.self)
    for tag in ["Part", "PartNumber", "ETag", "Key", "Object", "Quiet", "Rule", "Prefix", "Days", "Permission"] {
        for element in XML.elements(tag, in: text) {
            _ = XML.unescape(element)
            if element.contains("</\(tag)>") { fatalError("an element of <\(tag)> holds its own end tag") }
        }
    }
    _ = XML.unescape(text)
    if XML.unescape(XML.escape(text)) != text {
        fatalError("escape then unescape changed \(text.debugDescription)")
    }
    return 0
}
