#!/usr/bin/env bash
# The throughput benchmark (docs/BENCHMARKS.md): how fast the collector drains a backlog,
# next to how fast the servers themselves can go, on loopback, with real servers this script
# starts and stops by PID.
#
#   scripts/bench.sh [--quick] [--records N] [--measurements M] [--scale] [--keep] [--profile]
#                    [--binary PATH] [--against REV [--pairs K] [--builds release,static]]
#                    [--influx v1|v3]
#
#   --quick        N = 100,000 instead of 1,000,000
#   --records N    any N (a multiple of M: the records are spread evenly over M measurements)
#   --measurements M  spread the records over M measurements (default 4)
#   --scale        the scale report instead of steps A-D (N = 100,000 unless --records):
#                  the same N records drained over 4 and over 200 measurements (target: the
#                  200 at >= 0.9 of the rate of the 4); then, with the 200 measurements idle,
#                  the CPU of the collector and of nats-server over 10 s (targets <= 0.5% and
#                  <= 2% of a core); then freshness, 20 lone records each into an idle
#                  measurement, publish to visible in InfluxDB (target p95 <= 150 ms); last,
#                  for context, the two drains again into a null sink (a v2 write API that
#                  stores nothing): the collector's own ratio, without InfluxDB's cost per series
#   --keep         keep the temp dir (server logs, the collector's log, the records);
#                  BENCH_LOG_LEVEL=debug in the environment makes that log show every write
#   --binary PATH  run C with this collector binary instead of the static build (e.g. an
#                  older build, to compare)
#   --against REV  the regression check: builds REV (a commit, tag or branch) in a temporary
#                  worktree (kept, by commit, under target/against/), then runs REV's and this
#                  tree's collectors alternately on the same servers and the same N records
#                  (default 400,000 over 4 measurements), for both builds a user can have: the
#                  glibc release build (`cargo build --release`) and the static musl build.
#                  Each pair also measures A and B, so L is that pair's own. Prints per pair
#                  and as medians: drain rate, C/L, whole-process CPU-µs per record (start to
#                  all stored), peak RSS, and new ÷ old for each; each run's log line also
#                  gives its minor page faults (minflt=). Steps A-D are not run.
#   --pairs K      pairs for --against (default 5)
#   --builds LIST  builds for --against: release,static (default), release or static
#   --influx v3    against InfluxDB 3 Core instead of InfluxDB 1.6 (--influx v1, the default):
#                  the server of the tests (INFLUXDB3_BIN, else ../shared/influxdb3/influxdb3.xz
#                  next to the repository, unpacked into the temp dir), started as production
#                  runs it (the write-ahead log flushed every second, a write answered after
#                  the flush); B writes 20,000 lines a POST over 8 connections to
#                  /api/v3/write_lp (the server's best rate here, docs/BENCHMARKS.md), and the
#                  collector runs with influx.api: v3. Steps A-D and --against; not --scale.
#                  A drain of 1M records takes about a minute there: --records 400000 will do
#   --profile      sample the collector with `perf record` during C and print where its CPU
#                  time goes, by thread and function (needs perf; the sampling costs a little;
#                  C then runs the release build, which has symbols). PERF_RECORD_FLAGS
#                  replaces perf's options (default -F 1999), e.g. "--call-graph dwarf"
#
# Steps, each checked (the script fails loudly when a count is off):
#   A  raw JetStream: drain N preloaded records with fetch + ack only (examples/bench_jetstream.rs)
#   B  raw InfluxDB: write the same N records as line protocol, 5,000 lines a POST over
#      2 connections (InfluxDB 3: 20,000 over 8), into a fresh database (examples/bench_influx.rs)
#   C  the static collector (scripts/build-static.sh), default configuration, N records
#      preloaded over 4 measurements: from its start until InfluxDB holds all N and the streams are empty;
#      its CPU time and peak RSS are read from /proc just before SIGTERM
#   D  decode + encode of one record (examples/encode_bench.rs)
# and prints the table: the limit is L = N / (tA + tB), the time one record takes through
# both servers one after the other.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/servers.sh
. scripts/lib/args.sh

N=1000000
n_given=0
keep=0
profile=0
scale=0
M=4
c_binary=
influx=v1
against=
pairs=5
builds=release,static
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) N=100000 n_given=1 ;;
	--records)
		[[ ${2-} =~ ^[0-9]+$ ]] || {
			echo "bench: --records needs a number" >&2
			exit 2
		}
		N=$2
		n_given=1
		shift
		;;
	--measurements)
		[[ ${2-} =~ ^[0-9]+$ ]] && ((${2} >= 1 && ${2} <= 1000)) || {
			echo "bench: --measurements needs a number from 1 to 1000" >&2
			exit 2
		}
		M=$2
		shift
		;;
	--scale) scale=1 ;;
	--keep) keep=1 ;;
	--profile) profile=1 ;;
	--against)
		[ -n "${2-}" ] || {
			echo "bench: --against needs a revision (a commit, tag or branch)" >&2
			exit 2
		}
		against=$2
		shift
		;;
	--pairs)
		[[ ${2-} =~ ^[0-9]+$ ]] && ((${2} >= 1)) || {
			echo "bench: --pairs needs a number of 1 or more" >&2
			exit 2
		}
		pairs=$2
		shift
		;;
	--builds)
		case "${2-}" in
		release | static | release,static | static,release) builds=$2 ;;
		*)
			echo "bench: --builds takes release, static or release,static" >&2
			exit 2
			;;
		esac
		shift
		;;
	--influx)
		case "${2-}" in
		v1 | v3) influx=$2 ;;
		*)
			echo "bench: --influx takes v1 (InfluxDB 1.6) or v3 (InfluxDB 3 Core)" >&2
			exit 2
			;;
		esac
		shift
		;;
	--binary)
		c_binary=$(collector_binary_arg bench "${2-}")
		shift
		;;
	-h | --help) print_help "${BASH_SOURCE[0]}" ;;
	*)
		echo "bench: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
	shift
