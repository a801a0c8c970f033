/*
 * format.c — escaping and human-readable numbers for the CLI, and the append progress line.
 */
#include "cli.h"

#include <time.h>
#include <unistd.h>

size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t cp;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;                          /* overlong or out of range */
    if (cp >= 0xd800 && cp <= 0xdfff)
        return 0;                          /* surrogate */
    return len;
}

void print_escaped(FILE *f, const void *bytes, size_t n)
{
    const unsigned char *p = bytes;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        if (c < 0x80) {
            switch (c) {
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f); break;
            case '\t': fputs("\\t", f); break;
            case '\r': fputs("\\r", f); break;
            default:
                if (c < 0x20 || c == 0x7f)
                    fprintf(f, "\\x%02x", c);
                else
                    fputc(c, f);
            }
            i++;
            continue;
        }
        size_t len = utf8_seq_len(p + i, n - i);
        /* C1 controls (U+0080..U+009F) are valid UTF-8 but not printable. */
        if (len && !(len == 2 && c == 0xc2 && p[i + 1] < 0xa0)) {
            fwrite(p + i, 1, len, f);
            i += len;
        } else {
            fprintf(f, "\\x%02x", c);
            i++;
        }
    }
}

void fmt_bytes(char *buf, size_t n, uint64_t bytes)
{
    static const char *unit[] = { "KiB", "MiB", "GiB", "TiB", "PiB" };
    if (bytes < 1024) {
        snprintf(buf, n, "%u B", (unsigned)bytes);
        return;
    }
    double v = (double)bytes / 1024.0;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        u++;
    }
    snprintf(buf, n, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

void fmt_rate(char *buf, size_t n, double v)
{
    if (!(v >= 0))
        v = 0;
    if (v < 1000)
        snprintf(buf, n, "%.0f", v);
    else if (v < 1e6)
        snprintf(buf, n, "%.1fk", v / 1e3);
    else
        snprintf(buf, n, "%.2fM", v / 1e6);
}

void fmt_time(char *buf, size_t n, int64_t t)
{
    if (t <= 0) {
        snprintf(buf, n, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm))
        snprintf(buf, n, "%lld", (long long)t);
}

void fmt_duration(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 360000000.0) {
        snprintf(buf, n, "?");
        return;
    }
    unsigned long t = (unsigned long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%lu:%02lu:%02lu", t / 3600, t / 60 % 60, t % 60);
    else
        snprintf(buf, n, "%lu:%02lu", t / 60, t % 60);
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- progress line --------------------------------------------------------------------- */

void progress_start(progress *p, int on, const char *label, uint64_t total, int known)
{
    p->on = on;
    p->tty = isatty(STDERR_FILENO);
    p->label = label;
    p->total = total;
    p->known = known;
    p->t0 = p->last = now_seconds();
    p->drawn = 0;
}

void progress_update(progress *p, uint64_t bytes, uint64_t chunks, int force)
{
    if (!p->on)
        return;
    double t = now_seconds();
    double every = p->tty ? 0.1 : 2.0;
    if (!force && t - p->last < every)
        return;
    p->last = t;
    double el = t - p->t0;
    double rate = el > 0 ? (double)bytes / el : 0;
    char done[32], tot[32], r[32], eta[32];
    fmt_bytes(done, sizeof done, bytes);
    fmt_rate(r, sizeof r, rate);

    if (p->tty)
        fputc('\r', stderr);
    fprintf(stderr, "%s: ", p->label);
    if (p->known && p->total > 0) {
        double frac = (double)bytes / (double)p->total;
        if (frac > 1)
            frac = 1;
        char bar[21];
        int fill = (int)(frac * 20);
        for (int i = 0; i < 20; i++)
            bar[i] = i < fill ? '#' : '.';
        bar[20] = 0;
        fmt_bytes(tot, sizeof tot, p->total);
        if (rate > 0 && bytes < p->total)
            fmt_duration(eta, sizeof eta, (double)(p->total - bytes) / rate);
        else
            snprintf(eta, sizeof eta, bytes >= p->total ? "0:00" : "?");
        fprintf(stderr, "[%s] %5.1f%%  %s / %s  %s tok/s  %llu chunks  ETA %s", bar,
                frac * 100.0, done, tot, r, (unsigned long long)chunks, eta);
    } else {
        fmt_duration(eta, sizeof eta, el);
        fprintf(stderr, "%s  %s tok/s  %llu chunks  %s elapsed", done, r,
                (unsigned long long)chunks, eta);
    }
    if (p->tty) {
        fputs("\033[K", stderr);
        p->drawn = 1;
    } else {
        fputc('\n', stderr);
    }
    fflush(stderr);
}

void progress_clear(progress *p)
{
    if (p->on && p->tty && p->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        p->drawn = 0;
    }
}
