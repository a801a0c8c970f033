/*
 * model/backend.c — choosing the backend, and what is backend-specific but not a forward
 * stage: page-locked host buffers and the GPU memory tier (see forward.h).
 *
 * A build without CUDA (no nvcc) has only the CPU backend: asking for CUDA then gives
 * HSADB_ERR_NODEVICE, and AUTO resolves to the CPU.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "util.h"
#ifdef HSADB_HAVE_CUDA
#include "engine_cuda.h"
#endif

int hsadb_device_resolve(int device) {
    if (device == HSADB_DEVICE_CPU) return HSADB_DEVICE_CPU;
#ifdef HSADB_HAVE_CUDA
    if (hsadb_cuda_available()) return HSADB_DEVICE_CUDA;
#endif
    if (device == HSADB_DEVICE_CUDA)
        return hsadb_fail(HSADB_ERR_NODEVICE,
#ifdef HSADB_HAVE_CUDA
                          "no usable CUDA device; use --device cpu"
#else
                          "this build has no CUDA backend (no CUDA compiler at build time); use --device cpu"
#endif
        );
    return HSADB_DEVICE_CPU;
}

void *hsadb_run_host_alloc(const hsadb_run *r, size_t bytes) {
#ifdef HSADB_HAVE_CUDA
    if (r->cu) return hsadb_cuda_host_alloc(bytes);
#endif
    (void)r;
    return malloc(bytes ? bytes : 1);
}

void hsadb_run_host_free(const hsadb_run *r, void *p) {
#ifdef HSADB_HAVE_CUDA
    if (r->cu) {
        hsadb_cuda_host_free(p);
        return;
    }
#endif
    (void)r;
    free(p);
}

int64_t hsadb_run_graph_launches(const hsadb_run *r) {
#ifdef HSADB_HAVE_CUDA
    if (r->cu) return hsadb_cuda_graph_launches(r->cu);
#endif
    (void)r;
    return 0;
}

int hsadb_tier_open(int device, const hsadb_config *c, int64_t kv_chunks, hsadb_tier **out) {
    *out = NULL;
#ifdef HSADB_HAVE_CUDA
    if (device == HSADB_DEVICE_CUDA)
        return hsadb_cuda_mem_init(out, c->n_mem_heads, c->retr_dim, c->chunk, c->head_dim, c->topk, kv_chunks);
#endif
    (void)device, (void)c, (void)kv_chunks;
    return 0;
}

int hsadb_tier_push(hsadb_tier *t, const uint16_t *lmk, const uint16_t *kv, int64_t n) {
#ifdef HSADB_HAVE_CUDA
    if (t) return hsadb_cuda_mem_push(t, lmk, kv, n);
#endif
    (void)t, (void)lmk, (void)kv, (void)n;
    return 0;
}

int64_t hsadb_tier_kv_room(const hsadb_tier *t) {
#ifdef HSADB_HAVE_CUDA
    if (t) return hsadb_cuda_mem_kv_room(t);
#endif
    (void)t;
    return 0;
}

int64_t hsadb_tier_count(const hsadb_tier *t) {
#ifdef HSADB_HAVE_CUDA
    if (t) return hsadb_cuda_mem_count(t);
#endif
    (void)t;
    return 0;
}

void hsadb_tier_stats(const hsadb_tier *t, int64_t *slots, int64_t *hits, int64_t *misses) {
    *slots = *hits = *misses = 0;
#ifdef HSADB_HAVE_CUDA
    if (t) hsadb_cuda_mem_cache_stats(t, slots, hits, misses);
#endif
    (void)t;
}

void hsadb_tier_close(hsadb_tier *t) {
#ifdef HSADB_HAVE_CUDA
    if (t) hsadb_cuda_mem_free(t);
#endif
    (void)t;
}

/* ---- runs ------------------------------------------------------------------------------- */

#define CPU_BLOCK 256      /* rows per block on the CPU: the scratch stays in cache */
#define CUDA_BLOCK 16384   /* rows per block on the GPU: enough work per launch */

