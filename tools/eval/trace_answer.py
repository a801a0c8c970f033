#!/usr/bin/env python3
"""Trace answers through the reference model: which chunks each answer byte was read from.

Replays task haystacks of an eval_engine.py run (the same --tasks, one --length, --n and --seed:
one random stream, as eval_engine.py draws them) and, for the haystacks picked with --index,
runs the PyTorch reference teacher-forced on the expected answers. At every answer position it
prints the wanted byte, the model's three likeliest next bytes, and for each HSA layer (L) and
memory head (m) the three chunks with the most weight; then the chunks the needles lie in and the
text of every chunk that took at least --show-weight of some head's weight. The memory is built in
windows of 8K tokens (a 1M haystack fits in ~2 GB) and rounded to bf16, as the engine stores it.

  /usr/bin/python3 tools/eval/trace_answer.py --tasks vt --length 1048576 --n 20 --index 3,9,15
  # session 14: the three 1M vt misses of docs/eval/tasks-1m-gpu-engine-52998.jsonl, ~5 minutes per
  # 1M haystack on one core of the 2-core workstation (docs/evaluation.md, step 52,998)
  /usr/bin/python3 tools/eval/trace_answer.py --demo --index 0,5,17
  # the demo-needle probe's 4471 (right) and two of its misses (8628, 1214), a few seconds each

The sequence is the engine's: the haystack's bytes from position 0 (a memory's stream has no
<bos>), so chunk c holds bytes c*64 .. c*64+63 as in the engine (training samples start with <bos>,
one byte earlier on their grid). vt answers end with a space before <eos> (train.py --vt-trail, the
shipped model) unless --no-trail.
"""
import argparse
import os
import random
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
import eval_engine as E  # noqa: E402
from bank_rank import context_bytes, memory_windows  # noqa: E402
from hsa_model import HSAModel  # noqa: E402

WINDOW = 8192


def memory(model, toks):
    """The memory of every complete chunk of toks (bank_rank.memory_windows, joined)."""
    parts = [mem for _, _, mem in memory_windows(model, toks, WINDOW)]
    return {k: torch.cat([p[k] for p in parts], 1) for k in parts[0]}


def upper_reach(cfg):
    """How many positions before a token the upper half's output there depends on (besides the
    memory): one sliding window per attention layer of the upper half, num_upper_groups x (the HSA
    layer's own + swa_layers_per_group). Starting the upper pass that far before the answers gives
    them what the engine computes, whose query continues the whole stream."""
    return cfg.num_upper_groups * (1 + cfg.swa_layers_per_group) * (cfg.sliding_window - 1)


def upper_pass(model, toks, u):
    """Logits [T-u, V] of positions u..T-1 of toks, and per HSA layer the picks idx / weights w
    [T-u, Hm, K], with the memory of memory(): what model(toks, upper_start=u) computes, without
    running the lower layers over all of toks at once."""
    cfg = model.cfg
    W = cfg.sliding_window
    with torch.no_grad():
        mem = memory(model, toks)
        s = max(0, u - (context_bytes(cfg) + cfg.chunk_size))
        x = model.lower_half(torch.tensor(toks[s:])[None])[:, u - s:]
        idx, w = [], []
        for grp in model.upper:
            x, info = grp.hsa(x, u, mem)
            idx.append(info["idx"][0])
            w.append(info["w"][0])
            for layer in grp.swa:
                x = layer(x, u, W)
        logits = torch.nn.functional.linear(model.final_norm(x), model.lm_weight())[0]
    return logits, idx, w


def byte_name(t):
    return repr(chr(t)) if t < 256 else "<%d>" % t


