/*
 * hsadb.c — the hsadb command-line tool.
 *
 *   hsadb [global options] <command> [args]
 *
 * Built on the public contract include/hsadb.h alone. The full reference, with exit codes, is
 * docs/cli.md; `hsadb --help` and `hsadb <command> --help` print the same in short.
 *
 * Conventions: the command's result goes to stdout (one JSON object with --json), notes,
 * progress and errors to stderr. An error is one line
 *     hsadb: <command>: <hsadb_strerror>: <detail>
 * and the exit status names its class (enum cli_exit). The model is loaded only by commands
 * that need it (create, append, query, search, and restore's model check).
 */
#include "cli.h"
#include "hsadb.h"
#include "server.h"
#include "mcp.h"
#include "rpc.h"   /* the keys file of `hsadb serve`, reused by `hsadb mcp` */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <pthread.h>
#include <unistd.h>

/* ---- exit codes (docs/cli.md) ---------------------------------------------------------- */

enum cli_exit {
    EXIT_OK          = 0,
    EXIT_FAIL        = 1,   /* other failure */
    EXIT_USAGE       = 2,   /* usage error, invalid argument or memory name */
    EXIT_NOTFOUND    = 3,   /* memory, database, snapshot or input file not found/unreadable */
    EXIT_EXISTS      = 4,   /* memory already exists, destination not empty */
    EXIT_MODEL       = 5,   /* model mismatch, bad or missing model */
    EXIT_CORRUPT     = 6,   /* corrupt store or unsupported format version */
    EXIT_IO          = 7,   /* disk full or I/O error */
    EXIT_BUSY        = 8,   /* memory busy (another appender) */
    EXIT_INTERRUPTED = 130, /* interrupted (SIGINT; SIGTERM gives 143) */
};

#define READ_PIECE  ((size_t)1 << 20)   /* bytes read from the input at a time */
#define WRITE_SLICE ((size_t)64 << 10)  /* bytes handed to the appender at a time */

static const char *exit_code_help =
    "Exit status:\n"
    "  0    success\n"
    "  1    other failure\n"
    "  2    usage error, invalid argument or memory name\n"
    "  3    not found: memory, database directory, snapshot, or input file (unreadable)\n"
    "  4    already exists: memory name taken, destination directory not empty\n"
    "  5    model mismatch, or model missing/malformed\n"
    "  6    corrupt store or unsupported format version\n"
    "  7    disk full or I/O error\n"
    "  8    busy: another process is appending to the memory\n"
    "  130  interrupted (SIGINT; 143 for SIGTERM)\n";

/* ---- options --------------------------------------------------------------------------- */

enum opt_id {
    OPT_DB = 1, OPT_MODEL, OPT_DEVICE, OPT_THREADS, OPT_JSON, OPT_NOSYNC, OPT_QUIET, OPT_HELP,
    OPT_VERSION,
    OPT_PROGRESS, OPT_MAX_TOKENS, OPT_TEMPERATURE, OPT_TOP_P, OPT_SEED, OPT_EVIDENCE,
    OPT_NO_EVIDENCE, OPT_K, OPT_OFFSET, OPT_LENGTH, OPT_YES, OPT_MEMORY, OPT_NO_CHECK,
    OPT_LISTEN, OPT_KEYS, OPT_INSECURE_NO_AUTH, OPT_TLS_CERT, OPT_TLS_KEY, OPT_SNAPSHOT_DIR,
    OPT_WORKERS, OPT_HASH_KEY,
    OPT_READ_ONLY, OPT_ALLOW_FORGET, OPT_KEY, OPT_META,
    OPT_APPEND_ID,
    OPT_MAX_CONNECTIONS, OPT_HANDSHAKE_TIMEOUT, OPT_FIRST_MESSAGE_TIMEOUT,
    OPT_MAX_STREAMS_PER_KEY, OPT_MAX_MESSAGE_BYTES, OPT_MAX_QUESTION_BYTES, OPT_GRACE,
    /* search and reindex (the lexical index) */
    OPT_MODE, OPT_CONTEXT, OPT_PASSAGE, OPT_K1, OPT_B, OPT_FIRST_APPEND, OPT_LAST_APPEND, OPT_AS_OF,
    OPT_SINCE, OPT_UNTIL, OPT_CHECK, OPT_NO_LEXICAL,
};

typedef struct optdef {
    const char *lng;     /* --lng */
    char        shrt;    /* -s, or 0 */
    int         has_arg;
    int         id;
} optdef;

static const optdef global_opts[] = {
    { "db", 0, 1, OPT_DB },           { "model", 0, 1, OPT_MODEL },
    { "device", 0, 1, OPT_DEVICE },   { "threads", 0, 1, OPT_THREADS },
    { "json", 0, 0, OPT_JSON },       { "nosync", 0, 0, OPT_NOSYNC },
    { "quiet", 'q', 0, OPT_QUIET },   { "help", 'h', 0, OPT_HELP },
    { "version", 'V', 0, OPT_VERSION }, { "no-lexical-index", 0, 0, OPT_NO_LEXICAL },
    { NULL, 0, 0, 0 },
};

typedef struct cli cli;

typedef struct command {
    const char   *name;
    int         (*run)(cli *c);
    int           min_args, max_args;   /* positional arguments; -1 = any number */
    const optdef *opts;
    const char   *synopsis;
    const char   *summary;
    const char   *help;
} command;

struct cli {
    const command *cmd;
    const char    *db, *model;
    int            model_explicit;  /* --model or HSADB_MODEL given */
    int            device, threads;
    int            json, nosync, quiet, help, version;
    /* command options */
    int            progress;
    int            max_tokens;
    double         temperature, top_p;
    uint64_t       seed;
    int            evidence_k, no_evidence;
    int            k;
    uint64_t       offset, length;
    int            have_length;
    int            yes;
    const char    *memory;
    int            no_check;
    const char    *listen, *keys, *tls_cert, *tls_key, *snapshot_dir, *hash_key;
    int            insecure_no_auth, workers;
    const char   **memories;        /* every --memory, in order (hsadb mcp) */
    int            n_memories;
    int            read_only, allow_forget;
    const char    *key;
    hsadb_meta_pair metas[HSADB_META_MAX_PAIRS];   /* append --meta KEY=VALUE */
    int            n_metas;
    const char    *append_id;       /* append --id */
    int            max_connections, max_streams_per_key, max_message_bytes, max_question_bytes;
    double         handshake_timeout, first_message_timeout, grace;
    /* search and reindex */
    int            mode, context, passage, check, b_set, no_lexical;
    double         k1, b;
    uint64_t       first_append, last_append, as_of;
    int64_t        since, until;
    /* positional arguments */
    char         **args;
    int            nargs;
};

/* ---- errors ---------------------------------------------------------------------------- */

static int exit_code_for(int rc)
{
    switch (rc) {
    case HSADB_OK:                 return EXIT_OK;
    case HSADB_ERR_INVALID:        return EXIT_USAGE;
    case HSADB_ERR_NOTFOUND:
    case ENOENT:
    case ENOTDIR:                  return EXIT_NOTFOUND;
    case HSADB_ERR_EXISTS:
    case EEXIST:
    case ENOTEMPTY:                return EXIT_EXISTS;
    case HSADB_ERR_MODEL_MISMATCH:
    case HSADB_ERR_BAD_MODEL:
    case HSADB_ERR_NO_MODEL:       return EXIT_MODEL;
    case HSADB_ERR_CORRUPT:
    case HSADB_ERR_VERSION:        return EXIT_CORRUPT;
    case ENOSPC:
    case EDQUOT:
    case EFBIG:
    case EIO:
    case EROFS:                    return EXIT_IO;
    case HSADB_ERR_BUSY:
    case EBUSY:
    case EAGAIN:                   return EXIT_BUSY;
    case HSADB_ERR_CANCELLED:      return EXIT_INTERRUPTED;
    default:                       return EXIT_FAIL;
    }
}

static const char *g_cmdname = "hsadb";

/* Report a failed library call: `hsadb: <cmd>: <strerror(rc)>: <detail>` where detail is
 * hsadb_last_error(), followed by the CLI's context in parentheses when the library's detail
 * does not already name it (or alone when the library gave none). Call it right after the
 * failing call, before any other hsadb call. Returns the exit code for rc. */
/* Writes one error line: `text` with control bytes escaped (a path or name holding a
 * newline cannot split the line or forge another), then a newline. */
static void put_line(const char *text)
{
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '\n')
            fputs("\\n", stderr);
        else if (*p == '\t')
            fputs("\\t", stderr);
        else if (*p == '\r')
            fputs("\\r", stderr);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(stderr, "\\x%02x", *p);
        else
            fputc(*p, stderr);
    }
    fputc('\n', stderr);
}

static int fail(int rc, const char *ctxfmt, ...)
{
    char line[2048];
    char detail[1024], ctx[512] = "";
    snprintf(detail, sizeof detail, "%s", hsadb_last_error());
    if (ctxfmt) {
        va_list ap;
        va_start(ap, ctxfmt);
        vsnprintf(ctx, sizeof ctx, ctxfmt, ap);
        va_end(ap);
    }
    const char *name = hsadb_strerror(rc);
    if (!detail[0])
        snprintf(line, sizeof line, "hsadb: %s: %s: %s", g_cmdname, name, ctx[0] ? ctx : "(no detail)");
    else if (ctx[0] && !strstr(detail, ctx))
        snprintf(line, sizeof line, "hsadb: %s: %s: %s (%s)", g_cmdname, name, detail, ctx);
    else
        snprintf(line, sizeof line, "hsadb: %s: %s: %s", g_cmdname, name, detail);
    put_line(line);
    return exit_code_for(rc);
}

