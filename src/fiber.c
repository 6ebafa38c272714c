/*
 * fiber.c - the task core (layer 5 of DESIGN.md) and the public fiber API.
 *
 * A task is code running on a vmstack stack through the context switch of
 * arch/<arch>/switch.S: a fiber (vms_fiber_*) or the body of a vms thread (thread.c).
 * It owns its stack from create to destroy (st->owner points back at it meanwhile), and
 * its record (struct vms__task) lives at the top of that stack, in the page the task
 * touches first anyway: a task costs no allocation and no memory of its own, and dies
 * with its stack. Each thread has one "current task" pointer in initial-exec TLS, which
 * the fault handler reads (vms__task_current) and which is only written by the thread
 * itself, before a switch, so it always names the task whose stack the thread is about
 * to run on. Invariants: a fiber runs only on its home thread (the first to resume it);
 * a task's `back` context is valid exactly while it is RUNNING, and its state leaves
 * RUNNING only once its thread is done with its record (see above task_back); the
 * task layer's own part of the create, resume, yield and destroy paths makes no system
 * call, takes no lock and no locked read-modify-write (ids come in per-thread blocks):
 * only the stack cache under create and destroy does, at times (its shared lists' lock,
 * its scrubbing batch, new slots), and a thread's first resume, which sets up its
 * alternate signal stack; vms_stack_free's double-free check is the one
 * compare-and-swap of a create + destroy.
 */
#include "internal.h"
#include "arch/context.h"
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Longest task name kept (longer names are cut): names are labels in oops reports. */
#define TASK_NAME_MAX 48

struct vms__thread;

/* The C++ runtime's per-thread exception-handling record (the Itanium C++ ABI's
 * __cxa_eh_globals, the same in libstdc++ and libc++abi on x86-64 and aarch64): the
 * exceptions being handled, innermost first (what `throw;` rethrows and the end of a
 * handler pops), and the number of exceptions propagating (std::uncaught_exceptions).
 * It describes the frames of the code that runs, so each task has its own, switched
 * with its registers: with one per thread, a fiber that yields inside a handler leaves
 * its exception on top of the record, where its resumer's `throw;` rethrows it and the
 * end of the resumer's handler destroys it while the fiber still uses it (and the other
 * way round). Copied as two words, whatever their types. */
struct vms__eh {
    uintptr_t w[2];               /* the exceptions caught (a pointer), and the number
                                   * propagating (an unsigned int, padded to a word) */
};

/* Laid out for the switch: back, parent, stack, state, kind and home, which every
 * resume and yield touch, share as few cache lines as they can. */
struct vms__task {
    uintptr_t canary;             /* lowest in memory: its address ^ canary_secret */
    vms_oops oops;                /* valid once KILLED (see TASK_FOOTPRINT) */
    struct vms__ctx ctx;          /* the task's registers while it is not running */
    struct vms__ctx back;         /* its resumer's registers while it runs */
    struct vms__eh eh;            /* its C++ exception state while it is not running,
                                   * its resumer's while it runs (swapped at switches) */
    struct vms__task *parent;     /* the task that resumed it; NULL: the thread's stack */
    struct vms_stack *stack;      /* the stack this record lives on */
    _Atomic int state;            /* VMS_READY ... VMS_KILLED (publishing: above task_back) */
    int kind;                     /* VMS__TASK_FIBER or VMS__TASK_THREAD */
    bool fast_yield;              /* a fiber, no end check, no C++ runtime: yield tests
                                   * only this */
    int leaving;                  /* the state task_back publishes once it is done */
    _Atomic unsigned long home;   /* its thread's token (| HOME_CHECKED | HOME_EH), or
                                   * HOME_NONE */
    unsigned long id;
    union { void (*fiber)(void *); void *(*thread)(void *); } fn;
    void *arg;
    void *result;                 /* a thread task's return value */
    struct vms_stack *alt;        /* a thread task, until it starts: its alternate stack */
    struct vms__track track;      /* sanitizer and Valgrind state */
    char name[TASK_NAME_MAX];
    char inherited[16];           /* a thread task: the name its creator had (kernel's) */
};

/* A write that runs upwards from the task's first frame (a buffer overflow towards
 * higher addresses) reaches the record before any guard: the canary, the record's lowest
 * word, is checked at every resume and destroy, so a corrupted record is reported and
 * the process aborted before its saved registers are loaded (the kernel's
 * STACK_END_MAGIC, at the other end). The secret is random, so the value cannot be
 * guessed from the address alone, and vmstack's own: the kernel's 16 AT_RANDOM bytes are
 * the C library's secrets (glibc's stack-protector canary is made of the first eight,
 * its pointer guard, the key of PTR_MANGLE, of the other eight: elf/dl-osinfo.h), and a
 * record, in ordinary stack memory next to its own address, must not give them away to
 * a program that leaks a stack's contents. One getrandom(2) per process, at its first
 * task; where that fails (before Linux 3.17, or a sandbox), the two halves of AT_RANDOM
 * are folded together with the secret's address, which reveals neither half. */
static _Atomic uintptr_t canary_secret;

static uintptr_t task_canary_secret(void)
{
    uintptr_t s = atomic_load_explicit(&canary_secret, memory_order_relaxed);
    if (VMS_UNLIKELY(!s)) {
        /* A raw system call: glibc's getrandom is a cancellation point, and a pending
         * cancellation acting here lost the stack just taken for the task. */
        if (syscall(SYS_getrandom, &s, sizeof s, GRND_NONBLOCK) != (long)sizeof s) {
            uintptr_t w[2] = { 0, 0 };
            const unsigned char *r = (const unsigned char *)getauxval(AT_RANDOM);
            if (r) memcpy(w, r, sizeof w);
            s = (w[0] ^ (w[1] << 29 | w[1] >> 35) ^ (uintptr_t)&canary_secret) *
                UINT64_C(0x9e3779b97f4a7c15);
        }
        s |= 1;   /* never 0: 0 means "not decided yet" */
        /* Racing first callers drew different secrets: the first one stored is the
         * secret of every task. */
        uintptr_t none = 0;
        if (!atomic_compare_exchange_strong_explicit(&canary_secret, &none, s,
                                                     memory_order_relaxed,
                                                     memory_order_relaxed))
            s = none;
    }
    return s;
}

static struct vms__task *task_place(struct vms_stack *st, unsigned k);
static bool task_is_place(struct vms_stack *st, const struct vms__task *t);

/* The canary of t is wrong: t is no live fiber's record. Says which of the three it is:
 * a pointer vmstack never handed out as a fiber, a fiber destroyed already (its stack is
 * free, or another stack or a new fiber's own now: the scrubbing zeroed the canary), or
 * a live fiber's record that was overwritten. A place on a live stack that no task owns
 * (vms_stack_alloc's, or an alternate signal stack) is no fiber now, but may have been
 * one's record before the stack was freed and handed out again: the slot's task count
 * is mod 256, so a count of 0 does not prove that no task was ever there. */
static _Noreturn __attribute__((noinline)) void task_record_corrupted(const struct vms__task *t,
                                                                      const char *call)
{
    struct vms__where w;
    if (vms__arena_where(t, &w) != VMS__WHERE_STACK || !w.st || !task_is_place(w.st, t))
        vms__fatal("%s: %p is not a fiber that vmstack created (a foreign or corrupted "
                   "pointer)", call, (const void *)t);
    if (VMS__SLOT_STATE(w.st) == VMS__SLOT_LIVE &&
        !atomic_load_explicit(&w.st->owner, memory_order_relaxed))
        vms__fatal("%s: %p is not a fiber: it points into the stack [%p-%p), which no fiber "
                   "or thread owns (%s); a fiber destroyed already whose stack was handed "
                   "out again, or a pointer that never was a fiber", call, (const void *)t,
                   (void *)w.st->base, (void *)vms__stack_top_of(w.st),
                   w.st->internal ? "vmstack's own alternate signal stack"
                                  : "a raw stack of vms_stack_alloc");
    if (VMS__SLOT_STATE(w.st) != VMS__SLOT_LIVE ||
        atomic_load_explicit(&w.st->owner, memory_order_relaxed) != t)
        vms__fatal("%s: fiber %p was destroyed already (its stack [%p-%p) is no longer "
                   "its own): a use after vms_fiber_destroy", call, (const void *)t,
                   (void *)w.st->base, (void *)vms__stack_top_of(w.st));
    vms__fatal("fiber record %p was overwritten (canary 0x%lx): the task wrote above the "
               "first frame of its stack [%p-%p) (a buffer overflow towards higher "
               "addresses); its saved registers cannot be trusted", (const void *)t,
               (unsigned long)t->canary, (void *)w.st->base, (void *)vms__stack_top_of(w.st));
}

