#!/usr/bin/env bash
# The supply-chain check: `cargo audit` of Cargo.lock against the RustSec advisory database.
# It fails on any advisory (vulnerability, unmaintained, unsound, yanked) that
# .cargo/audit.toml does not accept with a reason; SECURITY.md explains each accepted one.
#
#   scripts/audit.sh [--in DIR] [cargo audit options...]
#
# --in DIR audits DIR/Cargo.lock with DIR/.cargo/audit.toml instead of this checkout's
# (cargo audit reads the accepted list from the current directory); the tests use it to run
# the check with an emptied list. Other options go to cargo audit unchanged.
#
# The database: ../shared/advisory-db from the repository root (shared/advisory-db in the
# directory that holds this checkout), when there is one, read offline as it is: it is a
# snapshot for machines that cannot fetch the database, so it may be older than 90 days, and
# yanked crates (which need the registry index) are not looked up. Otherwise cargo audit
# fetches the current database into ~/.cargo/advisory-db and checks yanked crates too.
# COLLECTOR_ADVISORY_DB names another local copy.
#
# Exit codes: 0 nothing unaccepted; 1 an advisory that is not accepted (or cargo audit's own
# error); 2 this script's own error (cargo-audit missing, bad option); 3 the check could not
# run because no database is reachable (no local copy, and the fetch failed: a machine
# without access to the database's git host). test.sh reports 3 loudly and goes on, so a CI
# machine without that access still tests everything else; anywhere the database is
# reachable, the check runs and gates.
set -euo pipefail

die() {
	echo "audit: $*" >&2
	exit 2
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir=$root
if [ "${1-}" = "--in" ]; then
	[ $# -ge 2 ] || die "--in needs a directory"
	dir=$2
	shift 2
fi
[ -f "$dir/Cargo.lock" ] || die "no Cargo.lock in $dir"

cargo audit --version >/dev/null 2>&1 ||
	die "cargo-audit is not installed: run scripts/install-deps.sh (or cargo install --locked cargo-audit)"

db=${COLLECTOR_ADVISORY_DB:-$root/../shared/advisory-db}
options=()
if [ -d "$db/crates" ]; then
	db=$(cd "$db" && pwd)
	echo "audit: advisory database $db (offline copy)" >&2
	options=(--db "$db" --no-fetch --stale --no-yanked)
elif [ -n "${COLLECTOR_ADVISORY_DB-}" ]; then
	die "COLLECTOR_ADVISORY_DB=$db is no advisory database (it has no crates/ directory)"
else
	echo "audit: advisory database fetched from the network into ~/.cargo/advisory-db" >&2
fi

cd "$dir"
if ((${#options[@]})); then
	exec cargo audit "${options[@]}" --file Cargo.lock "$@"
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo audit --file Cargo.lock "$@" 2> >(tee "$log" >&2) || status=$?
wait
if ((status != 0)) && grep -q "couldn't fetch advisory database" "$log"; then
	echo "audit: no advisory database is reachable (no local copy, and the fetch failed): the check did not run" >&2
	exit 3
fi
exit "$status"
