#!/usr/bin/env bash
# Conformance-test prerequisites for openai-trigger, for a fresh Debian 12 machine (run as root).
#
#   bash tests/conformance/setup.sh
#
# Idempotent. Fails (non-zero, with a reason) when anything cannot be done; it never skips silently.
#
# What it does:
#   1. apt-get installs PostgreSQL, Redis, Python 3 + venv, and the small tools the scripts use.
#   2. Builds the real Dify plugin daemon (langgenius/dify-plugin-daemon, cmd/server) at the pinned
#      commit into   $CACHE/daemon-<short>/dify-plugin-daemon   (skipped when that binary and its stamp exist).
#   3. Installs uv (pinned, from PyPI) into $CACHE/uv-<version>/ and writes the uv wrapper the daemon is
#      pointed at through UV_PATH (see NOTES.md, "Python 3.12": the daemon hard-codes `--python 3.12`).
#
# CACHE = ${OPENAI_TRIGGER_CACHE:-$HOME/.cache/openai-trigger}
#
# Where the daemon's source comes from (in this order):
#   a. the Go module proxy (go mod download github.com/langgenius/dify-plugin-daemon@<commit>);
#   b. a git directory holding the commit: $DIFY_PLUGIN_DAEMON_GIT_DIR, else the mirror at
#      /work/.mirror/langgenius+dify-plugin-daemon/repo if it exists.
#   In the workplace this was written in, (a) is refused by the proxy ("403 This module version is not
#   available"), so the build needs (b). Without either, this script fails and says so.
set -euo pipefail

DAEMON_COMMIT=bdb5642a19009c944b78eca12f3d176801a4a8be
DAEMON_MODULE=github.com/langgenius/dify-plugin-daemon
UV_VERSION=0.13.9

CACHE="${OPENAI_TRIGGER_CACHE:-$HOME/.cache/openai-trigger}"
DAEMON_DIR="$CACHE/daemon-${DAEMON_COMMIT:0:8}"
DAEMON_BIN="$DAEMON_DIR/dify-plugin-daemon"
UV_DIR="$CACHE/uv-$UV_VERSION"
DEFAULT_MIRROR=/work/.mirror/langgenius+dify-plugin-daemon/repo

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
if [ -x "$DAEMON_BIN" ] && [ "$(cat "$DAEMON_DIR/STAMP" 2>/dev/null)" = "$DAEMON_COMMIT" ]; then
  log "daemon binary cached: $DAEMON_BIN"
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
    gitdir="${DIFY_PLUGIN_DAEMON_GIT_DIR:-}"
    if [ -z "$gitdir" ] && [ -d "$DEFAULT_MIRROR" ]; then gitdir="$DEFAULT_MIRROR"; fi
    [ -n "$gitdir" ] || die "no daemon source: the Go module proxy refused $DAEMON_MODULE@$DAEMON_COMMIT and no git dir is available (set DIFY_PLUGIN_DAEMON_GIT_DIR to a clone/mirror of langgenius/dify-plugin-daemon containing $DAEMON_COMMIT, or put a prebuilt binary at $DAEMON_BIN with STAMP=$DAEMON_COMMIT)"
    git --git-dir="$gitdir" cat-file -e "$DAEMON_COMMIT^{commit}" 2>/dev/null \
      || die "git dir $gitdir does not contain commit $DAEMON_COMMIT"
    log "using daemon source from git dir $gitdir"
    src="$work/src"; mkdir -p "$src"
    git --git-dir="$gitdir" archive "$DAEMON_COMMIT" | tar -x -C "$src" || die "git archive failed"
  fi
  grep -q "^module $DAEMON_MODULE\$" "$src/go.mod" || die "unexpected go.mod in daemon source"
  log "building daemon (cmd/server) — several minutes on 2 cores"
  t0=$(date +%s)
  (cd "$src" && CGO_ENABLED=0 GOFLAGS=-buildvcs=false go build -trimpath -o "$DAEMON_BIN.tmp" ./cmd/server) >&2 \
    || die "go build of the daemon failed"
  mv "$DAEMON_BIN.tmp" "$DAEMON_BIN"
  echo "$DAEMON_COMMIT" > "$DAEMON_DIR/STAMP"
  log "daemon built in $(( $(date +%s) - t0 ))s: $DAEMON_BIN"
  rm -rf "$work"; trap - EXIT
fi

# ---------------------------------------------------------------- 3. uv + the UV_PATH wrapper
if [ -x "$UV_DIR/venv/bin/uv" ] && "$UV_DIR/venv/bin/uv" --version 2>/dev/null | grep -q "^uv $UV_VERSION"; then
  log "uv $UV_VERSION present: $UV_DIR/venv/bin/uv"
else
  rm -rf "$UV_DIR"; mkdir -p "$UV_DIR"
  /usr/bin/python3 -m venv "$UV_DIR/venv" || die "python3 -m venv failed"
  "$UV_DIR/venv/bin/pip" install -q "uv==$UV_VERSION" >&2 || die "pip install uv==$UV_VERSION failed"
  "$UV_DIR/venv/bin/uv" --version >/dev/null || die "uv does not run"
fi

# The daemon runs `$UV_PATH venv .venv --python 3.12` (hard-coded, internal/core/local_runtime/
# setup_python_environment.go:422). No CPython 3.12 can be installed here (see NOTES.md), so UV_PATH points
# at this wrapper: it passes every uv invocation through unchanged, except that for `venv` it replaces the
# requested version "3.12" with $OPENAI_TRIGGER_VENV_PYTHON (default: Debian's /usr/bin/python3, 3.11).
# Set OPENAI_TRIGGER_UV_STRICT=1 to disable the substitution (then a real 3.12 must be discoverable by uv).
cat > "$UV_DIR/uv-wrapper" <<WRAPPER
#!/usr/bin/python3
# generated by tests/conformance/setup.sh; see tests/conformance/NOTES.md ("Python 3.12")
import os, sys
REAL_UV = "$UV_DIR/venv/bin/uv"
args = sys.argv[1:]
if args[:1] == ["venv"] and os.environ.get("OPENAI_TRIGGER_UV_STRICT", "0") != "1":
    py = os.environ.get("OPENAI_TRIGGER_VENV_PYTHON", "/usr/bin/python3")
    for i in range(len(args) - 1):
        if args[i] == "--python" and args[i + 1] == "3.12":
            args[i + 1] = py
            sys.stderr.write("uv-wrapper: 'uv venv --python 3.12' -> '--python %s'\\n" % py)
os.execv(REAL_UV, [REAL_UV] + args)
WRAPPER
chmod 0755 "$UV_DIR/uv-wrapper"
ln -sfn "$UV_DIR" "$CACHE/uv"

log "OK"
log "  daemon : $DAEMON_BIN"
log "  uv     : $UV_DIR/venv/bin/uv ($("$UV_DIR/venv/bin/uv" --version))"
log "  UV_PATH: $UV_DIR/uv-wrapper"
log "  pg bin : $PG_BIN"
