/*
 * context.h - the saved machine context of a task, shared by C (fiber.c) and the
 * context-switch assembly (arch/<arch>/switch.S), which includes this file.
 *
 * Layer: task. The VMS__CTX_* offsets are the single source of truth: switch.S uses
 * them by name and the _Static_asserts below check that struct vms__ctx matches them, so
 * the C and assembly views of a context cannot drift apart. A context holds exactly
 * what the ABI says a call preserves (SysV x86-64: rbx, rbp, r12-r15, rsp, MXCSR's
 * control bits and the x87 control word; AAPCS64: x19-x30, sp, d8-d15, FPCR) plus the
 * resume address. (MXCSR is saved whole; a switch loads it only when the control bits
 * differ, so its exception flags, like FPSR's, stay the thread's.)
 */
#ifndef VMSTACK_ARCH_CONTEXT_H
#define VMSTACK_ARCH_CONTEXT_H

#if defined(__x86_64__)
/* x86-64 layout (bytes): the resume address is the return address popped on save. */
#define VMS__CTX_RSP    0   /* stack pointer after the return address was popped */
#define VMS__CTX_RIP    8   /* resume address */
#define VMS__CTX_RBX    16
#define VMS__CTX_RBP    24  /* new context: 0, or an outermost frame record (below) */
#define VMS__CTX_R12    32  /* new context: the entry function */
#define VMS__CTX_R13    40  /* new context: the entry function's argument */
#define VMS__CTX_R14    48
#define VMS__CTX_R15    56
#define VMS__CTX_MXCSR  64  /* 4 bytes: SSE control and status */
#define VMS__CTX_FPUCW  68  /* 2 bytes: x87 control word */
#define VMS__CTX_SIZE   72
/* MXCSR's control bits (DAZ, the exception masks, rounding, FTZ): what a call preserves;
 * bits 0-5 are the sticky exception flags, which it does not. */
#define VMS__MXCSR_CONTROL 0xffc0
#elif defined(__aarch64__)
/* aarch64 layout (bytes): pairs are adjacent so that stp/ldp move two at a time. */
#define VMS__CTX_X19    0   /* new context: the entry function */
#define VMS__CTX_X20    8   /* new context: the entry function's argument */
#define VMS__CTX_X21    16
#define VMS__CTX_X23    32
#define VMS__CTX_X25    48
#define VMS__CTX_X27    64
#define VMS__CTX_X29    80  /* frame pointer; new context: 0, or an outermost frame */
#define VMS__CTX_X30    88  /* link register: the resume address */
#define VMS__CTX_SP     96
#define VMS__CTX_FPCR   104
#define VMS__CTX_D8     112 /* d8-d15, 8 bytes each */
#define VMS__CTX_D10    128
#define VMS__CTX_D12    144
#define VMS__CTX_D14    160
#define VMS__CTX_SIZE   176
#else
#error "vmstack: no context switch for this architecture (x86_64 and aarch64 are supported)"
#endif

#ifndef __ASSEMBLER__
#include <stddef.h>
#include <stdint.h>

#if defined(__x86_64__)
struct vms__ctx {
    uint64_t rsp, rip, rbx, rbp, r12, r13, r14, r15;
    uint32_t mxcsr;
    uint16_t fpucw;
    uint16_t pad;
};
_Static_assert(offsetof(struct vms__ctx, rsp) == VMS__CTX_RSP, "switch.S layout: rsp");
_Static_assert(offsetof(struct vms__ctx, rip) == VMS__CTX_RIP, "switch.S layout: rip");
_Static_assert(offsetof(struct vms__ctx, rbx) == VMS__CTX_RBX, "switch.S layout: rbx");
_Static_assert(offsetof(struct vms__ctx, rbp) == VMS__CTX_RBP, "switch.S layout: rbp");
_Static_assert(offsetof(struct vms__ctx, r12) == VMS__CTX_R12, "switch.S layout: r12");
_Static_assert(offsetof(struct vms__ctx, r13) == VMS__CTX_R13, "switch.S layout: r13");
_Static_assert(offsetof(struct vms__ctx, r14) == VMS__CTX_R14, "switch.S layout: r14");
_Static_assert(offsetof(struct vms__ctx, r15) == VMS__CTX_R15, "switch.S layout: r15");
_Static_assert(offsetof(struct vms__ctx, mxcsr) == VMS__CTX_MXCSR, "switch.S layout: mxcsr");
_Static_assert(offsetof(struct vms__ctx, fpucw) == VMS__CTX_FPUCW, "switch.S layout: fpucw");
#elif defined(__aarch64__)
struct vms__ctx {
    uint64_t x19, x20, x21, x22, x23, x24, x25, x26, x27, x28;
    uint64_t x29, x30, sp, fpcr;
    uint64_t d8, d9, d10, d11, d12, d13, d14, d15;
};
_Static_assert(offsetof(struct vms__ctx, x19) == VMS__CTX_X19, "switch.S layout: x19");
_Static_assert(offsetof(struct vms__ctx, x20) == VMS__CTX_X20, "switch.S layout: x20");
_Static_assert(offsetof(struct vms__ctx, x21) == VMS__CTX_X21, "switch.S layout: x21");
_Static_assert(offsetof(struct vms__ctx, x23) == VMS__CTX_X23, "switch.S layout: x23");
_Static_assert(offsetof(struct vms__ctx, x25) == VMS__CTX_X25, "switch.S layout: x25");
_Static_assert(offsetof(struct vms__ctx, x27) == VMS__CTX_X27, "switch.S layout: x27");
_Static_assert(offsetof(struct vms__ctx, x29) == VMS__CTX_X29, "switch.S layout: x29");
_Static_assert(offsetof(struct vms__ctx, x30) == VMS__CTX_X30, "switch.S layout: x30");
_Static_assert(offsetof(struct vms__ctx, sp) == VMS__CTX_SP, "switch.S layout: sp");
_Static_assert(offsetof(struct vms__ctx, fpcr) == VMS__CTX_FPCR, "switch.S layout: fpcr");
_Static_assert(offsetof(struct vms__ctx, d8) == VMS__CTX_D8, "switch.S layout: d8");
_Static_assert(offsetof(struct vms__ctx, d10) == VMS__CTX_D10, "switch.S layout: d10");
_Static_assert(offsetof(struct vms__ctx, d12) == VMS__CTX_D12, "switch.S layout: d12");
_Static_assert(offsetof(struct vms__ctx, d14) == VMS__CTX_D14, "switch.S layout: d14");
#endif
_Static_assert(sizeof(struct vms__ctx) == VMS__CTX_SIZE, "switch.S layout: size");

