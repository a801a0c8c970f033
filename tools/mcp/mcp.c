/*
 * mcp.c — the MCP server of hsadb over stdio (contract in mcp.h, protocol notes in
 * docs/mcp.md). Read top-down: the line reader and JSON-RPC framing, then the MCP methods,
 * then the tools, each a function from (server, arguments) to a result object.
 *
 * JSON is jansson's (Debian libjansson-dev). Every value built here is checked: a NULL from
 * jansson (out of memory) turns into a -32603 error, never a crash.
 */
#include "mcp.h"

#include <jansson.h>

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Protocol versions this server speaks, newest first. An initialize asking for another gets
 * the newest (the client then decides whether it can go on). */
static const char *const versions[] = { "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05" };
#define N_VERSIONS (sizeof versions / sizeof versions[0])

/* JSON-RPC error codes (JSON-RPC 2.0 and MCP's resource-not-found). */
enum {
    E_PARSE = -32700, E_REQUEST = -32600, E_METHOD = -32601, E_PARAMS = -32602,
    E_INTERNAL = -32603, E_RESOURCE = -32002,
};

#define RECALL_MAX_TOKENS_DEFAULT 128
#define RECALL_MAX_TOKENS_LIMIT   4096
#define EVIDENCE_K_DEFAULT        4
#define EVIDENCE_K_LIMIT          64
#define SEARCH_K_DEFAULT          8
#define SEARCH_K_LIMIT            1024
#define QUESTION_LIMIT            65536   /* bytes, as the gRPC service */
#define URI_PREFIX                "hsadb://memory/"

/* A line read by the reader thread: the parsed message, or why there is none. */
typedef struct entry {
    json_t *msg;           /* owned; NULL: error below */
    int     code;          /* E_PARSE or E_REQUEST when msg is NULL */
    char    err[200];
} entry;

#define QUEUE_CAP 64       /* messages read ahead while a request runs */

typedef struct server {
    hsadb_db                *db;
    hsadb_mcp_options        o;
    FILE                    *out;
    int                      initialized;  /* initialize answered */
    int                      structured;   /* protocol >= 2025-06-18: structuredContent */
    /* the reader thread hands lines to the main thread through a bounded queue */
    pthread_mutex_t          mu;
    pthread_cond_t           cv;
    entry                    q[QUEUE_CAP];
    size_t                   q_head, q_len;
    int                      eof;          /* the reader is done */
    int                      read_rc;      /* 0 or the errno that ended reading */
    int                      stop;         /* the main thread is done: reader, stop */
    json_t                  *inflight;     /* id of the request being handled (under mu) */
    atomic_int               cancel;       /* notifications/cancelled named it */
    int                      in_fd;
} server;

static void logf_(server *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void logf_(server *s, const char *fmt, ...)
{
    if (!s->o.log)
        return;
    va_list ap;
    va_start(ap, fmt);
    fputs("hsadb mcp: ", s->o.log);
    vfprintf(s->o.log, fmt, ap);
    fputc('\n', s->o.log);
    fflush(s->o.log);
    va_end(ap);
}

/* ---- bytes to JSON strings --------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p (1..4), 0 if p does not start one. Rejects
 * overlong forms, surrogates and code points above U+10FFFF, as jansson does. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC2 ? 2 : 0;
    if (len == 0 || c > 0xF4 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((p[i] & 0xC0) != 0x80)
            return 0;
    if (c == 0xE0 && p[1] < 0xA0) return 0;   /* overlong */
    if (c == 0xED && p[1] > 0x9F) return 0;   /* surrogate */
    if (c == 0xF0 && p[1] < 0x90) return 0;   /* overlong */
    if (c == 0xF4 && p[1] > 0x8F) return 0;   /* > U+10FFFF */
    return len;
}

/* A JSON string of arbitrary bytes: valid UTF-8 is kept, every other byte becomes U+FFFD.
 * NULL if out of memory. */
