/*
 * tests/test_store.c — tests of the LMDB store (storage/store.h).
 *
 * Each section prints one line per check and the program ends with "N passed, N failed".
 * Temporary stores live under /tmp/hsadb-store-* and are removed at the end. Raw LMDB
 * access (to corrupt records or read the map size) only happens while the store is closed:
 * LMDB forbids opening one env twice in a process.
 */
#include "test_util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <lmdb.h>

#include "hsadb.h"
#include "store.h"
#include "util.h"

static char g_root[256];   /* parent of every test directory */

static void mkpath(char *buf, size_t n, const char *leaf) { snprintf(buf, n, "%s/%s", g_root, leaf); }

/* The error detail, or "" after a success (the detail of an earlier failure lingers). */
static const char *why(int rc) { return rc ? hsadb_last_error() : ""; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* ---- deterministic content ------------------------------------------------------------- */

static void fill(void *buf, size_t n, uint64_t seed) {
    uint8_t *p = buf;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
    size_t i;
    for (i = 0; i < n; i++) {
        if ((i & 7) == 0) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        }
        p[i] = (uint8_t)(x >> (8 * (i & 7)));
    }
}

struct sizes { size_t lm, kv, S; };

static struct sizes sizes_of(const struct hsadb_memory_rec *r) {
    size_t el = r->kv_dtype == HSADB_KV_BF16 ? 2 : 4;
    struct sizes s = { (size_t)r->mem_heads * r->retrieval_dim * el,
                       2 * (size_t)r->chunk_size * r->mem_heads * r->head_dim * el,
                       r->chunk_size };
    return s;
}

static struct hsadb_memory_rec geom(int dtype, uint32_t S, uint32_t hm, uint32_t dh, uint32_t dr) {
    struct hsadb_memory_rec r;
    memset(&r, 0, sizeof r);
    r.kv_dtype = (uint32_t)dtype;
    r.chunk_size = S;
    r.mem_heads = hm;
    r.head_dim = dh;
    r.retrieval_dim = dr;
    fill(r.fingerprint, 32, 77);
    return r;
}

/* Scratch buffers for one chunk. */
struct scratch { uint8_t *lm, *kv, *bytes, *tmp; };

static void scratch_init(struct scratch *s, struct sizes z) {
    s->lm = malloc(z.lm);
    s->kv = malloc(z.kv);
    s->bytes = malloc(z.S);
    s->tmp = malloc(z.kv > 4096 ? z.kv : 4096);
}
static void scratch_free(struct scratch *s) {
    free(s->lm); free(s->kv); free(s->bytes); free(s->tmp);
}

/* Content of chunk i of a memory tagged `salt`. */
static void chunk_content(struct scratch *s, struct sizes z, uint64_t salt, uint64_t i) {
    fill(s->lm, z.lm, salt * 1000003 + i * 4 + 1);
    fill(s->kv, z.kv, salt * 1000003 + i * 4 + 2);
    fill(s->bytes, z.S, salt * 1000003 + i * 4 + 3);
}

/* The test's stream model: n_bytes = n_chunks * S + n_chunks % 7; the tail blob encodes
 * n_chunks and n_bytes, so a reader can check the tail matches the record. */
static uint64_t stream_bytes(uint64_t n_chunks, size_t S) { return n_chunks * S + n_chunks % 7; }

struct tailblob { uint64_t n_chunks, n_bytes, check; uint8_t pad[7]; };

static void tail_make(struct tailblob *t, uint64_t n, size_t S) {
    memset(t, 0, sizeof *t);
    t->n_chunks = n;
    t->n_bytes = stream_bytes(n, S);
    t->check = ~n * 31;
    memset(t->pad, (int)(n & 0xff), sizeof t->pad);
}

/* Stage chunks from..to-1 with salt's content (nothing committed). */
static int stage_range(hsadb_store_writer *w, struct sizes z, uint64_t salt, uint64_t from, uint64_t to,
                       struct scratch *s) {
    struct hsadb_chunk_meta m;
    for (uint64_t i = from; i < to; i++) {
        chunk_content(s, z, salt, i);
        m.append_id = hsadb_store_writer_append_id(w);
        m.byte_offset = i * z.S;
        m.time = 1700000000 + (int64_t)m.append_id;
        int rc = hsadb_store_writer_put_chunk(w, s->lm, s->kv, &m, s->bytes);
        if (rc) return rc;
    }
    return 0;
}

/* Stages k chunks after the writer's committed+staged ones and commits them with the tail. */
static int append_batch(hsadb_store_writer *w, uint64_t *n_chunks, uint64_t append_start,
                        struct sizes z, uint64_t salt, size_t k, struct scratch *s, int final) {
    struct tailblob t;
    uint64_t n = *n_chunks;
    int rc;

    if ((rc = stage_range(w, z, salt, n, n + k, s))) return rc;
    tail_make(&t, n + k, z.S);
    rc = hsadb_store_writer_commit(w, &t, sizeof t, t.n_bytes, t.n_bytes - append_start, final);
    if (rc == 0) *n_chunks = n + k;
    return rc;
}

/*
 * Verifies chunks [0, rec.n_chunks) of a memory against chunk_content(salt), its tail
 * against the record, and (if check_appends) that the append records tile the stream.
 * Returns the number of problems (printing the first few).
 */
static int verify_memory(hsadb_store *st, const char *name, uint64_t salt, int check_appends,
                         uint64_t *n_out) {
    struct hsadb_memory_rec rec;
    hsadb_store_reader *r;
    struct scratch s;
    struct sizes z;
    uint8_t *lms = NULL;
    const void *p;
    const uint8_t *bytes;
    struct hsadb_chunk_meta m;
    size_t len;
    uint64_t i;
    int bad = 0, rc;

    if ((rc = hsadb_store_reader_begin(st, name, &r, &rec))) {
        printf("  verify %s: reader_begin: %s (%s)\n", name, hsadb_strerror(rc), hsadb_last_error());
        return 1;
    }
    z = sizes_of(&rec);
    scratch_init(&s, z);
    if (n_out) *n_out = rec.n_chunks;
    if (rec.n_chunks) {
        lms = malloc(rec.n_chunks * z.lm);
        rc = hsadb_store_reader_landmarks(r, 0, rec.n_chunks, lms);
        if (rc) {
            printf("  verify %s: landmarks: %s\n", name, hsadb_last_error());
            bad++;
        }
    }
    for (i = 0; i < rec.n_chunks && bad < 5; i++) {
        chunk_content(&s, z, salt, i);
        if (lms && memcmp(lms + i * z.lm, s.lm, z.lm)) { printf("  %s: landmark %" PRIu64 " differs\n", name, i); bad++; }
        rc = hsadb_store_reader_kv(r, i, &p, &len);
        if (rc || len != z.kv || memcmp(p, s.kv, z.kv)) { printf("  %s: kv %" PRIu64 " rc %d len %zu\n", name, i, rc, len); bad++; }
        rc = hsadb_store_reader_chunk(r, i, &m, &bytes);
        if (rc || m.byte_offset != i * z.S || memcmp(bytes, s.bytes, z.S)) { printf("  %s: chunk %" PRIu64 " rc %d\n", name, i, rc); bad++; }
    }
    rc = hsadb_store_reader_tail(r, &p, &len);
    if (rec.n_chunks || len) {
        struct tailblob t;
        tail_make(&t, rec.n_chunks, z.S);
        if (rc || len != sizeof t || memcmp(p, &t, sizeof t) || rec.n_bytes != t.n_bytes) {
            printf("  %s: tail inconsistent with n_chunks %" PRIu64 " (len %zu)\n", name, rec.n_chunks, len);
            bad++;
        }
    }
    if (check_appends) {
        uint64_t a, off = 0, chunks = 0;
        struct hsadb_append_rec ar;
        for (a = 1; a <= rec.n_appends; a++) {
            if (hsadb_store_reader_append(r, a, &ar)) { bad++; printf("  %s: append %" PRIu64 " missing\n", name, a); break; }
            if (ar.start_offset != off) { bad++; printf("  %s: append %" PRIu64 " starts at %" PRIu64 ", expected %" PRIu64 "\n", name, a, ar.start_offset, off); }
            off = ar.start_offset + ar.bytes;
            chunks += ar.chunks;
        }
        if (off != rec.n_bytes || chunks != rec.n_chunks) {
            printf("  %s: appends cover %" PRIu64 " bytes / %" PRIu64 " chunks, record says %" PRIu64 " / %" PRIu64 "\n",
                   name, off, chunks, rec.n_bytes, rec.n_chunks);
            bad++;
        }
    }
    hsadb_store_reader_end(r);
    free(lms);
    scratch_free(&s);
    return bad;
}

/* Raw LMDB: open an env (store closed!) read-only. */
static int raw_open(const char *dir, unsigned flags, MDB_env **env) {
    int rc;
    if ((rc = mdb_env_create(env))) return rc;
    mdb_env_set_maxdbs(*env, 16);
    if ((rc = mdb_env_open(*env, dir, MDB_NOTLS | flags, 0644))) {
        mdb_env_close(*env);
        *env = NULL;
    }
    return rc;
}

