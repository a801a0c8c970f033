/*
 * index/lexical.c — the tokenizer and posting codes of the lexical index (lexical.h).
 *
 * Scan: decode one code point at a time, classify it (word, CJK, joiner, separator), read an
 * identifier (words joined by single joiners), then emit its terms. Case folding and the
 * letter/digit classes come from glibc's C.UTF-8 locale (towlower_l, iswalnum_l), stemming
 * from Snowball (libstemmer).
 */
#include "lexical.h"

#include <errno.h>
#include <locale.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <wctype.h>

#include <libstemmer.h>

struct hsadb_lex_tok {
    struct sb_stemmer *stem;
    char whole[HSADB_LEX_WHOLE_MAX + 8];   /* the folded identifier being built */
    char part[HSADB_LEX_PART_MAX + 8];     /* one folded word */
};

/* ---- character classes ------------------------------------------------------------------- */

static locale_t g_loc;                 /* C.UTF-8, or 0: ASCII classes only */
static pthread_once_t g_loc_once = PTHREAD_ONCE_INIT;

static void loc_init(void) { g_loc = newlocale(LC_CTYPE_MASK, "C.UTF-8", (locale_t)0); }

enum { C_SEP, C_WORD, C_CJK, C_JOIN };

static int is_cjk(uint32_t c) {
    return (c >= 0x3040 && c <= 0x30ff) || (c >= 0x3400 && c <= 0x4dbf) ||
           (c >= 0x4e00 && c <= 0x9fff) || (c >= 0xf900 && c <= 0xfaff) ||
           (c >= 0x20000 && c <= 0x2ffff);
}

static int cls(uint32_t c) {
    if (c < 0x80) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return C_WORD;
        switch (c) {
        case '.': case '/': case '-': case '_': case '@': case ':': case '+': case '~':
        case '\\': case '#': case '\'':
            return C_JOIN;
        }
        return C_SEP;
    }
    if (c == 0x2019) return C_JOIN;                       /* right single quote: it's */
    if (is_cjk(c)) return C_CJK;
    if (c >= 0x300 && c <= 0x36f) return C_WORD;          /* combining diacritics */
    if (g_loc) return iswalnum_l((wint_t)c, g_loc) ? C_WORD : C_SEP;
    return C_SEP;
}

static uint32_t fold(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z' ? c + 32 : c;
    return g_loc ? (uint32_t)towlower_l((wint_t)c, g_loc) : c;
}

static int is_upper(uint32_t c) {
    if (c < 0x80) return c >= 'A' && c <= 'Z';
    return g_loc && iswupper_l((wint_t)c, g_loc);
}
static int is_lower(uint32_t c) {
    if (c < 0x80) return c >= 'a' && c <= 'z';
    return g_loc && iswlower_l((wint_t)c, g_loc);
}

/* Decodes the code point at p[0..n) (n >= 1): returns its length, or 1 with *c = 0xFFFFFFFF
 * for a byte that does not start a valid, shortest-form sequence. */
static size_t utf8_get(const uint8_t *p, size_t n, uint32_t *c) {
    const uint8_t b = p[0];
    size_t len;
    uint32_t v, min;
    if (b < 0x80) return *c = b, 1;
    if (b >= 0xc2 && b <= 0xdf) len = 2, v = b & 0x1f, min = 0x80;
    else if (b >= 0xe0 && b <= 0xef) len = 3, v = b & 0x0f, min = 0x800;
    else if (b >= 0xf0 && b <= 0xf4) len = 4, v = b & 0x07, min = 0x10000;
    else return *c = 0xffffffffu, 1;
    if (len > n) return *c = 0xffffffffu, 1;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return *c = 0xffffffffu, 1;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return *c = 0xffffffffu, 1;
    return *c = v, len;
}

