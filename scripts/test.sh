#!/usr/bin/env bash
# The one test command: installs the servers and cargo-audit if they are missing,
# checks the dependencies against the RustSec advisories, checks formatting and
# lints, builds, and runs every test. Each test starts and stops its own servers
# on loopback (tests/util/mod.rs); when this script exits it kills by PID any
# server or collector a crashed test left behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/leftovers.sh

# Seconds the whole run may take: it must stay under 20 minutes.
BUDGET=1170

# The chaos soak's faults in CI (scripts/soak.sh --faults; docs/RELIABILITY.md): every kind,
# and records with coarse times. Each rests on a fix that has landed: dead letters published
# once (Nats-Msg-Id, confirmed +TERM) for influx-freeze and the NATS faults, start-up retries
# and `nats.replicas` for the NATS faults, the self-healing consumer for consumer-delete, and
# the point-identity rule for coarse-time.
SOAK_FAULTS=all
# Each of the two soak runs (a fixed seed, then a random one): load time and records/s.
SOAK_DURATION=60s
SOAK_RATE=500

# The harness names its temp dirs collector-test-<run>-...; the servers carry
# that path on their command lines, which lets cleanup find this run's
# leftovers without touching anyone else's.
export COLLECTOR_TEST_RUN="run$$"
marker="collector-test-${COLLECTOR_TEST_RUN}-"
tmp="${TMPDIR:-/tmp}"
tmp="${tmp%/}"
# A test that needs a server this machine lacks (InfluxDB 3, tests/util/influx3.rs) passes
# without running and leaves a file here saying so; report_skips counts them.
export COLLECTOR_TEST_SKIPS="$tmp/${marker}skips"

report_skips() {
	local n
	n=$(find "$COLLECTOR_TEST_SKIPS" -type f 2>/dev/null | wc -l)
	if ((n > 0)); then
		echo "test.sh: $n test(s) SKIPPED (they passed without running):" >&2
		cat "$COLLECTOR_TEST_SKIPS"/* >&2
	fi
}

cleanup() {
	local status=$?
	kill_leftovers "$marker" test.sh
	# The InfluxDB 3 binary the tests unpacked (tests/util/influx3.rs): 130 MB, never a log.
	rm -rf "$tmp/${marker}influxdb3-bin"
	if [ "$status" -eq 0 ]; then
		rm -rf "$tmp/$marker"*
	elif compgen -G "$tmp/$marker*" >/dev/null; then
		echo "test.sh: server and collector logs of failed tests: $tmp/$marker*" >&2
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step() { echo "==> $*" >&2; }

step "install dependencies"
bash scripts/install-deps.sh
# The supply-chain check fails the run on any RustSec advisory not accepted (with its
# reason) in .cargo/audit.toml; tests/supply_chain.rs proves it can fail.
step "supply chain: scripts/audit.sh (cargo audit)"
audit_status=0
scripts/audit.sh || audit_status=$?
case $audit_status in
0) ;;
3) echo "test.sh: WARNING: supply-chain check NOT RUN: no advisory database reachable (see scripts/audit.sh)" >&2 ;;
*) exit "$audit_status" ;;
esac
step "cargo fmt --check"
cargo fmt --check
step "cargo clippy"
cargo clippy --all-targets -- -D warnings
step "cargo build"
cargo build --bins
# The static-root test runs the musl binary; building it here keeps that test's own build
# a no-op and its time in the test budget small.
step "static musl build"
bash scripts/build-static.sh

remaining=$((BUDGET - SECONDS))
if ((remaining < 60)); then
	echo "test.sh: only ${remaining}s of the ${BUDGET}s budget left for the tests" >&2
	exit 1
fi
# What the two soak runs need at most: 2 × (60 s of load, start-up, drain, check).
SOAK_RESERVE=360
remaining=$((remaining - SOAK_RESERVE))
test_status=0
if cargo nextest --version >/dev/null 2>&1; then
	step "cargo nextest run (at most ${remaining}s)"
	timeout --kill-after=30 "$remaining" cargo nextest run --no-fail-fast || test_status=$?
else
	step "cargo test (cargo-nextest is not installed; at most ${remaining}s)"
	timeout --kill-after=30 "$remaining" cargo test --no-fail-fast || test_status=$?
fi
report_skips
((test_status == 0)) || exit "$test_status"

# The chaos soak on the static binary just built: once with a fixed seed, with four planted
# differences its checker must find (--plant: the check can fail), once with a random seed
# (printed in its report, to reproduce a failure).
static_bin=target/static/x86_64-unknown-linux-musl/release/collector
for seed in 14 "$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"; do
	plant=()
	[ "$seed" = 14 ] && plant=(--plant)
	remaining=$((BUDGET - SECONDS))
	if ((remaining < 120)); then
		echo "test.sh: only ${remaining}s of the ${BUDGET}s budget left for the soak" >&2
		exit 1
	fi
	step "chaos soak, seed $seed (at most ${remaining}s)"
	timeout --kill-after=30 "$remaining" bash scripts/soak.sh --binary "$static_bin" \
		--duration "$SOAK_DURATION" --rate "$SOAK_RATE" --faults "$SOAK_FAULTS" --seed "$seed" \
		${plant[@]+"${plant[@]}"}
done
