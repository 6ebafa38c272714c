/*
 * fiber.c - the fiber API and the context switch: every state transition and invalid
 * call, callee-saved and floating-point state across switches, deep nesting, thread
 * ownership, fork, scrubbing between owners, vms_stack_remaining.
 */
#include "test.h"
#ifdef VMSTACK_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif
#include "internal.h"

#include <fenv.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <ucontext.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#endif

/* Values the compiler cannot fold: every computation depends on it. */
static volatile long seed = 7;

/* ---- states ------------------------------------------------------------------------ */

static vms_fiber *seen_self;
static int seen_state;

static void body_yield_twice(void *arg)
{
    int *count = arg;
    seen_self = vms_fiber_self();
    seen_state = vms_fiber_state(seen_self);
    (*count)++;
    vms_fiber_yield();
    (*count)++;
    vms_fiber_yield();
    (*count)++;
}

TEST(states)
{
    int count = 0;
    vms_fiber *f = vms_fiber_create(body_yield_twice, &count, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_state(f), VMS_READY);
    ASSERT_EQ(count, 0);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    ASSERT_PTR_EQ(seen_self, f);
    ASSERT_EQ(seen_state, VMS_RUNNING);
    ASSERT_EQ(count, 1);
    ASSERT_EQ(vms_fiber_state(f), VMS_SUSPENDED);
    ASSERT_NULL(vms_fiber_oops(f));
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    ASSERT_EQ(count, 2);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_EQ(count, 3);
    ASSERT_EQ(vms_fiber_state(f), VMS_DONE);
    ASSERT_NULL(vms_fiber_oops(f));
    ASSERT_EQ(vms_fiber_resume(f), -EINVAL);     /* DONE cannot be resumed */
    ASSERT_EQ(count, 3);
    ASSERT_NULL(vms_fiber_self());
    vms_fiber_destroy(f);
}

static void body_noop(void *arg) { (void)arg; }

TEST(invalid_calls)
{
    ASSERT_EQ(vms_fiber_resume(NULL), -EINVAL);
    ASSERT_EQ(vms_fiber_state(NULL), -EINVAL);
    ASSERT_NULL(vms_fiber_oops(NULL));
    errno = 0;
    ASSERT_NULL(vms_fiber_stack(NULL));
    ASSERT_EQ(errno, EINVAL);
    vms_fiber_destroy(NULL);                      /* a no-op */
    vms_fiber_yield();                            /* outside a fiber: a no-op */
    ASSERT_NULL(vms_fiber_self());

    errno = 0;
    ASSERT_NULL(vms_fiber_create(NULL, NULL, NULL));
    ASSERT_EQ(errno, EINVAL);
    vms_fiber_attr huge = { .stack_size = SIZE_MAX, .name = "huge" };
    errno = 0;
    ASSERT_NULL(vms_fiber_create(body_noop, NULL, &huge));
    ASSERT_EQ(errno, EINVAL);
    vms_fiber_attr big = { .stack_size = VMS_MAX_STACK_SIZE + 1, .name = NULL };
    errno = 0;
    ASSERT_NULL(vms_fiber_create(body_noop, NULL, &big));
    ASSERT_EQ(errno, EINVAL);
}

/* No address space for a fiber's stack (every mmap fails while a new size class wants
 * its arena): NULL with ENOMEM (docs/api.md), no fiber, nothing kept; the same call
 * succeeds once memory is back. */
static void no_memory_child(void *arg)
{
    (void)arg;
    vms_fiber *f = vms_fiber_create(body_noop, NULL, NULL);   /* vmstack set up */
    if (!f || vms_fiber_resume(f) != VMS_DONE) exit(10);
    vms_fiber_destroy(f);
    vms_stats before, after;
    if (vms_get_stats(&before) != 0) exit(11);
    vms_fiber_attr a = { .stack_size = 4 * VMS_MIB, .name = "nomem" };  /* a new class */
    vms__os_inject(VMS__OP_MMAP, 1, ENOMEM, true);
    errno = 0;
    f = vms_fiber_create(body_noop, NULL, &a);
    int e = errno;
    vms__os_inject_clear();
    if (f || e != ENOMEM) {
        printf("vms_fiber_create: %p, errno %d\n", (void *)f, e);
        exit(12);
    }
    if (vms_get_stats(&after) != 0 || after.stacks_live != before.stacks_live) exit(13);
    f = vms_fiber_create(body_noop, NULL, &a);
    if (!f || vms_fiber_resume(f) != VMS_DONE) exit(14);
    vms_fiber_destroy(f);
    exit(0);
}

TEST(create_without_memory_is_enomem)
{
#ifndef VMSTACK_VMAP
    SKIP("the direct backend takes its stacks from malloc, which mmap injection does not "
         "fail");
#endif
    NEED_FAULT_INJECTION();
    char out[4096];
    tst_run_ok(no_memory_child, NULL, out, sizeof out);
}

TEST(destroy_unstarted_and_suspended)
{
    vms_stats before, after;
    ASSERT_EQ(vms_get_stats(&before), 0);
    int count = 0;
    vms_fiber *a = vms_fiber_create(body_yield_twice, &count, NULL);
    vms_fiber *b = vms_fiber_create(body_yield_twice, &count, NULL);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    ASSERT_EQ(vms_get_stats(&after), 0);
    ASSERT_EQ(after.stacks_live, before.stacks_live + 2);
    ASSERT_EQ(vms_fiber_resume(b), VMS_SUSPENDED);
    vms_fiber_destroy(a);                         /* READY */
    vms_fiber_destroy(b);                         /* SUSPENDED */
    ASSERT_EQ(count, 1);
    ASSERT_EQ(vms_get_stats(&after), 0);
    ASSERT_EQ(after.stacks_live, before.stacks_live);
}

static void body_resume_self(void *arg)
{
    (void)arg;
    ASSERT_EQ(vms_fiber_resume(vms_fiber_self()), -EINVAL);
}

TEST(resume_running_self)
{
    vms_fiber *f = vms_fiber_create(body_resume_self, NULL, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    vms_fiber_destroy(f);
}

static void body_destroy_self(void *arg)
{
    int *after = arg;
    errno = 0;
    vms_fiber_destroy(vms_fiber_self());
    ASSERT_EQ(errno, EBUSY);
    ASSERT_EQ(vms_fiber_state(vms_fiber_self()), VMS_RUNNING);
    *after = 1;                                   /* still alive on its own stack */
}

static void child_destroy_running(void *arg)
{
    (void)arg;
    int after = 0;
    vms_fiber *f = vms_fiber_create(body_destroy_self, &after, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_EQ(after, 1);
    vms_fiber_destroy(f);
}

TEST(destroy_running_refused)
{
    char out[4096];
    int status = tst_fork(child_destroy_running, NULL, out, sizeof out);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_fiber_destroy:");
    ASSERT_STR_CONTAINS(out, "is running");
}

/* The error names the fiber on one line: a newline or quote in its name is shown as '?'
 * (it split the line, the second part not starting with "vmstack:"). */
static void child_destroy_running_named(void *arg)
{
    (void)arg;
    int after = 0;
    vms_fiber_attr a = { .stack_size = 0, .name = "two\nlines \"q\"" };
    vms_fiber *f = vms_fiber_create(body_destroy_self, &after, &a);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    vms_fiber_destroy(f);
}

TEST(destroy_running_error_is_one_line)
{
    char out[4096];
    int status = tst_fork(child_destroy_running_named, NULL, out, sizeof out);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "\"two?lines ?q?\" is running (the caller or one of its resumers); "
                             "nothing was freed\n");
}

/* A fiber running on another thread: refused the same way (EBUSY, nothing freed), and
 * the error says where it runs, not that the caller or its resumers run it. */
static atomic_int other_in, other_out;

static void body_spin_then_yield(void *arg)
{
    (void)arg;
    atomic_store(&other_in, 1);
    while (!atomic_load(&other_out)) sched_yield();
    vms_fiber_yield();
}

static void *resume_on_this_thread(void *arg)
{
    return (void *)(intptr_t)vms_fiber_resume(arg);
}

static void child_destroy_running_elsewhere(void *arg)
{
    (void)arg;
    vms_fiber_attr a = { .stack_size = 0, .name = "elsewhere" };
    vms_fiber *f = vms_fiber_create(body_spin_then_yield, NULL, &a);
    ASSERT_NOT_NULL(f);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, resume_on_this_thread, f), 0);
    while (!atomic_load(&other_in)) sched_yield();
    errno = 0;
    vms_fiber_destroy(f);
    ASSERT_EQ(errno, EBUSY);
    ASSERT_EQ(vms_fiber_state(f), VMS_RUNNING);
    atomic_store(&other_out, 1);
    void *r;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, VMS_SUSPENDED);
    vms_fiber_destroy(f);                         /* now it can go */
}

TEST(destroy_running_on_another_thread_refused)
{
    char out[4096];
    int status = tst_fork(child_destroy_running_elsewhere, NULL, out, sizeof out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) TST_FAIL("child failed:\n%s", out);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_fiber_destroy: fiber ");
    ASSERT_STR_CONTAINS(out, "\"elsewhere\" is running on another thread; nothing was freed\n");
}

/* A fiber that resumed the caller is RUNNING too: destroying it from the nested fiber
 * would free the stack the resume returns to. */
static vms_fiber *resumer;

static void body_destroy_resumer(void *arg)
{
    int *after = arg;
    errno = 0;
    vms_fiber_destroy(resumer);
    ASSERT_EQ(errno, EBUSY);
    ASSERT_EQ(vms_fiber_state(resumer), VMS_RUNNING);
    ASSERT_EQ(vms_fiber_resume(resumer), -EINVAL);
    *after = 1;
}

static void body_resume_nested(void *arg)
{
    vms_fiber *g = vms_fiber_create(body_destroy_resumer, arg, NULL);
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(vms_fiber_resume(g), VMS_DONE);
    vms_fiber_destroy(g);
    *(int *)arg += 1;                             /* its own stack is still there */
}

static void child_destroy_resumer(void *arg)
{
    (void)arg;
    int after = 0;
    resumer = vms_fiber_create(body_resume_nested, &after, NULL);
    ASSERT_NOT_NULL(resumer);
    ASSERT_EQ(vms_fiber_resume(resumer), VMS_DONE);
    ASSERT_EQ(after, 2);
    vms_fiber_destroy(resumer);
}

TEST(destroy_resumer_refused)
{
    char out[4096];
    int status = tst_fork(child_destroy_resumer, NULL, out, sizeof out);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) TST_FAIL("child failed:\n%s", out);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_fiber_destroy:");
    ASSERT_STR_CONTAINS(out, "is running");
}

TEST(names_ids_stacks)
{
    vms_fiber_attr attr = { .stack_size = 64 * 1024, .name = "parser-17" };
    vms_fiber *a = vms_fiber_create(body_noop, NULL, &attr);
    vms_fiber *b = vms_fiber_create(body_noop, NULL, NULL);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    const vms_stack *sa = vms_fiber_stack(a);
    ASSERT_NOT_NULL(sa);
    ASSERT_GE(vms_stack_size(sa), 64 * 1024);
    ASSERT_EQ(vms_stack_size(vms_fiber_stack(b)), VMS_DEFAULT_STACK_SIZE);
    ASSERT_PTR_EQ(vms__stack_record(sa)->owner, a);                  /* the stack record names its task */
    vms_fiber_destroy(a);
    vms_fiber_destroy(b);
}

