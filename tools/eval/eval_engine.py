#!/usr/bin/python3
"""Evaluate a model through the C engine: RULER-style tasks at growing context lengths.

Every haystack is appended to a fresh hsadb memory with the real `hsadb` binary and every
question is asked with `hsadb query` (greedy); the answer must match exactly. Nothing here runs
the model in Python: the numbers are the database's.

  /usr/bin/python3 tools/eval/eval_engine.py --hsadb build/hsadb --model models/hsadb-small \\
      --lengths 4096,16384,65536 --tasks niah,multikey,multiquery,vt --n 10 --out eval-out

  --heatmap: single-needle accuracy over depth x length (the paper's Figure 4 layout), PNG.

Tasks come from tools/train/data.py (the training generators; the haystack is everything before
the first <query>, the questions are asked one by one). Results: OUT/results.jsonl (one line per
question), OUT/summary.md (accuracy per task and length), OUT/heatmap.png.
"""
import argparse
import itertools
import json
import os
import random
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402

FAMILIES = {"niah": D.fam_niah, "passkey": D.fam_passkey, "multikey": D.fam_multikey,
            "multiquery": D.fam_multiquery, "multivalue": D.fam_multivalue, "vt": D.fam_vt}


def split_sample(tokens):
    """-> haystack bytes, [(question bytes, answer bytes)] from a training-format sequence."""
    a = np.asarray(tokens)
    if len(a) and a[0] == D.BOS:
        a = a[1:]
    hits = np.flatnonzero(a == D.QUERY)
    if len(hits) == 0:
        raise ValueError("no <query> in the sample")
    q0 = int(hits[0])
    if q0 and (a[:q0].min() < 0 or a[:q0].max() > 255):
        raise ValueError("a haystack token is not a byte")
    hay = a[:q0].astype(np.uint8).tobytes()
    toks = [int(t) for t in a[q0:]]   # the questions and answers: short
    qas, i = [], 0
    while i < len(toks) and toks[i] == D.QUERY:
        j = toks.index(D.ANSWER, i)
        k = toks.index(D.EOS, j)
        qas.append((bytes(toks[i + 1:j]), bytes(toks[j + 1:k])))
        i = k + 1
    return hay, qas


class Engine:
    def __init__(self, exe, model, db):
        self.exe, self.model, self.db = exe, model, db

    def run(self, args, data=None):
        cmd = [self.exe, "--db", self.db, "--model", self.model, "--nosync", "-q"] + args
        p = subprocess.run(cmd, input=data, capture_output=True)
        if p.returncode != 0:
            raise RuntimeError("%s: exit %d: %s" % (" ".join(args[:2]), p.returncode, p.stderr.decode()[-300:]))
        return p.stdout

    def fresh(self, name, hay):
        subprocess.run([self.exe, "--db", self.db, "delete", name, "--yes"], capture_output=True)
        self.run(["create", name])
        t = time.time()
        self.run(["append", name, "-"], data=hay)
        return time.time() - t

    def ask(self, name, q, max_tokens):
        out = self.run(["--json", "query", name, q.decode("latin-1"), "--max-tokens", str(max_tokens),
                        "--evidence", "4"])
        return json.loads(out)


def answer_tokens(want):
    """Generation budget for an expected answer (bytes): room for it twice over, at least 32."""
    return max(32, 2 * len(want) + 8)


def task_haystacks(rng, corpus, tasks, lengths, n, S=64, spans=False):
    """A task run's haystacks in order -> (task, L, i, haystack bytes, [(question, answer)]), and
    with spans=True also the needles' (start, end) byte offsets in the haystack. One generator
    serves the whole task list, so a haystack depends on every task before it (find_value.py,
    replay_needles.py, trace_answer.py and vt_layout.py replay a run this way)."""
    for task in tasks:
        fam = FAMILIES[task]
        for L in lengths:
            for i in range(n):
                sample = fam(rng, corpus, L, S)
                hay, qas = split_sample(sample.tokens)
                if not spans:
                    yield task, L, i, hay, qas
                    continue
                shift = 1 if sample.tokens[0] == D.BOS else 0  # the sample's positions count its <bos>
                yield task, L, i, hay, qas, [(st - shift, en - shift) for st, en in sample.meta["spans"]]


def heatmap_haystacks(rng, corpus, lengths, depths, n, S=64):
    """A --heatmap run's single-needle haystacks in order -> (L, depth, i, haystack bytes,
    [(question, answer)]) (find_value.py --heatmap replays a run this way)."""
    for L in lengths:
        for d in depths:
            for i in range(n):
                toks, _, _, _, v = D.eval_sample(rng, corpus, L, S, kind="number", depth=d)
                hay, qas = split_sample(toks)
                yield L, d, i, hay, qas


