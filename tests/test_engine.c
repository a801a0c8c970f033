/*
 * tests/test_engine.c — the embedded library through include/hsadb.h, on a real LMDB
 * directory, with the tiny random-weight model (answers are noise; mechanisms are exact).
 *
 *   - appending in uneven pieces stores the same records as one append (f32 memories);
 *   - read-back returns exactly the appended bytes;
 *   - queries on the two memories give the same answer; evidence and search hits carry
 *     correct provenance and text;
 *   - wrong model, unknown memory, duplicate, bad names, busy appender get clear errors;
 *   - a query runs while another thread appends.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

#include "st_file.h"
#include "hsadb.h"
#include "store.h"

static char dir[256];

static void fill(uint8_t *b, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        b[i] = (uint8_t)("abcdefghij klmnop.\n0123456789"[(seed >> 16) % 30]);
    }
}

typedef struct bg { hsadb_db *db; int rc; } bg;

/* Two queries on one memory at once: A stops inside its first on_piece (holding its read
 * view) until B, started meanwhile, has finished. If queries serialised on the memory, B
 * would wait for A forever: the alarm turns that into a failure. */
static pthread_mutex_t pc_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t pc_cv = PTHREAD_COND_INITIALIZER;
static int a_inside, b_done;

static int a_piece(void *ctx, const char *bytes, size_t n) {
    (void)ctx, (void)bytes, (void)n;
    pthread_mutex_lock(&pc_mu);
    a_inside = 1;
    pthread_cond_broadcast(&pc_cv);
    while (!b_done) pthread_cond_wait(&pc_cv, &pc_mu);
    pthread_mutex_unlock(&pc_mu);
    return 1;                               /* stop A here */
}

static void *query_a(void *p) {
    bg *b = p;
    hsadb_query_options o = {.max_tokens = 8, .on_piece = a_piece};
    hsadb_answer *ans = NULL;
    b->rc = hsadb_query(b->db, "pieces", "first?", 6, &o, &ans);
    hsadb_answer_free(ans);
    return NULL;
}

static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL a second query on the same memory waited for the first (deadlock)\n";
    if (write(1, msg, sizeof msg - 1)) {}
    _exit(1);
}

static void *bg_append(void *p) {
    bg *b = p;
    uint8_t *buf = malloc(20000);
    fill(buf, 20000, 99);
    b->rc = hsadb_append(b->db, "busy", buf, 20000, NULL);
    free(buf);
    return NULL;
}

