#!/usr/bin/python3
"""Write a random-weight model with the shipped model's shape, for benchmarks only.

  /usr/bin/python3 bench/make_bench_model.py OUTDIR [--hidden 256 ...]

Speed does not depend on the weights' values, so benchmarks can run before (and without) a
trained checkpoint. Init: N(0, 0.02) for matrices and the embedding, 1 for norm gains.
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tools", "train"))
from hsa_model import HSAConfig, HSAModel  # noqa: E402
from safetensors_io import save_file  # noqa: E402

SHIP = dict(vocab_size=264, hidden_size=256, intermediate_size=768, num_attention_heads=8, head_dim=32,
            num_key_value_heads=2, num_memory_heads=2, retrieval_dim=64, num_lower_layers=2,
            encoder_layers=1, num_upper_groups=2, swa_layers_per_group=1, chunk_size=64, chunk_topk=8,
            sliding_window=128, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
            hsa_residual="standard")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir")
    for k, v in SHIP.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            ap.add_argument("--" + k.replace("_", "-"), type=type(v), default=v)
    args = ap.parse_args()
    kw = dict(SHIP)
    for k in kw:
        a = k.replace("-", "_")
        if hasattr(args, a):
            kw[k] = getattr(args, a)
    cfg = HSAConfig(**kw)
    torch.manual_seed(0)
    model = HSAModel(cfg)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    os.makedirs(args.outdir, exist_ok=True)
    cfg.save(os.path.join(args.outdir, "config.json"), torch_dtype="bfloat16")
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(args.outdir, "model.safetensors"))
    n = sum(p.numel() for p in model.parameters())
    print("wrote %s: %.2fM parameters" % (args.outdir, n / 1e6))


if __name__ == "__main__":
    main()
