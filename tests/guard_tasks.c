/*
 * guard_tasks.c - the fault handler with the task layer: overflows of fibers and of
 * threads created by vms_thread_create are killed alone while the rest continues; the
 * report names the task; the taint and overflow counters grow; VMS_ABORT dies by
 * SIGSEGV; 16 threads overflowing at once give 16 whole reports that never interleave;
 * 1,000 overflows in a row on one thread; overflows inside malloc or inside a printf
 * callback never deadlock (killed, or aborted with the unsafe-kill reason); a pending
 * cancellation request waits until after the kill; a report that waited in vain for
 * another walks by frame pointers; an overflow inside a signal
 * handler; a wild access from a fiber; which threads are set up as vmstack's own.
 */
#include "island.h"
#include "test.h"

#include <alloca.h>
#include <fcntl.h>
#include <link.h>
#include <printf.h>
#include <pthread.h>
#include <semaphore.h>
#include <setjmp.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>

static char out[4 << 20];
/* Per thread: sixteen threads overflow at once, and one shared sink would be a data race
 * (ThreadSanitizer reports it). */
static _Thread_local volatile int sink;
static volatile int never;

/* Runs a child; ISLAND_SHOW=1 in the environment prints what it wrote (debugging). */
static int run_child(void (*fn)(void *))
{
    int st = tst_fork(fn, NULL, out, sizeof out);
    if (getenv("ISLAND_SHOW")) fprintf(stderr, "---- child output:\n%s----\n", out);
    return st;
}

NOIPA static void init_with(int on_overflow, int report_fd, size_t stack_size)
{
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.on_overflow = on_overflow;
    cfg.report_fd = report_fd;
    cfg.stack_size = stack_size;
    int e = vms_init(&cfg);
    if (e) {
        fprintf(stderr, "vms_init: %d\n", e);
        _exit(3);
    }
}

NOIPA static int island_deep(int n)
{
    volatile char buf[80];
    if (never) return 0;
    buf[0] = (char)n;
    sink += buf[0];
    return island_deep(n + 1) + buf[2];
}

static void overflow_fiber(void *arg)
{
    (void)arg;
    sink += island_deep(0);
}

static void sum_fiber(void *arg)
{
    long *v = arg;
    long s = 0;
    for (int i = 1; i <= 100; i++) {
        s += i;
        if (i == 50) vms_fiber_yield();
    }
    *v = s;
}

static void assert_last_line_starts(char *s, const char *want)
{
    /* qemu-user (the aarch64 cross tests) adds its own line when the child dies of a
     * signal: the report's last line is the one before it. */
    char *q = strstr(s, "qemu: uncaught target signal");
    if (q && (q == s || q[-1] == '\n')) *q = '\0';
    size_t n = strlen(s);
    if (n < 2 || s[n - 1] != '\n') TST_FAIL("no complete last line in:\n%s", s);
    const char *last = s + n - 2;
    while (last > s && last[-1] != '\n') last--;
    if (strncmp(last, want, strlen(want)) != 0)
        TST_FAIL("the last line should start \"%s\" in:\n----\n%s\n----", want, s);
}

/* ---- a fiber is killed alone ------------------------------------------------------- */

static void fiber_kill_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    long sum = 0;
    vms_fiber_attr sib_attr = { 0, "sibling" }, attr = { 0, "parser-17" };
    vms_fiber *sib = vms_fiber_create(sum_fiber, &sum, &sib_attr);
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, &attr);
    if (vms_fiber_resume(sib) != VMS_SUSPENDED) _exit(10);
    int s = vms_fiber_resume(f);
    if (s != VMS_KILLED) {
        printf("state %d\n", s);
        fflush(stdout);
        _exit(11);
    }
    if (vms_fiber_resume(sib) != VMS_DONE || sum != 5050) _exit(12);
    const vms_oops *o = vms_fiber_oops(f);
    if (!o || o->kind != VMS_OVERFLOW || strcmp(o->name, "parser-17") != 0 || o->depth < 100 ||
        o->trace[0] != o->pc || o->overrun == 0 || o->stack_size != vms_stack_size(vms_fiber_stack(f)))
        _exit(13);
    vms_stats stats;
    vms_get_stats(&stats);
    printf("sibling ok, overflows %zu tainted %zu\n", stats.overflows, stats.tainted);
    vms_fiber_destroy(f);
    vms_fiber_destroy(sib);
}

/* ---- thread setup ------------------------------------------------------------------ */

/* A vmstack thread is set up the cheap way (the task layer's thread start is
 * recognized); a thread of the program's own, and the main thread, are not. */
static void *report_setup(void *arg)
{
    (void)arg;
    return vms__guard_thread_is_task() ? (void *)1 : (void *)2;
}

static void *plain_setup(void *arg)
{
    (void)arg;
    if (vms__guard_thread_init() != 0) return NULL;
    return vms__guard_thread_is_task() ? (void *)1 : (void *)2;
}

TEST(thread_setup_knows_vmstack_threads)
{
    tst_asan_default_run_only();   /* the same with ASan's SIGSEGV handling off */
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    ASSERT_EQ(vms_init(&cfg), 0);
    ASSERT(!vms__guard_thread_is_task());
    pthread_t t;
    void *r = NULL;
    ASSERT_EQ(vms_thread_create(&t, NULL, report_setup, NULL), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT(r == (void *)1);
    ASSERT_EQ(pthread_create(&t, NULL, plain_setup, NULL), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT(r == (void *)2);
}

TEST(fiber_killed_alone)
{
    need_guards();
    int st = run_child(fiber_kill_child);
    ASSERT_EXITED(st, 0);
    ASSERT_EQ(strncmp(out, "vmstack: stack overflow in fiber \"parser-17\" (id ", 49), 0);
    ASSERT_STR_CONTAINS(out, ") on thread ");
    ASSERT_STR_CONTAINS(out, "vmstack: Call Trace:\n");
    ASSERT_STR_CONTAINS(out, " frames of island_deep left out ...\n");
    ASSERT_STR_CONTAINS(out, "vmstack:  overflow_fiber+0x");
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber \"parser-17\" (id ");
    ASSERT_STR_CONTAINS(out, "); other tasks continue\nsibling ok, overflows 1 tainted 1\n");
}

static void fiber_abort_child(void *arg)
{
    (void)arg;
    init_with(VMS_ABORT, 0, 0);
    vms_fiber_attr attr = { 0, "doomed" };
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, &attr);
    vms_fiber_resume(f);
    printf("survived\n");
}

TEST(fiber_abort_policy)
{
    need_guards();
    int st = run_child(fiber_abort_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber \"doomed\"");
    ASSERT_STR_NOT_CONTAINS(out, "killed");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* The report names the task that overflowed by its name and id, and the oops hook gets
 * its name (vms_oops.name) before the kill. */
static void name_hook(const vms_oops *o, void *ctx)
{
    (void)ctx;
    struct vms__line l;
    vms__line_reset(&l);
    vms__line_str(&l, "hook: name \"");
    vms__line_str(&l, o->name ? o->name : "(null)");
    vms__line_char(&l, '"');
    size_t n = vms__line_finish(&l);
    if (write(2, l.buf, n) < 0) _exit(9);
}

static void id_then_overflow_fiber(void *arg)
{
    (void)arg;
    struct vms__task_info ti;
    if (vms__task_current(&ti) != 0) _exit(8);
    printf("id %lu\n", ti.id);
    fflush(stdout);
    sink += island_deep(0);
}

static void hook_name_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_set_oops_hook(name_hook, NULL);
    vms_fiber_attr attr = { 0, "named-17" };
    vms_fiber *f = vms_fiber_create(id_then_overflow_fiber, NULL, &attr);
    int r = vms_fiber_resume(f);
    printf("%s\n", r == VMS_KILLED ? "killed" : "not killed");
    fflush(stdout);
    vms_fiber_destroy(f);
}

TEST(report_and_oops_hook_name_the_task)
{
    need_guards();
    int st = run_child(hook_name_child);
    ASSERT_EXITED(st, 0);
    unsigned long id;
    ASSERT_EQ(sscanf(out, "id %lu", &id), 1);
    char first[96], last[96];
    snprintf(first, sizeof first, "vmstack: stack overflow in fiber \"named-17\" (id %lu) on thread ", id);
    snprintf(last, sizeof last, "vmstack: killed fiber \"named-17\" (id %lu); other tasks continue\n", id);
    const char *order[] = { first, "hook: name \"named-17\"\n", last, "killed\n" };
    const char *at = out;
    for (int i = 0; i < 4; i++) {
        const char *p = strstr(at, order[i]);
        if (!p) TST_FAIL("expected \"%s\" in order in:\n----\n%s\n----", order[i], out);
        at = p + strlen(order[i]);
    }
}

/* vms_oops.depth is the number of frames the walk found: for a shallow overflow, which
 * the report prints whole, as many as the Call Trace has lines. */
static void depth_hook(const vms_oops *o, void *ctx)
{
    (void)ctx;
    struct vms__line l;
    vms__line_reset(&l);
    vms__line_str(&l, "hook: depth ");
    vms__line_dec(&l, o->depth);
    size_t n = vms__line_finish(&l);
    if (write(2, l.buf, n) < 0) _exit(9);
}

NOIPA static void touch_the_top(volatile char *buf)
{
    sink += buf[2047];
}

/* Not a leaf: it stores its frame record (at the top of its frame, still inside the
 * stack) before the fault, as a leaf does not on aarch64 (gcc keeps no record there
 * without -mno-omit-leaf-frame-pointer): the frame-pointer walk would then miss the
 * caller, end early and refuse the kill (docs/oops.md). */
NOIPA static void big_local_at_the_bottom(void)
{
    volatile char buf[2048];
    buf[0] = 1;   /* the lowest byte first: below the stack */
    touch_the_top(buf);
}

static void shallow_overflow_fiber(void *arg)
{
    (void)arg;
    volatile char *pad = alloca(vms_stack_remaining() - 1024);
    pad[0] = 0;
    big_local_at_the_bottom();
    sink += pad[0];
}

/* Under ASan an alloca calls the runtime's __asan_alloca_poison through the PLT: bound
 * lazily at the stack's end (the fiber's first alloca), it overflowed inside the dynamic
 * loader's resolver, where vmstack does not kill (docs/api.md, Tools), and the child
 * died by a bare SIGSEGV. An alloca far from the end binds it first. */
NOIPA static void bind_alloca(size_t n)
{
    volatile char *p = alloca(n);
    p[0] = 1;
    sink += p[0];
}

static void depth_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_set_oops_hook(depth_hook, NULL);
    bind_alloca(64);
    vms_fiber *f = vms_fiber_create(shallow_overflow_fiber, NULL, NULL);
    int r = vms_fiber_resume(f);
    printf("%s\n", r == VMS_KILLED ? "killed" : "not killed");
    fflush(stdout);
    vms_fiber_destroy(f);
}

TEST(oops_depth_counts_the_frames_of_the_trace)
{
    need_guards();
    int st = run_child(depth_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "vmstack:  big_local_at_the_bottom+0x");
    ASSERT_STR_NOT_CONTAINS(out, " left out ...");
    const char *p = strstr(out, "vmstack: Call Trace:\n");
    ASSERT_NOT_NULL(p);
    p += strlen("vmstack: Call Trace:\n");
    int lines = 0;
    for (; strncmp(p, "vmstack:  ", 10) == 0; lines++) p = strchr(p, '\n') + 1;
    const char *h = strstr(out, "hook: depth ");
    ASSERT_NOT_NULL(h);
    ASSERT_GT(lines, 1);
    ASSERT_EQ(atoi(h + strlen("hook: depth ")), lines);
}

static void taint_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    for (int i = 0; i < 3; i++) {
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        if (vms_fiber_resume(f) != VMS_KILLED) _exit(10);
        vms_fiber_destroy(f);
    }
    vms_stats stats;
    vms_get_stats(&stats);
    printf("overflows %zu tainted %zu\n", stats.overflows, stats.tainted);
}

TEST(taint_grows_with_each_oops)
{
    need_guards();
    int st = run_child(taint_child);
    ASSERT_EXITED(st, 0);
    const char *order[] = { " tainted 0\n", " tainted 1\n", " tainted 2\n", "overflows 3 tainted 3\n" };
    const char *at = out;
    for (int i = 0; i < 4; i++) {
        const char *p = strstr(at, order[i]);
        if (!p) TST_FAIL("expected \"%s\" in order in:\n%s", order[i], out);
        at = p + 1;
    }
    /* An unnamed fiber. */
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber \"\" (id ");
}

/* Recursion through two call sites taken in no regular order: still one collapsed line. */
NOIPA static int island_two_sites(unsigned n)
{
    volatile char buf[64];
    if (never) return 0;
    buf[0] = (char)n;
    if ((n * 2654435761u) >> 31) return island_two_sites(n + 1) + buf[0];
    int r = island_two_sites(n + 3);
    return r * 2 + buf[1];
}

static void two_sites_fiber(void *arg)
{
    (void)arg;
    sink += island_two_sites(0);
}

static void two_sites_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(two_sites_fiber, NULL, NULL);
    printf("state %d\n", vms_fiber_resume(f));
}

TEST(irregular_recursion_collapsed)
{
    need_guards();
    int st = run_child(two_sites_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, " frames of island_two_sites left out ...\nvmstack:  two_sites_fiber+0x");
    /* Printed: the pc and the frames until both call sites were seen; the thousands
     * of others are left out. */
    ASSERT_GE(tst_count(out, "vmstack:  island_two_sites+0x"), 3);
    ASSERT_LE(tst_count(out, "vmstack:  island_two_sites+0x"), 64);
    ASSERT_STR_CONTAINS(out, "state 4\n");
}

