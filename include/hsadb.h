/*
 * hsadb.h — the contract of the hsadb embedded library.
 *
 * hsadb is a persistent memory database for language models built on Hierarchical Sparse
 * Attention (HSA). A database is one directory (an LMDB environment). It holds many named
 * *memories*; each memory is the byte stream of everything appended to it, stored as one
 * record per completed 64-byte chunk (landmark vector, K/V block, the bytes, provenance) plus
 * a short tail. A memory is bound to one model (the SHA-256 of its weights file).
 *
 *   hsadb_model  *m;  hsadb_model_open("models/hsadb-small", &m);
 *   hsadb_db     *db; hsadb_db_open("./hsadb-data", &(hsadb_db_options){ .model = m }, &db);
 *   hsadb_memory_create(db, "notes");
 *   hsadb_append(db, "notes", text, len, NULL);
 *   hsadb_answer *a;  hsadb_query(db, "notes", "What is the pass key?", 21, NULL, &a);
 *   ... a->text, a->layers[i].chunks[j] ...
 *   hsadb_answer_free(a); hsadb_db_close(db); hsadb_model_close(m);
 *
 * Conventions (as in lmdb.h):
 *   - Every function that can fail returns int: 0 on success, a negative HSADB_ERR_* code, or
 *     a positive errno value (ENOSPC, EACCES, ENOMEM, ...). hsadb_strerror() names any of
 *     them; hsadb_last_error() gives a one-line detail of the last failure in this thread
 *     ("tensor lower.0.attn.q.weight: shape [64,32], expected [64,64]").
 *   - Handles are opaque. Each _open has its _close; each result object has its _free.
 *   - Ownership is stated at every pointer. "Borrowed" means the caller keeps ownership and
 *     the pointer must stay valid for the stated time.
 *   - Thread safety: a hsadb_model is immutable after open and may be shared. A hsadb_db
 *     may be used from several threads; queries run concurrently; appends to one memory are
 *     serialised (a second appender on the same memory gets HSADB_ERR_BUSY). Several
 *     processes may open the same directory: readers never block, writers are serialised.
 */
#ifndef HSADB_H
#define HSADB_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* libhsadb.so is built with hidden symbols: what this header declares, and only that, is
 * exported (the pragma gives every declaration below default visibility). */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#define HSADB_VERSION_STRING "0.1.0"

/* ---- errors ---------------------------------------------------------------------------- */

enum hsadb_error {
    HSADB_OK                 = 0,
    HSADB_ERR_INVALID        = -30900, /* invalid argument or malformed input */
    HSADB_ERR_NOTFOUND       = -30901, /* no memory (or chunk) of that name/index */
    HSADB_ERR_EXISTS         = -30902, /* a memory of that name already exists */
    HSADB_ERR_MODEL_MISMATCH = -30903, /* memory or snapshot bound to a different model */
    HSADB_ERR_BAD_MODEL      = -30904, /* model files missing, malformed or inconsistent */
    HSADB_ERR_CORRUPT        = -30905, /* store or file content is damaged */
    HSADB_ERR_VERSION        = -30906, /* on-disk format version not supported */
    HSADB_ERR_BUSY           = -30907, /* memory is being appended to by another writer */
    HSADB_ERR_NO_MODEL       = -30908, /* operation needs a model and none was given */
    HSADB_ERR_CANCELLED      = -30909, /* stopped by a callback */
    HSADB_ERR_NODEVICE       = -30910, /* the requested device (cuda) is not available */
    HSADB_ERR_READONLY       = -30911, /* database opened read-only */
    HSADB_ERR_STORE          = -30912, /* unexpected LMDB error (detail in hsadb_last_error) */
};

/* A static string naming err (never NULL). */
const char *hsadb_strerror(int err);

/* Detail of the last failure in the calling thread ("" if none). Valid until the next hsadb
 * call in this thread. */
const char *hsadb_last_error(void);

/* ---- model ----------------------------------------------------------------------------- */

typedef struct hsadb_model hsadb_model;

