/*
 * fibers.c - the fiber scenarios (issue 4) of `vmstack bench`: context switch, create +
 * run to completion + destroy (default and VMS_NO_SCRUB), and a million suspended
 * fibers, against POSIX ucontext (the baseline C has). The targets that name
 * Boost.Context and Boost.Fiber are judged in bench/boost_context.cpp, which runs the same
 * vmstack cases against them; here only vmstack's own absolute targets are judged.
 * Each group runs in its own child process; baselines run in the same child.
 */
#include "bench.h"
#include "vmstack.h"

#include <sys/mman.h>
#include <ucontext.h>

#define FB_SIZE  ((size_t)256 * 1024)   /* vmstack's default usable stack */
#define FB_GUARD ((size_t)64 * 1024)    /* and its default guard */

/* ---- vmstack cases ------------------------------------------------------------------------ */
/* Yields forever: every resume is one switch in and one switch out. */
static void fb_yield_loop(void *arg)
{
    (void)arg;
    for (;;) vms_fiber_yield();
}

/* n switches: n/2 resume+yield pairs. */
static void fb_vms_switch(void *ctx, long n)
{
    vms_fiber *f = (vms_fiber *)ctx;
    for (long i = 0; i < n / 2; i++)
        if (vms_fiber_resume(f) != VMS_SUSPENDED) bench_die("switch: resume did not suspend");
}

/* A shallow fiber: a little work on its stack, kept alive through bench_sink. */
static void fb_shallow(void *arg)
{
    volatile uint64_t local[8];
    for (int i = 0; i < 8; i++) local[i] = (uint64_t)(uintptr_t)arg + (uint64_t)i;
    bench_sink += local[7];
}

static void fb_vms_create_run_destroy(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        vms_fiber *f = vms_fiber_create(fb_shallow, (void *)(uintptr_t)i, NULL);
        if (!f) bench_die("vms_fiber_create: %s", strerror(errno));
        int st = vms_fiber_resume(f);
        if (st != VMS_DONE) bench_die("create: fiber ended in state %d, not DONE", st);
        vms_fiber_destroy(f);
    }
}

/* ---- ucontext baselines ----------------------------------------------------------------- */
static ucontext_t fb_main_uc, fb_loop_uc;
static ucontext_t *fb_cur_uc;           /* the context a baseline fiber runs in */

static void fb_uc_yield_loop(void)
{
    for (;;) swapcontext(&fb_loop_uc, &fb_main_uc);
}

static void fb_uc_switch(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n / 2; i++) swapcontext(&fb_main_uc, &fb_loop_uc);
}

static void fb_uc_shallow(void)
{
    fb_shallow(fb_cur_uc);
}   /* returning follows uc_link back to fb_main_uc */

/* Starts a context on [stack, stack + FB_SIZE) and runs fn until it returns or swaps
 * back to fb_main_uc. */
static void fb_uc_run(ucontext_t *uc, char *stack, void (*fn)(void))
{
    if (getcontext(uc) != 0) bench_die("getcontext: %s", strerror(errno));
    uc->uc_stack.ss_sp = stack;
    uc->uc_stack.ss_size = FB_SIZE;
    uc->uc_link = &fb_main_uc;
    makecontext(uc, fn, 0);
    fb_cur_uc = uc;
    if (swapcontext(&fb_main_uc, uc) != 0) bench_die("swapcontext: %s", strerror(errno));
}

/* The protected stack of Boost's protected_fixedsize_stack: a mapping with a
 * no-access guard at its bottom; returns the usable part. */
static char *fb_mmap_guarded(void)
{
    char *p = (char *)mmap(NULL, FB_GUARD + FB_SIZE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (mprotect(p, FB_GUARD, PROT_NONE) != 0) {
        int e = errno;
        munmap(p, FB_GUARD + FB_SIZE);
        errno = e;
        return NULL;
    }
    return p + FB_GUARD;
}

static void fb_uc_protected(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        char *s = fb_mmap_guarded();
        if (!s) bench_die("mmap+mprotect: %s", strerror(errno));
        ucontext_t uc;
        fb_uc_run(&uc, s, fb_uc_shallow);
        if (munmap(s - FB_GUARD, FB_GUARD + FB_SIZE) != 0) bench_die("munmap: %s", strerror(errno));
    }
}

/* A pool of malloc'd stacks, like Boost's pooled_fixedsize_stack: no guard, reused. */
struct fb_pool { char *free[64]; int n; };

