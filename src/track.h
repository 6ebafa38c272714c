/*
 * track.h - tells the dynamic-analysis tools about every task switch: AddressSanitizer
 * (VMSTACK_ASAN: __sanitizer_start/finish_switch_fiber), ThreadSanitizer (VMSTACK_TSAN:
 * the __tsan_*_fiber API) and Valgrind (VMSTACK_VALGRIND: VALGRIND_STACK_REGISTER).
 *
 * Layer: task (used by fiber.c; stack.c uses vms__track_stack_release on every free). Every function compiles to nothing when its tool
 * is off, so the plain build pays nothing. The protocol, for one task t:
 *   create:   vms__track_create(t, lo, hi)             once, before the first switch in
 *   resumer:  vms__track_enter(t, lo, size) -> switch -> vms__track_entered_back(t)
 *             (the task layer runs entered_back on the resumer's stack, through
 *             vms__ctx_switch_call, only when VMS__TRACK_RESUMER_HOOK is 1)
 *   in task:  vms__track_arrived(t) right after each switch into t (first entry included)
 *   leaving:  vms__track_leave(t, dying) right before switching out of t, then
 *             vms__track_publish(&t->state) when the switch itself stores the state
 *   killed:   vms__track_may_unwind() on the resumer's stack before the cancellation
 *             state comes back (a pending asynchronous request may unwind from there)
 *   gone:     vms__track_abandoned(t, own) when a thread left t by unwinding, not a
 *             switch (own: t's resumer ran on the thread's own stack);
 *             vms__track_forsaken(t) when t ran on a thread that a fork left behind
 *   destroy:  vms__track_destroy(t, lo, size), vms__track_stack_release(lo, size)
 * enter and leave run on the stack being left, after the thread's current task changed:
 * in the ASan and TSan builds the task layer first makes sure that stack has room for
 * them (task_switch_room, src/fiber.c), since an overflow inside them cannot be undone.
 * "dying" tells ASan the task finished, so its fake stack frames are released instead
 * of kept for a resume that will never come. A killed task's are kept until its destroy
 * (vms__track_destroy frees them): the kill's bookkeeping looks for glibc's cleanup
 * buffers in its frames (vms__track_in_fake_frame).
 */
#ifndef VMSTACK_TRACK_H
#define VMSTACK_TRACK_H

#include <stdbool.h>
#include <stddef.h>

#if defined(VMSTACK_ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(VMSTACK_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(VMSTACK_VALGRIND)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#endif

/* 1 when a tool needs vms__track_entered_back after every switch back to a resumer
 * (ASan); the task layer then routes those switches through the resumer's stack. */
#if defined(VMSTACK_ASAN)
#define VMS__TRACK_RESUMER_HOOK 1
#else
#define VMS__TRACK_RESUMER_HOOK 0
#endif

/* The functions that switch TSan's fiber (enter, leave) are always inlined, also at -O0:
 * TSan counts function entries and exits on the current fiber's shadow stack, and a
 * function of ours that entered on one fiber and returned on the other would pop the
 * new fiber's shadow stack below its start (a SIGSEGV in __tsan_func_exit or the next
 * __tsan_func_entry), or leave one entry behind on the old one at every switch. */
#define VMS__TRACK_SWITCH static inline __attribute__((always_inline))

/* Per-task tool state: only the built-in tools' members, so that the task record (at
 * the top of every task's stack) carries none in the plain build. */
struct vms__track {
#if defined(VMSTACK_ASAN)
    void *asan_fake;            /* ASan: the task's fake stack while it is switched out */
    void *asan_back_fake;       /* ASan: the resumer's fake stack while the task runs */
    const void *back_bottom;    /* ASan: the resumer's stack, learned on arrival */
    size_t back_size;
#endif
#if defined(VMSTACK_TSAN)
    void *tsan_fiber;           /* TSan: the task's fiber */
    void *tsan_back;            /* TSan: the resumer's fiber */
#endif
#if defined(VMSTACK_VALGRIND)
    unsigned vg_id;             /* Valgrind: the registered stack's id */
#endif
#if !defined(VMSTACK_ASAN) && !defined(VMSTACK_TSAN) && !defined(VMSTACK_VALGRIND)
    char none;                  /* no tool (ISO C has no empty structure) */
#endif
};

