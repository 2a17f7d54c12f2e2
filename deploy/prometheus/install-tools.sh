#!/bin/sh
# promtool and prometheus for the test suite (rule checks, rule unit tests, the end-to-end
# scrape test), from Debian's `prometheus` package. Nothing to do when both are on PATH;
# otherwise apt-get as root (or through sudo -n), else one line saying what to install.
# Used by `make prometheus-tools` (a prerequisite of `make test`) and so by .ci/run.
set -u

have_tools() {
    command -v promtool >/dev/null 2>&1 && command -v prometheus >/dev/null 2>&1
}

fail() {
    echo "prometheus-tools: $*" >&2
    exit 1
}

have_tools && exit 0
WHAT="promtool and prometheus are missing: install Debian's prometheus package (apt-get install prometheus) or put both binaries on PATH"
command -v apt-get >/dev/null 2>&1 || fail "$WHAT"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    fail "$WHAT (needs root or passwordless sudo)"
fi
echo "prometheus-tools: installing Debian's prometheus package (apt-get)"
$SUDO apt-get update -q >/dev/null || fail "apt-get update failed; $WHAT"
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends prometheus >/dev/null \
    || fail "apt-get install prometheus failed; $WHAT"
have_tools || fail "the prometheus package did not provide promtool and prometheus on PATH"
