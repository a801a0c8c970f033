/*
 * index/index.h — the landmark index of one memory and top-k retrieval (internal).
 *
 * Holds every landmark of a memory in RAM as fp32 [n][Hm][dr] (16M tokens with Hm*dr = 128
 * is 134 MB) and answers, for retrieval queries q[t][Hm][dr], the top-K chunks per memory
 * head among the chunks eligible for each query (model-spec.md: chunk c is visible to the
 * token at position t iff (c+1)*S <= t). Scores are q.l / sqrt(dr). Ties go to the more
 * recent chunk. Scoring is tiled GEMMs (OpenBLAS) with a running top-K per row, so the
 * scratch does not grow with the memory.
 */
#ifndef HSADB_INDEX_H
#define HSADB_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct hsadb_index {
    int     Hm, dr;
    int64_t n, cap;  /* landmarks held / allocated */
    float  *lmk;     /* owned, [cap][Hm][dr] */
} hsadb_index;

#define HSADB_INDEX_TILE 4096   /* chunks scored per GEMM tile */

int  hsadb_index_init(hsadb_index *ix, int Hm, int dr);
void hsadb_index_free(hsadb_index *ix);
/* Append n landmarks ([n][Hm][dr], copied). Grows by doubling. */
int  hsadb_index_push(hsadb_index *ix, const float *lmk, int64_t n);
/* Forget landmarks past n (drops chunks a query added temporarily). */
void hsadb_index_truncate(hsadb_index *ix, int64_t n);
/* Make room for n landmarks in total (avoids reallocation later). */
int  hsadb_index_reserve(hsadb_index *ix, int64_t n);

/* Top-K for T query rows of memory head m. q points at row 0's head-m slice; rows are ldq
 * floats apart. n_elig[t] = number of eligible chunks for row t (chunks 0..n_elig-1; must be
 * <= ix->n). Output per row, K slots sorted by score descending (ties: higher chunk first);
 * unused slots get idx -1 and score -INFINITY. scratch: T * HSADB_INDEX_TILE floats. */
void hsadb_index_topk(const hsadb_index *ix, int m, const float *q, int ldq, int T,
                      const int64_t *n_elig, int K, int32_t *out_idx, float *out_score,
                      float *scratch);

/* All scores of one query row for head m over chunks [0, n): out[n]. */
void hsadb_index_scores(const hsadb_index *ix, int m, const float *q, int64_t n, float *out);

#endif