/* Every task gets a TSan fiber of its own, a thread's body too: a task killed from
 * the fault handler never returns through TSan's signal handler, and the state that
 * handler leaves behind (TSan believes it is still inside a signal handler, with the
 * dead task's frames on its shadow stack) must die with the task's fiber rather than
 * stay with its thread (TSan would then report every malloc the thread makes until it
 * ends as a "signal-unsafe call inside of a signal"). The price: TSan refuses
 * pthread_exit from a fiber (its interceptor CHECKs that the thread runs on its own
 * state), so a vms thread's body cannot call pthread_exit under TSan. */
static inline void vms__track_create(struct vms__track *tr, void *lo, void *hi)
{
    (void)tr; (void)lo; (void)hi;
#if defined(VMSTACK_ASAN)
    tr->asan_fake = NULL;
    tr->asan_back_fake = NULL;
    tr->back_bottom = NULL;
    tr->back_size = 0;
#endif
#if defined(VMSTACK_TSAN)
    tr->tsan_back = NULL;
    tr->tsan_fiber = __tsan_create_fiber(0);
#endif
#if defined(VMSTACK_VALGRIND)
    /* Valgrind wants the lowest and the highest addressable byte: hi is one past. */
    tr->vg_id = VALGRIND_STACK_REGISTER(lo, (char *)hi - 1);
#endif
}

static inline void vms__track_destroy(struct vms__track *tr, const void *lo, size_t size)
{
    (void)tr; (void)lo; (void)size;
#if defined(VMSTACK_ASAN)
    /* A fiber destroyed while suspended left its fake stack (ASan's frames for its
     * locals under detect_stack_use_after_return, about 3 MiB of address space and a
     * few pages each) in asan_fake, where no resume will take it up: ASan frees a fake
     * stack only as its fiber dies. The fiber's death is played out here, on the
     * caller's stack: a switch into it that takes its fake stack up, its leaving for
     * good (which frees it), the switch back. No instrumented code runs in between. */
    if (tr->asan_fake) {
        void *mine = NULL;
        const void *bottom = NULL;
        size_t bytes = 0;
        __sanitizer_start_switch_fiber(&mine, lo, size);
        __sanitizer_finish_switch_fiber(tr->asan_fake, &bottom, &bytes);
        __sanitizer_start_switch_fiber(NULL, bottom, bytes);
        __sanitizer_finish_switch_fiber(mine, NULL, NULL);
        tr->asan_fake = NULL;
    }
#endif
#if defined(VMSTACK_TSAN)
    if (tr->tsan_fiber) __tsan_destroy_fiber(tr->tsan_fiber);
    tr->tsan_fiber = NULL;
#endif
#if defined(VMSTACK_VALGRIND)
    VALGRIND_STACK_DEREGISTER(tr->vg_id);
#endif
}

/* async-signal-safe: a client request is a few instructions that only Valgrind gives a
 * meaning to. Around vmstack's reads of words of a task's stack that the task's code
 * does not hold (painting's scan at a task's end; the kill's search of the killed task's
 * stack for signal frames): memcheck takes what lies below a stack pointer for
 * inaccessible and old frames' words for undefined, and would report each read, or each
 * branch on what was read. Its error reporting is off for this thread in between;
 * nothing in other builds. */
static inline void vms__track_raw_reads_begin(void)
{
#if defined(VMSTACK_VALGRIND)
    VALGRIND_DISABLE_ERROR_REPORTING;
#endif
}

/* async-signal-safe: as vms__track_raw_reads_begin. */
static inline void vms__track_raw_reads_end(void)
{
#if defined(VMSTACK_VALGRIND)
    VALGRIND_ENABLE_ERROR_REPORTING;
#endif
}

/* Whether p lies in a frame of the fake stack (ASan's frames for the locals of
 * instrumented code, under detect_stack_use_after_return) that the task left with when
 * it last switched out or was killed; false in other builds. */
static inline bool vms__track_in_fake_frame(const struct vms__track *tr, const void *p)
{
    (void)tr; (void)p;
#if defined(VMSTACK_ASAN)
    return tr->asan_fake && __asan_addr_is_in_fake_stack(tr->asan_fake, (void *)(uintptr_t)p,
                                                         NULL, NULL);
#else
    return false;
#endif
}

/* Before a task's stack goes back to the cache: a task that did not return normally
 * (suspended, killed, unwound by pthread_exit) leaves ASan redzones of its live frames
 * poisoned, which the next owner (or the cache's scrubbing) would trip over. */
