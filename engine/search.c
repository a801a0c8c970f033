/*
 * engine/search.c — passage search (lexical, model, hybrid) and the lexical index's upkeep.
 *
 * A search reads one consistent view (one store reader): the lexical index of the memory's
 * complete units (storage/lexidx.h), the bytes after them (tokenized here: at most 4 chunks and
 * the tail unless the index lags), and, for the model and hybrid modes, the model's retrieval
 * probability of every chunk (query.c) through the same reader.
 *
 *   units     256-byte pieces of the stream (4 chunks); the index keeps per term (unit, tf)
 *   passages  windows of W consecutive units starting at every unit: BM25 sees a window's tf as
 *             the sum of its units' and its length as the sum of theirs, so overlapping
 *             passages cost no index space
 *   ranking   BM25 per window; model probability summed over the window's chunks; hybrid =
 *             reciprocal rank fusion (k = 60) of the two top lists; hits never overlap (a window
 *             overlapping a better one is skipped)
 *   filters   allowed byte intervals (from the append records); a unit partly allowed is
 *             tokenized here on its allowed bytes instead of read from the index
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "lexical.h"
#include "lexidx.h"
#include "util.h"

#define MAX_QUESTION   65536
#define MAX_K          (1 << 20)
#define MAX_QTERMS     1024             /* distinct question terms used (the rest are ignored) */
#define RRF_K          60.0
#define FUSE_MIN       40               /* each signal's top list (the depth of the fusion): max(this, 4 k W) */
#define SCAN_MAX       ((uint64_t)64 << 20) /* bytes a search tokenizes itself, at most */
#define BUILD_UNITS    4096             /* units per transaction when building */
#define CTX_DEFAULT    256
#define DROP_KEYS      65536

/* ---- build and check ------------------------------------------------------------------- */

struct build_ctx {
    uint64_t done, total;
    int finished;
};

static int build_step(const hsadb_lexidx_txn *t, hsadb_lexidx_writer *w, void *ctx) {
    struct build_ctx *b = ctx;
    struct hsadb_lex_meta m;
    uint64_t n;
    int rc, stale, dropped;
    b->total = hsadb_lexidx_units(t->n_chunks);
    if ((rc = hsadb_lexidx_meta_get(t, &m))) return rc;
    if (m.version && (m.version != HSADB_LEX_VERSION || m.unit_bytes != HSADB_LEX_UNIT_CHUNKS * t->chunk_size)) {
        /* another version's index: drop it (in bounded steps), then build afresh */
        b->done = 0, b->finished = 0;
        return hsadb_lexidx_drop(t, DROP_KEYS, &dropped);
    }
    if ((rc = hsadb_lexidx_update(w, t, BUILD_UNITS, &n, &stale))) return rc;
    b->done = n;
    b->finished = n >= b->total;
    return 0;
}

int hsadb_lexical_catch_up(hsadb_store_writer *w, hsadb_progress_fn progress, void *ctx) {
    struct build_ctx b = {0};
    for (;;) {
        int rc = hsadb_store_writer_lex(w, build_step, &b);
        if (rc) return rc;
        if (progress && progress(ctx, b.done, b.total))
            return hsadb_fail(HSADB_ERR_CANCELLED, "lexical index build stopped at unit %llu of %llu",
                              (unsigned long long)b.done, (unsigned long long)b.total);
        if (b.finished) return 0;
    }
}

int hsadb_lexical_build(hsadb_db *db, const char *name, hsadb_progress_fn progress, void *ctx) {
    hsadb_store_writer *w;
    int rc;
    hsadb_clear_error();
    if (db->flags & HSADB_DB_RDONLY) return hsadb_fail(HSADB_ERR_READONLY, "database opened read-only");
    if ((rc = hsadb_store_writer_begin(db->store, name, hsadb_now(), &w, NULL))) return rc;
    rc = hsadb_lexical_catch_up(w, progress, ctx);
    hsadb_store_writer_end(w);
    return rc;
}

int hsadb_lexical_check(hsadb_db *db, const char *name, hsadb_lexical_info *out) {
    hsadb_store_reader *r;
    hsadb_lexidx_writer *w = NULL;
    struct hsadb_memory_rec rec;
    struct hsadb_lex_meta m;
    hsadb_lexidx_txn lt;
    int rc, ok;
    hsadb_clear_error();
    memset(out, 0, sizeof *out);
    if ((rc = hsadb_store_reader_begin(db->store, name, &r, &rec))) return rc;
    if ((rc = hsadb_store_reader_lex(r, &lt)) || (rc = hsadb_lexidx_writer_open(&w)) ||
        (rc = hsadb_lexidx_meta_get(&lt, &m)))
        goto done;
    out->units = hsadb_lexidx_units(rec.n_chunks);
    out->indexed_units = m.version == HSADB_LEX_VERSION ? m.n_units : 0;
    rc = hsadb_lexidx_verify(w, &lt, &ok, out->detail, sizeof out->detail, &out->index_bytes);
    out->consistent = ok;
done:
    hsadb_lexidx_writer_close(w);
    hsadb_store_reader_end(r);
    return rc;
}

/* ---- the search ------------------------------------------------------------------------ */

typedef struct qterm {
    uint32_t off, len;   /* bytes in the search's arena */
    uint32_t qtf;        /* occurrences in the question */
    uint32_t hash;
} qterm;

typedef struct wscore { float s; uint32_t w; } wscore;

