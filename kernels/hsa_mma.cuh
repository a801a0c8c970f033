/*
 * kernels/hsa_mma.cuh — HSA attention forward on tensor cores, for G = 16 query heads per
 * memory head, dh = 64, S = 64 (the HSA-UltraLong geometry). Included by hsa.cu.
 *
 * One warp per (token, memory head): the 16 query heads are the 16 rows of mma.m16n8k16.
 * For each chosen chunk: K and V (64 x 64 bf16 each) are copied with cp.async into the warp's
 * shared-memory stage (two stages: the next chunk loads while this one computes), rows
 * swizzled by 16-byte unit (unit ^ row%8) so ldmatrix is conflict-free;
 *   S = Q K^T  (4 k-steps x 8 n-tiles), softmax over the chunk's 64 keys in registers (exp2,
 *   quad shuffles), P reused in registers as the A operand of O = P V (V via ldmatrix.trans),
 *   acc += w / rowsum * O.
 */
#include "mma_util.cuh"

#define MMA_WARPS 6
#define MMA_STAGE_ELEMS (2 * 64 * 64)          /* K + V of one chunk, bf16 */
#define MMA_SMEM (MMA_WARPS * 2 * MMA_STAGE_ELEMS * 2)

/* swizzled element offset of (row, col) in a 64 x 64 tile; col multiple of 8 */
__device__ __forceinline__ int swz(int row, int col) { return row * 64 + (((col >> 3) ^ (row & 7)) << 3); }

__global__ void __launch_bounds__(MMA_WARPS * 32)
hsa_fwd_mma_kernel(const uint16_t *__restrict__ q, const uint16_t *__restrict__ kmem, const uint16_t *__restrict__ vmem,
                   int64_t base_n, const uint16_t *__restrict__ kx, const uint16_t *__restrict__ vx,
                   const int32_t *__restrict__ idx, const float *__restrict__ w, int T, int Hm, int K, float *out) {
    extern __shared__ __align__(128) uint16_t smem[];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int t = blockIdx.x * MMA_WARPS + warp, m = blockIdx.y;
    if (t >= T) return;
    const int H = Hm * 16;
    uint16_t *const stages = smem + (size_t)warp * 2 * MMA_STAGE_ELEMS;   /* stage j&1 at + (j&1)*STAGE */
    const int32_t *ti = idx + ((size_t)t * Hm + m) * K;
    const float *tw = w + ((size_t)t * Hm + m) * K;

    /* Q as A fragments: rows r = lane/4 (+8) are heads m*16 + r, cols 16ks + (lane%4)*2 (+8) */
    const int r = lane >> 2, c2 = (lane & 3) * 2;
    uint32_t qa[4][4];
    const uint16_t *q0 = q + ((size_t)t * H + m * 16 + r) * 64, *q8 = q0 + 8 * 64;
#pragma unroll
    for (int ks = 0; ks < 4; ks++) {
        qa[ks][0] = *(const uint32_t *)(q0 + 16 * ks + c2);
        qa[ks][1] = *(const uint32_t *)(q8 + 16 * ks + c2);
        qa[ks][2] = *(const uint32_t *)(q0 + 16 * ks + c2 + 8);
        qa[ks][3] = *(const uint32_t *)(q8 + 16 * ks + c2 + 8);
    }
    float acc[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) acc[nt][0] = acc[nt][1] = acc[nt][2] = acc[nt][3] = 0.f;
    const float sl2 = 0.125f * 1.44269504088896341f;   /* 1/sqrt(64) * log2(e) */

    auto issue = [&](int j) {
        const int c = j < K ? ti[j] : -1;
        if (c >= 0) {
            uint16_t *kt = stages + (j & 1) * MMA_STAGE_ELEMS, *vt = kt + 64 * 64;
            const bool second = c >= base_n;        /* a query's own chunk: second source */
            const uint16_t *kb = second ? kx : kmem, *vb = second ? vx : vmem;
            const int64_t cc = second ? c - base_n : c;
#pragma unroll
            for (int i = 0; i < 16; i++) {           /* 512 16-byte pieces per tile, 16 per lane */
                const int p = lane + 32 * i, row = p >> 3, unit = p & 7;
                const size_t src = (((size_t)cc * 64 + row) * Hm + m) * 64 + unit * 8;
                const int dst = row * 64 + ((unit ^ (row & 7)) << 3);
                cp_async16(smem_u32(kt + dst), kb + src);
                cp_async16(smem_u32(vt + dst), vb + src);
            }
        }
        cp_commit();
    };

    issue(0);
    for (int j = 0; j < K; j++) {
        issue(j + 1);
        cp_wait<1>();
        __syncwarp();
        const int c = ti[j];
        const float wj = tw[j];
        if (c >= 0 && wj != 0.f) {
            const uint16_t *kt = stages + (j & 1) * MMA_STAGE_ELEMS, *vt = kt + 64 * 64;
            float s[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
            for (int nt = 0; nt < 8; nt++)
#pragma unroll
                for (int ks = 0; ks < 4; ks += 2) {
                    uint32_t b[4];
                    const int row = nt * 8 + (lane & 7), col = (ks + (lane >> 4)) * 16 + ((lane >> 3) & 1) * 8;
                    ldsm_x4(b, smem_u32(kt + swz(row, col)));
                    mma16816(s[nt], qa[ks], b[0], b[1]);
                    mma16816(s[nt], qa[ks + 1], b[2], b[3]);
                }
            float l0, l1;
            frag_softmax(s, sl2, l0, l1);
            float o[8][4];
#pragma unroll
            for (int nt = 0; nt < 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
#pragma unroll
            for (int kk = 0; kk < 4; kk++) {
                uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                                  pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
                for (int nt = 0; nt < 8; nt += 2) {
                    uint32_t b[4];
                    const int row = 16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8, col = (nt + (lane >> 4)) * 8;
                    ldsm_x4_t(b, smem_u32(vt + swz(row, col)));
                    mma16816(o[nt], pa, b[0], b[1]);
                    mma16816(o[nt + 1], pa, b[2], b[3]);
                }
            }
            const float f0 = wj / l0, f1 = wj / l1;
#pragma unroll
            for (int nt = 0; nt < 8; nt++) {
                acc[nt][0] += f0 * o[nt][0], acc[nt][1] += f0 * o[nt][1];
                acc[nt][2] += f1 * o[nt][2], acc[nt][3] += f1 * o[nt][3];
            }
        }
        __syncwarp();
    }
    cp_wait<0>();
    float *o0 = out + ((size_t)t * H + m * 16 + r) * 64, *o8 = o0 + 8 * 64;
#pragma unroll
    for (int nt = 0; nt < 8; nt++) {
        *(float2 *)(o0 + nt * 8 + c2) = make_float2(acc[nt][0], acc[nt][1]);
        *(float2 *)(o8 + nt * 8 + c2) = make_float2(acc[nt][2], acc[nt][3]);
    }
}
