"""eval_engine.py: --skip/--count slices, which gpu_eval_parallel.sh's PAR_TASKS_PROCS gives to
several processes, put together are the haystacks of one whole run, in its order; --only picks
single haystacks of a run."""
import os
import random
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "train"))
import data as D  # noqa: E402
import eval_engine as E  # noqa: E402


def corpus():
    rng = random.Random(5)
    words = D.FALLBACK_WORDS + D.NOISE
    return D.Corpus(text=" ".join(rng.choice(words) for _ in range(20000)))


def draws(c):
    return E.task_haystacks(random.Random(1234), c, ["vt", "multikey"], [1024], 4)


def test_slices_make_the_whole_run():
    c = corpus()
    whole = [(t, i, bytes(h), qas) for t, _, i, h, qas in draws(c)]
    assert len(whole) == 8 and [w[0] for w in whole] == ["vt"] * 4 + ["multikey"] * 4
    for skip, per in ((0, 3), (2, 3), (5, 1)):  # processes of `per` haystacks from `skip` on
        parts = []
        for s in range(skip, len(whole), per):
            parts += [(t, i, bytes(h), qas) for t, _, i, h, qas in E.run_slice(draws(c), s, per)]
        assert parts == whole[skip:]
    assert [w[1] for w in E.run_slice(iter(whole), 6, 0)] == [2, 3]  # count 0: all the rest
    assert list(E.run_slice(iter(whole), 8, 2)) == []
    # --only: the haystacks at these positions of the run, in its order, nothing drawn after the last
    assert [(w[0], w[1]) for w in E.run_slice(iter(whole), 0, 0, {6, 1, 3})] == [("vt", 1), ("vt", 3), ("multikey", 2)]
    seen = []
    list(E.run_slice((seen.append(w) or w for w in whole), 0, 0, {2}))
    assert len(seen) == 3
