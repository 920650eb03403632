#!/usr/bin/env bash
# Runs the collector's main job on this machine, from nothing: installs nats-server and
# InfluxDB 1.x when missing, starts them on loopback (free ports, a temp dir), configures a
# namespace `demo` with two measurements the way the Transfer client does, runs the
# collector, publishes sample records, prints what InfluxDB now holds, and keeps running
# until Ctrl-C; then stops everything it started.
#
#   scripts/demo.sh [--influx v1|v3]
#
#   --influx v1   InfluxDB 1.x (the default), written through its v1 API (influx.api: v1)
#   --influx v3   InfluxDB 3 Core instead: the server of the tests (INFLUXDB3_BIN, else
#                 ../shared/influxdb3/influxdb3.xz next to the repository, unpacked into the
#                 temp dir), written through its v3 API (influx.api: v3), read back with SQL
#                 (/api/v3/query_sql). Without a server it says what to set and exits 2
#
# Either way the database is `demo`, the namespace's name, as a configuration without
# influx.database has it.
#
# COLLECTOR_BIN=PATH runs that collector binary instead of building the release one
# (tests/demo.rs runs the demo so, with the binary Cargo built for the tests).
set -euo pipefail
# COLLECTOR_BIN as given: relative to where the script was started.
bin=${COLLECTOR_BIN:+$(realpath -m -- "$COLLECTOR_BIN")}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/servers.sh
. scripts/lib/args.sh

influx=v1
while [ $# -gt 0 ]; do
	case "$1" in
	--influx)
		case "${2-}" in
		v1 | v3) influx=$2 ;;
		*)
			echo "demo: --influx takes v1 (InfluxDB 1.x) or v3 (InfluxDB 3 Core)" >&2
			exit 2
			;;
		esac
		shift
		;;
	-h | --help) print_help "${BASH_SOURCE[0]}" ;;
	*)
		echo "demo: unknown argument $1 (try --help)" >&2
		exit 2
		;;
	esac
	shift
done
[ -z "$bin" ] || bin=$(collector_binary_arg demo "$bin" COLLECTOR_BIN)
# Before anything is installed or built: without a server there is no demo.
if [ "$influx" = v3 ]; then
	missing=$(influx3_available 2>&1) || {
		echo "demo: $missing" >&2
		exit 2
	}
fi

