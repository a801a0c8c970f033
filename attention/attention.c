/*
 * attention/attention.c — CPU attention kernels (see attention.h).
 *
 * Every attention here is, per query head, the same three steps over a sequence of keys and
 * values: scores (8 keys at a time: eight dot products accumulated side by side and summed
 * with one transposing reduction), softmax (vectorised exp) and the weighted sum of values
 * (kept in registers, two accumulator sets by key parity). The sequence is described by a
 * kv_seq: row j of it at base + ((r0 + j) mod cap) * ld, so a ring buffer is walked in place. A query's result depends only on its query and its sequence: not on how the
 * sequence is laid out in the ring, nor on which other rows the caller computes.
 * 8-wide vectors of util/vec.h (AVX2 + FMA with -march=x86-64-v3, else its portable path);
 * head dims other than 16, 32 and 64 take slower
 * generic loops.
 */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "vec.h"

/* Keys and values of one kv head: sequence row j lives in row (r0 + j) mod cap, ld floats
 * apart. Contiguous blocks use r0 = 0, cap = their length. */
typedef struct kv_seq {
    const float *k, *v;
    size_t       ld;
    int          r0, cap;
} kv_seq;

/* A position in a sequence: row r of the buffer, at offset o = r * ld. */
typedef struct kv_pos {
    int    r;
    size_t o;
} kv_pos;

static inline kv_pos seq_start(const kv_seq *s) { return (kv_pos){s->r0, (size_t)s->r0 * s->ld}; }

static inline void seq_next(const kv_seq *s, kv_pos *p) {
    if (++p->r == s->cap) p->r = 0, p->o = 0;
    else p->o += s->ld;
}

/* sc[j] = scale * q.k_j for j < n; returns the max. */
static float scores(const float *q, const kv_seq *s, int n, int dh, float scale, float *sc) {
    float mx = -INFINITY;
    kv_pos p = seq_start(s);
    if (dh % 8) {
        for (int j = 0; j < n; j++, seq_next(s, &p)) {
            sc[j] = hsadb_vdot(q, s->k + p.o, dh) * scale;
            mx = sc[j] > mx ? sc[j] : mx;
        }
        return mx;
    }
    const v8 sv = {scale, scale, scale, scale, scale, scale, scale, scale};
    v8 vmx = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    for (int j = 0; j < n; j += 8) {
        const int m = n - j < 8 ? n - j : 8;
        size_t ko[8];                   /* past the end: the last key again (not stored) */
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            ko[r] = p.o;
            if (j + r + 1 < n) seq_next(s, &p);
        }
        v8 a[8] = {{0}};
        for (int i = 0; i < dh; i += 8) {
            const v8 qi = load8(q + i);
            const float *k = s->k + i;
#pragma GCC unroll 8
            for (int r = 0; r < 8; r++) a[r] += qi * load8(k + ko[r]);
        }
        v8 sj = hsum8x8(a) * sv;
        if (m == 8) {
            store8(sc + j, sj);
            vmx = max8(vmx, sj);
        } else {
            for (int r = 0; r < m; r++) sc[j + r] = sj[r], mx = sj[r] > mx ? sj[r] : mx;
        }
    }
    for (int r = 0; r < 8; r++) mx = vmx[r] > mx ? vmx[r] : mx;
    return mx;
}

/* p[j] = exp(p[j] - mx) for j < n; returns their sum. */
static float softmax_exp(float *p, int n, float mx) {
    const v8 m = {mx, mx, mx, mx, mx, mx, mx, mx};
    v8 acc = {0};
    int j = 0;
    for (; j + 8 <= n; j += 8) {
        v8 e = exp8(load8(p + j) - m);
        store8(p + j, e);
        acc += e;
    }
    if (j < n) {                        /* the tail through exp8 too: same bits as in a group */
        float t[8] = {0};
        memcpy(t, p + j, (size_t)(n - j) * sizeof(float));
        v8 e = exp8(load8(t) - m);
        for (int r = 0; r < n - j; r++) p[j + r] = e[r], acc[r] += e[r];
    }
    return hsum8(acc);
}

/* o = c * sum_j p[j] v_j with nv = dh / 8 vectors per row (a constant once inlined, so the
 * accumulators live in registers). */
