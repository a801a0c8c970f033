/*
 * bench/bench_tokenizer.c — throughput of the byte-level BPE encoder (tokenizer/bpe.h).
 *
 *   bench_tokenizer TOKENIZER.json CORPUS [THREADS] [DOC_BYTES]
 *
 * Splits CORPUS into documents of about DOC_BYTES (default 16384, cut after a newline), encodes
 * them with THREADS threads (default 1; one handle each, opened before the timing and kept, so
 * the word caches are warm after the first pass as the reference's are; documents dealt
 * round-robin), three
 * times, and prints the best MB/s (MB = 10^6 bytes) of wall time and of CPU time (user + system,
 * all threads: the figure that the machine's other load does not change), the token count and an
 * FNV-1a hash of all
 * ids in document order — tests/tokenizer/bench_reference.mjs prints the same for the reference.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "bpe.h"
#include "hsadb.h"

struct doc { size_t off, len, n_ids; uint64_t hash; };

struct job {
    hsadb_tokenizer *tok;   /* the thread's own handle, opened before the timing */
    const uint8_t   *text;
    struct doc      *docs;
    size_t           n_docs, first, stride;
    int              rc;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double cpu_seconds(void) {   /* user + system time of the whole process */
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

static void *work(void *arg) {
    struct job      *j = arg;
    hsadb_tokenizer *tok = j->tok;
    size_t           cap = 1 << 16;
    uint32_t        *ids = malloc(cap * sizeof *ids);
    if (!ids) { j->rc = ENOMEM; goto done; }
    for (size_t d = j->first; d < j->n_docs; d += j->stride) {
        struct doc *doc = &j->docs[d];
        size_t      n = 0;
        int         rc = hsadb_tokenizer_encode(tok, j->text + doc->off, doc->len, ids, cap, &n);
        if (rc == ERANGE) {
            cap = n;
            free(ids);
            ids = malloc(cap * sizeof *ids);
            if (!ids) { j->rc = ENOMEM; goto done; }
            rc = hsadb_tokenizer_encode(tok, j->text + doc->off, doc->len, ids, cap, &n);
        }
        if (rc) { j->rc = rc; goto done; }
        uint64_t h = 0xcbf29ce484222325ull;
        for (size_t i = 0; i < n; i++) h = (h ^ ids[i]) * 0x100000001b3ull;
        doc->n_ids = n, doc->hash = h;
    }
done:
    free(ids);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER.json CORPUS [THREADS] [DOC_BYTES]\n", argv[0]);
        return 2;
    }
    int    threads = argc > 3 ? atoi(argv[3]) : 1;
    size_t doc_bytes = argc > 4 ? (size_t)atol(argv[4]) : 16384;
    if (threads < 1 || threads > 64 || doc_bytes < 1) return fprintf(stderr, "bad THREADS or DOC_BYTES\n"), 2;
    FILE *f = fopen(argv[2], "rb");
    if (!f) return fprintf(stderr, "%s: %s\n", argv[2], strerror(errno)), 1;
    fseek(f, 0, SEEK_END);
    size_t size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *text = malloc(size + 1);
    if (!text || fread(text, 1, size, f) != size) return fprintf(stderr, "cannot read %s\n", argv[2]), 1;
    fclose(f);
    size_t      n_docs = 0, cap_docs = size / doc_bytes + 2;
    struct doc *docs = calloc(cap_docs, sizeof *docs);
    for (size_t off = 0; off < size;) {   /* documents end after the first newline past doc_bytes */
        size_t end = off + doc_bytes < size ? off + doc_bytes : size;
        while (end < size && text[end - 1] != '\n') end++;
        if (n_docs == cap_docs) docs = realloc(docs, (cap_docs *= 2) * sizeof *docs);
        docs[n_docs++] = (struct doc){off, end - off, 0, 0};
        off = end;
    }
    hsadb_tokenizer *toks[64];
    double           t_open = now();
    for (int k = 0; k < threads; k++) {
        int rc = hsadb_tokenizer_open(argv[1], &toks[k]);
        if (rc) return fprintf(stderr, "%s: %s\n", hsadb_strerror(rc), hsadb_last_error()), 1;
    }
    t_open = (now() - t_open) / threads;
    double best = 1e30, best_cpu = 1e30;
    for (int rep = 0; rep < 3; rep++) {   /* the word caches stay warm across repetitions */
        double c0 = cpu_seconds();
        pthread_t  th[64];
        struct job jobs[64];
        double     t0 = now();
        for (int k = 0; k < threads; k++) {
            jobs[k] = (struct job){toks[k], text, docs, n_docs, (size_t)k, (size_t)threads, 0};
            pthread_create(&th[k], NULL, work, &jobs[k]);
        }
        for (int k = 0; k < threads; k++) pthread_join(th[k], NULL);
        double dt = now() - t0, dc = cpu_seconds() - c0;
        if (dc < best_cpu) best_cpu = dc;
        for (int k = 0; k < threads; k++)
            if (jobs[k].rc) return fprintf(stderr, "encode: %s (%s)\n", hsadb_strerror(jobs[k].rc), hsadb_last_error()), 1;
        if (dt < best) best = dt;
    }
    size_t   n_ids = 0;
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t d = 0; d < n_docs; d++) n_ids += docs[d].n_ids, h = (h ^ docs[d].hash) * 0x100000001b3ull;
    printf("hsadb C: %zu bytes, %zu documents, %d thread(s): %.1f MB/s (best of 3, %.3f s), %.1f MB per CPU "
           "second, %zu ids, %.2f bytes/id, hash %016llx; open %.3f s\n",
           size, n_docs, threads, (double)size / best / 1e6, best, (double)size / best_cpu / 1e6, n_ids,
           (double)size / (double)n_ids, (unsigned long long)h, t_open);
    for (int k = 0; k < threads; k++) hsadb_tokenizer_close(toks[k]);
    free(docs);
    free(text);
    return 0;
}
