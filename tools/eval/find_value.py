#!/usr/bin/env python3
"""Where does an answer sit in the haystacks of an eval_engine.py task run? Replays the run's random
generator (same --tasks, --lengths, --n, --seed and corpus as the run; no engine) and prints, for
every question whose expected answer is one of VALUES, each place the value occurs in that haystack:
its byte offset, the offset inside its 64-byte chunk and how many of its bytes are in that chunk
(fewer than its length: the value crosses into the next chunk).

  PYTHONHASHSEED=0 /usr/bin/python3 tools/eval/find_value.py --tasks niah,multikey,multiquery \\
      --lengths 65536,262144 --n 5 f9022ff6-3388-f202-4d1f-53c83e18e46e

--tasks is the run's task list in its order (the generator is shared across tasks); a prefix that
ends with the value's task is enough. With --heatmap it replays a single-needle run instead (its
--lengths, --depths, --n and --seed: one eval_engine.py process's); --save DIR also writes each such
haystack to DIR/VALUE.txt and its question to DIR/VALUE.q, to put through the engine by hand:

  PYTHONHASHSEED=0 /usr/bin/python3 tools/eval/find_value.py --heatmap --wrap-from-start --lengths 16777216 --depths 0 \
      --n 8 --seed 5301 --save /tmp/hay 6198228
  build/hsadb --db /tmp/db create m && build/hsadb --db /tmp/db append m /tmp/hay/6198228.txt
  build/hsadb --db /tmp/db query m "$(cat /tmp/hay/6198228.q)" --evidence 8
"""
import argparse
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
from eval_engine import heatmap_haystacks, task_haystacks  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("values", nargs="+", help="expected answers to look for")
    ap.add_argument("--tasks", default="niah,multikey,multiquery,vt")
    ap.add_argument("--lengths", default="4096,16384,65536")
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--heatmap", action="store_true", help="replay a --heatmap run (single needle)")
    ap.add_argument("--depths", default="0,0.25,0.5,0.75,1.0", help="with --heatmap")
    ap.add_argument("--wrap-from-start", action="store_true", help="as eval_engine.py's (runs before session 11)")
    ap.add_argument("--save", default="", help="write each matching haystack and question here")
    a = ap.parse_args()
    wanted = set(a.values)
    corpus = D.Corpus(a.corpus)
    corpus.wrap_from_start = a.wrap_from_start
    S = a.chunk
    lengths = [int(x) for x in a.lengths.split(",")]
    rng = random.Random(a.seed)
    if a.heatmap:
        depths = [float(x) for x in a.depths.split(",")]
        runs = (("niah-depth %.2f" % d, L, i, hay, qas) for L, d, i, hay, qas
                in heatmap_haystacks(rng, corpus, lengths, depths, a.n, S))
    else:
        runs = task_haystacks(rng, corpus, a.tasks.split(","), lengths, a.n, S)
    for task, L, i, hay, qas in runs:
        for q, want in qas:
            w = want.decode("latin-1")
            if w in wanted and a.save:
                os.makedirs(a.save, exist_ok=True)
                with open(os.path.join(a.save, w + ".txt"), "wb") as f:
                    f.write(hay)
                with open(os.path.join(a.save, w + ".q"), "wb") as f:
                    f.write(q)
            at = hay.find(want) if w in wanted else -1
            while at >= 0:
                print("%s L=%d #%d %s: offset %d, at %d of its chunk, %d of its %d bytes in that chunk"
                      % (task, L, i, w, at, at % S, min(len(want), S - at % S), len(want)))
                at = hay.find(want, at + 1)


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
