#!/usr/bin/env python3
"""Gather English text from the Debian packages installed on this machine into one corpus file.

Nothing is downloaded; PACKAGES lists the Debian packages the v2 sources read (`--install` prints
the apt-get line; a source whose package is absent contributes nothing). Two source sets:

  v1 (default without --unicode): /usr/share/common-licenses/*, /usr/share/doc/**/{README*,*.txt,
  NEWS*,*.md,copyright,...} (gzipped or not), /usr/share/info/*.gz, man pages (/usr/share/man/
  man{1,5,7,8}/*.gz, troff markup stripped), docstrings of the Python standard library.  Cleaned to
  printable ASCII + newlines, at most 60 KB per document.  Byte for byte what this script wrote
  before v2 on a machine with the same packages installed.

  v2 (default with --unicode): v1's groups plus WordNet glosses and examples, the GCIDE dictionary
  (Webster 1913 + WordNet), FOLDOC (dictd), fortunes (never the offensive set), the
  King James Bible, Perl's POD manuals, Python's HTML documentation, and the Debian books (the
  Debian Administrator's Handbook, the Debian Reference, the Jargon File).  Long documents are cut
  at paragraphs into pieces of at most 60 KB instead of being truncated; documents that are mostly
  markup or not English are dropped (english_v2); `doc` leaves out what another group reads.

Each group (GROUPS_V1, GROUPS_V2) takes at most its share of --max-mb.  Every document is
deduplicated by content hash; documents are separated by a blank line.

  python3 tools/train/make_corpus.py --out .carry/corpus.txt --max-mb 16
writes .carry/corpus.txt and .carry/corpus.txt.gz (the gzipped copy is what travels to the GPU).

  python3 tools/train/make_corpus.py --out .carry/corpus-v2.txt --max-mb 200 --unicode \\
      --manifest .carry/corpus-v2.json
the v2 corpus in UTF-8 (NFC, printable), with a JSON manifest of every group and source (files
read, documents kept, bytes kept), also printed as a table on stderr.

  python3 tools/train/make_corpus.py --out .carry/heldout.txt --max-mb 8 --exclude .carry/corpus.txt
writes held-out text: documents of the same sources that the training corpus does not hold, for
checking that what training learned about the corpus's text generalizes.
"""
import argparse
import ast
import glob
import gzip
import hashlib
import html
import html.parser
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import unicodedata

_CTRL = re.compile(r"[^\x20-\x7e\n]")


def squeeze_lines(s):
    """Trailing spaces dropped, runs of blank lines kept as one, one newline at the end."""
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


def to_ascii(s):
    s = s.replace("\t", "    ").replace("\r\n", "\n").replace("\r", "\n")
    s = unicodedata.normalize("NFKD", s)
    s = s.encode("ascii", "ignore").decode("ascii")
    s = _CTRL.sub("", s)
    return squeeze_lines(s)


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

# --- v2: UTF-8 text --------------------------------------------------------------------------------

def _uchar(c):
    """What --unicode makes of one non-ASCII character: itself if printable, a space or newline for
    Unicode separators, nothing for control, format, private-use and unassigned characters."""
    cat = unicodedata.category(c)
    if cat in ("Zl", "Zp"):
        return "\n"
    if cat == "Zs":
        return " "
    return c if c.isprintable() else ""


_UCACHE = {}
_NONASCII = re.compile(r"[^\x20-\x7e\n]")


def to_unicode(s):
    """Like to_ascii, but keeps printable Unicode (NFC) instead of folding it to ASCII."""
    s = s.replace("\t", "    ").replace("\r\n", "\n").replace("\r", "\n")
    s = unicodedata.normalize("NFC", s)

    def one(m):
        c = m.group(0)
        r = _UCACHE.get(c)
        if r is None:
            r = _UCACHE[c] = "" if c.isascii() else _uchar(c)
        return r

    s = _NONASCII.sub(one, s)
    return squeeze_lines(s)


def decode_text(b):
    """UTF-8 if it is (a sequence cut by a read limit at the end is dropped), else Windows-1252,
    else Latin-1: old documentation files are often in one of those."""
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason == "unexpected end of data":
            try:
                return b[:e.start].decode("utf-8")
            except UnicodeDecodeError:
                pass
    try:
        return b.decode("cp1252")
    except UnicodeDecodeError:
        return b.decode("latin-1")


def read_text(path, limit=8_000_000):
    """A text file (gzip or dictzip when it ends in .gz/.dz) as str; None if unreadable or binary."""
    try:
        opener = gzip.open if path.endswith((".gz", ".dz")) else open
        with opener(path, "rb") as f:
            b = f.read(limit)
    except (OSError, EOFError):
        return None
    if b"\x00" in b[:4096]:
        return None
    return decode_text(b)


