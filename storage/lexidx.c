/*
 * storage/lexidx.c — the lexical index's records in LMDB (lexidx.h; format in docs/storage.md).
 *
 *   update   read the chunks of the units to index (plus one chunk before and after for the
 *            tokens cut by a unit boundary), tokenize them once, collect (term -> unit, tf)
 *            in a hash table, then per term (in key order) extend its open posting block,
 *            sealing full blocks; then the unit lengths and the meta record.
 *   read     postings of a term (all its blocks, in unit order) and the unit lengths.
 *   verify   rebuild in RAM and compare with what is stored.
 */
#include "lexidx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsadb.h"
#include "lexical.h"
#include "util.h"

#define CHUNK_META 24   /* sizeof(struct hsadb_chunk_meta): the prefix of a "chunks" value */

struct ent {
    uint32_t hash, off;      /* term bytes at arena + off */
    uint32_t len;
    uint32_t first, last;    /* postings of the term: a list through post[].next */
};

struct pnode { uint32_t unit, tf, next; };

struct hsadb_lexidx_writer {
    hsadb_lex_tok *tok;
    uint8_t       *bytes;        /* stream bytes of the units being indexed (with context) */
    size_t         bytes_cap;
    char          *arena;        /* term bytes */
    size_t         arena_n, arena_cap;
    struct ent    *ents;
    size_t         n_ents, ents_cap;
    uint32_t      *table;        /* open addressing: entry index + 1, 0 = empty */
    size_t         table_cap;    /* a power of two */
    struct pnode  *post;
    size_t         n_post, post_cap;
    uint16_t      *dl;           /* term counts of the units, relative to unit0 */
    size_t         dl_cap;
    uint64_t       unit0;        /* first unit being indexed */
    size_t         from;         /* offset in bytes of unit0's first byte */
    size_t         unit_bytes;
    uint8_t       *blk;          /* one posting block being encoded */
    size_t         blk_cap;
    hsadb_lex_posting *tmp;      /* an open block decoded */
    size_t         tmp_n, tmp_cap;
    uint32_t      *order;        /* entries sorted by term */
    size_t         order_cap;
    uint8_t        key[4 + 1 + HSADB_LEX_TERM_MAX + 1 + 4];
};

/* ---- small helpers ----------------------------------------------------------------------- */

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static uint32_t get_be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t fnv1a(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

/* Grows *p (elements of `size` bytes) to hold at least `need`, doubling. */
static int grow(void *pp, size_t *cap, size_t need, size_t size) {
    void **p = pp;
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * size);
    if (!q) return hsadb_fail(ENOMEM, "lexical index: out of memory");
    *p = q, *cap = c;
    return 0;
}

static MDB_val meta_key(uint8_t *k, uint32_t id) {
    be32(k, id), k[4] = 'M';
    return (MDB_val){ 5, k };
}

int hsadb_lexidx_meta_get(const hsadb_lexidx_txn *t, struct hsadb_lex_meta *m) {
    uint8_t kb[5];
    MDB_val k = meta_key(kb, t->id), v;
    int rc = mdb_get(t->txn, t->lex, &k, &v);
    memset(m, 0, sizeof *m);
    if (rc == MDB_NOTFOUND) return 0;
    if (rc) return rc;
    if (v.mv_size != sizeof *m)
        return hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: meta record of %zu bytes", t->id,
                          v.mv_size);
    memcpy(m, v.mv_data, sizeof *m);
    return 0;
}

/* ---- writer ------------------------------------------------------------------------------ */

int hsadb_lexidx_writer_open(hsadb_lexidx_writer **out) {
    hsadb_lexidx_writer *w = calloc(1, sizeof *w);
    *out = NULL;
    if (!w) return hsadb_fail(ENOMEM, "lexical index: out of memory");
    int rc = hsadb_lex_tok_open(&w->tok);
    if (rc) {
        free(w);
        return hsadb_fail(rc, "lexical index: cannot create the Snowball stemmer");
    }
    *out = w;
    return 0;
}

void hsadb_lexidx_writer_close(hsadb_lexidx_writer *w) {
    if (!w) return;
    hsadb_lex_tok_close(w->tok);
    free(w->bytes), free(w->arena), free(w->ents), free(w->table), free(w->post), free(w->dl);
    free(w->blk), free(w->tmp), free(w->order);
    free(w);
}

static void reset(hsadb_lexidx_writer *w) {
    w->arena_n = w->n_ents = w->n_post = 0;
    if (w->table) memset(w->table, 0, w->table_cap * sizeof *w->table);
}

