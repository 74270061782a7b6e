#!/usr/bin/env bash
# Conformance-test prerequisites for openai-trigger, for a fresh Debian 12 machine (run as root).
#
#   bash tests/conformance/setup.sh
#
# Idempotent. Fails (non-zero, with a reason) when anything cannot be done; it never skips silently.
#
# What it does:
#   1. apt-get installs PostgreSQL, Redis, Python 3 + venv, and the small tools the scripts use.
#   2. Takes the real Dify plugin daemon (langgenius/dify-plugin-daemon at the pinned commit) from
#      ../shared/dify-daemon/ and decompresses it into the cache, verifying the sha256 its README gives:
#        $CACHE/daemon-<short>/dify-plugin-daemon   (cmd/server, the daemon)
#        $CACHE/daemon-<short>/dify                 (cmd/commandline; the daemon does NOT migrate its DB schema
#                                                    itself at this commit: `dify migrate` must run first)
#      Already-decompressed files whose sha256 matches are kept.
#   3. Installs uv (pinned, from PyPI) into $CACHE/uv-<version>/venv (the daemon gets it as UV_PATH).
#   4. Finds a real CPython 3.12 (the daemon hard-codes `uv venv --python 3.12`) and links it as
#      $CACHE/py312-bin/python3.12, which services.sh puts first on the daemon's PATH; proves uv picks it.
#      Looked for: $OPENAI_TRIGGER_PYTHON312, /usr/bin/python3.12, /usr/local/bin/python3.12, then pyenv's
#      ~/.pyenv/versions/3.12.*/bin/python3.12 (present in this workplace's machine image). None found:
#      fails, unless OPENAI_TRIGGER_ALLOW_PY_SUBSTITUTE=1 (then venvs use /usr/bin/python3; NOTES.md).
#
# CACHE = ${OPENAI_TRIGGER_CACHE:-<this clone>/target/conformance-cache}: project-local, so a clean clone brings
# everything it uses itself (nothing left in $HOME by an earlier run is relied on).
#
# Where the daemon comes from: ../shared/dify-daemon/ (OT_SHARED_DIR overrides the shared directory), or
# binaries you built yourself at that commit: DIFY_PLUGIN_DAEMON_BIN (cmd/server) and DIFY_PLUGIN_DAEMON_CLI
# (cmd/commandline). Nothing else comes from outside the package registries.
set -euo pipefail

DAEMON_COMMIT=bdb5642a19009c944b78eca12f3d176801a4a8be
UV_VERSION=0.13.9

CACHE="${OPENAI_TRIGGER_CACHE:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/target/conformance-cache}"
DAEMON_DIR="$CACHE/daemon-${DAEMON_COMMIT:0:8}"
DAEMON_BIN="$DAEMON_DIR/dify-plugin-daemon"   # cmd/server
CLI_BIN="$DAEMON_DIR/dify"                    # cmd/commandline: `migrate` (schema), `plugin package`, `signature`
UV_DIR="$CACHE/uv-$UV_VERSION"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] FATAL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, and PostgreSQL is run as the 'postgres' user)"

# ---------------------------------------------------------------- 1. Debian packages
APT_PKGS=(postgresql redis-server python3 python3-venv ca-certificates curl procps xz-utils)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2 || die "apt-get update failed"
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
else
  log "Debian packages present: ${APT_PKGS[*]}"
fi
# The Debian postinst may start its own default cluster / redis on the default ports; we don't use them
# (our services run on their own ports, see services.sh), so leave them alone.

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin"
command -v redis-server >/dev/null || die "redis-server not on PATH after install"
[ -x /usr/bin/python3 ] || die "/usr/bin/python3 missing"
id postgres >/dev/null 2>&1 || die "system user 'postgres' missing (should come with the postgresql package)"

# ---------------------------------------------------------------- 2. the daemon
# From the steering repo's shared/dify-daemon/ (beside this clone): xz-compressed static binaries built from the
# daemon's public source at DAEMON_COMMIT. The expected sha256 of each decompressed file is read from that
# directory's README (its table is the source of truth); a missing file, an unreadable README or a mismatch is
# fatal. DIFY_PLUGIN_DAEMON_BIN / DIFY_PLUGIN_DAEMON_CLI override the shared copies (binaries you built yourself
# at that commit; no checksum is known for those, so none is checked).
SHARED_DAEMON="${OT_SHARED_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/../shared}/dify-daemon"
mkdir -p "$DAEMON_DIR"

