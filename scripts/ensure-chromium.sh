#!/usr/bin/env bash
# The browser tests (test/browser/*.e2e-spec.ts) drive Debian's Chromium through playwright-core
# (test/support/browser.ts launches /usr/bin/chromium). Installs the `chromium` package when it is missing, e.g. on
# a fresh CI machine; fails with a clear message when that is not possible (the tests never skip for a missing
# component).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [ -x "$CHROMIUM" ]; then
  echo "==> chromium present ($("$CHROMIUM" --version 2>/dev/null | head -n 1))"
  exit 0
fi
echo "==> missing for the browser tests: chromium: installing (apt-get)"
fail() {
  echo "ERROR: the browser tests need Chromium ($CHROMIUM, Debian package chromium); it could not be installed: $1" >&2
  echo "       install it yourself (apt-get install chromium) and run the tests again." >&2
  exit 1
}
[ "$(id -u)" = 0 ] || fail "installing needs root (this runs as $(id -un))"
command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available on this machine"
status=0
{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core; } || status=$?
[ "$status" = 0 ] || fail "apt-get exited with status $status"
[ -x "$CHROMIUM" ] || fail "the chromium package is installed but $CHROMIUM is missing"
echo "==> installed: $("$CHROMIUM" --version 2>/dev/null | head -n 1)"
