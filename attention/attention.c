/* attention/attention.c — CPU attention kernels (see attention.h). */
#include "attention.h"

#include <math.h>
#include <string.h>

static inline float dot(const float *a, const float *b, int n) {
    float s = 0.f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float a, const float *x, float *y, int n) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
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
            const int kh = h / G;
            float mx = -INFINITY, sum = 0.f;
            for (int j = 0; j < len; j++) {
                const float *k = ring->k + (size_t)((lo + j) % ring->cap) * kvd + (size_t)kh * dh;
                scratch[j] = dot(qh, k, dh) * scale;
                if (scratch[j] > mx) mx = scratch[j];
            }
            for (int j = 0; j < len; j++) sum += (scratch[j] = expf(scratch[j] - mx));
            float *o = out + (size_t)t * H * dh + (size_t)h * dh;
            memset(o, 0, (size_t)dh * sizeof(float));
            for (int j = 0; j < len; j++) {
                const float *v = ring->v + (size_t)((lo + j) % ring->cap) * kvd + (size_t)kh * dh;
                axpy(scratch[j] / sum, v, o, dh);
            }
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
            const int kh = h / G;
            float mx = -INFINITY, sum = 0.f;
            for (int j = 0; j < n; j++) {
                scratch[j] = dot(qh, k + (size_t)j * kvd + (size_t)kh * dh, dh) * scale;
                if (scratch[j] > mx) mx = scratch[j];
            }
            for (int j = 0; j < n; j++) sum += (scratch[j] = expf(scratch[j] - mx));
            float *o = out + (size_t)t * H * dh + (size_t)h * dh;
            memset(o, 0, (size_t)dh * sizeof(float));
            for (int j = 0; j < n; j++) axpy(scratch[j] / sum, v + (size_t)j * kvd + (size_t)kh * dh, o, dh);
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
            float mx = -INFINITY, sum = 0.f;
            for (int s = 0; s < S; s++) {
                scratch[s] = dot(qh, kb + (size_t)s * dh, dh) * scale;
                if (scratch[s] > mx) mx = scratch[s];
            }
            for (int s = 0; s < S; s++) sum += (scratch[s] = expf(scratch[s] - mx));
            const float c = wr / sum;
            for (int s = 0; s < S; s++) axpy(c * scratch[s], vb + (size_t)s * dh, o, dh);
        }
    }
}
