/*
 * model/forward.c — the CPU forward pass of model-spec.md in fp32 (see forward.h).
 *
 * Read top-down: helpers (norms, matmul, RoPE), the two sub-layers every layer is made of
 * (attention, SwiGLU MLP), then the four stages: lower half, chunk encoder, upper half,
 * logits. Matrix products go to OpenBLAS; everything else is plain loops over rows.
 *
 * Threads: every stage is one job of the run's pool (util/pool.h) in which each thread owns
 * a contiguous range of the block's rows [lo, hi) for all layers. Rows only meet in
 * attention: a thread writes its rows' keys and values, then waits at a barrier before
 * attending (a ring's past rows, or the encoder's groups, may belong to the other thread).
 */
#include "forward.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#ifdef HSADB_HAVE_CUDA
#include "engine_cuda.h"   /* the CUDA backend: every stage below starts by handing over to it */
#define ON_CUDA(r, call) do { if ((r)->cu) return call; } while (0)
#else
#define ON_CUDA(r, call) do { } while (0)
#endif
#include "vec.h"

#define MAX(a, b) ((a) > (b) ? (a) : (b))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define HSADB_MAX_THREADS 16   /* pool size limit; block_threads also keeps >= 32 rows a thread */

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
    if (n <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, dout, din, 1.f, x, din, W, din, 0.f,
                out, dout);
}

/* Rows [lo, hi) of r->rope: cos | sin of position pos0 + t (or t % period if period > 0).
 * Angles are computed in double: positions reach 16M and beyond. */
static void rope_rows(hsadb_run *r, int lo, int hi, int64_t pos0, int period) {
    const int half = r->m->c.head_dim / 2;
    for (int t = lo; t < hi; t++) {
        double p = (double)(period ? t % period : pos0 + t);
        float *row = r->rope + (size_t)t * 2 * half;
        for (int i = 0; i < half; i++) {
            double a = p * r->inv_freq[i];
            row[i] = (float)cos(a);
            row[half + i] = (float)sin(a);
        }
    }
}

/* Rows [lo, hi) of x [rows][nh][dh]: per-head RMSNorm (QKNorm), then (use_rope) rotate-half
 * RoPE with the same rows of r->rope. */
