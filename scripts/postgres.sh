# A throwaway PostgreSQL server for the tests. Source it (`source scripts/postgres.sh`) from bash:
# it installs Debian's postgresql with apt-get when no server binaries are found, starts a fresh
# cluster in a temporary directory that listens on 127.0.0.1 only (a free port), creates a role with a
# random password and a database, and exports CHATTUNE_TEST_POSTGRES_URL for the tests. An EXIT trap
# stops the server and deletes the cluster when the sourcing shell ends.
#
# An already exported CHATTUNE_TEST_POSTGRES_URL (a server someone else runs) is used as it is.
# When the server cannot be started the URL stays unset and this returns non-zero; under CI (CI=true)
# the PostgreSQL tests then fail, saying so, instead of skipping.

_chattune_pg_start() {
    if [ -n "${CHATTUNE_TEST_POSTGRES_URL:-}" ]; then
        echo "postgres: using the server at CHATTUNE_TEST_POSTGRES_URL" >&2
        return 0
    fi
    local bin
    bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    if [ -z "$bin" ] && command -v apt-get >/dev/null; then
        echo "postgres: installing Debian's postgresql (apt-get)" >&2
        local sudo=""
        [ "$(id -u)" -ne 0 ] && sudo="sudo -n"
        # Debian's postinst would create and start a system cluster on 5432; we only want the binaries.
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o Dpkg::Options::=--force-confold \
            postgresql >/dev/null || $sudo sh -c 'apt-get update -q >/dev/null && \
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null'
        bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    fi
    if [ -z "$bin" ]; then
        echo "postgres: no PostgreSQL server binaries (apt-get install postgresql)" >&2
        return 1
    fi
    # initdb and postgres refuse to run as root: run them as Debian's postgres user then.
    local as=()
    [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
    CHATTUNE_PG_DIR=$(mktemp -d /tmp/chattune-pg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres: "$CHATTUNE_PG_DIR"
    local port password
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    password=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
    # Local socket: trust (only this user can reach the socket directory); TCP: password only.
    if ! "${as[@]}" "$bin/initdb" -D "$CHATTUNE_PG_DIR/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 >"$CHATTUNE_PG_DIR/initdb.log" 2>&1; then
        echo "postgres: initdb failed:" >&2
        cat "$CHATTUNE_PG_DIR/initdb.log" >&2
        return 1
    fi
    # fsync off: a throwaway cluster, and the tests write many small transactions.
    if ! "${as[@]}" "$bin/pg_ctl" -D "$CHATTUNE_PG_DIR/data" -l "$CHATTUNE_PG_DIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $CHATTUNE_PG_DIR -c fsync=off -c max_connections=200" \
        start >/dev/null; then
        echo "postgres: the server did not start:" >&2
        tail -n 20 "$CHATTUNE_PG_DIR/server.log" >&2
        return 1
    fi
    CHATTUNE_PG_BIN=$bin
    "${as[@]}" "$bin/psql" -q -h "$CHATTUNE_PG_DIR" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE chattune LOGIN PASSWORD '$password'" \
        -c "CREATE DATABASE chattune_test OWNER chattune" >/dev/null || return 1
    export CHATTUNE_TEST_POSTGRES_URL="postgresql://chattune:$password@127.0.0.1:$port/chattune_test"
    echo "postgres: throwaway server on 127.0.0.1:$port (PostgreSQL $("$bin/postgres" -V | awk '{print $3}'))" >&2
}

_chattune_pg_stop() {
    if [ -n "${CHATTUNE_PG_DIR:-}" ] && [ -d "$CHATTUNE_PG_DIR" ]; then
        local as=()
        [ "$(id -u)" -eq 0 ] && as=(runuser -u postgres --)
        [ -n "${CHATTUNE_PG_BIN:-}" ] &&
            "${as[@]}" "$CHATTUNE_PG_BIN/pg_ctl" -D "$CHATTUNE_PG_DIR/data" -m immediate -w stop >/dev/null 2>&1
        rm -rf "$CHATTUNE_PG_DIR"
    fi
}

trap _chattune_pg_stop EXIT
_chattune_pg_start
