#!/usr/bin/env bash
# Builds the static, stripped release binary for x86_64-unknown-linux-musl: the one file
# the container image (docker/Dockerfile) and the systemd unit ship.
#
#   scripts/build-static.sh [CARGO BUILD ARGS...]     e.g. --locked
#
# Installs what it needs when missing: the rustup target, and apt's musl-tools (musl-gcc,
# for the C parts of the TLS crypto crate). Builds into target/static (override with
# COLLECTOR_STATIC_TARGET_DIR), apart from the debug builds, so it can run while another
# cargo holds target/. Checks with `file` and `ldd` that the result is static and stripped,
# and fails otherwise. Prints the binary's absolute path as its only line on stdout;
# progress goes to stderr.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TARGET=x86_64-unknown-linux-musl
TARGET_DIR=${COLLECTOR_STATIC_TARGET_DIR:-target/static}

die() {
	echo "build-static: $*" >&2
	exit 1
}
say() { echo "build-static: $*" >&2; }

SUDO=()
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
	SUDO=(sudo)
fi

command -v cargo >/dev/null 2>&1 || die "cargo is missing"

if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
	command -v rustup >/dev/null 2>&1 ||
		die "rustup is missing, so the $TARGET target cannot be added; install it with rustup"
	say "adding the rustup target $TARGET"
	rustup target add "$TARGET" >&2 || die "rustup target add $TARGET failed"
fi

if ! command -v musl-gcc >/dev/null 2>&1; then
	command -v apt-get >/dev/null 2>&1 || die "musl-gcc is missing and apt-get is not here to install musl-tools"
	say "installing musl-tools"
	{ "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools; } >&2 ||
		die "apt-get install musl-tools failed"
	command -v musl-gcc >/dev/null 2>&1 || die "musl-gcc is still missing after installing musl-tools"
fi

for tool in file ldd; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: it checks that the binary is static"
done

# The `cc` crate compiles C for this target with musl-gcc unless told otherwise.
export CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc}
say "cargo build --release --target $TARGET --target-dir $TARGET_DIR $*"
cargo build --release --target "$TARGET" --target-dir "$TARGET_DIR" --bin collector "$@" >&2 ||
	die "cargo build failed"

bin="$(pwd)/$TARGET_DIR/$TARGET/release/collector"
[ -x "$bin" ] || die "$bin was not built"

kind=$(file -b "$bin")
case "$kind" in
*"statically linked"* | *"static-pie linked"*) ;;
*) die "$bin is not static: file says: $kind" ;;
esac
case "$kind" in
*"not stripped"*) die "$bin is not stripped: file says: $kind" ;;
*stripped*) ;;
*) die "$bin: file does not say it is stripped: $kind" ;;
esac
# ldd answers "not a dynamic executable" (exit 1) for a static binary, or "statically
# linked" for a static PIE; anything listing libraries means it is dynamic.
deps=$(ldd "$bin" 2>&1 || true)
case "$deps" in
*"not a dynamic executable"* | *"statically linked"*) ;;
*) die "$bin is dynamically linked; ldd says: $deps" ;;
esac

say "static and stripped, $(stat -c %s "$bin") bytes: $kind"
echo "$bin"
