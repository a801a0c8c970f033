/*
 * bench/bench_cpu.c — CPU engine benchmark: append throughput and query latency.
 *
 *   bench_cpu MODEL_DIR [--sizes 65536,1048576] [--dir /tmp/x] [--threads N]
 *
 * --threads N caps the forward pass's threads (hsadb_threads_set) and OpenBLAS's for the
 * ceiling; default: every usable CPU.
 *
 * Prints one table, all figures measured in this run:
 *   - the machine's sgemm rate on the append's own shapes, and what it allows: tokens/s =
 *     rate / (append FLOPs per token, counted from the config). Two rates are measured, and
 *     the ceiling is the higher: OpenBLAS's own threads on the whole product, and the way the
 *     forward pass runs it (util/pool.h: each thread one single-threaded call on its rows);
 *   - append throughput at each size (durable default and --nosync mode), next to the cost of
 *     the same records through the store alone (LMDB, no model) and a raw write+fsync of the
 *     same bytes;
 *   - query latency at each size: prompt (tail context + question), per generated token, and
 *     search.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cblas.h>

#include "bench_common.h"
#include "hsadb.h"
#include "model.h"
#include "pool.h"
#include "store.h"
#include "util.h"

/* The append block's product as the forward pass runs it: rows split among the pool's
 * threads, one single-threaded OpenBLAS call each. */
typedef struct split_gemm { const float *a, *b; float *c; int M, N, K, reps, align; } split_gemm;

static void split_gemm_rows(void *arg, int i, int nt) {
    const split_gemm *g = arg;
    int lo, hi;
    hsadb_split(g->M, i, nt, g->align, &lo, &hi);
    for (int r = 0; r < g->reps && hi > lo; r++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, hi - lo, g->N, g->K, 1, g->a + (size_t)lo * g->K, g->K,
                    g->b, g->K, 0, g->c + (size_t)lo * g->N, g->N);
}

static double gemm_rate_split(int M, int N, int K, int reps, int threads) {
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    hsadb_pool *p = NULL;
    int nt = hsadb_cpu_count();
    if (threads > 0 && threads < nt) nt = threads;
    hsadb_blas_single();
    hsadb_pool_create(nt, &p);
    split_gemm g = {a, b, c, M, N, K, 1, hsadb_gemm_row_align()};
    hsadb_pool_run(p, nt, split_gemm_rows, &g);
    g.reps = reps;
    double t = hsadb_seconds();
    hsadb_pool_run(p, nt, split_gemm_rows, &g);
    t = hsadb_seconds() - t;
    hsadb_pool_free(p);
    free(a), free(b), free(c);
    return 2.0 * M * N * K * reps / t;
}

