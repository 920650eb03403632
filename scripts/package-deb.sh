#!/usr/bin/env bash
# Builds the Debian package collector_<version>_amd64.deb from the static musl binary.
#
#   scripts/package-deb.sh [--binary PATH] [--out DIR]
#
# Without --binary it runs scripts/build-static.sh first. Writes the package to DIR
# (default target/debian) and prints its absolute path as its only line on stdout.
#
# Built with dpkg-deb directly rather than cargo-deb: the package is a handful of files and
# three short maintainer scripts, all written here where they can be read, and dpkg-deb is
# already on every Debian machine, while cargo-deb is one more tool to compile and pin.
#
# What the package holds:
#   /usr/bin/collector                       the static binary
#   /lib/systemd/system/collector.service    scripts/systemd/collector.service, adapted: the
#                                            binary in /usr/bin, and the configuration handed
#                                            to the service as a systemd credential, so the
#                                            file can stay root-only (0640) while the service
#                                            runs as a dynamic user
#   /etc/collector/config.yml                conffile, 0640: config/config.example.yml
#   /etc/collector/env                       conffile, 0600, empty: secrets as COLLECTOR_*=...
#   /usr/share/doc/collector/                README, copyright (the license), changelog
# Installing enables and starts nothing: edit the configuration, then
# `systemctl enable --now collector`. An upgrade keeps an edited configuration (dpkg's
# conffile handling) and restarts the service if it runs; removing stops it; purging removes
# /etc/collector.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() {
	echo "package-deb: $*" >&2
	exit 1
}

binary=
out=target/debian
while [ $# -gt 0 ]; do
	case "$1" in
	--binary)
		binary=${2:?--binary needs a path}
		shift 2
		;;
	--out)
		out=${2:?--out needs a directory}
		shift 2
		;;
	*) die "unknown argument $1 (usage: scripts/package-deb.sh [--binary PATH] [--out DIR])" ;;
	esac
done

command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is missing (apt-get install dpkg)"
if [ -z "$binary" ]; then
	binary=$(scripts/build-static.sh) || die "scripts/build-static.sh failed"
fi
[ -x "$binary" ] || die "$binary is not an executable"

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
[ -n "$version" ] || die "no version in Cargo.toml"
# A native version (no Debian revision): the package is built by the project itself, so
# the file is collector_<version>_amd64.deb, the version the binary reports.
deb_version="$version"
arch=amd64
# Whoever publishes the package names themselves, as Debian's tools do (DEBFULLNAME,
# DEBEMAIL); the default is a reserved example domain, not anybody's address.
maintainer="${DEBFULLNAME:-collector maintainers} <${DEBEMAIL:-collector@example.org}>"

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/collector"

install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
	"$root/etc/collector" "$root/usr/share/doc/collector"
install -m 0755 "$binary" "$root/usr/bin/collector"
install -m 0640 config/config.example.yml "$root/etc/collector/config.yml"
install -m 0600 /dev/null "$root/etc/collector/env"
install -m 0644 README.md "$root/usr/share/doc/collector/README.md"

# The unit, adapted: /usr/bin, and the configuration through LoadCredential= (read by
# systemd as root, copied into a directory only the service's user can read; %d names it).
unit="$root/lib/systemd/system/collector.service"
sed -e 's|^ExecStart=/usr/local/bin/collector --config /etc/collector/config.yml$|LoadCredential=config.yml:/etc/collector/config.yml\nExecStart=/usr/bin/collector --config %d/config.yml|' \
	-e '/^# Install:$/,/^#   systemctl enable --now collector$/c\
# Installed by the Debian package collector: edit /etc/collector/config.yml (root-only,\
# handed to the service by LoadCredential=, as its dynamic user cannot read it), put\
# secrets in /etc/collector/env, then: systemctl enable --now collector' \
	scripts/systemd/collector.service >"$unit"
chmod 0644 "$unit"
grep -q '^ExecStart=/usr/bin/collector --config %d/config.yml$' "$unit" ||
	die "scripts/systemd/collector.service: its ExecStart line is not the one this script adapts"

# Debian's machine-readable copyright file, carrying the license text.
{
	echo "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/"
	echo "Upstream-Name: collector"
	echo
	echo "Files: *"
	echo "Copyright: $(sed -n 's/^Copyright (c) //p' LICENSE | head -n 1)"
	echo "License: BSD-3-Clause"
	# The license text, each line indented, an empty line written as " .".
	sed -e 's/^$/./' -e 's/^/ /' LICENSE
} >"$root/usr/share/doc/collector/copyright"
chmod 0644 "$root/usr/share/doc/collector/copyright"