readme_sha() { # <file name in the README table> -> its sha256, or nothing
  sed -n 's/^| `'"$1"'` |.*| `\([0-9a-f]\{64\}\)` |[[:space:]]*$/\1/p' "$SHARED_DAEMON/README.md" | head -1
}
sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# install_daemon_binary <dest> <override var name> <xz name in shared/dify-daemon>
install_daemon_binary() {
  local dest=$1 override_var=$2 xz=$3 override want got
  override=${!override_var:-}
  if [ -n "$override" ]; then
    [ -x "$override" ] || die "$override_var=$override is not an executable file"
    if ! cmp -s "$override" "$dest" 2>/dev/null; then cp "$override" "$dest.tmp" && mv "$dest.tmp" "$dest"; fi
    log "$(basename "$dest"): from $override_var ($override)"
    return
  fi
  [ -f "$SHARED_DAEMON/README.md" ] || die "no $SHARED_DAEMON/README.md: the shared daemon directory must sit beside this clone (../shared), or set OT_SHARED_DIR, or $override_var"
  [ -f "$SHARED_DAEMON/$xz" ] || die "missing $SHARED_DAEMON/$xz"
  want=$(readme_sha "$xz")
  [ -n "$want" ] || die "no sha256 for $xz in $SHARED_DAEMON/README.md"
  if [ -x "$dest" ] && [ "$(sha_of "$dest")" = "$want" ]; then
    log "$(basename "$dest"): cached, sha256 $want"
    return
  fi
  command -v xz >/dev/null || die "xz not installed (Debian package xz-utils)"
  xz -dc "$SHARED_DAEMON/$xz" > "$dest.tmp" || { rm -f "$dest.tmp"; die "xz -d $SHARED_DAEMON/$xz failed"; }
  got=$(sha_of "$dest.tmp")
  if [ "$got" != "$want" ]; then
    rm -f "$dest.tmp"
    die "$xz decompresses to sha256 $got, but $SHARED_DAEMON/README.md says $want"
  fi
  chmod 0755 "$dest.tmp" && mv "$dest.tmp" "$dest"
  log "$(basename "$dest"): decompressed from $SHARED_DAEMON/$xz, sha256 $got verified"
}
install_daemon_binary "$DAEMON_BIN" DIFY_PLUGIN_DAEMON_BIN dify-plugin-daemon.xz
install_daemon_binary "$CLI_BIN" DIFY_PLUGIN_DAEMON_CLI dify.xz
echo "$DAEMON_COMMIT" > "$DAEMON_DIR/STAMP"

# ---------------------------------------------------------------- 3. uv
if [ -x "$UV_DIR/venv/bin/uv" ] && "$UV_DIR/venv/bin/uv" --version 2>/dev/null | grep -q "^uv $UV_VERSION"; then
  log "uv $UV_VERSION present: $UV_DIR/venv/bin/uv"
else
  rm -rf "$UV_DIR"; mkdir -p "$UV_DIR"
  /usr/bin/python3 -m venv "$UV_DIR/venv" || die "python3 -m venv failed"
  "$UV_DIR/venv/bin/pip" install -q "uv==$UV_VERSION" >&2 || die "pip install uv==$UV_VERSION failed"
  "$UV_DIR/venv/bin/uv" --version >/dev/null || die "uv does not run"
fi
ln -sfn "$UV_DIR" "$CACHE/uv"

# ---------------------------------------------------------------- 4. a real CPython 3.12 for `uv venv --python 3.12`
# The daemon runs `$UV_PATH venv .venv --python 3.12` (hard-coded: internal/core/local_runtime/
# setup_python_environment.go:422). uv must find a 3.12 interpreter on PATH (downloads are impossible here).
# Debian 12 has none; this workplace's machine image ships pyenv's CPython 3.12 (~/.pyenv/versions/3.12.*).
# We expose it to the daemon as $CACHE/py312-bin/python3.12 (services.sh puts that dir first on the daemon's
# PATH; pyenv *shims* must not be on it: uv stops at a shim that exits 127).
PY312_DIR="$CACHE/py312-bin"
mkdir -p "$PY312_DIR"
is312() { [ -x "$1" ] && "$1" -c 'import sys, venv, ssl; sys.exit(0 if sys.version_info[:2] == (3, 12) else 1)' 2>/dev/null; }
PY312=""
if [ "${OPENAI_TRIGGER_PYTHON312:-}" != none ]; then   # "none": skip the search (to exercise the fallback)
  for cand in "${OPENAI_TRIGGER_PYTHON312:-}" /usr/bin/python3.12 /usr/local/bin/python3.12 \
              $(ls -d "$HOME"/.pyenv/versions/3.12.*/bin/python3.12 2>/dev/null | sort -V -r); do
    [ -n "$cand" ] || continue
    if is312 "$cand"; then PY312=$(readlink -f "$cand"); break; fi
  done
