/*
 * thread.c - vms_thread_create: results through pthread_join, attributes (detach state,
 * stack size, caller stacks refused), many threads at once, fibers inside vms threads,
 * vms_stack_remaining on a thread's stack, pthread_exit from the body.
 */
#include "test.h"
#include "internal.h"

#include <alloca.h>
#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#ifdef VMSTACK_VALGRIND
#include <valgrind/memcheck.h>
#endif

static volatile long seed = 7;

static void *echo(void *arg) { return arg; }

TEST(result_via_join)
{
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, echo, (void *)0x1234), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)0x1234);
}

TEST(invalid_arguments)
{
    pthread_t t;
    ASSERT_EQ(vms_thread_create(NULL, NULL, echo, NULL), -EINVAL);
    ASSERT_EQ(vms_thread_create(&t, NULL, NULL, NULL), -EINVAL);

    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    static char own[256 * 1024] __attribute__((aligned(4096)));
    ASSERT_EQ(pthread_attr_setstack(&a, own, sizeof own), 0);
    ASSERT_EQ(vms_thread_create(&t, &a, echo, NULL), -EINVAL);   /* caller's stack */
    pthread_attr_destroy(&a);

    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setstacksize(&a, (size_t)4 << 30), 0); /* > 1 GiB */
    ASSERT_EQ(vms_thread_create(&t, &a, echo, NULL), -EINVAL);
    pthread_attr_destroy(&a);
}

/* A caller's stack given the old way, pthread_attr_setstackaddr (its top, without a
 * size or with one), is refused as pthread_attr_setstack's is. The function is looked
 * up at run time: a direct call draws the compiler's deprecation warning, which a
 * #pragma can silence, and the linker's ("the use of `pthread_attr_setstackaddr' is
 * deprecated", glibc's link_warning), which nothing in the source can. */
TEST(caller_stack_by_setstackaddr_is_refused)
{
    int (*setstackaddr)(pthread_attr_t *, void *) =
        (int (*)(pthread_attr_t *, void *))dlsym(RTLD_DEFAULT, "pthread_attr_setstackaddr");
    if (!setstackaddr) SKIP("the C library has no pthread_attr_setstackaddr");
    static char own[256 * 1024] __attribute__((aligned(4096)));
    for (int sized = 0; sized < 2; sized++) {
        pthread_attr_t a;
        ASSERT_EQ(pthread_attr_init(&a), 0);
        if (sized) ASSERT_EQ(pthread_attr_setstacksize(&a, sizeof own), 0);
        ASSERT_EQ(setstackaddr(&a, own + sizeof own), 0);   /* the top: stacks grow down */
        pthread_t t;
        int e = vms_thread_create(&t, &a, echo, NULL);
        if (e == 0) pthread_join(t, NULL);
        pthread_attr_destroy(&a);
        if (e != -EINVAL) TST_FAIL("%s size: vms_thread_create gave %d, want -EINVAL",
                                   sized ? "with a" : "without a", e);
    }
}

/* No address space for the stack: -ENOMEM, and no thread. */
static void no_memory_child(void *arg)
{
    (void)arg;
    pthread_t t;
    if (vms_thread_create(&t, NULL, echo, NULL) != 0 || pthread_join(t, NULL) != 0) exit(10);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 4 * VMS_MIB);  /* a class no one used: a new arena */
    vms__os_inject(VMS__OP_MMAP, 1, ENOMEM, true);
    int e = vms_thread_create(&t, &a, echo, NULL);
    vms__os_inject_clear();
    if (e != -ENOMEM) {
        printf("vms_thread_create: %d\n", e);
        exit(11);
    }
    if (vms_thread_create(&t, &a, echo, NULL) != 0 || pthread_join(t, NULL) != 0) exit(12);
    exit(0);
}

TEST(no_memory_is_enomem)
{
#ifndef VMSTACK_VMAP
    SKIP("the direct backend takes its stacks from malloc, which mmap injection does not "
         "fail (direct.thread_without_memory_is_enomem tests it there)");
#endif
    NEED_FAULT_INJECTION();
    char out[4096];
    tst_run_ok(no_memory_child, NULL, out, sizeof out);
}

/* The new thread cannot install its alternate signal stack (sigaltstack fails in it):
 * it says so, once, with what it means, and runs all the same; its result comes back
 * through pthread_join and its stacks go back (guard_tasks.c checks the consequence). */
static void no_altstack_child(void *arg)
{
    (void)arg;
    pthread_t t;
    if (vms_thread_create(&t, NULL, echo, NULL) != 0 || pthread_join(t, NULL) != 0) exit(10);
    vms__os_inject(VMS__OP_SIGALTSTACK, 1, ENOMEM, true);
    void *r = NULL;
    if (vms_thread_create(&t, NULL, echo, (void *)0x1234) != 0) exit(11);
    if (pthread_join(t, &r) != 0) exit(12);
    vms__os_inject_clear();
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(13);
    printf("joined %p, stacks live %zu\n", r, st.stacks_live);
}

TEST(thread_without_alternate_stack_warns_and_runs)
{
    NEED_FAULT_INJECTION();
    char out[4096];
    tst_run_ok(no_altstack_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "joined 0x1234, stacks live 0\n");
    /* One line, saying what it means (a second, a warning from the thread's start,
     * repeated it; tests/restricted.c checks once per process). */
    ASSERT_EQ(tst_count(out, "vmstack: "), 1);
    ASSERT_STR_CONTAINS(out, "vmstack: error: sigaltstack failed for thread ");
    ASSERT_STR_CONTAINS(out, " (Cannot allocate memory): a stack overflow on a thread without "
                             "one cannot be reported and kills the process");
}

/* pthread_create's own error comes back negated, and the stacks taken for the thread
 * go back: an affinity naming no CPU of this machine makes glibc's pthread_create fail
 * with EINVAL after the attributes were copied. */
TEST(pthread_create_error_negated_and_nothing_kept)
{
    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(CPU_SETSIZE - 1, &cpus);
    if (pthread_attr_setaffinity_np(&a, sizeof cpus, &cpus) != 0)
        SKIP("the C library refuses the affinity already");
    pthread_t t;
    int plain = pthread_create(&t, &a, echo, NULL);
    if (plain == 0) {
        pthread_join(t, NULL);
        SKIP("this machine has CPU %d", CPU_SETSIZE - 1);
    }
    vms_stats before, after;
    ASSERT_EQ(vms_get_stats(&before), 0);
    ASSERT_EQ(vms_thread_create(&t, &a, echo, NULL), -plain);
    ASSERT_EQ(vms_get_stats(&after), 0);
    ASSERT_EQ(after.stacks_live, before.stacks_live);
    pthread_attr_destroy(&a);
}

/* pthread_create's EINVAL for an attribute of the caller's (here a priority outside its
 * policy's range) comes back at once: vms_thread_create retried it with 4x the C-library
 * stack up to 64 MiB and more, 7 pthread_create calls (each an mmap of the size tried)
 * before -EINVAL. Now: one call, and at most one probe thread (default attributes, the
 * same size), which shows the size fits; a second such call, none (the size has worked).
 * In a child: before any vms thread ran here, so that the size is not yet known to fit. */
static atomic_int creates_tried, probes_tried;

static void count_creates(size_t size, bool probe)
{
    (void)size;
    atomic_fetch_add(probe ? &probes_tried : &creates_tried, 1);
}

static void bad_priority_child(void *arg)
{
    pthread_attr_t *a = arg;
    pthread_t t;
    vms__thread_create_hook = count_creates;
    for (int i = 1; i <= 2; i++) {
        atomic_store(&creates_tried, 0);
        atomic_store(&probes_tried, 0);
        int e = vms_thread_create(&t, a, echo, NULL);
        printf("call %d: %d, %d pthread_create, %d probes\n", i, e,
               atomic_load(&creates_tried), atomic_load(&probes_tried));
        if (e != -EINVAL) exit(10);
    }
    /* A good thread still starts at the size found, at the first try. */
    atomic_store(&creates_tried, 0);
    if (vms_thread_create(&t, NULL, echo, NULL) != 0 || pthread_join(t, NULL) != 0) exit(11);
    printf("good: %d pthread_create\n", atomic_load(&creates_tried));
}

TEST(einval_for_an_attribute_is_not_retried_with_larger_stacks)
{
    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED), 0);
    /* SCHED_FIFO's priority 1, kept when the policy becomes SCHED_OTHER (whose only
     * priority is 0): glibc checks the range in pthread_create. */
    ASSERT_EQ(pthread_attr_setschedpolicy(&a, SCHED_FIFO), 0);
    struct sched_param sp = { .sched_priority = 1 };
    ASSERT_EQ(pthread_attr_setschedparam(&a, &sp), 0);
    ASSERT_EQ(pthread_attr_setschedpolicy(&a, SCHED_OTHER), 0);
    pthread_t t;
    int plain = pthread_create(&t, &a, echo, NULL);
    if (plain == 0) pthread_join(t, NULL);
    if (plain != EINVAL) SKIP("the C library's pthread_create says %d, not EINVAL", plain);
    char out[4096];
    int st = tst_fork(bad_priority_child, &a, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    char want[128];
    snprintf(want, sizeof want, "call 1: %d, 1 pthread_create, 1 probes\n", -EINVAL);
    ASSERT_STR_CONTAINS(out, want);
    snprintf(want, sizeof want, "call 2: %d, 1 pthread_create, 0 probes\n", -EINVAL);
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "good: 1 pthread_create\n");
    pthread_attr_destroy(&a);
}

struct probe {
    size_t remaining, size;
    int fiber_self_null, task_kind;
    unsigned long id;
};

static void *probe_body(void *arg)
{
    struct probe *p = arg;
    p->remaining = vms_stack_remaining();
    p->fiber_self_null = vms_fiber_self() == NULL;
    struct vms__task_info info;
    if (vms__task_current(&info) == 0) {
        p->task_kind = info.kind;
        p->size = vms_stack_size(vms__stack_handle(info.stack));
        p->id = info.id;
    }
    return p;
}

TEST(runs_on_a_vmstack_stack)
{
    struct probe p = { 0 };
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, probe_body, &p), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(p.task_kind, VMS__TASK_THREAD);
    ASSERT_EQ(p.fiber_self_null, 1);
    ASSERT_EQ(p.size, VMS_DEFAULT_STACK_SIZE);   /* glibc's 8 MiB default is not ours */
    ASSERT_LT(p.remaining, p.size);
    ASSERT_GT(p.remaining, p.size - 8192);
}

