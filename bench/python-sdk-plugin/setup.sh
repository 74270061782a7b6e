#!/usr/bin/env bash
# Creates ./.venv for the Python-SDK benchmark plugin and installs requirements.txt from PyPI.
# Idempotent: re-running with an unchanged requirements.txt and interpreter does nothing.
# Progress goes to stderr; the LAST line on stdout is the absolute path of the venv's python.
#
# Interpreter choice (first that runs and is 3.11 or 3.12 wins; 3.12 preferred):
#   $PYTHON, python3.12, ~/.pyenv/versions/3.12.*/bin/python3.12, /usr/bin/python3.12,
#   python3.11, ~/.pyenv/versions/3.11.*/bin/python3.11, python3.
# Works on a fresh Debian 12 (python3 = 3.11) even without the python3-venv package: the venv is
# then created --without-pip and pip is bootstrapped from PyPI.
set -euo pipefail

DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$DIR/.venv"
REQ="$DIR/requirements.txt"
STAMP="$VENV/.requirements.stamp"

log() { printf '[setup] %s\n' "$*" >&2; }

ok_python() {  # $1 = candidate; prints its absolute executable if it is CPython 3.11/3.12
    "$1" -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)); print(sys.executable)' 2>/dev/null
}

pick_python() {
    local c found
    local -a cands=()
    [ -n "${PYTHON:-}" ] && cands+=("$PYTHON")
    cands+=(python3.12)
    if [ -d "$HOME/.pyenv/versions" ]; then
        while IFS= read -r c; do cands+=("$c"); done < <(ls -d "$HOME"/.pyenv/versions/3.12.*/bin/python3.12 2>/dev/null | sort -rV)
    fi
    cands+=(/usr/bin/python3.12 /usr/local/bin/python3.12 python3.11)
    if [ -d "$HOME/.pyenv/versions" ]; then
        while IFS= read -r c; do cands+=("$c"); done < <(ls -d "$HOME"/.pyenv/versions/3.11.*/bin/python3.11 2>/dev/null | sort -rV)
    fi
    cands+=(/usr/bin/python3 python3)
    for c in "${cands[@]}"; do
        if found="$(ok_python "$c")" && [ -n "$found" ]; then
            printf '%s\n' "$found"
            return 0
        fi
    done
    return 1
}

venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import sys' 2>/dev/null; }

bootstrap_pip() {  # pip for a venv made --without-pip: use a system pip if there is one, else PyPI's wheel
    if "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then return 0; fi
    log "bootstrapping pip into the venv from PyPI"
    "$VENV/bin/python" - <<'PY'
import json, os, subprocess, sys, tempfile, urllib.parse, urllib.request
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
base = index[: -len("/simple")] if index.endswith("/simple") else "https://pypi.org"
meta_url = f"{base}/pypi/pip/json"
with urllib.request.urlopen(meta_url, timeout=60) as r:
    meta = json.load(r)
whl = next(u for u in meta["urls"] if u["packagetype"] == "bdist_wheel")
path = os.path.join(tempfile.mkdtemp(), whl["filename"])
urllib.request.urlretrieve(urllib.parse.urljoin(meta_url, whl["url"]), path)  # mirrors may give relative URLs
# a pip wheel is runnable as a zip application: python pip.whl/pip install pip.whl
subprocess.check_call([sys.executable, os.path.join(path, "pip"), "install", "-q", "--no-index", path])
PY
}

PY="$(pick_python)" || { log "no CPython 3.11 or 3.12 found (set PYTHON=/path/to/python3.12)"; exit 1; }
PYVER="$("$PY" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
WANT="$(sha256sum "$REQ" | cut -d' ' -f1) $PY $PYVER"

if venv_ok && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    log "up to date ($PY, $PYVER)"
    printf '%s\n' "$VENV/bin/python"
    exit 0
fi

if venv_ok && [ "$(readlink -f "$VENV/bin/python")" = "$(readlink -f "$PY")" ]; then
    log "reusing existing venv"
else
    rm -rf "$VENV"
    log "creating venv with $PY ($PYVER)"
    if ! "$PY" -m venv "$VENV" >/dev/null 2>&1; then
        log "'$PY -m venv' failed (no ensurepip, e.g. Debian without python3-venv); retrying --without-pip"
        rm -rf "$VENV"
        "$PY" -m venv --without-pip "$VENV"
    fi
fi
bootstrap_pip

log "installing $REQ"
"$VENV/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$REQ"
# The daemon byte-compiles the plugin after installing it; do the same so start-up is comparable.
"$VENV/bin/python" -m compileall -q -x '[/\\]\.venv[/\\]' "$DIR" >/dev/null || true
printf '%s\n' "$WANT" >"$STAMP"
log "done"
printf '%s\n' "$VENV/bin/python"
