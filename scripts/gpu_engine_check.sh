#!/usr/bin/env bash
# The GPU engine end to end, in one command on the GPU machine. That machine has CUDA, cuBLAS
# and PyTorch but no LMDB, OpenBLAS or liburing, so the engine is built here (same CUDA 13
# toolchain) and travels with the Debian libraries it links:
#
#   here:        bash scripts/gpu_engine_check.sh --prepare     (build-cuda/ + .carry/gpu/)
#   GPU machine: bash scripts/gpu_engine_check.sh               (carry .carry/gpu; logs in $OUT)
#
# It runs the agreement tests (tests/test_gpu_engine.c, tests/test_gpu_kernels.cu), the end-to-
# end benchmark at 1M and 16M tokens (bench/bench_gpu_engine.c) and full-attention decode with
# torch SDPA at the same lengths (bench/bench_sdpa_decode.py). GPU_SIZES overrides the sizes.
# GPU_TESTS=0 skips the tests; GPU_EVAL=1 evaluates models/hsadb-small through the engine: tasks
# at 1M (GPU_TASKS, GPU_TASKS_N haystacks each), then single needle over depth x GPU_EVAL_LENGTHS
# (GPU_EVAL_N haystacks per cell); GPU_TASKS_TIMEOUT / GPU_EVAL_TIMEOUT bound each part (per model).
# GPU_MODELS (comma-separated model directories, default models/hsadb-small) evaluates each of them
# on the same haystacks (the haystacks depend on the seed, the corpus and the task list); with more
# than one, the results go to eval_tasks-NAME/ and eval_heatmap-NAME/ (NAME: the directory's name).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  cmake -S . -B build-cuda -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 >/dev/null || exit 1
  cmake --build build-cuda -j"$(nproc)" --target hsadb_cli test_gpu_engine test_gpu_kernels bench_gpu_engine hsadb_cuda || exit 1
  rm -rf .carry/gpu && mkdir -p .carry/gpu/lib
  cp build-cuda/hsadb build-cuda/test_gpu_engine build-cuda/test_gpu_kernels build-cuda/bench_gpu_engine build-cuda/libhsadb_cuda.so .carry/gpu/
  # the Debian libraries the binaries link that the GPU machine (Ubuntu 24.04) lacks
  ldd build-cuda/hsadb build-cuda/bench_gpu_engine | awk '{print $3}' |
    grep -E 'lmdb|openblas|gfortran|quadmath|uring|absl|grpc|gpr|upb|address_sorting|cares|re2|protobuf-c|jansson' |
    sort -u | xargs -I{} cp -L {} .carry/gpu/lib/
  (cd .carry/gpu && tar cJf lib.txz lib && rm -rf lib)
  du -sh .carry/gpu
  exit 0
fi
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PATH=/opt/torch/.venv/bin:$PATH
. scripts/gpu_env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
ldd $G/bench_gpu_engine | grep -E "not found|cublas" | tee -a "$OUT/gpu.txt"
rc=0
if [ "${GPU_TESTS:-1}" = 1 ]; then
  echo "== test_gpu_kernels"; timeout 150 $G/test_gpu_kernels > "$OUT/test_gpu_kernels.log" 2>&1 || rc=1
  tail -1 "$OUT/test_gpu_kernels.log"
  echo "== test_gpu_engine"; timeout 300 $G/test_gpu_engine 2>&1 | tee "$OUT/test_gpu_engine.log" | grep -v "^ok"
  [ "${PIPESTATUS[0]}" = 0 ] || rc=1
fi
if [ "${GPU_EVAL:-0}" = 1 ]; then   # models through the GPU engine: tasks at 1M, single needle at 4M/16M
  IFS=, read -r -a models <<< "${GPU_MODELS:-models/hsadb-small}"
  for m in "${models[@]}"; do
    sfx=""; [ ${#models[@]} -gt 1 ] && sfx="-$(basename "$m")"
    echo "== eval through the engine (hsadb CLI on the GPU): $m"
    PYTHONUNBUFFERED=1 timeout "${GPU_TASKS_TIMEOUT:-200}" python3 tools/eval/eval_engine.py --hsadb $G/hsadb \
      --model "$m" --tasks "${GPU_TASKS:-multikey,multiquery,vt}" --lengths 1048576 \
      --n "${GPU_TASKS_N:-5}" --corpus .carry/corpus.txt.gz --out "$OUT/eval_tasks$sfx" --db /tmp/evaldb2 2>&1 | tail -8
    [ "${GPU_EVAL_N:-1}" -gt 0 ] || continue
    PYTHONUNBUFFERED=1 timeout "${GPU_EVAL_TIMEOUT:-300}" python3 tools/eval/eval_engine.py --hsadb $G/hsadb \
      --model "$m" --heatmap --lengths "${GPU_EVAL_LENGTHS:-4194304,16777216}" \
      --depths 0,0.25,0.5,0.75,1.0 --n "${GPU_EVAL_N:-1}" \
      --corpus .carry/corpus.txt.gz --out "$OUT/eval_heatmap$sfx" --db /tmp/evaldb 2>&1 | tail -15
  done
fi
[ "${GPU_BENCH:-1}" = 1 ] || exit $rc
echo "== bench_gpu_engine"
timeout 400 $G/bench_gpu_engine models/hsadb-small --sizes "${GPU_SIZES:-1048576,16777216}" --dir /tmp/gb 2>&1 | tee "$OUT/bench_gpu_engine.log"
echo "== SDPA decode"
timeout 120 python3 bench/bench_sdpa_decode.py --lengths "${GPU_SIZES:-1048576,16777216}" --out "$OUT/sdpa.json" 2>&1 | tee "$OUT/sdpa.log"
exit $rc