_STOP = frozenset("the of and to a in is that it for as with be on by this are or an not you from "
                  "at which can if was have will but all one has its may when there their they "
                  "more other these also no so such any into than then only would what we each "
                  "he his her them".split())
_WORD = re.compile(r"[A-Za-z]+")


def english_v2(s):
    """A document worth keeping in v2: long enough, mostly letters and spaces, English function
    words among its words, little markup, and Latin script."""
    n = len(s)
    if n < 200:
        return False
    letters = sum(c.isalpha() for c in s)
    if letters / n < 0.55 or s.count(" ") / n < 0.08:
        return False
    nonlatin = sum(1 for c in s if ord(c) > 0x24F and c.isalpha())
    if nonlatin > 0.05 * letters:
        return False
    markup = sum(s.count(c) for c in "<>{}[]|\\=_#*$@")
    if markup / n > 0.04:
        return False
    words = _WORD.findall(s)
    if not words:
        return False
    stop = sum(1 for w in words if w.lower() in _STOP)
    return stop / len(words) >= 0.12


def split_doc(t, limit):
    """Cut a long text at paragraph (else line) boundaries into pieces of at most `limit` chars."""
    if len(t) <= limit:
        return [t]
    out, cur, size = [], [], 0
    for para in re.split(r"\n\n+", t):
        parts = [para] if len(para) <= limit else _cut_lines(para, limit)
        for p in parts:
            if cur and size + len(p) + 2 > limit:
                out.append("\n\n".join(cur).strip() + "\n")
                cur, size = [], 0
            cur.append(p)
            size += len(p) + 2
    if cur:
        out.append("\n\n".join(cur).strip() + "\n")
    return [p for p in out if p.strip()]


def _cut_lines(para, limit):
    out, cur, size = [], [], 0
    for ln in para.split("\n"):
        ln = ln[:limit]
        if cur and size + len(ln) + 1 > limit:
            out.append("\n".join(cur))
            cur, size = [], 0
        cur.append(ln)
        size += len(ln) + 1
    if cur:
        out.append("\n".join(cur))
    return out


def batch(items, per_doc=None, max_chars=None, sep="\n\n"):
    """Join consecutive short items into documents of `per_doc` items or about `max_chars`."""
    docs, cur, size = [], [], 0
    for it in items:
        cur.append(it)
        size += len(it) + len(sep)
        if (per_doc and len(cur) >= per_doc) or (max_chars and size >= max_chars):
            docs.append(sep.join(cur) + "\n")
            cur, size = [], 0
    if cur:
        docs.append(sep.join(cur) + "\n")
    return docs


# --- WordNet ---------------------------------------------------------------------------------------

_POS = {"n": "noun", "v": "verb", "a": "adjective", "s": "adjective", "r": "adverb"}


def wordnet_synset(line):
    """One line of a WordNet data.* file as a sentence or two; None for the license header.

    `00217593 04 n 01 kill 1 002 @ ... | the destruction of an enemy plane; "two kills"` becomes
    `kill (noun): the destruction of an enemy plane.` + `For example: "two kills".`"""
    if not line or line.startswith("  ") or " | " not in line:
        return None
    head, gloss = line.split(" | ", 1)
    f = head.split()
    try:
        pos, n = _POS[f[2]], int(f[3], 16)
    except (IndexError, KeyError, ValueError):
        return None
    words = []
    for i in range(n):
        w = re.sub(r"\([a-z]+\)$", "", f[4 + 2 * i]).replace("_", " ")
        if w not in words:
            words.append(w)
    examples = re.findall(r'"([^"]+)"', gloss)
    definition = re.sub(r'"[^"]*"', "", gloss)
    definition = re.sub(r"(\s*;\s*)+$", "", re.sub(r"\s*;(\s*;)+", ";", definition)).strip(" ;")
    if not words or not definition:
        return None
    text = "%s (%s%s): %s." % (words[0], pos, "; also " + ", ".join(words[1:]) if words[1:] else "",
                               definition.rstrip("."))
    if examples:
        text += " For example: " + "; ".join('"%s"' % e.strip() for e in examples) + "."
    return text


def wordnet_docs(path, per_doc=40):
    """A WordNet data file (data.noun, ...) as documents of `per_doc` synsets, in file order (which
    is grouped by topic: the lexicographer files)."""
    s = read_text(path, limit=64_000_000)
    if s is None:
        return None
    items = [t for t in (wordnet_synset(ln) for ln in s.split("\n")) if t]
    return batch(items, per_doc=per_doc, sep="\n")


# --- fortunes --------------------------------------------------------------------------------------

def fortune_docs(path, per_doc=25):
    """A fortune file (entries separated by lines holding only '%') as documents of `per_doc`
    entries; entries that are mostly not letters (ASCII art) are left out."""
    s = read_text(path)
    if s is None:
        return None
    items = []
    for e in re.split(r"(?m)^%[ \t]*$", s.replace("\r\n", "\n")):
        e = e.strip("\n")
        if not e.strip():
            continue
        good = sum(c.isalpha() or c == " " for c in e)
        if good / len(e) >= 0.75:
            items.append(e)
    return batch(items, per_doc=per_doc) if items else None


