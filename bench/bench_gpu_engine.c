/*
 * bench/bench_gpu_engine.c — the engine end to end on a device: append throughput including
 * the store writes, and query latency over large memories.
 *
 *   bench_gpu_engine MODEL_DIR [--sizes 1048576,16777216] [--dir /tmp/x] [--device cuda|cpu]
 *                    [--tokens 32]
 *
 * One table row per memory size, every figure measured in this run through the public API
 * (hsadb.h) exactly as the CLI and the server use it, after a warm-up append (device start-up):
 *   - append tokens/s, durable (default) and --nosync, the input written in 1 MiB pieces;
 *   - the same records through the store alone (LMDB, no model, the append's commit cadence):
 *     the floor under the append, also with the format-1 K/V layout (5 pages per 16 KiB block
 *     instead of 4, docs/storage.md); and their bytes through the disk alone (pwrite + fdatasync);
 *   - the first query on the memory (its landmarks and K/V go into the GPU memory tier), then
 *     the best of 3: prompt ms (tail context + question), ms per generated token, search ms;
 *   - the same queries through the block cache (a memory larger than the device): the K/V
 *     slots limited to --cache-frac of the chunks (option gpu_kv_chunks; default 1/8, 0 = off),
 *     so that selected blocks are fetched from the store; a second table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_common.h"

/* First query (cold: loads the tier), then the best of 3 prompt ms and ms per token. */
static int query_times(hsadb_db *db, int max_tokens, double *cold, double *qp, double *qt, int *ntok) {
    hsadb_query_options qo = {.max_tokens = max_tokens};
    hsadb_answer *a;
    const char *question = "What did the user say about the key?";
    double t = hsadb_seconds();
    int rc = hsadb_query(db, "bench", question, strlen(question), &qo, &a);
    if (rc) return rc;
    *cold = hsadb_seconds() - t;
    hsadb_answer_free(a);
    *qp = *qt = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        if ((rc = hsadb_query(db, "bench", question, strlen(question), &qo, &a))) return rc;
        if (a->prompt_seconds * 1e3 < *qp) *qp = a->prompt_seconds * 1e3;
        double per = a->generate_seconds / (a->n_tokens > 1 ? a->n_tokens - 1 : 1) * 1e3;
        if (per < *qt) *qt = per;
        *ntok = (int)a->n_tokens;
        hsadb_answer_free(a);
    }
    return 0;
}

static int append_all(hsadb_db *db, const uint8_t *data, size_t n, double *sec) {
    hsadb_appender *a;
    int rc = hsadb_appender_open(db, "bench", &a);
    if (rc) return rc;
    double t = hsadb_seconds();
    for (size_t off = 0; off < n && !rc; off += 1 << 20)
        rc = hsadb_appender_write(a, data + off, n - off < (1u << 20) ? n - off : 1u << 20);
    if (rc) {
        hsadb_appender_abort(a);
        return rc;
    }
    rc = hsadb_appender_commit(a, NULL);
    *sec = hsadb_seconds() - t;
    return rc;
}

/* The GEMM precision and window attention from the variables the CLI reads (docs/gpu-engine.md):
 * HSADB_CUDA_GEMM=bf16|tf32|fp32, HSADB_CUDA_ATTN=tile, HSADB_CUDA_GRAPHS=0. */