static inline void vms__track_stack_release(void *lo, size_t size)
{
    (void)lo; (void)size;
#if defined(VMSTACK_ASAN)
    /* __asan_unpoison_memory_region writes the whole shadow (size / 8 bytes: 128 MiB for
     * a 1 GiB stack, resident from then on, even for a stack that was barely used).
     * Where the shadow spans whole pages, they are given back instead (they read as
     * zero, "unpoisoned"), as ASan itself clears large ranges; the API writes the
     * edges, and all of it should the discard fail. */
    size_t scale = 0, offset = 0, page = vms__os_page_size();
    __asan_get_shadow_mapping(&scale, &offset);
    uintptr_t s_lo = ((uintptr_t)lo >> scale) + offset;
    uintptr_t s_hi = (((uintptr_t)lo + size) >> scale) + offset;
    uintptr_t p_lo = (s_lo + page - 1) & ~(uintptr_t)(page - 1), p_hi = s_hi & ~(uintptr_t)(page - 1);
    if (p_hi > p_lo && p_hi - p_lo >= 16 * page &&
        vms__os_discard_foreign((void *)p_lo, p_hi - p_lo) == 0) {
        uintptr_t a_lo = (p_lo - offset) << scale, a_hi = (p_hi - offset) << scale;
        __asan_unpoison_memory_region(lo, a_lo - (uintptr_t)lo);
        __asan_unpoison_memory_region((void *)a_hi, (uintptr_t)lo + size - a_hi);
    } else {
        __asan_unpoison_memory_region(lo, size);
    }
#endif
#if defined(VMSTACK_VALGRIND)
    /* Memcheck marks what lay below a registered stack's pointer as inaccessible when
     * the task left; the stack is ordinary memory again for the cache's scrubbing. */
    (void)VALGRIND_MAKE_MEM_UNDEFINED(lo, size);
#endif
}

/* async-signal-safe: the fault handler, right before a kill leaves the alternate signal
 * stack [lo, lo+size) it runs on for good (its frames never return). Under ASan the
 * redzones of its instrumented frames (the handler's entry, a program's handler that
 * called vms_handle_fault) would stay poisoned there, under the next signal's frames,
 * where a handler's alloca or a frame of code that is not instrumented would read as a
 * stack-buffer-overflow. __asan_handle_no_return cleared it (the kill path is kept free of
 * that call: VMS_NO_ASAN_NORETURN); this is the part of its work the kill needs, in
 * plain stores to the shadow (no lock, no allocation). Nothing in other builds. */
static inline void vms__track_signal_stack_left(void *lo, size_t size)
{
    (void)lo; (void)size;
#if defined(VMSTACK_ASAN)
    __asan_unpoison_memory_region(lo, size);
#endif
}

/* A killed fiber's resumer (task_back in src/fiber.c), on the resumer's stack, right
 * before it puts back the cancellation state the fault handler disabled: a request
 * pending under asynchronous cancellation acts there and unwinds the thread from that
 * frame (glibc's forced unwind and long jump, which ASan does not see). The redzones and
 * scopes ASan poisoned in the frames it leaves (task_back's, the resume's, the
 * program's) stayed poisoned under the thread-exit code that ran there next: ASan's own
 * (a stack-buffer-underflow in its sigaltstack call) or vmstack's cache flush (a
 * stack-use-after-scope in src/cache.c's scrub_file, at task_back's variables; tests:
 * guard_tasks.c, asynchronous_cancellation_during_a_kill). __asan_handle_no_return
 * clears the current stack's shadow from a page below the stack pointer to its top, as
 * before any noreturn call; only code that is not instrumented runs between it and the
 * unwind. When nothing is pending, those frames just lose their poisoning until they
 * return. Never in a signal handler (vms_fiber_resume is not signal-safe, and task_back
 * runs off the alternate stack). Nothing in other builds. */
static inline void vms__track_may_unwind(void)
{
#if defined(VMSTACK_ASAN)
    __asan_handle_no_return();
#endif
}

/* The resumer, right before switching into the task whose stack is [lo, lo+size). */
VMS__TRACK_SWITCH void vms__track_enter(struct vms__track *tr, const void *lo, size_t size)
{
    (void)tr; (void)lo; (void)size;
#if defined(VMSTACK_ASAN)
    __sanitizer_start_switch_fiber(&tr->asan_back_fake, lo, size);
#endif
#if defined(VMSTACK_TSAN)
    if (tr->tsan_fiber) {
        tr->tsan_back = __tsan_get_current_fiber();
        __tsan_switch_to_fiber(tr->tsan_fiber, 0);
    }
#endif
}

