"""The evaluation's haystack builders (tools/train/data.py eval_sample, tools/eval/eval_engine.py
split_sample): every number in docs/evaluation.md comes from haystacks they make, so a haystack
must be exactly L tokens, hold its needle where the generator says, and split into the bytes that
are appended and the question that is asked."""
import random
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "tools" / "eval"), str(REPO / "tools" / "train")]
import data as D  # noqa: E402
import eval_engine as E  # noqa: E402


def _corpus():
    return D.Corpus(text=" ".join(D.NOISE * 300))


@pytest.mark.parametrize("L,depth", [(4096, 0.0), (4096, 0.5), (4096, 1.0), (70000, 0.25)])
def test_single_needle_haystack(L, depth):
    toks, a0, n_ans, chunks, value = D.eval_sample(random.Random(7), _corpus(), L, 64, kind="number", depth=depth)
    assert len(toks) == L and toks.dtype == np.int64 and toks[0] == D.BOS
    assert toks[a0] == D.ANSWER and n_ans == len(value) + 1 and toks[-1] == D.EOS
    hay, qas = E.split_sample(toks)
    assert len(qas) == 1
    question, answer = qas[0]
    assert answer == value.encode() and question.startswith(b"What is the special magic number for ")
    at = hay.find(b"The special magic number for ")
    assert at >= 0 and (at + 1) // 64 == chunks[0]   # chunk indices count the <bos>
    assert len(hay) + 1 + len(question) + 1 + len(answer) + 1 + 1 == L
    # the list form of the same sample splits the same way
    assert E.split_sample(toks.tolist()) == (hay, qas)


def test_task_haystacks_split():
    for task, L, i, hay, qas in E.task_haystacks(random.Random(3), _corpus(), ["multiquery", "vt"], [8192], 2):
        assert 7800 < len(hay) < 8192 and qas   # the rest of the 8192 tokens: the questions and answers
        for q, a in qas:
            assert q and a and b"\n" not in a, (task, i)


def test_split_sample_rejects_bad_samples():
    with pytest.raises(ValueError):
        E.split_sample([D.BOS, 65, 66])                                  # no <query>
    with pytest.raises(ValueError):
        E.split_sample([D.BOS, 300, D.QUERY, 65, D.ANSWER, 66, D.EOS])   # a non-byte in the haystack


def test_passkey_codes():
    """--passkey-codes: other codes near the pass key, none of them the pass key; the question, its
    answer and its supervision stay the pass key's; at 0 the sample is the old one."""
    c = _corpus()
    for seed in range(20):
        s = D.fam_passkey(random.Random(seed), c, 4096, 64, opts=dict(passkey_codes=1.0))
        toks = s.tokens
        hay, qas = E.split_sample(toks)
        (q, a), = qas
        assert len(toks) == 4096 and q.decode() in D.PASSKEY_Q
        assert hay.count(b" pass key is %s." % a) + hay.count(b" passkey is %s." % a) >= 1
        marks = (b" access code is ", b"The code for the ", b" PIN is ", b"Door code for the ")  # CODE_T
        assert any(m in hay for m in marks)   # at least one other code was written
        for t in (b"access code is ", b"PIN is ", b": "):
            i = hay.find(t)
            while i >= 0:
                assert not hay[i + len(t):].startswith(a + b"."), "a code equal to the pass key"
                i = hay.find(t, i + 1)
    plain = D.fam_passkey(random.Random(3), c, 4096, 64)
    zero = D.fam_passkey(random.Random(3), c, 4096, 64, opts=dict(passkey_codes=0.0))
    assert (plain.tokens == zero.tokens).all() and plain.sup == zero.sup