/* A function whose name (500 characters, as long C++ names are when shown mangled)
 * does not fit a report line: the frame lines and the recursion's line cut the name,
 * not what follows it. Before, the line was cut at its end and the frames lost their
 * "+0xoff/0xsize [object]" and the recursion's line its "left out ...". */
#define LONG_CAT_(a, b) a##b
#define LONG_CAT(a, b) LONG_CAT_(a, b)
#define LONG50 island_a_function_name_of_fifty_characters_exactly
#define LONG200 LONG_CAT(LONG_CAT(LONG50, LONG50), LONG_CAT(LONG50, LONG50))
#define LONG_NAME LONG_CAT(LONG_CAT(LONG200, LONG200), LONG_CAT(LONG50, LONG50))
#define STR_(x) #x
#define STR(x) STR_(x)

NOIPA static int LONG_NAME(int n)
{
    volatile char buf[80];
    if (never) return 0;
    buf[0] = (char)n;
    sink += buf[0];
    return LONG_NAME(n + 1) + buf[2];
}

static void long_name_fiber(void *arg)
{
    (void)arg;
    sink += LONG_NAME(0);
}

static void long_name_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(long_name_fiber, NULL, NULL);
    printf("state %d\n", vms_fiber_resume(f));
}

TEST(long_function_name_is_cut_not_the_frame)
{
    need_guards();
    ASSERT_EQ(strlen(STR(LONG_NAME)), 500);
    int st = run_child(long_name_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "state 4\n");
    ASSERT_STR_CONTAINS(out, "vmstack:  long_name_fiber+0x");
    int frames = 0, recursion = 0;
    for (const char *p = out; (p = strstr(p, STR(LONG50))) != NULL; ) {
        const char *bol = p, *eol = strchr(p, '\n');
        while (bol > out && bol[-1] != '\n') bol--;
        ASSERT_NOT_NULL(eol);
        char line[VMS__LINE_MAX + 8];
        ASSERT_LE((size_t)(eol - bol), (size_t)VMS__LINE_MAX + 3);   /* a cut line: "..." */
        memcpy(line, bol, (size_t)(eol - bol));
        line[eol - bol] = '\0';
        if (strncmp(line, "vmstack:  ... ", 14) == 0) {
            /* "... N frames of NAME... left out ..." */
            ASSERT_STR_CONTAINS(line, " frames of " STR(LONG50));
            ASSERT_STR_CONTAINS(line, "... left out ...");
            recursion++;
        } else {
            /* "NAME...+0xoff/0xsize [test_guard_tasks]" */
            ASSERT_EQ(strncmp(line, "vmstack:  " STR(LONG50), 10 + 50), 0);
            ASSERT_STR_CONTAINS(line, "...+0x");
            ASSERT_STR_CONTAINS(line, "/0x");
            ASSERT_STR_CONTAINS(line, " [test_guard_tasks");
            ASSERT_EQ(line[strlen(line) - 1], ']');
            frames++;
        }
        p = eol;
    }
    ASSERT_GE(frames, 2);   /* the faulting one and a call site of the recursion */
    ASSERT_EQ(recursion, 1);
}

/* Two long-named functions calling each other: the recursion's line names both call
 * sites' functions, "of A.../B... left out ...". The first name took all the line's room
 * but the "left out ..." after it, and the second pushed that off the end. */
#define LONG_NAME_B LONG_CAT(LONG_NAME, _b)
NOIPA static int LONG_NAME_B(int n);

NOIPA static int LONG_CAT(LONG_NAME, _a)(int n)
{
    volatile char buf[80];
    if (never) return 0;
    buf[0] = (char)n;
    sink += buf[0];
    return LONG_NAME_B(n + 1) + buf[2];
}

NOIPA static int LONG_NAME_B(int n)
{
    volatile char buf[80];
    if (never) return 0;
    buf[0] = (char)n;
    sink += buf[0];
    return LONG_CAT(LONG_NAME, _a)(n + 1) + buf[2];
}

static void long_pair_fiber(void *arg)
{
    (void)arg;
    sink += LONG_CAT(LONG_NAME, _a)(0);
}

static void long_pair_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(long_pair_fiber, NULL, NULL);
    printf("state %d\n", vms_fiber_resume(f));
}

TEST(long_names_of_a_mutual_recursion_keep_left_out)
{
    need_guards();
    int st = run_child(long_pair_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "state 4\n");
    const char *p = strstr(out, "vmstack:  ... ");
    ASSERT_NOT_NULL(p);
    const char *eol = strchr(p, '\n');
    ASSERT_NOT_NULL(eol);
    char line[VMS__LINE_MAX + 8];
    ASSERT_LE((size_t)(eol - p), (size_t)VMS__LINE_MAX);   /* not cut at its end */
    memcpy(line, p, (size_t)(eol - p));
    line[eol - p] = '\0';
    ASSERT_STR_CONTAINS(line, " frames of " STR(LONG50));
    ASSERT_STR_CONTAINS(line, ".../island_a_function_name");   /* both names, each cut */
    ASSERT_STR_CONTAINS(line, "... left out ...");
    ASSERT_EQ(strcmp(line + strlen(line) - 13, " left out ..."), 0);
}

/* A recursion with frames on both sides of it in the first 64 of the trace: its
 * innermost level calls two plain functions down to the one that overflows, and it is
 * entered through eight plain callers, which the first 64 frames reach. The collapsed
 * line names only the recursion and counts only its frames; the callees are printed
 * before it, the callers after. Before, the callees and callers were taken for call
 * sites of the recursion: every frame was printed, followed by "... 0 frames of
 * island_callee2/island_callee1/island_fixed/island_wrap8/... left out ...". */
#define FIXED_DEPTH 58

NOIPA static int island_blow(int n)
{
    /* Lower than the stack left: the lowest byte of this block lies in the guard. */
    volatile char *p = alloca(vms_stack_remaining() + 16 * 1024);
    p[0] = (char)n;
    return p[0];
}

NOIPA static int island_callee2(int n) { int r = island_blow(n); sink += r; return r + 1; }
NOIPA static int island_callee1(int n) { int r = island_callee2(n); sink += r; return r + 1; }

NOIPA static int island_fixed(int n)
{
    volatile char buf[32];
    buf[0] = (char)n;
    if (n == 0) return island_callee1(n) + buf[0];
    return island_fixed(n - 1) + buf[0];
}

#define ISLAND_WRAP(k, next)                                                            \
    NOIPA static int island_wrap##k(int n) { int r = next(n); sink += r; return r + 1; }
ISLAND_WRAP(8, island_fixed)
ISLAND_WRAP(7, island_wrap8)
ISLAND_WRAP(6, island_wrap7)
ISLAND_WRAP(5, island_wrap6)
ISLAND_WRAP(4, island_wrap5)
ISLAND_WRAP(3, island_wrap4)
ISLAND_WRAP(2, island_wrap3)
ISLAND_WRAP(1, island_wrap2)

static void fixed_fiber(void *arg)
{
    (void)arg;
    sink += island_wrap1(FIXED_DEPTH - 1);
}

static void fixed_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(fixed_fiber, NULL, NULL);
    printf("state %d\n", vms_fiber_resume(f));
}

TEST(recursion_collapsed_between_callees_and_callers)
{
    need_guards();
    int st = run_child(fixed_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "state 4\n");
    ASSERT_STR_CONTAINS(out, "vmstack: Call Trace:\nvmstack:  island_blow+0x");
    ASSERT_STR_CONTAINS(out, "\nvmstack:  island_callee2+0x");
    ASSERT_STR_CONTAINS(out, "\nvmstack:  island_callee1+0x");
    /* Its two call sites (to island_callee1 and to itself) shown once each: the other
     * FIXED_DEPTH - 2 frames of it left out, and then its callers, every one. */
    ASSERT_EQ(tst_count(out, "vmstack:  island_fixed+0x"), 2);
    char want[128];
    snprintf(want, sizeof want, "vmstack:  ... %d frames of island_fixed left out ...\n"
             "vmstack:  island_wrap8+0x", FIXED_DEPTH - 2);
    ASSERT_STR_CONTAINS(out, want);
    for (int k = 1; k <= 8; k++) {
        snprintf(want, sizeof want, "vmstack:  island_wrap%d+0x", k);
        ASSERT_EQ(tst_count(out, want), 1);
    }
    ASSERT_STR_CONTAINS(out, "vmstack:  fixed_fiber+0x");
    ASSERT_STR_NOT_CONTAINS(out, " 0 frames");
}

/* A fiber whose code keeps no frame pointer (a program built with gcc's or clang's
 * default -fomit-frame-pointer): its frame pointer stays where the task started it, at
 * the task's outermost record. libunwind traces it whole and the fiber is killed. The
 * frame-pointer walk (built without libunwind) goes from the pc straight to that record
 * and sees none of the fiber's frames: that is a trace which ends early, and the fiber
 * is not killed alone. Before, the walk took the record for the end of a complete
 * trace, and a fiber was killed on the strength of its faulting frame alone. (gcc only:
 * clang has no per-function optimize attribute; the builds without libunwind are gcc's.) */
#ifndef __clang__
#define NO_FP __attribute__((noipa, optimize("omit-frame-pointer")))
NO_FP static int island_nofp_deep(int n)
{
    volatile char buf[64];
    if (never) return 0;
    buf[0] = (char)n;
    return island_nofp_deep(n + 1) + buf[0];
}

NO_FP static void nofp_fiber(void *arg)
{
    (void)arg;
    sink += island_nofp_deep(0);
}

static void nofp_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(nofp_fiber, NULL, NULL);
    printf("state %d\n", vms_fiber_resume(f));
}
#endif

TEST(frames_without_frame_pointers_are_not_a_complete_trace)
{
#ifdef __clang__
    SKIP("clang has no per-function optimize attribute");
#else
    need_guards();
    int st = run_child(nofp_child);
    ASSERT_STR_CONTAINS(out, "vmstack: Call Trace:\nvmstack:  island_nofp_deep+0x");
    if (vms__trace_have_unwind()) {
        ASSERT_EXITED(st, 0);
        ASSERT_STR_CONTAINS(out, " frames of island_nofp_deep left out ...\n"
                                 "vmstack:  nofp_fiber+0x");
        ASSERT_STR_CONTAINS(out, "state 4\n");
    } else {
        ASSERT_SIGNALED(st, SIGSEGV);
        ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: the call trace ends early at "
                                 "island_nofp_deep [test_guard_tasks], so a lock held below "
                                 "it cannot be ruled out\n");
        assert_last_line_starts(out, "vmstack: aborting");
        ASSERT_STR_NOT_CONTAINS(out, "\nstate ");
    }
#endif
}

/* ---- threads ---------------------------------------------------------------------- */

/* A walk is cut after 4,000,000 frames (oops.c, MAX_WALK_FRAMES): the frames below the
 * cut are unseen and one of them could hold a lock, so the fiber is not killed alone:
 * the report says where the trace was cut, and the process dies by SIGSEGV. Frames of
 * 32 bytes fill a 256 MiB stack with 8,000,000 (touched: 256 MiB resident in the
 * child for a moment). */
NOIPA static int tiny_frames(int n)
{
    volatile char buf[8];
    if (never) return 0;
    buf[0] = (char)n;
    return tiny_frames(n + 1) + buf[1];
}

static void endless_fiber(void *arg)
{
    (void)arg;
    sink += tiny_frames(0);
}

static void cut_trace_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber_attr attr = { 256 * VMS_MIB, "endless" };
    vms_fiber *f = vms_fiber_create(endless_fiber, NULL, &attr);
    if (!f) _exit(10);
    printf("resumed: %d\n", vms_fiber_resume(f));
}

TEST(trace_cut_after_its_limit_is_not_killed_alone)
{
    need_guards();
    NO_ASAN_EVEN_WITHOUT_SEGV("ASan's redzones make the frames larger: 256 MiB holds fewer than the "
                    "walk's limit, the trace is not cut and the fiber is killed");
    NO_TSAN("its shadow call stack does not follow 8,000,000 nested calls");
    int st = run_child(cut_trace_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber \"endless\"");
    ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: the call trace was cut after 4000000 "
                             "frames, so a lock held below them cannot be ruled out\n");
    assert_last_line_starts(out, "vmstack: aborting");
    ASSERT_STR_NOT_CONTAINS(out, "resumed:");
}

static void *overflow_thread(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "deep-worker");
    sink += island_deep(0);
    return NULL;
}

static void *sum_thread(void *arg)
{
    (void)arg;
    long s = 0;
    for (long i = 1; i <= 1000; i++) s += i;
    return (void *)s;
}

static void thread_kill_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    pthread_t a, b;
    if (vms_thread_create(&a, NULL, overflow_thread, NULL) != 0) _exit(10);
    if (vms_thread_create(&b, NULL, sum_thread, NULL) != 0) _exit(10);
    void *ra, *rb;
    pthread_join(a, &ra);
    pthread_join(b, &rb);
    if (ra != VMS_THREAD_KILLED) _exit(11);
    if ((long)rb != 500500) _exit(12);
    printf("join gave VMS_THREAD_KILLED; sibling 500500\n");
}

