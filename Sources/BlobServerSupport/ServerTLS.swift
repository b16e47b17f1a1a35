public import BlobTransport
public import HummingbirdCore
public import Logging
public import NIOCore
import NIOSSL
public import ServiceLifecycle
import UnixSignals

/// HTTP/1.1 on every accepted connection, behind TLS when `certificate` is given. Each new
/// connection takes the certificate's current context, so a reload reaches new connections
/// while open ones finish on the identity they began with. A request the HTTP parser refuses
/// gets `malformed`'s answer (the role's error body) rather than an empty 400, and one whose
/// headers do not arrive within `headDeadline` of its first byte gets a 408 the same way.
extension HTTPServerBuilder {
    /// A connection with no traffic this long is closed. Clients' pools close theirs after 60 s
    /// (AsyncHTTPClient's default), so the server closing first does not race their next request.
    public static let idleTimeout = TimeAmount.seconds(300)

    public static func blobHTTP1(
        _ configuration: HTTP1Channel.Configuration = .init(idleTimeout: idleTimeout), certificate: ServerCertificate?,
        malformed: @escaping @Sendable (any Error) -> MalformedRequestAnswer,
        headDeadline: RequestHeadDeadline = RequestHeadDeadline()
    ) -> HTTPServerBuilder {
        var withAnswers = configuration
        let additional = configuration.additionalChannelHandlers
        withAnswers.additionalChannelHandlers = {
            [HTTPRequestGuard(answer: malformed)] + additional()
        }
        let channelConfiguration = withAnswers
        return .init { responder in
            let base = RequestHeadDeadlineChannel(
                base: HTTP1Channel(responder: responder, configuration: channelConfiguration), deadline: headDeadline,
                answer: malformed)
            guard let certificate else { return base }
            return ReloadableTLSChannel(base, certificate: certificate)
        }
    }
}

/// Hummingbird's `TLSChannel` fixes its context when the server is built; this one asks the
/// ``ServerCertificate`` at each connection.
public struct ReloadableTLSChannel<Base: ServerChildChannel & HTTPChannelHandler>: ServerChildChannel,
    HTTPChannelHandler
{
    public typealias Value = Base.Value
    let base: Base
    let certificate: ServerCertificate

    public init(_ base: Base, certificate: ServerCertificate) {
        self.base = base
        self.certificate = certificate
    }

    public func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let context = certificate.context
        return channel.eventLoop.makeCompletedFuture {
            try channel.pipeline.syncOperations.addHandler(NIOSSLServerHandler(context: context))
        }.flatMap {
            base.setup(channel: channel, logger: logger)
        }
    }

    public func handle(value: Value, logger: Logger) async {
        await base.handle(value: value, logger: logger)
    }

    public var responder: HTTPChannelHandler.Responder { base.responder }
}

/// Reads the server's certificate and key again on each SIGHUP (a renewed certificate, say).
/// A reload that fails keeps the identity in use and logs why.
public struct CertificateReloader: Service {
    let certificate: ServerCertificate
    let logger: Logger

    public init(certificate: ServerCertificate, logger: Logger) {
        self.certificate = certificate
        self.logger = logger
    }

    public func run() async throws {
        let signals = await UnixSignalsSequence(trapping: .sighup)
        for await _ in signals.cancelOnGracefulShutdown() {
            do {
                let loaded = try certificate.reload()
                logger.notice(
                    "TLS certificate reloaded",
                    metadata: [
                        "tls.certificate": "\(certificate.certificateFile)", "tls.serial": "\(loaded.serial)",
                        "tls.not_after": "\(loaded.notValidAfter)",
                    ])
            } catch {
                logger.error(
                    "TLS certificate reload failed; the previous certificate stays in use",
                    metadata: ["error.message": "\(error)"])
            }
        }
    }
}

extension ServerCertificate {
    /// Logs the identity a server starts with, or warns when a listener other machines can
    /// reach has no TLS: its tokens, keys and data would cross the network in the clear.
    public static func announce(_ certificate: ServerCertificate?, host: String, role: String, logger: Logger) {
        if let certificate {
            let loaded = certificate.current
            logger.info(
                "TLS on",
                metadata: [
                    "tls.certificate": "\(certificate.certificateFile)", "tls.serial": "\(loaded.serial)",
                    "tls.not_after": "\(loaded.notValidAfter)",
                ])
        } else if !ListenAddress.isLoopback(host) {
            logger.warning(
                """
                listening on \(host) without TLS: requests, tokens and data cross the network in the clear; \
                give this \(role) --tls-cert and --tls-key (plain HTTP is for loopback development)
                """)
        }
    }
}
