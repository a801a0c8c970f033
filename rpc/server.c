/*
 * server.c — gRPC plumbing of the hsadb server over the gRPC core C API (1.51):
 * one completion-queue thread, a worker pool running blocking handlers, the dispatch table
 * check, authentication, per-memory append locks and graceful shutdown.
 *
 * Flow of a call: a catch-all grpc_server_request_call is kept armed (RPC_ARMED of them);
 * when one completes the CQ thread re-arms and queues the call for a worker. The worker
 * starts RECV_CLOSE_ON_SERVER (its own tag: it fires on cancel/deadline/disconnect or after
 * the status is sent), looks the method up, checks the key, reads the request, runs the
 * handler, sends the status alone in its batch, waits for the close tag, and frees the call.
 * Every other batch of a call is issued by its worker, one at a time, and waited for on the
 * call's condition variable, which the CQ thread signals.
 */
#include "rpc.h"
#include "util.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define RPC_ARMED      8             /* request_call kept outstanding */
#define RPC_MAX_MSG    (4 << 20)     /* receive and send limit per message */
#define RPC_MAX_ROUTES 32
#define RPC_MAX_CONNECTIONS 1024     /* default of max_connections */
#define RPC_FD_RESERVE 64            /* descriptors kept for the store, gRPC and logs */
#define RPC_MAX_STREAMS_PER_CONNECTION 100   /* HTTP/2 concurrent streams of one connection */

enum tag_kind { TAG_NEW = 1, TAG_OP, TAG_CLOSE, TAG_SHUTDOWN };

typedef struct rpc_tag {
    int       kind;
    rpc_call *call;
} rpc_tag;

typedef struct route {
    char                  path[160];
    const rpc_method     *m;
    const rpc_service    *svc;
} route;

typedef struct mem_lock {
    char             name[129];
    int              users;   /* holder + waiters */
    int              held;
    struct mem_lock *next;
} mem_lock;

struct rpc_call {
    hsadb_server       *srv;
    grpc_call          *call;
    grpc_call_details   details;
    grpc_metadata_array md;
    rpc_tag             t_new, t_op, t_close;
    pthread_mutex_t     mu;
    pthread_cond_t      cv;
    int                 op_done, op_ok, closed, close_started;
    int                 cancelled;      /* written by RECV_CLOSE_ON_SERVER */
    int                 md_sent;
    int                 got_first;      /* a request message has arrived */
    int                 refused;        /* decided at dispatch: answer `code` at once */
    int                 code;           /* refused: its status; else a status forced by
                                           the server (first-message timeout) or 0 */
    long                key_slot;       /* index of the key counted in key_calls, or -1 */
    grpc_byte_buffer   *recv;
    const route        *r;
    const rpc_key      *key;
    char                detail[512];
    char                notes[256];
    double              t0;
    rpc_call           *next;
};

struct hsadb_server {
    hsadb_db             *db;
    hsadb_server_options  o;
    char                 *listen, *snapshot_dir;
    grpc_server          *server;
    rpc_listener         *listener;         /* plaintext: our own accept loop */
    grpc_completion_queue *cq;
    pthread_t             cq_thread;
    int                   cq_started;
    int                   port;
    rpc_keys             *keys;
    route                 routes[RPC_MAX_ROUTES];
    size_t                n_routes;
    /* worker pool */
    pthread_t            *workers;
    int                   n_workers;
    pthread_mutex_t       mu;
    pthread_cond_t        cv;
    rpc_call             *q_head, *q_tail;  /* calls waiting for a worker */
    rpc_call             *h_head, *h_tail;  /* health checks and calls refused at dispatch:
                                               their own worker, so that a pool busy with
                                               long calls still answers them */
    int                  *key_calls;        /* [keys->n] calls of each key queued or running */
    pthread_t             health_thread;
    int                   health_started;
    int                   stopping, shutdown_done;
    int                   cancelling;       /* the grace period is over: calls stop */
    int                   active;           /* calls queued or in a handler */
    rpc_tag               t_shutdown;
    /* per-memory locks */
    pthread_mutex_t       lock_mu;
    pthread_cond_t        lock_cv;
    mem_lock             *locks;
};

static _Thread_local char g_err[512];

const char *hsadb_server_last_error(void) { return g_err; }

static int set_err(int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return rc;
}

