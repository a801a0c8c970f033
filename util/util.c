/* util/util.c — error detail, time, hex, SHA-256. */
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include <openssl/evp.h>

#include "hsadb.h"

static _Thread_local char last_error[512];

void hsadb_set_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
}

int hsadb_fail(int err, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return err;
}

void hsadb_clear_error(void) { last_error[0] = 0; }

const char *hsadb_last_error(void) { return last_error; }

const char *hsadb_strerror(int err) {
    switch (err) {
    case HSADB_OK:                 return "success";
    case HSADB_ERR_INVALID:        return "invalid argument";
    case HSADB_ERR_NOTFOUND:       return "not found";
    case HSADB_ERR_EXISTS:         return "already exists";
    case HSADB_ERR_MODEL_MISMATCH: return "memory is bound to a different model";
    case HSADB_ERR_BAD_MODEL:      return "invalid model files";
    case HSADB_ERR_CORRUPT:        return "store is corrupt";
    case HSADB_ERR_VERSION:        return "unsupported store format version";
    case HSADB_ERR_BUSY:           return "memory is busy (another append is running)";
    case HSADB_ERR_NO_MODEL:       return "no model loaded";
    case HSADB_ERR_CANCELLED:      return "cancelled";
    case HSADB_ERR_NODEVICE:       return "requested device not available";
    case HSADB_ERR_READONLY:       return "database is read-only";
    case HSADB_ERR_STORE:          return "storage engine error";
    default:
        if (err > 0) return strerror(err);
        return "unknown error";
    }
}

int64_t hsadb_now(void) { return (int64_t)time(NULL); }

double hsadb_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void hsadb_hex(const uint8_t *bytes, size_t n, char *out) {
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = 0;
}

int hsadb_sha256(const void *data, size_t n, uint8_t out[32]) {
    unsigned int len = 0;
    if (EVP_Digest(data, n, out, &len, EVP_sha256(), NULL) != 1 || len != 32)
        return hsadb_fail(ENOMEM, "libcrypto: SHA-256 failed");
    return 0;
}
