/*
 * tokenizer/bpe.c — byte-level BPE from a Hugging Face tokenizer.json (contract in bpe.h).
 *
 * Encoding runs the reference's pipeline on byte strings:
 *   1. split out the added tokens that are not `normalized` (leftmost-longest match);
 *   2. NFC-normalize the rest when the normalizer says so, then split out `normalized` ones;
 *   3. the pre-tokenizer stages, depth first (a Split stage's pieces go one by one to the next
 *      stage), the last stage being ByteLevel;
 *   4. BPE per piece: bytes -> the ids of their byte-level characters, then the reference's
 *      merge loop (a min-heap of (rank, position), entries re-checked when popped), through a
 *      direct-mapped cache of short pieces.
 * Unicode classes (letter, number, whitespace, other) come from utf8proc, plus the letters and
 * numbers that Unicode 15.1 and 16.0 added (the reference's Oniguruma uses 16.0; Debian's
 * utf8proc 2.8 knows 15.0), so that the class of every code point equals the reference's —
 * tests/tokenizer checks all 1,112,064 of them.
 */
#include "bpe.h"

#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "hsadb.h"
#include "util.h"

#define NONE_ID UINT32_MAX

/* ---------------------------------------------------------------------------------------------
 * Unicode classes as the reference's regexes see them (Oniguruma, UTF-8, Unicode 16.0):
 * \p{L} = Lu Ll Lt Lm Lo; \p{N} = Nd Nl No; \s = U+0009..U+000D, U+0085, Zs, Zl, Zp.
 * ------------------------------------------------------------------------------------------- */
enum { C_L = 1, C_N = 2, C_S = 4, C_O = 8, C_NL = 16 /* \r or \n */, C_BAD = 32 /* invalid UTF-8 */ };

/* Ranges assigned in Unicode 15.1/16.0 as letters or numbers (DerivedGeneralCategory-16.0.0),
 * unassigned (class "other") to utf8proc 2.8. */
static const struct { uint32_t lo, hi; uint8_t cls; } unicode16_added[] = {
    {0x1c89, 0x1c8a, C_L},   {0xa7cb, 0xa7cd, C_L},   {0xa7da, 0xa7dc, C_L},
    {0x105c0, 0x105f3, C_L}, {0x10d40, 0x10d49, C_N}, {0x10d4a, 0x10d65, C_L},
    {0x10d6f, 0x10d85, C_L}, {0x10ec2, 0x10ec4, C_L}, {0x11380, 0x11389, C_L},
    {0x1138b, 0x1138b, C_L}, {0x1138e, 0x1138e, C_L}, {0x11390, 0x113b5, C_L},
    {0x113b7, 0x113b7, C_L}, {0x113d1, 0x113d1, C_L}, {0x113d3, 0x113d3, C_L},
    {0x116d0, 0x116e3, C_N}, {0x11bc0, 0x11be0, C_L}, {0x11bf0, 0x11bf9, C_N},
    {0x13460, 0x143fa, C_L}, {0x16100, 0x1611d, C_L}, {0x16130, 0x16139, C_N},
    {0x16d40, 0x16d6c, C_L}, {0x16d70, 0x16d79, C_N}, {0x18cff, 0x18cff, C_L},
    {0x1ccf0, 0x1ccf9, C_N}, {0x1e5d0, 0x1e5ed, C_L}, {0x1e5f0, 0x1e5f0, C_L},
    {0x1e5f1, 0x1e5fa, C_N}, {0x2ebf0, 0x2ee5d, C_L},
};

static uint8_t class_of_cp(uint32_t cp) {
    if ((cp >= 9 && cp <= 13) || cp == 0x85) return (uint8_t)(C_S | (cp == 10 || cp == 13 ? C_NL : 0));
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        return C_L;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        return C_N;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP:
        return C_S;
    case UTF8PROC_CATEGORY_CN:
        for (size_t i = 0; i < sizeof unicode16_added / sizeof unicode16_added[0]; i++)
            if (cp >= unicode16_added[i].lo && cp <= unicode16_added[i].hi) return unicode16_added[i].cls;
        return C_O;
    default:
        return C_O;
    }
}

static uint8_t bmp_class[0x10000];   /* class_of_cp for the BMP, filled once */
static void    bmp_fill(void) {
    for (uint32_t c = 0; c < 0x10000; c++) bmp_class[c] = class_of_cp(c);
}

/* The unit at s[i] (i < n): a well-formed UTF-8 character, or a maximal invalid subsequence,
 * which gets U+FFFD's class (So: other). Returns its length; *cls its class. */
static inline size_t unit_at(const uint8_t *s, size_t n, size_t i, uint8_t *cls) {
    uint8_t b = s[i];
    if (b < 0x80) { *cls = bmp_class[b]; return 1; }
    uint32_t cp;
    size_t   need;
    uint8_t  lo = 0x80, hi = 0xbf;   /* the allowed range of the second byte */
    if (b >= 0xc2 && b <= 0xdf) { need = 1; cp = b & 0x1f; }
    else if (b >= 0xe0 && b <= 0xef) {
        need = 2; cp = b & 0x0f;
        if (b == 0xe0) lo = 0xa0;
        if (b == 0xed) hi = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
        need = 3; cp = b & 0x07;
        if (b == 0xf0) lo = 0x90;
        if (b == 0xf4) hi = 0x8f;
    } else { *cls = C_O | C_BAD; return 1; }
    size_t k = 1;
    for (; k <= need; k++) {
        if (i + k >= n) break;
        uint8_t c = s[i + k];
        if (k == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xbf)) break;
        cp = (cp << 6) | (c & 0x3f);
    }
    if (k <= need) { *cls = C_O | C_BAD; return k; }   /* invalid: the valid prefix is one unit */
    *cls = cp < 0x10000 ? bmp_class[cp] : class_of_cp(cp);
    return need + 1;
}

/* End of the run of units whose class has a bit of `mask`, from i. */
static inline size_t run_of(const uint8_t *s, size_t n, size_t i, uint8_t mask) {
    uint8_t c;
    while (i < n) {
        size_t u = unit_at(s, n, i, &c);
        if (!(c & mask)) break;
        i += u;
    }
    return i;
}

/* `\s+(?!\S)|\s+` at i (s[i] is whitespace): the whole run when it ends the text or is one
 * character long, else the run less its last character. */
static size_t ws_tail(const uint8_t *s, size_t n, size_t i) {
    size_t  j = i, last = i;
    uint8_t c;
    while (j < n) {
        size_t u = unit_at(s, n, j, &c);
        if (!(c & C_S)) break;
        last = j;
        j += u;
    }
    if (j == n || last == i) return j;
    return last;
}

