"""Average the weights of several exported models of one architecture (a "model soup"): every
tensor is the (weighted) mean of the inputs' tensors, computed in float32 and stored in the first
input's dtype. The inputs must share config.json and every tensor's name and shape (steps of one
training lineage: fine-tunes from a common ancestor); anything else is refused. Writes OUT/
config.json (the first input's) and OUT/model.safetensors, whose metadata hold the inputs'
sha256 and the mix (so the same inputs give the same file, wherever they lie).

  /usr/bin/python3 tools/train/average_weights.py --models .carry/c87539,.carry/c91472 --out .carry/soup

The result is a new model: memories appended with any of the inputs are refused by the engine
(its fingerprint is the weights file's hash), and it must be evaluated like any candidate.
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io as st  # noqa: E402


def average(dirs, mix, out):
    """Writes out/model.safetensors (the mix-weighted mean of dirs' weights) and out/config.json;
    returns the number of tensors. Raises ValueError on inputs that cannot be averaged (fewer
    than two, configs or tensor names or shapes that differ, a bad mix, an existing output)."""
    if len(dirs) < 2:
        raise ValueError("give at least two models")
    if len(mix) != len(dirs) or min(mix) < 0 or sum(mix) <= 0:
        raise ValueError("--weights needs one non-negative number per model, not all 0")
    mix = [x / sum(mix) for x in mix]
    out_file = os.path.join(out, "model.safetensors")
    if os.path.exists(out_file):
        raise ValueError("%s exists; not overwriting" % out_file)
    cfgs, models, hashes = [], [], []
    for d in dirs:
        path = os.path.join(d, "model.safetensors")
        try:
            cfgs.append(json.load(open(os.path.join(d, "config.json"))))
            models.append(st.load_file(path))
            hashes.append(hashlib.sha256(open(path, "rb").read()).hexdigest())
        except (OSError, ValueError) as e:
            raise ValueError("cannot read the model in %s: %s" % (d, e))
    for d, c, m in zip(dirs[1:], cfgs[1:], models[1:]):
        if c != cfgs[0]:
            raise ValueError("%s/config.json differs from %s's" % (d, dirs[0]))
        if sorted(m) != sorted(models[0]):
            raise ValueError("%s holds other tensors than %s" % (d, dirs[0]))
        for k, t in m.items():
            if t.shape != models[0][k].shape:
                raise ValueError("%s: %s is %s, %s in %s" % (d, k, tuple(t.shape), tuple(models[0][k].shape), dirs[0]))
    avg = {}
    for k, t0 in models[0].items():
        acc = torch.zeros(t0.shape, dtype=torch.float32)
        for w, m in zip(mix, models):
            acc += w * m[k].float()
        avg[k] = acc.to(t0.dtype)
    os.makedirs(out, exist_ok=True)
    # the inputs by content, not by path, so that the same inputs give the same file (and hash)
    meta = {"average_of_sha256": ",".join(hashes), "mix": ",".join("%.4f" % w for w in mix)}
    st.save_file(avg, out_file, metadata=meta)
    shutil.copyfile(os.path.join(dirs[0], "config.json"), os.path.join(out, "config.json"))
    return len(avg)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", required=True, help="comma-separated model directories (config.json + model.safetensors)")
    ap.add_argument("--weights", default="", help="comma-separated mixing weights (default: equal); normalised to sum 1")
    ap.add_argument("--out", required=True, help="directory to write (created; must not hold a model.safetensors)")
    a = ap.parse_args()
    dirs = [d for d in a.models.split(",") if d]
    try:
        mix = [float(x) for x in a.weights.split(",")] if a.weights else [1.0] * len(dirs)
        n = average(dirs, mix, a.out)
    except ValueError as e:
        sys.exit("average_weights: %s" % e)
    print("average_weights: %d tensors, mean of %s -> %s" % (n, ", ".join(dirs), os.path.join(a.out, "model.safetensors")))


if __name__ == "__main__":
    main()
