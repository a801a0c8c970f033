"""Reference PyTorch implementation of the hsadb network (docs/model-spec.md, normative).

One implementation for two uses:
  * the golden reference (torch 1.13 on CPU, float64 / float32), see make_golden.py;
  * training and evaluation (torch 2.x on GPU, bf16 autocast), see train.py.

No dependency beyond torch (and numpy through safetensors_io for loading/saving).

Tensor names (state_dict keys) are exactly the ones the C loader expects:
  embed.weight, lower.{i}.*, encoder.{j}.*, chunk.*, upper.{g}.hsa.*, upper.{g}.swa.{r}.*,
  final_norm.weight, lm_head.weight (only when tie_word_embeddings is false).
"""
import json
import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

BOS, EOS, QUERY, ANSWER = 256, 257, 258, 259

CONFIG_KEYS = [
    "hidden_size", "intermediate_size", "num_attention_heads", "head_dim",
    "num_key_value_heads", "num_memory_heads", "retrieval_dim", "num_lower_layers",
    "encoder_layers", "num_upper_groups", "swa_layers_per_group", "chunk_size", "chunk_topk",
    "sliding_window", "rope_theta", "rms_norm_eps", "tie_word_embeddings", "hsa_residual",
    "vocab_size",
]

DEFAULTS = dict(
    hidden_size=256, intermediate_size=768, num_attention_heads=8, head_dim=32,
    num_key_value_heads=2, num_memory_heads=2, retrieval_dim=64, num_lower_layers=2,
    encoder_layers=1, num_upper_groups=2, swa_layers_per_group=1, chunk_size=64, chunk_topk=8,
    sliding_window=128, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
    hsa_residual="standard", vocab_size=264,
)


class HSAConfig:
    def __init__(self, **kw):
        d = dict(DEFAULTS)
        for k, v in kw.items():
            if k in ("model_type", "torch_dtype"):
                continue
            if k not in DEFAULTS:
                raise KeyError("unknown config key %r" % k)
            d[k] = v
        for k, v in d.items():
            setattr(self, k, v)
        self.validate()

    def validate(self):
        assert self.num_attention_heads % self.num_key_value_heads == 0
        assert self.num_attention_heads % self.num_memory_heads == 0
        assert self.head_dim % 2 == 0
        assert self.sliding_window >= self.chunk_size, "W >= S is required"
        assert self.encoder_layers >= 1
        assert self.hsa_residual in ("standard", "bypass")
        assert self.vocab_size >= 260

    def to_dict(self, torch_dtype="float32"):
        d = {k: getattr(self, k) for k in CONFIG_KEYS}
        d["rope_theta"] = float(d["rope_theta"])
        d["rms_norm_eps"] = float(d["rms_norm_eps"])
        d["model_type"] = "hsadb-hsa"
        d["torch_dtype"] = torch_dtype
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls.from_dict(json.load(f))

    def save(self, path, torch_dtype="float32"):
        with open(path, "w") as f:
            json.dump(self.to_dict(torch_dtype), f, indent=2)
            f.write("\n")


# ----------------------------------------------------------------------------------------------
# building blocks

def _stat_dtype(dt):
    """Statistics and softmaxes run in fp32, or in fp64 when the input is fp64."""
    return torch.float64 if dt == torch.float64 else torch.float32


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        xf = x.to(_stat_dtype(dt))
        y = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.to(y.dtype)).to(dt)