fi
if [ -n "$PY312" ]; then
  ln -sfn "$PY312" "$PY312_DIR/python3.12"
  rm -f "$CACHE/PY312_SUBSTITUTE"
  # prove uv resolves `--python 3.12` to it with the daemon's PATH and no downloads
  t=$(mktemp -d "${TMPDIR:-/tmp}/uv312.XXXXXX")
  (cd "$t" && env -i PATH="$PY312_DIR:/usr/local/bin:/usr/bin:/bin" HOME="$HOME" UV_PYTHON_DOWNLOADS=never \
      UV_CACHE_DIR="$t/cache" "$UV_DIR/venv/bin/uv" venv .venv --python 3.12 >"$t/log" 2>&1) \
    || { cat "$t/log" >&2; rm -rf "$t"; die "uv venv --python 3.12 failed with $PY312"; }
  got=$("$t/.venv/bin/python" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')
  rm -rf "$t"
  case "$got" in 3.12.*) log "CPython $got for the daemon's venvs: $PY312 (via $PY312_DIR)";;
                 *) die "uv venv --python 3.12 produced Python $got";; esac
elif [ "${OPENAI_TRIGGER_ALLOW_PY_SUBSTITUTE:-0}" = 1 ]; then
  # Opt-in, NOT the default: make UV_PATH a wrapper that turns `uv venv --python 3.12` into
  # `--python /usr/bin/python3` (3.11) and passes everything else through to the real uv.
  rm -f "$PY312_DIR/python3.12"
  cat > "$UV_DIR/uv-wrapper" <<WRAPPER
#!/usr/bin/python3
# generated by tests/conformance/setup.sh (OPENAI_TRIGGER_ALLOW_PY_SUBSTITUTE=1); see NOTES.md ("Python 3.12")
import os, sys
REAL_UV = "$UV_DIR/venv/bin/uv"
args = sys.argv[1:]
if args[:1] == ["venv"]:
    for i in range(len(args) - 1):
        if args[i] == "--python" and args[i + 1] == "3.12":
            args[i + 1] = "/usr/bin/python3"
            sys.stderr.write("uv-wrapper: 'uv venv --python 3.12' -> '--python /usr/bin/python3'\\n")
os.execv(REAL_UV, [REAL_UV] + args)
WRAPPER
  chmod 0755 "$UV_DIR/uv-wrapper"
  echo 1 > "$CACHE/PY312_SUBSTITUTE"
  log "WARNING: no CPython 3.12 found; OPENAI_TRIGGER_ALLOW_PY_SUBSTITUTE=1, so the daemon's venvs will use /usr/bin/python3 ($(/usr/bin/python3 -V)) through $UV_DIR/uv-wrapper"
else
  die "no CPython 3.12 found (tried \$OPENAI_TRIGGER_PYTHON312, /usr/bin/python3.12, /usr/local/bin/python3.12, ~/.pyenv/versions/3.12.*). The daemon hard-codes 'uv venv --python 3.12'. Point OPENAI_TRIGGER_PYTHON312 at a 3.12 interpreter, or set OPENAI_TRIGGER_ALLOW_PY_SUBSTITUTE=1 to run packaged plugins on /usr/bin/python3 instead (see NOTES.md)."
fi

log "OK"
log "  daemon : $DAEMON_BIN"
log "  cli    : $CLI_BIN"
log "  uv     : $UV_DIR/venv/bin/uv ($("$UV_DIR/venv/bin/uv" --version))"
log "  py3.12 : ${PY312:-<substitute: /usr/bin/python3>}"
log "  pg bin : $PG_BIN"
