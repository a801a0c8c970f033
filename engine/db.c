/*
 * engine/db.c — hsadb_db: the database handle, memories, read-back, snapshot and restore.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "append_meta.h"
#include "engine.h"
#include "pool.h"
#include "util.h"

int hsadb_db_open(const char *path, const hsadb_db_options *opts, hsadb_db **out) {
    hsadb_db_options dflt = {.flags = HSADB_DB_CREATE};
    hsadb_db *db;
    int rc;
    *out = NULL;
    hsadb_clear_error();
    if (!path || !*path) return hsadb_fail(HSADB_ERR_INVALID, "no database directory given");
    if (!opts) opts = &dflt;
    if (opts->kv_dtype != HSADB_KV_DTYPE_BF16 && opts->kv_dtype != HSADB_KV_DTYPE_F32)
        return hsadb_fail(HSADB_ERR_INVALID, "kv_dtype %d: not HSADB_KV_DTYPE_BF16 or _F32", opts->kv_dtype);
    if (opts->gpu_gemm < HSADB_GPU_GEMM_BF16 || opts->gpu_gemm > HSADB_GPU_GEMM_FP32 || opts->gpu_kv_chunks < 0 ||
        (opts->gpu_flags & ~(unsigned)(HSADB_GPU_NO_GRAPHS | HSADB_GPU_TILE_ATTENTION)))
        return hsadb_fail(HSADB_ERR_INVALID, "GPU options: gpu_gemm %d, gpu_kv_chunks %lld, gpu_flags 0x%x out of range",
                          opts->gpu_gemm, (long long)opts->gpu_kv_chunks, opts->gpu_flags);
    /* Admin-only handles (no model) never run the network: they need no device. */
    const int device = opts->model ? hsadb_device_resolve(opts->device) : HSADB_DEVICE_CPU;
    if (device < 0) return device;
    if (!(db = calloc(1, sizeof *db))) return ENOMEM;
    unsigned sf = 0;
    if (opts->flags & HSADB_DB_RDONLY) sf |= HSADB_STORE_RDONLY;
    if (opts->flags & HSADB_DB_NOSYNC) sf |= HSADB_STORE_NOSYNC;
    if (opts->flags & HSADB_DB_CREATE) sf |= HSADB_STORE_CREATE;
    if (opts->flags & HSADB_DB_NO_LEXICAL) sf |= HSADB_STORE_NOLEX;
    if ((rc = hsadb_store_open(path, sf, &db->store))) {
        free(db);
        return rc;
    }
    db->model = opts->model;
    db->flags = opts->flags;
    db->threads = opts->threads;
    db->kv_dtype = opts->kv_dtype == HSADB_KV_DTYPE_F32 ? HSADB_KV_F32 : HSADB_KV_BF16;
    db->opts = *opts;
    db->device = device;
    pthread_mutex_init(&db->lock, NULL);
    *out = db;
    return 0;
}

void hsadb_db_close(hsadb_db *db) {
    if (!db) return;
    for (hsadb_lmk_cache *c = db->caches, *next; c; c = next) {
        next = c->next;
        hsadb_index_free(&c->index);
        hsadb_tier_close(c->tier);
        pthread_rwlock_destroy(&c->lock);
        free(c);
    }
    hsadb_store_close(db->store);
    pthread_mutex_destroy(&db->lock);
    free(db);
}

void hsadb_db_apply_threads(const hsadb_db *db) {
    hsadb_threads_set(db->threads);     /* the forward pass's thread limit (0 = every CPU) */
}

void hsadb_free(void *p) { free(p); }

/* ---- memories --------------------------------------------------------------------------- */

int hsadb_db_check_memory(const hsadb_db *db, const char *name, const struct hsadb_memory_rec *rec) {
    const hsadb_config *c = &db->model->c;
    if (memcmp(rec->fingerprint, db->model->fingerprint, 32) != 0) {
        char have[65];
        hsadb_hex(rec->fingerprint, 32, have);
        return hsadb_fail(HSADB_ERR_MODEL_MISMATCH, "memory %s is bound to model %.16s…, the loaded model is %.16s…",
                          name, have, db->model->fingerprint_hex);
    }
    if (rec->chunk_size != (uint32_t)c->chunk || rec->mem_heads != (uint32_t)c->n_mem_heads ||
        rec->head_dim != (uint32_t)c->head_dim || rec->retrieval_dim != (uint32_t)c->retr_dim)
        return hsadb_fail(HSADB_ERR_CORRUPT, "memory %s: stored geometry does not match its model", name);
    return 0;
}