def fortune_files(root="/usr/share/games/fortunes"):
    """The fortune files of `root`: plain files, not the .dat indexes or .u8 links, and never the
    offensive set (the off/ folder of fortunes-off)."""
    out = []
    for p in sorted(glob.glob(os.path.join(root, "*"))):
        if p.endswith((".dat", ".u8")) or os.path.islink(p) or not os.path.isfile(p):
            continue
        out.append(p)
    return out


# --- dictd dictionaries (GCIDE, FOLDOC, V.E.R.A.) --------------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def dictd_b64(s):
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def dictd_entries(index_path, dict_path):
    """The entries of a dictd database, in file order, each once (several headwords may point at
    one entry); the database's own 00-database-* entries are left out."""
    idx = read_text(index_path, limit=1 << 30)
    try:
        with gzip.open(dict_path, "rb") as f:  # dictzip is gzip; offsets count its bytes
            raw = f.read()
    except (OSError, EOFError):
        return None
    if idx is None:
        return None
    spans = set()
    for ln in idx.split("\n"):
        f = ln.split("\t")
        if len(f) < 3 or f[0].startswith(("00-database", "00database")):
            continue
        try:
            spans.add((dictd_b64(f[1]), dictd_b64(f[2])))
        except ValueError:
            continue
    return [decode_text(raw[o:o + n]) for o, n in sorted(spans)]


# GCIDE's ASCII notation of accented letters: ['e] acute, [`e] grave, [=a] macron, [a^] breve,
# [^o] circumflex, [.a] dot, [~e] tilde, ["o] diaeresis, [,c] cedilla, and a few named letters and signs.
_MARK = {",": "\u0327", "'": "\u0301", "`": "\u0300", "=": "\u0304", "^": "\u0302", ".": "\u0307", "~": "\u0303",
         '"': "\u0308", "-": "\u0304"}
_NAMED = {"ae": "\u00e6", "oe": "\u0153", "imac": "\u012b", "aum": "\u00e4", "eth": "\u00f0",
          "thorn": "\u00fe", "deg": "\u00b0", "root": "\u221a", "ng": "\u014b", "add": "a", "asl": "a",
          "oomac": "o\u0304o\u0304", "edh": "\u00f0", "frac12": "\u00bd", "frac14": "\u00bc",
          "frac34": "\u00be", "cced": "\u00e7", "ntil": "\u00f1", "uum": "\u00fc", "oum": "\u00f6"}
_DICT_SUB = [
    # an entry that ends with "[1913 Webster] Nextword": the next headword leaked into the source
    (re.compile(r"\[(?:1913 Webster|Webster 1913 Suppl\.|WordNet 1\.5|PJC)[^\]\n]{0,30}\][ \t]+[^\n\[\]]{1,40}\s*\Z"), ""),
    (re.compile(r"(?m)^[ \t]*\[[^\]\n]{1,60}\][ \t]*$"), ""),   # [1913 Webster], [PJC], [WordNet 1.5]
    (re.compile(r"[ \t]*\[(?:1913 Webster|Webster 1913 Suppl\.|WordNet 1\.5|PJC)[^\]\n]{0,30}\]?"), ""),
    (re.compile(r"\[([-,'`=^.~\"])([a-zA-Z]{1,2})\]"), lambda m: m.group(2)[0] + _MARK[m.group(1)] + m.group(2)[1:]),
    (re.compile(r"\[([a-zA-Z])\^\]"), lambda m: m.group(1) + "\u0306"),
    (re.compile(r"\[(%s)\]" % "|".join(_NAMED)), lambda m: _NAMED[m.group(1)]),
    (re.compile(r"\\[^\\\n]{1,80}\\"), ""),                     # GCIDE pronunciation \A*buse"\
    (re.compile(r"\{([^{}]*)\}"), r"\1"),                        # cross references {word}
    (re.compile(r"<([a-z][a-z ,-]*)>"), r"(\1)"),                # FOLDOC subject tags <programming>
]


def clean_dict_entry(e):
    """A dictd entry as prose: attribution lines, pronunciation marks and cross-reference braces
    removed, hard-wrapped lines of a paragraph joined, quotation attributions kept."""
    for pat, rep in _DICT_SUB:
        e = pat.sub(rep, e)
    e = re.sub(r"\{([^{}]*)\}", r"\1", e)  # nested braces
    paras = []
    for para in re.split(r"\n[ \t]*\n", e):
        lines = [re.sub(r"\s{3,}", " ", ln.strip()) for ln in para.split("\n") if ln.strip()]
        if lines:
            paras.append(" ".join(lines))
    return "\n".join(p.replace(" ,", ",") for p in paras)


