"""Synthetic long-context data for hsadb training, in RULER's task families.

Format of a query (model-spec.md): <query> question-bytes <answer> answer-bytes <eos>
  token ids: <bos>=256 <eos>=257 <query>=258 <answer>=259, bytes 0..255.

A sample is a haystack (corpus text or noise sentences) with needles inserted at random depths,
followed by one or more query blocks.  Every sample carries:
  tokens   int64 [L]
  ans      bool  [L]   position t predicts an answer byte or the <eos> after it (answer loss)
  sup      list of (t, [chunks]): retrieval supervision: at answer position t the retrieval
           scores should put their mass on these chunks (those holding the needles the answer
           comes from, eligible at t: (c+1)*S <= t)
Families: passkey, niah (single needle; values numbers / words / uuid-like keys), multikey (with
distractors), multivalue, multiquery, vt (variable tracking), lm (plain text, no query).
"""
import gzip
import os
import random
import re

import numpy as np

BOS, EOS, QUERY, ANSWER = 256, 257, 258, 259

NOISE = [
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again.",
    "The river runs to the sea and the sea does not fill.",
    "A quiet morning, a cup of tea, and the long road ahead.",
    "Birds sing in the trees while the wind moves the leaves.",
    "The old clock in the hall strikes twelve and the house is still.",
    "Clouds drift over the hills and the rain comes later in the day.",
]

FALLBACK_WORDS = ("apple banana cherry dragon eagle falcon garden harbor island jungle kettle lantern meadow "
                  "needle orange pepper quartz rabbit silver tiger umbrella violet walnut yellow zebra anchor "
                  "basket candle desert ember forest glacier hammer igloo jacket koala lemon marble nectar "
                  "oyster pillow quiver ribbon saddle tunnel valley window yogurt almond breeze copper dolphin").split()


class Corpus:
    def __init__(self, path=None, text=None):
        if text is None:
            if path is None:
                for p in (".carry/corpus.txt.gz", ".carry/corpus.txt"):
                    if os.path.exists(p):
                        path = p
                        break
            if path is None:
                text = " ".join(NOISE * 2000)
            elif path.endswith(".gz"):
                with gzip.open(path, "rb") as f:
                    text = f.read().decode("ascii", "ignore")
            else:
                with open(path, "rb") as f:
                    text = f.read().decode("ascii", "ignore")
        self.data = np.frombuffer(text.encode("ascii", "ignore"), dtype=np.uint8)
        words = re.findall(r"\b[a-z]{4,9}\b", text[:3_000_000])
        cnt = {}
        for w in words:
            cnt[w] = cnt.get(w, 0) + 1
        ws = sorted(w for w, c in cnt.items() if c >= 3)
        self.words = ws if len(ws) > 500 else FALLBACK_WORDS

    def slice(self, rng, n):
        if n <= 0:
            return np.zeros(0, dtype=np.uint8)
        if len(self.data) <= n:
            reps = n // len(self.data) + 1
            return np.tile(self.data, reps)[:n].copy()
        o = rng.randrange(0, len(self.data) - n)
        return self.data[o:o + n].copy()


def noise_filler(rng, n):
    out = []
    size = 0
    base = rng.choice(NOISE)
    while size < n + 2:
        s = base if rng.random() < 0.7 else rng.choice(NOISE)
        out.append(s)
        size += len(s) + 1
    return np.frombuffer((" ".join(out))[:n].encode(), dtype=np.uint8).copy()


def b(s):
    return list(s.encode("ascii"))


# ---- values ------------------------------------------------------------------------------------

def rand_number(rng):
    n = rng.choice([5, 6, 7, 7, 7, 8])
    return str(rng.randrange(10 ** (n - 1), 10 ** n))


def rand_uuid(rng):
    h = "%032x" % rng.getrandbits(128)
    if rng.random() < 0.5:
        return "%s-%s" % (h[:8], h[8:12])
    return "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:32])


