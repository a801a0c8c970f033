"""Make a resume directory for train.py from exported weights (config.json + model.safetensors):
a fresh optimizer, the given step and token counts (so the run's log and the rng continue from
there). The weights are copied into the directory, or referenced by a relative path with --link
(for the shipped model, which travels to the GPU machine in the working tree anyway).

  python3 tools/train/make_init.py --model models/hsadb-small --step 44565 --tokens 1460305920 \
      --out .carry/ckpt_44565_init --link
"""
import argparse
import json
import os
import shutil
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="directory with config.json and model.safetensors")
    ap.add_argument("--step", type=int, required=True, help="the training step the weights are from")
    ap.add_argument("--tokens", type=int, required=True, help="training tokens seen by then")
    ap.add_argument("--out", required=True, help="resume directory to write (created)")
    ap.add_argument("--link", action="store_true", help="reference the weights instead of copying them")
    a = ap.parse_args()
    src = os.path.join(a.model, "model.safetensors")
    try:
        cfg = json.load(open(os.path.join(a.model, "config.json")))
    except (OSError, ValueError) as e:
        sys.exit("make_init: cannot read %s/config.json: %s" % (a.model, e))
    if not os.path.isfile(src):
        sys.exit("make_init: %s does not exist" % src)
    os.makedirs(a.out, exist_ok=True)
    if a.link:
        fn = os.path.relpath(os.path.abspath(src), os.path.abspath(a.out))
    else:
        fn = "model.safetensors"
        shutil.copyfile(src, os.path.join(a.out, fn))
    st = dict(step=a.step, tokens=a.tokens, train_seconds=0, history=[], evals=[], runs=[],
              config=cfg, files=[fn])
    with open(os.path.join(a.out, "state.json"), "w") as f:
        json.dump(st, f, indent=1)
    print("make_init: %s -> %s (step %d, weights %s)" % (a.model, a.out, a.step, fn))


if __name__ == "__main__":
    main()
