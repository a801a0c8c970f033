"""Checks of the synthetic data (data.py) and of the retrieval loss on it (fast, CPU).

  /usr/bin/python3 -m pytest -q tools/train/test_data.py
"""
import math
import os
import random
import re
import sys

import numpy as np
import pytest
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import data as D  # noqa: E402
import train as T  # noqa: E402

S = 64
NEEDLE_FAMS = ["passkey", "niah", "multikey", "multiquery", "multivalue", "vt"]


@pytest.fixture(scope="module")
def corpus():
    rng = random.Random(0)
    words = D.FALLBACK_WORDS + D.NOISE
    text = " ".join(rng.choice(words) for _ in range(60000))
    return D.Corpus(text=text)


def text(tokens):
    return bytes(int(x) for x in tokens if x < 256).decode("ascii")


def runs(sample):
    """maximal runs of answer positions with the same needle set -> (set, [positions])"""
    out = []
    for t in sorted(sample.meta["pos_needles"]):
        ns = tuple(sample.meta["pos_needles"][t])
        if out and out[-1][0] == ns and out[-1][1][-1] == t - 1:
            out[-1][1].append(t)
        else:
            out.append((ns, [t]))
    return out


def samples(corpus, fams, opts, n=40, lengths=(1024, 2048)):
    for fam in fams:
        for seed in range(n):
            for L in lengths:
                s = D.FAMILIES[fam](random.Random(seed * 7 + L), corpus, L, S, opts=opts)
                s.family = fam
                yield s