/* Geometry of a loaded model (model-spec.md, config.json). */
typedef struct hsadb_model_info {
    int vocab_size, hidden_size, intermediate_size;
    int num_heads, head_dim, num_kv_heads, num_memory_heads, retrieval_dim;
    int num_lower_layers, encoder_layers, num_upper_groups, swa_layers_per_group;
    int chunk_size, chunk_topk, sliding_window;
    int hsa_residual_bypass;  /* 0: "standard", 1: "bypass" */
    uint64_t n_params;
    char fingerprint[65];     /* hex SHA-256 of model.safetensors */
} hsadb_model_info;

/* Load <dir>/config.json and <dir>/model.safetensors (memory-mapped, validated; fp32, bf16
 * or f16 tensors are converted to fp32 once). On failure *out is NULL and
 * hsadb_last_error() names the file, key or tensor at fault. */
int  hsadb_model_open(const char *dir, hsadb_model **out);
void hsadb_model_close(hsadb_model *m);                   /* NULL is a no-op */
void hsadb_model_get_info(const hsadb_model *m, hsadb_model_info *out);

/* ---- database -------------------------------------------------------------------------- */

typedef struct hsadb_db hsadb_db;

enum hsadb_db_flags {
    HSADB_DB_RDONLY = 1 << 0, /* open read-only; the directory must exist */
    HSADB_DB_NOSYNC = 1 << 1, /* faster appends: commits are not flushed one by one. A process
                                 crash (kill -9) loses nothing committed. An OS crash or power
                                 loss may drop the last commits, and on file systems that do
                                 not keep write order (ext4 included) may damage the file:
                                 use it for data you can re-append (docs/storage.md). */
    HSADB_DB_CREATE = 1 << 2, /* create the directory if it does not exist */
    HSADB_DB_TRACE_APPEND = 1 << 3, /* diagnostics: appends print one line per commit on stderr
                                       (forward + staging, waiting, puts, mdb_txn_commit) */
    HSADB_DB_NO_LEXICAL = 1 << 4, /* appends leave the lexical index behind (benchmarks); the
                                     next append or hsadb_lexical_build catches up */
};

enum hsadb_device { HSADB_DEVICE_AUTO = 0, HSADB_DEVICE_CPU = 1, HSADB_DEVICE_CUDA = 2 };

typedef struct hsadb_db_options {
    unsigned flags;           /* hsadb_db_flags */
    const hsadb_model *model; /* borrowed, must outlive the db; NULL allows only admin calls
                                 (list, stat, delete, snapshot) */
    int device;               /* hsadb_device; AUTO = CUDA if present, else CPU */
    int threads;              /* CPU threads for the forward pass; 0 = all cores */
    int kv_dtype;             /* K/V values of the memories this handle creates: HSADB_KV_DTYPE_BF16
                                 (0, the default) or HSADB_KV_DTYPE_F32 (exact, twice the size;
                                 for tests that compare against fp32 references) */
    /* The CUDA engine (device CUDA); zeros are the defaults (docs/gpu-engine.md). */
    int64_t  gpu_kv_chunks;   /* K/V chunk slots kept on the GPU per memory; beyond them the
                                 slots become a block cache. 0 = what the device's free memory
                                 holds less a reserve */
    int      gpu_gemm;        /* hsadb_gpu_gemm: GEMM precision */
    unsigned gpu_flags;       /* hsadb_gpu_flags */
} hsadb_db_options;

enum hsadb_kv_dtype_option { HSADB_KV_DTYPE_BF16 = 0, HSADB_KV_DTYPE_F32 = 1 };

enum hsadb_gpu_gemm {
    HSADB_GPU_GEMM_BF16 = 0, /* bf16 operands, fp32 accumulate (the default) */
    HSADB_GPU_GEMM_TF32 = 1, /* fp32 operands on TF32 tensor cores */
    HSADB_GPU_GEMM_FP32 = 2, /* plain fp32 */
};

enum hsadb_gpu_flags {
    HSADB_GPU_NO_GRAPHS      = 1 << 0, /* decode steps as plain launches, not CUDA graphs */
    HSADB_GPU_TILE_ATTENTION = 1 << 1, /* window attention on CUDA cores, not tensor cores
                                          (bf16 GEMM mode) */
};

