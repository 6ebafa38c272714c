/*
 * switch.S (x86-64, System V ABI, ELF) - the task context switch.
 *
 * Layer: task. Owns vms__ctx_switch, vms__ctx_switch_leave, vms__ctx_jump_leave,
 * vms__ctx_jump_call, vms__ctx_switch_call, vms__ctx_make and the entry trampoline. A
 * context (struct vms__ctx, arch/context.h, whose offsets this file uses by name) holds
 * what a call preserves under the SysV ABI: rbx, rbp, r12-r15, rsp, MXCSR and the x87
 * control word, plus the resume address. Everything else is caller-saved, so the C
 * caller of vms__ctx_switch has already given it up. A switch hands one value (eax) to
 * the context it resumes.
 *
 *   offset  field   meaning
 *   0       rsp     stack pointer after the return address was popped
 *   8       rip     resume address (the popped return address, or the trampoline)
 *   16      rbx
 *   24      rbp     new context: 0 or an outermost frame record, where frame walks end
 *   32      r12     new context: entry function
 *   40      r13     new context: entry argument
 *   48      r14
 *   56      r15
 *   64      mxcsr   4 bytes
 *   68      fpucw   2 bytes (x87 control word), then 2 bytes of padding
 *
 * We return by pop + indirect jmp rather than by pushing the target and executing
 * `ret`: a `ret` to another stack's address never matches the return-stack buffer and
 * would mispredict on every switch (and poison the next returns). The jmp carries the
 * `notrack` prefix because resume addresses are ordinary return sites without an
 * endbr64; entry points reached by call carry endbr64. No GNU property note claims
 * SHSTK: we do not switch shadow stacks, so the kernel must never enable them for us.
 */
#include "../context.h"

    .text

/* LOAD_REGS(reg): loads every preserved register from the context at reg but MXCSR
 * and the x87 control word, the stack pointer last. reg must not be one of the
 * registers loaded (rdi, rsi and rdx are not). The caller then leaves through the
 * resume address at VMS__CTX_RIP(reg). */
#define LOAD_REGS(reg)                                                                    \
    movq    VMS__CTX_RBX(reg), %rbx     /* restore rbx */                              ; \
    movq    VMS__CTX_RBP(reg), %rbp     /* restore the frame pointer */                ; \
    movq    VMS__CTX_R12(reg), %r12     /* restore r12 (entry for a new context) */    ; \
    movq    VMS__CTX_R13(reg), %r13     /* restore r13 (argument for a new context) */ ; \
    movq    VMS__CTX_R14(reg), %r14     /* restore r14 */                              ; \
    movq    VMS__CTX_R15(reg), %r15     /* restore r15 */                              ; \
    movq    VMS__CTX_RSP(reg), %rsp     /* switch stacks */

/* SWITCH_MXCSR(ours, to, scratch, label): loads to's MXCSR only if its control bits
 * (rounding, FTZ, DAZ, exception masks: what the ABI preserves across a call) differ
 * from ours, saved at the memory operand ours. The status bits (the sticky exception
 * flags) are not preserved by a call, so they stay the thread's: loading a value that
 * differs only in them would cost as much as the rest of the switch (on Sapphire Rapids
 * under KVM, about 56 ns a switch when one side had set "inexact" and the other not). */
#define SWITCH_MXCSR(ours, to, scratch, label)                                            \
    movl    VMS__CTX_MXCSR(to), scratch /* to's MXCSR */                               ; \
    xorl    ours, scratch               /* the bits in which it differs from ours */   ; \
    testl   $VMS__MXCSR_CONTROL, scratch /* any control bit? */                         ; \
    jz      label##f                    /* no: keep ours, flags and all */             ; \
    ldmxcsr VMS__CTX_MXCSR(to)          /* yes: restore to's */                        ; \
label:

/* SWITCH_FP(scratch32, scratch16): after SAVE_CTX into rdi, loads the floating-point
 * control state of the context at rsi where it differs from ours: the x87 control word
 * (fldcw is microcoded and slow on some CPUs, 0.5 ns of a 5 ns switch on AMD Zen 5, and
 * the word rarely differs between tasks; fnstcw and reading its store back are cheap),
 * then MXCSR (SWITCH_MXCSR). Either way the control state is to's. */