/* A failure found by the CLI itself (not a library call): rc names the class. */
static int fail_cli(int rc, const char *fmt, ...)
{
    char msg[1024], line[1400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(line, sizeof line, "hsadb: %s: %s: %s", g_cmdname, hsadb_strerror(rc), msg);
    put_line(line);
    return exit_code_for(rc);
}

static int usage_error(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char line[1400];
    if (strcmp(g_cmdname, "hsadb") == 0)
        snprintf(line, sizeof line, "hsadb: usage error: %s (see hsadb --help)", msg);
    else
        snprintf(line, sizeof line, "hsadb: %s: usage error: %s (see hsadb %s --help)", g_cmdname, msg,
                 g_cmdname);
    put_line(line);
    return EXIT_USAGE;
}

static void note(const cli *c, const char *fmt, ...)
{
    if (c->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    flockfile(stderr);  /* one line, even beside serve's per-call log lines */
    fputs("hsadb: note: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    funlockfile(stderr);
    va_end(ap);
}

/* ---- signals --------------------------------------------------------------------------- */

static volatile sig_atomic_t g_signal;

static void on_signal(int sig)
{
    g_signal = sig;
    signal(sig, SIG_DFL);  /* a second ^C ends the process at once */
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  /* no SA_RESTART: a blocking read returns EINTR */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static int interrupted_exit(void) { return 128 + (g_signal ? (int)g_signal : SIGINT); }

/* serve: SIGINT/SIGTERM wake the main thread through a pipe. */
static int g_serve_pipe[2] = { -1, -1 };

static void on_serve_signal(int sig)
{
    int e = errno;
    g_signal = sig;
    unsigned char b = (unsigned char)sig;
    ssize_t w = write(g_serve_pipe[1], &b, 1);
    (void)w;
    errno = e;
}

/* ---- small helpers --------------------------------------------------------------------- */


static int check_name(const char *s)
{
    if (hsadb_memory_name_valid(s))
        return 0;
    fprintf(stderr, "hsadb: %s: %s: memory name '", g_cmdname, hsadb_strerror(HSADB_ERR_INVALID));
    print_escaped(stderr, s, strlen(s));
    fputs("' must be 1..128 bytes of [A-Za-z0-9._-]\n", stderr);
    return EXIT_USAGE;
}

static int parse_u64(const char *opt, const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-')
        return usage_error("%s expects a non-negative integer, got '%s'", opt, s);
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v > max)
        return usage_error("%s expects an integer in 0..%" PRIu64 ", got '%s'", opt, max, s);
    *out = v;
    return 0;
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    uint64_t v;
    int rc = parse_u64(opt, s, (uint64_t)hi, &v);
    if (rc)
        return rc;
    if ((int)v < lo)
        return usage_error("%s expects an integer in %d..%d, got '%s'", opt, lo, hi, s);
    *out = (int)v;
    return 0;
}

static int parse_double(const char *opt, const char *s, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= lo && v <= hi))
        return usage_error("%s expects a number in %g..%g, got '%s'", opt, lo, hi, s);
    *out = v;
    return 0;
}

static char *join_args(char **a, int n)
{
    size_t len = 1;
    for (int i = 0; i < n; i++)
        len += strlen(a[i]) + 1;
    char *s = malloc(len), *p = s;
    if (!s)
        return NULL;
    for (int i = 0; i < n; i++) {
        if (i)
            *p++ = ' ';
        size_t l = strlen(a[i]);
        memcpy(p, a[i], l);
        p += l;
    }
    *p = 0;
    return s;
}

static const char *stop_name(int s)
{
    return s == 0 ? "eos" : s == 1 ? "max_tokens" : s == 2 ? "cancelled" : "?";
}

/* Sum of the sizes of the regular files in dir (not recursive). */
static uint64_t dir_bytes(const char *dir)
{
    uint64_t sum = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *e;
    char path[PATH_MAX];
    while ((e = readdir(d))) {
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
            sum += (uint64_t)st.st_size;
    }
    closedir(d);
    return sum;
}

/* ---- opening the model and the database ------------------------------------------------ */

static int load_model(cli *c, hsadb_model **m)
{
    int rc = hsadb_model_open(c->model, m);
    if (rc)
        return fail(rc, "model directory '%s'", c->model);
    return 0;
}

enum { DB_READ = 0, DB_WRITE = 1, DB_CREATE = 2 };

/* The db options that documented environment variables set (docs/cli.md, docs/gpu-engine.md):
 * HSADB_GPU_KV_CHUNKS=N, HSADB_CUDA_GEMM=bf16|tf32|fp32,
 * HSADB_CUDA_ATTN=tile, HSADB_CUDA_GRAPHS=0; and HSADB_APPEND_TRACE=1 (HSADB_DB_TRACE_APPEND).
 * The library itself reads no environment. */
static int env_db_options(hsadb_db_options *o)
{
    const char *trace = getenv("HSADB_APPEND_TRACE");
    if (trace && strcmp(trace, "1") == 0)
        o->flags |= HSADB_DB_TRACE_APPEND;
    const char *kv = getenv("HSADB_GPU_KV_CHUNKS"), *gemm = getenv("HSADB_CUDA_GEMM");
    const char *attn = getenv("HSADB_CUDA_ATTN"), *graphs = getenv("HSADB_CUDA_GRAPHS");
    if (kv && *kv) {
        char *end;
        long long n = strtoll(kv, &end, 10);
        if (*end || n < 1)
            return usage_error("HSADB_GPU_KV_CHUNKS='%s': not a positive number of chunks", kv);
        o->gpu_kv_chunks = n;
    }
    if (gemm && *gemm) {
        if (strcmp(gemm, "bf16") == 0)
            o->gpu_gemm = HSADB_GPU_GEMM_BF16;
        else if (strcmp(gemm, "tf32") == 0)
            o->gpu_gemm = HSADB_GPU_GEMM_TF32;
        else if (strcmp(gemm, "fp32") == 0)
            o->gpu_gemm = HSADB_GPU_GEMM_FP32;
        else
            return usage_error("HSADB_CUDA_GEMM='%s': expected bf16, tf32 or fp32", gemm);
    }
    if (attn && *attn) {
        if (strcmp(attn, "tile") != 0)
            return usage_error("HSADB_CUDA_ATTN='%s': expected tile", attn);
        o->gpu_flags |= HSADB_GPU_TILE_ATTENTION;
    }
    if (graphs && *graphs) {
        if (strcmp(graphs, "0") != 0 && strcmp(graphs, "1") != 0)
            return usage_error("HSADB_CUDA_GRAPHS='%s': expected 0 or 1", graphs);
        if (*graphs == '0')
            o->gpu_flags |= HSADB_GPU_NO_GRAPHS;
    }
    return 0;
}

static int open_db(cli *c, const hsadb_model *m, int mode, hsadb_db **db)
{
    hsadb_db_options o;
    memset(&o, 0, sizeof o);
    if (mode == DB_READ)
        o.flags = HSADB_DB_RDONLY;
    else
        o.flags = (mode == DB_CREATE ? HSADB_DB_CREATE : 0) | (c->nosync ? HSADB_DB_NOSYNC : 0) |
                  (c->no_lexical ? HSADB_DB_NO_LEXICAL : 0);
    o.model = m;
    o.device = c->device;
    o.threads = c->threads;
    int rc = env_db_options(&o);
    if (rc)
        return rc;
    rc = hsadb_db_open(c->db, &o, db);
    if (rc)
        return fail(rc, "database '%s'", c->db);
    return 0;
}

/* The prelude of the commands on one existing memory: a valid name, the database opened in
 * `mode`, the memory's info (a one-line error and its exit code when it is missing). On
 * failure *db is closed and NULL. */
static int open_memory(cli *c, const char *name, int mode, hsadb_db **db, hsadb_memory_info *s)
{
    int ec = check_name(name);
    if (ec)
        return ec;
    if ((ec = open_db(c, NULL, mode, db)))
        return ec;
    int rc = hsadb_memory_stat(*db, name, s);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        hsadb_db_close(*db);
        *db = NULL;
    }
    return ec;
}

/* ---- output of memories and chunks ----------------------------------------------------- */

static void json_stat(jw *w, const hsadb_memory_info *s)
{
    char t[32];
    jw_begin_obj(w);
    jw_key(w, "name");        jw_str(w, s->name);
    jw_key(w, "fingerprint"); jw_str(w, s->fingerprint);
    jw_key(w, "n_chunks");    jw_uint(w, s->n_chunks);
    jw_key(w, "n_bytes");     jw_uint(w, s->n_bytes);
    jw_key(w, "n_appends");   jw_uint(w, s->n_appends);
    jw_key(w, "tail_bytes");  jw_uint(w, s->tail_bytes);
    jw_key(w, "store_bytes"); jw_uint(w, s->store_bytes);
    jw_key(w, "created");     jw_int(w, s->created);
    fmt_time(t, sizeof t, s->created);
    jw_key(w, "created_utc"); jw_str(w, t);
    jw_key(w, "updated");     jw_int(w, s->updated);
    fmt_time(t, sizeof t, s->updated);
    jw_key(w, "updated_utc"); jw_str(w, t);
    jw_key(w, "kv_dtype");    jw_str(w, s->kv_dtype == 0 ? "bf16" : s->kv_dtype == 1 ? "f32" : "?");
    jw_end_obj(w);
}

static void json_chunk(jw *w, const hsadb_chunk_ref *r, const char *score_key)
{
    char t[32];
    jw_begin_obj(w);
    jw_key(w, score_key);     jw_double(w, r->score);
    jw_key(w, "chunk");       jw_uint(w, r->chunk);
    jw_key(w, "persisted");   jw_bool(w, r->persisted);
    jw_key(w, "append_id");   jw_uint(w, r->append_id);
    jw_key(w, "byte_offset"); jw_uint(w, r->byte_offset);
    jw_key(w, "time");        jw_int(w, r->time);
    fmt_time(t, sizeof t, r->time);
    jw_key(w, "time_utc");    jw_str(w, t);
    jw_key(w, "text");        jw_bytes(w, r->text, r->text_len);
    jw_end_obj(w);
}

static void print_chunk_header(const char *score_name)
{
    printf("  %8s %10s %7s %12s  %-20s  %s\n", score_name, "chunk", "append", "offset", "time",
           "text");
}

static void print_chunk(const hsadb_chunk_ref *r)
{
    char t[32], app[32];
    fmt_time(t, sizeof t, r->time);
    if (r->persisted)
        snprintf(app, sizeof app, "%" PRIu64, r->append_id);
    else
        snprintf(app, sizeof app, "query");  /* completed by the question, not stored */
    printf("  %8.4f %10" PRIu64 " %7s %12" PRIu64 "  %-20s  \"", r->score, r->chunk, app,
           r->byte_offset, r->persisted ? t : "-");
    print_escaped(stdout, r->text, r->text_len);
    fputs("\"\n", stdout);
}

/* ---- commands -------------------------------------------------------------------------- */

static int cmd_create(cli *c)
{
    const char *name = c->args[0];
    int ec = check_name(name);
    if (ec)
        return ec;
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    if ((ec = load_model(c, &m)))
        return ec;
    if ((ec = open_db(c, m, DB_CREATE, &db)))
        goto out;
    int rc = hsadb_memory_create(db, name);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    hsadb_model_info info;
    hsadb_model_get_info(m, &info);
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "created");     jw_str(&w, name);
        jw_key(&w, "db");          jw_str(&w, c->db);
        jw_key(&w, "model");       jw_str(&w, c->model);
        jw_key(&w, "fingerprint"); jw_str(&w, info.fingerprint);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (!c->quiet) {
        printf("created memory '%s' in %s (model %s, fingerprint %.12s)\n", name, c->db, c->model,
               info.fingerprint);
    }
out:
    hsadb_db_close(db);
    hsadb_model_close(m);
    return ec;
}

static int cmd_list(cli *c)
{
    hsadb_db *db = NULL;
    hsadb_memory_info *st = NULL;
    size_t n = 0;
    int ec = open_db(c, NULL, DB_READ, &db);
    if (ec)
        return ec;
    int rc = hsadb_memory_list(db, &st, &n);
    if (rc) {
        ec = fail(rc, "database '%s'", c->db);
        goto out;
    }
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "db");
        jw_str(&w, c->db);
        jw_key(&w, "memories");
        jw_begin_arr(&w);
        for (size_t i = 0; i < n; i++)
            json_stat(&w, &st[i]);
        jw_end_arr(&w);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (n == 0) {
        note(c, "no memories in %s", c->db);
    } else {
        int wn = 4;
        for (size_t i = 0; i < n; i++)
            if ((int)strlen(st[i].name) > wn)
                wn = (int)strlen(st[i].name);
        printf("%-*s %10s %14s %8s %10s  %-12s  %s\n", wn, "NAME", "CHUNKS", "BYTES", "APPENDS",
               "SIZE", "MODEL", "UPDATED");
        for (size_t i = 0; i < n; i++) {
            char sz[32], t[32];
            fmt_bytes(sz, sizeof sz, st[i].store_bytes);
            fmt_time(t, sizeof t, st[i].updated);
            printf("%-*s %10" PRIu64 " %14" PRIu64 " %8" PRIu64 " %10s  %-12.12s  %s\n", wn,
                   st[i].name, st[i].n_chunks, st[i].n_bytes, st[i].n_appends, sz,
                   st[i].fingerprint, t);
        }
    }
