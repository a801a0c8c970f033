"""trace_answer.py's windowed memory and upper pass against the reference's own forward pass."""
import os
import random
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "train"))
import data as D  # noqa: E402
import trace_answer as TA  # noqa: E402
from hsa_model import HSAModel  # noqa: E402


def test_upper_pass_matches_the_forward_pass(monkeypatch):
    """On the tiny golden model, with windows of 256 tokens over a 2,048-token sample (so the
    memory is built in 8 pieces): the same landmarks, K/V, picks and logits as model(...). (Without
    the windows' warm-up tokens the landmarks differ and this fails: checked.)"""
    monkeypatch.setattr(TA, "WINDOW", 256)
    torch.manual_seed(0)
    model = HSAModel.from_pretrained(os.path.join(ROOT, "tests", "data", "tiny")).eval()
    words = D.FALLBACK_WORDS + D.NOISE
    rng = random.Random(3)
    corpus = D.Corpus(text=" ".join(rng.choice(words) for _ in range(20000)))
    toks = D.fam_vt(random.Random(5), corpus, 2048, model.cfg.chunk_size).tokens.tolist()
    u = len(toks) - 300
    logits, idx, w = TA.upper_pass(model, toks, u)
    with torch.no_grad():
        ref = model(torch.tensor(toks)[None], upper_start=u, return_intermediates=True)
        mem = TA.memory(model, toks)
    for k in ("landmarks", "kmem", "vmem"):
        assert torch.allclose(mem[k], ref[k], atol=1e-5), k
    assert torch.allclose(logits, ref["logits"][0], atol=1e-4)
    for li in range(len(idx)):
        assert torch.equal(idx[li], ref["topk_idx"][li][0])
        assert torch.allclose(w[li], ref["topk_w"][li][0], atol=1e-5)


def test_upper_pass_from_upper_reach_matches_the_whole_forward_pass():
    """Started upper_reach() before the answers, the upper pass gives the answers the logits of a
    pass over the whole sequence (the engine's, which continues the stream); a start closer to
    them does not (the first traces of session 14 started 2 x W + S before: checked to differ)."""
    model = HSAModel.from_pretrained(os.path.join(ROOT, "tests", "data", "tiny")).eval()
    words = D.FALLBACK_WORDS + D.NOISE
    corpus = D.Corpus(text=" ".join(random.Random(3).choice(words) for _ in range(20000)))
    toks = D.fam_vt(random.Random(7), corpus, 2048, model.cfg.chunk_size).tokens.tolist()
    first = len(toks) - 40
    u = first - TA.upper_reach(model.cfg)
    logits, _, _ = TA.upper_pass(model, toks, u)
    with torch.no_grad():
        full = model(torch.tensor(toks)[None])["logits"][0]
    assert torch.allclose(logits[first - u:], full[first:], atol=1e-4)
