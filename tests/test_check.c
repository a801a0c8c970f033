/*
 * tests/test_check.c — record checksums (store format 3), hsadb_check, and writes on a damaged
 * store (issue 35). Memories are written through include/hsadb.h with the tiny model; damage
 * is made with raw LMDB (a value rewritten with one bit flipped, a record deleted) or by
 * writing into data.mdb's pages directly (an overflow page header).
 *
 *   1. a sound store checks clean; each kind of record with one flipped bit is named by
 *      hsadb_check and refused on read (HSADB_ERR_CORRUPT, "checksum mismatch");
 *   2. a missing chunk record is reported as missing;
 *   3. a damaged overflow page header: check names it, delete and append are refused (they
 *      crashed inside LMDB before), and once a check found damage the handle refuses writes;
 *   4. a format-2 store (no checksums) is still read, written and checked.
 */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lmdb.h>

#include "test_util.h"
#include "hsadb.h"
#include "store.h"

static char g_root[256];
static hsadb_model *g_model;

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

static void key_rec(uint8_t k[12], uint32_t id, uint64_t n) {
    for (int i = 0; i < 4; i++) k[i] = (uint8_t)(id >> (24 - 8 * i));
    for (int i = 0; i < 8; i++) k[4 + i] = (uint8_t)(n >> (56 - 8 * i));
}

/* Raw LMDB: flip bit `bit` of byte `at` of the value of (db, key); or delete it (at < 0). */
static int raw_damage(const char *dir, const char *db, const void *key, size_t klen, long at,
                      int bit) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    MDB_val k = { klen, (void *)key }, v;
    int rc;
    if ((rc = raw_open(dir, 0, &env))) return rc;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn))) goto out;
    if ((rc = mdb_dbi_open(txn, db, 0, &dbi)) || (rc = mdb_get(txn, dbi, &k, &v))) {
        mdb_txn_abort(txn);
        goto out;
    }
    if (at < 0) {
        rc = mdb_del(txn, dbi, &k, NULL);
    } else {
        uint8_t *copy = malloc(v.mv_size);
        memcpy(copy, v.mv_data, v.mv_size);
        copy[(size_t)at % v.mv_size] ^= (uint8_t)(1u << bit);
        v.mv_data = copy;
        rc = mdb_put(txn, dbi, &k, &v, 0);
        free(copy);
    }
    if (rc) mdb_txn_abort(txn);
    else rc = mdb_txn_commit(txn);
out:
    mdb_env_close(env);
    return rc;
}

/* A fresh database `name` under g_root with memory "m" of `n` bytes (format from env). */
static int make_db(char *dir, size_t dn, const char *name, size_t n, hsadb_db **out) {
    hsadb_db_options o = { .flags = HSADB_DB_CREATE | HSADB_DB_NOSYNC, .model = g_model };
    uint8_t *b = malloc(n);
    int rc;
    snprintf(dir, dn, "%s/%s", g_root, name);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)("hsadb check test "[i % 17] + i / 97 % 3);
    if ((rc = hsadb_db_open(dir, &o, out)) == 0 && (rc = hsadb_memory_create(*out, "m")) == 0)
        rc = hsadb_append(*out, "m", b, n, NULL);
    free(b);
    return rc;
}

struct found { int n; char first[512]; };

static int collect(void *ctx, const hsadb_damage *d) {
    struct found *f = ctx;
    if (!f->n++)
        snprintf(f->first, sizeof f->first, "%s %s %llu: %s", d->memory ? d->memory : "-",
                 d->record, (unsigned long long)d->n, d->what);
    return 0;
}

/* Runs hsadb_check on a fresh handle of dir; returns damaged count (first one in f). */
static long check_dir(const char *dir, const char *memory, struct found *f) {
    hsadb_db_options o = { .flags = HSADB_DB_RDONLY };
    hsadb_check_result res = { 0, 0 };
    hsadb_db *db;
    memset(f, 0, sizeof *f);
    if (hsadb_db_open(dir, &o, &db)) return -1;
    int rc = hsadb_check(db, memory, collect, f, &res);
    hsadb_db_close(db);
    return rc ? -1 : (long)res.n_damaged;
}

/* Reads memory m back through every reader path: 0, or the first error. */
static int read_all(const char *dir) {
    hsadb_db_options o = { .flags = HSADB_DB_RDONLY, .model = g_model };
    hsadb_db *db;
    hsadb_hits *h = NULL;
    uint8_t buf[1 << 16];
    size_t got;
    int rc;
    if ((rc = hsadb_db_open(dir, &o, &db))) return rc;
    rc = hsadb_memory_read(db, "m", 0, buf, sizeof buf, &got);
    if (rc == 0) rc = hsadb_search(db, "m", "test?", 5, 4, &h);
    hsadb_hits_free(h);
    hsadb_db_close(db);
    return rc;
}

