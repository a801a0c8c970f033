/*
 * json.c — a minimal streaming JSON writer for the CLI's --json output.
 */
#include "cli.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

void jw_init(jw *w, FILE *f)
{
    memset(w, 0, sizeof *w);
    w->f = f;
}

/* Separator before a value or key. */
static void jw_sep(jw *w)
{
    if (w->after_key) {
        w->after_key = 0;
        return;
    }
    if (w->depth > 0) {
        if (!w->first[w->depth - 1])
            fputc(',', w->f);
        w->first[w->depth - 1] = 0;
    }
}

static void jw_open(jw *w, char c)
{
    jw_sep(w);
    fputc(c, w->f);
    if (w->depth < JW_MAX_DEPTH)
        w->first[w->depth] = 1;
    w->depth++;
}

static void jw_close(jw *w, char c)
{
    if (w->depth > 0)
        w->depth--;
    fputc(c, w->f);
}

void jw_begin_obj(jw *w) { jw_open(w, '{'); }
void jw_end_obj(jw *w)   { jw_close(w, '}'); }
void jw_begin_arr(jw *w) { jw_open(w, '['); }
void jw_end_arr(jw *w)   { jw_close(w, ']'); }

static void jw_write_string(FILE *f, const unsigned char *p, size_t n)
{
    fputc('"', f);
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            switch (c) {
            case '"':  fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            case '\b': fputs("\\b", f); break;
            case '\f': fputs("\\f", f); break;
            default:
                if (c < 0x20 || c == 0x7f)
                    fprintf(f, "\\u%04x", c);
                else
                    fputc(c, f);
            }
            i++;
            continue;
        }
        size_t len = utf8_seq_len(p + i, n - i);
        if (len) {
            fwrite(p + i, 1, len, f);
            i += len;
        } else {
            fprintf(f, "\\u%04x", c);  /* not UTF-8: the byte's Latin-1 reading */
            i++;
        }
    }
    fputc('"', f);
}

void jw_key(jw *w, const char *key)
{
    jw_sep(w);
    jw_write_string(w->f, (const unsigned char *)key, strlen(key));
    fputc(':', w->f);
    w->after_key = 1;
}

void jw_str(jw *w, const char *s)
{
    if (!s) {
        jw_null(w);
        return;
    }
    jw_sep(w);
    jw_write_string(w->f, (const unsigned char *)s, strlen(s));
}

void jw_bytes(jw *w, const void *p, size_t n)
{
    jw_sep(w);
    jw_write_string(w->f, p, n);
}

void jw_int(jw *w, int64_t v)
{
    jw_sep(w);
    fprintf(w->f, "%" PRId64, v);
}

void jw_uint(jw *w, uint64_t v)
{
    jw_sep(w);
    fprintf(w->f, "%" PRIu64, v);
}

void jw_double(jw *w, double v)
{
    jw_sep(w);
    if (isfinite(v))
        fprintf(w->f, "%.9g", v);
    else
        fputs("null", w->f);
}

void jw_bool(jw *w, int b)
{
    jw_sep(w);
    fputs(b ? "true" : "false", w->f);
}

void jw_null(jw *w)
{
    jw_sep(w);
    fputs("null", w->f);
}

void jw_end(jw *w)
{
    fputc('\n', w->f);
    fflush(w->f);
}
