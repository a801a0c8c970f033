/*
 * kernels/hsa_v3.cuh — HSA attention forward on tensor cores, v3: one CTA per tile of
 * V3_TT = 32 consecutive tokens (and one memory head); every DISTINCT chunk chosen by the
 * tile is staged in shared memory once and serves all the tile's tokens that chose it.
 * Included by hsa.cu after hsa_mma.cuh (whose helpers it uses); selected there by
 * HSADB_HSA_KERNEL=v3.
 *
 * Contract: the same as hsa_mma.cuh / kernels.h hsadb_cuda_hsa_fwd2, for G = H/Hm = 16,
 * dh = 64, S = 64, K <= V3_KMAX; any T, any Hm, idx -1 and w = 0 slots skipped, chunks
 * c >= base_n read from kx/vx at c - base_n. Shapes: q [T][H][64] bf16, kmem/vmem
 * [C][64][Hm][64] bf16, idx/w [T][Hm][K], out [T][H][64] fp32 (every row t < T written).
 *
 * Why: v2 (one warp per token) reads a chunk's 16 KiB from L2 for every (token, chunk) pick
 * and is bound by L2->SM bandwidth. Here the L2 bytes are 16 KiB per distinct chunk per tile.
 *
 * Design (256 threads = 8 warps, ~200 KB shared memory, 1 CTA/SM, up to 255 registers):
 *   setup  Q of the 32 tokens -> shared (cp.async, [32*16 rows][64], 16-byte units swizzled by
 *          row%8 as in v2). The tile's K*32 picks, taken slot-major (e = r*32 + tl), are
 *          deduplicated with a shared hash table; distinct chunks are numbered in order of first
 *          occurrence (deterministic: each token sums its picks in the same order every run).
 *   ring   V3_NS stages of K+V (64x64 bf16 each, swizzled). Distinct chunk i goes to stage
 *          i % V3_NS: one warp copies it with cp.async (16 x 2 pieces of 16 bytes per lane) and
 *          cp.async.mbarrier.arrive signals full[s] when the copies land. Each warp releases a
 *          stage by an atomic increment of rel[s]; the LAST warp to release it refills it with chunk
 *          i + V3_NS. No warp ever waits for another to finish a chunk; warps drift up to V3_NS
 *          chunks apart, a warp with no pick of chunk i only waits for it to land. (A dedicated
 *          producer warp would make 9 warps: 3 on one SM sub-partition caps registers at 168.)
 *   compute token tl belongs to warp tl % 8 (4 tokens per warp, their fp32 accumulators
 *          4 x [16 heads x 64] = 128 registers per lane). Lane p of a warp holds pick p (token
 *          p / K, slot p % K) and its distinct number; a ballot per staged chunk lists the warp's
 *          picks of it. Per pick: S = Q K^T (16 x 64, mma.m16n8k16, Q and K by ldmatrix),
 *          softmax over the chunk's 64 keys in registers, P scaled by w / rowsum and rounded to
 *          bf16, acc += P V (V by ldmatrix.trans).
 * Floors per pick: 64 mma (131,072 MAC), 18 KiB of ldmatrix (Q 2 + K 8 + V 8), 1,024 exp2;
 * per distinct chunk per tile: 16 KiB L2 -> shared.
 *
 * v4 = the same kernel with DEC (decoupled ring) set: a warp visits only the distinct chunks
 * that its own picks name (in increasing number: a warp-wide minimum over its lanes' picks),
 * and a stage is refilled as soon as the warps that NEED its chunk (a bitmask per chunk, built in
 * the setup) have released it, not all 8. Measured on v3 (ncu, random picks): 2 warps per
 * scheduler, 0.33 instructions issued per cycle, L2 at 21%: every warp waited for every chunk,
 * and a refill waited for the slowest warp, so only ~2 of the 8 stages were in flight. A waiter
 * for chunk j first spins until tag[j % NS] == j (the filler writes the tag before its copies;
 * by then the stage's previous phase has completed, so the parity wait that follows is exact).
 * No deadlock: the lowest-numbered chunk not yet released is staged (its predecessor in the
 * stage was released) and each warp that needs it has finished all its lower chunks.
 */
#include <limits.h>

