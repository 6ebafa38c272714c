/*
 * threads.c - the thread and overflow scenarios (issue 3) of `vmstack bench`:
 * vms_thread_create+join against pthread_create+join, and the cost of one overflow that
 * is caught, reported (to /dev/null), killed and joined, against the bare floor of the
 * same overflow: a guard hit, a handler on an alternate signal stack, siglongjmp back.
 * The floor's handler is installed only around the floor's own measured windows (the
 * case's pre/post hooks), so each side runs with its own SIGSEGV handler and nothing else.
 * Each group runs in its own child process; baselines run in the same child.
 */
#include "bench.h"
#include "vmstack.h"

#include <pthread.h>
#include <setjmp.h>
#include <sys/mman.h>
#ifdef VMS_BENCH_FIBERS
#include <ucontext.h>
#endif

#define TH_SIZE  ((size_t)256 * 1024)   /* vmstack's default usable stack */
#define TH_GUARD ((size_t)64 * 1024)    /* and its default guard */

/* ---- create + join --------------------------------------------------------------------- */
static void *th_work(void *arg)
{
    volatile uint64_t local = (uint64_t)(uintptr_t)arg;
    return (void *)(uintptr_t)(local + 1);
}

static void th_vms_create_join(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int rc = vms_thread_create(&t, NULL, th_work, (void *)(uintptr_t)i);
        if (rc != 0) bench_die("vms_thread_create: %s", strerror(rc < 0 ? -rc : rc));
        void *ret;
        pthread_join(t, &ret);
        bench_sink += (uintptr_t)ret;
    }
}

static void th_pthread_create_join(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int rc = pthread_create(&t, NULL, th_work, (void *)(uintptr_t)i);
        if (rc != 0) bench_die("pthread_create: %s", strerror(rc));
        void *ret;
        pthread_join(t, &ret);
        bench_sink += (uintptr_t)ret;
    }
}

static void th_group_create(const struct bench_opts *o)
{
    struct bench_case c[2];
    bench_case_init(&c[0], "vmstack", th_vms_create_join, NULL, bench_ops(o, 1000, 10));
    bench_case_init(&c[1], "pthread", th_pthread_create_join, NULL, bench_ops(o, 1000, 10));
    bench_interleave(c, 2, o->rounds);
    struct bench_row r;
    struct bench_target t = bench_no_target();
    t.max_ratio = 1.0;   /* not slower */
    bench_row_time(&r, "thread.create", "thread create+join", &c[0],
                   "pthread_create+join", &c[1], t);
    bench_emit(&r);
}

/* ---- overflow ------------------------------------------------------------------------- */
/* Unbounded in practice (th_limit is never reached): recurses in 1 KiB frames that it
 * touches, until a guard stops it. The limit only keeps the compiler from proving the
 * recursion infinite. */
static volatile long th_limit = 1L << 40;

__attribute__((noinline)) static long th_recurse(long depth)
{
    volatile char frame[1024];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)depth;
    if (depth >= th_limit) return frame[0];
    return th_recurse(depth + 1) + frame[sizeof frame - 1];
}

static void *th_overflow(void *arg)
{
    (void)arg;
    bench_sink += (uint64_t)th_recurse(0);
    return NULL;                 /* never reached: the overflow kills the thread */
}

static void th_vms_overflow(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int rc = vms_thread_create(&t, NULL, th_overflow, NULL);
        if (rc != 0) bench_die("vms_thread_create: %s", strerror(rc < 0 ? -rc : rc));
        void *ret = NULL;
        pthread_join(t, &ret);
        if (ret != VMS_THREAD_KILLED) bench_die("overflowing thread was not killed");
    }
}

/* The floor: the same recursion on a pthread with the same stack and guard sizes; the
 * handler jumps back to the thread function, which returns. */
static __thread sigjmp_buf th_env;
static __thread volatile sig_atomic_t th_armed;
static struct sigaction th_saved;
static char th_altstack[64 * 1024];       /* one floor thread runs at a time */

/* async-signal-safe: only siglongjmp (to a frame of this thread, armed before the
 * fault) or restoring the default action so that a fault we did not expect repeats and
 * kills the process as without this handler. */
static void th_floor_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    if (th_armed) {
        th_armed = 0;
        siglongjmp(th_env, 1);
    }
    signal(sig, SIG_DFL);
}

static void th_floor_install(void *ctx)
{
    (void)ctx;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = th_floor_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, &th_saved) != 0) bench_die("sigaction: %s", strerror(errno));
}

static void th_floor_restore(void *ctx)
{
    (void)ctx;
    sigaction(SIGSEGV, &th_saved, NULL);
}

