"""Training samples of the v2 memory model: memories in people's words, and questions about them.

A sample is one token sequence of exactly L tokens:

    <bos> memory ... <query> question <answer> answer <eos> [<query> ... <eos>]...

The memory is made of segments drawn from tools/memtasks (train split only): chat histories,
archives of real files, documentation text with statements in ordinary words ("needles"), and
plain corpus text; the questions are about facts in it, or about facts it does not hold (answered
with memtasks.common.ABSTAIN).  Nothing here knows bytes from tokens: a tokenizer object does
the encoding (ByteTokenizer: the v1 vocabulary; bpe_c.Tokenizer: a byte-level BPE), so the same
data trains either, as issue 33 item 1 asks (equal compute, same data).

Every sample carries what train.py's losses need (data.Sample):
  tokens [L] int64; ans [L] bool: position t predicts an answer token or its <eos>;
  sup: [(t, [chunks])]: at answer position t the retrieval scores should put their mass on these
       chunks (those holding the question's evidence; none for absent facts);
  family, answers, meta (questions, evidence token spans).

    src = Sources.load(root="/", corpus=".carry/corpus.txt.gz")   # once per worker
    s = make_sample(rng, tok, 4096, src)
"""
import gzip
import os
import random
import re
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "memtasks"))
import chat  # noqa: E402
import common  # noqa: E402
import needles  # noqa: E402
import records  # noqa: E402
from data import Sample  # noqa: E402

SPLIT = "train"   # training never sees the held-out split ("held": evaluation only)


class ByteTokenizer:
    """The v1 vocabulary: bytes 0..255, then <bos> <eos> <query> <answer>."""
    vocab_size = 264
    bos, eos, query, answer = 256, 257, 258, 259
    bytes_per_token = 1.0

    def encode(self, data):
        return np.frombuffer(data, dtype=np.uint8).astype(np.int64)

    def lengths(self, ids):
        return np.ones(len(ids), dtype=np.int64)


# ---- what samples are made of ------------------------------------------------------------------------



class BpeTokenizer:
    """A byte-level BPE tokenizer.json through the C encoder (tools/train/bpe_c.py), with the
    interface ByteTokenizer has. Its added tokens <bos> <eos> <query> <answer> are the specials."""

    def __init__(self, path):
        import bpe_c
        self.tok = bpe_c.Tokenizer(path)
        self.vocab_size = self.tok.vocab_size
        ids = {name: self.tok.token_id("<%s>" % name) for name in ("bos", "eos", "query", "answer")}
        missing = [n for n, i in ids.items() if i is None or i < 0]
        if missing:
            raise ValueError("%s has no added tokens %s" % (path, ", ".join("<%s>" % n for n in missing)))
        self.bos, self.eos, self.query, self.answer = (ids[n] for n in ("bos", "eos", "query", "answer"))
        # byte length of every token (a special decodes to nothing in the memory's bytes)
        self._len = np.array([0 if self.tok.is_special(i) else len(self.tok.decode([i]))
                              for i in range(self.vocab_size)], dtype=np.int64)
        self.bytes_per_token = 4.0     # a first guess for sizing memories; make_sample pads or cuts

    def encode(self, data):
        return np.asarray(self.tok.encode_np(data), dtype=np.int64)

    def lengths(self, ids):
        return self._len[np.asarray(ids, dtype=np.int64)]


def load_tokenizer(spec):
    """'bytes' -> ByteTokenizer; a path to a tokenizer.json -> BpeTokenizer."""
    return ByteTokenizer() if spec == "bytes" else BpeTokenizer(spec)


class Sources:
    """Everything a worker draws samples from, loaded once, for one split."""

    def __init__(self, filler, docs, corpus_text, split=SPLIT):
        self.split = split
        self.filler = filler
        self.docs = docs                  # [(path, text, questions)] of the train domains
        self.corpus = corpus_text         # str: plain text for language modelling and padding

    @classmethod
    def load(cls, root="/", corpus=None, rounds=3, seed=0, split=SPLIT):
        rng = random.Random(seed)
        filler = chat.Filler.from_man_pages(limit=4000, seed=seed, root=root)
        docs = []
        for _ in range(rounds):         # each round asks other questions of the same files
            docs += records.gather_docs(rng, split, root)
        text = ""
        if corpus:
            opener = gzip.open if corpus.endswith(".gz") else open
            with opener(corpus, "rb") as f:
                text = f.read().decode("utf-8", "replace")
        if len(text) < 100_000:       # no corpus: the filler paragraphs serve
            text = "\n\n".join(p for _, p in filler.pairs)
        return cls(filler, docs, text, split)

    def corpus_bytes(self, rng, n):
        i = rng.randrange(0, max(1, len(self.corpus) - n))
        j = self.corpus.rfind("\n", 0, i)
        i = j + 1 if j >= 0 else i
        return self.corpus[i:i + n].encode("utf-8", "replace")