TEST(thread_killed_alone)
{
    need_guards();
    int st = run_child(thread_kill_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread \"deep-worker\" (id ");
    ASSERT_STR_CONTAINS(out, "vmstack:  overflow_thread+0x");
    ASSERT_STR_CONTAINS(out, "vmstack: killed thread \"deep-worker\" (id ");
    ASSERT_STR_CONTAINS(out, "join gave VMS_THREAD_KILLED; sibling 500500\n");
}

/* A vms thread that could not install its alternate signal stack was warned about: "a
 * stack overflow in it will kill the process". So it does: by SIGSEGV, unreported (the
 * kernel has nowhere to deliver the signal), not by a hang or a report from nowhere. */
static void no_altstack_overflow_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    pthread_t t;
    if (vms_thread_create(&t, NULL, sum_thread, NULL) != 0) _exit(10);
    pthread_join(t, NULL);
    vms__os_inject(VMS__OP_SIGALTSTACK, 1, ENOMEM, true);
    if (vms_thread_create(&t, NULL, overflow_thread, NULL) != 0) _exit(11);
    void *r = NULL;
    pthread_join(t, &r);
    printf("joined %p\n", r);
}

TEST(thread_without_alternate_stack_dies_by_its_overflow)
{
    need_guards();
    NO_ASAN_BECAUSE("ASan gives every thread its own alternate signal stack, not vmstack's: "
                    "the failure injected into vmstack's leaves the thread ASan's, and it "
                    "is killed");
    NEED_FAULT_INJECTION();
    int st = run_child(no_altstack_overflow_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: error: sigaltstack failed for thread ");
    ASSERT_STR_CONTAINS(out, " (Cannot allocate memory): a stack overflow on a thread without "
                             "one cannot be reported and kills the process");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
    ASSERT_STR_NOT_CONTAINS(out, "joined");
}

/* ---- the report stays with the thread it killed ----------------------------------------- */

/* The report is built on the killed thread's alternate stack: its name, registers and
 * trace are there when the stack goes back to vmstack. No later thread may find them on
 * the alternate stack it is given. */
static const char report_name[] = "oops-name-7f3a";

static void *report_overflow_thread(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), report_name);
    sink += island_deep(0);
    return NULL;
}

/* 0: clean; 1: the killed thread's name is on this thread's alternate stack; 2: the
 * thread has no alternate stack of vmstack's. */
static void *look_for_report(void *arg)
{
    (void)arg;
    stack_t cur;
    struct vms__where w;
    if (sigaltstack(NULL, &cur) != 0 || (cur.ss_flags & SS_DISABLE) ||
        vms__arena_where(cur.ss_sp, &w) != VMS__WHERE_STACK)
        return (void *)2;
    return (void *)(intptr_t)(memmem(cur.ss_sp, cur.ss_size, report_name,
                                     sizeof report_name - 1) != NULL);
}

static void report_reuse_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    pthread_t t;
    void *r;
    if (vms_thread_create(&t, NULL, report_overflow_thread, NULL) != 0) _exit(10);
    pthread_join(t, &r);
    if (r != VMS_THREAD_KILLED) _exit(11);
    /* More threads than the alternate-stack pool scrubs at once, one at a time, each
     * after a reap: the killed thread's alternate stack is among those handed out. */
    for (int i = 0; i < 40; i++) {
        vms_stats st;
        if (vms_get_stats(&st) != 0) _exit(12);
        if (vms_thread_create(&t, NULL, look_for_report, NULL) != 0) _exit(13);
        pthread_join(t, &r);
        if (r) {
            printf("thread %d: %s\n", i, r == (void *)1 ? "found the report" : "no alternate stack");
            _exit(14);
        }
    }
    printf("40 clean\n");
}

TEST(report_never_reaches_the_next_thread)
{
    need_guards();
    NO_ASAN_BECAUSE("ASan gives every thread its own alternate signal stack, not vmstack's: "
                    "the threads have none of vmstack's to look in");
    int st = run_child(report_reuse_child);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: killed thread \"oops-name-7f3a\"");
    ASSERT_STR_CONTAINS(out, "40 clean\n");
}

/* ---- 16 threads at the same moment ----------------------------------------------------- */

#define NTHREADS 16
static pthread_barrier_t barrier;

static void *barrier_overflow_thread(void *arg)
{
    char name[16];
    snprintf(name, sizeof name, "worker-%02d", (int)(intptr_t)arg);
    pthread_setname_np(pthread_self(), name);
    pthread_barrier_wait(&barrier);
    sink += island_deep(0);
    return NULL;
}

static void sixteen_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    pthread_t t[NTHREADS];
    for (int i = 0; i < NTHREADS; i++)
        if (vms_thread_create(&t[i], NULL, barrier_overflow_thread, (void *)(intptr_t)i) != 0)
            _exit(10);
    int killed = 0;
    for (int i = 0; i < NTHREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        killed += r == VMS_THREAD_KILLED;
    }
    printf("killed %d\n", killed);
}

TEST(sixteen_threads_at_once)
{
    need_guards();
    int st = run_child(sixteen_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "killed 16\n");
    ASSERT_EQ(tst_count(out, "vmstack: stack overflow in thread \"worker-"), NTHREADS);
    ASSERT_EQ(tst_count(out, "vmstack: killed thread \"worker-"), NTHREADS);
    ASSERT_EQ(tst_count(out, "vmstack: Call Trace:\n"), NTHREADS);
    /* Reports never interleave: each runs from its first line to its last without a
     * line of another report, and names one worker throughout. */
    char name[16] = "";
    bool inside = false;
    int reports = 0;
    for (const char *line = out; *line;) {
        const char *end = strchr(line, '\n');
        if (!end) break;
        if (strncmp(line, "vmstack: stack overflow in thread \"", 35) == 0) {
            if (inside) TST_FAIL("a report starts inside another:\n%.*s", (int)(end - line), line);
            inside = true;
            memcpy(name, line + 35, 9);
            name[9] = '\0';
        } else if (strncmp(line, "vmstack: killed thread \"", 24) == 0) {
            if (!inside || strncmp(line + 24, name, 9) != 0)
                TST_FAIL("the kill line of %s does not close its report:\n%.*s", name,
                         (int)(end - line), line);
            inside = false;
            reports++;
        } else if (inside && strncmp(line, "vmstack: ", 9) != 0) {
            TST_FAIL("a foreign line inside a report:\n%.*s", (int)(end - line), line);
        }
        line = end + 1;
    }
    ASSERT_EQ(reports, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        char want[64];
        snprintf(want, sizeof want, "killed thread \"worker-%02d\"", i);
        ASSERT_STR_CONTAINS(out, want);
    }
}

/* ---- 1,000 in a row ---------------------------------------------------------------- */

static atomic_int hook_calls;

static void count_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    atomic_fetch_add(&hook_calls, 1);
}

static void thousand_child(void *arg)
{
    (void)arg;
    int devnull = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, devnull, 16 * 1024);
    vms_set_oops_hook(count_hook, NULL);
    int killed = 0;
    for (int i = 0; i < 1000; i++) {
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        if (!f) _exit(10);
        killed += vms_fiber_resume(f) == VMS_KILLED;
        vms_fiber_destroy(f);
    }
    vms_stats stats;
    vms_get_stats(&stats);
    printf("killed %d hook %d overflows %zu\n", killed, atomic_load(&hook_calls), stats.overflows);
}

TEST(thousand_overflows_on_one_thread)
{
    need_guards();
    int st = run_child(thousand_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "killed 1000 hook 1000 overflows 1000\n");
}

/* A NULL hook removes the one set before: the next oops calls nothing. */
static void hook_removed_child(void *arg)
{
    (void)arg;
    int devnull = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, devnull, 16 * 1024);
    vms_set_oops_hook(count_hook, NULL);
    vms_set_oops_hook(NULL, NULL);
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
    if (!f) _exit(10);
    int s = vms_fiber_resume(f);
    vms_fiber_destroy(f);
    printf("state %d hook %d\n", s, atomic_load(&hook_calls));
}

TEST(null_hook_removes_the_hook)
{
    need_guards();
    int st = run_child(hook_removed_child);
    ASSERT_EXITED(st, 0);
    char want[64];
    snprintf(want, sizeof want, "state %d hook 0\n", VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
}

/* ---- the hook and its ctx, set while reports read them ------------------------------ */

/* Three hooks, each with its own ctx: a hook that gets another's ctx counts a mismatch. */
static int hook_tags[3];
static atomic_int pair_calls, pair_mismatches;
static atomic_long hook_sets;
static atomic_int setter_stop;

static void pair_check(const void *ctx, int i)
{
    atomic_fetch_add(&pair_calls, 1);
    if (ctx != &hook_tags[i]) atomic_fetch_add(&pair_mismatches, 1);
}

static void pair_hook_0(const vms_oops *o, void *ctx) { (void)o; pair_check(ctx, 0); }
static void pair_hook_1(const vms_oops *o, void *ctx) { (void)o; pair_check(ctx, 1); }
static void pair_hook_2(const vms_oops *o, void *ctx) { (void)o; pair_check(ctx, 2); }
static vms_oops_hook const pair_hooks[3] = { pair_hook_0, pair_hook_1, pair_hook_2 };

static void *pair_setter(void *arg)
{
    (void)arg;
    for (long i = 1; !atomic_load(&setter_stop); i++) {
        vms_set_oops_hook(pair_hooks[i % 3], &hook_tags[i % 3]);
        atomic_fetch_add(&hook_sets, 1);
    }
    return NULL;
}

/* Rounds of waits for another thread's report (vms__oops_wait_hook): vms_set_oops_hook's
 * for a record that a report holds, or fork's for the report lock. In each child that
 * counts them, one thread can wait so: the setter, or the forking thread. */
static atomic_long report_waits;

static void note_report_wait(void)
{
    atomic_fetch_add(&report_waits, 1);
}

/* In each report, between its reads of the hook and of the ctx: room for the setter to
 * set the hook twice more, which would rewrite the record being read. It cannot: a set
 * waits for this report's hook to return. So this holds the report until the setter has
 * set twice (the defect) or is seen waiting for this report: two rounds of its wait
 * counted after the hook was read (one round may be left from a wait for the previous
 * report, which has ended; a second means the setter looked again and found this one).
 * It used to wait 1,000 yields instead, a window that a busy machine stretched: the
 * case took 40-50 s with two CPU hogs on the 2-core VM (3 s idle), and its time grew
 * with every other runnable task, towards its 300 s timeout. */
static void slow_hook_read(void)
{
    long start = atomic_load(&hook_sets), waits = atomic_load(&report_waits);
    while (atomic_load(&hook_sets) < start + 2 && atomic_load(&report_waits) < waits + 2)
        sched_yield();
}

static void hook_pairs_child(void *arg)
{
    (void)arg;
    int devnull = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, devnull, 16 * 1024);
    vms_set_oops_hook(pair_hooks[0], &hook_tags[0]);
    vms__oops_hook_read_hook = slow_hook_read;
    vms__oops_wait_hook = note_report_wait;
    pthread_t t;
    if (pthread_create(&t, NULL, pair_setter, NULL) != 0) _exit(10);
    int killed = 0;
    for (int i = 0; i < 100; i++) {
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        if (!f) _exit(11);
        killed += vms_fiber_resume(f) == VMS_KILLED;
        vms_fiber_destroy(f);
    }
    atomic_store(&setter_stop, 1);
    pthread_join(t, NULL);
    printf("killed %d calls %d mismatches %d\n", killed, atomic_load(&pair_calls),
           atomic_load(&pair_mismatches));
}

TEST(oops_hook_gets_its_own_ctx_while_another_thread_sets_the_hook)
{
    need_guards();
    int st = run_child(hook_pairs_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "killed 100 calls 100 mismatches 0\n");
}

/* fork while another thread's report is reading the hook: that thread is not in the
 * child, whose vms_set_oops_hook must not wait for it. A hang here is caught by ctest's
 * timeout. */
static atomic_int reader_parked, fork_done;

static void park_in_hook_read(void)
{
    atomic_store(&reader_parked, 1);
    while (!atomic_load(&fork_done)) sched_yield();
}

static void *overflow_on_thread(void *arg)
{
    (void)arg;
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
    if (!f) return NULL;
    int s = vms_fiber_resume(f);
    vms_fiber_destroy(f);
    return (void *)(intptr_t)s;
}

static void fork_while_reading_child(void *arg)
{
    (void)arg;
    int devnull = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, devnull, 16 * 1024);
    vms_set_oops_hook(pair_hooks[0], &hook_tags[0]);
    vms__oops_hook_read_hook = park_in_hook_read;
    /* fork waits for a report in flight (the next test); this one is parked until the
     * fork is done, so the fork goes on after the wait, without the report lock. */
    vms__oops_fork_wait_ms = 100;
    pthread_t t;
    if (pthread_create(&t, NULL, overflow_on_thread, NULL) != 0) _exit(10);
    while (!atomic_load(&reader_parked)) sched_yield();
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        vms_set_oops_hook(pair_hooks[1], &hook_tags[1]);
        _exit(0);
    }
    atomic_store(&fork_done, 1);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    void *r = NULL;
    pthread_join(t, &r);
    printf("grandchild exit %d, fiber state %d, hook calls %d\n",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1, (int)(intptr_t)r, atomic_load(&pair_calls));
}

TEST(fork_while_a_report_reads_the_oops_hook)
{
    need_guards();
    int st = run_child(fork_while_reading_child);
    ASSERT_EXITED(st, 0);
    char want[80];
    snprintf(want, sizeof want, "grandchild exit 0, fiber state %d, hook calls 1\n", VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
}

/* ---- replacing a hook that is running ---------------------------------------------- */

/* A hook that runs until released, in the report of an overflow on another thread. */
struct gate {
    atomic_int in, release, out;
};

static void gated_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    struct gate *g = ctx;
    atomic_store(&g->in, 1);
    while (!atomic_load(&g->release)) sched_yield();
    atomic_store(&g->out, 1);
}

