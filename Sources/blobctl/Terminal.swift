import BlobCore
import Foundation

/// A one-line progress bar on standard error: bytes, percentage, rate and ETA. Drawn only
/// when standard error is a terminal, at most ten times a second.
final class ProgressBar: @unchecked Sendable {
    // Guarded by `lock`: updated from the transfer's task, drawn from the same call.
    private let lock = NSLock()
    private let label: String
    private var total: Int64?
    private let start = ContinuousClock.now
    private var lastDraw: ContinuousClock.Instant?
    private let enabled: Bool
    private var drawn = false

    init(label: String, total: Int64?, enabled: Bool) {
        self.label = label
        self.total = total
        self.enabled = enabled && isatty(2) == 1
    }

    func update(_ done: Int64, total newTotal: Int64? = nil) {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        if let newTotal { total = newTotal }
        let now = ContinuousClock.now
        if let lastDraw, now - lastDraw < .milliseconds(100) { return }
        lastDraw = now
        draw(done, now: now)
    }

    private func draw(_ done: Int64, now: ContinuousClock.Instant) {
        let seconds = max(0.001, (now - start).inSeconds)
        let rate = Double(done) / seconds
        var line = "\(label) \(HumanSize.format(done))"
        if let total, total > 0 {
            let fraction = min(1, Double(done) / Double(total))
            let width = 24
            let filled = Int(fraction * Double(width))
            line +=
                " / \(HumanSize.format(total)) [" + String(repeating: "=", count: filled)
                + String(repeating: " ", count: width - filled) + "] " + String(format: "%3.0f%%", fraction * 100)
            if rate > 0 && done < total {
                let eta = Int(Double(total - done) / rate)
                line += String(format: " ETA %d:%02d", eta / 60, eta % 60)
            }
        }
        line += "  " + HumanSize.rate(rate)
        FileHandle.standardError.write(Data(("\r\u{1B}[K" + line).utf8))
        drawn = true
    }

    /// Clears the line.
    func finish() {
        guard enabled else { return }
        lock.lock()
        defer { lock.unlock() }
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}

/// The encoder of every `--json` output: snake_case keys, sorted, slashes as they are.
func snakeCaseJSONEncoder() -> JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    encoder.keyEncodingStrategy = .convertToSnakeCase
    return encoder
}

/// Writes `text` to standard output. A reader that went away (`blobctl ls | head`) ends the
/// command quietly, with status 0, instead of an error on every line still to come.
func writeStandardOutput(_ text: String) {
    var text = text
    text.withUTF8 { bytes in
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(1, bytes.baseAddress! + offset, bytes.count - offset)
            if written >= 0 {
                offset += written
            } else if errno == EPIPE {
                exit(0)
            } else if errno != EINTR {
                FileHandle.standardError.write(
                    Data("blobctl: error: cannot write to standard output: \(String(cString: strerror(errno)))\n".utf8))
                exit(ExitStatus.failure.rawValue)
            }
        }
    }
}

/// Prints a value as JSON (``snakeCaseJSONEncoder()``) on standard output.
func printJSON(_ value: some Encodable) throws {
    print(String(decoding: try snakeCaseJSONEncoder().encode(value), as: UTF8.self))
}

/// Left-aligned columns for tables.
func columns(_ rows: [[String]]) -> String {
    guard let first = rows.first else { return "" }
    var widths = Array(repeating: 0, count: first.count)
    for row in rows {
        for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
    }
    return rows.map { row in
        row.enumerated().map { i, cell in
            i == row.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
        }.joined(separator: "  ")
    }.joined(separator: "\n")
}
