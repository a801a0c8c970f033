#!/usr/bin/env python3
"""Gather English text from the Debian packages installed on this machine into one corpus file.

Nothing is downloaded.  Sources (in this order, each document deduplicated by content hash):
  /usr/share/common-licenses/*, /usr/share/doc/**/{README*,*.txt,NEWS*,*.md,copyright,...}
  (gzipped or not), /usr/share/info/*.gz, man pages (/usr/share/man/man{1,5,7,8}/*.gz, troff
  markup stripped), docstrings of the Python standard library (/usr/lib/python3*/).
Cleaned to printable ASCII + newlines; documents separated by a blank line.

  python3 tools/train/make_corpus.py --out .carry/corpus.txt --max-mb 16
writes .carry/corpus.txt and .carry/corpus.txt.gz (the gzipped copy is what travels to the GPU).

  python3 tools/train/make_corpus.py --out .carry/heldout.txt --max-mb 8 --exclude .carry/corpus.txt
writes held-out text: documents of the same sources that the training corpus does not hold, for
checking that what training learned about the corpus's text generalizes.
"""
import argparse
import ast
import glob
import gzip
import hashlib
import os
import random
import re
import sys
import unicodedata

_CTRL = re.compile(r"[^\x20-\x7e\n]")


def to_ascii(s):
    s = s.replace("\t", "    ").replace("\r\n", "\n").replace("\r", "\n")
    s = unicodedata.normalize("NFKD", s)
    s = s.encode("ascii", "ignore").decode("ascii")
    s = _CTRL.sub("", s)
    lines = [ln.rstrip() for ln in s.split("\n")]
    out, blank = [], 0
    for ln in lines:
        if not ln.strip():
            blank += 1
            if blank > 1:
                continue
            out.append("")
        else:
            blank = 0
            out.append(ln)
    return "\n".join(out).strip() + "\n"


def read_any(path, limit=400_000):
    try:
        if path.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                b = f.read(limit)
        else:
            with open(path, "rb") as f:
                b = f.read(limit)
    except (OSError, EOFError, gzip.BadGzipFile if hasattr(gzip, "BadGzipFile") else OSError):
        return None
    if b"\x00" in b[:4096]:
        return None
    return b.decode("utf-8", "ignore")


# --- troff -> text (good enough for prose) ------------------------------------------------------
_ESC = [
    (re.compile(r"\\f[BIRPC0-9]|\\f\(..|\\f\[[^\]]*\]"), ""),
    (re.compile(r"\\\((em|en)"), "-"),
    (re.compile(r"\\\((lq|rq|oq|cq)"), '"'),
    (re.compile(r"\\\(..|\\\[[^\]]*\]"), ""),
    (re.compile(r"\\[*]\(..|\\[*]\[[^\]]*\]|\\[*].") , ""),
    (re.compile(r"\\s[+-]?\d+"), ""),
    (re.compile(r"\\[&|^%:~0 ]"), " "),
    (re.compile(r"\\-"), "-"),
    (re.compile(r"\\e"), "\\\\"),
    (re.compile(r"\\[cd]"), ""),
    (re.compile(r"\\n\(..|\\n\[[^\]]*\]|\\n."), ""),
]


def strip_troff(src):
    out = []
    for ln in src.split("\n"):
        if ln.startswith(('.\\"', "'\\\"", '.\\\\"')):
            continue
        if ln.startswith(".") or ln.startswith("'"):
            m = re.match(r"[.'](\w+)\s*(.*)", ln)
            if not m:
                continue
            req, arg = m.group(1), m.group(2)
            if req in ("SH", "SS"):
                out.append("")
                out.append(arg.strip('"'))
            elif req in ("B", "I", "BI", "IB", "BR", "RB", "IR", "RI", "SM", "SB"):
                out.append(" ".join(a.strip('"') for a in re.findall(r'"[^"]*"|\S+', arg)).replace('" "', ""))
            elif req in ("PP", "P", "LP", "TP", "IP", "sp", "br"):
                out.append("")
                if req == "IP" and arg:
                    out.append(arg.split('"')[1] if arg.startswith('"') and arg.count('"') >= 2 else arg.split(" ")[0])
            elif req in ("Nm", "Nd", "Ar", "Fl", "Pa", "Xr", "Sh", "It", "Op", "Dq", "Ql"):
                out.append(arg)
            continue
        out.append(ln)
    s = "\n".join(out)
    for pat, rep in _ESC:
        s = pat.sub(rep, s)
    s = s.replace("\\", "")
    return s


