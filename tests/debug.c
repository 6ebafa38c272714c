/*
 * debug.c - tests of the debug layer: painting and high-water marks (VMS_PAINT), the
 * usage histogram, the "used greatest stack depth" line, the end-of-stack magic
 * (VMS_END_CHECK) and its report. vms_init works once per process, so every case runs
 * its configuration in a forked child (tst_fork) and asserts on the child's exit and
 * output. Depths are written through raw stacks at top - depth, so the expected value
 * is known exactly; the contract checked is "within one page".
 */
#include "internal.h"
#include "test.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <sys/mman.h>

static size_t page(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

/* Runs fn in a child; fails with the child's output unless it exited 0. Returns the
 * output (static buffer) for further checks. */
static char out[65536];
static const char *run(void (*fn)(void *), void *arg)
{
    return tst_run_ok(fn, arg, out, sizeof out);
}

static void init_flags(unsigned flags, int on_overflow)
{
    vms_config c;
    memset(&c, 0, sizeof c);
    c.flags = flags;
    c.on_overflow = on_overflow;
    int e = vms_init(&c);
    ASSERT_EQ(e, 0);
}

/* Asserts that the mark m is within one page of the true depth d, and not below it. */
#define ASSERT_WITHIN_PAGE(m, d)                                                    \
    do {                                                                            \
        ASSERT_GE((m), (d));                                                        \
        ASSERT_LT((m), (d) + page());                                               \
    } while (0)

/* Depths of a 1 MiB stack that cover: nothing, the top page, page edges, deep pages,
 * and the bottom page (below END_CHECK's magic). */
static size_t depths[] = { 0, 1, 100, 4095, 4096, 4097, 3 * 4096 + 17, 10 * 4096,
                           100 * 4096 + 5, 255 * 4096 + 100, (1u << 20) - 32 };
#define NDEPTHS (sizeof depths / sizeof depths[0])

static void check_depths(unsigned char fill)
{
    for (size_t i = 0; i < NDEPTHS; i++) {
        vms_stack *st = vms_stack_alloc(1u << 20);
        ASSERT_NOT_NULL(st);
        ASSERT_EQ(vms_stack_size(st), 1u << 20);
        char *top = vms_stack_top(st);
        ASSERT_EQ(vms_stack_max_used(st), 0);
        size_t d = depths[i];
        /* Used as a stack is: every page from the top down to the depth (a frame that
         * skips more than a guard of untouched pages is out of contract anyway: it
         * would jump the guard too). */
        for (size_t t = page(); t < d; t += page()) top[-(ptrdiff_t)t] = (char)fill;
        if (d) top[-(ptrdiff_t)d] = (char)fill;
        size_t m = vms_stack_max_used(st);
        if (fill == 0 && d > 0 && d <= page()) {
            /* A zero written into the already-resident top page is indistinguishable
             * from the paint: the contract (within one page) still holds. */
            ASSERT_LT(m, page());
        } else {
            ASSERT_WITHIN_PAGE(m, d);
        }
        /* A shallower use later does not lower the mark. */
        top[-8] = 1;
        ASSERT_EQ(vms_stack_max_used(st), m > 8 ? m : 8);
        vms_stack_free(st);
    }
}

static void paint_depths_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT, 0);
    check_depths(0xa5);
}

TEST(paint_depths)
{
    run(paint_depths_child, NULL);
}

/* A zero written by the owner is still seen: the page it is in became resident. */
static void paint_zero_writes_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT, 0);
    check_depths(0);
}

TEST(paint_zero_writes)
{
    run(paint_zero_writes_child, NULL);
}

/* vms_stack_max_used is the deepest use however the stack was used: a single byte
 * written far below untouched pages counts (a raw stack poked through a pointer, say).
 * The scan at a task's end assumes use from the top down; this public call does not. It
 * reported 0 for one byte 150,000 bytes deep in a 256 KiB stack. Each stack is the
 * previous one's slot again (the per-thread cache is a LIFO), and reads as unused when
 * handed out: with VMS_NO_SCRUB its free must have counted that byte among the pages
 * the next hand-out repaints (the next owner got the previous owner's depth). The
 * histogram counts each stack at the depth vms_stack_max_used gave (it counted them all
 * as unused). */
