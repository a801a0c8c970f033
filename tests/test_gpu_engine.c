/*
 * tests/test_gpu_engine.c — the CUDA backend against the CPU backend, stage by stage and
 * through the public API. Skips (exit 0) when no CUDA device is usable.
 *
 * Fresh random inputs each run (the seed is printed; HSADB_TEST_SEED=N repeats one), GPU
 * outputs poisoned with NaN before every call, tolerances that fit bf16 (the stored K/V and
 * the HSA queries are bf16 on the GPU), NaN never passes (every comparison is written so
 * that a NaN fails it).
 *
 *   1. lower half: x_mid of a ~4K-token stream, CPU blocks of 256 vs GPU blocks of 1000/2000/rest
 *   2. chunk encoder: records (landmark, K, V in bf16) from the same x_mid
 *   3. upper half over the whole stream with those records as the memory (GPU: the memory
 *      tier; CPU: index + K/V callback), the last chunks served as a query's own chunks
 *      (the second K/V source of the HSA kernel): chunk choices, weights, logits
 *   4. public API: the same archive appended and queried on a CUDA db and a CPU db: the
 *      same answer and evidence; a memory appended on the GPU answers the same on the CPU
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "forward.h"
#include "hsadb.h"
#include "model.h"
#include "test_util.h"
#include "util.h"

static uint64_t rng;
static uint32_t rnd(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (uint32_t)(rng >> 33);
}

/* max |a-b| / max |b|; NaN anywhere gives +inf */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d != d || a[i] != a[i]) return INFINITY;
        if (d > num) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return den > 0 ? num / den : num;
}

static void poison(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = NAN;
}

/* Filler text with numbers: what an agent's memory looks like, not noise only. */
static void make_stream(int *tok, uint8_t *bytes, int T) {
    static const char *w[] = {"the ", "agent ", "said ", "that ", "memory ", "key ", "is ", "value ", "and ",
                              "then ", "user ", "asked ", "about ", "report ", "deploy ", "\n"};
    int i = 0;
    while (i < T) {
        if (rnd() % 9 == 0) {
            char num[16];
            int n = snprintf(num, sizeof num, "%u ", rnd() % 100000);
            for (int j = 0; j < n && i < T; j++) bytes[i++] = (uint8_t)num[j];
        } else {
            const char *s = w[rnd() % 16];
            for (int j = 0; s[j] && i < T; j++) bytes[i++] = (uint8_t)s[j];
        }
    }
    for (i = 0; i < T; i++) tok[i] = bytes[i];
}

/* The memory both backends read: bf16 records as stored. */
typedef struct recs {
    const uint16_t *kv;   /* [C][2][S][Hm*dh] */
    int S, Hm, dh;
} recs;

static int kv_recs(void *ctx, int64_t chunk, int m, float *k, float *v) {
    const recs *r = ctx;
    const size_t per = (size_t)r->S * r->Hm * r->dh;
    const uint16_t *kb = r->kv + (size_t)chunk * 2 * per, *vb = kb + per;
    for (int s = 0; s < r->S; s++)
        for (int i = 0; i < r->dh; i++) {
            k[(size_t)s * r->dh + i] = hsadb_bf16_to_f32(kb[((size_t)s * r->Hm + m) * r->dh + i]);
            v[(size_t)s * r->dh + i] = hsadb_bf16_to_f32(vb[((size_t)s * r->Hm + m) * r->dh + i]);
        }
    return 0;
}

/* The block cache's misses: the records as stored. */
static int kv_raw(void *ctx, const uint64_t *chunks, int n, uint16_t *dst) {
    const recs *r = ctx;
    const size_t rec = (size_t)2 * r->S * r->Hm * r->dh;
    for (int i = 0; i < n; i++) memcpy(dst + i * rec, r->kv + chunks[i] * rec, rec * 2);
    return 0;
}

