/*
 * thread_stress.c - 10,000 vms threads ended each way a thread can end (return,
 * pthread_exit, deferred and asynchronous cancellation, pthread_exit from a fiber the
 * body resumed, detached, killed by an overflow) leave nothing behind: after them,
 * vmstack's live stacks, the process's mappings and its resident memory are what they
 * were after a warm-up of the same. Each case runs in a child process (tst_run_ok).
 */
#include "test.h"
#include "internal.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>

#define WARM   200
#define CYCLES 10000

static sem_t started;
static volatile int never;
static volatile unsigned long sink;

/* Each body uses a few pages of its stack for real, so that a stack kept would cost. */
static NOIPA void use_stack(uintptr_t v)
{
    volatile char buf[8192];
    for (size_t i = 0; i < sizeof buf; i += 512) buf[i] = (char)v;
    sink += (unsigned long)buf[512];
}

static void *returns(void *arg)
{
    use_stack((uintptr_t)arg);
    return arg;
}

static void *exits(void *arg)
{
    use_stack((uintptr_t)arg);
    pthread_exit(arg);
}

static void *waits_for_cancel(void *arg)
{
    use_stack((uintptr_t)arg);
    sem_post(&started);
    for (;;) pause();                             /* a cancellation point */
    return arg;
}

static void *spins_cancellable(void *arg)
{
    use_stack((uintptr_t)arg);
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    sem_post(&started);
    for (;;) __asm__ volatile("" ::: "memory");
    return arg;
}

static vms_fiber *exited_in;                      /* the fiber each exits_in_fiber ran */

static void fiber_exits(void *arg)
{
    use_stack((uintptr_t)arg);
    pthread_exit(arg);
}

static void *exits_in_fiber(void *arg)
{
    exited_in = vms_fiber_create(fiber_exits, arg, NULL);
    if (exited_in) vms_fiber_resume(exited_in);
    return NULL;
}

static void *detached_returns(void *arg)
{
    use_stack((uintptr_t)arg);
    sem_post(&started);
    return arg;
}

static NOIPA unsigned long recurse(unsigned long n)
{
    volatile char buf[128];
    buf[n % sizeof buf] = (char)n;
    if (never) return 0;
    return recurse(n + 1) + buf[(n * 7) % sizeof buf];
}

static void *overflows(void *arg)
{
    sink += recurse(0);
    return arg;
}

enum how { RETURNS, EXITS, CANCELLED, ASYNC_CANCELLED, EXITS_IN_FIBER, DETACHED, KILLED };

/* One thread, ended the given way; fails unless the joiner sees what it should. */
static void one(enum how how, uintptr_t i)
{
    static void *(*const body[])(void *) = {
        returns, exits, waits_for_cancel, spins_cancellable, exits_in_fiber,
        detached_returns, overflows,
    };
    pthread_attr_t a, *attr = NULL;
    if (how == DETACHED) {
        ASSERT_EQ(pthread_attr_init(&a), 0);
        ASSERT_EQ(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED), 0);
        attr = &a;
    }
    pthread_t t;
    void *arg = (void *)(i + 1);
    int e = vms_thread_create(&t, attr, body[how], arg);
    if (e) TST_FAIL("thread %lu: vms_thread_create: %d", (unsigned long)i, e);
    if (attr) pthread_attr_destroy(attr);
    if (how == CANCELLED || how == ASYNC_CANCELLED || how == DETACHED)
        while (sem_wait(&started) != 0) {}
    if (how == DETACHED) return;
    if (how == CANCELLED || how == ASYNC_CANCELLED) ASSERT_EQ(pthread_cancel(t), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    void *want = how == RETURNS || how == EXITS || how == EXITS_IN_FIBER ? arg
               : how == KILLED ? VMS_THREAD_KILLED : PTHREAD_CANCELED;
    if (r != want) TST_FAIL("thread %lu: joined %p, want %p", (unsigned long)i, r, want);
    if (how == EXITS_IN_FIBER) {
        ASSERT_EQ(vms_fiber_state(exited_in), VMS_DONE);
        vms_fiber_destroy(exited_in);
    }
}

/* vmstack's live stacks, once every detached thread has ended and been reaped (no time
 * limit: ctest's timeout guards against a thread that never ends). */
static size_t live_after(enum how how, size_t want)
{
    vms_stats s;
    for (;;) {
        ASSERT_EQ(vms_get_stats(&s), 0);
        if (how != DETACHED || s.stacks_live <= want) return s.stacks_live;
        sched_yield();
    }
}

/* Detached threads are not waited for: after every IN_FLIGHT of them, the next waits
 * until they have ended and been reaped, so that however loaded the machine, no more
 * than IN_FLIGHT are ending at once (the others' stacks are then reused). */
