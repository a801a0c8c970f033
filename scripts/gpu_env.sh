# Sourced (from the repository root) by the scripts that run .carry/gpu's binaries on the GPU
# machine: unpacks the Debian libraries they link, packed by `gpu_engine_check.sh --prepare`, and
# puts them and CUDA's on the library path. Sets G=.carry/gpu.
# Safe to source from several scripts at once (eval_gpu_ship.sh runs its stages side by side): the
# unpacking holds a lock, and happens only when /tmp/gpulib does not already hold this lib.txz.
G=.carry/gpu
[ -f $G/lib.txz ] ||
  { echo "no $G/lib.txz: run scripts/gpu_engine_check.sh --prepare here and carry .carry/gpu" >&2; exit 1; }
mkdir -p /tmp/gpulib
{ flock 9
  cmp -s $G/lib.txz /tmp/gpulib/.lib.txz ||
    { tar xJf $G/lib.txz -C /tmp/gpulib --strip-components=1 && cp $G/lib.txz /tmp/gpulib/.lib.txz; }
} 9> /tmp/gpulib.lock || { echo "gpu_env: could not unpack $G/lib.txz into /tmp/gpulib" >&2; exit 1; }
export LD_LIBRARY_PATH=/tmp/gpulib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
