#!/usr/bin/env bash
# The whole conformance run against the REAL Dify plugin daemon, in one command (as root):
#
#   bash tests/conformance/run.sh
#
# Steps, in order:
#   1. setup.sh                       prerequisites (apt packages, the daemon from ../shared/dify-daemon, uv, CPython 3.12)
#   2. cargo build --release          our binary (cargo rebuilds only what changed)
#   3. package                        both .difypkg (cargo xtask release --example-publisher, unless OT_PACKAGE and
#                                     OT_OFFLINE_PACKAGE name them), then a throw-away RSA key pair and both signed
#   4. package-index, services.sh start  dist/pypi served on 127.0.0.1:55080 (the daemon's PIP_MIRROR_URL, standing
#                                     in for PyPI); PostgreSQL + Redis + the fake Dify inner API (fake_inner_api.py) +
#                                     `dify migrate` + the daemon, on loopback, with
#                                     FORCE_VERIFYING_SIGNATURE=true trusting only that key (OT_VERIFY_SIGNATURES=0: off)
#   5. smoke_register.py              the daemon's remote-debugging path, played by hand
#   6. smoke_install.py               the daemon's package path with a hand-made package
#   7. probe_registration_validation.py  what registration rejects
#   8. test_openai_trigger.py         OUR plugin against the daemon: remote registration (args and .env), wrong key,
#                                     all six actions, reconnection across daemon restarts, and both packages installed
#                                     (unsigned refused, signed installed and launched over stdio; the Marketplace one
#                                     with its wheel from the index)
#   9. test_sdk_examples.py           the Rust SDK's example plugins (google_search, duck_tools, neko, echo_trigger,
#                                     openai_compat, function_calling, site_crawl; built by cargo-build-examples,
#                                     packaged by package-examples with dify-plugin-package) registered over remote
#                                     debugging, then installed as packages, and driven through the daemon's tool,
#                                     trigger, model, agent-strategy and datasource dispatch routes and its endpoint
#                                     management API + public /e/<hook_id>/… route (models against openai-mock; the
#                                     agent's backwards calls answered by services.sh's fake Dify inner API)
# services.sh stop always runs at the end (trap), whatever happened.
#
# Honest by construction: a step that cannot run is a FAILURE, never a skip. When a prerequisite (1-4) fails, the
# later steps are reported as failed (not run). Exit status 0 only when every step passed.
# Each step's output goes to the terminal and to $LOGS/<step>.log
# (LOGS = ${OT_LOG_DIR:-${TMPDIR:-/tmp}/openai-trigger-conformance-logs}).
# The last line is `conformance: N passed, M failed`: the checks of every script, plus one failure for each step
# that failed without counting checks of its own. On any failure the tails of the daemon's log and of our
# plugin's stderr are printed first, with every failed check and what it saw.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOGS="${OT_LOG_DIR:-${TMPDIR:-/tmp}/openai-trigger-conformance-logs}"
PY="${OT_PYTHON:-python3}"
export PYTHONDONTWRITEBYTECODE=1   # no __pycache__ in the work tree
mkdir -p "$LOGS"
# Logs of an earlier run would be shown as this run's when a step does not run.
rm -f "$LOGS"/*.log "$LOGS"/*.env

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { printf '%d.%d' $(( $1 / 1000 )) $(( $1 % 1000 / 100 )); }   # ms -> "S.d"
T0=$(now_ms)
T0_S=$(date +%s)
NAMES=()
RESULTS=()
TIMES=()
SUMMARIES=()

say() { printf '[run] %s\n' "$*" >&2; }

cleanup() {
  [ -f "$STATE/index.pid" ] && kill "$(cat "$STATE/index.pid")" 2>/dev/null; rm -f "$STATE/index.pid"
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

STATE="${OPENAI_TRIGGER_CONFORMANCE_DIR:-${TMPDIR:-/tmp}/openai-trigger-conformance}"
BINARY="${OT_BINARY:-$ROOT/target/release/openai-trigger}"
export OT_VERIFY_SIGNATURES="${OT_VERIFY_SIGNATURES:-1}"

# The packages under test (`cargo xtask release --example-publisher`: the Marketplace package, whose binary comes
# from the pinned wheel, and the offline package with the binaries inside), the package index that stands in for
# PyPI (dist/pypi, served on loopback as the daemon's PIP_MIRROR_URL), and (with signature verification on) a key
# pair made for this run only and both packages signed with it: the daemon then trusts exactly that key.
INDEX_PORT="${OT_INDEX_PORT:-55080}"
package_step() {
  local pkg offline keys="$STATE/keys"
  if [ -n "${OT_PACKAGE:-}" ]; then
    pkg=$OT_PACKAGE; offline=${OT_OFFLINE_PACKAGE:-}
    [ -f "$pkg" ] || { echo "OT_PACKAGE=$pkg does not exist"; return 1; }
  else
    rm -f "$ROOT"/dist/openai_trigger-*.difypkg
    cargo xtask release --example-publisher || { echo "cargo xtask release failed"; return 1; }
    pkg=$(ls "$ROOT"/dist/openai_trigger-*.difypkg 2>/dev/null | grep -v -e '\.signed\.difypkg$' -e '-offline\.difypkg$' | head -1)
    offline=$(ls "$ROOT"/dist/openai_trigger-*-offline.difypkg 2>/dev/null | head -1)
    [ -n "$pkg" ] && [ -n "$offline" ] || { echo "cargo xtask release left no packages in dist/"; return 1; }
  fi
  [ -d "$ROOT/dist/pypi/simple" ] || { echo "no package index in dist/pypi (cargo xtask release builds it)"; return 1; }
  echo "packages: $pkg $offline"
  {
    echo "OT_PACKAGE=$pkg"
    echo "OT_OFFLINE_PACKAGE=$offline"
    echo "OT_PIP_MIRROR_URL=http://127.0.0.1:$INDEX_PORT/simple"
  } > "$LOGS/package.env"
  [ "$OT_VERIFY_SIGNATURES" = 1 ] || return 0
  rm -rf "$keys"; mkdir -p "$keys"
  cargo xtask keygen --out "$keys/conformance" || { echo "keygen failed"; return 1; }
  for p in $pkg $offline; do
    cargo xtask sign "$p" --key "$keys/conformance.private.pem" --category community --out "${p%.difypkg}.signed.difypkg" \
      || { echo "sign $p failed"; return 1; }
  done
  {
    echo "OT_THIRD_PARTY_PUBLIC_KEYS=$keys/conformance.public.pem"
    echo "OT_SIGNING_KEY=$keys/conformance.private.pem"
  } >> "$LOGS/package.env"
}

# The package index on loopback, for the daemon's `uv pip install -i`.
start_index() {
  (exec python3 -m http.server "$INDEX_PORT" --bind 127.0.0.1 --directory "$ROOT/dist/pypi" >"$LOGS/index.log" 2>&1) &
  echo $! > "$STATE/index.pid"
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$INDEX_PORT") 2>/dev/null && return 0; sleep 0.1; done
  echo "the package index did not listen on 127.0.0.1:$INDEX_PORT"; return 1
}

PREREQ_OK=1
step setup bash "$HERE/setup.sh" || PREREQ_OK=0
if [ "$PREREQ_OK" = 1 ]; then
  if command -v cargo >/dev/null; then step cargo-build cargo build --release --locked -p openai-trigger -p openai-mock || PREREQ_OK=0
  else not_run cargo-build "cargo not on PATH"; PREREQ_OK=0; fi
else not_run cargo-build "a prerequisite failed"; fi
# The SDK's examples (for test_sdk_examples.py only: a failure here fails that step, not the others).
EXAMPLES_OK=0
if [ "$PREREQ_OK" = 1 ]; then
  # (`--examples` selects example targets only: the walkthrough's binary is a second build.)
  step cargo-build-examples bash -c 'cargo build --release --locked -p dify-plugin --examples && cargo build --release --locked -p hello-tool' && EXAMPLES_OK=1
else not_run cargo-build-examples "a prerequisite failed"; fi
# Each example as the .difypkg any plugin on the SDK gets from dify-plugin-package (its binary for this
# machine inside), which test_sdk_examples.py installs into the daemon.
package_examples() {
  local out="${CARGO_TARGET_DIR:-$ROOT/target}/conformance-examples" bins="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples"
  mkdir -p "$out"
  cargo build --release --locked -p dify-plugin --features package --bin dify-plugin-package || return 1
  for name in google_search duck_tools neko echo_trigger openai_compat function_calling site_crawl; do
    "${CARGO_TARGET_DIR:-$ROOT/target}/release/dify-plugin-package" "$ROOT/crates/dify-plugin/examples/$name" \
      --binary "amd64=$bins/$name" --name "$name" --out "$out/$name.difypkg" ${OT_SIGNING_KEY:+--sign "$OT_SIGNING_KEY"} || return 1
  done
  # The README's walkthrough plugin, packaged as its README says.
  "${CARGO_TARGET_DIR:-$ROOT/target}/release/dify-plugin-package" "$ROOT/crates/dify-plugin/walkthrough/hello-tool" \
    --binary "amd64=$bins/../hello-tool" --name hello-tool --out "$out/hello-tool.difypkg" ${OT_SIGNING_KEY:+--sign "$OT_SIGNING_KEY"} || return 1
}
if [ "$PREREQ_OK" = 1 ]; then
  rm -f "$LOGS/package.env"
  if step package package_step && [ -f "$LOGS/package.env" ]; then
    set -a; . "$LOGS/package.env"; set +a
  else PREREQ_OK=0; fi
else not_run package "a prerequisite failed"; fi
# After the package step: with signature verification on, the examples' packages are signed with the
# run's key (OT_SIGNING_KEY), as the daemon then refuses unsigned ones.
if [ "$EXAMPLES_OK" = 1 ]; then
  step package-examples package_examples || EXAMPLES_OK=0
else not_run package-examples "the examples did not build"; fi
if [ "$PREREQ_OK" = 1 ]; then
  # A daemon left running by an earlier, interrupted run would keep its old signature settings.
  bash "$HERE/services.sh" stop >"$LOGS/services-prestop.log" 2>&1 || true
  mkdir -p "$STATE"
  step package-index start_index || PREREQ_OK=0
  [ "$PREREQ_OK" = 1 ] && { step services-start bash "$HERE/services.sh" start || PREREQ_OK=0; }
else not_run services-start "a prerequisite failed"; fi

SCRIPTS=(smoke_register.py smoke_install.py probe_registration_validation.py test_openai_trigger.py test_sdk_examples.py)
for s in "${SCRIPTS[@]}"; do
  if [ "$PREREQ_OK" != 1 ]; then not_run "${s%.py}" "a prerequisite failed"; continue; fi
  if [ "$s" = test_sdk_examples.py ] && [ "$EXAMPLES_OK" != 1 ]; then
    not_run "${s%.py}" "the examples did not build (cargo-build-examples)"; continue
  fi
  if [ ! -f "$HERE/$s" ]; then not_run "${s%.py}" "$HERE/$s missing"; continue; fi
  step "${s%.py}" "$PY" "$HERE/$s" || true
done

# What a red run needs to explain itself: the failed checks with what they saw, the daemon's log, our stderr.
diagnose() {
  local name log f
  echo
  echo "================ why the conformance run failed ================"
  for name in "${NAMES[@]}"; do
    log="$LOGS/$name.log"
    [ -f "$log" ] || continue
    if grep -aq '^FAIL - ' "$log"; then
      echo "---- $name: failed checks (what each saw)"
      grep -a '^FAIL - ' "$log" | cut -c1-2000
    fi
  done
  for i in "${!NAMES[@]}"; do
    case "${RESULTS[$i]}" in PASS) ;; *)
      log="$LOGS/${NAMES[$i]}.log"
      if [ -f "$log" ] && ! grep -aq '^FAIL - ' "$log"; then
        echo "---- ${NAMES[$i]} (${RESULTS[$i]}): last 30 lines of its output"
        tail -n 30 "$log"
      fi ;;
    esac
  done
  # Only what this run wrote: a log or stderr file older than the run belongs to an earlier one.
  if [ -f "$STATE/daemon/daemon.log" ] && [ "$(stat -c %Y "$STATE/daemon/daemon.log")" -ge "$T0_S" ]; then
    echo "---- daemon log: its last 40 WARN/ERROR lines (they include the stderr of plugins it launched), then its last 20 lines ($STATE/daemon/daemon.log)"
    grep -aE ' (WARN|ERROR) ' "$STATE/daemon/daemon.log" | tail -n 40 | cut -c1-600
    echo "...."
    tail -n 20 "$STATE/daemon/daemon.log" | cut -c1-600
  fi
  for f in $(find "${TMPDIR:-/tmp}" -maxdepth 2 -path '*/ot-conformance-*' -name '*.stderr' -newermt "@$T0_S" 2>/dev/null | head -6); do
    echo "---- plugin stderr, last 20 lines ($f)"
    tail -n 20 "$f" | cut -c1-600
  done
}

