/*
 * signal_safe.c - the calls docs/api.md ("Signal handlers") lists as async-signal-safe,
 * made from a signal handler that interrupts the same thread while it runs vmstack:
 * fibers switching (also inside the switch window that docs/api.md describes), raw
 * stacks allocated and freed, a coroutine on a raw stack, a vms thread's body, and a
 * handler on vmstack's alternate signal stack. A second thread sends the signals in a
 * stream until the target has handled a fixed number of them (no time limit). The
 * handler checks every result against what the interrupted code knows and counts the
 * mismatches; the case asserts none after the loop.
 */
#include "test.h"
#include "internal.h"

#include <stdatomic.h>
#include <stdint.h>
#include <ucontext.h>

/* Signals handled per case: enough to land in the switch window (api.md) many times. */
#define SIGNALS 1000
/* How far below the handler's own frame vms_stack_remaining's frame may be. */
#define FRAME_SLACK 4096

#define NFIB 4

/* What the handler checks against, set before the pinger starts. */
static vms_fiber *fib[NFIB];
static const vms_stack *fst[NFIB];
static char *fbase[NFIB], *ftop[NFIB];
static size_t fsize[NFIB];
static _Atomic(vms_fiber *) target;    /* the fiber the main loop is resuming now */
static atomic_bool stop;
static atomic_int handled;
static atomic_int fails;
static atomic_int first_fail;          /* the line of the first failed check */
static atomic_long first_a, first_b;   /* its two values */
static atomic_int resume_window, yield_window, on_fiber;
static bool check_paint;               /* VMS_PAINT is on: vms_stack_max_used counts */
static bool on_altstack;               /* the handler runs on the alternate stack */
static _Atomic(const vms_stack *) alt_seen;
static char *alt_lo, *alt_hi;          /* the thread's alternate stack */

/* async-signal-safe: atomics only. */
static void fail_at(int line, long a, long b)
{
    int zero = 0;
    if (atomic_compare_exchange_strong(&first_fail, &zero, line)) {
        atomic_store(&first_a, a);
        atomic_store(&first_b, b);
    }
    atomic_fetch_add(&fails, 1);
}
#define H_CHECK(c, a, b) do { if (!(c)) fail_at(__LINE__, (long)(a), (long)(b)); } while (0)

static void assert_no_fails(void)
{
    if (atomic_load(&fails))
        TST_FAIL("%d checks in the handler failed; the first at line %d (%ld, %ld)",
                 atomic_load(&fails), atomic_load(&first_fail), atomic_load(&first_a),
                 atomic_load(&first_b));
}

static int fiber_on(const char *p)
{
    for (int i = 0; i < NFIB; i++)
        if (p >= fbase[i] && p < ftop[i]) return i;
    return -1;
}

