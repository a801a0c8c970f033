#!/usr/bin/env bash
# Kernel time of one GPU append, per kernel, with Nsight Compute (on the GPU machine, after
# `bash scripts/gpu_engine_check.sh --prepare` here; carry .carry/gpu). Appends TOKENS bytes
# (default 32768: two 16K-token blocks) and prints ncu's per-kernel summary (durations are
# measured with the clocks left alone).
#   GPU machine: bash scripts/gpu_profile.sh [TOKENS]      (log in $OUT/ncu_append.txt)
#                bash scripts/gpu_profile.sh --hsa         (the HSA forward kernels v2 and v3 at
#                T=16,384 on random and realistic picks: occupancy, warp stalls, memory; one
#                report per case in $OUT/ncu_hsa_*.txt)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
. scripts/gpu_env.sh
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "no ncu on this machine"; exit 1; }
if [ "${1:-}" = "--hsa" ]; then
  export PATH=/opt/torch/.venv/bin:$PATH
  rc=0
  for case in ${HSA_CASES:-2:random 3:random 4:random 4:realistic}; do   # kernel:idx
    set -- ${case/:/ }
    "$NCU" --clock-control none -k regex:hsa_fwd --launch-skip 2 --launch-count 1 --import-source yes \
      --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
      --section SchedulerStats --section MemoryWorkloadAnalysis --section SourceCounters --page details \
      --metrics "regex:smsp__average_warps_issue_stalled_.*_per_issue_active\.ratio" \
      python3 bench/hsa_once.py --lib $G/libhsadb_cuda.so --kernel $1 --idx $2 > "$OUT/ncu_hsa_v$1_$2.txt" 2>&1 || rc=1
    python3 bench/hsa_once.py --lib $G/libhsadb_cuda.so --kernel $1 --idx $2
    grep -E "Duration|Achieved Occupancy|Registers Per|Warp Cycles Per Issued|Issued Warp Per|No Eligible|L2 Cache Throughput|Mem Busy|Max Bandwidth|Stall" "$OUT/ncu_hsa_v$1_$2.txt" | head -30
  done
  exit $rc
fi
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
