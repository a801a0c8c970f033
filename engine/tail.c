/*
 * engine/tail.c — the tail of a memory (see engine.h for what it holds and why).
 *
 * Stored blob, little-endian:
 *   off  0  "HSAT"            off 24  u32 D            off 40  u64 part_append_id
 *   off  4  u32 version (1)   off 28  u32 Hk*dh        off 48  i64 part_time
 *   off  8  i64 pos           off 32  u32 Nl           off 56  u32 checksum (FNV-1a of payload)
 *   off 16  u32 n_kv          off 36  u32 0            off 60  u32 0
 *   off 20  u32 n_ctx
 *   payload: for each lower layer: K [n_kv][Hk*dh] f32, V [n_kv][Hk*dh] f32;
 *            x_mid [n_ctx][D] f32; bytes [n_ctx]
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "util.h"

#define TAIL_HDR 64

static int ctx_cap(const hsadb_config *c) {
    int need = hsadb_config_upper_attn_layers(c) * (c->window - 1);
    return need > c->chunk - 1 ? need : c->chunk - 1;
}

int hsadb_tail_init(hsadb_tail *t, const hsadb_model *m) {
    const hsadb_config *c = &m->c;
    memset(t, 0, sizeof *t);
    t->ctx_cap = ctx_cap(c);
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim;
    t->kv = calloc((size_t)c->n_lower * 2 * (c->window - 1) * kvd + 1, sizeof(float));
    t->x_mid = calloc((size_t)t->ctx_cap * c->dim, sizeof(float));
    t->bytes = calloc((size_t)t->ctx_cap, 1);
    if (!t->kv || !t->x_mid || !t->bytes) {
        hsadb_tail_free(t);
        return ENOMEM;
    }
    return 0;
}

void hsadb_tail_free(hsadb_tail *t) {
    free(t->kv);
    free(t->x_mid);
    free(t->bytes);
    memset(t, 0, sizeof *t);
}

static uint32_t fnv1a(const uint8_t *p, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 16777619u;
    return h;
}

static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

int hsadb_tail_encode(const hsadb_tail *t, const hsadb_model *m, uint8_t **buf, size_t *cap,
                      size_t *len) {
    const hsadb_config *c = &m->c;
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim, W1 = (size_t)c->window - 1;
    const size_t n = TAIL_HDR + (size_t)c->n_lower * 2 * t->n_kv * kvd * 4 +
                     (size_t)t->n_ctx * c->dim * 4 + (size_t)t->n_ctx;
    if (n > *cap) {
        uint8_t *nb = realloc(*buf, n);
        if (!nb) return ENOMEM;
        *buf = nb, *cap = n;
    }
    uint8_t *h = *buf, *p = h + TAIL_HDR;
    memset(h, 0, TAIL_HDR);
    memcpy(h, "HSAT", 4);
    put32(h + 4, 1);
    put64(h + 8, (uint64_t)t->pos);
    put32(h + 16, (uint32_t)t->n_kv);
    put32(h + 20, (uint32_t)t->n_ctx);
    put32(h + 24, (uint32_t)c->dim);
    put32(h + 28, (uint32_t)kvd);
    put32(h + 32, (uint32_t)c->n_lower);
    put64(h + 40, t->part_append_id);
    put64(h + 48, (uint64_t)t->part_time);
    for (int l = 0; l < c->n_lower; l++)
        for (int kv = 0; kv < 2; kv++) {
            size_t sz = (size_t)t->n_kv * kvd * 4;
            memcpy(p, t->kv + ((size_t)l * 2 + kv) * W1 * kvd, sz);
            p += sz;
        }
    memcpy(p, t->x_mid, (size_t)t->n_ctx * c->dim * 4);
    p += (size_t)t->n_ctx * c->dim * 4;
    memcpy(p, t->bytes, (size_t)t->n_ctx);
    p += t->n_ctx;
    put32(h + 56, fnv1a(h + TAIL_HDR, (size_t)(p - h - TAIL_HDR)));
    *len = (size_t)(p - h);
    return 0;
}

int hsadb_tail_decode(hsadb_tail *t, const hsadb_model *m, const void *blob, size_t len) {
    const hsadb_config *c = &m->c;
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim, W1 = (size_t)c->window - 1;
    const uint8_t *h = blob, *p = h + TAIL_HDR;
    if (len < TAIL_HDR || memcmp(h, "HSAT", 4) != 0)
        return hsadb_fail(HSADB_ERR_CORRUPT, "tail record: bad magic");
    if (get32(h + 4) != 1) return hsadb_fail(HSADB_ERR_VERSION, "tail record: version %u", get32(h + 4));
    int64_t pos = (int64_t)get64(h + 8);
    uint32_t n_kv = get32(h + 16), n_ctx = get32(h + 20);
    if (get32(h + 24) != (uint32_t)c->dim || get32(h + 28) != kvd || get32(h + 32) != (uint32_t)c->n_lower)
        return hsadb_fail(HSADB_ERR_MODEL_MISMATCH, "tail record: geometry does not match the model");
    if (pos < 0 || n_kv != (uint32_t)(pos < (int64_t)W1 ? pos : (int64_t)W1) ||
        n_ctx != (uint32_t)(pos < t->ctx_cap ? pos : t->ctx_cap))
        return hsadb_fail(HSADB_ERR_CORRUPT, "tail record: inconsistent sizes");
    size_t need = TAIL_HDR + (size_t)c->n_lower * 2 * n_kv * kvd * 4 + (size_t)n_ctx * c->dim * 4 + n_ctx;
    if (len != need) return hsadb_fail(HSADB_ERR_CORRUPT, "tail record: %zu bytes, expected %zu", len, need);
    if (fnv1a(p, len - TAIL_HDR) != get32(h + 56)) return hsadb_fail(HSADB_ERR_CORRUPT, "tail record: checksum mismatch");
    t->pos = pos, t->n_kv = (int)n_kv, t->n_ctx = (int)n_ctx;
    t->part_append_id = get64(h + 40);
    t->part_time = (int64_t)get64(h + 48);
    for (int l = 0; l < c->n_lower; l++)
        for (int kv = 0; kv < 2; kv++) {
            size_t sz = (size_t)n_kv * kvd * 4;
            memcpy(t->kv + ((size_t)l * 2 + kv) * W1 * kvd, p, sz);
            p += sz;
        }
    memcpy(t->x_mid, p, (size_t)n_ctx * c->dim * 4);
    p += (size_t)n_ctx * c->dim * 4;
    memcpy(t->bytes, p, n_ctx);
    return 0;
}

void hsadb_tail_to_lower(const hsadb_tail *t, const hsadb_model *m, hsadb_swa_state *s) {
    const hsadb_config *c = &m->c;
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim, W1 = (size_t)c->window - 1;
    s->pos = t->pos;
    for (int l = 0; l < c->n_lower; l++) {
        hsadb_kv_ring *r = &s->ring[l];
        r->start = t->pos - t->n_kv;
        for (int i = 0; i < t->n_kv; i++) {
            size_t row = (size_t)((r->start + i) % r->cap) * kvd;
            memcpy(r->k + row, t->kv + (((size_t)l * 2 + 0) * W1 + i) * kvd, kvd * 4);
            memcpy(r->v + row, t->kv + (((size_t)l * 2 + 1) * W1 + i) * kvd, kvd * 4);
        }
    }
}

void hsadb_tail_from_lower(hsadb_tail *t, const hsadb_model *m, const hsadb_swa_state *s) {
    const hsadb_config *c = &m->c;
    const size_t kvd = (size_t)c->n_kv_heads * c->head_dim, W1 = (size_t)c->window - 1;
    int64_t have = s->pos - s->ring[0].start;
    t->n_kv = (int)(have < (int64_t)W1 ? have : (int64_t)W1);
    const int64_t first = s->pos - t->n_kv;
    for (int l = 0; l < c->n_lower; l++) {
        const hsadb_kv_ring *r = &s->ring[l];
        for (int i = 0; i < t->n_kv; i++) {
            size_t row = (size_t)((first + i) % r->cap) * kvd;
            memcpy(t->kv + (((size_t)l * 2 + 0) * W1 + i) * kvd, r->k + row, kvd * 4);
            memcpy(t->kv + (((size_t)l * 2 + 1) * W1 + i) * kvd, r->v + row, kvd * 4);
        }
    }
}

void hsadb_tail_push_rows(hsadb_tail *t, const hsadb_model *m, const float *x_mid,
                          const uint8_t *bytes, int n) {
    const size_t D = (size_t)m->c.dim;
    const int cap = t->ctx_cap;
    if (n >= cap) {                      /* only the last cap rows survive */
        x_mid += (size_t)(n - cap) * D, bytes += n - cap;
        t->pos += n - cap;
        n = cap;
        t->n_ctx = 0;
    }
    int drop = t->n_ctx + n - cap;
    if (drop > 0) {
        memmove(t->x_mid, t->x_mid + (size_t)drop * D, (size_t)(t->n_ctx - drop) * D * 4);
        memmove(t->bytes, t->bytes + drop, (size_t)(t->n_ctx - drop));
        t->n_ctx -= drop;
    }
    memcpy(t->x_mid + (size_t)t->n_ctx * D, x_mid, (size_t)n * D * 4);
    memcpy(t->bytes + t->n_ctx, bytes, (size_t)n);
    t->n_ctx += n;
    t->pos += n;
}

int hsadb_tail_blob_bytes(const void *blob, size_t len, const uint8_t **bytes, size_t *n) {
    const uint8_t *h = blob;
    if (len < TAIL_HDR || memcmp(h, "HSAT", 4) != 0) return hsadb_fail(HSADB_ERR_CORRUPT, "tail record: bad header");
    uint32_t n_ctx = get32(h + 20);
    if (n_ctx > len - TAIL_HDR) return hsadb_fail(HSADB_ERR_CORRUPT, "tail record: %u bytes do not fit", n_ctx);
    *bytes = h + len - n_ctx;        /* the byte section ends the blob */
    *n = n_ctx;
    return 0;
}

int hsadb_tail_gather_chunks(const hsadb_tail *t, const hsadb_model *m, const float *x_mid, int n, float *xs) {
    const int part = (int)(t->pos % m->c.chunk);    /* the partial chunk: the tail's last rows */
    return hsadb_gather_chunks(t->x_mid + (size_t)(t->n_ctx - part) * m->c.dim, part, x_mid, n, m->c.chunk,
                               m->c.dim, xs);
}