static double mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void hsadb_server_hash_key(const char *key, char out[65])
{
    uint8_t d[32];
    out[0] = 0;   /* libcrypto failed: an empty hash matches no grant */
    if (hsadb_sha256(key, strlen(key), d) == 0)
        hsadb_hex(d, 32, out);
}


int hsadb_server_is_loopback(const char *listen)
{
    if (!listen)
        return 1;
    if (strncmp(listen, "unix:", 5) == 0)
        return 1;
    char host[256];
    const char *end;
    if (listen[0] == '[') {
        end = strchr(listen, ']');
        if (!end)
            return 0;
        snprintf(host, sizeof host, "%.*s", (int)(end - listen - 1), listen + 1);
    } else {
        end = strrchr(listen, ':');
        size_t n = end ? (size_t)(end - listen) : strlen(listen);
        snprintf(host, sizeof host, "%.*s", (int)n, listen);
    }
    return strcmp(host, "localhost") == 0 || strncmp(host, "127.", 4) == 0 ||
           strcmp(host, "::1") == 0;
}

/* ---- call primitives ------------------------------------------------------------------- */

static int wait_op(rpc_call *c)
{
    pthread_mutex_lock(&c->mu);
    while (!c->op_done)
        pthread_cond_wait(&c->cv, &c->mu);
    c->op_done = 0;
    int ok = c->op_ok;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* wait_op for at most `seconds`: -1 if the batch has not completed by then. */
static int wait_op_for(rpc_call *c, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double t = ts.tv_nsec * 1e-9 + seconds;
    ts.tv_sec += (time_t)t;
    ts.tv_nsec = (long)((t - (double)(time_t)t) * 1e9);
    pthread_mutex_lock(&c->mu);
    int r = 0;
    while (!c->op_done && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&c->cv, &c->mu, &ts);
    int ok = -1;
    if (c->op_done) {
        c->op_done = 0;
        ok = c->op_ok;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

/* Start a batch on the main tag and wait for it. Adds SEND_INITIAL_METADATA the first time
 * a send happens. Returns 1 if the batch succeeded. */
static int run_batch(rpc_call *c, grpc_op *ops, size_t n, int is_send)
{
    grpc_op all[4];
    size_t k = 0;
    if (is_send && !c->md_sent) {
        memset(&all[k], 0, sizeof all[k]);
        all[k].op = GRPC_OP_SEND_INITIAL_METADATA;
        k++;
        c->md_sent = 1;
    }
    for (size_t i = 0; i < n; i++)
        all[k++] = ops[i];
    if (grpc_call_start_batch(c->call, all, k, &c->t_op, NULL) != GRPC_CALL_OK)
        return 0;
    return wait_op(c);
}

int rpc_call_read(rpc_call *c, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
    *out = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &c->recv;
    c->recv = NULL;
    if (c->got_first) {
        if (!run_batch(c, &op, 1, 0))
            return -1;
    } else {
        /* the first message: a client that opens a call and sends nothing must not hold
         * a worker longer than first_message_seconds */
        if (grpc_call_start_batch(c->call, &op, 1, &c->t_op, NULL) != GRPC_CALL_OK)
            return -1;
        int ok = wait_op_for(c, c->srv->o.first_message_seconds);
        if (ok < 0) {
            c->code = rpc_call_status(c, RPC_DEADLINE_EXCEEDED, "no request message within "
                                      "%g s (--first-message-timeout)",
                                      c->srv->o.first_message_seconds);
            grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, c->detail, NULL);
            wait_op(c);
            if (c->recv)
                grpc_byte_buffer_destroy(c->recv);
            c->recv = NULL;
            return -1;
        }
        if (!ok)
            return -1;
        c->got_first = 1;
    }
    if (!c->recv) {
        /* NULL is either a clean half-close or a failed call (cancel, deadline, too large):
         * only the first ends a stream that may be committed. */
        if (grpc_call_failed_before_recv_message(c->call) || rpc_call_cancelled(c))
            return -1;
        return 0;
    }
    grpc_byte_buffer_reader rd;
    int rc = -2;
    if (grpc_byte_buffer_reader_init(&rd, c->recv)) {
        grpc_slice all = grpc_byte_buffer_reader_readall(&rd);
        grpc_byte_buffer_reader_destroy(&rd);
        *out = protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(all),
                                         GRPC_SLICE_START_PTR(all));
        grpc_slice_unref(all);
        rc = *out ? 1 : -2;
    }
    grpc_byte_buffer_destroy(c->recv);
    c->recv = NULL;
    return rc;
}

int rpc_call_write(rpc_call *c, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    grpc_slice s = grpc_slice_malloc(n);
    protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    int ok = run_batch(c, &op, 1, 1);
    grpc_byte_buffer_destroy(bb);
    return ok ? 0 : -1;
}

static int deadline_passed(const rpc_call *c)
{
    gpr_timespec d = gpr_convert_clock_type(c->details.deadline, GPR_CLOCK_MONOTONIC);
    return gpr_time_cmp(d, gpr_now(GPR_CLOCK_MONOTONIC)) <= 0;
}

int rpc_call_cancelled(rpc_call *c)
{
    pthread_mutex_lock(&c->mu);
    int r = c->closed && c->cancelled;
    pthread_mutex_unlock(&c->mu);
    return r || __atomic_load_n(&c->srv->cancelling, __ATOMIC_ACQUIRE) || deadline_passed(c);
}

int rpc_call_cancel_fn(void *call) { return rpc_call_cancelled(call); }

int rpc_call_stopped(rpc_call *c, const char *what)
{
    if (deadline_passed(c))
        return rpc_call_status(c, RPC_DEADLINE_EXCEEDED, "deadline exceeded: %s", what);
    return rpc_call_status(c, RPC_CANCELLED, "cancelled: %s", what);
}

int rpc_call_status(rpc_call *c, int code, const char *fmt, ...)
{
    if (c->code)                    /* the server already ended the call: keep its reason */
        return code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->detail, sizeof c->detail, fmt, ap);
    va_end(ap);
    return code;
}

