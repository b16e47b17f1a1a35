import BlobCore
public import Hummingbird
public import HTTPTypes
public import Logging
import Metrics
public import NIOCore

/// The outermost middleware of every role: gives each request its id (the caller's
/// ``RequestID/headerName`` when it sent a usable one, else a new one) for the whole time it is
/// served, the writing of a large or streamed body included; answers with the id; counts the
/// request and its latency by route (``ServerMetrics/recordRequest(route:method:status:duration:)``)
/// once the body is written;
/// and logs one `request` event at info level with id, method, route, status, bytes and duration.
public struct RequestObserver<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics
    let logger: Logger
    /// Routes whose events are logged at debug, not info: probes, scrapes and the servers'
    /// own heartbeats, which would drown the log.
    let quietRoutes: Set<String>
    public static var routineRoutes: Set<String> { ["/healthz", "/readyz", "/metrics"] }
    /// The role's large answers stream from elsewhere (the gateway's objects, fetched chunk by
    /// chunk as they are written): such a request is timed until its last byte is written,
    /// and keeps its id meanwhile. When false (the master's and the chunk servers' answers are
    /// in memory when the handler returns), a body of known length is never wrapped.
    let bodiesStream: Bool

    public init(
        metrics: ServerMetrics, logger: Logger, quietRoutes: Set<String> = Self.routineRoutes,
        bodiesStream: Bool = false
    ) {
        self.metrics = metrics
        self.logger = logger
        self.quietRoutes = quietRoutes
        self.bodiesStream = bodiesStream
    }

    static var headerField: HTTPField.Name { requestIDField }

    /// Bodies of at most this many bytes are not wrapped: their requests are timed until the
    /// handler returns, and their bytes counted from the declared length.
    static var smallBodyByteCount: Int { 64 << 10 }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        let start = ContinuousClock.now
        let id = RequestID.accepted(request.headers[Self.headerField]) ?? RequestID.make()
        var response: Response
        do {
            response = try await RequestID.$current.withValue(id) { try await next(request, context) }
        } catch {
            // Errors are answered by an inner middleware; one that escapes is still counted.
            let status = (error as? any HTTPResponseError)?.status ?? .internalServerError
            finish(request, context, id: id, status: status, sent: 0, start: start)
            throw error
        }
        response.headers[Self.headerField] = id
        let body = response.body
        let status = response.status
        // An in-memory body is written with the head in one go (Hummingbird's fast path); a
        // wrapped one would be three writes. It is counted as the handler returns it.
        if let length = body.contentLength, length <= Self.smallBodyByteCount || !bodiesStream {
            finish(request, context, id: id, status: status, sent: Int64(length), start: start)
            return response
        }
        let observer = self
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            let tally = BodyTally()
            do {
                try await RequestID.$current.withValue(id) {
                    try await body.write(CountingWriter(base: writer, tally: tally))
                }
            } catch {
                observer.finish(request, context, id: id, status: status, sent: tally.bytes, start: start)
                throw error
            }
            observer.finish(request, context, id: id, status: status, sent: tally.bytes, start: start)
        }
        return response
    }

    func finish(
        _ request: Request, _ context: Context, id: String, status: HTTPResponse.Status, sent: Int64,
        start: ContinuousClock.Instant
    ) {
        let duration = ContinuousClock.now - start
        let route = context.endpointPath ?? "unmatched"
        let declared = request.headers[.contentLength]
        let received = declared.flatMap { Int64($0) } ?? 0
        metrics.recordRequest(route: route, method: request.method.rawValue, status: status.code, duration: duration)
        metrics.receivedBytes.increment(by: received)
        metrics.sentBytes.increment(by: sent)
        if status.code >= 500 {
            metrics.recentErrors.note("\(request.method.rawValue) \(route) answered \(status.code) (request id \(id))")
        }
        let level: Logger.Level = quietRoutes.contains(route) ? .debug : .info
        guard logger.logLevel <= level else { return }
        logger.log(
            level: level, "request",
            metadata: [
                "request.id": "\(id)", "http.method": "\(request.method.rawValue)", "http.route": "\(route)",
                "http.status": "\(status.code)",
                "bytes.in": "\(declared ?? "-")", "bytes.out": "\(sent)",
                "duration.ms": "\(HumanSize.fixed(Double(duration.wholeNanoseconds) / 1e6, digits: 2))",
            ])
    }
}

/// ``RequestID/headerName`` as a field name, made once (not per request).
let requestIDField = HTTPField.Name(RequestID.headerName)!

/// What a response body writer wrote: its bytes, and when the first of them went out. Written
/// by the one task that writes the body, read once it has finished: no lock.
public final class BodyTally: @unchecked Sendable {
    public private(set) var bytes: Int64 = 0
    public private(set) var firstByte: ContinuousClock.Instant?

    public init() {}

    func note(_ count: Int) {
        bytes += Int64(count)
        if firstByte == nil, count > 0 { firstByte = .now }
    }
}

/// A response body writer that tallies what passes through it.
public struct CountingWriter: ResponseBodyWriter {
    var base: any ResponseBodyWriter
    let tally: BodyTally

    public init(base: any ResponseBodyWriter, tally: BodyTally) {
        self.base = base
        self.tally = tally
    }

    public mutating func write(_ buffer: ByteBuffer) async throws {
        tally.note(buffer.readableBytes)
        try await base.write(buffer)
    }

    public mutating func write(contentsOf buffers: some Sequence<ByteBuffer>) async throws {
        for buffer in buffers { tally.note(buffer.readableBytes) }
        try await base.write(contentsOf: buffers)
    }

    public consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        try await base.finish(trailingHeaders)
    }
}
