/*
 * memory_service.c — the handlers of hsadb.v1.Memory and grpc.health.v1.Health, and their
 * dispatch tables (checked against the protoc-c service descriptors at start, server.c).
 * Handlers block on the hsadb library and on the call; they run on worker threads.
 */
#include "rpc.h"
#include "grpc/health/v1/health.pb-c.h"
#include "hsadb/v1/memory.pb-c.h"

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_PAGE       1000
#define MAX_SEARCH_K   1024
#define MAX_EVIDENCE_K 256
#define MAX_TOKENS     65536

static const char *kv_name(int d) { return d == 0 ? "bf16" : d == 1 ? "f32" : "?"; }

/* Point a MemoryInfo at the fields of st (no copy: st must outlive the message). */
static void fill_info(Hsadb__V1__MemoryInfo *m, hsadb_memory_info *st)
{
    hsadb__v1__memory_info__init(m);
    m->name = st->name;
    m->fingerprint = st->fingerprint;
    m->n_chunks = st->n_chunks;
    m->n_bytes = st->n_bytes;
    m->n_appends = st->n_appends;
    m->tail_bytes = st->tail_bytes;
    m->store_bytes = st->store_bytes;
    m->created = st->created;
    m->updated = st->updated;
    m->kv_dtype = (char *)kv_name(st->kv_dtype);
}

static void fill_chunk(Hsadb__V1__Chunk *m, const hsadb_chunk_ref *r)
{
    hsadb__v1__chunk__init(m);
    m->chunk = r->chunk;
    m->score = r->score;
    m->persisted = r->persisted != 0;
    m->append_id = r->append_id;
    m->byte_offset = r->byte_offset;
    m->time = r->time;
    m->text.data = (uint8_t *)r->text;
    m->text.len = r->text_len;
}

static int check_name(rpc_call *c, const char *what, const char *name)
{
    if (hsadb_memory_name_valid(name))
        return RPC_OK;
    return rpc_call_status(c, RPC_INVALID_ARGUMENT,
                           "%s '%.140s' must be 1..128 bytes of [A-Za-z0-9._-]", what, name);
}

/* ---- memories -------------------------------------------------------------------------- */

static int h_create(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__CreateMemoryRequest *r = (const void *)msg;
    int code;
    if ((code = check_name(c, "memory name", r->name)) || (code = rpc_call_allow(c, RPC_ROLE_WRITE, r->name)))
        return code;
    int rc = hsadb_memory_create(rpc_call_db(c), r->name);
    hsadb_memory_info st;
    if (rc == 0)
        rc = hsadb_memory_stat(rpc_call_db(c), r->name, &st);
    if (rc)
        return rpc_call_fail(c, rc, r->name);
    rpc_call_note(c, "memory=%s", r->name);
    Hsadb__V1__MemoryInfo out;
    fill_info(&out, &st);
    rpc_call_write(c, &out.base);
    return RPC_OK;
}

static int h_list(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__ListMemoriesRequest *r = (const void *)msg;
    if (r->page_size < 0)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "page_size must be >= 0");
    size_t page = r->page_size == 0 || r->page_size > MAX_PAGE ? MAX_PAGE : (size_t)r->page_size;
    hsadb_memory_info *st = NULL;
    size_t n = 0;
    int rc = hsadb_memory_list(rpc_call_db(c), &st, &n);
    if (rc)
        return rpc_call_fail(c, rc, "list");
    Hsadb__V1__MemoryInfo *infos = calloc(page, sizeof *infos);
    Hsadb__V1__MemoryInfo **ptrs = calloc(page, sizeof *ptrs);
    if (!infos || !ptrs) {
        free(infos);
        free(ptrs);
        hsadb_free(st);
        return rpc_call_status(c, RPC_RESOURCE_EXHAUSTED, "out of memory");
    }
    Hsadb__V1__ListMemoriesResponse out = HSADB__V1__LIST_MEMORIES_RESPONSE__INIT;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (r->start_after[0] && strcmp(st[i].name, r->start_after) <= 0)
            continue;
        if (!rpc_call_may(c, RPC_ROLE_READ, st[i].name))
            continue;
        if (k == page) {
            out.next_start_after = infos[k - 1].name;
            break;
        }
        fill_info(&infos[k], &st[i]);
        ptrs[k] = &infos[k];
        k++;
    }
    out.n_memories = k;
    out.memories = ptrs;
    rpc_call_write(c, &out.base);
    free(infos);
    free(ptrs);
    hsadb_free(st);
    return RPC_OK;
}

