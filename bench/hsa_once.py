#!/usr/bin/env python3
"""One HSA forward launch of a chosen kernel on a chosen index set, for a profiler.

  ncu -k regex:hsa_fwd --launch-skip 2 --launch-count 1 \
      python3 bench/hsa_once.py --lib build-cuda/libhsadb_cuda.so --kernel 3 --idx random

Same inputs as bench/bench_gpu.py's HSA section (H=16, Hm=1, dh=64, S=64, K=8): "random" is the
bench idx (top-8 of random scores among the eligible chunks), "realistic" lets each 64-token
tile pick from a pool of 12 chunks. Runs the kernel 3 times (2 warm-up launches), then prints
the CUDA-event time of 20 more.
"""
import argparse
import ctypes

import torch

from bench_gpu import hsa_idx


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lib", required=True)
    ap.add_argument("--kernel", type=int, default=2, help="2..5 (hsadb_cuda_hsa_set_kernel)")
    ap.add_argument("--idx", choices=["random", "realistic"], default="random")
    ap.add_argument("--T", type=int, default=16384)
    a = ap.parse_args()
    lib = ctypes.CDLL(a.lib)
    lib.hsadb_cuda_hsa_set_kernel.argtypes = [ctypes.c_int]
    lib.hsadb_cuda_hsa_set_kernel(a.kernel)
    dev, T, H, Hm, dh, S, K = "cuda", a.T, 16, 1, 64, 64, 8
    torch.manual_seed(0)
    Cm = T // S
    qh = torch.randn(T, H, dh, device=dev).to(torch.bfloat16)
    km = torch.randn(Cm, S, Hm, dh, device=dev).to(torch.bfloat16)
    vm = torch.randn(Cm, S, Hm, dh, device=dev).to(torch.bfloat16)
    ix, w = hsa_idx(T, Cm, S, K, Hm, a.idx == "realistic", dev)
    out = torch.empty(T, H, dh, device=dev)
    st = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    P = lambda t: ctypes.c_void_p(t.data_ptr())

    def run():
        rc = lib.hsadb_cuda_hsa_fwd(P(qh), P(km), P(vm), P(ix), P(w), T, H, Hm, dh, S, K, P(out), st)
        assert rc == 0, rc

    for _ in range(3):
        run()
    torch.cuda.synchronize()
    e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    e0.record()
    for _ in range(20):
        run()
    e1.record()
    e1.synchronize()
    print("v%d %s T=%d: %.4f ms per launch (events around 20 launches)" % (a.kernel, a.idx, T, e0.elapsed_time(e1) / 20))


if __name__ == "__main__":
    main()
