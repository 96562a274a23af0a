#!/usr/bin/env bash
# Install Debian's postgresql (server binaries under /usr/lib/postgresql/<ver>/bin), if missing.
# The Postgres-instance tests start their own throwaway server (initdb + pg_ctl in a temp dir, on a
# free 127.0.0.1 port) and stop it after; without the binaries they skip with the reason. Never
# fails the build: a machine without apt or root just skips. The tests never use the `main`
# cluster the package may create.
set -u
has_server() { compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null || command -v pg_ctl >/dev/null 2>&1; }
has_server && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -q postgresql >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q postgresql >/dev/null 2>&1; }
fi
has_server || echo "postgresql could not be installed: the Postgres instance tests will skip"
exit 0