static json_t *json_bytes(const void *data, size_t n)
{
    const unsigned char *p = data;
    char *buf = malloc(n * 3 + 1);
    if (!buf)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_len(p + i, n - i);
        if (l) {
            memcpy(buf + o, p + i, l);
            o += l;
            i += l;
        } else {
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    json_t *j = json_stringn_nocheck(buf, o);
    free(buf);
    return j;
}

/* ---- JSON-RPC framing -------------------------------------------------------------------- */

/* Write one message and a newline. Takes ownership of msg. 0 or errno. */
static int send_msg(server *s, json_t *msg)
{
    if (!msg)
        return ENOMEM;
    errno = 0;
    int rc = json_dumpf(msg, s->out, JSON_COMPACT) == 0 ? 0 : errno ? errno : EIO;
    json_decref(msg);
    if (rc == 0 && (fputc('\n', s->out) == EOF || fflush(s->out) != 0))
        rc = errno ? errno : EIO;
    return rc;
}

/* 1 if `id` is the request in flight and the client cancelled it: its response is not sent
 * (MCP: a receiver of notifications/cancelled should not answer the request). */
static int cancelled(server *s, json_t *id)
{
    pthread_mutex_lock(&s->mu);
    int c = atomic_load(&s->cancel) && id && s->inflight && json_equal(id, s->inflight);
    pthread_mutex_unlock(&s->mu);
    if (c)
        logf_(s, "request cancelled by the client: no response");
    return c;
}

static int send_result(server *s, json_t *id, json_t *result)
{
    if (cancelled(s, id)) {
        json_decref(result);
        return 0;
    }
    if (!result)   /* building the result ran out of memory */
        return send_msg(s, json_pack("{s:s, s:O, s:{s:i, s:s}}", "jsonrpc", "2.0", "id", id,
                                     "error", "code", E_INTERNAL, "message", "out of memory"));
    return send_msg(s, json_pack("{s:s, s:O, s:o}", "jsonrpc", "2.0", "id", id, "result", result));
}

/* id may be NULL (an error about a message whose id could not be read: sent as null). */
static int send_error(server *s, json_t *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int send_error(server *s, json_t *id, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    logf_(s, "error %d: %s", code, msg);
    if (cancelled(s, id))
        return 0;
    json_t *m = json_bytes(msg, strlen(msg));
    return send_msg(s, json_pack("{s:s, s:O, s:{s:i, s:o}}", "jsonrpc", "2.0",
                                 "id", id ? id : json_null(), "error", "code", code,
                                 "message", m));
}

/* ---- scope and grants -------------------------------------------------------------------- */

static int in_scope(const server *s, const char *name)
{
    if (s->o.n_memories == 0)
        return 1;
    for (size_t i = 0; i < s->o.n_memories; i++)
        if (strcmp(s->o.memories[i], name) == 0)
            return 1;
    return 0;
}

static int allowed(const server *s, int role, const char *name)
{
    return in_scope(s, name) && (!s->o.allow || s->o.allow(s->o.allow_ctx, role, name));
}

/* ---- tool results ------------------------------------------------------------------------ */

/* A tool's answer: a text block, and (protocol >= 2025-06-18) the same as structured
 * content. Takes ownership of structured (may be NULL only when out of memory). */
static json_t *tool_ok(server *s, const char *text, size_t len, json_t *structured)
{
    if (!structured)
        return NULL;
    json_t *r = json_pack("{s:[{s:s, s:o}]}", "content", "type", "text", "text",
                          json_bytes(text, len));
    if (r && s->structured)
        json_object_set(r, "structuredContent", structured);
    json_decref(structured);
    return r;
}

/* A tool that failed: isError with the reason as text. */
static json_t *tool_err(server *s, const char *tool, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static json_t *tool_err(server *s, const char *tool, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    logf_(s, "%s: error: %s", tool, msg);
    return json_pack("{s:[{s:s, s:o}], s:b}", "content", "type", "text", "text",
                     json_bytes(msg, strlen(msg)), "isError", 1);
}

/* A failed hsadb call: "<strerror>: <last_error>". */
static json_t *tool_fail(server *s, const char *tool, int rc, const char *memory)
{
    const char *d = hsadb_last_error();
    if (d && d[0] && strstr(d, memory))
        return tool_err(s, tool, "%s: %s", hsadb_strerror(rc), d);
    if (d && d[0])
        return tool_err(s, tool, "%s: %s (memory '%s')", hsadb_strerror(rc), d, memory);
    return tool_err(s, tool, "%s (memory '%s')", hsadb_strerror(rc), memory);
}

/* ---- argument checks (the inputSchema, enforced) ----------------------------------------- */

typedef struct argspec {
    const char *name;
    int         type;       /* JSON_STRING, JSON_INTEGER, JSON_TRUE (= boolean) */
    int         required;
} argspec;

/* Check `args` against spec: required keys present, types right, no unknown key. On a
 * mismatch writes the reason into err and returns -1. */
static int check_args(json_t *args, const argspec *spec, char *err, size_t errn)
{
    const char *key;
    json_t *v;
    json_object_foreach(args, key, v) {
        const argspec *a = spec;
        while (a->name && strcmp(a->name, key) != 0)
            a++;
        if (!a->name) {
            snprintf(err, errn, "unknown argument '%.64s'", key);
            return -1;
        }
        int ok = a->type == JSON_TRUE ? json_is_boolean(v) : (int)json_typeof(v) == a->type;
        if (!ok) {
            snprintf(err, errn, "argument '%s' must be %s", key,
                     a->type == JSON_STRING ? "a string" :
                     a->type == JSON_INTEGER ? "an integer" :
                     a->type == JSON_OBJECT ? "an object" : "a boolean");
            return -1;
        }
    }
    for (const argspec *a = spec; a->name; a++)
        if (a->required && !json_object_get(args, a->name)) {
            snprintf(err, errn, "missing argument '%s'", a->name);
            return -1;
        }
    return 0;
}

/* An optional integer argument in [lo, hi]; def when absent. -1 with err on a bad value. */
static int int_arg(json_t *args, const char *key, int def, int lo, int hi, int *out,
                   char *err, size_t errn)
{
    json_t *v = json_object_get(args, key);
    if (!v) {
        *out = def;
        return 0;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        snprintf(err, errn, "argument '%s' must be in %d..%d", key, lo, hi);
        return -1;
    }
    *out = (int)x;
    return 0;
}

/* The `memory` argument: a valid name in scope with the role. NULL with err otherwise. */
static const char *memory_arg(server *s, json_t *args, int role, char *err, size_t errn)
{
    const char *name = json_string_value(json_object_get(args, "memory"));
    if (!hsadb_memory_name_valid(name)) {
        snprintf(err, errn, "invalid memory name '%.140s': 1..128 bytes of [A-Za-z0-9._-]", name);
        return NULL;
    }
    static const char *roles[] = { "", "read", "write", "admin" };
    if (!in_scope(s, name))
        snprintf(err, errn, "memory '%s' is not served here (the server was started with "
                 "--memory for other memories)", name);
    else if (s->o.allow && !s->o.allow(s->o.allow_ctx, role, name))
        snprintf(err, errn, "permission denied: the key has no %s grant on memory '%s'",
                 roles[role], name);
    else
        return name;
    return NULL;
}

/* ---- JSON of engine results -------------------------------------------------------------- */

static const char *kv_name(int d) { return d == 0 ? "bf16" : d == 1 ? "f32" : "?"; }

static json_t *info_json(const hsadb_memory_info *m)
{
    return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}",
                     "name", m->name, "fingerprint", m->fingerprint,
                     "n_chunks", (json_int_t)m->n_chunks, "n_bytes", (json_int_t)m->n_bytes,
                     "n_appends", (json_int_t)m->n_appends,
                     "tail_bytes", (json_int_t)m->tail_bytes,
                     "store_bytes", (json_int_t)m->store_bytes,
                     "created", (json_int_t)m->created, "updated", (json_int_t)m->updated,
                     "kv_dtype", kv_name(m->kv_dtype));
}

/* The metadata of the appends a result cites, looked up once per append. */
typedef struct meta_cache {
    hsadb_db   *db;
    const char *memory;
    size_t      n;
    struct { uint64_t append_id; json_t *obj; } e[64];   /* obj NULL: the append has none */
} meta_cache;

static void meta_cache_free(meta_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        json_decref(c->e[i].obj);
}

/* Borrowed object of the append's pairs, or NULL when it has none (or the lookup failed:
 * metadata is an addition to a result, never a reason to fail it). */
static json_t *meta_lookup(meta_cache *c, uint64_t append_id)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->e[i].append_id == append_id)
            return c->e[i].obj;
    hsadb_meta_pair *p = NULL;
    size_t n = 0;
    json_t *obj = NULL;
    if (hsadb_append_meta(c->db, c->memory, append_id, &p, &n) == 0 && n) {
        obj = json_object();
        for (size_t i = 0; obj && i < n; i++)
            json_object_set_new(obj, p[i].key, json_bytes(p[i].value, strlen(p[i].value)));
    }
    hsadb_free(p);
    if (c->n < sizeof c->e / sizeof c->e[0]) {
        c->e[c->n].append_id = append_id;
        c->e[c->n++].obj = obj;
    } else {
        json_decref(obj);   /* cache full: not shown */
        obj = NULL;
    }
    return obj;
}

