#!/usr/bin/env python3
"""Where does an answer sit in the haystacks of an eval_engine.py task run? Replays the run's random
generator (same --tasks, --lengths, --n, --seed and corpus as the run; no engine) and prints, for
every question whose expected answer is one of VALUES, each place the value occurs in that haystack:
its byte offset, the offset inside its 64-byte chunk and how many of its bytes are in that chunk
(fewer than its length: the value crosses into the next chunk).

  PYTHONHASHSEED=0 /usr/bin/python3 tools/eval/find_value.py --tasks niah,multikey,multiquery \\
      --lengths 65536,262144 --n 5 f9022ff6-3388-f202-4d1f-53c83e18e46e

--tasks is the run's task list in its order (the generator is shared across tasks); a prefix that
ends with the value's task is enough.
"""
import argparse
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
from eval_engine import task_haystacks  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("values", nargs="+", help="expected answers to look for")
    ap.add_argument("--tasks", default="niah,multikey,multiquery,vt")
    ap.add_argument("--lengths", default="4096,16384,65536")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--chunk", type=int, default=64)
    a = ap.parse_args()
    wanted = set(a.values)
    corpus = D.Corpus(a.corpus)
    S = a.chunk
    lengths = [int(x) for x in a.lengths.split(",")]
    for task, L, i, hay, qas in task_haystacks(random.Random(a.seed), corpus, a.tasks.split(","), lengths, a.n, S):
        for q, want in qas:
            w = want.decode("latin-1")
            at = hay.find(want) if w in wanted else -1
            while at >= 0:
                print("%s L=%d #%d %s: offset %d, at %d of its chunk, %d of its %d bytes in that chunk"
                      % (task, L, i, w, at, at % S, min(len(want), S - at % S), len(want)))
                at = hay.find(want, at + 1)


if __name__ == "__main__":
    main()
