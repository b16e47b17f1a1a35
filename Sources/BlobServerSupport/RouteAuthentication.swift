public import BlobCore
import Foundation
public import HTTPTypes
public import Hummingbird
import Synchronization

/// The request context of the master and the chunk servers: the role whose token
/// ``RequireToken`` verified, set before any route handler runs.
public struct ClusterRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    /// The verified signer's role; nil only before ``RequireToken`` ran (never in a handler
    /// registered through ``AuthenticatedRoutes``).
    public var role: RequestRole?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        role = nil
    }
}

/// Refuses a request whose cluster token is missing, forged, expired or of a role outside
/// ``roles`` (401 or 403 with a JSON body); otherwise passes it on with the role in the context.
public struct RequireToken: RouterMiddleware {
    public typealias Context = ClusterRequestContext
    public let roles: Set<RequestRole>
    let signer: RequestSigner

    public init(roles: Set<RequestRole>, signer: RequestSigner) {
        precondition(!roles.isEmpty, "a route accepts at least one role")
        self.roles = roles
        self.signer = signer
    }

    public func handle(
        _ request: Request, context: Context, next: (Request, Context) async throws -> Response
    ) async throws -> Response {
        var context = context
        context.role = try authorize(request, signer: signer, roles: roles)
        return try await next(request, context)
    }
}

/// The only way the master and the chunk servers register routes: each route names the roles
/// whose tokens it accepts, and sits behind a ``RequireToken`` for them. A route cannot be
/// added without saying who may call it, and the table of what was declared is kept for the
/// test that sends every route an unsigned and a wrong-role request.
public struct AuthenticatedRoutes {
    public let router: Router<ClusterRequestContext>
    let signer: RequestSigner
    public let table: RouteTable

    public init(router: Router<ClusterRequestContext>, signer: RequestSigner) {
        self.router = router
        self.signer = signer
        self.table = RouteTable()
    }

    public typealias Handler = @Sendable (Request, ClusterRequestContext) async throws -> Response

    public func on(
        _ method: HTTPRequest.Method, _ path: String, roles: Set<RequestRole>, use handler: @escaping Handler
    ) {
        router.group().add(middleware: RequireToken(roles: roles, signer: signer))
            .on(RouterPath(path), method: method, use: handler)
        table.add(RouteTable.Entry(method: method, path: RouterPath(path).description, roles: roles))
    }

    public func get(_ path: String, roles: Set<RequestRole>, use handler: @escaping Handler) {
        on(.get, path, roles: roles, use: handler)
    }
    public func head(_ path: String, roles: Set<RequestRole>, use handler: @escaping Handler) {
        on(.head, path, roles: roles, use: handler)
    }
    public func put(_ path: String, roles: Set<RequestRole>, use handler: @escaping Handler) {
        on(.put, path, roles: roles, use: handler)
    }
    public func post(_ path: String, roles: Set<RequestRole>, use handler: @escaping Handler) {
        on(.post, path, roles: roles, use: handler)
    }
    public func delete(_ path: String, roles: Set<RequestRole>, use handler: @escaping Handler) {
        on(.delete, path, roles: roles, use: handler)
    }

    /// `GET /healthz` and `GET /readyz`, the only routes open without a token
    /// (``RouteTable/openPaths``): load balancers and orchestrators probe them, and they say
    /// nothing beyond whether the server can serve.
    public func probes(role: String, readiness: @escaping ReadinessCheck) {
        Probes.register(on: router, role: role, readiness: readiness)
        for path in RouteTable.openPaths {
            table.add(RouteTable.Entry(method: .get, path: path, roles: []))
        }
    }
}

/// What routes were registered through ``AuthenticatedRoutes``, and for which roles.
public final class RouteTable: Sendable {
    public struct Entry: Sendable, Hashable {
        public var method: HTTPRequest.Method
        /// The route's pattern as Hummingbird prints it (`/v1/chunks/{id}`).
        public var path: String
        /// Empty for the open probe routes.
        public var roles: Set<RequestRole>
        /// `METHOD /path`, as `Router.routes` describes a route.
        public var description: String { "\(method) \(path)" }
    }

    /// The routes answered without a token.
    public static let openPaths = ["/healthz", "/readyz"]

    private let entries = Mutex<[Entry]>([])

    public init() {}

    func add(_ entry: Entry) { entries.withLock { $0.append(entry) } }

    public var all: [Entry] { entries.withLock { $0 } }
}