static void fb_uc_pooled(void *ctx, long n)
{
    struct fb_pool *pool = (struct fb_pool *)ctx;
    for (long i = 0; i < n; i++) {
        char *s = pool->n > 0 ? pool->free[--pool->n] : (char *)malloc(FB_SIZE);
        if (!s) bench_die("malloc(%zu) failed", FB_SIZE);
        ucontext_t uc;
        fb_uc_run(&uc, s, fb_uc_shallow);
        if (pool->n < 64) pool->free[pool->n++] = s;
        else free(s);
    }
}

static void fb_pool_drain(struct fb_pool *pool)
{
    while (pool->n > 0) free(pool->free[--pool->n]);
}

/* ---- groups ------------------------------------------------------------------------------- */
static void fb_init(unsigned flags)
{
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.flags = flags;
    int rc = vms_init(&cfg);
    if (rc != 0) bench_die("vms_init(flags 0x%x): %s", flags, strerror(-rc));
}

static void fb_group_switch(const struct bench_opts *o)
{
    fb_init(0);
    vms_fiber *f = vms_fiber_create(fb_yield_loop, NULL, NULL);
    if (!f) bench_die("vms_fiber_create: %s", strerror(errno));
    char *s = fb_mmap_guarded();
    if (!s) bench_die("mmap+mprotect: %s", strerror(errno));
    fb_uc_run(&fb_loop_uc, s, fb_uc_yield_loop);    /* now suspended in its loop */
    struct bench_case c[2];
    bench_case_init(&c[0], "vmstack", fb_vms_switch, f, bench_ops_pairs(o, 2000000, 20));
    bench_case_init(&c[1], "ucontext", fb_uc_switch, NULL, bench_ops_pairs(o, 2000000, 20));
    bench_interleave(c, 2, o->rounds);
    struct bench_row r;
    bench_row_time(&r, "fiber.switch.ucontext", "fiber switch (resume+yield / 2)", &c[0],
                   "ucontext swapcontext", &c[1], bench_no_target());
    snprintf(r.note, sizeof r.note, "the jump_fcontext comparison is vmstack_bench_boost's "
             "(bench/boost_context.cpp, built where CMake finds Boost.Context)");
    bench_emit(&r);
    vms_fiber_destroy(f);
    munmap(s - FB_GUARD, FB_GUARD + FB_SIZE);
}

static void fb_group_create(const struct bench_opts *o, unsigned flags)
{
    fb_init(flags);
    struct fb_pool pool;
    memset(&pool, 0, sizeof pool);
    struct bench_case c[3];
    bench_case_init(&c[0], "vmstack", fb_vms_create_run_destroy, NULL, bench_ops(o, 200000, 20));
    bench_case_init(&c[1], "pooled", fb_uc_pooled, &pool, bench_ops(o, 200000, 20));
    bench_case_init(&c[2], "protected", fb_uc_protected, NULL, bench_ops(o, 2000, 10));
    int nc = flags & VMS_NO_SCRUB ? 2 : 3;
    bench_interleave(c, nc, o->rounds);
    struct bench_row r;
    const char *what = flags & VMS_NO_SCRUB ? "fiber create+run+destroy, VMS_NO_SCRUB"
                                            : "fiber create+run+destroy, default";
    struct bench_target t = bench_no_target();
    t.max_sc = 0.05;
    t.max_flt = 0;
    bench_row_time(&r, flags & VMS_NO_SCRUB ? "fiber.create.noscrub.pooled" : "fiber.create.default.pooled",
                   what, &c[0], "ucontext, pooled malloc", &c[1], t);
    bench_emit(&r);
    if (nc == 3) {
        t.max_ratio = 0.01;   /* >= 100x faster than a protected stack per fiber */
        bench_row_time(&r, "fiber.create.default.protected", what, &c[0],
                       "ucontext, mmap+mprotect", &c[2], t);
        bench_emit(&r);
    }
    fb_pool_drain(&pool);
}

static void fb_group_create_default(const struct bench_opts *o) { fb_group_create(o, 0); }
static void fb_group_create_noscrub(const struct bench_opts *o) { fb_group_create(o, VMS_NO_SCRUB); }

/* Suspends right away: the fiber has run (its top page is used) and waits. */
static void fb_suspend(void *arg)
{
    fb_shallow(arg);
    vms_fiber_yield();
}

static void fb_uc_suspend(void)
{
    fb_shallow(fb_cur_uc);
    swapcontext(fb_cur_uc, &fb_main_uc);
}