static void paint_single_deep_byte_child(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    init_flags(VMS_PAINT | flags, 0);
    static const size_t sizes[] = { 256 * 1024, 4u << 20, 16u << 20 };
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        for (int i = 1; i <= 4; i++) {
            vms_stack *st = vms_stack_alloc(sizes[k]);
            ASSERT_NOT_NULL(st);
            ASSERT_EQ(vms_stack_max_used(st), 0);
            char *top = vms_stack_top(st);
            size_t d = sizes[k] / 5 * (size_t)i;
            top[-(ptrdiff_t)d] = 1;
            ASSERT_WITHIN_PAGE(vms_stack_max_used(st), d);
            vms_stack_free(st);
        }
    }
    vms_usage u[3];
    ASSERT_EQ(vms_stack_usage(u, 3), 3);
    for (size_t k = 0; k < 3; k++) {
        ASSERT_EQ(u[k].stack_size, sizes[k]);
        ASSERT_EQ(u[k].stacks, 4);
        ASSERT_WITHIN_PAGE(u[k].max_used, sizes[k] / 5 * 4);
        for (int i = 1; i <= 4; i++) {
            size_t pages = (sizes[k] / 5 * (size_t)i + page() - 1) / page();
            unsigned b = 0;
            while ((size_t)1 << b < pages) b++;
            ASSERT_GE(u[k].buckets[b], 1);
        }
    }
}

TEST(paint_single_deep_byte)
{
    unsigned flags = 0;
    run(paint_single_deep_byte_child, &flags);
}

TEST(paint_single_deep_byte_no_scrub)
{
    unsigned flags = VMS_NO_SCRUB;
    run(paint_single_deep_byte_child, &flags);
}

/* Stacks that come back from the cache read as unused, whether they were scrubbed
 * (default) or handed back with the old owner's data (VMS_NO_SCRUB, repainted). */
static void paint_reuse_child(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    init_flags(flags, 0);
    void *seen[64];
    int reused = 0;
    for (int i = 0; i < 64; i++) {
        vms_stack *st = vms_stack_alloc(256 * 1024);
        ASSERT_NOT_NULL(st);
        char *top = vms_stack_top(st);
        seen[i] = top;
        for (int j = 0; j < i; j++) reused += seen[j] == top;
        ASSERT_EQ(vms_stack_max_used(st), 0);
        size_t d = (size_t)(i % 8 + 1) * 20000;
        memset(top - d, 0x5a, d);      /* a whole used region, as a real task leaves */
        ASSERT_WITHIN_PAGE(vms_stack_max_used(st), d);
        vms_stack_free(st);
    }
    /* The test means something only if stacks were indeed handed out again. */
    ASSERT_GT(reused, 0);
}

TEST(paint_reuse_scrubbed)
{
    unsigned flags = VMS_PAINT;
    run(paint_reuse_child, &flags);
}

TEST(paint_reuse_no_scrub)
{
    unsigned flags = VMS_PAINT | VMS_NO_SCRUB;
    run(paint_reuse_child, &flags);
}

TEST(paint_reuse_no_scrub_end_check)
{
    unsigned flags = VMS_PAINT | VMS_NO_SCRUB | VMS_END_CHECK;
    run(paint_reuse_child, &flags);
}

/* When discarding fails, the cache zeroes the stacks by hand, which leaves every page of
 * them resident: the next owner must still find them unused, not used to the bottom. */
static void paint_reuse_discard_fails_child(void *arg)
{
#ifdef VMSTACK_FAULT_INJECTION
    vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
    paint_reuse_child(arg);
#else
    (void)arg;
#endif
}

TEST(paint_reuse_discard_fails)
{
    NEED_FAULT_INJECTION();
    unsigned flags = VMS_PAINT;
    run(paint_reuse_discard_fails_child, &flags);
    flags = VMS_PAINT | VMS_END_CHECK;
    run(paint_reuse_discard_fails_child, &flags);
}

/* A stack handed out with painted pages below its top page (with VMS_NO_SCRUB, the
 * pages the previous owner used; when discarding failed, every page) whose owner zeroes
 * a buffer of more than a guard's worth of those pages and uses the stack below it: a
 * zeroed local array is ordinary stack use, and the scan must go past it. */
