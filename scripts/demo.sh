#!/usr/bin/env bash
# The hsadb demo: build, store the sample archive in a memory, ask it questions.
#
#   scripts/demo.sh            (after scripts/install-deps.sh)
#
# Builds the CLI (Release) into build/, recreates the memory "samples" in ./hsadb-data (or
# $HSADB_DB), appends each file of samples/archive/ with a progress line, then asks every
# question of samples/questions.txt and prints the answer and its evidence: the chunks each
# HSA layer retrieved, with the append and byte offset they came from.
set -euo pipefail
cd "$(dirname "$0")/.."

db=${HSADB_DB:-./hsadb-data}
build=${HSADB_BUILD_DIR:-build}
model=${HSADB_MODEL:-models/hsadb-small}
memory=samples

if [ ! -f "$model/model.safetensors" ]; then
  cat >&2 <<MSG
================================================================================
NOTE: the trained model $model is not present. This demo falls back to the
random-weight TEST model tests/data/tiny: every mechanism runs (append, retrieval,
evidence with provenance), but the ANSWERS WILL BE NOISE.
================================================================================
MSG
  model=tests/data/tiny
  max_tokens=24
else
  max_tokens=64
fi

echo "== building (cmake, Release)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target hsadb_cli
hsadb=("$build/hsadb" --db "$db" --model "$model")

echo "== memory '$memory' in $db, model $model"
if "${hsadb[@]}" -q stats "$memory" >/dev/null 2>&1; then
  "${hsadb[@]}" delete "$memory" --yes
fi
"${hsadb[@]}" create "$memory"

for f in samples/archive/*; do
  echo "== append $f"
  "${hsadb[@]}" append "$memory" "$f" --progress
done
"${hsadb[@]}" stats "$memory"

while IFS= read -r q || [ -n "$q" ]; do
  case "$q" in ''|'#'*) continue ;; esac
  echo
  echo "== query: $q"
  "${hsadb[@]}" query "$memory" "$q" --max-tokens "$max_tokens" --evidence 3 </dev/null
done < samples/questions.txt
