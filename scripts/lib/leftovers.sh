# A shell function that kills the servers and collectors a run left behind. Source it; it
# defines a function only.

# kill_leftovers MARKER NAME: kills by PID every nats-server, influxd, influxdb3,
# victoria-metrics and collector whose command line contains MARKER (the harness names its
# temp dirs collector-test-<run>-..., and these processes carry that path on their command
# lines), so this run's leftovers go without touching anyone else's. A frozen (SIGSTOPped) one is
# continued first. Each kill is reported as NAME.
kill_leftovers() {
	local marker=$1 name=$2 proc pid exe
	for proc in /proc/[0-9]*; do
		pid=${proc#/proc/}
		grep -qF -- "$marker" "$proc/cmdline" 2>/dev/null || continue
		exe=$(tr '\0' '\n' <"$proc/cmdline" 2>/dev/null | head -n 1) || continue
		case "${exe##*/}" in
		nats-server | influxd | influxdb3 | victoria-metrics | collector)
			kill -CONT "$pid" 2>/dev/null || true
			if kill -KILL "$pid" 2>/dev/null; then
				echo "$name: killed leftover ${exe##*/} (pid $pid)" >&2
			fi
			;;
		esac
	done
}
