# Sourced (from the repository root) by the scripts that run .carry/gpu's binaries on the GPU
# machine: unpacks the Debian libraries they link, packed by `gpu_engine_check.sh --prepare`, and
# puts them and CUDA's on the library path. Sets G=.carry/gpu.
G=.carry/gpu
mkdir -p /tmp/gpulib && tar xJf $G/lib.txz -C /tmp/gpulib --strip-components=1 ||
  { echo "no $G/lib.txz: run scripts/gpu_engine_check.sh --prepare here and carry .carry/gpu" >&2; exit 1; }
export LD_LIBRARY_PATH=/tmp/gpulib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