typedef struct search {
    hsadb_db               *db;
    hsadb_store_reader     *r;
    struct hsadb_memory_rec rec;
    hsadb_lexidx_txn        lt;
    hsadb_lex_tok          *tok;
    hsadb_search_options    o;
    uint64_t                n_bytes, UB, U, W, N, n_idx;
    uint64_t               *iv;          /* allowed intervals [iv[2i], iv[2i+1]), sorted */
    size_t                  n_iv;
    int                     filtered;
    uint8_t                *ust;         /* per unit: 0 nothing allowed, 1 all, 2 partly (filtered) */
    /* question terms */
    char                   *qa;
    size_t                  qa_n;
    qterm                  *qt;
    size_t                  nq;
    uint32_t               *qtab;        /* open addressing over qt: index + 1 */
    size_t                  qtab_cap;
    int                     q_full;      /* MAX_QTERMS reached */
    /* units tokenized here ("live") */
    uint64_t               *live;
    size_t                  n_live;
    uint32_t               *live_tf;     /* [n_live][nq] */
    size_t                  cur_live;
    uint16_t               *dl;          /* [U] terms per unit */
    uint64_t                live_terms_open;  /* terms of live units past the index */
    uint8_t                *buf;         /* stream bytes read for tokenizing / hit text */
    size_t                  buf_cap;
    uint64_t                scanned;
    /* scores over windows */
    float                  *lex, *wtf, *mod;
    uint32_t               *touched;
    uint32_t               *cand;        /* windows with a lexical score */
    uint8_t                *dl_loaded;   /* per 'L' block: its lengths are in dl */
    struct tlist           *terms;       /* question terms with postings, rarest first */
    size_t                  n_terms;
    double                  avg_w;       /* mean passage length in terms */
    float                  *chunk_p;
} search;

