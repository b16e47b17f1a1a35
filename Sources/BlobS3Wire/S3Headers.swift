import Foundation

/// Range and conditional request headers as the gateway reads them (RFC 9110 §13.1, §14).
public enum S3Headers {
    /// A range's number: decimal digits only (RFC 9110 §14.1.2). `Int64("+5")` and `Int64("-0")`
    /// would take a sign.
    static func number(_ text: Substring) -> Int64? {
        guard !text.isEmpty, text.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) else {
            return nil
        }
        return Int64(text)
    }

    /// `bytes=N-M` or `bytes=N-` as (N, M?); nil for anything else (suffix, several ranges).
    public static func explicitStart(_ text: String) -> (Int64, Int64?)? {
        guard text.hasPrefix("bytes="), !text.contains(",") else { return nil }
        let spec = text.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard let dash = spec.firstIndex(of: "-"), let start = number(spec[..<dash]) else { return nil }
        let last = spec[spec.index(after: dash)...]
        if last.isEmpty { return (start, nil) }
        guard let end = number(last), end >= start, end < Int64.max / 2 else { return (start, nil) }
        return (start, end)
    }

    /// If-None-Match compares weakly (a `W/` tag matches); If-Match strongly.
    public static func etagMatches(_ header: String, _ etag: String, weak: Bool = true) -> Bool {
        header.split(separator: ",").contains { candidate in
            let c = candidate.trimmingCharacters(in: .whitespaces)
            return c == "*" || c == etag || (weak && c == "W/" + etag)
        }
    }

    /// One byte range, resolved against the size; nil to ignore the header (not bytes, or
    /// several ranges: the whole object is sent); throws InvalidRange when unsatisfiable.
    public static func range(_ text: String, size: Int64) throws -> (Int64, Int64)? {
        guard text.hasPrefix("bytes=") else { return nil }
        let spec = text.dropFirst(6).trimmingCharacters(in: .whitespaces)
        guard !spec.contains(","), let dash = spec.firstIndex(of: "-") else { return nil }
        let first = spec[..<dash]
        let last = spec[spec.index(after: dash)...]
        if first.isEmpty {
            guard let count = number(last), count > 0 else {
                if number(last) == 0 { throw S3Error.invalidRange(size: size) }
                return nil
            }
            // A suffix of an empty object is satisfiable and empty (RFC 9110 §14.1.1): send it whole.
            guard size > 0 else { return nil }
            return (max(0, size - count), size - 1)
        }
        guard let start = number(first) else { return nil }
        let end: Int64
        if last.isEmpty {
            end = size - 1
        } else {
            guard let e = number(last), e >= start else { return nil }
            end = min(e, size - 1)  // no arithmetic on the client's number: it may be Int64.max
        }
        guard start < size else { throw S3Error.invalidRange(size: size) }
        return (start, end)
    }
}

extension XML {

    /// The text of every `<tag>…</tag>` in document order (no nesting of the same tag).
    public static func elements(_ tag: String, in xml: String) -> [String] {
        var out: [String] = []
        var rest = Substring(xml)
        while let open = rest.range(of: "<\(tag)>"),
            let close = rest.range(of: "</\(tag)>", range: open.upperBound..<rest.endIndex)
        {
            out.append(String(rest[open.upperBound..<close.lowerBound]))
            rest = rest[close.upperBound...]
        }
        return out
    }
}
