#!/bin/sh
# Usage: install-debian-package.sh TARGET PACKAGE COMMAND...
#
# System tools the test suite needs (promtool and prometheus for the rule and scrape tests,
# chromium for the page tests), from one Debian package each. Nothing to do when every
# COMMAND is on PATH; otherwise apt-get as root (or through sudo -n), else one line saying
# what to install. Used by `make prometheus-tools` and `make chromium-tools` (prerequisites
# of `make test`; .ci/run calls the same targets).
set -u
TARGET=$1
PACKAGE=$2
shift 2

have_tools() {
    for command in "$@"; do
        command -v "$command" >/dev/null 2>&1 || return 1
    done
}

fail() {
    echo "$TARGET: $*" >&2
    exit 1
}

have_tools "$@" && exit 0
# Plain shell only: the tests run this with nothing but fakes on PATH.
NAMES=""
for command in "$@"; do
    NAMES="${NAMES:+$NAMES and }$command"
done
if [ $# -eq 1 ]; then
    WHAT="$NAMES is missing: install Debian's $PACKAGE package (apt-get install $PACKAGE) or put it on PATH"
else
    WHAT="$NAMES are missing: install Debian's $PACKAGE package (apt-get install $PACKAGE) or put them on PATH"
fi
command -v apt-get >/dev/null 2>&1 || fail "$WHAT"
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
    SUDO="sudo -n"
else
    fail "$WHAT (needs root or passwordless sudo)"
fi
echo "$TARGET: installing Debian's $PACKAGE package (apt-get)"
$SUDO apt-get update -q >/dev/null || fail "apt-get update failed; $WHAT"
$SUDO env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -q --no-install-recommends "$PACKAGE" >/dev/null \
    || fail "apt-get install $PACKAGE failed; $WHAT"
have_tools "$@" || fail "the $PACKAGE package did not put $* on PATH"
