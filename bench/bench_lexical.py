#!/usr/bin/python3
"""The lexical index side by side with SQLite FTS5 over the same passages (docs/benchmarks.md).

  /usr/bin/python3 bench/bench_lexical.py [--dir /tmp/lexbench] [--sizes 1,100]
      [--model models/hsadb-small] [--model-mb 1] [--skip-model]

Corpus: text files of /usr/share/doc, /usr/share/man (decompressed troff), /usr/include and
/usr/lib/python3 in a seeded random order, each under a '==> path <==' line, cut at 1 MB and
100 MB (the 1 MB corpus is the first MB of the 100 MB one).

For each size:
  - hsadb: bench_lexical build (the store's writer, commits of 2048 chunks, minimal geometry so
    the model costs nothing) with and without the index; index bytes = pages of the `lex`
    sub-database (mdb_stat) x page size.
  - FTS5 (python3's sqlite3, tokenizer 'porter unicode61', contentless) over the SAME passages:
    the 512-byte windows that start every 256 bytes; its bytes = the database file.
  - latency of k = 10 searches: the question set plus 200 queries of 3 random words of the
    corpus; hsadb in-process (bench_lexical search, lexical mode), FTS5 in-process (python).
  - recall@1/5/10 on the question set (bench/lexical_questions.jsonl: a question in plain words
    and a piece of evidence; a hit counts when its byte range holds the evidence). Both rank
    windows and skip a window that overlaps a better one; FTS5 gets the question's words OR-ed.
With the model (--model-mb MB of the corpus appended by `hsadb append`, with and without the
index: the append slowdown): recall and latency of the three modes.
"""
import argparse
import gzip
import json
import os
import random
import re
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
UNIT, WIN = 256, 512


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def make_corpus(d, sizes):
    paths = {s: d / f"corpus-{s}m.txt" for s in sizes}
    if all(p.exists() and p.stat().st_size == s << 20 for s, p in paths.items()):
        return paths
    files = []
    for root in ("/usr/share/doc", "/usr/share/man", "/usr/include", "/usr/lib/python3"):
        for dp, _, fs in os.walk(root):
            for f in fs:
                p = os.path.join(dp, f)
                if os.path.isfile(p) and not os.path.islink(p):
                    files.append(p)
    files.sort()
    random.Random(34).shuffle(files)
    outs = {s: open(paths[s], "wb") for s in sizes}
    n, top = 0, max(sizes) << 20
    for p in files:
        try:
            b = open(p, "rb").read()
            if p.endswith(".gz"):
                b = gzip.decompress(b)
            b.decode("utf-8")
        except Exception:
            continue
        if b"\0" in b[:4096] or len(b) < 200:
            continue
        rec = b"\n==> " + p.encode() + b" <==\n" + b[:200_000]
        for s, f in outs.items():
            if n < s << 20:
                f.write(rec[: (s << 20) - n])
        n += len(rec)
        if n >= top:
            break
    for f in outs.values():
        f.close()
    return paths


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def lex_bytes(db):
    out = subprocess.run(["mdb_stat", "-s", "lex", str(db)], capture_output=True, text=True, check=True).stdout
    pages = sum(int(m) for m in re.findall(r"(?:Branch|Leaf|Overflow) pages: (\d+)", out))
    psize = int(re.search(r"Page size: (\d+)", subprocess.run(["mdb_stat", "-e", str(db)], capture_output=True,
                                                             text=True, check=True).stdout).group(1))
    return pages * psize


def covers(spans, data, ev, k):
    """The first k spans hold an occurrence of ev."""
    occ = [m.start() for m in re.finditer(re.escape(ev), data)]
    return any(a <= o and o + len(ev) <= b for a, b in spans[:k] for o in occ)


def nms(windows, k):
    taken, out = set(), []
    for w in windows:
        if w in taken:
            continue
        out.append(w)
        taken.update((w - 1, w, w + 1))
        if len(out) == k:
            break
    return out