static int h_get(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__GetMemoryRequest *r = (const void *)msg;
    int code;
    if ((code = check_name(c, "memory name", r->name)) || (code = rpc_call_allow(c, RPC_ROLE_READ, r->name)))
        return code;
    hsadb_memory_info st;
    int rc = hsadb_memory_stat(rpc_call_db(c), r->name, &st);
    if (rc)
        return rpc_call_fail(c, rc, r->name);
    Hsadb__V1__MemoryInfo out;
    fill_info(&out, &st);
    rpc_call_write(c, &out.base);
    return RPC_OK;
}

static int h_delete(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__DeleteMemoryRequest *r = (const void *)msg;
    int code;
    if ((code = check_name(c, "memory name", r->name)) || (code = rpc_call_allow(c, RPC_ROLE_ADMIN, r->name)))
        return code;
    if (rpc_memory_lock(c, r->name))   /* waits for an append in progress */
        return rpc_call_status(c, RPC_CANCELLED, "cancelled while waiting for an append");
    int rc = hsadb_memory_delete(rpc_call_db(c), r->name);
    rpc_memory_unlock(c, r->name);
    if (rc)
        return rpc_call_fail(c, rc, r->name);
    rpc_call_note(c, "memory=%s", r->name);
    Hsadb__V1__DeleteMemoryResponse out = HSADB__V1__DELETE_MEMORY_RESPONSE__INIT;
    rpc_call_write(c, &out.base);
    return RPC_OK;
}

/* ---- append (client stream) ------------------------------------------------------------ */

static int h_append(rpc_call *c, const ProtobufCMessage *unused)
{
    Hsadb__V1__AppendRequest *r = NULL;
    hsadb_appender *ap = NULL;
    hsadb_memory_info before, after;
    char name[129] = "";
    int locked = 0, code = RPC_OK, rc;
    int got = rpc_call_read(c, &hsadb__v1__append_request__descriptor, (ProtobufCMessage **)&r);
    if (got == 0)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT,
                               "empty stream: the first message must name the memory");
    if (got == -2)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "malformed AppendRequest");
    if (got < 0)
        return rpc_call_status(c, RPC_CANCELLED, "stream ended");
    if ((code = check_name(c, "memory name", r->memory)) ||
        (code = rpc_call_allow(c, RPC_ROLE_WRITE, r->memory)))
        goto out;
    snprintf(name, sizeof name, "%s", r->memory);
    rpc_call_note(c, "memory=%s", name);
    if (rpc_memory_lock(c, name)) {
        code = rpc_call_status(c, RPC_CANCELLED, "cancelled while waiting for another append");
        goto out;
    }
    locked = 1;
    if ((rc = hsadb_memory_stat(rpc_call_db(c), name, &before)) ||
        (rc = hsadb_appender_open(rpc_call_db(c), name, &ap))) {
        code = rpc_call_fail(c, rc, name);
        goto out;
    }
    /* a cancel, the deadline or the end of the shutdown grace stops the write within one
     * block of work; the batches committed until then stay (reported below) */
    hsadb_appender_set_cancel(ap, rpc_call_cancel_fn, c);
    for (;;) {
        if (r->data.len && (rc = hsadb_appender_write(ap, r->data.data, r->data.len))) {
            code = rc == HSADB_ERR_CANCELLED ? rpc_call_stopped(c, "append stopped")
                                             : rpc_call_fail(c, rc, name);
            goto out;
        }
        protobuf_c_message_free_unpacked(&r->base, NULL);
        r = NULL;
        got = rpc_call_read(c, &hsadb__v1__append_request__descriptor, (ProtobufCMessage **)&r);
        if (got == 0)
            break;
        if (got == -2) {
            code = rpc_call_status(c, RPC_INVALID_ARGUMENT, "malformed AppendRequest");
            goto out;
        }
        if (got < 0) {
            code = rpc_call_status(c, RPC_CANCELLED, "stream did not finish: append rolled back");
            goto out;
        }
        if (r->memory[0] && strcmp(r->memory, name) != 0) {
            code = rpc_call_status(c, RPC_INVALID_ARGUMENT,
                                   "one Append stream writes one memory ('%s', not '%.140s')",
                                   name, r->memory);
            goto out;
        }
    }
    hsadb_append_result res;
    rc = hsadb_appender_commit(ap, &res);
    ap = NULL;
    if (rc) {
        code = rpc_call_fail(c, rc, name);
        goto out;
    }
    rpc_call_note(c, "bytes=%llu", (unsigned long long)res.bytes);
    Hsadb__V1__AppendResponse out = HSADB__V1__APPEND_RESPONSE__INIT;
    out.append_id = res.append_id;
    out.bytes = res.bytes;
    out.chunks = res.chunks;
    out.total_chunks = res.total_chunks;
    out.total_bytes = res.total_bytes;
    out.seconds = res.seconds;
    rpc_call_write(c, &out.base);
