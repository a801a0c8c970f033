#!/usr/bin/python3
"""Single needle whose value sits at a chunk boundary, through the C engine, for several models.

A chunk is 64 bytes and the engine retrieves whole chunks, so a value that ends exactly at a chunk's
last byte, or that spills its last digit into the next chunk, is the hard case for copying: the
byte after the value (what tells the model to stop) or the value's last digit is in a chunk that
retrieval may not pick. Six probes (decoy, lookalike and passkey are not about boundaries):

  --probe shift (default): N single-needle haystacks (tools/train/data.py eval_sample, numbers,
      depth 10-80%), each asked three times with the haystack's start trimmed so that the value
      ends at a chunk end ("boundary"), spills one digit into the next chunk ("spill1"), or ends
      mid-chunk ("mid", the control). Same haystacks and questions for every model.
  --probe uuid: N single-needle haystacks with 36-byte uuid values, each asked five times with
      the start trimmed so that 4, 13, 22 or 31 of the value's bytes are in one chunk and the rest in
      the next ("cross4" ... "cross31"), or the whole value inside one chunk ("inside", the control).
      Session 10 (docs/evaluation.md, step 49,860): with 13 bytes before the boundary, the length of
      the short 8-4 keys, the answer often stops there (16/40 and 19/40 right for steps 49,860 and
      44,565 at 16K); 36-38/40 in the other crossing cases, 40/40 inside one chunk.
  --probe decoy: N single-needle haystacks (numbers, depth 10-80%), each asked three times with the
      key (or, for a two-word key, its words) written 0, 16 or 128 more times into the text around
      the needle as plain words ("decoy0", "decoy16", "decoy128"): a 16M haystack of Debian text says
      a common key thousands of times. Step 49,860 (session 11): 40/40 at every count at 16K.
  --probe lookalike: the same, with 0, 16 or 128 statements that look like a value's place
      ("the default size is 8192.", "VAR QXTRB = 5521.": tools/train/data.py LOOKALIKE_T, never with
      the key's words) written around the needle ("look0", "look16", "look128"); session 11's 16M
      misses lost the needle's chunk to such text (docs/evaluation.md).
  --probe passkey: N haystacks with a pass key (data.py PASSKEY_NEEDLE) in place of the needle, each
      asked three times with 0, 1 or 4 other codes in the demo archive's shape around it ("The X Y
      access code is 4471. The special magic number for the X Y is 4471.": "code0", "code1", "code4").
  --probe demo: samples/archive/2024-01.md (the demo's first file, where the north gate's number
      ends at a chunk end right after the same number in another sentence) with its 4471 replaced
      by N 4-digit values (the first is 4471 itself).

  /usr/bin/python3 tools/eval/probe_boundary.py --models models/hsadb-small,OTHER_MODEL_DIR --n 40

Prints the misses and one line per model: hits/haystacks per condition.
"""
import argparse
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
import data as D  # noqa: E402
import eval_engine as E  # noqa: E402


def shift_cases(rng, corpus, n, L):
    """-> [(condition, haystack bytes, question, answer)] for the shift probe."""
    cases = []
    for _ in range(n):
        toks, _, _, _, v = D.eval_sample(rng, corpus, L, kind="number", depth=0.1 + 0.7 * rng.random())
        hay, qas = E.split_sample(toks)
        q, want = qas[0]
        end = hay.find(("is %s." % v).encode()) + 3 + len(v)  # one past the value's last byte
        for cond, trim in (("boundary", end % 64), ("spill1", (end - 1) % 64), ("mid", (end - 32) % 64)):
            cases.append((cond, hay[trim:], q, want))
    return cases


def uuid_cases(rng, corpus, n, L):
    """-> [(condition, haystack bytes, question, answer)] for the uuid probe."""
    cases = []
    while len(cases) < 5 * n:
        toks, _, _, _, v = D.eval_sample(rng, corpus, L, kind="uuid", depth=0.1 + 0.7 * rng.random())
        if len(v) != 36:  # the generator also makes shorter keys (8-4 hex digits)
            continue
        hay, qas = E.split_sample(toks)
        q, want = qas[0]
        start = hay.find(("is %s." % v).encode()) + 3  # the value's first byte
        conds = [("cross%d" % k, (start - (64 - k)) % 64) for k in (4, 13, 22, 31)] + [("inside", (start - 14) % 64)]
        for cond, trim in conds:
            cases.append((cond, hay[trim:], q, want))
    return cases


def scatter_cases(rng, corpus, n, L, name, make, counts=(0, 16, 128)):
    """-> [(condition, haystack bytes, question, answer)]: N single-needle haystacks, each with 0, 16
    and 128 strings make(rng, key) written into its text (' s ', never touching the needle)."""
    cases = []
    for _ in range(n):
        hay, q, want, lo, hi = _number_needle(rng, corpus, L)
        key = q.decode().rsplit(" for ", 1)[1].rstrip("?")
        for c in counts:
            cases.append(("%s%d" % (name, c), _write_away(rng, hay, lo, hi, c, lambda: make(rng, key)), q, want))
    return cases


