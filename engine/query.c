/*
 * engine/query.c — hsadb_query and hsadb_search.
 *
 * A query session reads one consistent view of a memory (one LMDB read transaction):
 *   1. the tail's lower K/V restore the lower half at the end of the stream;
 *   2. the upper half re-runs over the tail's context rows (x_mid of the last positions),
 *      so its sliding windows are exactly what a full forward would have;
 *   3. `<query> question <answer>` runs through the whole network; tokens that complete a
 *      chunk add it to a per-query extra index (never stored);
 *   4. answer tokens are generated one at a time until <eos> or the limit, and the chunks
 *      each HSA layer chose while producing them are the evidence.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

typedef struct qsession {
    hsadb_db               *db;
    const hsadb_model      *m;
    const char             *name;
    hsadb_store_reader     *r;
    int                     r_borrowed; /* r belongs to the caller (passage search) */
    struct hsadb_memory_rec rec;
    hsadb_lmk_cache        *cache;     /* read-locked while the session lives */
    hsadb_run               run;
    hsadb_swa_state         lower, upper;
    hsadb_tail              tail;      /* running context (a private copy, never stored) */
    hsadb_index             extra;     /* chunks completed by the query's own tokens */
    float                  *extra_k, *extra_v; /* [cap][S][Hm*dh] */
    int                    *extra_tok;          /* [cap][S] */
    int64_t                 extra_cap;
    int                    *tok_hist;  /* tokens of the running partial chunk: [S] */
    int                    *toks;      /* one completed chunk's tokens: [S] (feed) */
    float                  *xmid, *hid;          /* [BLOCK][D] */
    float                  *chunk_x, *lmk, *kmem, *vmem;
    float                  *logits;    /* [V] */
    hsadb_trace             tr;        /* [BLOCK][Ng][Hm][K], qr [BLOCK][Ng][Hm*dr] */
    int                     last_row;  /* rows of the last feed block */
    float                  *kv32;      /* fp32 (test) memories: records for kv_records [kv32_n] */
    size_t                  kv32_n;
} qsession;

/* ---- K/V access ------------------------------------------------------------------------- */

static int kv_fetch(void *ctx, int64_t chunk, int m, float *k, float *v) {
    qsession *q = ctx;
    const hsadb_config *c = &q->m->c;
    const int S = c->chunk, Hm = c->n_mem_heads, dh = c->head_dim;
    if (chunk >= (int64_t)q->rec.n_chunks) {         /* completed by this query */
        const float *ks = q->extra_k + (size_t)(chunk - (int64_t)q->rec.n_chunks) * S * Hm * dh;
        const float *vs = q->extra_v + (size_t)(chunk - (int64_t)q->rec.n_chunks) * S * Hm * dh;
        for (int s = 0; s < S; s++) {
            memcpy(k + (size_t)s * dh, ks + ((size_t)s * Hm + m) * dh, (size_t)dh * 4);
            memcpy(v + (size_t)s * dh, vs + ((size_t)s * Hm + m) * dh, (size_t)dh * 4);
        }
        return 0;
    }
    const void *blk;
    size_t len;
    int rc = hsadb_store_reader_kv(q->r, (uint64_t)chunk, &blk, &len);
    if (rc) return rc;
    const size_t half = (size_t)S * Hm * dh;
    if (q->rec.kv_dtype == HSADB_KV_F32) {
        const float *ks = blk, *vs = ks + half;
        for (int s = 0; s < S; s++) {
            memcpy(k + (size_t)s * dh, ks + ((size_t)s * Hm + m) * dh, (size_t)dh * 4);
            memcpy(v + (size_t)s * dh, vs + ((size_t)s * Hm + m) * dh, (size_t)dh * 4);
        }
    } else {
        const uint8_t *b = blk;   /* bf16, copied bytewise: values need no alignment */
        for (int s = 0; s < S; s++)
            for (int i = 0; i < dh; i++) {
                size_t o = ((size_t)s * Hm + m) * dh + i;
                uint16_t kh, vh;
                memcpy(&kh, b + 2 * o, 2);
                memcpy(&vh, b + 2 * (half + o), 2);
                k[(size_t)s * dh + i] = hsadb_bf16_to_f32(kh);
                v[(size_t)s * dh + i] = hsadb_bf16_to_f32(vh);
            }
    }
    return 0;
}

