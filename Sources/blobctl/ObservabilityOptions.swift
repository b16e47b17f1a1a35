import ArgumentParser
import BlobServerSupport
import BlobTransport
import Logging

/// What every server role takes for metrics and logs.
struct ObservabilityOptions: ParsableArguments {
    @Option(
        help: """
            Address of the metrics listener (GET /metrics, /healthz, /readyz; the master's /status page), \
            HOST:PORT or `off`. Loopback by default, on a free port that is logged and written to \
            DIR/metrics-address.
            """)
    var metricsAddress: String = "127.0.0.1:0"

    @Option(help: "Also write the metrics listener's bound HOST:PORT to this file.")
    var metricsAddressFile: String?

    @Option(help: "Log format: plain, or json (one object per line).")
    var logFormat: String = "plain"

    @Flag(
        inversion: .prefixedNo,
        help: "Count, time and log every request (metrics and request events); off only to measure their cost.")
    var observeRequests = true

    func validate() throws {
        guard ["plain", "json"].contains(logFormat) else {
            throw ValidationError("--log-format \(logFormat) is not plain or json")
        }
        if metricsAddress != "off" { _ = try ChunkServerCommand.parseAddress(metricsAddress) }
    }

    /// The listener's configuration (nil for `off`); its address goes to `defaultFile` unless
    /// --metrics-address-file names another.
    /// The listener serves HTTPS with `certificate` when the server does.
    func listener(
        defaultFile: String?, certificate: ServerCertificate? = nil
    ) throws -> ObservabilityListenerConfiguration? {
        guard metricsAddress != "off" else { return nil }
        let (host, port) = try ChunkServerCommand.parseAddress(metricsAddress)
        return ObservabilityListenerConfiguration(
            host: host, port: port, addressFile: metricsAddressFile ?? defaultFile, certificate: certificate)
    }

    func bootstrap(level: String) {
        bootstrapLogging(level: level, json: logFormat == "json")
    }
}