out:
    hsadb_free(st);
    hsadb_db_close(db);
    return ec;
}

static int cmd_stats(cli *c)
{
    const char *name = c->args[0];
    hsadb_db *db = NULL;
    hsadb_memory_info s;
    int ec = open_memory(c, name, DB_READ, &db, &s);
    if (ec)
        return ec;
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        json_stat(&w, &s);
        jw_end(&w);
    } else {
        char b[32], t1[32], t2[32];
        printf("name:        %s\n", s.name);
        printf("model:       %s\n", s.fingerprint);
        printf("chunks:      %" PRIu64 "\n", s.n_chunks);
        fmt_bytes(b, sizeof b, s.n_bytes);
        printf("bytes:       %" PRIu64 " (%s)\n", s.n_bytes, b);
        printf("tail bytes:  %" PRIu64 "\n", s.tail_bytes);
        printf("appends:     %" PRIu64 "\n", s.n_appends);
        fmt_bytes(b, sizeof b, s.store_bytes);
        printf("store size:  %s (%" PRIu64 " bytes)\n", b, s.store_bytes);
        printf("kv dtype:    %s\n", s.kv_dtype == 0 ? "bf16" : s.kv_dtype == 1 ? "f32" : "?");
        fmt_time(t1, sizeof t1, s.created);
        fmt_time(t2, sizeof t2, s.updated);
        printf("created:     %s\n", t1);
        printf("updated:     %s\n", t2);
    }
    hsadb_db_close(db);
    return ec;
}

/* append --id ID when an append with that id was committed already: its result. */
static void print_replayed(const cli *c, const char *name, const hsadb_append_result *r)
{
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "memory");        jw_str(&w, name);
        jw_key(&w, "append_id");     jw_uint(&w, r->append_id);
        jw_key(&w, "bytes");         jw_uint(&w, r->bytes);
        jw_key(&w, "chunks");        jw_uint(&w, r->chunks);
        jw_key(&w, "total_chunks");  jw_uint(&w, r->total_chunks);
        jw_key(&w, "total_bytes");   jw_uint(&w, r->total_bytes);
        jw_key(&w, "seconds");       jw_double(&w, r->seconds);
        jw_key(&w, "id");            jw_str(&w, c->append_id);
        jw_key(&w, "replayed");      jw_bool(&w, 1);
        jw_key(&w, "complete");      jw_bool(&w, r->complete);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (!c->quiet) {
        printf("append #%" PRIu64 " of '%s' already has id '%s': %" PRIu64 " bytes, %" PRIu64
               " chunks%s; nothing appended now\n", r->append_id, name, c->append_id, r->bytes,
               r->chunks, r->complete ? "" : " (it was interrupted: only these bytes were kept)");
    }
}

static int cmd_append(cli *c)
{
    const char *name = c->args[0];
    const char *path = c->nargs > 1 ? c->args[1] : "-";
    int from_stdin = strcmp(path, "-") == 0;
    const char *shown = from_stdin ? "standard input" : path;
    int ec = check_name(name);
    if (ec)
        return ec;

    /* The input first: a wrong path fails at once, before the model is loaded. */
    int fd = STDIN_FILENO;
    if (!from_stdin) {
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return fail_cli(errno == ENOENT ? HSADB_ERR_NOTFOUND : errno,
                            "cannot open input file '%s': %s", path, strerror(errno));
    }
    struct stat st;
    uint64_t total = 0;
    int known = 0;
    if (fstat(fd, &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            ec = fail_cli(HSADB_ERR_NOTFOUND, "cannot read input '%s': is a directory", shown);
            goto close_fd;
        }
        if (S_ISREG(st.st_mode)) {
            total = (uint64_t)st.st_size;
            known = 1;
            posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        }
    }

    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    hsadb_appender *a = NULL;
    unsigned char *buf = NULL;
    if ((ec = load_model(c, &m)))
        goto close_fd;
    if ((ec = open_db(c, m, DB_WRITE, &db)))
        goto out;
    hsadb_memory_info before;
    int rc = hsadb_memory_stat(db, name, &before);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    hsadb_append_result first;
    rc = hsadb_appender_open_id(db, name, c->append_id, &a, &first);
    if (rc == 0 && a && c->n_metas)
        rc = hsadb_appender_set_meta(a, c->metas, (size_t)c->n_metas);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    if (!a) {      /* --id of an append already committed: its result, nothing appended */
        print_replayed(c, name, &first);
        goto out;
    }
    buf = malloc(READ_PIECE);
    if (!buf) {
        ec = fail_cli(ENOMEM, "input buffer");
        goto out;
    }

    catch_signals();
    char label[160];
    snprintf(label, sizeof label, "append %s", name);
    progress pg;
    progress_start(&pg, !c->quiet && (c->progress || isatty(STDERR_FILENO)), label, total, known);
    uint64_t fed = 0;
    hsadb_append_result pr;
    memset(&pr, 0, sizeof pr);
    while (!g_signal) {
        ssize_t got = read(fd, buf, READ_PIECE);
        if (got < 0) {
            if (errno == EINTR)
                continue;  /* the loop condition sees a signal */
            int e = errno;
            progress_clear(&pg);
            hsadb_appender_abort(a);
            a = NULL;
            ec = fail_cli(HSADB_ERR_NOTFOUND, "cannot read input '%s': %s", shown, strerror(e));
            goto out;
        }
        if (got == 0)
            break;
        for (size_t off = 0; off < (size_t)got && !g_signal; off += WRITE_SLICE) {
            size_t len = (size_t)got - off < WRITE_SLICE ? (size_t)got - off : WRITE_SLICE;
            rc = hsadb_appender_write(a, buf + off, len);
            if (rc) {
                progress_clear(&pg);
                ec = fail(rc, "appending to memory '%s'", name);
                hsadb_appender_abort(a);
                a = NULL;
                goto out;
            }
            fed += len;
            hsadb_appender_progress(a, &pr);
            progress_update(&pg, fed, pr.chunks, 0);
        }
    }

    if (g_signal) {
        hsadb_appender_progress(a, &pr);
        hsadb_appender_abort(a);
        a = NULL;
        progress_clear(&pg);
        hsadb_memory_info after;
        memset(&after, 0, sizeof after);
        rc = hsadb_memory_stat(db, name, &after);
        uint64_t kb = rc == 0 && after.n_bytes >= before.n_bytes ? after.n_bytes - before.n_bytes : 0;
        uint64_t kc = rc == 0 && after.n_chunks >= before.n_chunks ? after.n_chunks - before.n_chunks : 0;
        fprintf(stderr,
                "hsadb: append: interrupted: %" PRIu64 " of the %" PRIu64 " bytes read had been "
                "committed in batches (%" PRIu64 " chunks) and are kept; the rest was dropped. "
                "Memory '%s' now holds %" PRIu64 " bytes.\n",
                kb, fed, kc, name, rc == 0 ? after.n_bytes : before.n_bytes);
        ec = interrupted_exit();
        goto out;
    }

    hsadb_append_result r;
    rc = hsadb_appender_commit(a, &r);
    a = NULL;
    progress_update(&pg, fed, pr.chunks, 1);
    progress_clear(&pg);
    if (rc) {
        ec = fail(rc, "committing the append to memory '%s'", name);
        goto out;
    }
    double tps = r.seconds > 0 ? (double)r.bytes / r.seconds : 0;
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "memory");        jw_str(&w, name);
        jw_key(&w, "append_id");     jw_uint(&w, r.append_id);
        jw_key(&w, "bytes");         jw_uint(&w, r.bytes);
        jw_key(&w, "chunks");        jw_uint(&w, r.chunks);
        jw_key(&w, "total_chunks");  jw_uint(&w, r.total_chunks);
        jw_key(&w, "total_bytes");   jw_uint(&w, r.total_bytes);
        jw_key(&w, "seconds");       jw_double(&w, r.seconds);
        jw_key(&w, "tokens_per_s");  jw_double(&w, tps);
        jw_key(&w, "id");            jw_str(&w, c->append_id);
        jw_key(&w, "replayed");      jw_bool(&w, 0);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (!c->quiet) {
        char b[32], rt[32], tb[32];
        fmt_bytes(b, sizeof b, r.bytes);
        fmt_rate(rt, sizeof rt, tps);
        fmt_bytes(tb, sizeof tb, r.total_bytes);
        printf("appended %" PRIu64 " bytes (%s) to '%s' as append #%" PRIu64 ": %" PRIu64
               " chunks in %.2f s, %s tokens/s; memory now %" PRIu64 " bytes (%s), %" PRIu64
               " chunks\n",
               r.bytes, b, name, r.append_id, r.chunks, r.seconds, rt, r.total_bytes, tb,
               r.total_chunks);
    }
out:
    free(buf);
    hsadb_appender_abort(a);
    hsadb_db_close(db);
    hsadb_model_close(m);
close_fd:
    if (fd != STDIN_FILENO)
        close(fd);
    return ec;
}

typedef struct piece_ctx {
    int  stream;     /* write pieces to stdout as they come */
    char last;       /* last byte written */
    int  any;
} piece_ctx;

static int on_piece(void *ctx, const char *bytes, size_t n)
{
    piece_ctx *p = ctx;
    if (p->stream && n) {
        fwrite(bytes, 1, n, stdout);
        fflush(stdout);
        p->last = bytes[n - 1];
        p->any = 1;
    }
    return g_signal != 0;
}