#define V3_TT 32                          /* tokens per CTA */
#define V3_W 8                            /* consumer warps; token tl belongs to warp tl % V3_W */
#define V3_TPW (V3_TT / V3_W)             /* tokens (register accumulators) per consumer warp */
#define V3_NS 8                           /* K/V stages in the ring */
#define V3_KMAX 32                        /* larger K goes to v2 */
#define V3_THREADS (V3_W * 32)
#define V3_STAGE_ELEMS (2 * 64 * 64)      /* K then V of one chunk, bf16 */
#define V3_EPT ((V3_TT * V3_KMAX + V3_THREADS - 1) / V3_THREADS)   /* picks per thread in setup */
#define V3_SMEM_MAX 232448                /* sm_90: 227 KiB of dynamic shared memory per CTA */

/* hash table slots: a power of two >= 2 * picks */
__host__ __device__ constexpr int v3_ht(int K, int TT = V3_TT) {
    int ht = 64;
    while (ht < 2 * TT * K) ht <<= 1;
    return ht;
}
/* dynamic shared memory: ring | Q | full[NS] | rel[NS] tag[NS] | hkey[HT] (DEC: then need[NE])
 * hval[HT] | pc pdi dchunk pw [NE] | nd  (229,520 bytes at K = 32) */
__host__ __device__ constexpr size_t v3_smem_bytes(int K, int TT = V3_TT, int NS = V3_NS) {
    return (size_t)NS * V3_STAGE_ELEMS * 2 + (size_t)TT * 16 * 64 * 2 + 2 * NS * 8 +
           (size_t)2 * v3_ht(K, TT) * 4 + (size_t)4 * TT * K * 4 + 16;
}

__device__ __forceinline__ void mbar_init(uint64_t *b, int count) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;" ::"r"(smem_u32(b)), "r"(count) : "memory");
}
__device__ __forceinline__ void mbar_wait(uint64_t *b, uint32_t parity) {
    uint32_t ok;
    do {
        asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2; selp.u32 %0, 1, 0, p; }"
                     : "=r"(ok) : "r"(smem_u32(b)), "r"(parity) : "memory");
    } while (!ok);
}
/* arrive on b once all of this thread's earlier cp.async copies have landed */
__device__ __forceinline__ void mbar_arrive_cp_async(uint64_t *b) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];" ::"r"(smem_u32(b)) : "memory");
}

/* One pick's scores: P = softmax_rows(Q K^T / 8) * wr, as bf16 A fragments pa[kk] (keys
 * 16kk..16kk+15). qt: the token's 16 Q rows in shared memory (row base a multiple of 8, so the
 * swizzle by row%8 holds); kt: the staged K tile. */
__device__ __forceinline__ void v3_scores(uint32_t pa[4][4], const uint16_t *qt, const uint16_t *kt, int lane, float wr) {
    float s[8][4];
#pragma unroll
    for (int nt = 0; nt < 8; nt++) s[nt][0] = s[nt][1] = s[nt][2] = s[nt][3] = 0.f;
#pragma unroll
    for (int kp = 0; kp < 2; kp++) {                 /* k-steps 2kp, 2kp+1 (dims 32kp..32kp+31) */
        uint32_t qa0[4], qa1[4];
        ldsm_x4(qa0, smem_u32(qt + swz(lane & 15, (2 * kp) * 16 + (lane >> 4) * 8)));
        ldsm_x4(qa1, smem_u32(qt + swz(lane & 15, (2 * kp + 1) * 16 + (lane >> 4) * 8)));
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            uint32_t b[4];
            const int row = nt * 8 + (lane & 7), col = (2 * kp + (lane >> 4)) * 16 + ((lane >> 3) & 1) * 8;
            ldsm_x4(b, smem_u32(kt + swz(row, col)));
            mma16816(s[nt], qa0, b[0], b[1]);
            mma16816(s[nt], qa1, b[2], b[3]);
        }
    }
    const float sl2 = 0.125f * 1.44269504088896341f;   /* 1/sqrt(64) * log2(e) */
    float l0, l1;
    frag_softmax(s, sl2, l0, l1);
    const float f0 = wr / l0, f1 = wr / l1;
