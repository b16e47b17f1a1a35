import BlobCore
import HTTPTypes
import Hummingbird

/// Answers every successful namespace write of a client (commits, deletes, copies, multipart
/// completions, bucket changes) with the metadata database's write position after it
/// (``MetadataPosition/header``): the client sends it back on its reads, and a hot standby
/// answers them only once it has replayed that far. Only a master that reads from standbys
/// (`--metadata-replicas`) answers positions: give every master the same standbys.
struct MetadataPositionMiddleware<Context: RequestContext>: RouterMiddleware {
    let store: MetadataStore

    /// The routes whose writes a client may read back.
    static func isNamespaceWrite(_ request: Request) -> Bool {
        guard request.method != .get, request.method != .head else { return false }
        let path = request.uri.path
        return path.hasPrefix("/v1/files") || path.hasPrefix("/v1/uploads") || path.hasPrefix("/v1/buckets")
    }

    func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var response = try await next(request, context)
        guard Self.isNamespaceWrite(request), (200..<300).contains(response.status.code),
            let position = try? await store.writePositionForClient()
        else { return response }
        // A write whose position could not be asked (the primary failing over just after it)
        // goes without one: the client's next read then waits for an older position, or, with
        // none, for everything committed when it arrives.
        response.headers[HTTPField.Name(MetadataPosition.header)!] = position.description
        return response
    }
}