static int cmd_query(cli *c)
{
    const char *name = c->args[0];
    int ec = check_name(name);
    if (ec)
        return ec;
    char *q = join_args(c->args + 1, c->nargs - 1);
    if (!q)
        return fail_cli(ENOMEM, "question");
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    hsadb_answer *ans = NULL;
    if ((ec = load_model(c, &m)))
        goto out;
    if ((ec = open_db(c, m, DB_READ, &db)))
        goto out;

    piece_ctx pc = { .stream = !c->json };
    hsadb_query_options o;
    memset(&o, 0, sizeof o);
    o.max_tokens = c->max_tokens;
    o.temperature = (float)c->temperature;
    o.top_p = (float)c->top_p;
    o.seed = c->seed;
    o.evidence_k = c->evidence_k;
    o.on_piece = on_piece;
    o.ctx = &pc;
    catch_signals();
    int rc = hsadb_query(db, name, q, strlen(q), &o, &ans);
    if (rc) {
        if (pc.any)
            fputc('\n', stdout);
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "memory");           jw_str(&w, name);
        jw_key(&w, "question");         jw_str(&w, q);
        jw_key(&w, "answer");           jw_bytes(&w, ans->text, ans->len);
        jw_key(&w, "n_tokens");         jw_int(&w, ans->n_tokens);
        jw_key(&w, "stop");             jw_str(&w, stop_name(ans->stop));
        jw_key(&w, "prompt_seconds");   jw_double(&w, ans->prompt_seconds);
        jw_key(&w, "generate_seconds"); jw_double(&w, ans->generate_seconds);
        jw_key(&w, "evidence");
        jw_begin_arr(&w);
        for (size_t l = 0; l < ans->n_layers && !c->no_evidence; l++) {
            const hsadb_evidence *e = &ans->layers[l];
            jw_begin_obj(&w);
            jw_key(&w, "layer");
            jw_int(&w, e->layer);
            jw_key(&w, "chunks");
            jw_begin_arr(&w);
            for (size_t j = 0; j < e->n; j++)
                json_chunk(&w, &e->chunks[j], "weight");
            jw_end_arr(&w);
            jw_end_obj(&w);
        }
        jw_end_arr(&w);
        jw_end_obj(&w);
        jw_end(&w);
    } else {
        /* Pieces were streamed; a library that produced text without calling on_piece still
         * gets its answer printed. */
        if (!pc.any && ans->len) {
            fwrite(ans->text, 1, ans->len, stdout);
            pc.any = 1;
            pc.last = ans->text[ans->len - 1];
        }
        if (pc.any && pc.last != '\n')
            fputc('\n', stdout);
        if (!c->no_evidence) {
            for (size_t l = 0; l < ans->n_layers; l++) {
                const hsadb_evidence *e = &ans->layers[l];
                printf("\nevidence, HSA layer %d (%zu chunk%s):\n", e->layer, e->n,
                       e->n == 1 ? "" : "s");
                if (e->n == 0) {
                    printf("  (no chunk retrieved)\n");
                    continue;
                }
                print_chunk_header("weight");
                for (size_t j = 0; j < e->n; j++)
                    print_chunk(&e->chunks[j]);
            }
        }
        fflush(stdout);
        if (!c->quiet)
            fprintf(stderr, "[%d tokens, stop: %s, prompt %.2f s, generation %.2f s]\n",
                    ans->n_tokens, stop_name(ans->stop), ans->prompt_seconds,
                    ans->generate_seconds);
    }
    if (g_signal || ans->stop == 2)
        ec = interrupted_exit();
out:
    hsadb_answer_free(ans);
    hsadb_db_close(db);
    hsadb_model_close(m);
    free(q);
    return ec;
}

static const char *mode_name(int m)
{
    return m == HSADB_SEARCH_LEXICAL ? "lexical" : m == HSADB_SEARCH_MODEL ? "model" : "hybrid";
}

static void json_passage(jw *w, const hsadb_passage_hit *h)
{
    char t[32];
    jw_begin_obj(w);
    jw_key(w, "score");          jw_double(w, h->score);
    jw_key(w, "start");          jw_uint(w, h->start);
    jw_key(w, "end");            jw_uint(w, h->end);
    jw_key(w, "append_id");      jw_uint(w, h->append_id);
    jw_key(w, "last_append_id"); jw_uint(w, h->last_append_id);
    jw_key(w, "time");           jw_int(w, h->time);
    fmt_time(t, sizeof t, h->time);
    jw_key(w, "time_utc");       jw_str(w, t);
    jw_key(w, "scores");
    jw_begin_obj(w);
    jw_key(w, "lexical");        jw_double(w, h->lexical_score);
    jw_key(w, "model");          jw_double(w, h->model_score);
    jw_end_obj(w);
    jw_key(w, "ranks");
    jw_begin_obj(w);
    jw_key(w, "lexical");        jw_int(w, h->lexical_rank);
    jw_key(w, "model");          jw_int(w, h->model_rank);
    jw_end_obj(w);
    jw_key(w, "text_start");     jw_uint(w, h->text_start);
    jw_key(w, "text");           jw_bytes(w, h->text, h->text_len);
    jw_end_obj(w);
}

static int cmd_search(cli *c)
{
    const char *name = c->args[0];
    int ec = check_name(name);
    if (ec)
        return ec;
    char *q = join_args(c->args + 1, c->nargs - 1);
    if (!q)
        return fail_cli(ENOMEM, "question");
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    hsadb_passages *h = NULL;
    /* lexical search needs no model */
    if (c->mode != HSADB_SEARCH_LEXICAL && (ec = load_model(c, &m)))
        goto out;
    if ((ec = open_db(c, m, DB_READ, &db)))
        goto out;
    hsadb_search_options o;
    memset(&o, 0, sizeof o);
    o.mode = c->mode;
    o.k = c->k ? c->k : 8;
    if (c->k1 > 0 || c->b_set) {
        o.bm25_k1 = c->k1 > 0 ? (float)c->k1 : 1.2f;
        o.bm25_b = c->b_set ? (float)c->b : 0.75f;
    }
    o.passage_bytes = c->passage;
    o.context_bytes = c->context < 0 ? HSADB_SEARCH_NO_CONTEXT : c->context;
    o.first_append = c->first_append;
    o.last_append = c->last_append;
    o.as_of_append = c->as_of;
    o.time_from = c->since;
    o.time_to = c->until;
    int rc = hsadb_search_passages(db, name, q, strlen(q), &o, &h);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "memory");        jw_str(&w, name);
        jw_key(&w, "question");      jw_str(&w, q);
        jw_key(&w, "mode");          jw_str(&w, mode_name(c->mode));
        jw_key(&w, "scanned_bytes"); jw_uint(&w, h->scanned_bytes);
        jw_key(&w, "hits");
        jw_begin_arr(&w);
        for (size_t i = 0; i < h->n; i++)
            json_passage(&w, &h->hits[i]);
        jw_end_arr(&w);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (h->n == 0) {
        note(c, "no passage of memory '%s' matches (mode %s)", name, mode_name(c->mode));
    } else {
        for (size_t i = 0; i < h->n; i++) {
            const hsadb_passage_hit *x = &h->hits[i];
            char t[32];
            fmt_time(t, sizeof t, x->time);
            printf("%zu. bytes %" PRIu64 "-%" PRIu64 "  append %" PRIu64 "  %s  score %.4g (lexical %.4g #%d, "
                   "model %.4g #%d)\n   \"", i + 1, x->start, x->end, x->append_id, t, x->score,
                   x->lexical_score, x->lexical_rank, x->model_score, x->model_rank);
            print_escaped(stdout, x->text, x->text_len);
            fputs("\"\n", stdout);
        }
    }
out:
    hsadb_passages_free(h);
    hsadb_db_close(db);
    hsadb_model_close(m);
    free(q);
    return ec;
}

static int reindex_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress *pg = ctx;
    progress_update(pg, done * 256, done, done >= total);   /* the last step always draws */
    return g_signal != 0;
}

static int cmd_reindex(cli *c)
{
    const char *name = c->args[0];
    hsadb_db *db = NULL;
    hsadb_memory_info s;
    int ec = open_memory(c, name, c->check ? DB_READ : DB_WRITE, &db, &s);
    if (ec)
        return ec;
    int rc = 0;
    if (!c->check) {
        char label[160];
        snprintf(label, sizeof label, "reindex %s", name);
        progress pg;
        progress_start(&pg, !c->quiet, label, s.n_chunks * 64, 1);
        catch_signals();
        rc = hsadb_lexical_build(db, name, reindex_progress, &pg);
        progress_clear(&pg);
        if (rc) {
            ec = fail(rc, "memory '%s'", name);
            if (rc == HSADB_ERR_CANCELLED)
                ec = interrupted_exit();
            goto out;
        }
    }
    hsadb_lexical_info li;
    rc = hsadb_lexical_check(db, name, &li);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "memory");        jw_str(&w, name);
        jw_key(&w, "units");         jw_uint(&w, li.units);
        jw_key(&w, "indexed_units"); jw_uint(&w, li.indexed_units);
        jw_key(&w, "index_bytes");   jw_uint(&w, li.index_bytes);
        jw_key(&w, "consistent");    jw_bool(&w, li.consistent);
        jw_key(&w, "detail");        jw_str(&w, li.detail);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (!c->quiet || !li.consistent) {
        printf("memory '%s': lexical index of %" PRIu64 " of %" PRIu64 " units, %" PRIu64 " bytes of records: %s\n",
               name, li.indexed_units, li.units, li.index_bytes, li.detail);
    }
    if (!li.consistent)
        ec = fail_cli(HSADB_ERR_CORRUPT, "memory '%s': lexical index: %s", name, li.detail);
out:
    hsadb_db_close(db);
    return ec;
}

static int cmd_read(cli *c)
{
    const char *name = c->args[0];
    int ec = check_name(name);
    if (ec)
        return ec;
    if (c->json)
        return usage_error("read writes the stored bytes as they are; --json is not supported");
    hsadb_db *db = NULL;
    unsigned char *buf = NULL;
    hsadb_memory_info s;
    if ((ec = open_memory(c, name, DB_READ, &db, &s)))
        return ec;
    /* Read what the memory held when the command started, even if appends continue. */
    uint64_t end = s.n_bytes;
    if (c->have_length && c->offset < end && c->length < end - c->offset)
        end = c->offset + c->length;
    buf = malloc(READ_PIECE);
    if (!buf) {
        ec = fail_cli(ENOMEM, "read buffer");
        goto out;
    }
    for (uint64_t off = c->offset; off < end;) {
        size_t want = end - off < READ_PIECE ? (size_t)(end - off) : READ_PIECE;
        size_t got = 0;
        int rc = hsadb_memory_read(db, name, off, buf, want, &got);
        if (rc) {
            ec = fail(rc, "memory '%s' at offset %" PRIu64, name, off);
            goto out;
        }
        if (got == 0) {
            ec = fail_cli(HSADB_ERR_CORRUPT,
                          "memory '%s' reports %" PRIu64 " bytes but reading at offset %" PRIu64
                          " returned none", name, s.n_bytes, off);
            goto out;
        }
        if (fwrite(buf, 1, got, stdout) != got) {
            ec = fail_cli(errno ? errno : EIO, "writing standard output: %s", strerror(errno));
            goto out;
        }
        off += got;
    }
out:
    free(buf);
    hsadb_db_close(db);
    return ec;
}

static int cmd_delete(cli *c)
{
    const char *name = c->args[0];
    hsadb_db *db = NULL;
    hsadb_memory_info s;
    int ec = open_memory(c, name, DB_WRITE, &db, &s);
    if (ec)
        return ec;
    if (!c->yes) {
        if (!isatty(STDIN_FILENO)) {
            ec = usage_error("refusing to delete memory '%s' without --yes (stdin is not a "
                             "terminal to ask on)", name);
            goto out;
        }
        char b[32], line[64];
        fmt_bytes(b, sizeof b, s.n_bytes);
        fprintf(stderr, "delete memory '%s' (%" PRIu64 " chunks, %s) from %s? [y/N] ", name,
                s.n_chunks, b, c->db);
        fflush(stderr);
        if (!fgets(line, sizeof line, stdin) || !(line[0] == 'y' || line[0] == 'Y')) {
            fprintf(stderr, "hsadb: delete: not confirmed; nothing deleted\n");
            ec = EXIT_FAIL;
            goto out;
        }
    }
    int rc = hsadb_memory_delete(db, name);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "deleted");  jw_str(&w, name);
        jw_key(&w, "n_chunks"); jw_uint(&w, s.n_chunks);
        jw_key(&w, "n_bytes");  jw_uint(&w, s.n_bytes);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (!c->quiet) {
        printf("deleted memory '%s' (%" PRIu64 " chunks, %" PRIu64 " bytes)\n", name, s.n_chunks,
               s.n_bytes);
    }
out:
    hsadb_db_close(db);
    return ec;
}

