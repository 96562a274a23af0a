#!/usr/bin/env bash
# Install redis-server for the Redis online-store tests, if it is missing and we can.
# The tests start their own throwaway server on a free 127.0.0.1 port; without the binary they
# skip with the reason. Never fails the build: a machine without apt or root just skips.
set -u
command -v redis-server >/dev/null 2>&1 && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get install -y -q redis-server >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q redis-server >/dev/null 2>&1; }
fi
command -v redis-server >/dev/null 2>&1 || echo "redis-server could not be installed: the Redis tests will skip"
exit 0