{
	echo "collector ($deb_version) unstable; urgency=medium"
	echo
	echo "  * Package of collector $version; see README.md for the changes."
	echo
	# The commit's date, so the same commit gives the same package.
	echo " -- $maintainer  $(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")"
} | gzip -9n >"$root/usr/share/doc/collector/changelog.gz"
chmod 0644 "$root/usr/share/doc/collector/changelog.gz"

cat >"$root/DEBIAN/conffiles" <<'EOF'
/etc/collector/config.yml
/etc/collector/env
EOF

size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
cat >"$root/DEBIAN/control" <<EOF
Package: collector
Version: $deb_version
Architecture: $arch
Maintainer: $maintainer
Installed-Size: $size
Section: net
Priority: optional
Homepage: https://github.com/weplanx/collector
Description: log records from NATS JetStream into InfluxDB
 collector pulls the JSON log records applications publish into NATS
 JetStream (through the Transfer client or anything speaking its contract)
 and writes them to InfluxDB as line protocol, acknowledging each record
 only after InfluxDB stored it: nothing lost, nothing written twice.
 .
 One static binary with a hardened systemd unit. Edit
 /etc/collector/config.yml, then run: systemctl enable --now collector
EOF

# Maintainer scripts. They act on the running system only when systemd runs it and dpkg
# is not installing into another root (DPKG_ROOT, as with --force-script-chrootless); the
# service is never enabled or started here.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ]; then
	case "$1" in
	configure | abort-upgrade | abort-deconfigure | abort-remove)
		systemctl --system daemon-reload >/dev/null || true
		# An upgrade restarts a running collector on the new binary; an enabled but stopped
		# one stays stopped.
		if [ -n "$2" ]; then
			deb-systemd-invoke try-restart collector.service >/dev/null || true
		fi
		;;
	esac
fi
if [ "$1" = configure ] && [ -z "$2" ]; then
	echo "collector: edit /etc/collector/config.yml (secrets in /etc/collector/env), then: systemctl enable --now collector"
fi
exit 0
EOF

cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	# SIGTERM: the collector flushes, acknowledges and gives back what it holds.
	deb-systemd-invoke stop collector.service >/dev/null || true
fi
exit 0
EOF

cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && [ "$1" = remove ]; then
	systemctl --system daemon-reload >/dev/null || true
fi
if [ "$1" = purge ]; then
	if [ -z "${DPKG_ROOT:-}" ] && command -v deb-systemd-helper >/dev/null; then
		# Forgets an `systemctl enable` made by hand.
		deb-systemd-helper purge collector.service >/dev/null || true
	fi
	# dpkg removes the conffiles; this takes what an administrator added (credential files,
	# dpkg-old copies).
	rm -rf "${DPKG_ROOT:-}/etc/collector"
fi
exit 0
EOF
chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

# Lintian overrides, each with its reason, shipped where lintian reads them.
install -d -m 0755 "$root/usr/share/lintian/overrides"
cat >"$root/usr/share/lintian/overrides/collector" <<'EOF'
# The configuration may hold secrets (nkey seed, tokens): root-only (0640), read by the
# service through LoadCredential=, not by its dynamic user directly.
collector: non-standard-file-perm 0640 != 0644 [etc/collector/config.yml]
# Secrets file read by systemd (EnvironmentFile=) as root before the service starts.
collector: non-standard-file-perm 0600 != 0644 [etc/collector/env]
# A static musl binary by design (it runs in a FROM-scratch image as well): a static-pie
# executable has no DT_NEEDED entries, which lintian takes for a shared library without
# its dependencies.
collector: shared-library-lacks-prerequisites [usr/bin/collector]
# Not the C libyaml: unsafe-libyaml, its Rust translation, compiled in through serde_yaml
# (the configuration parser) like every other crate of a static Rust binary.
collector: embedded-library libyaml [usr/bin/collector]
# `collector --help` and `collector COMMAND --help` document every command; the README is
# in /usr/share/doc/collector.
collector: no-manual-page [usr/bin/collector]
EOF
chmod 0644 "$root/usr/share/lintian/overrides/collector"

# Checksums of every file but the conffiles (dpkg --verify, debsums).
(cd "$root" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 0644 "$root/DEBIAN/md5sums"

deb="$out/collector_${deb_version}_${arch}.deb"
SOURCE_DATE_EPOCH=$(git log -1 --format=%ct 2>/dev/null || date +%s)
export SOURCE_DATE_EPOCH
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2 || die "dpkg-deb --build failed"
echo "$deb"
