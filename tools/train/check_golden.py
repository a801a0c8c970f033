#!/usr/bin/env python3
"""Recompute tests/data/<name>/golden.safetensors with the reference on a given device and dtype and
print the largest differences (a check of the GPU attention path against the CPU float64 golden).

  python3 tools/train/check_golden.py --device cuda --dtype float32
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hsa_model import HSAModel  # noqa: E402
from safetensors_io import load_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    dt = getattr(torch, a.dtype)
    for name in ("tiny", "tiny-bypass"):
        d = os.path.join(HERE, "..", "..", "tests", "data", name)
        m = HSAModel.from_pretrained(d, dtype=dt, device=a.device).eval()
        g = load_file(os.path.join(d, "golden.safetensors"))
        with torch.no_grad():
            out = m(g["tokens"].long().to(a.device), return_intermediates=True)
        msg = [name, a.device, a.dtype]
        for k in ("x_mid", "landmarks", "kmem", "vmem", "logits"):
            msg.append("%s %.2e" % (k, float((out[k].float().cpu() - g[k]).abs().max())))
        same = all(torch.equal(out["topk_idx"][i].int().cpu(), g["topk_idx"][i, :, :, :out["topk_idx"][i].shape[-1]])
                   for i in range(len(out["topk_idx"])))
        msg.append("topk_idx %s" % ("equal" if same else "DIFFERENT"))
        print(" | ".join(msg), flush=True)


if __name__ == "__main__":
    main()
