import HTTPTypes
import NIOCore
import NIOHTTPTypes

/// Answers `Expect: 100-continue` with an interim `100 Continue` as the request head arrives,
/// for signed requests (an Authorization header, or a signature in the query). S3 SDKs (boto3,
/// the aws CLI) send it on every PUT and otherwise wait a second before sending the body;
/// Hummingbird does not answer it by itself. An unsigned request gets no 100: its final answer
/// (403 unless the bucket takes it) comes before any body is sent.
final class ContinueHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundOut = HTTPResponsePart

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head(let head) = unwrapInboundIn(data), head.headerFields[.expect]?.lowercased() == "100-continue",
            head.headerFields[.authorization] != nil || Self.isPresigned(head.path ?? "")
                || head.headerFields[.contentType]?.lowercased().hasPrefix("multipart/form-data") == true
        {
            context.writeAndFlush(wrapOutboundOut(.head(HTTPResponse(status: .continue))), promise: nil)
        }
        context.fireChannelRead(data)
    }

    static func isPresigned(_ path: String) -> Bool {
        guard let query = path.split(separator: "?", maxSplits: 1).dropFirst().first else { return false }
        return query.contains("X-Amz-Signature=") || query.contains("Signature=")
    }
}
