/*
 * trim.c - vms_trim: the memory of idle stacks goes back to the kernel at once (the
 * calling thread's dirty batch and per-thread cache, the shared lists' warm top pages,
 * the stacks of ended threads), what comes back out of the cache afterwards is scrubbed
 * and guarded as ever, and a kernel that refuses the discard gets a clear error.
 */
#include "test.h"
#include "internal.h"

#include <alloca.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#ifdef VMSTACK_VALGRIND
#include <valgrind/memcheck.h>
#endif

#define DEPTH (128 * 1024)   /* how deep each owner writes: half a default stack */
#define NSTACKS 16           /* fewer than a scrubbing batch (32): none scrubbed yet */

/* vmstack's resident bytes, counted without a reap (vms_get_stats would reap). */
static size_t resident_now(void)
{
    size_t arenas, reserved, mappings, resident;
    vms__arena_totals(&arenas, &reserved, &mappings, &resident);
    return resident;
}

/* resident_now() where pages are known to be resident: skips the case where none is
 * counted (qemu-user's mincore says so). */
static size_t resident_touched(void)
{
    size_t r = resident_now();
    if (r == 0) SKIP("vmstack counts no resident page here (qemu-user)");
    return r;
}

static const char SECRET[] = "vmstack-trim-secret";

/* Writes the secret every 1 KiB over the top DEPTH bytes of st, as a deep owner would. */
static void use_deeply(vms_stack *st)
{
    char *top = vms_stack_top(st);
    for (size_t off = sizeof SECRET; off <= DEPTH; off += 1024)
        memcpy(top - off, SECRET, sizeof SECRET);
}

static bool has_secret(vms_stack *st)
{
#ifdef VMSTACK_VALGRIND
    /* Reading what a previous owner left is the point here, not a bug. */
    (void)VALGRIND_MAKE_MEM_DEFINED(vms_stack_base(st), vms_stack_size(st));
#endif
    return memmem(vms_stack_base(st), vms_stack_size(st), SECRET, sizeof SECRET - 1) != NULL;
}

/* Whether the kernel cannot read the byte at addr (a signal-free probe). */
static __attribute__((unused)) bool no_access(const void *addr)
{
#ifdef VMSTACK_VALGRIND
    VALGRIND_DISABLE_ERROR_REPORTING;   /* an inaccessible address, on purpose */
#endif
    int r = vms__os_probe_noaccess(addr);
#ifdef VMSTACK_VALGRIND
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
    if (r < 0) TST_FAIL("probe failed: %s", strerror(-r));
    return r == 1;
}

/* Allocates, uses deeply and frees NSTACKS stacks on the calling thread. */
static void free_deep_stacks(void)
{
    vms_stack *s[NSTACKS];
    for (int i = 0; i < NSTACKS; i++) {
        s[i] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(s[i]);
        use_deeply(s[i]);
    }
    for (int i = 0; i < NSTACKS; i++) vms_stack_free(s[i]);
}

/* NSTACKS stacks from the cache: none shows a previous owner's data, and each is usable
 * to its base and guarded below it. */
static void reuse_is_scrubbed_and_guarded(void)
{
    vms_stack *s[NSTACKS];
    for (int i = 0; i < NSTACKS; i++) {
        s[i] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(s[i]);
        if (has_secret(s[i])) TST_FAIL("stack %d shows its previous owner's data", i);
        char *base = vms_stack_base(s[i]);
        base[0] = 1;
#ifdef VMSTACK_VMAP
        if (!no_access(base - 1)) TST_FAIL("stack %d: the byte below its base is readable", i);
#endif
    }
    for (int i = 0; i < NSTACKS; i++) vms_stack_free(s[i]);
}

TEST(before_first_use_does_nothing)
{
    ASSERT_EQ(vms_trim(), 0);
    /* vmstack was not initialized for it: vms_init still may configure it. */
    vms_config c;
    memset(&c, 0, sizeof c);
    ASSERT_EQ(vms_init(&c), 0);
    ASSERT_EQ(vms_trim(), 0);
}

TEST(gives_back_the_calling_threads_freed_stacks)
{
    free_deep_stacks();
    size_t before = resident_touched();
    ASSERT_EQ(vms_trim(), 0);
    size_t after = resident_now();
    /* Everything the owners touched went back, top pages included. */
    ASSERT_LE(after + (size_t)NSTACKS * DEPTH, before);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    reuse_is_scrubbed_and_guarded();
}

static void *free_deep_stacks_thread(void *arg)
{
    free_deep_stacks();
    vms__cache_flush_thread();   /* as at its exit: its cache to the shared lists */
    return arg;
}

TEST(drops_the_warm_top_pages_of_the_shared_lists)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, free_deep_stacks_thread, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    /* The other thread's stacks were scrubbed at its exit, their top pages kept warm. */
    ASSERT_GE(vms__cache_shared_warm_listed(), NSTACKS);
    size_t before = resident_touched();
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    ASSERT_EQ(vms__cache_shared_warm(), 0);
    ASSERT_LE(resident_now() + (size_t)NSTACKS * vms__os_page_size(), before);
    reuse_is_scrubbed_and_guarded();
}

TEST(with_no_scrub_drops_what_the_owners_left)
{
    vms_config c;
    memset(&c, 0, sizeof c);
    c.flags = VMS_NO_SCRUB;
    ASSERT_EQ(vms_init(&c), 0);
    /* Without scrubbing, freed stacks wait in the per-thread cache (8) as their owners
     * left them, the rest in the batch. */
    free_deep_stacks();
    size_t before = resident_touched();
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_LE(resident_now() + (size_t)NSTACKS * DEPTH, before);
}