#pragma unroll
    for (int kk = 0; kk < 4; kk++) {
        pa[kk][0] = pack_bf16(s[2 * kk][0] * f0, s[2 * kk][1] * f0);
        pa[kk][1] = pack_bf16(s[2 * kk][2] * f1, s[2 * kk][3] * f1);
        pa[kk][2] = pack_bf16(s[2 * kk + 1][0] * f0, s[2 * kk + 1][1] * f0);
        pa[kk][3] = pack_bf16(s[2 * kk + 1][2] * f1, s[2 * kk + 1][3] * f1);
    }
}

/* acc (16 heads x 64 dims, C fragments) += P V; vt: the staged V tile */
__device__ __forceinline__ void v3_pv(float acc[8][4], const uint32_t pa[4][4], const uint16_t *vt, int lane) {
#pragma unroll
    for (int kk = 0; kk < 4; kk++)
#pragma unroll
        for (int nt = 0; nt < 8; nt += 2) {
            uint32_t b[4];
            const int row = 16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8, col = (nt + (lane >> 4)) * 8;
            ldsm_x4_t(b, smem_u32(vt + swz(row, col)));
            mma16816(acc[nt], pa[kk], b[0], b[1]);
            mma16816(acc[nt + 1], pa[kk], b[2], b[3]);
        }
}

/* One warp: chunk c's K and V rows of memory head m -> stage (swizzled), then full is
 * signalled once the copies land (each lane arrives when its own copies have). */
__device__ __forceinline__ void v3_fill(uint16_t *kt, uint64_t *full, int c, const uint16_t *kmem, const uint16_t *vmem,
                                        int64_t base_n, const uint16_t *kx, const uint16_t *vx, int Hm, int m, int lane) {
    const bool second = c >= base_n;                          /* a query's own chunk: second source */
    const int64_t cc = second ? c - base_n : c;
    const uint16_t *kb = (second ? kx : kmem) + ((size_t)cc * 64 * Hm + m) * 64;
    const uint16_t *vb = (second ? vx : vmem) + ((size_t)cc * 64 * Hm + m) * 64;
    uint16_t *vt = kt + 64 * 64;
#pragma unroll
    for (int k = 0; k < 16; k++) {                            /* 512 16-byte pieces per tile, 16 per lane */
        const int p = lane + 32 * k, row = p >> 3, unit = p & 7;
        const size_t src = (size_t)row * Hm * 64 + unit * 8;
        const int dst = row * 64 + ((unit ^ (row & 7)) << 3);
        cp_async16(smem_u32(kt + dst), kb + src);
        cp_async16(smem_u32(vt + dst), vb + src);
    }
    mbar_arrive_cp_async(full);
}

/* grid (ceil(T / TT), Hm), W * 32 threads, v3_smem_bytes(K, TT, NS) bytes of dynamic shared
 * memory. DEC: the decoupled ring (v4, above). TT tokens per CTA, W warps (TT / W tokens each),
 * NS stages: v3 and v4 are <TT 32, W 8, NS 8>, v5 is <16, 16, 11> (one token per warp, so
 * 128 registers and 16 warps per SM). */