def python_docstrings(path):
    try:
        src = open(path, encoding="utf-8", errors="ignore").read()
        tree = ast.parse(src)
    except (SyntaxError, ValueError, OSError, RecursionError):
        return None
    docs = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            d = ast.get_docstring(node)
            if d and len(d) > 80:
                docs.append(d)
    return "\n\n".join(docs) if docs else None


def english_enough(s):
    if len(s) < 200:
        return False
    letters = sum(c.isalpha() for c in s)
    spaces = s.count(" ")
    return letters / len(s) > 0.55 and spaces / len(s) > 0.08


GROUP_SHARE = {"licenses": 0.02, "doc": 0.45, "info": 0.08, "man": 0.30, "python-docstrings": 0.15}
PER_DOC = 60_000


def gather(max_bytes, log=print):
    seen = set()
    docs = []
    total = 0

    def add(text, src):
        nonlocal total
        if text is None:
            return
        t = to_ascii(text)[:PER_DOC]
        if not english_enough(t):
            return
        h = hashlib.sha1(t.encode()).digest()
        if h in seen:
            return
        seen.add(h)
        docs.append(t)
        total += len(t) + 1

    groups = []
    groups.append(("licenses", sorted(glob.glob("/usr/share/common-licenses/*")), read_any))
    pats = ["README*", "*.txt", "NEWS*", "*.md", "copyright", "*.rst", "FAQ*", "AUTHORS*", "*.html"]
    docfiles = []
    for p in pats:
        docfiles += glob.glob("/usr/share/doc/**/" + p, recursive=True)
        docfiles += glob.glob("/usr/share/doc/**/" + p + ".gz", recursive=True)

    def read_doc(path):
        s = read_any(path)
        if s is not None and (path.endswith(".html") or path.endswith(".html.gz")):
            s = re.sub(r"<script.*?</script>|<style.*?</style>", " ", s, flags=re.S | re.I)
            s = re.sub(r"<[^>]+>", "", s)
            s = s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&nbsp;", " ").replace("&quot;", '"')
        return s

    groups.append(("doc", sorted(set(f for f in docfiles if os.path.isfile(f))), read_doc))
    groups.append(("info", sorted(glob.glob("/usr/share/info/*.gz")), read_any))
    man = []
    for sec in ("1", "5", "7", "8"):
        man += sorted(glob.glob("/usr/share/man/man%s/*.gz" % sec))
    # at most 8 pages per command family (e.g. thousands of "gcloud-*" pages)
    fam = {}
    keep = []
    for f in man:
        k = re.split(r"[-_.]", os.path.basename(f))[0]
        fam[k] = fam.get(k, 0) + 1
        if fam[k] <= 8:
            keep.append(f)
    man = keep
    groups.append(("man", man, lambda p: (lambda s: strip_troff(s) if s else None)(read_any(p))))
    pyfiles = sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))
    groups.append(("python-docstrings", pyfiles, python_docstrings))

    for name, files, reader in groups:
        before = total
        n0 = len(docs)
        files = list(files)
        random.Random(1234).shuffle(files)
        for f in files:
            if total - before >= GROUP_SHARE[name] * max_bytes:
                break
            add(reader(f), f)
        log("%-18s %6d files, %5d docs kept, %8.2f MB" % (name, len(files), len(docs) - n0, (total - before) / 1e6))
    return docs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".carry/corpus.txt")
    ap.add_argument("--max-mb", type=float, default=16.0)
    ap.add_argument("--exclude", default="",
                    help="a corpus file whose documents are left out (held-out text)")
    a = ap.parse_args()
    if a.exclude:
        with open(a.exclude) as f:
            train = f.read()
        # a document is left out when its first 300 characters occur in the excluded corpus (the
        # machine's packages may have changed since it was made, so its gather is not redone)
        docs = [t for t in gather(len(train) + int(2 * a.max_mb * 1e6)) if t[:300] not in train]
        random.Random(4321).shuffle(docs)  # every source group in its share, not the first groups only
        out, total = [], 0
        for t in docs:  # at most --max-mb of them
            if total >= a.max_mb * 1e6:
                break
            out.append(t)
            total += len(t) + 1
        docs = out
    else:
        docs = gather(int(a.max_mb * 1e6))
    text = "\n".join(docs)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "w", encoding="ascii") as f:
        f.write(text)
    with gzip.open(a.out + ".gz", "wb", compresslevel=9) as f:
        f.write(text.encode("ascii"))
    print("wrote %s: %d docs, %.2f MB (%s.gz %.2f MB)" % (a.out, len(docs), len(text) / 1e6, a.out,
                                                          os.path.getsize(a.out + ".gz") / 1e6))


if __name__ == "__main__":
    sys.exit(main())
