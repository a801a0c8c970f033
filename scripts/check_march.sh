#!/usr/bin/env bash
# The portable build: configure with -DHSADB_MARCH=generic (no -march: util/vec.h's portable
# path, no AVX), check that no AVX instruction is left in the library, and run the C unit
# tests against it. CI runs it after scripts/test.sh (which builds the default x86-64-v3).
#
#   scripts/check_march.sh [BUILD_DIR]      (default build-generic)
#
# Ends with the ctest summary; exit status: the build's or ctest's.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-generic}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DHSADB_MARCH=generic -DHSADB_CUDA=OFF > /dev/null
cmake --build "$build" -j"$(nproc)"
# Any ymm register in the engine's code means AVX slipped into the portable build.
if objdump -d "$build/libhsadb.so" | grep -q '%ymm'; then
  echo "check_march: AVX instructions in the generic libhsadb.so" >&2
  exit 1
fi
echo "check_march: generic libhsadb.so has no AVX instructions"
ctest --test-dir "$build" -R '^test_' --output-on-failure