static char *interrupted_sp(const void *uc)
{
#if defined(__x86_64__)
    return (char *)(uintptr_t)((const ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
#else
    return (char *)(uintptr_t)((const ucontext_t *)uc)->uc_mcontext.sp;
#endif
}

/* async-signal-safe: the stack getters on a live stack agree with what was recorded. */
static void check_stack(const vms_stack *s, char *base, char *top, size_t size)
{
    H_CHECK(vms_stack_base(s) == base, vms_stack_base(s), base);
    H_CHECK(vms_stack_top(s) == top, vms_stack_top(s), top);
    H_CHECK(vms_stack_size(s) == size, vms_stack_size(s), size);
    size_t mu = vms_stack_max_used(s);
    if (check_paint)
        H_CHECK(mu > 0 && mu <= size, mu, size);
    else
        H_CHECK(mu == 0, mu, 0);
}

/* async-signal-safe: vms_stack_self and vms_stack_remaining for a handler whose own
 * frame (here) is on the stack `want` (NULL: no vmstack stack). */
static void check_here(const char *here, const vms_stack *want)
{
    const vms_stack *s = vms_stack_self();
    size_t rem = vms_stack_remaining();
    H_CHECK(s == want, s, want);
    if (!want) {
        H_CHECK(rem == SIZE_MAX, rem, 0);
        return;
    }
    const char *base = vms_stack_base(want), *top = vms_stack_top(want);
    H_CHECK(here >= base && here < top, here, base);
    size_t below = (size_t)(here - base);
    H_CHECK(rem < below && rem + FRAME_SLACK > below, rem, below);
    if (check_paint) {
        /* The handler's frame is in use: at least its depth, within a page. */
        size_t mu = vms_stack_max_used(want);
        H_CHECK(mu + 4096 >= (size_t)(top - here), mu, top - here);
    }
}

/* Not ours: a signal that is no fault, and a "fault" at an address in no guard. */
static void check_handle_fault(int sig, siginfo_t *si, void *uc, char *here)
{
    H_CHECK(vms_handle_fault(sig, si, uc) == 0, sig, 0);
    siginfo_t fake;
    memset(&fake, 0, sizeof fake);
    fake.si_signo = SIGSEGV;
    fake.si_code = SEGV_MAPERR;
    fake.si_addr = here;
    H_CHECK(vms_handle_fault(SIGSEGV, &fake, uc) == 0, here, 0);
    fake.si_addr = NULL;
    H_CHECK(vms_handle_fault(SIGSEGV, &fake, uc) == 0, 0, 0);
}

/* ---- the pinger ---------------------------------------------------------------------- */

struct pinger { pthread_t thread, target; int sig; };
static atomic_bool pinger_done;

/* Sends signals to the target until it has handled SIGNALS of them (a signal sent while
 * one is pending merges with it), then says so in pinger_done. */
static void *pinger_run(void *arg)
{
    struct pinger *p = arg;
    for (int i = 0; atomic_load(&handled) < SIGNALS; i++) {
        if (pthread_kill(p->target, p->sig) != 0) abort();
        /* A varying pause, so that the next signal lands elsewhere in the loop. */
        for (volatile int k = i % 97 * 8; k > 0; k--) {}
        if (i % 16 == 15) sched_yield();
    }
    atomic_store(&pinger_done, true);
    return NULL;
}

static void pinger_start(struct pinger *p, pthread_t target, int sig)
{
    p->target = target;
    p->sig = sig;
    ASSERT_EQ(pthread_create(&p->thread, NULL, pinger_run, p), 0);
}

static void handler_install(int sig, void (*fn)(int, siginfo_t *, void *), int flags)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | SA_RESTART | flags;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(sig, &sa, NULL), 0);
}

/* ---- fibers switching ------------------------------------------------------------------ */

static void fiber_body(void *arg)
{
    int i = (int)(intptr_t)arg;
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        /* The safe calls, so that the handler interrupts them too. */
        if (vms_fiber_self() != fib[i]) fail_at(__LINE__, i, 0);
        if (vms_stack_self() != fst[i]) fail_at(__LINE__, i, 0);
        if (vms_stack_remaining() >= fsize[i]) fail_at(__LINE__, i, 0);
        vms_fiber_yield();
    }
}

static void fiber_handler(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    char here[16];
    __asm__ volatile("" : : "r"(here) : "memory");
    errno = 12345;   /* the calls below leave it alone on valid handles */
    vms_fiber *want_target = atomic_load_explicit(&target, memory_order_relaxed);
    vms_fiber *self = vms_fiber_self();
    char *sp = on_altstack ? interrupted_sp(uc) : here;
    int on = fiber_on(sp);
    if (on_altstack) {
        /* vmstack's alternate stack: a vmstack stack, no fiber's. */
        /* The thread's alternate stack: vmstack's, a vmstack stack and no fiber's
         * (under ASan its runtime's own, on which vmstack finds no stack of its own). */
        const vms_stack *alt = vms_stack_self(), *none = NULL;
        H_CHECK(here >= alt_lo && here < alt_hi, here, alt_lo);
#ifndef TST_ASAN
        H_CHECK(alt != NULL, 0, 0);
#endif
        /* The same one every time. */
        if (!atomic_compare_exchange_strong(&alt_seen, &none, alt))
            H_CHECK(alt == none, alt, none);
        check_here(here, alt);
    } else {
        check_here(here, on >= 0 ? fst[on] : NULL);
    }
    if (on >= 0) {
        atomic_fetch_add_explicit(&on_fiber, 1, memory_order_relaxed);
        if (self == fib[on]) {
            /* In the fiber itself, before its yield made its resumer current. */
            H_CHECK(vms_fiber_state(self) == VMS_RUNNING, vms_fiber_state(self), on);
        } else {
            /* The window of a yield: its resumer (the main thread) already current. */
            H_CHECK(self == NULL && fib[on] == want_target, self, on);
            atomic_fetch_add_explicit(&yield_window, 1, memory_order_relaxed);
        }
    } else if (self) {
        /* The window of a resume: the fiber current, still on the resumer's stack. */
        H_CHECK(self == want_target, self, want_target);
        H_CHECK(vms_fiber_state(self) == VMS_RUNNING, vms_fiber_state(self), 0);
        atomic_fetch_add_explicit(&resume_window, 1, memory_order_relaxed);
    }
    for (int i = 0; i < NFIB; i++) {
        int s = vms_fiber_state(fib[i]);
        /* Only the fiber being resumed may be running. */
        if (fib[i] == want_target)
            H_CHECK(s == VMS_READY || s == VMS_RUNNING || s == VMS_SUSPENDED, s, i);
        else
            H_CHECK(s == VMS_READY || s == VMS_SUSPENDED, s, i);
        H_CHECK(vms_fiber_oops(fib[i]) == NULL, i, 0);
        H_CHECK(vms_fiber_stack(fib[i]) == fst[i], vms_fiber_stack(fib[i]), fst[i]);
        check_stack(fst[i], fbase[i], ftop[i], fsize[i]);
    }
    check_handle_fault(sig, si, uc, here);
    H_CHECK(errno == 12345, errno, 12345);
    errno = saved;
    atomic_fetch_add(&handled, 1);
}

