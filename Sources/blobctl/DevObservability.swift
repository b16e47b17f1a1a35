import BlobCore
import Foundation

/// The local cluster's metrics: where each process's listener is, and a Prometheus scrape
/// configuration for all of them.
enum DevObservability {
    static func prometheusConfigFile(_ dir: String) -> String { dir + "/prometheus.yml" }

    /// Reads each server's `metrics-address` file (written once its listener is bound) into
    /// `cluster.json`; waits a bounded time for the files.
    static func recordMetricsAddresses(_ cluster: inout DevCluster) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        for index in cluster.members.indices
        where ["master", "chunkserver", "gateway"].contains(cluster.members[index].role) {
            let file = cluster.members[index].dataDirectory + "/metrics-address"
            while true {
                if let text = try? String(contentsOfFile: file, encoding: .utf8),
                    case let address = text.trimmingCharacters(in: .whitespacesAndNewlines), !address.isEmpty
                {
                    cluster.members[index].metricsAddress = address
                    break
                }
                guard ContinuousClock.now < deadline else {
                    throw CLIError(
                        .failure,
                        "\(cluster.members[index].name) did not write its metrics address to \(file); "
                            + "see \(cluster.members[index].log)")
                }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// One job per role, one target per process (labelled with its `name`), every 5 s.
    static func prometheusConfig(_ cluster: DevCluster) -> String {
        var text = """
            # Written by `blobctl dev up`: scrapes every process of this local cluster.
            # Run: prometheus --config.file=THIS_FILE
            global:
              scrape_interval: 5s
              scrape_timeout: 4s
            scrape_configs:

            """
        for role in ["master", "chunkserver", "gateway"] {
            let members = cluster.members.filter { $0.role == role && $0.metricsAddress != nil }
            guard !members.isEmpty else { continue }
            text += "  - job_name: blobstore-\(role)\n"
            if let ca = cluster.tlsCA {
                text += "    scheme: https\n    tls_config:\n      ca_file: '\(ca)'\n"
            }
            text += "    static_configs:\n"
            for member in members {
                text += "      - targets: ['\(member.metricsAddress!)']\n"
                text += "        labels: {name: '\(member.name)'}\n"
            }
        }
        return text
    }

    static func writePrometheusConfig(_ cluster: DevCluster, to file: String) throws {
        try Data(prometheusConfig(cluster).utf8).write(to: URL(fileURLWithPath: file), options: .atomic)
    }
}