out:
    if (ap) {
        hsadb_append_result p;
        hsadb_appender_progress(ap, &p);
        hsadb_appender_abort(ap);
        /* what stays: the batches committed before the stop (we still hold the memory) */
        unsigned long long kept = 0;
        if (hsadb_memory_stat(rpc_call_db(c), name, &after) == 0)
            kept = after.n_bytes - before.n_bytes;
        rpc_call_note(c, "aborted_after=%llu kept=%llu", (unsigned long long)p.bytes, kept);
    }
    if (locked)
        rpc_memory_unlock(c, name);
    if (r)
        protobuf_c_message_free_unpacked(&r->base, NULL);
    return code;
}

/* ---- query (server stream) ------------------------------------------------------------- */

typedef struct piece_ctx {
    rpc_call *c;
    int       failed;
    uint64_t  pieces;
} piece_ctx;

static int on_piece(void *ctx, const char *bytes, size_t n)
{
    piece_ctx *p = ctx;
    if (rpc_call_cancelled(p->c)) {
        p->failed = 1;
        return 1;
    }
    Hsadb__V1__QueryResponse m;
    hsadb__v1__query_response__init(&m);
    m.kind_case = HSADB__V1__QUERY_RESPONSE__KIND_PIECE;
    m.piece.data = (uint8_t *)bytes;
    m.piece.len = n;
    if (rpc_call_write(p->c, &m.base)) {
        p->failed = 1;
        return 1;
    }
    p->pieces++;
    return 0;
}

static const char *stop_name(int s)
{
    return s == 0 ? "eos" : s == 1 ? "max_tokens" : s == 2 ? "cancelled" : "?";
}

/* What Query and Search check first: a valid name, read access, a bounded question. */
static int check_question(rpc_call *c, const char *memory, const char *question)
{
    int code;
    if ((code = check_name(c, "memory name", memory)) || (code = rpc_call_allow(c, RPC_ROLE_READ, memory)))
        return code;
    int max = rpc_call_options(c)->max_question_bytes;
    if (strlen(question) > (size_t)max)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "question longer than %d bytes "
                               "(--max-question-bytes)", max);
    return 0;
}

