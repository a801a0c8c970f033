/*
 * storage/store.h — the LMDB store of hsadb (internal; the engine is its only caller).
 *
 * One database directory is one LMDB environment (data.mdb + lock.mdb), readable by LMDB's
 * own tools (mdb_stat -a, mdb_dump -s memories). Named sub-databases:
 *
 *   "meta"       "format" -> u32 LE format version (HSADB_STORE_FORMAT)
 *                "next_memory_id" -> u32 LE
 *   "memories"   memory name (bytes, no NUL)      -> struct hsadb_memory_rec (packed, LE)
 *   "landmarks"  key(memory_id, chunk)            -> landmark, Hm*dr values of kv_dtype, then
 *                                                    the K/V block's last `spill` bytes
 *   "kv"         key(memory_id, chunk)            -> K block [S][Hm][dh] then V block, kv_dtype,
 *                                                    less its last `spill` bytes
 *   "chunks"     key(memory_id, chunk)            -> struct hsadb_chunk_meta + the chunk's S bytes
 *   "tails"      key(memory_id)                   -> tail blob (opaque here; the engine's format)
 *   "appends"    key(memory_id, append_id)        -> struct hsadb_append_rec
 *   "append_ids" key(memory_id) + client id bytes -> u64 LE append id (idempotency keys)
 *
 *   key(memory_id, n) = 4-byte big-endian memory id then 8-byte big-endian n, so that LMDB's
 *   byte order is numeric order and a memory's records are contiguous (MDB_APPEND-friendly).
 *
 *   spill (format 2; 0 in format 1): (kv bytes + 16) mod page size when that is at most 64, else
 *   0. LMDB puts a large value into overflow pages behind a 16-byte header, so a K/V block of a
 *   whole number of pages (16 KiB for the shipped geometry) would need one more page for its
 *   last 16 bytes; those ride in the landmark record instead. Readers return whole blocks.
 *
 * Durability: every commit is one LMDB write transaction (fsync'd unless
 * HSADB_STORE_NOSYNC). A batch commit writes its chunk records, the new tail, the memory
 * record's counters and the append record together: after a crash the memory is exactly as
 * of some commit. The map grows by itself (MDB_MAP_FULL -> double, retry the batch; another
 * process's growth -> MDB_MAP_RESIZED -> adopt it).
 *
 * Errors: 0, negative HSADB_ERR_* (hsadb.h) or positive errno. LMDB errors are mapped:
 * MDB_NOTFOUND -> HSADB_ERR_NOTFOUND, MDB_CORRUPTED/MDB_PAGE_NOTFOUND/MDB_INVALID ->
 * HSADB_ERR_CORRUPT, MDB_VERSION_MISMATCH -> HSADB_ERR_VERSION, errno values pass through
 * (ENOSPC for a full disk), anything else -> HSADB_ERR_STORE with the mdb_strerror text in
 * hsadb_last_error().
 */
#ifndef HSADB_STORE_H
#define HSADB_STORE_H

#include <stddef.h>
#include <stdint.h>

#define HSADB_STORE_FORMAT 3u  /* 2: the K/V spill (above); 3: every value ends with its
                                  XXH3-64 checksum. Format-1 and -2 stores still open */
#define HSADB_NAME_MAX 128

enum hsadb_kv_dtype { HSADB_KV_BF16 = 0, HSADB_KV_F32 = 1 };

/* Per memory, value of "memories". Fixed layout, little-endian, 8-byte fields aligned. */
struct hsadb_memory_rec {
    uint32_t id;               /* memory id, unique in the db, never reused */
    uint32_t kv_dtype;         /* enum hsadb_kv_dtype */
    uint8_t  fingerprint[32];  /* SHA-256 of the model's weights file */
    uint32_t chunk_size;       /* S  } geometry, checked against the model on open */
    uint32_t mem_heads;        /* Hm } */
    uint32_t head_dim;         /* dh } */
    uint32_t retrieval_dim;    /* dr } */
    uint64_t n_chunks;         /* chunk records 0..n_chunks-1 exist */
    uint64_t n_bytes;          /* bytes of the stream (committed) */
    uint64_t n_appends;        /* append records 1..n_appends exist */
    int64_t  created;          /* unix seconds */
    int64_t  updated;          /* unix seconds of the last commit */
};

/* Prefix of a "chunks" value; the chunk's S bytes follow it. */
struct hsadb_chunk_meta {
    uint64_t append_id;        /* append that wrote the chunk's first byte */
    uint64_t byte_offset;      /* = chunk * S; kept so records are self-describing */
    int64_t  time;             /* unix seconds of that append's start */
};