static int cmd_snapshot(cli *c)
{
    const char *dest = c->args[0];
    int ec;
    if (c->memory && (ec = check_name(c->memory)))
        return ec;
    hsadb_db *db = NULL;
    hsadb_memory_info *st = NULL;
    size_t n = 0;
    if ((ec = open_db(c, NULL, DB_READ, &db)))
        return ec;
    int rc;
    if (c->memory) {
        st = calloc(1, sizeof *st);
        if (!st) {
            ec = fail_cli(ENOMEM, "memory stat");
            goto out;
        }
        rc = hsadb_memory_stat(db, c->memory, st);
        n = 1;
    } else {
        rc = hsadb_memory_list(db, &st, &n);
    }
    if (rc) {
        ec = c->memory ? fail(rc, "memory '%s'", c->memory) : fail(rc, "database '%s'", c->db);
        goto out;
    }
    rc = hsadb_snapshot(db, c->memory, dest);
    if (rc) {
        ec = fail(rc, "snapshot into '%s'", dest);
        goto out;
    }
    uint64_t size = dir_bytes(dest);
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "snapshot");  jw_str(&w, dest);
        jw_key(&w, "db");        jw_str(&w, c->db);
        jw_key(&w, "memory");    jw_str(&w, c->memory);
        jw_key(&w, "memories");
        jw_begin_arr(&w);
        for (size_t i = 0; i < n; i++)
            jw_str(&w, st[i].name);
        jw_end_arr(&w);
        jw_key(&w, "bytes_on_disk"); jw_uint(&w, size);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (!c->quiet) {
        char b[32];
        fmt_bytes(b, sizeof b, size);
        printf("snapshot of %s written to %s (%s on disk)\n",
               c->memory ? "one memory" : "the database", dest, b);
        for (size_t i = 0; i < n; i++)
            printf("  %s\n", st[i].name);
    }
out:
    if (c->memory)
        free(st);
    else
        hsadb_free(st);
    hsadb_db_close(db);
    return ec;
}

/* `check`: the damaged records, one line each (or one JSON object each), then a summary. */
#define CHECK_LINES_MAX 1000  /* damaged records listed; the count covers all of them */

typedef struct check_out {
    const cli *c;
    jw        *w;
    uint64_t   listed;
} check_out;

static int check_print(void *ctx, const hsadb_damage *d)
{
    check_out *o = ctx;
    if (o->listed++ >= CHECK_LINES_MAX)
        return 0;
    if (o->w) {
        jw_begin_obj(o->w);
        jw_key(o->w, "memory"); jw_str(o->w, d->memory);
        jw_key(o->w, "record"); jw_str(o->w, d->record);
        jw_key(o->w, "n");
        if (d->n == UINT64_MAX)
            jw_str(o->w, NULL);
        else
            jw_uint(o->w, d->n);
        jw_key(o->w, "what");   jw_str(o->w, d->what);
        jw_end_obj(o->w);
        return 0;
    }
    if (d->n == UINT64_MAX)
        printf("damaged: %s%s%s%s record: %s\n", d->memory ? "memory '" : "",
               d->memory ? d->memory : "", d->memory ? "' " : "", d->record, d->what);
    else
        printf("damaged: %s%s%s%s record %" PRIu64 ": %s\n", d->memory ? "memory '" : "",
               d->memory ? d->memory : "", d->memory ? "' " : "", d->record, d->n, d->what);
    return 0;
}

static int cmd_check(cli *c)
{
    const char *name = c->nargs > 0 ? c->args[0] : NULL;
    hsadb_check_result res = {0, 0};
    hsadb_db *db = NULL;
    int ec;
    if (name && (ec = check_name(name)))
        return ec;
    if ((ec = open_db(c, NULL, DB_READ, &db)))
        return ec;
    jw w;
    check_out o = {c, c->json ? &w : NULL, 0};
    if (c->json) {
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "db");     jw_str(&w, c->db);
        jw_key(&w, "memory"); jw_str(&w, name);
        jw_key(&w, "damage");
        jw_begin_arr(&w);
    }
    int rc = hsadb_check(db, name, check_print, &o, &res);
    if (c->json) {
        jw_end_arr(&w);
        jw_key(&w, "n_records"); jw_uint(&w, res.n_records);
        jw_key(&w, "n_damaged"); jw_uint(&w, res.n_damaged);
        jw_key(&w, "ok");        jw_bool(&w, rc == 0 && res.n_damaged == 0);
        jw_end_obj(&w);
        jw_end(&w);
    }
    if (rc) {
        ec = fail(rc, name ? "memory '%s'" : "database '%s'", name ? name : c->db);
    } else if (res.n_damaged) {
        if (!c->json && o.listed > CHECK_LINES_MAX)
            printf("... %" PRIu64 " more damaged records not listed\n", o.listed - CHECK_LINES_MAX);
        ec = fail_cli(HSADB_ERR_CORRUPT, "%s: %" PRIu64 " damaged record%s of %" PRIu64 " checked",
                      name ? name : c->db, res.n_damaged, res.n_damaged == 1 ? "" : "s",
                      res.n_records);
    } else {
        if (!c->json && !c->quiet)
            printf("%s: %" PRIu64 " records checked, no damage found\n", name ? name : c->db,
                   res.n_records);
        ec = EXIT_OK;
    }
    hsadb_db_close(db);
    return ec;
}

static int cmd_restore(cli *c)
{
    const char *snap = c->args[0], *dest = c->args[1];
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    hsadb_memory_info *st = NULL;
    size_t n = 0;
    int ec = 0, rc;
    struct stat sb;
    if (stat(snap, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return fail_cli(HSADB_ERR_NOTFOUND, "snapshot directory '%s' %s", snap,
                        stat(snap, &sb) != 0 ? "does not exist" : "is not a directory");

    if (c->no_check) {
        note(c, "--no-check: restoring without checking memories against a model");
    } else if (c->model_explicit) {
        if ((ec = load_model(c, &m)))
            return ec;
    } else if (hsadb_model_open(c->model, &m) != 0) {
        m = NULL;
        note(c, "no model loaded from '%s' (%s); restoring without the model check", c->model,
             hsadb_last_error());
    }
    rc = hsadb_restore(snap, dest, m);
    if (rc) {
        ec = fail(rc, "restore of '%s' into '%s'", snap, dest);
        goto out;
    }
    /* Open the restored database to say what it holds. */
    hsadb_db_options o;
    memset(&o, 0, sizeof o);
    o.flags = HSADB_DB_RDONLY;
    rc = hsadb_db_open(dest, &o, &db);
    if (rc == 0)
        rc = hsadb_memory_list(db, &st, &n);
    if (rc) {
        ec = fail(rc, "restored database '%s'", dest);
        goto out;
    }
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "restored");      jw_str(&w, dest);
        jw_key(&w, "snapshot");      jw_str(&w, snap);
        jw_key(&w, "model_checked"); jw_bool(&w, m != NULL);
        jw_key(&w, "memories");
        jw_begin_arr(&w);
        for (size_t i = 0; i < n; i++)
            json_stat(&w, &st[i]);
        jw_end_arr(&w);
        jw_end_obj(&w);
        jw_end(&w);
    } else if (!c->quiet) {
        printf("restored %zu memor%s from %s into %s%s\n", n, n == 1 ? "y" : "ies", snap, dest,
               m ? " (checked against the model)" : "");
        for (size_t i = 0; i < n; i++)
            printf("  %s: %" PRIu64 " chunks, %" PRIu64 " bytes\n", st[i].name, st[i].n_chunks,
                   st[i].n_bytes);
    }
out:
    hsadb_free(st);
    hsadb_db_close(db);
    hsadb_model_close(m);
    return ec;
}

static int cmd_serve(cli *c)
{
    if (c->hash_key) {
        char hex[65];
        if (!c->hash_key[0])
            return usage_error("--hash-key expects a non-empty key");
        hsadb_server_hash_key(c->hash_key, hex);
        printf("%s\n", hex);
        return EXIT_OK;
    }
    /* SIGINT/SIGTERM are caught before anything else starts, by a handler that writes to a
     * pipe the main thread reads once the server runs. Not a blocked mask + sigwait: threads
     * exist before main() (OpenBLAS starts its pool in a library constructor), and a
     * thread that does not block the signal takes it and dies by its default action; a
     * handler is process-wide. A signal during start-up stops the server cleanly. */
    if (pipe2(g_serve_pipe, O_CLOEXEC) != 0)
        return fail_cli(errno, "pipe: %s", strerror(errno));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_serve_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    hsadb_server *srv = NULL;
    int ec;
    if ((ec = load_model(c, &m)))
        return ec;
    if ((ec = open_db(c, m, DB_CREATE, &db)))
        goto out;
    hsadb_server_options o;
    memset(&o, 0, sizeof o);
    o.listen = c->listen ? c->listen : "127.0.0.1:50051";
    o.keys_file = c->keys;
    o.insecure_no_auth = c->insecure_no_auth;
    o.tls_cert = c->tls_cert;
    o.tls_key = c->tls_key;
    o.snapshot_dir = c->snapshot_dir;
    o.model = m;
    o.workers = c->workers;
    o.max_connections = c->max_connections;
    o.handshake_seconds = c->handshake_timeout;
    o.first_message_seconds = c->first_message_timeout;
    o.max_streams_per_key = c->max_streams_per_key;
    o.max_message_bytes = c->max_message_bytes;
    o.max_question_bytes = c->max_question_bytes;
    o.grace_seconds = c->grace;
    o.log = !c->quiet;
    int rc = hsadb_server_start(db, &o, &srv);
    if (rc) {
        ec = fail_cli(rc, "%s", hsadb_server_last_error());
        goto out;
    }
    char addr[300];
    const char *colon = strrchr(o.listen, ':');
    if (strncmp(o.listen, "unix:", 5) == 0)     /* no port: the path is the address */
        snprintf(addr, sizeof addr, "%s", o.listen);
    else
        snprintf(addr, sizeof addr, "%.*s:%d", colon ? (int)(colon - o.listen) : (int)strlen(o.listen),
                 o.listen, hsadb_server_port(srv));
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "listening"); jw_str(&w, addr);
        jw_key(&w, "port");      jw_int(&w, hsadb_server_port(srv));
        jw_key(&w, "tls");       jw_bool(&w, c->tls_cert != NULL);
        jw_key(&w, "auth");      jw_bool(&w, c->keys != NULL);
        jw_end_obj(&w);
        jw_end(&w);
    } else {
        printf("listening on %s\n", addr);
    }
    fflush(stdout);
    if (!c->keys)
        note(c, "no --keys: every client may do everything");
    else if (!c->tls_cert && !hsadb_server_is_loopback(o.listen))
        note(c, "API keys travel in clear text without --tls-cert/--tls-key");
    unsigned char b = 0;
    while (read(g_serve_pipe[0], &b, 1) < 0 && errno == EINTR)
        ;
    int sig = g_signal;
    signal(SIGINT, SIG_DFL);   /* a second signal ends the process at once */
    signal(SIGTERM, SIG_DFL);
    note(c, "%s: shutting down (calls in flight get %g s)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
         c->grace > 0 ? c->grace : 10.0);
    hsadb_server_stop(srv);
    note(c, "stopped");
    ec = EXIT_OK;
out:
    hsadb_db_close(db);
    hsadb_model_close(m);
    return ec;
}

