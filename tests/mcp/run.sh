#!/usr/bin/env bash
# ctest wrapper of the MCP end-to-end test: installs the pinned MCP TypeScript SDK
# (package-lock.json, `npm ci`, from npm's cache when it holds it) into WORKDIR and runs
# mcp_test.mjs against the real binary. Exit 77 (ctest's SKIP_RETURN_CODE) only when node or
# npm is absent; a failed install is a failure.
#   tests/mcp/run.sh HSADB_BINARY MODEL_DIR WORKDIR
set -euo pipefail
bin=$(realpath "$1") model=$(realpath "$2") work=$3
here=$(cd "$(dirname "$0")" && pwd)
for tool in node npm; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "SKIPPED: $tool not found (install Node.js 20+ and npm to run the MCP SDK test)"
    exit 77
  fi
done
mkdir -p "$work"
cp "$here/package.json" "$here/package-lock.json" "$here/mcp_test.mjs" "$work/"
cd "$work"
if ! npm ci --prefer-offline --no-audit --no-fund --loglevel=error >npm.log 2>&1; then
  cat npm.log
  echo "mcp test: npm ci failed (no network and no cached @modelcontextprotocol/sdk?)"
  exit 1
fi
exec node mcp_test.mjs "$bin" "$model"