/* The failures of the usual resume's checks, reached by a jump rather than a call: not
 * declared noreturn, and opaque to the compiler's analysis of what they do, so that
 * vms_fiber_resume needs no frame of its own (with frame pointers, a call would cost
 * it a push and a pop on every resume). */
#if defined(__clang__)
#define VMS_OPAQUE __attribute__((noinline, optnone, cold))
#else
#define VMS_OPAQUE __attribute__((noinline, noipa, cold))
#endif
static VMS_OPAQUE int resume_bad_record(const struct vms__task *t)
{
    task_record_corrupted(t, "vms_fiber_resume");
}

static inline bool task_record_ok(const struct vms__task *t)
{
    return t->canary == ((uintptr_t)t ^ atomic_load_explicit(&canary_secret,
                                                            memory_order_relaxed));
}

/* A sound record that is a vms thread's, not a fiber's: a kept handle of a fiber
 * destroyed since, whose stack went to a vms thread with its record at the same place
 * (every fourth task on a stack, docs/api.md), or a pointer that never was a fiber. The
 * fiber calls took it for a fiber: vms_fiber_destroy freed the stack of a thread that
 * had ended (its reap then said "double free" in vms_stack_free, or freed the stack's
 * next owner), and a resume of one not yet started ran its body here. */
static _Noreturn __attribute__((noinline)) void task_not_a_fiber(const struct vms__task *t,
                                                                 const char *call)
{
    vms__fatal("%s: %p is not a fiber: it is the record of a vms thread, on the stack "
               "[%p-%p); a fiber destroyed already whose stack a thread has now, or a "
               "pointer that never was a fiber", call, (const void *)t,
               (void *)t->stack->base, (void *)vms__stack_top_of(t->stack));
}

/* A resume of a fiber in a state that cannot be resumed: -EINVAL if it is a fiber, and
 * the report of task_record_corrupted if the pointer is none (the state word of a
 * destroyed fiber's record is whatever its stack holds now) or task_not_a_fiber for a
 * thread's record (RUNNING, DONE). */
static VMS_OPAQUE int resume_bad_state(const struct vms__task *t)
{
    if (!task_record_ok(t)) task_record_corrupted(t, "vms_fiber_resume");
    if (t->kind != VMS__TASK_FIBER) task_not_a_fiber(t, "vms_fiber_resume");
    return -EINVAL;
}

/* The fiber calls' check of a record: sound, and a fiber's. */
static inline void task_check_record(const struct vms__task *t, const char *call)
{
    if (VMS_UNLIKELY(!task_record_ok(t))) task_record_corrupted(t, call);
    if (VMS_UNLIKELY(t->kind != VMS__TASK_FIBER)) task_not_a_fiber(t, call);
}

/* The top of a task's stack, from the top down: an outermost frame record (two zero
 * words, OUTER_FRAME bytes with padding to a cache line), the task's record
 * (TASK_FOOTPRINT bytes, a whole number of cache lines, so it shares none with the
 * frames), then the task's own frames. The outermost frame is where frame-pointer walks
 * (the oops trace without libunwind) end: it must stay at the very top. The oops comes
 * first in the record after the canary: it is only written when the task dies, so a
 * write a little above the task's first frame lands there before it reaches the
 * contexts. Even the smallest stack (one page) keeps most of its room.
 *
 * The record sits at one of TASK_PLACES places below the outermost frame, the next one
 * for each new task on the stack (counted in its slot record, mod 256, a multiple of
 * TASK_PLACES). A fiber handle is the record's address: if the record stayed put, the
 * next fiber made on a freed stack (the cache hands freed stacks out again) would have
 * the same address, and a handle kept after vms_fiber_destroy would resume or destroy
 * the new fiber. With the place moving on, the old address holds no valid canary and the
 * stale handle is reported: always while fewer than TASK_PLACES tasks were placed on the
 * stack since, and later unless their number is a multiple of TASK_PLACES. Costs nothing
 * per switch, and up to (TASK_PLACES - 1) * 64 bytes of the stack. */
#define OUTER_FRAME    ((size_t)64)
#define TASK_FOOTPRINT ((sizeof(struct vms__task) + 63) & ~(size_t)63)
#define TASK_PLACES    4u
#define TASK_ROOM      (TASK_FOOTPRINT + OUTER_FRAME + (TASK_PLACES - 1) * (size_t)64)
_Static_assert(TASK_ROOM <= 1280, "a task record leaves a one-page stack 2/3 of its room");

/* The public handle is the task itself; the wrapper only keeps the types apart. */
struct vms_fiber { struct vms__task task; };

struct vms__thread {
    struct vms__task *cur;        /* the task this thread runs, NULL: its own stack */
    bool guard_ready;             /* vms__guard_thread_init succeeded on this thread */
    bool exit_hooked;             /* the thread-exit hook for tasks is set, or cannot be
                                   * (no key): fiber_thread_hook */
    unsigned long id_next, id_end; /* task ids this thread may hand out: [next, end) */
    unsigned long token;          /* this thread as a fiber's home; 0 until it is one */
    struct vms__eh *eh;           /* the C++ runtime's record of this thread (NULL: no
                                   * C++ runtime); set before the thread's first switch */
    /* After a kill (vms__task_kill_current), what task_back puts back on the resumer's
     * stack: an SS_AUTODISARM alternate stack the kernel disabled (has_rearm), then the
     * signal mask. */
    bool kill_pending, has_rearm;
    stack_t rearm;
    sigset_t kill_mask;
    bool kill_cancel_set;         /* a kill left kill_cancel to put back: */
    int kill_cancel;              /* the thread's cancellation state at the fault */
};

/* initial-exec: the fault handler reads it without the lazy allocation (and the
 * locks) that the general-dynamic model may need on first access. */
static VMS_TLS struct vms__thread self_thread;

/* The C++ runtime's accessor of its per-thread record, when the program has a C++
 * runtime: a weak reference, resolved when libvmstack is loaded (or linked), so that a C
 * program needs no C++ library. A C++ runtime that a program loads later with dlopen,
 * after libvmstack, is not seen: its fibers then share their thread's record
 * (docs/api.md, C++). In a process with one, fibers take the resume and yield paths
 * that switch the record (HOME_EH, fast_yield off): the usual ones, a C program's, do
 * not even test for it. */
extern void *__cxa_get_globals(void) __attribute__((weak));

static inline bool have_cxx_runtime(void)
{
    return __cxa_get_globals != NULL;
}

/* Before the thread's first switch into a task (tasks start with an empty record). */
static void thread_eh_init(struct vms__thread *th)
{
    if (!th->eh && have_cxx_runtime()) th->eh = __cxa_get_globals();
}

/* Exchanges the C++ runtime's record of this thread with t's: at a switch into t (the
 * resumer's record goes into t's field while t runs) and out of it (t's own goes back
 * there). Each side moves as one 16-byte vector, loaded and stored alike: a load as
 * wide as the store before it takes its value from the store buffer (a 16-byte load of
 * what two 8-byte stores wrote waits for them). Always inlined, for TSan's sake
 * (task_switch_in). */
typedef uintptr_t eh_vec __attribute__((vector_size(16), aligned(8), may_alias));
static inline __attribute__((always_inline)) void eh_swap(struct vms__thread *th,
                                                          struct vms__task *t)
{
    struct vms__eh *eh = th->eh;
    if (eh) {
        eh_vec mine = *(eh_vec *)(void *)t->eh.w;
        *(eh_vec *)(void *)t->eh.w = *(eh_vec *)(void *)eh->w;
        *(eh_vec *)(void *)eh->w = mine;
    }
}

static atomic_ulong next_id;

