"""vt_layout.py: which chunk boundaries split a vt link."""
import os
import random
import sys

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
