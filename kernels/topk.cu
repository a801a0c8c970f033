/*
 * kernels/topk.cu — landmark scoring fused with top-k, and row-wise top-k (see kernels.h).
 *
 * hsadb_cuda_topk1 (one query, the decode path) is a streaming GEMV: every landmark row is
 * read once with 16-byte loads, 4 lanes per row (each lane a quarter of the row, so the 4
 * lanes read 64 contiguous bytes per load), reduced with two shuffles, and pushed into a
 * top-k list that each lane group keeps in registers. A CTA merges its 64 lists with one warp;
 * the last CTA to finish merges the CTAs' lists. One launch, one pass over the bytes.
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "kernels.h"

/* (score, index) order: higher score first, ties to the higher (more recent) index. */
__device__ __forceinline__ bool better(float a, int ia, float b, int ib) {
    return a > b || (a == b && ia > ib);
}

/* A sorted top-KK list in registers. Every index into s[]/i[] is a compile-time constant. */
template <int KK>
struct TopK {
    float s[KK];
    int   i[KK];
    __device__ __forceinline__ void init() {
#pragma unroll
        for (int r = 0; r < KK; r++) s[r] = -INFINITY, i[r] = -1;
    }
    __device__ __forceinline__ void push(float v, int c) {
        if (!better(v, c, s[KK - 1], i[KK - 1])) return;
#pragma unroll
        for (int r = 0; r < KK; r++) {          /* bubble the new entry into place */
            if (better(v, c, s[r], i[r])) {
                float ts = s[r]; int ti = i[r];
                s[r] = v, i[r] = c;
                v = ts, c = ti;
            }
        }
    }
    __device__ __forceinline__ void pop() {
#pragma unroll
        for (int r = 0; r < KK - 1; r++) s[r] = s[r + 1], i[r] = i[r + 1];
        s[KK - 1] = -INFINITY, i[KK - 1] = -1;
    }
};

/* One warp: each lane holds a TopK list; extract the warp's best k entries in order into
 * out_s/out_i (lane 0 writes). Lists must not share indices. */
template <int KK>
__device__ void warp_extract(TopK<KK> &tk, int k, float *out_s, int *out_i) {
    const int lane = threadIdx.x & 31;
    for (int r = 0; r < k; r++) {
        float bs = tk.s[0];
        int bi = tk.i[0];
#pragma unroll
        for (int o = 16; o; o >>= 1) {
            float os = __shfl_xor_sync(0xffffffffu, bs, o);
            int oi = __shfl_xor_sync(0xffffffffu, bi, o);
            if (better(os, oi, bs, bi)) bs = os, bi = oi;
        }
        if (bi >= 0 && tk.i[0] == bi) tk.pop();
        if (lane == 0) out_s[r] = bs, out_i[r] = bi;
    }
}

__device__ __forceinline__ uint4 ld_stream(const uint4 *p) {
    uint4 r;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r.x), "=r"(r.y), "=r"(r.z), "=r"(r.w) : "l"(p));
    return r;
}

__device__ __forceinline__ float dot8(uint4 u, const float *q) {
    const uint32_t w[4] = {u.x, u.y, u.z, u.w};
    float a = 0.f;
#pragma unroll
    for (int j = 0; j < 4; j++) {
        a = fmaf(__uint_as_float(w[j] << 16), q[2 * j], a);
        a = fmaf(__uint_as_float(w[j] & 0xffff0000u), q[2 * j + 1], a);
    }
    return a;
}

#define TOPK1_THREADS 256
#define TOPK1_GROUPS (TOPK1_THREADS / 4)