def dictd_docs(index_path, max_chars=8000):
    """A dictd dictionary (the .index beside its .dict.dz) as documents of about `max_chars`."""
    entries = dictd_entries(index_path, index_path[:-len(".index")] + ".dict.dz")
    if entries is None:
        return None
    return batch([t for t in (clean_dict_entry(e) for e in entries) if t], max_chars=max_chars)


# --- POD (Perl's manuals) --------------------------------------------------------------------------

def _pod_codes(s):
    # C<< a <=> b >>: the angle brackets inside become placeholders, restored at the end
    s = re.sub(r"([A-Z])<<+\s+(.*?)\s+>>+",
               lambda m: "%s<%s>" % (m.group(1), m.group(2).replace("<", "\x01").replace(">", "\x02")), s, flags=re.S)
    def one(m):
        code, body = m.group(1), m.group(2)
        if code in "XZ":
            return ""
        if code == "E":
            if body.isdigit():
                return chr(int(body))
            if body.lower().startswith("0x"):
                return chr(int(body, 16))
            return {"lt": "\x01", "gt": "\x02", "verbar": "|", "sol": "/"}.get(body) or html.unescape("&%s;" % body)
        if code == "L":
            if "|" in body:
                return body.split("|", 1)[0]
            body = body.strip('"')
            if "/" in body and "://" not in body:
                page, sec = body.split("/", 1)
                sec = sec.strip('"')
                return ("%s in %s" % (sec, page)) if page else sec
            return body
        return body
    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"([A-Z])<([^<>]*)>", one, s)
    return s.replace("\x01", "<").replace("\x02", ">")


def pod_to_text(src):
    """POD as plain text: headings and items as lines, formatting codes resolved (L<text|target> is
    its text), verbatim blocks kept, =begin/=end and =for blocks for other formatters left out."""
    out, skip = [], None
    for para in re.split(r"\n[ \t]*\n", src.replace("\r\n", "\n")):
        if not para.strip():
            continue
        if para.startswith("="):
            m = re.match(r"=(\w+)\s*(.*)", para, re.S)
            cmd, arg = (m.group(1), m.group(2).strip()) if m else ("", "")
            if skip is not None:
                if cmd == "end" and arg.split()[:1] == [skip]:
                    skip = None
                continue
            if cmd == "begin":
                skip = (arg.split() or [""])[0]
            elif cmd.startswith("head") or cmd == "item":
                arg = re.sub(r"^(\*|\d+\.?)\s*", "", arg) if cmd == "item" else arg
                if arg:
                    out.append(_pod_codes(" ".join(arg.split())))
            continue
        if skip is not None:
            continue
        if para[:1] in " \t":
            out.append(para.rstrip())  # verbatim (code)
        else:
            out.append(_pod_codes(para).strip())
    return "\n\n".join(out)


# --- HTML ------------------------------------------------------------------------------------------

class _HTMLText(html.parser.HTMLParser):
    BLOCK = {"p", "div", "br", "li", "ul", "ol", "dl", "dt", "dd", "tr", "table", "pre", "h1", "h2",
             "h3", "h4", "h5", "h6", "section", "blockquote", "hr", "title", "article"}
    SKIP_TAGS = {"script", "style", "head", "nav", "noscript"}
    SKIP_CLASSES = {"sphinxsidebar", "related", "footer", "navheader", "navfooter", "headerlink",
                    "toc", "breadcrumbs", "mobile-nav"}
    VOID = {"br", "img", "meta", "link", "hr", "input", "area", "base", "col", "embed", "source",
            "wbr", "param", "track"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self.skip, self.skip_tag, self.pre = [], 0, None, 0

    def handle_starttag(self, tag, attrs):
        if self.skip:
            if tag == self.skip_tag:
                self.skip += 1
            return
        classes = set((dict(attrs).get("class") or "").split())
        if tag in self.SKIP_TAGS or (tag not in self.VOID and classes & self.SKIP_CLASSES):
            self.skip, self.skip_tag = 1, tag
            return
        if tag == "pre":
            self.pre += 1
        if tag in self.BLOCK:
            self.parts.append("\n\n" if tag in ("p", "h1", "h2", "h3", "h4", "pre", "div", "dt") else "\n")

    def handle_endtag(self, tag):
        if self.skip:
            if tag == self.skip_tag:
                self.skip -= 1
            return
        if tag == "pre" and self.pre:
            self.pre -= 1
        if tag in self.BLOCK:
            self.parts.append("\n")

    def handle_data(self, data):
        if self.skip:
            return
        if not self.pre:
            data = re.sub(r"\s+", " ", data)
            if not self.parts or self.parts[-1].endswith("\n"):
                data = data.lstrip()
        if data:
            self.parts.append(data)


def html_to_text(src):
    """HTML as text: script, style, navigation and sidebars left out, blocks on their own lines."""
    p = _HTMLText()
    try:
        p.feed(src)
        p.close()
    except (AssertionError, ValueError):
        pass
    s = "".join(p.parts)
    s = re.sub(r"[ \t]+\n", "\n", s)
    return re.sub(r"\n{3,}", "\n\n", s).strip()


def read_html(path):
    s = read_text(path)
    return html_to_text(s) if s is not None else None


# --- the King James Bible (bible-kjv-text, read through bible-kjv's `bible`) -----------------------

def bible_docs(text):
    """`bible -f` output (`Ge1:1 In the beginning ...`, a verse a line) as a document a chapter."""
    docs, cur, key = [], [], None
    for ln in text.split("\n"):
        m = re.match(r"(\d?[A-Za-z]+)(\d+):(\d+) (.*)", ln)
        if not m:
            continue
        k = (m.group(1), m.group(2))
        if k != key and cur:
            docs.append("\n".join(cur) + "\n")
            cur = []
        if k != key:
            cur.append("%s %s" % k)
            key = k
        cur.append("%s %s" % (m.group(3), m.group(4)))
    if cur:
        docs.append("\n".join(cur) + "\n")
    return docs


def read_bible(path):
    exe = shutil.which("bible")
    if not exe or not os.path.exists(path):
        return None
    try:
        r = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError):
        return None
    return bible_docs(r.stdout.decode("utf-8", "ignore")) if r.returncode == 0 else None


