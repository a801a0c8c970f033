/*
 * util/vec.h — 8-wide float helpers for the CPU kernels.
 *
 * With AVX2 and FMA enabled (-march=x86-64-v3, CMake's default HSADB_MARCH) hsum8x8, max8 and
 * exp8 use AVX intrinsics; otherwise (HSADB_MARCH=generic, or a CPU without them) a portable
 * path of GCC vector extensions and scalar lanes, which the compiler vectorises for the
 * target it has. hsum8x8 adds in the same order on both paths (bit-identical); exp8 may
 * differ in the last bit (no fused multiply-add on the portable path).
 *
 *   v8, load8/store8       unaligned 8-float loads and stores
 *   hsum8                  horizontal sum
 *   hsum8x8                the horizontal sums of 8 vectors at once (lane r = sum of a[r]);
 *                          every lane is summed in the same order
 *   max8                   lane-wise maximum (b where either is NaN, as _mm256_max_ps)
 *   exp8                   exp(x) for x in [-87, 88] (clamped), |rel err| < 2e-7
 *   hsadb_vdot, hsadb_vaxpy  dot product and y += a*x over n floats
 *   hsadb_silu_mul         g[i] = silu(g[i]) * u[i] (the SwiGLU gate)
 */
#ifndef HSADB_VEC_H
#define HSADB_VEC_H

#if defined(__AVX2__) && defined(__FMA__)
#define HSADB_VEC_AVX2 1
#include <immintrin.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

typedef float v8 __attribute__((vector_size(32)));

static inline v8 load8(const float *p) { v8 v; memcpy(&v, p, 32); return v; }
static inline void store8(float *p, v8 v) { memcpy(p, &v, 32); }

static inline float hsum8(v8 v) {
    return (v[0] + v[4]) + (v[1] + v[5]) + ((v[2] + v[6]) + (v[3] + v[7]));
}

#if HSADB_VEC_AVX2

static inline v8 hsum8x8(const v8 a[8]) {
    __m256 t0 = _mm256_hadd_ps((__m256)a[0], (__m256)a[1]), t1 = _mm256_hadd_ps((__m256)a[2], (__m256)a[3]);
    __m256 t2 = _mm256_hadd_ps((__m256)a[4], (__m256)a[5]), t3 = _mm256_hadd_ps((__m256)a[6], (__m256)a[7]);
    __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);  /* [a0..a3 low | a0..a3 high] */
    return (v8)_mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

static inline v8 max8(v8 a, v8 b) { return (v8)_mm256_max_ps((__m256)a, (__m256)b); }

/* Cephes' expf: 2^k * p(r) with k = round(x / ln 2), r = x - k ln 2. */
static inline v8 exp8(v8 xv) {
    __m256 x = _mm256_min_ps(_mm256_max_ps((__m256)xv, _mm256_set1_ps(-87.f)), _mm256_set1_ps(88.f));
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

#else /* portable path */

/* Lane r = ((a[r]0 + a[r]1) + (a[r]2 + a[r]3)) + ((a[r]4 + a[r]5) + (a[r]6 + a[r]7)): the
 * order of the AVX path's hadd/permute sequence. */
static inline v8 hsum8x8(const v8 a[8]) {
    v8 out;
    for (int r = 0; r < 8; r++)
        out[r] = ((a[r][0] + a[r][1]) + (a[r][2] + a[r][3])) + ((a[r][4] + a[r][5]) + (a[r][6] + a[r][7]));
    return out;
}

static inline v8 max8(v8 a, v8 b) {
    v8 out;
    for (int i = 0; i < 8; i++) out[i] = a[i] > b[i] ? a[i] : b[i];
    return out;
}

/* Cephes' expf, lane by lane: the AVX path's steps without fused multiply-adds. */
static inline v8 exp8(v8 xv) {
    v8 out;
    for (int i = 0; i < 8; i++) {
        float x = xv[i] > -87.f ? xv[i] : -87.f;   /* NaN -> -87, as _mm256_max_ps */
        x = x < 88.f ? x : 88.f;
        float k = nearbyintf(x * 1.44269504088896341f);
        float r = x - k * 0.693359375f;
        r = r - k * -2.12194440e-4f;
        float p = 1.9875691500e-4f;
        p = p * r + 1.3981999507e-3f;
        p = p * r + 8.3334519073e-3f;
        p = p * r + 4.1665795894e-2f;
        p = p * r + 1.6666665459e-1f;
        p = p * r + 5.0000001201e-1f;
        p = p * (r * r) + (r + 1.f);
        uint32_t e = (uint32_t)((int32_t)k + 127) << 23;
        float s;
        memcpy(&s, &e, 4);
        out[i] = p * s;
    }
    return out;
}

#endif

static inline float hsadb_vdot(const float *a, const float *b, int n) {
    v8 acc = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8) acc += load8(a + i) * load8(b + i);
    float s = hsum8(acc);
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void hsadb_vaxpy(float a, const float *x, float *y, int n) {
    int i = 0;
    v8 av = {a, a, a, a, a, a, a, a};
    for (; i + 8 <= n; i += 8) store8(y + i, load8(y + i) + av * load8(x + i));
    for (; i < n; i++) y[i] += a * x[i];
}

static inline void hsadb_silu_mul(float *g, const float *u, size_t n) {
    size_t i = 0;
    const v8 one = {1, 1, 1, 1, 1, 1, 1, 1};
    for (; i + 8 <= n; i += 8) {
        v8 x = load8(g + i);
        store8(g + i, x / (one + exp8(-x)) * load8(u + i));
    }
    for (; i < n; i++) g[i] = g[i] / (1.f + expf(-g[i])) * u[i];
}

#endif