static int h_query(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__QueryRequest *r = (const void *)msg;
    int code;
    if ((code = check_question(c, r->memory, r->question)))
        return code;
    if (r->max_tokens < 0 || r->max_tokens > MAX_TOKENS)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "max_tokens must be in 0..%d", MAX_TOKENS);
    if (r->evidence_k < 0 || r->evidence_k > MAX_EVIDENCE_K)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "evidence_k must be in 0..%d",
                               MAX_EVIDENCE_K);
    if (!(r->temperature >= 0 && r->temperature <= 100) || !(r->top_p >= 0 && r->top_p <= 1))
        return rpc_call_status(c, RPC_INVALID_ARGUMENT,
                               "temperature must be in 0..100 and top_p in 0..1");
    piece_ctx pc = { c, 0, 0 };
    hsadb_query_options o = { .max_tokens = r->max_tokens, .temperature = r->temperature,
                              .top_p = r->top_p, .seed = r->seed, .evidence_k = r->evidence_k,
                              .on_piece = on_piece, .ctx = &pc,
                              .cancel = rpc_call_cancel_fn, .cancel_ctx = c };
    hsadb_answer *a = NULL;
    rpc_call_note(c, "memory=%s", r->memory);
    int rc = hsadb_query(rpc_call_db(c), r->memory, r->question, strlen(r->question), &o, &a);
    if (pc.failed || rc == HSADB_ERR_CANCELLED || (a && a->stop == 2)) {
        rpc_call_note(c, "pieces=%llu stopped=cancelled", (unsigned long long)pc.pieces);
        hsadb_answer_free(a);
        return rpc_call_stopped(c, "query stopped");
    }
    if (rc)
        return rpc_call_fail(c, rc, r->memory);
    rpc_call_note(c, "tokens=%d stop=%s", a->n_tokens, stop_name(a->stop));
    /* the evidence message */
    size_t total = 0;
    for (size_t i = 0; i < a->n_layers; i++)
        total += a->layers[i].n;
    Hsadb__V1__LayerEvidence *layers = calloc(a->n_layers + 1, sizeof *layers);
    Hsadb__V1__LayerEvidence **lp = calloc(a->n_layers + 1, sizeof *lp);
    Hsadb__V1__Chunk *chunks = calloc(total + 1, sizeof *chunks);
    Hsadb__V1__Chunk **cp = calloc(total + 1, sizeof *cp);
    if (!layers || !lp || !chunks || !cp) {
        code = rpc_call_status(c, RPC_RESOURCE_EXHAUSTED, "out of memory");
        goto out;
    }
    size_t k = 0;
    for (size_t i = 0; i < a->n_layers; i++) {
        hsadb__v1__layer_evidence__init(&layers[i]);
        layers[i].layer = a->layers[i].layer;
        layers[i].chunks = &cp[k];
        layers[i].n_chunks = a->layers[i].n;
        for (size_t j = 0; j < a->layers[i].n; j++, k++) {
            fill_chunk(&chunks[k], &a->layers[i].chunks[j]);
            cp[k] = &chunks[k];
        }
        lp[i] = &layers[i];
    }
    Hsadb__V1__QueryResult res = HSADB__V1__QUERY_RESULT__INIT;
    res.text.data = (uint8_t *)a->text;
    res.text.len = a->len;
    res.n_tokens = a->n_tokens;
    res.stop = (char *)stop_name(a->stop);
    res.prompt_seconds = a->prompt_seconds;
    res.generate_seconds = a->generate_seconds;
    res.n_layers = a->n_layers;
    res.layers = lp;
    Hsadb__V1__QueryResponse m;
    hsadb__v1__query_response__init(&m);
    m.kind_case = HSADB__V1__QUERY_RESPONSE__KIND_RESULT;
    m.result = &res;
    rpc_call_write(c, &m.base);
out:
    free(layers);
    free(lp);
    free(chunks);
    free(cp);
    hsadb_answer_free(a);
    return code;
}

static int h_search(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__SearchRequest *r = (const void *)msg;
    int code;
    if ((code = check_question(c, r->memory, r->question)))
        return code;
    if (r->k < 0 || r->k > MAX_SEARCH_K)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "k must be in 0..%d", MAX_SEARCH_K);
    if (r->context_bytes < -1)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "context_bytes must be -1 (none), 0 (256) or more");
    hsadb_search_options o = {
        .mode = (int)r->mode, .k = r->k ? r->k : 8, .bm25_k1 = r->bm25_k1, .bm25_b = r->bm25_b,
        .passage_bytes = r->passage_bytes,
        .context_bytes = r->context_bytes < 0 ? HSADB_SEARCH_NO_CONTEXT : r->context_bytes,
        .first_append = r->first_append, .last_append = r->last_append, .as_of_append = r->as_of_append,
        .time_from = r->time_from, .time_to = r->time_to,
        .cancel = rpc_call_cancel_fn, .cancel_ctx = c,
    };
    hsadb_passages *h = NULL;
    rpc_call_note(c, "memory=%s mode=%d", r->memory, (int)r->mode);
    int rc = hsadb_search_passages(rpc_call_db(c), r->memory, r->question, strlen(r->question), &o, &h);
    if (rc == HSADB_ERR_CANCELLED)
        return rpc_call_stopped(c, "search stopped");
    if (rc)
        return rpc_call_fail(c, rc, r->memory);
    Hsadb__V1__Chunk *chunks = calloc(h->n + 1, sizeof *chunks);
    Hsadb__V1__Chunk **cp = calloc(h->n + 1, sizeof *cp);
    if (!chunks || !cp) {
        code = rpc_call_status(c, RPC_RESOURCE_EXHAUSTED, "out of memory");
    } else {
        for (size_t i = 0; i < h->n; i++) {
            const hsadb_passage_hit *x = &h->hits[i];
            Hsadb__V1__Chunk *m = &chunks[i];
            hsadb__v1__chunk__init(m);
            m->chunk = x->start / 64;
            m->score = x->score;
            m->persisted = 1;
            m->append_id = x->append_id;
            m->byte_offset = x->start;
            m->time = x->time;
            m->text.data = (uint8_t *)x->text;
            m->text.len = x->text_len;
            m->end_offset = x->end;
            m->text_offset = x->text_start;
            m->lexical_score = x->lexical_score;
            m->model_score = x->model_score;
            m->lexical_rank = x->lexical_rank;
            m->model_rank = x->model_rank;
            m->last_append_id = x->last_append_id;
            cp[i] = m;
        }
        Hsadb__V1__SearchResponse out = HSADB__V1__SEARCH_RESPONSE__INIT;
        out.n_hits = h->n;
        out.hits = cp;
        rpc_call_write(c, &out.base);
    }
    free(chunks);
    free(cp);
    hsadb_passages_free(h);
    return code;
}