int hsadb_memory_create(hsadb_db *db, const char *name) {
    hsadb_clear_error();
    if (!db->model) return hsadb_fail(HSADB_ERR_NO_MODEL, "creating a memory needs a model to bind it to");
    if (db->flags & HSADB_DB_RDONLY) return hsadb_fail(HSADB_ERR_READONLY, "database opened read-only");
    const hsadb_config *c = &db->model->c;
    struct hsadb_memory_rec rec = {
        .kv_dtype = (uint32_t)db->kv_dtype,
        .chunk_size = (uint32_t)c->chunk,
        .mem_heads = (uint32_t)c->n_mem_heads,
        .head_dim = (uint32_t)c->head_dim,
        .retrieval_dim = (uint32_t)c->retr_dim,
        .created = hsadb_now(),
    };
    rec.updated = rec.created;
    memcpy(rec.fingerprint, db->model->fingerprint, 32);
    return hsadb_store_memory_create(db->store, name, &rec);
}

int hsadb_memory_delete(hsadb_db *db, const char *name) {
    hsadb_clear_error();
    if (db->flags & HSADB_DB_RDONLY) return hsadb_fail(HSADB_ERR_READONLY, "database opened read-only");
    uint32_t id;
    int rc = hsadb_store_memory_id(db->store, name, &id);
    if (rc == 0) rc = hsadb_store_memory_delete(db->store, name);
    if (rc == 0) rc = hsadb_append_meta_purge(db->store, id);   /* ids are never reused */
    return rc;
}

static void fill_stat(hsadb_db *db, const char *name, const struct hsadb_memory_rec *rec, hsadb_memory_info *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->name, sizeof o->name, "%s", name);
    hsadb_hex(rec->fingerprint, 32, o->fingerprint);
    o->n_chunks = rec->n_chunks;
    o->n_bytes = rec->n_bytes;
    o->n_appends = rec->n_appends;
    o->tail_bytes = rec->chunk_size ? rec->n_bytes % rec->chunk_size : 0;
    o->created = rec->created;
    o->updated = rec->updated;
    o->kv_dtype = (int)rec->kv_dtype;
    hsadb_store_memory_bytes(db->store, name, &o->store_bytes);
}

int hsadb_memory_stat(hsadb_db *db, const char *name, hsadb_memory_info *out) {
    struct hsadb_memory_rec rec;
    hsadb_clear_error();
    int rc = hsadb_store_memory_get(db->store, name, &rec);
    if (rc) return rc;
    fill_stat(db, name, &rec, out);
    return 0;
}

typedef struct list_ctx {
    hsadb_db          *db;
    hsadb_memory_info *items;
    size_t             n, cap;
} list_ctx;

static int list_one(void *ctx, const char *name, const struct hsadb_memory_rec *rec) {
    list_ctx *L = ctx;
    if (L->n == L->cap) {
        size_t cap = L->cap ? 2 * L->cap : 16;
        hsadb_memory_info *p = realloc(L->items, cap * sizeof *p);
        if (!p) return ENOMEM;
        L->items = p, L->cap = cap;
    }
    fill_stat(L->db, name, rec, &L->items[L->n++]);
    return 0;
}

int hsadb_memory_list(hsadb_db *db, hsadb_memory_info **out, size_t *n) {
    list_ctx L = {.db = db};
    hsadb_clear_error();
    int rc = hsadb_store_memory_foreach(db->store, list_one, &L);
    if (rc) {
        free(L.items);
        return rc;
    }
    *out = L.items, *n = L.n;
    return 0;
}

