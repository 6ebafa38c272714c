/*
 * fiber.c - the task core (layer 5 of DESIGN.md) and the public fiber API.
 *
 * A task is code running on a vmstack stack through the context switch of
 * arch/<arch>/switch.S: a fiber (vms_fiber_*) or the body of a vms thread (thread.c).
 * It owns its stack from create to destroy (st->owner points back at it meanwhile). Each
 * thread has one "current task" pointer in initial-exec TLS, which the fault handler
 * reads (vms__task_current) and which is only written by the thread itself, before a
 * switch, so it always names the task whose stack the thread is about to run on.
 * Invariants: a fiber runs only on its home thread (the first to resume it); a task's
 * `back` context is valid exactly while it is RUNNING; the create, resume, yield and
 * destroy paths make no system call and take no lock (one malloc per fiber).
 */
#include "internal.h"
#include "arch/context.h"
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

/* Longest task name kept (longer names are cut): names are labels in oops reports. */
#define TASK_NAME_MAX 48

struct vms__thread;

struct vms__task {
    struct vms__ctx ctx;          /* the task's registers while it is not running */
    struct vms__ctx back;         /* its resumer's registers while it runs */
    struct vms__task *parent;     /* the task that resumed it; NULL: the thread's stack */
    struct vms_stack *stack;
    _Atomic int state;            /* VMS_READY ... VMS_KILLED */
    int kind;                     /* VMS__TASK_FIBER or VMS__TASK_THREAD */
    unsigned long id;
    struct vms__thread *_Atomic home; /* the thread that first ran it */
    union { void (*fiber)(void *); void *(*thread)(void *); } fn;
    void *arg;
    void *result;                 /* a thread task's return value */
    struct vms__track track;      /* sanitizer and Valgrind state */
    char name[TASK_NAME_MAX];
    vms_oops oops;                /* valid once KILLED */
};

/* The public handle is the task itself; the wrapper only keeps the types apart. */
struct vms_fiber { struct vms__task task; };

struct vms__thread {
    struct vms__task *cur;        /* the task this thread runs, NULL: its own stack */
    bool guard_ready;             /* vms__guard_thread_init succeeded on this thread */
};

/* initial-exec: the fault handler reads it without the lazy allocation (and the
 * locks) that the general-dynamic model may need on first access. */
static VMS_TLS struct vms__thread self_thread;

static atomic_ulong next_id;

static void copy_name(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    if (src)
        for (; i + 1 < cap && src[i]; i++) dst[i] = src[i];
    dst[i] = '\0';
}

static void *current_sp(void)
{
    void *sp;
#if defined(__x86_64__)
    __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
#elif defined(__aarch64__)
    __asm__ volatile("mov %0, sp" : "=r"(sp));
#endif
    return sp;
}

/* Runs first on a new task's stack (called by the trampoline). When it returns, the
 * trampoline calls vms__task_exit. */
static void task_main(void *arg)
{
    struct vms__task *t = arg;
    vms__track_arrived(&t->track);
    if (t->kind == VMS__TASK_FIBER)
        t->fn.fiber(t->arg);
    else
        t->result = t->fn.thread(t->arg);
}

/* Fills in everything but fn and arg, and hands st to t; pre: st is a live stack. */
static void task_init(struct vms__task *t, int kind, struct vms_stack *st, const char *name)
{
    t->parent = NULL;
    t->stack = st;
    atomic_init(&t->state, VMS_READY);
    t->kind = kind;
    t->id = atomic_fetch_add_explicit(&next_id, 1, memory_order_relaxed) + 1;
    atomic_init(&t->home, NULL);
    t->result = NULL;
    copy_name(t->name, sizeof t->name, name);
    vms__track_create(&t->track, st->base, vms__stack_top_of(st), kind == VMS__TASK_FIBER);
    vms__ctx_make(&t->ctx, vms__stack_top_of(st), task_main, t);
    atomic_store_explicit(&st->owner, t, memory_order_release);
}

/* Gives the stack back; pre: the task is not running and never will again. */
static void task_release_stack(struct vms__task *t)
{
    vms__track_destroy(&t->track);   /* vms_stack_free unpoisons the stack for ASan */
    atomic_store_explicit(&t->stack->owner, NULL, memory_order_relaxed);
    vms_stack_free(t->stack);
    t->stack = NULL;
}

