import BlobCore
@testable import BlobMaster
import Testing

@Suite("PostgreSQL locations")
struct PostgresLocationTests {
    @Test("one host or several, each with its port, the database and sslmode; bad lists are refused by name")
    func hostLists() throws {
        let one = try PostgresLocation(url: "postgres://blob@db1:6432/meta", password: nil)
        #expect(one.hosts == [PostgresEndpoint(host: "db1", port: 6432)] && one.database == "meta")
        #expect(one.user == "blob" && one.sslMode == "prefer")
        let three = try PostgresLocation(
            url: "postgresql://blob@10.0.0.1:5432,10.0.0.2,[::1]:5433/meta?sslmode=disable", password: "secret")
        #expect(
            three.hosts == [
                PostgresEndpoint(host: "10.0.0.1", port: 5432), PostgresEndpoint(host: "10.0.0.2", port: 5432),
                PostgresEndpoint(host: "::1", port: 5433),
            ])
        #expect(three.sslMode == "disable" && three.database == "meta")
        #expect(three.description == "postgres://blob@10.0.0.1:5432,10.0.0.2:5432,[::1]:5433/meta")
        let refused = [
            "postgres://blob@h1:1,h1:1/meta": "listed twice",
            "postgres://blob@h1:1,,h2/meta": "is not HOST",
            "postgres://blob:pw@h1/meta": "password in the URL",
            "postgres://h1/meta": "no user",
            "postgres://blob@h1": "no database",
            "postgres://blob@h1/meta?sslmode=maybe": "sslmode",
        ]
        for (url, why) in refused {
            let error = #expect(throws: BlobError.self) { try PostgresLocation(url: url, password: nil) }
            #expect(error?.reason == "metadata.location" && error?.message.contains(why) == true, "\(url): \(error!)")
        }
    }
}
