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
 *
 * Threads: a hsadb_run owns a pool (util/pool.h) of one thread per usable CPU, created by
 * hsadb_run_init. Each forward call splits its block's rows among the pool's threads (capped
 * by hsadb_threads_set; small blocks run on the calling thread) and every stage runs on all
 * of them: matrix products as single-threaded OpenBLAS calls on each thread's rows (OpenBLAS
 * is put in single-threaded mode, process-wide), norms, RoPE, SwiGLU and attention row by
 * row. Rows are cut at multiples of hsadb_gemm_row_align(), so results do not depend on the
 * number of threads, bit for bit. The HSA fetch of chunk K/V (mv->kv) runs on the calling
 * thread only. A hsadb_run is used by one thread at a time.
 */
#ifndef HSADB_FORWARD_H
#define HSADB_FORWARD_H

#include <stdint.h>

#include "attention.h"
#include "index.h"
#include "model.h"
#include "pool.h"

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
    float   *scratch;      /* [threads][scratch_n] attention scores, one row per thread */
    int      scratch_n;    /* max(W, S+1) + max_rows + dh */
    hsadb_pool *pool;      /* NULL: one thread */
    int      align;        /* row cuts between threads: multiples of this */
    float   *tile;         /* [max_rows][HSADB_INDEX_TILE] top-k scoring tile */
    int64_t *n_elig;       /* [max_rows] */
    int32_t *sel_idx;      /* [Hm][max_rows][K] */
    float   *sel_s;        /* [Hm][max_rows][K] scores, then weights */
    float   *kbuf, *vbuf;  /* [Hm*K][S*dh] fetched K/V of one token's chunks */
    const float **hsa_kp, **hsa_vp; /* [Hm*K] hsa_attend's pointers into kbuf / vbuf */
    float   *hsa_w;        /* [Hm*K] hsa_attend's retrieval weights */
    int32_t *merge_idx;    /* [threads][2K] group_retrieve's merge of the query's own chunks */
    float   *merge_s;      /* [threads][2K] */
    float   *enc_lmk, *enc_k, *enc_v; /* [max_rows/S+1][...] fp32 encoder outputs (records) */
    int      device;       /* HSADB_DEVICE_CPU or HSADB_DEVICE_CUDA */
    struct hsadb_cuda_run *cu; /* the CUDA backend's state (kernels/engine_cuda.h); NULL on the CPU */
} hsadb_run;

/* The backend is chosen once, here: every stage function below then runs on it, with the same
 * host-side arguments (callers never branch on the backend). device: HSADB_DEVICE_CPU,
 * HSADB_DEVICE_CUDA (HSADB_ERR_NODEVICE if no GPU or a build without CUDA) or HSADB_DEVICE_AUTO
 * (CUDA when a GPU is present). max_rows 0 = the backend's preferred block (CPU 256 rows, CUDA
 * 16384); read r->max_rows afterwards. o (borrowed for the call; NULL = defaults): the CUDA
 * backend's gpu_gemm and gpu_flags. hsadb_run_init is the CPU backend with max_rows. */
int  hsadb_run_init(hsadb_run *r, const hsadb_model *m, int max_rows);
int  hsadb_run_init_dev(hsadb_run *r, const hsadb_model *m, int max_rows, int device, const hsadb_db_options *o);
void hsadb_run_free(hsadb_run *r);
/* Which backend HSADB_DEVICE_AUTO resolves to in this process (CUDA if a GPU is usable). */
int  hsadb_device_resolve(int device);
/* Host buffers for rows crossing the boundary: page-locked on CUDA (fast copies), plain
 * malloc on the CPU. Free with hsadb_run_host_free on the same backend. */
void *hsadb_run_host_alloc(const hsadb_run *r, size_t bytes);
void  hsadb_run_host_free(const hsadb_run *r, void *p);
/* CUDA backend: decode steps (one row) are replayed as CUDA graphs (HSADB_CUDA_GRAPHS=0 at
 * run init turns that off); the number of graph launches so far (0 on the CPU). */
int64_t hsadb_run_graph_launches(const hsadb_run *r);

/* Sliding-window state of a stack of attention layers at stream position pos. */
typedef struct hsadb_swa_state {
    int64_t        pos;    /* next position */
    int            n;      /* layers */
    hsadb_kv_ring *ring;   /* [n], cap = W + max_rows */
    float         *buf;    /* owned storage of the rings */
    struct hsadb_cuda_swa *dev; /* CUDA backend: the rings on the device (owned; NULL until a
                                   CUDA forward first uses this state; then buf is stale until
                                   hsadb_swa_state_pull) */
} hsadb_swa_state;

/* n_layers rings for blocks of up to max_rows rows, starting at position `pos` with empty
 * history (ring.start = pos). */
int  hsadb_swa_state_init(hsadb_swa_state *s, const hsadb_model *m, int n_layers, int max_rows,
                          int64_t pos);
void hsadb_swa_state_free(hsadb_swa_state *s);
/* Make the host rings (s->ring) current after forwards on the device (no-op on the CPU). */
int  hsadb_swa_state_pull(hsadb_swa_state *s);

/* Lower half over tokens[n] at positions s->pos..; writes x_mid [n][D]; advances s->pos.
 * n <= r->max_rows. s has Nl layers. */
int  hsadb_lower_forward(hsadb_run *r, hsadb_swa_state *s, const int *tokens, int n, float *x_mid);

