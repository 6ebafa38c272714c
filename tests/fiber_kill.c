/*
 * fiber_kill.c - the task layer's kill paths with the fault handler: one overflowing
 * fiber among 1,000 is killed alone (its resume returns VMS_KILLED, its oops names its
 * stack) and the other 999 finish with verified results; a nested fiber's kill returns
 * to its resumer fiber; an overflowing vms thread is joined as VMS_THREAD_KILLED; and
 * 10,000 overflows in a row leave resident memory, mappings and open descriptors
 * bounded; a corrupted end-of-stack magic (VMS_END_CHECK) kills the fiber at its next
 * switch; a task killed inside pthread_cleanup_push regions leaves its thread able to
 * exit and be cancelled, and a killed thread's locks stay as documented; a kill
 * allocates nothing and needs no descriptor (ASan's builds included), and leaves ASan's
 * shadow of the alternate signal stack clean. Every case runs in a child process
 * (tst_fork).
 */
#include "test.h"
#include "task_work.h"
#include "internal.h"

#include <alloca.h>
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <sys/resource.h>

static char out[1 << 20];

/* Runs a child; TASK_SHOW=1 in the environment prints what it wrote (debugging). */
static int run_child(void (*fn)(void *), void *arg)
{
    int status = tst_fork(fn, arg, out, sizeof out);
    if (getenv("TASK_SHOW")) fprintf(stderr, "---- child output:\n%s----\n", out);
    return status;
}
static void init_report_fd(int fd)
{
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.report_fd = fd;
    int e = vms_init(&cfg);
    if (e) TST_FAIL("vms_init: %d", e);
}

#define NJOBS 1000
#define BAD   537

static void child_one_of_thousand(void *arg)
{
    (void)arg;
    static struct job jobs[NJOBS];
    static vms_fiber *f[NJOBS];
    for (int i = 0; i < NJOBS; i++) {
        jobs[i].index = i;
        char name[32];
        snprintf(name, sizeof name, "job-%d", i);
        vms_fiber_attr attr = { .stack_size = 64 * 1024, .name = name };
        f[i] = vms_fiber_create(i == BAD ? bad_fiber : good_fiber, &jobs[i], &attr);
        ASSERT_NOT_NULL(f[i]);
    }
    int killed = 0;
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < NJOBS; i++) {
            int s = vms_fiber_state(f[i]);
            if (s == VMS_DONE || s == VMS_KILLED) continue;
            s = vms_fiber_resume(f[i]);
            ASSERT_GE(s, 0);
            if (s == VMS_KILLED) {
                ASSERT_EQ(i, BAD);
                killed++;
            }
        }
    }
    ASSERT_EQ(killed, 1);
    const vms_oops *o = vms_fiber_oops(f[BAD]);
    ASSERT_NOT_NULL(o);
    ASSERT_EQ(o->kind, VMS_OVERFLOW);
    ASSERT_PTR_EQ(o->stack_base, vms_stack_base(vms_fiber_stack(f[BAD])));
    ASSERT_EQ(o->stack_size, vms_stack_size(vms_fiber_stack(f[BAD])));
    ASSERT(strcmp(o->name, "job-537") == 0);
    ASSERT((uintptr_t)o->fault_addr < (uintptr_t)o->stack_base);
    ASSERT_EQ(vms_fiber_state(f[BAD]), VMS_KILLED);
    ASSERT_EQ(vms_fiber_resume(f[BAD]), -EINVAL);
    ASSERT_EQ(jobs[BAD].done, 0);
    for (int i = 0; i < NJOBS; i++) {
        if (i == BAD) continue;
        ASSERT_EQ(vms_fiber_state(f[i]), VMS_DONE);
        ASSERT_NULL(vms_fiber_oops(f[i]));
        if (jobs[i].result != job_result(i))
            TST_FAIL("job %d: %lu, want %lu", i, jobs[i].result, job_result(i));
    }
    for (int i = 0; i < NJOBS; i++) vms_fiber_destroy(f[i]);
    /* The thread keeps working: new fibers run, and a second overflow is caught too. */
    struct job again = { .index = 1 };
    vms_fiber *g = vms_fiber_create(bad_fiber, &again, NULL);
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(vms_fiber_resume(g), VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_resume(g), VMS_KILLED);
    vms_fiber_destroy(g);
    printf("child: all verified\n");
}

TEST(one_of_thousand_killed_alone)
{
    need_guards();
    int status = run_child(child_one_of_thousand, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber \"job-537\"");
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber \"job-537\"");
    ASSERT_STR_CONTAINS(out, "child: all verified");
}

/* Fiber A resumes B; B overflows: A's resume returns VMS_KILLED and A goes on. */
static void nested_outer(void *arg)
{
    int *step = arg;
    struct job j = { .index = 0 };
    vms_fiber *b = vms_fiber_create(bad_fiber, &j, NULL);
    ASSERT_NOT_NULL(b);
    ASSERT_EQ(vms_fiber_resume(b), VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_resume(b), VMS_KILLED);
    ASSERT_NOT_NULL(vms_fiber_self());
    ASSERT_EQ(vms_fiber_state(vms_fiber_self()), VMS_RUNNING);
    vms_fiber_destroy(b);
    *step = 1;
    vms_fiber_yield();
    *step = 2;
}

