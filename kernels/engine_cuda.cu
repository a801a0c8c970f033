/*
 * kernels/engine_cuda.cu — the CUDA backend of the forward pass (see engine_cuda.h).
 *
 * Read top-down: error handling, the weights on the device, the run (scratch), the small
 * kernels (embedding, RMSNorm, QKNorm + RoPE, attention over a window or a group, SwiGLU,
 * packing), then the four stages in the order of model/forward.c, whose CPU code they mirror
 * line for line. Matrix products are cuBLAS SGEMMs (fp32, row-major [n][din] x W[dout][din]^T).
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine_cuda.h"
#include "kernels.h"
#include "mma_util.cuh"

extern "C" {
#include "util.h"
}

/* ---- errors ----------------------------------------------------------------------------- */

static int cuda_fail(cudaError_t e, const char *what, int line) {
    return hsadb_fail(HSADB_ERR_NODEVICE, "CUDA: %s (%s, engine_cuda.cu:%d)", cudaGetErrorString(e), what, line);
}
#define CK(x) do { cudaError_t e_ = (x); if (e_ != cudaSuccess) return cuda_fail(e_, #x, __LINE__); } while (0)
#define CKB(x) do { cublasStatus_t s_ = (x); if (s_ != CUBLAS_STATUS_SUCCESS) \
    return hsadb_fail(HSADB_ERR_NODEVICE, "cuBLAS error %d (%s, engine_cuda.cu:%d)", (int)s_, #x, __LINE__); } while (0)
#define CKK(x) do { int k_ = (x); if (k_) return cuda_fail((cudaError_t)k_, #x, __LINE__); } while (0)

extern "C" int hsadb_cuda_available(void) {
    static int avail = -1;
    if (avail < 0) {
        int n = 0;
        avail = cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
        if (!avail) cudaGetLastError();
    }
    return avail;
}

/* Page-locked host buffers. Pinning is slow (the pages are locked one by one: an append's
 * ~40 MB of them cost tens of ms per appender), so freed buffers are kept for the next
 * allocation of the process: up to POOL_N buffers, POOL_BYTES in all; an allocation takes the
 * smallest kept buffer that fits and is at most twice its size. Each buffer carries its size
 * in a 64-byte header (64-byte aligned data). */
#define POOL_N 16
#define POOL_BYTES ((size_t)512 << 20)
#define POOL_HDR 64
static pthread_mutex_t g_plock = PTHREAD_MUTEX_INITIALIZER;
static struct { void *p; size_t n; } g_pool[POOL_N];
static int g_npool = 0;
static size_t g_pool_bytes;

extern "C" void *hsadb_cuda_host_alloc(size_t bytes) {
    const size_t want = bytes ? bytes : 1;
    void *p = NULL;
    pthread_mutex_lock(&g_plock);
    int best = -1;
    for (int i = 0; i < g_npool; i++)
        if (g_pool[i].n >= want && g_pool[i].n <= 2 * want && (best < 0 || g_pool[i].n < g_pool[best].n)) best = i;
    if (best >= 0) {
        p = g_pool[best].p;
        g_pool_bytes -= g_pool[best].n;
        g_pool[best] = g_pool[--g_npool];
    }
    pthread_mutex_unlock(&g_plock);
    if (p) return (char *)p + POOL_HDR;
    if (cudaMallocHost(&p, want + POOL_HDR) != cudaSuccess) return NULL;
    *(size_t *)p = want;
    return (char *)p + POOL_HDR;
}

extern "C" void hsadb_cuda_host_free(void *q) {
    if (!q) return;
    void *p = (char *)q - POOL_HDR;
    const size_t n = *(size_t *)p;
    pthread_mutex_lock(&g_plock);
    const int keep = g_npool < POOL_N && g_pool_bytes + n <= POOL_BYTES;
    if (keep) g_pool[g_npool].p = p, g_pool[g_npool].n = n, g_npool++, g_pool_bytes += n;
    pthread_mutex_unlock(&g_plock);
    if (!keep) cudaFreeHost(p);
}

/* ---- weights: the model's fp32 arena on the device, shared by the runs of the process ---- */

typedef struct dev_weights {
    const hsadb_model  *m;
    float              *d;      /* device copy of m->arena */
    uint16_t           *b;      /* the same in bf16 (the operands of bf16 GEMMs), same offsets */
    int                 refs;
    struct dev_weights *next;
} dev_weights;

static pthread_mutex_t g_wlock = PTHREAD_MUTEX_INITIALIZER;
static cudaError_t weights_to_bf16(const float *d, uint16_t *b, int64_t n);   /* kernels section */
static dev_weights *g_weights;

static int weights_get(const hsadb_model *m, dev_weights **out) {
    int rc = 0;
    pthread_mutex_lock(&g_wlock);
    dev_weights *w;
    for (w = g_weights; w && w->m != m; w = w->next) {}
    if (!w) {
        cudaError_t e;
        if (!(w = (dev_weights *)calloc(1, sizeof *w))) { rc = ENOMEM; goto out; }
        w->m = m;
        if ((e = cudaMalloc(&w->d, m->arena_len * sizeof(float))) != cudaSuccess ||
            (e = cudaMemcpy(w->d, m->arena, m->arena_len * sizeof(float), cudaMemcpyHostToDevice)) != cudaSuccess ||
            (e = cudaMalloc(&w->b, m->arena_len * sizeof(uint16_t))) != cudaSuccess ||
            (e = weights_to_bf16(w->d, w->b, (int64_t)m->arena_len)) != cudaSuccess) {
            cudaFree(w->d), cudaFree(w->b);
            free(w);
            rc = cuda_fail(e, "uploading the model", __LINE__);
            goto out;
        }
        w->next = g_weights;
        g_weights = w;
    }
    w->refs++;
    *out = w;
out:
    pthread_mutex_unlock(&g_wlock);
    return rc;
}

static void weights_put(dev_weights *w) {
    if (!w) return;
    pthread_mutex_lock(&g_wlock);
    if (--w->refs == 0) {
        dev_weights **p = &g_weights;
        while (*p != w) p = &(*p)->next;
        *p = w->next;
        cudaFree(w->d), cudaFree(w->b);
        free(w);
    }
    pthread_mutex_unlock(&g_wlock);
}

/* ---- the run ---------------------------------------------------------------------------- */

/* A decode step (one row) as a CUDA graph: captured once, replayed while `key` (what its
 * launches depend on besides the position) stays the same; see graph_run(). */
#define GRAPH_KEY 256
typedef struct step_graph {
    cudaGraphExec_t exec;
    size_t          keylen;
    unsigned char   key[GRAPH_KEY];
} step_graph;

struct hsadb_cuda_run {
    const hsadb_model  *m;
    const hsadb_config *c;
    int                 max_rows, rows_cap, max_nc;
    cudaStream_t        st;
    cublasHandle_t      blas;
    int                 gemm_mode;    /* GEMM_FP32 | GEMM_TF32 | GEMM_BF16 (option gpu_gemm) */
    int                 attn_mma;     /* window attention on tensor cores in bf16 mode (not HSADB_GPU_TILE_ATTENTION) */
    dev_weights        *wt;
    uint16_t           *xh;           /* [rows_cap][max(D, H*dh, F)] bf16 GEMM input (GEMM_BF16) */
    /* device scratch, rows_cap rows unless stated */
    float    *x, *xb, *xb2, *q, *k, *v, *att, *hb, *hb2;
    float    *qr;                 /* [max_rows][Hm*dr] */
    float    *rope;               /* [rows_cap][dh] cos | sin */
    double   *inv_freq;           /* [dh/2] */
    float    *logits;             /* [rows_cap][V] */
    int      *tok;                /* [max_rows] */
    uint16_t *qb;                 /* [max_rows][H*dh] bf16 HSA queries */
    int32_t  *idx, *idx2;         /* [max_rows][Hm][K] top-k of the tier / of the extra chunks */
    float    *sc, *sc2, *w;       /* scores, and the mixing weights [max_rows][Hm][K] */
    float    *lmk, *kmem, *vmem;  /* encoder outputs [max_nc][...] fp32 */
    float    *part;               /* [S][D] x_mid rows of a partial chunk (append) */
    uint16_t *rec_l, *rec_kv;     /* the same as bf16 records */
    void     *topk_ws;
    size_t    tile_smem_max;      /* dynamic shared memory the tiled attention may take */
    int       tile_smem_set;
    /* decode steps as CUDA graphs (HSADB_GPU_NO_GRAPHS: plain launches) */
    int       graphs;
    const int64_t *dpos;          /* while capturing: d_pos, which the kernels then read */
    int64_t  *d_pos, *h_pos;      /* the step's position: device / page-locked */
    int      *h_tok;              /* page-locked [1] */
    float    *h_xin, *h_xout;     /* page-locked [D] */
    float    *h_logits;           /* page-locked [V] */
    void     *blas_ws;            /* cuBLAS workspace (allocation is not allowed under capture) */
    step_graph g_lower, g_upper, g_logits;
    int64_t   graph_launches;
    /* page-locked host mirrors of the selections */
    int32_t  *h_idx;              /* [max_rows][Hm][K] merged selections (block cache) */
    int32_t  *h_map;              /* h_idx mapped to block-cache slots */
    int32_t  *h_tidx;             /* [Ng][max_rows][Hm][K] the selections for the trace */
    float    *h_tw;               /* [Ng][max_rows][Hm][K] their weights */
    float    *h_tqr;              /* [Ng][max_rows][Hm*dr] the retrieval queries for the trace */
    /* chunks completed by the query's own tokens (the memview's extra index), mirrored */
    int64_t   x_base, x_n, x_cap;
    uint16_t *x_lmk, *x_k, *x_v;
    uint16_t *h_xl, *h_xk, *h_xv; /* staging for one chunk */
    float    *h_kb, *h_vb;        /* [S][dh] from the kv callback */
};

struct hsadb_cuda_swa {
    float  *buf;       /* device copy of hsadb_swa_state.buf */
    size_t  floats;
};

/* The memory tier. Landmarks of every chunk are on the device. K/V blocks sit in kv_cap slots:
 * slot = chunk while the memory fits in kv_max slots (direct); past that the slots are a block
 * cache (cached = 1): slot_of/chunk_of map chunks to slots, a clock picks victims, and the
 * blocks a query selects but does not find are fetched through the memview's kv_records. */
#define TIER_STAGE 256     /* chunks fetched per batch: 4 MB of K/V for the shipped model */

struct hsadb_tier {
    int       Hm, dr, S, dh;
    int64_t   n, cap;             /* chunks held, landmark capacity */
    uint16_t *lmk;                /* [cap][Hm*dr] */
    int64_t   kv_cap, kv_max, kv_used, min_slots;
    int       cached;
    uint16_t *k, *v;              /* [kv_cap][S][Hm][dh] */
    /* block cache (host side), guarded by lock from mapping a call's chunks to its last kernel */
    pthread_mutex_t lock;
    int32_t  *slot_of;            /* [cap] chunk -> slot, -1 when not resident */
    int64_t  *chunk_of;           /* [kv_cap] slot -> chunk, -1 when free */
    uint32_t *used;               /* [kv_cap] the piece that last used the slot */
    uint8_t  *ref;                /* [kv_cap] clock reference bits */
    int64_t   hand;
    uint32_t  piece;
    int       n_miss;
    uint64_t *miss_chunk;         /* [TIER_STAGE] */
    int32_t  *miss_slot;          /* [TIER_STAGE] page-locked */
    int32_t  *d_slot;             /* [TIER_STAGE] */
    uint16_t *h_stage, *d_stage;  /* [TIER_STAGE][2][S][Hm*dh] page-locked / device */
    int64_t   hits, misses;
};

#define DW(c, p) ((c)->wt->d + ((p) - (c)->m->arena))   /* device address of a weight */
enum { GEMM_FP32, GEMM_TF32, GEMM_BF16 };

extern "C" void hsadb_cuda_run_free(hsadb_cuda_run *c) {
    if (!c) return;
    if (c->st) cudaStreamSynchronize(c->st);
    void *dev[] = {c->x, c->xb, c->xb2, c->q, c->k, c->v, c->att, c->hb, c->hb2, c->qr, c->rope, c->inv_freq,
                   c->logits, c->tok, c->qb, c->idx, c->idx2, c->sc, c->sc2, c->w, c->lmk, c->kmem, c->vmem,
                   c->rec_l, c->rec_kv, c->topk_ws, c->x_lmk, c->x_k, c->x_v, c->part, c->d_pos, c->blas_ws, c->xh};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++) cudaFree(dev[i]);
    step_graph *gs[] = {&c->g_lower, &c->g_upper, &c->g_logits};
    for (int i = 0; i < 3; i++)
        if (gs[i]->exec) cudaGraphExecDestroy(gs[i]->exec);
    void *host[] = {c->h_pos, c->h_tok, c->h_xin, c->h_xout, c->h_logits, c->h_idx, c->h_map, c->h_tidx,
                    c->h_tw, c->h_tqr, c->h_xl, c->h_xk, c->h_xv, c->h_kb, c->h_vb};
    for (size_t i = 0; i < sizeof host / sizeof host[0]; i++) cudaFreeHost(host[i]);
    if (c->blas) cublasDestroy(c->blas);
    if (c->st) cudaStreamDestroy(c->st);
    weights_put(c->wt);
    free(c);
}