static json_t *chunk_json(const hsadb_chunk_ref *r, meta_cache *mc)
{
    double score = isfinite(r->score) ? r->score : 0.0;
    json_t *j = json_pack("{s:I, s:f, s:b, s:I, s:I, s:I, s:o}",
                          "chunk", (json_int_t)r->chunk, "score", score, "persisted", r->persisted != 0,
                          "append_id", (json_int_t)r->append_id,
                          "byte_offset", (json_int_t)r->byte_offset, "time", (json_int_t)r->time,
                          "text", json_bytes(r->text, r->text_len));
    json_t *meta = j && r->persisted ? meta_lookup(mc, r->append_id) : NULL;
    if (meta)
        json_object_set(j, "metadata", meta);
    return j;
}

static json_t *chunks_json(const hsadb_chunk_ref *r, size_t n, meta_cache *mc)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < n; i++)
        if (json_array_append_new(a, chunk_json(&r[i], mc))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* A growing text buffer for the human-readable block of a result. */
typedef struct text { char *p; size_t n, cap; int oom; } text;

static void text_add(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(t->p ? t->p + t->n : NULL, t->p ? t->cap - t->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0 || t->oom)
            return;
        if (t->p && t->n + (size_t)k < t->cap) {
            t->n += (size_t)k;
            return;
        }
        size_t cap = (t->cap ? t->cap * 2 : 1024) + (size_t)k;
        char *np = realloc(t->p, cap);
        if (!np) {
            t->oom = 1;
            return;
        }
        t->p = np;
        t->cap = cap;
    }
}

/* One chunk as a line: "  #12 score 0.41 append 3 @ byte 768: <text>" */
static void text_chunk(text *t, const hsadb_chunk_ref *r, meta_cache *mc)
{
    json_t *meta = r->persisted ? meta_lookup(mc, r->append_id) : NULL;
    char *ms = meta ? json_dumps(meta, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    if (r->persisted)
        text_add(t, "  chunk %llu, score %.3f, append %llu @ byte %llu%s%s: %.*s\n",
                 (unsigned long long)r->chunk, r->score, (unsigned long long)r->append_id,
                 (unsigned long long)r->byte_offset, ms ? " " : "", ms ? ms : "",
                 (int)r->text_len, (const char *)r->text);
    else
        text_add(t, "  chunk %llu, score %.3f, (the question): %.*s\n",
                 (unsigned long long)r->chunk, r->score, (int)r->text_len, (const char *)r->text);
    free(ms);
}

/* A tool's result from its text block t (freed here) and its structured content (its
 * reference is taken, also when t ran out of memory, which answers NULL). */
static json_t *text_result(server *s, text *t, json_t *structured)
{
    json_t *r = t->oom ? NULL : tool_ok(s, t->p, t->n, structured);
    if (t->oom)
        json_decref(structured);
    free(t->p);
    return r;
}

/* ---- tools ------------------------------------------------------------------------------- */

static json_t *tool_list_memories(server *s, json_t *args)
{
    char err[512];
    static const argspec spec[] = { { NULL, 0, 0 } };
    if (check_args(args, spec, err, sizeof err))
        return tool_err(s, "list_memories", "%s", err);
    hsadb_memory_info *st = NULL;
    size_t n = 0;
    int rc = hsadb_memory_list(s->db, &st, &n);
    if (rc)
        return tool_fail(s, "list_memories", rc, "*");
    json_t *arr = json_array();
    text t = { 0 };
    size_t shown = 0;
    for (size_t i = 0; arr && i < n; i++) {
        if (!allowed(s, HSADB_MCP_READ, st[i].name))
            continue;
        if (json_array_append_new(arr, info_json(&st[i]))) {
            json_decref(arr);
            arr = NULL;
        }
        text_add(&t, "%s: %llu bytes, %llu chunks, %llu appends\n", st[i].name,
                 (unsigned long long)st[i].n_bytes, (unsigned long long)st[i].n_chunks,
                 (unsigned long long)st[i].n_appends);
        shown++;
    }
    hsadb_free(st);
    if (shown == 0)
        text_add(&t, "no memories\n");
    return text_result(s, &t, json_pack("{s:o}", "memories", arr));
}

/* The optional `metadata` argument: an object of string values, as pairs pointing into it
 * (the bounds themselves are the library's: hsadb_appender_set_meta checks them). */
static int metadata_arg(json_t *obj, hsadb_meta_pair *p, size_t *n, char *err, size_t errn)
{
    const char *key;
    json_t *v;
    *n = 0;
    if (!obj)
        return 0;
    if (json_object_size(obj) > HSADB_META_MAX_PAIRS) {
        snprintf(err, errn, "metadata: %zu pairs, at most %d", json_object_size(obj),
                 HSADB_META_MAX_PAIRS);
        return -1;
    }
    json_object_foreach(obj, key, v) {
        if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
            snprintf(err, errn, "metadata '%.64s': the value must be a string without NUL", key);
            return -1;
        }
        p[*n].key = key;
        p[(*n)++].value = json_string_value(v);
    }
    return 0;
}