/* Value of "appends". */
struct hsadb_append_rec {
    uint64_t start_offset;     /* stream offset of the append's first byte */
    uint64_t bytes;            /* bytes of this append committed so far */
    uint64_t chunks;           /* chunk records completed by this append so far */
    int64_t  time_start, time_end;
    uint32_t state;            /* 0 in progress (or interrupted), 1 complete */
    uint32_t pad;
};

typedef struct hsadb_store        hsadb_store;
typedef struct hsadb_store_reader hsadb_store_reader;
typedef struct hsadb_store_writer hsadb_store_writer;

enum hsadb_store_flags {
    HSADB_STORE_RDONLY = 1 << 0,
    HSADB_STORE_NOSYNC = 1 << 1, /* MDB_NOSYNC (no WRITEMAP); hsadb_store_sync() flushes */
    HSADB_STORE_CREATE = 1 << 2, /* mkdir the directory if missing */
    HSADB_STORE_NO_APPEND_LOCK = 1 << 3, /* tests only: no cross-process appender lock, so the
                                            commit-time check can be tested; nothing outside
                                            this internal API (no option, no environment
                                            variable) sets it */
    HSADB_STORE_NOLEX  = 1 << 4, /* commits do not extend the lexical index (benchmarks); it
                                    lags, and a later hsadb_store_writer_lex step catches up */
};

/* Open the environment in `dir`. Checks the "format" key (HSADB_ERR_VERSION if newer,
 * HSADB_ERR_CORRUPT if the file is not an LMDB env / garbage). */
int  hsadb_store_open(const char *dir, unsigned flags, hsadb_store **out);
void hsadb_store_close(hsadb_store *st);
int  hsadb_store_sync(hsadb_store *st);

/* ---- memories ---- */

/* rec->id is assigned by the store; the caller fills kv_dtype, fingerprint and geometry.
 * HSADB_ERR_EXISTS if taken, HSADB_ERR_INVALID for a bad name. */
int hsadb_store_memory_create(hsadb_store *st, const char *name, struct hsadb_memory_rec *rec);
int hsadb_store_memory_get(hsadb_store *st, const char *name, struct hsadb_memory_rec *out);
/* Deletes the memory record and all of its landmarks, kv, chunks, tail and appends (in one
 * or more transactions: the memory record goes first, so a crash leaves only unreachable
 * records that a later delete or compaction removes). */
int hsadb_store_memory_delete(hsadb_store *st, const char *name);
/* Calls fn for each memory in name order; fn returning nonzero stops and is returned. */
int hsadb_store_memory_foreach(hsadb_store *st,
                               int (*fn)(void *ctx, const char *name,
                                         const struct hsadb_memory_rec *rec),
                               void *ctx);
/* Approximate on-disk bytes of a memory's records (sum of value sizes). */
int hsadb_store_memory_bytes(hsadb_store *st, const char *name, uint64_t *out);

/* ---- side tables: a narrow hook for modules that keep their own sub-database ----
 * (storage/append_meta.c). fn gets the LMDB transaction (an MDB_txn *), the sub-database
 * `side` (an MDB_dbi) and whether it exists (a store that never wrote it has none: a read
 * gets exists = 0). side_write runs fn in a write transaction, creating `side`, with the
 * store's map growth: after MDB_MAP_FULL fn runs again from scratch, so it must derive
 * everything from ctx. side_read runs fn in a read transaction. Errors as above; fn's own
 * return value (0, HSADB_ERR_*, errno or an LMDB code) is mapped the same way. */
typedef int (*hsadb_store_side_fn)(void *txn, unsigned dbi, int exists, void *ctx);
int hsadb_store_side_write(hsadb_store *st, const char *side, hsadb_store_side_fn fn, void *ctx,
                           const char *what);
int hsadb_store_side_read(hsadb_store *st, const char *side, hsadb_store_side_fn fn, void *ctx);
/* The id of memory `name` (never reused in a store; HSADB_ERR_NOTFOUND if absent). */
int hsadb_store_memory_id(hsadb_store *st, const char *name, uint32_t *id);

/* ---- reading: a consistent view (one LMDB read transaction) ---- */

/* Pointers returned by reader calls point into the map and stay valid until
 * hsadb_store_reader_end(). Do not hold a reader for long (it pins pages). */
int  hsadb_store_reader_begin(hsadb_store *st, const char *name, hsadb_store_reader **out,
                              struct hsadb_memory_rec *rec);
/* Copy landmarks of chunks [first, first+n) into dst (n * Hm*dr values of kv_dtype). */
int  hsadb_store_reader_landmarks(hsadb_store_reader *r, uint64_t first, uint64_t n, void *dst);
/* K/V block of one chunk: *kv points at K [S][Hm][dh] followed by V, kv_dtype values,
 * 16-byte aligned; *len is its byte length. Zero-copy (into the map) when the memory has no
 * spill; otherwise the block is assembled in a buffer of the reader, valid until the next
 * hsadb_store_reader_kv call on this reader. */
