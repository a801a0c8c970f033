#!/usr/bin/env python3
"""Exact-match evaluation of an exported model (config.json + model.safetensors) per task family.

A sample counts as correct when every answer of its query blocks is reproduced exactly, including
the <eos> after it (teacher-forced argmax over the answer bytes, which equals greedy decoding of
the answer).  As in the engine, the lower half and the memory run over the whole sequence and the
upper half over the last --tail tokens only.

  python3 tools/train/eval_tasks.py --model models/hsadb-small --lengths 4096 --n 10

Single needle at given depths ("niah-number" with the eval template of train.py), e.g. right before
the question (depth 1.0) and at fixed distances (bytes between the needle's end and <query>):
  python3 tools/train/eval_tasks.py --lengths 4096 --families "" --depths 0.5,1.0 --dists 0,64,128,192
"""
import argparse
import json
import os
import random
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from hsa_model import HSAModel, ANSWER, EOS  # noqa: E402
import data as D  # noqa: E402


def answer_spans(tokens):
    """(start, end) positions: start = the <answer> token, end = the <eos> that closes it."""
    spans = []
    t = tokens.tolist()
    for i, x in enumerate(t):
        if x == ANSWER:
            j = t.index(EOS, i)
            spans.append((i, j))
    return spans


def job_rng(seed, L, name):
    """The generator of one (length, family) job: the same haystacks for the same --seed."""
    return random.Random(seed + L + sum(map(ord, name)))


def upper_start(L, tail, spans):
    """First position the upper half runs over: the last `tail` tokens, and at least 8 before the
    first <answer> (as a query runs the upper layers over the tail of the memory)."""
    return max(0, min(L - tail, spans[0][0] - 8))


def family_samples(seed, corpus, fam, L, S, n, tail, opts):
    """The n haystacks of one (family, length) job as main() draws them: yields (Sample, answer
    spans, upper start)."""
    rng = job_rng(seed, L, fam)
    for _ in range(n):
        s = D.FAMILIES[fam](rng, corpus, L, S, opts=opts)
        spans = answer_spans(s.tokens)
        yield s, spans, upper_start(L, tail, spans)


def task_opts(tail_frac=0.0, mv_order="sorted", vt_hops="", vt_trail=False):
    """The data options of the task families (defaults: this script's flags' defaults)."""
    return dict(tail_frac=tail_frac, mv_order=mv_order,
                vt_hops=tuple(float(x) for x in vt_hops.split(",") if x) or None, vt_trail=vt_trail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="models/hsadb-small")
    ap.add_argument("--lengths", default="4096")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--tail", type=int, default=1024)
    ap.add_argument("--families", default="passkey,niah,multikey,multiquery,multivalue,vt",
                    help="comma-separated task families ('' = none); passkey-codes: passkey with 1-4 "
                    "other codes near the pass key (train.py --passkey-codes)")
    ap.add_argument("--depths", default="", help="also single needle at these relative depths (1.0 = "
                    "immediately before the query block), e.g. 0,0.5,0.9,1.0")
    ap.add_argument("--dists", default="", help="also single needle ending this many bytes before the "
                    "query block, e.g. 0,32,64,128,192,256")
    ap.add_argument("--tail-frac", type=float, default=0.0,
                    help="families: fraction of needles placed at the very end (training does 0.12)")
    ap.add_argument("--mv-order", default="sorted", choices=["sorted", "doc"],
                    help="multivalue answer order (training default: sorted)")
    ap.add_argument("--vt-hops", default="", help="weights of 1,2,3.. vt hops ('' = uniform 1-3)")
    ap.add_argument("--vt-trail", action="store_true",
                    help="vt answers end with a space (for models trained with train.py --vt-trail)")
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--corpus", default="")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    dev = torch.device(a.device)
    m = HSAModel.from_pretrained(a.model, device=dev).eval()
    corpus = D.Corpus(a.corpus or None)
    amp = dev.type == "cuda"
    S = m.cfg.chunk_size
    opts = task_opts(a.tail_frac, a.mv_order, a.vt_hops, a.vt_trail)
    res = {}

    def single(rng, L, depth=None, dist=None):
        return D.eval_sample(rng, corpus, L, S, depth=depth, dist=dist)[0]

    for L in [int(x) for x in a.lengths.split(",")]:
        jobs = [(fam, None) for fam in a.families.split(",") if fam]
        jobs += [("depth%g" % float(d), dict(depth=float(d))) for d in a.depths.split(",") if d]
        jobs += [("dist%d" % int(d), dict(dist=int(d))) for d in a.dists.split(",") if d]
        for fam, kw in jobs:
            rng = job_rng(a.seed, L, fam)
            ok = 0
            t0 = time.time()
            for i in range(a.n):
                if fam == "passkey-codes":  # the pass key with 1-4 other codes near it (data.py CODE_T)
                    toks = D.fam_passkey(rng, corpus, L, S, opts=dict(opts, passkey_codes=1.0)).tokens
                elif kw is None:
                    toks = D.FAMILIES[fam](rng, corpus, L, S, opts=opts).tokens
                else:
                    toks = single(rng, L, **kw)
                spans = answer_spans(toks)
                u = upper_start(L, a.tail, spans)
                with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                    out = m(torch.from_numpy(toks).to(dev)[None], upper_start=u)
                pred = out["logits"][0].float().argmax(-1).cpu().numpy()
                good = all((pred[st - u:en - u] == toks[st + 1:en + 1]).all() for st, en in spans)
                ok += int(good)
            res["%s@%d" % (fam, L)] = dict(acc=ok / a.n, n=a.n, sec=round(time.time() - t0, 1))
            print("%-11s L=%-7d exact %d/%d  (%.1fs)" % (fam, L, ok, a.n, time.time() - t0), flush=True)
    print(json.dumps(res))


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