/* The GPU block cache's misses: stored K/V records of chunks[0..n-1], as bf16. */
static int kv_records(void *ctx, const uint64_t *chunks, int n, uint16_t *dst) {
    qsession *q = ctx;
    if (q->rec.kv_dtype != HSADB_KV_F32) return hsadb_store_reader_kv_list(q->r, chunks, (uint64_t)n, dst);
    const hsadb_config *c = &q->m->c;
    const size_t per = (size_t)2 * c->chunk * c->n_mem_heads * c->head_dim, want = (size_t)n * per;
    if (q->kv32_n < want) {
        float *p = realloc(q->kv32, want * 4);
        if (!p) return ENOMEM;
        q->kv32 = p, q->kv32_n = want;
    }
    int rc = hsadb_store_reader_kv_list(q->r, chunks, (uint64_t)n, q->kv32);
    for (size_t i = 0; !rc && i < want; i++) dst[i] = hsadb_f32_to_bf16(q->kv32[i]);
    return rc;
}

/* ---- session ---------------------------------------------------------------------------- */

static void session_close(qsession *q) {
    if (q->cache) pthread_rwlock_unlock(&q->cache->lock);
    if (q->r && !q->r_borrowed) hsadb_store_reader_end(q->r);
    hsadb_run_free(&q->run);
    hsadb_swa_state_free(&q->lower);
    hsadb_swa_state_free(&q->upper);
    hsadb_tail_free(&q->tail);
    hsadb_index_free(&q->extra);
    free(q->extra_k), free(q->extra_v), free(q->extra_tok), free(q->tok_hist), free(q->toks);
    free(q->xmid), free(q->hid), free(q->chunk_x), free(q->lmk), free(q->kmem), free(q->vmem);
    free(q->logits), free(q->tr.idx), free(q->tr.w), free(q->tr.qr), free(q->kv32);
    memset(q, 0, sizeof *q);
}

/* Opens a session on its own reader, or on reader r (borrowed, with its record) when given. */
static int session_open_r(qsession *q, hsadb_db *db, const char *name, hsadb_store_reader *r,
                          const struct hsadb_memory_rec *rrec) {
    memset(q, 0, sizeof *q);
    if (!db->model) return hsadb_fail(HSADB_ERR_NO_MODEL, "query needs a model");
    const hsadb_model *m = db->model;
    const hsadb_config *c = &m->c;
    const int B = HSADB_BLOCK, D = c->dim, S = c->chunk, nc = B / S + 1, Hm = c->n_mem_heads;
    const size_t selw = (size_t)B * c->n_groups * Hm * c->topk;
    int rc;
    q->db = db, q->m = m, q->name = name;
    if (r) q->r = r, q->r_borrowed = 1, q->rec = *rrec;
    else if ((rc = hsadb_store_reader_begin(db->store, name, &q->r, &q->rec))) goto fail;
    if ((rc = hsadb_db_check_memory(db, name, &q->rec))) goto fail;
    if ((rc = hsadb_run_init_dev(&q->run, m, B, db->device, &db->opts))) goto fail;
    rc = ENOMEM;
    if (hsadb_swa_state_init(&q->lower, m, c->n_lower, B, 0) ||
        hsadb_tail_init(&q->tail, m) || hsadb_index_init(&q->extra, Hm, c->retr_dim))
        goto fail;
    if (!(q->xmid = malloc((size_t)B * D * 4)) || !(q->hid = malloc((size_t)B * D * 4)) ||
        !(q->chunk_x = malloc((size_t)nc * S * D * 4)) || !(q->lmk = malloc((size_t)nc * Hm * c->retr_dim * 4)) ||
        !(q->kmem = malloc((size_t)nc * S * Hm * c->head_dim * 4)) ||
        !(q->vmem = malloc((size_t)nc * S * Hm * c->head_dim * 4)) || !(q->logits = malloc((size_t)c->vocab * 4)) ||
        !(q->tr.idx = malloc(selw * 4)) || !(q->tr.w = malloc(selw * 4)) ||
        !(q->tr.qr = malloc((size_t)B * c->n_groups * Hm * c->retr_dim * 4)) ||
        !(q->tok_hist = calloc((size_t)S, sizeof(int))) || !(q->toks = calloc((size_t)S, sizeof(int))))
        goto fail;
    const void *blob;
    size_t len;
    if ((rc = hsadb_store_reader_tail(q->r, &blob, &len))) goto fail;
    if (len && (rc = hsadb_tail_decode(&q->tail, m, blob, len))) goto fail;
    if ((uint64_t)q->tail.pos != q->rec.n_bytes) {
        rc = hsadb_fail(HSADB_ERR_CORRUPT, "memory %s: tail at byte %lld, record says %llu", name,
                        (long long)q->tail.pos, (unsigned long long)q->rec.n_bytes);
        goto fail;
    }
    for (int i = 0; i < (int)(q->tail.pos % S); i++)
        q->tok_hist[i] = q->tail.bytes[q->tail.n_ctx - (int)(q->tail.pos % S) + i];
    hsadb_tail_to_lower(&q->tail, m, &q->lower);
    if ((rc = hsadb_db_landmarks(db, q->r, &q->rec, &q->cache))) goto fail;
    hsadb_db_apply_threads(db);
    /* Re-run the upper half over the context rows. */
    const int64_t p0 = q->tail.pos - q->tail.n_ctx;
    if ((rc = hsadb_swa_state_init(&q->upper, m, hsadb_config_upper_attn_layers(c), B, p0))) goto fail;
    hsadb_memview mv = {&q->cache->index, (int64_t)q->rec.n_chunks, NULL, kv_fetch, q, q->cache->tier, kv_records};
    for (int i = 0; i < q->tail.n_ctx; i += B) {
        int n = q->tail.n_ctx - i < B ? q->tail.n_ctx - i : B;
        if ((rc = hsadb_upper_forward(&q->run, &q->upper, &mv, q->tail.x_mid + (size_t)i * D, n, q->hid, NULL)))
            goto fail;
        q->last_row = n - 1;
    }
    return 0;
fail:
    session_close(q);
    return rc;
}

