import BlobServerSupport
import Logging
import ServiceLifecycle

/// Sends every role's logs to standard error at the given level (unknown names mean info), as
/// plain lines or one JSON object per line; each line logged while a request is served carries
/// its `request.id`. Only blobctl bootstraps logging; the libraries take a Logger.
func bootstrapLogging(level: String, json: Bool = false) {
    LoggingSystem.bootstrap(
        { label, provider in
            let level = Logger.Level(rawValue: level) ?? .info
            if json {
                var handler = JSONLogHandler(label: label, metadataProvider: provider)
                handler.logLevel = level
                return handler
            }
            var handler = StreamLogHandler.standardError(label: label, metadataProvider: provider)
            handler.logLevel = level
            return handler
        }, metadataProvider: .requestID)
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