TEST(stack_size_honoured)
{
    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setstacksize(&a, 1024 * 1024), 0);
    struct probe p = { 0 };
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, &a, probe_body, &p), 0);
    pthread_attr_destroy(&a);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(p.size, 1024 * 1024);
    ASSERT_LT(p.remaining, 1024 * 1024);
    ASSERT_GT(p.remaining, 1024 * 1024 - 8192);
    /* Other sizes go up to their power-of-two class, as vms_stack_alloc's (docs/api.md). */
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setstacksize(&a, 300 * 1024), 0);
    ASSERT_EQ(vms_thread_create(&t, &a, probe_body, &p), 0);
    pthread_attr_destroy(&a);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(p.size, 512 * 1024);
}

/* Attributes that set no stack size give the body vmstack's default stack, as no
 * attributes do: glibc reports its own default (RLIMIT_STACK, usually 8 MiB) for them. */
TEST(attributes_without_a_stack_size_give_the_default_stack)
{
    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_JOINABLE), 0);
    struct probe p = { 0 };
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, &a, probe_body, &p), 0);
    pthread_attr_destroy(&a);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(p.task_kind, VMS__TASK_THREAD);
    ASSERT_EQ(p.size, VMS_DEFAULT_STACK_SIZE);
}

/* ---- attributes: what pthread_create would do with them ---------------------------- */

struct sched_seen {
    int policy, priority;
    int ncpus, cpu0;
};

static void *note_sched(void *arg)
{
    struct sched_seen *s = arg;
    struct sched_param sp;
    if (pthread_getschedparam(pthread_self(), &s->policy, &sp) == 0) s->priority = sp.sched_priority;
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
        s->ncpus = CPU_COUNT(&cpus);
        s->cpu0 = CPU_ISSET(0, &cpus);
    }
    return arg;
}

/* What a plain pthread and a vms thread made with attr see of their scheduling. */
static void sched_both(const pthread_attr_t *attr, struct sched_seen *plain, struct sched_seen *vms)
{
    pthread_t t;
    memset(plain, -1, sizeof *plain);
    memset(vms, -1, sizeof *vms);
    ASSERT_EQ(pthread_create(&t, attr, note_sched, plain), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(vms_thread_create(&t, attr, note_sched, vms), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
}

/* With PTHREAD_EXPLICIT_SCHED, pthread_create takes a policy and a priority that were
 * never set from the creator; vms_thread_create copied the attributes one getter at a
 * time, and a getter reports SCHED_OTHER and 0 for "never set": its threads ran under
 * SCHED_OTHER where the creator's SCHED_BATCH was due. (SCHED_BATCH needs no privilege.)
 * Values that were set stay as set. */
static void *explicit_sched_creator(void *arg)
{
    (void)arg;
    struct sched_param zero = { .sched_priority = 0 };
    if (pthread_setschedparam(pthread_self(), SCHED_BATCH, &zero) != 0) return (void *)1;
    pthread_attr_t a;
    struct sched_seen plain, vms;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED), 0);
    sched_both(&a, &plain, &vms);
    ASSERT_EQ(plain.policy, SCHED_BATCH);
    ASSERT_EQ(vms.policy, plain.policy);
    ASSERT_EQ(pthread_attr_setschedparam(&a, &zero), 0);   /* the priority only */
    sched_both(&a, &plain, &vms);
    ASSERT_EQ(plain.policy, SCHED_BATCH);
    ASSERT_EQ(vms.policy, plain.policy);
    ASSERT_EQ(pthread_attr_setschedpolicy(&a, SCHED_OTHER), 0);
    sched_both(&a, &plain, &vms);
    ASSERT_EQ(plain.policy, SCHED_OTHER);
    ASSERT_EQ(vms.policy, plain.policy);
    pthread_attr_destroy(&a);
    /* Inherited, as by default: the creator's. */
    sched_both(NULL, &plain, &vms);
    ASSERT_EQ(vms.policy, SCHED_BATCH);
    ASSERT_EQ(vms.priority, plain.priority);
    return NULL;
}

TEST(explicit_scheduling_takes_what_was_not_set_from_the_creator)
{
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, explicit_sched_creator, NULL), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    if (r == (void *)1) SKIP("this thread may not switch to SCHED_BATCH here");
}

/* An affinity set on a mask wider than cpu_set_t (CPU_ALLOC, for machines with more
 * than CPU_SETSIZE CPUs) with a CPU beyond CPU_SETSIZE in it: the getter refuses such a
 * mask into a cpu_set_t, and the affinity was dropped; the thread ran on every CPU. */
TEST(wide_affinity_masks_are_kept)
{
    cpu_set_t mine;
    ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
    if (!CPU_ISSET(0, &mine) || CPU_COUNT(&mine) < 2) SKIP("needs CPU 0 and another to run on");
    enum { WIDE = 4 * CPU_SETSIZE };
    cpu_set_t *wide = CPU_ALLOC(WIDE);
    ASSERT_NOT_NULL(wide);
    size_t size = CPU_ALLOC_SIZE(WIDE);
    CPU_ZERO_S(size, wide);
    CPU_SET_S(0, size, wide);
    CPU_SET_S(WIDE - 1, size, wide);      /* no machine here has it: the kernel ignores it */
    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setaffinity_np(&a, size, wide), 0);
    struct sched_seen plain, vms;
    sched_both(&a, &plain, &vms);
    ASSERT_EQ(plain.ncpus, 1);
    ASSERT_EQ(vms.ncpus, plain.ncpus);
    ASSERT_EQ(vms.cpu0, 1);
    pthread_attr_destroy(&a);
    CPU_FREE(wide);
}

/* Without attributes a vms thread inherits from its creator what a pthread does: the
 * signal mask, the CPU affinity, the scheduling (explicit_sched_creator) and the name. */
struct inherited {
    int usr2_blocked, ncpus, cpu0;
    char name[16];
};

static void *note_inherited(void *arg)
{
    struct inherited *in = arg;
    sigset_t mask;
    if (pthread_sigmask(SIG_BLOCK, NULL, &mask) == 0) in->usr2_blocked = sigismember(&mask, SIGUSR2);
    cpu_set_t cpus;
    if (sched_getaffinity(0, sizeof cpus, &cpus) == 0) {
        in->ncpus = CPU_COUNT(&cpus);
        in->cpu0 = CPU_ISSET(0, &cpus);
    }
    pthread_getname_np(pthread_self(), in->name, sizeof in->name);
    return arg;
}

static void *inheriting_creator(void *arg)
{
    struct inherited *in = arg;
    sigset_t usr2;
    sigemptyset(&usr2);
    sigaddset(&usr2, SIGUSR2);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &usr2, NULL), 0);
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(0, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
    ASSERT_EQ(pthread_setname_np(pthread_self(), "the-creator"), 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, note_inherited, in), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    return NULL;
}

TEST(inherits_mask_affinity_and_name_as_a_pthread)
{
    cpu_set_t mine;
    ASSERT_EQ(sched_getaffinity(0, sizeof mine, &mine), 0);
    if (!CPU_ISSET(0, &mine)) SKIP("this process may not run on CPU 0");
    struct inherited in = { -1, -1, -1, "" };
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, inheriting_creator, &in), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(in.usr2_blocked, 1);
    ASSERT_EQ(in.ncpus, 1);
    ASSERT_EQ(in.cpu0, 1);
    ASSERT(strcmp(in.name, "the-creator") == 0);
}

static sem_t detached_done;
static void *detached_body(void *arg)
{
    (void)arg;
    int d = -1;
    pthread_attr_t a;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getdetachstate(&a, &d);
        pthread_attr_destroy(&a);
    }
    *(int *)arg = d;
    sem_post(&detached_done);
    return NULL;
}

TEST(detach_state)
{
    ASSERT_EQ(sem_init(&detached_done, 0, 0), 0);
    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED), 0);
    int state = 0;
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, &a, detached_body, &state), 0);
    pthread_attr_destroy(&a);
    while (sem_wait(&detached_done) != 0) {}
    ASSERT_EQ(state, PTHREAD_CREATE_DETACHED);
}

/* Without attributes a vms thread gets the process's default attributes, as
 * pthread_create gives them (pthread_setattr_default_np): here detached. It used to
 * get pthread_attr_init's (joinable): a program that made every thread detached by default never joined its vms
 * threads, and their C-library stacks were never freed. */
TEST(no_attributes_means_the_process_defaults)
{
    ASSERT_EQ(sem_init(&detached_done, 0, 0), 0);
    pthread_attr_t def, saved;
    ASSERT_EQ(pthread_getattr_default_np(&saved), 0);
    ASSERT_EQ(pthread_getattr_default_np(&def), 0);
    ASSERT_EQ(pthread_attr_setdetachstate(&def, PTHREAD_CREATE_DETACHED), 0);
    ASSERT_EQ(pthread_setattr_default_np(&def), 0);
    pthread_attr_destroy(&def);
    int state = -1;
    pthread_t t;
    int e = vms_thread_create(&t, NULL, detached_body, &state);
    ASSERT_EQ(pthread_setattr_default_np(&saved), 0);   /* before any assertion fails */
    pthread_attr_destroy(&saved);
    ASSERT_EQ(e, 0);
    while (sem_wait(&detached_done) != 0) {}
    ASSERT_EQ(state, PTHREAD_CREATE_DETACHED);
}

/* *t is an ordinary pthread_t: joining and detaching are the C library's, errors
 * included (docs/api.md). */
static void *joins_itself(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)pthread_join(pthread_self(), NULL);
}

static sem_t may_end;
static void *waits_to_end(void *arg)
{
    while (sem_wait(&may_end) != 0) {}
    return arg;
}