static void test_checksums(void) {
    static const struct { const char *db; int keyed; long at; } cases[] = {
        { "kv", 1, 100 }, { "landmarks", 1, 3 }, { "chunks", 1, 30 }, { "appends", 1, 8 },
        { "tails", 0, 70 }, { "memories", 0, 60 },
    };
    char dir[320], base[320];
    hsadb_db *db;
    struct found f;
    printf("# 1. checksums: one flipped bit in each kind of record\n");
    int rc = make_db(base, sizeof base, "sums", 3000, &db);
    hsadb_db_close(db);
    CHECK(rc == 0, "setup: a memory of 3,000 bytes (%s)", rc ? hsadb_last_error() : "ok");
    CHECK(check_dir(base, NULL, &f) == 0, "the sound store checks clean (%s)", f.first);
    CHECK(check_dir(base, "m", &f) == 0, "... memory m too");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char cmd[1400];
        uint8_t key[12];
        snprintf(dir, sizeof dir, "%s/sums-%s", g_root, cases[i].db);
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && cp -r '%s' '%s' && rm -f '%s/lock.mdb'", dir, base, dir, dir);
        if (system(cmd) != 0) { CHECK(0, "copy %s", dir); continue; }
        key_rec(key, 1, 7);
        if (!strcmp(cases[i].db, "appends")) key_rec(key, 1, 1);
        rc = cases[i].keyed ? raw_damage(dir, cases[i].db, key, 12, cases[i].at, 2)
           : !strcmp(cases[i].db, "tails") ? raw_damage(dir, "tails", key, 4, cases[i].at, 2)
           : raw_damage(dir, "memories", "m", 1, cases[i].at, 2);
        long n = check_dir(dir, NULL, &f);
        CHECK(rc == 0 && n == 1 && strstr(f.first, cases[i].db) && strstr(f.first, "checksum mismatch"),
              "%s: one flipped bit -> check reports 1 damaged record (%s)", cases[i].db, f.first);
        if (!strcmp(cases[i].db, "appends")) continue;   /* read, search: no append records */
        rc = read_all(dir);
        CHECK(rc == HSADB_ERR_CORRUPT, "%s: reading it back -> CORRUPT: %s", cases[i].db,
              rc ? hsadb_last_error() : "read fine");
    }
}

static void test_missing(void) {
    char dir[320];
    uint8_t key[12];
    hsadb_db *db;
    struct found f;
    printf("# 2. a missing record\n");
    int rc = make_db(dir, sizeof dir, "missing", 3000, &db);
    hsadb_db_close(db);
    key_rec(key, 1, 3);
    if (rc == 0) rc = raw_damage(dir, "chunks", key, 12, -1, 0);
    long n = check_dir(dir, "m", &f);
    CHECK(rc == 0 && n == 1 && strstr(f.first, "chunks 3: records 3..3 missing"),
          "chunk record 3 deleted -> reported missing (%s)", f.first);
}

/* The first overflow page of data.mdb whose header names itself: its page number. */
static long first_overflow_page(const char *path, long skip) {
    int fd = open(path, O_RDONLY);
    uint8_t h[16];
    long found = -1;
    for (long pg = 2; fd >= 0 && pread(fd, h, 16, pg * 4096) == 16; pg++) {
        uint64_t no;
        uint16_t fl;
        memcpy(&no, h, 8);
        memcpy(&fl, h + 10, 2);
        if (no == (uint64_t)pg && (fl & 4) && skip-- == 0) { found = pg; break; }
    }
    if (fd >= 0) close(fd);
    return found;
}

static void test_overflow_header(void) {
    char dir[320], path[400];
    hsadb_db *db;
    struct found f;
    printf("# 3. a damaged overflow page header: writes refused, not crashed\n");
    if (sysconf(_SC_PAGESIZE) != 4096) { SKIP("page size is not 4 KiB"); return; }
    int rc = make_db(dir, sizeof dir, "ovpage", 6000, &db);
    if (rc == 0) rc = hsadb_memory_create(db, "other");
    if (rc == 0) rc = hsadb_append(db, "other", "other memory's bytes", 20, NULL);
    hsadb_db_close(db);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    long pg = first_overflow_page(path, 5);
    int fd = open(path, O_WRONLY);
    uint32_t pages = 1000000;                 /* the run claims a million pages */
    CHECK(rc == 0 && pg > 0 && fd >= 0 && pwrite(fd, &pages, 4, pg * 4096 + 12) == 4,
          "setup: page %ld's overflow header says %u pages", pg, pages);
    if (fd >= 0) close(fd);
    long n = check_dir(dir, NULL, &f);
    CHECK(n == 1 && strstr(f.first, "overflow page header: wrong page count"), "check names it: %s", f.first);

    hsadb_db_options o = { .flags = 0, .model = g_model };
    CHECK(hsadb_db_open(dir, &o, &db) == 0, "open for writing");
    rc = hsadb_append(db, "other", "more", 4, NULL);
    CHECK(rc == 0, "an append to a sound memory runs: it touches no damaged page (%s)",
          rc ? hsadb_last_error() : "ok");
    rc = hsadb_memory_delete(db, "m");
    CHECK(rc == HSADB_ERR_CORRUPT && strstr(hsadb_last_error(), "refused"),
          "delete of the damaged memory -> CORRUPT, no crash: %s", hsadb_last_error());
    rc = hsadb_append(db, "other", "more", 4, NULL);
    CHECK(rc == HSADB_ERR_CORRUPT && strstr(hsadb_last_error(), "failed its integrity check"),
          "once damage was found, the handle refuses appends: %s", hsadb_last_error());
    hsadb_db_close(db);
    CHECK(hsadb_db_open(dir, &o, &db) == 0, "a new handle");
    hsadb_check_result res;
    rc = hsadb_check(db, NULL, NULL, NULL, &res);
    CHECK(rc == 0 && res.n_damaged == 1, "hsadb_check through the handle: %llu damaged",
          (unsigned long long)res.n_damaged);
    rc = hsadb_append(db, "other", "more", 4, NULL);
    CHECK(rc == HSADB_ERR_CORRUPT && strstr(hsadb_last_error(), "failed its integrity check"),
          "after a failed check the handle refuses appends: %s", hsadb_last_error());
    CHECK(hsadb_memory_create(db, "new") == HSADB_ERR_CORRUPT &&
          hsadb_memory_delete(db, "other") == HSADB_ERR_CORRUPT, "... and creates and deletes");
    char buf[64];
    size_t got = 0;
    CHECK(hsadb_memory_read(db, "other", 0, buf, sizeof buf, &got) == 0 && got == 24,
          "reads go on (%zu bytes of 'other')", got);
    hsadb_db_close(db);
}

