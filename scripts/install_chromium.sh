#!/usr/bin/env bash
# Install Debian's chromium for the UI test and `make screenshot`, if it is missing and we can.
# Playwright drives it (executable_path=/usr/bin/chromium), so no browser is downloaded at test
# time; see ../shared/notes/ui-screenshots.md. Without it tests/integration/test_ui.py skips with
# the reason. Never fails the build: a machine without apt or root just skips. (Debian's package;
# Ubuntu's `chromium` is a snap stub that does not run in a container: set PLAYBOOK_CHROMIUM to
# another Chromium there.)
set -u
command -v chromium >/dev/null 2>&1 && exit 0
[ -n "${PLAYBOOK_CHROMIUM:-}" ] && [ -x "$PLAYBOOK_CHROMIUM" ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1; then
  $SUDO apt-get install -y -q chromium >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null 2>&1; }
fi
command -v chromium >/dev/null 2>&1 || echo "chromium could not be installed: the UI test will skip"
exit 0
