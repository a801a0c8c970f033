/*
 * engine/append.c — hsadb_appender: bytes in, chunk records out.
 *
 * Bytes are buffered into blocks of HSADB_BLOCK tokens. Each block goes through the lower
 * half (continuing the memory's sliding-window state from its tail), its x_mid rows fill
 * the partial chunk, every chunk that completes is encoded into landmark + K/V and staged
 * in the store writer. A batch is committed (records + tail + counters in one LMDB
 * transaction) when enough chunks are staged or a second has passed, so memory use stays
 * bounded whatever the input size, and a crash leaves the memory as of the last commit.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

#define COMMIT_CHUNKS 256      /* commit after this many staged chunks (16K tokens) */
#define COMMIT_SECONDS 1.0     /* ... or this long after the last commit */

struct hsadb_appender {
    hsadb_db              *db;
    const hsadb_model     *m;
    hsadb_store_writer    *w;
    struct hsadb_memory_rec rec;
    uint64_t               append_id;
    int64_t                start_time;
    double                 t0, last_commit;
    uint64_t               start_bytes;   /* memory size when the append began */
    uint64_t               chunks;        /* chunks completed by this append */
    uint64_t               committed;     /* bytes of this append committed */

    hsadb_run              run;
    hsadb_swa_state        lower;
    hsadb_tail             tail;          /* tail state after all processed bytes */

    uint8_t                in[HSADB_BLOCK];   /* bytes not yet processed */
    int                    n_in;
    int                    tok[HSADB_BLOCK];
    float                 *xmid;          /* [HSADB_BLOCK][D] */
    float                 *chunk_x;       /* [max_nc][S][D] completed chunks to encode */
    uint8_t               *chunk_bytes;   /* [max_nc][S] */
    struct hsadb_chunk_meta *chunk_meta;  /* [max_nc] */
    float                 *lmk, *kmem, *vmem;  /* encoder outputs, [max_nc][...] */
    void                  *rec_lmk, *rec_kv;   /* one record in the memory's dtype */
    uint8_t               *blob;          /* encoded tail */
    size_t                 blob_cap;
    int                    failed;        /* an error happened: only abort is allowed */
};

static int max_chunks(const hsadb_model *m) { return HSADB_BLOCK / m->c.chunk + 1; }

static void appender_free(hsadb_appender *a) {
    if (!a) return;
    hsadb_store_writer_end(a->w);
    hsadb_run_free(&a->run);
    hsadb_swa_state_free(&a->lower);
    hsadb_tail_free(&a->tail);
    free(a->xmid), free(a->chunk_x), free(a->chunk_bytes), free(a->chunk_meta);
    free(a->lmk), free(a->kmem), free(a->vmem), free(a->rec_lmk), free(a->rec_kv), free(a->blob);
    free(a);
}

