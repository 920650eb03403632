# Shell functions that start local servers on loopback for the demo and the benchmark:
# nats-server with JetStream, InfluxDB 1.x and InfluxDB 3 Core, each on a free port with its
# data in a directory given by the caller, and stop them by PID. Source it; it defines
# functions (and the path of one archive) only.
#
# Each server runs in a session of its own (setsid), so that a Ctrl-C at the terminal reaches
# the calling script alone, whose cleanup stops them by PID once nothing uses them. (Run in
# the background without job control, the forked child is not a group leader, so setsid does
# not fork again and $! is the server's PID.)

# Prints a free TCP port on 127.0.0.1.
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# retry_for SECONDS WHAT COMMAND...: runs COMMAND (its output dropped) every 0.1 s until it
# succeeds, for up to SECONDS; then says "WHAT after SECONDSs" and returns 1.
retry_for() {
	local seconds=$1 what=$2 i
	shift 2
	for ((i = 0; i < seconds * 10; i++)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "$what after ${seconds}s" >&2
	return 1
}

# Waits up to $2 seconds for a URL to answer 2xx.
wait_http() {
	local url=$1 seconds=${2:-30}
	retry_for "$seconds" "no answer from $url" \
		python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=1)' "$url"
}

# Waits up to $2 seconds for 127.0.0.1:$1 to accept connections.
wait_port() {
	local port=$1 seconds=${2:-30}
	retry_for "$seconds" "nothing listens on 127.0.0.1:$port" \
		python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1)' "$port"
}

# start_nats DIR: starts nats-server with JetStream; sets NATS_PORT, NATS_URL, NATS_PID.
start_nats() {
	local dir=$1
	mkdir -p "$dir/nats"
	NATS_PORT=$(free_port)
	NATS_URL="nats://127.0.0.1:$NATS_PORT"
	setsid nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
	NATS_PID=$!
	wait_port "$NATS_PORT" 30
}

# The configuration start_influx fills in, shared with the test harness.
INFLUX_CONF_TEMPLATE="$(dirname "${BASH_SOURCE[0]}")/influxdb.conf"

