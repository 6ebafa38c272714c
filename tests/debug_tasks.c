/*
 * debug_tasks.c - the debug layer as the task layer uses it: a corrupted end-of-stack
 * word is caught at the fiber's next switch (or a thread's exit) and kills only that task
 * (or, with VMS_ABORT, the process by SIGSEGV); the "used greatest stack depth" line of
 * real tasks; vms_stack_remaining() leaves the magic's 16 bytes out (the task layer's
 * calls into debug.c, in fiber.c). Each case runs in a forked child with its own
 * configuration.
 */
#include "internal.h"
#include "test.h"

#include <pthread.h>
#include <sys/wait.h>

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
    ASSERT_EQ(vms_init(&c), 0);
}

/* Writes over the lowest word of the running fiber's own stack, as an overrun that got
 * that far would, then yields (the switch that must catch it) and, if it ever runs
 * again, says so. */
static void corrupt_fn(void *arg)
{
    (void)arg;
    const vms_stack *st = vms_fiber_stack(vms_fiber_self());
    ((volatile uint64_t *)vms_stack_base(st))[1] = 0x4242424242424242ull;
    vms_fiber_yield();
    fprintf(stderr, "corrupted fiber ran again\n");
}

/* A sibling that must be unaffected: sums 1..n across yields. */
struct sum { int n; long total; };
static void sum_fn(void *arg)
{
    struct sum *s = arg;
    for (int i = 1; i <= s->n; i++) {
        s->total += i;
        vms_fiber_yield();
    }
}

/* The oops hook sees an end-magic kill as it sees an overflow's. */
static void say_hook(const vms_oops *o, void *ctx)
{
    (void)ctx;
    fprintf(stderr, "hook: kind %d, task \"%s\", base %s\n", o->kind, o->name ? o->name : "",
            o->stack_base && o->fault_addr == o->stack_base ? "ok" : "wrong");
}

static void caught_at_switch_child(void *arg)
{
    int policy = *(int *)arg;
    init_flags(VMS_END_CHECK, policy);
    vms_set_oops_hook(say_hook, NULL);
    struct sum s = { 10, 0 };
    vms_fiber_attr a1 = { 0, "victim" }, a2 = { 0, "sibling" };
    vms_fiber *bad = vms_fiber_create(corrupt_fn, NULL, &a1);
    vms_fiber *good = vms_fiber_create(sum_fn, &s, &a2);
    ASSERT_NOT_NULL(bad);
    ASSERT_NOT_NULL(good);
    ASSERT_EQ(vms_fiber_resume(good), VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_resume(bad), VMS_KILLED);      /* abort: never returns */
    ASSERT_EQ(policy, VMS_KILL_TASK);
    ASSERT_EQ(vms_fiber_state(bad), VMS_KILLED);
    const vms_oops *o = vms_fiber_oops(bad);
    ASSERT_NOT_NULL(o);
    ASSERT_PTR_EQ(o->stack_base, vms_stack_base(vms_fiber_stack(bad)));
    ASSERT_EQ(vms_fiber_resume(bad), -EINVAL);        /* killed stays killed */
    vms_stats stats;
    ASSERT_EQ(vms_get_stats(&stats), 0);
    ASSERT_EQ(stats.overflows, 1);                     /* counted like an overflow */
    int st;
    while ((st = vms_fiber_resume(good)) == VMS_SUSPENDED) {}
    ASSERT_EQ(st, VMS_DONE);
    ASSERT_EQ(s.total, 55);
    vms_fiber_destroy(bad);
    vms_fiber_destroy(good);
    fprintf(stderr, "sibling finished\n");
}

TEST(end_corruption_caught_at_next_switch)
{
    int policy = VMS_KILL_TASK;
    const char *o = run(caught_at_switch_child, &policy);
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in fiber \"victim\" (id ");
    ASSERT_STR_CONTAINS(o, "end word 0x4242424242424242 (expected 0x57ac6e9d57ac6e9d)");
    ASSERT_STR_CONTAINS(o, "hook: kind 1, task \"victim\", base ok\nvmstack: killed fiber \"victim\"");
    ASSERT_STR_NOT_CONTAINS(o, "corrupted fiber ran again");
    ASSERT_STR_CONTAINS(o, "sibling finished");
}

