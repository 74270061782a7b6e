#!/usr/bin/env bash
# Builds the two static Linux binaries the package ships:
#   dist/bin/openai-trigger-linux-amd64   x86_64-unknown-linux-musl
#   dist/bin/openai-trigger-linux-arm64   aarch64-unknown-linux-musl
#
# cargo-zigbuild uses zig as C toolchain and linker, so no cross gcc or musl-gcc is needed.
# Installs what is missing: the two rustup targets, zig (the PyPI package ziglang) and
# cargo-zigbuild. The binaries are built without the default `tools` feature (package, keygen,
# sign): `serve` does not need them and they add about a quarter to the size.
#
# Then checks each binary: `file` must call it statically linked, and it must answer a real serve
# session (scripts/smoke-serve.py): natively, or under qemu-user for the other architecture
# (qemu-user-static and file are installed from Debian when missing and we are root; otherwise the
# script fails rather than leave a binary untested).
#
# Environment: ZIGLANG_VERSION, CARGO_ZIGBUILD_VERSION pin the tools (known-good defaults below);
# CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."

ZIGLANG_VERSION=${ZIGLANG_VERSION:-0.17.1}
CARGO_ZIGBUILD_VERSION=${CARGO_ZIGBUILD_VERSION:-0.24.1}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
declare -A TARGETS=([amd64]=x86_64-unknown-linux-musl [arm64]=aarch64-unknown-linux-musl)
declare -A QEMU=([amd64]=qemu-x86_64-static [arm64]=qemu-aarch64-static)

say() { printf '==> %s\n' "$*" >&2; }

case $(uname -m) in
    x86_64 | amd64) foreign_qemu=qemu-aarch64-static ;;
    *) foreign_qemu=qemu-x86_64-static ;;
esac
missing=()
command -v file >/dev/null || missing+=(file)
command -v "$foreign_qemu" >/dev/null || missing+=(qemu-user-static)
if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || { echo "build-static.sh: needs ${missing[*]} (apt-get install ${missing[*]})" >&2; exit 1; }
    say "apt-get install ${missing[*]}"
    apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

installed_targets=$(rustup target list --installed)
for arch in amd64 arm64; do
    target=${TARGETS[$arch]}
    if ! grep -qx "$target" <<<"$installed_targets"; then
        say "rustup target add $target"
        rustup target add "$target"
    fi
done
if ! command -v zig >/dev/null && ! python3 -m ziglang version >/dev/null 2>&1; then
    say "pip install ziglang==$ZIGLANG_VERSION"
    python3 -m pip install --quiet "ziglang==$ZIGLANG_VERSION"
fi
if ! cargo zigbuild --help >/dev/null 2>&1; then
    say "cargo install cargo-zigbuild@$CARGO_ZIGBUILD_VERSION"
    cargo install --locked "cargo-zigbuild@$CARGO_ZIGBUILD_VERSION"
fi

mkdir -p dist/bin
for arch in amd64 arm64; do
    target=${TARGETS[$arch]}
    say "cargo zigbuild --release --no-default-features --target $target"
    cargo zigbuild --release --no-default-features --locked --target "$target"
    cp "$TARGET_DIR/$target/release/openai-trigger" "dist/bin/openai-trigger-linux-$arch"
done

case $(uname -m) in
    x86_64 | amd64) native=amd64 ;;
    aarch64 | arm64) native=arm64 ;;
    *) native=none ;;
esac
for arch in amd64 arm64; do
    binary=dist/bin/openai-trigger-linux-$arch
    description=$(file -b "$binary")
    if ! grep -Eq 'statically linked|static-pie linked' <<<"$description"; then
        echo "build-static.sh: $binary is not static: $description" >&2
        exit 1
    fi
    if [ "$arch" = "$native" ]; then
        runner=()
    elif command -v "${QEMU[$arch]}" >/dev/null; then
        runner=("${QEMU[$arch]}")
    else
        echo "build-static.sh: cannot run $binary: no ${QEMU[$arch]}" >&2
        exit 1
    fi
    say "serve session: ${runner[*]:+${runner[*]} }$binary"
    python3 scripts/smoke-serve.py "${runner[@]}" "$binary" >&2
done

printf '%-40s %10s  %s\n' binary bytes file
for arch in amd64 arm64; do
    binary=dist/bin/openai-trigger-linux-$arch
    printf '%-40s %10s  %s\n' "$binary" "$(stat -c %s "$binary")" "$(file -b "$binary")"
done
