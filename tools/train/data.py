"""Synthetic long-context data for hsadb training, in RULER's task families.

Format of a query (model-spec.md): <query> question-bytes <answer> answer-bytes <eos>
  token ids: <bos>=256 <eos>=257 <query>=258 <answer>=259, bytes 0..255.

A sample is a haystack (corpus text or noise sentences) with needles inserted at random depths,
followed by one or more query blocks.  Every sample carries:
  tokens   int64 [L]
  ans      bool  [L]   position t predicts an answer byte or the <eos> after it (answer loss)
  sup      list of (t, [chunks]): retrieval supervision: at answer position t the retrieval
           scores should put their mass on these chunks.  With opts["sup"] == "per-pos" (default)
           they are the chunks of the needle whose content is emitted at t (value i of a
           multi-value answer, the assignment that introduces the variable name being emitted in
           vt, each query block's own needle in multiquery); separators take both neighbours,
           the <eos> takes the union.  "union": every position of a query block takes all of its
           needles (the old behaviour).  Only chunks eligible at t ((c+1)*S <= t) are listed; a
           position whose needle is not in a complete chunk yet gets no entry at all.
  meta     dict: spans (start, end) of every needle, and pos_needles {t: [needle indices]} (what
           the supervision at t was built from; for tests and debugging); cross: the answer
           positions that predict the first byte of a chunk inside a value (train.py --cross-weight)
Families: passkey, niah (single needle; values numbers / words / uuid-like keys), multikey (with
distractors), multivalue, multiquery, vt (variable tracking), lm (plain text, no query), copy
(random strings repeated inside the sliding window: in-window induction; not in DEFAULT_MIX).

Options (opts dict, see DEFAULT_OPTS / TRAIN_OPTS): tail_frac places that fraction of the needles
at the very end of the haystack (immediately before the query block, or up to tail_span bytes
before it, often in the chunk that is still incomplete at the answer); tail_align makes that
fraction of the samples put one asked needle immediately before the query block with its value in
the chunk that is incomplete at <answer> (the sample then ends with a <bos>+filler pad of 0..S-1
tokens after the last <eos>, which shifts the chunk grid; see assemble()); mv_order "sorted" makes the
multi-value answer list the values in sorted (byte) order, which the model can infer from the
retrieved content, while "doc" is document order; vt_hops weights the number of hops.
The defaults (DEFAULT_OPTS) are eval-faithful: no tail placement, uniform 1-3 hops; with them the
generators reproduce the previous samples for the same seed, except multivalue (sorted answer,
shuffled needle order) and vt (the distractor is placed among the chain).
"""
import gzip
import os
import random
import re

import numpy as np

