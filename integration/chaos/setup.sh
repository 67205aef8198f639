#!/usr/bin/env bash
# Installs what the chaos suite needs from Debian packages, if missing:
# iproute2 (ip netns, ip route, tc). Run as root. The suite itself never
# installs anything; without root or ip it skips.
set -euo pipefail
if [ "$(uname -s)" != Linux ]; then
	echo "chaos setup: not Linux; the suite will skip"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "chaos setup: not root; the suite will skip"
	exit 0
fi
missing=()
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tc >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends iproute2
fi
echo "chaos setup: $(ip -V)"
