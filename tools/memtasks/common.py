"""What the memory-task generators share: the split rule, surface variation, scoring.

Generalisation is measured, not hoped for, so every generator draws from two disjoint halves:

  split "train":  what training sees (template families, fact types, domains, entity values);
  split "held":   what only evaluation sees.  Never tune on it.

An evaluation set is built twice from the same code: "seen" questions use train-split families
with fresh random instances, "unseen" questions use held-out families, fact types and domains.
Entity values (names, cities, ...) are split too, by a hash of the value: a held-out value never
appears in training data.

Scoring reads the answer text only (never the evidence a query prints with it):
  right     the normalised gold answer (or one of its accepted forms) occurs in the normalised
            answer, and the answer is not much longer than the gold (no credit for dumping text);
  abstain   the answer is the fixed abstention reply (ABSTAIN), nothing else.
"""
import hashlib
import random
import re
import unicodedata

ABSTAIN = "I don't know."


def value_split(value, held_share=0.25):
    """'held' for a fixed quarter of all values (by hash), else 'train'."""
    h = int.from_bytes(hashlib.sha256(value.lower().encode()).digest()[:4], "big")
    return "held" if (h % 1000) < held_share * 1000 else "train"


def pool(values, split):
    """The values of one split; split None = all."""
    vals = sorted(set(values))
    return vals if split is None else [v for v in vals if value_split(v) == split]


def families(templates, split, n_held):
    """Template families of a split: the last n_held are held out."""
    if split is None:
        return templates
    return templates[-n_held:] if split == "held" else templates[:-n_held]


# ---- surface variation: what people do to a sentence --------------------------------------------

def typo(word, rng):
    if len(word) < 4 or not word.isalpha():
        return word
    i = rng.randrange(1, len(word) - 1)
    kind = rng.randrange(3)
    if kind == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]   # swap
    if kind == 1:
        return word[:i] + word[i + 1:]                          # drop
    return word[:i] + word[i] + word[i:]                         # double


def roughen(text, rng, protect=(), p_typo=0.15, p_lower=0.2, p_nopunct=0.2):
    """People's spelling: a typo in a word that is not part of the answer, lower case, no '?'."""
    if rng.random() < p_typo:
        words = text.split(" ")
        idx = [i for i, w in enumerate(words) if w.isalpha() and len(w) >= 4
               and not any(w.lower() in p.lower() for p in protect)]
        if idx:
            i = rng.choice(idx)
            words[i] = typo(words[i], rng)
            text = " ".join(words)
    if rng.random() < p_lower:
        keep = [p for p in protect if p and p in text]
        text = text.lower()
        for p in keep:   # the answer keeps its case
            text = text.replace(p.lower(), p)
    if rng.random() < p_nopunct and text.endswith(("?", ".")):
        text = text[:-1]
    return text


# Words people swap in questions: hand-picked from the WordNet 3.0 synsets (and hypernyms) of the
# templates' content words (Debian wordnet-base; the raw synsets also hold "bozo" for cat). Each
# (word, synonym) pair is split by hash like the values: a held-out pair is never trained on.
SYNONYMS = {
    "dog": ["pup", "doggy", "pooch", "puppy"], "cat": ["kitty", "kitten"], "job": ["occupation", "profession",
    "line of work"], "car": ["auto", "automobile", "vehicle"], "favorite": ["favourite", "preferred",
    "best-loved"], "movie": ["film", "picture"], "doctor": ["physician", "doc"], "email": ["e-mail"],
    "phone": ["telephone"], "license": ["licence"], "version": ["release", "edition"], "department":
    ["division", "section"], "hobby": ["pastime", "pursuit"], "city": ["town"], "company": ["firm",
    "business"], "buy": ["purchase"], "visit": ["see"], "homepage": ["home page", "website", "web page"],
    "appointment": ["booking"], "code": ["combination", "number"], "password": ["passcode"], "food":
    ["dish", "meal"], "book": ["novel"], "port": ["port number"], "command":
    ["program", "tool"], "house": ["home"], "kid": ["child"], "child": ["kid"], "partner": ["significant other"],
    "mom": ["mother", "mum"], "dad": ["father"], "trip": ["journey", "vacation"], "countries": ["nations"],
    "maintains": ["looks after"], "package": ["software package"], "service": ["daemon"],
    "remind": ["tell"], "music": ["songs"], "number": ["no."],
}


def synonymize(text, rng, split, p=0.35, protect=()):
    """With probability p, one word of `text` that SYNONYMS knows becomes one of its synonyms of
    the split (the pair's hash decides: common.value_split)."""
    if rng.random() >= p:
        return text
    words = text.split(" ")
    cands = []
    for i, w in enumerate(words):
        core = w.lower().rstrip("?.,!")
        core = core[:-2] if core.endswith("'s") else core
        if core in SYNONYMS and not any(core in x.lower() for x in protect):
            syns = [y for y in SYNONYMS[core] if split is None or value_split(core + ">" + y) == split]
            if syns:
                cands.append((i, core, syns))
    if not cands:
        return text
    i, core, syns = rng.choice(cands)
    w = words[i]
    j = w.lower().find(core)
    rep = rng.choice(syns)
    if w[j:j + 1].isupper():
        rep = rep[0].upper() + rep[1:]
    words[i] = w[:j] + rep + w[j + len(core):]
    return " ".join(words)


NUM_WORDS = "zero one two three four five six seven eight nine ten eleven twelve".split()


def number_forms(n):
    """'3' -> ['3', 'three']: both are right answers."""
    out = [str(n)]
    if 0 <= n < len(NUM_WORDS):
        out.append(NUM_WORDS[n])
    return out


MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
          "October", "November", "December"]


def date_forms(y, m, d):
    """The ways a date may be written in an answer; any one of them is right."""
    mon = MONTHS[m - 1]
    return ["%04d-%02d-%02d" % (y, m, d), "%s %d, %d" % (mon, d, y), "%d %s %d" % (d, mon, y),
            "%s %d" % (mon, d), "%d %s" % (d, mon), "%d/%d/%d" % (m, d, y), "%s %s" % (mon, ordinal(d))]


def ordinal(n):
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return "%d%s" % (n, suffix)


# ---- scoring ------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_NONWORD = re.compile(r"[^0-9a-z]+")


def normalise(s):
    s = unicodedata.normalize("NFKC", s).lower()
    s = _ARTICLES.sub(" ", s)
    return " ".join(_NONWORD.sub(" ", s).split())


def is_abstention(answer):
    return normalise(answer) == normalise(ABSTAIN)


def score(answer, golds, kind="fact"):
    """True when `answer` is right for a question whose accepted answers are `golds`.

    kind "absent": right only when the answer abstains.  kind "list": every item of golds[0]
    (a list of accepted-form lists) must occur.  Otherwise: any accepted form occurs and the
    answer is at most max(2x, +40 chars) of that form's length."""
    if kind == "absent":
        return is_abstention(answer)
    a = normalise(answer)
    if not a or is_abstention(answer):
        return False
    if kind == "list":
        items = golds
        return all(any(normalise(g) and normalise(g) in a for g in forms) for forms in items) and \
            len(a) <= 2 * sum(min(len(normalise(g)) for g in forms) for forms in items) + 60
    for g in golds:
        n = normalise(g)
        if n and re.search(r"(^| )" + re.escape(n) + r"($| )", a) and len(a) <= max(2 * len(n), len(n) + 40):
            return True
    return False


def seeded(*parts):
    return random.Random(hashlib.sha256("/".join(map(str, parts)).encode()).digest())
