import BlobCore
import Foundation
public import Logging

/// One JSON object per log line (`--log-format json`), for log shippers: `time` (UTC, ms),
/// `level`, `label`, `message`, then every metadata key as a string (`request.id`, `node.role`
/// …), written whole to standard error with one call.
public struct JSONLogHandler: LogHandler {
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let output: @Sendable (String) -> Void

    /// `output` receives each line (standard error by default).
    public init(
        label: String, metadataProvider: Logger.MetadataProvider?,
        output: @escaping @Sendable (String) -> Void = JSONLogHandler.writeToStandardError
    ) {
        self.label = label
        self.metadataProvider = metadataProvider
        self.output = output
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields: [String: String] = [:]
        for (key, value) in metadataProvider?.get() ?? [:] { fields[key] = "\(value)" }
        for (key, value) in metadata { fields[key] = "\(value)" }
        for (key, value) in event.metadata ?? [:] { fields[key] = "\(value)" }
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let time = UTCTime(secondsSince1970: UTCTime.seconds(milliseconds: now))
            .iso8601(milliseconds: Int(now - UTCTime.seconds(milliseconds: now) * 1000))
        var line = "{\"time\":\(Self.quote(time))"
        line += ",\"level\":\(Self.quote(event.level.rawValue)),\"label\":\(Self.quote(label))"
        line += ",\"message\":\(Self.quote("\(event.message)"))"
        for key in fields.keys.sorted() where !["time", "level", "label", "message"].contains(key) {
            line += ",\(Self.quote(key)):\(Self.quote(fields[key]!))"
        }
        line += "}\n"
        output(line)
    }

    public static let writeToStandardError: @Sendable (String) -> Void = { line in
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// A JSON string literal of `text`.
    static func quote(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out +=
                    "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count)
                    + String(scalar.value, radix: 16)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

extension Logger.MetadataProvider {
    /// Adds `request.id` (``RequestID/current``) to every line logged while a request is served.
    public static let requestID = Logger.MetadataProvider {
        guard let id = RequestID.current else { return [:] }
        return ["request.id": .string(id)]
    }
}