def _number_needle(rng, corpus, L):
    """A single-needle haystack of L tokens (a number, depth 10-80%) -> (haystack bytes, question,
    answer, lo, hi), the needle sentence being haystack[lo:hi]."""
    toks, _, _, _, v = D.eval_sample(rng, corpus, L, kind="number", depth=0.1 + 0.7 * rng.random())
    hay, qas = E.split_sample(toks)
    q, want = qas[0]
    lo = hay.find(b"The special magic number for ")
    hi = hay.find(b".", hay.find(b" is %s" % v.encode(), lo)) + 1
    return hay, q, want, lo, hi


def _write_away(rng, hay, lo, hi, count, make):
    """hay with count strings ' s ' (s = make()) written over it at random places that do not touch
    hay[lo:hi] (the needle)."""
    h = bytearray(hay)
    for _ in range(count):
        w = (" %s " % make()).encode()
        while True:  # a place that does not touch the needle
            p = rng.randrange(0, len(h) - len(w))
            if p + len(w) <= lo or p >= hi:
                break
        h[p:p + len(w)] = w
    return bytes(h)


def passkey_cases(rng, corpus, n, L):
    """The passkey probe: N haystacks of corpus text with a pass-key needle (data.py PASSKEY_NEEDLE,
    depth 10-80%), asked with a PASSKEY_Q phrasing, each three times with 0, 1 or 4 other codes
    written around it in the demo archive's shape ("The north gate access code is 4471. The special
    magic number for the north gate is 4471.", other names and numbers): step 83,738 answers the
    demo's pass-key question with the north gate's 4471 (session 22)."""
    cases = []
    for _ in range(n):
        hay, _, _, lo, hi = _number_needle(rng, corpus, L)
        pk = D.rand_number(rng)
        nd = rng.choice(D.PASSKEY_NEEDLE).format(v=pk).encode()
        base, hi = hay[:lo] + nd + hay[hi:], lo + len(nd)  # the pass key in the niah needle's place
        q = rng.choice(D.PASSKEY_Q).encode()
        for c in (0, 1, 4):
            codes = _write_away(rng, base, lo, hi, c, lambda: D.code_statement(rng, corpus, pk, D.CODE_T[0]))
            cases.append(("code%d" % c, codes, q, pk.encode()))
    return cases


def decoy_cases(rng, corpus, n, L):
    """The decoy probe: the key, or a word of a two-word key."""
    return scatter_cases(rng, corpus, n, L, "decoy",
                         lambda r, key: r.choice([key] + (key.split("-") if "-" in key else [])))


def lookalike_cases(rng, corpus, n, L):
    """The lookalike probe: statements like 'the default size is 8192.' without the key's words."""
    return scatter_cases(rng, corpus, n, L, "look",
                         lambda r, key: D._lookalike(r, corpus, set(key.split("-"))))


def demo_cases(rng, n):
    src = open(os.path.join(ROOT, "samples", "archive", "2024-01.md"), "rb").read()
    # the demo's first question (samples/questions.txt), the one about this needle
    qs = [ln for ln in open(os.path.join(ROOT, "samples", "questions.txt"), "rb").read().splitlines()
          if ln.strip() and not ln.startswith(b"#")]
    q = qs[0]
    vals = ["4471"] + ["%04d" % rng.randrange(1000, 10000) for _ in range(n - 1)]
    return [("demo", src.replace(b"4471", v.encode()), q, v.encode()) for v in vals]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="models/hsadb-small", help="comma-separated model directories")
    ap.add_argument("--hsadb", default="build/hsadb")
    ap.add_argument("--probe", default="shift", choices=["shift", "uuid", "decoy", "lookalike", "passkey", "demo"])
    ap.add_argument("--n", type=int, default=40, help="haystacks (shift, uuid, decoy, lookalike, passkey) or values (demo)")
    ap.add_argument("--length", type=int, default=4096, help="haystack tokens (shift, uuid, decoy, lookalike, passkey)")
    ap.add_argument("--seed", type=int, default=99)
    ap.add_argument("--corpus", default=None)
    ap.add_argument("--db", default="/tmp/hsadb-probe-db")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    if args.probe == "shift":
        cases = shift_cases(rng, D.Corpus(args.corpus), args.n, args.length)
    elif args.probe == "uuid":
        cases = uuid_cases(rng, D.Corpus(args.corpus), args.n, args.length)
    elif args.probe == "decoy":
        cases = decoy_cases(rng, D.Corpus(args.corpus), args.n, args.length)
    elif args.probe == "lookalike":
        cases = lookalike_cases(rng, D.Corpus(args.corpus), args.n, args.length)
    elif args.probe == "passkey":
        cases = passkey_cases(rng, D.Corpus(args.corpus), args.n, args.length)
    else:
        cases = demo_cases(rng, args.n)
    for m in args.models.split(","):
        eng = E.Engine(os.path.abspath(args.hsadb), os.path.abspath(m), args.db)
        hits = {}
        for cond, hay, q, want in cases:
            eng.fresh("probe", hay)
            got = eng.ask("probe", q, E.answer_tokens(want))["answer"]
            ok = E.correct(got, want)
            hits.setdefault(cond, []).append(ok)
            if not ok:
                print("%s %s: %s -> %s" % (m, cond, want.decode(), got), flush=True)
        print("%s: %s" % (m, ", ".join("%s %d/%d" % (c, sum(v), len(v)) for c, v in hits.items())), flush=True)


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
