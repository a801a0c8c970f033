/*
 * bench/bench_common.h — what the engine benchmarks share (header only): filler text, rm -rf,
 * the store alone (the same records through LMDB with no model), the floor under any append
 * measured end to end, and the disk alone under that (the same bytes, pwrite + fdatasync).
 */
#ifndef HSADB_BENCH_COMMON_H
#define HSADB_BENCH_COMMON_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hsadb.h"
#include "model.h"
#include "store.h"
#include "util.h"

/* Deterministic word soup (an agent's log, roughly): n bytes into b. */
static inline void bench_fill(uint8_t *b, size_t n) {
    static const char *words[] = {"the ", "memory ", "of ", "agent ", "stored ", "chunk ", "and ", "key ",
                                  "42 ", "value ", "query ", "answer ", "log: ", "user ", "said ", "\n"};
    uint32_t s = 12345;
    size_t i = 0;
    while (i < n) {
        s = s * 1664525u + 1013904223u;
        const char *w = words[s >> 28];
        for (size_t j = 0; w[j] && i < n; j++) b[i++] = (uint8_t)w[j];
    }
}

static inline int bench_rm_rf(const char *d) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", d);
    return system(cmd);
}

/* The records of n_chunks chunks (landmark, K/V in bf16, bytes, provenance), committed `every`
 * chunks at a time as an append does, through the store alone. Returns seconds (-1 on error). */
static inline double bench_store_alone(const char *dir, const hsadb_model *m, uint64_t n_chunks, int nosync,
                                       int every) {
    const hsadb_config *c = &m->c;
    hsadb_store *st;
    bench_rm_rf(dir);
    if (hsadb_store_open(dir, HSADB_STORE_CREATE | (nosync ? HSADB_STORE_NOSYNC : 0), &st)) return -1;
    struct hsadb_memory_rec rec = {.kv_dtype = HSADB_KV_BF16, .chunk_size = (uint32_t)c->chunk,
                                   .mem_heads = (uint32_t)c->n_mem_heads, .head_dim = (uint32_t)c->head_dim,
                                   .retrieval_dim = (uint32_t)c->retr_dim};
    hsadb_store_memory_create(st, "m", &rec);
    size_t lmk = (size_t)c->n_mem_heads * c->retr_dim * 2, kv = (size_t)2 * c->chunk * c->n_mem_heads * c->head_dim * 2;
    uint8_t *l = calloc(1, lmk), *k = calloc(1, kv), bytes[4096] = {0}, tail[65536] = {0};
    hsadb_store_writer *w;
    double t = hsadb_seconds();
    hsadb_store_writer_begin(st, "m", 0, &w, &rec);
    for (uint64_t i = 0; i < n_chunks; i++) {
        struct hsadb_chunk_meta meta = {1, i * (uint64_t)c->chunk, 0};
        hsadb_store_writer_put_chunk(w, l, k, &meta, bytes);
        if (hsadb_store_writer_staged(w) >= (size_t)every || i + 1 == n_chunks)
            hsadb_store_writer_commit(w, tail, sizeof tail, (i + 1) * (uint64_t)c->chunk, (i + 1) * (uint64_t)c->chunk,
                                      i + 1 == n_chunks);
    }
    hsadb_store_writer_end(w);
    t = hsadb_seconds() - t;
    hsadb_store_close(st);
    free(l), free(k);
    return t;
}

/* The disk alone: the same bytes as the store alone's records (landmark + K/V + text + 24 bytes
 * of provenance per chunk) written to one file in batches of `every` chunks, each batch
 * pwrite + fdatasync as a durable commit is. Returns seconds (-1 on error). */
static inline double bench_raw_disk(const char *dir, const hsadb_model *m, uint64_t n_chunks, int every) {
    const hsadb_config *c = &m->c;
    const size_t per = (size_t)c->n_mem_heads * c->retr_dim * 2 + (size_t)2 * c->chunk * c->n_mem_heads * c->head_dim * 2 +
                       (size_t)c->chunk + 24;
    char path[600];
    bench_rm_rf(dir);
    snprintf(path, sizeof path, "%s.raw", dir);
    const int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
    if (fd < 0) return -1;
    const size_t batch = per * (size_t)every;
    uint8_t *buf = malloc(batch);
    if (!buf) { close(fd); return -1; }
    memset(buf, 0x5a, batch);
    double t = hsadb_seconds();
    off_t off = 0;
    int bad = 0;
    for (uint64_t i = 0; i < n_chunks && !bad; i += (uint64_t)every) {
        const size_t nb = per * (size_t)(n_chunks - i < (uint64_t)every ? n_chunks - i : (uint64_t)every);
        bad = pwrite(fd, buf, nb, off) != (ssize_t)nb || fdatasync(fd) != 0;
        off += (off_t)nb;
    }
    t = hsadb_seconds() - t;
    close(fd);
    unlink(path);
    free(buf);
    return bad ? -1 : t;
}

#endif