static void run_fibers(bool altstack)
{
    on_altstack = altstack;
    for (int i = 0; i < NFIB; i++) {
        fib[i] = vms_fiber_create(fiber_body, (void *)(intptr_t)i,
                                  &(vms_fiber_attr){ .stack_size = 64 * 1024 << i });
        ASSERT_NOT_NULL(fib[i]);
        fst[i] = vms_fiber_stack(fib[i]);
        fbase[i] = vms_stack_base(fst[i]);
        ftop[i] = vms_stack_top(fst[i]);
        fsize[i] = vms_stack_size(fst[i]);
    }
    /* Every fiber once, so that the thread has its alternate stack before the signals
     * start (SA_ONSTACK) and painting has something to find. */
    for (int i = 0; i < NFIB; i++) ASSERT_EQ(vms_fiber_resume(fib[i]), VMS_SUSPENDED);
    stack_t ss;
    ASSERT_EQ(sigaltstack(NULL, &ss), 0);
    if (altstack) ASSERT_EQ(ss.ss_flags & SS_DISABLE, 0);
    alt_lo = ss.ss_sp;
    alt_hi = alt_lo + ss.ss_size;
    handler_install(SIGUSR1, fiber_handler, altstack ? SA_ONSTACK : 0);
    struct pinger p;
    pinger_start(&p, pthread_self(), SIGUSR1);
    long rounds = 0;
    while (atomic_load_explicit(&handled, memory_order_relaxed) < SIGNALS) {
        vms_fiber *f = fib[rounds++ % NFIB];
        atomic_store_explicit(&target, f, memory_order_relaxed);
        atomic_signal_fence(memory_order_seq_cst);
        int r = vms_fiber_resume(f);
        atomic_signal_fence(memory_order_seq_cst);
        atomic_store_explicit(&target, NULL, memory_order_relaxed);
        ASSERT_EQ(r, VMS_SUSPENDED);
    }
    ASSERT_EQ(pthread_join(p.thread, NULL), 0);
    signal(SIGUSR1, SIG_IGN);
    atomic_store(&stop, true);
    for (int i = 0; i < NFIB; i++) {
        ASSERT_EQ(vms_fiber_resume(fib[i]), VMS_DONE);
        vms_fiber_destroy(fib[i]);
    }
    printf("%ld resumes, %d signals: %d on a fiber's stack, %d in a resume's window, "
           "%d in a yield's\n", rounds, atomic_load(&handled), atomic_load(&on_fiber),
           atomic_load(&resume_window), atomic_load(&yield_window));
    assert_no_fails();
}

static void init_paint(void)
{
    vms_config c = { .flags = VMS_PAINT };
    ASSERT_EQ(vms_init(&c), 0);
    check_paint = true;
}

TEST(fiber_calls_from_a_handler_interrupting_switches)
{
    run_fibers(false);
}

TEST(fiber_calls_from_a_handler_interrupting_switches_painted)
{
    init_paint();
    run_fibers(false);
}