BOS, EOS, QUERY, ANSWER = 256, 257, 258, 259
VALUE_END = (EOS, 32, 44)  # what follows a value inside an answer: <eos>, or a list separator (' ', ',')

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

    # A slice longer than the corpus (a 16M-token haystack from the 15.9 MB corpus) wraps around
    # from a random offset. Before session 11 it began at offset 0, so every such haystack had the
    # same text and a needle at a given depth the same neighbours; True restores that, to replay
    # those runs (eval_engine.py / find_value.py --wrap-from-start).
    wrap_from_start = False

    # Hubs (opts "hubs"): corpus chunks whose landmarks outrank needles in the whole corpus
    # (tools/eval/bank_rank.py --hubs-out), each as a byte string: the chunk's 256 bytes of context,
    # then its S bytes. Empty unless load_hubs() is called.
    hubs = ()

    def load_hubs(self, paths, S=64):
        """Read bank_rank.py --hubs-out's JSON (mined with chunk size S); paths: one file or several
        separated by commas, their hubs joined in order, a text met twice kept once. Returns the
        number of hubs."""
        import json
        hubs, seen = [], set()
        for path in paths.split(","):
            with open(path) as f:
                d = json.load(f)
            if int(d["chunk_size"]) != S:
                raise ValueError("%s: hubs of %d-byte chunks, the model's are %d" % (path, d["chunk_size"], S))
            for h in d["hubs"]:
                t = h["text"].encode("latin-1")
                if t not in seen:
                    seen.add(t)
                    hubs.append(t)
        self.hubs = tuple(hubs)
        return len(self.hubs)

    def slice(self, rng, n):
        if n <= 0:
            return np.zeros(0, dtype=np.uint8)
        if len(self.data) <= n:
            o = 0 if self.wrap_from_start else rng.randrange(0, len(self.data))
            reps = (o + n) // len(self.data) + 1
            return np.tile(self.data, reps)[o:o + n].copy()
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
ECHO_T = [  # value_echo: another sentence with the same value, written right before the needle
    "The {key} access code is {value}.",
    "The code for {key} is {value}.",
    "Logged for {key}: {value}.",
    "{key} was set to {value}.",
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


DEFAULT_OPTS = dict(
    tail_frac=0.0,      # fraction of needles put at the very end of the haystack
    tail_span=None,     # a tail needle ends at most this many bytes before the query block (None: 3*S)
    tail_zero=0.3,      # fraction of the tail needles that sit immediately before <query>
    sup="per-pos",      # "per-pos": the needle being emitted; "union": all needles of the query block
    sup_span="value",   # supervised chunks: those holding the needle's value text ("value"), or the
                        # whole needle ("needle", the old behaviour)
    mv_order="sorted",  # multivalue answer order: "sorted" (byte order of the values) or "doc"
    vt_hops=None,       # weights of 1, 2, 3, ... hops (None: uniform 1-3, as RULER)
    vt_distractors=None,  # (lo, hi): that many distractor assignments "VAR D = n." per vt sample,
                        # drawn uniformly, vt_look_alike of their values sharing a prefix with the
                        # asked value (None: exactly one, unrelated, as before)
    vt_look_alike=0.5,  # with vt_distractors: the fraction of them with a look-alike value
    copy_in_chunk=0.0,  # copy family: fraction of its pairs with both occurrences inside one chunk (the
                        # source is then always in the chunk still incomplete when it is copied: HSA,
                        # which sees completed chunks only, cannot copy it; the window must)
    tail_align=0.0,     # fraction of the samples whose needle (one asked in the first query block)
                        # sits immediately before <query>, shifted (by a short <bos>+filler pad after
                        # the last <eos>) so that its value lies in the chunk that is still
                        # incomplete at that block's <answer>: only the sliding window can copy it
    tail_align_straddle=0.0,  # of those aligned samples, this fraction puts the value across the
                        # boundary instead (starts in the last complete chunk, ends in the incomplete one)
    value_align=0.0,    # fraction of the needles at any depth (not the tail_align one) moved so that
                        # their value (its last occurrence) ends exactly at a chunk end (half of them)
                        # or crosses a chunk boundary (the other half): at a natural offset that
                        # happens to a value of n bytes in n/64 of placements
    vt_align=0.0,       # vt only: value_align for the links when it is larger (the name of a moved
                        # link ends at a chunk end or a boundary crosses it, so the link is cut between
                        # its name and its key: the case behind most vt misses, session 22)
    value_echo=0.0,     # fraction of the niah needles said twice: an echo sentence with the same value
                        # ("The {key} access code is {value}.") right before the needle, as in the demo's
                        # archive; with value_align the needle's own (last) value is the one aligned, so
                        # a value can end at a chunk's last byte right after the same value (the
                        # demo-needle probe's shape, where the model appends digits)
    sup_key=False,      # vt: an answer byte of a link's name also supervises the chunks of the link's
                        # key (the value or the previous name, after " = "). A landmark sees its own
                        # bytes and those before them, so when a boundary falls between a name and
                        # its key the name's chunk cannot match the key; only the key's chunk can be
                        # found (session 15's 4M traces). No change for a link inside one chunk
    sup_after=False,    # answer positions that predict what follows a value (<eos>, ' ', ',') also
                        # supervise the chunk after the value when the value ends at a chunk end:
                        # that chunk shows whether the value goes on
    passkey_codes=0.0,  # fraction of the passkey samples that also hold 1-4 other codes (CODE_T, the
                        # first in the demo archive's shape: "The X Y access code is 4471. The special
                        # magic number for the X Y is 4471."), never the pass key. Steps 74,138-83,738
                        # answer the demo's pass-key question with the north gate's 4471 (session 22)
    key_decoys=0.0,     # fraction of the niah / multikey / multiquery samples whose filler also says
                        # the asked keys (or, for a two-word key, one of its words) 2-24 more times, as
                        # plain words, so that retrieval must match the needle's sentence, not the word
                        # (a 16M haystack says a common key thousands of times). Made for session 11's
                        # 16M misses before their keys were counted: they are not unusually common, and
                        # probe_boundary.py --probe decoy found no weakness (training.md, session 11)
    lookalikes=0.0,     # fraction of the niah / multikey / multiquery samples whose filler also holds
                        # 2-16 statements that look like a value's place ("the default size is 8192.",
                        # "VAR QXTRB = 5521.", "VALUE = 77."), not needles: hard negatives for the
                        # retrieval loss. Session 11's 16M misses lost the needle's chunk to such text
    hubs=0.0,           # fraction of the niah / multikey / multiquery samples whose filler also holds
                        # 2-8 of the corpus's hubs (Corpus.load_hubs: chunks that outrank needles among
                        # the 248K chunks of a 16M haystack, mined by bank_rank.py --hubs-out), each
                        # with its 256 bytes of context and the chunk on a chunk boundary of the sample,
                        # so its landmark is the one it has in the corpus: hard negatives that the
                        # retrieval loss pushes below the needle (session 12's 16M misses)
    vt_hubs=0.0,        # the same hubs in that fraction of the vt samples: session 15's 4M vt traces lost
                        # chain hops to hub chunks with capitals ("cmake_language(EVAL CODE",
                        # "OVERVIEW OF JAVA OPTIONS"), which the second HSA layer preferred to the link
    vt_syntax=0.0,      # fraction of the vt samples whose assignments use another syntax (VT_SYNTAX:
                        # "let B = A;", "B := A.", ...) instead of "VAR B = VAR A.", so that retrieval
                        # learns to look for the names, not for "VAR": session 11's 16M single-needle
                        # misses lost the needle's chunk to text like "-D<VAR=VALUE>" and "VA Linux"
    vt_trail=False,     # vt answers end with a space ("A B C <eos>"): every name is followed by ' ', so
                        # the go-on / stop decision moves to the position after the space, where the
                        # next name's first byte is predicted from the retrieved link (or <eos> when
                        # there is none), instead of the name's last byte
)
# what train.py uses unless told otherwise
TRAIN_OPTS = dict(DEFAULT_OPTS, tail_frac=0.12, vt_hops=(0.5, 0.3, 0.2))


def _opts(opts):
    o = dict(DEFAULT_OPTS)
    if opts:
        unknown = set(opts) - set(o)
        if unknown:
            raise KeyError("unknown data options: %s" % sorted(unknown))
        o.update(opts)
    return o


class Sample:
    __slots__ = ("tokens", "ans", "sup", "family", "answers", "meta")

    def __init__(self, tokens, ans, sup, family, answers, meta=None):
        self.tokens, self.ans, self.sup, self.family, self.answers = tokens, ans, sup, family, answers
        self.meta = meta or {}


def answer_parts(parts, sep, eos=None, trail=""):
    """parts: [(text, [needle indices])] -> (answer str, needle sets per predicted answer byte).
    Entry j of the list is for the position that predicts answer byte j (entry len(answer) for the
    <eos>).  A part's bytes take its needles; separator bytes take the needles of both neighbours
    (ending one value and starting the next depend on both); `trail` (appended after the last part)
    takes the last part's; the <eos> takes `eos` (default: the union of all parts: deciding that
    nothing follows is not a per-needle lookup)."""
    text = sep.join(t for t, _ in parts) + trail
    union = sorted(set(i for _, ns in parts for i in ns))
    segs = []
    for k, (t, ns) in enumerate(parts):
        if k > 0:
            segs += [sorted(set(parts[k - 1][1]) | set(ns))] * len(sep)
        segs += [sorted(set(ns))] * len(t)
    segs += [sorted(set(parts[-1][1]))] * len(trail)
    segs.append(sorted(eos) if eos is not None else union)
    assert len(segs) == len(text) + 1
    return text, segs


def _find(hay, m, start):
    for k in range(start, len(hay) - len(m) + 1):
        if hay[k:k + len(m)] == m:
            return k
    return -1


def _rfind(hay, m):
    for k in range(len(hay) - len(m), -1, -1):
        if hay[k:k + len(m)] == m:
            return k
    return -1


def _crosses(toks, t, a0, idx, sspans, S):
    """Does answer position t (first answer byte at a0) predict a value byte that is the first byte of
    a chunk, with the value begun in the chunk before? The answer part (from a0 or after a separator)
    must be the value's bytes before the boundary, so this is where the copy has to move on to the
    next chunk: where steps 44,565 and 49,860 cut or garble uuids (probe_boundary.py --probe uuid)."""
    nxt = toks[t + 1]
    if nxt in VALUE_END:
        return False
    for i in idx:
        for s, e in sspans[i]:
            for q in range((s // S + 1) * S, e, S):
                k = q - s  # value bytes before the boundary; the answer part must begin with them
                p = t + 1 - k
                if p >= a0 and (p == a0 or toks[p - 1] in VALUE_END) and toks[q] == nxt \
                        and (toks[s:q] == toks[p:t + 1]).all():
                    return True
    return False


def _value_at(needle, mark):
    """(offset, length) of the value's last occurrence in a needle (byte list); mark: the value's
    text, or None (then the whole needle)."""
    if not mark:
        return 0, len(needle)
    mk = b(mark)
    return max(_rfind(needle, mk), 0), len(mk)


def _snap(fill, nf, p):
    """move an insertion point forward to just after a space/newline when one is near"""
    for k in range(p, min(nf, p + 40)):
        if fill[k] in (32, 10):
            return min(k + 1, nf)
    return min(p, nf)


LOOKALIKE_T = [
    "The {w} is {n}.", "the default {w} is {n}.", "The {w} {w2} is {n} bytes.", "{W} is {n}.",
    "VAR {V} = {n}.", "VALUE = {n}.", "{W} VALUE {n}", "{w}: {n}", "set {w} to {n}.", "{W}={n}",
]
LOOKALIKE_NUMBERS = [1, 2, 4, 8, 16, 64, 80, 128, 443, 1024, 4096, 8080, 8192, 65536]  # sizes, ports


def _lookalike(rng, corpus, avoid=()):
    """One LOOKALIKE_T statement; its words are none of `avoid` (the asked keys' words), so it never
    answers the question."""
    w, w2 = rand_word(rng, corpus), rand_word(rng, corpus)
    while w in avoid or w2 in avoid:
        w, w2 = rand_word(rng, corpus), rand_word(rng, corpus)
    n = rand_number(rng) if rng.random() < 0.6 else str(rng.choice(LOOKALIKE_NUMBERS))
    V = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))
    return rng.choice(LOOKALIKE_T).format(w=w, w2=w2, W=w.upper(), V=V, n=n)


def _scatter(rng, fill, make, k):
    """Overwrite the filler at k random places with ' s ' for s = make(); the filler keeps its
    length. Returns the strings written, in order (a later one may overwrite part of an earlier one)."""
    n, out = len(fill), []
    for _ in range(k):
        st = make()
        x = b(" " + st + " ")
        if n < len(x):
            break
        p = rng.randrange(0, n - len(x) + 1)
        fill[p:p + len(x)] = x
        out.append(st)
    return out


def _add_lookalikes(rng, corpus, fill, keys):
    """2-16 statements that look like a value's place (LOOKALIKE_T) written into the filler, none
    with a word of `keys`."""
    avoid = set(w for k in keys for w in k.split("-"))
    return _scatter(rng, fill, lambda: _lookalike(rng, corpus, avoid), rng.randint(2, 16))


def _add_decoys(rng, fill, decoys):
    """2-24 copies of the decoy keys' words written into the filler as plain words (a key 'a-b'
    offers 'a', 'b' and 'a-b')."""
    words = sorted(set(w for k in decoys for w in [k] + k.split("-") if w))
    return _scatter(rng, fill, lambda: rng.choice(words), rng.randint(2, 24))


def _put_hubs(rng, hubs, out, lo, spans, avoid, S):
    """Overwrite filler in out[lo:] with 2-8 hub spans (bytes: context + one chunk of S), the chunk
    on a chunk boundary, touching no needle (spans) and no other hub, holding no byte string of
    `avoid` (the asked keys' words and the values). Returns the chunk indices written."""
    taken = sorted((s, e + 1) for s, e in spans if s is not None)  # + the separator space
    put = []
    for _ in range(rng.randint(2, 8)):
        h = hubs[rng.randrange(len(hubs))]
        if any(w in h for w in avoid):
            continue
        # chunk c holds the hub's chunk when its span starts at (c + 1) * S - len(h) >= lo and
        # ends at (c + 1) * S <= len(out)
        c0, c1 = (lo + len(h) - 1) // S, len(out) // S - 1
        if c1 < c0:
            break
        for _try in range(4):
            c = rng.randint(c0, c1)
            st, en = (c + 1) * S - len(h), (c + 1) * S
            if all(en <= a or st >= z for a, z in taken):
                out[st:en] = list(h)
                taken.append((st, en))
                put.append(c)
                break
    return put


def assemble(rng, corpus, L, needles, qas, S=64, filler="mix", bos=True, opts=None, ordered=True, marks=None,
             keys=None, lookalikes=False, finds=None, hubs_frac=None):
    """needles: list of byte-lists; qas: list of (question str, answer str, [needle indices]) or
    (question, answer, [needle indices], per-byte needle sets from answer_parts()).
    marks: per needle, the text that an answer copies from it (its value; every occurrence in the
    needle counts); with sup_span "value" only the chunks holding it are supervised.
    finds: per needle, the text it is found by when its mark comes first (vt: the key after " = "),
    or None; with opts sup_key the chunks of its (last) occurrence are supervised with the mark's.
    hubs_frac: the fraction of calls whose filler gets hubs (default: opts hubs when lookalikes).
    keys: the asked keys (meta["keys"]); with opts key_decoys, that fraction of calls also writes them
    into the filler as plain words (no rng use when it is 0 or keys is None). lookalikes: the filler
    may also hold statements that look like a value's place, without the keys' words (opts
    lookalikes: that fraction of calls; no rng use when it is 0 or lookalikes is False).
    Builds haystack + needles at random depths + query blocks; returns Sample.
    ordered: needle i goes to the i-th insertion point (chains, document-order answers); tail
    needles are then the last ones.  Otherwise the tail needles are any of them."""
    o = _opts(opts)
    tail = []
    ans_pos = []  # (start, end) positions in tail whose next token is answer/eos
    for qa in qas:
        q, a = qa[0], qa[1]
        tail += [QUERY] + b(q) + [ANSWER]
        st = len(tail) - 1  # the <answer> token predicts the first answer byte
        tail += b(a) + [EOS]
        ans_pos.append((st, len(tail) - 1))  # positions st .. len-2 predict a..eos
    head = [BOS] if bos else []
    n = len(needles)
    # tail_align (no rng use when it is 0: same samples): needle ia goes immediately before <query>
    # (after every other needle) and the sample ends with a pad of npad tokens after the last <eos>,
    # chosen so that <answer> of the first query block sits at offset r of its chunk with the value
    # (its last occurrence in the needle) in that same chunk, i.e. in the chunk that is still
    # incomplete there; no eligible chunk holds it until the answer crosses the next chunk boundary.
    ia, npad = None, 0
    if o["tail_align"] > 0 and n and rng.random() < o["tail_align"]:
        refs = set(qas[0][2])
        cand = [n - 1] if ordered else sorted(refs)  # ordered (chains): only the last needle can go
        cand = [i for i in cand if i in refs]
        if cand:
            i = rng.choice(cand)
            nd = needles[i]
            off, lv = _value_at(nd, marks[i] if marks is not None else None)
            q0 = len(b(qas[0][0]))
            d = (len(nd) - off) + 1 + 1 + q0  # value start -> <answer>: rest of needle, space, <query>, question
            if rng.random() < o["tail_align_straddle"]:
                lo, hi = max(0, d - lv + 1), min(S - 1, d - 1)  # value across the chunk boundary
            else:
                lo, hi = d, S - 1  # value entirely in the incomplete chunk
            if lo <= hi:
                r = rng.randint(lo, hi)
                a_nopad = L - len(tail) + 1 + q0
                ia, npad = i, (a_nopad - r) % S
    others = [i for i in range(n) if i != ia]
    nbytes = sum(len(x) for x in needles)
    Lh = L - len(tail) - len(head) - npad
    nf = Lh - nbytes - n  # one separator space per needle
    if nf < 0:
        raise ValueError("sequence too short for the needles")
    kind = filler if filler != "mix" else ("corpus" if rng.random() < 0.75 else "noise")
    fill = corpus.slice(rng, nf) if kind == "corpus" else noise_filler(rng, nf)
    decoy_words = None
    if keys and o["key_decoys"] > 0 and rng.random() < o["key_decoys"]:
        decoy_words = _add_decoys(rng, fill, keys)
    looks = None
    if lookalikes and o["lookalikes"] > 0 and rng.random() < o["lookalikes"]:
        looks = _add_lookalikes(rng, corpus, fill, keys or [])
    # which needles go to the end of the haystack (no rng use when tail_frac == 0: same samples)
    is_tail = {i: False for i in others}
    if o["tail_frac"] > 0 and others:
        flags = [rng.random() < o["tail_frac"] for _ in others]
        if ordered:
            k = sum(flags)
            is_tail = {i: j >= len(others) - k for j, i in enumerate(others)}
        else:
            is_tail = dict(zip(others, flags))
    norm_idx = [i for i in others if not is_tail[i]]
    tail_idx = [i for i in others if is_tail[i]]
    # insertion points in filler coordinates (sorted), snapped forward to a space/newline
    pts = sorted(rng.randrange(0, nf + 1) for _ in norm_idx)
    pts = sorted(_snap(fill, nf, p) for p in pts)
    span = o["tail_span"] if o["tail_span"] is not None else 3 * S
    tpts = []
    for _ in tail_idx:
        g = 0 if rng.random() < o["tail_zero"] else rng.randint(0, max(0, min(span, nf)))
        tpts.append(_snap(fill, nf, nf - g))
    tpts.sort()
    if ordered:  # needle i goes to the i-th point (keeps the given order, e.g. vt chains)
        allp = sorted(pts + tpts)
        pairs = list(zip(allp, others))
    else:
        pairs = sorted(list(zip(pts, norm_idx)) + list(zip(tpts, tail_idx)), key=lambda x: x[0])
    if ia is not None:
        pairs.append((nf, ia))  # last, immediately before the query block
    # value_align (no rng use when it is 0: same samples): per chosen needle, where in it the chunk
    # boundary goes: after the value (it ends at the chunk end) or inside it (it crosses the boundary)
    vcut = {}
    if o["value_align"] > 0 and marks is not None:
        for _, i in pairs:
            if i != ia and marks[i] and rng.random() < o["value_align"]:
                off, lv = _value_at(needles[i], marks[i])
                vcut[i] = off + (lv if (lv < 2 or rng.random() < 0.5) else rng.randint(1, lv - 1))
    out = list(head)
    spans = [None] * n
    prev = 0
    for k, (p, i) in enumerate(pairs):
        if i in vcut:  # move the insertion point (up to S-1 bytes, staying between its neighbours)
            cut = len(out) + (p - prev) + vcut[i]
            fwd = (-cut) % S
            nxt = pairs[k + 1][0] if k + 1 < len(pairs) else nf
            if fwd and p + fwd <= nxt:
                p += fwd
            elif fwd and p - (S - fwd) >= prev:
                p -= S - fwd
        out += fill[prev:p].tolist()
        start = len(out)
        out += needles[i] + [32]
        spans[i] = (start, start + len(needles[i]))
        prev = p
    out += fill[prev:].tolist()
    hubs = None
    if hubs_frac is None:
        hubs_frac = o["hubs"] if lookalikes else 0.0
    if hubs_frac > 0 and corpus.hubs and rng.random() < hubs_frac:
        avoid = [w.encode() for k in (keys or []) for w in k.split("-")]
        avoid += [mk.encode() for mk in (marks or []) if mk]
        hubs = _put_hubs(rng, corpus.hubs, out, len(head), spans, avoid, S)
    base = len(out)
    out += tail
    if npad:  # the next document starts after the last <eos> (LM loss only)
        pf = corpus.slice(rng, npad - 1) if kind == "corpus" else noise_filler(rng, npad - 1)
        out += [BOS] + pf.tolist()
    assert len(out) == L, (len(out), L)
    toks = np.array(out, dtype=np.int64)
    ans = np.zeros(L, dtype=bool)
    sup = []
    pos_needles = {}
    cross = []  # answer positions that predict the first byte of a chunk inside a value (_crosses)

    # the byte ranges whose chunks are supervised, per needle
    sspans = [[sp] for sp in spans]
    if o["sup_span"] == "value" and marks is not None:
        for i, mk in enumerate(marks):
            if not mk:
                continue
            hay, m, r, k = needles[i], b(mk), [], 0
            while True:
                k = _find(hay, m, k)
                if k < 0:
                    break
                r.append((spans[i][0] + k, spans[i][0] + k + len(m)))
                k += len(m)
            if r:
                sspans[i] = r

    kspans = [[] for _ in spans]  # sup_key: the byte range of each needle's key
    if o["sup_key"] and finds is not None:
        for i, fd in enumerate(finds):
            key = b(fd) if fd else None
            k = _rfind(needles[i], key) if key else -1
            if k >= 0:
                kspans[i] = [(spans[i][0] + k, spans[i][0] + k + len(key))]

    def chunks_of(idx):
        return sorted(set(c for i in idx for s, e in sspans[i] + kspans[i] for c in range(s // S, (e - 1) // S + 1)))

    def after_chunks(idx):  # the chunk after a value that ends at a chunk end
        return set(e // S for i in idx for s, e in sspans[i] if e % S == 0)

    for (st, en), qa in zip(ans_pos, qas):
        nidx = qa[2]
        segs = qa[3] if len(qa) > 3 and o["sup"] == "per-pos" else None
        if segs is not None:
            assert len(segs) == en - st, (len(segs), en - st)
        for j, t in enumerate(range(base + st, base + en)):
            ans[t] = True
            idx = segs[j] if segs is not None else nidx
            pos_needles[t] = list(idx)
            cs = chunks_of(idx)
            if o["sup_after"] and toks[t + 1] in VALUE_END:
                cs = sorted(set(cs) | after_chunks(idx))
            el = [c for c in cs if (c + 1) * S <= t]
            if el:
                sup.append((t, el))
            if _crosses(toks, t, base + st + 1, idx, sspans, S):
                cross.append(t)
    meta = dict(spans=spans, sup_spans=sspans, pos_needles=pos_needles, cross=cross,
                tail=[i for i in others if is_tail[i]] + ([ia] if ia is not None else []), base=base,
                align=ia, pad=npad, keys=keys, decoys=decoy_words, lookalikes=looks, hubs=hubs)
    return Sample(toks, ans, sup, None, [qa[1] for qa in qas], meta)


# ---- families -------------------------------------------------------------------------------------

def fam_passkey(rng, corpus, L, S, opts=None):
    v = rand_number(rng)
    nd = rng.choice(PASSKEY_NEEDLE).format(v=v)
    needles = [b(nd)]
    o = _opts(opts)
    if o["passkey_codes"] > 0 and rng.random() < o["passkey_codes"]:  # (no rng use when it is 0)
        needles += [b(code_statement(rng, corpus, v)) for _ in range(rng.randint(1, 4))]
    return assemble(rng, corpus, L, needles, [(rng.choice(PASSKEY_Q), v, [0])], S, opts=opts,
                    marks=[v] + [None] * (len(needles) - 1), ordered=len(needles) == 1)


CODE_T = [  # passkey_codes: other codes stated near a pass key; the first is the demo archive's shape
    "The {w} access code is {c}. The special magic number for the {w} is {c}.",
    "The {w} access code is {c}.",
    "The code for the {w} is {c}.",
    "The {w} PIN is {c}.",
    "Door code for the {w}: {c}.",
]


def code_statement(rng, corpus, avoid, template=None):
    """One CODE_T statement (template: that one, else drawn): a code for a two-word thing, a number
    other than `avoid` (4-7 digits). probe_boundary.py --probe passkey writes the demo's shape."""
    w = "%s %s" % (rand_word(rng, corpus), rand_word(rng, corpus))
    c = avoid
    while c == avoid:
        c = rand_number(rng)[:rng.randint(4, 7)]
    return (template or rng.choice(CODE_T)).format(w=w, c=c)


def _kv_needle(rng, kind, key, value):
    return rng.choice(NEEDLE_T).format(kind=kind, key=key, value=value)


def fam_niah(rng, corpus, L, S, kind=None, opts=None):
    kind = kind or rng.choice(["number", "number", "word", "uuid"])
    kname, gen = VALUE_KINDS[kind]
    key = rand_key(rng, corpus)
    v = gen(rng, corpus)
    nd = _kv_needle(rng, kname, key, v)
    q = rng.choice(QUESTION_T).format(kind=kname, key=key)
    o = _opts(opts)
    if o["value_echo"] > 0 and rng.random() < o["value_echo"]:  # (no rng use when it is 0: same samples)
        nd = rng.choice(ECHO_T).format(key=key, value=v) + " " + nd
    return assemble(rng, corpus, L, [b(nd)], [(q, v, [0])], S, opts=o, marks=[v], keys=[key],
                    lookalikes=True)


def pin_hash_seed():
    """Run this process under PYTHONHASHSEED=0, re-executing it once if it was started without:
    _distinct_keys iterates a set of strings, so the multikey / multiquery / multivalue samples
    depend on the hash seed, and every haystack in docs/ was made with 0. Scripts that make samples
    call this before main(); the library itself never does."""
    if os.environ.get("PYTHONHASHSEED") == "0":
        return
    import sys
    os.environ["PYTHONHASHSEED"] = "0"
    argv = list(getattr(sys, "orig_argv", [])) or [sys.executable] + sys.argv
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable] + argv[1:])


def _distinct_keys(rng, corpus, n):
    ks = set()
    while len(ks) < n:
        ks.add(rand_key(rng, corpus))
    ks = list(ks)
    rng.shuffle(ks)
    return ks


def fam_multikey(rng, corpus, L, S, nq=1, opts=None):
    kind = rng.choice(["number", "number", "word", "uuid"])
    kname, gen = VALUE_KINDS[kind]
    n = rng.randint(max(2, nq), 8)
    keys = _distinct_keys(rng, corpus, n)
    vals = [gen(rng, corpus) for _ in keys]
    tmpl = rng.choice(NEEDLE_T)  # same template for all: distractors look alike
    needles = [b(tmpl.format(kind=kname, key=k, value=v)) for k, v in zip(keys, vals)]
    asked = rng.sample(range(n), nq)
    # every query block is supervised with its own needle only
    qas = [(rng.choice(QUESTION_T).format(kind=kname, key=keys[i]), vals[i], [i]) for i in asked]
    return assemble(rng, corpus, L, needles, qas, S, opts=opts, ordered=False, marks=vals,
                    keys=[keys[i] for i in asked], lookalikes=True)


def fam_multiquery(rng, corpus, L, S, opts=None):
    return fam_multikey(rng, corpus, L, S, nq=rng.randint(2, 4), opts=opts)


def fam_multivalue(rng, corpus, L, S, opts=None):
    o = _opts(opts)
    kind = rng.choice(["number", "number", "word"])
    kname, gen = VALUE_KINDS[kind]
    key = rand_key(rng, corpus)
    nv = rng.randint(2, 4)
    vals = [gen(rng, corpus) for _ in range(nv)]
    sorted_ans = o["mv_order"] == "sorted"
    if sorted_ans:  # distinct values, so that the order and the per-value supervision are defined
        seen = set()
        for i in range(nv):
            while vals[i] in seen:
                vals[i] = gen(rng, corpus)
            seen.add(vals[i])
    needles = [b(_kv_needle(rng, kname, key, v)) for v in vals]
    marks = list(vals)
    # a distractor key or two
    nd = rng.randint(0, 2)
    for k in _distinct_keys(rng, corpus, nd + 1)[:nd]:
        if k != key:
            needles.append(b(_kv_needle(rng, kname, k, gen(rng, corpus))))
            marks.append(None)
    q = rng.choice(MV_QUESTION_T).format(kind=kname, key=key)
    if sorted_ans:
        # the answer lists the values in byte order (RULER scores multi-value as a set; a content-
        # defined order is one the model can infer from the retrieved chunks, document order is
        # not: HSA has no positions).  The needles, distractors included, go in random order.
        perm = list(range(len(needles)))
        rng.shuffle(perm)  # perm[j] = original needle placed j-th
        inv = {orig: j for j, orig in enumerate(perm)}
        needles = [needles[orig] for orig in perm]
        marks = [marks[orig] for orig in perm]
        order = sorted(range(nv), key=lambda i: vals[i])
        parts = [(vals[i], [inv[i]]) for i in order]
        a, segs = answer_parts(parts, ", ")
        return assemble(rng, corpus, L, needles, [(q, a, sorted(inv[i] for i in range(nv)), segs)], S,
                        opts=o, ordered=False, marks=marks)
    # "doc": assemble keeps needle i at the i-th insertion point: the values appear in order
    a, segs = answer_parts([(v, [i]) for i, v in enumerate(vals)], ", ")
    return assemble(rng, corpus, L, needles, [(q, a, list(range(nv)), segs)], S, opts=o, marks=marks)


# vt assignment syntaxes: (a value assigned, a name assigned); the first is the evaluation's
VT_SYNTAX = [
    ("VAR {x} = {v}.", "VAR {x} = VAR {y}."),
    ("let {x} = {v};", "let {x} = {y};"),
    ("{x} := {v}.", "{x} := {y}."),
    ("set {x} to {v}.", "set {x} to {y}."),
    ("{x} = {v}", "{x} = {y}"),
]


def _varname(rng):
    return "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(5))


def fam_vt(rng, corpus, L, S, opts=None):
    o = _opts(opts)
    if o["vt_align"] > o["value_align"]:
        o["value_align"] = o["vt_align"]
    if o["vt_hops"]:
        w = list(o["vt_hops"])
        hops = rng.choices(range(1, len(w) + 1), weights=w)[0]
    else:
        hops = rng.randint(1, 3)
    v = rand_number(rng)
    names = []
    while len(names) < hops + 1:
        nm = _varname(rng)
        if nm not in names:
            names.append(nm)
    # the syntax (no rng use when vt_syntax is 0: the same samples as before it existed)
    val_t, link_t = VT_SYNTAX[0]
    if o["vt_syntax"] > 0 and rng.random() < o["vt_syntax"]:
        val_t, link_t = rng.choice(VT_SYNTAX[1:])
    chain = [b(val_t.format(x=names[0], v=v))]
    for i in range(1, hops + 1):
        chain.append(b(link_t.format(x=names[i], y=names[i - 1])))
    # distractor assignments "VAR D = n.", each at a random place among the chain's links (kept in
    # order): one with an unrelated value by default; with vt_distractors (lo, hi), lo..hi of them,
    # vt_look_alike (half) of them with a look-alike value (the asked value's first digits, then others)
    look = o["vt_distractors"] is not None
    needles, ci = list(chain), list(range(hops + 1))  # ci[i]: needle index of chain link i
    for _ in range(rng.randint(*o["vt_distractors"]) if look else 1):
        v2 = rand_number(rng)
        if look:
            if rng.random() < o["vt_look_alike"] and len(v) > 2:
                keep = rng.randint(2, len(v) - 1)
                v2 = v[:keep] + v2[keep:] if len(v2) > keep else v[:keep] + v2
            while v2 == v:
                v2 = rand_number(rng)
        d = _varname(rng)
        while d in names:
            d = _varname(rng)
        dpos = rng.randint(0, len(needles))
        needles.insert(dpos, b(val_t.format(x=d, v=v2)))
        ci = [c if c < dpos else c + 1 for c in ci]
    marks, finds = [None] * len(needles), [None] * len(needles)
    for i in range(hops + 1):
        marks[ci[i]] = names[i]  # the name that link i introduces (its left-hand side)
        finds[ci[i]] = v if i == 0 else names[i - 1]  # what it is found by (its right-hand side)
    q = rng.choice(VT_Q).format(v=v)
    # emitting name i needs the assignment that introduces it: link 0 (found by the value), then
    # link i ("VAR names[i] = VAR names[i-1]", found by the name just emitted)
    a, segs = answer_parts([(names[i], [ci[i]]) for i in range(hops + 1)], " ",
                           trail=" " if o["vt_trail"] else "")
    return assemble(rng, corpus, L, needles, [(q, a, ci, segs)], S, opts=o, marks=marks, finds=finds,
                    hubs_frac=o["vt_hubs"])


def fam_lm(rng, corpus, L, S, opts=None):
    toks = np.concatenate([[BOS], corpus.slice(rng, L - 1).astype(np.int64)])
    return Sample(toks, np.zeros(L, dtype=bool), [], None, [])


COPY_WINDOW = 120  # a copied byte's source is at most this far back (the SWA window is 128)


def _copy_string(rng, corpus):
    """A string for the copy family, 5..16 bytes: the shapes of the needle values (numbers, words,
    uuid parts, key-value pairs) and plain random [a-z0-9] strings."""
    k = rng.random()
    if k < 0.25:
        s = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(rng.randint(5, 14)))
    elif k < 0.45:
        s = str(rng.randrange(10 ** 4, 10 ** rng.randint(5, 12)))
    elif k < 0.6:
        s = ("%032x" % rng.getrandbits(128))[:rng.randint(6, 16)]
    elif k < 0.8:
        s = rand_key(rng, corpus)
        while len(s) < 5:
            s += " " + rand_word(rng, corpus)
    else:
        s = "%s is %s" % (rand_word(rng, corpus), rand_number(rng))
    return s[:16]


def fam_copy(rng, corpus, L, S, opts=None):
    """In-window copying (induction): corpus text in which 4..8 random strings X (5..16 bytes) each
    reappear after a gap G of filler, with len(X) + G <= COPY_WINDOW, so every repeated byte's source
    is inside the 128-token sliding window; often in the chunk that is still incomplete (only the
    window can copy it), sometimes in the previous, completed one.  Answer loss on X[2:] of each
    repeat (positions s2+1 .. s2+len-2: the first two bytes identify which string repeats).  No
    retrieval supervision.  The needle families taught HSA to copy; this teaches the window, which
    must copy a value that sits in the incomplete chunk (eval dist 0).  With opts copy_in_chunk = p, a
    fraction p of the pairs sits inside one chunk (X of 5..12 bytes, both occurrences within the same
    S bytes): the first fine-tune showed the model learning to copy through HSA from completed chunks
    only (tools/train/probe_window.py part a), so these pairs leave the window as the only path."""
    o = _opts(opts)
    toks = np.concatenate([[BOS], corpus.slice(rng, L - 1).astype(np.int64)])
    ans = np.zeros(L, dtype=bool)
    npairs = min(rng.randint(4, 8), (L - 1) // (2 * COPY_WINDOW))
    if npairs < 1:
        raise ValueError("sequence too short for the copy family")
    seg = (L - 1) // npairs
    spans, strings = [], []
    for i in range(npairs):
        x = b(_copy_string(rng, corpus))
        if o["copy_in_chunk"] > 0 and rng.random() < o["copy_in_chunk"]:
            x = x[:rng.randint(5, 12)]
            g = rng.randint(2, S - 2 * len(x))
            span = 2 * len(x) + g
            c = (1 + i * seg + S - 1) // S                 # first chunk starting inside the segment
            s1 = c * S + rng.randint(0, S - span)
            s2 = s1 + len(x) + g
        else:
            g = rng.randint(2, COPY_WINDOW - len(x))
            span = 2 * len(x) + g
            s1 = 1 + i * seg + rng.randint(0, seg - span)
            s2 = s1 + len(x) + g
        toks[s1:s1 + len(x)] = x
        toks[s2:s2 + len(x)] = x
        ans[s2 + 1:s2 + len(x) - 1] = True  # position t predicts token t+1 = X[t-s2+1], i.e. X[2:]
        spans.append((s1, s2, len(x)))
        strings.append(bytes(x).decode())
    return Sample(toks, ans, [], None, strings, meta=dict(copies=spans))


FAMILIES = {
    "passkey": fam_passkey, "niah": fam_niah, "multikey": fam_multikey, "multiquery": fam_multiquery,
    "multivalue": fam_multivalue, "vt": fam_vt, "lm": fam_lm, "copy": fam_copy,
}

DEFAULT_MIX = {"passkey": 0.12, "niah": 0.28, "multikey": 0.2, "multiquery": 0.15, "multivalue": 0.1,
               "vt": 0.1, "lm": 0.05}


def make_sample(rng, corpus, L, S=64, mix=None, opts=None):
    """One training sample of a family drawn from mix; opts: data options (default DEFAULT_OPTS,
    train.py passes TRAIN_OPTS plus its flags)."""
    mix = mix or DEFAULT_MIX
    names = list(mix)
    fam = rng.choices(names, weights=[mix[n] for n in names])[0]
    for _ in range(10):
        try:
            s = FAMILIES[fam](rng, corpus, L, S, opts=opts)
            break
        except ValueError:  # too many needles for a short sequence: fall back to one needle
            fam = "niah"
    s.family = fam
    return s


def collate(samples):
    """-> dict of numpy arrays: tokens [B,L], ans [B,L] bool, sup_b/sup_t [N] int, sup_tgt [N,C] bool,
    cross [B,L] bool (meta["cross"]: positions predicting a value's first byte in a new chunk)."""
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
    cross = np.zeros((B, L), dtype=bool)
    for i, s in enumerate(samples):
        cross[i, s.meta.get("cross", [])] = True
    return dict(tokens=toks, ans=ans, sup_b=np.array(sb, dtype=np.int64), sup_t=np.array(st, dtype=np.int64),
                sup_tgt=tg, cross=cross)


def eval_sample(rng, corpus, L, S=64, kind="number", depth=None, dist=None):
    """One single-needle (niah-number) haystack of exactly L tokens.  The needle sits at relative
    depth `depth` of the filler (1.0: immediately before the query block), or, with dist, it ends
    `dist` filler bytes before the query block (dist=0 is depth 1.0).
    -> tokens, position of <answer>, number of answer tokens incl. <eos>, needle chunks, value."""
    kname, gen = VALUE_KINDS[kind]
    key = rand_key(rng, corpus)
    v = gen(rng, corpus)
    nd = b("The special magic %s for %s is %s." % (kname, key, v))
    q = "What is the special magic %s for %s?" % (kname, key)
    tail = [QUERY] + b(q) + [ANSWER] + b(v) + [EOS]
    Lh = L - len(tail) - 1
    nf = Lh - len(nd) - 1
    fill = corpus.slice(rng, nf)
    if dist is not None:
        p = max(0, nf - int(dist))
    else:
        d = rng.random() if depth is None else depth
        p = int(d * nf)
    # [BOS] fill[:p] needle ' ' fill[p:] tail, built with numpy (a 16M list took seconds)
    parts = [np.array([BOS], np.int64), fill[:p].astype(np.int64), np.array(nd + [32], np.int64),
             fill[p:].astype(np.int64)]
    needle_chunks = list(range((1 + p) // S, (1 + p + len(nd) - 1) // S + 1))
    base = sum(len(x) for x in parts)
    toks = np.concatenate(parts + [np.array(tail, np.int64)])
    a0 = base + 1 + len(b(q))  # position of <answer>
    return toks, a0, len(v) + 1, needle_chunks, v
