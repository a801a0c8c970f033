/* util/pool.c — persistent fork/join pool and the forward pass's thread settings (see pool.h). */
#include "pool.h"

#include <cblas.h>
#include <errno.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define SPIN_NS 50000   /* how long a waiting thread spins before it sleeps */

struct hsadb_pool_worker {
    hsadb_pool *p;
    int         id;
};

struct hsadb_pool {
    int n;                                   /* threads, the caller included */
    pthread_t *tid;                          /* [n-1] */
    struct hsadb_pool_worker *w;             /* [n-1] */
    int started;                             /* workers created */
    void (*fn)(void *, int, int);            /* the current job */
    void *ctx;
    int job_n;
    int stop;
    _Atomic unsigned job;                    /* futex word: bumped to start a job */
    _Atomic unsigned done;                   /* futex word: workers finished with the job */
    _Atomic unsigned bar_gen;                /* futex word: bumped when a barrier opens */
    _Atomic unsigned bar_count;              /* threads arrived at the current barrier */
    _Atomic int sleepers;                    /* threads blocked in FUTEX_WAIT */
};

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Returns once *w != old: spins for SPIN_NS (yielding the CPU after the first microseconds,
 * in case the thread we wait for shares it), then sleeps on the futex. */
static void wait_change(hsadb_pool *p, _Atomic unsigned *w, unsigned old) {
    long t0 = 0;
    for (int i = 0;; i++) {
        if (atomic_load_explicit(w, memory_order_acquire) != old) return;
        if (i < 1024) {
            cpu_relax();
            continue;
        }
        sched_yield();
        long t = now_ns();
        if (!t0) t0 = t;
        else if (t - t0 > SPIN_NS) break;
    }
    atomic_fetch_add(&p->sleepers, 1);
    /* A waker bumps *w and then reads sleepers (both seq_cst): either it sees us, or our
     * FUTEX_WAIT sees the new value and returns at once. */
    while (atomic_load(w) == old) syscall(SYS_futex, (unsigned *)w, FUTEX_WAIT_PRIVATE, old, NULL, NULL, 0);
    atomic_fetch_sub(&p->sleepers, 1);
}