#define SWITCH_FP(scratch32, scratch16)                                                   \
    movzwl  VMS__CTX_FPUCW(%rsi), scratch32 /* to's x87 control word */                ; \
    cmpw    scratch16, VMS__CTX_FPUCW(%rdi) /* the same as ours? */                    ; \
    je      1f                          /* then it is already in place */              ; \
    fldcw   VMS__CTX_FPUCW(%rsi)        /* restore x87 precision and rounding */       ; \
1:  SWITCH_MXCSR(VMS__CTX_MXCSR(%rdi), %rsi, scratch32, 2)

/* LOAD_CTX(reg): LOAD_REGS, the x87 control word and (SWITCH_MXCSR) MXCSR, for the
 * jumps that save nothing and never return (a task's end, a kill): our MXCSR goes into
 * our return address's slot, the one word of this stack we know is ours to write (the
 * stack may end at a guard just below). Unwinders stop here from then on. eax is
 * scratch. */
#define LOAD_CTX(reg)                                                                     \
    .cfi_undefined %rip                 /* unwinders stop: the return address goes */  ; \
    stmxcsr (%rsp)                      /* our MXCSR in its place */                   ; \
    SWITCH_MXCSR((%rsp), reg, %eax, 3)  /* to's SSE control state, if it differs */    ; \
    fldcw   VMS__CTX_FPUCW(reg)         /* restore x87 precision and rounding */       ; \
    LOAD_REGS(reg)

/* SAVE_CTX: saves the caller of the current function into the context at rdi, as if it
 * had returned: pops the return address (the resume point) into rax. The reads of the
 * floating-point control state come first: stmxcsr waits for earlier SSE work, and the
 * plain stores after it overlap that wait. */
#define SAVE_CTX                                                                          \
    stmxcsr VMS__CTX_MXCSR(%rdi)        /* save the SSE control/status register */     ; \
    fnstcw  VMS__CTX_FPUCW(%rdi)        /* save the x87 control word (no wait) */      ; \
    popq    %rax                        /* pop our return address: the resume point */ ; \
    movq    %rsp, VMS__CTX_RSP(%rdi)    /* the caller's sp as if we had returned */    ; \
    movq    %rax, VMS__CTX_RIP(%rdi)    /* resume address */                           ; \
    movq    %rbx, VMS__CTX_RBX(%rdi)    /* save rbx */                                 ; \
    movq    %rbp, VMS__CTX_RBP(%rdi)    /* save the frame pointer */                   ; \
    movq    %r12, VMS__CTX_R12(%rdi)    /* save r12 */                                 ; \
    movq    %r13, VMS__CTX_R13(%rdi)    /* save r13 */                                 ; \
    movq    %r14, VMS__CTX_R14(%rdi)    /* save r14 */                                 ; \
    movq    %r15, VMS__CTX_R15(%rdi)    /* save r15 */

/* int vms__ctx_switch(struct vms__ctx *from (rdi), const struct vms__ctx *to (rsi),
 *                     int value (edx))
 * Saves the caller into from, loads to and resumes it with eax = value: the value that
 * to's own vms__ctx_switch call returns. */
    .globl  vms__ctx_switch
    .hidden vms__ctx_switch
    .type   vms__ctx_switch, @function
    .p2align 4
vms__ctx_switch:
    .cfi_startproc
    endbr64                             /* CET IBT landing pad: called through the PLT */
    SAVE_CTX                            /* from = the caller, as if returned */
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rax
    SWITCH_FP(%ecx, %cx)                /* to's FP control state, if it differs */
    LOAD_REGS(%rsi)                     /* load the rest of to */
    movl    %edx, %eax                  /* what to's switch call returns */
    notrack jmp *VMS__CTX_RIP(%rsi)     /* resume there: pop + jmp, no ret */
    .cfi_endproc
    .size   vms__ctx_switch, .-vms__ctx_switch

/* int vms__ctx_switch_leave(struct vms__ctx *from (rdi), const struct vms__ctx *to (rsi),
 *                           int value (edx), int *state (rcx))
 * vms__ctx_switch for a task that yields: from and to live in its record, on its stack,
 * which another thread may free as soon as it sees the task's new state. So value is
 * stored into *state only after the last access to from and to (the resume address is
 * read into r8 first) and on the resumer's stack. x86-64 keeps a store in order with
 * every load and store before it: a plain mov is a release store. */
    .globl  vms__ctx_switch_leave
    .hidden vms__ctx_switch_leave
    .type   vms__ctx_switch_leave, @function
    .p2align 4
