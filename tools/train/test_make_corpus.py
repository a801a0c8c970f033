"""Tests of make_corpus.py's readers, cleaning and manifest on small synthetic inputs (no
installed package needed): python3 -m pytest -q tools/train/test_make_corpus.py"""
import gzip
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_corpus as M  # noqa: E402

ENGLISH = ("The quick brown fox jumps over the lazy dog, and then it runs into the forest where "
           "it is safe from the hunters. There are many trees in the forest and all of them are "
           "old. When the sun sets, the fox returns to its den by the river. ")


def test_wordnet_synset_line():
    line = ('00217593 04 n 02 kill 1 putting_to_death 0 002 @ 00217014 n 0000 + 00355365 v 0101 | '
            'the destruction of an enemy plane or ship; "the pilot reported two kills"; "a clean kill"  ')
    assert M.wordnet_synset(line) == ('kill (noun; also putting to death): the destruction of an enemy '
                                      'plane or ship. For example: "the pilot reported two kills"; "a clean kill".')
    adj = "00001740 00 a 01 able(p) 0 005 = 05207437 n 0000 | (usually followed by `to') having the necessary means  "
    assert M.wordnet_synset(adj) == "able (adjective): (usually followed by `to') having the necessary means."
    assert M.wordnet_synset("  1 This software and database is being provided to you, the LICENSEE, by  ") is None
    assert M.wordnet_synset("garbage without a gloss") is None


def test_wordnet_docs_batches(tmp_path):
    p = tmp_path / "data.verb"
    lines = ["  1 license header line"]
    for i in range(5):
        lines.append("%08d 29 v 01 run%d 0 001 @ 00100551 v 0000 01 + 09 00 | move fast; \"he ran %d miles\"  " % (i, i, i))
    p.write_text("\n".join(lines) + "\n")
    docs = M.wordnet_docs(str(p), per_doc=2)
    assert len(docs) == 3
    assert docs[0] == ('run0 (verb): move fast. For example: "he ran 0 miles".\n'
                       'run1 (verb): move fast. For example: "he ran 1 miles".\n')


def test_fortunes(tmp_path):
    (tmp_path / "wisdom").write_text("A penny saved is a penny earned.\n\t\t-- Franklin\n%\n"
                                     "  /\\_/\\\n ( o.o )\n  > ^ <\n%\nLook before you leap.\n%\n")
    (tmp_path / "wisdom.dat").write_bytes(b"\x00\x00\x00\x02\x00\x00")
    os.symlink("wisdom", tmp_path / "wisdom.u8")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_text("offensive\n%\n")
    files = M.fortune_files(str(tmp_path))
    assert files == [str(tmp_path / "wisdom")]
    docs = M.fortune_docs(files[0], per_doc=25)
    assert docs == ["A penny saved is a penny earned.\n\t\t-- Franklin\n\nLook before you leap.\n"]


def _dictd(tmp_path, entries):
    body, index, off = b"", [], 0
    for head, text in entries:
        b = text.encode()
        index.append((head, off, len(b)))
        body += b
        off += len(b)

    def b64(n):
        s = ""
        while True:
            s = M._B64[n % 64] + s
            n //= 64
            if not n:
                return s
    (tmp_path / "gcide.dict.dz").write_bytes(gzip.compress(body))
    index += [(h.lower(), o, n) for h, o, n in index if h.lower() != h]  # a second headword, same entry
    (tmp_path / "gcide.index").write_text("".join("%s\t%s\t%s\n" % (h, b64(o), b64(n)) for h, o, n in index))
    return str(tmp_path / "gcide.index")


def test_gcide_entry(tmp_path):
    entry = ('Abuse \\A*buse"\\, v. t. [F. abuser; L. abusus. See {Use}.]\n'
             '   1. To put to a wrong or improper use; to misuse;\n'
             '      as, to abuse inherited gold.\n'
             '      [1913 Webster]\n'
             '\n'
             '            This principle (if one may so abuse the word) shoots\n'
             '            rapidly into popularity.              --Froude.\n'
             '      [1913 Webster]\n\n')
    idx = _dictd(tmp_path, [("00-database-info", "This file was converted from the original database\n\n"),
                            ("Abuse", entry)])
    assert M.dictd_docs(idx) == [
        "Abuse, v. t. [F. abuser; L. abusus. See Use.] 1. To put to a wrong or improper use; to misuse; "
        "as, to abuse inherited gold.\n"
        "This principle (if one may so abuse the word) shoots rapidly into popularity. --Froude.\n"]