static json_t *tool_remember(server *s, json_t *args)
{
    char err[512];
    static const argspec spec[] = {
        { "memory", JSON_STRING, 1 }, { "text", JSON_STRING, 1 }, { "metadata", JSON_OBJECT, 0 },
        { NULL, 0, 0 },
    };
    hsadb_meta_pair pairs[HSADB_META_MAX_PAIRS];
    size_t n_pairs = 0;
    if (check_args(args, spec, err, sizeof err) ||
        metadata_arg(json_object_get(args, "metadata"), pairs, &n_pairs, err, sizeof err))
        return tool_err(s, "remember", "%s", err);
    if (s->o.read_only)
        return tool_err(s, "remember", "the server is read-only (--read-only)");
    const char *name = memory_arg(s, args, HSADB_MCP_WRITE, err, sizeof err);
    if (!name)
        return tool_err(s, "remember", "%s", err);
    json_t *tj = json_object_get(args, "text");
    const char *txt = json_string_value(tj);
    size_t len = json_string_length(tj);
    if (len == 0)
        return tool_err(s, "remember", "argument 'text' is empty");
    if (len > HSADB_MCP_MAX_TEXT)
        return tool_err(s, "remember", "argument 'text' is %zu bytes; at most %zu per call",
                        len, HSADB_MCP_MAX_TEXT);

    hsadb_memory_info st;
    int created = 0, rc = hsadb_memory_stat(s->db, name, &st);
    if (rc == HSADB_ERR_NOTFOUND) {
        if ((rc = hsadb_memory_create(s->db, name)) == 0)
            created = 1;
    }
    if (rc)
        return tool_fail(s, "remember", rc, name);
    hsadb_appender *ap = NULL;
    hsadb_append_result res;
    int newline = txt[len - 1] != '\n';
    rc = hsadb_appender_open(s->db, name, &ap);
    if (rc == 0 && n_pairs)
        rc = hsadb_appender_set_meta(ap, pairs, n_pairs);
    if (rc == 0)
        rc = hsadb_appender_write(ap, txt, len);
    if (rc == 0 && newline)
        rc = hsadb_appender_write(ap, "\n", 1);
    if (rc == 0) {
        rc = hsadb_appender_commit(ap, &res);   /* frees ap, also on failure */
        ap = NULL;
    }
    if (rc) {
        json_t *e = tool_fail(s, "remember", rc, name);
        hsadb_appender_abort(ap);
        if (created)   /* leave nothing behind: the memory did not exist before */
            hsadb_memory_delete(s->db, name);
        return e;
    }
    logf_(s, "remember: memory=%s bytes=%llu append=%llu", name,
          (unsigned long long)res.bytes, (unsigned long long)res.append_id);
    char msg[256];
    int k = snprintf(msg, sizeof msg, "remembered %llu bytes in memory '%s' (append %llu%s)",
                     (unsigned long long)res.bytes, name, (unsigned long long)res.append_id,
                     created ? ", memory created" : "");
    return tool_ok(s, msg, (size_t)k,
                   json_pack("{s:s, s:b, s:I, s:I, s:I, s:I, s:I, s:f}", "memory", name,
                             "created", created, "append_id", (json_int_t)res.append_id,
                             "bytes", (json_int_t)res.bytes, "chunks", (json_int_t)res.chunks,
                             "total_bytes", (json_int_t)res.total_bytes,
                             "total_chunks", (json_int_t)res.total_chunks,
                             "seconds", res.seconds));
}

/* The question argument: non-empty, at most QUESTION_LIMIT bytes. */
static const char *question_arg(json_t *args, size_t *len, char *err, size_t errn)
{
    json_t *q = json_object_get(args, "question");
    *len = json_string_length(q);
    if (*len == 0 || *len > QUESTION_LIMIT) {
        snprintf(err, errn, "argument 'question' must be 1..%d bytes", QUESTION_LIMIT);
        return NULL;
    }
    return json_string_value(q);
}

/* The query's piece callback: nonzero stops generation (the answer's stop is "cancelled"). */
static int stop_if_cancelled(void *ctx, const char *bytes, size_t n)
{
    return atomic_load(&((server *)ctx)->cancel);
}

static json_t *tool_recall(server *s, json_t *args)
{
    char err[512];
    static const argspec spec[] = {
        { "memory", JSON_STRING, 1 }, { "question", JSON_STRING, 1 },
        { "max_tokens", JSON_INTEGER, 0 }, { "evidence_k", JSON_INTEGER, 0 }, { NULL, 0, 0 },
    };
    hsadb_query_options qo;
    memset(&qo, 0, sizeof qo);
    size_t qlen = 0;
    const char *name, *q;
    if (check_args(args, spec, err, sizeof err) ||
        int_arg(args, "max_tokens", RECALL_MAX_TOKENS_DEFAULT, 1, RECALL_MAX_TOKENS_LIMIT,
                &qo.max_tokens, err, sizeof err) ||
        int_arg(args, "evidence_k", EVIDENCE_K_DEFAULT, 1, EVIDENCE_K_LIMIT, &qo.evidence_k,
                err, sizeof err) ||
        !(name = memory_arg(s, args, HSADB_MCP_READ, err, sizeof err)) ||
        !(q = question_arg(args, &qlen, err, sizeof err)))
        return tool_err(s, "recall", "%s", err);
    qo.on_piece = stop_if_cancelled;
    qo.ctx = s;
    hsadb_answer *a = NULL;
    int rc = hsadb_query(s->db, name, q, qlen, &qo, &a);
    if (rc)
        return tool_fail(s, "recall", rc, name);
    static const char *stops[] = { "eos", "max_tokens", "cancelled" };
    const char *stop = a->stop >= 0 && a->stop <= 2 ? stops[a->stop] : "?";
    logf_(s, "recall: memory=%s tokens=%d stop=%s", name, a->n_tokens, stop);
    meta_cache mc = { .db = s->db, .memory = name };
    json_t *layers = json_array();
    text t = { 0 };
    text_add(&t, "%.*s\n\nevidence (chunks the model attended to, with provenance):\n",
             (int)a->len, a->text);
    for (size_t i = 0; layers && i < a->n_layers; i++) {
        const hsadb_evidence *ev = &a->layers[i];
        text_add(&t, "layer %d:\n", ev->layer);
        for (size_t j = 0; j < ev->n; j++)
            text_chunk(&t, &ev->chunks[j], &mc);
        if (json_array_append_new(layers, json_pack("{s:i, s:o}", "layer", ev->layer, "chunks",
                                                    chunks_json(ev->chunks, ev->n, &mc)))) {
            json_decref(layers);
            layers = NULL;
        }
    }
    json_t *st = json_pack("{s:s, s:o, s:i, s:s, s:f, s:f, s:o}", "memory", name,
                           "answer", json_bytes(a->text, a->len), "n_tokens", a->n_tokens,
                           "stop", stop, "prompt_seconds", a->prompt_seconds,
                           "generate_seconds", a->generate_seconds, "evidence", layers);
    json_t *r = text_result(s, &t, st);
    meta_cache_free(&mc);
    hsadb_answer_free(a);
    return r;
}