int hsadb_memory_read(hsadb_db *db, const char *name, uint64_t offset, void *buf, size_t n, size_t *got) {
    hsadb_store_reader *r;
    struct hsadb_memory_rec rec;
    int rc;
    *got = 0;
    hsadb_clear_error();
    if ((rc = hsadb_store_reader_begin(db->store, name, &r, &rec))) return rc;
    const uint64_t S = rec.chunk_size, stored = rec.n_chunks * S;
    uint8_t *dst = buf;
    size_t done = 0;
    while (done < n && offset < rec.n_bytes) {
        if (offset < stored) {            /* from a chunk record */
            struct hsadb_chunk_meta meta;
            const uint8_t *bytes;
            if ((rc = hsadb_store_reader_chunk(r, offset / S, &meta, &bytes))) goto done;
            size_t in = (size_t)(offset % S), take = (size_t)S - in;
            if (take > n - done) take = n - done;
            memcpy(dst + done, bytes + in, take);
            done += take, offset += take;
        } else {                          /* the partial chunk, from the tail */
            const void *blob;
            const uint8_t *tb;
            size_t len, n_ctx;
            if ((rc = hsadb_store_reader_tail(r, &blob, &len))) goto done;
            if ((rc = hsadb_tail_blob_bytes(blob, len, &tb, &n_ctx))) goto done;
            if (rec.n_bytes - offset > n_ctx) {
                rc = hsadb_fail(HSADB_ERR_CORRUPT, "memory %s: tail does not hold byte %llu", name, (unsigned long long)offset);
                goto done;
            }
            size_t take = (size_t)(rec.n_bytes - offset);
            if (take > n - done) take = n - done;
            memcpy(dst + done, tb + (n_ctx - (rec.n_bytes - offset)), take);
            done += take, offset += take;
        }
    }
    *got = done;
done:
    hsadb_store_reader_end(r);
    return rc;
}

/* ---- landmark cache --------------------------------------------------------------------- */

/* Bring the GPU memory tier up to `want` chunks, in batches: landmarks by one cursor walk, K/V
 * blocks by hsadb_store_reader_kv_batch (io_uring reads of data.mdb, 64 in flight), then one
 * upload per batch. Past the tier's K/V budget only landmarks are read (the block cache fetches
 * K/V blocks when queries select them). fp32 (test) memories are rounded to bf16 on the way. */
static int tier_extend(hsadb_tier *t, hsadb_store_reader *r, const struct hsadb_memory_rec *rec, int64_t want) {
    const size_t ln = (size_t)rec->mem_heads * rec->retrieval_dim;
    const size_t per = (size_t)rec->chunk_size * rec->mem_heads * rec->head_dim;
    const int f32 = rec->kv_dtype == HSADB_KV_F32;
    const int64_t B = 2048;                      /* chunks per batch: 34 MB of K/V (shipped model) */
    uint16_t *lmk = malloc((size_t)B * ln * 2), *kv = malloc((size_t)B * 2 * per * 2);
    float *l32 = f32 ? malloc((size_t)B * ln * 4) : NULL, *kv32 = f32 ? malloc((size_t)B * 2 * per * 4) : NULL;
    int rc = 0;
    if (!lmk || !kv || (f32 && (!l32 || !kv32))) { rc = ENOMEM; goto done; }
    while (hsadb_tier_count(t) < want) {
        const int64_t first = hsadb_tier_count(t), nb = want - first < B ? want - first : B;
        const int64_t room = hsadb_tier_kv_room(t), nkv = nb < room ? nb : room;
        if ((rc = hsadb_store_reader_landmarks(r, (uint64_t)first, (uint64_t)nb, f32 ? (void *)l32 : (void *)lmk))) break;
        if (nkv > 0 &&
            (rc = hsadb_store_reader_kv_batch(r, (uint64_t)first, (uint64_t)nkv, f32 ? (void *)kv32 : (void *)kv))) break;
        if (f32) {
            for (size_t i = 0; i < (size_t)nb * ln; i++) lmk[i] = hsadb_f32_to_bf16(l32[i]);
            for (size_t i = 0; i < (size_t)nkv * 2 * per; i++) kv[i] = hsadb_f32_to_bf16(kv32[i]);
        }
        if ((rc = hsadb_tier_push(t, lmk, kv, nb))) break;
    }
done:
    free(lmk), free(kv), free(l32), free(kv32);
    return rc;
}