/* Raw LMDB: number of records with memory id prefix `id` in the keyed databases. */
static long raw_count_id(const char *dir, uint32_t id) {
    static const char *dbs[] = { "landmarks", "kv", "chunks", "tails", "appends" };
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_cursor *c;
    MDB_val k, v;
    long n = 0;
    uint8_t kb[4] = { (uint8_t)(id >> 24), (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id };
    int i, rc;

    if (raw_open(dir, MDB_RDONLY, &env)) return -1;
    mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    for (i = 0; i < 5; i++) {
        if (mdb_dbi_open(txn, dbs[i], 0, &dbi)) continue;
        mdb_cursor_open(txn, dbi, &c);
        k.mv_size = 4;
        k.mv_data = kb;
        for (rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE); rc == 0 && k.mv_size >= 4 && !memcmp(k.mv_data, kb, 4);
             rc = mdb_cursor_get(c, &k, &v, MDB_NEXT))
            n++;
        mdb_cursor_close(c);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return n;
}

/* Raw LMDB: put (or delete, v == NULL) one key of a named database. */
static int raw_put(const char *dir, const char *db, const void *key, size_t klen, const void *val,
                   size_t vlen) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = { klen, (void *)key }, v = { vlen, (void *)val };
    int rc;
    if ((rc = raw_open(dir, 0, &env))) return rc;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn))) goto out;
    if ((rc = mdb_dbi_open(txn, db, MDB_CREATE, &dbi))) { mdb_txn_abort(txn); goto out; }
    rc = val ? mdb_put(txn, dbi, &k, &v, 0) : mdb_del(txn, dbi, &k, NULL);
    if (rc) mdb_txn_abort(txn);
    else rc = mdb_txn_commit(txn);
out:
    mdb_env_close(env);
    return rc;
}

static size_t raw_mapsize(const char *dir) {
    MDB_env *env;
    MDB_envinfo info;
    if (raw_open(dir, MDB_RDONLY, &env)) return 0;
    mdb_env_info(env, &info);
    mdb_env_close(env);
    return info.me_mapsize;
}

/* ---- 1. memories ----------------------------------------------------------------------- */

struct names { char v[8][HSADB_NAME_MAX + 1]; int n; };

static int collect(void *ctx, const char *name, const struct hsadb_memory_rec *rec) {
    struct names *ns = ctx;
    (void)rec;
    if (ns->n < 8) snprintf(ns->v[ns->n], sizeof ns->v[0], "%s", name);
    ns->n++;
    return 0;
}

static int stop_at_second(void *ctx, const char *name, const struct hsadb_memory_rec *rec) {
    int *n = ctx;
    (void)name; (void)rec;
    return ++*n == 2 ? 42 : 0;
}

static void test_memories(void) {
    char dir[512], longname[HSADB_NAME_MAX + 2];
    hsadb_store *st = NULL;
    struct hsadb_memory_rec a = geom(HSADB_KV_BF16, 64, 2, 16, 8), b = geom(HSADB_KV_F32, 64, 2, 16, 8),
                            t = geom(HSADB_KV_F32, 8, 1, 1, 1), got, bad;
    struct names ns = { .n = 0 };
    const char *bad_names[] = { "", "a b", "x/y", "tab\t", "caf\xc3\xa9", "nul?", "semi;" };
    uint32_t big_id, alpha_id;
    uint64_t nb;
    int rc, i, n, ok;

    printf("# 1. memories\n");
    mkpath(dir, sizeof dir, "mem");
    rc = hsadb_store_open(dir, HSADB_STORE_CREATE, &st);
    CHECK(rc == 0, "open with CREATE makes the directory (rc %d %s)", rc, why(rc));
    if (rc) return;
    rc = hsadb_store_memory_create(st, "alpha", &a);
    CHECK(rc == 0 && a.id == 1 && a.n_chunks == 0 && a.created > 0, "create alpha -> id %u", a.id);
    rc = hsadb_store_memory_create(st, "beta", &b);
    CHECK(rc == 0 && b.id == 2, "create beta -> id %u", b.id);
    got = geom(HSADB_KV_F32, 64, 2, 16, 8);
    rc = hsadb_store_memory_create(st, "alpha", &got);
    CHECK(rc == HSADB_ERR_EXISTS, "create alpha again -> EXISTS (%s)", hsadb_last_error());
    rc = hsadb_store_memory_get(st, "alpha", &got);
    CHECK(rc == 0 && !memcmp(&got, &a, sizeof a), "get alpha returns the created record");
    rc = hsadb_store_memory_get(st, "nope", &got);
    CHECK(rc == HSADB_ERR_NOTFOUND, "get missing -> NOTFOUND (%s)", hsadb_last_error());
    rc = hsadb_store_memory_delete(st, "nope");
    CHECK(rc == HSADB_ERR_NOTFOUND, "delete missing -> NOTFOUND");

    ok = 1;
    for (i = 0; i < (int)(sizeof bad_names / sizeof bad_names[0]); i++) {
        got = geom(HSADB_KV_F32, 64, 2, 16, 8);
        if (hsadb_store_memory_create(st, bad_names[i], &got) != HSADB_ERR_INVALID) ok = 0;
        if (hsadb_store_memory_get(st, bad_names[i], &got) != HSADB_ERR_INVALID) ok = 0;
    }
    if (hsadb_store_memory_create(st, NULL, &got) != HSADB_ERR_INVALID) ok = 0;
    memset(longname, 'a', HSADB_NAME_MAX + 1);
    longname[HSADB_NAME_MAX + 1] = 0;
    if (hsadb_store_memory_create(st, longname, &got) != HSADB_ERR_INVALID) ok = 0;
    CHECK(ok, "bad names (empty, space, slash, tab, UTF-8, ?, ;, NULL, 129 bytes) -> INVALID");
    longname[HSADB_NAME_MAX] = 0;
    got = geom(HSADB_KV_F32, 64, 2, 16, 8);
    rc = hsadb_store_memory_create(st, longname, &got);
    CHECK(rc == 0, "a 128-byte name is accepted");
    bad = geom(7, 64, 2, 16, 8);
    rc = hsadb_store_memory_create(st, "baddtype", &bad);
    CHECK(rc == HSADB_ERR_INVALID, "kv_dtype 7 -> INVALID (%s)", hsadb_last_error());
    bad = geom(HSADB_KV_F32, 0, 2, 16, 8);
    rc = hsadb_store_memory_create(st, "badgeom", &bad);
    CHECK(rc == HSADB_ERR_INVALID, "chunk_size 0 -> INVALID");

    rc = hsadb_store_memory_foreach(st, collect, &ns);
    CHECK(rc == 0 && ns.n == 3 && !strcmp(ns.v[0], longname) && !strcmp(ns.v[1], "alpha") &&
          !strcmp(ns.v[2], "beta"), "foreach lists 3 memories in name order");
    n = 0;
    rc = hsadb_store_memory_foreach(st, stop_at_second, &n);
    CHECK(rc == 42 && n == 2, "foreach stops at fn's nonzero return and returns it");

    /* a memory big enough that its delete takes several transactions */
    {
        hsadb_store_writer *w;
        struct scratch s;
        struct sizes z = sizes_of(&t);
        uint64_t nc = 0;
        int j;
        rc = hsadb_store_memory_create(st, "big", &t);
        big_id = t.id;
        scratch_init(&s, z);
        rc |= hsadb_store_writer_begin(st, "big", 1, &w, NULL);
        for (j = 0; j < 6 && rc == 0; j++) rc = append_batch(w, &nc, 0, z, 9, 1000, &s, j == 5);
        hsadb_store_writer_end(w);
        CHECK(rc == 0 && nc == 6000, "wrote 6000 chunks to 'big' (18000+ records)");
        /* and a few to alpha, which must survive the delete */
        rc = hsadb_store_writer_begin(st, "alpha", 1, &w, NULL);
        z = sizes_of(&a);
        scratch_free(&s);
        scratch_init(&s, z);
        nc = 0;
        if (rc == 0) rc = append_batch(w, &nc, 0, z, 1, 5, &s, 1);
        hsadb_store_writer_end(w);
        scratch_free(&s);
        CHECK(rc == 0, "wrote 5 chunks to alpha");
    }
    rc = hsadb_store_memory_bytes(st, "alpha", &nb);
    /* format 3: each of the 5 * 3 chunk records, the memory, append and tail records ends
     * with an 8-byte checksum */
    CHECK(rc == 0 && nb == 96 + 5 * (32 + 8192 + 24 + 64) + 48 + sizeof(struct tailblob) + 8 * (15 + 3),
          "memory_bytes(alpha) = %" PRIu64, nb);
    rc = hsadb_store_memory_delete(st, "big");
    CHECK(rc == 0, "delete big (rc %d %s)", rc, why(rc));
    rc = hsadb_store_memory_get(st, "big", &got);
    CHECK(rc == HSADB_ERR_NOTFOUND, "big is gone");
    CHECK(verify_memory(st, "alpha", 1, 1, NULL) == 0, "alpha intact after deleting big");
    t = geom(HSADB_KV_F32, 8, 1, 1, 1);
    rc = hsadb_store_memory_create(st, "big", &t);
    CHECK(rc == 0 && t.id > big_id, "re-created big gets a new id (%u > %u)", t.id, big_id);
    alpha_id = a.id;
    hsadb_store_close(st);
    st = NULL;
    CHECK(raw_count_id(dir, big_id) == 0, "no record of the deleted memory's id is left");

    /* crash after the first delete transaction: only the memory record is gone */
    rc = raw_put(dir, "memories", "alpha", 5, NULL, 0);
    CHECK(rc == 0 && raw_count_id(dir, alpha_id) > 0, "simulated half-done delete of alpha (%ld orphans)",
          raw_count_id(dir, alpha_id));
    rc = hsadb_store_open(dir, 0, &st);
    if (rc == 0) rc = hsadb_store_memory_delete(st, "beta");
    hsadb_store_close(st);
    CHECK(rc == 0 && raw_count_id(dir, alpha_id) == 0, "a later delete sweeps the orphans");
}

