/*
 * model/model.c — load and validate config.json + model.safetensors.
 *
 * The weights file is memory-mapped, hashed (SHA-256 through libcrypto: the model's fingerprint,
 * which binds memories to it), its JSON header parsed (jansson: model files are untrusted input,
 * so a maintained parser reads them; duplicate keys are rejected), and every tensor the config
 * implies is looked
 * up by name, checked for shape and dtype, and converted into one fp32 arena. Anything
 * wrong is reported as HSADB_ERR_BAD_MODEL with the file, key or tensor named.
 */
#include "model.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "util.h"

/* ---- config.json ---------------------------------------------------------------------- */

/*
 * Bounds on config.json (issue 35: a chunk_topk of 10^6 overflowed the stack of every query).
 * Each dimension has a ceiling far above any model this engine is for, and every product that
 * sizes an allocation or a loop is checked in 64 bits below (CFG_ELEMS_MAX elements). A model
 * beyond them is refused at load with the key that is too large, never half-run.
 */
#define CFG_DIM_MAX      65536        /* hidden_size, intermediate_size (x4), sliding_window */
#define CFG_HEADS_MAX    1024         /* attention, key/value and memory heads */
#define CFG_HEAD_DIM_MAX 1024         /* head_dim, retrieval_dim */
#define CFG_LAYERS_MAX   1024         /* each layer count */
#define CFG_CHUNK_MAX    4096         /* chunk_size (the store allows 65536) */
#define CFG_TOPK_MAX     4096         /* chunk_topk */
#define CFG_VOCAB_MAX    (1 << 20)
#define CFG_ELEMS_MAX    ((uint64_t)1 << 32) /* one weight tensor or one per-run buffer */

/* An integer (or boolean: 0/1) member; a size must lie in [0, 1e9]. */
static int cfg_int(const json_t *root, const char *key, int *out, int required, int dflt) {
    json_t *j = json_object_get(root, key);
    if (!j) {
        if (required) return hsadb_fail(HSADB_ERR_BAD_MODEL, "config.json: missing key \"%s\"", key);
        *out = dflt;
        return 0;
    }
    if (!json_is_number(j) && !json_is_boolean(j))
        return hsadb_fail(HSADB_ERR_BAD_MODEL, "config.json: \"%s\" must be a number", key);
    double v = json_is_boolean(j) ? (json_is_true(j) ? 1 : 0) : json_number_value(j);
    if (v != (double)(int)v || v < 0 || v > 1e9)
        return hsadb_fail(HSADB_ERR_BAD_MODEL, "config.json: \"%s\" = %g is not a valid size", key, v);
    *out = (int)v;
    return 0;
}

/* Each dimension within its ceiling, then the products that size weights and buffers. */
static int cfg_bounds(const hsadb_config *c) {
    const struct { const char *key; int v, max; } dims[] = {
        {"vocab_size", c->vocab, CFG_VOCAB_MAX},           {"hidden_size", c->dim, CFG_DIM_MAX},
        {"intermediate_size", c->hidden, 4 * CFG_DIM_MAX}, {"num_attention_heads", c->n_heads, CFG_HEADS_MAX},
        {"head_dim", c->head_dim, CFG_HEAD_DIM_MAX},       {"num_key_value_heads", c->n_kv_heads, CFG_HEADS_MAX},
        {"num_memory_heads", c->n_mem_heads, CFG_HEADS_MAX}, {"retrieval_dim", c->retr_dim, CFG_HEAD_DIM_MAX},
        {"num_lower_layers", c->n_lower, CFG_LAYERS_MAX},  {"encoder_layers", c->n_encoder, CFG_LAYERS_MAX},
        {"num_upper_groups", c->n_groups, CFG_LAYERS_MAX}, {"swa_layers_per_group", c->swa_per_group, CFG_LAYERS_MAX},
        {"chunk_size", c->chunk, CFG_CHUNK_MAX},           {"chunk_topk", c->topk, CFG_TOPK_MAX},
        {"sliding_window", c->window, 16 * CFG_DIM_MAX},
    };
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (dims[i].v > dims[i].max)
            return hsadb_fail(HSADB_ERR_BAD_MODEL, "config.json: \"%s\" = %d exceeds this build's limit %d",
                              dims[i].key, dims[i].v, dims[i].max);
    /* Each operand is at most 2^20 now, so a product of two or three fits 64 bits. */
    const uint64_t D = (uint64_t)c->dim, H = (uint64_t)c->n_heads, dh = (uint64_t)c->head_dim,
                   Hm = (uint64_t)c->n_mem_heads, K = (uint64_t)c->topk, S = (uint64_t)c->chunk;
    const struct { const char *what; uint64_t n; } prods[] = {
        {"vocab_size x hidden_size (embeddings)", (uint64_t)c->vocab * D},
        {"intermediate_size x hidden_size (an MLP weight)", (uint64_t)c->hidden * D},
        {"num_attention_heads x head_dim x hidden_size (a projection)", H * dh * D},
        {"num_memory_heads x retrieval_dim x hidden_size (the landmark projection)", Hm * (uint64_t)c->retr_dim * D},
        {"num_memory_heads x chunk_topk x chunk_size x head_dim (retrieved K/V per token)", Hm * K * S * dh},
        {"sliding_window x num_key_value_heads x head_dim (an SWA ring)", (uint64_t)c->window * c->n_kv_heads * dh},
    };
    for (size_t i = 0; i < sizeof prods / sizeof prods[0]; i++)
        if (prods[i].n > CFG_ELEMS_MAX)
            return hsadb_fail(HSADB_ERR_BAD_MODEL, "config.json: %s = %llu values, more than this build's "
                              "limit of %llu", prods[i].what, (unsigned long long)prods[i].n,
                              (unsigned long long)CFG_ELEMS_MAX);
    return 0;
}