static int session_open(qsession *q, hsadb_db *db, const char *name) {
    return session_open_r(q, db, name, NULL, NULL);
}

/* Add an encoded chunk to the extra index. */
static int extra_push(qsession *q, const float *lmk, const float *k, const float *v, const int *toks) {
    const hsadb_config *c = &q->m->c;
    const size_t kv_n = (size_t)c->chunk * c->n_mem_heads * c->head_dim;
    if (q->extra.n == q->extra_cap) {
        int64_t cap = q->extra_cap ? 2 * q->extra_cap : 8;
        float *nk = realloc(q->extra_k, (size_t)cap * kv_n * 4);
        if (nk) q->extra_k = nk;
        float *nv = realloc(q->extra_v, (size_t)cap * kv_n * 4);
        if (nv) q->extra_v = nv;
        int *nt = realloc(q->extra_tok, (size_t)cap * c->chunk * sizeof(int));
        if (nt) q->extra_tok = nt;
        if (!nk || !nv || !nt) return ENOMEM;
        q->extra_cap = cap;
    }
    memcpy(q->extra_k + (size_t)q->extra.n * kv_n, k, kv_n * 4);
    memcpy(q->extra_v + (size_t)q->extra.n * kv_n, v, kv_n * 4);
    memcpy(q->extra_tok + (size_t)q->extra.n * c->chunk, toks, (size_t)c->chunk * sizeof(int));
    return hsadb_index_push(&q->extra, lmk, 1);
}

/* Run tokens[n] through the whole network (n <= BLOCK). The last row's final hidden state
 * is q->hid[q->last_row]; q->tr holds the rows' selections. */