static int rehash(hsadb_lexidx_writer *w) {
    size_t cap = w->table_cap ? 2 * w->table_cap : 4096;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t) return hsadb_fail(ENOMEM, "lexical index: out of memory");
    for (size_t i = 0; i < w->n_ents; i++) {
        size_t j = w->ents[i].hash & (cap - 1);
        while (t[j]) j = (j + 1) & (cap - 1);
        t[j] = (uint32_t)i + 1;
    }
    free(w->table);
    w->table = t, w->table_cap = cap;
    return 0;
}

/* The term table's emit: one more occurrence of term in the unit where `start` lies. */
static int collect(void *ctx, const char *term, size_t len, size_t start, int whole) {
    hsadb_lexidx_writer *w = ctx;
    const uint32_t unit = (uint32_t)(w->unit0 + (start - w->from) / w->unit_bytes);
    const size_t rel = (start - w->from) / w->unit_bytes;
    int rc;
    if (!whole && w->dl[rel] < UINT16_MAX) w->dl[rel]++;   /* length: words, not wholes */
    if (2 * (w->n_ents + 1) > w->table_cap && (rc = rehash(w))) return rc;
    const uint32_t h = fnv1a(term, len);
    size_t j = h & (w->table_cap - 1);
    for (; w->table[j]; j = (j + 1) & (w->table_cap - 1)) {
        struct ent *e = &w->ents[w->table[j] - 1];
        if (e->hash != h || e->len != len || memcmp(w->arena + e->off, term, len)) continue;
        struct pnode *last = &w->post[e->last];
        if (last->unit == unit) {
            last->tf++;
            return 0;
        }
        if ((rc = grow(&w->post, &w->post_cap, w->n_post + 1, sizeof *w->post))) return rc;
        w->post[w->n_post] = (struct pnode){ unit, 1, UINT32_MAX };
        w->post[e->last].next = (uint32_t)w->n_post;
        e->last = (uint32_t)w->n_post++;
        return 0;
    }
    if ((rc = grow(&w->ents, &w->ents_cap, w->n_ents + 1, sizeof *w->ents)) ||
        (rc = grow(&w->arena, &w->arena_cap, w->arena_n + len, 1)) ||
        (rc = grow(&w->post, &w->post_cap, w->n_post + 1, sizeof *w->post)))
        return rc;
    memcpy(w->arena + w->arena_n, term, len);
    w->post[w->n_post] = (struct pnode){ unit, 1, UINT32_MAX };
    w->ents[w->n_ents] = (struct ent){ h, (uint32_t)w->arena_n, (uint32_t)len, (uint32_t)w->n_post,
                                       (uint32_t)w->n_post };
    w->arena_n += len;
    w->n_post++;
    w->table[j] = (uint32_t)++w->n_ents;
    return 0;
}

/* Reads stream bytes of chunks [c0, c1) into w->bytes. */
static int read_chunks(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, uint64_t c0, uint64_t c1) {
    const size_t S = t->chunk_size;
    MDB_cursor *cur;
    uint8_t kb[12];
    MDB_val k, v;
    int rc;
    if ((rc = grow(&w->bytes, &w->bytes_cap, (size_t)(c1 - c0) * S, 1))) return rc;
    if ((rc = mdb_cursor_open(t->txn, t->chunks, &cur))) return rc;
    be32(kb, t->id), be32(kb + 4, (uint32_t)(c0 >> 32)), be32(kb + 8, (uint32_t)c0);
    k = (MDB_val){ 12, kb };
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_KEY);
    for (uint64_t c = c0; c < c1 && rc == 0; c++) {
        if (c > c0) rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
        if (rc == 0 && (k.mv_size != 12 || get_be32(k.mv_data) != t->id ||
                        ((uint64_t)get_be32((uint8_t *)k.mv_data + 4) << 32 | get_be32((uint8_t *)k.mv_data + 8)) != c))
            rc = MDB_NOTFOUND;
        if (rc == MDB_NOTFOUND) rc = hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: chunk %llu missing",
                                               t->id, (unsigned long long)c);
        else if (rc == 0 && v.mv_size != CHUNK_META + S + t->value_tail)
            rc = hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: chunk %llu has %zu bytes", t->id,
                            (unsigned long long)c, v.mv_size);
        if (rc == 0) memcpy(w->bytes + (size_t)(c - c0) * S, (const uint8_t *)v.mv_data + CHUNK_META, S);
    }
    mdb_cursor_close(cur);
    return rc;
}

