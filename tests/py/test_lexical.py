"""The lexical index and passage search through the hsadb binary: modes, terms, bad input,
filters, reindex of a memory written without the index, delete/snapshot, and kill -9 during
appends (records and index must stay consistent: `hsadb reindex --check`)."""
import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest

from conftest import BINARY, CHUNK, MODEL, TIMEOUT, Hsadb, clean_env

# Facts with exact terms (ids, paths, versions, e-mail addresses, dotted names) among filler.
FACTS = [
    b"The deploy key for staging is ZX-4471-QP.",
    b"Logs of the parser go to /var/log/hsadb/parser-2.log every night.",
    b"We pinned libfoo to version 3.14.159 after the crash.",
    b"Mail the report to dana.ortiz@example.org before Friday.",
    b"The function os.path.normpath strips the trailing slash.",
    b"Commit 9f3ac2e1b7 fixed the flaky retry loop.",
    b"Gustavo prefers rhubarb pie over cheesecake.",
]


def filler(i):
    rnd = random.Random(i)
    words = [b"alpha", b"river", b"table", b"window", b"cloud", b"paper", b"green", b"stone", b"light",
             b"music", b"garden", b"silver", b"orange", b"winter", b"market", b"bridge"]
    return b" ".join(rnd.choice(words) for _ in range(rnd.randint(8, 20))) + b".\n"