int hsadb_db_landmarks(hsadb_db *db, hsadb_store_reader *r, const struct hsadb_memory_rec *rec,
                       hsadb_lmk_cache **out) {
    hsadb_lmk_cache *c;
    int rc = 0;
    pthread_mutex_lock(&db->lock);
    for (c = db->caches; c && c->memory_id != rec->id; c = c->next) {}
    if (!c) {
        if (!(c = calloc(1, sizeof *c))) { pthread_mutex_unlock(&db->lock); return ENOMEM; }
        c->memory_id = rec->id;
        hsadb_index_init(&c->index, (int)rec->mem_heads, (int)rec->retrieval_dim);
        if ((rc = hsadb_tier_open(db->device, &db->model->c, db->opts.gpu_kv_chunks, &c->tier))) {
            hsadb_index_free(&c->index);
            free(c);
            pthread_mutex_unlock(&db->lock);
            return rc;
        }
        pthread_rwlock_init(&c->lock, NULL);
        c->next = db->caches;
        db->caches = c;
    }
    pthread_mutex_unlock(&db->lock);
    const int64_t want = (int64_t)rec->n_chunks;
    /* Fast path: already holds this view's chunks (queries hold the read lock while they run,
     * so taking the write lock here would serialise every query on the memory). */
    pthread_rwlock_rdlock(&c->lock);
    if (c->index.n >= want && (!c->tier || hsadb_tier_count(c->tier) >= want)) {
        *out = c;
        return 0;
    }
    pthread_rwlock_unlock(&c->lock);
    pthread_rwlock_wrlock(&c->lock);
    const size_t per = (size_t)rec->mem_heads * rec->retrieval_dim;
    /* A newer view may have extended it already: older views only read a prefix. */
    if (c->index.n < want) {
        if ((rc = hsadb_index_reserve(&c->index, want))) goto unlock;
        /* Read in batches straight into the index, converting bf16 in place. */
        const int64_t B = 4096;
        uint16_t *tmp = rec->kv_dtype == HSADB_KV_BF16 ? malloc((size_t)B * per * 2) : NULL;
        if (rec->kv_dtype == HSADB_KV_BF16 && !tmp) { rc = ENOMEM; goto unlock; }
        while (c->index.n < want) {
            int64_t nb = want - c->index.n < B ? want - c->index.n : B;
            float *dst = c->index.lmk + (size_t)c->index.n * per;
            if ((rc = hsadb_store_reader_landmarks(r, (uint64_t)c->index.n, (uint64_t)nb, tmp ? (void *)tmp : dst))) break;
            if (tmp)
                for (size_t i = 0; i < (size_t)nb * per; i++) dst[i] = hsadb_bf16_to_f32(tmp[i]);
            c->index.n += nb;
        }
        free(tmp);
    }
    if (!rc && c->tier) rc = tier_extend(c->tier, r, rec, want);
unlock:
    pthread_rwlock_unlock(&c->lock);
    if (rc) return rc;
    pthread_rwlock_rdlock(&c->lock);
    *out = c;
    return 0;
}

/* ---- snapshot / restore ----------------------------------------------------------------- */

/* A one-memory copy takes its appends' metadata too (same id), before the copy is sealed. */
static int copy_append_meta(hsadb_store *src, const char *dest_dir, void *ctx) {
    hsadb_store *dst = NULL;
    int rc = hsadb_store_open(dest_dir, 0, &dst);
    if (rc == 0) rc = hsadb_append_meta_copy(src, dst, *(const uint32_t *)ctx);
    hsadb_store_close(dst);
    return rc;
}

int hsadb_snapshot(hsadb_db *db, const char *memory, const char *dest_dir) {
    hsadb_clear_error();
    uint32_t id = 0;
    int rc = memory ? hsadb_store_memory_id(db->store, memory, &id) : 0;
    if (rc == 0)
        rc = memory ? hsadb_store_snapshot_with(db->store, memory, dest_dir, copy_append_meta, &id)
                    : hsadb_store_snapshot(db->store, NULL, dest_dir);
    return rc;
}