def fts_build(path, data):
    if os.path.exists(path):
        os.unlink(path)
    con = sqlite3.connect(path)
    con.execute("CREATE VIRTUAL TABLE p USING fts5(body, tokenize='porter unicode61', content='')")
    t0 = time.time()
    n = max(1, (len(data) - WIN) // UNIT + 1 + (1 if (len(data) - WIN) % UNIT else 0))
    rows = ((w, data[w * UNIT: w * UNIT + WIN].decode("utf-8", "replace")) for w in range(n))
    con.executemany("INSERT INTO p(rowid, body) VALUES (?, ?)", rows)
    con.commit()
    con.execute("INSERT INTO p(p) VALUES ('optimize')")
    con.commit()
    return con, time.time() - t0, os.path.getsize(path)


def fts_query(q):
    words = list(dict.fromkeys(re.findall(r"\w+", q.lower())))
    return " OR ".join('"%s"' % w for w in words)


def fts_search(con, q, k):
    t0 = time.perf_counter()
    rows = con.execute("SELECT rowid FROM p WHERE p MATCH ? ORDER BY rank LIMIT ?", (fts_query(q), 4 * k)).fetchall()
    wins = nms([r[0] for r in rows], k)
    return (time.perf_counter() - t0) * 1e3, [(w * UNIT, w * UNIT + WIN) for w in wins]


def hsadb_search(bench, db, name, qfile, mode, k, model=None, passage=512):
    cmd = [str(bench), "search", str(db), name, str(qfile), mode, str(k), str(model or "-"), str(passage)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    res = []
    for line in out.splitlines():
        ms, cpu, spans = line.split("\t")
        res.append((float(ms), [tuple(map(int, s.split("-"))) for s in spans.split(",") if s], float(cpu)))
    return res


def lat(xs):
    """p50/p99 of wall and of CPU time (hsadb) in ms."""
    r = {"p50": pct([x[0] for x in xs], 50), "p99": pct([x[0] for x in xs], 99)}
    if len(xs[0]) > 2:
        r.update(cpu_p50=pct([x[2] for x in xs], 50), cpu_p99=pct([x[2] for x in xs], 99))
    return r


def recall(results, data, qs):
    r = {}
    for k in (1, 5, 10):
        r[k] = sum(covers(sp, data, q["evidence"].encode(), k) for (_, sp, *_), q in zip(results, qs)) / len(qs)
    return r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default="/tmp/lexbench")
    ap.add_argument("--sizes", default="1,100")
    ap.add_argument("--bench", default=str(REPO / "build" / "bench_lexical"))
    ap.add_argument("--hsadb", default=str(REPO / "build" / "hsadb"))
    ap.add_argument("--questions", default=str(REPO / "bench" / "lexical_questions.jsonl"))
    ap.add_argument("--model", default=str(REPO / "models" / "hsadb-small"))
    ap.add_argument("--model-mb", type=int, default=1)
    ap.add_argument("--skip-model", action="store_true")
    ap.add_argument("--reuse", action="store_true", help="keep the stores and FTS5 databases of an earlier run")
    a = ap.parse_args()
    d = Path(a.dir)
    d.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in a.sizes.split(",")]
    corpora = make_corpus(d, sorted(set(sizes + ([a.model_mb] if not a.skip_model else []))))
    qs = [json.loads(l) for l in open(a.questions)]
    out = {}
    for s in sizes:
        data = corpora[s].read_bytes()
        rnd = random.Random(s)
        words = re.findall(rb"[A-Za-z]{4,}", data[: 8 << 20])
        rand_q = [" ".join(w.decode() for w in rnd.sample(words, 3)) for _ in range(200)]
        qfile = d / f"q-{s}m.txt"
        qfile.write_text("".join(q["q"] + "\n" for q in qs) + "".join(q + "\n" for q in rand_q))
        res = {"text_bytes": len(data)}
        for idx in (False, True):
            db = d / f"db-{s}m-{'idx' if idx else 'noidx'}"
            done = d / f"build-{s}m-{'idx' if idx else 'noidx'}.json"    # --reuse: an earlier run's
            if not (a.reuse and done.exists() and db.exists()):
                subprocess.run(["rm", "-rf", str(db)], check=True)
                log(f"{s} MB: store-level build {'with' if idx else 'without'} the index")
                done.write_text(subprocess.run([a.bench, "build", str(db), str(corpora[s])] + ([] if idx else ["--no-index"]),
                                               capture_output=True, text=True, check=True).stdout)
            b = json.loads(done.read_text())
            res["build_s_" + ("idx" if idx else "noidx")] = b["seconds"]
            res["build_cpu_s_" + ("idx" if idx else "noidx")] = b["cpu_seconds"]
        db = d / f"db-{s}m-idx"
        res["index_bytes"] = lex_bytes(db)
        fdone = d / f"fts-{s}m.json"
        if a.reuse and fdone.exists():
            con = sqlite3.connect(d / f"fts-{s}m.sqlite")
            fts_s, fts_bytes = json.loads(fdone.read_text())
        else:
            log(f"{s} MB: FTS5 build")
            con, fts_s, fts_bytes = fts_build(d / f"fts-{s}m.sqlite", data)
            fdone.write_text(json.dumps([fts_s, fts_bytes]))
        res["fts_build_s"], res["fts_bytes"] = fts_s, fts_bytes
        log(f"{s} MB: searches")
        hs = hsadb_search(a.bench, db, "bench", qfile, "lexical", 10)
        hs = hsadb_search(a.bench, db, "bench", qfile, "lexical", 10)      # warm
        fs = [fts_search(con, q, 10) for q in qfile.read_text().splitlines()]
        res["hsadb_ms"] = lat(hs)
        res["fts_ms"] = lat(fs)
        res["recall_lexical"] = recall(hs[: len(qs)], data, qs)
        res["recall_fts5"] = recall(fs[: len(qs)], data, qs)
        out[f"{s}MB"] = res
        log(json.dumps(res))
    if not a.skip_model:
        s = a.model_mb
        data = corpora[s].read_bytes()
        res = {}
        for idx in (True, False):
            db = d / f"model-{s}m-{'idx' if idx else 'noidx'}"
            done = db / "append.json"     # an earlier run's append (they take minutes on 2 cores)
            if not done.exists():
                subprocess.run(["rm", "-rf", str(db)], check=True)
                base = [a.hsadb, "--db", str(db), "--model", a.model]
                subprocess.run(base + ["create", "m"], check=True, capture_output=True)
                log(f"model: append {s} MB {'with' if idx else 'without'} the index")
                r = subprocess.run(base + (["--no-lexical-index"] if not idx else []) + ["--json", "append", "m",
                                   str(corpora[s])], check=True, capture_output=True, text=True).stdout
                done.write_text(r)
            res["append_s_" + ("idx" if idx else "noidx")] = json.loads(done.read_text())["seconds"]
        qfile = d / f"qm-{s}m.txt"
        qfile.write_text("".join(q["q"] + "\n" for q in qs))
        for mode in ("lexical", "model", "hybrid"):
            for passage in (256, 512, 1024):
                hs = hsadb_search(a.bench, d / f"model-{s}m-idx", "m", qfile, mode, 10, a.model, passage)
                res[f"{mode}_{passage}"] = {"recall": recall(hs, data, qs), "ms": lat(hs)}
        out[f"model_{s}MB"] = res
        log(json.dumps(res))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
