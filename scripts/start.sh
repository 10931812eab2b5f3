#!/usr/bin/env bash
# The README's start command: install, build, run. Without DATABASE_URL the vault starts its own
# PostgreSQL under VAULT_DATA_DIR (default ./data).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-deps.sh
npm run --silent build
exec node dist/src/main.js