/* A float member, or dflt when absent or not a number. */
static float cfg_float(const json_t *root, const char *key, float dflt) {
    json_t *j = json_object_get(root, key);
    return json_is_number(j) ? (float)json_number_value(j) : dflt;
}

static int parse_config(const char *text, size_t len, hsadb_config *c) {
    json_error_t jerr;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) return hsadb_fail(HSADB_ERR_BAD_MODEL, "config.json: %s at byte %d", jerr.text, jerr.position);
    int rc = HSADB_ERR_BAD_MODEL;
    if (!json_is_object(root)) { hsadb_set_error("config.json: not a JSON object"); goto done; }
    struct { const char *key; int *dst; int required, dflt; } ints[] = {
        {"vocab_size", &c->vocab, 1, 0},           {"hidden_size", &c->dim, 1, 0},
        {"intermediate_size", &c->hidden, 1, 0},   {"num_attention_heads", &c->n_heads, 1, 0},
        {"head_dim", &c->head_dim, 1, 0},          {"num_key_value_heads", &c->n_kv_heads, 1, 0},
        {"num_memory_heads", &c->n_mem_heads, 1, 0}, {"retrieval_dim", &c->retr_dim, 1, 0},
        {"num_lower_layers", &c->n_lower, 1, 0},   {"encoder_layers", &c->n_encoder, 1, 0},
        {"num_upper_groups", &c->n_groups, 1, 0},  {"swa_layers_per_group", &c->swa_per_group, 1, 0},
        {"chunk_size", &c->chunk, 1, 0},           {"chunk_topk", &c->topk, 1, 0},
        {"sliding_window", &c->window, 1, 0},      {"tie_word_embeddings", &c->tie_embeddings, 0, 0},
    };
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        if ((rc = cfg_int(root, ints[i].key, ints[i].dst, ints[i].required, ints[i].dflt))) goto done;
    rc = HSADB_ERR_BAD_MODEL;
    c->rope_theta = cfg_float(root, "rope_theta", 10000.f);
    c->eps = cfg_float(root, "rms_norm_eps", 1e-6f);
    c->bypass = 0;
    json_t *j;
    if ((j = json_object_get(root, "hsa_residual"))) {
        const char *v = json_string_value(j);   /* NULL unless a string */
        if (v && strcmp(v, "bypass") == 0) c->bypass = 1;
        else if (!(v && strcmp(v, "standard") == 0)) {
            hsadb_set_error("config.json: \"hsa_residual\" must be \"standard\" or \"bypass\"");
            goto done;
        }
    }
    /* Consistency rules of model-spec.md. */
    const char *why = NULL;
    if (c->vocab < 260) why = "vocab_size must be >= 260 (bytes + 4 specials)";
    else if (c->dim < 1 || c->hidden < 1 || c->head_dim < 2 || c->head_dim % 2) why = "sizes must be positive, head_dim even";
    else if (c->n_heads < 1 || c->n_kv_heads < 1 || c->n_heads % c->n_kv_heads) why = "num_attention_heads must be a multiple of num_key_value_heads";
    else if (c->n_mem_heads < 1 || c->n_heads % c->n_mem_heads) why = "num_attention_heads must be a multiple of num_memory_heads";
    else if (c->retr_dim < 1) why = "retrieval_dim must be positive";
    else if (c->n_encoder < 1) why = "encoder_layers must be >= 1";
    else if (c->n_groups < 1) why = "num_upper_groups must be >= 1";
    else if (c->chunk < 1 || c->topk < 1) why = "chunk_size and chunk_topk must be positive";
    else if (c->window < c->chunk) why = "sliding_window must be >= chunk_size";
    if (why) { hsadb_set_error("config.json: %s", why); goto done; }
    if ((rc = cfg_bounds(c))) goto done;
    rc = HSADB_ERR_BAD_MODEL;
    rc = 0;