TEST(end_corruption_abort_policy)
{
    int policy = VMS_ABORT;
    int st = tst_fork(caught_at_switch_child, &policy, out, sizeof out);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: corrupted stack end detected in fiber \"victim\"");
    ASSERT_STR_CONTAINS(out, "hook: kind 1, task \"victim\", base ok\nvmstack: aborting\n");
    ASSERT_STR_NOT_CONTAINS(out, "sibling finished");
}

/* A fiber that resumes another switches away from itself: its end magic is checked
 * there too, before the other runs (the check lives off the usual resume's fast path). */
static void inner_fn(void *arg)
{
    (void)arg;
    fprintf(stderr, "inner ran\n");
}

static void corrupt_then_resume_fn(void *arg)
{
    const vms_stack *st = vms_fiber_stack(vms_fiber_self());
    ((volatile uint64_t *)vms_stack_base(st))[1] = 0x4343434343434343ull;
    vms_fiber_resume(arg);
    fprintf(stderr, "corrupted fiber ran on\n");
}

static void caught_at_resume_child(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK, VMS_KILL_TASK);
    vms_fiber_attr ai = { 0, "inner" }, ao = { 0, "outer" };
    vms_fiber *inner = vms_fiber_create(inner_fn, NULL, &ai);
    ASSERT_NOT_NULL(inner);
    /* Twice: the inner fiber's first resume, then one of a fiber this thread owns. */
    for (int round = 0; round < 2; round++) {
        vms_fiber *outer = vms_fiber_create(corrupt_then_resume_fn, inner, &ao);
        ASSERT_NOT_NULL(outer);
        ASSERT_EQ(vms_fiber_resume(outer), VMS_KILLED);
        ASSERT_EQ(vms_fiber_state(inner), VMS_READY);
        vms_fiber_destroy(outer);
    }
    ASSERT_EQ(vms_fiber_resume(inner), VMS_DONE);       /* still fine, and ours */
    vms_fiber_destroy(inner);
    fprintf(stderr, "main went on\n");
}

TEST(end_corruption_caught_when_resuming_another)
{
    const char *o = run(caught_at_resume_child, NULL);
    ASSERT_EQ(tst_count(o, "vmstack: corrupted stack end detected in fiber \"outer\""), 2);
    ASSERT_STR_CONTAINS(o, "end word 0x4343434343434343");
    ASSERT_STR_NOT_CONTAINS(o, "corrupted fiber ran on");
    ASSERT_EQ(tst_count(o, "inner ran"), 1);
    ASSERT_STR_CONTAINS(o, "main went on");
}

/* Without VMS_END_CHECK nothing is checked: the same fiber is resumed as usual. */
static void unchecked_child(void *arg)
{
    (void)arg;
    init_flags(0, 0);
    vms_fiber *bad = vms_fiber_create(corrupt_fn, NULL, NULL);
    ASSERT_NOT_NULL(bad);
    ASSERT_EQ(vms_fiber_resume(bad), VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_resume(bad), VMS_DONE);
    vms_fiber_destroy(bad);
}

TEST(end_check_off_does_nothing)
{
    const char *o = run(unchecked_child, NULL);
    ASSERT_STR_NOT_CONTAINS(o, "corrupted stack end");
    ASSERT_STR_CONTAINS(o, "corrupted fiber ran again");
}

/* A vms thread whose body corrupts its stack end and returns: killed at its exit. */
static void *corrupt_thread(void *arg)
{
    (void)arg;
    volatile char here = 0;
    struct vms__where w;
    ASSERT_EQ(vms__arena_where((const void *)&here, &w), VMS__WHERE_STACK);
    ((volatile uint64_t *)(void *)w.st->base)[0] = 0;
    return (void *)1;
}

static void thread_child(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK, 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, corrupt_thread, NULL), 0);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
}

TEST(end_corruption_in_thread)
{
    const char *o = run(thread_child, NULL);
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in thread ");
    ASSERT_STR_CONTAINS(o, "end word 0x0000000000000000 (expected 0x57ac6e9d57ac6e9d)");
}

/* The same in the child of a fork made by the body: there the thread is the main
 * thread, whose kill would end the child with status 0; the child dies by SIGSEGV. */
static void *fork_corrupt_thread(void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) return corrupt_thread(arg);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    return (void *)(intptr_t)st;
}