static struct vms__task_info info_in_fiber;
static int info_rc;

static void body_info(void *arg)
{
    (void)arg;
    info_rc = vms__task_current(&info_in_fiber);
}

TEST(task_current)
{
    struct vms__task_info info;
    ASSERT_EQ(vms__task_current(&info), -1);      /* the main thread runs no task */
    char longname[100];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    vms_fiber_attr attr = { .stack_size = 0, .name = "worker" };
    vms_fiber *f = vms_fiber_create(body_info, NULL, &attr);
    vms_fiber *g = vms_fiber_create(body_info, NULL, NULL);
    vms_fiber_attr lattr = { .stack_size = 0, .name = longname };
    vms_fiber *h = vms_fiber_create(body_info, NULL, &lattr);
    ASSERT_NOT_NULL(f);
    ASSERT_NOT_NULL(g);
    ASSERT_NOT_NULL(h);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_EQ(info_rc, 0);
    ASSERT_EQ(info_in_fiber.kind, VMS__TASK_FIBER);
    ASSERT_STR_CONTAINS(info_in_fiber.name, "worker");
    ASSERT_PTR_EQ(info_in_fiber.stack, vms__stack_record(vms_fiber_stack(f)));
    unsigned long id_f = info_in_fiber.id;
    ASSERT_EQ(vms_fiber_resume(g), VMS_DONE);
    ASSERT_EQ(info_in_fiber.name[0], '\0');       /* unnamed: "" */
    ASSERT_NE(info_in_fiber.id, id_f);            /* ids are unique */
    ASSERT_EQ(vms_fiber_resume(h), VMS_DONE);
    ASSERT_LT(strlen(info_in_fiber.name), sizeof longname - 1); /* cut, terminated */
    ASSERT_GT(strlen(info_in_fiber.name), 16);
    vms_fiber_destroy(f);
    vms_fiber_destroy(g);
    vms_fiber_destroy(h);
}

/* ---- registers --------------------------------------------------------------------- */

/* Keeps 16 integers and 10 doubles live across each yield: more than the callee-saved
 * registers of either ABI, so some live in rbx/r12-r15 (x19-x28, d8-d15) and the rest
 * in spill slots. The other side of the switch does the same with other values. */
static __attribute__((noinline)) long busy_across_yield(long k, int rounds)
{
    long a0 = seed * k + 1, a1 = seed * k + 2, a2 = seed * k + 3, a3 = seed * k + 5;
    long a4 = seed * k + 7, a5 = seed * k + 11, a6 = seed * k + 13, a7 = seed * k + 17;
    long a8 = seed * k + 19, a9 = seed * k + 23, a10 = seed * k + 29, a11 = seed * k + 31;
    long a12 = seed * k + 37, a13 = seed * k + 41, a14 = seed * k + 43, a15 = seed * k + 47;
    double d0 = seed * 0.5 + k, d1 = seed * 0.25 + k, d2 = seed * 0.125 + k, d3 = seed * 1.5 + k;
    double d4 = seed * 2.5 + k, d5 = seed * 3.5 + k, d6 = seed * 4.5 + k, d7 = seed * 5.5 + k;
    double d8 = seed * 6.5 + k, d9 = seed * 7.5 + k;
    for (int r = 0; r < rounds; r++) {
        vms_fiber_yield();                        /* outside a fiber: a plain call */
        a0 += 1; a1 += 2; a2 += 3; a3 += 4; a4 += 5; a5 += 6; a6 += 7; a7 += 8;
        a8 += 9; a9 += 10; a10 += 11; a11 += 12; a12 += 13; a13 += 14; a14 += 15; a15 += 16;
        d0 += 1; d1 += 2; d2 += 3; d3 += 4; d4 += 5; d5 += 6; d6 += 7; d7 += 8; d8 += 9; d9 += 10;
    }
    return a0 + 3 * a1 + 5 * a2 + 7 * a3 + 11 * a4 + 13 * a5 + 17 * a6 + 19 * a7 + 23 * a8 +
           29 * a9 + 31 * a10 + 37 * a11 + 41 * a12 + 43 * a13 + 47 * a14 + 53 * a15 +
           (long)(d0 + 3 * d1 + 5 * d2 + 7 * d3 + 11 * d4 + 13 * d5 + 17 * d6 + 19 * d7 +
                  23 * d8 + 29 * d9);
}

/* The same function run outside a fiber (yield is a no-op there) gives the expected
 * value. */
static long expected_busy(long k, int rounds) { return busy_across_yield(k, rounds); }

static long fiber_busy_result;
static void body_busy(void *arg)
{
    fiber_busy_result = busy_across_yield((long)(intptr_t)arg, 50);
}

/* The resumer's side: the same many live values across each resume. */
static __attribute__((noinline)) long resume_busy(vms_fiber *f, long k)
{
    long a0 = seed * k + 1, a1 = seed * k + 2, a2 = seed * k + 3, a3 = seed * k + 5;
    long a4 = seed * k + 7, a5 = seed * k + 11, a6 = seed * k + 13, a7 = seed * k + 17;
    double d0 = seed * 0.5 + k, d1 = seed * 0.25 + k, d2 = seed * 0.125 + k, d3 = seed * 1.5 + k;
    double d4 = seed * 2.5 + k, d5 = seed * 3.5 + k, d6 = seed * 4.5 + k, d7 = seed * 5.5 + k;
    int s;
    while ((s = vms_fiber_resume(f)) == VMS_SUSPENDED) {
        a0 += 1; a1 += 2; a2 += 3; a3 += 4; a4 += 5; a5 += 6; a6 += 7; a7 += 8;
        d0 += 1; d1 += 2; d2 += 3; d3 += 4; d4 += 5; d5 += 6; d6 += 7; d7 += 8;
    }
    ASSERT_EQ(s, VMS_DONE);
    return a0 + 3 * a1 + 5 * a2 + 7 * a3 + 11 * a4 + 13 * a5 + 17 * a6 + 19 * a7 +
           (long)(d0 + 3 * d1 + 5 * d2 + 7 * d3 + 11 * d4 + 13 * d5 + 17 * d6 + 19 * d7);
}

TEST(callee_saved_registers)
{
    long want_fiber = expected_busy(1000, 50);
    /* The resumer's expectation: the loop body runs once per SUSPENDED result (50). */
    long k = 99;
    long want_main = 0;
    {
        long a0 = seed * k + 1, a1 = seed * k + 2, a2 = seed * k + 3, a3 = seed * k + 5;
        long a4 = seed * k + 7, a5 = seed * k + 11, a6 = seed * k + 13, a7 = seed * k + 17;
        double d0 = seed * 0.5 + k, d1 = seed * 0.25 + k, d2 = seed * 0.125 + k;
        double d3 = seed * 1.5 + k, d4 = seed * 2.5 + k, d5 = seed * 3.5 + k;
        double d6 = seed * 4.5 + k, d7 = seed * 5.5 + k;
        for (int r = 0; r < 50; r++) {
            a0 += 1; a1 += 2; a2 += 3; a3 += 4; a4 += 5; a5 += 6; a6 += 7; a7 += 8;
            d0 += 1; d1 += 2; d2 += 3; d3 += 4; d4 += 5; d5 += 6; d6 += 7; d7 += 8;
        }
        want_main = a0 + 3 * a1 + 5 * a2 + 7 * a3 + 11 * a4 + 13 * a5 + 17 * a6 + 19 * a7 +
                    (long)(d0 + 3 * d1 + 5 * d2 + 7 * d3 + 11 * d4 + 13 * d5 + 17 * d6 +
                           19 * d7);
    }
    vms_fiber *f = vms_fiber_create(body_busy, (void *)(intptr_t)1000, NULL);
    ASSERT_NOT_NULL(f);
    long got_main = resume_busy(f, k);
    ASSERT_EQ(got_main, want_main);
    ASSERT_EQ(fiber_busy_result, want_fiber);
    vms_fiber_destroy(f);
}

#if defined(__x86_64__)
static unsigned short x87_cw(void)
{
    unsigned short cw;
    __asm__ volatile("fnstcw %0" : "=m"(cw));
    return cw;
}
static void set_x87_cw(unsigned short cw) { __asm__ volatile("fldcw %0" : : "m"(cw)); }
#elif defined(__aarch64__)
/* FPCR's flush-to-zero (FZ, bit 24) and default-NaN (DN, bit 25) bits: FPCR holds them
 * beside the rounding mode, and fesetround alone does not show that all of it moves. */
#define FPCR_FZ_DN (3ul << 24)
static unsigned long fpcr(void)
{
    unsigned long v;
    __asm__ volatile("mrs %0, fpcr" : "=r"(v));
    return v;
}
static void set_fpcr(unsigned long v) { __asm__ volatile("msr fpcr, %0" : : "r"(v)); }
#endif

struct fp_log { int rounds_ok; int fail_line; };

/* The fiber keeps its own rounding mode (and on x86-64 its own MXCSR FTZ/DAZ bits and x87
 * precision, on aarch64 its FPCR FZ/DN bits) across yields, while the resumer changes its
 * own in between. */
static void body_fp(void *arg)
{
    struct fp_log *log = arg;
    fesetround(FE_UPWARD);
#if defined(__x86_64__)
    _mm_setcsr(_mm_getcsr() | 0x8040);            /* FTZ | DAZ */
    set_x87_cw((unsigned short)((x87_cw() & ~0x300) | 0x000)); /* single precision */
#elif defined(__aarch64__)
    set_fpcr(fpcr() | FPCR_FZ_DN);
#endif
    volatile double one = 1.0, three = 3.0;
    double third_up = one / three;
    for (int i = 0; i < 20; i++) {
        vms_fiber_yield();
        if (fegetround() != FE_UPWARD) { log->fail_line = __LINE__; return; }
        if (one / three != third_up) { log->fail_line = __LINE__; return; }
#if defined(__x86_64__)
        if ((_mm_getcsr() & 0x8040) != 0x8040) { log->fail_line = __LINE__; return; }
        if ((x87_cw() & 0x300) != 0) { log->fail_line = __LINE__; return; }
#elif defined(__aarch64__)
        if ((fpcr() & FPCR_FZ_DN) != FPCR_FZ_DN) { log->fail_line = __LINE__; return; }
#endif
        log->rounds_ok++;
    }
}

