#!/usr/bin/env bash
# Installs Debian's chromium for the headless status-page test
# (integration/statuspage_test.go), only when /usr/bin/chromium is missing.
# It never fails the caller: without root or apt-get it says so and exits 0,
# and the test then skips itself.
set -u

if [ -x /usr/bin/chromium ]; then
	exit 0
fi
skip() {
	echo "install-chromium: $*; the headless status-page test will be skipped" >&2
	exit 0
}
command -v apt-get >/dev/null 2>&1 || skip "no apt-get on this machine"
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
		SUDO="sudo -n"
	else
		skip "not root (and no password-less sudo)"
	fi
else
	SUDO=""
fi

echo "install-chromium: installing Debian's chromium with apt-get..." >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || skip "apt-get update failed"
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null 2>&1 ||
	skip "apt-get install chromium failed"
if [ -x /usr/bin/chromium ]; then
	echo "install-chromium: $(/usr/bin/chromium --version 2>/dev/null || echo installed)" >&2
else
	skip "apt-get finished but /usr/bin/chromium is missing"
fi
exit 0
