/*
 * attention/attention.h — the attention kernels of the CPU engine (internal).
 *
 * All in fp32 with fp32 softmax statistics. Head layouts are head-major rows: a query row
 * is [H][dh], a K/V row [Hk][dh]; query head i reads K/V head i / (H/Hk).
 *
 *   hsadb_kv_ring       sliding-window K/V cache of one attention layer
 *   hsadb_attn_window   causal windowed attention of a block of queries over a ring (SWA)
 *   hsadb_attn_full     bidirectional attention inside one block of rows (chunk encoder)
 *   hsadb_attn_hsa      HSA for one token: softmax inside each selected chunk, mixed by w
 *
 * Every query row's output depends only on its own inputs and the keys/values it reads, so
 * callers may split the query rows of one call among threads (model/forward.c does) and get
 * the same bits. The functions only read shared inputs; scratch is per caller.
 */
#ifndef HSADB_ATTENTION_H
#define HSADB_ATTENTION_H

#include <stdint.h>

/* Keys and values of positions [end - cap, end) of one layer; position p lives in row
 * p % cap. The buffers are owned by whoever set them up (the forward state). */
typedef struct hsadb_kv_ring {
    float  *k;      /* [cap][Hk*dh] */
    float  *v;      /* [cap][Hk*dh] */
    int     cap;
    int64_t start;  /* first position held: queries never look before it */
} hsadb_kv_ring;

/* Queries q [n][H*dh] at positions p0..p0+n-1, whose keys/values are already in the ring,
 * attend to positions max(ring->start, p-W+1)..p. Needs ring->cap >= W + n - 1.
 * out [n][H*dh].
 * scratch: at least W floats. */
void hsadb_attn_window(const float *q, const hsadb_kv_ring *ring, int64_t p0, int n,
                       int H, int Hk, int dh, int W, float *out, float *scratch);

/* Bidirectional attention of nq query rows over all nk rows of a block (the chunk encoder;
 * the queries may be any subset of the block's rows): q [nq][H*dh], k,v [nk][Hk*dh] ->
 * out [nq][H*dh]. scratch: at least nk floats. */
void hsadb_attn_full(const float *q, int nq, const float *k, const float *v, int nk, int H, int Hk,
                     int dh, float *out, float *scratch);

/* HSA output of one token: q [H*dh]; for memory head m = i / (H/Hm) and slot r < K,
 * the selected chunk's keys kblk[m*K + r] and values vblk[m*K + r] of head m ([S][dh]
 * each; NULL = empty slot) with weight w[m*K + r].
 * out [H*dh] = sum_r w * softmax_S(q.K/sqrt(dh)) V.
 * scratch: at least S + dh floats. */
void hsadb_attn_hsa(const float *q, int H, int Hm, int dh, int S, int K,
                    const float *const *kblk, const float *const *vblk, const float *w,
                    float *out, float *scratch);

#endif