static json_t *tool_search(server *s, json_t *args)
{
    char err[512];
    static const argspec spec[] = {
        { "memory", JSON_STRING, 1 }, { "question", JSON_STRING, 1 }, { "k", JSON_INTEGER, 0 },
        { NULL, 0, 0 },
    };
    int k = 0;
    size_t qlen = 0;
    const char *name, *q;
    if (check_args(args, spec, err, sizeof err) ||
        int_arg(args, "k", SEARCH_K_DEFAULT, 1, SEARCH_K_LIMIT, &k, err, sizeof err) ||
        !(name = memory_arg(s, args, HSADB_MCP_READ, err, sizeof err)) ||
        !(q = question_arg(args, &qlen, err, sizeof err)))
        return tool_err(s, "search", "%s", err);
    hsadb_hits *h = NULL;
    int rc = hsadb_search(s->db, name, q, qlen, k, &h);
    if (rc)
        return tool_fail(s, "search", rc, name);
    logf_(s, "search: memory=%s k=%d hits=%zu", name, k, h->n);
    meta_cache mc = { .db = s->db, .memory = name };
    text t = { 0 };
    text_add(&t, "%zu chunks of memory '%s', most relevant first:\n", h->n, name);
    for (size_t i = 0; i < h->n; i++)
        text_chunk(&t, &h->hits[i], &mc);
    json_t *st = json_pack("{s:s, s:o}", "memory", name, "hits", chunks_json(h->hits, h->n, &mc));
    json_t *r = text_result(s, &t, st);
    meta_cache_free(&mc);
    hsadb_hits_free(h);
    return r;
}

static json_t *tool_forget(server *s, json_t *args)
{
    char err[512];
    static const argspec spec[] = {
        { "memory", JSON_STRING, 1 }, { "confirm", JSON_TRUE, 1 }, { NULL, 0, 0 },
    };
    if (check_args(args, spec, err, sizeof err))
        return tool_err(s, "forget", "%s", err);
    if (s->o.read_only || !s->o.allow_forget)
        return tool_err(s, "forget", "forget is not enabled on this server (start it with "
                        "--allow-forget, without --read-only)");
    const char *name = memory_arg(s, args, HSADB_MCP_ADMIN, err, sizeof err);
    if (!name)
        return tool_err(s, "forget", "%s", err);
    if (!json_is_true(json_object_get(args, "confirm")))
        return tool_err(s, "forget", "argument 'confirm' must be true: forget deletes the "
                        "whole memory '%s'", name);
    int rc = hsadb_memory_delete(s->db, name);
    if (rc)
        return tool_fail(s, "forget", rc, name);
    logf_(s, "forget: memory=%s deleted", name);
    char msg[256];
    int n = snprintf(msg, sizeof msg, "deleted memory '%s' and all its records", name);
    return tool_ok(s, msg, (size_t)n, json_pack("{s:s, s:b}", "memory", name, "deleted", 1));
}

/* ---- tool table -------------------------------------------------------------------------- */

typedef json_t *(*tool_fn)(server *s, json_t *args);

typedef struct tool {
    const char *name, *title, *description;
    const char *input_schema, *output_schema;   /* JSON text */
    int         writes;                          /* hidden in read-only mode */
    int         needs_forget;                    /* shown only with allow_forget */
    tool_fn     fn;
} tool;

#define CHUNK_SCHEMA \
    "{\"type\":\"object\",\"properties\":{\"chunk\":{\"type\":\"integer\"}," \
    "\"score\":{\"type\":\"number\"},\"persisted\":{\"type\":\"boolean\"}," \
    "\"append_id\":{\"type\":\"integer\"},\"byte_offset\":{\"type\":\"integer\"}," \
    "\"time\":{\"type\":\"integer\"},\"text\":{\"type\":\"string\"}," \
    "\"metadata\":{\"type\":\"object\",\"additionalProperties\":{\"type\":\"string\"}}}," \
    "\"required\":[\"chunk\",\"score\",\"persisted\",\"append_id\",\"byte_offset\",\"time\",\"text\"]}"
#define MEMORY_ARG "\"memory\":{\"type\":\"string\",\"description\":\"memory name: 1..128 bytes of [A-Za-z0-9._-]\"}"
#define QUESTION_ARG "\"question\":{\"type\":\"string\",\"description\":\"the question, 1..65536 bytes\"}"

static const tool tools[] = {
    { "remember", "Remember",
      "Append text to a memory (created if it does not exist). The text is stored exactly, "
      "followed by a newline when it does not end with one; the memory keeps everything in "
      "order. At most 4 MiB per call.",
      "{\"type\":\"object\",\"properties\":{" MEMORY_ARG ",\"text\":{\"type\":\"string\","
      "\"description\":\"what to remember\"},\"metadata\":{\"type\":\"object\","
      "\"additionalProperties\":{\"type\":\"string\"},\"maxProperties\":16,\"description\":"
      "\"optional key/value pairs stored with this text (source, session, role, tags...): keys "
      "1..64 bytes of [A-Za-z0-9._-], values up to 1024 bytes, 4096 bytes in all; shown with "
      "the chunks recall and search return\"}},\"required\":[\"memory\",\"text\"],"
      "\"additionalProperties\":false}",
      "{\"type\":\"object\",\"properties\":{\"memory\":{\"type\":\"string\"},"
      "\"created\":{\"type\":\"boolean\"},\"append_id\":{\"type\":\"integer\"},"
      "\"bytes\":{\"type\":\"integer\"},\"chunks\":{\"type\":\"integer\"},"
      "\"total_bytes\":{\"type\":\"integer\"},\"total_chunks\":{\"type\":\"integer\"},"
      "\"seconds\":{\"type\":\"number\"}},\"required\":[\"memory\",\"append_id\",\"bytes\","
      "\"total_bytes\"]}",
      1, 0, tool_remember },
    { "recall", "Recall",
      "Ask a question about a memory: the model reads the memory and answers; the result "
      "lists the evidence (stored chunks each layer attended to, with the append and byte "
      "offset they came from).",
      "{\"type\":\"object\",\"properties\":{" MEMORY_ARG "," QUESTION_ARG ","
      "\"max_tokens\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":4096,\"description\":"
      "\"answer length limit in tokens (default 128)\"},\"evidence_k\":{\"type\":\"integer\","
      "\"minimum\":1,\"maximum\":64,\"description\":\"chunks listed per layer (default 4)\"}},"
      "\"required\":[\"memory\",\"question\"],\"additionalProperties\":false}",
      "{\"type\":\"object\",\"properties\":{\"memory\":{\"type\":\"string\"},"
      "\"answer\":{\"type\":\"string\"},\"n_tokens\":{\"type\":\"integer\"},"
      "\"stop\":{\"type\":\"string\",\"enum\":[\"eos\",\"max_tokens\",\"cancelled\"]},"
      "\"prompt_seconds\":{\"type\":\"number\"},\"generate_seconds\":{\"type\":\"number\"},"
      "\"evidence\":{\"type\":\"array\",\"items\":{\"type\":\"object\",\"properties\":{"
      "\"layer\":{\"type\":\"integer\"},\"chunks\":{\"type\":\"array\",\"items\":" CHUNK_SCHEMA
      "}},\"required\":[\"layer\",\"chunks\"]}}},\"required\":[\"memory\",\"answer\",\"stop\","
      "\"evidence\"]}",
      0, 0, tool_recall },
    { "search", "Search",
      "The k stored chunks of a memory most relevant to a question, without generating an "
      "answer, most relevant first, with provenance.",
      "{\"type\":\"object\",\"properties\":{" MEMORY_ARG "," QUESTION_ARG ","
      "\"k\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":1024,\"description\":"
      "\"chunks to return (default 8)\"}},\"required\":[\"memory\",\"question\"],"
      "\"additionalProperties\":false}",
      "{\"type\":\"object\",\"properties\":{\"memory\":{\"type\":\"string\"},"
      "\"hits\":{\"type\":\"array\",\"items\":" CHUNK_SCHEMA "}},\"required\":[\"memory\","
      "\"hits\"]}",
      0, 0, tool_search },
    { "list_memories", "List memories",
      "The memories this server may read, sorted by name, with their sizes.",
      "{\"type\":\"object\",\"properties\":{},\"additionalProperties\":false}",
      "{\"type\":\"object\",\"properties\":{\"memories\":{\"type\":\"array\",\"items\":{"
      "\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},"
      "\"n_bytes\":{\"type\":\"integer\"},\"n_chunks\":{\"type\":\"integer\"},"
      "\"n_appends\":{\"type\":\"integer\"}},\"required\":[\"name\",\"n_bytes\"]}}},"
      "\"required\":[\"memories\"]}",
      0, 0, tool_list_memories },
    { "forget", "Forget a whole memory",
      "Delete a WHOLE memory and all its records (irreversible). hsadb cannot yet remove a "
      "single remembered text: this deletes everything in the memory. Requires confirm: true.",
      "{\"type\":\"object\",\"properties\":{" MEMORY_ARG ",\"confirm\":{\"type\":\"boolean\","
      "\"const\":true,\"description\":\"must be true: the whole memory is deleted\"}},"
      "\"required\":[\"memory\",\"confirm\"],\"additionalProperties\":false}",
      "{\"type\":\"object\",\"properties\":{\"memory\":{\"type\":\"string\"},"
      "\"deleted\":{\"type\":\"boolean\"}},\"required\":[\"memory\",\"deleted\"]}",
      1, 1, tool_forget },
};
#define N_TOOLS (sizeof tools / sizeof tools[0])

