/*
 * engine/engine.h — what the engine's files share (internal).
 *
 *   db.c      hsadb_db: open/close, memories, read-back, snapshot/restore
 *   tail.c    the tail blob: the state a memory needs to continue its stream exactly
 *   append.c  hsadb_appender: bytes -> lower half -> chunk encoder -> store records
 *   query.c   hsadb_query / hsadb_search: the whole network over the memory
 */
#ifndef HSADB_ENGINE_H
#define HSADB_ENGINE_H

#include <pthread.h>

#include "forward.h"
#include "hsadb.h"
#include "index.h"
#include "model.h"
#include "store.h"

/* Landmarks of one memory cached in RAM, shared by the queries of this process. */
typedef struct hsadb_lmk_cache {
    uint32_t                memory_id;
    hsadb_index             index;     /* chunks 0..index.n-1 of the memory, fp32 */
    hsadb_tier             *tier;      /* GPU memory tier (CUDA backend; NULL on the CPU): the
                                          same chunks' landmarks and K/V on the device */
    pthread_rwlock_t        lock;      /* readers: queries; writer: extending the index */
    struct hsadb_lmk_cache *next;
} hsadb_lmk_cache;

struct hsadb_db {
    hsadb_store       *store;
    const hsadb_model *model;          /* borrowed; NULL for admin-only use */
    unsigned           flags;
    int                threads;
    int                kv_dtype;       /* enum hsadb_kv_dtype of the memories it creates */
    hsadb_db_options   opts;           /* as given to hsadb_db_open (the GPU settings) */
    int                device;         /* resolved backend: HSADB_DEVICE_CPU or _CUDA */
    pthread_mutex_t    lock;           /* guards `caches` */
    hsadb_lmk_cache   *caches;
};

/* Tokens per forward block of a query (appends use the backend's preferred block). */
#define HSADB_BLOCK 256

/* ---- tail (tail.c) ---- */

/* The tail of a memory at stream position pos (= bytes so far):
 *   - lower-layer K/V of the last min(pos, W-1) positions (appends continue exactly);
 *   - x_mid and bytes of the last n_ctx = min(pos, max(Nu*(W-1), S-1)) positions, Nu the
 *     number of upper attention layers: a query re-runs the upper half over them, so its
 *     answer equals what the full-sequence forward would give; the last pos % S of them
 *     are the partial chunk the next append completes;
 *   - provenance of the partial chunk's first byte. */
typedef struct hsadb_tail {
    int64_t  pos;
    int      n_kv;          /* positions of lower K/V held */
    int      n_ctx;         /* x_mid rows held */
    int      ctx_cap;       /* max(Nu*(W-1), S-1) */
    float   *kv;            /* [Nl][2][ctx... W-1][Hk*dh]: layer l K rows then V rows */
    float   *x_mid;         /* [ctx_cap][D], oldest first */
    uint8_t *bytes;         /* [ctx_cap] */
    uint64_t part_append_id;
    int64_t  part_time;
} hsadb_tail;

int  hsadb_tail_init(hsadb_tail *t, const hsadb_model *m);     /* empty tail, pos 0 */
void hsadb_tail_free(hsadb_tail *t);
/* Parse a stored blob (validated against the model; HSADB_ERR_CORRUPT if it does not fit). */
int  hsadb_tail_decode(hsadb_tail *t, const hsadb_model *m, const void *blob, size_t len);
/* Serialise into *buf (grown with realloc as needed; caller frees). */
int  hsadb_tail_encode(const hsadb_tail *t, const hsadb_model *m, uint8_t **buf, size_t *cap,
                       size_t *len);
/* The stream bytes a stored tail blob holds, without decoding it: *bytes points into blob at
 * the last *n bytes of the stream. HSADB_ERR_CORRUPT if the blob is too short. */
int  hsadb_tail_blob_bytes(const void *blob, size_t len, const uint8_t **bytes, size_t *n);
/* Copy the x_mid rows of the chunks that complete within a block: positions p0..p0+n-1 of
 * the block are x_mid[0..n) (and bytes/tokens), the tail holds the rows before p0 (it has not
 * been pushed yet). For each chunk ending in the block, its S rows go to xs [nc][S][D].
 * Returns the number of chunks nc. */
int  hsadb_tail_gather_chunks(const hsadb_tail *t, const hsadb_model *m, const float *x_mid, int n,
                              float *xs);
/* Put the lower K/V of the tail into fresh rings (state at position t->pos). */
void hsadb_tail_to_lower(const hsadb_tail *t, const hsadb_model *m, hsadb_swa_state *s);
/* Record the lower K/V of the last min(pos, W-1) positions from the rings. */
void hsadb_tail_from_lower(hsadb_tail *t, const hsadb_model *m, const hsadb_swa_state *s);
/* Push x_mid rows and their bytes (positions t->pos..t->pos+n-1); advances t->pos. */
void hsadb_tail_push_rows(hsadb_tail *t, const hsadb_model *m, const float *x_mid,
                          const uint8_t *bytes, int n);

/* ---- db.c helpers used by append.c and query.c ---- */

/* Check a memory record against the db's model (fingerprint and geometry). */
int hsadb_db_check_memory(const hsadb_db *db, const char *name, const struct hsadb_memory_rec *rec);
/* Get (creating) the landmark cache of memory `rec` and bring it up to rec->n_chunks
 * using reader r. Returns it read-locked: release with pthread_rwlock_unlock(&c->lock). */
int hsadb_db_landmarks(hsadb_db *db, hsadb_store_reader *r, const struct hsadb_memory_rec *rec,
                       hsadb_lmk_cache **out);
void hsadb_db_apply_threads(const hsadb_db *db);

/* ---- metadata of appends (meta.c) ---- */

/* Check and encode pairs (HSADB_ERR_INVALID with the broken bound); *blob malloc'd, NULL
 * when n = 0. */
int hsadb_meta_encode(const hsadb_meta_pair *p, size_t n, uint8_t **blob, size_t *len);
/* Store (n > 0) or remove (n = 0) the pairs of one append. */
int hsadb_meta_set(hsadb_db *db, uint32_t memory_id, uint64_t append_id,
                   const hsadb_meta_pair *pairs, size_t n);
/* Remove a record left at append_id by an append that never committed. */
int hsadb_meta_clear_stale(hsadb_db *db, uint32_t memory_id, uint64_t append_id);

/* ---- passage search (search.c) and the model's chunk scores it fuses (query.c) ---- */

/* out[0..rec->n_chunks): the retrieval probability of each stored chunk for `question` (as
 * hsadb_search scores them), read through reader r (borrowed) whose view is rec. */
int hsadb_model_chunk_scores(hsadb_db *db, const char *name, hsadb_store_reader *r,
                             const struct hsadb_memory_rec *rec, const char *question, size_t qlen,
                             hsadb_cancel_fn cancel, void *cancel_ctx, float *out);
/* Builds what the lexical index of the writer's memory lacks, in bounded transactions (an
 * appender calls it when it opens; hsadb_lexical_build for reindex). */
int hsadb_lexical_catch_up(hsadb_store_writer *w, hsadb_progress_fn progress, void *ctx);

#endif