static uint32_t hash32(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static long qterm_find(const search *s, const char *t, size_t len, uint32_t h) {
    if (!s->qtab_cap) return -1;
    for (size_t j = h & (s->qtab_cap - 1); s->qtab[j]; j = (j + 1) & (s->qtab_cap - 1)) {
        const qterm *q = &s->qt[s->qtab[j] - 1];
        if (q->hash == h && q->len == len && memcmp(s->qa + q->off, t, len) == 0) return (long)s->qtab[j] - 1;
    }
    return -1;
}

/* Emit of the question's terms: distinct terms with their counts. */
static int add_qterm(void *ctx, const char *t, size_t len, size_t start, int whole) {
    search *s = ctx;
    const uint32_t h = hash32(t, len);
    long i = qterm_find(s, t, len, h);
    if (i >= 0) {
        s->qt[i].qtf++;
        return 0;
    }
    if (s->nq == MAX_QTERMS) {
        s->q_full = 1;
        return 0;
    }
    memcpy(s->qa + s->qa_n, t, len);
    s->qt[s->nq] = (qterm){ (uint32_t)s->qa_n, (uint32_t)len, 1, h };
    s->qa_n += len;
    size_t j = h & (s->qtab_cap - 1);
    while (s->qtab[j]) j = (j + 1) & (s->qtab_cap - 1);
    s->qtab[j] = (uint32_t)++s->nq;
    return 0;
}

/* Emit of a live unit's terms: its length, and the tf of question terms. */
static int count_live(void *ctx, const char *t, size_t len, size_t start, int whole) {
    search *s = ctx;
    const uint64_t u = s->live[s->cur_live];
    if (!whole && s->dl[u] < UINT16_MAX) s->dl[u]++;       /* as the index counts */
    long i = qterm_find(s, t, len, hash32(t, len));
    if (i >= 0) s->live_tf[s->cur_live * s->nq + (size_t)i]++;
    return 0;
}

/* Reads stream bytes [a, b) (b <= n_bytes) into s->buf through the reader. */
static int read_bytes(search *s, uint64_t a, uint64_t b) {
    const uint64_t S = s->rec.chunk_size, stored = s->rec.n_chunks * S;
    int rc;
    if (b - a > s->buf_cap) {
        uint8_t *p = realloc(s->buf, (size_t)(b - a));
        if (!p) return hsadb_fail(ENOMEM, "search: out of memory");
        s->buf = p, s->buf_cap = (size_t)(b - a);
    }
    for (uint64_t x = a; x < b;) {
        if (x < stored) {
            struct hsadb_chunk_meta meta;
            const uint8_t *bytes;
            if ((rc = hsadb_store_reader_chunk(s->r, x / S, &meta, &bytes))) return rc;
            uint64_t in = x % S, take = S - in < b - x ? S - in : b - x;
            memcpy(s->buf + (x - a), bytes + in, (size_t)take);
            x += take;
        } else {
            const void *blob;
            const uint8_t *tb;
            size_t len, n_ctx;
            if ((rc = hsadb_store_reader_tail(s->r, &blob, &len)) || (rc = hsadb_tail_blob_bytes(blob, len, &tb, &n_ctx)))
                return rc;
            if (s->n_bytes - x > n_ctx)
                return hsadb_fail(HSADB_ERR_CORRUPT, "search: the tail does not hold byte %llu",
                                  (unsigned long long)x);
            memcpy(s->buf + (x - a), tb + (n_ctx - (s->n_bytes - x)), (size_t)(b - x));
            x = b;
        }
    }
    return 0;
}

/* ---- filters: allowed byte intervals ---- */

static int iv_push(search *s, uint64_t a, uint64_t b, size_t *cap) {
    if (a >= b) return 0;
    if (s->n_iv && s->iv[2 * s->n_iv - 1] == a) {   /* contiguous with the last: merge */
        s->iv[2 * s->n_iv - 1] = b;
        return 0;
    }
    if (s->n_iv == *cap) {
        size_t c = *cap ? 2 * *cap : 16;
        uint64_t *p = realloc(s->iv, 2 * c * sizeof *p);
        if (!p) return hsadb_fail(ENOMEM, "search: out of memory");
        s->iv = p, *cap = c;
    }
    s->iv[2 * s->n_iv] = a, s->iv[2 * s->n_iv + 1] = b;
    s->n_iv++;
    return 0;
}

static int filters(search *s) {
    const hsadb_search_options *o = &s->o;
    size_t cap = 0;
    int rc;
    s->filtered = o->first_append || o->last_append || o->as_of_append || o->time_from || o->time_to;
    if (!s->filtered) return iv_push(s, 0, s->n_bytes, &cap);
    uint64_t a0 = o->first_append ? o->first_append : 1, a1 = s->rec.n_appends;
    if (o->last_append && o->last_append < a1) a1 = o->last_append;
    if (o->as_of_append && o->as_of_append < a1) a1 = o->as_of_append;
    for (uint64_t a = a0; a <= a1; a++) {
        struct hsadb_append_rec ar;
        if ((rc = hsadb_store_reader_append(s->r, a, &ar))) return rc;
        if ((o->time_from && ar.time_start < o->time_from) || (o->time_to && ar.time_start > o->time_to)) continue;
        uint64_t e = ar.start_offset + ar.bytes < s->n_bytes ? ar.start_offset + ar.bytes : s->n_bytes;
        if ((rc = iv_push(s, ar.start_offset, e, &cap))) return rc;
        if (!o->time_from && !o->time_to && a < a1) {      /* an append range is contiguous */
            struct hsadb_append_rec last;
            if ((rc = hsadb_store_reader_append(s->r, a1, &last))) return rc;
            e = last.start_offset + last.bytes < s->n_bytes ? last.start_offset + last.bytes : s->n_bytes;
            s->iv[2 * s->n_iv - 1] = e;
            break;
        }
    }
    if (!(s->ust = calloc((size_t)s->U + 1, 1))) return hsadb_fail(ENOMEM, "search: out of memory");
    for (size_t i = 0; i < s->n_iv; i++) {
        const uint64_t a = s->iv[2 * i], b = s->iv[2 * i + 1];
        for (uint64_t u = a / s->UB; u < s->U && u * s->UB < b; u++) {
            const uint64_t ua = u * s->UB, ub = (u + 1) * s->UB < s->n_bytes ? (u + 1) * s->UB : s->n_bytes;
            s->ust[u] = a <= ua && b >= ub && s->ust[u] == 0 ? 1 : 2;
        }
    }
    return 0;
}

/* The allowed interval holding byte x, or the nearest after it; [*a, *b). */
static void iv_at(const search *s, uint64_t x, uint64_t *a, uint64_t *b) {
    for (size_t i = 0; i < s->n_iv; i++)
        if (s->iv[2 * i + 1] > x) {
            *a = s->iv[2 * i], *b = s->iv[2 * i + 1];
            return;
        }
    *a = *b = s->n_bytes;
}

/* ---- units tokenized at search time ---- */

static int live_units(search *s) {
    size_t cap = 0;
    int rc;
    for (uint64_t u = 0; u < s->U; u++) {
        const int st = s->ust ? s->ust[u] : 1;
        if (st == 0 || (u < s->n_idx && st == 1)) continue;
        if (s->n_live == cap) {
            cap = cap ? 2 * cap : 16;
            uint64_t *p = realloc(s->live, cap * sizeof *p);
            if (!p) return hsadb_fail(ENOMEM, "search: out of memory");
            s->live = p;
        }
        s->live[s->n_live++] = u;
    }
    if (!(s->live_tf = calloc(s->n_live * (s->nq ? s->nq : 1) + 1, sizeof *s->live_tf)))
        return hsadb_fail(ENOMEM, "search: out of memory");
    for (size_t i = 0; i < s->n_live; i++) {
        const uint64_t u = s->live[i], ua = u * s->UB, ub = (u + 1) * s->UB < s->n_bytes ? (u + 1) * s->UB : s->n_bytes;
        s->cur_live = i;
        s->dl[u] = 0;
        for (size_t j = 0; j < s->n_iv; j++) {          /* each allowed piece of the unit */
            const uint64_t a = s->iv[2 * j], b = s->iv[2 * j + 1];
            if (b <= ua || a >= ub) continue;
            const uint64_t from = a > ua ? a : ua, to = b < ub ? b : ub;
            const uint64_t ta = from >= a + 64 ? from - 64 : a, tb = to + 64 <= b ? to + 64 : b;
            if ((rc = read_bytes(s, ta, tb))) return rc;
            s->scanned += to - from;
            if ((rc = hsadb_lex_terms(s->tok, s->buf, (size_t)(tb - ta), (size_t)(from - ta), (size_t)(to - ta),
                                      count_live, s)))
                return rc;
        }
        if (u >= s->n_idx) s->live_terms_open += s->dl[u];
    }
    return 0;
}

/* ---- top lists ---- */

/* Better: higher score, then the newer window. */
static int better(const wscore *a, const wscore *b) { return a->s > b->s || (a->s == b->s && a->w > b->w); }

static void heap_down(wscore *h, size_t n, size_t i) {     /* min-heap by `better` */
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && better(&h[m], &h[l])) m = l;
        if (l + 1 < n && better(&h[m], &h[l + 1])) m = l + 1;
        if (m == i) return;
        wscore t = h[i];
        h[i] = h[m], h[m] = t, i = m;
    }
}