static struct gate gate;
static atomic_int set_returned, out_when_set_returned;

static void *set_while_gated(void *arg)
{
    (void)arg;
    vms_set_oops_hook(count_hook, NULL);
    atomic_store(&out_when_set_returned, atomic_load(&gate.out));
    atomic_store(&set_returned, 1);
    return NULL;
}

/* Both cases' start: hook (which opens the gate) runs in the report of an overflow on
 * thread r, and thread w sets another hook meanwhile (it counts its waits for that
 * report in report_waits). */
static void gated_start(vms_oops_hook hook, pthread_t *r, pthread_t *w)
{
    alarm(60);
    int devnull = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, devnull, 16 * 1024);
    vms_set_oops_hook(hook, &gate);
    vms__oops_wait_hook = note_report_wait;
    if (pthread_create(r, NULL, overflow_on_thread, NULL) != 0) _exit(10);
    while (!atomic_load(&gate.in)) sched_yield();
    if (pthread_create(w, NULL, set_while_gated, NULL) != 0) _exit(11);
}

/* Once vms_set_oops_hook has returned, the hook it replaced runs nowhere: its ctx may be
 * freed. The old hook is held until the setter has returned (the defect) or is seen
 * waiting for it. (It used to be held 200 ms, which on a busy machine could pass before
 * the setter had even started, and then tested nothing.) */
static void set_waits_child(void *arg)
{
    (void)arg;
    pthread_t r, w;
    gated_start(gated_hook, &r, &w);
    while (!atomic_load(&set_returned) && atomic_load(&report_waits) == 0) sched_yield();
    int early = atomic_load(&set_returned);
    atomic_store(&gate.release, 1);
    void *st = NULL;
    pthread_join(w, NULL);
    pthread_join(r, &st);
    /* The new hook is the one that runs now. */
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
    if (!f) _exit(12);
    int s2 = vms_fiber_resume(f);
    vms_fiber_destroy(f);
    printf("early %d, old hook done at return %d, states %d %d, new hook calls %d\n", early,
           atomic_load(&out_when_set_returned), (int)(intptr_t)st, s2, atomic_load(&hook_calls));
}

TEST(set_oops_hook_returns_after_the_replaced_hook)
{
    need_guards();
    int st = run_child(set_waits_child);
    ASSERT_EXITED(st, 0);
    char want[96];
    snprintf(want, sizeof want, "early 0, old hook done at return 1, states %d %d, new hook calls 1\n",
             VMS_KILLED, VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
}

/* A hook may set the hook: the setter does not wait for the call it is made from. */
static atomic_int self_set_done;

static void hook_setting_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    vms_set_oops_hook(count_hook, NULL);
    atomic_store(&self_set_done, 1);
}

static void hook_sets_hook_child(void *arg)
{
    (void)arg;
    alarm(60);
    int devnull = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, devnull, 16 * 1024);
    vms_set_oops_hook(hook_setting_hook, NULL);
    int states[2];
    for (int i = 0; i < 2; i++) {
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        if (!f) _exit(10);
        states[i] = vms_fiber_resume(f);
        vms_fiber_destroy(f);
    }
    printf("states %d %d, set from the hook %d, new hook calls %d\n", states[0], states[1],
           atomic_load(&self_set_done), atomic_load(&hook_calls));
}

TEST(hook_that_sets_the_hook_does_not_wait_for_itself)
{
    need_guards();
    int st = run_child(hook_sets_hook_child);
    ASSERT_EXITED(st, 0);
    char want[80];
    snprintf(want, sizeof want, "states %d %d, set from the hook 1, new hook calls 1\n",
             VMS_KILLED, VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
}

/* A hook that forks while another thread waits in vms_set_oops_hook for that hook: the
 * setter holds no lock while it waits, so the fork goes on, and in the child (where the
 * hook's own call still counts, made by the forking thread) setting the hook returns. */
static void forking_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    struct gate *g = ctx;
    atomic_store(&g->in, 1);
    while (!atomic_load(&g->release)) sched_yield();    /* the setter is waiting now */
    pid_t pid = fork();
    if (pid == 0) {
        vms_set_oops_hook(NULL, NULL);
        _exit(0);
    }
    int st = -1;
    while (pid > 0 && waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    atomic_store(&g->out, pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 1 : 2);
}

static void hook_forks_child(void *arg)
{
    (void)arg;
    pthread_t r, w;
    gated_start(forking_hook, &r, &w);
    /* The hook forks once the setter waits for it (it used to sleep 20 ms for that,
     * which a busy machine could pass before the setter had started). */
    while (atomic_load(&report_waits) == 0 && !atomic_load(&set_returned)) sched_yield();
    atomic_store(&gate.release, 1);
    void *st = NULL;
    pthread_join(w, NULL);
    pthread_join(r, &st);
    printf("fork child %s, old hook done at return %d, state %d\n",
           atomic_load(&gate.out) == 1 ? "ok" : "failed", atomic_load(&out_when_set_returned),
           (int)(intptr_t)st);
}

TEST(hook_forks_while_another_thread_replaces_it)
{
    need_guards();
    int st = run_child(hook_forks_child);
    ASSERT_EXITED(st, 0);
    char want[80];
    snprintf(want, sizeof want, "fork child ok, old hook done at return 1, state %d\n", VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
}

/* fork while another thread writes a report: the fork waits until the report has ended
 * (its hook has run), so that the child inherits no lock the report holds: a report
 * walking the stack holds libunwind's cache lock, and a child forked then used to hang
 * in its own first report (a soak forking from several threads while others overflowed
 * left such children hanging in _ULx86_64_step). The report is parked in its read of the
 * hook until the fork has begun and waits for it. */
static atomic_int report_parked, fork_began, fork_returned, hook_runs;

static void hook_counting(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    atomic_fetch_add(&hook_runs, 1);
}

static void park_until_fork(void)
{
    atomic_store(&report_parked, 1);
    while (!atomic_load(&fork_began)) sched_yield();
    /* Until the fork waits for this report, or (the defect) has returned without waiting.
     * It used to sleep 50 ms, which a busy machine could pass before the fork got there:
     * then the report ended first and the case tested nothing. */
    while (atomic_load(&report_waits) == 0 && !atomic_load(&fork_returned)) sched_yield();
}

static void note_fork_began(void)
{
    atomic_store(&fork_began, 1);
}

static void fork_during_report_child(void *arg)
{
    (void)arg;
    int devnull = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, devnull, 16 * 1024);
    vms_set_oops_hook(hook_counting, NULL);
    vms__oops_hook_read_hook = park_until_fork;
    vms__oops_wait_hook = note_report_wait;
    pthread_t t;
    if (pthread_create(&t, NULL, overflow_on_thread, NULL) != 0) _exit(10);
    while (!atomic_load(&report_parked)) sched_yield();
    vms__fork_hook = note_fork_began;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        vms__oops_hook_read_hook = NULL;
        alarm(60);
        /* The report in flight had ended: its hook ran before the fork. This child's own
         * overflow is reported and killed as in any process. */
        int before = atomic_load(&hook_runs);
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        if (!f) _exit(11);
        int s = vms_fiber_resume(f);
        _exit(before == 1 && s == VMS_KILLED && atomic_load(&hook_runs) == 2 ? 0 : 12);
    }
    vms__fork_hook = NULL;
    int at_fork = atomic_load(&hook_runs);
    atomic_store(&fork_returned, 1);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    void *r = NULL;
    pthread_join(t, &r);
    printf("hook runs at fork %d, grandchild exit %d, fiber state %d\n", at_fork,
           WIFEXITED(st) ? WEXITSTATUS(st) : -1, (int)(intptr_t)r);
}

TEST(fork_waits_for_a_report_in_flight)
{
    need_guards();
    int st = run_child(fork_during_report_child);
    ASSERT_EXITED(st, 0);
    char want[80];
    snprintf(want, sizeof want, "hook runs at fork 1, grandchild exit 0, fiber state %d\n",
             VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
}

/* ---- a fault while the report is written ----------------------------------------------- */

/* An oops hook that faults: the report ends with a line saying so and "aborting", and
 * the process dies by the overflow's signal (SIGSEGV), never by the second fault, never
 * hanging or looping, even under VMS_KILL_TASK. The SIGBUS is a real one: a read of a
 * file mapping beyond the end of the file, truncated after it was mapped (as a shared
 * library rewritten in place would give the report's symbol lookup). */
static volatile char *bus_addr;
static volatile int *volatile segv_addr;

static void bus_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    sink += *bus_addr;
}

static void segv_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    *segv_addr = 1;
}

static bool hook_fault_bus;

static void hook_fault_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 16 * 1024);
    if (hook_fault_bus) {
        char path[] = "/tmp/vmstack-bus-XXXXXX";
        int fd = mkstemp(path);
        if (fd < 0 || ftruncate(fd, 8192) != 0) _exit(10);
        char *m = mmap(NULL, 8192, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED || ftruncate(fd, 0) != 0) _exit(11);
        unlink(path);
        bus_addr = m + 4096;
        vms_set_oops_hook(bus_hook, NULL);
        printf("nested fault at %p\n", (void *)bus_addr);
    } else {
        segv_addr = (volatile int *)16;
        vms_set_oops_hook(segv_hook, NULL);
        printf("nested fault at %p\n", (void *)segv_addr);
    }
    fflush(stdout);
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
    vms_fiber_resume(f);
    printf("survived\n");
}

static void hook_fault_test(bool bus)
{
    need_guards();
    hook_fault_bus = bus;
    int st = run_child(hook_fault_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    char addr[64], want[160];
    const char *at = strstr(out, "nested fault at ");
    ASSERT_NOT_NULL(at);
    if (sscanf(at, "nested fault at %63s", addr) != 1) TST_FAIL("no address in:\n%s", out);
    snprintf(want, sizeof want, "vmstack: fault while reporting: %s at %s", bus ? "SIGBUS" : "SIGSEGV", addr);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "the report above is cut short\n");
    ASSERT_STR_NOT_CONTAINS(out, "killed fiber");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
    assert_last_line_starts(out, "vmstack: aborting");
}

TEST(sigbus_in_the_oops_hook_ends_the_report_and_dies_by_sigsegv)
{
    hook_fault_test(true);
}

TEST(sigsegv_in_the_oops_hook_ends_the_report_and_dies_by_sigsegv)
{
    hook_fault_test(false);
}

/* ---- the alternate stack's budget ------------------------------------------------------- */

/* The program's own SIGSEGV handler runs on the thread's alternate stack (SA_ONSTACK)
 * and takes all of it but what vmstack promises its reporter and the hook (64 KiB,
 * docs/oops.md) and a signal frame's worth (the larger of AT_MINSIGSTKSZ and
 * MINSIGSTKSZ, as vms__guard_alt_size counts it), then calls vms_handle_fault: the
 * report nested there must still be whole and kill the fiber. (Leaving it 9,000 bytes
 * instead, the report ends "fault while reporting" and the process dies by SIGSEGV.) */
#define REPORTER_BUDGET (64 * 1024)
static size_t onstack_take;

static void onstack_segv(int sig, siginfo_t *si, void *uc)
{
    volatile char *p = alloca(onstack_take);
    p[0] = 1;                       /* its lowest byte: the rest is mapped above it */
    sink += p[0];
    vms_handle_fault(sig, si, uc);
    _exit(20);                      /* not vmstack's fault: not expected here */
}

static void budget_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 16 * 1024);
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0 || (ss.ss_flags & SS_DISABLE)) _exit(10);
    size_t frame = getauxval(AT_MINSIGSTKSZ);
    if (frame < (size_t)MINSIGSTKSZ) frame = (size_t)MINSIGSTKSZ;
    /* The handler's own frame and vms_handle_fault's way to the report (a few hundred
     * bytes) come out of the reporter's part. */
    onstack_take = ss.ss_size - frame - REPORTER_BUDGET;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = onstack_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    int killed = 0;
    for (int i = 0; i < 2; i++) {
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        killed += vms_fiber_resume(f) == VMS_KILLED;
        vms_fiber_destroy(f);
    }
    printf("took %zu of %zu bytes; killed %d\n", onstack_take, (size_t)ss.ss_size, killed);
}

TEST(report_fits_in_what_the_programs_handler_leaves_of_the_alternate_stack)
{
    need_guards();
    NO_ASAN_BECAUSE("ASan gives every thread its own alternate signal stack, not vmstack's "
                    "(53 KiB): the child dies by SIGSEGV without a report (not investigated "
                    "further)");
    NO_TSAN("the handler runs with SIGSEGV blocked, so the overflow kills the process unreported");
    int st = run_child(budget_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "killed 2\n");
    ASSERT_EQ(tst_count(out, "vmstack: killed fiber"), 2);
    ASSERT_STR_NOT_CONTAINS(out, "fault while reporting");
}

/* ---- overflows where locks may be held ------------------------------------------------- */

NOIPA static int island_malloc_deep(int n, size_t pad)
{
    volatile char *buf = alloca(pad);
    if (never) return 0;
    buf[0] = (char)n;
    char *p = malloc(16 + (size_t)(n % 64) * 8);
    if (!p) return 0;
    p[0] = buf[0];
    sink += p[0];
    free(p);
    return island_malloc_deep(n + 1, pad) + buf[0];
}

