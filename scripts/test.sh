#!/usr/bin/env bash
# The test command: everything CI runs, from a fresh Debian 12 machine with Rust, Python 3 and Go.
# Installs what the tests need (rustfmt/clippy components, Python for the shim tests), then checks
# formatting and lints, and runs the unit and integration tests against the real binary.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*" >&2; }

command -v cargo >/dev/null || { log "cargo not found: install Rust (rustup) first"; exit 1; }
command -v python3 >/dev/null || { log "python3 not found (the main.py shim tests need it)"; exit 1; }
if ! command -v openssl >/dev/null; then
  log "installing openssl (the signing tests verify our signatures with it)"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssl
fi
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
  log "adding rustfmt and clippy"
  rustup component add rustfmt clippy
fi

log "cargo fmt --check"
cargo fmt --check
log "cargo clippy --all-targets --locked -- -D warnings"
cargo clippy --all-targets --locked -- -D warnings
log "cargo test --locked"
results=$(mktemp)
trap 'rm -f "$results"' EXIT
cargo test --locked 2>&1 | tee "$results"
# One closing line for the whole run: the sum over the unit and integration test binaries.
totals=$(awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
             END { printf "%d %d", p, f }' "$results")
read -r passed failed <<<"$totals"
echo "tests: ${passed:-0} passed, ${failed:-0} failed"