static int cmp_best(const void *a, const void *b) {
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* The top m windows (score > 0) of sc[0..N) into top (sorted best first); returns how many. When
 * cand is given, only windows listed in cand[0..nc) are considered. */
static size_t top_list(const float *sc, uint64_t N, const uint32_t *cand, size_t nc, size_t m, wscore *top) {
    size_t n = 0;
    const uint64_t total = cand ? nc : N;
    for (uint64_t i = 0; i < total; i++) {
        const uint32_t w = cand ? cand[i] : (uint32_t)i;
        const wscore x = { sc[w], w };
        if (!(x.s > 0)) continue;
        if (n < m) {
            top[n++] = x;
            if (n == m)
                for (size_t j = m / 2 + 1; j-- > 0;) heap_down(top, m, j);
        } else if (better(&x, &top[0])) {
            top[0] = x;
            heap_down(top, m, 0);
        }
    }
    qsort(top, n, sizeof *top, cmp_best);
    return n;
}

/* ---- lexical scoring ---- */

/* The term count of unit u: indexed units' come from the 'L' records, loaded by block on first
 * use (units that are live or not allowed keep what live_units / the filters set). */
static int unit_dl(search *s, uint64_t u, double *out) {
    if (u < s->n_idx && !s->dl_loaded[u / HSADB_LEX_LEN_BLOCK]) {
        const uint64_t b0 = u / HSADB_LEX_LEN_BLOCK * HSADB_LEX_LEN_BLOCK;
        const uint64_t n = s->n_idx - b0 < HSADB_LEX_LEN_BLOCK ? s->n_idx - b0 : HSADB_LEX_LEN_BLOCK;
        uint16_t tmp[HSADB_LEX_LEN_BLOCK];
        int rc = hsadb_lexidx_lengths(&s->lt, b0, n, tmp - b0);
        if (rc) return rc;
        for (uint64_t x = b0; x < b0 + n; x++)
            if (!s->ust || s->ust[x] == 1) s->dl[x] = tmp[x - b0];
        s->dl_loaded[u / HSADB_LEX_LEN_BLOCK] = 1;
    }
    *out = s->dl[u];
    return 0;
}

static int window_dl(search *s, uint64_t w, double *out) {
    double sum = 0, d;
    int rc;
    for (uint64_t u = w; u < w + s->W && u < s->U; u++) {
        if ((rc = unit_dl(s, u, &d))) return rc;
        sum += d;
    }
    *out = sum;
    return 0;
}

/* A question term's postings (index and live units, ascending) and its BM25 weight. */
typedef struct tlist {
    hsadb_lex_posting *pl;
    size_t             n;
    double             idf;   /* idf x occurrences in the question */
    double             ub;    /* the most it adds to a window: idf (k1 + 1) */
} tlist;

static int by_idf(const void *a, const void *b) {
    const tlist *x = a, *y = b;
    return (x->idf < y->idf) - (x->idf > y->idf);
}

/* tf of the term in window w (units w .. w+W-1), by binary search in its postings. */
static uint32_t window_tf(const search *s, const tlist *t, uint64_t w) {
    size_t lo = 0, hi = t->n;
    uint32_t tf = 0;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (t->pl[mid].unit < w) lo = mid + 1;
        else hi = mid;
    }
    for (; lo < t->n && t->pl[lo].unit < w + s->W; lo++) tf += t->pl[lo].tf;
    return tf;
}

/* The M-th best score among the candidates so far (0 if fewer). */
static float kth_score(search *s, size_t nc, size_t m, wscore *scratch) {
    if (nc < m) return 0;
    size_t n = top_list(s->lex, s->N, s->cand, nc, m, scratch);
    return n == m ? scratch[m - 1].s : 0;
}

/*
 * BM25 of every window that holds a question term, term at a time, rarest first (MaxScore):
 * once the terms left could add less to a window than the M-th best score so far, no window
 * outside the candidates can reach the top M, and the remaining (frequent) terms only update
 * the candidates, by binary search in their postings. The top M (and every candidate's score)
 * are exact. The postings stay in s->terms for the exact score of other windows (hits).
 */
