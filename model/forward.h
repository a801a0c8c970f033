/*
 * model/forward.h — the CPU forward pass, in blocks of rows (internal).
 *
 * The network is split where the database splits it:
 *
 *   hsadb_lower_forward   tokens -> x_mid (the chunking layer's input), SWA lower half.
 *                         State: the lower layers' sliding-window K/V (hsadb_lower).
 *   hsadb_encode_chunks   x_mid of complete chunks -> landmark, Kmem, Vmem (the records).
 *   hsadb_upper_forward   x_mid -> final hidden states, reading the memory through a
 *                         hsadb_memview (landmark index + K/V fetch). State: the upper
 *                         layers' sliding-window K/V (hsadb_upper), query time only.
 *   hsadb_logits          final hidden states -> logits.
 *
 * A hsadb_run owns every scratch buffer for blocks of up to max_rows rows: nothing is
 * allocated inside the forward functions. Rows of one block have consecutive positions.
 */
#ifndef HSADB_FORWARD_H
#define HSADB_FORWARD_H

#include <stdint.h>

#include "attention.h"
#include "index.h"
#include "model.h"

typedef struct hsadb_run {
    const hsadb_model *m;
    int      max_rows;     /* block size limit (tokens per call) */
    int      rows_cap;     /* rows in each buffer: max(max_rows, encoder rows) */
    float   *x;            /* [rows_cap][D] residual stream */
    float   *xb, *xb2;     /* [rows_cap][D] */
    float   *q;            /* [rows_cap][H*dh] */
    float   *k, *v;        /* [rows_cap][max(Hk,Hm)*dh] */
    float   *att;          /* [rows_cap][H*dh] */
    float   *hb, *hb2;     /* [rows_cap][F] */
    float   *qr;           /* [max_rows][Hm*dr] retrieval queries */
    float   *rope;         /* [rows_cap][dh] cos | sin of each row's position */
    double  *inv_freq;     /* [dh/2] */
    float   *scratch;      /* attention scores: max(W, S+1) */
    float   *tile;         /* [max_rows][HSADB_INDEX_TILE] top-k scoring tile */
    int64_t *n_elig;       /* [max_rows] */
    int32_t *sel_idx;      /* [Hm][max_rows][K] */
    float   *sel_s;        /* [Hm][max_rows][K] scores, then weights */
    float   *kbuf, *vbuf;  /* [Hm*K][S*dh] fetched K/V of one token's chunks */
} hsadb_run;

int  hsadb_run_init(hsadb_run *r, const hsadb_model *m, int max_rows);
void hsadb_run_free(hsadb_run *r);

/* Sliding-window state of a stack of attention layers at stream position pos. */
typedef struct hsadb_swa_state {
    int64_t        pos;    /* next position */
    int            n;      /* layers */
    hsadb_kv_ring *ring;   /* [n], cap = W + max_rows */
    float         *buf;    /* owned storage of the rings */
} hsadb_swa_state;

/* n_layers rings for blocks of up to max_rows rows, starting at position `pos` with empty
 * history (ring.start = pos). */
int  hsadb_swa_state_init(hsadb_swa_state *s, const hsadb_model *m, int n_layers, int max_rows,
                          int64_t pos);
void hsadb_swa_state_free(hsadb_swa_state *s);

/* Lower half over tokens[n] at positions s->pos..; writes x_mid [n][D]; advances s->pos.
 * n <= r->max_rows. s has Nl layers. */
void hsadb_lower_forward(hsadb_run *r, hsadb_swa_state *s, const int *tokens, int n, float *x_mid);

/* Encode nc complete chunks: xs [nc][S][D] (their x_mid rows) -> lmk [nc][Hm*dr],
 * kmem and vmem [nc][S][Hm*dh]. nc <= r->max_rows / S + 1. */
void hsadb_encode_chunks(hsadb_run *r, const float *xs, int nc, float *lmk, float *kmem, float *vmem);

/* What the upper half reads of a memory: chunks 0..base_n-1 from `index` (which may hold
 * more; they are ignored), chunks base_n.. from `extra` (chunks completed by the query's own
 * tokens; may be NULL). kv(ctx, chunk, m, k, v) writes a chunk's keys and values of memory
 * head m into k and v ([S][dh] each) and returns 0 or an error code. */
typedef struct hsadb_memview {
    const hsadb_index *index;
    int64_t            base_n;
    const hsadb_index *extra;
    int  (*kv)(void *ctx, int64_t chunk, int m, float *k, float *v);
    void *ctx;
} hsadb_memview;

/* Optional outputs of hsadb_upper_forward, for evidence and search. Any may be NULL. */
typedef struct hsadb_trace {
    int32_t *idx;  /* [n][Ng][Hm][K] chosen chunks (-1 = empty slot), by descending score */
    float   *w;    /* [n][Ng][Hm][K] their weights */
    float   *qr;   /* [n][Ng][Hm*dr] retrieval queries of each HSA layer */
} hsadb_trace;

/* Upper half over x_mid [n][D] at positions s->pos..: writes the final hidden states
 * (before the final norm) into out [n][D] (may alias x_mid), advances s->pos. Every chunk
 * eligible for these positions must be in the index (else HSADB_ERR_INVALID). */
int  hsadb_upper_forward(hsadb_run *r, hsadb_swa_state *s, const hsadb_memview *mv,
                         const float *x_mid, int n, float *out, const hsadb_trace *tr);

/* logits [n][V] = lm_head(RMSNorm_final(h)) for h [n][D]. */
void hsadb_logits(hsadb_run *r, const float *h, int n, float *logits);

#endif
