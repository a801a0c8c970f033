#!/usr/bin/env python3
"""Time one training step (fwd+bwd, bf16 autocast) of the small preset at several context lengths,
and one eval forward (lower half + memory over L, upper half over the last 1K tokens) at long L.

  python3 tools/train/bench.py --lengths 1024,2048,4096,8192 --tokens 32768 --eval 65536,131072

Where the step's time goes (for the fused-kernel question, issue 3):
  --profile N   torch.profiler over two steps at the first length: the N ops with the most device
                time (CPU time on a machine without CUDA)
  --hsa         also time the HSA attention alone (fwd+bwd; hsa_attend is the naive gather of the
                selected chunks) at each length's training shape, with random picks, next to the step
  --compile     torch.compile the model first (torch 2.x; the step is timed after compiling)
  --hsa-kernel  torch (hsa_attend, the gather), triton (hsa_triton.py, fused) or auto (triton where
                CUDA and Triton are; the default): the HSA attention of the model's step and of --hsa
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hsa_model import HSAConfig, HSAModel, hsa_attention, set_hsa_kernel  # noqa: E402
from train import PRESETS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--eval", default="65536,131072")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    ap.add_argument("--hsa", action="store_true")
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--hsa-kernel", default="auto", choices=["auto", "torch", "triton"])
    a = ap.parse_args()
    a.hsa_kernel = set_hsa_kernel(a.hsa_kernel)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = HSAConfig(**PRESETS[a.preset])
    m = HSAModel(cfg).to(dev)
    print("params %.2fM, device %s, torch %s, hsa kernel %s" % (m.num_params() / 1e6, dev, torch.__version__, a.hsa_kernel), flush=True)
    amp = dev.type == "cuda"
    run = m
    if a.compile:
        if not hasattr(torch, "compile"):
            sys.exit("bench: --compile needs torch 2.x (this is %s)" % torch.__version__)
        run = torch.compile(m)

    def sync():
        if amp:
            torch.cuda.synchronize()

    def step(tok):
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            out = run(tok, return_scores=True)
        loss = out["logits"].float().logsumexp(-1).mean() + sum(s[torch.isfinite(s)].mean() for s in out["scores"] if s.numel())
        loss.backward()

    lengths = [int(x) for x in a.lengths.split(",") if x]
    for L in lengths:
        B = max(1, a.tokens // L)
        tok = torch.randint(0, 256, (B, L), device=dev)
        if amp:
            torch.cuda.reset_peak_memory_stats()
        for i in range(a.steps + 1):
            if i == 1:
                sync()
                t0 = time.time()
            step(tok)
        sync()
        dt = (time.time() - t0) / a.steps
        mem = torch.cuda.max_memory_allocated() / 2**30 if amp else 0
        line = "train L %6d B %3d: %.3f s/step, %8.0f tok/s, peak %.1f GiB" % (L, B, dt, B * L / dt, mem)
        if a.hsa:
            t = time_hsa(cfg, B, L, dev, a.steps, sync)
            line += " | HSA attention fwd+bwd x %d layers: %.3f s" % (cfg.num_upper_groups, cfg.num_upper_groups * t)
        print(line, flush=True)
    if a.profile and lengths:
        L = lengths[0]
        tok = torch.randint(0, 256, (max(1, a.tokens // L), L), device=dev)
        acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if amp else [])
        with torch.profiler.profile(activities=acts) as prof:
            for _ in range(2):
                step(tok)
            sync()
        key = "self_cuda_time_total" if amp else "self_cpu_time_total"
        print("profile, L %d, two steps, by %s:" % (L, key))
        print(prof.key_averages().table(sort_by=key, row_limit=a.profile), flush=True)
    m.eval()
    for L in [int(x) for x in a.eval.split(",") if x]:
        tok = torch.randint(0, 256, (1, L), device=dev)
        with torch.no_grad():
            for i in range(3):
                if i == 1:
                    sync()
                    t0 = time.time()
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                    run(tok, upper_start=L - 1024)
            sync()
        print("eval L %7d: %.3f s/forward" % (L, (time.time() - t0) / 2), flush=True)


def time_hsa(cfg, B, L, dev, steps, sync):
    """Seconds per fwd+bwd of one layer's HSA attention (hsa_attend, or the kernel set by
    --hsa-kernel on CUDA) at the training shape [B, L] (random picks among the eligible chunks,
    bf16 inputs as under autocast)."""
    S, Hm, H, dh, K = cfg.chunk_size, cfg.num_memory_heads, cfg.num_attention_heads, cfg.head_dim, cfg.chunk_topk
    C = L // S
    dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    q = torch.randn(B, L, H, dh, device=dev, dtype=dt, requires_grad=True)
    km = torch.randn(B, C, S, Hm, dh, device=dev, dtype=dt, requires_grad=True)
    vm = torch.randn(B, C, S, Hm, dh, device=dev, dtype=dt, requires_grad=True)
    idx = (torch.rand(B, L, Hm, K, device=dev) * C).long()
    w = torch.softmax(torch.randn(B, L, Hm, K, device=dev), -1).requires_grad_()
    for i in range(steps + 1):
        if i == 1:
            sync()
            t0 = time.time()
        hsa_attention(q, km, vm, idx, w).float().square().mean().backward()
    sync()
    return (time.time() - t0) / steps


if __name__ == "__main__":
    main()