static int score_lexical(search *s, size_t m, size_t *n_cand) {
    size_t nc = 0;
    int rc = 0;
    const double k1 = s->o.bm25_k1, b = s->o.bm25_b;
    double total_terms = s->live_terms_open;
    {
        struct hsadb_lex_meta meta;
        if (s->n_idx && (rc = hsadb_lexidx_meta_get(&s->lt, &meta))) return rc;
        if (s->n_idx) total_terms += (double)meta.n_terms;
    }
    s->avg_w = s->U ? (double)s->W * total_terms / (double)s->U : 1.0;
    if (!(s->terms = calloc(s->nq + 1, sizeof *s->terms))) return hsadb_fail(ENOMEM, "search: out of memory");
    for (size_t q = 0; q < s->nq; q++) {              /* postings, df and idf of each term */
        const qterm *qt = &s->qt[q];
        tlist *t = &s->terms[s->n_terms];
        size_t cap = 0;
        if (s->n_idx && (rc = hsadb_lexidx_postings(&s->lt, s->qa + qt->off, qt->len, s->n_idx, &t->pl, &t->n, &cap)))
            return rc;
        s->n_terms++;                                  /* owns t->pl from here on */
        if (s->ust) {                                  /* units not wholly allowed are live */
            size_t k = 0;
            for (size_t i = 0; i < t->n; i++)
                if (s->ust[t->pl[i].unit] == 1) t->pl[k++] = t->pl[i];
            t->n = k;
        }
        int sorted = 1;
        for (size_t i = 0; i < s->n_live; i++) {
            const uint32_t tf = s->live_tf[i * s->nq + q];
            if (!tf) continue;
            if (t->n == cap) {
                size_t c = cap ? 2 * cap : 64;
                hsadb_lex_posting *p = realloc(t->pl, c * sizeof *p);
                if (!p) return hsadb_fail(ENOMEM, "search: out of memory");
                t->pl = p, cap = c;
            }
            if (t->n && t->pl[t->n - 1].unit > s->live[i]) sorted = 0;
            t->pl[t->n++] = (hsadb_lex_posting){ (uint32_t)s->live[i], tf };
        }
        if (!sorted)                                   /* the few partly allowed units */
            for (size_t i = 1; i < t->n; i++) {
                hsadb_lex_posting x = t->pl[i];
                size_t j = i;
                while (j > 0 && t->pl[j - 1].unit > x.unit) t->pl[j] = t->pl[j - 1], j--;
                t->pl[j] = x;
            }
        uint64_t df = 0, covered = 0;                  /* windows holding the term */
        for (size_t i = 0; i < t->n; i++) {
            const uint64_t u = t->pl[i].unit;
            const uint64_t lo = u + 1 >= s->W ? u + 1 - s->W : 0, hi = u < s->N - 1 ? u : s->N - 1;
            if (lo > hi) continue;
            const uint64_t from = lo > covered ? lo : covered;
            if (hi + 1 > from) df += hi + 1 - from;
            if (hi + 1 > covered) covered = hi + 1;
        }
        t->idf = df ? hsadb_bm25_idf((double)s->N, (double)df) * qt->qtf : 0;
        t->ub = t->idf * (k1 + 1.0);
    }
    qsort(s->terms, s->n_terms, sizeof *s->terms, by_idf);
    double left = 0;
    for (size_t q = 0; q < s->n_terms; q++) left += s->terms[q].ub;
    wscore *scratch = malloc((m + 1) * sizeof *scratch);
    if (!scratch) return hsadb_fail(ENOMEM, "search: out of memory");
    int update_only = 0;
    for (size_t q = 0; q < s->n_terms && !rc; q++) {
        const tlist *t = &s->terms[q];
        if (!update_only && t->n > 4096 && left < kth_score(s, nc, m, scratch)) update_only = 1;
        left -= t->ub;
        if (t->n == 0 || t->idf <= 0) continue;
        size_t nt = 0;
        for (size_t i = 0; i < t->n; i++) {
            const uint64_t u = t->pl[i].unit;
            const uint64_t lo = u + 1 >= s->W ? u + 1 - s->W : 0, hi = u < s->N - 1 ? u : s->N - 1;
            for (uint64_t w = lo; w <= hi; w++) {
                if (update_only && s->lex[w] == 0) continue;   /* only candidates can make the top M */
                if (s->wtf[w] == 0) s->touched[nt++] = (uint32_t)w;
                s->wtf[w] += (float)t->pl[i].tf;
            }
        }
        for (size_t i = 0; i < nt; i++) {
            const uint32_t w = s->touched[i];
            double dlw;
            if ((rc = window_dl(s, w, &dlw))) break;
            const double add = t->idf * hsadb_bm25_tf(s->wtf[w], dlw, s->avg_w, k1, b);
            s->wtf[w] = 0;
            if (s->lex[w] == 0 && add > 0) s->cand[nc++] = w;
            s->lex[w] += (float)add;
        }
    }
    free(scratch);
    *n_cand = nc;
    return rc;
}

/* The exact BM25 of window w (a hit the lexical top list does not hold). */
static int lexical_of(search *s, uint32_t w, float *out) {
    double sum = 0, dlw;
    int rc;
    *out = 0;
    if (!s->terms) return 0;
    if ((rc = window_dl(s, w, &dlw))) return rc;
    for (size_t q = 0; q < s->n_terms; q++) {
        const uint32_t tf = window_tf(s, &s->terms[q], w);
        if (tf) sum += s->terms[q].idf * hsadb_bm25_tf(tf, dlw, s->avg_w, s->o.bm25_k1, s->o.bm25_b);
    }
    *out = (float)sum;
    return 0;
}

/* ---- hit text ---- */

/* A line or sentence ends before p[j] (j >= 1): a newline, or . ? ! and a space. */
static int is_end(const uint8_t *p, size_t j) {
    if (j == 0) return 0;
    if (p[j - 1] == '\n') return 1;
    return j >= 2 && (p[j - 1] == ' ' || p[j - 1] == '\t') && (p[j - 2] == '.' || p[j - 2] == '?' || p[j - 2] == '!');
}

/* Grows [a, b) to the nearest line/sentence ends within ctx bytes and the interval [lo, hi)
 * (the whole context where none is found, cut to whole UTF-8 characters). */
static int hit_text(search *s, uint64_t a, uint64_t b, uint64_t lo, uint64_t hi, uint64_t *ta, uint64_t *tb) {
    const uint64_t ctx = s->o.context_bytes < 0 ? 0 : (uint64_t)s->o.context_bytes;
    const uint64_t ra = a >= lo + ctx ? a - ctx : lo, rb = b + ctx <= hi ? b + ctx : hi;
    int rc;
    uint64_t x = a, y = b;
    *ta = a, *tb = b;
    if (!ctx) return 0;
    if ((rc = read_bytes(s, ra, rb))) return rc;
    const uint8_t *p = s->buf;
    if (a > lo && !is_end(p, (size_t)(a - ra))) {
        x = ra;
        for (uint64_t i = a - 1; i > ra; i--)
            if (is_end(p, (size_t)(i - ra))) { x = i; break; }
        if (x == ra && ra > lo)
            while (x < a && (p[x - ra] & 0xc0) == 0x80) x++;   /* start on a whole character */
    }
    if (b < hi && !is_end(p, (size_t)(b - ra))) {
        y = rb;
        for (uint64_t i = b + 1; i < rb; i++)
            if (is_end(p, (size_t)(i - ra))) { y = i; break; }
        if (y == rb && rb < hi)
            while (y > b && (p[y - ra] & 0xc0) == 0x80) y--;    /* end before a cut character */
    }
    *ta = x, *tb = y;
    return 0;
}

