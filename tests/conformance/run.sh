#!/usr/bin/env bash
# The whole conformance run against the REAL Dify plugin daemon, in one command (as root):
#
#   bash tests/conformance/run.sh
#
# Steps, in order:
#   1. setup.sh                       prerequisites (apt packages, cached daemon binaries, uv, CPython 3.12)
#   2. services.sh start              PostgreSQL + Redis + the daemon, on loopback
#   3. cargo build --release          our binary (cargo rebuilds only what changed)
#   4. smoke_register.py              the daemon's remote-debugging path, played by hand
#   5. smoke_install.py               the daemon's package path with a hand-made package
#   6. probe_registration_validation.py  what registration rejects
#   7. test_openai_trigger.py         OUR plugin against the daemon: remote registration (args and .env), wrong key,
#                                     all six actions, reconnection across daemon restarts, the .difypkg install
#                                     (runs scripts/package.sh when dist/ has no package)
# services.sh stop always runs at the end (trap), whatever happened.
#
# Honest by construction: a step that cannot run is a FAILURE, never a skip. When a prerequisite (1-3) fails, the
# later steps are reported as failed (not run). Exit status 0 only when every step passed.
# Each step's output goes to the terminal and to $LOGS/<step>.log
# (LOGS = ${OT_LOG_DIR:-${TMPDIR:-/tmp}/openai-trigger-conformance-logs}).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOGS="${OT_LOG_DIR:-${TMPDIR:-/tmp}/openai-trigger-conformance-logs}"
PY="${OT_PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree
mkdir -p "$LOGS"

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { printf '%d.%d' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }   # ms -> "S.d"
T0=$(now_ms)
NAMES=()
RESULTS=()
TIMES=()
SUMMARIES=()

say() { printf '[run] %s\n' "$*" >&2; }

cleanup() {
  say "services.sh stop"
  bash "$HERE/services.sh" stop >"$LOGS/services-stop.log" 2>&1 || say "services.sh stop failed (see $LOGS/services-stop.log)"
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT TERM

# step <name> <command...>: runs it, tees its output to $LOGS/<name>.log, records PASS/FAIL, duration and the
# script's own "N passed, M failed" line when it prints one.
step() {
  local name=$1; shift
  local log="$LOGS/$name.log" t0 t1 rc
  say "---- $name: $*"
  t0=$(now_ms)
  ( cd "$ROOT" && "$@" ) 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  t1=$(now_ms)
  NAMES+=("$name")
  TIMES+=("$(secs $((t1 - t0)))")
  SUMMARIES+=("$(grep -aE '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -1)")
  if [ "$rc" -eq 0 ]; then RESULTS+=(PASS); else RESULTS+=("FAIL(rc=$rc)"); fi
  return "$rc"
}

not_run() { # name reason
  NAMES+=("$1"); RESULTS+=("FAIL(not run)"); TIMES+=("-"); SUMMARIES+=("$2")
}

report() {
  local total fail=0 i
  total=$(secs $(( $(now_ms) - T0 )))
  echo
  echo "================ conformance run summary ================"
  for i in "${!NAMES[@]}"; do
    printf '%-34s %-14s %7ss  %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}" "${SUMMARIES[$i]}"
    [ "${RESULTS[$i]}" = PASS ] || fail=$((fail + 1))
  done
  echo "wall time: ${total}s; logs: $LOGS"
  if [ "$fail" -eq 0 ]; then echo "ALL STEPS PASSED"; else echo "$fail STEP(S) FAILED"; fi
  return "$fail"
}

PREREQ_OK=1
step setup bash "$HERE/setup.sh" || PREREQ_OK=0
if [ "$PREREQ_OK" = 1 ]; then step services-start bash "$HERE/services.sh" start || PREREQ_OK=0
else not_run services-start "setup failed"; fi
if [ "$PREREQ_OK" = 1 ]; then
  if command -v cargo >/dev/null; then step cargo-build cargo build --release || PREREQ_OK=0
  else not_run cargo-build "cargo not on PATH"; PREREQ_OK=0; fi
else not_run cargo-build "a prerequisite failed"; fi

SCRIPTS=(smoke_register.py smoke_install.py probe_registration_validation.py test_openai_trigger.py)
for s in "${SCRIPTS[@]}"; do
  if [ "$PREREQ_OK" != 1 ]; then not_run "${s%.py}" "a prerequisite failed"; continue; fi
  if [ ! -f "$HERE/$s" ]; then not_run "${s%.py}" "$HERE/$s missing"; continue; fi
  step "${s%.py}" "$PY" "$HERE/$s" || true
done

report
exit $?
