#!/usr/bin/env bash
# Bytes per row of the master's `replicas` table on PostgreSQL 15 (the table and both of its
# indexes, as PostgresSchema creates them), for docs/operations.md's sizing: 1,000,000 rows of
# random chunk ids (SHA-256) on 20 servers, loaded, then VACUUM ANALYZE.
# Usage: Benchmarks/pg_row_size.sh   (starts and stops a throw-away PostgreSQL: Scripts/postgres.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
source Scripts/postgres.sh
trap postgres_stop EXIT
postgres_start >/dev/null
sql() { /usr/lib/postgresql/15/bin/psql -X -q -At "$POSTGRES_URL" -c "$1"; }
sql "CREATE TABLE replicas (chunk_id BYTEA NOT NULL, server_id TEXT NOT NULL, reported_ms BIGINT NOT NULL,
     PRIMARY KEY (chunk_id, server_id))"
sql "CREATE INDEX replicas_by_server ON replicas(server_id, chunk_id)"
sql "INSERT INTO replicas SELECT sha256(int8send(g)), 'cs-' || substr(md5((g % 20)::text), 1, 12), 1765000000000
     FROM generate_series(1, 1000000) g"
sql "VACUUM ANALYZE replicas"
echo "replicas: $(sql "SELECT round(pg_total_relation_size('replicas') / 1000000.0)") bytes per row (table and indexes)"
