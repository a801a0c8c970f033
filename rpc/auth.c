/*
 * auth.c — API keys: the keys file (hashes and grants) and grant checks.
 *
 * Keys file: one grant per line, `<hex sha256 of the key> <read|write|admin> <pattern>`,
 * where pattern is a memory name or an fnmatch(3) glob over names ("tenant-a-*", "*").
 * Several lines with the same hash give one key several grants. admin implies write implies
 * read. Only the pattern "*" covers whole-database operations (Snapshot of everything,
 * Restore). The file holds hashes only; the keys themselves are never stored.
 */
#include "rpc.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RPC_KEYS_MAX (1 << 20)   /* bytes: a keys file is a few lines per key */

static int parse_role(const char *s)
{
    if (strcmp(s, "read") == 0)  return RPC_ROLE_READ;
    if (strcmp(s, "write") == 0) return RPC_ROLE_WRITE;
    if (strcmp(s, "admin") == 0) return RPC_ROLE_ADMIN;
    return RPC_ROLE_NONE;
}

void rpc_keys_free(rpc_keys *k)
{
    if (!k)
        return;
    for (size_t i = 0; i < k->n; i++) {
        for (size_t j = 0; j < k->keys[i].n; j++)
            free(k->keys[i].grants[j].pattern);
        free(k->keys[i].grants);
    }
    free(k->keys);
    free(k);
}

static int add_grant(rpc_keys *k, const char *hash, int role, const char *pattern)
{
    rpc_key *key = NULL;
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->keys[i].hash, hash) == 0)
            key = &k->keys[i];
    if (!key) {
        rpc_key *nk = realloc(k->keys, (k->n + 1) * sizeof *nk);
        if (!nk)
            return ENOMEM;
        k->keys = nk;
        key = &k->keys[k->n++];
        memset(key, 0, sizeof *key);
        memcpy(key->hash, hash, 65);
    }
    rpc_grant *ng = realloc(key->grants, (key->n + 1) * sizeof *ng);
    if (!ng)
        return ENOMEM;
    key->grants = ng;
    ng[key->n].role = role;
    ng[key->n].pattern = strdup(pattern);
    if (!ng[key->n].pattern)
        return ENOMEM;
    key->n++;
    return 0;
}

/* Read at most RPC_KEYS_MAX bytes of path (a regular file, a pipe: anything readable) into
 * a NUL-terminated buffer. A larger or binary file is an error (/dev/zero must not read
 * forever). */
static int read_keys_file(const char *path, char **out, char *err, size_t errn)
{
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) {
        int e = errno;
        snprintf(err, errn, "keys file '%s': %s", path, strerror(e));
        return e == ENOENT ? HSADB_ERR_NOTFOUND : e;
    }
    char *buf = malloc(RPC_KEYS_MAX + 2);
    if (!buf) {
        fclose(f);
        snprintf(err, errn, "keys file '%s': out of memory", path);
        return ENOMEM;
    }
    size_t n = fread(buf, 1, RPC_KEYS_MAX + 1, f);
    int bad = ferror(f), e = errno;
    fclose(f);
    int rc = 0;
    if (bad) {
        snprintf(err, errn, "keys file '%s': %s", path, strerror(e));
        rc = e ? e : EIO;
    } else if (n > RPC_KEYS_MAX) {
        snprintf(err, errn, "keys file '%s' is larger than %d bytes: not a keys file", path,
                 RPC_KEYS_MAX);
        rc = HSADB_ERR_INVALID;
    } else if (memchr(buf, 0, n)) {
        snprintf(err, errn, "keys file '%s' holds NUL bytes: not a keys file", path);
        rc = HSADB_ERR_INVALID;
    }
    if (rc) {
        free(buf);
        return rc;
    }
    buf[n] = 0;
    *out = buf;
    return 0;
}

int rpc_keys_load(const char *path, rpc_keys **out, char *err, size_t errn)
{
    *out = NULL;
    char *text = NULL;
    int rc = read_keys_file(path, &text, err, errn);
    if (rc)
        return rc;
    rpc_keys *k = calloc(1, sizeof *k);
    rc = k ? 0 : ENOMEM;
    int lineno = 0;
    char *next = text;
    while (rc == 0 && next) {
        char *line = next;
        next = strchr(line, '\n');
        if (next)
            *next++ = 0;
        else if (!*line)
            break;
        lineno++;
        char *hash_s = NULL, *role_s = NULL, *pat = NULL, *extra = NULL, *save = NULL;
        char *hashpos = strchr(line, '#');
        if (hashpos)
            *hashpos = 0;
        hash_s = strtok_r(line, " \t\r", &save);
        if (!hash_s)
            continue;
        role_s = strtok_r(NULL, " \t\r", &save);
        pat = role_s ? strtok_r(NULL, " \t\r", &save) : NULL;
        extra = pat ? strtok_r(NULL, " \t\r", &save) : NULL;
        int role = role_s ? parse_role(role_s) : 0;
        int hex_ok = strlen(hash_s) == 64;
        for (size_t i = 0; hex_ok && i < 64; i++) {
            hash_s[i] = (char)tolower((unsigned char)hash_s[i]);
            hex_ok = isxdigit((unsigned char)hash_s[i]);
        }
        if (!hex_ok || !role || !pat || extra) {
            snprintf(err, errn, "keys file '%s' line %d: expected '<64 hex digits> "
                     "<read|write|admin> <memory-name-or-glob>'", path, lineno);
            rc = HSADB_ERR_INVALID;
            break;
        }
        rc = add_grant(k, hash_s, role, pat);
        if (rc)
            snprintf(err, errn, "keys file '%s': out of memory", path);
    }
    free(text);
    if (rc == 0 && k->n == 0) {
        snprintf(err, errn, "keys file '%s' holds no keys", path);
        rc = HSADB_ERR_INVALID;
    }
    if (rc) {
        rpc_keys_free(k);
        return rc;
    }
    *out = k;
    return 0;
}

const rpc_key *rpc_keys_find(const rpc_keys *k, const char *token, size_t len)
{
    if (!k || len == 0 || len > 4096)
        return NULL;
    char *t = malloc(len + 1), hex[65];
    if (!t)
        return NULL;
    memcpy(t, token, len);
    t[len] = 0;
    if (strlen(t) != len) {   /* embedded NUL */
        free(t);
        return NULL;
    }
    hsadb_server_hash_key(t, hex);
    free(t);
    const rpc_key *found = NULL;
    for (size_t i = 0; i < k->n; i++) {
        /* compare every hash in full so timing says nothing about which one matched */
        unsigned diff = 0;
        for (size_t j = 0; j < 64; j++)
            diff |= (unsigned)(k->keys[i].hash[j] ^ hex[j]);
        if (diff == 0)
            found = &k->keys[i];
    }
    return found;
}

int rpc_key_allows(const rpc_key *key, int role, const char *name)
{
    if (!key)
        return 0;
    for (size_t i = 0; i < key->n; i++) {
        const rpc_grant *g = &key->grants[i];
        if (g->role < role)
            continue;
        if (name ? fnmatch(g->pattern, name, 0) == 0 : strcmp(g->pattern, "*") == 0)
            return 1;
    }
    return 0;
}
