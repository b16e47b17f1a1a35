import HummingbirdCore
import Logging
public import NIOCore
import NIOHTTPTypes

/// A request's head (request line and headers) must arrive within a deadline, or the connection
/// gets the role's 408 body and is closed: a slow-loris client trickling its headers, or one
/// that connects (or starts a TLS handshake) and sends nothing, holds a connection for the
/// deadline, not for as long as it likes. The deadline runs from the connection's start for the
/// first request, and from the first byte of each later one; an idle keep-alive connection
/// between requests is not timed (clients' pools keep those open on purpose), and the server's
/// idle timeout closes it in the end.
public struct RequestHeadDeadline: Sendable {
    public static let standard = TimeAmount.seconds(30)
    public let timeout: TimeAmount

    public init(_ timeout: TimeAmount = standard) {
        self.timeout = timeout
    }
}

/// The error a missed deadline is answered as (``MalformedRequestAnswer``).
public struct RequestHeadTimeout: Error, CustomStringConvertible {
    public var description: String { "the request's headers did not arrive in time" }
}

/// What ``HTTPRequestGuard``, after the HTTP codec, tells ``RequestHeadArming`` before it (an
/// outbound user event, which travels towards the socket).
enum RequestHeadEvent: Sendable {
    /// A request's head has been parsed: its deadline is met.
    case headArrived
    /// Every response owed has been written: the next bytes start a new request.
    case idle
}

/// Before the HTTP decoder (after TLS): the connection's start, and the first bytes of each
/// later request, arm the deadline; ``HTTPRequestGuard`` disarms it when the head has come.
/// Nothing is armed while a response is owed, so a 408 never lands inside a response.
final class RequestHeadArming: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    enum State { case idle, awaitingHead, inRequest }
    private var state = State.idle
    private var timer: Scheduled<Void>?
    let timeout: TimeAmount
    let answer: @Sendable (any Error) -> MalformedRequestAnswer

    init(timeout: TimeAmount, answer: @escaping @Sendable (any Error) -> MalformedRequestAnswer) {
        self.timeout = timeout
        self.answer = answer
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        arm(context: context)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        arm(context: context)
        context.fireChannelRead(data)
    }

    /// Starts the deadline when the connection is idle (its start, or no response owed).
    private func arm(context: ChannelHandlerContext) {
        guard state == .idle else { return }
        state = .awaitingHead
        let bound = NIOLoopBound((context, self), eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(in: timeout) {
            let (context, handler) = bound.value
            handler.expire(context: context)
        }
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let event = event as? RequestHeadEvent else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        switch event {
        case .headArrived:
            timer?.cancel()
            timer = nil
            state = .inRequest
        case .idle:
            if state == .inRequest { state = .idle }
        }
        promise?.succeed(())
    }

    func channelInactive(context: ChannelHandlerContext) {
        timer?.cancel()
        timer = nil
        context.fireChannelInactive()
    }

    /// The head did not come: answer 408 in the role's format, raw (the HTTP encoder sits
    /// after this handler), and close.
    func expire(context: ChannelHandlerContext) {
        guard state == .awaitingHead, context.channel.isActive else { return }
        let reply = answer(RequestHeadTimeout())
        let body = Array(reply.body.utf8)
        var head = "HTTP/1.1 \(reply.status.code) \(reply.status.reasonPhrase)\r\n"
        head += "Content-Type: \(reply.contentType)\r\nContent-Length: \(body.count)\r\nConnection: close\r\n\r\n"
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        context.writeAndFlush(wrapOutboundOut(ByteBuffer(bytes: Array(head.utf8) + body))).whenComplete { _ in
            bound.value.close(promise: nil)
        }
    }
}

/// Puts ``RequestHeadArming`` in front of the base channel's handlers (after TLS, when there
/// is TLS); the base must have ``HTTPRequestGuard`` among its HTTP handlers.
struct RequestHeadDeadlineChannel<Base: ServerChildChannel & HTTPChannelHandler>: ServerChildChannel,
    HTTPChannelHandler
{
    typealias Value = Base.Value
    let base: Base
    let deadline: RequestHeadDeadline
    let answer: @Sendable (any Error) -> MalformedRequestAnswer

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let handler = RequestHeadArming(timeout: deadline.timeout, answer: answer)
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(handler)
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }

    var responder: HTTPChannelHandler.Responder { base.responder }
}
