#!/bin/sh
# Headless Chromium for tests/test_pages_chromium.py (the fit report and the demo timeline
# opened in a real browser), from Debian's `chromium` package. Nothing to do when it is on
# PATH; otherwise apt-get as root (or through sudo -n), else one line saying what to install.
# Used by `make chromium-tools` (a prerequisite of `make unit`, so of `make test`).
set -u

fail() {
    echo "chromium-tools: $*" >&2
    exit 1
}

command -v chromium >/dev/null 2>&1 && exit 0
WHAT="chromium is missing: install Debian's chromium package (apt-get install chromium) or set METASIGNAL_CHROMIUM to a Chromium binary"
[ -n "${METASIGNAL_CHROMIUM:-}" ] && [ -x "$METASIGNAL_CHROMIUM" ] && exit 0
command -v apt-get >/dev/null 2>&1 || fail "$WHAT"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    fail "$WHAT (needs root or passwordless sudo)"
fi
echo "chromium-tools: installing Debian's chromium package (apt-get)"
$SUDO apt-get update -q >/dev/null || fail "apt-get update failed; $WHAT"
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends chromium >/dev/null \
    || fail "apt-get install chromium failed; $WHAT"
command -v chromium >/dev/null 2>&1 || fail "the chromium package did not put chromium on PATH"