static void paint_zero_run_child(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    init_flags(flags, 0);
#ifdef VMSTACK_FAULT_INJECTION
    if (!(flags & VMS_NO_SCRUB)) vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
#endif
    void *seen[64];
    int reused = 0;
    size_t d = 160000;
    for (int i = 0; i < 64; i++) {
        vms_stack *st = vms_stack_alloc(256 * 1024);
        ASSERT_NOT_NULL(st);
        char *top = vms_stack_top(st);
        seen[i] = top;
        for (int j = 0; j < i; j++) reused += seen[j] == top;
        ASSERT_EQ(vms_stack_max_used(st), 0);
        memset(top - page(), 0x5a, page());                /* the frames above it */
        memset(top - d + page(), 0, d - 2 * page());       /* the zeroed buffer */
        memset(top - d, 0x5a, page());                     /* the frames below it */
        ASSERT_WITHIN_PAGE(vms_stack_max_used(st), d);
        vms_stack_free(st);
    }
    ASSERT_GT(reused, 0);
}

TEST(paint_zero_run_no_scrub)
{
    unsigned flags = VMS_PAINT | VMS_NO_SCRUB;
    run(paint_zero_run_child, &flags);
}

TEST(paint_zero_run_discard_fails)
{
    NEED_FAULT_INJECTION();
    unsigned flags = VMS_PAINT;
    run(paint_zero_run_child, &flags);
}

/* With VMS_NO_SCRUB too, stacks that a failed discard left zeroed by hand (every page
 * resident) are handed out as unused: many freed at once, so that they overflow the
 * per-thread cache into a batch whose discard fails. */
static void paint_no_scrub_discard_fails_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT | VMS_NO_SCRUB, 0);
#ifdef VMSTACK_FAULT_INJECTION
    vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
#endif
    enum { N = 80 };
    static vms_stack *st[N];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < N; i++) {
            st[i] = vms_stack_alloc(256 * 1024);
            ASSERT_NOT_NULL(st[i]);
            ASSERT_EQ(vms_stack_max_used(st[i]), 0);
            char *top = vms_stack_top(st[i]);
            memset(top - 5000, 0x5a, 5000);
            ASSERT_WITHIN_PAGE(vms_stack_max_used(st[i]), 5000);
        }
        for (int i = 0; i < N; i++) vms_stack_free(st[i]);
    }
}

TEST(paint_no_scrub_discard_fails)
{
    NEED_FAULT_INJECTION();
    run(paint_no_scrub_discard_fails_child, NULL);
}

static int resident_pages(vms_stack *st);

/* With VMS_NO_SCRUB, stacks beyond the per-thread LIFO go through the cache's batch,
 * which drops their pages below the top one (and, with the end magic, above the bottom
 * one). Painting zeroes only what the cache kept: it used to zero every page the last
 * owner had used, faulting the dropped pages in again (16 faults and 64 KiB resident
 * per 64 KiB-deep stack, the cache's trimming undone). Each hand-out still reads as
 * unused, also after an owner that went down to the bottom page. */
static void paint_no_scrub_trimmed_child(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    vms_config c;
    memset(&c, 0, sizeof c);
    c.flags = VMS_PAINT | VMS_NO_SCRUB | flags;
    c.cache_per_thread = 1;
    ASSERT_EQ(vms_init(&c), 0);
    int magic = (flags & VMS_END_CHECK) ? 1 : 0;
    enum { N = 40 };
    static vms_stack *st[N];
    const size_t size = 256 * 1024, depths[] = { 64 * 1024, size - 64 };
    for (int round = 0; round < 4; round++) {
        int deep = 0;
        for (int i = 0; i < N; i++) {
            st[i] = vms_stack_alloc(size);
            ASSERT_NOT_NULL(st[i]);
            ASSERT_EQ(vms_stack_max_used(st[i]), 0);
            /* Kept whole: the one stack of this thread's LIFO. The others come from
             * the batch (their top page resident, with the magic their bottom one too)
             * or are new. */
            deep += resident_pages(st[i]) > 1 + magic;
        }
        ASSERT_LE(deep, 1);
        size_t d = depths[round % 2];
        for (int i = 0; i < N; i++) {
            char *top = vms_stack_top(st[i]);
            memset(top - d, 0x5a, d);
            ASSERT_WITHIN_PAGE(vms_stack_max_used(st[i]), d);
        }
        for (int i = 0; i < N; i++) vms_stack_free(st[i]);
    }
}

