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

/* The deep stacks another thread freed (free_deep_stacks_thread, recorded): warm in the
 * shared list of their class at its end. */
static void *deep_bases[NSTACKS];
static size_t deep_size;
static unsigned deep_cls;

static void *free_recorded_deep_stacks_thread(void *arg)
{
    vms_stack *s[NSTACKS];
    for (int i = 0; i < NSTACKS; i++) {
        if (!(s[i] = vms_stack_alloc(0))) return (void *)-1;
        use_deeply(s[i]);
        deep_bases[i] = vms_stack_base(s[i]);
        deep_size = vms_stack_size(s[i]);
    }
    struct vms__where w;
    if (vms__arena_where(deep_bases[0], &w) != VMS__WHERE_STACK) return (void *)-1;
    deep_cls = w.st->cls;
    for (int i = 0; i < NSTACKS; i++) vms_stack_free(s[i]);
    vms__cache_flush_thread();   /* as at its exit: its cache to the shared lists */
    return arg;
}

static void warm_deep_stacks(void)
{
    pthread_t t;
    void *r;
    ASSERT_EQ(pthread_create(&t, NULL, free_recorded_deep_stacks_thread, NULL), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, NULL);
    ASSERT_GE(vms__cache_shared_warm_listed(), NSTACKS);
}

/* A discard refused for one stack only (an mlock'd one: EINVAL) leaves that one warm and
 * drops the others: a refusal used to keep every stack of its system call's batch warm
 * (the call stops at the range it refuses). */
TEST(a_discard_refused_for_one_stack_keeps_only_it_warm)
{
    warm_deep_stacks();
    size_t size = deep_size;
    if (tst_mlock(deep_bases[0], size) != 0) SKIP("mlock: %s", strerror(errno));
    int e = vms_trim();
    size_t left = vms__cache_shared_warm_listed(), counted = vms__cache_shared_warm();
    long others = 0;
    for (int i = 1; i < NSTACKS; i++) {
        long r = tst_resident_pages(deep_bases[i], size);
        ASSERT_GE(r, 0);
        others += r;
    }
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

/* The same with two threads trimming at once, each while the other has stacks in hand
 * at times. */
static void *trims_200(void *arg)
{
    for (int i = 0; i < 200; i++)
        if (vms_trim() != 0) return NULL;
    return arg;
}

TEST(two_threads_trim_while_others_allocate_and_free)
{
    pthread_t t[CHURNERS], u;
    for (int round = 0; round < 4; round++) {
        atomic_store(&churn_stop, 0);
        for (uintptr_t i = 0; i < CHURNERS; i++)
            ASSERT_EQ(pthread_create(&t[i], NULL, churn, (void *)(i + 1)), 0);
        ASSERT_EQ(pthread_create(&u, NULL, trims_200, (void *)1), 0);
        for (int i = 0; i < 200; i++) ASSERT_EQ(vms_trim(), 0);
        void *r;
        ASSERT_EQ(pthread_join(u, &r), 0);
        ASSERT_PTR_EQ(r, (void *)1);
        atomic_store(&churn_stop, 1);
        for (uintptr_t i = 0; i < CHURNERS; i++) {
            ASSERT_EQ(pthread_join(t[i], &r), 0);
            ASSERT_PTR_EQ(r, (void *)(i + 1));
        }
    }
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    ASSERT_EQ(vms__cache_shared_warm(), 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, 0);
}

/* ---- the discards without the list's lock --------------------------------------------
 * vms_trim takes a list's warm stacks out under its lock and drops them without it
 * (vms__cache_trim_hook runs in between, on the trimming thread): meanwhile other
 * threads allocate and free that size, fork, and trim, without waiting for it. Every
 * wait below is bounded (STAGE_WAIT_S): a wait that would hang without the change fails
 * the case instead. */
#define STAGE_WAIT_S 60

static pthread_mutex_t stage_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t stage_cond = PTHREAD_COND_INITIALIZER;
static int stage;

static void stage_set(int s)
{
    pthread_mutex_lock(&stage_lock);
    stage = s;
    pthread_cond_broadcast(&stage_cond);
    pthread_mutex_unlock(&stage_lock);
}

/* Waits until the stage is at least s, at most STAGE_WAIT_S seconds: false when it
 * was not reached by then. */
static bool stage_wait(int s)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += STAGE_WAIT_S;
    pthread_mutex_lock(&stage_lock);
    int e = 0;
    while (stage < s && e != ETIMEDOUT)
        e = pthread_cond_timedwait(&stage_cond, &stage_lock, &until);
    bool reached = stage >= s;
    pthread_mutex_unlock(&stage_lock);
    return reached;
}

/* The hook: on the trimming thread, for the deep stacks' list, once. */
static pthread_t trimmer;
static atomic_bool hook_armed;
static void (*in_hook)(void);

static void trim_hook(unsigned cls)
{
    if (cls != deep_cls || !pthread_equal(pthread_self(), trimmer)) return;
    if (!atomic_exchange(&hook_armed, false)) return;
    in_hook();
}

