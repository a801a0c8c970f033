"""The ctypes binding (bpe_c.py) against the committed reference fixtures of tests/tokenizer.

  HSADB_BPE_LIB=build/libhsadb_bpe.so /usr/bin/python3 -m pytest -q tools/train/test_bpe_c.py
"""
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bpe_c  # noqa: E402

FIX = os.path.join(HERE, "..", "..", "tests", "tokenizer", "fixtures")


def cases():
    """(tokenizer name, input bytes, reference ids, round trip?) from cases.txt."""
    name = None
    with open(os.path.join(FIX, "cases.txt")) as f:
        for line in f:
            kind, _, rest = line.rstrip("\n").partition(" ")
            if kind == "t":
                name = rest
            elif kind in ("c", "n"):
                hexs, _, ids = rest.partition(" ")
                data = b"" if hexs == "-" else bytes.fromhex(hexs)
                yield name, data, [] if ids == "-" else [int(x) for x in ids.split()], kind == "c"


def test_reference_cases():
    toks, n = {}, 0
    for name, data, want, round_trip in cases():
        tok = toks.get(name) or toks.setdefault(name, bpe_c.Tokenizer(os.path.join(FIX, name + ".json")))
        got = tok.encode(data)
        assert got == want, (name, data[:60])
        assert np.array_equal(tok.encode_np(data), np.array(want, dtype=np.uint32))
        if round_trip:
            assert tok.decode(got) == data
        n += 1
    assert n > 400 and len(toks) == 3


def test_added_tokens_and_sizes():
    tok = bpe_c.Tokenizer(os.path.join(FIX, "cl100k_4k.json"))
    eos = tok.token_id("<eos>")
    assert eos is not None and tok.is_special(eos)
    assert tok.token_id("no such token") is None
    assert tok.vocab_size == 4096 + 6
    assert tok.encode("a<eos>b")[1] == eos
    assert tok.decode([eos]) == b"<eos>"
    long = "word " * 100000  # past the binding's first output buffer
    assert tok.decode(tok.encode(long)) == long.encode()


def test_errors_are_raised():
    with pytest.raises(bpe_c.TokenizerError, match="nonexistent"):
        bpe_c.Tokenizer("/nonexistent/tokenizer.json")
    tok = bpe_c.Tokenizer(os.path.join(FIX, "gpt2_4k.json"))
    with pytest.raises(bpe_c.TokenizerError, match="names no token"):
        tok.decode([10**9])
