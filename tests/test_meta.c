/*
 * tests/test_meta.c — metadata of appends (hsadb.h "metadata of appends"): stored with an
 * append and read back by its id, bounds refused with nothing stored, no metadata from an
 * append that never committed, kept by a memory snapshot, deleted with the memory, absent
 * in a store that never had any. Runs from the source directory with the tiny model.
 */
#include "hsadb.h"
#include "append_meta.h"
#include "store.h"
#include "test_util.h"

static int appended(hsadb_db *db, const char *name, const char *text, const hsadb_meta_pair *p,
                    size_t n, uint64_t *id) {
    hsadb_appender *a;
    hsadb_append_result r;
    int rc = hsadb_appender_open(db, name, &a);
    if (rc) return rc;
    if (n && (rc = hsadb_appender_set_meta(a, p, n))) {
        hsadb_appender_abort(a);
        return rc;
    }
    if ((rc = hsadb_appender_write(a, text, strlen(text)))) {
        hsadb_appender_abort(a);
        return rc;
    }
    rc = hsadb_appender_commit(a, &r);
    if (id) *id = r.append_id;
    return rc;
}

static int has_pair(const hsadb_meta_pair *p, size_t n, const char *k, const char *v) {
    for (size_t i = 0; i < n; i++)
        if (strcmp(p[i].key, k) == 0 && strcmp(p[i].value, v) == 0) return 1;
    return 0;
}

/* Records of the memory in the "append_meta" sub-database, read at the store level. */
static uint64_t stored_records(const char *dir, uint32_t id) {
    hsadb_store *st;
    uint64_t n = (uint64_t)-1;
    if (hsadb_store_open(dir, HSADB_STORE_RDONLY, &st) == 0) {
        hsadb_append_meta_count(st, id, &n);
        hsadb_store_close(st);
    }
    return n;
}

static uint32_t memory_id(const char *dir, const char *name) {
    hsadb_store *st;
    uint32_t id = 0;
    if (hsadb_store_open(dir, HSADB_STORE_RDONLY, &st) == 0) {
        hsadb_store_memory_id(st, name, &id);
        hsadb_store_close(st);
    }
    return id;
}