/* Nothing is lost or doubled: after a trim, every warm stack counted is in a list (none
 * left), no stack is live, and the deep stacks come out of the cache again, each once,
 * scrubbed and guarded. */
static void check_settled(void)
{
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    ASSERT_EQ(vms__cache_shared_warm(), 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, 0);
    reuse_is_scrubbed_and_guarded();
}

/* Allocates stacks until each deep stack came out (at most 400); fails on a stack handed
 * out twice or one that does not come back, and when the statistics disagree. Frees
 * them. For a fork child too (exits on failure, as TST_FAIL does). */
#define MAX_ALLOCS 400
static void deep_stacks_come_back_once(void)
{
    static vms_stack *st[MAX_ALLOCS];
    static void *bases[MAX_ALLOCS];
    int n = 0, found = 0;
    ASSERT_EQ(vms_trim(), 0);   /* this thread's cache, dirty batch too, to the lists */
    while (n < MAX_ALLOCS && found < NSTACKS) {
        st[n] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(st[n]);
        bases[n] = vms_stack_base(st[n]);
        for (int k = 0; k < NSTACKS; k++) found += bases[n] == deep_bases[k];
        n++;
    }
    ASSERT_EQ(tst_distinct(bases, n), n);
    if (found != NSTACKS) TST_FAIL("%d of the %d deep stacks came back in %d allocations",
                                   found, NSTACKS, n);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, n);
    for (int i = 0; i < n; i++) vms_stack_free(st[i]);
    ASSERT_EQ(vms__cache_shared_warm(), vms__cache_shared_warm_listed());
}

/* The hook of the cases below: stage 1, the trim has the stacks in hand; it waits for
 * stage 2, the other thread's part done (an allocation, a fork, a trim). */
static atomic_bool hook_waited_in_vain;

static void hold_for_stage_2(void)
{
    stage_set(1);
    if (!stage_wait(2)) atomic_store(&hook_waited_in_vain, true);
}

static void *allocates_during_the_discard(void *arg)
{
    (void)arg;
    if (!stage_wait(1)) return (void *)1;
    vms_stack *st = vms_stack_alloc(0);
    if (!st) return (void *)2;
    ((volatile char *)vms_stack_top(st))[-1] = 1;
    vms_stack_free(st);
    stage_set(2);
    return NULL;
}

/* Before, the trim held the list's lock over the discards: the other thread's
 * allocation (from that list, or new slots filed there) waited for the whole trim, and
 * the hook's wait for it ran out. */
TEST(allocation_during_the_discard_does_not_wait)
{
    warm_deep_stacks();
    trimmer = pthread_self();
    in_hook = hold_for_stage_2;
    atomic_store(&hook_armed, true);
    vms__cache_trim_hook = trim_hook;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, allocates_during_the_discard, NULL), 0);
    ASSERT_EQ(vms_trim(), 0);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    vms__cache_trim_hook = NULL;
    ASSERT(!atomic_load(&hook_armed));   /* the hook ran */
    if (atomic_load(&hook_waited_in_vain))
        TST_FAIL("another thread's allocation of the size being trimmed waited for the "
                 "discards (%d s)", STAGE_WAIT_S);
    ASSERT_PTR_EQ(r, NULL);
    check_settled();
    deep_stacks_come_back_once();
}

/* A fork while another thread's trim has stacks in hand: the child files them back (they
 * come out of its cache again, each once, its counts agree), and so does the parent's
 * trim. Before the change the fork waited for the trim, and the hook's wait ran out. */
static void *trims(void *arg)
{
    (void)arg;
    trimmer = pthread_self();
    return (void *)(intptr_t)vms_trim();
}

static void child_after_fork_in_trim(void *arg)
{
    (void)arg;
    ASSERT_EQ(vms__cache_shared_warm(), vms__cache_shared_warm_listed());
    deep_stacks_come_back_once();
    ASSERT_EQ(vms_trim(), 0);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    ASSERT_EQ(vms__cache_shared_warm(), 0);
    printf("child done\n");
}

TEST(fork_during_the_discard_child_keeps_the_stacks)
{
    warm_deep_stacks();
    in_hook = hold_for_stage_2;
    atomic_store(&hook_armed, true);
    vms__cache_trim_hook = trim_hook;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, trims, NULL), 0);
    bool in_discard = stage_wait(1);
    char out[4096];
    if (in_discard) tst_run_ok(child_after_fork_in_trim, NULL, out, sizeof out);
    stage_set(2);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    vms__cache_trim_hook = NULL;
    if (!in_discard) TST_FAIL("the trim did not reach its discards (%d s)", STAGE_WAIT_S);
    if (atomic_load(&hook_waited_in_vain))
        TST_FAIL("the fork waited for the discards (%d s)", STAGE_WAIT_S);
    ASSERT_PTR_EQ(r, NULL);
    check_settled();
    deep_stacks_come_back_once();
}

/* A fork from the trimming thread itself, in the middle of the trim (as a signal
 * handler's would be): the child goes on with the trim and files the stacks in hand
 * itself, so its fork handler must not file them too (each would be in a list twice,
 * handed out twice). */