static void task_info_of(const struct vms__task *t, struct vms__task_info *out)
{
    out->kind = t->kind;
    out->name = t->name;
    out->id = t->id;
    out->stack = t->stack;
}

/* The current task t overwrote its stack's end magic (VMS_END_CHECK): report it and
 * handle it like an overflow. Under VMS_ABORT the debug layer kills the process; under
 * VMS_KILL_TASK t is killed here: its resumer sees VMS_KILLED (or VMS_THREAD_KILLED).
 * Runs on t's stack, above the damaged bottom, which it never touches again. */
static _Noreturn void task_end_corrupted(struct vms__thread *th, struct vms__task *t)
{
    struct vms__task_info ti;
    task_info_of(t, &ti);
    vms__debug_end_corrupted(&ti, t->stack);
    memset(&t->oops, 0, sizeof t->oops);
    t->oops.kind = VMS_OVERFLOW;
    t->oops.fault_addr = t->stack->base;
    t->oops.stack_base = t->stack->base;
    t->oops.stack_size = t->stack->size;
    t->oops.tid = (long)gettid();
    t->oops.name = t->name;
    atomic_store_explicit(&t->state, VMS_KILLED, memory_order_relaxed);
    th->cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    vms__track_leave(&t->track, true);
    vms__ctx_jump(&t->back);
}

/* Frames on a thread's own stack below which a task runs are not instrumented by ASan:
 * when the task leaves by pthread_exit or cancellation, glibc long-jumps from the task's
 * stack straight to its thread start, and redzones ASan poisoned in those frames would
 * stay poisoned under the thread-exit code that runs there next. */
#define NO_ASAN_FRAME __attribute__((no_sanitize_address))

/* Switches from the calling context into t until t yields, returns or is killed;
 * returns t's new state. Pre: t is READY or SUSPENDED and belongs to th. */
static NO_ASAN_FRAME int task_enter(struct vms__thread *th, struct vms__task *t)
{
    void *save = NULL;
    /* A switch away from the calling task is a switch too: check its end magic. */
    if (VMS_UNLIKELY(th->cur && vms__debug_end_check(th->cur->stack)))
        task_end_corrupted(th, th->cur);
    t->parent = th->cur;
    atomic_store_explicit(&t->state, VMS_RUNNING, memory_order_relaxed);
    th->cur = t;
    /* The fault handler reads th->cur on this thread: the store must be done before
     * the switch starts pushing onto t's stack. */
    atomic_signal_fence(memory_order_seq_cst);
    vms__track_enter(&t->track, &save, t->stack->base, t->stack->size);
    vms__ctx_switch(&t->back, &t->ctx);
    vms__track_entered_back(save);
    int state = atomic_load_explicit(&t->state, memory_order_relaxed);
    if (state == VMS_DONE || state == VMS_KILLED) {
        /* Its depth is final: the debug layer records it (VMS_PAINT), from our stack. */
        struct vms__task_info ti;
        task_info_of(t, &ti);
        vms__debug_task_end(&ti);
    }
    return state;
}

_Noreturn void vms__task_exit(void *arg)
{
    struct vms__task *t = arg;
    if (VMS_UNLIKELY(vms__debug_end_check(t->stack))) task_end_corrupted(&self_thread, t);
    atomic_store_explicit(&t->state, VMS_DONE, memory_order_relaxed);
    self_thread.cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    vms__track_leave(&t->track, true);
    vms__ctx_jump(&t->back);
}

/* ---- for the fault handler ---------------------------------------------------------- */

/* The kernel name a new thread inherits from its creator: read once, from the first
 * thread that creates a vms thread (usually the main thread, whose name every thread
 * inherits unless renamed). */
static char inherited_name[16];
static pthread_once_t inherited_once = PTHREAD_ONCE_INIT;

static void read_inherited_name(void)
{
    if (prctl(PR_GET_NAME, (unsigned long)inherited_name, 0, 0, 0) != 0)
        inherited_name[0] = '\0';
}

/* async-signal-safe: prctl(2) is a plain system call. A thread task's name is the one
 * its thread was given (pthread_setname_np), or "" while it still carries the name it
 * inherited, which would name the wrong thing. Read when a report asks, so that
 * starting a thread costs no system call for it. */
static void thread_name_refresh(struct vms__task *t)
{
    char now[16] = { 0 };
    if (prctl(PR_GET_NAME, (unsigned long)now, 0, 0, 0) != 0) return;
    int same = 1;
    for (int i = 0; i < 16 && (now[i] || inherited_name[i]); i++)
        if (now[i] != inherited_name[i]) { same = 0; break; }
    if (same)
        t->name[0] = '\0';
    else
        copy_name(t->name, sizeof t->name, now);
}

