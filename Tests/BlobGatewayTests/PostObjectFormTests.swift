@testable import BlobGateway
import BlobS3Wire
import Crypto
import Foundation
import Testing

/// POST Object's pure parts: the streaming form reader, the POST policy, the form signatures.
/// The signatures are checked against AWS's published examples ("Browser-Based Upload using HTTP
/// POST", V2 and V4) and against the documented formulas computed here with Crypto directly.
@Suite("POST Object: form parsing, POST policies and form signatures")
struct PostObjectFormTests {
    // MARK: Helpers

    static func failure(_ body: () throws -> Void) -> S3Error? {
        do {
            try body()
            return nil
        } catch let error as S3Error {
            return error
        } catch {
            Issue.record("not an S3Error: \(error)")
            return nil
        }
    }

    static func asyncFailure(_ body: () async throws -> Void) async -> S3Error? {
        do {
            try await body()
            return nil
        } catch let error as S3Error {
            return error
        } catch {
            Issue.record("not an S3Error: \(error)")
            return nil
        }
    }

    static let boundary = "----WebKitFormBoundaryQ7x2"

    static func part(_ name: String, _ value: String) -> [UInt8] {
        Array("--\(boundary)\r\nContent-Disposition: form-data; name=\"\(name)\"\r\n\r\n\(value)\r\n".utf8)
    }

    /// A browser-like form: a preamble, the fields, the file, fields after it, an epilogue.
    static func formBody(
        fields: [(String, String)], fileName: String, file: [UInt8], after: [(String, String)] = []
    ) -> [UInt8] {
        var body = Array("This preamble is ignored.\r\n".utf8)
        for (name, value) in fields { body += part(name, value) }
        body += Array(
            ("--\(boundary)\r\nContent-Disposition: form-data; name=\"file\"; filename=\"\(fileName)\"\r\n"
                + "Content-Type: application/octet-stream\r\n\r\n").utf8)
        body += file + Array("\r\n".utf8)
        for (name, value) in after { body += part(name, value) }
        body += Array("--\(boundary)--\r\nand an epilogue, ignored too\r\n".utf8)
        return body
    }

    /// Feeds `body` cut at `cuts` (ascending offsets); the form and the file's bytes.
    static func read(_ body: [UInt8], cuts: [Int]) throws -> (form: PostForm, file: [UInt8]) {
        var reader = PostFormReader(boundary: boundary)
        var file: [UInt8] = []
        var start = 0
        for end in cuts + [body.count] {
            try body[start..<end].withUnsafeBytes { raw in
                try reader.feed(raw) { file += Array($0) }
            }
            start = end
        }
        let form = try reader.finish()
        return (form, file)
    }

    /// File content that nearly holds the delimiter: a CRLF-dashes-boundary with its last
    /// character changed, lone CRs and dashes, binary bytes, and at the very end the start of
    /// the delimiter (which the real delimiter then follows).
    static let trickyFile: [UInt8] = {
        var bytes =
            Array("\r\n--".utf8) + Array(PostObjectFormTests.boundary.dropLast().utf8)
            + Array("x\r\n-\r\r\n--\r\n".utf8)
        bytes += (0..<64).map { UInt8($0 * 7 % 256) }
        bytes += [13, 10, 45, 45] + Array(PostObjectFormTests.boundary.prefix(6).utf8)
        return bytes
    }()

    // MARK: multipart/form-data

