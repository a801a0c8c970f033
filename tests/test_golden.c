/*
 * tests/test_golden.c — the C forward against the PyTorch reference (tools/train/).
 *
 * tests/data/<model>/golden.safetensors holds, for a random-weight tiny model and an
 * 849-token sequence (13 complete chunks, K = 8, so top-k really chooses), the reference's
 * float64 outputs: x_mid, landmarks, Kmem, Vmem, top-k indices and weights of every HSA
 * layer, and logits. The C forward runs the same sequence in uneven blocks and must match:
 * max relative error on logits <= 1e-4 and identical chunk choices.
 *
 * Then the database split: the stream is cut at several positions, the state is carried
 * through the tail blob (as append/query do), and the continuation must give the same
 * x_mid, records and logits as the uncut run.
 */
#include <math.h>

#include "st_file.h"
#include "engine.h"
#include "forward.h"
#include "model.h"

typedef struct golden {
    int     *tokens;
    size_t   T;
    float   *x_mid, *lmk, *kmem, *vmem, *logits, *topk_w;
    int32_t *topk_idx;
} golden;

typedef struct memarrays {      /* an in-RAM memory for the upper half, fp32 */
    hsadb_index idx;
    const float *k, *v;         /* [C][S][Hm][dh] */
    int S, Hm, dh;
} memarrays;

static int kv_arrays(void *ctx, int64_t c, int m, float *k, float *v) {
    memarrays *a = ctx;
    for (int s = 0; s < a->S; s++) {
        memcpy(k + (size_t)s * a->dh, a->k + (((size_t)c * a->S + s) * a->Hm + m) * a->dh, (size_t)a->dh * 4);
        memcpy(v + (size_t)s * a->dh, a->v + (((size_t)c * a->S + s) * a->Hm + m) * a->dh, (size_t)a->dh * 4);
    }
    return 0;
}

/* max |a-b| / max |b| */
static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= num)) num = d;           /* NaN propagates as a failure */
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return den > 0 ? num / den : num;
}

static int cmp_desc(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x < y) - (x > y);
}

