/*
 * switch.S (aarch64, AAPCS64, ELF) - the task context switch.
 *
 * Layer: task. Owns vms__ctx_switch, vms__ctx_switch_leave, vms__ctx_jump_leave,
 * vms__ctx_jump_call, vms__ctx_switch_call, vms__ctx_make and the entry trampoline. A
 * switch hands one value (w0) to the context it resumes. A context (struct vms__ctx,
 * arch/context.h, whose offsets this file uses by name) holds what a call preserves
 * under AAPCS64: x19-x28, the frame pointer x29, the link register x30 (the resume
 * address), sp, the low halves d8-d15 of v8-v15, and FPCR (rounding mode,
 * flush-to-zero, default NaN). Everything else is caller-saved.
 *
 *   offset  field      meaning
 *   0..72   x19-x28    callee-saved; new context: x19 = entry, x20 = arg
 *   80      x29        frame pointer; new context: 0 or an outermost frame record
 *   88      x30        resume address (the trampoline in a new context)
 *   96      sp
 *   104     fpcr
 *   112..   d8-d15     8 bytes each
 *
 * We leave through `ret x30`, not `br`: under BTI a `br` must land on a `bti j` pad, and
 * the resume addresses are ordinary return sites after a `bl`, which have none, while
 * `ret` is exempt from BTI checks. (The return-stack mismatch that makes x86-64 avoid
 * `ret` costs one misprediction here; correctness under BTI wins.) Entry points called
 * through a register start with `bti c`.
 */
#include "../context.h"

    .text

/* LOAD_CTX(reg): loads every preserved register from the context at reg, sp and the
 * resume address (into x30) included; FPCR only when it differs from ours, as x86-64
 * does with MXCSR (a write to FPCR may cost more than a read on some cores; not
 * measured: this port runs here only under qemu-user). FPSR, the exception flags, is
 * never switched: it stays the thread's. reg must be x0 or x1 (not loaded); x9, x10
 * and x11 are scratch. The caller then leaves with `ret x30` (or calls a function that
 * returns there). */
#define LOAD_CTX(reg)                                                                     \
    ldp     x19, x20, [reg, VMS__CTX_X19]  /* restore x19, x20 */                     ; \
    ldp     x21, x22, [reg, VMS__CTX_X21]  /* restore x21, x22 */                     ; \
    ldp     x23, x24, [reg, VMS__CTX_X23]  /* restore x23, x24 */                     ; \
    ldp     x25, x26, [reg, VMS__CTX_X25]  /* restore x25, x26 */                     ; \
    ldp     x27, x28, [reg, VMS__CTX_X27]  /* restore x27, x28 */                     ; \
    ldp     x29, x30, [reg, VMS__CTX_X29]  /* restore fp and the resume address */    ; \
    ldp     d8, d9, [reg, VMS__CTX_D8]     /* restore d8, d9 */                       ; \
    ldp     d10, d11, [reg, VMS__CTX_D10]  /* restore d10, d11 */                     ; \
    ldp     d12, d13, [reg, VMS__CTX_D12]  /* restore d12, d13 */                     ; \
    ldp     d14, d15, [reg, VMS__CTX_D14]  /* restore d14, d15 */                     ; \
    ldp     x9, x10, [reg, VMS__CTX_SP]    /* x9 = sp, x10 = fpcr */                  ; \
    mrs     x11, fpcr                       /* ours */                                 ; \
    cmp     x10, x11                        /* the same? */                            ; \
    b.eq    9f                              /* then it is already in place */          ; \
    msr     fpcr, x10                       /* restore rounding mode, FZ, DN */        ; \
9:  mov     sp, x9                          /* switch stacks */

