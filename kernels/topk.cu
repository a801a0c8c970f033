/*
 * kernels/topk.cu — landmark scoring fused with top-k, and row-wise top-k (see kernels.h).
 *
 * hsadb_cuda_topk1 (one query, the decode path) is a streaming GEMV: every landmark row is
 * read once with 16-byte loads and multiplied on tensor cores (a first version on CUDA cores
 * was bound by instruction issue: ~2 instructions per bf16 element, 0.93 TB/s), its score
 * pushed into a top-k list kept in registers. A CTA merges its lists with one warp; the last
 * CTA to finish merges the CTAs' lists. One launch, one pass over the bytes.
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

#define TOPK1_THREADS 256
#define TOPK1_WARPS (TOPK1_THREADS / 32)

__device__ __forceinline__ void mma_bf16(float c[4], uint32_t a0, uint32_t a1, uint32_t a2, uint32_t a3, uint32_t b0,
                                         uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t bf16x2(float lo, float hi) {   /* round to nearest even */
    uint32_t a = __float_as_uint(lo), b = __float_as_uint(hi);
    a = (a + 0x7fffu + ((a >> 16) & 1u)) >> 16;
    b = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
    return a | b;
}

/*
 * One query on tensor cores. A warp takes 16 landmark rows at a time as the A operand of
 * mma.m16n8k16 (B = the query, the same in all 8 columns). Lane l loads rows r = l/4 and r+8
 * with plain 16-byte vectors at column 8*(l%4) + 32v; since a dot product does not care about
 * the order of k, k is permuted so that those vectors ARE the lane's A fragments (and q is
 * permuted the same way into the B fragments). q is split into bf16 hi + lo parts: two MMAs
 * per k-step give fp32-accurate scores. NV = dr / 32.
 */