/* NV = dr / 32: 16-byte vectors per lane per row. */
template <int KK, int NV>
__global__ void __launch_bounds__(TOPK1_THREADS)
topk1_kernel(const float *__restrict__ q, const uint16_t *__restrict__ lmk, int64_t n, int ld, float scale,
             int k, int32_t *idx, float *score, float *ws_s, int *ws_i, unsigned *counter) {
    __shared__ float cand_s[TOPK1_GROUPS * KK];
    __shared__ int cand_i[TOPK1_GROUPS * KK];
    __shared__ bool last;
    const int lane = threadIdx.x & 31, sub = lane & 3;
    const int group = threadIdx.x >> 2;
    /* this lane's slice of q: vector v covers elements ((v*4 + sub) * 8 .. +8) */
    float qr[NV * 8];
#pragma unroll
    for (int v = 0; v < NV; v++)
#pragma unroll
        for (int e = 0; e < 8; e++) qr[v * 8 + e] = q[(v * 4 + sub) * 8 + e] * scale;
    TopK<KK> tk;
    tk.init();
    const int64_t stride = (int64_t)gridDim.x * TOPK1_GROUPS;
    int64_t row = (int64_t)blockIdx.x * TOPK1_GROUPS + group;
    for (; row + stride < n; row += 2 * stride) {       /* two rows in flight per lane */
        const uint4 *p0 = (const uint4 *)(lmk + row * ld), *p1 = (const uint4 *)(lmk + (row + stride) * ld);
        uint4 u0[NV], u1[NV];
#pragma unroll
        for (int v = 0; v < NV; v++) u0[v] = ld_stream(p0 + v * 4 + sub), u1[v] = ld_stream(p1 + v * 4 + sub);
        float a0 = 0.f, a1 = 0.f;
#pragma unroll
        for (int v = 0; v < NV; v++) a0 += dot8(u0[v], qr + v * 8), a1 += dot8(u1[v], qr + v * 8);
        a0 += __shfl_xor_sync(0xffffffffu, a0, 1);
        a1 += __shfl_xor_sync(0xffffffffu, a1, 1);
        a0 += __shfl_xor_sync(0xffffffffu, a0, 2);
        a1 += __shfl_xor_sync(0xffffffffu, a1, 2);
        tk.push(a0, (int)row);
        tk.push(a1, (int)(row + stride));
    }
    if (row < n) {
        const uint4 *p0 = (const uint4 *)(lmk + row * ld);
        float a0 = 0.f;
#pragma unroll
        for (int v = 0; v < NV; v++) a0 += dot8(ld_stream(p0 + v * 4 + sub), qr + v * 8);
        a0 += __shfl_xor_sync(0xffffffffu, a0, 1);
        a0 += __shfl_xor_sync(0xffffffffu, a0, 2);
        tk.push(a0, (int)row);
    }
    /* CTA merge: the 64 groups' lists -> one warp -> k best of this CTA. */
    if (sub == 0)
#pragma unroll
        for (int r = 0; r < KK; r++) cand_s[group * KK + r] = tk.s[r], cand_i[group * KK + r] = tk.i[r];
    __syncthreads();
    if (threadIdx.x < 32) {
        TopK<KK> m;
        m.init();
        for (int j = lane; j < TOPK1_GROUPS * KK; j += 32) m.push(cand_s[j], cand_i[j]);
        warp_extract<KK>(m, k, ws_s + (size_t)blockIdx.x * KK, ws_i + (size_t)blockIdx.x * KK);
        __threadfence();
        if (lane == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last || threadIdx.x >= 32) return;
    /* The last CTA: merge every CTA's k best. */
    __threadfence();
    TopK<KK> m;
    m.init();
    for (int64_t j = lane; j < (int64_t)gridDim.x * KK; j += 32) {
        int64_t b = j / KK, r = j % KK;
        if (r < k) m.push(((volatile float *)ws_s)[b * KK + r], ((volatile int *)ws_i)[b * KK + r]);
    }
    warp_extract<KK>(m, k, score, idx);
    if (lane == 0) *counter = 0;
}

static int sm_count(void) {
    static int n = 0;
    if (!n) {
        int dev = 0;
        cudaGetDevice(&dev);
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
        if (n <= 0) n = 1;
    }
    return n;
}

static int topk1_grid(int64_t n) {
    int64_t want = (n + TOPK1_GROUPS - 1) / TOPK1_GROUPS;
    int64_t cap = (int64_t)sm_count() * 8;
    return (int)(want < 1 ? 1 : want < cap ? want : cap);
}

extern "C" size_t hsadb_cuda_topk1_workspace(int k) {
    (void)k;
    return 256 + (size_t)sm_count() * 8 * HSADB_TOPK_MAX * 8;
}

template <int KK>
static int launch_topk1(const float *q, const uint16_t *lmk, int64_t n, int ld, int dr, float scale, int k,
                        int32_t *idx, float *score, void *ws, cudaStream_t s) {
    int grid = topk1_grid(n);
    unsigned *counter = (unsigned *)ws;
    float *ws_s = (float *)((char *)ws + 256);
    int *ws_i = (int *)(ws_s + (size_t)grid * KK);
    switch (dr / 32) {
#define CASE(NV) case NV: topk1_kernel<KK, NV><<<grid, TOPK1_THREADS, 0, s>>>(q, lmk, n, ld, scale, k, idx, score, ws_s, ws_i, counter); break;
    CASE(1) CASE(2) CASE(4) CASE(8) CASE(16)
#undef CASE
    default: return (int)cudaErrorInvalidValue;
    }
    return (int)cudaGetLastError();
}

extern "C" int hsadb_cuda_topk1(const float *q, const uint16_t *lmk, int64_t n_elig, int ld, int dr, float scale,
                                int k, int32_t *idx, float *score, void *workspace, hsadb_stream_t stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (k < 1 || k > HSADB_TOPK_MAX || dr % 32 || ld % 8 || n_elig < 0) return (int)cudaErrorInvalidValue;
    if (k <= 8) return launch_topk1<8>(q, lmk, n_elig, ld, dr, scale, k, idx, score, workspace, s);
    if (k <= 16) return launch_topk1<16>(q, lmk, n_elig, ld, dr, scale, k, idx, score, workspace, s);
    return launch_topk1<32>(q, lmk, n_elig, ld, dr, scale, k, idx, score, workspace, s);
}

/* ---- row-wise top-k: one warp per row ---------------------------------------------------- */

template <int KK>
__global__ void topk_rows_kernel(const float *__restrict__ sc, int rows, int64_t cols, int64_t ld,
                                 const int64_t *n_elig, int k, int32_t *idx, float *score) {
    const int warp = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (warp >= rows) return;
    int64_t n = n_elig ? n_elig[warp] : cols;
    if (n > cols) n = cols;
    const float *row = sc + (int64_t)warp * ld;
    TopK<KK> tk;
    tk.init();
    for (int64_t c = lane; c < n; c += 32) tk.push(row[c], (int)c);
    warp_extract<KK>(tk, k, score + (size_t)warp * k, idx + (size_t)warp * k);
}

extern "C" int hsadb_cuda_topk_rows(const float *scores, int rows, int64_t cols, int64_t ld, const int64_t *n_elig,
                                    int k, int32_t *idx, float *score, hsadb_stream_t stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (k < 1 || k > HSADB_TOPK_MAX || rows < 0) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    int blocks = (rows * 32 + 255) / 256;
    if (k <= 8) topk_rows_kernel<8><<<blocks, 256, 0, s>>>(scores, rows, cols, ld, n_elig, k, idx, score);
    else if (k <= 16) topk_rows_kernel<16><<<blocks, 256, 0, s>>>(scores, rows, cols, ld, n_elig, k, idx, score);
    else topk_rows_kernel<32><<<blocks, 256, 0, s>>>(scores, rows, cols, ld, n_elig, k, idx, score);
    return (int)cudaGetLastError();
}