extern "C" int hsadb_cuda_run_init(hsadb_cuda_run **out, const hsadb_model *m, int max_rows, int gemm, unsigned flags) {
    const hsadb_config *cf = &m->c;
    *out = NULL;
    if (!hsadb_cuda_available()) return hsadb_fail(HSADB_ERR_NODEVICE, "no CUDA device is usable");
    if (cf->chunk != 64 || (cf->head_dim != 32 && cf->head_dim != 64 && cf->head_dim != 128) ||
        cf->retr_dim % 32 || cf->topk > HSADB_TOPK_MAX || cf->head_dim > 128)
        return hsadb_fail(HSADB_ERR_NODEVICE, "the CUDA backend needs chunk 64, head_dim 32/64/128, retrieval_dim %% 32 == 0 "
                          "(model has %d, %d, %d)", cf->chunk, cf->head_dim, cf->retr_dim);
    hsadb_cuda_run *c = (hsadb_cuda_run *)calloc(1, sizeof *c);
    if (!c) return ENOMEM;
    c->m = m, c->c = cf;
    c->max_rows = max_rows;
    const int S = cf->chunk, H = cf->n_heads, dh = cf->head_dim, Hm = cf->n_mem_heads, K = cf->topk;
    c->max_nc = max_rows / S + 1;
    const int rows = max_rows > c->max_nc * (S + 1) ? max_rows : c->max_nc * (S + 1);
    const int kvh = cf->n_kv_heads > Hm ? cf->n_kv_heads : Hm;
    c->rows_cap = rows;
    int rc;
    if ((rc = weights_get(m, &c->wt))) { free(c); return rc; }
    cudaError_t e = cudaSuccess;
#define DALLOC(p, count) if (e == cudaSuccess) e = cudaMalloc((void **)&(p), (size_t)(count) * sizeof *(p))
#define HALLOC(p, count) if (e == cudaSuccess) e = cudaMallocHost((void **)&(p), (size_t)(count) * sizeof *(p))
    DALLOC(c->x, (size_t)rows * cf->dim);
    DALLOC(c->xb, (size_t)rows * cf->dim);
    DALLOC(c->xb2, (size_t)rows * cf->dim);
    DALLOC(c->q, (size_t)rows * H * dh);
    DALLOC(c->k, (size_t)rows * kvh * dh);
    DALLOC(c->v, (size_t)rows * kvh * dh);
    DALLOC(c->att, (size_t)rows * H * dh);
    DALLOC(c->hb, (size_t)rows * cf->hidden);
    DALLOC(c->hb2, (size_t)rows * cf->hidden);
    {
        int wmax = cf->dim > H * dh ? cf->dim : H * dh;
        if (cf->hidden > wmax) wmax = cf->hidden;
        DALLOC(c->xh, (size_t)rows * wmax);
    }
    DALLOC(c->qr, (size_t)max_rows * Hm * cf->retr_dim);
    DALLOC(c->rope, (size_t)rows * dh);
    DALLOC(c->inv_freq, dh / 2);
    DALLOC(c->logits, (size_t)rows * cf->vocab);
    DALLOC(c->tok, max_rows);
    DALLOC(c->qb, (size_t)max_rows * H * dh);
    DALLOC(c->idx, (size_t)max_rows * Hm * K);
    DALLOC(c->idx2, (size_t)max_rows * Hm * K);
    DALLOC(c->sc, (size_t)max_rows * Hm * K);
    DALLOC(c->sc2, (size_t)max_rows * Hm * K);
    DALLOC(c->w, (size_t)max_rows * Hm * K);
    DALLOC(c->lmk, (size_t)c->max_nc * Hm * cf->retr_dim);
    DALLOC(c->kmem, (size_t)c->max_nc * S * Hm * dh);
    DALLOC(c->vmem, (size_t)c->max_nc * S * Hm * dh);
    DALLOC(c->rec_l, (size_t)c->max_nc * Hm * cf->retr_dim);
    DALLOC(c->rec_kv, (size_t)c->max_nc * 2 * S * Hm * dh);
    DALLOC(c->part, (size_t)S * cf->dim);
    HALLOC(c->h_idx, (size_t)max_rows * Hm * K);
    HALLOC(c->h_map, (size_t)max_rows * Hm * K);
    HALLOC(c->h_tidx, (size_t)cf->n_groups * max_rows * Hm * K);
    DALLOC(c->d_pos, 1);
    HALLOC(c->h_pos, 1);
    HALLOC(c->h_tok, 1);
    HALLOC(c->h_xin, cf->dim);
    HALLOC(c->h_xout, cf->dim);
    HALLOC(c->h_logits, cf->vocab);
    HALLOC(c->h_tw, (size_t)cf->n_groups * max_rows * Hm * K);
    HALLOC(c->h_tqr, (size_t)cf->n_groups * max_rows * Hm * cf->retr_dim);
    HALLOC(c->h_xl, (size_t)Hm * cf->retr_dim);
    HALLOC(c->h_xk, (size_t)S * Hm * dh);
    HALLOC(c->h_xv, (size_t)S * Hm * dh);
    HALLOC(c->h_kb, (size_t)S * dh);
    HALLOC(c->h_vb, (size_t)S * dh);
#undef DALLOC
#undef HALLOC
    if (e == cudaSuccess) e = cudaMalloc(&c->topk_ws, hsadb_cuda_topk1_workspace(K));
    if (e == cudaSuccess) e = cudaMemset(c->topk_ws, 0, hsadb_cuda_topk1_workspace(K));
    if (e == cudaSuccess) e = cudaStreamCreateWithFlags(&c->st, cudaStreamNonBlocking);
    if (e == cudaSuccess) {
        int dev = 0, optin = 0;
        cudaGetDevice(&dev);
        if (cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess) optin = 48 * 1024;
        c->tile_smem_max = (size_t)optin;
    }
    if (e != cudaSuccess) {
        rc = cuda_fail(e, "allocating the run", __LINE__);
        goto fail;
    }
    if (cublasCreate(&c->blas) != CUBLAS_STATUS_SUCCESS || cublasSetStream(c->blas, c->st) != CUBLAS_STATUS_SUCCESS) {
        rc = hsadb_fail(HSADB_ERR_NODEVICE, "cuBLAS could not start");
        goto fail;
    }
    {
        const size_t wsb = (size_t)32 << 20;
        if (cudaMalloc(&c->blas_ws, wsb) != cudaSuccess || cublasSetWorkspace(c->blas, c->blas_ws, wsb) != CUBLAS_STATUS_SUCCESS) {
            rc = hsadb_fail(HSADB_ERR_NODEVICE, "cuBLAS workspace");
            goto fail;
        }
        c->graphs = !(flags & HSADB_GPU_NO_GRAPHS);
    }
    /* GEMM precision (gemm, hsadb_gpu_gemm): bf16 (default: weights and the activations
     * entering a GEMM rounded to bf16, fp32 accumulate and output), tf32 (fp32 operands on TF32
     * tensor cores, 10-bit mantissa) or fp32. The agreement tests run all three against the CPU. */
    {
        c->gemm_mode = gemm == HSADB_GPU_GEMM_TF32 ? GEMM_TF32 : gemm == HSADB_GPU_GEMM_FP32 ? GEMM_FP32 : GEMM_BF16;
        cublasSetMathMode(c->blas, c->gemm_mode == GEMM_FP32 ? CUBLAS_DEFAULT_MATH : CUBLAS_TF32_TENSOR_OP_MATH);
        /* HSADB_GPU_TILE_ATTENTION keeps the window layers on the CUDA-core tiled kernel in bf16 mode */
        c->attn_mma = !(flags & HSADB_GPU_TILE_ATTENTION);
    }
    {
        double inv[64];
        for (int i = 0; i < dh / 2; i++) inv[i] = pow((double)cf->rope_theta, -2.0 * i / dh);
        if ((e = cudaMemcpy(c->inv_freq, inv, (size_t)dh / 2 * sizeof(double), cudaMemcpyHostToDevice)) != cudaSuccess) {
            rc = cuda_fail(e, "rope table", __LINE__);
            goto fail;
        }
    }
    *out = c;
    return 0;
fail:
    hsadb_cuda_run_free(c);
    return rc;
}

/* ---- kernels ---------------------------------------------------------------------------- */

#define WARPS 4          /* warps per CTA of the row kernels: one warp per row (or row, head) */

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

static unsigned row_grid(int64_t rows) { return (unsigned)((rows + WARPS - 1) / WARPS); }

__global__ void embed_kernel(const int *tok, const float *embed, float *x, int n, int D) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * D) return;
    const int t = (int)(i / D), d = (int)(i % D);
    x[i] = embed[(size_t)tok[t] * D + d];
}

/* out[r][:] = x[r][:] / sqrt(mean(x^2) + eps) * g (per row of d); out may alias x. */
__device__ __forceinline__ void store_as(float *p, float v) { *p = v; }
__device__ __forceinline__ void store_as(uint16_t *p, float v) {   /* bf16, round to nearest even */
    __nv_bfloat16 b = __float2bfloat16_rn(v);
    *p = *(uint16_t *)&b;
}

/* out = RMSNorm(x) * g, one warp per row; out fp32, or bf16 when it only feeds a bf16 GEMM */
template <typename T>
__global__ void rmsnorm_kernel(const float *x, const float *g, T *out, int64_t rows, int d, float eps) {
    const int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= rows) return;
    const float *xr = x + r * d;
    float ss = 0.f;
    for (int i = lane; i < d; i += 32) ss = fmaf(xr[i], xr[i], ss);
    const float inv = rsqrtf(warp_sum(ss) / (float)d + eps);
    T *o = out + r * d;
    for (int i = lane; i < d; i += 32) store_as(o + i, xr[i] * inv * g[i]);
}

/* rope[t] = cos | sin of position (period ? t % period : pos0 + t), angles in double.
 * Kernels that take dpos read the block's first position from it when it is not NULL (a
 * replayed CUDA graph: the position is the one argument that changes between decode steps). */
__global__ void rope_kernel(float *rope, const double *inv_freq, int n, int64_t pos0, int period, int half,
                            const int64_t *dpos) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * half) return;
    if (dpos) pos0 = *dpos;
    const int t = (int)(i / half), j = (int)(i % half);
    const double p = (double)(period ? t % period : pos0 + t), a = p * inv_freq[j];
    rope[(size_t)t * 2 * half + j] = (float)cos(a);
    rope[(size_t)t * 2 * half + half + j] = (float)sin(a);
}

/* Per head: RMSNorm over dh with gain, then rotate-half RoPE (rope may be NULL). x [n][nh][dh]. */
__global__ void qk_prep_kernel(float *x, int n, int nh, int dh, const float *g, float eps, const float *rope) {
    __shared__ float buf[WARPS][128];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t row = (int64_t)blockIdx.x * WARPS + warp;
    if (row >= (int64_t)n * nh) return;
    const int t = (int)(row / nh), half = dh / 2;
    float *v = x + row * dh;
    float ss = 0.f;
    for (int i = lane; i < dh; i += 32) ss = fmaf(v[i], v[i], ss);
    const float inv = rsqrtf(warp_sum(ss) / (float)dh + eps);
    for (int i = lane; i < dh; i += 32) buf[warp][i] = v[i] * inv * g[i];
    __syncwarp();
    for (int i = lane; i < dh; i += 32) {
        float o = buf[warp][i];
        if (rope) {
            const float *cs = rope + (size_t)t * dh, *sn = cs + half;
            o = i < half ? buf[warp][i] * cs[i] - buf[warp][i + half] * sn[i]
                         : buf[warp][i] * cs[i - half] + buf[warp][i - half] * sn[i - half];
        }
        v[i] = o;
    }
}

/* Write the block's K/V rows (positions pos..pos+n-1) into a ring of cap rows. */
__global__ void ring_write_kernel(const float *k, const float *v, float *rk, float *rv, int n, int64_t pos, int cap,
                                  int kd, const int64_t *dpos) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * kd) return;
    if (dpos) pos = *dpos;
    const int t = (int)(i / kd), d = (int)(i % kd);
    const size_t row = (size_t)((pos + t) % cap);
    rk[row * kd + d] = k[i];
    rv[row * kd + d] = v[i];
}

/* The keys row t attends to, [lo, hi]: with cap > 0 the causal window of W positions ending at
 * p0 + t, clipped at the ring's first position `start`; with cap == 0 its group of `group` rows
 * (bidirectional: the chunk encoder). */
__device__ __forceinline__ void attn_keys(int cap, int64_t start, int64_t p0, int t, int W, int group, int64_t *lo,
                                          int64_t *hi) {
    if (cap) {
        const int64_t p = p0 + t;
        *lo = p - W + 1 < start ? start : p - W + 1;
        *hi = p;
    } else {
        *lo = (int64_t)(t / group) * group;
        *hi = *lo + group - 1;
    }
}

/* The second half of one (row, head) of window attention, shared by attn_kernel and
 * attn_tile_kernel: the warp's scores sc[0..nk) with their maximum mx become softmax weights, and
 * o[d] = sum_j softmax_j V[j][d] (lane: dims lane, lane+32, ...; dh <= 128). vrow(j) is the address
 * of key j's V row (a ring in global memory, or the tile's rows in shared memory). */