TEST(floating_point_control)
{
#ifdef VMSTACK_VALGRIND
    /* Valgrind's CPU does not model the rounding mode of MXCSR and the x87 control
     * word faithfully, so this test says nothing there. */
    if (RUNNING_ON_VALGRIND) SKIP("Valgrind does not emulate the FP control registers");
#endif
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    struct fp_log log = { 0, 0 };
    vms_fiber *f = vms_fiber_create(body_fp, &log, NULL);
    ASSERT_NOT_NULL(f);
    volatile double one = 1.0, three = 3.0;
    double third_near = one / three;
#if defined(__x86_64__)
    unsigned csr0 = _mm_getcsr();
    unsigned short cw0 = x87_cw();
#endif
    int s, i = 0, mine = FE_TONEAREST;
    while ((s = vms_fiber_resume(f)) == VMS_SUSPENDED) {
        ASSERT_EQ(fegetround(), mine);
        if (mine == FE_TONEAREST) ASSERT(one / three == third_near);
#if defined(__x86_64__)
        ASSERT_EQ(_mm_getcsr() & 0x8040, csr0 & 0x8040);
        ASSERT_EQ(x87_cw() & 0x300, cw0 & 0x300);
#elif defined(__aarch64__)
        ASSERT_UEQ(fpcr() & FPCR_FZ_DN, 0);
#endif
        /* Change ours in between: the fiber must not see it. */
        mine = i++ % 2 ? FE_DOWNWARD : FE_TONEAREST;
        fesetround(mine);
    }
    fesetround(FE_TONEAREST);
    ASSERT_EQ(s, VMS_DONE);
    ASSERT_EQ(log.fail_line, 0);
    ASSERT_EQ(log.rounds_ok, 20);
    vms_fiber_destroy(f);
}

/* The floating-point exception flags are the thread's, not the fiber's: the ABI does not
 * preserve them across a call, and on x86-64 a switch that loaded an MXCSR differing
 * only in them cost about 56 ns more on the project's VM (docs/api.md). The flags are
 * raised by an SSE division (glibc's feraiseexcept raises FE_INEXACT on the x87 unit,
 * whose status word no switch ever touched). */
static volatile double fp_one = 1.0, fp_three = 3.0, fp_sink;
static int flags_seen[2];

static void body_flags(void *arg)
{
    (void)arg;
    vms_fiber_yield();
    flags_seen[0] = fetestexcept(FE_INEXACT) != 0;  /* raised by the resumer meanwhile */
    feclearexcept(FE_ALL_EXCEPT);                  /* cleared here: the resumer's too */
    vms_fiber_yield();
    flags_seen[1] = fetestexcept(FE_INEXACT) != 0;  /* none: the resumer cleared them */
    fp_sink = fp_one / fp_three;                   /* raised at the end, for the resumer */
}

TEST(fp_exception_flags_belong_to_the_thread)
{
#ifdef VMSTACK_VALGRIND
    if (RUNNING_ON_VALGRIND) SKIP("Valgrind does not emulate the FP exception flags");
#endif
    feclearexcept(FE_ALL_EXCEPT);
    vms_fiber *f = vms_fiber_create(body_flags, NULL, NULL);   /* made with none raised */
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    fp_sink = fp_one / fp_three;                   /* inexact */
    ASSERT(fetestexcept(FE_INEXACT));
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    ASSERT_EQ(flags_seen[0], 1);
    ASSERT_EQ(fetestexcept(FE_INEXACT), 0);        /* the fiber cleared the thread's */
    fp_sink = fp_one / fp_three;                   /* raised and cleared before the */
    feclearexcept(FE_ALL_EXCEPT);                  /* resume: the fiber sees none */
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);      /* its end: a jump that saves nothing */
    ASSERT_EQ(flags_seen[1], 0);
    ASSERT(fetestexcept(FE_INEXACT));              /* what the fiber raised before it ended */
    feclearexcept(FE_ALL_EXCEPT);
    vms_fiber_destroy(f);
}

/* A new fiber starts with its creator's floating-point control state. */
static int start_round;
static void body_round(void *arg) { (void)arg; start_round = fegetround(); }

TEST(fp_state_inherited_at_create)
{
    fesetround(FE_TOWARDZERO);
    vms_fiber *f = vms_fiber_create(body_round, NULL, NULL);
    fesetround(FE_TONEAREST);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_EQ(start_round, FE_TOWARDZERO);
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    vms_fiber_destroy(f);
}

/* Every register the ABI preserves, at full width, set by hand (the compiler decides
 * which ones callee_saved_registers uses): regs_across(fn, arg, seed) fills them with
 * 64-bit patterns derived from seed, sets the rounding mode to seed & 3, calls fn(arg)
 * and returns a mask of what did not come back: bit i for the i-th integer register
 * (aarch64: x19-x28; x86-64: rbx, r12-r15), bit 10 + i for d8 + i (aarch64), bit 18 for
 * the frame pointer and sp (x29 and sp; rbp and rsp), bit 19 for the rounding mode
 * (FPCR.RMode; MXCSR.RC and the x87 control word's RC). The fiber and its resumer each
 * call it with their own seed, around a yield and a resume: every pattern and rounding
 * mode differs between the two sides of each switch. */
int regs_across(void (*fn)(void *), void *arg, uint64_t seed);
#if defined(__aarch64__)
/* x9 = seed, x10 = the step (an odd 64-bit constant): register i gets seed + (i+1)*step. */
__asm__(
    "    .text\n"
    "    .p2align 4\n"
    "    .type regs_across, %function\n"
    "regs_across:\n"
    "    hint #34\n"                                  /* bti c */
    "    stp x29, x30, [sp, #-176]!\n"
    "    mov x29, sp\n"
    "    stp x19, x20, [sp, #16]\n"
    "    stp x21, x22, [sp, #32]\n"
    "    stp x23, x24, [sp, #48]\n"
    "    stp x25, x26, [sp, #64]\n"
    "    stp x27, x28, [sp, #80]\n"
    "    stp d8, d9, [sp, #96]\n"
    "    stp d10, d11, [sp, #112]\n"
    "    stp d12, d13, [sp, #128]\n"
    "    stp d14, d15, [sp, #144]\n"
    "    mrs x11, fpcr\n"
    "    stp x2, x11, [sp, #160]\n"                   /* seed, the caller's FPCR */
    "    mov x9, x2\n"
    "    movz x10, #0x7c15\n"
    "    movk x10, #0x7f4a, lsl #16\n"
    "    movk x10, #0x79b9, lsl #32\n"
    "    movk x10, #0x9e37, lsl #48\n"
    "    add x19, x9, x10\n"
    "    add x20, x19, x10\n"
    "    add x21, x20, x10\n"
    "    add x22, x21, x10\n"
    "    add x23, x22, x10\n"
    "    add x24, x23, x10\n"
    "    add x25, x24, x10\n"
    "    add x26, x25, x10\n"
    "    add x27, x26, x10\n"
    "    add x28, x27, x10\n"
    "    add x12, x28, x10\n  fmov d8, x12\n"
    "    add x12, x12, x10\n  fmov d9, x12\n"
    "    add x12, x12, x10\n  fmov d10, x12\n"
    "    add x12, x12, x10\n  fmov d11, x12\n"
    "    add x12, x12, x10\n  fmov d12, x12\n"
    "    add x12, x12, x10\n  fmov d13, x12\n"
    "    add x12, x12, x10\n  fmov d14, x12\n"
    "    add x12, x12, x10\n  fmov d15, x12\n"
    "    and x12, x9, #3\n"                           /* RMode: FPCR bits 22-23 */
    "    bic x11, x11, #0xc00000\n"
    "    orr x11, x11, x12, lsl #22\n"
    "    msr fpcr, x11\n"
    "    mov x16, x0\n"
    "    mov x0, x1\n"
    "    blr x16\n"                                   /* fn(arg) */
    "    ldr x9, [sp, #160]\n"
    "    movz x10, #0x7c15\n"
    "    movk x10, #0x7f4a, lsl #16\n"
    "    movk x10, #0x79b9, lsl #32\n"
    "    movk x10, #0x9e37, lsl #48\n"
    "    mov x0, #0\n"
    "    add x12, x9, x10\n  cmp x19, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #0\n"
    "    add x12, x12, x10\n  cmp x20, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #1\n"
    "    add x12, x12, x10\n  cmp x21, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #2\n"
    "    add x12, x12, x10\n  cmp x22, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #3\n"
    "    add x12, x12, x10\n  cmp x23, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #4\n"
    "    add x12, x12, x10\n  cmp x24, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #5\n"
    "    add x12, x12, x10\n  cmp x25, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #6\n"
    "    add x12, x12, x10\n  cmp x26, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #7\n"
    "    add x12, x12, x10\n  cmp x27, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #8\n"
    "    add x12, x12, x10\n  cmp x28, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #9\n"
    "    add x12, x12, x10\n  fmov x14, d8\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #10\n"
    "    add x12, x12, x10\n  fmov x14, d9\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #11\n"
    "    add x12, x12, x10\n  fmov x14, d10\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #12\n"
    "    add x12, x12, x10\n  fmov x14, d11\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #13\n"
    "    add x12, x12, x10\n  fmov x14, d12\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #14\n"
    "    add x12, x12, x10\n  fmov x14, d13\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #15\n"
    "    add x12, x12, x10\n  fmov x14, d14\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #16\n"
    "    add x12, x12, x10\n  fmov x14, d15\n  cmp x14, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #17\n"
    "    mov x12, sp\n  cmp x12, x29\n  cset x13, ne\n  orr x0, x0, x13, lsl #18\n"
    "    mrs x11, fpcr\n  ubfx x11, x11, #22, #2\n  and x12, x9, #3\n"
    "    cmp x11, x12\n  cset x13, ne\n  orr x0, x0, x13, lsl #19\n"
    "    ldr x11, [sp, #168]\n  msr fpcr, x11\n"
    "    ldp x19, x20, [sp, #16]\n"
    "    ldp x21, x22, [sp, #32]\n"
    "    ldp x23, x24, [sp, #48]\n"
    "    ldp x25, x26, [sp, #64]\n"
    "    ldp x27, x28, [sp, #80]\n"
    "    ldp d8, d9, [sp, #96]\n"
    "    ldp d10, d11, [sp, #112]\n"
    "    ldp d12, d13, [sp, #128]\n"
    "    ldp d14, d15, [sp, #144]\n"
    "    ldp x29, x30, [sp], #176\n"
    "    ret\n"
    "    .size regs_across, .-regs_across\n");
#elif defined(__x86_64__)
/* rdx = seed, r8 = the step: register i gets seed + (i+1)*step. The frame: seed at
 * 0(%rsp), the caller's MXCSR at 8, the caller's x87 control word at 12, scratch at 16. */