def _needle_segment(rng, src, nbytes, k):
    """Documentation text with statements of numbers in ordinary words (memtasks/needles.py): k
    things with a number each, one thing with several numbers, or a number passed along a chain."""
    task = rng.choices(["keys", "values", "chain"], weights=[0.6, 0.2, 0.2])[0]
    k = k if task == "keys" else rng.randrange(2, 5)
    text, qs = needles.haystack(rng, src.split, [p for _, p in src.filler.pairs], nbytes, task, k)
    for q in qs:
        q["q"] = common.roughen(q["q"], rng, protect=tuple(str(g) for g in q["golds"]) + tuple(
            re.findall(r"\d+", q["q"])))
    return text, qs


def _chat_segment(rng, src, nbytes):
    hist = chat.make_history(rng, src.split, nbytes, src.filler, n_facts=max(1, min(11, nbytes // 1500)))
    text, spans = chat.render(hist, chat.pick_format(rng, src.split))
    return text, chat.questions(hist, spans, rng, src.split)


def _records_segment(rng, src, nbytes):
    docs = rng.sample(src.docs, min(len(src.docs), max(1, nbytes // 3000)))
    return records.make_archive(rng, src.split, nbytes, docs=docs, n_absent=rng.randrange(0, 2))


def _corpus_segment(rng, src, nbytes):
    return src.corpus_bytes(rng, nbytes).decode("utf-8", "replace"), []


SEGMENTS = {"chat": _chat_segment, "records": _records_segment, "corpus": _corpus_segment}
DEFAULT_MIX = {"chat": 0.35, "records": 0.25, "needle": 0.15, "mixed": 0.2, "lm": 0.05}


# ---- assembling ---------------------------------------------------------------------------------------

def _tokenize_segments(tok, segs):
    """segs: [(text, questions)] -> tokens, [(question, [(t0, t1)] token spans of its evidence)]."""
    ids, qs, pos_tok = [], [], 0
    for text, sq in segs:
        data = text.encode("utf-8", "replace")
        t = tok.encode(data)
        ends = np.cumsum(tok.lengths(t))           # byte end of each token
        starts = ends - tok.lengths(t)
        for q in sq:
            spans = []
            for a, b in q["evidence"]:
                t0 = int(np.searchsorted(ends, a, side="right"))    # first token ending after a
                t1 = int(np.searchsorted(starts, b, side="left"))   # first token starting at/after b
                spans.append((pos_tok + t0, pos_tok + max(t0 + 1, t1)))
            qs.append((q, spans))
        ids.append(t)
        pos_tok += len(t)
        if len(t) > 256:     # the sizing estimate follows the text seen (a BPE's ratio varies)
            tok.bytes_per_token = 0.9 * tok.bytes_per_token + 0.1 * len(data) / len(t)
    return (np.concatenate(ids) if ids else np.zeros(0, dtype=np.int64)), qs


def _answer_text(q):
    if "answer" in q:
        return q["answer"]
    if q["kind"] == "list":
        items = [forms[0] for forms in q["golds"]]
        return ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]
    return q["golds"][0]


def make_sample(rng, tok, L, src, mix=None, S=64, max_questions=4):
    """One sample of exactly L tokens (see the module's doc); at least one question unless "lm"."""
    mix = mix or DEFAULT_MIX
    fam = rng.choices(list(mix), weights=list(mix.values()))[0]
    for _ in range(8):
        s = _make(rng, tok, L, src, fam, S, max_questions)
        if s is not None:
            return s
    return _make(rng, tok, L, src, "needle", S, max_questions)   # one statement always fits


def _make(rng, tok, L, src, fam, S, max_questions):
    budget = int((L - 1) * 0.85)             # memory tokens; the rest is questions and padding
    nbytes = int(budget * tok.bytes_per_token)
    if fam == "lm":
        data = src.corpus_bytes(rng, int((L + 8) * tok.bytes_per_token) + 64)
        t = tok.encode(data)[:L - 1]
        while len(t) < L - 1:
            t = np.concatenate([t, tok.encode(src.corpus_bytes(rng, 4096))])[:L - 1]
        tokens = np.concatenate([[tok.bos], t]).astype(np.int64)
        return Sample(tokens, np.zeros(L, dtype=bool), [], "lm", [])
    if fam == "needle":
        segs = [_needle_segment(rng, src, nbytes, rng.randrange(1, 5))]
    elif fam == "mixed":
        kinds = rng.sample(["chat", "records", "needle", "corpus"], rng.randrange(2, 4))
        segs = []
        for k in kinds:
            nb = nbytes // len(kinds)
            segs.append(_needle_segment(rng, src, nb, rng.randrange(1, 3)) if k == "needle"
                        else SEGMENTS[k](rng, src, nb))
    else:
        segs = [SEGMENTS[fam](rng, src, nbytes)]
    mem, qspans = _tokenize_segments(tok, segs)
    # questions: those whose evidence survives, the absent ones, up to max_questions
    rng.shuffle(qspans)
    blocks, used = [], 0
    n_absent = 0
    for q, spans in qspans:
        if len(blocks) >= max_questions:
            break
        if q["kind"] == "absent":     # at most one, in half the samples: ~1 question in 5 abstains
            if n_absent >= 1 or rng.random() < 0.5:
                continue
            n_absent += 1
        qt = tok.encode(q["q"].encode())
        at = tok.encode(_answer_text(q).encode())
        n = 3 + len(qt) + len(at)
        if used + n > L - 1 - budget:      # the question blocks' share of the sample is full
            break
        blocks.append((q, spans, qt, at))
        used += n
    # the memory fills what the question blocks leave: cut from the front, or pad with corpus text
    room = L - 1 - used
    if len(mem) > room:
        cut = len(mem) - room
        mem = mem[cut:]
        keep = []
        for q, spans, qt, at in blocks:
            spans = [(a - cut, b - cut) for a, b in spans]
            if all(a >= 0 for a, _ in spans):
                keep.append((q, spans, qt, at))
        # a question whose evidence was cut becomes a question of nothing: drop it (its slot is padding)
        blocks = keep
        used = sum(3 + len(qt) + len(at) for _, _, qt, at in blocks)
        room = L - 1 - used
    if not blocks:
        return None
    pad = room - len(mem)
    if pad > 0:
        pt = tok.encode(src.corpus_bytes(rng, int(pad * tok.bytes_per_token) + 256))
        while len(pt) < pad:
            pt = np.concatenate([pt, tok.encode(src.corpus_bytes(rng, 4096))])
        pt = pt[len(pt) - pad:]
        mem = np.concatenate([pt, mem])
        blocks = [(q, [(a + pad, b + pad) for a, b in spans], qt, at) for q, spans, qt, at in blocks]
    seq = [np.array([tok.bos])]
    pos = 1 + len(mem)
    seq.append(mem)
    ans_pos, sup, answers, metas = [], [], [], []
    for q, spans, qt, at in blocks:
        spans = [(a + 1, b + 1) for a, b in spans]   # <bos> shifts everything by one
        block = np.concatenate([[tok.query], qt, [tok.answer], at, [tok.eos]]).astype(np.int64)
        a0 = pos + 1 + len(qt)                        # the <answer> token: predicts the first answer token
        seq.append(block)
        chunks = sorted({c for a, b in spans for c in range(a // S, (b - 1) // S + 1)})
        for t in range(a0, a0 + len(at) + 1):
            ans_pos.append(t)
            eligible = [c for c in chunks if (c + 1) * S <= t]
            if eligible and q["kind"] != "absent":
                sup.append((t, eligible))
        answers.append(_answer_text(q))
        metas.append(dict(q=q["q"], kind=q["kind"], fact=q.get("fact"), spans=spans, answer_pos=a0))
        pos += len(block)
    tokens = np.concatenate(seq).astype(np.int64)
    assert len(tokens) == L, (len(tokens), L)
    ans = np.zeros(L, dtype=bool)
    ans[ans_pos] = True
    return Sample(tokens, ans, sup, fam, answers, dict(questions=metas))
