/*
 * kernels/engine_cuda.h — the CUDA backend of model/forward.h (internal).
 *
 * model/forward.c calls these when a hsadb_run was opened on HSADB_DEVICE_CUDA; engine code
 * never sees them (it calls the stage functions of forward.h). Arguments mean exactly what
 * they mean there: host pointers in and out, the same shapes. Inside, everything runs on one
 * CUDA stream of the run in fp32 (cuBLAS SGEMM, FP32 math) except the HSA attention, which
 * reads the stored bf16 K/V with bf16 queries (kernels.h). Each call returns when its host
 * outputs are written.
 *
 *   hsadb_cuda_run   device scratch for blocks of max_rows rows, a stream, a cuBLAS handle,
 *                    and the model's weights on the device (uploaded once per process and
 *                    model, shared by runs, freed with the last run).
 *   hsadb_cuda_swa   the sliding-window rings of a hsadb_swa_state on the device: uploaded
 *                    from the host rings on first use, pulled back by hsadb_cuda_swa_pull.
 *   hsadb_tier       the GPU memory tier of one memory: bf16 landmarks [cap][Hm][dr] and
 *                    K/V blocks [slots][S][Hm][dh] on the device, extended by
 *                    hsadb_cuda_mem_push (owned by the engine's per-memory cache); the K/V
 *                    slots are a block cache once the memory outgrows them (forward.h).
 *
 * Errors: 0, ENOMEM, or HSADB_ERR_NODEVICE with a detail in hsadb_last_error().
 */
#ifndef HSADB_ENGINE_CUDA_H
#define HSADB_ENGINE_CUDA_H

#include <stddef.h>
#include <stdint.h>

#include "forward.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct hsadb_cuda_run hsadb_cuda_run;
typedef struct hsadb_cuda_swa hsadb_cuda_swa;


/* 1 if a CUDA device is usable in this process. */
int  hsadb_cuda_available(void);

/* gemm: hsadb_gpu_gemm; flags: hsadb_gpu_flags (hsadb_db_options' gpu_gemm, gpu_flags). */
int  hsadb_cuda_run_init(hsadb_cuda_run **out, const hsadb_model *m, int max_rows, int gemm, unsigned flags);
void hsadb_cuda_run_free(hsadb_cuda_run *c);
/* Page-locked host memory; NULL on failure. Freed buffers are kept for later allocations of the
 * process (bounded pool), since pinning is slow. */
void *hsadb_cuda_host_alloc(size_t bytes);
void  hsadb_cuda_host_free(void *p);

int  hsadb_cuda_lower_forward(hsadb_cuda_run *c, hsadb_swa_state *s, const int *tokens, int n, float *x_mid);
int  hsadb_cuda_encode(hsadb_cuda_run *c, const float *xs, int nc, int kv_f32, void *lmk, void *kv,
                       float *lmk32, float *k32, float *v32);
int  hsadb_cuda_append_forward(hsadb_cuda_run *c, hsadb_swa_state *s, const int *tokens, int n,
                               const float *part_x, int part, float *x_mid, int keep, int kv_f32, void *lmk, void *kv,
                               int *nc);
int  hsadb_cuda_upper_forward(hsadb_cuda_run *c, hsadb_swa_state *s, const hsadb_memview *mv,
                              const float *x_mid, int n, float *out, const hsadb_trace *tr);
int  hsadb_cuda_logits(hsadb_cuda_run *c, const float *h, int n, float *logits);

int64_t hsadb_cuda_graph_launches(const hsadb_cuda_run *c);   /* see hsadb_run_graph_launches */

void hsadb_cuda_swa_free(hsadb_cuda_swa *d);
int  hsadb_cuda_swa_pull(hsadb_swa_state *s);

/* The memory tier. lmk [n][Hm*dr] and kv [n][2][S][Hm*dh] as stored (bf16). */
/* kv_chunks > 0: at most that many chunks' K/V on the device; 0: free memory less a reserve. */
int  hsadb_cuda_mem_init(hsadb_tier **out, int Hm, int dr, int S, int dh, int K, int64_t kv_chunks);
int  hsadb_cuda_mem_push(hsadb_tier *g, const uint16_t *lmk, const uint16_t *kv, int64_t n);
int64_t hsadb_cuda_mem_count(const hsadb_tier *g);
int64_t hsadb_cuda_mem_kv_room(const hsadb_tier *g);   /* see hsadb_tier_kv_room */
/* Block-cache counters (all 0 while every chunk's K/V is resident): K/V slots, chunk picks
 * served from a slot, and picks fetched from the store. */
void    hsadb_cuda_mem_cache_stats(const hsadb_tier *g, int64_t *slots, int64_t *hits, int64_t *misses);
void hsadb_cuda_mem_free(hsadb_tier *g);

#ifdef __cplusplus
}
#endif
#endif
