import BlobCore
import Foundation
import Logging
import PostgresNIO

/// The PostgreSQL schema and its versioned migrations. Each migration is a list of statements
/// run in one transaction with the version it brings; masters starting together queue on a
/// transaction-scoped advisory lock, so each migration runs once.
enum PostgresSchema {
    /// Migrations in order; the version of the schema is the number of them applied.
    static let migrations: [(name: String, statements: [String])] = [
        (
            "v1: namespace, chunks, replicas, servers, rings, gc, settings, buckets, keys, uploads",
            [
                """
                CREATE TABLE chunks (
                    id BYTEA PRIMARY KEY CHECK (length(id) = 32),
                    plain_size BIGINT NOT NULL CHECK (plain_size >= 0),
                    stored_size BIGINT NOT NULL CHECK (stored_size >= 0),
                    first_seen_ms BIGINT NOT NULL,
                    block_digests BYTEA
                )
                """,
                """
                CREATE TABLE replicas (
                    chunk_id BYTEA NOT NULL REFERENCES chunks(id),
                    server_id TEXT NOT NULL,
                    reported_ms BIGINT NOT NULL,
                    PRIMARY KEY (chunk_id, server_id)
                )
                """,
                "CREATE INDEX replicas_by_server ON replicas(server_id, chunk_id)",
                """
                CREATE TABLE versions (
                    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                    path BYTEA NOT NULL,
                    version BIGINT NOT NULL,
                    size BIGINT NOT NULL,
                    content_type TEXT NOT NULL,
                    sha256 TEXT NOT NULL,
                    created_ms BIGINT NOT NULL,
                    deleted INTEGER NOT NULL DEFAULT 0,
                    stored_bytes BIGINT NOT NULL DEFAULT 0,
                    chunk_count BIGINT NOT NULL DEFAULT 0,
                    metadata TEXT NOT NULL DEFAULT '',
                    UNIQUE (path, version)
                )
                """,
                """
                CREATE TABLE manifest_entries (
                    version_id BIGINT NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
                    seq INTEGER NOT NULL,
                    chunk_id BYTEA NOT NULL REFERENCES chunks(id),
                    "offset" BIGINT NOT NULL,
                    length BIGINT NOT NULL,
                    PRIMARY KEY (version_id, seq)
                )
                """,
                "CREATE INDEX manifest_entries_by_chunk ON manifest_entries(chunk_id)",
                """
                CREATE TABLE current_files (
                    path BYTEA PRIMARY KEY,
                    version_id BIGINT NOT NULL REFERENCES versions(id),
                    version BIGINT NOT NULL,
                    size BIGINT NOT NULL,
                    content_type TEXT NOT NULL,
                    sha256 TEXT NOT NULL,
                    created_ms BIGINT NOT NULL,
                    stored_bytes BIGINT NOT NULL,
                    chunk_count BIGINT NOT NULL,
                    metadata TEXT NOT NULL DEFAULT ''
                )
                """,
                "CREATE TABLE path_heads (path BYTEA PRIMARY KEY, last_version BIGINT NOT NULL)",
                """
                CREATE TABLE servers (
                    id TEXT PRIMARY KEY,
                    address TEXT NOT NULL,
                    zone TEXT NOT NULL,
                    weight DOUBLE PRECISION NOT NULL,
                    capacity_bytes BIGINT,
                    registered_ms BIGINT NOT NULL
                )
                """,
                "CREATE TABLE rings (epoch BIGINT PRIMARY KEY, json BYTEA NOT NULL)",
                "CREATE TABLE gc_candidates (chunk_id BYTEA PRIMARY KEY, marked_ms BIGINT NOT NULL)",
                """
                CREATE TABLE gc_orphans (
                    chunk_id BYTEA NOT NULL,
                    server_id TEXT NOT NULL,
                    first_seen_ms BIGINT NOT NULL,
                    PRIMARY KEY (chunk_id, server_id)
                )
                """,
                "CREATE TABLE settings (key TEXT PRIMARY KEY, value BYTEA NOT NULL)",
                """
                CREATE TABLE buckets (
                    name TEXT PRIMARY KEY,
                    created_ms BIGINT NOT NULL,
                    public_read INTEGER NOT NULL DEFAULT 0,
                    lifecycle TEXT NOT NULL DEFAULT ''
                )
                """,
                "CREATE TABLE access_keys (id TEXT PRIMARY KEY, secret TEXT NOT NULL, name TEXT NOT NULL, "
                    + "created_ms BIGINT NOT NULL)",
                """
                CREATE TABLE uploads (
                    id TEXT PRIMARY KEY,
                    path BYTEA NOT NULL,
                    content_type TEXT NOT NULL,
                    created_ms BIGINT NOT NULL,
                    metadata TEXT NOT NULL DEFAULT ''
                )
                """,
                "CREATE INDEX uploads_by_path ON uploads(path, id)",
                """
                CREATE TABLE version_parts (
                    version_id BIGINT NOT NULL,
                    part_number INTEGER NOT NULL,
                    "offset" BIGINT NOT NULL,
                    size BIGINT NOT NULL,
                    attributes TEXT NOT NULL DEFAULT '',
                    PRIMARY KEY (version_id, part_number)
                )
                """,
            ]
        ),
        (
            "v2: several masters: leader lease, liveness, maintenance, damage, request ids",
            SchemaV12.postgres
        ),
        ("v3: bucket creations carry a request id", [SchemaV12.bucketRequestIDs]),
    ]

    /// Any number: the key of the advisory lock that migrating masters queue on.
    static let migrationLock: Int64 = 0x626c_6f62_6d65_7461

    static func migrate(_ connection: PostgresConnection, location: PostgresLocation, logger: Logger) async throws {
        func run(_ sql: String) async throws -> PostgresRowSequence {
            try await connection.query(PostgresQuery(unsafeSQL: sql), logger: logger)
        }
        _ = try await run("BEGIN")
        do {
            _ = try await run("SELECT pg_advisory_xact_lock(\(migrationLock))")
            _ = try await run(
                """
                CREATE TABLE IF NOT EXISTS schema_migrations (
                    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())
                """)
            var applied = 0
            for try await row in try await run(
                "SELECT CAST(COALESCE(MAX(version), 0) AS BIGINT) FROM schema_migrations")
            {
                applied = Int(try row.decode(Int64.self))
            }
            guard applied <= migrations.count else {
                throw BlobError(
                    .failedPrecondition, reason: "metadata.schemaNewer",
                    "the metadata database \(location) has schema version \(applied), newer than this blobctl's "
                        + "\(migrations.count); run the blobctl that wrote it, or a newer one")
            }
            for (index, migration) in migrations.enumerated().dropFirst(applied) {
                for statement in migration.statements { _ = try await run(statement) }
                var binds = PostgresBindings()
                binds.append(Int64(index + 1))
                binds.append(migration.name)
                _ = try await connection.query(
                    PostgresQuery(
                        unsafeSQL: "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", binds: binds),
                    logger: logger)
                logger.info("metadata schema migrated", metadata: ["schema.version": "\(index + 1)"])
            }
            _ = try await run("COMMIT")
        } catch {
            _ = try? await run("ROLLBACK")
            throw error
        }
    }
}
