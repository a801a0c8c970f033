/*
 * storage/store.c — the LMDB store of hsadb.
 *
 * The contract is storage/store.h; the on-disk format and operating notes are in
 * docs/storage.md. This file is organised as:
 *
 *   helpers       keys (big-endian), little-endian ints, error mapping, record validation
 *   map lock      every LMDB transaction of this process runs with st->map_lock held
 *                 shared; mdb_env_set_mapsize (growth, or adopting another process's
 *                 growth) needs no transaction open in the process, so it takes the lock
 *                 exclusively
 *   store_write   one write transaction, re-run from scratch after growing the map
 *   open/close, memories, readers, writers, snapshots
 *
 * Style: int return codes (0, negative HSADB_ERR_*, positive errno), `goto fail` cleanup,
 * hsadb_fail() for the one-line detail. Fixed-layout structs are moved in and out of LMDB
 * values with memcpy: small values in LMDB pages have no alignment guarantee.
 */
#include "store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <inttypes.h>
#include <liburing.h>
#include <lmdb.h>
#include <xxhash.h>

#include "hsadb.h"
#include "lexidx.h"
#include "util.h"

/* The record structs are the on-disk format: pin their layout. */
_Static_assert(sizeof(struct hsadb_memory_rec) == 96, "hsadb_memory_rec layout");
_Static_assert(offsetof(struct hsadb_memory_rec, fingerprint) == 8, "hsadb_memory_rec layout");
_Static_assert(offsetof(struct hsadb_memory_rec, n_chunks) == 56, "hsadb_memory_rec layout");
_Static_assert(offsetof(struct hsadb_memory_rec, updated) == 88, "hsadb_memory_rec layout");
_Static_assert(sizeof(struct hsadb_chunk_meta) == 24, "hsadb_chunk_meta layout");
_Static_assert(sizeof(struct hsadb_append_rec) == 48, "hsadb_append_rec layout");
_Static_assert(offsetof(struct hsadb_append_rec, state) == 40, "hsadb_append_rec layout");
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "store.c writes its records as little-endian structs; port rec I/O for this host"
#endif

/* ---- tunables -------------------------------------------------------------------------- */

#define STORE_MAPSIZE_MIN    ((size_t)1 << 30)  /* initial map: max(1 GiB, 2 x data.mdb) */
#define STORE_MAPSIZE_MAX    ((size_t)1 << 44)  /* growth stops at 16 TiB of address space */
#define STORE_MAXDBS         16
#define STORE_MAXREADERS     1024
/* lock.mdb's blocks, allocated before LMDB maps it: LMDB's reader table is a 192-byte header and
 * a 64-byte slot per reader after the first (65,664 B for 1024 readers), rounded up to pages */
#define STORE_LOCKFILE_BYTES (((STORE_MAXREADERS + 3) * 64 + 4095) / 4096 * 4096)
#define STORE_DELETE_BATCH   4096               /* deletes per write txn in memory_delete */
#define STORE_COPY_BATCH     4096               /* records per dest txn in a memory snapshot */
#define STORE_COPY_BYTES     ((size_t)64 << 20) /* ... or this many value bytes */
#define STORE_READER_POOL    8                  /* reset read txns kept for reuse */
#define STORE_DIM_MAX        65536u             /* bound on each geometry field */
#define STORE_VALUE_MAX      ((uint64_t)1 << 30)/* bound on a kv / tail value */
#define STORE_LOCK_BASE      ((off_t)1 << 40)   /* appender locks: data.mdb byte BASE + id */
#define STORE_OVPAGE_HDR     16                 /* LMDB's page header (PAGEHDRSZ), which also
                                                   heads a value's run of overflow pages */
#define STORE_SPILL_MAX      64                 /* bound on the K/V bytes moved to the landmark */
#define STORE_SNAPSHOT_MARKER "hsadb-snapshot"  /* a finished snapshot's marker file */
#define STORE_SUM            8                  /* format 3: a value's trailing XXH3-64 */
#define STORE_ID_MAX         HSADB_STORE_APPEND_ID_MAX /* bytes of an append's idempotency id */

/* ---- the sub-databases ----------------------------------------------------------------- */

enum { DB_META, DB_MEMORIES, DB_LANDMARKS, DB_KV, DB_CHUNKS, DB_TAILS, DB_APPENDS, DB_APPEND_IDS,
       DB_LEX, /* the lexical index (lexidx.h) */
       DB_COUNT };

static const char *const db_name[DB_COUNT] = {
    "meta", "memories", "landmarks", "kv", "chunks", "tails", "appends", "append_ids",
    "lex",
};

/* The databases keyed by memory id (key prefix = 4-byte big-endian id). */
static const int keyed_dbs[] = { DB_LANDMARKS, DB_KV, DB_CHUNKS, DB_APPENDS, DB_TAILS, DB_APPEND_IDS, DB_LEX };
#define N_KEYED ((int)(sizeof keyed_dbs / sizeof keyed_dbs[0]))

#define KEY_FORMAT  "format"
#define KEY_NEXT_ID "next_memory_id"

/*
 * Value sizes of one memory's records, from its geometry and the store's format.
 *
 * The spill (format 2): LMDB writes a value larger than a page into a run of overflow pages
 * that starts with a 16-byte page header, so a K/V block of exactly 4 pages (16,384 bytes for
 * the shipped geometry) takes 5 pages, the last holding 16 bytes. From format 2 on, those last
 * `spill` bytes of the block are stored after the landmark instead ("landmarks" value = landmark
 * then spill bytes, "kv" value = the block's first kv - spill bytes), and the block takes 4
 * pages: 20% fewer bytes written per chunk. Format-1 stores keep spill = 0.
 */
struct geom {
    size_t lm;     /* landmark: Hm * dr * elsize */
    size_t kv;     /* K then V: 2 * S * Hm * dh * elsize */
    size_t chunk;  /* chunk record: sizeof(hsadb_chunk_meta) + S */
    size_t spill;  /* the K/V block's last bytes stored in the landmark record (see above) */
    size_t sum;    /* bytes of the checksum that ends every value: 8 from format 3, else 0 */
    size_t lm_val, kv_val, chunk_val; /* stored value sizes: lm + spill + sum, kv - spill +
                                         sum, chunk + sum */
};

struct hsadb_store {
    MDB_env          *env;
    MDB_dbi           dbi[DB_COUNT];
    unsigned          flags;              /* hsadb_store_flags */
    pthread_rwlock_t  map_lock;           /* shared: a txn is open; exclusive: remapping */
    pthread_mutex_t   mu;                 /* guards busy[] and pool[] */
    uint32_t         *busy;               /* memory ids held by writers (or a delete) */
    size_t            n_busy, cap_busy;
    hsadb_store_reader *pool[STORE_READER_POOL]; /* ended readers: reset txn + cursor */
    size_t            n_pool;
    int               lock_fd;            /* data.mdb fd for OFD appender locks, -1: none */
    int               broken;             /* a remap failed: the env has no map any more */
    _Atomic int       damaged;            /* a check found damage: writes are refused */
    int               no_lex;             /* read-only store made before the "lex" database */
    uint32_t          format;             /* the store's format (meta 'format') */
    int               has_ids;            /* "append_ids" exists (created by a writable open;
                                             a read-only open of an older store lacks it) */
    size_t            psize;              /* LMDB page size of the env */
    char              dir[];              /* the directory, NUL-terminated */
};

struct hsadb_store_reader {
    hsadb_store              *st;
    MDB_txn                  *txn;        /* read txn; reset while pooled */
    MDB_cursor               *cur;        /* landmarks cursor, opened on first use */
    int                       cur_stale;  /* cur belongs to an earlier txn: renew first */
    struct hsadb_memory_rec   rec;
    struct geom               g;
    uint8_t                  *kvbuf;      /* one K/V block assembled (spill > 0) */
    size_t                    kvbuf_cap;  /* its bytes (pooled readers serve any memory) */
    char                      name[HSADB_NAME_MAX + 1];
};

struct hsadb_store_writer {
    hsadb_store             *st;
    struct hsadb_memory_rec  rec;         /* the memory as of this writer's last commit */
    struct geom              g;
    char                     name[HSADB_NAME_MAX + 1];
    size_t                   name_len;
    uint64_t                 append_id;   /* n_appends + 1 at begin */
    uint64_t                 append_start;/* n_bytes at begin: the append's first offset */
    uint64_t                 append_chunks;/* chunks committed by this append */
    int64_t                  time_start;
    size_t                   stride;      /* bytes per staged chunk: lm + kv + chunk */
    uint8_t                 *buf;         /* staged chunks, n_staged * stride bytes used */
    size_t                   n_staged, cap;/* cap in chunks; kept across commits */
    uint64_t                 next_chunk;  /* the next staged chunk's number */
    uint32_t                 chunk_size;  /* rec.chunk_size, read by put_chunk alone */
    /* the sealed batch (double buffering): committed by commit_sealed, possibly on another
     * thread while put_chunk stages the next chunks into buf */
    uint8_t                 *sbuf;
    size_t                   n_sealed, scap;
    int                      append_ok[DB_COUNT]; /* MDB_APPEND still worth trying */
    uint8_t                  id[STORE_ID_MAX];    /* the append's idempotency id, if any */
    size_t                   id_len;              /* 0: none */
    hsadb_lexidx_writer     *lex;         /* scratch of the lexical index's commit hook */
};

/* ---- small helpers --------------------------------------------------------------------- */

static void put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static void put_be64(uint8_t *p, uint64_t v) {
    put_be32(p, (uint32_t)(v >> 32));
    put_be32(p + 4, (uint32_t)v);
}
static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t get_be64(const uint8_t *p) {
    return (uint64_t)get_be32(p) << 32 | get_be32(p + 4);
}
static void put_le32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}
static uint32_t get_le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* key(memory_id): 4 bytes; key(memory_id, n): 12 bytes. Big-endian so that LMDB's byte
 * order is numeric order and a memory's records are contiguous. */
static MDB_val key_mem(uint8_t buf[4], uint32_t id) {
    put_be32(buf, id);
    return (MDB_val){ 4, buf };
}
static MDB_val key_rec(uint8_t buf[12], uint32_t id, uint64_t n) {
    put_be32(buf, id);
    put_be64(buf + 4, n);
    return (MDB_val){ 12, buf };
}
static MDB_val key_str(const char *s) {
    return (MDB_val){ strlen(s), (void *)s };
}

static int is_hsadb_err(int rc) { return rc <= HSADB_ERR_INVALID && rc >= HSADB_ERR_STORE; }

/*
 * Record checksums (format 3). Every value of "memories", "landmarks", "kv", "chunks", "tails"
 * and "appends" ends with 8 bytes: the XXH3-64 of the value's other bytes, seeded with the
 * XXH3-64 of its key seeded with the database's number, little-endian. A record that moved to
 * another key or database fails its check as surely as one whose bytes changed. Format 1 and 2
 * values have none (sum_bytes 0) and are read as before.
 */
static size_t store_sum_bytes(const hsadb_store *st) { return st->format >= 3 ? STORE_SUM : 0; }

static uint64_t rec_sum(int db, const MDB_val *k, const void *body, size_t len) {
    return XXH3_64bits_withSeed(body, len, XXH3_64bits_withSeed(k->mv_data, k->mv_size, (uint64_t)db));
}

/* Writes the checksum of body[0..len) (key k of db) at body + len. */
static void sum_put(int db, const MDB_val *k, uint8_t *body, size_t len) {
    const uint64_t s = rec_sum(db, k, body, len);
    memcpy(body + len, &s, STORE_SUM);
}

/* 1 when value v (body, then its checksum) of key k in db is intact, or the store has none. */
static int sum_ok(const hsadb_store *st, int db, const MDB_val *k, const MDB_val *v) {
    uint64_t s;
    if (!store_sum_bytes(st)) return 1;
    if (v->mv_size < STORE_SUM) return 0;
    memcpy(&s, (const uint8_t *)v->mv_data + v->mv_size - STORE_SUM, STORE_SUM);
    return s == rec_sum(db, k, v->mv_data, v->mv_size - STORE_SUM);
}

/*
 * Maps an LMDB result (or errno) to the store's error space, recording a detail line that
 * starts with `what`. HSADB_ERR_* codes pass through untouched: their detail is already set
 * by whoever produced them.
 */
static int store_err(int rc, const char *what) {
    if (rc == 0 || is_hsadb_err(rc)) return rc;
    switch (rc) {
    case MDB_NOTFOUND:
        return hsadb_fail(HSADB_ERR_NOTFOUND, "%s: not found", what);
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
        return hsadb_fail(HSADB_ERR_CORRUPT, "%s: %s", what, mdb_strerror(rc));
    case MDB_VERSION_MISMATCH:
        return hsadb_fail(HSADB_ERR_VERSION, "%s: %s", what, mdb_strerror(rc));
    case MDB_TXN_FULL:
        return hsadb_fail(HSADB_ERR_STORE, "%s: %s (batch too large for one transaction)",
                          what, mdb_strerror(rc));
    }
    if (rc > 0) return hsadb_fail(rc, "%s: %s", what, strerror(rc));
    return hsadb_fail(HSADB_ERR_STORE, "%s: %s", what, mdb_strerror(rc));
}

/*
 * Checks a memory name: 1..HSADB_NAME_MAX bytes of [A-Za-z0-9._-]. Sets *len.
 */
static int name_check(const char *name, size_t *len) {
    size_t n, i;
    if (!name) return hsadb_fail(HSADB_ERR_INVALID, "memory name is NULL");
    n = strnlen(name, HSADB_NAME_MAX + 1);
    if (n == 0 || n > HSADB_NAME_MAX)
        return hsadb_fail(HSADB_ERR_INVALID, "bad memory name (length %zu%s): 1..%d bytes",
                          n, n > HSADB_NAME_MAX ? "+" : "", HSADB_NAME_MAX);
    for (i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return hsadb_fail(HSADB_ERR_INVALID,
                              "bad memory name '%s': byte %zu is not one of [A-Za-z0-9._-]",
                              name, i);
    }
    *len = n;
    return 0;
}

int hsadb_memory_name_valid(const char *name) {
    size_t len;
    return name_check(name, &len) == 0;
}

/*
 * Derives the value sizes of a memory's records from its geometry. `err` is what a bad
 * geometry is reported as: HSADB_ERR_INVALID for a caller's record, HSADB_ERR_CORRUPT for a
 * stored one.
 */
static int rec_geom(const hsadb_store *st, const struct hsadb_memory_rec *r, const char *name,
                    int err, struct geom *g) {
    uint64_t el, lm, kv;
    if (r->kv_dtype == HSADB_KV_BF16) el = 2;
    else if (r->kv_dtype == HSADB_KV_F32) el = 4;
    else return hsadb_fail(err, "memory '%s': kv_dtype %u is neither bf16 (0) nor f32 (1)",
                           name, r->kv_dtype);
    if (r->chunk_size == 0 || r->mem_heads == 0 || r->head_dim == 0 || r->retrieval_dim == 0 ||
        r->chunk_size > STORE_DIM_MAX || r->mem_heads > STORE_DIM_MAX ||
        r->head_dim > STORE_DIM_MAX || r->retrieval_dim > STORE_DIM_MAX)
        return hsadb_fail(err, "memory '%s': bad geometry S=%u Hm=%u dh=%u dr=%u", name,
                          r->chunk_size, r->mem_heads, r->head_dim, r->retrieval_dim);
    lm = (uint64_t)r->mem_heads * r->retrieval_dim * el;
    kv = 2 * (uint64_t)r->chunk_size * r->mem_heads * r->head_dim * el;
    if (kv > STORE_VALUE_MAX || lm > STORE_VALUE_MAX)
        return hsadb_fail(err, "memory '%s': K/V block of %llu bytes is too large", name,
                          (unsigned long long)kv);
    g->lm = (size_t)lm;
    g->kv = (size_t)kv;
    g->chunk = sizeof(struct hsadb_chunk_meta) + r->chunk_size;
    g->spill = 0;
    g->sum = store_sum_bytes(st);
    if (st->format >= 2 && st->psize > 0 && g->kv + g->sum + STORE_OVPAGE_HDR > st->psize) {
        const size_t over = (g->kv + g->sum + STORE_OVPAGE_HDR) % st->psize;
        if (over <= STORE_SPILL_MAX) g->spill = over;
    }
    g->lm_val = g->lm + g->spill + g->sum;
    g->kv_val = g->kv - g->spill + g->sum;
    g->chunk_val = g->chunk + g->sum;
    return 0;
}

/* Copies a "memories" value into *rec after checking its size and geometry. */
static int rec_load(const hsadb_store *st, const MDB_val *v, const char *name,
                    struct hsadb_memory_rec *rec, struct geom *g) {
    struct geom tmp;
    const MDB_val k = key_str(name);
    if (v->mv_size != sizeof *rec + store_sum_bytes(st))
        return hsadb_fail(HSADB_ERR_CORRUPT, "memory record '%s': %zu bytes, expected %zu",
                          name, v->mv_size, sizeof *rec + store_sum_bytes(st));
    if (!sum_ok(st, DB_MEMORIES, &k, v))
        return hsadb_fail(HSADB_ERR_CORRUPT, "memory record '%s': checksum mismatch", name);
    memcpy(rec, v->mv_data, sizeof *rec);
    return rec_geom(st, rec, name, HSADB_ERR_CORRUPT, g ? g : &tmp);
}

/* ---- the map lock ---------------------------------------------------------------------- */

/*
 * Per-thread count of map-lock holds, per store. A thread that holds a reader must not wait
 * for the exclusive lock (it would wait for itself), so map_resize() checks this first. A
 * few slots suffice; beyond them holds are counted in a shared overflow bucket, which only
 * makes the check more conservative.
 */
