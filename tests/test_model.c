/*
 * tests/test_model.c — loading a model: every way the files can be wrong gets
 * HSADB_ERR_BAD_MODEL (or an errno) and a message that names the file, key or tensor.
 * Broken copies of tests/data/tiny are written to a temporary directory.
 */
#include <unistd.h>

#include "st_file.h"
#include "hsadb.h"

static char dir[128];

static void write_file(const char *name, const unsigned char *b, size_t n) {
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

/* Replace the first occurrence of `from` by `to` (same length) in the safetensors header. */
static int patch(unsigned char *b, size_t n, const char *from, const char *to) {
    size_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | b[i];
    size_t fl = strlen(from);
    for (size_t i = 8; i + fl <= 8 + hl && i + fl <= n; i++)
        if (!memcmp(b + i, from, fl)) { memcpy(b + i, to, fl); return 1; }
    return 0;
}

/* A copy of config text with `"key": <number>` set to value (malloc'd; the key must exist). */
static char *set_key(const char *cfg, const char *key, const char *value) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *k = strstr(cfg, pat);
    if (!k) return strdup(cfg);
    const char *v = k + strlen(pat);
    while (*v == ' ') v++;
    const char *e = v;
    while ((*e >= '0' && *e <= '9') || *e == '.' || *e == '-' || *e == 'e') e++;
    char *out = malloc(strlen(cfg) + strlen(value) + 1);
    sprintf(out, "%.*s%s%s", (int)(v - cfg), cfg, value, e);
    return out;
}

/* Load dir with the given config and weights; expect failure `want` mentioning `needle`. */
static void expect(const char *what, const char *cfg, const unsigned char *st, size_t stn, int want, const char *needle) {
    hsadb_model *m = NULL;
    write_file("config.json", (const unsigned char *)cfg, strlen(cfg));
    write_file("model.safetensors", st, stn);
    int rc = hsadb_model_open(dir, &m);
    const char *msg = hsadb_last_error();
    CHECK(rc == want && m == NULL && strstr(msg, needle), "%s -> %s: %s", what, hsadb_strerror(rc), msg);
    hsadb_model_close(m);
}

