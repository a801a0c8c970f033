#!/usr/bin/env python3
"""Export a training checkpoint (train.py's directory: state.json + model-*.safetensors) to the
engine's model folder: config.json + model.safetensors (F32 or BF16), with the tensor names of
docs/model-spec.md.

  python3 tools/train/export.py --ckpt .carry/ckpt --out models/hsadb-small --dtype float32
"""
import argparse
import hashlib
import json
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hsa_model import HSAConfig, HSAModel, expected_param_shapes  # noqa: E402
from safetensors_io import load_file, save_file  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--out", default="models/hsadb-small")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = ap.parse_args()
    st = json.load(open(os.path.join(a.ckpt, "state.json")))
    cfg = HSAConfig(**st["config"])
    sd = {}
    for fn in st["files"]:
        if fn.startswith("model-"):
            sd.update(load_file(os.path.join(a.ckpt, fn)))
    exp = expected_param_shapes(cfg)
    assert set(sd) == set(exp), set(sd) ^ set(exp)
    for k, v in sd.items():
        assert tuple(v.shape) == exp[k], (k, v.shape, exp[k])
    model = HSAModel(cfg)
    model.load_state_dict({k: v.float() for k, v in sd.items()})  # validates names and shapes
    dt = getattr(torch, a.dtype)
    os.makedirs(a.out, exist_ok=True)
    cfg.save(os.path.join(a.out, "config.json"), torch_dtype=a.dtype)
    meta = {"format": "pt", "model_type": "hsadb-hsa", "train_step": str(st["step"]),
            "train_tokens": str(st["tokens"]), "exported_by": "tools/train/export.py"}
    out = {k: v.to(dt).contiguous() for k, v in sd.items()}
    path = os.path.join(a.out, "model.safetensors")
    save_file(out, path, metadata=meta)
    h = hashlib.sha256(open(path, "rb").read()).hexdigest()
    print("wrote %s (%s, %.2f MB, %d tensors, %.2fM params, sha256 %s)" % (
        path, a.dtype, os.path.getsize(path) / 1e6, len(out), sum(v.numel() for v in out.values()) / 1e6, h[:16]))


if __name__ == "__main__":
    main()
