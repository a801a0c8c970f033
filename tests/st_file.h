/* tests/st_file.h — read test data: whole files and safetensors tensors (golden outputs).
 * The test harness itself (CHECK, tu_summary) is tests/test_util.h. */
#ifndef HSADB_ST_FILE_H
#define HSADB_ST_FILE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "test_util.h"

/* A whole file in memory (NULL if unreadable). */
static inline unsigned char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) b[n] = 0, *len = (size_t)n;
    return b;
}

/* Pointer to tensor `name` of a safetensors file held in buf (F32 or I32, little-endian),
 * its element count in *n; NULL if absent. Data may be unaligned: copy before use. */
static inline const void *st_tensor(const unsigned char *buf, size_t len, const char *name, size_t *n) {
    unsigned long long hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | buf[i];
    json_t *h = json_loadb((const char *)buf + 8, hl, 0, NULL);
    if (!h) return NULL;
    json_t *off = json_object_get(json_object_get(h, name), "data_offsets");
    const void *p = NULL;
    if (json_array_size(off) == 2) {
        size_t b0 = (size_t)json_integer_value(json_array_get(off, 0)),
               b1 = (size_t)json_integer_value(json_array_get(off, 1));
        *n = (b1 - b0) / 4;
        p = buf + 8 + hl + b0;
    }
    json_decref(h);
    (void)len;
    return p;
}

/* Copy of a F32/I32 tensor into aligned memory (caller frees). */
static inline void *st_copy(const unsigned char *buf, size_t len, const char *name, size_t *n) {
    const void *p = st_tensor(buf, len, name, n);
    if (!p) return NULL;
    void *d = malloc(*n * 4 + 4);
    memcpy(d, p, *n * 4);
    return d;
}

#endif
