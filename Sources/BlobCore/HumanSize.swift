/// Sizes for people: 1023 B, 1.5 KiB, 12.3 MiB, 4.0 GiB.
public enum HumanSize {
    public static func format(_ bytes: Int64) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var unit = 0
        while abs(value) >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        guard unit > 0 else { return "\(bytes) B" }
        return fixed(value, digits: value < 10 ? 2 : value < 100 ? 1 : 0) + " " + units[unit]
    }

    /// A rate in bytes per second, decimal megabytes like most tools print.
    public static func rate(_ bytesPerSecond: Double) -> String {
        fixed(bytesPerSecond / 1e6, digits: 1) + " MB/s"
    }

    /// `value` with `digits` decimals (0 to 3), rounded half away from zero.
    ///
    /// Not `String(format:)`: that goes through Foundation's locale machinery, which cost a
    /// small-file `put` or `get` half a millisecond of its start-up for one line of output.
    public static func fixed(_ value: Double, digits: Int) -> String {
        let scale: Int64 = [1, 10, 100, 1000][min(max(digits, 0), 3)]
        let scaled = (abs(value) * Double(scale)).rounded()
        guard scaled.isFinite, scaled < 9e15 else { return "\(value)" }
        let units = Int64(scaled)
        var text = (value < 0 && units > 0 ? "-" : "") + String(units / scale)
        if scale > 1 {
            let fraction = String(units % scale)
            text += "." + String(repeating: "0", count: String(scale).count - 1 - fraction.count) + fraction
        }
        return text
    }
}
