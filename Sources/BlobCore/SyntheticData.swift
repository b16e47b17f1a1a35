/// Deterministic test and benchmark data: the same bytes for the same seed on every machine.
///
/// `logs` imitates what a log archive holds (nginx access lines and Java-style application
/// lines with stack traces, skewed client addresses and paths, random trace ids), so that its
/// zstd ratio and chunking behaviour resemble real logs (about 5-7x at level 1). For figures
/// that compare with other systems, the benchmarks also accept files from the shared
/// generator (`shared/bench/data/gen.py`).
public enum SyntheticData {
    /// Incompressible bytes, like video or already-compressed archives.
    public static func random(byteCount: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return [UInt8](unsafeUninitializedCapacity: byteCount) { buf, initialized in
            let raw = UnsafeMutableRawBufferPointer(buf)
            var i = 0
            while i + 8 <= byteCount {
                raw.storeBytes(of: rng.next(), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            var last = rng.next()
            while i < byteCount {
                raw[i] = UInt8(truncatingIfNeeded: last)
                last >>= 8
                i += 1
            }
            initialized = byteCount
        }
    }

    /// Log text of exactly `byteCount` bytes, ending with a newline when long enough.
    public static func logs(byteCount: Int, seed: UInt64) -> [UInt8] {
        var generator = LogTextGenerator(seed: seed)
        var out = [UInt8]()
        out.reserveCapacity(byteCount + 4096)
        while out.count < byteCount { generator.appendLine(to: &out) }
        out.removeLast(out.count - byteCount)
        if byteCount > 0 { out[byteCount - 1] = UInt8(ascii: "\n") }
        return out
    }
}

/// Line-by-line log text: see ``SyntheticData/logs(byteCount:seed:)``.
public struct LogTextGenerator {
    private var rng: SplitMix64
    private var seconds: Int

    public init(seed: UInt64) {
        rng = SplitMix64(seed: seed)
        seconds = 1_700_000_000 + Int(seed % 86_400)
    }

    static let paths = [
        "/", "/api/v1/products", "/api/v1/cart", "/api/v1/orders", "/static/js/app.js", "/static/css/main.css",
        "/search", "/account/orders", "/api/v1/users/me", "/healthz", "/metrics", "/images/banner.jpg",
        "/api/v1/recommendations", "/checkout", "/api/v1/payments", "/favicon.ico",
    ]
    static let agents: [String] = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
            + "(KHTML, like Gecko) Chrome/122.0.0.0 Safari/537.36",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
            + "(KHTML, like Gecko) Version/17.3.1 Safari/605.1.15",
        "Mozilla/5.0 (X11; Linux x86_64; rv:123.0) Gecko/20100101 Firefox/123.0",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 17_3_1 like Mac OS X) AppleWebKit/605.1.15 "
            + "(KHTML, like Gecko) Mobile/15E148",
        "curl/8.5.0", "python-requests/2.31.0", "Go-http-client/1.1", "kube-probe/1.28", "Prometheus/2.49.1",
    ]
    static let statuses = [200, 200, 200, 200, 200, 200, 200, 200, 304, 404, 201, 302, 500, 401, 429]
    static let methods = ["GET", "GET", "GET", "GET", "GET", "POST", "POST", "PUT", "DELETE", "HEAD"]
    static let services = [
        "c.e.shop.OrderService", "c.e.shop.CartController", "c.e.shop.PaymentGateway", "c.e.shop.UserService",
        "c.e.shop.SearchService", "o.h.e.j.s.SqlExceptionHelper", "c.z.h.pool.HikariPool",
        "o.a.k.c.producer.KafkaProducer", "c.e.shop.ShippingService",
    ]
    static let words = [
        "shoes", "shirt", "jacket", "red", "blue", "running", "laptop", "phone", "case", "charger", "desk",
        "chair", "coffee", "mug", "bag", "watch", "gift", "book", "garden", "sale", "new", "organic",
    ]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// A skewed pick: low indices are much more likely (roughly Zipf-like).
    private mutating func skewed(_ n: Int) -> Int {
        let a = Int(rng.next() % UInt64(n))
        let b = Int(rng.next() % UInt64(n))
        return Swift.min(a, b) * Swift.min(a, b) / Swift.max(1, n - 1)
    }

