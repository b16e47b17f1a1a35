/// One scrape of a `/metrics` page, parsed from the Prometheus text format, for tests.
public struct MetricsScrape: Sendable {
    public struct Sample: Sendable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public let samples: [Sample]

    /// Parses every sample line (`name{k="v",…} value`); comments and blank lines are skipped.
    public init(_ text: String) {
        var samples: [Sample] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            let series = line[..<space]
            var labels: [String: String] = [:]
            var name = String(series)
            if let open = series.firstIndex(of: "{"), series.hasSuffix("}") {
                name = String(series[..<open])
                let body = series[series.index(after: open)..<series.index(before: series.endIndex)]
                for pair in body.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1)
                    guard parts.count == 2 else { continue }
                    labels[String(parts[0])] = String(parts[1].dropFirst().dropLast())
                }
            }
            samples.append(Sample(name: name, labels: labels, value: value))
        }
        self.samples = samples
    }

    /// The sum of the samples named `name` whose labels include `labels` (0 when none).
    public func sum(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in
            sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value }
        }.reduce(0) { $0 + $1.value }
    }

    /// Whether any sample is named `name` (with `labels` among its labels).
    public func has(_ name: String, _ labels: [String: String] = [:]) -> Bool {
        samples.contains { sample in
            sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value }
        }
    }
}