/* mode: the GPU's GEMM precision (option gpu_gemm): 0 fp32, 1 tf32 (fp32 operands on TF32
 * tensor cores, unit roundoff 2^-11), 2 bf16 (the default: weights and GEMM inputs rounded to
 * bf16, unit roundoff 2^-8, on blocks of 64+ rows). The tolerances follow the precision; bf16's
 * are about 5x what the H200 measured (x_mid 1.9e-3, logits 6.4e-3, HSA weights 8.4e-3;
 * chunk choices 95–96% identical: near-tied landmark scores flip under bf16 rounding; greedy
 * tokens 99.5–99.7%). */
static void stages(const hsadb_model *m, int mode, unsigned gpu_flags) {
    static const char *const names[] = {"fp32", "tf32", "bf16"};
    static const int gemms[] = {HSADB_GPU_GEMM_FP32, HSADB_GPU_GEMM_TF32, HSADB_GPU_GEMM_BF16};
    const hsadb_db_options go = {.gpu_gemm = gemms[mode], .gpu_flags = gpu_flags};
    const int fp32 = mode == 0, bf16 = mode == 2;
    const double tol_x = fp32 ? 1e-4 : bf16 ? 1e-2 : 3e-3;
    const hsadb_config *c = &m->c;
    const int D = c->dim, S = c->chunk, Hm = c->n_mem_heads, dh = c->head_dim, dr = c->retr_dim;
    const int K = c->topk, G = c->n_groups, V = c->vocab;
    const int T = 4096 + (int)(rnd() % 64), C = T / S;
    const size_t ln = (size_t)Hm * dr, per = (size_t)S * Hm * dh;
    int *tok = malloc((size_t)T * sizeof(int));
    uint8_t *bytes = malloc((size_t)T);
    float *xc = malloc((size_t)T * D * 4), *xg = malloc((size_t)T * D * 4);
    uint16_t *lc = malloc((size_t)C * ln * 2), *lg = malloc((size_t)C * ln * 2);
    uint16_t *kvc = malloc((size_t)C * 2 * per * 2), *kvg = malloc((size_t)C * 2 * per * 2);
    float *hc = malloc((size_t)T * D * 4), *hg = malloc((size_t)T * D * 4);
    float *logc = malloc((size_t)T * V * 4), *logg = malloc((size_t)T * V * 4);
    int32_t *ic = malloc((size_t)T * G * Hm * K * 4), *ig = malloc((size_t)T * G * Hm * K * 4);
    float *wc = malloc((size_t)T * G * Hm * K * 4), *wg = malloc((size_t)T * G * Hm * K * 4);
    make_stream(tok, bytes, T);
    printf("# stream of %d tokens, %d chunks; GPU GEMMs in %s; window attention %s\n", T, C, names[mode],
           bf16 && !(gpu_flags & HSADB_GPU_TILE_ATTENTION) ? "on tensor cores (bf16 operands)" : "on CUDA cores (fp32)");

    hsadb_run rc_, rg_;
    hsadb_swa_state lc_s, lg_s;
    int rc = hsadb_run_init_dev(&rc_, m, 256, HSADB_DEVICE_CPU, NULL);
    CHECK(rc == 0, "CPU run");
    rc = hsadb_run_init_dev(&rg_, m, 2048, HSADB_DEVICE_CUDA, &go);
    CHECK(rc == 0 && rg_.cu, "CUDA run (%s)", rc ? hsadb_last_error() : "ok");
    if (rc) goto out;

    /* 1. lower half */
    hsadb_swa_state_init(&lc_s, m, c->n_lower, 256, 0);
    hsadb_swa_state_init(&lg_s, m, c->n_lower, 2048, 0);
    for (int t = 0; t < T; t += 256) hsadb_lower_forward(&rc_, &lc_s, tok + t, T - t < 256 ? T - t : 256, xc + (size_t)t * D);
    poison(xg, (size_t)T * D);
    const int cuts[] = {1000, 3000, T};
    int fail = 0;
    for (int i = 0, t = 0; i < 3; t = cuts[i++])
        fail |= hsadb_lower_forward(&rg_, &lg_s, tok + t, cuts[i] - t, xg + (size_t)t * D);
    double e1 = rel_err(xg, xc, (size_t)T * D);
    CHECK(!fail && e1 < tol_x, "lower half: x_mid max rel err %.2e < %.0e", e1, tol_x);
    /* the rings come back to the host exactly as the CPU holds them */
    hsadb_swa_state_pull(&lg_s);
    double er = 0;
    for (int l = 0; l < c->n_lower; l++)
        for (int64_t p = T - c->window + 1; p < T; p++) {
            const size_t kd = (size_t)c->n_kv_heads * dh;
            double e = rel_err(lg_s.ring[l].k + (size_t)(p % lg_s.ring[l].cap) * kd,
                               lc_s.ring[l].k + (size_t)(p % lc_s.ring[l].cap) * kd, kd);
            if (!(e <= er)) er = e;
        }
    CHECK(er < 10 * tol_x, "sliding-window rings pulled back: max rel err %.2e", er);

    /* 2. encoder records from the same (CPU) x_mid */
    rc = hsadb_encode_records(&rc_, xc, 0, 0, lc, kvc);
    /* blocks of at most max_rows / S + 1 chunks: 5 on this CPU run, 33 on the GPU run */
    for (int j = 0; j < C && !rc; j += 4) rc = hsadb_encode_records(&rc_, xc + (size_t)j * S * D, C - j < 4 ? C - j : 4,
                                                                  0, lc + j * ln, kvc + (size_t)j * 2 * per);
    memset(lg, 0xff, (size_t)C * ln * 2);          /* 0xffff is a bf16 NaN */
    memset(kvg, 0xff, (size_t)C * 2 * per * 2);
    for (int j = 0; j < C && !rc; j += 33) rc = hsadb_encode_records(&rg_, xc + (size_t)j * S * D, C - j < 33 ? C - j : 33,
                                                                   0, lg + j * ln, kvg + (size_t)j * 2 * per);
    CHECK(rc == 0, "encode records on both backends");
    {
        size_t n = (size_t)C * ln + (size_t)C * 2 * per, same = 0;
        float *a = malloc(n * 4), *b = malloc(n * 4);
        for (size_t i = 0; i < (size_t)C * ln; i++) a[i] = hsadb_bf16_to_f32(lg[i]), b[i] = hsadb_bf16_to_f32(lc[i]);
        for (size_t i = 0; i < (size_t)C * 2 * per; i++)
            a[C * ln + i] = hsadb_bf16_to_f32(kvg[i]), b[C * ln + i] = hsadb_bf16_to_f32(kvc[i]);
        for (size_t i = 0; i < n; i++) same += a[i] == b[i];
        double e2 = rel_err(a, b, n);
        CHECK(e2 < (bf16 ? 3e-2 : 1e-2), "records: max rel err %.2e < %.0e (bf16 rounding), %.1f%% bit-identical", e2,
              bf16 ? 3e-2 : 1e-2, 100.0 * same / n);
        free(a), free(b);
    }

    /* 3. upper half over the GPU's records: chunks 0..C-6 from the memory, the last 5 as the
     *    query's own chunks (extra index) */
    const int64_t base = C - 5;
    hsadb_index ix, ex;
    hsadb_index_init(&ix, Hm, dr), hsadb_index_init(&ex, Hm, dr);
    float *l32 = malloc((size_t)C * ln * 4);
    for (size_t i = 0; i < (size_t)C * ln; i++) l32[i] = hsadb_bf16_to_f32(lg[i]);
    hsadb_index_push(&ix, l32, base);
    hsadb_index_push(&ex, l32 + base * ln, C - base);
    hsadb_tier *tier = NULL;
    rc = hsadb_tier_open(HSADB_DEVICE_CUDA, c, 0, &tier);
    if (!rc) rc = hsadb_tier_push(tier, lg, kvg, base);
    CHECK(rc == 0 && hsadb_tier_count(tier) == base, "memory tier holds %lld chunks", (long long)hsadb_tier_count(tier));
    recs R = {kvg, S, Hm, dh};
    hsadb_memview mvc = {&ix, base, &ex, kv_recs, &R, NULL, NULL}, mvg = {&ix, base, &ex, kv_recs, &R, tier, kv_raw};
    hsadb_swa_state uc, ug;
    hsadb_swa_state_init(&uc, m, hsadb_config_upper_attn_layers(c), 256, 0);
    hsadb_swa_state_init(&ug, m, hsadb_config_upper_attn_layers(c), 2048, 0);
    fail = 0;
    for (int t = 0; t < T; t += 256) {
        int nb = T - t < 256 ? T - t : 256;
        hsadb_trace tr = {ic + (size_t)t * G * Hm * K, wc + (size_t)t * G * Hm * K, NULL};
        fail |= hsadb_upper_forward(&rc_, &uc, &mvc, xc + (size_t)t * D, nb, hc + (size_t)t * D, &tr);
    }
    poison(hg, (size_t)T * D);
    for (int i = 0, t = 0; i < 3; t = cuts[i++]) {
        hsadb_trace tr = {ig + (size_t)t * G * Hm * K, wg + (size_t)t * G * Hm * K, NULL};
        fail |= hsadb_upper_forward(&rg_, &ug, &mvg, xc + (size_t)t * D, cuts[i] - t, hg + (size_t)t * D, &tr);
    }
    CHECK(!fail, "upper half ran on both (%s)", fail ? hsadb_last_error() : "ok");
    long rows = 0, same_rows = 0, extra_rows = 0;
    double wdiff = 0;
    for (size_t r = 0; r < (size_t)T * G * Hm; r++) {
        int eq = 1, has_extra = 0;
        for (int j = 0; j < K; j++) {
            eq &= ic[r * K + j] == ig[r * K + j];
            has_extra |= ig[r * K + j] >= base;
        }
        for (int j = 0; eq && j < K; j++) {       /* weights, where the choices agree */
            double d = fabs((double)wc[r * K + j] - wg[r * K + j]);
            if (!(d <= wdiff)) wdiff = d;
        }
        rows++, same_rows += eq, extra_rows += has_extra;
    }
    CHECK(same_rows >= rows * (fp32 ? 0.995 : bf16 ? 0.92 : 0.98), "chunk choices identical in %ld of %ld rows", same_rows, rows);
    CHECK(extra_rows > 0, "%ld rows chose a query's own chunk (second K/V source)", extra_rows);
    CHECK(wdiff < 5e-2, "HSA weights (rows with the same choices): max |diff| %.2e", wdiff);

    /* 3b. the same on a tier whose K/V slots hold 2 rows' worth of chunks (a block cache):
     *     the same kernels over the same bf16 blocks, so bit-identical results */
    {
        hsadb_tier *small = NULL;
        int rc2 = hsadb_tier_open(HSADB_DEVICE_CUDA, c, 2 * Hm * K, &small);
        if (!rc2) rc2 = hsadb_tier_push(small, lg, kvg, base);   /* takes the first 2*Hm*K blocks */
        hsadb_memview mvs = {&ix, base, &ex, kv_recs, &R, small, kv_raw};
        hsadb_swa_state us;
        hsadb_swa_state_init(&us, m, hsadb_config_upper_attn_layers(c), 2048, 0);
        float *hs = malloc((size_t)T * D * 4);
        int32_t *is = malloc((size_t)T * G * Hm * K * 4);
        float *ws = malloc((size_t)T * G * Hm * K * 4);
        poison(hs, (size_t)T * D);
        for (int i = 0, t = 0; !rc2 && i < 3; t = cuts[i++]) {
            hsadb_trace tr = {is + (size_t)t * G * Hm * K, ws + (size_t)t * G * Hm * K, NULL};
            rc2 = hsadb_upper_forward(&rg_, &us, &mvs, xc + (size_t)t * D, cuts[i] - t, hs + (size_t)t * D, &tr);
        }
        int64_t nslots = 0, hits = 0, misses = 0;
        hsadb_tier_stats(small, &nslots, &hits, &misses);
        CHECK(rc2 == 0 && nslots == 2 * Hm * K && misses > 0,
              "block cache of %lld slots for %lld chunks ran (%lld picks hit, %lld fetched) (%s)", (long long)nslots,
              (long long)base, (long long)hits, (long long)misses, rc2 ? hsadb_last_error() : "ok");
        CHECK(!rc2 && memcmp(hs, hg, (size_t)T * D * 4) == 0 && memcmp(is, ig, (size_t)T * G * Hm * K * 4) == 0 &&
              memcmp(ws, wg, (size_t)T * G * Hm * K * 4) == 0,
              "block cache: hidden states, choices and weights bit-identical to the resident tier");
        hsadb_tier_stats(tier, &nslots, &hits, &misses);
        CHECK(nslots == 0 && misses == 0, "the resident tier is not a cache");
        hsadb_swa_state_free(&us);
        hsadb_tier_close(small);
        free(hs), free(is), free(ws);
    }
    /* 3c. decode steps (one row at a time, lower, upper, logits) replayed as CUDA graphs give
     *     bit for bit what plain launches give; the last 200 positions, so that the query's own
     *     chunks are selected too */
    {
        hsadb_run ra, rb;
        const int N = 200, p0 = T - N;
        hsadb_db_options plain = go;
        plain.gpu_flags |= HSADB_GPU_NO_GRAPHS;
        int rc2 = hsadb_run_init_dev(&rb, m, 64, HSADB_DEVICE_CUDA, &plain);
        const int have_b = rc2 == 0;
        if (!rc2) rc2 = hsadb_run_init_dev(&ra, m, 64, HSADB_DEVICE_CUDA, &go);
        const int have_a = have_b && rc2 == 0;
        hsadb_swa_state la, lb, ua, ub;
        hsadb_swa_state_init(&la, m, c->n_lower, 64, p0), hsadb_swa_state_init(&lb, m, c->n_lower, 64, p0);
        hsadb_swa_state_init(&ua, m, hsadb_config_upper_attn_layers(c), 64, p0);
        hsadb_swa_state_init(&ub, m, hsadb_config_upper_attn_layers(c), 64, p0);
        const int qn = G * Hm * dr;
        float *v = malloc((size_t)(4 * D + 2 * V + 2 * G * Hm * K + 2 * qn) * 4);
        float *xa = v, *xb = xa + D, *ha = xb + D, *hb = ha + D, *lga = hb + D, *lgb = lga + V, *wa = lgb + V,
              *wb = wa + G * Hm * K, *qa = wb + G * Hm * K, *qb = qa + qn;
        int32_t *ia = malloc((size_t)2 * G * Hm * K * 4), *ib = ia + G * Hm * K;
        long diff = 0, extra_sel = 0;
        for (int i = 0; !rc2 && i < N; i++) {
            hsadb_trace ta = {ia, wa, qa}, tb = {ib, wb, qb};
            const int tk = tok[p0 + i];
            rc2 = hsadb_lower_forward(&ra, &la, &tk, 1, xa);
            if (!rc2) rc2 = hsadb_lower_forward(&rb, &lb, &tk, 1, xb);
            if (!rc2) rc2 = hsadb_upper_forward(&ra, &ua, &mvg, xa, 1, ha, &ta);
            if (!rc2) rc2 = hsadb_upper_forward(&rb, &ub, &mvg, xb, 1, hb, &tb);
            if (!rc2) rc2 = hsadb_logits(&ra, ha, 1, lga);
            if (!rc2) rc2 = hsadb_logits(&rb, hb, 1, lgb);
            diff += memcmp(xa, xb, (size_t)D * 4) != 0 || memcmp(ha, hb, (size_t)D * 4) != 0 ||
                    memcmp(lga, lgb, (size_t)V * 4) != 0 || memcmp(ia, ib, (size_t)G * Hm * K * 4) != 0 ||
                    memcmp(wa, wb, (size_t)G * Hm * K * 4) != 0 || memcmp(qa, qb, (size_t)qn * 4) != 0;
            for (int j = 0; j < G * Hm * K; j++) extra_sel += ia[j] >= base;
        }
        const int64_t gl = rc2 ? 0 : hsadb_run_graph_launches(&ra), gn = rc2 ? 0 : hsadb_run_graph_launches(&rb);
        CHECK(rc2 == 0 && diff == 0 && gl >= 3 * N && gn == 0 && extra_sel > 0,
              "%d decode steps as CUDA graphs (%lld launches) bit-identical to plain launches (%ld differ; "
              "%ld picks of the query's own chunks) (%s)", N, (long long)gl, diff, extra_sel,
              rc2 ? hsadb_last_error() : "ok");
        hsadb_swa_state_free(&la), hsadb_swa_state_free(&lb), hsadb_swa_state_free(&ua), hsadb_swa_state_free(&ub);
        if (have_a) hsadb_run_free(&ra);
        if (have_b) hsadb_run_free(&rb);
        free(v), free(ia);
    }
    hsadb_logits(&rc_, hc, T, logc);
    poison(logg, (size_t)T * V);
    hsadb_logits(&rg_, hg, T, logg);
    double e3 = rel_err(logg, logc, (size_t)T * V);
    long argmax_same = 0;
    for (int t = 0; t < T; t++) {
        int a = 0, b = 0;
        for (int v = 1; v < V; v++) {
            if (logc[(size_t)t * V + v] > logc[(size_t)t * V + a]) a = v;
            if (logg[(size_t)t * V + v] > logg[(size_t)t * V + b]) b = v;
        }
        argmax_same += a == b;
    }
    CHECK(e3 < (fp32 ? 5e-3 : bf16 ? 3e-2 : 2e-2), "logits: max rel err %.2e (bf16 K/V and queries in HSA)", e3);
    CHECK(argmax_same >= T * (fp32 ? 0.99 : bf16 ? 0.96 : 0.97), "greedy token identical at %ld of %d positions", argmax_same, T);
    hsadb_tier_close(tier);
    hsadb_index_free(&ix), hsadb_index_free(&ex);
    free(l32);
    hsadb_swa_state_free(&uc), hsadb_swa_state_free(&ug);
    hsadb_swa_state_free(&lc_s), hsadb_swa_state_free(&lg_s);
    hsadb_run_free(&rg_);
out:
    hsadb_run_free(&rc_);
    free(tok), free(bytes), free(xc), free(xg), free(lc), free(lg), free(kvc), free(kvg), free(hc), free(hg);
    free(logc), free(logg), free(ic), free(ig), free(wc), free(wg);
}

