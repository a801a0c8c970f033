"""Tests of the memory-task generators and the natural-language evaluation's scoring.

The generators must be right about their own answers (the gold answer lies inside the evidence they
record) and keep their splits apart (nothing held out appears in train-split output)."""
import os
import random
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "eval"))
import chat  # noqa: E402
import common  # noqa: E402
import records  # noqa: E402
import nl_eval  # noqa: E402

FILLER = chat.Filler([("tar", "tar saves many files together into a single tape or disk archive, and can restore "
                       "individual files from the archive. " * 3),
                      ("ls", "List information about the FILEs (the current directory by default). Sort entries "
                       "alphabetically if none of the other options is specified. " * 3)])


def _histories(split, n=30, size=20_000):
    rng = random.Random(split)
    for _ in range(n):
        hist = chat.make_history(rng, split, size, FILLER)
        text, spans = chat.render(hist, chat.pick_format(rng, split))
        yield hist, text.encode(), chat.questions(hist, spans, rng, split, rough=False)


@pytest.mark.parametrize("split", ["train", "held"])
def test_chat_gold_inside_evidence(split):
    kinds = set()
    for hist, data, qs in _histories(split):
        for q in qs:
            kinds.add(q["kind"])
            ev = [data[a:b].decode() for a, b in q["evidence"]]
            if q["kind"] in ("fact", "changed", "before"):
                assert any(g in e for g in q["golds"] for e in ev), (q, ev)
            elif q["kind"] == "list":
                assert all(any(f[0] in e for e in ev) for f in q["golds"]), (q, ev)
            elif q["kind"] == "when":   # the trip's turn, and the date as written where it dates it
                assert len(ev) == 2 and ev[0].strip() and q["golds"][0] in ev[1], (q, ev)
            elif q["kind"] == "absent":
                assert q["golds"] == [common.ABSTAIN] and not q["evidence"]
    assert {"fact", "changed", "before", "absent"} <= kinds


def test_chat_train_split_holds_nothing_held_out():
    held_types = {k for k, f in chat.FACTS.items() if f["split"] == "held"}
    held_say = {t for f in chat.FACTS.values() for t in f["say"][-chat.HELD_S:]}
    held_ask = {t for f in chat.FACTS.values() for t in f["ask"][-chat.HELD_Q:]}
    held_fmt = set(chat.FORMATS[-chat.HELD_F:])
    rng = random.Random(5)
    for _ in range(40):
        hist = chat.make_history(rng, "train", 10_000, FILLER)
        assert not {f["kind"] for f in hist["facts"]} & held_types
        assert not {f["say"] for f in hist["facts"]} & held_say
        assert chat.pick_format(rng, "train") not in held_fmt
        assert common.value_split(hist["speaker"]) == "train"
        for f in hist["facts"]:
            for v in f["values"].values():
                if isinstance(v, str) and v in chat.FIRST + chat.PET_NAMES + chat.CITIES:
                    assert common.value_split(v) == "train", v
    for f in chat.FACTS.values():
        assert not set(common.families(f["ask"], "train", chat.HELD_Q)) & held_ask


def test_value_split_is_a_partition():
    vals = chat.CITIES + chat.FIRST
    train, held = set(common.pool(vals, "train")), set(common.pool(vals, "held"))
    assert train and held and not train & held and train | held == set(vals)


@pytest.mark.parametrize("split", ["train", "held"])
def test_records_gold_inside_evidence(split):
    rng = random.Random(11)
    text, qs = records.make_archive(rng, split, 200_000)
    data = text.encode()
    assert len([q for q in qs if q["kind"] == "fact"]) >= 20
    doms = {q["domain"] for q in qs}
    assert doms & (set(records.TRAIN_DOMAINS) if split == "train" else set(records.HELD_DOMAINS))
    assert not doms & (set(records.HELD_DOMAINS) if split == "train" else set(records.TRAIN_DOMAINS))
    for q in qs:
        if q["kind"] == "absent":
            continue
        ev = data[q["evidence"][0][0]:q["evidence"][0][1]].decode()
        if q["fact"] == "copyright.License":
            assert q["golds"][0] in ev
        else:
            assert any(g in ev for g in q["golds"]), (q, ev)


