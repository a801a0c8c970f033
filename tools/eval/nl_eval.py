#!/usr/bin/python3
"""Natural-language memory evaluation through the `hsadb` binary, with a BM25 baseline.

Two steps:

  build   writes an evaluation set: memories (chat histories, archives of real files) and their
          questions, in two splits: "seen" (train-split template families, fact types and domains,
          fresh instances) and "unseen" (held-out families, fact types, domains and entity values:
          what training never sees).  Deterministic for a seed.
  run     appends every memory to a fresh hsadb database with the real binary, asks every question
          with `hsadb query --json` (greedy) and `hsadb search --json`, and scores the ANSWER TEXT
          only (tools/memtasks/common.py: score); the evidence printed with an answer never counts.
          The same questions go to SQLite FTS5 (BM25) over passages of the same bytes: recall@k of
          the evidence passage, the baseline that `hsadb search` must match.

  /usr/bin/python3 tools/eval/nl_eval.py build --out /tmp/nl --seed 1 --chat-kb 1024 --archive-kb 1024
  /usr/bin/python3 tools/eval/nl_eval.py run --set /tmp/nl --hsadb build/hsadb --model models/hsadb-small \\
      --out /tmp/nl-run [--max-q 40] [--no-query]
  /usr/bin/python3 tools/eval/nl_eval.py report --run /tmp/nl-run

Set layout: SET/manifest.json, SET/mem-NNN.txt (the bytes appended), SET/questions.jsonl (one line
per question: memory, set (chat|records|needle), split (seen|unseen), kind (fact|changed|before|
when|list|absent), q, golds, evidence [[start, end]...], fact, ...).
Run layout: RUN/results.jsonl (one line per question: answer, right, abstained, ranks of the evidence
in hsadb search and in FTS5), RUN/summary.md.
"""
import argparse
import json
import os
import random
import sqlite3
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "memtasks"))
import chat  # noqa: E402
import common  # noqa: E402
import needles  # noqa: E402
import records  # noqa: E402

SPLIT_OF = {"seen": "train", "unseen": "held"}

# ---- needles in ordinary wordings (the v1 model's task, said otherwise) ------------------------------



def needle_memory(rng, split, target_bytes, filler, task="keys", k=1):
    """Documentation text with statements of numbers in ordinary words (memtasks/needles.py)."""
    return needles.haystack(rng, split, [p for _, p in filler.pairs], target_bytes, task, k)


# ---- build --------------------------------------------------------------------------------------------

def build(args):
    os.makedirs(args.out, exist_ok=True)
    filler = chat.Filler.from_man_pages(limit=4000, seed=args.seed)
    rng = random.Random(args.seed)
    mems, qlines = [], []

    def add_memory(kind, split, text, qs):
        idx = len(mems)
        fn = "mem-%03d.txt" % idx
        with open(os.path.join(args.out, fn), "w", encoding="utf-8") as f:
            f.write(text)
        rng.shuffle(qs)
        qs = qs[:args.q_per_mem]
        mems.append(dict(file=fn, set=kind, split=split, bytes=len(text.encode())))
        for q in qs:
            q = dict(q)
            q.update(memory=idx, set=kind, split=split)
            qlines.append(q)

    for split in ("seen", "unseen"):
        gsplit = SPLIT_OF[split]
        for _ in range(args.chats):
            hist = chat.make_history(rng, gsplit, args.chat_kb * 1024, filler)
            text, spans = chat.render(hist, chat.pick_format(rng, gsplit))
            add_memory("chat", split, text, chat.questions(hist, spans, rng, gsplit))
        for _ in range(args.archives):
            text, qs = records.make_archive(rng, gsplit, args.archive_kb * 1024)
            add_memory("records", split, text, qs)
        for _ in range(args.needles):
            text, qs = needle_memory(rng, gsplit, args.needle_kb * 1024, filler)
            add_memory("needle", split, text, qs)
        for task, k in (("keys", 4), ("values", 3), ("chain", 3)):   # multi-key, multi-value, tracking
            for _ in range(args.needles):
                text, qs = needle_memory(rng, gsplit, args.needle_kb * 1024, filler, task, k)
                add_memory("needle-" + task, split, text, qs)
    with open(os.path.join(args.out, "questions.jsonl"), "w") as f:
        for q in qlines:
            f.write(json.dumps(q) + "\n")
    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(dict(seed=args.seed, memories=mems, chat_kb=args.chat_kb, archive_kb=args.archive_kb,
                       needle_kb=args.needle_kb, q_per_mem=args.q_per_mem, abstain=common.ABSTAIN), f, indent=1)
    print("built %d memories, %d questions in %s" % (len(mems), len(qlines), args.out))