static int status_for(int rc)
{
    switch (rc) {
    case HSADB_OK:                 return RPC_OK;
    case HSADB_ERR_INVALID:        return RPC_INVALID_ARGUMENT;
    case HSADB_ERR_NOTFOUND:
    case ENOENT:
    case ENOTDIR:                  return RPC_NOT_FOUND;
    case HSADB_ERR_EXISTS:
    case EEXIST:
    case ENOTEMPTY:                return RPC_ALREADY_EXISTS;
    case HSADB_ERR_MODEL_MISMATCH:
    case HSADB_ERR_NO_MODEL:
    case HSADB_ERR_BAD_MODEL:
    case HSADB_ERR_VERSION:
    case HSADB_ERR_READONLY:       return RPC_FAILED_PRECONDITION;
    case HSADB_ERR_CORRUPT:        return RPC_DATA_LOSS;
    case HSADB_ERR_BUSY:
    case EBUSY:
    case EAGAIN:                   return RPC_UNAVAILABLE;
    case HSADB_ERR_CANCELLED:      return RPC_CANCELLED;
    case ENOSPC:
    case EDQUOT:
    case ENOMEM:                   return RPC_RESOURCE_EXHAUSTED;
    case EACCES:
    case EPERM:                    return RPC_FAILED_PRECONDITION;
    default:                       return RPC_INTERNAL;
    }
}

int rpc_call_fail(rpc_call *c, int rc, const char *ctx)
{
    const char *d = hsadb_last_error();
    if (d && d[0])
        return rpc_call_status(c, status_for(rc), "%s: %s (%s)", hsadb_strerror(rc), d, ctx);
    return rpc_call_status(c, status_for(rc), "%s (%s)", hsadb_strerror(rc), ctx);
}

int rpc_call_may(rpc_call *c, int role, const char *name)
{
    if (!c->srv->keys)
        return 1;
    return c->key && rpc_key_allows(c->key, role, name);
}

int rpc_call_allow(rpc_call *c, int role, const char *name)
{
    if (rpc_call_may(c, role, name))
        return RPC_OK;
    static const char *roles[] = { "none", "read", "write", "admin" };
    if (name)
        return rpc_call_status(c, RPC_PERMISSION_DENIED, "the key has no %s grant on memory '%s'",
                               roles[role], name);
    return rpc_call_status(c, RPC_PERMISSION_DENIED,
                           "the key has no %s grant on the whole database (pattern \"*\")",
                           roles[role]);
}

hsadb_db *rpc_call_db(rpc_call *c) { return c->srv->db; }
const hsadb_server_options *rpc_call_options(rpc_call *c) { return &c->srv->o; }

