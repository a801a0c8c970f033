"""Fused HSA attention for training: Triton forward and backward of hsa_model.hsa_attend.

hsa_attend (the reference) gathers every selected chunk's keys and values into a tensor of
[B, T, Hm, K, S, dh] (at 4K x 8 tokens: 1.07G elements each for K and V) and lets autograd scatter
their gradients back. These kernels read the chunks where they lie and never write the gathered
copy. Both passes run one program per (chunk, memory head) over the (token, slot) entries that
picked the chunk (grouped by a stable sort of idx), 64 (entry, head) rows per tl.dot, so a chunk's
keys and values are read once per pass, not once per token that picked them.

Forward (_hsa_fwd_chunk): each entry's G query heads softmax over the chunk's S keys; the output,
times w, goes to the entry's slot of a [B,T,Hm,K,G,dh] buffer that is summed over K:

  O[b,t,h] = sum_r w[b,t,m,r] * softmax_j(q[b,t,h] . k[b,c_r,j,m] / sqrt(dh)) @ v[b,c_r,:,m]
  (m = h // G, c_r = idx[b,t,m,r]; a slot with c_r = -1 contributes nothing: w is 0 there)

Backward (_hsa_bwd), the same walk over the forward's sorted entries; with o_r = p_r @ V_r and
g = dO[b,t,h]:
  dw_r   = sum_h g . o_r
  dp_rj  = w_r g . v_j ;  ds = p (dp - w_r g . o_r)
  dq    += ds @ K_r / sqrt(dh)            (per slot into a [B,T,Hm,K,G,dh] buffer, summed over K)
  dK_r  += ds^T q / sqrt(dh),  dV_r += w_r p^T g    (the chunk's program owns them: no atomics)
dw of an empty slot is left 0 (hsa_attend's is g . o of chunk 0); select_topk's w is 0 there and
passes no gradient back, so the model's gradients are the same.

Inputs may be bf16 or fp32 (computed in fp32); the output is fp32 like hsa_attend's under
autocast. Shapes: q [B,T,H,dh]; kmem/vmem [B,C,S,Hm,dh]; idx [B,T,Hm,K] (-1 = empty); w
[B,T,Hm,K]. G = H // Hm, S, dh and G must be powers of two.

FORWARD = "token" selects the first forward instead (_hsa_fwd: one program per (token, memory
head) walking its K chunks on CUDA cores), kept for comparison: 8.5 ms against 0.9 ms per layer at
8 x 4K on the H200 (check_hsa_triton.py checks and times both).
"""
import torch
import triton
import triton.language as tl