int hsadb_appender_open(hsadb_db *db, const char *name, hsadb_appender **out) {
    hsadb_store_reader *r = NULL;
    hsadb_appender *a = NULL;
    int rc;
    *out = NULL;
    hsadb_clear_error();
    if (!db->model) return hsadb_fail(HSADB_ERR_NO_MODEL, "append needs a model");
    if (db->flags & HSADB_DB_RDONLY) return hsadb_fail(HSADB_ERR_READONLY, "database opened read-only");
    const hsadb_model *m = db->model;
    const hsadb_config *c = &m->c;
    const int S = c->chunk, D = c->dim, nc = max_chunks(m);
    const size_t lmk_n = (size_t)c->n_mem_heads * c->retr_dim, kv_n = (size_t)S * c->n_mem_heads * c->head_dim;
    if (!(a = calloc(1, sizeof *a))) return ENOMEM;
    a->db = db, a->m = m;
    a->start_time = hsadb_now();
    a->t0 = a->last_commit = hsadb_seconds();
    if ((rc = hsadb_store_writer_begin(db->store, name, a->start_time, &a->w, &a->rec))) goto fail;
    if ((rc = hsadb_db_check_memory(db, name, &a->rec))) goto fail;
    a->append_id = hsadb_store_writer_append_id(a->w);
    a->start_bytes = a->rec.n_bytes;
    rc = ENOMEM;
    if (hsadb_run_init(&a->run, m, HSADB_BLOCK) || hsadb_swa_state_init(&a->lower, m, c->n_lower, HSADB_BLOCK, 0) ||
        hsadb_tail_init(&a->tail, m))
        goto fail;
    const size_t es = a->rec.kv_dtype == HSADB_KV_F32 ? 4 : 2;
    if (!(a->xmid = malloc((size_t)HSADB_BLOCK * D * 4)) || !(a->chunk_x = malloc((size_t)nc * S * D * 4)) ||
        !(a->chunk_bytes = malloc((size_t)nc * S)) || !(a->chunk_meta = malloc((size_t)nc * sizeof *a->chunk_meta)) ||
        !(a->lmk = malloc((size_t)nc * lmk_n * 4)) || !(a->kmem = malloc((size_t)nc * kv_n * 4)) ||
        !(a->vmem = malloc((size_t)nc * kv_n * 4)) || !(a->rec_lmk = malloc(lmk_n * es)) ||
        !(a->rec_kv = malloc(2 * kv_n * es)))
        goto fail;
    /* Continue from the stored tail. */
    const void *blob;
    size_t blob_len;
    struct hsadb_memory_rec rrec;
    if ((rc = hsadb_store_reader_begin(db->store, name, &r, &rrec))) goto fail;
    if ((rc = hsadb_store_reader_tail(r, &blob, &blob_len))) goto fail;
    if (blob_len) {
        if ((rc = hsadb_tail_decode(&a->tail, m, blob, blob_len))) goto fail;
    }
    hsadb_store_reader_end(r);
    r = NULL;
    if ((uint64_t)a->tail.pos != a->rec.n_bytes || a->rec.n_chunks != a->rec.n_bytes / (uint64_t)S) {
        rc = hsadb_fail(HSADB_ERR_CORRUPT, "memory %s: tail at byte %lld but record says %llu bytes, %llu chunks",
                        name, (long long)a->tail.pos, (unsigned long long)a->rec.n_bytes,
                        (unsigned long long)a->rec.n_chunks);
        goto fail;
    }
    hsadb_tail_to_lower(&a->tail, m, &a->lower);
    if (a->tail.pos % S == 0) a->tail.part_append_id = a->append_id, a->tail.part_time = a->start_time;
    hsadb_db_apply_threads(db);
    *out = a;
    return 0;
fail:
    if (r) hsadb_store_reader_end(r);
    appender_free(a);
    return rc;
}

/* Encode the nc completed chunks gathered in a->chunk_x and stage their records. */
static int stage_chunks(hsadb_appender *a, int nc) {
    const hsadb_config *c = &a->m->c;
    const size_t lmk_n = (size_t)c->n_mem_heads * c->retr_dim, kv_n = (size_t)c->chunk * c->n_mem_heads * c->head_dim;
    hsadb_encode_chunks(&a->run, a->chunk_x, nc, a->lmk, a->kmem, a->vmem);
    for (int j = 0; j < nc; j++) {
        const float *l = a->lmk + j * lmk_n, *k = a->kmem + j * kv_n, *v = a->vmem + j * kv_n;
        if (a->rec.kv_dtype == HSADB_KV_F32) {
            memcpy(a->rec_lmk, l, lmk_n * 4);
            memcpy(a->rec_kv, k, kv_n * 4);
            memcpy((float *)a->rec_kv + kv_n, v, kv_n * 4);
        } else {
            uint16_t *ol = a->rec_lmk, *ok = a->rec_kv, *ov = ok + kv_n;
            for (size_t i = 0; i < lmk_n; i++) ol[i] = hsadb_f32_to_bf16(l[i]);
            for (size_t i = 0; i < kv_n; i++) ok[i] = hsadb_f32_to_bf16(k[i]), ov[i] = hsadb_f32_to_bf16(v[i]);
        }
        int rc = hsadb_store_writer_put_chunk(a->w, a->rec_lmk, a->rec_kv, &a->chunk_meta[j],
                                              a->chunk_bytes + (size_t)j * c->chunk);
        if (rc) return rc;
    }
    a->chunks += (uint64_t)nc;
    return 0;
}

/* Commit staged chunks and the current tail. */
static int commit(hsadb_appender *a, int final) {
    size_t len;
    hsadb_tail_from_lower(&a->tail, a->m, &a->lower);
    int rc = hsadb_tail_encode(&a->tail, a->m, &a->blob, &a->blob_cap, &len);
    if (rc) return rc;
    uint64_t mine = (uint64_t)a->tail.pos - a->start_bytes;
    rc = hsadb_store_writer_commit(a->w, a->blob, len, (uint64_t)a->tail.pos, mine, final);
    if (rc) return rc;
    a->committed = mine;
    a->last_commit = hsadb_seconds();
    return 0;
}