void rpc_call_note(rpc_call *c, const char *fmt, ...)
{
    size_t l = strlen(c->notes);
    if (l + 2 >= sizeof c->notes)
        return;
    c->notes[l++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->notes + l, sizeof c->notes - l, fmt, ap);
    va_end(ap);
}

/* ---- per-memory locks ------------------------------------------------------------------ */

int rpc_memory_lock(rpc_call *c, const char *name)
{
    hsadb_server *s = c->srv;
    pthread_mutex_lock(&s->lock_mu);
    mem_lock *l = s->locks;
    while (l && strcmp(l->name, name) != 0)
        l = l->next;
    if (!l) {
        l = calloc(1, sizeof *l);
        if (!l) {
            pthread_mutex_unlock(&s->lock_mu);
            return -1;
        }
        snprintf(l->name, sizeof l->name, "%s", name);
        l->next = s->locks;
        s->locks = l;
    }
    l->users++;
    int rc = 0;
    while (l->held) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&s->lock_cv, &s->lock_mu, &ts);
        if (l->held && rpc_call_cancelled(c)) {
            rc = -1;
            break;
        }
    }
    if (rc == 0)
        l->held = 1;
    else
        l->users--;
    pthread_mutex_unlock(&s->lock_mu);
    return rc;
}

void rpc_memory_unlock(rpc_call *c, const char *name)
{
    hsadb_server *s = c->srv;
    pthread_mutex_lock(&s->lock_mu);
    mem_lock **pp = &s->locks;
    while (*pp && strcmp((*pp)->name, name) != 0)
        pp = &(*pp)->next;
    mem_lock *l = *pp;
    if (l) {
        l->held = 0;
        if (--l->users == 0) {
            *pp = l->next;
            free(l);
        }
    }
    pthread_cond_broadcast(&s->lock_cv);
    pthread_mutex_unlock(&s->lock_mu);
}

/* ---- call life cycle ------------------------------------------------------------------- */

static rpc_call *call_new(hsadb_server *s)
{
    rpc_call *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->srv = s;
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cv, NULL);
    c->t_new = (rpc_tag){ TAG_NEW, c };
    c->t_op = (rpc_tag){ TAG_OP, c };
    c->t_close = (rpc_tag){ TAG_CLOSE, c };
    c->key_slot = -1;
    return c;
}

static void call_free(rpc_call *c)
{
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->call)
        grpc_call_unref(c->call);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    free(c);
}

/* Arm one catch-all request. Called on the CQ thread (and at start). */
static void arm_new(hsadb_server *s)
{
    rpc_call *c = call_new(s);
    if (!c)
        return;
    if (grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq,
                                 &c->t_new) != GRPC_CALL_OK)
        call_free(c);
}

static void send_status(rpc_call *c, int code)
{
    grpc_op op;
    memset(&op, 0, sizeof op);
    grpc_slice details = grpc_slice_from_copied_string(c->detail);
    op.op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    op.data.send_status_from_server.status = (grpc_status_code)code;
    op.data.send_status_from_server.status_details = code == RPC_OK ? NULL : &details;
    run_batch(c, &op, 1, 1);
    grpc_slice_unref(details);
}

static const char *status_name(int code)
{
    static const char *n[] = { "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED" };
    return code >= 0 && code <= 16 ? n[code] : "?";
}

static int authenticate(rpc_call *c)
{
    for (size_t i = 0; i < c->md.count; i++) {
        grpc_metadata *m = &c->md.metadata[i];
        if (grpc_slice_str_cmp(m->key, "authorization") != 0)
            continue;
        const char *v = (const char *)GRPC_SLICE_START_PTR(m->value);
        size_t n = GRPC_SLICE_LENGTH(m->value);
        if (n < 7 || strncasecmp(v, "bearer ", 7) != 0)
            return rpc_call_status(c, RPC_UNAUTHENTICATED,
                                   "authorization metadata must be 'Bearer <key>'");
        v += 7;
        n -= 7;
        while (n && *v == ' ') {
            v++;
            n--;
        }
        c->key = rpc_keys_find(c->srv->keys, v, n);
        if (!c->key)
            return rpc_call_status(c, RPC_UNAUTHENTICATED, "unknown API key");
        return RPC_OK;
    }
    return rpc_call_status(c, RPC_UNAUTHENTICATED,
                           "missing API key: send metadata 'authorization: Bearer <key>'");
}

