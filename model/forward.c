/*
 * model/forward.c — the CPU forward pass of model-spec.md in fp32 (see forward.h).
 *
 * Read top-down: helpers (norms, matmul, RoPE), the two sub-layers every layer is made of
 * (attention, SwiGLU MLP), then the four stages: lower half, chunk encoder, upper half,
 * logits. Matrix products go to OpenBLAS; everything else is plain loops over rows.
 */
#include "forward.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vec.h"

#define MAX(a, b) ((a) > (b) ? (a) : (b))

/* ---- helpers ---------------------------------------------------------------------------- */

/* out[n][d] = x[n][d] / sqrt(mean(x^2) + eps) * g; out may alias x. */
static void rmsnorm(float *out, const float *x, const float *g, int n, int d, float eps) {
    for (int t = 0; t < n; t++) {
        const float *xr = x + (size_t)t * d;
        float *o = out + (size_t)t * d;
        float inv = 1.f / sqrtf(hsadb_vdot(xr, xr, d) / (float)d + eps);
        for (int i = 0; i < d; i++) o[i] = xr[i] * inv * g[i];
    }
}

/* out[n][dout] = x[n][din] @ W[dout][din]^T */
static void matmul(float *out, const float *x, const float *W, int n, int din, int dout) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, dout, din, 1.f, x, din, W, din, 0.f,
                out, dout);
}

/* Fill r->rope rows with cos | sin of position pos0 + t (or t % period if period > 0).
 * Angles are computed in double: positions reach 16M and beyond. */
static void rope_table(hsadb_run *r, int n, int64_t pos0, int period) {
    const int half = r->m->c.head_dim / 2;
    for (int t = 0; t < n; t++) {
        double p = (double)(period ? t % period : pos0 + t);
        float *row = r->rope + (size_t)t * 2 * half;
        for (int i = 0; i < half; i++) {
            double a = p * r->inv_freq[i];
            row[i] = (float)cos(a);
            row[half + i] = (float)sin(a);
        }
    }
}

