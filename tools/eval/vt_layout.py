#!/usr/bin/env python3
"""Where the chunk boundaries cut the links of vt haystacks, next to the engine's answers.

A vt link `VAR NAME = KEY.` is found by its key (a number, or the previous link's name) and
answered with its name, which comes *before* the key. When a chunk boundary falls after the name's
first byte and before the key's last byte, the key is not whole in the chunk where the name
begins, and that chunk's landmark cannot have matched it (a landmark sees its own bytes and those
before them); the answer's first byte must then come from the chunk that ends the key, whose K/V
carry the name only through the lower layers' sliding window. Such a link is "split" here. (A
niah needle states the key first: its value's chunk can match the key.)

Replays the haystacks of an eval_engine.py run (the same --tasks, --length, --n and --seed, as
trace_answer.py does; no model is run) and prints, per vt haystack, the answer from the run's
records, whether it was right, and each chain link with the boundary's offset in it (for a miss
also what went wrong, the question and the distractor assignments); then hits and misses with and
without a split link, hits by the chain's length and its number of split links, and the misses by
kind. A run with --skip (or one of gpu_eval_parallel.sh's PAR_TASKS_PROCS slices put together in
order) is replayed with the same --skip. Records are matched to haystacks by question and answer,
in any order; haystacks without one (a process that timed out) are listed at the end, and records
that match no haystack stop the script (another corpus, seed or --n).

  /usr/bin/python3 tools/eval/vt_layout.py --tasks vt --length 4194304 --n 40 \\
      --corpus .carry/corpus.txt.gz --records docs/eval/tasks-1m-4m-16m-gpu-engine-52998.jsonl
"""
import argparse
import json
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
import eval_engine as E  # noqa: E402


def link_cut(text, start, S):
    """The offset in text (a link `VAR NAME = KEY.` at byte start of the stream) of the first chunk
    boundary inside it, or None when it lies in one chunk."""
    cut = (start // S + 1) * S - start
    return cut if cut < len(text) else None


def is_split(text, cut):
    """A boundary at offset cut of a link splits it when the name's first byte lies before it and
    the key's last byte (the one before the final '.') at or after it."""
    return cut is not None and len("VAR ") < cut <= len(text) - 2


def link_name(text):
    """The name a needle `VAR NAME = KEY.` introduces."""
    return text[len("VAR "):].split(" ", 1)[0]


def needles(hay, spans):
    """(start, text) of each needle of a vt haystack: the chain's links and the distractors."""
    for st, en in spans:
        yield st, bytes(hay[st:en]).decode("latin-1")


def chain_links(hay, spans, names):
    """(start, text) of the needles that introduce one of the chain's names (not the distractors)."""
    return [(st, t) for st, t in needles(hay, spans) if t.startswith("VAR ") and link_name(t) in names]


def distractors(hay, spans, names):
    """The texts of the needles that introduce none of the chain's names: the distractor
    assignments `VAR D = n.`."""
    return [t for _, t in needles(hay, spans) if link_name(t) not in names]


def miss_kind(want, got, distractor_names):
    """What went wrong in a missed vt answer (lists of names, in the order written): the first name
    is a distractor's, or another wrong one; the chain right but cut short; a name written twice;
    or else a later name wrong or out of order."""
    if got and got[0] in distractor_names:
        return "distractor first"
    if not got or got[0] != want[0]:
        return "other first"
    if len(got) < len(want) and got == want[:len(got)]:
        return "stops early"
    if len(got) > len(set(got)):
        return "loop"
    return "later name"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="vt", help="the run's --tasks, in its order")
    ap.add_argument("--length", type=int, required=True, help="the run's (single) --lengths")
    ap.add_argument("--n", type=int, required=True, help="the run's --n")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--records", required=True, help="the run's JSON lines (eval_engine.py --out)")
    ap.add_argument("--skip", type=int, default=0, help="the run's --skip: its records begin with haystack SKIP")
    ap.add_argument("--chunk-size", type=int, default=64)
    a = ap.parse_args()
    S = a.chunk_size
    recs = [json.loads(line) for line in open(a.records)]
    # a record is found by its question and answer, so a run with gaps (a process that timed out
    # before its last haystacks) is replayed too: the haystacks without a record are listed at the end
    recs = {(r["question"], tuple(r["want"].split())): r for r in recs
            if r["task"] == "vt" and r["length"] == a.length}
    table, by_len, kinds, unrun = {}, {}, {}, []
    draws = E.task_haystacks(random.Random(a.seed), D.Corpus(a.corpus), a.tasks.split(","), [a.length], a.n, S,
                             spans=True)
    for task, _, i, hay, qas, spans in draws:
        if task != "vt" or i < a.skip:
            continue
        want = qas[0][1].decode()
        r = recs.pop((qas[0][0].decode("latin-1"), tuple(want.split())), None)
        if r is None:
            unrun.append(i)
            continue
        cuts = [(text, link_cut(text, st, S)) for st, text in chain_links(hay, spans, want.split())]
        n_split = sum(is_split(t, c) for t, c in cuts)
        split = n_split > 0
        table[(r["ok"], split)] = table.get((r["ok"], split), 0) + 1
        k = (len(cuts), min(n_split, 2))
        hit, n = by_len.get(k, (0, 0))
        by_len[k] = (hit + r["ok"], n + 1)
        print("#%-3d %-4s %-28s got %-28s %s" % (
            i, "ok" if r["ok"] else "MISS", r["want"].strip(), r["got"].strip() or "-",
            "  ".join("%s|%s%s" % (t[:c], t[c:], " (split)" if is_split(t, c) else "") if c else t
                      for t, c in cuts)))
        if not r["ok"]:
            ds = distractors(hay, spans, want.split())
            kind = miss_kind(want.split(), r["got"].split(), [link_name(d) for d in ds])
            kinds[kind] = kinds.get(kind, 0) + 1
            print("     %s; %s; distractors: %s" % (kind, qas[0][0].decode("latin-1"), "  ".join(ds)))
    if not table:
        sys.exit("vt_layout: no vt record at length %d matches a haystack here" % a.length)
    if recs:
        sys.exit("vt_layout: %d records match no haystack here (%d matched): other --tasks/--n/--seed/--corpus?"
                 % (len(recs), sum(table.values())))
    print("\nL=%d | with a split link | without" % a.length)
    for ok in (True, False):
        print("%-4s | %d | %d" % ("hit" if ok else "miss", table.get((ok, True), 0), table.get((ok, False), 0)))
    # the chain's length (links, the number's included) and its split links (0, 1, 2 or more) together:
    # longer chains have more links to split, so the first table alone mixes the two
    print("\nlinks | no split | one split | two or more")
    for links in sorted({k[0] for k in by_len}):
        print("%5d | %s" % (links, " | ".join("%d/%d" % by_len[(links, ns)] if (links, ns) in by_len else "-"
                                              for ns in (0, 1, 2))))
    print("\nmisses: " + ", ".join("%s %d" % kv for kv in sorted(kinds.items(), key=lambda kv: -kv[1])))
    if unrun:
        shown = " ".join(map(str, unrun[:40])) + (" ..." if len(unrun) > 40 else "")
        print("no record for %d haystacks: %s" % (len(unrun), shown))


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