static void wake_all(hsadb_pool *p, _Atomic unsigned *w) {
    if (atomic_load(&p->sleepers)) syscall(SYS_futex, (unsigned *)w, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void *worker_main(void *arg) {
    struct hsadb_pool_worker *wk = arg;
    hsadb_pool *p = wk->p;
    unsigned seen = 0;
    for (;;) {
        wait_change(p, &p->job, seen);
        seen = atomic_load(&p->job);
        if (p->stop) return NULL;
        if (wk->id < p->job_n) p->fn(p->ctx, wk->id, p->job_n);
        atomic_fetch_add(&p->done, 1);
        wake_all(p, &p->done);
    }
}

int hsadb_pool_create(int n, hsadb_pool **out) {
    *out = NULL;
    if (n <= 1) return 0;
    hsadb_pool *p = calloc(1, sizeof *p);
    int rc = ENOMEM;
    if (!p) return ENOMEM;
    p->n = n;
    if (!(p->tid = calloc((size_t)n - 1, sizeof *p->tid)) || !(p->w = calloc((size_t)n - 1, sizeof *p->w)))
        goto fail;
    for (int i = 0; i < n - 1; i++) {
        p->w[i] = (struct hsadb_pool_worker){p, i + 1};
        if ((rc = pthread_create(&p->tid[i], NULL, worker_main, &p->w[i]))) goto fail;
        p->started++;
    }
    *out = p;
    return 0;
fail:
    hsadb_pool_free(p);
    return rc;
}

void hsadb_pool_free(hsadb_pool *p) {
    if (!p) return;
    p->stop = 1;
    atomic_fetch_add(&p->job, 1);
    syscall(SYS_futex, (unsigned *)&p->job, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
    for (int i = 0; i < p->started; i++) pthread_join(p->tid[i], NULL);
    free(p->tid);
    free(p->w);
    free(p);
}

int hsadb_pool_size(const hsadb_pool *p) { return p ? p->n : 1; }

void hsadb_pool_run(hsadb_pool *p, int nt, void (*fn)(void *ctx, int i, int nt), void *ctx) {
    if (!p || nt <= 1) {
        if (p) p->job_n = 1;
        fn(ctx, 0, 1);
        return;
    }
    if (nt > p->n) nt = p->n;
    p->fn = fn, p->ctx = ctx, p->job_n = nt;
    atomic_store(&p->done, 0);
    atomic_fetch_add(&p->job, 1);
    wake_all(p, &p->job);
    fn(ctx, 0, nt);
    for (unsigned d; (d = atomic_load_explicit(&p->done, memory_order_acquire)) != (unsigned)p->n - 1;)
        wait_change(p, &p->done, d);
}

void hsadb_pool_barrier(hsadb_pool *p) {
    if (!p || p->job_n <= 1) return;
    unsigned gen = atomic_load(&p->bar_gen);
    if (atomic_fetch_add(&p->bar_count, 1) == (unsigned)p->job_n - 1) {
        atomic_store(&p->bar_count, 0);
        atomic_fetch_add(&p->bar_gen, 1);
        wake_all(p, &p->bar_gen);
    } else {
        wait_change(p, &p->bar_gen, gen);
    }
}

/* ---- process-wide settings -------------------------------------------------------------- */

int hsadb_cpu_count(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) {
        int n = CPU_COUNT(&set);
        if (n > 0) return n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static _Atomic int thread_limit;

void hsadb_threads_set(int n) { atomic_store(&thread_limit, n > 0 ? n : 0); }
int  hsadb_threads_get(void) { return atomic_load(&thread_limit); }

void hsadb_blas_single(void) {
    if (openblas_get_num_threads() != 1) openblas_set_num_threads(1);
}

/* OpenBLAS's sgemm micro-kernel tiles the rows of a row-major C (the columns of its
 * column-major view) by a fixed width and handles the remainder with narrower kernels that
 * round differently. Cuts at multiples of the width reproduce the one-call result bit for
 * bit. The width depends on the kernel OpenBLAS picked for this CPU, so measure it: the
 * smallest candidate at which cutting a product twice changes no bit. */
static int row_align = 48;
static pthread_once_t row_align_once = PTHREAD_ONCE_INIT;

static void row_align_measure(void) {
    static const int cand[] = {1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96};
    enum { N = 64, K = 256, MMAX = 3 * 96 + 5 };
    float *a = malloc(sizeof(float) * MMAX * K), *b = malloc(sizeof(float) * N * K);
    float *c1 = malloc(sizeof(float) * MMAX * N), *c2 = malloc(sizeof(float) * MMAX * N);
    if (!a || !b || !c1 || !c2) goto out;
    uint32_t s = 12345;
    for (int i = 0; i < MMAX * K; i++) s = s * 1664525u + 1013904223u, a[i] = (float)(s >> 8) / 16777216.f - .5f;
    for (int i = 0; i < N * K; i++) s = s * 1664525u + 1013904223u, b[i] = (float)(s >> 8) / 16777216.f - .5f;
    hsadb_blas_single();
    for (size_t ci = 0; ci < sizeof cand / sizeof cand[0]; ci++) {
        const int g = cand[ci], M = 3 * g + 5;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.f, a, K, b, K, 0.f, c1, N);
        const int cut[4] = {0, g, 2 * g, M};   /* three calls: g, g and g + 5 rows */
        for (int j = 0; j < 3; j++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, cut[j + 1] - cut[j], N, K, 1.f,
                        a + (size_t)cut[j] * K, K, b, K, 0.f, c2 + (size_t)cut[j] * N, N);
        if (!memcmp(c1, c2, sizeof(float) * (size_t)M * N)) {
            row_align = g;
            break;
        }
    }
out:
    free(a), free(b), free(c1), free(c2);
}

int hsadb_gemm_row_align(void) {
    pthread_once(&row_align_once, row_align_measure);
    return row_align;
}