static int tool_offered(const server *s, const tool *t)
{
    return !(t->writes && s->o.read_only) && !(t->needs_forget && !s->o.allow_forget);
}

/* ---- MCP methods ------------------------------------------------------------------------- */

static int m_initialize(server *s, json_t *id, json_t *params)
{
    if (s->initialized)
        return send_error(s, id, E_REQUEST, "already initialized");
    const char *want = json_string_value(json_object_get(params, "protocolVersion"));
    if (!want)
        return send_error(s, id, E_PARAMS, "initialize: params.protocolVersion (a string) is "
                          "required");
    const char *ver = versions[0];
    for (size_t i = 0; i < N_VERSIONS; i++)
        if (strcmp(want, versions[i]) == 0)
            ver = versions[i];
    s->initialized = 1;
    s->structured = strcmp(ver, "2025-06-18") >= 0;
    logf_(s, "initialize: client asked %s, speaking %s", want, ver);
    return send_result(s, id, json_pack(
        "{s:s, s:{s:{s:b}, s:{s:b, s:b}}, s:{s:s, s:s, s:s}, s:s}",
        "protocolVersion", ver,
        "capabilities", "tools", "listChanged", 0, "resources", "subscribe", 0, "listChanged", 0,
        "serverInfo", "name", "hsadb", "title", "hsadb memory", "version", HSADB_VERSION_STRING,
        "instructions",
        "hsadb is a persistent memory for language models. Use `remember` to store text in a "
        "named memory, `recall` to ask a question (answer + evidence with provenance), "
        "`search` to find the most relevant stored passages, and `list_memories` to see what "
        "exists. Each memory is also a resource, hsadb://memory/NAME."));
}

/* tools/list and resources/list: one page; this server never hands out a cursor. */
static int check_cursor(server *s, json_t *id, json_t *params, const char *method)
{
    json_t *c = json_object_get(params, "cursor");
    if (c && !json_is_null(c))
        return send_error(s, id, E_PARAMS, "%s: unknown cursor (this server returns one page)",
                          method), -1;
    return 0;
}

static int m_tools_list(server *s, json_t *id, json_t *params)
{
    if (check_cursor(s, id, params, "tools/list"))
        return 0;
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < N_TOOLS; i++) {
        const tool *t = &tools[i];
        if (!tool_offered(s, t))
            continue;
        json_t *in = json_loads(t->input_schema, 0, NULL);
        json_t *out = s->structured ? json_loads(t->output_schema, 0, NULL) : NULL;
        json_t *o = json_pack("{s:s, s:s, s:s, s:o, s:{s:b, s:b, s:b}}", "name", t->name,
                              "title", t->title, "description", t->description,
                              "inputSchema", in, "annotations", "readOnlyHint", !t->writes,
                              "destructiveHint", t->needs_forget, "idempotentHint", 0);
        if (o && out)
            json_object_set_new(o, "outputSchema", out);
        else
            json_decref(out);
        if (!o || json_array_append_new(arr, o)) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return send_result(s, id, arr ? json_pack("{s:o}", "tools", arr) : NULL);
}

static int m_tools_call(server *s, json_t *id, json_t *params)
{
    const char *name = json_string_value(json_object_get(params, "name"));
    json_t *args = json_object_get(params, "arguments");
    if (!name)
        return send_error(s, id, E_PARAMS, "tools/call: params.name (a string) is required");
    if (args && !json_is_object(args))
        return send_error(s, id, E_PARAMS, "tools/call: params.arguments must be an object");
    const tool *t = NULL;
    for (size_t i = 0; i < N_TOOLS; i++)
        if (strcmp(tools[i].name, name) == 0 && tool_offered(s, &tools[i]))
            t = &tools[i];
    if (!t)
        return send_error(s, id, E_PARAMS, "unknown tool '%.100s'", name);
    json_t *empty = NULL;
    if (!args)
        args = empty = json_object();
    json_t *r = args ? t->fn(s, args) : NULL;
    json_decref(empty);
    return send_result(s, id, r);
}