echo "==> installing what is missing" >&2
bash scripts/install-deps.sh
if [ -z "$bin" ]; then
	echo "==> building" >&2
	cargo build --release --quiet
	bin=$PWD/target/release/collector
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/collector-demo-XXXXXX")
pids=()
collector_pid=
if [ "$influx" = v3 ]; then servers="nats-server and influxdb3"; else servers="nats-server and influxd"; fi
cleanup() {
	trap - EXIT INT TERM HUP
	echo >&2
	if [ -n "$collector_pid" ]; then
		echo "==> stopping the collector (SIGTERM: it flushes and acknowledges)" >&2
		kill -TERM "$collector_pid" 2>/dev/null || true
		wait "$collector_pid" 2>/dev/null || true
		line=$(tail -n 1 "$work/collector.log")
		echo "    ${line#*\] }" >&2 # its last word, as "stopped: fetched N, written N, ..."
	fi
	echo "==> stopping $servers" >&2
	if ((${#pids[@]})); then stop_pids "${pids[@]}"; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP

echo "==> starting $servers in $work" >&2
start_nats "$work"
pids+=("$NATS_PID")
if [ "$influx" = v3 ]; then
	# The binary is unpacked into $work first (a few seconds) unless INFLUXDB3_BIN names one.
	start_influx3 "$work" || {
		echo "demo: InfluxDB 3 did not start; its log ends:" >&2
		tail -n 20 "$work/influxdb3.log" >&2
		exit 1
	}
	pids+=("$INFLUX3_PID")
	INFLUX_URL=$INFLUX3_URL
	influx3_database "$INFLUX_URL" create demo
else
	start_influx "$work"
	pids+=("$INFLUX_PID")
	influx_query "$INFLUX_URL" "" 'CREATE DATABASE "demo"' >/dev/null
fi

cat >"$work/config.yml" <<YAML
namespace: demo
nats:
  hosts: [$NATS_URL]
influx:
  url: $INFLUX_URL
  api: $influx
YAML
collector() { "$bin" --config "$work/config.yml" "$@"; }

echo "==> configuring namespace demo (as the Transfer client does)" >&2
collector streams set access --description "web access log"
collector streams set errors --description "application errors"

echo "==> starting the collector" >&2
# The binary itself in the background (not the shell function), so $! is its PID; in a
# session of its own, as the servers are (scripts/lib/servers.sh), so that a Ctrl-C at the
# terminal reaches this script alone. Else the collector would have that SIGINT and then
# cleanup's SIGTERM, and a second signal makes it exit at once, without flushing.
setsid "$bin" --config "$work/config.yml" run >"$work/collector.log" 2>&1 &
collector_pid=$!

echo "==> publishing sample records" >&2
python3 - >"$work/access.jsonl" <<'PY'
import json
for i in range(20):
    print(json.dumps({
        "tags": {"host": f"web-{i % 3}", "method": "GET" if i % 4 else "POST"},
        "fields": {"status": 200 if i % 5 else 500, "latency_ms": round(3.5 + i * 1.25, 2),
                   "path": f"/api/items/{i}", "cached": i % 2 == 0},
        "time": f"2026-11-24T10:00:{i:02d}.123456789+08:00",
    }))
PY
collector publish access <"$work/access.jsonl"
collector publish errors --tag app=billing --field 'message=invoice 42 failed: "timeout"' \
	--field code=504 --time 2026-11-24T10:01:00Z
collector publish errors --tag app=auth --field 'message=token expired' --field code=401 \
	--time 2026-11-24T10:01:05.5Z

# influx_read counts|points: what database demo holds, through the API of the server:
# InfluxQL at /query (InfluxDB 1.x), SQL at /api/v3/query_sql (InfluxDB 3). `counts` prints
# the points of access and of errors ("20 2"; 0 for a measurement not there yet), `points`
# the first five of each and then the counts.
influx_read() {
	python3 - "$influx" "$INFLUX_URL" "$1" <<'PY'
import json, sys, urllib.error, urllib.parse, urllib.request
api, url, what = sys.argv[1:4]
COUNTED = {"access": "status", "errors": "code"}

def get(path, **params):
    query = urllib.parse.urlencode({"db": "demo", **params})
    with urllib.request.urlopen(f"{url}{path}?{query}", timeout=10) as r:
        return r.read().decode()

def count(m):
    if api == "v3":
        try:
            return json.loads(get("/api/v3/query_sql", q=f'SELECT count(*) AS n FROM "{m}"', format="json"))[0]["n"]
        except urllib.error.HTTPError:  # no such table yet
            return 0
    result = json.loads(get("/query", q=f'SELECT count("{COUNTED[m]}") FROM "{m}"'))["results"][0]
    return result["series"][0]["values"][0][1] if result.get("series") else 0

if what == "counts":
    print(*(count(m) for m in COUNTED))
    sys.exit()
for m in COUNTED:
    if api == "v3":
        sql = f'SELECT * FROM "{m}" ORDER BY time LIMIT 5'
        print(f"\n{m} ({sql}):")
        print("\n".join("  " + line for line in get("/api/v3/query_sql", q=sql, format="pretty").splitlines()))
        continue
    answer = json.loads(get("/query", q=f'SELECT * FROM "{m}" LIMIT 5'))
    for series in answer["results"][0].get("series", []):
        cols = series["columns"]
        print(f"\n{m} (first {len(series['values'])} points):")
        print("  " + "  ".join(cols))
        for row in series["values"]:
            print("  " + "  ".join("-" if v is None else str(v) for v in row))
print(f"\naccess: {count('access')} points, errors: {count('errors')} points")
PY
}

# InfluxDB 3 answers a write once its write-ahead log is flushed, every second.
for _ in $(seq 300); do
	[ "$(influx_read counts)" = "20 2" ] && break
	sleep 0.1
done

echo
echo "==> InfluxDB database demo now holds:"
influx_read points
echo
collector streams list
echo
echo "The collector keeps running (log: $work/collector.log). Publish more in another shell:"
echo "  $bin --config $work/config.yml publish access --tag host=web-9 --field status=200"
if [ "$influx" = v3 ]; then
	echo "and query InfluxDB 3 with SQL:"
	echo "  curl -G $INFLUX_URL/api/v3/query_sql --data-urlencode db=demo --data-urlencode 'q=SELECT * FROM access' --data-urlencode format=pretty"
else
	echo "and query InfluxDB with InfluxQL:"
	echo "  curl -G $INFLUX_URL/query --data-urlencode db=demo --data-urlencode 'q=SELECT * FROM access'"
fi
echo "Press Ctrl-C to stop everything."
wait "$collector_pid" || true
collector_pid=
