#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/*.rs) for a bounded time, starting from the committed seed
# corpus (fuzz/corpus/<target>, copied to target/fuzz-corpus so runs do not touch the repository):
#
#   bash scripts/fuzz.sh [SECONDS]        # default 20 s per target (what CI runs)
#   cargo +nightly fuzz run dispatch      # one target, until stopped (run in fuzz/..; see README)
#
# Installs what it needs: the nightly toolchain through rustup when missing, and cargo-fuzz (pinned)
# into target/tools (project-local: `cargo install --root`), which is put first on PATH so `cargo fuzz`
# finds that one, never one someone installed globally. A crash stops the run with the input saved under fuzz/artifacts/<target>/;
# turn it into a regression test. Prints one "fuzz <target>: N runs" line per target and, last,
# "fuzz: N passed, M failed".
set -uo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-20}
CARGO_FUZZ_VERSION=0.13.2

log() { printf '[fuzz] %s\n' "$*" >&2; }
rustup toolchain list | grep -q '^nightly' || { log "installing the nightly toolchain"; rustup toolchain install nightly --profile minimal || exit 1; }
TOOLS="$PWD/target/tools"
export PATH="$TOOLS/bin:$PATH"
if ! "$TOOLS/bin/cargo-fuzz" --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
  log "cargo install --root $TOOLS cargo-fuzz@$CARGO_FUZZ_VERSION"
  cargo install --locked --root "$TOOLS" "cargo-fuzz@$CARGO_FUZZ_VERSION" || exit 1
fi

passed=0; failed=0
for target in $(ls fuzz/fuzz_targets | sed 's/\.rs$//'); do
  corpus=target/fuzz-corpus/$target
  mkdir -p "$corpus"; cp -n fuzz/corpus/"$target"/* "$corpus"/ 2>/dev/null || true
  log "$target: ${SECONDS_PER_TARGET}s"
  out=$(mktemp)
  if cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 >"$out" 2>&1; then
    runs=$(grep -oE '^#[0-9]+' "$out" | tail -1 | tr -d '#')
    echo "fuzz $target: ${runs:-?} runs in ${SECONDS_PER_TARGET}s, no crash"
    passed=$((passed + 1))
  else
    echo "fuzz $target: FAILED"; tail -40 "$out"
    failed=$((failed + 1))
  fi
  rm -f "$out"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
