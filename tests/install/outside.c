/*
 * tests/install/outside.c — a program outside the source tree that uses the installed
 * libhsadb through <hsadb.h> only (tests/install/test_install.sh builds it with
 * `pkg-config --cflags --libs hsadb` and with the CMake package).
 *
 *   outside MODEL_DIR DB_DIR
 *
 * Opens the model, creates memory "outside" in DB_DIR, appends text, reads it back and checks
 * the bytes and the memory's counters. Prints "outside: ok" and exits 0, or names the failure.
 */
#include <stdio.h>
#include <string.h>

#include <hsadb.h>

static int failed(const char *what, int rc) {
    fprintf(stderr, "outside: %s: %s: %s\n", what, hsadb_strerror(rc), hsadb_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: outside MODEL_DIR DB_DIR\n");
        return 2;
    }
    static const char text[] =
        "The pass key is 71432. Remember it. The meeting moved to Thursday at nine; bring the "
        "quarterly report and the new badge.\n";
    const size_t n = sizeof text - 1;
    char back[sizeof text] = "";
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    hsadb_memory_info info;
    int rc, status = 1;
    if ((rc = hsadb_model_open(argv[1], &m))) return failed("model open", rc);
    hsadb_db_options o = {.flags = HSADB_DB_CREATE, .model = m, .device = HSADB_DEVICE_CPU, .threads = 1};
    if ((rc = hsadb_db_open(argv[2], &o, &db))) { failed("db open", rc); goto done; }
    if ((rc = hsadb_memory_create(db, "outside"))) { failed("create", rc); goto done; }
    if ((rc = hsadb_append(db, "outside", text, n, NULL))) { failed("append", rc); goto done; }
    size_t got = 0;
    if ((rc = hsadb_memory_read(db, "outside", 0, back, sizeof back, &got))) { failed("read", rc); goto done; }
    if ((rc = hsadb_memory_stat(db, "outside", &info))) { failed("stat", rc); goto done; }
    if (got != n || memcmp(back, text, n) != 0) {
        fprintf(stderr, "outside: read back %zu bytes, expected the %zu appended\n", got, n);
        goto done;
    }
    if (info.n_bytes != n || info.n_chunks != n / 64) {
        fprintf(stderr, "outside: stat says %llu bytes, %llu chunks; expected %zu, %zu\n",
                (unsigned long long)info.n_bytes, (unsigned long long)info.n_chunks, n, n / 64);
        goto done;
    }
    printf("outside: ok (%zu bytes, %llu chunks, model %.12s)\n", got, (unsigned long long)info.n_chunks,
           info.fingerprint);
    status = 0;
done:
    hsadb_db_close(db);
    hsadb_model_close(m);
    return status;
}
