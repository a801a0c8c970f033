#!/usr/bin/env bash
# The one command for the GPU machine: build the CUDA kernels (GPU-only: that machine has no
# LMDB), run the agreement tests, run the benchmarks. Logs go to $OUT (or ./gpu-out).
#   device run: bash scripts/gpu_check.sh
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
ts_lines() { while IFS= read -r l; do printf "[%5ds] %s\n" "$SECONDS" "$l"; done; }
export PATH=/opt/torch/.venv/bin:$PATH
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv | tee "$OUT/gpu.txt"
cmake -S . -B build-gpu -DHSADB_GPU_ONLY=ON -DCMAKE_BUILD_TYPE=Release -G Ninja > "$OUT/cmake.log" 2>&1 \
  || { tail -20 "$OUT/cmake.log"; exit 1; }
echo "[${SECONDS}s] building"; cmake --build build-gpu -j 16 > "$OUT/build.log" 2>&1 || { tail -40 "$OUT/build.log"; exit 1; }
echo "[${SECONDS}s] built"; (cuobjdump -sass build-gpu/libhsadb_cuda.so | grep -oE "HMMA[.A-Z0-9]*|HGMMA" | sort | uniq -c) > "$OUT/sass.txt" 2>&1; cat "$OUT/sass.txt"
timeout 150 ./build-gpu/test_gpu_kernels 2>&1 | ts_lines | tee "$OUT/test_gpu_kernels.log"
rc=${PIPESTATUS[0]}
[ "${GPU_BENCH:-1}" = 1 ] && PYTHONUNBUFFERED=1 timeout 200 python3 bench/bench_gpu.py --lib build-gpu/libhsadb_cuda.so --out "$OUT/bench_gpu.json" 2>&1 \
  | tee "$OUT/bench_gpu.log"
exit $rc