TEST(paint_no_scrub_trimmed)
{
    unsigned flags = 0;
    run(paint_no_scrub_trimmed_child, &flags);
    flags = VMS_END_CHECK;
    run(paint_no_scrub_trimmed_child, &flags);
}

static void paint_off_child(void *arg)
{
    (void)arg;
    init_flags(0, 0);
    vms_stack *st = vms_stack_alloc(0);
    ASSERT_NOT_NULL(st);
    char *top = vms_stack_top(st);
    memset(top - 50000, 1, 50000);
    ASSERT_EQ(vms_stack_max_used(st), 0);
    vms_stack_free(st);
    ASSERT_EQ(vms_stack_usage(NULL, 0), 0);
    /* No line either. */
    vms_stack *s2 = vms_stack_alloc(0);
    memset((char *)vms_stack_top(s2) - 50000, 1, 50000);
    struct vms__task_info ti = { VMS__TASK_FIBER, "quiet", 1, s2, 0 };
    vms__debug_task_end(&ti);
    vms_stack_free(s2);
}

TEST(paint_off)
{
    const char *o = run(paint_off_child, NULL);
    ASSERT_STR_NOT_CONTAINS(o, "greatest stack depth");
}

/* VMSTACK_PAINT=1 turns painting on without vms_init. */
static void paint_env_child(void *arg)
{
    (void)arg;
    setenv("VMSTACK_PAINT", "1", 1);
    check_depths(0x11);
}

TEST(paint_env)
{
    run(paint_env_child, NULL);
}

/* Painting is lazy: pages the owner never touched stay non-resident, also after the
 * high-water mark was read, and with the end magic (which costs the bottom page). */
static int resident_pages(vms_stack *st)
{
    long r = tst_resident_pages(vms_stack_base(st), vms_stack_size(st));
    ASSERT_GE(r, 0);
    return (int)r;
}

static void paint_lazy_child(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    init_flags(flags, 0);
    int magic = (flags & VMS_END_CHECK) ? 1 : 0;
    for (int round = 0; round < 40; round++) {   /* fresh and reused stacks */
        vms_stack *st = vms_stack_alloc(4u << 20);
        ASSERT_NOT_NULL(st);
        ASSERT_LE(resident_pages(st), 1 + magic);
        char *top = vms_stack_top(st);
        memset(top - 5 * page(), 7, 5 * page());
        ASSERT_WITHIN_PAGE(vms_stack_max_used(st), 5 * page());
        ASSERT_LE(resident_pages(st), 5 + magic);
        ASSERT_EQ(vms__debug_end_check(vms__stack_record(st)), 0);
        vms_stack_free(st);
    }
}

TEST(paint_lazy)
{
    unsigned flags = VMS_PAINT;
    run(paint_lazy_child, &flags);
}

TEST(paint_lazy_end_check)
{
    unsigned flags = VMS_PAINT | VMS_END_CHECK;
    run(paint_lazy_child, &flags);
}

/* The magic does not count as use; depths down to the bottom page are still exact. */
static void paint_end_check_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT | VMS_END_CHECK, 0);
    check_depths(0x77);
}

TEST(paint_with_end_check)
{
    run(paint_end_check_child, NULL);
}

/* ---- the histogram ---------------------------------------------------------------- */

static const vms_usage *find_size(const vms_usage *u, int n, size_t size)
{
    for (int i = 0; i < n; i++)
        if (u[i].stack_size == size) return &u[i];
    TST_FAIL("no histogram entry for stacks of %zu bytes", size);
}