static void malloc_fiber(void *arg)
{
    sink += island_malloc_deep(0, (size_t)(uintptr_t)arg);
}

static void malloc_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    int killed = 0;
    for (int i = 0; i < 64; i++) {
        vms_fiber *f = vms_fiber_create(malloc_fiber, (void *)(uintptr_t)(16 + 8 * i), NULL);
        killed += vms_fiber_resume(f) == VMS_KILLED;
        vms_fiber_destroy(f);
        /* The allocator must still work: a kill inside it would deadlock here. */
        free(malloc(100));
    }
    printf("all %d killed safely\n", killed);
}

TEST(overflow_in_malloc_never_deadlocks)
{
    need_guards();
    int st = run_child(malloc_child);
    if (WIFEXITED(st)) {
        ASSERT_EXITED(st, 0);
        ASSERT_STR_CONTAINS(out, "all 64 killed safely\n");
        ASSERT_STR_NOT_CONTAINS(out, "cannot kill safely");
        ASSERT_EQ(tst_count(out, "vmstack: killed fiber"), 64);
    } else {
        ASSERT_SIGNALED(st, SIGSEGV);
        /* The reason names the function (or, under the frame-pointer walk, an unnamed
         * C library function at the fault, or where the trace stopped). */
        ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: ");
        assert_last_line_starts(out, "vmstack: aborting");
    }
}

/* A printf conversion that recurses: the overflow happens in the program's code, deep
 * below snprintf, which holds no global lock itself but is on the list; either way it
 * must not be killed alone. */
static int deep_conversion(FILE *stream, const struct printf_info *info, const void *const *args)
{
    (void)stream;
    (void)info;
    (void)args;
    return island_deep(0);
}

static int deep_arginfo(const struct printf_info *info, size_t n, int *types, int *size)
{
    (void)info;
    (void)size;
    if (n > 0) types[0] = PA_INT;
    return 1;
}

static void printf_fiber(void *arg)
{
    (void)arg;
    char buf[64];
    static const char *volatile fmt = "%W";   /* hidden from -Wformat: a custom conversion */
    snprintf(buf, sizeof buf, fmt, 1);
    sink += buf[0];
}

static void printf_child(void *arg)
{
    (void)arg;
    register_printf_specifier('W', deep_conversion, deep_arginfo);
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(printf_fiber, NULL, NULL);
    vms_fiber_resume(f);
    printf("survived\n");
}

TEST(overflow_below_stdio_is_not_killed_alone)
{
    need_guards();
    /* Under TSan the trace names TSan's __interceptor_snprintf: unsafe all the same. */
    int st = run_child(printf_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    /* libunwind sees snprintf. The frame-pointer walk sees it too where the C library
     * keeps frame records (aarch64), and otherwise stops inside the C library (x86-64),
     * which is reason enough not to kill. */
    if (vms__trace_have_unwind())
        ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: the fault happened inside ");
    else
        ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: ");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* An overflow inside the dynamic loader: the first call of a function through the PLT
 * binds it lazily, and the loader's resolver saves the vector registers on the stack
 * (kilobytes with AVX-512). The loader has no symbols for its internals, but a task
 * stopped inside it may leave the thread marked inside the loader's global scope (which
 * dlclose waits for) or its lock held: it must not be killed alone. strverscmp is called
 * nowhere else in this program, so its PLT slot is still unbound here. */
NOIPA static int descend_then_bind(size_t left)
{
    volatile char frame[128];
    frame[0] = 1;
    if (vms_stack_remaining() > left) return descend_then_bind(left) + frame[0];
    return strverscmp("vmstack-1", "vmstack-2") + frame[0];
}

static void lazy_bind_fiber(void *arg)
{
    (void)arg;
    sink += descend_then_bind(300);
}

static void lazy_bind_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(lazy_bind_fiber, NULL, NULL);
    vms_fiber_resume(f);
    printf("survived\n");
}

TEST(overflow_in_lazy_binding_is_not_killed_alone)
{
    need_guards();
    const char *now = getenv("LD_BIND_NOW");
    if (now && *now) SKIP("LD_BIND_NOW is set: nothing is bound lazily");
    int st = run_child(lazy_bind_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: the fault happened inside ");
    ASSERT_STR_CONTAINS(out, ": the dynamic loader may hold its lock or have the thread "
                             "marked inside it\n");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* ---- a pending cancellation request ----------------------------------------------- */

/* A thread asked to cancel itself (deferred cancellation, the default) and has not yet
 * reached a cancellation point when a fiber it resumed overflows. The request must not
 * act inside the fault handler: there, unwinding would leave the report cut short and the
 * fiber RUNNING for good (its resume would never return). It acts at the thread's next
 * cancellation point, after the kill. */
static atomic_int cancel_resume_result = -1;

static void nothing_fiber(void *arg)
{
    (void)arg;
}

static void *cancel_pending_thread(void *arg)
{
    (void)arg;
    /* The thread is set up for fibers first (that may pass cancellation points). */
    vms_fiber *warm = vms_fiber_create(nothing_fiber, NULL, NULL);
    if (!warm || vms_fiber_resume(warm) != VMS_DONE) return NULL;
    vms_fiber_destroy(warm);
    vms_fiber_attr attr = { 0, "cancel-pending" };
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, &attr);
    if (!f) return NULL;
    pthread_cancel(pthread_self());   /* pending until a cancellation point */
    int s = vms_fiber_resume(f);
    atomic_store(&cancel_resume_result, s);
    vms_fiber_destroy(f);
    pthread_testcancel();
    return (void *)1;
}

static void cancel_pending_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    pthread_t t;
    if (pthread_create(&t, NULL, cancel_pending_thread, NULL) != 0) _exit(10);
    void *r = NULL;
    pthread_join(t, &r);
    printf("resume gave %d; join gave %s\n", atomic_load(&cancel_resume_result),
           r == PTHREAD_CANCELED ? "PTHREAD_CANCELED" : "something else");
}

TEST(pending_cancellation_waits_until_after_the_kill)
{
    need_guards();
    NO_ASAN_BECAUSE("ASan's own thread exit reports a stack-buffer-underflow in a cancelled "
                    "thread (the redzones of the case's own frame, which the cancellation "
                    "unwinds at its pthread_testcancel; also without vmstack)");
    int st = run_child(cancel_pending_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber \"cancel-pending\" (id ");
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber \"cancel-pending\" (id ");
    char want[64];
    snprintf(want, sizeof want, "resume gave %d; join gave PTHREAD_CANCELED\n", VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
}

/* Asynchronous cancellation requested while the report is written (the oops hook asks,
 * as another thread could then): before, the handler put the cancellation state back
 * just before the kill and the request acted there, inside the handler: the thread
 * unwound out of the kill, and its join gave a stale value (that of the thread that had
 * its descriptor before; helper 67: 295 times in 300). Now the state comes back once
 * the kill is done: at a killed vms thread's end, after vmstack's bookkeeping, and for
 * a fiber on its resumer's stack; the request acts there, and the join says
 * PTHREAD_CANCELED (the fiber KILLED), as on a thread cancelled right after. */
static _Atomic(vms_fiber *) cancelled_fiber;

static void cancel_self_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    pthread_cancel(pthread_self());   /* pending: the handler has cancellation off */
}

static void *returns_seven(void *arg)
{
    (void)arg;
    return (void *)7;
}

static void *async_overflow_body(void *arg)
{
    (void)arg;
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    sink += island_deep(0);
    return (void *)8;
}

static void *async_fiber_resumer(void *arg)
{
    (void)arg;
    vms_fiber_attr attr = { 0, "async-cancelled" };
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, &attr);
    if (!f) return (void *)9;
    atomic_store(&cancelled_fiber, f);
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    vms_fiber_resume(f);
    pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, NULL);
    return (void *)10;   /* not reached: cancelled on the way back */
}

static void async_cancel_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_set_oops_hook(cancel_self_hook, NULL);
    for (int i = 0; i < 3; i++) {
        pthread_t g, t;
        void *r = NULL;
        /* A thread whose descriptor the next one reuses, with 7 as its result. */
        if (vms_thread_create(&g, NULL, returns_seven, NULL) != 0) _exit(10);
        pthread_join(g, NULL);
        if (vms_thread_create(&t, NULL, async_overflow_body, NULL) != 0) _exit(11);
        pthread_join(t, &r);
        printf("thread %d: join %s\n", i, r == VMS_THREAD_KILLED ? "killed"
                                          : r == PTHREAD_CANCELED ? "cancelled" : "other");
    }
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, async_fiber_resumer, NULL) != 0) _exit(12);
    pthread_join(t, &r);
    vms_fiber *f = atomic_load(&cancelled_fiber);
    printf("resumer: join %s, fiber %d\n", r == PTHREAD_CANCELED ? "cancelled" : "other",
           f ? vms_fiber_state(f) : -1);
    fflush(stdout);
}

/* The same request under VMS_ABORT: the process dies by SIGSEGV after "aborting"
 * (helper 69: the state came back before the death, the request acted, and the
 * process went on, the join a stale value). */
static void async_cancel_abort_child(void *arg)
{
    (void)arg;
    init_with(VMS_ABORT, 0, 0);
    vms_set_oops_hook(cancel_self_hook, NULL);
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, async_fiber_resumer, NULL) != 0) _exit(12);
    pthread_join(t, &r);
    printf("alive after the report\n");
}

TEST(asynchronous_cancellation_during_an_abort)
{
    need_guards();
    int st = run_child(async_cancel_abort_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    assert_last_line_starts(out, "vmstack: aborting");
    ASSERT_STR_NOT_CONTAINS(out, "alive after the report");
}

TEST(asynchronous_cancellation_during_a_kill)
{
    need_guards();
    /* Under ASan the cancellation unwinds the resumer from task_back (src/fiber.c), which
     * ASan does not see: the shadow of the frames it left stayed poisoned under the
     * thread-exit code that ran there next. With ASan's handling on, ASan's own thread
     * exit (its sigaltstack call) reported a stack-buffer-underflow; with it off, vmstack's
     * TSD destructor a stack-use-after-scope in src/cache.c's scrub_file, at task_back's
     * variables (vms__track_may_unwind in src/track.h clears them now). */
    ASAN_ALSO_WITHOUT_SEGV("the two runs tripped over different thread-exit code");
    NO_TSAN("a thread task runs in a TSan fiber (src/track.h), from which TSan forbids cancellation");
    int st = run_child(async_cancel_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "thread 0: join cancelled\nthread 1: join cancelled\n"
                             "thread 2: join cancelled\n");
    ASSERT_EQ(tst_count(out, "vmstack: killed thread "), 3);
    char want[64];
    snprintf(want, sizeof want, "resumer: join cancelled, fiber %d\n", VMS_KILLED);
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber \"async-cancelled\" (id ");
}

/* ---- a report stuck behind the loader's lock ------------------------------------------ */

/* Thread A's report walks with libunwind, which holds its cache lock while it waits in
 * dl_iterate_phdr for the loader's lock. Thread B holds that lock: its fiber overflows
 * inside a dl_iterate_phdr callback (as in libunwind's walk, or libgcc's unwinding
 * before glibc 2.35). B's report
 * waits for A's, which cannot end; after the wait B must not walk with libunwind (it
 * would wait for A's cache lock for good) but by frame pointers, and say so. B's fault
 * is inside the loader, so the process then dies by the signal, after a whole report:
 * before, it hung. */
static atomic_int loader_held, loader_go, a_overflows;
static atomic_long a_tid;

NOIPA static int overflow_in_loader(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    (void)data;
    atomic_store(&loader_held, 1);
    while (!atomic_load(&loader_go)) sched_yield();
    sink += island_deep(0);
    return 1;
}

static void loader_fiber(void *arg)
{
    (void)arg;
    dl_iterate_phdr(overflow_in_loader, NULL);
}

static void *loader_thread(void *arg)
{
    (void)arg;
    vms_fiber_attr attr = { 0, "in-loader" };
    vms_fiber *f = vms_fiber_create(loader_fiber, NULL, &attr);
    if (f) vms_fiber_resume(f);
    return NULL;
}

static atomic_int a_ready;

static void *announced_overflow_thread(void *arg)
{
    (void)arg;
    /* Set up (thread setup reads the loaded objects with dl_iterate_phdr) before B
     * takes the loader's lock. */
    vms_fiber_attr attr = { 0, "walker" };
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, &attr);
    if (!f) return NULL;
    atomic_store(&a_tid, (long)tst_gettid());
    atomic_store(&a_ready, 1);
    while (!atomic_load(&loader_held)) sched_yield();
    atomic_store(&a_overflows, 1);
    vms_fiber_resume(f);
    return NULL;
}

/* Whether thread tid waits in futex(2) now. */
static bool in_futex(long tid)
{
    char path[64], buf[64], want[16];
    snprintf(path, sizeof path, "/proc/self/task/%ld/syscall", tid);
    snprintf(want, sizeof want, "%d ", (int)SYS_futex);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n : 0] = 0;
    return strncmp(buf, want, strlen(want)) == 0;
}

static void loader_lock_child(void *arg)
{
    (void)arg;
    alarm(60);
    init_with(VMS_KILL_TASK, 0, 16 * 1024);
    vms__oops_lock_wait_ms = 200;
    pthread_t a, b;
    if (pthread_create(&a, NULL, announced_overflow_thread, NULL) != 0) _exit(11);
    while (!atomic_load(&a_ready)) sched_yield();
    if (pthread_create(&b, NULL, loader_thread, NULL) != 0) _exit(10);
    while (!atomic_load(&a_overflows)) sched_yield();
    /* A's report is in libunwind, waiting for the loader's lock. */
    while (!in_futex(atomic_load(&a_tid))) sched_yield();
    fflush(NULL);
    atomic_store(&loader_go, 1);
    pthread_join(b, NULL);
    _exit(12);   /* B's report must end the process */
}

