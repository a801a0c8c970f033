"""Tests of nldata.py: samples of exactly L tokens whose answers follow <answer>, whose evidence
spans hold the gold answer, and whose retrieval targets are eligible chunks of that evidence."""
import os
import random
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import nldata  # noqa: E402
ABSTAIN = nldata.common.ABSTAIN


@pytest.fixture(scope="module")
def src():
    return nldata.Sources.load(root="/", corpus=None, rounds=1)


def _text(tokens):
    return bytes(int(t) for t in tokens if t < 256).decode("utf-8", "replace")


@pytest.mark.parametrize("L", [1024, 4096])
def test_samples(src, L):
    tok = nldata.ByteTokenizer()
    rng = random.Random(L)
    seen_kinds = set()
    for _ in range(40):
        s = nldata.make_sample(rng, tok, L, src)
        assert len(s.tokens) == L and s.tokens[0] == tok.bos
        if s.family == "lm":
            assert not s.ans.any() and not s.sup
            continue
        assert len(s.answers) == len(s.meta["questions"]) >= 1
        for a, m in zip(s.answers, s.meta["questions"]):
            seen_kinds.add(m["kind"])
            a0 = m["answer_pos"]
            assert s.tokens[a0] == tok.answer
            got = _text(s.tokens[a0 + 1:a0 + 1 + len(a.encode())])
            assert got == a and s.tokens[a0 + 1 + len(a.encode())] == tok.eos
            assert s.ans[a0:a0 + len(a.encode()) + 1].all()
            if m["kind"] == "absent":
                assert a == ABSTAIN and not m["spans"]
            elif m["kind"] in ("fact", "changed", "before"):
                ev = " ".join(_text(s.tokens[x:y]) for x, y in m["spans"])
                assert a in ev, (a, ev)
        for t, chunks in s.sup:
            assert s.ans[t] and chunks and all((c + 1) * 64 <= t for c in chunks)
    assert {"fact", "absent"} <= seen_kinds


def test_tokenize_segments_maps_byte_spans_to_tokens():
    class Pairs(nldata.ByteTokenizer):   # a tokenizer of two bytes a token: spans round outwards
        bytes_per_token = 2.0

        def encode(self, data):
            return np.arange((len(data) + 1) // 2, dtype=np.int64)

        def lengths(self, ids):
            return np.full(len(ids), 2, dtype=np.int64)

    ids, qs = nldata._tokenize_segments(Pairs(), [("abcdef", [dict(evidence=[(1, 4)])]),
                                                  ("ghij", [dict(evidence=[(0, 2)])])])
    assert len(ids) == 5
    assert qs[0][1] == [(0, 2)] and qs[1][1] == [(3, 4)]
