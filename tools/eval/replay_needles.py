#!/usr/bin/env python3
"""Replay the task haystacks of an eval_engine.py run and print each one's needles (position in
the haystack, %) next to the answer the engine gave, to see what a wrong answer was taken from.

  PYTHONHASHSEED=0 /usr/bin/python3 tools/eval/replay_needles.py \
      --results docs/eval/tasks-1m-gpu-engine-35308.jsonl --tasks multikey,multiquery,vt \
      --length 1048576 --n 10 --show vt

The arguments must be those of the run (tasks in the same order, --n, --seed, the same corpus):
the haystacks come from one random stream, as in eval_engine.py (both pin PYTHONHASHSEED=0). Only
runs with a single length can be replayed this way (eval_engine.py draws task by task, length by
length).
"""
import argparse
import json
import os
import random
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
import eval_engine as E  # noqa: E402

NEEDLE_RE = {
    "vt": r"VAR [A-Z]{5} = (?:VAR [A-Z]{5}|\d+)\.",
}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", required=True, help="the run's results.jsonl")
    ap.add_argument("--tasks", required=True, help="the run's --tasks, in its order")
    ap.add_argument("--length", type=int, required=True, help="the run's (single) --lengths")
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--show", default="vt", help="tasks to print (needle patterns: %s)" % ",".join(NEEDLE_RE))
    a = ap.parse_args()
    corpus = D.Corpus(a.corpus)
    rng = random.Random(a.seed)
    res = [json.loads(line) for line in open(a.results)]
    show = set(a.show.split(","))
    rows_of = {}  # task -> its result rows in order (a haystack takes one per question)
    for r in res:
        if r["length"] == a.length:
            rows_of.setdefault(r["task"], []).append(r)
    for task, _, i, hay, qas in E.task_haystacks(rng, corpus, a.tasks.split(","), [a.length], a.n):
        rows, rows_of[task] = rows_of.get(task, [])[:len(qas)], rows_of.get(task, [])[len(qas):]
        if task not in show:
            continue
        txt = bytes(int(t) for t in hay if t < 256).decode("latin-1")
        for (q, want), r in zip(qas, rows):
            assert r["want"] == want.decode("latin-1"), "not the run's haystacks (arguments differ?)"
            print("%s #%d %s want %r got %r | %s" % (task, i, "ok  " if r["ok"] else "MISS", r["want"], r["got"],
                                                     q.decode("latin-1").strip()))
        for m in re.finditer(NEEDLE_RE.get(task, r"$^"), txt):
            print("      %3d%%  %s" % (100 * m.start() // len(txt), m.group(0)))


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