/* Per-head RMSNorm (QKNorm) then rotate-half RoPE of rows [n][nh][dh] (rope: NULL = none). */
static void qk_prep(hsadb_run *r, float *x, int n, int nh, const float *gain, int use_rope) {
    const int dh = r->m->c.head_dim, half = dh / 2;
    rmsnorm(x, x, gain, n * nh, dh, r->m->c.eps);
    if (!use_rope) return;
    for (int t = 0; t < n; t++) {
        const float *cs = r->rope + (size_t)t * dh, *sn = cs + half;
        for (int h = 0; h < nh; h++) {
            float *v = x + ((size_t)t * nh + h) * dh;
            for (int i = 0; i < half; i++) {
                float a = v[i], b = v[i + half];
                v[i] = a * cs[i] - b * sn[i];
                v[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}

/* ---- sub-layers ------------------------------------------------------------------------- */

/* x += W_o Attn(RMSNorm(x)) for a block of n rows. With a ring: causal sliding window at
 * positions s_pos.. (keys/values of the block are written into the ring first). Without:
 * bidirectional inside consecutive groups of `group` rows with local RoPE positions
 * (the chunk encoder). */
static void attention(hsadb_run *r, const hsadb_attn_w *a, float *x, int n, hsadb_kv_ring *ring,
                      int64_t pos, int group) {
    const hsadb_config *c = &r->m->c;
    const int D = c->dim, H = c->n_heads, Hk = c->n_kv_heads, dh = c->head_dim;
    const int qd = H * dh, kd = Hk * dh;
    rmsnorm(r->xb, x, a->norm, n, D, c->eps);
    matmul(r->q, r->xb, a->wq, n, D, qd);
    matmul(r->k, r->xb, a->wk, n, D, kd);
    matmul(r->v, r->xb, a->wv, n, D, kd);
    qk_prep(r, r->q, n, H, a->q_norm, 1);
    qk_prep(r, r->k, n, Hk, a->k_norm, 1);
    if (ring) {
        for (int t = 0; t < n; t++) {
            size_t row = (size_t)((pos + t) % ring->cap) * kd;
            memcpy(ring->k + row, r->k + (size_t)t * kd, (size_t)kd * sizeof(float));
            memcpy(ring->v + row, r->v + (size_t)t * kd, (size_t)kd * sizeof(float));
        }
        hsadb_attn_window(r->q, ring, pos, n, H, Hk, dh, c->window, r->att, r->scratch);
    } else {
        for (int g0 = 0; g0 < n; g0 += group)
            hsadb_attn_full(r->q + (size_t)g0 * qd, r->k + (size_t)g0 * kd, r->v + (size_t)g0 * kd,
                            group, H, Hk, dh, r->att + (size_t)g0 * qd, r->scratch);
    }
    matmul(r->xb2, r->att, a->wo, n, qd, D);
    for (size_t i = 0; i < (size_t)n * D; i++) x[i] += r->xb2[i];
}

/* x += W_down(silu(W_gate h) * W_up h) with h = RMSNorm(in); in may alias x. */
static void mlp(hsadb_run *r, const hsadb_mlp_w *w, const float *in, float *x, int n) {
    const hsadb_config *c = &r->m->c;
    const int D = c->dim, F = c->hidden;
    rmsnorm(r->xb, in, w->norm, n, D, c->eps);
    matmul(r->hb, r->xb, w->gate, n, D, F);
    matmul(r->hb2, r->xb, w->up, n, D, F);
    hsadb_silu_mul(r->hb, r->hb2, (size_t)n * F);
    matmul(r->xb2, r->hb, w->down, n, F, D);
    for (size_t i = 0; i < (size_t)n * D; i++) x[i] += r->xb2[i];
}

static void swa_layer(hsadb_run *r, const hsadb_swa_w *w, float *x, int n, hsadb_kv_ring *ring,
                      int64_t pos) {
    attention(r, &w->attn, x, n, ring, pos, 0);
    mlp(r, &w->mlp, x, x, n);
}

/* ---- state ------------------------------------------------------------------------------ */

int hsadb_run_init(hsadb_run *r, const hsadb_model *m, int max_rows) {
    const hsadb_config *c = &m->c;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->max_rows = max_rows;
    const int S = c->chunk, enc_rows = (max_rows / S + 1) * (S + 1);
    const int rows = MAX(max_rows, enc_rows), H = c->n_heads, dh = c->head_dim;
    const int kvh = MAX(c->n_kv_heads, c->n_mem_heads), K = c->topk, Hm = c->n_mem_heads;
    r->rows_cap = rows;
#define ALLOC(p, count) if (!((p) = calloc((size_t)(count), sizeof *(p)))) goto fail
    ALLOC(r->x, (size_t)rows * c->dim);
    ALLOC(r->xb, (size_t)rows * c->dim);
    ALLOC(r->xb2, (size_t)rows * c->dim);
    ALLOC(r->q, (size_t)rows * H * dh);
    ALLOC(r->k, (size_t)rows * kvh * dh);
    ALLOC(r->v, (size_t)rows * kvh * dh);
    ALLOC(r->att, (size_t)rows * H * dh);
    ALLOC(r->hb, (size_t)rows * c->hidden);
    ALLOC(r->hb2, (size_t)rows * c->hidden);
    ALLOC(r->qr, (size_t)max_rows * Hm * c->retr_dim);
    ALLOC(r->rope, (size_t)rows * dh);
    ALLOC(r->inv_freq, dh / 2);
    ALLOC(r->scratch, MAX(c->window, S + 1) + max_rows);
    ALLOC(r->tile, (size_t)max_rows * HSADB_INDEX_TILE);
    ALLOC(r->n_elig, max_rows);
    ALLOC(r->sel_idx, (size_t)Hm * max_rows * K);
    ALLOC(r->sel_s, (size_t)Hm * max_rows * K);
    ALLOC(r->kbuf, (size_t)Hm * K * S * dh);
    ALLOC(r->vbuf, (size_t)Hm * K * S * dh);
#undef ALLOC
    for (int i = 0; i < dh / 2; i++) r->inv_freq[i] = pow((double)c->rope_theta, -2.0 * i / dh);
    return 0;
fail:
    hsadb_run_free(r);
    return ENOMEM;
}

void hsadb_run_free(hsadb_run *r) {
    float *f[] = {r->x, r->xb, r->xb2, r->q, r->k, r->v, r->att, r->hb, r->hb2, r->qr, r->rope,
                  r->scratch, r->tile, r->sel_s, r->kbuf, r->vbuf};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(f[i]);
    free(r->inv_freq);
    free(r->n_elig);
    free(r->sel_idx);
    memset(r, 0, sizeof *r);
}

int hsadb_swa_state_init(hsadb_swa_state *s, const hsadb_model *m, int n_layers, int max_rows,
                         int64_t pos) {
    const hsadb_config *c = &m->c;
    const int cap = c->window + max_rows;
    const size_t per = (size_t)cap * c->n_kv_heads * c->head_dim;
    memset(s, 0, sizeof *s);
    s->pos = pos;
    s->n = n_layers;
    s->ring = calloc((size_t)n_layers + 1, sizeof *s->ring);
    s->buf = calloc(per * 2 * (size_t)n_layers + 1, sizeof(float));
    if (!s->ring || !s->buf) {
        hsadb_swa_state_free(s);
        return ENOMEM;
    }
    for (int l = 0; l < n_layers; l++) {
        s->ring[l].k = s->buf + per * 2 * l;
        s->ring[l].v = s->ring[l].k + per;
        s->ring[l].cap = cap;
        s->ring[l].start = pos;
    }
    return 0;
}

void hsadb_swa_state_free(hsadb_swa_state *s) {
    free(s->ring);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* ---- lower half ------------------------------------------------------------------------- */

void hsadb_lower_forward(hsadb_run *r, hsadb_swa_state *s, const int *tokens, int n, float *x_mid) {
    const hsadb_config *c = &r->m->c;
    const int D = c->dim;
    for (int t = 0; t < n; t++)
        memcpy(x_mid + (size_t)t * D, r->m->w.embed + (size_t)tokens[t] * D, (size_t)D * sizeof(float));
    rope_table(r, n, s->pos, 0);
    for (int l = 0; l < c->n_lower; l++) swa_layer(r, &r->m->w.lower[l], x_mid, n, &s->ring[l], s->pos);
    s->pos += n;
}

/* ---- chunk encoder ---------------------------------------------------------------------- */

void hsadb_encode_chunks(hsadb_run *r, const float *xs, int nc, float *lmk, float *kmem, float *vmem) {
    const hsadb_config *c = &r->m->c;
    const hsadb_chunk_w *cw = &r->m->w.chunk;
    const int D = c->dim, S = c->chunk, Hm = c->n_mem_heads, dh = c->head_dim, dr = c->retr_dim;
    const int rows = nc * (S + 1);
    float *E = r->x;
    /* E = concat(RMSNorm_in(x[chunk]), e_cls) per chunk */
    for (int j = 0; j < nc; j++) {
        float *e = E + (size_t)j * (S + 1) * D;
        rmsnorm(e, xs + (size_t)j * S * D, cw->in_norm, S, D, c->eps);
        memcpy(e + (size_t)S * D, cw->cls, (size_t)D * sizeof(float));
    }
    rope_table(r, rows, 0, S + 1);
    for (int l = 0; l < c->n_encoder; l++) {
        attention(r, &r->m->w.encoder[l].attn, E, rows, NULL, 0, S + 1);
        mlp(r, &r->m->w.encoder[l].mlp, E, E, rows);
    }
    rmsnorm(E, E, cw->out_norm, rows, D, c->eps);
    for (int j = 0; j < nc; j++) {
        const float *e = E + (size_t)j * (S + 1) * D;
        matmul(lmk + (size_t)j * Hm * dr, e + (size_t)S * D, cw->lmk, 1, D, Hm * dr);
        float *kj = kmem + (size_t)j * S * Hm * dh;
        matmul(kj, e, cw->mk, S, D, Hm * dh);
        rmsnorm(kj, kj, cw->k_norm, S * Hm, dh, c->eps);
        matmul(vmem + (size_t)j * S * Hm * dh, e, cw->mv, S, D, Hm * dh);
    }
}

/* ---- upper half ------------------------------------------------------------------------- */

/* The HSA sub-layer of group g for a block at positions pos..: retrieval, then the
 * attention into the chosen chunks. Writes O into r->att [n][H*dh]. */
static int hsa(hsadb_run *r, int g, const hsadb_memview *mv, int n, int64_t pos, const hsadb_trace *tr) {
    const hsadb_config *c = &r->m->c;
    const hsadb_hsa_w *w = &r->m->w.hsa[g];
    const int D = c->dim, H = c->n_heads, Hm = c->n_mem_heads, dh = c->head_dim, dr = c->retr_dim;
    const int K = c->topk, S = c->chunk, G = c->n_groups;
    /* r->xb holds h = RMSNorm(x) */
    matmul(r->qr, r->xb, w->wr, n, D, Hm * dr);
    matmul(r->q, r->xb, w->wq, n, D, H * dh);
    qk_prep(r, r->q, n, H, w->q_norm, 0);
    const int64_t have = mv->base_n + (mv->extra ? mv->extra->n : 0);
    int64_t need_extra = 0;
    for (int t = 0; t < n; t++) {
        int64_t e = (pos + t) / S;
        if (e > have || mv->base_n > mv->index->n)
            return hsadb_fail(HSADB_ERR_INVALID, "position %lld needs %lld chunks, memory has %lld",
                              (long long)(pos + t), (long long)e, (long long)have);
        r->n_elig[t] = e < mv->base_n ? e : mv->base_n;
        if (e - mv->base_n > need_extra) need_extra = e - mv->base_n;
        if (tr && tr->qr) memcpy(tr->qr + ((size_t)t * G + g) * Hm * dr, r->qr + (size_t)t * Hm * dr,
                                 (size_t)Hm * dr * sizeof(float));
    }
    for (int m = 0; m < Hm; m++)
        hsadb_index_topk(mv->index, m, r->qr + (size_t)m * dr, Hm * dr, n, r->n_elig, K,
                         r->sel_idx + (size_t)m * n * K, r->sel_s + (size_t)m * n * K, r->tile);
    if (need_extra > 0) {               /* merge in the chunks the query itself completed */
        int32_t ei[K];
        float es[K];
        for (int t = 0; t < n; t++) {
            int64_t e = (pos + t) / S - mv->base_n;
            if (e <= 0) continue;
            for (int m = 0; m < Hm; m++) {
                hsadb_index_topk(mv->extra, m, r->qr + (size_t)t * Hm * dr + (size_t)m * dr, Hm * dr, 1, &e,
                                 K, ei, es, r->tile);
                int32_t *bi = r->sel_idx + ((size_t)m * n + t) * K, mi[K];
                float *bs = r->sel_s + ((size_t)m * n + t) * K, ms[K];
                /* extra chunks are newer than every base chunk: they win ties */
                for (int a = 0, b = 0, o = 0; o < K; o++) {
                    int take_e = ei[b] >= 0 && (bi[a] < 0 || es[b] >= bs[a]);
                    if (take_e) mi[o] = ei[b] + (int32_t)mv->base_n, ms[o] = es[b++];
                    else mi[o] = bi[a], ms[o] = bs[a++];
                }
                memcpy(bi, mi, sizeof mi);
                memcpy(bs, ms, sizeof ms);
            }
        }
    }
    const float *kp[Hm * K], *vp[Hm * K];
    float wts[Hm * K];
    for (int t = 0; t < n; t++) {
        for (int m = 0; m < Hm; m++) {
            const int32_t *idx = r->sel_idx + ((size_t)m * n + t) * K;
            const float *sc = r->sel_s + ((size_t)m * n + t) * K;
            float mx = sc[0], sum = 0.f;   /* softmax over the selected scores (sorted) */
            for (int j = 0; j < K; j++) {
                float e = idx[j] >= 0 ? expf(sc[j] - mx) : 0.f;
                wts[m * K + j] = e;
                sum += e;
            }
            for (int j = 0; j < K; j++) {
                const int slot = m * K + j;
                kp[slot] = vp[slot] = NULL;
                if (idx[j] < 0) { wts[slot] = 0.f; continue; }
                wts[slot] /= sum;
                float *kb = r->kbuf + (size_t)slot * S * dh, *vb = r->vbuf + (size_t)slot * S * dh;
                int rc = mv->kv(mv->ctx, idx[j], m, kb, vb);
                if (rc) return rc;
                kp[slot] = kb, vp[slot] = vb;
            }
            if (tr && tr->idx) {
                size_t o = (((size_t)t * G + g) * Hm + m) * K;
                memcpy(tr->idx + o, idx, (size_t)K * sizeof(int32_t));
                memcpy(tr->w + o, wts + m * K, (size_t)K * sizeof(float));
            }
        }
        hsadb_attn_hsa(r->q + (size_t)t * H * dh, H, Hm, dh, S, K, kp, vp, wts,
                       r->att + (size_t)t * H * dh, r->scratch);
    }
    return 0;
}

int hsadb_upper_forward(hsadb_run *r, hsadb_swa_state *s, const hsadb_memview *mv,
                        const float *x_mid, int n, float *out, const hsadb_trace *tr) {
    const hsadb_config *c = &r->m->c;
    const int D = c->dim, R = c->swa_per_group;
    float *x = r->x;
    int u = 0, rc;
    memcpy(x, x_mid, (size_t)n * D * sizeof(float));
    rope_table(r, n, s->pos, 0);
    for (int g = 0; g < c->n_groups; g++) {
        const hsadb_hsa_w *w = &r->m->w.hsa[g];
        attention(r, &w->swa, x, n, &s->ring[u++], s->pos, 0);
        rmsnorm(r->xb, x, w->norm, n, D, c->eps);
        if ((rc = hsa(r, g, mv, n, s->pos, tr))) return rc;
        /* y = W_o O, into out (used as scratch until the end) */
        matmul(out, r->att, w->wo, n, c->n_heads * c->head_dim, D);
        if (c->bypass) {            /* x = x + MLP(RMSNorm(x + y)) */
            for (size_t i = 0; i < (size_t)n * D; i++) out[i] += x[i];
            mlp(r, &w->mlp, out, x, n);
        } else {                    /* x = x + y + MLP(RMSNorm(x + y)) */
            for (size_t i = 0; i < (size_t)n * D; i++) x[i] += out[i];
            mlp(r, &w->mlp, x, x, n);
        }
        for (int j = 0; j < R; j++) swa_layer(r, &r->m->w.upper[g * R + j], x, n, &s->ring[u++], s->pos);
    }
    memcpy(out, x, (size_t)n * D * sizeof(float));
    s->pos += n;
    return 0;
}

void hsadb_logits(hsadb_run *r, const float *h, int n, float *logits) {
    const hsadb_config *c = &r->m->c;
    for (int t0 = 0; t0 < n; t0 += r->rows_cap) {
        int nb = n - t0 < r->rows_cap ? n - t0 : r->rows_cap;
        rmsnorm(r->xb, h + (size_t)t0 * c->dim, r->m->w.final_norm, nb, c->dim, c->eps);
        matmul(logits + (size_t)t0 * c->vocab, r->xb, r->m->w.lm_head, nb, c->dim, c->vocab);
    }
}