/* ---- 2. writer / reader ---------------------------------------------------------------- */

static void test_write_read(void) {
    char dir[512];
    hsadb_store *st;
    hsadb_store_writer *w16, *w32;
    hsadb_store_reader *r;
    struct hsadb_memory_rec m16 = geom(HSADB_KV_BF16, 64, 2, 16, 8), m32 = geom(HSADB_KV_F32, 64, 2, 16, 8), rec;
    struct hsadb_append_rec ar;
    struct hsadb_chunk_meta m;
    struct scratch s16, s32;
    struct sizes z16, z32;
    uint64_t n16 = 0, n32 = 0, start2, nb;
    const void *p;
    size_t len;
    int rc, ok, i;

    printf("# 2. writer and reader\n");
    mkpath(dir, sizeof dir, "rw");
    if ((rc = hsadb_store_open(dir, HSADB_STORE_CREATE | HSADB_STORE_NOSYNC, &st))) {
        CHECK(0, "open: %s", hsadb_last_error());
        return;
    }
    rc = hsadb_store_memory_create(st, "m16", &m16) | hsadb_store_memory_create(st, "m32", &m32);
    CHECK(rc == 0, "created bf16 and f32 memories");
    z16 = sizes_of(&m16);
    z32 = sizes_of(&m32);
    scratch_init(&s16, z16);
    scratch_init(&s32, z32);

    rc = hsadb_store_writer_begin(st, "m16", 1700000001, &w16, &rec);
    CHECK(rc == 0 && hsadb_store_writer_append_id(w16) == 1 && rec.n_chunks == 0, "writer on m16, append 1");
    rc = hsadb_store_writer_begin(st, "m32", 1700000001, &w32, NULL);
    CHECK(rc == 0, "a writer on another memory at the same time");
    /* batches interleaved across memories: m16 (id 1) is written after m32 (id 2) has
     * records, so MDB_APPEND must fall back to ordinary puts */
    ok = 1;
    ok &= append_batch(w16, &n16, 0, z16, 16, 1, &s16, 0) == 0;
    ok &= append_batch(w32, &n32, 0, z32, 32, 5, &s32, 0) == 0;
    ok &= append_batch(w16, &n16, 0, z16, 16, 3, &s16, 0) == 0;
    ok &= append_batch(w32, &n32, 0, z32, 32, 2, &s32, 1) == 0;
    ok &= append_batch(w16, &n16, 0, z16, 16, 7, &s16, 0) == 0;
    CHECK(ok && n16 == 11 && n32 == 7, "interleaved batches of 1/3/7 and 5/2 chunks committed");

    /* staging, bad offset, bad n_bytes */
    chunk_content(&s16, z16, 16, n16);
    m.append_id = 1; m.byte_offset = n16 * 64; m.time = 0;
    rc = hsadb_store_writer_put_chunk(w16, s16.lm, s16.kv, &m, s16.bytes);
    CHECK(rc == 0 && hsadb_store_writer_staged(w16) == 1, "staged count is 1");
    m.byte_offset = 5;
    rc = hsadb_store_writer_put_chunk(w16, s16.lm, s16.kv, &m, s16.bytes);
    CHECK(rc == HSADB_ERR_INVALID, "a chunk with the wrong byte_offset -> INVALID (%s)", hsadb_last_error());
    rc = hsadb_store_writer_commit(w16, NULL, 0, 10, 10, 0);
    CHECK(rc == HSADB_ERR_INVALID && hsadb_store_writer_staged(w16) == 0,
          "commit with n_bytes below the chunks -> INVALID, staged dropped");
    rc = hsadb_store_memory_get(st, "m16", &rec);
    CHECK(rc == 0 && rec.n_chunks == 11, "failed commit changed nothing (n_chunks %" PRIu64 ")", rec.n_chunks);
    hsadb_store_writer_end(w16);
    hsadb_store_writer_end(w32);

    rc = hsadb_store_writer_begin(st, "m16", 1700000002, &w16, &rec);
    start2 = rec.n_bytes;
    CHECK(rc == 0 && hsadb_store_writer_append_id(w16) == 2 && rec.n_chunks == 11 && rec.n_appends == 1,
          "second append on m16 gets append_id 2");
    rc = append_batch(w16, &n16, start2, z16, 16, 4, &s16, 1);
    CHECK(rc == 0 && n16 == 15, "append 2 committed 4 chunks (final)");
    hsadb_store_writer_end(w16);

    CHECK(verify_memory(st, "m16", 16, 1, NULL) == 0, "m16 (bf16): landmarks, kv, chunks, tail, appends exact");
    CHECK(verify_memory(st, "m32", 32, 1, NULL) == 0, "m32 (f32): landmarks, kv, chunks, tail, appends exact");

    rc = hsadb_store_reader_begin(st, "m16", &r, &rec);
    CHECK(rc == 0 && rec.n_chunks == 15 && rec.n_appends == 2 && rec.n_bytes == stream_bytes(15, 64),
          "reader sees n_chunks 15, n_appends 2, n_bytes %" PRIu64, rec.n_bytes);
    if (rc == 0) {
        rc = hsadb_store_reader_kv(r, 3, &p, &len);
        CHECK(rc == 0 && len == 8192 && ((uintptr_t)p % 16) == 0, "kv block is 8192 bytes, 16-byte aligned");
        rc = hsadb_store_reader_chunk(r, 12, &m, NULL);
        CHECK(rc == 0 && m.append_id == 2 && m.byte_offset == 12 * 64 && m.time == 1700000002,
              "chunk 12 meta: append 2, offset 768");
        rc = hsadb_store_reader_append(r, 1, &ar);
        CHECK(rc == 0 && ar.start_offset == 0 && ar.chunks == 11 && ar.state == 0 &&
              ar.time_start == 1700000001 && ar.bytes == stream_bytes(11, 64),
              "append 1: 11 chunks, %" PRIu64 " bytes, not final", ar.bytes);
        rc = hsadb_store_reader_append(r, 2, &ar);
        CHECK(rc == 0 && ar.start_offset == start2 && ar.chunks == 4 && ar.state == 1 && ar.time_end > 0,
              "append 2: starts at %" PRIu64 ", 4 chunks, final", start2);
        CHECK(hsadb_store_reader_append(r, 3, &ar) == HSADB_ERR_NOTFOUND, "append 3 -> NOTFOUND");
        CHECK(hsadb_store_reader_kv(r, 15, &p, &len) == HSADB_ERR_NOTFOUND, "kv of chunk 15 -> NOTFOUND");
        CHECK(hsadb_store_reader_chunk(r, 99, &m, NULL) == HSADB_ERR_NOTFOUND, "chunk 99 -> NOTFOUND");
        CHECK(hsadb_store_reader_landmarks(r, 14, 2, s16.tmp) == HSADB_ERR_NOTFOUND, "landmarks [14,16) -> NOTFOUND");
        CHECK(hsadb_store_reader_landmarks(r, 14, 1, s16.tmp) == 0, "landmarks [14,15) ok");
        hsadb_store_reader_end(r);
    }
    rc = hsadb_store_memory_bytes(st, "m16", &nb);
    CHECK(rc == 0 && nb == 96 + 15 * (32 + 8192 + 24 + 64) + 2 * 48 + sizeof(struct tailblob) + 8 * (45 + 4),
          "memory_bytes(m16) = %" PRIu64, nb);
    ok = 1;
    for (i = 0; i < 200 && ok; i++) {
        ok = hsadb_store_reader_begin(st, i & 1 ? "m16" : "m32", &r, &rec) == 0 &&
             rec.n_chunks == (uint64_t)(i & 1 ? 15 : 7);
        if (ok) ok = hsadb_store_reader_landmarks(r, 0, 2, s32.tmp) == 0;
        if (r) hsadb_store_reader_end(r);
    }
    CHECK(ok, "200 reader begin/end cycles (pooled transactions and cursors)");
    rc = hsadb_store_reader_begin(st, "none", &r, &rec);
    CHECK(rc == HSADB_ERR_NOTFOUND && r == NULL, "reader on a missing memory -> NOTFOUND");
    scratch_free(&s16);
    scratch_free(&s32);
    hsadb_store_close(st);
}

/* ---- 3. map growth --------------------------------------------------------------------- */

/* Bulk K/V reads (the GPU tier's loader): io_uring, pread and the map give the records'
 * exact bytes, for a range that starts and ends mid-memory and for a range past the end. */
/* Overflow pages of the "kv" sub-database and the env's page size (raw LMDB). */
static long raw_overflow_pages(const char *dir, unsigned *psize) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_stat ms;
    long n = -1;
    if (raw_open(dir, MDB_RDONLY, &env)) return -1;
    if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn) == 0) {
        if (mdb_dbi_open(txn, "kv", 0, &dbi) == 0 && mdb_stat(txn, dbi, &ms) == 0) {
            n = (long)ms.ms_overflow_pages;
            *psize = ms.ms_psize;
        }
        mdb_txn_abort(txn);
    }
    mdb_env_close(env);
    return n;
}

/*
 * The K/V record layout: in format 2 a 16 KiB block (the shipped geometry) takes 4 overflow
 * pages, its last 16 bytes riding in the landmark record; a format-1 store keeps the old
 * layout (5 pages) and stays readable and writable. Every read path returns whole blocks.
 */