static void handle(rpc_call *c)
{
    hsadb_server *s = c->srv;
    int code = RPC_OK;
    ProtobufCMessage *req = NULL;
    c->t0 = mono_now();

    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->t_close, NULL) == GRPC_CALL_OK)
        c->close_started = 1;

    if (c->refused) {               /* unknown method, bad key, key over its limit */
        code = c->code;
        goto finish;
    }
    if (c->r->m->kind != RPC_CLIENT_STREAM) {
        int got = rpc_call_read(c, c->r->m->input, &req);
        if (got == 0)
            code = rpc_call_status(c, RPC_INVALID_ARGUMENT, "missing request message");
        else if (got == -2)
            code = rpc_call_status(c, RPC_INVALID_ARGUMENT, "malformed %s message",
                                   c->r->m->input->name);
        else if (got < 0)
            code = rpc_call_status(c, RPC_CANCELLED, "call ended before the request arrived");
        if (got != 1)
            goto finish;
    }
    code = c->r->m->fn(c, req);
    if (c->code)                    /* the server ended the call (first-message timeout) */
        code = c->code;
finish:
    if (req)
        protobuf_c_message_free_unpacked(req, NULL);
    send_status(c, code);
    if (c->close_started) {
        pthread_mutex_lock(&c->mu);
        while (!c->closed)
            pthread_cond_wait(&c->cv, &c->mu);
        pthread_mutex_unlock(&c->mu);
    }
    if (s->o.log) {
        char *method = grpc_slice_to_c_string(c->details.method);
        fprintf(stderr, "hsadb: rpc: %s %s%s%s%s (%.3f s)%s\n", method,
                c->cancelled && !c->code ? "CANCELLED by client" : status_name(code),
                c->detail[0] && code ? ": " : "", code ? c->detail : "",
                c->notes, mono_now() - c->t0, "");
        gpr_free(method);
    }
    long slot = c->key_slot;
    call_free(c);
    pthread_mutex_lock(&s->mu);
    s->active--;
    if (slot >= 0)
        s->key_calls[slot]--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void *run_queue(hsadb_server *s, rpc_call **head, rpc_call **tail)
{
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!*head && !s->stopping)
            pthread_cond_wait(&s->cv, &s->mu);
        rpc_call *c = *head;
        if (!c) {
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        *head = c->next;
        if (!*head)
            *tail = NULL;
        pthread_mutex_unlock(&s->mu);
        handle(c);
    }
}

static void *worker_main(void *arg)
{
    hsadb_server *s = arg;
    return run_queue(s, &s->q_head, &s->q_tail);
}

static void *health_main(void *arg)
{
    hsadb_server *s = arg;
    return run_queue(s, &s->h_head, &s->h_tail);
}

static int is_health(const rpc_call *c)
{
    static const char prefix[] = "/grpc.health.v1.Health/";
    size_t n = sizeof prefix - 1;
    return GRPC_SLICE_LENGTH(c->details.method) > n &&
           memcmp(GRPC_SLICE_START_PTR(c->details.method), prefix, n) == 0;
}

/* On the CQ thread, before a call is queued: find its method, check its key and count it
 * against the key's limit (called with s->mu held). A call refused here never takes a
 * pool worker: the health worker answers it. Returns 1 if it goes to the health worker. */
static int admit(hsadb_server *s, rpc_call *c)
{
    for (size_t i = 0; i < s->n_routes; i++)
        if (grpc_slice_str_cmp(c->details.method, s->routes[i].path) == 0) {
            c->r = &s->routes[i];
            break;
        }
    if (!c->r) {
        c->refused = 1;
        c->code = rpc_call_status(c, RPC_UNIMPLEMENTED, "unknown method");
        return 1;
    }
    if (!s->keys || !c->r->svc->needs_key)
        return is_health(c);
    if ((c->code = authenticate(c)) != RPC_OK) {
        c->refused = 1;
        return 1;
    }
    long k = c->key - s->keys->keys;
    if (s->key_calls[k] >= s->o.max_streams_per_key) {
        c->refused = 1;
        c->code = rpc_call_status(c, RPC_RESOURCE_EXHAUSTED, "this API key has %d calls in "
                                  "progress or waiting, its limit (--max-streams-per-key)",
                                  s->key_calls[k]);
        return 1;
    }
    s->key_calls[k]++;
    c->key_slot = k;
    return 0;
}

