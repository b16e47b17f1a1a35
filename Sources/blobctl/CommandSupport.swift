import Logging

/// Sends every role's logs to standard error at the given level (unknown names mean info).
/// Only blobctl bootstraps logging; the libraries take a Logger.
func bootstrapLogging(level: String) {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = Logger.Level(rawValue: level) ?? .info
        return handler
    }
}

extension Duration {
    /// The duration in seconds, as a floating-point number, for rates and reports.
    var inSeconds: Double {
        Double(components.seconds) + Double(components.attoseconds) * 1e-18
    }
}