TEST(report_waiting_in_vain_walks_by_frame_pointers)
{
    need_guards();
    if (!vms__trace_have_unwind()) SKIP("built without libunwind: no walk waits for the loader");
    int st = run_child(loader_lock_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber \"in-loader\"");
    ASSERT_STR_CONTAINS(out, " did not end within 200 ms: call trace by frame pointers only\n");
    ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: ");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* ---- an overflow inside a signal handler ---------------------------------------------- */

NOIPA static void deep_handler(int sig)
{
    (void)sig;
    sink += island_deep(0);
}

static void *handler_thread(void *arg)
{
    (void)arg;
    signal(SIGUSR1, deep_handler);   /* runs on the thread's vmstack stack */
    raise(SIGUSR1);
    return (void *)1;
}

static void handler_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    for (int i = 0; i < 2; i++) {
        pthread_t t;
        vms_thread_create(&t, NULL, handler_thread, NULL);
        void *r;
        pthread_join(t, &r);
        if (r != VMS_THREAD_KILLED) _exit(10);
    }
    printf("both killed\n");
}

TEST(overflow_inside_signal_handler)
{
    need_guards();
    /* TSan installs every handler with all signals blocked: the fault kills the process. */
    NO_TSAN("the handler runs with SIGSEGV blocked, so the overflow kills the process unreported");
    int st = run_child(handler_child);
    ASSERT_EXITED(st, 0);
    ASSERT_EQ(tst_count(out, "vmstack: killed thread"), 2);
    ASSERT_STR_CONTAINS(out, "vmstack:  deep_handler+0x");
    ASSERT_STR_CONTAINS(out, "both killed\n");
}

/* A fiber killed inside the program's handler (on the fiber's stack) never returns
 * from it: its resumer must go on with the mask it had, not the handler's (SIGUSR1 and
 * the handler's sa_mask blocked), and a second one is caught the same way. The fiber
 * keeps its frame: had it tail-called raise(), nothing between the C library code the
 * signal interrupted and the task's start would keep a frame record, and the
 * frame-pointer walk (built without libunwind) would not kill it alone. */
static void handler_fiber(void *arg)
{
    (void)arg;
    raise(SIGUSR1);
    sink++;
}

static void handler_fiber_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = deep_handler;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR2);
    sigaction(SIGUSR1, &sa, NULL);
    for (int i = 0; i < 2; i++) {
        vms_fiber *f = vms_fiber_create(handler_fiber, NULL, NULL);
        if (vms_fiber_resume(f) != VMS_KILLED) _exit(10);
        vms_fiber_destroy(f);
        sigset_t now;
        pthread_sigmask(SIG_BLOCK, NULL, &now);
        printf("after kill %d: SIGUSR1 blocked %d, SIGUSR2 blocked %d\n", i,
               sigismember(&now, SIGUSR1), sigismember(&now, SIGUSR2));
    }
}

TEST(fiber_killed_in_signal_handler_leaves_resumer_mask)
{
    need_guards();
    NO_TSAN("the handler runs with SIGSEGV blocked, so the overflow kills the process unreported");
    int st = run_child(handler_fiber_child);
    ASSERT_EXITED(st, 0);
    ASSERT_EQ(tst_count(out, "vmstack: killed fiber"), 2);
    ASSERT_STR_CONTAINS(out, "after kill 0: SIGUSR1 blocked 0, SIGUSR2 blocked 0\n");
    ASSERT_STR_CONTAINS(out, "after kill 1: SIGUSR1 blocked 0, SIGUSR2 blocked 0\n");
}

/* ---- a signal frame the kernel could not write ------------------------------------------ */

/* A signal that arrives while a task's stack pointer is within a signal frame of its
 * guard: the kernel cannot write the handler's frame (it would go into the guard), drops
 * the signal and sends SIGSEGV (SI_KERNEL, no address) instead, and nothing faults
 * again on return. Before, vmstack took that for a fault not its own, put back SIG_DFL
 * and returned: the task went on unreported and the next overflow anywhere killed the
 * process unreported (helper 65). Now it is that task's overflow. The signal is sent by
 * a bare system call: a call's frame would reach the guard first. */
static long frame_pid, frame_tid;
static volatile sig_atomic_t frame_handled, frame_went_on;

static void frame_handler(int sig)
{
    (void)sig;
    frame_handled = 1;
}

static inline void bare_tgkill(long pid, long tid, long sig)
{
#if defined(__x86_64__)
    long r = SYS_tgkill;
    __asm__ volatile("syscall" : "+a"(r) : "D"(pid), "S"(tid), "d"(sig) : "rcx", "r11", "memory");
#elif defined(__aarch64__)
    register long x8 __asm__("x8") = SYS_tgkill;
    register long x0 __asm__("x0") = pid;
    register long x1 __asm__("x1") = tid;
    register long x2 __asm__("x2") = sig;
    __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
#endif
}

/* Where to_the_guard_then_signal stops: vms_stack_remaining(), or, on the program's own
 * stack (own_stack_lo set, below), the bytes above that stack's lowest. */
static char *own_stack_lo;
static int gp_instead;   /* a general-protection fault instead of the signal */

/* Goes down to within 512 bytes of the guard (far less than a signal frame: at least
 * MINSIGSTKSZ, 2 KiB), then signals itself (or faults); frame_went_on only if it was
 * let go on. */
NOIPA static void to_the_guard_then_signal(void)
{
    volatile char pad[64];
    pad[0] = 1;
    size_t left = own_stack_lo ? (size_t)((char *)pad - own_stack_lo) : vms_stack_remaining();
    if (left > 512) {
        to_the_guard_then_signal();
        sink += pad[0];
        return;
    }
    if (gp_instead) {
#if defined(__x86_64__)
        long v, bad = (long)0x8000000000000000ul;   /* not canonical */
        __asm__ volatile("mov (%1), %0" : "=r"(v) : "r"(bad) : "memory");
        sink += (int)v;
#endif
    } else {
        bare_tgkill(frame_pid, frame_tid, SIGUSR1);
    }
    frame_went_on = 1;
}

static void frame_fiber(void *arg)
{
    (void)arg;
    to_the_guard_then_signal();
}

static void setup_frame_signal(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = frame_handler;   /* no SA_ONSTACK: its frame goes on the task's stack */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    frame_pid = getpid();
    frame_tid = (long)syscall(SYS_gettid);
}

static void frame_fiber_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    setup_frame_signal();
    vms_fiber_attr attr = { 0, "near-the-guard" };
    vms_fiber *f = vms_fiber_create(frame_fiber, NULL, &attr);
    int r = vms_fiber_resume(f);
    const vms_oops *o = vms_fiber_oops(f);
    printf("resume %d, went on %d, handled %d, oops below the stack %d\n", r, (int)frame_went_on,
           (int)frame_handled, o && (char *)o->fault_addr < (char *)o->stack_base);
    vms_fiber_destroy(f);
    /* vmstack is still armed: an ordinary overflow is caught too. */
    f = vms_fiber_create(overflow_fiber, NULL, NULL);
    printf("next overflow: %d\n", vms_fiber_resume(f));
    vms_fiber_destroy(f);
}

TEST(signal_frame_that_does_not_fit_kills_the_fiber)
{
    need_guards();
    int st = run_child(frame_fiber_child);
    ASSERT_EXITED(st, 0);
    ASSERT_EQ(strncmp(out, "vmstack: stack overflow in fiber \"near-the-guard\" (id ", 53), 0);
    ASSERT_STR_CONTAINS(out, " bytes below the stack (the kernel could not write a signal "
                             "frame there: at most this far)\n");
    ASSERT_STR_CONTAINS(out, "vmstack:  to_the_guard_then_signal+0x");
    ASSERT_STR_CONTAINS(out, "vmstack: killed fiber \"near-the-guard\" (id ");
    ASSERT_STR_CONTAINS(out, "resume 4, went on 0, handled 0, oops below the stack 1\n");
    ASSERT_STR_CONTAINS(out, "next overflow: 4\n");
}

/* With VMS_ABORT the process dies by SIGSEGV after the report: the kernel's SIGSEGV for
 * the lost frame does not come back on return as a fault does, so it is raised (before,
 * the report said "aborting" and the fiber went on). */
static void frame_abort_child(void *arg)
{
    (void)arg;
    init_with(VMS_ABORT, 0, 0);
    setup_frame_signal();
    vms_fiber *f = vms_fiber_create(frame_fiber, NULL, NULL);
    printf("resume %d, went on %d\n", vms_fiber_resume(f), (int)frame_went_on);
}

TEST(signal_frame_that_does_not_fit_under_abort_dies)
{
    need_guards();
    int st = run_child(frame_abort_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "(the kernel could not write a signal frame there: at most this far)\n");
    assert_last_line_starts(out, "vmstack: aborting");
    ASSERT_STR_NOT_CONTAINS(out, "resume");
}

static void *frame_body(void *arg)
{
    (void)arg;
    frame_tid = (long)syscall(SYS_gettid);
    to_the_guard_then_signal();
    return (void *)1;
}

static void frame_thread_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    setup_frame_signal();
    pthread_t t;
    if (vms_thread_create(&t, NULL, frame_body, NULL) != 0) _exit(10);
    void *r;
    pthread_join(t, &r);
    printf("joined %s, went on %d\n", r == VMS_THREAD_KILLED ? "killed" : "other",
           (int)frame_went_on);
}

TEST(signal_frame_that_does_not_fit_kills_the_thread)
{
    need_guards();
    int st = run_child(frame_thread_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "(the kernel could not write a signal frame there: at most this far)\n");
    ASSERT_STR_CONTAINS(out, "vmstack: killed thread ");
    ASSERT_STR_CONTAINS(out, "joined killed, went on 0\n");
}

/* A general-protection fault also comes as SIGSEGV with SI_KERNEL and no address (x86-64:
 * a non-canonical address). Near the guard it is still not an overflow: not vmstack's,
 * the process dies of it unreported, as without vmstack. */
static void gp_fault_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    gp_instead = 1;
    vms_fiber *f = vms_fiber_create(frame_fiber, NULL, NULL);
    printf("resume %d, went on %d\n", vms_fiber_resume(f), (int)frame_went_on);
}

TEST(general_protection_fault_near_the_guard_is_not_an_overflow)
{
#if !defined(__x86_64__)
    SKIP("x86-64's general-protection fault");
#endif
    need_guards();
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    int st = run_child(gp_fault_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
    ASSERT_STR_NOT_CONTAINS(out, "resume");
}

/* The same on a stack vmstack does not know (the program's own, with makecontext): not
 * vmstack's, so the process dies by SIGSEGV as it would without vmstack, rather than go
 * on past the lost signal with vmstack's handler gone. */
static ucontext_t own_ctx, own_back;

static void own_stack_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_stack_free(vms_stack_alloc(0));   /* vmstack is in use */
    setup_frame_signal();
    size_t page = (size_t)sysconf(_SC_PAGESIZE), size = 64 * 1024;
    char *m = mmap(NULL, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || mprotect(m, page, PROT_NONE) != 0) _exit(11);
    own_stack_lo = m + page;
    getcontext(&own_ctx);
    own_ctx.uc_stack.ss_sp = own_stack_lo;
    own_ctx.uc_stack.ss_size = size;
    own_ctx.uc_link = &own_back;
    makecontext(&own_ctx, to_the_guard_then_signal, 0);
    swapcontext(&own_back, &own_ctx);
    printf("went on %d\n", (int)frame_went_on);
}

TEST(signal_frame_that_does_not_fit_a_foreign_stack_kills_the_process)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    int st = run_child(own_stack_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "went on");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
}

/* ---- a switch at the very end of a stack ------------------------------------------------ */

/* A fiber that has used its stack to its last bytes and then yields, or resumes another
 * fiber: the call itself may overrun (an unoptimized vmstack: the prologue of
 * vms_fiber_resume, or in vms_fiber_yield the switch's call, made after the resumer is
 * current again). That is the fiber's overflow and kills it alone; before, the
 * process aborted, as an "unsafe kill" inside vms_fiber_resume or as a stack "not a
 * vmstack task's" (helper 67). Optimized, they need little stack there (a first
 * resume's slow part does: helper 71), and the fiber goes on or is killed: either way,
 * never an abort. In the sanitizer builds the tools' switch calls (src/track.h) run on
 * that stack after the current task changed: an overflow inside ASan's aborted the
 * process as on a stack "not a vmstack task's", one inside TSan's hung it (its lock
 * held, the handler's instrumented code waited for it); a switch now kills the task
 * first when less than its tools' room is left (src/fiber.c, task_switch_room). Their
 * unoptimized frames are larger: TSan's window lay between 200 and 600 bytes from the
 * end (seen), so they try up to 600. */
#if defined(TST_ASAN) || defined(TST_TSAN)
#define EDGE_MAX 600
#else
#define EDGE_MAX 192
#endif
static int edge_mode;
static size_t edge_left;
static vms_fiber *edge_inner;

static void edge_inner_fn(void *arg)
{
    (void)arg;
    vms_fiber_yield();
}