int main(void) {
    char dir[256], snap[300], dir2[300];
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    hsadb_meta_pair *got = NULL;
    size_t n = 0;
    uint64_t id = 0;
    if (!CHECK(hsadb_model_open("tests/data/tiny", &m) == 0, "load tiny model") ||
        !CHECK(tu_tmpdir(dir, sizeof dir, "meta") != NULL, "temp dir"))
        return tu_summary();
    snprintf(snap, sizeof snap, "%s/snap", dir);
    snprintf(dir2, sizeof dir2, "%s/db2", dir);
    strcat(dir, "/db");
    hsadb_db_options o = { .flags = HSADB_DB_CREATE, .model = m };
    CHECK(hsadb_db_open(dir, &o, &db) == 0, "open db");
    CHECK(hsadb_memory_create(db, "notes") == 0, "create memory");

    /* a store that never had metadata */
    CHECK(appended(db, "notes", "first append, no metadata. ", NULL, 0, &id) == 0 && id == 1, "append 1");
    CHECK(hsadb_append_meta(db, "notes", 1, &got, &n) == 0 && got == NULL && n == 0,
          "an append without metadata has none (no sub-database yet)");

    /* stored with the append, read back by its id */
    const hsadb_meta_pair p[] = { { "source", "chat" }, { "session", "s-42" }, { "role", "user" },
                                  { "tags", "" } };
    CHECK(appended(db, "notes", "The user is allergic to peanuts. ", p, 4, &id) == 0 && id == 2, "append 2 with 4 pairs");
    CHECK(hsadb_append_meta(db, "notes", 2, &got, &n) == 0 && n == 4, "4 pairs back (n=%zu)", n);
    CHECK(got && strcmp(got[0].key, "source") == 0 && strcmp(got[0].value, "chat") == 0 &&
          has_pair(got, n, "session", "s-42") && has_pair(got, n, "role", "user") &&
          has_pair(got, n, "tags", ""), "pairs in order, values exact (empty value kept)");
    hsadb_free(got);
    got = NULL;
    CHECK(hsadb_append_meta(db, "notes", 1, &got, &n) == 0 && n == 0, "append 1 still has none");
    CHECK(hsadb_append_meta(db, "notes", 3, &got, &n) == HSADB_ERR_NOTFOUND, "unknown append: NOTFOUND");
    CHECK(hsadb_append_meta(db, "notes", 0, &got, &n) == HSADB_ERR_NOTFOUND, "append 0: NOTFOUND");
    CHECK(hsadb_append_meta(db, "nosuch", 1, &got, &n) == HSADB_ERR_NOTFOUND, "unknown memory: NOTFOUND");

    /* bounds: refused, nothing stored, the append itself goes on */
    char big[HSADB_META_MAX_VALUE + 2], key[HSADB_META_MAX_KEY + 2];
    memset(big, 'v', sizeof big - 1), big[sizeof big - 1] = 0;
    memset(key, 'k', sizeof key - 1), key[sizeof key - 1] = 0;
    hsadb_meta_pair many[HSADB_META_MAX_PAIRS + 1];
    char names[HSADB_META_MAX_PAIRS + 1][8];
    for (int i = 0; i <= HSADB_META_MAX_PAIRS; i++) {
        snprintf(names[i], sizeof names[i], "k%d", i);
        many[i] = (hsadb_meta_pair){ names[i], "v" };
    }
    static char fat[5][HSADB_META_MAX_VALUE + 1];
    hsadb_meta_pair total[5];
    for (int i = 0; i < 5; i++) {
        memset(fat[i], 'x', HSADB_META_MAX_VALUE), fat[i][HSADB_META_MAX_VALUE] = 0;
        total[i] = (hsadb_meta_pair){ names[i], fat[i] };
    }
    struct { const hsadb_meta_pair *p; size_t n; const char *what; } bad[] = {
        { (hsadb_meta_pair[]){ { "source", big } }, 1, "value over 1024 bytes" },
        { (hsadb_meta_pair[]){ { key, "v" } }, 1, "key over 64 bytes" },
        { (hsadb_meta_pair[]){ { "", "v" } }, 1, "empty key" },
        { (hsadb_meta_pair[]){ { "a b", "v" } }, 1, "key with a space" },
        { (hsadb_meta_pair[]){ { "a", "1" }, { "a", "2" } }, 2, "duplicate key" },
        { many, HSADB_META_MAX_PAIRS + 1, "17 pairs" },
        { total, 5, "over 4096 bytes in total" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        hsadb_appender *a;
        CHECK(hsadb_appender_open(db, "notes", &a) == 0, "open appender");
        int rc = hsadb_appender_set_meta(a, bad[i].p, bad[i].n);
        CHECK(rc == HSADB_ERR_INVALID && hsadb_last_error()[0], "%s: INVALID (%s)", bad[i].what,
              hsadb_last_error());
        hsadb_append_result r;
        CHECK(hsadb_appender_write(a, "x", 1) == 0 && hsadb_appender_commit(a, &r) == 0,
              "the append goes on");
        CHECK(hsadb_append_meta(db, "notes", r.append_id, &got, &n) == 0 && n == 0,
              "... with no metadata");
    }

    /* an append that never committed leaves nothing attached to the next one */
    hsadb_memory_info st;
    hsadb_memory_stat(db, "notes", &st);
    uint64_t next = st.n_appends + 1;
    hsadb_appender *a;
    CHECK(hsadb_appender_open(db, "notes", &a) == 0 &&
          hsadb_appender_set_meta(a, p, 2) == 0, "set metadata, then abort before any commit");
    hsadb_appender_abort(a);
    CHECK(stored_records(dir, memory_id(dir, "notes")) == 2, "its record is on disk (2 = append 2 + it)");
    CHECK(hsadb_append_meta(db, "notes", next, &got, &n) == HSADB_ERR_NOTFOUND, "not readable: the append does not exist");
    CHECK(appended(db, "notes", "next append. ", NULL, 0, &id) == 0 && id == next, "the next append gets the same id");
    CHECK(hsadb_append_meta(db, "notes", next, &got, &n) == 0 && n == 0, "... and none of the aborted metadata");
    CHECK(stored_records(dir, memory_id(dir, "notes")) == 1, "the stale record is gone");

    /* replace and remove */
    CHECK(hsadb_appender_open(db, "notes", &a) == 0, "open");
    CHECK(hsadb_appender_set_meta(a, p, 1) == 0 && hsadb_appender_set_meta(a, p + 2, 1) == 0, "set twice");
    hsadb_append_result r;
    CHECK(hsadb_appender_write(a, "y", 1) == 0 && hsadb_appender_commit(a, &r) == 0, "commit");
    CHECK(hsadb_append_meta(db, "notes", r.append_id, &got, &n) == 0 && n == 1 &&
          strcmp(got[0].key, "role") == 0, "the second call replaced the first");
    hsadb_free(got);
    got = NULL;

    /* snapshot of one memory keeps the metadata; restore too */
    CHECK(hsadb_snapshot(db, "notes", snap) == 0, "snapshot the memory");
    CHECK(hsadb_restore(snap, dir2, m) == 0, "restore it");
    hsadb_db *db2 = NULL;
    hsadb_db_options ro = { .flags = HSADB_DB_RDONLY, .model = m };
    CHECK(hsadb_db_open(dir2, &ro, &db2) == 0, "open the restored copy read-only");
    CHECK(hsadb_append_meta(db2, "notes", 2, &got, &n) == 0 && n == 4 && has_pair(got, n, "session", "s-42"),
          "the copy has append 2's metadata");
    hsadb_free(got);
    got = NULL;
    hsadb_db_close(db2);

    /* delete removes every record of the memory */
    uint32_t mid = memory_id(dir, "notes");
    CHECK(stored_records(dir, mid) == 2, "2 records before delete");
    CHECK(hsadb_memory_delete(db, "notes") == 0, "delete the memory");
    CHECK(stored_records(dir, mid) == 0, "0 records after delete");
    CHECK(hsadb_memory_create(db, "notes") == 0 && appended(db, "notes", "again", NULL, 0, &id) == 0 &&
          hsadb_append_meta(db, "notes", 1, &got, &n) == 0 && n == 0,
          "a new memory of the same name has none");

    hsadb_db_close(db);
    hsadb_model_close(m);
    *strrchr(dir, '/') = 0;
    tu_rmrf(dir);
    return tu_summary();
}
