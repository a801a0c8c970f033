"""vt_layout.py: which chunk boundaries split a vt link."""
import json
import os
import random
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
import eval_engine as E  # noqa: E402
import vt_layout as VL  # noqa: E402


def test_split_links():
    link = "VAR FYXQY = 79479487."  # session 15's 4M miss #16: 'VAR FYXQ' | 'Y = 79479487.'
    assert VL.link_cut(link, 64 - 8, 64) == 8 and VL.is_split(link, 8)
    assert VL.link_cut(link, 64, 64) is None and not VL.is_split(link, None)  # starts a chunk
    assert not VL.is_split(link, 2)  # 'VA' | 'R FYXQY = ...': the name and the key together
    assert VL.is_split(link, len(link) - 2)  # the key's last digit in the next chunk
    assert not VL.is_split(link, len(link) - 1)  # only the '.' there
    hop = "VAR QNKBW = VAR LPVEP."
    assert VL.is_split(hop, 15)  # 'VAR QNKBW = VAR' | ' LPVEP.': the whole name before the key


def test_chain_links_of_a_sample():
    rng = random.Random(3)
    words = D.FALLBACK_WORDS + D.NOISE
    corpus = D.Corpus(text=" ".join(rng.choice(words) for _ in range(20000)))
    (_, _, _, hay, qas, spans), = E.task_haystacks(random.Random(7), corpus, ["vt"], [4096], 1, spans=True)
    names = qas[0][1].decode().split()
    links = VL.chain_links(hay, spans, names)
    assert sorted(t.split()[1] for _, t in links) == sorted(names)  # one link per name, no distractor
    for st, text in links:
        assert bytes(hay[st:st + len(text)]).decode("latin-1") == text
        cut = VL.link_cut(text, st, 64)
        assert (cut is None) == (st // 64 == (st + len(text) - 1) // 64)


def test_miss_kinds():
    want = "KGVXM VISEU SDYTZ".split()
    assert VL.miss_kind(want, "PASDW VISEU SDYTZ".split(), ["PASDW"]) == "distractor first"
    assert VL.miss_kind(want, "VISEU SDYTZ".split(), ["PASDW"]) == "other first"
    assert VL.miss_kind(want, [], ["PASDW"]) == "other first"
    assert VL.miss_kind(want, "KGVXM VISEU".split(), ["PASDW"]) == "stops early"
    assert VL.miss_kind(want, "KGVXM VISEU VISEU".split(), ["PASDW"]) == "loop"
    assert VL.miss_kind(want, "KGVXM SDYTZ VISEU".split(), ["PASDW"]) == "later name"
    hay = bytearray(b"x" * 10 + b"VAR PASDW = 2582041." + b"y" * 5 + b"VAR KGVXM = 25579.")
    spans = [(10, 30), (35, 53)]
    assert VL.distractors(hay, spans, ["KGVXM"]) == ["VAR PASDW = 2582041."]


def test_records_with_a_gap(tmp_path, monkeypatch, capsys):
    """main() finds each record by question and answer: a run whose process timed out (a haystack
    without a record) is replayed, the gap listed; records of other haystacks stop it."""
    rng = random.Random(5)
    words = D.FALLBACK_WORDS + D.NOISE
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(" ".join(rng.choice(words) for _ in range(20000)))
    draws = E.task_haystacks(random.Random(1234), D.Corpus(str(corpus)), ["vt"], [4096], 4)
    recs = [{"task": "vt", "length": 4096, "question": qas[0][0].decode("latin-1"),
             "want": qas[0][1].decode(), "got": qas[0][1].decode() if i != 3 else "", "ok": i != 3}
            for _, _, i, _, qas in draws]
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs[:1] + recs[2:][::-1]))  # #1 missing, order shuffled
    argv = ["vt_layout.py", "--length", "4096", "--n", "4", "--corpus", str(corpus), "--records", str(path)]
    monkeypatch.setattr(sys, "argv", argv)
    VL.main()
    out = capsys.readouterr().out
    assert "no record for 1 haystacks: 1" in out
    rows = {ln.split("|")[0].strip(): ln for ln in out.splitlines() if ln.startswith(("hit  |", "miss |"))}
    assert sum(int(x) for x in rows["hit"].split("|")[1:]) == 2  # with a split link + without
    assert sum(int(x) for x in rows["miss"].split("|")[1:]) == 1
    recs[0]["want"] = "AAAAA BBBBB"  # a record that matches no haystack here
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    with pytest.raises(SystemExit):
        VL.main()