def trace(model, hay, qas, spans, trail, top, show_weight):
    """hay: the haystack's bytes; qas: [(question, answer)] bytes; spans: the needles' (start, end)
    byte offsets in hay (printed with their chunks); trail: a space before each answer's <eos>."""
    cfg = model.cfg
    S = cfg.chunk_size
    toks, ans_pos = list(hay), []  # the engine's stream: no <bos>
    for q, a in qas:
        a = a + (b" " if trail else b"")
        toks += [D.QUERY] + list(q) + [D.ANSWER]
        ans_pos += list(range(len(toks) - 1, len(toks) + len(a)))  # positions predicting a and <eos>
        toks += list(a) + [D.EOS]
    u = max(0, ans_pos[0] - upper_reach(cfg))
    logits, idx, w = upper_pass(model, toks, u)
    for q, a in qas:
        print("  question %r, answer %r" % (q.decode("latin-1"), a.decode("latin-1")))
    strong = []
    for pos in ans_pos:
        r = pos - u
        pr = torch.softmax(logits[r].float(), -1)
        best = torch.topk(pr, top)
        heads = []
        for li in range(len(idx)):
            for hm in range(idx[li].shape[-2]):
                order = sorted(zip(w[li][r, hm].tolist(), idx[li][r, hm].tolist()), reverse=True)
                heads.append("L%dm%d " % (li, hm) + ",".join("%d(%.2f)" % (c, x_) for x_, c in order[:top] if c >= 0))
                strong += [c for x_, c in order if c >= 0 and x_ >= show_weight]
        print("  +%-3d want %-7s| %s | %s" % (pos - ans_pos[0], byte_name(toks[pos + 1]),
              " ".join("%s %.2f" % (byte_name(int(k)), float(v)) for v, k in zip(best.values, best.indices)),
              "  ".join(heads)))
    for st, en in spans:
        print("  needle in chunks %d-%d: %r" % (st // S, (en - 1) // S, bytes(toks[st:en]).decode("latin-1")))
    for c in sorted(set(strong)):
        print("  chunk %d: %r" % (c, bytes(t for t in toks[c * S:(c + 1) * S] if t < 256).decode("latin-1")))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="models/hsadb-small")
    ap.add_argument("--tasks", default="", help="the run's --tasks, in its order")
    ap.add_argument("--length", type=int, default=0, help="the run's (single) --lengths")
    ap.add_argument("--n", type=int, default=0, help="the run's --n")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--index", required=True, help="comma-separated haystack numbers (as eval_engine.py prints them), "
                    "or with --demo the values' numbers")
    ap.add_argument("--demo", action="store_true",
                    help="instead of a task run: probe_boundary.py --probe demo --seed 5's haystacks (the demo's archive "
                         "with the north gate's number replaced; value 0 is 4471 itself)")
    ap.add_argument("--task", default="", help="the task the indices belong to (default: the first of --tasks)")
    ap.add_argument("--no-trail", action="store_true", help="vt answers without the trailing space")
    ap.add_argument("--top", type=int, default=3)
    ap.add_argument("--show-weight", type=float, default=0.2)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    model = HSAModel.from_pretrained(a.model)
    model.eval()
    model.mem_round_bf16 = True
    pick = set(int(x) for x in a.index.split(","))
    if a.demo:
        import probe_boundary as PB
        cases = PB.demo_cases(random.Random(5), max(pick) + 1)
        for i in sorted(pick):
            _, hay, q, want = cases[i]
            print("=== demo #%d (value %s)" % (i, want.decode()), flush=True)
            trace(model, hay, [(q, want)], [], False, a.top, a.show_weight)
        return
    if not (a.tasks and a.length and a.n):
        sys.exit("trace_answer: --tasks, --length and --n (the run's), or --demo")
    corpus = D.Corpus(a.corpus)
    tasks = a.tasks.split(",")
    want = a.task or tasks[0]
    draws = E.task_haystacks(random.Random(a.seed), corpus, tasks, [a.length], a.n, model.cfg.chunk_size, spans=True)
    for task, _, i, hay, qas, spans in draws:
        if task == want and i in pick:
            print("=== %s #%d (L=%d)" % (task, i, a.length), flush=True)
            trace(model, hay, qas, spans, task == "vt" and not a.no_trail, a.top, a.show_weight)
            sys.stdout.flush()
        if task == want and i >= max(pick):
            break


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