static void child_nested(void *arg)
{
    (void)arg;
    int step = 0;
    vms_fiber *a = vms_fiber_create(nested_outer, &step, NULL);
    ASSERT_NOT_NULL(a);
    ASSERT_EQ(vms_fiber_resume(a), VMS_SUSPENDED);
    ASSERT_EQ(step, 1);
    ASSERT_EQ(vms_fiber_resume(a), VMS_DONE);
    ASSERT_EQ(step, 2);
    vms_fiber_destroy(a);
    printf("child: nested ok\n");
}

TEST(nested_kill_returns_to_resumer_fiber)
{
    need_guards();
    int status = run_child(child_nested, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber");
    ASSERT_STR_CONTAINS(out, "child: nested ok");
}

static void *overflowing_thread(void *arg)
{
    (void)arg;
    sink += recurse(0, 0);
    return (void *)1;
}

static void *named_overflowing_thread(void *arg)
{
    pthread_setname_np(pthread_self(), (const char *)arg);
    sink += recurse(0, 0);
    return (void *)1;
}

static void *good_thread(void *arg)
{
    return (void *)(uintptr_t)(recurse(0, 100) * 0 + (uintptr_t)arg);
}

static void child_thread_killed(void *arg)
{
    (void)arg;
    pthread_t bad, good[4];
    for (uintptr_t i = 0; i < 4; i++)
        ASSERT_EQ(vms_thread_create(&good[i], NULL, good_thread, (void *)(i + 10)), 0);
    ASSERT_EQ(vms_thread_create(&bad, NULL, overflowing_thread, NULL), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(bad, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
    for (uintptr_t i = 0; i < 4; i++) {
        ASSERT_EQ(pthread_join(good[i], &r), 0);
        ASSERT_PTR_EQ(r, (void *)(i + 10));
    }
    /* And again: every thread gets its own handler stack, the kill works each time. */
    ASSERT_EQ(vms_thread_create(&bad, NULL, overflowing_thread, NULL), 0);
    ASSERT_EQ(pthread_join(bad, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
    /* A thread named after it started is reported by that name. */
    ASSERT_EQ(vms_thread_create(&bad, NULL, named_overflowing_thread, "parser-7"), 0);
    ASSERT_EQ(pthread_join(bad, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
    printf("child: threads ok\n");
}

TEST(thread_overflow_joins_as_killed)
{
    need_guards();
    int status = run_child(child_thread_killed, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread \"\" (id");
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread \"parser-7\"");
    ASSERT_STR_CONTAINS(out, "vmstack: killed thread \"parser-7\"");
    ASSERT_STR_CONTAINS(out, "vmstack: killed thread");
    ASSERT_STR_CONTAINS(out, "child: threads ok");
}

/* A vms thread created by a thread of another name carries that name until it names
 * itself: the report says "" (not the creator's name, which only the first creator's
 * name used to be told apart from). */
static void *creator_thread(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "the-creator");
    pthread_t bad;
    void *r;
    ASSERT_EQ(vms_thread_create(&bad, NULL, overflowing_thread, NULL), 0);
    ASSERT_EQ(pthread_join(bad, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
    return NULL;
}

static void child_thread_by_named_creator(void *arg)
{
    (void)arg;
    pthread_t t;
    void *r;
    /* The main thread creates one first, so that the creator is not the first. */
    ASSERT_EQ(vms_thread_create(&t, NULL, good_thread, (void *)1), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ(pthread_create(&t, NULL, creator_thread, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    printf("child: named creator ok\n");
}

TEST(thread_of_a_named_creator_is_unnamed)
{
    need_guards();
    int status = run_child(child_thread_by_named_creator, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread \"\" (id");
    ASSERT_STR_NOT_CONTAINS(out, "the-creator");
    ASSERT_STR_CONTAINS(out, "child: named creator ok");
}

/* A name with a newline and quotes cannot cut a report line or forge one: every line of
 * the report starts with "vmstack:", and the name is shown with '?' for those bytes (as
 * the "used greatest stack depth" line does); vms_oops.name keeps the name as given. */
static void overflowing_fiber(void *arg)
{
    (void)arg;
    sink += recurse(0, 0);
}

static void child_hostile_names(void *arg)
{
    (void)arg;
    const char *evil = "ev\"il\nforged line";
    vms_fiber *f = vms_fiber_create(overflowing_fiber, NULL, &(vms_fiber_attr){ .name = evil });
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_KILLED);
    ASSERT(strcmp(vms_fiber_oops(f)->name, evil) == 0);
    vms_fiber_destroy(f);
    pthread_t t;
    void *r;
    ASSERT_EQ(vms_thread_create(&t, NULL, named_overflowing_thread, "t\"x\ny"), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
}

TEST(hostile_names_cannot_forge_report_lines)
{
    need_guards();
    int status = run_child(child_hostile_names, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber \"ev?il?forged line\" (id");
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber \"ev?il?forged line\" (id");
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread \"t?x?y\" (id");
    ASSERT_STR_CONTAINS(out, "vmstack: killed thread \"t?x?y\" (id");
    for (const char *line = out; *line;) {
        if (strncmp(line, "vmstack:", 8) != 0) TST_FAIL("a line not from vmstack: %.60s", line);
        const char *nl = strchr(line, '\n');
        if (!nl) break;
        line = nl + 1;
    }
}

/* ---- 10,000 overflows: nothing accumulates ------------------------------------------ */

static long count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    long n = 0;
    while (readdir(d)) n++;
    closedir(d);
    return n;
}

/* Under ASan freed blocks (the program's, ASan's own) stay in ASan's quarantine, and the
 * heap they take resident, up to 256 MiB (each kill mallocked 14 blocks, about 4 KiB,
 * while its call of the noreturn kill was instrumented: see
 * kill_allocates_nothing_and_needs_no_descriptor). Draining it every 64 kills and
 * before RSS is read keeps ASan's heap small, so what the case measures is what vmstack
 * keeps. */
#ifdef TST_ASAN
void __sanitizer_purge_allocator(void);
static void drain_asan_quarantine(void)
{
    __sanitizer_purge_allocator();
}
#else
static void drain_asan_quarantine(void)
{
}
#endif

static int overflow_batch(int n)
{
    int killed = 0;
    vms_fiber_attr attr = { .stack_size = 16 * 1024, .name = "loop" };
    for (int i = 0; i < n; i++) {
        struct job j = { .index = i };
        vms_fiber *f = vms_fiber_create(bad_fiber, &j, &attr);
        if (!f) TST_FAIL("create %d: %s", i, strerror(errno));
        if (vms_fiber_resume(f) != VMS_SUSPENDED) TST_FAIL("fiber %d did not start", i);
        killed += vms_fiber_resume(f) == VMS_KILLED;
        vms_fiber_destroy(f);
        if (i % 64 == 63) drain_asan_quarantine();
    }
    return killed;
}

static void child_ten_thousand(void *arg)
{
    int n = *(int *)arg;
    int devnull = open("/dev/null", O_WRONLY);
    ASSERT_GE(devnull, 0);
    init_report_fd(devnull);                      /* 10,000 reports go nowhere */
    ASSERT_EQ(overflow_batch(200), 200);          /* warm: caches, symbol tables */
    drain_asan_quarantine();
    long fds0 = count_fds(), maps0 = tst_count_maps(), rss0 = tst_rss_kib();
    ASSERT_EQ(overflow_batch(n), n);
    drain_asan_quarantine();
    long fds1 = count_fds(), maps1 = tst_count_maps(), rss1 = tst_rss_kib();
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    printf("fds %ld -> %ld, maps %ld -> %ld, rss %ld -> %ld KiB, overflows %zu\n",
           fds0, fds1, maps0, maps1, rss0, rss1, st.overflows);
    ASSERT_EQ(fds1, fds0);
    ASSERT_LE(maps1, maps0 + 8);
    ASSERT_LE(rss1, rss0 + 16 * 1024);            /* 16 MiB: no per-overflow growth */
    ASSERT_GE(st.overflows, (size_t)n + 200);
    printf("child: loop ok\n");
}

TEST(ten_thousand_overflows_bounded)
{
    need_guards();
    /* TSan keeps the trace of every finished fiber: about 1.3 KiB each, overflow or not. */
    NO_TSAN("the runtime's traces of finished fibers make RSS grow with the fiber count");
    int n = 10000;
    int status = run_child(child_ten_thousand, &n);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: loop ok");
}

/* ---- what a kill needs: no allocation, no descriptor, a clean alternate stack ------ */

/* The kill runs in the fault handler: it may allocate nothing (the overflow may have
 * interrupted the allocator) and open nothing. Under ASan each kill used to run
 * __asan_handle_no_return, which gcc puts before the handler's call of the noreturn kill:
 * on the alternate stack it reads the thread's stack with pthread_getattr_np, 14 mallocs
 * per kill on the main thread (6 on another), and an fopen of /proc/self/maps there:
 * with no descriptor left, ASan's check of it failed ("CHECK failed ...
 * pthread_getattr_np") and the process exited 1 instead of the kill. ASan's allocator
 * hooks count the allocations between the fault and the resume's return (the fiber
 * itself allocates nothing); other builds have no such hook and check the descriptors
 * only. */
#ifdef TST_ASAN
int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void *, size_t),
                                              void (*free_hook)(const volatile void *));
void *__asan_region_is_poisoned(void *beg, size_t size);
#endif
static atomic_long kill_mallocs;
static void overflow_now(void *arg);

static void count_malloc(const volatile void *p, size_t n)
{
    (void)p;
    (void)n;
    atomic_fetch_add(&kill_mallocs, 1);
}

static void ignore_free(const volatile void *p)
{
    (void)p;
}

/* One fiber that overflows at once, killed; the allocations made meanwhile in *mallocs. */
static void kill_one_counted(long *mallocs)
{
    vms_fiber_attr attr = { .stack_size = 64 * 1024, .name = "counted" };
    vms_fiber *f = vms_fiber_create(overflow_now, NULL, &attr);
    ASSERT_NOT_NULL(f);
    long before = atomic_load(&kill_mallocs);
    ASSERT_EQ(vms_fiber_resume(f), VMS_KILLED);
    *mallocs = atomic_load(&kill_mallocs) - before;
    vms_fiber_destroy(f);
}

static void *kill_counted_thread(void *arg)
{
    long *mallocs = arg;
    kill_one_counted(mallocs);   /* the thread's first kill sets its alternate stack up */
    kill_one_counted(mallocs);
    return NULL;
}

static void child_kill_needs_nothing(void *arg)
{
    (void)arg;
    init_report_fd(1);
#ifdef TST_ASAN
    ASSERT_EQ(__sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free), 1);
#else
    (void)count_malloc;
    (void)ignore_free;
#endif
    long on_main, on_thread = -1;
    kill_one_counted(&on_main);   /* first report: symbol tables, caches */
    kill_one_counted(&on_main);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, kill_counted_thread, &on_thread), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
#ifdef TST_ASAN
    printf("allocations during a kill: %ld on the main thread, %ld on another\n", on_main,
           on_thread);
    ASSERT_EQ(on_main, 0);
    ASSERT_EQ(on_thread, 0);
#endif
    /* Every descriptor taken: nothing can be opened during the next kill. */
    struct rlimit rl;
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
    rl.rlim_cur = rl.rlim_cur < 64 ? rl.rlim_cur : 64;
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
    int taken = 0;
    while (dup(2) >= 0) taken++;
    ASSERT_EQ(errno, EMFILE);
    fflush(stdout);
    kill_one_counted(&on_main);
    printf("child: killed with no descriptor left (%d taken)\n", taken);
}

TEST(kill_allocates_nothing_and_needs_no_descriptor)
{
    need_guards();
    int status = run_child(child_kill_needs_nothing, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_EQ(tst_count(out, "vmstack: killed fiber \"counted\""), 5);
    ASSERT_STR_CONTAINS(out, "child: killed with no descriptor left");
}

/* A kill leaves the alternate signal stack for good, its frames never returning. Under
 * ASan the redzones of its instrumented frames stayed poisoned in the shadow, under the
 * next signal's frames: a handler of the program's on that stack (SA_ONSTACK) whose
 * alloca reached them was reported as a stack-buffer-underflow. The kill clears them, as
 * __asan_handle_no_return did before the kill path was kept free of it. Only ASan keeps
 * such a shadow. */
static volatile sig_atomic_t onstack_ran;

static void onstack_alloca_handler(int sig)
{
    (void)sig;
    size_t n = 16 * 1024;
    char *p = alloca(n);
    memset(p, 1, n);                     /* ASan checks the whole range */
    onstack_ran = p[n / 2];
}

static void child_alt_stack_clean(void *arg)
{
    (void)arg;
    init_report_fd(1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = onstack_alloca_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    long unused;
    kill_one_counted(&unused);
    stack_t ss;
    ASSERT_EQ(sigaltstack(NULL, &ss), 0);
    ASSERT_EQ(ss.ss_flags, 0);
    ASSERT_GE(ss.ss_size, (size_t)32 * 1024);   /* the handler's alloca fits */
#ifdef TST_ASAN
    ASSERT_NULL(__asan_region_is_poisoned(ss.ss_sp, ss.ss_size));
#endif
    raise(SIGUSR1);
    ASSERT_EQ(onstack_ran, 1);
    printf("child: handler on the alternate stack after a kill\n");
}

TEST(kill_leaves_the_alternate_stack_unpoisoned)
{
    need_guards();
#ifndef TST_ASAN
    SKIP("only ASan keeps a shadow of the alternate stack");
#endif
    int status = run_child(child_alt_stack_clean, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: handler on the alternate stack after a kill");
}

/* A killed fiber may be destroyed by any thread once vms_fiber_state says KILLED, and
 * its oops read there first: the state must say so only once the thread that killed it
 * is done with its record (the kill went on reading the resumer's context and the
 * task's tool state from it after storing KILLED, and its resumer's bookkeeping read
 * the record again), and the oops written before must be seen with it. The main
 * thread resumes fibers that overflow; another thread checks each one's oops and
 * destroys it as soon as its state says KILLED. */
#define KILL_HANDOFFS 200
static vms_fiber *_Atomic kill_handoff;

static void *destroy_once_killed(void *arg)
{
    int *wrong = arg;
    for (int i = 0; i < KILL_HANDOFFS; i++) {
        vms_fiber *f;
        while (!(f = atomic_load_explicit(&kill_handoff, memory_order_acquire))) sched_yield();
        int s;
        while ((s = vms_fiber_state(f)) == VMS_READY || s == VMS_RUNNING) {}
        const vms_oops *o = vms_fiber_oops(f);
        if (s != VMS_KILLED || !o || o->kind != VMS_OVERFLOW ||
            o->stack_base != vms_stack_base(vms_fiber_stack(f)) || strcmp(o->name, "deep"))
            (*wrong)++;
        vms_fiber_destroy(f);
        atomic_store_explicit(&kill_handoff, NULL, memory_order_release);
    }
    return NULL;
}

static void overflow_now(void *arg)
{
    (void)arg;
    sink += recurse(0, 0);
}

static void child_destroy_once_killed(void *arg)
{
    (void)arg;
    init_report_fd(open("/dev/null", O_WRONLY));
    pthread_t t;
    int wrong = 0;
    ASSERT_EQ(pthread_create(&t, NULL, destroy_once_killed, &wrong), 0);
    vms_fiber_attr attr = { .stack_size = 16 * 1024, .name = "deep" };
    for (int i = 0; i < KILL_HANDOFFS; i++) {
        vms_fiber *f = vms_fiber_create(overflow_now, NULL, &attr);
        ASSERT_NOT_NULL(f);
        atomic_store_explicit(&kill_handoff, f, memory_order_release);
        ASSERT_EQ(vms_fiber_resume(f), VMS_KILLED);
        while (atomic_load_explicit(&kill_handoff, memory_order_acquire)) sched_yield();
    }
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(wrong, 0);
    printf("child: %d killed fibers destroyed by another thread\n", KILL_HANDOFFS);
}

TEST(killed_fiber_destroyed_by_another_thread)
{
    need_guards();
    int status = run_child(child_destroy_once_killed, NULL);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) fprintf(stderr, "%s", out);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "killed fibers destroyed by another thread");
}

/* A killed fiber filled its stack: destroying it gives the pages back at once (the top
 * page stays, zeroed, for the next owner), not with the thread's next batch of frees. */
static void child_killed_stack_returned(void *arg)
{
    (void)arg;
    init_report_fd(open("/dev/null", O_WRONLY));
    struct job j = { .index = 0 };
    vms_fiber *f = vms_fiber_create(bad_fiber, &j, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_resume(f), VMS_KILLED);
    const vms_stack *st = vms_fiber_stack(f);
    uintptr_t lo = (uintptr_t)vms_stack_base(st), hi = lo + vms_stack_size(st);
    long long before = vms__os_resident(lo, hi);
    vms_fiber_destroy(f);
    long long after = vms__os_resident(lo, hi);
    long long page = (long long)vms__os_page_size();
    printf("resident before %lld, after %lld (pages of %lld)\n", before, after, page);
    ASSERT_GE(before, (long long)(hi - lo) / 2);
    ASSERT_LE(after, page);
    printf("child: killed stack returned\n");
}

TEST(killed_fibers_stack_pages_go_back_at_destroy)
{
    need_guards();
    int status = run_child(child_killed_stack_returned, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: killed stack returned");
}

/* The same for a killed vms thread, whose stack is freed only once the thread has ended
 * (by a later reaper): its pages go back when the kill returns to the thread's start,
 * so after the join only the top page can be resident. The stack's range comes from
 * the oops, through the hook. */
static void *stack_of_killed;
static size_t size_of_killed;

static void note_killed_stack(const vms_oops *o, void *ctx)
{
    (void)ctx;
    stack_of_killed = o->stack_base;
    size_of_killed = o->stack_size;
}

static void child_killed_thread_stack_returned(void *arg)
{
    (void)arg;
    init_report_fd(open("/dev/null", O_WRONLY));
    vms_set_oops_hook(note_killed_stack, NULL);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, overflowing_thread, NULL), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
    ASSERT_NOT_NULL(stack_of_killed);
    uintptr_t lo = (uintptr_t)stack_of_killed, hi = lo + size_of_killed;
    long long after = vms__os_resident(lo, hi);
    printf("resident after the join %lld of %zu\n", after, size_of_killed);
    ASSERT_LE(after, (long long)vms__os_page_size());
    printf("child: killed thread's stack returned\n");
}

TEST(killed_threads_stack_pages_go_back_at_its_end)
{
    need_guards();
    int status = run_child(child_killed_thread_stack_returned, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: killed thread's stack returned");
}

/* ---- the end-of-stack magic (VMS_END_CHECK) and usage lines (VMS_PAINT) ---------- */

static void init_flags(unsigned flags, int on_overflow)
{
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.flags = flags;
    cfg.on_overflow = on_overflow;
    int e = vms_init(&cfg);
    if (e) TST_FAIL("vms_init: %d", e);
}

/* Overwrites the lowest word of its own stack (below sp, so nothing faults), as a
 * frame that skipped past the guard's reach but not the end magic would. */
static void corrupting_fiber(void *arg)
{
    int *stage = arg;
    const vms_stack *st = vms_fiber_stack(vms_fiber_self());
    volatile uint64_t *bottom = vms_stack_base(st);
    *stage = 1;
    bottom[0] = 0x0123456789abcdefull;
    vms_fiber_yield();                            /* the check happens at this switch */
    *stage = 2;                                   /* never reached */
}

static void child_end_check(void *arg)
{
    int policy = *(int *)arg;
    init_flags(VMS_END_CHECK, policy);
    int stage = 0;
    vms_fiber_attr attr = { .stack_size = 0, .name = "smasher" };
    vms_fiber *f = vms_fiber_create(corrupting_fiber, &stage, &attr);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_KILLED);
    ASSERT_EQ(stage, 1);
    const vms_oops *o = vms_fiber_oops(f);
    ASSERT_NOT_NULL(o);
    ASSERT_PTR_EQ(o->stack_base, vms_stack_base(vms_fiber_stack(f)));
    ASSERT(strcmp(o->name, "smasher") == 0);
    vms_fiber_destroy(f);
    /* An intact fiber is not affected. */
    struct job j = { .index = 3 };
    vms_fiber *g = vms_fiber_create(good_fiber, &j, NULL);
    ASSERT_NOT_NULL(g);
    while (vms_fiber_resume(g) == VMS_SUSPENDED) {}
    ASSERT_EQ(vms_fiber_state(g), VMS_DONE);
    ASSERT_EQ(j.done, 1);
    vms_fiber_destroy(g);
    printf("child: end check ok\n");
}

TEST(end_magic_corruption_kills_fiber)
{
    int policy = VMS_KILL_TASK;
    int status = run_child(child_end_check, &policy);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: corrupted stack end detected in fiber \"smasher\"");
    ASSERT_STR_CONTAINS(out, "child: end check ok");
}

TEST(end_magic_corruption_aborts)
{
    int policy = VMS_ABORT;
    int status = run_child(child_end_check, &policy);
    ASSERT_SIGNALED(status, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: corrupted stack end detected in fiber \"smasher\"");
    ASSERT_STR_NOT_CONTAINS(out, "child: end check ok");
}

static size_t remaining_seen, size_seen;
static void remaining_fiber(void *arg)
{
    (void)arg;
    remaining_seen = vms_stack_remaining();
    size_seen = vms_stack_size(vms_fiber_stack(vms_fiber_self()));
}

static void child_remaining_reserve(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK | VMS_PAINT, VMS_KILL_TASK);
    vms_fiber_attr attr = { .stack_size = 0, .name = "painted" };
    vms_fiber *f = vms_fiber_create(remaining_fiber, NULL, &attr);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    /* sp is at most a page below the top, and the 16 magic bytes are not counted. */
    ASSERT_LE(remaining_seen, size_seen - 16);
    ASSERT_GT(remaining_seen, size_seen - 4096);
    vms_fiber_destroy(f);
    printf("child: reserve ok\n");
}

TEST(end_check_reserve_and_usage_line)
{
    int status = run_child(child_remaining_reserve, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: reserve ok");
    /* With VMS_PAINT the task layer hands the finished fiber to the debug layer. */
    ASSERT_STR_CONTAINS(out, "vmstack: fiber \"painted\"");
    ASSERT_STR_CONTAINS(out, "used greatest stack depth");
}

/* A program checks its depth with vms_stack_remaining near the end of its stack, where
 * the call itself may overflow: that is the fiber's overflow, killed alone. It was taken
 * for a fault inside vmstack, which "may hold one of its locks", and aborted the
 * process. The fiber leaves itself from 160 bytes below its end to 160 bytes above it
 * (alloca, sized by a vms_stack_remaining that may count from below its own frame),
 * then calls vms_stack_remaining: every case must end with the fiber killed or done,
 * never the process. */
static volatile long edge_leave;
static volatile int edge_self;   /* the call at the edge is vms_stack_self instead */

static NOIPA void at_the_edge(void)
{
    if (edge_self) sink += (unsigned long)(uintptr_t)vms_stack_self();
    else sink += vms_stack_remaining();
}

static void edge_fiber(void *arg)
{
    (void)arg;
    size_t rem = vms_stack_remaining();
    volatile char *p = alloca(rem - (size_t)(edge_leave + 64));
    p[0] = 1;
    sink += (unsigned long)p[0];
    at_the_edge();
}

/* Under ASan the fiber's alloca calls the runtime (__asan_alloca_poison) through the
 * PLT: its first call in the process runs the dynamic loader's resolver on the fiber's
 * stack (an xsave area of some KiB), and an overflow in the loader is one vmstack must
 * not kill. A fiber of the same function with room to spare resolves those calls first
 * (the children are forked, so each needs it); without ASan the path has no PLT call. */
static void asan_resolve_first(void (*fn)(void *))
{
#ifdef TST_ASAN
    long leave = edge_leave;
    edge_leave = 16 * 1024;
    vms_fiber *f = vms_fiber_create(fn, NULL, NULL);
    if (!f || vms_fiber_resume(f) != VMS_DONE) _exit(7);
    vms_fiber_destroy(f);
    edge_leave = leave;
#else
    (void)fn;
#endif
}

static void edge_child(void *arg)
{
    edge_leave = *(long *)arg;
    init_report_fd(1);
    asan_resolve_first(edge_fiber);
    vms_fiber *f = vms_fiber_create(edge_fiber, NULL, NULL);
    if (!f) _exit(3);
    int st = vms_fiber_resume(f);
    printf("state %d\n", st);
    fflush(stdout);
    _exit(st == VMS_KILLED ? 4 : st == VMS_DONE ? 5 : 6);
}

/* Runs child at each distance from the stack's end: each case must end with the fiber
 * killed (some must) or done, never the process. */
static void edge_cases(void (*child)(void *))
{
    int killed = 0;
    for (long leave = -160; leave <= 160; leave += 8) {
        int st = run_child(child, &leave);
        if (!WIFEXITED(st) || (WEXITSTATUS(st) != 4 && WEXITSTATUS(st) != 5))
            TST_FAIL("leaving %ld bytes: the process died or failed (status 0x%x):\n%.3000s",
                     leave, st, out);
        if (WEXITSTATUS(st) == 4) {
            killed++;
            ASSERT_STR_CONTAINS(out, "vmstack: killed fiber");
        }
    }
    ASSERT_GT(killed, 0);   /* some cases did overflow: the test means something */
}

TEST(overflow_inside_vms_stack_remaining_kills_the_fiber)
{
    need_guards();
    edge_cases(edge_child);
}

/* The same with vms_stack_self, which takes no lock either (a runtime asks it for its
 * stack's bounds, possibly deep in a recursion). Where the call writes nothing to the
 * stack (aarch64 at -O2: no frame on a task's stack, a tail call), no case faults inside
 * it, and the kills are at the alloca's write or in the caller's frame: the cases from
 * 160 bytes below the end make sure some are. */
static void self_edge_child(void *arg)
{
    edge_self = 1;
    edge_child(arg);
}

TEST(overflow_inside_vms_stack_self_kills_the_fiber)
{
    need_guards();
    edge_cases(self_edge_child);
}

/* The same near the end of the stack with a call that may take vmstack's locks:
 * vms_stack_alloc (here from the per-thread cache, no lock, but the report cannot tell).
 * An overflow inside it used to abort the process ("cannot kill safely ... vmstack
 * itself may hold one of its locks"); now the call first probes the room its slow part
 * may need (src/internal.h, VMS__ROOM_PROBE) and, with too little left, the fiber is
 * killed there, before anything is taken: never an abort. A fault in the fiber's own
 * frame, at the call, kills the fiber as usual; enough room, and the call returns. */
static NOIPA void alloc_at_the_edge(void)
{
    vms_stack *s = vms_stack_alloc(0);
    sink += (unsigned long)(uintptr_t)s;
    vms_stack_free(s);
}

static void alloc_edge_fiber(void *arg)
{
    (void)arg;
    size_t rem = vms_stack_remaining();
    volatile char *p = alloca(rem - (size_t)(edge_leave + 64));
    p[0] = 1;
    sink += (unsigned long)p[0];
    alloc_at_the_edge();
}

static void alloc_edge_child(void *arg)
{
    edge_leave = *(long *)arg;
    init_report_fd(1);
    vms_stack_free(vms_stack_alloc(0));    /* a stack waits in this thread's cache */
    asan_resolve_first(alloc_edge_fiber);
    vms_fiber *f = vms_fiber_create(alloc_edge_fiber, NULL, NULL);
    if (!f) _exit(3);
    int st = vms_fiber_resume(f);
    printf("state %d\n", st);
    fflush(stdout);
    _exit(st == VMS_KILLED ? 4 : st == VMS_DONE ? 5 : 6);
}

TEST(overflow_inside_vms_stack_alloc_kills_the_fiber)
{
    need_guards();
    /* vms_stack_alloc's first hand-out of a slot makes TSan create the sync object of
     * its state word on the fiber's stack, under TSan's slot lock; an overflow there
     * sends the fault handler, whose atomics TSan intercepts, into that lock: a hang. */
    NO_TSAN("an overflow inside the runtime's locked code hangs the handler's atomics");
    int killed = 0;
    for (long leave = -96; leave <= 512; leave += 8) {
        int st = run_child(alloc_edge_child, &leave);
        if (!WIFEXITED(st) || (WEXITSTATUS(st) != 4 && WEXITSTATUS(st) != 5))
            TST_FAIL("leaving %ld bytes: the process failed (status 0x%x):\n%.3000s",
                     leave, st, out);
        ASSERT_STR_NOT_CONTAINS(out, "cannot kill safely");
        if (WEXITSTATUS(st) == 4) {
            killed++;
            ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
            ASSERT_STR_CONTAINS(out, "vmstack: killed fiber");
        }
    }
    ASSERT_GT(killed, 0);   /* some cases did overflow */
}

/* ---- glibc's cleanup chains after a kill ------------------------------------------ */

/* A task killed inside a pthread_cleanup_push region (C without -fexceptions: the
 * handler's buffer sits in the task's frame and glibc's thread points at it) never pops
 * it; glibc's older chain, which its own waiting functions use, the same. The thread's
 * next pthread_exit or cancellation followed the chains into the dead stack: it ran the
 * killed task's handlers and long-jumped into its frames (a crash, or the dead frames
 * running again). Now the chains are cut back at the kill: the killed task's handlers
 * never run (a kill runs nothing of it), the thread's own still do. */
#ifdef __GLIBC__
void _pthread_cleanup_push(struct _pthread_cleanup_buffer *buf, void (*fn)(void *), void *arg);
void _pthread_cleanup_pop(struct _pthread_cleanup_buffer *buf, int execute);

static atomic_int handlers_run[4];   /* [0] the killed task's, [1] its old-chain one,
                                        [2] the thread's own, [3] the destructor's cancel */

static void count_handler(void *arg)
{
    atomic_fetch_add(&handlers_run[(uintptr_t)arg], 1);
}

/* The killed task: one handler on each chain, then the overflow. */
static NOIPA void overflow_in_cleanup_regions(void)
{
    struct _pthread_cleanup_buffer old;
    _pthread_cleanup_push(&old, count_handler, (void *)1);
    pthread_cleanup_push(count_handler, (void *)0);
    sink += recurse(0, 0);
    pthread_cleanup_pop(0);
    _pthread_cleanup_pop(&old, 0);
}

static void fiber_overflows_in_cleanup(void *arg)
{
    (void)arg;
    overflow_in_cleanup_regions();
}

/* A pthread of the program's own whose fiber is killed, then pthread_exit: its stack
 * is kept (not destroyed) so that dead buffers are still there to be followed. */
static void *thread_exits_after_fiber_kill(void *arg)
{
    pthread_cleanup_push(count_handler, (void *)2);
    vms_fiber *f = vms_fiber_create(fiber_overflows_in_cleanup, NULL, NULL);
    if (!f || vms_fiber_resume(f) != VMS_KILLED) return NULL;
    pthread_exit(arg);
    pthread_cleanup_pop(0);
    return NULL;
}

static void child_fiber_killed_in_cleanup(void *arg)
{
    (void)arg;
    init_report_fd(open("/dev/null", O_WRONLY));
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, thread_exits_after_fiber_kill, (void *)42), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)42);
    ASSERT_EQ(atomic_load(&handlers_run[0]), 0);
    ASSERT_EQ(atomic_load(&handlers_run[1]), 0);
    ASSERT_EQ(atomic_load(&handlers_run[2]), 1);
    printf("child: fiber cleanup ok\n");
}