static void test_kv_pages(void) {
    struct hsadb_memory_rec m = geom(HSADB_KV_BF16, 64, 2, 32, 64), rec;
    struct sizes z = sizes_of(&m);
    struct scratch s;
    scratch_init(&s, z);
    printf("# 2d. K/V record layout (formats 1, 2 and %u)\n", HSADB_STORE_FORMAT);
    static const unsigned formats[] = { 1, 2, HSADB_STORE_FORMAT };
    for (size_t fi = 0; fi < sizeof formats / sizeof formats[0]; fi++) {
        const unsigned fmt = formats[fi];
        char dir[512], name[32];
        hsadb_store *st = NULL;
        hsadb_store_writer *w;
        hsadb_store_reader *r;
        uint64_t n = 0;
        unsigned psize = 0;
        int rc = 0;
        snprintf(name, sizeof name, "kvpages-%u", fmt);
        mkpath(dir, sizeof dir, name);
        mkdir(dir, 0755);
        if (fmt != HSADB_STORE_FORMAT) {          /* an old store: the format key written first */
            uint8_t ver[4] = { (uint8_t)fmt, 0, 0, 0 };
            rc = raw_put(dir, "meta", "format", 6, ver, 4);
        }
        if (!rc) rc = hsadb_store_open(dir, HSADB_STORE_CREATE | HSADB_STORE_NOSYNC, &st);
        if (!rc) rc = hsadb_store_memory_create(st, "m", &m);
        if (!rc) rc = hsadb_store_writer_begin(st, "m", 1700000001, &w, NULL);
        if (!rc) {
            rc = append_batch(w, &n, 0, z, 91, 50, &s, 0);
            if (!rc) rc = append_batch(w, &n, 0, z, 91, 30, &s, 1);
            hsadb_store_writer_end(w);
        }
        CHECK(rc == 0 && n == 80, "format %u: 80 chunks of %zu-byte K/V written (%s)", fmt, z.kv,
              rc ? hsadb_last_error() : "ok");
        hsadb_store_close(st);
        st = NULL;
        long pages = raw_overflow_pages(dir, &psize);
        if (psize == 4096)
            CHECK(pages == 80 * (fmt >= 2 ? 4 : 5), "format %u: %ld overflow pages for 80 blocks of 16 KiB "
                  "(%d per block)", fmt, pages, fmt >= 2 ? 4 : 5);
        else
            printf("  (page size %u: the page count is checked on 4 KiB pages only)\n", psize);

        rc = hsadb_store_open(dir, 0, &st);
        if (!rc) rc = hsadb_store_reader_begin(st, "m", &r, &rec);
        int bad = 0;
        if (!rc) {
            uint8_t *lms = malloc(80 * z.lm), *kvs = malloc(80 * z.kv);
            const void *p;
            size_t len;
            rc = hsadb_store_reader_landmarks(r, 0, 80, lms);
            if (!rc) rc = hsadb_store_reader_kv_batch(r, 0, 80, kvs);
            for (uint64_t i = 0; !rc && i < 80; i++) {
                chunk_content(&s, z, 91, i);
                bad += memcmp(lms + i * z.lm, s.lm, z.lm) != 0;
                bad += memcmp(kvs + i * z.kv, s.kv, z.kv) != 0;
                rc = hsadb_store_reader_kv(r, i, &p, &len);
                bad += rc == 0 && (len != z.kv || memcmp(p, s.kv, z.kv) != 0 || (uintptr_t)p % 16);
            }
            free(lms);
            free(kvs);
            hsadb_store_reader_end(r);
        }
        CHECK(rc == 0 && bad == 0, "format %u: landmarks, kv and kv_batch read back exactly (%d differ)",
              fmt, bad);
        hsadb_store_close(st);
    }
    scratch_free(&s);
}

static void test_kv_batch(void) {
    char dir[512];
    hsadb_store *st;
    hsadb_store_writer *w;
    hsadb_store_reader *r;
    struct hsadb_memory_rec m = geom(HSADB_KV_BF16, 64, 2, 16, 8), rec;
    struct scratch s;
    struct sizes z;
    uint64_t n = 0;
    int rc;
    static const char *modes[] = {"uring", "pread", "map"};

    printf("# 2b. bulk K/V reads\n");
    mkpath(dir, sizeof dir, "kvbatch");
    if ((rc = hsadb_store_open(dir, HSADB_STORE_CREATE | HSADB_STORE_NOSYNC, &st))) {
        CHECK(0, "open: %s", hsadb_last_error());
        return;
    }
    z = sizes_of(&m);
    scratch_init(&s, z);
    rc = hsadb_store_memory_create(st, "kv", &m);
    if (!rc) rc = hsadb_store_writer_begin(st, "kv", 1700000001, &w, NULL);
    for (int b = 0; !rc && b < 3; b++) rc = append_batch(w, &n, 0, z, 77, 100, &s, b == 2);
    hsadb_store_writer_end(w);
    CHECK(rc == 0 && n == 300, "300 chunks written");
    uint8_t *buf = malloc(290 * z.kv);
    for (int mi = 0; mi < 3; mi++) {
        setenv("HSADB_IO", modes[mi], 1);
        memset(buf, 0xa5, 290 * z.kv);
        rc = hsadb_store_reader_begin(st, "kv", &r, &rec);
        if (!rc) rc = hsadb_store_reader_kv_batch(r, 7, 290, buf);
        int bad = 0;
        for (uint64_t i = 0; !rc && i < 290; i++) {
            chunk_content(&s, z, 77, 7 + i);
            bad += memcmp(buf + i * z.kv, s.kv, z.kv) != 0;
        }
        CHECK(rc == 0 && bad == 0, "HSADB_IO=%s: chunks 7..296 read exactly (%d differ)", modes[mi], bad);
        CHECK(hsadb_store_reader_kv_batch(r, 295, 10, buf) == HSADB_ERR_NOTFOUND, "HSADB_IO=%s: a range past the end -> NOTFOUND", modes[mi]);
        /* any chunks, in any order, repeats allowed (the GPU block cache's misses) */
        uint64_t list[97];
        for (int i = 0; i < 97; i++) list[i] = (uint64_t)((i * 181 + mi * 7) % 300);
        list[5] = list[60];
        memset(buf, 0xa5, 97 * z.kv);
        rc = hsadb_store_reader_kv_list(r, list, 97, buf);
        bad = 0;
        for (int i = 0; !rc && i < 97; i++) {
            chunk_content(&s, z, 77, list[i]);
            bad += memcmp(buf + (size_t)i * z.kv, s.kv, z.kv) != 0;
        }
        CHECK(rc == 0 && bad == 0, "HSADB_IO=%s: 97 listed chunks (out of order, one repeated) read exactly (%d differ)",
              modes[mi], bad);
        list[40] = 300;
        CHECK(hsadb_store_reader_kv_list(r, list, 97, buf) == HSADB_ERR_NOTFOUND, "HSADB_IO=%s: a listed chunk past the end -> NOTFOUND",
              modes[mi]);
        hsadb_store_reader_end(r);
    }
    unsetenv("HSADB_IO");
    free(buf);
    scratch_free(&s);
    hsadb_store_close(st);
}

/* Double-buffered commits: a sealed batch committed on another thread while the next chunks
 * are staged on this one. */
struct sealed_job { hsadb_store_writer *w; struct tailblob t; uint64_t mine; int rc; };

static void *commit_sealed_thread(void *arg) {
    struct sealed_job *j = arg;
    j->rc = hsadb_store_writer_commit_sealed(j->w, &j->t, sizeof j->t, j->t.n_bytes, j->mine, 0);
    return NULL;
}

static void test_sealed_commits(void) {
    char dir[512];
    hsadb_store *st;
    hsadb_store_writer *w;
    struct hsadb_memory_rec m = geom(HSADB_KV_BF16, 64, 2, 16, 8), rec;
    struct scratch s;
    struct sizes z;
    uint64_t n = 0;
    int rc;

    printf("# 2c. sealed (double-buffered) commits\n");
    mkpath(dir, sizeof dir, "sealed");
    if ((rc = hsadb_store_open(dir, HSADB_STORE_CREATE | HSADB_STORE_NOSYNC, &st))) {
        CHECK(0, "open: %s", hsadb_last_error());
        return;
    }
    z = sizes_of(&m);
    scratch_init(&s, z);
    rc = hsadb_store_memory_create(st, "sl", &m);
    if (!rc) rc = hsadb_store_writer_begin(st, "sl", 1700000001, &w, &rec);
    CHECK(rc == 0, "writer begins");
    if (rc) goto out;
    int bad = 0;
    for (int round = 0; round < 4 && !bad; round++) {
        const uint64_t k = 50 + 13 * (uint64_t)round;   /* chunks per batch */
        bad |= stage_range(w, z, 91, n, n + k, &s) != 0;
        bad |= hsadb_store_writer_seal(w) != 0;
        bad |= hsadb_store_writer_staged(w) != 0;
        struct sealed_job j = {w, {0}, 0, -1};
        tail_make(&j.t, n + k, z.S);
        j.mine = j.t.n_bytes;
        pthread_t th;
        pthread_create(&th, NULL, commit_sealed_thread, &j);
        /* the next batch is staged while the sealed one is written */
        bad |= stage_range(w, z, 91, n + k, n + k + 7, &s) != 0;
        pthread_join(th, NULL);
        bad |= j.rc != 0;
        n += k;
        if (!bad) {       /* then the 7 chunks staged meanwhile, sealed and committed */
            n += 7;
            struct tailblob t;
            tail_make(&t, n, z.S);
            bad |= hsadb_store_writer_seal(w) != 0;
            j = (struct sealed_job){w, t, t.n_bytes, -1};
            commit_sealed_thread(&j);
            bad |= j.rc != 0;
        }
    }
    CHECK(!bad, "4 rounds: seal, commit on a thread while staging the next chunks, commit those");
    stage_range(w, z, 91, n, n + 3, &s);
    CHECK(hsadb_store_writer_seal(w) == 0 && hsadb_store_writer_seal(w) == HSADB_ERR_INVALID,
          "a second seal before the commit -> INVALID");
    {
        struct tailblob t;
        tail_make(&t, n + 3, z.S);
        CHECK(hsadb_store_writer_commit(w, &t, sizeof t, t.n_bytes, t.n_bytes, 1) == HSADB_ERR_INVALID,
              "a plain commit while a sealed batch waits -> INVALID");
        CHECK(hsadb_store_writer_commit_sealed(w, &t, sizeof t, t.n_bytes, t.n_bytes, 1) == 0, "final sealed commit");
        n += 3;
    }
    hsadb_store_writer_end(w);
    uint64_t have = 0;
    int problems = verify_memory(st, "sl", 91, 1, &have);
    CHECK(problems == 0 && have == n, "all %llu chunks read back exactly, append record complete (%d problems)",
          (unsigned long long)have, problems);
out:
    scratch_free(&s);
    hsadb_store_close(st);
}