int  hsadb_store_reader_kv(hsadb_store_reader *r, uint64_t chunk, const void **kv, size_t *len);
/* The K/V blocks of chunks [first, first+n) copied into dst ([n][kv bytes]) — the bulk read
 * behind the GPU memory tier. They are read from data.mdb at the records' file offsets with
 * io_uring (64 reads in flight), with pread where io_uring is not usable, and copied out of
 * the map where the file cannot be read; HSADB_IO=uring|pread|map forces one path (tests). */
int  hsadb_store_reader_kv_batch(hsadb_store_reader *r, uint64_t first, uint64_t n, void *dst);
/* The same for any chunks, in the order given: chunks[0..n-1] -> dst [n][kv bytes] (the GPU
 * block cache's misses). A chunk past the view's n_chunks gives HSADB_ERR_NOTFOUND. */
int  hsadb_store_reader_kv_list(hsadb_store_reader *r, const uint64_t *chunks, uint64_t n, void *dst);
/* Chunk meta (copied) and a pointer to its S bytes. */
int  hsadb_store_reader_chunk(hsadb_store_reader *r, uint64_t chunk,
                              struct hsadb_chunk_meta *meta, const uint8_t **bytes);
/* Tail blob (zero-copy); *len = 0 and *p = NULL if the memory has no tail yet. */
int  hsadb_store_reader_tail(hsadb_store_reader *r, const void **p, size_t *len);
int  hsadb_store_reader_append(hsadb_store_reader *r, uint64_t append_id,
                               struct hsadb_append_rec *out);
void hsadb_store_reader_end(hsadb_store_reader *r);

/* ---- writing: one appender per memory ---- */

/* Begin an append on `name`: takes this process's lock on the memory (HSADB_ERR_BUSY if
 * already held) and allocates append_id = n_appends + 1 (the append record is written with
 * the first commit). *rec receives the memory record as of now. */
int  hsadb_store_writer_begin(hsadb_store *st, const char *name, int64_t now,
                              hsadb_store_writer **out, struct hsadb_memory_rec *rec);
uint64_t hsadb_store_writer_append_id(const hsadb_store_writer *w);
/* Stage the next chunk record (chunk index must be n_chunks + number staged). The data is
 * copied into the writer's batch buffer; nothing is written until commit. */
int  hsadb_store_writer_put_chunk(hsadb_store_writer *w, const void *landmark,
                                  const void *kv, const struct hsadb_chunk_meta *meta,
                                  const uint8_t *bytes);
/* Commit the staged chunks together with the new tail blob (copied), the memory's new
 * n_bytes, and this append's progress (bytes so far; `final` marks it complete). One write
 * transaction, retried after growing the map. On error nothing of the batch is written and
 * the staged chunks are dropped. */
int  hsadb_store_writer_commit(hsadb_store_writer *w, const void *tail, size_t tail_len,
                               uint64_t n_bytes, uint64_t append_bytes, int final);
/* Double buffering, so that a commit (LMDB write + fsync) overlaps the staging of the next
 * chunks: seal moves the staged chunks into the writer's sealed batch (HSADB_ERR_INVALID if
 * one is still there); commit_sealed commits that batch with the tail, as commit does, and
 * may run on another thread while this one stages the following chunks with put_chunk
 * (nothing else may be called on the writer meanwhile). The tail and n_bytes must describe
 * the stream as of the sealed chunks. After a failed commit_sealed the staged chunks no
 * longer follow the memory: end the writer. commit refuses while a sealed batch waits. */
int  hsadb_store_writer_seal(hsadb_store_writer *w);
int  hsadb_store_writer_commit_sealed(hsadb_store_writer *w, const void *tail, size_t tail_len,
                                      uint64_t n_bytes, uint64_t append_bytes, int final);
/* Idempotency ids ("append_ids": key(memory_id) + id bytes -> append id). set_id gives this
 * append a client-chosen id of 1..HSADB_STORE_APPEND_ID_MAX bytes: every commit of the append
 * records it in the same transaction (HSADB_ERR_EXISTS if another append holds it).
 * append_id_find looks an id up: its append id and append record, HSADB_ERR_NOTFOUND if no
 * committed append has it. */
#define HSADB_STORE_APPEND_ID_MAX 64
int hsadb_store_writer_set_id(hsadb_store_writer *w, const void *id, size_t len);
int hsadb_store_append_id_find(hsadb_store *st, const char *name, const void *id, size_t len,
                               uint64_t *append_id, struct hsadb_append_rec *rec);