template <int KK, int NV>
__global__ void __launch_bounds__(TOPK1_THREADS)
topk1_kernel(const float *__restrict__ q, const uint16_t *__restrict__ lmk, int64_t n, int ld, float scale,
             int k, int32_t *idx, float *score, float *ws_s, int *ws_i, unsigned *counter) {
    __shared__ float cand_s[TOPK1_THREADS * KK / 2];
    __shared__ int cand_i[TOPK1_THREADS * KK / 2];
    __shared__ bool last;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, j = lane & 3, r = lane >> 2;
    /* B fragments: k-step 2v uses q[32v+8j + 0..3], k-step 2v+1 uses q[32v+8j + 4..7] */
    uint32_t bh[NV][4], bl[NV][4];
#pragma unroll
    for (int v = 0; v < NV; v++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
            const float x0 = q[32 * v + 8 * j + 2 * e], x1 = q[32 * v + 8 * j + 2 * e + 1];
            const uint32_t h = bf16x2(x0, x1);
            bh[v][e] = h;
            bl[v][e] = bf16x2(x0 - __uint_as_float(h << 16), x1 - __uint_as_float(h & 0xffff0000u));
        }
    TopK<KK> tk;
    tk.init();
    const int64_t tiles = (n + 15) / 16, wstride = (int64_t)gridDim.x * TOPK1_WARPS;
    for (int64_t tile = (int64_t)blockIdx.x * TOPK1_WARPS + warp; tile < tiles; tile += wstride) {
        const int64_t r0 = tile * 16 + r, r8 = r0 + 8;
        const uint4 *p0 = (const uint4 *)(lmk + r0 * ld) + j, *p8 = (const uint4 *)(lmk + r8 * ld) + j;
        uint4 u0[NV], u8[NV];
#pragma unroll
        for (int v = 0; v < NV; v++) {
            u0[v] = r0 < n ? ld_stream(p0 + 4 * v) : make_uint4(0, 0, 0, 0);
            u8[v] = r8 < n ? ld_stream(p8 + 4 * v) : make_uint4(0, 0, 0, 0);
        }
        float c[4] = {0.f, 0.f, 0.f, 0.f};
#pragma unroll
        for (int v = 0; v < NV; v++) {
            mma_bf16(c, u0[v].x, u8[v].x, u0[v].y, u8[v].y, bh[v][0], bh[v][1]);
            mma_bf16(c, u0[v].x, u8[v].x, u0[v].y, u8[v].y, bl[v][0], bl[v][1]);
            mma_bf16(c, u0[v].z, u8[v].z, u0[v].w, u8[v].w, bh[v][2], bh[v][3]);
            mma_bf16(c, u0[v].z, u8[v].z, u0[v].w, u8[v].w, bl[v][2], bl[v][3]);
        }
        /* c[0] = score of row r0, c[2] = row r8 (every column holds the same value) */
        if (j == 0 && r0 < n) tk.push(c[0] * scale, (int)r0);
        if (j == 1 && r8 < n) tk.push(c[2] * scale, (int)r8);
    }
    /* CTA merge: lanes 0 and 1 of each quad hold lists -> one warp -> k best of this CTA. */
    if (j < 2) {
        const int slot = warp * 16 + r * 2 + j;
#pragma unroll
        for (int e = 0; e < KK; e++) cand_s[slot * KK + e] = tk.s[e], cand_i[slot * KK + e] = tk.i[e];
    }
    __syncthreads();
    if (threadIdx.x < 32) {
        TopK<KK> m;
        m.init();
        for (int e = lane; e < TOPK1_THREADS / 2 * KK; e += 32) m.push(cand_s[e], cand_i[e]);
        warp_extract<KK>(m, k, ws_s + (size_t)blockIdx.x * KK, ws_i + (size_t)blockIdx.x * KK);
        __threadfence();
        if (lane == 0) last = atomicAdd(counter, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last) return;
    /* The last CTA: merge every CTA's k best, all 8 warps over slices, then warp 0. The other
     * CTAs' lists are read through L2 (__ldcg: coherent after their fences and our atomic),
     * 4 loads per lane in flight; volatile loads (v2) cannot overlap and cost ~60 us. */
    __threadfence();
    TopK<KK> m;
    m.init();
    const int total = gridDim.x * KK;
    for (int e0 = warp * 32 * 4; e0 < total; e0 += TOPK1_WARPS * 32 * 4) {
        float vs[4];
        int vi[4];
#pragma unroll
        for (int u = 0; u < 4; u++) {
            const int e = e0 + 32 * u + lane;
            vs[u] = e < total && e % KK < k ? __ldcg(ws_s + e) : -INFINITY;
            vi[u] = e < total && e % KK < k ? __ldcg(ws_i + e) : -1;
        }
#pragma unroll
        for (int u = 0; u < 4; u++) m.push(vs[u], vi[u]);
    }
    warp_extract<KK>(m, k, cand_s + warp * KK, cand_i + warp * KK);
    __syncthreads();
    if (warp != 0) return;
    TopK<KK> f;
    f.init();
    for (int e = lane; e < TOPK1_WARPS * KK; e += 32)
        if (e % KK < k) f.push(cand_s[e], cand_i[e]);
    warp_extract<KK>(f, k, score, idx);
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
    int64_t want = (n + 16 * TOPK1_WARPS - 1) / (16 * TOPK1_WARPS);
    int64_t cap = (int64_t)sm_count() * 2;     /* 2 CTAs per SM fit (128 registers) */
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

/* ---- row-wise top-k: each row split over CTAs, then one warp per row merges -------------- */

#define ROWS_THREADS 256
#define ROWS_SPLIT_COLS 8192       /* columns per CTA */

static int rows_splits(int64_t cols) {
    int64_t n = (cols + ROWS_SPLIT_COLS - 1) / ROWS_SPLIT_COLS;
    return (int)(n < 1 ? 1 : n > 256 ? 256 : n);
}

/* CTA (split, row): the KK best of its column slice -> ws[row][split][KK]. */
template <int KK>
__global__ void __launch_bounds__(ROWS_THREADS)
topk_rows_split(const float *__restrict__ sc, int64_t cols, int64_t ld, const int64_t *n_elig, int nsplit,
                float *ws_s, int *ws_i) {
    __shared__ float ws_ws[ROWS_THREADS / 32 * KK];
    __shared__ int ws_wi[ROWS_THREADS / 32 * KK];
    const int row = blockIdx.y, split = blockIdx.x, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    int64_t n = n_elig ? n_elig[row] : cols;
    if (n > cols) n = cols;
    const int64_t per = (cols + nsplit - 1) / nsplit, c0 = (int64_t)split * per;
    int64_t c1 = c0 + per < n ? c0 + per : n;
    const float *r = sc + (int64_t)row * ld;
    TopK<KK> tk;
    tk.init();
    for (int64_t c = c0 + threadIdx.x; c < c1; c += ROWS_THREADS) tk.push(r[c], (int)c);
    warp_extract<KK>(tk, KK, ws_ws + warp * KK, ws_wi + warp * KK);
    __syncthreads();
    if (warp == 0) {
        TopK<KK> m;
        m.init();
        for (int j = lane; j < ROWS_THREADS / 32 * KK; j += 32) m.push(ws_ws[j], ws_wi[j]);
        const size_t o = ((size_t)row * nsplit + split) * KK;
        warp_extract<KK>(m, KK, ws_s + o, ws_i + o);
    }
}

template <int KK>
__global__ void topk_rows_merge(int rows, int nsplit, int k, const float *ws_s, const int *ws_i, int32_t *idx,
                                float *score) {
    const int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, lane = threadIdx.x & 31;
    if (row >= rows) return;
    TopK<KK> m;
    m.init();
    for (int j = lane; j < nsplit * KK; j += 32) m.push(ws_s[(size_t)row * nsplit * KK + j], ws_i[(size_t)row * nsplit * KK + j]);
    warp_extract<KK>(m, k, score + (size_t)row * k, idx + (size_t)row * k);
}

extern "C" size_t hsadb_cuda_topk_rows_workspace(int rows, int64_t cols) {
    return (size_t)rows * rows_splits(cols) * HSADB_TOPK_MAX * 8 + 256;
}

template <int KK>
static int launch_rows(const float *sc, int rows, int64_t cols, int64_t ld, const int64_t *ne, int k, int32_t *idx,
                       float *score, void *ws, cudaStream_t s) {
    const int ns = rows_splits(cols);
    float *ws_s = (float *)ws;
    int *ws_i = (int *)(ws_s + (size_t)rows * ns * KK);
    topk_rows_split<KK><<<dim3((unsigned)ns, (unsigned)rows), ROWS_THREADS, 0, s>>>(sc, cols, ld, ne, ns, ws_s, ws_i);
    topk_rows_merge<KK><<<(rows * 32 + 255) / 256, 256, 0, s>>>(rows, ns, k, ws_s, ws_i, idx, score);
    return (int)cudaGetLastError();
}

extern "C" int hsadb_cuda_topk_rows(const float *scores, int rows, int64_t cols, int64_t ld, const int64_t *n_elig,
                                    int k, int32_t *idx, float *score, void *workspace, hsadb_stream_t stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (k < 1 || k > HSADB_TOPK_MAX || rows < 0 || rows > 65535) return (int)cudaErrorInvalidValue;
    if (rows == 0) return 0;
    if (k <= 8) return launch_rows<8>(scores, rows, cols, ld, n_elig, k, idx, score, workspace, s);
    if (k <= 16) return launch_rows<16>(scores, rows, cols, ld, n_elig, k, idx, score, workspace, s);
    return launch_rows<32>(scores, rows, cols, ld, n_elig, k, idx, score, workspace, s);
}