TEST(fiber_killed_in_cleanup_region_leaves_the_thread_exitable)
{
    need_guards();
    int status = run_child(child_fiber_killed_in_cleanup, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: fiber cleanup ok");
}

/* A killed vms thread whose thread-specific-data destructor is cancelled (a request it
 * makes itself, deferred, acted on at pthread_testcancel): the cancellation leaves
 * through glibc's thread start, as on any thread, and the join says PTHREAD_CANCELED. */
static pthread_key_t cancel_key;

static void destructor_cancelled(void *p)
{
    (void)p;
    atomic_fetch_add(&handlers_run[3], 1);
    pthread_cancel(pthread_self());
    pthread_testcancel();
    atomic_fetch_add(&handlers_run[3], 100);   /* never reached */
}

static void *thread_overflows_in_cleanup(void *arg)
{
    pthread_setspecific(cancel_key, arg);
    overflow_in_cleanup_regions();
    return NULL;
}

static void child_thread_killed_in_cleanup(void *arg)
{
    (void)arg;
    init_report_fd(open("/dev/null", O_WRONLY));
    ASSERT_EQ(pthread_key_create(&cancel_key, destructor_cancelled), 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, thread_overflows_in_cleanup, (void *)1), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, PTHREAD_CANCELED);
    ASSERT_EQ(atomic_load(&handlers_run[0]), 0);
    ASSERT_EQ(atomic_load(&handlers_run[1]), 0);
    ASSERT_EQ(atomic_load(&handlers_run[3]), 1);
    /* The process goes on: another vms thread, killed or not. */
    ASSERT_EQ(vms_thread_create(&t, NULL, good_thread, (void *)7), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)7);
    printf("child: thread cleanup ok\n");
}