int main(void) {
    size_t cn, sn;
    char *cfg = (char *)slurp("tests/data/tiny/config.json", &cn);
    unsigned char *st = slurp("tests/data/tiny/model.safetensors", &sn);
    if (!cfg || !st || !tu_tmpdir(dir, sizeof dir, "test-model")) return 1;
    hsadb_model *m;
    write_file("config.json", (unsigned char *)cfg, cn);
    write_file("model.safetensors", st, sn);
    CHECK(hsadb_model_open(dir, &m) == 0, "intact copy loads");
    hsadb_model_info info;
    hsadb_model_get_info(m, &info);
    CHECK(info.hidden_size == 64 && info.chunk_size == 64 && strlen(info.fingerprint) == 64, "info: D=%d, fingerprint %.12s…",
          info.hidden_size, info.fingerprint);
    /* The fingerprint is the SHA-256 of the weights file, as coreutils' sha256sum computes it. */
    char want[65] = "";
    FILE *p = popen("sha256sum tests/data/tiny/model.safetensors", "r");
    CHECK(p && fscanf(p, "%64s", want) == 1 && strcmp(want, info.fingerprint) == 0, "fingerprint %s = sha256sum %s",
          info.fingerprint, want);
    if (p) pclose(p);
    hsadb_model_close(m);

    unsigned char *b = malloc(sn);
    memcpy(b, st, sn);
    CHECK(patch(b, sn, "\"lower.0.attn.q.weight\"", "\"lower.0.attn.x.weight\""), "patched a tensor name");
    expect("missing tensor", cfg, b, sn, HSADB_ERR_BAD_MODEL, "missing tensor lower.0.attn.q.weight");

    memcpy(b, st, sn);
    /* dtype: the first F32 in the header becomes I32 (same length) */
    CHECK(patch(b, sn, "\"F32\"", "\"I32\""), "patched a dtype");
    expect("wrong dtype", cfg, b, sn, HSADB_ERR_BAD_MODEL, "dtype I32 not supported");

    memcpy(b, st, sn);
    CHECK(patch(b, sn, "[264,64]", "[263,64]"), "patched a shape");
    expect("wrong shape", cfg, b, sn, HSADB_ERR_BAD_MODEL, "shape [263,64], expected [264,64]");

    expect("truncated weights", cfg, st, sn / 2, HSADB_ERR_BAD_MODEL, "do not fit");
    expect("empty weights", cfg, st, 0, HSADB_ERR_BAD_MODEL, "empty");
    expect("garbage weights", cfg, (const unsigned char *)"\xff\xff\xff\xff\xff\xff\xff\x7fxx", 10, HSADB_ERR_BAD_MODEL, "header length");

    char *c2 = strdup(cfg);
    char *k = strstr(c2, "\"hidden_size\"");
    if (k) memcpy(k, "\"hidden_sizX\"", 13);
    expect("config without hidden_size", c2, st, sn, HSADB_ERR_BAD_MODEL, "missing key \"hidden_size\"");
    expect("config not JSON", "{\"vocab_size\": 264,", st, sn, HSADB_ERR_BAD_MODEL, "config.json");
    expect("config not JSON: where", "{\"vocab_size\": 264,", st, sn, HSADB_ERR_BAD_MODEL, "at byte");
    free(c2);
    c2 = malloc(cn + 32);
    snprintf(c2, cn + 32, "{\"chunk_size\": 64, %s", strchr(cfg, '{') + 1);
    expect("duplicate key", c2, st, sn, HSADB_ERR_BAD_MODEL, "duplicate object key");
    strcpy(c2, cfg);
    if ((k = strstr(c2, "\"sliding_window\": 96"))) memcpy(k, "\"sliding_window\": 32", 20);
    expect("window smaller than chunk", c2, st, sn, HSADB_ERR_BAD_MODEL, "sliding_window must be >= chunk_size");

    /* A bigger model config over the same weights: shapes no longer match. */
    strcpy(c2, cfg);
    if ((k = strstr(c2, "\"intermediate_size\": 128"))) memcpy(k, "\"intermediate_size\": 256", 24);
    expect("config/weights disagree", c2, st, sn, HSADB_ERR_BAD_MODEL, "mlp.gate.weight: shape [128,64], expected [256,64]");

    /* Bounds (issue 35): every dimension has a ceiling and the products that size weights and
     * buffers are checked; a huge chunk_topk used to load and then overflow every query's stack. */
    const struct { const char *key, *value, *needle; } bounds[] = {
        {"chunk_topk", "1000000", "\"chunk_topk\" = 1000000 exceeds"},
        {"chunk_topk", "4097", "\"chunk_topk\" = 4097 exceeds"},
        {"hidden_size", "999999", "\"hidden_size\" = 999999 exceeds"},
        {"num_lower_layers", "100000", "\"num_lower_layers\" = 100000 exceeds"},
        {"sliding_window", "999999999", "\"sliding_window\" = 999999999 exceeds"},
        {"vocab_size", "1048576", "vocab_size x hidden_size"},   /* 2^20 x 64: fine alone ... */
    };
    for (size_t i = 0; i < sizeof bounds / sizeof bounds[0]; i++) {
        char *c3 = set_key(cfg, bounds[i].key, bounds[i].value);
        if (i == 5) {                       /* ... but not with hidden_size 65536: 2^36 values */
            char *c4 = set_key(c3, "hidden_size", "65536");
            free(c3);
            c3 = c4;
        }
        char what[96];
        snprintf(what, sizeof what, "config %s = %s", bounds[i].key, bounds[i].value);
        expect(what, c3, st, sn, HSADB_ERR_BAD_MODEL, bounds[i].needle);
        free(c3);
    }
    {   /* the largest chunk_topk allowed loads (it sizes no tensor) */
        char *c3 = set_key(cfg, "chunk_topk", "4096");
        write_file("config.json", (const unsigned char *)c3, strlen(c3));
        write_file("model.safetensors", st, sn);
        int rc = hsadb_model_open(dir, &m);
        CHECK(rc == 0, "config chunk_topk = 4096 loads: %s", rc ? hsadb_last_error() : "ok");
        hsadb_model_close(m);
        free(c3);
    }

    CHECK(hsadb_model_open("/nonexistent/model", &m) == HSADB_ERR_BAD_MODEL && strstr(hsadb_last_error(), "config.json"),
          "missing directory: %s", hsadb_last_error());

    tu_rmrf(dir);
    free(b), free(c2), free(cfg), free(st);
    return tu_summary();
}