__asm__(
    "    .text\n"
    "    .p2align 4\n"
    "    .type regs_across, @function\n"
    "regs_across:\n"
    "    endbr64\n"
    "    push %rbp\n"
    "    mov %rsp, %rbp\n"
    "    push %rbx\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "    sub $24, %rsp\n"
    "    mov %rdx, 0(%rsp)\n"
    "    stmxcsr 8(%rsp)\n"
    "    fnstcw 12(%rsp)\n"
    "    movabs $0x9e3779b97f4a7c15, %r8\n"
    "    lea (%rdx,%r8), %rbx\n"
    "    lea (%rbx,%r8), %r12\n"
    "    lea (%r12,%r8), %r13\n"
    "    lea (%r13,%r8), %r14\n"
    "    lea (%r14,%r8), %r15\n"
    "    mov %rdx, %rax\n  and $3, %eax\n"            /* RC: MXCSR bits 13-14, x87 10-11 */
    "    mov 8(%rsp), %ecx\n  and $~0x6000, %ecx\n  mov %eax, %r9d\n  shl $13, %r9d\n"
    "    or %r9d, %ecx\n  mov %ecx, 16(%rsp)\n  ldmxcsr 16(%rsp)\n"
    "    movzwl 12(%rsp), %ecx\n  and $~0xc00, %ecx\n  shl $10, %eax\n  or %eax, %ecx\n"
    "    mov %cx, 16(%rsp)\n  fldcw 16(%rsp)\n"
    "    mov %rdi, %rax\n"
    "    mov %rsi, %rdi\n"
    "    call *%rax\n"                                /* fn(arg) */
    "    mov 0(%rsp), %rdx\n"
    "    movabs $0x9e3779b97f4a7c15, %r8\n"
    "    xor %eax, %eax\n"
    "    lea (%rdx,%r8), %rcx\n  cmp %rcx, %rbx\n  setne %r9b\n  movzbl %r9b, %r9d\n  or %r9d, %eax\n"
    "    add %r8, %rcx\n  cmp %rcx, %r12\n  setne %r9b\n  movzbl %r9b, %r9d\n  shl $1, %r9d\n  or %r9d, %eax\n"
    "    add %r8, %rcx\n  cmp %rcx, %r13\n  setne %r9b\n  movzbl %r9b, %r9d\n  shl $2, %r9d\n  or %r9d, %eax\n"
    "    add %r8, %rcx\n  cmp %rcx, %r14\n  setne %r9b\n  movzbl %r9b, %r9d\n  shl $3, %r9d\n  or %r9d, %eax\n"
    "    add %r8, %rcx\n  cmp %rcx, %r15\n  setne %r9b\n  movzbl %r9b, %r9d\n  shl $4, %r9d\n  or %r9d, %eax\n"
    "    lea 64(%rsp), %rcx\n  cmp %rcx, %rbp\n  setne %r9b\n  movzbl %r9b, %r9d\n  shl $18, %r9d\n  or %r9d, %eax\n"
    "    mov %rdx, %r10\n  and $3, %r10d\n"
    "    stmxcsr 16(%rsp)\n  mov 16(%rsp), %ecx\n  shr $13, %ecx\n  and $3, %ecx\n"
    "    cmp %r10d, %ecx\n  setne %r9b\n  movzbl %r9b, %r9d\n  shl $19, %r9d\n  or %r9d, %eax\n"
    "    fnstcw 16(%rsp)\n  movzwl 16(%rsp), %ecx\n  shr $10, %ecx\n  and $3, %ecx\n"
    "    cmp %r10d, %ecx\n  setne %r9b\n  movzbl %r9b, %r9d\n  shl $19, %r9d\n  or %r9d, %eax\n"
    "    ldmxcsr 8(%rsp)\n"
    "    fldcw 12(%rsp)\n"
    "    add $24, %rsp\n"
    "    pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbx\n"
    "    pop %rbp\n"
    "    ret\n"
    "    .size regs_across, .-regs_across\n");
#endif

static int regs_fiber_mask = -1, regs_rounds;
static void regs_yield(void *arg) { (void)arg; vms_fiber_yield(); }
static void body_regs(void *arg)
{
    (void)arg;
    regs_fiber_mask = 0;
    for (int i = 0; i < 8; i++) {
        regs_fiber_mask |= regs_across(regs_yield, NULL, 0x1234567890abcde0u + (uint64_t)i * 4 + 1);
        regs_rounds++;
    }
}
static void regs_resume(void *arg) { ASSERT_EQ(vms_fiber_resume(arg), VMS_SUSPENDED); }

TEST(every_preserved_register_at_full_width)
{
    vms_fiber *f = vms_fiber_create(body_regs, NULL, NULL);
    ASSERT_NOT_NULL(f);
    for (int i = 0; i < 8; i++) {
        /* Rounding mode 2 here, 1 in the fiber; other patterns than the fiber's. */
        int mask = regs_across(regs_resume, f, 0xfedcba0987654320u + (uint64_t)i * 4 + 2);
        ASSERT_EQ(mask, 0);
    }
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_EQ(regs_rounds, 8);
    ASSERT_EQ(regs_fiber_mask, 0);
    ASSERT_EQ(fegetround(), FE_TONEAREST);
    vms_fiber_destroy(f);
}

/* The signal mask is the thread's, not the fiber's: a switch leaves it alone (no system
 * call), so what a fiber blocks stays blocked in its resumer after it yields, and the
 * fiber resumed later runs with the mask its thread has then (docs/api.md). */
static int mask_seen;
static void body_mask(void *arg)
{
    (void)arg;
    sigset_t s, now;
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    vms_fiber_yield();
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    mask_seen = sigismember(&now, SIGUSR1) * 10 + sigismember(&now, SIGUSR2);
}

TEST(signal_mask_is_the_threads)
{
    sigset_t orig, now, s;
    pthread_sigmask(SIG_BLOCK, NULL, &orig);
    vms_fiber *f = vms_fiber_create(body_mask, NULL, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
    pthread_sigmask(SIG_BLOCK, NULL, &now);
    ASSERT_EQ(sigismember(&now, SIGUSR1), 1);
    sigemptyset(&s);
    sigaddset(&s, SIGUSR1);
    pthread_sigmask(SIG_UNBLOCK, &s, NULL);
    sigemptyset(&s);
    sigaddset(&s, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, &s, NULL);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_EQ(mask_seen, 1);   /* SIGUSR1 unblocked, SIGUSR2 blocked: the resumer's */
    vms_fiber_destroy(f);
    pthread_sigmask(SIG_SETMASK, &orig, NULL);
}

/* Vector values live in spill slots across a yield and must survive (the switch keeps
 * the stack intact; with AVX, upper halves are caller-saved and spilled by the caller). */
typedef double v4d __attribute__((vector_size(32)));
static void body_vectors(void *arg)
{
    int *ok = arg;
    v4d v = { seed * 1.0, seed * 2.0, seed * 3.0, seed * 4.0 };
    v4d w = { seed * 5.0, seed * 6.0, seed * 7.0, seed * 8.0 };
    for (int i = 0; i < 10; i++) {
        vms_fiber_yield();
        v += w;
    }
    *ok = v[0] == seed * 51.0 && v[1] == seed * 62.0 && v[2] == seed * 73.0 &&
          v[3] == seed * 84.0;
}

TEST(vector_values_across_yields)
{
    int ok = 0;
    vms_fiber *f = vms_fiber_create(body_vectors, &ok, NULL);
    ASSERT_NOT_NULL(f);
    v4d mine = { seed * -1.0, seed * -2.0, seed * -3.0, seed * -4.0 };
    while (vms_fiber_resume(f) == VMS_SUSPENDED) mine = mine * 1.0 + 1.0;
    ASSERT_EQ(ok, 1);
    ASSERT(mine[0] == seed * -1.0 + 10 && mine[3] == seed * -4.0 + 10);
    vms_fiber_destroy(f);
}

/* ---- nesting ----------------------------------------------------------------------- */

#define NEST_DEPTH 100
static vms_fiber *nest[NEST_DEPTH + 1];
static int nest_order[2 * NEST_DEPTH + 2], nest_n;

static void body_nest(void *arg)
{
    int d = (int)(intptr_t)arg;
    ASSERT_PTR_EQ(vms_fiber_self(), nest[d]);
    nest_order[nest_n++] = d;
    if (d < NEST_DEPTH) {
        nest[d + 1] = vms_fiber_create(body_nest, (void *)(intptr_t)(d + 1), NULL);
        ASSERT_NOT_NULL(nest[d + 1]);
        ASSERT_EQ(vms_fiber_resume(nest[d + 1]), VMS_SUSPENDED);
        ASSERT_PTR_EQ(vms_fiber_self(), nest[d]); /* back in us, the resumer */
        ASSERT_EQ(vms_fiber_resume(nest[d + 1]), VMS_DONE);
        vms_fiber_destroy(nest[d + 1]);
    } else {
        /* Every ancestor is RUNNING and cannot be resumed or destroyed. */
        for (int i = 1; i < NEST_DEPTH; i++) {
            ASSERT_EQ(vms_fiber_state(nest[i]), VMS_RUNNING);
            ASSERT_EQ(vms_fiber_resume(nest[i]), -EINVAL);
        }
    }
    vms_fiber_yield();                            /* to our resumer, one level up */
    nest_order[nest_n++] = -d;
}

TEST(nesting_100_levels)
{
    nest[1] = vms_fiber_create(body_nest, (void *)(intptr_t)1, NULL);
    ASSERT_NOT_NULL(nest[1]);
    ASSERT_EQ(vms_fiber_resume(nest[1]), VMS_SUSPENDED);
    ASSERT_NULL(vms_fiber_self());
    ASSERT_EQ(vms_fiber_resume(nest[1]), VMS_DONE);
    vms_fiber_destroy(nest[1]);
    /* 1, 2, ..., 100 going down, then 100 finishes first (-100) ... and 1 last. */
    ASSERT_EQ(nest_n, 2 * NEST_DEPTH);
    for (int i = 0; i < NEST_DEPTH; i++) ASSERT_EQ(nest_order[i], i + 1);
    for (int i = 0; i < NEST_DEPTH; i++) ASSERT_EQ(nest_order[NEST_DEPTH + i], -(NEST_DEPTH - i));
}

/* ---- threads and fork ------------------------------------------------------------- */

static void *try_resume(void *arg)
{
    return (void *)(intptr_t)vms_fiber_resume(arg);
}

static void body_count(void *arg)
{
    int *n = arg;
    for (int i = 0; i < 5; i++) {
        (*n)++;
        vms_fiber_yield();
    }
}

TEST(resume_from_other_thread)
{
    int n = 0;
    vms_fiber *f = vms_fiber_create(body_count, &n, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);   /* now it belongs to us */
    pthread_t t;
    void *r;
    ASSERT_EQ(pthread_create(&t, NULL, try_resume, f), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, -EINVAL);
    ASSERT_EQ(n, 1);
    ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);   /* still ours */
    ASSERT_EQ(n, 2);
    vms_fiber_destroy(f);

    /* A fiber first resumed by another thread belongs to that thread. */
    int m = 0;
    vms_fiber *g = vms_fiber_create(body_count, &m, NULL);
    ASSERT_NOT_NULL(g);
    ASSERT_EQ(pthread_create(&t, NULL, try_resume, g), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_resume(g), -EINVAL);
    ASSERT_EQ(m, 1);
    vms_fiber_destroy(g);                         /* any thread may destroy it */
}

/* Destroying a fiber from another thread is allowed whenever it is not RUNNING
 * (docs/api.md), and vms_fiber_state is how that thread tells. So the state may leave
 * RUNNING only once the fiber's own thread is done with its record and stack: the
 * destroyer scrubs the record (the top page) and hands the stack to the next owner. The
 * main thread resumes fibers that yield or return; another thread destroys each as soon
 * as vms_fiber_state says it left RUNNING. The state used to change before the switch
 * away from the fiber, which still saved registers into the record and loaded the
 * resumer's from it: under ThreadSanitizer a race with the destroyer's scrubbing, and
 * in the other builds a resumer that could load zeroed registers. */