static void fb_group_scale(const struct bench_opts *o)
{
    struct bench_row r;
    long count = bench_scale_row(&r, o, "fiber.scale", "suspended fibers",
                                 "ucontext, mmap+mprotect");

    void **v = (void **)calloc((size_t)count, sizeof *v);
    if (!v) bench_die("calloc(%ld pointers) failed", count);
    memset(v, 0, (size_t)count * sizeof *v);   /* resident before the first snapshot */
    long made = 0;
    int err = 0;
    /* Before vms_init: its arena (the main thread's alternate signal stack) is vmstack's
     * mapping too. vms_init itself is outside the timed window. */
    struct bench_mem m0 = bench_mem_now();
    fb_init(0);
    long init_maps = bench_map_count();
    struct bench_window w;
    bench_begin(&w);
    for (; made < count; made++) {
        vms_fiber *f = vms_fiber_create(fb_suspend, NULL, NULL);
        if (!f) { err = errno; break; }
        if (vms_fiber_resume(f) != VMS_SUSPENDED) bench_die("scale: fiber did not suspend");
        v[made] = f;
    }
    bench_end(&w);
    struct bench_mem m1 = bench_mem_now();
    bench_mem_side(&r.v, m0, m1, made);
    if (made > 0) {
        r.v.ns = (double)w.ns / (double)made;
        r.v.sc = w.sc < 0 ? NAN : (double)w.sc / (double)made;
        r.v.flt = (double)w.flt / (double)made;
    }
    if (m0.maps >= 0 && init_maps >= 0)
        bench_note(&r, "vms_init made %ld maps", init_maps - m0.maps);
    if (err) bench_note(&r, "vmstack stopped at %ld: %s", made, strerror(err));
    for (long i = 0; i < made; i++) vms_fiber_destroy((vms_fiber *)v[i]);

    /* Baseline: a ucontext (malloc'd, as a fiber object would be) on a guarded mapping,
     * started and suspended, until the kernel's mapping limit or count. */
    made = 0;
    err = 0;
    struct bench_mem m2 = bench_mem_now();
    bench_begin(&w);
    for (; made < count; made++) {
        char *s = fb_mmap_guarded();
        if (!s) { err = errno; break; }
        ucontext_t *uc = (ucontext_t *)malloc(sizeof *uc);
        if (!uc) { err = ENOMEM; munmap(s - FB_GUARD, FB_GUARD + FB_SIZE); break; }
        fb_uc_run(uc, s, fb_uc_suspend);
        v[made] = uc;
    }
    bench_end(&w);
    struct bench_mem m3 = bench_mem_now();
    bench_mem_side(&r.b, m2, m3, made);
    if (made > 0) {
        r.b.ns = (double)w.ns / (double)made;
        r.b.sc = w.sc < 0 ? NAN : (double)w.sc / (double)made;
        r.b.flt = (double)w.flt / (double)made;
    }
    if (err)
        bench_note(&r, "baseline stopped at %ld: %s", made, strerror(err));
    else
        bench_note(&r, "baseline reached %ld (no limit hit)", made);
    for (long i = 0; i < made; i++) {
        ucontext_t *uc = (ucontext_t *)v[i];
        munmap((char *)uc->uc_stack.ss_sp - FB_GUARD, FB_GUARD + FB_SIZE);
        free(uc);
    }
    free(v);
    vms_stats stats;
    if (vms_get_stats(&stats) == 0 && stats.guard_method)
        bench_note(&r, "guard method %s", stats.guard_method);
    r.target = bench_no_target();
    r.target.max_maps = 16;
    r.target.max_bytes = 4.5 * 1024;
    bench_row_judge(&r);
    bench_emit(&r);
}

const struct bench_group bench_fiber_groups[] = {
    { "fiber.switch", "switch (resume+yield / 2) vs ucontext swapcontext", fb_group_switch, 0 },
    { "fiber.create", "create+run+destroy, default, vs ucontext on pooled and protected stacks",
      fb_group_create_default, 0 },
    { "fiber.noscrub", "create+run+destroy with VMS_NO_SCRUB vs ucontext on pooled stacks",
      fb_group_create_noscrub, VMS_NO_SCRUB },
    { "fiber.scale", "suspended fibers: mappings and memory added, vs ucontext + mmap+mprotect",
      fb_group_scale, 0 },
};
const int bench_fiber_ngroups = (int)(sizeof bench_fiber_groups / sizeof bench_fiber_groups[0]);