report() {
  local total fail=0 i passed=0 failed=0 p f
  total=$(secs $(( $(now_ms) - T0 )))
  for i in "${!NAMES[@]}"; do
    if [[ "${SUMMARIES[$i]}" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
      p=${BASH_REMATCH[1]}; f=${BASH_REMATCH[2]}
    else
      p=0; f=0
    fi
    passed=$((passed + p)); failed=$((failed + f))
    # A step that failed without a failed check of its own (crashed, did not run) still counts as one failure.
    if [ "${RESULTS[$i]}" != PASS ]; then fail=$((fail + 1)); [ "$f" -gt 0 ] || failed=$((failed + 1)); fi
  done
  [ "$fail" -eq 0 ] || diagnose
  echo
  echo "================ conformance run summary ================"
  for i in "${!NAMES[@]}"; do
    printf '%-34s %-14s %7ss  %s\n' "${NAMES[$i]}" "${RESULTS[$i]}" "${TIMES[$i]}" "${SUMMARIES[$i]}"
  done
  echo "wall time: ${total}s; logs: $LOGS"
  if [ "$fail" -eq 0 ]; then echo "ALL STEPS PASSED"; else echo "$fail STEP(S) FAILED"; fi
  echo "conformance: $passed passed, $failed failed"
  return "$fail"
}

report
exit $?