#define HANDOFFS 4000
static vms_fiber *_Atomic handoff;

static void yield_or_return(void *arg)
{
    if ((uintptr_t)arg & 1) vms_fiber_yield();
}

static void *destroy_once_left(void *arg)
{
    int *wrong = arg;
    for (int i = 0; i < HANDOFFS; i++) {
        vms_fiber *f;
        while (!(f = atomic_load_explicit(&handoff, memory_order_acquire))) sched_yield();
        int s;
        while ((s = vms_fiber_state(f)) == VMS_READY || s == VMS_RUNNING) {}
        if (s != ((i & 1) ? VMS_SUSPENDED : VMS_DONE)) (*wrong)++;
        vms_fiber_destroy(f);
        atomic_store_explicit(&handoff, NULL, memory_order_release);
    }
    return NULL;
}

TEST(destroy_from_another_thread_once_state_left_running)
{
    pthread_t t;
    int wrong = 0;
    ASSERT_EQ(pthread_create(&t, NULL, destroy_once_left, &wrong), 0);
    for (int i = 0; i < HANDOFFS; i++) {
        vms_fiber *f = vms_fiber_create(yield_or_return, (void *)(uintptr_t)i, NULL);
        ASSERT_NOT_NULL(f);
        atomic_store_explicit(&handoff, f, memory_order_release);
        int s = vms_fiber_resume(f);
        ASSERT_EQ(s, (i & 1) ? VMS_SUSPENDED : VMS_DONE);
        while (atomic_load_explicit(&handoff, memory_order_acquire)) sched_yield();
    }
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(wrong, 0);
}

/* A fiber whose thread has ended belongs to no thread, also when a new thread gets the
 * ended one's TLS block (the C library keeps the stacks of ended threads, TLS included,
 * for new ones of the same size): before homes were tokens, that thread owned it. */
TEST(resume_after_home_thread_ended)
{
    int n = 0;
    vms_fiber *f = vms_fiber_create(body_count, &n, NULL);
    ASSERT_NOT_NULL(f);
    pthread_t t;
    void *r;
    ASSERT_EQ(pthread_create(&t, NULL, try_resume, f), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, VMS_SUSPENDED);          /* its home thread is gone now */
    for (int i = 0; i < 8; i++) {
        ASSERT_EQ(pthread_create(&t, NULL, try_resume, f), 0);
        ASSERT_EQ(pthread_join(t, &r), 0);
        ASSERT_EQ((intptr_t)r, -EINVAL);
    }
    ASSERT_EQ(vms_fiber_resume(f), -EINVAL);
    ASSERT_EQ(n, 1);
    vms_fiber_destroy(f);
}

/* A thread of the program's own, cancelled while a fiber it resumed (through another)
 * waits at a cancellation point: the cancellation unwinds the fibers with the thread,
 * so they never run again. They are DONE afterwards and can be destroyed; before, they
 * stayed RUNNING for good, vms_fiber_destroy refused them (EBUSY) and their stacks
 * leaked. */
static vms_fiber *cancelled[2];
static sem_t cancel_waits;

static void body_waits_for_cancel(void *arg)
{
    (void)arg;
    sem_post(&cancel_waits);
    for (;;) pause();                             /* a cancellation point */
}

static void body_resumes_waiter(void *arg)
{
    cancelled[1] = vms_fiber_create(body_waits_for_cancel, arg, NULL);
    if (cancelled[1]) vms_fiber_resume(cancelled[1]);
}

static void *plain_thread_resumes_waiter(void *arg)
{
    cancelled[0] = vms_fiber_create(body_resumes_waiter, arg, NULL);
    if (cancelled[0]) vms_fiber_resume(cancelled[0]);
    sem_post(&cancel_waits);                      /* not reached unless creation failed */
    return NULL;
}

TEST(thread_cancelled_inside_a_fiber)
{
    NO_TSAN("the fiber runs in a TSan fiber (src/track.h), from which TSan forbids "
            "pthread_exit and so the cancellation's unwinding");
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    ASSERT_EQ(sem_init(&cancel_waits, 0, 0), 0);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, plain_thread_resumes_waiter, NULL), 0);
    while (sem_wait(&cancel_waits) != 0) {}
    ASSERT_EQ(pthread_cancel(t), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, PTHREAD_CANCELED);
    for (int i = 1; i >= 0; i--) {
        ASSERT_NOT_NULL(cancelled[i]);
        ASSERT_EQ(vms_fiber_state(cancelled[i]), VMS_DONE);
        ASSERT_EQ(vms_fiber_resume(cancelled[i]), -EINVAL);
        errno = 0;
        vms_fiber_destroy(cancelled[i]);
        ASSERT_EQ(errno, 0);
    }
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

/* The thread-exit hook that makes fibers unwound with their thread DONE is set at the
 * thread's first resume of a fiber. Should pthread_setspecific fail then (ENOMEM, fault
 * injection here), the first resume of the thread's next fiber sets it: a fiber that
 * pthread_exit unwinds after that is DONE and can be destroyed. Before, the failure was
 * ignored and never tried again: that fiber stayed RUNNING for good (vms_fiber_destroy
 * refused it, its stack leaked). */
static vms_fiber *hooked[2];

static void yields_once(void *arg)
{
    (void)arg;
    vms_fiber_yield();
}

static void exits_thread(void *arg)
{
    pthread_exit(arg);
}

static void *resumes_without_then_with_hook(void *arg)
{
    vms__os_inject(VMS__OP_SETSPECIFIC, 1, ENOMEM, true);
    hooked[0] = vms_fiber_create(yields_once, NULL, NULL);
    if (hooked[0]) vms_fiber_resume(hooked[0]);   /* no hook: setspecific fails */
    vms__os_inject_clear();
    hooked[1] = vms_fiber_create(exits_thread, arg, NULL);
    if (hooked[1]) vms_fiber_resume(hooked[1]);
    return NULL;                                  /* not reached unless creation failed */
}

TEST(thread_exit_hook_tried_again_after_setspecific_fails)
{
    NO_TSAN("the fiber runs in a TSan fiber (src/track.h), from which TSan forbids "
            "pthread_exit");
    NEED_FAULT_INJECTION();
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, resumes_without_then_with_hook, (void *)7), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)7);
    ASSERT_NOT_NULL(hooked[0]);
    ASSERT_NOT_NULL(hooked[1]);
    ASSERT_EQ(vms_fiber_state(hooked[0]), VMS_SUSPENDED);
    ASSERT_EQ(vms_fiber_state(hooked[1]), VMS_DONE);
    for (int i = 0; i < 2; i++) {
        errno = 0;
        vms_fiber_destroy(hooked[i]);
        ASSERT_EQ(errno, 0);
    }
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

#define FORK_FIBERS 16
static vms_fiber *forked[FORK_FIBERS];
static int forked_n[FORK_FIBERS];

static void child_after_fork(void *arg)
{
    (void)arg;
    /* The inherited fibers continue where they were. */
    for (int i = 0; i < FORK_FIBERS; i++) {
        int s;
        while ((s = vms_fiber_resume(forked[i])) == VMS_SUSPENDED) {}
        ASSERT_EQ(s, VMS_DONE);
        ASSERT_EQ(forked_n[i], 5);
        vms_fiber_destroy(forked[i]);
    }
    /* New fibers work too. */
    for (int i = 0; i < 200; i++) {
        int n = 0;
        vms_fiber *f = vms_fiber_create(body_count, &n, NULL);
        ASSERT_NOT_NULL(f);
        while (vms_fiber_resume(f) == VMS_SUSPENDED) {}
        ASSERT_EQ(n, 5);
        vms_fiber_destroy(f);
    }
    printf("child done\n");
}

TEST(fork_with_live_fibers)
{
    for (int i = 0; i < FORK_FIBERS; i++) {
        forked[i] = vms_fiber_create(body_count, &forked_n[i], NULL);
        ASSERT_NOT_NULL(forked[i]);
        for (int k = 0; k <= i % 3; k++) ASSERT_EQ(vms_fiber_resume(forked[i]), VMS_SUSPENDED);
    }
    char out[4096];
    int status = tst_fork(child_after_fork, NULL, out, sizeof out);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "child done");
    /* The parent's copies are untouched by the child's progress. */
    for (int i = 0; i < FORK_FIBERS; i++) {
        ASSERT_EQ(forked_n[i], i % 3 + 1);
        vms_fiber_destroy(forked[i]);
    }
}

/* A fiber that another thread runs at the fork runs nowhere in the child: like every
 * fiber of another thread it cannot be resumed there but can be destroyed (docs/api.md),
 * which gives its stack back. Before, the child refused it as RUNNING (EBUSY) and its
 * stack leaked. The fibers the forking thread runs are still running in the child. */
static vms_fiber *elsewhere, *forker;
static sem_t elsewhere_runs;

static void body_runs_elsewhere(void *arg)
{
    (void)arg;
    sem_post(&elsewhere_runs);
    for (;;) pause();                             /* a cancellation point */
}

static void *thread_runs_elsewhere(void *arg)
{
    (void)arg;
    vms_fiber_resume(elsewhere);
    return NULL;
}

static void child_destroys_elsewhere(void *arg)
{
    (void)arg;
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    ASSERT_EQ(vms_fiber_resume(elsewhere), -EINVAL);
    errno = 0;
    vms_fiber_destroy(elsewhere);
    ASSERT_EQ(errno, 0);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0 - 1);
    errno = 0;
    vms_fiber_destroy(forker);                    /* the caller: refused */
    ASSERT_EQ(errno, EBUSY);
    ASSERT_EQ(vms_fiber_state(forker), VMS_RUNNING);
    printf("child done\n");
}

static void body_forks(void *arg)
{
    char out[4096];
    *(int *)arg = tst_fork(child_destroys_elsewhere, NULL, out, sizeof out);
    if (!strstr(out, "child done")) fprintf(stderr, "child's output:\n%s", out);
}

TEST(fork_destroys_fibers_other_threads_run)
{
    ASSERT_EQ(sem_init(&elsewhere_runs, 0, 0), 0);
    elsewhere = vms_fiber_create(body_runs_elsewhere, NULL, NULL);
    ASSERT_NOT_NULL(elsewhere);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, thread_runs_elsewhere, NULL), 0);
    while (sem_wait(&elsewhere_runs) != 0) {}
    int status = -1;
    forker = vms_fiber_create(body_forks, &status, NULL);
    ASSERT_NOT_NULL(forker);
    ASSERT_EQ(vms_fiber_resume(forker), VMS_DONE);
    ASSERT_EXITED(status, 0);
    vms_fiber_destroy(forker);
    /* In this process it still runs on t: refused until t is gone. */
    errno = 0;
    vms_fiber_destroy(elsewhere);
    ASSERT_EQ(errno, EBUSY);
    ASSERT_EQ(pthread_cancel(t), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    vms_fiber_destroy(elsewhere);                 /* unwound by the cancellation: DONE */
}