/* Tokenizes units [u0, u1) into the term table (reset first). */
static int collect_units(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, uint64_t u0, uint64_t u1) {
    const uint64_t U = HSADB_LEX_UNIT_CHUNKS;
    const uint64_t c0 = u0 ? u0 * U - 1 : 0, c1 = u1 * U + 1 <= t->n_chunks ? u1 * U + 1 : t->n_chunks;
    int rc;
    reset(w);
    if (!w->table && (rc = rehash(w))) return rc;
    if ((rc = grow(&w->dl, &w->dl_cap, (size_t)(u1 - u0), sizeof *w->dl))) return rc;
    memset(w->dl, 0, (size_t)(u1 - u0) * sizeof *w->dl);
    if ((rc = read_chunks(w, t, c0, c1))) return rc;
    w->unit0 = u0;
    w->unit_bytes = (size_t)U * t->chunk_size;
    w->from = (size_t)(u0 * U - c0) * t->chunk_size;
    return hsadb_lex_terms(w->tok, w->bytes, (size_t)(c1 - c0) * t->chunk_size, w->from,
                           w->from + (size_t)(u1 - u0) * w->unit_bytes, collect, w);
}

static int cmp_ent(const void *a, const void *b, void *ctx) {
    const hsadb_lexidx_writer *w = ctx;
    const struct ent *x = &w->ents[*(const uint32_t *)a], *y = &w->ents[*(const uint32_t *)b];
    const size_t n = x->len < y->len ? x->len : y->len;
    const int c = memcmp(w->arena + x->off, w->arena + y->off, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* key(id) 'T' term 0x00 suffix; returns its length. */
static size_t term_key(uint8_t *k, uint32_t id, const char *term, size_t len, uint32_t suffix) {
    be32(k, id), k[4] = 'T';
    memcpy(k + 5, term, len);
    k[5 + len] = 0;
    be32(k + 6 + len, suffix);
    return len + 10;
}

/* Decodes a posting block into w->tmp (appended). */
static int decode_block(hsadb_lexidx_writer *w, const MDB_val *v, uint32_t id) {
    const uint8_t *p = v->mv_data, *end = p + v->mv_size;
    uint64_t unit = 0, d;
    uint32_t tf;
    int first = 1, rc;
    while (p < end) {
        if (hsadb_lex_posting_get(&p, end, &d, &tf) || (!first && d == 0) || unit + d > HSADB_LEX_MAX_UNITS)
            return hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: bad posting block", id);
        unit += d, first = 0;
        if ((rc = grow(&w->tmp, &w->tmp_cap, w->tmp_n + 1, sizeof *w->tmp))) return rc;
        w->tmp[w->tmp_n++] = (hsadb_lex_posting){ (uint32_t)unit, tf };
    }
    return 0;
}

/* Writes the postings w->tmp[0..tmp_n) of one term (ascending units) as sealed blocks and an open one. */
static int put_blocks(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, const char *term, size_t len,
                      int had_open) {
    size_t bn = 0, i;
    uint32_t first = 0, prev = 0;
    MDB_val k, v;
    int rc;
    if ((rc = grow(&w->blk, &w->blk_cap, HSADB_LEX_SEAL_BYTES + HSADB_LEX_POSTING_MAX, 1))) return rc;
    for (i = 0; i < w->tmp_n; i++) {
        const hsadb_lex_posting *p = &w->tmp[i];
        if (bn == 0) first = p->unit, prev = 0;
        bn += hsadb_lex_posting_put(w->blk + bn, p->unit - prev, p->tf);
        prev = p->unit;
        if (bn >= HSADB_LEX_SEAL_BYTES) {              /* seal: keyed by its first unit */
            k = (MDB_val){ term_key(w->key, t->id, term, len, first), w->key };
            v = (MDB_val){ bn, w->blk };
            if ((rc = mdb_put(t->txn, t->lex, &k, &v, 0))) return rc;
            bn = 0;
        }
    }
    k = (MDB_val){ term_key(w->key, t->id, term, len, HSADB_LEX_OPEN_BLOCK), w->key };
    if (bn) {
        v = (MDB_val){ bn, w->blk };
        return mdb_put(t->txn, t->lex, &k, &v, 0);
    }
    if (had_open && (rc = mdb_del(t->txn, t->lex, &k, NULL)) && rc != MDB_NOTFOUND) return rc;
    return 0;
}

/* Writes the collected postings: per term, its open block extended (and sealed when full). */
static int write_terms(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t) {
    int rc;
    if ((rc = grow(&w->order, &w->order_cap, w->n_ents, sizeof *w->order))) return rc;
    for (size_t i = 0; i < w->n_ents; i++) w->order[i] = (uint32_t)i;
    qsort_r(w->order, w->n_ents, sizeof *w->order, cmp_ent, w);
    for (size_t i = 0; i < w->n_ents; i++) {
        const struct ent *e = &w->ents[w->order[i]];
        const char *term = w->arena + e->off;
        MDB_val k = { term_key(w->key, t->id, term, e->len, HSADB_LEX_OPEN_BLOCK), w->key }, v;
        w->tmp_n = 0;
        rc = mdb_get(t->txn, t->lex, &k, &v);
        const int had_open = rc == 0;
        if (rc && rc != MDB_NOTFOUND) return rc;
        if (had_open && (rc = decode_block(w, &v, t->id))) return rc;
        for (uint32_t p = e->first; p != UINT32_MAX; p = w->post[p].next) {
            if (w->tmp_n && w->tmp[w->tmp_n - 1].unit >= w->post[p].unit)
                return hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: postings of a term go back "
                                  "from unit %u to %u", t->id, w->tmp[w->tmp_n - 1].unit, w->post[p].unit);
            if ((rc = grow(&w->tmp, &w->tmp_cap, w->tmp_n + 1, sizeof *w->tmp))) return rc;
            w->tmp[w->tmp_n++] = (hsadb_lex_posting){ w->post[p].unit, w->post[p].tf };
        }
        if ((rc = put_blocks(w, t, term, e->len, had_open))) return rc;
    }
    return 0;
}

/* Adds the lengths of units [u0, u1) (w->dl) to the 'L' records. */
static int write_lengths(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, uint64_t u0, uint64_t u1) {
    uint8_t kb[9], vb[2 * HSADB_LEX_LEN_BLOCK];
    MDB_val k, v;
    int rc;
    for (uint64_t u = u0; u < u1;) {
        const uint64_t blk = u / HSADB_LEX_LEN_BLOCK, end = (blk + 1) * HSADB_LEX_LEN_BLOCK < u1 ?
                                                          (blk + 1) * HSADB_LEX_LEN_BLOCK : u1;
        const size_t have = (size_t)(u - blk * HSADB_LEX_LEN_BLOCK);
        be32(kb, t->id), kb[4] = 'L', be32(kb + 5, (uint32_t)blk);
        k = (MDB_val){ 9, kb };
        if (have) {
            if ((rc = mdb_get(t->txn, t->lex, &k, &v))) return rc;
            if (v.mv_size != 2 * have)
                return hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: length record %llu has %zu "
                                  "bytes, expected %zu", t->id, (unsigned long long)blk, v.mv_size, 2 * have);
            memcpy(vb, v.mv_data, v.mv_size);
        }
        for (uint64_t x = u; x < end; x++) {
            const uint16_t d = w->dl[x - w->unit0];
            vb[2 * (x - blk * HSADB_LEX_LEN_BLOCK)] = (uint8_t)d;
            vb[2 * (x - blk * HSADB_LEX_LEN_BLOCK) + 1] = (uint8_t)(d >> 8);
        }
        v = (MDB_val){ 2 * (size_t)(end - blk * HSADB_LEX_LEN_BLOCK), vb };
        if ((rc = mdb_put(t->txn, t->lex, &k, &v, 0))) return rc;
        u = end;
    }
    return 0;
}