/* Run the buffered bytes a->in[0..n_in) through the lower half and the encoder. */
static int process_block(hsadb_appender *a) {
    const hsadb_config *c = &a->m->c;
    const int S = c->chunk, n = a->n_in;
    const int64_t p0 = a->tail.pos;
    const int part = (int)(p0 % S);                      /* rows of the partial chunk held */
    int nc = 0, rc;
    if (n == 0) return 0;
    for (int i = 0; i < n; i++) a->tok[i] = a->in[i];
    hsadb_lower_forward(&a->run, &a->lower, a->tok, n, a->xmid);
    /* Every chunk that completes in this block: its first rows may be the partial chunk at
     * the end of the tail, the rest come from this block. Then its bytes and provenance. */
    nc = hsadb_tail_gather_chunks(&a->tail, a->m, a->xmid, n, a->chunk_x);
    for (int j = 0; j < nc; j++) {
        const int64_t cs = p0 - part + (int64_t)j * S;
        const int from_tail = cs < p0 ? (int)(p0 - cs) : 0;
        uint8_t *db = a->chunk_bytes + (size_t)j * S;
        memcpy(db, a->tail.bytes + a->tail.n_ctx - from_tail, (size_t)from_tail);
        memcpy(db + from_tail, a->in + (cs + from_tail - p0), (size_t)(S - from_tail));
        a->chunk_meta[j] = (struct hsadb_chunk_meta){
            .append_id = from_tail ? a->tail.part_append_id : a->append_id,
            .byte_offset = (uint64_t)cs,
            .time = from_tail ? a->tail.part_time : a->start_time};
    }
    hsadb_tail_push_rows(&a->tail, a->m, a->xmid, a->in, n);
    if (nc) a->tail.part_append_id = a->append_id, a->tail.part_time = a->start_time;
    a->n_in = 0;
    if (nc && (rc = stage_chunks(a, nc))) return rc;
    return 0;
}

int hsadb_appender_write(hsadb_appender *a, const void *bytes, size_t n) {
    const uint8_t *p = bytes;
    int rc;
    if (a->failed) return hsadb_fail(HSADB_ERR_INVALID, "appender failed earlier; abort it");
    while (n) {
        size_t take = (size_t)(HSADB_BLOCK - a->n_in) < n ? (size_t)(HSADB_BLOCK - a->n_in) : n;
        memcpy(a->in + a->n_in, p, take);
        a->n_in += (int)take, p += take, n -= take;
        if (a->n_in < HSADB_BLOCK) break;
        if ((rc = process_block(a))) goto fail;
        if (hsadb_store_writer_staged(a->w) >= COMMIT_CHUNKS ||
            (hsadb_store_writer_staged(a->w) && hsadb_seconds() - a->last_commit >= COMMIT_SECONDS))
            if ((rc = commit(a, 0))) goto fail;
    }
    return 0;
fail:
    a->failed = 1;
    return rc;
}

void hsadb_appender_progress(const hsadb_appender *a, hsadb_append_result *o) {
    o->append_id = a->append_id;
    o->bytes = (uint64_t)a->tail.pos + (uint64_t)a->n_in - a->start_bytes;
    o->chunks = a->chunks;
    o->total_chunks = a->rec.n_chunks + a->chunks;
    o->total_bytes = (uint64_t)a->tail.pos + (uint64_t)a->n_in;
    o->seconds = hsadb_seconds() - a->t0;
}

int hsadb_appender_commit(hsadb_appender *a, hsadb_append_result *out) {
    int rc = a->failed ? hsadb_fail(HSADB_ERR_INVALID, "appender failed earlier") : 0;
    if (!rc) rc = process_block(a);
    if (!rc) rc = commit(a, 1);
    if (!rc && out) hsadb_appender_progress(a, out);
    appender_free(a);
    return rc;
}

void hsadb_appender_abort(hsadb_appender *a) { appender_free(a); }

int hsadb_append(hsadb_db *db, const char *name, const void *bytes, size_t n, hsadb_append_result *out) {
    hsadb_appender *a;
    int rc = hsadb_appender_open(db, name, &a);
    if (rc) return rc;
    if ((rc = hsadb_appender_write(a, bytes, n))) {
        hsadb_appender_abort(a);
        return rc;
    }
    return hsadb_appender_commit(a, out);
}
