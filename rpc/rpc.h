/*
 * rpc.h — internals of the gRPC server (rpc/): the call primitives handlers use, the method
 * table, API keys and grants. Handlers run on worker threads and block; they never see gRPC
 * types, only protobuf-c messages and the rpc_call handle.
 */
#ifndef HSADB_RPC_H
#define HSADB_RPC_H

#include "server.h"

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* gRPC status codes (same values as grpc_status_code; handlers return them). */
enum rpc_status {
    RPC_OK = 0, RPC_CANCELLED = 1, RPC_UNKNOWN = 2, RPC_INVALID_ARGUMENT = 3,
    RPC_DEADLINE_EXCEEDED = 4, RPC_NOT_FOUND = 5, RPC_ALREADY_EXISTS = 6,
    RPC_PERMISSION_DENIED = 7, RPC_RESOURCE_EXHAUSTED = 8, RPC_FAILED_PRECONDITION = 9,
    RPC_ABORTED = 10, RPC_OUT_OF_RANGE = 11, RPC_UNIMPLEMENTED = 12, RPC_INTERNAL = 13,
    RPC_UNAVAILABLE = 14, RPC_DATA_LOSS = 15, RPC_UNAUTHENTICATED = 16,
};

/* ---- keys and grants (auth.c) ---------------------------------------------------------- */

enum rpc_role { RPC_ROLE_NONE = 0, RPC_ROLE_READ = 1, RPC_ROLE_WRITE = 2, RPC_ROLE_ADMIN = 3 };

typedef struct rpc_grant {
    int   role;       /* rpc_role: admin implies write implies read */
    char *pattern;    /* memory name or fnmatch(3) glob; "*" = every memory and the database */
} rpc_grant;

typedef struct rpc_key {
    char       hash[65];  /* hex SHA-256 of the key */
    size_t     n;
    rpc_grant *grants;
} rpc_key;

typedef struct rpc_keys {
    size_t   n;
    rpc_key *keys;
} rpc_keys;

/* Parse a keys file: one grant per line, `<hex sha256> <read|write|admin> <name-or-glob>`;
 * '#' starts a comment; blank lines are skipped. At most 1 MiB is read (any readable file:
 * a pipe works, /dev/zero is refused as too large); NUL bytes are refused. On error, err
 * names the line. */
int  rpc_keys_load(const char *path, rpc_keys **out, char *err, size_t errn);
void rpc_keys_free(rpc_keys *k);
/* The key whose hash matches the bearer token, or NULL. */
const rpc_key *rpc_keys_find(const rpc_keys *k, const char *token, size_t len);
/* 1 if key has a grant of at least `role` matching memory `name` (NULL: the whole database,
 * which only the pattern "*" covers). */
int rpc_key_allows(const rpc_key *key, int role, const char *name);

/* ---- calls (server.c) ------------------------------------------------------------------ */

typedef struct rpc_call rpc_call;

/* Read the next message of the request stream. Returns 1 with *out (free with
 * protobuf_c_message_free_unpacked(*out, NULL)), 0 at the end of the stream, -1 if the call
 * failed (cancelled, deadline, disconnected, message too large), -2 if the message is
 * malformed. */
int  rpc_call_read(rpc_call *c, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out);
/* Send one message (waits until it is handed to the transport). 0 ok, -1 the call failed. */
int  rpc_call_write(rpc_call *c, const ProtobufCMessage *m);
/* 1 once the client cancelled, the deadline passed or the server cancels all calls. */
int  rpc_call_cancelled(rpc_call *c);
/* rpc_call_cancelled as an hsadb_cancel_fn (ctx: the rpc_call), for long engine work. */
int  rpc_call_cancel_fn(void *call);
/* The status for a call whose work was cancelled: DEADLINE_EXCEEDED if its deadline has
 * passed, else CANCELLED; the detail is set to `what`. */
int  rpc_call_stopped(rpc_call *c, const char *what);
/* Set the status detail and return code (for `return rpc_call_status(c, ...)`). */
int  rpc_call_status(rpc_call *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Status for a failed hsadb call (hsadb_strerror + hsadb_last_error + context). */
int  rpc_call_fail(rpc_call *c, int rc, const char *ctx);
/* Authorisation: RPC_OK, or RPC_PERMISSION_DENIED with the detail set. name NULL: the
 * whole database. Always RPC_OK when the server runs without keys. */
int  rpc_call_allow(rpc_call *c, int role, const char *name);
/* 1 if the call may see memory `name` with role (no status set; for list filtering). */
int  rpc_call_may(rpc_call *c, int role, const char *name);
hsadb_db *rpc_call_db(rpc_call *c);
const hsadb_server_options *rpc_call_options(rpc_call *c);
/* Add "k=v" to the call's log line. */
void rpc_call_note(rpc_call *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Serialise appends (and deletes) per memory: waits while another call holds `name`.
 * 0 = held, -1 = the call was cancelled while waiting. */
int  rpc_memory_lock(rpc_call *c, const char *name);
void rpc_memory_unlock(rpc_call *c, const char *name);

/* ---- the plaintext listener (listener.c) ---------------------------------------------- */

typedef struct rpc_listener rpc_listener;
typedef struct grpc_server grpc_server;

/* Bind and listen on "HOST:PORT", "[V6]:PORT" or "unix:PATH" (a stale socket file at PATH
 * is replaced; anything else there is an error). *port: the bound TCP port (0 for unix).
 * At most max_connections connections are open at once (accepted but silent ones
 * included); a connection that sends nothing for handshake_seconds is closed. Errors: an
 * errno value or HSADB_ERR_INVALID, with err set. Nothing is accepted before _start. */
int  rpc_listener_open(const char *listen_addr, int max_connections, double handshake_seconds,
                       rpc_listener **out, int *port, char *err, size_t errn);
/* Start the accept thread: connections go to server (started) as insecure channels. */
int  rpc_listener_start(rpc_listener *l, grpc_server *server);
/* Stop accepting, close the listening sockets (and unlink the unix socket), drop the
 * connections not yet handed over, free l. Connections gRPC holds stay its own. NULL: no-op. */
void rpc_listener_close(rpc_listener *l);

/* ---- method tables (memory_service.c: hsadb.v1.Memory and grpc.health.v1.Health) ------- */

enum rpc_kind { RPC_UNARY = 0, RPC_CLIENT_STREAM = 1, RPC_SERVER_STREAM = 2 };

/* req: the decoded request (unary and server streaming), NULL for client streaming (the
 * handler reads the stream itself). Returns the call's status code. */
typedef int (*rpc_handler)(rpc_call *c, const ProtobufCMessage *req);

typedef struct rpc_method {
    const char                       *name;   /* must equal the descriptor's method name */
    int                               kind;   /* rpc_kind (the descriptor does not say) */
    rpc_handler                       fn;
    const ProtobufCMessageDescriptor *input;  /* must equal the descriptor's */
    const ProtobufCMessageDescriptor *output; /* must equal the descriptor's */
} rpc_method;

typedef struct rpc_service {
    const ProtobufCServiceDescriptor *desc;
    const rpc_method                 *methods;
    size_t                            n;
    int                               needs_key; /* calls need a valid key (when keys on) */
} rpc_service;

extern const rpc_service rpc_memory_service;
extern const rpc_service rpc_health_service;

/* Valid memory (and snapshot directory) name: 1..128 bytes of [A-Za-z0-9._-]. */

#endif /* HSADB_RPC_H */