static void usage_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT, 0);
    size_t p = page();
    /* The deepest 256 KiB use is not the last: max_used is the greatest depth, not the
     * latest. */
    struct { size_t size, depth; unsigned bucket; } uses[] = {
        { 256 * 1024, 0, 0 },        { 256 * 1024, 100, 0 },   { 256 * 1024, 20 * p, 5 },
        { 256 * 1024, p + 1, 1 },    { 256 * 1024, 3 * p, 2 }, { 1u << 20, 100 * p, 7 },
    };
    for (size_t i = 0; i < sizeof uses / sizeof uses[0]; i++) {
        vms_stack *st = vms_stack_alloc(uses[i].size);
        ASSERT_NOT_NULL(st);
        char *top = vms_stack_top(st);
        /* Every page from the top down to the depth, as a stack is used. */
        for (size_t t = p; t < uses[i].depth; t += p) top[-(ptrdiff_t)t] = 1;
        if (uses[i].depth) top[-(ptrdiff_t)uses[i].depth] = 1;
        vms_stack_free(st);
    }
    vms_usage u[VMS__CLASSES];
    int n = vms_stack_usage(u, VMS__CLASSES);
    ASSERT_GE(n, 2);
    ASSERT_EQ(vms_stack_usage(NULL, 0), n);
    ASSERT_EQ(vms_stack_usage(NULL, 1), -EINVAL);
    for (int i = 1; i < n; i++) ASSERT_LT(u[i - 1].stack_size, u[i].stack_size);

    const vms_usage *a = find_size(u, n, 256 * 1024);
    ASSERT_EQ(a->stacks, 5);
    ASSERT_WITHIN_PAGE(a->max_used, 20 * p);
    size_t want[VMS_USAGE_BUCKETS] = { 0 };
    for (size_t i = 0; i < 5; i++) want[uses[i].bucket]++;
    for (int b = 0; b < VMS_USAGE_BUCKETS; b++) ASSERT_EQ(a->buckets[b], want[b]);

    const vms_usage *big = find_size(u, n, 1u << 20);
    ASSERT_EQ(big->stacks, 1);
    ASSERT_EQ(big->buckets[7], 1);
    ASSERT_WITHIN_PAGE(big->max_used, 100 * p);

    /* A short array gets the smallest sizes and the full count. */
    vms_usage one;
    ASSERT_EQ(vms_stack_usage(&one, 1), n);
    ASSERT_EQ(one.stack_size, u[0].stack_size);
}

TEST(usage_histogram)
{
    run(usage_child, NULL);
}

/* vms_stack_usage beside a thread that frees a stack: what it reads is one state of
 * the histogram, its buckets adding up to its count and its greatest depth in its
 * deepest bucket. A free used to add to the three in separate atomic operations, which a
 * reader could see in between (beside two freeing threads, 102 of 196,532 reads on the
 * project's VM added up wrong). Here the freeing thread stops between its first and
 * second update (vms__debug_hist_hook) until the reader has begun its read and sleeps
 * (blocked on the histogram's lock); a reader that does not wait reads the count
 * without the bucket. */
static atomic_int hist_reader_tid;
static atomic_bool hist_in_hook, hist_reading;

/* On the freeing thread, between two updates. */
static void hist_hook(void)
{
    vms__debug_hist_hook = NULL;                 /* once */
    atomic_store(&hist_in_hook, true);
    while (!atomic_load(&hist_reading)) sched_yield();
    tst_wait_until_asleep(atomic_load(&hist_reader_tid));
}

static void *hist_freer(void *arg)
{
    (void)arg;
    vms_stack *st = vms_stack_alloc(256 * 1024);
    ASSERT_NOT_NULL(st);
    memset((char *)vms_stack_top(st) - 5 * page(), 1, 5 * page());   /* bucket 3 */
    vms__debug_hist_hook = hist_hook;
    vms_stack_free(st);
    return NULL;
}

static void check_usage_entry(const vms_usage *u)
{
    size_t sum = 0;
    int deepest = -1;
    for (int b = 0; b < VMS_USAGE_BUCKETS; b++) {
        sum += u->buckets[b];
        if (u->buckets[b]) deepest = b;
    }
    ASSERT_EQ(sum, u->stacks);
    ASSERT_GE(deepest, 0);
    ASSERT_LE(u->max_used, page() << deepest);
    if (deepest > 0) ASSERT_GT(u->max_used, page() << (deepest - 1));
}

static void usage_concurrent_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT, 0);
    atomic_store(&hist_reader_tid, tst_gettid());
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hist_freer, NULL), 0);
    while (!atomic_load(&hist_in_hook)) sched_yield();   /* the free is half done */
    atomic_store(&hist_reading, true);
    vms_usage u[2];
    ASSERT_EQ(vms_stack_usage(u, 2), 1);
    check_usage_entry(&u[0]);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(vms_stack_usage(u, 2), 1);
    ASSERT_EQ(u[0].stacks, 1);
    ASSERT_EQ(u[0].buckets[3], 1);
    check_usage_entry(&u[0]);
}

