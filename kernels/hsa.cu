/*
 * kernels/hsa.cu — HSA attention forward (see kernels.h): tensor cores for G = 16, dh = 64
 * (v2: hsa_mma.cuh, one warp per token; v3: hsa_v3.cuh, a CTA per 32-token tile staging each
 * distinct chunk once; v4: the same with a decoupled ring; v5: v4 on 16-token tiles of 16 warps,
 * one token per warp; hsadb_cuda_hsa_set_kernel picks (tests, benchmarks), default v5: fastest on
 * random picks, within 5% of the best on shared ones, bench/NOTES.md);
 * otherwise CUDA
 * cores, any G = H/Hm (below).
 *
 * One CTA per (token t, memory head m), 4 warps; warp w serves query heads w, w+4, ... of the
 * G heads that share memory head m. For each chosen chunk the CTA stages its K and V rows of
 * head m in shared memory (K rows padded by one 4-byte word: lane j reads row j without bank
 * conflicts), each warp computes the S scores (lane j: keys j, j+32, ...), a softmax over the
 * chunk's own keys, and accumulates w_r * softmax . V into registers (lane: dims lane+32e).
 * Chunks are mixed only by the retrieval weights (model-spec.md).
 */
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "hsa_mma.cuh"
#include "hsa_v3.cuh"

#define HSA_WARPS 4

__device__ __forceinline__ float bf(uint16_t h) { return __uint_as_float((uint32_t)h << 16); }