done
if ((scale)); then
	((n_given)) || N=100000
	M=200
fi
if [ "$influx" = v3 ]; then
	((scale)) && {
		echo "bench: --scale runs against InfluxDB 1.6 only (its freshness probe reads InfluxQL)" >&2
		exit 2
	}
	# Before anything is built: without a server there is nothing to measure.
	missing=$(influx3_available 2>&1) || {
		echo "bench: $missing" >&2
		exit 1
	}
fi
# B's writes: InfluxDB 1.6 as ever, 5,000 lines a POST over 2 connections. A write to
# InfluxDB 3 is answered after the next flush of its write-ahead log (every second), so it
# takes many lines in flight at once to see its rate: of the shapes measured (see
# docs/BENCHMARKS.md) 20,000 lines over 8 connections gave the best. A body must stay under
# its 10 MiB request limit: at most about 45,000 of these lines.
if [ "$influx" = v3 ]; then
	b_batch=20000 b_threads=8
else
	b_batch=5000 b_threads=2
fi
if [ -n "$against" ]; then
	((scale || profile)) && {
		echo "bench: --against runs its own steps; it cannot be combined with --scale or --profile" >&2
		exit 2
	}
	((n_given)) || N=400000
	against_commit=$(git rev-parse --verify --quiet "$against^{commit}") || {
		echo "bench: --against $against: no such commit here" >&2
		exit 2
	}
fi
# names M: the measurement names m0 … m<M-1>, comma-separated.
names() {
	local k out=m0
	for ((k = 1; k < $1; k++)); do out+=",m$k"; done
	echo "$out"
}
LIST=$(names "$M")
IFS=, read -r -a MEASUREMENTS <<<"$LIST"
if ((N == 0 || N % M != 0 || (scale && N % 4 != 0))); then
	echo "bench: the record count must be a positive multiple of $M (and of 4 with --scale)" >&2
	exit 2
fi
PER=$((N / M))

say() { echo "bench: $*" >&2; }
die() {
	say "FAILED: $*"
	exit 1
}