int main(void) {
    hsadb_model *m, *other;
    hsadb_db *db;
    if (!tu_tmpdir(dir, sizeof dir, "test-engine")) return 1;
    CHECK(hsadb_model_open("tests/data/tiny", &m) == 0, "load tiny model");
    CHECK(hsadb_model_open("tests/data/tiny-bypass", &other) == 0, "load second model");
    hsadb_db_options o = {.flags = HSADB_DB_CREATE, .model = m, .threads = 2, .kv_dtype = HSADB_KV_DTYPE_F32};
    CHECK(hsadb_db_open(dir, &(hsadb_db_options){.kv_dtype = 7}, &db) == HSADB_ERR_INVALID && db == NULL,
          "kv_dtype 7 -> INVALID: %s", hsadb_last_error());
    int rc = hsadb_db_open(dir, &o, &db);
    CHECK(rc == 0, "open db %s (%s)", dir, hsadb_last_error());
    if (rc) return tu_summary();

    CHECK(hsadb_memory_create(db, "pieces") == 0, "create pieces");
    CHECK(hsadb_memory_create(db, "one") == 0, "create one");
    hsadb_memory_info one;
    CHECK(hsadb_memory_stat(db, "one", &one) == 0 && one.kv_dtype == HSADB_KV_DTYPE_F32,
          "kv_dtype option: memory created with f32 K/V (%d)", one.kv_dtype);
    CHECK(hsadb_memory_create(db, "one") == HSADB_ERR_EXISTS, "duplicate -> EXISTS");
    CHECK(hsadb_memory_create(db, "bad name!") == HSADB_ERR_INVALID, "bad name -> INVALID");
    CHECK(hsadb_memory_create(db, "") == HSADB_ERR_INVALID, "empty name -> INVALID");

    const size_t N = 3000;
    uint8_t *data = malloc(N), *back = malloc(N + 10);
    fill(data, N, 7);
    static const size_t pieces[] = {1, 62, 1, 700, 64, 1000, 3, 1169};
    size_t off = 0;
    hsadb_append_result res;
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0]; i++) {
        rc = hsadb_append(db, "pieces", data + off, pieces[i], &res);
        off += pieces[i];
        if (rc) break;
    }
    CHECK(rc == 0 && off == N, "append %zu bytes in 8 uneven pieces (%s)", off, hsadb_last_error());
    CHECK(res.total_bytes == N && res.total_chunks == N / 64, "counts: %llu bytes, %llu chunks",
          (unsigned long long)res.total_bytes, (unsigned long long)res.total_chunks);
    hsadb_appender *ap;
    CHECK(hsadb_appender_open(db, "one", &ap) == 0, "open appender");
    CHECK(hsadb_appender_open(db, "one", &(hsadb_appender *){0}) == HSADB_ERR_BUSY, "second appender -> BUSY");
    CHECK(hsadb_appender_write(ap, data, N) == 0 && hsadb_appender_commit(ap, &res) == 0, "one-shot append");
    CHECK(res.append_id == 1 && res.bytes == N, "append id %llu, %llu bytes", (unsigned long long)res.append_id,
          (unsigned long long)res.bytes);

    size_t got;
    CHECK(hsadb_memory_read(db, "pieces", 0, back, N + 10, &got) == 0 && got == N && !memcmp(back, data, N),
          "read-back of pieces equals input (%zu bytes)", got);
    CHECK(hsadb_memory_read(db, "one", 2990, back, 100, &got) == 0 && got == 10 && !memcmp(back, data + 2990, 10),
          "read-back of the partial chunk");

    /* Same records whichever way the bytes came. */
    hsadb_store *st;
    hsadb_db_close(db);
    CHECK(hsadb_store_open(dir, 0, &st) == 0, "open store directly");
    hsadb_store_reader *ra, *rb;
    struct hsadb_memory_rec reca, recb;
    hsadb_store_reader_begin(st, "pieces", &ra, &reca);
    hsadb_store_reader_begin(st, "one", &rb, &recb);
    double maxe = 0;
    for (uint64_t ch = 0; ch < reca.n_chunks; ch++) {
        const void *ka, *kb;
        size_t la, lb;
        hsadb_store_reader_kv(ra, ch, &ka, &la);
        hsadb_store_reader_kv(rb, ch, &kb, &lb);
        for (size_t i = 0; i < la / 4; i++) {
            float x, y;
            memcpy(&x, (const char *)ka + 4 * i, 4);
            memcpy(&y, (const char *)kb + 4 * i, 4);
            if (fabs(x - y) > maxe) maxe = fabs(x - y);
        }
    }
    CHECK(reca.n_chunks == recb.n_chunks && maxe < 1e-4, "K/V records equal across append splits (max diff %.1e)", maxe);
    hsadb_store_reader_end(ra);
    hsadb_store_reader_end(rb);
    hsadb_store_close(st);
    CHECK(hsadb_db_open(dir, &o, &db) == 0, "reopen db");

    hsadb_query_options qo = {.max_tokens = 24, .evidence_k = 4};
    hsadb_answer *a1 = NULL, *a2 = NULL;
    rc = hsadb_query(db, "pieces", "what was said?", 14, &qo, &a1);
    CHECK(rc == 0, "query pieces (%s)", hsadb_last_error());
    rc = hsadb_query(db, "one", "what was said?", 14, &qo, &a2);
    CHECK(rc == 0, "query one");
    if (a1 && a2) {
        CHECK(a1->len == a2->len && !memcmp(a1->text, a2->text, a1->len), "same answer from both memories (%zu bytes)", a1->len);
        CHECK(a1->n_layers == 2 && a1->layers[0].n > 0, "evidence for %zu layers", a1->n_layers);
        int prov = 1;
        float wsum = 0;
        for (size_t l = 0; l < a1->n_layers; l++)
            for (size_t j = 0; j < a1->layers[l].n; j++) {
                const hsadb_chunk_ref *r = &a1->layers[l].chunks[j];
                if (l == 0) wsum += r->score;
                if (r->persisted && (r->byte_offset != r->chunk * 64 || memcmp(r->text, data + r->byte_offset, 64) ||
                                     r->append_id < 1 || r->append_id > 8 || r->time <= 0))
                    prov = 0;
            }
        CHECK(prov, "evidence chunks carry their text and provenance");
        CHECK(wsum > 0 && wsum <= 1.0001f, "evidence weights of layer 0 sum to %.3f (<= 1)", wsum);
    }
    hsadb_answer_free(a1);
    hsadb_answer_free(a2);

    hsadb_hits *h = NULL;
    rc = hsadb_search(db, "pieces", "digits", 6, 5, &h);
    CHECK(rc == 0 && h && h->n == 5, "search returns 5 hits");
    if (h) {
        int sorted = 1;
        for (size_t i = 1; i < h->n; i++) sorted &= h->hits[i - 1].score >= h->hits[i].score;
        CHECK(sorted && h->hits[0].score > 0 && h->hits[0].score <= 1, "hits sorted, top score %.3f", h->hits[0].score);
        CHECK(!memcmp(h->hits[0].text, data + h->hits[0].byte_offset, 64), "hit text matches stored bytes");
    }
    hsadb_hits_free(h);

    hsadb_memory_info info;
    CHECK(hsadb_memory_stat(db, "pieces", &info) == 0 && info.n_appends == 8 && info.n_bytes == N, "stat: %llu appends",
          (unsigned long long)info.n_appends);
    CHECK(hsadb_memory_stat(db, "nope", &info) == HSADB_ERR_NOTFOUND, "unknown memory -> NOTFOUND");
    CHECK(hsadb_query(db, "nope", "x", 1, NULL, &a1) == HSADB_ERR_NOTFOUND, "query unknown -> NOTFOUND");
    hsadb_memory_info *list;
    size_t n;
    CHECK(hsadb_memory_list(db, &list, &n) == 0 && n == 2 && !strcmp(list[0].name, "one"), "list: %zu memories", n);
    hsadb_free(list);

    /* Two queries on one memory overlap. */
    {
        bg a = {db, -1};
        pthread_t ta;
        signal(SIGALRM, on_alarm);
        alarm(60);
        pthread_create(&ta, NULL, query_a, &a);
        pthread_mutex_lock(&pc_mu);
        while (!a_inside) pthread_cond_wait(&pc_cv, &pc_mu);
        pthread_mutex_unlock(&pc_mu);
        hsadb_query_options qb = {.max_tokens = 4};
        hsadb_answer *ab = NULL;
        int rb = hsadb_query(db, "pieces", "second?", 7, &qb, &ab);
        hsadb_answer_free(ab);
        pthread_mutex_lock(&pc_mu);
        b_done = 1;
        pthread_cond_broadcast(&pc_cv);
        pthread_mutex_unlock(&pc_mu);
        pthread_join(ta, NULL);
        alarm(0);
        CHECK(rb == 0 && a.rc == 0, "a query completes while another on the same memory is mid-generation (%d, %d)", rb, a.rc);
    }

    /* Query while another thread appends. */
    hsadb_memory_create(db, "busy");
    hsadb_append(db, "busy", data, 500, NULL);
    bg b = {db, -1};
    pthread_t th;
    pthread_create(&th, NULL, bg_append, &b);
    rc = hsadb_query(db, "busy", "q", 1, &qo, &a1);
    pthread_join(th, NULL);
    CHECK(rc == 0 && b.rc == 0, "query during a concurrent append (%d, %d)", rc, b.rc);
    if (!rc) hsadb_answer_free(a1);

    /* Wrong model. */
    hsadb_db *db2;
    hsadb_db_close(db);
    hsadb_db_options o2 = {.model = other};
    CHECK(hsadb_db_open(dir, &o2, &db2) == 0, "open with another model");
    CHECK(hsadb_query(db2, "one", "x", 1, NULL, &a1) == HSADB_ERR_MODEL_MISMATCH, "query -> MODEL_MISMATCH (%s)", hsadb_last_error());
    CHECK(hsadb_append(db2, "one", "x", 1, NULL) == HSADB_ERR_MODEL_MISMATCH, "append -> MODEL_MISMATCH");
    CHECK(hsadb_memory_delete(db2, "one") == 0 && hsadb_memory_stat(db2, "one", &info) == HSADB_ERR_NOTFOUND, "delete");
    hsadb_db_close(db2);

    tu_rmrf(dir);
    free(data), free(back);
    hsadb_model_close(m);
    hsadb_model_close(other);
    return tu_summary();
}
