"""Self-checks of the reference model (run with Debian's python: /usr/bin/python3 -m pytest tools/train)."""
import math
import os
import sys

import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hsa_model import (HSAConfig, HSAModel, expected_param_shapes, select_topk, retrieval_scores,  # noqa: E402
                       hsa_attend, hsa_attend_naive, sliding_window_attention, _attn_core)
from safetensors_io import save_file, load_file  # noqa: E402
import make_golden  # noqa: E402

DATA = os.path.join(HERE, "..", "..", "tests", "data")


def tiny_cfg(**kw):
    d = dict(make_golden.TINY)
    d.update(kw)
    return HSAConfig(**d)


@pytest.fixture(scope="module")
def golden_model():
    cfg = tiny_cfg(tie_word_embeddings=True, hsa_residual="standard")
    m = HSAModel(cfg)
    make_golden.init_golden(m, 1234, 2.6)
    return m.double().eval()


@pytest.fixture(scope="module")
def tokens():
    return make_golden.make_tokens(64 * 13 + 17, 7)


def test_param_names_and_shapes():
    for tie in (True, False):
        cfg = tiny_cfg(tie_word_embeddings=tie)
        sd = HSAModel(cfg).state_dict()
        exp = expected_param_shapes(cfg)
        assert set(sd) == set(exp)
        for k, v in sd.items():
            assert tuple(v.shape) == exp[k], k
        assert ("lm_head.weight" in sd) == (not tie)


