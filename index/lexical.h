/*
 * index/lexical.h — terms, posting codes and BM25 of the lexical index (internal).
 *
 * The tokenizer turns bytes into search terms; the store (storage/lexidx.c) keeps the terms'
 * posting lists, and the search (engine/search.c) scores passages with BM25. This module owns
 * no LMDB state: it is pure functions over buffers, so the unit tests pin its behaviour.
 *
 * Terms (docs/storage.md, "Lexical index"):
 *   - Text is read as UTF-8. A byte that does not start a valid sequence is a separator (it never
 *     fails and never reads past the buffer).
 *   - A *word* is a run of letters, digits and combining marks (glibc's C.UTF-8 classes; ASCII
 *     alone if that locale is missing). A CJK ideograph or kana is a word of its own.
 *   - An *identifier* is words joined by single joiners . / - _ @ : + ~ \ # ' (a joiner counts only
 *     between two words): paths, versions, hex ids, e-mail addresses, dotted names, snake_case.
 *     A camelCase word is an identifier of its case parts.
 *   - Every word is case-folded (towlower) and stemmed with Snowball's English stemmer (words
 *     with a letter; numbers are kept as they are). A word is cut to HSADB_LEX_PART_MAX bytes.
 *   - An identifier of several parts gives the whole (case-folded, not stemmed; not emitted when
 *     longer than HSADB_LEX_WHOLE_MAX bytes) AND each part, so "os.path.join" matches both
 *     "os.path.join" and "join".
 *
 * Errors: 0, ENOMEM, or what the emit callback returns (nonzero stops the scan).
 * Thread safety: a hsadb_lex_tok is used by one thread at a time (Snowball's stemmer keeps state).
 */
#ifndef HSADB_LEXICAL_H
#define HSADB_LEXICAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#define HSADB_LEX_VERSION   1     /* bumped whenever the terms of a text change: forces a rebuild */
#define HSADB_LEX_PART_MAX  64    /* bytes of a word (part) term */
#define HSADB_LEX_WHOLE_MAX 128   /* bytes of a whole-identifier term */
#define HSADB_LEX_TERM_MAX  HSADB_LEX_WHOLE_MAX

typedef struct hsadb_lex_tok hsadb_lex_tok;

/* A tokenizer: the Snowball stemmer and scratch buffers. ENOMEM if it cannot be made. */
int  hsadb_lex_tok_open(hsadb_lex_tok **out);
void hsadb_lex_tok_close(hsadb_lex_tok *t);                 /* NULL is a no-op */

/* Called for each term: `term` (not NUL-terminated, valid during the call), its length, the
 * offset in text of the first byte of the token it came from, and whole = 1 for the whole of a
 * split identifier (BM25 does not count those in a passage's length: its words are counted as
 * parts already). Nonzero stops the scan. */
typedef int (*hsadb_lex_emit_fn)(void *ctx, const char *term, size_t len, size_t start, int whole);

/* The terms of text[0..n) whose token starts at an offset in [from, to). Bytes outside
 * [from, to) are context: a token that began before `from` (text before it is given as
 * lookback) is skipped, and one that starts before `to` may run on after it. */
int hsadb_lex_terms(hsadb_lex_tok *t, const uint8_t *text, size_t n, size_t from, size_t to,
                    hsadb_lex_emit_fn emit, void *ctx);

/* ---- postings: (unit delta, tf) pairs, varint-coded ---------------------------------------
 * One posting is varint(delta * 2 + (tf > 1)) followed by varint(tf - 2) when tf > 1: a term
 * that occurs once in a unit (most postings) at a nearby unit costs one byte. */
#define HSADB_LEX_POSTING_MAX 20   /* bytes one posting may take */

size_t hsadb_lex_posting_put(uint8_t *p, uint64_t delta, uint32_t tf);
/* Decodes one posting at *p (advanced); HSADB_ERR_CORRUPT-worthy input returns -1. */
int    hsadb_lex_posting_get(const uint8_t **p, const uint8_t *end, uint64_t *delta, uint32_t *tf);

/* ---- BM25 -------------------------------------------------------------------------------- */

/* Inverse document frequency of a term found in df of n passages (Lucene's form, > 0). */
static inline double hsadb_bm25_idf(double n, double df) {
    return log(1.0 + (n - df + 0.5) / (df + 0.5));
}

/* The saturated term frequency of BM25: tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl)). */
static inline double hsadb_bm25_tf(double tf, double dl, double avgdl, double k1, double b) {
    if (tf <= 0) return 0;
    return tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * (avgdl > 0 ? dl / avgdl : 1.0)));
}

#endif