/* Number of chunks staged and not yet committed (or sealed). */
size_t hsadb_store_writer_staged(const hsadb_store_writer *w);
/* Timing of the calling thread's last write transaction (diagnostics: HSADB_APPEND_TRACE):
 * seconds spent in its puts (copies into LMDB's pages) and in mdb_txn_commit (writing the
 * dirty pages and, unless the store is nosync, syncing them). */
void   hsadb_store_last_write_times(double *put_s, double *commit_s);
/* Release the lock; staged, uncommitted data is dropped. */
void hsadb_store_writer_end(hsadb_store_writer *w);

/* ---- snapshot / restore ---- */

/* Compacting hot copy of the whole env (memory == NULL: mdb_env_copy2 MDB_CP_COMPACT) or of
 * one memory (a new env with that memory's records as of one read transaction) into
 * dest_dir (created if missing; must be empty). */
int hsadb_store_snapshot(hsadb_store *st, const char *memory, const char *dest_dir);
/* The same, with `extra` run on the finished copy before its completion marker is written
 * (what the engine keeps beside the records, e.g. append metadata: the marker then seals it
 * too). An error from extra fails the snapshot and removes what was written. */
typedef int (*hsadb_store_snapshot_extra_fn)(hsadb_store *src, const char *dest_dir, void *ctx);
int hsadb_store_snapshot_with(hsadb_store *st, const char *memory, const char *dest_dir,
                              hsadb_store_snapshot_extra_fn extra, void *ctx);
/* A snapshot is complete once its marker file "hsadb-snapshot" exists: written last, after
 * data.mdb is fsync'd, through a renamed temporary file, naming data.mdb's size and XXH3-64
 * digest (docs/storage.md §7). hsadb_store_snapshot_verify checks that the marker exists and
 * parses and that data.mdb matches it: HSADB_ERR_CORRUPT ("incomplete", "cut short",
 * "damaged") otherwise, errno values for unreadable files. `memory` (may be NULL) receives
 * the memory's name for a one-memory snapshot, "" for a whole-database one. */
int hsadb_store_snapshot_verify(const char *dir, char *memory, size_t memory_cap);
/* The compacting whole-env copy of a snapshot, without a marker (restore's copy). */
int hsadb_store_copy(hsadb_store *st, const char *dest_dir);

/* ---- check ---- */

/* One damaged record, as hsadb_store_check reports it. Strings are valid during the call. */
struct hsadb_store_damage {
    const char *memory;   /* the memory it belongs to; NULL for the free list or a bad name */
    const char *db;       /* "memories", "landmarks", "kv", "chunks", "tails", "appends",
                             "free list" */
    uint64_t    n;        /* chunk or append number (free list: txn id); UINT64_MAX: none */
    const char *what;     /* what is wrong, one line */
};
typedef int (*hsadb_store_damage_fn)(void *ctx, const struct hsadb_store_damage *d);
struct hsadb_store_check_result {
    uint64_t n_records;   /* records walked */
    uint64_t n_damaged;   /* damaged (a run of missing records counts each) */
};
/* Walks memory `name` (NULL: every memory, then LMDB's free list) in one read transaction
 * and calls fn (may be NULL) for each damaged record: sizes, the exact key ranges the
 * memory record names, chunk and append records' consistency, LMDB overflow page headers,
 * and (format 3) each record's checksum. Returns 0 when the walk completed, whatever it
 * found (*out counts it), fn's nonzero value if fn stopped it, or an error
 * (HSADB_ERR_NOTFOUND for an unknown memory, ENOMEM, ...). */
int hsadb_store_check(hsadb_store *st, const char *name, hsadb_store_damage_fn fn, void *ctx,
                      struct hsadb_store_check_result *out);

/* ---- the lexical index (storage/lexidx.h) ----
 * Its records live in the sub-database "lex", keyed by memory id like the others (delete,
 * the orphan sweep and snapshots carry them). Every commit of a writer extends it in the same
 * transaction as the chunk records (the commit hook in store.c). */
struct hsadb_lexidx_txn;
struct hsadb_lexidx_writer;
/* The reader's transaction as the lexical index reads it (valid until reader_end).
 * HSADB_ERR_NOTFOUND for a read-only store made before the index existed. */
int hsadb_store_reader_lex(hsadb_store_reader *r, struct hsadb_lexidx_txn *out);
/* Runs fn in one write transaction of the writer's memory (nothing staged), after checking the
 * memory is still as the writer last committed it: catching the index up, or dropping a stale
 * one, in bounded steps. Retried from scratch after map growth, like every write. */
typedef int (*hsadb_store_lex_fn)(const struct hsadb_lexidx_txn *t, struct hsadb_lexidx_writer *w,
                                  void *ctx);
int hsadb_store_writer_lex(hsadb_store_writer *w, hsadb_store_lex_fn fn, void *ctx);

#endif /* HSADB_STORE_H */
