/*
 * tests/test_lexical.c — the lexical index's terms, posting codes and BM25 ranking.
 *
 *   1. terms: words, numbers, identifiers whole and split, camelCase, case folding, Snowball
 *      stems, CJK, invalid UTF-8, the [from, to) window, long words
 *   2. posting codes: known bytes and a round trip
 *   3. BM25 on a tiny memory written through the store (no model): scores and order of the
 *      passages against values computed by hand, with 256- and 512-byte passages, and the
 *      unindexed end of the memory tokenized at search time
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hsadb.h"
#include "lexical.h"
#include "lexidx.h"
#include "store.h"
#include "test_util.h"

/* ---- 1. terms -------------------------------------------------------------------------- */

struct terms { char buf[4096]; size_t n; };

static int add_term(void *ctx, const char *t, size_t len, size_t start, int whole) {
    struct terms *T = ctx;
    (void)start, (void)whole;
    if (T->n + len + 2 >= sizeof T->buf) return 1;
    if (T->n) T->buf[T->n++] = '|';
    memcpy(T->buf + T->n, t, len);
    T->n += len;
    T->buf[T->n] = 0;
    return 0;
}

static const char *terms_of(hsadb_lex_tok *tok, const char *text, size_t n, size_t from, size_t to) {
    static struct terms T;
    T.n = 0, T.buf[0] = 0;
    hsadb_lex_terms(tok, (const uint8_t *)text, n, from, to, add_term, &T);
    return T.buf;
}

static void check_terms(hsadb_lex_tok *tok, const char *text, const char *want) {
    const char *got = terms_of(tok, text, strlen(text), 0, strlen(text));
    CHECK(strcmp(got, want) == 0, "terms of \"%s\": %s (want %s)", text, got, want);
}

static void test_terms(void) {
    hsadb_lex_tok *tok;
    printf("# 1. terms\n");
    if (hsadb_lex_tok_open(&tok)) { CHECK(0, "tokenizer opens"); return; }
    check_terms(tok, "Hello, World!", "hello|world");
    check_terms(tok, "running connections files easily", "run|connect|file|easili");
    check_terms(tok, "The year 2024 and 3.14", "the|year|2024|and|3.14|3|14");
    check_terms(tok, "v2.0.1-rc1", "v2.0.1-rc1|v2|0|1|rc1");
    check_terms(tok, "see /usr/share/doc/README.txt", "see|usr/share/doc/readme.txt|usr|share|doc|readm|txt");
    check_terms(tok, "mail dana.ortiz@example.org", "mail|dana.ortiz@example.org|dana|ortiz|exampl|org");
    check_terms(tok, "getUserName JSONParser", "getusername|get|user|name|jsonparser|json|parser");
    check_terms(tok, "max_tokens=8", "max_tokens|max|token|8");
    check_terms(tok, "id 0x1F3A deadbeef", "id|0x1f3a|deadbeef");
    check_terms(tok, "end. a - b, c-", "end|a|b|c");
    check_terms(tok, "ÆØÅ ĞÜNEŞ", "æøå|ğüneş");
    check_terms(tok, "東京タワー", "東|京|タ|ワ|ー");
    check_terms(tok, "\xff\xfe" "abc\xc3(def\xe2\x82", "abc|def");
    check_terms(tok, "\xc0\xaf" "x \xed\xa0\x80y", "x|y");             /* overlong, surrogate */
    check_terms(tok, "?! ... -- ##", "");
    {   /* a word of 100 letters is cut to HSADB_LEX_PART_MAX bytes (and not stemmed further) */
        char w[101], want[HSADB_LEX_PART_MAX + 1];
        memset(w, 'q', 100), w[100] = 0;
        memset(want, 'q', HSADB_LEX_PART_MAX), want[HSADB_LEX_PART_MAX] = 0;
        check_terms(tok, w, want);
    }
    /* the [from, to) window: tokens that start inside it, context around it */
    const char *t = "alpha beta gamma";
    CHECK(strcmp(terms_of(tok, t, 16, 6, 10), "beta") == 0, "window [6,10): beta");
    CHECK(strcmp(terms_of(tok, t, 16, 7, 16), "gamma") == 0, "window [7,16): beta started before it");
    CHECK(strcmp(terms_of(tok, t, 16, 0, 8), "alpha|beta") == 0, "window [0,8): beta runs on past it");
    CHECK(strcmp(terms_of(tok, "x.y.z w", 7, 2, 7), "w") == 0, "an identifier that began before the window is skipped whole");
    hsadb_lex_tok_close(tok);
}

/* ---- 2. postings ----------------------------------------------------------------------- */

