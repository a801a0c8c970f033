#!/usr/bin/python3
"""Write the golden test data for the C engine: tests/data/tiny/ and tests/data/tiny-bypass/.

Each folder: config.json, model.safetensors (F32 weights), golden.safetensors with
  tokens I32 [T]; x_mid F32 [T,D]; landmarks F32 [C,Hm,dr]; kmem, vmem F32 [C,S,Hm,dh];
  topk_idx I32 [Ng,T,Hm,K] (chunk index descending, -1 padding); topk_w F32 [Ng,T,Hm,K];
  logits F32 [T,V].
Everything is computed in float64 from the F32-rounded weights, mem_round_bf16 = False.

The random init is not the training init: weights are N(0, 1/fan_in) so that activations and
retrieval scores are O(1) (std of the scores >= 1), and the gap between the K-th and the
(K+1)-th eligible score is checked at every (layer, token, memory head); a seed whose smallest
gap is below MIN_GAP is rejected, so fp32 (C) and fp64 (here) cannot select different chunks.

Run with Debian's python:  /usr/bin/python3 tools/train/make_golden.py
"""
import argparse
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hsa_model import HSAConfig, HSAModel, BOS, EOS, QUERY, ANSWER  # noqa: E402
from safetensors_io import save_file  # noqa: E402

MIN_GAP = 1e-3

TINY = dict(vocab_size=264, hidden_size=64, intermediate_size=128, num_attention_heads=4, head_dim=16,
            num_key_value_heads=2, num_memory_heads=2, retrieval_dim=32, num_lower_layers=2,
            encoder_layers=1, num_upper_groups=2, swa_layers_per_group=1, chunk_size=64, chunk_topk=8,
            sliding_window=96, rope_theta=10000.0, rms_norm_eps=1e-6)

TEXT = (b"The quick brown fox jumps over the lazy dog. hsadb stores memories of 64 bytes per chunk; "
        b"each chunk has a landmark and a block of keys and values. The pass key is 7261934. "
        b"Remember it. 7261934 is the pass key. ")


def make_tokens(T, seed):
    g = torch.Generator().manual_seed(seed)
    toks = [BOS]
    toks += list(TEXT)
    toks += torch.randint(0, 256, (150,), generator=g).tolist()   # noise bytes
    toks += list(TEXT[:120])                                         # repeated structure
    toks += list(b"\n" * 3) + torch.randint(32, 127, (120,), generator=g).tolist()
    toks += list(TEXT[40:200])
    tail = [QUERY] + list(b"What is the pass key?") + [ANSWER] + list(b"7261934") + [EOS]
    rest = T - len(toks) - len(tail) - 1
    assert rest > 0
    toks += torch.randint(0, 256, (rest,), generator=g).tolist()
    toks += tail + [BOS]
    assert len(toks) == T and max(toks) < 260 and min(toks) >= 0
    return torch.tensor(toks, dtype=torch.long)


def init_golden(model, seed, retr_scale):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif name == "embed.weight" or name == "chunk.cls":
                p.copy_(torch.randn(p.shape, generator=g))
            else:  # Linear [out, in]
                std = 1.0 / (p.shape[1] ** 0.5)
                if name.endswith(".retr.weight") or name == "chunk.lmk.weight":
                    std *= retr_scale
                p.copy_(std * torch.randn(p.shape, generator=g))
    # round to f32 (that is what model.safetensors stores), then compute in f64
    for p in model.parameters():
        p.data = p.data.float().double()


def min_topk_gap(scores, K):
    """scores: list over layers of s [T,Hm,C] with -inf ineligible.  Smallest gap between the
    K-th and (K+1)-th eligible score over all rows that have more than K eligible chunks."""
    best = float("inf")
    stds = []
    for s in scores:
        fin = torch.isfinite(s)
        stds.append(float(s[fin].std()))
        srt = torch.sort(s, dim=-1, descending=True).values
        if srt.shape[-1] <= K:
            continue
        a, b = srt[..., K - 1], srt[..., K]
        ok = torch.isfinite(b)
        if ok.any():
            best = min(best, float((a - b)[ok].min()))
    return best, stds


def build(outdir, seed, residual, tie, T, tok_seed, retr_scale=2.6, tries=100):
    cfg = HSAConfig(**TINY, tie_word_embeddings=tie, hsa_residual=residual)
    tokens = make_tokens(T, tok_seed)
    for k in range(tries):
        torch.manual_seed(0)
        model = HSAModel(cfg)
        init_golden(model, seed + k, retr_scale)
        model.double().eval()
        with torch.no_grad():
            out = model(tokens, return_intermediates=True, return_scores=True)
        gap, stds = min_topk_gap(out["scores"], cfg.chunk_topk)
        print("%s seed %d: min K/K+1 gap %.4g, score std per layer %s" %
              (outdir, seed + k, gap, ["%.2f" % s for s in stds]))
        if gap >= MIN_GAP and min(stds) >= 1.0 and bool(torch.isfinite(out["logits"]).all()):
            break
    else:
        raise SystemExit("no acceptable seed")
    os.makedirs(outdir, exist_ok=True)
    cfg.save(os.path.join(outdir, "config.json"), torch_dtype="float32")
    sd = {n: p.detach().float().contiguous() for n, p in model.state_dict().items()}
    save_file(sd, os.path.join(outdir, "model.safetensors"),
              metadata={"format": "pt", "init_seed": str(seed + k), "note": "hsadb golden tiny model"})
    Ng, K = cfg.num_upper_groups, cfg.chunk_topk
    Hm = cfg.num_memory_heads
    idx = torch.full((Ng, T, Hm, K), -1, dtype=torch.int32)
    w = torch.zeros((Ng, T, Hm, K), dtype=torch.float32)
    for g in range(Ng):
        kk = out["topk_idx"][g].shape[-1]
        idx[g, :, :, :kk] = out["topk_idx"][g].to(torch.int32)
        w[g, :, :, :kk] = out["topk_w"][g].float()
    gold = {
        "tokens": tokens.to(torch.int32),
        "x_mid": out["x_mid"].float(),
        "landmarks": out["landmarks"].float(),
        "kmem": out["kmem"].float(),
        "vmem": out["vmem"].float(),
        "topk_idx": idx,
        "topk_w": w,
        "logits": out["logits"].float(),
    }
    meta = {"computed_in": "float64", "mem_round_bf16": "false", "min_topk_gap": "%.6g" % gap,
            "init_seed": str(seed + k), "generator": "tools/train/make_golden.py"}
    save_file(gold, os.path.join(outdir, "golden.safetensors"), metadata=meta)
    # quick summary
    nsel = (idx >= 0).sum(-1)
    print("  wrote %s: T=%d C=%d, selected per row min %d max %d, logits |max| %.3f" %
          (outdir, T, out["landmarks"].shape[0], int(nsel.min()), int(nsel.max()), float(out["logits"].abs().max())))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "data"))
    ap.add_argument("--T", type=int, default=64 * 13 + 17)
    a = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    build(os.path.join(a.root, "tiny"), seed=1000, residual="standard", tie=True, T=a.T, tok_seed=7)
    build(os.path.join(a.root, "tiny-bypass"), seed=2000, residual="bypass", tie=False, T=a.T, tok_seed=7)


if __name__ == "__main__":
    main()