#define TLS_STORES 8
static _Thread_local struct { const hsadb_store *st; int n; } tls_hold[TLS_STORES];
static _Thread_local int tls_hold_overflow;

static void hold_add(const hsadb_store *st, int d) {
    int i, free_i = -1;
    for (i = 0; i < TLS_STORES; i++) {
        if (tls_hold[i].st == st) {
            tls_hold[i].n += d;
            if (tls_hold[i].n == 0) tls_hold[i].st = NULL;
            return;
        }
        if (!tls_hold[i].st && free_i < 0) free_i = i;
    }
    if (d > 0 && free_i >= 0) {
        tls_hold[free_i].st = st;
        tls_hold[free_i].n = d;
        return;
    }
    tls_hold_overflow += d;
}

static int hold_count(const hsadb_store *st) {
    int i;
    for (i = 0; i < TLS_STORES; i++)
        if (tls_hold[i].st == st) return tls_hold[i].n + tls_hold_overflow;
    return tls_hold_overflow;
}

static void map_enter(hsadb_store *st) {
    pthread_rwlock_rdlock(&st->map_lock);
    hold_add(st, 1);
}

static void map_leave(hsadb_store *st) {
    hold_add(st, -1);
    pthread_rwlock_unlock(&st->map_lock);
}

/*
 * Remaps the environment: adopt != 0 adopts the map size another process committed
 * (after MDB_MAP_RESIZED); otherwise doubles the map, unless another thread already grew
 * it beyond `seen` (the size the failed transaction ran with). mdb_env_set_mapsize needs
 * no transaction open in this process, so this takes the map lock exclusively and waits
 * for readers to end. The caller must hold no map lock; a thread that still holds a reader
 * on this store gets HSADB_ERR_BUSY instead of deadlocking. If the remap itself fails
 * (mmap), LMDB is left without a map: the store is marked broken.
 */
static int map_resize(hsadb_store *st, size_t seen, int adopt) {
    MDB_envinfo info;
    size_t size;
    int rc = 0;

    if (hold_count(st) > 0)
        return hsadb_fail(HSADB_ERR_BUSY,
                          "store %s: the map must %s, but this thread holds a reader on it "
                          "(end readers before writing)", st->dir,
                          adopt ? "be remapped to another process's size" : "grow");
    pthread_rwlock_wrlock(&st->map_lock);
    if (st->broken) {
        rc = hsadb_fail(HSADB_ERR_STORE, "store %s: map lost after a failed remap; reopen",
                        st->dir);
        goto done;
    }
    if (adopt) {
        rc = mdb_env_set_mapsize(st->env, 0);
    } else {
        mdb_env_info(st->env, &info);
        if (info.me_mapsize > seen) goto done;          /* grown meanwhile: just retry */
        if (info.me_mapsize >= STORE_MAPSIZE_MAX) {
            rc = hsadb_fail(HSADB_ERR_STORE, "store %s: map full at %zu bytes (the limit)",
                            st->dir, info.me_mapsize);
            goto done;
        }
        size = info.me_mapsize * 2;
        if (size > STORE_MAPSIZE_MAX) size = STORE_MAPSIZE_MAX;
        rc = mdb_env_set_mapsize(st->env, size);
    }
    if (rc && rc != EINVAL) st->broken = 1;   /* EINVAL: refused before unmapping */
    if (rc) rc = store_err(rc, "grow map");
done:
    pthread_rwlock_unlock(&st->map_lock);
    return rc;
}

/*
 * Begins a transaction (flags 0 or MDB_RDONLY); the caller holds the map lock shared.
 * MDB_MAP_RESIZED (another process grew the file beyond our map) is handled by adopting
 * its size, which drops and retakes the shared lock; MDB_READERS_FULL by clearing the
 * slots of dead processes once. Returns an LMDB or HSADB code.
 */
static int txn_begin(hsadb_store *st, unsigned flags, MDB_txn **txn) {
    int rc, tries, dead;
    for (tries = 0;; tries++) {
        if (st->broken)
            return hsadb_fail(HSADB_ERR_STORE, "store %s: map lost after a failed remap; reopen",
                              st->dir);
        rc = mdb_txn_begin(st->env, NULL, flags, txn);
        if (rc == MDB_MAP_RESIZED && tries < 64) {
            map_leave(st);
            rc = map_resize(st, 0, 1);
            map_enter(st);
            if (rc) return rc;
            continue;
        }
        if (rc == MDB_READERS_FULL && tries == 0) {
            dead = 0;
            mdb_reader_check(st->env, &dead);
            continue;
        }
        return rc;
    }
}

/* A short read transaction: takes the map lock shared; read_end() releases both. */
static int read_begin(hsadb_store *st, MDB_txn **txn) {
    int rc;
    map_enter(st);
    rc = txn_begin(st, MDB_RDONLY, txn);
    if (rc) map_leave(st);
    return rc;
}

static void read_end(hsadb_store *st, MDB_txn *txn) {
    mdb_txn_abort(txn);
    map_leave(st);
}

/*
 * Tells a full disk from other short writes. LMDB 0.9.24 reports a short write(2) of dirty
 * pages as EIO ("short write, filesystem full?"); if the filesystem of the store has less
 * room than the transaction needed, report ENOSPC.
 */
static int eio_or_enospc(const hsadb_store *st, size_t bytes) {
    struct statvfs vfs;
    uint64_t avail;
    if (statvfs(st->dir, &vfs) != 0) return EIO;
    avail = (uint64_t)(geteuid() == 0 ? vfs.f_bfree : vfs.f_bavail) * vfs.f_frsize;
    return avail < 2 * (uint64_t)bytes + ((uint64_t)1 << 20) ? ENOSPC : EIO;
}

typedef int (*write_fn)(hsadb_store *st, MDB_txn *txn, void *ctx);

/*
 * Runs fn in one write transaction and commits it. After MDB_MAP_FULL (from a put inside fn
 * or from the commit itself) the transaction is aborted, the map doubled and fn run again
 * from scratch, so fn must derive everything from ctx and the txn. On any other error the
 * transaction is aborted and nothing is written. `what` names the operation in error
 * details; `bytes` estimates what the transaction writes (see eio_or_enospc()).
 */
static _Thread_local double tls_put_s, tls_commit_s;   /* the thread's last store_write */

void hsadb_store_last_write_times(double *put_s, double *commit_s) {
    *put_s = tls_put_s, *commit_s = tls_commit_s;
}

static int store_write(hsadb_store *st, write_fn fn, void *ctx, const char *what,
                       size_t bytes) {
    MDB_envinfo info;
    MDB_txn *txn;
    int rc;

    if (st->flags & HSADB_STORE_RDONLY)
        return hsadb_fail(HSADB_ERR_READONLY, "%s: store %s is open read-only", what, st->dir);
    for (;;) {
        map_enter(st);
        rc = txn_begin(st, 0, &txn);
        if (rc) {
            map_leave(st);
            return store_err(rc, what);
        }
        const double t0 = hsadb_seconds();
        rc = fn(st, txn, ctx);
        const double t1 = hsadb_seconds();
        if (rc == 0) {
            rc = mdb_txn_commit(txn);              /* on failure LMDB aborts the txn */
            if (rc == EIO) rc = eio_or_enospc(st, bytes);
            tls_put_s = t1 - t0, tls_commit_s = hsadb_seconds() - t1;
        } else {
            mdb_txn_abort(txn);
        }
        info.me_mapsize = 0;
        if (rc == MDB_MAP_FULL) mdb_env_info(st->env, &info);
        map_leave(st);
        if (rc != MDB_MAP_FULL) return store_err(rc, what);
        if ((rc = map_resize(st, info.me_mapsize, 0))) return rc;
    }
}

/* ---- open / close ---------------------------------------------------------------------- */

/*
 * Allocates the disk blocks of `dir`/lock.mdb (creating it) before LMDB opens it. LMDB sizes a
 * new lock file with ftruncate, a sparse file, and writes its reader table through a shared
 * mmap: on a full filesystem the first store to a page that has no block is SIGBUS, which
 * killed `hsadb create` on a full disk (session 18, a GPU evaluation that filled /tmp).
 * fallocate with FALLOC_FL_KEEP_SIZE allocates the blocks without changing the file's size,
 * so LMDB still sizes the table itself; a full disk is ENOSPC here instead. Filesystems
 * without fallocate (EOPNOTSUPP) and directories we may not write (EACCES, EROFS: a read-only
 * open of someone else's store) are left to LMDB as before.
 */
static int lockfile_reserve(const char *dir) {
    char path[PATH_MAX];
    int fd, created = 1, err = 0;

    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 && errno == EEXIST) {
        created = 0;
        fd = open(path, O_RDWR | O_CLOEXEC);
    }
    if (fd < 0) return 0;
    if (fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, STORE_LOCKFILE_BYTES) != 0) err = errno;
    close(fd);
    if (err != ENOSPC && err != EDQUOT) return 0;
    if (created) unlink(path);   /* leave the directory as it was */
    return hsadb_fail(err, "%s: no room for the lock file (%d KiB): %s", path,
                      STORE_LOCKFILE_BYTES >> 10, strerror(err));
}

/*
 * HSADB_ERR_CORRUPT if data.mdb ends before the last page its meta page names (a file cut
 * short: a partial copy, a truncate). LMDB reads pages through its mmap, and a page beyond the
 * end of the file is SIGBUS at the first read (every command died of it, exit 135, before this
 * check). LMDB writes the pages of a commit before its meta page, so an intact file is never
 * shorter than that.
 */
static int check_length(hsadb_store *st) {
    MDB_envinfo info;
    struct stat sb;
    uint64_t need;
    int fd, rc;

    if ((rc = mdb_env_info(st->env, &info)) || (rc = mdb_env_get_fd(st->env, &fd)))
        return store_err(rc, st->dir);
    if (fstat(fd, &sb) != 0) return hsadb_fail(errno, "%s/data.mdb: %s", st->dir, strerror(errno));
    need = ((uint64_t)info.me_last_pgno + 1) * st->psize;
    if ((uint64_t)sb.st_size < need)
        return hsadb_fail(HSADB_ERR_CORRUPT,
                          "%s/data.mdb is %" PRIu64 " bytes but its last page ends at byte %" PRIu64
                          ": the file was cut short (a partial copy?)",
                          st->dir, (uint64_t)sb.st_size, need);
    return 0;
}

/*
 * A read-only open of a data.mdb too short to hold LMDB's two meta pages (an empty file: a
 * copy killed before its first write) is a damaged store. LMDB itself would try to write a
 * fresh meta page through its read-only descriptor and fail with EBADF ("Bad file
 * descriptor", issue 35). A writable open of an empty file initialises a new store, as before.
 */
static int check_short(const char *dir) {
    char path[PATH_MAX];
    struct stat sb;
    long page = sysconf(_SC_PAGESIZE);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) return 0;   /* LMDB reports it */
    if (sb.st_size < 2 * (page > 0 ? page : 4096))
        return hsadb_fail(HSADB_ERR_CORRUPT, "%s is %lld bytes, too short for an LMDB file (two "
                          "meta pages): cut short or never written", path, (long long)sb.st_size);
    return 0;
}

/*
 * Initial map size: HSADB_STORE_MAPSIZE (bytes) if set, else max(1 GiB, 2 x data.mdb).
 * LMDB itself raises a too small size to what the file already holds.
 */
static int initial_mapsize(const char *dir, size_t *out) {
    const char *e = getenv("HSADB_STORE_MAPSIZE");
    char path[PATH_MAX];
    struct stat sb;
    size_t size = STORE_MAPSIZE_MIN;
    long page = sysconf(_SC_PAGESIZE);

    if (page <= 0) page = 4096;
    if (e && *e) {
        char *end = NULL;
        unsigned long long v;
        errno = 0;
        v = strtoull(e, &end, 0);
        if (errno || !end || *end || v == 0 || v > STORE_MAPSIZE_MAX)
            return hsadb_fail(HSADB_ERR_INVALID, "HSADB_STORE_MAPSIZE='%s' is not a byte count",
                              e);
        size = (size_t)v;
    } else {
        snprintf(path, sizeof path, "%s/data.mdb", dir);
        if (stat(path, &sb) == 0 && (uint64_t)sb.st_size * 2 > size)
            size = (size_t)sb.st_size * 2;
    }
    size = (size + (size_t)page - 1) / (size_t)page * (size_t)page;
    *out = size;
    return 0;
}

/*
 * Opens the sub-databases and checks (or, in a new env, writes) the format key. Runs as a
 * write_fn for a writable store, or in a read transaction for a read-only one (then
 * nothing can be created: a missing sub-database means this is not an hsadb store).
 */
static int init_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    unsigned dbflags = (st->flags & HSADB_STORE_RDONLY) ? 0 : MDB_CREATE;
    uint8_t b[4];
    MDB_val k, v;
    MDB_stat ms;
    uint32_t ver;
    int i, rc;

    st->has_ids = 1;
    for (i = 0; i < DB_COUNT; i++) {
        rc = mdb_dbi_open(txn, db_name[i], dbflags, &st->dbi[i]);
        if (rc == MDB_NOTFOUND && i == DB_APPEND_IDS) {   /* added later: optional when read-only */
            st->has_ids = 0;
            continue;
        }
        if (rc == MDB_NOTFOUND && i == DB_LEX) {   /* lexical index: a store made before it */
            st->no_lex = 1;
            continue;
        }
        if (rc == MDB_NOTFOUND)
            return hsadb_fail(HSADB_ERR_CORRUPT, "%s is not an hsadb store: no sub-database '%s'",
                              st->dir, db_name[i]);
        if (rc) return store_err(rc, db_name[i]);
    }
    k = key_str(KEY_FORMAT);
    rc = mdb_get(txn, st->dbi[DB_META], &k, &v);
    if (rc == MDB_NOTFOUND) {
        if ((rc = mdb_stat(txn, st->dbi[DB_MEMORIES], &ms))) return rc;
        if (ms.ms_entries > 0)
            return hsadb_fail(HSADB_ERR_CORRUPT, "%s: meta key 'format' missing in a store "
                              "that holds %zu memories", st->dir, ms.ms_entries);
        if (dbflags == 0)
            return hsadb_fail(HSADB_ERR_CORRUPT, "%s: store not initialised (open it writable "
                              "once)", st->dir);
        /* HSADB_STORE_NEW_FORMAT=1 creates a format-1 store (benchmarks and tests compare) */
        const char *nf = getenv("HSADB_STORE_NEW_FORMAT");
        ver = HSADB_STORE_FORMAT;
        if (nf && *nf) {
            char *end = NULL;
            unsigned long f = strtoul(nf, &end, 10);
            if (!end || *end || f < 1 || f > HSADB_STORE_FORMAT)
                return hsadb_fail(HSADB_ERR_INVALID, "HSADB_STORE_NEW_FORMAT='%s': not a format "
                                  "1..%u", nf, HSADB_STORE_FORMAT);
            ver = (uint32_t)f;
        }
        put_le32(b, ver);
        v = (MDB_val){ 4, b };
        if ((rc = mdb_put(txn, st->dbi[DB_META], &k, &v, 0))) return rc;
        st->format = ver;
        k = key_str(KEY_NEXT_ID);
        put_le32(b, 1);
        v = (MDB_val){ 4, b };
        rc = mdb_put(txn, st->dbi[DB_META], &k, &v, MDB_NOOVERWRITE);
        return rc == MDB_KEYEXIST ? 0 : rc;
    }
    if (rc) return rc;
    if (v.mv_size != 4)
        return hsadb_fail(HSADB_ERR_CORRUPT, "%s: meta 'format' has %zu bytes, expected 4",
                          st->dir, v.mv_size);
    ver = get_le32(v.mv_data);
    if (ver == 0)
        return hsadb_fail(HSADB_ERR_CORRUPT, "%s: meta 'format' is 0", st->dir);
    if (ver > HSADB_STORE_FORMAT)
        return hsadb_fail(HSADB_ERR_VERSION, "%s: store format %u is newer than this build "
                          "supports (%u)", st->dir, ver, HSADB_STORE_FORMAT);
    st->format = ver;
    return 0;
}

/* Runs init_fn: in a write txn (writable store) or a committed read txn (read-only). */
static int store_init(hsadb_store *st) {
    MDB_txn *txn;
    int rc;

    if (!(st->flags & HSADB_STORE_RDONLY))
        return store_write(st, init_fn, NULL, "initialise store", 4096);
    map_enter(st);
    rc = txn_begin(st, MDB_RDONLY, &txn);
    if (rc == 0) {
        rc = init_fn(st, txn, NULL);
        if (rc == 0) rc = mdb_txn_commit(txn);   /* keeps the DBI handles */
        else mdb_txn_abort(txn);
    }
    map_leave(st);
    return store_err(rc, "open store");
}

static void reader_destroy(hsadb_store_reader *r) {
    if (r->cur) mdb_cursor_close(r->cur);
    if (r->txn) mdb_txn_abort(r->txn);
    free(r->kvbuf);
    free(r);
}

/*
 * Opens (HSADB_STORE_CREATE: creating the directory) the environment in `dir`: MDB_NOTLS
 * (read transactions are not tied to threads), 16 named DBs, 1024 reader slots, no
 * WRITEMAP; HSADB_STORE_NOSYNC adds MDB_NOSYNC. Clears reader slots of dead processes,
 * then opens the sub-databases and checks the format version.
 */
