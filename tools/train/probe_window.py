#!/usr/bin/env python3
"""Probe: does the shipped model copy through its 128-token sliding window?  (CPU, read-only)

Three measurements on an exported model (default models/hsadb-small), fresh random strings, fixed seeds:

 a. In-window induction.  Corpus filler; a random string X of 8-12 bytes ([a-z0-9]) at position s1;
    after a gap of G filler bytes X reappears at s2 = s1 + len(X) + G, and we score, teacher-forced,
    the prediction of X[2:] (positions s2+1 .. s2+len-2).  The copy distance is G + len(X) - 1, so
    the source byte is in the window when G + len(X) <= 128.  Each predicted byte is tagged by where
    its source byte lies at the predicting position t: "cur" = the chunk still incomplete at t (only
    the window can copy it), "done" = a completed chunk (HSA can retrieve it; the window too if in
    range), and by in/out of the window.  Run twice: the full model, and the model with every HSA
    output forced to 0 ("noHSA": the memory is built with 0 chunks), i.e. the window path alone.
 b. The eval's needle format (data.eval_sample, niah-number, the haystacks of eval_tasks.py --dists)
    at dist 0/4/16/64, L=1024 (a multiple of 64: the same chunk phase of <answer> as the eval's
    L=4096), plus a "phase sweep" at dist 0 with L = 1024-k, k uniform in 0..63, which moves the chunk
    grid under the same kind of haystack so that the value is entirely in the incomplete chunk, straddles
    the boundary or lies in complete chunks.  Full model and noHSA.
 c. Attention of the window layers (every Attention with a window: lower.*, upper.g.hsa.attn (the SWA
    sub-block of the HSA layer), upper.g.swa.0) at the answer positions: mean probability mass on the
    source byte (the value byte being predicted) and on the whole value, per layer and head; and for
    a few dist-0 failures, the top-3 attended offsets per head of the upper window layers at <answer>
    and at the first value byte.

The upper half runs from upper_start = first probed position - 4*127 (exact: the 4 upper window layers
reach back 508 tokens), as the engine does with its last-tokens tail.  HSA is computed with a dense
matmul version of hsa_model.hsa_attend (same math; checked against the original at start-up).

  /usr/bin/python3 tools/train/probe_window.py --json /tmp/probe_window.json   # ~8 min on 2 CPU cores
  ... --digit-gaps 8,32,64,120,200     # part a again with digit strings (+3 min)
  ... --parts b                        # only the needle-format tables (~2.5 min)
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import hsa_model as HM  # noqa: E402
from hsa_model import HSAModel, EOS, QUERY, BOS, apply_rope, rope_cos_sin  # noqa: E402
import data as D  # noqa: E402

W_REACH = 4 * 127  # receptive field of the 4 upper window layers


# ---------------------------------------------------------------------------------------------
# a faster, equivalent HSA (the gather of the reference materialises [T,Hm,K,S,dh])

def hsa_attend_dense(q, kmem, vmem, idx, w):
    B, T, H, dh = q.shape
    C, S, Hm = kmem.shape[1], kmem.shape[2], kmem.shape[3]
    G = H // Hm
    sd = HM._stat_dtype(q.dtype)
    km = kmem.permute(0, 3, 1, 2, 4).reshape(B, Hm, C * S, dh).to(sd)
    vm = vmem.permute(0, 3, 1, 2, 4).reshape(B, Hm, C * S, dh).to(sd)
    qg = q.reshape(B, T, Hm, G, dh).to(sd)
    a = torch.einsum("btmgd,bmnd->btmgn", qg, km) * (1.0 / math.sqrt(dh))
    p = torch.softmax(a.view(B, T, Hm, G, C, S), -1)
    wd = torch.zeros(B, T, Hm, C, dtype=sd)
    valid = (idx >= 0).to(sd)
    wd.scatter_add_(-1, idx.clamp(min=0), w.to(sd) * valid)
    p = p * wd[:, :, :, None, :, None]
    O = torch.einsum("btmgn,bmnd->btmgd", p.reshape(B, T, Hm, G, C * S), vm)
    return O.reshape(B, T, H * dh)


# ---------------------------------------------------------------------------------------------
# attention capture: window layers store their input; probabilities are recomputed on demand

class Capture:
    def __init__(self, model):
        self.on = False
        self.store = {}
        self.layers = []
        self.mods = {}
        for name, mod in model.named_modules():
            if isinstance(mod, HM.Attention) and not name.startswith("encoder"):
                self.layers.append(name)
                self.mods[name] = mod
                mod.register_forward_hook(self._hook(name))

    def _hook(self, name):
        def fn(mod, inputs, output):
            if self.on:
                h, pos0, window = inputs
                self.store[name] = (h.detach(), int(pos0), window)
        return fn

    @torch.no_grad()
    def probs(self, name, b, ts):
        """attention probabilities [len(ts), H, W] of layer `name`, batch row b, at global positions
        ts; returns (P, key global positions [len(ts), W]) (-1 where masked)."""
        mod = self.mods[name]
        h, pos0, W = self.store[name]
        lo0 = max(0, min(ts) - pos0 - W + 1)
        hi0 = max(ts) - pos0 + 1
        hh = h[b:b + 1, lo0:hi0]
        n0 = hh.shape[1]
        q = mod.q_norm(mod.q(hh).view(1, n0, mod.H, mod.dh))
        k = mod.k_norm(mod.k(hh).view(1, n0, mod.Hk, mod.dh))
        cos, sin = rope_cos_sin(pos0 + lo0, n0, mod.dh, mod.theta, q.dtype, q.device)
        q = apply_rope(q, cos, sin)[0]
        k = apply_rope(k, cos, sin)[0].repeat_interleave(mod.H // mod.Hk, dim=1)  # [n0,H,dh]
        P = torch.zeros(len(ts), mod.H, W)
        kpos = torch.full((len(ts), W), -1, dtype=torch.long)
        for i, t in enumerate(ts):
            tl = t - pos0 - lo0
            lo = max(0, t - pos0 - W + 1) - lo0
            kk = k[lo:tl + 1]  # [n,H,dh]
            a = torch.einsum("hd,nhd->hn", q[tl], kk) / math.sqrt(mod.dh)
            p = torch.softmax(a.float(), -1)
            n = kk.shape[0]
            P[i, :, W - n:] = p
            kpos[i, W - n:] = torch.arange(lo, tl + 1) + pos0 + lo0
        return P, kpos


def run(model, cap, toks, u, hsa=True, capture=False):
    """toks LongTensor [B,T]; returns log-probs [B,T-u,V] (fp32)."""
    orig = model.build_memory
    if not hsa:
        model.build_memory = lambda x_mid, n_chunks=None: orig(x_mid, 0)
    cap.on = capture
    try:
        with torch.no_grad():
            out = model(toks, upper_start=u)
    finally:
        model.build_memory = orig
        cap.on = False
    return F.log_softmax(out["logits"].float(), -1)


# ---------------------------------------------------------------------------------------------

ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"


def make_induction(rng, corpus, T, G, alphabet=ALNUM):
    n = rng.randint(8, 12)
    X = [ord(c) for c in (rng.choice(alphabet) for _ in range(n))]
    s2 = T - 124 + rng.randint(0, 63)  # random chunk phase of the copy
    s1 = s2 - G - n
    assert s1 >= 2
    toks = [BOS] + corpus.slice(rng, T - 1).tolist()
    for s in (s1, s2):
        toks[s - 1] = 32
        toks[s:s + n] = X
        toks[s + n] = 32
    # (t, target, source position) for X[2:]
    items = [(s2 + j - 1, X[j], s1 + j) for j in range(2, n)]
    return np.array(toks, dtype=np.int64), items, dict(n=n, s1=s1, s2=s2, G=G)


def tag(t, src, S=64, W=128):
    where = "done" if src // S < t // S else "cur"
    inwin = (t - src) <= W - 1
    return where, inwin


def value_pos(toks, v):
    """start of the last occurrence of value bytes v before the first <query>"""
    t = toks.tolist()
    qpos = t.index(QUERY)
    vb = list(v.encode())
    for k in range(qpos - len(vb), -1, -1):
        if t[k:k + len(vb)] == vb:
            return k
    raise ValueError("value not found")


def mean(xs):
    return float(np.mean(xs)) if len(xs) else float("nan")


def fmt(x, p=2):
    return "  -  " if x != x else ("%.*f" % (p, x))


def attn_stats(cap, b, items, vspan, acc, keys=None):
    """items: [(t, target, src)]; adds per (layer, head) mass on src and on the value span vspan
    (start, end) to acc[key][layer] (lists of [H] arrays); keys: per item (None: acc is one dict)."""
    ts = [t for t, _, _ in items]
    for name in cap.layers:
        P, kpos = cap.probs(name, b, ts)
        for i, (t, _, src) in enumerate(items):
            m_src = (P[i] * (kpos[i] == src).float()[None]).sum(-1)
            inspan = ((kpos[i] >= vspan[0]) & (kpos[i] < vspan[1])).float()
            m_span = (P[i] * inspan[None]).sum(-1)
            m_prev = (P[i] * (kpos[i] == t - 1).float()[None]).sum(-1)
            dst = acc if keys is None else acc[keys[i]]
            dst.setdefault(name, {"src": [], "span": [], "prev": []})
            dst[name]["src"].append(m_src.numpy())
            dst[name]["span"].append(m_span.numpy())
            dst[name]["prev"].append(m_prev.numpy())


def print_attn_table(title, accs):
    """accs: {label: acc dict}; prints, per layer, the head with the largest mean mass on the source
    byte and its value, plus the largest head mass on the whole value span."""
    print("\n" + title)
    labels = list(accs)
    print("%-18s" % "layer" + "".join("| %-32s" % l for l in labels))
    print("%-18s" % "" + "".join("| %-32s" % "best head: src / span / prev" for _ in labels))
    layers = next(iter(accs.values())).keys()
    for name in layers:
        row = "%-18s" % name
        for l in labels:
            a = accs[l].get(name)
            if not a or not a["src"]:
                row += "| %-32s" % "-"
                continue
            src = np.mean(a["src"], 0)
            span = np.mean(a["span"], 0)
            prev = np.mean(a["prev"], 0)
            h, hs, hp = int(src.argmax()), int(span.argmax()), int(prev.argmax())
            row += "| %-32s" % ("h%d %.2f / h%d %.2f / h%d %.2f" % (h, src[h], hs, span[hs], hp, prev[hp]))
        print(row)


# ---------------------------------------------------------------------------------------------

def part_a(model, cap, corpus, gaps, n, seed, T, bs, alphabet="alnum"):
    alph = {"alnum": ALNUM, "digits": "0123456789"}[alphabet]
    print("\n=== a. in-window induction: X (8-12 bytes, %s) ... G filler bytes ... X[:2] -> X[2:] "
          "(T=%d, n=%d per G, teacher-forced) ===" % (alphabet, T, n))
    res = {}
    attn_acc = {"cur": {}, "done, in win": {}, "out of win": {}}
    for G in gaps:
        rng = random.Random(seed * 1000 + G + (0 if alphabet == "alnum" else 500))
        samples = [make_induction(rng, corpus, T, G, alph) for _ in range(n)]
        rec = {"full": [], "noHSA": []}
        for i0 in range(0, n, bs):
            chunk = samples[i0:i0 + bs]
            u = max(0, min(it[0] for s in chunk for it in s[1][:1]) - W_REACH)
            x = torch.from_numpy(np.stack([s[0] for s in chunk]))
            for mode in ("full", "noHSA"):
                lp = run(model, cap, x, u, hsa=(mode == "full"), capture=(mode == "full"))
                for b, (toks, items, meta) in enumerate(chunk):
                    for (t, tgt, src) in items:
                        where, inwin = tag(t, src)
                        row = lp[b, t - u]
                        rec[mode].append(dict(acc=int(row.argmax()) == tgt, lp=float(row[tgt]), where=where,
                                              inwin=inwin, sample=i0 + b))
                    if mode == "full":
                        keys = []
                        for (t, tgt, src) in items:
                            where, inwin = tag(t, src)
                            keys.append("cur" if where == "cur" else ("done, in win" if inwin else "out of win"))
                        attn_stats(cap, b, items, (meta["s1"], meta["s1"] + meta["n"]), attn_acc, keys)
        res[G] = rec
    # table
    hdr = ("%-5s %-9s %-5s | %-22s | %-22s | %-13s | %-13s | %-13s" %
           ("G", "dist", "%cur", "full: acc / logp", "noHSA: acc / logp", "full cur", "full done-win",
            "full out-win"))
    print(hdr)
    print("-" * len(hdr))
    summary = {}
    for G, rec in res.items():
        f, z = rec["full"], rec["noHSA"]
        ncur = sum(r["where"] == "cur" for r in f)
        sel = lambda rs, c: [r["acc"] for r in rs if c(r)]
        cur = sel(f, lambda r: r["where"] == "cur")
        donew = sel(f, lambda r: r["where"] == "done" and r["inwin"])
        outw = sel(f, lambda r: not r["inwin"])
        print("%-5d %-9s %-5.2f | %5.3f / %6.2f         | %5.3f / %6.2f         | %-13s | %-13s | %-13s" % (
            G, "%d+len-1" % G, ncur / len(f), mean([r["acc"] for r in f]), mean([r["lp"] for r in f]),
            mean([r["acc"] for r in z]), mean([r["lp"] for r in z]),
            "%s (%d)" % (fmt(mean(cur), 3), len(cur)), "%s (%d)" % (fmt(mean(donew), 3), len(donew)),
            "%s (%d)" % (fmt(mean(outw), 3), len(outw))))
        summary[G] = dict(
            n_samples=n, n_bytes=len(f), frac_cur=ncur / len(f),
            full_acc=mean([r["acc"] for r in f]), full_logp=mean([r["lp"] for r in f]),
            noHSA_acc=mean([r["acc"] for r in z]), noHSA_logp=mean([r["lp"] for r in z]),
            full_acc_cur=mean(cur), full_acc_done_inwin=mean(donew), full_acc_outwin=mean(outw),
            noHSA_acc_cur=mean(sel(z, lambda r: r["where"] == "cur")),
            noHSA_acc_done_inwin=mean(sel(z, lambda r: r["where"] == "done" and r["inwin"])),
            noHSA_acc_outwin=mean(sel(z, lambda r: not r["inwin"])),
            full_logp_cur=mean([r["lp"] for r in f if r["where"] == "cur"]),
            full_logp_done_inwin=mean([r["lp"] for r in f if r["where"] == "done" and r["inwin"]]))
    # pooled by source location
    print("\npooled over G (per predicted byte): source location at the predicting position")
    print("%-26s | %-8s | %-16s | %-16s" % ("source", "bytes", "full acc / logp", "noHSA acc / logp"))
    pooled = {}
    for lab, c in [("cur chunk (window only)", lambda r: r["where"] == "cur"),
                   ("done chunk, in window", lambda r: r["where"] == "done" and r["inwin"]),
                   ("done chunk, out of window", lambda r: not r["inwin"])]:
        f = [r for rec in res.values() for r in rec["full"] if c(r)]
        z = [r for rec in res.values() for r in rec["noHSA"] if c(r)]
        print("%-26s | %-8d | %5.3f / %6.2f   | %5.3f / %6.2f" % (
            lab, len(f), mean([r["acc"] for r in f]), mean([r["lp"] for r in f]),
            mean([r["acc"] for r in z]), mean([r["lp"] for r in z])))
        pooled[lab] = dict(bytes=len(f), full_acc=mean([r["acc"] for r in f]), full_logp=mean([r["lp"] for r in f]),
                           noHSA_acc=mean([r["acc"] for r in z]), noHSA_logp=mean([r["lp"] for r in z]))
    print_attn_table("attention (full model) at the copy positions: mean mass on the source byte X[j] "
                     "(induction target) / on the first X", attn_acc)
    return dict(per_gap=summary, pooled=pooled)


def eval_item(rng, corpus, L, dist):
    toks, a0, na, chunks, v = D.eval_sample(rng, corpus, L, 64, dist=dist)
    vs = value_pos(toks, v)
    tgts = list(v.encode()) + [EOS]
    items = []
    for j, tgt in enumerate(tgts):
        t = a0 + j
        src = vs + j if j < len(v) else vs + len(v)  # the <eos> "copies" the '.' after the value
        items.append((t, tgt, src))
    ca = a0 // 64
    if vs // 64 == ca:
        cls = "incomplete"
    elif (vs + len(v) - 1) // 64 >= ca:
        cls = "straddle"
    else:
        cls = "complete"
    return toks, items, dict(a0=a0, v=v, vs=vs, cls=cls, dist=dist, L=L, off=a0 % 64,
                             d_ans=a0 - vs)


def score_eval(model, cap, samples, want_attn=True):
    """one sample at a time (lengths differ); returns per-sample records."""
    out = []
    for toks, items, meta in samples:
        t0 = items[0][0]
        u = max(0, t0 - W_REACH)
        x = torch.from_numpy(toks)[None]
        rec = dict(meta, _toks=toks, _items=items)
        for mode in ("full", "noHSA"):
            lp = run(model, cap, x, u, hsa=(mode == "full"), capture=(mode == "full" and want_attn))
            pred = [int(lp[0, t - u].argmax()) for t, _, _ in items]
            rec[mode] = dict(exact=all(p == tg for p, (_, tg, _) in zip(pred, items)),
                             first=pred[0] == items[0][1],
                             acc=mean([p == tg for p, (_, tg, _) in zip(pred, items)]),
                             logp=mean([float(lp[0, t - u, tg]) for t, tg, _ in items]),
                             pred="".join(chr(p) if 32 <= p < 127 else "<%d>" % p for p in pred),
                             byte_ok=[(p == tg, tag(t, src)[0]) for p, (t, tg, src) in zip(pred, items)])
            if mode == "full" and want_attn:
                rec["attn"] = {}
                attn_stats(cap, 0, items[:-1], (meta["vs"], meta["vs"] + len(meta["v"])), rec["attn"])
        out.append(rec)
    return out


def eval_table(title, groups):
    print("\n" + title)
    hdr = "%-22s | %-3s | %-30s | %-30s | %-13s" % (
        "case", "n", "full: exact/first/tokacc/logp", "noHSA: exact/first/tokacc/logp", "full byteacc cur/done")
    print(hdr)
    print("-" * len(hdr))
    summ = {}
    for lab, recs in groups.items():
        if not recs:
            continue
        row = "%-22s | %-3d" % (lab, len(recs))
        d = {"n": len(recs)}
        for mode in ("full", "noHSA"):
            ex = sum(r[mode]["exact"] for r in recs)
            fi = sum(r[mode]["first"] for r in recs)
            ta = mean([r[mode]["acc"] for r in recs])
            lpm = mean([r[mode]["logp"] for r in recs])
            row += " | %2d/%-2d %2d/%-2d %5.3f %6.2f       " % (ex, len(recs), fi, len(recs), ta, lpm)
            d[mode] = dict(exact=ex, first=fi, tokacc=ta, logp=lpm)
        bc = [ok for r in recs for ok, w in r["full"]["byte_ok"] if w == "cur"]
        bd = [ok for r in recs for ok, w in r["full"]["byte_ok"] if w == "done"]
        row += " | %s/%s" % (fmt(mean(bc)), fmt(mean(bd)))
        d["byteacc_cur"], d["byteacc_done"] = mean(bc), mean(bd)
        print(row)
        summ[lab] = d
    return summ


def attn_from_recs(recs):
    acc = {}
    for r in recs:
        for name, a in r.get("attn", {}).items():
            acc.setdefault(name, {"src": [], "span": [], "prev": []})
            for k in ("src", "span", "prev"):
                acc[name][k] += a[k]
    return acc


def part_c(model, cap, toks, items, meta, upper_only=True, topk=3):
    """top-3 attended offsets per head at <answer> and at the first value byte."""
    run(model, cap, torch.from_numpy(toks)[None], max(0, items[0][0] - W_REACH), capture=True)
    vs, v = meta["vs"], meta["v"]
    t_list = toks.tolist()

    def label(p):
        if vs <= p < vs + len(v):
            return "V%d" % (p - vs)
        c = t_list[p]
        ch = chr(c) if 32 <= c < 127 else {256: "<bos>", 257: "<eos>", 258: "<q>", 259: "<a>"}.get(c, "?")
        return repr(ch)[1:-1] if len(ch) == 1 else ch

    print("\n-- dist-%d sample: value %r at %d..%d, <answer> at %d (chunk offset %d, value %s); full pred %r, "
          "noHSA pred %r" % (meta["dist"], v, vs, vs + len(v) - 1, meta["a0"], meta["a0"] % 64, meta["cls"],
                             meta["full"]["pred"], meta["noHSA"]["pred"]))
    for (t, tgt, src), what in zip(items[:2], ["<answer> (target V0)", "first value byte (target V1)"]):
        print("   at %s, t=%d, source byte V%d at offset -%d:" % (what, t, src - vs, t - src))
        for name in cap.layers:
            if upper_only and not name.startswith("upper"):
                continue
            P, kpos = cap.probs(name, 0, [t])
            cells = []
            hit = []
            for h in range(P.shape[1]):
                top = torch.topk(P[0, h], topk)
                cells.append(" ".join("-%d%s:%.2f" % (t - int(kpos[0, j]), "[" + label(int(kpos[0, j])) + "]",
                                                       float(pv)) for pv, j in zip(top.values, top.indices)))
                inv = (kpos[0] >= vs) & (kpos[0] < vs + len(v))
                hit.append(float((P[0, h] * inv.float()).sum()))
            print("     %-16s value mass per head: %s" % (name, " ".join("%.2f" % x for x in hit)))
            for h, c in enumerate(cells):
                print("       h%d %s" % (h, c))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/hsadb-small")
    ap.add_argument("--corpus", default=".carry/corpus.txt.gz")
    ap.add_argument("--gaps", default="2,8,16,32,64,100,120,200,400")
    ap.add_argument("--digit-gaps", default="",
                    help="part a again with digit strings (like the needle values) at these gaps, e.g. "
                         "8,32,64,120,200 (default '': skip)")
    ap.add_argument("--n", type=int, default=30, help="samples per gap / per eval case")
    ap.add_argument("--n-sweep", type=int, default=60, help="samples of the dist-0 phase sweep")
    ap.add_argument("--dists", default="0,4,16,64")
    ap.add_argument("--T", type=int, default=1024)
    ap.add_argument("--bs", type=int, default=6)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-show", type=int, default=3, help="dist-0 failures shown in part c")
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t_start = time.time()
    model = HSAModel.from_pretrained(a.model).eval()
    cap = Capture(model)
    corpus = D.Corpus(a.corpus if a.corpus and os.path.exists(a.corpus) else None)
    print("model %s (%d params), corpus %s, seed %d, window layers: %s" % (
        a.model, model.num_params(), a.corpus if os.path.exists(a.corpus) else "(built-in NOISE text)",
        a.seed, ", ".join(cap.layers)))

    # the dense HSA must match the reference
    rng = random.Random(1)
    toks = torch.from_numpy(D.eval_sample(rng, corpus, 640, 64, dist=0)[0])[None]
    with torch.no_grad():
        ref = model(toks, upper_start=100)["logits"]
        HM.hsa_attend = hsa_attend_dense
        new = model(toks, upper_start=100)["logits"]
    print("dense HSA vs reference: max |dlogit| = %.2e" % float((ref - new).abs().max()))

    print("QKNorm logit cap per window layer, sqrt(dh)*max_i(g_q,i*g_k,i) (mean_i): " + ", ".join(
        "%s %.1f (%.1f)" % (nm, math.sqrt(md.dh) * float((md.q_norm.weight * md.k_norm.weight).max()),
                            math.sqrt(md.dh) * float((md.q_norm.weight * md.k_norm.weight).mean()))
        for nm, md in cap.mods.items()))
    result = {}
    if "a" in a.parts:
        result["a"] = part_a(model, cap, corpus, [int(g) for g in a.gaps.split(",")], a.n, a.seed, a.T, a.bs)
        print("[%.0fs]" % (time.time() - t_start), flush=True)
        if a.digit_gaps:
            result["a_digits"] = part_a(model, cap, corpus, [int(g) for g in a.digit_gaps.split(",")], a.n,
                                        a.seed, a.T, a.bs, alphabet="digits")
        print("[%.0fs]" % (time.time() - t_start), flush=True)
    if "b" in a.parts or "c" in a.parts:
        groups = {}
        for d in [int(x) for x in a.dists.split(",")]:
            rng = random.Random(a.seed * 7919 + d)
            groups["dist %d (L=%d)" % (d, a.T)] = score_eval(
                model, cap, [eval_item(rng, corpus, a.T, d) for _ in range(a.n)])
        rng = random.Random(a.seed * 104729)
        sweep = score_eval(model, cap, [eval_item(rng, corpus, a.T - rng.randint(0, 63), 0)
                                        for _ in range(a.n_sweep)])
        d0 = groups["dist 0 (L=%d)" % a.T]
        for cls in ("incomplete", "straddle", "complete"):
            groups["  dist 0: %s" % cls] = [r for r in d0 if r["cls"] == cls]
        for cls in ("incomplete", "straddle", "complete"):
            groups["sweep d0: %s" % cls] = [r for r in sweep if r["cls"] == cls]
        print("\n=== b. eval needle format (data.eval_sample niah-number, teacher-forced value + <eos>) ===")
        print("dist-%d haystacks at L=%d: <answer> offset in its chunk %s; value start -> <answer> %s bytes; "
              "classes %s" % (0, a.T, sorted(set(r["off"] for r in d0)),
                              "%d..%d" % (min(r["d_ans"] for r in d0), max(r["d_ans"] for r in d0)),
                              {c: sum(r["cls"] == c for r in d0) for c in ("incomplete", "straddle", "complete")}))
        result["b"] = eval_table("exact = value+<eos> all right (as eval_tasks.py); first = first value byte; "
                                 "tokacc/logp per answer token; byteacc by source chunk (cur = incomplete)",
                                 groups)
        accs = {lab: attn_from_recs(recs) for lab, recs in groups.items()
                if lab.startswith("dist 0") or lab.startswith("dist 64") or lab.startswith("sweep")}
        print_attn_table("attention (full model) at answer positions predicting value byte j: mean mass on the "
                         "needle's value byte j / on the whole value (best head per layer)", accs)
        result["b_attn"] = {lab: {name: dict(src=np.mean(v["src"], 0).round(3).tolist(),
                                             span=np.mean(v["span"], 0).round(3).tolist())
                                  for name, v in acc.items()} for lab, acc in accs.items()}
        print("[%.0fs]" % (time.time() - t_start), flush=True)
        if "c" in a.parts:
            print("\n=== c. dist-0 failures: top-3 attended offsets per head of the upper window layers "
                  "(-offset[token]:prob; V<i> = value byte i) ===")
            fails = [r for r in d0 + sweep if not r["full"]["exact"] and r["cls"] == "incomplete"]
            fails += [r for r in d0 if not r["full"]["exact"] and r["cls"] != "incomplete"]
            ok = [r for r in groups["dist 64 (L=%d)" % a.T] if r["full"]["exact"]]
            shown = fails[:a.n_show]
            for r in shown:
                part_c(model, cap, r["_toks"], r["_items"], r)
            if ok:
                print("\n(for contrast, a dist-64 success: the value is in a completed chunk and also in the window)")
                part_c(model, cap, ok[0]["_toks"], ok[0]["_items"], ok[0])
    print("\ntotal %.0fs" % (time.time() - t_start))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=1, default=lambda o: o if not isinstance(o, np.generic) else o.item())
        print("wrote", a.json)


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