/* The append holding byte x (binary search over the append records, which tile the stream). */
static int append_of(search *s, uint64_t x, uint64_t *id, int64_t *t) {
    uint64_t lo = 1, hi = s->rec.n_appends;
    struct hsadb_append_rec ar;
    int rc;
    *id = 0, *t = 0;
    while (lo < hi) {
        const uint64_t mid = lo + (hi - lo + 1) / 2;
        if ((rc = hsadb_store_reader_append(s->r, mid, &ar))) return rc;
        if (ar.start_offset <= x) lo = mid;
        else hi = mid - 1;
    }
    if (lo >= 1 && lo <= s->rec.n_appends) {
        if ((rc = hsadb_store_reader_append(s->r, lo, &ar))) return rc;
        *id = lo, *t = ar.time_start;
    }
    return 0;
}

/* ---- the entry point ---- */

typedef struct hits_box {
    hsadb_passages pub;
    uint8_t       *arena;
} hits_box;

typedef struct fused { uint32_t w; int lr, mr; float s; } fused;

static int cmp_fused(const void *a, const void *b) {
    const fused *x = a, *y = b;
    if (x->s != y->s) return x->s > y->s ? -1 : 1;
    return (x->w < y->w) - (x->w > y->w);
}

static void search_free(search *s) {
    hsadb_lex_tok_close(s->tok);
    free(s->iv), free(s->ust), free(s->qa), free(s->qt), free(s->qtab), free(s->live), free(s->live_tf);
    free(s->dl), free(s->buf), free(s->lex), free(s->wtf), free(s->mod), free(s->touched), free(s->chunk_p);
    free(s->cand), free(s->dl_loaded);
    for (size_t i = 0; s->terms && i < s->n_terms; i++) free(s->terms[i].pl);
    free(s->terms);
}

static int check_options(hsadb_search_options *o) {
    if (o->mode < HSADB_SEARCH_HYBRID || o->mode > HSADB_SEARCH_MODEL)
        return hsadb_fail(HSADB_ERR_INVALID, "search mode %d is not hybrid (0), lexical (1) or model (2)", o->mode);
    if (o->k == 0) o->k = 8;
    if (o->k < 1 || o->k > MAX_K) return hsadb_fail(HSADB_ERR_INVALID, "k = %d: expected 1..%d", o->k, MAX_K);
    if (o->bm25_k1 == 0) o->bm25_k1 = 1.2f, o->bm25_b = 0.75f;
    if (!(o->bm25_k1 > 0 && o->bm25_k1 <= 100) || !(o->bm25_b >= 0 && o->bm25_b <= 1))
        return hsadb_fail(HSADB_ERR_INVALID, "BM25 k1 = %g, b = %g: expected 0 < k1 <= 100, 0 <= b <= 1",
                          o->bm25_k1, o->bm25_b);
    if (o->passage_bytes == 0) o->passage_bytes = 512;
    const int ub = HSADB_LEX_UNIT_CHUNKS * 64;
    if (o->passage_bytes < ub || o->passage_bytes > 16 * ub || o->passage_bytes % ub)
        return hsadb_fail(HSADB_ERR_INVALID, "passage_bytes = %d: expected a multiple of %d in %d..%d",
                          o->passage_bytes, ub, ub, 16 * ub);
    if (o->context_bytes == 0) o->context_bytes = CTX_DEFAULT;
    if (o->context_bytes != HSADB_SEARCH_NO_CONTEXT && (o->context_bytes < 0 || o->context_bytes > 65536))
        return hsadb_fail(HSADB_ERR_INVALID, "context_bytes = %d: expected 0..65536 or HSADB_SEARCH_NO_CONTEXT",
                          o->context_bytes);
    if (o->time_from && o->time_to && o->time_from > o->time_to)
        return hsadb_fail(HSADB_ERR_INVALID, "time_from %lld is after time_to %lld", (long long)o->time_from,
                          (long long)o->time_to);
    if (o->first_append && o->last_append && o->first_append > o->last_append)
        return hsadb_fail(HSADB_ERR_INVALID, "first_append %llu is after last_append %llu",
                          (unsigned long long)o->first_append, (unsigned long long)o->last_append);
    return 0;
}

