#!/usr/bin/env bash
# Restarts collector instances one at a time, waiting for each to answer 200 on /readyz
# (http.listen) before touching the next, so the namespace never loses more than one
# collector at once. Stops at the first instance that fails, names it, and exits 1.
#
# usage:
#   rolling-restart.sh [OPTIONS] systemd [HOST/]UNIT READYZ_URL [[HOST/]UNIT READYZ_URL ...]
#       `systemctl restart UNIT`, over `ssh HOST` when a host is given ($SSH overrides ssh).
#   rolling-restart.sh [OPTIONS] local PIDFILE READYZ_URL COMMAND [PIDFILE READYZ_URL COMMAND ...]
#       Sends SIGTERM to the process in PIDFILE, waits for it to exit, starts COMMAND in the
#       background as `sh -c 'exec COMMAND'` (stdin and stdout/stderr on /dev/null unless
#       COMMAND redirects them, e.g. `collector --config c.yml >>c.log 2>&1`), and writes
#       its PID to PIDFILE. An instance that is not running is started.
#
# options:
#   --stop-timeout SECONDS    how long a stopping collector may take (default 30; it
#                             needs shutdown_timeout plus 2 s)
#   --ready-timeout SECONDS   how long a started collector may take to be ready (default 60)
#
# Exit: 0 when every instance was restarted and is ready, 1 at the first failure, 2 for a
# bad command line.
set -euo pipefail

stop_timeout=30
ready_timeout=60

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
	exit 2
}
say() { echo "rolling-restart: $*" >&2; }
fail() {
	say "$*"
	say "stopped; the instances after this one were not touched"
	exit 1
}

while [ $# -gt 0 ]; do
	case "$1" in
	--stop-timeout | --ready-timeout)
		[[ ${2-} =~ ^[0-9]+$ ]] || usage
		if [ "$1" = --stop-timeout ]; then stop_timeout=$2; else ready_timeout=$2; fi
		shift 2
		;;
	-h | --help) usage ;;
	--) shift; break ;;
	-*) usage ;;
	*) break ;;
	esac
done
[ $# -ge 1 ] || usage
mode=$1
shift
case "$mode" in
systemd) group=2 ;;
local) group=3 ;;
*) usage ;;
esac
[ $# -ge "$group" ] && [ $(($# % group)) -eq 0 ] || usage
command -v curl >/dev/null 2>&1 || fail "curl is missing: it polls /readyz"

# Seconds since the script started, for the messages.
now() { echo "$SECONDS"; }

# Whether /readyz answers 200. The body says why not, for the failure message.
last_answer=""
ready() {
	local out
	if out=$(curl -sS --max-time 2 -w '\n%{http_code}' "$1" 2>&1); then
		last_answer=$(echo "$out" | head -n 1)
		[ "$(echo "$out" | tail -n 1)" = 200 ]
	else
		last_answer=$(echo "$out" | head -n 1)
		return 1
	fi
}

# A PID that exists and is not a zombie (a zombie has exited; its parent has not reaped it).
alive() {
	local state
	kill -0 "$1" 2>/dev/null || return 1
	state=$(sed -E 's/.*\) (.).*/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
	[ "$state" != Z ]
}

# Waits for READYZ_URL to answer 200; `check` (optional) is run each round and fails fast.
wait_ready() {
	local name=$1 url=$2 check=${3-} deadline=$((SECONDS + ready_timeout))
	while ! ready "$url"; do
		if [ -n "$check" ] && ! $check; then
			fail "$name exited while starting (last /readyz answer: ${last_answer:-none})"
		fi
		((SECONDS < deadline)) ||
			fail "$name not ready after ${ready_timeout}s; last /readyz answer: ${last_answer:-none}"
		sleep 0.2
	done
}

n=$(($# / group))
i=0
while [ $# -gt 0 ]; do
	i=$((i + 1))
	case "$mode" in
	systemd)
		target=$1 url=$2
		shift 2
		name="[$i/$n] $target"
		say "$name: restarting (t=$(now)s)"
		if [[ $target == */* ]]; then
			host=${target%%/*} unit=${target#*/}
			${SSH:-ssh} "$host" systemctl restart "$unit" ||
				fail "$name: systemctl restart $unit on $host failed"
		else
			systemctl restart "$target" || fail "$name: systemctl restart $target failed"
		fi
		wait_ready "$name" "$url"
		;;
	local)
		pidfile=$1 url=$2 cmd=$3
		shift 3
		name="[$i/$n] $pidfile"
		pid=$(cat "$pidfile" 2>/dev/null || true)
		if [[ $pid =~ ^[0-9]+$ ]] && alive "$pid"; then
			say "$name: stopping pid $pid (t=$(now)s)"
			kill -TERM "$pid" 2>/dev/null || true
			deadline=$((SECONDS + stop_timeout))
			while alive "$pid"; do
				((SECONDS < deadline)) || fail "$name: pid $pid still running ${stop_timeout}s after SIGTERM"
				sleep 0.1
			done
		else
			say "$name: not running; starting it"
		fi
		# setsid: the collector gets a session of its own, so a Ctrl-C on this script does
		# not reach it. (Run in the background without job control, the forked child is
		# not a group leader, so setsid does not fork again and $! is the collector's PID.)
		setsid sh -c "exec $cmd" </dev/null >/dev/null 2>&1 &
		pid=$!
		echo "$pid" >"$pidfile.tmp" && mv "$pidfile.tmp" "$pidfile"
		say "$name: started pid $pid"
		started() { alive "$pid"; }
		wait_ready "$name" "$url" started
		;;
	esac
	say "$name: ready (t=$(now)s)"
done
say "all $n restarted and ready in $(now)s"
