import Foundation
import GRDB

extension SQLiteDatabase {
    /// Versioned schema migrations; each runs once, in order, in its own transaction.
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: namespace, chunks, replicas") { db in
            try db.execute(
                sql: """
                    CREATE TABLE chunks (
                        id BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 32),
                        plain_size INTEGER NOT NULL CHECK (plain_size >= 0),
                        stored_size INTEGER NOT NULL CHECK (stored_size >= 0),
                        first_seen_ms INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE replicas (
                        chunk_id BLOB NOT NULL REFERENCES chunks(id),
                        server_id TEXT NOT NULL,
                        reported_ms INTEGER NOT NULL,
                        PRIMARY KEY (chunk_id, server_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX replicas_by_server ON replicas(server_id, chunk_id);
                    CREATE TABLE versions (
                        id INTEGER PRIMARY KEY,
                        path BLOB NOT NULL,
                        version INTEGER NOT NULL,
                        size INTEGER NOT NULL,
                        content_type TEXT NOT NULL,
                        sha256 TEXT NOT NULL,
                        created_ms INTEGER NOT NULL,
                        deleted INTEGER NOT NULL DEFAULT 0,
                        stored_bytes INTEGER NOT NULL DEFAULT 0,
                        chunk_count INTEGER NOT NULL DEFAULT 0,
                        UNIQUE (path, version)
                    );
                    CREATE TABLE manifest_entries (
                        version_id INTEGER NOT NULL REFERENCES versions(id) ON DELETE CASCADE,
                        seq INTEGER NOT NULL,
                        chunk_id BLOB NOT NULL REFERENCES chunks(id),
                        offset INTEGER NOT NULL,
                        length INTEGER NOT NULL,
                        PRIMARY KEY (version_id, seq)
                    ) WITHOUT ROWID;
                    CREATE INDEX manifest_entries_by_chunk ON manifest_entries(chunk_id);
                    CREATE TABLE current_files (
                        path BLOB PRIMARY KEY NOT NULL,
                        version_id INTEGER NOT NULL REFERENCES versions(id)
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v2: servers and rings") { db in
            try db.execute(
                sql: """
                    CREATE TABLE servers (
                        id TEXT PRIMARY KEY NOT NULL,
                        address TEXT NOT NULL,
                        zone TEXT NOT NULL,
                        weight REAL NOT NULL,
                        capacity_bytes INTEGER,
                        registered_ms INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE rings (
                        epoch INTEGER PRIMARY KEY NOT NULL,
                        json BLOB NOT NULL
                    );
                    """)
        }
        migrator.registerMigration("v3: listing fields in current_files") { db in
            // A list page then reads one contiguous key range of current_files instead of also
            // looking up each row's version (1,000 random B-tree probes per page on a large store).
            try db.execute(
                sql: """
                    ALTER TABLE current_files ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE current_files ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE current_files ADD COLUMN content_type TEXT NOT NULL DEFAULT '';
                    ALTER TABLE current_files ADD COLUMN sha256 TEXT NOT NULL DEFAULT '';
                    ALTER TABLE current_files ADD COLUMN created_ms INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE current_files ADD COLUMN stored_bytes INTEGER NOT NULL DEFAULT 0;
                    ALTER TABLE current_files ADD COLUMN chunk_count INTEGER NOT NULL DEFAULT 0;
                    UPDATE current_files SET
                        version = (SELECT v.version FROM versions v WHERE v.id = current_files.version_id),
                        size = (SELECT v.size FROM versions v WHERE v.id = current_files.version_id),
                        content_type = (SELECT v.content_type FROM versions v WHERE v.id = current_files.version_id),
                        sha256 = (SELECT v.sha256 FROM versions v WHERE v.id = current_files.version_id),
                        created_ms = (SELECT v.created_ms FROM versions v WHERE v.id = current_files.version_id),
                        stored_bytes = (SELECT v.stored_bytes FROM versions v WHERE v.id = current_files.version_id),
                        chunk_count = (SELECT v.chunk_count FROM versions v WHERE v.id = current_files.version_id);
                    """)
        }
        migrator.registerMigration("v4: garbage collection and operation state") { db in
            try db.execute(
                sql: """
                    CREATE TABLE gc_candidates (
                        chunk_id BLOB PRIMARY KEY NOT NULL,
                        marked_ms INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE TABLE gc_orphans (
                        chunk_id BLOB NOT NULL,
                        server_id TEXT NOT NULL,
                        first_seen_ms INTEGER NOT NULL,
                        PRIMARY KEY (chunk_id, server_id)
                    ) WITHOUT ROWID;
                    CREATE TABLE settings (
                        key TEXT PRIMARY KEY NOT NULL,
                        value BLOB NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v5: buckets and access keys") { db in
            try db.execute(
                sql: """
                    CREATE TABLE buckets (
                        name TEXT PRIMARY KEY NOT NULL,
                        created_ms INTEGER NOT NULL,
                        public_read INTEGER NOT NULL DEFAULT 0
                    ) WITHOUT ROWID;
                    CREATE TABLE access_keys (
                        id TEXT PRIMARY KEY NOT NULL,
                        secret TEXT NOT NULL,
                        name TEXT NOT NULL,
                        created_ms INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v6: multipart uploads") { db in
            try db.execute(
                sql: """
                    CREATE TABLE uploads (
                        id TEXT PRIMARY KEY NOT NULL,
                        path BLOB NOT NULL,
                        content_type TEXT NOT NULL,
                        created_ms INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    CREATE INDEX uploads_by_path ON uploads(path, id);
                    """)
        }
        migrator.registerMigration("v7: user metadata") { db in
            try db.execute(
                sql: """
                    ALTER TABLE versions ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
                    ALTER TABLE current_files ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
                    ALTER TABLE uploads ADD COLUMN metadata TEXT NOT NULL DEFAULT '';
                    """)
        }
        migrator.registerMigration("v8: bucket lifecycle") { db in
            try db.execute(sql: "ALTER TABLE buckets ADD COLUMN lifecycle TEXT NOT NULL DEFAULT ''")
        }
        migrator.registerMigration("v9: parts of multipart versions") { db in
            try db.execute(
                sql: """
                    CREATE TABLE version_parts (
                        version_id INTEGER NOT NULL,
                        part_number INTEGER NOT NULL,
                        offset INTEGER NOT NULL,
                        size INTEGER NOT NULL,
                        attributes TEXT NOT NULL DEFAULT '',
                        PRIMARY KEY (version_id, part_number)
                    ) WITHOUT ROWID;
                    """)
        }
        migrator.registerMigration("v10: block digests of chunks") { db in
            try db.execute(sql: "ALTER TABLE chunks ADD COLUMN block_digests BLOB")
        }
        migrator.registerMigration("v11: path heads") { db in
            // Each path's last version number, incremented in place by every commit and delete:
            // the row is what concurrent writers of one path queue on (MetadataStore.nextVersion).
            try db.execute(
                sql: """
                    CREATE TABLE path_heads (
                        path BLOB PRIMARY KEY NOT NULL,
                        last_version INTEGER NOT NULL
                    ) WITHOUT ROWID;
                    INSERT INTO path_heads (path, last_version) SELECT path, MAX(version) FROM versions GROUP BY path;
                    """)
        }
        migrator.registerMigration("v12: several masters: leader lease, liveness, maintenance, damage, request ids") {
            db in
            try db.execute(sql: SchemaV12.sqlite)
        }
        migrator.registerMigration("v13: bucket creations carry a request id") { db in
            try db.execute(sql: SchemaV12.bucketRequestIDs)
        }
        return migrator
    }
}
