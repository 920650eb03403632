#!/usr/bin/env bash
# Runs the collector's main job on this machine, from nothing: installs nats-server and
# InfluxDB 1.x when missing, starts them on loopback (free ports, a temp dir), configures a
# namespace `demo` with two measurements the way the Transfer client does, runs the
# collector, publishes sample records, prints what InfluxDB now holds, and keeps running
# until Ctrl-C; then stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. scripts/lib/servers.sh

echo "==> installing what is missing" >&2
bash scripts/install-deps.sh
echo "==> building" >&2
cargo build --release --quiet
bin=$PWD/target/release/collector

work=$(mktemp -d "${TMPDIR:-/tmp}/collector-demo-XXXXXX")
pids=()
collector_pid=
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
	echo "==> stopping nats-server and influxd" >&2
	stop_pids "${pids[@]}"
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP

echo "==> starting nats-server and influxd in $work" >&2
start_nats "$work"
pids+=("$NATS_PID")
start_influx "$work"
pids+=("$INFLUX_PID")
influx_query "$INFLUX_URL" "" 'CREATE DATABASE "demo"' >/dev/null

cat >"$work/config.yml" <<YAML
namespace: demo
nats:
  hosts: [$NATS_URL]
influx:
  url: $INFLUX_URL
  api: v1
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

for _ in $(seq 100); do
	counts=$(influx_query "$INFLUX_URL" demo 'SELECT count("status") FROM access; SELECT count("code") FROM errors')
	if [[ $counts == *'20]'* && $counts == *'2]'* ]]; then break; fi
	sleep 0.1
done

echo
echo "==> InfluxDB database demo now holds:"
python3 - "$INFLUX_URL" <<'PY'
import json, sys, urllib.parse, urllib.request
url = sys.argv[1]
for m in ("access", "errors"):
    q = urllib.parse.urlencode({"db": "demo", "q": f'SELECT * FROM "{m}" LIMIT 5'})
    with urllib.request.urlopen(f"{url}/query?{q}", timeout=10) as r:
        answer = json.load(r)
    for series in answer["results"][0].get("series", []):
        cols = series["columns"]
        print(f"\n{m} (first {len(series['values'])} points):")
        print("  " + "  ".join(cols))
        for row in series["values"]:
            print("  " + "  ".join("-" if v is None else str(v) for v in row))
q = urllib.parse.urlencode({"db": "demo", "q": 'SELECT count("status") FROM access; SELECT count("code") FROM errors'})
with urllib.request.urlopen(f"{url}/query?{q}", timeout=10) as r:
    answer = json.load(r)
counts = [res["series"][0]["values"][0][1] if res.get("series") else 0 for res in answer["results"]]
print(f"\naccess: {counts[0]} points, errors: {counts[1]} points")
PY
echo
collector streams list
echo
echo "The collector keeps running (log: $work/collector.log). Publish more in another shell:"
echo "  $bin --config $work/config.yml publish access --tag host=web-9 --field status=200"
echo "Press Ctrl-C to stop everything."
wait "$collector_pid" || true
collector_pid=