TEST(join_of_itself_is_edeadlk)
{
    /* TSan's pthread_join CHECK-fails on a thread joining itself (a plain pthread
     * too) instead of returning the C library's EDEADLK. */
    NO_TSAN("the runtime's pthread_join fails a CHECK when a thread joins itself");
    pthread_t t;
    void *r = NULL;
    ASSERT_EQ(vms_thread_create(&t, NULL, joins_itself, NULL), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_EQ((intptr_t)r, EDEADLK);
}

TEST(join_and_detach_are_the_c_librarys)
{
    pthread_t t;
    ASSERT_EQ(sem_init(&may_end, 0, 0), 0);
    ASSERT_EQ(vms_thread_create(&t, NULL, waits_to_end, NULL), 0);
    ASSERT_EQ(pthread_detach(t), 0);
#ifndef TST_TSAN
    /* TSan's pthread_join and pthread_detach CHECK-fail on a detached thread (a plain
     * pthread's too, seen with clang 14) instead of returning the C library's EINVAL. */
    ASSERT_EQ(pthread_join(t, NULL), EINVAL);   /* detached */
    ASSERT_EQ(pthread_detach(t), EINVAL);       /* twice, while it still runs */
#endif
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live = s.stacks_live;
    ASSERT_GE(live, 1);
    sem_post(&may_end);
    /* The detached thread's stack comes back once it has ended. */
    do {
        sched_yield();
        ASSERT_EQ(vms_get_stats(&s), 0);
    } while (s.stacks_live >= live);
}

/* pthread_getattr_np describes a vms thread's small C library stack, not the vmstack
 * stack its body runs on (docs/api.md): a runtime that takes its stack's bounds from it
 * is wrong there. vms_stack_remaining is right. */
struct where {
    uintptr_t frame, lo, hi, self_base, self_top;
    size_t remaining, self_size;
};

static void *where_am_i(void *arg)
{
    struct where *w = arg;
    w->frame = (uintptr_t)__builtin_frame_address(0);
    w->remaining = vms_stack_remaining();
    const vms_stack *self = vms_stack_self();
    if (self) {
        w->self_base = (uintptr_t)vms_stack_base(self);
        w->self_top = (uintptr_t)vms_stack_top(self);
        w->self_size = vms_stack_size(self);
    }
    pthread_attr_t a;
    void *addr = NULL;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) == 0) {
        pthread_attr_getstack(&a, &addr, &size);
        pthread_attr_destroy(&a);
    }
    w->lo = (uintptr_t)addr;
    w->hi = (uintptr_t)addr + size;
    return arg;
}

TEST(getattr_np_describes_the_c_library_stack)
{
    struct where w = { 0, 0, 0, 0, 0, 0, 0 };
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, where_am_i, &w), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_NE(w.hi, 0);
    ASSERT(w.frame < w.lo || w.frame >= w.hi);      /* the body is not on that stack */
    ASSERT_LE(w.hi - w.lo, 1024 * 1024);            /* the small one (1 MiB: sanitizers) */
    ASSERT_LT(w.remaining, (size_t)VMS_DEFAULT_STACK_SIZE);
}

/* vms_stack_self gives the bounds pthread_getattr_np does not: the body's frame lies in
 * them, with the stack size asked for; a plain pthread and the main thread get NULL. */
TEST(stack_self_gives_the_bodys_stack)
{
    struct where w = { 0, 0, 0, 0, 0, 0, 0 };
    pthread_attr_t a;
    ASSERT_EQ(pthread_attr_init(&a), 0);
    ASSERT_EQ(pthread_attr_setstacksize(&a, 192 * 1024), 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, &a, where_am_i, &w), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    pthread_attr_destroy(&a);
    ASSERT_NE(w.self_base, 0);
    ASSERT(w.self_base < w.frame && w.frame < w.self_top);
    ASSERT_GE(w.self_size, 192 * 1024);
    ASSERT_UEQ(w.self_top - w.self_base, w.self_size);

    struct where p = { 0, 0, 0, 0, 0, 0, 0 };
    ASSERT_EQ(pthread_create(&t, NULL, where_am_i, &p), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(p.self_base, 0);
    ASSERT_NULL(vms_stack_self());
}

/* fork while vms threads run: the child's thread creates and joins vms threads as
 * usual; the stacks of the threads that ran in the parent, which the child does not
 * have, are freed there at its first reap (docs/api.md; tests/fork.c checks each). */
#define FORK_RUNNERS 3
static sem_t runners_ready, runners_may_end;

static void *runs_until_told(void *arg)
{
    volatile char touch[16 * 1024];
    touch[0] = 1;
    sem_post(&runners_ready);
    while (sem_wait(&runners_may_end) != 0) {}
    return (void *)(uintptr_t)(touch[0] + (uintptr_t)arg);
}

static void threads_in_child(void *arg)
{
    size_t live_at_fork = *(size_t *)arg - FORK_RUNNERS;   /* the runners' are freed */
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(2);
    if (s.stacks_live != live_at_fork) {
        fprintf(stderr, "child: %zu stacks live, %zu at the fork less the runners'\n",
                s.stacks_live, live_at_fork);
        _exit(3);
    }
    for (uintptr_t i = 0; i < 100; i++) {
        pthread_t t;
        void *r = NULL;
        if (vms_thread_create(&t, NULL, echo, (void *)i) != 0 || pthread_join(t, &r) != 0 ||
            r != (void *)i)
            _exit(4);
    }
    if (vms_get_stats(&s) != 0 || s.stacks_live != live_at_fork) _exit(5);
}

TEST(fork_while_threads_run)
{
    NO_TSAN("TSan refuses to start threads in the child of a multi-threaded fork");
    /* qemu-user (the aarch64 cross step) fails one of its own assertions (in cpu_exec)
     * when such a child starts a thread: seen with qemu 7.2. */
    if (!tst_thread_after_fork_works())
        SKIP("a child forked from a process with threads cannot start a thread here "
             "(qemu-user 7.2 cannot)");
    ASSERT_EQ(sem_init(&runners_ready, 0, 0), 0);
    ASSERT_EQ(sem_init(&runners_may_end, 0, 0), 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    pthread_t t[FORK_RUNNERS];
    for (uintptr_t i = 0; i < FORK_RUNNERS; i++)
        ASSERT_EQ(vms_thread_create(&t[i], NULL, runs_until_told, (void *)i), 0);
    for (int i = 0; i < FORK_RUNNERS; i++) while (sem_wait(&runners_ready) != 0) {}
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live = s.stacks_live;
    ASSERT_EQ(live, live0 + FORK_RUNNERS);
    char out[512];
    tst_run_ok(threads_in_child, &live, out, sizeof out);
    for (int i = 0; i < FORK_RUNNERS; i++) sem_post(&runners_may_end);
    for (uintptr_t i = 0; i < FORK_RUNNERS; i++) {
        void *r = NULL;
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT_PTR_EQ(r, (void *)(i + 1));
    }
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

/* exit() from a vms thread's body while other vms threads run: the process ends with
 * that status, after its atexit handlers, which run on the body's stack. */
static volatile size_t atexit_remaining;
static void note_atexit(void)
{
    atexit_remaining = vms_stack_remaining();
    printf("atexit on a vmstack stack: %d\n", atexit_remaining != SIZE_MAX);
    fflush(stdout);
}

static void *exits_the_process(void *arg)
{
    (void)arg;
    exit(7);
}

static void exit_from_body_child(void *arg)
{
    (void)arg;
    ASSERT_EQ(sem_init(&runners_ready, 0, 0), 0);
    ASSERT_EQ(sem_init(&runners_may_end, 0, 0), 0);
    atexit(note_atexit);
    pthread_t t;
    for (uintptr_t i = 0; i < FORK_RUNNERS; i++)
        ASSERT_EQ(vms_thread_create(&t, NULL, runs_until_told, (void *)i), 0);
    for (int i = 0; i < FORK_RUNNERS; i++) while (sem_wait(&runners_ready) != 0) {}
    ASSERT_EQ(vms_thread_create(&t, NULL, exits_the_process, NULL), 0);
    for (;;) pause();
}

TEST(exit_from_a_body_ends_the_process)
{
    char out[512];
    int st = tst_fork(exit_from_body_child, NULL, out, sizeof out);
    ASSERT_EXITED(st, 7);
    ASSERT_STR_CONTAINS(out, "atexit on a vmstack stack: 1\n");
}

static __attribute__((noinline)) size_t deeper(int n, size_t *at)
{
    volatile char buf[2048];
    size_t i = (size_t)(seed * 131 * (n + 1)) % sizeof buf;  /* the whole array stays */
    buf[i] = (char)n;
    at[n] = vms_stack_remaining();
    size_t r = n < 5 ? deeper(n + 1, at) : 0;
    return r + (size_t)buf[i];
}

static void *depth_body(void *arg)
{
    size_t *at = arg;
    return (void *)(uintptr_t)deeper(0, at);
}

TEST(remaining_decreases_with_depth)
{
    size_t at[6] = { 0 };
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, depth_body, at), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    for (int i = 1; i < 6; i++) {
        ASSERT_LT(at[i], at[i - 1]);
        ASSERT_GE(at[i - 1] - at[i], 2048);
    }
}

#define NTHREADS 64
static const struct vms_stack *thread_stack[NTHREADS + 1];

static void *square(void *arg)
{
    uintptr_t v = (uintptr_t)arg;
    struct vms__task_info info;
    if (vms__task_current(&info) == 0) thread_stack[v] = info.stack;
    volatile char touch[16 * 1024];                /* use the stack for real */
    for (size_t i = 0; i < sizeof touch; i += 512) touch[i] = (char)v;
    return (void *)(v * v + (uintptr_t)touch[512]);
}

TEST(many_threads)
{
    pthread_t t[NTHREADS];
    for (uintptr_t i = 0; i < NTHREADS; i++)
        ASSERT_EQ(vms_thread_create(&t[i], NULL, square, (void *)(i + 1)), 0);
    for (uintptr_t i = 0; i < NTHREADS; i++) {
        void *r;
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT_UEQ((uintptr_t)r, (i + 1) * (i + 1) + (uintptr_t)(char)(i + 1));
    }
    /* Every thread ran on its own vmstack stack, given back once it has ended: the
     * statistics reap ended threads, so after the joins every stack is free. */
    vms_stats stats;
    ASSERT_EQ(vms_get_stats(&stats), 0);
    for (int i = 1; i <= NTHREADS; i++) {
        ASSERT_NOT_NULL(thread_stack[i]);
        for (int j = 1; j < i; j++) ASSERT(thread_stack[i] != thread_stack[j] ||
                                           VMS__SLOT_STATE(thread_stack[i]) == VMS__SLOT_FREE);
    }
    for (int i = 1; i <= NTHREADS; i++)
        ASSERT_EQ(VMS__SLOT_STATE(thread_stack[i]), VMS__SLOT_FREE);
}

static void fib_step(void *arg)
{
    int *n = arg;
    for (int i = 0; i < 3; i++) {
        (*n)++;
        vms_fiber_yield();
    }
}

static void *fibers_in_thread(void *arg)
{
    (void)arg;
    int n = 0;
    vms_fiber *f = vms_fiber_create(fib_step, &n, NULL);
    if (!f) return (void *)1;
    int s;
    while ((s = vms_fiber_resume(f)) == VMS_SUSPENDED) {
        if (vms_fiber_self() != NULL) return (void *)2;   /* back in the thread task */
    }
    vms_fiber_destroy(f);
    return s == VMS_DONE && n == 3 ? NULL : (void *)3;
}

TEST(fibers_inside_a_thread)
{
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, fibers_in_thread, NULL), 0);
    void *r = (void *)99;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_NULL(r);
}