def test_gcide_old_notation():
    e = "Gruff  (gr[u^]f), a. [D. grof.] Rough. \"They cry['e]d.\" --Chaucer. [1913 Webster\n"
    assert M.clean_dict_entry(e) == "Gruff  (gru\u0306f), a. [D. grof.] Rough. \"They crye\u0301d.\" --Chaucer."
    assert M.to_unicode(M.clean_dict_entry("[ae]on, caf['e] [Obs.]")) == "\u00e6on, caf\u00e9 [Obs.]\n"
    assert M.to_ascii(M.clean_dict_entry("caf['e]")) == "cafe\n"
    assert M.clean_dict_entry("Jambolana, n. A tree.\n   [1913 Webster] Jambool\n") == "Jambolana, n. A tree."


def test_foldoc_tags():
    assert M.clean_dict_entry("ADT\n\n   <programming> A kind of {data abstraction}.\n") == \
        "ADT\n(programming) A kind of data abstraction."


def test_pod_to_text():
    pod = ("=head1 NAME\n\nperlfoo - B<bold> and I<italic> words\n\n"
           "=head2 Sorting\n\nUse C<< $a <=> $b >> and see L<the manual|perlfunc> or L<perlfunc/sort>;\n"
           "E<lt>tagE<gt> and F</etc/passwd>X<index entry>.\n\n"
           "=begin html\n\n<p>html only</p>\n\n=end html\n\n"
           "=over 4\n\n=item * First\n\nText of the item.\n\n=back\n\n"
           "    print \"verbatim\";\n\n=cut\n")
    assert M.pod_to_text(pod) == ("NAME\n\nperlfoo - bold and italic words\n\nSorting\n\n"
                                  "Use $a <=> $b and see the manual or sort in perlfunc;\n"
                                  "<tag> and /etc/passwd.\n\nFirst\n\nText of the item.\n\n"
                                  "    print \"verbatim\";")


def test_html_to_text():
    src = ("<html><head><title>T</title><style>p{}</style></head><body>"
           "<div class=\"sphinxsidebar\"><p>sidebar <b>links</b></p></div>"
           "<h1>Title</h1><p>One &amp; two\n  words.</p><script>var x=1;</script>"
           "<pre>  code\n  block</pre><ul><li>item</li></ul></body></html>")
    assert M.html_to_text(src) == "Title\n\nOne & two words.\n\n  code\n  block\n\nitem"


def test_bible_docs():
    out = "Ge1:1 In the beginning.\nGe1:2 And the earth.\nGe2:1 Thus the heavens.\nnoise\n"
    assert M.bible_docs(out) == ["Ge 1\n1 In the beginning.\n2 And the earth.\n", "Ge 2\n1 Thus the heavens.\n"]


def test_unicode_cleaning():
    s = "caf\u00e9 and cafe\u0301\x07 ok\u200b\u00a0x\x1f\ttab\r\nnext\n\n\n\nend"
    assert M.to_unicode(s) == "caf\u00e9 and caf\u00e9 ok x    tab\nnext\n\nend\n"
    assert M.to_ascii(s) == "cafe and cafe ok x    tab\nnext\n\nend\n"


def test_decode_text():
    assert M.decode_text("caf\u00e9".encode()) == "caf\u00e9"
    assert M.decode_text("caf\u00e9".encode()[:-1]) == "caf"          # cut by a read limit
    assert M.decode_text("caf\u00e9 ok".encode("latin-1")) == "caf\u00e9 ok"


def test_english_v2():
    assert M.english_v2(ENGLISH)
    german = ("Der schnelle braune Fuchs springt \u00fcber den faulen Hund, und dann l\u00e4uft er in "
              "den Wald, wo er vor den J\u00e4gern sicher ist. Es gibt viele B\u00e4ume im Wald und "
              "alle sind alt. Wenn die Sonne untergeht, kehrt der Fuchs zu seinem Bau zur\u00fcck. ")
    assert not M.english_v2(german)
    markup = "<div class=\"a\"><span id=\"b\">the {x} = [y] | z</span></div> " * 10
    assert not M.english_v2(markup)
    assert not M.english_v2("the end.")


def test_split_doc():
    paras = ["paragraph %d" % i + " word" * 30 for i in range(50)]
    t = "\n\n".join(paras) + "\n"
    pieces = M.split_doc(t, 1000)
    assert all(len(p) <= 1000 for p in pieces) and len(pieces) > 5
    assert "\n\n".join(p.strip() for p in pieces) == t.strip()
    assert M.split_doc("short\n", 1000) == ["short\n"]


