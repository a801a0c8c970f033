#!/usr/bin/env bash
# ctest tokenizer_reference: regenerate the reference outputs with Hugging Face tokenizers (npm
# package pinned in package-lock.json) and check the C encoder against all of them.
#   tests/tokenizer/run_reference.sh PATH/TO/test_tokenizer
# Exits 77 (ctest: skipped) when node/npm are absent or the package cannot be installed.
set -euo pipefail
test_bin=$1
here=$(cd "$(dirname "$0")" && pwd)
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  echo "SKIPPED: node and npm are needed for the reference tokenizer (tests/tokenizer/fixtures still run in test_tokenizer)"
  exit 77
fi
if ! (cd "$here" && npm ci --no-audit --no-fund --loglevel=error); then
  echo "SKIPPED: npm ci failed in tests/tokenizer (no registry access?)"
  exit 77
fi
out=$(mktemp -d /tmp/hsadb-tokref.XXXXXX)
trap 'rm -rf "$out"' EXIT
node "$here/gen_reference.mjs" "$out" | grep -v '^$'
"$test_bin" "$out"