/* ---- scrubbing ------------------------------------------------------------------- */

#define SECRET_WORD 0x5ec7e75ec7e7a5a5ull
#define SECRET_FIBERS 64

/* Recursion with a page-sized volatile buffer at each level, so the secret covers the
 * top 64 KiB of the stack; the result depends on every level (no tail call). The buffers
 * are alloca'd: ASan with detect_stack_use_after_return=1 moves fixed-size arrays to its
 * fake stack, off the fiber's stack, but keeps dynamic allocations on it (with redzones),
 * so the secret is on the fiber's stack with and without fake stacks. */
static __attribute__((noinline)) unsigned long spread_secret(int depth, uint64_t word)
{
    volatile uint64_t *buf = __builtin_alloca(512 * sizeof *buf);
    for (int i = 0; i < 512; i++) buf[i] = word;
    unsigned long r = depth > 0 ? spread_secret(depth - 1, word) : 0;
    return r + buf[depth % 512];
}

static void body_secret(void *arg)
{
    (void)arg;
    uint64_t w = SECRET_WORD ^ (uint64_t)(seed - 7);
    ASSERT(spread_secret(16, w) != 0);
}

static size_t secrets_found;
static void body_scan(void *arg)
{
    (void)arg;
    /* The frame address, not a local's: with ASan's fake stacks a local is not on the
     * fiber's stack at all. 512 bytes below it leave this frame's own words out. */
    const vms_stack *st = vms_fiber_stack(vms_fiber_self());
    const uint64_t *p = vms_stack_base(st);
    uintptr_t frame = (uintptr_t)__builtin_frame_address(0);
    const uint64_t *end = (const uint64_t *)(frame & ~(uintptr_t)7) - 64;
    uint64_t w = SECRET_WORD ^ (uint64_t)(seed - 7);
#ifdef VMSTACK_VALGRIND
    /* Reading below the stack pointer is the point of the scan (what a previous owner
     * could have left there), not a bug. */
    (void)VALGRIND_MAKE_MEM_DEFINED(p, (size_t)((const char *)end - (const char *)p));
#endif
    for (; p < end; p++)
        if (*p == w) secrets_found++;
}

TEST(secret_not_visible_to_next_owner)
{
    /* Enough fibers that their freed stacks fill a scrub batch of the cache layer. */
    void *used[SECRET_FIBERS];
    vms_fiber *f[SECRET_FIBERS];
    for (int i = 0; i < SECRET_FIBERS; i++) {
        f[i] = vms_fiber_create(body_secret, NULL, NULL);
        ASSERT_NOT_NULL(f[i]);
        used[i] = vms_stack_base(vms_fiber_stack(f[i]));
        ASSERT_EQ(vms_fiber_resume(f[i]), VMS_DONE);
    }
    for (int i = 0; i < SECRET_FIBERS; i++) vms_fiber_destroy(f[i]);
    /* New fibers get those stacks again (each kept alive, so each try is another
     * stack); none may see the secret. */
    int reused = 0;
    static vms_fiber *keep[1024];
    int nkeep = 0;
    secrets_found = 0;
    for (int i = 0; i < 1024 && reused < SECRET_FIBERS; i++) {
        vms_fiber *g = vms_fiber_create(body_scan, NULL, NULL);
        ASSERT_NOT_NULL(g);
        ASSERT_EQ(vms_fiber_resume(g), VMS_DONE);
        void *base = vms_stack_base(vms_fiber_stack(g));
        for (int k = 0; k < SECRET_FIBERS; k++) reused += base == used[k];
        keep[nkeep++] = g;
    }
    ASSERT_GE(reused, SECRET_FIBERS / 2);
    ASSERT_EQ(secrets_found, 0);
    for (int i = 0; i < nkeep; i++) vms_fiber_destroy(keep[i]);
}

/* A check that the scan above can see a secret at all: on a stack still in use. */
static void body_secret_then_scan(void *arg)
{
    (void)arg;
    uint64_t w = SECRET_WORD ^ (uint64_t)(seed - 7);
    ASSERT(spread_secret(16, w) != 0);
    body_scan(NULL);
}

TEST(secret_scan_finds_live_data)
{
    secrets_found = 0;
    vms_fiber *f = vms_fiber_create(body_secret_then_scan, NULL, NULL);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_GE(secrets_found, 16 * 512);
    vms_fiber_destroy(f);
}

/* ---- vms_stack_remaining ------------------------------------------------------------- */

static size_t remaining_at[8];
static __attribute__((noinline)) size_t descend(int depth)
{
    volatile char buf[1024];
    size_t at = (size_t)(seed * 131 * (depth + 1)) % sizeof buf; /* the whole array stays */
    buf[at] = (char)depth;
    remaining_at[depth] = vms_stack_remaining();
    size_t r = depth < 7 ? descend(depth + 1) : 0;
    return r + (size_t)buf[at];
}

static void body_remaining(void *arg)
{
    size_t *size = arg;
    *size = vms_stack_size(vms_fiber_stack(vms_fiber_self()));
    ASSERT(descend(0) > 0);
}

TEST(stack_remaining)
{
    ASSERT_UEQ(vms_stack_remaining(), SIZE_MAX);  /* the main thread's own stack */
    size_t size = 0;
    vms_fiber_attr attr = { .stack_size = 128 * 1024, .name = NULL };
    vms_fiber *f = vms_fiber_create(body_remaining, &size, &attr);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_GE(size, 128 * 1024);
    ASSERT_LT(remaining_at[0], size);
    ASSERT_GT(remaining_at[0], size - 4096);      /* a few frames below the top */
    for (int i = 1; i < 8; i++) {
        ASSERT_LT(remaining_at[i], remaining_at[i - 1]);
        ASSERT_GE(remaining_at[i - 1] - remaining_at[i], 1024);
    }
    vms_fiber_destroy(f);

    /* A vmstack stack run by someone else's switch counts too: not tested here (it
     * needs a foreign context switch); a plain heap address is not a stack. */
    ASSERT_UEQ(vms_stack_remaining(), SIZE_MAX);
}

/* ---- vms_stack_self ------------------------------------------------------------------ */

struct self_seen {
    const vms_stack *self, *fiber_stack, *nested_self;
    uintptr_t frame;
};

static void body_self_nested(void *arg)
{
    ((struct self_seen *)arg)->nested_self = vms_stack_self();
}

static void body_self(void *arg)
{
    struct self_seen *w = arg;
    w->frame = (uintptr_t)__builtin_frame_address(0);
    w->self = vms_stack_self();
    w->fiber_stack = vms_fiber_stack(vms_fiber_self());
    vms_fiber *inner = vms_fiber_create(body_self_nested, w, NULL);
    ASSERT_NOT_NULL(inner);
    ASSERT_EQ(vms_fiber_resume(inner), VMS_DONE);
    /* Back on this fiber's stack after the inner one ran. */
    ASSERT(vms_stack_self() == w->self);
    ASSERT(w->nested_self != NULL && w->nested_self != w->self);
    ASSERT(w->nested_self == vms_fiber_stack(inner));
    vms_fiber_destroy(inner);
}

/* A fiber's code finds its own stack's bounds (what a garbage collector scanning for
 * roots needs): the handle vms_fiber_stack gives, and the frame lies within it. */
TEST(stack_self_in_fibers)
{
    ASSERT_NULL(vms_stack_self());   /* the main thread's own stack */
    struct self_seen w = { NULL, NULL, NULL, 0 };
    vms_fiber_attr attr = { .stack_size = 128 * 1024, .name = "self" };
    vms_fiber *f = vms_fiber_create(body_self, &w, &attr);
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT_NOT_NULL(w.self);
    ASSERT(w.self == w.fiber_stack);
    ASSERT(w.self == vms_fiber_stack(f));
    uintptr_t base = (uintptr_t)vms_stack_base(w.self), top = (uintptr_t)vms_stack_top(w.self);
    ASSERT_GE(vms_stack_size(w.self), 128 * 1024);
    ASSERT(base < w.frame && w.frame < top);
    vms_fiber_destroy(f);
    ASSERT_NULL(vms_stack_self());
}

static ucontext_t self_ctx, self_back;
static const vms_stack *raw_self;

static void raw_self_fn(void)
{
    raw_self = vms_stack_self();
}

/* A stack from vms_stack_alloc run by the program's own switch (ucontext): the handle it
 * was given. */
TEST(stack_self_on_a_raw_stack)
{
    vms_stack *st = vms_stack_alloc(64 * 1024);
    ASSERT_NOT_NULL(st);
    getcontext(&self_ctx);
    self_ctx.uc_stack.ss_sp = vms_stack_base(st);
    self_ctx.uc_stack.ss_size = vms_stack_size(st);
    self_ctx.uc_link = &self_back;
    makecontext(&self_ctx, raw_self_fn, 0);
    ASSERT_EQ(swapcontext(&self_back, &self_ctx), 0);
    ASSERT(raw_self == st);
    vms_stack_free(st);
}

/* ---- where a fiber's record lives, ids --------------------------------------------- */

static uintptr_t first_frame_sp;   /* an address in the fiber's first frame */
static void body_where(void *arg)
{
    (void)arg;
    /* Not a local's address: with ASan's fake stacks that is on ASan's fake stack. */
    first_frame_sp = (uintptr_t)__builtin_frame_address(0);
}

/* The record lives at the top of the fiber's own stack, above its first frame and below
 * the terminal frame record at the very top; nothing is allocated elsewhere. */
TEST(record_at_stack_top)
{
    vms_fiber *f = vms_fiber_create(body_where, NULL, NULL);
    ASSERT_NOT_NULL(f);
    const vms_stack *st = vms_fiber_stack(f);
    char *base = vms_stack_base(st), *top = vms_stack_top(st);
    ASSERT((char *)f >= base && (char *)f < top);
    ASSERT_LE((size_t)(top - (char *)f), 1024);
    ASSERT_EQ(((uintptr_t)f) % 64, 0);            /* its own cache lines */
    ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
    ASSERT(first_frame_sp < (uintptr_t)f);        /* frames start below the record */
    ASSERT_LT((size_t)((uintptr_t)f - first_frame_sp), 1024);
    /* The record survives the fiber's end: state and oops are read until destroy. */
    ASSERT_EQ(vms_fiber_state(f), VMS_DONE);
    ASSERT_NULL(vms_fiber_oops(f));
    vms_fiber_destroy(f);
}

/* Ids come in per-thread blocks of 256: fibers of two threads, more than a block each,
 * never share one. */
#define IDS_PER_THREAD 300
static unsigned long ids_seen[2][IDS_PER_THREAD];

static void body_id(void *arg)
{
    struct vms__task_info info;
    if (vms__task_current(&info) == 0) *(unsigned long *)arg = info.id;
}

static void *make_ids(void *arg)
{
    unsigned long *out = arg;
    for (int i = 0; i < IDS_PER_THREAD; i++) {
        vms_fiber *f = vms_fiber_create(body_id, &out[i], NULL);
        if (!f || vms_fiber_resume(f) != VMS_DONE) return (void *)1;
        vms_fiber_destroy(f);
    }
    return NULL;
}

