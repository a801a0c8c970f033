/*
 * util/pool.h — a small persistent fork/join thread pool for the CPU forward pass (internal).
 *
 * A pool of n threads: the thread that calls hsadb_pool_run is thread 0; the n-1 workers are
 * created once by hsadb_pool_create and live until hsadb_pool_free. hsadb_pool_run(p, nt, fn,
 * ctx) runs fn(ctx, i, nt) on threads i = 0..nt-1 (nt <= n) and returns when every one has
 * returned: one job at a time, no queue. Inside fn, hsadb_pool_barrier(p) waits until all nt
 * threads have reached it. A waiting thread spins for a few tens of microseconds, then sleeps
 * on a futex: an idle pool costs no CPU. A pool serves one caller at a time (the forward pass
 * keeps one per hsadb_run). p == NULL or nt <= 1: fn(ctx, 0, 1) runs inline.
 *
 * Around it, process-wide settings of the forward pass:
 *   hsadb_cpu_count          CPUs this process may run on (sched_getaffinity)
 *   hsadb_threads_set/_get   the forward pass's thread limit (0 = every usable CPU)
 *   hsadb_blas_single        put OpenBLAS in single-threaded mode (the pool splits the work)
 *   hsadb_gemm_row_align     the row granularity at which OpenBLAS's sgemm gives the same
 *                            bits whether the rows are computed in one call or several
 *   hsadb_split              a thread's share of a row range, cut at such multiples
 */
#ifndef HSADB_POOL_H
#define HSADB_POOL_H

typedef struct hsadb_pool hsadb_pool;

/* Creates a pool of n threads (n - 1 workers). n <= 1 gives *out = NULL (inline execution).
 * Returns 0 or an errno. */
int  hsadb_pool_create(int n, hsadb_pool **out);
void hsadb_pool_free(hsadb_pool *p);
int  hsadb_pool_size(const hsadb_pool *p);   /* 1 for NULL */

void hsadb_pool_run(hsadb_pool *p, int nt, void (*fn)(void *ctx, int i, int nt), void *ctx);
void hsadb_pool_barrier(hsadb_pool *p);

int  hsadb_cpu_count(void);
void hsadb_threads_set(int n);
int  hsadb_threads_get(void);
void hsadb_blas_single(void);
int  hsadb_gemm_row_align(void);

/* Rows [*lo, *hi) of thread i among nt sharing [0, total): the cuts are multiples of align
 * (the last thread ends at total), so the shares are contiguous and cover every row once. */
static inline void hsadb_split(int total, int i, int nt, int align, int *lo, int *hi) {
    int a = (int)(((long long)total * i / nt + align / 2) / align) * align;
    int b = i + 1 == nt ? total : (int)(((long long)total * (i + 1) / nt + align / 2) / align) * align;
    *lo = a < total ? a : total;
    *hi = b < total ? b : total;
}

#endif
