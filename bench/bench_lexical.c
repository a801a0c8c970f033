/*
 * bench/bench_lexical.c — the lexical index alone, in-process (driven by bench_lexical.py).
 *
 *   bench_lexical build DB CORPUS [--no-index]
 *       Writes CORPUS (cut to whole 64-byte chunks) into memory "bench" of a new store DB
 *       through the store's writer, in commits of 2048 chunks as the appender makes them, with
 *       a minimal geometry (Hm = dh = dr = 1: a 256-byte K/V block), so the time is the store's
 *       and the lexical index's, not the model's. NOSYNC. Prints one JSON line.
 *   bench_lexical search DB NAME QUESTIONS MODE K [MODEL_DIR|-] [PASSAGE_BYTES]
 *       Runs each line of QUESTIONS (one question per line) through hsadb_search_passages
 *       (MODE lexical|model|hybrid, 512-byte passages unless given, no context) on a db opened
 *       once (with the model when given) and prints per question: wall milliseconds TAB CPU
 *       milliseconds of the calling thread (what an idle core would take: the dev machine is
 *       shared) TAB start-end,start-end...
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hsadb.h"
#include "store.h"

static double cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static int build(const char *db, const char *corpus, int no_index) {
    FILE *f = fopen(corpus, "rb");
    if (!f) { perror(corpus); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) { fprintf(stderr, "read %s failed\n", corpus); return 1; }
    fclose(f);
    const uint64_t chunks = (uint64_t)n / 64;
    struct hsadb_memory_rec rec;
    memset(&rec, 0, sizeof rec);
    rec.chunk_size = 64, rec.mem_heads = 1, rec.head_dim = 1, rec.retrieval_dim = 1;
    hsadb_store *st;
    hsadb_store_writer *w;
    int rc = hsadb_store_open(db, HSADB_STORE_CREATE | HSADB_STORE_NOSYNC | (no_index ? HSADB_STORE_NOLEX : 0), &st);
    if (rc || (rc = hsadb_store_memory_create(st, "bench", &rec)) ||
        (rc = hsadb_store_writer_begin(st, "bench", 1700000000, &w, NULL))) {
        fprintf(stderr, "store: %s\n", hsadb_last_error());
        return 1;
    }
    uint8_t lm[2] = {0}, kv[256] = {0};
    const double t0 = now_s(), c0 = cpu_s();
    for (uint64_t c = 0; c < chunks && !rc; c++) {
        struct hsadb_chunk_meta m = { 1, c * 64, 1700000000 };
        rc = hsadb_store_writer_put_chunk(w, lm, kv, &m, text + 64 * c);
        if (!rc && (hsadb_store_writer_staged(w) == 2048 || c + 1 == chunks))
            rc = hsadb_store_writer_commit(w, NULL, 0, (c + 1) * 64, (c + 1) * 64, c + 1 == chunks);
    }
    if (!rc) rc = hsadb_store_sync(st);
    const double t1 = now_s(), c1 = cpu_s();
    hsadb_store_writer_end(w);
    hsadb_store_close(st);
    if (rc) { fprintf(stderr, "write: %s\n", hsadb_last_error()); return 1; }
    printf("{\"bytes\": %llu, \"chunks\": %llu, \"seconds\": %.3f, \"cpu_seconds\": %.3f, \"index\": %s}\n",
           (unsigned long long)(chunks * 64), (unsigned long long)chunks, t1 - t0, c1 - c0, no_index ? "false" : "true");
    free(text);
    return 0;
}

static int search(const char *dbdir, const char *name, const char *qfile, const char *mode, int k, const char *model_dir,
                  int passage) {
    hsadb_model *m = NULL;
    hsadb_db *db;
    if (model_dir && strcmp(model_dir, "-") == 0) model_dir = NULL;
    if (model_dir && hsadb_model_open(model_dir, &m)) { fprintf(stderr, "model: %s\n", hsadb_last_error()); return 1; }
    if (hsadb_db_open(dbdir, &(hsadb_db_options){ .flags = HSADB_DB_RDONLY, .model = m }, &db)) {
        fprintf(stderr, "db: %s\n", hsadb_last_error());
        return 1;
    }
    FILE *f = fopen(qfile, "r");
    if (!f) { perror(qfile); return 1; }
    hsadb_search_options o = { .k = k, .context_bytes = HSADB_SEARCH_NO_CONTEXT, .passage_bytes = passage };
    o.mode = strcmp(mode, "lexical") == 0 ? HSADB_SEARCH_LEXICAL : strcmp(mode, "model") == 0 ? HSADB_SEARCH_MODEL
                                                                                               : HSADB_SEARCH_HYBRID;
    char line[70000];
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\n");
        line[len] = 0;
        if (!len) continue;
        hsadb_passages *p = NULL;
        struct timespec c0, c1;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
        const double t0 = now_s();
        int rc = hsadb_search_passages(db, name, line, len, &o, &p);
        const double ms = (now_s() - t0) * 1e3;
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
        const double cms = (c1.tv_sec - c0.tv_sec) * 1e3 + (c1.tv_nsec - c0.tv_nsec) * 1e-6;
        if (rc) { fprintf(stderr, "search '%s': %s\n", line, hsadb_last_error()); return 1; }
        printf("%.3f\t%.3f\t", ms, cms);
        for (size_t i = 0; i < p->n; i++)
            printf("%s%llu-%llu", i ? "," : "", (unsigned long long)p->hits[i].start, (unsigned long long)p->hits[i].end);
        printf("\n");
        hsadb_passages_free(p);
    }
    fclose(f);
    hsadb_db_close(db);
    hsadb_model_close(m);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 4 && strcmp(argv[1], "build") == 0)
        return build(argv[2], argv[3], argc > 4 && strcmp(argv[4], "--no-index") == 0);
    if (argc >= 7 && strcmp(argv[1], "search") == 0)
        return search(argv[2], argv[3], argv[4], argv[5], atoi(argv[6]), argc > 7 ? argv[7] : NULL,
                      argc > 8 ? atoi(argv[8]) : 0);
    fprintf(stderr, "usage: bench_lexical build DB CORPUS [--no-index]\n"
                    "       bench_lexical search DB NAME QUESTIONS lexical|model|hybrid K [MODEL_DIR|-] [PASSAGE_BYTES]\n");
    return 2;
}