static const struct vms_stack *exit_stack;
static void *exits_early(void *arg)
{
    struct vms__task_info info;
    if (vms__task_current(&info) == 0) exit_stack = info.stack;
    volatile char buf[4096];
    buf[0] = 1;
    pthread_exit((void *)((uintptr_t)arg + (uintptr_t)buf[0]));
    return NULL;
}

/* pthread_exit unwinds the body's stack and leaves through glibc's thread start: the
 * vmstack stack is given back at thread exit all the same. */
TEST(pthread_exit_from_body)
{
    /* TSan CHECKs that pthread_exit runs on the thread's own state, not a fiber's. */
    NO_TSAN("the body runs in a TSan fiber (src/track.h), from which TSan forbids pthread_exit");
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, exits_early, (void *)41), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)42);
    ASSERT_NOT_NULL(exit_stack);
    ASSERT_EQ(VMS__SLOT_STATE(exit_stack), VMS__SLOT_FREE);
    ASSERT_NULL(exit_stack->owner);
}

/* The thread-exit hook that gives a vms thread's stack back when its body ends by
 * pthread_exit or cancellation cannot be set (pthread_setspecific: ENOMEM, by fault
 * injection): the thread runs all the same, and a warning says what such an end would
 * leak. Before, the failure went unsaid. */
static void *clears_injection(void *arg)
{
    vms__os_inject_clear();
    return arg;
}

static void no_exit_hook_child(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);   /* this thread's keys set before */
    if (!s) _exit(9);
    vms_stack_free(s);
    vms__os_inject(VMS__OP_SETSPECIFIC, 1, ENOMEM, true);
    pthread_t t;
    void *r = NULL;
    if (vms_thread_create(&t, NULL, clears_injection, (void *)5) != 0) _exit(10);
    if (pthread_join(t, &r) != 0 || r != (void *)5) _exit(11);
    vms__os_inject_clear();
    /* The body returned: its stack was given back as usual. */
    vms_stats st;
    if (vms_get_stats(&st) != 0 || st.stacks_live != 0) _exit(12);
}

TEST(no_exit_hook_for_the_body_is_said)
{
    NEED_FAULT_INJECTION();
    char out[4096];
    const char *o = tst_run_ok(no_exit_hook_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(o, "has no thread-exit hook for its vmstack stack (pthread_setspecific: ");
    ASSERT_STR_CONTAINS(o, "if its body ends by pthread_exit or cancellation, the stack is never freed");
}

/* The size of a vms thread's C-library stack, for any page size: a multiple of the page
 * that leaves the destructors room (at least 12 KiB above the static TLS and the thread's
 * control block) and, with 4 KiB pages, no more than 16 KiB plus them (so that glibc
 * has no pages to give back at the thread's exit). With 64 KiB pages the size used to
 * round down to 0 (only _SC_THREAD_STACK_MIN made it usable), with 16 KiB pages to one
 * leaving under 1 KiB. */
TEST(own_stack_size_for_any_page_size)
{
    const size_t tcb = 2 * 1024, room = 12 * 1024;
    size_t tls_sizes[] = { 0, 1, 4096, 6000, 13 * 1024, 40000, 1 << 20 };
    for (size_t p = 4096; p <= 65536; p *= 2) {
        for (size_t i = 0; i < sizeof tls_sizes / sizeof tls_sizes[0]; i++) {
            size_t tls = tls_sizes[i], s = vms__thread_own_size(tls, p);
            if (s % p != 0 || s < tls + tcb + room)
                TST_FAIL("page %zu, TLS %zu: size %zu (want a multiple of the page, at "
                         "least %zu)", p, tls, s, tls + tcb + room);
            if (p == 4096 && s > 16 * 1024 + tls + tcb)
                TST_FAIL("page 4096, TLS %zu: size %zu leaves pages for glibc's exit to "
                         "give back", tls, s);
            /* Never more than a page beyond what it needs. */
            if (s >= 16 * 1024 + tls + tcb + p)
                TST_FAIL("page %zu, TLS %zu: size %zu is a page too large", p, tls, s);
        }
    }
    /* As before with 4 KiB pages: rounded down. */
    ASSERT_EQ(vms__thread_own_size(4096, 4096), 20 * 1024);
    ASSERT_EQ(vms__thread_own_size(4096, 65536), 65536);
}

static const struct vms_stack *cancel_stack;
static sem_t cancel_ready;
static void *waits_forever(void *arg)
{
    (void)arg;
    struct vms__task_info info;
    if (vms__task_current(&info) == 0) cancel_stack = info.stack;
    sem_post(&cancel_ready);
    for (;;) pause();                             /* a cancellation point */
    return NULL;
}

/* Cancellation unwinds the body's stack like pthread_exit: PTHREAD_CANCELED, stack freed. */
TEST(cancellation)
{
    ASSERT_EQ(sem_init(&cancel_ready, 0, 0), 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, waits_forever, NULL), 0);
    while (sem_wait(&cancel_ready) != 0) {}
    ASSERT_EQ(pthread_cancel(t), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, PTHREAD_CANCELED);
    ASSERT_NOT_NULL(cancel_stack);
    ASSERT_EQ(VMS__SLOT_STATE(cancel_stack), VMS__SLOT_FREE);
}

/* A body that returns with asynchronous cancellation on, cancelled as its thread ends
 * (here at the hook, at the worst moment: the stack is in nobody's hands until it is
 * buried). The cancellation used to act at once and unwind out of vmstack's thread
 * end: the stack was never freed (and inside the burial, the graves' lock stayed
 * held). It waits now until the stack is given back, then ends the thread as a
 * cancellation does. */
static void cancel_self_at_end(void)
{
    pthread_cancel(pthread_self());
}

static void *returns_async_cancellable(void *arg)
{
    pthread_setcanceltype(PTHREAD_CANCEL_ASYNCHRONOUS, NULL);
    return arg;
}

TEST(cancelled_as_it_ends_gives_its_stack_back)
{
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    vms__task_thread_end_hook = cancel_self_at_end;
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, returns_async_cancellable, (void *)5), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    vms__task_thread_end_hook = NULL;
    ASSERT_PTR_EQ(r, PTHREAD_CANCELED);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
    /* Threads go on ending (the graves' lock is free). */
    ASSERT_EQ(vms_thread_create(&t, NULL, echo, (void *)6), 0);
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)6);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

/* pthread_exit from a fiber that the body resumed (through another fiber) unwinds those
 * fibers with the body: they never run again, so they are DONE afterwards and can be
 * destroyed, and every stack comes back. Before, they stayed RUNNING for good:
 * vms_fiber_destroy refused them (EBUSY) and their stacks leaked. */
static vms_fiber *unwound[2];

static void fiber_exits_thread(void *arg)
{
    pthread_exit(arg);
}

static void fiber_resumes_exiting(void *arg)
{
    unwound[1] = vms_fiber_create(fiber_exits_thread, arg, NULL);
    if (unwound[1]) vms_fiber_resume(unwound[1]);
}

static void *body_resumes_exiting(void *arg)
{
    unwound[0] = vms_fiber_create(fiber_resumes_exiting, arg, NULL);
    if (unwound[0]) vms_fiber_resume(unwound[0]);
    return NULL;
}

TEST(pthread_exit_from_a_fiber_in_the_body)
{
    NO_TSAN("the body runs in a TSan fiber (src/track.h), from which TSan forbids pthread_exit");
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, body_resumes_exiting, (void *)42), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)42);
    for (int i = 1; i >= 0; i--) {
        ASSERT_NOT_NULL(unwound[i]);
        ASSERT_EQ(vms_fiber_state(unwound[i]), VMS_DONE);
        ASSERT_EQ(vms_fiber_resume(unwound[i]), -EINVAL);
        errno = 0;
        vms_fiber_destroy(unwound[i]);
        ASSERT_EQ(errno, 0);
    }
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

/* ---- what a thread leaves behind: graves, the alternate-stack pool --------------- */

static void *alt_of_thread(void *arg)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0 || (cur.ss_flags & SS_DISABLE)) return NULL;
    *(void **)arg = cur.ss_sp;
    return arg;
}

static void *join_one(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    if (vms_thread_create(&t, NULL, fn, arg) != 0) return (void *)-1;
    void *r = (void *)-1;
    pthread_join(t, &r);
    return r;
}

/* Alternate stacks come back to the pool and are handed out again once scrubbed, which
 * the pool does 16 at a time: one thread after another, at most 17 distinct ones. */
#define ALT_ROUNDS 40
#define ALT_DISTINCT_MAX 17

/* A thread's stacks wait in its grave until it has ended; vms_get_stats reaps them, so
 * after pthread_join nothing counts as live, and later threads get the same alternate
 * stacks again (the pool), which proves they came back. */
TEST(stacks_return_after_join)
{
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    void *alt[ALT_ROUNDS] = { NULL };
    for (int i = 0; i < ALT_ROUNDS; i++) {
        ASSERT_PTR_EQ(join_one(alt_of_thread, &alt[i]), &alt[i]);
        ASSERT_NOT_NULL(alt[i]);
        ASSERT_EQ(vms_get_stats(&s), 0);
        ASSERT_EQ(s.stacks_live, live0);
    }
    ASSERT_LE(tst_distinct(alt, ALT_ROUNDS), ALT_DISTINCT_MAX);
}