static int feed(qsession *q, const int *tokens, int n) {
    const hsadb_config *c = &q->m->c;
    const int S = c->chunk;
    const int64_t p0 = q->tail.pos;
    int nc = 0, rc;
    if ((rc = hsadb_lower_forward(&q->run, &q->lower, tokens, n, q->xmid))) return rc;
    const int part = (int)(p0 % S);
    nc = hsadb_tail_gather_chunks(&q->tail, q->m, q->xmid, n, q->chunk_x);
    uint8_t bytes[HSADB_BLOCK];
    for (int i = 0; i < n; i++) bytes[i] = tokens[i] < 256 ? (uint8_t)tokens[i] : (uint8_t)'?';
    if (nc) {
        if ((rc = hsadb_encode_chunks(&q->run, q->chunk_x, nc, q->lmk, q->kmem, q->vmem))) return rc;
        const size_t ln = (size_t)c->n_mem_heads * c->retr_dim, kn = (size_t)S * c->n_mem_heads * c->head_dim;
        int j = 0;
        for (int64_t end = p0 - part + S; end <= p0 + n; end += S, j++) {
            int *toks = q->toks;
            for (int64_t p = end - S; p < end; p++)
                toks[p - (end - S)] = p < p0 ? q->tok_hist[p % S] : tokens[p - p0];
            if ((rc = extra_push(q, q->lmk + j * ln, q->kmem + j * kn, q->vmem + j * kn, toks))) return rc;
        }
    }
    for (int i = 0; i < n; i++) q->tok_hist[(p0 + i) % S] = tokens[i];
    hsadb_tail_push_rows(&q->tail, q->m, q->xmid, bytes, n);
    hsadb_memview mv = {&q->cache->index, (int64_t)q->rec.n_chunks, &q->extra, kv_fetch, q, q->cache->tier,
                        kv_records};
    if ((rc = hsadb_upper_forward(&q->run, &q->upper, &mv, q->xmid, n, q->hid, &q->tr))) return rc;
    q->last_row = n - 1;
    return 0;
}

/* Feed a prompt of any length in blocks; cancel (optional) is polled before each. */
static int feed_all(qsession *q, const int *tokens, int n, hsadb_cancel_fn cancel, void *ctx) {
    for (int i = 0; i < n; i += HSADB_BLOCK) {
        if (cancel && cancel(ctx)) return hsadb_fail(HSADB_ERR_CANCELLED, "cancelled in the prompt");
        int rc = feed(q, tokens + i, n - i < HSADB_BLOCK ? n - i : HSADB_BLOCK);
        if (rc) return rc;
    }
    return 0;
}

static int *prompt_tokens(const char *question, size_t qlen, int *n) {
    int *t = malloc((qlen + 2) * sizeof(int));
    if (!t) return NULL;
    t[0] = HSADB_TOK_QUERY;
    for (size_t i = 0; i < qlen; i++) t[i + 1] = (uint8_t)question[i];
    t[qlen + 1] = HSADB_TOK_ANSWER;
    *n = (int)qlen + 2;
    return t;
}

/* ---- chunk references (evidence and hits) --------------------------------------------- */

/* Fill ref for chunk c (score already set); its text goes to *arena (advanced). */
static int fill_ref(qsession *q, hsadb_chunk_ref *ref, int64_t c, uint8_t **arena) {
    const int S = q->m->c.chunk;
    uint8_t *text = *arena;
    *arena += S;
    ref->chunk = (uint64_t)c;
    ref->text = text;
    ref->text_len = (size_t)S;
    if (c < (int64_t)q->rec.n_chunks) {
        struct hsadb_chunk_meta meta;
        const uint8_t *bytes;
        int rc = hsadb_store_reader_chunk(q->r, (uint64_t)c, &meta, &bytes);
        if (rc) return rc;
        memcpy(text, bytes, (size_t)S);
        ref->persisted = 1;
        ref->append_id = meta.append_id;
        ref->byte_offset = meta.byte_offset;
        ref->time = meta.time;
    } else {
        const int *toks = q->extra_tok + (size_t)(c - (int64_t)q->rec.n_chunks) * S;
        for (int i = 0; i < S; i++) text[i] = toks[i] < 256 ? (uint8_t)toks[i] : (uint8_t)'?';
        ref->persisted = 0;
        ref->byte_offset = (uint64_t)c * (uint64_t)S;
    }
    return 0;
}

typedef struct pair { int64_t chunk; float w; } pair;

static int by_chunk(const void *a, const void *b) {
    int64_t x = ((const pair *)a)->chunk, y = ((const pair *)b)->chunk;
    return (x > y) - (x < y);
}
static int by_weight(const void *a, const void *b) {
    float x = ((const pair *)a)->w, y = ((const pair *)b)->w;
    return (x < y) - (x > y);
}

/* ---- query ------------------------------------------------------------------------------ */

typedef struct answer_box {
    hsadb_answer pub;
    uint8_t     *arena;
} answer_box;

