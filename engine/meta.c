/*
 * engine/meta.c — metadata of appends: checking and encoding the pairs, and the public
 * calls (hsadb.h "metadata of appends"). Records live in storage/append_meta.c's
 * sub-database, keyed by (memory id, append id).
 *
 * Blob: u8 version (1), u8 n, then n times: u8 key length, u16 LE value length, key bytes,
 * value bytes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "append_meta.h"
#include "engine.h"
#include "util.h"

#define META_VERSION 1

static int key_ok(const char *k, size_t len) {
    if (len < 1 || len > HSADB_META_MAX_KEY) return 0;
    for (size_t i = 0; i < len; i++) {
        char c = k[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return 0;
    }
    return 1;
}

int hsadb_meta_encode(const hsadb_meta_pair *p, size_t n, uint8_t **blob, size_t *len) {
    *blob = NULL, *len = 0;
    if (n == 0) return 0;
    if (!p) return hsadb_fail(HSADB_ERR_INVALID, "metadata: NULL pairs");
    if (n > HSADB_META_MAX_PAIRS)
        return hsadb_fail(HSADB_ERR_INVALID, "metadata: %zu pairs, at most %d", n, HSADB_META_MAX_PAIRS);
    size_t total = 0, size = 2;
    for (size_t i = 0; i < n; i++) {
        if (!p[i].key || !p[i].value) return hsadb_fail(HSADB_ERR_INVALID, "metadata: NULL key or value");
        size_t kl = strlen(p[i].key), vl = strlen(p[i].value);
        if (!key_ok(p[i].key, kl))
            return hsadb_fail(HSADB_ERR_INVALID, "metadata key '%.80s': must be 1..%d bytes of "
                              "[A-Za-z0-9._-]", p[i].key, HSADB_META_MAX_KEY);
        if (vl > HSADB_META_MAX_VALUE)
            return hsadb_fail(HSADB_ERR_INVALID, "metadata value of '%s': %zu bytes, at most %d",
                              p[i].key, vl, HSADB_META_MAX_VALUE);
        for (size_t j = 0; j < i; j++)
            if (strcmp(p[i].key, p[j].key) == 0)
                return hsadb_fail(HSADB_ERR_INVALID, "metadata key '%s' given twice", p[i].key);
        total += kl + vl;
        size += 3 + kl + vl;
    }
    if (total > HSADB_META_MAX_BYTES)
        return hsadb_fail(HSADB_ERR_INVALID, "metadata: %zu bytes of keys and values, at most %d",
                          total, HSADB_META_MAX_BYTES);
    uint8_t *b = malloc(size), *q = b;
    if (!b) return ENOMEM;
    *q++ = META_VERSION;
    *q++ = (uint8_t)n;
    for (size_t i = 0; i < n; i++) {
        size_t kl = strlen(p[i].key), vl = strlen(p[i].value);
        *q++ = (uint8_t)kl;
        *q++ = (uint8_t)(vl & 0xff);
        *q++ = (uint8_t)(vl >> 8);
        memcpy(q, p[i].key, kl), q += kl;
        memcpy(q, p[i].value, vl), q += vl;
    }
    *blob = b, *len = size;
    return 0;
}

/* Decode a blob into one allocation: the pair array, then the NUL-terminated strings. */
static int meta_decode(const uint8_t *b, size_t len, hsadb_meta_pair **out, size_t *n) {
    *out = NULL, *n = 0;
    if (len < 2 || b[0] != META_VERSION || b[1] == 0 || b[1] > HSADB_META_MAX_PAIRS) goto corrupt;
    size_t np = b[1], off = 2, strings = 0;
    for (size_t i = 0; i < np; i++) {   /* check the layout and size the strings */
        if (off + 3 > len) goto corrupt;
        size_t kl = b[off], vl = (size_t)b[off + 1] | (size_t)b[off + 2] << 8;
        if (off + 3 + kl + vl > len) goto corrupt;
        strings += kl + vl + 2;
        off += 3 + kl + vl;
    }
    if (off != len) goto corrupt;
    hsadb_meta_pair *p = malloc(np * sizeof *p + strings);
    if (!p) return ENOMEM;
    char *s = (char *)(p + np);
    off = 2;
    for (size_t i = 0; i < np; i++) {
        size_t kl = b[off], vl = (size_t)b[off + 1] | (size_t)b[off + 2] << 8;
        p[i].key = s;
        memcpy(s, b + off + 3, kl), s[kl] = 0, s += kl + 1;
        p[i].value = s;
        memcpy(s, b + off + 3 + kl, vl), s[vl] = 0, s += vl + 1;
        off += 3 + kl + vl;
    }
    *out = p, *n = np;
    return 0;
corrupt:
    return hsadb_fail(HSADB_ERR_CORRUPT, "append metadata record is malformed (%zu bytes)", len);
}

int hsadb_meta_set(hsadb_db *db, uint32_t memory_id, uint64_t append_id,
                   const hsadb_meta_pair *pairs, size_t n) {
    uint8_t *blob;
    size_t len;
    int rc = hsadb_meta_encode(pairs, n, &blob, &len);
    if (rc) return rc;
    rc = hsadb_append_meta_put(db->store, memory_id, append_id, blob, len);
    free(blob);
    return rc;
}

int hsadb_meta_clear_stale(hsadb_db *db, uint32_t memory_id, uint64_t append_id) {
    void *blob;
    size_t len;
    int rc = hsadb_append_meta_get(db->store, memory_id, append_id, &blob, &len);
    free(blob);
    if (rc == 0 && len)   /* left by an append that never committed */
        rc = hsadb_append_meta_put(db->store, memory_id, append_id, NULL, 0);
    return rc;
}

int hsadb_append_meta(hsadb_db *db, const char *name, uint64_t append_id,
                      hsadb_meta_pair **out, size_t *n) {
    struct hsadb_memory_rec rec;
    void *blob = NULL;
    size_t len = 0;
    hsadb_clear_error();
    *out = NULL, *n = 0;
    int rc = hsadb_store_memory_get(db->store, name, &rec);
    if (rc) return rc;
    if (append_id < 1 || append_id > rec.n_appends)
        return hsadb_fail(HSADB_ERR_NOTFOUND, "memory '%s' has no append %llu (it has %llu)", name,
                          (unsigned long long)append_id, (unsigned long long)rec.n_appends);
    if ((rc = hsadb_append_meta_get(db->store, rec.id, append_id, &blob, &len))) return rc;
    if (len) rc = meta_decode(blob, len, out, n);
    free(blob);
    return rc;
}