int hsadb_lexidx_update(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, uint64_t max_units,
                        uint64_t *n_units, int *stale) {
    struct hsadb_lex_meta m;
    uint8_t kb[5];
    MDB_val k, v;
    int rc;
    if (stale) *stale = 0;
    if ((rc = hsadb_lexidx_meta_get(t, &m))) return rc;
    if (m.version == 0) {
        m.version = HSADB_LEX_VERSION;
        m.unit_bytes = HSADB_LEX_UNIT_CHUNKS * t->chunk_size;
    } else if (m.version != HSADB_LEX_VERSION || m.unit_bytes != HSADB_LEX_UNIT_CHUNKS * t->chunk_size) {
        if (stale) *stale = 1;
        if (n_units) *n_units = 0;
        return 0;
    }
    const uint64_t target = hsadb_lexidx_units(t->n_chunks);
    uint64_t u1 = target;
    if (m.n_units > target)
        return hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u holds %llu units, the memory only %llu",
                          t->id, (unsigned long long)m.n_units, (unsigned long long)target);
    if (max_units && u1 - m.n_units > max_units) u1 = m.n_units + max_units;
    if (n_units) *n_units = u1;
    if (u1 == m.n_units) return 0;
    if ((rc = collect_units(w, t, m.n_units, u1)) || (rc = write_terms(w, t)) ||
        (rc = write_lengths(w, t, m.n_units, u1)))
        return rc;
    for (uint64_t u = m.n_units; u < u1; u++) m.n_terms += w->dl[u - m.n_units];
    m.n_units = u1;
    k = meta_key(kb, t->id);
    v = (MDB_val){ sizeof m, &m };
    return mdb_put(t->txn, t->lex, &k, &v, 0);
}