/* Greedy or temperature/top-p choice among byte tokens and <eos>. */
static int sample(const float *logits, int V, const hsadb_query_options *o, uint64_t *rng, float *probs) {
    int best = -1;
    for (int i = 0; i < 258 && i < V; i++) {
        if (i == HSADB_TOK_BOS) continue;
        if (best < 0 || logits[i] > logits[best]) best = i;
    }
    if (o->temperature <= 0.f) return best;
    float sum = 0.f;
    for (int i = 0; i < 258; i++) {
        probs[i] = i == HSADB_TOK_BOS ? 0.f : expf((logits[i] - logits[best]) / o->temperature);
        sum += probs[i];
    }
    float top_p = o->top_p > 0.f && o->top_p < 1.f ? o->top_p : 1.f;
    /* nucleus: keep the most probable tokens whose mass reaches top_p */
    int order[258];
    for (int i = 0; i < 258; i++) order[i] = i;
    for (int i = 1; i < 258; i++) {                   /* insertion sort, 258 items */
        int x = order[i], j = i;
        while (j > 0 && probs[order[j - 1]] < probs[x]) order[j] = order[j - 1], j--;
        order[j] = x;
    }
    float mass = 0.f;
    int keep = 0;
    while (keep < 258 && mass < top_p * sum) mass += probs[order[keep++]];
    *rng ^= *rng << 13, *rng ^= *rng >> 7, *rng ^= *rng << 17;
    float u = (float)((*rng >> 11) * (1.0 / 9007199254740992.0)) * mass, acc = 0.f;
    for (int i = 0; i < keep; i++)
        if ((acc += probs[order[i]]) >= u) return order[i];
    return order[keep - 1];
}

int hsadb_query(hsadb_db *db, const char *name, const char *question, size_t qlen,
                const hsadb_query_options *opts, hsadb_answer **out) {
    hsadb_query_options o = opts ? *opts : (hsadb_query_options){0};
    qsession q;
    int rc, n_prompt = 0, *prompt = NULL;
    pair *pairs = NULL;
    size_t n_pairs = 0, cap_pairs = 0;
    answer_box *box = NULL;
    *out = NULL;
    hsadb_clear_error();
    if (!question || qlen == 0) return hsadb_fail(HSADB_ERR_INVALID, "empty question");
    if (o.max_tokens <= 0) o.max_tokens = 256;
    if (o.evidence_k <= 0) o.evidence_k = 8;
    uint64_t rng = o.seed ? o.seed : 0x9e3779b97f4a7c15ull;
    double t0 = hsadb_seconds();
    if ((rc = session_open(&q, db, name))) return rc;
    const hsadb_config *c = &db->model->c;
    const int G = c->n_groups, Hm = c->n_mem_heads, K = c->topk;
    float *probs = malloc(258 * sizeof(float));
    char *text = malloc((size_t)o.max_tokens + 1);
    if (!(box = calloc(1, sizeof *box)) || !text || !probs || !(prompt = prompt_tokens(question, qlen, &n_prompt))) {
        rc = ENOMEM;
        goto done;
    }
    hsadb_answer *a = &box->pub;
    a->text = text;
    a->stop = 1;
    if ((rc = feed_all(&q, prompt, n_prompt, o.cancel, o.cancel_ctx))) goto done;
    double t1 = hsadb_seconds();
    a->prompt_seconds = t1 - t0;
    for (;;) {
        /* Evidence: the selections of the row that produces the next token. */
        for (int g = 0; g < G; g++)
            for (int m = 0; m < Hm; m++)
                for (int j = 0; j < K; j++) {
                    size_t i = (((size_t)q.last_row * G + g) * Hm + m) * K + j;
                    if (q.tr.idx[i] < 0) continue;
                    if (n_pairs == cap_pairs) {
                        cap_pairs = cap_pairs ? 2 * cap_pairs : 1024;
                        pair *np = realloc(pairs, cap_pairs * sizeof *np);
                        if (!np) { rc = ENOMEM; goto done; }
                        pairs = np;
                    }
                    pairs[n_pairs++] = (pair){(int64_t)g << 48 | q.tr.idx[i], q.tr.w[i]};
                }
        if ((rc = hsadb_logits(&q.run, q.hid + (size_t)q.last_row * c->dim, 1, q.logits))) goto done;
        int tok = sample(q.logits, c->vocab, &o, &rng, probs);
        a->n_tokens++;
        if (tok == HSADB_TOK_EOS) { a->stop = 0; break; }
        text[a->len++] = (char)tok;
        if (o.on_piece && o.on_piece(o.ctx, &text[a->len - 1], 1)) { a->stop = 2; break; }
        if ((int)a->len >= o.max_tokens) { a->stop = 1; break; }
        if ((rc = feed(&q, &tok, 1))) goto done;
    }
    text[a->len] = 0;
    a->generate_seconds = hsadb_seconds() - t1;
    /* Aggregate evidence per layer: mean weight over the answer's rows and heads. */
    const int rows = a->n_tokens;
    if (n_pairs > 1) qsort(pairs, n_pairs, sizeof *pairs, by_chunk);  /* pairs is NULL when none */
    size_t u = 0;
    for (size_t i = 0; i < n_pairs; i++) {
        if (u && pairs[u - 1].chunk == pairs[i].chunk) pairs[u - 1].w += pairs[i].w;
        else pairs[u++] = pairs[i];
    }
    n_pairs = u;
    a->n_layers = (size_t)G;
    if (!(a->layers = calloc((size_t)G, sizeof *a->layers)) ||
        !(box->arena = malloc((size_t)G * o.evidence_k * c->chunk + 1))) {
        rc = ENOMEM;
        goto done;
    }
    uint8_t *arena = box->arena;
    size_t first = 0;
    for (int g = 0; g < G; g++) {
        size_t last = first;
        while (last < n_pairs && pairs[last].chunk >> 48 == g) last++;
        if (last - first > 1) qsort(pairs + first, last - first, sizeof *pairs, by_weight);
        hsadb_evidence *ev = &a->layers[g];
        ev->layer = g;
        ev->n = last - first < (size_t)o.evidence_k ? last - first : (size_t)o.evidence_k;
        if (ev->n && !(ev->chunks = calloc(ev->n, sizeof *ev->chunks))) { rc = ENOMEM; goto done; }
        for (size_t j = 0; j < ev->n; j++) {
            ev->chunks[j].score = pairs[first + j].w / (float)(rows * Hm);
            if ((rc = fill_ref(&q, &ev->chunks[j], pairs[first + j].chunk & ((1ll << 48) - 1), &arena))) goto done;
        }
        first = last;
    }
    *out = a;
    box = NULL;
    text = NULL;
done:
    if (box) {
        box->pub.text = text;
        text = NULL;
        hsadb_answer_free(&box->pub);
    }
    free(text);
    free(probs);
    free(prompt);
    free(pairs);
    session_close(&q);
    return rc;
}