static void test_postings(void) {
    uint8_t b[64];
    const uint8_t *p;
    uint64_t d;
    uint32_t tf;
    size_t n;
    printf("# 2. posting codes\n");
    n = hsadb_lex_posting_put(b, 5, 1);
    CHECK(n == 1 && b[0] == 0x0a, "(5, tf 1) is one byte 0x0a");
    n = hsadb_lex_posting_put(b, 5, 3);
    CHECK(n == 2 && b[0] == 0x0b && b[1] == 0x01, "(5, tf 3) is 0x0b 0x01");
    n = hsadb_lex_posting_put(b, 200, 1);
    CHECK(n == 2 && b[0] == 0x90 && b[1] == 0x03, "(200, tf 1) is varint 400: 0x90 0x03");
    size_t at = 0;
    const uint64_t ds[] = { 0, 1, 127, 128, 4000000000ull };
    const uint32_t tfs[] = { 1, 2, 65535, 1, 7 };
    for (int i = 0; i < 5; i++) at += hsadb_lex_posting_put(b + at, ds[i], tfs[i]);
    p = b;
    int ok = 1;
    for (int i = 0; i < 5; i++)
        ok &= hsadb_lex_posting_get(&p, b + at, &d, &tf) == 0 && d == ds[i] && tf == tfs[i];
    CHECK(ok && p == b + at, "five postings round-trip");
    p = b;
    b[0] = 0x80;
    CHECK(hsadb_lex_posting_get(&p, b + 1, &d, &tf) == -1, "a cut varint is refused");
}

/* ---- 3. BM25 ----------------------------------------------------------------------------- */

static int near(double a, double b) { return fabs(a - b) < 1e-4 * (1 + fabs(b)); }

/* A memory of 13 chunks (832 bytes) written through the store: units 0..2 are indexed, unit 3
 * (chunk 12) is the end that search tokenizes itself. */
static int make_memory(const char *dir) {
    struct hsadb_memory_rec rec;
    hsadb_store *st;
    hsadb_store_writer *w;
    char text[832];
    int rc;
    memset(text, ' ', sizeof text);
    memcpy(text, "apple banana", 12);             /* unit 0: 2 terms */
    memcpy(text + 256, "apple apple cherry", 18); /* unit 1: 3 terms */
    memcpy(text + 512, "banana", 6);              /* unit 2: 1 term */
    memcpy(text + 768, "cherry cherry", 13);      /* unit 3: 2 terms (not indexed: no lookahead) */
    memset(&rec, 0, sizeof rec);
    rec.kv_dtype = 0, rec.chunk_size = 64, rec.mem_heads = 1, rec.head_dim = 1, rec.retrieval_dim = 1;
    if ((rc = hsadb_store_open(dir, HSADB_STORE_CREATE, &st))) return rc;
    if ((rc = hsadb_store_memory_create(st, "t", &rec)) || (rc = hsadb_store_writer_begin(st, "t", 1700000000, &w, NULL)))
        goto out;
    uint8_t lm[2] = {0}, kv[256] = {0};
    for (int c = 0; c < 13 && !rc; c++) {
        struct hsadb_chunk_meta m = { 1, (uint64_t)c * 64, 1700000000 };
        rc = hsadb_store_writer_put_chunk(w, lm, kv, &m, (const uint8_t *)text + 64 * c);
    }
    if (!rc) rc = hsadb_store_writer_commit(w, NULL, 0, 832, 832, 1);
    hsadb_store_writer_end(w);
out:
    hsadb_store_close(st);
    return rc;
}