template <bool DEC, int TT, int W, int NS>
__global__ void __launch_bounds__(W * 32, 1)
hsa_fwd_v3_kernel(const uint16_t *__restrict__ q, const uint16_t *__restrict__ kmem, const uint16_t *__restrict__ vmem,
                  int64_t base_n, const uint16_t *__restrict__ kx, const uint16_t *__restrict__ vx,
                  const int32_t *__restrict__ idx, const float *__restrict__ w, int T, int Hm, int K, float *out) {
    constexpr int TPW = TT / W, THREADS = W * 32, EPT = (TT * V3_KMAX + THREADS - 1) / THREADS;
    static_assert(TT % W == 0 && W <= 32, "tile shape");
    extern __shared__ __align__(128) unsigned char sm3[];
    const int NE = TT * K, HT = v3_ht(K, TT);
    uint16_t *const ring = (uint16_t *)sm3;                                   /* [NS][K 64x64 | V 64x64] */
    uint16_t *const qs = ring + NS * V3_STAGE_ELEMS;                       /* [TT*16][64] */
    uint64_t *const full = (uint64_t *)(qs + TT * 16 * 64);                /* [NS] stage s holds its chunk */
    int *const rel = (int *)(full + NS);                                   /* [NS] warps done with stage s */
    volatile int *const tag = rel + NS;                                    /* [NS] DEC: chunk number stage s receives */
    int *const hkey = rel + 2 * NS, *const hval = hkey + HT;               /* hash: chunk -> first pick, then its number */
    int *const pc = hval + HT;                                                /* [NE] chunk of pick e, -1 = none */
    int *const pdi = pc + NE;                                                 /* [NE] distinct number of pick e, -1 = none */
    int *const dchunk = pdi + NE;                                             /* [nd] distinct chunks in order */
    float *const pw = (float *)(dchunk + NE);                                 /* [NE] weight of pick e */
    int *const nd_s = (int *)(pw + NE);
    int *const need = hkey;                /* [nd] DEC: bitmask of the warps with picks of chunk i (after hashing) */
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int tile = (int)gridDim.x - 1 - (int)blockIdx.x;   /* late tiles (more eligible chunks) first */
    const int m = blockIdx.y, t0 = tile * TT, H = Hm * 16;

    /* 1. Q rows of the tile -> qs; hash cleared; barriers */
    for (int p = tid; p < TT * 128; p += THREADS) {     /* 128 16-byte pieces per token */
        const int tl = p >> 7, row = p >> 3, unit = p & 7;    /* row = tl*16 + head */
        if (t0 + tl < T)
            cp_async16(smem_u32(qs + row * 64 + ((unit ^ (row & 7)) << 3)),
                       q + ((size_t)(t0 + tl) * H + m * 16 + (row & 15)) * 64 + unit * 8);
    }
    cp_commit();
    for (int i = tid; i < HT; i += THREADS) hkey[i] = -1, hval[i] = INT_MAX;
    if (tid < NS) rel[tid] = 0, tag[tid] = -1, mbar_init(&full[tid], 32);   /* one warp's lanes arrive per fill */
    __syncthreads();

    /* 2. picks e = r*TT + tl (slot-major, so that consecutive distinct chunks belong to
     *    different warps); a pick counts if idx >= 0 and w != 0 */
    int hs[EPT];
#pragma unroll
    for (int j = 0; j < EPT; j++) {
        const int e = tid + j * THREADS;
        hs[j] = -1;
        if (e < NE) {
            const int r = e / TT, t = t0 + e % TT;
            int c = -1;
            float wv = 0.f;
            if (t < T) {
                const size_t o = ((size_t)t * Hm + m) * K + r;
                c = idx[o], wv = w[o];
            }
            if (wv == 0.f) c = -1;
            pc[e] = c < 0 ? -1 : c, pw[e] = wv;
            if (c >= 0) {
                int h = (int)(((uint32_t)c * 2654435761u) & (uint32_t)(HT - 1));
                for (;;) {
                    const int old = atomicCAS(&hkey[h], -1, c);
                    if (old == -1 || old == c) break;
                    h = (h + 1) & (HT - 1);
                }
                atomicMin(&hval[h], e);
                hs[j] = h;
            }
        }
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < EPT; j++) {                        /* first occurrences mark their slot */
        const int e = tid + j * THREADS;
        if (e < NE) pdi[e] = hs[j] >= 0 && hval[hs[j]] == e ? hs[j] : -1;
    }
    if (DEC)                                                  /* hkey is done: it becomes need[] */
        for (int i = tid; i < NE; i += THREADS) need[i] = 0;
    __syncthreads();
    if (warp == 0) {                                          /* number them in pick order */
        int n = 0;
        for (int b = 0; b < NE; b += 32) {
            const int e = b + lane, h = e < NE ? pdi[e] : -1;
            const unsigned bal = __ballot_sync(0xffffffffu, h >= 0);
            if (h >= 0) {
                const int rk = n + __popc(bal & ((1u << lane) - 1));
                dchunk[rk] = pc[e];
                hval[h] = rk;
            }
            n += __popc(bal);
        }
        if (lane == 0) *nd_s = n;
    }
    __syncthreads();
#pragma unroll
    for (int j = 0; j < EPT; j++) {
        const int e = tid + j * THREADS;
        if (e < NE) {
            pdi[e] = hs[j] >= 0 ? hval[hs[j]] : -1;
            if (DEC && pdi[e] >= 0) atomicOr(&need[pdi[e]], 1 << ((e % TT) % W));   /* token's warp */
        }
    }
    cp_wait<0>();
    __syncthreads();
    const int nd = *nd_s;

    /* 3. the first NS distinct chunks, one warp each */
    for (int i = warp; i < nd && i < NS; i += W) {
        if (DEC && lane == 0) tag[i] = i;
        v3_fill(ring + i * V3_STAGE_ELEMS, &full[i], dchunk[i], kmem, vmem, base_n, kx, vx, Hm, m, lane);
    }

    /* 4. lane holds picks p = lane + 32u of this warp (token j = p / K, slot p % K) */
    const int np = TPW * K;
    int dreg[TPW * V3_KMAX / 32];
#pragma unroll
    for (int u = 0; u < TPW * V3_KMAX / 32; u++) {
        const int p = lane + 32 * u, j = p / K, r = p - j * K;
        dreg[u] = p < np ? pdi[r * TT + warp + W * j] : -1;
    }
    float acc[TPW][8][4];
#pragma unroll
    for (int j = 0; j < TPW; j++)
#pragma unroll
        for (int nt = 0; nt < 8; nt++) acc[j][nt][0] = acc[j][nt][1] = acc[j][nt][2] = acc[j][nt][3] = 0.f;
    int s = 0, i = -1;
    uint32_t ph = 0;
    for (;;) {
        if (DEC) {                                            /* this warp's next chunk */
            int mn = INT_MAX;
#pragma unroll
            for (int u = 0; u < TPW * V3_KMAX / 32; u++)
                if (32 * u < np && dreg[u] > i && dreg[u] < mn) mn = dreg[u];
            i = __reduce_min_sync(0xffffffffu, mn);
            if (i == INT_MAX) break;
            s = i % NS, ph = (uint32_t)(i / NS) & 1;
            while (tag[s] != i) {}
        } else if (++i == nd) {
            break;
        }
        mbar_wait(&full[s], ph);
        const uint16_t *kt = ring + s * V3_STAGE_ELEMS, *vt = kt + 64 * 64;
#pragma unroll
        for (int u = 0; u < TPW * V3_KMAX / 32; u++) {
            if (32 * u >= np) break;                          /* warp-uniform */
            unsigned msk = __ballot_sync(0xffffffffu, dreg[u] == i);
            while (msk) {                                     /* this warp's picks of chunk i */
                const int p = 32 * u + __ffs(msk) - 1;
                msk &= msk - 1;
                const int j = p / K, r = p - j * K, tl = warp + W * j;
                uint32_t pa[4][4];
                v3_scores(pa, qs + tl * 16 * 64, kt, lane, pw[r * TT + tl]);
#pragma unroll
                for (int jj = 0; jj < TPW; jj++)           /* registers need a static index */
                    if (jj == j) v3_pv(acc[jj], pa, vt, lane);
            }
        }
        __syncwarp();                                         /* this warp is done with stage s */
        int last = 0;
        if (lane == 0) {
            __threadfence_block();
            if (DEC) {                                        /* counts the warps that need chunk i */
                last = atomicAdd(&rel[s], 1) + 1 == __popc(need[i]);
                if (last) {
                    rel[s] = 0;
                    __threadfence_block();
                    if (i + NS < nd) tag[s] = i + NS;
                }
            } else {
                last = atomicAdd(&rel[s], 1) % W == W - 1;   /* counts up by W per use */
            }
            __threadfence_block();
        }
        if (__shfl_sync(0xffffffffu, last, 0) && i + NS < nd)   /* all (DEC: all needing) warps are: refill */
            v3_fill(ring + s * V3_STAGE_ELEMS, &full[s], dchunk[i + NS], kmem, vmem, base_n, kx, vx, Hm, m, lane);
        if (!DEC && ++s == NS) s = 0, ph ^= 1;
    }
    const int rr = lane >> 2, c2 = (lane & 3) * 2;
#pragma unroll
    for (int j = 0; j < TPW; j++) {
        const int t = t0 + warp + W * j;
        if (t >= T) continue;
        float *o0 = out + ((size_t)t * H + m * 16 + rr) * 64, *o8 = o0 + 8 * 64;
#pragma unroll
        for (int nt = 0; nt < 8; nt++) {
            *(float2 *)(o0 + nt * 8 + c2) = make_float2(acc[j][nt][0], acc[j][nt][1]);
            *(float2 *)(o8 + nt * 8 + c2) = make_float2(acc[j][nt][2], acc[j][nt][3]);
        }
    }
}