/* Saves the caller's context into from, loads to and resumes it with `value`: to's own
 * pending vms__ctx_switch returns value. Returns, in turn, the value of whoever switches
 * back to from. Pre: to was filled by vms__ctx_make or by a switch that has not been
 * resumed since. Called as a tail call (`return vms__ctx_switch(...)`), it saves the
 * caller's caller: whoever switches back then returns straight to that caller, and no
 * `ret` runs after the switch (one that did would mispredict every time: the return-
 * stack predictor holds the other context's return addresses by then). */
int vms__ctx_switch(struct vms__ctx *from, const struct vms__ctx *to, int value)
    __attribute__((visibility("hidden")));
/* vms__ctx_switch for a task that yields, whose from and to live in its record: stores
 * value into *state (a release store) once both are done with and the stack is to's,
 * so that another thread that sees the new state (an acquire load) may free the task's
 * stack, record included. */
int vms__ctx_switch_leave(struct vms__ctx *from, const struct vms__ctx *to, int value,
                          _Atomic int *state) __attribute__((visibility("hidden")));
/* Loads to without saving anything and resumes it with value: leaves the current stack
 * for good (a finished task), storing value into *state as vms__ctx_switch_leave does.
 * async-signal-safe. */
__attribute__((visibility("hidden"), noreturn))
void vms__ctx_jump_leave(const struct vms__ctx *to, int value, _Atomic int *state);
/* Loads to and runs fn(arg) on its stack as if to's pending switch had called fn: to
 * resumes when fn returns, with fn's result as the value. For what a resumer does once
 * its task is gone (the fault handler's kill path, a finished task that the debug layer
 * measures). The jump itself is async-signal-safe; fn runs as ordinary code. */
__attribute__((visibility("hidden"), noreturn))
void vms__ctx_jump_call(const struct vms__ctx *to, int (*fn)(void *), void *arg);
/* vms__ctx_switch, but to resumes through fn(arg) like vms__ctx_jump_call: for switches
 * after which the resumer has work to do (sanitizer hooks). */
int vms__ctx_switch_call(struct vms__ctx *from, const struct vms__ctx *to,
                         int (*fn)(void *), void *arg) __attribute__((visibility("hidden")));
/* Prepares ctx so that the first switch to it runs entry(arg) on the stack whose
 * 16-byte aligned top is stack_top, with the caller's current floating-point control
 * state. When entry returns, the trampoline calls vms__task_exit(arg), which must not
 * return. */
void vms__ctx_make(struct vms__ctx *ctx, void *stack_top, void (*entry)(void *), void *arg)
    __attribute__((visibility("hidden")));
/* Gives a context made by vms__ctx_make the frame pointer fp instead of 0: the address
 * of an outermost frame record (two zero words: no caller frame, no return address) that
 * the caller put at the very top of the stack. A frame-pointer walk then ends at the
 * top of the stack even when the task's first frame starts lower (the task layer keeps
 * its record between the two). */
static inline void vms__ctx_set_outer_frame(struct vms__ctx *ctx, void *fp)
{
#if defined(__x86_64__)
    ctx->rbp = (uint64_t)(uintptr_t)fp;
#elif defined(__aarch64__)
    ctx->x29 = (uint64_t)(uintptr_t)fp;
#endif
}
/* Called by the entry trampoline when a task's entry function returned (fiber.c). */
__attribute__((visibility("hidden"), noreturn)) void vms__task_exit(void *arg);
#endif /* !__ASSEMBLER__ */

#endif /* VMSTACK_ARCH_CONTEXT_H */
