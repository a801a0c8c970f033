/*
 * attention/attention.c — CPU attention kernels (see attention.h).
 *
 * The inner products and the V accumulation run 8 floats at a time (util/vec.h: AVX2+FMA
 * under -march=x86-64-v3); the softmax exponentials use a vectorised exp. Ring buffers are walked as at most two contiguous segments (no modulo per key).
 */
#include "attention.h"

#include <math.h>
#include <string.h>

#include "vec.h"

#define dot hsadb_vdot
#define axpy hsadb_vaxpy

/* scores[0..n) = exp(scores - max); returns their sum. */
static inline float softmax_exp(float *s, int n, float mx) {
    v8 m = {mx, mx, mx, mx, mx, mx, mx, mx}, acc = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        v8 e = exp8(load8(s + i) - m);
        store8(s + i, e);
        acc += e;
    }
    float sum = hsum8(acc);
    for (; i < n; i++) sum += (s[i] = expf(s[i] - mx));
    return sum;
}

/* Scores of one query head against `len` keys starting at ring position `lo`, written to
 * sc; returns the max. The ring is walked as two contiguous segments. */
static float ring_scores(const float *qh, const hsadb_kv_ring *ring, int64_t lo, int len, int kvd, int off,
                         int dh, float scale, float *sc) {
    float mx = -INFINITY;
    int r0 = (int)(lo % ring->cap);
    for (int j = 0, r = r0; j < len; j++, r = r + 1 == ring->cap ? 0 : r + 1) {
        sc[j] = dot(qh, ring->k + (size_t)r * kvd + off, dh) * scale;
        mx = sc[j] > mx ? sc[j] : mx;
    }
    return mx;
}

void hsadb_attn_window(const float *q, const hsadb_kv_ring *ring, int64_t p0, int n,
                       int H, int Hk, int dh, int W, float *out, float *scratch) {
    const float scale = 1.f / sqrtf((float)dh);
    const int G = H / Hk, kvd = Hk * dh;
    for (int t = 0; t < n; t++) {
        int64_t p = p0 + t, lo = p - W + 1 < ring->start ? ring->start : p - W + 1;
        int len = (int)(p - lo + 1);
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)t * H * dh + (size_t)h * dh;
            const int off = (h / G) * dh;
            float mx = ring_scores(qh, ring, lo, len, kvd, off, dh, scale, scratch);
            float inv = 1.f / softmax_exp(scratch, len, mx);
            float *o = out + (size_t)t * H * dh + (size_t)h * dh;
            memset(o, 0, (size_t)dh * sizeof(float));
            int r = (int)(lo % ring->cap);
            for (int j = 0; j < len; j++, r = r + 1 == ring->cap ? 0 : r + 1)
                axpy(scratch[j] * inv, ring->v + (size_t)r * kvd + off, o, dh);
        }
    }
}

void hsadb_attn_full(const float *q, const float *k, const float *v, int n, int H, int Hk,
                     int dh, float *out, float *scratch) {
    const float scale = 1.f / sqrtf((float)dh);
    const int G = H / Hk, kvd = Hk * dh;
    for (int t = 0; t < n; t++) {
        for (int h = 0; h < H; h++) {
            const float *qh = q + (size_t)t * H * dh + (size_t)h * dh;
            const int off = (h / G) * dh;
            float mx = -INFINITY;
            for (int j = 0; j < n; j++) {
                scratch[j] = dot(qh, k + (size_t)j * kvd + off, dh) * scale;
                mx = scratch[j] > mx ? scratch[j] : mx;
            }
            float inv = 1.f / softmax_exp(scratch, n, mx);
            float *o = out + (size_t)t * H * dh + (size_t)h * dh;
            memset(o, 0, (size_t)dh * sizeof(float));
            for (int j = 0; j < n; j++) axpy(scratch[j] * inv, v + (size_t)j * kvd + off, o, dh);
        }
    }
}

void hsadb_attn_hsa(const float *q, int H, int Hm, int dh, int S, int K,
                    const float *const *kblk, const float *const *vblk, const float *w,
                    float *out, float *scratch) {
    const float scale = 1.f / sqrtf((float)dh);
    const int G = H / Hm;
    memset(out, 0, (size_t)H * dh * sizeof(float));
    for (int h = 0; h < H; h++) {
        const int m = h / G;
        const float *qh = q + (size_t)h * dh;
        float *o = out + (size_t)h * dh;
        for (int r = 0; r < K; r++) {
            const float *kb = kblk[m * K + r], *vb = vblk[m * K + r];
            const float wr = w[m * K + r];
            if (!kb || wr == 0.f) continue;
            float mx = -INFINITY;
            for (int s = 0; s < S; s++) {
                scratch[s] = dot(qh, kb + (size_t)s * dh, dh) * scale;
                mx = scratch[s] > mx ? scratch[s] : mx;
            }
            const float c = wr / softmax_exp(scratch, S, mx);
            for (int s = 0; s < S; s++) axpy(c * scratch[s], vb + (size_t)s * dh, o, dh);
        }
    }
}