static unsigned long syscalls_at_end;
static atomic_int creator_done;
static void *note_syscalls(void *arg)
{
    /* vms_thread_create reaps ended threads' stacks after pthread_create: its calls,
     * which may still be running. Count from when it has returned. */
    while (!atomic_load(&creator_done)) sched_yield();
    syscalls_at_end = vms__os_syscalls();
    return arg;
}

/* join_one for note_syscalls: tells it when vms_thread_create has returned. */
static void *join_noting(void)
{
    atomic_store(&creator_done, 0);
    pthread_t t;
    if (vms_thread_create(&t, NULL, note_syscalls, NULL) != 0) return (void *)-1;
    atomic_store(&creator_done, 1);
    void *r = (void *)-1;
    pthread_join(t, &r);
    return r;
}

/* Skips the case where threads have no graves: without a robust-futex list (qemu-user)
 * they free their stacks at their end. */
static void need_graves(void)
{
    int e = vms__os_robust_list_works();
    if (e) SKIP("the kernel keeps no robust-futex list here (%s)", strerror(-e));
}

/* Thread exit makes no system call of vmstack's: the alternate stack is not disabled,
 * and the thread's stacks are scrubbed later, in someone else's batch. (The creating
 * thread has returned from vms_thread_create and waits in pthread_join meanwhile: every
 * call counted is the exiting thread's.)
 * Only the threads that end before the first grave was seen open ask for their thread
 * ID (one call): the first iterations, not measured. */
TEST(thread_exit_makes_no_system_call)
{
    /* Without working robust mutexes (qemu-user) threads free their stacks the old way,
     * with system calls: without_robust_mutexes covers that path. */
    need_graves();
    for (int i = 0; i < 2; i++) ASSERT_NULL(join_noting());
    for (int i = 0; i < 4; i++) {
        ASSERT_NULL(join_noting());
        ASSERT_EQ(vms__os_syscalls() - syscalls_at_end, 0);
    }
}

/* ---- ended threads' stacks go back without a call that reaps ---------------------- */

/* Threads that run deep, end together and are joined: their stacks wait in their graves
 * at that depth. A program that goes on with fibers or raw stacks only (no
 * vms_thread_create, vms_get_stats or vms_stack_usage, which reap) must get them back
 * all the same: its stack frees reap (every 32nd free of a thread, a few graves at a
 * time). Before that, 1,000 such threads kept 110 MiB through 100,000 fiber cycles. */
#define ENDED_THREADS 64
#define ENDED_DEPTH (96 * 1024)
#define ENDED_FREES 4096

static pthread_barrier_t ended_bar;

static NOIPA void *deep_then_end(void *arg)
{
    volatile char *p = alloca(ENDED_DEPTH);
    for (size_t i = 0; i < ENDED_DEPTH; i += 1024) p[i] = (char)seed;
    pthread_barrier_wait(&ended_bar);   /* every thread created: none is reaped early */
    return p[0] == (char)seed ? arg : NULL;
}

static void shallow_fiber(void *arg)
{
    (void)arg;
    vms_fiber_yield();
}

/* vmstack's resident bytes, counted without a reap (vms_get_stats would reap). */
static size_t resident_now(void)
{
    size_t arenas, reserved, mappings, resident;
    vms__arena_totals(&arenas, &reserved, &mappings, &resident);
    return resident;
}

/* Runs the threads, then ENDED_FREES frees of fibers' stacks (fibers true) or raw
 * stacks, and checks that the threads' graves were reaped and their pages dropped. */