static void fork_thread_child(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK, 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, fork_corrupt_thread, NULL), 0);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    int st = (int)(intptr_t)r;
    fprintf(stderr, "the body's child: %s %d\n", WIFSIGNALED(st) ? "signal" : "exit",
            WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
}

TEST(end_corruption_in_a_forked_body_kills_the_child)
{
    NO_TSAN("TSan cannot follow a fork made on a task's stack (tests/fork.c)");
    const char *o = run(fork_thread_child, NULL);
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in thread ");
    ASSERT_STR_CONTAINS(o, "vmstack: this thread is the process's main thread");
    ASSERT_STR_CONTAINS(o, "vmstack: aborting\n");
    ASSERT_STR_CONTAINS(o, "the body's child: signal 11\n");
    ASSERT_STR_NOT_CONTAINS(o, "vmstack: killed thread");
}

/* pthread_exit inside a fiber that overwrote its end magic: the thread's exit unwinds
 * the fiber without a switch, and the check is made there, as at any task's end: the
 * report, the count, and the fiber KILLED (not DONE). */
static void corrupt_exit_fn(void *arg)
{
    (void)arg;
    const vms_stack *st = vms_fiber_stack(vms_fiber_self());
    ((volatile uint64_t *)vms_stack_base(st))[0] = 0x4444444444444444ull;
    pthread_exit((void *)7);
}

static vms_fiber *exit_victim;

static void *exit_thread(void *arg)
{
    (void)arg;
    vms_fiber_attr a = { 0, "exiter" };
    exit_victim = vms_fiber_create(corrupt_exit_fn, NULL, &a);
    ASSERT_NOT_NULL(exit_victim);
    vms_fiber_resume(exit_victim);
    return NULL;   /* not reached: the fiber ends the thread */
}

static void exit_child(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK, VMS_KILL_TASK);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, exit_thread, NULL), 0);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)7);
    ASSERT_EQ(vms_fiber_state(exit_victim), VMS_KILLED);
    vms_stats stats;
    ASSERT_EQ(vms_get_stats(&stats), 0);
    ASSERT_EQ(stats.overflows, 1);
    vms_fiber_destroy(exit_victim);
    fprintf(stderr, "joined\n");
}

TEST(end_corruption_caught_at_pthread_exit)
{
    NO_TSAN("the fiber runs in a TSan fiber (src/track.h), from which TSan forbids pthread_exit");
    const char *o = run(exit_child, NULL);
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in fiber \"exiter\" (id ");
    ASSERT_STR_CONTAINS(o, "end word 0x4444444444444444");
    ASSERT_STR_CONTAINS(o, "joined\n");
}

/* The same for a vms thread's body that leaves by pthread_exit: reported and counted
 * (its join has pthread_exit's value). */
static void *corrupt_exit_body(void *arg)
{
    (void)arg;
    volatile char here = 0;
    struct vms__where w;
    ASSERT_EQ(vms__arena_where((const void *)&here, &w), VMS__WHERE_STACK);
    ((volatile uint64_t *)(void *)w.st->base)[0] = 0x4545454545454545ull;
    pthread_exit((void *)9);
}

static void exit_body_child(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK, VMS_KILL_TASK);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, corrupt_exit_body, NULL), 0);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)9);
    vms_stats stats;
    ASSERT_EQ(vms_get_stats(&stats), 0);
    ASSERT_EQ(stats.overflows, 1);
}

TEST(end_corruption_caught_at_pthread_exit_of_a_body)
{
    NO_TSAN("the body runs in a TSan fiber (src/track.h), from which TSan forbids pthread_exit");
    const char *o = run(exit_body_child, NULL);
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in thread ");
    ASSERT_STR_CONTAINS(o, "end word 0x4545454545454545");
}

/* The magic's bytes are not room the task may plan to use. */
struct room { size_t remaining, below_sp; };
static void room_fn(void *arg)
{
    struct room *r = arg;
    volatile char here = 0;
    r->remaining = vms_stack_remaining();
    r->below_sp = (size_t)((const char *)&here - (char *)vms_stack_base(vms_fiber_stack(vms_fiber_self())));
}