int hsadb_store_open(const char *dir, unsigned flags, hsadb_store **out) {
    hsadb_store *st = NULL;
    struct stat sb;
    size_t dlen, mapsize;
    unsigned envflags;
    int rc, dead;

    if (!out) return hsadb_fail(HSADB_ERR_INVALID, "store open: out is NULL");
    *out = NULL;
    if (!dir || !*dir) return hsadb_fail(HSADB_ERR_INVALID, "store open: no directory");
    dlen = strlen(dir);
    if (dlen > PATH_MAX - 32) return hsadb_fail(ENAMETOOLONG, "store open: path too long");
    if ((flags & HSADB_STORE_CREATE) && !(flags & HSADB_STORE_RDONLY) &&
        mkdir(dir, 0755) != 0 && errno != EEXIST)
        return hsadb_fail(errno, "mkdir %s: %s", dir, strerror(errno));
    if (stat(dir, &sb) != 0) return hsadb_fail(errno, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return hsadb_fail(ENOTDIR, "%s: not a directory", dir);
    if ((rc = initial_mapsize(dir, &mapsize))) return rc;
    if ((flags & HSADB_STORE_RDONLY) && (rc = check_short(dir))) return rc;
    if ((rc = lockfile_reserve(dir))) return rc;

    st = calloc(1, sizeof *st + dlen + 1);
    if (!st) return hsadb_fail(ENOMEM, "store open: out of memory");
    memcpy(st->dir, dir, dlen + 1);
    st->flags = flags;
    st->lock_fd = -1;
    pthread_rwlock_init(&st->map_lock, NULL);   /* default kind: recursive reads never block */
    pthread_mutex_init(&st->mu, NULL);

    if ((rc = mdb_env_create(&st->env))) {
        st->env = NULL;
        goto fail;
    }
    if ((rc = mdb_env_set_maxdbs(st->env, STORE_MAXDBS)) ||
        (rc = mdb_env_set_maxreaders(st->env, STORE_MAXREADERS)) ||
        (rc = mdb_env_set_mapsize(st->env, mapsize)))
        goto fail;
    envflags = MDB_NOTLS;
    if (flags & HSADB_STORE_NOSYNC) envflags |= MDB_NOSYNC;
    if (flags & HSADB_STORE_RDONLY) envflags |= MDB_RDONLY;
    if ((rc = mdb_env_open(st->env, dir, envflags, 0644))) goto fail;
    mdb_reader_check(st->env, &dead);
    {
        MDB_stat es;
        if ((rc = mdb_env_stat(st->env, &es))) goto fail;
        st->psize = es.ms_psize;
    }
    if ((rc = check_length(st))) goto fail_quiet;
    if ((rc = store_init(st))) goto fail;

    /* Cross-process appender locks: OFD byte locks on data.mdb (LMDB's own fd, so no fd of
     * ours can drop LMDB's POSIX locks). Only HSADB_STORE_NO_APPEND_LOCK (tests of the
     * commit-time check) turns them off. */
    if (!(flags & (HSADB_STORE_RDONLY | HSADB_STORE_NO_APPEND_LOCK)) &&
        mdb_env_get_fd(st->env, &st->lock_fd) != 0)
        st->lock_fd = -1;
    *out = st;
    return 0;

fail:
    rc = store_err(rc, dir);   /* e.g. "<dir>: MDB_INVALID: File is not an LMDB file" */
fail_quiet:
    if (st->env) mdb_env_close(st->env);
    pthread_rwlock_destroy(&st->map_lock);
    pthread_mutex_destroy(&st->mu);
    free(st);
    return rc;
}

/* Closes the environment. Readers and writers must have ended. NULL is a no-op. */
void hsadb_store_close(hsadb_store *st) {
    size_t i;
    if (!st) return;
    for (i = 0; i < st->n_pool; i++) reader_destroy(st->pool[i]);
    if (st->env) mdb_env_close(st->env);     /* also closes lock_fd: it is LMDB's */
    pthread_rwlock_destroy(&st->map_lock);
    pthread_mutex_destroy(&st->mu);
    free(st->busy);
    free(st);
}

/* Flushes data and meta pages (what HSADB_STORE_NOSYNC commits leave in the page cache). */
int hsadb_store_sync(hsadb_store *st) {
    if (!st) return hsadb_fail(HSADB_ERR_INVALID, "store sync: NULL store");
    if (st->flags & HSADB_STORE_RDONLY) return 0;
    return store_err(mdb_env_sync(st->env, 1), "sync");
}

/* ---- per-memory appender lock ---------------------------------------------------------- */

/*
 * Takes the appender lock on memory `id`: in this process a set of held ids, across
 * processes an OFD write lock on byte STORE_LOCK_BASE + id of data.mdb (released by the
 * kernel if the process dies). HSADB_ERR_BUSY if either is held. The commit-time check of
 * the memory record (commit_fn) remains the backstop where OFD locks are unavailable.
 */
static int memory_lock(hsadb_store *st, uint32_t id, const char *name) {
    struct flock fl;
    uint32_t *nb;
    size_t i, cap;
    int rc = 0;

    pthread_mutex_lock(&st->mu);
    for (i = 0; i < st->n_busy; i++)
        if (st->busy[i] == id) {
            rc = hsadb_fail(HSADB_ERR_BUSY, "memory '%s' is being appended to (or deleted) "
                            "in this process", name);
            goto done;
        }
    if (st->n_busy == st->cap_busy) {
        cap = st->cap_busy ? 2 * st->cap_busy : 8;
        nb = realloc(st->busy, cap * sizeof *nb);
        if (!nb) {
            rc = hsadb_fail(ENOMEM, "memory lock: out of memory");
            goto done;
        }
        st->busy = nb;
        st->cap_busy = cap;
    }
    if (st->lock_fd >= 0) {
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = STORE_LOCK_BASE + (off_t)id;
        fl.l_len = 1;
        if (fcntl(st->lock_fd, F_OFD_SETLK, &fl) != 0) {
            if (errno == EAGAIN || errno == EACCES) {
                rc = hsadb_fail(HSADB_ERR_BUSY, "memory '%s' is being appended to (or deleted) "
                                "by another process", name);
                goto done;
            }
            if (errno != EINVAL) {
                rc = hsadb_fail(errno, "memory '%s': lock: %s", name, strerror(errno));
                goto done;
            }
            /* EINVAL: no OFD locks on this system; rely on the commit-time check */
        }
    }
    st->busy[st->n_busy++] = id;
done:
    pthread_mutex_unlock(&st->mu);
    return rc;
}

static void memory_unlock(hsadb_store *st, uint32_t id) {
    struct flock fl;
    size_t i;

    pthread_mutex_lock(&st->mu);
    for (i = 0; i < st->n_busy; i++)
        if (st->busy[i] == id) {
            st->busy[i] = st->busy[--st->n_busy];
            break;
        }
    if (st->lock_fd >= 0) {
        memset(&fl, 0, sizeof fl);
        fl.l_type = F_UNLCK;
        fl.l_whence = SEEK_SET;
        fl.l_start = STORE_LOCK_BASE + (off_t)id;
        fl.l_len = 1;
        fcntl(st->lock_fd, F_OFD_SETLK, &fl);
    }
    pthread_mutex_unlock(&st->mu);
}

/* ---- memories -------------------------------------------------------------------------- */

/* Looks `name` up in "memories" within txn; HSADB_ERR_NOTFOUND if absent. */
static int mem_lookup(hsadb_store *st, MDB_txn *txn, const char *name, size_t len,
                      struct hsadb_memory_rec *rec, struct geom *g) {
    MDB_val k = { len, (void *)name }, v;
    int rc = mdb_get(txn, st->dbi[DB_MEMORIES], &k, &v);
    if (rc == MDB_NOTFOUND) return hsadb_fail(HSADB_ERR_NOTFOUND, "no memory named '%s'", name);
    if (rc) return store_err(rc, name);
    return rec_load(st, &v, name, rec, g);
}

/*
 * Writes on a damaged store. LMDB trusts its pages: deleting a record whose overflow page
 * header was damaged frees pages that are not its own, and the next write crashed inside
 * LMDB (an assertion, SIGSEGV, SIGBUS; a heap overflow under ASan: issue 35). So a store in
 * which any check found damage refuses every later write (create, append, delete) through
 * this handle, and each write first checks the structure it is about to touch:
 *   - delete: every record of the memory (sizes, counts, overflow page headers; no hashing)
 *     and LMDB's free list;
 *   - append (writer_begin): the memory record (its checksum) and the tail record, which the
 *     append replaces (its overflow run is freed), and the free list;
 *   - create: the free list.
 * Reads never write, so they go on (a damaged record itself is refused as CORRUPT).
 */
static int damaged_fail(const hsadb_store *st, const char *what) {
    return hsadb_fail(HSADB_ERR_CORRUPT, "%s: store %s failed its integrity check (run `hsadb "
                      "check`); writes are refused until it is restored from a snapshot or its "
                      "sound memories are copied out", what, st->dir);
}

static int first_damage_fn(void *ctx, const struct hsadb_store_damage *d) {
    char *buf = ctx;
    char num[32] = "";
    if (d->n != UINT64_MAX) snprintf(num, sizeof num, " %llu", (unsigned long long)d->n);
    if (!buf[0])
        snprintf(buf, 256, "%s%s%s%s record%s: %s", d->memory ? "memory '" : "",
                 d->memory ? d->memory : "", d->memory ? "' " : "", d->db, num, d->what);
    return 0;
}

static int check_run(hsadb_store *st, const char *name, int sums, hsadb_store_damage_fn fn,
                     void *ctx, struct hsadb_store_check_result *out);
static int check_freelist_only(hsadb_store *st, hsadb_store_damage_fn fn, void *ctx,
                               struct hsadb_store_check_result *out);
static int check_tail_only(hsadb_store *st, const char *name, hsadb_store_damage_fn fn,
                           void *ctx, struct hsadb_store_check_result *out);

/* Refuses a write on a damaged store; `scope`: 0 free list, 1 + memory name: its tail too
 * (append), 2 + memory name: all of its records (delete). */
static int write_guard(hsadb_store *st, int scope, const char *name, const char *what) {
    struct hsadb_store_check_result res = { 0, 0 };
    char first[256] = "";
    int rc;
    if (st->damaged) return damaged_fail(st, what);
    if (scope == 2) rc = check_run(st, name, 0, first_damage_fn, first, &res);
    else if (scope == 1) rc = check_tail_only(st, name, first_damage_fn, first, &res);
    else rc = 0;
    if (rc == 0 && res.n_damaged == 0) rc = check_freelist_only(st, first_damage_fn, first, &res);
    if (rc) return rc;
    if (res.n_damaged)
        return hsadb_fail(HSADB_ERR_CORRUPT, "%s: refused: %s; store %s is damaged (run `hsadb "
                          "check`)", what, first, st->dir);
    return 0;
}

struct create_ctx {
    const char *name;
    size_t len;
    struct hsadb_memory_rec rec;
    uint8_t val[sizeof(struct hsadb_memory_rec) + STORE_SUM];
};

/* The "memories" value of rec under key k: the struct, then (format 3) its checksum. */
static void rec_value(const hsadb_store *st, const MDB_val *k, const struct hsadb_memory_rec *rec,
                      uint8_t buf[sizeof *rec + STORE_SUM], MDB_val *v) {
    memcpy(buf, rec, sizeof *rec);
    if (store_sum_bytes(st)) sum_put(DB_MEMORIES, k, buf, sizeof *rec);
    *v = (MDB_val){ sizeof *rec + store_sum_bytes(st), buf };
}

/* Allocates the next memory id and inserts the record (MDB_NOOVERWRITE: EXISTS if taken). */
static int create_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    struct create_ctx *c = ctx;
    uint8_t b[4];
    MDB_val k = key_str(KEY_NEXT_ID), v;
    uint32_t id = 1;
    int rc;

    rc = mdb_get(txn, st->dbi[DB_META], &k, &v);
    if (rc == 0) {
        if (v.mv_size != 4)
            return hsadb_fail(HSADB_ERR_CORRUPT, "meta 'next_memory_id' has %zu bytes",
                              v.mv_size);
        id = get_le32(v.mv_data);
    } else if (rc != MDB_NOTFOUND) {
        return rc;
    }
    if (id == 0) return hsadb_fail(HSADB_ERR_CORRUPT, "meta 'next_memory_id' is 0");
    if (id == UINT32_MAX) return hsadb_fail(HSADB_ERR_STORE, "memory ids exhausted");
    c->rec.id = id;
    k = (MDB_val){ c->len, (void *)c->name };
    rec_value(st, &k, &c->rec, c->val, &v);
    rc = mdb_put(txn, st->dbi[DB_MEMORIES], &k, &v, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return hsadb_fail(HSADB_ERR_EXISTS, "memory '%s' already exists", c->name);
    if (rc) return rc;
    put_le32(b, id + 1);
    k = key_str(KEY_NEXT_ID);
    v = (MDB_val){ 4, b };
    return mdb_put(txn, st->dbi[DB_META], &k, &v, 0);
}

/*
 * Creates an empty memory. The caller fills kv_dtype, fingerprint and geometry; the store
 * assigns id (never reused), zeroes the counters and sets created = updated = now, and
 * writes the stored record back into *rec.
 */
int hsadb_store_memory_create(hsadb_store *st, const char *name, struct hsadb_memory_rec *rec) {
    struct create_ctx c;
    struct geom g;
    int rc;

    if (!st || !rec) return hsadb_fail(HSADB_ERR_INVALID, "memory create: NULL argument");
    if ((rc = name_check(name, &c.len))) return rc;
    if ((rc = rec_geom(st, rec, name, HSADB_ERR_INVALID, &g))) return rc;
    if (!(st->flags & HSADB_STORE_RDONLY) && (rc = write_guard(st, 0, name, "create memory")))
        return rc;
    c.name = name;
    c.rec = *rec;
    c.rec.id = 0;
    c.rec.n_chunks = c.rec.n_bytes = c.rec.n_appends = 0;
    c.rec.created = c.rec.updated = hsadb_now();
    rc = store_write(st, create_fn, &c, "create memory", 4096);
    if (rc == 0) *rec = c.rec;
    return rc;
}

int hsadb_store_memory_get(hsadb_store *st, const char *name, struct hsadb_memory_rec *out) {
    struct hsadb_memory_rec rec;
    MDB_txn *txn;
    size_t len;
    int rc;

    if (!st) return hsadb_fail(HSADB_ERR_INVALID, "memory get: NULL store");
    if ((rc = name_check(name, &len))) return rc;
    if ((rc = read_begin(st, &txn))) return store_err(rc, "memory get");
    rc = mem_lookup(st, txn, name, len, &rec, NULL);
    read_end(st, txn);
    if (rc == 0 && out) *out = rec;
    return rc;
}

struct del_ctx {
    const char *name;
    size_t len;
    uint32_t id;
    int db;      /* keyed database being emptied */
    int done;    /* set when nothing is left to delete */
    uint32_t *live;          /* sweep: ids of the memories that exist (sorted) */
    size_t n_live, cap_live;
};

/* Deletes the memory record (first step of a delete), if it still is the same memory. */
static int del_rec_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    struct del_ctx *c = ctx;
    struct hsadb_memory_rec rec;
    MDB_val k = { c->len, (void *)c->name };
    int rc;

    if ((rc = mem_lookup(st, txn, c->name, c->len, &rec, NULL))) return rc;
    if (rec.id != c->id)
        return hsadb_fail(HSADB_ERR_BUSY, "memory '%s' was replaced during the delete", c->name);
    return mdb_del(txn, st->dbi[DB_MEMORIES], &k, NULL);
}

/*
 * Deletes records whose key starts with memory id `id` through cursor cur, at most *budget
 * of them (decremented). *emptied = 1 when none is left. Each step re-seeks the first key
 * with the prefix, which keeps the loop independent of cursor-after-delete semantics.
 */
static int del_prefix(MDB_cursor *cur, uint32_t id, size_t *budget, int *emptied) {
    uint8_t kb[4];
    MDB_val k, v;
    int rc;

    *emptied = 0;
    for (;;) {
        k = key_mem(kb, id);            /* sorts before every key (id, ...) */
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size < 4 || get_be32(k.mv_data) != id))) {
            *emptied = 1;
            return 0;
        }
        if (rc) return rc;
        if (*budget == 0) return 0;
        if ((rc = mdb_cursor_del(cur, 0))) return rc;
        --*budget;
    }
}

/* Deletes up to STORE_DELETE_BATCH records of memory c->id from database c->db. */
static int del_range_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    struct del_ctx *c = ctx;
    size_t budget = STORE_DELETE_BATCH;
    MDB_cursor *cur;
    int rc;

    c->done = 0;
    if ((rc = mdb_cursor_open(txn, st->dbi[c->db], &cur))) return rc;
    rc = del_prefix(cur, c->id, &budget, &c->done);
    mdb_cursor_close(cur);
    return rc;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Orphan sweep: deletes, up to STORE_DELETE_BATCH at a time, keyed records whose memory id
 * has no memory record (left by a delete that crashed after its first transaction). The
 * live ids are read in the same write transaction, so the view is exact. Skips from id to
 * id with MDB_SET_RANGE: the cost is O(distinct ids) seeks plus the deletes.
 */