static inline int is_ascii_lower(uint8_t b, char want) { return (b | 0x20) == want; }

/* GPT-2's pattern, the regex of ByteLevel(use_regex=true):
 *   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 * Every character starts a match, so the end of the match at i is all a split needs. */
static size_t gpt2_match(const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return i + 2;
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return i + 3;
        }
    }
    uint8_t c;
    if (s[i] == ' ' && i + 1 < n) {
        unit_at(s, n, i + 1, &c);
        if (c & C_L) return run_of(s, n, i + 1, C_L);
        if (c & C_N) return run_of(s, n, i + 1, C_N);
        if (c & C_O) return run_of(s, n, i + 1, C_O);
    }
    unit_at(s, n, i, &c);
    if (c & C_L) return run_of(s, n, i, C_L);
    if (c & C_N) return run_of(s, n, i, C_N);
    if (c & C_O) return run_of(s, n, i, C_O);
    return ws_tail(s, n, i);
}

/* cl100k's pattern (also OLMo's dolma2, Llama 3):
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *   \s*[\r\n]+|\s+(?!\S)|\s+
 * (?i:) folds with Unicode: 's also matches U+017F (long s, C5 BF). */
static size_t cl100k_match(const uint8_t *s, size_t n, size_t i) {
    if (s[i] == '\'' && i + 1 < n) {
        uint8_t a = s[i + 1];
        if (is_ascii_lower(a, 's') || is_ascii_lower(a, 't') || is_ascii_lower(a, 'm') ||
            is_ascii_lower(a, 'd'))
            return i + 2;
        if (a == 0xc5 && i + 2 < n && s[i + 2] == 0xbf) return i + 3;   /* 'ſ */
        if (i + 2 < n) {
            uint8_t b = s[i + 2];
            if ((is_ascii_lower(a, 'r') && is_ascii_lower(b, 'e')) ||
                (is_ascii_lower(a, 'v') && is_ascii_lower(b, 'e')) ||
                (is_ascii_lower(a, 'l') && is_ascii_lower(b, 'l')))
                return i + 3;
        }
    }
    uint8_t c0, c1;
    size_t  u0 = unit_at(s, n, i, &c0);
    if (!(c0 & (C_L | C_N | C_NL)) && i + u0 < n) {   /* [^\r\n\p{L}\p{N}]?\p{L}+ */
        unit_at(s, n, i + u0, &c1);
        if (c1 & C_L) return run_of(s, n, i + u0, C_L);
    }
    if (c0 & C_L) return run_of(s, n, i, C_L);
    if (c0 & C_N) {                                    /* \p{N}{1,3} */
        size_t j = i + u0;
        for (int k = 1; k < 3 && j < n; k++) {
            size_t u = unit_at(s, n, j, &c1);
            if (!(c1 & C_N)) break;
            j += u;
        }
        return j;
    }
    size_t j = SIZE_MAX;                               /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    if (s[i] == ' ' && i + 1 < n) {
        unit_at(s, n, i + 1, &c1);
        if (c1 & C_O) j = run_of(s, n, i + 1, C_O);
    }
    if (j == SIZE_MAX && (c0 & C_O)) j = run_of(s, n, i, C_O);
    if (j != SIZE_MAX) {
        while (j < n && (s[j] == '\r' || s[j] == '\n')) j++;
        return j;
    }
    size_t k = i, after_nl = 0;                        /* \s*[\r\n]+ */
    while (k < n) {
        size_t u = unit_at(s, n, k, &c1);
        if (!(c1 & C_S)) break;
        k += u;
        if (c1 & C_NL) after_nl = k;
    }
    if (after_nl) return after_nl;
    return ws_tail(s, n, i);
}

