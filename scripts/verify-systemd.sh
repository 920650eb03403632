#!/usr/bin/env bash
# Checks scripts/systemd/collector.service with `systemd-analyze verify`.
#
#   scripts/verify-systemd.sh [BINARY]
#
# verify wants ExecStart's program to exist, so the unit is checked as a copy whose
# ExecStart names a temporary copy of BINARY (default: target/debug/collector, built when
# missing). Installs apt's systemd when systemd-analyze is missing. Also checks that
# TimeoutStopSec leaves room above the default shutdown deadline. Exit 0 when clean.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
	echo "verify-systemd: $*" >&2
	exit 1
}

unit=scripts/systemd/collector.service
binary=${1:-target/debug/collector}
if [ $# -eq 0 ] && [ ! -x "$binary" ]; then
	cargo build --bin collector >&2 || die "cargo build failed"
fi
[ -x "$binary" ] || die "$binary is not an executable"

if ! command -v systemd-analyze >/dev/null 2>&1; then
	command -v apt-get >/dev/null 2>&1 || die "systemd-analyze is missing and apt-get is not here"
	SUDO=()
	[ "$(id -u)" -eq 0 ] || SUDO=(sudo)
	{ "${SUDO[@]}" apt-get update -qq && "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd; } >&2 ||
		die "apt-get install systemd failed"
fi

# shutdown_timeout (10 s by default) plus the service's 2 s join margin must fit inside
# TimeoutStopSec, or systemd kills a collector that is still flushing.
stop=$(sed -n 's/^TimeoutStopSec=\([0-9]*\)s$/\1/p' "$unit")
[ -n "$stop" ] || die "$unit: TimeoutStopSec=<seconds>s is missing"
((stop > 12)) || die "$unit: TimeoutStopSec=${stop}s is not above the 10 s shutdown deadline plus its 2 s margin"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$binary" "$tmp/collector"
chmod 0755 "$tmp/collector"
sed "s|^ExecStart=/usr/local/bin/collector |ExecStart=$tmp/collector |" "$unit" >"$tmp/collector.service"
grep -q "^ExecStart=$tmp/collector " "$tmp/collector.service" || die "$unit: ExecStart does not start /usr/local/bin/collector"

# verify prints problems on stderr and, for some, still exits 0: any output is a failure.
out=$(SYSTEMD_LOG_COLOR=0 systemd-analyze verify "$tmp/collector.service" 2>&1) && status=0 || status=$?
if [ "$status" -ne 0 ] || [ -n "$out" ]; then
	echo "$out" >&2
	die "systemd-analyze verify found problems in $unit (exit $status)"
fi
echo "verify-systemd: $unit is clean" >&2