/* A fiber's home is a token, not the address of its thread's vms__thread: the C library
 * reuses an ended thread's TLS block (its stack cache) for a new thread, which would then
 * own every fiber the ended one owned. Tokens are never reused, and a thread's is 0 until
 * it first needs one, which is neither a claimed home nor HOME_NONE. */
#define HOME_NONE (~0UL)
/* With VMS_END_CHECK a fiber's home carries this bit beside its thread's token, so that
 * the usual resume's one compare (home against this thread's token) sends it to the
 * resume that checks: the check costs nothing on the fast path when it is off. */
#define HOME_CHECKED (1UL << 62)
/* In a process with a C++ runtime, a fiber's home carries this bit too: its resume
 * takes the path that switches the runtime's exception record (vms_fiber_resume). */
#define HOME_EH (1UL << 61)
#define HOME_TOKEN(home) ((home) & ~(HOME_CHECKED | HOME_EH))
_Static_assert(sizeof(unsigned long) == 8, "tokens and HOME_CHECKED assume LP64");
static atomic_ulong next_token;

static unsigned long thread_token(struct vms__thread *th)
{
    if (VMS_UNLIKELY(!th->token))
        th->token = atomic_fetch_add_explicit(&next_token, 1, memory_order_relaxed) + 1;
    return th->token;
}

/* After fork(), the child has only the thread that forked: the fibers that other threads
 * ran at the fork stay RUNNING there but run nowhere, and must be destroyable like every
 * other fiber of those threads (docs/api.md). Their homes are the tokens handed out
 * before the fork, but for the forking thread's. Set in the child by
 * vms__fiber_fork_child (options.c's child handler, before any of the program's: one of
 * those may destroy such a fiber), while it has only one thread; 0 in a process that
 * never forked. */
static unsigned long fork_tokens;    /* tokens [1, fork_tokens] existed at the last fork */
static unsigned long fork_survivor;  /* of those, the forking thread's (0: it had none) */

void vms__fiber_fork_child(void)
{
    fork_tokens = atomic_load_explicit(&next_token, memory_order_relaxed);
    fork_survivor = self_thread.token;
}

/* Whether home (a fiber's) names a thread that a fork left behind. */
static bool home_gone(unsigned long home)
{
    unsigned long token = HOME_TOKEN(home);
    return home != HOME_NONE && token <= fork_tokens && token != fork_survivor;
}

/* Task ids come from the shared counter in blocks, so creating a task costs no locked
 * read-modify-write on a shared line (only one per ID_BLOCK tasks of a thread). Ids are
 * unique, not ordered across threads. */
#define ID_BLOCK 256

static unsigned long task_new_id(struct vms__thread *th)
{
    if (VMS_UNLIKELY(th->id_next == th->id_end)) {
        th->id_next = atomic_fetch_add_explicit(&next_id, ID_BLOCK, memory_order_relaxed) + 1;
        th->id_end = th->id_next + ID_BLOCK;
    }
    return th->id_next++;
}

