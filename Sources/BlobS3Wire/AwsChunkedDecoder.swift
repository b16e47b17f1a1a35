public import Crypto

/// Decodes an `aws-chunked` request body (`Content-Encoding: aws-chunked`), streaming: chunk
/// data goes out as it arrives, and with signed chunks each chunk's signature is checked against
/// the chain that starts at the request's signature.
public struct AwsChunkedDecoder {
    public enum State {
        case header
        case data(remaining: Int)
        case dataEnd
        case trailers
        case done
    }

    public var state = State.header
    public var line: [UInt8] = []
    /// Set for STREAMING-AWS4-HMAC-SHA256-PAYLOAD.
    public let signing: (key: [UInt8], amzDate: String, scope: String)?
    public var previousSignature: String
    public var expectedSignature: String?
    public var chunkHash = SHA256()
    public var decodedByteCount: Int64 = 0
    public var trailerLines = 0
    /// The trailing headers (names lowercased), such as `x-amz-checksum-crc32`.
    public var trailers: [String: String] = [:]
    public static let maxLine = 4096
    public static let maxTrailerLines = 64

    public init(seedSignature: String, signing: (key: [UInt8], amzDate: String, scope: String)?) {
        self.previousSignature = seedSignature
        self.signing = signing
    }

    public var isDone: Bool { if case .done = state { return true } else { return false } }

    public mutating func feed(_ bytes: UnsafeRawBufferPointer, emit: (UnsafeRawBufferPointer) throws -> Void) throws {
        var i = 0
        while i < bytes.count {
            switch state {
            case .header, .dataEnd, .trailers:
                let byte = bytes[i]
                i += 1
                line.append(byte)
                guard line.count <= Self.maxLine else { throw Self.malformed("a chunk header line is too long") }
                guard line.count >= 2, line[line.count - 2] == 13, byte == 10 else { continue }
                let text = String(decoding: line.dropLast(2), as: UTF8.self)
                line.removeAll(keepingCapacity: true)
                try endOfLine(text)
            case .data(let remaining):
                let n = min(remaining, bytes.count - i)
                let piece = UnsafeRawBufferPointer(rebasing: bytes[i..<(i + n)])
                if signing != nil { chunkHash.update(bufferPointer: piece) }
                try emit(piece)
                decodedByteCount += Int64(n)
                i += n
                state = remaining - n == 0 ? .dataEnd : .data(remaining: remaining - n)
            case .done:
                // Anything after the final CRLF is ignored, as S3 does.
                i = bytes.count
            }
        }
    }

    public mutating func endOfLine(_ text: String) throws {
        switch state {
        case .header:
            let parts = text.split(separator: ";", maxSplits: 1)
            guard let sizeText = parts.first, let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16),
                size >= 0,
                size <= 64 << 20
            else { throw Self.malformed("a chunk size is not hexadecimal or is too large") }
            if signing != nil {
                guard parts.count == 2, parts[1].hasPrefix("chunk-signature=") else {
                    throw Self.malformed("a chunk lacks its signature")
                }
                expectedSignature = String(parts[1].dropFirst("chunk-signature=".count))
            }
            chunkHash = SHA256()
            if size == 0 {
                try checkSignature()
                state = .trailers
            } else {
                state = .data(remaining: size)
            }
        case .dataEnd:
            guard text.isEmpty else { throw Self.malformed("chunk data is longer than its size") }
            try checkSignature()
            state = .header
        case .trailers:
            // Trailing headers (x-amz-checksum-*, checked by the handler) end with an empty line.
            trailerLines += 1
            guard trailerLines <= Self.maxTrailerLines else { throw Self.malformed("too many trailer lines") }
            if text.isEmpty {
                state = .done
            } else if let colon = text.firstIndex(of: ":") {
                trailers[text[..<colon].trimmingCharacters(in: .whitespaces).lowercased()] =
                    text[text.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        case .data, .done:
            break
        }
    }

    public mutating func checkSignature() throws {
        guard let signing, let expected = expectedSignature else { return }
        let emptyHash = SigV4.hex(SHA256.hash(data: [UInt8]()))
        let stringToSign = [
            "AWS4-HMAC-SHA256-PAYLOAD", signing.amzDate, signing.scope, previousSignature, emptyHash,
            SigV4.hex(chunkHash.finalize()),
        ].joined(separator: "\n")
        let actual = SigV4.hex(SigV4.hmac(signing.key, stringToSign))
        guard SigV4.constantTimeEqual(actual, expected.lowercased()) else { throw S3Error.signatureDoesNotMatch() }
        previousSignature = actual
    }

    public static func malformed(_ why: String) -> S3Error {
        S3Error("IncompleteBody", .badRequest, "The aws-chunked body is malformed: \(why).")
    }
}