/* async-signal-safe: reads this thread's TLS only. */
int vms__task_current(struct vms__task_info *out)
{
    struct vms__task *t = self_thread.cur;
    if (!t) return -1;
    if (t->kind == VMS__TASK_THREAD) thread_name_refresh(t);
    if (out) task_info_of(t, out);
    return 0;
}

/* async-signal-safe: runs on the alternate signal stack. The dying stack is never
 * touched again: we jump straight to the resumer's saved context, whose stack is
 * intact (it is another task's or the thread's own). */
_Noreturn void vms__task_kill_current(const vms_oops *oops, const ucontext_t *uc)
{
    struct vms__thread *th = &self_thread;
    struct vms__task *t = th->cur;
    if (!t) {
        static const char msg[] = "vmstack: error: kill requested but no task is running\n";
        ssize_t r = write(2, msg, sizeof msg - 1);
        (void)r;
        abort();
    }
    if (oops) {
        t->oops = *oops;
    } else {
        memset(&t->oops, 0, sizeof t->oops);
        t->oops.kind = VMS_OVERFLOW;
    }
    t->oops.name = t->name;
    atomic_store_explicit(&t->state, VMS_KILLED, memory_order_relaxed);
    th->cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    vms__track_leave(&t->track, true);
    /* The kernel blocked the signal (and sa_mask) for the handler; since we never
     * return through sigreturn, put back the mask of the interrupted code ourselves so
     * that the next overflow on this thread is caught too. */
    if (uc) pthread_sigmask(SIG_SETMASK, &uc->uc_sigmask, NULL);
    vms__ctx_jump(&t->back);
}

/* ---- fibers ------------------------------------------------------------------------- */

vms_fiber *vms_fiber_create(void (*fn)(void *), void *arg, const vms_fiber_attr *attr)
{
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    struct vms_stack *st = vms_stack_alloc(attr ? attr->stack_size : 0);
    if (!st) return NULL;                      /* errno from vms_stack_alloc */
    vms_fiber *f = malloc(sizeof *f);
    if (!f) {
        vms_stack_free(st);
        errno = ENOMEM;
        return NULL;
    }
    struct vms__task *t = &f->task;
    t->fn.fiber = fn;
    t->arg = arg;
    task_init(t, VMS__TASK_FIBER, st, attr ? attr->name : NULL);
    return f;
}

int vms_fiber_resume(vms_fiber *f)
{
    if (!f) return -EINVAL;
    struct vms__task *t = &f->task;
    struct vms__thread *th = &self_thread;
    int s = atomic_load_explicit(&t->state, memory_order_relaxed);
    if (s != VMS_READY && s != VMS_SUSPENDED) return -EINVAL;
    struct vms__thread *home = atomic_load_explicit(&t->home, memory_order_acquire);
    if (VMS_UNLIKELY(home != th)) {
        if (home) return -EINVAL;              /* it belongs to another thread */
        if (!th->guard_ready) {
            /* Without an alternate signal stack an overflow could not be handled and
             * would kill the process: refuse rather than run unprotected. */
            int e = vms__guard_thread_init();
            if (e) return e;
            th->guard_ready = true;
        }
        if (!atomic_compare_exchange_strong_explicit(&t->home, &home, th,
                                                     memory_order_acq_rel,
                                                     memory_order_acquire))
            return -EINVAL;                    /* another thread claimed it first */
    }
    return task_enter(th, t);
}

void vms_fiber_yield(void)
{
    struct vms__thread *th = &self_thread;
    struct vms__task *t = th->cur;
    if (!t || t->kind != VMS__TASK_FIBER) return;   /* not in a fiber: a no-op */
    if (VMS_UNLIKELY(vms__debug_end_check(t->stack))) task_end_corrupted(th, t);
    atomic_store_explicit(&t->state, VMS_SUSPENDED, memory_order_relaxed);
    th->cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    vms__track_leave(&t->track, false);
    vms__ctx_switch(&t->ctx, &t->back);
    vms__track_arrived(&t->track);
}

vms_fiber *vms_fiber_self(void)
{
    struct vms__task *t = self_thread.cur;
    return t && t->kind == VMS__TASK_FIBER ? (vms_fiber *)t : NULL;
}