static void ended_threads_stacks_go_back(bool fibers)
{
    need_graves();
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(vms__stack_graves(), 0);
    size_t resident0 = resident_now();
    ASSERT_EQ(pthread_barrier_init(&ended_bar, NULL, ENDED_THREADS + 1), 0);
    static pthread_t t[ENDED_THREADS];
    for (int i = 0; i < ENDED_THREADS; i++)
        ASSERT_EQ(vms_thread_create(&t[i], NULL, deep_then_end, NULL), 0);
    pthread_barrier_wait(&ended_bar);
    for (int i = 0; i < ENDED_THREADS; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
    pthread_barrier_destroy(&ended_bar);
    /* Joined: every thread's grave waits, its body stack at ENDED_DEPTH. */
    ASSERT_EQ(vms__stack_graves(), ENDED_THREADS);
    size_t resident_joined = resident_now();
    ASSERT_GE(resident_joined, resident0 + ENDED_THREADS * (size_t)ENDED_DEPTH);

    for (int i = 0; i < ENDED_FREES; i++) {
        if (fibers) {
            vms_fiber *f = vms_fiber_create(shallow_fiber, NULL, NULL);
            ASSERT_NOT_NULL(f);
            ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
            vms_fiber_destroy(f);
        } else {
            vms_stack *st = vms_stack_alloc(0);
            ASSERT_NOT_NULL(st);
            ((volatile char *)vms_stack_top(st))[-1] = 1;
            vms_stack_free(st);
        }
    }
    /* Their pages went back: at least three quarters of what the threads touched (with
     * VMS_NO_SCRUB the per-thread LIFO keeps up to cache_per_thread, 8, stacks as their
     * last owners left them). */
    size_t resident_after = resident_now();
    ASSERT_LE(resident_after, resident_joined - ENDED_THREADS * (size_t)ENDED_DEPTH / 4 * 3);
    ASSERT_EQ(vms__stack_graves(), 0);
}

TEST(ended_threads_stacks_go_back_through_fiber_frees)
{
    ended_threads_stacks_go_back(true);
}

static void init_no_scrub(void)
{
    vms_config c;
    memset(&c, 0, sizeof c);
    c.flags = VMS_NO_SCRUB;
    ASSERT_EQ(vms_init(&c), 0);
}

/* Raw stacks with VMS_NO_SCRUB: frees go straight to the per-thread LIFO and run no
 * scrubbing batch, and still reap. */
TEST(ended_threads_stacks_go_back_through_raw_frees_no_scrub)
{
    init_no_scrub();
    ended_threads_stacks_go_back(false);
}

/* A reap's own frees (and whatever runs between its locked steps: a test hook here, a
 * signal handler in a program) reap no more: a nested reap would end the outer one's
 * "reaping" mark early, which fork and vms_get_stats rely on. */
static sem_t late_go;
static pthread_t late_thread;

static void *wait_for_late_go(void *arg)
{
    while (sem_wait(&late_go) != 0) {}
    return arg;
}

static atomic_int reap_depth, reap_depth_max;
static atomic_size_t graves_inside;

static void reap_with_frees(void)
{
    int d = atomic_fetch_add(&reap_depth, 1) + 1;
    if (d > atomic_load(&reap_depth_max)) atomic_store(&reap_depth_max, d);
    if (d == 1) {
        /* A new grave whose thread has ended, then frees enough for a reaping tick. */
        sem_post(&late_go);
        pthread_join(late_thread, NULL);
        size_t before = vms__stack_graves();
        for (int i = 0; i < 64; i++) vms_stack_free(vms_stack_alloc(0));
        atomic_store(&graves_inside, before * 1000 + vms__stack_graves());
    }
    atomic_fetch_sub(&reap_depth, 1);
}

TEST(frees_inside_a_reap_do_not_reap)
{
    need_graves();
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    /* A thread that ends inside the reap below (the hook lets it go), when the reap has
     * taken the graves it found. */
    ASSERT_EQ(sem_init(&late_go, 0, 0), 0);
    ASSERT_EQ(vms_thread_create(&late_thread, NULL, wait_for_late_go, NULL), 0);
    /* A thread that ends once its creator's reap is over (note_syscalls waits for
     * creator_done): one grave waits. */
    atomic_store(&creator_done, 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, note_syscalls, NULL), 0);
    atomic_store(&creator_done, 1);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(vms__stack_graves(), 1);
    vms__stack_reap_hook = reap_with_frees;
    vms__stack_reap();
    vms__stack_reap_hook = NULL;
    int depth = atomic_load(&reap_depth_max);
    size_t inside = atomic_load(&graves_inside);
    ASSERT_EQ(depth, 1);
    ASSERT_EQ(inside, 1001);   /* graves before the frees, after (x1000 + ): it stayed */
    /* Reaped by the next frees instead. */
    for (int i = 0; i < 64; i++) vms_stack_free(vms_stack_alloc(0));
    ASSERT_EQ(vms__stack_graves(), 0);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

/* Threads that free stacks (and so reap) while vms threads end and their creator reaps
 * too: every grave is reaped once, no stack is lost or freed twice (ThreadSanitizer and
 * the double-free check watch), and at the end nothing the threads had is live. */
#define REAP_WORKERS 2
#define REAP_ROUNDS 200
static atomic_int reap_workers_stop;

static void *free_loop(void *arg)
{
    while (!atomic_load(&reap_workers_stop)) {
        vms_stack *st = vms_stack_alloc(0);
        if (!st) return NULL;
        vms_stack_free(st);
    }
    return arg;
}

TEST(frees_reap_while_threads_end)
{
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    pthread_t w[REAP_WORKERS];
    for (int i = 0; i < REAP_WORKERS; i++)
        ASSERT_EQ(pthread_create(&w[i], NULL, free_loop, (void *)(uintptr_t)(i + 1)), 0);
    for (int i = 0; i < REAP_ROUNDS; i++) {
        void *alt = NULL;
        ASSERT_PTR_EQ(join_one(alt_of_thread, &alt), &alt);
    }
    atomic_store(&reap_workers_stop, 1);
    for (int i = 0; i < REAP_WORKERS; i++) {
        void *r = NULL;
        ASSERT_EQ(pthread_join(w[i], &r), 0);
        ASSERT_PTR_EQ(r, (void *)(uintptr_t)(i + 1));
    }
    /* The last threads' graves (and the workers'): reaped by this thread's frees. */
    for (int i = 0; i < 64 && vms__stack_graves(); i++) vms_stack_free(vms_stack_alloc(0));
    ASSERT_EQ(vms__stack_graves(), 0);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

/* Graves whose threads live on (a thread without an exit hook buries its alternate
 * stack at its start), newer than graves whose threads have ended and more of them than
 * a bounded reap looks at (64): frees still reap the ended ones, since each bounded reap
 * goes on where the last one stopped. */
#define LIVE_GRAVES 80
#define DEAD_GRAVES 8
static sem_t buried, live_graves_go;

static void *bury_a_stack(void *arg)
{
    struct vms_stack *st = vms__stack_alloc_internal(64 * 1024, false);
    if (!st || vms__stack_free_at_exit(st) != 0) return NULL;
    if (arg) {
        sem_post(&buried);
        while (sem_wait(&live_graves_go) != 0) {}
    }
    return &buried;
}

/* Frees until the graves waiting are want, or 64 reaping ticks have passed. */
static size_t free_until_graves(size_t want)
{
    for (int i = 0; i < 64 * 32 && vms__stack_graves() != want; i++)
        vms_stack_free(vms_stack_alloc(0));
    return vms__stack_graves();
}

TEST(frees_reap_ended_threads_behind_many_living_ones)
{
    need_graves();
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    ASSERT_EQ(vms__stack_graves(), 0);
    ASSERT_EQ(sem_init(&buried, 0, 0), 0);
    ASSERT_EQ(sem_init(&live_graves_go, 0, 0), 0);
    pthread_t t[DEAD_GRAVES + LIVE_GRAVES];
    void *r;
    for (int i = 0; i < DEAD_GRAVES; i++) {
        ASSERT_EQ(pthread_create(&t[i], NULL, bury_a_stack, NULL), 0);
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT_PTR_EQ(r, &buried);
    }
    for (int i = DEAD_GRAVES; i < DEAD_GRAVES + LIVE_GRAVES; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, bury_a_stack, &buried), 0);
    for (int i = 0; i < LIVE_GRAVES; i++) while (sem_wait(&buried) != 0) {}
    ASSERT_EQ(vms__stack_graves(), DEAD_GRAVES + LIVE_GRAVES);
    /* The ended threads' graves are the oldest, behind the living ones. */
    ASSERT_EQ(free_until_graves(LIVE_GRAVES), LIVE_GRAVES);
    for (int i = 0; i < LIVE_GRAVES; i++) ASSERT_EQ(sem_post(&live_graves_go), 0);
    for (int i = DEAD_GRAVES; i < DEAD_GRAVES + LIVE_GRAVES; i++) {
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        ASSERT_PTR_EQ(r, &buried);
    }
    ASSERT_EQ(free_until_graves(0), 0);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
    sem_destroy(&buried);
    sem_destroy(&live_graves_go);
}

static void reap_in_child(void *arg)
{
    size_t live0 = *(size_t *)arg;
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(2);
    if (s.stacks_live != live0) {
        fprintf(stderr, "child: %zu stacks live, expected %zu\n", s.stacks_live, live0);
        _exit(3);
    }
    void *alt = NULL;
    if (join_one(alt_of_thread, &alt) != &alt) _exit(4);
    if (vms_get_stats(&s) != 0 || s.stacks_live != live0) _exit(5);
}

/* fork while an ended thread's stacks wait in its grave: the child, where that thread
 * never existed, frees them at its first reap, and runs threads of its own. */
TEST(fork_with_a_pending_grave)
{
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    void *alt = NULL;
    ASSERT_PTR_EQ(join_one(alt_of_thread, &alt), &alt);   /* no reap since: pending */
    char out[512];
    tst_run_ok(reap_in_child, &live0, out, sizeof out);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

/* fork while another thread reaps: graves it has taken off the list but whose stacks it
 * has not freed yet would be lost to the child, their stacks live there for good. fork
 * waits for the reap. The reap hook holds the reaper between the two steps until the
 * fork waits for it (the fork's wait hook says so), so without that wait the child is
 * made in between. It used to hold it until the fork hook and 50 ms more: on a busy
 * machine the fork could still be short of its wait then (the case tested nothing), and
 * the reaper, once let go, had to finish within fork's bound of 1 s, which this case
 * raises to 60 s: a bound for a reaper that cannot finish, not for a slow one. */
static atomic_int reap_phase;
static atomic_bool fork_waits;

static void note_fork_wait(void)
{
    atomic_store(&fork_waits, true);
}

static void slow_reap(void)
{
    atomic_store(&reap_phase, 1);                /* graves taken, stacks not freed */
    /* Without the wait (the defect) the fork goes on and the child fails, ending the
     * case; this thread is never let go then. */
    while (!atomic_load(&fork_waits)) sched_yield();
}

static sem_t reaper_may_end;

static void *reap_once(void *arg)
{
    /* The reap alone, not vms_get_stats, which goes on to read /proc with stdio: ASan's
     * allocator (GCC 12's) does not lock itself around fork, and a child forked while
     * this thread is inside malloc would hang in its own first malloc. */
    vms__stack_reap();
    atomic_store(&reap_phase, 3);                /* done, with or without the hook */
    /* Alive until the child is done: under TSan a child that inherits an ended thread
     * nobody joined reports it as leaked. */
    while (sem_wait(&reaper_may_end) != 0) {}
    return arg;
}

static void *wait_then_end(void *arg)
{
    sem_wait(arg);
    return NULL;
}

static void live_in_child(void *arg)
{
    vms__stack_reap_hook = NULL;
    vms__stack_reap_wait_hook = NULL;
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(2);
    if (s.stacks_live != *(size_t *)arg) {
        fprintf(stderr, "child: %zu stacks live, expected %zu\n", s.stacks_live,
                *(size_t *)arg);
        _exit(3);
    }
}

/* A reaper that cannot finish while fork runs (one blocked in malloc on a lock that a
 * replacement allocator's fork handler holds): fork gives up waiting after a bound, and
 * the child loses that reap's graves (their stacks stay live there) rather than hang. */
static atomic_bool reaper_released;

static void stuck_reap(void)
{
    atomic_store(&reap_phase, 1);
    while (!atomic_load(&reaper_released)) sched_yield();
}

/* A grave pending, a reaper held inside its reap by hook, a fork meanwhile: the child must
 * count child_extra more live stacks than before, and the parent none once it is done. */
static void fork_during_reap(void (*hook)(void), size_t child_extra)
{
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    /* The thread ends after vms_thread_create's own reap: its grave is pending. */
    sem_t go;
    ASSERT_EQ(sem_init(&go, 0, 0), 0);
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, wait_then_end, &go), 0);
    sem_post(&go);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    sem_destroy(&go);
    atomic_store(&reap_phase, 0);
    atomic_store(&fork_waits, false);
    atomic_store(&reaper_released, false);
    ASSERT_EQ(sem_init(&reaper_may_end, 0, 0), 0);
    vms__stack_reap_hook = hook;
    pthread_t r;
    ASSERT_EQ(pthread_create(&r, NULL, reap_once, NULL), 0);
    while (atomic_load(&reap_phase) == 0) sched_yield();
    if (atomic_load(&reap_phase) == 3) {
        sem_post(&reaper_may_end);
        pthread_join(r, NULL);
        vms__stack_reap_hook = NULL;
        SKIP("the thread left no grave (graves do not work here)");
    }
    vms__stack_reap_wait_hook = note_fork_wait;
    long bound = vms__stack_reap_wait_ns;
    if (hook == slow_reap) vms__stack_reap_wait_ns = 60 * 1000000000L;
    char out[512];
    size_t want = live0 + child_extra;
    tst_run_ok(live_in_child, &want, out, sizeof out);
    vms__stack_reap_wait_ns = bound;
    vms__stack_reap_wait_hook = NULL;
    atomic_store(&reaper_released, true);
    sem_post(&reaper_may_end);
    pthread_join(r, NULL);
    sem_destroy(&reaper_may_end);
    vms__stack_reap_hook = NULL;
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
}

TEST(fork_waits_for_a_reap_in_progress)
{
    fork_during_reap(slow_reap, 0);
}

TEST(fork_waits_for_a_stuck_reap_only_so_long)
{
    fork_during_reap(stuck_reap, 1);   /* the dead thread's stack, never freed there */
}

static void no_robust_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_ROBUST_MUTEX, 1, ENOTSUP, true);
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(2);
    size_t live0 = s.stacks_live;
    unsigned long before = vms__os_syscalls();
    void *alt = NULL;
    if (join_one(alt_of_thread, &alt) != &alt) _exit(3);
    if (vms_get_stats(&s) != 0 || s.stacks_live != live0) _exit(4);
    /* The old way: sigaltstack to install and to disable. */
    if (vms__os_syscalls() - before < 2) _exit(5);
}

static void unwalked_list_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_ROBUST_WALK, 1, 1, true);
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(2);
    size_t live0 = s.stacks_live;
    void *alt = NULL;
    for (int i = 0; i < 3; i++)
        if (join_one(alt_of_thread, &alt) != &alt) _exit(3);
    /* The first reap finds a grave whose thread is gone but whose mutex nobody marked:
     * graves are given up, that one's stacks freed, and later threads free their own. */
    if (vms_get_stats(&s) != 0) _exit(4);
    if (s.stacks_live != live0) {
        fprintf(stderr, "%zu stacks live, expected %zu\n", s.stacks_live, live0);
        _exit(5);
    }
    if (join_one(alt_of_thread, &alt) != &alt) _exit(6);
    if (vms_get_stats(&s) != 0 || s.stacks_live != live0) _exit(7);
}

/* A kernel that keeps the robust list but never walks it at thread exit (here: fault
 * injection makes the graves' mutexes plain ones, which nobody marks) would leave graves
 * locked forever: the first one seen locked after its thread is gone turns graves off. */
TEST(robust_list_never_walked)
{
    NEED_FAULT_INJECTION();
    if (vms__os_robust_list_works() != 0) SKIP("no robust lists here at all");
    /* Once a grave has been seen open, graves no longer check themselves, in the child
     * too: only a process that has not proven them yet (as under ctest, one case per
     * process) can show the detection. */
    if (vms__stack_graves_proven())
        SKIP("graves were proven in this process already (run this case on its own)");
    char out[512];
    tst_run_ok(unwalked_list_child, NULL, out, sizeof out);
}

/* Without robust mutexes (qemu-user; here injected) threads free their stacks at exit the
 * usual way: disable the alternate stack, then free. Nothing leaks. */
TEST(without_robust_mutexes)
{
    NEED_FAULT_INJECTION();
    char out[512];
    tst_run_ok(no_robust_child, NULL, out, sizeof out);
}

/* Signal handlers write on the alternate stack; alternate stacks skip scrubbing while
 * they stay in vmstack's pool, so the pool's overflow must be scrubbed before the cache
 * hands it to the program. THREADS threads at once (more than the pool keeps) each take
 * a signal on their alternate stack that leaves a secret there. */