# --- which package a file comes from ---------------------------------------------------------------

class Owners:
    """path -> Debian package, from dpkg's file lists (read once); a file no package lists is
    attributed to its /usr/share/doc/<name> folder or its directory."""

    def __init__(self, info_dir="/var/lib/dpkg/info"):
        self.map = {}
        for lst in glob.glob(os.path.join(info_dir, "*.list")):
            pkg = os.path.basename(lst)[:-5].split(":")[0]
            try:
                with open(lst, encoding="utf-8", errors="ignore") as f:
                    for ln in f:
                        self.map[ln.rstrip("\n")] = pkg
            except OSError:
                continue

    def __call__(self, path):
        p = self.map.get(path)
        if p:
            return p
        m = re.match(r"/usr/share/doc/([^/]+)/", path)
        return m.group(1) if m else os.path.dirname(path)


# --- groups ----------------------------------------------------------------------------------------

# The Debian packages (all in main) that the v2 sources read beyond a base system, by the group that
# reads them; each is optional (a missing one contributes nothing).  dict-vera was tried and left
# out: its acronym entries are not prose (english_v2 kept none of them).
PACKAGES = {
    "wordnet": ["wordnet-base"],
    "gcide": ["dict-gcide"],
    "dictionaries": ["dict-foldoc"],
    "fortunes": ["fortunes", "fortunes-min"],
    "bible": ["bible-kjv", "bible-kjv-text"],
    "perl-doc": ["perl-doc"],
    "python-docs": ["python3.11-doc"],
    "debian-books": ["debian-handbook", "debian-reference-en", "jargon-text"],
    "doc": ["debian-policy", "developers-reference", "debian-faq"],
    "info": ["gnu-standards"],
}


def package_list():
    return [p for g in PACKAGES.values() for p in g]


def install_line():
    return "apt-get install -y --no-install-recommends " + " ".join(package_list())


class Group:
    """A named source of documents: its files, a reader (path -> None, a text or a list of texts)
    and its share of --max-mb."""

    def __init__(self, name, share, files, reader):
        self.name, self.share, self.files, self.reader = name, share, list(files), reader


def _doc_files():
    pats = ["README*", "*.txt", "NEWS*", "*.md", "copyright", "*.rst", "FAQ*", "AUTHORS*", "*.html"]
    docfiles = []
    for p in pats:
        docfiles += glob.glob("/usr/share/doc/**/" + p, recursive=True)
        docfiles += glob.glob("/usr/share/doc/**/" + p + ".gz", recursive=True)
    return sorted(set(f for f in docfiles if os.path.isfile(f)))


def _man_files():
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
    return keep


def _read_doc_v1(path):
    s = read_any(path)
    if s is not None and (path.endswith(".html") or path.endswith(".html.gz")):
        s = re.sub(r"<script.*?</script>|<style.*?</style>", " ", s, flags=re.S | re.I)
        s = re.sub(r"<[^>]+>", "", s)
        s = s.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace("&nbsp;", " ").replace("&quot;", '"')
    return s


GROUP_SHARE = {"licenses": 0.02, "doc": 0.45, "info": 0.08, "man": 0.30, "python-docstrings": 0.15}