def rand_word(rng, corpus):
    return rng.choice(corpus.words)


def rand_key(rng, corpus):
    if rng.random() < 0.7:
        return rng.choice(corpus.words)
    return rng.choice(corpus.words) + "-" + rng.choice(corpus.words)


VALUE_KINDS = {  # name used in text, generator
    "number": ("number", lambda rng, c: rand_number(rng)),
    "word": ("word", lambda rng, c: rand_word(rng, c)),
    "uuid": ("uuid", lambda rng, c: rand_uuid(rng)),
}

NEEDLE_T = [
    "One of the special magic {kind}s for {key} is: {value}.",
    "The special magic {kind} for {key} is {value}.",
    "Remember this: the {kind} for {key} is {value}.",
    "Note that {key} has the secret {kind} {value}.",
    "{key}: the magic {kind} is {value}.",
]
QUESTION_T = [
    "What is the special magic {kind} for {key}?",
    "What is the {kind} for {key}?",
    "Which {kind} belongs to {key}?",
    "Tell me the secret {kind} of {key}.",
    "{key}: what is the magic {kind}?",
    "Recall the {kind} that was given for {key}.",
]
MV_QUESTION_T = [
    "What are all the special magic {kind}s for {key}?",
    "List every {kind} given for {key}.",
    "Which {kind}s belong to {key}?",
]
PASSKEY_NEEDLE = [
    "The pass key is {v}. Remember it. {v} is the pass key.",
    "The passkey is {v}. Remember it. {v} is the passkey.",
    "Important: the pass key is {v}. Do not forget it.",
]
PASSKEY_Q = ["What is the pass key?", "What is the passkey?", "Tell me the pass key.", "The pass key is?",
             "What was the pass key?"]
VT_Q = ["Find all variables that are assigned the value {v}.",
        "Which variables have the value {v}?",
        "List the variables equal to {v}."]


class Sample:
    __slots__ = ("tokens", "ans", "sup", "family", "answers")

    def __init__(self, tokens, ans, sup, family, answers):
        self.tokens, self.ans, self.sup, self.family, self.answers = tokens, ans, sup, family, answers