#define IN_FLIGHT 32
static void one_throttled(enum how how, uintptr_t i, size_t live0)
{
    one(how, i);
    if (how == DETACHED && i % IN_FLIGHT == IN_FLIGHT - 1) (void)live_after(how, live0);
}

static void add_opened(struct vms__arena *a, void *ctx)
{
    *(size_t *)ctx += atomic_load(&a->opened);
}

/* Slots opened in every arena so far. A slot once opened stays (its guard with it) and
 * is reused; with mprotect guards it costs two mappings (a guard and a stack). */
static size_t slots_opened(void)
{
    size_t n = 0;
    vms__arena_each(add_opened, &n);
    return n;
}

static void cycles_child(void *arg)
{
    enum how how = *(enum how *)arg;
    ASSERT_EQ(sem_init(&started, 0, 0), 0);
    if (how == KILLED) {
        vms_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.report_fd = open("/dev/null", O_WRONLY);  /* 10,000 reports go nowhere */
        ASSERT_GE(cfg.report_fd, 0);
        ASSERT_EQ(vms_init(&cfg), 0);
    }
    for (uintptr_t i = 0; i < WARM; i++) one_throttled(how, i, 0);
    size_t live0 = live_after(how, 0), opened0 = slots_opened();
    long maps0 = tst_count_maps(), rss0 = tst_rss_kib();
    for (uintptr_t i = 0; i < CYCLES; i++) one_throttled(how, i, live0);
    size_t live1 = live_after(how, live0), opened1 = slots_opened();
    long maps1 = tst_count_maps(), rss1 = tst_rss_kib();
    printf("live stacks %zu -> %zu, slots opened %zu -> %zu, maps %ld -> %ld, "
           "rss %ld -> %ld KiB\n", live0, live1, opened0, opened1, maps0, maps1, rss0, rss1);
    ASSERT_EQ(live1, live0);
    /* Stacks are reused, not opened per thread. Detached threads can still be ending
     * while later ones start, more of them on a loaded machine than in the warm-up (two
     * slots each: the stack and the alternate signal stack), so a few more slots open:
     * at most IN_FLIGHT threads (one_throttled), 64 slots, plus stacks that wait in a
     * scrubbing batch or the alternate stacks' pool at the time; a leak would open about
     * 20,000. */
    ASSERT_LE(opened1, opened0 + 256);
#if !defined(TST_ASAN) && !defined(TST_TSAN)
    /* The sanitizer runtimes keep records of every thread that ever ran: ASan's
     * (55 MiB more after 10,000 plain pthreads too, here), TSan's traces of each thread
     * and of the runtime fiber each vms thread's body runs in (about 2.6 KiB a thread),
     * and their mappings grow by 5 to 15. Mappings grow only by the new slots' (two
     * each with mprotect guards, none with madvise guards) and by the C library's own
     * stacks of threads alive at once, more than in the warm-up (a guard and the stack
     * each, kept by glibc for reuse): at most IN_FLIGHT + 1 detached threads (seen: 20
     * more glibc stacks and 25 more slots, 90 mappings, under load with mprotect
     * guards), one thread otherwise. */
    long per_slot = strcmp(vms__arena_guard_method(), "mprotect") == 0 ? 2 : 0;
    long at_once = how == DETACHED ? IN_FLIGHT + 1 : 1;
    ASSERT_LE(maps1, maps0 + 8 + per_slot * (long)(opened1 - opened0) + 2 * at_once);
    ASSERT_LE(rss1, rss0 + 4 * 1024);     /* 4 MiB: nothing grows per thread */
#endif
    printf("child: cycles ok\n");
}

static void run_cycles(enum how how)
{
    char out[4096];
    tst_run_ok(cycles_child, &how, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "child: cycles ok");
}

/* Under TSan a vms thread's body runs in one of the runtime's fibers, from which it
 * refuses pthread_exit and the unwinding of a cancellation (src/track.h). */
#define NO_TSAN_UNWIND() NO_TSAN("the body runs in a TSan fiber, which may not be unwound")

TEST(returns)
{
    run_cycles(RETURNS);
}

TEST(pthread_exit)
{
    NO_TSAN_UNWIND();
    run_cycles(EXITS);
}

TEST(deferred_cancellation)
{
    NO_TSAN_UNWIND();
    run_cycles(CANCELLED);
}

TEST(asynchronous_cancellation)
{
    NO_TSAN_UNWIND();
    run_cycles(ASYNC_CANCELLED);
}

TEST(pthread_exit_in_a_fiber)
{
    NO_TSAN_UNWIND();
    run_cycles(EXITS_IN_FIBER);
}

TEST(detached)
{
    run_cycles(DETACHED);
}

TEST(killed)
{
    NEED_GUARD_FAULTS();
    run_cycles(KILLED);
}