def groups_v1():
    return [
        Group("licenses", GROUP_SHARE["licenses"], sorted(glob.glob("/usr/share/common-licenses/*")), read_any),
        Group("doc", GROUP_SHARE["doc"], _doc_files(), _read_doc_v1),
        Group("info", GROUP_SHARE["info"], sorted(glob.glob("/usr/share/info/*.gz")), read_any),
        Group("man", GROUP_SHARE["man"], _man_files(), lambda p: (lambda s: strip_troff(s) if s else None)(read_any(p))),
        Group("python-docstrings", GROUP_SHARE["python-docstrings"],
              sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True)), python_docstrings),
    ]


PY_HTML = "/usr/share/doc/python3.*/html"
BOOKS = ["/usr/share/doc/debian-handbook/html/en-US/*.html", "/usr/share/doc/debian-reference-en/docs/*.en.html",
         "/usr/share/doc/jargon-text/jargon.txt.gz"]
# folders the v2 `doc` group leaves to another group
CLAIMED = ["/usr/share/doc/debian-handbook/", "/usr/share/doc/debian-reference-", "/usr/share/doc/jargon-text/",
           "/usr/share/doc/python3."]

# v2 shares of --max-mb are caps (their sum is below 1): at --max-mb 200 the natural-language
# groups are taken whole and doc, man and the docstrings are cut, so that the gzipped corpus stays
# under 40 MB (it travels in the GPU machine's 64 MiB carry).
GROUP_SHARE_V2 = {"wordnet": 0.07, "gcide": 0.16, "dictionaries": 0.03, "fortunes": 0.02, "bible": 0.025,
                  "perl-doc": 0.04, "python-docs": 0.05, "debian-books": 0.02, "licenses": 0.005,
                  "info": 0.04, "doc": 0.10, "man": 0.05, "python-docstrings": 0.035}


def _read_doc_v2(path):
    return read_html(path) if path.endswith((".html", ".html.gz")) else read_text(path)


def _doc_files_v2():
    files = [f for f in _doc_files() if not f.startswith(tuple(CLAIMED)) and "/_sources/" not in f]
    have = set(files)
    out = []
    for f in files:  # an HTML page with a text rendering beside it is read once, as text
        if f.endswith((".html", ".html.gz")):
            stem = re.sub(r"\.html(\.gz)?$", "", f)
            if any(stem + e in have for e in (".txt", ".txt.gz", ".text", ".text.gz")):
                continue
        out.append(f)
    return out


def _py_html_files():
    out = []
    for root in sorted(set(os.path.realpath(r) for r in glob.glob(PY_HTML))):  # python3.11-doc, -dev, ... link to one
        for f in sorted(glob.glob(root + "/**/*.html", recursive=True)):
            rel = f[len(root) + 1:]
            if rel.startswith(("_", "genindex", "py-modindex", "search", "contents")):
                continue
            out.append(f)
    return out


def _read_book(path):
    return read_html(path) if path.endswith(".html") else read_text(path)


def groups_v2():
    share = GROUP_SHARE_V2
    return [
        Group("wordnet", share["wordnet"], ["/usr/share/wordnet/data." + p for p in ("noun", "verb", "adj", "adv")
                                            if os.path.exists("/usr/share/wordnet/data." + p)], wordnet_docs),
        Group("gcide", share["gcide"], glob.glob("/usr/share/dictd/gcide.index"), dictd_docs),
        Group("dictionaries", share["dictionaries"],
              [p for p in ("/usr/share/dictd/foldoc.index",) if os.path.exists(p)], dictd_docs),
        Group("fortunes", share["fortunes"], fortune_files(), fortune_docs),
        Group("bible", share["bible"], [p for p in ["/usr/lib/bible.data"] if os.path.exists(p)], read_bible),
        Group("perl-doc", share["perl-doc"], sorted(set(
            os.path.realpath(p) for p in glob.glob("/usr/share/perl/*/pod/*.pod"))), lambda p: (lambda s: pod_to_text(s) if s else None)(read_text(p))),
        Group("python-docs", share["python-docs"], _py_html_files(), read_html),
        Group("debian-books", share["debian-books"], sorted(f for pat in BOOKS for f in glob.glob(pat)), _read_book),
        Group("licenses", share["licenses"], sorted(glob.glob("/usr/share/common-licenses/*")), read_text),
        Group("doc", share["doc"], _doc_files_v2(), _read_doc_v2),
        # python.info is python-docs again, perl*.1 the perl-doc PODs again
        Group("info", share["info"], sorted(f for f in glob.glob("/usr/share/info/*.gz")
                                            if not os.path.basename(f).startswith("python")), read_text),
        Group("man", share["man"], [f for f in _man_files() if not re.search(r"/man1/perl[^/]*\.1(perl)?\.gz$", f)], lambda p: (lambda s: strip_troff(s) if s else None)(read_text(p, 2_000_000))),
        Group("python-docstrings", share["python-docstrings"],
              sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True)), python_docstrings),
    ]


