# A throw-away PostgreSQL 15 for tests and benchmarks, on 127.0.0.1 and a free port, in a
# temporary directory, run as the `postgres` user (initdb refuses root). Source this file, then:
#
#   postgres_start        # sets POSTGRES_URL (postgres://blobtest@127.0.0.1:PORT/postgres),
#                         # POSTGRES_PID and POSTGRES_DIR
#   postgres_stop         # stops it by its PID (fast shutdown) and removes the directory
#
# The server is a direct child of the calling shell, started with a parent-death signal, so a
# runner that is killed does not leave it behind. Installs postgresql-15 with apt when missing.

POSTGRES_BIN=${POSTGRES_BIN:-/usr/lib/postgresql/15/bin}

postgres_install() {
  if [ -x "$POSTGRES_BIN/initdb" ]; then return 0; fi
  echo "postgres.sh: installing postgresql-15" >&2
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # policy-rc.d 101: the package must not start Debian's own cluster; tests start their own.
  $sudo sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
  $sudo apt-get install -y -qq postgresql-15 postgresql-client-15 >/dev/null
  $sudo rm -f /usr/sbin/policy-rc.d
}

# Runs a command as the postgres user when we are root (initdb and postgres refuse root).
postgres_as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
  else
    "$@"
  fi
}

postgres_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

postgres_start() {
  postgres_install
  POSTGRES_DIR="$(mktemp -d /tmp/blob-postgres.XXXXXX)"
  mkdir -p "$POSTGRES_DIR/data" "$POSTGRES_DIR/socket"
  if [ "$(id -u)" -eq 0 ]; then chown -R postgres:postgres "$POSTGRES_DIR"; fi
  postgres_as_owner "$POSTGRES_BIN/initdb" -D "$POSTGRES_DIR/data" -U blobtest --auth=trust -E UTF8 --no-locale \
    >"$POSTGRES_DIR/initdb.log" 2>&1 || { cat "$POSTGRES_DIR/initdb.log" >&2; return 1; }
  local port
  port="$(postgres_free_port)"
  # setpriv execs postgres itself, so the parent-death signal is on the server process.
  if [ "$(id -u)" -eq 0 ]; then
    setpriv --reuid=postgres --regid=postgres --init-groups --pdeathsig TERM -- \
      "$POSTGRES_BIN/postgres" -D "$POSTGRES_DIR/data" -c listen_addresses=127.0.0.1 -p "$port" \
      -k "$POSTGRES_DIR/socket" -c max_connections=300 -c shared_buffers=256MB >"$POSTGRES_DIR/server.log" 2>&1 &
  else
    setpriv --pdeathsig TERM -- \
      "$POSTGRES_BIN/postgres" -D "$POSTGRES_DIR/data" -c listen_addresses=127.0.0.1 -p "$port" \
      -k "$POSTGRES_DIR/socket" -c max_connections=300 -c shared_buffers=256MB >"$POSTGRES_DIR/server.log" 2>&1 &
  fi
  POSTGRES_PID=$!
  local i
  for i in $(seq 1 150); do
    if "$POSTGRES_BIN/pg_isready" -q -h 127.0.0.1 -p "$port"; then
      POSTGRES_URL="postgres://blobtest@127.0.0.1:$port/postgres"
      export POSTGRES_URL POSTGRES_PID POSTGRES_DIR
      echo "postgres.sh: PostgreSQL $("$POSTGRES_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (pid $POSTGRES_PID)" >&2
      return 0
    fi
    if ! kill -0 "$POSTGRES_PID" 2>/dev/null; then break; fi
    sleep 0.2
  done
  echo "postgres.sh: PostgreSQL did not start; its log:" >&2
  cat "$POSTGRES_DIR/server.log" >&2
  postgres_stop
  return 1
}

postgres_stop() {
  if [ -n "${POSTGRES_PID:-}" ] && kill -0 "$POSTGRES_PID" 2>/dev/null; then
    kill -INT "$POSTGRES_PID" 2>/dev/null || true
    local i
    for i in $(seq 1 100); do
      kill -0 "$POSTGRES_PID" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$POSTGRES_PID" 2>/dev/null || true
    wait "$POSTGRES_PID" 2>/dev/null || true
  fi
  if [ -n "${POSTGRES_DIR:-}" ]; then rm -rf "$POSTGRES_DIR"; fi
  POSTGRES_PID=""
  POSTGRES_DIR=""
}