static void test_map_growth(void) {
    char dir[512], dir2[512], dir3[512];
    hsadb_store *st;
    hsadb_store_writer *w;
    hsadb_store_reader *r;
    struct hsadb_memory_rec g = geom(HSADB_KV_F32, 64, 4, 16, 16), rec;
    struct sizes z = sizes_of(&g);
    struct scratch s;
    struct stat sb;
    uint64_t n = 0;
    size_t map;
    double t0;
    int rc, i;

    printf("# 3. map growth\n");
    mkpath(dir, sizeof dir, "grow");
    setenv("HSADB_STORE_MAPSIZE", "65536", 1);
    scratch_init(&s, z);
    t0 = now_s();
    rc = hsadb_store_open(dir, HSADB_STORE_CREATE, &st);
    CHECK(rc == 0, "open with a 64 KiB map (rc %d %s)", rc, why(rc));
    if (rc) goto out;
    rc = hsadb_store_memory_create(st, "big", &g);
    if (rc == 0) rc = hsadb_store_writer_begin(st, "big", 1, &w, NULL);
    /* 1280 chunks x (32 KiB kv + 256 B landmark + 88 B chunk) = 42 MB, 40 commits */
    for (i = 0; i < 40 && rc == 0; i++) rc = append_batch(w, &n, 0, z, 5, 32, &s, i == 39);
    if (rc) printf("  commit failed: %s\n", hsadb_last_error());
    hsadb_store_writer_end(w);
    CHECK(rc == 0 && n == 1280, "40 commits of 32 chunks (42 MB) through a growing map");
    CHECK(verify_memory(st, "big", 5, 1, NULL) == 0, "all 1280 chunks readable and exact");
    hsadb_store_close(st);
    printf("  map growth: %.2f s\n", now_s() - t0);
    map = raw_mapsize(dir);
    stat(dir, &sb);
    {
        char f[600];
        snprintf(f, sizeof f, "%s/data.mdb", dir);
        stat(f, &sb);
    }
    CHECK(map >= (size_t)sb.st_size && map >= ((size_t)40 << 20),
          "map grew from 64 KiB to %zu bytes (data.mdb %lld bytes)", map, (long long)sb.st_size);
    rc = hsadb_store_open(dir, 0, &st);
    CHECK(rc == 0 && verify_memory(st, "big", 5, 1, NULL) == 0, "reopened with a 64 KiB request: LMDB raises it, data readable");
    hsadb_store_close(st);

    /* growth needed while this very thread holds a reader: BUSY, not a deadlock */
    mkpath(dir2, sizeof dir2, "grow-busy");
    rc = hsadb_store_open(dir2, HSADB_STORE_CREATE, &st);
    g = geom(HSADB_KV_F32, 64, 4, 16, 16);
    if (rc == 0) rc = hsadb_store_memory_create(st, "m", &g);
    if (rc == 0) rc = hsadb_store_reader_begin(st, "m", &r, &rec);
    if (rc == 0) {
        n = 0;
        rc = hsadb_store_writer_begin(st, "m", 1, &w, NULL);
        if (rc == 0) rc = append_batch(w, &n, 0, z, 6, 8, &s, 0);
        CHECK(rc == HSADB_ERR_BUSY, "commit needing growth while this thread holds a reader -> BUSY (%s)",
              hsadb_last_error());
        hsadb_store_reader_end(r);
        n = 0;
        rc = append_batch(w, &n, 0, z, 6, 8, &s, 0);
        CHECK(rc == 0, "after the reader ends the same commit grows the map and succeeds");
        hsadb_store_writer_end(w);
    } else {
        CHECK(0, "setup: %s", hsadb_last_error());
    }
    hsadb_store_close(st);

    /* another process grows the file beyond our map: MDB_MAP_RESIZED is adopted */
    mkpath(dir3, sizeof dir3, "grow-other");
    {
        int go[2], done[2];
        char c = 0;
        pid_t pid;
        int status = 0;
        g = geom(HSADB_KV_F32, 64, 4, 16, 16);
        rc = hsadb_store_open(dir3, HSADB_STORE_CREATE, &st);
        if (rc == 0) rc = hsadb_store_memory_create(st, "shared", &g);
        hsadb_store_close(st);
        if (pipe(go) || pipe(done)) return;
        pid = fork();
        if (pid == 0) {
            hsadb_store *cs;
            hsadb_store_writer *cw;
            uint64_t cn = 0;
            int k, crc;
            unsetenv("HSADB_STORE_MAPSIZE");
            if (read(go[0], &c, 1) != 1) _exit(2);
            crc = hsadb_store_open(dir3, 0, &cs);
            if (crc == 0) crc = hsadb_store_writer_begin(cs, "shared", 1, &cw, NULL);
            for (k = 0; k < 10 && crc == 0; k++) crc = append_batch(cw, &cn, 0, z, 7, 32, &s, k == 9);
            if (crc == 0) hsadb_store_writer_end(cw);
            hsadb_store_close(cs);
            c = crc == 0 ? 'y' : 'n';
            if (write(done[1], &c, 1) != 1) _exit(3);
            _exit(crc == 0 ? 0 : 1);
        }
        rc = hsadb_store_open(dir3, 0, &st);   /* 64 KiB map */
        if (rc == 0) rc = hsadb_store_reader_begin(st, "shared", &r, &rec);
        if (rc == 0) hsadb_store_reader_end(r);
        c = 'g';
        if (write(go[1], &c, 1) != 1 || read(done[0], &c, 1) != 1) c = 'n';
        waitpid(pid, &status, 0);
        CHECK(rc == 0 && c == 'y' && WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "another process wrote 10 MB with its own (1 GiB) map");
        rc = verify_memory(st, "shared", 7, 1, &n);
        CHECK(rc == 0 && n == 320, "this process adopts the grown map (MDB_MAP_RESIZED) and reads all %" PRIu64 " chunks", n);
        rc = hsadb_store_writer_begin(st, "shared", 2, &w, &rec);
        n = rec.n_chunks;
        if (rc == 0) rc = append_batch(w, &n, rec.n_bytes, z, 7, 4, &s, 1);
        hsadb_store_writer_end(w);
        CHECK(rc == 0 && verify_memory(st, "shared", 7, 1, NULL) == 0, "and appends after it");
        hsadb_store_close(st);
        close(go[0]); close(go[1]); close(done[0]); close(done[1]);
    }
out:
    unsetenv("HSADB_STORE_MAPSIZE");
    scratch_free(&s);
}

/* ---- 4. consistency -------------------------------------------------------------------- */

static void test_consistency(void) {
    char dir[512];
    hsadb_store *st;
    hsadb_store_writer *w;
    hsadb_store_reader *ra, *rb;
    struct hsadb_memory_rec g = geom(HSADB_KV_BF16, 64, 2, 16, 8), reca, recb, rec;
    struct sizes z = sizes_of(&g);
    struct scratch s;
    struct tailblob t3, t5;
    struct hsadb_chunk_meta m;
    const void *p;
    size_t len;
    uint64_t n = 0;
    int rc;

    printf("# 4. consistency of views\n");
    mkpath(dir, sizeof dir, "views");
    scratch_init(&s, z);
    rc = hsadb_store_open(dir, HSADB_STORE_CREATE | HSADB_STORE_NOSYNC, &st);
    if (rc == 0) rc = hsadb_store_memory_create(st, "v", &g);
    if (rc == 0) rc = hsadb_store_writer_begin(st, "v", 1, &w, NULL);
    if (rc == 0) rc = append_batch(w, &n, 0, z, 3, 3, &s, 0);
    CHECK(rc == 0, "3 chunks committed");
    if (rc) goto out;
    rc = hsadb_store_reader_begin(st, "v", &ra, &reca);
    rc |= append_batch(w, &n, 0, z, 3, 2, &s, 0);
    CHECK(rc == 0, "reader A begun, then 2 more chunks committed");
    tail_make(&t3, 3, 64);
    tail_make(&t5, 5, 64);
    rc = hsadb_store_reader_tail(ra, &p, &len);
    CHECK(reca.n_chunks == 3 && rc == 0 && len == sizeof t3 && !memcmp(p, &t3, len),
          "reader A keeps n_chunks 3 and the old tail");
    CHECK(hsadb_store_reader_chunk(ra, 3, &m, NULL) == HSADB_ERR_NOTFOUND, "reader A: chunk 3 does not exist");
    rc = hsadb_store_reader_begin(st, "v", &rb, &recb);
    CHECK(rc == 0 && recb.n_chunks == 5, "reader B sees n_chunks 5");
    if (rc == 0) {
        rc = hsadb_store_reader_tail(rb, &p, &len);
        CHECK(rc == 0 && len == sizeof t5 && !memcmp(p, &t5, len), "reader B sees the new tail");
        CHECK(hsadb_store_reader_chunk(rb, 4, &m, NULL) == 0, "reader B: chunk 4 exists");
        hsadb_store_reader_end(rb);
    }
    hsadb_store_writer_end(w);
    rc = hsadb_store_memory_delete(st, "v");
    CHECK(rc == 0, "memory deleted while reader A is open");
    rc = hsadb_store_reader_kv(ra, 2, &p, &len);
    CHECK(rc == 0 && len == z.kv, "reader A still reads its view of the deleted memory");
    hsadb_store_reader_end(ra);
    CHECK(hsadb_store_memory_get(st, "v", &rec) == HSADB_ERR_NOTFOUND, "a new view has no memory v");
out:
    hsadb_store_close(st);
    scratch_free(&s);
}