template <class VRow>
__device__ __forceinline__ void softmax_pv(float *sc, int nk, float mx, int lane, int dh, float *o, VRow vrow) {
    mx = warp_max(mx);
    float sum = 0.f;
    for (int j = lane; j < nk; j += 32) sum += (sc[j] = __expf(sc[j] - mx));
    sum = warp_sum(sum);
    __syncwarp();
    float acc[4] = {0.f, 0.f, 0.f, 0.f};
    for (int j = 0; j < nk; j++) {
        const float p = sc[j], *vr = vrow(j);
#pragma unroll
        for (int e = 0; e < 4; e++)
            if (lane + 32 * e < dh) acc[e] = fmaf(p, vr[lane + 32 * e], acc[e]);
    }
    const float inv = 1.f / sum;
#pragma unroll
    for (int e = 0; e < 4; e++)
        if (lane + 32 * e < dh) o[lane + 32 * e] = acc[e] * inv;
}

/* One warp per (query row t, head h). Keys: with cap > 0, ring rows (causal window of W over
 * positions, first position `start`); with cap == 0, the rows of t's group of `group` rows
 * (bidirectional: the chunk encoder). Lanes score keys j, j+32, ..., then accumulate V over
 * dims lane, lane+32, ... Scores live in dynamic shared memory: WARPS x maxk floats. */
__global__ void attn_kernel(const float *q, const float *kb, const float *vb, int cap, int64_t start, int64_t p0,
                            int n, int H, int Hk, int dh, int W, int group, int maxk, float *out, const int64_t *dpos) {
    extern __shared__ float smem[];
    __shared__ float qs[WARPS][128];
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    const int64_t gw = (int64_t)blockIdx.x * WARPS + warp;
    if (gw >= (int64_t)n * H) return;
    if (dpos) p0 = *dpos;
    const int t = (int)(gw / H), h = (int)(gw % H), kh = h / (H / Hk), kd = Hk * dh;
    float *sc = smem + (size_t)warp * maxk;
    int64_t lo, hi;
    attn_keys(cap, start, p0, t, W, group, &lo, &hi);
    const int nk = (int)(hi - lo + 1);
    const float scale = rsqrtf((float)dh);
    for (int i = lane; i < dh; i += 32) qs[warp][i] = q[((size_t)t * H + h) * dh + i] * scale;
    __syncwarp();
    float mx = -INFINITY;
    for (int j = lane; j < nk; j += 32) {
        const int64_t key = lo + j;
        const float *kr = kb + (size_t)(cap ? key % cap : key) * kd + (size_t)kh * dh;
        float a = 0.f;
        for (int i = 0; i < dh; i += 4) {
            const float4 k4 = *(const float4 *)(kr + i);
            a = fmaf(qs[warp][i], k4.x, a);
            a = fmaf(qs[warp][i + 1], k4.y, a);
            a = fmaf(qs[warp][i + 2], k4.z, a);
            a = fmaf(qs[warp][i + 3], k4.w, a);
        }
        sc[j] = a;
        mx = fmaxf(mx, a);
    }
    softmax_pv(sc, nk, mx, lane, dh, out + ((size_t)t * H + h) * dh, [&](int j) {
        const int64_t key = lo + j;
        return vb + (size_t)(cap ? key % cap : key) * kd + (size_t)kh * dh;
    });
}

/* attn_kernel for blocks of many rows, flash-style: a CTA takes TQ consecutive query rows and
 * one K/V head, stages the union of their key windows in shared memory once (K rows padded by
 * one float: lane j reads row j without bank conflicts), and its warps serve the (row, head)
 * pairs of the H/Hk query heads of that K/V head from there. attn_kernel reads every key of a
 * window from L2 for every (row, head): 32 KB per pair at W = 128, dh = 32. The arithmetic and
 * its order are attn_kernel's. Dynamic shared memory: attn_tile_smem() bytes. */
#define TQ 32            /* query rows per CTA */
#define TWARPS 8

static size_t attn_tile_smem(int nkmax, int dh, int maxk) {
    return ((size_t)nkmax * (dh + 1) + (size_t)nkmax * dh + (size_t)TWARPS * maxk + (size_t)TWARPS * dh) * sizeof(float);
}

__global__ void __launch_bounds__(TWARPS * 32)
attn_tile_kernel(const float *__restrict__ q, const float *__restrict__ kb, const float *__restrict__ vb, int cap,
                 int64_t start, int64_t p0, int n, int H, int Hk, int dh, int W, int group, int nkmax, int maxk,
                 float *__restrict__ out) {
    extern __shared__ float sm[];
    const int G = H / Hk, kh = blockIdx.y, t0 = blockIdx.x * TQ, t1 = t0 + TQ < n ? t0 + TQ : n;
    const int kd = Hk * dh, KP = dh + 1;
    float *ks = sm, *vs = ks + (size_t)nkmax * KP, *scs = vs + (size_t)nkmax * dh, *qs = scs + (size_t)TWARPS * maxk;
    int64_t klo, khi;                         /* the keys of every row of the tile */
    if (cap) {
        klo = p0 + t0 - W + 1 < start ? start : p0 + t0 - W + 1;
        khi = p0 + t1 - 1;
    } else {
        klo = (int64_t)(t0 / group) * group;
        khi = (int64_t)((t1 - 1) / group) * group + group - 1;
        if (khi > n - 1) khi = n - 1;
    }
    const int nk = (int)(khi - klo + 1);
    for (int i = threadIdx.x; i < nk * dh; i += blockDim.x) {
        const int j = i / dh, d = i % dh;
        const int64_t key = klo + j;
        const size_t row = (size_t)(cap ? key % cap : key) * kd + (size_t)kh * dh;
        ks[j * KP + d] = kb[row + d];
        vs[j * dh + d] = vb[row + d];
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    float *sc = scs + (size_t)warp * maxk, *qw = qs + (size_t)warp * dh;
    const float scale = rsqrtf((float)dh);
    for (int pr = warp; pr < (t1 - t0) * G; pr += TWARPS) {
        const int t = t0 + pr / G, h = kh * G + pr % G;
        int64_t lo, hi;
        attn_keys(cap, start, p0, t, W, group, &lo, &hi);
        const int nkt = (int)(hi - lo + 1), off = (int)(lo - klo);
        for (int i = lane; i < dh; i += 32) qw[i] = q[((size_t)t * H + h) * dh + i] * scale;
        __syncwarp();
        float mx = -INFINITY;
        for (int j = lane; j < nkt; j += 32) {
            const float *kr = ks + (size_t)(off + j) * KP;
            float a = 0.f;
            for (int i = 0; i < dh; i++) a = fmaf(qw[i], kr[i], a);
            sc[j] = a;
            mx = fmaxf(mx, a);
        }
        softmax_pv(sc, nkt, mx, lane, dh, out + ((size_t)t * H + h) * dh,
                   [&](int j) { return (const float *)vs + (size_t)(off + j) * dh; });
        __syncwarp();                         /* qw and sc are rewritten by the next pair */
    }
}

/*
 * attn_tile_kernel on tensor cores, for dh = 32 in the default GEMM mode (bf16): the attention's
 * operands are rounded to bf16 as the GEMMs' are, scores and the softmax stay fp32 (mma.sync
 * m16n8k16, fp32 accumulate). Two instances: RING, the causal window layers (W <= 129), and
 * !RING, the chunk encoder's groups of `group` <= 80 rows (bidirectional).
 *
 * RING:
 * A CTA takes WM_ROWS = 64 consecutive query rows and one K/V head. It stages the keys of all of
 * them, WM_KEYS = 192 ring rows from position p0 + t0 - W + 1 (zeros where a position is before
 * the ring's first `start` or after the last row), as bf16 in shared memory, rows of 64 bytes with
 * their four 16-byte units swizzled (unit ^ (row/2 % 4)) so that ldmatrix reads 8 rows without bank
 * conflicts. A warp then takes one (16-row m-tile, query head) unit at a time: Q fragments from
 * global memory (scaled, rounded to bf16); S = Q K^T over the NT*8 = 144 keys that can be in
 * those rows' windows (key tile offset 16 * m-tile), masked to each row's window [max(start,
 * p - W + 1), p]; the softmax in registers (quad shuffles); O = P V with P reused in registers as
 * the A operand and V read with ldmatrix.trans. One pass: the whole window is in registers.
 * !RING: a CTA takes one group (t0 = blockIdx.x * group) and one K/V head; it stages the group's
 * rows as keys, and every m-tile scores all of them (WM_NT_GROUP = 10 tiles: 80 keys, those past
 * the group masked).
 */
#define WM_ROWS 64
#define WM_WARPS 8
#define WM_DH 32
#define WM_NT 18                                /* key tiles of 8 per unit: 16 + W - 1 <= 144 */
#define WM_KEYS (WM_ROWS - 16 + WM_NT * 8)      /* 192 */
#define WM_NT_GROUP 10                          /* group attention: up to 80 keys */

__device__ __forceinline__ int wm_swz(int row, int col) {  /* element offset; col multiple of 4 */
    return row * WM_DH + ((((col >> 3) ^ ((row >> 1) & 3))) << 3) + (col & 7);
}

template <bool RING>
__global__ void __launch_bounds__(WM_WARPS * 32)
attn_mma_kernel(const float *__restrict__ q, const float *__restrict__ kb, const float *__restrict__ vb, int cap,
                int64_t start, int64_t p0, int n, int H, int Hk, int W, int group, float *__restrict__ out) {
    constexpr int NT = RING ? WM_NT : WM_NT_GROUP, NKEYS = RING ? WM_KEYS : NT * 8;
    __shared__ __align__(128) uint16_t ks[WM_KEYS * WM_DH], vs[WM_KEYS * WM_DH];
    const int G = H / Hk, kh = blockIdx.y, rows = RING ? WM_ROWS : group, t0 = blockIdx.x * rows;
    const int t1 = t0 + rows < n ? t0 + rows : n, kd = Hk * WM_DH;
    /* "positions" of the staged keys: ring positions (RING), else row indices */
    if (!RING) start = t0, p0 = 0;
    const int64_t kbase = RING ? p0 + t0 - W + 1 : t0, klast = p0 + t1 - 1;   /* staged key 0, last key */
    for (int i = threadIdx.x; i < NKEYS * WM_DH / 4; i += blockDim.x) {
        const int j = i / (WM_DH / 4), d = (i % (WM_DH / 4)) * 4;
        const int64_t pos = kbase + j;
        float4 k4 = make_float4(0.f, 0.f, 0.f, 0.f), v4 = k4;
        if (pos >= start && pos <= klast) {
            const size_t row = (size_t)(RING ? pos % cap : pos) * kd + (size_t)kh * WM_DH + d;
            k4 = *(const float4 *)(kb + row);
            v4 = *(const float4 *)(vb + row);
        }
        const int o = wm_swz(j, d);
        *(uint2 *)(ks + o) = make_uint2(pack_bf16(k4.x, k4.y), pack_bf16(k4.z, k4.w));
        *(uint2 *)(vs + o) = make_uint2(pack_bf16(v4.x, v4.y), pack_bf16(v4.z, v4.w));
    }
    __syncthreads();
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, r = lane >> 2, c2 = (lane & 3) * 2;
    const float scale = rsqrtf((float)WM_DH), sl2 = 1.4426950408889634f;
    const int nmt = (t1 - t0 + 15) / 16;
    for (int u = warp; u < nmt * G; u += WM_WARPS) {
        const int mt = u / G, h = kh * G + u % G, koff = RING ? 16 * mt : 0;
        const int ta = t0 + 16 * mt + r, tb = ta + 8;           /* this lane's two rows */
        uint32_t qa[WM_DH / 16][4];
        const float *qra = q + ((size_t)ta * H + h) * WM_DH, *qrb = q + ((size_t)tb * H + h) * WM_DH;
#pragma unroll
        for (int kk = 0; kk < WM_DH / 16; kk++) {
            float2 a0 = make_float2(0.f, 0.f), a1 = a0, a2 = a0, a3 = a0;
            if (ta < t1) a0 = *(const float2 *)(qra + 16 * kk + c2), a2 = *(const float2 *)(qra + 16 * kk + c2 + 8);
            if (tb < t1) a1 = *(const float2 *)(qrb + 16 * kk + c2), a3 = *(const float2 *)(qrb + 16 * kk + c2 + 8);
            qa[kk][0] = pack_bf16(a0.x * scale, a0.y * scale);
            qa[kk][1] = pack_bf16(a1.x * scale, a1.y * scale);
            qa[kk][2] = pack_bf16(a2.x * scale, a2.y * scale);
            qa[kk][3] = pack_bf16(a3.x * scale, a3.y * scale);
        }
        float sc[NT][4];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
            sc[nt][0] = sc[nt][1] = sc[nt][2] = sc[nt][3] = 0.f;
            uint32_t b[4];
            const int row = koff + nt * 8 + (lane & 7), col = (lane >> 3) * 8;   /* 4 matrices: dims 0, 8, 16, 24 */
            ldsm_x4(b, smem_u32(ks + wm_swz(row, col)));
            mma16816(sc[nt], qa[0], b[0], b[1]);
            mma16816(sc[nt], qa[1], b[2], b[3]);
        }
        /* mask to each row's keys (staged index j: position kbase + j; the window [max(start, p - W + 1),
         * p], or the whole group), then softmax */
        const int64_t pa = p0 + ta, pb = p0 + tb;
        const int64_t la = RING ? (pa - W + 1 > start ? pa - W + 1 : start) - kbase : 0, ha = RING ? pa - kbase : t1 - 1 - t0;
        const int64_t lb = RING ? (pb - W + 1 > start ? pb - W + 1 : start) - kbase : 0, hb = RING ? pb - kbase : t1 - 1 - t0;
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
            for (int e = 0; e < 2; e++) {
                const int j = koff + nt * 8 + c2 + e;
                if (j < la || j > ha) sc[nt][e] = -INFINITY;
                if (j < lb || j > hb) sc[nt][2 + e] = -INFINITY;
            }
        float sa, sb;
        frag_softmax(sc, sl2, sa, sb);
        float o[WM_DH / 8][4];
#pragma unroll
        for (int nt = 0; nt < WM_DH / 8; nt++) o[nt][0] = o[nt][1] = o[nt][2] = o[nt][3] = 0.f;
#pragma unroll
        for (int kk = 0; kk < NT / 2; kk++) {
            const uint32_t pa4[4] = {pack_bf16(sc[2 * kk][0], sc[2 * kk][1]), pack_bf16(sc[2 * kk][2], sc[2 * kk][3]),
                                     pack_bf16(sc[2 * kk + 1][0], sc[2 * kk + 1][1]),
                                     pack_bf16(sc[2 * kk + 1][2], sc[2 * kk + 1][3])};
#pragma unroll
            for (int nt = 0; nt < WM_DH / 8; nt += 2) {
                uint32_t b[4];
                const int row = koff + 16 * kk + (lane & 7) + ((lane >> 3) & 1) * 8, col = (nt + (lane >> 4)) * 8;
                ldsm_x4_t(b, smem_u32(vs + wm_swz(row, col)));
                mma16816(o[nt], pa4, b[0], b[1]);
                mma16816(o[nt + 1], pa4, b[2], b[3]);
            }
        }
        const float ia = 1.f / sa, ib = 1.f / sb;
        float *oa = out + ((size_t)ta * H + h) * WM_DH, *ob = out + ((size_t)tb * H + h) * WM_DH;
#pragma unroll
        for (int nt = 0; nt < WM_DH / 8; nt++) {
            if (ta < t1) *(float2 *)(oa + nt * 8 + c2) = make_float2(o[nt][0] * ia, o[nt][1] * ia);
            if (tb < t1) *(float2 *)(ob + nt * 8 + c2) = make_float2(o[nt][2] * ib, o[nt][3] * ib);
        }
    }
}

