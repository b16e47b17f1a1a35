import Logging
import ServiceLifecycle

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

/// Runs a server until SIGTERM or SIGINT asks it to stop gracefully: the servers own no
/// signal handling (tests run them in-process), the command does.
func runUntilSignalled(logger: Logger, _ body: @escaping @Sendable () async throws -> Void) async throws {
    struct Server: Service {
        let body: @Sendable () async throws -> Void
        func run() async throws { try await body() }
    }
    let group = ServiceGroup(
        configuration: .init(
            services: [Server(body: body)], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
    try await group.run()
}