/* ---- 5. BUSY --------------------------------------------------------------------------- */

static void test_busy(void) {
    char dir[512];
    hsadb_store *st;
    hsadb_store_writer *w1, *w2, *w3;
    struct hsadb_memory_rec g = geom(HSADB_KV_BF16, 64, 2, 16, 8), g2 = g, rec;
    struct sizes z = sizes_of(&g);
    struct scratch s;
    uint64_t n = 0;
    pid_t pid;
    int rc, status;

    printf("# 5. one appender per memory\n");
    mkpath(dir, sizeof dir, "busy");
    scratch_init(&s, z);
    rc = hsadb_store_open(dir, HSADB_STORE_CREATE | HSADB_STORE_NOSYNC, &st);
    if (rc == 0) rc = hsadb_store_memory_create(st, "m", &g);
    if (rc == 0) rc = hsadb_store_memory_create(st, "other", &g2);
    if (rc == 0) rc = hsadb_store_writer_begin(st, "m", 1, &w1, NULL);
    CHECK(rc == 0, "first writer on m");
    if (rc) goto out;
    rc = hsadb_store_writer_begin(st, "m", 1, &w2, NULL);
    CHECK(rc == HSADB_ERR_BUSY && w2 == NULL, "second writer on m in this process -> BUSY (%s)", hsadb_last_error());
    rc = hsadb_store_memory_delete(st, "m");
    CHECK(rc == HSADB_ERR_BUSY, "delete of m while appending -> BUSY");
    rc = hsadb_store_writer_begin(st, "other", 1, &w3, NULL);
    CHECK(rc == 0, "writer on another memory is fine");
    if (rc == 0) hsadb_store_writer_end(w3);

    fflush(stdout);
    pid = fork();
    if (pid == 0) {   /* another process: its appender must be refused at begin */
        hsadb_store *cs;
        hsadb_store_writer *cw = NULL;
        int crc = hsadb_store_open(dir, 0, &cs);
        if (crc == 0) crc = hsadb_store_writer_begin(cs, "m", 1, &cw, NULL);
        hsadb_store_writer_end(cw);
        hsadb_store_close(cs);
        _exit(crc == HSADB_ERR_BUSY ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "writer on m in another process -> BUSY at begin");

    /* without the cross-process lock, the commit-time check catches the second writer */
    rc = append_batch(w1, &n, 0, z, 4, 2, &s, 0);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        hsadb_store *cs;
        hsadb_store_writer *cw = NULL;
        struct hsadb_memory_rec cr;
        uint64_t cn;
        int crc;
        crc = hsadb_store_open(dir, HSADB_STORE_NO_APPEND_LOCK, &cs);
        if (crc == 0) crc = hsadb_store_writer_begin(cs, "m", 1, &cw, &cr);
        cn = cr.n_chunks;
        if (crc == 0) crc = append_batch(cw, &cn, cr.n_bytes, z, 4, 3, &s, 1);
        hsadb_store_writer_end(cw);
        hsadb_store_close(cs);
        _exit(crc == 0 ? 0 : 1);
    }
    waitpid(pid, &status, 0);
    CHECK(rc == 0 && WIFEXITED(status) && WEXITSTATUS(status) == 0,
          "with HSADB_STORE_NO_APPEND_LOCK another process appended 3 chunks to m");
    rc = append_batch(w1, &n, 0, z, 4, 1, &s, 0);
    CHECK(rc == HSADB_ERR_BUSY && strstr(hsadb_last_error(), "memory m was modified by another writer"),
          "the first writer's next commit -> BUSY: %s", hsadb_last_error());
    hsadb_store_writer_end(w1);
    rc = hsadb_store_memory_get(st, "m", &rec);
    CHECK(rc == 0 && rec.n_chunks == 5 && rec.n_appends == 2 && verify_memory(st, "m", 4, 1, NULL) == 0,
          "m is consistent: 2 + 3 chunks, 2 appends");
    rc = hsadb_store_writer_begin(st, "m", 1, &w2, NULL);
    CHECK(rc == 0, "after writer_end, a new writer on m is fine");
    if (rc == 0) hsadb_store_writer_end(w2);
out:
    hsadb_store_close(st);
    scratch_free(&s);
}

/* ---- 6. kill -9 ------------------------------------------------------------------------ */

/* Child: appends forever in batches of 1..5 chunks, acknowledging each commit's count. */
static void appender_child(const char *dir, int fd, unsigned flags) {
    struct hsadb_memory_rec g = geom(HSADB_KV_BF16, 64, 2, 16, 8), rec;
    struct sizes z = sizes_of(&g);
    hsadb_store *st;
    hsadb_store_writer *w;
    struct scratch s;
    uint64_t n, start;
    int i, rc;

    scratch_init(&s, z);
    if (hsadb_store_open(dir, flags, &st)) _exit(2);
    if (hsadb_store_writer_begin(st, "k", 1, &w, &rec)) _exit(3);
    n = rec.n_chunks;
    start = rec.n_bytes;
    for (i = 0;; i++) {
        rc = append_batch(w, &n, start, z, 11, 1 + (size_t)(i % 5), &s, 0);
        if (rc) _exit(4);
        if (write(fd, &n, sizeof n) != (ssize_t)sizeof n) _exit(5);
    }
}

static void test_kill9(void) {
    char dir[512];
    struct hsadb_memory_rec g = geom(HSADB_KV_BF16, 64, 2, 16, 8), rec;
    hsadb_store *st;
    const int targets[] = { 3, 11, 29, 57, 8, 40 };
    int round, rc, fds[2], status;
    uint64_t last, ack, n;
    ssize_t got;
    pid_t pid;
    double t0 = now_s();

    printf("# 6. kill -9 durability\n");
    mkpath(dir, sizeof dir, "kill");
    rc = hsadb_store_open(dir, HSADB_STORE_CREATE, &st);
    if (rc == 0) rc = hsadb_store_memory_create(st, "k", &g);
    hsadb_store_close(st);
    if (rc) { CHECK(0, "setup: %s", hsadb_last_error()); return; }

    for (round = 0; round < 6; round++) {
        unsigned flags = round >= 4 ? HSADB_STORE_NOSYNC : 0;
        int acks = 0, bad;
        if (pipe(fds)) return;
        fflush(stdout);
        pid = fork();
        if (pid == 0) {
            close(fds[0]);
            appender_child(dir, fds[1], flags);
        }
        close(fds[1]);
        last = 0;
        while (acks < targets[round] && (got = read(fds[0], &ack, sizeof ack)) == (ssize_t)sizeof ack) {
            last = ack;
            acks++;
        }
        if (round & 1) usleep(200 + 700 * round);   /* land in staging, commit or fsync */
        kill(pid, SIGKILL);
        while ((got = read(fds[0], &ack, sizeof ack)) == (ssize_t)sizeof ack) last = ack; /* acked before death */
        close(fds[0]);
        waitpid(pid, &status, 0);
        rc = hsadb_store_open(dir, 0, &st);
        if (rc) { CHECK(0, "round %d: reopen: %s", round, hsadb_last_error()); return; }
        bad = verify_memory(st, "k", 11, 1, &n);
        hsadb_store_memory_get(st, "k", &rec);
        hsadb_store_close(st);
        CHECK(WIFSIGNALED(status) && acks == targets[round] && bad == 0 && n >= last &&
              rec.n_appends == (uint64_t)round + 1,
              "round %d (%s): killed after %d acks; last ack %" PRIu64 ", stored %" PRIu64
              " chunks, all intact, tail and %" PRIu64 " appends consistent",
              round, flags ? "nosync" : "sync", acks, last, n, rec.n_appends);
    }
    printf("  kill -9: %.2f s for 6 rounds\n", now_s() - t0);
}

/* ---- 7. corrupt files and versions ----------------------------------------------------- */