int hsadb_run_init_dev(hsadb_run *r, const hsadb_model *m, int max_rows, int device, const hsadb_db_options *o) {
    const int dev = hsadb_device_resolve(device);
    if (dev < 0) return dev;
    if (dev == HSADB_DEVICE_CPU) return hsadb_run_init(r, m, max_rows > 0 ? max_rows : CPU_BLOCK);
#ifdef HSADB_HAVE_CUDA
    memset(r, 0, sizeof *r);
    r->m = m;
    r->device = HSADB_DEVICE_CUDA;
    r->max_rows = max_rows > 0 ? max_rows : CUDA_BLOCK;
    r->rows_cap = r->max_rows;
    return hsadb_cuda_run_init(&r->cu, m, r->max_rows, o ? o->gpu_gemm : 0, o ? o->gpu_flags : 0);
#else
    (void)o;
    return hsadb_fail(HSADB_ERR_NODEVICE, "this build has no CUDA backend");
#endif
}

int hsadb_swa_state_pull(hsadb_swa_state *s) {
#ifdef HSADB_HAVE_CUDA
    if (s->dev) return hsadb_cuda_swa_pull(s);
#endif
    (void)s;
    return 0;
}

int hsadb_encode_records(hsadb_run *r, const float *xs, int nc, int kv_f32, void *lmk, void *kv) {
    const hsadb_config *c = &r->m->c;
    const size_t ln = (size_t)c->n_mem_heads * c->retr_dim, per = (size_t)c->chunk * c->n_mem_heads * c->head_dim;
    if (nc <= 0) return 0;
#ifdef HSADB_HAVE_CUDA
    if (r->cu) return hsadb_cuda_encode(r->cu, xs, nc, kv_f32, lmk, kv, NULL, NULL, NULL);
#endif
    if (!r->enc_lmk) {              /* CPU: fp32 outputs, then the record layout */
        const size_t mx = (size_t)r->max_rows / c->chunk + 1;
        r->enc_lmk = malloc(mx * ln * sizeof(float));
        r->enc_k = malloc(mx * per * sizeof(float));
        r->enc_v = malloc(mx * per * sizeof(float));
        if (!r->enc_lmk || !r->enc_k || !r->enc_v) return ENOMEM;
    }
    hsadb_encode_chunks(r, xs, nc, r->enc_lmk, r->enc_k, r->enc_v);
    for (int j = 0; j < nc; j++) {
        const float *l = r->enc_lmk + j * ln, *k = r->enc_k + j * per, *v = r->enc_v + j * per;
        if (kv_f32) {
            memcpy((float *)lmk + j * ln, l, ln * 4);
            memcpy((float *)kv + 2 * j * per, k, per * 4);
            memcpy((float *)kv + (2 * j + 1) * per, v, per * 4);
        } else {
            uint16_t *ol = (uint16_t *)lmk + j * ln, *ok = (uint16_t *)kv + 2 * j * per, *ov = ok + per;
            for (size_t i = 0; i < ln; i++) ol[i] = hsadb_f32_to_bf16(l[i]);
            for (size_t i = 0; i < per; i++) ok[i] = hsadb_f32_to_bf16(k[i]), ov[i] = hsadb_f32_to_bf16(v[i]);
        }
    }
    return 0;
}

int hsadb_gather_chunks(const float *part_x, int part, const float *x_mid, int n, int S, int D, float *xs) {
    int nc = 0;
    for (int end = S; end <= part + n; end += S, nc++) {      /* ends relative to the partial rows */
        const int cs = end - S, from_part = cs < part ? part - cs : 0;
        float *dx = xs + (size_t)nc * S * D;
        memcpy(dx, part_x + (size_t)(part - from_part) * D, (size_t)from_part * D * sizeof(float));
        memcpy(dx + (size_t)from_part * D, x_mid + (size_t)(cs + from_part - part) * D,
               (size_t)(S - from_part) * D * sizeof(float));
    }
    return nc;
}

int hsadb_append_forward(hsadb_run *r, hsadb_swa_state *s, const int *tokens, int n, const float *part_x, int part,
                         float *x_mid, int keep, float *xs, int kv_f32, void *lmk, void *kv, int *nc) {
    const hsadb_config *c = &r->m->c;
    *nc = 0;
#ifdef HSADB_HAVE_CUDA
    if (r->cu) return hsadb_cuda_append_forward(r->cu, s, tokens, n, part_x, part, x_mid, keep, kv_f32, lmk, kv, nc);
#endif
    int rc = hsadb_lower_forward(r, s, tokens, n, x_mid);
    if (rc) return rc;
    const int k = hsadb_gather_chunks(part_x, part, x_mid, n, c->chunk, c->dim, xs);
    if ((rc = hsadb_encode_records(r, xs, k, kv_f32, lmk, kv))) return rc;
    *nc = k;
    return 0;
}