typedef struct check_ctx {
    const hsadb_model *model;
} check_ctx;

static int check_one(void *ctx, const char *name, const struct hsadb_memory_rec *rec) {
    const hsadb_model *m = ((check_ctx *)ctx)->model;
    if (memcmp(rec->fingerprint, m->fingerprint, 32) != 0) {
        char have[65];
        hsadb_hex(rec->fingerprint, 32, have);
        return hsadb_fail(HSADB_ERR_MODEL_MISMATCH, "snapshot memory %s is bound to model %.16s…, the configured model is %.16s…",
                          name, have, m->fingerprint_hex);
    }
    return 0;
}

/* Keeps the first damaged record a check reports (restore names it in its error). */
typedef struct first_damage {
    char text[512];
} first_damage;

static int keep_first(void *ctx, const struct hsadb_store_damage *d) {
    first_damage *f = ctx;
    if (f->text[0]) return 0;
    if (d->n == UINT64_MAX)
        snprintf(f->text, sizeof f->text, "%s%s%s%s record: %s", d->memory ? "memory '" : "",
                 d->memory ? d->memory : "", d->memory ? "': " : "", d->db, d->what);
    else
        snprintf(f->text, sizeof f->text, "%s%s%s%s record %llu: %s", d->memory ? "memory '" : "",
                 d->memory ? d->memory : "", d->memory ? "': " : "", d->db,
                 (unsigned long long)d->n, d->what);
    return 0;
}

/*
 * Restore: the snapshot must be complete (its marker names data.mdb's size and digest), every
 * memory in it sound (hsadb_store_check: every record the memory records name is there and
 * well formed) and bound to the model, before one byte of dest is written.
 */
int hsadb_restore(const char *snapshot_dir, const char *dest_dir, const hsadb_model *model) {
    struct hsadb_store_check_result res;
    first_damage fd = {{0}};
    hsadb_store *src;
    int rc;
    hsadb_clear_error();
    if (!snapshot_dir || !dest_dir) return hsadb_fail(HSADB_ERR_INVALID, "restore: NULL argument");
    if ((rc = hsadb_store_snapshot_verify(snapshot_dir, NULL, 0))) return rc;
    if ((rc = hsadb_store_open(snapshot_dir, HSADB_STORE_RDONLY, &src))) return rc;
    if (model) {
        check_ctx cc = {model};
        if ((rc = hsadb_store_memory_foreach(src, check_one, &cc))) goto done;
    }
    if ((rc = hsadb_store_check(src, NULL, keep_first, &fd, &res))) goto done;
    if (res.n_damaged) {
        rc = hsadb_fail(HSADB_ERR_CORRUPT, "snapshot %s is damaged: %llu record%s (%s)", snapshot_dir,
                        (unsigned long long)res.n_damaged, res.n_damaged == 1 ? "" : "s", fd.text);
        goto done;
    }
    rc = hsadb_store_copy(src, dest_dir);
done:
    hsadb_store_close(src);
    return rc;
}

/* ---- check ------------------------------------------------------------------------------ */

typedef struct damage_relay {
    hsadb_damage_fn fn;
    void *ctx;
} damage_relay;

static int relay_damage(void *ctx, const struct hsadb_store_damage *d) {
    damage_relay *r = ctx;
    hsadb_damage pub = {d->memory, d->db, d->n, d->what};
    return r->fn ? r->fn(r->ctx, &pub) : 0;
}

int hsadb_check(hsadb_db *db, const char *memory, hsadb_damage_fn fn, void *ctx, hsadb_check_result *out) {
    struct hsadb_store_check_result res = {0, 0};
    damage_relay relay = {fn, ctx};
    int rc;
    hsadb_clear_error();
    if (!db) return hsadb_fail(HSADB_ERR_INVALID, "check: NULL database");
    rc = hsadb_store_check(db->store, memory, relay_damage, &relay, &res);
    if (out) {
        out->n_records = res.n_records;
        out->n_damaged = res.n_damaged;
    }
    return rc;
}
