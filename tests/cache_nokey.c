/*
 * cache_nokey.c - vmstack when the process has no thread-specific-data key left for it
 * (pthread_key_create: EAGAIN at PTHREAD_KEYS_MAX). It then has no thread-exit hook:
 * threads must get no per-thread cache (whose stacks would be lost at their exit), the
 * stacks they free must come back to others, vmstack must never store into a key it
 * did not get (key 0 is someone else's), and it says so once. A program of its own:
 * every case exhausts the keys in a child before vmstack initializes.
 */
#include "internal.h"
#include "test.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <vmstack.h>

#if defined(TST_ASAN) || defined(TST_TSAN)
#define SKIP_IF_SANITIZED() SKIP("the sanitizer's runtime needs thread-specific keys of its own")
#else
#define SKIP_IF_SANITIZED() do {} while (0)
#endif

static pthread_key_t first_key;          /* the program's: vmstack must not touch it */
static atomic_int first_key_dtor_calls;

static void first_key_dtor(void *p)
{
    (void)p;
    atomic_fetch_add(&first_key_dtor_calls, 1);
}

/* Takes every key there is; the first one with a destructor that counts its calls. */
static int exhaust_keys(void)
{
    if (pthread_key_create(&first_key, first_key_dtor) != 0) exit(90);
    int n = 1;
    pthread_key_t k;
    while (pthread_key_create(&k, NULL) == 0) n++;
    return n;
}

enum { THREADS = 40, PER_THREAD = 4 };
static void *bases[THREADS * PER_THREAD];
static void *alts[THREADS];
static atomic_int clobbered;

static void *alloc_free_thread(void *arg)
{
    void **mine = &bases[(intptr_t)arg * PER_THREAD];
    vms_stack *s[PER_THREAD];
    for (int i = 0; i < PER_THREAD; i++) {
        s[i] = vms_stack_alloc(0);
        if (!s[i]) return NULL;
        mine[i] = vms_stack_base(s[i]);
        memset(mine[i], 0x5a, 64);   /* used a little */
    }
    for (int i = 0; i < PER_THREAD; i++) vms_stack_free(s[i]);
    if (pthread_getspecific(first_key)) atomic_fetch_add(&clobbered, 1);
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        alts[(intptr_t)arg] = cur.ss_sp;
    return mine;
}

/* THREADS threads, one after another, each running alloc_free_thread: exits 10 or 11
 * (with the reason) when one cannot be created or could not allocate. */
static void run_threads(void)
{
    for (int t = 0; t < THREADS; t++) {
        pthread_t th;
        void *r = NULL;
        if (pthread_create(&th, NULL, alloc_free_thread, (void *)(intptr_t)t) != 0) exit(10);
        pthread_join(th, &r);
        if (!r) {
            printf("thread %d: vms_stack_alloc: %s\n", t, strerror(errno));
            exit(11);
        }
    }
}

static void no_key_child(void *arg)
{
    (void)arg;
    int keys = exhaust_keys();
    run_threads();
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(12);
    int d = tst_distinct(bases, THREADS * PER_THREAD), da = tst_distinct(alts, THREADS);
    printf("keys %d, stacks %d distinct, alternate stacks %d, live %zu, cached %zu\n", keys,
           d, da, st.stacks_live, st.stacks_cached);
    if (atomic_load(&clobbered) || atomic_load(&first_key_dtor_calls)) {
        printf("vmstack stored into the program's key: seen %d times, its destructor ran %d "
               "times\n", atomic_load(&clobbered), atomic_load(&first_key_dtor_calls));
        exit(13);
    }
    /* One thread after another: the stacks each frees come back to the next. */
    if (d > 2 * PER_THREAD) exit(14);
    if (st.stacks_live != 0) exit(15);
    /* Their alternate stacks come back too (the pool scrubs them 16 at a time), where
     * dead threads' robust mutexes are marked (graves). */
    if (vms__os_robust_list_works() == 0 && da > 17) exit(16);
}