TEST(fiber_calls_from_a_handler_on_the_alternate_stack)
{
    NO_TSAN("its runtime runs a handler later, at a point of its own, and not on the "
            "alternate stack");
    run_fibers(true);
}

/* ---- raw stacks allocated and freed ------------------------------------------------ */

#define NRAW 6
static const vms_stack *raw[NRAW];
static char *rbase[NRAW], *rtop[NRAW];
static size_t rsize[NRAW];
static vms_fiber *parked;               /* a suspended fiber */
static const vms_stack *parked_stack;

static void park_body(void *arg)
{
    (void)arg;
    vms_fiber_yield();
}

static void raw_handler(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    char here[16];
    __asm__ volatile("" : : "r"(here) : "memory");
    errno = 12345;
    check_here(here, NULL);                /* the main thread's own stack */
    H_CHECK(vms_fiber_self() == NULL, vms_fiber_self(), 0);
    for (int i = 0; i < NRAW; i++) check_stack(raw[i], rbase[i], rtop[i], rsize[i]);
    H_CHECK(vms_fiber_state(parked) == VMS_SUSPENDED, vms_fiber_state(parked), 0);
    H_CHECK(vms_fiber_oops(parked) == NULL, 0, 0);
    H_CHECK(vms_fiber_stack(parked) == parked_stack, vms_fiber_stack(parked), parked_stack);
    check_handle_fault(sig, si, uc, here);
    H_CHECK(errno == 12345, errno, 12345);
    errno = saved;
    atomic_fetch_add(&handled, 1);
}

static void raw_setup(void)
{
    for (int i = 0; i < NRAW; i++) {
        raw[i] = vms_stack_alloc((size_t)4096 << i);
        ASSERT_NOT_NULL(raw[i]);
        rbase[i] = vms_stack_base(raw[i]);
        rtop[i] = vms_stack_top(raw[i]);
        rsize[i] = vms_stack_size(raw[i]);
        rtop[i][-1] = 1;                    /* used: painting finds it */
    }
    parked = vms_fiber_create(park_body, NULL, NULL);
    ASSERT_NOT_NULL(parked);
    parked_stack = vms_fiber_stack(parked);
    ASSERT_EQ(vms_fiber_resume(parked), VMS_SUSPENDED);
}

static void raw_teardown(void)
{
    ASSERT_EQ(vms_fiber_resume(parked), VMS_DONE);
    vms_fiber_destroy(parked);
    for (int i = 0; i < NRAW; i++) vms_stack_free((vms_stack *)raw[i]);
}

static void run_alloc_free(void)
{
    raw_setup();
    handler_install(SIGUSR1, raw_handler, 0);
    struct pinger p;
    pinger_start(&p, pthread_self(), SIGUSR1);
    /* Allocations and frees of two sizes, past the per-thread cache (so the shared lists
     * and the scrubbing batches too), and the getters on them. */
    vms_stack *mine[48];
    long n = 0;
    while (atomic_load_explicit(&handled, memory_order_relaxed) < SIGNALS) {
        int k = (int)(n++ % 48) + 1;
        for (int i = 0; i < k; i++) {
            mine[i] = vms_stack_alloc(i & 1 ? 128 * 1024 : 0);
            ASSERT_NOT_NULL(mine[i]);
            char *top = vms_stack_top(mine[i]);
            top[-64] = (char)i;
        }
        for (int i = 0; i < k; i++) {
            ASSERT_GE(vms_stack_size(mine[i]), i & 1 ? 128 * 1024 : 4096);
            vms_stack_free(mine[i]);
        }
    }
    ASSERT_EQ(pthread_join(p.thread, NULL), 0);
    signal(SIGUSR1, SIG_IGN);
    raw_teardown();
    printf("%ld rounds of allocations and frees, %d signals\n", n, atomic_load(&handled));
    assert_no_fails();
}

TEST(stack_calls_from_a_handler_interrupting_alloc_and_free)
{
    run_alloc_free();
}

TEST(stack_calls_from_a_handler_interrupting_alloc_and_free_painted)
{
    init_paint();
    run_alloc_free();
}

/* ---- a coroutine on a raw stack ------------------------------------------------------ */

static ucontext_t co_main, co_ctx;
static const vms_stack *co_stack;

static void co_body(void)
{
    for (;;) {
        if (vms_stack_self() != co_stack) fail_at(__LINE__, 0, 0);
        swapcontext(&co_ctx, &co_main);
    }
}

