public import BlobCore
public import BlobServerSupport
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import NIOCore

/// Sends every route a server registered the requests that authentication must refuse, and
/// one it must let through, and returns what went wrong (empty when every route is guarded).
///
/// For each route that `Router.routes` lists (every route, however it was added):
/// - it must be in the ``RouteTable`` of ``AuthenticatedRoutes`` (registered with its roles),
///   or be one of the open probes (``RouteTable/openPaths``), which answer without a token;
/// - without a token it answers 401;
/// - with a valid token of each role it does not accept it answers 403;
/// - with a valid token of each role it accepts it answers neither (the handler ran).
///
/// `parameters` fills the path's captures (`{id}` and so on) with values the handlers accept
/// as well-formed; POST and PUT requests carry the body `{}`.
public enum RouteAuthenticationCheck {
    public static func failures(
        of routes: AuthenticatedRoutes, signer: RequestSigner, parameters: [String: String]
    ) async throws -> [String] {
        let declared = Dictionary(
            routes.table.all.map { ($0.description, $0.roles) }, uniquingKeysWith: { first, _ in first })
        let cases = routes.router.routes.map { route in
            Case(
                description: route.description, method: route.method,
                path: concretePath(route.path.description, parameters: parameters), roles: declared[route.description])
        }
        if cases.isEmpty { return ["no routes are registered"] }
        let expiry = Int64(Date().timeIntervalSince1970) + 300
        return try await Application(router: routes.router).test(.router) { client in
            var failures: [String] = []
            for route in cases {
                let body: ByteBuffer? = route.method == .post || route.method == .put ? ByteBuffer(string: "{}") : nil
                if route.roles == nil {
                    failures.append(
                        "\(route.description): registered without declaring the roles it accepts "
                            + "(use AuthenticatedRoutes)"
                    )
                }
                let unsigned = try await client.execute(uri: route.path, method: route.method, body: body).status
                if route.roles?.isEmpty == true {
                    // An open route: only the probes may be one, and they answer anyone.
                    if route.method != .get || !RouteTable.openPaths.contains(route.path) {
                        failures.append("\(route.description): open without a token, and not a probe")
                    }
                    if unsigned != .ok && unsigned != .serviceUnavailable {
                        failures.append("\(route.description): a probe answered \(unsigned.code) without a token")
                    }
                    continue
                }
                if unsigned != .unauthorized {
                    failures.append(
                        "\(route.description): answered \(unsigned.code) to a request without a token, not 401")
                }
                for role in RequestRole.allCases {
                    var headers = HTTPFields()
                    headers[.authorization] = signer.token(
                        role: role, method: route.method.rawValue, pathAndQuery: route.path, expiry: expiry)
                    let status = try await client.execute(
                        uri: route.path, method: route.method, headers: headers, body: body
                    ).status
                    let accepted = route.roles?.contains(role) ?? false
                    if accepted, status == .unauthorized || status == .forbidden {
                        failures.append(
                            "\(route.description): refused a \(role) token (\(status.code)) "
                                + "though it declares that role"
                        )
                    } else if !accepted, status != .forbidden {
                        failures.append(
                            "\(route.description): answered \(status.code) to a \(role) token, "
                                + "a role it does not accept, not 403"
                        )
                    }
                }
            }
            return failures
        }
    }

    struct Case: Sendable {
        var description: String
        var method: HTTPRequest.Method
        var path: String
        var roles: Set<RequestRole>?
    }

    /// `/v1/chunks/{id}` with `id` from `parameters` (or `x`); wildcards become `x`.
    static func concretePath(_ pattern: String, parameters: [String: String]) -> String {
        pattern.split(separator: "/", omittingEmptySubsequences: false).map { component -> String in
            if component.hasPrefix("{"), component.hasSuffix("}") {
                return parameters[String(component.dropFirst().dropLast())] ?? "x"
            }
            if component.hasPrefix(":") { return parameters[String(component.dropFirst())] ?? "x" }
            if component == "*" || component == "**" { return "x" }
            return String(component)
        }.joined(separator: "/")
    }
}