static void qk_prep(hsadb_run *r, float *x, int lo, int hi, int nh, const float *gain, int use_rope) {
    const int dh = r->m->c.head_dim, half = dh / 2;
    rmsnorm(x + (size_t)lo * nh * dh, x + (size_t)lo * nh * dh, gain, (hi - lo) * nh, dh, r->m->c.eps);
    if (!use_rope) return;
    for (int t = lo; t < hi; t++) {
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

/* ---- threads ---------------------------------------------------------------------------- */

/* Threads for a block of n rows: the pool's, capped by hsadb_threads_set, and fewer when a
 * thread would get less than a tile of rows (generation's single rows run inline). Also puts
 * OpenBLAS back in single-threaded mode if someone (hsadb_db_apply_threads) changed it. */
static int block_threads(const hsadb_run *r, int n) {
    int nt = hsadb_pool_size(r->pool), lim = hsadb_threads_get(), min_rows = MAX(r->align, 32);
    if (lim > 0 && lim < nt) nt = lim;
    if (nt > n / min_rows) nt = n / min_rows;
    hsadb_blas_single();
    return nt < 1 ? 1 : nt;
}

static float *thread_scratch(const hsadb_run *r, int i) { return r->scratch + (size_t)i * r->scratch_n; }

/* ---- sub-layers, on the rows [lo, hi) of one thread ------------------------------------ */

/* Attention, first half: xb = RMSNorm(x); q, k, v projections; QKNorm and RoPE. With a ring,
 * the rows' keys and values are written into it (at positions pos + t). */
static void attn_qkv(hsadb_run *r, const hsadb_attn_w *a, const float *x, int lo, int hi,
                     hsadb_kv_ring *ring, int64_t pos) {
    const hsadb_config *c = &r->m->c;
    const int D = c->dim, H = c->n_heads, Hk = c->n_kv_heads, dh = c->head_dim, n = hi - lo;
    const int qd = H * dh, kd = Hk * dh;
    float *xb = r->xb + (size_t)lo * D;
    rmsnorm(xb, x + (size_t)lo * D, a->norm, n, D, c->eps);
    matmul(r->q + (size_t)lo * qd, xb, a->wq, n, D, qd);
    matmul(r->k + (size_t)lo * kd, xb, a->wk, n, D, kd);
    matmul(r->v + (size_t)lo * kd, xb, a->wv, n, D, kd);
    qk_prep(r, r->q, lo, hi, H, a->q_norm, 1);
    qk_prep(r, r->k, lo, hi, Hk, a->k_norm, 1);
    if (!ring) return;
    for (int t = lo; t < hi; t++) {
        size_t row = (size_t)((pos + t) % ring->cap) * kd;
        memcpy(ring->k + row, r->k + (size_t)t * kd, (size_t)kd * sizeof(float));
        memcpy(ring->v + row, r->v + (size_t)t * kd, (size_t)kd * sizeof(float));
    }
}

/* Attention, second half, once every row's keys and values are in place (after a barrier):
 * x += W_o Attn. With a ring: causal sliding window at positions pos + t. Without:
 * bidirectional inside consecutive groups of `group` rows (the chunk encoder), whose keys and
 * values are r->k, r->v. */
static void attn_out(hsadb_run *r, const hsadb_attn_w *a, float *x, int lo, int hi,
                     const hsadb_kv_ring *ring, int64_t pos, int group, float *scratch) {
    const hsadb_config *c = &r->m->c;
    const int D = c->dim, H = c->n_heads, Hk = c->n_kv_heads, dh = c->head_dim, n = hi - lo;
    const int qd = H * dh, kd = Hk * dh;
    if (n <= 0) return;
    if (ring) {
        hsadb_attn_window(r->q + (size_t)lo * qd, ring, pos + lo, n, H, Hk, dh, c->window,
                          r->att + (size_t)lo * qd, scratch);
    } else {
        for (int g0 = lo / group * group; g0 < hi; g0 += group) {
            int q0 = MAX(lo, g0), q1 = MIN(hi, g0 + group);
            hsadb_attn_full(r->q + (size_t)q0 * qd, q1 - q0, r->k + (size_t)g0 * kd, r->v + (size_t)g0 * kd,
                            group, H, Hk, dh, r->att + (size_t)q0 * qd, scratch);
        }
    }
    float *y = r->xb2 + (size_t)lo * D, *xr = x + (size_t)lo * D;
    matmul(y, r->att + (size_t)lo * qd, a->wo, n, qd, D);
    for (size_t i = 0; i < (size_t)n * D; i++) xr[i] += y[i];
}

/* x += W_down(silu(W_gate h) * W_up h) with h = RMSNorm(in); in may alias x. */
static void mlp(hsadb_run *r, const hsadb_mlp_w *w, const float *in, float *x, int lo, int hi) {
    const hsadb_config *c = &r->m->c;
    const int D = c->dim, F = c->hidden, n = hi - lo;
    float *xb = r->xb + (size_t)lo * D, *hb = r->hb + (size_t)lo * F, *hb2 = r->hb2 + (size_t)lo * F;
    float *y = r->xb2 + (size_t)lo * D, *xr = x + (size_t)lo * D;
    rmsnorm(xb, in + (size_t)lo * D, w->norm, n, D, c->eps);
    matmul(hb, xb, w->gate, n, D, F);
    matmul(hb2, xb, w->up, n, D, F);
    hsadb_silu_mul(hb, hb2, (size_t)n * F);
    matmul(y, hb, w->down, n, F, D);
    for (size_t i = 0; i < (size_t)n * D; i++) xr[i] += y[i];
}

/* One SWA layer on rows [lo, hi); every thread of the job calls it (it holds a barrier). */
static void swa_layer(hsadb_run *r, const hsadb_swa_w *w, float *x, int lo, int hi, hsadb_kv_ring *ring,
                      int64_t pos, float *scratch) {
    attn_qkv(r, &w->attn, x, lo, hi, ring, pos);
    hsadb_pool_barrier(r->pool);    /* the ring holds every row's keys and values */
    attn_out(r, &w->attn, x, lo, hi, ring, pos, 0, scratch);
    mlp(r, &w->mlp, x, x, lo, hi);
}

/* ---- state ------------------------------------------------------------------------------ */

int hsadb_run_init(hsadb_run *r, const hsadb_model *m, int max_rows) {
    const hsadb_config *c = &m->c;
    int rc = ENOMEM;
    memset(r, 0, sizeof *r);
    r->m = m;
    r->max_rows = max_rows;
    const int S = c->chunk, enc_rows = (max_rows / S + 1) * (S + 1);
    const int rows = MAX(max_rows, enc_rows), H = c->n_heads, dh = c->head_dim;
    const int kvh = MAX(c->n_kv_heads, c->n_mem_heads), K = c->topk, Hm = c->n_mem_heads;
    int nt = hsadb_cpu_count();
    if (nt > HSADB_MAX_THREADS) nt = HSADB_MAX_THREADS;
    r->rows_cap = rows;
    r->scratch_n = MAX(c->window, S + 1) + max_rows + dh;
    r->align = hsadb_gemm_row_align();
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
    ALLOC(r->scratch, (size_t)r->scratch_n * nt);
    ALLOC(r->tile, (size_t)max_rows * HSADB_INDEX_TILE);
    ALLOC(r->n_elig, max_rows);
    ALLOC(r->sel_idx, (size_t)Hm * max_rows * K);
    ALLOC(r->sel_s, (size_t)Hm * max_rows * K);
    ALLOC(r->kbuf, (size_t)Hm * K * S * dh);
    ALLOC(r->vbuf, (size_t)Hm * K * S * dh);
    ALLOC(r->hsa_kp, (size_t)Hm * K);
    ALLOC(r->hsa_vp, (size_t)Hm * K);
    ALLOC(r->hsa_w, (size_t)Hm * K);
    ALLOC(r->merge_idx, (size_t)nt * 2 * K);
    ALLOC(r->merge_s, (size_t)nt * 2 * K);
#undef ALLOC
    for (int i = 0; i < dh / 2; i++) r->inv_freq[i] = pow((double)c->rope_theta, -2.0 * i / dh);
    hsadb_blas_single();
    if ((rc = hsadb_pool_create(nt, &r->pool))) goto fail;
    return 0;
fail:
    hsadb_run_free(r);
    return rc;
}

void hsadb_run_free(hsadb_run *r) {
    free(r->enc_lmk), free(r->enc_k), free(r->enc_v);   /* hsadb_encode_records (model/backend.c) */
#ifdef HSADB_HAVE_CUDA
    hsadb_cuda_run_free(r->cu);
#endif
    float *f[] = {r->x, r->xb, r->xb2, r->q, r->k, r->v, r->att, r->hb, r->hb2, r->qr, r->rope,
                  r->scratch, r->tile, r->sel_s, r->kbuf, r->vbuf};
    hsadb_pool_free(r->pool);
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) free(f[i]);
    free(r->inv_freq);
    free(r->n_elig);
    free(r->sel_idx);
    free(r->hsa_kp), free(r->hsa_vp), free(r->hsa_w), free(r->merge_idx), free(r->merge_s);
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
#ifdef HSADB_HAVE_CUDA
    hsadb_cuda_swa_free(s->dev);
#endif
    free(s->ring);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

/* ---- lower half ------------------------------------------------------------------------- */

typedef struct lower_job {
    hsadb_run       *r;
    hsadb_swa_state *s;
    const int       *tokens;
    int              n;
    float           *x;
} lower_job;

static void lower_rows(void *arg, int i, int nt) {
    const lower_job *j = arg;
    hsadb_run *r = j->r;
    const hsadb_config *c = &r->m->c;
    const int D = c->dim;
    int lo, hi;
    hsadb_split(j->n, i, nt, r->align, &lo, &hi);
    for (int t = lo; t < hi; t++)
        memcpy(j->x + (size_t)t * D, r->m->w.embed + (size_t)j->tokens[t] * D, (size_t)D * sizeof(float));
    rope_rows(r, lo, hi, j->s->pos, 0);
    for (int l = 0; l < c->n_lower; l++)
        swa_layer(r, &r->m->w.lower[l], j->x, lo, hi, &j->s->ring[l], j->s->pos, thread_scratch(r, i));
}

int hsadb_lower_forward(hsadb_run *r, hsadb_swa_state *s, const int *tokens, int n, float *x_mid) {
    ON_CUDA(r, hsadb_cuda_lower_forward(r->cu, s, tokens, n, x_mid));
    lower_job j = {r, s, tokens, n, x_mid};
    hsadb_pool_run(r->pool, block_threads(r, n), lower_rows, &j);
    s->pos += n;
    return 0;
}

/* ---- chunk encoder ---------------------------------------------------------------------- */

typedef struct encode_job {
    hsadb_run   *r;
    const float *xs;
    int          nc;
    float       *lmk, *kmem, *vmem;
} encode_job;

/* Rows of E = concat(RMSNorm_in(x[chunk]), e_cls) per chunk (groups of S+1 rows) through
 * the encoder layers by row ranges; then the projections, by chunks. */
static void encode_rows(void *arg, int i, int nt) {
    const encode_job *j = arg;
    hsadb_run *r = j->r;
    const hsadb_config *c = &r->m->c;
    const hsadb_chunk_w *cw = &r->m->w.chunk;
    const int D = c->dim, S = c->chunk, Hm = c->n_mem_heads, dh = c->head_dim, dr = c->retr_dim;
    const int G = S + 1;
    float *E = r->x, *scratch = thread_scratch(r, i);
    int lo, hi;
    hsadb_split(j->nc * G, i, nt, r->align, &lo, &hi);
    for (int t = lo; t < hi; t++) {
        if (t % G < S) rmsnorm(E + (size_t)t * D, j->xs + ((size_t)(t / G) * S + t % G) * D, cw->in_norm, 1, D, c->eps);
        else memcpy(E + (size_t)t * D, cw->cls, (size_t)D * sizeof(float));
    }
    rope_rows(r, lo, hi, 0, G);
    for (int l = 0; l < c->n_encoder; l++) {
        const hsadb_attn_w *a = &r->m->w.encoder[l].attn;
        if (l) hsadb_pool_barrier(r->pool);   /* every thread is done reading r->k, r->v */
        attn_qkv(r, a, E, lo, hi, NULL, 0);
        hsadb_pool_barrier(r->pool);          /* every group's keys and values are in place */
        attn_out(r, a, E, lo, hi, NULL, 0, G, scratch);
        mlp(r, &r->m->w.encoder[l].mlp, E, E, lo, hi);
    }
    rmsnorm(E + (size_t)lo * D, E + (size_t)lo * D, cw->out_norm, hi - lo, D, c->eps);
    hsadb_pool_barrier(r->pool);              /* every row of E is final */
    int c0, c1;
    hsadb_split(j->nc, i, nt, 1, &c0, &c1);
    for (int ch = c0; ch < c1; ch++) {
        const float *e = E + (size_t)ch * G * D;
        matmul(j->lmk + (size_t)ch * Hm * dr, e + (size_t)S * D, cw->lmk, 1, D, Hm * dr);
        float *kj = j->kmem + (size_t)ch * S * Hm * dh;
        matmul(kj, e, cw->mk, S, D, Hm * dh);
        rmsnorm(kj, kj, cw->k_norm, S * Hm, dh, c->eps);
        matmul(j->vmem + (size_t)ch * S * Hm * dh, e, cw->mv, S, D, Hm * dh);
    }
}

int hsadb_encode_chunks(hsadb_run *r, const float *xs, int nc, float *lmk, float *kmem, float *vmem) {
    ON_CUDA(r, hsadb_cuda_encode(r->cu, xs, nc, 0, NULL, NULL, lmk, kmem, vmem));
    encode_job j = {r, xs, nc, lmk, kmem, vmem};
    hsadb_pool_run(r->pool, block_threads(r, nc * (r->m->c.chunk + 1)), encode_rows, &j);
    return 0;
}

/* ---- upper half ------------------------------------------------------------------------- */

/* One job of the upper half, on every thread's rows: finish group g-1 (if g > 0), then run
 * group g (if g < Ng) up to its HSA retrieval; the HSA attention itself (hsa_attend) runs on
 * the calling thread between two jobs, because it fetches chunks through mv->kv. */
typedef struct upper_job {
    hsadb_run           *r;
    hsadb_swa_state     *s;
    const hsadb_memview *mv;
    const float         *x_mid;
    float               *out;
    const hsadb_trace   *tr;
    int                  n, g;
    int64_t              need_extra;   /* rows that also search mv->extra */
} upper_job;

/* Group g, rows [lo, hi): the SWA sub-layer, h = RMSNorm(x) into r->xb, the retrieval queries
 * r->qr and HSA queries r->q, then the top-K chunks per memory head (r->sel_idx, r->sel_s). */
static void group_retrieve(const upper_job *j, int g, int lo, int hi, float *scratch, int thread) {
    hsadb_run *r = j->r;
    const hsadb_config *c = &r->m->c;
    const hsadb_hsa_w *w = &r->m->w.hsa[g];
    const hsadb_memview *mv = j->mv;
    const int D = c->dim, H = c->n_heads, Hm = c->n_mem_heads, dh = c->head_dim, dr = c->retr_dim;
    const int K = c->topk, S = c->chunk, G = c->n_groups, n = j->n, nr = hi - lo;
    const int64_t pos = j->s->pos;
    hsadb_kv_ring *ring = &j->s->ring[g * (1 + c->swa_per_group)];
    attn_qkv(r, &w->swa, r->x, lo, hi, ring, pos);
    hsadb_pool_barrier(r->pool);    /* the ring holds every row's keys and values */
    attn_out(r, &w->swa, r->x, lo, hi, ring, pos, 0, scratch);
    if (nr <= 0) return;
    rmsnorm(r->xb + (size_t)lo * D, r->x + (size_t)lo * D, w->norm, nr, D, c->eps);
    matmul(r->qr + (size_t)lo * Hm * dr, r->xb + (size_t)lo * D, w->wr, nr, D, Hm * dr);
    matmul(r->q + (size_t)lo * H * dh, r->xb + (size_t)lo * D, w->wq, nr, D, H * dh);
    qk_prep(r, r->q, lo, hi, H, w->q_norm, 0);
    if (j->tr && j->tr->qr)
        for (int t = lo; t < hi; t++)
            memcpy(j->tr->qr + ((size_t)t * G + g) * Hm * dr, r->qr + (size_t)t * Hm * dr, (size_t)Hm * dr * sizeof(float));
    for (int m = 0; m < Hm; m++)
        hsadb_index_topk(mv->index, m, r->qr + (size_t)lo * Hm * dr + (size_t)m * dr, Hm * dr, nr, r->n_elig + lo, K,
                         r->sel_idx + ((size_t)m * n + lo) * K, r->sel_s + ((size_t)m * n + lo) * K,
                         r->tile + (size_t)lo * HSADB_INDEX_TILE);
    if (j->need_extra <= 0) return;
    for (int t = lo; t < hi; t++) {     /* merge in the chunks the query itself completed */
        int64_t e = (pos + t) / S - mv->base_n;
        if (e <= 0) continue;
        for (int m = 0; m < Hm; m++) {
            int32_t *ei = r->merge_idx + (size_t)thread * 2 * K, *mi = ei + K;  /* run_init's */
            float *es = r->merge_s + (size_t)thread * 2 * K, *ms = es + K;
            hsadb_index_topk(mv->extra, m, r->qr + (size_t)t * Hm * dr + (size_t)m * dr, Hm * dr, 1, &e, K, ei, es,
                             r->tile + (size_t)t * HSADB_INDEX_TILE);
            int32_t *bi = r->sel_idx + ((size_t)m * n + t) * K;
            float *bs = r->sel_s + ((size_t)m * n + t) * K;
            /* extra chunks are newer than every base chunk: they win ties */
            for (int a = 0, b = 0, o = 0; o < K; o++) {
                int take_e = ei[b] >= 0 && (bi[a] < 0 || es[b] >= bs[a]);
                if (take_e) mi[o] = ei[b] + (int32_t)mv->base_n, ms[o] = es[b++];
                else mi[o] = bi[a], ms[o] = bs[a++];
            }
            memcpy(bi, mi, (size_t)K * sizeof *mi);
            memcpy(bs, ms, (size_t)K * sizeof *ms);
        }
    }
}

/* Group g, rows [lo, hi), after the HSA attention wrote O into r->att: y = W_o O, the MLP
 * (with or without the bypass), then the group's SWA layers. j->out is scratch for y. */
static void group_finish(const upper_job *j, int g, int lo, int hi, float *scratch) {
    hsadb_run *r = j->r;
    const hsadb_config *c = &r->m->c;
    const hsadb_hsa_w *w = &r->m->w.hsa[g];
    const int D = c->dim, R = c->swa_per_group, nr = hi - lo;
    float *x = r->x, *out = j->out;
    matmul(out + (size_t)lo * D, r->att + (size_t)lo * c->n_heads * c->head_dim, w->wo, nr,
           c->n_heads * c->head_dim, D);
    if (c->bypass) {            /* x = x + MLP(RMSNorm(x + y)) */
        for (size_t i = (size_t)lo * D; i < (size_t)hi * D; i++) out[i] += x[i];
        mlp(r, &w->mlp, out, x, lo, hi);
    } else {                    /* x = x + y + MLP(RMSNorm(x + y)) */
        for (size_t i = (size_t)lo * D; i < (size_t)hi * D; i++) x[i] += out[i];
        mlp(r, &w->mlp, x, x, lo, hi);
    }
    for (int l = 0; l < R; l++)
        swa_layer(r, &r->m->w.upper[g * R + l], x, lo, hi, &j->s->ring[g * (1 + R) + 1 + l], j->s->pos, scratch);
}

static void upper_rows(void *arg, int i, int nt) {
    const upper_job *j = arg;
    hsadb_run *r = j->r;
    const int D = r->m->c.dim, G = r->m->c.n_groups;
    float *scratch = thread_scratch(r, i);
    int lo, hi;
    hsadb_split(j->n, i, nt, r->align, &lo, &hi);
    if (j->g == 0) {
        memcpy(r->x + (size_t)lo * D, j->x_mid + (size_t)lo * D, (size_t)(hi - lo) * D * sizeof(float));
        rope_rows(r, lo, hi, j->s->pos, 0);
    }
    if (j->g > 0) group_finish(j, j->g - 1, lo, hi, scratch);
    if (j->g < G) group_retrieve(j, j->g, lo, hi, scratch, i);
    else memcpy(j->out + (size_t)lo * D, r->x + (size_t)lo * D, (size_t)(hi - lo) * D * sizeof(float));
}

/* The HSA attention of group g for all n rows, on the calling thread: retrieval weights
 * (softmax of the selected scores), the chosen chunks' K/V through mv->kv, O into r->att. */
static int hsa_attend(hsadb_run *r, int g, const hsadb_memview *mv, int n, const hsadb_trace *tr) {
    const hsadb_config *c = &r->m->c;
    const int H = c->n_heads, Hm = c->n_mem_heads, dh = c->head_dim;
    const int K = c->topk, S = c->chunk, G = c->n_groups;
    const float **kp = r->hsa_kp, **vp = r->hsa_vp;   /* [Hm*K] each, allocated by run_init */
    float *wts = r->hsa_w;
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
    ON_CUDA(r, hsadb_cuda_upper_forward(r->cu, s, mv, x_mid, n, out, tr));
    const hsadb_config *c = &r->m->c;
    const int S = c->chunk;
    int rc;
    /* Which chunks each row may retrieve (the same for every group). */
    const int64_t have = mv->base_n + (mv->extra ? mv->extra->n : 0);
    int64_t need_extra = 0;
    for (int t = 0; t < n; t++) {
        int64_t e = (s->pos + t) / S;
        if (e > have || mv->base_n > mv->index->n)
            return hsadb_fail(HSADB_ERR_INVALID, "position %lld needs %lld chunks, memory has %lld",
                              (long long)(s->pos + t), (long long)e, (long long)have);
        r->n_elig[t] = e < mv->base_n ? e : mv->base_n;
        if (e - mv->base_n > need_extra) need_extra = e - mv->base_n;
    }
    upper_job j = {r, s, mv, x_mid, out, tr, n, 0, need_extra};
    const int nt = block_threads(r, n);
    for (j.g = 0; j.g <= c->n_groups; j.g++) {
        hsadb_pool_run(r->pool, nt, upper_rows, &j);
        if (j.g < c->n_groups && (rc = hsa_attend(r, j.g, mv, n, tr))) return rc;
    }
    s->pos += n;
    return 0;
}

/* ---- logits ----------------------------------------------------------------------------- */

typedef struct logits_job {
    hsadb_run   *r;
    const float *h;
    int          n;
    float       *logits;
} logits_job;

static void logits_rows(void *arg, int i, int nt) {
    const logits_job *j = arg;
    const hsadb_config *c = &j->r->m->c;
    int lo, hi;
    hsadb_split(j->n, i, nt, j->r->align, &lo, &hi);
    rmsnorm(j->r->xb + (size_t)lo * c->dim, j->h + (size_t)lo * c->dim, j->r->m->w.final_norm, hi - lo, c->dim, c->eps);
    matmul(j->logits + (size_t)lo * c->vocab, j->r->xb + (size_t)lo * c->dim, j->r->m->w.lm_head, hi - lo, c->dim,
           c->vocab);
}

int hsadb_logits(hsadb_run *r, const float *h, int n, float *logits) {
    ON_CUDA(r, hsadb_cuda_logits(r->cu, h, n, logits));
    const hsadb_config *c = &r->m->c;
    for (int t0 = 0; t0 < n; t0 += r->rows_cap) {
        logits_job j = {r, h + (size_t)t0 * c->dim, n - t0 < r->rows_cap ? n - t0 : r->rows_cap,
                        logits + (size_t)t0 * c->vocab};
        hsadb_pool_run(r->pool, block_threads(r, j.n), logits_rows, &j);
    }
    return 0;
}