static void *cq_main(void *arg)
{
    hsadb_server *s = arg;
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                                   NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        rpc_tag *t = ev.tag;
        rpc_call *c = t->call;
        switch (t->kind) {
        case TAG_NEW:
            if (!ev.success) {       /* server shutting down */
                call_free(c);
                break;
            }
            pthread_mutex_lock(&s->mu);
            int stopping = s->shutdown_done;
            rpc_call **head = &s->q_head, **tail = &s->q_tail;
            if (admit(s, c)) {
                head = &s->h_head;
                tail = &s->h_tail;
            }
            if (*tail)
                (*tail)->next = c;
            else
                *head = c;
            *tail = c;
            s->active++;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            if (!stopping)
                arm_new(s);
            break;
        case TAG_OP:
            pthread_mutex_lock(&c->mu);
            c->op_done = 1;
            c->op_ok = ev.success;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            break;
        case TAG_CLOSE:
            pthread_mutex_lock(&c->mu);
            c->closed = 1;
            pthread_cond_broadcast(&c->cv);
            pthread_mutex_unlock(&c->mu);
            pthread_mutex_lock(&s->lock_mu);      /* wake lock waiters to notice */
            pthread_cond_broadcast(&s->lock_cv);
            pthread_mutex_unlock(&s->lock_mu);
            break;
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&s->mu);
            s->shutdown_done = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->mu);
            break;
        }
    }
    return NULL;
}

/* ---- start and stop -------------------------------------------------------------------- */

static int check_service(hsadb_server *s, const rpc_service *svc)
{
    const ProtobufCServiceDescriptor *d = svc->desc;
    if (d->n_methods != svc->n)
        return set_err(HSADB_ERR_INVALID, "service %s: the descriptor has %u methods, the "
                       "dispatch table %zu", d->name, d->n_methods, svc->n);
    for (size_t i = 0; i < svc->n; i++) {
        const rpc_method *m = &svc->methods[i];
        const ProtobufCMethodDescriptor *md = &d->methods[i];
        if (strcmp(m->name, md->name) != 0 || m->input != md->input || m->output != md->output ||
            !m->fn)
            return set_err(HSADB_ERR_INVALID, "service %s: method %u is %s(%s) -> %s in the "
                           "descriptor but %s in the dispatch table", d->name, (unsigned)i,
                           md->name, md->input->name, md->output->name, m->name);
        if (s->n_routes == RPC_MAX_ROUTES)
            return set_err(HSADB_ERR_INVALID, "too many methods");
        route *r = &s->routes[s->n_routes++];
        snprintf(r->path, sizeof r->path, "/%s/%s", d->name, md->name);
        r->m = m;
        r->svc = svc;
    }
    return 0;
}

static char *read_file(const char *path, char *what)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        set_err(errno, "%s '%s': %s", what, path, strerror(errno));
        return NULL;
    }
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        if (got == 0)
            break;
        n += got;
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    else
        set_err(ENOMEM, "reading %s", path);
    return buf;
}

static void server_free(hsadb_server *s)
{
    if (!s)
        return;
    rpc_listener_close(s->listener);
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->cq)
        grpc_completion_queue_destroy(s->cq);
    rpc_keys_free(s->keys);
    while (s->locks) {
        mem_lock *n = s->locks->next;
        free(s->locks);
        s->locks = n;
    }
    free(s->workers);
    free(s->key_calls);
    free(s->listen);
    free(s->snapshot_dir);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->lock_mu);
    pthread_cond_destroy(&s->lock_cv);
    free(s);
}

/* Raise the soft open-file limit to the hard one; return the soft limit now in force. */
static long raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur < rl.rlim_max) {
        struct rlimit want = rl;
        want.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    return rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > (1 << 30) ? (1 << 30) : (long)rl.rlim_cur;
}