class SwiGLU(nn.Module):
    def __init__(self, D, Fd):
        super().__init__()
        self.gate = nn.Linear(D, Fd, bias=False)
        self.up = nn.Linear(D, Fd, bias=False)
        self.down = nn.Linear(Fd, D, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


_ROPE_CACHE = {}


def rope_cos_sin(pos0, T, dh, theta, dtype, device):
    """cos/sin [T, dh] for positions pos0 .. pos0+T-1; rotate-half layout (i pairs with i+dh/2),
    theta_i = theta^(-2i/dh).  Angles pos*theta_i are computed in float64, then rounded."""
    key = (int(pos0), int(T), dh, float(theta), dtype, str(device))
    hit = _ROPE_CACHE.get(key)
    if hit is not None:
        return hit
    i = torch.arange(dh // 2, dtype=torch.float64, device=device)
    inv = float(theta) ** (-(2.0 * i) / dh)
    pos = torch.arange(pos0, pos0 + T, dtype=torch.float64, device=device)
    ang = pos[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1).to(dtype)
    sin = torch.cat([ang.sin(), ang.sin()], -1).to(dtype)
    if len(_ROPE_CACHE) > 64:
        _ROPE_CACHE.clear()
    _ROPE_CACHE[key] = (cos, sin)
    return cos, sin


def apply_rope(x, cos, sin):
    """x [B, T, heads, dh]; cos/sin [T, dh]."""
    h = x.shape[-1] // 2
    rot = torch.cat([-x[..., h:], x[..., :h]], -1)
    return x * cos[None, :, None, :] + rot * sin[None, :, None, :]


def _has_sdpa():
    return hasattr(F, "scaled_dot_product_attention")


def _attn_core(q, k, v, mask, scale):
    """q [N,H,Lq,dh], k/v [N,H,Lk,dh], mask bool broadcastable to [N,H,Lq,Lk] (True = attend) or None."""
    if _has_sdpa() and q.dtype != torch.float64 and q.is_cuda:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    sd = _stat_dtype(q.dtype)
    a = torch.matmul(q, k.transpose(-1, -2)).to(sd) * scale
    if mask is not None:
        a = a.masked_fill(~mask, float("-inf"))
    p = torch.softmax(a, -1).to(v.dtype)
    return torch.matmul(p, v)


def full_attention(q, k, v, scale):
    """Bidirectional attention. q [B,T,H,dh], k/v [B,T,H,dh] (heads already expanded)."""
    o = _attn_core(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), None, scale)
    return o.transpose(1, 2)


def sliding_window_attention(q, k, v, W, scale):
    """Causal sliding-window attention: token t attends to max(0, t-W+1) .. t.
    q [B,T,H,dh], k/v [B,T,H,dh] (heads already expanded).  Blocked: queries in blocks of
    Bq=W tokens, each block against its Bq+W-1 keys, so memory is linear in T."""
    B, T, H, dh = q.shape
    if T <= W:
        i = torch.arange(T, device=q.device)
        mask = (i[None, :] <= i[:, None])  # [Lq, Lk]
        o = _attn_core(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask[None, None], scale)
        return o.transpose(1, 2)
    Bq = W
    nb = (T + Bq - 1) // Bq
    Tp = nb * Bq
    qp = F.pad(q, (0, 0, 0, 0, 0, Tp - T))
    kp = F.pad(k, (0, 0, 0, 0, W - 1, Tp - T))
    vp = F.pad(v, (0, 0, 0, 0, W - 1, Tp - T))
    L = Bq + W - 1
    # [B, nb, H, dh, L] -> [B*nb, H, L, dh]
    kb = kp.unfold(1, L, Bq).permute(0, 1, 2, 4, 3).reshape(B * nb, H, L, dh)
    vb = vp.unfold(1, L, Bq).permute(0, 1, 2, 4, 3).reshape(B * nb, H, L, dh)
    qb = qp.view(B, nb, Bq, H, dh).permute(0, 1, 3, 2, 4).reshape(B * nb, H, Bq, dh)
    i = torch.arange(Bq, device=q.device)[:, None]
    j = torch.arange(L, device=q.device)[None, :]
    base = (j >= i) & (j <= i + W - 1)  # key global = blk*Bq + j - (W-1), query = blk*Bq + i
    first = base & (j >= W - 1)  # block 0: keys before position 0 are padding
    mask = torch.stack([first] + [base] * (nb - 1), 0)  # [nb, Bq, L]
    mask = mask[None].expand(B, nb, Bq, L).reshape(B * nb, 1, Bq, L)
    o = _attn_core(qb, kb, vb, mask, scale)  # [B*nb, H, Bq, dh]
    o = o.view(B, nb, H, Bq, dh).permute(0, 1, 3, 2, 4).reshape(B, Tp, H, dh)
    return o[:, :T]


class Attention(nn.Module):
    """Self-attention of an SWA / encoder layer: QKNorm, RoPE, GQA."""

    def __init__(self, cfg):
        super().__init__()
        D, H, Hk, dh = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        self.H, self.Hk, self.dh = H, Hk, dh
        self.theta = cfg.rope_theta
        self.q = nn.Linear(D, H * dh, bias=False)
        self.k = nn.Linear(D, Hk * dh, bias=False)
        self.v = nn.Linear(D, Hk * dh, bias=False)
        self.o = nn.Linear(H * dh, D, bias=False)
        self.q_norm = RMSNorm(dh, cfg.rms_norm_eps)
        self.k_norm = RMSNorm(dh, cfg.rms_norm_eps)

    def forward(self, h, pos0, window):
        """h [B,T,D]; RoPE positions pos0 .. pos0+T-1; window: int (causal sliding window) or
        None (bidirectional)."""
        B, T, _ = h.shape
        q = self.q_norm(self.q(h).view(B, T, self.H, self.dh))
        k = self.k_norm(self.k(h).view(B, T, self.Hk, self.dh))
        v = self.v(h).view(B, T, self.Hk, self.dh)
        cos, sin = rope_cos_sin(pos0, T, self.dh, self.theta, q.dtype, q.device)
        q = apply_rope(q, cos, sin)
        k = apply_rope(k, cos.to(k.dtype), sin.to(k.dtype))
        G = self.H // self.Hk
        if G > 1:  # query head i uses kv head i // G
            k = k.repeat_interleave(G, dim=2)
            v = v.repeat_interleave(G, dim=2)
        v = v.to(q.dtype)
        k = k.to(q.dtype)
        scale = 1.0 / math.sqrt(self.dh)
        if window is None:
            o = full_attention(q, k, v, scale)
        else:
            o = sliding_window_attention(q, k, v, window, scale)
        return self.o(o.reshape(B, T, self.H * self.dh))


class SWALayer(nn.Module):
    """Decoder SWA layer (window=W, global RoPE) or encoder layer (window=None, local RoPE)."""

    def __init__(self, cfg):
        super().__init__()
        D = cfg.hidden_size
        self.attn_norm = RMSNorm(D, cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.mlp_norm = RMSNorm(D, cfg.rms_norm_eps)
        self.mlp = SwiGLU(D, cfg.intermediate_size)

    def forward(self, x, pos0, window):
        x = x + self.attn(self.attn_norm(x), pos0, window)
        x = x + self.mlp(self.mlp_norm(x))
        return x


class ChunkLayer(nn.Module):
    """Chunking layer parameters (the encoder layers live in HSAModel.encoder)."""

    def __init__(self, cfg):
        super().__init__()
        D, Hm, dr, dh = cfg.hidden_size, cfg.num_memory_heads, cfg.retrieval_dim, cfg.head_dim
        self.in_norm = RMSNorm(D, cfg.rms_norm_eps)
        self.cls = nn.Parameter(torch.zeros(D))
        self.out_norm = RMSNorm(D, cfg.rms_norm_eps)
        self.lmk = nn.Linear(D, Hm * dr, bias=False)
        self.mk = nn.Linear(D, Hm * dh, bias=False)
        self.mv = nn.Linear(D, Hm * dh, bias=False)
        self.k_norm = RMSNorm(dh, cfg.rms_norm_eps)


# ----------------------------------------------------------------------------------------------
# retrieval and HSA

def retrieval_scores(qr, landmarks, pos, S):
    """qr [B,T,Hm,dr]; landmarks [B,C,Hm,dr]; pos [T] global positions.
    Returns s [B,T,Hm,C] in fp32 (fp64 for fp64 inputs), -inf where chunk c is not eligible
    ((c+1)*S > t), and n_valid [T] = number of eligible chunks."""
    sd = _stat_dtype(qr.dtype)
    dr = qr.shape[-1]
    C = landmarks.shape[1]
    s = torch.einsum("btmd,bcmd->btmc", qr.to(sd), landmarks.to(sd)) / math.sqrt(dr)
    n_valid = torch.clamp(torch.div(pos, S, rounding_mode="floor"), max=C)
    c = torch.arange(C, device=s.device)
    elig = c[None, :] < n_valid[:, None]  # [T, C]
    s = s.masked_fill(~elig[None, :, None, :], float("-inf"))
    return s, n_valid


def select_topk(s, n_valid, K):
    """Top-K chunks per (b, t, m) with ties broken towards the more recent chunk.
    s [B,T,Hm,C] (-inf = ineligible), n_valid [T].
    Returns idx [B,T,Hm,K'] (K' = min(K, C)), sorted by chunk index descending, -1 for empty slots,
    and w [B,T,Hm,K'] = softmax of the selected scores (0 on empty slots; all 0 if none)."""
    B, T, Hm, C = s.shape
    Kp = min(K, C)
    # reverse the chunk order so that a stable descending sort puts the more recent chunk first
    order = torch.sort(s.detach().flip(-1), dim=-1, descending=True, stable=True).indices[..., :Kp]
    idx = (C - 1) - order
    slot = torch.arange(Kp, device=s.device)
    valid = slot[None, :] < n_valid[:, None]  # [T, Kp]
    idx = torch.where(valid[None, :, None, :], idx, torch.full_like(idx, -1))
    idx = torch.sort(idx, dim=-1, descending=True).values  # -1 slots go last
    valid = idx >= 0
    sel = s.gather(-1, idx.clamp(min=0))
    sel = sel.masked_fill(~valid, float("-inf"))
    m = sel.detach().amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(sel - m)
    den = e.sum(-1, keepdim=True)
    w = e / torch.where(den > 0, den, torch.ones_like(den))
    return idx, w


def hsa_attend(q, kmem, vmem, idx, w):
    """Vectorised HSA.  q [B,T,H,dh]; kmem/vmem [B,C,S,Hm,dh]; idx [B,T,Hm,K] (-1 = empty);
    w [B,T,Hm,K] (fp32).  Each selected chunk: softmax over its S keys (scale 1/sqrt(dh));
    chunks are mixed only by w.  Returns O [B,T,H*dh]."""
    B, T, H, dh = q.shape
    C, S, Hm = kmem.shape[1], kmem.shape[2], kmem.shape[3]
    G = H // Hm
    K = idx.shape[-1]
    sd = _stat_dtype(q.dtype)
    km = kmem.permute(0, 3, 1, 2, 4).reshape(B * Hm * C, S, dh)
    vm = vmem.permute(0, 3, 1, 2, 4).reshape(B * Hm * C, S, dh)
    base = (torch.arange(B, device=q.device)[:, None] * Hm + torch.arange(Hm, device=q.device)[None, :]) * C
    flat = idx.clamp(min=0) + base[:, None, :, None]  # [B,T,Hm,K]
    kg = km[flat]  # [B,T,Hm,K,S,dh]
    vg = vm[flat]
    qg = q.reshape(B, T, Hm, G, dh).to(kg.dtype)
    a = torch.einsum("btmgd,btmksd->btmgks", qg, kg).to(sd) * (1.0 / math.sqrt(dh))
    p = torch.softmax(a, -1)
    o = torch.einsum("btmgks,btmksd->btmgkd", p.to(vg.dtype), vg)
    O = torch.einsum("btmgkd,btmk->btmgd", o.to(sd), w.to(sd))
    return O.reshape(B, T, H * dh)


# The HSA attention the layers call on CUDA tensors: hsa_attend, or a fused kernel set by
# set_hsa_kernel (training; CPU tensors always take hsa_attend, the reference).
_HSA_CUDA = None


def set_hsa_kernel(name):
    """'torch' (hsa_attend everywhere), 'triton' (hsa_triton.hsa_attend_triton on CUDA tensors) or
    'auto' (triton when CUDA and Triton are there, else torch). Returns the kernel set."""
    global _HSA_CUDA
    if name == "auto":
        try:
            import triton  # noqa: F401
            name = "triton" if torch.cuda.is_available() else "torch"
        except ImportError:
            name = "torch"
    if name == "triton":
        from hsa_triton import hsa_attend_triton
        _HSA_CUDA = hsa_attend_triton
    elif name == "torch":
        _HSA_CUDA = None
    else:
        raise ValueError("hsa kernel %r: torch, triton or auto" % name)
    return name


def hsa_attention(q, kmem, vmem, idx, w):
    """The layers' HSA attention: hsa_attend, or on CUDA tensors the kernel set_hsa_kernel chose."""
    if _HSA_CUDA is not None and q.is_cuda:
        return _HSA_CUDA(q, kmem, vmem, idx, w)
    return hsa_attend(q, kmem, vmem, idx, w)


def hsa_attend_naive(q, kmem, vmem, idx, w):
    """Loop version of hsa_attend for tests.  Same arguments."""
    B, T, H, dh = q.shape
    Hm = kmem.shape[3]
    G = H // Hm
    out = torch.zeros(B, T, H, dh, dtype=_stat_dtype(q.dtype))
    for b in range(B):
        for t in range(T):
            for i in range(H):
                m = i // G
                for r in range(idx.shape[-1]):
                    c = int(idx[b, t, m, r])
                    if c < 0:
                        continue
                    a = (kmem[b, c, :, m, :] @ q[b, t, i]) / math.sqrt(dh)
                    p = torch.softmax(a.to(out.dtype), 0)
                    out[b, t, i] += w[b, t, m, r].to(out.dtype) * (p @ vmem[b, c, :, m, :].to(out.dtype))
    return out.reshape(B, T, H * dh)


class HSALayer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, H, dh, Hm, dr = cfg.hidden_size, cfg.num_attention_heads, cfg.head_dim, cfg.num_memory_heads, cfg.retrieval_dim
        self.cfg = cfg
        self.attn_norm = RMSNorm(D, cfg.rms_norm_eps)
        self.attn = Attention(cfg)
        self.hsa_norm = RMSNorm(D, cfg.rms_norm_eps)
        self.retr = nn.Linear(D, Hm * dr, bias=False)
        self.q = nn.Linear(D, H * dh, bias=False)
        self.q_norm = RMSNorm(dh, cfg.rms_norm_eps)
        self.o = nn.Linear(H * dh, D, bias=False)
        self.mlp_norm = RMSNorm(D, cfg.rms_norm_eps)
        self.mlp = SwiGLU(D, cfg.intermediate_size)

    def forward(self, x, pos0, mem, want_scores=False):
        cfg = self.cfg
        B, T, _ = x.shape
        x = x + self.attn(self.attn_norm(x), pos0, cfg.sliding_window)
        h = self.hsa_norm(x)
        Hm, dr, H, dh = cfg.num_memory_heads, cfg.retrieval_dim, cfg.num_attention_heads, cfg.head_dim
        info = {}
        C = mem["landmarks"].shape[1]
        if C == 0:
            y = torch.zeros_like(x)
            info["idx"] = torch.full((B, T, Hm, 0), -1, dtype=torch.long, device=x.device)
            info["w"] = torch.zeros((B, T, Hm, 0), dtype=torch.float32, device=x.device)
            info["scores"] = torch.zeros((B, T, Hm, 0), dtype=torch.float32, device=x.device)
            info["qr"] = torch.zeros((B, T, Hm, dr), dtype=x.dtype, device=x.device)
        else:
            qr = self.retr(h).view(B, T, Hm, dr)
            pos = torch.arange(pos0, pos0 + T, device=x.device)
            s, n_valid = retrieval_scores(qr, mem["landmarks"], pos, cfg.chunk_size)
            idx, w = select_topk(s, n_valid, cfg.chunk_topk)
            q = self.q_norm(self.q(h).view(B, T, H, dh))
            O = hsa_attention(q, mem["kmem"], mem["vmem"], idx, w)
            y = self.o(O.to(x.dtype))
            info["idx"], info["w"] = idx, w
            if want_scores:
                info["scores"], info["qr"] = s, qr
        y = y.to(x.dtype)
        if cfg.hsa_residual == "bypass":
            x = x + self.mlp(self.mlp_norm(x + y))
        else:
            x = x + y + self.mlp(self.mlp_norm(x + y))
        return x, info


class UpperGroup(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.hsa = HSALayer(cfg)
        self.swa = nn.ModuleList([SWALayer(cfg) for _ in range(cfg.swa_layers_per_group)])


# ----------------------------------------------------------------------------------------------

class HSAModel(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        if isinstance(cfg, dict):
            cfg = HSAConfig.from_dict(cfg)
        self.cfg = cfg
        D, V = cfg.hidden_size, cfg.vocab_size
        self.embed = nn.Embedding(V, D)
        self.lower = nn.ModuleList([SWALayer(cfg) for _ in range(cfg.num_lower_layers)])
        self.encoder = nn.ModuleList([SWALayer(cfg) for _ in range(cfg.encoder_layers)])
        self.chunk = ChunkLayer(cfg)
        self.upper = nn.ModuleList([UpperGroup(cfg) for _ in range(cfg.num_upper_groups)])
        self.final_norm = RMSNorm(D, cfg.rms_norm_eps)
        if not cfg.tie_word_embeddings:
            self.lm_head = nn.Linear(D, V, bias=False)
        self.mem_round_bf16 = False
        self.grad_ckpt = False
        self.init_weights()

    # -- init ------------------------------------------------------------------------------
    def init_weights(self, std=0.02):
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                nn.init.normal_(p, 0.0, std)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())

    # -- pieces ----------------------------------------------------------------------------
    def lm_weight(self):
        return self.embed.weight if self.cfg.tie_word_embeddings else self.lm_head.weight

    def build_memory(self, x_mid, n_chunks=None):
        """x_mid [B,T,D] -> dict(landmarks [B,C,Hm,dr], kmem/vmem [B,C,S,Hm,dh]) for the C
        complete chunks (or the first n_chunks)."""
        cfg = self.cfg
        B, T, D = x_mid.shape
        S, Hm, dr, dh = cfg.chunk_size, cfg.num_memory_heads, cfg.retrieval_dim, cfg.head_dim
        C = T // S if n_chunks is None else n_chunks
        if C == 0:
            z = x_mid.new_zeros
            return dict(landmarks=z((B, 0, Hm, dr)), kmem=z((B, 0, S, Hm, dh)), vmem=z((B, 0, S, Hm, dh)))
        X = x_mid[:, : C * S].reshape(B * C, S, D)
        ch = self.chunk
        h = ch.in_norm(X)
        cls = ch.cls.to(h.dtype)[None, None, :].expand(B * C, 1, D)
        E = torch.cat([h, cls], 1)  # [B*C, S+1, D]
        for layer in self.encoder:  # bidirectional, local RoPE positions 0..S
            E = self._maybe_ckpt(layer, E, 0, None)
        E = ch.out_norm(E)
        lmk = ch.lmk(E[:, S]).view(B, C, Hm, dr)
        kmem = ch.k_norm(ch.mk(E[:, :S]).view(B * C, S, Hm, dh)).view(B, C, S, Hm, dh)
        vmem = ch.mv(E[:, :S]).view(B, C, S, Hm, dh)
        if self.mem_round_bf16:
            lmk, kmem, vmem = (t.to(torch.bfloat16).to(t.dtype) for t in (lmk, kmem, vmem))
        return dict(landmarks=lmk, kmem=kmem, vmem=vmem)

    def lower_half(self, tokens):
        """tokens [B,T] -> x_mid [B,T,D]: the embedding and the lower SWA layers (RoPE positions
        0..T-1), what the memory and the upper half start from."""
        x = self.embed(tokens)
        for layer in self.lower:
            x = self._maybe_ckpt(layer, x, 0, self.cfg.sliding_window)
        return x

    def _maybe_ckpt(self, layer, x, pos0, window):
        if self.grad_ckpt and self.training and x.requires_grad:
            from torch.utils.checkpoint import checkpoint
            return checkpoint(layer, x, pos0, window, use_reentrant=False)
        return layer(x, pos0, window)

    def forward(self, tokens, upper_start=0, return_intermediates=False, return_scores=False,
                compute_logits=True):
        """tokens [B,T] (or [T]).  The lower half and the memory run over all T tokens; the upper
        half (and the logits) over positions upper_start..T-1 only (upper_start=0: everything),
        which is how the engine answers a query: memory over all chunks, upper layers over the
        last tokens.  Returns a dict:
          logits [B,T-upper_start,V]; and with return_intermediates: x_mid [B,T,D],
          landmarks, kmem, vmem, topk_idx / topk_w: lists (one per HSA layer) of [B,Tu,Hm,K'];
          with return_scores: scores: list of s [B,Tu,Hm,C] (-inf on ineligible chunks), qr: list of
          the retrieval queries [B,Tu,Hm,dr] behind them, and landmarks [B,C,Hm,dr]."""
        cfg = self.cfg
        squeeze = tokens.dim() == 1
        if squeeze:
            tokens = tokens[None]
        B, T = tokens.shape
        x = x_mid = self.lower_half(tokens)
        mem = self.build_memory(x_mid)
        out = {}
        if return_intermediates:
            out["x_mid"] = x_mid
            out.update(mem)
            out["topk_idx"], out["topk_w"] = [], []
        if return_scores:
            out["scores"], out["qr"], out["landmarks"] = [], [], mem["landmarks"]
        xu = x[:, upper_start:]
        pu = upper_start
        for grp in self.upper:
            if self.grad_ckpt and self.training and xu.requires_grad:
                from torch.utils.checkpoint import checkpoint
                xu, info = checkpoint(grp.hsa, xu, pu, mem, return_scores, use_reentrant=False)
            else:
                xu, info = grp.hsa(xu, pu, mem, want_scores=return_scores)
            if return_intermediates:
                out["topk_idx"].append(info["idx"])
                out["topk_w"].append(info["w"])
            if return_scores:
                out["scores"].append(info["scores"])
                out["qr"].append(info["qr"])
            for layer in grp.swa:
                xu = self._maybe_ckpt(layer, xu, pu, cfg.sliding_window)
        h = self.final_norm(xu)
        out["hidden"] = h
        if compute_logits:
            out["logits"] = F.linear(h, self.lm_weight())
        if squeeze:
            for k, v in list(out.items()):
                if torch.is_tensor(v):
                    out[k] = v[0]
                elif isinstance(v, list):
                    out[k] = [t[0] for t in v]
        return out

    # -- I/O ---------------------------------------------------------------------------------
    def save_pretrained(self, d, dtype=torch.float32, metadata=None):
        from safetensors_io import save_file
        os.makedirs(d, exist_ok=True)
        name = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float64: "float64"}[dtype]
        self.cfg.save(os.path.join(d, "config.json"), torch_dtype=name)
        sd = {k: v.detach().to("cpu", dtype).contiguous() for k, v in self.state_dict().items()}
        save_file(sd, os.path.join(d, "model.safetensors"), metadata=metadata or {"format": "pt"})

    @classmethod
    def from_pretrained(cls, d, dtype=torch.float32, device="cpu"):
        from safetensors_io import load_file
        cfg = HSAConfig.load(os.path.join(d, "config.json"))
        m = cls(cfg)
        sd = load_file(os.path.join(d, "model.safetensors"))
        m.load_state_dict({k: v.to(dtype) for k, v in sd.items()})
        return m.to(device=device, dtype=dtype)


def expected_param_shapes(cfg):
    """The tensor table of the brief / C loader, for checks."""
    D, Fd, H, dh, Hk, Hm, dr, V = (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.head_dim,
                                   cfg.num_key_value_heads, cfg.num_memory_heads, cfg.retrieval_dim, cfg.vocab_size)
    out = {"embed.weight": (V, D)}

    def attn(P):
        out[P + ".attn_norm.weight"] = (D,)
        out[P + ".attn.q.weight"] = (H * dh, D)
        out[P + ".attn.k.weight"] = (Hk * dh, D)
        out[P + ".attn.v.weight"] = (Hk * dh, D)
        out[P + ".attn.q_norm.weight"] = (dh,)
        out[P + ".attn.k_norm.weight"] = (dh,)
        out[P + ".attn.o.weight"] = (D, H * dh)

    def mlp(P):
        out[P + ".mlp_norm.weight"] = (D,)
        out[P + ".mlp.gate.weight"] = (Fd, D)
        out[P + ".mlp.up.weight"] = (Fd, D)
        out[P + ".mlp.down.weight"] = (D, Fd)

    for i in range(cfg.num_lower_layers):
        attn("lower.%d" % i); mlp("lower.%d" % i)
    for j in range(cfg.encoder_layers):
        attn("encoder.%d" % j); mlp("encoder.%d" % j)
    out.update({"chunk.in_norm.weight": (D,), "chunk.cls": (D,), "chunk.out_norm.weight": (D,),
                "chunk.lmk.weight": (Hm * dr, D), "chunk.mk.weight": (Hm * dh, D),
                "chunk.mv.weight": (Hm * dh, D), "chunk.k_norm.weight": (dh,)})
    for g in range(cfg.num_upper_groups):
        P = "upper.%d.hsa" % g
        attn(P)
        out[P + ".hsa_norm.weight"] = (D,)
        out[P + ".retr.weight"] = (Hm * dr, D)
        out[P + ".q.weight"] = (H * dh, D)
        out[P + ".q_norm.weight"] = (dh,)
        out[P + ".o.weight"] = (D, H * dh)
        mlp(P)
        for r in range(cfg.swa_layers_per_group):
            attn("upper.%d.swa.%d" % (g, r)); mlp("upper.%d.swa.%d" % (g, r))
    out["final_norm.weight"] = (D,)
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = (V, D)
    return out