def corpus():
    parts = []
    for i in range(56):                       # each fact once
        parts.append(filler(i))
        if i % 8 == 3:
            parts.append(FACTS[(i // 8) % len(FACTS)] + b"\n")
    return b"".join(parts)


@pytest.fixture
def kb(h):
    h("create", "kb")
    data = corpus()
    h.append("kb", data[:2500])
    h.append("kb", data[2500:])
    return h, data


def hits(h, name, *q, mode="lexical", k=5, **kw):
    return h.json("search", name, *q, "--mode", mode, "-k", k, **kw)["hits"]


def covers(hit, data, needle):
    """The hit's byte range holds an occurrence of needle."""
    i = data.find(needle)
    assert i >= 0
    while i >= 0:
        if hit["start"] <= i and i + len(needle) <= hit["end"]:
            return True
        i = data.find(needle, i + 1)
    return False


@pytest.mark.parametrize("question,needle", [
    ("ZX-4471-QP", b"ZX-4471-QP"),
    ("deploy key staging", b"ZX-4471-QP"),
    ("/var/log/hsadb/parser-2.log", b"parser-2.log"),
    ("where do the parser logs go", b"parser-2.log"),
    ("3.14.159", b"3.14.159"),
    ("dana.ortiz@example.org", b"dana.ortiz"),
    ("normpath", b"os.path.normpath"),
    ("9f3ac2e1b7", b"9f3ac2e1b7"),
    ("Which pies does GUSTAVO prefer?", b"rhubarb"),
])
def test_lexical_finds_exact_terms(kb, question, needle):
    h, data = kb
    r = hits(h, "kb", question, k=3)
    assert r and covers(r[0], data, needle), (question, r[:1])
    # the hybrid ranking keeps it near the top even with the random-weight test model
    r = hits(h, "kb", question, mode="hybrid", k=5)
    assert any(covers(x, data, needle) for x in r), (question, [(x["start"], x["end"]) for x in r])
    x = next(x for x in r if covers(x, data, needle))
    assert x["ranks"]["lexical"] >= 1 and x["scores"]["lexical"] > 0 and x["scores"]["model"] > 0, x


def test_lexical_needs_no_model(kb, tmp_path):
    h, data = kb
    r = h.json("search", "kb", "rhubarb", "--mode", "lexical", model=tmp_path / "absent")["hits"]
    assert r and covers(r[0], data, b"rhubarb")
    h("search", "kb", "rhubarb", model=tmp_path / "absent", expect=5)     # hybrid needs it


def test_searchable_right_after_append(h):
    """What an append committed is searchable at once, even in the tail (< 64 bytes)."""
    h("create", "m")
    for i in range(12):
        h.append("m", b"note %d: nothing much here\n" % i)
        token = b"kiwi%dx" % i
        h.append("m", b"the code is " + token + b"\n")
        data = h.read("m")
        r = hits(h, "m", token.decode(), k=1)
        assert r and covers(r[0], data, token), (i, r)


def test_bad_input(kb):
    h, data = kb
    h("search", "kb", "", "--mode", "lexical", expect=2)
    h("search", "kb", "x", "-k", 0, expect=2)
    h("search", "kb", "x", "-k", (1 << 20) + 1, expect=2)
    h("search", "kb", "x", "--mode", "fuzzy", expect=2)
    h("search", "kb", "x", "--passage", 300, expect=2)
    h("search", "kb", "x", "--k1", 0, expect=2)
    h("search", "kb", "x", "--b", 2, expect=2)
    h("search", "kb", "x", "--first-append", 2, "--last-append", 1, expect=2)
    # huge k: every passage at most once, none overlapping
    r = hits(h, "kb", "the", k=1 << 20)
    spans = sorted((x["start"], x["end"]) for x in r)
    assert r and all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))
    # a question of 64 KiB is fine, one byte more is refused; no term at all finds nothing
    big = ("rhubarb " * 8192)[:65536]
    r = hits(h, "kb", big, k=2)
    assert r and covers(r[0], data, b"rhubarb")
    h("search", "kb", big + "x", "--mode", "lexical", expect=2)
    assert hits(h, "kb", "?!", k=3) == []
    # invalid UTF-8 in the question (bytes on the command line) is a separator, not a crash
    for q in (b"\xff\xfe rhubarb \xc3", b"\xe2\x82", b"rhu\xc0\xafbarb"):
        p = subprocess.run([str(BINARY), "--db", str(h.db), "--model", str(MODEL), "--json", "search", "kb",
                            "--mode", "lexical", q], capture_output=True, timeout=TIMEOUT, env=clean_env())
        assert p.returncode == 0, p.stderr
        json.loads(p.stdout)


def test_filters(h):
    h("create", "f")
    h.append("f", b"first append talks about apples and the id AAA-111.\n" * 3)
    h.append("f", b"second append talks about bananas and the id BBB-222.\n" * 3)
    h.append("f", b"third append talks about cherries and the id CCC-333.\n" * 3)
    data = h.read("f")
    assert hits(h, "f", "cherries", k=3)
    assert hits(h, "f", "cherries", "--as-of", 2, k=3) == []
    r = hits(h, "f", "bananas", "--as-of", 2, k=3)
    assert r and all(x["end"] <= data.index(b"third") for x in r), r
    assert all(b"cherr" not in x["text"].encode() for x in r), r        # nothing later is shown
    r = hits(h, "f", "talks", "--first-append", 2, "--last-append", 2, k=5)
    lo, hi = data.index(b"second"), data.index(b"third")
    assert r and all(lo <= x["start"] and x["end"] <= hi for x in r), r
    assert all(x["append_id"] == 2 and x["last_append_id"] == 2 for x in r), r
    assert hits(h, "f", "apples", "--first-append", 2, k=3) == []
    now = int(time.time())
    assert hits(h, "f", "apples", "--since", now + 3600, k=3) == []
    assert hits(h, "f", "apples", "--since", now - 3600, "--until", now + 3600, k=3)
    h("search", "f", "x", "--since", now, "--until", now - 10, expect=2)


def lex_entries(db):
    p = subprocess.run(["mdb_stat", "-s", "lex", str(db)], capture_output=True, timeout=TIMEOUT)
    assert p.returncode == 0, p.stderr
    for line in p.stdout.decode().splitlines():
        if "Entries:" in line:
            return int(line.split()[-1])
    raise AssertionError(p.stdout)


needs_lmdb_utils = pytest.mark.skipif(not shutil.which("mdb_stat"), reason="lmdb-utils (mdb_stat) not installed")


def test_reindex_memory_without_index(h):
    """A memory appended without the index (as one written before it existed): search scans
    it, --check tells it apart, reindex builds it (progress on stderr), an append builds it too."""
    h("create", "kb")
    data = corpus()
    h("--no-lexical-index", "append", "kb", "-", input=data)
    check = h.json("reindex", "kb", "--check", expect=6)
    assert not check["consistent"] and check["indexed_units"] == 0 < check["units"], check
    p = h("reindex", "kb", "--check", expect=6)
    assert b"units indexed" in p.stderr
    r = h.json("search", "kb", "rhubarb", "--mode", "lexical", "-k", 1)
    assert r["hits"] and covers(r["hits"][0], data, b"rhubarb") and r["scanned_bytes"] >= len(data) - 64, r
    p = h("reindex", "kb")
    assert b"reindex kb" in p.stderr, p.stderr
    check = h.json("reindex", "kb", "--check")
    assert check["consistent"] and check["indexed_units"] == check["units"], check
    r = h.json("search", "kb", "rhubarb", "--mode", "lexical", "-k", 1)
    assert covers(r["hits"][0], data, b"rhubarb") and r["scanned_bytes"] < 512, r
    # an appender catches a lagging index up when it opens
    h("--no-lexical-index", "append", "kb", "-", input=data)
    assert not h.json("reindex", "kb", "--check", expect=6)["consistent"]
    h.append("kb", b"one more line about quinces.\n")
    assert h.json("reindex", "kb", "--check")["consistent"]
    r = hits(h, "kb", "quinces", k=1)
    assert r and covers(r[0], h.read("kb"), b"quinces")


@needs_lmdb_utils
def test_delete_and_snapshot_carry_the_index(kb, tmp_path):
    h, data = kb
    h("create", "other")
    h.append("other", b"other memory about figs.\n" * 40)
    n_all = lex_entries(h.db)
    h("snapshot", tmp_path / "snap", "--memory", "kb")
    h("restore", tmp_path / "snap", tmp_path / "restored")
    r = Hsadb(tmp_path / "restored")
    assert r.json("reindex", "kb", "--check")["consistent"]
    res = r.json("search", "kb", "rhubarb", "--mode", "lexical", "-k", 1)
    assert covers(res["hits"][0], data, b"rhubarb") and res["scanned_bytes"] < 512, res
    h("delete", "kb", "--yes")
    assert 0 < lex_entries(h.db) < n_all
    h("delete", "other", "--yes")
    assert lex_entries(h.db) == 0


def test_kill9_keeps_records_and_index_consistent(h):
    """kill -9 at random points of appends (commits every second with the test model): after
    each, the index equals one rebuilt from the committed chunks (reindex --check: every unit of
    the committed chunks indexed, nothing beyond), and a term of the last indexed unit is found.
    HSADB_KILL9_ROUNDS sets the number of rounds (default 30)."""
    rounds = int(os.environ.get("HSADB_KILL9_ROUNDS") or 30)
    h("create", "k")
    rnd = random.Random(7)
    total_killed = 0
    for rnd_i in range(rounds):
        line_no = [0]

        def text(n):
            out = []
            while sum(map(len, out)) < n:
                line_no[0] += 1
                out.append(b"round %d line %d token r%dl%dz says %s.\n"
                           % (rnd_i, line_no[0], rnd_i, line_no[0], filler(line_no[0])[:40]))
            return b"".join(out)

        before = h.stat("k")["n_chunks"]
        proc = h.popen("append", "k", "-", stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        try:
            data = text(400_000)
            deadline = time.time() + TIMEOUT
            written = 0
            wait = rnd.uniform(0.0, 1.5)
            t_commit = None
            while time.time() < deadline:
                if written < len(data):
                    proc.stdin.write(data[written: written + 16384])
                    proc.stdin.flush()
                    written += 16384
                else:
                    time.sleep(0.02)
                if t_commit is None and h.stat("k")["n_chunks"] > before:
                    t_commit = time.time()
                if t_commit is not None and time.time() - t_commit >= wait:
                    break
            proc.kill()
            assert proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
            total_killed += 1
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            try:
                proc.stdin.close()
            except BrokenPipeError:
                pass
        check = h.json("reindex", "k", "--check", expect=None)
        assert check.get("consistent") is True, (rnd_i, check)
        st = h.stat("k")
        assert check["indexed_units"] == check["units"] == max(0, (st["n_chunks"] - 1) // 4), (check, st)
        # a token of the last indexed unit is found there
        stored = h.read("k")
        end = check["indexed_units"] * 256
        last = stored[max(0, end - 256): end]
        toks = [t for t in last.split() if t.startswith(b"r") and t.endswith(b"z") and b"l" in t]
        if toks and stored.find(toks[0]) + len(toks[0]) <= end:
            r = hits(h, "k", toks[0].decode(), k=1)
            assert r and covers(r[0], stored, toks[0]), (rnd_i, toks[0], r)
    assert total_killed == rounds
