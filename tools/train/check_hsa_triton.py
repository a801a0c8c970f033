#!/usr/bin/env python3
"""Check and time hsa_triton.hsa_attend_triton against hsa_model.hsa_attend (GPU machine).

Correctness: forward and the gradients of q, kmem, vmem and w, on fresh random inputs (empty
slots included; w's gradient compared on the filled slots, see hsa_triton's docstring), against
hsa_attend in float64 on the same values; fp32 and bf16 inputs. Then one training step of the
small preset with each: in fp32 every parameter's gradient agrees; under bf16 autocast the
kernel's gradients are no farther from the fp32 step's than hsa_attend's own are.
Both forwards of hsa_triton (FORWARD = "token" and "chunk") are checked, with the one backward.
Timing: forward, and forward+backward, of each at the training shapes (events after warm-up).

  python3 tools/train/check_hsa_triton.py     # prints a table; exit 1 when a check fails
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hsa_triton  # noqa: E402
from hsa_model import hsa_attend  # noqa: E402
from hsa_triton import hsa_attend_triton  # noqa: E402


def inputs(B, T, H, Hm, dh, C, S, K, dtype, seed):
    g = torch.Generator(device="cuda").manual_seed(seed)
    dev = "cuda"
    q = torch.randn(B, T, H, dh, device=dev, generator=g).to(dtype)
    km = torch.randn(B, C, S, Hm, dh, device=dev, generator=g).to(dtype)
    vm = torch.randn(B, C, S, Hm, dh, device=dev, generator=g).to(dtype)
    idx = torch.randint(0, C, (B, T, Hm, K), device=dev, generator=g)
    empty = torch.rand(B, T, Hm, K, device=dev, generator=g) < 0.15
    idx = torch.where(empty, torch.full_like(idx, -1), idx)
    w = torch.softmax(torch.randn(B, T, Hm, K, device=dev, generator=g), -1)
    w = torch.where(empty, torch.zeros_like(w), w)
    return q, km, vm, idx, w


def run(fn, args, dO):
    xs = [a.detach().clone().requires_grad_(i in (0, 1, 2, 4)) for i, a in enumerate(args)]
    O = fn(*xs)
    O.backward(dO.to(O.dtype))
    return [O.detach().double()] + [xs[i].grad.double() for i in (0, 1, 2, 4)]


def check(shape, dtype, seed):
    args = inputs(*shape, dtype=dtype, seed=seed)
    B, T, H, Hm, dh, C, S, K = shape
    dO = torch.randn(B, T, H * dh, device="cuda", dtype=torch.float64)
    ref = run(hsa_attend, [a.double() if a.is_floating_point() else a for a in args], dO)
    got = run(hsa_attend_triton, list(args), dO)
    valid = args[3] >= 0
    ref[4], got[4] = ref[4][valid], got[4][valid]
    worst = 0.0
    for name, r, x in zip(["O", "dq", "dk", "dv", "dw"], ref, got):
        err = ((x - r).abs().max() / r.abs().max().clamp(min=1e-30)).item()
        worst = max(worst, err)
        print("  %-5s max |err| / max |ref| = %.2e" % (name, err))
    return worst


def timed(fn, args, backward=True, iters=20):
    xs = [a.detach().clone().requires_grad_(a.is_floating_point()) for a in args]
    dO = torch.randn_like(fn(*xs))

    def once():
        O = fn(*xs)
        if backward:
            O.backward(dO)

    for _ in range(3):
        once()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    s.record()
    for _ in range(iters):
        once()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / iters


def model_step():
    """One training step of the small preset (2 x 4096 tokens) with hsa_attend and with the kernel
    (hsa_model.set_hsa_kernel), in fp32 and under bf16 autocast."""
    import hsa_model
    from hsa_model import HSAConfig, HSAModel
    from train import PRESETS
    torch.manual_seed(3)
    m = HSAModel(HSAConfig(**PRESETS["small"])).cuda()
    tok = torch.randint(0, 256, (2, 4096), device="cuda")

    def grads(kernel, bf16):
        hsa_model.set_hsa_kernel(kernel)
        m.zero_grad()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=bf16):
            out = m(tok, return_scores=True)
        loss = out["logits"].float().logsumexp(-1).mean()
        loss.backward()
        return loss.item(), {n: p.grad.detach().double() for n, p in m.named_parameters() if p.grad is not None}

    (l32, g32), (k32, h32) = grads("torch", False), grads("triton", False)
    (l16, g16), (k16, h16) = grads("torch", True), grads("triton", True)
    hsa_model.set_hsa_kernel("torch")

    def diff(a, b):
        return {n: ((a[n] - b[n]).norm() / b[n].norm().clamp(min=1e-30)).item() for n in b}

    d32, dref, dker = diff(h32, g32), diff(g16, g32), diff(h16, g32)
    n32 = max(d32, key=d32.get)
    print("model step, fp32: loss %.6f (hsa_attend) / %.6f (kernel); worst gradient |diff| / |ref| %.2e (%s), %d parameters"
          % (l32, k32, d32[n32], n32, len(g32)))
    ok32 = set(g32) == set(h32) and abs(l32 - k32) < 1e-4 * abs(l32) and d32[n32] < 1e-3
    print("  -> %s" % ("ok" if ok32 else "FAIL"))
    # under autocast hsa_attend rounds its scores and chunk outputs to bf16, the kernel keeps fp32:
    # measure both against the fp32 step; the kernel must not be farther (a wrong head or chunk
    # mapping gives differences near 1)
    worse = {n: dker[n] / max(dref[n], 1e-3) for n in dref}
    nw = max(worse, key=worse.get)
    print("model step, bf16 autocast: loss %.6f (hsa_attend) / %.6f (kernel); gradient vs fp32 step: hsa_attend worst %.2e (%s), "
          "kernel worst %.2e (%s); worst ratio kernel/hsa_attend %.2f (%s)"
          % (l16, k16, max(dref.values()), max(dref, key=dref.get), max(dker.values()), max(dker, key=dker.get), worse[nw], nw))
    ok16 = set(g16) == set(h16) and abs(l16 - k16) < 5e-3 * abs(l16) and worse[nw] < 2.0
    print("  -> %s" % ("ok" if ok16 else "FAIL"))
    return ok32 and ok16


def main():
    ok = True
    for fwd in ("token", "chunk"):
        hsa_triton.FORWARD = fwd
        print("=== forward: %s" % fwd)
        ok &= checks()
    print("\n| shape (B x T, C, K) | hsa_attend fwd ms | triton fwd ms, token / chunk | hsa_attend fwd+bwd ms | triton fwd+bwd ms, token / chunk | speed-up (chunk) |")
    print("|---|---|---|---|---|---|")
    for B, T in [(8, 4096), (2, 16384), (32, 1024)]:
        C = T // 64
        # the reference under the same dtypes as in training (bf16 q/k/v, fp32 w)
        args = inputs(B, T, 8, 2, 32, C, 64, 8, dtype=torch.bfloat16, seed=7)
        fa, a = timed(hsa_attend, args, backward=False), timed(hsa_attend, args)
        res = []
        for fwd in ("token", "chunk"):
            hsa_triton.FORWARD = fwd
            res.append((timed(hsa_attend_triton, args, backward=False), timed(hsa_attend_triton, args)))
        print("| %d x %d, %d, 8 | %.2f | %.2f / %.2f | %.2f | %.2f / %.2f | %.1fx |"
              % (B, T, C, fa, res[0][0], res[1][0], a, res[0][1], res[1][1], a / res[1][1]), flush=True)
    print("checks: %s" % ("all passed" if ok else "FAILED"))
    sys.exit(0 if ok else 1)


def checks():
    ok = True
    # fp32 inputs: fp32 arithmetic against fp64; bf16 inputs: the gradients come back in bf16
    # (relative rounding 2^-8), as hsa_attend's do under autocast
    for shape, dtype, tol in [((2, 300, 8, 2, 32, 4, 64, 4), torch.float32, 5e-5),
                              ((2, 700, 8, 2, 32, 10, 64, 8), torch.float32, 5e-5),
                              ((1, 512, 8, 2, 32, 8, 64, 8), torch.bfloat16, 8e-3),
                              ((2, 256, 4, 1, 16, 6, 32, 8), torch.float32, 5e-5)]:
        for seed in (1, 2):
            print("shape B,T,H,Hm,dh,C,S,K = %s, %s, seed %d" % (shape, str(dtype).split(".")[-1], seed))
            w = check(shape, dtype, seed)
            good = w < tol
            ok &= good
            print("  -> %s (worst %.2e, tolerance %.0e)" % ("ok" if good else "FAIL", w, tol))
    ok &= model_step()
    return ok


if __name__ == "__main__":
    main()
