#!/usr/bin/env bash
# Kernel time of one GPU append, per kernel, with Nsight Compute (on the GPU machine, after
# `bash scripts/gpu_engine_check.sh --prepare` here; carry .carry/gpu). Appends TOKENS bytes
# (default 32768: two 16K-token blocks) and prints ncu's per-kernel summary (durations are
# measured with the clocks left alone).
#   GPU machine: bash scripts/gpu_profile.sh [TOKENS]      (log in $OUT/ncu_append.txt)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
G=.carry/gpu
mkdir -p /tmp/gpulib && tar xJf $G/lib.txz -C /tmp/gpulib --strip-components=1
export LD_LIBRARY_PATH=/tmp/gpulib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu on this machine"; exit 1; }
n=${1:-32768}
head -c "$n" /dev/urandom | base64 -w 100 | head -c "$n" > /tmp/prof_in.txt
rm -rf /tmp/profdb
$G/hsadb --db /tmp/profdb --model models/hsadb-small --device cuda create m || exit 1
"$NCU" --clock-control none --print-summary per-kernel --metrics gpu__time_duration.sum \
  $G/hsadb --db /tmp/profdb --model models/hsadb-small --device cuda append m /tmp/prof_in.txt \
  > "$OUT/ncu_append.txt" 2>&1
rc=$?
# kernel names and their duration lines
grep -E "^  [A-Za-z_]|gpu__time_duration" "$OUT/ncu_append.txt" | head -120
exit $rc