/* async-signal-safe: a byte loop (thread_name_refresh calls it in the fault handler). */
static void copy_name(char *dst, size_t cap, const char *src)
{
    size_t i = 0;
    if (src)
        for (; i + 1 < cap && src[i]; i++) dst[i] = src[i];
    dst[i] = '\0';
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

/* The k-th place of a task's record on st: near its top (see TASK_PLACES). */
static struct vms__task *task_place(struct vms_stack *st, unsigned k)
{
    return (struct vms__task *)(void *)(vms__stack_top_of(st) - OUTER_FRAME - TASK_FOOTPRINT -
                                        (k % TASK_PLACES) * 64);
}

/* The place of the record of the next task on st, a live stack of the caller's: another
 * than its previous task's. */
static struct vms__task *task_new_place(struct vms_stack *st)
{
    return task_place(st, ++st->tasks);
}

/* Whether t is where some task's record on st would be. */
static bool task_is_place(struct vms_stack *st, const struct vms__task *t)
{
    for (unsigned k = 0; k < TASK_PLACES; k++)
        if (task_place(st, k) == t) return true;
    return false;
}

/* Fills in everything but fn and arg, and hands st to t; pre: st is a live stack and t
 * is task_new_place(st). The task's first frame starts right below its record. */
static void task_init(struct vms__task *t, int kind, struct vms_stack *st, const char *name)
{
    t->canary = (uintptr_t)t ^ task_canary_secret();
    t->parent = NULL;
    t->stack = st;
    atomic_init(&t->state, VMS_READY);
    t->kind = kind;
    t->fast_yield = kind == VMS__TASK_FIBER && !(vms__opt.flags & VMS_END_CHECK) &&
                    !have_cxx_runtime();
    t->id = task_new_id(&self_thread);
    atomic_init(&t->home, HOME_NONE);
    t->result = NULL;
    t->alt = NULL;
    t->eh = (struct vms__eh){ { 0, 0 } };
    copy_name(t->name, sizeof t->name, name);
    vms__track_create(&t->track, st->base, vms__stack_top_of(st));
    vms__ctx_make(&t->ctx, t, task_main, t);
    uintptr_t *outer = (uintptr_t *)(void *)(vms__stack_top_of(st) - 2 * sizeof(uintptr_t));
    outer[0] = 0;                 /* no caller frame */
    outer[1] = 0;                 /* no return address */
    vms__ctx_set_outer_frame(&t->ctx, outer);
    atomic_store_explicit(&st->owner, t, memory_order_release);
}

/* An atomic store for code that runs in (or is inlined into) NO_ASAN_FRAME functions.
 * GCC's atomic_store_explicit stores through a temporary whose scope ASan poisons; in a
 * frame ASan does not instrument, nothing unpoisons it when the frame returns, and the
 * thread-exit code that later runs on that part of the stack trips over it. GCC's
 * builtin needs no temporary (clang's macro never had one, and clang's builtin refuses
 * _Atomic objects). order: a memory_order, whose values are the builtins' __ATOMIC_*. */
#if defined(__clang__)
#define STORE_NO_TEMP(p, v, order) atomic_store_explicit(p, v, order)
#else
#define STORE_NO_TEMP(p, v, order) __atomic_store_n(p, v, order)
#endif

/* Ends t's hold on its stack (the tools forget the task; the stack has no owner) and
 * returns it, for the caller to free. vms_stack_free unpoisons the stack for ASan. */
static inline struct vms_stack *task_drop_stack(struct vms__task *t)
{
    struct vms_stack *st = t->stack;
    vms__track_destroy(&t->track, st->base, st->size);
    STORE_NO_TEMP(&st->owner, NULL, memory_order_relaxed);
    return st;
}

/* Gives the stack back, and with it the task's record, which lives on it: t is gone
 * afterwards. Pre: the task is not running and never will again. */
static void task_release_stack(struct vms__task *t)
{
    vms__stack_free(task_drop_stack(t));
}

static void thread_name_refresh(struct vms__task *t);

/* async-signal-safe: copies four fields of t's record. */
static void task_info_of(const struct vms__task *t, struct vms__task_info *out)
{
    out->kind = t->kind;
    out->name = t->name;
    out->id = t->id;
    out->stack = t->stack;
    out->entry = t->kind == VMS__TASK_FIBER ? (uintptr_t)t->fn.fiber : (uintptr_t)t->fn.thread;
}

/* The C library's cleanup chains after a kill. glibc keeps, per thread, the chain of
 * cancellation cleanup buffers that pthread_cleanup_push registers in C code built
 * without -fexceptions (the default), and an older chain of the same kind for its own
 * functions that wait (sem_wait, pthread_cond_wait, pthread_join): each buffer lives in
 * the frame that pushed it, and the thread points at the innermost. A killed task never
 * pops its own, so the thread would go on pointing into the dead stack, and the next
 * pthread_exit or cancellation on it (in a thread-specific-data destructor of a killed
 * vms thread, in the resumer of a killed fiber) would run the dead frames' handlers and
 * long-jump into them. After a kill both chains are cut back to their first buffer
 * outside the dead stack: the resumer's, as they were when it resumed the task.
 *
 * Through glibc's exported ABI only: __pthread_register_cancel saves the thread's head
 * and its old chain's in the buffer's private words (__pad[0] and __pad[1], glibc's
 * priv.data.prev and .cleanup since 2.3.3, which the buffers of binaries built since
 * then rely on) and __pthread_unregister_cancel puts __pad[0] back as the head;
 * _pthread_cleanup_push and _pthread_cleanup_pop do the same for the old chain. Older
 * frames sit higher on a stack, so a chain climbs: one that does not was overwritten by
 * the task itself and is not followed further. A buffer that a fiber left on the chain
 * by yielding inside a pthread_cleanup_push region (which docs/api.md rules out) is not
 * the kill's to repair. */
#ifdef __GLIBC__
void _pthread_cleanup_push(struct _pthread_cleanup_buffer *buf, void (*fn)(void *), void *arg);
void _pthread_cleanup_pop(struct _pthread_cleanup_buffer *buf, int execute);

static void cleanup_noop(void *arg)
{
    (void)arg;
}

/* Whether p lies in a killed task's frames: on its stack [lo, hi), or (ASan) in a frame
 * of its fake stack, where ASan keeps the locals of instrumented frames, a cleanup
 * buffer included. */
static bool in_dead_frames(const void *p, uintptr_t lo, uintptr_t hi,
                           const struct vms__track *tr)
{
    return ((uintptr_t)p >= lo && (uintptr_t)p < hi) || vms__track_in_fake_frame(tr, p);
}

/* The first link of a chain (next(p) gives the one after p) outside the killed task's
 * frames: NULL at the chain's end. Links on the stack climb; the fake stack's frames
 * have no order, and at most 4096 of them are followed. */
static void *chain_leave(void *p, uintptr_t lo, uintptr_t hi, const struct vms__track *tr,
                         void *(*next)(void *))
{
    for (unsigned fake = 0; in_dead_frames(p, lo, hi, tr);) {
        void *up = next(p);
        if ((uintptr_t)p >= lo && (uintptr_t)p < hi) {
            if ((uintptr_t)up >= lo && (uintptr_t)up <= (uintptr_t)p) break;   /* overwritten */
        } else if (++fake > 4096) {
            break;
        }
        p = up;
    }
    return p;
}

static void *cancel_buf_prev(void *p)
{
    return ((__pthread_unwind_buf_t *)p)->__pad[0];
}

static void *cleanup_buf_prev(void *p)
{
    return ((struct _pthread_cleanup_buffer *)p)->__prev;
}

static __attribute__((noinline, cold)) void cleanup_chains_cut(const struct vms_stack *st,
                                                               const struct vms__track *tr)
{
    uintptr_t lo = (uintptr_t)st->base, hi = (uintptr_t)vms__stack_top_of(st);
    __pthread_unwind_buf_t probe;
    __pthread_register_cancel(&probe);
    probe.__pad[0] = chain_leave(probe.__pad[0], lo, hi, tr, cancel_buf_prev);
    __pthread_unregister_cancel(&probe);
    void *old = probe.__pad[1];
    if (in_dead_frames(old, lo, hi, tr)) {
        struct _pthread_cleanup_buffer b;
        _pthread_cleanup_push(&b, cleanup_noop, NULL);
        b.__prev = chain_leave(old, lo, hi, tr, cleanup_buf_prev);
        _pthread_cleanup_pop(&b, 0);
    }
}
#else
static void cleanup_chains_cut(const struct vms_stack *st, const struct vms__track *tr)
{
    (void)st; (void)tr;
}
#endif

/* Publishing a task's state. Any thread may destroy a fiber that is not RUNNING, and
 * vms_fiber_state tells it so: a fiber's state leaves RUNNING only once its thread is
 * done with its record and stack (which the destroyer scrubs and hands to the next
 * owner), with a release store that pairs with the acquire loads of vms_fiber_state,
 * vms_fiber_oops and vms_fiber_destroy. A yield or an exit that goes straight to the
 * resumer stores it in the context switch, after its last access to the record
 * (vms__ctx_switch_leave, vms__ctx_jump_leave); one that runs task_back on the
 * resumer's stack first leaves it in t->leaving, and task_back stores it as its last
 * access to t. Stored before the switch, a destroyer could scrub the record while the
 * switch still saved registers into it and loaded the resumer's from it (a resumer
 * that resumed at address 0: tests/fiber.c, destroy_from_another_thread_...).
 *
 * Runs on the resumer's stack once t switched back to it for good (finished or
 * killed; vms__ctx_jump_call), or after any switch back when a tool has a hook there
 * (VMS__TRACK_RESUMER_HOOK; vms__ctx_switch_call): the work the resumer does before its
 * resume returns. Returns t's state, which becomes the resume's result. */
static int task_back(void *arg)
{
    struct vms__task *t = arg;
    struct vms__thread *th = &self_thread;
    vms__track_entered_back(&t->track);
    int state = t->leaving;
    /* A killed task never popped its cleanup buffers: the chains are cut back to ours
     * while t's stack is known, and before a pending cancellation (unblocked below)
     * could follow them. */
    if (state == VMS_KILLED) cleanup_chains_cut(t->stack, &t->track);
    if (state == VMS_DONE || state == VMS_KILLED) {
        /* Its depth is final: the debug layer records it (VMS_PAINT), from our stack.
         * A thread task's resumer runs on the same thread: its line names the thread
         * as an oops would. */
        if (t->kind == VMS__TASK_THREAD && (vms__opt.flags & VMS_PAINT)) thread_name_refresh(t);
        struct vms__task_info ti;
        task_info_of(t, &ti);
        vms__debug_task_end(&ti);
    }
    bool fiber = t->kind == VMS__TASK_FIBER;
    /* The last access to t: from here on another thread may destroy it. */
    atomic_store_explicit(&t->state, state, memory_order_release);
    if (VMS_UNLIKELY(th->kill_pending)) {
        /* Off the alternate stack now, with t's kill done: it can be enabled again, and
         * then the signals unblocked that vms__task_kill_current kept blocked until
         * here. A signal pending since the report runs now, on the resumer's stack:
         * after the cleanup chains were cut (a pending cancellation would follow them). */
        th->kill_pending = false;
        if (th->has_rearm) vms__guard_rearm(&th->rearm);   /* says so if it fails */
        th->has_rearm = false;
        pthread_sigmask(SIG_SETMASK, &th->kill_mask, NULL);
        /* The thread's cancellation state, which the fault handler disabled, back for a
         * fiber's resumer (a killed thread's end puts it back, vms__task_thread_run). A
         * request pending under asynchronous cancellation acts here, on the resumer's
         * stack: the type deferred meanwhile and put back last, so that the join says
         * PTHREAD_CANCELED (glibc's pthread_setcancelstate leaves the result as it was,
         * that of the thread that last had its descriptor). The tools are told first
         * that the thread may leave these frames by that unwind (vms__track_may_unwind). */
        if (fiber) {
            th->kill_cancel_set = false;
            vms__track_may_unwind();
            int type;
            pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, &type);
            pthread_setcancelstate(th->kill_cancel, NULL);
            pthread_setcanceltype(type, NULL);
        }
    }
    return state;
}

/* Leaves the current task t for good with state DONE or KILLED (th->cur already its
 * parent; the exit and the end-magic kill, not the fault handler's kill): back to its
 * resumer, straight to the resumer's caller when nothing needs to run in between. The
 * state is published last (above task_back). */
static _Noreturn void task_leave_for_good(struct vms__task *t, int state)
{
    struct vms__eh *eh = self_thread.eh;
    if (eh) *eh = t->eh;          /* what is left of t's (a killed task's) is leaked */
    t->leaving = state;
    vms__track_leave(&t->track, state != VMS_KILLED);
    if (VMS__TRACK_RESUMER_HOOK || VMS_UNLIKELY(vms__opt.flags & VMS_PAINT) ||
        state == VMS_KILLED)
        vms__ctx_jump_call(&t->back, task_back, t);
    vms__track_publish(&t->state);
    vms__ctx_jump_leave(&t->back, state, &t->state);
}

/* A task overwrote its stack's end magic (VMS_END_CHECK): its oops is filled in and
 * the report written; under VMS_ABORT the debug layer kills the process here. */
static void end_corrupted_report(struct vms__task *t);