static json_t *resource_json(const hsadb_memory_info *m)
{
    char uri[sizeof URI_PREFIX + 130], desc[256];
    snprintf(uri, sizeof uri, URI_PREFIX "%s", m->name);
    snprintf(desc, sizeof desc, "hsadb memory '%s': %llu bytes in %llu appends", m->name,
             (unsigned long long)m->n_bytes, (unsigned long long)m->n_appends);
    return json_pack("{s:s, s:s, s:s, s:s, s:I}", "uri", uri, "name", m->name,
                     "description", desc, "mimeType", "text/plain", "size", (json_int_t)m->n_bytes);
}

static int m_resources_list(server *s, json_t *id, json_t *params)
{
    if (check_cursor(s, id, params, "resources/list"))
        return 0;
    hsadb_memory_info *st = NULL;
    size_t n = 0;
    int rc = hsadb_memory_list(s->db, &st, &n);
    if (rc)
        return send_error(s, id, E_INTERNAL, "listing memories: %s: %s", hsadb_strerror(rc),
                          hsadb_last_error());
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (allowed(s, HSADB_MCP_READ, st[i].name) && json_array_append_new(arr, resource_json(&st[i]))) {
            json_decref(arr);
            arr = NULL;
        }
    hsadb_free(st);
    return send_result(s, id, arr ? json_pack("{s:o}", "resources", arr) : NULL);
}

static int m_resource_templates(server *s, json_t *id, json_t *params)
{
    if (check_cursor(s, id, params, "resources/templates/list"))
        return 0;
    return send_result(s, id, json_pack("{s:[{s:s, s:s, s:s, s:s}]}", "resourceTemplates",
                                        "uriTemplate", URI_PREFIX "{name}", "name", "memory",
                                        "description", "the stream of an hsadb memory (its last "
                                        "1 MiB)", "mimeType", "text/plain"));
}

static int m_resources_read(server *s, json_t *id, json_t *params)
{
    const char *uri = json_string_value(json_object_get(params, "uri"));
    if (!uri)
        return send_error(s, id, E_PARAMS, "resources/read: params.uri (a string) is required");
    size_t pl = strlen(URI_PREFIX);
    const char *name = strncmp(uri, URI_PREFIX, pl) == 0 ? uri + pl : NULL;
    if (!name || !hsadb_memory_name_valid(name))
        return send_error(s, id, E_RESOURCE, "resource not found: '%.200s' (expected "
                          URI_PREFIX "NAME)", uri);
    hsadb_memory_info st;
    int rc = allowed(s, HSADB_MCP_READ, name) ? hsadb_memory_stat(s->db, name, &st)
                                               : HSADB_ERR_NOTFOUND;
    if (rc == HSADB_ERR_NOTFOUND)
        return send_error(s, id, E_RESOURCE, "resource not found: '%.200s'", uri);
    if (rc)
        return send_error(s, id, E_INTERNAL, "memory '%s': %s: %s", name, hsadb_strerror(rc),
                          hsadb_last_error());
    uint64_t off = st.n_bytes > HSADB_MCP_MAX_READ ? st.n_bytes - HSADB_MCP_MAX_READ : 0;
    size_t want = (size_t)(st.n_bytes - off), got = 0;
    char *buf = malloc(want ? want : 1);
    if (!buf)
        return send_result(s, id, NULL);
    rc = hsadb_memory_read(s->db, name, off, buf, want, &got);
    if (rc) {
        free(buf);
        return send_error(s, id, E_INTERNAL, "reading memory '%s': %s: %s", name,
                          hsadb_strerror(rc), hsadb_last_error());
    }
    json_t *r = json_pack("{s:[{s:s, s:s, s:o, s:{s:I, s:I}}]}", "contents", "uri", uri,
                          "mimeType", "text/plain", "text", json_bytes(buf, got),
                          "_meta", "hsadb/offset", (json_int_t)off,
                          "hsadb/total_bytes", (json_int_t)st.n_bytes);
    free(buf);
    return send_result(s, id, r);
}

static int m_ping(server *s, json_t *id, json_t *params)
{
    return send_result(s, id, json_object());
}

typedef int (*method_fn)(server *s, json_t *id, json_t *params);

static const struct { const char *name; method_fn fn; } methods[] = {
    { "initialize", m_initialize },
    { "ping", m_ping },
    { "tools/list", m_tools_list },
    { "tools/call", m_tools_call },
    { "resources/list", m_resources_list },
    { "resources/templates/list", m_resource_templates },
    { "resources/read", m_resources_read },
};
#define N_METHODS (sizeof methods / sizeof methods[0])

/* ---- one message ------------------------------------------------------------------------- */

/* Handle one message (owned; freed here). Returns 0, or the errno of a failed write. */
static int handle_msg(server *s, json_t *msg)
{
    int rc = 0;
    json_t *id = NULL;
    if (json_is_array(msg)) {
        rc = send_error(s, NULL, E_REQUEST, "batches (JSON arrays) are not supported");
        goto out;
    }
    if (!json_is_object(msg)) {
        rc = send_error(s, NULL, E_REQUEST, "a message must be a JSON object");
        goto out;
    }
    id = json_object_get(msg, "id");
    if (id && !json_is_string(id) && !json_is_integer(id)) {
        rc = send_error(s, NULL, E_REQUEST, "id must be a string or an integer");
        goto out;
    }
    const char *jsonrpc = json_string_value(json_object_get(msg, "jsonrpc"));
    json_t *method = json_object_get(msg, "method");
    json_t *params = json_object_get(msg, "params");
    if (!jsonrpc || strcmp(jsonrpc, "2.0") != 0) {
        rc = send_error(s, id, E_REQUEST, "jsonrpc must be \"2.0\"");
        goto out;
    }
    if (!method) {
        /* a response (result or error) to a request of ours: this server sends none */
        if (id && (json_object_get(msg, "result") || json_object_get(msg, "error")))
            goto out;
        rc = send_error(s, id, E_REQUEST, "method is required");
        goto out;
    }
    if (!json_is_string(method)) {
        rc = send_error(s, id, E_REQUEST, "method must be a string");
        goto out;
    }
    const char *name = json_string_value(method);
    if (!id) {   /* a notification: never answered */
        logf_(s, "notification %s", name);
        goto out;
    }
    if (params && !json_is_object(params)) {
        rc = send_error(s, id, E_PARAMS, "%s: params must be an object", name);
        goto out;
    }
    json_t *empty = NULL;
    if (!params)
        params = empty = json_object();
    method_fn fn = NULL;
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(methods[i].name, name) == 0)
            fn = methods[i].fn;
    if (!fn)
        rc = send_error(s, id, E_METHOD, "method not found: '%.100s'", name);
    else if (!s->initialized && fn != m_initialize && fn != m_ping)
        rc = send_error(s, id, E_REQUEST, "%s before initialize: send initialize first", name);
    else {
        pthread_mutex_lock(&s->mu);
        s->inflight = id;
        atomic_store(&s->cancel, 0);
        pthread_mutex_unlock(&s->mu);
        rc = fn(s, id, params);
        pthread_mutex_lock(&s->mu);
        s->inflight = NULL;
        atomic_store(&s->cancel, 0);
        pthread_mutex_unlock(&s->mu);
    }
    json_decref(empty);
