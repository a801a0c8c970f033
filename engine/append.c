/*
 * engine/append.c — hsadb_appender: bytes in, chunk records out.
 *
 * Bytes are buffered into blocks of the backend's block size (256 tokens on the CPU, 16K on
 * the GPU: hsadb_run_init_dev picks it). Each block goes through the lower
 * half (continuing the memory's sliding-window state from its tail), its x_mid rows fill
 * the partial chunk, every chunk that completes is encoded into landmark + K/V and staged
 * in the store writer. A batch is committed (records + tail + counters in one LMDB
 * transaction) when enough chunks are staged or a second has passed, so memory use stays
 * bounded whatever the input size, and a crash leaves the memory as of the last commit.
 *
 * Intermediate commits run on a committer thread: the batch is sealed (the writer's double
 * buffer), and its LMDB write and fsync overlap the next blocks' forward passes and the
 * staging of their records. The main thread waits for a commit only when it hands over the
 * next one; the final commit is synchronous, so an append that returned success is durable.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

#define COMMIT_CHUNKS 2048     /* commit after this many staged chunks (128K tokens, 34 MB) */
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

    hsadb_run              run;
    hsadb_swa_state        lower;
    hsadb_tail             tail;          /* tail state after all processed bytes */

    int                    block;         /* rows per forward block (the run's max_rows) */
    uint8_t               *in;            /* [block] bytes not yet processed */
    int                    n_in;
    int                   *tok;           /* [block] */
    float                 *xmid;          /* [block][D] */
    float                 *chunk_x;       /* [max_nc][S][D] completed chunks to encode */
    uint8_t               *chunk_bytes;   /* [max_nc][S] */
    struct hsadb_chunk_meta *chunk_meta;  /* [max_nc] */
    void                  *rec_lmk, *rec_kv;   /* [max_nc] records in the memory's dtype */
    uint8_t               *blob;          /* encoded tail */
    size_t                 blob_cap;
    int                    failed;        /* an error happened: only abort is allowed */
    hsadb_cancel_fn        cancel;        /* polled before each block (NULL: never) */
    void                  *cancel_ctx;

    /* the committer thread; mu guards the fields below it */
    pthread_t              th;
    int                    has_th;
    pthread_mutex_t        mu;
    pthread_cond_t         cv;
    int                    pending, quit; /* a commit is handed over / the thread should exit */
    size_t                 c_len;         /* its arguments: tail blob length, */
    uint64_t               c_nbytes, c_mine;  /* stream bytes and this append's bytes */
    int                    c_rc;          /* its result, and the detail of a failure */
    char                   c_err[256];

    /* HSADB_APPEND_TRACE=1: one stderr line per commit (where the append's time goes) */
    int                    trace, n_traced, async_out;   /* lines printed; an async commit not yet reported */
    double                 c_secs, c_put, c_sync;   /* committer: its last commit, and the split */
};

/* One trace line: `work` = the main thread's forward + staging between two commits, `wait` =
 * what it then waited for the committer; the commit's own time split into the puts and
 * mdb_txn_commit (page writes + fsync). */
static void trace_line(hsadb_appender *a, const char *kind, double work, double wait, double secs, double put_s,
                       double sync_s) {
    fprintf(stderr, "append-trace %-6s %2d: main thread %.1f ms forward+staging, %.1f ms waiting; commit %.1f ms "
            "(puts %.1f, mdb_txn_commit %.1f); at %.1f ms\n", kind, a->n_traced++, work * 1e3, wait * 1e3, secs * 1e3,
            put_s * 1e3, sync_s * 1e3, (hsadb_seconds() - a->t0) * 1e3);
}

