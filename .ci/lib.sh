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
export JS_TOOLS="$TOOLS/js"

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf 'FAIL: %s\n' "$*" >&2; exit 1; }

# The release build's tags: no docs generator in urfave/cli, no HTTP/2 in
# net/http (one request needs neither); together 390 KB less binary.
BUILD_TAGS=urfave_cli_no_docs,nethttpomithttp2

# build_binary DIR: the bitbucket-status and fake-bitbucket binaries into DIR,
# or, where PREBUILT_BIN names a directory (a CI job without Go), copies them.
build_binary() {
  if [ -n "${PREBUILT_BIN:-}" ]; then
    mkdir -p "$1" && cp "$PREBUILT_BIN/bitbucket-status" "$PREBUILT_BIN/fake-bitbucket" "$1/"
    return
  fi
  (cd "$ROOT" && CGO_ENABLED=0 go build -trimpath -tags "$BUILD_TAGS" -ldflags "-s -w -X main.version=${VERSION:-0.0.0-ci}" \
    -o "$1/bitbucket-status" ./src/cmd/bitbucket-status &&
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
