/*
 * thread.c - vms_thread_create: results through pthread_join, attributes (detach state,
 * stack size, caller stacks refused), many threads at once, fibers inside vms threads,
 * vms_stack_remaining on a thread's stack, pthread_exit from the body.
 */
#include "test.h"
#include "internal.h"

#include <pthread.h>
#include <semaphore.h>
#include <stdint.h>

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
        p->size = vms_stack_size(info.stack);
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
    /* Every thread ran on its own vmstack stack, given back at its exit. */
    for (int i = 1; i <= NTHREADS; i++) {
        ASSERT_NOT_NULL(thread_stack[i]);
        for (int j = 1; j < i; j++) ASSERT(thread_stack[i] != thread_stack[j] ||
                                           thread_stack[i]->state == VMS__SLOT_FREE);
    }
    for (int i = 1; i <= NTHREADS; i++)
        ASSERT_EQ(atomic_load(&thread_stack[i]->state), VMS__SLOT_FREE);
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
    pthread_t t;
    ASSERT_EQ(vms_thread_create(&t, NULL, exits_early, (void *)41), 0);
    void *r = NULL;
    ASSERT_EQ(pthread_join(t, &r), 0);
    ASSERT_PTR_EQ(r, (void *)42);
    ASSERT_NOT_NULL(exit_stack);
    ASSERT_EQ(atomic_load(&exit_stack->state), VMS__SLOT_FREE);
    ASSERT_NULL(exit_stack->owner);
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
    ASSERT_EQ(atomic_load(&cancel_stack->state), VMS__SLOT_FREE);
}