static int cmd_meta(cli *c)
{
    const char *name = c->args[0];
    uint64_t id;
    hsadb_db *db = NULL;
    hsadb_memory_info st;
    hsadb_meta_pair *p = NULL;
    size_t n = 0;
    int ec;
    if ((ec = parse_u64("APPEND_ID", c->args[1], UINT64_MAX, &id)) ||
        (ec = open_memory(c, name, DB_READ, &db, &st)))
        return ec;
    int rc = hsadb_append_meta(db, name, id, &p, &n);
    if (rc) {
        ec = fail(rc, "memory '%s'", name);
        goto out;
    }
    if (c->json) {
        jw w;
        jw_init(&w, stdout);
        jw_begin_obj(&w);
        jw_key(&w, "memory");    jw_str(&w, name);
        jw_key(&w, "append_id"); jw_uint(&w, id);
        jw_key(&w, "metadata");  jw_begin_obj(&w);
        for (size_t i = 0; i < n; i++) {
            jw_key(&w, p[i].key);
            jw_bytes(&w, p[i].value, strlen(p[i].value));
        }
        jw_end_obj(&w);
        jw_end_obj(&w);
        jw_end(&w);
    } else {
        for (size_t i = 0; i < n; i++) {
            printf("%s=", p[i].key);
            print_escaped(stdout, p[i].value, strlen(p[i].value));
            putchar('\n');
        }
    }
out:
    hsadb_free(p);
    hsadb_db_close(db);
    return ec;
}

static int mcp_allow(void *ctx, int role, const char *name)
{
    return rpc_key_allows(ctx, role, name);   /* hsadb_mcp_role values are rpc_role's */
}

static int cmd_mcp(cli *c)
{
    hsadb_model *m = NULL;
    hsadb_db *db = NULL;
    rpc_keys *keys = NULL;
    const rpc_key *key = NULL;
    int ec;
    const char *k = c->key ? c->key : getenv("HSADB_KEY");
    for (int i = 0; i < c->n_memories; i++)
        if ((ec = check_name(c->memories[i])))
            return ec;
    if (k && !c->keys)
        return usage_error("--key (or $HSADB_KEY) needs --keys FILE");
    if (c->keys) {
        char err[512];
        int rc = rpc_keys_load(c->keys, &keys, err, sizeof err);
        if (rc)
            return fail_cli(rc, "%s", err);
        if (!k || !k[0]) {
            rpc_keys_free(keys);
            return usage_error("--keys needs the key: --key KEY or $HSADB_KEY");
        }
        if (!(key = rpc_keys_find(keys, k, strlen(k)))) {
            rpc_keys_free(keys);
            return fail_cli(HSADB_ERR_INVALID, "the key is not in the keys file '%s'", c->keys);
        }
    }
    if ((ec = load_model(c, &m)) || (ec = open_db(c, m, c->read_only ? DB_READ : DB_CREATE, &db)))
        goto out;
    signal(SIGPIPE, SIG_IGN);   /* a client that goes away ends the loop with EPIPE */
    hsadb_mcp_options o;
    memset(&o, 0, sizeof o);
    o.memories = c->memories;
    o.n_memories = (size_t)c->n_memories;
    o.read_only = c->read_only;
    o.allow_forget = c->allow_forget;
    o.allow = key ? mcp_allow : NULL;
    o.allow_ctx = (void *)key;
    o.log = c->quiet ? NULL : stderr;
    note(c, "mcp: serving %s%s on stdio", c->db, c->read_only ? " read-only" : "");
    int rc = hsadb_mcp_serve(db, &o, stdin, stdout);
    if (rc && rc != EPIPE)
        ec = fail_cli(rc, "stdio");
    else
        ec = EXIT_OK;
out:
    hsadb_db_close(db);
    hsadb_model_close(m);
    rpc_keys_free(keys);
    return ec;
}

/* ---- command table and help ------------------------------------------------------------ */

static const optdef append_opts[] = {
    { "progress", 0, 0, OPT_PROGRESS }, { "meta", 0, 1, OPT_META }, { "id", 0, 1, OPT_APPEND_ID },
    { NULL, 0, 0, 0 },
};
static const optdef query_opts[] = {
    { "max-tokens", 0, 1, OPT_MAX_TOKENS }, { "temperature", 0, 1, OPT_TEMPERATURE },
    { "top-p", 0, 1, OPT_TOP_P },           { "seed", 0, 1, OPT_SEED },
    { "evidence", 0, 1, OPT_EVIDENCE },     { "no-evidence", 0, 0, OPT_NO_EVIDENCE },
    { NULL, 0, 0, 0 },
};
static const optdef search_opts[] = {
    { "k", 'k', 1, OPT_K },                 { "mode", 0, 1, OPT_MODE },
    { "context", 0, 1, OPT_CONTEXT },       { "passage", 0, 1, OPT_PASSAGE },
    { "k1", 0, 1, OPT_K1 },                 { "b", 0, 1, OPT_B },
    { "first-append", 0, 1, OPT_FIRST_APPEND }, { "last-append", 0, 1, OPT_LAST_APPEND },
    { "as-of", 0, 1, OPT_AS_OF },           { "since", 0, 1, OPT_SINCE },
    { "until", 0, 1, OPT_UNTIL },           { NULL, 0, 0, 0 },
};
static const optdef reindex_opts[] = { { "check", 0, 0, OPT_CHECK }, { NULL, 0, 0, 0 } };
static const optdef read_opts[] = {
    { "offset", 0, 1, OPT_OFFSET }, { "length", 0, 1, OPT_LENGTH }, { NULL, 0, 0, 0 },
};
static const optdef delete_opts[] = { { "yes", 'y', 0, OPT_YES }, { NULL, 0, 0, 0 } };
static const optdef snapshot_opts[] = { { "memory", 0, 1, OPT_MEMORY }, { NULL, 0, 0, 0 } };
static const optdef restore_opts[] = { { "no-check", 0, 0, OPT_NO_CHECK }, { NULL, 0, 0, 0 } };
static const optdef serve_opts[] = {
    { "listen", 0, 1, OPT_LISTEN },         { "keys", 0, 1, OPT_KEYS },
    { "insecure-no-auth", 0, 0, OPT_INSECURE_NO_AUTH },
    { "tls-cert", 0, 1, OPT_TLS_CERT },     { "tls-key", 0, 1, OPT_TLS_KEY },
    { "snapshot-dir", 0, 1, OPT_SNAPSHOT_DIR }, { "workers", 0, 1, OPT_WORKERS },
    { "hash-key", 0, 1, OPT_HASH_KEY },
    { "max-connections", 0, 1, OPT_MAX_CONNECTIONS },
    { "handshake-timeout", 0, 1, OPT_HANDSHAKE_TIMEOUT },
    { "first-message-timeout", 0, 1, OPT_FIRST_MESSAGE_TIMEOUT },
    { "max-streams-per-key", 0, 1, OPT_MAX_STREAMS_PER_KEY },
    { "max-message-bytes", 0, 1, OPT_MAX_MESSAGE_BYTES },
    { "max-question-bytes", 0, 1, OPT_MAX_QUESTION_BYTES },
    { "grace", 0, 1, OPT_GRACE },
    { NULL, 0, 0, 0 },
};
static const optdef mcp_opts[] = {
    { "memory", 0, 1, OPT_MEMORY },         { "read-only", 0, 0, OPT_READ_ONLY },
    { "allow-forget", 0, 0, OPT_ALLOW_FORGET }, { "keys", 0, 1, OPT_KEYS },
    { "key", 0, 1, OPT_KEY },               { NULL, 0, 0, 0 },
};
static const optdef no_opts[] = { { NULL, 0, 0, 0 } };