vms__ctx_switch_leave:
    .cfi_startproc
    endbr64                             /* CET IBT landing pad */
    SAVE_CTX                            /* from = the caller, as if returned */
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rax
    SWITCH_FP(%r8d, %r8w)               /* to's FP control state (rcx holds state) */
    LOAD_REGS(%rsi)                     /* load the rest of to: now on its stack */
    movq    VMS__CTX_RIP(%rsi), %r8     /* the resume address: the last read of to */
    movl    %edx, (%rcx)                /* publish the state: the record is not ours */
    movl    %edx, %eax                  /* what to's switch call returns */
    notrack jmp *%r8                    /* resume there: pop + jmp, no ret */
    .cfi_endproc
    .size   vms__ctx_switch_leave, .-vms__ctx_switch_leave

/* void vms__ctx_jump_leave(const struct vms__ctx *to (rdi), int value (esi),
 *                          int *state (rdx)): for a task that ends: loads to and resumes
 * it with rax = value, nothing saved; value is stored into *state after the last read
 * of to, as vms__ctx_switch_leave does. noreturn. */
    .globl  vms__ctx_jump_leave
    .hidden vms__ctx_jump_leave
    .type   vms__ctx_jump_leave, @function
    .p2align 4
vms__ctx_jump_leave:
    .cfi_startproc
    endbr64                             /* CET IBT landing pad */
    LOAD_CTX(%rdi)                      /* load to: now on its stack */
    movq    VMS__CTX_RIP(%rdi), %rcx    /* the resume address: the last read of to */
    movl    %esi, (%rdx)                /* publish the state: the record is not ours */
    movl    %esi, %eax                  /* what to's switch call returns */
    notrack jmp *%rcx                   /* resume there */
    .cfi_endproc
    .size   vms__ctx_jump_leave, .-vms__ctx_jump_leave

/* void vms__ctx_jump_call(const struct vms__ctx *to (rdi), int (*fn)(void *) (rsi),
 *                         void *arg (rdx)): loads to and, on its stack, runs fn(arg) as
 * if to's pending call had called fn: to resumes when fn returns, with fn's result as the
 * value. For the work a resumer does once a task is gone (on the resumer's stack, never
 * the dead one's). noreturn, async-signal-safe itself (fn need not be). */
    .globl  vms__ctx_jump_call
    .hidden vms__ctx_jump_call
    .type   vms__ctx_jump_call, @function
    .p2align 4
vms__ctx_jump_call:
    .cfi_startproc
    endbr64                             /* CET IBT landing pad */
    LOAD_CTX(%rdi)                      /* load to: its stack, with sp 16-byte aligned */
    pushq   VMS__CTX_RIP(%rdi)          /* its resume address becomes fn's return address */
    movq    %rdx, %rdi                  /* first argument: arg */
    jmp     *%rsi                       /* fn(arg), tracked: fn starts with endbr64 */
    .cfi_endproc
    .size   vms__ctx_jump_call, .-vms__ctx_jump_call

/* void vms__ctx_switch_call(struct vms__ctx *from (rdi), const struct vms__ctx *to (rsi),
 *                           int (*fn)(void *) (rdx), void *arg (rcx)): saves the caller
 * into from like vms__ctx_switch, then loads to and runs fn(arg) on its stack like
 * vms__ctx_jump_call. For switches after which the resumer has work to do (sanitizer
 * hooks). Returns, later, the value of whoever switches back to from. */
    .globl  vms__ctx_switch_call
    .hidden vms__ctx_switch_call
    .type   vms__ctx_switch_call, @function
    .p2align 4
vms__ctx_switch_call:
    .cfi_startproc
    endbr64                             /* CET IBT landing pad */
    SAVE_CTX                            /* from = the caller, as if returned */
    .cfi_adjust_cfa_offset -8
    .cfi_register %rip, %rax
    SWITCH_FP(%r8d, %r8w)               /* to's FP control state, if it differs */
    LOAD_REGS(%rsi)                     /* load to: its stack, with sp 16-byte aligned */
    pushq   VMS__CTX_RIP(%rsi)          /* its resume address becomes fn's return address */
    movq    %rcx, %rdi                  /* first argument: arg */
    jmp     *%rdx                       /* fn(arg), tracked: fn starts with endbr64 */
    .cfi_endproc
    .size   vms__ctx_switch_call, .-vms__ctx_switch_call

