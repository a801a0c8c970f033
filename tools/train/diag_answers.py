#!/usr/bin/env python3
"""Where multi-part answers go wrong: per sample, the wanted answer, the model's teacher-forced
argmax at every answer position (what eval_tasks.py scores), and whether retrieval found the
supervised chunk (at each answer position that has a retrieval target, is one of its target
chunks among the first HSA layer's top-K?). Same haystacks as eval_tasks.py for the same seed
and length. CPU, fp32, the reference model.

  /usr/bin/python3 tools/train/diag_answers.py --families vt,multivalue --n 20     # ~4 min on 2 cores

Output per sample: family, index, OK/BAD, wanted answer -> predicted bytes (<257> is <eos>),
"ret-hit h/n" (answer positions whose target chunk was retrieved / positions with a target).
"""
import argparse
import os
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402
from hsa_model import HSAModel  # noqa: E402
from eval_tasks import family_samples, task_opts  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/hsadb-small")
    ap.add_argument("--families", default="vt,multivalue")
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--tail", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=12345, help="eval_tasks.py's --seed")
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vt-trail", action="store_true",
                    help="vt answers end with a space (models trained with train.py --vt-trail: the shipped one)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    m = HSAModel.from_pretrained(a.model).eval()
    corpus = D.Corpus(a.corpus)
    S, L = m.cfg.chunk_size, a.L
    opts = task_opts(vt_trail=a.vt_trail)   # eval_tasks.py's defaults: the same haystacks
    for fam in a.families.split(","):
        ok_n = 0
        for i, (s, spans, u) in enumerate(family_samples(a.seed, corpus, fam, L, S, a.n, a.tail, opts)):
            toks = s.tokens
            with torch.no_grad():
                out = m(torch.from_numpy(toks)[None], upper_start=u, return_intermediates=True)
            pred = out["logits"][0].argmax(-1).numpy()
            st, en = spans[0]
            want = bytes(int(t) for t in toks[st + 1:en]).decode("ascii", "replace")
            got = "".join(chr(t) if t < 256 else "<%d>" % t for t in pred[st - u:en - u + 1])
            ok = all((pred[a0 - u:b0 - u] == toks[a0 + 1:b0 + 1]).all() for a0, b0 in spans)
            ok_n += ok
            sup = dict(s.sup)
            hit = tot = 0
            for t in range(st, en + 1):
                if t in sup:
                    idx = set(out["topk_idx"][0][0, t - u].reshape(-1).tolist())
                    hit += int(any(c in idx for c in sup[t]))
                    tot += 1
            print("%s %2d %s %r -> %r ret-hit %d/%d" % (fam, i, "OK " if ok else "BAD", want, got, hit, tot),
                  flush=True)
        print("%s: %d/%d exact (first query block)" % (fam, ok_n, a.n))


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