int hsadb_lexidx_drop(const hsadb_lexidx_txn *t, size_t max_keys, int *done) {
    MDB_cursor *cur;
    uint8_t kb[4];
    MDB_val k, v;
    int rc;
    *done = 0;
    if ((rc = mdb_cursor_open(t->txn, t->lex, &cur))) return rc;
    for (;;) {
        be32(kb, t->id);
        k = (MDB_val){ 4, kb };
        rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        if (rc == MDB_NOTFOUND || (rc == 0 && (k.mv_size < 4 || get_be32(k.mv_data) != t->id))) {
            *done = 1, rc = 0;
            break;
        }
        if (rc || max_keys == 0) break;
        if ((rc = mdb_cursor_del(cur, 0))) break;
        max_keys--;
    }
    mdb_cursor_close(cur);
    return rc;
}

/* ---- reading ----------------------------------------------------------------------------- */

int hsadb_lexidx_postings(const hsadb_lexidx_txn *t, const char *term, size_t len, uint64_t max_unit,
                          hsadb_lex_posting **vec, size_t *n, size_t *cap) {
    uint8_t kb[4 + 1 + HSADB_LEX_TERM_MAX + 1 + 4];
    MDB_cursor *cur;
    MDB_val k, v;
    int rc;
    if (len == 0 || len > HSADB_LEX_TERM_MAX) return 0;
    const size_t plen = term_key(kb, t->id, term, len, 0) - 4;   /* the prefix up to the 0x00 */
    if ((rc = mdb_cursor_open(t->txn, t->lex, &cur))) return rc;
    k = (MDB_val){ plen + 4, kb };
    uint64_t last = 0;
    int any = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size != plen + 4 || memcmp(k.mv_data, kb, plen)) break;
        const uint8_t *p = v.mv_data, *end = p + v.mv_size;
        uint64_t unit = 0, d;
        uint32_t tf;
        int first = 1;
        while (p < end) {
            if (hsadb_lex_posting_get(&p, end, &d, &tf) || (!first && d == 0) || unit + d > HSADB_LEX_MAX_UNITS ||
                (any && first && unit + d <= last)) {
                mdb_cursor_close(cur);
                return hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: bad posting block of a term of "
                                  "%zu bytes", t->id, len);
            }
            unit += d, first = 0, any = 1, last = unit;
            if (unit >= max_unit) continue;
            if (*n == *cap && (rc = grow(vec, cap, *n + 1, sizeof **vec))) {
                mdb_cursor_close(cur);
                return rc;
            }
            (*vec)[(*n)++] = (hsadb_lex_posting){ (uint32_t)unit, tf };
        }
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int hsadb_lexidx_lengths(const hsadb_lexidx_txn *t, uint64_t first, uint64_t n, uint16_t *out) {
    uint8_t kb[9];
    MDB_val k, v;
    int rc;
    const uint64_t end = first + n;
    for (uint64_t blk = first / HSADB_LEX_LEN_BLOCK; blk * HSADB_LEX_LEN_BLOCK < end; blk++) {
        const uint64_t b0 = blk * HSADB_LEX_LEN_BLOCK, u0 = b0 > first ? b0 : first;
        const uint64_t cnt = (end - b0 < HSADB_LEX_LEN_BLOCK ? end - b0 : HSADB_LEX_LEN_BLOCK) - (u0 - b0);
        be32(kb, t->id), kb[4] = 'L', be32(kb + 5, (uint32_t)blk);
        k = (MDB_val){ 9, kb };
        rc = mdb_get(t->txn, t->lex, &k, &v);
        if (rc == MDB_NOTFOUND || (rc == 0 && v.mv_size < 2 * (u0 - b0 + cnt)))
            return hsadb_fail(HSADB_ERR_CORRUPT, "lexical index of memory %u: lengths of units %llu.. missing",
                              t->id, (unsigned long long)u0);
        if (rc) return rc;
        const uint8_t *p = (const uint8_t *)v.mv_data + 2 * (u0 - b0);
        for (uint64_t i = 0; i < cnt; i++) out[u0 + i] = (uint16_t)(p[2 * i] | p[2 * i + 1] << 8);
    }
    return 0;
}