static void run_model(const char *dir) {
    char path[512];
    hsadb_model *m;
    printf("# %s\n", dir);
    int rc = hsadb_model_open(dir, &m);
    CHECK(rc == 0, "load %s (%s)", dir, rc ? hsadb_last_error() : "ok");
    if (rc) return;
    snprintf(path, sizeof path, "%s/golden.safetensors", dir);
    size_t len, n;
    unsigned char *buf = slurp(path, &len);
    CHECK(buf != NULL, "read %s", path);
    if (!buf) { hsadb_model_close(m); return; }
    const hsadb_config *c = &m->c;
    const int D = c->dim, S = c->chunk, Hm = c->n_mem_heads, dh = c->head_dim, dr = c->retr_dim;
    const int K = c->topk, G = c->n_groups, V = c->vocab;
    golden g = {0};
    g.tokens = st_copy(buf, len, "tokens", &g.T);
    g.x_mid = st_copy(buf, len, "x_mid", &n);
    g.lmk = st_copy(buf, len, "landmarks", &n);
    g.kmem = st_copy(buf, len, "kmem", &n);
    g.vmem = st_copy(buf, len, "vmem", &n);
    g.logits = st_copy(buf, len, "logits", &n);
    g.topk_w = st_copy(buf, len, "topk_w", &n);
    g.topk_idx = st_copy(buf, len, "topk_idx", &n);
    CHECK(g.tokens && g.x_mid && g.lmk && g.kmem && g.vmem && g.logits && g.topk_w && g.topk_idx,
          "golden has every tensor");
    const int T = (int)g.T, C = T / S;
    CHECK(C > K, "sequence has %d chunks > K = %d (top-k really chooses)", C, K);

    /* ---- 1. whole-sequence forward, in uneven blocks ---- */
    hsadb_run run;
    hsadb_swa_state lower, upper;
    hsadb_run_init(&run, m, 100);
    hsadb_swa_state_init(&lower, m, c->n_lower, 100, 0);
    float *x_mid = malloc((size_t)T * D * 4), *hid = malloc((size_t)T * D * 4);
    float *lmk = malloc((size_t)C * Hm * dr * 4), *kmem = malloc((size_t)C * S * Hm * dh * 4),
          *vmem = malloc((size_t)C * S * Hm * dh * 4), *logits = malloc((size_t)T * V * 4);
    int32_t *tidx = malloc((size_t)T * G * Hm * K * 4);
    float *tw = malloc((size_t)T * G * Hm * K * 4);
    static const int blocks[] = {37, 100, 64, 1, 99, 100};
    for (int t = 0, b = 0; t < T; b++) {
        int nb = blocks[b % 6] < T - t ? blocks[b % 6] : T - t;
        hsadb_lower_forward(&run, &lower, g.tokens + t, nb, x_mid + (size_t)t * D);
        t += nb;
    }
    CHECK(rel_err(x_mid, g.x_mid, (size_t)T * D) < 1e-5, "x_mid rel err %.2e", rel_err(x_mid, g.x_mid, (size_t)T * D));
    for (int c0 = 0; c0 < C; c0 += 2) {
        int nc = C - c0 < 2 ? C - c0 : 2;
        hsadb_encode_chunks(&run, x_mid + (size_t)c0 * S * D, nc, lmk + (size_t)c0 * Hm * dr,
                            kmem + (size_t)c0 * S * Hm * dh, vmem + (size_t)c0 * S * Hm * dh);
    }
    CHECK(rel_err(lmk, g.lmk, (size_t)C * Hm * dr) < 1e-5, "landmarks rel err %.2e", rel_err(lmk, g.lmk, (size_t)C * Hm * dr));
    CHECK(rel_err(kmem, g.kmem, (size_t)C * S * Hm * dh) < 1e-5, "Kmem rel err %.2e", rel_err(kmem, g.kmem, (size_t)C * S * Hm * dh));
    CHECK(rel_err(vmem, g.vmem, (size_t)C * S * Hm * dh) < 1e-5, "Vmem rel err %.2e", rel_err(vmem, g.vmem, (size_t)C * S * Hm * dh));

    memarrays ma = {.k = kmem, .v = vmem, .S = S, .Hm = Hm, .dh = dh};
    hsadb_index_init(&ma.idx, Hm, dr);
    hsadb_index_push(&ma.idx, lmk, C);
    hsadb_memview mv = {&ma.idx, C, NULL, kv_arrays, &ma, NULL, NULL};
    hsadb_swa_state_init(&upper, m, hsadb_config_upper_attn_layers(c), 100, 0);
    int fail = 0;
    for (int t = 0, b = 0; t < T; b++) {
        int nb = blocks[(b + 3) % 6] < T - t ? blocks[(b + 3) % 6] : T - t;
        hsadb_trace tr = {tidx + (size_t)t * G * Hm * K, tw + (size_t)t * G * Hm * K, NULL};
        fail |= hsadb_upper_forward(&run, &upper, &mv, x_mid + (size_t)t * D, nb, hid + (size_t)t * D, &tr);
        t += nb;
    }
    CHECK(!fail, "upper forward ran");
    hsadb_logits(&run, hid, T, logits);
    double le = rel_err(logits, g.logits, (size_t)T * V);
    CHECK(le <= 1e-4, "logits max relative error %.2e <= 1e-4", le);
    /* chunk choices: same sets per (layer, token, head); golden rows are sorted by chunk desc */
    long diff = 0, rows = 0;
    double wmax = 0;
    for (int t = 0; t < T; t++)
        for (int l = 0; l < G; l++)
            for (int h = 0; h < Hm; h++) {
                int32_t mine[64];
                float myw[64];
                size_t o_mine = (((size_t)t * G + l) * Hm + h) * K, o_ref = (((size_t)l * T + t) * Hm + h) * K;
                memcpy(mine, tidx + o_mine, (size_t)K * 4);
                /* weights in chunk order */
                for (int j = 0; j < K; j++) myw[j] = tw[o_mine + j];
                for (int a = 0; a < K; a++)          /* sort (idx, w) pairs by idx desc */
                    for (int b2 = a + 1; b2 < K; b2++)
                        if (mine[b2] > mine[a]) {
                            int32_t ti = mine[a]; mine[a] = mine[b2]; mine[b2] = ti;
                            float tf = myw[a]; myw[a] = myw[b2]; myw[b2] = tf;
                        }
                rows++;
                if (memcmp(mine, g.topk_idx + o_ref, (size_t)K * 4)) diff++;
                for (int j = 0; j < K; j++) {
                    double e = fabs(myw[j] - g.topk_w[o_ref + j]);
                    if (!(e <= wmax)) wmax = e;
                }
            }
    (void)cmp_desc;
    CHECK(diff == 0, "chunk choices identical in %ld of %ld (layer, token, head) rows", rows - diff, rows);
    CHECK(wmax < 1e-5, "chunk weights max abs error %.2e", wmax);

    /* ---- 1b. chunks a query completes live in a per-query extra index: the last chunks
     * served from there (merged with the base index's top-k) must give the same result ---- */
    for (int n_extra = 1; n_extra <= 4; n_extra += 3) {
        hsadb_index base, extra;
        hsadb_index_init(&base, Hm, dr);
        hsadb_index_init(&extra, Hm, dr);
        hsadb_index_push(&base, lmk, C - n_extra);
        hsadb_index_push(&extra, lmk + (size_t)(C - n_extra) * Hm * dr, n_extra);
        hsadb_memview mv2 = {&base, C - n_extra, &extra, kv_arrays, &ma, NULL, NULL};
        hsadb_swa_state u3;
        hsadb_swa_state_init(&u3, m, hsadb_config_upper_attn_layers(c), 100, 0);
        float *h3 = malloc((size_t)T * D * 4), *lg3 = malloc((size_t)T * V * 4);
        int32_t *ti3 = malloc((size_t)T * G * Hm * K * 4);
        float *tw3 = malloc((size_t)T * G * Hm * K * 4);
        int f3 = 0;
        for (int t = 0; t < T && !f3; t += 100) {
            int nb = T - t < 100 ? T - t : 100;
            hsadb_trace tr = {ti3 + (size_t)t * G * Hm * K, tw3 + (size_t)t * G * Hm * K, NULL};
            f3 |= hsadb_upper_forward(&run, &u3, &mv2, x_mid + (size_t)t * D, nb, h3 + (size_t)t * D, &tr);
        }
        hsadb_logits(&run, h3, T, lg3);
        double e3 = rel_err(lg3, g.logits, (size_t)T * V);
        int same = !memcmp(ti3, tidx, (size_t)T * G * Hm * K * 4);
        CHECK(!f3 && e3 <= 1e-4 && same, "last %d chunks from the per-query extra index: logits err %.2e, same choices: %s",
              n_extra, e3, same ? "yes" : "no");
        free(h3), free(lg3), free(ti3), free(tw3);
        hsadb_swa_state_free(&u3);
        hsadb_index_free(&base), hsadb_index_free(&extra);
    }

    /* ---- 2. the database split: carry the state through the tail at cut points ---- */
    static const int cuts[] = {1, 63, 64, 300, 701};
    for (size_t ci = 0; ci < sizeof cuts / sizeof cuts[0]; ci++) {
        const int P = cuts[ci];
        hsadb_tail tail, tail2;
        hsadb_swa_state l1, l2, u2;
        hsadb_tail_init(&tail, m);
        hsadb_tail_init(&tail2, m);
        hsadb_swa_state_init(&l1, m, c->n_lower, 100, 0);
        float *xm = malloc((size_t)T * D * 4), *h2 = malloc((size_t)T * D * 4), *lg = malloc((size_t)T * V * 4);
        uint8_t bytes[100];
        for (int t = 0; t < P; t += 100) {      /* the "append" up to P */
            int nb = P - t < 100 ? P - t : 100;
            hsadb_lower_forward(&run, &l1, g.tokens + t, nb, xm + (size_t)t * D);
            for (int i = 0; i < nb; i++) bytes[i] = (uint8_t)g.tokens[t + i];
            hsadb_tail_push_rows(&tail, m, xm + (size_t)t * D, bytes, nb);
        }
        hsadb_tail_from_lower(&tail, m, &l1);
        uint8_t *blob = NULL;
        size_t cap = 0, blen = 0;
        int ok = hsadb_tail_encode(&tail, m, &blob, &cap, &blen) == 0 &&
                 hsadb_tail_decode(&tail2, m, blob, blen) == 0;
        hsadb_swa_state_init(&l2, m, c->n_lower, 100, 0);
        hsadb_tail_to_lower(&tail2, m, &l2);
        for (int t = P; t < T; t += 100) {      /* continue after reopening */
            int nb = T - t < 100 ? T - t : 100;
            hsadb_lower_forward(&run, &l2, g.tokens + t, nb, xm + (size_t)t * D);
        }
        double xe = rel_err(xm + (size_t)P * D, g.x_mid + (size_t)P * D, (size_t)(T - P) * D);
        /* upper: from the tail's context rows, then the rest */
        const int64_t p0 = tail2.pos - tail2.n_ctx;
        hsadb_swa_state_init(&u2, m, hsadb_config_upper_attn_layers(c), 100, p0);
        for (int t = 0; t < tail2.n_ctx && !fail; t += 100) {
            int nb = tail2.n_ctx - t < 100 ? tail2.n_ctx - t : 100;
            fail |= hsadb_upper_forward(&run, &u2, &mv, tail2.x_mid + (size_t)t * D, nb, h2, NULL);
        }
        for (int t = P; t < T && !fail; t += 100) {
            int nb = T - t < 100 ? T - t : 100;
            fail |= hsadb_upper_forward(&run, &u2, &mv, xm + (size_t)t * D, nb, h2 + (size_t)t * D, NULL);
        }
        hsadb_logits(&run, h2 + (size_t)P * D, T - P, lg + (size_t)P * V);
        double lge = rel_err(lg + (size_t)P * V, g.logits + (size_t)P * V, (size_t)(T - P) * V);
        CHECK(ok && !fail && xe < 1e-5 && lge <= 1e-4,
              "cut at %d: tail %zu bytes, continued x_mid err %.2e, logits err %.2e", P, blen, xe, lge);
        free(blob), free(xm), free(h2), free(lg);
        hsadb_tail_free(&tail), hsadb_tail_free(&tail2);
        hsadb_swa_state_free(&l1), hsadb_swa_state_free(&l2), hsadb_swa_state_free(&u2);
    }

    /* ---- 3. a corrupted tail is refused ---- */
    {
        hsadb_tail t1, t2;
        hsadb_tail_init(&t1, m), hsadb_tail_init(&t2, m);
        uint8_t bytes[40] = {0};
        hsadb_tail_push_rows(&t1, m, x_mid, bytes, 40);
        uint8_t *blob = NULL;
        size_t cap = 0, blen = 0;
        hsadb_tail_encode(&t1, m, &blob, &cap, &blen);
        blob[blen - 1] ^= 1;
        CHECK(hsadb_tail_decode(&t2, m, blob, blen) == HSADB_ERR_CORRUPT, "flipped bit in tail -> corrupt (%s)", hsadb_last_error());
        CHECK(hsadb_tail_decode(&t2, m, blob, blen - 1) == HSADB_ERR_CORRUPT, "truncated tail -> corrupt");
        free(blob);
        hsadb_tail_free(&t1), hsadb_tail_free(&t2);
    }

    hsadb_index_free(&ma.idx);
    hsadb_swa_state_free(&lower), hsadb_swa_state_free(&upper);
    hsadb_run_free(&run);
    free(x_mid), free(hid), free(lmk), free(kmem), free(vmem), free(logits), free(tidx), free(tw);
    free(g.tokens), free(g.x_mid), free(g.lmk), free(g.kmem), free(g.vmem), free(g.logits), free(g.topk_w), free(g.topk_idx);
    free(buf);
    hsadb_model_close(m);
}

int main(void) {
    run_model("tests/data/tiny");
    run_model("tests/data/tiny-bypass");
    return tu_summary();
}
