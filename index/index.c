/* index/index.c — landmark index and tiled top-k (see index.h). */
#include "index.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

int hsadb_index_init(hsadb_index *ix, int Hm, int dr) {
    memset(ix, 0, sizeof *ix);
    ix->Hm = Hm, ix->dr = dr;
    return 0;
}

void hsadb_index_free(hsadb_index *ix) {
    free(ix->lmk);
    memset(ix, 0, sizeof *ix);
}

int hsadb_index_reserve(hsadb_index *ix, int64_t n) {
    if (n <= ix->cap) return 0;
    int64_t cap = ix->cap ? ix->cap : 256;
    while (cap < n) cap *= 2;
    float *p = realloc(ix->lmk, (size_t)cap * ix->Hm * ix->dr * sizeof(float));
    if (!p) return ENOMEM;
    ix->lmk = p, ix->cap = cap;
    return 0;
}

int hsadb_index_push(hsadb_index *ix, const float *lmk, int64_t n) {
    int rc = hsadb_index_reserve(ix, ix->n + n);
    if (rc) return rc;
    memcpy(ix->lmk + (size_t)ix->n * ix->Hm * ix->dr, lmk, (size_t)n * ix->Hm * ix->dr * sizeof(float));
    ix->n += n;
    return 0;
}

void hsadb_index_truncate(hsadb_index *ix, int64_t n) {
    if (n < ix->n) ix->n = n;
}

/* Insert (c, s) into a row's top list of `have` entries sorted by (score desc, index desc).
 * Returns the new count. Candidates arrive in increasing c, so on equal scores the newer
 * chunk ranks first. */
static inline int top_insert(int32_t *idx, float *sc, int have, int K, int32_t c, float s) {
    if (have == K && !(s >= sc[K - 1])) return have;   /* ties with the last: newer wins */
    int i = have < K ? have : K - 1;
    while (i > 0 && !(sc[i - 1] > s)) {                 /* shift down equal-or-lower scores */
        sc[i] = sc[i - 1], idx[i] = idx[i - 1];
        i--;
    }
    sc[i] = s, idx[i] = c;
    return have < K ? have + 1 : K;
}

void hsadb_index_topk(const hsadb_index *ix, int m, const float *q, int ldq, int T,
                      const int64_t *n_elig, int K, int32_t *out_idx, float *out_score,
                      float *scratch) {
    const int dr = ix->dr, ld = ix->Hm * dr;
    const float scale = 1.f / sqrtf((float)dr);
    int64_t maxe = 0;
    for (int t = 0; t < T; t++) {
        for (int r = 0; r < K; r++) out_idx[(size_t)t * K + r] = -1, out_score[(size_t)t * K + r] = -INFINITY;
        if (n_elig[t] > maxe) maxe = n_elig[t];
    }
    for (int64_t c0 = 0; c0 < maxe; c0 += HSADB_INDEX_TILE) {
        int nc = (int)(maxe - c0 < HSADB_INDEX_TILE ? maxe - c0 : HSADB_INDEX_TILE);
        /* scratch[t][j] = scale * q[t] . lmk[c0 + j][m] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, nc, dr, scale, q, ldq,
                    ix->lmk + (size_t)c0 * ld + (size_t)m * dr, ld, 0.f, scratch, nc);
        for (int t = 0; t < T; t++) {
            int64_t e = n_elig[t] - c0;
            if (e <= 0) continue;
            if (e > nc) e = nc;
            int32_t *ri = out_idx + (size_t)t * K;
            float *rs = out_score + (size_t)t * K;
            int h = 0;
            while (h < K && ri[h] >= 0) h++;
            const float *row = scratch + (size_t)t * nc;
            for (int j = 0; j < (int)e; j++) h = top_insert(ri, rs, h, K, (int32_t)(c0 + j), row[j]);
        }
    }
}

void hsadb_index_scores(const hsadb_index *ix, int m, const float *q, int64_t n, float *out) {
    if (n <= 0) return;
    const int dr = ix->dr, ld = ix->Hm * dr;
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (int)n, dr, 1.f / sqrtf((float)dr),
                ix->lmk + (size_t)m * dr, ld, q, 1, 0.f, out, 1);
}
