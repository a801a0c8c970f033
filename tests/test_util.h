/*
 * tests/test_util.h — a tiny shared test harness (header only).
 *
 *   CHECK(cond, "what %d", x)   prints "ok   - what" or "FAIL - what (file:line)"
 *   SKIP("why")                 prints "skip: why" (counted neither way)
 *   tu_summary()                prints exactly "N passed, N failed"; returns the exit status
 *   tu_tmpdir(buf, tag)         mkdtemp("/tmp/hsadb-<tag>-XXXXXX")
 *   tu_rmrf(path)               rm -rf (does not cross mount points)
 *
 * Each test program includes this once; the counters are static.
 */
#ifndef HSADB_TEST_UTIL_H
#define HSADB_TEST_UTIL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int tu_passed, tu_failed;

static int tu_check(int ok, const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int tu_check(int ok, const char *file, int line, const char *fmt, ...) {
    va_list ap;
    printf(ok ? "ok   - " : "FAIL - ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    if (!ok) printf("  (%s:%d)", file, line);
    printf("\n");
    fflush(stdout);
    if (ok) tu_passed++;
    else tu_failed++;
    return ok;
}

#define CHECK(cond, ...) tu_check(!!(cond), __FILE__, __LINE__, __VA_ARGS__)
#define SKIP(why) (printf("skip: %s\n", (why)), fflush(stdout))

static int tu_summary(void) {
    printf("%d passed, %d failed\n", tu_passed, tu_failed);
    fflush(stdout);
    return tu_failed ? 1 : 0;
}

__attribute__((unused)) static char *tu_tmpdir(char *buf, size_t n, const char *tag) {
    snprintf(buf, n, "/tmp/hsadb-%s-XXXXXX", tag);
    return mkdtemp(buf);
}

static int tu_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    return remove(path);
}

__attribute__((unused)) static int tu_rmrf(const char *path) {
    return nftw(path, tu_rm_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
}

#endif /* HSADB_TEST_UTIL_H */