static void test_corrupt(void) {
    char dir[512], path[600], file[600];
    hsadb_store *st = NULL;
    hsadb_store_reader *r;
    hsadb_store_writer *w;
    struct hsadb_memory_rec g = geom(HSADB_KV_BF16, 64, 2, 16, 8), rec;
    uint8_t *junk, ver[4] = { HSADB_STORE_FORMAT + 1, 0, 0, 0 };
    const void *p;
    size_t len;
    FILE *f;
    int rc;

    printf("# 7. corrupt files and format versions\n");
    junk = malloc(65536);
    fill(junk, 65536, 12345);
    mkpath(dir, sizeof dir, "garbage");
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    f = fopen(path, "wb");
    fwrite(junk, 1, 65536, f);
    fclose(f);
    rc = hsadb_store_open(dir, 0, &st);
    CHECK(rc == HSADB_ERR_CORRUPT && st == NULL, "64 KiB of garbage in data.mdb -> CORRUPT (%s)", hsadb_last_error());
    f = fopen(path, "wb");
    fwrite("this is not lmdb", 1, 16, f);
    fclose(f);
    rc = hsadb_store_open(dir, 0, &st);
    CHECK(rc == HSADB_ERR_CORRUPT, "a 16-byte data.mdb -> CORRUPT (%s)", hsadb_last_error());
    free(junk);

    mkpath(dir, sizeof dir, "missing-dir");
    rc = hsadb_store_open(dir, 0, &st);
    CHECK(rc == ENOENT, "a missing directory without CREATE -> ENOENT");
    mkpath(file, sizeof file, "a-file");
    f = fopen(file, "w");
    fclose(f);
    rc = hsadb_store_open(file, HSADB_STORE_CREATE, &st);
    CHECK(rc == ENOTDIR, "a regular file as directory -> ENOTDIR");

    /* an LMDB env that is not (yet) an hsadb store: initialised */
    mkpath(dir, sizeof dir, "plain-lmdb");
    mkdir(dir, 0755);
    rc = raw_put(dir, "other", "x", 1, "y", 1);
    rc |= hsadb_store_open(dir, 0, &st);
    if (rc == 0) rc = hsadb_store_memory_create(st, "m", &g);
    hsadb_store_close(st);
    CHECK(rc == 0, "a plain LMDB env without memories is initialised as a store");

    /* newer format */
    rc = raw_put(dir, "meta", "format", 6, ver, 4);
    rc |= !(hsadb_store_open(dir, 0, &st) == HSADB_ERR_VERSION);
    CHECK(rc == 0, "format %u (newer) -> VERSION (%s)", HSADB_STORE_FORMAT + 1, hsadb_last_error());
    rc = hsadb_store_open(dir, HSADB_STORE_RDONLY, &st);
    CHECK(rc == HSADB_ERR_VERSION, "format %u (newer), read-only -> VERSION", HSADB_STORE_FORMAT + 1);
    rc = raw_put(dir, "meta", "format", 6, ver, 3);
    CHECK(rc == 0 && hsadb_store_open(dir, 0, &st) == HSADB_ERR_CORRUPT, "3-byte format value -> CORRUPT");
    rc = raw_put(dir, "meta", "format", 6, NULL, 0);
    CHECK(rc == 0 && hsadb_store_open(dir, 0, &st) == HSADB_ERR_CORRUPT,
          "format key missing in a store with memories -> CORRUPT (%s)", hsadb_last_error());
    ver[0] = HSADB_STORE_FORMAT;
    raw_put(dir, "meta", "format", 6, ver, 4);

    /* read-only */
    rc = hsadb_store_open(dir, HSADB_STORE_RDONLY, &st);
    CHECK(rc == 0, "read-only open of a valid store");
    if (rc == 0) {
        struct hsadb_memory_rec g2 = geom(HSADB_KV_BF16, 64, 2, 16, 8);
        CHECK(hsadb_store_memory_get(st, "m", &rec) == 0, "read-only: get works");
        CHECK(hsadb_store_memory_create(st, "n", &g2) == HSADB_ERR_READONLY &&
              hsadb_store_writer_begin(st, "m", 0, &w, NULL) == HSADB_ERR_READONLY &&
              hsadb_store_memory_delete(st, "m") == HSADB_ERR_READONLY,
              "read-only: create, writer_begin, delete -> READONLY");
        hsadb_store_close(st);
    }

    /* a damaged record is named */
    {
        uint8_t key[12] = { 0, 0, 0, (uint8_t)g.id, 0, 0, 0, 0, 0, 0, 0, 0 };
        struct hsadb_memory_rec g3 = geom(HSADB_KV_BF16, 64, 2, 16, 8);
        struct scratch s;
        struct sizes z = sizes_of(&g3);
        uint64_t n = 0;
        scratch_init(&s, z);
        rc = hsadb_store_open(dir, 0, &st);
        if (rc == 0) rc = hsadb_store_memory_create(st, "dmg", &g3);
        if (rc == 0) rc = hsadb_store_writer_begin(st, "dmg", 0, &w, NULL);
        if (rc == 0) { rc = append_batch(w, &n, 0, z, 1, 2, &s, 1); hsadb_store_writer_end(w); }
        hsadb_store_close(st);
        key[3] = (uint8_t)g3.id;
        key[11] = 1;
        rc |= raw_put(dir, "kv", key, 12, "short", 5);
        rc |= hsadb_store_open(dir, 0, &st);
        if (rc == 0) rc = hsadb_store_reader_begin(st, "dmg", &r, &rec);
        if (rc == 0) {
            rc = hsadb_store_reader_kv(r, 1, &p, &len);
            CHECK(rc == HSADB_ERR_CORRUPT && strstr(hsadb_last_error(), "kv record 1"),
                  "a kv value of the wrong size -> CORRUPT: %s", hsadb_last_error());
            CHECK(hsadb_store_reader_kv(r, 0, &p, &len) == 0, "the intact record next to it reads fine");
            hsadb_store_reader_end(r);
        } else {
            CHECK(0, "setup: %s", hsadb_last_error());
        }
        hsadb_store_close(st);
        rc = raw_put(dir, "memories", "dmg", 3, "tiny", 4);
        rc |= hsadb_store_open(dir, 0, &st);
        CHECK(rc == 0 && hsadb_store_memory_get(st, "dmg", &rec) == HSADB_ERR_CORRUPT,
              "a memory record of the wrong size -> CORRUPT: %s", hsadb_last_error());
        hsadb_store_close(st);
        scratch_free(&s);
    }

    /* data.mdb cut short (a partial copy): the pages the meta names are not all there. LMDB
     * would read them through its mmap and die of SIGBUS; the store says CORRUPT at open. */
    {
        struct stat sb = { 0 };
        long page = sysconf(_SC_PAGESIZE);   /* LMDB's page size */
        int ok;
        snprintf(path, sizeof path, "%s/data.mdb", dir);
        ok = stat(path, &sb) == 0 && sb.st_size > 4 * page && truncate(path, 3 * page) == 0;
        CHECK(ok, "setup: a store of %lld bytes cut to 3 pages", (long long)sb.st_size);
        rc = hsadb_store_open(dir, 0, &st);
        CHECK(rc == HSADB_ERR_CORRUPT && st == NULL && strstr(hsadb_last_error(), "cut short"),
              "a truncated data.mdb -> CORRUPT: %s", hsadb_last_error());
        rc = hsadb_store_open(dir, HSADB_STORE_RDONLY, &st);
        CHECK(rc == HSADB_ERR_CORRUPT && st == NULL, "... read-only too (%s)", hsadb_strerror(rc));
    }
}

/* ---- 8. snapshots ---------------------------------------------------------------------- */

struct snap_writer {
    hsadb_store *st;
    atomic_int stop;
    _Atomic uint64_t committed;
    atomic_int rc;      /* read by the main thread while the writer runs */
};

static void *snap_writer_main(void *arg) {
    struct snap_writer *sw = arg;
    struct hsadb_memory_rec g = geom(HSADB_KV_BF16, 64, 2, 16, 8);
    struct sizes z = sizes_of(&g);
    hsadb_store_writer *w;
    struct scratch s;
    uint64_t n = 0;
    int i;
    scratch_init(&s, z);
    atomic_store(&sw->rc, hsadb_store_writer_begin(sw->st, "a", 1, &w, NULL));
    for (i = 0; atomic_load(&sw->rc) == 0 && !atomic_load(&sw->stop); i++) {
        atomic_store(&sw->rc, append_batch(w, &n, 0, z, 21, 1 + (size_t)(i % 4), &s, 0));
        atomic_store(&sw->committed, n);
    }
    if (w) hsadb_store_writer_end(w);
    scratch_free(&s);
    return NULL;
}

