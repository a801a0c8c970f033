/*
 * storage/lexidx.h — the lexical index inside the LMDB store (internal).
 *
 * Each memory's postings live in the sub-database "lex" of the store's environment, under keys
 * that start with the memory id (so delete, the orphan sweep and snapshots treat them like the
 * other keyed records). docs/storage.md ("Lexical index") is the format:
 *
 *   key(id) 'M'                      -> struct hsadb_lex_meta (32 bytes, LE)
 *   key(id) 'L' block:u32 BE         -> u16 LE term counts of units block*1024 .. (<= 1024)
 *   key(id) 'T' term 0x00 b:u32 BE   -> postings of `term`: (unit delta, tf) pairs, varint-coded
 *                                       (lexical.h); b = the block's first unit, or 0xFFFFFFFF for
 *                                       the open block that later commits extend
 *
 * A *unit* is HSADB_LEX_UNIT_CHUNKS chunks (256 bytes of the stream); unit u holds the terms of
 * the tokens that START in it (tokens may run 64 bytes into the next unit). Unit u is indexed
 * once chunk 4u+4 is stored (its lookahead), so the index of a memory with n_chunks chunks holds
 * exactly units 0 .. hsadb_lexidx_units(n_chunks)-1. hsadb_lexidx_update runs inside the write
 * transaction that stores the chunks (the store's commit hook): records and index commit or
 * vanish together. Search reads the index in the reader's transaction and tokenizes the bytes
 * after the indexed units (at most 4 chunks and the tail) itself.
 *
 * Errors: 0, HSADB_ERR_CORRUPT (a value of the wrong size or encoding, with a detail), ENOMEM,
 * or an LMDB code (the store maps it). Nothing here takes locks: the caller owns the txn.
 */
#ifndef HSADB_LEXIDX_H
#define HSADB_LEXIDX_H

#include <stddef.h>
#include <stdint.h>

#include <lmdb.h>

#define HSADB_LEX_UNIT_CHUNKS 4
#define HSADB_LEX_LEN_BLOCK   1024          /* unit lengths per 'L' record */
#define HSADB_LEX_OPEN_BLOCK  0xffffffffu
#define HSADB_LEX_SEAL_BYTES  384           /* a posting block is sealed past this size */
#define HSADB_LEX_MAX_UNITS   0xfffffffeull /* units a memory may index (1 TiB of text) */

struct hsadb_lex_meta {
    uint32_t version;      /* HSADB_LEX_VERSION of the terms; another value: rebuild */
    uint32_t unit_bytes;   /* HSADB_LEX_UNIT_CHUNKS * S */
    uint64_t n_units;      /* units 0..n_units-1 are indexed */
    uint64_t n_terms;      /* terms in those units (sum of their lengths) */
    uint64_t reserved;
};

/* What a step sees of a transaction: the txn, the databases, the memory as of this txn. */
typedef struct hsadb_lexidx_txn {
    MDB_txn *txn;
    MDB_dbi  chunks, lex;
    uint32_t id;
    uint32_t chunk_size;   /* S */
    uint64_t n_chunks;     /* chunk records 0..n_chunks-1 exist in txn */
    uint32_t value_tail;   /* bytes after a chunk record's bytes (the store's checksum, format 3) */
} hsadb_lexidx_txn;

/* Units that a memory of n_chunks chunks indexes (each unit needs one chunk of lookahead). */
static inline uint64_t hsadb_lexidx_units(uint64_t n_chunks) {
    uint64_t u = n_chunks > HSADB_LEX_UNIT_CHUNKS ? (n_chunks - 1) / HSADB_LEX_UNIT_CHUNKS : 0;
    return u < HSADB_LEX_MAX_UNITS ? u : HSADB_LEX_MAX_UNITS;
}

/* Scratch of the writer side (tokenizer, term table, posting buffers), reused across commits
 * so that steady-state commits do not allocate. */
typedef struct hsadb_lexidx_writer hsadb_lexidx_writer;
int  hsadb_lexidx_writer_open(hsadb_lexidx_writer **out);
void hsadb_lexidx_writer_close(hsadb_lexidx_writer *w);     /* NULL is a no-op */

/* The memory's meta record; all zero (version 0) if it has none. */
int hsadb_lexidx_meta_get(const hsadb_lexidx_txn *t, struct hsadb_lex_meta *m);

/* Indexes units meta.n_units .. min(hsadb_lexidx_units(n_chunks), meta.n_units + max_units)
 * (max_units 0: all) and updates the meta record. A memory whose meta has another version is
 * left alone (*stale = 1): hsadb_lexidx_drop first. *n_units (may be NULL) = units indexed after. */
int hsadb_lexidx_update(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, uint64_t max_units,
                        uint64_t *n_units, int *stale);

/* Deletes up to max_keys of the memory's index records (all kinds); *done = 1 when none is left. */
int hsadb_lexidx_drop(const hsadb_lexidx_txn *t, size_t max_keys, int *done);

/* ---- reading ---- */

typedef struct hsadb_lex_posting { uint32_t unit, tf; } hsadb_lex_posting;

/* Appends the postings of `term` with unit < max_unit to *v (grown with realloc; *cap kept). */
int hsadb_lexidx_postings(const hsadb_lexidx_txn *t, const char *term, size_t len, uint64_t max_unit,
                          hsadb_lex_posting **v, size_t *n, size_t *cap);

/* Term counts of units [first, first + n) into out[first .. first + n). */
int hsadb_lexidx_lengths(const hsadb_lexidx_txn *t, uint64_t first, uint64_t n, uint16_t *out);

/* Rebuilds the index of units 0..meta.n_units-1 in memory and compares it with the stored one,
 * record by record. 0 with *ok = 1 if equal and meta.n_units == hsadb_lexidx_units(n_chunks);
 * otherwise *ok = 0 and `why` (n bytes) says what differs. *bytes = the stored index's key and
 * value bytes. */
int hsadb_lexidx_verify(hsadb_lexidx_writer *w, const hsadb_lexidx_txn *t, int *ok, char *why, size_t n,
                        uint64_t *bytes);

#endif