static int sweep_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    struct del_ctx *c = ctx;
    size_t budget = STORE_DELETE_BATCH;
    MDB_cursor *cur = NULL;
    struct hsadb_memory_rec rec;
    uint8_t kb[4];
    uint32_t *nl, id;
    uint64_t next;
    MDB_val k, v;
    int i, rc, emptied;

    c->done = 0;
    c->n_live = 0;
    if ((rc = mdb_cursor_open(txn, st->dbi[DB_MEMORIES], &cur))) return rc;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (v.mv_size != sizeof rec + store_sum_bytes(st)) {   /* unreadable: do not sweep */
            mdb_cursor_close(cur);
            c->done = 1;
            return 0;
        }
        memcpy(&rec, v.mv_data, sizeof rec);
        if (c->n_live == c->cap_live) {
            size_t cap = c->cap_live ? 2 * c->cap_live : 64;
            if (!(nl = realloc(c->live, cap * sizeof *nl))) {
                mdb_cursor_close(cur);
                return hsadb_fail(ENOMEM, "sweep: out of memory");
            }
            c->live = nl;
            c->cap_live = cap;
        }
        c->live[c->n_live++] = rec.id;
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND) return rc;
    if (c->n_live) qsort(c->live, c->n_live, sizeof *c->live, cmp_u32);

    for (i = 0; i < N_KEYED; i++) {
        if ((keyed_dbs[i] == DB_APPEND_IDS && !st->has_ids) || (keyed_dbs[i] == DB_LEX && st->no_lex)) continue;
        if ((rc = mdb_cursor_open(txn, st->dbi[keyed_dbs[i]], &cur))) return rc;
        for (next = 0; next <= UINT32_MAX; next = (uint64_t)id + 1) {
            k = key_mem(kb, (uint32_t)next);
            rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            if (rc == MDB_NOTFOUND || (rc == 0 && k.mv_size < 4)) {
                rc = 0;
                break;
            }
            if (rc) break;
            id = get_be32(k.mv_data);
            if (c->n_live && bsearch(&id, c->live, c->n_live, sizeof id, cmp_u32)) continue;
            if ((rc = del_prefix(cur, id, &budget, &emptied)) || !emptied) break;
        }
        mdb_cursor_close(cur);
        if (rc || budget == 0) return rc;    /* not done: the caller runs another batch */
    }
    c->done = 1;
    return 0;
}

/*
 * Deletes a memory: takes its appender lock (BUSY if an append is running), deletes the
 * memory record in one transaction, then its keyed records in transactions of at most
 * STORE_DELETE_BATCH deletes. A crash in between leaves records no memory refers to (ids
 * are never reused); every delete ends with an orphan sweep that removes such records.
 */
int hsadb_store_memory_delete(hsadb_store *st, const char *name) {
    struct hsadb_memory_rec rec;
    struct del_ctx c;
    char what[HSADB_NAME_MAX + 32];
    int i, rc;

    if (!st) return hsadb_fail(HSADB_ERR_INVALID, "memory delete: NULL store");
    memset(&c, 0, sizeof c);
    if ((rc = name_check(name, &c.len))) return rc;
    if (st->flags & HSADB_STORE_RDONLY)
        return hsadb_fail(HSADB_ERR_READONLY, "delete memory '%s': store is read-only", name);
    if ((rc = hsadb_store_memory_get(st, name, &rec))) return rc;
    snprintf(what, sizeof what, "delete memory '%s'", name);
    if ((rc = write_guard(st, 2, name, what))) return rc;
    if ((rc = memory_lock(st, rec.id, name))) return rc;
    c.name = name;
    c.id = rec.id;
    snprintf(what, sizeof what, "delete memory '%s'", name);
    rc = store_write(st, del_rec_fn, &c, what, 4096);
    for (i = 0; rc == 0 && i < N_KEYED; i++) {
        c.db = keyed_dbs[i];
        if ((c.db == DB_APPEND_IDS && !st->has_ids) || (c.db == DB_LEX && st->no_lex)) continue;
        do {
            rc = store_write(st, del_range_fn, &c, what, 4096);
        } while (rc == 0 && !c.done);
    }
    memory_unlock(st, rec.id);
    while (rc == 0) {
        rc = store_write(st, sweep_fn, &c, what, 4096);
        if (c.done) break;
    }
    free(c.live);
    return rc;
}

struct mem_entry {
    char name[HSADB_NAME_MAX + 1];
    struct hsadb_memory_rec rec;
};

/*
 * Calls fn for each memory in name order. The records are copied out of one read
 * transaction first, so fn runs with no transaction open and may call any store function.
 */
int hsadb_store_memory_foreach(hsadb_store *st,
                               int (*fn)(void *ctx, const char *name,
                                         const struct hsadb_memory_rec *rec),
                               void *ctx) {
    struct mem_entry *arr = NULL, *na;
    size_t n = 0, cap = 0, i;
    MDB_cursor *cur = NULL;
    MDB_txn *txn;
    MDB_val k, v;
    int rc;

    if (!st || !fn) return hsadb_fail(HSADB_ERR_INVALID, "memory foreach: NULL argument");
    if ((rc = read_begin(st, &txn))) return store_err(rc, "list memories");
    if ((rc = mdb_cursor_open(txn, st->dbi[DB_MEMORIES], &cur))) goto fail;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (n == cap) {
            cap = cap ? 2 * cap : 16;
            if (!(na = realloc(arr, cap * sizeof *arr))) {
                rc = hsadb_fail(ENOMEM, "list memories: out of memory");
                goto fail;
            }
            arr = na;
        }
        if (k.mv_size == 0 || k.mv_size > HSADB_NAME_MAX) {
            rc = hsadb_fail(HSADB_ERR_CORRUPT, "memories: key of %zu bytes", k.mv_size);
            goto fail;
        }
        memcpy(arr[n].name, k.mv_data, k.mv_size);
        arr[n].name[k.mv_size] = 0;
        if ((rc = rec_load(st, &v, arr[n].name, &arr[n].rec, NULL))) goto fail;
        n++;
    }
    if (rc == MDB_NOTFOUND) rc = 0;
fail:
    if (cur) mdb_cursor_close(cur);
    read_end(st, txn);
    rc = store_err(rc, "list memories");
    for (i = 0; rc == 0 && i < n; i++) rc = fn(ctx, arr[i].name, &arr[i].rec);
    free(arr);
    return rc;
}

/*
 * Bytes of a memory's values: its record, n_chunks x (landmark + K/V + chunk record),
 * n_appends append records and the tail. Computed from the record (O(1)), which equals the
 * sum of the stored value sizes for a consistent memory; LMDB page overhead is not counted.
 */
int hsadb_store_memory_bytes(hsadb_store *st, const char *name, uint64_t *out) {
    struct hsadb_memory_rec rec;
    struct geom g;
    uint8_t kb[4];
    MDB_txn *txn;
    MDB_val k, v;
    size_t len;
    uint64_t tail = 0;
    int rc;

    if (!st || !out) return hsadb_fail(HSADB_ERR_INVALID, "memory bytes: NULL argument");
    if ((rc = name_check(name, &len))) return rc;
    if ((rc = read_begin(st, &txn))) return store_err(rc, "memory bytes");
    rc = mem_lookup(st, txn, name, len, &rec, &g);
    if (rc == 0) {
        k = key_mem(kb, rec.id);
        rc = mdb_get(txn, st->dbi[DB_TAILS], &k, &v);
        if (rc == 0) tail = v.mv_size;
        else if (rc == MDB_NOTFOUND) rc = 0;
    }
    read_end(st, txn);
    if (rc) return store_err(rc, name);
    *out = sizeof rec + g.sum + rec.n_chunks * (uint64_t)(g.lm_val + g.kv_val + g.chunk_val) +
           rec.n_appends * (uint64_t)(sizeof(struct hsadb_append_rec) + g.sum) + tail;
    return 0;
}

/* ---- side tables (the hook of storage/append_meta.c) ------------------------------------- */

/* Side transactions run one at a time in the process: mdb_dbi_open must not run in two
 * transactions at once, and each one opens its sub-database again. */
static pthread_mutex_t side_mu = PTHREAD_MUTEX_INITIALIZER;

struct side_ctx { const char *side; hsadb_store_side_fn fn; void *ctx; };

static int side_write_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    struct side_ctx *c = ctx;
    MDB_dbi dbi;
    int rc = mdb_dbi_open(txn, c->side, MDB_CREATE, &dbi);
    if (rc) return rc;
    return c->fn(txn, dbi, 1, c->ctx);
}

int hsadb_store_side_write(hsadb_store *st, const char *side, hsadb_store_side_fn fn, void *ctx,
                           const char *what) {
    struct side_ctx c = { side, fn, ctx };
    pthread_mutex_lock(&side_mu);
    int rc = store_write(st, side_write_fn, &c, what, 1 << 16);
    pthread_mutex_unlock(&side_mu);
    return rc;
}

int hsadb_store_side_read(hsadb_store *st, const char *side, hsadb_store_side_fn fn, void *ctx) {
    MDB_txn *txn;
    MDB_dbi dbi = 0;
    int rc;
    pthread_mutex_lock(&side_mu);
    if ((rc = read_begin(st, &txn)) == 0) {
        rc = mdb_dbi_open(txn, side, 0, &dbi);
        if (rc == 0 || rc == MDB_NOTFOUND)
            rc = fn(txn, dbi, rc == 0, ctx);
        read_end(st, txn);
    }
    pthread_mutex_unlock(&side_mu);
    return store_err(rc, side);
}

int hsadb_store_memory_id(hsadb_store *st, const char *name, uint32_t *id) {
    struct hsadb_memory_rec rec;
    int rc = hsadb_store_memory_get(st, name, &rec);
    if (rc == 0) *id = rec.id;
    return rc;
}

/* ---- readers --------------------------------------------------------------------------- */

/*
 * Begins a consistent view of memory `name`: one read transaction (reused from a small
 * pool of reset transactions when possible) with the map lock held shared until
 * hsadb_store_reader_end(), which must be called by the same thread. *rec (may be NULL)
 * receives the memory record as of this view.
 */
int hsadb_store_reader_begin(hsadb_store *st, const char *name, hsadb_store_reader **out,
                             struct hsadb_memory_rec *rec) {
    hsadb_store_reader *r = NULL;
    size_t len;
    int rc;

    if (!out) return hsadb_fail(HSADB_ERR_INVALID, "reader begin: out is NULL");
    *out = NULL;
    if (!st) return hsadb_fail(HSADB_ERR_INVALID, "reader begin: NULL store");
    if ((rc = name_check(name, &len))) return rc;

    pthread_mutex_lock(&st->mu);
    if (st->n_pool) r = st->pool[--st->n_pool];
    pthread_mutex_unlock(&st->mu);
    if (!r && !(r = calloc(1, sizeof *r))) return hsadb_fail(ENOMEM, "reader: out of memory");
    r->st = st;

    map_enter(st);
    if (r->txn && (st->broken || mdb_txn_renew(r->txn) != 0)) {
        if (r->cur) mdb_cursor_close(r->cur);     /* renew failed: start afresh */
        mdb_txn_abort(r->txn);
        r->cur = NULL;
        r->txn = NULL;
    }
    if (!r->txn && (rc = txn_begin(st, MDB_RDONLY, &r->txn))) {
        r->txn = NULL;
        map_leave(st);
        reader_destroy(r);
        return store_err(rc, "reader begin");
    }
    r->cur_stale = r->cur != NULL;
    memcpy(r->name, name, len + 1);
    if ((rc = mem_lookup(st, r->txn, name, len, &r->rec, &r->g))) {
        hsadb_store_reader_end(r);
        return rc;
    }
    if (rec) *rec = r->rec;
    *out = r;
    return 0;
}

/* Ends the view; the reset transaction goes back to the pool. NULL is a no-op. */
void hsadb_store_reader_end(hsadb_store_reader *r) {
    hsadb_store *st;
    if (!r) return;
    st = r->st;
    mdb_txn_reset(r->txn);
    map_leave(st);
    pthread_mutex_lock(&st->mu);
    if (st->n_pool < STORE_READER_POOL) {
        st->pool[st->n_pool++] = r;
        r = NULL;
    }
    pthread_mutex_unlock(&st->mu);
    if (r) reader_destroy(r);
}

static int chunk_range(const hsadb_store_reader *r, uint64_t chunk, const char *what) {
    if (chunk >= r->rec.n_chunks)
        return hsadb_fail(HSADB_ERR_NOTFOUND, "memory '%s': %s of chunk %llu: the memory has "
                          "%llu chunks", r->name, what, (unsigned long long)chunk,
                          (unsigned long long)r->rec.n_chunks);
    return 0;
}

/*
 * Gets the value of key(id, chunk) in db and checks its size: `want` bytes and, from format 3,
 * the checksum, which is verified unless verify is 0 (kv_read verifies what it read from the
 * file instead of what the map holds). On success v->mv_size is `want`: the checksum is not
 * part of what callers see.
 */
static int reader_get(hsadb_store_reader *r, int db, uint64_t n, size_t want, MDB_val *v,
                      int verify) {
    uint8_t kb[12];
    MDB_val k = key_rec(kb, r->rec.id, n);
    const size_t sum = store_sum_bytes(r->st);
    int rc = mdb_get(r->txn, r->st->dbi[db], &k, v);
    if (rc == MDB_NOTFOUND)
        return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': %s record %llu missing", r->name,
                          db_name[db], (unsigned long long)n);
    if (rc) return store_err(rc, db_name[db]);
    if (v->mv_size != want + sum)
        return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': %s record %llu has %zu bytes, "
                          "expected %zu", r->name, db_name[db], (unsigned long long)n,
                          v->mv_size, want + sum);
    if (verify && !sum_ok(r->st, db, &k, v))
        return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': %s record %llu: checksum mismatch "
                          "(damaged)", r->name, db_name[db], (unsigned long long)n);
    v->mv_size = want;
    return 0;
}

/*
 * Copies the landmarks of chunks [first, first+n) into dst with one cursor walk (records
 * of a memory are contiguous in key order). Values are memcpy'd: in-page values are not
 * aligned.
 */
int hsadb_store_reader_landmarks(hsadb_store_reader *r, uint64_t first, uint64_t n, void *dst) {
    uint8_t kb[12];
    MDB_val k, v;
    uint64_t i;
    int rc;

    if (!r || (n && !dst)) return hsadb_fail(HSADB_ERR_INVALID, "landmarks: NULL argument");
    if (n == 0) return 0;
    if (first > r->rec.n_chunks || n > r->rec.n_chunks - first)
        return hsadb_fail(HSADB_ERR_NOTFOUND, "memory '%s': landmarks [%llu, +%llu) beyond its "
                          "%llu chunks", r->name, (unsigned long long)first,
                          (unsigned long long)n, (unsigned long long)r->rec.n_chunks);
    if (!r->cur) {
        if ((rc = mdb_cursor_open(r->txn, r->st->dbi[DB_LANDMARKS], &r->cur))) {
            r->cur = NULL;
            return store_err(rc, "landmarks");
        }
    } else if (r->cur_stale) {
        if ((rc = mdb_cursor_renew(r->txn, r->cur))) return store_err(rc, "landmarks");
    }
    r->cur_stale = 0;
    k = key_rec(kb, r->rec.id, first);
    rc = mdb_cursor_get(r->cur, &k, &v, MDB_SET_KEY);
    for (i = 0; i < n; i++) {
        if (i) rc = mdb_cursor_get(r->cur, &k, &v, MDB_NEXT);
        if (rc == 0 && (k.mv_size != 12 || get_be32(k.mv_data) != r->rec.id ||
                        get_be64((const uint8_t *)k.mv_data + 4) != first + i))
            rc = MDB_NOTFOUND;
        if (rc == MDB_NOTFOUND)
            return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': landmarks record %llu missing",
                              r->name, (unsigned long long)(first + i));
        if (rc) return store_err(rc, "landmarks");
        if (v.mv_size != r->g.lm_val)
            return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': landmarks record %llu has %zu "
                              "bytes, expected %zu", r->name, (unsigned long long)(first + i),
                              v.mv_size, r->g.lm_val);
        if (!sum_ok(r->st, DB_LANDMARKS, &k, &v))
            return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': landmarks record %llu: checksum "
                              "mismatch (damaged)", r->name, (unsigned long long)(first + i));
        memcpy((uint8_t *)dst + i * r->g.lm, v.mv_data, r->g.lm);
    }
    return 0;
}

/* The spill bytes of a chunk's K/V block (the tail of its landmark record) into dst. */
static int kv_spill_get(hsadb_store_reader *r, uint64_t chunk, uint8_t *dst) {
    MDB_val v;
    int rc;
    if (r->g.spill == 0) return 0;
    if ((rc = reader_get(r, DB_LANDMARKS, chunk, r->g.lm + r->g.spill, &v, 1))) return rc;
    memcpy(dst, (const uint8_t *)v.mv_data + r->g.lm, r->g.spill);
    return 0;
}

int hsadb_store_reader_kv(hsadb_store_reader *r, uint64_t chunk, const void **kv, size_t *len) {
    MDB_val v;
    int rc;
    if (!r || !kv) return hsadb_fail(HSADB_ERR_INVALID, "kv: NULL argument");
    if ((rc = chunk_range(r, chunk, "kv"))) return rc;
    if ((rc = reader_get(r, DB_KV, chunk, r->g.kv - r->g.spill, &v, 1))) return rc;
    if (r->g.spill == 0) {
        *kv = v.mv_data;                              /* zero-copy: the value in the map */
    } else {
        if (r->kvbuf_cap < r->g.kv) {                 /* grows once per reader (they are pooled) */
            free(r->kvbuf);
            r->kvbuf_cap = 0;
            if (!(r->kvbuf = malloc(r->g.kv))) return hsadb_fail(ENOMEM, "kv: out of memory");
            r->kvbuf_cap = r->g.kv;
        }
        memcpy(r->kvbuf, v.mv_data, v.mv_size);
        if ((rc = kv_spill_get(r, chunk, r->kvbuf + v.mv_size))) return rc;
        *kv = r->kvbuf;
    }
    if (len) *len = r->g.kv;
    return 0;
}

