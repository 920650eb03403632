# A shell function that reports the tests that skipped themselves. Source it; it defines a
# function only. tests/packaging.rs runs it under `set -euo pipefail`, as scripts/test.sh does.

# report_skips DIR: a test that needs a server this machine lacks (InfluxDB 3,
# tests/util/influx3.rs) passes without running and leaves a file in DIR saying why; this
# says how many did, and why, on stderr. No test skipped: DIR does not exist, and nothing is
# said.
report_skips() {
	local dir=$1 n=0
	# Not `find` on a missing directory: it fails, and with pipefail would end the run.
	if [ -d "$dir" ]; then
		n=$(find "$dir" -type f | wc -l)
	fi
	if ((n > 0)); then
		echo "test.sh: $n test(s) SKIPPED (they passed without running):" >&2
		cat "$dir"/* >&2
	fi
}
