/*
 * server.h — the gRPC service of hsadb (hsadb.v1.Memory and grpc.health.v1.Health).
 *
 *   hsadb_server *s;
 *   hsadb_server_options o = { .listen = "127.0.0.1:0", .keys_file = "keys" };
 *   if (hsadb_server_start(db, &o, &s) == 0) {
 *       printf("port %d\n", hsadb_server_port(s));
 *       ... wait for SIGTERM ...
 *       hsadb_server_stop(s);           // graceful: in-flight calls finish or roll back
 *   }
 *
 * Contract:
 *   - The server serves one open database (borrowed: it must outlive the server) through
 *     include/hsadb.h only. Calls are handled by a pool of worker threads fed by one
 *     completion-queue thread, so a slow query does not block other calls (up to `workers`
 *     calls in progress at once; further calls wait for a free worker).
 *   - Queries and searches run concurrently; appends to one memory are serialised by the
 *     server (a second Append waits for the first rather than failing).
 *   - An Append whose client stream does not end cleanly (cancel, deadline, disconnect,
 *     shutdown) is aborted with hsadb_appender_abort: only batches already committed stay.
 *   - Errors follow the library's convention: 0, a negative HSADB_ERR_* code or an errno
 *     value; hsadb_server_last_error() holds a one-line detail of a start-up failure.
 *   - No exit(), no signal handling: the caller decides when to stop. Start raises the
 *     process's RLIMIT_NOFILE soft limit to its hard limit (descriptors are connections).
 *   - Plaintext addresses (TCP and unix:PATH) are accepted by the server's own thread
 *     (rpc/listener.c): at most max_connections are open, silent ones are closed after
 *     handshake_seconds, and running out of descriptors pauses accepting instead of ending
 *     it. With TLS, gRPC's own listener accepts: the connection limit does not apply there
 *     (gRPC 1.51 hands only insecure connections over), the handshake timeout does.
 *   - The protobuf-c service descriptors are checked against the server's dispatch table at
 *     start: a mismatch (the .proto changed, the table did not) fails start with
 *     HSADB_ERR_INVALID.
 */
#ifndef HSADB_RPC_SERVER_H
#define HSADB_RPC_SERVER_H

#include "hsadb.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hsadb_server hsadb_server;

typedef struct hsadb_server_options {
    const char *listen;           /* "ADDR:PORT"; NULL = "127.0.0.1:50051"; port 0 = any free */
    const char *keys_file;        /* API keys (docs/rpc.md); NULL = no authentication */
    int         insecure_no_auth; /* allow no keys_file on a non-loopback address */
    const char *tls_cert;         /* PEM certificate chain; with tls_key: serve TLS */
    const char *tls_key;          /* PEM private key */
    const char *snapshot_dir;     /* server-side root of Snapshot/Restore; NULL = disabled */
    const hsadb_model *model;     /* borrowed: Restore checks snapshots against it; may be NULL */
    int         workers;          /* worker threads; 0 = 16 */
    double      grace_seconds;    /* shutdown: time in-flight calls get before they are
                                     cancelled; 0 = 10 */
    int         log;              /* 1: one line per call on stderr */
    /* Limits (docs/rpc.md, "Limits"). 0 = the default in brackets. */
    int         max_connections;  /* client connections open at once [1024, lowered to fit
                                     the open-file limit]; further ones are refused */
    double      handshake_seconds;/* a new connection that sends nothing this long is
                                     closed [10] */
    double      first_message_seconds; /* a call whose first request message has not
                                     arrived this long after a worker took it ends with
                                     DEADLINE_EXCEEDED [10] */
    int         max_streams_per_key;   /* with keys: calls (streams) of one API key queued
                                     or running at once; more get RESOURCE_EXHAUSTED at
                                     once [workers / 2, at least 1] */
    int         max_message_bytes;     /* one request message; larger: RESOURCE_EXHAUSTED
                                     [4 MiB] */
    int         max_question_bytes;    /* Query and Search questions; longer:
                                     INVALID_ARGUMENT [65536] */
} hsadb_server_options;

/* Start serving db (borrowed). On success *out is running and listening. */
int  hsadb_server_start(hsadb_db *db, const hsadb_server_options *opts, hsadb_server **out);

/* The bound TCP port (the chosen one when the address asked for port 0); 0 for unix:PATH. */
int  hsadb_server_port(const hsadb_server *s);

/* Graceful stop: no new calls; in-flight calls get grace_seconds to finish, then they are
 * cancelled (an unfinished Append is rolled back). Frees s. NULL is a no-op. */
void hsadb_server_stop(hsadb_server *s);

/* Detail of the last hsadb_server_start failure in this thread ("" if none). */
const char *hsadb_server_last_error(void);

/* The keys-file form of an API key: hex SHA-256 of its bytes (out: 65 bytes; "" if libcrypto
 * fails, which matches no grant). */
void hsadb_server_hash_key(const char *key, char out[65]);

/* 1 if the host part of "ADDR:PORT" is a loopback address (127.x, ::1, localhost). */
int  hsadb_server_is_loopback(const char *listen);

#ifdef __cplusplus
}
#endif
#endif /* HSADB_RPC_SERVER_H */