/* Open (or with HSADB_DB_CREATE create) the database directory `path`. opts may be NULL
 * (defaults: create, durable, no model). */
int  hsadb_db_open(const char *path, const hsadb_db_options *opts, hsadb_db **out);
void hsadb_db_close(hsadb_db *db);                        /* NULL is a no-op */

/* ---- memories -------------------------------------------------------------------------- */

/* Memory names: 1..128 bytes of [A-Za-z0-9._-]. Returns 1 if `name` is one (else 0, with
 * the reason in hsadb_last_error()). */
int hsadb_memory_name_valid(const char *name);

typedef struct hsadb_memory_info {
    char     name[129];
    char     fingerprint[65]; /* model the memory is bound to */
    uint64_t n_chunks;        /* stored chunk records */
    uint64_t n_bytes;         /* bytes appended in total (= tokens of the stream) */
    uint64_t n_appends;       /* completed or interrupted appends */
    uint64_t tail_bytes;      /* bytes after the last complete chunk */
    uint64_t store_bytes;     /* bytes of records on disk for this memory (approximate) */
    int64_t  created;         /* unix time */
    int64_t  updated;         /* unix time of the last committed append */
    int      kv_dtype;        /* HSADB_KV_DTYPE_BF16 (0) or HSADB_KV_DTYPE_F32 (1) */
} hsadb_memory_info;

/* Create an empty memory bound to the db's model. HSADB_ERR_EXISTS if the name is taken. */
int hsadb_memory_create(hsadb_db *db, const char *name);

/* Delete a memory and all its records. HSADB_ERR_NOTFOUND if absent, HSADB_ERR_BUSY if an
 * append on it is in progress in this process. */
int hsadb_memory_delete(hsadb_db *db, const char *name);

int hsadb_memory_stat(hsadb_db *db, const char *name, hsadb_memory_info *out);

/* All memories, sorted by name. *out is owned by the caller: release with hsadb_free(). */
int hsadb_memory_list(hsadb_db *db, hsadb_memory_info **out, size_t *n);

void hsadb_free(void *p);

/* Read back stored bytes of a memory's stream: up to n bytes from `offset` into buf
 * (borrowed). *got = bytes copied (0 at or past the end). Reads one consistent view. */
int hsadb_memory_read(hsadb_db *db, const char *name, uint64_t offset, void *buf, size_t n,
                      size_t *got);

/* ---- append ---------------------------------------------------------------------------- */

typedef struct hsadb_appender hsadb_appender;

/* Cancellation callback of long work (appends, the prompt phase of queries and searches):
 * polled between blocks of 256 tokens (well under a second of CPU work each); nonzero stops
 * the work with HSADB_ERR_CANCELLED. */
typedef int (*hsadb_cancel_fn)(void *ctx);

typedef struct hsadb_append_result {
    uint64_t append_id;     /* id of this append within the memory (1, 2, ...) */
    uint64_t bytes;         /* bytes accepted by this append */
    uint64_t chunks;        /* chunk records written by this append */
    uint64_t total_chunks;  /* chunks in the memory afterwards */
    uint64_t total_bytes;   /* bytes in the memory afterwards */
    double   seconds;       /* wall time of the append */
    int      replayed;      /* 1: answered from an earlier append with the same id (nothing
                               was appended now; see hsadb_appender_open_id) */
    int      complete;      /* with replayed: 1 if that append was committed whole, 0 if only
                               the prefix in `bytes` was (it failed or was interrupted) */
} hsadb_append_result;

/* Start an append on memory `name`. Fails with HSADB_ERR_MODEL_MISMATCH if the memory is
 * bound to another model, HSADB_ERR_BUSY if another appender holds it. */
int hsadb_appender_open(hsadb_db *db, const char *name, hsadb_appender **out);

/* Feed bytes (any size, any number of calls; memory use does not grow with the input).
 * Bytes are processed in blocks (256 bytes on the CPU, 16,384 on a GPU) and committed in
 * batches (every 2,048 chunks, or after a block that ends a second since the last commit):
 * if the process dies, every batch committed so far survives and the memory holds a prefix
 * of this append's bytes whose length is a multiple of the block size, with records, tail
 * and counters consistent. On failure the appender keeps nothing uncommitted and must be
 * released with hsadb_appender_abort(). */