int hsadb_search_passages(hsadb_db *db, const char *name, const char *question, size_t qlen,
                          const hsadb_search_options *opts, hsadb_passages **out) {
    search s;
    hits_box *box = NULL;
    wscore *ltop = NULL, *mtop = NULL;
    fused *fu = NULL;
    uint8_t *taken = NULL;
    size_t nl = 0, nm = 0, nf = 0, n_cand = 0;
    int rc;
    *out = NULL;
    hsadb_clear_error();
    memset(&s, 0, sizeof s);
    s.o = opts ? *opts : (hsadb_search_options){0};
    if (!question || qlen == 0) return hsadb_fail(HSADB_ERR_INVALID, "empty question");
    if (qlen > MAX_QUESTION) return hsadb_fail(HSADB_ERR_INVALID, "question of %zu bytes: at most %d", qlen, MAX_QUESTION);
    if ((rc = check_options(&s.o))) return rc;
    if (s.o.mode != HSADB_SEARCH_LEXICAL && !db->model)
        return hsadb_fail(HSADB_ERR_NO_MODEL, "search mode %s needs a model", s.o.mode ? "model" : "hybrid");
    s.db = db;
    if ((rc = hsadb_store_reader_begin(db->store, name, &s.r, &s.rec))) return rc;
    if (s.o.mode != HSADB_SEARCH_LEXICAL && (rc = hsadb_db_check_memory(db, name, &s.rec))) goto done;
    s.n_bytes = s.rec.n_bytes;
    s.UB = (uint64_t)HSADB_LEX_UNIT_CHUNKS * s.rec.chunk_size;
    s.U = (s.n_bytes + s.UB - 1) / s.UB;
    s.W = (uint64_t)s.o.passage_bytes / (HSADB_LEX_UNIT_CHUNKS * 64);
    s.N = s.U == 0 ? 0 : s.U > s.W ? s.U - s.W + 1 : 1;
    if (s.U > UINT32_MAX - 1) { rc = hsadb_fail(HSADB_ERR_INVALID, "memory %s is too large to search", name); goto done; }
    rc = hsadb_store_reader_lex(s.r, &s.lt);
    if (rc == 0) {
        struct hsadb_lex_meta m;
        if ((rc = hsadb_lexidx_meta_get(&s.lt, &m))) goto done;
        if (m.version == HSADB_LEX_VERSION && m.unit_bytes == s.UB) s.n_idx = m.n_units;
        const uint64_t cap = hsadb_lexidx_units(s.rec.n_chunks);
        if (s.n_idx > cap) s.n_idx = cap;
    } else if (rc == HSADB_ERR_NOTFOUND) {
        rc = 0;                                         /* an old read-only store: scan it all */
    } else {
        goto done;
    }
    rc = ENOMEM;
    if (hsadb_lex_tok_open(&s.tok) || !(s.qa = malloc(qlen * 4 + 16)) || !(s.qt = calloc(MAX_QTERMS, sizeof *s.qt)) ||
        !(s.qtab = calloc(4 * MAX_QTERMS, sizeof *s.qtab)) || !(s.dl = calloc((size_t)s.U + 1, sizeof *s.dl)) ||
        !(s.lex = calloc((size_t)s.N + 1, sizeof *s.lex)) || !(s.wtf = calloc((size_t)s.N + 1, sizeof *s.wtf)) ||
        !(s.mod = calloc((size_t)s.N + 1, sizeof *s.mod)) || !(s.touched = malloc(((size_t)s.N + 1) * 4)) || !(s.cand = malloc(((size_t)s.N + 1) * 4)) ||
        !(s.dl_loaded = calloc((size_t)(s.U / HSADB_LEX_LEN_BLOCK) + 1, 1)) ||
        (s.o.mode != HSADB_SEARCH_LEXICAL && !(s.chunk_p = calloc((size_t)s.rec.n_chunks + 1, sizeof *s.chunk_p)))) {
        rc = hsadb_fail(ENOMEM, "search: out of memory");
        goto done;
    }
    s.qtab_cap = 4 * MAX_QTERMS;
    if ((rc = filters(&s))) goto done;
    if (s.o.mode != HSADB_SEARCH_MODEL &&
        s.n_bytes - (s.n_idx * s.UB < s.n_bytes ? s.n_idx * s.UB : s.n_bytes) > SCAN_MAX) {
        rc = hsadb_fail(HSADB_ERR_INVALID, "memory %s: %llu bytes are not lexically indexed yet (written before "
                        "the index existed): run `hsadb reindex %s` or append to it once", name,
                        (unsigned long long)(s.n_bytes - s.n_idx * s.UB), name);
        goto done;
    }
    const size_t M0 = (size_t)(4 * (uint64_t)s.o.k * s.W) > FUSE_MIN ? (size_t)(4 * (uint64_t)s.o.k * s.W) : FUSE_MIN;
    const size_t M = M0 < s.N ? M0 : (size_t)s.N;
    /* lexical signal */
    if (s.o.mode != HSADB_SEARCH_MODEL && s.N) {
        if ((rc = hsadb_lex_terms(s.tok, (const uint8_t *)question, qlen, 0, qlen, add_qterm, &s))) goto done;
        if ((rc = live_units(&s))) goto done;       /* lengths of indexed units load on demand */
        if (s.nq && (rc = score_lexical(&s, M, &n_cand))) goto done;
        if (!(ltop = malloc((M + 1) * sizeof *ltop))) { rc = hsadb_fail(ENOMEM, "search: out of memory"); goto done; }
        nl = top_list(s.lex, s.N, s.cand, n_cand, M, ltop);
    }
    /* model signal: probability summed over each window's chunks (allowed ones) */
    if (s.o.mode != HSADB_SEARCH_LEXICAL && s.N && s.rec.n_chunks) {
        if ((rc = hsadb_model_chunk_scores(db, name, s.r, &s.rec, question, qlen, s.o.cancel,
                                               s.o.cancel_ctx, s.chunk_p))) goto done;
        const uint64_t per = HSADB_LEX_UNIT_CHUNKS, S = s.rec.chunk_size;
        if (s.ust)
            for (uint64_t c = 0; c < s.rec.n_chunks; c++) {
                uint64_t a, b;
                iv_at(&s, c * S, &a, &b);
                if (!(a < (c + 1) * S && b > c * S)) s.chunk_p[c] = 0;
            }
        for (uint64_t w = 0; w < s.N; w++) {
            double sum = 0;
            for (uint64_t c = w * per; c < (w + s.W) * per && c < s.rec.n_chunks; c++) sum += s.chunk_p[c];
            s.mod[w] = (float)sum;
        }
        if (!(mtop = malloc((M + 1) * sizeof *mtop))) { rc = hsadb_fail(ENOMEM, "search: out of memory"); goto done; }
        nm = top_list(s.mod, s.N, NULL, 0, M, mtop);
    }
    /* the ranking of the mode */
    if (!(fu = calloc(nl + nm + 1, sizeof *fu)) || !(taken = calloc((size_t)s.N + 1, 1))) {
        rc = hsadb_fail(ENOMEM, "search: out of memory");
        goto done;
    }
    {
        /* ranks by window: reuse wtf (all zero again) as the lexical rank, touched as the fused slot */
        for (size_t i = 0; i < nl; i++) {
            fu[nf] = (fused){ ltop[i].w, (int)i + 1, 0, 0 };
            s.wtf[ltop[i].w] = (float)(nf + 1);
            nf++;
        }
        for (size_t i = 0; i < nm; i++) {
            const uint32_t w = mtop[i].w;
            if (s.wtf[w] > 0) fu[(size_t)s.wtf[w] - 1].mr = (int)i + 1;
            else fu[nf++] = (fused){ w, 0, (int)i + 1, 0 };
        }
        for (size_t i = 0; i < nl; i++) s.wtf[ltop[i].w] = 0;
        for (size_t i = 0; i < nf; i++) {
            fused *f = &fu[i];
            if (s.o.mode == HSADB_SEARCH_LEXICAL) f->s = s.lex[f->w];
            else if (s.o.mode == HSADB_SEARCH_MODEL) f->s = s.mod[f->w];
            else f->s = (float)((f->lr ? 1.0 / (RRF_K + f->lr) : 0) + (f->mr ? 1.0 / (RRF_K + f->mr) : 0));
        }
        qsort(fu, nf, sizeof *fu, cmp_fused);
    }
    /* hits: the best windows that overlap no better one */
    if (!(box = calloc(1, sizeof *box)) || !(box->pub.hits = calloc((size_t)s.o.k + 1, sizeof *box->pub.hits))) {
        rc = hsadb_fail(ENOMEM, "search: out of memory");
        goto done;
    }
    size_t nh = 0, arena_n = 0, arena_cap = 0;
    uint64_t *tr = NULL;   /* text ranges of the hits: [ta, tb) per hit, read again below */
    if (!(tr = malloc(((size_t)s.o.k + 1) * 2 * sizeof *tr))) { rc = hsadb_fail(ENOMEM, "search: out of memory"); goto done; }
    for (size_t i = 0; i < nf && nh < (size_t)s.o.k; i++) {
        const uint32_t w = fu[i].w;
        if (taken[w]) continue;
        for (uint64_t j = w + 1 >= s.W ? w + 1 - s.W : 0; j < w + s.W && j < s.N; j++) taken[j] = 1;
        uint64_t a = (uint64_t)w * s.UB, b = ((uint64_t)w + s.W) * s.UB < s.n_bytes ? ((uint64_t)w + s.W) * s.UB : s.n_bytes;
        uint64_t lo = 0, hi = s.n_bytes;
        if (s.filtered) {                               /* cut to the allowed bytes */
            iv_at(&s, a, &lo, &hi);
            if (lo >= b) continue;
            if (a < lo) a = lo;
            if (b > hi) b = hi;
        }
        hsadb_passage_hit *h = &box->pub.hits[nh];
        h->start = a, h->end = b;
        h->score = fu[i].s;
        h->lexical_score = s.lex[w];
        if (fu[i].lr == 0 && s.o.mode == HSADB_SEARCH_HYBRID && (rc = lexical_of(&s, w, &h->lexical_score))) break;
        h->model_score = s.mod[w];
        h->lexical_rank = fu[i].lr, h->model_rank = fu[i].mr;
        if ((rc = append_of(&s, a, &h->append_id, &h->time))) break;
        int64_t t_end;
        if ((rc = append_of(&s, b - 1, &h->last_append_id, &t_end))) break;
        if ((rc = hit_text(&s, a, b, lo, hi, &tr[2 * nh], &tr[2 * nh + 1]))) break;
        h->text_start = tr[2 * nh];
        arena_cap += (size_t)(tr[2 * nh + 1] - tr[2 * nh]);
        nh++;
    }
    if (!rc && !(box->arena = malloc(arena_cap + 1))) rc = hsadb_fail(ENOMEM, "search: out of memory");
    for (size_t i = 0; !rc && i < nh; i++) {
        hsadb_passage_hit *h = &box->pub.hits[i];
        if ((rc = read_bytes(&s, tr[2 * i], tr[2 * i + 1]))) break;
        h->text = box->arena + arena_n;
        h->text_len = (size_t)(tr[2 * i + 1] - tr[2 * i]);
        memcpy(box->arena + arena_n, s.buf, h->text_len);
        arena_n += h->text_len;
    }
    free(tr);
    if (rc) goto done;
    box->pub.n = nh;
    box->pub.scanned_bytes = s.scanned;
    *out = &box->pub;
    box = NULL;
done:
    if (box) hsadb_passages_free(&box->pub);
    free(ltop), free(mtop), free(fu), free(taken);
    hsadb_store_reader_end(s.r);
    search_free(&s);
    return rc;
}

void hsadb_passages_free(hsadb_passages *p) {
    if (!p) return;
    hits_box *box = (hits_box *)p;
    free(p->hits);
    free(box->arena);
    free(box);
}