/* ---- verify ------------------------------------------------------------------------------ */

int hsadb_lexidx_verify(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, int *ok, char *why, size_t n,
                        uint64_t *bytes) {
    struct hsadb_lex_meta m;
    hsadb_lex_posting *got = NULL;
    size_t ng = 0, cg = 0, n_terms_stored = 0;
    uint16_t *dl = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    uint8_t kb[4];
    int rc;
    *ok = 0, *bytes = 0;
    snprintf(why, n, "?");
    if ((rc = hsadb_lexidx_meta_get(t, &m))) return rc;
    /* bytes and distinct terms stored */
    if ((rc = mdb_cursor_open(t->txn, t->lex, &cur))) return rc;
    be32(kb, t->id);
    k = (MDB_val){ 4, kb };
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 4 || get_be32(k.mv_data) != t->id) break;
        *bytes += k.mv_size + v.mv_size;
        const uint8_t *kd = k.mv_data;
        if (k.mv_size > 10 && kd[4] == 'T') {
            if (!prev || prev_len != k.mv_size - 4 || memcmp(prev, kd, prev_len)) n_terms_stored++;
            prev = kd, prev_len = k.mv_size - 4;
        }
    }
    mdb_cursor_close(cur);
    if (rc && rc != MDB_NOTFOUND) return rc;
    rc = 0;
    const uint64_t target = hsadb_lexidx_units(t->n_chunks);
    if (m.version != HSADB_LEX_VERSION && m.version != 0) {     /* 0: no index yet (n_units 0) */
        snprintf(why, n, "index version %u, this build writes %u", m.version, HSADB_LEX_VERSION);
        return 0;
    }
    if (m.n_units != target) {
        snprintf(why, n, "%llu units indexed, the memory's %llu chunks make %llu", (unsigned long long)m.n_units,
                 (unsigned long long)t->n_chunks, (unsigned long long)target);
        return 0;
    }
    if (target == 0) {
        *ok = n_terms_stored == 0;
        if (!*ok) snprintf(why, n, "%zu terms stored for a memory without complete units", n_terms_stored);
        return 0;
    }
    if ((rc = collect_units(w, t, 0, target))) return rc;
    if (n_terms_stored != w->n_ents) {
        snprintf(why, n, "%zu terms stored, the records give %zu", n_terms_stored, w->n_ents);
        return 0;
    }
    uint64_t sum = 0;
    if (!(dl = malloc((size_t)target * sizeof *dl))) return hsadb_fail(ENOMEM, "verify: out of memory");
    if ((rc = hsadb_lexidx_lengths(t, 0, target, dl))) goto out;
    for (uint64_t u = 0; u < target; u++) {
        sum += w->dl[u];
        if (dl[u] != w->dl[u]) {
            snprintf(why, n, "unit %llu: %u terms stored, %u in the records", (unsigned long long)u, dl[u], w->dl[u]);
            goto out;
        }
    }
    if (sum != m.n_terms) {
        snprintf(why, n, "meta counts %llu terms, the units %llu", (unsigned long long)m.n_terms,
                 (unsigned long long)sum);
        goto out;
    }
    for (size_t i = 0; i < w->n_ents; i++) {
        const struct ent *e = &w->ents[i];
        ng = 0;
        if ((rc = hsadb_lexidx_postings(t, w->arena + e->off, e->len, UINT64_MAX, &got, &ng, &cg))) goto out;
        size_t j = 0;
        uint32_t p;
        for (p = e->first; p != UINT32_MAX && j < ng; p = w->post[p].next, j++)
            if (got[j].unit != w->post[p].unit || got[j].tf != w->post[p].tf) break;
        if (p != UINT32_MAX || j != ng) {
            snprintf(why, n, "postings of term '%.*s' differ at entry %zu", (int)e->len, w->arena + e->off, j);
            goto out;
        }
    }
    *ok = 1;
    snprintf(why, n, "consistent");
out:
    free(got), free(dl);
    return rc;
}
