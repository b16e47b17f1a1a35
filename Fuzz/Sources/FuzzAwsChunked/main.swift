import BlobS3Wire

/// The signing key, date and scope of AWS's chunked-upload example, so its body decodes.
let signing: (key: [UInt8], amzDate: String, scope: String) = {
    let credential = try! SigV4.Credential("AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request")
    return (
        SigV4.signingKey(secret: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", credential: credential),
        "20130524T000000Z", credential.scope
    )
}()
let seedSignature = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"

/// An aws-chunked body as a socket delivers it, in uneven pieces (the first byte picks the
/// piece size): signed (chunk signatures chained from the seed) and unsigned (trailing
/// checksums). The decoder answers with bytes or an S3 error, never traps; it never emits more
/// bytes than it was fed, and one it calls done takes no more.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAwsChunked(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let all = UnsafeRawBufferPointer(start: start, count: count)
    guard let first = all.first else { return 0 }
    let body = UnsafeRawBufferPointer(rebasing: all[1...])
    let piece = Int(first % 64) + 1
    for signed in [true, false] {
        var decoder = AwsChunkedDecoder(seedSignature: seedSignature, signing: signed ? signing : nil)
        var emitted = 0
        var offset = 0
        do {
            while offset < body.count {
                let end = min(body.count, offset + piece)
                try decoder.feed(UnsafeRawBufferPointer(rebasing: body[offset..<end])) { emitted += $0.count }
                offset = end
            }
        } catch {}
        if emitted > body.count { fatalError("decoded \(emitted) bytes from a body of \(body.count)") }
    }
    return 0
}