def run_slice(draws, skip, count, only=()):
    """The haystacks one process evaluates: after the first skip ones (still drawn, so that the
    rest are the same as in a whole run), count of them (0: all the rest); or, with only (a set of
    positions in the run, counted as skip counts), those haystacks alone, none drawn after the last."""
    if only:
        return (d for pos, d in zip(range(max(only) + 1), draws) if pos in only)
    return itertools.islice(draws, skip, skip + count if count > 0 else None)


def correct(got, want):
    g, w = got.strip(), want.decode("latin-1").strip()
    if g == w:
        return True
    # list answers (variable tracking, multi-value): same items in any order
    gs, ws = set(g.replace(",", " ").split()), set(w.replace(",", " ").split())
    return len(ws) > 1 and gs == ws


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hsadb", default="build/hsadb")
    ap.add_argument("--model", default="models/hsadb-small")
    ap.add_argument("--lengths", default="4096,16384,65536")
    ap.add_argument("--tasks", default="niah,multikey,multiquery,vt")
    ap.add_argument("--n", type=int, default=10, help="haystacks per task and length")
    ap.add_argument("--heatmap", action="store_true", help="single needle over depths x lengths")
    ap.add_argument("--depths", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--corpus", default=None, help="corpus file (default: .carry/corpus.txt[.gz])")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--out", default="eval-out")
    ap.add_argument("--db", default="/tmp/hsadb-eval-db")
    ap.add_argument("--skip", type=int, default=0,
                    help="make and drop the first SKIP haystacks: resume a stopped run with the same "
                         "arguments (results.jsonl is appended to)")
    ap.add_argument("--count", type=int, default=0,
                    help="after the skipped ones, evaluate only this many haystacks (0: all); with --skip, "
                         "several processes share one run's haystacks (scripts/gpu_eval_parallel.sh)")
    ap.add_argument("--only", default="",
                    help="comma-separated positions in the run (as --skip counts them): evaluate only these "
                         "haystacks, e.g. the ones a timed-out process of a parallel run did not reach")
    ap.add_argument("--wrap-from-start", action="store_true",
                    help="haystacks longer than the corpus start at its first byte (runs before session 11: "
                         "every 16M haystack had the same text); default: a random offset")
    ap.add_argument("--plot-from", default="", help="only redraw OUT/heatmap.png from these comma-separated "
                    "results.jsonl files of --heatmap runs (no engine run)")
    ap.add_argument("--title", default="single needle through the hsadb engine", help="title for --plot-from")
    args = ap.parse_args()
    if args.skip < 0 or args.count < 0:
        ap.error("--skip and --count must be >= 0")
    try:
        only = {int(x) for x in args.only.split(",") if x.strip()}
    except ValueError:
        ap.error("--only takes comma-separated haystack positions, e.g. 359,518,519")
    if only and (args.skip or args.count or min(only) < 0):
        ap.error("--only takes positions >= 0 and goes without --skip and --count")
    os.makedirs(args.out, exist_ok=True)
    if args.plot_from:
        plot_from(args.plot_from.split(","), args.title, os.path.join(args.out, "heatmap.png"))
        return
    corpus = D.Corpus(args.corpus)
    corpus.wrap_from_start = args.wrap_from_start
    eng = Engine(os.path.abspath(args.hsadb), os.path.abspath(args.model), args.db)
    lengths = [int(x) for x in args.lengths.split(",")]
    res_f = open(os.path.join(args.out, "results.jsonl"), "a")
    acc = {}

    def record(task, L, depth, q, want, ans, secs, value_chunks=None):
        """One result line. evidence: per HSA layer the chunks the answer attended to most, as
        [chunk, weight] (the query's --evidence 4); value_chunks (single needle): the chunks that hold
        the value's bytes, so a miss shows whether retrieval found them (tools/eval/find_value.py does
        this for task runs)."""
        ok = correct(ans["answer"], want)
        acc.setdefault((task, L), []).append(ok)
        if depth is not None:
            acc.setdefault(("depth", L, depth), []).append(ok)
        res_f.write(json.dumps({"task": task, "length": L, "depth": depth, "question": q.decode("latin-1"),
                                "want": want.decode("latin-1"), "got": ans["answer"], "ok": ok,
                                "append_s": round(secs, 2), "prompt_s": ans.get("prompt_seconds"),
                                "generate_s": ans.get("generate_seconds"),
                                "evidence": [[[c["chunk"], round(c["weight"], 4)] for c in e["chunks"]]
                                             for e in ans.get("evidence", [])],
                                "value_chunks": value_chunks}) + "\n")
        res_f.flush()
        return ok

    rng = random.Random(args.seed)
    if args.heatmap:
        depths = [float(x) for x in args.depths.split(",")]
        for L, d, i, hay, qas in run_slice(heatmap_haystacks(rng, corpus, lengths, depths, args.n),
                                           args.skip, args.count, only):
            secs = eng.fresh("eval", hay)
            q, want = qas[0]
            at = hay.rfind(b" is " + want)  # the needle's value (eval_sample: "... is V.")
            vch = list(range((at + 4) // 64, (at + 4 + len(want) - 1) // 64 + 1)) if at >= 0 else None
            ok = record("niah-depth", L, d, q, want, eng.ask("eval", q, 32), secs, vch)
            print("heatmap L=%d depth=%.2f #%d %s (append %.1fs)" % (L, d, i, "ok" if ok else "miss", secs),
                  flush=True)
    else:
        draws = task_haystacks(rng, corpus, args.tasks.split(","), lengths, args.n)
        for task, L, i, hay, qas in run_slice(draws, args.skip, args.count, only):
            secs = eng.fresh("eval", hay)
            for q, want in qas:
                ok = record(task, L, None, q, want, eng.ask("eval", q, answer_tokens(want)), secs)
            print("%s L=%d #%d %s (append %.1fs)" % (task, L, i, "ok" if ok else "miss", secs), flush=True)

    # summary
    lines = ["| task | " + " | ".join(str(L) for L in lengths) + " |",
             "|---|" + "---|" * len(lengths)]
    tasks = ["niah-depth"] if args.heatmap else args.tasks.split(",")
    for task in tasks:
        row = []
        for L in lengths:
            v = acc.get((task, L), [])
            row.append("%.0f%% (%d)" % (100.0 * sum(v) / len(v), len(v)) if v else "-")
        lines.append("| %s | %s |" % (task, " | ".join(row)))
    summary = "\n".join(lines) + "\n"
    with open(os.path.join(args.out, "summary-heatmap.md" if args.heatmap else "summary.md"), "w") as f:
        f.write(summary)
    print(summary)
    if args.heatmap:
        draw_heatmap(acc, lengths, [float(x) for x in args.depths.split(",")],
                     "single needle through the C engine (%d per cell)" % args.n,
                     os.path.join(args.out, "heatmap.png"))


def draw_heatmap(acc, lengths, depths, title, path):
    """acc[("depth", L, d)] = list of bools -> a depth x length PNG (the paper's Figure 4 layout)."""
    try:
        import matplotlib
    except ImportError:
        print("no matplotlib (apt-get install python3-matplotlib): %s not drawn; the numbers are in "
              "results.jsonl and summary-heatmap.md" % path, file=sys.stderr)
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cells = [[acc.get(("depth", L, d), []) for L in lengths] for d in depths]
    grid = [[sum(v) / len(v) if v else float("nan") for v in row] for row in cells]
    fig, ax = plt.subplots(figsize=(1.2 * len(lengths) + 2, 0.6 * len(depths) + 1.5))
    im = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
    ax.set_xticks(range(len(lengths)), [("%dK" % (L // 1024)) if L < 1 << 20 else "%dM" % (L >> 20) for L in lengths])
    ax.set_yticks(range(len(depths)), ["%d%%" % round(100 * d) for d in depths])
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("needle depth")
    for i in range(len(depths)):
        for j in range(len(lengths)):
            v = cells[i][j]
            ax.text(j, i, "%d/%d" % (sum(v), len(v)) if v else "-", ha="center", va="center", fontsize=8)
    ax.set_title(title)
    fig.colorbar(im)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def plot_from(files, title, path):
    """Redraw a heatmap from results.jsonl files of --heatmap runs (e.g. CPU and GPU runs together)."""
    acc = {}
    for fn in files:
        for line in open(fn):
            r = json.loads(line)
            if r.get("task") == "niah-depth":
                acc.setdefault(("depth", r["length"], r["depth"]), []).append(bool(r["ok"]))
    lengths = sorted({k[1] for k in acc})
    depths = sorted({k[2] for k in acc})
    draw_heatmap(acc, lengths, depths, title, path)
    for d in depths:
        print("| %d%% | %s |" % (round(100 * d), " | ".join(
            "%d/%d" % (sum(acc[("depth", L, d)]), len(acc[("depth", L, d)])) if ("depth", L, d) in acc else "-"
            for L in lengths)))


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