TEST(no_key_left_no_thread_cache)
{
    SKIP_IF_SANITIZED();
    char out[8192];
    int st = tst_fork(no_key_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    /* Said once, with what it costs. */
    ASSERT_STR_CONTAINS(out, "vmstack: warning: no thread-exit hook for per-thread stack caches");
    const char *w = strstr(out, "per-thread stack caches");
    ASSERT(!strstr(w + 1, "per-thread stack caches"));
    ASSERT_STR_CONTAINS(out, "vmstack: warning: no thread-exit hook for alternate signal stacks");
}

/* ---- no key for the task layer's thread-exit hook ------------------------------------ */

static void *echo(void *arg)
{
    return arg;
}

static void count_fiber(void *arg)
{
    int *n = arg;
    ++*n;
    vms_fiber_yield();
    ++*n;
}

/* vmstack is in use (its cache and alternate-stack keys made) when the program takes
 * every key left; then the first vms_thread_create needs the task layer's key, which
 * returns a thread's stack when its body ends by pthread_exit or cancellation. It fails
 * with EAGAIN, and a warning says why (a bare EAGAIN reads as a thread limit); fibers
 * still run and are destroyed. */
static void no_task_key_child(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);
    if (!s) exit(10);
    vms_stack_free(s);
    exhaust_keys();
    pthread_t t;
    int e = vms_thread_create(&t, NULL, echo, NULL);
    int again = vms_thread_create(&t, NULL, echo, NULL);
    printf("vms_thread_create: %d then %d\n", e, again);
    int n = 0;
    vms_fiber *f = vms_fiber_create(count_fiber, &n, NULL);
    if (!f) exit(11);
    int r1 = vms_fiber_resume(f), r2 = vms_fiber_resume(f);
    vms_fiber_destroy(f);
    printf("fiber: %d %d, count %d\n", r1, r2, n);
}

TEST(no_key_left_for_threads)
{
    SKIP_IF_SANITIZED();
    char out[8192];
    int st = tst_fork(no_task_key_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    char want[64];
    snprintf(want, sizeof want, "vms_thread_create: %d then %d\n", -EAGAIN, -EAGAIN);
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "fiber: 2 3, count 2\n");
    /* Said once, naming the cause and the way out. */
    ASSERT_STR_CONTAINS(out, "vmstack: warning: no thread-exit hook for tasks (pthread_key_create: ");
    ASSERT_STR_CONTAINS(out, "vms_thread_create fails with EAGAIN");
    ASSERT_STR_CONTAINS(out, "leave a thread-specific-data key for vmstack's first thread or fiber");
    const char *w = strstr(out, "hook for tasks");
    ASSERT(!strstr(w + 1, "hook for tasks"));
    /* The other keys were made before the program took the rest. */
    ASSERT_STR_NOT_CONTAINS(out, "per-thread stack caches");
}

/* ---- pthread_setspecific fails (ENOMEM) ------------------------------------------------
 *
 * glibc's pthread_setspecific allocates a thread's block of values for a key beyond the
 * first 32; when calloc cannot, it fails with ENOMEM. A per-thread cache or an alternate
 * stack whose key could not be set would never be given back at the thread's exit: the
 * cache goes without (as without calloc), the alternate stack is buried at once (as
 * without a key). Fault injection makes every pthread_setspecific of vmstack's fail
 * while the threads run; the stacks each frees come back to the next, and so do their
 * alternate stacks. */
static void setspecific_fails_child(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);   /* this thread's keys set before */
    if (!s) exit(9);
    vms_stack_free(s);
    vms__os_inject(VMS__OP_SETSPECIFIC, 1, ENOMEM, true);
    run_threads();
    vms__os_inject_clear();
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(12);
    int d = tst_distinct(bases, THREADS * PER_THREAD), da = tst_distinct(alts, THREADS);
    printf("stacks %d distinct, alternate stacks %d, live %zu\n", d, da, st.stacks_live);
    if (d > 2 * PER_THREAD) exit(14);
    if (st.stacks_live != 0) exit(15);
#ifndef TST_ASAN
    /* (ASan's runtime gives every thread an alternate stack of its own.) */
    if (vms__os_robust_list_works() == 0 && da > 17) exit(16);
#endif
}