    @Test("a form reads the same cut at every byte, so a boundary split across buffers is found")
    func everySplit() throws {
        let body = Self.formBody(
            fields: [("Key", "user/${filename}"), ("x-amz-meta-Tag", "v"), ("empty", "")],
            fileName: "cat.jpg", file: Self.trickyFile, after: [("submit", "Upload"), ("key", "ignored")])
        let whole = try Self.read(body, cuts: [])
        #expect(whole.form.fields == ["key": "user/${filename}", "x-amz-meta-tag": "v", "empty": ""])
        #expect(whole.form.fileName == "cat.jpg")
        #expect(whole.file == Self.trickyFile)
        for cut in 0...body.count {
            let split = try Self.read(body, cuts: [cut])
            #expect(split.form == whole.form && split.file == whole.file, "cut at \(cut)")
        }
        for cut in 0...(body.count - 5) {
            let split = try Self.read(body, cuts: [cut, cut + 5])
            #expect(split.form == whole.form && split.file == whole.file, "cut at \(cut) and \(cut + 5)")
        }
        let byteByByte = try Self.read(body, cuts: Array(1..<body.count))
        #expect(byteByByte.form == whole.form && byteByByte.file == whole.file)
    }

    @Test("fields before the file are capped at 64 KiB, the file is not; a cut-off body or a repeated field is refused")
    func limits() throws {
        let padding = String(repeating: "a", count: 64 << 10)
        let tooMuch = Self.formBody(fields: [("key", "k"), ("x-ignore-pad", padding)], fileName: "f", file: [1, 2, 3])
        #expect(
            Self.failure { _ = try Self.read(tooMuch, cuts: [1000, 40_000]) }?.code == "MaxPostPreDataLengthExceeded")

        let bigFile =
            [UInt8](repeating: 0x2D, count: 200_000) + [13, 10, 13] + [UInt8](repeating: 0x2D, count: 100_000)
        let big = try Self.read(
            Self.formBody(fields: [("key", "k")], fileName: "f", file: bigFile), cuts: [100, 70_000, 250_000])
        #expect(big.file == bigFile && big.form.fields == ["key": "k"])