def test_safetensors_roundtrip(tmp_path):
    t = {"a": torch.randn(3, 4), "b": torch.randn(5).to(torch.bfloat16), "c": torch.arange(6, dtype=torch.int32),
         "d": torch.randn(2, dtype=torch.float64), "e": torch.arange(3)}
    p = str(tmp_path / "x.safetensors")
    save_file(t, p, {"k": "v"})
    r, meta = load_file(p, with_metadata=True)
    assert meta == {"k": "v"}
    for k in t:
        assert r[k].dtype == t[k].dtype and torch.equal(r[k], t[k])
    raw = open(p, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    assert (8 + n) % 8 == 0


def test_swa_blocked_equals_dense():
    torch.manual_seed(0)
    B, T, H, dh, W = 2, 300, 3, 8, 40
    q, k, v = (torch.randn(B, T, H, dh, dtype=torch.float64) for _ in range(3))
    o = sliding_window_attention(q, k, v, W, 0.3)
    i = torch.arange(T)
    mask = (i[None, :] <= i[:, None]) & (i[None, :] >= i[:, None] - W + 1)
    ref = _attn_core(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask[None, None], 0.3).transpose(1, 2)
    assert torch.allclose(o, ref, atol=1e-12)


def test_ties_go_to_recent_chunk():
    S, K, C = 64, 3, 6
    s = torch.zeros(1, 1, 1, C, dtype=torch.float64)
    s[..., 1] = 1.0
    s[..., 4] = 1.0  # tie with chunk 1 at the top
    s[..., 2] = 0.5
    s[..., 5] = 0.5  # tie between 2 and 5 for the last slot... 5 is the most recent
    t = torch.tensor([C * S])
    qr = None  # noqa: F841
    idx, w = select_topk(s, torch.tensor([C]), K)
    assert idx[0, 0, 0].tolist() == [5, 4, 1]
    # all equal -> the K most recent eligible chunks
    s2 = torch.zeros(1, 1, 1, C, dtype=torch.float64)
    s2[..., 5] = float("-inf")  # pretend only 5 chunks are eligible
    idx2, w2 = select_topk(s2, torch.tensor([5]), K)
    assert idx2[0, 0, 0].tolist() == [4, 3, 2]
    assert torch.allclose(w2, torch.full_like(w2, 1.0 / 3))
    del t


def test_eligibility_and_early_tokens(golden_model, tokens):
    cfg = golden_model.cfg
    S, K = cfg.chunk_size, cfg.chunk_topk
    captured = []
    hooks = [g.hsa.o.register_forward_hook(lambda mod, inp, out: captured.append(inp[0].detach()))
             for g in golden_model.upper]
    with torch.no_grad():
        out = golden_model(tokens, return_intermediates=True)
    for h in hooks:
        h.remove()
    T = tokens.shape[0]
    for g, (idx, w) in enumerate(zip(out["topk_idx"], out["topk_w"])):
        for t in range(T):
            n = min(t // S, K)
            row = idx[t]  # [Hm, K]
            assert int((row >= 0).sum(-1).min()) == n and int((row >= 0).sum(-1).max()) == n
            sel = row[row >= 0]
            assert bool(((sel + 1) * S <= t).all())
            ws = w[t].sum(-1)
            if n == 0:
                assert float(w[t].abs().max()) == 0.0
            else:
                assert torch.allclose(ws, torch.ones_like(ws))
        # descending chunk order, -1 last
        r = idx.clone()
        r[r < 0] = -1
        assert bool((r[..., :-1] >= r[..., 1:]).all())
        # the HSA output (input of W_o) of tokens t < S is exactly 0
        O = captured[g][0]
        assert float(O[:S].abs().max()) == 0.0
        assert float(O[S:].abs().max()) > 0.0


def brute_force_hsa_token(layer, h_t, t, mem, cfg):
    """Everything by loops for one token: scores, top-K (ties -> recent), softmax, per-chunk
    attention, mixing.  h_t = hsa_norm(x_t) [D].  Returns O [H*dh]."""
    S, K, Hm, dr, H, dh = cfg.chunk_size, cfg.chunk_topk, cfg.num_memory_heads, cfg.retrieval_dim, cfg.num_attention_heads, cfg.head_dim
    G = H // Hm
    qr = (layer.retr.weight @ h_t).view(Hm, dr)
    q = (layer.q.weight @ h_t).view(H, dh)
    q = q / torch.sqrt(q.pow(2).mean(-1, keepdim=True) + cfg.rms_norm_eps) * layer.q_norm.weight
    lm, km, vm = mem["landmarks"][0], mem["kmem"][0], mem["vmem"][0]
    out = torch.zeros(H, dh, dtype=torch.float64)
    for m in range(Hm):
        cand = []
        for c in range(lm.shape[0]):
            if (c + 1) * S <= t:
                cand.append((float(qr[m] @ lm[c, m]) / math.sqrt(dr), c))
        cand.sort(key=lambda sc: (-sc[0], -sc[1]))
        chosen = cand[:K]
        if not chosen:
            continue
        mx = max(sc for sc, _ in chosen)
        z = sum(math.exp(sc - mx) for sc, _ in chosen)
        for sc, c in chosen:
            wgt = math.exp(sc - mx) / z
            for i in range(m * G, (m + 1) * G):
                a = torch.tensor([float(q[i] @ km[c, j, m]) / math.sqrt(dh) for j in range(S)], dtype=torch.float64)
                p = torch.softmax(a, 0)
                o = sum(p[j] * vm[c, j, m] for j in range(S))
                out[i] += wgt * o
    return out.reshape(H * dh)


def test_brute_force_hsa_equals_vectorised(golden_model, tokens):
    cfg = golden_model.cfg
    captured = {}
    layer = golden_model.upper[1].hsa
    hk = layer.hsa_norm.register_forward_hook(lambda mod, inp, out: captured.__setitem__("h", out.detach()))
    ho = layer.o.register_forward_hook(lambda mod, inp, out: captured.__setitem__("O", inp[0].detach()))
    with torch.no_grad():
        out = golden_model(tokens[None], return_intermediates=True)
    hk.remove()
    ho.remove()
    mem = {k: out[k] for k in ("landmarks", "kmem", "vmem")}
    for t in (0, 63, 64, 65, 200, 511, 512, 700, 848):
        ref = brute_force_hsa_token(layer, captured["h"][0, t], t, mem, cfg)
        assert torch.allclose(captured["O"][0, t], ref, atol=1e-10, rtol=1e-9), t


def test_hsa_attend_matches_naive():
    torch.manual_seed(1)
    B, T, H, dh, C, S, Hm, K = 2, 5, 4, 8, 6, 16, 2, 3
    q = torch.randn(B, T, H, dh, dtype=torch.float64)
    km = torch.randn(B, C, S, Hm, dh, dtype=torch.float64)
    vm = torch.randn(B, C, S, Hm, dh, dtype=torch.float64)
    idx = torch.randint(0, C, (B, T, Hm, K))
    idx[0, 0, 0, 2] = -1
    w = torch.softmax(torch.randn(B, T, Hm, K, dtype=torch.float64), -1)
    w[0, 0, 0, 2] = 0
    assert torch.allclose(hsa_attend(q, km, vm, idx, w), hsa_attend_naive(q, km, vm, idx, w), atol=1e-12)


def test_hsa_kernel_choice():
    """The layers call hsa_attention: hsa_attend unless a kernel is set, and always on CPU tensors
    (the Triton kernel itself runs on the GPU machine: tools/train/check_hsa_triton.py)."""
    import hsa_model
    with pytest.raises(ValueError):
        hsa_model.set_hsa_kernel("cuda")
    calls = []
    hsa_model._HSA_CUDA = lambda *a: calls.append(a)  # what set_hsa_kernel("triton") installs
    try:
        torch.manual_seed(2)
        q = torch.randn(1, 3, 4, 8, dtype=torch.float64)
        km = torch.randn(1, 2, 16, 2, 8, dtype=torch.float64)
        vm = torch.randn(1, 2, 16, 2, 8, dtype=torch.float64)
        idx = torch.zeros(1, 3, 2, 1, dtype=torch.long)
        w = torch.ones(1, 3, 2, 1, dtype=torch.float64)
        assert torch.equal(hsa_model.hsa_attention(q, km, vm, idx, w), hsa_attend(q, km, vm, idx, w))
        assert not calls
    finally:
        assert hsa_model.set_hsa_kernel("torch") == "torch"
    assert hsa_model._HSA_CUDA is None
    if not torch.cuda.is_available():  # auto: the reference where there is no GPU (CI)
        assert hsa_model.set_hsa_kernel("auto") == "torch" and hsa_model._HSA_CUDA is None


def test_fp32_matches_fp64(golden_model, tokens):
    m64 = golden_model
    cfg = m64.cfg
    m32 = HSAModel(cfg)
    m32.load_state_dict({k: v.float() for k, v in m64.state_dict().items()})
    m32.eval()
    with torch.no_grad():
        a = m64(tokens, return_intermediates=True)
        b = m32(tokens, return_intermediates=True)
    for g in range(cfg.num_upper_groups):
        assert torch.equal(a["topk_idx"][g], b["topk_idx"][g])
        assert float((a["topk_w"][g] - b["topk_w"][g].double()).abs().max()) < 1e-4
    for k in ("x_mid", "landmarks", "kmem", "vmem", "logits"):
        ref = a[k]
        err = float((ref - b[k].double()).abs().max()) / max(1.0, float(ref.abs().max()))
        assert err < 2e-5, (k, err)


def test_upper_start_matches_full_forward_far_from_start(golden_model, tokens):
    cfg = golden_model.cfg
    u = 256
    with torch.no_grad():
        full = golden_model(tokens)["logits"]
        tail = golden_model(tokens, upper_start=u)["logits"]
    # the upper SWA receptive field: (1 + R) SWA blocks per group, each W-1 back
    reach = cfg.num_upper_groups * (1 + cfg.swa_layers_per_group) * (cfg.sliding_window - 1)
    if u + reach < tokens.shape[0]:
        assert torch.allclose(full[u + reach:], tail[reach:], atol=1e-10)


@pytest.mark.parametrize("name", ["tiny", "tiny-bypass"])
def test_golden_files_reproduce(name):
    d = os.path.join(DATA, name)
    if not os.path.exists(os.path.join(d, "golden.safetensors")):
        pytest.skip("golden not generated")
    m = HSAModel.from_pretrained(d, dtype=torch.float64).eval()
    g = load_file(os.path.join(d, "golden.safetensors"))
    with torch.no_grad():
        out = m(g["tokens"].long(), return_intermediates=True)
    assert torch.allclose(out["logits"].float(), g["logits"], atol=1e-5, rtol=1e-5)
    assert torch.allclose(out["x_mid"].float(), g["x_mid"], atol=1e-5, rtol=1e-5)
    for gi in range(m.cfg.num_upper_groups):
        k = out["topk_idx"][gi].shape[-1]
        assert torch.equal(out["topk_idx"][gi].int(), g["topk_idx"][gi, :, :, :k])
