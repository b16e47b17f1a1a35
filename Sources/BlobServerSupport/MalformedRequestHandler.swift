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

/// Hummingbird answers a request its parser refuses with an empty 400. This handler, placed
/// after the HTTP codec, answers instead, with the role's error body, and closes the
/// connection. Other errors (a reset connection, say) pass on untouched.
final class MalformedRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    let answer: @Sendable (any Error) -> MalformedRequestAnswer
    private var answered = false

    init(answer: @escaping @Sendable (any Error) -> MalformedRequestAnswer) {
        self.answer = answer
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        guard error is HTTPParserError || error is HTTP1TypeConversionError else {
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
}