static const command commands[] = {
    { "create", cmd_create, 1, 1, no_opts, "create NAME",
      "create an empty memory bound to the model",
      "Creates the database directory if needed and an empty memory NAME bound to the model\n"
      "(its weights' SHA-256). NAME: 1..128 bytes of [A-Za-z0-9._-]. Loads the model.\n" },
    { "list", cmd_list, 0, 0, no_opts, "list",
      "list memories: chunks, bytes, appends, size, model, updated",
      "One line per memory: stored chunks, bytes appended, appends, approximate size on disk,\n"
      "the model fingerprint (first 12 hex digits) and the time of the last append (UTC).\n" },
    { "stats", cmd_stats, 1, 1, no_opts, "stats NAME", "show one memory in detail",
      "Everything hsadb records about memory NAME: full model fingerprint, chunks, bytes, bytes\n"
      "in the tail (after the last complete 64-byte chunk), appends, size, K/V dtype, times.\n" },
    { "append", cmd_append, 1, 2, append_opts, "append NAME [FILE|-]",
      "append a file or standard input to a memory",
      "Streams FILE (or standard input when FILE is - or absent) into memory NAME, any size,\n"
      "in 1 MiB pieces. Completed 64-byte chunks are committed in batches as they fill; the\n"
      "append is acknowledged (summary printed, exit 0) once everything is committed.\n"
      "A progress line (bytes, percent when the size is known, tokens/s, ETA) is drawn on\n"
      "stderr when stderr is a terminal or --progress is given.\n"
      "On SIGINT the append is aborted: batches already committed stay, the rest is dropped,\n"
      "how much was kept is reported, and the exit status is 130.\n"
      "\n"
      "Options:\n"
      "  --progress        draw progress on stderr even when it is not a terminal\n"
      "  --meta KEY=VALUE  store a metadata pair with this append (repeatable, at most 16;\n"
      "                    keys 1..64 bytes of [A-Za-z0-9._-]; see `hsadb meta`)\n"
      "  --id ID           idempotency id (1..64 bytes): if an append of this memory with ID\n"
      "                    was committed (whole, or a prefix before it failed), print its\n"
      "                    result and append nothing; a retry never duplicates data\n" },
    { "query", cmd_query, 2, -1, query_opts, "query NAME QUESTION...",
      "ask a question; stream the answer, then the evidence",
      "Runs the model over <query> QUESTION <answer> continuing the memory's stream (the\n"
      "question is not stored) and streams the answer to stdout as it is generated. Then,\n"
      "for each HSA layer, the chunks it attended to: weight, chunk index, append id, byte\n"
      "offset, time of the append, and the chunk's text (non-printable bytes as \\xNN).\n"
      "A chunk completed by the question itself is shown with append 'query'.\n"
      "The words of QUESTION are joined with spaces; put -- before a question that starts\n"
      "with '-'.\n"
      "\n"
      "Options:\n"
      "  --max-tokens N    answer length limit in tokens (default 256)\n"
      "  --temperature T   sampling temperature; 0 = greedy (default)\n"
      "  --top-p P         nucleus sampling when T > 0 (default 1.0)\n"
      "  --seed S          sampling seed (default: a fixed seed)\n"
      "  --evidence K      chunks listed per layer (default 8)\n"
      "  --no-evidence     print the answer only\n" },
    { "search", cmd_search, 2, -1, search_opts, "search NAME QUESTION... [-k K] [--mode M]",
      "the passages that best match a question (no generation)",
      "Ranks the passages of NAME (windows of 512 bytes starting every 256) against QUESTION\n"
      "and lists the K best, none overlapping another: byte range, append and time, the\n"
      "score of each signal, and the text grown to the nearest line or sentence ends.\n"
      "Modes: lexical (BM25 over the memory's lexical index; needs no model), model (the\n"
      "model's retrieval probability summed over each passage's chunks), hybrid (default:\n"
      "reciprocal rank fusion, k = 60, of the two).\n"
      "\n"
      "Options:\n"
      "  -k K              number of passages (default 8)\n"
      "  --mode M          hybrid (default), lexical or model\n"
      "  --context N       grow the text by at most N bytes each side (default 256; 0 = none)\n"
      "  --passage N       passage length: a multiple of 256 in 256..4096 (default 512)\n"
      "  --k1 X, --b Y     BM25 parameters (default 1.2 and 0.75)\n"
      "  --first-append A, --last-append B   only bytes of appends A..B\n"
      "  --as-of A         only what was appended up to append A (nothing later is shown)\n"
      "  --since T, --until T   only appends that began in [T, T] (unix seconds)\n" },
    { "reindex", cmd_reindex, 1, 1, reindex_opts, "reindex NAME [--check]",
      "build (or check) the lexical index of a memory",
      "Builds what the lexical index of NAME lacks: all of it for a memory written before\n"
      "the index existed (an append does the same when it starts), with progress on stderr.\n"
      "Then checks the index against the chunk records and reports it (exit 6 if they\n"
      "differ). --check only checks (read-only). Does not load the model.\n"
      "\n"
      "Options:\n"
      "  --check           check only\n" },
    { "read", cmd_read, 1, 1, read_opts, "read NAME [--offset N] [--length N]",
      "write stored bytes of a memory to stdout",
      "Writes the bytes of memory NAME exactly as appended (all appends concatenated), from\n"
      "--offset (default 0), at most --length bytes (default: to the end as of the start of\n"
      "the command). --json is not supported.\n"
      "\n"
      "Options:\n"
      "  --offset N        first byte (default 0)\n"
      "  --length N        at most N bytes\n" },
    { "delete", cmd_delete, 1, 1, delete_opts, "delete NAME [--yes]",
      "delete a memory and all its records",
      "Deletes memory NAME. Asks for confirmation on a terminal; without a terminal --yes is\n"
      "required (exit 2 otherwise).\n"
      "\n"
      "Options:\n"
      "  -y, --yes         do not ask\n" },
    { "snapshot", cmd_snapshot, 1, 1, snapshot_opts, "snapshot DEST [--memory NAME]",
      "write a consistent compacted copy of the database or of one memory",
      "Writes a consistent, compacted copy of the whole database (or of memory NAME) into\n"
      "DEST, which must not exist or be empty. Appends may continue meanwhile; the copy holds\n"
      "what was committed when it started. The model is not needed.\n"
      "\n"
      "Options:\n"
      "  --memory NAME     copy only this memory\n" },
    { "check", cmd_check, 0, 1, no_opts, "check [NAME]",
      "check a memory (or the whole database) for damaged records",
      "Walks every record of memory NAME (without NAME: of every memory, and LMDB's free\n"
      "list) and lists each damaged one: a record missing or extra for the counts the memory\n"
      "record names, a value of the wrong size or inconsistent content, a damaged LMDB\n"
      "overflow page header, a record whose checksum does not match (format 3). Exit 0 when\n"
      "nothing is damaged, 6 when something is. Read-only; the model is not needed.\n" },
    { "restore", cmd_restore, 2, 2, restore_opts, "restore SNAPSHOT DEST",
      "restore a snapshot into a new database directory",
      "Restores SNAPSHOT into the new database directory DEST (must not exist or be empty).\n"
      "The snapshot must be complete (its marker file hsadb-snapshot names data.mdb's size and\n"
      "digest) and every memory in it sound (as `check` finds): exit 6 and nothing written\n"
      "otherwise.\n"
      "Every memory in the snapshot must be bound to the configured model (exit 5 and nothing\n"
      "written otherwise). If no model is configured (no --model, no HSADB_MODEL) and the\n"
      "default model does not load, the check is skipped with a note; a model given\n"
      "explicitly must load.\n"
      "\n"
      "Options:\n"
      "  --no-check        do not check the memories against a model\n" },
    { "serve", cmd_serve, 0, 0, serve_opts, "serve [--listen ADDR:PORT] [--keys FILE]",
      "serve the database over gRPC (hsadb.v1.Memory, docs/rpc.md)",
      "Serves the database and the model over gRPC: service hsadb.v1.Memory (create, list,\n"
      "get, delete, streamed append, streamed query, search, snapshot, restore) and the\n"
      "standard grpc.health.v1.Health. Prints `listening on ADDR:PORT` on stdout once ready\n"
      "(with --json one object), then one line per call on stderr (not with --quiet).\n"
      "SIGINT or SIGTERM stops it gracefully: no new calls, calls in flight get 10 s to\n"
      "finish (--grace), then they are cancelled within a block of work (an unfinished\n"
      "append keeps only the batches it had committed); exit 0.\n"
      "Without --keys it serves only a loopback address unless --insecure-no-auth is given.\n"
      "\n"
      "Options:\n"
      "  --listen ADDR:PORT  address to listen on (default 127.0.0.1:50051; port 0 = any)\n"
      "  --keys FILE         API keys: lines '<sha256 hex> <read|write|admin> <name-or-glob>';\n"
      "                      clients send 'authorization: Bearer <key>'\n"
      "  --hash-key KEY      print the SHA-256 of KEY for the keys file, and exit\n"
      "  --insecure-no-auth  allow serving a non-loopback address without --keys\n"
      "  --tls-cert FILE     PEM certificate chain: serve TLS (needs --tls-key)\n"
      "  --tls-key FILE      PEM private key\n"
      "  --snapshot-dir DIR  existing server-side directory for Snapshot/Restore (default:\n"
      "                      disabled)\n"
      "  --workers N         calls handled at once (default 16)\n"
      "\n"
      "Limits (docs/rpc.md; the open-file soft limit is raised to the hard limit at start):\n"
      "  --max-connections N       client connections open at once (default 1024, lowered\n"
      "                            to the open-file limit less 64); more are refused\n"
      "  --handshake-timeout SECS  a new connection that sends nothing this long is closed\n"
      "                            (default 10)\n"
      "  --first-message-timeout SECS  a call whose first request message has not come\n"
      "                            this long after a worker took it: DEADLINE_EXCEEDED\n"
      "                            (default 10)\n"
      "  --max-streams-per-key N   with --keys: calls of one key queued or running at once;\n"
      "                            more get RESOURCE_EXHAUSTED (default workers/2, >= 1)\n"
      "  --max-message-bytes N     one request message; larger: RESOURCE_EXHAUSTED\n"
      "                            (default 4194304)\n"
      "  --max-question-bytes N    Query/Search question; longer: INVALID_ARGUMENT\n"
      "                            (default 65536)\n"
      "  --grace SECS              shutdown: time calls in flight get before they are\n"
      "                            cancelled (default 10)\n" },
    { "meta", cmd_meta, 2, 2, no_opts, "meta NAME APPEND_ID",
      "show the metadata pairs stored with one append",
      "Prints the pairs given with `append --meta` (or an API's set_meta) for append APPEND_ID\n"
      "of memory NAME, one KEY=VALUE per line, in the order they were set (with --json one\n"
      "object {\"memory\", \"append_id\", \"metadata\": {KEY: VALUE}}). Nothing is printed for\n"
      "an append without metadata; an append id the memory does not have exits 3.\n" },
    { "mcp", cmd_mcp, 0, 0, mcp_opts, "mcp [--memory NAME]... [--read-only]",
      "serve the database to agents over MCP on stdio (docs/mcp.md)",
      "Speaks the Model Context Protocol (JSON-RPC 2.0, one message per line) on stdin and\n"
      "stdout until stdin ends; an MCP client (an agent) starts it as a subprocess. Tools:\n"
      "remember (append text, creating the memory), recall (question: answer + evidence),\n"
      "search, list_memories, and with --allow-forget forget (deletes a WHOLE memory).\n"
      "Resources: hsadb://memory/NAME. Requests are handled one at a time. Log lines go to\n"
      "stderr (not with --quiet). Exit 0 at end of input.\n"
      "\n"
      "Options:\n"
      "  --memory NAME     serve only this memory (repeatable; default: every memory)\n"
      "  --read-only       no remember or forget; the database is opened read-only\n"
      "  --allow-forget    offer the forget tool (it deletes a whole memory)\n"
      "  --keys FILE       the keys file of hsadb serve: the key's grants apply\n"
      "  --key KEY         the key (default: $HSADB_KEY); needs --keys\n" },
    { "help", NULL, 0, 1, no_opts, "help [COMMAND]", "show help for hsadb or one command", "" },
};

#define N_COMMANDS (sizeof commands / sizeof commands[0])

static const command *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static const char *global_help =
    "Global options (anywhere on the line):\n"
    "  --db DIR          database directory (default: $HSADB_DB, else ./hsadb-data)\n"
    "  --model DIR       model directory: config.json + model.safetensors\n"
    "                    (default: $HSADB_MODEL, else ./models/hsadb-small, else the\n"
    "                    installed PREFIX/share/hsadb/models/hsadb-small)\n"
    "  --device D        auto|cpu|cuda (default auto: CUDA if present, else CPU)\n"
    "  --threads N       CPU threads for the forward pass (default 0 = all cores)\n"
    "  --json            print one JSON object on stdout instead of text\n"
    "  --nosync          fast mode: commits are not flushed one by one; a crash of hsadb\n"
    "                    loses nothing, but an OS crash or power loss may drop the last\n"
    "                    commits or, on ext4, damage the file: for data you can re-append\n"
    "  -q, --quiet       no progress, notes or summaries of action commands\n"
    "  --no-lexical-index  appends leave the lexical index behind (benchmarks); the\n"
    "                    next append or hsadb reindex catches up\n"
    "  -h, --help        help (hsadb COMMAND --help for one command)\n"
    "  -V, --version     print the version\n";

static void print_global_help(FILE *f)
{
    fprintf(f, "hsadb %s — persistent memory database for language models (HSA)\n\n",
            HSADB_VERSION_STRING);
    fputs("Usage: hsadb [global options] <command> [args]\n\nCommands:\n", f);
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-40s %s\n", commands[i].synopsis, commands[i].summary);
    fputc('\n', f);
    fputs(global_help, f);
    fputc('\n', f);
    fputs(exit_code_help, f);
    fputs("\nErrors are one line on stderr: hsadb: <command>: <error>: <detail>\n"
          "Full reference: docs/cli.md\n", f);
}

static void print_command_help(const command *cmd, FILE *f)
{
    fprintf(f, "Usage: hsadb [global options] %s\n\n%s", cmd->synopsis, cmd->help);
    if (cmd->run == NULL) {
        print_global_help(f);
        return;
    }
    fputc('\n', f);
    fputs(global_help, f);
    fputc('\n', f);
    fputs(exit_code_help, f);
}

/* ---- argument parsing ------------------------------------------------------------------ */

static const optdef *find_opt(const optdef *t, const char *lng, size_t lnglen, char shrt)
{
    for (; t && t->id; t++) {
        if (lng && t->lng && strlen(t->lng) == lnglen && strncmp(t->lng, lng, lnglen) == 0)
            return t;
        if (!lng && shrt && t->shrt == shrt)
            return t;
    }
    return NULL;
}