/* The current task t overwrote its stack's end magic (VMS_END_CHECK): report it and
 * handle it like an overflow. Under VMS_ABORT the debug layer kills the process; under
 * VMS_KILL_TASK t is killed here: its resumer sees VMS_KILLED (or VMS_THREAD_KILLED).
 * Runs on t's stack, above the damaged bottom, which it never touches again. */
static __attribute__((noinline, cold)) void end_corrupted_report(struct vms__task *t)
{
    struct vms__task_info ti;
    if (t->kind == VMS__TASK_THREAD) thread_name_refresh(t);   /* named as in an oops */
    task_info_of(t, &ti);
    memset(&t->oops, 0, sizeof t->oops);
    t->oops.kind = VMS_OVERFLOW;
    t->oops.fault_addr = t->stack->base;
    t->oops.stack_base = t->stack->base;
    t->oops.stack_size = t->stack->size;
    t->oops.tid = (long)gettid();
    t->oops.name = t->name;
    vms__debug_end_corrupted(&ti, t->stack, &t->oops);
}

static _Noreturn __attribute__((noinline, cold)) void
task_end_corrupted(struct vms__thread *th, struct vms__task *t)
{
    end_corrupted_report(t);
    th->cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    task_leave_for_good(t, VMS_KILLED);
}

/* The end-magic check of the current task at a switch: with VMS_END_CHECK off (the
 * usual case) one predictable branch on the options, nothing else is read. The usual
 * resume and yield do not even test the option: its fibers take their slow paths. */
static inline void task_check_end(struct vms__thread *th, struct vms__task *t)
{
    if (VMS_UNLIKELY(vms__opt.flags & VMS_END_CHECK) && t &&
        vms__debug_end_check(t->stack) != 0)
        task_end_corrupted(th, t);
}

/* Frames on a thread's own stack below which a task runs are not instrumented by ASan:
 * when the task leaves by pthread_exit or cancellation, glibc long-jumps from the task's
 * stack straight to its thread start, and redzones ASan poisoned in those frames would
 * stay poisoned under the thread-exit code that runs there next. */
#define NO_ASAN_FRAME __attribute__((no_sanitize_address))

#if defined(VMSTACK_ASAN) || defined(VMSTACK_TSAN)
/* Sanitizer builds: the bytes of stack a switch keeps free below its caller for the
 * tools' fiber calls (src/track.h: __sanitizer_start_switch_fiber, TSan's
 * __tsan_switch_to_fiber, the dynamic loader's resolver binding either at its first
 * call) and, on a resumer's stack, for task_back's finish of ASan's switch. */
#define TASK_SWITCH_ROOM (8 * 1024)

/* Sanitizer builds only, before a switch away from t changes anything (th->cur, t's
 * state, the tools' state): t, the running task, with less than TASK_SWITCH_ROOM bytes
 * of stack left is made to fault now, at its guard's top byte, and is killed as
 * overflowed (or the process aborts, by the policy) as at any overflow of its stack.
 * The tools' calls run on t's stack after th->cur names the task switched to, and
 * inside them nothing can be undone: ASan keeps no public trace of a switch it has
 * started (a second start dies with "starting fiber switch while in fiber switch", a
 * finish without one with "finishing a fiber switch that has not started"), and TSan
 * takes its own locks in its switch, which the fault handler's instrumented code then
 * waits for. An overflow there was blamed on a stack that is "not a vmstack task's" and
 * aborted the process (ASan), or hung it (TSan). The load is not instrumented (asm); the direct backend has no
 * guard to make fault. */
static inline __attribute__((always_inline)) void task_switch_room(const struct vms__task *t)
{
    const char *base = t->stack->base;
    if (VMS_UNLIKELY((size_t)(vms__current_sp() - base) < TASK_SWITCH_ROOM)) {
#if defined(VMSTACK_VMAP) && defined(__x86_64__)
        int c;
        __asm__ volatile("movzbl (%1), %0" : "=r"(c) : "r"(base - 1) : "memory");
#elif defined(VMSTACK_VMAP) && defined(__aarch64__)
        int c;
        __asm__ volatile("ldrb %w0, [%1]" : "=r"(c) : "r"(base - 1) : "memory");
#endif
    }
}
#endif

/* The bookkeeping of a switch from the calling context (th->cur, or the thread's own
 * stack) into t; the caller switches right after, into t->ctx saving into t->back.
 * Pre: t is READY or SUSPENDED and belongs to th. Always inlined, also at -O0: TSan
 * counts function entries and exits per fiber, and a function of ours returning between
 * the tool's fiber switch (vms__track_enter) and the real one would be counted on the
 * wrong fiber, one more on the resume side than on the yield side every round. */
static inline __attribute__((always_inline)) void task_switch_in(struct vms__thread *th,
                                                                 struct vms__task *t)
{
    struct vms__task *cur = th->cur;
#if defined(VMSTACK_ASAN) || defined(VMSTACK_TSAN)
    if (cur) task_switch_room(cur);
#endif
    t->parent = cur;
    STORE_NO_TEMP(&t->state, VMS_RUNNING, memory_order_relaxed);
    th->cur = t;
    /* The fault handler reads th->cur on this thread: the store must be done before
     * the switch starts pushing onto t's stack. A compiler barrier is enough (the
     * handler runs on this thread); no fence instruction is needed. */
    atomic_signal_fence(memory_order_seq_cst);
    vms__track_enter(&t->track, t->stack->base, t->stack->size);
}

_Noreturn void vms__task_exit(void *arg)
{
    struct vms__task *t = arg;
    struct vms__thread *th = &self_thread;
    task_check_end(th, t);
    th->cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    task_leave_for_good(t, VMS_DONE);
}

/* ---- for the fault handler ---------------------------------------------------------- */

/* The kernel name a new thread inherits from its creator: the creating thread reads its
 * own once (one system call in its life, none per thread it creates) and each thread
 * task keeps a copy. A creator renamed after its first vms_thread_create is not seen. */
static VMS_TLS char creator_name[16];
static VMS_TLS bool creator_name_read;

static void note_inherited_name(struct vms__task *t)
{
    if (!creator_name_read) {
        if (prctl(PR_GET_NAME, (unsigned long)creator_name, 0, 0, 0) != 0)
            creator_name[0] = '\0';
        creator_name_read = true;
    }
    memcpy(t->inherited, creator_name, sizeof t->inherited);
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
    for (int i = 0; i < 16 && (now[i] || t->inherited[i]); i++)
        if (now[i] != t->inherited[i]) { same = 0; break; }
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

/* async-signal-safe: for the fault handler, when the stack st that it blames for an
 * overflow is not the running task's. A fiber of this thread caught between making its
 * resumer current and its switch away (vms_fiber_yield, or its end: a signal handler that
 * ran there on the fiber's stack overran it, or the switch's own call did in an
 * unoptimized build) is made current again, as it was a moment before, so that it is
 * killed rather than the process. Its record is the one on st (the last placed there),
 * still RUNNING, its resumer the current task, its home this thread. Not in a process
 * with a C++ runtime: its yield has swapped the thread's exception record by then.
 * True when it was made current. */
bool vms__task_reclaim_leaving(struct vms_stack *st)
{
    struct vms__thread *th = &self_thread;
    if (th->eh || !th->token) return false;
    struct vms__task *t = task_place(st, st->tasks);
    if (!task_record_ok(t) || t->stack != st || t->kind != VMS__TASK_FIBER ||
        t->parent != th->cur ||
        atomic_load_explicit(&t->state, memory_order_relaxed) != VMS_RUNNING ||
        (atomic_load_explicit(&t->home, memory_order_relaxed) & ~HOME_CHECKED) != th->token)
        return false;
    th->cur = t;
    atomic_signal_fence(memory_order_seq_cst);
    return true;
}

/* async-signal-safe: runs on the alternate signal stack. The dying stack is never
 * touched again: we jump straight to the resumer's saved context, whose stack is
 * intact (it is another task's or the thread's own). Not instrumented by ASan: the jump
 * is a noreturn call (VMS_NO_ASAN_NORETURN). */
VMS_NO_ASAN_NORETURN
_Noreturn void vms__task_kill_current(const vms_oops *oops, const sigset_t *mask,
                                      const stack_t *rearm, int cancel)
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
    t->leaving = VMS_KILLED;   /* published by task_back, on the resumer's stack */
    /* Its resumer's C++ exception state back (two stores through a pointer read at the
     * thread's first switch); the exceptions the task was handling or throwing leak. */
    if (th->eh) *th->eh = t->eh;
    th->cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    /* Every signal stays blocked until the resumer's stack is reached (task_back puts
     * the mask back there): a handler that ran here, on the alternate stack, between
     * the mask and the jump, and left by longjmp (a timeout, say) would skip the
     * resumer's bookkeeping. The kernel blocked the fault's signal (and sa_mask) for the
     * handler; since we never return through sigreturn, the mask of the interrupted code
     * (which the fault handler found) is put back by us, so that the next overflow on
     * this thread is caught too. An SS_AUTODISARM alternate stack (the program's, which
     * vmstack keeps) was disabled by the kernel for this handler, and sigreturn would
     * have enabled it again; left disabled, the next overflow on this thread could not
     * be delivered and would kill the process unreported. It too is put back there:
     * enabled while we still run on it, a signal would start its frame at its top, over
     * ours. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, mask ? NULL : &th->kill_mask);
    if (mask) th->kill_mask = *mask;
    th->has_rearm = rearm != NULL;
    if (rearm) th->rearm = *rearm;
    th->kill_cancel = cancel;
    th->kill_cancel_set = true;
    th->kill_pending = true;
    /* The tools learn of the task's end last, right before the jump: under ASan with
     * detect_stack_use_after_return, the task's fake stack, which it frees, holds the
     * locals of the fault handler's instrumented frames, and anything read from there
     * afterwards is a read of unmapped memory (the handler died of a SEGV in sigfillset
     * while this function and handle_fault were still instrumented, their locals `all`
     * and mask on that fake stack). All signals are blocked by now. Not dying
     * for the tools: the fake stack stays until the task is destroyed, so that task_back
     * can tell the cleanup buffers in its frames. */
    vms__track_leave(&t->track, false);
    /* The resumer's bookkeeping (task_back) runs on the resumer's stack, as ordinary
     * code: we are off the alternate signal stack from here on. */
    vms__ctx_jump_call(&t->back, task_back, t);
}