static void test_bm25(void) {
    char dir[128];
    hsadb_db *db = NULL;
    hsadb_passages *p = NULL;
    hsadb_lexical_info li;
    printf("# 3. BM25\n");
    /* the formulas themselves */
    CHECK(near(hsadb_bm25_idf(10, 2), log(4.4)), "idf(N 10, df 2) = ln 4.4");
    CHECK(near(hsadb_bm25_tf(2, 10, 5, 1.2, 0.75), 4.4 / 4.1), "tf part(2, dl 10, avgdl 5) = 4.4/4.1");
    CHECK(hsadb_bm25_tf(0, 3, 2, 1.2, 0.75) == 0, "tf 0 scores 0");

    if (!tu_tmpdir(dir, sizeof dir, "lexical")) { CHECK(0, "tmpdir"); return; }
    int rc = make_memory(dir);
    CHECK(rc == 0, "memory of 13 chunks written through the store: %s", rc ? hsadb_last_error() : "");
    if (rc) goto out;
    rc = hsadb_db_open(dir, &(hsadb_db_options){ .flags = HSADB_DB_RDONLY }, &db);
    CHECK(rc == 0, "db opens without a model");
    if (rc) goto out;
    rc = hsadb_lexical_check(db, "t", &li);
    CHECK(rc == 0 && li.consistent && li.units == 3 && li.indexed_units == 3,
          "index holds units 0..2 (the 4th has no lookahead chunk yet): %s", li.detail);

    /* 256-byte passages = units. dl 2,3,1,2 (unit 3 tokenized at search time): avgdl 2, N 4. */
    hsadb_search_options o = { .mode = HSADB_SEARCH_LEXICAL, .k = 4, .passage_bytes = 256,
                               .context_bytes = HSADB_SEARCH_NO_CONTEXT };
    rc = hsadb_search_passages(db, "t", "cherry", 6, &o, &p);
    /* df 2: idf ln 2. unit 3: tf 2, dl 2 -> 4.4/3.2; unit 1: tf 1, dl 3 -> 2.2/2.65 */
    CHECK(rc == 0 && p->n == 2 && p->hits[0].start == 768 && p->hits[0].end == 832 &&
          near(p->hits[0].score, log(2) * 4.4 / 3.2) && p->hits[1].start == 256 && p->hits[1].end == 512 &&
          near(p->hits[1].score, log(2) * 2.2 / 2.65) && p->scanned_bytes == 64,
          "cherry: unit 3 (%.6f) then unit 1 (%.6f), as computed by hand; 64 bytes scanned",
          p && p->n ? p->hits[0].score : -1, p && p->n > 1 ? p->hits[1].score : -1);
    CHECK(rc == 0 && p->n == 2 && p->hits[0].text_len == 64 && memcmp(p->hits[0].text, "cherry cherry", 13) == 0 &&
          p->hits[0].append_id == 1 && p->hits[0].time == 1700000000 && p->hits[0].lexical_rank == 1 &&
          p->hits[0].model_rank == 0 && p->hits[0].model_score == 0,
          "the hit's text, provenance and ranks");
    hsadb_passages_free(p), p = NULL;
    rc = hsadb_search_passages(db, "t", "Apples!", 7, &o, &p);
    /* apple: df 2. unit 1: tf 2, dl 3 -> 4.4/3.65; unit 0: tf 1, dl 2 -> 2.2/2.2 */
    CHECK(rc == 0 && p->n == 2 && p->hits[0].start == 256 && near(p->hits[0].score, log(2) * 4.4 / 3.65) &&
          p->hits[1].start == 0 && near(p->hits[1].score, log(2) * 1.0),
          "Apples! (stemmed, folded): unit 1 then unit 0, as computed by hand");
    hsadb_passages_free(p), p = NULL;
    /* b = 0: no length normalisation, so unit 0 and unit 1's single cherry... */
    o.bm25_k1 = 2.0f, o.bm25_b = 0.0f;
    rc = hsadb_search_passages(db, "t", "banana", 6, &o, &p);
    /* banana: units 0 and 2, df 2; b 0: tf part 1*3/(1+2) = 1 each; tie -> the newer unit first */
    CHECK(rc == 0 && p->n == 2 && p->hits[0].start == 512 && p->hits[1].start == 0 &&
          near(p->hits[0].score, log(2)) && near(p->hits[1].score, log(2)),
          "k1 2, b 0: banana scores ln 2 in units 2 and 0 (tie: newer first)");
    hsadb_passages_free(p), p = NULL;

    /* 512-byte passages: windows [u0 u1], [u1 u2], [u2 u3]; N 3, avgdl 4 */
    o = (hsadb_search_options){ .mode = HSADB_SEARCH_LEXICAL, .k = 3, .passage_bytes = 512,
                                .context_bytes = HSADB_SEARCH_NO_CONTEXT };
    rc = hsadb_search_passages(db, "t", "cherry", 6, &o, &p);
    /* df 3: idf ln(1 + 0.5/3.5). w2: tf 2, dl 3 -> 4.4/2.975; w1 overlaps it; w0: tf 1, dl 5 -> 2.2/2.425 */
    const double idf = log(1 + 0.5 / 3.5);
    CHECK(rc == 0 && p->n == 2 && p->hits[0].start == 512 && p->hits[0].end == 832 &&
          near(p->hits[0].score, idf * 4.4 / 2.975) && p->hits[1].start == 0 && p->hits[1].end == 512 &&
          near(p->hits[1].score, idf * 2.2 / 2.425),
          "512-byte passages: cherry in [512,832) then [0,512) ([256,768) overlaps the first)");
    hsadb_passages_free(p), p = NULL;

    /* bad input */
    o.k = 0;
    rc = hsadb_search_passages(db, "t", "", 0, &o, &p);
    CHECK(rc == HSADB_ERR_INVALID && !p, "empty question: HSADB_ERR_INVALID");
    o.passage_bytes = 300;
    rc = hsadb_search_passages(db, "t", "x", 1, &o, &p);
    CHECK(rc == HSADB_ERR_INVALID && !p, "passage of 300 bytes: HSADB_ERR_INVALID");
    o.passage_bytes = 0, o.mode = HSADB_SEARCH_HYBRID;
    rc = hsadb_search_passages(db, "t", "x", 1, &o, &p);
    CHECK(rc == HSADB_ERR_NO_MODEL && !p, "hybrid without a model: HSADB_ERR_NO_MODEL");
out:
    hsadb_passages_free(p);
    hsadb_db_close(db);
    tu_rmrf(dir);
}

int main(void) {
    test_terms();
    test_postings();
    test_bm25();
    return tu_summary();
}