TEST(thread_killed_in_cleanup_region_can_still_be_cancelled)
{
    need_guards();
    int status = run_child(child_thread_killed_in_cleanup, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: thread cleanup ok");
}
#endif

/* What a killed vms thread leaves of its locks (docs/api.md, Threads): a plain mutex it
 * held stays locked; a robust one is reported to its next locker once the thread has
 * ended; other threads' mutexes, and their work under them, are untouched. */
static pthread_mutex_t held_plain = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t held_robust;
static pthread_mutex_t shared_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned long shared_sum;

static void *thread_overflows_holding_locks(void *arg)
{
    pthread_mutex_lock(&held_plain);
    pthread_mutex_lock(&held_robust);
    sink += recurse(0, 0);
    return arg;
}

static void *adds_under_lock(void *arg)
{
    for (unsigned long i = 1; i <= 20000; i++) {
        pthread_mutex_lock(&shared_lock);
        shared_sum += i;
        pthread_mutex_unlock(&shared_lock);
    }
    return arg;
}

static void child_killed_holding_locks(void *arg)
{
    (void)arg;
    init_report_fd(open("/dev/null", O_WRONLY));
    pthread_mutexattr_t ma;
    ASSERT_EQ(pthread_mutexattr_init(&ma), 0);
    ASSERT_EQ(pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST), 0);
    ASSERT_EQ(pthread_mutex_init(&held_robust, &ma), 0);
    pthread_t bad, good[3];
    for (int i = 0; i < 3; i++)
        ASSERT_EQ(vms_thread_create(&good[i], NULL, adds_under_lock, NULL), 0);
    ASSERT_EQ(vms_thread_create(&bad, NULL, thread_overflows_holding_locks, NULL), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(bad, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
    for (int i = 0; i < 3; i++) ASSERT_EQ(pthread_join(good[i], NULL), 0);
    ASSERT_UEQ(shared_sum, 3ul * (20000ul * 20001ul / 2));
    ASSERT_EQ(pthread_mutex_trylock(&held_plain), EBUSY);
    /* Where the kernel keeps no robust-futex list (qemu-user), a robust mutex is a
     * plain one: nobody marks it. */
    if (vms__os_robust_list_works() == 0) {
        ASSERT_EQ(pthread_mutex_lock(&held_robust), EOWNERDEAD);
        ASSERT_EQ(pthread_mutex_consistent(&held_robust), 0);
        ASSERT_EQ(pthread_mutex_unlock(&held_robust), 0);
    }
    printf("child: locks as documented\n");
}

TEST(killed_thread_leaves_its_locks_as_documented)
{
    need_guards();
    int status = run_child(child_killed_holding_locks, NULL);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child: locks as documented");
}
