/*
 * bench/bench_model_open.c — how long hsadb_model_open takes (read, validate, convert to fp32,
 * hash the weights for the fingerprint), through the public API only.
 *
 *   bench_model_open MODEL_DIR [RUNS]
 *
 * Opens and closes the model RUNS times (default 20) after one warm-up open (so the files
 * are in the page cache) and prints the minimum and the median wall time in milliseconds.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "hsadb.h"

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench_model_open MODEL_DIR [RUNS]\n");
        return 2;
    }
    int runs = argc > 2 ? atoi(argv[2]) : 20;
    if (runs < 1 || runs > 10000) {
        fprintf(stderr, "bench_model_open: RUNS must be 1..10000\n");
        return 2;
    }
    double *t = malloc((size_t)runs * sizeof *t);
    hsadb_model *m = NULL;
    int rc = hsadb_model_open(argv[1], &m);   /* warm-up: page cache */
    if (rc || !t) {
        fprintf(stderr, "bench_model_open: %s: %s\n", hsadb_strerror(rc), hsadb_last_error());
        free(t);
        return 1;
    }
    hsadb_model_close(m);
    for (int i = 0; i < runs; i++) {
        double t0 = now_ms();
        if ((rc = hsadb_model_open(argv[1], &m))) {
            fprintf(stderr, "bench_model_open: %s: %s\n", hsadb_strerror(rc), hsadb_last_error());
            free(t);
            return 1;
        }
        t[i] = now_ms() - t0;
        hsadb_model_close(m);
    }
    qsort(t, (size_t)runs, sizeof *t, cmp_double);
    printf("model open %s: min %.1f ms, median %.1f ms over %d runs\n", argv[1], t[0], t[runs / 2], runs);
    free(t);
    return 0;
}
