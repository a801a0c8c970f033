/*
 * storage/append_meta.c — the "append_meta" sub-database (contract in append_meta.h).
 */
#include "append_meta.h"

#include <errno.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#include "hsadb.h"
#include "util.h"

static void meta_key(uint8_t k[12], uint32_t id, uint64_t append_id) {
    for (int i = 0; i < 4; i++) k[i] = (uint8_t)(id >> (24 - 8 * i));
    for (int i = 0; i < 8; i++) k[4 + i] = (uint8_t)(append_id >> (56 - 8 * i));
}

static uint32_t key_id(const MDB_val *k) {
    const uint8_t *p = k->mv_data;
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- put / delete ---- */

struct put_ctx { uint8_t key[12]; const void *blob; size_t len; };

static int put_fn(void *txn, unsigned dbi, int exists, void *ctx) {
    struct put_ctx *c = ctx;
    MDB_val k = { sizeof c->key, c->key }, v = { c->len, (void *)c->blob };
    if (c->len) return mdb_put(txn, dbi, &k, &v, 0);
    int rc = mdb_del(txn, dbi, &k, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int hsadb_append_meta_put(hsadb_store *st, uint32_t memory_id, uint64_t append_id,
                          const void *blob, size_t len) {
    struct put_ctx c = { .blob = blob, .len = len };
    meta_key(c.key, memory_id, append_id);
    return hsadb_store_side_write(st, HSADB_APPEND_META_DB, put_fn, &c, "append metadata");
}

/* ---- get ---- */

struct get_ctx { uint8_t key[12]; void *blob; size_t len; };

static int get_fn(void *txn, unsigned dbi, int exists, void *ctx) {
    struct get_ctx *c = ctx;
    if (!exists) return 0;
    MDB_val k = { sizeof c->key, c->key }, v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    if (!(c->blob = malloc(v.mv_size ? v.mv_size : 1))) return ENOMEM;
    memcpy(c->blob, v.mv_data, v.mv_size);
    c->len = v.mv_size;
    return 0;
}

int hsadb_append_meta_get(hsadb_store *st, uint32_t memory_id, uint64_t append_id,
                          void **blob, size_t *len) {
    struct get_ctx c = { .blob = NULL };
    meta_key(c.key, memory_id, append_id);
    int rc = hsadb_store_side_read(st, HSADB_APPEND_META_DB, get_fn, &c);
    if (rc) {
        free(c.blob);
        c.blob = NULL, c.len = 0;
    }
    *blob = c.blob, *len = c.len;
    return rc;
}

/* ---- a memory's records: purge, copy, count ---- */

struct range_ctx {
    uint32_t id;
    uint64_t n;
};

/* Position cur at the memory's first record; MDB_NOTFOUND if it has none. */
static int range_first(MDB_cursor *cur, uint32_t id, MDB_val *k, MDB_val *v) {
    uint8_t start[12];
    meta_key(start, id, 0);
    *k = (MDB_val){ sizeof start, start };
    int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    if (rc == 0 && (k->mv_size != 12 || key_id(k) != id)) rc = MDB_NOTFOUND;
    return rc;
}

static int range_next(MDB_cursor *cur, uint32_t id, MDB_val *k, MDB_val *v) {
    int rc = mdb_cursor_get(cur, k, v, MDB_NEXT);
    if (rc == 0 && (k->mv_size != 12 || key_id(k) != id)) rc = MDB_NOTFOUND;
    return rc;
}

static int purge_fn(void *txn, unsigned dbi, int exists, void *ctx) {
    struct range_ctx *c = ctx;
    MDB_cursor *cur;
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return rc;
    for (rc = range_first(cur, c->id, &k, &v); rc == 0; rc = range_next(cur, c->id, &k, &v))
        if ((rc = mdb_cursor_del(cur, 0))) break;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int hsadb_append_meta_purge(hsadb_store *st, uint32_t memory_id) {
    struct range_ctx c = { .id = memory_id };
    return hsadb_store_side_write(st, HSADB_APPEND_META_DB, purge_fn, &c, "append metadata");
}

static int count_fn(void *txn, unsigned dbi, int exists, void *ctx) {
    struct range_ctx *c = ctx;
    MDB_cursor *cur;
    MDB_val k, v;
    c->n = 0;
    if (!exists) return 0;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return rc;
    for (rc = range_first(cur, c->id, &k, &v); rc == 0; rc = range_next(cur, c->id, &k, &v))
        c->n++;
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int hsadb_append_meta_count(hsadb_store *st, uint32_t memory_id, uint64_t *n) {
    struct range_ctx c = { .id = memory_id };
    int rc = hsadb_store_side_read(st, HSADB_APPEND_META_DB, count_fn, &c);
    *n = c.n;
    return rc;
}

/* Copy: read the source's records into a buffer (the source's read transaction must end
 * before the destination's write one starts: side transactions run one at a time). */
struct copy_buf { uint8_t *p; size_t len, cap; uint32_t id; };

static int collect_fn(void *txn, unsigned dbi, int exists, void *ctx) {
    struct copy_buf *b = ctx;
    MDB_cursor *cur;
    MDB_val k, v;
    if (!exists) return 0;
    int rc = mdb_cursor_open(txn, dbi, &cur);
    if (rc) return rc;
    for (rc = range_first(cur, b->id, &k, &v); rc == 0; rc = range_next(cur, b->id, &k, &v)) {
        size_t need = b->len + 12 + 8 + v.mv_size;
        if (need > b->cap) {
            size_t cap = need * 2;
            uint8_t *np = realloc(b->p, cap);
            if (!np) { rc = ENOMEM; break; }
            b->p = np, b->cap = cap;
        }
        memcpy(b->p + b->len, k.mv_data, 12);
        uint64_t n = v.mv_size;
        memcpy(b->p + b->len + 12, &n, 8);
        memcpy(b->p + b->len + 20, v.mv_data, v.mv_size);
        b->len = need;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int replay_fn(void *txn, unsigned dbi, int exists, void *ctx) {
    struct copy_buf *b = ctx;
    for (size_t off = 0; off < b->len;) {
        uint64_t n;
        memcpy(&n, b->p + off + 12, 8);
        MDB_val k = { 12, b->p + off }, v = { (size_t)n, b->p + off + 20 };
        int rc = mdb_put(txn, dbi, &k, &v, 0);
        if (rc) return rc;
        off += 20 + (size_t)n;
    }
    return 0;
}

int hsadb_append_meta_copy(hsadb_store *src, hsadb_store *dst, uint32_t memory_id) {
    struct copy_buf b = { .id = memory_id };
    int rc = hsadb_store_side_read(src, HSADB_APPEND_META_DB, collect_fn, &b);
    if (rc == 0 && b.len)
        rc = hsadb_store_side_write(dst, HSADB_APPEND_META_DB, replay_fn, &b, "append metadata");
    free(b.p);
    return rc;
}