static int gpu_env(hsadb_db_options *o) {
    const char *g = getenv("HSADB_CUDA_GEMM"), *a = getenv("HSADB_CUDA_ATTN"), *gr = getenv("HSADB_CUDA_GRAPHS");
    if (g && *g) {
        if (!strcmp(g, "tf32")) o->gpu_gemm = HSADB_GPU_GEMM_TF32;
        else if (!strcmp(g, "fp32")) o->gpu_gemm = HSADB_GPU_GEMM_FP32;
        else if (strcmp(g, "bf16")) { fprintf(stderr, "HSADB_CUDA_GEMM='%s': bf16, tf32 or fp32\n", g); return 2; }
    }
    if (a && !strcmp(a, "tile")) o->gpu_flags |= HSADB_GPU_TILE_ATTENTION;
    if (gr && !strcmp(gr, "0")) o->gpu_flags |= HSADB_GPU_NO_GRAPHS;
    return 0;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL, *base = "/tmp/hsadb-gbench";
    long sizes[8] = {1048576, 16777216};
    int nsizes = 2, device = HSADB_DEVICE_CUDA, max_tokens = 32;
    double cache_frac = 0.125;
    char cache_rows[8][256] = {{0}};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *p = strtok(argv[++i], ","); p && nsizes < 8; p = strtok(NULL, ",")) sizes[nsizes++] = atol(p);
        } else if (!strcmp(argv[i], "--dir") && i + 1 < argc) base = argv[++i];
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) {
            ++i;
            device = !strcmp(argv[i], "cpu") ? HSADB_DEVICE_CPU : HSADB_DEVICE_CUDA;
        } else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) max_tokens = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--cache-frac") && i + 1 < argc) cache_frac = atof(argv[++i]);
        else if (argv[i][0] == '-') {
            fprintf(stderr, "usage: bench_gpu_engine MODEL_DIR [--sizes 1048576,16777216] [--dir DIR] "
                            "[--device cuda|cpu] [--tokens N] [--cache-frac F]\n");
            return 2;
        } else model_dir = argv[i];
    }
    if (!model_dir) { fprintf(stderr, "usage: bench_gpu_engine MODEL_DIR [options] (--help)\n"); return 2; }
    hsadb_db_options gpu = {0};
    if (gpu_env(&gpu)) return 2;
    hsadb_model *m;
    if (hsadb_model_open(model_dir, &m)) { fprintf(stderr, "model: %s\n", hsadb_last_error()); return 1; }
    const hsadb_config *c = &m->c;
    printf("# model %s: %.2fM params; device %s\n\n", model_dir, m->n_params / 1e6,
           device == HSADB_DEVICE_CUDA ? "cuda" : "cpu");
    {
        /* warm-up: the device context, cuBLAS and the weights on the device are made once per
         * process (a server pays them at start); keep them out of the first timed append */
        char dir[512];
        snprintf(dir, sizeof dir, "%s-warmup", base);
        bench_rm_rf(dir);
        hsadb_db *db;
        hsadb_db_options o = gpu;
        o.flags = HSADB_DB_CREATE | HSADB_DB_NOSYNC, o.model = m, o.device = device;
        const size_t n = 65536;
        uint8_t *data = malloc(n);
        double sec;
        bench_fill(data, n);
        if (hsadb_db_open(dir, &o, &db) || hsadb_memory_create(db, "bench") || append_all(db, data, n, &sec)) {
            fprintf(stderr, "warm-up: %s\n", hsadb_last_error());
            return 1;
        }
        printf("# warm-up append of %zu tokens (device start-up included): %.3f s\n\n", n, sec);
        hsadb_db_close(db);
        bench_rm_rf(dir);
        free(data);
    }
    printf("# store alone: the same records through LMDB, committed every 2,048 chunks (f1: a format-1 store, the\n"
           "# K/V layout before the spill); disk alone: their bytes\n"
           "# written to a file, pwrite + fdatasync per 2,048 chunks; GEMMs: %s\n\n",
           getenv("HSADB_CUDA_GEMM") ? getenv("HSADB_CUDA_GEMM") : "default (bf16)");
    printf("| tokens | append tok/s (durable) | append tok/s (nosync) | store alone tok/s (durable / nosync) | "
           "store alone f1 tok/s (durable) | disk alone tok/s | first query s | prompt ms | ms/token | tokens | search ms |\n"
           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int si = 0; si < nsizes; si++) {
        const size_t n = (size_t)sizes[si];
        uint8_t *data = malloc(n);
        bench_fill(data, n);
        double tok_s[2] = {0}, cold = 0, qp = 1e9, qt = 1e9, qs = 0;
        int ntok = 0;
        char dir[512];
        for (int mode = 0; mode < 2; mode++) {
            snprintf(dir, sizeof dir, "%s-%zu-%d", base, n, mode);
            bench_rm_rf(dir);
            hsadb_db *db;
            hsadb_db_options o = gpu;
            o.flags = HSADB_DB_CREATE | (mode ? HSADB_DB_NOSYNC : 0), o.model = m, o.device = device;
            double sec;
            if (hsadb_db_open(dir, &o, &db) || hsadb_memory_create(db, "bench") || append_all(db, data, n, &sec)) {
                fprintf(stderr, "append: %s\n", hsadb_last_error());
                return 1;
            }
            tok_s[mode] = (double)n / sec;
            if (mode == 0) {
                /* a fresh handle, as a new process would query it */
                hsadb_db_close(db);
                o.flags = 0;
                if (hsadb_db_open(dir, &o, &db)) { fprintf(stderr, "open: %s\n", hsadb_last_error()); return 1; }
                if (query_times(db, max_tokens, &cold, &qp, &qt, &ntok)) {
                    fprintf(stderr, "query: %s\n", hsadb_last_error());
                    return 1;
                }
                const char *question = "What did the user say about the key?";
                hsadb_hits *h;
                double t = hsadb_seconds();
                if (hsadb_search(db, "bench", question, strlen(question), 8, &h) == 0) hsadb_hits_free(h);
                qs = (hsadb_seconds() - t) * 1e3;
                if (cache_frac > 0 && device == HSADB_DEVICE_CUDA) {
                    /* again through a block cache of cache_frac of the chunks */
                    const long slots = (long)(cache_frac * (double)(n / (size_t)c->chunk));
                    double cc, cp, ct;
                    int cn = 0;
                    hsadb_db_close(db);
                    o.gpu_kv_chunks = slots;
                    int crc = hsadb_db_open(dir, &o, &db);
                    if (!crc) crc = query_times(db, max_tokens, &cc, &cp, &ct, &cn);
                    o.gpu_kv_chunks = 0;
                    if (crc) { fprintf(stderr, "query (cache): %s\n", hsadb_last_error()); return 1; }
                    snprintf(cache_rows[si], sizeof cache_rows[si], "| %zu | %ld of %zu | %.2f | %.1f | %.3f | %d |", n,
                             slots, n / (size_t)c->chunk, cc, cp, ct, cn);
                }
            }
            hsadb_db_close(db);
            bench_rm_rf(dir);
        }
        snprintf(dir, sizeof dir, "%s-store", base);
        const uint64_t nch = n / (uint64_t)c->chunk;
        /* the append's cadence: a commit per 2,048 chunks (engine/append.c COMMIT_CHUNKS) */
        const double st0 = bench_store_alone(dir, m, nch, 0, 2048), st1 = bench_store_alone(dir, m, nch, 1, 2048);
        setenv("HSADB_STORE_NEW_FORMAT", "1", 1);
        const double stf1 = bench_store_alone(dir, m, nch, 0, 2048);
        unsetenv("HSADB_STORE_NEW_FORMAT");
        const double raw = bench_raw_disk(dir, m, nch, 2048);
        bench_rm_rf(dir);
        printf("| %zu | %.0f | %.0f | %.0f / %.0f | %.0f | %.0f | %.2f | %.1f | %.3f | %d | %.1f |\n", n, tok_s[0],
               tok_s[1], n / st0, n / st1, n / stf1, n / raw, cold, qp, qt, ntok, qs);
        fflush(stdout);
        free(data);
    }
    if (cache_rows[0][0]) {
        printf("\nThrough the block cache (K/V slots for a fraction of the chunks; the rest fetched from the store "
               "when selected):\n\n| tokens | K/V slots of chunks | first query s | prompt ms | ms/token | tokens |\n"
               "|---|---|---|---|---|---|\n");
        for (int si = 0; si < nsizes; si++) printf("%s\n", cache_rows[si]);
    }
    hsadb_model_close(m);
    return 0;
}