static void *committer(void *arg) {
    hsadb_appender *a = arg;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        while (!a->pending && !a->quit) pthread_cond_wait(&a->cv, &a->mu);
        if (!a->pending) break;
        pthread_mutex_unlock(&a->mu);
        const double t0 = hsadb_seconds();
        int rc = hsadb_store_writer_commit_sealed(a->w, a->blob, a->c_len, a->c_nbytes, a->c_mine, 0);
        const double t1 = hsadb_seconds();
        pthread_mutex_lock(&a->mu);
        a->c_secs = t1 - t0;
        hsadb_store_last_write_times(&a->c_put, &a->c_sync);
        a->c_rc = rc;
        if (rc) snprintf(a->c_err, sizeof a->c_err, "%s", hsadb_last_error());
        a->pending = 0;
        pthread_cond_broadcast(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

/* Wait for the commit in flight (if any); its error, with its detail, becomes ours. */
static int commit_wait(hsadb_appender *a) {
    if (!a->has_th) return 0;
    pthread_mutex_lock(&a->mu);
    while (a->pending) pthread_cond_wait(&a->cv, &a->mu);
    int rc = a->c_rc;
    a->c_rc = 0;
    pthread_mutex_unlock(&a->mu);
    return rc ? hsadb_fail(rc, "%s", a->c_err) : 0;
}

static void appender_free(hsadb_appender *a) {
    if (!a) return;
    if (a->has_th) {              /* a commit in flight completes first */
        pthread_mutex_lock(&a->mu);
        a->quit = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->th, NULL);
        pthread_cond_destroy(&a->cv);
        pthread_mutex_destroy(&a->mu);
    }
    hsadb_store_writer_end(a->w);
    /* row buffers come from the run's allocator (page-locked on the GPU) */
    hsadb_run_host_free(&a->run, a->xmid), hsadb_run_host_free(&a->run, a->chunk_x);
    hsadb_run_host_free(&a->run, a->rec_lmk), hsadb_run_host_free(&a->run, a->rec_kv);
    hsadb_run_free(&a->run);
    hsadb_swa_state_free(&a->lower);
    hsadb_tail_free(&a->tail);
    free(a->in), free(a->tok), free(a->chunk_bytes), free(a->chunk_meta), free(a->blob);
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
    const int S = c->chunk, D = c->dim;
    const size_t lmk_n = (size_t)c->n_mem_heads * c->retr_dim, kv_n = (size_t)S * c->n_mem_heads * c->head_dim;
    if (!(a = calloc(1, sizeof *a))) return ENOMEM;
    a->db = db, a->m = m;
    a->start_time = hsadb_now();
    a->t0 = a->last_commit = hsadb_seconds();
    a->trace = (db->flags & HSADB_DB_TRACE_APPEND) != 0;
    if ((rc = hsadb_store_writer_begin(db->store, name, a->start_time, &a->w, &a->rec))) goto fail;
    if ((rc = hsadb_db_check_memory(db, name, &a->rec))) goto fail;
    /* a memory written before the lexical index (or by another version of it) gets it now */
    if (!(db->flags & HSADB_DB_NO_LEXICAL) && (rc = hsadb_lexical_catch_up(a->w, NULL, NULL))) goto fail;
    a->append_id = hsadb_store_writer_append_id(a->w);
    a->start_bytes = a->rec.n_bytes;
    if ((rc = hsadb_meta_clear_stale(db, a->rec.id, a->append_id))) goto fail;
    const double t_run = hsadb_seconds();
    if ((rc = hsadb_run_init_dev(&a->run, m, 0, db->device, &db->opts))) goto fail;
    const double t_buf = hsadb_seconds();
    a->block = a->run.max_rows;
    const int B = a->block, nc = B / S + 1;
    rc = ENOMEM;
    if (hsadb_swa_state_init(&a->lower, m, c->n_lower, B, 0) || hsadb_tail_init(&a->tail, m)) goto fail;
    const size_t es = a->rec.kv_dtype == HSADB_KV_F32 ? 4 : 2;
    if (!(a->in = malloc((size_t)B)) || !(a->tok = malloc((size_t)B * sizeof(int))) ||
        !(a->xmid = hsadb_run_host_alloc(&a->run, (size_t)B * D * 4)) ||
        !(a->chunk_x = hsadb_run_host_alloc(&a->run, (size_t)nc * S * D * 4)) ||
        !(a->chunk_bytes = malloc((size_t)nc * S)) || !(a->chunk_meta = malloc((size_t)nc * sizeof *a->chunk_meta)) ||
        !(a->rec_lmk = hsadb_run_host_alloc(&a->run, (size_t)nc * lmk_n * es)) ||
        !(a->rec_kv = hsadb_run_host_alloc(&a->run, (size_t)nc * 2 * kv_n * es)))
        goto fail;
    if (a->trace)
        fprintf(stderr, "append-trace open: store %.1f ms, run %.1f ms, buffers %.1f ms\n", (t_run - a->t0) * 1e3,
                (t_buf - t_run) * 1e3, (hsadb_seconds() - t_buf) * 1e3);
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
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (pthread_create(&a->th, NULL, committer, a) == 0) a->has_th = 1;   /* else commits stay inline */
    else pthread_cond_destroy(&a->cv), pthread_mutex_destroy(&a->mu);
    if (a->tail.pos % S == 0) a->tail.part_append_id = a->append_id, a->tail.part_time = a->start_time;
    hsadb_db_apply_threads(db);
    *out = a;
    return 0;
fail:
    if (r) hsadb_store_reader_end(r);
    appender_free(a);
    return rc;
}

/* Stage the nc records the forward wrote into rec_lmk / rec_kv. */
static int stage_chunks(hsadb_appender *a, int nc) {
    const hsadb_config *c = &a->m->c;
    const size_t es = a->rec.kv_dtype == HSADB_KV_F32 ? 4 : 2;
    const size_t lmk_b = (size_t)c->n_mem_heads * c->retr_dim * es, kv_b = 2 * (size_t)c->chunk * c->n_mem_heads * c->head_dim * es;
    for (int j = 0; j < nc; j++) {
        int rc = hsadb_store_writer_put_chunk(a->w, (uint8_t *)a->rec_lmk + j * lmk_b, (uint8_t *)a->rec_kv + j * kv_b,
                                              &a->chunk_meta[j], a->chunk_bytes + (size_t)j * c->chunk);
        if (rc) return rc;
    }
    a->chunks += (uint64_t)nc;
    return 0;
}

/* Commit staged chunks and the current tail: handed to the committer thread, or inline for
 * the final commit (and when there is no thread). */
static int commit(hsadb_appender *a, int final) {
    size_t len;
    const double tw = hsadb_seconds();
    int rc = commit_wait(a);                       /* a->blob is free again */
    if (rc) return rc;
    const double work = tw - a->last_commit, waited = hsadb_seconds() - tw;   /* since the last hand-over */
    if (a->trace && a->async_out)                  /* the committer's batch, now done */
        trace_line(a, "async", work, waited, a->c_secs, a->c_put, a->c_sync), a->async_out = 0;
    if ((rc = hsadb_swa_state_pull(&a->lower))) return rc;   /* the rings may live on the device */
    hsadb_tail_from_lower(&a->tail, a->m, &a->lower);
    if ((rc = hsadb_tail_encode(&a->tail, a->m, &a->blob, &a->blob_cap, &len))) return rc;
    uint64_t mine = (uint64_t)a->tail.pos - a->start_bytes;
    if (!final && a->has_th) {
        if ((rc = hsadb_store_writer_seal(a->w))) return rc;
        pthread_mutex_lock(&a->mu);
        a->c_len = len, a->c_nbytes = (uint64_t)a->tail.pos, a->c_mine = mine;
        a->pending = 1;
        a->last_commit = hsadb_seconds();          /* the next one is timed from the hand-over */
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        a->async_out = 1;
        return 0;
    }
    const double t0 = hsadb_seconds();
    rc = hsadb_store_writer_commit(a->w, a->blob, len, (uint64_t)a->tail.pos, mine, final);
    if (rc) return rc;
    a->last_commit = hsadb_seconds();
    if (a->trace) {
        double put_s, sync_s;
        hsadb_store_last_write_times(&put_s, &sync_s);
        trace_line(a, final ? "final" : "inline", a->n_traced ? 0 : work, 0, a->last_commit - t0, put_s, sync_s);
    }
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
    /* Lower half, then the encoder over every chunk that completes in this block (its first
     * rows may be the partial chunk at the end of the tail). */
    const float *part_x = a->tail.x_mid + (size_t)(a->tail.n_ctx - part) * c->dim;
    if ((rc = hsadb_append_forward(&a->run, &a->lower, a->tok, n, part_x, part, a->xmid, a->tail.ctx_cap, a->chunk_x,
                                   a->rec.kv_dtype == HSADB_KV_F32, a->rec_lmk, a->rec_kv, &nc)))
        return rc;
    /* the chunks' bytes and provenance */
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
    /* staging goes on while the committer writes the sealed batch */
    if (nc && (rc = stage_chunks(a, nc))) return rc;
    return 0;
}

int hsadb_appender_write(hsadb_appender *a, const void *bytes, size_t n) {
    const uint8_t *p = bytes;
    int rc;
    if (a->failed) return hsadb_fail(HSADB_ERR_INVALID, "appender failed earlier; abort it");
    while (n) {
        size_t take = (size_t)(a->block - a->n_in) < n ? (size_t)(a->block - a->n_in) : n;
        memcpy(a->in + a->n_in, p, take);
        a->n_in += (int)take, p += take, n -= take;
        if (a->n_in < a->block) break;
        if (a->cancel && a->cancel(a->cancel_ctx)) {
            rc = hsadb_fail(HSADB_ERR_CANCELLED, "append cancelled");
            goto fail;
        }
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

void hsadb_appender_set_cancel(hsadb_appender *a, hsadb_cancel_fn cancel, void *ctx) {
    a->cancel = cancel, a->cancel_ctx = ctx;
}

void hsadb_appender_progress(const hsadb_appender *a, hsadb_append_result *o) {
    o->replayed = 0;
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

int hsadb_appender_set_meta(hsadb_appender *a, const hsadb_meta_pair *pairs, size_t n) {
    hsadb_clear_error();
    if (!a) return hsadb_fail(HSADB_ERR_INVALID, "set_meta: NULL appender");
    if (a->failed) return hsadb_fail(HSADB_ERR_INVALID, "set_meta: the append failed; abort it");
    return hsadb_meta_set(a->db, a->rec.id, a->append_id, pairs, n);
}

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

/* ---- idempotency ids -------------------------------------------------------------------- */

/* The result of the committed append that holds `id`: 0, HSADB_ERR_NOTFOUND, or an error. */
static int append_id_result(hsadb_db *db, const char *name, const char *id, hsadb_append_result *out) {
    struct hsadb_append_rec ar;
    uint64_t aid;
    int rc = hsadb_store_append_id_find(db->store, name, id, strlen(id), &aid, &ar);
    if (rc) return rc;
    const uint64_t S = (uint64_t)db->model->c.chunk, end = ar.start_offset + ar.bytes;
    memset(out, 0, sizeof *out);
    out->replayed = 1;
    out->append_id = aid;
    out->bytes = ar.bytes;
    out->chunks = ar.chunks;
    out->total_bytes = end;          /* the memory as that append left it */
    out->total_chunks = end / S;
    out->seconds = (double)(ar.time_end - ar.time_start);
    out->complete = ar.state == 1;
    return 0;
}

int hsadb_appender_open_id(hsadb_db *db, const char *name, const char *id, hsadb_appender **out,
                           hsadb_append_result *first) {
    int rc;
    *out = NULL;
    hsadb_clear_error();
    if (!id) return hsadb_appender_open(db, name, out);
    if (!first) return hsadb_fail(HSADB_ERR_INVALID, "append id: `first` is NULL");
    if (!*id || strlen(id) > HSADB_APPEND_ID_MAX)
        return hsadb_fail(HSADB_ERR_INVALID, "append id must be 1..%d bytes", HSADB_APPEND_ID_MAX);
    if (!db->model) return hsadb_fail(HSADB_ERR_NO_MODEL, "append needs a model");
    /* A retry of an append that committed: answered from the record, nothing appended. */
    if ((rc = append_id_result(db, name, id, first)) != HSADB_ERR_NOTFOUND) return rc;
    if ((rc = hsadb_appender_open(db, name, out))) return rc;
    /* Again under the appender lock: another process may have committed it meanwhile. */
    rc = append_id_result(db, name, id, first);
    if (rc == 0 || rc != HSADB_ERR_NOTFOUND) {
        hsadb_appender_abort(*out);
        *out = NULL;
        return rc;
    }
    hsadb_clear_error();
    if ((rc = hsadb_store_writer_set_id((*out)->w, id, strlen(id)))) {
        hsadb_appender_abort(*out);
        *out = NULL;
    }
    return rc;
}
