/*
 * cli.h — helpers of the hsadb command-line tool (tools/cli/): a small JSON writer, text
 * escaping and human-readable formatting, and the append progress line. The tool itself is
 * in hsadb.c and uses only the public contract include/hsadb.h.
 */
#ifndef HSADB_CLI_H
#define HSADB_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- json.c: streaming JSON writer ----------------------------------------------------- */

#define JW_MAX_DEPTH 32

typedef struct jw {
    FILE         *f;
    int           depth;
    unsigned char first[JW_MAX_DEPTH]; /* 1 while the container at that depth is empty */
    int           after_key;           /* a key was written; the next value needs no comma */
} jw;

void jw_init(jw *w, FILE *f);
void jw_begin_obj(jw *w);
void jw_end_obj(jw *w);
void jw_begin_arr(jw *w);
void jw_end_arr(jw *w);
void jw_key(jw *w, const char *key);
void jw_str(jw *w, const char *s);                /* NULL writes null */
/* A string from arbitrary bytes: valid UTF-8 is kept, control characters are escaped, and each
 * byte that is not part of valid UTF-8 is written as \u00XX (its Latin-1 reading). */
void jw_bytes(jw *w, const void *p, size_t n);
void jw_int(jw *w, int64_t v);
void jw_uint(jw *w, uint64_t v);
void jw_double(jw *w, double v);                  /* NaN and infinities write null */
void jw_bool(jw *w, int b);
void jw_null(jw *w);
void jw_end(jw *w);                               /* ends the document with a newline */

/* ---- format.c -------------------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence starting at p (1..4), or 0 if p[0] does not start one.
 * p[0] must be >= 0x80. */
size_t utf8_seq_len(const unsigned char *p, size_t n);

/* Write bytes for a terminal: printable ASCII and valid UTF-8 as they are; backslash, \n, \t,
 * \r escaped; every other byte as \xNN. */
void print_escaped(FILE *f, const void *p, size_t n);

void   fmt_bytes(char *buf, size_t n, uint64_t bytes);   /* "1.5 MiB", "512 B" */
void   fmt_rate(char *buf, size_t n, double per_s);      /* "950", "12.3k", "1.20M" */
void   fmt_time(char *buf, size_t n, int64_t unix_time); /* "2025-01-02T03:04:05Z"; 0 -> "-" */
void   fmt_duration(char *buf, size_t n, double seconds);/* "0:07", "1:02:03" */
double now_seconds(void);                                /* monotonic clock */

/* ---- format.c: one progress line on stderr ------------------------------------------- */

typedef struct progress {
    int         on;        /* draw at all */
    int         tty;       /* redraw one line in place; else print a line every few seconds */
    const char *label;
    uint64_t    total;     /* bytes expected, when known */
    int         known;
    double      t0, last;
    int         drawn;     /* a line is on screen (tty mode) */
} progress;

void progress_start(progress *p, int on, const char *label, uint64_t total, int known);
void progress_update(progress *p, uint64_t bytes, uint64_t chunks, int force);
void progress_clear(progress *p);  /* erase the line (tty) before other output */

#endif /* HSADB_CLI_H */