void hsadb_answer_free(hsadb_answer *a) {
    if (!a) return;
    answer_box *box = (answer_box *)a;
    for (size_t g = 0; a->layers && g < a->n_layers; g++) free(a->layers[g].chunks);
    free(a->layers);
    free(a->text);
    free(box->arena);
    free(box);
}

/* ---- search ----------------------------------------------------------------------------- */

typedef struct hits_box {
    hsadb_hits pub;
    uint8_t   *arena;
} hits_box;

int hsadb_search(hsadb_db *db, const char *name, const char *question, size_t qlen, int k,
                 hsadb_hits **out) {
    return hsadb_search_cancellable(db, name, question, qlen, k, NULL, NULL, out);
}

/*
 * The retrieval probability of each eligible chunk at the question's <answer> position
 * (q.last_row), averaged over HSA layers and memory heads, added to acc[0..n_acc). ne chunks
 * are eligible, the first nb of them stored (the others completed by the question); scores is
 * scratch of ne floats. What hsadb_search ranks and the passage search fuses.
 */
static void add_retrieval_probs(qsession *q, const hsadb_config *c, int64_t ne, int64_t nb, float *scores,
                                float *acc, int64_t n_acc) {
    const int G = c->n_groups, Hm = c->n_mem_heads, dr = c->retr_dim;
    for (int g = 0; g < G && ne > 0; g++)
        for (int m = 0; m < Hm; m++) {
            const float *qr = q->tr.qr + ((size_t)q->last_row * G + g) * Hm * dr + (size_t)m * dr;
            hsadb_index_scores(&q->cache->index, m, qr, nb, scores);
            if (ne > nb) hsadb_index_scores(&q->extra, m, qr, ne - nb, scores + nb);
            float mx = -INFINITY, sum = 0.f;
            for (int64_t i = 0; i < ne; i++) mx = scores[i] > mx ? scores[i] : mx;
            for (int64_t i = 0; i < ne; i++) sum += (scores[i] = expf(scores[i] - mx));
            for (int64_t i = 0; i < n_acc; i++) acc[i] += scores[i] / sum / (float)(G * Hm);
        }
}

