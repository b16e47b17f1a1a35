import BlobCore
@testable import BlobMaster
import Foundation
import Logging
import PostgresNIO
import Synchronization
import Testing

/// The engines every metadata test runs on.
enum Backend: String, CaseIterable, Sendable, CustomTestStringConvertible {
    case sqlite
    case postgres

    var testDescription: String { rawValue }
}

/// A database clock that tests set by hand, to any time (it may go back: the stored times are data).
final class SettableDatabaseClock: Sendable {
    private let milliseconds = Mutex<Int64>(0)

    func set(_ value: Int64) { milliseconds.withLock { $0 = value } }
    var now: Int64 { milliseconds.withLock { $0 } }
    var read: @Sendable () -> Int64 { { [self] in self.now } }
}

enum MetadataTesting {
    static let logger = Logger(label: "test.metadata")

    /// The throw-away PostgreSQL server that `Scripts/test.sh` starts (`Scripts/postgres.sh`):
    /// `postgres://USER@127.0.0.1:PORT/postgres`, from `BLOB_TEST_POSTGRES_URL`.
    static func postgresServer() throws -> PostgresLocation {
        guard let url = ProcessInfo.processInfo.environment["BLOB_TEST_POSTGRES_URL"] else {
            throw TestFailure(
                "BLOB_TEST_POSTGRES_URL is not set: run the tests with `bash Scripts/test.sh`, which starts a "
                    + "throw-away PostgreSQL, or start one with `source Scripts/postgres.sh; postgres_start`")
        }
        return try PostgresLocation(url: url, password: nil)
    }

    /// A fresh, empty database on the test server, dropped after `body`.
    static func withPostgresDatabase<T>(_ body: (PostgresLocation) async throws -> T) async throws -> T {
        let server = try postgresServer()
        let name = "blobtest_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased()
        let admin = try await PostgresConnection.connect(
            configuration: server.connectionConfiguration(server.hosts[0]), id: 1, logger: logger)
        _ = try await admin.query(PostgresQuery(unsafeSQL: "CREATE DATABASE \(name)"), logger: logger)
        var location = server
        location.database = name
        do {
            let result = try await body(location)
            _ = try? await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: logger)
            try? await admin.close()
            return result
        } catch {
            _ = try? await admin.query(PostgresQuery(unsafeSQL: "DROP DATABASE \(name) WITH (FORCE)"), logger: logger)
            try? await admin.close()
            throw error
        }
    }

    /// A fresh store on `backend` with a manual database clock; `body` may open the same
    /// database again with `reopen`.
    static func withStore(
        _ backend: Backend,
        _ body: (MetadataStore, SettableDatabaseClock, _ reopen: MetadataLocation) async throws -> Void
    ) async throws {
        let clock = SettableDatabaseClock()
        switch backend {
        case .sqlite:
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("meta-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: dir) }
            let location = MetadataLocation.sqlite(path: dir.appendingPathComponent("master.sqlite").path)
            try await location.withStore(logger: logger, clock: clock.read) { store in
                try await body(store, clock, location)
            }
        case .postgres:
            try await withPostgresDatabase { database in
                let location = MetadataLocation.postgres(database)
                try await location.withStore(logger: logger, clock: clock.read) { store in
                    try await body(store, clock, location)
                }
            }
        }
    }

    static func withStore(
        _ backend: Backend, _ body: (MetadataStore, SettableDatabaseClock) async throws -> Void
    ) async throws {
        try await withStore(backend) { store, clock, _ in try await body(store, clock) }
    }

    /// Chunks of the given sizes, recorded as durable on `server`, and a manifest tiling them.
    static func upload(
        _ store: MetadataStore, _ path: String, sizes: [Int], seed: UInt64 = 1,
        server: String = "cs-1"
    ) async throws -> ManifestCommit {
        var entries: [ManifestEntry] = []
        var offset: Int64 = 0
        var reports: [ReplicaReport] = []
        for (i, n) in sizes.enumerated() {
            let id = ChunkID(hashing: SyntheticData.random(byteCount: n, seed: seed &* 1000 &+ UInt64(i)))
            entries.append(ManifestEntry(chunkID: id, offset: offset, length: Int64(n)))
            reports.append(ReplicaReport(chunkID: id, plainByteCount: Int64(n), storedByteCount: Int64(n / 2)))
            offset += Int64(n)
        }
        try await store.recordReplicas(reports, on: server)
        return ManifestCommit(
            path: try BlobPath(path), size: offset, contentType: "video/mp4",
            sha256: String(repeating: "ab", count: 32), chunks: entries)
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
