#!/usr/bin/env bash
# The one test command: installs the servers and cargo-audit if they are missing,
# checks the dependencies against the RustSec advisories, checks formatting and
# lints, builds, and runs every test. Each test starts and stops its own servers
# on loopback (tests/util/mod.rs); when this script exits it kills by PID any
# server or collector a crashed test left behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/leftovers.sh
. scripts/lib/skips.sh

# Time limits are hang guards only, never a budget shared by the whole run: each step that
# runs servers gets its own generous limit, whatever the compiling before it took, so a slow
# but correct run passes. Compiling has no limit; it is done in steps of its own, before the
# guards. The tests' guard, 40 minutes (each test has its own in .config/nextest.toml):
NEXTEST_GUARD=2400

# The chaos soak's faults in CI (scripts/soak.sh --faults; docs/RELIABILITY.md): every kind,
# and records with coarse times. Each rests on a fix that has landed: dead letters published
# once (Nats-Msg-Id, confirmed +TERM) for influx-freeze and the NATS faults, start-up retries
# and `nats.replicas` for the NATS faults, the self-healing consumer for consumer-delete, and
# the point-identity rule for coarse-time.
SOAK_FAULTS=all
# Each of the two soak runs (a fixed seed, then a random one): seconds of load, records/s,
# and the seconds the streams may take to drain after it.
SOAK_SECONDS=60
SOAK_RATE=500
SOAK_DRAIN_SECONDS=180
# Each soak run's guard: its load and drain, and 10 minutes for starting the servers and
# collectors, the stops and the check (a 60 s run takes about 85 s: docs/RELIABILITY.md).
SOAK_GUARD=$((SOAK_SECONDS + SOAK_DRAIN_SECONDS + 600))
# The upgrade soak (scripts/soak.sh --upgrade-from): a third run, the same length and faults,
# in which each collector start runs either the static build or an older collector binary,
# so the two versions take over each other's records (point identity must not change between
# them). The older binary is the one COLLECTOR_UPGRADE_FROM names, meant to be the static build
# of the previous landed commit, which CI keeps from its last run; without it the run is
# skipped with a line saying so, rather than spend about 4 minutes of 2 cores building one.
UPGRADE_FROM=${COLLECTOR_UPGRADE_FROM-}

# The harness names its temp dirs collector-test-<run>-...; the servers carry
# that path on their command lines, which lets cleanup find this run's
# leftovers without touching anyone else's.
export COLLECTOR_TEST_RUN="run$$"
marker="collector-test-${COLLECTOR_TEST_RUN}-"
tmp="${TMPDIR:-/tmp}"
tmp="${tmp%/}"
# A test that needs a server this machine lacks (InfluxDB 3, tests/util/influx3.rs) passes
# without running and leaves a file here saying so; report_skips (scripts/lib/skips.sh) counts
# them.
export COLLECTOR_TEST_SKIPS="$tmp/${marker}skips"


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
# a no-op and its time under its guard small.
step "static musl build"
bash scripts/build-static.sh

# The test binaries, and the soak's driver (scripts/soak.sh builds it too, then a no-op),
# built before the guards.
test_status=0
if cargo nextest --version >/dev/null 2>&1; then
	step "build the tests: cargo nextest run --no-run"
	cargo nextest run --no-run
	step "cargo nextest run (hang guard ${NEXTEST_GUARD}s)"
	timeout --kill-after=30 "$NEXTEST_GUARD" cargo nextest run --no-fail-fast || test_status=$?
else
	step "build the tests: cargo test --no-run (cargo-nextest is not installed)"
	cargo test --no-run
	step "cargo test (hang guard ${NEXTEST_GUARD}s)"
	timeout --kill-after=30 "$NEXTEST_GUARD" cargo test --no-fail-fast || test_status=$?
fi
report_skips "$COLLECTOR_TEST_SKIPS"
((test_status == 0)) || exit "$test_status"
step "build the soak driver"
cargo build --example soak

# The chaos soak on the static binary just built: once with a fixed seed, with four planted
# differences its checker must find (--plant: the check can fail), once with a random seed
# (printed in its report, to reproduce a failure).
static_bin=target/static/x86_64-unknown-linux-musl/release/collector
for seed in 14 "$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')"; do
	plant=()
	[ "$seed" = 14 ] && plant=(--plant)
	step "chaos soak, seed $seed (hang guard ${SOAK_GUARD}s)"
	timeout --kill-after=30 "$SOAK_GUARD" bash scripts/soak.sh --binary "$static_bin" \
		--duration "${SOAK_SECONDS}s" --rate "$SOAK_RATE" --drain-timeout "${SOAK_DRAIN_SECONDS}s" \
		--faults "$SOAK_FAULTS" --seed "$seed" ${plant[@]+"${plant[@]}"}
done

if [ -z "$UPGRADE_FROM" ]; then
	echo "test.sh: upgrade soak skipped: set COLLECTOR_UPGRADE_FROM to an older collector binary" >&2
elif [ ! -f "$UPGRADE_FROM" ] || [ ! -x "$UPGRADE_FROM" ]; then
	echo "test.sh: upgrade soak skipped: COLLECTOR_UPGRADE_FROM=$UPGRADE_FROM is not an executable file" >&2
else
	seed=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
	step "upgrade soak from $UPGRADE_FROM, seed $seed (hang guard ${SOAK_GUARD}s)"
	timeout --kill-after=30 "$SOAK_GUARD" bash scripts/soak.sh --binary "$static_bin" \
		--upgrade-from "$UPGRADE_FROM" --duration "${SOAK_SECONDS}s" --rate "$SOAK_RATE" \
		--drain-timeout "${SOAK_DRAIN_SECONDS}s" --faults "$SOAK_FAULTS" --seed "$seed"
fi
