/*
 * attention/attention.c — CPU attention kernels (see attention.h).
 *
 * The inner products and the V accumulation run 8 floats at a time with GCC vector
 * extensions (AVX2+FMA under -march=x86-64-v3); the softmax exponentials use a vectorised
 * exp. Ring buffers are walked as at most two contiguous segments (no modulo per key).
 */
#include "attention.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, 32); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, 32); }

static inline float hsum8(v8 v) {
    return (v[0] + v[4]) + (v[1] + v[5]) + ((v[2] + v[6]) + (v[3] + v[7]));
}

static inline float dot(const float *a, const float *b, int n) {
    v8 acc = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) acc += load8(a + i) * load8(b + i);
    float s = hsum8(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float a, const float *x, float *y, int n) {
    int i = 0;
    v8 av = {a, a, a, a, a, a, a, a};
    for (; i + 8 <= n; i += 8) store8(y + i, load8(y + i) + av * load8(x + i));
    for (; i < n; i++) y[i] += a * x[i];
}

/* exp(x) for softmax arguments (x <= 0), 8 at a time: Cephes' expf polynomial,
 * 2^k * p(r) with k = round(x / ln 2); relative error below 2e-7. */
static inline v8 exp8(v8 xv) {
    __m256 x = _mm256_max_ps((__m256)xv, _mm256_set1_ps(-87.f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return (v8)_mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

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