int hsadb_appender_write(hsadb_appender *a, const void *bytes, size_t n);

/* Poll cancel(ctx) during hsadb_appender_write (NULL: never). When it returns nonzero the
 * write stops with HSADB_ERR_CANCELLED and the appender can only be aborted: batches
 * committed before stay in the memory (a prefix of this append, see above). */
void hsadb_appender_set_cancel(hsadb_appender *a, hsadb_cancel_fn cancel, void *ctx);

/* Progress so far (may be called between writes, e.g. for a progress bar). */
void hsadb_appender_progress(const hsadb_appender *a, hsadb_append_result *out);

/* Commit everything written (including the partial last chunk, kept in the tail) and free
 * the appender. On success the data is durable (unless HSADB_DB_NOSYNC). out may be NULL.
 * On failure nothing after the last committed batch is kept; the appender is freed. */
int hsadb_appender_commit(hsadb_appender *a, hsadb_append_result *out);

/* Drop everything not yet committed and free the appender. NULL is a no-op. */
void hsadb_appender_abort(hsadb_appender *a);

/* Appends with an idempotency id (client-chosen, 1..HSADB_APPEND_ID_MAX bytes, unique per
 * memory). The id is recorded in the same transaction as the append's first committed batch
 * (and each later one). If a committed append of this memory already holds `id`, nothing is
 * appended: *out is NULL, 0 is returned, and *first receives that append's result with
 * replayed = 1 (bytes, chunks and totals as it left them; complete = 0 if it failed or was
 * interrupted after committing a prefix: a retry never appends that prefix twice). Otherwise
 * it behaves as hsadb_appender_open (*out is the appender; its commit reports replayed = 0).
 * The lookup is repeated under the memory's appender lock, so two concurrent retries cannot
 * both append. id NULL: hsadb_appender_open. */
#define HSADB_APPEND_ID_MAX 64
int hsadb_appender_open_id(hsadb_db *db, const char *name, const char *id, hsadb_appender **out,
                           hsadb_append_result *first);

/* One-shot append of a buffer. */
int hsadb_append(hsadb_db *db, const char *name, const void *bytes, size_t n,
                 hsadb_append_result *out);

/* ---- metadata of appends --------------------------------------------------------------- */

/* An append may carry a few key/value pairs (source, session, role, tags...), stored with it
 * in their own sub-database and read back by append id (a chunk's append_id). Bounds: at
 * most HSADB_META_MAX_PAIRS pairs; keys 1..HSADB_META_MAX_KEY bytes of [A-Za-z0-9._-],
 * unique; values 0..HSADB_META_MAX_VALUE bytes without NUL; keys and values together at
 * most HSADB_META_MAX_BYTES. Search and query do not filter by metadata (yet). */
#define HSADB_META_MAX_PAIRS 16
#define HSADB_META_MAX_KEY   64
#define HSADB_META_MAX_VALUE 1024
#define HSADB_META_MAX_BYTES 4096

typedef struct hsadb_meta_pair {
    const char *key;      /* NUL-terminated */
    const char *value;    /* NUL-terminated */
} hsadb_meta_pair;

/* Attach pairs to the append in progress (a second call replaces them; n = 0 removes
 * them). Written in its own transaction and durable when this returns; HSADB_ERR_INVALID
 * (nothing stored) when a bound above is broken. An append aborted before its first commit
 * leaves no metadata: hsadb_append_meta never returns it, and the next append on the memory
 * removes it. */
int hsadb_appender_set_meta(hsadb_appender *a, const hsadb_meta_pair *pairs, size_t n);

/* The pairs of append `append_id` of memory `name`, in the order they were set: *out is one
 * allocation (the strings inside it) owned by the caller, released with hsadb_free(); NULL
 * with *n = 0 when the append has none. HSADB_ERR_NOTFOUND if the memory or the append
 * (1..n_appends) does not exist. A memory snapshot keeps its appends' metadata;
 * hsadb_memory_delete deletes it. */
int hsadb_append_meta(hsadb_db *db, const char *name, uint64_t append_id,
                      hsadb_meta_pair **out, size_t *n);