done:
    json_decref(root);
    return rc;
}

/* ---- safetensors ---------------------------------------------------------------------- */

typedef struct st_file {
    json_t        *header;   /* the JSON header (an object), owned */
    const uint8_t *data;     /* start of the data section */
    size_t         data_len;
} st_file;

static int st_open(const uint8_t *buf, size_t len, st_file *f) {
    if (len < 8) return hsadb_fail(HSADB_ERR_BAD_MODEL, "model.safetensors: file too short (%zu bytes)", len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > len - 8 || hlen > (100u << 20))
        return hsadb_fail(HSADB_ERR_BAD_MODEL, "model.safetensors: header length %llu exceeds the file",
                          (unsigned long long)hlen);
    json_error_t jerr;
    f->header = json_loadb((const char *)buf + 8, hlen, JSON_REJECT_DUPLICATES, &jerr);
    if (!f->header)
        return hsadb_fail(HSADB_ERR_BAD_MODEL, "model.safetensors: bad header: %s at byte %d", jerr.text,
                          jerr.position);
    if (!json_is_object(f->header)) {
        json_decref(f->header);
        f->header = NULL;
        return hsadb_fail(HSADB_ERR_BAD_MODEL, "model.safetensors: bad header: not a JSON object");
    }
    f->data = buf + 8 + hlen;
    f->data_len = len - 8 - hlen;
    return 0;
}

