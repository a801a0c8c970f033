#!/usr/bin/env python3
"""Train the small hsadb HSA model on synthetic long-context retrieval data (data.py).

Loss = answer CE + lm_weight * LM CE (other positions) + ret_weight * retrieval CE
(the probe's retrieval supervision: at answer positions, cross-entropy of the retrieval scores
s[t, m, :] of every HSA layer and memory head against the chunks holding the needle(s)).

Resumable: --resume DIR loads the newest checkpoint among the given dirs; the learning-rate
schedule and the length curriculum follow the cumulative *training time* against --plan-minutes,
so a run that is cut into several processes follows one schedule.  The process stops cleanly
before --minutes (wall clock, evaluation and saving included) and writes the checkpoint:
  model-0000N.safetensors (F32 shards <= 15 MB), optim-0000N.safetensors (AdamW moments in BF16),
  state.json (step, time, tokens, config, history).

Eval (single needle, exact match of the greedy answer, which is what teacher-forced argmax over
the answer bytes and the <eos> measures): lower half + memory over the whole haystack, upper half
over the last --eval-tail tokens only, as the engine answers a query.

Example (GPU):
  python3 tools/train/train.py --out $OUT/ckpt --resume .carry/ckpt --minutes 8.5 --plan-minutes 34
"""
import argparse
import json
import math
import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from hsa_model import HSAConfig, HSAModel, set_hsa_kernel  # noqa: E402
from safetensors_io import save_file, load_file  # noqa: E402
import data as D  # noqa: E402

PRESETS = {
    "small": dict(vocab_size=264, hidden_size=256, intermediate_size=768, num_attention_heads=8, head_dim=32,
                  num_key_value_heads=2, num_memory_heads=2, retrieval_dim=64, num_lower_layers=2,
                  encoder_layers=1, num_upper_groups=2, swa_layers_per_group=1, chunk_size=64, chunk_topk=8,
                  sliding_window=128, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                  hsa_residual="standard"),
    # v2 (issue 33): a wider network for language; vocab_size comes from the tokenizer (--tokenizer).
    # A starting point, to be decided by measurement (lab/v2/README.md: 2.5x v1's CPU cost a token;
    # 14.6M parameters with bytes, 17.8M with an 8K BPE).
    "v2": dict(vocab_size=264, hidden_size=384, intermediate_size=1152, num_attention_heads=6, head_dim=64,
               num_key_value_heads=2, num_memory_heads=2, retrieval_dim=64, num_lower_layers=3,
               encoder_layers=1, num_upper_groups=2, swa_layers_per_group=1, chunk_size=64, chunk_topk=8,
               sliding_window=256, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
               hsa_residual="standard"),
    "cputiny": dict(vocab_size=264, hidden_size=64, intermediate_size=128, num_attention_heads=4, head_dim=16,
                    num_key_value_heads=2, num_memory_heads=2, retrieval_dim=32, num_lower_layers=1,
                    encoder_layers=1, num_upper_groups=1, swa_layers_per_group=1, chunk_size=64, chunk_topk=8,
                    sliding_window=128, rope_theta=10000.0, rms_norm_eps=1e-6, tie_word_embeddings=True,
                    hsa_residual="standard"),
}

SHARD_BYTES = 15 * 1024 * 1024


def log(msg, f=None):
    line = time.strftime("%H:%M:%S ") + msg
    print(line, flush=True)
    if f is not None:
        f.write(line + "\n")
        f.flush()


# ---- checkpoint ----------------------------------------------------------------------------------

def _shards(tensors, prefix, outdir):
    names = sorted(tensors)
    shard, size, k, files = {}, 0, 1, []
    for n in names:
        nb = tensors[n].numel() * tensors[n].element_size()
        if shard and size + nb > SHARD_BYTES:
            fn = "%s-%05d.safetensors" % (prefix, k)
            save_file(shard, os.path.join(outdir, fn))
            files.append(fn)
            shard, size, k = {}, 0, k + 1
        shard[n] = tensors[n]
        size += nb
    if shard:
        fn = "%s-%05d.safetensors" % (prefix, k)
        save_file(shard, os.path.join(outdir, fn))
        files.append(fn)
    return files


def save_ckpt(outdir, model, opt, state, with_optim=True, dtype=torch.float32):
    os.makedirs(outdir, exist_ok=True)
    for fn in os.listdir(outdir):
        if fn.endswith(".safetensors") and (fn.startswith("model-") or fn.startswith("optim-")):
            os.remove(os.path.join(outdir, fn))
    sd = {k: v.detach().to(dtype).cpu().contiguous() for k, v in model.state_dict().items()}
    files = _shards(sd, "model", outdir)
    if with_optim:
        names = {p: n for n, p in model.named_parameters()}
        mom = {}
        for p, st in opt.state.items():
            n = names[p]
            mom["exp_avg." + n] = st["exp_avg"].detach().to(torch.bfloat16).cpu().contiguous()
            mom["exp_avg_sq." + n] = st["exp_avg_sq"].detach().to(torch.bfloat16).cpu().contiguous()
            state["opt_step"] = float(st["step"])
        files += _shards(mom, "optim", outdir)
    state = dict(state)
    state["files"] = files
    with open(os.path.join(outdir, "state.json.tmp"), "w") as f:
        json.dump(state, f, indent=1)
    os.replace(os.path.join(outdir, "state.json.tmp"), os.path.join(outdir, "state.json"))