PER_DOC = 60_000


class Doc:
    __slots__ = ("text", "group", "source")

    def __init__(self, text, group, source):
        self.text, self.group, self.source = text, group, source


def gather(max_bytes, log=print, v2=False, clean=None, groups=None, owners=None, stats=None):
    """Documents (Doc) of every group, each group up to its share of max_bytes.  v1 (v2=False)
    truncates a document to PER_DOC and keeps it if english_enough; v2 cuts it into PER_DOC pieces
    and keeps those that are english_v2.  `stats` (a dict) receives files read per group/source."""
    clean = clean or to_ascii
    groups = groups if groups is not None else (groups_v2() if v2 else groups_v1())
    owners = owners or (lambda p: os.path.dirname(p))
    check = english_v2 if v2 else english_enough
    seen = set()
    docs = []
    total = 0
    stats = stats if stats is not None else {}

    def add(text, group, src):
        nonlocal total
        t = clean(text)
        pieces = split_doc(t, PER_DOC) if v2 else [t[:PER_DOC]]
        for t in pieces:
            if not check(t):
                continue
            h = hashlib.sha1(t.encode()).digest()
            if h in seen:
                continue
            seen.add(h)
            docs.append(Doc(t, group, src))
            total += len(t.encode("utf-8")) + 1

    for g in groups:
        before = total
        n0 = len(docs)
        files = list(g.files)
        random.Random(1234).shuffle(files)
        gst = stats.setdefault(g.name, {"files_listed": len(files), "files_read": {}})
        for f in files:
            if total - before >= g.share * max_bytes:
                break
            src = owners(f)
            gst["files_read"][src] = gst["files_read"].get(src, 0) + 1
            r = g.reader(f)
            if r is None:
                continue
            for text in ([r] if isinstance(r, str) else r):
                if total - before >= g.share * max_bytes:
                    break
                if text:
                    add(text, g.name, src)
        log("%-18s %6d files, %5d docs kept, %8.2f MB" % (g.name, len(files), len(docs) - n0, (total - before) / 1e6))
    return docs


def manifest(docs, stats, out_path, args, seconds):
    """Per group and per source: files read, documents kept, bytes kept (UTF-8, without the
    newline between documents: file bytes = sum of bytes + separator_bytes)."""
    groups = {}
    for name, st in stats.items():
        groups[name] = {"files_listed": st["files_listed"], "files_read": sum(st["files_read"].values()),
                        "docs": 0, "bytes": 0, "packages": PACKAGES.get(name, []),
                        "sources": {s: {"files_read": n, "docs": 0, "bytes": 0} for s, n in st["files_read"].items()}}
    for d in docs:
        g = groups.setdefault(d.group, {"files_listed": 0, "files_read": 0, "docs": 0, "bytes": 0,
                                        "packages": PACKAGES.get(d.group, []), "sources": {}})
        s = g["sources"].setdefault(d.source, {"files_read": 0, "docs": 0, "bytes": 0})
        n = len(d.text.encode("utf-8"))
        g["docs"] += 1
        g["bytes"] += n
        s["docs"] += 1
        s["bytes"] += n
    for g in groups.values():
        g["sources"] = {k: v for k, v in sorted(g["sources"].items(), key=lambda kv: -kv[1]["bytes"])}
    return {"out": out_path, "args": args, "seconds": round(seconds, 1), "docs": len(docs),
            "separator_bytes": max(len(docs) - 1, 0), "bytes": sum(g["bytes"] for g in groups.values()) + max(len(docs) - 1, 0),
            "groups": groups}


def manifest_table(m, top=6):
    rows = ["%-20s %-34s %7s %7s %10s" % ("group", "source", "files", "docs", "MB kept")]
    for name, g in m["groups"].items():
        rows.append("%-20s %-34s %7d %7d %10.2f" % (name, "(all)", g["files_read"], g["docs"], g["bytes"] / 1e6))
        srcs = list(g["sources"].items())
        for s, v in srcs[:top]:
            rows.append("%-20s %-34s %7d %7d %10.2f" % ("", s[-34:], v["files_read"], v["docs"], v["bytes"] / 1e6))
        if len(srcs) > top:
            rest = srcs[top:]
            rows.append("%-20s %-34s %7d %7d %10.2f" % ("", "(%d other sources)" % len(rest), sum(v["files_read"] for _, v in rest),
                                                        sum(v["docs"] for _, v in rest), sum(v["bytes"] for _, v in rest) / 1e6))
    rows.append("%-20s %-34s %7s %7d %10.2f" % ("total", "(with separators)", "", m["docs"], m["bytes"] / 1e6))
    return "\n".join(rows)