TEST(usage_histogram_concurrent)
{
    run(usage_concurrent_child, NULL);
}

/* A thread joined while another thread's reap has taken its grave off the list but not
 * yet freed its stacks: vms_get_stats and vms_stack_usage, called after the join, must
 * not count the thread's stack live (nor its depth missing from the histogram), as
 * docs/api.md promises. Their own reap finds no grave: they wait for the reap in flight.
 * The reap hook holds the reaper between the two steps until the reader waits for it (the
 * wait hook lets it go); a reader that does not wait reads in between. */
static atomic_int held_phase;          /* 1: in the reap hook; 3: reap done */
static atomic_bool held_release;

static void held_reap(void)
{
    atomic_store(&held_phase, 1);
    while (!atomic_load(&held_release)) sched_yield();
}

static void release_held_reap(void)
{
    atomic_store(&held_release, true);
}

static void *reap_held(void *arg)
{
    vms__stack_reap();
    atomic_store(&held_phase, 3);
    return arg;
}

static void *wait_sem(void *arg)
{
    while (sem_wait(arg) != 0) {}
    return NULL;
}

static size_t usage_total(void)
{
    vms_usage u[VMS__CLASSES];
    int n = vms_stack_usage(u, VMS__CLASSES);
    ASSERT_GE(n, 0);
    size_t sum = 0;
    for (int i = 0; i < n; i++) sum += u[i].stacks;
    return sum;
}

static void reader_waits_child(void *arg)
{
    bool usage = arg != NULL;
    init_flags(VMS_PAINT, 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live, used0 = usage_total();
    sem_t go;
    ASSERT_EQ(sem_init(&go, 0, 0), 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, wait_sem, &go), 0);
    sem_post(&go);                     /* ends after vms_thread_create's own reap */
    ASSERT_EQ(pthread_join(t, NULL), 0);
    vms__stack_reap_hook = held_reap;
    pthread_t r;
    ASSERT_EQ(pthread_create(&r, NULL, reap_held, NULL), 0);
    while (atomic_load(&held_phase) == 0) sched_yield();
    if (atomic_load(&held_phase) == 3) {
        pthread_join(r, NULL);
        SKIP("the thread left no grave (graves do not work here)");
    }
    /* The reaper can only finish once this thread waits for it: a bound for a reaper
     * that cannot finish, not for a slow one. */
    vms__stack_reap_wait_ns = 60 * 1000000000L;
    vms__stack_reap_wait_hook = release_held_reap;
    if (usage) {
        ASSERT_EQ(usage_total(), used0 + 1);   /* the body stack's depth */
    } else {
        ASSERT_EQ(vms_get_stats(&s), 0);
        ASSERT_EQ(s.stacks_live, live0);
    }
    vms__stack_reap_wait_hook = NULL;
    atomic_store(&held_release, true);
    ASSERT_EQ(pthread_join(r, NULL), 0);
    vms__stack_reap_hook = NULL;
    sem_destroy(&go);
}

TEST(stats_wait_for_a_reap_in_progress)
{
    run(reader_waits_child, NULL);
}

TEST(usage_waits_for_a_reap_in_progress)
{
    run(reader_waits_child, "usage");
}

/* ---- the "used greatest stack depth" line ------------------------------------------- */