/* ---- 4. through the public API ---------------------------------------------------------- */

typedef struct answer {
    char     text[256];
    uint64_t top_chunk;
    int      ok;
} answer;

static int ask(hsadb_db *db, const char *q, answer *a) {
    hsadb_query_options o = {0};
    o.max_tokens = 24;
    hsadb_answer *ans = NULL;
    memset(a, 0, sizeof *a);
    int rc = hsadb_query(db, "m", q, strlen(q), &o, &ans);
    if (rc) return rc;
    snprintf(a->text, sizeof a->text, "%.*s", (int)ans->len, ans->text);
    float best = -1;      /* the heaviest chunk over every HSA layer */
    for (size_t l = 0; l < ans->n_layers; l++)
        for (size_t i = 0; i < ans->layers[l].n; i++)
            if (ans->layers[l].chunks[i].score > best)
                best = ans->layers[l].chunks[i].score, a->top_chunk = ans->layers[l].chunks[i].chunk;
    a->ok = 1;
    hsadb_answer_free(ans);
    return 0;
}

static void api(hsadb_model *m) {
    char dcpu[64], dgpu[64];
    tu_tmpdir(dcpu, sizeof dcpu, "gpucpu");
    tu_tmpdir(dgpu, sizeof dgpu, "gpugpu");
    const int N = 40000 + (int)(rnd() % 5000);
    uint8_t *text = malloc((size_t)N);
    int *tok = malloc((size_t)N * sizeof(int));
    make_stream(tok, text, N);
    char needle[128];
    const unsigned key = 1000 + rnd() % 9000;
    int nl = snprintf(needle, sizeof needle, " The special magic number for alpha is %u. ", key);
    memcpy(text + N / 3, needle, (size_t)nl);
    const char *q = "What is the special magic number for alpha?";
    answer ac, ag, ax;
    hsadb_db *db;
    hsadb_db_options oc = {.flags = HSADB_DB_CREATE | HSADB_DB_NOSYNC, .model = m, .device = HSADB_DEVICE_CPU};
    hsadb_db_options og = oc;
    og.device = HSADB_DEVICE_CUDA;
    int rc = hsadb_db_open(dcpu, &oc, &db);
    if (!rc) rc = hsadb_memory_create(db, "m");
    if (!rc) rc = hsadb_append(db, "m", text, (size_t)N, NULL);
    if (!rc) rc = ask(db, q, &ac);
    hsadb_db_close(db);
    CHECK(rc == 0, "CPU db: append %d bytes and query (%s)", N, rc ? hsadb_last_error() : "ok");
    rc = hsadb_db_open(dgpu, &og, &db);
    if (!rc) rc = hsadb_memory_create(db, "m");
    /* uneven appends: the GPU's 16K-token blocks must continue across them */
    for (int off = 0, i = 0; !rc && off < N; i++) {
        int n = i == 0 ? 20000 : i == 1 ? 7 : N - off;
        if (n > N - off) n = N - off;
        rc = hsadb_append(db, "m", text + off, (size_t)n, NULL);
        off += n;
    }
    if (!rc) rc = ask(db, q, &ag);
    hsadb_db_close(db);
    CHECK(rc == 0, "CUDA db: append in 3 pieces and query (%s)", rc ? hsadb_last_error() : "ok");
    printf("# needle %u; CPU answer '%s' (chunk %llu), CUDA answer '%s' (chunk %llu)\n", key, ac.text,
           (unsigned long long)ac.top_chunk, ag.text, (unsigned long long)ag.top_chunk);
    CHECK(ac.ok && ag.ok && strcmp(ac.text, ag.text) == 0, "same answer on both backends");
    CHECK(ac.top_chunk == ag.top_chunk, "same top evidence chunk (%llu)", (unsigned long long)ag.top_chunk);
    /* the GPU-written memory, queried on the CPU */
    rc = hsadb_db_open(dgpu, &oc, &db);
    if (!rc) rc = ask(db, q, &ax);
    hsadb_db_close(db);
    CHECK(rc == 0 && strcmp(ax.text, ac.text) == 0, "GPU-appended memory answers '%s' on the CPU", ax.text);
    /* the same memory on the GPU through a block cache of 40 chunks' K/V (of ~650): the
     * blocks the query selects are fetched from the store */
    og.gpu_kv_chunks = 40;
    rc = hsadb_db_open(dgpu, &og, &db);
    if (!rc) rc = ask(db, q, &ax);
    hsadb_db_close(db);
    CHECK(rc == 0 && strcmp(ax.text, ag.text) == 0 && ax.top_chunk == ag.top_chunk,
          "through a 40-chunk block cache: answer '%s', top chunk %llu (%s)", ax.text, (unsigned long long)ax.top_chunk,
          rc ? hsadb_last_error() : "same as resident");
    tu_rmrf(dcpu), tu_rmrf(dgpu);
    free(text), free(tok);
}

int main(void) {
    if (hsadb_device_resolve(HSADB_DEVICE_AUTO) != HSADB_DEVICE_CUDA) {
        SKIP("no CUDA device (or a build without CUDA): nothing to compare");
        return tu_summary();
    }
    const char *seed = getenv("HSADB_TEST_SEED");
    rng = seed ? strtoull(seed, NULL, 10) : (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32);
    printf("# seed %llu (HSADB_TEST_SEED to repeat)\n", (unsigned long long)rng);
    const char *dir = getenv("HSADB_TEST_MODEL") ? getenv("HSADB_TEST_MODEL") : "models/hsadb-small";
    hsadb_model *m;
    int rc = hsadb_model_open(dir, &m);
    CHECK(rc == 0, "load %s (%s)", dir, rc ? hsadb_last_error() : "ok");
    if (rc) return tu_summary();
    stages(m, 0, 0);
    stages(m, 1, 0);
    stages(m, 2, 0);
    stages(m, 2, HSADB_GPU_TILE_ATTENTION);   /* bf16 GEMMs with the CUDA-core window attention */
    api(m);   /* the default options (bf16) */
    hsadb_model_close(m);
    return tu_summary();
}
