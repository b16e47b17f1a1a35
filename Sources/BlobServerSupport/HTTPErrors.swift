public import BlobCore
import Foundation
public import Hummingbird
public import HTTPTypes
import NIOCore

/// The one place where error codes become HTTP statuses.
public enum ErrorStatus {
    public static func status(for code: BlobErrorCode) -> HTTPResponse.Status {
        switch code {
        case .invalidArgument: .badRequest
        case .unauthenticated: .unauthorized
        case .permissionDenied: .forbidden
        case .notFound: .notFound
        case .alreadyExists, .versionConflict, .staleEpoch, .staleTerm, .failedPrecondition: .conflict
        case .tooLarge: .contentTooLarge
        case .corruptChunk: .unprocessableContent
        case .insufficientStorage: .init(code: 507, reasonPhrase: "Insufficient Storage")
        case .unavailable, .insufficientReplicas, .notLeader: .serviceUnavailable
        case .timeout: .gatewayTimeout
        default: .internalServerError
        }
    }
}

/// An error answered as JSON: `{"code", "reason", "message", "node"}`.
public struct JSONErrorResponse: HTTPResponseError {
    public let body: ErrorBody
    public let status: HTTPResponse.Status

    public init(_ error: any Error, node: String?) {
        let coded: (code: BlobErrorCode, reason: String, message: String)
        switch error {
        case let e as any CodedError:
            coded = (e.code, e.reason, e.message)
        case let e as HTTPError where e.status == .notFound:
            coded = (.notFound, "http.noRoute", "no such route; see docs/api.md for the routes")
        case let e as HTTPError where e.status == .methodNotAllowed:
            coded = (.invalidArgument, "http.methodNotAllowed", "this route does not take that method; see docs/api.md")
        case let e as HTTPError:
            coded = (
                e.status.code < 500 ? .invalidArgument : .internal, "http.\(e.status.code)", e.body ?? "\(e.status)"
            )
        case is NIOTooManyBytesError:
            coded = (
                .tooLarge, "body.tooLarge",
                "the body is larger than the largest chunk frame "
                    + "(\(FrameHeader.byteCount + Limits.maxStoredByteCount) bytes)"
            )
        default:
            coded = (.internal, "internal", "unexpected error: \(error)")
        }
        body = ErrorBody(code: coded.code.rawValue, reason: coded.reason, message: coded.message, node: node)
        status =
            coded.code == .invalidArgument && (error as? HTTPError)?.status == .methodNotAllowed
            ? .methodNotAllowed : ErrorStatus.status(for: coded.code)
    }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json"
        let data = (try? JSONEncoder().encode(body)) ?? Data("{}".utf8)
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}

/// Turns every error a route throws, and unknown routes, into a JSON error response.
public struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    let node: String

    public init(node: String) {
        self.node = node
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            return try JSONErrorResponse(error, node: node).response(from: request, context: context)
        }
    }
}

/// A JSON body with sorted keys.
public func jsonResponse(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
    var headers = HTTPFields()
    headers[.contentType] = "application/json"
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return Response(
        status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try encoder.encode(value))))
}

/// Checks a request's token against the cluster secret; returns the signer's role.
public func authorize(_ request: Request, signer: RequestSigner, roles: Set<RequestRole>) throws -> RequestRole {
    try signer.verify(
        header: request.headers[.authorization], method: request.method.rawValue,
        pathAndQuery: request.head.path ?? "", now: Int64(Date().timeIntervalSince1970), allowed: roles)
}

/// Decodes a JSON body of at most `maxByteCount` bytes; malformed JSON is `invalidArgument`.
public func decodeJSONBody<T: Decodable>(_ type: T.Type, from request: Request, maxByteCount: Int) async throws -> T {
    let body = try await request.body.collect(upTo: maxByteCount)
    do {
        return try JSONDecoder().decode(type, from: Data(buffer: body))
    } catch let error as any CodedError {
        throw BlobError(error.code, reason: error.reason, error.message)
    } catch {
        throw BlobError(.invalidArgument, reason: "body.json", "the body is not the expected JSON: \(error)")
    }
}