def find_ckpt(dirs):
    best, best_step = None, -1
    for d in dirs:
        p = os.path.join(d, "state.json")
        if os.path.exists(p):
            try:
                st = json.load(open(p))
            except ValueError:
                continue
            if all(os.path.exists(os.path.join(d, f)) for f in st.get("files", [])) and st["step"] > best_step:
                best, best_step = d, st["step"]
    return best


def load_ckpt(d, model, opt, dev):
    st = json.load(open(os.path.join(d, "state.json")))
    sd, mom = {}, {}
    for fn in st["files"]:
        t = load_file(os.path.join(d, fn))
        (sd if os.path.basename(fn).startswith("model") else mom).update(t)
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    if mom and opt is not None:
        params = dict(model.named_parameters())
        osd = opt.state_dict()
        idx = {}
        i = 0
        for g in opt.param_groups:
            for p in g["params"]:
                idx[id(p)] = i
                i += 1
        state = {}
        for n, p in params.items():
            if "exp_avg." + n in mom:
                state[idx[id(p)]] = {"step": torch.tensor(float(st.get("opt_step", st["step"]))),
                                     "exp_avg": mom["exp_avg." + n].float().to(dev),
                                     "exp_avg_sq": mom["exp_avg_sq." + n].float().to(dev)}
        osd["state"] = state
        opt.load_state_dict(osd)
    return st


# ---- eval ------------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model, corpus, lengths, n, seed, tail, dev, amp, dists=()):
    """Single needle at depths (i+0.5)/n per length (key str(L)); with dists also a needle that
    ends d bytes before the query block (d=0: immediately before it), at the first length only
    (key "end<d>@<L>"). n = 0: no evaluation, {}."""
    if n <= 0:
        return {}
    was = model.training
    model.eval()
    res = {}
    jobs = [(str(L), L, None) for L in lengths]
    if lengths:
        jobs += [("end%d@%d" % (d, lengths[0]), lengths[0], d) for d in dists]
    for name, L, dist in jobs:
        rng = random.Random(seed * 1000 + L + (0 if dist is None else 7 + dist))
        ok = hit = 0
        t0 = time.time()
        for i in range(n):
            if dist is None:
                toks, a0, na, chunks, v = D.eval_sample(rng, corpus, L, depth=(i + 0.5) / n)
            else:
                toks, a0, na, chunks, v = D.eval_sample(rng, corpus, L, dist=dist)
            u = max(0, L - tail)
            x = torch.from_numpy(toks).to(dev)[None]
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x, upper_start=u, return_intermediates=True)
            pred = out["logits"][0, a0 - u:a0 - u + na].float().argmax(-1).cpu().numpy()
            ok += int((pred == toks[a0 + 1:a0 + 1 + na]).all())
            # retrieval hit: any HSA layer / memory head has a needle chunk in its top-K at <answer>
            h = False
            for idx in out["topk_idx"]:
                sel = idx[0, a0 - u].reshape(-1).tolist()
                h = h or any(c in sel for c in chunks)
            hit += int(h)
        res[name] = dict(acc=ok / n, hit=hit / n, n=n, sec=round(time.time() - t0, 2))
    model.train(was)
    return res


# ---- v2 data (--data nl): samples of tools/train/nldata.py, made by worker processes -------------------

_W = {}   # per worker process: tokenizer, sources


def _nl_init(tokenizer, root, corpus, seed):
    import nldata
    _W["tok"] = nldata.load_tokenizer(tokenizer)
    _W["src"] = nldata.Sources.load(root=root, corpus=corpus or None, seed=seed)
    _W["held"] = None
    _W["args"] = (root, corpus, seed)


def _nl_batch(L, B, seed, mix, S):
    import nldata
    rng = random.Random(seed)
    samples = [nldata.make_sample(rng, _W["tok"], L, _W["src"], mix, S) for _ in range(B)]
    return D.collate(samples), [s.family for s in samples]


def _nl_eval_samples(L, n, seed, split, S):
    """Fixed evaluation samples: split "train" (seen families, fresh instances) or "held"."""
    import nldata
    if split == "held" and _W["held"] is None:
        root, corpus, sd = _W["args"]
        _W["held"] = nldata.Sources.load(root=root, corpus=corpus or None, seed=sd, split="held")
    src = _W["src"] if split == "train" else _W["held"]
    rng = random.Random(seed)
    mix = {"chat": 0.4, "records": 0.4, "needle": 0.2}
    return [nldata.make_sample(rng, _W["tok"], L, src, mix, S) for _ in range(n)]


class NlData:
    """Batches made ahead by a pool of processes (data generation is Python; the GPU must not wait)."""

    def __init__(self, args, S):
        import multiprocessing as mp
        self.pool = mp.get_context("spawn").Pool(args.workers, initializer=_nl_init,
                                                 initargs=(args.tokenizer, args.sources_root, args.corpus, args.seed))
        self.mix = json.loads(args.mix) if args.mix else None
        self.S, self.inflight, self.k = S, [], 0
        self.seed = args.seed

    def next(self, L, B, step):
        while len(self.inflight) < 2 * self.pool._processes:
            self.k += 1
            self.inflight.append(self.pool.apply_async(_nl_batch, (L, B, self.seed * 1_000_003 + step * 1009 + self.k,
                                                                   self.mix, self.S)))
        return self.inflight.pop(0).get()

    def eval_samples(self, L, n, split):
        return self.pool.apply(_nl_eval_samples, (L, n, 12345 + L, split, self.S))