static void *th_floor_thread(void *arg)
{
    (void)arg;
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = th_altstack;
    ss.ss_size = sizeof th_altstack;
    if (sigaltstack(&ss, NULL) != 0) bench_die("sigaltstack: %s", strerror(errno));
    if (sigsetjmp(th_env, 1) == 0) {
        th_armed = 1;
        bench_sink += (uint64_t)th_recurse(0);
    }
    ss.ss_flags = SS_DISABLE;
    sigaltstack(&ss, NULL);
    return NULL;
}

static void th_floor_overflow(void *ctx, long n)
{
    pthread_attr_t *attr = (pthread_attr_t *)ctx;
    for (long i = 0; i < n; i++) {
        pthread_t t;
        int rc = pthread_create(&t, attr, th_floor_thread, NULL);
        if (rc != 0) bench_die("pthread_create: %s", strerror(rc));
        pthread_join(t, NULL);
    }
}

/* vmstack for the overflow groups: reports to /dev/null. They measure the kill, which
 * VMSTACK_ON_OVERFLOW=abort in the environment would turn into the group's death by
 * SIGSEGV at its first overflow: an error that says why instead. */
static void th_init_quiet(const char *group)
{
    const char *ov = getenv("VMSTACK_ON_OVERFLOW");
    if (ov && strcmp(ov, "kill") != 0)
        bench_die("%s measures the kill of the task that overflows: VMSTACK_ON_OVERFLOW=%s in "
                  "the environment would end the group at its first overflow (unset it)", group, ov);
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.report_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (cfg.report_fd < 0) bench_die("open /dev/null: %s", strerror(errno));
    int rc = vms_init(&cfg);
    if (rc != 0) bench_die("vms_init: %s", strerror(-rc));
}

/* Whether this build's stacks have guards. The direct backend (-DVMSTACK_VMAP=OFF) has
 * none: an overflow there runs into whatever lies below and is not caught, so the overflow
 * groups say so on stderr and emit no row (bench.cmake then does not require one). */
static int th_guarded(const char *group)
{
    vms_stats s;
    if (vms_get_stats(&s) == 0 && s.guard_method && strcmp(s.guard_method, "none") == 0) {
        fprintf(stderr, "vmstack bench: %s skipped: this build's stacks have no guards "
                "(direct backend)\n", group);
        return 0;
    }
    return 1;
}

static void th_group_overflow(const struct bench_opts *o)
{
    th_init_quiet("thread.overflow");
    if (!th_guarded("thread.overflow")) return;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, TH_SIZE);
    pthread_attr_setguardsize(&attr, TH_GUARD);
    struct bench_case c[2];
    bench_case_init(&c[0], "vmstack", th_vms_overflow, NULL, bench_ops(o, 200, 4));
    bench_case_init(&c[1], "floor", th_floor_overflow, &attr, bench_ops(o, 200, 4));
    c[1].pre = th_floor_install;
    c[1].post = th_floor_restore;
    bench_interleave(c, 2, o->rounds);
    struct bench_row r;
    struct bench_target t = bench_no_target();
    t.max_ratio = 2.0;
    bench_row_time(&r, "thread.overflow", "thread overflow: oops+kill+join", &c[0],
                   "pthread+guard+altstack+longjmp", &c[1], t);
    bench_emit(&r);
    pthread_attr_destroy(&attr);
}

#ifdef VMS_BENCH_FIBERS
/* ---- fiber overflow ------------------------------------------------------------------------ */
static void th_fiber_overflow_fn(void *arg)
{
    (void)arg;
    bench_sink += (uint64_t)th_recurse(0);
}

static void th_vms_fiber_overflow(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        vms_fiber *f = vms_fiber_create(th_fiber_overflow_fn, NULL, NULL);
        if (!f) bench_die("vms_fiber_create: %s", strerror(errno));
        int st = vms_fiber_resume(f);
        if (st != VMS_KILLED) bench_die("overflowing fiber ended in state %d, not KILLED", st);
        vms_fiber_destroy(f);
    }
}

/* The floor for fibers: a ucontext on one guarded stack (made once, like a pooled
 * protected stack), the same recursion, the handler on this thread's alternate stack
 * jumping back to the resumer. */
struct th_ufloor { char *stack; ucontext_t main_uc, uc; stack_t old_ss; };

static void th_ufloor_fn(void)
{
    bench_sink += (uint64_t)th_recurse(0);
}

static void th_ufloor_install(void *ctx)
{
    struct th_ufloor *u = (struct th_ufloor *)ctx;
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = th_altstack;
    ss.ss_size = sizeof th_altstack;
    if (sigaltstack(&ss, &u->old_ss) != 0) bench_die("sigaltstack: %s", strerror(errno));
    th_floor_install(NULL);
}