/* Encode nc complete chunks: xs [nc][S][D] (their x_mid rows) -> lmk [nc][Hm*dr],
 * kmem and vmem [nc][S][Hm*dh]. nc <= r->max_rows / S + 1. */
int  hsadb_encode_chunks(hsadb_run *r, const float *xs, int nc, float *lmk, float *kmem, float *vmem);

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
    const struct hsadb_tier *tier; /* CUDA backend: device copy of chunks 0..base_n-1 (the GPU
                                      memory tier); NULL and unused on the CPU */
    /* CUDA backend, block cache (a tier whose K/V outgrew the device): the stored K/V records
     * of chunks[0..n-1] (< base_n) as bf16 [n][2][S][Hm*dh], K block then V block, into dst.
     * Returns 0 or an error code. May be NULL when the tier holds every chunk's K/V. */
    int  (*kv_records)(void *ctx, const uint64_t *chunks, int n, uint16_t *dst);
} hsadb_memview;

/* The GPU memory tier of one memory: its landmarks and K/V blocks as stored (bf16), resident
 * on the device and extended as the memory grows. On the CPU backend there is none: open
 * gives NULL, and the rest accept NULL.
 *
 * Landmarks are always all on the device. K/V blocks are too while they fit in the tier's K/V
 * budget (device memory less a reserve, or kv_chunks chunks when that is > 0: the db's
 * gpu_kv_chunks option); past it the K/V slots become a block cache: blocks a query selects and does
 * not find are read from the store through the memview's kv_records callback, in batches,
 * into pinned buffers and copied to free or least recently used slots.
 *
 * push: lmk [n][Hm*dr], and kv [min(n, hsadb_tier_kv_room(t))][2][S][Hm*dh] — the K/V blocks
 * of as many leading chunks as the tier takes (NULL when that is 0); bf16 records, borrowed
 * for the call. kv_room: how many more chunks' K/V blocks a push takes (INT64_MAX when
 * unbounded, 0 on the CPU). HSADB_ERR_NODEVICE when the landmarks do not fit on the device. */
typedef struct hsadb_tier hsadb_tier;
int     hsadb_tier_open(int device, const hsadb_config *c, int64_t kv_chunks, hsadb_tier **out);
int     hsadb_tier_push(hsadb_tier *t, const uint16_t *lmk, const uint16_t *kv, int64_t n);
int64_t hsadb_tier_kv_room(const hsadb_tier *t);
int64_t hsadb_tier_count(const hsadb_tier *t);
/* Block-cache counters: K/V slots (0 while every chunk's K/V is resident), chunk picks served
 * from a slot, picks fetched from the store. */
void    hsadb_tier_stats(const hsadb_tier *t, int64_t *slots, int64_t *hits, int64_t *misses);
void    hsadb_tier_close(hsadb_tier *t);

/* Optional outputs of hsadb_upper_forward, for evidence and search. Any may be NULL. */
typedef struct hsadb_trace {
    int32_t *idx;  /* [n][Ng][Hm][K] chosen chunks (-1 = empty slot), by descending score */
    float   *w;    /* [n][Ng][Hm][K] their weights */
    float   *qr;   /* [n][Ng][Hm*dr] retrieval queries of each HSA layer */
} hsadb_trace;

/* The same as store records: lmk [nc][Hm*dr], kv [nc][2][S][Hm*dh] (K block then V block),
 * in bf16 (kv_f32 = 0, the stored default) or fp32. Returns 0 or an error code. */
int  hsadb_encode_records(hsadb_run *r, const float *xs, int nc, int kv_f32, void *lmk, void *kv);

/* The rows of the chunks that complete when a block follows `part` rows of a partial chunk:
 * part_x [part][D] then x_mid [n][D] form a stream starting at a chunk boundary; every complete
 * chunk's S rows go to xs [nc][S][D]. Returns nc = (part + n) / S. */
int  hsadb_gather_chunks(const float *part_x, int part, const float *x_mid, int n, int S, int D, float *xs);

/* One append block: hsadb_lower_forward, then hsadb_encode_records of the chunks that complete
 * (hsadb_gather_chunks of part_x and the block), in one call so that a GPU keeps x_mid on the
 * device. part = s->pos % S rows of the partial chunk before the block (part_x, from the tail);
 * x_mid [n][D] out (for the tail): at least its last `keep` rows are written (the GPU copies
 * only those back); xs is host scratch [n/S+1][S][D] (the CPU's gather; unused
 * on the GPU); records out as in hsadb_encode_records; *nc = chunks completed. */
int  hsadb_append_forward(hsadb_run *r, hsadb_swa_state *s, const int *tokens, int n, const float *part_x, int part,
                          float *x_mid, int keep, float *xs, int kv_f32, void *lmk, void *kv, int *nc);

/* Upper half over x_mid [n][D] at positions s->pos..: writes the final hidden states
 * (before the final norm) into out [n][D] (may alias x_mid), advances s->pos. Every chunk
 * eligible for these positions must be in the index (else HSADB_ERR_INVALID). */
int  hsadb_upper_forward(hsadb_run *r, hsadb_swa_state *s, const hsadb_memview *mv,
                         const float *x_mid, int n, float *out, const hsadb_trace *tr);

/* logits [n][V] = lm_head(RMSNorm_final(h)) for h [n][D]. */
int  hsadb_logits(hsadb_run *r, const float *h, int n, float *logits);

#endif