static double gemm_rate(int M, int N, int K, int reps) {
    float *a = calloc((size_t)M * K, 4), *b = calloc((size_t)N * K, 4), *c = calloc((size_t)M * N, 4);
    for (size_t i = 0; i < (size_t)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (size_t i = 0; i < (size_t)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
    double t = hsadb_seconds();
    for (int r = 0; r < reps; r++) cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1, a, K, b, K, 0, c, N);
    t = hsadb_seconds() - t;
    free(a), free(b), free(c);
    return 2.0 * M * N * K * reps / t;
}

/* FLOPs per appended token: lower layers + encoder (S+1 rows per S tokens) + projections. */
static double append_flops(const hsadb_config *c) {
    double D = c->dim, F = c->hidden, qd = c->n_heads * c->head_dim, kd = c->n_kv_heads * c->head_dim;
    double S = c->chunk, W = c->window;
    double layer_mm = 2 * (D * qd + 2 * D * kd + qd * D + 3 * D * F);
    double lower = c->n_lower * (layer_mm + 4 * qd * W);
    double enc = c->n_encoder * (layer_mm + 4 * qd * (S + 1)) * (S + 1) / S;
    double proj = 2 * D * (c->n_mem_heads * c->retr_dim) / S + 2 * 2 * D * c->n_mem_heads * c->head_dim;
    return lower + enc + proj;
}

/* Raw disk: write + fsync the same byte volume in the same number of commits. */
static double raw_disk(const char *dir, size_t bytes, int commits) {
    char path[600];
    bench_rm_rf(dir);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/raw", dir);
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    size_t per = bytes / (size_t)commits + 1;
    char *buf = calloc(1, per);
    double t = hsadb_seconds();
    for (int i = 0; i < commits; i++) {
        if (write(fd, buf, per) < 0) break;
        fsync(fd);
    }
    t = hsadb_seconds() - t;
    close(fd);
    free(buf);
    return t;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *base = "/tmp/hsadb-bench";
    long sizes[8] = {65536, 1048576};
    int nsizes = 2, threads = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *p = strtok(argv[++i], ","); p && nsizes < 8; p = strtok(NULL, ",")) sizes[nsizes++] = atol(p);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) base = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--help") || argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_cpu MODEL_DIR [--sizes 65536,1048576] [--dir DIR] [--threads N]\n");
            return 2;
        } else model_dir = argv[i];
    }
    if (!model_dir) { fprintf(stderr, "usage: bench_cpu MODEL_DIR [--sizes ...]\n"); return 2; }
    if (threads > 0) openblas_set_num_threads(threads), hsadb_threads_set(threads);
    hsadb_model *m;
    if (hsadb_model_open(model_dir, &m)) { fprintf(stderr, "model: %s\n", hsadb_last_error()); return 1; }
    const hsadb_config *c = &m->c;
    double fpt = append_flops(c);
    const int blas_threads = openblas_get_num_threads();
    double g_ob = gemm_rate(256, c->hidden, c->dim, 200);          /* OpenBLAS's threads */
    double g_big = gemm_rate(1024, 1024, 1024, 10);
    usleep(300000);   /* OpenBLAS's workers spin ~0.1 s after their last job: let them sleep */
    double g_split = gemm_rate_split(256, c->hidden, c->dim, 200, threads);   /* ours; OpenBLAS now 1 thread */
    double g_blk = g_ob > g_split ? g_ob : g_split;
    int nt = hsadb_cpu_count();
    if (threads > 0 && threads < nt) nt = threads;
    printf("# model %s: %.2fM params, D=%d F=%d H=%d dh=%d W=%d; forward on %d threads (rows cut at multiples "
           "of %d)\n", model_dir, m->n_params / 1e6, c->dim, c->hidden, c->n_heads, c->head_dim, c->window, nt,
           hsadb_gemm_row_align());
    printf("# sgemm on 256x%dx%d (append block shape): %.1f GFLOP/s OpenBLAS %d threads, %.1f GFLOP/s split "
           "by rows over %d single-threaded calls; %.1f GFLOP/s on 1024^3 (OpenBLAS)\n", c->hidden, c->dim,
           g_ob / 1e9, blas_threads, g_split / 1e9, nt, g_big / 1e9);
    printf("# append FLOPs/token (counted from config): %.2f MFLOP -> GEMM-bound ceiling %.0f tokens/s (the higher "
           "rate)\n\n", fpt / 1e6, g_blk / fpt);
    printf("| tokens | append tok/s (durable) | append tok/s (nosync) | %% of ceiling | LMDB alone s | raw disk s | "
           "query prompt ms | ms/token | search ms |\n|---|---|---|---|---|---|---|---|---|\n");
    for (int si = 0; si < nsizes; si++) {
        size_t n = (size_t)sizes[si];
        uint8_t *data = malloc(n);
        bench_fill(data, n);
        double tok_s[2] = {0};
        double qp = 0, qt = 0, qs = 0;
        char dir[512];
        for (int mode = 0; mode < 2; mode++) {
            snprintf(dir, sizeof dir, "%s-%zu-%d", base, n, mode);
            bench_rm_rf(dir);
            hsadb_db *db;
            hsadb_db_options o = {.flags = HSADB_DB_CREATE | (mode ? HSADB_DB_NOSYNC : 0), .model = m, .threads = threads};
            if (hsadb_db_open(dir, &o, &db) || hsadb_memory_create(db, "bench")) {
                fprintf(stderr, "open: %s\n", hsadb_last_error());
                return 1;
            }
            hsadb_append_result r;
            double t = hsadb_seconds();
            if (hsadb_append(db, "bench", data, n, &r)) { fprintf(stderr, "append: %s\n", hsadb_last_error()); return 1; }
            t = hsadb_seconds() - t;
            tok_s[mode] = (double)n / t;
            if (mode == 0) {           /* query and search on the durable copy */
                hsadb_query_options qo = {.max_tokens = 16};
                hsadb_answer *a;
                const char *question = "What did the user say about the key?";
                hsadb_query(db, "bench", question, strlen(question), &qo, &a);   /* warm: loads landmarks */
                hsadb_answer_free(a);
                double best_p = 1e9, best_t = 1e9;
                for (int rep = 0; rep < 3; rep++) {
                    if (hsadb_query(db, "bench", question, strlen(question), &qo, &a)) return 1;
                    if (a->prompt_seconds < best_p) best_p = a->prompt_seconds;
                    double per = a->generate_seconds / (a->n_tokens > 1 ? a->n_tokens - 1 : 1);
                    if (per < best_t) best_t = per;
                    hsadb_answer_free(a);
                }
                qp = best_p * 1e3, qt = best_t * 1e3;
                hsadb_hits *h;
                double ts = hsadb_seconds();
                hsadb_search(db, "bench", question, strlen(question), 8, &h);
                qs = (hsadb_seconds() - ts) * 1e3;
                hsadb_hits_free(h);
            }
            hsadb_db_close(db);
            bench_rm_rf(dir);
        }
        snprintf(dir, sizeof dir, "%s-store", base);
        uint64_t nch = n / (uint64_t)c->chunk;
        double st = bench_store_alone(dir, m, nch, 0, 256);
        size_t vol = nch * ((size_t)c->n_mem_heads * c->retr_dim * 2 + (size_t)4 * c->chunk * c->n_mem_heads * c->head_dim + c->chunk + 24);
        double rd = raw_disk(dir, vol, (int)(nch / 256 + 1));
        bench_rm_rf(dir);
        printf("| %zu | %.0f | %.0f | %.0f%% | %.2f | %.2f | %.1f | %.2f | %.1f |\n", n, tok_s[0], tok_s[1],
               100.0 * tok_s[1] / (g_blk / fpt), st, rd, qp, qt, qs);
        fflush(stdout);
        free(data);
    }
    hsadb_model_close(m);
    return 0;
}
