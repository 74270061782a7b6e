#!/usr/bin/env bash
# End-to-end benchmark through the REAL Dify plugin daemon, in one command (as root, on a fresh machine):
#
#   bash tests/conformance/bench.sh [--pairs 300] [--levels 1,8,64] [--rounds 6] [--warmup 60]
#
# Our plugin (the Marketplace package) and the Python-SDK twin (bench/python-sdk-plugin, packaged here) are
# installed as packages into one daemon with PostgreSQL and Redis (as in the conformance suite), then
# bench_daemon.py sends webhooks through the daemon's dispatch and invoke routes at each concurrency, the two
# plugins interleaved, and writes target/bench/daemon.json. Arguments go to bench_daemon.py.
#
# Steps (reusing the conformance suite's pieces):
#   1. setup.sh                         prerequisites and the daemon from ../shared/dify-daemon
#   2. cargo xtask release --example-publisher   dist/*.difypkg and the index dist/pypi (skipped when OT_PACKAGE
#                                       names our .difypkg; then OT_PIP_INDEX_DIR must hold its wheels, default dist/pypi)
#   3. the bench index, target/bench/pypi  dist/pypi plus the Python twin's pinned requirements as CPython 3.12
#                                       wheels (pip wheel, from PyPI once, cached in target/bench/wheels)
#   4. the index on 127.0.0.1, services.sh start, all on ports of their own (not the conformance suite's), with a
#                                       state dir of its own, so a conformance run elsewhere is not disturbed
#   5. bench_daemon.py
# The index server and services.sh stop always run at the end (trap).
#
# Ports (override with the same variables services.sh reads): PostgreSQL 56432, Redis 57379, daemon HTTP 56002,
# remote debugging 56003, node 2 56012 (unused), fake inner API 56091, package index 56080 (OT_BENCH_INDEX_PORT).
# State: ${OPENAI_TRIGGER_CONFORMANCE_DIR:-/tmp/openai-trigger-bench}.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export PYTHONDONTWRITEBYTECODE=1
export OPENAI_TRIGGER_CONFORMANCE_DIR="${OPENAI_TRIGGER_CONFORMANCE_DIR:-${TMPDIR:-/tmp}/openai-trigger-bench}"
export OPENAI_TRIGGER_CONFORMANCE_ENV="$OPENAI_TRIGGER_CONFORMANCE_DIR/env"
export OT_PG_PORT="${OT_PG_PORT:-56432}" OT_REDIS_PORT="${OT_REDIS_PORT:-57379}"
export OT_DAEMON_HTTP_PORT="${OT_DAEMON_HTTP_PORT:-56002}" OT_DAEMON_DEBUG_PORT="${OT_DAEMON_DEBUG_PORT:-56003}"
export OT_DAEMON2_HTTP_PORT="${OT_DAEMON2_HTTP_PORT:-56012}"
export OT_INNER_API_PORT="${OT_INNER_API_PORT:-56091}"
export OT_VERIFY_SIGNATURES=0   # both packages are installed unsigned (signatures are the conformance suite's topic)
INDEX_PORT="${OT_BENCH_INDEX_PORT:-56080}"
export OT_PIP_MIRROR_URL="http://127.0.0.1:$INDEX_PORT/simple"
CACHE="${OPENAI_TRIGGER_CACHE:-$ROOT/target/conformance-cache}"
STATE=$OPENAI_TRIGGER_CONFORMANCE_DIR
BENCH="$ROOT/target/bench"
INDEX="$BENCH/pypi"
WHEELS="$BENCH/wheels"
PYREQ="$ROOT/bench/python-sdk-plugin/requirements.txt"

say() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] FATAL: %s\n' "$*" >&2; exit 1; }

cleanup() {
  [ -f "$STATE/bench-index.pid" ] && kill "$(cat "$STATE/bench-index.pid")" 2>/dev/null
  rm -f "$STATE/bench-index.pid"
  say "services.sh stop"
  bash "$HERE/services.sh" stop >&2 || say "services.sh stop failed"
}
trap 'say "interrupted"; exit 130' INT TERM

say "1. setup.sh"
bash "$HERE/setup.sh"

if [ -z "${OT_PACKAGE:-}" ]; then
  say "2. cargo xtask release --example-publisher"
  command -v cargo >/dev/null || die "cargo not on PATH"
  rm -f "$ROOT"/dist/openai_trigger-*.difypkg
  (cd "$ROOT" && cargo xtask release --example-publisher) || die "cargo xtask release failed"
  OT_PACKAGE=$(ls "$ROOT"/dist/openai_trigger-*.difypkg | grep -v -e '\.signed\.difypkg$' -e '-offline\.difypkg$' | head -1)
  export OT_PACKAGE
else
  say "2. our package: $OT_PACKAGE (given)"
fi
[ -f "$OT_PACKAGE" ] || die "no package $OT_PACKAGE"
SRC_INDEX="${OT_PIP_INDEX_DIR:-$ROOT/dist/pypi}"
[ -d "$SRC_INDEX/simple" ] || die "no package index in $SRC_INDEX (cargo xtask release builds dist/pypi)"

say "3. bench index $INDEX: $SRC_INDEX + the Python twin's requirements (CPython 3.12 wheels)"
PY312="$CACHE/py312-bin/python3.12"
[ -x "$PY312" ] || die "no $PY312 (setup.sh links it)"
WANT="$(sha256sum "$PYREQ" | cut -d' ' -f1) $("$PY312" -c 'import sys; print(sys.version.split()[0])')"
if [ "$(cat "$WHEELS/.stamp" 2>/dev/null)" != "$WANT" ]; then
  rm -rf "$WHEELS"; mkdir -p "$WHEELS"
  # pip wheel: binary wheels where PyPI has them, and a built wheel for standardwebhooks (sdist only), so the
  # daemon's `uv pip install` needs no build backend from the index.
  "$PY312" -m pip wheel --quiet -r "$PYREQ" -w "$WHEELS" >&2 || die "pip wheel -r $PYREQ failed"
  echo "$WANT" > "$WHEELS/.stamp"
fi
rm -rf "$INDEX"; mkdir -p "$INDEX"
cp -r "$SRC_INDEX/simple" "$INDEX/simple"
for whl in "$WHEELS"/*.whl; do
  f=$(basename "$whl")
  project=$(printf '%s' "${f%%-*}" | tr 'A-Z' 'a-z' | sed -E 's/[-_.]+/-/g')   # PEP 503
  mkdir -p "$INDEX/simple/$project"
  cp "$whl" "$INDEX/simple/$project/"
done
say "   $(find "$INDEX/simple" -name '*.whl' | wc -l) wheels"

say "4. services on their own ports (state $STATE)"
trap cleanup EXIT
bash "$HERE/services.sh" stop >/dev/null 2>&1 || true
mkdir -p "$STATE"
(exec python3 -m http.server "$INDEX_PORT" --bind 127.0.0.1 --directory "$INDEX" >"$STATE/bench-index.log" 2>&1) &
echo $! > "$STATE/bench-index.pid"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$INDEX_PORT") 2>/dev/null && break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$INDEX_PORT") 2>/dev/null || die "the index did not listen on 127.0.0.1:$INDEX_PORT"
bash "$HERE/services.sh" start

say "5. bench_daemon.py $*"
python3 "$HERE/bench_daemon.py" "$@"