static pid_t trim_child;

static void fork_here(void)
{
    fflush(NULL);
    trim_child = fork();
    if (trim_child < 0) TST_FAIL("fork: %s", strerror(errno));
}

TEST(fork_from_the_trimming_thread_child_files_the_stacks_once)
{
    warm_deep_stacks();
    trimmer = pthread_self();
    in_hook = fork_here;
    atomic_store(&hook_armed, true);
    vms__cache_trim_hook = trim_hook;
    int e = vms_trim();
    vms__cache_trim_hook = NULL;
    if (trim_child == 0) {
        /* The child: its trim went on after the fork. */
        ASSERT_EQ(e, 0);
        check_settled();
        deep_stacks_come_back_once();
        fflush(NULL);
        _exit(0);
    }
    ASSERT_EQ(e, 0);
    int status = 0;
    while (waitpid(trim_child, &status, 0) < 0 && errno == EINTR) {}
    ASSERT_EXITED(status, 0);
    check_settled();
    deep_stacks_come_back_once();
}

/* The same fork once the trim has dropped its batch and marked it cold, before filing it
 * back (a signal handler's fork can come there too): the child's count of the warm
 * budget must keep the stacks in hand, which its trim, going on, gives back as it files
 * them. It counted only those still marked warm (none here), and its trim then gave back
 * the budget of all 16 again: the count fell up to 16 below the warm stacks in the lists
 * (the budget of 1,024 exceeded by as many), unless the clamp at 0 absorbed it. */
static size_t child_counted, child_listed;

static void fork_after_the_drop(unsigned cls)
{
    if (cls != deep_cls || !pthread_equal(pthread_self(), trimmer)) return;
    if (!atomic_exchange(&hook_armed, false)) return;
    fork_here();
    if (trim_child == 0) {
        child_counted = vms__cache_shared_warm();
        child_listed = vms__cache_shared_warm_listed();
    }
}

TEST(fork_from_the_trimming_thread_after_the_drop_keeps_the_budget_counted)
{
    warm_deep_stacks();
    trimmer = pthread_self();
    atomic_store(&hook_armed, true);
    vms__cache_trim_dropped_hook = fork_after_the_drop;
    int e = vms_trim();
    vms__cache_trim_dropped_hook = NULL;
    if (trim_child == 0) {
        /* The child: at the fork, its 16 stacks in hand were counted besides the lists'. */
        printf("child: warm %zu counted, %zu in the lists at the fork\n", child_counted,
               child_listed);
        ASSERT_EQ(e, 0);
        ASSERT_EQ(child_counted, child_listed + NSTACKS);
        check_settled();
        fflush(NULL);
        _exit(0);
    }
    ASSERT(!atomic_load(&hook_armed));   /* the hook ran */
    ASSERT_EQ(e, 0);
    int status = 0;
    while (waitpid(trim_child, &status, 0) < 0 && errno == EINTR) {}
    ASSERT_EXITED(status, 0);
    check_settled();
}

/* Two trims at once: one holds its stacks in hand; the other, on this thread, drops what
 * it finds in the lists (other stacks freed since) without waiting for the first, and
 * the first's stacks keep their budget until they are filed cold. */
TEST(two_trims_at_once)
{
    warm_deep_stacks();
    in_hook = hold_for_stage_2;
    atomic_store(&hook_armed, true);
    vms__cache_trim_hook = trim_hook;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, trims, NULL), 0);
    bool in_discard = stage_wait(1);
    if (in_discard) {
        /* More warm stacks of the same size, from another thread. */
        pthread_t u;
        ASSERT_EQ(pthread_create(&u, NULL, free_deep_stacks_thread, NULL), 0);
        ASSERT_EQ(pthread_join(u, NULL), 0);
        ASSERT_GE(vms__cache_shared_warm_listed(), NSTACKS);
        size_t before = resident_now();
        ASSERT_EQ(vms_trim(), 0);
        if (atomic_load(&hook_waited_in_vain))
            TST_FAIL("the second trim waited for the first (%d s)", STAGE_WAIT_S);
        ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
        /* The first trim's stacks, still in hand and warm, hold their budget. */
        ASSERT_GE(vms__cache_shared_warm(), NSTACKS);
        if (before) ASSERT_LE(resident_now() + (size_t)NSTACKS * vms__os_page_size(), before);
    }
    stage_set(2);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    vms__cache_trim_hook = NULL;
    if (!in_discard) TST_FAIL("the trim did not reach its discards (%d s)", STAGE_WAIT_S);
    if (atomic_load(&hook_waited_in_vain))
        TST_FAIL("the second trim waited for the first (%d s)", STAGE_WAIT_S);
    ASSERT_PTR_EQ(r, NULL);
    ASSERT_EQ(vms__cache_shared_warm_listed(), 0);
    ASSERT_EQ(vms__cache_shared_warm(), 0);
    check_settled();
    deep_stacks_come_back_once();
}