def assemble(rng, corpus, L, needles, qas, S=64, filler="mix", bos=True):
    """needles: list of byte-lists; qas: list of (question str, answer str, [needle indices]).
    Builds haystack + needles at random depths + query blocks; returns Sample."""
    tail = []
    ans_pos = []  # (start, end) positions in tail whose next token is answer/eos
    for q, a, _ in qas:
        tail += [QUERY] + b(q) + [ANSWER]
        st = len(tail) - 1  # the <answer> token predicts the first answer byte
        tail += b(a) + [EOS]
        ans_pos.append((st, len(tail) - 1))  # positions st .. len-2 predict a..eos
    head = [BOS] if bos else []
    nbytes = sum(len(n) for n in needles)
    Lh = L - len(tail) - len(head)
    nf = Lh - nbytes - len(needles)  # one separator space per needle
    if nf < 0:
        raise ValueError("sequence too short for the needles")
    kind = filler if filler != "mix" else ("corpus" if rng.random() < 0.75 else "noise")
    fill = corpus.slice(rng, nf) if kind == "corpus" else noise_filler(rng, nf)
    # insertion points (sorted), snapped forward to a space/newline when one is near
    pts = sorted(rng.randrange(0, nf + 1) for _ in needles)
    snapped = []
    for p in pts:
        q = p
        for k in range(p, min(nf, p + 40)):
            if fill[k] in (32, 10):
                q = k + 1
                break
        snapped.append(min(q, nf))
    pts = sorted(snapped)
    order = list(range(len(needles)))
    # needle i goes to the i-th point (keeps the given order, e.g. for multi-value / vt chains)
    out = list(head)
    spans = [None] * len(needles)
    prev = 0
    for i, p in zip(order, pts):
        out += fill[prev:p].tolist()
        start = len(out)
        out += needles[i] + [32]
        spans[i] = (start, start + len(needles[i]))
        prev = p
    out += fill[prev:].tolist()
    base = len(out)
    out += tail
    assert len(out) == L, (len(out), L)
    toks = np.array(out, dtype=np.int64)
    ans = np.zeros(L, dtype=bool)
    sup = []
    for (st, en), (_, _, nidx) in zip(ans_pos, qas):
        chunks = sorted(set(c for i in nidx for c in range(spans[i][0] // S, (spans[i][1] - 1) // S + 1)))
        for t in range(base + st, base + en):
            ans[t] = True
            el = [c for c in chunks if (c + 1) * S <= t]
            if el:
                sup.append((t, el))
    return Sample(toks, ans, sup, None, [a for _, a, _ in qas])


# ---- families -------------------------------------------------------------------------------------

def fam_passkey(rng, corpus, L, S):
    v = rand_number(rng)
    nd = rng.choice(PASSKEY_NEEDLE).format(v=v)
    return assemble(rng, corpus, L, [b(nd)], [(rng.choice(PASSKEY_Q), v, [0])], S)


def _kv_needle(rng, kind, key, value):
    return rng.choice(NEEDLE_T).format(kind=kind, key=key, value=value)


def fam_niah(rng, corpus, L, S, kind=None):
    kind = kind or rng.choice(["number", "number", "word", "uuid"])
    kname, gen = VALUE_KINDS[kind]
    key = rand_key(rng, corpus)
    v = gen(rng, corpus)
    nd = _kv_needle(rng, kname, key, v)
    q = rng.choice(QUESTION_T).format(kind=kname, key=key)
    return assemble(rng, corpus, L, [b(nd)], [(q, v, [0])], S)


def _distinct_keys(rng, corpus, n):
    ks = set()
    while len(ks) < n:
        ks.add(rand_key(rng, corpus))
    ks = list(ks)
    rng.shuffle(ks)
    return ks


def fam_multikey(rng, corpus, L, S, nq=1):
    kind = rng.choice(["number", "number", "word", "uuid"])
    kname, gen = VALUE_KINDS[kind]
    n = rng.randint(max(2, nq), 8)
    keys = _distinct_keys(rng, corpus, n)
    vals = [gen(rng, corpus) for _ in keys]
    tmpl = rng.choice(NEEDLE_T)  # same template for all: distractors look alike
    needles = [b(tmpl.format(kind=kname, key=k, value=v)) for k, v in zip(keys, vals)]
    asked = rng.sample(range(n), nq)
    qas = [(rng.choice(QUESTION_T).format(kind=kname, key=keys[i]), vals[i], [i]) for i in asked]
    return assemble(rng, corpus, L, needles, qas, S)


def fam_multiquery(rng, corpus, L, S):
    return fam_multikey(rng, corpus, L, S, nq=rng.randint(2, 4))


def fam_multivalue(rng, corpus, L, S):
    kind = rng.choice(["number", "number", "word"])
    kname, gen = VALUE_KINDS[kind]
    key = rand_key(rng, corpus)
    nv = rng.randint(2, 4)
    vals = [gen(rng, corpus) for _ in range(nv)]
    needles = [b(_kv_needle(rng, kname, key, v)) for v in vals]
    # a distractor key or two
    nd = rng.randint(0, 2)
    for k in _distinct_keys(rng, corpus, nd + 1)[:nd]:
        if k != key:
            needles.append(b(_kv_needle(rng, kname, k, gen(rng, corpus))))
    # assemble keeps needle i at the i-th insertion point: the values appear in order
    q = rng.choice(MV_QUESTION_T).format(kind=kname, key=key)
    return assemble(rng, corpus, L, needles, [(q, ", ".join(vals), list(range(nv)))], S)


def _varname(rng):
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))


def fam_vt(rng, corpus, L, S):
    hops = rng.randint(1, 3)
    v = rand_number(rng)
    names = []
    while len(names) < hops + 1:
        nm = _varname(rng)
        if nm not in names:
            names.append(nm)
    needles = [b("VAR %s = %s." % (names[0], v))]
    for i in range(1, hops + 1):
        needles.append(b("VAR %s = VAR %s." % (names[i], names[i - 1])))
    # a distractor chain with another value
    v2 = rand_number(rng)
    d = _varname(rng)
    needles.append(b("VAR %s = %s." % (d, v2)))
    q = rng.choice(VT_Q).format(v=v)
    return assemble(rng, corpus, L, needles, [(q, " ".join(names), list(range(hops + 1)))], S)


def fam_lm(rng, corpus, L, S):
    toks = np.concatenate([[BOS], corpus.slice(rng, L - 1).astype(np.int64)])
    return Sample(toks, np.zeros(L, dtype=bool), [], None, [])


FAMILIES = {
    "passkey": fam_passkey, "niah": fam_niah, "multikey": fam_multikey, "multiquery": fam_multiquery,
    "multivalue": fam_multivalue, "vt": fam_vt, "lm": fam_lm,
}

DEFAULT_MIX = {"passkey": 0.12, "niah": 0.28, "multikey": 0.2, "multiquery": 0.15, "multivalue": 0.1,
               "vt": 0.1, "lm": 0.05}


def make_sample(rng, corpus, L, S=64, mix=None):
    mix = mix or DEFAULT_MIX
    names = list(mix)
    fam = rng.choices(names, weights=[mix[n] for n in names])[0]
    for _ in range(10):
        try:
            s = FAMILIES[fam](rng, corpus, L, S)
            break
        except ValueError:  # too many needles for a short sequence: fall back to one needle
            fam = "niah"
    s.family = fam
    return s


def collate(samples):
    """-> dict of numpy arrays: tokens [B,L], ans [B,L] bool, sup_b/sup_t [N] int, sup_tgt [N,C] bool."""
    B = len(samples)
    L = len(samples[0].tokens)
    C = L // 64 + 1
    toks = np.stack([s.tokens for s in samples])
    ans = np.stack([s.ans for s in samples])
    sb, st, tg = [], [], []
    for i, s in enumerate(samples):
        for t, chunks in s.sup:
            sb.append(i)
            st.append(t)
            row = np.zeros(C, dtype=bool)
            row[chunks] = True
            tg.append(row)
    tg = np.stack(tg) if tg else np.zeros((0, C), dtype=bool)
    return dict(tokens=toks, ans=ans, sup_b=np.array(sb, dtype=np.int64), sup_t=np.array(st, dtype=np.int64),
                sup_tgt=tg)


def eval_sample(rng, corpus, L, S=64, kind="number", depth=None):
    """One single-needle (niah-number) haystack of exactly L tokens, needle at relative depth."""
    kname, gen = VALUE_KINDS[kind]
    key = rand_key(rng, corpus)
    v = gen(rng, corpus)
    nd = b("The special magic %s for %s is %s." % (kname, key, v))
    q = "What is the special magic %s for %s?" % (kname, key)
    tail = [QUERY] + b(q) + [ANSWER] + b(v) + [EOS]
    Lh = L - len(tail) - 1
    nf = Lh - len(nd) - 1
    fill = corpus.slice(rng, nf)
    d = rng.random() if depth is None else depth
    p = int(d * nf)
    out = [BOS] + fill[:p].tolist() + nd + [32] + fill[p:].tolist()
    needle_chunks = list(range((1 + p) // S, (1 + p + len(nd) - 1) // S + 1))
    base = len(out)
    out += tail
    toks = np.array(out, dtype=np.int64)
    a0 = base + 1 + len(b(q))  # position of <answer>
    return toks, a0, len(v) + 1, needle_chunks, v