static void test_format2(void) {
    char dir[320];
    hsadb_db *db;
    struct found f;
    printf("# 4. a format-2 store (no checksums)\n");
    setenv("HSADB_STORE_NEW_FORMAT", "2", 1);
    int rc = make_db(dir, sizeof dir, "format2", 3000, &db);
    unsetenv("HSADB_STORE_NEW_FORMAT");
    if (rc == 0) rc = hsadb_append(db, "m", "appended by this build", 22, NULL);
    hsadb_db_close(db);
    CHECK(rc == 0, "format 2: written (%s)", rc ? hsadb_last_error() : "ok");
    CHECK(check_dir(dir, NULL, &f) == 0, "format 2: checks clean (%s)", f.first);
    CHECK(read_all(dir) == 0, "format 2: reads back");
    uint8_t key[12];
    key_rec(key, 1, 4);
    raw_damage(dir, "kv", key, 12, 100, 1);
    CHECK(check_dir(dir, NULL, &f) == 0, "format 2: a flipped bit goes unseen (no checksums), as documented");
}

static void test_append_ids(void) {
    char dir[320], snap[400];
    hsadb_db *db;
    hsadb_appender *a = NULL, *b = NULL;
    hsadb_append_result first, r;
    printf("# 5. append ids (idempotency keys)\n");
    int rc = make_db(dir, sizeof dir, "ids", 100, &db);
    if (rc == 0) rc = hsadb_appender_open_id(db, "m", "job-7", &a, &first);
    CHECK(rc == 0 && a, "a new id opens an appender (%s)", rc ? hsadb_last_error() : "ok");
    rc = hsadb_appender_open_id(db, "m", "job-7", &b, &first);
    CHECK(rc == HSADB_ERR_BUSY && !b, "the same id while the first runs -> BUSY (%s)", hsadb_strerror(rc));
    if (a) {
        hsadb_appender_write(a, "0123456789", 10);
        rc = hsadb_appender_commit(a, &r);
        CHECK(rc == 0 && r.replayed == 0 && r.bytes == 10, "first attempt commits 10 bytes");
    }
    memset(&first, 0, sizeof first);
    rc = hsadb_appender_open_id(db, "m", "job-7", &b, &first);
    CHECK(rc == 0 && !b && first.replayed && first.complete && first.bytes == 10 &&
          first.append_id == r.append_id && first.total_bytes == 110,
          "the retry: no appender, the first result (append %llu, %llu bytes, total %llu)",
          (unsigned long long)first.append_id, (unsigned long long)first.bytes,
          (unsigned long long)first.total_bytes);
    snprintf(snap, sizeof snap, "%s-snap", dir);
    rc = hsadb_snapshot(db, "m", snap);
    hsadb_db_close(db);
    CHECK(rc == 0, "one-memory snapshot (%s)", rc ? hsadb_last_error() : "ok");
    hsadb_db_options o = { .flags = HSADB_DB_CREATE, .model = g_model };
    rc = hsadb_db_open(snap, &o, &db);
    if (rc == 0) rc = hsadb_appender_open_id(db, "m", "job-7", &b, &first);
    CHECK(rc == 0 && !b && first.replayed, "the snapshot keeps the memory's ids");
    hsadb_db_close(db);
}

int main(void) {
    if (!tu_tmpdir(g_root, sizeof g_root, "check")) return 1;
    if (hsadb_model_open("tests/data/tiny", &g_model)) {
        printf("tiny model: %s\n", hsadb_last_error());
        return 1;
    }
    test_checksums();
    test_missing();
    test_overflow_header();
    test_format2();
    test_append_ids();
    hsadb_model_close(g_model);
    tu_rmrf(g_root);
    return tu_summary();
}