/* out = silu(a) * b (SwiGLU); out may be a (fp32, in place) or a bf16 GEMM input */
template <typename T>
__global__ void silu_mul_kernel(const float *a, const float *b, T *out, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        const float g = a[i];
        store_as(out + i, g / (1.f + __expf(-g)) * b[i]);
    }
}

__global__ void add_kernel(float *a, const float *b, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) a[i] += b[i];
}

__global__ void to_bf16_kernel(const float *x, uint16_t *y, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        __nv_bfloat16 b = __float2bfloat16_rn(x[i]);
        y[i] = *(uint16_t *)&b;
    }
}

/* y[n][din] (dense) = bf16(x[n][din]) with x's rows ldx apart; 4 elements per thread (din % 4 == 0) */
__global__ void cast_rows_kernel(const float *__restrict__ x, int ldx, uint16_t *__restrict__ y, int n, int din) {
    const int64_t i = ((int64_t)blockIdx.x * blockDim.x + threadIdx.x) * 4, tot = (int64_t)n * din;
    if (i >= tot) return;
    const int64_t r = i / din, col = i - r * din;
    const float4 v = *(const float4 *)(x + r * ldx + col);
    __nv_bfloat162 a = __floats2bfloat162_rn(v.x, v.y), b = __floats2bfloat162_rn(v.z, v.w);
    uint2 o;
    o.x = *(uint32_t *)&a, o.y = *(uint32_t *)&b;
    *(uint2 *)(y + i) = o;
}

/* the same for any din / ldx, one element per thread */
__global__ void cast_rows1_kernel(const float *__restrict__ x, int ldx, uint16_t *__restrict__ y, int n, int din) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)n * din) return;
    const int64_t r = i / din;
    __nv_bfloat16 b = __float2bfloat16_rn(x[r * ldx + (i - r * din)]);
    y[i] = *(uint16_t *)&b;
}

static cudaError_t weights_to_bf16(const float *d, uint16_t *b, int64_t n) {
    to_bf16_kernel<<<(unsigned)((n + 255) / 256), 256>>>(d, b, n);
    cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? cudaDeviceSynchronize() : e;
}

/* Encoder input: row j*(S+1)+s is RMSNorm_in(xs[j*S+s]) for s < S, else e_cls. */
__global__ void enc_in_kernel(const float *xs, const float *g, const float *cls, float *E, int nc, int S, int D,
                              float eps) {
    const int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
    const int lane = threadIdx.x & 31;
    if (r >= (int64_t)nc * (S + 1)) return;
    const int j = (int)(r / (S + 1)), s = (int)(r % (S + 1));
    float *o = E + r * D;
    if (s == S) {
        for (int i = lane; i < D; i += 32) o[i] = cls[i];
        return;
    }
    const float *xr = xs + ((size_t)j * S + s) * D;
    float ss = 0.f;
    for (int i = lane; i < D; i += 32) ss = fmaf(xr[i], xr[i], ss);
    const float inv = rsqrtf(warp_sum(ss) / (float)D + eps);
    for (int i = lane; i < D; i += 32) o[i] = xr[i] * inv * g[i];
}

/* Records: kv[j] = K block [S][Hm*dh] then V block, bf16. */
__global__ void pack_kv_kernel(const float *k, const float *v, uint16_t *kv, int nc, int per) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)nc * per) return;
    const int64_t j = i / per, o = i % per;
    __nv_bfloat16 a = __float2bfloat16_rn(k[i]), b = __float2bfloat16_rn(v[i]);
    kv[j * 2 * per + o] = *(uint16_t *)&a;
    kv[j * 2 * per + per + o] = *(uint16_t *)&b;
}

/* Rows of the chunks completing in a block: chunk j's row s is stream position
 * p0 - part + j*S + s: from the partial rows (before p0) or from the block's x_mid. */
__global__ void gather_kernel(const float *part_x, int part, const float *x, float *xs, int nc, int S, int D) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= (int64_t)nc * S * D) return;
    const int64_t row = i / D, d = i % D, off = row - part;   /* position - p0 */
    xs[i] = off < 0 ? part_x[(part + off) * D + d] : x[off * D + d];
}

static unsigned lin_grid(int64_t n) { return (unsigned)((n + 255) / 256); }

/* ---- building blocks -------------------------------------------------------------------- */

/* A GEMM input: rows ld elements apart, fp32 or (bf) bf16. In a bf16 run, blocks of at least
 * GEMM_BF16_MIN_ROWS rows enter the GEMMs in bf16: their producers (RMSNorm, SiLU-mul) write
 * bf16 into the run's xh scratch directly, other inputs are cast there (gemm_in); fewer rows
 * (decode steps) stay fp32 (a cast would be one more launch in the step's chain). GEMMs that
 * share an input (q, k, v; gate, up) take it once. xh is valid until the next producer writes it. */
typedef struct {
    const void *p;
    int         ld, bf;
} gemm_src;

#define GEMM_BF16_MIN_ROWS 64
static int gemm_bf16(const hsadb_cuda_run *c, int n) { return c->gemm_mode == GEMM_BF16 && n >= GEMM_BF16_MIN_ROWS; }

static gemm_src gemm_in(hsadb_cuda_run *c, const float *x, int ldx, int n, int din) {
    if (!gemm_bf16(c, n)) return (gemm_src){x, ldx, 0};
    const int64_t tot = (int64_t)n * din;
    if (din % 4 == 0 && ldx % 4 == 0 && ((uintptr_t)x & 15) == 0)
        cast_rows_kernel<<<(unsigned)((tot / 4 + 255) / 256), 256, 0, c->st>>>(x, ldx, c->xh, n, din);
    else
        cast_rows1_kernel<<<(unsigned)((tot + 255) / 256), 256, 0, c->st>>>(x, ldx, c->xh, n, din);
    return (gemm_src){c->xh, din, 1};
}

/* RMSNorm(x) * g as a GEMM input: into xh as bf16, or into out (fp32; may be x) */
static gemm_src norm_in(hsadb_cuda_run *c, const float *x, const float *g, int64_t rows, int d, float *out) {
    if (gemm_bf16(c, (int)rows)) {
        rmsnorm_kernel<uint16_t><<<row_grid(rows), WARPS * 32, 0, c->st>>>(x, g, c->xh, rows, d, c->c->eps);
        return (gemm_src){c->xh, d, 1};
    }
    if (rows) rmsnorm_kernel<float><<<row_grid(rows), WARPS * 32, 0, c->st>>>(x, g, out, rows, d, c->c->eps);
    return (gemm_src){out, d, 0};
}

/* out[n][dout] (row stride ldo) = x[n][din] @ W[dout][din]^T + beta*out. W: the fp32 device
 * weight (DW); its bf16 twin when x is bf16. */
static int gemm_x(hsadb_cuda_run *c, float *out, int ldo, gemm_src x, const float *W, int n, int din, int dout,
                  float beta) {
    const float one = 1.f;
    if (n == 0) return 0;
    CK(cudaGetLastError());
    if (x.bf) {
        const uint16_t *Wb = c->wt->b + (W - c->wt->d);
        CKB(cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, dout, n, din, &one, Wb, CUDA_R_16BF, din, x.p, CUDA_R_16BF,
                         x.ld, &beta, out, CUDA_R_32F, ldo, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        CKB(cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, dout, n, din, &one, W, din, (const float *)x.p, x.ld, &beta,
                        out, ldo));
    }
    return 0;
}

/* out[n][dout] (row stride ldo) = x[n][din] (row stride ldx) @ W[dout][din]^T + beta*out */
static int gemm(hsadb_cuda_run *c, float *out, int ldo, const float *x, int ldx, const float *W, int n, int din,
                int dout, float beta) {
    return gemm_x(c, out, ldo, gemm_in(c, x, ldx, n, din), W, n, din, dout, beta);
}

static int rmsnorm(hsadb_cuda_run *c, float *out, const float *x, const float *g, int64_t rows, int d) {
    if (rows == 0) return 0;
    rmsnorm_kernel<float><<<row_grid(rows), WARPS * 32, 0, c->st>>>(x, g, out, rows, d, c->c->eps);
    CK(cudaGetLastError());
    return 0;
}

static int rope_table(hsadb_cuda_run *c, int n, int64_t pos0, int period) {
    const int half = c->c->head_dim / 2;
    rope_kernel<<<lin_grid((int64_t)n * half), 256, 0, c->st>>>(c->rope, c->inv_freq, n, pos0, period, half,
                                                                 period ? NULL : c->dpos);
    CK(cudaGetLastError());
    return 0;
}

static int qk_prep(hsadb_cuda_run *c, float *x, int n, int nh, const float *g, int use_rope) {
    qk_prep_kernel<<<row_grid((int64_t)n * nh), WARPS * 32, 0, c->st>>>(x, n, nh, c->c->head_dim, g, c->c->eps,
                                                                        use_rope ? c->rope : NULL);
    CK(cudaGetLastError());
    return 0;
}

/* The layer's ring pair on the device: K rows of layer l, V rows right after (host layout). */
static float *ring_k(const hsadb_swa_state *s, int l) { return s->dev->buf + (s->ring[l].k - s->buf); }
static float *ring_v(const hsadb_swa_state *s, int l) { return s->dev->buf + (s->ring[l].v - s->buf); }