/* void vms__ctx_make(struct vms__ctx *ctx (rdi), void *stack_top (rsi),
 *                    void (*entry)(void *) (rdx), void *arg (rcx)) */
    .globl  vms__ctx_make
    .hidden vms__ctx_make
    .type   vms__ctx_make, @function
    .p2align 4
vms__ctx_make:
    .cfi_startproc
    endbr64                             /* CET IBT landing pad */
    andq    $-16, %rsi                  /* the trampoline starts on a 16-byte boundary */
    movq    %rsi, VMS__CTX_RSP(%rdi)    /* first sp: the top of the new stack */
    leaq    vms__ctx_trampoline(%rip), %rax /* first resume address: the trampoline */
    movq    %rax, VMS__CTX_RIP(%rdi)    /* store it */
    movq    %rdx, VMS__CTX_R12(%rdi)    /* the trampoline finds entry in r12 */
    movq    %rcx, VMS__CTX_R13(%rdi)    /* and its argument in r13 */
    xorl    %eax, %eax                  /* zero for the registers that start empty */
    movq    %rax, VMS__CTX_RBX(%rdi)    /* rbx = 0 */
    movq    %rax, VMS__CTX_RBP(%rdi)    /* rbp = 0: the outermost frame */
    movq    %rax, VMS__CTX_R14(%rdi)    /* r14 = 0 */
    movq    %rax, VMS__CTX_R15(%rdi)    /* r15 = 0 */
    stmxcsr VMS__CTX_MXCSR(%rdi)        /* the new task inherits our SSE control state */
    fnstcw  VMS__CTX_FPUCW(%rdi)        /* and our x87 control word */
    movw    $0, VMS__CTX_FPUCW+2(%rdi)  /* keep the padding defined */
    ret                                 /* an ordinary return to our caller */
    .cfi_endproc
    .size   vms__ctx_make, .-vms__ctx_make

/* The first instruction a new context runs, with rsp = the stack top (16-byte aligned),
 * r12 = entry and r13 = arg. CFI marks the return address undefined, so every unwinder
 * (libunwind, libgcc, gdb) ends the stack here instead of walking into garbage above
 * the top. If entry returns, vms__task_exit(arg) switches away for good. */
    .type   vms__ctx_trampoline, @function
    .p2align 4
vms__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined %rip
    endbr64                             /* landing pad, should indirect jumps be tracked */
    movq    %r13, %rdi                  /* first argument: arg */
    call    *%r12                       /* entry(arg); rsp is 16-aligned before the call */
    .globl  vms__ctx_trampoline_ret     /* entry's return address: the frame-pointer */
    .hidden vms__ctx_trampoline_ret     /* walk checks a task's chain ends there */
vms__ctx_trampoline_ret:
    movq    %r13, %rdi                  /* r13 survived the call: arg again */
    call    vms__task_exit              /* does not return */
    ud2                                 /* never reached: trap rather than run on */
    .cfi_endproc
    .size   vms__ctx_trampoline, .-vms__ctx_trampoline

/* This object is IBT-ready whatever it is assembled with: every call target has
 * endbr64 (a no-op without CET) and every other indirect jump is notrack. So the note
 * is always there, as in the aarch64 switch.S: the linker ANDs the notes of all inputs,
 * and CMake assembles this file with CMAKE_ASM_FLAGS, which do not hold an
 * -fcf-protection of CMAKE_C_FLAGS, so a note conditional on __CET__ took IBT away from
 * a library whose C code was built for it. Without IBT in the C code the output has no
 * marking, as before. Only the IBT bit (1) is claimed, never SHSTK (2): see the top of
 * this file. */
    .section .note.gnu.property, "a"
    .p2align 3
    .long   4                           /* name size: "GNU\0" */
    .long   16                          /* descriptor size */
    .long   5                           /* NT_GNU_PROPERTY_TYPE_0 */
    .asciz  "GNU"                       /* owner */
    .long   0xc0000002                  /* GNU_PROPERTY_X86_FEATURE_1_AND */
    .long   4                           /* its data size */
    .long   1                           /* GNU_PROPERTY_X86_FEATURE_1_IBT only */
    .long   0                           /* padding to 8 bytes */

/* The stack is not executable (without this note, ld makes it executable). */
    .section .note.GNU-stack, "", @progbits