/* ---- query and search ------------------------------------------------------------------ */

/* One retrieved chunk with where it came from. */
typedef struct hsadb_chunk_ref {
    uint64_t       chunk;       /* chunk index in the memory (its bytes: [chunk*S, chunk*S+S)) */
    float          score;       /* weight (query) or relevance (search), see below */
    int            persisted;   /* 0: chunk completed by the question itself, not stored */
    uint64_t       append_id;   /* provenance: which append wrote its first byte */
    uint64_t       byte_offset; /* offset of its first byte in the memory's stream */
    int64_t        time;        /* unix time of that append */
    const uint8_t *text;        /* its S bytes, owned by the enclosing result */
    size_t         text_len;
} hsadb_chunk_ref;

/* Chunks one HSA layer chose while producing the answer. score = the retrieval weight w
 * averaged over the answer's tokens and the memory heads; sorted by score, descending. */
typedef struct hsadb_evidence {
    int              layer;     /* HSA layer (upper group) index */
    size_t           n;
    hsadb_chunk_ref *chunks;
} hsadb_evidence;

typedef struct hsadb_answer {
    char           *text;       /* answer bytes, NUL-terminated (may contain other bytes) */
    size_t          len;
    int             n_tokens;   /* generated tokens, <eos> included if produced */
    int             stop;       /* 0: <eos>, 1: max_tokens reached, 2: cancelled */
    double          prompt_seconds, generate_seconds;
    size_t          n_layers;
    hsadb_evidence *layers;     /* [n_layers] */
} hsadb_answer;

/* Streaming: called with each generated piece of answer bytes; return nonzero to stop. */
typedef int (*hsadb_piece_fn)(void *ctx, const char *bytes, size_t n);

typedef struct hsadb_query_options {
    int            max_tokens;  /* answer length limit in tokens; 0 = 256 */
    float          temperature; /* 0 = greedy (default) */
    float          top_p;       /* nucleus sampling when temperature > 0; 0 = 1.0 */
    uint64_t       seed;        /* sampling seed; 0 = fixed default */
    int            evidence_k;  /* chunks listed per layer; 0 = 8 */
    hsadb_piece_fn on_piece;    /* optional */
    void          *ctx;
    hsadb_cancel_fn cancel;     /* optional: polled during the prompt phase; nonzero ends
                                   the query with HSADB_ERR_CANCELLED */
    void          *cancel_ctx;
} hsadb_query_options;

/* Ask a question about a memory: runs the model over `<query> question <answer>` continuing
 * the memory's stream and generates until <eos> or max_tokens. The question is not stored.
 * opts may be NULL. *out is owned by the caller: hsadb_answer_free(). */
int  hsadb_query(hsadb_db *db, const char *name, const char *question, size_t qlen,
                 const hsadb_query_options *opts, hsadb_answer **out);
void hsadb_answer_free(hsadb_answer *a);

/* Search without generating: the k (>= 1) chunks most relevant to the question (fewer if the
 * memory holds fewer eligible chunks; HSADB_ERR_INVALID for k < 1). score = retrieval
 * probability (softmax over all eligible chunks at the <answer> position) averaged over HSA
 * layers and memory heads. *hits is owned by the caller: hsadb_hits_free(). */
typedef struct hsadb_hits {
    size_t           n;
    hsadb_chunk_ref *hits;
} hsadb_hits;

int  hsadb_search(hsadb_db *db, const char *name, const char *question, size_t qlen, int k,
                  hsadb_hits **out);
/* hsadb_search that polls cancel(ctx) during the prompt phase (HSADB_ERR_CANCELLED). */
int  hsadb_search_cancellable(hsadb_db *db, const char *name, const char *question, size_t qlen,
                              int k, hsadb_cancel_fn cancel, void *ctx, hsadb_hits **out);
void hsadb_hits_free(hsadb_hits *h);