/* ---- snapshot and restore -------------------------------------------------------------- */

static int snapshot_path(rpc_call *c, const char *what, const char *name, char *out, size_t n)
{
    const char *root = rpc_call_options(c)->snapshot_dir;
    if (!root)
        return rpc_call_status(c, RPC_FAILED_PRECONDITION,
                               "snapshots are disabled: start the server with --snapshot-dir DIR");
    int code = check_name(c, what, name);
    if (code)
        return code;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return rpc_call_status(c, RPC_INVALID_ARGUMENT, "%s may not be '.' or '..'", what);
    snprintf(out, n, "%s/%s", root, name);
    return RPC_OK;
}

static uint64_t dir_bytes(const char *dir)
{
    uint64_t sum = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    char path[PATH_MAX + 300];
    while ((e = readdir(d))) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    }
    closedir(d);
    return sum;
}

static int h_snapshot(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__SnapshotRequest *r = (const void *)msg;
    const char *mem = r->memory[0] ? r->memory : NULL;
    char path[PATH_MAX];
    int code;
    if (mem && (code = check_name(c, "memory name", mem)))
        return code;
    if ((code = rpc_call_allow(c, RPC_ROLE_ADMIN, mem)) ||
        (code = snapshot_path(c, "snapshot name", r->name, path, sizeof path)))
        return code;
    hsadb_memory_info *st = NULL, one;
    size_t n = 0;
    int rc = mem ? hsadb_memory_stat(rpc_call_db(c), mem, &one)
                 : hsadb_memory_list(rpc_call_db(c), &st, &n);
    if (rc == 0)
        rc = hsadb_snapshot(rpc_call_db(c), mem, path);
    if (rc) {
        hsadb_free(st);
        return rpc_call_fail(c, rc, mem ? mem : "snapshot");
    }
    if (mem) {
        n = 1;
    }
    char **names = calloc(n + 1, sizeof *names);
    Hsadb__V1__SnapshotResponse out = HSADB__V1__SNAPSHOT_RESPONSE__INIT;
    if (names) {
        for (size_t i = 0; i < n; i++)
            names[i] = mem ? one.name : st[i].name;
        out.n_memories = n;
        out.memories = names;
    }
    out.path = path;
    out.bytes_on_disk = dir_bytes(path);
    rpc_call_write(c, &out.base);
    free(names);
    hsadb_free(st);
    return RPC_OK;
}