def excluded(docs, train):
    """The documents whose first 300 characters are not in `train` (another corpus's text).  A
    document starts a line, so only the 300 characters after each line start of `train` are
    compared (by hash); a document shorter than that is searched for in full."""
    starts = {hash(train[:300])}
    p = train.find("\n")
    while p >= 0:
        starts.add(hash(train[p + 1:p + 301]))
        p = train.find("\n", p + 1)
    out = []
    for d in docs:
        head = d.text[:300]
        if len(head) == 300:
            if hash(head) not in starts:
                out.append(d)
        elif head not in train:
            out.append(d)
    return out


def take_fraction(docs, frac):
    """The first `frac` of each group's documents, in their order."""
    count, seen, out = {}, {}, []
    for d in docs:
        count[d.group] = count.get(d.group, 0) + 1
    for d in docs:
        i = seen.get(d.group, 0)
        seen[d.group] = i + 1
        if i < frac * count[d.group]:
            out.append(d)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=".carry/corpus.txt")
    ap.add_argument("--max-mb", type=float, default=16.0)
    ap.add_argument("--exclude", default="",
                    help="a corpus file whose documents are left out (held-out text)")
    ap.add_argument("--unicode", action="store_true",
                    help="keep UTF-8 (NFC, printable; control characters dropped) instead of folding to ASCII")
    ap.add_argument("--sources", choices=("v1", "v2"), default=None,
                    help="source set (default: v2 with --unicode, else v1)")
    ap.add_argument("--manifest", default="", help="write a JSON manifest of groups and sources here")
    ap.add_argument("--gz-max-mb", type=float, default=0.0,
                    help="drop the last documents until the gzipped copy is at most this size")
    ap.add_argument("--install", action="store_true",
                    help="print the apt-get line that installs the packages the v2 sources read, and exit")
    a = ap.parse_args(argv)
    if a.install:
        print(install_line())
        return 0
    if a.max_mb <= 0:
        ap.error("--max-mb must be positive")
    v2 = (a.sources or ("v2" if a.unicode else "v1")) == "v2"
    clean = to_unicode if a.unicode else to_ascii
    enc = "utf-8" if a.unicode else "ascii"
    t0 = time.time()
    stats = {}
    owners = Owners() if a.manifest else None
    log = lambda s: print(s, file=sys.stderr) if a.manifest else print(s)
    if a.exclude:
        try:
            with open(a.exclude, encoding="utf-8") as f:
                train = f.read()
        except (OSError, UnicodeDecodeError) as e:
            print("make_corpus: cannot read --exclude %s: %s" % (a.exclude, e), file=sys.stderr)
            return 2
        # a document is left out when its first 300 characters occur in the excluded corpus (the
        # machine's packages may have changed since it was made, so its gather is not redone)
        # every group's cap must lie beyond what the excluded corpus took of it: v1's corpus is its
        # --max-mb; v2's shares are caps that its text does not fill, so twice its size is asked
        want = (2 if v2 else 1) * len(train) + int(2 * a.max_mb * 1e6)
        docs = excluded(gather(want, log=log, v2=v2, clean=clean,
                               owners=owners, stats=stats), train)
        random.Random(4321).shuffle(docs)  # every source group in its share, not the first groups only
        out, total = [], 0
        for d in docs:  # at most --max-mb of them
            if total >= a.max_mb * 1e6:
                break
            out.append(d)
            total += len(d.text) + 1
        docs = out
    else:
        docs = gather(int(a.max_mb * 1e6), log=log, v2=v2, clean=clean, owners=owners, stats=stats)
    text = "\n".join(d.text for d in docs)
    data = text.encode(enc)
    gz = gzip.compress(data, compresslevel=9, mtime=0)
    if a.gz_max_mb and len(gz) > a.gz_max_mb * 1e6:
        # keep the same fraction of every group's documents (its first ones): start from the
        # fraction the whole text's compression ratio allows, then lower it by 2% until it fits
        frac = a.gz_max_mb * 1e6 / len(gz)
        while frac > 0:
            docs_k = take_fraction(docs, frac)
            data = "\n".join(d.text for d in docs_k).encode(enc)
            gz = gzip.compress(data, compresslevel=9, mtime=0)
            if len(gz) <= a.gz_max_mb * 1e6:
                break
            frac -= 0.02
        docs = docs_k
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out, "wb") as f:
        f.write(data)
    with open(a.out + ".gz", "wb") as f:
        f.write(gz)
    seconds = time.time() - t0
    if a.manifest:
        m = manifest(docs, stats, a.out, " ".join(sys.argv[1:] if argv is None else argv), seconds)
        m["gz_bytes"] = len(gz)
        with open(a.manifest, "w", encoding="utf-8") as f:
            json.dump(m, f, indent=1)
            f.write("\n")
        print(manifest_table(m), file=sys.stderr)
    print("wrote %s: %d docs, %.2f MB (%s.gz %.2f MB) in %.0f s" % (a.out, len(docs), len(data) / 1e6, a.out,
                                                                   len(gz) / 1e6, seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
