/// A position in the metadata database's write-ahead log (a PostgreSQL LSN, written `X/Y` in
/// hexadecimal): where a write's commit ended. A master answers it to every write of a client
/// (``MetadataPosition/header``); a client that carries it on its reads is answered by a hot
/// standby only once that standby has replayed this far (read-your-writes).
public struct MetadataPosition: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt64

    public init(_ value: UInt64) { self.value = value }

    /// Parses PostgreSQL's `X/Y` (two hexadecimal numbers of at most 32 bits each); nil otherwise.
    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, parts.allSatisfy({ (1...8).contains($0.count) }),
            let high = UInt64(parts[0], radix: 16), let low = UInt64(parts[1], radix: 16)
        else { return nil }
        value = high << 32 | low
    }

    public var description: String {
        String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xFFFF_FFFF, radix: 16, uppercase: true)
    }

    public static func < (a: MetadataPosition, b: MetadataPosition) -> Bool { a.value < b.value }

    /// The header a master answers writes with, and a client sends its reads with.
    public static let header = "Blob-Metadata-Position"
    /// The header a master answers stat, list and read plans with: `primary`, or `standby HOST:PORT`.
    public static let answeredByHeader = "Blob-Metadata-Read"
}