static void remaining_child(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    init_flags(flags, 0);
    struct room r;
    vms_fiber *f = vms_fiber_create(room_fn, &r, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    vms_fiber_destroy(f);
    /* remaining is measured a little below `here`, in the callee. */
    size_t reserve = (flags & VMS_END_CHECK) ? 16 : 0;
    ASSERT_LE(r.remaining, r.below_sp - reserve);
    ASSERT_GT(r.remaining + 512, r.below_sp - reserve);
    fprintf(stderr, "remaining %zu below_sp %zu\n", r.remaining, r.below_sp);
}

/* The bounds above leave room for the callee's frame, which hides the magic's 16 bytes:
 * the same code measures exactly VMS__END_MAGIC_SIZE less with the check than without. */
static size_t remaining_gap(unsigned flags)
{
    const char *o = run(remaining_child, &flags);
    size_t remaining, below_sp;
    const char *line = strstr(o, "remaining ");
    ASSERT_NOT_NULL(line);
    ASSERT_EQ(sscanf(line, "remaining %zu below_sp %zu", &remaining, &below_sp), 2);
    return below_sp - remaining;
}

TEST(remaining_leaves_out_the_magic)
{
    size_t with = remaining_gap(VMS_END_CHECK), without = remaining_gap(0);
    ASSERT_EQ(with, without + VMS__END_MAGIC_SIZE);
}

/* The kernel-style line for real tasks, at their end, for new maxima only. */
static __attribute__((noinline)) int deep(int n)
{
    volatile char frame[2000];
    frame[0] = (char)(n + 1);
    frame[1999] = (char)(n + 1);
    int r = n ? deep(n - 1) : frame[1999];
    /* The frame escapes after the call, so no compiler turns this into a loop. */
    __asm__ volatile("" : : "r"(frame) : "memory");
    return r + frame[0];
}

static void deep_fn(void *arg)
{
    deep(*(int *)arg);
}

static void *deep_thread(void *arg)
{
    deep(*(int *)arg);
    return NULL;
}

static void depth_line_child(void *arg)
{
    init_flags(*(unsigned *)arg, 0);
    int levels[] = { 20, 5, 40 };
    for (int i = 0; i < 3; i++) {
        vms_fiber_attr a = { 0, i == 1 ? "shallow" : "deep" };
        vms_fiber *f = vms_fiber_create(deep_fn, &levels[i], &a);
        ASSERT_NOT_NULL(f);
        ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
        vms_fiber_destroy(f);
    }
    pthread_t t;
    int n = 80;
    ASSERT_EQ(vms_thread_create(&t, NULL, deep_thread, &n), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

/* With and without VMS_END_CHECK: "bytes left" leaves the end magic's 16 bytes out, as
 * vms_stack_remaining does (it counted them as room). */
TEST(greatest_depth_line_of_real_tasks)
{
    const unsigned configs[] = { VMS_PAINT, VMS_PAINT | VMS_END_CHECK };
    for (size_t c = 0; c < 2; c++) {
        unsigned flags = configs[c];
        const char *o = run(depth_line_child, &flags);
        ASSERT_STR_CONTAINS(o, "vmstack: fiber \"deep\" (id ");
        ASSERT_STR_CONTAINS(o, "used greatest stack depth: ");
        ASSERT_STR_NOT_CONTAINS(o, "\"shallow\"");
        ASSERT_STR_CONTAINS(o, "vmstack: thread ");
        /* Two fibers with new maxima (20 and 40 levels), one thread. */
        int lines = 0;
        for (const char *p = o; (p = strstr(p, "used greatest stack depth")) != NULL; p++) lines++;
        ASSERT_EQ(lines, 3);
        /* 40 levels of 2000-byte frames: more than 80000 bytes, and the left figure adds up. */
        const char *p = strstr(o, "fiber \"deep\"");
        p = strstr(p + 1, "fiber \"deep\"");
        ASSERT_NOT_NULL(p);
        size_t used = 0, left = 0;
        ASSERT_EQ(sscanf(strstr(p, "depth: "), "depth: %zu bytes, %zu bytes left", &used, &left), 2);
        ASSERT_GT(used, 80000);
        ASSERT_LT(used, 100000);
        ASSERT_EQ(used + left, 256 * 1024 - ((flags & VMS_END_CHECK) ? 16 : 0));
    }
}

/* vmstack.h: with VMS_PAINT a thread's stack counts in the histogram once the thread is
 * joined. Its stack is freed only by a reap (docs/internals.md), so vms_stack_usage
 * reaps first, as vms_get_stats does: without that a program that joined its threads
 * and asked at once found none of them counted. */
static void histogram_thread_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT, 0);
    pthread_t t;
    int n = 10;   /* 10 frames of 2000 bytes: about 20 KB, in the 8-page bucket */
    ASSERT_EQ(vms_thread_create(&t, NULL, deep_thread, &n), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    vms_usage u;
    memset(&u, 0, sizeof u);
    ASSERT_EQ(vms_stack_usage(&u, 1), 1);
    ASSERT_EQ(u.stack_size, 256 * 1024);
    ASSERT_EQ(u.stacks, 1);
    ASSERT_GT(u.max_used, 20000);
    ASSERT_LT(u.max_used, 32768);
}

TEST(histogram_counts_a_joined_thread)
{
    run(histogram_thread_child, NULL);
}

/* With VMS_NO_SCRUB, the alternate signal stacks of threads that ended, beyond what
 * vmstack keeps for later threads, go back to the cache and may be handed out to the
 * program. What signal handlers left on them (an oops report, a handler of the
 * program's own) is not use by the new owner: its high-water mark starts at 0. */
enum { ALT_THREADS = 80 };
static pthread_barrier_t alt_barrier;

static void alt_handler(int sig)
{
    (void)sig;
    volatile char buf[20000];
    memset((char *)buf, 0x5a, sizeof buf);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

static void *alt_thread(void *arg)
{
    (void)arg;
    raise(SIGUSR1);                        /* runs on this thread's alternate stack */
    pthread_barrier_wait(&alt_barrier);    /* every thread's alternate stack is live */
    return NULL;
}

static void alt_reuse_child(void *arg)
{
    (void)arg;
    vms_config c;
    memset(&c, 0, sizeof c);
    c.flags = VMS_PAINT | VMS_NO_SCRUB;
    c.cache_per_thread = 1024;             /* freed stacks keep their pages */
    ASSERT_EQ(vms_init(&c), 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = alt_handler;
    sa.sa_flags = SA_ONSTACK;
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    ASSERT_EQ(pthread_barrier_init(&alt_barrier, NULL, ALT_THREADS), 0);
    static pthread_t t[ALT_THREADS];
    for (int i = 0; i < ALT_THREADS; i++)
        ASSERT_EQ(vms_thread_create(&t[i], NULL, alt_thread, NULL), 0);
    for (int i = 0; i < ALT_THREADS; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);       /* reaps the threads' stacks */
    size_t size = vms__guard_alt_size();
    for (int i = 0; i < 16; i++) {
        vms_stack *st = vms_stack_alloc(size);
        ASSERT_NOT_NULL(st);
        ASSERT_EQ(vms_stack_max_used(st), 0);
    }
}

TEST(paint_no_scrub_after_alt_stacks)
{
    run(alt_reuse_child, NULL);
}

/* A vms thread is named as the oops names it: by the name it was given
 * (pthread_setname_np), in the "used greatest stack depth" line and in the end-magic
 * report alike. */
static void *named_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "worker");
    if (arg) {
        /* Over the lowest word of this thread's own stack, as an overrun would. */
        struct vms__where w;
        ASSERT_EQ(vms__arena_where(__builtin_frame_address(0), &w), VMS__WHERE_STACK);
        ((volatile uint64_t *)(void *)w.st->base)[1] = 0x4343434343434343ull;
    }
    deep(10);
    return NULL;
}

static void named_thread_child(void *arg)
{
    unsigned flags = *(unsigned *)arg;
    init_flags(flags, 0);
    pthread_t t;
    void *r;
    ASSERT_EQ(vms_thread_create(&t, NULL, named_thread, (flags & VMS_END_CHECK) ? (void *)1 : NULL), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
}

TEST(thread_named_in_depth_line)
{
    unsigned flags = VMS_PAINT;
    const char *o = run(named_thread_child, &flags);
    ASSERT_STR_CONTAINS(o, "vmstack: thread \"worker\" (id ");
}

TEST(thread_named_in_end_report)
{
    unsigned flags = VMS_END_CHECK;
    const char *o = run(named_thread_child, &flags);
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in thread \"worker\" (id ");
    ASSERT_STR_CONTAINS(o, "vmstack: killed thread \"worker\" (id ");
}