def test_score():
    s = common.score
    assert s("Biscuit", ["Biscuit"])
    assert s("His name is Biscuit.", ["Biscuit"])
    assert not s("Biscuits", ["Biscuit"])
    assert not s("Biscuit " + "and lots more text " * 10, ["Biscuit"])
    assert s("the blue sofa", ["blue sofa"])
    assert s("April 3, 2021", common.date_forms(2021, 4, 3))
    assert not s(common.ABSTAIN, ["Biscuit"])
    assert s("I don't know", [common.ABSTAIN], "absent")
    assert not s("Biscuit", [common.ABSTAIN], "absent")
    assert s("Peru and Japan", [["Japan"], ["Peru"]], "list")
    assert not s("Peru", [["Japan"], ["Peru"]], "list")
    assert common.ordinal(21) == "21st" and common.ordinal(12) == "12th" and common.ordinal(3) == "3rd"


def test_evidence_rank_and_bm25():
    data = ("filler text about nothing " * 40 + "The door code for the bike shed is 4242. " +
            "more filler words here " * 40).encode()
    bm = nl_eval.Bm25(data, size=128, stride=64)
    start = data.index(b"The door code")
    ev = [(start, start + 40)]
    assert nl_eval.evidence_rank(bm.search("What is the door code for the bike shed?", 5), ev) == 1
    assert nl_eval.evidence_rank([(0, 10), (start, start + 1)], ev) == 2
    assert nl_eval.evidence_rank([(0, 10)], ev) is None
    assert nl_eval.passages(b"x" * 1000, 512, 256)[-1] == (512, 1000)


def test_synonymize_keeps_splits_and_answers():
    rng = random.Random(3)
    outs = {common.synonymize("What's my dog's name?", rng, "train", p=1.0) for _ in range(200)}
    held = {y for y in common.SYNONYMS["dog"] if common.value_split("dog>" + y) == "held"}
    assert len(outs) >= 2 and not any(re.search(r"\b%s's" % h, o) for o in outs for h in held), (outs, held)
    assert all(o.endswith("'s name?") for o in outs)
    # the answer's words are never swapped
    assert common.synonymize("Is the code 4471?", rng, "train", p=1.0, protect=("code",)) == "Is the code 4471?"


@pytest.mark.parametrize("task,k", [("keys", 1), ("keys", 4), ("values", 3), ("chain", 4)])
def test_needle_haystacks(task, k):
    import needles
    rng = random.Random(k)
    paras = [p for _, p in FILLER.pairs]
    for split in ("train", "held"):
        text, qs = needles.haystack(rng, split, paras, 4000, task, k)
        data = text.encode()
        ev = [data[a:b].decode() for q in qs for a, b in q["evidence"]]
        if task == "keys":
            assert len(qs) == k and all(q["golds"][0] in data[q["evidence"][0][0]:q["evidence"][0][1]].decode()
                                        for q in qs)
        elif task == "values":
            assert all(g[0] in e for g, e in zip(qs[0]["golds"], ev)) and len(ev) == k
        else:   # the chain's things in document order: each link names the thing before it
            xs = [g[0] for g in qs[0]["golds"]]
            assert qs[0]["answer"] == needles.joined(xs) and len(ev) == k
            assert all(xs[i] in ev[i] and xs[i - 1] in ev[i] for i in range(1, k))
        fams = needles.SAY + needles.SAY_VALUES + needles.LINK
        held = set(needles.SAY[-needles.HELD:] + needles.SAY_VALUES[-needles.HELD_LISTS:] +
                   needles.LINK[-needles.HELD_LISTS:])
        used = {f for f in fams for e in ev if re.fullmatch(re.escape(f).replace(r"\{x\}", ".+").replace(
            r"\{y\}", ".+").replace(r"\{v\}", r"\d+"), e)}
        assert used and (used <= held if split == "held" else not used & held), (split, used)
