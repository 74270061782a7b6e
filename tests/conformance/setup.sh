#!/usr/bin/env bash
# Conformance-test prerequisites for openai-trigger, for a fresh Debian 12 machine (run as root).
#
#   bash tests/conformance/setup.sh
#
# Idempotent. Fails (non-zero, with a reason) when anything cannot be done; it never skips silently.
#
# What it does:
#   1. apt-get installs PostgreSQL, Redis, Python 3 + venv, and the small tools the scripts use.
#   2. Builds the real Dify plugin daemon (langgenius/dify-plugin-daemon) at the pinned commit:
#        $CACHE/daemon-<short>/dify-plugin-daemon   (cmd/server, the daemon)
#        $CACHE/daemon-<short>/dify                 (cmd/commandline; the daemon does NOT migrate its DB schema
#                                                    itself at this commit: `dify migrate` must run first)
#      Skipped when both binaries and the STAMP file exist.
#   3. Installs uv (pinned, from PyPI) into $CACHE/uv-<version>/venv (the daemon gets it as UV_PATH).
#   4. Finds a real CPython 3.12 (the daemon hard-codes `uv venv --python 3.12`) and links it as
#      $CACHE/py312-bin/python3.12, which services.sh puts first on the daemon's PATH; proves uv picks it.
#      Looked for: $OPENAI_TRIGGER_PYTHON312, /usr/bin/python3.12, /usr/local/bin/python3.12, then pyenv's
#      ~/.pyenv/versions/3.12.*/bin/python3.12 (present in this workplace's machine image). None found:
#      fails, unless OPENAI_TRIGGER_ALLOW_PY_SUBSTITUTE=1 (then venvs use /usr/bin/python3; NOTES.md).
#
# CACHE = ${OPENAI_TRIGGER_CACHE:-$HOME/.cache/openai-trigger}
#
# Where the daemon comes from:
#   a. the Go module proxy (go mod download github.com/langgenius/dify-plugin-daemon@<commit>), then go build;
#   b. or binaries you built yourself: DIFY_PLUGIN_DAEMON_BIN (cmd/server) and DIFY_PLUGIN_DAEMON_CLI
#      (cmd/commandline) at that commit; they are copied into the cache.
#   In the workplace this project is developed in, the proxy refuses this module at every version
#   ("403 This module version is not available"), so (a) fails there and says so; see README.
set -euo pipefail

DAEMON_COMMIT=bdb5642a19009c944b78eca12f3d176801a4a8be
DAEMON_MODULE=github.com/langgenius/dify-plugin-daemon
UV_VERSION=0.13.9

CACHE="${OPENAI_TRIGGER_CACHE:-$HOME/.cache/openai-trigger}"
DAEMON_DIR="$CACHE/daemon-${DAEMON_COMMIT:0:8}"
DAEMON_BIN="$DAEMON_DIR/dify-plugin-daemon"   # cmd/server
CLI_BIN="$DAEMON_DIR/dify"                    # cmd/commandline: `migrate` (schema), `plugin package`, `signature`
UV_DIR="$CACHE/uv-$UV_VERSION"

log() { printf '[setup] %s\n' "$*" >&2; }
die() { printf '[setup] FATAL: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (apt-get, and PostgreSQL is run as the 'postgres' user)"

# ---------------------------------------------------------------- 1. Debian packages
APT_PKGS=(postgresql redis-server python3 python3-venv ca-certificates curl git procps)
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
mkdir -p "$DAEMON_DIR"
if [ -x "$DAEMON_BIN" ] && [ -x "$CLI_BIN" ] && [ "$(cat "$DAEMON_DIR/STAMP" 2>/dev/null)" = "$DAEMON_COMMIT" ]; then
  log "daemon binaries cached: $DAEMON_BIN $CLI_BIN"
else
  command -v go >/dev/null || die "go not on PATH (Go >= 1.26 is needed to build the daemon)"
  gover=$(go env GOVERSION | sed 's/^go//')
  [ "$(printf '%s\n1.26\n' "$gover" | sort -V | head -1)" = 1.26 ] || die "Go $gover is too old: the daemon's go.mod needs go >= 1.26"
  work=$(mktemp -d "${TMPDIR:-/tmp}/dify-daemon-build.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  src=""
  log "fetching daemon source $DAEMON_MODULE@$DAEMON_COMMIT from the Go module proxy"
  (cd "$work" && go mod init daemon-fetch >/dev/null 2>&1 \
     && go mod download -json "$DAEMON_MODULE@$DAEMON_COMMIT" > "$work/dl.json" 2> "$work/dl.err") || true
  dir=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p' "$work/dl.json" 2>/dev/null | head -1)
  if [ -n "$dir" ] && [ -f "$dir/go.mod" ]; then
    src="$work/src"; cp -r "$dir" "$src"; chmod -R u+w "$src"
  else
    err=$(sed -n 's/^[[:space:]]*"Error": "\(.*\)",\{0,1\}$/\1/p' "$work/dl.json" 2>/dev/null | head -1)
    log "Go module proxy did not serve it: ${err:-$(tail -2 "$work/dl.err" 2>/dev/null)}"
    if [ -n "${DIFY_PLUGIN_DAEMON_BIN:-}" ] && [ -n "${DIFY_PLUGIN_DAEMON_CLI:-}" ]; then
      [ -x "$DIFY_PLUGIN_DAEMON_BIN" ] && [ -x "$DIFY_PLUGIN_DAEMON_CLI" ] || die "DIFY_PLUGIN_DAEMON_BIN / _CLI are not executables"
      cp "$DIFY_PLUGIN_DAEMON_BIN" "$DAEMON_BIN"; cp "$DIFY_PLUGIN_DAEMON_CLI" "$CLI_BIN"
      echo "$DAEMON_COMMIT" > "$DAEMON_DIR/STAMP"
      log "using the daemon binaries given in DIFY_PLUGIN_DAEMON_BIN / DIFY_PLUGIN_DAEMON_CLI"
      rm -rf "$work"; trap - EXIT
    else
      die "no daemon: the Go module proxy refused $DAEMON_MODULE@$DAEMON_COMMIT; set DIFY_PLUGIN_DAEMON_BIN and DIFY_PLUGIN_DAEMON_CLI to binaries built at that commit"
    fi
  fi
fi
if [ ! -x "$DAEMON_BIN" ] || [ "$(cat "$DAEMON_DIR/STAMP" 2>/dev/null)" != "$DAEMON_COMMIT" ]; then
  src="$work/src"
  grep -q "^module $DAEMON_MODULE\$" "$src/go.mod" || die "unexpected go.mod in daemon source"
  log "building daemon (cmd/server) and its CLI (cmd/commandline) — minutes on 2 cores with a cold Go cache"
  t0=$(date +%s)
  rm -f "$DAEMON_DIR/STAMP"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o "$DAEMON_BIN.tmp" ./cmd/server) >&2 \
    || die "go build of the daemon (cmd/server) failed"
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o "$CLI_BIN.tmp" ./cmd/commandline) >&2 \
    || die "go build of the daemon CLI (cmd/commandline) failed"
  mv "$DAEMON_BIN.tmp" "$DAEMON_BIN"; mv "$CLI_BIN.tmp" "$CLI_BIN"
  echo "$DAEMON_COMMIT" > "$DAEMON_DIR/STAMP"
  log "daemon + CLI built in $(( $(date +%s) - t0 ))s: $DAEMON_BIN $CLI_BIN"
  rm -rf "$work"; trap - EXIT
fi

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