/* ---- passage search: lexical (BM25), model, hybrid ----------------------------------------
 *
 * Every memory keeps a lexical index (docs/storage.md, "Lexical index") written in the same
 * transaction as its chunk records: what an append committed is searchable at once. Terms are
 * words, numbers and identifiers (paths, versions, hex ids, e-mail addresses, dotted names:
 * whole and split), case-folded, Snowball-stemmed (English). A *passage* is a window of
 * passage_bytes (whole 256-byte units of 4 chunks) that starts every 256 bytes, so a fact of
 * up to 256 bytes cut by a chunk or unit boundary still lies whole in one passage. Hits never
 * overlap each other. */

enum hsadb_search_mode {
    HSADB_SEARCH_HYBRID  = 0,  /* reciprocal rank fusion (k = 60) of the two rankings below */
    HSADB_SEARCH_LEXICAL = 1,  /* BM25 over the passages; needs no model */
    HSADB_SEARCH_MODEL   = 2,  /* the model's retrieval probability (hsadb_search), summed over
                                  the chunks of each passage */
};

#define HSADB_SEARCH_NO_CONTEXT (-1)   /* context_bytes: the hit text is the passage alone */

typedef struct hsadb_search_options {
    int      mode;           /* hsadb_search_mode; 0 = hybrid */
    int      k;              /* hits wanted, 1..1048576; 0 = 8 */
    float    bm25_k1;        /* BM25 k1 > 0; 0 = the defaults k1 = 1.2 and b = 0.75 */
    float    bm25_b;         /* BM25 b in 0..1, used when bm25_k1 is set */
    int      passage_bytes;  /* passage length: 256..4096, a multiple of 256; 0 = 512 */
    int      context_bytes;  /* the hit text grows by at most this many bytes on each side, to
                                the nearest line or sentence end: 0..65536; 0 = 256;
                                HSADB_SEARCH_NO_CONTEXT = none */
    /* filters (0 = no bound): only bytes of appends first_append..last_append, whose start
     * time lies in time_from..time_to (unix seconds, inclusive), and at or before as_of_append
     * are searched and shown. A passage partly outside is cut to its visible bytes and scored
     * on them alone; term statistics (idf) stay those of the whole memory. */
    uint64_t first_append, last_append, as_of_append;
    int64_t  time_from, time_to;
    /* checked while the model scores the question (modes hybrid and model): when it returns
     * non-zero the search stops with HSADB_ERR_CANCELLED (NULL: never) */
    hsadb_cancel_fn cancel;
    void           *cancel_ctx;
} hsadb_search_options;

typedef struct hsadb_passage_hit {
    uint64_t       start, end;      /* the passage: stream bytes [start, end) */
    uint64_t       text_start;      /* text = stream bytes [text_start, text_start + text_len): */
    const uint8_t *text;            /*   the passage grown to line/sentence ends; owned by the result */
    size_t         text_len;
    uint64_t       append_id;       /* provenance of byte `start`: its append, */
    int64_t        time;            /*   and that append's start time (unix seconds) */
    uint64_t       last_append_id;  /* the append of byte end - 1 */
    float          score;           /* the mode's score: fused RRF, BM25 or model probability */
    float          lexical_score;   /* BM25 (0: no query term in it, or mode model) */
    float          model_score;     /* retrieval probability summed over its chunks (0: lexical) */
    int            lexical_rank;    /* 1-based rank in the lexical / model ranking; 0 = not in */
    int            model_rank;      /*   the top list of that signal (or mode without it) */
} hsadb_passage_hit;

typedef struct hsadb_passages {
    size_t             n;
    hsadb_passage_hit *hits;        /* [n], best first */
    uint64_t           scanned_bytes; /* bytes tokenized at search time (the unindexed end) */
} hsadb_passages;

/* The k passages of memory `name` best matching `question` (1..65536 bytes of any content:
 * invalid UTF-8 is a separator). opts may be NULL (hybrid, k 8). HSADB_ERR_INVALID for an
 * empty or longer question and out-of-range options; HSADB_ERR_NO_MODEL for modes that need
 * the model on a db without one. A question with no term ranks nothing lexically (hybrid then
 * ranks by the model alone). *out is owned by the caller: hsadb_passages_free(). */
int  hsadb_search_passages(hsadb_db *db, const char *name, const char *question, size_t qlen,
                           const hsadb_search_options *opts, hsadb_passages **out);
