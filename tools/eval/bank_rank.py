#!/usr/bin/env python3
"""Where a needle's chunk ranks among the chunks of the whole corpus: a CPU stand-in for the 16M
single-needle evaluation (a 16M-token haystack is the 15.9 MB corpus, ~248K chunks of 64 bytes).
Session 12: step 49,860's needle was first in 280 of 300 samples (93.3%), where the GPU engine
answered 109 of 117 varied 16M haystacks (93.2%); docs/evaluation.md, "A CPU stand-in for 16M".

Why it works: a chunk's landmark depends only on its own 64 bytes and the 256 before them (two
sliding-window layers of 128, then the chunk encoder; RoPE is relative), and the first HSA
layer's retrieval query only on the text before it. So the corpus's landmarks are computed once
(the "bank") and each single-needle sample (data.eval_sample, --length tokens, default 2K, the
needle at a random depth) is scored as if the bank were the rest of its haystack: at <answer>
(where the first digit is chosen), per memory head, the rank of the needle's best chunk among the
sample's own chunks plus a bank region of each size in --sizes (a random contiguous region; "all"
= the whole bank), and its share of the top-k mixture (softmax over the k best scores). The second
HSA layer's query depends on what the first one retrieved, so only the first layer is scored.

The bank comes from an hsadb memory of the corpus (--bank-db: the engine's stored bf16 landmarks,
read with LMDB's mdb_dump; the append took 22 minutes on the 2-core workstation) or is computed
here in PyTorch (no --bank-db; about half the engine's speed: 3.5K against 6.7K tokens/s on one
thread, measured on 256K tokens). Then 0.65-1.1 s per sample (the model's forward pass).

  build/hsadb --db /tmp/bank --nosync create c && build/hsadb --db /tmp/bank --nosync append c .carry/corpus.txt
  PYTHONHASHSEED=0 /usr/bin/python3 tools/eval/bank_rank.py --model models/hsadb-small --bank-db /tmp/bank --n 300 --hubs 25
  ... --model A --bank-db DB_A --model B --bank-db DB_B      # the same samples for both

(The generated samples depend on the hash seed; the script runs under PYTHONHASHSEED=0 whatever
it was started with: data.pin_hash_seed.) Prints per model and bank
size: top-1 (the needle's chunk first in every memory head), in top-k (in every head's k), the
needle's mean share of the mixture and the one-sided 95% lower bound of top-1; --hubs N lists the
bank chunks that outranked the needle in the most samples; --out FILE writes one JSON line per
model, size and sample.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
from hsa_model import HSAModel  # noqa: E402

def context_bytes(cfg):
    """How many bytes before a chunk its landmark depends on: the reach of the lower sliding-window
    layers (2 x 128 = 256 here); the chunk encoder sees only the chunk itself."""
    return cfg.num_lower_layers * cfg.sliding_window


def memory_windows(model, toks, window):
    """The memory of a token sequence too long for one pass of the lower layers, window by window:
    yields (c0, c1, mem) for chunks c0..c1-1 of each window of `window` tokens (mem as
    HSAModel.build_memory's, batch 1). Each window is run with one chunk more than the landmarks'
    context before it (320 tokens here), which gives its chunks what one pass over all of toks
    gives them (tools/eval/test_trace_answer.py checks it). toks: a 1-D sequence of token ids
    (numpy array or list); call under torch.no_grad()."""
    S = model.cfg.chunk_size
    warm = context_bytes(model.cfg) + S
    dev = next(model.parameters()).device
    n = len(toks) // S
    for c0 in range(0, n, window // S):
        c1 = min(n, c0 + window // S)
        s = max(0, c0 * S - warm)
        x = model.lower_half(torch.from_numpy(np.asarray(toks[s: c1 * S], dtype=np.int64))[None].to(dev))
        yield c0, c1, model.build_memory(x[:, c0 * S - s:])


def bank_landmarks(model, corpus, window, limit=0, log=print):
    """Landmarks of the corpus's chunks (the bytes as tokens, chunks at multiples of S) ->
    float32 [N, Hm, dr], computed window by window (memory_windows)."""
    cfg = model.cfg
    data = corpus.data[: limit or len(corpus.data)]
    n = len(data) // cfg.chunk_size
    out = np.zeros((n, cfg.num_memory_heads, cfg.retrieval_dim), dtype=np.float32)
    t0 = time.time()
    with torch.no_grad():
        for c0, c1, mem in memory_windows(model, data, window):
            out[c0:c1] = mem["landmarks"][0].float().cpu().numpy()
            if c0 // (window // cfg.chunk_size) % 50 == 0:
                log("  bank %d/%d chunks (%.0f s)" % (c1, n, time.time() - t0))
    return out


def engine_landmarks(db, name, model_path):
    """The landmarks of memory `name` in the hsadb database `db` (the corpus appended with the
    engine: `hsadb --db DB --model MODEL create NAME; hsadb ... append NAME .carry/corpus.txt`,
    about 2x faster than bank_landmarks on the CPU, and the engine's stored bf16 values), read with
    LMDB's mdb_dump (storage/store.h has the record layouts) -> float32 [N, Hm, dr]."""
    import hashlib
    import struct
    import subprocess

    def dump(sub):
        try:
            txt = subprocess.run(["mdb_dump", "-s", sub, db], check=True, capture_output=True, text=True).stdout
        except FileNotFoundError:
            sys.exit("bank_rank: mdb_dump not found (Debian package lmdb-utils; scripts/install-deps.sh)")
        except subprocess.CalledProcessError as e:
            sys.exit("bank_rank: mdb_dump -s %s %s failed: %s" % (sub, db, e.stderr.strip()))
        lines = txt.split("HEADER=END\n", 1)[1].split("DATA=END", 1)[0].split()
        return [(bytes.fromhex(lines[i]), bytes.fromhex(lines[i + 1])) for i in range(0, len(lines), 2)]

    rec = dict(dump("memories")).get(name.encode())
    if rec is None:
        sys.exit("bank_rank: no memory %r in %s" % (name, db))
    mid, dtype = struct.unpack_from("<II", rec)
    fp = rec[8:40]
    S, Hm, dh, dr = struct.unpack_from("<IIII", rec, 40)
    with open(os.path.join(model_path, "model.safetensors"), "rb") as f:
        if hashlib.sha256(f.read()).digest() != fp:
            sys.exit("bank_rank: memory %r of %s was written with another model than %s" % (name, db, model_path))
    width = Hm * dr * (2 if dtype == 0 else 4)
    recs = [struct.unpack(">IQ", k) + (v[:width],) for k, v in dump("landmarks")]  # (memory, chunk, landmark)
    recs = [(c, v) for m, c, v in recs if m == mid]
    if [c for c, _ in recs] != list(range(len(recs))):
        sys.exit("bank_rank: memory %r of %s does not hold chunks 0..n-1" % (name, db))
    vals = [v for _, v in recs]
    raw = np.frombuffer(b"".join(vals), dtype=np.uint16 if dtype == 0 else np.float32)
    if dtype == 0:  # bf16 -> float32
        raw = (raw.astype(np.uint32) << 16).view(np.float32)
    return raw.reshape(len(vals), Hm, dr).copy()


def sample_scores(model, toks, a0):
    """-> first HSA layer's query at a0 [Hm, dr] and the own chunks' scores there [Hm, C]."""
    with torch.no_grad():
        u = max(0, a0 - 2 * model.cfg.sliding_window)  # the upper layers from here: the first
        # HSA layer's own sliding-window attention (before its query) needs the window before a0
        dev = next(model.parameters()).device
        out = model(torch.from_numpy(toks[: a0 + 1])[None].to(dev), upper_start=u, return_scores=True,
                    compute_logits=False)
    return out["qr"][0][0, a0 - u].float(), out["scores"][0][0, a0 - u].float()


def write_hubs(path, corpus, S, ctx, intop, beat, n, limit, model):
    """The bank chunks that were in some head's top-k or above the needle, most often in the top-k first
    (ties: most often above the needle), as JSON:
    {"model", "samples", "chunk_size", "context", "hubs": [{"chunk", "in_topk", "beat", "text"}]};
    text = the chunk's S bytes with the ctx bytes before them (context_bytes), as latin-1 (one
    character per byte), so that a training sample can reproduce the chunk's landmark exactly."""
    order = sorted(set(intop) | set(beat), key=lambda c: (-intop.get(c, 0), -beat.get(c, 0), c))
    hubs = []
    for c in order:
        if len(hubs) >= limit:
            break
        if c * S < ctx:
            continue
        text = bytes(corpus.data[c * S - ctx: (c + 1) * S]).decode("latin-1")
        hubs.append(dict(chunk=c, in_topk=intop.get(c, 0), beat=beat.get(c, 0), text=text))
    with open(path, "w") as f:
        json.dump(dict(model=model, samples=n, chunk_size=S, context=ctx, hubs=hubs), f, indent=0)
    print("  %d hubs written to %s (in top-k of %d..%d of %d samples)" % (
        len(hubs), path, hubs[-1]["in_topk"] if hubs else 0, hubs[0]["in_topk"] if hubs else 0, n),
        file=sys.stderr)


def lower_bound(k, n, alpha=0.05):
    """one-sided Clopper-Pearson lower bound of k/n"""
    if n == 0 or k == 0:
        return 0.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        p = (lo + hi) / 2
        tail = sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k, n + 1))
        lo, hi = (p, hi) if tail < alpha else (lo, p)
    return lo


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, help="model directory (repeatable)")
    ap.add_argument("--n", type=int, default=200, help="needle samples")
    ap.add_argument("--length", type=int, default=2048, help="tokens per sample")
    ap.add_argument("--sizes", default="4096,16384,65536,all",
                    help="bank regions in chunks (16,384 chunks = 1M tokens; all = the corpus)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--corpus", default=None, help="corpus file (default: .carry/corpus.txt[.gz])")
    ap.add_argument("--window", type=int, default=8192, help="tokens per forward pass of the bank")
    ap.add_argument("--bank-limit", type=int, default=0, help="use only the corpus's first N bytes (tests)")
    ap.add_argument("--bank-db", action="append", default=[],
                    help="per --model, in order: an hsadb database whose memory --bank-memory holds the "
                         "corpus appended with that model (the engine's landmarks; default: computed here)")
    ap.add_argument("--bank-memory", default="c")
    ap.add_argument("--hubs", type=int, default=0,
                    help="also list the N bank chunks that outranked the needle in the most samples")
    ap.add_argument("--hubs-out", default="",
                    help="write the bank chunks that were in some head's top-k of the whole bank, or above "
                         "the needle, in the most samples as JSON (train.py --hubs-file): each with its 64 "
                         "bytes and the 256 before them (the landmark's whole context), counts of top-k and "
                         "of outranking the needle; needs 'all' in --sizes; with several --model, the first model's")
    ap.add_argument("--hubs-max", type=int, default=500, help="at most this many in --hubs-out")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--device", default="cpu", help="cpu, or cuda (float32 there too: on the H200 the "
                    "bank and 300 samples took 32 s, where the engine's append alone takes 22 minutes on 2 cores)")
    ap.add_argument("--out", default="", help="JSON lines, one per model, size and sample")
    a = ap.parse_args()
    if a.hubs_out and "all" not in a.sizes.split(","):
        sys.exit("bank_rank: --hubs-out ranks against the whole bank: add 'all' to --sizes")
    if a.threads:
        torch.set_num_threads(a.threads)
    corpus = D.Corpus(a.corpus)
    out = open(a.out, "w") if a.out else None
    for path in a.model:
        if not os.path.isfile(os.path.join(path, "model.safetensors")):
            sys.exit("bank_rank: %s/model.safetensors does not exist" % path)
    print("| model | bank | chunks | top-1 | in top-k | mean share | top-1 lower bound |")
    print("|---|---|---|---|---|---|---|")
    if a.bank_db and len(a.bank_db) != len(a.model):
        sys.exit("bank_rank: give one --bank-db per --model")
    for mi, path in enumerate(a.model):
        model = HSAModel.from_pretrained(path).eval().to(a.device)
        cfg = model.cfg
        K, S = cfg.chunk_topk, cfg.chunk_size
        t0 = time.time()
        if a.bank_db:
            bank = torch.from_numpy(engine_landmarks(a.bank_db[mi], a.bank_memory, path))
        else:
            bank = torch.from_numpy(bank_landmarks(model, corpus, a.window, a.bank_limit,
                                                   log=lambda m: print(m, file=sys.stderr)))
        bank = bank.to(a.device)
        N = bank.shape[0]
        print("  %s: bank of %d chunks in %.0f s" % (path, N, time.time() - t0), file=sys.stderr)
        sizes = [N if s == "all" else min(N, int(s)) for s in a.sizes.split(",")]
        rng = random.Random(a.seed)  # the same samples and regions for every model
        stats = {s: [0, 0, 0.0] for s in sizes}
        skipped = 0
        beat = {}  # bank chunk -> samples whose needle it outranked (whole bank)
        intop = {}  # bank chunk -> samples in which it was in some head's top-k of the whole bank
        for i in range(a.n):
            toks, a0, _, needle, _ = D.eval_sample(rng, corpus, a.length, S, kind="number")
            starts = [rng.randrange(0, N - s + 1) for s in sizes]
            C = a0 // S  # the chunks complete at <answer>
            needle = [c for c in needle if c < C]
            if not needle:  # the needle is still in the window (depth ~100%): not a retrieval case
                skipped += 1
                continue
            q, own = sample_scores(model, toks, a0)  # [Hm, dr], [Hm, C']
            own = own[:, :C]
            need = own[:, needle].amax(-1)  # [Hm]: the needle's best chunk
            allb = torch.einsum("md,nmd->mn", q, bank) / math.sqrt(cfg.retrieval_dim)  # [Hm, N]
            for s, st in zip(sizes, starts):
                sc = torch.cat([own, allb[:, st: st + s]], -1)  # [Hm, C + s]; the needle's are in own
                rank = (sc > need[:, None]).sum(-1)  # [Hm]
                top = sc.topk(K, -1).values  # [Hm, K]
                w = torch.softmax(top, -1)
                share = torch.where(rank < K, w.gather(-1, rank.clamp(max=K - 1)[:, None])[:, 0],
                                    torch.zeros_like(need))
                r = stats[s]
                r[0] += int(bool((rank == 0).all()))
                r[1] += int(bool((rank < K).all()))
                r[2] += float(share.mean())
                if s == N:  # the bank chunks that beat the needle in some head, for --hubs
                    for c in torch.nonzero((allb > need[:, None]).any(0)).flatten().tolist():
                        beat[c] = beat.get(c, 0) + 1
                    for c in set(allb.topk(K, -1).indices.flatten().tolist()):
                        intop[c] = intop.get(c, 0) + 1
                if out:
                    out.write(json.dumps(dict(model=path, bank=s, i=i, rank=rank.tolist(),
                                              share=[round(float(x), 4) for x in share])) + "\n")
        n = a.n - skipped
        if skipped:
            print("  %d of %d samples had the needle in the window (skipped)" % (skipped, a.n), file=sys.stderr)
        for s in sizes:
            t1, tk, sh = stats[s]
            print("| %s | %s | %d | %d/%d | %d/%d | %.3f | %.1f%% |" % (
                path, "all" if s == N else "%d" % s, s, t1, n, tk, n, sh / max(1, n), 100 * lower_bound(t1, n)))
        if a.hubs and N in sizes:
            print("\n%s: the bank chunks that outranked the needle most often (of %d samples; %d chunks did "
                  "at least once):" % (path, n, len(beat)))
            for c, k in sorted(beat.items(), key=lambda x: -x[1])[: a.hubs]:
                text = bytes(corpus.data[c * S: (c + 1) * S]).decode("ascii", "replace")
                print("  %4d  chunk %6d  %r" % (k, c, text))
            print()
        if a.hubs_out and mi == 0 and N in sizes:
            write_hubs(a.hubs_out, corpus, S, context_bytes(cfg), intop, beat, n, a.hubs_max, path)
        sys.stdout.flush()
    if out:
        out.close()


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
