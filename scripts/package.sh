#!/usr/bin/env bash
# Builds the release package end to end:
#   1. scripts/build-static.sh: the two static binaries in dist/bin/;
#   2. `openai-trigger package`: dist/<name>-<version>.difypkg, and its unique identifier;
#   3. with --sign KEY.private.pem, `openai-trigger sign` too (dist/<name>-<version>.signed.difypkg);
#   4. a smoke test of the package as the daemon runs it: every file extracted 0644 into a fresh
#      directory, then `python3 -m main` there, through one real serve session.
#
# Usage: scripts/package.sh [--sign KEY.private.pem] [--skip-build]
#   --skip-build  reuse dist/bin/ from an earlier build-static.sh
set -euo pipefail
cd "$(dirname "$0")/.."

key=
build=1
while [ $# -gt 0 ]; do
    case $1 in
        --sign) key=${2:?--sign needs a private key file}; shift 2 ;;
        --skip-build) build=0; shift ;;
        *) echo "usage: scripts/package.sh [--sign KEY.private.pem] [--skip-build]" >&2; exit 2 ;;
    esac
done

if [ "$build" = 1 ]; then scripts/build-static.sh; fi

# The packaging commands need the `tools` feature, so they run from a normal host build.
cargo build --quiet --locked
tool=${CARGO_TARGET_DIR:-target}/debug/openai-trigger
output=$("$tool" package --amd64 dist/bin/openai-trigger-linux-amd64 --arm64 dist/bin/openai-trigger-linux-arm64)
echo "$output"
package=$(sed -n 's/^wrote \(.*\): [0-9]* bytes .*/\1/p' <<<"$output")

if [ -n "$key" ]; then
    output=$("$tool" sign "$package" --key "$key" --category community)
    echo "$output"
    package=$(sed -n 's/^wrote \(.*\): [0-9]* bytes .*/\1/p' <<<"$output")
fi

workdir=$(mktemp -d)
trap 'rm -rf "$workdir"' EXIT
python3 - "$package" "$workdir" <<'PY'
import os, sys, zipfile
# As the daemon extracts: files only, each 0644, mode bits in the zip ignored.
with zipfile.ZipFile(sys.argv[1]) as z:
    for info in z.infolist():
        target = os.path.join(sys.argv[2], info.filename)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(z.read(info))
        os.chmod(target, 0o644)
PY
echo "==> smoke test: python3 -m main in the extracted package" >&2
python3 scripts/smoke-serve.py env -C "$workdir" python3 -m main >&2
ls -l "$package"