static void co_handler(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    char here[16];
    __asm__ volatile("" : : "r"(here) : "memory");
    errno = 12345;
    char *b = vms_stack_base(co_stack), *t = vms_stack_top(co_stack);
    bool on_co = here >= b && here < t;
    check_here(here, on_co ? co_stack : NULL);
    if (on_co) atomic_fetch_add_explicit(&on_fiber, 1, memory_order_relaxed);
    H_CHECK(vms_fiber_self() == NULL, vms_fiber_self(), 0);
    check_handle_fault(sig, si, uc, here);
    H_CHECK(errno == 12345, errno, 12345);
    errno = saved;
    atomic_fetch_add(&handled, 1);
}

TEST(stack_calls_from_a_handler_interrupting_a_coroutine_on_a_raw_stack)
{
    NO_TSAN("swapcontext switches stacks behind its back");
    co_stack = vms_stack_alloc(0);
    ASSERT_NOT_NULL(co_stack);
    ASSERT_EQ(getcontext(&co_ctx), 0);
    co_ctx.uc_stack.ss_sp = vms_stack_base(co_stack);
    co_ctx.uc_stack.ss_size = vms_stack_size(co_stack);
    co_ctx.uc_link = NULL;
    makecontext(&co_ctx, co_body, 0);
    handler_install(SIGUSR1, co_handler, 0);
    struct pinger p;
    pinger_start(&p, pthread_self(), SIGUSR1);
    long n = 0;
    while (atomic_load_explicit(&handled, memory_order_relaxed) < SIGNALS) {
        ASSERT_EQ(swapcontext(&co_main, &co_ctx), 0);
        n++;
    }
    ASSERT_EQ(pthread_join(p.thread, NULL), 0);
    signal(SIGUSR1, SIG_IGN);
    printf("%ld switches, %d signals, %d on the coroutine's stack\n", n,
           atomic_load(&handled), atomic_load(&on_fiber));
    ASSERT_GT(atomic_load(&on_fiber), 0);
    assert_no_fails();
    vms_stack_free((vms_stack *)co_stack);
}

/* ---- a vms thread's body ---------------------------------------------------------------- */

static const vms_stack *body_stack;
static atomic_bool body_ready;

static NOIPA size_t descend(int depth)
{
    volatile char pad[256];
    pad[0] = (char)depth;
    size_t r = vms_stack_remaining();
    if (depth > 0) r = descend(depth - 1);
    return r + (size_t)pad[0] * 0;
}

static void *thread_body(void *arg)
{
    (void)arg;
    body_stack = vms_stack_self();
    atomic_store(&body_ready, true);
    long n = 0;
    while (atomic_load_explicit(&handled, memory_order_relaxed) < SIGNALS) {
        if (descend((int)(n++ % 32)) >= vms_stack_size(body_stack)) fail_at(__LINE__, 0, 0);
        if (vms_fiber_self() != NULL) fail_at(__LINE__, 0, 0);
    }
    /* Not gone before the pinger has sent its last signal here. */
    while (!atomic_load(&pinger_done)) sched_yield();
    return (void *)n;
}

static void thread_handler(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    char here[16];
    __asm__ volatile("" : : "r"(here) : "memory");
    errno = 12345;
    check_here(here, body_stack);
    H_CHECK(vms_fiber_self() == NULL, vms_fiber_self(), 0);
    check_stack(body_stack, vms_stack_base(body_stack), vms_stack_top(body_stack),
                vms_stack_size(body_stack));
    check_handle_fault(sig, si, uc, here);
    H_CHECK(errno == 12345, errno, 12345);
    errno = saved;
    atomic_fetch_add(&handled, 1);
}

TEST(stack_calls_from_a_handler_interrupting_a_vms_thread)
{
    init_paint();
    handler_install(SIGUSR1, thread_handler, 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, thread_body, NULL), 0);
    while (!atomic_load(&body_ready)) sched_yield();
    ASSERT_NOT_NULL(body_stack);
    struct pinger p;
    pinger_start(&p, t, SIGUSR1);
    void *n;
    ASSERT_EQ(pthread_join(t, &n), 0);
    ASSERT_EQ(pthread_join(p.thread, NULL), 0);
    printf("%ld descents, %d signals\n", (long)(intptr_t)n, atomic_load(&handled));
    assert_no_fails();
}