/* ---- bulk K/V reads (the GPU memory tier) ------------------------------------------------ */

#define KV_QD 64    /* reads in flight: io_uring's win is the queue depth (one thread, 64 I/Os) */

enum { IO_MAP, IO_PREAD, IO_URING };

static int io_mode(void) {
    const char *e = getenv("HSADB_IO");
    if (e && strcmp(e, "map") == 0) return IO_MAP;
    if (e && strcmp(e, "pread") == 0) return IO_PREAD;
    return IO_URING;
}

/* Read len bytes at off of fd into dst, completely (pread loop). */
static int pread_all(int fd, void *dst, size_t len, off_t off) {
    size_t done = 0;
    while (done < len) {
        ssize_t k = pread(fd, (uint8_t *)dst + done, len - done, off + (off_t)done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return k < 0 ? errno : EIO;
        done += (size_t)k;
    }
    return 0;
}

/* The K/V blocks of chunks first..first+n-1 (list == NULL) or list[0..n-1], into dst. */
static int kv_read(hsadb_store_reader *r, uint64_t first, const uint64_t *list, uint64_t n, void *dst) {
    const size_t kvb = r ? r->g.kv : 0;               /* a block in dst */
    const size_t recb = r ? r->g.kv - r->g.spill : 0; /* the part in its "kv" record */
    MDB_envinfo info;
    struct io_uring ring;
    int fd = -1, mode = io_mode(), have_ring = 0, rc = 0;
    if (!r || (!dst && n)) return hsadb_fail(HSADB_ERR_INVALID, "kv batch: NULL argument");
    if (n == 0) return 0;
    if (!list && (rc = chunk_range(r, first + n - 1, "kv batch"))) return rc;
    for (uint64_t i = 0; list && i < n; i++)
        if ((rc = chunk_range(r, list[i], "kv batch"))) return rc;
#define CHUNK(j) (list ? list[j] : first + (j))
    if (mdb_env_info(r->st->env, &info) != 0 || mdb_env_get_fd(r->st->env, &fd) != 0) mode = IO_MAP;
    if (mode == IO_URING) {
        if (io_uring_queue_init(KV_QD, &ring, 0) == 0) have_ring = 1;
        else mode = IO_PREAD;     /* EPERM (seccomp, sysctl), ENOSYS: the same reads, one at a time */
    }
    uint64_t next = 0, done = 0, inflight = 0;
    while (done < n && !rc) {
        /* queue reads while there is room */
        while (next < n && !rc && (mode != IO_URING || inflight < KV_QD)) {
            MDB_val v;
            uint8_t *out = (uint8_t *)dst + next * kvb;
            if ((rc = reader_get(r, DB_KV, CHUNK(next), recb, &v, 0))) break;
            if ((rc = kv_spill_get(r, CHUNK(next), out + recb))) break;  /* not in the read below */
            const ptrdiff_t off = (const char *)v.mv_data - (const char *)info.me_mapaddr;
            if (mode == IO_MAP || off < 0 || (size_t)off + recb > info.me_mapsize) {
                memcpy(out, v.mv_data, recb);         /* in the map (a small value lives in a page) */
                done++;
            } else if (mode == IO_PREAD) {
                if ((rc = pread_all(fd, out, recb, (off_t)off)))
                    rc = hsadb_fail(HSADB_ERR_STORE, "kv batch: read of chunk %llu: %s",
                                    (unsigned long long)CHUNK(next), strerror(rc));
                done++;
            } else {
                struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
                if (!sqe) break;
                io_uring_prep_read(sqe, fd, out, (unsigned)recb, (uint64_t)off);
                io_uring_sqe_set_data64(sqe, next);
                inflight++;
            }
            next++;
        }
        if (rc || mode != IO_URING || inflight == 0) continue;
        int k = io_uring_submit_and_wait(&ring, 1);
        if (k < 0) {
            rc = hsadb_fail(HSADB_ERR_STORE, "kv batch: io_uring submit: %s", strerror(-k));
            break;
        }
        struct io_uring_cqe *cqes[KV_QD];
        unsigned got = io_uring_peek_batch_cqe(&ring, cqes, KV_QD);
        for (unsigned i = 0; i < got; i++) {
            const uint64_t j = io_uring_cqe_get_data64(cqes[i]);
            const int res = cqes[i]->res;
            if (res != (int)recb && !rc) {
                /* a short read (rare, e.g. a signal) or an error: finish that one with pread */
                MDB_val v;
                if ((rc = reader_get(r, DB_KV, CHUNK(j), recb, &v, 0)) == 0) {
                    const ptrdiff_t off = (const char *)v.mv_data - (const char *)info.me_mapaddr;
                    if ((rc = pread_all(fd, (uint8_t *)dst + j * kvb, recb, (off_t)off)))
                        rc = hsadb_fail(HSADB_ERR_STORE, "kv batch: read of chunk %llu: %s",
                                        (unsigned long long)CHUNK(j), strerror(res < 0 ? -res : rc));
                }
            }
            done++;
            inflight--;
        }
        io_uring_cq_advance(&ring, got);
    }
    if (have_ring) {
        /* reads still in flight (after an error) must finish before dst goes back */
        while (inflight > 0) {
            struct io_uring_cqe *cqe;
            if (io_uring_wait_cqe(&ring, &cqe) < 0) break;
            io_uring_cqe_seen(&ring, cqe);
            inflight--;
        }
        io_uring_queue_exit(&ring);
    }
    /* format 3: each block's "kv" part as read must match the checksum its record ends with */
    for (uint64_t j = 0; rc == 0 && store_sum_bytes(r->st) && j < n; j++) {
        uint8_t kb[12];
        MDB_val v, k = key_rec(kb, r->rec.id, CHUNK(j));
        uint64_t s;
        if ((rc = reader_get(r, DB_KV, CHUNK(j), recb, &v, 0))) break;
        memcpy(&s, (const uint8_t *)v.mv_data + recb, STORE_SUM);
        if (s != rec_sum(DB_KV, &k, (const uint8_t *)dst + j * kvb, recb))
            rc = hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': kv record %llu: checksum mismatch "
                            "(damaged)", r->name, (unsigned long long)CHUNK(j));
    }
#undef CHUNK
    return rc;
}

int hsadb_store_reader_kv_batch(hsadb_store_reader *r, uint64_t first, uint64_t n, void *dst) {
    return kv_read(r, first, NULL, n, dst);
}

int hsadb_store_reader_kv_list(hsadb_store_reader *r, const uint64_t *chunks, uint64_t n, void *dst) {
    if (n && !chunks) return hsadb_fail(HSADB_ERR_INVALID, "kv list: NULL argument");
    return kv_read(r, 0, chunks, n, dst);
}

int hsadb_store_reader_chunk(hsadb_store_reader *r, uint64_t chunk,
                             struct hsadb_chunk_meta *meta, const uint8_t **bytes) {
    MDB_val v;
    int rc;
    if (!r) return hsadb_fail(HSADB_ERR_INVALID, "chunk: NULL reader");
    if ((rc = chunk_range(r, chunk, "chunk"))) return rc;
    if ((rc = reader_get(r, DB_CHUNKS, chunk, r->g.chunk, &v, 1))) return rc;
    if (meta) memcpy(meta, v.mv_data, sizeof *meta);
    if (bytes) *bytes = (const uint8_t *)v.mv_data + sizeof(struct hsadb_chunk_meta);
    return 0;
}

int hsadb_store_reader_tail(hsadb_store_reader *r, const void **p, size_t *len) {
    uint8_t kb[4];
    MDB_val k, v;
    int rc;
    if (!r || !p || !len) return hsadb_fail(HSADB_ERR_INVALID, "tail: NULL argument");
    k = key_mem(kb, r->rec.id);
    rc = mdb_get(r->txn, r->st->dbi[DB_TAILS], &k, &v);
    if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size == 0)) {
        *p = NULL;
        *len = 0;
        return 0;
    }
    if (rc) return store_err(rc, "tail");
    if (!sum_ok(r->st, DB_TAILS, &k, &v))
        return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': tail record: checksum mismatch "
                          "(damaged)", r->name);
    *p = v.mv_data;
    *len = v.mv_size - store_sum_bytes(r->st);
    return 0;
}

int hsadb_store_reader_append(hsadb_store_reader *r, uint64_t append_id,
                              struct hsadb_append_rec *out) {
    MDB_val v;
    int rc;
    if (!r || !out) return hsadb_fail(HSADB_ERR_INVALID, "append: NULL argument");
    if (append_id == 0 || append_id > r->rec.n_appends)
        return hsadb_fail(HSADB_ERR_NOTFOUND, "memory '%s': no append %llu (it has %llu)",
                          r->name, (unsigned long long)append_id,
                          (unsigned long long)r->rec.n_appends);
    if ((rc = reader_get(r, DB_APPENDS, append_id, sizeof *out, &v, 1))) return rc;
    memcpy(out, v.mv_data, sizeof *out);
    return 0;
}

/* ---- writers --------------------------------------------------------------------------- */

/*
 * Begins an append on `name`: takes the appender lock (HSADB_ERR_BUSY if another writer in
 * this process, or a live process, holds it), then reads the memory record as of now; the
 * writer expects exactly that record at its first commit. append_id = n_appends + 1.
 */
int hsadb_store_writer_begin(hsadb_store *st, const char *name, int64_t now,
                             hsadb_store_writer **out, struct hsadb_memory_rec *rec) {
    struct hsadb_memory_rec r0, r1;
    hsadb_store_writer *w;
    struct geom g;
    size_t len;
    int i, rc, tries;

    if (!out) return hsadb_fail(HSADB_ERR_INVALID, "writer begin: out is NULL");
    *out = NULL;
    if (!st) return hsadb_fail(HSADB_ERR_INVALID, "writer begin: NULL store");
    if ((rc = name_check(name, &len))) return rc;
    if (st->flags & HSADB_STORE_RDONLY)
        return hsadb_fail(HSADB_ERR_READONLY, "append to '%s': store is read-only", name);
    {
        char what[HSADB_NAME_MAX + 32];
        snprintf(what, sizeof what, "append to '%s'", name);
        if ((rc = write_guard(st, 1, name, what))) return rc;
    }
    for (tries = 0;; tries++) {
        if ((rc = hsadb_store_memory_get(st, name, &r0))) return rc;
        if ((rc = memory_lock(st, r0.id, name))) return rc;
        /* re-read under the lock: the record another appender may have committed */
        rc = hsadb_store_memory_get(st, name, &r1);
        if (rc == 0 && r1.id == r0.id) break;
        memory_unlock(st, r0.id);
        if (rc) return rc;
        if (tries == 3) return hsadb_fail(HSADB_ERR_BUSY, "memory '%s' keeps being replaced", name);
    }
    if ((rc = rec_geom(st, &r1, name, HSADB_ERR_CORRUPT, &g))) goto fail;
    if (!(w = calloc(1, sizeof *w))) {
        rc = hsadb_fail(ENOMEM, "writer: out of memory");
        goto fail;
    }
    w->st = st;
    w->rec = r1;
    w->g = g;
    memcpy(w->name, name, len + 1);
    w->name_len = len;
    w->append_id = r1.n_appends + 1;
    w->append_start = r1.n_bytes;
    w->time_start = now;
    w->stride = g.kv_val + g.lm_val + g.chunk_val;
    w->next_chunk = r1.n_chunks;
    w->chunk_size = r1.chunk_size;
    for (i = 0; i < DB_COUNT; i++) w->append_ok[i] = 1;
    if ((rc = hsadb_lexidx_writer_open(&w->lex))) {
        free(w);
        goto fail;
    }
    if (rec) *rec = r1;
    *out = w;
    return 0;
fail:
    memory_unlock(st, r1.id);
    return rc;
}

uint64_t hsadb_store_writer_append_id(const hsadb_store_writer *w) {
    return w ? w->append_id : 0;
}

size_t hsadb_store_writer_staged(const hsadb_store_writer *w) {
    return w ? w->n_staged : 0;
}

/*
 * Stages the next chunk: copies landmark, K/V block, meta and S bytes into the batch
 * buffer, laid out as the records' values: [kv - spill bytes of K/V: the "kv" value]
 * [landmark, the K/V block's last spill bytes: the "landmarks" value] [meta, bytes: "chunks"]; which doubles when full and keeps its capacity across commits (no allocation per
 * chunk in steady state). meta->byte_offset must be chunk * S.
 */
int hsadb_store_writer_put_chunk(hsadb_store_writer *w, const void *landmark, const void *kv,
                                 const struct hsadb_chunk_meta *meta, const uint8_t *bytes) {
    uint64_t chunk;
    uint8_t *p;
    size_t cap;

    if (!w || !landmark || !kv || !meta || !bytes)
        return hsadb_fail(HSADB_ERR_INVALID, "put chunk: NULL argument");
    chunk = w->next_chunk;
    if (meta->byte_offset != chunk * w->chunk_size)
        return hsadb_fail(HSADB_ERR_INVALID, "memory '%s': chunk %llu has byte_offset %llu, "
                          "expected %llu", w->name, (unsigned long long)chunk,
                          (unsigned long long)meta->byte_offset,
                          (unsigned long long)(chunk * w->chunk_size));
    if (w->n_staged == w->cap) {
        cap = w->cap ? 2 * w->cap : 16;
        if (!(p = realloc(w->buf, cap * w->stride)))
            return hsadb_fail(ENOMEM, "memory '%s': batch of %zu chunks: out of memory",
                              w->name, cap);
        w->buf = p;
        w->cap = cap;
    }
    p = w->buf + w->n_staged * w->stride;
    memcpy(p, kv, w->g.kv - w->g.spill);
    memcpy(p + w->g.kv_val, landmark, w->g.lm);
    memcpy(p + w->g.kv_val + w->g.lm, (const uint8_t *)kv + w->g.kv - w->g.spill, w->g.spill);
    memcpy(p + w->g.kv_val + w->g.lm_val, meta, sizeof *meta);
    memcpy(p + w->g.kv_val + w->g.lm_val + sizeof *meta, bytes, w->chunk_size);
    if (w->g.sum) {   /* format 3: the checksums, here on the appender's thread, not in the txn */
        uint8_t kb[12];
        const MDB_val k = key_rec(kb, w->rec.id, chunk);
        sum_put(DB_KV, &k, p, w->g.kv - w->g.spill);
        sum_put(DB_LANDMARKS, &k, p + w->g.kv_val, w->g.lm + w->g.spill);
        sum_put(DB_CHUNKS, &k, p + w->g.kv_val + w->g.lm_val, w->g.chunk);
    }
    w->n_staged++;
    w->next_chunk++;
    return 0;
}

/* mdb_put with MDB_APPEND while it works (keys ascend within a memory); once a larger key
 * exists (a memory with a higher id), plain puts for the rest of this writer. */
static int put_seq(MDB_txn *txn, MDB_dbi dbi, MDB_val *k, MDB_val *v, int *append_ok) {
    int rc;
    if (*append_ok) {
        rc = mdb_put(txn, dbi, k, v, MDB_APPEND);
        if (rc != MDB_KEYEXIST) return rc;
        *append_ok = 0;
    }
    return mdb_put(txn, dbi, k, v, 0);
}

/* ---- append ids (idempotency keys) ------------------------------------------------------ */

/*
 * "append_ids": key(memory id) + the client's id bytes -> the append id (u64 LE, then the
 * format-3 checksum). Written in each commit of an append that has an id, so it exists as soon
 * as anything of that append does; a different append already holding the id is
 * HSADB_ERR_EXISTS (the caller looked it up under the appender lock, so only another process
 * without OFD locks can get there).
 */
static MDB_val key_id(uint8_t buf[4 + STORE_ID_MAX], uint32_t mem, const void *id, size_t len) {
    put_be32(buf, mem);
    memcpy(buf + 4, id, len);
    return (MDB_val){ 4 + len, buf };
}

static int append_id_put(hsadb_store *st, MDB_txn *txn, hsadb_store_writer *w) {
    uint8_t kb[4 + STORE_ID_MAX], vb[8 + STORE_SUM];
    MDB_val k = key_id(kb, w->rec.id, w->id, w->id_len), v;
    int rc;
    if (!st->has_ids) return hsadb_fail(HSADB_ERR_STORE, "store %s has no append_ids", st->dir);
    rc = mdb_get(txn, st->dbi[DB_APPEND_IDS], &k, &v);
    if (rc == 0) {
        uint64_t have;
        if (v.mv_size < 8) return hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': append_ids record "
                                             "of %zu bytes", w->name, v.mv_size);
        memcpy(&have, v.mv_data, 8);
        if (have == w->append_id) return 0;
        return hsadb_fail(HSADB_ERR_EXISTS, "memory '%s': append id already names append %llu",
                          w->name, (unsigned long long)have);
    }
    if (rc != MDB_NOTFOUND) return rc;
    memcpy(vb, &w->append_id, 8);
    if (w->g.sum) sum_put(DB_APPEND_IDS, &k, vb, 8);
    v = (MDB_val){ 8 + w->g.sum, vb };
    return mdb_put(txn, st->dbi[DB_APPEND_IDS], &k, &v, 0);
}

int hsadb_store_writer_set_id(hsadb_store_writer *w, const void *id, size_t len) {
    if (!w || (len && !id)) return hsadb_fail(HSADB_ERR_INVALID, "append id: NULL argument");
    if (len > STORE_ID_MAX)
        return hsadb_fail(HSADB_ERR_INVALID, "append id of %zu bytes: at most %d", len, STORE_ID_MAX);
    if (!w->st->has_ids)
        return hsadb_fail(HSADB_ERR_READONLY, "store %s has no append_ids", w->st->dir);
    memcpy(w->id, id, len);
    w->id_len = len;
    return 0;
}

