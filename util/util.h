/*
 * util/util.h — small helpers shared by every module (internal).
 *
 *   hsadb_set_error(fmt, ...)   record a one-line detail for hsadb_last_error() (thread-local)
 *   bf16 <-> f32                round-to-nearest-even conversion, NaN kept NaN
 *   hsadb_sha256()              SHA-256 through libcrypto (model fingerprints, API-key hashes)
 *   hsadb_now()                 unix seconds; hsadb_seconds() monotonic seconds
 */
#ifndef HSADB_UTIL_H
#define HSADB_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* Formats the detail of the current failure; returns `err` so callers can write
 * `return hsadb_fail(HSADB_ERR_INVALID, "bad name '%s'", name);`. */
int  hsadb_fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hsadb_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void hsadb_clear_error(void);

static inline float hsadb_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t hsadb_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                            /* RNE */
    return (uint16_t)(u >> 16);
}

/* out = SHA-256 of data[0..n) (OpenSSL's EVP_Digest). Returns 0, or ENOMEM when libcrypto
 * fails (it allocates a digest context), with the detail in hsadb_last_error(). */
int  hsadb_sha256(const void *data, size_t n, uint8_t out[32]);
void hsadb_hex(const uint8_t *bytes, size_t n, char *out /* 2n+1 */);

int64_t hsadb_now(void);
double  hsadb_seconds(void);

#endif
