import Foundation

/// Seconds since 1970 to UTC calendar fields and back, for the fixed formats S3 and HTTP use
/// (IMF-fixdate, ISO 8601, `X-Amz-Date`). A `DateFormatter` costs an ICU formatter per use,
/// which showed up in every GET's time to first byte; these are a few integer operations.
/// Proleptic Gregorian calendar (H. Hinnant's days-from-civil algorithms).
public struct UTCTime: Sendable, Equatable {
    public var year: Int
    public var month: Int  // 1...12
    public var day: Int  // 1...31
    public var hour: Int
    public var minute: Int
    public var second: Int

    static let weekdayNames = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    static let longWeekdayNames = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
    static let monthNames = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    public init(year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        (self.year, self.month, self.day, self.hour, self.minute, self.second) = (
            year, month, day, hour, minute, second
        )
    }

    public init(secondsSince1970 seconds: Int64) {
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let rest = Int(seconds - days * 86_400)
        (hour, minute, second) = (rest / 3600, rest / 60 % 60, rest % 60)
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let mp = (5 * dayOfYear + 2) / 153
        day = Int(dayOfYear - (153 * mp + 2) / 5 + 1)
        month = Int(mp < 10 ? mp + 3 : mp - 9)
        year = Int(yearOfEra + era * 400 + (month <= 2 ? 1 : 0))
    }

    /// Seconds since 1970; nil when a field is out of its range (the day is checked against
    /// the month's length).
    public var secondsSince1970: Int64? {
        guard (1...12).contains(month), (0...23).contains(hour), (0...59).contains(minute), (0...60).contains(second),
            (1...9999).contains(year), (1...Self.daysIn(month: month, year: year)).contains(day)
        else { return nil }
        let y = Int64(month <= 2 ? year - 1 : year)
        let era = (y >= 0 ? y : y - 399) / 400
        let yearOfEra = y - era * 400
        let m = Int64(month)
        let dayOfYear = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + Int64(day) - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        let days = era * 146_097 + dayOfEra - 719_468
        return days * 86_400 + Int64(hour * 3600 + minute * 60 + min(second, 59))
    }

    /// 0 for Sunday.
    public var weekday: Int {
        let seconds = secondsSince1970 ?? 0
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        return Int(((days % 7) + 11) % 7)  // 1970-01-01 was a Thursday
    }