/* x += W_o Attn(RMSNorm(x)), as forward.c's attention(): ring layer l of s, or groups. */
static int attention(hsadb_cuda_run *c, const hsadb_attn_w *a, float *x, int n, hsadb_swa_state *s, int l,
                     int64_t pos, int group) {
    const hsadb_config *cf = c->c;
    const int D = cf->dim, H = cf->n_heads, Hk = cf->n_kv_heads, dh = cf->head_dim, qd = H * dh, kd = Hk * dh;
    int rc;
    const gemm_src xi = norm_in(c, x, DW(c, a->norm), n, D, c->xb);
    if ((rc = gemm_x(c, c->q, qd, xi, DW(c, a->wq), n, D, qd, 0.f))) return rc;
    if ((rc = gemm_x(c, c->k, kd, xi, DW(c, a->wk), n, D, kd, 0.f))) return rc;
    if ((rc = gemm_x(c, c->v, kd, xi, DW(c, a->wv), n, D, kd, 0.f))) return rc;
    if ((rc = qk_prep(c, c->q, n, H, DW(c, a->q_norm), 1))) return rc;
    if ((rc = qk_prep(c, c->k, n, Hk, DW(c, a->k_norm), 1))) return rc;
    const int maxk = s ? cf->window : group;
    const float *kb = c->k, *vb = c->v;
    int cap = 0;
    int64_t start = 0, p0 = 0;
    if (s) {
        const hsadb_kv_ring *ring = &s->ring[l];
        float *rk = ring_k(s, l), *rv = ring_v(s, l);
        ring_write_kernel<<<lin_grid((int64_t)n * kd), 256, 0, c->st>>>(c->k, c->v, rk, rv, n, pos, ring->cap, kd, c->dpos);
        CK(cudaGetLastError());
        kb = rk, vb = rv, cap = ring->cap, start = ring->start, p0 = pos;
    }
    /* many rows: the tiled kernel, while its keys fit in shared memory; else a warp per pair */
    const int nkmax = s ? TQ + cf->window - 1 : ((TQ + group - 1) / group + 1) * group;
    const size_t tsm = attn_tile_smem(nkmax, dh, maxk);
    const int mma = c->attn_mma && gemm_bf16(c, n) && dh == WM_DH && n >= 2 * TQ && !c->dpos && H % Hk == 0;
    if (mma && s && cf->window <= WM_NT * 8 - 15) {
        attn_mma_kernel<true><<<dim3((unsigned)((n + WM_ROWS - 1) / WM_ROWS), (unsigned)Hk), WM_WARPS * 32, 0, c->st>>>(
            c->q, kb, vb, cap, start, p0, n, H, Hk, cf->window, 0, c->att);
    } else if (mma && !s && group <= WM_NT_GROUP * 8) {
        attn_mma_kernel<false><<<dim3((unsigned)((n + group - 1) / group), (unsigned)Hk), WM_WARPS * 32, 0, c->st>>>(
            c->q, kb, vb, 0, 0, 0, n, H, Hk, 0, group, c->att);
    } else if (n >= 2 * TQ && tsm <= c->tile_smem_max && !c->dpos) {
        if (tsm > 48 * 1024 && !c->tile_smem_set) {
            CK(cudaFuncSetAttribute(attn_tile_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)c->tile_smem_max));
            c->tile_smem_set = 1;
        }
        attn_tile_kernel<<<dim3((unsigned)((n + TQ - 1) / TQ), (unsigned)Hk), TWARPS * 32, tsm, c->st>>>(
            c->q, kb, vb, cap, start, p0, n, H, Hk, dh, s ? cf->window : 0, s ? 0 : group, nkmax, maxk, c->att);
    } else {
        attn_kernel<<<row_grid((int64_t)n * H), WARPS * 32, (size_t)WARPS * maxk * sizeof(float), c->st>>>(
            c->q, kb, vb, cap, start, p0, n, H, Hk, dh, s ? cf->window : 0, s ? 0 : group, maxk, c->att,
            s ? c->dpos : NULL);
    }
    CK(cudaGetLastError());
    return gemm(c, x, D, c->att, qd, DW(c, a->wo), n, qd, D, 1.f);     /* x += W_o att */
}

/* x += W_down(silu(W_gate h) * W_up h), h = RMSNorm(in); in may alias x. */
static int mlp(hsadb_cuda_run *c, const hsadb_mlp_w *w, const float *in, float *x, int n) {
    const int D = c->c->dim, F = c->c->hidden;
    int rc;
    const gemm_src xi = norm_in(c, in, DW(c, w->norm), n, D, c->xb);
    if ((rc = gemm_x(c, c->hb, F, xi, DW(c, w->gate), n, D, F, 0.f))) return rc;
    if ((rc = gemm_x(c, c->hb2, F, xi, DW(c, w->up), n, D, F, 0.f))) return rc;
    gemm_src h = {c->hb, F, 0};                /* silu(gate) * up: in place, or bf16 into xh */
    if (gemm_bf16(c, n)) {
        silu_mul_kernel<uint16_t><<<lin_grid((int64_t)n * F), 256, 0, c->st>>>(c->hb, c->hb2, c->xh, (int64_t)n * F);
        h = (gemm_src){c->xh, F, 1};
    } else {
        silu_mul_kernel<float><<<lin_grid((int64_t)n * F), 256, 0, c->st>>>(c->hb, c->hb2, c->hb, (int64_t)n * F);
    }
    return gemm_x(c, x, D, h, DW(c, w->down), n, F, D, 1.f);
}

static int swa_layer(hsadb_cuda_run *c, const hsadb_swa_w *w, float *x, int n, hsadb_swa_state *s, int l, int64_t pos) {
    int rc = attention(c, &w->attn, x, n, s, l, pos, 0);
    return rc ? rc : mlp(c, &w->mlp, x, x, n);
}

/* ---- sliding-window state on the device --------------------------------------------------- */

static size_t swa_floats(const hsadb_swa_state *s) {
    if (s->n == 0) return 0;
    return (size_t)(s->ring[s->n - 1].v - s->buf) + (size_t)(s->ring[s->n - 1].v - s->ring[s->n - 1].k);
}

/* Upload the host rings on first use. */
static int swa_attach(hsadb_swa_state *s) {
    if (s->dev) return 0;
    hsadb_cuda_swa *d = (hsadb_cuda_swa *)calloc(1, sizeof *d);
    if (!d) return ENOMEM;
    d->floats = swa_floats(s);
    cudaError_t e = cudaMalloc(&d->buf, d->floats * sizeof(float) + 16);
    if (e == cudaSuccess) e = cudaMemcpy(d->buf, s->buf, d->floats * sizeof(float), cudaMemcpyHostToDevice);
    if (e != cudaSuccess) {
        cudaFree(d->buf);
        free(d);
        return cuda_fail(e, "uploading the sliding-window state", __LINE__);
    }
    s->dev = d;
    return 0;
}

extern "C" void hsadb_cuda_swa_free(hsadb_cuda_swa *d) {
    if (!d) return;
    cudaFree(d->buf);
    free(d);
}

extern "C" int hsadb_cuda_swa_pull(hsadb_swa_state *s) {
    if (!s->dev) return 0;
    CK(cudaMemcpy(s->buf, s->dev->buf, s->dev->floats * sizeof(float), cudaMemcpyDeviceToHost));
    return 0;
}

/* ---- lower half ------------------------------------------------------------------------- */

/* The lower half on the device: c->x = x_mid of the block (stays there). */
static int lower_dev(hsadb_cuda_run *c, hsadb_swa_state *s, const int *tokens, int n) {
    const hsadb_config *cf = c->c;
    const int D = cf->dim;
    int rc;
    if (n > c->max_rows) return hsadb_fail(HSADB_ERR_INVALID, "block of %d rows > %d", n, c->max_rows);
    if ((rc = swa_attach(s))) return rc;
    CK(cudaMemcpyAsync(c->tok, tokens, (size_t)n * sizeof(int), cudaMemcpyHostToDevice, c->st));
    embed_kernel<<<lin_grid((int64_t)n * D), 256, 0, c->st>>>(c->tok, DW(c, c->m->w.embed), c->x, n, D);
    CK(cudaGetLastError());
    if ((rc = rope_table(c, n, s->pos, 0))) return rc;
    for (int l = 0; l < cf->n_lower; l++)
        if ((rc = swa_layer(c, &c->m->w.lower[l], c->x, n, s, l, s->pos))) return rc;
    return 0;
}

/* ---- decode steps as CUDA graphs ---------------------------------------------------------- */

/* A step's launches cost more on the host than on the device (one row: ~120 small kernels and
 * cuBLAS calls per token). graph_run captures fn's launches into g once and replays them while
 * `key` stays the same; fn copies the position from h_pos to d_pos first, and the kernels read
 * it there (c->dpos) instead of taking it as an argument. fn must not synchronise or copy
 * synchronously. *ran = 0 (and graphs are off for this run from then on) when capture fails:
 * the caller then runs the step without a graph. */
typedef int (*step_fn)(hsadb_cuda_run *c, void *arg);

static int graph_run(hsadb_cuda_run *c, step_graph *g, const void *key, size_t keylen, step_fn fn, void *arg,
                     int *ran) {
    *ran = 0;
    if (!g->exec || g->keylen != keylen || memcmp(g->key, key, keylen) != 0) {
        if (g->exec) cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
        cudaGraph_t graph = NULL;
        CK(cudaStreamBeginCapture(c->st, cudaStreamCaptureModeThreadLocal));
        c->dpos = c->d_pos;
        int rc = fn(c, arg);
        c->dpos = NULL;
        cudaError_t e = cudaStreamEndCapture(c->st, &graph);
        if (!rc && e == cudaSuccess) e = cudaGraphInstantiate(&g->exec, graph, 0);
        if (graph) cudaGraphDestroy(graph);
        if (rc || e != cudaSuccess) {
            cudaGetLastError();
            g->exec = NULL;
            if (rc) return rc;
            c->graphs = 0;            /* this run steps without graphs */
            return 0;
        }
        memcpy(g->key, key, keylen);
        g->keylen = keylen;
    }
    CK(cudaGraphLaunch(g->exec, c->st));
    c->graph_launches++;
    *ran = 1;
    return 0;
}

extern "C" int64_t hsadb_cuda_graph_launches(const hsadb_cuda_run *c) { return c ? c->graph_launches : 0; }

/* The key of a step over swa state s: the state, its device rings and their first positions. */
static size_t swa_key(unsigned char *k, const hsadb_swa_state *s) {
    size_t o = 0;
    memcpy(k + o, &s, sizeof s), o += sizeof s;
    memcpy(k + o, &s->dev->buf, sizeof s->dev->buf), o += sizeof s->dev->buf;
    for (int l = 0; l < s->n && o + 8 <= GRAPH_KEY / 2; l++) memcpy(k + o, &s->ring[l].start, 8), o += 8;
    return o;
}

static int lower_body(hsadb_cuda_run *c, void *arg) {
    hsadb_swa_state *s = (hsadb_swa_state *)arg;
    CK(cudaMemcpyAsync(c->d_pos, c->h_pos, sizeof(int64_t), cudaMemcpyHostToDevice, c->st));
    int rc = lower_dev(c, s, c->h_tok, 1);
    if (rc) return rc;
    CK(cudaMemcpyAsync(c->h_xout, c->x, (size_t)c->c->dim * sizeof(float), cudaMemcpyDeviceToHost, c->st));
    return 0;
}

extern "C" int hsadb_cuda_lower_forward(hsadb_cuda_run *c, hsadb_swa_state *s, const int *tokens, int n, float *x_mid) {
    if (n == 1 && c->graphs) {
        unsigned char key[GRAPH_KEY];
        int rc, ran;
        if ((rc = swa_attach(s))) return rc;
        *c->h_pos = s->pos, *c->h_tok = tokens[0];
        if ((rc = graph_run(c, &c->g_lower, key, swa_key(key, s), lower_body, s, &ran))) return rc;
        if (ran) {
            CK(cudaStreamSynchronize(c->st));
            memcpy(x_mid, c->h_xout, (size_t)c->c->dim * sizeof(float));
            s->pos += 1;
            return 0;
        }
    }
    int rc = lower_dev(c, s, tokens, n);
    if (rc) return rc;
    CK(cudaMemcpyAsync(x_mid, c->x, (size_t)n * c->c->dim * sizeof(float), cudaMemcpyDeviceToHost, c->st));
    CK(cudaStreamSynchronize(c->st));
    s->pos += n;
    return 0;
}

/* ---- chunk encoder ---------------------------------------------------------------------- */