NOIPA static void edge_dig(int d)
{
    volatile char pad[64];
    pad[0] = (char)d;
    if (vms_stack_remaining() > edge_left + 256) {
        edge_dig(d + 1);
        pad[1] = 0;
        return;
    }
    size_t r = vms_stack_remaining();
    if (r > edge_left) {
        volatile char *x = alloca(r - edge_left);
        x[0] = 0;
    }
    if (edge_mode == 0) vms_fiber_yield();
    else vms_fiber_resume(edge_inner);
    sink += pad[0];
}

static void edge_fn(void *arg)
{
    (void)arg;
    edge_dig(0);
}

#if defined(__x86_64__)
/* The same with the stack pointer set exactly edge_left bytes above the stack's lowest
 * byte for the call (x86-64: the alloca above lands where the compiler rounds it). */
static void edge_exact_fn(void *arg)
{
    (void)arg;
    uintptr_t sp = (uintptr_t)vms_stack_base(vms_stack_self()) + edge_left;
    if (edge_mode == 0)
        __asm__ volatile("mov %%rsp, %%rbx\n\t"
                         "mov %[sp], %%rsp\n\t"
                         "call vms_fiber_yield@PLT\n\t"
                         "mov %%rbx, %%rsp"
                         : : [sp] "r"(sp)
                         : "rbx", "rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11",
                           "memory", "cc");
    else
        __asm__ volatile("mov %%rsp, %%rbx\n\t"
                         "mov %[sp], %%rsp\n\t"
                         "call vms_fiber_resume@PLT\n\t"
                         "mov %%rbx, %%rsp"
                         : : [sp] "r"(sp), "D"(edge_inner)
                         : "rbx", "rax", "rcx", "rdx", "rsi", "r8", "r9", "r10", "r11",
                           "memory", "cc");
}
#endif

static void switch_at_the_edge_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    /* A first round far from the stack's end binds what the rounds call through the PLT
     * (under ASan, the runtime's alloca poisoning and fiber-switch functions): a lazily
     * bound call at the stack's end overflows inside the dynamic loader's resolver, where
     * vmstack does not kill (docs/api.md, Tools). */
    edge_mode = 0;
    edge_left = 32 * 1024;
    vms_fiber *warm = vms_fiber_create(edge_fn, NULL, NULL);
    while (vms_fiber_resume(warm) == VMS_SUSPENDED)
        ;
    vms_fiber_destroy(warm);
    /* Every 8 bytes: where exactly each call's pushes meet the guard depends on the
     * compiler and the build (a first resume tail-jumps to its slow part, whose own
     * prologue then overflows). */
    for (int exact = 0; exact < 2; exact++)
    for (edge_mode = 0; edge_mode < 2; edge_mode++) {
        for (edge_left = 0; edge_left <= EDGE_MAX; edge_left += exact ? 16 : 8) {
            void (*fn)(void *) = edge_fn;
#if defined(__x86_64__)
            if (exact) fn = edge_exact_fn;
#else
            if (exact) break;
#endif
            edge_inner = vms_fiber_create(edge_inner_fn, NULL, NULL);
            vms_fiber *f = vms_fiber_create(fn, NULL, NULL);
            int s = vms_fiber_resume(f);
            while (s == VMS_SUSPENDED) s = vms_fiber_resume(f);
            printf("%s%s, %zu left: %s\n", exact ? "exactly, " : "", edge_mode ? "resume" : "yield", edge_left,
                   s == VMS_KILLED ? "killed" : s == VMS_DONE ? "done" : "other");
            vms_fiber_destroy(f);
            vms_fiber_destroy(edge_inner);
        }
    }
    printf("all rounds ran\n");
}

TEST(switch_at_the_end_of_the_stack_kills_only_the_fiber)
{
    need_guards();
    int st = run_child(switch_at_the_edge_child);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "all rounds ran\n");
    ASSERT_STR_NOT_CONTAINS(out, " left: other\n");
    ASSERT_STR_NOT_CONTAINS(out, "aborting");
}

/* A fiber that, with few bytes of its stack left, calls one of the public calls whose
 * slow part takes a lock or allocates: a first resume of another fiber, a fiber's
 * creation and a stack's allocation with nothing cached (after vms_trim), a stack's
 * free, a done fiber's destroy and a killed one's (which flushes the dirty batch). An
 * overflow inside any of them must kill the fiber alone (or let the call finish), never
 * abort the process because vmstack's own code "may hold one of its locks". Swept over
 * 0 to 2 KiB left, every 16 bytes: unoptimized frames are large. */
#define SLOW_MAX (12 * 1024)
enum { SLOW_RESUME, SLOW_CREATE, SLOW_STACK_ALLOC, SLOW_STACK_FREE, SLOW_DESTROY,
       SLOW_DESTROY_KILLED, SLOW_CALLS };
static const char *const slow_names[SLOW_CALLS] = {
    "vms_fiber_resume", "vms_fiber_create", "vms_stack_alloc", "vms_stack_free",
    "vms_fiber_destroy", "vms_fiber_destroy (killed)",
};
static int slow_call;
static size_t slow_left;
static vms_fiber *slow_other;
static vms_stack *slow_stack;

static void slow_nothing(void *arg)
{
    (void)arg;
}

NOIPA static void slow_dig(int d)
{
    volatile char pad[64];
    pad[0] = (char)d;
    if (vms_stack_remaining() > slow_left + 256) {
        slow_dig(d + 1);
        pad[1] = 0;
        return;
    }
    size_t r = vms_stack_remaining();
    if (r > slow_left) {
        volatile char *x = alloca(r - slow_left);
        x[0] = 0;
    }
    switch (slow_call) {
    case SLOW_RESUME: vms_fiber_resume(slow_other); break;
    case SLOW_CREATE: slow_other = vms_fiber_create(slow_nothing, NULL, NULL); break;
    case SLOW_STACK_ALLOC: slow_stack = vms_stack_alloc(0); break;
    case SLOW_STACK_FREE: vms_stack_free(slow_stack); slow_stack = NULL; break;
    default: vms_fiber_destroy(slow_other); slow_other = NULL; break;
    }
    sink += pad[0];
}

static void slow_fn(void *arg)
{
    (void)arg;
    slow_dig(0);
}

static void slow_round(void)
{
    slow_other = NULL;
    slow_stack = NULL;
    switch (slow_call) {
    case SLOW_RESUME:
    case SLOW_DESTROY:
        slow_other = vms_fiber_create(slow_nothing, NULL, NULL);
        if (slow_call == SLOW_DESTROY && vms_fiber_resume(slow_other) != VMS_DONE) _exit(20);
        break;
    case SLOW_DESTROY_KILLED:
        slow_other = vms_fiber_create(overflow_fiber, NULL, NULL);
        if (vms_fiber_resume(slow_other) != VMS_KILLED) _exit(21);
        break;
    case SLOW_STACK_FREE: slow_stack = vms_stack_alloc(0); break;
    default: break;
    }
    vms_fiber *f = vms_fiber_create(slow_fn, NULL, NULL);
    if (!f) _exit(22);
    /* Nothing cached: the creation and allocation inside take their slow part. */
    if (slow_call == SLOW_CREATE || slow_call == SLOW_STACK_ALLOC) vms_trim();
    int s = vms_fiber_resume(f);
    printf("%s, %zu left: %s\n", slow_names[slow_call], slow_left,
           s == VMS_KILLED ? "killed" : s == VMS_DONE ? "done" : "other");
    vms_fiber_destroy(f);
    if (slow_other) vms_fiber_destroy(slow_other);
    if (slow_stack) vms_stack_free(slow_stack);
}

static void slow_calls_child(void *arg)
{
    slow_call = *(int *)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    /* A first round far from the end binds what the rounds call through the PLT: a lazily
     * bound call at the stack's end overflows in the dynamic loader, which is not killed
     * alone (docs/api.md, Tools). */
    slow_left = 32 * 1024;
    slow_round();
    for (slow_left = 0; slow_left <= SLOW_MAX; slow_left += 32) slow_round();
    printf("all rounds ran\n");
}

TEST(slow_calls_at_the_end_of_the_stack_kill_only_the_fiber)
{
    need_guards();
    int failed = -1;
    for (int c = 0; c < SLOW_CALLS; c++) {
        int st = tst_fork(slow_calls_child, &c, out, sizeof out);
        if (getenv("ISLAND_SHOW")) fprintf(stderr, "---- %s:\n%s----\n", slow_names[c], out);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !strstr(out, "all rounds ran\n") ||
            strstr(out, " left: other\n") || strstr(out, "aborting")) {
            size_t n = strlen(out);
            fprintf(stderr, "%s at the end of a fiber's stack: status %#x, output's end:\n%s\n",
                    slow_names[c], st, out + (n > 3000 ? n - 3000 : 0));
            failed = c;
        }
    }
    if (failed >= 0) TST_FAIL("%s (and any above) aborted at the end of a fiber's stack",
                              slow_names[failed]);
}

/* ---- SIGSEGV blocked by the program ------------------------------------------------------ */

/* The kernel cannot deliver a fault whose signal is blocked: it unblocks it, puts back
 * SIG_DFL and the process dies at once, unreported (docs/oops.md). vms_thread_create
 * passes the creator's mask through, so the common "block every signal in workers, one
 * thread sigwaits" setup must leave SIGSEGV and SIGBUS out. Pinned here. */
static void *blocked_body(void *arg)
{
    (void)arg;
    sink += island_deep(0);
    return NULL;
}

static void blocked_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL);
    pthread_t t;
    if (vms_thread_create(&t, NULL, blocked_body, NULL) != 0) _exit(10);
    void *r;
    pthread_join(t, &r);
    printf("joined %s\n", r == VMS_THREAD_KILLED ? "killed" : "other");
}

TEST(overflow_with_sigsegv_blocked_kills_the_process_unreported)
{
    need_guards();
    int st = run_child(blocked_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
    ASSERT_STR_NOT_CONTAINS(out, "joined");
}

/* ---- a signal that arrives during a report ------------------------------------------------ */

/* The program's handler of an asynchronous signal leaves by siglongjmp (a timeout), and
 * the signal arrives while vmstack writes a report (the oops hook sends it, as a timer
 * could fire then). Before, the handler ran inside the report and jumped out of it: the
 * fiber stayed RUNNING, never killed, vms_fiber_self() still named it on the main
 * stack, and the thread's next overflow was taken for a fault of that report ("fault
 * while reporting") and killed the process. Now the signal waits until the fiber is
 * killed and runs on the resumer's stack; under VMS_ABORT it never runs, and the
 * process dies of its overflow. */
static sigjmp_buf timeout_jmp;
static volatile sig_atomic_t timeout_armed;

static void timeout_handler(int sig)
{
    (void)sig;
    siglongjmp(timeout_jmp, 1);
}

static void timer_fires_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    if (timeout_armed) {
        timeout_armed = 0;
        raise(SIGALRM);
    }
}

static void signal_in_report_child(void *arg)
{
    int policy = (int)(intptr_t)arg;
    init_with(policy, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = timeout_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGALRM, &sa, NULL);
    vms_set_oops_hook(timer_fires_hook, NULL);
    timeout_armed = 1;
    for (int i = 0; i < 3; i++) {
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        if (sigsetjmp(timeout_jmp, 1) == 0)
            printf("round %d: state %d", i, vms_fiber_resume(f));
        else
            printf("round %d: timed out, state %d", i, vms_fiber_state(f));
        printf(", self %s\n", vms_fiber_self() ? "a fiber" : "none");
        fflush(stdout);
    }
}

TEST(signal_during_a_report_waits_for_the_kill)
{
    need_guards();
    int st = tst_fork(signal_in_report_child, (void *)(intptr_t)VMS_KILL_TASK, out, sizeof out);
    ASSERT_EXITED(st, 0);
    ASSERT_EQ(tst_count(out, "vmstack: killed fiber"), 3);
    ASSERT_STR_CONTAINS(out, "round 0: timed out, state 4, self none\n");
    ASSERT_STR_CONTAINS(out, "round 2: state 4, self none\n");
    ASSERT_STR_NOT_CONTAINS(out, "fault while reporting");
}

TEST(signal_during_a_report_does_not_save_an_aborting_process)
{
    need_guards();
    int st = tst_fork(signal_in_report_child, (void *)(intptr_t)VMS_ABORT, out, sizeof out);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "round 0");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* ---- the program's own SS_AUTODISARM alternate stack ------------------------------------ */

#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)   /* linux/signal.h, Linux 4.7 */
#endif

/* A thread that set up its own alternate stack with SS_AUTODISARM (vmstack keeps it):
 * the kernel disables it for every handler that runs on it and enables it again at
 * sigreturn, which a kill skips. The kill puts it back itself, so the second and third
 * overflows on the thread are caught too (left disabled, the second killed the process
 * unreported: the kernel had no stack to deliver its SIGSEGV on). */
static void autodisarm_child(void *arg)
{
    (void)arg;
    static char alt[512 * 1024];
    stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt, .ss_flags = SS_AUTODISARM };
    if (sigaltstack(&ss, NULL) != 0) {
        printf("no SS_AUTODISARM here\n");
        return;
    }
    init_with(VMS_KILL_TASK, 0, 0);
    for (int i = 0; i < 3; i++) {
        vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
        int s = vms_fiber_resume(f);
        vms_fiber_destroy(f);
        stack_t now;
        sigaltstack(NULL, &now);
        sigset_t mask;
        pthread_sigmask(SIG_BLOCK, NULL, &mask);
        printf("round %d: state %d, own stack %s, SIGSEGV blocked %d\n", i, s,
               now.ss_sp == alt && now.ss_size == sizeof alt && !(now.ss_flags & SS_DISABLE)
                   ? "enabled" : "disabled",
               sigismember(&mask, SIGSEGV));
        fflush(stdout);
    }
}