/* SAVE_CTX: saves the caller (return address in x30) into the context at x0. */
#define SAVE_CTX                                                                          \
    stp     x19, x20, [x0, #VMS__CTX_X19]   /* save x19, x20 */                        ; \
    stp     x21, x22, [x0, #VMS__CTX_X21]   /* save x21, x22 */                        ; \
    stp     x23, x24, [x0, #VMS__CTX_X23]   /* save x23, x24 */                        ; \
    stp     x25, x26, [x0, #VMS__CTX_X25]   /* save x25, x26 */                        ; \
    stp     x27, x28, [x0, #VMS__CTX_X27]   /* save x27, x28 */                        ; \
    stp     x29, x30, [x0, #VMS__CTX_X29]   /* save fp and lr: from resumes at lr */   ; \
    stp     d8, d9, [x0, #VMS__CTX_D8]      /* save d8, d9 */                          ; \
    stp     d10, d11, [x0, #VMS__CTX_D10]   /* save d10, d11 */                        ; \
    stp     d12, d13, [x0, #VMS__CTX_D12]   /* save d12, d13 */                        ; \
    stp     d14, d15, [x0, #VMS__CTX_D14]   /* save d14, d15 */                        ; \
    mov     x9, sp                          /* sp cannot be stored directly by stp */  ; \
    mrs     x10, fpcr                       /* read the FP control register */         ; \
    stp     x9, x10, [x0, #VMS__CTX_SP]     /* save sp and fpcr */

/* int vms__ctx_switch(struct vms__ctx *from (x0), const struct vms__ctx *to (x1),
 *                     int value (w2)): saves the caller into from, loads to and
 * resumes it with w0 = value. */
    .globl  vms__ctx_switch
    .hidden vms__ctx_switch
    .type   vms__ctx_switch, %function
    .p2align 4
vms__ctx_switch:
    .cfi_startproc
    bti     c                               /* BTI landing pad: called through a veneer/PLT */
    SAVE_CTX                                /* from = the caller */
    LOAD_CTX(x1)                            /* load to */
    mov     w0, w2                          /* what to's switch call returns */
    ret     x30                             /* resume there (BTI-exempt) */
    .cfi_endproc
    .size   vms__ctx_switch, .-vms__ctx_switch

/* int vms__ctx_switch_leave(struct vms__ctx *from (x0), const struct vms__ctx *to (x1),
 *                           int value (w2), int *state (x3)): vms__ctx_switch for a
 * task that yields: from and to live in its record, on its stack, which another thread
 * may free as soon as it sees the task's new state. So value is stored into *state only
 * after the last access to from and to, with a release store (stlr: every load and
 * store before it is done first), on the resumer's stack. */
    .globl  vms__ctx_switch_leave
    .hidden vms__ctx_switch_leave
    .type   vms__ctx_switch_leave, %function
    .p2align 4
vms__ctx_switch_leave:
    .cfi_startproc
    bti     c                               /* BTI landing pad */
    SAVE_CTX                                /* from = the caller */
    LOAD_CTX(x1)                            /* load to: now on its stack */
    stlr    w2, [x3]                        /* publish the state: the record is not ours */
    mov     w0, w2                          /* what to's switch call returns */
    ret     x30                             /* resume there (BTI-exempt) */
    .cfi_endproc
    .size   vms__ctx_switch_leave, .-vms__ctx_switch_leave

/* void vms__ctx_jump_leave(const struct vms__ctx *to (x0), int value (w1),
 *                          int *state (x2)): for a task that ends: loads to and resumes
 * it with w0 = value, nothing saved; value is stored into *state after the last read of
 * to (stlr), as vms__ctx_switch_leave does. noreturn. */
    .globl  vms__ctx_jump_leave
    .hidden vms__ctx_jump_leave
    .type   vms__ctx_jump_leave, %function
    .p2align 4
vms__ctx_jump_leave:
    .cfi_startproc
    bti     c                               /* BTI landing pad */
    LOAD_CTX(x0)                            /* load to: now on its stack */
    stlr    w1, [x2]                        /* publish the state: the record is not ours */
    mov     w0, w1                          /* what to's switch call returns */
    ret     x30                             /* resume there */
    .cfi_endproc
    .size   vms__ctx_jump_leave, .-vms__ctx_jump_leave

/* void vms__ctx_jump_call(const struct vms__ctx *to (x0), int (*fn)(void *) (x1),
 *                         void *arg (x2)): loads to and runs fn(arg) on its stack with
 * lr = to's resume address: to resumes when fn returns, with fn's result. noreturn. */
    .globl  vms__ctx_jump_call
    .hidden vms__ctx_jump_call
    .type   vms__ctx_jump_call, %function
    .p2align 4
vms__ctx_jump_call:
    .cfi_startproc
    bti     c                               /* BTI landing pad */
    LOAD_CTX(x0)                            /* load to; x30 = its resume address */
    mov     x16, x1                         /* br through x16: `bti c` pads accept it */
    mov     x0, x2                          /* first argument: arg */
    br      x16                             /* fn(arg), returning into to */
    .cfi_endproc
    .size   vms__ctx_jump_call, .-vms__ctx_jump_call

/* int vms__ctx_switch_call(struct vms__ctx *from (x0), const struct vms__ctx *to (x1),
 *                           int (*fn)(void *) (x2), void *arg (x3)): saves the caller
 * into from, then loads to and runs fn(arg) on its stack as vms__ctx_jump_call does. */
    .globl  vms__ctx_switch_call
    .hidden vms__ctx_switch_call
    .type   vms__ctx_switch_call, %function
    .p2align 4
vms__ctx_switch_call:
    .cfi_startproc
    bti     c                               /* BTI landing pad */
    SAVE_CTX                                /* from = the caller */
    LOAD_CTX(x1)                            /* load to; x30 = its resume address */
    mov     x16, x2                         /* br through x16: `bti c` pads accept it */
    mov     x0, x3                          /* first argument: arg */
    br      x16                             /* fn(arg), returning into to */
    .cfi_endproc
    .size   vms__ctx_switch_call, .-vms__ctx_switch_call

/* void vms__ctx_make(struct vms__ctx *ctx (x0), void *stack_top (x1),
 *                    void (*entry)(void *) (x2), void *arg (x3)) */
    .globl  vms__ctx_make
    .hidden vms__ctx_make
    .type   vms__ctx_make, %function
    .p2align 4
vms__ctx_make:
    .cfi_startproc
    bti     c                               /* BTI landing pad */
    and     x1, x1, #~15                    /* sp must be 16-byte aligned on aarch64 */
    stp     x2, x3, [x0, #VMS__CTX_X19]     /* x19 = entry, x20 = arg for the trampoline */
    stp     xzr, xzr, [x0, #VMS__CTX_X21]   /* x21, x22 = 0 */
    stp     xzr, xzr, [x0, #VMS__CTX_X23]   /* x23, x24 = 0 */
    stp     xzr, xzr, [x0, #VMS__CTX_X25]   /* x25, x26 = 0 */
    stp     xzr, xzr, [x0, #VMS__CTX_X27]   /* x27, x28 = 0 */
    adr     x9, vms__ctx_trampoline         /* first resume address: the trampoline */
    stp     xzr, x9, [x0, #VMS__CTX_X29]    /* fp = 0 (outermost frame), lr = trampoline */
    mrs     x10, fpcr                       /* the new task inherits our FP control */
    stp     x1, x10, [x0, #VMS__CTX_SP]     /* first sp: the stack top; fpcr */
    stp     xzr, xzr, [x0, #VMS__CTX_D8]    /* d8, d9 = 0 */
    stp     xzr, xzr, [x0, #VMS__CTX_D10]   /* d10, d11 = 0 */
    stp     xzr, xzr, [x0, #VMS__CTX_D12]   /* d12, d13 = 0 */
    stp     xzr, xzr, [x0, #VMS__CTX_D14]   /* d14, d15 = 0 */
    ret                                     /* an ordinary return to our caller */
    .cfi_endproc
    .size   vms__ctx_make, .-vms__ctx_make

/* The first instruction a new context runs, with sp = the stack top, x19 = entry and
 * x20 = arg. CFI marks the return address (x30) undefined, so unwinders end the stack
 * here. If entry returns, vms__task_exit(arg) switches away for good. */
    .type   vms__ctx_trampoline, %function
    .p2align 4
vms__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    bti     c                               /* landing pad, should it be reached by br/blr */
    mov     x0, x20                         /* first argument: arg */
    blr     x19                             /* entry(arg) */
    .globl  vms__ctx_trampoline_ret         /* entry's return address: the frame-pointer */
    .hidden vms__ctx_trampoline_ret         /* walk checks a task's chain ends there */
vms__ctx_trampoline_ret:
    mov     x0, x20                         /* x20 survived the call: arg again */
    bl      vms__task_exit                  /* does not return */
    brk     #0x3e8                          /* never reached: trap rather than run on */
    .cfi_endproc
    .size   vms__ctx_trampoline, .-vms__ctx_trampoline

/* This object is BTI- and PAC-ready whatever it is assembled with: every indirect
 * branch target above starts with `bti c` (a hint, a no-op before Armv8.5), and PAC
 * needs nothing here (we never sign x30; every C function signs and checks its own on
 * its own stack). So the note is always there: the linker ANDs the notes of all inputs,
 * and one input without it takes BTI away from the whole output. It must not depend on
 * __ARM_FEATURE_BTI_DEFAULT: CMake assembles this file with CMAKE_ASM_FLAGS, which do
 * not hold the -mbranch-protection=standard of CMAKE_C_FLAGS (or dpkg-buildflags'
 * CFLAGS), and libvmstack.so built so lost its BTI marking. Without branch protection
 * in the C code the output has no marking, as before. */
    .section .note.gnu.property, "a"
    .p2align 3
    .long   4                               /* name size: "GNU\0" */
    .long   16                              /* descriptor size */
    .long   5                               /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"                           /* owner */
    .long   0xc0000000                      /* GNU_PROPERTY_AARCH64_FEATURE_1_AND */
    .long   4                               /* its data size */
    .long   3                               /* FEATURE_1_BTI (1) | FEATURE_1_PAC (2) */
    .long   0                               /* padding to 8 bytes */

/* The stack is not executable (without this note, ld makes it executable). */
    .section .note.GNU-stack, "", %progbits
