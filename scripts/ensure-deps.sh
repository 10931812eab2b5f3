#!/usr/bin/env bash
# Installs the locked dependencies when node_modules is missing or older than package-lock.json or package.json (whose
# allowScripts decides which install scripts run: ssh2's builds its native crypto binding).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ] || [ package.json -nt node_modules/.package-lock.json ]; then
  echo "==> installing dependencies (npm ci)"
  npm ci --no-audit --no-fund
fi