# ---- BM25 baseline (SQLite FTS5) ------------------------------------------------------------------------

def passages(data, size, stride):
    """Byte windows [start, start+size) every `stride` bytes (the last one reaches the end)."""
    out = []
    for start in range(0, max(1, len(data)), stride):
        out.append((start, min(len(data), start + size)))
        if start + size >= len(data):
            break
    return out


def fts_words(text):
    return " ".join(w for w in "".join(c if c.isalnum() else " " for c in text.lower()).split())


class Bm25:
    """FTS5 over fixed passages of one memory's bytes, porter-stemmed, queried with OR of the words."""

    def __init__(self, data, size=512, stride=256):
        self.spans = passages(data, size, stride)
        self.db = sqlite3.connect(":memory:")
        self.db.execute("CREATE VIRTUAL TABLE p USING fts5(body, tokenize='porter unicode61')")
        self.db.executemany("INSERT INTO p(rowid, body) VALUES (?, ?)",
                            [(i, data[a:b].decode("utf-8", "replace")) for i, (a, b) in enumerate(self.spans)])

    def search(self, question, k):
        words = fts_words(question).split()
        if not words:
            return []
        expr = " OR ".join('"%s"' % w for w in words)
        rows = self.db.execute("SELECT rowid FROM p WHERE p MATCH ? ORDER BY bm25(p) LIMIT ?", (expr, k)).fetchall()
        return [self.spans[r[0]] for r in rows]


def evidence_rank(hits, evidence):
    """1-based rank of the first hit (start, end) that overlaps any evidence span; None if none."""
    for i, (a, b) in enumerate(hits):
        if any(a < e1 and e0 < b for e0, e1 in evidence):
            return i + 1
    return None


# ---- run ------------------------------------------------------------------------------------------------

def hsadb(args, *cmd, stdin=None, timeout=3600):
    full = [args.hsadb, "--db", args.db, "--model", args.model] + list(cmd)
    return subprocess.run(full, input=stdin, capture_output=True, timeout=timeout)


def hit_spans(obj):
    out = []
    for h in obj.get("hits", []):
        start = h.get("byte_offset", h.get("start"))
        if start is None:
            continue
        length = h.get("length", h.get("byte_length", 64))
        if "end" in h:
            length = h["end"] - start
        out.append((start, start + length))
    return out


def run(args):
    with open(os.path.join(args.set, "manifest.json")) as f:
        man = json.load(f)
    qs = [json.loads(x) for x in open(os.path.join(args.set, "questions.jsonl"))]
    os.makedirs(args.out, exist_ok=True)
    args.db = os.path.join(args.out, "db")
    done = set()
    res_path = os.path.join(args.out, "results.jsonl")
    if os.path.exists(res_path):
        done = {(r["memory"], r["q"]) for r in map(json.loads, open(res_path))}
    out = open(res_path, "a")
    for mi, mem in enumerate(man["memories"]):
        mine = [q for q in qs if q["memory"] == mi][:args.max_q]
        if not mine or all((mi, q["q"]) in done for q in mine):
            continue
        name = "m%03d" % mi
        data = open(os.path.join(args.set, mem["file"]), "rb").read()
        t_append = 0.0
        if not args.bm25_only:
            hsadb(args, "delete", name, "--yes")
            r = hsadb(args, "create", name)
            if r.returncode != 0:
                sys.exit("create failed: " + r.stderr.decode())
            t0 = time.time()
            r = hsadb(args, "append", name, stdin=data)
            if r.returncode != 0:
                sys.exit("append failed: " + r.stderr.decode())
            t_append = time.time() - t0
        bm = Bm25(data, args.passage, args.stride)
        print("memory %d (%s/%s, %d bytes): appended in %.1f s, %d questions"
              % (mi, mem["set"], mem["split"], len(data), t_append, len(mine)), flush=True)
        for q in mine:
            if (mi, q["q"]) in done:
                continue
            row = dict(memory=mi, set=q["set"], split=q["split"], kind=q["kind"], fact=q.get("fact"),
                       domain=q.get("domain"), q=q["q"], golds=q["golds"])
            ev = [tuple(e) for e in q["evidence"]]
            row["bm25_rank"] = evidence_rank(bm.search(q["q"], 10), ev) if ev else None
            if not args.no_search and not args.bm25_only:
                r = hsadb(args, "--json", "search", name, "-k", "10", "--", q["q"])
                try:
                    row["search_rank"] = evidence_rank(hit_spans(json.loads(r.stdout)), ev) if ev else None
                except ValueError:
                    row["search_error"] = r.stderr.decode()[-300:]
            if not args.no_query and not args.bm25_only:
                t0 = time.time()
                r = hsadb(args, "--json", "query", name, "--max-tokens", str(args.max_tokens), "--", q["q"])
                row["query_seconds"] = round(time.time() - t0, 3)
                try:
                    ans = json.loads(r.stdout)["answer"]
                except (ValueError, KeyError):
                    ans = None
                    row["query_error"] = r.stderr.decode()[-300:]
                row["answer"] = ans
                if ans is not None:
                    golds = q["golds"]
                    row["right"] = common.score(ans, golds, q["kind"])
                    row["abstained"] = common.is_abstention(ans)
            out.write(json.dumps(row) + "\n")
            out.flush()
        if not args.bm25_only:
            hsadb(args, "delete", name, "--yes")
    out.close()
    report(argparse.Namespace(run=args.out))