template <int DH, int S>
__global__ void __launch_bounds__(HSA_WARPS * 32)
hsa_fwd_kernel(const uint16_t *__restrict__ q, const uint16_t *__restrict__ kmem, const uint16_t *__restrict__ vmem,
               int64_t base_n, const uint16_t *__restrict__ kx, const uint16_t *__restrict__ vx,
               const int32_t *__restrict__ idx, const float *__restrict__ w, int H, int Hm, int K, float *out) {
    constexpr int KP = DH + 2;               /* padded K row (bf16 elements) */
    constexpr int E = DH / 32;               /* output dims per lane */
    constexpr int U = (S + 31) / 32;         /* keys per lane */
    __shared__ uint16_t ks[S * KP];
    __shared__ uint16_t vs[S * DH];
    __shared__ float qs[HSA_WARPS][DH];
    const int t = blockIdx.x, m = blockIdx.y, G = H / Hm;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const float scale = rsqrtf((float)DH);
    const int32_t *ti = idx + ((size_t)t * Hm + m) * K;
    const float *tw = w + ((size_t)t * Hm + m) * K;
    for (int h0 = 0; h0 < G; h0 += HSA_WARPS) {      /* rounds of HSA_WARPS heads */
        const int h = h0 + warp, head = m * G + h;
        const bool active = h < G;
        if (active)
            for (int d = lane; d < DH; d += 32) qs[warp][d] = bf(q[((size_t)t * H + head) * DH + d]) * scale;
        float acc[E];
#pragma unroll
        for (int e = 0; e < E; e++) acc[e] = 0.f;
        for (int r = 0; r < K; r++) {
            const int c = ti[r];
            const float wr = tw[r];
            if (c < 0 || wr == 0.f) continue;     /* uniform across the CTA */
            __syncthreads();                      /* previous chunk fully consumed */
            /* stage K and V rows of head m: S rows of DH bf16, 4 bytes per thread per step;
             * chunks from base_n on live in the second source (a query's own chunks) */
            const bool second = c >= base_n;
            const uint16_t *kb = second ? kx : kmem, *vb = second ? vx : vmem;
            const int64_t cc = second ? c - base_n : c;
            for (int j = threadIdx.x; j < S * DH / 2; j += HSA_WARPS * 32) {
                const int s = j / (DH / 2), d2 = j % (DH / 2);
                const size_t src = (((size_t)cc * S + s) * Hm + m) * DH + 2 * d2;
                const uint32_t kk = *(const uint32_t *)(kb + src), vv = *(const uint32_t *)(vb + src);
                *(uint32_t *)(ks + s * KP + 2 * d2) = kk;
                *(uint32_t *)(vs + s * DH + 2 * d2) = vv;
            }
            __syncthreads();
            if (!active) continue;
            float sc[U], mx = -INFINITY;
#pragma unroll
            for (int u = 0; u < U; u++) {
                const int j = lane + 32 * u;
                float a = -INFINITY;
                if (j < S) {
                    a = 0.f;
                    const uint32_t *kr = (const uint32_t *)(ks + j * KP);
#pragma unroll 8
                    for (int d2 = 0; d2 < DH / 2; d2++) {
                        uint32_t kk = kr[d2];
                        a = fmaf(qs[warp][2 * d2], __uint_as_float(kk << 16), a);
                        a = fmaf(qs[warp][2 * d2 + 1], __uint_as_float(kk & 0xffff0000u), a);
                    }
                }
                sc[u] = a;
                mx = fmaxf(mx, a);
            }
#pragma unroll
            for (int o = 16; o; o >>= 1) mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
            float sum = 0.f;
#pragma unroll
            for (int u = 0; u < U; u++) sum += (sc[u] = lane + 32 * u < S ? __expf(sc[u] - mx) : 0.f);
#pragma unroll
            for (int o = 16; o; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
            const float f = wr / sum;
            float o_[E];
#pragma unroll
            for (int e = 0; e < E; e++) o_[e] = 0.f;
#pragma unroll
            for (int u = 0; u < U; u++)
                for (int jj = 0; jj < 32 && jj + 32 * u < S; jj++) {
                    const float p = __shfl_sync(0xffffffffu, sc[u], jj);
                    const uint16_t *vr = vs + (jj + 32 * u) * DH;
#pragma unroll
                    for (int e = 0; e < E; e++) o_[e] = fmaf(p, bf(vr[lane + 32 * e]), o_[e]);
                }
#pragma unroll
            for (int e = 0; e < E; e++) acc[e] = fmaf(f, o_[e], acc[e]);
        }
        if (active)
#pragma unroll
            for (int e = 0; e < E; e++) out[((size_t)t * H + head) * DH + lane + 32 * e] = acc[e];
        __syncthreads();
    }
}

/* Tensor-core kernel choice: hsadb_cuda_hsa_set_kernel(2..5) if called (tests, benchmarks;
 * 0 = back to the default), else v5. K > V3_KMAX always runs v2. */
static int hsa_kernel_forced;
extern "C" void hsadb_cuda_hsa_set_kernel(int version) { hsa_kernel_forced = version >= 2 && version <= 5 ? version : 0; }
static int hsa_kernel_version(void) { return hsa_kernel_forced ? hsa_kernel_forced : 5; }

/* v3 (coupled ring), v4 (decoupled ring), v5 (decoupled, 16-token tiles of 16 warps): one
 * kernel template (hsa_v3.cuh) */
template <bool DEC, int TT, int W, int NS>
static int hsa_launch_v3(const uint16_t *q, const uint16_t *kmem, const uint16_t *vmem, int64_t base_n,
                         const uint16_t *kx, const uint16_t *vx, const int32_t *idx, const float *w, int T, int Hm,
                         int K, float *out, cudaStream_t s) {
    static_assert(v3_smem_bytes(V3_KMAX, TT, NS) <= V3_SMEM_MAX, "shared memory over the sm_90 limit");
    static bool attr = false;
    if (!attr) {
        cudaError_t e = cudaFuncSetAttribute(hsa_fwd_v3_kernel<DEC, TT, W, NS>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                             (int)v3_smem_bytes(V3_KMAX, TT, NS));
        if (e != cudaSuccess) return (int)e;
        attr = true;
    }
    dim3 g((unsigned)((T + TT - 1) / TT), (unsigned)Hm);
    hsa_fwd_v3_kernel<DEC, TT, W, NS><<<g, W * 32, v3_smem_bytes(K, TT, NS), s>>>(q, kmem, vmem, base_n, kx, vx, idx, w,
                                                                                 T, Hm, K, out);
    return (int)cudaGetLastError();
}

extern "C" int hsadb_cuda_hsa_fwd(const uint16_t *q, const uint16_t *kmem, const uint16_t *vmem, const int32_t *idx,
                                  const float *w, int T, int H, int Hm, int dh, int S, int K, float *out,
                                  hsadb_stream_t stream) {
    return hsadb_cuda_hsa_fwd2(q, kmem, vmem, INT64_MAX, NULL, NULL, idx, w, T, H, Hm, dh, S, K, out, stream);
}

extern "C" int hsadb_cuda_hsa_fwd2(const uint16_t *q, const uint16_t *kmem, const uint16_t *vmem, int64_t base_n,
                                   const uint16_t *kx, const uint16_t *vx, const int32_t *idx, const float *w, int T,
                                   int H, int Hm, int dh, int S, int K, float *out, hsadb_stream_t stream) {
    cudaStream_t s = (cudaStream_t)stream;
    if (T < 0 || H % Hm || S != 64) return (int)cudaErrorInvalidValue;
    if (T == 0) return 0;
    const int ver = H / Hm == 16 && dh == 64 && K <= V3_KMAX ? hsa_kernel_version() : 2;
    if (ver == 3) return hsa_launch_v3<false, V3_TT, V3_W, V3_NS>(q, kmem, vmem, base_n, kx, vx, idx, w, T, Hm, K, out, s);
    if (ver == 4) return hsa_launch_v3<true, V3_TT, V3_W, V3_NS>(q, kmem, vmem, base_n, kx, vx, idx, w, T, Hm, K, out, s);
    if (ver == 5) return hsa_launch_v3<true, 16, 16, 11>(q, kmem, vmem, base_n, kx, vx, idx, w, T, Hm, K, out, s);
    if (H / Hm == 16 && dh == 64) {           /* tensor-core path (v2) */
        static bool attr = false;
        if (!attr) {
            cudaFuncSetAttribute(hsa_fwd_mma_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, MMA_SMEM);
            attr = true;
        }
        dim3 g((unsigned)((T + MMA_WARPS - 1) / MMA_WARPS), (unsigned)Hm);
        hsa_fwd_mma_kernel<<<g, MMA_WARPS * 32, MMA_SMEM, s>>>(q, kmem, vmem, base_n, kx, vx, idx, w, T, Hm, K, out);
        return (int)cudaGetLastError();
    }
    dim3 grid((unsigned)T, (unsigned)Hm);
    switch (dh) {
    case 32: hsa_fwd_kernel<32, 64><<<grid, HSA_WARPS * 32, 0, s>>>(q, kmem, vmem, base_n, kx, vx, idx, w, H, Hm, K, out); break;
    case 64: hsa_fwd_kernel<64, 64><<<grid, HSA_WARPS * 32, 0, s>>>(q, kmem, vmem, base_n, kx, vx, idx, w, H, Hm, K, out); break;
    case 128: hsa_fwd_kernel<128, 64><<<grid, HSA_WARPS * 32, 0, s>>>(q, kmem, vmem, base_n, kx, vx, idx, w, H, Hm, K, out); break;
    default: return (int)cudaErrorInvalidValue;
    }
    return (int)cudaGetLastError();
}
