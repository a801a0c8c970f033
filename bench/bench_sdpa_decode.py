"""Full-attention decode next to hsadb's query: one new token over a KV cache of L tokens.

The baseline a user would otherwise run: the same attention geometry as the shipped model
(H=8 query heads, Hk=2 K/V heads, dh=32, bf16) with full causal attention in every layer, so one
generated token reads the whole cache of every layer. torch SDPA picks its fastest kernel
(FlashAttention / memory-efficient / cuDNN). Timed with CUDA events after warm-up; prints a
table of ms per token (all layers) and the effective read bandwidth.

  python3 bench/bench_sdpa_decode.py [--lengths 1048576,4194304,16777216] [--layers 6]
"""
import argparse
import json

import torch
import torch.nn.functional as F


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lengths", default="1048576,4194304,16777216")
    ap.add_argument("--layers", type=int, default=6, help="attention layers run per token (shipped model: 6)")
    ap.add_argument("--heads", type=int, default=8)
    ap.add_argument("--kv-heads", type=int, default=2)
    ap.add_argument("--head-dim", type=int, default=32)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    dev = torch.device("cuda")
    print("# %s, torch %s; H=%d Hk=%d dh=%d bf16, %d layers" % (torch.cuda.get_device_name(), torch.__version__,
                                                                a.heads, a.kv_heads, a.head_dim, a.layers))
    print("| cache tokens | ms per token (all layers) | ms per layer | GB read per token | GB/s |")
    print("|---|---|---|---|---|")
    rows = []
    for L in [int(x) for x in a.lengths.split(",")]:
        try:
            k = torch.randn(1, a.kv_heads, L, a.head_dim, device=dev, dtype=torch.bfloat16)
            v = torch.randn_like(k)
        except torch.cuda.OutOfMemoryError:
            print("| %d | out of memory | | | |" % L)
            continue
        q = torch.randn(1, a.heads, 1, a.head_dim, device=dev, dtype=torch.bfloat16)
        # one layer's cache is reused for every layer: the bytes read per layer are the same,
        # and L2 (50 MB) cannot hold a cache of >= 1M tokens (128 MB per layer at 1M)
        run = lambda: F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        for _ in range(3):
            run()
        torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        e0.record()
        for _ in range(a.reps):
            run()
        e1.record()
        torch.cuda.synchronize()
        per_layer = e0.elapsed_time(e1) / a.reps
        gb = 2 * k.numel() * 2 / 1e9
        rows.append({"L": L, "ms_per_token": per_layer * a.layers, "ms_per_layer": per_layer, "GBps": gb / per_layer * 1e3})
        print("| %d | %.3f | %.3f | %.2f | %.0f |" % (L, per_layer * a.layers, per_layer, gb * a.layers, gb / per_layer * 1e3))
        del k, v
        torch.cuda.empty_cache()
    if a.out:
        json.dump(rows, open(a.out, "w"), indent=1)


if __name__ == "__main__":
    main()