@torch.no_grad()
def evaluate_nl(model, sets, tail, dev, amp):
    """Teacher-forced answers of fixed samples, as the engine runs a query: the upper half over the
    last `tail` tokens only. An answer is right when every answer token and its <eos> is the argmax;
    per split and question kind. sets: {name: [nldata samples]}."""
    was = model.training
    model.eval()
    res = {}
    for name, samples in sets.items():
        per = {}
        for smp in samples:
            L = len(smp.tokens)
            u = max(0, L - tail)
            x = torch.from_numpy(smp.tokens).to(dev)[None]
            with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                out = model(x, upper_start=u)
            pred = out["logits"][0].float().argmax(-1).cpu().numpy()
            for a, m in zip(smp.answers, smp.meta["questions"]):
                a0 = m["answer_pos"]
                n_ans = int(smp.ans[a0:].argmin()) if not smp.ans[a0:].all() else L - a0
                if a0 < u:
                    continue      # a question outside the tail: the engine would ask it alone
                ok = bool((pred[a0 - u:a0 - u + n_ans] == smp.tokens[a0 + 1:a0 + 1 + n_ans]).all())
                k = per.setdefault(m["kind"], [0, 0])
                k[0] += int(ok)
                k[1] += 1
        tot = [sum(v[0] for v in per.values()), sum(v[1] for v in per.values())]
        res[name] = dict(acc=round(tot[0] / max(1, tot[1]), 4), n=tot[1],
                         kinds={k: "%d/%d" % tuple(v) for k, v in sorted(per.items())})
    model.train(was)
    return res


# ---- training ----------------------------------------------------------------------------------------

def lr_at(progress, step, args):
    if step < args.warmup_steps:
        return args.lr * (step + 1) / args.warmup_steps
    p = min(1.0, progress)
    return args.lr * (args.min_lr_ratio + (1 - args.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * p)))


def parse_curriculum(s):
    pts = []
    for item in s.split(","):
        a, b = item.split(":")
        pts.append((float(a), int(b)))
    return sorted(pts)


def length_at(progress, cur):
    L = cur[0][1]
    for p, l in cur:
        if progress >= p:
            L = l
    return L