int hsadb_store_append_id_find(hsadb_store *st, const char *name, const void *id, size_t len,
                               uint64_t *append_id, struct hsadb_append_rec *rec) {
    struct hsadb_memory_rec mrec;
    uint8_t kb[4 + STORE_ID_MAX], ab[12];
    MDB_txn *txn;
    MDB_val k, v;
    size_t nlen;
    uint64_t aid = 0;
    int rc;

    if (!st || !id || !len) return hsadb_fail(HSADB_ERR_INVALID, "append id find: NULL argument");
    if (len > STORE_ID_MAX)
        return hsadb_fail(HSADB_ERR_INVALID, "append id of %zu bytes: at most %d", len, STORE_ID_MAX);
    if ((rc = name_check(name, &nlen))) return rc;
    if (!st->has_ids) return hsadb_fail(HSADB_ERR_NOTFOUND, "no append ids in this store");
    if ((rc = read_begin(st, &txn))) return store_err(rc, "append id");
    if ((rc = mem_lookup(st, txn, name, nlen, &mrec, NULL))) goto done;
    k = key_id(kb, mrec.id, id, len);
    rc = mdb_get(txn, st->dbi[DB_APPEND_IDS], &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = hsadb_fail(HSADB_ERR_NOTFOUND, "memory '%s': no append with that id", name);
        goto done;
    }
    if (rc) goto done;
    if (v.mv_size != 8 + store_sum_bytes(st) || !sum_ok(st, DB_APPEND_IDS, &k, &v)) {
        rc = hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': append_ids record damaged", name);
        goto done;
    }
    memcpy(&aid, v.mv_data, 8);
    if (aid == 0 || aid > mrec.n_appends) {
        rc = hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': append id names append %llu of %llu",
                        name, (unsigned long long)aid, (unsigned long long)mrec.n_appends);
        goto done;
    }
    k = key_rec(ab, mrec.id, aid);
    if ((rc = mdb_get(txn, st->dbi[DB_APPENDS], &k, &v))) goto done;
    if (v.mv_size != sizeof *rec + store_sum_bytes(st) || !sum_ok(st, DB_APPENDS, &k, &v)) {
        rc = hsadb_fail(HSADB_ERR_CORRUPT, "memory '%s': appends record %llu damaged", name,
                        (unsigned long long)aid);
        goto done;
    }
    if (rec) memcpy(rec, v.mv_data, sizeof *rec);
    if (append_id) *append_id = aid;
done:
    read_end(st, txn);
    return store_err(rc, "append id");
}

struct commit_ctx {
    hsadb_store_writer *w;
    const void *tail;
    size_t tail_len;
    uint64_t n_bytes, append_bytes;
    int final;
    int64_t now;
    const uint8_t *batch;          /* the chunks to write: n records of w->stride bytes */
    size_t n;
    struct hsadb_memory_rec rec;   /* out: the record as committed */
    uint8_t aval[sizeof(struct hsadb_append_rec) + STORE_SUM];   /* stored values */
    uint8_t rval[sizeof(struct hsadb_memory_rec) + STORE_SUM];
};

/*
 * The commit transaction: checks the memory record is still what this writer last saw
 * (another process's appender, or a delete, makes it differ), then writes the staged
 * chunk records, the tail, the append record and the updated memory record.
 */
static int commit_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    struct commit_ctx *c = ctx;
    hsadb_store_writer *w = c->w;
    struct hsadb_memory_rec cur;
    struct hsadb_append_rec a;
    uint8_t kb[12], tb[4];
    const uint8_t *p;
    MDB_val k, v;
    size_t i;
    int rc;

    rc = mem_lookup(st, txn, w->name, w->name_len, &cur, NULL);
    if (rc == HSADB_ERR_NOTFOUND || (rc == 0 && cur.id != w->rec.id))
        return hsadb_fail(HSADB_ERR_NOTFOUND, "memory '%s' was deleted during the append",
                          w->name);
    if (rc) return rc;
    if (cur.n_chunks != w->rec.n_chunks || cur.n_bytes != w->rec.n_bytes ||
        cur.n_appends != w->rec.n_appends)
        return hsadb_fail(HSADB_ERR_BUSY, "memory %s was modified by another writer (it has "
                          "%llu chunks, %llu appends; this writer expected %llu, %llu)",
                          w->name, (unsigned long long)cur.n_chunks,
                          (unsigned long long)cur.n_appends,
                          (unsigned long long)w->rec.n_chunks,
                          (unsigned long long)w->rec.n_appends);

    for (i = 0, p = c->batch; i < c->n; i++, p += w->stride) {
        k = key_rec(kb, cur.id, cur.n_chunks + i);
        const size_t recb = w->g.kv_val;              /* staged layout: see put_chunk */
        v = (MDB_val){ w->g.lm_val, (void *)(p + recb) };
        if ((rc = put_seq(txn, st->dbi[DB_LANDMARKS], &k, &v, &w->append_ok[DB_LANDMARKS])))
            return rc;
        v = (MDB_val){ recb, (void *)p };
        if ((rc = put_seq(txn, st->dbi[DB_KV], &k, &v, &w->append_ok[DB_KV]))) return rc;
        v = (MDB_val){ w->g.chunk_val, (void *)(p + w->g.kv_val + w->g.lm_val) };
        if ((rc = put_seq(txn, st->dbi[DB_CHUNKS], &k, &v, &w->append_ok[DB_CHUNKS])))
            return rc;
    }
    /* ---- lexical index hook: the units these chunks complete, in this same txn (lexidx.h) */
    if (w->lex && !(st->flags & HSADB_STORE_NOLEX)) {
        const hsadb_lexidx_txn lt = { txn, st->dbi[DB_CHUNKS], st->dbi[DB_LEX], cur.id,
                                      cur.chunk_size, cur.n_chunks + c->n, (uint32_t)store_sum_bytes(st) };
        if ((rc = hsadb_lexidx_update(w->lex, &lt, 0, NULL, NULL))) return rc;
    }
    /* ---- end of the lexical index hook */

    k = key_mem(tb, cur.id);
    if (c->tail_len) {
        v = (MDB_val){ c->tail_len + w->g.sum, NULL };
        if ((rc = mdb_put(txn, st->dbi[DB_TAILS], &k, &v, MDB_RESERVE))) return rc;
        memcpy(v.mv_data, c->tail, c->tail_len);
        if (w->g.sum) sum_put(DB_TAILS, &k, v.mv_data, c->tail_len);
    } else if ((rc = mdb_del(txn, st->dbi[DB_TAILS], &k, NULL)) && rc != MDB_NOTFOUND) {
        return rc;
    }

    memset(&a, 0, sizeof a);
    a.start_offset = w->append_start;
    a.bytes = c->append_bytes;
    a.chunks = w->append_chunks + c->n;
    a.time_start = w->time_start;
    a.time_end = c->now;
    a.state = c->final ? 1 : 0;
    k = key_rec(kb, cur.id, w->append_id);   /* rewritten by each commit of the append */
    memcpy(c->aval, &a, sizeof a);
    if (w->g.sum) sum_put(DB_APPENDS, &k, c->aval, sizeof a);
    v = (MDB_val){ sizeof a + w->g.sum, c->aval };
    if ((rc = mdb_put(txn, st->dbi[DB_APPENDS], &k, &v, 0))) return rc;

    if (w->id_len && (rc = append_id_put(st, txn, w))) return rc;

    c->rec = cur;
    c->rec.n_chunks = cur.n_chunks + c->n;
    c->rec.n_bytes = c->n_bytes;
    c->rec.n_appends = w->append_id;
    c->rec.updated = c->now;
    k = (MDB_val){ w->name_len, w->name };
    rec_value(st, &k, &c->rec, c->rval, &v);
    return mdb_put(txn, st->dbi[DB_MEMORIES], &k, &v, 0);
}

/*
 * Commits the staged chunks, the tail, n_bytes and the append's progress in one write
 * transaction (re-run after growing the map). Success or failure, the staged chunks are
 * dropped afterwards (the buffer's capacity is kept); on failure nothing of the batch was
 * written and the writer may go on from the last committed state.
 */
/* Commit n chunk records at batch (the staged or the sealed ones) with the tail. */
static int commit_batch(hsadb_store_writer *w, const uint8_t *batch, size_t n, const void *tail, size_t tail_len,
                        uint64_t n_bytes, uint64_t append_bytes, int final) {
    struct commit_ctx c;
    uint64_t new_chunks;
    char what[HSADB_NAME_MAX + 32];
    int rc;

    new_chunks = w->rec.n_chunks + n;
    if (tail_len && !tail)
        rc = hsadb_fail(HSADB_ERR_INVALID, "memory '%s': commit: tail is NULL", w->name);
    else if (tail_len > STORE_VALUE_MAX)
        rc = hsadb_fail(HSADB_ERR_INVALID, "memory '%s': commit: tail of %zu bytes", w->name,
                        tail_len);
    else if (n_bytes < w->rec.n_bytes || n_bytes < new_chunks * w->rec.chunk_size)
        rc = hsadb_fail(HSADB_ERR_INVALID, "memory '%s': commit: n_bytes %llu is below the "
                        "committed %llu or the %llu chunks' %llu", w->name,
                        (unsigned long long)n_bytes, (unsigned long long)w->rec.n_bytes,
                        (unsigned long long)new_chunks,
                        (unsigned long long)(new_chunks * w->rec.chunk_size));
    else if (append_bytes > n_bytes - w->append_start)
        rc = hsadb_fail(HSADB_ERR_INVALID, "memory '%s': commit: append of %llu bytes but only "
                        "%llu bytes after its start", w->name,
                        (unsigned long long)append_bytes,
                        (unsigned long long)(n_bytes - w->append_start));
    else {
        c.w = w;
        c.tail = tail;
        c.tail_len = tail_len;
        c.n_bytes = n_bytes;
        c.append_bytes = append_bytes;
        c.final = final;
        c.now = hsadb_now();
        c.batch = batch;
        c.n = n;
        snprintf(what, sizeof what, "commit to memory '%s'", w->name);
        rc = store_write(w->st, commit_fn, &c, what, n * w->stride + tail_len + 4096);
        if (rc == 0) {
            w->rec = c.rec;
            w->append_chunks += n;
        }
    }
    return rc;
}

int hsadb_store_writer_commit(hsadb_store_writer *w, const void *tail, size_t tail_len,
                              uint64_t n_bytes, uint64_t append_bytes, int final) {
    if (!w) return hsadb_fail(HSADB_ERR_INVALID, "commit: NULL writer");
    if (w->n_sealed)
        return hsadb_fail(HSADB_ERR_INVALID, "memory '%s': commit with a sealed batch not committed", w->name);
    int rc = commit_batch(w, w->buf, w->n_staged, tail, tail_len, n_bytes, append_bytes, final);
    w->n_staged = 0;
    w->next_chunk = w->rec.n_chunks;      /* on error the staged chunks are dropped */
    return rc;
}

int hsadb_store_writer_seal(hsadb_store_writer *w) {
    if (!w) return hsadb_fail(HSADB_ERR_INVALID, "seal: NULL writer");
    if (w->n_sealed)
        return hsadb_fail(HSADB_ERR_INVALID, "memory '%s': seal with a sealed batch not committed", w->name);
    uint8_t *b = w->sbuf;
    size_t cap = w->scap;
    w->sbuf = w->buf, w->scap = w->cap, w->n_sealed = w->n_staged;
    w->buf = b, w->cap = cap, w->n_staged = 0;
    return 0;
}

int hsadb_store_writer_commit_sealed(hsadb_store_writer *w, const void *tail, size_t tail_len, uint64_t n_bytes,
                                     uint64_t append_bytes, int final) {
    if (!w) return hsadb_fail(HSADB_ERR_INVALID, "commit: NULL writer");
    int rc = commit_batch(w, w->sbuf, w->n_sealed, tail, tail_len, n_bytes, append_bytes, final);
    w->n_sealed = 0;
    return rc;
}


/* Drops staged data, releases the appender lock and frees the writer. NULL is a no-op. */
void hsadb_store_writer_end(hsadb_store_writer *w) {
    if (!w) return;
    memory_unlock(w->st, w->rec.id);
    hsadb_lexidx_writer_close(w->lex);
    free(w->buf), free(w->sbuf);
    free(w);
}

/* ---- snapshots ------------------------------------------------------------------------- */

/* Creates dest (mode 0755) if missing (*created = 1) or checks it is an empty directory. */
static int dest_prepare(const char *dest, int *created) {
    struct dirent *de;
    DIR *d;
    int rc = 0;

    struct stat sb;

    *created = 0;
    if (mkdir(dest, 0755) == 0) {
        *created = 1;
        return 0;
    }
    if (errno != EEXIST) return hsadb_fail(errno, "snapshot: mkdir %s: %s", dest, strerror(errno));
    /* A symbolic link planted where the copy goes (say inside a server's --snapshot-dir)
     * would send the copy wherever it points: refuse it, do not follow it. */
    if (lstat(dest, &sb) == 0 && S_ISLNK(sb.st_mode))
        return hsadb_fail(HSADB_ERR_INVALID, "snapshot: %s is a symbolic link; refusing to "
                          "follow it", dest);
    if (!(d = opendir(dest))) return hsadb_fail(errno, "snapshot: %s: %s", dest, strerror(errno));
    while ((de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) {
            rc = hsadb_fail(HSADB_ERR_EXISTS, "snapshot: %s is not empty", dest);
            break;
        }
    closedir(d);
    return rc;
}

/* Removes what a failed snapshot left in dest (and dest itself if we created it). */
static void dest_cleanup(const char *dest, int created) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/data.mdb", dest);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dest);
    unlink(path);
    snprintf(path, sizeof path, "%s/" STORE_SNAPSHOT_MARKER ".tmp", dest);
    unlink(path);
    snprintf(path, sizeof path, "%s/" STORE_SNAPSHOT_MARKER, dest);
    unlink(path);
    if (created) rmdir(dest);
}

/* Compacting hot copy of the whole env (mdb_env_copy2 runs its own read transaction). */
static int snapshot_env(hsadb_store *st, const char *dest) {
    char path[PATH_MAX];
    int rc, tries;

    for (tries = 0;; tries++) {
        map_enter(st);
        rc = st->broken ? HSADB_ERR_STORE : mdb_env_copy2(st->env, dest, MDB_CP_COMPACT);
        map_leave(st);
        if (rc != MDB_MAP_RESIZED || tries == 16) break;
        snprintf(path, sizeof path, "%s/data.mdb", dest);
        unlink(path);
        if ((rc = map_resize(st, 0, 1))) return rc;
    }
    if (rc == HSADB_ERR_STORE)
        return hsadb_fail(rc, "store %s: map lost after a failed remap; reopen", st->dir);
    return store_err(rc, "snapshot");
}

struct copy_ctx {
    hsadb_store *src;
    MDB_txn *stxn;          /* the source read txn: one view for the whole copy */
    int db;
    uint32_t id;
    uint8_t start[512];     /* first key of the current batch (4 bytes: the id prefix); LMDB
                               keys are at most 511 bytes (the lexical index's are longer than 12) */
    size_t start_len;
    int done;
};

/*
 * Copies the next batch of memory c->id's records of database c->db from the source view
 * into the destination (keys ascend: MDB_APPEND). Re-runnable: starts again at c->start,
 * which is advanced only when the batch has committed (the caller copies it from here).
 */
static int copy_fn(hsadb_store *dst, MDB_txn *txn, void *ctx) {
    struct copy_ctx *c = ctx;
    MDB_cursor *cur;
    MDB_val k, v;
    size_t n = 0, bytes = 0;
    int ok = 1, rc;

    c->done = 0;
    if ((rc = mdb_cursor_open(c->stxn, c->src->dbi[c->db], &cur))) return rc;
    k = (MDB_val){ c->start_len, c->start };
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 4 || get_be32(k.mv_data) != c->id) break;
        if (k.mv_size > sizeof c->start) {
            rc = hsadb_fail(HSADB_ERR_CORRUPT, "%s: key of %zu bytes", db_name[c->db], k.mv_size);
            goto out;
        }
        if (n == STORE_COPY_BATCH || bytes >= STORE_COPY_BYTES) {
            memcpy(c->start, k.mv_data, k.mv_size);   /* next batch starts here */
            c->start_len = k.mv_size;
            goto out;
        }
        if ((rc = put_seq(txn, dst->dbi[c->db], &k, &v, &ok))) goto out;
        n++;
        bytes += v.mv_size;
    }
    if (rc == 0 || rc == MDB_NOTFOUND) {
        c->done = 1;
        rc = 0;
    }
out:
    mdb_cursor_close(cur);
    return rc;
}

struct head_ctx {
    MDB_val format, next_id;  /* source meta values (point into the source map) */
    MDB_val name, rec;        /* source memory key and record */
    int stage;                /* 0: the meta keys; 1: the memory record (after its records) */
};

/*
 * First destination txn: the meta keys; last one: the memory record. The record names the
 * counts of records that exist, so it goes in only once they all do: a snapshot stopped
 * part-way then holds orphans, never a memory with missing records (and no completion
 * marker either, so restore refuses it).
 */