def _english(seed, n):
    """n words of English-like text, different for every seed (so that it does not compress away)."""
    import random
    words = ("the of and to in is that it for as with be on by this are or from river forest fox dog "
             "house garden morning evening quickly slowly bright dark water stone old young walks "
             "reads writes finds keeps small large green").split()
    r = random.Random(seed)
    return " ".join(r.choice(words) for _ in range(n)) + ". "


def _fake_groups(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    for i in range(6):
        (d / ("a%d.txt" % i)).write_text("Document %d about caf\u00e9s.\x07 " % i + _english(i, 120))
    (d / "dup.txt").write_text("Document 0 about caf\u00e9s.\x07 " + _english(0, 120))  # same as a0
    (d / "de.txt").write_text("Dies ist kein englischer Text und wird verworfen. " * 10)
    for i in range(3):
        (d / ("b%d.txt" % i)).write_text("Other group %d. " % i + _english(100 + i, 80))
    ga = sorted(str(p) for p in d.glob("a*.txt")) + [str(d / "dup.txt"), str(d / "de.txt")]
    gb = sorted(str(p) for p in d.glob("b*.txt"))
    return lambda: [M.Group("alpha", 0.7, ga, M.read_text), M.Group("beta", 0.3, gb, M.read_text)]


def test_main_manifest_sums(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(M, "groups_v2", _fake_groups(tmp_path))
    out, man = tmp_path / "c.txt", tmp_path / "c.json"
    assert M.main(["--out", str(out), "--max-mb", "1", "--unicode", "--manifest", str(man)]) == 0
    m = json.loads(man.read_text())
    data = out.read_bytes()
    assert len(data) == m["bytes"] == os.path.getsize(out)
    assert sum(g["bytes"] for g in m["groups"].values()) + m["separator_bytes"] == len(data)
    assert m["docs"] == 9 and m["groups"]["alpha"]["docs"] == 6 and m["groups"]["beta"]["docs"] == 3
    assert m["groups"]["alpha"]["files_read"] == 8   # the duplicate and the German file were read, not kept
    for g in m["groups"].values():
        assert sum(s["bytes"] for s in g["sources"].values()) == g["bytes"]
        assert sum(s["docs"] for s in g["sources"].values()) == g["docs"]
    text = data.decode("utf-8")
    assert "caf\u00e9" in text and "\x07" not in text and "Dies ist" not in text
    assert gzip.decompress((tmp_path / "c.txt.gz").read_bytes()) == data
    assert "alpha" in capsys.readouterr().err


def test_main_ascii_and_exclude(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "groups_v2", _fake_groups(tmp_path))
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    # ASCII with the v2 sources: folded
    assert M.main(["--out", str(a), "--max-mb", "0.002", "--sources", "v2"]) == 0
    ta = a.read_text(encoding="ascii")
    assert "cafes" in ta and 0 < ta.count("Document") < 6 and 0 < ta.count("Other group") < 3
    # held out: none of a's documents
    assert M.main(["--out", str(b), "--max-mb", "1", "--sources", "v2", "--exclude", str(a)]) == 0
    tb = b.read_text()
    assert tb.count("Document") + ta.count("Document") == 6
    firsts = [ln for ln in tb.split("\n") if ln.startswith(("Document", "Other"))]
    assert not any(f in ta for f in firsts)


def test_gz_max_mb(tmp_path, monkeypatch):
    monkeypatch.setattr(M, "groups_v2", _fake_groups(tmp_path))
    out, man = tmp_path / "c.txt", tmp_path / "c.json"
    assert M.main(["--out", str(out), "--max-mb", "1", "--unicode", "--manifest", str(man), "--gz-max-mb", "0.0015"]) == 0
    m = json.loads(man.read_text())
    assert os.path.getsize(str(out) + ".gz") <= 1500 and m["gz_bytes"] <= 1500
    assert len(out.read_bytes()) == m["bytes"] and 0 < m["docs"] < 9


def test_errors_and_install(tmp_path, capsys):
    assert M.main(["--out", str(tmp_path / "x.txt"), "--exclude", str(tmp_path / "missing.txt")]) == 2
    assert "cannot read --exclude" in capsys.readouterr().err
    assert not (tmp_path / "x.txt").exists()
    with pytest.raises(SystemExit):
        M.main(["--out", str(tmp_path / "x.txt"), "--max-mb", "0"])
    assert M.main(["--install"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("apt-get install -y ") and "wordnet-base" in line and "dict-gcide" in line
    assert "fortunes-off" not in line
