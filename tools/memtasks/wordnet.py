"""A small reader of the WordNet 3.0 database files (Debian package `wordnet-base`).

Only what the memory-task generators need: the synsets of a lemma, their lemmas (synonyms),
hypernyms and hyponyms (instances included), read straight from /usr/share/wordnet/data.* and
index.*.  (NLTK's reader wants files Debian does not ship, such as `lexnames`.)

    wn = WordNet()                       # WordNetError if the files are missing
    wn.synonyms("car")                   # ['car', 'auto', 'automobile', 'machine', 'motorcar', ...]
    wn.hyponym_lemmas("dog", depth=2)    # breeds
    wn.instances("city")                 # named cities
"""
import os

POS = {"n": "noun", "v": "verb", "a": "adj", "r": "adv"}


class WordNetError(Exception):
    pass


class WordNet:
    def __init__(self, root="/usr/share/wordnet"):
        self.root = root
        self._index = {}   # (pos, lemma) -> [offsets]
        self._data = {}    # pos -> {offset: (lemmas, pointers)}
        for pos in ("n", "v", "a"):
            if not os.path.exists(os.path.join(root, "index." + POS[pos])):
                raise WordNetError("WordNet files not found under %s (apt-get install wordnet-base)" % root)

    def _load(self, pos):
        if pos in self._data:
            return
        data = {}
        with open(os.path.join(self.root, "data." + POS[pos]), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue   # licence header
                head = line.split(" | ", 1)[0].split()
                off = int(head[0])
                wcnt = int(head[3], 16)
                lemmas = [head[4 + 2 * i] for i in range(wcnt)]
                i = 4 + 2 * wcnt
                pcnt = int(head[i])
                ptrs = []
                for k in range(pcnt):
                    sym, poff, ppos = head[i + 1 + 4 * k], int(head[i + 2 + 4 * k]), head[i + 3 + 4 * k]
                    ptrs.append((sym, poff, "a" if ppos == "s" else ppos))
                data[off] = (lemmas, ptrs)
        self._data[pos] = data
        index = {}
        with open(os.path.join(self.root, "index." + POS[pos]), encoding="latin-1") as f:
            for line in f:
                if line.startswith("  "):
                    continue
                parts = line.split()
                nsyn = int(parts[2])
                index[parts[0]] = [int(x) for x in parts[-nsyn:]]
        self._index.update({(pos, k): v for k, v in index.items()})

    def synsets(self, lemma, pos="n"):
        self._load(pos)
        return self._index.get((pos, lemma.lower().replace(" ", "_")), [])

    def lemmas(self, off, pos="n"):
        self._load(pos)
        return [w.split("(")[0].replace("_", " ") for w in self._data[pos][off][0]]

    def synonyms(self, lemma, pos="n", senses=1):
        out = []
        for off in self.synsets(lemma, pos)[:senses]:
            for w in self.lemmas(off, pos):
                if w not in out:
                    out.append(w)
        return out

    def related(self, off, syms, pos="n"):
        self._load(pos)
        return [p for s, p, pp in self._data[pos][off][1] if s in syms and pp == pos]

    def hyponym_lemmas(self, lemma, pos="n", depth=1, senses=1, first_only=True):
        """Lemmas of the hyponyms (and instances) of `lemma`'s first senses, down to `depth`."""
        seen, out = set(), []
        frontier = list(self.synsets(lemma, pos)[:senses])
        for _ in range(depth):
            nxt = []
            for off in frontier:
                for h in self.related(off, ("~", "~i"), pos):
                    if h in seen:
                        continue
                    seen.add(h)
                    nxt.append(h)
                    names = self.lemmas(h, pos)
                    for w in names[:1] if first_only else names:
                        if w not in out:
                            out.append(w)
            frontier = nxt
        return out

    def instances(self, lemma, pos="n", senses=1):
        out = []
        for off in self.synsets(lemma, pos)[:senses]:
            for h in self.related(off, ("~i",), pos):
                w = self.lemmas(h, pos)[0]
                if w not in out:
                    out.append(w)
        return out

    def hypernyms(self, lemma, pos="n", senses=1):
        out = []
        for off in self.synsets(lemma, pos)[:senses]:
            for h in self.related(off, ("@", "@i"), pos):
                for w in self.lemmas(h, pos)[:1]:
                    if w not in out:
                        out.append(w)
        return out