/* ---- thread exit ------------------------------------------------------------------- */

static pthread_key_t orphan_key;
static pthread_once_t orphan_once = PTHREAD_ONCE_INIT;
static int orphan_key_err;

/* Thread exit after pthread_exit or cancellation inside a task: glibc unwound the
 * task's stack and long-jumped back to its own thread start, so nothing runs on the
 * vmstack stack any more and it can be freed. p is a vms thread's task, or the thread's
 * own vms__thread for a thread that resumed fibers on its own stack (fiber_thread_hook).
 * When the unwinding began in a fiber (at any depth), every fiber between it and the
 * thread's body or own stack was unwound too: they never run again, so they become
 * DONE, which lets vms_fiber_destroy free them (left RUNNING, they could never be
 * destroyed and their stacks would leak). With VMS_END_CHECK each unwound task's end
 * magic is checked, as at any task's end: a fiber that overwrote it is reported and
 * becomes KILLED (a thread's body is reported: its join already has pthread_exit's
 * value). Not instrumented by ASan: vms__track_abandoned frees the fake stack that an
 * instrumented frame of ours would hold its locals in (the unwound task's). */
NO_ASAN_FRAME static void orphan_destructor(void *p)
{
    struct vms__thread *th = &self_thread;
    struct vms__task *t = p == (void *)th ? NULL : p;
    /* The tools first, innermost task first as the unwinding left them: back on the
     * thread's own stack, whose frames the unwind left poisoned are cleared
     * (vms__track_abandoned). Only then the end-magic reports, instrumented code that
     * runs over those frames: before, an unwound fiber's report tripped on their stale
     * redzones (debug_tasks.c, end_corruption_caught_at_pthread_exit under ASan). */
    for (struct vms__task *f = th->cur; f && f != t; f = f->parent)
        vms__track_abandoned(&f->track, !f->parent);
    if (t) vms__track_abandoned(&t->track, true);
    for (struct vms__task *f = th->cur; f && f != t;) {
        struct vms__task *parent = f->parent;   /* read first: once DONE, f may be freed */
        int end = VMS_DONE;
        if (VMS_UNLIKELY(vms__debug_end_check(f->stack) != 0)) {
            end_corrupted_report(f);
            end = VMS_KILLED;
        }
        STORE_NO_TEMP(&f->state, end, memory_order_release);
        f = parent;
    }
    th->cur = NULL;
    if (!t) return;
    if (VMS_UNLIKELY(vms__debug_end_check(t->stack) != 0)) end_corrupted_report(t);
    vms__stack_unhold(t->stack);
    task_release_stack(t);
}

/* Without the key (EAGAIN: the program took every key), vms_thread_create fails: said
 * once here, since its bare EAGAIN reads as a thread limit. */
static void orphan_key_create(void)
{
    orphan_key_err = pthread_key_create(&orphan_key, orphan_destructor);
    if (orphan_key_err)
        vms__log_warn("no thread-exit hook for tasks (pthread_key_create: %s): "
                      "vms_thread_create fails with EAGAIN, and fibers that pthread_exit or "
                      "cancellation unwinds cannot be destroyed; leave a thread-specific-data "
                      "key for vmstack's first thread or fiber", strerror(orphan_key_err));
}

/* At a thread's first resume of a fiber: the thread-exit hook above, for a thread that
 * runs fibers on its own stack (a vms thread's body has its own from its start). No
 * system call. Without the key, unwound fibers stay RUNNING, as before. Should
 * pthread_setspecific fail (ENOMEM), the first resume of the thread's next fiber tries
 * again: meanwhile a fiber that pthread_exit or cancellation unwinds stays RUNNING. */
static void fiber_thread_hook(struct vms__thread *th)
{
    pthread_once(&orphan_once, orphan_key_create);
    th->exit_hooked = orphan_key_err || pthread_getspecific(orphan_key) ||
                      vms__os_setspecific(orphan_key, th) == 0;
}

VMS__ROOM_TABLE(fiber);   /* the bounds of this file's room probes (internal.h) */

/* ---- fibers ------------------------------------------------------------------------- */

/* First thing in the calls below that take locks or allocate, and only there (the usual
 * resume and the yield do neither): the running task with too little room left for them
 * is killed before they start (internal.h, VMS__ROOM_PROBE). Their callers hold no lock
 * of vmstack's. */
#define TASK_ROOM_PROBE()                                                          \
    do {                                                                               \
        const struct vms__task *room_t_ = self_thread.cur;                             \
        VMS__ROOM_PROBE(room_t_ && room_t_->stack ? room_t_->stack->base : NULL); \
    } while (0)

/* The same, for stack.c's entries, which follow the call with VMS__ROOM_MARK. */
VMS_NOCLONE void vms__task_room_probe(void)
{
    TASK_ROOM_PROBE();
}

VMS_NOCLONE vms_fiber *
vms_fiber_create(void (*fn)(void *), void *arg, const vms_fiber_attr *attr)
{
    TASK_ROOM_PROBE();
    if (!fn) {
        errno = EINVAL;
        return NULL;
    }
    struct vms_stack *st = vms__stack_alloc(attr ? attr->stack_size : 0);
    if (!st) return NULL;                      /* errno from vms__stack_alloc */
    struct vms__task *t = task_new_place(st);
    t->fn.fiber = fn;
    t->arg = arg;
    task_init(t, VMS__TASK_FIBER, st, attr ? attr->name : NULL);
    return (vms_fiber *)t;
}

/* A tail call into t: our caller is saved in t->back, and the fiber's yield returns
 * straight to it with VMS_SUSPENDED (exit and kill with VMS_DONE or VMS_KILLED). The
 * compilers make `return vms__ctx_switch(...)` a jump from -O1 on; without it only speed
 * suffers. */
#define TASK_SWITCH_TO(t) vms__ctx_switch(&(t)->back, &(t)->ctx, 0)

/* The resume that the usual one's home compare sends here: a fiber's first resume
 * (makes th its home), a fiber of another thread (-EINVAL), and with VMS_END_CHECK every
 * resume, which checks the end magic of the task switched away from (a task resuming
 * another switches away from itself). Out of line, so that the usual resume saves no
 * register. */