/* The encoder over nc chunks whose rows are in c->xb2 [nc][S][D]; outputs to the host. */
static int encode_dev(hsadb_cuda_run *c, int nc, int kv_f32, void *lmk, void *kv, float *lmk32, float *k32, float *v32) {
    const hsadb_config *cf = c->c;
    const hsadb_chunk_w *cw = &c->m->w.chunk;
    const int D = cf->dim, S = cf->chunk, Hm = cf->n_mem_heads, dh = cf->head_dim, dr = cf->retr_dim;
    const int rows = nc * (S + 1), per = S * Hm * dh, ln = Hm * dr;
    int rc;
    if (nc == 0) return 0;
    if (nc > c->max_nc) return hsadb_fail(HSADB_ERR_INVALID, "%d chunks > %d", nc, c->max_nc);
    float *E = c->x;
    enc_in_kernel<<<row_grid(rows), WARPS * 32, 0, c->st>>>(c->xb2, DW(c, cw->in_norm), DW(c, cw->cls), E, nc, S, D,
                                                            cf->eps);
    CK(cudaGetLastError());
    if ((rc = rope_table(c, rows, 0, S + 1))) return rc;
    for (int l = 0; l < cf->n_encoder; l++) {
        if ((rc = attention(c, &c->m->w.encoder[l].attn, E, rows, NULL, 0, 0, S + 1))) return rc;
        if ((rc = mlp(c, &c->m->w.encoder[l].mlp, E, E, rows))) return rc;
    }
    /* the output norm; its rows (all nc*(S+1)) feed the GEMMs: landmarks from the cls rows,
     * K and V from the S token rows of every chunk */
    const gemm_src Ei = norm_in(c, E, DW(c, cw->out_norm), rows, D, E);
    const int bf = Ei.bf;
    const float one = 1.f, zero = 0.f;
    const gemm_src cls = {(const char *)Ei.p + (size_t)S * D * (bf ? 2 : 4), (S + 1) * D, bf};
    if ((rc = gemm_x(c, c->lmk, ln, cls, DW(c, cw->lmk), nc, D, ln, 0.f))) return rc;
    if (bf) {
        const uint16_t *mk = c->wt->b + (DW(c, cw->mk) - c->wt->d), *mv = c->wt->b + (DW(c, cw->mv) - c->wt->d);
        CKB(cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, Hm * dh, S, D, &one, mk, CUDA_R_16BF, D, 0, Ei.p,
                                       CUDA_R_16BF, D, (long long)(S + 1) * D, &zero, c->kmem, CUDA_R_32F, Hm * dh,
                                       (long long)per, nc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
        CKB(cublasGemmStridedBatchedEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, Hm * dh, S, D, &one, mv, CUDA_R_16BF, D, 0, Ei.p,
                                       CUDA_R_16BF, D, (long long)(S + 1) * D, &zero, c->vmem, CUDA_R_32F, Hm * dh,
                                       (long long)per, nc, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    } else {
        CKB(cublasSgemmStridedBatched(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, Hm * dh, S, D, &one, DW(c, cw->mk), D, 0, E, D,
                                      (long long)(S + 1) * D, &zero, c->kmem, Hm * dh, (long long)per, nc));
        CKB(cublasSgemmStridedBatched(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, Hm * dh, S, D, &one, DW(c, cw->mv), D, 0, E, D,
                                      (long long)(S + 1) * D, &zero, c->vmem, Hm * dh, (long long)per, nc));
    }
    if ((rc = rmsnorm(c, c->kmem, c->kmem, DW(c, cw->k_norm), (int64_t)nc * S * Hm, dh))) return rc;
    if (lmk32) {
        CK(cudaMemcpyAsync(lmk32, c->lmk, (size_t)nc * ln * 4, cudaMemcpyDeviceToHost, c->st));
        CK(cudaMemcpyAsync(k32, c->kmem, (size_t)nc * per * 4, cudaMemcpyDeviceToHost, c->st));
        CK(cudaMemcpyAsync(v32, c->vmem, (size_t)nc * per * 4, cudaMemcpyDeviceToHost, c->st));
    }
    if (lmk && kv_f32) {
        CK(cudaMemcpyAsync(lmk, c->lmk, (size_t)nc * ln * 4, cudaMemcpyDeviceToHost, c->st));
        CK(cudaMemcpy2DAsync(kv, (size_t)2 * per * 4, c->kmem, (size_t)per * 4, (size_t)per * 4, nc,
                             cudaMemcpyDeviceToHost, c->st));
        CK(cudaMemcpy2DAsync((float *)kv + per, (size_t)2 * per * 4, c->vmem, (size_t)per * 4, (size_t)per * 4, nc,
                             cudaMemcpyDeviceToHost, c->st));
    } else if (lmk) {
        to_bf16_kernel<<<lin_grid((int64_t)nc * ln), 256, 0, c->st>>>(c->lmk, c->rec_l, (int64_t)nc * ln);
        pack_kv_kernel<<<lin_grid((int64_t)nc * per), 256, 0, c->st>>>(c->kmem, c->vmem, c->rec_kv, nc, per);
        CK(cudaGetLastError());
        CK(cudaMemcpyAsync(lmk, c->rec_l, (size_t)nc * ln * 2, cudaMemcpyDeviceToHost, c->st));
        CK(cudaMemcpyAsync(kv, c->rec_kv, (size_t)nc * 2 * per * 2, cudaMemcpyDeviceToHost, c->st));
    }
    CK(cudaStreamSynchronize(c->st));
    return 0;
}

extern "C" int hsadb_cuda_encode(hsadb_cuda_run *c, const float *xs, int nc, int kv_f32, void *lmk, void *kv,
                                 float *lmk32, float *k32, float *v32) {
    if (nc <= 0) return 0;
    if (nc > c->max_nc) return hsadb_fail(HSADB_ERR_INVALID, "%d chunks > %d", nc, c->max_nc);
    /* xs goes through xb2 (rows_cap x D >= nc*S x D) */
    CK(cudaMemcpyAsync(c->xb2, xs, (size_t)nc * c->c->chunk * c->c->dim * sizeof(float), cudaMemcpyHostToDevice, c->st));
    return encode_dev(c, nc, kv_f32, lmk, kv, lmk32, k32, v32);
}

/* Lower half + encoder of an append block with x_mid kept on the device: only the partial
 * chunk's rows go up, and x_mid (for the tail) and the records come down. */
extern "C" int hsadb_cuda_append_forward(hsadb_cuda_run *c, hsadb_swa_state *s, const int *tokens, int n,
                                         const float *part_x, int part, float *x_mid, int keep, int kv_f32, void *lmk,
                                         void *kv,
                                         int *nc_out) {
    const int S = c->c->chunk, D = c->c->dim, nc = (part + n) / S;
    int rc;
    *nc_out = 0;
    if ((rc = lower_dev(c, s, tokens, n))) return rc;
    const int first = keep > 0 && keep < n ? n - keep : 0;     /* only the rows the tail keeps */
    CK(cudaMemcpyAsync(x_mid + (size_t)first * D, c->x + (size_t)first * D, (size_t)(n - first) * D * sizeof(float),
                       cudaMemcpyDeviceToHost, c->st));
    if (nc > 0) {
        if (part) CK(cudaMemcpyAsync(c->part, part_x, (size_t)part * D * sizeof(float), cudaMemcpyHostToDevice, c->st));
        gather_kernel<<<lin_grid((int64_t)nc * S * D), 256, 0, c->st>>>(c->part, part, c->x, c->xb2, nc, S, D);
        CK(cudaGetLastError());
        if ((rc = encode_dev(c, nc, kv_f32, lmk, kv, NULL, NULL, NULL))) return rc;
    }
    CK(cudaStreamSynchronize(c->st));
    s->pos += n;
    *nc_out = nc;
    return 0;
}

/* ---- the memory tier -------------------------------------------------------------------- */

static size_t tier_per(const hsadb_tier *g) { return (size_t)g->S * g->Hm * g->dh; }   /* K (or V) elements */

extern "C" int hsadb_cuda_mem_init(hsadb_tier **out, int Hm, int dr, int S, int dh, int K, int64_t kv_chunks) {
    hsadb_tier *g = (hsadb_tier *)calloc(1, sizeof *g);
    if (!g) return ENOMEM;
    g->Hm = Hm, g->dr = dr, g->S = S, g->dh = dh;
    /* a piece of rows needs every chunk of one row at once: at least twice that */
    g->min_slots = 2 * (int64_t)Hm * K;
    const size_t chunk_bytes = 2 * tier_per(g) * 2;
    size_t fr = 0, tot = 0;
    if (kv_chunks > 0) g->kv_max = kv_chunks;
    else if (cudaMemGetInfo(&fr, &tot) == cudaSuccess) {
        /* K/V may take the device's free memory less a reserve for runs (scratch, weights) */
        const size_t reserve = tot / 10 > ((size_t)4 << 30) ? tot / 10 : ((size_t)4 << 30);
        g->kv_max = fr > reserve ? (int64_t)((fr - reserve) / chunk_bytes) : 0;
    } else cudaGetLastError();
    if (g->kv_max < g->min_slots) g->kv_max = g->min_slots;
    pthread_mutex_init(&g->lock, NULL);
    *out = g;
    return 0;
}

extern "C" void hsadb_cuda_mem_free(hsadb_tier *g) {
    if (!g) return;
    cudaFree(g->lmk), cudaFree(g->k), cudaFree(g->v), cudaFree(g->d_slot), cudaFree(g->d_stage);
    cudaFreeHost(g->miss_slot), cudaFreeHost(g->h_stage);
    free(g->slot_of), free(g->chunk_of), free(g->used), free(g->ref), free(g->miss_chunk);
    pthread_mutex_destroy(&g->lock);
    free(g);
}

extern "C" int64_t hsadb_cuda_mem_count(const hsadb_tier *g) { return g ? g->n : 0; }

extern "C" int64_t hsadb_cuda_mem_kv_room(const hsadb_tier *g) {
    if (!g) return 0;
    return g->cached ? g->kv_cap - g->kv_used : g->kv_max - g->kv_used;
}

extern "C" void hsadb_cuda_mem_cache_stats(const hsadb_tier *g, int64_t *slots, int64_t *hits, int64_t *misses) {
    *slots = g && g->cached ? g->kv_cap : 0;
    *hits = g ? g->hits : 0;
    *misses = g ? g->misses : 0;
}

/* Reallocate a device array to cap rows of row_bytes, keeping its first `used` rows. */
static cudaError_t dev_regrow(uint16_t **p, int64_t used, int64_t cap, size_t row_bytes) {
    uint16_t *q = NULL;
    cudaError_t e = cudaMalloc(&q, (size_t)cap * row_bytes);
    if (e == cudaSuccess && used) e = cudaMemcpy(q, *p, (size_t)used * row_bytes, cudaMemcpyDeviceToDevice);
    if (e != cudaSuccess) {
        cudaFree(q);
        cudaGetLastError();
        return e;
    }
    cudaFree(*p);
    *p = q;
    return cudaSuccess;
}

/* Landmark capacity (and the cache's chunk -> slot map) for `want` chunks, by doubling. */
static int lmk_grow(hsadb_tier *g, int64_t want) {
    if (want <= g->cap) return 0;
    int64_t cap = g->cap ? g->cap : 1024;
    while (cap < want) cap *= 2;
    const size_t ln = (size_t)g->Hm * g->dr;
    cudaError_t e = dev_regrow(&g->lmk, g->n, cap, ln * 2);
    if (e != cudaSuccess)
        return hsadb_fail(HSADB_ERR_NODEVICE, "GPU memory tier: the landmarks of %lld chunks (%.2f GiB) do not fit on the "
                          "device (%s); use --device cpu", (long long)cap, (double)cap * ln * 2 / (1 << 30),
                          cudaGetErrorString(e));
    if (g->cached) {
        int32_t *so = (int32_t *)realloc(g->slot_of, (size_t)cap * sizeof *so);
        if (!so) return ENOMEM;
        for (int64_t i = g->cap; i < cap; i++) so[i] = -1;
        g->slot_of = so;
    }
    g->cap = cap;
    return 0;
}

/* Direct mode: K/V slots for `want` chunks, by doubling up to kv_max. When the device cannot
 * give more, kv_max shrinks to what is held (the tier becomes a cache sooner). */
static int kv_grow(hsadb_tier *g, int64_t want) {
    if (want <= g->kv_cap) return 0;
    int64_t cap = g->kv_cap ? g->kv_cap : 1024;
    while (cap < want) cap *= 2;
    if (cap > g->kv_max) cap = g->kv_max;
    const size_t bytes = tier_per(g) * 2;
    uint16_t *k = g->k, *v = g->v;
    cudaError_t e = dev_regrow(&k, g->kv_used, cap, bytes);
    if (e == cudaSuccess) {
        g->k = k;
        if ((e = dev_regrow(&v, g->kv_used, cap, bytes)) == cudaSuccess) g->v = v;
    }
    if (e != cudaSuccess) {
        /* (k may have grown already: harmless, both are used at the old capacity) */
        if (g->kv_cap < g->min_slots)
            return hsadb_fail(HSADB_ERR_NODEVICE, "GPU memory tier: no room for %lld K/V blocks (%s); use --device cpu",
                              (long long)g->min_slots, cudaGetErrorString(e));
        g->kv_max = g->kv_cap;
        return 0;
    }
    g->kv_cap = cap;
    return 0;
}

/* Turn the slots into a block cache: chunks 0..kv_used-1 stay where they are. Nothing changes
 * when an allocation fails. */
static int cache_enter(hsadb_tier *g) {
    const int64_t slots = g->kv_cap;
    const size_t rec = 2 * tier_per(g) * 2;
    int32_t *so = (int32_t *)malloc((size_t)g->cap * sizeof *so), *ms = NULL, *ds = NULL;
    int64_t *co = (int64_t *)malloc((size_t)slots * sizeof *co);
    uint32_t *used = (uint32_t *)calloc((size_t)slots, sizeof *used);
    uint8_t *ref = (uint8_t *)calloc((size_t)slots, 1);
    uint64_t *mc = (uint64_t *)malloc(TIER_STAGE * sizeof *mc);
    uint16_t *hs = NULL, *dst = NULL;
    cudaError_t e = cudaMallocHost(&ms, TIER_STAGE * sizeof(int32_t));
    if (e == cudaSuccess) e = cudaMalloc(&ds, TIER_STAGE * sizeof(int32_t));
    if (e == cudaSuccess) e = cudaMallocHost(&hs, TIER_STAGE * rec);
    if (e == cudaSuccess) e = cudaMalloc(&dst, TIER_STAGE * rec);
    if (e != cudaSuccess || !so || !co || !used || !ref || !mc) {
        free(so), free(co), free(used), free(ref), free(mc);
        cudaFreeHost(ms), cudaFree(ds), cudaFreeHost(hs), cudaFree(dst);
        cudaGetLastError();
        return e != cudaSuccess ? cuda_fail(e, "block cache staging", __LINE__) : ENOMEM;
    }
    for (int64_t i = 0; i < g->cap; i++) so[i] = i < g->kv_used ? (int32_t)i : -1;
    for (int64_t i = 0; i < slots; i++) co[i] = i < g->kv_used ? i : -1;
    g->slot_of = so, g->chunk_of = co, g->used = used, g->ref = ref, g->miss_chunk = mc;
    g->miss_slot = ms, g->d_slot = ds, g->h_stage = hs, g->d_stage = dst;
    g->piece = 1;
    g->cached = 1;
    return 0;
}

extern "C" int hsadb_cuda_mem_push(hsadb_tier *g, const uint16_t *lmk, const uint16_t *kv, int64_t n) {
    int rc;
    if (n <= 0) return 0;
    if ((rc = lmk_grow(g, g->n + n))) return rc;
    const size_t ln = (size_t)g->Hm * g->dr, per = tier_per(g);
    CK(cudaMemcpy(g->lmk + (size_t)g->n * ln, lmk, (size_t)n * ln * 2, cudaMemcpyHostToDevice));
    int64_t room = hsadb_cuda_mem_kv_room(g), nkv = n < room ? n : room;
    if (nkv > 0 && !g->cached) {
        if ((rc = kv_grow(g, g->kv_used + nkv))) return rc;
        if (nkv > g->kv_cap - g->kv_used) nkv = g->kv_cap - g->kv_used;
    }
    if (nkv > 0) {   /* the leading chunks' blocks into the next never-used slots */
        const int64_t s0 = g->kv_used;
        CK(cudaMemcpy2D(g->k + (size_t)s0 * per, per * 2, kv, 2 * per * 2, per * 2, (size_t)nkv, cudaMemcpyHostToDevice));
        CK(cudaMemcpy2D(g->v + (size_t)s0 * per, per * 2, kv + per, 2 * per * 2, per * 2, (size_t)nkv, cudaMemcpyHostToDevice));
        for (int64_t i = 0; g->cached && i < nkv; i++)
            g->slot_of[g->n + i] = (int32_t)(s0 + i), g->chunk_of[s0 + i] = g->n + i;
        g->kv_used += nkv;
    }
    g->n += n;
    if (!g->cached && g->kv_used < g->n && (rc = cache_enter(g))) return rc;
    return 0;
}

/* ---- the block cache -------------------------------------------------------------------- */

/* Fetched records rec [n][2][per] (K block, V block) into their slots. */
__global__ void kv_scatter_kernel(const uint16_t *__restrict__ rec, const int32_t *__restrict__ slot,
                                  uint16_t *__restrict__ k, uint16_t *__restrict__ v, int per) {
    const int i = blockIdx.x, n16 = per / 8;
    const uint4 *src = (const uint4 *)(rec + (size_t)i * 2 * per);
    uint4 *dk = (uint4 *)(k + (size_t)slot[i] * per), *dv = (uint4 *)(v + (size_t)slot[i] * per);
    for (int j = threadIdx.x; j < n16; j += blockDim.x) dk[j] = src[j], dv[j] = src[n16 + j];
}

/* A slot for a missing block (clock with reference bits), never one the current piece uses;
 * -1 when every slot is in use by it. */
static int64_t cache_victim(hsadb_tier *g) {
    for (int64_t step = 0; step < 2 * g->kv_cap; step++) {
        const int64_t s = g->hand;
        g->hand = g->hand + 1 == g->kv_cap ? 0 : g->hand + 1;
        if (g->used[s] == g->piece) continue;
        if (g->chunk_of[s] < 0 || !g->ref[s]) return s;
        g->ref[s] = 0;
    }
    return -1;
}

static void cache_next_piece(hsadb_tier *g) {
    if (++g->piece == 0) {        /* wrapped: forget the old stamps */
        memset(g->used, 0, (size_t)g->kv_cap * sizeof *g->used);
        g->piece = 1;
    }
}

/* ---- upper half ------------------------------------------------------------------------- */

/* Mirror the memview's extra chunks (completed by the query's own tokens) on the device. */
static int sync_extra(hsadb_cuda_run *c, const hsadb_memview *mv) {
    const hsadb_config *cf = c->c;
    const int S = cf->chunk, Hm = cf->n_mem_heads, dh = cf->head_dim, ln = Hm * cf->retr_dim, per = S * Hm * dh;
    const int64_t want = mv->extra ? mv->extra->n : 0;
    if (c->x_base != mv->base_n || want < c->x_n) c->x_base = mv->base_n, c->x_n = 0;
    if (want > c->x_cap) {
        int64_t cap = c->x_cap ? c->x_cap : 16;
        while (cap < want) cap *= 2;
        uint16_t *l = NULL, *k = NULL, *v = NULL;
        cudaError_t e = cudaMalloc(&l, (size_t)cap * ln * 2);
        if (e == cudaSuccess) e = cudaMalloc(&k, (size_t)cap * per * 2);
        if (e == cudaSuccess) e = cudaMalloc(&v, (size_t)cap * per * 2);
        if (e == cudaSuccess && c->x_n) {
            e = cudaMemcpy(l, c->x_lmk, (size_t)c->x_n * ln * 2, cudaMemcpyDeviceToDevice);
            if (e == cudaSuccess) e = cudaMemcpy(k, c->x_k, (size_t)c->x_n * per * 2, cudaMemcpyDeviceToDevice);
            if (e == cudaSuccess) e = cudaMemcpy(v, c->x_v, (size_t)c->x_n * per * 2, cudaMemcpyDeviceToDevice);
        }
        if (e != cudaSuccess) {
            cudaFree(l), cudaFree(k), cudaFree(v);
            return cuda_fail(e, "query chunks", __LINE__);
        }
        cudaFree(c->x_lmk), cudaFree(c->x_k), cudaFree(c->x_v);
        c->x_lmk = l, c->x_k = k, c->x_v = v, c->x_cap = cap;
    }
    for (; c->x_n < want; c->x_n++) {
        const float *l = mv->extra->lmk + (size_t)c->x_n * ln;
        for (int i = 0; i < ln; i++) c->h_xl[i] = hsadb_f32_to_bf16(l[i]);
        for (int m = 0; m < Hm; m++) {
            int rc = mv->kv(mv->ctx, mv->base_n + c->x_n, m, c->h_kb, c->h_vb);
            if (rc) return rc;
            for (int s = 0; s < S; s++)
                for (int i = 0; i < dh; i++) {
                    c->h_xk[((size_t)s * Hm + m) * dh + i] = hsadb_f32_to_bf16(c->h_kb[(size_t)s * dh + i]);
                    c->h_xv[((size_t)s * Hm + m) * dh + i] = hsadb_f32_to_bf16(c->h_vb[(size_t)s * dh + i]);
                }
        }
        CK(cudaMemcpy(c->x_lmk + (size_t)c->x_n * ln, c->h_xl, (size_t)ln * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(c->x_k + (size_t)c->x_n * per, c->h_xk, (size_t)per * 2, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(c->x_v + (size_t)c->x_n * per, c->h_xv, (size_t)per * 2, cudaMemcpyHostToDevice));
    }
    return 0;
}

/* Each row (t, m): merge the top-K of the tier's chunks (idx, sc) with the top-K of the query's
 * own chunks (idx2, sc2; newer than every tier chunk: they win ties), then the softmax over the
 * selected scores -> w; exactly forward.c's merge. A row sees e = (pos+t)/S chunks: min(e,
 * base_n) of the tier (no list when 0: idx holds garbage then) and e - base_n of its own. */
__global__ void hsa_merge_kernel(int32_t *__restrict__ idx, const float *__restrict__ sc,
                                 const int32_t *__restrict__ idx2, const float *__restrict__ sc2, float *__restrict__ w,
                                 int n, int Hm, int K, int64_t pos, int S, int64_t base_n, const int64_t *dpos) {
    const int r = blockIdx.x * blockDim.x + threadIdx.x;
    if (r >= n * Hm) return;
    if (dpos) pos = *dpos;
    const int64_t e = (pos + r / Hm) / S, ex = e - base_n;
    const int tier_rows = (e < base_n ? e : base_n) > 0;
    int32_t *bi = idx + (size_t)r * K;
    const float *bs = sc + (size_t)r * K;
    const int32_t *ei = idx2 + (size_t)r * K;
    const float *es = sc2 + (size_t)r * K;
    int32_t mi[HSADB_TOPK_MAX];
    float ms[HSADB_TOPK_MAX];
    for (int a = 0, b = 0, k = 0; k < K; k++) {
        const int32_t ia = tier_rows && a < K ? bi[a] : -1, ib = ex > 0 && b < K ? ei[b] : -1;
        const int take_e = ib >= 0 && (ia < 0 || es[b] >= bs[a]);
        if (take_e) mi[k] = (int32_t)(ib + base_n), ms[k] = es[b++];
        else mi[k] = ia, ms[k] = ia >= 0 ? bs[a++] : -INFINITY;
    }
    float sum = 0.f, wt[HSADB_TOPK_MAX];
    for (int j = 0; j < K; j++) sum += (wt[j] = mi[j] >= 0 ? expf(ms[j] - ms[0]) : 0.f);
    for (int j = 0; j < K; j++) bi[j] = mi[j], w[(size_t)r * K + j] = mi[j] >= 0 ? wt[j] / sum : 0.f;
}

/* Block cache: fetch the piece's missing blocks into their slots, then run the HSA kernel over
 * rows a..b-1, whose chunks are mapped to slots in h_map (the query's own chunks follow the
 * slots: kv_cap + their index). Called with g->lock held. */
static int cache_flush(hsadb_cuda_run *c, hsadb_tier *g, const hsadb_memview *mv, int a, int b) {
    const hsadb_config *cf = c->c;
    const int H = cf->n_heads, Hm = cf->n_mem_heads, dh = cf->head_dim, K = cf->topk, S = cf->chunk;
    const size_t per = tier_per(g);
    if (g->n_miss) {
        int rc = mv->kv_records ? 0 : hsadb_fail(HSADB_ERR_INVALID, "GPU block cache: the memview has no kv_records");
        CK(cudaStreamSynchronize(c->st));            /* the staging buffers are free again */
        if (!rc) rc = mv->kv_records(mv->ctx, g->miss_chunk, g->n_miss, g->h_stage);
        if (rc) {                                    /* those slots hold nothing valid */
            for (int i = 0; i < g->n_miss; i++)
                g->slot_of[g->miss_chunk[i]] = -1, g->chunk_of[g->miss_slot[i]] = -1;
            g->n_miss = 0;
            return rc;
        }
        CK(cudaMemcpyAsync(g->d_stage, g->h_stage, (size_t)g->n_miss * 2 * per * 2, cudaMemcpyHostToDevice, c->st));
        CK(cudaMemcpyAsync(g->d_slot, g->miss_slot, (size_t)g->n_miss * 4, cudaMemcpyHostToDevice, c->st));
        kv_scatter_kernel<<<g->n_miss, 256, 0, c->st>>>(g->d_stage, g->d_slot, g->k, g->v, (int)per);
        CK(cudaGetLastError());
        CK(cudaStreamSynchronize(c->st));            /* miss_slot is refilled by the next piece */
        g->n_miss = 0;
    }
    if (b > a) {
        const size_t o = (size_t)a * Hm * K;
        CK(cudaMemcpyAsync(c->idx + o, c->h_map + o, (size_t)(b - a) * Hm * K * 4, cudaMemcpyHostToDevice, c->st));
        CKK(hsadb_cuda_hsa_fwd2(c->qb + (size_t)a * H * dh, g->k, g->v, g->kv_cap, c->x_k, c->x_v, c->idx + o, c->w + o,
                                b - a, H, Hm, dh, S, K, c->att + (size_t)a * H * dh, (hsadb_stream_t)c->st));
    }
    return 0;
}

/* HSA attention through the block cache. h_idx [n][Hm][K] holds the chosen chunks (after the
 * merge). Rows are taken in order into a piece while their chunks fit in the slots together
 * (and the misses in one staging batch); then the piece's misses are fetched and the kernel
 * runs over its rows. One query at a time per tier: the lock is held until the kernels end. */
static int hsa_cached(hsadb_cuda_run *c, hsadb_tier *g, const hsadb_memview *mv, int n) {
    const hsadb_config *cf = c->c;
    const int Hm = cf->n_mem_heads, K = cf->topk, row = Hm * K;
    int rc = 0, t0 = 0;
    pthread_mutex_lock(&g->lock);
    cache_next_piece(g);
    for (int t = 0; t < n && !rc;) {
        const int32_t *ci = c->h_idx + (size_t)t * row;
        int32_t *si = c->h_map + (size_t)t * row;
        int j = 0;
        for (; j < row; j++) {
            const int64_t ch = ci[j];
            if (ch < 0) { si[j] = -1; continue; }
            if (ch >= mv->base_n) { si[j] = (int32_t)(g->kv_cap + ch - mv->base_n); continue; }
            int64_t sl = g->slot_of[ch];
            if (sl >= 0) {
                g->hits++;
            } else {
                if (g->n_miss == TIER_STAGE || (sl = cache_victim(g)) < 0) break;   /* piece full */
                if (g->chunk_of[sl] >= 0) g->slot_of[g->chunk_of[sl]] = -1;
                g->chunk_of[sl] = ch, g->slot_of[ch] = (int32_t)sl;
                g->miss_chunk[g->n_miss] = (uint64_t)ch, g->miss_slot[g->n_miss++] = (int32_t)sl;
                g->misses++;
            }
            g->used[sl] = g->piece, g->ref[sl] = 1;
            si[j] = (int32_t)sl;
        }
        if (j == row) { t++; continue; }
        if (t == t0 && g->n_miss < TIER_STAGE) {    /* cannot happen with min_slots >= 2 rows */
            rc = hsadb_fail(HSADB_ERR_NODEVICE, "GPU block cache: %lld slots cannot hold one row", (long long)g->kv_cap);
            break;
        }
        /* row t starts the next piece (its blocks fetched so far stay resident) */
        rc = cache_flush(c, g, mv, t0, t);
        t0 = t;
        cache_next_piece(g);
    }
    if (!rc) rc = cache_flush(c, g, mv, t0, n);
    if (!rc && cudaStreamSynchronize(c->st) != cudaSuccess) rc = cuda_fail(cudaGetLastError(), "block cache", __LINE__);
    pthread_mutex_unlock(&g->lock);
    return rc;
}

/* The HSA sub-layer of group g, as forward.c's hsa(): retrieval over the tier (and the
 * query's own chunks), the merge of the two lists and the mixing weights (hsa_merge_kernel),
 * attention into the chosen chunks; all on the stream, no host round trip unless the tier is
 * a block cache. The evidence (tr) is copied back and written when the upper half ends.
 * c->xb holds h = RMSNorm(x); writes c->att. */
static int hsa(hsadb_cuda_run *c, int g, const hsadb_memview *mv, int n, int64_t pos, const hsadb_trace *tr) {
    const hsadb_config *cf = c->c;
    const hsadb_hsa_w *w = &c->m->w.hsa[g];
    const int D = cf->dim, H = cf->n_heads, Hm = cf->n_mem_heads, dh = cf->head_dim, dr = cf->retr_dim;
    const int K = cf->topk, S = cf->chunk;
    const hsadb_tier *tier = mv->tier;
    int rc;
    const int64_t have = mv->base_n + (mv->extra ? mv->extra->n : 0);
    if (!tier || tier->n < mv->base_n)
        return hsadb_fail(HSADB_ERR_INVALID, "CUDA upper half: the memory tier holds %lld of %lld chunks",
                          (long long)(tier ? tier->n : 0), (long long)mv->base_n);
    for (int t = 0; t < n; t++)
        if ((pos + t) / S > have)
            return hsadb_fail(HSADB_ERR_INVALID, "position %lld needs %lld chunks, memory has %lld",
                              (long long)(pos + t), (long long)((pos + t) / S), (long long)have);
    if ((rc = sync_extra(c, mv))) return rc;
    const gemm_src xi = gemm_in(c, c->xb, D, n, D);
    if ((rc = gemm_x(c, c->qr, Hm * dr, xi, DW(c, w->wr), n, D, Hm * dr, 0.f))) return rc;
    if ((rc = gemm_x(c, c->q, H * dh, xi, DW(c, w->wq), n, D, H * dh, 0.f))) return rc;
    if ((rc = qk_prep(c, c->q, n, H, DW(c, w->q_norm), 0))) return rc;
    to_bf16_kernel<<<lin_grid((int64_t)n * H * dh), 256, 0, c->st>>>(c->q, c->qb, (int64_t)n * H * dh);
    CK(cudaGetLastError());
    const float scale = 1.f / sqrtf((float)dr);
    for (int t = 0; t < n; t++) {
        const int64_t e = (pos + t) / S, eb = e < mv->base_n ? e : mv->base_n, ex = e - mv->base_n;
        for (int m = 0; m < Hm; m++) {
            const size_t o = ((size_t)t * Hm + m) * K;
            const float *q = c->qr + (size_t)t * Hm * dr + (size_t)m * dr;
            if (eb > 0) CKK(hsadb_cuda_topk1(q, tier->lmk + (size_t)m * dr, eb, Hm * dr, dr, scale, K, c->idx + o, c->sc + o,
                                             c->topk_ws, (hsadb_stream_t)c->st));
            if (ex > 0) {
                CKK(hsadb_cuda_topk1(q, c->x_lmk + (size_t)m * dr, ex, Hm * dr, dr, scale, K, c->idx2 + o, c->sc2 + o,
                                     c->topk_ws, (hsadb_stream_t)c->st));
            }
        }
    }
    const size_t sel = (size_t)n * Hm * K;
    if (tr && tr->qr)
        CK(cudaMemcpyAsync(c->h_tqr + (size_t)g * c->max_rows * Hm * dr, c->qr, (size_t)n * Hm * dr * 4,
                           cudaMemcpyDeviceToHost, c->st));
    hsa_merge_kernel<<<(unsigned)((n * Hm + 127) / 128), 128, 0, c->st>>>(c->idx, c->sc, c->idx2, c->sc2, c->w, n, Hm, K,
                                                                        pos, S, mv->base_n, c->dpos);
    CK(cudaGetLastError());
    if (tr && tr->idx) {          /* evidence: copied into tr when the upper half ends */
        CK(cudaMemcpyAsync(c->h_tidx + (size_t)g * c->max_rows * Hm * K, c->idx, sel * 4, cudaMemcpyDeviceToHost, c->st));
        CK(cudaMemcpyAsync(c->h_tw + (size_t)g * c->max_rows * Hm * K, c->w, sel * 4, cudaMemcpyDeviceToHost, c->st));
    }
    if (tier->cached) {           /* the block cache maps chunks to slots on the host */
        CK(cudaMemcpyAsync(c->h_idx, c->idx, sel * 4, cudaMemcpyDeviceToHost, c->st));
        CK(cudaStreamSynchronize(c->st));
        return hsa_cached(c, (hsadb_tier *)tier, mv, n);
    }
    CKK(hsadb_cuda_hsa_fwd2(c->qb, tier->k, tier->v, mv->base_n, c->x_k, c->x_v, c->idx, c->w, n, H, Hm, dh, S, K,
                            c->att, (hsadb_stream_t)c->st));
    return 0;
}

/* The upper half's launches: x_mid (host) in, out (host) written when the stream reaches it. */
static int upper_dev(hsadb_cuda_run *c, hsadb_swa_state *s, const hsadb_memview *mv, const float *x_mid, int n,
                     float *out, const hsadb_trace *tr) {
    const hsadb_config *cf = c->c;
    const int D = cf->dim, R = cf->swa_per_group, qd = cf->n_heads * cf->head_dim;
    float *x = c->x;
    int u = 0, rc;
    if (n > c->max_rows) return hsadb_fail(HSADB_ERR_INVALID, "block of %d rows > %d", n, c->max_rows);
    if ((rc = swa_attach(s))) return rc;
    CK(cudaMemcpyAsync(x, x_mid, (size_t)n * D * sizeof(float), cudaMemcpyHostToDevice, c->st));
    if ((rc = rope_table(c, n, s->pos, 0))) return rc;
    for (int g = 0; g < cf->n_groups; g++) {
        const hsadb_hsa_w *w = &c->m->w.hsa[g];
        if ((rc = attention(c, &w->swa, x, n, s, u++, s->pos, 0))) return rc;
        if ((rc = rmsnorm(c, c->xb, x, DW(c, w->norm), n, D))) return rc;
        if ((rc = hsa(c, g, mv, n, s->pos, tr))) return rc;
        if (cf->bypass) {            /* x = x + MLP(RMSNorm(x + W_o O)) */
            if ((rc = gemm(c, c->xb2, D, c->att, qd, DW(c, w->wo), n, qd, D, 0.f))) return rc;
            add_kernel<<<lin_grid((int64_t)n * D), 256, 0, c->st>>>(c->xb2, x, (int64_t)n * D);
            CK(cudaGetLastError());
            /* mlp() normalises into xb before reading its input, so xb2 stays intact */
            if ((rc = mlp(c, &w->mlp, c->xb2, x, n))) return rc;
        } else {                     /* x = x + W_o O + MLP(RMSNorm(x + W_o O)) */
            if ((rc = gemm(c, x, D, c->att, qd, DW(c, w->wo), n, qd, D, 1.f))) return rc;
            if ((rc = mlp(c, &w->mlp, x, x, n))) return rc;
        }
        for (int j = 0; j < R; j++)
            if ((rc = swa_layer(c, &c->m->w.upper[g * R + j], x, n, s, u++, s->pos))) return rc;
    }
    CK(cudaMemcpyAsync(out, x, (size_t)n * D * sizeof(float), cudaMemcpyDeviceToHost, c->st));
    return 0;
}

typedef struct upper_arg {
    hsadb_swa_state *s;
    const hsadb_memview *mv;
    const hsadb_trace *tr;
} upper_arg;

static int upper_body(hsadb_cuda_run *c, void *arg) {
    const upper_arg *u = (const upper_arg *)arg;
    CK(cudaMemcpyAsync(c->d_pos, c->h_pos, sizeof(int64_t), cudaMemcpyHostToDevice, c->st));
    return upper_dev(c, u->s, u->mv, c->h_xin, 1, c->h_xout, u->tr);
}

extern "C" int hsadb_cuda_upper_forward(hsadb_cuda_run *c, hsadb_swa_state *s, const hsadb_memview *mv,
                                        const float *x_mid, int n, float *out, const hsadb_trace *tr) {
    const hsadb_config *cf = c->c;
    const int D = cf->dim;
    int rc, ran = 0;
    const hsadb_tier *tier = mv->tier;
    if (n == 1 && c->graphs && tier && !tier->cached) {
        /* one decode step: a graph keyed by everything its launches read besides the position */
        unsigned char key[GRAPH_KEY];
        if ((rc = swa_attach(s))) return rc;
        if ((rc = sync_extra(c, mv))) return rc;       /* host uploads: not under capture */
        size_t o = swa_key(key, s);
        const int64_t kv[] = {s->pos / cf->chunk, mv->base_n, mv->extra ? mv->extra->n : -1, tier->kv_cap,
                              (int64_t)(tr && tr->idx), (int64_t)(tr && tr->qr)};
        const void *ptrs[] = {tier, tier->lmk, tier->k, tier->v, c->x_lmk, c->x_k, c->x_v};
        memcpy(key + o, kv, sizeof kv), o += sizeof kv;
        memcpy(key + o, ptrs, sizeof ptrs), o += sizeof ptrs;
        *c->h_pos = s->pos;
        memcpy(c->h_xin, x_mid, (size_t)D * sizeof(float));
        upper_arg ua = {s, mv, tr};
        if ((rc = graph_run(c, &c->g_upper, key, o, upper_body, &ua, &ran))) return rc;
    }
    if (!ran && (rc = upper_dev(c, s, mv, x_mid, n, out, tr))) return rc;
    CK(cudaStreamSynchronize(c->st));
    if (ran) memcpy(out, c->h_xout, (size_t)D * sizeof(float));
    const int G = cf->n_groups, row = cf->n_mem_heads * cf->topk, qrow = cf->n_mem_heads * cf->retr_dim;
    for (int g = 0; tr && g < G; g++)
        for (int t = 0; t < n; t++) {
            const size_t from = (size_t)g * c->max_rows + t, to = (size_t)t * G + g;
            if (tr->idx) memcpy(tr->idx + to * row, c->h_tidx + from * row, (size_t)row * 4);
            if (tr->idx && tr->w) memcpy(tr->w + to * row, c->h_tw + from * row, (size_t)row * 4);
            if (tr->qr) memcpy(tr->qr + to * qrow, c->h_tqr + from * qrow, (size_t)qrow * 4);
        }
    s->pos += n;
    return 0;
}

static int logits_body(hsadb_cuda_run *c, void *arg) {
    const hsadb_config *cf = c->c;
    int rc;
    (void)arg;
    CK(cudaMemcpyAsync(c->x, c->h_xin, (size_t)cf->dim * 4, cudaMemcpyHostToDevice, c->st));
    if ((rc = rmsnorm(c, c->xb, c->x, DW(c, c->m->w.final_norm), 1, cf->dim))) return rc;
    if ((rc = gemm(c, c->logits, cf->vocab, c->xb, cf->dim, DW(c, c->m->w.lm_head), 1, cf->dim, cf->vocab, 0.f)))
        return rc;
    CK(cudaMemcpyAsync(c->h_logits, c->logits, (size_t)cf->vocab * 4, cudaMemcpyDeviceToHost, c->st));
    return 0;
}

extern "C" int hsadb_cuda_logits(hsadb_cuda_run *c, const float *h, int n, float *logits) {
    const hsadb_config *cf = c->c;
    int rc;
    if (n == 1 && c->graphs) {
        const int one = 1;
        int ran;
        memcpy(c->h_xin, h, (size_t)cf->dim * 4);
        if ((rc = graph_run(c, &c->g_logits, &one, sizeof one, logits_body, NULL, &ran))) return rc;
        if (ran) {
            CK(cudaStreamSynchronize(c->st));
            memcpy(logits, c->h_logits, (size_t)cf->vocab * 4);
            return 0;
        }
    }
    for (int t0 = 0; t0 < n; t0 += c->rows_cap) {
        const int nb = n - t0 < c->rows_cap ? n - t0 : c->rows_cap;
        CK(cudaMemcpyAsync(c->x, h + (size_t)t0 * cf->dim, (size_t)nb * cf->dim * 4, cudaMemcpyHostToDevice, c->st));
        if ((rc = rmsnorm(c, c->xb, c->x, DW(c, c->m->w.final_norm), nb, cf->dim))) return rc;
        if ((rc = gemm(c, c->logits, cf->vocab, c->xb, cf->dim, DW(c, c->m->w.lm_head), nb, cf->dim, cf->vocab, 0.f)))
            return rc;
        CK(cudaMemcpyAsync(logits + (size_t)t0 * cf->vocab, c->logits, (size_t)nb * cf->vocab * 4,
                           cudaMemcpyDeviceToHost, c->st));
    }
    CK(cudaStreamSynchronize(c->st));
    return 0;
}
