#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian machine. Go itself is
# expected at /usr/local/go or on PATH. Packages are installed only when
# missing, and only as root (CI runs as root).
set -euo pipefail
need=()
for pkg in make ca-certificates iproute2 haproxy bird2 gobgpd mount e2fsprogs; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "missing Debian packages: ${need[*]}; install them as root (apt-get install -y ${need[*]})" >&2
		exit 1
	fi
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
