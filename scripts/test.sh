#!/usr/bin/env bash
# The README's test command (and CI's): install, lint, type-check, build, then every jest test against
# the real services this machine kind runs (PostgreSQL on 127.0.0.1:5432, MariaDB on 127.0.0.1:3306) and the
# connector test targets the tests start themselves (sshd, a scram-sha-256 PostgreSQL cluster). Then the secret
# scan: every secret the tests sent or received must be absent from every log line, audit event and error body
# (test/support/secret-sentinel.ts records them, test/support/secret-scan.ts looks).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "==> lint";       npm run --silent lint
echo "==> typecheck";  npm run --silent typecheck
echo "==> build";      npm run --silent build
bash scripts/ensure-sshd.sh   # installs openssh-server when missing (fresh CI machine)
bash scripts/ensure-chromium.sh   # installs Debian's chromium when missing (the browser tests)
scan_dir="$(mktemp -d "${TMPDIR:-/tmp}/vault-secret-scan.XXXXXX")"
trap 'rm -rf "$scan_dir"' EXIT
echo "==> jest";       TEST_SECRET_SCAN_DIR="$scan_dir" npx jest --ci --forceExit "$@"
echo "==> secret scan"
if ! npx ts-node --transpile-only test/support/secret-scan.ts "$scan_dir"; then
  trap - EXIT
  echo "secret scan failed; the recorded logs, audit events and error bodies are in $scan_dir" >&2
  exit 1
fi
