/*
 * kernels/mma_util.cuh — the few PTX wrappers the tensor-core kernels share (HSA attention in
 * hsa_mma.cuh / hsa_v3.cuh, window attention in engine_cuda.cu): shared-memory addresses,
 * cp.async, ldmatrix, mma.sync m16n8k16 (bf16 in, fp32 accumulate), bf16 packing, and the
 * softmax over a tile of score fragments.
 * Fragment layouts are PTX ISA's "Matrix fragments for mma.m16n8k16": A rows lane/4 and
 * lane/4 + 8, columns (lane%4)*2 (+1, +8, +9); C rows likewise, columns (lane%4)*2 (+1).
 */
#ifndef HSADB_MMA_UTIL_CUH
#define HSADB_MMA_UTIL_CUH
#include <cuda_bf16.h>
#include <math.h>
#include <stdint.h>

__device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }

__device__ __forceinline__ void cp_async16(uint32_t dst, const void *src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;"); }
template <int N> __device__ __forceinline__ void cp_wait() { asm volatile("cp.async.wait_group %0;" ::"n"(N)); }

__device__ __forceinline__ void ldsm_x4(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_t(uint32_t r[4], uint32_t addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) : "r"(addr));
}
__device__ __forceinline__ void mma16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                 : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
                 : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(uint32_t *)&v;
}

/* Softmax over the keys of a 16-row score tile, in registers: s is NT m16n8 C fragments (this
 * lane: rows lane/4 and lane/4 + 8, reduced over the lane's quad; masked keys hold -INFINITY, a
 * row needs at least one that is not). Exponentiates s in place (exp2 of (s - max) * sl2, sl2 =
 * scale * log2 e) and returns the two rows' sums. HSA (one chunk: NT = 8, hsa_mma.cuh and
 * hsa_v3.cuh) and window attention (engine_cuda.cu) share it. */
template <int NT>
__device__ __forceinline__ void frag_softmax(float (&s)[NT][4], float sl2, float &l0, float &l1) {
    float mx0 = -INFINITY, mx1 = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        mx0 = fmaxf(mx0, fmaxf(s[nt][0], s[nt][1]));
        mx1 = fmaxf(mx1, fmaxf(s[nt][2], s[nt][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    l0 = 0.f, l1 = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; nt++) {
        s[nt][0] = exp2f((s[nt][0] - mx0) * sl2), s[nt][1] = exp2f((s[nt][1] - mx0) * sl2);
        s[nt][2] = exp2f((s[nt][2] - mx1) * sl2), s[nt][3] = exp2f((s[nt][3] - mx1) * sl2);
        l0 += s[nt][0] + s[nt][1];
        l1 += s[nt][2] + s[nt][3];
    }
    l0 += __shfl_xor_sync(0xffffffffu, l0, 1);
    l0 += __shfl_xor_sync(0xffffffffu, l0, 2);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 1);
    l1 += __shfl_xor_sync(0xffffffffu, l1, 2);
}

#endif