#define ALT_THREADS 80
static const char alt_secret[] = "alt-stack secret 0x5ec7e7";
static sem_t alt_ready, alt_go;

static void leave_secret(int sig)
{
    (void)sig;
    volatile char buf[2048];
    for (size_t i = 0; i + sizeof alt_secret <= sizeof buf; i += sizeof alt_secret)
        memcpy((char *)buf + i, alt_secret, sizeof alt_secret);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

static void *signalled(void *arg)
{
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0) *(void **)arg = cur.ss_sp;
    raise(SIGUSR1);
    sem_post(&alt_ready);
    while (sem_wait(&alt_go) != 0) {}
    return NULL;
}

static bool holds_secret(const char *p, size_t n)
{
#ifdef VMSTACK_VALGRIND
    /* Memcheck marks a stack handed out as undefined, like fresh malloc memory: we want
     * to read what is really there. */
    (void)VALGRIND_MAKE_MEM_DEFINED(p, n);
#endif
    return memmem(p, n, alt_secret, sizeof alt_secret - 1) != NULL;
}

TEST(alternate_stack_data_never_reaches_a_program_stack)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = leave_secret;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    ASSERT_EQ(sem_init(&alt_ready, 0, 0), 0);
    ASSERT_EQ(sem_init(&alt_go, 0, 0), 0);
    pthread_t t[ALT_THREADS];
    static void *alt[ALT_THREADS];
    for (int i = 0; i < ALT_THREADS; i++)
        ASSERT_EQ(vms_thread_create(&t[i], NULL, signalled, &alt[i]), 0);
    for (int i = 0; i < ALT_THREADS; i++) while (sem_wait(&alt_ready) != 0) {}
    for (int i = 0; i < ALT_THREADS; i++) sem_post(&alt_go);
    for (int i = 0; i < ALT_THREADS; i++) ASSERT_EQ(pthread_join(t[i], NULL), 0);
    sigaction(SIGUSR1, &old, NULL);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);   /* reaps: the pool's overflow goes to the cache */
    vms__cache_flush_thread();         /* scrubbed now, rather than at the 32nd free */
    /* Program stacks of the alternate stacks' size: enough to take every one the cache
     * holds; some of them must be former alternate stacks, or the test proves nothing. */
    ASSERT_NOT_NULL(alt[0]);
    struct vms__where w;
#ifdef TST_ASAN
    /* ASan's runtime gives every thread an alternate stack of its own, which vmstack
     * keeps: there is no vmstack alternate stack to follow. */
    if (vms__arena_where(alt[0], &w) != VMS__WHERE_STACK)
        SKIP("under ASan threads keep the runtime's alternate stacks");
#endif
    ASSERT_EQ(vms__arena_where(alt[0], &w), VMS__WHERE_STACK);
    size_t alt_size = w.st->size;
    enum { TAKE = 4 * ALT_THREADS };
    static vms_stack *st[TAKE];
    int former = 0;
    for (int i = 0; i < TAKE; i++) {
        st[i] = vms_stack_alloc(alt_size);
        ASSERT_NOT_NULL(st[i]);
        for (int j = 0; j < ALT_THREADS; j++) former += vms_stack_base(st[i]) == alt[j];
        ASSERT(!holds_secret(vms_stack_base(st[i]), vms_stack_size(st[i])));
    }
    ASSERT_GE(former, ALT_THREADS - 64);   /* the pool keeps 64 */
    for (int i = 0; i < TAKE; i++) vms_stack_free(st[i]);
}

/* Each thread looks at the alternate stack it was given before its own signal handler
 * leaves a secret there: an alternate stack is handed out like any stack, and the
 * program's SA_ONSTACK handlers run on it (and can read what they did not write), so a
 * new thread must never find the last owner's data on it. */
struct alt_look {
    bool plain;          /* a pthread of the program's own, not vms_thread_create's */
    int found;           /* 1: the secret was there; -1: no vmstack alternate stack */
};

static int look_at_own_alt_stack(void)
{
    stack_t cur;
    struct vms__where w;
    if (sigaltstack(NULL, &cur) != 0 || (cur.ss_flags & SS_DISABLE) ||
        vms__arena_where(cur.ss_sp, &w) != VMS__WHERE_STACK)
        return -1;
    int found = holds_secret(cur.ss_sp, cur.ss_size);
    raise(SIGUSR1);                      /* leave_secret, on this alternate stack */
    return found;
}

static void *alt_looker(void *arg)
{
    struct alt_look *l = arg;
    vms_stack *s = NULL;
    /* A pthread of the program's own gets its alternate stack from vmstack's pool at its
     * first call. */
    if (l->plain && !(s = vms_stack_alloc(0))) return NULL;
    l->found = look_at_own_alt_stack();
    vms_stack_free(s);
    return arg;
}

TEST(alternate_stack_data_never_reaches_the_next_thread)
{
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = leave_secret;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    ASSERT_EQ(sigaction(SIGUSR1, &sa, &old), 0);
    /* One thread at a time, so that each can be given the last one's alternate stack;
     * more than the pool's scrubbing batches, so that scrubbed ones come back too. */
    for (int i = 0; i < 100; i++) {
        struct alt_look l = { .plain = i % 3 == 2, .found = 0 };
        pthread_t t;
        if (l.plain) ASSERT_EQ(pthread_create(&t, NULL, alt_looker, &l), 0);
        else ASSERT_EQ(vms_thread_create(&t, NULL, alt_looker, &l), 0);
        void *r = NULL;
        ASSERT_EQ(pthread_join(t, &r), 0);
        ASSERT_PTR_EQ(r, &l);
        if (l.found < 0) SKIP("threads keep alternate stacks of their own (ASan)");
        if (l.found) TST_FAIL("thread %d (%s) found the last owner's data on its alternate stack",
                              i, l.plain ? "pthread" : "vms thread");
        vms_stats s;
        ASSERT_EQ(vms_get_stats(&s), 0);   /* reaps: its stacks go back */
    }
    sigaction(SIGUSR1, &old, NULL);
}

static void fiber_noop(void *arg) { (void)arg; }

/* A pthread of the program's own that runs a fiber (so it gets an alternate stack) and
 * reports that stack. */
static void *plain_thread_with_fiber(void *arg)
{
    vms_fiber *f = vms_fiber_create(fiber_noop, NULL, NULL);
    if (!f || vms_fiber_resume(f) != VMS_DONE) return NULL;
    vms_fiber_destroy(f);
    return alt_of_thread(arg);
}

/* A program that runs fibers on pthreads of its own never calls vms_thread_create or
 * vms_get_stats: its next thread to start reaps the ended ones, and later threads take
 * the same alternate stacks again. */
TEST(plain_threads_reuse_alternate_stacks)
{
    void *alt[ALT_ROUNDS] = { NULL };
    for (int i = 0; i < ALT_ROUNDS; i++) {
        pthread_t t;
        ASSERT_EQ(pthread_create(&t, NULL, plain_thread_with_fiber, &alt[i]), 0);
        void *r = NULL;
        ASSERT_EQ(pthread_join(t, &r), 0);
        ASSERT_PTR_EQ(r, &alt[i]);
        ASSERT_NOT_NULL(alt[i]);
    }
#ifdef TST_ASAN
    SKIP("under ASan threads keep the runtime's alternate stacks");
#endif
    ASSERT_LE(tst_distinct(alt, ALT_ROUNDS), ALT_DISTINCT_MAX);
}

/* What runs on a vms thread's small C-library stack: the program's thread-specific-data
 * destructors, at exit. They get about 12 KiB (docs/api.md); one that uses 10 KiB of
 * stack and formats text works. */
static pthread_key_t dtor_key;
static volatile int dtor_ran;

static void heavy_destructor(void *p)
{
    char buf[10 * 1024];
    int n = snprintf(buf, sizeof buf, "%s %d %f", (const char *)p, 42, 3.25);
    memset(buf + n + 1, 'x', sizeof buf - (size_t)n - 1);
    __asm__ volatile("" : : "r"(buf) : "memory");
    dtor_ran = n > 0 && buf[sizeof buf - 1] == 'x';
}

static void *set_key(void *arg)
{
    pthread_setspecific(dtor_key, arg);
    return NULL;
}

TEST(destructors_get_their_stack)
{
    ASSERT_EQ(pthread_key_create(&dtor_key, heavy_destructor), 0);
    ASSERT_NULL(join_one(set_key, (void *)"destructor"));
    ASSERT_EQ(dtor_ran, 1);
    pthread_key_delete(dtor_key);
}

/* A destructor of the program's that runs after vmstack's own thread-exit hooks (its
 * key made later: glibc runs destructors in key order), when the thread's stack cache
 * and its alternate stack were already given back: it can still run fibers, take raw
 * stacks and make and join vms threads, in more than one destructor round, and nothing
 * is lost. Plain pthreads and vms threads alike. */
static pthread_key_t late_key;
static atomic_int late_ok;
#ifdef TST_TSAN
/* Under TSan a destructor of vmstack's that a third round of the program's sets up
 * again runs in glibc's fourth and last round, where the runtime's interceptors fail a
 * CHECK (its record of the thread is gone: seen after fibers, raw stacks and threads
 * alike). */
#define LATE_ROUNDS 2
#else
#define LATE_ROUNDS 3
#endif

static void late_fiber(void *arg)
{
    vms_fiber_yield();
    *(int *)arg = 1;
}

static void late_destructor(void *p)
{
    uintptr_t round = (uintptr_t)p;
    int done = 0;
    vms_fiber *f = vms_fiber_create(late_fiber, &done, NULL);
    int ok = f && vms_fiber_resume(f) == VMS_SUSPENDED && vms_fiber_resume(f) == VMS_DONE &&
             done == 1;
    vms_fiber_destroy(f);
    vms_stack *st = vms_stack_alloc(0);
    ok = ok && st;
    vms_stack_free(st);
    pthread_t t;
    void *r = NULL;
    ok = ok && vms_thread_create(&t, NULL, echo, p) == 0 && pthread_join(t, &r) == 0 && r == p;
    if (ok) atomic_fetch_add(&late_ok, 1);
    if (round < LATE_ROUNDS) pthread_setspecific(late_key, (void *)(round + 1));
}

static void *sets_late_key(void *arg)
{
    pthread_setspecific(late_key, (void *)1);
    return arg;
}

