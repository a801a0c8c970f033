#!/usr/bin/env python3
"""The append block's GEMMs in the engine's precision (fp32 activations, TF32 tensor cores:
cuBLAS SGEMM with TF32 math, as kernels/engine_cuda.cu runs them) next to bf16 operands, side
by side in one run on the GPU machine:

  python3 bench/bench_gemm_dtype.py [--rows 16384] [--config models/hsadb-small/config.json]

Rows: the GEMMs of one 16,384-token block of the shipped model (per lower layer: q, k, v, o,
gate, up, down; the encoder the same over 16,640 rows; the record projections). Columns:
  tf32        fp32 in, fp32 out (what the engine does)
  bf16->fp32  bf16 in, fp32 out (torch.mm out_dtype when this torch has it; else skipped)
  bf16        bf16 in, bf16 out (all activations in bf16: the most a bf16 engine could gain)
  +cast       the fp32 -> bf16 cast of the input that a bf16 GEMM on fp32 activations needs
Timing: CUDA-graph replays between events after warm-up (bench_gpu.py's bench()).
"""
import argparse
import json

import torch

from bench_gpu import bench


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--config", default="models/hsadb-small/config.json")
    a = ap.parse_args()
    c = json.load(open(a.config))
    D, F = c["hidden_size"], c["intermediate_size"]
    qd, kd = c["num_attention_heads"] * c["head_dim"], c["num_key_value_heads"] * c["head_dim"]
    n = a.rows
    ne = n // c["chunk_size"] * (c["chunk_size"] + 1)
    layers = c["num_lower_layers"]
    shapes = []   # (name, rows, din, dout, count)
    for nm, rows, cnt in (("lower", n, layers), ("encoder", ne, c["encoder_layers"])):
        shapes += [(nm + " q", rows, D, qd, cnt), (nm + " k,v", rows, D, kd, 2 * cnt), (nm + " o", rows, qd, D, cnt),
                   (nm + " gate,up", rows, D, F, 2 * cnt), (nm + " down", rows, F, D, cnt)]
    Hm, dh = c["num_memory_heads"], c["head_dim"]
    shapes += [("records K,V", n, D, Hm * dh, 2)]
    torch.backends.cuda.matmul.allow_tf32 = True
    dev = "cuda"
    has_out_dtype = True
    try:
        torch.mm(torch.ones(16, 16, device=dev, dtype=torch.bfloat16), torch.ones(16, 16, device=dev, dtype=torch.bfloat16),
                 out_dtype=torch.float32)
    except Exception:
        has_out_dtype = False
    print("torch %s, %s; TF32 allowed; bf16->fp32 via torch.mm(out_dtype): %s" % (
        torch.__version__, torch.cuda.get_device_name(), has_out_dtype))
    print("\n| GEMM | rows x din -> dout | count | tf32 ms | bf16->fp32 ms | bf16 ms | +cast ms |\n|---|---|---|---|---|---|---|")
    tot = [0.0, 0.0, 0.0, 0.0]
    for name, rows, din, dout, cnt in shapes:
        x = torch.randn(rows, din, device=dev)
        w = torch.randn(din, dout, device=dev) * din ** -0.5
        xb, wb = x.bfloat16(), w.bfloat16()
        t32 = bench(lambda: torch.mm(x, w))
        tmix = bench(lambda: torch.mm(xb, wb, out_dtype=torch.float32)) if has_out_dtype else float("nan")
        tb = bench(lambda: torch.mm(xb, wb))
        tc = bench(lambda: x.bfloat16())
        for i, t in enumerate((t32, tmix, tb, tc)):
            tot[i] += cnt * t
        print("| %s | %d x %d -> %d | %d | %.4f | %.4f | %.4f | %.4f |" % (name, rows, din, dout, cnt, t32, tmix, tb, tc))
    print("| **block total** | | | **%.3f** | %.3f | **%.3f** | %.3f |" % tuple(tot))
    print("\nbf16 everywhere would save %.3f ms per %d-token block (%.0f%% of its GEMM time); bf16 operands on the "
          "engine's fp32 activations: %.3f ms GEMMs + %.3f ms casts vs %.3f ms TF32" % (
              tot[0] - tot[2], n, 100 * (tot[0] - tot[2]) / tot[0], tot[1], tot[3], tot[0]))


if __name__ == "__main__":
    main()