static VMS_NOCLONE int vms__fiber_resume_slow(struct vms__thread *th,
                                                            struct vms__task *t,
                                                            unsigned long home)
{
    TASK_ROOM_PROBE();
    /* A thread's record READY to start (its home not set yet) comes here, never to the
     * usual path: it would run the thread's body as a fiber. */
    if (VMS_UNLIKELY(t->kind != VMS__TASK_FIBER)) task_not_a_fiber(t, "vms_fiber_resume");
    if (home == HOME_NONE) {
        if (!th->guard_ready) {
            /* Without an alternate signal stack an overflow could not be handled and
             * would kill the process: refuse rather than run unprotected. */
            int e = vms__guard_thread_init();
            if (e) return e;
            th->guard_ready = true;
            thread_eh_init(th);
        }
        if (VMS_UNLIKELY(!th->exit_hooked)) fiber_thread_hook(th);
        unsigned long mine = thread_token(th);
        if (vms__opt.flags & VMS_END_CHECK) mine |= HOME_CHECKED;
        if (th->eh) mine |= HOME_EH;
        if (!atomic_compare_exchange_strong_explicit(&t->home, &home, mine,
                                                     memory_order_acq_rel,
                                                     memory_order_acquire))
            return -EINVAL;                    /* another thread claimed it first */
    } else if ((home & ~HOME_EH) != (th->token | HOME_CHECKED)) {
        return -EINVAL;                        /* it belongs to another thread */
    }
    /* VMS_END_CHECK: the task we leave (a task resuming another) is checked. */
    task_check_end(th, th->cur);
    task_switch_in(th, t);
    eh_swap(th, t);
    return TASK_SWITCH_TO(t);
}

/* A fiber handle must be aligned, and in a stack (FIBER_CHECK_PLACE), before its record
 * is read at all (a stack handle, say, is not aligned: stack.c); such a pointer is
 * reported as the foreign pointer it is. */
static _Noreturn __attribute__((noinline)) void fiber_foreign(const void *f, const char *call)
{
    vms__fatal("%s: %p is not a fiber that vmstack created (a foreign or corrupted "
               "pointer)", call, f);
}

#define FIBER_CHECK_ALIGNED(f, call)                                                   \
    do {                                                                               \
        if (VMS_UNLIKELY((uintptr_t)(f) & (_Alignof(struct vms_fiber) - 1)))           \
            fiber_foreign((const void *)(f), call);                                    \
    } while (0)

/* A fiber's record is always in a stack slot's usable bytes (the top of its stack),
 * which stay mapped and readable for good, freed or not: anything else is no fiber, and
 * is reported as such before a byte of it is read. Read first, a pointer to unmapped
 * memory ((vms_fiber *)4096, a stale pointer into a library since unloaded) died by an
 * unreported SIGSEGV, and one into a guard or a slot not yet opened by a "wild guard
 * access" report. The lookup is the fault handler's (lock-free, async-signal-safe;
 * O(1) with the vmap backend, a scan of the heap blocks with the direct one).
 * vms_fiber_resume does not make it, for the switch's cost (docs/api.md). The
 * record's canary is its lowest word, at an aligned place in the stack: readable. */
#define FIBER_CHECK_PLACE(f, call)                                                     \
    do {                                                                               \
        struct vms__where fiber_w_;                                                    \
        if (VMS_UNLIKELY(vms__arena_where((const void *)(f), &fiber_w_) !=             \
                         VMS__WHERE_STACK))                                            \
            fiber_foreign((const void *)(f), call);                                    \
    } while (0)

int vms_fiber_resume(vms_fiber *f)
{
    if (VMS_UNLIKELY(!f)) return -EINVAL;
#ifdef VMSTACK_UBSAN
    /* Elsewhere a misaligned pointer reads as a record with a wrong canary (the slow
     * paths below report it); the test costs the switch a cycle, so only where the
     * misaligned read itself is an error. */
    FIBER_CHECK_ALIGNED(f, "vms_fiber_resume");
#endif
    struct vms__task *t = &f->task;
    struct vms__thread *th = &self_thread;
    int s = atomic_load_explicit(&t->state, memory_order_relaxed);
    if (VMS_UNLIKELY(s != VMS_READY && s != VMS_SUSPENDED)) return resume_bad_state(t);
    if (VMS_UNLIKELY(!task_record_ok(t))) return resume_bad_record(t);
    unsigned long home = atomic_load_explicit(&t->home, memory_order_acquire);
    if (VMS_UNLIKELY(home != th->token)) {
        if (home != (th->token | HOME_EH)) return vms__fiber_resume_slow(th, t, home);
        /* A program with a C++ runtime: the fiber's exception record goes in with it. */
        task_switch_in(th, t);
        eh_swap(th, t);
        return TASK_SWITCH_TO(t);
    }
    task_switch_in(th, t);
    return TASK_SWITCH_TO(t);
}

void vms_fiber_yield(void)
{
    struct vms__thread *th = &self_thread;
    struct vms__task *t = th->cur;
#if defined(VMSTACK_ASAN) || defined(VMSTACK_TSAN)
    if (t && t->kind == VMS__TASK_FIBER) task_switch_room(t);
#endif
    if (VMS_UNLIKELY(!t || !t->fast_yield)) {
        if (!t || t->kind != VMS__TASK_FIBER) return;   /* not in a fiber: a no-op */
        task_check_end(th, t);
        eh_swap(th, t);   /* its own exception record back into t, the resumer's out */
    }
    th->cur = t->parent;
    atomic_signal_fence(memory_order_seq_cst);
    vms__track_leave(&t->track, false);
    /* The resumer's vms_fiber_resume returns the value we pass: VMS_SUSPENDED, also
     * published as t's state once the switch is done with t (above task_back). */
    if (VMS__TRACK_RESUMER_HOOK) {
        t->leaving = VMS_SUSPENDED;
        vms__ctx_switch_call(&t->ctx, &t->back, task_back, t);
    } else {
        vms__track_publish(&t->state);
        vms__ctx_switch_leave(&t->ctx, &t->back, VMS_SUSPENDED, &t->state);
    }
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
    FIBER_CHECK_ALIGNED(f, "vms_fiber_state");
    FIBER_CHECK_PLACE(f, "vms_fiber_state");
    task_check_record(&f->task, "vms_fiber_state");
    return atomic_load_explicit(&f->task.state, memory_order_acquire);
}

const struct vms_oops *vms_fiber_oops(const vms_fiber *f)
{
    if (!f) return NULL;
    FIBER_CHECK_ALIGNED(f, "vms_fiber_oops");
    FIBER_CHECK_PLACE(f, "vms_fiber_oops");
    task_check_record(&f->task, "vms_fiber_oops");
    if (atomic_load_explicit(&f->task.state, memory_order_acquire) != VMS_KILLED) return NULL;
    return &f->task.oops;
}

const vms_stack *vms_fiber_stack(const vms_fiber *f)
{
    if (!f) {
        errno = EINVAL;
        return NULL;
    }
    FIBER_CHECK_ALIGNED(f, "vms_fiber_stack");
    FIBER_CHECK_PLACE(f, "vms_fiber_stack");
    task_check_record(&f->task, "vms_fiber_stack");
    return vms__stack_handle(f->task.stack);
}

