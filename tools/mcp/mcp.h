/*
 * mcp.h — hsadb as a Model Context Protocol server over stdio (docs/mcp.md).
 *
 *   hsadb_mcp_options o = { .memories = names, .n_memories = 1, .read_only = 1 };
 *   int rc = hsadb_mcp_serve(db, &o, stdin, stdout);   // returns at end of input
 *
 * Contract:
 *   - Transport: MCP's stdio transport. One JSON-RPC 2.0 message per line on `in`, one per
 *     line on `out` (compact JSON, flushed after each). Nothing else is written to `out`;
 *     diagnostics go to opts->log when set.
 *   - A reader thread reads `in`'s file descriptor directly (not through stdio) and queues up
 *     to 64 messages; requests are handled one at a time, in the order they arrive, on the
 *     calling thread (the only one that touches db). A notifications/cancelled naming the
 *     request in progress stops a recall's generation at the next token and suppresses that
 *     request's response (a request still queued is not cancelled). Methods: initialize, ping,
 *     tools/list, tools/call, resources/list, resources/templates/list, resources/read;
 *     notifications (notifications/initialized, notifications/cancelled, others) are
 *     accepted and never answered. Batches (JSON arrays) are refused: MCP 2025-06-18 dropped
 *     them.
 *   - Protocol errors are JSON-RPC errors: -32700 (line is not JSON), -32600 (not a valid
 *     request, a line over HSADB_MCP_MAX_LINE, a request before initialize), -32601 (unknown
 *     method), -32602 (bad params, unknown tool), -32002 (unknown resource), -32603
 *     (internal). A tool that fails (bad arguments, unknown memory, no grant, engine error)
 *     answers a result with isError: true and the reason in its text. Bad input loses nothing:
 *     a failed `remember` keeps no byte of its text.
 *   - Tools: remember (append text; creates the memory when absent), recall (query: answer +
 *     evidence with provenance), search, list_memories, and forget — which deletes a WHOLE
 *     memory and is offered only with allow_forget (the engine cannot remove one append yet).
 *     Resources: hsadb://memory/NAME, the memory's stream as text.
 *   - Scope: only the memories named in `memories` (all when n_memories is 0) are visible;
 *     read_only hides and refuses remember and forget; `allow` (when set) is asked for every
 *     memory touched, with the role the gRPC service would need (read; write for remember;
 *     admin for forget).
 *   - Uses include/hsadb.h only; db is borrowed and must stay open while the server runs.
 *     Never exits, never touches signals.
 */
#ifndef HSADB_MCP_H
#define HSADB_MCP_H

#include "hsadb.h"

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define HSADB_MCP_MAX_LINE  ((size_t)16 << 20)  /* longest message accepted, bytes */
#define HSADB_MCP_MAX_TEXT  ((size_t)4 << 20)   /* longest `remember` text, bytes */
#define HSADB_MCP_MAX_READ  ((size_t)1 << 20)   /* resources/read returns the last this many */

/* The role a tool needs on a memory, as in the gRPC keys file: admin implies write implies
 * read. */
enum hsadb_mcp_role { HSADB_MCP_READ = 1, HSADB_MCP_WRITE = 2, HSADB_MCP_ADMIN = 3 };

/* Grant check: nonzero if the caller may act with `role` on memory `name`. */
typedef int (*hsadb_mcp_allow_fn)(void *ctx, int role, const char *name);

typedef struct hsadb_mcp_options {
    const char *const *memories; /* borrowed; the memories this server may see */
    size_t      n_memories;      /* 0 = every memory of the database */
    int         read_only;       /* no remember, no forget */
    int         allow_forget;    /* offer `forget` (deletes a whole memory) */
    hsadb_mcp_allow_fn allow;    /* NULL = every role on every memory in scope */
    void       *allow_ctx;
    FILE       *log;             /* one line per tool call and per protocol error; NULL = none */
} hsadb_mcp_options;

/* Serve MCP on in/out (both borrowed) until end of input; every message read before the end
 * is handled. Returns 0 at end of input, or the errno of a failed read or write (EPIPE when
 * the client went away; ENOMEM), after joining the reader thread. opts may be NULL
 * (everything in scope, writable, no forget, no log). */
int hsadb_mcp_serve(hsadb_db *db, const hsadb_mcp_options *opts, FILE *in, FILE *out);

#ifdef __cplusplus
}
#endif
#endif /* HSADB_MCP_H */
