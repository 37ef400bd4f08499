# Shared helpers for the .ci scripts. Source it; it sets -euo pipefail.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Bitbucket's OpenAPI description and GitLab's CI schema: pinned copies in the
# repository (.ci/testdata/SOURCES.md says where from and how to refresh them).
DATA="$ROOT/.ci/testdata"
# Tools are installed once per machine here; delete the folder to start over.
TOOLS="${BITBUCKET_STATUS_TOOLS:-$HOME/.cache/bitbucket-status-ci}"
export PATH="$TOOLS/bin:$TOOLS/node22/node_modules/.bin:$TOOLS/gcl/node_modules/.bin:$TOOLS/prism/node_modules/.bin:$TOOLS/js/node_modules/.bin:$PATH"
export GOTOOLCHAIN=local
export JS_TOOLS="$TOOLS/js" BROWSER_TOOLS="$TOOLS/browser"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# The release build's tags: no docs generator in urfave/cli, no HTTP/2 in
# net/http (one request needs neither); together 390 KB less binary.
BUILD_TAGS=urfave_cli_no_docs,nethttpomithttp2

# build_binary DIR: the bitbucket-status, bitbucket-status-relay and fake-bitbucket
# binaries into DIR, or, where PREBUILT_BIN names a directory (a CI job without Go),
# copies them.
build_binary() {
  if [ -n "${PREBUILT_BIN:-}" ]; then
    mkdir -p "$1" && cp "$PREBUILT_BIN/bitbucket-status" "$PREBUILT_BIN/bitbucket-status-relay" "$PREBUILT_BIN/fake-bitbucket" "$1/"
    return
  fi
  (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -tags "$BUILD_TAGS" -ldflags "-s -w -X main.version=${VERSION:-0.0.0-ci}" \
    -o "$1/bitbucket-status" ./src/cmd/bitbucket-status &&
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION:-0.0.0-ci}" -o "$1/bitbucket-status-relay" ./src/cmd/bitbucket-status-relay &&
    go build -o "$1/fake-bitbucket" ./src/cmd/fake-bitbucket)
}

# start_fake DIR [fake-bitbucket flags...]: starts the stand-in for Bitbucket in the
# background, sets FAKE_PID and FAKE_ADDR. The credential it expects comes from
# FAKE_BITBUCKET_TOKEN / FAKE_BITBUCKET_USER in the environment.
start_fake() {
  local dir=$1; shift
  rm -f "$dir/fake.addr"
  "$dir/fake-bitbucket" -addr-file "$dir/fake.addr" "$@" 2>"$dir/fake.log" &
  FAKE_PID=$!
  for _ in $(seq 100); do [ -s "$dir/fake.addr" ] && break; sleep 0.05; done
  [ -s "$dir/fake.addr" ] || fail "fake-bitbucket did not start: $(cat "$dir/fake.log")"
  FAKE_ADDR=$(cat "$dir/fake.addr")
}

# requests: what the stand-in received, as JSON.
requests() { curl -fsS "http://$FAKE_ADDR/_requests"; }
reset_requests() { curl -fsS "http://$FAKE_ADDR/_reset" >/dev/null; }

# expect_eq WHAT GOT WANT
expect_eq() {
  if [ "$2" != "$3" ]; then
    printf 'FAIL: %s\n  got:  %s\n  want: %s\n' "$1" "$2" "$3" >&2
    exit 1
  fi
  printf 'ok: %s\n' "$1"
}

# free_port: a loopback port nothing listens on, below Linux's ephemeral range
# (32768-60999), where the kernel's own choices for outgoing connections and
# other tests' listeners (port 0) could take it between the check and its use.
free_port() {
  local port
  for _ in $(seq 50); do
    port=$(( 10000 + RANDOM % 22000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      echo "$port"
      return
    fi
  done
  fail "no free loopback port found"
}

# start_postgres DIR: a throwaway PostgreSQL cluster in DIR on a free loopback
# port, as the postgres user when run as root (the server refuses to run as
# root); sets PG_URL (database "relay") and PG_CTL for stop/start.
start_postgres() {
  local dir=$1 bin
  bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  local as=()
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir"; as=(runuser -u postgres --); fi
  "${as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
  PG_PORT=$(free_port)
  PG_CTL=("${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -o "-p $PG_PORT -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300")
  "${PG_CTL[@]}" -w start >/dev/null || fail "PostgreSQL did not start: $(cat "$dir/log")"
  "$bin/psql" -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c 'CREATE DATABASE relay' >/dev/null
  PG_URL="postgres://postgres@127.0.0.1:$PG_PORT/relay?sslmode=disable"
  # A script the fault tests run to stop and start the server: pg-control stop|start.
  { printf '#!/usr/bin/env bash\n'; printf '%q ' "${PG_CTL[@]}"; printf -- '-w -m fast "$1"\n'; } >"$dir/pg-control"
  chmod +x "$dir/pg-control"
  PG_CONTROL="$dir/pg-control"
}
stop_postgres() { [ -n "${PG_CTL:-}" ] && "${PG_CTL[@]}" -w -m fast stop >/dev/null 2>&1 || true; }