int hsadb_search_cancellable(hsadb_db *db, const char *name, const char *question, size_t qlen,
                             int k, hsadb_cancel_fn cancel, void *ctx, hsadb_hits **out) {
    qsession q;
    int rc, n_prompt = 0, *prompt = NULL;
    float *scores = NULL, *acc = NULL;
    pair *best = NULL;
    hits_box *box = NULL;
    *out = NULL;
    hsadb_clear_error();
    if (!question || qlen == 0) return hsadb_fail(HSADB_ERR_INVALID, "empty question");
    if (k <= 0) return hsadb_fail(HSADB_ERR_INVALID, "k must be positive");
    if ((rc = session_open(&q, db, name))) return rc;
    const hsadb_config *c = &db->model->c;
    rc = ENOMEM;
    if (!(prompt = prompt_tokens(question, qlen, &n_prompt))) goto done;
    if ((rc = feed_all(&q, prompt, n_prompt, cancel, ctx))) goto done;
    const int64_t pos = q.tail.pos - 1;                 /* position of <answer> */
    const int64_t ne = pos / c->chunk, nb = ne < (int64_t)q.rec.n_chunks ? ne : (int64_t)q.rec.n_chunks;
    rc = ENOMEM;
    if (!(scores = malloc((size_t)(ne + 1) * 4)) || !(acc = calloc((size_t)(ne + 1), 4)) ||
        !(box = calloc(1, sizeof *box)))
        goto done;
    add_retrieval_probs(&q, c, ne, nb, scores, acc, ne);
    int n = (int)(ne < k ? ne : k);
    rc = ENOMEM;
    if (!(best = malloc((size_t)(n + 1) * sizeof *best))) goto done;
    int have = 0;
    for (int64_t i = 0; i < ne; i++) {      /* top-n by relevance, newer first on ties */
        if (have == n && !(acc[i] >= best[n - 1].w)) continue;
        int j = have < n ? have++ : n - 1;
        while (j > 0 && !(best[j - 1].w > acc[i])) best[j] = best[j - 1], j--;
        best[j] = (pair){i, acc[i]};
    }
    if (!(box->pub.hits = calloc((size_t)have + 1, sizeof *box->pub.hits)) ||
        !(box->arena = malloc((size_t)have * c->chunk + 1)))
        goto done;
    uint8_t *arena = box->arena;
    for (int i = 0; i < have; i++) {
        box->pub.hits[i].score = best[i].w;
        if ((rc = fill_ref(&q, &box->pub.hits[i], best[i].chunk, &arena))) goto done;
    }
    box->pub.n = (size_t)have;
    *out = &box->pub;
    box = NULL;
    rc = 0;
done:
    if (box) hsadb_hits_free(&box->pub);
    free(prompt), free(scores), free(acc), free(best);
    session_close(&q);
    return rc;
}

void hsadb_hits_free(hsadb_hits *h) {
    if (!h) return;
    hits_box *box = (hits_box *)h;
    free(h->hits);
    free(box->arena);
    free(box);
}

/* ---- chunk scores for the passage search (engine/search.c) ------------------------------ */

int hsadb_model_chunk_scores(hsadb_db *db, const char *name, hsadb_store_reader *r,
                             const struct hsadb_memory_rec *rec, const char *question, size_t qlen,
                             hsadb_cancel_fn cancel, void *cancel_ctx, float *out) {
    qsession q;
    int rc, n_prompt = 0, *prompt = NULL;
    float *scores = NULL;
    memset(out, 0, (size_t)rec->n_chunks * sizeof *out);
    if ((rc = session_open_r(&q, db, name, r, rec))) return rc;
    const hsadb_config *c = &db->model->c;
    rc = ENOMEM;
    if (!(prompt = prompt_tokens(question, qlen, &n_prompt))) goto done;
    if ((rc = feed_all(&q, prompt, n_prompt, cancel, cancel_ctx))) goto done;
    const int64_t pos = q.tail.pos - 1;                 /* position of <answer> */
    const int64_t ne = pos / c->chunk, nb = ne < (int64_t)q.rec.n_chunks ? ne : (int64_t)q.rec.n_chunks;
    rc = ENOMEM;
    if (!(scores = malloc((size_t)(ne + 1) * 4))) goto done;
    add_retrieval_probs(&q, c, ne, nb, scores, out, nb);
    rc = 0;
done:
    free(prompt), free(scores);
    session_close(&q);
    return rc;
}
