/// The tables that let several masters share one database (schema v12 on SQLite, v2 on
/// PostgreSQL): what one master used to keep in memory now lives where every master sees it.
enum SchemaV12 {
    /// The same tables on both engines, in the common dialect; `%BYTES%` is the binary type.
    static func statements(bytes: String) -> [String] {
        [
            // One row per lease (`background`): who leads, under which term (the fencing token),
            // until when in database time, and since when masters have been receiving heartbeats
            // without a gap (a server silent only during a gap is not judged down for it).
            """
            CREATE TABLE leader_lease (
                name TEXT PRIMARY KEY NOT NULL,
                holder TEXT NOT NULL,
                address TEXT NOT NULL,
                term BIGINT NOT NULL CHECK (term > 0),
                acquired_ms BIGINT NOT NULL,
                renewed_ms BIGINT NOT NULL,
                expires_ms BIGINT NOT NULL,
                observed_since_ms BIGINT NOT NULL
            )
            """,
            // Every master running on this database, by its instance id: seen_ms is refreshed
            // while it runs, so `cluster status` lists them all.
            """
            CREATE TABLE masters (
                id TEXT PRIMARY KEY NOT NULL,
                address TEXT NOT NULL,
                started_ms BIGINT NOT NULL,
                seen_ms BIGINT NOT NULL
            )
            """,
            // A chunk server's last heartbeat, in database time, whichever master received it.
            """
            CREATE TABLE server_liveness (
                server_id TEXT PRIMARY KEY NOT NULL,
                heard_ms BIGINT NOT NULL,
                sequence BIGINT NOT NULL,
                usage TEXT NOT NULL
            )
            """,
            "CREATE TABLE maintenance_windows (server_id TEXT PRIMARY KEY NOT NULL, until_ms BIGINT NOT NULL)",
            // Chunks a reader or a scrub found damaged: repair looks at them first.
            "CREATE TABLE damage_reports (chunk_id \(bytes) PRIMARY KEY NOT NULL, reported_ms BIGINT NOT NULL)",
            // A commit's request id: a retried commit whose reply was lost finds its version.
            "ALTER TABLE versions ADD COLUMN request_id TEXT",
            "CREATE UNIQUE INDEX versions_by_request ON versions (request_id) WHERE request_id IS NOT NULL",
        ]
    }

    /// The request id a bucket was created under (schema v13 on SQLite, v3 on PostgreSQL): a
    /// creation sent again after a lost reply finds its own bucket instead of "bucket exists".
    static let bucketRequestIDs = "ALTER TABLE buckets ADD COLUMN request_id TEXT"

    static var sqlite: String { statements(bytes: "BLOB").map { $0 + ";" }.joined(separator: "\n") }
    static var postgres: [String] { statements(bytes: "BYTEA") }
}