/* Find tensor `name`, check it has exactly the given shape, convert it to fp32 into dst. */
static int st_load(const st_file *f, const char *name, int ndim, const int64_t *shape, float *dst) {
    json_t *t = json_object_get(f->header, name);
    if (!t) return hsadb_fail(HSADB_ERR_BAD_MODEL, "model.safetensors: missing tensor %s", name);
    json_t *sh = json_object_get(t, "shape"), *off = json_object_get(t, "data_offsets");
    const char *dt = json_string_value(json_object_get(t, "dtype"));
    if (!dt || !json_is_array(sh) || !json_is_array(off) || json_array_size(off) != 2 ||
        !json_is_integer(json_array_get(off, 0)) || !json_is_integer(json_array_get(off, 1)))
        return hsadb_fail(HSADB_ERR_BAD_MODEL, "tensor %s: malformed header entry", name);
    /* shape check; both shapes are formatted for the message */
    char got[128] = "", want[128] = "";
    size_t n = 1, gl = 0, wl = 0;
    int ok = (int)json_array_size(sh) == ndim, i = 0;
    for (; i < (int)json_array_size(sh) && gl < sizeof got - 24; i++) {
        json_t *e = json_array_get(sh, (size_t)i);
        if (!json_is_integer(e)) return hsadb_fail(HSADB_ERR_BAD_MODEL, "tensor %s: shape holds a non-integer", name);
        long long d = (long long)json_integer_value(e);
        gl += (size_t)snprintf(got + gl, sizeof got - gl, "%s%lld", i ? "," : "", d);
        if (i < ndim && d != shape[i]) ok = 0;
    }
    for (i = 0; i < ndim; i++) {
        wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%lld", i ? "," : "", (long long)shape[i]);
        n *= (size_t)shape[i];
    }
    if (!ok) return hsadb_fail(HSADB_ERR_BAD_MODEL, "tensor %s: shape [%s], expected [%s]", name, got, want);
    size_t esize;
    if (strcmp(dt, "F32") == 0) esize = 4;
    else if (strcmp(dt, "BF16") == 0 || strcmp(dt, "F16") == 0) esize = 2;
    else return hsadb_fail(HSADB_ERR_BAD_MODEL, "tensor %s: dtype %s not supported (F32, BF16, F16)", name, dt);
    long long b0 = (long long)json_integer_value(json_array_get(off, 0)),
              b1 = (long long)json_integer_value(json_array_get(off, 1));
    if (b0 < 0 || b1 < b0 || (unsigned long long)b1 > f->data_len || (size_t)(b1 - b0) != n * esize)
        return hsadb_fail(HSADB_ERR_BAD_MODEL, "tensor %s: data_offsets [%lld,%lld] do not fit %zu x %s in a %zu-byte data section",
                          name, b0, b1, n, dt, f->data_len);
    const uint8_t *src = f->data + (size_t)b0;
    if (esize == 4) {
        memcpy(dst, src, n * 4);
    } else if (dt[0] == 'B') {
        for (size_t i = 0; i < n; i++) dst[i] = hsadb_bf16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else {
        for (size_t i = 0; i < n; i++) {
            uint16_t h = (uint16_t)(src[2 * i] | src[2 * i + 1] << 8);
            uint32_t sign = (uint32_t)(h >> 15) << 31, ex = (h >> 10) & 31, man = h & 1023, u;
            if (ex == 0) {           /* zero / subnormal */
                float v = (float)man / 1024.f / 16384.f;
                memcpy(&u, &v, 4);
                u |= sign;
            } else if (ex == 31) u = sign | 0x7f800000u | man << 13;
            else u = sign | (ex + 112) << 23 | man << 13;
            memcpy(&dst[i], &u, 4);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (dst[i] != dst[i] || dst[i] - dst[i] != 0)
            return hsadb_fail(HSADB_ERR_BAD_MODEL, "tensor %s: element %zu is not finite", name, i);
    return 0;
}

/* ---- the weight table ------------------------------------------------------------------ */

/* One pass over every tensor the config implies, in a fixed order. With dst == NULL it only
 * counts floats (sizing the arena); otherwise it loads each tensor and sets the pointers. */
typedef struct loader {
    const st_file *f;
    float         *arena;
    size_t         used;
    int            rc;
} loader;

static const float *take(loader *L, const char *name, int64_t d0, int64_t d1) {
    int64_t shape[2] = {d0, d1};
    int ndim = d1 ? 2 : 1;
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *p = L->arena ? L->arena + L->used : NULL;
    L->used += n;
    if (p && !L->rc) L->rc = st_load(L->f, name, ndim, shape, p);
    return p;
}

static void take_attn(loader *L, const hsadb_config *c, const char *pre, const char *norm, hsadb_attn_w *a) {
    char n[160];
    int64_t D = c->dim, qd = (int64_t)c->n_heads * c->head_dim, kd = (int64_t)c->n_kv_heads * c->head_dim;
#define T(field, suffix, d0, d1) (snprintf(n, sizeof n, "%s%s", pre, suffix), a->field = take(L, n, d0, d1))
    T(norm, norm, D, 0);
    T(wq, "attn.q.weight", qd, D);
    T(wk, "attn.k.weight", kd, D);
    T(wv, "attn.v.weight", kd, D);
    T(q_norm, "attn.q_norm.weight", c->head_dim, 0);
    T(k_norm, "attn.k_norm.weight", c->head_dim, 0);
    T(wo, "attn.o.weight", D, qd);
#undef T
}

static void take_mlp(loader *L, const hsadb_config *c, const char *pre, hsadb_mlp_w *m) {
    char n[160];
    snprintf(n, sizeof n, "%smlp_norm.weight", pre), m->norm = take(L, n, c->dim, 0);
    snprintf(n, sizeof n, "%smlp.gate.weight", pre), m->gate = take(L, n, c->hidden, c->dim);
    snprintf(n, sizeof n, "%smlp.up.weight", pre), m->up = take(L, n, c->hidden, c->dim);
    snprintf(n, sizeof n, "%smlp.down.weight", pre), m->down = take(L, n, c->dim, c->hidden);
}

static void take_swa(loader *L, const hsadb_config *c, const char *pre, hsadb_swa_w *s) {
    take_attn(L, c, pre, "attn_norm.weight", &s->attn);
    take_mlp(L, c, pre, &s->mlp);
}

static void take_all(loader *L, const hsadb_config *c, hsadb_weights *w) {
    char pre[96], n[160];
    int64_t D = c->dim;
    w->embed = take(L, "embed.weight", c->vocab, D);
    for (int i = 0; i < c->n_lower; i++) snprintf(pre, sizeof pre, "lower.%d.", i), take_swa(L, c, pre, &w->lower[i]);
    for (int i = 0; i < c->n_encoder; i++) snprintf(pre, sizeof pre, "encoder.%d.", i), take_swa(L, c, pre, &w->encoder[i]);
    w->chunk.in_norm = take(L, "chunk.in_norm.weight", D, 0);
    w->chunk.cls = take(L, "chunk.cls", D, 0);
    w->chunk.out_norm = take(L, "chunk.out_norm.weight", D, 0);
    w->chunk.lmk = take(L, "chunk.lmk.weight", (int64_t)c->n_mem_heads * c->retr_dim, D);
    w->chunk.mk = take(L, "chunk.mk.weight", (int64_t)c->n_mem_heads * c->head_dim, D);
    w->chunk.mv = take(L, "chunk.mv.weight", (int64_t)c->n_mem_heads * c->head_dim, D);
    w->chunk.k_norm = take(L, "chunk.k_norm.weight", c->head_dim, 0);
    for (int g = 0; g < c->n_groups; g++) {
        hsadb_hsa_w *h = &w->hsa[g];
        snprintf(pre, sizeof pre, "upper.%d.hsa.", g);
        take_attn(L, c, pre, "attn_norm.weight", &h->swa);
        snprintf(n, sizeof n, "%shsa_norm.weight", pre), h->norm = take(L, n, D, 0);
        snprintf(n, sizeof n, "%sretr.weight", pre), h->wr = take(L, n, (int64_t)c->n_mem_heads * c->retr_dim, D);
        snprintf(n, sizeof n, "%sq.weight", pre), h->wq = take(L, n, (int64_t)c->n_heads * c->head_dim, D);
        snprintf(n, sizeof n, "%sq_norm.weight", pre), h->q_norm = take(L, n, c->head_dim, 0);
        snprintf(n, sizeof n, "%so.weight", pre), h->wo = take(L, n, D, (int64_t)c->n_heads * c->head_dim);
        take_mlp(L, c, pre, &h->mlp);
        for (int r = 0; r < c->swa_per_group; r++) {
            snprintf(pre, sizeof pre, "upper.%d.swa.%d.", g, r);
            take_swa(L, c, pre, &w->upper[g * c->swa_per_group + r]);
        }
    }
    w->final_norm = take(L, "final_norm.weight", D, 0);
    w->lm_head = c->tie_embeddings ? w->embed : take(L, "lm_head.weight", c->vocab, D);
}

static void model_free(hsadb_model *m) {
    if (!m) return;
    free(m->arena);
    free(m->w.lower);
    free(m->w.encoder);
    free(m->w.hsa);
    free(m->w.upper);
    free(m);
}

int hsadb_model_load(const char *config_json, size_t config_len, const uint8_t *st, size_t st_len,
                     hsadb_model **out) {
    *out = NULL;
    hsadb_model *m = calloc(1, sizeof *m);
    st_file f = {0};
    int rc = ENOMEM;
    if (!m) return ENOMEM;
    if ((rc = parse_config(config_json, config_len, &m->c))) goto fail;
    hsadb_config *c = &m->c;
    m->w.lower = calloc((size_t)c->n_lower + 1, sizeof(hsadb_swa_w));
    m->w.encoder = calloc((size_t)c->n_encoder, sizeof(hsadb_swa_w));
    m->w.hsa = calloc((size_t)c->n_groups, sizeof(hsadb_hsa_w));
    m->w.upper = calloc((size_t)c->n_groups * c->swa_per_group + 1, sizeof(hsadb_swa_w));
    rc = ENOMEM;
    if (!m->w.lower || !m->w.encoder || !m->w.hsa || !m->w.upper) goto fail;
    if ((rc = st_open(st, st_len, &f))) goto fail;
    loader L = {.f = &f};
    take_all(&L, c, &m->w);                 /* sizing pass */
    m->arena_len = L.used;
    m->n_params = L.used;
    rc = ENOMEM;
    if (!(m->arena = malloc(L.used * sizeof(float)))) goto fail;
    L = (loader){.f = &f, .arena = m->arena};
    take_all(&L, c, &m->w);                 /* loading pass */
    if ((rc = L.rc)) goto fail;
    if ((rc = hsadb_sha256(st, st_len, m->fingerprint))) goto fail;
    hsadb_hex(m->fingerprint, 32, m->fingerprint_hex);
    json_decref(f.header);
    *out = m;
    return 0;
fail:
    json_decref(f.header);
    model_free(m);
    return rc;
}

/* Read a whole small file (config.json) into a NUL-terminated buffer. */
static int read_file(const char *path, char **buf, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return hsadb_fail(errno == ENOENT ? HSADB_ERR_BAD_MODEL : errno, "%s: %s", path, strerror(errno));
    char *b = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? 2 * cap : 8192;
            if (cap > (16u << 20)) { free(b); fclose(fp); return hsadb_fail(HSADB_ERR_BAD_MODEL, "%s: too large", path); }
            char *nb = realloc(b, cap);
            if (!nb) { free(b); fclose(fp); return ENOMEM; }
            b = nb;
        }
        size_t got = fread(b + n, 1, 4096, fp);
        n += got;
        if (got < 4096) break;
    }
    int err = ferror(fp);
    fclose(fp);
    if (err) { free(b); return hsadb_fail(EIO, "%s: read error", path); }
    b[n] = 0;
    *buf = b, *len = n;
    return 0;
}

int hsadb_model_open(const char *dir, hsadb_model **out) {
    char path[4096];
    char *cfg = NULL;
    size_t cfg_len = 0;
    int rc, fd = -1;
    void *map = MAP_FAILED;
    struct stat sb;
    *out = NULL;
    hsadb_clear_error();
    if (!dir) return hsadb_fail(HSADB_ERR_INVALID, "no model directory given");
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((rc = read_file(path, &cfg, &cfg_len))) goto done;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((fd = open(path, O_RDONLY)) < 0) {
        rc = hsadb_fail(errno == ENOENT ? HSADB_ERR_BAD_MODEL : errno, "%s: %s", path, strerror(errno));
        goto done;
    }
    if (fstat(fd, &sb) < 0 || sb.st_size <= 0) {
        rc = hsadb_fail(HSADB_ERR_BAD_MODEL, "%s: empty or unreadable", path);
        goto done;
    }
    map = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) { rc = hsadb_fail(errno, "%s: mmap: %s", path, strerror(errno)); goto done; }
    rc = hsadb_model_load(cfg, cfg_len, map, (size_t)sb.st_size, out);
    if (rc == HSADB_ERR_BAD_MODEL) {
        char detail[512];
        snprintf(detail, sizeof detail, "%s", hsadb_last_error());
        hsadb_set_error("%s: %s", dir, detail);
    }
done:
    if (map != MAP_FAILED) munmap(map, (size_t)sb.st_size);
    if (fd >= 0) close(fd);
    free(cfg);
    return rc;
}

void hsadb_model_close(hsadb_model *m) { model_free(m); }

void hsadb_model_get_info(const hsadb_model *m, hsadb_model_info *o) {
    const hsadb_config *c = &m->c;
    memset(o, 0, sizeof *o);
    o->vocab_size = c->vocab, o->hidden_size = c->dim, o->intermediate_size = c->hidden;
    o->num_heads = c->n_heads, o->head_dim = c->head_dim, o->num_kv_heads = c->n_kv_heads;
    o->num_memory_heads = c->n_mem_heads, o->retrieval_dim = c->retr_dim;
    o->num_lower_layers = c->n_lower, o->encoder_layers = c->n_encoder;
    o->num_upper_groups = c->n_groups, o->swa_layers_per_group = c->swa_per_group;
    o->chunk_size = c->chunk, o->chunk_topk = c->topk, o->sliding_window = c->window;
    o->hsa_residual_bypass = c->bypass;
    o->n_params = m->n_params;
    memcpy(o->fingerprint, m->fingerprint_hex, 65);
}