out:
    json_decref(msg);
    return rc;
}

/* ---- the reader thread and the loop ----------------------------------------------------- */

/* The requestId of a notifications/cancelled, or NULL. */
static json_t *cancel_target(json_t *msg)
{
    const char *m = json_string_value(json_object_get(msg, "method"));
    if (!m || strcmp(m, "notifications/cancelled") != 0 || json_object_get(msg, "id"))
        return NULL;
    return json_object_get(json_object_get(msg, "params"), "requestId");
}

/* Queue one entry (waits while the queue is full). 0, or -1 when the main thread stopped. */
static int enqueue(server *s, entry *e)
{
    pthread_mutex_lock(&s->mu);
    /* a cancellation acts at once, even while the queue is full */
    json_t *target = e->msg ? cancel_target(e->msg) : NULL;
    if (target && s->inflight && json_equal(target, s->inflight))
        atomic_store(&s->cancel, 1);
    while (s->q_len == QUEUE_CAP && !s->stop)
        pthread_cond_wait(&s->cv, &s->mu);
    int rc = s->stop ? -1 : 0;
    if (rc == 0) {
        s->q[(s->q_head + s->q_len++) % QUEUE_CAP] = *e;
        pthread_cond_broadcast(&s->cv);
    }
    pthread_mutex_unlock(&s->mu);
    if (rc)
        json_decref(e->msg);
    return rc;
}

/* One complete line (without its newline) to an entry. */
static int push_line(server *s, const char *line, size_t n, int too_long)
{
    entry e = { 0 };
    json_error_t jerr;
    if (too_long) {
        e.code = E_REQUEST;
        snprintf(e.err, sizeof e.err, "message over %zu bytes: ignored", HSADB_MCP_MAX_LINE);
    } else if (n == 0 || (n == 1 && line[0] == '\r')) {
        return 0;   /* blank line */
    } else if (!(e.msg = json_loadb(line, n, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr))) {
        e.code = E_PARSE;
        snprintf(e.err, sizeof e.err, "parse error: %s (column %d)", jerr.text, jerr.column);
    }
    return enqueue(s, &e);
}

/* Reads `in`'s descriptor (not through stdio: poll() sees what is unread) in lines until end
 * of input or until the main thread stops. Checks the stop flag every 100 ms. */
static void *reader_main(void *arg)
{
    server *s = arg;
    int fd = s->in_fd, rc = 0, too_long = 0;
    size_t cap = 64 << 10, n = 0;
    char *line = malloc(cap), chunk[64 << 10];
    if (!line)
        rc = ENOMEM;
    while (rc == 0) {
        pthread_mutex_lock(&s->mu);
        int stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int pr = poll(&p, 1, 100);
        if (pr < 0 && errno != EINTR) {
            rc = errno;
            break;
        }
        if (pr <= 0)
            continue;
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0) {
            if (errno != EINTR && errno != EAGAIN)
                rc = errno;
            continue;
        }
        if (got == 0) {   /* end of input: a last line without newline counts */
            if (n > 0 || too_long)
                push_line(s, line, n, too_long);
            break;
        }
        for (ssize_t i = 0; i < got && rc == 0; i++) {
            if (chunk[i] == '\n') {
                if (push_line(s, line, n, too_long))
                    rc = -1;
                n = 0;
                too_long = 0;
            } else if (too_long) {
                continue;
            } else if (n == HSADB_MCP_MAX_LINE) {
                too_long = 1;
            } else {
                if (n == cap) {
                    size_t ncap = cap * 2 > HSADB_MCP_MAX_LINE ? HSADB_MCP_MAX_LINE : cap * 2;
                    char *nl = realloc(line, ncap);
                    if (!nl) {
                        rc = ENOMEM;
                        break;
                    }
                    line = nl;
                    cap = ncap;
                }
                line[n++] = chunk[i];
            }
        }
    }
    free(line);
    pthread_mutex_lock(&s->mu);
    s->eof = 1;
    s->read_rc = rc > 0 ? rc : 0;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

int hsadb_mcp_serve(hsadb_db *db, const hsadb_mcp_options *opts, FILE *in, FILE *out)
{
    server *s = calloc(1, sizeof *s);
    if (!s)
        return ENOMEM;
    s->db = db;
    if (opts)
        s->o = *opts;
    s->out = out;
    s->in_fd = fileno(in);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_t reader;
    int rc = pthread_create(&reader, NULL, reader_main, s);
    if (rc)
        goto fail;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (s->q_len == 0 && !s->eof)
            pthread_cond_wait(&s->cv, &s->mu);
        if (s->q_len == 0) {   /* end of input and every line handled */
            rc = s->read_rc;
            pthread_mutex_unlock(&s->mu);
            break;
        }
        entry e = s->q[s->q_head];
        s->q_head = (s->q_head + 1) % QUEUE_CAP;
        s->q_len--;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        rc = e.msg ? handle_msg(s, e.msg) : send_error(s, NULL, e.code, "%s", e.err);
        if (rc)   /* the client went away (EPIPE) or out of memory */
            break;
    }
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    while (s->q_len) {   /* lines read but not handled (after a failed write) */
        json_decref(s->q[s->q_head].msg);
        s->q_head = (s->q_head + 1) % QUEUE_CAP;
        s->q_len--;
    }
    pthread_mutex_unlock(&s->mu);
    pthread_join(reader, NULL);
    while (s->q_len) {   /* queued by the reader before it saw stop */
        json_decref(s->q[s->q_head].msg);
        s->q_head = (s->q_head + 1) % QUEUE_CAP;
        s->q_len--;
    }
fail:
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
    free(s);
    return rc;
}
