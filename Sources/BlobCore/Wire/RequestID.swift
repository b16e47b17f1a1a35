/// The id that follows one user request through every process it touches: the gateway (or
/// `blobctl`) sets it, each server logs it and passes it on in ``headerName`` to the masters and
/// chunk servers it calls, and answers carry it back.
public enum RequestID {
    /// The header a request id travels in, between all components and to clients.
    public static let headerName = "Blob-Request-ID"

    /// The id of the request the current task serves, if any. Every HTTP call made within it
    /// carries the id on.
    @TaskLocal public static var current: String?

    /// A fresh id: 16 hex digits.
    public static func make() -> String {
        let digits = String(UInt64.random(in: 0...UInt64.max), radix: 16, uppercase: true)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// `value` when it is an id we can log and pass on (1-64 of `A-Z a-z 0-9 - _ .`), so a
    /// client cannot inject text into logs or headers; nil otherwise.
    public static func accepted(_ value: String?) -> String? {
        guard let value, !value.isEmpty, value.utf8.count <= 64 else { return nil }
        let ok = value.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2D
                || c == 0x5F || c == 0x2E
        }
        return ok ? value : nil
    }
}
