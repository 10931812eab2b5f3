#!/usr/bin/env bash
# The SSH connector tests run a real OpenSSH server (test/support/targets/sshd.ts starts its own
# /usr/sbin/sshd on a free 127.0.0.1 port) and log in as a least-privilege administrator that works through
# sudo (a generated user with a drop-in under /etc/sudoers.d/). Installs the openssh-server and sudo packages
# when they are missing, e.g. on a fresh CI machine; fails with a clear message when that is not possible
# (the tests never skip for a missing component).
set -euo pipefail
missing=()
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/bin/sudo ] || missing+=(sudo)
if [ "${#missing[@]}" = 0 ]; then
  echo "==> sshd present ($( (/usr/sbin/sshd -V 2>&1 || true) | head -n 1)); sudo present ($(/usr/bin/sudo -V | head -n 1))"
  exit 0
fi
echo "==> missing for the SSH connector tests: ${missing[*]}: installing (apt-get)"
fail() {
  echo "ERROR: the SSH connector tests need OpenSSH server (/usr/sbin/sshd) and sudo (/usr/bin/sudo); ${missing[*]} could not be installed: $1" >&2
  echo "       install it yourself (apt-get install ${missing[*]}) and run the tests again." >&2
  exit 1
}
[ "$(id -u)" = 0 ] || fail "installing needs root (this runs as $(id -un))"
command -v apt-get >/dev/null 2>&1 || fail "apt-get is not available on this machine"
# Only the binaries are wanted: stop the package's postinst from starting a system sshd on port 22
# (the usual policy-rc.d convention); left alone when the machine already has one.
policy_added=
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && policy_added=1
fi
status=0
{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } || status=$?
[ -n "$policy_added" ] && rm -f /usr/sbin/policy-rc.d
[ "$status" = 0 ] || fail "apt-get exited with status $status"
[ -x /usr/sbin/sshd ] || fail "openssh-server is installed but /usr/sbin/sshd is missing"
[ -x /usr/bin/sudo ] || fail "sudo is installed but /usr/bin/sudo is missing"
echo "==> installed: $( (/usr/sbin/sshd -V 2>&1 || true) | head -n 1); $(/usr/bin/sudo -V | head -n 1)"