def negative_logits(qr, landmarks, sup_b, sup_t, queue=None):
    """Extra retrieval logits for the supervised positions, one [N,Hm,M] per HSA layer: their queries
    (qr: list of [B,T,Hm,dr]) against the chunks of the batch's other samples (landmarks [B,C,Hm,dr];
    the sample's own chunks are -inf here, its scores already have them) and against `queue` [Q,Hm,dr]
    (landmarks of earlier steps, no gradient). Never targets: they only add competitors, as a 16M
    memory has 262,143 chunks where a 4K sample has 64."""
    B, C, Hm, dr = landmarks.shape
    lm = landmarks.reshape(B * C, Hm, dr).float()
    own = (torch.arange(B * C, device=landmarks.device) // C)[None, :] == sup_b[:, None]  # [N, B*C]
    out = []
    for q in qr:
        q = q[sup_b, sup_t].float()  # [N,Hm,dr]
        ex = torch.einsum("nmd,kmd->nmk", q, lm).masked_fill(own[:, None, :], float("-inf"))
        if queue is not None and queue.shape[0]:
            ex = torch.cat([ex, torch.einsum("nmd,kmd->nmk", q, queue.float())], -1)
        out.append(ex / math.sqrt(dr))
    return out


def retrieval_loss(scores, sup_b, sup_t, sup_tgt, negs=None):
    """scores: list of s [B,T,Hm,C] (-inf = ineligible).  -log(sum of softmax mass on the target
    chunks), averaged over supervised positions, memory heads and HSA layers; also top-1 accuracy.
    negs (negative_logits, one per layer): more competitors appended to each row's softmax (and to the
    top-1 accuracy's argmax).
    Rows whose target set is empty or holds no eligible chunk (data.py never emits them: a needle
    that is not in a complete chunk at t gets no entry) are dropped instead of giving inf/NaN."""
    if sup_b.numel() == 0 or not scores:
        # a constant 0 (scores[0].sum() * 0 would be NaN: ineligible scores are -inf)
        z = scores[0].new_zeros(()) if scores else torch.zeros(())
        return z, float("nan")
    losses, accs = [], []
    for li, s in enumerate(scores):
        C = s.shape[-1]
        rows = s[sup_b, sup_t].float()  # [N,Hm,C]
        tgt = sup_tgt[:, :C][:, None, :].expand_as(rows) & torch.isfinite(rows)
        if negs is not None:
            ex = negs[li].float()
            rows, tgt = torch.cat([rows, ex], -1), torch.cat([tgt, torch.zeros_like(ex, dtype=torch.bool)], -1)
        W = rows.shape[-1]
        rows, tgt = rows.reshape(-1, W), tgt.reshape(-1, W)
        ok = tgt.any(-1)
        if not bool(ok.all()):
            if not bool(ok.any()):
                losses.append(s.new_zeros((), dtype=torch.float32))
                continue
            rows, tgt = rows[ok], tgt[ok]
        lp = torch.log_softmax(rows, -1)
        lt = torch.logsumexp(lp.masked_fill(~tgt, float("-inf")), -1)
        losses.append(-lt.mean())
        top = rows.argmax(-1, keepdim=True)
        accs.append(tgt.gather(-1, top).float().mean())
    if not accs:
        return torch.stack(losses).mean(), float("nan")
    return torch.stack(losses).mean(), float(torch.stack(accs).mean())


# data.py options that are a fraction of the samples (or needles) and 0 by default: name -> help.
# Each is a --flag of train.py and goes into the data options as it is.
DATA_FRACTIONS = {
    "tail_align": "fraction of the needle samples with one asked needle immediately before "
        "<query> and its value in the chunk that is still incomplete at <answer> "
        "(window-copy case; 0: unchanged data)",
    "tail_align_straddle": "of the aligned samples, this fraction has the value across the boundary "
        "between the last complete chunk and the incomplete one",
    "value_align": "fraction of needles at any depth whose value ends at a chunk end or crosses one",
    "vt_align": "vt only: the fraction of links moved as --value-align moves needles (the name ends "
        "at a chunk end or a boundary crosses it: a link cut between name and key), when larger than "
        "--value-align",
    "value_echo": "fraction of niah needles said twice: the same value in another sentence right "
        "before the needle (the demo's shape; with --value-align the second one is aligned)",
    "copy_in_chunk": "copy family: fraction of its pairs with both occurrences inside one chunk "
        "(only the sliding window can copy those)",
    "passkey_codes": "fraction of passkey samples that also hold 1-4 other codes ('The X Y access "
        "code is 4471. The special magic number for the X Y is 4471.', 'The X Y PIN is 5521.'), "
        "never the pass key: the pass key must be found by its words, not as any stated number",
    "key_decoys": "fraction of niah/multikey/multiquery samples whose filler also mentions the "
        "asked keys 2-24 times as plain words (keys that are common words of a long haystack)",
    "lookalikes": "fraction of niah/multikey/multiquery samples whose filler also holds 2-16 "
        "statements that look like a value's place ('the default size is 8192.', "
        "'VAR QXTRB = 5521.'): hard negatives for retrieval",
    "hubs": "fraction of niah/multikey/multiquery samples whose filler also holds 2-8 of the "
        "corpus's hubs (--hubs-file), each chunk-aligned with its 256 bytes of context: hard "
        "negatives for retrieval",
    "vt_hubs": "fraction of vt samples whose filler also holds 2-8 of the corpus's hubs (as --hubs; "
        "needs --hubs-file)",
    "vt_syntax": "fraction of vt samples whose assignments use another syntax ('let B = A;', "
        "'B := A.', ...) instead of 'VAR B = VAR A.' (the evaluation keeps VAR)",
}


def fresh_acc():
    """the sums behind one log line"""
    return dict(n=0, ans=0.0, lm=0.0, ret=0.0, racc=0.0, racc_n=0, tok=0, tacc=0.0, facc=0.0, xhit=0.0, xn=0.0,
                t0=time.time())


def answer_weights(tok, ans, first_weight=1.0, eos_weight=1.0, stop_weight=1.0, ids=None):
    """Per-position weights of the answer loss. tok, ans: [B, T] (ans: 1 where the *next* token is an
    answer byte, as collate builds it). Returns (am, first, aw), each [B, T-1] float: the answer mask,
    the positions that predict the first byte of an answer part (the input token there is <answer> or
    a space), and am with those positions weighted first_weight and the positions that predict the
    <eos> weighted eos_weight. The first byte is where retrieval has to pick the right chunk and the
    right place in it; later bytes can copy by induction. The <eos> is where a list answer decides
    that it is complete (vt's misses stop early); weighting it alone biases that decision towards
    stopping (session 8). stop_weight weights both sides of the decision: the positions that predict
    the <eos> and those that predict a list separator (' ' or ','; inside a value of several words
    a space is weighted too). ids: (answer, eos, value ends) of the vocabulary (default the byte
    vocabulary's; a BPE's for --data nl, where its <answer> starts every answer)."""
    answer_id, eos_id, value_end = ids or (D.ANSWER, D.EOS, D.VALUE_END)
    am = ans[:, :-1].float()
    first = am * ((tok[:, :-1] == answer_id) | (tok[:, :-1] == 32)).float()
    nxt = tok[:, 1:]
    eos = am * (nxt == eos_id).float()
    stop = am * sum((nxt == x) for x in value_end).float()
    return am, first, am + (first_weight - 1.0) * first + (eos_weight - 1.0) * eos + (stop_weight - 1.0) * stop


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True, help="checkpoint directory to write")
    ap.add_argument("--extra-out", default="", help="second directory to write the checkpoint to")
    ap.add_argument("--resume", default="", help="comma-separated checkpoint dirs; newest step wins")
    ap.add_argument("--log", default="")
    ap.add_argument("--preset", default="small")
    ap.add_argument("--config", default="", help="JSON overrides of the preset")
    ap.add_argument("--minutes", type=float, default=8.5, help="wall budget of this process")
    ap.add_argument("--plan-minutes", type=float, default=34.0, help="total training minutes (schedule)")
    ap.add_argument("--max-steps", type=int, default=0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-ratio", type=float, default=0.1)
    ap.add_argument("--warmup-steps", type=int, default=150)
    ap.add_argument("--rewarm-steps", type=int, default=0,
                    help="linear lr warm-up over the first N steps of this process (fine-tunes that "
                         "start with a fresh optimizer from exported weights)")
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--tokens-per-step", type=int, default=32768)
    ap.add_argument("--curriculum", default="0:1024,0.15:2048,0.4:4096,0.7:8192")
    ap.add_argument("--lm-weight", type=float, default=0.2)
    ap.add_argument("--ret-weight", type=float, default=1.0)
    ap.add_argument("--ret-neg-batch", action="store_true",
                    help="retrieval loss: the chunks of the batch's other samples are competitors too")
    ap.add_argument("--ret-neg-queue", type=int, default=0,
                    help="retrieval loss: also this many chunk landmarks of earlier steps (no gradient; "
                         "implies --ret-neg-batch)")
    ap.add_argument("--first-weight", type=float, default=1.0,
                    help="answer-loss weight of each answer part's first byte (the others weigh 1)")
    ap.add_argument("--eos-weight", type=float, default=1.0,
                    help="answer-loss weight of the position that predicts an answer's <eos> (alone it "
                         "biases list answers towards stopping early: session 8)")
    ap.add_argument("--stop-weight", type=float, default=1.0,
                    help="answer-loss weight of the positions that predict an answer's <eos> or a list "
                         "separator (' ', ','): both sides of 'is the list complete'. With --vt-trail, vt's "
                         "decision is the position after the space, which --first-weight weights instead")
    ap.add_argument("--cross-weight", type=float, default=1.0,
                    help="answer-loss weight of the positions that predict a value's byte at the start of "
                         "a chunk, the value having begun in the chunk before (the copy must move on to the "
                         "next chunk, where steps 44,565 and 49,860 cut or garble uuids: probe_boundary.py --probe uuid)")
    ap.add_argument("--mix", default="", help="JSON family weights")
    ap.add_argument("--tail-frac", type=float, default=D.TRAIN_OPTS["tail_frac"],
                    help="fraction of needles put at the very end of the haystack (0: old data)")
    ap.add_argument("--tail-span", type=int, default=0,
                    help="a tail needle ends at most this many bytes before <query> (0: 3 chunks)")
    ap.add_argument("--tail-zero", type=float, default=D.TRAIN_OPTS["tail_zero"],
                    help="fraction of the tail needles placed immediately before <query>")
    ap.add_argument("--sup-key", action="store_true",
                    help="vt: a name's answer bytes also supervise the chunks of its link's key (data.py sup_key)")
    ap.add_argument("--sup-after", action="store_true",
                    help="positions predicting what follows a value also supervise the chunk after it "
                         "when the value ends at a chunk end")
    for name, text in DATA_FRACTIONS.items():
        ap.add_argument("--" + name.replace("_", "-"), type=float, default=0.0, help=text)
    ap.add_argument("--hubs-file", default="",
                    help="JSON of tools/eval/bank_rank.py --hubs-out (corpus chunks that outrank "
                         "needles), for --hubs; several files separated by commas are joined")
    ap.add_argument("--sup-mode", default="per-pos", choices=["per-pos", "union"],
                    help="retrieval targets: the needle being emitted at each answer position, or "
                         "all needles of the query block (old)")
    ap.add_argument("--sup-span", default="value", choices=["value", "needle"],
                    help="supervise the chunks holding the needle's value, or the whole needle (old)")
    ap.add_argument("--mv-order", default="sorted", choices=["sorted", "doc"],
                    help="multivalue answer order: sorted values, or document order (old)")
    ap.add_argument("--vt-distractors", default="", help="lo,hi: distractor assignments per vt sample, "
                    "--vt-look-alike of them with look-alike values ('' = one unrelated, as before)")
    ap.add_argument("--vt-look-alike", type=float, default=0.5,
                    help="with --vt-distractors: the fraction of them whose value shares the asked value's "
                         "first digits (the rest unrelated, as the evaluation's one distractor)")
    ap.add_argument("--vt-hops", default=",".join(str(x) for x in D.TRAIN_OPTS["vt_hops"]),
                    help="weights of 1,2,3.. hops for vt ('' = uniform 1-3, old)")
    ap.add_argument("--vt-trail", action="store_true",
                    help="vt answers end with a space, so the stop decision is made where the next "
                         "name's first byte is predicted (evaluate with eval_tasks.py --vt-trail)")
    ap.add_argument("--eval-end-dists", default="0,16,64,192",
                    help="also evaluate a needle ending this many bytes before the query block "
                         "(first eval length only; '' = off)")
    ap.add_argument("--data", default="tasks", choices=["tasks", "nl"],
                    help="tasks: data.py's synthetic retrieval families (v1); nl: nldata.py's memories in "
                         "people's words (v2, issue 33)")
    ap.add_argument("--tokenizer", default="bytes",
                    help="--data nl: 'bytes' (the v1 vocabulary) or a tokenizer.json (byte-level BPE)")
    ap.add_argument("--sources-root", default="/",
                    help="--data nl: the directory whose etc/, var/lib/dpkg/ and usr/share/{doc,man}/ the "
                         "records and filler come from (tools/train/make_sources.py packs one)")
    ap.add_argument("--workers", type=int, default=max(1, min(12, (os.cpu_count() or 2) - 2)),
                    help="--data nl: processes making samples")
    ap.add_argument("--corpus", default="")
    ap.add_argument("--eval-lengths", default="4096,16384,65536")
    ap.add_argument("--eval-n", type=int, default=20)
    ap.add_argument("--eval-tail", type=int, default=1024)
    ap.add_argument("--eval-every-min", type=float, default=4.0)
    ap.add_argument("--final-eval-lengths", default="", help="lengths for the last eval (default: eval-lengths)")
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-optim-save", action="store_true")
    ap.add_argument("--weights-bf16", action="store_true",
                    help="save the weights in bf16 (half the size: a checkpoint that must travel back from "
                         "the GPU machine; training resumes from them in fp32)")
    ap.add_argument("--mem-round-bf16", action="store_true")
    ap.add_argument("--hsa-kernel", default="auto", choices=["auto", "torch", "triton"],
                    help="HSA attention on the GPU: torch (hsa_attend's gather), triton (hsa_triton.py, fused; "
                         "2x the whole step at 4K x 8 on the H200) or auto (triton where CUDA and Triton are; "
                         "the default since session 16, before which runs used torch)")
    ap.add_argument("--compile", action="store_true",
                    help="torch.compile the training step's forward (torch 2.x; evals run the plain model; "
                         "the compile time counts against --minutes). Measure with bench.py --compile first")
    ap.add_argument("--residual", default="", help="override hsa_residual")
    ap.add_argument("--gain-lr-mult", type=float, default=1.0,
                    help="lr multiplier of chunk.k_norm and upper.*.hsa.q_norm gains")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    if not 0.0 <= args.vt_look_alike <= 1.0:
        ap.error("--vt-look-alike must be in [0, 1]")

    t_start = time.time()
    dev = torch.device(args.device)
    amp = dev.type == "cuda"
    if amp:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    logf = open(args.log, "a") if args.log else None

    cfgd = dict(PRESETS[args.preset])
    if args.config:
        cfgd.update(json.loads(args.config))
    resume = find_ckpt([d for d in args.resume.split(",") if d]) if args.resume else None
    if resume:
        cfgd = json.load(open(os.path.join(resume, "state.json")))["config"]
    if args.residual:
        cfgd["hsa_residual"] = args.residual
    vocab_ids = None   # answer_weights' token ids: the byte vocabulary's unless --data nl
    if args.data == "nl":
        import nldata
        tokz = nldata.load_tokenizer(args.tokenizer)
        vocab_ids = (tokz.answer, tokz.eos, (tokz.eos,))
        if not resume:
            cfgd["vocab_size"] = tokz.vocab_size
    cfg = HSAConfig(**cfgd)
    model = HSAModel(cfg).to(dev)
    model.mem_round_bf16 = args.mem_round_bf16
    decay, no_decay, gains = [], [], []
    for n, p in model.named_parameters():
        if n == "chunk.k_norm.weight" or (n.startswith("upper.") and n.endswith(".hsa.q_norm.weight")):
            gains.append(p)  # the HSA logit temperature (QKNorm gains of HSA queries / memory keys)
        elif p.dim() == 2 and n != "embed.weight":
            decay.append(p)
        else:
            no_decay.append(p)
    kw = dict(lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    if dev.type == "cuda":
        kw["foreach"] = True
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.wd, "lr_mult": 1.0},
                             {"params": no_decay, "weight_decay": 0.0, "lr_mult": 1.0},
                             {"params": gains, "weight_decay": 0.0, "lr_mult": args.gain_lr_mult}], **kw)
    state = dict(step=0, train_seconds=0.0, tokens=0, history=[], evals=[], runs=[])
    if resume:
        st = load_ckpt(resume, model, opt, dev)
        for k in ("step", "train_seconds", "tokens", "history", "evals", "runs"):
            state[k] = st.get(k, state[k])
        log("resumed from %s: step %d, %.1f train-min, %.1fM tokens" % (resume, state["step"], state["train_seconds"] / 60,
                                                                        state["tokens"] / 1e6), logf)
    state["config"] = cfg.to_dict()
    state["args_last"] = vars(args)
    log("model %.2fM params, device %s %s, torch %s" % (model.num_params() / 1e6, dev,
                                                       torch.cuda.get_device_name() if amp else "", torch.__version__), logf)

    log("hsa kernel: %s" % set_hsa_kernel(args.hsa_kernel), logf)
    fwd = model  # the training step's forward; evals (other shapes) call model itself
    if args.compile:
        if not hasattr(torch, "compile"):
            sys.exit("train: --compile needs torch 2.x (this is %s)" % torch.__version__)
        fwd = torch.compile(model)
        log("training forward: torch.compile", logf)

    nl, nl_sets = None, {}
    if args.data == "nl":
        nl = NlData(args, cfg.chunk_size)
        for L in [int(x) for x in args.eval_lengths.split(",") if x] if args.eval_n > 0 else []:
            nl_sets["seen@%d" % L] = nl.eval_samples(L, args.eval_n, "train")
            nl_sets["unseen@%d" % L] = nl.eval_samples(L, args.eval_n, "held")
        log("data nl: tokenizer %s, %d workers, eval sets %s" % (args.tokenizer, args.workers,
                                                                {k: len(v) for k, v in nl_sets.items()}), logf)
        corpus = None
    else:
        corpus = D.Corpus(args.corpus or None)
        log("corpus %.1f MB, %d words" % (len(corpus.data) / 1e6, len(corpus.words)), logf)

    def run_eval(lengths):
        if nl is not None:
            return evaluate_nl(model, nl_sets, args.eval_tail, dev, amp)
        return evaluate(model, corpus, lengths, args.eval_n, 1, args.eval_tail, dev, amp, end_dists)

    if args.hubs > 0 or args.vt_hubs > 0:
        if not args.hubs_file:
            sys.exit("train: --hubs and --vt-hubs need --hubs-file")
        log("hubs: %d from %s" % (corpus.load_hubs(args.hubs_file, cfg.chunk_size), args.hubs_file), logf)
    mix = json.loads(args.mix) if args.mix else None
    dopts = dict(D.TRAIN_OPTS, tail_frac=args.tail_frac, tail_span=args.tail_span or None,
                 tail_zero=args.tail_zero, sup_after=args.sup_after, sup_key=args.sup_key, sup=args.sup_mode,
                 sup_span=args.sup_span, mv_order=args.mv_order,
                 vt_hops=tuple(float(x) for x in args.vt_hops.split(",") if x) or None,
                 vt_trail=args.vt_trail,
                 vt_distractors=tuple(int(x) for x in args.vt_distractors.split(",")) if args.vt_distractors else None,
                 vt_look_alike=args.vt_look_alike,
                 **{name: getattr(args, name) for name in DATA_FRACTIONS})
    end_dists = [int(x) for x in args.eval_end_dists.split(",") if x]
    log("data options %s" % json.dumps(dopts), logf)
    cur = parse_curriculum(args.curriculum)
    rng = random.Random(args.seed * 7919 + state["step"])
    eval_lengths = [int(x) for x in args.eval_lengths.split(",") if x]
    final_lengths = [int(x) for x in args.final_eval_lengths.split(",") if x] or eval_lengths
    plan = args.plan_minutes * 60.0
    budget = args.minutes * 60.0
    # reserve: final eval + save (estimated, updated after the first eval)
    reserve = 20.0 if amp else 5.0
    last_eval = time.time()
    run_info = dict(start_step=state["step"], start_tokens=state["tokens"])
    acc = fresh_acc()
    model.train()
    step_times = []
    neg_queue = None  # --ret-neg-queue: landmarks [Q,Hm,dr] of earlier steps
    while True:
        now = time.time()
        if now - t_start + reserve + (np.median(step_times) if step_times else 0) > budget:
            break
        if args.max_steps and state["step"] - run_info["start_step"] >= args.max_steps:
            break
        progress = state["train_seconds"] / plan
        L = length_at(progress, cur)
        B = max(1, args.tokens_per_step // L)
        if nl is not None:
            bt, fams = nl.next(L, B, state["step"])
        else:
            samples = [D.make_sample(rng, corpus, L, cfg.chunk_size, mix, dopts) for _ in range(B)]
            bt, fams = D.collate(samples), [smp.family for smp in samples]
        ts = time.time()
        tok = torch.from_numpy(bt["tokens"]).to(dev, non_blocking=True)
        ans = torch.from_numpy(bt["ans"]).to(dev, non_blocking=True)
        xmask = torch.from_numpy(bt["cross"]).to(dev, non_blocking=True)
        sup_b = torch.from_numpy(bt["sup_b"]).to(dev)
        sup_t = torch.from_numpy(bt["sup_t"]).to(dev)
        sup_tgt = torch.from_numpy(bt["sup_tgt"]).to(dev)
        lr = lr_at(progress, state["step"], args)
        if args.rewarm_steps > 0:
            lr *= min(1.0, (state["step"] - run_info["start_step"] + 1) / args.rewarm_steps)
        for g in opt.param_groups:
            g["lr"] = lr * g.get("lr_mult", 1.0)
        with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
            out = fwd(tok, return_scores=args.ret_weight > 0)
        logits = out["logits"][:, :-1].float()
        tgt = tok[:, 1:]
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none").view_as(tgt)
        am, first, aw = answer_weights(tok, ans, args.first_weight, args.eos_weight, args.stop_weight, vocab_ids)
        cross = am * xmask[:, :-1].float()
        aw = aw + (args.cross_weight - 1.0) * cross
        lm = 1.0 - am
        l_ans = (ce * aw).sum() / aw.sum().clamp(min=1)
        l_lm = (ce * lm).sum() / lm.sum().clamp(min=1)
        if args.ret_weight > 0:
            negs = None
            if (args.ret_neg_batch or args.ret_neg_queue > 0) and sup_b.numel():
                negs = negative_logits(out["qr"], out["landmarks"], sup_b, sup_t, neg_queue)
            if args.ret_neg_queue > 0:  # this step's chunks join the queue for the next steps (FIFO)
                new = out["landmarks"].detach().flatten(0, 1)  # [B*C,Hm,dr]
                neg_queue = new if neg_queue is None else torch.cat([new, neg_queue])
                neg_queue = neg_queue[:args.ret_neg_queue]
            l_ret, racc = retrieval_loss(out["scores"], sup_b, sup_t, sup_tgt, negs)
        else:
            l_ret, racc = torch.zeros((), device=dev), float("nan")
        loss = l_ans + args.lm_weight * l_lm + args.ret_weight * l_ret
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        with torch.no_grad():
            hitm = (logits.argmax(-1) == tgt).float() * am
            tacc = hitm.sum() / am.sum().clamp(min=1)
            facc = (hitm * first).sum() / first.sum().clamp(min=1)
            # per sample: hits, answer positions, hits and positions where a value crosses a chunk (one copy)
            fam_hit, fam_n, x_hit, x_n = torch.stack([hitm.sum(1), am.sum(1), (hitm * cross).sum(1),
                                                      cross.sum(1)]).cpu().numpy()
        for i, fam in enumerate(fams):
            fa = acc.setdefault("fam", {}).setdefault(fam, [0.0, 0.0])
            fa[0] += float(fam_hit[i])
            fa[1] += float(fam_n[i])
        # bookkeeping (one sync per step is fine at these step sizes)
        acc["n"] += 1
        acc["ans"] += float(l_ans.detach())
        acc["lm"] += float(l_lm.detach())
        acc["ret"] += float(l_ret.detach())
        acc["tacc"] += float(tacc)
        acc["facc"] += float(facc)
        acc["xhit"] += float(x_hit.sum())
        acc["xn"] += float(x_n.sum())
        if not math.isnan(racc):
            acc["racc"] += racc
            acc["racc_n"] += 1
        acc["tok"] += B * L
        dt = time.time() - ts
        step_times.append(dt)
        step_times = step_times[-50:]
        state["train_seconds"] += dt
        state["tokens"] += B * L
        state["step"] += 1
        if state["step"] % args.log_every == 0:
            el = time.time() - acc["t0"]
            rec = dict(step=state["step"], L=L, B=B, lr=round(lr, 6), ans=round(acc["ans"] / acc["n"], 4),
                       lm=round(acc["lm"] / acc["n"], 4), ret=round(acc["ret"] / acc["n"], 4),
                       ret_top1=round(acc["racc"] / max(1, acc["racc_n"]), 4), ans_tok_acc=round(acc["tacc"] / acc["n"], 4),
                       first_acc=round(acc["facc"] / acc["n"], 4),
                       cross_acc=round(acc["xhit"] / max(1.0, acc["xn"]), 4),
                       tok_s=int(acc["tok"] / el), train_min=round(state["train_seconds"] / 60, 2))
            rec["fam_tok_acc"] = {k: round(v[0] / v[1], 3) for k, v in sorted(acc.get("fam", {}).items()) if v[1] > 0}
            state["history"].append(rec)
            log("step %(step)d L %(L)d B %(B)d lr %(lr).2e | ans %(ans).4f lm %(lm).4f ret %(ret).4f "
                "ret_top1 %(ret_top1).3f ans_tok_acc %(ans_tok_acc).3f first_acc %(first_acc).3f cross_acc %(cross_acc).3f | %(tok_s)d tok/s | %(train_min).2f train-min" % rec
                + " | " + " ".join("%s %.2f" % kv for kv in rec["fam_tok_acc"].items()), logf)
            acc = fresh_acc()
        if args.eval_every_min > 0 and time.time() - last_eval > args.eval_every_min * 60 and \
                time.time() - t_start + 2 * reserve < budget:
            te = time.time()
            r = run_eval(eval_lengths)
            reserve = max(reserve, 1.5 * (time.time() - te) + 15)
            state["evals"].append(dict(step=state["step"], res=r))
            log("eval step %d: %s (%.1fs)" % (state["step"], json.dumps(r), time.time() - te), logf)
            last_eval = time.time()
            acc["t0"] += time.time() - te

    te = time.time()
    r = run_eval(final_lengths)
    state["evals"].append(dict(step=state["step"], res=r, final=True))
    log("final eval step %d: %s (%.1fs)" % (state["step"], json.dumps(r), time.time() - te), logf)
    run_info.update(end_step=state["step"], end_tokens=state["tokens"], wall_s=round(time.time() - t_start, 1),
                    device=torch.cuda.get_device_name() if amp else "cpu")
    state["runs"].append(run_info)
    wdt = torch.bfloat16 if args.weights_bf16 else torch.float32
    save_ckpt(args.out, model, opt, state, with_optim=not args.no_optim_save, dtype=wdt)
    if args.extra_out:
        save_ckpt(args.extra_out, model, opt, state, with_optim=not args.no_optim_save, dtype=wdt)
    log("saved %s at step %d (wall %.1fs)" % (args.out, state["step"], time.time() - t_start), logf)


if __name__ == "__main__":
    D.pin_hash_seed()  # the samples depend on the hash seed (data.py)
    main()
