#!/usr/bin/env bash
# Install wrk, the HTTP load generator of bench/serving_latency.py (Debian package wrk 4.1).
# The benchmark stops with a message naming this script when wrk is missing.
set -eu
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
command -v wrk >/dev/null 2>&1 ||
  ($SUDO apt-get install -y wrk || ($SUDO apt-get update && $SUDO apt-get install -y wrk))
wrk --version 2>&1 | head -n 1 || true
