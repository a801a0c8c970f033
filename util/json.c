/* util/json.c — recursive-descent JSON parser into an arena of nodes. */
#include "json.h"

#include <stdlib.h>
#include <string.h>

/* The whole tree lives in one arena: nodes and string bytes. Its size is bounded by
 * sizeof(node) * len + len + 1, since every node consumes at least one input byte. */
typedef struct parser {
    const char *p, *end, *start;
    char       *arena;
    size_t      used, cap;
    const char *err;
    int         depth;
} parser;

static void *arena_alloc(parser *ps, size_t n) {
    n = (n + 7) & ~(size_t)7;
    if (ps->used + n > ps->cap) return NULL;
    void *r = ps->arena + ps->used;
    ps->used += n;
    return r;
}

static void skip_ws(parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
        ps->p++;
}

static hsadb_json *parse_value(parser *ps);

static char *parse_string_raw(parser *ps) {
    if (ps->p >= ps->end || *ps->p != '"') { ps->err = "expected string"; return NULL; }
    ps->p++;
    const char *s = ps->p;
    size_t n = 0;
    while (ps->p < ps->end && *ps->p != '"') {
        if (*ps->p == '\\') ps->p++;
        ps->p++, n++;
    }
    if (ps->p >= ps->end) { ps->err = "unterminated string"; return NULL; }
    char *out = arena_alloc(ps, n * 3 + 1), *o = out;
    if (!out) { ps->err = "out of memory"; return NULL; }
    for (const char *q = s; q < ps->p; q++) {
        if (*q != '\\') { *o++ = *q; continue; }
        q++;
        switch (*q) {
        case 'n': *o++ = '\n'; break;
        case 't': *o++ = '\t'; break;
        case 'r': *o++ = '\r'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'u': {
            unsigned v = 0;
            for (int i = 0; i < 4; i++) {
                q++;
                if (q >= ps->p) { ps->err = "bad \\u escape"; return NULL; }
                char c = *q;
                v = v * 16 + (unsigned)(c >= '0' && c <= '9' ? c - '0'
                                        : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                        : c >= 'A' && c <= 'F' ? c - 'A' + 10 : 0);
            }
            if (v < 0x80) *o++ = (char)v;
            else if (v < 0x800) { *o++ = (char)(0xc0 | (v >> 6)); *o++ = (char)(0x80 | (v & 63)); }
            else { *o++ = (char)(0xe0 | (v >> 12)); *o++ = (char)(0x80 | ((v >> 6) & 63));
                   *o++ = (char)(0x80 | (v & 63)); }
            break;
        }
        default: *o++ = *q; break;
        }
    }
    *o = 0;
    ps->p++;
    return out;
}

static hsadb_json *new_node(parser *ps, int type) {
    hsadb_json *j = arena_alloc(ps, sizeof *j);
    if (!j) { ps->err = "out of memory"; return NULL; }
    memset(j, 0, sizeof *j);
    j->type = type;
    return j;
}

static hsadb_json *parse_container(parser *ps, int type) {
    char close = type == JSON_OBJECT ? '}' : ']';
    hsadb_json *j = new_node(ps, type), *last = NULL;
    if (!j) return NULL;
    if (++ps->depth > 64) { ps->err = "nesting too deep"; return NULL; }
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; ps->depth--; return j; }
    for (;;) {
        char *key = NULL;
        skip_ws(ps);
        if (type == JSON_OBJECT) {
            if (!(key = parse_string_raw(ps))) return NULL;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') { ps->err = "expected ':'"; return NULL; }
            ps->p++;
        }
        hsadb_json *v = parse_value(ps);
        if (!v) return NULL;
        v->key = key;
        if (last) last->next = v; else j->child = v;
        last = v;
        j->n++;
        skip_ws(ps);
        if (ps->p < ps->end && *ps->p == ',') { ps->p++; continue; }
        if (ps->p < ps->end && *ps->p == close) { ps->p++; break; }
        ps->err = type == JSON_OBJECT ? "expected ',' or '}'" : "expected ',' or ']'";
        return NULL;
    }
    ps->depth--;
    return j;
}

static hsadb_json *parse_value(parser *ps) {
    skip_ws(ps);
    if (ps->p >= ps->end) { ps->err = "unexpected end of input"; return NULL; }
    char c = *ps->p;
    if (c == '{') return parse_container(ps, JSON_OBJECT);
    if (c == '[') return parse_container(ps, JSON_ARRAY);
    if (c == '"') {
        hsadb_json *j = new_node(ps, JSON_STRING);
        if (j && !(j->string = parse_string_raw(ps))) return NULL;
        return j;
    }
    static const struct { const char *word; int type; double v; } words[] = {
        {"true", JSON_BOOL, 1}, {"false", JSON_BOOL, 0}, {"null", JSON_NULL, 0}};
    for (size_t i = 0; i < 3; i++) {
        size_t n = strlen(words[i].word);
        if ((size_t)(ps->end - ps->p) >= n && memcmp(ps->p, words[i].word, n) == 0) {
            hsadb_json *j = new_node(ps, words[i].type);
            if (j) j->number = words[i].v;
            ps->p += n;
            return j;
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        char buf[64];
        size_t n = 0;
        while (ps->p + n < ps->end && n < sizeof buf - 1 && strchr("+-0123456789.eE", ps->p[n]))
            buf[n] = ps->p[n], n++;
        buf[n] = 0;
        char *endp;
        double v = strtod(buf, &endp);
        if (endp == buf) { ps->err = "bad number"; return NULL; }
        ps->p += endp - buf;
        hsadb_json *j = new_node(ps, JSON_NUMBER);
        if (j) j->number = v;
        return j;
    }
    ps->err = "unexpected character";
    return NULL;
}

hsadb_json *hsadb_json_parse(const char *text, size_t len, const char **err, size_t *err_pos) {
    parser ps = {.p = text, .end = text + len, .start = text};
    ps.cap = (sizeof(hsadb_json) + 8) * (len + 1) + len * 3 + 64;
    ps.arena = malloc(ps.cap);
    if (!ps.arena) { *err = "out of memory"; *err_pos = 0; return NULL; }
    /* The root node is the first allocation, so freeing the root frees the arena. */
    hsadb_json *root = parse_value(&ps);
    if (root) {
        skip_ws(&ps);
        if (ps.p != ps.end) { ps.err = "trailing characters"; root = NULL; }
    }
    if (!root) {
        *err = ps.err ? ps.err : "parse error";
        *err_pos = (size_t)(ps.p - text);
        free(ps.arena);
        return NULL;
    }
    return root;
}

void hsadb_json_free(hsadb_json *root) { free(root); }

hsadb_json *hsadb_json_get(const hsadb_json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (hsadb_json *c = obj->child; c; c = c->next)
        if (c->key && strcmp(c->key, key) == 0) return c;
    return NULL;
}
