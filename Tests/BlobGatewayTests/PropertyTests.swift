import BlobCore
@testable import BlobGateway
import BlobS3Wire
import BlobTestSupport
import Foundation
import Testing

/// Properties over seeded random inputs: a range header against the bytes a reference reading
/// of RFC 9110 selects, and signatures made by botocore against our verification. A failure
/// names its seed; `BLOB_PROPERTY_SEED=N` replays it.
@Suite("gateway properties")
struct GatewayPropertyTests {
    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["BLOB_PROPERTY_SEED"].flatMap { UInt64($0) }
            ?? UInt64.random(in: 0..<(UInt64.max / 2))
    }

    enum Expected: Equatable {
        case whole
        case unsatisfiable
        case bytes(Int64, Int64)
    }

    /// RFC 9110 §14.1.2 for one range: `bytes=` then `first-last`, `first-` or `-suffix`, digits
    /// only. Anything else is ignored (the whole object), as are several ranges.
    static func reference(_ text: String, size: Int64) -> Expected {
        guard text.hasPrefix("bytes=") else { return .whole }
        let spec = text.dropFirst(6).trimmingCharacters(in: .whitespaces)
        let parts = spec.split(separator: "-", maxSplits: 1, omittingEmptySubsequences: false)
        guard !spec.contains(","), parts.count == 2 else { return .whole }
        func digits(_ s: Substring) -> Int64? {
            guard !s.isEmpty, s.utf8.allSatisfy({ (48...57).contains($0) }) else { return nil }
            return Int64(s)
        }
        if parts[0].isEmpty {
            guard let suffix = digits(parts[1]) else { return .whole }
            if suffix == 0 { return .unsatisfiable }
            if size == 0 { return .whole }
            return .bytes(max(0, size - suffix), size - 1)
        }
        guard let first = digits(parts[0]) else { return .whole }
        var last = size - 1
        if !parts[1].isEmpty {
            guard let given = digits(parts[1]), given >= first else { return .whole }
            last = min(given, size - 1)
        }
        return first < size ? .bytes(first, last) : .unsatisfiable
    }

    static func rangeText(_ rng: inout SplitMix64, size: Int64) -> String {
        func number() -> String {
            switch Int.random(in: 0..<8, using: &rng) {
            case 0: return "0"
            case 1: return "\(size)"
            case 2: return "\(max(0, size - 1))"
            case 3: return "99999999999999999999999"
            case 4: return "+\(Int.random(in: 0...9, using: &rng))"
            case 5: return "00\(Int.random(in: 0...99, using: &rng))"
            case 6: return ""
            default: return "\(Int64.random(in: 0...(size * 2 + 5), using: &rng))"
            }
        }
        let prefix = ["bytes=", "bytes=", "bytes=", "bytes= ", "Bytes=", "items=", ""].randomElement(using: &rng)!
        var spec = number() + ["-", "-", "-", "--", "", " - "].randomElement(using: &rng)! + number()
        if Int.random(in: 0..<10, using: &rng) == 0 { spec += ",0-1" }
        if Int.random(in: 0..<15, using: &rng) == 0 { spec += "x" }
        return prefix + spec
    }

    @Test("a Range header selects exactly the bytes RFC 9110 says, or the whole object, or 416")
    func rangeAgainstReference() throws {
        let seed = Self.seed
        var rng = SplitMix64(seed: seed)
        for _ in 0..<5_000 {
            let size = [0, 1, 2, 10, 1 << 20, Int64.random(in: 0...5_000, using: &rng)].randomElement(using: &rng)!
            let text = Self.rangeText(&rng, size: size)
            let expected = Self.reference(text, size: size)
            let got: Expected
            do {
                got = try S3Headers.range(text, size: size).map { .bytes($0.0, $0.1) } ?? .whole
            } catch let error as S3Error where error.code == "InvalidRange" {
                got = .unsatisfiable
            }
            #expect(got == expected, "seed \(seed): \(text.debugDescription) of \(size) bytes")
            if case .bytes(let first, let last) = got {
                // The selection lies inside the object and is not empty.
                #expect(first >= 0 && first <= last && last < size, "seed \(seed): \(text) of \(size)")
            }
        }
    }

    /// Found by the XML fuzz target: a combining mark after `&` or `;` joined it into one
    /// Character, so `&lt;` followed by U+0301 was not read back.
    @Test("XML escape then unescape gives the text back, combining marks and control characters included")
    func xmlRoundTrip() {
        let seed = Self.seed
        var rng = SplitMix64(seed: seed)
        let pieces = [
            "a", "<", ">", "&", "\"", "'", ";", "\u{301}", "\u{5B0}", "\u{16}", "\u{0}", "\t", "日本", "&amp;",
            "#x41",
        ]
        #expect(XML.unescape("a&lt;\u{301}b&amp;\u{5B0}") == "a<\u{301}b&\u{5B0}")
        #expect(XML.unescape("&#x65E5;&#26412;&bogus;&&lt") == "日本&bogus;&&lt")
        // A sign in a character reference leaves it as written.
        #expect(XML.unescape("&#x+41;&#+65;&#x41;&#0;") == "&#x+41;&#+65;A\u{0}")
        for _ in 0..<2_000 {
            let text = (0..<Int.random(in: 0...12, using: &rng)).map { _ in pieces.randomElement(using: &rng)! }
                .joined()
            #expect(XML.unescape(XML.escape(text)) == text, "seed \(seed): \(text.debugDescription)")
        }
    }

    struct Case: Decodable {
        var method: String
        var rawPath: String
        var rawQuery: String
        var headers: [String: String]
        var accessKey: String
        var secret: String
        var payloadSHA256: String
    }

    /// Runs `python3 Tests/Gateway/sigv4_cases.py SEED COUNT` (bounded) and decodes its lines.
    static func botocoreCases(seed: UInt64, count: Int) async throws -> [Case] {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Gateway/sigv4_cases.py")
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("sigv4-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script.path, "\(seed)", "\(count)"]
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = FileHandle.nullDevice
        try process.launchSerially()
        let deadline = ContinuousClock.now + .seconds(60)
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            Issue.record("sigv4_cases.py did not finish within 60 s")
            return []
        }
        #expect(process.terminationStatus == 0, "sigv4_cases.py failed (is boto3 installed? Scripts/test-tools.sh)")
        let text = try String(contentsOf: out, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(Case.self, from: Data($0.utf8)) }
    }

    static func verify(
        _ c: Case, path: String? = nil, query: String? = nil, headers: [String: String]? = nil
    )
        async throws -> SigV4.Verified
    {
        try await SigV4.verifyHeader(
            method: c.method, rawPath: path ?? c.rawPath, rawQuery: query ?? c.rawQuery,
            headers: headers ?? c.headers, secret: { $0 == c.accessKey ? c.secret : nil })
    }

    @Test("botocore's SigV4 signatures of random requests verify; any signed part changed does not")
    func botocoreSignaturesVerify() async throws {
        let seed = Self.seed
        let cases = try await Self.botocoreCases(seed: seed, count: 150)
        #expect(cases.count == 150, "seed \(seed)")
        var rng = SplitMix64(seed: seed)
        for c in cases {
            let context = "seed \(seed): \(c.method) \(c.rawPath)?\(c.rawQuery)"
            do {
                let verified = try await Self.verify(c)
                #expect(verified.payload == .sha256(c.payloadSHA256), "\(context)")
            } catch {
                Issue.record("\(context): \(error)")
                continue
            }
            // Change one signed thing: a path byte, the query, or a signed header's value.
            var path = c.rawPath
            var query = c.rawQuery
            var headers = c.headers
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: path += "x"
            case 1: query = query.isEmpty ? "a=1" : query + "1"
            default:
                // Another second, still a well-formed time inside the allowed skew: only the
                // signature can refuse it.
                var date = Array(headers["x-amz-date"]!)
                let digit = date[date.count - 2]
                date[date.count - 2] = digit == "0" ? "1" : "0"
                headers["x-amz-date"] = String(date)
            }
            do {
                _ = try await Self.verify(c, path: path, query: query, headers: headers)
                Issue.record("\(context): verified after a signed part changed")
            } catch let error as S3Error {
                #expect(error.code == "SignatureDoesNotMatch", "\(context), changed: \(error.code) \(error.message)")
            }
        }
    }
}