static const char GPT2_PATTERN[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char CL100K_PATTERN[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/* ---------------------------------------------------------------------------------------------
 * The byte-level alphabet: byte b is spelled as code point byte_cp[b] in tokenizer.json.
 * ------------------------------------------------------------------------------------------- */
static uint16_t byte_cp[256];
static int16_t  cp_byte[324];   /* inverse, -1 where no byte */

static void byte_tables_fill(void) {
    int n = 0;
    for (int c = 0; c < 324; c++) cp_byte[c] = -1;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
        byte_cp[b] = (uint16_t)(printable ? b : 256 + n++);
        cp_byte[byte_cp[b]] = (int16_t)b;
    }
}

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static void           tables_fill(void) {
    bmp_fill();
    byte_tables_fill();
}

/* ---------------------------------------------------------------------------------------------
 * Hash tables (open addressing, power-of-two sizes, built once at open).
 * ------------------------------------------------------------------------------------------- */
struct merge_slot { uint64_t key; uint32_t rank, new_id; };   /* key = left<<32 | right */
struct str_slot   { uint64_t hash; uint32_t off, len, id; };  /* string in a byte pool */

#define EMPTY_KEY UINT64_MAX

static inline uint64_t mix64(uint64_t k) { return (k ^ (k >> 29)) * 0x9e3779b97f4a7c15ull; }

typedef struct {
    uint8_t *p;
    size_t   len, cap;
} bytebuf;

static int bytebuf_reserve(bytebuf *b, size_t need) {
    if (need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) return ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static int bytebuf_add(bytebuf *b, const void *data, size_t n) {
    if (bytebuf_reserve(b, b->len + n)) return ENOMEM;
    memcpy(b->p + b->len, data, n);
    b->len += n;
    return 0;
}

typedef struct {
    struct str_slot *slots;
    size_t           mask;   /* size - 1 */
    const bytebuf   *pool;
} str_table;

static int str_table_init(str_table *t, size_t n, const bytebuf *pool) {
    size_t size = 16;
    while (size < 2 * n) size *= 2;
    t->slots = malloc(size * sizeof *t->slots);
    if (!t->slots) return ENOMEM;
    for (size_t i = 0; i < size; i++) t->slots[i].hash = EMPTY_KEY;
    t->mask = size - 1;
    t->pool = pool;
    return 0;
}

static inline uint64_t str_hash(const void *s, size_t n) {
    uint64_t h = XXH3_64bits(s, n);
    return h == EMPTY_KEY ? 0 : h;
}

static int64_t str_table_get(const str_table *t, const void *s, size_t n) {
    if (!t->slots) return -1;
    uint64_t h = str_hash(s, n);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        const struct str_slot *e = &t->slots[i];
        if (e->hash == EMPTY_KEY) return -1;
        if (e->hash == h && e->len == n && memcmp(t->pool->p + e->off, s, n) == 0) return e->id;
    }
}

/* Insert (pool[off..off+len) -> id); an existing key keeps its first id unless `replace`. */
static void str_table_put(str_table *t, uint32_t off, uint32_t len, uint32_t id, int replace) {
    const uint8_t *s = t->pool->p + off;
    uint64_t       h = str_hash(s, len);
    for (size_t i = h & t->mask;; i = (i + 1) & t->mask) {
        struct str_slot *e = &t->slots[i];
        if (e->hash == EMPTY_KEY) {
            *e = (struct str_slot){h, off, len, id};
            return;
        }
        if (e->hash == h && e->len == len && memcmp(t->pool->p + e->off, s, len) == 0) {
            if (replace) e->id = id;
            return;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * The tokenizer object.
 * ------------------------------------------------------------------------------------------- */
enum stage_type { ST_BYTELEVEL, ST_SPLIT };
enum split_pattern { PAT_GPT2, PAT_CL100K, PAT_LITERAL };
enum split_behavior { B_REMOVED, B_ISOLATED, B_MERGED_PREV, B_MERGED_NEXT, B_CONTIGUOUS };

struct stage {
    int      type;
    int      add_prefix_space, use_regex;   /* ByteLevel */
    int      pattern, behavior, invert;     /* Split */
    uint8_t *literal;                       /* PAT_LITERAL: the string (owned) */
    size_t   literal_len;
};

struct added {
    uint32_t off, len;   /* content in tok->pool (normalized when `normalized` and NFC) */
    uint32_t id;
    int      special, normalized;
};

/* An added-token matcher over a set of tokens: per first byte, the tokens longest first. */
struct matcher {
    uint32_t *order;       /* indexes into tok->added */
    uint32_t  first[257];  /* order[first[b] .. first[b+1]) start with byte b */
    size_t    n;
};

#define CACHE_SLOTS 32768u
#define CACHE_WORD  24u
#define CACHE_IDS   12u
struct cache_slot {
    uint64_t hash;
    uint8_t  wlen, nids;
    uint8_t  word[CACHE_WORD];
    uint32_t ids[CACHE_IDS];
};

struct symbol { uint32_t id; int32_t prev, next; uint32_t len; };
struct hentry { uint32_t rank, pos, new_id; };

#define MAX_STAGES 8

struct hsadb_tokenizer {
    /* model */
    struct merge_slot *merges;
    size_t             merge_mask;
    uint32_t           byte_id[256];    /* id of each byte's one-character token, or NONE_ID */
    uint32_t           unk_id;          /* NONE_ID when the model has no unk_token */
    int                fuse_unk, ignore_merges;
    bytebuf            pool;            /* token spellings, decoded bytes, added contents */
    str_table          raw;             /* raw bytes of a model token -> id (ignore_merges) */
    str_table          spelled;         /* tokenizer.json spelling -> id (added tokens first) */
    uint32_t          *dec_off, *dec_len;   /* per id: decoded bytes in pool; len UINT32_MAX = none */
    uint8_t           *special;         /* per id */
    uint32_t           n_ids;           /* vocab size: 1 + max id */
    /* pipeline */
    int                nfc;
    struct stage       stages[MAX_STAGES];
    int                n_stages;
    struct added      *added;
    size_t             n_added;
    struct matcher     raw_match, norm_match;   /* non-normalized, normalized added tokens */
    /* scratch (under `lock`) */
    pthread_mutex_t    lock;
    bytebuf            norm;                 /* NFC output of one segment */
    bytebuf            level_buf[MAX_STAGES];   /* ByteLevel's prefixed copy of a piece */
    struct symbol     *sym;
    struct hentry     *heap;
    size_t             sym_cap;
    struct cache_slot *cache;
};

/* State of one encode call. */
struct enc {
    hsadb_tokenizer *tok;
    uint32_t        *out;
    size_t           cap, n;
    int              err;
};

static inline void emit(struct enc *e, uint32_t id) {
    if (e->n < e->cap) e->out[e->n] = id;
    e->n++;
}

/* ---------------------------------------------------------------------------------------------
 * BPE of one piece (raw bytes).
 * ------------------------------------------------------------------------------------------- */
static inline const struct merge_slot *merge_get(const hsadb_tokenizer *t, uint32_t a, uint32_t b) {
    uint64_t key = (uint64_t)a << 32 | b;
    for (size_t i = mix64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
        const struct merge_slot *m = &t->merges[i];
        if (m->key == key) return m;
        if (m->key == EMPTY_KEY) return NULL;
    }
}

static inline int hless(const struct hentry *a, const struct hentry *b) {
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct hentry *h, size_t *n, struct hentry x) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hless(&x, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = x;
}

static struct hentry heap_pop(struct hentry *h, size_t *n) {
    struct hentry top = h[0], x = h[--(*n)];
    size_t        i = 0;
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l >= *n) break;
        m = (l + 1 < *n && hless(&h[l + 1], &h[l])) ? l + 1 : l;
        if (!hless(&h[m], &x)) break;
        h[i] = h[m];
        i = m;
    }
    h[i] = x;
    return top;
}

static int scratch_reserve(hsadb_tokenizer *t, size_t n) {
    if (n <= t->sym_cap) return 0;
    size_t cap = t->sym_cap ? t->sym_cap : 256;
    while (cap < n) cap *= 2;
    struct symbol *s = realloc(t->sym, cap * sizeof *s);
    if (!s) return ENOMEM;
    t->sym = s;
    /* each merge pushes at most two entries: 3n bounds the heap */
    struct hentry *h = realloc(t->heap, 3 * cap * sizeof *h);
    if (!h) return ENOMEM;
    t->heap = h;
    t->sym_cap = cap;
    return 0;
}

static void bpe_piece(struct enc *e, const uint8_t *s, size_t len) {
    hsadb_tokenizer *t = e->tok;
    if (len == 0) return;
    struct cache_slot *cs = NULL;
    uint64_t           h = 0;
    if (len <= CACHE_WORD) {
        h = str_hash(s, len);
        cs = &t->cache[h & (CACHE_SLOTS - 1)];
        if (cs->hash == h && cs->wlen == len && memcmp(cs->word, s, len) == 0) {
            for (unsigned i = 0; i < cs->nids; i++) emit(e, cs->ids[i]);
            return;
        }
    }
    if (t->ignore_merges) {
        int64_t id = str_table_get(&t->raw, s, len);
        if (id >= 0) {
            emit(e, (uint32_t)id);
            return;
        }
    }
    if (len > INT32_MAX) {   /* symbol links are 32-bit */
        e->err = hsadb_fail(HSADB_ERR_INVALID, "a pre-token of %zu bytes (the limit is 2 GiB)", len);
        return;
    }
    if (scratch_reserve(t, len)) {
        e->err = hsadb_fail(ENOMEM, "out of memory for a pre-token of %zu bytes", len);
        return;
    }
    struct symbol *sym = t->sym;
    size_t         n = 0;
    int            last_unk = 0;
    for (size_t i = 0; i < len; i++) {
        uint32_t id = t->byte_id[s[i]];
        if (id == NONE_ID) {   /* a byte the vocabulary lacks: unk, fused or not, or dropped */
            if (t->unk_id == NONE_ID) continue;
            if (t->fuse_unk && last_unk) {
                sym[n - 1].len++;
                continue;
            }
            id = t->unk_id;
            last_unk = 1;
        } else {
            last_unk = 0;
        }
        sym[n] = (struct symbol){id, (int32_t)n - 1, (int32_t)n + 1, 1};
        n++;
    }
    if (n == 0) return;
    sym[n - 1].next = -1;
    struct hentry *heap = t->heap;
    size_t         hn = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        const struct merge_slot *m = merge_get(t, sym[i].id, sym[i + 1].id);
        if (m) heap_push(heap, &hn, (struct hentry){m->rank, (uint32_t)i, m->new_id});
    }
    while (hn) {
        struct hentry top = heap_pop(heap, &hn);
        struct symbol *cur = &sym[top.pos];
        if (cur->len == 0 || cur->next < 0) continue;
        int32_t                  rpos = cur->next;
        struct symbol            right = sym[rpos];
        const struct merge_slot *m = merge_get(t, cur->id, right.id);
        if (!m || m->new_id != top.new_id) continue;   /* a stale entry */
        cur->id = top.new_id;
        cur->len += right.len;
        cur->next = right.next;
        sym[rpos].len = 0;                             /* the right symbol is gone */
        if (right.next >= 0) sym[right.next].prev = (int32_t)top.pos;
        if (cur->prev >= 0) {
            const struct merge_slot *pm = merge_get(t, sym[cur->prev].id, cur->id);
            if (pm) heap_push(heap, &hn, (struct hentry){pm->rank, (uint32_t)cur->prev, pm->new_id});
        }
        if (cur->next >= 0) {
            const struct merge_slot *nm = merge_get(t, cur->id, sym[cur->next].id);
            if (nm) heap_push(heap, &hn, (struct hentry){nm->rank, top.pos, nm->new_id});
        }
    }
    size_t   first = e->n;
    unsigned nids = 0;
    for (int32_t i = 0; i >= 0; i = sym[i].next, nids++) emit(e, sym[i].id);
    if (cs && nids <= CACHE_IDS && e->n <= e->cap) {
        cs->hash = h;
        cs->wlen = (uint8_t)len;
        cs->nids = (uint8_t)nids;
        memcpy(cs->word, s, len);
        memcpy(cs->ids, e->out + first, nids * sizeof(uint32_t));
    }
}

/* ---------------------------------------------------------------------------------------------
 * Pre-tokenizer stages, depth first: pretok(level) hands each of its pieces to level + 1; the
 * piece after the last stage goes to BPE.
 * ------------------------------------------------------------------------------------------- */
static void pretok(struct enc *e, int level, const uint8_t *s, size_t len);

/* A Split stage's output under its behavior, as the reference folds (offsets, is_match) lists;
 * pieces are emitted one by one, the last one held back while a later span may extend it. */
struct split_out {
    struct enc    *e;
    int            level, behavior;
    const uint8_t *s;
    size_t         pstart, pend;   /* the held piece */
    int            have, prev_match;
};

static void split_flush(struct split_out *o) {
    if (o->have && o->pend > o->pstart) pretok(o->e, o->level + 1, o->s + o->pstart, o->pend - o->pstart);
    o->have = 0;
}

static void split_span(struct split_out *o, size_t a, size_t b, int is_match) {
    switch (o->behavior) {
    case B_REMOVED:
        if (!is_match && b > a) pretok(o->e, o->level + 1, o->s + a, b - a);
        return;
    case B_ISOLATED:
        if (b > a) pretok(o->e, o->level + 1, o->s + a, b - a);
        return;
    case B_MERGED_PREV:   /* a match after a non-match ends that piece */
        if (is_match && !o->prev_match && o->have) {
            o->pend = b;
        } else {
            split_flush(o);
            o->pstart = a, o->pend = b, o->have = 1;
        }
        break;
    case B_MERGED_NEXT:   /* a match not followed by a match starts the next piece */
        if (o->have && o->prev_match && !is_match) {
            o->pend = b;
            split_flush(o);
        } else {
            split_flush(o);
            o->pstart = a, o->pend = b, o->have = 1;
            if (!is_match) split_flush(o);
        }
        break;
    case B_CONTIGUOUS:
        if (is_match == o->prev_match && o->have) {
            o->pend = b;
        } else {
            split_flush(o);
            o->pstart = a, o->pend = b, o->have = 1;
        }
        break;
    }
    o->prev_match = is_match;
}

static void split_stage(struct enc *e, int level, const struct stage *st, const uint8_t *s, size_t len) {
    struct split_out o = {e, level, st->behavior, s, 0, 0, 0, 0};
    int              inv = st->invert;
    if (st->pattern == PAT_LITERAL) {
        size_t i = 0, m = st->literal_len;
        while (i < len && m > 0) {
            const uint8_t *hit = memmem(s + i, len - i, st->literal, m);
            if (!hit) break;
            size_t h = (size_t)(hit - s);
            if (h > i) split_span(&o, i, h, inv);
            split_span(&o, h, h + m, !inv);
            i = h + m;
        }
        if (i < len) split_span(&o, i, len, inv);
    } else {
        size_t (*match)(const uint8_t *, size_t, size_t) =
            st->pattern == PAT_GPT2 ? gpt2_match : cl100k_match;
        for (size_t i = 0; i < len && !e->err;) {
            size_t j = match(s, len, i);
            split_span(&o, i, j, !inv);
            i = j;
        }
    }
    split_flush(&o);
}

static void pretok(struct enc *e, int level, const uint8_t *s, size_t len) {
    hsadb_tokenizer *t = e->tok;
    if (e->err || len == 0) return;
    if (level == t->n_stages) {
        bpe_piece(e, s, len);
        return;
    }
    const struct stage *st = &t->stages[level];
    if (st->type == ST_SPLIT) {
        split_stage(e, level, st, s, len);
        return;
    }
    if (st->add_prefix_space && s[0] != ' ') {   /* ByteLevel: " " + piece */
        bytebuf *b = &t->level_buf[level];
        b->len = 0;
        if (bytebuf_reserve(b, len + 1)) {
            e->err = ENOMEM;
            return;
        }
        b->p[0] = ' ';
        memcpy(b->p + 1, s, len);
        s = b->p;
        len++;
    }
    if (!st->use_regex) {
        pretok(e, level + 1, s, len);
        return;
    }
    for (size_t i = 0; i < len && !e->err;) {
        size_t j = gpt2_match(s, len, i);
        pretok(e, level + 1, s + i, j - i);
        i = j;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Added tokens, normalization.
 * ------------------------------------------------------------------------------------------- */
/* The longest added token of matcher m at s[i..n), or -1. */
static inline int64_t added_at(const hsadb_tokenizer *t, const struct matcher *m, const uint8_t *s,
                               size_t i, size_t n) {
    uint8_t b = s[i];
    for (uint32_t k = m->first[b]; k < m->first[b + 1]; k++) {
        const struct added *a = &t->added[m->order[k]];
        if (a->len <= n - i && memcmp(t->pool.p + a->off, s + i, a->len) == 0) return m->order[k];
    }
    return -1;
}

/* NFC of one segment into t->norm (valid UTF-8 runs normalized, invalid bytes kept). */
static int nfc_segment(hsadb_tokenizer *t, const uint8_t *s, size_t len) {
    bytebuf *out = &t->norm;
    out->len = 0;
    size_t i = 0;
    while (i < len) {
        size_t  j = i;
        int     ascii = 1;
        uint8_t c;
        while (j < len) {   /* the run of valid units from i */
            size_t u = unit_at(s, len, j, &c);
            if (c & C_BAD) break;
            if (s[j] >= 0x80) ascii = 0;
            j += u;
        }
        if (j > i) {
            if (ascii) {
                if (bytebuf_add(out, s + i, j - i)) return ENOMEM;
            } else {
                utf8proc_uint8_t *dst = NULL;
                utf8proc_ssize_t  r = utf8proc_map(s + i, (utf8proc_ssize_t)(j - i), &dst,
                                                   UTF8PROC_STABLE | UTF8PROC_COMPOSE);
                if (r < 0) return hsadb_fail(HSADB_ERR_INVALID, "NFC: %s", utf8proc_errmsg(r));
                int rc = bytebuf_add(out, dst, (size_t)r);
                free(dst);
                if (rc) return rc;
            }
        }
        if (j < len) {   /* an invalid unit: copy its bytes */
            size_t u = unit_at(s, len, j, &c);
            if (bytebuf_add(out, s + j, u)) return ENOMEM;
            j += u;
        }
        i = j;
    }
    return 0;
}

/* A segment free of non-normalized added tokens: normalize, split out normalized ones,
 * pre-tokenize the rest. */
static void encode_segment(struct enc *e, const uint8_t *s, size_t len) {
    hsadb_tokenizer *t = e->tok;
    if (len == 0) return;
    if (t->nfc) {
        int rc = nfc_segment(t, s, len);
        if (rc) {
            e->err = rc;
            return;
        }
        s = t->norm.p;
        len = t->norm.len;
    }
    if (!t->norm_match.n) {
        pretok(e, 0, s, len);
        return;
    }
    size_t start = 0;
    for (size_t i = 0; i < len && !e->err;) {
        int64_t k = added_at(t, &t->norm_match, s, i, len);
        if (k < 0) {
            i++;
            continue;
        }
        pretok(e, 0, s + start, i - start);
        emit(e, t->added[k].id);
        i += t->added[k].len;
        start = i;
    }
    pretok(e, 0, s + start, len - start);
}

int hsadb_tokenizer_encode(hsadb_tokenizer *t, const void *bytes, size_t len, uint32_t *ids_out,
                           size_t cap, size_t *n_out) {
    if (!t || !n_out || (len && !bytes) || (cap && !ids_out))
        return hsadb_fail(HSADB_ERR_INVALID, "hsadb_tokenizer_encode: NULL argument");
    const uint8_t *s = bytes;
    struct enc     e = {t, ids_out, cap, 0, 0};
    pthread_mutex_lock(&t->lock);
    size_t start = 0;
    if (t->raw_match.n) {
        for (size_t i = 0; i < len && !e.err;) {
            int64_t k = added_at(t, &t->raw_match, s, i, len);
            if (k < 0) {
                i++;
                continue;
            }
            encode_segment(&e, s + start, i - start);
            emit(&e, t->added[k].id);
            i += t->added[k].len;
            start = i;
        }
    }
    if (!e.err) encode_segment(&e, s + start, len - start);
    pthread_mutex_unlock(&t->lock);
    *n_out = e.n;
    if (e.err) return e.err;
    return e.n > cap ? ERANGE : 0;
}

int hsadb_tokenizer_decode(hsadb_tokenizer *t, const uint32_t *ids, size_t n, void *bytes_out,
                           size_t cap, size_t *len_out) {
    if (!t || !len_out || (n && !ids) || (cap && !bytes_out))
        return hsadb_fail(HSADB_ERR_INVALID, "hsadb_tokenizer_decode: NULL argument");
    size_t   len = 0;
    uint8_t *out = bytes_out;
    for (size_t i = 0; i < n; i++) {
        uint32_t id = ids[i];
        if (id >= t->n_ids || t->dec_len[id] == UINT32_MAX) {
            *len_out = len;
            return hsadb_fail(HSADB_ERR_INVALID, "id %u (at %zu) names no token", id, i);
        }
        uint32_t l = t->dec_len[id];
        if (len + l <= cap) memcpy(out + len, t->pool.p + t->dec_off[id], l);
        len += l;
    }
    *len_out = len;
    return len > cap ? ERANGE : 0;
}

int64_t hsadb_tokenizer_token_id(const hsadb_tokenizer *t, const char *text) {
    if (!t || !text) return -1;
    return str_table_get(&t->spelled, text, strlen(text));
}

int hsadb_tokenizer_char_class(uint32_t cp) {
    pthread_once(&tables_once, tables_fill);
    uint8_t c = cp < 0x10000 ? bmp_class[cp] : class_of_cp(cp);
    return c & C_L ? 'L' : c & C_N ? 'N' : c & C_S ? 'S' : 'O';
}

uint32_t hsadb_tokenizer_vocab_size(const hsadb_tokenizer *t) { return t ? t->n_ids : 0; }

int hsadb_tokenizer_is_special(const hsadb_tokenizer *t, uint32_t id) {
    return t && id < t->n_ids && t->special[id];
}

/* ---------------------------------------------------------------------------------------------
 * Reading tokenizer.json.
 * ------------------------------------------------------------------------------------------- */
#define BAD(...) (rc = hsadb_fail(HSADB_ERR_BAD_MODEL, "tokenizer.json: " __VA_ARGS__))

static const char *type_of(const json_t *o) {
    const char *s = json_string_value(json_object_get(o, "type"));
    return s ? s : "(no type)";
}

/* A member that must be absent, null, false or "": how the refused options read when unused. */
static int unset(const json_t *o, const char *key) {
    const json_t *v = json_object_get(o, key);
    return !v || json_is_null(v) || json_is_false(v) || (json_is_string(v) && !*json_string_value(v));
}

/* The bytes a token decodes to, as the ByteLevel decoder does: every character through the
 * byte-level alphabet, or — when one is not in it — the spelling's own UTF-8. */
static int add_decoded(hsadb_tokenizer *t, const char *sp, size_t len, uint32_t id, int *mappable) {
    size_t start = t->pool.len;
    *mappable = 1;
    for (size_t i = 0; i < len;) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t u = utf8proc_iterate((const uint8_t *)sp + i, (utf8proc_ssize_t)(len - i), &cp);
        if (u <= 0 || cp >= 324 || cp_byte[cp] < 0) {
            *mappable = 0;
            t->pool.len = start;
            if (bytebuf_add(&t->pool, sp, len)) return ENOMEM;
            break;
        }
        uint8_t b = (uint8_t)cp_byte[cp];
        if (bytebuf_add(&t->pool, &b, 1)) return ENOMEM;
        i += (size_t)u;
    }
    t->dec_off[id] = (uint32_t)start;
    t->dec_len[id] = (uint32_t)(t->pool.len - start);
    return 0;
}

static int parse_stage(hsadb_tokenizer *t, const json_t *o) {
    int         rc = 0;
    const char *type = type_of(o);
    if (!strcmp(type, "Sequence")) {
        const json_t *list = json_object_get(o, "pretokenizers");
        size_t        i;
        json_t       *v;
        if (!json_is_array(list)) return BAD("pre_tokenizer Sequence without a pretokenizers list");
        json_array_foreach(list, i, v) if ((rc = parse_stage(t, v))) return rc;
        return 0;
    }
    if (t->n_stages == MAX_STAGES) return BAD("more than %d pre-tokenizer stages", MAX_STAGES);
    struct stage *st = &t->stages[t->n_stages++];   /* counted now: close frees its literal */
    memset(st, 0, sizeof *st);
    if (!strcmp(type, "ByteLevel")) {
        const json_t *re = json_object_get(o, "use_regex");
        st->type = ST_BYTELEVEL;
        st->add_prefix_space = json_is_true(json_object_get(o, "add_prefix_space"));
        st->use_regex = re ? json_is_true(re) : 1;
    } else if (!strcmp(type, "Split")) {
        const json_t *pat = json_object_get(o, "pattern");
        const char   *beh = json_string_value(json_object_get(o, "behavior"));
        const char   *re = json_string_value(json_object_get(pat, "Regex"));
        const char   *lit = json_string_value(json_object_get(pat, "String"));
        st->type = ST_SPLIT;
        st->invert = json_is_true(json_object_get(o, "invert"));
        if (re && !strcmp(re, GPT2_PATTERN)) st->pattern = PAT_GPT2;
        else if (re && !strcmp(re, CL100K_PATTERN)) st->pattern = PAT_CL100K;
        else if (re) return BAD("Split regex not supported (only GPT-2's and cl100k's are): %s", re);
        else if (lit) {
            st->pattern = PAT_LITERAL;
            st->literal_len = json_string_length(json_object_get(pat, "String"));
            st->literal = malloc(st->literal_len + 1);
            if (!st->literal) return ENOMEM;
            memcpy(st->literal, lit, st->literal_len + 1);
        } else
            return BAD("Split pattern must be {\"Regex\": ...} or {\"String\": ...}");
        if (!beh) return BAD("Split without a behavior");
        if (!strcmp(beh, "Removed")) st->behavior = B_REMOVED;
        else if (!strcmp(beh, "Isolated")) st->behavior = B_ISOLATED;
        else if (!strcmp(beh, "MergedWithPrevious")) st->behavior = B_MERGED_PREV;
        else if (!strcmp(beh, "MergedWithNext")) st->behavior = B_MERGED_NEXT;
        else if (!strcmp(beh, "Contiguous")) st->behavior = B_CONTIGUOUS;
        else return BAD("Split behavior %s not supported", beh);
    } else {
        return BAD("pre_tokenizer %s not supported (ByteLevel, Split, Sequence are)", type);
    }
    return 0;
}

static int matcher_build(hsadb_tokenizer *t, struct matcher *m, int normalized) {
    size_t n = 0;
    for (size_t i = 0; i < t->n_added; i++) n += t->added[i].normalized == normalized && t->added[i].len;
    m->n = n;
    if (!n) return 0;
    m->order = malloc(n * sizeof *m->order);
    if (!m->order) return ENOMEM;
    /* counting sort by first byte, each bucket longest first (insertion: added lists are short) */
    uint32_t count[256] = {0};
    for (size_t i = 0; i < t->n_added; i++)
        if (t->added[i].normalized == normalized && t->added[i].len) count[t->pool.p[t->added[i].off]]++;
    m->first[0] = 0;
    for (int b = 0; b < 256; b++) m->first[b + 1] = m->first[b] + count[b];
    uint32_t fill[256];
    memcpy(fill, m->first, sizeof fill);
    for (size_t i = 0; i < t->n_added; i++) {
        const struct added *a = &t->added[i];
        if (a->normalized != normalized || !a->len) continue;
        uint8_t  b = t->pool.p[a->off];
        uint32_t k = fill[b]++;
        while (k > m->first[b] && t->added[m->order[k - 1]].len < a->len) {
            m->order[k] = m->order[k - 1];
            k--;
        }
        m->order[k] = (uint32_t)i;
    }
    return 0;
}

static int parse(hsadb_tokenizer *t, json_t *root) {
    int           rc = 0;
    const json_t *model = json_object_get(root, "model");
    if (!json_is_object(model)) return BAD("no model object");
    const char *mtype = json_string_value(json_object_get(model, "type"));
    if (mtype && strcmp(mtype, "BPE")) return BAD("model %s not supported (only BPE)", mtype);
    if (!unset(model, "dropout")) return BAD("BPE dropout is not supported (encoding would be random)");
    if (!unset(model, "byte_fallback")) return BAD("BPE byte_fallback is not supported (not byte-level BPE)");
    if (!unset(model, "continuing_subword_prefix")) return BAD("BPE continuing_subword_prefix is not supported");
    if (!unset(model, "end_of_word_suffix")) return BAD("BPE end_of_word_suffix is not supported");
    t->fuse_unk = json_is_true(json_object_get(model, "fuse_unk"));
    t->ignore_merges = json_is_true(json_object_get(model, "ignore_merges"));
    const json_t *vocab = json_object_get(model, "vocab");
    const json_t *merges = json_object_get(model, "merges");
    const json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab)) return BAD("model.vocab is not an object");
    if (!json_is_array(merges)) return BAD("model.merges is not a list");
    if (added && !json_is_null(added) && !json_is_array(added)) return BAD("added_tokens is not a list");

    /* ids */
    const char *key;
    json_t     *v;
    json_int_t  max_id = -1;
    json_object_foreach((json_t *)vocab, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (json_int_t)UINT32_MAX - 1)
            return BAD("vocab entry \"%s\" has no valid id", key);
        if (json_integer_value(v) > max_id) max_id = json_integer_value(v);
    }
    size_t i, n_added = json_array_size(added);
    json_array_foreach((json_t *)added, i, v) {
        const json_t *id = json_object_get(v, "id");
        if (!json_is_string(json_object_get(v, "content")) || !json_is_integer(id) || json_integer_value(id) < 0 ||
            json_integer_value(id) >= (json_int_t)UINT32_MAX - 1)
            return BAD("added_tokens[%zu] lacks a content string or a valid id", i);
        if (json_integer_value(id) > max_id) max_id = json_integer_value(id);
    }
    if (max_id < 0) return BAD("empty vocabulary");
    t->n_ids = (uint32_t)max_id + 1;
    t->dec_off = malloc(t->n_ids * sizeof *t->dec_off);
    t->dec_len = malloc(t->n_ids * sizeof *t->dec_len);
    t->special = calloc(t->n_ids, 1);
    t->added = calloc(n_added ? n_added : 1, sizeof *t->added);
    if (!t->dec_off || !t->dec_len || !t->special || !t->added) return ENOMEM;
    for (uint32_t k = 0; k < t->n_ids; k++) t->dec_len[k] = UINT32_MAX;
    size_t n_vocab = json_object_size(vocab);
    if ((rc = str_table_init(&t->spelled, n_vocab + n_added, &t->pool)) ||
        (rc = str_table_init(&t->raw, n_vocab, &t->pool)))
        return rc;

    /* the model vocabulary */
    for (int b = 0; b < 256; b++) t->byte_id[b] = NONE_ID;
    json_object_foreach((json_t *)vocab, key, v) {
        uint32_t id = (uint32_t)json_integer_value(v);
        size_t   len = strlen(key), off = t->pool.len;
        if (bytebuf_add(&t->pool, key, len)) return ENOMEM;
        str_table_put(&t->spelled, (uint32_t)off, (uint32_t)len, id, 0);
        int mappable;
        if ((rc = add_decoded(t, key, len, id, &mappable))) return rc;
        utf8proc_int32_t cp;
        if (utf8proc_iterate((const uint8_t *)key, (utf8proc_ssize_t)len, &cp) == (utf8proc_ssize_t)len && cp < 324 &&
            cp_byte[cp] >= 0)
            t->byte_id[cp_byte[cp]] = id;
        /* raw bytes -> id, for ignore_merges: only tokens spelled wholly in the alphabet */
        if (mappable)
            str_table_put(&t->raw, t->dec_off[id], t->dec_len[id], id, 0);
    }
    const char *unk = json_string_value(json_object_get(model, "unk_token"));
    t->unk_id = NONE_ID;
    if (unk) {
        int64_t id = str_table_get(&t->spelled, unk, strlen(unk));
        if (id < 0) return BAD("unk_token \"%s\" is not in the vocabulary", unk);
        t->unk_id = (uint32_t)id;
    }

    /* merges: rank = position; a later duplicate pair wins, as in the reference's map */
    size_t n_merges = json_array_size(merges), size = 16;
    while (size < 2 * n_merges) size *= 2;
    t->merges = malloc(size * sizeof *t->merges);
    if (!t->merges) return ENOMEM;
    for (size_t k = 0; k < size; k++) t->merges[k].key = EMPTY_KEY;
    t->merge_mask = size - 1;
    bytebuf pair = {0};
    json_array_foreach((json_t *)merges, i, v) {
        const char *a, *b;
        size_t      la, lb;
        if (json_is_string(v)) {
            a = json_string_value(v);
            const char *sp = strchr(a, ' ');
            if (!sp || strchr(sp + 1, ' ')) { free(pair.p); return BAD("merges[%zu] \"%s\" is not two tokens", i, a); }
            la = (size_t)(sp - a), b = sp + 1, lb = strlen(b);
        } else if (json_is_array(v) && json_array_size(v) == 2 && json_is_string(json_array_get(v, 0)) &&
                   json_is_string(json_array_get(v, 1))) {
            a = json_string_value(json_array_get(v, 0)), la = json_string_length(json_array_get(v, 0));
            b = json_string_value(json_array_get(v, 1)), lb = json_string_length(json_array_get(v, 1));
        } else {
            free(pair.p);
            return BAD("merges[%zu] is neither \"a b\" nor [\"a\", \"b\"]", i);
        }
        pair.len = 0;
        if (bytebuf_add(&pair, a, la) || bytebuf_add(&pair, b, lb)) { free(pair.p); return ENOMEM; }
        int64_t ia = str_table_get(&t->spelled, a, la), ib = str_table_get(&t->spelled, b, lb);
        int64_t in = str_table_get(&t->spelled, pair.p, pair.len);
        if (ia < 0 || ib < 0 || in < 0) {
            BAD("merges[%zu]: \"%.*s\" + \"%.*s\" or their merge is not in the vocabulary", i, (int)la, a,
                     (int)lb, b);
            free(pair.p);
            return rc;
        }
        uint64_t key64 = (uint64_t)ia << 32 | (uint64_t)ib;
        for (size_t k = mix64(key64) & t->merge_mask;; k = (k + 1) & t->merge_mask) {
            struct merge_slot *m = &t->merges[k];
            if (m->key == EMPTY_KEY || m->key == key64) {
                *m = (struct merge_slot){key64, (uint32_t)i, (uint32_t)in};
                break;
            }
        }
    }
    free(pair.p);

    /* normalizer */
    const json_t *norm = json_object_get(root, "normalizer");
    if (norm && !json_is_null(norm)) {
        const json_t *list = norm;
        size_t        nn = 1;
        if (!strcmp(type_of(norm), "Sequence")) {
            list = json_object_get(norm, "normalizers");
            nn = json_array_size(list);
        }
        for (size_t k = 0; k < nn; k++) {
            const json_t *one = list == norm ? norm : json_array_get(list, k);
            if (strcmp(type_of(one), "NFC")) return BAD("normalizer %s not supported (only NFC)", type_of(one));
            t->nfc = 1;
        }
    }

    /* added tokens (after the normalizer: `normalized` ones match in NFC form) */
    json_array_foreach((json_t *)added, i, v) {
        struct added *a = &t->added[t->n_added];
        const char   *content = json_string_value(json_object_get(v, "content"));
        size_t        len = json_string_length(json_object_get(v, "content"));
        a->id = (uint32_t)json_integer_value(json_object_get(v, "id"));
        a->special = json_is_true(json_object_get(v, "special"));
        const json_t *nz = json_object_get(v, "normalized");
        a->normalized = nz ? json_is_true(nz) : !a->special;
        if (json_is_true(json_object_get(v, "lstrip")) || json_is_true(json_object_get(v, "rstrip")) ||
            json_is_true(json_object_get(v, "single_word")))
            return BAD("added token \"%s\": lstrip, rstrip and single_word are not supported", content);
        size_t off = t->pool.len;
        if (bytebuf_add(&t->pool, content, len)) return ENOMEM;
        str_table_put(&t->spelled, (uint32_t)off, (uint32_t)len, a->id, 1);
        int mappable;
        if ((rc = add_decoded(t, content, len, a->id, &mappable))) return rc;
        a->off = (uint32_t)off, a->len = (uint32_t)len;
        if (a->normalized && t->nfc && len) {
            utf8proc_uint8_t *dst = NULL;
            utf8proc_ssize_t  r = utf8proc_map((const uint8_t *)content, (utf8proc_ssize_t)len, &dst,
                                               UTF8PROC_STABLE | UTF8PROC_COMPOSE);
            if (r < 0) return BAD("added token \"%s\": %s", content, utf8proc_errmsg(r));
            a->off = (uint32_t)t->pool.len, a->len = (uint32_t)r;
            rc = bytebuf_add(&t->pool, dst, (size_t)r);
            free(dst);
            if (rc) return rc;
        }
        t->special[a->id] = (uint8_t)a->special;
        t->n_added++;
    }
    if ((rc = matcher_build(t, &t->raw_match, 0)) || (rc = matcher_build(t, &t->norm_match, 1))) return rc;

    /* pre-tokenizer: stages ending in the one ByteLevel */
    const json_t *pre = json_object_get(root, "pre_tokenizer");
    if (!pre || json_is_null(pre)) return BAD("no pre_tokenizer (byte-level BPE needs ByteLevel)");
    if ((rc = parse_stage(t, pre))) return rc;
    for (int k = 0; k < t->n_stages; k++)
        if ((t->stages[k].type == ST_BYTELEVEL) != (k == t->n_stages - 1))
            return BAD("pre_tokenizer must end with ByteLevel and hold no other ByteLevel");

    /* decoder */
    const json_t *dec = json_object_get(root, "decoder");
    if (!dec || json_is_null(dec)) return BAD("no decoder (byte-level BPE needs ByteLevel)");
    if (!strcmp(type_of(dec), "Sequence")) {
        const json_t *list = json_object_get(dec, "decoders");
        if (!json_array_size(list)) return BAD("decoder Sequence is empty");
        json_array_foreach((json_t *)list, i, v) if (strcmp(type_of(v), "ByteLevel"))
            return BAD("decoder %s not supported (only ByteLevel)", type_of(v));
    } else if (strcmp(type_of(dec), "ByteLevel")) {
        return BAD("decoder %s not supported (only ByteLevel)", type_of(dec));
    }

    t->cache = calloc(CACHE_SLOTS, sizeof *t->cache);
    if (!t->cache) return ENOMEM;
    return 0;
}