void hsadb_passages_free(hsadb_passages *p);                /* NULL is a no-op */

typedef struct hsadb_lexical_info {
    uint64_t units;          /* 256-byte units the memory's complete chunks make */
    uint64_t indexed_units;  /* units in its lexical index */
    uint64_t index_bytes;    /* key and value bytes of its index records (pages not counted) */
    int      consistent;     /* 1: the index equals one rebuilt from the chunk records */
    char     detail[160];    /* what differs, when not consistent */
} hsadb_lexical_info;

/* Build what the lexical index of memory `name` lacks (all of it for a memory written before
 * the index existed, or by another index version), in transactions of at most 4096 units,
 * calling progress (may be NULL; nonzero stops with HSADB_ERR_CANCELLED, keeping what was
 * built) after each. Takes the memory's appender lock: HSADB_ERR_BUSY during an append. An
 * appender does the same when it opens. */
typedef int (*hsadb_progress_fn)(void *ctx, uint64_t done, uint64_t total);
int hsadb_lexical_build(hsadb_db *db, const char *name, hsadb_progress_fn progress, void *ctx);

/* Checks the lexical index of `name` against its chunk records (one read transaction: it
 * rebuilds the index in RAM, so it costs about what building does). */
int hsadb_lexical_check(hsadb_db *db, const char *name, hsadb_lexical_info *out);

/* ---- snapshot and restore -------------------------------------------------------------- */

/* Write a consistent, compacted copy of the whole database (memory == NULL) or of one memory
 * into `dest_dir`, which must not exist or be empty. Runs while appends continue; the copy
 * holds exactly what was committed when it started. */
int hsadb_snapshot(hsadb_db *db, const char *memory, const char *dest_dir);

/* Restore a snapshot directory into a new database directory `dest_dir` (must not exist or
 * be empty). If model is not NULL, every memory in the snapshot must be bound to it
 * (HSADB_ERR_MODEL_MISMATCH otherwise, and nothing is written). */
int hsadb_restore(const char *snapshot_dir, const char *dest_dir, const hsadb_model *model);
/* (Both:) a snapshot is complete only once its marker file "hsadb-snapshot" exists: written
 * last, after data.mdb is fsync'd, naming data.mdb's size and XXH3-64 digest. hsadb_restore
 * refuses, with HSADB_ERR_CORRUPT and nothing written, a snapshot without the marker (stopped
 * part-way, or made before markers), one whose data.mdb does not match it (cut short,
 * changed), and one in which hsadb_check finds a damaged record. A symbolic link as
 * dest_dir is refused (HSADB_ERR_INVALID). */

/* ---- integrity check ------------------------------------------------------------------- */

/* One damaged record. Strings are valid during the callback only. */
typedef struct hsadb_damage {
    const char *memory;  /* the memory it belongs to; NULL for LMDB's free list */
    const char *record;  /* "memories", "landmarks", "kv", "chunks", "tails", "appends",
                            "free list" */
    uint64_t    n;       /* chunk or append number; UINT64_MAX when the record has none */
    const char *what;    /* what is wrong, one line */
} hsadb_damage;
typedef int (*hsadb_damage_fn)(void *ctx, const hsadb_damage *d);   /* nonzero stops */
typedef struct hsadb_check_result {
    uint64_t n_records;  /* records walked */
    uint64_t n_damaged;  /* damaged records (each missing record counts) */
} hsadb_check_result;

/* Walk the records of `memory` (NULL: every memory and LMDB's free list) in one read
 * transaction and report each damaged one through fn (may be NULL): value sizes, the records
 * the memory record counts (all present, none extra), chunk and append records' consistency,
 * LMDB's overflow page headers, and each record's checksum where the store has them
 * (docs/storage.md). Returns 0 when the walk completed, damaged or not (*out counts), fn's
 * nonzero value if it stopped the walk, or an error (HSADB_ERR_NOTFOUND: no such memory). */
int hsadb_check(hsadb_db *db, const char *memory, hsadb_damage_fn fn, void *ctx,
                hsadb_check_result *out);

#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

#ifdef __cplusplus
}
#endif
#endif /* HSADB_H */