static int set_opt(cli *c, const optdef *o, const char *shown, const char *v)
{
    uint64_t u;
    int rc = 0;
    switch (o->id) {
    case OPT_DB:          c->db = v; break;
    case OPT_MODEL:       c->model = v; c->model_explicit = 1; break;
    case OPT_DEVICE:
        if (strcmp(v, "auto") == 0)      c->device = HSADB_DEVICE_AUTO;
        else if (strcmp(v, "cpu") == 0)  c->device = HSADB_DEVICE_CPU;
        else if (strcmp(v, "cuda") == 0) c->device = HSADB_DEVICE_CUDA;
        else return usage_error("--device expects auto, cpu or cuda, got '%s'", v);
        break;
    case OPT_THREADS:     rc = parse_int(shown, v, 0, 4096, &c->threads); break;
    case OPT_JSON:        c->json = 1; break;
    case OPT_NOSYNC:      c->nosync = 1; break;
    case OPT_QUIET:       c->quiet = 1; break;
    case OPT_HELP:        c->help = 1; break;
    case OPT_VERSION:     c->version = 1; break;
    case OPT_PROGRESS:    c->progress = 1; break;
    case OPT_APPEND_ID:   c->append_id = v; break;
    case OPT_MAX_TOKENS:  rc = parse_int(shown, v, 1, 1 << 20, &c->max_tokens); break;
    case OPT_TEMPERATURE: rc = parse_double(shown, v, 0, 100, &c->temperature); break;
    case OPT_TOP_P:       rc = parse_double(shown, v, 0, 1, &c->top_p); break;
    case OPT_SEED:        rc = parse_u64(shown, v, UINT64_MAX, &c->seed); break;
    case OPT_EVIDENCE:    rc = parse_int(shown, v, 1, 4096, &c->evidence_k); break;
    case OPT_NO_EVIDENCE: c->no_evidence = 1; break;
    case OPT_K:           rc = parse_int(shown, v, 1, 1 << 20, &c->k); break;
    case OPT_OFFSET:      rc = parse_u64(shown, v, UINT64_MAX, &c->offset); break;
    case OPT_LENGTH:      rc = parse_u64(shown, v, UINT64_MAX, &u); c->length = u; c->have_length = 1; break;
    case OPT_YES:         c->yes = 1; break;
    case OPT_MEMORY:      c->memory = v; c->memories[c->n_memories++] = v; break;
    case OPT_NO_CHECK:    c->no_check = 1; break;
    case OPT_LISTEN:      c->listen = v; break;
    case OPT_KEYS:        c->keys = v; break;
    case OPT_INSECURE_NO_AUTH: c->insecure_no_auth = 1; break;
    case OPT_TLS_CERT:    c->tls_cert = v; break;
    case OPT_TLS_KEY:     c->tls_key = v; break;
    case OPT_SNAPSHOT_DIR: c->snapshot_dir = v; break;
    case OPT_WORKERS:     rc = parse_int(shown, v, 1, 1024, &c->workers); break;
    case OPT_HASH_KEY:    c->hash_key = v; break;
    case OPT_READ_ONLY:   c->read_only = 1; break;
    case OPT_ALLOW_FORGET: c->allow_forget = 1; break;
    case OPT_KEY:         c->key = v; break;
    case OPT_META: {
        char *eq = strchr(v, '=');
        if (!eq || eq == v)
            return usage_error("--meta expects KEY=VALUE, got '%s'", v);
        if (c->n_metas == HSADB_META_MAX_PAIRS)
            return usage_error("at most %d --meta pairs", HSADB_META_MAX_PAIRS);
        *eq = 0;   /* argv strings are ours to split */
        c->metas[c->n_metas++] = (hsadb_meta_pair){ v, eq + 1 };
        break;
    }
    case OPT_MAX_CONNECTIONS: rc = parse_int(shown, v, 1, 1 << 20, &c->max_connections); break;
    case OPT_HANDSHAKE_TIMEOUT: rc = parse_double(shown, v, 0.001, 3600, &c->handshake_timeout); break;
    case OPT_FIRST_MESSAGE_TIMEOUT: rc = parse_double(shown, v, 0.001, 3600, &c->first_message_timeout); break;
    case OPT_MAX_STREAMS_PER_KEY: rc = parse_int(shown, v, 1, 1 << 20, &c->max_streams_per_key); break;
    case OPT_MAX_MESSAGE_BYTES: rc = parse_int(shown, v, 1024, 1 << 30, &c->max_message_bytes); break;
    case OPT_MAX_QUESTION_BYTES: rc = parse_int(shown, v, 1, 1 << 30, &c->max_question_bytes); break;
    case OPT_GRACE:       rc = parse_double(shown, v, 0.001, 3600, &c->grace); break;
    case OPT_MODE:
        if (strcmp(v, "hybrid") == 0)       c->mode = HSADB_SEARCH_HYBRID;
        else if (strcmp(v, "lexical") == 0) c->mode = HSADB_SEARCH_LEXICAL;
        else if (strcmp(v, "model") == 0)   c->mode = HSADB_SEARCH_MODEL;
        else return usage_error("--mode expects hybrid, lexical or model, got '%s'", v);
        break;
    case OPT_CONTEXT:
        rc = parse_int(shown, v, 0, 65536, &c->context);
        if (!rc && c->context == 0) c->context = -1;   /* 0 = none; unset (0) = the default */
        break;
    case OPT_PASSAGE:     rc = parse_int(shown, v, 256, 4096, &c->passage); break;
    case OPT_K1:          rc = parse_double(shown, v, 0.001, 100, &c->k1); break;
    case OPT_B:           rc = parse_double(shown, v, 0, 1, &c->b); c->b_set = 1; break;
    case OPT_FIRST_APPEND: rc = parse_u64(shown, v, UINT64_MAX, &c->first_append); break;
    case OPT_LAST_APPEND: rc = parse_u64(shown, v, UINT64_MAX, &c->last_append); break;
    case OPT_AS_OF:       rc = parse_u64(shown, v, UINT64_MAX, &c->as_of); break;
    case OPT_SINCE:       rc = parse_u64(shown, v, INT64_MAX, &u); c->since = (int64_t)u; break;
    case OPT_UNTIL:       rc = parse_u64(shown, v, INT64_MAX, &u); c->until = (int64_t)u; break;
    case OPT_CHECK:       c->check = 1; break;
    case OPT_NO_LEXICAL:  c->no_lexical = 1; break;
    }
    return rc;
}

static int parse_args(cli *c, int argc, char **argv)
{
    int dashdash = 0;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        int is_opt = !dashdash && a[0] == '-' && a[1] && !(a[1] >= '0' && a[1] <= '9');
        if (!dashdash && strcmp(a, "--") == 0) {
            dashdash = 1;
            continue;
        }
        if (!is_opt) {
            if (!c->cmd) {
                c->cmd = find_command(a);
                if (!c->cmd)
                    return usage_error("unknown command '%s'", a);
                g_cmdname = c->cmd->name;
            } else {
                c->args[c->nargs++] = a;
            }
            continue;
        }
        const optdef *o;
        const char *inl = NULL;
        char shown[64];
        if (a[1] == '-') {
            const char *lng = a + 2, *eq = strchr(lng, '=');
            size_t len = eq ? (size_t)(eq - lng) : strlen(lng);
            o = find_opt(global_opts, lng, len, 0);
            if (!o && c->cmd)
                o = find_opt(c->cmd->opts, lng, len, 0);
            if (eq)
                inl = eq + 1;
            snprintf(shown, sizeof shown, "--%.*s", (int)(len < 40 ? len : 40), lng);
        } else {
            o = find_opt(global_opts, NULL, 0, a[1]);
            if (!o && c->cmd)
                o = find_opt(c->cmd->opts, NULL, 0, a[1]);
            if (a[2])
                inl = a + 2;  /* -k5 */
            snprintf(shown, sizeof shown, "-%c", a[1]);
        }
        if (!o)
            return usage_error("unknown option '%s'", a);
        const char *v = NULL;
        if (o->has_arg) {
            if (inl)
                v = inl;
            else if (i + 1 < argc)
                v = argv[++i];
            else
                return usage_error("option %s needs a value", shown);
        } else if (inl) {
            return usage_error("option %s takes no value", shown);
        }
        int rc = set_opt(c, o, shown, v);
        if (rc)
            return rc;
    }
    return 0;
}

/* The model used when neither --model nor $HSADB_MODEL names one: ./models/hsadb-small when
 * it exists (a source checkout), else the installed default model, share/hsadb/models/
 * hsadb-small under the prefix this executable is installed in (found from /proc/self/exe, so
 * a moved prefix works too). When neither exists, ./models/hsadb-small (the error names it). */
static const char *default_model_dir(void)
{
    static char path[PATH_MAX];
    struct stat st;
    if (stat("./models/hsadb-small", &st) == 0)
        return "./models/hsadb-small";
#ifdef HSADB_MODEL_FROM_BINDIR
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = n > 0 ? (exe[n] = 0, strrchr(exe, '/')) : NULL;
    if (slash) {
        *slash = 0;
        int w = snprintf(path, sizeof path, "%s/%s", exe, HSADB_MODEL_FROM_BINDIR);
        if (w > 0 && (size_t)w < sizeof path && stat(path, &st) == 0)
            return path;
    }
#endif
    return "./models/hsadb-small";
}

int main(int argc, char **argv)
{
    cli c;
    memset(&c, 0, sizeof c);
    const char *env_db = getenv("HSADB_DB"), *env_model = getenv("HSADB_MODEL");
    c.db = env_db && *env_db ? env_db : "./hsadb-data";
    if (env_model && *env_model) {
        c.model = env_model;
        c.model_explicit = 1;
    } else {
        c.model = default_model_dir();
    }
    c.args = calloc((size_t)argc + 1, sizeof *c.args);
    c.memories = calloc((size_t)argc + 1, sizeof *c.memories);
    if (!c.args || !c.memories)
        return EXIT_FAIL;

    int ec = parse_args(&c, argc, argv);
    if (ec)
        goto done;
    if (c.version) {
        printf("hsadb %s\n", HSADB_VERSION_STRING);
        goto done;
    }
    if (c.cmd && c.cmd->run == NULL) {  /* help [COMMAND] */
        const command *t = c.nargs ? find_command(c.args[0]) : NULL;
        if (c.nargs && !t) {
            ec = usage_error("unknown command '%s'", c.args[0]);
            goto done;
        }
        if (t && t->run)
            print_command_help(t, stdout);
        else
            print_global_help(stdout);
        goto done;
    }
    if (c.help) {
        if (c.cmd)
            print_command_help(c.cmd, stdout);
        else
            print_global_help(stdout);
        goto done;
    }
    if (!c.cmd) {
        fputs("Usage: hsadb [global options] <command> [args]\nCommands:", stderr);
        for (size_t i = 0; i < N_COMMANDS; i++)
            fprintf(stderr, " %s", commands[i].name);
        fputc('\n', stderr);
        ec = usage_error("no command given");
        goto done;
    }
    if (c.nargs < c.cmd->min_args) {
        ec = usage_error("missing argument (usage: hsadb %s)", c.cmd->synopsis);
        goto done;
    }
    if (c.cmd->max_args >= 0 && c.nargs > c.cmd->max_args) {
        ec = usage_error("unexpected argument '%s' (usage: hsadb %s)", c.args[c.cmd->max_args],
                         c.cmd->synopsis);
        goto done;
    }
    ec = c.cmd->run(&c);
done:
    if (fflush(stdout) != 0 || ferror(stdout)) {
        int e = errno ? errno : EIO;
        if (ec == 0) {
            fprintf(stderr, "hsadb: %s: %s: writing standard output: %s\n", g_cmdname,
                    hsadb_strerror(e), strerror(e));
            ec = EXIT_IO;
        }
    }
    free(c.args);
    free(c.memories);
    return ec;
}