VMS_NOCLONE void vms_fiber_destroy(vms_fiber *f)
{
    TASK_ROOM_PROBE();
    if (!f) return;
    FIBER_CHECK_ALIGNED(f, "vms_fiber_destroy");
    FIBER_CHECK_PLACE(f, "vms_fiber_destroy");
    struct vms__task *t = &f->task;
    task_check_record(t, "vms_fiber_destroy");
    if (atomic_load_explicit(&t->state, memory_order_acquire) == VMS_RUNNING) {
        unsigned long home = atomic_load_explicit(&t->home, memory_order_relaxed);
        if (!home_gone(home)) {
            /* Its stack is in use by the caller (or by a fiber that resumed the caller),
             * or by another thread: freeing it now would be a use-after-free. */
            char name[VMS__CLEAN_NAME];
            vms__clean_name(t->name, name);
            bool here = self_thread.token && HOME_TOKEN(home) == self_thread.token;
            vms__log_error("vms_fiber_destroy: fiber %lu \"%s\" is running %s; nothing was "
                           "freed", t->id, name,
                           here ? "(the caller or one of its resumers)" : "on another thread");
            errno = EBUSY;
            return;
        }
        vms__track_forsaken(&t->track);        /* it ran on a thread a fork left behind */
    }
    /* Read before the record goes with the stack. */
    bool killed = atomic_load_explicit(&t->state, memory_order_acquire) == VMS_KILLED;
    /* A later resume or destroy through f finds it destroyed, also with VMS_NO_SCRUB
     * (which leaves the record as it was) while the stack waits in the cache. */
    t->canary = 0;
    task_release_stack(t);                     /* f lived on the stack: gone now */
    /* A killed fiber filled its stack to the guard: its pages go back now, not with
     * this thread's next batch of 32 frees (up to 8 MiB at the default size). A kill
     * costs a report; this adds one system call to it. */
    if (killed) vms__cache_flush();
}

/* ---- threads (thread.c) ------------------------------------------------------------- */

struct vms__task *vms__task_thread_new(void *(*fn)(void *), void *arg, size_t stack_size)
{
    pthread_once(&orphan_once, orphan_key_create);
    if (orphan_key_err) {
        errno = orphan_key_err;
        return NULL;
    }
    struct vms_stack *st = vms__stack_alloc(stack_size);
    if (!st) return NULL;
    struct vms__task *t = task_new_place(st);
    t->fn.thread = fn;
    t->arg = arg;
    task_init(t, VMS__TASK_THREAD, st, "");
    note_inherited_name(t);
    /* Its alternate signal stack, taken here (from the pool of those, or new; never by
     * reaping, which vms_thread_create does after the thread has started): a thread
     * that had to reap for one would also scrub at its exit, a system call. Without
     * one (ENOMEM), the thread tries again itself. */
    t->alt = vms__stack_alloc_internal(vms__guard_alt_size(), false);
    return t;
}

/* The body stack of a vms thread that the fork which made this process left behind
 * (stack.c frees what such threads held, in the child, at its first reap): the task
 * runs nowhere and has no handle a program could use, so it goes with its stack, as
 * the C library reuses the stacks of the parent's other threads in the child. */
static void thread_task_forsaken(struct vms_stack *st)
{
    struct vms__task *t = atomic_load_explicit(&st->owner, memory_order_relaxed);
    vms__track_forsaken(&t->track);
    task_release_stack(t);
}

void vms__task_thread_discard(struct vms__task *t)
{
    if (t->alt) vms__stack_free(t->alt);
    task_release_stack(t);
}

void (*vms__task_thread_end_hook)(void);

NO_ASAN_FRAME void *vms__task_thread_run(struct vms__task *t)
{
    struct vms__thread *th = &self_thread;
    struct vms_stack *alt = t->alt;
    t->alt = NULL;
    if (th->guard_ready) {
        if (alt) vms__stack_free(alt);
    } else {
        /* Without an alternate stack the body runs all the same (it was created, and
         * its creator has returned); vms__guard_thread_init said so, once. */
        if (vms__guard_task_thread_init(alt) == 0) th->guard_ready = true;
    }
    STORE_NO_TEMP(&t->home, thread_token(th), memory_order_relaxed);
    /* The hook that gives the stack back when pthread_exit or cancellation unwinds the
     * body. Should pthread_setspecific fail (ENOMEM), the body runs all the same (its
     * creator was told it started), and such an end leaks its stack, said here: not held
     * then, so that no record of this thread's outlives it in the holders' list. */
    int hook_err = vms__os_setspecific(orphan_key, t);
    th->exit_hooked = true;   /* no retry with fiber_thread_hook's value, which frees no
                               * body stack */
    if (VMS_UNLIKELY(hook_err))
        vms__log_warn("thread %ld has no thread-exit hook for its vmstack stack "
                      "(pthread_setspecific: %s): if its body ends by pthread_exit or "
                      "cancellation, the stack is never freed", (long)gettid(),
                      strerror(hook_err));
    /* Held by this thread from here until its end: a fork child, which does not have
     * this thread, frees them (thread_task_forsaken). */
    vms__stack_hold(vms__guard_thread_alt(), hook_err ? NULL : t->stack, thread_task_forsaken);
    thread_eh_init(th);
    task_switch_in(th, t);
    eh_swap(th, t);
    /* Only vms__task_exit and the kill path switch back (a thread task never yields),
     * with the task's final state. */
    int s = vms__ctx_switch(&t->back, &t->ctx, 0);   /* not a tail call: we go on */
    /* What follows runs whole: the body may have left asynchronous cancellation on (and
     * a kill keeps it so), and a cancellation acting in here would unwind out of it with
     * the stack in nobody's hands (the orphan hook off, the stack not yet buried) or
     * the graves' lock held: a stack lost, or every later thread end and reap hung.
     * A cancellation that arrives meanwhile waits: under asynchronous cancellation it
     * acts when the type is put back, at the end, as on a pthread cancelled just after
     * its start routine returned (the type last: glibc's pthread_setcanceltype makes the
     * join say PTHREAD_CANCELED then, its pthread_setcancelstate leaves NULL there). One
     * that arrived before this line finds the orphan hook, which frees the stack. */
    int cancel_state, cancel_type;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    pthread_setcanceltype(PTHREAD_CANCEL_DEFERRED, &cancel_type);
    if (th->kill_cancel_set) {
        /* Killed by the fault handler, which disabled cancellation: the body's state. */
        cancel_state = th->kill_cancel;
        th->kill_cancel_set = false;
    }
    /* Never fails: storing NULL allocates nothing. */
    (void)pthread_setspecific(orphan_key, NULL);
    if (vms__task_thread_end_hook) vms__task_thread_end_hook();
    void *result = s == VMS_KILLED ? VMS_THREAD_KILLED : t->result;
    /* Freed once the thread has ended, by whoever reaps it: freed here, it would be
     * scrubbed at this thread's exit, a system call per thread. */
    struct vms_stack *st = task_drop_stack(t);
    /* A killed thread filled its stack to the guard, and the reaper's batch may be far
     * off: its pages go back now, one system call added to a kill (t, in the top page,
     * is not read again). */
    if (s == VMS_KILLED) vms__cache_drop_pages(st);
    if (vms__stack_free_at_exit(st) != 0) vms__stack_free(st);
    pthread_setcancelstate(cancel_state, NULL);
    pthread_setcanceltype(cancel_type, NULL);
    return result;
}

/* ---- the current task --------------------------------------------------------------- */

/* The vmstack stack that holds sp, or NULL. Always inlined, also at -O0: called near
 * the end of a stack, vms_stack_remaining may overflow inside it, and the report kills
 * the task alone only when the outermost vmstack frame above the program's code is a
 * lock-free entry (oops.c, lock_free_entry). As a frame of its own, without the vms_
 * prefix, this function read as the program's code under vms__stack_top_of, which then
 * counted as that entry: "vmstack itself may hold one of its locks", and the process
 * was aborted (fiber_kill.overflow_inside_vms_stack_remaining_kills_the_fiber, clang
 * Debug builds). */
static inline __attribute__((always_inline)) const struct vms_stack *
stack_holding(const char *sp)
{
    struct vms__task *t = self_thread.cur;
    if (t && t->stack && sp >= t->stack->base && sp <= vms__stack_top_of(t->stack))
        return t->stack;
    /* Not a task's stack: maybe a vmstack stack that another coroutine library runs. */
    struct vms__where w;
    if (vms__arena_where(sp, &w) == VMS__WHERE_STACK && w.st) return w.st;
    return NULL;
}

size_t vms_stack_remaining(void)
{
    char *sp = vms__current_sp();
    const struct vms_stack *st = stack_holding(sp);
    if (!st) return SIZE_MAX;
    /* The end magic (VMS_END_CHECK) at the bottom is not the task's to use. */
    size_t used_below = (size_t)(sp - st->base), reserve = vms__debug_end_reserve();
    return used_below > reserve ? used_below - reserve : 0;
}

const vms_stack *vms_stack_self(void)
{
    return vms__stack_handle(stack_holding(vms__current_sp()));
}