static int head_fn(hsadb_store *dst, MDB_txn *txn, void *ctx) {
    struct head_ctx *h = ctx;
    MDB_val k = key_str(KEY_FORMAT);
    int rc;
    if (h->stage == 1) return mdb_put(txn, dst->dbi[DB_MEMORIES], &h->name, &h->rec, 0);
    if ((rc = mdb_put(txn, dst->dbi[DB_META], &k, &h->format, 0))) return rc;
    k = key_str(KEY_NEXT_ID);
    if (h->next_id.mv_size && (rc = mdb_put(txn, dst->dbi[DB_META], &k, &h->next_id, 0)))
        return rc;
    return 0;
}

/*
 * Snapshot of one memory: a new env in dest (opened as a store, NOSYNC, flushed once at
 * the end) receives the meta keys, the memory record and all of its records, all read
 * from ONE read transaction of the source, written in batches of bounded transactions.
 * The source's map lock is held shared throughout (a writer needing to grow the source's
 * map waits for the snapshot).
 */
static int snapshot_memory(hsadb_store *st, const char *name, size_t len, const char *dest) {
    struct hsadb_memory_rec rec;
    struct head_ctx h;
    struct copy_ctx c;
    hsadb_store *dst = NULL;
    MDB_txn *txn;
    MDB_val k;
    int i, rc;

    if ((rc = read_begin(st, &txn))) return store_err(rc, "snapshot");
    if ((rc = mem_lookup(st, txn, name, len, &rec, NULL))) goto done;
    memset(&h, 0, sizeof h);
    k = key_str(KEY_FORMAT);
    if ((rc = mdb_get(txn, st->dbi[DB_META], &k, &h.format))) goto done;
    k = key_str(KEY_NEXT_ID);
    if ((rc = mdb_get(txn, st->dbi[DB_META], &k, &h.next_id)) && rc != MDB_NOTFOUND) goto done;
    if (rc) h.next_id.mv_size = 0;
    h.name = (MDB_val){ len, (void *)name };
    if ((rc = mdb_get(txn, st->dbi[DB_MEMORIES], &h.name, &h.rec))) goto done;  /* verbatim */

    if ((rc = hsadb_store_open(dest, HSADB_STORE_NOSYNC, &dst))) goto done;
    h.stage = 0;                       /* the meta keys first, the memory record last */
    if ((rc = store_write(dst, head_fn, &h, "snapshot", 4096))) goto done;
    memset(&c, 0, sizeof c);
    c.src = st;
    c.stxn = txn;
    c.id = rec.id;
    for (i = 0; i < N_KEYED; i++) {
        if (keyed_dbs[i] == DB_LEX && st->no_lex) continue;   /* made before the lexical index */
        c.db = keyed_dbs[i];
        if (c.db == DB_APPEND_IDS && !st->has_ids) continue;
        key_mem(c.start, rec.id);
        c.start_len = 4;
        do {
            rc = store_write(dst, copy_fn, &c, "snapshot", STORE_COPY_BYTES);
        } while (rc == 0 && !c.done);
        if (rc) goto done;
    }
    h.stage = 1;
    if ((rc = store_write(dst, head_fn, &h, "snapshot", 4096))) goto done;
    rc = hsadb_store_sync(dst);
done:
    hsadb_store_close(dst);
    read_end(st, txn);
    return store_err(rc, "snapshot");
}

/* ---- snapshot completion markers ------------------------------------------------------ */

/*
 * A snapshot is complete only once its marker file exists. The marker is written last,
 * after data.mdb is on disk (fsync'd), through a temporary file that is fsync'd and renamed
 * into place, and the directory is fsync'd: a snapshot killed at any point has no marker, or
 * a marker that names data.mdb exactly as it was finished. Its text (docs/storage.md §7):
 *
 *   hsadb-snapshot 1
 *   kind memory NAME        (or: kind database)
 *   bytes N                 size of data.mdb
 *   xxh3 HEX                XXH3-64 of data.mdb, 16 lowercase hex digits
 *   end
 */
#define MARKER_MAX 1024

/* Size and XXH3-64 of a file, read with pread in 1 MiB pieces; fsyncs it first if `sync`. */
static int file_digest(const char *path, int sync, uint64_t *bytes, uint64_t *digest) {
    const size_t piece = (size_t)1 << 20;
    XXH3_state_t *xs = XXH3_createState();
    uint8_t *buf = malloc(piece);
    uint64_t off = 0;
    int fd = -1, rc = 0;

    if (!xs || !buf) {
        rc = hsadb_fail(ENOMEM, "snapshot: out of memory");
        goto done;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        rc = hsadb_fail(errno, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (sync && fsync(fd) != 0) {
        rc = hsadb_fail(errno, "fsync %s: %s", path, strerror(errno));
        goto done;
    }
    XXH3_64bits_reset(xs);
    for (;;) {
        ssize_t got = pread(fd, buf, piece, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            rc = hsadb_fail(errno, "read %s: %s", path, strerror(errno));
            goto done;
        }
        if (got == 0) break;
        XXH3_64bits_update(xs, buf, (size_t)got);
        off += (uint64_t)got;
    }
    *bytes = off;
    *digest = XXH3_64bits_digest(xs);
done:
    if (fd >= 0) close(fd);
    free(buf);
    XXH3_freeState(xs);
    return rc;
}

/* Writes dest's completion marker (see above) for a finished copy of `memory` (NULL: all). */
static int marker_write(const char *dest, const char *memory) {
    char path[PATH_MAX], tmp[PATH_MAX], text[MARKER_MAX];
    uint64_t bytes, digest;
    int fd = -1, n, rc;

    snprintf(path, sizeof path, "%s/data.mdb", dest);
    if ((rc = file_digest(path, 1, &bytes, &digest))) return rc;
    n = snprintf(text, sizeof text, "hsadb-snapshot 1\nkind %s%s\nbytes %" PRIu64 "\nxxh3 %016" PRIx64
                 "\nend\n", memory ? "memory " : "database", memory ? memory : "", bytes, digest);
    snprintf(tmp, sizeof tmp, "%s/" STORE_SNAPSHOT_MARKER ".tmp", dest);
    snprintf(path, sizeof path, "%s/" STORE_SNAPSHOT_MARKER, dest);
    if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644)) < 0)
        return hsadb_fail(errno, "snapshot marker %s: %s", tmp, strerror(errno));
    errno = 0;   /* a short write sets none */
    if (write(fd, text, (size_t)n) != n || fsync(fd) != 0) {
        rc = hsadb_fail(errno ? errno : EIO, "snapshot marker %s: %s", tmp, strerror(errno ? errno : EIO));
        close(fd);
        unlink(tmp);
        return rc;
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        rc = hsadb_fail(errno, "snapshot marker %s: %s", path, strerror(errno));
        unlink(tmp);
        return rc;
    }
    if ((fd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        rc = fsync(fd) != 0 ? hsadb_fail(errno, "fsync %s: %s", dest, strerror(errno)) : 0;
        close(fd);
    }
    return rc;
}

int hsadb_store_snapshot_verify(const char *dir, char *memory, size_t memory_cap) {
    char path[PATH_MAX], text[MARKER_MAX + 1], kind[16], name[HSADB_NAME_MAX + 2];
    uint64_t want_bytes, want_digest, bytes, digest;
    struct stat sb;
    ssize_t got;
    int fd, rc, end = 0;

    if (!dir || !*dir) return hsadb_fail(HSADB_ERR_INVALID, "snapshot verify: no directory");
    if (strlen(dir) > PATH_MAX - 32) return hsadb_fail(ENAMETOOLONG, "snapshot: path too long");
    if (stat(dir, &sb) != 0) return hsadb_fail(errno, "snapshot %s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return hsadb_fail(ENOTDIR, "snapshot %s: not a directory", dir);
    snprintf(path, sizeof path, "%s/" STORE_SNAPSHOT_MARKER, dir);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) < 0) {
        if (errno == ENOENT)
            return hsadb_fail(HSADB_ERR_CORRUPT, "snapshot %s is incomplete: it has no completion "
                              "marker '" STORE_SNAPSHOT_MARKER "' (the snapshot was stopped "
                              "part-way, or predates markers)", dir);
        return hsadb_fail(errno, "%s: %s", path, strerror(errno));
    }
    got = read(fd, text, MARKER_MAX);
    close(fd);
    if (got < 0) return hsadb_fail(errno, "%s: %s", path, strerror(errno));
    text[got] = 0;
    name[0] = 0;
    if (got == MARKER_MAX ||
        sscanf(text, "hsadb-snapshot 1\nkind %15s", kind) != 1 ||
        (strcmp(kind, "memory") == 0 &&
         sscanf(text, "hsadb-snapshot 1\nkind memory %129s\nbytes %" SCNu64 "\nxxh3 %" SCNx64 "\nend%n",
                name, &want_bytes, &want_digest, &end) != 3) ||
        (strcmp(kind, "database") == 0 &&
         sscanf(text, "hsadb-snapshot 1\nkind database\nbytes %" SCNu64 "\nxxh3 %" SCNx64 "\nend%n",
                &want_bytes, &want_digest, &end) != 2) ||
        (strcmp(kind, "memory") && strcmp(kind, "database")) || !end ||
        (name[0] && !hsadb_memory_name_valid(name)))
        return hsadb_fail(HSADB_ERR_CORRUPT, "snapshot %s: completion marker '"
                          STORE_SNAPSHOT_MARKER "' is malformed", dir);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if ((rc = file_digest(path, 0, &bytes, &digest))) {
        if (rc == ENOENT)
            return hsadb_fail(HSADB_ERR_CORRUPT, "snapshot %s: data.mdb is missing", dir);
        return rc;
    }
    if (bytes != want_bytes)
        return hsadb_fail(HSADB_ERR_CORRUPT, "snapshot %s: data.mdb has %" PRIu64 " bytes, the "
                          "snapshot wrote %" PRIu64 " (cut short or changed)", dir, bytes, want_bytes);
    if (digest != want_digest)
        return hsadb_fail(HSADB_ERR_CORRUPT, "snapshot %s: data.mdb does not match its XXH3 "
                          "digest (%016" PRIx64 ", the snapshot wrote %016" PRIx64 "): damaged",
                          dir, digest, want_digest);
    if (memory && memory_cap) snprintf(memory, memory_cap, "%s", name);
    return 0;
}

/*
 * Snapshot of the whole env (memory == NULL: compacting mdb_env_copy2) or of one memory,
 * into dest (created if missing; must be empty, else HSADB_ERR_EXISTS), then, if `mark`, its
 * completion marker. On failure what was written is removed again.
 */
static int snapshot_into(hsadb_store *st, const char *memory, const char *dest_dir, int mark,
                         hsadb_store_snapshot_extra_fn extra, void *ctx) {
    size_t len = 0;
    int created, rc;

    if (!st || !dest_dir || !*dest_dir)
        return hsadb_fail(HSADB_ERR_INVALID, "snapshot: NULL argument");
    if (memory && (rc = name_check(memory, &len))) return rc;
    if (strlen(dest_dir) > PATH_MAX - 32)
        return hsadb_fail(ENAMETOOLONG, "snapshot: path too long");
    if ((rc = dest_prepare(dest_dir, &created))) return rc;
    rc = memory ? snapshot_memory(st, memory, len, dest_dir) : snapshot_env(st, dest_dir);
    if (rc == 0 && extra) rc = extra(st, dest_dir, ctx);   /* before the marker: it seals data.mdb */
    if (rc == 0 && mark) rc = marker_write(dest_dir, memory);
    if (rc) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", hsadb_last_error());
        dest_cleanup(dest_dir, created);
        hsadb_set_error("%s", detail);
    }
    return rc;
}

int hsadb_store_snapshot(hsadb_store *st, const char *memory, const char *dest_dir) {
    return snapshot_into(st, memory, dest_dir, 1, NULL, NULL);
}

int hsadb_store_snapshot_with(hsadb_store *st, const char *memory, const char *dest_dir,
                              hsadb_store_snapshot_extra_fn extra, void *ctx) {
    return snapshot_into(st, memory, dest_dir, 1, extra, ctx);
}

int hsadb_store_copy(hsadb_store *st, const char *dest_dir) {
    return snapshot_into(st, NULL, dest_dir, 0, NULL, NULL);
}

/* ---- check: walk records and report damage --------------------------------------------- */

/*
 * hsadb_store_check walks one memory's records (or every memory's, then LMDB's free list)
 * inside ONE read transaction and reports each damaged record through fn:
 *   - the memory record: size and geometry;
 *   - landmarks, kv, chunks: exactly the keys (id, 0..n_chunks-1), each of its size, chunk
 *     records self-consistent (byte_offset = chunk * S, append id in 1..n_appends);
 *   - appends: exactly (id, 1..n_appends), tiling the stream (docs/storage.md, Invariants);
 *   - the tail's size;
 *   - every value that lives in LMDB overflow pages: the run's page header (page number,
 *     overflow flag, page count, inside the file). LMDB trusts that header when it frees the
 *     run, and a delete over a damaged one wrote out of bounds (issue 35);
 *   - the free list (whole-database check): page numbers inside the file.
 * Damage is counted and reported; the walk itself fails only on errors of its own (ENOMEM,
 * an unreadable env) or when fn returns nonzero.
 */
struct check_walk {
    hsadb_store              *st;
    MDB_txn                  *txn;
    hsadb_store_damage_fn     fn;
    void                     *ctx;
    MDB_envinfo               info;
    const uint8_t            *base;          /* page 0 in the map (map_base), or NULL */
    uint64_t                  n_damaged, n_records;
    int                       stopped;       /* fn returned nonzero: its value */
    int                       verify_sums;   /* hash every value (format 3), not just sizes */
    /* the memory being walked */
    const char               *name;
    struct hsadb_memory_rec   rec;
    struct geom               g;
    uint64_t                  app_end, app_chunks; /* appends: where the last one ended */
};

static int damage(struct check_walk *w, const char *db, uint64_t n, uint64_t count,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* Reports `count` damaged records (a gap of missing ones counts each) described by fmt. */
static int damage(struct check_walk *w, const char *db, uint64_t n, uint64_t count,
                  const char *fmt, ...) {
    struct hsadb_store_damage d;
    char what[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    w->n_damaged += count;
    w->st->damaged = 1;     /* from now on this handle refuses writes (write_guard) */
    if (!w->fn || w->stopped) return w->stopped;
    d.memory = w->name;
    d.db = db;
    d.n = n;
    d.what = what;
    w->stopped = w->fn(w->ctx, &d);
    return w->stopped;
}

/*
 * The address of page 0 in this process's map. mdb_env_info's me_mapaddr is not it (LMDB
 * reports the meta page's recorded address, 0 without MDB_FIXEDMAP). A small value lives in
 * a leaf page, which starts at the page-aligned address below it (the map is mmap'd, LMDB's
 * page size is the system's) and names its own number in its header: base = page - pgno *
 * psize. Page 0 there must be a meta page (magic 0xBEEFC0DE after its header). NULL if that
 * does not hold.
 */
static const uint8_t *map_base(const hsadb_store *st, MDB_txn *txn) {
    MDB_val k = key_str(KEY_FORMAT), v;
    const size_t ps = st->psize;
    const uint8_t *page, *base;
    uint64_t pgno;
    uint32_t magic;

    if (ps == 0 || (long)ps != sysconf(_SC_PAGESIZE) || mdb_get(txn, st->dbi[DB_META], &k, &v))
        return NULL;
    page = (const uint8_t *)((uintptr_t)v.mv_data & ~(uintptr_t)(ps - 1));
    memcpy(&pgno, page, 8);
    if (pgno > (uint64_t)((uintptr_t)page / ps)) return NULL;
    base = page - pgno * ps;
    memcpy(&magic, base + STORE_OVPAGE_HDR, 4);
    return magic == 0xBEEFC0DEu ? base : NULL;
}

/* NULL if v (of key k) is in a leaf page or heads a sound overflow run; else what is wrong.
 * LMDB 0.9 page header: pgno u64 at 0, flags u16 at 10 (P_OVERFLOW 0x04), pages u32 at 12. */
static const char *ovpage_bad(const struct check_walk *w, const MDB_val *k, const MDB_val *v) {
    const size_t ps = w->st->psize;
    const size_t nodemax = (((ps - STORE_OVPAGE_HDR) / 2) & ~(size_t)1) - 2;
    const uint8_t *base = w->base, *p = (const uint8_t *)v->mv_data - STORE_OVPAGE_HDR;
    uint64_t pgno;
    uint16_t flags;
    uint32_t pages;

    if (8 + k->mv_size + v->mv_size <= nodemax) return NULL;   /* stored inside a leaf page */
    if ((uintptr_t)p % ps != 0) return "value not at an overflow page";
    memcpy(&pgno, p, 8);
    memcpy(&flags, p + 10, 2);
    memcpy(&pages, p + 12, 4);
    if (base && (p < base || pgno != (uint64_t)(p - base) / ps))
        return "overflow page header: wrong page number";
    if (!(flags & 0x04)) return "overflow page header: not marked overflow";
    if (pages != (v->mv_size + STORE_OVPAGE_HDR + ps - 1) / ps)
        return "overflow page header: wrong page count";
    if (pgno + pages > (uint64_t)w->info.me_last_pgno + 1) return "overflow run beyond the file";
    return NULL;
}

/* Checks one value of a keyed database (key number n) beyond its key; reports damage. */
static int check_value(struct check_walk *w, int db, uint64_t n, const MDB_val *k, const MDB_val *v) {
    const struct geom *g = &w->g;
    size_t want = 0;
    const char *bad;

    switch (db) {
    case DB_LANDMARKS: want = g->lm_val; break;
    case DB_KV:        want = g->kv_val; break;
    case DB_CHUNKS:    want = g->chunk_val; break;
    case DB_APPENDS:   want = sizeof(struct hsadb_append_rec) + g->sum; break;
    }
    if (v->mv_size != want)
        return damage(w, db_name[db], n, 1, "%zu bytes, expected %zu", v->mv_size, want);
    if ((bad = ovpage_bad(w, k, v))) return damage(w, db_name[db], n, 1, "%s", bad);
    if (w->verify_sums && !sum_ok(w->st, db, k, v))
        return damage(w, db_name[db], n, 1, "checksum mismatch");
    if (db == DB_CHUNKS) {
        struct hsadb_chunk_meta cm;
        memcpy(&cm, v->mv_data, sizeof cm);
        if (cm.byte_offset != n * w->rec.chunk_size)
            return damage(w, db_name[db], n, 1, "byte_offset %" PRIu64 ", expected %" PRIu64,
                          cm.byte_offset, n * w->rec.chunk_size);
        if (cm.append_id == 0 || cm.append_id > w->rec.n_appends)
            return damage(w, db_name[db], n, 1, "append id %" PRIu64 " outside 1..%" PRIu64,
                          cm.append_id, w->rec.n_appends);
    }
    if (db == DB_APPENDS) {
        struct hsadb_append_rec a;
        memcpy(&a, v->mv_data, sizeof a);
        if (a.start_offset != w->app_end || a.bytes > w->rec.n_bytes - a.start_offset ||
            a.state > 1)
            return damage(w, db_name[db], n, 1, "start %" PRIu64 " bytes %" PRIu64 " state %u: "
                          "does not follow the append before it (which ended at %" PRIu64 ")",
                          a.start_offset, a.bytes, a.state, w->app_end);
        w->app_end = a.start_offset + a.bytes;
        w->app_chunks += a.chunks;
    }
    return 0;
}

/* Walks the records of memory w->rec.id in db: keys first..first+count-1 exactly. */
static int check_keyed(struct check_walk *w, int db, uint64_t first, uint64_t count) {
    uint8_t kb[12];
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint64_t expect = first, n;
    int rc;

    if ((rc = mdb_cursor_open(w->txn, w->st->dbi[db], &cur))) return store_err(rc, "check");
    k = key_mem(kb, w->rec.id);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && !w->stopped;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 4 || get_be32(k.mv_data) != w->rec.id) break;
        w->n_records++;
        if (k.mv_size != 12) {
            damage(w, db_name[db], UINT64_MAX, 1, "key of %zu bytes", k.mv_size);
            continue;
        }
        n = get_be64((const uint8_t *)k.mv_data + 4);
        if (n < expect || n >= first + count) {
            damage(w, db_name[db], n, 1, "record outside %" PRIu64 "..%" PRIu64 " (the memory "
                   "record's count)", first, first + count - 1);
            continue;
        }
        if (n > expect)
            damage(w, db_name[db], expect, n - expect, "records %" PRIu64 "..%" PRIu64 " missing",
                   expect, n - 1);
        expect = n + 1;
        check_value(w, db, n, &k, &v);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND)   /* LMDB itself found the pages damaged */
        return damage(w, db_name[db], expect, 1, "LMDB: %s", mdb_strerror(rc));
    if (!w->stopped && expect < first + count)
        damage(w, db_name[db], expect, first + count - expect, "records %" PRIu64 "..%" PRIu64
               " missing", expect, first + count - 1);
    return 0;
}

