#!/usr/bin/env python3
"""Does a model stop list answers too early? For vt answers ("A B C<eos>"), teacher-forced, at every
position that decides whether the list goes on (the one after each name: it predicts ' ' to go on,
or <eos> to stop), the probability the model gives to <eos>. Per model and by how many names have
been given: mean P(<eos>) where the answer goes on and where it stops, how often the model's
argmax there is right, and (where it goes on) whether the next link's chunk is among the first HSA
layer's top-K at that position: a stop with the link retrieved is a decision error, one without it a
retrieval error. Same haystacks as eval_tasks.py for the same seed and length; CPU, fp32,
the reference model.

  /usr/bin/python3 tools/train/probe_stop.py --models models/hsadb-small,OTHER --L 4096 --n 40
"""
import argparse
import os
import sys
from collections import defaultdict

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402
from hsa_model import HSAModel  # noqa: E402
from eval_tasks import family_samples, task_opts  # noqa: E402


def cell(r):
    """n, mean P(<eos>), argmax right / n"""
    return "%d, %.3f, %d/%d" % (r[0], r[1] / r[0], r[2], r[0]) if r[0] else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="models/hsadb-small", help="comma-separated model directories")
    ap.add_argument("--L", type=int, default=4096)
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--tail", type=int, default=1024)
    ap.add_argument("--seed", type=int, default=12345, help="eval_tasks.py's --seed")
    ap.add_argument("--vt-hops", default="", help="eval_tasks.py's --vt-hops ('' = uniform 1-3)")
    ap.add_argument("--vt-trail", action="store_true",
                    help="answers end with a space (train.py --vt-trail): the decision is at the position "
                         "after each name's space (a letter to go on, <eos> to stop)")
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    corpus = D.Corpus(a.corpus)
    print("| model | after name | goes on: n, mean P(eos), argmax right | goes on: next link retrieved "
          "(argmax right among those) | stops: n, mean P(eos), argmax right |")
    print("|---|---|---|---|---|")
    for path in a.models.split(","):
        m = HSAModel.from_pretrained(path).eval()
        S = m.cfg.chunk_size
        opts = task_opts(vt_hops=a.vt_hops, vt_trail=a.vt_trail)
        # names given -> [go on, stop]: n, sum P, right, next link retrieved, right among retrieved
        stats = defaultdict(lambda: [[0, 0.0, 0, 0, 0], [0, 0.0, 0, 0, 0]])
        for s, spans, u in family_samples(a.seed, corpus, "vt", a.L, S, a.n, a.tail, opts):
            toks = s.tokens
            with torch.no_grad():
                out = m(torch.from_numpy(toks)[None], upper_start=u, return_intermediates=True)
            logits, topk = out["logits"][0], out["topk_idx"][0][0]  # topk: first HSA layer [T', Hm, K]
            sup = dict(s.sup)
            st, en = spans[0]
            names = 0
            for t in range(st + 1, en):  # position t predicts toks[t + 1]
                nxt = int(toks[t + 1])
                # the decision: after a name's last byte (' ' goes on), or with --vt-trail after its space
                # (a letter goes on)
                decides = int(toks[t]) == 32 if a.vt_trail else nxt in (32, D.EOS)
                if not decides:
                    continue
                names += 1
                p = torch.softmax(logits[t - u].float(), -1)
                stop = nxt == D.EOS
                arg = int(p.argmax())
                rec = stats[names][1 if stop else 0]
                rec[0] += 1
                rec[1] += float(p[D.EOS])
                right = int(arg == D.EOS) if stop else int(arg != D.EOS if a.vt_trail else arg == 32)
                rec[2] += right
                if not stop:  # the next link: the chunks supervised where the next name's first byte is predicted
                    got = set(topk[t - u].reshape(-1).tolist())
                    if any(c in got for c in sup.get(t if a.vt_trail else t + 1, [])):
                        rec[3] += 1
                        rec[4] += right
        for k in sorted(stats):
            go, sp = stats[k]
            ret = "%d/%d (%d/%d)" % (go[3], go[0], go[4], go[3]) if go[0] else "-"
            print("| %s | %d | %s | %s | %s |" % (path, k, cell(go), ret, cell(sp)), flush=True)


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