int hsadb_tokenizer_open_json(const char *text, size_t len, hsadb_tokenizer **out) {
    if (!text || !out) return hsadb_fail(HSADB_ERR_INVALID, "hsadb_tokenizer_open_json: NULL argument");
    *out = NULL;
    pthread_once(&tables_once, tables_fill);
    json_error_t jerr;
    json_t      *root = json_loadb(text, len, 0, &jerr);
    if (!root) return hsadb_fail(HSADB_ERR_BAD_MODEL, "tokenizer.json: line %d: %s", jerr.line, jerr.text);
    int              rc;
    hsadb_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        rc = ENOMEM;
        goto fail;
    }
    pthread_mutex_init(&t->lock, NULL);
    if (!json_is_object(root)) {
        rc = hsadb_fail(HSADB_ERR_BAD_MODEL, "tokenizer.json: not a JSON object");
        goto fail;
    }
    if ((rc = parse(t, root))) goto fail;
    json_decref(root);
    *out = t;
    return 0;
fail:
    if (rc == ENOMEM) hsadb_set_error("tokenizer.json: out of memory");
    json_decref(root);
    hsadb_tokenizer_close(t);
    return rc;
}

int hsadb_tokenizer_open(const char *path, hsadb_tokenizer **out) {
    if (!path || !out) return hsadb_fail(HSADB_ERR_INVALID, "hsadb_tokenizer_open: NULL argument");
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return hsadb_fail(e, "%s: %s", path, strerror(e));
    }
    char  *text = NULL;
    size_t len = 0, cap = 0;
    int    rc = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? 2 * cap : 1 << 20;
            char *p = realloc(text, cap);
            if (!p) {
                rc = hsadb_fail(ENOMEM, "%s: out of memory", path);
                goto done;
            }
            text = p;
        }
        errno = 0;
        size_t r = fread(text + len, 1, cap - len, f);
        len += r;
        if (r == 0) break;
    }
    if (ferror(f)) {
        int e = errno ? errno : EIO;
        rc = hsadb_fail(e, "%s: %s", path, strerror(e));
        goto done;
    }
    rc = hsadb_tokenizer_open_json(text, len, out);
    if (rc < 0) {   /* put the path in front of the detail */
        char detail[512];
        snprintf(detail, sizeof detail, "%s", hsadb_last_error());
        hsadb_set_error("%s: %s", path, detail);
    }
done:
    free(text);
    fclose(f);
    return rc;
}

void hsadb_tokenizer_close(hsadb_tokenizer *t) {
    if (!t) return;
    free(t->merges);
    free(t->pool.p);
    free(t->raw.slots);
    free(t->spelled.slots);
    free(t->dec_off);
    free(t->dec_len);
    free(t->special);
    for (int k = 0; k < t->n_stages; k++) free(t->stages[k].literal);
    free(t->added);
    free(t->raw_match.order);
    free(t->norm_match.order);
    free(t->norm.p);
    for (int k = 0; k < MAX_STAGES; k++) free(t->level_buf[k].p);
    free(t->sym);
    free(t->heap);
    free(t->cache);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