/* The memory's append ids: each names one of its appends (and, format 3, its checksum). */
static void check_ids(struct check_walk *w) {
    uint8_t kb[4];
    MDB_cursor *cur;
    MDB_val k, v;
    uint64_t aid;
    int rc;
    if (mdb_cursor_open(w->txn, w->st->dbi[DB_APPEND_IDS], &cur)) return;
    k = key_mem(kb, w->rec.id);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && !w->stopped;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 4 || get_be32(k.mv_data) != w->rec.id) break;
        w->n_records++;
        if (k.mv_size < 5 || k.mv_size > 4 + STORE_ID_MAX || v.mv_size != 8 + w->g.sum) {
            damage(w, "append_ids", UINT64_MAX, 1, "key of %zu bytes, value of %zu", k.mv_size,
                   v.mv_size);
            continue;
        }
        memcpy(&aid, v.mv_data, 8);
        if (w->verify_sums && !sum_ok(w->st, DB_APPEND_IDS, &k, &v))
            damage(w, "append_ids", aid, 1, "checksum mismatch");
        else if (aid == 0 || aid > w->rec.n_appends)
            damage(w, "append_ids", aid, 1, "names append %" PRIu64 " of %" PRIu64, aid,
                   w->rec.n_appends);
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) damage(w, "append_ids", UINT64_MAX, 1, "LMDB: %s", mdb_strerror(rc));
}

/* Checks memory `name` (key k, value v of "memories"). */
static int check_memory(struct check_walk *w, const MDB_val *k, const MDB_val *v) {
    static const int chunk_dbs[] = { DB_LANDMARKS, DB_KV, DB_CHUNKS };
    uint8_t kb[4];
    MDB_val tk, tv;
    const char *bad;
    int i, rc;

    w->n_records++;
    if ((bad = ovpage_bad(w, k, v))) return damage(w, "memories", UINT64_MAX, 1, "%s", bad);
    if (v->mv_size != sizeof w->rec + store_sum_bytes(w->st))
        return damage(w, "memories", UINT64_MAX, 1, "%zu bytes, expected %zu", v->mv_size,
                      sizeof w->rec + store_sum_bytes(w->st));
    if (!sum_ok(w->st, DB_MEMORIES, k, v))
        return damage(w, "memories", UINT64_MAX, 1, "checksum mismatch");
    memcpy(&w->rec, v->mv_data, sizeof w->rec);
    if (rec_geom(w->st, &w->rec, w->name, HSADB_ERR_CORRUPT, &w->g))
        return damage(w, "memories", UINT64_MAX, 1, "%s", hsadb_last_error());
    if (w->rec.n_chunks > w->rec.n_bytes / w->rec.chunk_size)
        return damage(w, "memories", UINT64_MAX, 1, "%" PRIu64 " chunks but %" PRIu64 " bytes",
                      w->rec.n_chunks, w->rec.n_bytes);
    for (i = 0; i < 3 && !w->stopped; i++)
        if ((rc = check_keyed(w, chunk_dbs[i], 0, w->rec.n_chunks))) return rc;
    w->app_end = 0;
    w->app_chunks = 0;
    const uint64_t before = w->n_damaged;
    if (!w->stopped && (rc = check_keyed(w, DB_APPENDS, 1, w->rec.n_appends))) return rc;
    /* the sum over the appends means something only when each of them was sound */
    if (!w->stopped && w->n_damaged == before && w->rec.n_appends && (w->app_end != w->rec.n_bytes ||
                                            w->app_chunks != w->rec.n_chunks))
        damage(w, "appends", w->rec.n_appends, 1, "the appends end at byte %" PRIu64 " with %"
               PRIu64 " chunks, the memory record says %" PRIu64 " and %" PRIu64, w->app_end,
               w->app_chunks, w->rec.n_bytes, w->rec.n_chunks);
    if (!w->stopped && w->st->has_ids) check_ids(w);
    tk = key_mem(kb, w->rec.id);
    rc = mdb_get(w->txn, w->st->dbi[DB_TAILS], &tk, &tv);
    if (rc == 0) {
        w->n_records++;
        if (tv.mv_size > STORE_VALUE_MAX || tv.mv_size < w->g.sum)
            damage(w, "tails", UINT64_MAX, 1, "%zu bytes", tv.mv_size);
        else if ((bad = ovpage_bad(w, &tk, &tv)))
            damage(w, "tails", UINT64_MAX, 1, "%s", bad);
        else if (w->verify_sums && !sum_ok(w->st, DB_TAILS, &tk, &tv))
            damage(w, "tails", UINT64_MAX, 1, "checksum mismatch");
    } else if (rc != MDB_NOTFOUND) {
        damage(w, "tails", UINT64_MAX, 1, "LMDB: %s", mdb_strerror(rc));
    }
    return 0;
}

/* LMDB's free list (database 0): each value is a list of page numbers, count first. */
static int check_freelist(struct check_walk *w) {
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;

    if ((rc = mdb_cursor_open(w->txn, 0, &cur))) return store_err(rc, "check free list");
    w->name = NULL;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !w->stopped;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        uint64_t cnt, pg, txnid = 0, i;
        if (k.mv_size == 8) memcpy(&txnid, k.mv_data, 8);
        w->n_records++;
        if (k.mv_size != 8 || v.mv_size < 8 || v.mv_size % 8) {
            damage(w, "free list", txnid, 1, "entry of %zu/%zu bytes", k.mv_size, v.mv_size);
            continue;
        }
        memcpy(&cnt, v.mv_data, 8);
        if (cnt != v.mv_size / 8 - 1) {
            damage(w, "free list", txnid, 1, "count %" PRIu64 " for %zu bytes", cnt, v.mv_size);
            continue;
        }
        for (i = 1; i <= cnt; i++) {
            memcpy(&pg, (const uint8_t *)v.mv_data + 8 * i, 8);
            if (pg < 2 || pg > (uint64_t)w->info.me_last_pgno) {
                damage(w, "free list", txnid, 1, "page %" PRIu64 " outside 2..%zu", pg,
                       w->info.me_last_pgno);
                break;
            }
        }
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) damage(w, "free list", 0, 1, "LMDB: %s", mdb_strerror(rc));
    return 0;
}

/* The walk behind hsadb_store_check; sums = 0 checks structure only (what a write relies on). */
static int check_run(hsadb_store *st, const char *name, int sums, hsadb_store_damage_fn fn,
                     void *ctx, struct hsadb_store_check_result *out) {
    char kname[HSADB_NAME_MAX + 1];
    struct check_walk w;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    size_t len = 0;
    int rc;

    if (!st) return hsadb_fail(HSADB_ERR_INVALID, "check: NULL store");
    if (name && (rc = name_check(name, &len))) return rc;
    memset(&w, 0, sizeof w);
    w.st = st;
    w.fn = fn;
    w.ctx = ctx;
    w.verify_sums = sums;
    if ((rc = read_begin(st, &w.txn))) return store_err(rc, "check");
    /* me_last_pgno is as of the latest commit, which bounds this view's pages too */
    if ((rc = mdb_env_info(st->env, &w.info))) goto done;
    w.base = map_base(st, w.txn);
    if (name) {
        k = (MDB_val){ len, (void *)name };
        rc = mdb_get(w.txn, st->dbi[DB_MEMORIES], &k, &v);
        if (rc == MDB_NOTFOUND) {
            rc = hsadb_fail(HSADB_ERR_NOTFOUND, "no memory named '%s'", name);
            goto done;
        }
        if (rc) {
            w.name = name;
            damage(&w, "memories", UINT64_MAX, 1, "LMDB: %s", mdb_strerror(rc));
            rc = 0;
            goto done;
        }
        w.name = name;
        rc = check_memory(&w, &k, &v);
        goto done;
    }
    if ((rc = mdb_cursor_open(w.txn, st->dbi[DB_MEMORIES], &cur))) goto done;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && !w.stopped;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size == 0 || k.mv_size > HSADB_NAME_MAX) {
            w.name = NULL;
            damage(&w, "memories", UINT64_MAX, 1, "name of %zu bytes", k.mv_size);
            continue;
        }
        memcpy(kname, k.mv_data, k.mv_size);
        kname[k.mv_size] = 0;
        w.name = kname;
        if ((rc = check_memory(&w, &k, &v))) goto done;
    }
    w.name = NULL;
    if (rc && rc != MDB_NOTFOUND) damage(&w, "memories", UINT64_MAX, 1, "LMDB: %s", mdb_strerror(rc));
    rc = 0;
    if (!w.stopped) rc = check_freelist(&w);
done:
    if (cur) mdb_cursor_close(cur);
    read_end(st, w.txn);
    if (rc) return store_err(rc, "check");
    if (out) {
        out->n_damaged = w.n_damaged;
        out->n_records = w.n_records;
    }
    return w.stopped;
}

int hsadb_store_check(hsadb_store *st, const char *name, hsadb_store_damage_fn fn, void *ctx,
                      struct hsadb_store_check_result *out) {
    return check_run(st, name, 1, fn, ctx, out);
}

/* The free list alone (write_guard). */
static int check_freelist_only(hsadb_store *st, hsadb_store_damage_fn fn, void *ctx,
                               struct hsadb_store_check_result *out) {
    struct check_walk w;
    int rc;
    memset(&w, 0, sizeof w);
    w.st = st;
    w.fn = fn;
    w.ctx = ctx;
    if ((rc = read_begin(st, &w.txn))) return store_err(rc, "check");
    if ((rc = mdb_env_info(st->env, &w.info)) == 0) rc = check_freelist(&w);
    read_end(st, w.txn);
    if (rc) return store_err(rc, "check");
    out->n_records += w.n_records;
    out->n_damaged += w.n_damaged;
    return 0;
}

/* Memory `name`'s record and tail record alone (write_guard before an append). */
static int check_tail_only(hsadb_store *st, const char *name, hsadb_store_damage_fn fn,
                           void *ctx, struct hsadb_store_check_result *out) {
    struct check_walk w;
    uint8_t kb[4];
    MDB_val k, v, tk, tv;
    const char *bad;
    int rc;
    memset(&w, 0, sizeof w);
    w.st = st;
    w.fn = fn;
    w.ctx = ctx;
    w.name = name;
    w.verify_sums = 1;
    if ((rc = read_begin(st, &w.txn))) return store_err(rc, "check");
    if ((rc = mdb_env_info(st->env, &w.info))) goto done;
    w.base = map_base(st, w.txn);
    k = key_str(name);
    if ((rc = mdb_get(w.txn, st->dbi[DB_MEMORIES], &k, &v))) {
        if (rc == MDB_NOTFOUND) rc = 0;   /* writer_begin reports it */
        else damage(&w, "memories", UINT64_MAX, 1, "LMDB: %s", mdb_strerror(rc)), rc = 0;
        goto done;
    }
    if (v.mv_size != sizeof w.rec + store_sum_bytes(st) || !sum_ok(st, DB_MEMORIES, &k, &v)) {
        damage(&w, "memories", UINT64_MAX, 1, "size or checksum wrong");
        goto done;
    }
    memcpy(&w.rec, v.mv_data, sizeof w.rec);
    tk = key_mem(kb, w.rec.id);
    rc = mdb_get(w.txn, st->dbi[DB_TAILS], &tk, &tv);
    if (rc == MDB_NOTFOUND) {
        rc = 0;
    } else if (rc) {
        damage(&w, "tails", UINT64_MAX, 1, "LMDB: %s", mdb_strerror(rc));
        rc = 0;
    } else if ((bad = ovpage_bad(&w, &tk, &tv))) {
        damage(&w, "tails", UINT64_MAX, 1, "%s", bad);
    }
done:
    read_end(st, w.txn);
    if (rc) return store_err(rc, "check");
    out->n_records += w.n_records;
    out->n_damaged += w.n_damaged;
    return 0;
}

/* ---- the lexical index's access to transactions (lexidx.h) ------------------------------ */

int hsadb_store_reader_lex(hsadb_store_reader *r, hsadb_lexidx_txn *out) {
    if (!r || !out) return hsadb_fail(HSADB_ERR_INVALID, "reader lex: NULL argument");
    if (r->st->no_lex)
        return hsadb_fail(HSADB_ERR_NOTFOUND, "store %s has no lexical index (made by an older build; "
                          "open it writable once)", r->st->dir);
    *out = (hsadb_lexidx_txn){ r->txn, r->st->dbi[DB_CHUNKS], r->st->dbi[DB_LEX], r->rec.id,
                               r->rec.chunk_size, r->rec.n_chunks, (uint32_t)store_sum_bytes(r->st) };
    return 0;
}

struct lex_ctx {
    hsadb_store_writer *w;
    hsadb_store_lex_fn fn;
    void *ctx;
};

/* One write txn for a lexical-index step: the memory must still be as the writer last saw it. */
static int lex_fn(hsadb_store *st, MDB_txn *txn, void *ctx) {
    struct lex_ctx *c = ctx;
    hsadb_store_writer *w = c->w;
    struct hsadb_memory_rec cur;
    int rc = mem_lookup(st, txn, w->name, w->name_len, &cur, NULL);
    if (rc == HSADB_ERR_NOTFOUND || (rc == 0 && cur.id != w->rec.id))
        return hsadb_fail(HSADB_ERR_NOTFOUND, "memory '%s' was deleted", w->name);
    if (rc) return rc;
    if (cur.n_chunks != w->rec.n_chunks || cur.n_appends != w->rec.n_appends)
        return hsadb_fail(HSADB_ERR_BUSY, "memory %s was modified by another writer", w->name);
    const hsadb_lexidx_txn lt = { txn, st->dbi[DB_CHUNKS], st->dbi[DB_LEX], cur.id, cur.chunk_size,
                                  cur.n_chunks, (uint32_t)store_sum_bytes(st) };
    return c->fn(&lt, w->lex, c->ctx);
}

int hsadb_store_writer_lex(hsadb_store_writer *w, hsadb_store_lex_fn fn, void *ctx) {
    char what[HSADB_NAME_MAX + 48];
    if (!w || !fn) return hsadb_fail(HSADB_ERR_INVALID, "writer lex: NULL argument");
    if (w->n_staged || w->n_sealed)
        return hsadb_fail(HSADB_ERR_INVALID, "memory '%s': lexical index step with chunks staged", w->name);
    struct lex_ctx c = { w, fn, ctx };
    snprintf(what, sizeof what, "lexical index of memory '%s'", w->name);
    return store_write(w->st, lex_fn, &c, what, (size_t)16 << 20);
}