static int cmp_ulong(const void *a, const void *b)
{
    unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
    return x < y ? -1 : x > y;
}

TEST(ids_unique_across_threads)
{
    pthread_t t[2];
    for (int i = 0; i < 2; i++) ASSERT_EQ(pthread_create(&t[i], NULL, make_ids, ids_seen[i]), 0);
    for (int i = 0; i < 2; i++) {
        void *r;
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT_NULL(r);
    }
    unsigned long *all = &ids_seen[0][0];
    qsort(all, 2 * IDS_PER_THREAD, sizeof *all, cmp_ulong);
    ASSERT_NE(all[0], 0);                         /* every fiber reported its id */
    for (int i = 1; i < 2 * IDS_PER_THREAD; i++)
        if (all[i] == all[i - 1]) TST_FAIL("id %lu handed out twice", all[i]);
}

/* ---- a thread without an alternate signal stack runs no fiber ------------------------ */

static void *resume_in_new_thread(void *arg)
{
    return (void *)(intptr_t)vms_fiber_resume(arg);
}

static void child_no_altstack(void *arg)
{
    (void)arg;
    int n = 0;
    vms_fiber *f = vms_fiber_create(body_count, &n, NULL);   /* initializes vmstack */
    ASSERT_NOT_NULL(f);
    vms__os_inject(VMS__OP_SIGALTSTACK, 1, ENOMEM, true);
    pthread_t t;
    void *r;
    ASSERT_EQ(pthread_create(&t, NULL, resume_in_new_thread, f), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, -ENOMEM);              /* refused: an overflow could not be caught */
    ASSERT_EQ(n, 0);
    ASSERT_EQ(vms_fiber_state(f), VMS_READY);
    vms__os_inject_clear();
    ASSERT_EQ(pthread_create(&t, NULL, resume_in_new_thread, f), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, VMS_SUSPENDED);        /* a later thread can run it */
    ASSERT_EQ(n, 1);
    vms_fiber_destroy(f);
    printf("child: refused then ran\n");
}