int hsadb_server_start(hsadb_db *db, const hsadb_server_options *opts, hsadb_server **out)
{
    *out = NULL;
    g_err[0] = 0;
    hsadb_server *s = calloc(1, sizeof *s);
    if (!s)
        return set_err(ENOMEM, "out of memory");
    int rc = 0;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_mutex_init(&s->lock_mu, NULL);
    pthread_cond_init(&s->lock_cv, NULL);
    s->db = db;
    if (opts)
        s->o = *opts;
    s->listen = strdup(s->o.listen ? s->o.listen : "127.0.0.1:50051");
    s->snapshot_dir = s->o.snapshot_dir ? strdup(s->o.snapshot_dir) : NULL;
    s->o.listen = s->listen;
    s->o.snapshot_dir = s->snapshot_dir;
    s->o.keys_file = NULL;
    if (s->o.workers <= 0)
        s->o.workers = 16;
    if (s->o.grace_seconds <= 0)
        s->o.grace_seconds = 10;
    if (s->o.handshake_seconds <= 0)
        s->o.handshake_seconds = 10;
    if (s->o.max_message_bytes <= 0)
        s->o.max_message_bytes = RPC_MAX_MSG;
    if (s->o.max_question_bytes <= 0)
        s->o.max_question_bytes = 65536;
    if (s->o.first_message_seconds <= 0)
        s->o.first_message_seconds = 10;
    if (s->o.max_streams_per_key <= 0)
        s->o.max_streams_per_key = s->o.workers / 2 > 0 ? s->o.workers / 2 : 1;
    long fd_limit = raise_fd_limit();
    if (s->o.max_connections <= 0)
        s->o.max_connections = RPC_MAX_CONNECTIONS;
    if (s->o.max_connections > fd_limit - RPC_FD_RESERVE) {
        if (fd_limit - RPC_FD_RESERVE < 1) {
            rc = set_err(EMFILE, "the open-file limit (%ld) leaves no descriptors for "
                         "connections: raise it (ulimit -n) above %d", fd_limit, RPC_FD_RESERVE);
            goto fail;
        }
        s->o.max_connections = (int)(fd_limit - RPC_FD_RESERVE);
    }
    if (!s->listen || (s->o.snapshot_dir && !s->snapshot_dir)) {
        rc = set_err(ENOMEM, "out of memory");
        goto fail;
    }
    if ((rc = check_service(s, &rpc_memory_service)) ||
        (rc = check_service(s, &rpc_health_service)))
        goto fail;
    if (opts && opts->keys_file) {
        char err[512];
        if ((rc = rpc_keys_load(opts->keys_file, &s->keys, err, sizeof err))) {
            set_err(rc, "%s", err);
            goto fail;
        }
        if (!(s->key_calls = calloc(s->keys->n, sizeof *s->key_calls))) {
            rc = set_err(ENOMEM, "out of memory");
            goto fail;
        }
    } else if (!hsadb_server_is_loopback(s->listen) && !s->o.insecure_no_auth) {
        rc = set_err(HSADB_ERR_INVALID, "refusing to serve %s without API keys: give --keys FILE "
                     "(or --insecure-no-auth to accept anyone)", s->listen);
        goto fail;
    }
    struct stat sb;
    if (s->snapshot_dir && (stat(s->snapshot_dir, &sb) != 0 || !S_ISDIR(sb.st_mode))) {
        rc = set_err(HSADB_ERR_NOTFOUND, "snapshot directory '%s' is not a directory",
                     s->snapshot_dir);
        goto fail;
    }
    if (!s->o.tls_cert != !s->o.tls_key) {
        rc = set_err(HSADB_ERR_INVALID, "TLS needs both a certificate and a key");
        goto fail;
    }

    if (!s->o.tls_cert) {
        char err[512];
        if ((rc = rpc_listener_open(s->listen, s->o.max_connections, s->o.handshake_seconds,
                                    &s->listener, &s->port, err, sizeof err))) {
            set_err(rc, "%s", err);
            goto fail;
        }
    }

    grpc_init();
    grpc_arg args[4] = {
        { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH,
          .value.integer = s->o.max_message_bytes },
        { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_SEND_MESSAGE_LENGTH,
          .value.integer = RPC_MAX_MSG },       /* replies are bounded (pages, k) */
        { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_MAX_CONCURRENT_STREAMS,
          .value.integer = RPC_MAX_STREAMS_PER_CONNECTION },
        { .type = GRPC_ARG_INTEGER, .key = GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
          .value.integer = (int)(s->o.handshake_seconds * 1000) },
    };
    grpc_channel_args ca = { 4, args };
    s->cq = grpc_completion_queue_create_for_next(NULL);
    s->server = grpc_server_create(&ca, NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    if (s->o.tls_cert) {            /* plaintext: the listener hands connections over */
        grpc_server_credentials *creds;
        char *cert = read_file(s->o.tls_cert, "TLS certificate");
        char *key = cert ? read_file(s->o.tls_key, "TLS key") : NULL;
        if (!cert || !key) {
            free(cert);
            rc = HSADB_ERR_NOTFOUND;
            grpc_server_destroy(s->server);
            s->server = NULL;
            goto fail_grpc;
        }
        grpc_ssl_pem_key_cert_pair pair = { key, cert };
        creds = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
        free(cert);
        free(key);
        s->port = creds ? grpc_server_add_http2_port(s->server, s->listen, creds) : 0;
        if (creds)
            grpc_server_credentials_release(creds);
        if (s->port <= 0) {
            rc = set_err(HSADB_ERR_INVALID, "cannot listen on %s%s", s->listen,
                         creds ? " (address in use or invalid)" : " (bad TLS certificate or key)");
            grpc_server_destroy(s->server);
            s->server = NULL;
            goto fail_grpc;
        }
    }
    grpc_server_start(s->server);
    if (s->listener && (rc = rpc_listener_start(s->listener, s->server))) {
        set_err(rc, "cannot start the listener thread");
        goto fail_started;
    }
    s->workers = calloc((size_t)s->o.workers, sizeof *s->workers);
    if (!s->workers) {
        rc = set_err(ENOMEM, "out of memory");
        goto fail_started;
    }
    for (int i = 0; i < s->o.workers; i++) {
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
            rc = set_err(EAGAIN, "cannot start worker threads");
            goto fail_started;
        }
        s->n_workers++;
    }
    if (pthread_create(&s->health_thread, NULL, health_main, s) != 0) {
        rc = set_err(EAGAIN, "cannot start the health-check thread");
        goto fail_started;
    }
    s->health_started = 1;
    if (pthread_create(&s->cq_thread, NULL, cq_main, s) != 0) {
        rc = set_err(EAGAIN, "cannot start the completion-queue thread");
        goto fail_started;
    }
    s->cq_started = 1;
    for (int i = 0; i < RPC_ARMED; i++)
        arm_new(s);
    *out = s;
    return 0;

fail_started:
    hsadb_server_stop(s);
    return rc;
fail_grpc:
    grpc_completion_queue_shutdown(s->cq);
    while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
           GRPC_QUEUE_SHUTDOWN)
        ;
    server_free(s);
    grpc_shutdown();
    return rc;