@triton.jit
def _hsa_fwd(Q, KM, VM, IDX, W, O, T, scale,
             sq_b, sq_t, sk_b, sk_c, sk_s, si_b, si_t, so_b, so_t,
             HM: tl.constexpr, G: tl.constexpr, S: tl.constexpr, DH: tl.constexpr, K: tl.constexpr):
    pid = tl.program_id(0)
    m = tl.program_id(1)
    b = (pid // T).to(tl.int64)
    t = (pid % T).to(tl.int64)
    og = tl.arange(0, G)
    os_ = tl.arange(0, S)
    od = tl.arange(0, DH)
    # q of the G heads of memory head m: [G, DH]
    q = tl.load(Q + b * sq_b + t * sq_t + (m * G + og)[:, None] * DH + od[None, :]).to(tl.float32)
    acc = tl.zeros((G, DH), dtype=tl.float32)
    ib = IDX + b * si_b + t * si_t + m * K
    wb = W + b * si_b + t * si_t + m * K
    for r in tl.static_range(K):
        c = tl.load(ib + r).to(tl.int64)
        wr = tl.load(wb + r).to(tl.float32)
        c = tl.maximum(c, 0)
        kv_off = b * sk_b + c * sk_c + os_[:, None] * sk_s + m * DH + od[None, :]  # [S, DH]
        k = tl.load(KM + kv_off).to(tl.float32)
        v = tl.load(VM + kv_off).to(tl.float32)
        a = tl.sum(q[:, None, :] * k[None, :, :], axis=2) * scale  # [G, S]
        mx = tl.max(a, axis=1)
        p = tl.exp(a - mx[:, None])
        p = p / tl.sum(p, axis=1)[:, None]
        o = tl.sum(p[:, :, None] * v[None, :, :], axis=1)  # [G, DH]
        acc += wr * o
    tl.store(O + b * so_b + t * so_t + (m * G + og)[:, None] * DH + od[None, :], acc)


@triton.jit
def _hsa_fwd_chunk(Q, KM, VM, W, PERM, OFF, OR, T, C, scale,
                   sq_b, sq_t, sk_b, sk_c, sk_s,
                   HM: tl.constexpr, G: tl.constexpr, S: tl.constexpr, DH: tl.constexpr, K: tl.constexpr,
                   BE: tl.constexpr, PREC: tl.constexpr):
    # the backward's grid and walk: one program per (chunk, memory head) over the entries that
    # picked it; each entry's w-weighted output goes to its slot of OR [B,T,HM,K,G,DH] (summed over K)
    pid = tl.program_id(0)
    c = (pid % C).to(tl.int64)
    m = (pid // C) % HM
    b = (pid // (C * HM)).to(tl.int64)
    start = tl.load(OFF + pid)
    end = tl.load(OFF + pid + 1)
    os_ = tl.arange(0, S)
    od = tl.arange(0, DH)
    kv_off = b * sk_b + c * sk_c + os_[:, None] * sk_s + m * DH + od[None, :]  # [S, DH]
    kc = tl.load(KM + kv_off).to(tl.float32)
    vc = tl.load(VM + kv_off).to(tl.float32)
    rows = tl.arange(0, BE * G)
    ent = rows // G
    h = rows % G
    for e0 in range(start, end, BE):
        live = e0 + ent < end  # [R]
        flat = tl.load(PERM + e0 + ent, mask=live, other=0).to(tl.int64)
        t = (flat // (HM * K)) % T
        qrow = b * sq_b + t * sq_t + (m * G + h) * DH
        q = tl.load(Q + qrow[:, None] + od[None, :], mask=live[:, None], other=0.0).to(tl.float32)
        wr = tl.load(W + flat, mask=live, other=0.0).to(tl.float32)
        a = tl.dot(q, tl.trans(kc), input_precision=PREC) * scale  # [R, S]
        mx = tl.max(a, axis=1)
        p = tl.exp(a - mx[:, None])
        p = p / tl.sum(p, axis=1)[:, None]
        o = tl.dot(p, vc, input_precision=PREC)  # [R, DH]
        tl.store(OR + flat[:, None] * (G * DH) + h[:, None] * DH + od[None, :], o * wr[:, None], mask=live[:, None])


@triton.jit
def _hsa_bwd(Q, KM, VM, W, DO, PERM, OFF, DQR, DK, DV, DW, T, C, scale,
             sq_b, sq_t, sk_b, sk_c, sk_s,
             HM: tl.constexpr, G: tl.constexpr, S: tl.constexpr, DH: tl.constexpr, K: tl.constexpr,
             BE: tl.constexpr, PREC: tl.constexpr):
    # one program per chunk and memory head: key = (b * HM + m) * C + c; it walks the (token, slot)
    # entries that picked the chunk (PERM[OFF[key]:OFF[key+1]], positions in idx [B,T,HM,K]) BE at a
    # time, G rows each (row = entry * G + head); it owns dK/dV of its chunk, so nothing is atomic
    pid = tl.program_id(0)
    c = (pid % C).to(tl.int64)
    m = (pid // C) % HM
    b = (pid // (C * HM)).to(tl.int64)
    start = tl.load(OFF + pid)
    end = tl.load(OFF + pid + 1)
    os_ = tl.arange(0, S)
    od = tl.arange(0, DH)
    kv_off = b * sk_b + c * sk_c + os_[:, None] * sk_s + m * DH + od[None, :]  # [S, DH]
    kc = tl.load(KM + kv_off).to(tl.float32)
    vc = tl.load(VM + kv_off).to(tl.float32)
    dk = tl.zeros((S, DH), dtype=tl.float32)
    dv = tl.zeros((S, DH), dtype=tl.float32)
    rows = tl.arange(0, BE * G)
    ent = rows // G
    h = rows % G
    oe = tl.arange(0, BE)
    for e0 in range(start, end, BE):
        live = e0 + ent < end  # [R]
        flat = tl.load(PERM + e0 + ent, mask=live, other=0).to(tl.int64)
        t = (flat // (HM * K)) % T
        qrow = b * sq_b + t * sq_t + (m * G + h) * DH  # Q and DO: the same contiguous [B,T,H,dh]
        q = tl.load(Q + qrow[:, None] + od[None, :], mask=live[:, None], other=0.0).to(tl.float32)
        g = tl.load(DO + qrow[:, None] + od[None, :], mask=live[:, None], other=0.0).to(tl.float32)
        wr = tl.load(W + flat, mask=live, other=0.0).to(tl.float32)  # [R]
        a = tl.dot(q, tl.trans(kc), input_precision=PREC) * scale  # [R, S]
        mx = tl.max(a, axis=1)
        p = tl.exp(a - mx[:, None])
        p = p / tl.sum(p, axis=1)[:, None]
        o = tl.dot(p, vc, input_precision=PREC)  # [R, DH]: this chunk's output, before w
        rowdot = tl.sum(g * o, axis=1)  # [R]
        gw = g * wr[:, None]  # gradient of o
        dp = tl.dot(gw, tl.trans(vc), input_precision=PREC)  # [R, S]
        ds = p * (dp - (wr * rowdot)[:, None])  # dead rows: g = w = 0, so ds = 0
        dq = tl.dot(ds, kc, input_precision=PREC) * scale  # [R, DH]
        tl.store(DQR + flat[:, None] * (G * DH) + h[:, None] * DH + od[None, :], dq, mask=live[:, None])
        dk += tl.dot(tl.trans(ds), q, input_precision=PREC)
        dv += tl.dot(tl.trans(p), gw, input_precision=PREC)
        lv = e0 + oe < end
        fe = tl.load(PERM + e0 + oe, mask=lv, other=0).to(tl.int64)
        tl.store(DW + fe, tl.sum(tl.reshape(rowdot, (BE, G)), axis=1), mask=lv)
    tl.store(DK + kv_off, dk * scale)
    tl.store(DV + kv_off, dv)


def _entries(idx_, C):
    """The (token, slot) entries of idx [B,T,Hm,K] grouped by chunk: perm (int32, positions in idx
    sorted by key = (b * Hm + m) * C + c; empty slots last) and off [B*Hm*C + 1] (int32)."""
    B, T, Hm, K = idx_.shape
    n = B * Hm * C
    bm = ((torch.arange(B, device=idx_.device)[:, None] * Hm
           + torch.arange(Hm, device=idx_.device)[None, :]) * C)[:, None, :, None]
    key = torch.where(idx_ >= 0, bm + idx_.long(), torch.full_like(bm + idx_.long(), n)).reshape(-1)
    perm = torch.sort(key, stable=True)[1].to(torch.int32)
    off = torch.zeros(n + 1, device=idx_.device, dtype=torch.int64)
    off[1:] = torch.cumsum(torch.bincount(key, minlength=n + 1)[:n], 0)
    return perm, off.to(torch.int32)


def _geometry(q, kmem, idx):
    B, T, H, dh = q.shape
    C, S, Hm = kmem.shape[1], kmem.shape[2], kmem.shape[3]
    K = idx.shape[-1]
    G = H // Hm
    for name, x in (("G", G), ("S", S), ("dh", dh)):
        if x & (x - 1):
            raise ValueError("hsa_triton: %s = %d is not a power of two" % (name, x))
    return B, T, H, dh, C, S, Hm, K, G


# the forward's walk: "chunk" (_hsa_fwd_chunk, tl.dot over each chunk's entries) or "token" (_hsa_fwd)
FORWARD = "chunk"


class HSAAttend(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, kmem, vmem, idx, w):
        B, T, H, dh, C, S, Hm, K, G = _geometry(q, kmem, idx)
        q_, km, vm = q.contiguous(), kmem.contiguous(), vmem.contiguous()
        idx_, w_ = idx.to(torch.int32).contiguous(), w.to(torch.float32).contiguous()
        prec = "ieee" if q_.dtype == torch.float32 else "tf32"
        BE = max(1, 64 // G)  # 64 rows of (entry, head) per block: tl.dot wants >= 16
        perm = off = None
        if K > 0 and C > 0 and FORWARD == "chunk":
            perm, off = _entries(idx_, C)
            orr = torch.zeros((B, T, Hm, K, G, dh), device=q.device, dtype=torch.float32)
            _hsa_fwd_chunk[(B * Hm * C,)](q_, km, vm, w_, perm, off, orr, T, C, dh ** -0.5,
                                          q_.stride(0), q_.stride(1), km.stride(0), km.stride(1), km.stride(2),
                                          HM=Hm, G=G, S=S, DH=dh, K=K, BE=BE, PREC=prec, num_warps=8)
            O = orr.sum(3).reshape(B, T, H, dh)
        elif K > 0 and C > 0:
            O = torch.empty((B, T, H, dh), device=q.device, dtype=torch.float32)
            _hsa_fwd[(B * T, Hm)](q_, km, vm, idx_, w_, O, T, dh ** -0.5,
                                  q_.stride(0), q_.stride(1), km.stride(0), km.stride(1), km.stride(2),
                                  idx_.stride(0), idx_.stride(1), O.stride(0), O.stride(1),
                                  HM=Hm, G=G, S=S, DH=dh, K=K, num_warps=4)
        else:
            O = torch.zeros((B, T, H, dh), device=q.device, dtype=torch.float32)
        ctx.entries = (perm, off)
        ctx.save_for_backward(q_, km, vm, idx_, w_)
        ctx.dtypes = (q.dtype, kmem.dtype, vmem.dtype, w.dtype)
        return O.reshape(B, T, H * dh)

    @staticmethod
    def backward(ctx, dO):
        q_, km, vm, idx_, w_ = ctx.saved_tensors
        B, T, H, dh, C, S, Hm, K, G = _geometry(q_, km, idx_)
        g = dO.reshape(B, T, H, dh).to(torch.float32).contiguous()
        dqr = torch.zeros((B, T, Hm, K, G, dh), device=q_.device, dtype=torch.float32)
        dk = torch.zeros(km.shape, device=q_.device, dtype=torch.float32)
        dv = torch.zeros(vm.shape, device=q_.device, dtype=torch.float32)
        dw = torch.zeros(w_.shape, device=q_.device, dtype=torch.float32)
        if K > 0 and C > 0:
            perm, off = ctx.entries if ctx.entries[0] is not None else _entries(idx_, C)
            BE = max(1, 64 // G)
            prec = "ieee" if q_.dtype == torch.float32 else "tf32"
            _hsa_bwd[(B * Hm * C,)](q_, km, vm, w_, g, perm, off, dqr, dk, dv, dw, T, C, dh ** -0.5,
                                    q_.stride(0), q_.stride(1), km.stride(0), km.stride(1), km.stride(2),
                                    HM=Hm, G=G, S=S, DH=dh, K=K, BE=BE, PREC=prec, num_warps=8)
        dq = dqr.sum(3).reshape(B, T, H, dh)
        tq, tk, tv, tw = ctx.dtypes
        return dq.to(tq), dk.to(tk), dv.to(tv), None, dw.to(tw)


def hsa_attend_triton(q, kmem, vmem, idx, w):
    """Same arguments and result as hsa_model.hsa_attend (CUDA tensors)."""
    return HSAAttend.apply(q, kmem, vmem, idx, w)