@pytest.mark.parametrize("tail_frac", [0.0, 0.5])
def test_supervision_is_eligible_and_holds_the_emitted_text(corpus, tail_frac):
    opts = dict(D.TRAIN_OPTS, tail_frac=tail_frac)
    n_pos = n_unsup = n_checked = 0
    for s in samples(corpus, NEEDLE_FAMS, opts):
        toks, m = s.tokens, s.meta
        sup = dict(s.sup)
        assert len(sup) == len(s.sup)
        for t, chunks in s.sup:
            assert s.ans[t], "supervision outside the answer"
            assert chunks and chunks == sorted(set(chunks))
            assert all((c + 1) * S <= t for c in chunks), "ineligible chunk supervised"
            # every supervised chunk holds part of the value text of a needle emitted at t
            for c in chunks:
                assert any(a < (c + 1) * S and e > c * S for i in m["pos_needles"][t] for a, e in m["sup_spans"][i])
        assert set(m["pos_needles"]) == set(np.nonzero(s.ans)[0].tolist())
        n_pos += len(m["pos_needles"])
        n_unsup += len(m["pos_needles"]) - len(sup)
        for ns, ts in runs(s):
            emitted = text(toks[t + 1] for t in ts)
            if len(ns) != 1 or not emitted or toks[ts[-1] + 1] == D.EOS:
                continue
            i = ns[0]
            a, e = m["spans"][i]
            assert emitted in text(toks[a:e]), (s.family, emitted, text(toks[a:e]))
            # the supervised chunks (when all of them are complete) hold the emitted text
            for t in ts:
                if t not in sup:
                    continue
                want = sorted(set(c for a2, e2 in m["sup_spans"][i] for c in range(a2 // S, (e2 - 1) // S + 1)))
                if sup[t] == want and all(sup[t][k + 1] == sup[t][k] + 1 for k in range(len(want) - 1)):
                    assert emitted in text(toks[want[0] * S:(want[-1] + 1) * S])
                    n_checked += 1
    assert n_checked > 1000
    if tail_frac > 0:
        assert n_unsup > 0, "tail needles should sometimes sit in a chunk that is not complete yet"
    assert n_unsup < 0.5 * n_pos


def test_per_position_targets(corpus):
    """multivalue: value i's needle while emitting value i; vt: the link that introduces each name."""
    opts = dict(D.TRAIN_OPTS)
    for s in samples(corpus, ["multivalue", "vt"], opts, n=30):
        m = s.meta
        ans = s.answers[0]
        r = [(ns, ts) for ns, ts in runs(s) if len(ns) == 1]
        if s.family == "multivalue":
            vals = ans.split(", ")
            assert vals == sorted(vals) and len(set(vals)) == len(vals)
        else:
            vals = ans.split(" ")
        assert len(r) == len(vals)
        for (ns, ts), v in zip(r, vals):
            a, e = m["spans"][ns[0]]
            nd = text(s.tokens[a:e])
            assert text(s.tokens[t + 1] for t in ts) == v
            if s.family == "multivalue":
                assert nd.rstrip(".").endswith(v)
            else:
                assert nd.startswith("VAR %s = " % v)  # the assignment introducing the name
        if s.family == "vt":  # the chain appears in order in the document
            starts = [m["spans"][ns[0]][0] for ns, _ in r]
            assert starts == sorted(starts)


def test_multiquery_blocks_use_their_own_needle(corpus):
    for s in samples(corpus, ["multiquery"], dict(D.TRAIN_OPTS), n=20):
        blocks = [ns for ns, _ in runs(s)]
        assert len(blocks) == len(s.answers) >= 2
        for ns, want in zip(blocks, s.answers):
            a, e = s.meta["spans"][ns[0]]
            assert text(s.tokens[a:e]).rstrip(".").endswith(want)


def test_union_mode_keeps_old_supervision(corpus):
    opts = dict(D.TRAIN_OPTS, tail_frac=0.0, sup="union", sup_span="needle")
    for s in samples(corpus, ["multivalue", "vt"], opts, n=10):
        for t, chunks in s.sup:
            allc = set(c for i in s.meta["pos_needles"][t] for c in range(s.meta["spans"][i][0] // S,
                                                                         (s.meta["spans"][i][1] - 1) // S + 1))
            assert set(chunks) == set(c for c in allc if (c + 1) * S <= t)
            assert len(s.meta["pos_needles"][t]) >= 2


def test_tail_needles_land_right_before_the_query(corpus):
    # tail_zero=1: every needle immediately before <query> (one separator space), adjacent to each other
    opts = dict(D.TRAIN_OPTS, tail_frac=1.0, tail_zero=1.0)
    for s in samples(corpus, NEEDLE_FAMS, opts, n=10):
        sp = sorted(s.meta["spans"])
        base = s.meta["base"]
        assert s.tokens[base] == D.QUERY
        assert sp[-1][1] + 1 == base
        for (a0, e0), (a1, e1) in zip(sp, sp[1:]):
            assert a1 == e0 + 1 and s.tokens[e0] == 32
        if s.family == "vt":  # ordered chains keep their order
            starts = [s.meta["spans"][i][0] for i in range(len(sp))]
            assert starts == sorted(starts)
    # tail_zero=0: within tail_span (plus snapping to a word boundary, < 40 bytes) of the query block
    span = 3 * S
    opts = dict(D.TRAIN_OPTS, tail_frac=1.0, tail_zero=0.0)
    dists = []
    for s in samples(corpus, ["niah", "passkey", "multikey"], opts, n=30):
        for a, e in s.meta["spans"]:
            d = s.meta["base"] - e
            dists.append(d)
            assert 1 <= d
            assert d <= span + sum(e2 - a2 + 1 for a2, e2 in s.meta["spans"]) + 1
    assert min(dists) == 1 and np.mean(dists) > 40


def test_tail_fraction(corpus):
    opts = dict(D.TRAIN_OPTS, tail_frac=0.12)
    k = n = 0
    for s in samples(corpus, ["niah", "multikey"], opts, n=150, lengths=(1024,)):
        k += len(s.meta["tail"])
        n += len(s.meta["spans"])
    assert 0.07 < k / n < 0.17


def test_defaults_do_not_move_needles(corpus):
    for s in samples(corpus, NEEDLE_FAMS, None, n=10):
        assert s.meta["tail"] == []


def test_eval_sample_depth_and_dist(corpus):
    for L in (1024, 4096):
        for kw in (dict(depth=1.0), dict(dist=0)):
            toks, a0, na, chunks, v = D.eval_sample(random.Random(1), corpus, L, S, **kw)
            q0 = int(np.nonzero(toks == D.QUERY)[0][0])
            assert text(toks[q0 - len(v) - 2:q0]) == v + ". "
            assert toks[a0] == D.ANSWER and text(toks[a0 + 1:a0 + na]) == v
        toks, a0, na, chunks, v = D.eval_sample(random.Random(1), corpus, L, S, dist=100)
        q0 = int(np.nonzero(toks == D.QUERY)[0][0])
        assert text(toks[q0 - 100 - len(v) - 2:q0 - 100]) == v + ". "


def test_retrieval_loss_on_batches(corpus):
    rng = random.Random(3)
    opts = dict(D.TRAIN_OPTS, tail_frac=0.5)
    smp = [D.make_sample(rng, corpus, 1024, S, None, opts) for _ in range(16)]
    bt = D.collate(smp)
    B, L = bt["tokens"].shape
    C = L // S
    g = torch.Generator().manual_seed(0)
    s = torch.randn(B, L, 2, C, generator=g)
    c = torch.arange(C)
    elig = (c[None, :] + 1) * S <= torch.arange(L)[:, None]
    s = s.masked_fill(~elig[None, :, None, :], float("-inf")).requires_grad_(True)
    args = [torch.from_numpy(bt[k]) for k in ("sup_b", "sup_t", "sup_tgt")]
    loss, acc = T.retrieval_loss([s], *args)
    assert torch.isfinite(loss) and 0 <= acc <= 1
    loss.backward()
    assert torch.isfinite(s.grad).all()
    # a row whose only target is ineligible (or an empty row) is dropped, not inf/NaN
    sb, st, tg = args
    tg2 = torch.cat([tg, torch.zeros(2, tg.shape[1], dtype=torch.bool)])
    tg2[-2, C - 1] = True
    sb2 = torch.cat([sb, torch.tensor([0, 1])])
    st2 = torch.cat([st, torch.tensor([70, 5])])
    s2 = s.detach().clone().requires_grad_(True)
    loss2, _ = T.retrieval_loss([s2], sb2, st2, tg2)
    assert torch.allclose(loss2, loss.detach())
    loss2.backward()
    assert torch.isfinite(s2.grad).all()
    # nothing supervised at all
    z, a = T.retrieval_loss([s2], sb2[:0], st2[:0], tg2[:0])
    assert float(z) == 0.0 and a != a


def _first_answer(s):
    return int(np.nonzero(s.tokens == D.ANSWER)[0][0])


@pytest.mark.parametrize("straddle", [0.0, 1.0])
def test_tail_align_puts_the_value_in_the_incomplete_chunk(corpus, straddle):
    """tail_align=1: one needle asked in the first query block sits immediately before <query>, and
    (its last occurrence of) the value lies in the chunk that is still incomplete at that block's
    <answer> (straddle: it starts in the last complete chunk and ends in the incomplete one)."""
    opts = dict(D.TRAIN_OPTS, tail_frac=0.25, tail_zero=0.5, tail_align=1.0, tail_align_straddle=straddle)
    n_al = n_all = n_nosup = 0
    per_fam = {}
    for s in samples(corpus, NEEDLE_FAMS, opts, n=20):
        m, L = s.meta, len(s.tokens)
        n_all += 1
        per_fam.setdefault(s.family, [0, 0])[1] += 1
        ia, pad = m["align"], m["pad"]
        # the sample is L tokens: ... <eos> [<bos> filler x (pad-1)]
        assert 0 <= pad < S
        assert s.tokens[L - pad - 1] == D.EOS
        if pad:
            assert s.tokens[L - pad] == D.BOS and (s.tokens[L - pad + 1:] < 256).all()
        if ia is None:
            assert pad == 0
            continue
        n_al += 1
        per_fam[s.family][0] += 1
        a = _first_answer(s)
        c = a // S
        base = m["base"]
        st, en = m["spans"][ia]
        assert en + 1 == base and s.tokens[en] == 32, "aligned needle not right before <query>"
        assert max(e for _, e in m["spans"]) == en, "aligned needle is not the last one"
        assert ia in s.meta["pos_needles"][a] or s.family in ("multivalue", "vt")
        vs, ve = m["sup_spans"][ia][-1]  # the value's last occurrence in the needle
        assert st <= vs < ve <= en
        if straddle:
            assert vs // S == c - 1 and (ve - 1) // S == c
        else:
            assert vs // S == c, "value not in the chunk that is incomplete at <answer>"
            # so no eligible chunk holds it before the answer reaches the next chunk boundary
            single = len(m["sup_spans"][ia]) == 1
            for t, ns in m["pos_needles"].items():
                if t < (c + 1) * S and list(ns) == [ia] and single:
                    assert t not in dict(s.sup), "retrieval target for a value that is in no complete chunk"
                    n_nosup += 1
            if s.family == "niah":
                assert text(s.tokens[vs:ve]) == s.answers[0]
        # the answer text that the window has to copy is there, unchanged
        assert text(s.tokens[vs:ve]) in s.answers[0] or s.family == "vt"
    assert n_al > 0.6 * n_all
    assert per_fam["niah"][0] > 0.6 * per_fam["niah"][1]
    if not straddle:
        assert n_nosup > 200


def test_tail_align_fraction_and_default(corpus):
    opts = dict(D.TRAIN_OPTS, tail_align=0.3)
    k = n = 0
    for s in samples(corpus, ["niah", "multikey"], opts, n=150, lengths=(1024,)):
        k += s.meta["align"] is not None
        n += 1
    assert 0.18 < k / n < 0.36  # 0.3 times the share where the alignment fits in a chunk
    # tail_align=0 (the default) draws nothing: the same samples as without the option
    for base in (None, dict(D.TRAIN_OPTS, tail_frac=0.25, tail_zero=0.5)):
        o0 = dict(base or {}, tail_align=0.0, tail_align_straddle=0.5)
        for fam in NEEDLE_FAMS:
            for seed in range(5):
                s1 = D.FAMILIES[fam](random.Random(seed), corpus, 1024, S, opts=base)
                s2 = D.FAMILIES[fam](random.Random(seed), corpus, 1024, S, opts=o0)
                assert (s1.tokens == s2.tokens).all() and s1.sup == s2.sup
                assert s1.meta["align"] is None and s1.meta["pad"] == 0 and s1.tokens[-1] == D.EOS


def test_default_samples_unchanged_since_tail_align(corpus):
    """Hashes of passkey/niah/vt samples computed with data.py before tail_align existed (these
    families use no set iteration, so they do not depend on PYTHONHASHSEED; multikey/multivalue do,
    through _distinct_keys)."""
    import hashlib

    def h(opts):
        m = hashlib.sha256()
        for fam in ["passkey", "niah", "vt"]:
            for seed in range(8):
                for L in (1024, 2048):
                    s = D.FAMILIES[fam](random.Random(seed * 7 + L), corpus, L, S, opts=opts)
                    m.update(s.tokens.tobytes())
                    m.update(s.ans.tobytes())
                    m.update(repr([(int(t), [int(c) for c in cs]) for t, cs in s.sup]).encode())
        return m.hexdigest()[:16]

    assert h(None) == "220bbf4ee72f0773"
    assert h(dict(D.TRAIN_OPTS)) == "406a2089322c73ef"
    assert h(dict(D.TRAIN_OPTS, tail_frac=0.25, tail_zero=0.5)) == "5e92aa2b9abfd74f"


def test_pin_hash_seed_makes_multikey_samples_independent_of_the_launch():
    """Multikey samples differ between hash seeds (the reason for pin_hash_seed); a script that calls
    data.pin_hash_seed() first makes the PYTHONHASHSEED=0 samples whatever it was started with."""
    import subprocess
    code = ("import hashlib, random, sys; sys.path.insert(0, %r); import data as D; %s"
            "words = D.FALLBACK_WORDS + D.NOISE; r = random.Random(0); "
            "c = D.Corpus(text=' '.join(r.choice(words) for _ in range(20000))); m = hashlib.sha256(); "
            "[m.update(D.fam_multikey(random.Random(s), c, 1024, 64).tokens.tobytes()) for s in range(6)]; "
            "print(m.hexdigest())")

    def run(pin, seed):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        return subprocess.run([sys.executable, "-c", code % (HERE, "D.pin_hash_seed(); " if pin else "")],
                              env=env, capture_output=True, text=True, check=True).stdout.strip()

    zero = run(False, "0")
    assert len({run(False, "1"), run(False, "2"), zero}) == 3
    assert run(True, "1") == run(True, "2") == run(True, "random") == zero


def test_copy_family_repeats_inside_the_window(corpus):
    rng = random.Random(11)
    for L in (1024, 4096):
        for _ in range(30):
            s = D.fam_copy(rng, corpus, L, 64)
            assert len(s.tokens) == L and s.tokens[0] == D.BOS and s.sup == []
            spans = s.meta["copies"]
            assert 1 <= len(spans) <= 8
            want = np.zeros(L, dtype=bool)
            for s1, s2, n in spans:
                assert 5 <= n <= 16 and s1 + n <= s2 and s2 + n <= L
                assert s2 - s1 <= D.COPY_WINDOW  # copy distance: every source byte is in the window
                assert list(s.tokens[s1:s1 + n]) == list(s.tokens[s2:s2 + n])
                want[s2 + 1:s2 + n - 1] = True
            assert (s.ans == want).all()
            # each answer position predicts the byte the first occurrence had at the same offset
            for t in np.nonzero(s.ans)[0]:
                s1, s2, n = next(sp for sp in spans if sp[1] < t + 1 < sp[1] + sp[2])
                assert s.tokens[t + 1] == s.tokens[s1 + (t + 1 - s2)]
            assert all(tok < 256 for tok in s.tokens[1:])  # plain bytes: no special tokens


def test_copy_family_not_in_default_mix():
    assert "copy" not in D.DEFAULT_MIX and "copy" in D.FAMILIES


def test_copy_in_chunk_keeps_both_occurrences_in_one_chunk(corpus):
    rng = random.Random(5)
    inside = total = 0
    for _ in range(40):
        s = D.fam_copy(rng, corpus, 4096, 64, opts=dict(copy_in_chunk=0.7))
        for s1, s2, n in s.meta["copies"]:
            total += 1
            assert list(s.tokens[s1:s1 + n]) == list(s.tokens[s2:s2 + n]) and s2 + n <= 4096
            if s1 // 64 == (s2 + n - 1) // 64:
                inside += 1
    assert 0.6 < inside / total < 0.85, inside / total   # 0.7 placed inside, a few others by chance
    # the default (0) draws the same samples as before the option existed
    a = D.fam_copy(random.Random(9), corpus, 1024, 64)
    b = D.fam_copy(random.Random(9), corpus, 1024, 64, opts=dict(copy_in_chunk=0.0))
    assert (a.tokens == b.tokens).all() and (a.ans == b.ans).all()


def test_answer_weights_mark_the_first_byte_of_every_vt_name(corpus):
    """train.answer_weights: with 1-3 hops, exactly one weighted position per name of the answer,
    each predicting that name's first byte; first_weight scales those positions only."""
    rng = random.Random(5)
    opts = dict(D.TRAIN_OPTS, vt_hops=(1, 1, 1))
    samples = [D.FAMILIES["vt"](rng, corpus, 2048, S, opts=opts) for _ in range(12)]
    bt = D.collate(samples)
    tok, ans = torch.from_numpy(bt["tokens"]), torch.from_numpy(bt["ans"])
    am, first, aw = T.answer_weights(tok, ans, 4.0)
    seen_hops = set()
    for i, s in enumerate(samples):
        t = s.tokens
        a0 = int(np.where(t == D.ANSWER)[0][0])
        e0 = a0 + 1 + int(np.where(t[a0 + 1:] == D.EOS)[0][0])
        names = text(t[a0 + 1:e0]).split(" ")
        seen_hops.add(len(names) - 1)
        pos = torch.nonzero(first[i]).flatten().tolist()
        assert len(pos) == len(names)
        assert [chr(int(t[p + 1])) for p in pos] == [n[0] for n in names]
        assert am[i, a0:e0].sum() == e0 - a0   # every answer byte and the <eos> are answer positions
    assert seen_hops == {1, 2, 3}
    assert float(aw.sum()) == pytest.approx(float(am.sum() + 3.0 * first.sum()))
    _, _, aw1 = T.answer_weights(tok, ans, 1.0)
    assert torch.equal(aw1, am)


def test_vt_distractors_option(corpus):
    """vt_distractors=(lo, hi): that many extra 'VAR D = n.' assignments, none with the asked value
    and about half sharing its first digits; the chain's supervision still points at its own links
    (the first answer name's chunk holds 'VAR <first> = <value>.'); None keeps the old samples."""
    rng = random.Random(11)
    counts, lookalike, total = set(), 0, 0
    for _ in range(40):
        s = D.fam_vt(rng, corpus, 4096, S, opts=dict(D.TRAIN_OPTS, vt_hops=(1, 1, 1), vt_distractors=(2, 4)))
        t = s.tokens
        a0 = int(np.where(t == D.ANSWER)[0][0])
        first = text(t[a0 + 1:a0 + 6])
        assigns = re.findall(r"VAR ([A-Z]{5}) = (\d+)\.", text(t[:a0]))
        val = dict(assigns)[first]
        others = [x for n, x in assigns if n != first]
        assert val not in others
        counts.add(len(others))
        lookalike += sum(x[:2] == val[:2] for x in others)
        total += len(others)
        # the position that predicts the first name is supervised with the chunks of its own link
        sup = dict(s.sup)[a0]
        link = bytes(int(x) if x < 256 else 0 for x in t).index(b"VAR %s = %s." % (first.encode(), val.encode()))
        assert (link + 4) // S in sup   # the chunk holding the name (vt's supervised text)
    assert counts == {2, 3, 4}
    assert 0.3 < lookalike / total < 0.8
    for frac, lo, hi in ((0.0, 0.0, 0.1), (1.0, 0.95, 1.0)):  # vt_look_alike: that fraction look alike
        same = n = 0
        for _ in range(30):
            s = D.fam_vt(rng, corpus, 4096, S, opts=dict(D.TRAIN_OPTS, vt_distractors=(3, 3), vt_look_alike=frac))
            a0 = int(np.where(s.tokens == D.ANSWER)[0][0])
            assigns = re.findall(r"VAR ([A-Z]{5}) = (\d+)\.", text(s.tokens[:a0]))
            val = dict(assigns)[text(s.tokens[a0 + 1:a0 + 6])]
            others = [x for nm, x in assigns if x != val]
            same += sum(x[:2] == val[:2] for x in others)
            n += len(others)
        assert n >= 85 and lo <= same / n <= hi
    a = D.fam_vt(random.Random(3), corpus, 1024, S, opts=dict(D.TRAIN_OPTS))
    b = D.fam_vt(random.Random(3), corpus, 1024, S, opts=dict(D.TRAIN_OPTS, vt_distractors=None))
    assert (a.tokens == b.tokens).all()


def test_value_align_puts_values_at_and_across_chunk_ends(corpus):
    """value_align=1: every asked value at any depth ends at a chunk end (about half) or crosses a
    chunk boundary (the rest), unless its neighbours leave no room; 0 keeps the old samples."""
    at_end = across = other = 0
    for seed in range(30):
        for fam in ("niah", "multikey", "passkey"):
            s = D.FAMILIES[fam](random.Random(seed), corpus, 4096, S, opts=dict(D.TRAIN_OPTS, value_align=1.0))
            for st, en in (sp for sps in s.meta["sup_spans"] for sp in sps):
                if en % S == 0:
                    at_end += 1
                elif st // S != (en - 1) // S:
                    across += 1
                else:
                    other += 1
            a = D.FAMILIES[fam](random.Random(seed), corpus, 4096, S, opts=dict(D.TRAIN_OPTS, value_align=0.0))
            b = D.FAMILIES[fam](random.Random(seed), corpus, 4096, S, opts=D.TRAIN_OPTS)
            assert (a.tokens == b.tokens).all()
    assert other <= 0.1 * (at_end + across + other)
    assert at_end > 0.3 * (at_end + across) and across > 0.3 * (at_end + across)


def test_value_echo_says_the_value_twice_and_aligns_the_second(corpus):
    """value_echo=1: every niah needle is an echo sentence with the same value, then the needle; both
    occurrences are supervised, and with value_align the last one ends at or crosses a chunk end
    (the demo's shape); at 0 the needle says it once (that the default samples are those from before the
    option is test_default_samples_unchanged_since_tail_align's golden hashes)."""
    at_end = 0
    for seed in range(30):
        opts = dict(D.TRAIN_OPTS, value_align=1.0, tail_frac=0.0, value_echo=1.0)
        s = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=opts)
        v = s.answers[0]
        st, en = s.meta["spans"][0]
        nd = text(s.tokens[st:en])
        key = s.meta["keys"][0]
        assert nd.count(v) >= 2 and any(nd.startswith(e.format(key=key, value=v) + " ") for e in D.ECHO_T), nd
        sps = s.meta["sup_spans"][0]
        assert len(sps) >= 2 and all(text(s.tokens[a:b]) == v for a, b in sps)
        a, e = sps[-1]
        assert e % S == 0 or a // S != (e - 1) // S
        at_end += e % S == 0
        s0 = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=dict(opts, value_echo=0.0))
        st0, en0 = s0.meta["spans"][0]
        assert text(s0.tokens[st0:en0]).count(v) == 1
    assert at_end >= 5


def test_sup_after_supervises_the_chunk_after_a_value_ending_at_a_chunk_end(corpus):
    """sup_after: the position predicting the <eos> after a value that ends at a chunk end also
    names the next chunk (the one that shows the value is complete); the value's bytes do not."""
    checked = 0
    for seed in range(40):
        opts = dict(D.TRAIN_OPTS, value_align=1.0, tail_frac=0.0, sup_after=True)
        s = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=opts)
        st, en = s.meta["sup_spans"][0][-1]
        if en % S:
            continue
        sup = dict(s.sup)
        a0 = int(np.where(s.tokens == D.ANSWER)[0][0])
        e0 = a0 + 1 + int(np.where(s.tokens[a0 + 1:] == D.EOS)[0][0])
        assert en // S in sup[e0 - 1]             # predicts <eos>: the chunk after the value too
        assert en // S not in sup[a0]             # predicts the first value byte: the value's chunks only
        s0 = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=dict(opts, sup_after=False))
        assert (s0.tokens == s.tokens).all() and en // S not in dict(s0.sup)[e0 - 1]
        checked += 1
    assert checked >= 10


def test_sup_key_adds_the_key_chunks_of_vt_links_only(corpus):
    """sup_key: a vt name's answer bytes also name the chunks of its link's key (the value, or the
    previous name); the same tokens, and the same supervision where a link's name and key share
    their chunks."""
    added = same = 0
    for seed in range(30):
        opts = dict(D.TRAIN_OPTS, value_align=0.5, vt_trail=True)
        s0 = D.fam_vt(random.Random(seed), corpus, 4096, S, opts=opts)
        s1 = D.fam_vt(random.Random(seed), corpus, 4096, S, opts=dict(opts, sup_key=True))
        assert (s0.tokens == s1.tokens).all()
        sup0, sup1 = dict(s0.sup), dict(s1.sup)
        assert set(sup0) <= set(sup1)
        for t, needles in s1.meta["pos_needles"].items():
            if t not in sup1:
                continue
            kc = set()
            for i in needles:
                st, en = s1.meta["spans"][i]
                text = bytes(s1.tokens[st:en].tolist()).decode()
                key = text.split(" = ")[1].rstrip(".").split()[-1]  # "1234" or the previous name
                k0 = st + text.rindex(key)
                kc |= set(c for c in range(k0 // S, (k0 + len(key) - 1) // S + 1) if (c + 1) * S <= t)
            assert set(sup1[t]) == set(sup0.get(t, [])) | kc, (seed, t, text)
            if kc <= set(sup0.get(t, [])):
                same += 1
            else:
                added += 1
        s2 = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=dict(opts, sup_key=True))
        assert s2.sup == D.fam_niah(random.Random(seed), corpus, 4096, S, opts=opts).sup
    assert added > 20 and same > 20


def test_answer_weights_eos_weight(corpus):
    """eos_weight scales exactly the positions that predict an answer's <eos> (one per query block)."""
    rng = random.Random(3)
    samples = [D.FAMILIES["multiquery"](rng, corpus, 2048, S, opts=D.TRAIN_OPTS) for _ in range(6)]
    bt = D.collate(samples)
    tok, ans = torch.from_numpy(bt["tokens"]), torch.from_numpy(bt["ans"])
    am, first, aw = T.answer_weights(tok, ans, 1.0, 3.0)
    nq = sum(int((s.tokens == D.QUERY).sum()) for s in samples)
    assert float(aw.sum()) == pytest.approx(float(am.sum()) + 2.0 * nq)
    assert torch.equal(T.answer_weights(tok, ans, 1.0, 1.0)[2], am)


def test_answer_weights_stop_weight_weights_both_sides_of_the_stop_decision(corpus):
    """stop_weight scales the positions that predict a vt answer's <eos> and those that predict the
    space between two names: one per name of the answer, so the stop/continue prior is unchanged."""
    rng = random.Random(4)
    samples = [D.FAMILIES["vt"](rng, corpus, 2048, S, opts=dict(D.TRAIN_OPTS, vt_hops=(1, 1, 1))) for _ in range(8)]
    bt = D.collate(samples)
    tok, ans = torch.from_numpy(bt["tokens"]), torch.from_numpy(bt["ans"])
    am, _, aw = T.answer_weights(tok, ans, 1.0, 1.0, 3.0)
    names = 0
    for s in samples:
        a0 = int(np.where(s.tokens == D.ANSWER)[0][0])
        e0 = a0 + 1 + int(np.where(s.tokens[a0 + 1:] == D.EOS)[0][0])
        names += len(text(s.tokens[a0 + 1:e0]).split(" "))
    assert float(aw.sum()) == pytest.approx(float(am.sum()) + 2.0 * names)


def test_vt_trail_moves_the_stop_decision_after_the_space(corpus):
    """vt_trail: the same names with a space after the last one, so every name is followed by ' ' and
    the go-on / stop choice is made at the position after it: there answer_weights marks a "first"
    position (a next name's first byte, or the <eos>), and the retrieval supervision points at the
    link that introduces the next name. Off, the samples are unchanged."""
    opts = dict(D.TRAIN_OPTS, vt_hops=(1, 1, 1))
    for seed in range(6):
        s0 = D.fam_vt(random.Random(seed), corpus, 2048, S, opts=opts)
        s1 = D.fam_vt(random.Random(seed), corpus, 2048, S, opts=dict(opts, vt_trail=True))
        assert s1.answers == [s0.answers[0] + " "]
        t = s1.tokens
        a0 = int(np.where(t == D.ANSWER)[0][0])
        e0 = a0 + 1 + int(np.where(t[a0 + 1:] == D.EOS)[0][0])
        assert t[e0 - 1] == 32 and t[e0 - 2] != 32
        bt = D.collate([s1])
        _, first, _ = T.answer_weights(torch.from_numpy(bt["tokens"]), torch.from_numpy(bt["ans"]), 4.0)
        pos = torch.nonzero(first[0]).flatten().tolist()
        names = s0.answers[0].split(" ")
        assert [int(t[p + 1]) for p in pos] == [ord(n[0]) for n in names] + [D.EOS]
        sup = dict(s1.sup)
        for p, n in zip(pos[1:-1], names[1:]):  # after a space: the chunk of "VAR <n> = VAR <previous>"
            m = [ord(ch) for ch in "VAR %s = VAR" % n]
            link = [k for k in range(a0 - len(m)) if list(t[k:k + len(m)]) == m]
            assert len(link) == 1
            name = range(link[0] + 4, link[0] + 9)  # where the name itself lies
            assert any(c * S <= k < (c + 1) * S for c in sup[p] for k in name)


def test_make_init_writes_a_resume_dir_that_train_loads(tmp_path):
    """tools/train/make_init.py: the directory it writes is found by train.find_ckpt and loads into
    the model with the exported weights (copied, or referenced with --link), at the given step."""
    import json
    import subprocess
    root = os.path.join(HERE, "..", "..")
    model_dir = os.path.join(root, "models", "hsadb-small")
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        pytest.skip("models/hsadb-small not present")
    for link in (False, True):
        out = tmp_path / ("link" if link else "copy")
        cmd = [sys.executable, os.path.join(HERE, "make_init.py"), "--model", model_dir, "--step", "123",
               "--tokens", "456", "--out", str(out)] + (["--link"] if link else [])
        subprocess.run(cmd, check=True, capture_output=True)
        assert T.find_ckpt([str(out)]) == str(out)
        st = json.load(open(out / "state.json"))
        model = T.HSAModel(T.HSAConfig(**st["config"]))
        got = T.load_ckpt(str(out), model, None, torch.device("cpu"))
        assert got["step"] == 123 and got["tokens"] == 456
        ref = T.load_file(os.path.join(model_dir, "model.safetensors"))
        sd = model.state_dict()
        assert all(torch.equal(sd[k], v.float()) for k, v in ref.items())
    bad = subprocess.run([sys.executable, os.path.join(HERE, "make_init.py"), "--model", str(tmp_path / "nope"),
                          "--step", "1", "--tokens", "1", "--out", str(tmp_path / "x")], capture_output=True, text=True)
    assert bad.returncode != 0 and "cannot read" in bad.stderr


def test_cross_marks_where_a_value_moves_on_to_the_next_chunk(corpus):
    """meta["cross"] (collate's "cross"): the answer positions that predict a value byte at the start
    of a chunk, the value having begun in the chunk before; with value_align=1 about half the asked
    values cross a boundary, and each such uuid answer has its crossing position marked exactly there.
    train.py --cross-weight W adds W-1 to those positions' answer-loss weight."""
    crossed = plain = 0
    for seed in range(40):
        opts = dict(D.TRAIN_OPTS, value_align=1.0, tail_frac=0.0)
        s = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=opts)
        t = s.tokens
        a0 = int(np.where(t == D.ANSWER)[0][0])
        want = [int(x) for x in t[a0 + 1:a0 + 1 + int(np.where(t[a0 + 1:] == D.EOS)[0][0])]]
        st, en = s.meta["sup_spans"][0][-1]
        assert [int(x) for x in t[st:en]] == want
        expect = [a0 + (q - st) for q in range((st // S + 1) * S, en, S)]  # predicts byte q of the value
        assert s.meta["cross"] == expect
        for p in expect:
            assert t[p + 1] == t[(st // S + 1) * S + (p - expect[0]) * S]
        crossed += bool(expect)
        plain += not expect
        bt = D.collate([s])
        assert sorted(np.nonzero(bt["cross"][0])[0].tolist()) == expect
    assert crossed >= 10 and plain >= 10
    n_mv = 0  # multivalue: later values of the list too (their part begins after ', ')
    for seed in range(20):
        s = D.fam_multivalue(random.Random(seed), corpus, 4096, S, opts=dict(D.TRAIN_OPTS, value_align=1.0))
        for p in s.meta["cross"]:
            assert s.ans[p]
            starts = [q for sps in s.meta["sup_spans"] for st, en in sps for q in range(st + 1, en) if q % S == 0]
            assert any(s.tokens[q] == s.tokens[p + 1] and s.tokens[q - 1] == s.tokens[p] for q in starts)
            n_mv += 1
    assert n_mv >= 5


def _filler_option_pair(corpus, seed, opt, meta_key):
    """A niah sample of `seed` without and with data option `opt` at 1: at 0 the sample is exactly
    the one without the option (no rng use; meta[meta_key] is None); at 1 the answer and the whole
    question block are unchanged. -> (s0, s1, [tail bytes of s0, of s1])."""
    base = dict(D.TRAIN_OPTS, tail_frac=0.0)
    s0 = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=base)
    s0b = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=dict(base, **{opt: 0.0}))
    assert (s0.tokens == s0b.tokens).all() and s0.meta[meta_key] is None
    s1 = D.fam_niah(random.Random(seed), corpus, 4096, S, opts=dict(base, **{opt: 1.0}))
    assert s1.answers == s0.answers
    tail = [bytes(x.tokens[x.meta["base"]:].astype(np.uint8).tolist()) for x in (s0, s1)]
    assert tail[0] == tail[1]  # the same question block and answer
    st, en = s1.meta["spans"][0]
    assert s1.answers[0] in bytes(s1.tokens[st:en].astype(np.uint8).tolist()).decode()  # needle intact
    return s0, s1, tail


def test_key_decoys_repeat_the_asked_keys_in_the_filler_and_change_nothing_else(corpus):
    """key_decoys=1: the filler says the asked key (or one of its words) 2-24 more times, as plain
    words (meta["decoys"]); the needle, the question and the answer are those of the same seed without
    decoys, and with key_decoys=0 the samples are exactly the old ones (no rng use)."""
    for seed in range(30):
        s0, s1, tail = _filler_option_pair(corpus, seed, "key_decoys", "decoys")
        words = s1.meta["decoys"]
        assert 2 <= len(words) <= 24
        q = tail[1].decode("latin-1")
        assert all(w in q for w in words)  # the asked key or one of its words
        hay = [bytes(x.tokens[:x.meta["base"]].astype(np.uint8).tolist()).decode("latin-1") for x in (s0, s1)]
        n0, n1 = (sum(h.count(" %s " % w) for w in set(words)) for h in hay)
        assert n1 >= n0 + 1 and n1 >= 2  # a later decoy can overwrite an earlier one
    s = D.fam_multikey(random.Random(7), corpus, 4096, S, nq=3, opts=dict(D.TRAIN_OPTS, key_decoys=1.0))
    asked = s.tokens[s.meta["base"]:].astype(np.uint8).tobytes().decode("latin-1")
    assert len(s.answers) == 3 and all(w in asked for w in s.meta["decoys"])


def test_a_slice_longer_than_the_corpus_wraps_from_a_random_offset(corpus):
    """Haystacks longer than the corpus (16M tokens from the 15.9 MB corpus) differ from one another;
    wrap_from_start=True gives the old ones (the corpus from its first byte, repeated)."""
    n = len(corpus.data) + 1000
    a, b = corpus.slice(random.Random(1), n), corpus.slice(random.Random(2), n)
    assert len(a) == len(b) == n and not (a == b).all()
    o = bytes(corpus.data).find(bytes(a[:200]))
    assert o >= 0 and (a[:len(corpus.data) - o] == corpus.data[o:]).all()
    assert (a[len(corpus.data) - o:][:o] == corpus.data[:o]).all()  # then wraps to the start
    old = D.Corpus(text=bytes(corpus.data).decode())
    old.wrap_from_start = True
    c = old.slice(random.Random(1), n)
    assert (c[:len(corpus.data)] == corpus.data).all() and (c[len(corpus.data):] == corpus.data[:1000]).all()


def test_lookalikes_are_hard_negatives_in_the_filler_only(corpus):
    """lookalikes=1: 2-16 statements such as 'the default size is 8192.' in the filler (meta
    ['lookalikes']), none with a word of the asked key; the needle, question and answer are those of
    the same seed without them; lookalikes=0 leaves the samples exactly as before (no rng use)."""
    for seed in range(30):
        s0, s1, tail = _filler_option_pair(corpus, seed, "lookalikes", "lookalikes")
        looks = s1.meta["lookalikes"]
        assert 2 <= len(looks) <= 16
        (key,) = s1.meta["keys"]
        assert key in tail[1].decode("latin-1")
        hay = bytes(s1.tokens[:s1.meta["base"]].astype(np.uint8).tolist()).decode("latin-1")
        assert looks[-1] in hay  # the last one written is whole (here: no needle went inside it)
        for w in key.split("-"):
            assert not any(re.search(r"\b%s\b" % re.escape(w), x, re.I) for x in looks)
    s = D.fam_multikey(random.Random(3), corpus, 4096, S, nq=2, opts=dict(D.TRAIN_OPTS, lookalikes=1.0))
    assert s.meta["lookalikes"] and len(s.answers) == 2


def test_retrieval_negatives_add_competitors_only():
    """negative_logits: each supervised query against the other samples' chunks (its own sample's are
    -inf) and the queue; retrieval_loss with them is the same softmax with more columns, never a
    target: the loss grows (or stays), gradients reach the other samples' landmarks, and a query
    whose target is already far above every competitor keeps a loss near 0."""
    torch.manual_seed(0)
    B, L, C, Hm, dr = 3, 8, 4, 2, 16
    qr = [torch.randn(B, L, Hm, dr, requires_grad=True)]
    lm = torch.randn(B, C, Hm, dr, requires_grad=True)
    s = [torch.einsum("btmd,bcmd->btmc", qr[0], lm) / math.sqrt(dr)]
    sup_b, sup_t = torch.tensor([0, 1, 2]), torch.tensor([5, 6, 7])
    sup_tgt = torch.zeros(3, C, dtype=torch.bool)
    sup_tgt[0, 1] = sup_tgt[1, 0] = sup_tgt[2, 3] = True
    queue = torch.randn(5, Hm, dr)
    negs = T.negative_logits(qr, lm, sup_b, sup_t, queue)
    assert negs[0].shape == (3, Hm, B * C + 5)
    own = negs[0][:, :, :B * C].reshape(3, Hm, B, C)
    for n, b in enumerate(sup_b.tolist()):
        assert torch.isinf(own[n, :, b]).all() and torch.isfinite(own[n, :, [x for x in range(B) if x != b]]).all()
    q = qr[0][2, 7, 1]  # row 2, head 1 against sample 0's chunk 3 and the queue's chunk 4
    assert torch.allclose(negs[0][2, 1, 0 * C + 3], (q * lm[0, 3, 1]).sum() / math.sqrt(dr))
    assert torch.allclose(negs[0][2, 1, B * C + 4], (q * queue[4, 1]).sum() / math.sqrt(dr))
    l0, _ = T.retrieval_loss(s, sup_b, sup_t, sup_tgt)
    l1, _ = T.retrieval_loss(s, sup_b, sup_t, sup_tgt, negs)
    assert float(l1) > float(l0)
    l1.backward()
    assert lm.grad[1].abs().sum() > 0 and torch.isfinite(lm.grad).all()
    big = [x.detach().clone() for x in s]
    for n, (b, t) in enumerate(zip(sup_b.tolist(), sup_t.tolist())):
        big[0][b, t, :, sup_tgt[n].nonzero()[0, 0]] = 1e4
    l2, acc = T.retrieval_loss(big, sup_b, sup_t, sup_tgt, [x.detach() for x in negs])
    assert float(l2) < 1e-3 and acc == 1.0


def test_vt_syntax_changes_only_how_assignments_are_written(corpus):
    """vt_syntax=1: the chain and the distractor are written in another VT_SYNTAX ('let B = A;', ...),
    never with 'VAR'; the question, the answer (the chain's names) and the supervision (each name's
    chunk) keep their meaning. vt_syntax=0 gives exactly the old samples (no rng use)."""
    seen = set()
    for seed in range(30):
        base = dict(D.TRAIN_OPTS, tail_frac=0.0, vt_trail=True)
        s0 = D.fam_vt(random.Random(seed), corpus, 4096, S, opts=base)
        s0b = D.fam_vt(random.Random(seed), corpus, 4096, S, opts=dict(base, vt_syntax=0.0))
        assert (s0.tokens == s0b.tokens).all()
        s1 = D.fam_vt(random.Random(seed), corpus, 4096, S, opts=dict(base, vt_syntax=1.0))
        needles = [bytes(s1.tokens[a:e].astype(np.uint8).tolist()).decode() for a, e in s1.meta["spans"]]
        assert not any("VAR" in n for n in needles)
        forms = [t for t in D.VT_SYNTAX[1:] if re.fullmatch(re.escape(t[0]).replace(r"\{x\}", "[A-Z]{5}")
                                                         .replace(r"\{v\}", r"\d+"), needles[0]) or
                 re.fullmatch(re.escape(t[1]).replace(r"\{x\}", "[A-Z]{5}").replace(r"\{y\}", "[A-Z]{5}"), needles[0])]
        assert forms, needles[0]
        seen.add(forms[0])
        names = s1.answers[0].split()
        assert all(any(nm in n for n in needles) for nm in names)
        t = s1.tokens[s1.meta["base"]:].tolist()
        q = bytes(t[1:t.index(D.ANSWER)]).decode()  # the question (between <query> and <answer>)
        v = re.search(r"\d+", q).group(0)
        assert any(re.search(r"\b%s\b" % v, n) and names[0] in n for n in needles)  # the chain's start
        assert s1.sup and all(s1.ans[p] for p, _ in s1.sup)  # every answer position keeps a target
    assert len(seen) >= 3


def test_hubs_are_written_chunk_aligned_into_the_filler_only(corpus, tmp_path):
    """hubs=1: 2-8 hub spans (context + one chunk, from bank_rank.py --hubs-out's JSON) overwrite
    filler with the chunk on a chunk boundary (so its landmark is the corpus's), touching no needle,
    holding no word of the asked key; everything else (needles, question, answer, supervision) is the
    sample of the same seed without hubs; hubs=0 leaves the samples exactly as before (no rng use).
    vt_hubs does the same for vt samples."""
    import json
    rng = random.Random(5)
    good = ["".join(rng.choice("ABCDEFGHIJ0123456789 ") for _ in range(320)) for _ in range(20)]
    bad = [(" " + w + " ") * (320 // (len(w) + 2)) for w in corpus.words[:60]]  # each says a corpus word
    bad = [x + "X" * (320 - len(x)) for x in bad]
    path = tmp_path / "hubs.json"
    path.write_text(json.dumps(dict(chunk_size=S, context=256, hubs=[dict(chunk=i, text=t) for i, t in enumerate(good + bad)])))
    with pytest.raises(ValueError):
        D.Corpus(text="abc " * 100).load_hubs(str(path), S=32)
    c = D.Corpus(text=" ".join(corpus.words * 40))
    c.words = corpus.words
    assert c.load_hubs(str(path), S) == len(good + bad)
    path2 = tmp_path / "hubs2.json"  # several files: joined in order, a text met twice kept once
    path2.write_text(json.dumps(dict(chunk_size=S, context=256, hubs=[dict(chunk=0, text="Y" * 320), dict(chunk=1, text=good[0])])))
    assert c.load_hubs("%s,%s" % (path, path2), S) == len(good + bad) + 1
    assert c.hubs[-1] == b"Y" * 320
    assert c.load_hubs(str(path), S) == len(good + bad)
    spans = set(t.encode() for t in good + bad)
    placed = 0
    for seed in range(30):
        s0, s1, tail = _filler_option_pair(c, seed, "hubs", "hubs")
        (key,) = s1.meta["keys"]
        assert len(s1.meta["hubs"]) <= 8
        changed = np.zeros(len(s1.tokens), dtype=bool)
        for ch in s1.meta["hubs"]:
            st, en = (ch + 1) * S - 320, (ch + 1) * S
            h = bytes(s1.tokens[st:en].astype(np.uint8).tolist())
            assert h in spans and st >= 1 and en <= s1.meta["base"]
            assert not any(w.encode() in h for w in key.split("-"))
            ns, ne = s1.meta["spans"][0]
            assert en <= ns or st > ne  # not on the needle or its separator
            changed[st:en] = True
            placed += 1
        assert (s1.tokens[~changed] == s0.tokens[~changed]).all()
        assert s1.sup == s0.sup and (s1.ans == s0.ans).all()
    assert placed >= 30
    # vt_hubs: the same hubs in vt samples (never on a link, nothing else changed); hubs alone leaves
    # vt samples as they were, and vt_hubs leaves the other families as they were
    base = dict(D.TRAIN_OPTS, tail_frac=0.0)
    vplaced = 0
    for seed in range(30):
        v0 = D.fam_vt(random.Random(seed), c, 4096, S, opts=base)
        assert v0.meta["hubs"] is None
        assert (D.fam_vt(random.Random(seed), c, 4096, S, opts=dict(base, hubs=1.0)).tokens == v0.tokens).all()
        n0 = D.fam_niah(random.Random(seed), c, 4096, S, opts=base)
        assert (D.fam_niah(random.Random(seed), c, 4096, S, opts=dict(base, vt_hubs=1.0)).tokens == n0.tokens).all()
        v1 = D.fam_vt(random.Random(seed), c, 4096, S, opts=dict(base, vt_hubs=1.0))
        changed = np.zeros(len(v1.tokens), dtype=bool)
        for ch in v1.meta["hubs"]:
            st, en = (ch + 1) * S - 320, (ch + 1) * S
            assert bytes(v1.tokens[st:en].astype(np.uint8).tolist()) in spans and en <= v1.meta["base"]
            assert all(en <= ns or st > ne for ns, ne in v1.meta["spans"])
            changed[st:en] = True
            vplaced += 1
        assert (v1.tokens[~changed] == v0.tokens[~changed]).all()
        assert v1.sup == v0.sup and v1.answers == v0.answers
    assert vplaced >= 30
