#!/usr/bin/env python3
"""LM loss (nats per byte) of exported models on the same slices of corpus text, side by side.

Plain text with no needles and no questions: the model continues text. Each slice is <bos> plus
T-1 bytes at a random offset of the corpus (the training corpus: every byte of it can appear in
training, so this is a loss on training-distribution text, not on held-out text). The mean is over
every predicted byte of every slice. CPU, fp32, the reference model (hsa_model.py).

  /usr/bin/python3 tools/train/lm_loss.py models/hsadb-small .carry/ft_model3 --n 16 --T 2048
"""
import argparse
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402
from hsa_model import HSAModel, BOS  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", help="exported model directories (config.json + model.safetensors)")
    ap.add_argument("--corpus", default=None, help="corpus file (default: .carry/corpus.txt[.gz])")
    ap.add_argument("--n", type=int, default=16, help="slices")
    ap.add_argument("--T", type=int, default=2048, help="tokens per slice (with <bos>)")
    ap.add_argument("--seed", type=int, default=4242)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    corpus = D.Corpus(a.corpus)
    rng = random.Random(a.seed)
    slices = [np.concatenate([[BOS], corpus.slice(rng, a.T - 1).astype(np.int64)]) for _ in range(a.n)]
    toks = torch.from_numpy(np.stack(slices))
    print("%d slices of %d tokens, corpus %.1f MB, seed %d" % (a.n, a.T, len(corpus.data) / 1e6, a.seed))
    print("| model | LM loss (nats/byte) | bits/byte | seconds |")
    print("|---|---|---|---|")
    for d in a.models:
        m = HSAModel.from_pretrained(d).eval()
        t0 = time.time()
        tot, cnt = 0.0, 0
        with torch.no_grad():
            for i in range(a.n):
                logits = m(toks[i:i + 1])["logits"][0, :-1]
                tot += float(F.cross_entropy(logits, toks[i, 1:], reduction="sum"))
                cnt += a.T - 1
        loss = tot / cnt
        print("| %s | %.4f | %.3f | %.0f |" % (d, loss, loss / np.log(2), time.time() - t0), flush=True)


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
