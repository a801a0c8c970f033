#!/usr/bin/env python3
"""Time one training step (fwd+bwd, bf16 autocast) of the small preset at several context lengths,
and one eval forward (lower half + memory over L, upper half over the last 1K tokens) at long L.

  python3 tools/train/bench.py --lengths 1024,2048,4096,8192 --tokens 32768 --eval 65536,131072
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hsa_model import HSAConfig, HSAModel  # noqa: E402
from train import PRESETS  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--lengths", default="1024,2048,4096,8192")
    ap.add_argument("--tokens", type=int, default=32768)
    ap.add_argument("--eval", default="65536,131072")
    ap.add_argument("--steps", type=int, default=5)
    a = ap.parse_args()
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    m = HSAModel(HSAConfig(**PRESETS[a.preset])).to(dev)
    print("params %.2fM" % (m.num_params() / 1e6), flush=True)
    amp = dev.type == "cuda"

    def sync():
        if amp:
            torch.cuda.synchronize()

    for L in [int(x) for x in a.lengths.split(",") if x]:
        B = max(1, a.tokens // L)
        tok = torch.randint(0, 256, (B, L), device=dev)
        if amp:
            torch.cuda.reset_peak_memory_stats()
        for i in range(a.steps + 1):
            if i == 1:
                sync()
                t0 = time.time()
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                out = m(tok, return_scores=True)
            loss = out["logits"].float().logsumexp(-1).mean() + sum(s[torch.isfinite(s)].mean() for s in out["scores"] if s.numel())
            loss.backward()
        sync()
        dt = (time.time() - t0) / a.steps
        mem = torch.cuda.max_memory_allocated() / 2**30 if amp else 0
        print("train L %6d B %3d: %.3f s/step, %8.0f tok/s, peak %.1f GiB" % (L, B, dt, B * L / dt, mem), flush=True)
    m.eval()
    for L in [int(x) for x in a.eval.split(",") if x]:
        tok = torch.randint(0, 256, (1, L), device=dev)
        with torch.no_grad():
            for i in range(3):
                if i == 1:
                    sync()
                    t0 = time.time()
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                    m(tok, upper_start=L - 1024)
            sync()
        print("eval L %7d: %.3f s/forward" % (L, (time.time() - t0) / 2), flush=True)


if __name__ == "__main__":
    main()