static int shell_ok(const char *cmd) {
    int st = system(cmd);
    return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static void test_snapshot(void) {
    char dir[512], s1[512], s2[512], s3[512], cmd[4096];
    struct hsadb_memory_rec ga = geom(HSADB_KV_BF16, 64, 2, 16, 8), gb = geom(HSADB_KV_F32, 64, 2, 16, 8), rec;
    struct sizes zb = sizes_of(&gb);
    struct snap_writer sw;
    struct scratch s;
    struct names ns = { .n = 0 };
    hsadb_store *st, *ss;
    hsadb_store_writer *w;
    pthread_t th;
    uint64_t lo, mid, hi, n1 = 0, n2 = 0, nb = 0;
    int rc;

    printf("# 8. snapshots\n");
    mkpath(dir, sizeof dir, "snap-src");
    mkpath(s1, sizeof s1, "snap-all");
    mkpath(s2, sizeof s2, "snap-a");
    mkpath(s3, sizeof s3, "snap-missing");
    scratch_init(&s, zb);
    rc = hsadb_store_open(dir, HSADB_STORE_CREATE, &st);
    if (rc == 0) rc = hsadb_store_memory_create(st, "a", &ga);
    if (rc == 0) rc = hsadb_store_memory_create(st, "b", &gb);
    if (rc == 0) rc = hsadb_store_writer_begin(st, "b", 1, &w, NULL);
    if (rc == 0) { rc = append_batch(w, &nb, 0, zb, 22, 20, &s, 1); hsadb_store_writer_end(w); }
    CHECK(rc == 0, "source: memory b with 20 chunks, memory a being appended to");
    if (rc) { hsadb_store_close(st); scratch_free(&s); return; }

    memset(&sw, 0, sizeof sw);
    sw.st = st;
    pthread_create(&th, NULL, snap_writer_main, &sw);
    while (atomic_load(&sw.committed) < 40 && atomic_load(&sw.rc) == 0) usleep(1000);
    lo = atomic_load(&sw.committed);
    rc = hsadb_store_snapshot(st, NULL, s1);
    CHECK(rc == 0, "whole-db snapshot while the writer runs (rc %d %s)", rc, why(rc));
    mid = atomic_load(&sw.committed);
    rc = hsadb_store_snapshot(st, "a", s2);
    CHECK(rc == 0, "snapshot of memory a while the writer runs (rc %d %s)", rc, why(rc));
    hi = atomic_load(&sw.committed);
    rc = hsadb_store_snapshot(st, NULL, s1);
    CHECK(rc == HSADB_ERR_EXISTS, "snapshot into a non-empty directory -> EXISTS");
    rc = hsadb_store_snapshot(st, "zzz", s3);
    CHECK(rc == HSADB_ERR_NOTFOUND && access(s3, F_OK) != 0,
          "snapshot of a missing memory -> NOTFOUND, destination removed");
    usleep(20000);
    atomic_store(&sw.stop, 1);
    pthread_join(th, NULL);
    CHECK(atomic_load(&sw.rc) == 0 && atomic_load(&sw.committed) > hi, "the writer kept committing (%" PRIu64 " chunks, rc %d)",
          atomic_load(&sw.committed), atomic_load(&sw.rc));
    snprintf(cmd, sizeof cmd, "mdb_stat -a %s > /dev/null && mdb_stat -a %s > /dev/null && "
             "mdb_stat -a %s > /dev/null && mdb_dump -s memories %s > /dev/null", dir, s1, s2, s2);
    CHECK(shell_ok(cmd), "mdb_stat -a on the db and both snapshots, mdb_dump -s memories: exit 0");
    hsadb_store_close(st);

    rc = hsadb_store_open(s1, 0, &ss);
    CHECK(rc == 0, "whole snapshot opens as a store");
    if (rc == 0) {
        rc = verify_memory(ss, "a", 21, 1, &n1);
        CHECK(rc == 0 && n1 >= lo && n1 <= mid, "snapshot: a has %" PRIu64 " chunks (committed %" PRIu64 "..%" PRIu64
              " during the copy), intact, tail consistent", n1, lo, mid);
        CHECK(verify_memory(ss, "b", 22, 1, NULL) == 0, "snapshot: b intact");
        hsadb_store_close(ss);
    }
    /* restore path of the engine: open a snapshot read-only, copy it whole */
    {
        char s4[512];
        uint64_t n4 = 0;
        mkpath(s4, sizeof s4, "snap-restored");
        rc = hsadb_store_open(s1, HSADB_STORE_RDONLY, &ss);
        if (rc == 0) rc = hsadb_store_snapshot(ss, NULL, s4);
        hsadb_store_close(ss);
        if (rc == 0) rc = hsadb_store_open(s4, 0, &ss);
        CHECK(rc == 0 && verify_memory(ss, "a", 21, 1, &n4) == 0 && n4 == n1 &&
              verify_memory(ss, "b", 22, 1, NULL) == 0,
              "read-only snapshot store copied whole again (restore): intact (%s)", why(rc));
        if (rc == 0) hsadb_store_close(ss);
    }
    rc = hsadb_store_open(s2, 0, &ss);
    CHECK(rc == 0, "memory snapshot opens as a store");
    if (rc == 0) {
        struct hsadb_memory_rec g2 = geom(HSADB_KV_BF16, 64, 2, 16, 8);
        hsadb_store_memory_foreach(ss, collect, &ns);
        CHECK(ns.n == 1 && !strcmp(ns.v[0], "a"), "memory snapshot holds only a");
        rc = verify_memory(ss, "a", 21, 1, &n2);
        hsadb_store_memory_get(ss, "a", &rec);
        CHECK(rc == 0 && n2 >= mid && n2 <= hi && rec.id == ga.id,
              "snapshot a: %" PRIu64 " chunks (committed %" PRIu64 "..%" PRIu64 "), same id, intact, consistent",
              n2, mid, hi);
        rc = hsadb_store_memory_create(ss, "c", &g2);
        CHECK(rc == 0 && g2.id > gb.id, "next_memory_id copied: a new memory there gets id %u", g2.id);
        hsadb_store_close(ss);
    }
    scratch_free(&s);
}

/* ---- 9. full disk ---------------------------------------------------------------------- */

/* Writes zeros to `path` until `bytes` (SIZE_MAX: until the filesystem is full). */
static void fill_file(const char *path, size_t bytes) {
    static char block[4096];
    size_t done = 0;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    while (fd >= 0 && done < bytes && write(fd, block, sizeof block) > 0) done += sizeof block;
    if (fd >= 0) close(fd);
}

static void test_full_disk(void) {
    char mnt[512], dir[600], reserve[600];
    struct hsadb_memory_rec g = geom(HSADB_KV_BF16, 64, 2, 16, 8), rec;
    struct sizes z = sizes_of(&g);
    struct scratch s;
    hsadb_store *st;
    hsadb_store_writer *w;
    uint64_t n = 0, good = 0, got;
    int rc = 0, i;

    printf("# 9. full disk\n");
    mkpath(mnt, sizeof mnt, "tmpfs");
    mkdir(mnt, 0755);
    if (geteuid() != 0 || mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0) {
        SKIP("full disk (cannot mount tmpfs)");
        rmdir(mnt);
        return;
    }
    snprintf(dir, sizeof dir, "%s/db", mnt);
    snprintf(reserve, sizeof reserve, "%s/reserve", mnt);
    fill_file(reserve, 256 << 10);   /* room to give back at the end */
    scratch_init(&s, z);
    rc = hsadb_store_open(dir, HSADB_STORE_CREATE, &st);
    if (rc == 0) rc = hsadb_store_memory_create(st, "f", &g);
    if (rc == 0) rc = hsadb_store_writer_begin(st, "f", 1, &w, NULL);
    CHECK(rc == 0, "store on a 4 MiB tmpfs");
    if (rc) goto out;
    for (i = 0; i < 1000; i++) {
        rc = append_batch(w, &n, 0, z, 31, 8, &s, 0);
        if (rc) break;
        good = n;
    }
    CHECK(rc == ENOSPC, "commits until the disk is full: %" PRIu64 " chunks, then %s (%s)", good,
          hsadb_strerror(rc), hsadb_last_error());
    rc = hsadb_store_memory_get(st, "f", &rec);
    CHECK(rc == 0 && rec.n_chunks == good, "the failed commit left nothing: n_chunks %" PRIu64, rec.n_chunks);
    CHECK(verify_memory(st, "f", 31, 1, &got) == 0 && got == good, "every earlier commit is intact");
    hsadb_store_writer_end(w);
    hsadb_store_close(st);
    rc = hsadb_store_open(dir, 0, &st);
    CHECK(rc == 0 && verify_memory(st, "f", 31, 1, &got) == 0 && got == good, "reopened: still intact");
    if (rc == 0) hsadb_store_close(st);

    /* Not one free block: a new store must fail with ENOSPC, not die of SIGBUS (LMDB writes its
     * lock file's reader table through a shared mmap of a sparse file), and the store that is
     * there still opens. */
    {
        char fill[600], dir2[600], lock2[640];
        snprintf(fill, sizeof fill, "%s/fill", mnt);
        snprintf(dir2, sizeof dir2, "%s/db2", mnt);
        snprintf(lock2, sizeof lock2, "%s/lock.mdb", dir2);
        fill_file(fill, SIZE_MAX);
        rc = hsadb_store_open(dir2, HSADB_STORE_CREATE, &st);
        CHECK(rc == ENOSPC && access(lock2, F_OK) != 0,
              "a new store on the full disk: %s (%s), no lock file left", hsadb_strerror(rc),
              hsadb_last_error());
        if (rc == 0) hsadb_store_close(st);
        rc = hsadb_store_open(dir, 0, &st);
        CHECK(rc == 0 && verify_memory(st, "f", 31, 1, &got) == 0 && got == good,
              "the full disk's store still opens, intact (%s)", why(rc));
        if (rc == 0) hsadb_store_close(st);
        unlink(fill);
        unlink(reserve);
        rc = hsadb_store_open(dir2, HSADB_STORE_CREATE, &st);
        CHECK(rc == 0, "with room again the new store opens (%s)", why(rc));
        if (rc == 0) hsadb_store_close(st);
    }
out:
    scratch_free(&s);
    umount(mnt);
    rmdir(mnt);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    unsetenv("HSADB_STORE_MAPSIZE");
    if (!tu_tmpdir(g_root, sizeof g_root, "store")) {
        perror("mkdtemp");
        return 1;
    }
    test_memories();
    test_write_read();
    test_kv_batch();
    test_sealed_commits();
    test_kv_pages();
    test_map_growth();
    test_consistency();
    test_busy();
    test_kill9();
    test_corrupt();
    test_snapshot();
    test_full_disk();
    tu_rmrf(g_root);
    return tu_summary();
}