# start_influx DIR: starts influxd 1.x with every listener on loopback or off; sets
# INFLUX_PORT, INFLUX_URL, INFLUX_PID.
start_influx() {
	local dir=$1 rpc conf
	mkdir -p "$dir/influx"
	INFLUX_PORT=$(free_port)
	rpc=$(free_port)
	INFLUX_URL="http://127.0.0.1:$INFLUX_PORT"
	conf=$(<"$INFLUX_CONF_TEMPLATE")
	conf=${conf//'{rpc}'/"$rpc"}
	conf=${conf//'{http}'/"$INFLUX_PORT"}
	conf=${conf//'{dir}'/"$dir/influx"}
	conf=${conf//'{auth}'/false}
	conf=${conf//'{log}'/false}
	conf=${conf//'{https}'/}
	printf '%s\n' "$conf" >"$dir/influxdb.conf"
	setsid influxd -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 &
	INFLUX_PID=$!
	wait_http "$INFLUX_URL/ping" 60
}

# InfluxDB 3 Core: no package registry ships it, so, as the tests find it
# (tests/util/influx3.rs), the binary is INFLUXDB3_BIN, else this archive next to the
# repository (see its BUILD.md), unpacked by start_influx3.
INFLUX3_ARCHIVE="$(dirname "$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)")/shared/influxdb3/influxdb3.xz"

# influx3_available: true when start_influx3 has a server to start; else says, in one line on
# stderr, how to provide one, and returns 1.
influx3_available() {
	if [ -n "${INFLUXDB3_BIN-}" ]; then
		[ -f "$INFLUXDB3_BIN" ] && [ -x "$INFLUXDB3_BIN" ] && return 0
		echo "INFLUXDB3_BIN=$INFLUXDB3_BIN is not an executable file; point it at an influxdb3 (InfluxDB 3 Core) binary" >&2
		return 1
	fi
	[ -f "$INFLUX3_ARCHIVE" ] && return 0
	echo "no InfluxDB 3 server: set INFLUXDB3_BIN to an influxdb3 (InfluxDB 3 Core) binary, or put influxdb3.xz in ../shared/influxdb3/ next to the repository" >&2
	return 1
}

# start_influx3 DIR: starts InfluxDB 3 Core (`influxdb3 serve`) as the tests do, without auth,
# its object store in DIR, the write-ahead log flushed at the server's default interval (1 s,
# as production runs it: a write is answered after the flush); sets INFLUX3_PORT, INFLUX3_URL,
# INFLUX3_PID and INFLUX3_BIN. The binary is INFLUXDB3_BIN, else the archive unpacked once
# into DIR/influxdb3-bin/ (with xz, else Python's lzma). Fails when influx3_available does.
start_influx3() {
	local dir=$1
	influx3_available || return 1
	if [ -n "${INFLUXDB3_BIN-}" ]; then
		INFLUX3_BIN=$INFLUXDB3_BIN
	else
		INFLUX3_BIN=$dir/influxdb3-bin/influxdb3
		if [ ! -x "$INFLUX3_BIN" ]; then
			mkdir -p "$dir/influxdb3-bin"
			xz -dc "$INFLUX3_ARCHIVE" >"$INFLUX3_BIN.partial" 2>/dev/null ||
				python3 -c 'import lzma, shutil, sys
with lzma.open(sys.argv[1]) as i, open(sys.argv[2], "wb") as o:
    shutil.copyfileobj(i, o, 1 << 20)' "$INFLUX3_ARCHIVE" "$INFLUX3_BIN.partial" || {
				echo "cannot unpack $INFLUX3_ARCHIVE: neither xz -dc nor python3's lzma worked" >&2
				return 1
			}
			chmod +x "$INFLUX3_BIN.partial"
			mv "$INFLUX3_BIN.partial" "$INFLUX3_BIN"
		fi
	fi
	mkdir -p "$dir/influx3"
	INFLUX3_PORT=$(free_port)
	INFLUX3_URL="http://127.0.0.1:$INFLUX3_PORT"
	setsid "$INFLUX3_BIN" serve --node-id n0 --object-store file --data-dir "$dir/influx3" \
		--without-auth --http-bind "127.0.0.1:$INFLUX3_PORT" --disable-telemetry-upload \
		>"$dir/influxdb3.log" 2>&1 &
	INFLUX3_PID=$!
	wait_http "$INFLUX3_URL/health" 60
}

# influx3_database URL create|delete DB: creates (`POST /api/v3/configure/database`; one that
# exists already is fine) or deletes (`DELETE /api/v3/configure/database?db=`) a database of
# InfluxDB 3 Core, which holds at most 5 besides `_internal`.
influx3_database() {
	python3 - "$@" <<'PY'
import json, sys, urllib.error, urllib.parse, urllib.request
url, what, db = sys.argv[1:4]
if what == "create":
    request = urllib.request.Request(f"{url}/api/v3/configure/database", method="POST",
        data=json.dumps({"db": db}).encode(), headers={"Content-Type": "application/json"})
else:
    query = urllib.parse.urlencode({"db": db})
    request = urllib.request.Request(f"{url}/api/v3/configure/database?{query}", method="DELETE")
try:
    urllib.request.urlopen(request, timeout=30).read()
except urllib.error.HTTPError as e:
    if not (what == "create" and e.code == 409):
        sys.exit(f"{what} database {db}: {e.code} {e.read().decode(errors='replace')}")
PY
}

# influx_query URL DB QUERY: runs an InfluxQL query and prints the JSON answer.
influx_query() {
	python3 - "$@" <<'PY'
import sys, urllib.parse, urllib.request
url, db, q = sys.argv[1:4]
params = urllib.parse.urlencode({"db": db, "q": q})
with urllib.request.urlopen(urllib.request.Request(f"{url}/query", data=params.encode()), timeout=30) as r:
    print(r.read().decode())
PY
}

# stop_pids PID...: SIGTERM each, then SIGKILL whatever is left after 10 s.
stop_pids() {
	local pid i
	for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
	for ((i = 0; i < 100; i++)); do
		local alive=0
		for pid in "$@"; do kill -0 "$pid" 2>/dev/null && alive=1; done
		((alive)) || return 0
		sleep 0.1
	done
	for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
}