# ---- report ---------------------------------------------------------------------------------------------

def pct(a, b):
    return "-" if b == 0 else "%d/%d (%.0f%%)" % (a, b, 100.0 * a / b)


def report(args):
    rows = [json.loads(x) for x in open(os.path.join(args.run, "results.jsonl"))]
    lines = ["| set | split | kind | answered right | abstained | search r@5 | search r@10 | BM25 r@5 | BM25 r@10 |",
             "|---|---|---|---|---|---|---|---|---|"]
    groups = {}
    for r in rows:
        groups.setdefault((r["set"], r["split"], r["kind"]), []).append(r)
        groups.setdefault((r["set"], r["split"], "all"), []).append(r)
    for key in sorted(groups):
        g = groups[key]
        qa = [r for r in g if "right" in r]
        withev = [r for r in g if r["kind"] != "absent"]
        sr = [r for r in withev if "search_rank" in r]
        lines.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            key[0], key[1], key[2], pct(sum(r["right"] for r in qa), len(qa)),
            pct(sum(r["abstained"] for r in qa), len(qa)),
            pct(sum(1 for r in sr if r["search_rank"] and r["search_rank"] <= 5), len(sr)),
            pct(sum(1 for r in sr if r["search_rank"] and r["search_rank"] <= 10), len(sr)),
            pct(sum(1 for r in withev if r["bm25_rank"] and r["bm25_rank"] <= 5), len(withev)),
            pct(sum(1 for r in withev if r["bm25_rank"] and r["bm25_rank"] <= 10), len(withev))))
    text = "\n".join(lines) + "\n"
    with open(os.path.join(args.run, "summary.md"), "w") as f:
        f.write(text)
    print(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="write an evaluation set")
    b.add_argument("--out", required=True)
    b.add_argument("--seed", type=int, default=1)
    b.add_argument("--chats", type=int, default=2, help="chat histories per split")
    b.add_argument("--archives", type=int, default=2, help="archives per split")
    b.add_argument("--needles", type=int, default=4, help="needle memories per split")
    b.add_argument("--chat-kb", type=int, default=1024)
    b.add_argument("--archive-kb", type=int, default=1024)
    b.add_argument("--needle-kb", type=int, default=64)
    b.add_argument("--q-per-mem", type=int, default=40)
    r = sub.add_parser("run", help="run a set through hsadb and the BM25 baseline")
    r.add_argument("--set", required=True)
    r.add_argument("--out", required=True)
    r.add_argument("--hsadb", default="build/hsadb")
    r.add_argument("--model", default="models/hsadb-small")
    r.add_argument("--max-q", type=int, default=1000, help="questions per memory at most")
    r.add_argument("--max-tokens", type=int, default=48)
    r.add_argument("--passage", type=int, default=512, help="BM25 passage bytes")
    r.add_argument("--stride", type=int, default=256, help="BM25 passage stride")
    r.add_argument("--no-query", action="store_true", help="search and BM25 only")
    r.add_argument("--no-search", action="store_true")
    r.add_argument("--bm25-only", action="store_true", help="the BM25 baseline alone (no hsadb)")
    p = sub.add_parser("report", help="summarise a run")
    p.add_argument("--run", required=True)
    args = ap.parse_args()
    {"build": build, "run": run, "report": report}[args.cmd](args)


if __name__ == "__main__":
    main()
