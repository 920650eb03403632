# Shell functions that start local servers on loopback for the demo and the benchmark:
# nats-server with JetStream and InfluxDB 1.x, each on a free port with its data in a
# directory given by the caller, and stop them by PID. Source it; it defines functions only.

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
	nats-server -js -a 127.0.0.1 -p "$NATS_PORT" -sd "$dir/nats" >"$dir/nats.log" 2>&1 &
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
	influxd -config "$dir/influxdb.conf" >"$dir/influxd.log" 2>&1 &
	INFLUX_PID=$!
	wait_http "$INFLUX_URL/ping" 60
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