static size_t utf8_put(char *p, uint32_t c) {
    if (c < 0x80) return p[0] = (char)c, 1;
    if (c < 0x800) return p[0] = (char)(0xc0 | c >> 6), p[1] = (char)(0x80 | (c & 0x3f)), 2;
    if (c < 0x10000) {
        p[0] = (char)(0xe0 | c >> 12), p[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        p[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    p[0] = (char)(0xf0 | c >> 18), p[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    p[2] = (char)(0x80 | ((c >> 6) & 0x3f)), p[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/* ---- the tokenizer ----------------------------------------------------------------------- */

int hsadb_lex_tok_open(hsadb_lex_tok **out) {
    hsadb_lex_tok *t;
    *out = NULL;
    pthread_once(&g_loc_once, loc_init);
    if (!(t = calloc(1, sizeof *t))) return ENOMEM;
    if (!(t->stem = sb_stemmer_new("english", "UTF_8"))) {
        free(t);
        return ENOMEM;
    }
    *out = t;
    return 0;
}

void hsadb_lex_tok_close(hsadb_lex_tok *t) {
    if (!t) return;
    sb_stemmer_delete(t->stem);
    free(t);
}

/* Emits one part: folded text part[0..len), stemmed when it holds a letter. */
static int emit_part(hsadb_lex_tok *t, size_t len, int letters, size_t start, hsadb_lex_emit_fn emit,
                     void *ctx) {
    if (len == 0) return 0;
    if (letters) {
        const sb_symbol *s = sb_stemmer_stem(t->stem, (const sb_symbol *)t->part, (int)len);
        if (!s) return ENOMEM;
        const int sl = sb_stemmer_length(t->stem);
        if (sl > 0) return emit(ctx, (const char *)s, (size_t)sl, start, 0);
    }
    return emit(ctx, t->part, len, start, 0);
}

/*
 * One identifier at text[i..): words joined by single joiners. Emits the whole (several parts)
 * and every part when its start lies in [from, to). Returns the offset after it in *next.
 */
static int scan_ident(hsadb_lex_tok *t, const uint8_t *text, size_t n, size_t i, size_t from, size_t to,
                      hsadb_lex_emit_fn emit, void *ctx, size_t *next) {
    /* part boundaries: up to 32 parts are emitted; further ones are scanned and dropped */
    enum { MAXP = 32 };
    size_t pbeg[MAXP], pend[MAXP], np = 0;
    const size_t start = i;
    size_t wlen = 0;                        /* bytes of the folded whole */
    int whole_ok = 1, rc;
    uint32_t c, prev = 0;
    size_t seg = i;                         /* start of the current part in text */

    for (;;) {                              /* a word run, then maybe a joiner and another word */
        size_t l;
        while (i < n) {
            l = utf8_get(text + i, n - i, &c);
            if (cls(c) != C_WORD) break;
            /* camelCase: a part ends before an upper-case letter that follows a lower-case one,
             * or before the last capital of an acronym followed by a lower-case letter (JSONParser) */
            if (i > seg && is_upper(c)) {
                uint32_t nx = 0;
                if (i + l < n) utf8_get(text + i + l, n - i - l, &nx);
                if (is_lower(prev) || (is_upper(prev) && is_lower(nx))) {
                    if (np < MAXP) pbeg[np] = seg, pend[np] = i, np++;
                    seg = i;
                }
            }
            const size_t fl = utf8_put(t->whole + wlen, fold(c));  /* the buffer has 8 bytes spare */
            if (wlen + fl <= HSADB_LEX_WHOLE_MAX) wlen += fl;
            else whole_ok = 0;
            prev = c;
            i += l;
        }
        if (np < MAXP) pbeg[np] = seg, pend[np] = i, np++;
        else whole_ok = 0;
        /* a joiner continues the identifier only when a word follows it */
        if (i >= n) break;
        l = utf8_get(text + i, n - i, &c);
        if (cls(c) != C_JOIN || i + l >= n) break;
        uint32_t c2;
        utf8_get(text + i + l, n - i - l, &c2);
        if (cls(c2) != C_WORD) break;
        const size_t jl = utf8_put(t->whole + wlen, c);
        if (wlen + jl <= HSADB_LEX_WHOLE_MAX) wlen += jl;
        else whole_ok = 0;
        i += l;
        seg = i;
        prev = c;
    }
    *next = i;
    if (start < from || start >= to) return 0;
    if (np > 1 && whole_ok && (rc = emit(ctx, t->whole, wlen, start, 1))) return rc;
    for (size_t p = 0; p < np; p++) {
        size_t len = 0;
        int letters = 0;
        for (size_t j = pbeg[p]; j < pend[p];) {
            size_t l = utf8_get(text + j, pend[p] - j, &c);
            if (!(c < 0x80 && c >= '0' && c <= '9')) letters = 1;
            const size_t fl = utf8_put(t->part + len, fold(c));    /* the buffer has 8 bytes spare */
            if (len + fl <= HSADB_LEX_PART_MAX) len += fl;
            else break;
            j += l;
        }
        if ((rc = emit_part(t, len, letters, start, emit, ctx))) return rc;   /* the token's start */
    }
    return 0;
}

int hsadb_lex_terms(hsadb_lex_tok *t, const uint8_t *text, size_t n, size_t from, size_t to,
                    hsadb_lex_emit_fn emit, void *ctx) {
    size_t i = 0;
    int rc;
    if (to > n) to = n;
    while (i < n && i < to) {
        uint32_t c;
        const size_t l = utf8_get(text + i, n - i, &c);
        const int k = cls(c);
        if (k == C_WORD) {
            size_t next;
            if ((rc = scan_ident(t, text, n, i, from, to, emit, ctx, &next))) return rc;
            i = next;
            continue;
        }
        if (k == C_CJK && i >= from) {
            char buf[4];
            if ((rc = emit(ctx, buf, utf8_put(buf, c), i, 0))) return rc;
        }
        i += l;
    }
    return 0;
}

/* ---- postings ---------------------------------------------------------------------------- */

static size_t varint_put(uint8_t *p, uint64_t v) {
    size_t n = 0;
    while (v >= 0x80) p[n++] = (uint8_t)(v | 0x80), v >>= 7;
    p[n++] = (uint8_t)v;
    return n;
}

static int varint_get(const uint8_t **p, const uint8_t *end, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end) return -1;
        const uint8_t b = *(*p)++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return *v = x, 0;
    }
    return -1;
}

size_t hsadb_lex_posting_put(uint8_t *p, uint64_t delta, uint32_t tf) {
    size_t n = varint_put(p, delta << 1 | (tf > 1));
    if (tf > 1) n += varint_put(p + n, tf - 2);
    return n;
}

int hsadb_lex_posting_get(const uint8_t **p, const uint8_t *end, uint64_t *delta, uint32_t *tf) {
    uint64_t v, x;
    if (varint_get(p, end, &v)) return -1;
    *delta = v >> 1;
    *tf = 1;
    if (v & 1) {
        if (varint_get(p, end, &x) || x > UINT32_MAX - 2) return -1;
        *tf = (uint32_t)x + 2;
    }
    return 0;
}
