/*
 * tests/test_tokenizer.c — the byte-level BPE tokenizer (tokenizer/bpe.h).
 *
 *   test_tokenizer [DIR]   DIR defaults to tests/tokenizer/fixtures (committed, small); the
 *                          ctest tokenizer_reference passes the directory that
 *                          tests/tokenizer/gen_reference.mjs fills from the reference.
 *
 * DIR/cases.txt, written by gen_reference.mjs from Hugging Face tokenizers (npm binding):
 *   t NAME            the following cases use DIR/NAME.json
 *   c HEX IDS...      input bytes (hex, "-" when empty) and the reference's ids ("-" when none)
 *   n HEX IDS...      the same for an input whose decode the reference changes (NFC, prefix space)
 * DIR/classes.txt (optional): "LO HI K" lines, the reference's class of code points LO..HI.
 * Every case must encode to exactly its ids and decode back to its bytes. Then the error paths
 * and output-buffer contract are checked on tokenizers written here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "hsadb.h"

static int failures;
#define CHECK(cond, ...)                                                   \
    do {                                                                   \
        if (!(cond)) {                                                     \
            failures++;                                                    \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);           \
            fprintf(stderr, __VA_ARGS__);                                  \
            fputc('\n', stderr);                                           \
        }                                                                  \
    } while (0)

static int hexval(int c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Run DIR/cases.txt; returns the number of cases run, -1 when the file is absent. */
static long run_cases(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/cases.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t    lcap = 1 << 16, bcap = 1 << 16, icap = 1 << 14, ocap = 1 << 14;
    char     *line = malloc(lcap);
    uint8_t  *bytes = malloc(bcap), *back = malloc(bcap);
    uint32_t *want = malloc(icap * 4), *got = malloc(ocap * 4);
    hsadb_tokenizer *tok = NULL;
    char     name[256] = "";
    long     n_cases = 0, lineno = 0;
    ssize_t  r;
    while ((r = getline(&line, &lcap, f)) > 0) {
        lineno++;
        if (line[r - 1] == '\n') line[--r] = 0;
        if (line[0] == 't' && line[1] == ' ') {
            hsadb_tokenizer_close(tok);
            tok = NULL;
            snprintf(name, sizeof name, "%s", line + 2);
            snprintf(path, sizeof path, "%s/%s.json", dir, name);
            int rc = hsadb_tokenizer_open(path, &tok);
            CHECK(rc == 0, "open %s: %s (%s)", path, hsadb_strerror(rc), hsadb_last_error());
            continue;
        }
        if ((line[0] != 'c' && line[0] != 'n') || !tok) continue;
        int round_trip = line[0] == 'c';   /* 'n': NFC changes this input, so no round trip */
        char *hex = line + 2, *ids = strchr(hex, ' ');
        if (!ids) { CHECK(0, "cases.txt:%ld: malformed", lineno); continue; }
        *ids++ = 0;
        size_t len = 0;
        if (strcmp(hex, "-")) {
            len = strlen(hex) / 2;
            if (len > bcap) {
                bcap = len;
                bytes = realloc(bytes, bcap), back = realloc(back, bcap);
            }
            for (size_t i = 0; i < len; i++) bytes[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
        }
        size_t nw = 0;
        if (strcmp(ids, "-")) {
            for (char *p = ids; *p;) {
                if (nw == icap) want = realloc(want, (icap *= 2) * 4);
                want[nw++] = (uint32_t)strtoul(p, &p, 10);
                while (*p == ' ') p++;
            }
        }
        size_t n = 0;
        int    rc = hsadb_tokenizer_encode(tok, bytes, len, got, ocap, &n);
        if (rc == ERANGE) {
            while (ocap < n) ocap *= 2;
            got = realloc(got, ocap * 4);
            rc = hsadb_tokenizer_encode(tok, bytes, len, got, ocap, &n);
        }
        n_cases++;
        CHECK(rc == 0, "%s line %ld: encode: %s", name, lineno, hsadb_strerror(rc));
        int same = rc == 0 && n == nw && (n == 0 || memcmp(got, want, n * 4) == 0);
        if (!same) {
            size_t k = 0;
            while (k < n && k < nw && got[k] == want[k]) k++;
            CHECK(0, "%s line %ld (%zu bytes): %zu ids, reference %zu; first difference at %zu: %u vs %u", name,
                  lineno, len, n, nw, k, k < n ? got[k] : 0, k < nw ? want[k] : 0);
        }
        size_t blen = 0;
        rc = hsadb_tokenizer_decode(tok, got, n, back, bcap, &blen);
        if (round_trip)
            CHECK(rc == 0 && blen == len && memcmp(back, bytes, len) == 0, "%s line %ld: decode(encode(x)) != x",
                  name, lineno);
    }
    hsadb_tokenizer_close(tok);
    free(line), free(bytes), free(back), free(want), free(got);
    fclose(f);
    return n_cases;
}

static long run_classes(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    unsigned lo, hi;
    char     k;
    long     n = 0, bad = 0;
    while (fscanf(f, "%x %x %c", &lo, &hi, &k) == 3) {
        for (unsigned c = lo; c <= hi; c++, n++) {
            int mine = hsadb_tokenizer_char_class(c);
            if (mine != k && bad++ < 10) CHECK(0, "U+%04X: class %c, reference %c", c, mine, k);
        }
    }
    fclose(f);
    CHECK(bad == 0, "%ld code points classed unlike the reference", bad);
    CHECK(n == 0x110000 - 0x800, "classes.txt covers %ld code points", n);
    return n;
}

/* ---- tokenizers written here: a 256-byte alphabet vocabulary + a few merges ---- */
static char *make_json(const char *pre, const char *extra_model, const char *added, const char *norm,
                       const char *decoder, const char *merges) {
    /* the byte-level alphabet: byte b -> code point (GPT-2's bytes_to_unicode) */
    static char buf[1 << 16];
    size_t      o = 0;
    o += (size_t)snprintf(buf + o, sizeof buf - o,
                          "{\"version\":\"1.0\",\"added_tokens\":[%s],\"normalizer\":%s,\"pre_tokenizer\":%s,"
                          "\"post_processor\":null,\"decoder\":%s,\"model\":{\"type\":\"BPE\"%s,\"vocab\":{",
                          added, norm, pre, decoder, extra_model);
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
        int cp = printable ? b : 256 + n++;
        char u[8];
        if (cp < 0x80) {
            if (cp == '"' || cp == '\\') snprintf(u, sizeof u, "\\%c", cp);
            else snprintf(u, sizeof u, "%c", cp);
        } else {
            u[0] = (char)(0xc0 | (cp >> 6)), u[1] = (char)(0x80 | (cp & 0x3f)), u[2] = 0;
        }
        o += (size_t)snprintf(buf + o, sizeof buf - o, "%s\"%s\":%d", b ? "," : "", u, b);
    }
    o += (size_t)snprintf(buf + o, sizeof buf - o, ",\"he\":256,\"ll\":257,\"hell\":258,\"\\u0120he\":259}"
                                                   ",\"merges\":%s}}", merges);
    return buf;
}

