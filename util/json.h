/*
 * util/json.h — a small JSON reader for config.json and safetensors headers (internal).
 *
 * hsadb_json_parse() builds a tree in one allocation owned by the returned root; free it with
 * hsadb_json_free(). Strings are NUL-terminated copies (escapes decoded; \u limited to
 * ASCII/UTF-8 encoding of the BMP). Lookups return NULL when absent.
 */
#ifndef HSADB_JSON_H
#define HSADB_JSON_H

#include <stddef.h>

enum hsadb_json_type { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT };

typedef struct hsadb_json {
    int                 type;
    double              number;   /* JSON_NUMBER; JSON_BOOL: 0 or 1 */
    char               *string;   /* JSON_STRING */
    char               *key;      /* member name when inside an object */
    struct hsadb_json  *child;    /* first element/member */
    struct hsadb_json  *next;     /* next sibling */
    size_t              n;        /* number of children */
} hsadb_json;

/* Parse text[0..len). Returns NULL on malformed input with a detail in *err (static text)
 * and *err_pos (byte offset). */
hsadb_json *hsadb_json_parse(const char *text, size_t len, const char **err, size_t *err_pos);
void        hsadb_json_free(hsadb_json *root);
hsadb_json *hsadb_json_get(const hsadb_json *obj, const char *key);

#endif