    static func daysIn(month: Int, year: Int) -> Int {
        switch month {
        case 2: return year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) ? 29 : 28
        case 4, 6, 9, 11: return 30
        default: return 31
        }
    }

    static func pad(_ value: Int, _ width: Int) -> String {
        let text = String(value)
        return text.count >= width ? text : String(repeating: "0", count: width - text.count) + text
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT`
    public var imfFixdate: String {
        "\(Self.weekdayNames[weekday]), \(Self.pad(day, 2)) \(Self.monthNames[month - 1]) \(Self.pad(year, 4)) "
            + "\(Self.pad(hour, 2)):\(Self.pad(minute, 2)):\(Self.pad(second, 2)) GMT"
    }

    /// `19941106T084937Z` (SigV4's `X-Amz-Date`).
    public var amzDate: String {
        "\(Self.pad(year, 4))\(Self.pad(month, 2))\(Self.pad(day, 2))T"
            + "\(Self.pad(hour, 2))\(Self.pad(minute, 2))\(Self.pad(second, 2))Z"
    }

    /// `1994-11-06T08:49:37.000Z`, with the milliseconds given.
    public func iso8601(milliseconds: Int) -> String {
        "\(Self.pad(year, 4))-\(Self.pad(month, 2))-\(Self.pad(day, 2))T\(Self.pad(hour, 2)):\(Self.pad(minute, 2)):"
            + "\(Self.pad(second, 2)).\(Self.pad(milliseconds, 3))Z"
    }

    /// `1994-11-06T08:49:37Z`, as `ISO8601DateFormatter` writes it.
    public var iso8601: String {
        "\(Self.pad(year, 4))-\(Self.pad(month, 2))-\(Self.pad(day, 2))T"
            + "\(Self.pad(hour, 2)):\(Self.pad(minute, 2)):\(Self.pad(second, 2))Z"
    }

    /// The ISO 8601 time (to the second) of a time in milliseconds since 1970.
    public static func iso8601(milliseconds: Int64) -> String {
        UTCTime(secondsSince1970: seconds(milliseconds: milliseconds)).iso8601
    }

    /// Whole seconds of a time in milliseconds since 1970, rounded down (also before 1970).
    public static func seconds(milliseconds: Int64) -> Int64 {
        milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000
    }

    /// Parses `19941106T084937Z`.
    public static func parseAmzDate(_ text: String) -> Int64? {
        let b = Array(text.utf8)
        guard b.count == 16, b[8] == UInt8(ascii: "T"), b[15] == UInt8(ascii: "Z"),
            let year = digits(b[0..<4]), let month = digits(b[4..<6]), let day = digits(b[6..<8]),
            let hour = digits(b[9..<11]), let minute = digits(b[11..<13]), let second = digits(b[13..<15])
        else { return nil }
        return UTCTime(year: year, month: month, day: day, hour: hour, minute: minute, second: second).secondsSince1970
    }

    /// Parses the three HTTP date forms (RFC 9110 §5.6.7): IMF-fixdate
    /// (`Sun, 06 Nov 1994 08:49:37 GMT`), RFC 850 (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime
    /// (`Sun Nov  6 08:49:37 1994`). The zone must be GMT (or UTC, UT, Z, +0000).
    public static func parseHTTPDate(_ text: String) -> Int64? {
        let words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
        if words.count == 4, words[0].hasSuffix(","), longWeekdayNames.contains(String(words[0].dropLast())) {
            // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
            let date = words[1].split(separator: "-", omittingEmptySubsequences: false).map(String.init)
            guard date.count == 3, date[0].count == 2, date[2].count == 2, let day = Int(date[0]),
                let month = monthNumber(date[1]),
                let shortYear = digits(Array(date[2].utf8)[...]), isUTC(words[3]), let (h, m, s) = clock(words[2])
            else { return nil }
            // RFC 9110: a two-digit year more than 50 years ahead is the most recent past one.
            let now = UTCTime(secondsSince1970: Int64(Date().timeIntervalSince1970)).year
            var year = now / 100 * 100 + shortYear
            if year > now + 50 { year -= 100 } else if year <= now - 50 { year += 100 }
            return UTCTime(year: year, month: month, day: day, hour: h, minute: m, second: s).secondsSince1970
        }
        if words.count == 6, words[0].hasSuffix(","), weekdayNames.contains(String(words[0].dropLast())) {
            // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
            guard (1...2).contains(words[1].count), let day = digits(Array(words[1].utf8)[...]),
                let month = monthNumber(words[2]),
                words[3].count == 4, let year = digits(Array(words[3].utf8)[...]), isUTC(words[5]),
                let (h, m, s) = clock(words[4])
            else { return nil }
            return UTCTime(year: year, month: month, day: day, hour: h, minute: m, second: s).secondsSince1970
        }
        if words.count == 5, weekdayNames.contains(words[0]) {
            // asctime: Sun Nov  6 08:49:37 1994
            guard let month = monthNumber(words[1]), (1...2).contains(words[2].count),
                let day = digits(Array(words[2].utf8)[...]),
                words[4].count == 4, let year = digits(Array(words[4].utf8)[...]), let (h, m, s) = clock(words[3])
            else { return nil }
            return UTCTime(year: year, month: month, day: day, hour: h, minute: m, second: s).secondsSince1970
        }
        return nil
    }

    private static func monthNumber(_ name: String) -> Int? {
        monthNames.firstIndex(of: name).map { $0 + 1 }
    }

    private static func isUTC(_ zone: String) -> Bool {
        ["GMT", "UTC", "UT", "Z", "+0000", "-0000"].contains(zone)
    }

    private static func clock(_ text: String) -> (Int, Int, Int)? {
        let b = Array(text.utf8)
        guard b.count == 8, b[2] == UInt8(ascii: ":"), b[5] == UInt8(ascii: ":"),
            let h = digits(b[0..<2]), let m = digits(b[3..<5]), let s = digits(b[6..<8])
        else { return nil }
        return (h, m, s)
    }

    private static func digits(_ bytes: ArraySlice<UInt8>) -> Int? {
        guard !bytes.isEmpty else { return nil }
        var value = 0
        for byte in bytes {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int(byte - UInt8(ascii: "0"))
        }
        return value
    }
}
