/*
 * storage/append_meta.h — the metadata of appends, in its own LMDB sub-database (internal;
 * engine/meta.c is its only caller).
 *
 *   "append_meta"  key(memory_id, append_id) -> an opaque blob (engine/meta.c's encoding)
 *
 * key(...) is the store's key: 4-byte big-endian memory id, 8-byte big-endian append id.
 * The sub-database is created by the first write; a store without it has no metadata.
 * Access goes through the store's side-table hook (store.h), so these records are written
 * in their own transactions, not in an append's batch commits.
 *
 * Errors: as store.h (0, HSADB_ERR_*, errno).
 */
#ifndef HSADB_APPEND_META_H
#define HSADB_APPEND_META_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define HSADB_APPEND_META_DB "append_meta"

/* Put (len > 0) or delete (len == 0; absent is fine) the blob of one append. */
int hsadb_append_meta_put(hsadb_store *st, uint32_t memory_id, uint64_t append_id,
                          const void *blob, size_t len);
/* Copy the blob of one append into *blob (malloc'd; caller frees). *blob = NULL, *len = 0
 * when the append has none. */
int hsadb_append_meta_get(hsadb_store *st, uint32_t memory_id, uint64_t append_id,
                          void **blob, size_t *len);
/* Delete every blob of a memory (after the memory itself was deleted). */
int hsadb_append_meta_purge(hsadb_store *st, uint32_t memory_id);
/* Copy every blob of a memory from src into dst (a memory snapshot, same memory id). */
int hsadb_append_meta_copy(hsadb_store *src, hsadb_store *dst, uint32_t memory_id);
/* Number of blobs of a memory (tests: nothing left after a purge). */
int hsadb_append_meta_count(hsadb_store *st, uint32_t memory_id, uint64_t *n);

#endif /* HSADB_APPEND_META_H */
