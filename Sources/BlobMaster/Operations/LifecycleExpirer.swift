import BlobCore
import Logging

/// Applies buckets' lifecycle rules: deletes current objects under a rule's prefix written more
/// than its expiration days ago (a tombstone, as `rm` writes; gc then reclaims the chunks), and
/// aborts multipart uploads begun more than its days-after-initiation ago. A pass is bounded;
/// what it leaves, the next pass takes.
struct LifecycleExpirer: Sendable {
    let store: MetadataStore
    let logger: Logger
    /// Deletes and aborts in one pass, at most.
    var maxActionsPerPass = 10_000
    /// Uploads asked for at a time.
    static let uploadPage = 1000

    struct Report: Sendable, Equatable {
        var expiredObjects = 0
        var abortedUploads = 0
    }

    /// Days as milliseconds; nil for none or for a count too large to matter (it never expires).
    static func milliseconds(days: Int?) -> Int64? {
        guard let days, days > 0 else { return nil }
        let (value, overflow) = Int64(days).multipliedReportingOverflow(by: LifecycleRule.dayMilliseconds)
        return overflow ? nil : value
    }

    func pass(nowMilliseconds now: Int64) async throws -> Report {
        var report = Report()
        var budget = maxActionsPerPass
        for bucket in try await store.buckets() {
            guard let lifecycle = bucket.lifecycle else { continue }
            for rule in lifecycle.rules where rule.enabled {
                let prefix = bucket.name + "/" + rule.prefix
                if let age = Self.milliseconds(days: rule.expirationDays) {
                    let before = now - age
                    var after: String?
                    pages: while budget > 0 {
                        let page = try await store.list(prefix: prefix, after: after, limit: 1000)
                        for file in page.files {
                            after = file.path.value
                            guard file.createdAtMilliseconds < before else { continue }
                            guard budget > 0 else { break pages }
                            do {
                                // Only the version seen old: a newer one written meanwhile stays.
                                _ = try await store.delete(file.path, ifVersion: file.version)
                                report.expiredObjects += 1
                                budget -= 1
                            } catch let error as BlobError
                                where error.code == .notFound || error.reason == WritePrecondition.failedReason
                            {
                                // Deleted or rewritten meanwhile.
                            }
                        }
                        if page.next == nil { break }
                    }
                }
                if let age = Self.milliseconds(days: rule.abortUploadsAfterDays) {
                    // Only old uploads are asked for, so newer ones cannot hide them; an aborted
                    // one leaves the list, so each page is new. Bounded by the budget and by a
                    // page count, in case uploads cannot be aborted as fast as they are found.
                    var pages = 0
                    while budget > 0 && pages < maxActionsPerPass / Self.uploadPage + 1 {
                        pages += 1
                        let old = try await store.uploads(
                            prefix: prefix, createdBefore: now - age, limit: min(Self.uploadPage, budget))
                        for upload in old {
                            do {
                                try await store.abortUpload(upload.id)
                                report.abortedUploads += 1
                                budget -= 1
                            } catch let error as BlobError where error.code == .notFound {
                                // Completed or aborted meanwhile.
                            }
                        }
                        if old.count < Self.uploadPage { break }
                    }
                }
            }
        }
        if report != Report() {
            logger.info(
                "lifecycle pass",
                metadata: ["expired": "\(report.expiredObjects)", "uploads.aborted": "\(report.abortedUploads)"])
        }
        return report
    }
}