work=$(mktemp -d "${TMPDIR:-/tmp}/collector-bench-XXXXXX")
pids=()
collector_pid=
perf_pid=
cleanup() {
	local status=$?
	trap - EXIT INT TERM
	if [ -n "$perf_pid" ]; then kill -INT "$perf_pid" 2>/dev/null || true; fi
	if [ -n "$collector_pid" ]; then kill -KILL "$collector_pid" 2>/dev/null || true; fi
	if ((${#pids[@]})); then stop_pids "${pids[@]}"; fi
	if ((keep)) || ((status != 0)); then
		say "logs and records kept in $work"
	else
		rm -rf "$work"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The servers it starts (nats-server, influxd), as scripts/test.sh and scripts/demo.sh do:
# on a fresh machine it otherwise ended with "nothing listens on 127.0.0.1:<port> after 30s".
say "installing what is missing (scripts/install-deps.sh)"
scripts/install-deps.sh
say "building the release binary and the benchmark examples"
examples=(--example bench_jetstream --example bench_influx)
encode_bench=0
if [ -f examples/encode_bench.rs ]; then
	examples+=(--example encode_bench)
	encode_bench=1
fi
if ((profile)); then
	# Symbols for perf: the release profile strips them.
	export CARGO_PROFILE_RELEASE_STRIP=false CARGO_PROFILE_RELEASE_DEBUG=line-tables-only
fi
# Two builds, the collector last and alone: built in one go with the examples, it would get
# the features Cargo unifies with their dev-dependencies (serde_json's `float_roundtrip`,
# proptest's), a different binary from the one `cargo build --release` gives a user. Run
# against itself that way, the same commit measured CPU 0.97 and peak RSS 1.06 of itself.
cargo build --release --quiet "${examples[@]}"
cargo build --release --quiet --bin collector
if [ -n "$against" ]; then
	# This tree's two builds, then REV's, each REV built once into target/against/<commit>/
	# (a detached worktree, so the working tree here is never touched).
	[[ $builds == *static* ]] && scripts/build-static.sh >/dev/null
	# Copied, so a build in this tree while the pairs run (an edit, a test) cannot swap the
	# binary being measured halfway through.
	new_release=$work/collector-new-release
	new_static=$work/collector-new-static
	cp target/release/collector "$new_release"
	if [[ $builds == *static* ]]; then
		cp target/static/x86_64-unknown-linux-musl/release/collector "$new_static"
	fi
	old_dir=$(pwd)/target/against/$against_commit
	if [ ! -d "$old_dir/src" ]; then
		say "checking out $against ($against_commit) in $old_dir/src"
		mkdir -p "$old_dir"
		git worktree add --detach --quiet "$old_dir/src" "$against_commit"
	fi
	say "building $against ($builds)"
	(cd "$old_dir/src" && cargo build --release --quiet --bin collector --target-dir "$old_dir/target")
	if [[ $builds == *static* ]]; then
		(cd "$old_dir/src" && CC_x86_64_unknown_linux_musl=${CC_x86_64_unknown_linux_musl:-musl-gcc} \
			cargo build --release --quiet --bin collector --target x86_64-unknown-linux-musl \
			--target-dir "$old_dir/target")
	fi
	old_release=$old_dir/target/release/collector
	old_static=$old_dir/target/x86_64-unknown-linux-musl/release/collector
fi
# C runs what ships: the static musl binary (with its own allocator, see Cargo.toml), unless
# --binary names another, or --profile needs the symbols of the release build.
static_bin=target/static/x86_64-unknown-linux-musl/release/collector
if [ -n "$c_binary" ]; then
	bin=$c_binary
	bin_kind="given with --binary"
elif ((profile)); then
	bin=target/release/collector
	bin_kind="release build with symbols, for perf (glibc malloc)"
elif [ -n "$against" ]; then
	# The regression check runs the builds it was asked for, built above.
	bin=
	bin_kind=
else
	say "building the static musl binary (scripts/build-static.sh)"
	scripts/build-static.sh >/dev/null
	bin=$static_bin
	bin_kind="static musl, as shipped"
fi
ex=target/release/examples

# --- the records ---------------------------------------------------------------------------
# The typical record of examples/encode_bench.rs, as the Transfer client (Go's encoding/json)
# publishes it: compact, keys sorted; 3 tags, 5 fields (an integer size, a boolean, a float
# duration, a 100-byte message, an integer status) and an RFC 3339 time with nanoseconds and
# an offset, unique to the record (50 µs apart, each with its own nanoseconds), so no point
# overwrites another.
# write_records DIR M: the N records spread over measurements m0 … m<M-1>, one file each.
write_records() {
	local dir=$1 m=$2 k
	say "writing $N records over $m measurements ($((N / m)) each) in $dir"
	mkdir -p "$dir"
	for ((k = 0; k < m; k++)); do
		awk -v per="$((N / m))" -v k="$k" -v M="$m" 'BEGIN {
			split("info warn error debug", levels, " ")
			split("checkout search auth cart", services, " ")
			for (i = 0; i < per; i++) {
				g = i * M + k
				t = g * 50000 + g % 7
				s = int(t / 1000000000)
				ns = t - s * 1000000000
				printf "{\"tags\":{\"host\":\"web-%02d\",\"level\":\"%s\",\"service\":\"%s\"},", g % 20, levels[g % 4 + 1], services[g % 3 + 1]
				printf "\"fields\":{\"bytes\":%d,\"cached\":%s,\"duration_ms\":%.3f,", 200 + (g * 7919) % 60000, (g % 3 == 0) ? "true" : "false", (g % 9973) / 7.0 + 0.125
				printf "\"message\":\"order %05d paid by card ending %04d after %d retries; receipt mailed to the customer, all good!!!!!!\",", g % 99991, g % 9973, g % 10
				printf "\"status\":%d},", (g % 50 == 0) ? 500 : ((g % 10 == 0) ? 404 : 200)
				printf "\"time\":\"2024-03-01T%02d:%02d:%02d.%09d+08:00\"}\n", 12 + int(s / 3600), int(s / 60) % 60, s % 60, ns
			}
		}' >"$dir/m$k.jsonl"
	done
}
write_records "$work/records" "$M"
record_bytes=$(($(cat "$work"/records/*.jsonl | wc -c) / N))

# --- the servers ----------------------------------------------------------------------------
start_nats "$work"
pids+=("$NATS_PID")
if [ "$influx" = v3 ]; then
	say "starting nats-server and InfluxDB 3 Core (influxdb3 serve) on loopback in $work"
	start_influx3 "$work" || die "InfluxDB 3 did not start (see $work/influxdb3.log)"
	pids+=("$INFLUX3_PID")
	INFLUX_URL=$INFLUX3_URL
	server="InfluxDB 3 Core $("$INFLUX3_BIN" --version | sed -n 's/^influxdb3 \([^,]*\).*/\1/p') (WAL flushed every 1 s, the default)"
else
	say "starting nats-server and influxd on loopback in $work"
	start_influx "$work"
	pids+=("$INFLUX_PID")
	server="InfluxDB $(influxd version | sed -n 's/^InfluxDB v\([^ ]*\).*/\1/p')"
fi
server="$server; nats-server $(nats-server --version | sed -n 's/.* v\{0,1\}\([0-9][^ ]*\)$/\1/p')"

# db_create DB, db_drop DB: a database of the InfluxDB the run uses.
db_create() {
	if [ "$influx" = v3 ]; then
		influx3_database "$INFLUX_URL" create "$1"
	else
		influx_query "$INFLUX_URL" "" "CREATE DATABASE \"$1\"" >/dev/null
	fi
}
db_drop() {
	if [ "$influx" = v3 ]; then
		influx3_database "$INFLUX_URL" delete "$1"
	else
		influx_query "$INFLUX_URL" "" "DROP DATABASE \"$1\"" >/dev/null
	fi
}

# config NAMESPACE DATABASE: a collector configuration with every tuning key at its default.
config() {
	cat >"$work/$1.yml" <<YAML
namespace: $1
nats:
  hosts: [$NATS_URL]
influx:
  url: $INFLUX_URL
  api: $influx
  database: $2
log:
  level: ${BENCH_LOG_LEVEL:-warn}
YAML
	echo "$work/$1.yml"
}

# config_null NAMESPACE: the same, writing to the null sink with the v2 API.
config_null() {
	cat >"$work/$1.yml" <<YAML
namespace: $1
nats:
  hosts: [$NATS_URL]
influx:
  url: $NULL_URL
  api: v2
  org: bench
  bucket: $1
  token: bench
log:
  level: ${BENCH_LOG_LEVEL:-warn}
YAML
	echo "$work/$1.yml"
}

# start_null_sink: the null sink of examples/bench_influx.rs on loopback: reads each
# request's body and answers 204, a write API that stores nothing; sets NULL_URL.
start_null_sink() {
	local port
	port=$(free_port)
	NULL_URL="http://127.0.0.1:$port"
	"$ex/bench_influx" sink --port "$port" >"$work/null-sink.log" 2>&1 &
	pids+=($!)
	wait_port "$port" 30
}

# preload NAMESPACE: what the Transfer client does: the measurements' keys and streams, then
# every record, published as it publishes them (no headers), many acknowledged publishes in
# flight at once. `collector publish` would add a Nats-Msg-Id header to each record, which
# the client library then parses on every delivery: not the typical record.
# preload NAMESPACE [LIST DIR]: the measurements of LIST, records from DIR (default: the
# measurements and records of the run).
preload() {
	"$ex/bench_jetstream" preload --nats "$NATS_URL" --namespace "$1" --measurements "${2:-$LIST}" \
		--dir "${3:-$work/records}"
}

# value KEY TEXT: the value of `KEY=value` in TEXT.
value() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" <<<"$2"; }

# proc_stat PID: the fields of /proc/PID/stat after the `(comm)`, which may hold spaces; field
# N of stat(5) is then field N - 2.
proc_stat() { sed 's/^.*) //' "/proc/$1/stat"; }

# proc_ticks PID: CPU time (user + system) of a process so far, in clock ticks (utime and
# stime, fields 14 and 15).
proc_ticks() { proc_stat "$1" | awk '{ print $12 + $13 }'; }

# proc_hwm_kb PID: the peak RSS of a process so far, in kB.
proc_hwm_kb() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }

# proc_minflt PID: the minor page faults of a process so far (minflt, field 10). Far less
# noisy than CPU time on a shared machine: it shows at once whether the allocator gives memory
# back that it then faults in again.
proc_minflt() { proc_stat "$1" | awk '{ print $8 }'; }

# step_a NAMESPACE: limit A, the N records preloaded into NAMESPACE and drained with fetch +
# ack only; prints bench_jetstream's `records=… seconds=…` (the preload's own line goes to
# stderr, so that callers read only the drain's).
step_a() {
	local out
	preload "$1" >&2
	out=$("$ex/bench_jetstream" drain --nats "$NATS_URL" --namespace "$1" --measurements "$LIST" \
		--batch 500 --threads 2)
	[ "$(value records "$out")" = "$N" ] || die "A drained $(value records "$out") records, not $N"
	echo "$out"
}

# step_b DATABASE: limit B, the N records written as line protocol into DATABASE; prints
# bench_influx's `records=… seconds=… bytes=…`.
step_b() {
	local out
	out=$("$ex/bench_influx" write --api "$influx" --url "$INFLUX_URL" --db "$1" --dir "$work/records" \
		--measurements "$LIST" --batch "$b_batch" --threads "$b_threads")
	[ "$(value records "$out")" = "$N" ] || die "B wrote $(value records "$out") records, not $N"
	echo "$out"
}

# --- the regression check (--against REV) -------------------------------------------------
if [ -n "$against" ]; then
	# run_c BINARY NAMESPACE: preloads the N records into NAMESPACE, runs BINARY from its start
	# until InfluxDB holds all N, and prints `seconds=… ticks=… hwm_kb=… minflt=…`: the drain
	# time, the process's whole user + system CPU in clock ticks, its peak RSS, its minor page
	# faults.
	run_c() {
		local bin=$1 ns=$2 conf start_ns out ticks hwm minflt stored t0
		t0=$(date +%s%N)
		conf=$(config "$ns" "$ns")
		db_create "$ns"
		preload "$ns" >/dev/null
		start_ns=$(date +%s%N)
		say "$ns: preloaded in $(((start_ns - t0) / 1000000)) ms"
		"$bin" --config "$conf" >"$work/$ns.log" 2>&1 &
		collector_pid=$!
		# run_c runs in a command substitution, whose subshell has no EXIT trap: a failure
		# here kills the collector itself, or it outlives the run.
		out=$(timeout 900 "$ex/bench_jetstream" wait --nats "$NATS_URL" --namespace "$ns" \
			--measurements "$LIST" --since "$start_ns") || {
			kill -KILL "$collector_pid" 2>/dev/null || true
			die "$ns: the streams did not empty (see $work/$ns.log)"
		}
		kill -0 "$collector_pid" 2>/dev/null || die "$ns: the collector exited early (see $work/$ns.log)"
		ticks=$(proc_ticks "$collector_pid")
		hwm=$(proc_hwm_kb "$collector_pid")
		minflt=$(proc_minflt "$collector_pid")
		kill -TERM "$collector_pid"
		wait "$collector_pid" || die "$ns: the collector exited with status $? after SIGTERM"
		collector_pid=
		stored=$("$ex/bench_influx" count --api "$influx" --url "$INFLUX_URL" --db "$ns" \
			--measurements "$LIST")
		[ "$(value points "$stored")" = "$N" ] || die "$ns: InfluxDB holds $(value points "$stored") points, not $N"
		t0=$(date +%s%N)
		# Each run's database and streams are dropped, so every run writes into an empty
		# database and nats-server does not slow down under thousands of streams.
		db_drop "$ns"
		"$ex/bench_jetstream" remove --nats "$NATS_URL" --namespace "$ns" --measurements "$LIST"
		say "$ns: dropped and removed in $((($(date +%s%N) - t0) / 1000000)) ms"
		echo "seconds=$(value seconds "$out") ticks=$ticks hwm_kb=$hwm minflt=$minflt"
	}
	results=$work/against.tsv
	: >"$results"
	IFS=, read -r -a build_list <<<"$builds"
	for ((pair = 1; pair <= pairs; pair++)); do
		say "pair $pair of $pairs: A (JetStream alone) and B (InfluxDB alone)"
		out=$(step_a "limita$pair")
		t_a=$(value seconds "$out")
		"$ex/bench_jetstream" remove --nats "$NATS_URL" --namespace "limita$pair" --measurements "$LIST"
		out=$(step_b "limitb$pair")
		t_b=$(value seconds "$out")
		db_drop "limitb$pair"
		for build in "${build_list[@]}"; do
			if [ "$build" = release ]; then
				old_bin=$old_release new_bin=$new_release
			else
				old_bin=$old_static new_bin=$new_static
			fi
			# The order alternates from pair to pair, so a drift of the machine's speed
			# during the run favours neither.
			order=(old new)
			((pair % 2 == 0)) && order=(new old)
			for which in "${order[@]}"; do
				[ "$which" = old ] && bin=$old_bin || bin=$new_bin
				out=$(run_c "$bin" "c${pair}${which}${build}")
				say "pair $pair, $build, $which: $out (A ${t_a}s, B ${t_b}s)"
				printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$pair" "$build" "$which" "$t_a" "$t_b" \
					"$(value seconds "$out")" "$(value ticks "$out")" "$(value hwm_kb "$out")" >>"$results"
			done
		done
	done
	python3 - "$results" "$N" "$(getconf CLK_TCK)" "$against ($against_commit)" "$M" "$server" <<'PY'
import statistics, sys
path, n, hz, rev, m, server = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6]
runs = {}
for line in open(path):
    pair, build, which, ta, tb, tc, ticks, hwm = line.split()
    limit = n / (float(ta) + float(tb))
    rate = n / float(tc)
    runs[(build, int(pair), which)] = dict(rate=rate, cl=rate / limit, cpu=int(ticks) / hz * 1e6 / n,
                                           rss=int(hwm) / 1024)
print(f"\ncollector regression check: {n} records over {m} measurements; old = {rev}, new = this tree")
print(f"servers: {server}")
print("C/L: the drain rate over the pair's own limit L = N / (tA + tB); CPU: the whole process, µs per record")
for build in ("release", "static"):
    pairs = sorted({p for (b, p, _) in runs if b == build})
    if not pairs:
        continue
    print(f"\n  {build} build" + (" (glibc, cargo build --release)" if build == "release" else " (musl, scripts/build-static.sh)"))
    print(f"  {'pair':>6} {'old rec/s':>10} {'new rec/s':>10} {'old C/L':>8} {'new C/L':>8} {'old CPU':>8} {'new CPU':>8} {'old RSS':>8} {'new RSS':>8} {'rate n/o':>9} {'CPU n/o':>8} {'RSS n/o':>8}")
    cols = {k: [] for k in ("or", "nr", "ocl", "ncl", "oc", "nc", "om", "nm", "rr", "rc", "rm")}
    for p in pairs:
        o, w = runs[(build, p, "old")], runs[(build, p, "new")]
        row = dict(**{"or": o["rate"]}, nr=w["rate"], ocl=o["cl"], ncl=w["cl"], oc=o["cpu"], nc=w["cpu"],
                   om=o["rss"], nm=w["rss"], rr=w["rate"] / o["rate"], rc=w["cpu"] / o["cpu"], rm=w["rss"] / o["rss"])
        for k, v in row.items():
            cols[k].append(v)
        print(f"  {p:>6} {row['or']:>10.0f} {row['nr']:>10.0f} {row['ocl']:>8.2f} {row['ncl']:>8.2f} {row['oc']:>8.2f} {row['nc']:>8.2f} {row['om']:>8.1f} {row['nm']:>8.1f} {row['rr']:>9.2f} {row['rc']:>8.2f} {row['rm']:>8.2f}")
    md = {k: statistics.median(v) for k, v in cols.items()}
    print(f"  {'median':>6} {md['or']:>10.0f} {md['nr']:>10.0f} {md['ocl']:>8.2f} {md['ncl']:>8.2f} {md['oc']:>8.2f} {md['nc']:>8.2f} {md['om']:>8.1f} {md['nm']:>8.1f} {md['rr']:>9.2f} {md['rc']:>8.2f} {md['rm']:>8.2f}")
PY
	exit 0
fi

# write_summary LOG: from a collector's log, the batch sizes it grew to (info level) and, at
# debug level, its writes: how many, their lines, what ended each batch, how long each took.
write_summary() {
	awk '
	/batches of up to [0-9]+ lines/ {
		match($0, /up to [0-9]+ lines \([0-9]+ bytes\)/)
		split(substr($0, RSTART + 6, RLENGTH - 6), a, /[ ()]+/)
		grew = grew sprintf("%s%s lines (%.1f MiB)", grew == "" ? "" : ", ", a[1], a[3] / 1048576)
	}
	/writer: wrote [0-9]+ lines/ {
		match($0, /wrote [0-9]+ lines \([0-9]+ bytes, [A-Za-z]+\) in [0-9.]+[a-zµ]+/)
		split(substr($0, RSTART, RLENGTH), a, /[ (),]+/)
		lines = a[2]; why = a[6]; d = a[8]
		unit = d; sub(/^[0-9.]+/, "", unit); v = d + 0
		ms = unit == "s" ? v * 1000 : unit == "ms" ? v : unit == "ns" ? v / 1e6 : v / 1000
		n++; total += lines; t += ms
		if (lines > max) max = lines
		if (ms > tmax) tmax = ms
		reasons[why]++
		if (why == "Lines" || why == "Bytes") { full++; full_ms += ms; full_lines += lines }
	}
	END {
		if (grew != "") printf "bench: C: the batches grew to %s\n", grew
		if (n == 0) exit
		r = ""
		for (k in reasons) r = r sprintf("%s%s %d", r == "" ? "" : ", ", k, reasons[k])
		printf "bench: C: %d writes (%s), %.0f lines each on average, %d at most; a write took %.0f ms on average, %.0f at most\n", n, r, total / n, max, t / n, tmax
		if (full) printf "bench: C: the %d full batches: %.0f lines and %.0f ms each on average, %.0f lines/s while writing\n", full, full_lines / full, full_ms / full, full_lines / full_ms * 1000
	}' "$1" >&2
}

# --- the scale report (--scale) -------------------------------------------------------------
if ((scale)); then
	# drain NAMESPACE LIST DIR: preloads, starts the collector and waits for the streams to
	# empty; sets t_drain and leaves the collector running (collector_pid).
	# With a fourth argument, null, the collector writes to the null sink instead; nothing
	# there counts the points, so the check is that every record was acknowledged, which the
	# collector does only after a 2xx.
	drain() {
		local conf
		if [ "${4-}" = null ]; then
			conf=$(config_null "$1")
		else
			conf=$(config "$1" "$1")
			influx_query "$INFLUX_URL" "" "CREATE DATABASE \"$1\"" >/dev/null
		fi
		preload "$1" "$2" "$3"
		local start_ns
		start_ns=$(date +%s%N)
		"$bin" --config "$conf" >"$work/$1.log" 2>&1 &
		collector_pid=$!
		out=$(timeout 900 "$ex/bench_jetstream" wait --nats "$NATS_URL" --namespace "$1" \
			--measurements "$2" --since "$start_ns") || die "$1: the streams did not empty (see $work/$1.log)"
		t_drain=$(value seconds "$out")
		[ "${4-}" = null ] && return 0
		local stored
		stored=$("$ex/bench_influx" count --url "$INFLUX_URL" --db "$1" --measurements "$2")
		[ "$(value points "$stored")" = "$N" ] || die "$1: InfluxDB holds $(value points "$stored") points, not $N"
	}
	stop_collector() {
		kill -TERM "$collector_pid"
		wait "$collector_pid" || die "the collector exited with status $? after SIGTERM"
		collector_pid=
	}
	list4=$(names 4)
	write_records "$work/records4" 4
	# InfluxDB alone, for context: 200 measurements are also many more series for it.
	say "scale: InfluxDB alone, the same records over 4 and over 200 measurements"
	out=$("$ex/bench_influx" write --url "$INFLUX_URL" --db influx4 --dir "$work/records4" \
		--measurements "$list4" --batch 5000 --threads 2)
	[ "$(value records "$out")" = "$N" ] || die "InfluxDB alone wrote $(value records "$out") records, not $N"
	ti4=$(value seconds "$out")
	out=$("$ex/bench_influx" write --url "$INFLUX_URL" --db influx200 --dir "$work/records" \
		--measurements "$LIST" --batch 5000 --threads 2)
	[ "$(value records "$out")" = "$N" ] || die "InfluxDB alone wrote $(value records "$out") records, not $N"
	ti200=$(value seconds "$out")
	say "scale: $N records over 4 measurements"
	drain scale4 "$list4" "$work/records4"
	t4=$t_drain
	stop_collector
	say "scale: $N records over 200 measurements"
	drain scale200 "$LIST" "$work/records"
	t200=$t_drain
	say "scale: 200 idle measurements: CPU over 10 s (after 2 s to settle)"
	# (the null-sink drains come after the idle and freshness figures, with their own
	# collectors)
	sleep 2
	c0=$(proc_ticks "$collector_pid")
	n0=$(proc_ticks "$NATS_PID")
	sleep 10
	c1=$(proc_ticks "$collector_pid")
	n1=$(proc_ticks "$NATS_PID")
	say "scale: freshness, 20 lone records into idle measurements"
	fresh=$("$ex/bench_jetstream" fresh --nats "$NATS_URL" --namespace scale200 --measurements "$LIST" \
		--influx "$INFLUX_URL" --db scale200 --samples 20) || die "freshness probe failed"
	stop_collector
	# The same drains into a null sink, for context: a v2 write API that reads each body and
	# answers 204 at once, stores nothing, and so has no cost per series; this ratio is the
	# collector's and NATS's own, where the one above is mostly InfluxDB's.
	say "scale: the same drains into a null sink (v2 write API, stores nothing)"
	start_null_sink
	drain null4 "$list4" "$work/records4" null
	tv4=$t_drain
	stop_collector
	drain null200 "$LIST" "$work/records" null
	tv200=$t_drain
	stop_collector
	if grep -q . "$work/scale200.log"; then
		say "the collector logged (level warn):"
		head -n 20 "$work/scale200.log" >&2
	fi
	awk -v n="$N" -v t4="$t4" -v t200="$t200" -v c="$((c1 - c0))" -v nt="$((n1 - n0))" \
		-v hz="$(getconf CLK_TCK)" -v p50="$(value p50_ms "$fresh")" -v p95="$(value p95_ms "$fresh")" \
		-v pmax="$(value max_ms "$fresh")" -v bin="$bin" -v ti4="$ti4" -v ti200="$ti200" \
		-v tv4="$tv4" -v tv200="$tv200" 'BEGIN {
		printf "\ncollector scale report: %d records; %s\n\n", n, bin
		printf "  %-52s %10s %12s\n", "", "seconds", "records/s"
		printf "  %-52s %10.3f %12.0f\n", "drain over 4 measurements (start to all stored)", t4, n / t4
		printf "  %-52s %10.3f %12.0f\n", "drain over 200 measurements (start to all stored)", t200, n / t200
		printf "  %-52s %10.2f   (target >= 0.9)\n", "rate over 200 / rate over 4", t4 / t200
		printf "  %-52s %10.3f %12.0f\n", "InfluxDB alone, 4 measurements (context)", ti4, n / ti4
		printf "  %-52s %10.3f %12.0f\n", "InfluxDB alone, 200 measurements (context)", ti200, n / ti200
		printf "  %-52s %10.2f\n", "InfluxDB alone: rate over 200 / rate over 4", ti4 / ti200
		printf "  %-52s %10.3f %12.0f\n", "into a null sink, 4 measurements (context)", tv4, n / tv4
		printf "  %-52s %10.3f %12.0f\n", "into a null sink, 200 measurements (context)", tv200, n / tv200
		printf "  %-52s %10.2f\n", "into a null sink: rate over 200 / rate over 4", tv4 / tv200
		printf "  %-52s %10.2f   (target <= 0.5)\n", "200 idle: collector CPU, % of a core over 10 s", c / hz / 10 * 100
		printf "  %-52s %10.2f   (target <= 2)\n", "200 idle: nats-server CPU, % of a core over 10 s", nt / hz / 10 * 100
		printf "  %-52s %10.1f   (target <= 150; p50 %.1f, max %.1f)\n", "freshness of a lone record, p95 ms (20 samples)", p95, p50, pmax
	}'
	exit 0
fi

# --- A: raw JetStream -----------------------------------------------------------------------
say "A: preloading $N records, then draining them with fetch + ack only (2 threads, as 2 workers)"
out=$(step_a limita)
t_a=$(value seconds "$out")
say "A: $out"

# --- B: raw InfluxDB ------------------------------------------------------------------------
say "B: writing $N records as line protocol, $b_batch lines a POST, $b_threads connections"
out=$(step_b limitb)
t_b=$(value seconds "$out")
line_bytes=$(($(value bytes "$out") / N))
say "B: $out"
if [ "$influx" = v3 ]; then
	# InfluxDB 3 keeps what it was written in memory until it persists it (every 10 minutes)
	# and holds at most 5 databases: C writes into a server that holds only its own.
	db_drop limitb
fi

# --- C: the collector -----------------------------------------------------------------------
say "C: preloading $N records over $M measurements, then running the collector ($bin)"
config_c=$(config bench bench)
db_create bench
preload bench
start_ns=$(date +%s%N)
if ((profile)); then
	# perf starts the collector, so it sees every thread from its birth, names included.
	perf record -q ${PERF_RECORD_FLAGS:--F 1999} -o "$work/perf.data" -- "$bin" --config "$config_c" \
		>"$work/collector.log" 2>"$work/perf.log" &
	perf_pid=$!
	for _ in $(seq 100); do
		collector_pid=$(pgrep -P "$perf_pid" || true)
		[ -n "$collector_pid" ] && break
		sleep 0.05
	done
	[ -n "$collector_pid" ] || die "C: perf did not start the collector (see $work/perf.log)"
else
	"$bin" --config "$config_c" >"$work/collector.log" 2>&1 &
	collector_pid=$!
fi
out=$(timeout 900 "$ex/bench_jetstream" wait --nats "$NATS_URL" --namespace bench \
	--measurements "$LIST" --since "$start_ns") || die "C: the streams did not empty (see $work/collector.log)"
t_c=$(value seconds "$out")
kill -0 "$collector_pid" 2>/dev/null || die "C: the collector exited early (see $work/collector.log)"
ticks=$(proc_ticks "$collector_pid")
hwm_kb=$(proc_hwm_kb "$collector_pid")
minflt=$(proc_minflt "$collector_pid")
kill -TERM "$collector_pid"
if [ -n "$perf_pid" ]; then
	wait "$perf_pid" || die "C: the collector (under perf) exited with status $? after SIGTERM"
	perf_pid=
	# Per thread (the collector names its threads), then per function inside each. `head`
	# closes the pipe early, so perf's own status is not looked at.
	{
		perf report -q -i "$work/perf.data" --stdio --sort comm 2>/dev/null || true
		echo
		perf report -q -i "$work/perf.data" --stdio --sort comm,dso,symbol 2>/dev/null | head -n 60 || true
	} >"$work/profile.txt"
else
	wait "$collector_pid" || die "C: the collector exited with status $? after SIGTERM"
fi
collector_pid=
stored=$("$ex/bench_influx" count --api "$influx" --url "$INFLUX_URL" --db bench --measurements "$LIST")
[ "$(value points "$stored")" = "$N" ] || die "C: InfluxDB holds $(value points "$stored") points, not $N"
say "C: $out, $stored, cpu ticks $ticks, VmHWM $hwm_kb kB, minor faults $minflt"
if ((profile)); then
	say "C: where the collector's CPU time went (perf samples; kept in $work/perf.data):"
	cat "$work/profile.txt" >&2
	keep=1
fi
if grep -q . "$work/collector.log"; then
	say "C: the collector logged (level ${BENCH_LOG_LEVEL:-warn}):"
	head -n 20 "$work/collector.log" >&2
	write_summary "$work/collector.log"
fi

# --- D: decode + encode ---------------------------------------------------------------------
ns_record=
if ((encode_bench)); then
	say "D: decode + encode micro-benchmark"
	out=$("$ex/encode_bench" 2>&1)
	echo "$out" >&2
	ns_record=$(grep -io '[0-9.]* *ns/record' <<<"$out" | head -n 1 | grep -o '^[0-9.]*' || true)
fi

# --- the table ------------------------------------------------------------------------------
# The static binary's size: the one C ran, or the newest of a plain musl build and
# scripts/build-static.sh's.
binary=
if [ "$bin" = "$static_bin" ]; then
	binary=$bin
	binary_kind="static musl"
else
	for candidate in target/x86_64-unknown-linux-musl/release/collector "$static_bin"; do
		if [ -f "$candidate" ] && { [ -z "$binary" ] || [ "$candidate" -nt "$binary" ]; }; then
			binary=$candidate
			binary_kind="static musl"
		fi
	done
	if [ -z "$binary" ]; then
		binary=target/release/collector
		binary_kind="release, not static: run scripts/build-static.sh for the musl one"
	elif [ "$binary" -ot target/release/collector ]; then
		binary_kind="$binary_kind, older than the release build"
	fi
fi
binary_bytes=$(stat -c %s "$binary")
clk_tck=$(getconf CLK_TCK)

awk -v n="$N" -v ta="$t_a" -v tb="$t_b" -v tc="$t_c" -v ticks="$ticks" -v hz="$clk_tck" \
	-v hwm="$hwm_kb" -v ns="$ns_record" -v size="$binary_bytes" -v bin="$binary" \
	-v kind="$binary_kind" -v ckind="$bin_kind" -v cbin="$bin" -v rb="$record_bytes" -v lb="$line_bytes" -v m="$M" \
	-v server="$server" -v bb="$b_batch" -v bt="$b_threads" -v api="$influx" 'BEGIN {
	l = n / (ta + tb)
	cpu = ticks / hz
	printf "\ncollector benchmark: %d records over %d measurements (%d B of JSON, %d B of line protocol each)\n", n, m, rb, lb
	printf "servers: %s\n\n", server
	printf "  %-44s %10s %12s\n", "", "seconds", "records/s"
	printf "  %-44s %10.3f %12.0f\n", "A  JetStream fetch + ack, no database", ta, n / ta
	printf "  %-44s %10.3f %12.0f\n", "B  InfluxDB write of line protocol", tb, n / tb
	printf "     (%d lines a POST over %d connections to %s)\n", bb, bt, api == "v3" ? "/api/v3/write_lp" : "/write"
	printf "  %-44s %10.3f %12.0f\n", "L  limit N / (tA + tB)", ta + tb, l
	printf "  %-44s %10.3f %12.0f\n", "C  collector, start to all stored and acked", tc, n / tc
	printf "     (%s: %s)\n", ckind, cbin
	printf "\n"
	printf "  %-44s %10.2f   (target >= %s)\n", "collector / L", (n / tc) / l, api == "v3" ? "0.9" : "0.8"
	printf "  %-44s %10.2f   (target <= 1.5; %.2f s user+sys)\n", "collector CPU-us per record", cpu * 1e6 / n, cpu
	printf "  %-44s %10.1f   (target <= 40 during a 1M drain)\n", "collector peak RSS, MB (VmHWM)", hwm / 1024
	if (ns != "") printf "  %-44s %10.0f   (target <= 500)\n", "decode + encode, ns per record", ns
	else printf "  %-44s %10s\n", "decode + encode, ns per record", "n/a (examples/encode_bench.rs missing)"
	printf "  %-44s %10.2f   (%s: %s)\n", "binary size, MB", size / 1048576, kind, bin
}'