TEST(no_alternate_stack_no_fiber)
{
    NEED_FAULT_INJECTION();
    char out[4096];
    int status = tst_fork(child_no_altstack, NULL, out, sizeof out);
    ASSERT_EXITED(status, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: error:");
    ASSERT_STR_CONTAINS(out, "child: refused then ran");
}

/* ---- stacks of fibers that never finished are clean for the next owner -------------- */

static void body_array_then_yield(void *arg)
{
    /* ASan puts redzones around it, on the fiber's stack also with fake stacks (which
     * would take a fixed-size array) since it is alloca'd. */
    volatile char *buf = __builtin_alloca(1000);
    buf[(size_t)seed * 13 % 1000] = 1;
    vms_fiber_yield();
    *(int *)arg = buf[(size_t)seed * 13 % 1000];
}

/* Under ASan, a suspended fiber's frames stay poisoned: destroying it must unpoison its
 * stack, or the cache's scrubbing and the next owners trip over stale redzones. */
TEST(destroy_suspended_then_reuse)
{
    int done = 0;
    for (int round = 0; round < 64; round++) {
        vms_fiber *f = vms_fiber_create(body_array_then_yield, &done, NULL);
        ASSERT_NOT_NULL(f);
        ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
        vms_fiber_destroy(f);
    }
    for (int round = 0; round < 64; round++) {
        vms_fiber *g = vms_fiber_create(body_secret_then_scan, NULL, NULL);
        ASSERT_NOT_NULL(g);
        ASSERT_EQ(vms_fiber_resume(g), VMS_DONE);
        vms_fiber_destroy(g);
    }
    ASSERT_EQ(done, 0);                           /* no destroyed fiber ever ran on */
}

/* A fiber that writes above its first frame (a buffer overflow towards higher addresses)
 * reaches its own record, which lives at the top of its stack: the record's canary makes
 * the next resume report and abort instead of loading corrupted saved registers. The
 * overflow is simulated by writing over the record's lowest words directly. */
static void body_smash_record(void *arg)
{
    volatile uintptr_t *rec = (volatile uintptr_t *)vms_fiber_self();
    (void)arg;
    for (int i = 0; i < 4; i++) rec[i] = 0x4141414141414141u;
    vms_fiber_yield();
}

static void smash_record_child(void *arg)
{
    (void)arg;
    vms_fiber *f = vms_fiber_create(body_smash_record, NULL, NULL);
    if (!f) exit(10);
    if (vms_fiber_resume(f) != VMS_SUSPENDED) exit(11);
    vms_fiber_resume(f);       /* must not return */
    exit(12);
}

TEST(overwritten_record_is_caught_at_resume)
{
    char out[4096];
    int st = tst_fork(smash_record_child, NULL, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "vmstack: error: fiber record");
    ASSERT_STR_CONTAINS(out, "was overwritten");
}

static void smash_destroy_child(void *arg)
{
    (void)arg;
    vms_fiber *f = vms_fiber_create(body_smash_record, NULL, NULL);
    if (!f || vms_fiber_resume(f) != VMS_SUSPENDED) exit(10);
    vms_fiber_destroy(f);      /* must not free through a corrupted record */
    exit(12);
}

TEST(overwritten_record_is_caught_at_destroy)
{
    char out[4096];
    int st = tst_fork(smash_destroy_child, NULL, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "was overwritten");
}

/* The canary's secret (the record's lowest word, XOR its address) is vmstack's own, not
 * one of the C library's: glibc made its stack protector's canary from the first eight
 * bytes of AT_RANDOM (the lowest byte zeroed) and its pointer guard, PTR_MANGLE's key,
 * from the other eight. A record lies in ordinary stack memory next to its address: a
 * program that leaks a stack's contents would give those secrets away with it. */
TEST(record_canary_secret_is_not_the_c_library_one)
{
    const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
    if (!r) SKIP("no AT_RANDOM in the auxiliary vector");
    uint64_t w[2];
    memcpy(w, r, sizeof w);
    vms_fiber *f = vms_fiber_create(body_noop, NULL, NULL);
    ASSERT_NOT_NULL(f);
    uint64_t secret = *(const uintptr_t *)(const void *)f ^ (uintptr_t)f;
    vms_fiber_destroy(f);
    /* The secret's lowest bit is always set; the stack protector's lowest byte is 0. */
    ASSERT((secret >> 1) != (w[1] >> 1));
    ASSERT((secret >> 8) != (w[0] >> 8));
}

/* Pointers that are no live fiber: destroyed ones (with and without scrubbing, which
 * zeroes a freed stack's top page, where the record lives) and ones vmstack never
 * handed out as a fiber. Each is a report naming the call and abort(), never a switch
 * to saved registers that are not there or a second free. */
enum { AFTER_DESTROY_DONE, AFTER_DESTROY_SUSPENDED, RESUME_AFTER_DESTROY,
       RESUME_AFTER_REUSE, DESTROY_AFTER_REUSE, STATE_AFTER_DESTROY, OOPS_AFTER_DESTROY,
       STACK_AFTER_DESTROY, FOREIGN_HEAP, FOREIGN_STACK_HANDLE, FOREIGN_STACK_BASE,
       RAW_STACK_PLACE };
struct misuse { int what; unsigned flags; int reuses; };

static void misuse_child(void *arg)
{
    const struct misuse *m = arg;
    vms_config c = { .flags = m->flags };
    if (vms_init(&c) != 0) exit(10);
    int n = 0;
    vms_fiber *f = vms_fiber_create(body_count, &n, NULL);
    if (!f) exit(11);
    switch (m->what) {
    case AFTER_DESTROY_DONE:
        while (vms_fiber_resume(f) == VMS_SUSPENDED) {}
        vms_fiber_destroy(f);
        vms_fiber_destroy(f);
        break;
    case AFTER_DESTROY_SUSPENDED:
        if (vms_fiber_resume(f) != VMS_SUSPENDED) exit(12);
        vms_fiber_destroy(f);
        vms_fiber_destroy(f);
        break;
    case RESUME_AFTER_DESTROY:
        if (vms_fiber_resume(f) != VMS_SUSPENDED) exit(12);
        vms_fiber_destroy(f);
        printf("resumed: %d\n", vms_fiber_resume(f));
        break;
    case RESUME_AFTER_REUSE:
    case DESTROY_AFTER_REUSE: {
        /* The handle is kept after destroy while new fibers are made on its stack (the
         * thread's cache hands it out again: at once without scrubbing, after its batch
         * with); the last of them is alive. */
        const struct vms_stack *old = vms__stack_record(vms_fiber_stack(f));
        vms_fiber_destroy(f);
        int on_old = 0;
        for (int i = 0; on_old < m->reuses; i++) {
            vms_fiber *g = vms_fiber_create(body_count, &n, NULL);
            if (!g || i == 100000) exit(14);
            if (vms_fiber_resume(g) != VMS_SUSPENDED) exit(15);
            if (vms__stack_record(vms_fiber_stack(g)) == old) on_old++;
            if (on_old < m->reuses) vms_fiber_destroy(g);
        }
        if (m->what == RESUME_AFTER_REUSE)
            printf("resumed: %d\n", vms_fiber_resume(f));
        else
            vms_fiber_destroy(f);
        break;
    }
    case STATE_AFTER_DESTROY:
        vms_fiber_destroy(f);
        printf("resumed: %d\n", vms_fiber_state(f));
        break;
    case OOPS_AFTER_DESTROY:
        vms_fiber_destroy(f);
        printf("resumed: %p\n", (const void *)vms_fiber_oops(f));
        break;
    case STACK_AFTER_DESTROY:
        vms_fiber_destroy(f);
        printf("resumed: %p\n", (const void *)vms_fiber_stack(f));
        break;
    case FOREIGN_HEAP: {
        void *heap = calloc(1, 4096);
        vms_fiber_destroy(heap);
        break;
    }
    case FOREIGN_STACK_HANDLE:
        vms_fiber_destroy((vms_fiber *)vms_stack_alloc(0));
        break;
    case FOREIGN_STACK_BASE:
        printf("resumed: %d\n", vms_fiber_resume(vms_stack_base(vms_stack_alloc(0))));
        break;
    case RAW_STACK_PLACE: {
        /* Where f's record is below its stack's top, on a raw stack that never held a
         * task (a slot of its own: f's stack is still f's). */
        vms_stack *s = vms_stack_alloc(0);
        if (!s) exit(16);
        size_t below = (size_t)((char *)vms_stack_top(vms_fiber_stack(f)) - (char *)f);
        printf("resumed: %d\n", vms_fiber_resume((vms_fiber *)(void *)
                                                 ((char *)vms_stack_top(s) - below)));
        break;
    }
    }
    exit(13);
}

TEST(use_after_destroy_and_foreign_pointers_abort)
{
    const struct { struct misuse m; const char *want; } cases[] = {
        { { AFTER_DESTROY_DONE, 0, 0 }, "vms_fiber_destroy: fiber 0x" },
        { { AFTER_DESTROY_DONE, VMS_NO_SCRUB, 0 }, "vms_fiber_destroy: fiber 0x" },
        { { AFTER_DESTROY_SUSPENDED, 0, 0 }, "vms_fiber_destroy: fiber 0x" },
        { { AFTER_DESTROY_SUSPENDED, VMS_NO_SCRUB, 0 }, "vms_fiber_destroy: fiber 0x" },
        { { RESUME_AFTER_DESTROY, 0, 0 }, "vms_fiber_resume: fiber 0x" },
        { { RESUME_AFTER_DESTROY, VMS_NO_SCRUB, 0 }, "vms_fiber_resume: fiber 0x" },
        /* A new fiber on the same stack has its record at another place for the next
         * three fibers a thread creates (docs/api.md). */
        { { RESUME_AFTER_REUSE, 0, 1 }, "vms_fiber_resume: fiber 0x" },
        { { RESUME_AFTER_REUSE, VMS_NO_SCRUB, 1 }, "vms_fiber_resume: fiber 0x" },
        { { RESUME_AFTER_REUSE, 0, 3 }, "vms_fiber_resume: fiber 0x" },
        { { DESTROY_AFTER_REUSE, 0, 2 }, "vms_fiber_destroy: fiber 0x" },
        { { DESTROY_AFTER_REUSE, VMS_NO_SCRUB, 3 }, "vms_fiber_destroy: fiber 0x" },
        { { STATE_AFTER_DESTROY, 0, 0 }, "vms_fiber_state: fiber 0x" },
        { { OOPS_AFTER_DESTROY, VMS_NO_SCRUB, 0 }, "vms_fiber_oops: fiber 0x" },
        { { STACK_AFTER_DESTROY, 0, 0 }, "vms_fiber_stack: fiber 0x" },
        { { FOREIGN_HEAP, 0, 0 }, "vms_fiber_destroy: 0x" },
        { { FOREIGN_STACK_HANDLE, 0, 0 }, "vms_fiber_destroy: 0x" },
        { { FOREIGN_STACK_BASE, 0, 0 }, "vms_fiber_resume: 0x" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[4096];
        int st = tst_fork(misuse_child, (void *)&cases[i].m, out, sizeof out);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
            TST_FAIL("case %zu: want SIGABRT, got %s %d; output:\n%s", i,
                     WIFEXITED(st) ? "exit" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
        ASSERT_STR_CONTAINS(out, "vmstack: error: ");
        ASSERT_STR_CONTAINS(out, cases[i].want);
        ASSERT_STR_CONTAINS(out, cases[i].m.what <= STACK_AFTER_DESTROY
                                     ? "was destroyed already"
                                     : "is not a fiber that vmstack created");
        ASSERT_STR_NOT_CONTAINS(out, "resumed:");
    }
}

/* A place of a fiber record on a raw stack that never held a fiber was reported as "was
 * destroyed already". vmstack cannot tell it from a destroyed fiber whose stack was
 * handed out again as a raw stack, and says both. */
TEST(resume_of_a_raw_stack_place_is_not_a_fiber)
{
    struct misuse m = { RAW_STACK_PLACE, 0, 0 };
    char out[4096];
    int st = tst_fork(misuse_child, &m, out, sizeof out);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
        TST_FAIL("want SIGABRT, got %s %d; output:\n%s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_fiber_resume: 0x");
    ASSERT_STR_CONTAINS(out, " is not a fiber: it points into the stack [0x");
    ASSERT_STR_CONTAINS(out, "), which no fiber or thread owns (a raw stack of vms_stack_alloc); "
                             "a fiber destroyed already whose stack was handed out again, or a "
                             "pointer that never was a fiber\n");
    ASSERT_STR_NOT_CONTAINS(out, "resumed:");
}

/* Pointers where no fiber's record can be, not even readable memory: never mapped
 * (4096, below mmap_min_addr), a PROT_NONE mapping, the guard below a raw stack. The
 * getters and vms_fiber_destroy look the place up before reading a byte of it, and
 * report it as a foreign pointer; they died by an unreported SIGSEGV (or, in a guard, a
 * "wild guard access" report and SIGSEGV). vms_fiber_resume does not look it up (the
 * switch's cost, docs/api.md). */
enum { UNREADABLE_LOW, UNREADABLE_PROT_NONE, UNREADABLE_GUARD, UNREADABLE_KINDS };
static const char *const unreadable_calls[] = { "vms_fiber_destroy", "vms_fiber_state",
                                                "vms_fiber_oops", "vms_fiber_stack" };
struct unreadable { int kind, call; };

static void unreadable_child(void *arg)
{
    const struct unreadable *u = arg;
    vms_fiber *f = NULL;
    switch (u->kind) {
    case UNREADABLE_LOW:
        f = (vms_fiber *)(uintptr_t)4096;
        break;
    case UNREADABLE_PROT_NONE: {
        void *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) exit(10);
        f = p;
        break;
    }
    case UNREADABLE_GUARD: {
        vms_stack *s = vms_stack_alloc(0);
        if (!s) exit(11);
        f = (vms_fiber *)(void *)((char *)vms_stack_base(s) - 1024);
        break;
    }
    }
    printf("pointer %p\n", (void *)f);
    fflush(stdout);
    switch (u->call) {
    case 0: vms_fiber_destroy(f); break;
    case 1: printf("returned: %d\n", vms_fiber_state(f)); break;
    case 2: printf("returned: %p\n", (const void *)vms_fiber_oops(f)); break;
    case 3: printf("returned: %p\n", (const void *)vms_fiber_stack(f)); break;
    }
    exit(12);
}

TEST(unreadable_pointers_are_not_fibers)
{
    for (int kind = 0; kind < UNREADABLE_KINDS; kind++) {
#ifndef VMSTACK_VMAP
        if (kind == UNREADABLE_GUARD) continue;   /* the direct backend has no guards */
#endif
        for (int call = 0; call < 4; call++) {
            struct unreadable u = { kind, call };
            char out[4096];
            int st = tst_fork(unreadable_child, &u, out, sizeof out);
            if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
                TST_FAIL("kind %d, %s: want SIGABRT, got %s %d; output:\n%s", kind,
                         unreadable_calls[call], WIFEXITED(st) ? "exit" : "signal",
                         WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
            char want[160];
            const char *p = strstr(out, "pointer 0x");
            ASSERT_NOT_NULL(p);
            snprintf(want, sizeof want, "vmstack: error: %s: %.*s is not a fiber that "
                     "vmstack created", unreadable_calls[call],
                     (int)strcspn(p + 8, "\n"), p + 8);
            ASSERT_STR_CONTAINS(out, want);
            ASSERT_STR_NOT_CONTAINS(out, "returned:");
            ASSERT_STR_NOT_CONTAINS(out, "wild guard access");
        }
    }
}

/* A vms thread's record is no fiber: a kept handle of a fiber destroyed since, whose
 * stack a vms thread has now with its record at the same place (every fourth task on a
 * stack), or a pointer that never was a fiber. The fiber calls took it for a fiber:
 * vms_fiber_state gave the thread's state, vms_fiber_destroy of a running thread said
 * "fiber N is running on another thread" and of an ended one freed its stack (the reap
 * then said "double free" in vms_stack_free), and a resume of one not yet started ran
 * its body as a fiber. */
enum { THREC_STATE_RUNNING, THREC_DESTROY_RUNNING, THREC_DESTROY_DONE, THREC_RESUME_DONE,
       THREC_STACK_DONE, THREC_RESUME_READY, THREC_CASES };
static const char *const threc_calls[] = { "vms_fiber_state", "vms_fiber_destroy",
                                           "vms_fiber_destroy", "vms_fiber_resume",
                                           "vms_fiber_stack", "vms_fiber_resume" };
static void *_Atomic threc_rec;
static sem_t threc_started, threc_release;

static void *threc_body(void *arg)
{
    (void)arg;
    atomic_store(&threc_rec, atomic_load(&vms__stack_record(vms_stack_self())->owner));
    sem_post(&threc_started);
    while (sem_wait(&threc_release) != 0) {}
    return NULL;
}

static void *threc_never(void *arg)
{
    (void)arg;
    printf("the thread's body ran as a fiber\n");
    fflush(stdout);
    return NULL;
}

static void threc_child(void *arg)
{
    int what = (int)(intptr_t)arg;
    vms_fiber *f;
    pthread_t t;
    if (what == THREC_RESUME_READY) {
        f = (vms_fiber *)vms__task_thread_new(threc_never, NULL, 0);   /* never started */
        if (!f) exit(10);
    } else {
        sem_init(&threc_started, 0, 0);
        sem_init(&threc_release, 0, 0);
        if (vms_thread_create(&t, NULL, threc_body, NULL) != 0) exit(11);
        while (sem_wait(&threc_started) != 0) {}
        f = atomic_load(&threc_rec);
        if (what >= THREC_DESTROY_DONE) {
            sem_post(&threc_release);
            if (pthread_join(t, NULL) != 0) exit(12);
        }
    }
    printf("record %p\n", (void *)f);
    fflush(stdout);
    switch (what) {
    case THREC_STATE_RUNNING: printf("returned: %d\n", vms_fiber_state(f)); break;
    case THREC_DESTROY_RUNNING:
    case THREC_DESTROY_DONE: vms_fiber_destroy(f); printf("returned\n"); break;
    case THREC_RESUME_DONE:
    case THREC_RESUME_READY: printf("returned: %d\n", vms_fiber_resume(f)); break;
    case THREC_STACK_DONE: printf("returned: %p\n", (const void *)vms_fiber_stack(f)); break;
    }
    exit(13);
}

TEST(a_threads_record_is_not_a_fiber)
{
    for (int what = 0; what < THREC_CASES; what++) {
        char out[4096];
        int st = tst_fork(threc_child, (void *)(intptr_t)what, out, sizeof out);
        if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGABRT)
            TST_FAIL("case %d, %s: want SIGABRT, got %s %d; output:\n%s", what,
                     threc_calls[what], WIFEXITED(st) ? "exit" : "signal",
                     WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
        const char *p = strstr(out, "record 0x");
        ASSERT_NOT_NULL(p);
        char want[200];
        if (what >= THREC_DESTROY_DONE && what != THREC_RESUME_READY &&
            vms__os_robust_list_works() != 0) {
            /* Without a robust-futex list (qemu-user) a thread frees its stack at its
             * end, its record with it: the record of an ended thread is then a destroyed
             * task's, and reported as the use after destroy it is. */
            snprintf(want, sizeof want, "vmstack: error: %s: fiber %.*s was destroyed "
                     "already (its stack [0x", threc_calls[what],
                     (int)strcspn(p + 7, "\n"), p + 7);
        } else {
            snprintf(want, sizeof want, "vmstack: error: %s: %.*s is not a fiber: it is the "
                     "record of a vms thread, on the stack [0x", threc_calls[what],
                     (int)strcspn(p + 7, "\n"), p + 7);
        }
        ASSERT_STR_CONTAINS(out, want);
        ASSERT_STR_NOT_CONTAINS(out, "returned");
        ASSERT_STR_NOT_CONTAINS(out, "ran as a fiber");
    }
}
