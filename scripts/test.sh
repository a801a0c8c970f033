#!/usr/bin/env bash
# Install dependencies (the `test` set of scripts/install-deps.sh), build (Release), run every
# test with ctest, and end with one line `N passed, N failed` counted from ctest's results
# (tests that could not run, e.g. `reference` without PyTorch, are listed on a line
# `N skipped: ...` before it and counted in neither). Exit status: ctest's (or the build's).
# HSADB_CHECK_MARCH=1 (CI: .ci/run) also builds the portable configuration and runs its unit
# tests (scripts/check_march.sh, log in $build/check_march.log), counted as one more test.
set -uo pipefail
cd "$(dirname "$0")/.."

build=${HSADB_BUILD_DIR:-build}

scripts/install-deps.sh test || { echo "0 passed, 1 failed"; exit 1; }

if ! cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ||
   ! cmake --build "$build" -j"$(nproc)"; then
  echo "build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

log="$build/ctest.log"
ctest --test-dir "$build" --output-on-failure 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

march_passed=0 march_failed=0
if [ "${HSADB_CHECK_MARCH:-0}" = 1 ]; then
  if scripts/check_march.sh "${build}-generic" > "$build/check_march.log" 2>&1; then
    echo "check_march: the -DHSADB_MARCH=generic build passes its unit tests"
    march_passed=1
  else
    tail -n 30 "$build/check_march.log"
    echo "check_march: FAILED (log: $build/check_march.log)"
    march_failed=1
    rc=1
  fi
fi

# ctest's summary: "NN% tests passed, F tests failed out of T"
summary=$(grep -E '[0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
if [ -n "$summary" ]; then
  failed=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$summary")
  total=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$summary")
  skipped=$(grep -cE '^[[:space:]]+[0-9]+ - .* \(Skipped\)$' "$log" || true)
  if [ "$skipped" -gt 0 ]; then
    echo "$skipped skipped: $(grep -E '^[[:space:]]+[0-9]+ - .* \(Skipped\)$' "$log" |
                              sed -E 's/^[[:space:]]+[0-9]+ - (.*) \(Skipped\)$/\1/' | paste -sd, -)"
  fi
  echo "$((total - failed - skipped + march_passed)) passed, $((failed + march_failed)) failed"
elif grep -q 'No tests were found' "$log"; then
  echo "0 passed, 0 failed"
else
  echo "0 passed, 1 failed"
  [ "$rc" -ne 0 ] || rc=1
fi
exit "$rc"