fail:
    server_free(s);
    return rc;
}

int hsadb_server_port(const hsadb_server *s) { return s ? s->port : 0; }

void hsadb_server_stop(hsadb_server *s)
{
    if (!s)
        return;
    rpc_listener_close(s->listener);       /* no new connections */
    s->listener = NULL;
    s->t_shutdown = (rpc_tag){ TAG_SHUTDOWN, NULL };
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
    if (!s->cq_started) {
        grpc_server_cancel_all_calls(s->server);
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME),
                                          NULL).type != GRPC_OP_COMPLETE)
            ;
        s->shutdown_done = 1;
    }
    /* Give the calls in our handlers the grace period, then cancel what is left. (gRPC's
     * shutdown tag can lag seconds behind the last call's end while client connections
     * linger, so waiting for our own calls is what decides.) */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += (time_t)s->o.grace_seconds;
    pthread_mutex_lock(&s->mu);
    int r = 0;
    while (!s->shutdown_done && s->active > 0 && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&s->cv, &s->mu, &ts);
    int done = s->shutdown_done;
    pthread_mutex_unlock(&s->mu);
    if (!done)
        __atomic_store_n(&s->cancelling, 1, __ATOMIC_RELEASE);
    if (!done) {
        grpc_server_cancel_all_calls(s->server);
        pthread_mutex_lock(&s->mu);
        while (!s->shutdown_done)
            pthread_cond_wait(&s->cv, &s->mu);
        pthread_mutex_unlock(&s->mu);
    }
    /* Every call has ended: stop the workers, then the queue. */
    pthread_mutex_lock(&s->mu);
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    for (int i = 0; i < s->n_workers; i++)
        pthread_join(s->workers[i], NULL);
    if (s->health_started)
        pthread_join(s->health_thread, NULL);
    grpc_completion_queue_shutdown(s->cq);
    if (s->cq_started)
        pthread_join(s->cq_thread, NULL);
    else
        while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
               GRPC_QUEUE_SHUTDOWN)
            ;
    server_free(s);
    grpc_shutdown();
}