TEST(setspecific_fails_no_thread_cache)
{
    NEED_FAULT_INJECTION();
    char out[8192];
    int st = tst_fork(setspecific_fails_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

/* ---- the shared lists' warm count, with a taker in the push's wake ---------------------
 *
 * A thread without a cache frees a stack straight to the shared list, warm (its top page
 * kept) within the warm budget, whose claim it gives back once the stack is pushed. The
 * list's lock released, another thread may take
 * the stack at once and subtract it from shared_warm (a subtraction that stops at 0): the
 * push must have counted it before the unlock, or the taker's subtraction finds nothing
 * to take and the push's late add leaves one warm stack counted that no list holds, for
 * good. vms__cache_push_hook takes the stack back at exactly that point. */
static vms_stack *taken_in_push;

static void take_in_push(void)
{
    vms__cache_push_hook = NULL;
    taken_in_push = vms_stack_alloc(0);
}

static void *push_then_take(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);   /* no cache: from the shared list or new slots */
    if (!s) return NULL;
    void *base = vms_stack_base(s);
    memset(base, 0x5a, 64);
    printf("before: %zu warm counted, %zu in the lists\n", vms__cache_shared_warm(),
           vms__cache_shared_warm_listed());
    if (vms__cache_shared_warm() != 0 || vms__cache_shared_warm_listed() != 0) exit(20);
    vms__cache_push_hook = take_in_push;
    vms_stack_free(s);
    /* (s is stale now: the stack comes back under a new handle) */
    if (!taken_in_push || vms_stack_base(taken_in_push) != base) {
        printf("the push's hook took %p, not the stack freed\n", (void *)taken_in_push);
        exit(21);
    }
    return s;
}

static void warm_count_child(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);   /* this thread's keys set before */
    if (!s) exit(9);
    vms_stack_free(s);
    vms__os_inject(VMS__OP_SETSPECIFIC, 1, ENOMEM, true);
    pthread_t th;
    void *r = NULL;
    if (pthread_create(&th, NULL, push_then_take, NULL) != 0) exit(10);
    pthread_join(th, &r);
    vms__os_inject_clear();
    if (!r) exit(11);
    size_t counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    printf("after: %zu warm counted, %zu in the lists\n", counted, listed);
    if (counted != listed) exit(22);
    vms_stack_free(taken_in_push);
    counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    printf("freed again: %zu warm counted, %zu in the lists\n", counted, listed);
    if (counted != listed) exit(23);
}

TEST(shared_warm_counted_before_another_thread_can_take)
{
    NEED_FAULT_INJECTION();
    /* Also with VMS_NO_SCRUB: a thread without a cache files each stack it frees as a
     * batch of one, warm within the budget, as without it. */
    char out[8192];
    int st = tst_fork(warm_count_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "after: 0 warm counted, 0 in the lists\n");
}

/* ---- the warm budget, without a per-thread cache -------------------------------------
 *
 * The shared lists keep at most WARM_BOUND stacks warm (cache.c, WARM_MAX), whoever
 * files them. A thread without a cache (no key: the program took them all; or
 * pthread_setspecific failing) frees each stack straight to a shared list: warm only
 * within the budget, as a thread with a cache files its batches. It used to keep every
 * one warm unclaimed: 1,280 stacks freed, 1,280 warm (and counted so). */
enum { WARM_BOUND = 1024, OVER_BUDGET = WARM_BOUND + 256 };

static void *free_over_the_budget(void *arg)
{
    (void)arg;
    vms_stack **v = calloc(OVER_BUDGET, sizeof *v);
    if (!v) return NULL;
    for (int i = 0; i < OVER_BUDGET; i++) {
        v[i] = vms_stack_alloc(8 * 1024);
        if (!v[i]) return NULL;
        ((char *)vms_stack_top(v[i]))[-1] = 1;   /* the top page used */
    }
    for (int i = 0; i < OVER_BUDGET; i++) vms_stack_free(v[i]);
    free(v);
    return (void *)1;
}

/* arg: NULL, no key; else pthread_setspecific fails. Exits 30 when the thread could not
 * allocate, 31 when more than WARM_BOUND stacks are warm, 32 when the count and the lists
 * disagree, 33 when fewer than WARM_BOUND stayed warm (the budget unused). */
static void warm_budget_child(void *arg)
{
    if (!arg) {
        exhaust_keys();
    } else {
        vms_stack *s = vms_stack_alloc(0);   /* this thread's keys set before */
        if (!s) exit(9);
        vms_stack_free(s);
        vms__os_inject(VMS__OP_SETSPECIFIC, 1, ENOMEM, true);
    }
    pthread_t th;
    void *r = NULL;
    if (pthread_create(&th, NULL, free_over_the_budget, NULL) != 0) exit(10);
    pthread_join(th, &r);
    vms__os_inject_clear();
    if (!r) exit(30);
    size_t counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    printf("%d freed: %zu warm counted, %zu in the lists\n", OVER_BUDGET, counted, listed);
    if (listed > WARM_BOUND || counted > WARM_BOUND) exit(31);
    if (counted != listed) exit(32);
    if (listed < WARM_BOUND) exit(33);
}

TEST(no_key_frees_keep_the_warm_budget)
{
    SKIP_IF_SANITIZED();
    char out[8192];
    int st = tst_fork(warm_budget_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

TEST(setspecific_fails_frees_keep_the_warm_budget)
{
    NEED_FAULT_INJECTION();
    char out[8192];
    int st = tst_fork(warm_budget_child, (void *)1, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}