    private mutating func number(_ upper: Int) -> Int { Int(rng.next() % UInt64(upper)) }

    private mutating func hex(_ digits: Int) -> String {
        let v = rng.next()
        let s = String(v, radix: 16)
        let padded = String(repeating: "0", count: Swift.max(0, 16 - s.count)) + s
        return String(padded.prefix(digits))
    }

    private func two(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }

    /// Appends one line (or one multi-line entry) of log text.
    public mutating func appendLine(to out: inout [UInt8]) {
        seconds += number(3)
        let day = (seconds / 86_400) % 28 + 1
        let hms = "\(two((seconds / 3600) % 24)):\(two((seconds / 60) % 60)):\(two(seconds % 60))"
        let line: String
        if number(100) < 55 {
            let ip = "10.\(skewed(40)).\(skewed(200)).\(1 + skewed(250))"
            let path =
                Self.paths[skewed(Self.paths.count)]
                + (number(3) == 0 ? "/\(10_000 + skewed(50_000))" : "")
                + (number(5) == 0 ? "?q=\(Self.words[skewed(Self.words.count)])" : "")
            line =
                "\(ip) - - [\(two(day))/\(Self.months[(seconds / 2_592_000) % 12])/2024:\(hms) +0000] "
                + "\"\(Self.methods[skewed(Self.methods.count)]) \(path) HTTP/1.1\" "
                + "\(Self.statuses[skewed(Self.statuses.count)]) \(number(5000) + skewed(200_000)) \"-\" "
                + "\"\(Self.agents[skewed(Self.agents.count)])\" rt=0.\(two(number(100)))\(number(10)) "
                + "trace=\(hex(16))\n"
        } else {
            let level = ["INFO", "INFO", "INFO", "DEBUG", "DEBUG", "WARN", "ERROR"][skewed(7)]
            let svc = Self.services[skewed(Self.services.count)]
            var text =
                "2024-\(two(1 + (seconds / 2_592_000) % 12))-\(two(day)) \(hms).\(number(1000)) "
                + "\(level) [http-nio-8080-exec-\(1 + number(32))] \(svc) - "
            switch number(6) {
            case 0:
                text +=
                    "Order \(100_000 + skewed(900_000)) created for user \(skewed(50_000)) "
                    + "items=\(1 + number(9)) (took \(number(400)) ms)"
            case 1: text += "Cart updated: user=\(skewed(50_000)) sku=SKU-\(skewed(9999)) qty=\(1 + number(5))"
            case 2:
                text +=
                    "Search query=\"\(Self.words[skewed(Self.words.count)]) "
                    + "\(Self.words[number(Self.words.count)])\" results=\(number(500)) took \(number(90)) ms"
            case 3: text += "HikariPool-1 - Pool stats (total=20, active=\(number(20)), idle=\(number(20)), waiting=0)"
            case 4: text += "Redis GET product:\(skewed(90_000)) hit=\(number(4) > 0) ttl=\(number(3600))s"
            default: text += "User \(skewed(50_000)) logged in from session sess-\(hex(12)) mfa=false"
            }
            text += "\n"
            if level == "ERROR" {
                text += "java.lang.IllegalStateException: order \(number(1_000_000)) in state PAID cannot move to NEW\n"
                for frame in [
                    "OrderService.transition(OrderService.java:212)", "OrderController.update(OrderController.java:88)",
                    "jdk.internal.reflect.GeneratedMethodAccessor.invoke(Unknown Source)",
                    "org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:883)",
                ]
                .prefix(2 + number(3)) {
                    text += "\tat c.e.shop.\(frame)\n"
                }
            }
            line = text
        }
        out.append(contentsOf: line.utf8)
    }
}