int vms_fiber_state(const vms_fiber *f)
{
    if (!f) return -EINVAL;
    return atomic_load_explicit(&f->task.state, memory_order_relaxed);
}

const struct vms_oops *vms_fiber_oops(const vms_fiber *f)
{
    if (!f || atomic_load_explicit(&f->task.state, memory_order_relaxed) != VMS_KILLED)
        return NULL;
    return &f->task.oops;
}

const vms_stack *vms_fiber_stack(const vms_fiber *f)
{
    if (!f) {
        errno = EINVAL;
        return NULL;
    }
    return f->task.stack;
}

void vms_fiber_destroy(vms_fiber *f)
{
    if (!f) return;
    struct vms__task *t = &f->task;
    if (atomic_load_explicit(&t->state, memory_order_relaxed) == VMS_RUNNING) {
        /* Its stack is in use by the caller (or by a fiber that resumed the caller):
         * freeing it now would be a use-after-free. */
        vms__log_error("vms_fiber_destroy: fiber %lu \"%s\" is running (the caller or "
                       "one of its resumers); nothing was freed", t->id, t->name);
        errno = EBUSY;
        return;
    }
    task_release_stack(t);
    free(f);
}

/* ---- threads (thread.c) ------------------------------------------------------------- */

static pthread_key_t orphan_key;
static pthread_once_t orphan_once = PTHREAD_ONCE_INIT;
static int orphan_key_err;

/* Thread exit after pthread_exit or cancellation inside the task: glibc unwound the
 * task's stack and long-jumped back to its own thread start, so nothing runs on the
 * vmstack stack any more and it can be freed. */
static void orphan_destructor(void *p)
{
    struct vms__task *t = p;
    if (self_thread.cur == t) self_thread.cur = NULL;
    task_release_stack(t);
    free(t);
}

static void orphan_key_create(void)
{
    orphan_key_err = pthread_key_create(&orphan_key, orphan_destructor);
}

struct vms__task *vms__task_thread_new(void *(*fn)(void *), void *arg, size_t stack_size)
{
    pthread_once(&orphan_once, orphan_key_create);
    pthread_once(&inherited_once, read_inherited_name);
    if (orphan_key_err) {
        errno = orphan_key_err;
        return NULL;
    }
    struct vms_stack *st = vms_stack_alloc(stack_size);
    if (!st) return NULL;
    struct vms__task *t = malloc(sizeof *t);
    if (!t) {
        vms_stack_free(st);
        errno = ENOMEM;
        return NULL;
    }
    t->fn.thread = fn;
    t->arg = arg;
    task_init(t, VMS__TASK_THREAD, st, "");
    return t;
}

void vms__task_thread_discard(struct vms__task *t)
{
    task_release_stack(t);
    free(t);
}

NO_ASAN_FRAME void *vms__task_thread_run(struct vms__task *t)
{
    struct vms__thread *th = &self_thread;
    if (!th->guard_ready) {
        int e = vms__guard_thread_init();
        if (e)
            vms__log_warn("thread %ld has no alternate signal stack (%s): a stack overflow "
                          "in it will kill the process", (long)gettid(), strerror(-e));
        else
            th->guard_ready = true;
    }
    atomic_store_explicit(&t->home, th, memory_order_relaxed);
    pthread_setspecific(orphan_key, t);
    int s = task_enter(th, t);
    pthread_setspecific(orphan_key, NULL);
    void *result = s == VMS_KILLED ? VMS_THREAD_KILLED : t->result;
    task_release_stack(t);
    free(t);
    return result;
}

/* ---- the current task --------------------------------------------------------------- */

size_t vms_stack_remaining(void)
{
    char *sp = current_sp();
    const struct vms_stack *st = NULL;
    struct vms__task *t = self_thread.cur;
    if (t && t->stack && sp >= t->stack->base && sp <= vms__stack_top_of(t->stack)) {
        st = t->stack;
    } else {
        /* Not a task's stack: maybe a vmstack stack that another coroutine library
         * runs. */
        struct vms__where w;
        if (vms__arena_where(sp, &w) == VMS__WHERE_STACK && w.st) st = w.st;
    }
    if (!st) return SIZE_MAX;
    /* The end magic (VMS_END_CHECK) at the bottom is not the task's to use. */
    size_t used_below = (size_t)(sp - st->base), reserve = vms__debug_end_reserve();
    return used_below > reserve ? used_below - reserve : 0;
}