static void th_ufloor_restore(void *ctx)
{
    struct th_ufloor *u = (struct th_ufloor *)ctx;
    th_floor_restore(NULL);
    sigaltstack(&u->old_ss, NULL);
}

/* One overflow; its own function so that sigsetjmp's frame holds no loop variable that
 * the jump back could clobber. */
__attribute__((noinline)) static void th_ufloor_once(struct th_ufloor *u)
{
    if (sigsetjmp(th_env, 1) != 0) return;
    if (getcontext(&u->uc) != 0) bench_die("getcontext: %s", strerror(errno));
    u->uc.uc_stack.ss_sp = u->stack;
    u->uc.uc_stack.ss_size = TH_SIZE;
    u->uc.uc_link = &u->main_uc;
    makecontext(&u->uc, th_ufloor_fn, 0);
    th_armed = 1;
    swapcontext(&u->main_uc, &u->uc);
    bench_die("fiber floor: the recursion returned");
}

static void th_ufloor_overflow(void *ctx, long n)
{
    for (long i = 0; i < n; i++) th_ufloor_once((struct th_ufloor *)ctx);
}

/* The same, but the stack's pages are given back after each overflow (what glibc does
 * with a thread's stack at exit, and vmstack's scrub with a freed stack): the next
 * recursion faults them in again, as each new vmstack fiber's does. */
static void th_ufloor_overflow_dropped(void *ctx, long n)
{
    struct th_ufloor *u = (struct th_ufloor *)ctx;
    for (long i = 0; i < n; i++) {
        th_ufloor_once(u);
        if (madvise(u->stack, TH_SIZE, MADV_DONTNEED) != 0)
            bench_die("madvise(MADV_DONTNEED): %s", strerror(errno));
    }
}

static void th_group_fiber_overflow(const struct bench_opts *o)
{
    th_init_quiet("fiber.overflow");
    if (!th_guarded("fiber.overflow")) return;
    /* One guarded stack per floor: a stack shared with the dropping floor would start
     * every round of the resident floor with its pages given back, and the resident
     * floor would pay the recursion's page faults once per round after all. */
    struct th_ufloor u[2];
    memset(u, 0, sizeof u);
    for (int i = 0; i < 2; i++) {
        char *p = (char *)mmap(NULL, TH_GUARD + TH_SIZE, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED || mprotect(p, TH_GUARD, PROT_NONE) != 0)
            bench_die("mmap+mprotect: %s", strerror(errno));
        u[i].stack = p + TH_GUARD;
    }
    struct bench_case c[3];
    bench_case_init(&c[0], "vmstack", th_vms_fiber_overflow, NULL, bench_ops(o, 200, 4));
    bench_case_init(&c[1], "floor", th_ufloor_overflow, &u[0], bench_ops(o, 200, 4));
    bench_case_init(&c[2], "floor-dropped", th_ufloor_overflow_dropped, &u[1],
                    bench_ops(o, 200, 4));
    for (int i = 1; i < 3; i++) {
        c[i].pre = th_ufloor_install;
        c[i].post = th_ufloor_restore;
    }
    bench_interleave(c, 3, o->rounds);
    struct bench_row r;
    struct bench_target t = bench_no_target();
    t.max_ratio = 2.0;
    bench_row_time(&r, "fiber.overflow", "fiber overflow: oops+kill+destroy", &c[0],
                   "ucontext+guard+altstack+longjmp", &c[1], t);
    bench_note(&r, "the floor's stack stays resident from one overflow to the next");
    bench_emit(&r);
    bench_row_time(&r, "fiber.overflow.dropped", "fiber overflow: oops+kill+destroy", &c[0],
                   "same, stack pages dropped", &c[2], t);
    bench_note(&r, "the floor gives its stack's pages back after each overflow: both "
               "sides fault them in again");
    bench_emit(&r);
    for (int i = 0; i < 2; i++) munmap(u[i].stack - TH_GUARD, TH_GUARD + TH_SIZE);
}
#endif

const struct bench_group bench_thread_groups[] = {
    { "thread.create", "vms_thread_create+join vs pthread_create+join", th_group_create, 0 },
    { "thread.overflow", "overflow caught, reported, thread killed and joined vs bare floor",
      th_group_overflow, 0 },
#ifdef VMS_BENCH_FIBERS
    { "fiber.overflow", "fiber overflow caught, reported, killed, destroyed vs bare floor",
      th_group_fiber_overflow, 0 },
#endif
};
const int bench_thread_ngroups = (int)(sizeof bench_thread_groups / sizeof bench_thread_groups[0]);
