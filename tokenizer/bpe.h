/*
 * tokenizer/bpe.h — a Hugging Face tokenizer.json reader and byte-level BPE encoder/decoder.
 *
 * hsadb_tokenizer_open() reads a tokenizer.json (the file `tokenizers` saves; jansson parses
 * it) and builds an encoder whose ids equal those of the reference implementation (Hugging Face
 * `tokenizers` 0.23.2, Rust; its npm binding is the test oracle in tests/tokenizer/) for every
 * valid UTF-8 input. docs/tokenizer.md lists what is supported; everything else is refused at
 * open with HSADB_ERR_BAD_MODEL and a detail naming the unsupported part:
 *
 *   model        "BPE": vocab + merges ("a b" strings or ["a","b"] pairs), ignore_merges,
 *                unk_token/fuse_unk; refused: dropout, byte_fallback, continuing_subword_prefix,
 *                end_of_word_suffix.
 *   normalizer   null or NFC (utf8proc), or a Sequence of those.
 *   pre_tokenizer ByteLevel (add_prefix_space, use_regex), Split (a literal String pattern, or a
 *                Regex pattern that is exactly GPT-2's or cl100k's — each a hand-written scanner —
 *                with any behavior and invert), Sequence of those. Any other regex is refused.
 *   added_tokens split out before BPE (leftmost-longest, like the reference): `normalized` and
 *                `special` honoured; lstrip, rstrip and single_word true are refused.
 *   decoder      ByteLevel (or a Sequence holding only ByteLevel). post_processor is ignored:
 *                encode() never adds BOS/EOS itself (the reference's add_special_tokens=false).
 *
 * Input bytes need not be UTF-8. The pre-tokenizer treats every maximal invalid subsequence
 * (the Unicode "maximal subpart", the unit that Node's and Rust's lossy decoders replace by one
 * U+FFFD) as one character of U+FFFD's class, and BPE then merges the raw bytes, so
 * decode(encode(x)) == x for every byte string. The reference cannot take invalid UTF-8 (its
 * strings are Unicode); for such input the ids equal the reference's on the lossily decoded
 * text except that each piece holding invalid bytes is BPE-merged from those bytes.
 *
 * Errors: functions return 0, a negative HSADB_ERR_* (hsadb.h) with a one-line detail in
 * hsadb_last_error(), or a positive errno: ENOMEM; ERANGE when an output buffer is too small
 * (then *n_out / *len_out hold the size needed and the buffer holds a prefix).
 *
 * Ownership and threads: the handle owns everything it allocates; close frees it. encode and
 * decode take a mutex around the handle's scratch space and word cache, so one handle may be
 * shared by threads (their calls run one at a time; open a handle per thread to run them in
 * parallel). Nothing is allocated per token: scratch grows to the largest input seen.
 */
#ifndef HSADB_BPE_H
#define HSADB_BPE_H

#include <stddef.h>
#include <stdint.h>

typedef struct hsadb_tokenizer hsadb_tokenizer;

/* Read tokenizer.json at `path`. ENOENT/EACCES... if unreadable, HSADB_ERR_BAD_MODEL if it is not
 * JSON, not a byte-level BPE tokenizer, or uses something this module does not support. */
int  hsadb_tokenizer_open(const char *path, hsadb_tokenizer **out);
/* Same, from the file's text in memory (text[0..len)). */
int  hsadb_tokenizer_open_json(const char *text, size_t len, hsadb_tokenizer **out);
void hsadb_tokenizer_close(hsadb_tokenizer *tok);

/* Encode bytes[0..len) (any bytes; len 0 gives 0 ids) into ids_out[0..cap). *n_out = the number
 * of ids the input encodes to; ERANGE when that exceeds cap (ids_out may be NULL when cap is 0). */
int hsadb_tokenizer_encode(hsadb_tokenizer *tok, const void *bytes, size_t len,
                           uint32_t *ids_out, size_t cap, size_t *n_out);

/* Decode ids[0..n) into bytes_out[0..cap): the raw bytes (the reference returns the same bytes
 * as a lossy UTF-8 string). Added tokens decode to their text. *len_out = bytes needed; ERANGE
 * when that exceeds cap. HSADB_ERR_INVALID for an id that names no token (the reference skips
 * those silently). */
int hsadb_tokenizer_decode(hsadb_tokenizer *tok, const uint32_t *ids, size_t n,
                           void *bytes_out, size_t cap, size_t *len_out);

/* The id of a token given by its text (an added token such as "<|endoftext|>", or any model
 * token in its tokenizer.json spelling), or -1 when there is none. */
int64_t hsadb_tokenizer_token_id(const hsadb_tokenizer *tok, const char *text);

/* 1 + the largest id of the model vocabulary and the added tokens (the embedding rows a model
 * needs). */
uint32_t hsadb_tokenizer_vocab_size(const hsadb_tokenizer *tok);

/* 1 when id is an added token marked "special", else 0. */
int hsadb_tokenizer_is_special(const hsadb_tokenizer *tok, uint32_t id);

/* The class the pre-tokenizer's regexes give code point cp: 'L' (\p{L}), 'N' (\p{N}), 'S' (\s) or
 * 'O' (other). Exposed for the tests that compare it with the reference's. */
int hsadb_tokenizer_char_class(uint32_t cp);

#endif
