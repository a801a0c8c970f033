/*
 * kernels/kernels.h — CUDA kernels of the GPU engine (C-callable; internal).
 *
 * All pointers are device pointers unless stated. Every function returns 0 or a cudaError_t
 * value (> 0) and launches on `stream`; nothing synchronises.
 *
 *   hsadb_cuda_topk1   landmark scoring fused with top-k for ONE retrieval query
 *                      (the decode hot path): one pass over the landmarks, memory-bound.
 *   hsadb_cuda_topk_rows  top-k of every row of a score matrix (the batched path, after a
 *                      cuBLAS GEMM of many queries against the landmarks).
 *   hsadb_cuda_hsa_fwd HSA attention of T query tokens into their chosen chunks, any
 *                      G = H/Hm, bf16 in, fp32 softmax and accumulation.
 */
#ifndef HSADB_KERNELS_H
#define HSADB_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *hsadb_stream_t;

#define HSADB_TOPK_MAX 32

/* Scores s[c] = scale * q . lmk[c] for c < n_elig over bf16 landmarks lmk (row c starts at
 * lmk + c*ld; dr % 8 == 0, ld % 8 == 0, 16-byte aligned), q fp32 [dr]. Writes the k best
 * (k <= HSADB_TOPK_MAX) to idx/score sorted by score descending, ties to the higher index;
 * slots beyond n_elig get idx -1, score -inf. workspace: hsadb_cuda_topk1_workspace() bytes,
 * zeroed once before first use (it holds a counter that the kernel leaves at zero). */
size_t hsadb_cuda_topk1_workspace(int k);
int    hsadb_cuda_topk1(const float *q, const uint16_t *lmk, int64_t n_elig, int ld, int dr,
                        float scale, int k, int32_t *idx, float *score, void *workspace,
                        hsadb_stream_t stream);

/* Row-wise top-k of scores [rows][ld] (fp32), row r considering columns < n_elig[r]
 * (n_elig may be NULL: all `cols`). Same output convention as above, [rows][k]. Each row is
 * split over CTAs of 8192 columns, then merged. rows <= 65535. workspace:
 * hsadb_cuda_topk_rows_workspace(rows, cols) bytes (no initialisation needed). */
size_t hsadb_cuda_topk_rows_workspace(int rows, int64_t cols);
int    hsadb_cuda_topk_rows(const float *scores, int rows, int64_t cols, int64_t ld,
                            const int64_t *n_elig, int k, int32_t *idx, float *score,
                            void *workspace, hsadb_stream_t stream);

/* HSA attention. q [T][H][dh] bf16; kmem, vmem [C][S][Hm][dh] bf16 (the stored layout);
 * idx [T][Hm][K] int32 (-1 = empty slot), w [T][Hm][K] fp32. out [T][H][dh] fp32:
 * out[t,h] = sum_r w[t,m,r] softmax_S(q[t,h] . K[idx,:,m] / sqrt(dh)) V[idx,:,m], m = h/(H/Hm).
 * dh must be 32, 64 or 128.
 * G = 16 with dh = 64 runs on tensor cores: kernel v5 by default (hsa_v3.cuh: a CTA per 16-token
 * tile, 16 warps, each distinct chunk of the tile staged once in a decoupled ring; K <= 32); v4
 * (32-token tiles of 8 warps), v3 (v4 with a coupled ring) or v2 (hsa_mma.cuh, one warp per
 * token; also any K > 32) when hsadb_cuda_hsa_set_kernel(4, 3 or 2) picks them (tests and
 * benchmarks). */
int hsadb_cuda_hsa_fwd(const uint16_t *q, const uint16_t *kmem, const uint16_t *vmem,
                       const int32_t *idx, const float *w, int T, int H, int Hm, int dh, int S,
                       int K, float *out, hsadb_stream_t stream);
/* The same with a second K/V source: chunks c >= base_n are read from kx/vx at c - base_n
 * (the chunks a query completed itself, kept apart from the shared memory tier). */
int hsadb_cuda_hsa_fwd2(const uint16_t *q, const uint16_t *kmem, const uint16_t *vmem, int64_t base_n,
                        const uint16_t *kx, const uint16_t *vx, const int32_t *idx, const float *w, int T,
                        int H, int Hm, int dh, int S, int K, float *out, hsadb_stream_t stream);
/* Tests and benchmarks: force the tensor-core kernel of later calls (2..5; 0 = back to the
 * environment's choice). Not thread-safe; the engine never calls it. */
void hsadb_cuda_hsa_set_kernel(int version);

#ifdef __cplusplus
}
#endif
#endif
