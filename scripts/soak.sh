#!/usr/bin/env bash
# The chaos soak (docs/RELIABILITY.md): a 3-node NATS cluster, InfluxDB 1.6 (or 3) and three
# collectors on loopback, a steady load of numbered records (some poison), faults at random
# moments drawn from the seed, then an exact check of InfluxDB, the dead letters, the streams,
# peak RSS and clean exits. Exit code 0 when everything holds, 1 otherwise, 2 for a bad
# command line. The driver is examples/soak (publisher, faults, checker); this script builds
# it and the collector, runs it, and kills by PID anything it leaves behind.
#
#   scripts/soak.sh [--duration 10m] [--seed N] [--rate R] [--faults LIST]
#                   [--release | --binary PATH] [--poison PER_MILLE] [--rss-limit MIB]
#                   [--drain-timeout 3m] [--max-print N] [--plant] [--influx v1|v3]
#                   [--upgrade-from PATH]
#
#   --duration D     how long the load and the faults last (90s, 10m, 1h; default 10m)
#   --seed N         the seed of the fault schedule and the record mix (default: random,
#                    printed, so a run can be repeated)
#   --rate R         records per second (default 2000)
#   --faults LIST    comma-separated: kill, term, rolling, nats-kill, nats-freeze,
#                    influx-stop, influx-freeze, consumer-delete, kv-remove, and coarse-time
#                    (records with `time` at second, millisecond and microsecond precision);
#                    or all (default) or none
#   --release        run the release build of the collector (default: the debug build)
#   --binary PATH    run this collector binary (e.g. the static build)
#   --upgrade-from PATH
#                    an older collector build to mix in, as in a rolling upgrade: every
#                    collector start (the first, and after each kill, term and rolling fault)
#                    runs PATH or the binary above, drawn from the seed; the report counts
#                    the starts of each
#   --poison P       poison records per thousand (default 20)
#   --rss-limit MIB  the bound on each collector's peak RSS (default 128)
#   --drain-timeout  how long to wait for the streams to drain after the load (default 3m)
#   --max-print N    differences printed per kind (default 40; all go to differences.txt)
#   --plant          the checker's self-test: after the drain, delete one record's point,
#                    add a second point for another, alter a third and dead-letter a poison
#                    record again; the run passes only if the check reports exactly those
#                    (with --influx v1 only: InfluxDB 3 cannot delete a point)
#   --influx v3      InfluxDB 3 Core (its WAL flushed every second, as by default) and
#                    `influx.api: v3` instead of InfluxDB 1.6 and v1; its binary comes from
#                    INFLUXDB3_BIN or ../shared/influxdb3/influxdb3.xz (tests/util/influx3.rs)
#
# On failure every server's and collector's temp dir (logs, data) and the report are kept
# under the system temp dir, their paths printed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/args.sh
. scripts/lib/leftovers.sh

binary=
release=0
upgrade_from=()
pass=()
while [ $# -gt 0 ]; do
	case "$1" in
	--binary)
		binary=$(collector_binary_arg soak "${2-}")
		shift
		;;
	--upgrade-from)
		upgrade_from=(--upgrade-from "$(collector_binary_arg soak "${2-}" --upgrade-from)")
		shift
		;;
	--release) release=1 ;;
	-h | --help) print_help "${BASH_SOURCE[0]}" ;;
	*)
		pass+=("$1")
		;;
	esac
	shift
done

cargo build --quiet --example soak
if [ -z "$binary" ]; then
	if ((release)); then
		cargo build --quiet --release --bin collector
		binary=$PWD/target/release/collector
	else
		cargo build --quiet --bin collector
		binary=$PWD/target/debug/collector
	fi
fi
echo "soak: collector binary $binary" >&2
[ ${#upgrade_from[@]} -eq 0 ] || echo "soak: older collector binary ${upgrade_from[1]}" >&2

# The harness names its temp dirs collector-test-<run>-...; the servers and collectors carry
# that path on their command lines, which lets cleanup find this run's leftovers by PID
# without touching anyone else's.
export COLLECTOR_TEST_RUN="soak$$"
marker="collector-test-${COLLECTOR_TEST_RUN}-"
cleanup() {
	local status=$?
	kill_leftovers "$marker" soak
	# The InfluxDB 3 binary unpacked for --influx v3 (tests/util/influx3.rs).
	rm -rf "${TMPDIR:-/tmp}/${marker}influxdb3-bin"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

COLLECTOR_BIN="$binary" target/debug/examples/soak ${upgrade_from[@]+"${upgrade_from[@]}"} \
	${pass[@]+"${pass[@]}"}
