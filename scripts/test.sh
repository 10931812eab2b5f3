#!/usr/bin/env bash
# The README's test command (and CI's): install, lint, type-check, build, then every jest test against
# the real services this machine kind runs (PostgreSQL on 127.0.0.1:5432, MariaDB on 127.0.0.1:3306) and the
# connector test targets the tests start themselves (sshd, a scram-sha-256 PostgreSQL cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
echo "==> lint";       npm run --silent lint
echo "==> typecheck";  npm run --silent typecheck
echo "==> build";      npm run --silent build
bash scripts/ensure-sshd.sh   # installs openssh-server when missing (fresh CI machine)
echo "==> jest";       npx jest --ci --forceExit "$@"