TEST(kill_enables_the_programs_autodisarm_alternate_stack_again)
{
    need_guards();
    int st = run_child(autodisarm_child);
    if (strstr(out, "no SS_AUTODISARM here\n")) SKIP("sigaltstack refuses SS_AUTODISARM");
    ASSERT_EXITED(st, 0);
    ASSERT_EQ(tst_count(out, "vmstack: killed fiber"), 3);
    ASSERT_STR_CONTAINS(out, "round 0: state 4, own stack enabled, SIGSEGV blocked 0\n");
    ASSERT_STR_CONTAINS(out, "round 2: state 4, own stack enabled, SIGSEGV blocked 0\n");
}

/* The same, when the kill cannot enable the program's stack again (sigaltstack fails,
 * by fault injection): nothing could report a later overflow on the thread (the kernel
 * would have no stack to deliver its SIGSEGV on, as in disabled_alt_child below), and a
 * line says so at once. Before, the failure went unsaid. */
static void autodisarm_rearm_fails_child(void *arg)
{
    (void)arg;
    static char alt[512 * 1024];
    stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt, .ss_flags = SS_AUTODISARM };
    if (sigaltstack(&ss, NULL) != 0) {
        printf("no SS_AUTODISARM here\n");
        return;
    }
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
    vms__os_inject(VMS__OP_SIGALTSTACK, 1, EINVAL, true);
    int s = vms_fiber_resume(f);
    vms__os_inject_clear();
    vms_fiber_destroy(f);
    stack_t now;
    sigaltstack(NULL, &now);
    printf("state %d, own stack %s\n", s, now.ss_flags & SS_DISABLE ? "disabled" : "enabled");
    fflush(stdout);
}

TEST(kill_says_when_the_autodisarm_alternate_stack_stays_disabled)
{
    need_guards();
    NEED_FAULT_INJECTION();
    int st = run_child(autodisarm_rearm_fails_child);
    if (strstr(out, "no SS_AUTODISARM here\n")) SKIP("sigaltstack refuses SS_AUTODISARM");
    ASSERT_EXITED(st, 0);
    ASSERT_EQ(tst_count(out, "vmstack: killed fiber"), 1);
    ASSERT_STR_CONTAINS(out, "state 4, own stack disabled\n");
    char want[64];
    snprintf(want, sizeof want, "(sigaltstack: errno %d): ", EINVAL);
    ASSERT_STR_CONTAINS(out, "vmstack: error: thread ");
    ASSERT_STR_CONTAINS(out, ": its alternate signal stack (the program's, SS_AUTODISARM) "
                             "could not be enabled again after the kill ");
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "a later stack overflow on this thread kills the process "
                             "unreported\n");
}

/* ---- a thread that disables its alternate stack ------------------------------------------ */

/* After vmstack gave the thread its alternate stack (at the first resume), the program
 * disables it: the kernel has no stack to deliver the overflow's SIGSEGV on and kills the
 * process at once, unreported (docs/oops.md). Pinned here. */
static void noop_fiber(void *arg)
{
    (void)arg;
}

static void disabled_alt_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *g = vms_fiber_create(noop_fiber, NULL, NULL);
    if (vms_fiber_resume(g) != VMS_DONE) _exit(10);
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    if (sigaltstack(&ss, NULL) != 0) _exit(11);
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
    printf("went on: state %d\n", vms_fiber_resume(f));
}

TEST(overflow_with_the_alternate_stack_disabled_kills_the_process_unreported)
{
    need_guards();
    int st = run_child(disabled_alt_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
    ASSERT_STR_NOT_CONTAINS(out, "went on");
}

/* ---- a thread's own alternate stack with little room ------------------------------------- */

/* A thread set up its own alternate stack of 8 KiB (more where the kernel's signal frame
 * needs it) before vmstack (kept, with a warning), in the top of a larger region whose
 * rest holds a pattern. A full report does not fit: written anyway, it ran off the stack
 * into the memory below (nothing guards it: 2.8 KiB of the pattern overwritten on
 * x86-64), and the fiber was killed while the process went on with that damage. Now a
 * short report says why there is no more, and the process dies by SIGSEGV. */
static char small_alt_region[256 * 1024] __attribute__((aligned(64)));

static void small_alt_child(void *arg)
{
    (void)arg;
    size_t alt = (getauxval(AT_MINSIGSTKSZ) + 4096 + 63) & ~(size_t)63;
    if (alt < 8192) alt = 8192;
    memset(small_alt_region, 0xa5, sizeof small_alt_region);
    stack_t ss = { .ss_sp = small_alt_region + sizeof small_alt_region - alt,
                   .ss_size = alt, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) _exit(9);
    init_with(VMS_KILL_TASK, 0, 0);
    vms_fiber *f = vms_fiber_create(overflow_fiber, NULL, NULL);
    int s = vms_fiber_resume(f);
    size_t damaged = 0;
    for (size_t i = 0; i < sizeof small_alt_region - alt; i++)
        damaged += (unsigned char)small_alt_region[i] != 0xa5;
    printf("went on: state %d, %zu bytes below the alternate stack overwritten\n", s, damaged);
}

TEST(report_that_does_not_fit_the_threads_own_alternate_stack_is_left_out)
{
    need_guards();
    NO_TSAN("TSan's own alternate stack is the one kept");
    int st = run_child(small_alt_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
    ASSERT_STR_CONTAINS(out, "vmstack:  no room for the report: the thread's own alternate "
                             "signal stack has ");
    ASSERT_STR_NOT_CONTAINS(out, "Call Trace:");
    ASSERT_STR_NOT_CONTAINS(out, "went on");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* ---- an overflow of the alternate stack itself -------------------------------------------- */

/* The program's SA_ONSTACK handler recurses until it runs off vmstack's alternate stack.
 * The kernel puts that fault's frame at the stack's top, over the handler's outer
 * frames: the report says what happened instead of only "not a vmstack task's", its
 * trace ends below the handler's own frame instead of reading the overwritten ones as
 * frames, and the process dies. */
static void onstack_fiber(void *arg)
{
    (void)arg;
    raise(SIGUSR1);
}

static void onstack_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = deep_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGUSR1, &sa, NULL);
    vms_fiber *f = vms_fiber_create(onstack_fiber, NULL, NULL);
    printf("went on: state %d\n", vms_fiber_resume(f));
}

TEST(overflow_of_the_alternate_stack_is_named)
{
    need_guards();
    NO_ASAN_BECAUSE("the alternate stack overrun is ASan's: its handler starts a report and "
                    "dies");
    NO_ASAN_EVEN_WITHOUT_SEGV("with ASan's handler off, ASan reports a stack-buffer-underflow "
                              "(a write of 168 bytes) on the overrun alternate stack, then a "
                              "nested bug, and exits 1");
    /* qemu-user (no vDSO) cannot deliver that fault at all: the process dies unreported
     * (without this change too). */
    if (!getauxval(AT_SYSINFO_EHDR)) SKIP("qemu-user does not deliver a fault below the alternate stack");
    NO_TSAN("TSan's own alternate stack is the one used");
    int st = run_child(onstack_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "(the stack is not a vmstack task's)\n");
    ASSERT_STR_CONTAINS(out, "vmstack: the stack is this thread's alternate signal stack: a "
                             "signal handler installed with SA_ONSTACK ran out of it");
    ASSERT_STR_CONTAINS(out, "island_deep+0x");
    ASSERT_STR_NOT_CONTAINS(out, "went on");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* ---- a wild access from a fiber ---------------------------------------------------------- */

static char *volatile wild_target;

static void wild_fiber(void *arg)
{
    (void)arg;
    *wild_target = 1;
}

static void wild_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    vms_stack *far[4];
    for (int i = 0; i < 4; i++) far[i] = vms_stack_alloc(0);
    vms_fiber_attr attr = { 0, "scribbler" };
    vms_fiber *f = vms_fiber_create(wild_fiber, NULL, &attr);
    const vms_stack *own = vms_fiber_stack(f);
    for (int i = 0; i < 4; i++)
        if ((char *)vms_stack_base(own) + vms_stack_size(own) + vms__opt.guard_size !=
            (char *)vms_stack_base(far[i])) {
            wild_target = (char *)vms_stack_base(far[i]) - 8;
            break;
        }
    vms_fiber_resume(f);
    printf("survived\n");
}

TEST(wild_access_from_fiber_aborts)
{
    need_guards();
    int st = run_child(wild_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: wild guard access on thread ");
    ASSERT_STR_CONTAINS(out, "(not the faulting fiber \"scribbler\" (id ");
    ASSERT_STR_CONTAINS(out, ") is not blamed\n");
    ASSERT_STR_NOT_CONTAINS(out, "killed");
    assert_last_line_starts(out, "vmstack: aborting");
}

/* ---- a vms thread's own C-library stack --------------------------------------------- */

static pthread_key_t deep_key;

static NOIPA int destructor_recurse(volatile char *prev, int n)
{
    volatile char frame[256];
    frame[0] = prev ? prev[0] : 1;
    return n == 0 ? frame[0] : destructor_recurse(frame, n - 1) + frame[0];
}

/* Runs at thread exit on the thread's small C-library stack, and overruns it. */
static void deep_destructor(void *p)
{
    (void)p;
    destructor_recurse(NULL, 1 << 20);
}

static void *set_deep_key(void *arg)
{
    pthread_setspecific(deep_key, arg);
    return NULL;
}

static void clib_overflow_child(void *arg)
{
    (void)arg;
    pthread_key_create(&deep_key, deep_destructor);
    pthread_t t;
    if (vms_thread_create(&t, NULL, set_deep_key, (void *)1) != 0) _exit(2);
    pthread_join(t, NULL);
    printf("survived\n");
}

/* A destructor whose one frame is larger than the C-library stack's guard (glibc's, a
 * page) and has no stack-clash probes: its stack pointer lands below the guard, in the
 * memory below (here a mapping of the test's; often another thread's stack), and its
 * writes go upwards through it into the guard. Before, the fault was not taken for an overflow
 * (sp below the guard) and the process died unreported (helper 70). Reported now; the
 * damage below is done by then, as on any thread with a one-page guard (docs/api.md). */
static pthread_key_t big_key;
static sem_t big_go;

NOIPA static void big_frame(void)
{
    volatile char buf[8 * 1024];
    for (size_t i = 0; i < sizeof buf; i += 512) buf[i] = (char)i;   /* upwards */
    sink += buf[0];
}

static void big_destructor(void *p)
{
    (void)p;
    pthread_attr_t a;
    void *lo = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &lo, &size);
        pthread_attr_destroy(&a);
    }
    /* Down to 1 KiB above the stack's lowest byte, then the 8 KiB frame: its lowest
     * byte about 3 KiB below the guard. */
    char here;
    size_t above = (size_t)(&here - (char *)lo);
    if (lo && above > 1024) {
        volatile char *x = alloca(above - 1024);
        x[0] = 0;
    }
    big_frame();
}

static void *set_big_key(void *arg)
{
    pthread_setspecific(big_key, arg);
    while (sem_wait(&big_go) != 0) {}
    return NULL;
}

static void big_frame_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0, 0);
    sem_init(&big_go, 0, 0);
    pthread_key_create(&big_key, big_destructor);
    pthread_t t;
    if (vms_thread_create(&t, NULL, set_big_key, (void *)1) != 0) _exit(2);
    /* Writable memory right below t's guard, as another thread's stack often is. */
    pthread_attr_t a;
    void *t_lo;
    size_t t_size, t_guard;
    if (pthread_getattr_np(t, &a) != 0) _exit(2);
    pthread_attr_getstack(&a, &t_lo, &t_size);
    pthread_attr_getguardsize(&a, &t_guard);
    pthread_attr_destroy(&a);
    size_t below = 8 * 1024;
    char *want = (char *)t_lo - t_guard - below;
    void *m = mmap(want, below, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (m != want) {
        printf("not adjacent\n");
        fflush(stdout);
        _exit(0);
    }
    fflush(stdout);
    sem_post(&big_go);
    pthread_join(t, NULL);
    printf("survived\n");
}

TEST(frame_jumping_the_c_library_stacks_guard_is_reported)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    NO_ASAN_EVEN_WITHOUT_SEGV("with ASan's handler off the first call of an ASan runtime "
                              "function binds it lazily: the fault is in the loader's "
                              "resolver and the trace has no big_frame (passes with "
                              "LD_BIND_NOW=1)");
    int st = run_child(big_frame_child);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, "not adjacent"))
        SKIP("the memory right below the thread's C-library stack is taken");
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "on its C library stack, outside its body");
    ASSERT_STR_CONTAINS(out, "big_frame+0x");
    ASSERT_STR_CONTAINS(out, "vmstack: aborting");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
}

/* A thread-specific-data destructor that overruns the vms thread's C-library stack (where
 * it runs, after the body) is reported, then the process dies by SIGSEGV as it would
 * without vmstack: the body is over, there is no task to kill. */
TEST(overflow_of_the_c_library_stack_at_thread_exit)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    int st = run_child(clib_overflow_child);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread \"");
    ASSERT_STR_CONTAINS(out, "on its C library stack, outside its body");
    ASSERT_STR_CONTAINS(out, "destructor_recurse+0x");
    ASSERT_STR_CONTAINS(out, "vmstack: aborting");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
}