        let body = Self.formBody(fields: [("key", "k")], fileName: "", file: [1, 2, 3])
        #expect(try Self.read(body, cuts: []).form.fileName == "")
        // Without the closing delimiter (and the epilogue): the form is not whole.
        #expect(
            Self.failure { _ = try Self.read(Array(body.prefix(body.count - 45)), cuts: []) }?.code
                == "MalformedPOSTRequest")

        let twice = Self.formBody(fields: [("key", "a"), ("KEY", "b")], fileName: "f", file: [])
        #expect(Self.failure { _ = try Self.read(twice, cuts: []) }?.code == "InvalidArgument")

        let noFile = Array(
            "--\(Self.boundary)\r\nContent-Disposition: form-data; name=\"key\"\r\n\r\nk\r\n--\(Self.boundary)--\r\n"
                .utf8)
        let fieldsOnly = try Self.read(noFile, cuts: [7])
        #expect(fieldsOnly.form.fileName == nil && fieldsOnly.form.fields == ["key": "k"])
    }

    @Test("the boundary comes from the Content-Type; Content-Disposition values may hold ; and \\")
    func headers() {
        #expect(MultipartFormParser.boundary(contentType: "multipart/form-data; boundary=abc") == "abc")
        #expect(
            MultipartFormParser.boundary(contentType: "Multipart/Form-Data; charset=utf-8; BOUNDARY=\"a=b c\"")
                == "a=b c")
        #expect(MultipartFormParser.boundary(contentType: "multipart/form-data") == nil)
        #expect(MultipartFormParser.boundary(contentType: "application/x-www-form-urlencoded; boundary=abc") == nil)
        #expect(
            MultipartFormParser.boundary(
                contentType: "multipart/form-data; boundary=" + String(repeating: "b", count: 71)) == nil)
        let parsed = MultipartFormParser.dispositionParameters(
            "form-data; NAME=\"file\"; filename=\"C:\\dir\\a;b.txt\"")
        #expect(parsed.type == "form-data" && parsed.parameters == ["name": "file", "filename": "C:\\dir\\a;b.txt"])
    }

    // MARK: POST policy

    static func policy(_ json: String) throws -> PostPolicy {
        try PostPolicy(base64: Data(json.utf8).base64EncodedString())
    }

    /// 2026-01-01T00:00:00Z, before the policies' expiration.
    static let before = Date(timeIntervalSince1970: 1_767_225_600)
    /// 2026-11-25T12:00:00Z.
    static let expiry = Date(timeIntervalSince1970: 1_795_608_000)

    @Test("a good policy passes; a field no condition names, a failed condition or an expired policy is refused")
    func goodPolicy() throws {
        let policy = try Self.policy(
            #"""
            {"expiration": "2026-11-25T12:00:00.000Z",
             "conditions": [{"bucket": "photos"}, ["starts-with", "$key", "user/"], {"acl": "private"},
                            ["eq", "$Content-Type", "image/png"], ["content-length-range", 1, 1000], \#
            {"$x-amz-meta-tag": "a"}]}
            """#)
        #expect(policy.expiration == Self.expiry)
        #expect(policy.conditions.count == 6 && policy.maxContentLength == 1000)
        let fields = [
            "key": "user/a.png", "acl": "private", "content-type": "image/png", "x-amz-meta-tag": "a",
            "policy": "…", "awsaccesskeyid": "id", "signature": "sig", "x-amz-signature": "sig",
            "x-ignore-submit": "Upload",
        ]
        #expect(Self.failure { try policy.check(fields: fields, bucket: "photos", now: Self.before) }?.code == nil)

        var extra = fields
        extra["x-amz-meta-other"] = "1"
        let refused = Self.failure { try policy.check(fields: extra, bucket: "photos", now: Self.before) }
        #expect(
            refused?.code == "AccessDenied" && refused?.message.contains("Extra input fields: x-amz-meta-other") == true
        )
        var wrongKey = fields
        wrongKey["key"] = "other/a.png"
        let failed = Self.failure { try policy.check(fields: wrongKey, bucket: "photos", now: Self.before) }
        #expect(failed?.code == "AccessDenied" && failed?.message.contains("Policy Condition failed") == true)
        #expect(
            Self.failure { try policy.check(fields: fields, bucket: "videos", now: Self.before) }?.code
                == "AccessDenied")
        var noACL = fields
        noACL["acl"] = nil
        #expect(
            Self.failure { try policy.check(fields: noACL, bucket: "photos", now: Self.before) }?.code == "AccessDenied"
        )
        let expired = Self.failure { try policy.check(fields: fields, bucket: "photos", now: Self.expiry) }
        #expect(expired?.code == "AccessDenied" && expired?.message.contains("Policy expired") == true)

        #expect(Self.failure { try policy.checkContentLength(0) }?.code == "EntityTooSmall")
        #expect(Self.failure { try policy.checkContentLength(1001) }?.code == "EntityTooLarge")
        #expect(Self.failure { try policy.checkContentLength(1000) }?.code == nil)

        let typed = try Self.policy(
            #"{"expiration": "2026-11-25T12:00:00Z", "conditions": "#
                + #"[{"bucket": "b"}, ["starts-with", "$Content-Type", "image/"]]}"#
        )
        #expect(
            Self.failure {
                try typed.check(fields: ["content-type": "image/png, image/gif"], bucket: "b", now: Self.before)
            }?.code == nil)
        #expect(
            Self.failure {
                try typed.check(fields: ["content-type": "image/png, text/html"], bucket: "b", now: Self.before)
            }?.code
                == "AccessDenied")

        // A policy that names no bucket would write into any bucket: refused.
        let anyBucket = try Self.policy(
            #"{"expiration": "2026-11-25T12:00:00Z", "conditions": [["starts-with", "$key", "user/"]]}"#)
        #expect(
            Self.failure { try anyBucket.check(fields: ["key": "user/a"], bucket: "b", now: Self.before) }?.code
                == "AccessDenied")
    }

    @Test("expiration is ISO 8601 in UTC, with or without a fraction, and nothing else")
    func expirationFormat() {
        #expect(PostPolicy.parseExpiration("2026-11-25T12:00:00Z") == Self.expiry)
        #expect(PostPolicy.parseExpiration("2026-11-25T12:00:00.000Z") == Self.expiry)
        #expect(PostPolicy.parseExpiration("2026-11-25T12:00:00.5Z") == Self.expiry.addingTimeInterval(0.5))
        for text in [
            "2026-11-25", "2026-11-25T12:00:00", "2026-11-25 12:00:00Z", "2026-11-25T12:00:00+01:00",
            "20261125T120000Z",
            "2026-11-25T12:00:00.Z", "2026-11-25T12:00Z", " 2026-11-25T12:00:00Z", "",
        ] {
            #expect(PostPolicy.parseExpiration(text) == nil, "\(text)")
        }
    }

    @Test("malformed policies are InvalidPolicyDocument: case-sensitive element names, dates, condition shapes")
    func malformedPolicies() {
        let valid = #""expiration": "2026-11-25T12:00:00.000Z""#
        let documents = [
            #"{"expiration": "2026-11-25T12:00:00.000Z", "CONDITIONS": [{"bucket": "photos"}]}"#,
            #"{"EXPIRATION": "2026-11-25T12:00:00.000Z", "conditions": [{"bucket": "photos"}]}"#,
            #"{"conditions": [{"bucket": "photos"}]}"#,
            #"{"expiration": "2026-11-25 12:00:00", "conditions": []}"#,
            #"{"expiration": "2026-11-25", "conditions": []}"#,
            #"{"expiration": 1795608000, "conditions": []}"#,
            "{\(valid)}",
            "{\(valid), \"conditions\": {\"bucket\": \"photos\"}}",
            "{\(valid), \"conditions\": [[\"content-length-range\", 0]]}",
            "{\(valid), \"conditions\": [[\"content-length-range\", -1, 0]]}",
            "{\(valid), \"conditions\": [[\"content-length-range\", 10, 5]]}",
            "{\(valid), \"conditions\": [[\"content-length-range\", 1.5, 2]]}",
            "{\(valid), \"conditions\": [[\"content-length-range\", \"1\", \"2\"]]}",
            "{\(valid), \"conditions\": [[\"content-length-range\", 0, 1, 2]]}",
            "{\(valid), \"conditions\": [{}]}",
            "{\(valid), \"conditions\": [{\"bucket\": \"a\", \"key\": \"b\"}]}",
            "{\(valid), \"conditions\": [{\"bucket\": [\"a\"]}]}",
            "{\(valid), \"conditions\": [[\"eq\", \"key\", \"x\"]]}",
            "{\(valid), \"conditions\": [[\"eq\", \"$key\"]]}",
            "{\(valid), \"conditions\": [[\"starts-with\", \"$key\", \"a\", \"b\"]]}",
            "{\(valid), \"conditions\": [[\"in\", \"$key\", \"a\"]]}",
            "{\(valid), \"conditions\": [[]]}",
            "{\(valid), \"conditions\": [\"bucket\"]}",
            #"["expiration", "conditions"]"#,
            "not JSON at all",
        ]
        for json in documents {
            #expect(Self.failure { _ = try Self.policy(json) }?.code == "InvalidPolicyDocument", "\(json)")
        }
        #expect(Self.failure { _ = try PostPolicy(base64: "%%% not base64") }?.code == "InvalidPolicyDocument")
        #expect(
            Self.failure {
                _ = try Self.policy("{\(valid), \"conditions\": [[\"content-length-range\", 0, 0], {\"$Key\": \"k\"}]}")
            }?.code
                == nil)
    }

    // MARK: Signatures

    /// AWS's V2 example (S3 developer guide, "Browser-Based Uploads Using POST", Signature V2).
    static let v2Secret = "uV3F3YluFJax1cknvbcGwgjvx4QpvB+leU8dUj2o"
    static let v2Policy: String =
        "eyAiZXhwaXJhdGlvbiI6ICIyMDA3LTEyLTAxVDEyOjAwOjAwLjAwMFoiLAogICJjb25kaXRpb25zIjogWwogICAgeyJidWNrZXQi"
        + "OiAiam9obnNtaXRoIn0sCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci9lcmljLyJdLAogICAgeyJhY2wiOiAicHVi"
        + "bGljLXJlYWQifSwKICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL2pvaG5zbWl0aC5zMy5hbWF6b25hd3Mu"
        + "Y29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwKICAgIFsic3RhcnRzLXdpdGgiLCAiJENvbnRlbnQtVHlwZSIsICJpbWFnZS8i"
        + "XSwKICAgIHsieC1hbXotbWV0YS11dWlkIjogIjE0MzY1MTIzNjUxMjc0In0sCiAgICBbInN0YXJ0cy13aXRoIiwgIiR4LWFtei1t"
        + "ZXRhLXRhZyIsICIiXQogIF0KfQo="
    static let v2Signature = "0RavWzkygo6QX9caELEqKi9kDbU="
    static let v2Fields: [String: String] = [
        "key": "user/eric/MyPicture.jpg", "acl": "public-read",
        "success_action_redirect": "http://johnsmith.s3.amazonaws.com/successful_upload.html",
        "content-type": "image/jpeg", "x-amz-meta-uuid": "14365123651274", "x-amz-meta-tag": "Some,Tag,For,Picture",
        "awsaccesskeyid": "AKIAIOSFODNN7EXAMPLE", "policy": PostObjectFormTests.v2Policy,
        "signature": PostObjectFormTests.v2Signature,
    ]

    /// AWS's V4 example (S3 API reference, "Example: Browser-Based Upload using HTTP POST (Using
    /// AWS Signature Version 4)").
    static let v4Secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    static let v4Policy: String =
        "eyAiZXhwaXJhdGlvbiI6ICIyMDE1LTEyLTMwVDEyOjAwOjAwLjAwMFoiLA0KICAiY29uZGl0aW9ucyI6IFsNCiAgICB7ImJ1Y2tl"
        + "dCI6ICJzaWd2NGV4YW1wbGVidWNrZXQifSwNCiAgICBbInN0YXJ0cy13aXRoIiwgIiRrZXkiLCAidXNlci91c2VyMS8iXSwNCiAg"
        + "ICB7ImFjbCI6ICJwdWJsaWMtcmVhZCJ9LA0KICAgIHsic3VjY2Vzc19hY3Rpb25fcmVkaXJlY3QiOiAiaHR0cDovL3NpZ3Y0ZXhh"
        + "bXBsZWJ1Y2tldC5zMy5hbWF6b25hd3MuY29tL3N1Y2Nlc3NmdWxfdXBsb2FkLmh0bWwifSwNCiAgICBbInN0YXJ0cy13aXRoIiwg"
        + "IiRDb250ZW50LVR5cGUiLCAiaW1hZ2UvIl0sDQogICAgeyJ4LWFtei1tZXRhLXV1aWQiOiAiMTQzNjUxMjM2NTEyNzQifSwNCiAg"
        + "ICB7IngtYW16LXNlcnZlci1zaWRlLWVuY3J5cHRpb24iOiAiQUVTMjU2In0sDQogICAgWyJzdGFydHMtd2l0aCIsICIkeC1hbXot"
        + "bWV0YS10YWciLCAiIl0sDQoNCiAgICB7IngtYW16LWNyZWRlbnRpYWwiOiAiQUtJQUlPU0ZPRE5ON0VYQU1QTEUvMjAxNTEyMjkv"
        + "dXMtZWFzdC0xL3MzL2F3czRfcmVxdWVzdCJ9LA0KICAgIHsieC1hbXotYWxnb3JpdGhtIjogIkFXUzQtSE1BQy1TSEEyNTYifSwN"
        + "CiAgICB7IngtYW16LWRhdGUiOiAiMjAxNTEyMjlUMDAwMDAwWiIgfQ0KICBdDQp9"
    static let v4Signature = "8afdbf4008c03f22c2cd3cdb72e4afbb1f6a588f3255ac628749a66d7f09699e"
    static let v4Fields: [String: String] = [
        "key": "user/user1/${filename}", "acl": "public-read",
        "success_action_redirect": "http://sigv4examplebucket.s3.amazonaws.com/successful_upload.html",
        "content-type": "image/jpeg", "x-amz-meta-uuid": "14365123651274", "x-amz-server-side-encryption": "AES256",
        "x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request",
        "x-amz-algorithm": "AWS4-HMAC-SHA256",
        "x-amz-date": "20151229T000000Z", "x-amz-meta-tag": "", "policy": PostObjectFormTests.v4Policy,
        "x-amz-signature": PostObjectFormTests.v4Signature,
    ]

    static func hmacSHA256(_ key: [UInt8], _ message: String) -> [UInt8] {
        Array(HMAC<SHA256>.authenticationCode(for: Array(message.utf8), using: SymmetricKey(data: key)))
    }

    /// The documented V4 formula, written out: kDate, kRegion, kService, kSigning, then the policy.
    static func independentV4(policy: String, secret: String, date: String, region: String) -> String {
        let kDate = hmacSHA256(Array("AWS4\(secret)".utf8), date)
        let kRegion = hmacSHA256(kDate, region)
        let kService = hmacSHA256(kRegion, "s3")
        let kSigning = hmacSHA256(kService, "aws4_request")
        return hmacSHA256(kSigning, policy).map { String(format: "%02x", $0) }.joined()
    }

    /// The documented V2 formula: base64 of HMAC-SHA1 over the base64 policy.
    static func independentV2(policy: String, secret: String) -> String {
        Data(
            HMAC<Insecure.SHA1>.authenticationCode(
                for: Array(policy.utf8), using: SymmetricKey(data: Array(secret.utf8)))
        )
        .base64EncodedString()
    }

    static func authorize(
        _ fields: [String: String], fileName: String = "MyPhoto.jpg", bucket: String, secret: String,
        now: Date
    ) async throws -> PostUpload {
        try await PostForm(fields: fields, fileName: fileName)
            .authorize(bucket: bucket, secret: { $0 == "AKIAIOSFODNN7EXAMPLE" ? secret : nil }, now: now)
    }

    /// The code of the error authorize throws, nil when it accepts.
    static func refusal(
        _ fields: [String: String], fileName: String = "MyPhoto.jpg", bucket: String, secret: String,
        now: Date
    ) async -> String? {
        await asyncFailure {
            _ = try await authorize(fields, fileName: fileName, bucket: bucket, secret: secret, now: now)
        }?.code
    }

    @Test("V2 and V4 form signatures match AWS's published examples and the documented formulas")
    func signatures() throws {
        #expect(PostSignature.v2(policy: Self.v2Policy, secret: Self.v2Secret) == Self.v2Signature)
        let example = try SigV4.Credential("AKIAIOSFODNN7EXAMPLE/20151229/us-east-1/s3/aws4_request")
        #expect(PostSignature.v4(policy: Self.v4Policy, secret: Self.v4Secret, credential: example) == Self.v4Signature)

        let policy = Data(#"{"expiration": "2030-01-01T00:00:00Z", "conditions": [{"bucket": "b"}]}"#.utf8)
            .base64EncodedString()
        let secret = "s3cr3t/+=Key"
        let other = try SigV4.Credential("AKIDEXAMPLE/20260315/eu-west-3/s3/aws4_request")
        #expect(
            PostSignature.v4(policy: policy, secret: secret, credential: other)
                == Self.independentV4(policy: policy, secret: secret, date: "20260315", region: "eu-west-3"))
        #expect(PostSignature.v2(policy: policy, secret: secret) == Self.independentV2(policy: policy, secret: secret))
    }

    @Test("AWS's V4 example form is accepted; a changed signature, key id, field, bucket or clock is refused")
    func v4ExampleForm() async throws {
        let now = Date(timeIntervalSince1970: 1_451_347_200)  // 2015-12-29T00:00:00Z
        let upload = try await Self.authorize(
            Self.v4Fields, bucket: "sigv4examplebucket", secret: Self.v4Secret, now: now)
        #expect(upload.key == "user/user1/MyPhoto.jpg" && upload.accessKeyID == "AKIAIOSFODNN7EXAMPLE")

        var fields = Self.v4Fields
        fields["x-amz-signature"] = String(repeating: "0", count: 64)
        #expect(
            await Self.refusal(fields, bucket: "sigv4examplebucket", secret: Self.v4Secret, now: now)
                == "SignatureDoesNotMatch")
        #expect(
            await Self.refusal(Self.v4Fields, bucket: "sigv4examplebucket", secret: "wrong", now: now)
                == "SignatureDoesNotMatch")
        fields = Self.v4Fields
        fields["x-amz-credential"] = "AKIAOTHER/20151229/us-east-1/s3/aws4_request"
        #expect(
            await Self.refusal(fields, bucket: "sigv4examplebucket", secret: Self.v4Secret, now: now)
                == "InvalidAccessKeyId")
        fields = Self.v4Fields
        fields["x-amz-meta-extra"] = "1"
        #expect(
            await Self.refusal(fields, bucket: "sigv4examplebucket", secret: Self.v4Secret, now: now) == "AccessDenied")
        #expect(
            await Self.refusal(Self.v4Fields, bucket: "otherbucket", secret: Self.v4Secret, now: now) == "AccessDenied")
        // ${filename} is replaced before the policy is checked: the stored key is one it allows.
        fields = Self.v4Fields
        fields["key"] = "${filename}"
        #expect(
            await Self.refusal(
                fields, fileName: "user/user2/x", bucket: "sigv4examplebucket", secret: Self.v4Secret, now: now)
                == "AccessDenied")
        let later = Date(timeIntervalSince1970: 1_451_347_200 + 3 * 86_400)
        #expect(
            await Self.refusal(Self.v4Fields, bucket: "sigv4examplebucket", secret: Self.v4Secret, now: later)
                == "AccessDenied")
        for missing in ["x-amz-signature", "policy", "key", "x-amz-date"] {
            fields = Self.v4Fields
            fields[missing] = nil
            #expect(
                await Self.refusal(fields, bucket: "sigv4examplebucket", secret: Self.v4Secret, now: now)
                    == "InvalidArgument", "without \(missing)")
        }
    }

    @Test("AWS's V2 example form is accepted; without policy, signature or key id, or anonymous, it is refused")
    func v2ExampleForm() async throws {
        let now = Date(timeIntervalSince1970: 1_196_380_800)  // 2007-11-30T00:00:00Z
        let upload = try await Self.authorize(Self.v2Fields, bucket: "johnsmith", secret: Self.v2Secret, now: now)
        #expect(upload.key == "user/eric/MyPicture.jpg")

        var fields = Self.v2Fields
        fields["signature"] = "1RavWzkygo6QX9caELEqKi9kDbU="
        #expect(
            await Self.refusal(fields, bucket: "johnsmith", secret: Self.v2Secret, now: now) == "SignatureDoesNotMatch")
        for missing in ["policy", "signature", "awsaccesskeyid", "key"] {
            fields = Self.v2Fields
            fields[missing] = nil
            #expect(
                await Self.refusal(fields, bucket: "johnsmith", secret: Self.v2Secret, now: now) == "InvalidArgument",
                "without \(missing)")
        }
        let anonymous = ["key": "user/eric/MyPicture.jpg", "acl": "public-read"]
        #expect(
            await Self.refusal(anonymous, bucket: "johnsmith", secret: Self.v2Secret, now: now) == "InvalidArgument")
        let later = Date(timeIntervalSince1970: 1_196_510_400)  // the expiration itself
        #expect(
            await Self.refusal(Self.v2Fields, bucket: "johnsmith", secret: Self.v2Secret, now: later) == "AccessDenied")
    }

    @Test("a form of one's own: ${filename}, the canned ACLs accepted (private, public-read), content-length-range")
    func ownForm() async throws {
        let policy = Data(
            #"""
            {"expiration": "2026-11-25T12:00:00.000Z",
             "conditions": [{"bucket": "photos"}, ["starts-with", "$key", "in/"], ["starts-with", "$acl", ""],
                            ["content-length-range", 10, 20], {"x-amz-algorithm": "AWS4-HMAC-SHA256"},
                            {"x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/aws4_request"},
                            {"x-amz-date": "20260101T000000Z"}]}
            """#.utf8
        ).base64EncodedString()
        var fields = [
            "key": "in/${filename}", "acl": "private", "x-amz-algorithm": "AWS4-HMAC-SHA256",
            "x-amz-credential": "AKIAIOSFODNN7EXAMPLE/20260101/us-east-1/s3/aws4_request",
            "x-amz-date": "20260101T000000Z",
            "policy": policy,
            "x-amz-signature": Self.independentV4(
                policy: policy, secret: Self.v4Secret, date: "20260101", region: "us-east-1"),
        ]
        let upload = try await Self.authorize(
            fields, fileName: "a.png", bucket: "photos", secret: Self.v4Secret, now: Self.before)
        #expect(upload.key == "in/a.png" && upload.policy.maxContentLength == 20)
        #expect(Self.failure { try upload.policy.checkContentLength(9) }?.code == "EntityTooSmall")
        #expect(Self.failure { try upload.policy.checkContentLength(21) }?.code == "EntityTooLarge")
        #expect(Self.failure { try upload.policy.checkContentLength(10) }?.code == nil)

        fields["acl"] = "public-read"
        _ = try await Self.authorize(
            fields, fileName: "a.png", bucket: "photos", secret: Self.v4Secret, now: Self.before)
        fields["acl"] = "public-read-write"
        #expect(
            await Self.refusal(fields, fileName: "a.png", bucket: "photos", secret: Self.v4Secret, now: Self.before)
                == "NotImplemented")
        fields["acl"] = "private"
        fields["x-amz-date"] = "20260102T000000Z"  // not the credential's day
        #expect(
            await Self.refusal(fields, fileName: "a.png", bucket: "photos", secret: Self.v4Secret, now: Self.before)
                == "InvalidArgument")
    }

    // MARK: Response pieces

    @Test("metadata fields follow the header rules, attribute names refused; the redirect gets bucket, key and etag")
    func metadataAndRedirect() throws {
        #expect(
            try S3Handler.formMetadata([
                "key": "k", "x-amz-meta-a": "1", "x-amz-meta-b-c": "2", "cache-control": "no-cache",
            ])
                == ["a": "1", "b-c": "2", ":cache-control": "no-cache"])
        #expect(try S3Handler.formMetadata(["key": "k", "content-type": "image/png"]) == nil)
        // Attributes are named with a ':', which no header name holds: a form may not set one either.
        #expect(
            Self.failure { _ = try S3Handler.formMetadata(["x-amz-meta-:etag": "forged"]) }?.code == "InvalidArgument")
        #expect(Self.failure { _ = try S3Handler.formMetadata(["x-amz-meta-a b": "1"]) }?.code == "InvalidArgument")
        #expect(
            Self.failure { _ = try S3Handler.formMetadata(["x-amz-meta-big": String(repeating: "x", count: 2049)]) }?
                .code
                == "MetadataTooLarge")
        #expect(
            S3Handler.redirectLocation("https://example.com/done?x=1#top", bucket: "b", key: "a b/c", etag: "\"e\"")
                == "https://example.com/done?x=1&bucket=b&key=a%20b%2Fc&etag=%22e%22#top")
        #expect(
            S3Handler.redirectLocation("http://example.com/", bucket: "b", key: "k", etag: "\"e\"")
                == "http://example.com/?bucket=b&key=k&etag=%22e%22")
        #expect(S3Handler.redirectLocation("javascript:alert(1)", bucket: "b", key: "k", etag: "e") == nil)
        #expect(S3Handler.redirectLocation("", bucket: "b", key: "k", etag: "e") == nil)
    }
}