#define BL "{\"type\":\"ByteLevel\",\"add_prefix_space\":false,\"trim_offsets\":true,\"use_regex\":true}"
#define MERGES "[\"h e\",\"l l\",\"he ll\",\"\\u0120 he\"]"

static int open_str(const char *json, hsadb_tokenizer **t) {
    return hsadb_tokenizer_open_json(json, strlen(json), t);
}

static void expect_refused(const char *json, const char *needle) {
    hsadb_tokenizer *t = NULL;
    int              rc = open_str(json, &t);
    CHECK(rc == HSADB_ERR_BAD_MODEL && !t, "expected refusal mentioning '%s', got %d", needle, rc);
    CHECK(strstr(hsadb_last_error(), needle), "error '%s' lacks '%s'", hsadb_last_error(), needle);
}

static void test_contract(void) {
    hsadb_tokenizer *t = NULL;
    const char      *ok = make_json(BL, "", "{\"id\":300,\"content\":\"<|eot|>\",\"special\":true,"
                                            "\"normalized\":false,\"lstrip\":false,\"rstrip\":false,\"single_word\":false}",
                                    "null", BL, MERGES);
    int rc = open_str(ok, &t);
    CHECK(rc == 0, "open: %s", hsadb_last_error());
    if (rc) return;
    CHECK(hsadb_tokenizer_vocab_size(t) == 301, "vocab size %u", hsadb_tokenizer_vocab_size(t));
    CHECK(hsadb_tokenizer_token_id(t, "<|eot|>") == 300, "token_id of <|eot|>");
    CHECK(hsadb_tokenizer_token_id(t, "hell") == 258, "token_id of hell");
    CHECK(hsadb_tokenizer_token_id(t, "nope") == -1, "token_id of an absent token");
    CHECK(hsadb_tokenizer_is_special(t, 300) && !hsadb_tokenizer_is_special(t, 258), "is_special");
    const char *text = "hello<|eot|> hell";
    uint32_t    ids[32];
    size_t      n = 0;
    rc = hsadb_tokenizer_encode(t, text, strlen(text), ids, 32, &n);
    /* "hello" -> he ll o -> hell o; " hell" -> Ġ he ll -> Ġ hell (the queued Ġ+he is stale) */
    uint32_t want[] = {258, 'o', 300, ' ', 258};
    CHECK(rc == 0 && n == 5 && !memcmp(ids, want, sizeof want), "encode: rc %d n %zu", rc, n);
    /* a too small output: ERANGE, the needed count, and the prefix */
    size_t n2 = 0;
    rc = hsadb_tokenizer_encode(t, text, strlen(text), ids, 2, &n2);
    CHECK(rc == ERANGE && n2 == 5 && ids[0] == 258 && ids[1] == 'o', "ERANGE encode: rc %d n %zu", rc, n2);
    rc = hsadb_tokenizer_encode(t, text, strlen(text), NULL, 0, &n2);
    CHECK(rc == ERANGE && n2 == 5, "sizing call: rc %d n %zu", rc, n2);
    rc = hsadb_tokenizer_encode(t, "", 0, NULL, 0, &n2);
    CHECK(rc == 0 && n2 == 0, "empty input");
    char   out[64];
    size_t len = 0;
    rc = hsadb_tokenizer_decode(t, want, 5, out, sizeof out, &len);
    CHECK(rc == 0 && len == strlen(text) && !memcmp(out, text, len), "decode");
    rc = hsadb_tokenizer_decode(t, want, 5, out, 3, &len);
    CHECK(rc == ERANGE && len == strlen(text) && !memcmp(out, "hel", 3), "ERANGE decode");
    uint32_t bad[] = {258, 299};
    rc = hsadb_tokenizer_decode(t, bad, 2, out, sizeof out, &len);
    CHECK(rc == HSADB_ERR_INVALID && strstr(hsadb_last_error(), "299"), "decode of a hole id: %d", rc);
    bad[1] = 5000;
    rc = hsadb_tokenizer_decode(t, bad, 2, out, sizeof out, &len);
    CHECK(rc == HSADB_ERR_INVALID, "decode of an id past the vocabulary: %d", rc);
    CHECK(hsadb_tokenizer_encode(t, NULL, 3, ids, 32, &n) == HSADB_ERR_INVALID, "NULL bytes");
    CHECK(hsadb_tokenizer_encode(t, "x", 1, NULL, 4, &n) == HSADB_ERR_INVALID, "NULL ids with cap");
    /* random bytes: never crash, always round-trip */
    uint8_t  rnd[4096], back[4096];
    uint32_t rids[4096];
    uint64_t s = 88172645463325252ull;
    for (int iter = 0; iter < 2000; iter++) {
        size_t l = (size_t)(iter % 97) * 40 % sizeof rnd;
        for (size_t i = 0; i < l; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            rnd[i] = (uint8_t)(iter & 1 ? s : (s % 5 ? 0x80 + (s >> 8) % 0x40 : 0xc0 + (s >> 8) % 0x40));
        }
        rc = hsadb_tokenizer_encode(t, rnd, l, rids, 4096, &n);
        CHECK(rc == 0, "random bytes: encode %d", rc);
        rc = hsadb_tokenizer_decode(t, rids, n, back, sizeof back, &len);
        CHECK(rc == 0 && len == l && !memcmp(back, rnd, l), "random bytes: round trip (iter %d)", iter);
    }
    hsadb_tokenizer_close(t);
    hsadb_tokenizer_close(NULL);

    /* refusals, each naming what is refused */
    expect_refused("{\"model\":", "tokenizer.json: line");
    expect_refused("[1,2]", "not a JSON object");
    expect_refused(make_json("{\"type\":\"Whitespace\"}", "", "", "null", BL, MERGES), "Whitespace");
    expect_refused(make_json("{\"type\":\"Split\",\"pattern\":{\"Regex\":\"\\\\w+\"},\"behavior\":\"Isolated\","
                             "\"invert\":false}", "", "", "null", BL, MERGES), "\\w+");
    expect_refused(make_json(BL, "", "", "{\"type\":\"NFKC\"}", BL, MERGES), "NFKC");
    expect_refused(make_json(BL, "", "", "null", "{\"type\":\"WordPiece\"}", MERGES), "WordPiece");
    expect_refused(make_json(BL, ",\"dropout\":0.1", "", "null", BL, MERGES), "dropout");
    expect_refused(make_json(BL, ",\"byte_fallback\":true", "", "null", BL, MERGES), "byte_fallback");
    expect_refused(make_json(BL, "", "", "null", BL, "[\"h q\"]"), "merges[0]");
    expect_refused(make_json(BL, "", "", "null", BL, "[\"h e x\"]"), "not two tokens");
    expect_refused(make_json(BL, "", "", "null", BL, "[[\"h\"]]"), "merges[0]");
    expect_refused(make_json(BL, "", "{\"id\":300,\"content\":\"<x>\",\"special\":true,\"lstrip\":true}", "null", BL,
                             MERGES), "lstrip");
    expect_refused(make_json("null", "", "", "null", BL, MERGES), "pre_tokenizer");
    expect_refused(make_json("{\"type\":\"Sequence\",\"pretokenizers\":[" BL ",{\"type\":\"Split\",\"pattern\":"
                             "{\"String\":\"x\"},\"behavior\":\"Isolated\",\"invert\":false}]}", "", "", "null", BL,
                             MERGES), "end with ByteLevel");
    expect_refused(make_json(BL, ",\"unk_token\":\"<unk>\"", "", "null", BL, MERGES), "<unk>");
    expect_refused("{\"model\":{\"type\":\"WordPiece\",\"vocab\":{}}}", "WordPiece");
    rc = hsadb_tokenizer_open("tests", &t);   /* a directory */
    CHECK(rc == EISDIR && !t, "open of a directory: %d (%s)", rc, hsadb_last_error());
    rc = hsadb_tokenizer_open("/nonexistent/tokenizer.json", &t);
    CHECK(rc == ENOENT && !t, "open of a missing file: %d", rc);
    CHECK(strstr(hsadb_last_error(), "/nonexistent/tokenizer.json"), "missing file named: %s", hsadb_last_error());
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : "tests/tokenizer/fixtures";
    test_contract();
    long n = run_cases(dir);
    CHECK(n > 0, "no cases in %s/cases.txt", dir);
    long c = run_classes(dir);
    printf("test_tokenizer: %ld reference cases from %s, %ld code point classes, %d failures\n", n, dir,
           c < 0 ? 0 : c, failures);
    return failures ? 1 : 0;
}