/* The resumer, right after the task switched back (yield, return or kill), on the
 * resumer's stack. */
static inline void vms__track_entered_back(struct vms__track *tr)
{
    (void)tr;
#if defined(VMSTACK_ASAN)
    __sanitizer_finish_switch_fiber(tr->asan_back_fake, NULL, NULL);
#endif
}

/* The task, right after each switch into it: learns the resumer's stack bounds. */
static inline void vms__track_arrived(struct vms__track *tr)
{
    (void)tr;
#if defined(VMSTACK_ASAN)
    __sanitizer_finish_switch_fiber(tr->asan_fake, &tr->back_bottom, &tr->back_size);
    tr->asan_fake = NULL;       /* the task's own again: no longer saved anywhere */
#endif
}

/* async-signal-safe in a build without ASan and TSan (it is empty): the kill path calls
 * it from the fault handler, where the sanitizers' fiber calls are the only code that is
 * not, and only in those builds. The task, right before switching back to its resumer.
 * dying: it never runs again. */
VMS__TRACK_SWITCH void vms__track_leave(struct vms__track *tr, bool dying)
{
    (void)tr; (void)dying;
#if defined(VMSTACK_ASAN)
    __sanitizer_start_switch_fiber(dying ? NULL : &tr->asan_fake, tr->back_bottom,
                                   tr->back_size);
#endif
#if defined(VMSTACK_TSAN)
    if (tr->tsan_fiber) __tsan_switch_to_fiber(tr->tsan_back, 0);
#endif
}

/* The task, after vms__track_leave, right before a switch that publishes its new state
 * at *state in assembly (vms__ctx_switch_leave, vms__ctx_jump_leave), which TSan does
 * not see: the release is announced here, so that a thread that sees the state with an
 * acquire load and destroys the task is ordered after everything the task did. */
VMS__TRACK_SWITCH void vms__track_publish(void *state)
{
    (void)state;
#if defined(VMSTACK_TSAN)
    __tsan_release(state);
#endif
}

/* A thread's body was left without a switch back (cancellation unwound its stack to
 * the C library's thread start): the thread runs its exit code on its own state again,
 * which TSan must know before it finishes the thread. */
static inline void vms__track_abandoned(struct vms__track *tr, bool own_stack)
{
    (void)tr; (void)own_stack;
#if defined(VMSTACK_ASAN)
    /* ASan still takes the task's stack and fake stack for the thread's: the task's fake
     * stack dies with it, its resumer's (saved in asan_back_fake at its resume) and its
     * resumer's stack bounds come back. Called for the innermost task first, as the
     * unwinding left them, the thread ends on its own stack and fake stack (otherwise
     * ASan would free only the innermost task's fake stack at the thread's end, and the
     * others, about 3 MiB of address space each, would leak). The caller's frame must
     * not be instrumented: its locals would be on the fake stack freed here. */
    __sanitizer_start_switch_fiber(NULL, tr->back_bottom, tr->back_size);
    __sanitizer_finish_switch_fiber(tr->asan_back_fake, NULL, NULL);
    /* own_stack: the resumer was the thread's own stack, whose frames below the resume
     * (the program's thread function, say) the unwinding left without their epilogues,
     * redzones poisoned, where the thread's exit code runs now (ASan's own thread
     * destructor reported a stack-buffer-underflow in sigaltstack there). Nothing live
     * on it is instrumented (the C library's thread start and its thread-specific-data
     * destructors; the caller is not), so all of it is unpoisoned, as ASan does for a
     * longjmp (__asan_handle_no_return) and at the thread's end. */
    if (own_stack) __asan_unpoison_memory_region(tr->back_bottom, tr->back_size);
#endif
#if defined(VMSTACK_TSAN)
    if (tr->tsan_fiber && __tsan_get_current_fiber() != tr->tsan_back)
        __tsan_switch_to_fiber(tr->tsan_back, 0);
#endif
}

/* A task that was running on a thread that a fork left behind (it runs nowhere in the
 * child), before vms__track_destroy: TSan still has its fiber running on that thread's
 * processor and CHECK-fails when such a fiber is destroyed, so the child forgets it. */
static inline void vms__track_forsaken(struct vms__track *tr)
{
    (void)tr;
#if defined(VMSTACK_TSAN)
    tr->tsan_fiber = NULL;
#endif
}

#endif /* VMSTACK_TRACK_H */
