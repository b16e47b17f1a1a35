import BlobCore
import Foundation
public import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1

/// What a server answers a request it cannot parse with (oversized or repeated headers, a bad
/// Content-Length, bytes that are not HTTP): a status, a content type and a body in the role's
/// error format. The connection is closed after it.
public struct MalformedRequestAnswer: Sendable {
    public var status: HTTPResponse.Status
    public var contentType: String
    public var body: String

    public init(status: HTTPResponse.Status, contentType: String, body: String) {
        self.status = status
        self.contentType = contentType
        self.body = body
    }

    /// Which status a parse failure gets: 431 for headers over the limits, 400 otherwise.
    public static func status(for error: any Error) -> HTTPResponse.Status {
        if error is RequestHeadTimeout { return .requestTimeout }
        if let error = error as? HTTPParserError, case .headerOverflow = error { return .requestHeaderFieldsTooLarge }
        return .badRequest
    }

    /// A reason and message for logs and bodies.
    public static func describe(_ error: any Error) -> (reason: String, message: String) {
        if error is RequestHeadTimeout {
            return (
                "http.headTimeout", "the request's headers did not arrive within the deadline; the connection closes"
            )
        }
        if let error = error as? HTTPParserError, case .headerOverflow = error {
            return ("http.headersTooLarge", "the request's headers are over the size or count this server accepts")
        }
        return ("http.malformed", "the request is not valid HTTP/1.1 (\(error)); nothing was done")
    }
}

extension MalformedRequestAnswer {
    /// The master's and chunk servers' JSON error body (`{"code", "reason", "message", "node"}`).
    public static func json(node: String) -> @Sendable (any Error) -> MalformedRequestAnswer {
        { error in
            let (reason, message) = describe(error)
            let body = ErrorBody(
                code: BlobErrorCode.invalidArgument.rawValue, reason: reason, message: message, node: node)
            let text = (try? JSONEncoder().encode(body)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
            return MalformedRequestAnswer(status: status(for: error), contentType: "application/json", body: text)
        }
    }
}

/// After the HTTP codec, the one place that knows whether a response is owed on the connection:
/// - a request the parser refuses while no response is owed gets the role's error body (where
///   Hummingbird would answer an empty 400) and the connection closes;
/// - a parse failure while a response is still owed (bytes after a body, say) is passed on, so
///   Hummingbird answers it once that response is written and nothing is spliced into it; so is
///   the end of input in the middle of a request (a client gone mid-body), so that the request's
///   body fails rather than looks complete;
/// - ``RequestHeadArming``, before the decoder, is told when a head has come (its deadline is
///   met) and when no response is owed any more (the connection is idle).
final class HTTPRequestGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    let answer: @Sendable (any Error) -> MalformedRequestAnswer
    /// Request heads received whose response has not ended.
    private var responsesOwed = 0
    private var answered = false

    init(answer: @escaping @Sendable (any Error) -> MalformedRequestAnswer) {
        self.answer = answer
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = unwrapInboundIn(data) {
            responsesOwed += 1
            context.triggerUserOutboundEvent(RequestHeadEvent.headArrived, promise: nil)
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = unwrapOutboundIn(data), responsesOwed > 0 {
            responsesOwed -= 1
            if responsesOwed == 0 { context.triggerUserOutboundEvent(RequestHeadEvent.idle, promise: nil) }
        }
        context.write(data, promise: promise)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError || error is HTTP1TypeConversionError, responsesOwed == 0,
            context.channel.isActive, !Self.isEndOfInput(error)
        else {
            context.fireErrorCaught(error)
            return
        }
        guard !answered else { return }
        answered = true
        let reply = answer(error)
        let body = ByteBuffer(string: reply.body)
        var fields = HTTPFields()
        fields[.contentType] = reply.contentType
        fields[.contentLength] = "\(body.readableBytes)"
        fields[.connection] = "close"
        context.write(wrapOutboundOut(.head(HTTPResponse(status: reply.status, headerFields: fields))), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in bound.value.close(promise: nil) }
    }

    /// The peer closed in the middle of a request.
    static func isEndOfInput(_ error: any Error) -> Bool {
        if let error = error as? HTTPParserError, case .invalidEOFState = error { return true }
        return false
    }
}
