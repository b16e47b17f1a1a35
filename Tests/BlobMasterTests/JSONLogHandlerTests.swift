import BlobCore
import BlobServerSupport
import Foundation
import Logging
import Synchronization
import Testing

@Suite("JSON log lines")
struct JSONLogHandlerTests {
    @Test("one JSON object per line: time, level, label, message, metadata and the request id of the task")
    func linesParse() async throws {
        let lines = Mutex<[String]>([])
        var logger = Logger(label: "test.json") { label in
            JSONLogHandler(label: label, metadataProvider: .requestID) { line in lines.withLock { $0.append(line) } }
        }
        logger[metadataKey: "node.role"] = "master"
        RequestID.$current.withValue("trace-9") {
            logger.info("a \"quoted\"\nmessage\u{1}", metadata: ["http.status": "200", "path": "a\\b"])
        }
        logger.debug("below the level")
        logger.warning("no request")
        let written = lines.withLock { $0 }
        #expect(written.count == 2 && written.allSatisfy { $0.hasSuffix("}\n") && $0.filter { $0 == "\n" }.count == 1 })
        let first = try #require(
            try JSONSerialization.jsonObject(with: Data(written[0].utf8)) as? [String: String])
        #expect(first["level"] == "info" && first["label"] == "test.json")
        #expect(first["message"] == "a \"quoted\"\nmessage\u{1}")
        #expect(first["request.id"] == "trace-9" && first["node.role"] == "master" && first["http.status"] == "200")
        #expect(first["path"] == "a\\b")
        #expect(first["time"]?.count == 24 && first["time"]?.hasSuffix("Z") == true, "\(first["time"] ?? "")")
        let second = try #require(
            try JSONSerialization.jsonObject(with: Data(written[1].utf8)) as? [String: String])
        #expect(second["level"] == "warning" && second["request.id"] == nil)
    }
}
