import BlobCore
@testable import BlobMaster
import Foundation
import Logging
import Testing

@Suite("bucket lifecycle expiration")
struct LifecycleExpirerTests {
    static let day = LifecycleRule.dayMilliseconds

    @Test(
        "objects under an enabled rule's prefix expire after its days; other prefixes, disabled rules, newer ones stay",
        arguments: Backend.allCases)
    func expiresByPrefixAndAge(backend: Backend) async throws {
        try await MetadataTesting.withStore(backend) { store, clock in
            try await store.createBucket(BucketRecord(name: "logs", createdAtMilliseconds: 0, publicRead: false))
            try await store.createBucket(BucketRecord(name: "other", createdAtMilliseconds: 0, publicRead: false))
            var seed: UInt64 = 1
            func put(_ path: String, at time: Int64) async throws {
                seed += 1
                clock.set(time)
                _ = try await store.commit(try await MetadataTesting.upload(store, path, sizes: [10], seed: seed))
            }
            try await put("logs/app/old.log", at: 0)
            try await put("logs/app/new.log", at: 9 * Self.day)
            try await put("logs/keep/old.log", at: 0)
            try await put("logs/tmp/old.log", at: 0)
            try await put("other/app/old.log", at: 0)
            let upload = MultipartUpload(
                id: "u1", path: try BlobPath("logs/app/big.log"), contentType: "text/plain",
                createdAtMilliseconds: 0)
            clock.set(0)
            try await store.createUpload(upload)
            try await store.setBucketLifecycle(
                "logs",
                BucketLifecycle(
                    rules: [
                        LifecycleRule(
                            id: "app", prefix: "app/", enabled: true, expirationDays: 7, abortUploadsAfterDays: 3),
                        LifecycleRule(
                            id: "tmp", prefix: "tmp/", enabled: false, expirationDays: 1, abortUploadsAfterDays: nil),
                    ], document: "<LifecycleConfiguration/>"))
            #expect(try await store.bucket("logs")?.lifecycle?.rules.count == 2)

            let expirer = LifecycleExpirer(store: store, logger: Logger(label: "test"))
            // Before 7 days nothing expires, but the 3-day upload is aborted.
            #expect(
                try await expirer.pass(nowMilliseconds: 5 * Self.day) == .init(expiredObjects: 0, abortedUploads: 1))
            #expect(try await store.upload(upload.id) == nil)
            let report = try await expirer.pass(nowMilliseconds: 10 * Self.day)
            #expect(report == .init(expiredObjects: 1, abortedUploads: 0))
            #expect(try await store.stat(try BlobPath("logs/app/old.log")) == nil)
            for kept in ["logs/app/new.log", "logs/keep/old.log", "logs/tmp/old.log", "other/app/old.log"] {
                #expect(try await store.stat(try BlobPath(kept)) != nil, "\(kept) stays")
            }
            // Old uploads are found however many newer ones sort before them.
            // Uploads are dated by the database clock.
            clock.set(10 * Self.day)
            for i in 0..<(LifecycleExpirer.uploadPage + 5) {
                try await store.createUpload(
                    MultipartUpload(
                        id: "young-\(i)", path: try BlobPath("logs/app/a-\(i).log"),
                        contentType: "text/plain", createdAtMilliseconds: 10 * Self.day))
            }
            clock.set(1 * Self.day)
            for i in 0..<3 {
                try await store.createUpload(
                    MultipartUpload(
                        id: "old-\(i)", path: try BlobPath("logs/app/z-\(i).log"),
                        contentType: "text/plain", createdAtMilliseconds: 1 * Self.day))
            }
            #expect(
                try await expirer.pass(nowMilliseconds: 11 * Self.day) == .init(expiredObjects: 0, abortedUploads: 3))
            #expect(try await store.uploads(prefix: "logs/", limit: 10_000).count == LifecycleExpirer.uploadPage + 5)
            // Removing the configuration stops expiration.
            try await store.setBucketLifecycle("logs", nil)
            #expect(try await expirer.pass(nowMilliseconds: 100 * Self.day) == .init())
            #expect(try await store.stat(try BlobPath("logs/app/new.log")) != nil)
        }
    }
}