static int h_restore(rpc_call *c, const ProtobufCMessage *msg)
{
    const Hsadb__V1__RestoreRequest *r = (const void *)msg;
    char src[PATH_MAX], dst[PATH_MAX];
    int code;
    if ((code = rpc_call_allow(c, RPC_ROLE_ADMIN, NULL)) ||
        (code = snapshot_path(c, "snapshot", r->snapshot, src, sizeof src)) ||
        (code = snapshot_path(c, "dest", r->dest, dst, sizeof dst)))
        return code;
    struct stat sb;
    if (stat(src, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return rpc_call_status(c, RPC_NOT_FOUND, "no snapshot '%s'", r->snapshot);
    int rc = hsadb_restore(src, dst, rpc_call_options(c)->model);
    if (rc)
        return rpc_call_fail(c, rc, r->snapshot);
    hsadb_db *db = NULL;
    hsadb_memory_info *st = NULL;
    size_t n = 0;
    hsadb_db_options o = { .flags = HSADB_DB_RDONLY };
    rc = hsadb_db_open(dst, &o, &db);
    if (rc == 0)
        rc = hsadb_memory_list(db, &st, &n);
    if (rc) {
        code = rpc_call_fail(c, rc, r->dest);
        goto out;
    }
    Hsadb__V1__MemoryInfo *infos = calloc(n + 1, sizeof *infos);
    Hsadb__V1__MemoryInfo **ptrs = calloc(n + 1, sizeof *ptrs);
    Hsadb__V1__RestoreResponse out = HSADB__V1__RESTORE_RESPONSE__INIT;
    if (infos && ptrs) {
        for (size_t i = 0; i < n; i++) {
            fill_info(&infos[i], &st[i]);
            ptrs[i] = &infos[i];
        }
        out.n_memories = n;
        out.memories = ptrs;
    }
    out.path = dst;
    rpc_call_write(c, &out.base);
    free(infos);
    free(ptrs);
out:
    hsadb_free(st);
    hsadb_db_close(db);
    return code;
}

/* ---- health ---------------------------------------------------------------------------- */

static int health_status(rpc_call *c, const char *service)
{
    if (service[0] == 0 || strcmp(service, "hsadb.v1.Memory") == 0 ||
        strcmp(service, "grpc.health.v1.Health") == 0)
        return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    return -1;
}

static int h_health_check(rpc_call *c, const ProtobufCMessage *msg)
{
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)msg;
    int st = health_status(c, r->service);
    if (st < 0)
        return rpc_call_status(c, RPC_NOT_FOUND, "unknown service '%.140s'", r->service);
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = st;
    rpc_call_write(c, &out.base);
    return RPC_OK;
}

/* Watch sends the current status once and ends the stream (a simplification of the
 * standard, which keeps the stream open for changes; this server's status does not change). */
static int h_health_watch(rpc_call *c, const ProtobufCMessage *msg)
{
    const Grpc__Health__V1__HealthCheckRequest *r = (const void *)msg;
    int st = health_status(c, r->service);
    Grpc__Health__V1__HealthCheckResponse out = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    out.status = st < 0 ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN
                        : st;
    rpc_call_write(c, &out.base);
    return RPC_OK;
}

/* ---- dispatch tables (order and types must match the .proto) ----------------------------- */

#define M(name, kind, fn, in, out) \
    { name, kind, fn, &hsadb__v1__##in##__descriptor, &hsadb__v1__##out##__descriptor }

static const rpc_method memory_methods[] = {
    M("CreateMemory", RPC_UNARY, h_create, create_memory_request, memory_info),
    M("ListMemories", RPC_UNARY, h_list, list_memories_request, list_memories_response),
    M("GetMemory", RPC_UNARY, h_get, get_memory_request, memory_info),
    M("DeleteMemory", RPC_UNARY, h_delete, delete_memory_request, delete_memory_response),
    M("Append", RPC_CLIENT_STREAM, h_append, append_request, append_response),
    M("Query", RPC_SERVER_STREAM, h_query, query_request, query_response),
    M("Search", RPC_UNARY, h_search, search_request, search_response),
    M("Snapshot", RPC_UNARY, h_snapshot, snapshot_request, snapshot_response),
    M("Restore", RPC_UNARY, h_restore, restore_request, restore_response),
};

const rpc_service rpc_memory_service = {
    &hsadb__v1__memory__descriptor, memory_methods,
    sizeof memory_methods / sizeof memory_methods[0], 1,
};

static const rpc_method health_methods[] = {
    { "Check", RPC_UNARY, h_health_check, &grpc__health__v1__health_check_request__descriptor,
      &grpc__health__v1__health_check_response__descriptor },
    { "Watch", RPC_SERVER_STREAM, h_health_watch,
      &grpc__health__v1__health_check_request__descriptor,
      &grpc__health__v1__health_check_response__descriptor },
};

const rpc_service rpc_health_service = {
    &grpc__health__v1__health__descriptor, health_methods,
    sizeof health_methods / sizeof health_methods[0], 0,
};