static inline __attribute__((always_inline)) void weighted_sum_v(const float *p, const kv_seq *s, int n,
                                                                 const int nv, float c, float *o) {
    v8 a[8] = {{0}}, b[8] = {{0}};
    kv_pos at = seq_start(s);
    int j = 0;
    for (; j + 2 <= n; j += 2) {
        const float *v0 = s->v + at.o;
        seq_next(s, &at);
        const float *v1 = s->v + at.o;
        seq_next(s, &at);
        const v8 p0 = {p[j], p[j], p[j], p[j], p[j], p[j], p[j], p[j]};
        const v8 p1 = {p[j + 1], p[j + 1], p[j + 1], p[j + 1], p[j + 1], p[j + 1], p[j + 1], p[j + 1]};
#pragma GCC unroll 8
        for (int i = 0; i < nv; i++) a[i] += p0 * load8(v0 + 8 * i), b[i] += p1 * load8(v1 + 8 * i);
    }
    if (j < n) {
        const float *v0 = s->v + at.o;
        const v8 p0 = {p[j], p[j], p[j], p[j], p[j], p[j], p[j], p[j]};
#pragma GCC unroll 8
        for (int i = 0; i < nv; i++) a[i] += p0 * load8(v0 + 8 * i);
    }
    const v8 cv = {c, c, c, c, c, c, c, c};
#pragma GCC unroll 8
    for (int i = 0; i < nv; i++) store8(o + 8 * i, (a[i] + b[i]) * cv);
}

/* o[dh] = c * sum_j p[j] v_j. */
static void weighted_sum(const float *p, const kv_seq *s, int n, int dh, float c, float *o) {
    switch (dh) {
    case 16: weighted_sum_v(p, s, n, 2, c, o); return;
    case 32: weighted_sum_v(p, s, n, 4, c, o); return;
    case 64: weighted_sum_v(p, s, n, 8, c, o); return;
    }
    memset(o, 0, (size_t)dh * sizeof(float));
    kv_pos at = seq_start(s);
    for (int j = 0; j < n; j++, seq_next(s, &at)) hsadb_vaxpy(p[j], s->v + at.o, o, dh);
    for (int i = 0; i < dh; i++) o[i] *= c;
}

/* One query head over its sequence: out[dh] = w * softmax(scale q.K) V. */
static void attend(const float *q, const kv_seq *s, int n, int dh, float w, float *out, float *scratch) {
    const float scale = 1.f / sqrtf((float)dh);
    float mx = scores(q, s, n, dh, scale, scratch);
    float sum = softmax_exp(scratch, n, mx);
    weighted_sum(scratch, s, n, dh, w / sum, out);
}

void hsadb_attn_window(const float *q, const hsadb_kv_ring *ring, int64_t p0, int n,
                       int H, int Hk, int dh, int W, float *out, float *scratch) {
    const int G = H / Hk, kvd = Hk * dh;
    for (int t = 0; t < n; t++) {
        int64_t p = p0 + t, lo = p - W + 1 < ring->start ? ring->start : p - W + 1;
        int len = (int)(p - lo + 1);
        for (int h = 0; h < H; h++) {
            const int off = (h / G) * dh;
            kv_seq s = {ring->k + off, ring->v + off, (size_t)kvd, (int)(lo % ring->cap), ring->cap};
            attend(q + ((size_t)t * H + h) * dh, &s, len, dh, 1.f, out + ((size_t)t * H + h) * dh, scratch);
        }
    }
}

void hsadb_attn_full(const float *q, int nq, const float *k, const float *v, int n, int H, int Hk,
                     int dh, float *out, float *scratch) {
    const int G = H / Hk, kvd = Hk * dh;
    for (int t = 0; t < nq; t++)
        for (int h = 0; h < H; h++) {
            const int off = (h / G) * dh;
            kv_seq s = {k + off, v + off, (size_t)kvd, 0, n};
            attend(q + ((size_t)t * H + h) * dh, &s, n, dh, 1.f, out + ((size_t)t * H + h) * dh, scratch);
        }
}

void hsadb_attn_hsa(const float *q, int H, int Hm, int dh, int S, int K,
                    const float *const *kblk, const float *const *vblk, const float *w,
                    float *out, float *scratch) {
    const int G = H / Hm;
    float *o = scratch + S;             /* one chunk's output, then added to out */
    memset(out, 0, (size_t)H * dh * sizeof(float));
    for (int h = 0; h < H; h++) {
        const int m = h / G;
        for (int r = 0; r < K; r++) {
            const float *kb = kblk[m * K + r], *vb = vblk[m * K + r];
            const float wr = w[m * K + r];
            if (!kb || wr == 0.f) continue;
            kv_seq s = {kb, vb, (size_t)dh, 0, S};
            attend(q + (size_t)h * dh, &s, S, dh, wr, o, scratch);
            for (int i = 0; i < dh; i++) out[(size_t)h * dh + i] += o[i];
        }
    }
}