static void task_end_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT, 0);
    size_t p = page();
    size_t depth[] = { 3 * p + 5, 2 * p, 7 * p + 1 };
    const char *names[] = { "worker", "shallow", "deep\nfake" };
    for (int i = 0; i < 3; i++) {
        vms_stack *st = vms_stack_alloc(256 * 1024);
        ASSERT_NOT_NULL(st);
        ((char *)vms_stack_top(st))[-(ptrdiff_t)depth[i]] = 1;
        struct vms__task_info ti = { i == 2 ? VMS__TASK_THREAD : VMS__TASK_FIBER, names[i],
                                     (unsigned long)(7 + i), vms__stack_record(st), 0 };
        vms__debug_task_end(&ti);
        /* The depth is final at task end: reading it again gives the same figure. */
        ASSERT_WITHIN_PAGE(vms_stack_max_used(st), depth[i]);
        vms_stack_free(st);
    }
    /* Freeing the stacks put the depths measured at task end into the histogram. */
    vms_usage u;
    ASSERT_EQ(vms_stack_usage(&u, 1), 1);
    ASSERT_EQ(u.stack_size, 256 * 1024);
    ASSERT_EQ(u.stacks, 3);
    ASSERT_EQ(u.max_used, 7 * p + 1);
    ASSERT_EQ(u.buckets[1], 1);   /* 2 pages: fits 2 pages */
    ASSERT_EQ(u.buckets[2], 1);   /* 3 pages + 5: fits 4 pages */
    ASSERT_EQ(u.buckets[3], 1);   /* 7 pages + 1: at most 8 pages */
}

TEST(task_end_line)
{
    const char *o = run(task_end_child, NULL);
    size_t p = page();
    char want[256];
    snprintf(want, sizeof want,
             "vmstack: fiber \"worker\" (id 7) used greatest stack depth: %zu bytes, "
             "%zu bytes left\n", 3 * p + 5, 256 * 1024 - (3 * p + 5));
    ASSERT_STR_CONTAINS(o, want);
    /* Not a new maximum: no line (as the kernel). */
    ASSERT_STR_NOT_CONTAINS(o, "shallow");
    /* A new maximum, a thread, and a name that cannot break the line. */
    snprintf(want, sizeof want,
             "vmstack: thread \"deep?fake\" (id 9) used greatest stack depth: %zu bytes, "
             "%zu bytes left\n", 7 * p + 1, 256 * 1024 - (7 * p + 1));
    ASSERT_STR_CONTAINS(o, want);
    ASSERT_EQ(tst_count(o, "greatest stack depth"), 2);
}

/* ---- the end magic --------------------------------------------------------------------- */

static void end_magic_child(void *arg)
{
    bool env = arg != NULL;
    if (env) setenv("VMSTACK_END_CHECK", "1", 1);
    else init_flags(VMS_END_CHECK, 0);
    for (int i = 0; i < 40; i++) {   /* fresh and reused stacks */
        vms_stack *st = vms_stack_alloc(0);
        ASSERT_NOT_NULL(st);
        /* The usable geometry does not change: the magic lives in the lowest 16 bytes. */
        ASSERT_EQ(vms_stack_size(st), 256 * 1024);
        uint64_t *w = vms_stack_base(st);
        ASSERT_UEQ(w[0], VMS__END_MAGIC);
        ASSERT_UEQ(w[1], VMS__END_MAGIC);
        ASSERT_EQ(vms__debug_end_check(vms__stack_record(st)), 0);
        /* Any bit of either word. */
        unsigned char *b = vms_stack_base(st);
        for (int k = 0; k < 16; k++) {
            b[k] ^= (unsigned char)(1u << (k % 8));
            ASSERT_EQ(vms__debug_end_check(vms__stack_record(st)), -1);
            b[k] ^= (unsigned char)(1u << (k % 8));
            ASSERT_EQ(vms__debug_end_check(vms__stack_record(st)), 0);
        }
        /* The byte just above is the task's own. */
        b[16] = 0xff;
        ASSERT_EQ(vms__debug_end_check(vms__stack_record(st)), 0);
        ASSERT_EQ(vms__debug_end_reserve(), 16);
        vms_stack_free(st);
    }
}

TEST(end_magic)
{
    run(end_magic_child, NULL);
}

TEST(end_magic_env)
{
    run(end_magic_child, "env");
}

static void end_magic_off_child(void *arg)
{
    (void)arg;
    init_flags(0, 0);
    vms_stack *st = vms_stack_alloc(0);
    ASSERT_NOT_NULL(st);
    uint64_t *w = vms_stack_base(st);
    ASSERT_UEQ(w[0], 0);             /* nothing written without the flag */
    w[0] = 12345;
    ASSERT_EQ(vms__debug_end_check(vms__stack_record(st)), 0);
    ASSERT_EQ(vms__debug_end_reserve(), 0);
    vms_stack_free(st);
}