TEST(late_destructors_use_vmstack)
{
    vms_stack_free(vms_stack_alloc(0));     /* vmstack's keys first */
    ASSERT_NULL(join_one(echo, NULL));
    ASSERT_EQ(pthread_key_create(&late_key, late_destructor), 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    size_t live0 = s.stacks_live;
    for (int i = 0; i < 20; i++) {
        pthread_t t;
        if (i % 2) ASSERT_EQ(pthread_create(&t, NULL, sets_late_key, NULL), 0);
        else ASSERT_EQ(vms_thread_create(&t, NULL, sets_late_key, NULL), 0);
        ASSERT_EQ(pthread_join(t, NULL), 0);
    }
    ASSERT_EQ(atomic_load(&late_ok), 20 * LATE_ROUNDS);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, live0);
    pthread_key_delete(late_key);
}

/* glibc calls thread-specific-data destructors for at most PTHREAD_DESTRUCTOR_ITERATIONS
 * rounds. A destructor of the program's that takes and frees stacks in the last round,
 * after vmstack's own thread-exit hook ran in an earlier one, made the thread a new
 * stack cache there that no hook gave back: its stacks were lost with the thread, and
 * each such thread took fresh ones (about 5 stacks per thread here: stacks_cached grew
 * by 100 for 20 threads). They now go back to the shared lists, where the next thread
 * finds them: what is cached grows by no more than one thread's stacks. */
#define LAST_ROUND_STACKS 4
static pthread_key_t last_key;
static atomic_int last_ok;

static void last_round_destructor(void *p)
{
    uintptr_t round = (uintptr_t)p;
    if (round < PTHREAD_DESTRUCTOR_ITERATIONS) {
        pthread_setspecific(last_key, (void *)(round + 1));
        return;
    }
    vms_stack *s[LAST_ROUND_STACKS];
    int ok = 1;
    for (int i = 0; i < LAST_ROUND_STACKS; i++) ok &= (s[i] = vms_stack_alloc(0)) != NULL;
    for (int i = 0; i < LAST_ROUND_STACKS; i++) vms_stack_free(s[i]);
    if (ok) atomic_fetch_add(&last_ok, 1);
}

static void *uses_vmstack_sets_last_key(void *arg)
{
    vms_stack_free(vms_stack_alloc(0));        /* the thread's cache and its exit hook */
    pthread_setspecific(last_key, (void *)1);
    return arg;
}

TEST(last_destructor_round_frees_are_not_lost)
{
#ifdef TST_TSAN
    SKIP("TSan's interceptors fail a CHECK when vmstack is used in glibc's last destructor "
         "round (late_destructors_use_vmstack)");
#endif
    vms_stack_free(vms_stack_alloc(0));     /* vmstack's keys first */
    ASSERT_EQ(pthread_key_create(&last_key, last_round_destructor), 0);
    vms_stats s0, s;
    ASSERT_EQ(vms_get_stats(&s0), 0);
    enum { T = 20 };
    for (int i = 0; i < T; i++) {
        pthread_t t;
        ASSERT_EQ(pthread_create(&t, NULL, uses_vmstack_sets_last_key, NULL), 0);
        ASSERT_EQ(pthread_join(t, NULL), 0);
    }
    ASSERT_EQ(atomic_load(&last_ok), T);
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT_EQ(s.stacks_live, s0.stacks_live);
    ASSERT_LE(s.stacks_cached, s0.stacks_cached + LAST_ROUND_STACKS);
    pthread_key_delete(last_key);
}

/* A program destructor that runs late at exit (priority 101: after the default ones,
 * vmstack's included, had there been any; vmstack registers no exit handler or
 * destructor of its own) frees stacks and a suspended fiber, then uses vmstack again:
 * everything works, nothing crashes, and the stacks it frees go to the main thread's
 * cache, which nothing gives back before the process ends (docs/api.md). Armed only in
 * the child of the case. */
static volatile int exit_dtor_armed;
static vms_stack *exit_dtor_stacks[16];
static vms_fiber *exit_dtor_fiber;

static void exit_dtor_fiber_fn(void *arg)
{
    (void)arg;
    vms_fiber_yield();
}

__attribute__((destructor(101))) static void late_program_destructor(void)
{
    if (!exit_dtor_armed) return;
    for (int i = 0; i < 16; i++) vms_stack_free(exit_dtor_stacks[i]);
    vms_fiber_destroy(exit_dtor_fiber);
    vms_stats s;
    int ok = vms_get_stats(&s) == 0 && s.stacks_live == 0;
    vms_fiber *f = vms_fiber_create(exit_dtor_fiber_fn, NULL, NULL);
    ok = ok && f && vms_fiber_resume(f) == VMS_SUSPENDED && vms_fiber_resume(f) == VMS_DONE;
    vms_fiber_destroy(f);
    ok = ok && vms_get_stats(&s) == 0 && s.stacks_live == 0 && s.stacks_cached > 0;
    fprintf(stderr, "late program destructor: %s\n", ok ? "ok" : "FAILED");
}

static void exit_dtor_child(void *arg)
{
    (void)arg;
    for (int i = 0; i < 16; i++)
        if (!(exit_dtor_stacks[i] = vms_stack_alloc(0))) _exit(10);
    exit_dtor_fiber = vms_fiber_create(exit_dtor_fiber_fn, NULL, NULL);
    if (!exit_dtor_fiber || vms_fiber_resume(exit_dtor_fiber) != VMS_SUSPENDED) _exit(11);
    exit_dtor_armed = 1;
    exit(0);
}

TEST(late_program_destructor_uses_vmstack_at_exit)
{
    char out[4096];
    int st = tst_fork(exit_dtor_child, NULL, out, sizeof out);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "late program destructor: ok\n");
}

/* A thread that forks while it ends (from a thread-specific-data destructor, after its
 * stacks went into its grave): in the child its grave is locked again by the child's
 * thread, which goes on using vmstack; nothing breaks in either process. */
static pthread_key_t end_key;
static volatile pid_t forked_child = -1;

static void fork_in_destructor(void *p)
{
    (void)p;
    pid_t pid = fork();
    if (pid == 0) {
        vms_stats s;
        void *alt = NULL;
        int ok = vms_get_stats(&s) == 0 && join_one(alt_of_thread, &alt) == &alt &&
                 vms_get_stats(&s) == 0;
        _exit(ok ? 0 : 1);
    }
    forked_child = pid;
}

static void *set_end_key(void *arg)
{
    pthread_setspecific(end_key, arg);
    return NULL;
}

/* Joins a vms thread whose end runs destructor (which forks and leaves the child's pid
 * in forked_child), then waits for that child: its wait status. */
static int fork_at_thread_end(void (*destructor)(void *))
{
    ASSERT_EQ(pthread_key_create(&end_key, destructor), 0);
    ASSERT_NULL(join_one(set_end_key, (void *)1));
    ASSERT_GT(forked_child, 0);
    int st = 0;
    while (waitpid(forked_child, &st, 0) < 0 && errno == EINTR) {}
    pthread_key_delete(end_key);
    return st;
}

TEST(fork_while_the_thread_ends)
{
    NO_TSAN("TSan refuses to start threads in the child of a multi-threaded fork");
    ASSERT_EXITED(fork_at_thread_end(fork_in_destructor), 0);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    void *alt = NULL;
    ASSERT_PTR_EQ(join_one(alt_of_thread, &alt), &alt);
}

/* The same fork at a thread's end, before any grave was seen open, and in the child
 * another thread reaps: the forker's grave (its alternate stack, still installed, inside)
 * must stay buried while the forker runs. It used to keep the parent thread's ID, which
 * names no thread in the child, so the reaper took it for a grave the kernel forgot to
 * mark and handed that alternate stack to the next thread. */
static pthread_barrier_t forker_bar;

static void *reap_by_stats(void *arg)
{
    vms_stats s;
    return vms_get_stats(&s) == 0 ? arg : (void *)-1;
}

static void *alt_then_wait(void *arg)
{
    alt_of_thread(arg);
    pthread_barrier_wait(&forker_bar);   /* both alternate stacks are in use now */
    pthread_barrier_wait(&forker_bar);
    return NULL;
}

static void fork_keeps_alt_in_destructor(void *p)
{
    (void)p;
    pid_t pid = fork();
    if (pid == 0) {
        stack_t mine;
        if (sigaltstack(NULL, &mine) != 0 || (mine.ss_flags & SS_DISABLE)) _exit(10);
        if (join_one(reap_by_stats, NULL) != NULL) _exit(11);
        pthread_barrier_init(&forker_bar, NULL, 3);
        pthread_t a, b;
        void *alts[2] = { NULL, NULL };
        if (vms_thread_create(&a, NULL, alt_then_wait, &alts[0]) != 0) _exit(12);
        if (vms_thread_create(&b, NULL, alt_then_wait, &alts[1]) != 0) _exit(12);
        pthread_barrier_wait(&forker_bar);
        int same = alts[0] == mine.ss_sp || alts[1] == mine.ss_sp;
        if (same)
            fprintf(stderr, "child: a new thread got the forker's alternate stack %p\n",
                    mine.ss_sp);
        pthread_barrier_wait(&forker_bar);
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        _exit(same ? 13 : 0);
    }
    forked_child = pid;
}

TEST(fork_while_ending_keeps_the_forkers_alternate_stack)
{
    NO_TSAN("TSan refuses to start threads in the child of a multi-threaded fork");
    /* Without graves (qemu-user) the ending thread disables its alternate stack before
     * freeing it: nothing stays installed to be handed out. */
    need_graves();
    /* vmstack's own thread keys exist first: a lower key, whose destructor (burying the
     * alternate stack) runs before the forking one. */
    vms_stack_free(vms_stack_alloc(0));
    ASSERT_EXITED(fork_at_thread_end(fork_keeps_alt_in_destructor), 0);
}

/* vms_fiber_yield in a vms thread's own body, where no fiber runs: a no-op (docs/api.md),
 * and the body goes on to its end. */
static void *yield_in_body(void *arg)
{
    int *steps = arg;
    vms_fiber_yield();
    (*steps)++;
    vms_fiber_yield();
    (*steps)++;
    return arg;
}

TEST(yield_in_a_bodys_own_code_is_a_no_op)
{
    int steps = 0;
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, yield_in_body, &steps), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT(r == (void *)&steps);
    ASSERT_EQ(steps, 2);
}