static sem_t go;

static void *deep_thread(void *arg)
{
    (void)arg;
    /* Ends after its creator's reap in vms_thread_create: its grave waits. */
    while (sem_wait(&go) != 0) {}
    volatile char *p = alloca(DEPTH);
    for (size_t i = 0; i < DEPTH; i += 1024) p[i] = 1;
    return (void *)(uintptr_t)p[0];
}

TEST(reaps_the_stacks_of_ended_threads)
{
    int e = vms__os_robust_list_works();
    if (e) SKIP("the kernel keeps no robust-futex list here (%s): threads free their stacks "
                "at their end, no grave waits", strerror(-e));
    ASSERT_EQ(sem_init(&go, 0, 0), 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, deep_thread, NULL), 0);
    ASSERT_EQ(sem_post(&go), 0);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)1);
    ASSERT_EQ(vms__stack_graves(), 1);
    size_t before = resident_touched();
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__stack_graves(), 0);
    ASSERT_LE(resident_now() + DEPTH, before);
}

TEST(a_refused_discard_is_an_error)
{
    NEED_FAULT_INJECTION();
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, free_deep_stacks_thread, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    size_t warm = vms__cache_shared_warm_listed();
    ASSERT_GE(warm, NSTACKS);
    vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
    ASSERT_EQ(vms_trim(), -EIO);
    vms__os_inject_clear();
    /* The stacks stay as they were: warm, counted, scrubbed. */
    ASSERT_EQ(vms__cache_shared_warm_listed(), warm);
    ASSERT_EQ(vms__cache_shared_warm(), warm);
    reuse_is_scrubbed_and_guarded();
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
}

/* A discard refused for one stack only (an mlock'd one: EINVAL) leaves that one warm and
 * drops the others: a refusal used to keep every stack of its system call's batch warm
 * (the call stops at the range it refuses). */
static char *deep_bases[NSTACKS];
static size_t deep_size;

static void *free_deep_stacks_noted(void *arg)
{
    vms_stack *s[NSTACKS];
    for (int i = 0; i < NSTACKS; i++) {
        s[i] = vms_stack_alloc(0);
        if (!s[i]) return NULL;
        deep_bases[i] = vms_stack_base(s[i]);
        deep_size = vms_stack_size(s[i]);
        use_deeply(s[i]);
    }
    for (int i = 0; i < NSTACKS; i++) vms_stack_free(s[i]);
    vms__cache_flush_thread();   /* as at its exit: its cache to the shared lists */
    return arg;
}

TEST(a_discard_refused_for_one_stack_keeps_only_it_warm)
{
    pthread_t t;
    void *r = NULL;
    ASSERT_EQ(pthread_create(&t, NULL, free_deep_stacks_noted, (void *)1), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_NOT_NULL(r);
    size_t warm = vms__cache_shared_warm_listed();
    ASSERT_GE(warm, NSTACKS);
    size_t size = deep_size, page = vms__os_page_size();
    if (tst_mlock(deep_bases[0], size) != 0) SKIP("mlock: %s", strerror(errno));
    int e = vms_trim();
    size_t left = vms__cache_shared_warm_listed(), counted = vms__cache_shared_warm();
    size_t others = 0;
    unsigned char *vec = malloc(size / page);
    ASSERT_NOT_NULL(vec);
    for (int i = 1; i < NSTACKS; i++) {
        ASSERT_EQ(mincore(deep_bases[i], size, vec), 0);
        for (size_t k = 0; k < size / page; k++) others += vec[k] & 1;
    }
    free(vec);
    ASSERT_EQ(tst_munlock(deep_bases[0], size), 0);
    ASSERT_EQ(e, -EINVAL);
    ASSERT_EQ(left, 1);
    ASSERT_EQ(counted, 1);
    ASSERT_EQ(others, 0);
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    reuse_is_scrubbed_and_guarded();
}

/* Trims while other threads allocate, use and free stacks (and exit, handing their caches
 * to the shared lists): no stack is handed out twice (each owner finds its own mark at
 * the end of its use; the double-free check and ThreadSanitizer watch the rest), and at
 * the end nothing is live. */
#define CHURNERS 2
static atomic_int churn_stop;

static void *churn(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    vms_stack *mine[8];
    for (unsigned round = 0; !atomic_load(&churn_stop) || round < 100; round++) {
        unsigned k = 1 + round % 8;
        for (unsigned i = 0; i < k; i++) {
            mine[i] = vms_stack_alloc(0);
            if (!mine[i]) return NULL;
            ((uintptr_t *)vms_stack_top(mine[i]))[-1] = id << 32 | round << 8 | i;
        }
        for (unsigned i = 0; i < k; i++) {
            if (((uintptr_t *)vms_stack_top(mine[i]))[-1] != (id << 32 | round << 8 | i))
                return NULL;
            vms_stack_free(mine[i]);
        }
    }
    return arg;
}

TEST(while_other_threads_allocate_and_free)
{
    pthread_t t[CHURNERS];
    for (int round = 0; round < 4; round++) {
        atomic_store(&churn_stop, 0);
        for (uintptr_t i = 0; i < CHURNERS; i++)
            ASSERT_EQ(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
        for (int i = 0; i < 200; i++) ASSERT_EQ(vms_trim(), 0);
        atomic_store(&churn_stop, 1);
        for (uintptr_t i = 0; i < CHURNERS; i++) {
            void *r;
            ASSERT_EQ(pthread_join(t[i], &r), 0);
            ASSERT_PTR_EQ(r, (void *)(i + 1));
        }
    }
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, 0);
}