TEST(end_magic_off)
{
    run(end_magic_off_child, NULL);
}

static void end_corrupted_child(void *arg)
{
    int policy = *(int *)arg;
    init_flags(VMS_END_CHECK, policy);
    vms_stack *st = vms_stack_alloc(0);
    ASSERT_NOT_NULL(st);
    /* An overrun from above reaches the upper word first. */
    ((uint64_t *)vms_stack_base(st))[1] = 0x4141414141414141ull;
    ASSERT_EQ(vms__debug_end_check(vms__stack_record(st)), -1);
    struct vms__task_info ti = { VMS__TASK_FIBER, "victim", 3, vms__stack_record(st), 0 };
    vms__debug_end_corrupted(&ti, vms__stack_record(st), NULL);
    /* Only the kill policy returns here; the caller then kills the task. */
    ASSERT_EQ(policy, VMS_KILL_TASK);
    fprintf(stderr, "returned\n");
}

static void check_corrupted_line(const char *o)
{
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in fiber \"victim\" (id 3) "
                           "on thread ");
    ASSERT_STR_CONTAINS(o, "end word 0x4141414141414141 (expected 0x57ac6e9d57ac6e9d)\n");
    ASSERT_STR_CONTAINS(o, ": stack [0x");
}

TEST(end_corrupted_kill)
{
    int policy = VMS_KILL_TASK;
    const char *o = run(end_corrupted_child, &policy);
    check_corrupted_line(o);
    ASSERT_STR_CONTAINS(o, "vmstack: killed fiber \"victim\" (id 3); other tasks continue\n");
    ASSERT_STR_CONTAINS(o, "returned");
}

TEST(end_corrupted_abort)
{
    int policy = VMS_ABORT;
    int st = tst_fork(end_corrupted_child, &policy, out, sizeof out);
    ASSERT_SIGNALED(st, SIGSEGV);
    check_corrupted_line(out);
    ASSERT_STR_CONTAINS(out, "vmstack: aborting\n");
    ASSERT_STR_NOT_CONTAINS(out, "returned");
}

/* ---- real tasks ------------------------------------------------------------------------ */

/* A fiber that recurses through frames of about 1 KiB and records how deep it got. */
struct dive { int levels; size_t deepest; char *top; };

static __attribute__((noinline)) int recurse(struct dive *d, int n)
{
    volatile char frame[1000];
    frame[0] = (char)(n + 1);   /* non-zero: a zero in the top page looks like paint */
    frame[999] = (char)(n + 1);
    size_t depth = (size_t)(d->top - (char *)(void *)frame);
    if (depth > d->deepest) d->deepest = depth;
    if (n == 0) vms_fiber_yield();   /* suspended at the deepest point */
    return n ? recurse(d, n - 1) + frame[0] : frame[999];
}

static void dive_fn(void *arg)
{
    struct dive *d = arg;
    d->top = vms_stack_top(vms_fiber_stack(vms_fiber_self()));
    recurse(d, d->levels);
}

static void fiber_depth_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT, 0);
    int levels[] = { 1, 10, 50, 150 };
    for (int i = 0; i < 4; i++) {
        struct dive d = { levels[i], 0, NULL };
        vms_fiber_attr attr = { 256 * 1024, "diver" };
        vms_fiber *f = vms_fiber_create(dive_fn, &d, &attr);
        ASSERT_NOT_NULL(f);
        ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
        /* Read while the fiber is suspended (its frames live, with their redzones under
         * ASan), then after it finished: a high-water mark never goes down (it may go
         * up: the way out, and ASan's fiber-switch hooks, run after the first read). */
        size_t during = vms_stack_max_used(vms_fiber_stack(f));
        ASSERT_GE(during, d.deepest);
        ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
        size_t m = vms_stack_max_used(vms_fiber_stack(f));
        ASSERT_LE(during, m);
        /* At least as deep as the deepest frame seen, and at most a page and a frame
         * (the callee's saved registers and return address) deeper. */
        ASSERT_GE(m, d.deepest);
        ASSERT_LT(m, d.deepest + page() + 256);
        ASSERT_GE(d.deepest, (size_t)levels[i] * 1000);
        vms_fiber_destroy(f);
    }
}

TEST(fiber_depth)
{
    run(fiber_depth_child, NULL);
}
