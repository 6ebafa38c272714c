/*
 * guard.c - the fault handler of the async-signal-safe island (layer 4 of DESIGN.md).
 *
 * Owns the SIGSEGV/SIGBUS handler and the actions installed before it, the per-thread
 * alternate signal stacks, the main thread's and foreign threads' stack ranges, the
 * classification of a fault (overflow, underflow, wild guard access, not ours), blame,
 * and the action (kill the task, die by SIGSEGV, or chain). A guard hit is recognized by
 * the fault address alone (vms__arena_where), never by si_code.
 * Thread setup is cheap for vmstack's own threads (no foreign-stack record, one
 * sigaltstack call). Invariants: the previous actions and the main stack's range are
 * written once, before the handler is installed, and only read afterwards; a thread's
 * range and alternate stack are written by that thread only, before it can fault on a
 * vmstack stack.
 */
#include "island.h"
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <signal.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#ifndef SEGV_MTEAERR
#define SEGV_MTEAERR 8   /* asm-generic/siginfo.h, Linux 5.10; older C libraries lack it */
#endif
#ifndef SS_AUTODISARM
#define SS_AUTODISARM (1U << 31)   /* linux/signal.h, Linux 4.7; glibc 2.36 lacks it */
#endif

/* The reporter's own needs on the alternate stack, beyond the kernel's signal frame
 * (AT_MINSIGSTKSZ): libunwind's cursor and its DWARF interpreter (a few KiB), the
 * report's line and frame buffers (about 2 KiB), the oops hook the program installed,
 * and the task layer's kill path. 64 KiB leaves room for a hook that formats text. */
#define REPORTER_STACK (64 * VMS_KIB)
/* And room for the demangler (VMS__DEMANGLE_ROOM) on the alternate stacks vmstack gives
 * threads, for mangled C++ names of up to 760 characters (a longer one is shown mangled):
 * of the 45,876 C++ names libstdc++, Boost and LLVM 14 export, 1,174 are longer than the
 * 190 that fitted without it, 7 longer than 440, none longer than 760. That makes the
 * stack one of the 512 KiB class rather than 128 KiB: address space, as only the pages a
 * signal handler or a report touches are ever backed. A thread's own alternate stack
 * needs only REPORTER_STACK: names that do not fit it stay mangled. */
#define DEMANGLER_STACK VMS__DEMANGLE_ROOM(760)
/* The least room a report is written in on a thread's own alternate stack, which no
 * guard of vmstack's protects (the program's, or a sanitizer's): about twice what a
 * report itself uses with libunwind (13 KiB on x86-64), leaving the rest to the hook.
 * With less, a report ran off such a stack and overwrote the memory below it (an 8 KiB
 * stack in a static array: 3 KiB of it), and then the task was killed and the process
 * went on with that damage. */
#define OWN_ALT_MIN_ROOM (32 * VMS_KIB)
/* How far the stack pointer may be from the fault address for a main-thread or
 * foreign-thread fault to count as an overflow: a push writes just below sp, a large
 * frame is written upwards from its lowest byte, and stack-clash probes stay within a
 * guard of 64 KiB below sp. */
#define SP_BELOW_SLACK (64 * VMS_KIB)
#define SP_ABOVE_SLACK VMS_MIB
/* Linux's stack_guard_gap: 256 pages below a growing stack that no mapping may take
 * (mm/mmap.c, since 4.12). */
#define STACK_GUARD_GAP_PAGES 256

/* How far below the interrupted stack pointer the kernel writes a signal handler's
 * frame at most: AT_MINSIGSTKSZ (the kernel's largest frame on this CPU; a process that
 * never asked for AMX state gets a smaller one), plus x86-64's red zone, which the
 * kernel skips first. Set at install (sysconf is not on POSIX's list of
 * async-signal-safe functions). */
#if defined(__x86_64__)
#define RED_ZONE 128
#else
#define RED_ZONE 0
#endif
static size_t frame_reach;

static struct sigaction old_actions[2];   /* [0] SIGSEGV, [1] SIGBUS */
static atomic_bool old_spent[2];          /* an SA_RESETHAND predecessor was called */
static atomic_int installed;
static atomic_size_t overflow_count;

/* The main thread's stack: [main_lo, main_hi) is the largest range it may grow over
 * (RLIMIT_STACK, bounded by the mapping below it), main_floor the end of that mapping. */
static uintptr_t main_lo, main_hi, main_floor;
static size_t main_gap;
static char main_name[16];

static pthread_key_t alt_key;
static bool alt_key_made;   /* false: no key was left; alt_key names someone else's */
static pthread_once_t alt_key_once = PTHREAD_ONCE_INIT;

enum { THREAD_NEW = 0, THREAD_INITIALIZING, THREAD_READY };
/* Per thread, written by the thread itself (initial-exec TLS: readable in the handler). */
static VMS_TLS struct {
    int state;
    int depth;                  /* reports in progress on this thread (0 or 1) */
    int sig;                    /* the signal of the fault being reported */
    bool task_thread;           /* set up by the task layer's thread start */
    struct vms_stack *given;    /* the alternate stack its creator took for it */
    struct vms_stack *alt;      /* its alternate stack, freed by alt_release at its exit */
    uintptr_t lo, hi;           /* a foreign thread's stack (pthread_getattr_np) */
    size_t guard;
    char name[16];
} self;

enum { NOT_OURS = 0, DIE = 1 };

/* ---- the previous action ---------------------------------------------------------- */

/* async-signal-safe: the action saved for sig at install. */
static const struct sigaction *old_action(int sig)
{
    return &old_actions[sig == SIGBUS];
}

/* async-signal-safe: whether si is a fault of the interrupted instruction, which
 * repeats when the handler returns: generated by the kernel (si_code > 0; SI_USER,
 * SI_TKILL and SI_QUEUE are sent by a program, whatever si_addr holds), and not the
 * kernel's asynchronous SIGBUS: BUS_MCEERR_AO reports a hardware memory error found in
 * some page of the process (sent early under PR_MCE_KILL_EARLY or
 * vm.memory_failure_early_kill; mm/memory-failure.c), not at the instruction; nor
 * aarch64's asynchronous tag-check fault (SEGV_MTEAERR, Linux 5.10: found some time
 * after the access, reported at the next entry into the kernel, si_addr 0). */
static bool is_fault(int sig, const siginfo_t *si)
{
    return si->si_code > 0 && !(sig == SIGBUS && si->si_code == BUS_MCEERR_AO) &&
           !(sig == SIGSEGV && si->si_code == SEGV_MTEAERR);
}

/* async-signal-safe: the kernel's own SIGSEGV (SI_KERNEL): a general-protection fault,
 * which repeats on return like any fault, or a signal frame it could not write
 * (force_sigsegv), which does not; either way forced on the process even under
 * SIG_IGN. */
static bool kernel_sigsegv(int sig, const siginfo_t *si)
{
    return sig == SIGSEGV && si->si_code == SI_KERNEL;
}

/* async-signal-safe: whether the action installed before vmstack would end the process
 * on a fault: SIG_DFL, SIG_IGN (the kernel forces SIG_DFL on an ignored fault), or an
 * SA_RESETHAND handler that has had its one call. */
static bool old_action_dies(int sig)
{
    const struct sigaction *old = old_action(sig);
    return old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN ||
           ((old->sa_flags & SA_RESETHAND) && atomic_load(&old_spent[sig == SIGBUS]));
}

/* async-signal-safe: sigaction(2) is on POSIX's list. */
static void restore_default(int sig)
{
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
}

/* async-signal-safe: hands a fault that is not ours to the action installed before
 * vmstack, as the kernel would have: with its mask blocked; an SA_RESETHAND
 * predecessor only once, after which it counts as SIG_DFL (vmstack's own handler stays
 * installed, so overflows are still caught). A SIG_DFL or SIG_IGN predecessor gets
 * SIG_DFL back and the fault repeats on return, so the process dies of the real fault
 * and the core shows it; a signal sent by kill() does not repeat, so it is raised again
 * (and SIG_IGN keeps ignoring it, as it would have). */
static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = old_action(sig);
    bool sent = si && !is_fault(sig, si);
    /* The kernel's own SIGSEGV (SI_KERNEL) need not repeat either: for a signal frame it
     * could not write (force_sigsegv) nothing faults again on return, and the kernel
     * forces it on the process even under SIG_IGN. Raised again, it kills the process
     * as it would have without vmstack (a general-protection fault, which would repeat,
     * dies of it the same way at its instruction); returning would leave the process
     * running past it with vmstack's handler gone. */
    bool forced = si && kernel_sigsegv(sig, si);
    /* sa_handler and sa_sigaction share their storage, and the kernel takes SIG_DFL and
     * SIG_IGN for what they are whatever the flags say (SA_SIGINFO included): so must
     * we, rather than call address 0 or 1. */
    bool plain = old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN;
    /* SA_RESETHAND: the kernel would have put SIG_DFL in the predecessor's place as it
     * called it; putting SIG_DFL in vmstack's place instead would leave every later
     * overflow uncaught. */
    bool spent = !plain && (old->sa_flags & SA_RESETHAND) &&
                 atomic_exchange(&old_spent[sig == SIGBUS], true);
    if (plain || spent) {
        if (sent && !forced && old->sa_handler == SIG_IGN) return;
        restore_default(sig);
        if (sent || forced) raise(sig);   /* pending until this handler returns */
        return;
    }
    sigset_t prev;
    pthread_sigmask(SIG_BLOCK, &old->sa_mask, &prev);
    if ((old->sa_flags & SA_NODEFER) && !sigismember(&old->sa_mask, sig)) {
        /* The kernel would not have blocked sig for it (vmstack's handler has it
         * blocked): a fault inside it must reach it again, not kill the process. */
        sigset_t self_set;
        sigemptyset(&self_set);
        sigaddset(&self_set, sig);
        pthread_sigmask(SIG_UNBLOCK, &self_set, NULL);
    }
    if (old->sa_flags & SA_SIGINFO) old->sa_sigaction(sig, si, uc);
    else old->sa_handler(sig);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
}

/* ---- classification ------------------------------------------------------------- */

/* async-signal-safe: the interrupted pc and sp. */
static uintptr_t context_pc(const ucontext_t *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.pc;
#endif
}

/* async-signal-safe. Not instrumented by ASan: is_signal_frame reads it from candidate
 * contexts on a task's stack, where suspended frames keep their poisoned redzones. */
__attribute__((no_sanitize("address")))
static uintptr_t context_sp(const ucontext_t *uc)
{
#if defined(__x86_64__)
    return (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
#elif defined(__aarch64__)
    return (uintptr_t)uc->uc_mcontext.sp;
#endif
}

/* async-signal-safe: the sp is near the fault for a main-thread or foreign-thread
 * overflow (see SP_BELOW_SLACK). */
static bool sp_near(uintptr_t addr, uintptr_t sp)
{
    return addr + SP_BELOW_SLACK >= sp && addr <= sp + SP_ABOVE_SLACK;
}

/* async-signal-safe: one past a stack's highest usable byte. */
static uintptr_t top_of(const struct vms_stack *st)
{
    return (uintptr_t)st->base + st->size;
}

/* async-signal-safe: for a wild access, the range the frame-pointer walk may read: the
 * stack the faulting code runs on, if vmstack knows it (the running task's, the main
 * thread's, this thread's own); otherwise an empty range, and the trace shows the pc. */
static void faulting_stack(struct vms__fault *f)
{
    uintptr_t lo = f->sp, hi = f->sp;
    const struct vms_stack *ts = f->have_task ? f->task.stack : NULL;
    if (ts && f->sp >= (uintptr_t)ts->base && f->sp < top_of(ts)) {
        lo = (uintptr_t)ts->base;
        hi = top_of(ts);
    } else if (main_hi && f->tid == (long)getpid() && f->sp >= main_floor && f->sp < main_hi) {
        hi = main_hi;
    } else if (self.hi && f->sp >= self.lo && f->sp < self.hi) {
        hi = self.hi;
    }
    f->walk_lo = lo;
    f->walk_hi = hi;
}

const char vms__guard_fork_main_why[] =
    "this thread is the process's main thread (the child of a fork made by the thread's "
    "body): ending it alone would end the process with exit status 0";

/* async-signal-safe. A vms thread's body that forked: in the child it is the main
 * thread. Ending it would end the process as if it had succeeded (exit status 0) once
 * its other threads, if any, end: like the main thread, it is not killed alone. */
bool vms__guard_is_fork_main(const struct vms__task_info *ti, long tid)
{
    return ti->kind == VMS__TASK_THREAD && tid == (long)getpid();
}

/* async-signal-safe: fills f for a guard or trailing-guard hit; returns false when the
 * address is not one vmstack answers for (the guard of no stack at all). */
static bool classify_guard(struct vms__fault *f, const struct vms__where *w)
{
    const struct vms_stack *st = w->kind == VMS__WHERE_GUARD ? w->st : NULL;
    const struct vms_stack *below = w->below;
    size_t guard = w->arena->guard_size;
    if (!st && !below) return false;
    uintptr_t g_lo = st ? (uintptr_t)st->base - guard : top_of(below);

    /* The candidates: the stack above the guard overflowed (sp in the guard or in that
     * stack), or the stack below it underflowed (sp inside it). */
    const struct vms_stack *over = st && f->sp >= g_lo && f->sp <= top_of(st) ? st : NULL;
    const struct vms_stack *under =
        below && f->sp >= (uintptr_t)below->base && f->sp <= top_of(below) ? below : NULL;

    struct vms__task_info ti;
    f->have_task = vms__task_current(&ti) == 0;
    if (f->have_task) f->task = ti;
    /* Both hold only for sp exactly at the guard's lowest byte, which is also the top
     * of the stack below: the sp of an empty stack (a function entered there on
     * aarch64 stores below it). That is the stack below, unless the running task's own
     * stack says otherwise. */
    if (over && under) {
        if (f->have_task && ti.stack == st) under = NULL;
        else over = NULL;
    }
    /* A frame larger than the guard leaves sp below it while the write lands in the
     * guard: the running task's own stack settles which one it was. sp is then inside
     * the stack below, or, below an arena's first slot, outside the arena (within a
     * stack-clash probe's reach of the fault). */
    if (!over && st && f->have_task && ti.stack == st &&
        (under || (f->sp < g_lo && sp_near(f->addr, f->sp)))) {
        over = st;
        under = NULL;
    }

    const struct vms_stack *blamed = over ? over : under;
    f->guard = guard;
    if (!blamed) {
        /* Not next to this guard: a wild pointer. Describe the stack the guard
         * protects, and never blame its owner. */
        const struct vms_stack *victim = st ? st : below;
        f->kind = VMS__FAULT_WILD;
        f->lo = (uintptr_t)victim->base;
        f->hi = top_of(victim);
        faulting_stack(f);
        f->action = VMS__ACT_ABORT;
        return true;
    }
    f->kind = over ? VMS__FAULT_OVERFLOW : VMS__FAULT_UNDERFLOW;
    f->lo = (uintptr_t)blamed->base;
    f->hi = top_of(blamed);
    f->walk_lo = f->lo;
    f->walk_hi = f->hi;
    if (over && (!f->have_task || ti.stack != over) &&
        vms__task_reclaim_leaving((struct vms_stack *)over)) {
        /* A fiber caught leaving (its resumer made current already): its overflow. */
        f->have_task = vms__task_current(&ti) == 0;
        if (f->have_task) f->task = ti;
    }
    if (f->have_task && ti.stack != blamed) f->have_task = false;
    bool alt = (uintptr_t)f->uc->uc_stack.ss_sp == f->lo;
    if (alt) {
        /* A handler of the program's (SA_ONSTACK) ran off the thread's alternate stack:
         * its stack pointer was below the stack, so the kernel put this fault's frame at
         * the stack's top, and this handler runs there, over the handler's outer frames.
         * The walk stops below our own frame: above it nothing is left to read. */
        uintptr_t here = (uintptr_t)__builtin_frame_address(0);
        if (here > f->lo && here < f->walk_hi) f->walk_hi = here;
    }
    if (vms__opt.on_overflow == VMS_ABORT) {
        f->action = VMS__ACT_ABORT;
    } else if (alt) {
        f->action = VMS__ACT_ABORT;
        f->why_no_kill = "the stack is this thread's alternate signal stack: a signal handler "
                         "installed with SA_ONSTACK ran out of it, and the kernel wrote this "
                         "fault's frame over the handler's outer frames";
    } else if (!f->have_task) {
        f->action = VMS__ACT_ABORT;
        f->why_no_kill = "no vmstack fiber or thread runs on this stack: nothing can be "
                         "killed alone";
    } else if (vms__guard_is_fork_main(&f->task, f->tid)) {
        f->action = VMS__ACT_ABORT;
        f->why_no_kill = vms__guard_fork_main_why;
    } else {
        f->action = VMS__ACT_KILL;
    }
    return true;
}

/* The C-library stack of a vms thread, as /proc/self/maps shows it: the no-access guard
 * that holds the fault address and the read-write mapping right above it. */
struct clib_stack {
    uintptr_t addr;
    uintptr_t guard_lo, guard_hi;    /* the no-access mapping holding addr */
    uintptr_t lo, hi;                /* the read-write mapping that starts at guard_hi */
    bool in_guard, found;
};

/* async-signal-safe */
static bool clib_map(const struct vms__map *m, void *ctx)
{
    struct clib_stack *c = ctx;
    if (c->in_guard) {
        c->found = m->lo == c->guard_hi && m->perms[0] == 'r' && m->perms[1] == 'w';
        c->lo = m->lo;
        c->hi = m->hi;
        return false;
    }
    if (c->addr < m->lo || c->addr >= m->hi) return true;
    if (m->perms[0] != '-' || m->perms[1] != '-' || m->perms[2] != '-') return false;
    c->in_guard = true;
    c->guard_lo = m->lo;
    c->guard_hi = m->hi;
    return true;
}

/* async-signal-safe: an overflow of a vms thread's own C-library stack, outside its body
 * (vmstack's start routine, or the TLS and thread-specific-data destructors at exit,
 * which run there): the fault in a no-access mapping right below a read-write one, with
 * sp below that mapping's end and near the fault, and not on a vmstack stack. sp may be
 * below the guard (the C library's: one page): a frame larger than it, without
 * stack-clash probes, written upwards from its lowest byte (through whatever lies
 * below, another thread's stack) reached the guard from below. Read from
 * /proc/self/maps only when such a fault happens: thread start pays nothing. */
static bool classify_clib(struct vms__fault *f, uintptr_t walk_lo)
{
    struct vms__where w;
    if (vms__arena_where((const void *)f->sp, &w) != VMS__WHERE_NONE) return false;
    struct clib_stack c;
    memset(&c, 0, sizeof c);
    c.addr = f->addr;
    if (!vms__sigsafe_maps_each(clib_map, &c) || !c.found) return false;
    if (f->sp >= c.hi || !sp_near(f->addr, f->sp)) return false;
    /* The stack above that guard must be this thread's own: glibc keeps the thread's
     * control block (pthread_self, read from the thread pointer) at its top. Not a
     * guard of another thread's stack above that a wild write reached. */
    uintptr_t me = (uintptr_t)pthread_self();
    if (me < c.lo || me >= c.hi) return false;
    f->kind = VMS__FAULT_CLIB;
    prctl(PR_GET_NAME, self.name, 0, 0, 0);   /* async-signal-safe: a system call */
    f->lo = c.lo;
    f->hi = c.hi;
    f->guard = c.guard_hi - c.guard_lo;
    f->name = self.name;
    f->walk_lo = walk_lo;
    f->walk_hi = c.hi;
    return true;
}

/* async-signal-safe: an overflow of the main thread's stack or of a foreign thread's
 * (one that vms__guard_thread_init saw), judged by the fault address just below the
 * stack's limit and a stack pointer near it; or of a vms thread's C-library stack. */
static bool classify_thread(struct vms__fault *f)
{
    size_t page = vms__os_page_size();
    uintptr_t walk_lo = (f->addr | (page - 1)) + 1;
    if (walk_lo < f->sp) walk_lo = f->sp;
    /* The main thread is the one whose tid is the pid: after a fork, the child's only
     * thread, which runs on the main stack when the main thread forked, and otherwise
     * on the stack of the thread that forked, its own (below). */
    uintptr_t lowest = main_lo >= main_floor + main_gap ? main_lo - main_gap : main_floor;
    if (main_hi && f->tid == (long)getpid() && f->addr >= lowest && f->addr < main_hi &&
        sp_near(f->addr, f->sp)) {
        f->kind = VMS__FAULT_MAIN;
        f->lo = main_lo;
        f->hi = main_hi;
        f->guard = main_gap;
        f->name = main_name;
        f->walk_lo = walk_lo;
        f->walk_hi = main_hi;
    } else if (self.hi) {
        size_t g = self.guard > SP_BELOW_SLACK ? self.guard : SP_BELOW_SLACK;
        if (f->addr >= self.lo || f->addr + g < self.lo || !sp_near(f->addr, f->sp))
            return false;
        f->kind = VMS__FAULT_THREAD;
        /* The name is read now rather than at thread init (one system call fewer at
         * every thread start, and the name the thread has now). async-signal-safe:
         * prctl is a plain system call. */
        prctl(PR_GET_NAME, self.name, 0, 0, 0);
        f->lo = self.lo;
        f->hi = self.hi;
        f->guard = self.guard;
        f->name = self.name;
        f->walk_lo = walk_lo;
        f->walk_hi = self.hi;
    } else if (!self.task_thread || !classify_clib(f, walk_lo)) {
        return false;
    }
    f->action = VMS__ACT_ABORT;   /* the default action follows the report */
    return true;
}

/* async-signal-safe: whether the ucontext at a, below hi, is one the kernel saved on
 * this stack for a signal handler: the thread's alternate stack in uc_stack (as in the
 * fault's own context, alt), no uc_link, only the flags Linux sets, and a saved stack
 * pointer above the whole context and inside the stack. Reads the task's stack word by
 * word, redzones of ASan-instrumented frames included, so it is not instrumented. */
__attribute__((no_sanitize("address")))
static bool is_signal_frame(uintptr_t a, uintptr_t hi, const stack_t *alt)
{
    const size_t need = offsetof(ucontext_t, uc_sigmask) + sizeof(sigset_t) >
                                offsetof(ucontext_t, uc_mcontext) + sizeof(mcontext_t)
                            ? offsetof(ucontext_t, uc_sigmask) + sizeof(sigset_t)
                            : offsetof(ucontext_t, uc_mcontext) + sizeof(mcontext_t);
    if (hi - a < need) return false;
    const ucontext_t *c = (const ucontext_t *)a;
    uintptr_t sp = context_sp(c);
    return c->uc_stack.ss_sp == alt->ss_sp && c->uc_stack.ss_size == alt->ss_size &&
           !c->uc_link && (c->uc_flags & ~7UL) == 0 && sp >= a + need && sp <= hi;
}

/* async-signal-safe: the mask to go on with once the task on [lo, hi) is killed. The
 * interrupted code's mask (uc's), unless the fault happened inside the program's
 * signal handlers running on the task's stack (installed without SA_ONSTACK): the kill
 * skips their returns, which would have put back the mask of the code they
 * interrupted, so the outermost one's saved mask is taken (never blocking more than
 * uc's: a stale copy found by mistake can only unblock what a handler blocked).
 * sigandset is a GNU extension, not on POSIX's list: glibc's only ANDs the words of
 * two sets in memory. */
static void resumer_mask(const ucontext_t *uc, uintptr_t sp, uintptr_t lo, uintptr_t hi,
                         sigset_t *out)
{
    *out = uc->uc_sigmask;
    if (!uc->uc_stack.ss_sp || !uc->uc_stack.ss_size) return;
    uintptr_t a = sp > lo ? sp : lo;
    a = (a + sizeof(uintptr_t) - 1) & ~(uintptr_t)(sizeof(uintptr_t) - 1);
    const ucontext_t *outer = NULL;
    vms__track_raw_reads_begin();
    for (; a < hi; a += sizeof(uintptr_t))
        if (is_signal_frame(a, hi, &uc->uc_stack)) outer = (const ucontext_t *)a;
    if (outer) sigandset(out, out, &outer->uc_sigmask);
    vms__track_raw_reads_end();
}

/* async-signal-safe: the alternate stack the kernel disabled for this handler, to be
 * enabled again after a kill (which skips the sigreturn that would have done it), or
 * NULL. A stack set up with SS_AUTODISARM (Linux 4.7, a program's own, which vmstack
 * keeps) is disabled at each delivery on it; the saved uc_stack holds it with that flag
 * (kernel/signal.c, __save_altstack and restore_altstack). */
static const stack_t *autodisarmed(const ucontext_t *uc)
{
    return (uc->uc_stack.ss_flags & SS_AUTODISARM) ? &uc->uc_stack : NULL;
}

/* async-signal-safe: the process dies by sig (SIGSEGV or SIGBUS) with its default
 * action, so that a core dump and the exit status show the real fault. Not instrumented
 * by ASan, nor are its callers (VMS_NO_ASAN_NORETURN). */
VMS_NO_ASAN_NORETURN
static _Noreturn void die_by(int sig)
{
    restore_default(sig);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    raise(sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    _exit(128 + sig);   /* not reached: the default action of SIGSEGV/SIGBUS kills */
}

/* async-signal-safe: a fault raised on this thread while it writes a report (the
 * report's own reads, such as a symbol table whose file was truncated since it was
 * mapped, or the program's oops hook), whatever its address: the report is cut short
 * with a line saying so and "aborting", and the process dies by the signal of the
 * fault being reported, with the default action (not by the second fault, and never
 * chained to the program's handler for it, which would run inside vmstack's report).
 * Does not return. */
VMS_NO_ASAN_NORETURN
static void nested_fault(int sig, const siginfo_t *si, const ucontext_t *uc)
{
    int orig = self.sig;
    vms__oops_nested(sig, (uintptr_t)si->si_addr, context_pc(uc));
    restore_default(sig);
    die_by(orig);
}

/* async-signal-safe: the bytes left below the caller's frame on the thread's
 * alternate stack when the handler runs on one that is not vmstack's own (those have a
 * guard: a report that runs out of one ends with "fault while reporting"); SIZE_MAX
 * otherwise. uc_stack is the alternate stack as it was when the signal was delivered
 * (with SS_AUTODISARM, also when it has been disabled since). */
static size_t own_alt_room(const ucontext_t *uc, uintptr_t here)
{
    uintptr_t lo = (uintptr_t)uc->uc_stack.ss_sp;
    size_t size = uc->uc_stack.ss_size;
    if (!lo || here < lo || here - lo >= size) return SIZE_MAX;
    struct vms__where w;
    if (vms__arena_where((const void *)lo, &w) == VMS__WHERE_STACK && w.st &&
        (uintptr_t)w.st->base == lo)
        return SIZE_MAX;
    return here - lo;
}

/* async-signal-safe: whether si may be the kernel's report that it could not write a
 * signal handler's frame below the interrupted stack pointer (force_sigsegv: SIGSEGV,
 * SI_KERNEL, no address): the signal being delivered is lost, nothing faults again on
 * return, and on a task's stack the frame's write went into its guard. On x86-64 a
 * general-protection or segment fault (or a TDX guest's #VE) reports the same code and
 * address; its trap number tells it apart. The frame's failure leaves the thread's last
 * trap number in place: after a thread survived a general-protection fault (a handler
 * of the program's recovered from it), its lost frames pass as such faults, to the
 * program's handler or death, unreported (docs/oops.md). Other sources of this code
 * (an rseq area the kernel rejects, a failed sigreturn) are taken for a lost frame when
 * the stack pointer is that close to a guard. */
static bool frame_lost(int sig, const siginfo_t *si, const ucontext_t *uc)
{
    if (!kernel_sigsegv(sig, si) || si->si_addr) return false;
#if defined(__x86_64__)
    long trap = (long)uc->uc_mcontext.gregs[REG_TRAPNO];
    if ((trap >= 10 && trap <= 13) || trap == 20) return false;   /* #TS #NP #SS #GP, #VE */
#else
    (void)uc;
#endif
    return true;
}

/* async-signal-safe: for a lost signal frame, the address to report: the lowest byte the
 * frame may need below sp, kept within the guard of the vmstack stack sp is on (a guard
 * smaller than a frame would otherwise put it in the stack below). The kernel does not
 * say where its write failed. */
static uintptr_t frame_low(uintptr_t sp)
{
    uintptr_t a = sp > frame_reach ? sp - frame_reach : 0;
    struct vms__where w;
    int k = vms__arena_where((const void *)sp, &w);
    if ((k == VMS__WHERE_STACK || k == VMS__WHERE_GUARD) && w.st) {
        uintptr_t g_lo = (uintptr_t)w.st->base - w.arena->guard_size;
        if (a < g_lo) a = g_lo;
    }
    return a;
}

/* async-signal-safe: handle's work, with cancellation disabled; cancel is the state to
 * put back before a kill. foreign: whether an overflow of a stack that is not vmstack's
 * (the main thread's, a foreign thread's, a vms thread's C-library stack) is reported.
 * Not instrumented by ASan: it calls the noreturn kill (VMS_NO_ASAN_NORETURN). */
VMS_NO_ASAN_NORETURN
static int handle_fault(int sig, siginfo_t *si, const ucontext_t *uc, int cancel, bool foreign)
{
    if (self.depth > 0) nested_fault(sig, si, uc);
    struct vms__fault f;
    memset(&f, 0, sizeof f);
    f.sig = sig;
    f.uc = uc;
    f.addr = (uintptr_t)si->si_addr;
    f.pc = context_pc(uc);
    f.sp = context_sp(uc);
    f.tid = vms__sigsafe_gettid();
    if (frame_lost(sig, si, uc)) {
        f.frame = true;
        f.addr = frame_low(f.sp);
    }

    struct vms__where w;
    int kind = vms__arena_where((const void *)f.addr, &w);
    bool ours = kind == VMS__WHERE_GUARD || kind == VMS__WHERE_TRAILER ? classify_guard(&f, &w)
              : kind == VMS__WHERE_NONE && foreign ? classify_thread(&f)
              : false;
    if (!ours) return NOT_OURS;

    /* While the report is written, SIGSEGV and SIGBUS are unblocked: a fault of the
     * report itself or of the oops hook comes back here (nested_fault) rather than
     * killing the process at once, unreported, as the kernel does with a fault whose
     * signal is blocked. Every other signal is blocked from here on: a handler of the
     * program's that ran inside the report and left it by longjmp (a timeout on an
     * interval timer, say) left the task RUNNING and never killed, the thread marked
     * as reporting (its next overflow became a "fault while reporting" and killed the
     * process) and the report lock held. Such a signal waits for the kill (the
     * resumer's stack) or for death; the mask is not put back here. */
    sigset_t quiet;
    sigfillset(&quiet);   /* glibc's leaves out its own SIGCANCEL and SIGSETXID */
    sigdelset(&quiet, SIGSEGV);
    sigdelset(&quiet, SIGBUS);
    self.sig = sig;
    self.depth++;
    pthread_sigmask(SIG_SETMASK, &quiet, NULL);
    if (f.kind != VMS__FAULT_WILD) atomic_fetch_add(&overflow_count, 1);

    /* On the thread's own alternate stack, a report that does not fit would write below
     * it, into memory that may be anyone's: then a short report, and the process dies. */
    size_t room = own_alt_room(uc, (uintptr_t)__builtin_frame_address(0));
    if (room < OWN_ALT_MIN_ROOM) {
        vms__oops_report_no_room(&f, room, uc->uc_stack.ss_size, OWN_ALT_MIN_ROOM);
        self.depth--;
        return DIE;
    }

    vms_oops oops;
    int action = vms__oops_report(&f, &oops);
    self.depth--;
    if (action == VMS__ACT_KILL) {
        sigset_t mask;
        resumer_mask(uc, f.sp, f.lo, f.hi, &mask);
        uintptr_t here = (uintptr_t)__builtin_frame_address(0);
        uintptr_t alt = (uintptr_t)uc->uc_stack.ss_sp;
        if (alt && here >= alt && here - alt < uc->uc_stack.ss_size)
            vms__track_signal_stack_left(uc->uc_stack.ss_sp, uc->uc_stack.ss_size);
        vms__task_kill_current(&oops, &mask, autodisarmed(uc), cancel);
    }
    return DIE;
}

/* async-signal-safe: classifies, reports and, for a task to kill, kills it (no
 * return). Returns NOT_OURS, or DIE after a report when the process must die by the
 * signal. Cancellation is disabled meanwhile: the calls below include cancellation
 * points (open, read and close of /proc/self/maps and of an object file to adopt,
 * sigtimedwait, and libunwind's read of its validation pipe), and a request pending on
 * a thread that overflowed before reaching one of its own would otherwise act inside
 * the handler: the thread unwound from the middle of the report, the rest of the report
 * lost and the task never killed. The request acts at the thread's next cancellation
 * point instead, after the kill: the state is put back on the resumer's stack once the
 * kill is done (vms__task_kill_current; under asynchronous cancellation, put back in
 * the handler, a pending request acted there and unwound the thread out of the kill,
 * its join a stale value); a killed thread's at its end, after vmstack's bookkeeping.
 * pthread_setcancelstate is not on POSIX's list,
 * but POSIX requires it to be async-cancel-safe, and glibc's is one atomic update of
 * the calling thread's own word. */
static int handle(int sig, siginfo_t *si, void *uctx, bool foreign)
{
    if ((sig != SIGSEGV && sig != SIGBUS) || !si || !uctx) return NOT_OURS;
    /* Only a fault of the interrupted instruction can be a guard hit (is_fault): a
     * signal sent by a program, or the kernel's report of a memory error elsewhere, is
     * not ours whatever si_addr holds. */
    if (!is_fault(sig, si)) return NOT_OURS;
    int cancel;
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel);
    int r = handle_fault(sig, si, uctx, cancel, foreign);
    /* Not before the death a report ends in: a request made meanwhile would act here
     * under asynchronous cancellation, and the thread unwind out of it, the process
     * alive past its "aborting". */
    if (r == NOT_OURS) pthread_setcancelstate(cancel, NULL);
    return r;
}

/* async-signal-safe: for programs that own SIGSEGV. Dying from inside the program's
 * handler cannot repeat the fault by returning, so the signal is raised with the
 * default action and unblocked. An overflow of a stack that is not vmstack's (the main
 * thread's, a foreign thread's) is not vmstack's fault: it is the program's to handle.
 * Not instrumented by ASan (VMS_NO_ASAN_NORETURN). */
VMS_NO_ASAN_NORETURN
int vms_handle_fault(int sig, siginfo_t *info, void *uctx)
{
    int saved = errno;
    if (handle(sig, info, uctx, false) == NOT_OURS) {
        errno = saved;
        return 0;
    }
    die_by(sig);
}

/* async-signal-safe: the installed handler. After a report that ends in death it puts
 * SIG_DFL back and returns: the faulting instruction runs again and the process dies
 * of the signal at the real fault, which is what a core dump should show. An overflow
 * of a stack that is not vmstack's (the main thread's, a foreign thread's, a vms
 * thread's C-library stack) is reported only when the action before vmstack would end
 * the process anyway; a handler of the program's gets it as it would without vmstack
 * (a crash reporter, or a runtime that recovers from its main stack's overflow). */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (handle(sig, si, uc, old_action_dies(sig)) == DIE) {
        restore_default(sig);
        /* The kernel's own SIGSEGV (a lost signal frame) does not come back on return:
         * raised, and the process dies here (SIGSEGV is unblocked while a report runs;
         * the core shows this handler, not a faulting instruction, which there is none). */
        if (kernel_sigsegv(sig, si)) raise(sig);
        /* The mask sigreturn puts back for the faulting instruction blocks every other
         * signal too: one that arrived during the report, delivered first, could leave
         * by longjmp and the process would go on past its overflow. */
        sigset_t *m = &((ucontext_t *)uc)->uc_sigmask;
        sigfillset(m);
        sigdelset(m, SIGSEGV);
        sigdelset(m, SIGBUS);
    } else {
        chain(sig, si, uc);
    }
    errno = saved;
}

/* ---- installation ----------------------------------------------------------------- */

/* The mapping walk of read_main_stack: the mapping before the current one. */
struct main_walk {
    uintptr_t prev_start, prev_end;
    bool prev_noaccess;
};

static bool main_stack_map(const struct vms__map *m, void *ctx)
{
    struct main_walk *w = ctx;
    if (m->path_len >= 7 && memcmp(m->path, "[stack]", 7) == 0) {
        struct rlimit rl;
        size_t room = (size_t)(m->hi - w->prev_end);
        size_t limit = getrlimit(RLIMIT_STACK, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
                           ? (size_t)rl.rlim_cur : room;
        if (limit > room) limit = room;
        /* A no-access mapping right below the stack is a guard someone placed there
         * (qemu-user maps the guest's main stack whole, with one such page): faults in
         * it are overflows too. */
        main_floor = w->prev_noaccess && w->prev_end == m->lo ? w->prev_start : w->prev_end;
        main_lo = m->hi - limit;
        main_hi = m->hi;
        return false;
    }
    w->prev_start = m->lo;
    w->prev_end = m->hi;
    w->prev_noaccess = strncmp(m->perms, "---", 3) == 0;
    return true;
}

/* Reads the main thread's stack from /proc/self/maps: the "[stack]" mapping's end is
 * its top, the mapping below it bounds how far it can grow. */
static void read_main_stack(void)
{
    struct main_walk w = { 0, 0, false };
    (void)vms__sigsafe_maps_each(main_stack_map, &w);
    /* Not found (no /proc in a container, a sandbox that hides it): the fault handler
     * cannot tell the main stack's overflow from other faults, and it dies by SIGSEGV
     * unreported, as without vmstack. Said here, once (it was not said at all). */
    if (!main_hi)
        vms__log_warn("the main thread's stack is not in /proc/self/maps (unreadable, or no "
                      "[stack] line): an overflow of the main thread's stack will not be "
                      "reported; the process dies by SIGSEGV");
    main_gap = STACK_GUARD_GAP_PAGES * vms__os_page_size();
    prctl(PR_GET_NAME, main_name, 0, 0, 0);
}

/* Thread exit: the alternate stack goes back to vmstack once the kernel no longer uses
 * it: when the thread has ended (no system call), or, where that cannot be known, once
 * disabled. If it cannot be disabled (the thread is still on it), it is leaked rather
 * than handed to another thread while in use. */
static void alt_release(void *p)
{
    self.alt = NULL;
    if (vms__stack_free_at_exit(p) == 0) return;
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_flags = SS_DISABLE;
    if (vms__os_sigaltstack(&ss, NULL) == 0) vms__stack_free(p);
}

static void make_alt_key(void)
{
    alt_key_made = pthread_key_create(&alt_key, alt_release) == 0;
    if (!alt_key_made)
        vms__log_warn("no thread-exit hook for alternate signal stacks (pthread_key_create "
                      "failed): each is buried when its thread gets it and freed after the "
                      "thread has ended, or leaked where robust mutexes do not work");
}

/* Whether the calling thread is the main thread, without a system call when the main
 * stack is known: the caller's frame is on it. (vms__guard_thread_init runs on the
 * thread's own stack: the task layer calls it before switching to a task.) */
static bool on_main_thread(void)
{
    if (!main_hi) return getpid() == vms__sigsafe_gettid();
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    return here >= main_lo && here < main_hi;
}

/* Records the stack of a thread vmstack did not create (pthread_getattr_np: it also
 * asks the kernel for the thread's CPU affinity, and allocates), for overflow reports
 * of that stack. */
static void read_thread_stack(void)
{
    pthread_attr_t attr;
    if (pthread_getattr_np(pthread_self(), &attr) != 0) return;
    void *addr;
    size_t size, guard = 0;
    if (pthread_attr_getstack(&attr, &addr, &size) == 0) {
        pthread_attr_getguardsize(&attr, &guard);
        self.lo = (uintptr_t)addr;
        self.hi = (uintptr_t)addr + size;
        self.guard = guard;
    }
    pthread_attr_destroy(&attr);
}

/* Warns once when a thread's own alternate stack, which vmstack keeps, may be too small
 * for the reporter (a fault on the alternate stack kills the process). */
static void check_own_alt_stack(const stack_t *own, size_t need)
{
    static atomic_int warned_small;
#if defined(VMSTACK_ASAN) || defined(VMSTACK_TSAN)
    bool small = false;   /* the sanitizer gives every thread a smaller one for its handler */
    (void)own;
    (void)need;
#else
    bool small = own->ss_size < need;
#endif
    if (small)
        vms__log_warn_once(&warned_small, "a thread's own alternate signal stack "
                           "(%zu bytes) is smaller than vmstack's reporter needs (%zu "
                           "bytes): an overflow report may be cut short, or with less "
                           "than %zu bytes free on it left out (the process then dies)",
                           (size_t)own->ss_size, need, (size_t)OWN_ALT_MIN_ROOM);
}

/* Whether the thread already has an alternate stack (the program's or a sanitizer
 * runtime's): then it keeps it. */
static bool has_own_alt_stack(size_t need)
{
    stack_t cur;
    if (vms__os_sigaltstack(NULL, &cur) != 0 || (cur.ss_flags & SS_DISABLE)) return false;
    check_own_alt_stack(&cur, need);
    return true;
}

/* Gives this thread the alternate stack st with one sigaltstack call, which also returns
 * the previous one: for a thread that cannot have one yet (vmstack's own, where no
 * program code ran), this saves asking first. Should it have had one after all (a
 * library that sets one in every new thread), that one is put back and kept (returns 1,
 * st unused). 0 or a negative errno. */
static int set_alt_stack(vms_stack *st, size_t need)
{
    stack_t ss, old;
    memset(&ss, 0, sizeof ss);
    memset(&old, 0, sizeof old);
    ss.ss_sp = st->base;
    ss.ss_size = st->size;
    int e = vms__os_sigaltstack(&ss, &old);
    if (e == -EPERM && vms__os_sigaltstack(NULL, &old) == 0 && (old.ss_flags & SS_ONSTACK)) {
        check_own_alt_stack(&old, need);   /* running on it: it cannot change */
        return 1;
    }
    if (e) return e;
    if (old.ss_flags & SS_DISABLE) return 0;
    if (vms__os_sigaltstack(&old, NULL) != 0) return 0;   /* ours stays: protected either way */
    check_own_alt_stack(&old, need);
    return 1;
}

/* What a report needs of an alternate stack: a signal frame's worth and REPORTER_STACK. */
static size_t report_alt_size(void)
{
    size_t min = getauxval(AT_MINSIGSTKSZ);
    if (min < (size_t)MINSIGSTKSZ) min = (size_t)MINSIGSTKSZ;
    return min + REPORTER_STACK;
}

size_t vms__guard_alt_size(void)
{
    return report_alt_size() + DEMANGLER_STACK;
}

struct vms_stack *vms__guard_thread_alt(void)
{
    return self.alt;
}

int vms__guard_task_thread_init(struct vms_stack *alt)
{
    if (self.state == THREAD_NEW) {
        self.task_thread = true;
        self.given = alt;
        alt = NULL;
    }
    int e = vms__guard_thread_init();
    /* Not taken (the thread has one of its own, as under ASan): back to the pool. */
    if (self.given) {
        alt = self.given;
        self.given = NULL;
    }
    if (alt) vms__stack_free(alt);
    return e;
}

/* Says that a thread has no alternate signal stack: once per cause (what failed, and its
 * errno) for the whole process. The task layer asks again before every resume, and
 * every thread usually meets the same refusal (a seccomp profile that forbids
 * sigaltstack): a line or two per thread buried the program's own output. A different
 * cause is said too: it was once for everything, so a thread refused for another
 * reason (no memory for the stack, after sigaltstack's EPERM) said nothing. */
enum { NO_ALT_ALLOC, NO_ALT_SIGALTSTACK, NO_ALT_WHATS };
#define NO_ALT_ERRNOS 160   /* Linux's errnos are below 134; any above share the last */

static void tell_no_alt_stack(int what, int e)
{
    static atomic_bool told[NO_ALT_WHATS][NO_ALT_ERRNOS];
    int n = -e;
    if (n < 0 || n >= NO_ALT_ERRNOS) n = NO_ALT_ERRNOS - 1;
    if (atomic_exchange(&told[what][n], true)) return;
    vms__log_error("%s for thread %ld (%s): a stack overflow on a thread without one "
                   "cannot be reported and kills the process; fibers are not run there "
                   "(vms_fiber_resume returns the error). Said once for all threads, for "
                   "this error", what == NO_ALT_ALLOC ? "no alternate signal stack"
                                                     : "sigaltstack failed",
                   vms__sigsafe_gettid(), strerror(-e));
}

int vms__guard_thread_init(void)
{
    /* INITIALIZING also stops the recursion through vms_stack_alloc below. */
    if (self.state != THREAD_NEW) return 0;
    self.state = THREAD_INITIALIZING;
    int saved_errno = errno;   /* the caller's, whatever the calls below leave */
    /* vmstack's own threads come through vms__guard_task_thread_init (the task layer's
     * thread start) before any program code ran on them: they have no alternate stack to
     * ask about, and their own glibc stack runs only vmstack's start routine and, at
     * exit, thread-specific-data destructors: they get no foreign-stack record (an
     * overflow of that stack dies by SIGSEGV as it would without vmstack, unreported). */
    bool task_thread = self.task_thread;
    int e = 0;
    if (atomic_load(&installed)) vms__trace_load();   /* objects loaded since (if any) */
    pthread_once(&alt_key_once, make_alt_key);
    /* A foreign thread's stack, for overflow reports of threads vmstack did not create
     * (for vmstack's threads it is their glibc stack, which runs no program code). The
     * thread's name is read when a report needs it. */
    if (!task_thread && !on_main_thread()) read_thread_stack();

    size_t need = report_alt_size();
    /* Any other thread may have one: asked first, so that no stack is allocated (and
     * counted in the usage statistics) only to be freed. So do vmstack's own threads
     * under ASan, whose runtime gives every thread one (the stack their creator took
     * for them goes back to the pool). */
#ifdef VMSTACK_ASAN
    bool ask_first = true;
#else
    bool ask_first = !task_thread;
#endif
    if (ask_first && has_own_alt_stack(need)) goto done;
    vms_stack *st = self.given;
    self.given = NULL;
    if (!st) st = vms__stack_alloc_internal(vms__guard_alt_size(), true);
    if (!st) {
        e = -errno;
        tell_no_alt_stack(NO_ALT_ALLOC, e);
        goto done;
    }
    e = set_alt_stack(st, need);
    if (e < 0) {
        tell_no_alt_stack(NO_ALT_SIGALTSTACK, e);
        vms__stack_free(st);
        goto done;
    }
    if (e == 1) {
        vms__stack_free(st);   /* the thread keeps its own */
        e = 0;
    } else if (alt_key_made && vms__os_setspecific(alt_key, st) == 0) {
        /* Held until alt_release: the child of a fork, which does not have this
         * thread, frees it. A vms thread's start holds it with its body's stack. */
        self.alt = st;
        if (!task_thread) vms__stack_hold(st, NULL, NULL);
    } else {
        /* No exit hook (no key, or pthread_setspecific failed: ENOMEM): buried now, freed
         * once the thread has ended. Without a grave (robust mutexes do not work, or too
         * many graves wait) it is leaked at the thread's exit rather than freed while the
         * kernel may still deliver a signal on it. */
        (void)vms__stack_free_at_exit(st);
    }
done:
    /* After a failure the next call tries again (the task layer refuses to run tasks
     * on a thread without an alternate stack, so it will ask again). */
    self.state = e ? THREAD_NEW : THREAD_READY;
    errno = saved_errno;
    return e;
}

/* sigaction(2), with fault injection (VMS__OP_SIGACTION): 0 or a negative errno. */
static int set_action(int sig, const struct sigaction *sa, struct sigaction *old)
{
    int e = vms__os_injected(VMS__OP_SIGACTION);
    if (e) return e;
    return sigaction(sig, sa, old) == 0 ? 0 : -errno;
}

/* SA_RESTART for vmstack's action on sig as the action before it has it: a signal that
 * is not a fault (sent with kill, or the kernel's asynchronous SIGBUS) can interrupt a
 * blocking system call, which then goes on or fails with EINTR as the predecessor's
 * flags say (without SA_RESTART here, it failed under an SA_RESTART handler). SIG_DFL
 * and SIG_IGN never make a call fail with EINTR: SA_RESTART. Faults interrupt no call. */
static int restart_flag(int sig)
{
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) != 0) return SA_RESTART;
    bool plain = cur.sa_handler == SIG_DFL || cur.sa_handler == SIG_IGN;
    return plain || (cur.sa_flags & SA_RESTART) ? SA_RESTART : 0;
}

/* Called once, under the initialization lock (options.c). Both handlers or neither:
 * when SIGBUS's cannot be installed, SIGSEGV's previous action is put back, so that a
 * failure (reported as "overflows will not be reported") leaves no half of vmstack's
 * handling behind. installed says the handler is in place only once it is. */
int vms__guard_install(void)
{
    if (atomic_load(&installed)) return 0;
    vms__trace_load();
    read_main_stack();
    long min = sysconf(_SC_MINSIGSTKSZ);   /* AT_MINSIGSTKSZ, or the C library's estimate */
    frame_reach = (min > 0 ? (size_t)min : 2048) + RED_ZONE;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | restart_flag(SIGSEGV);
    int e = set_action(SIGSEGV, &sa, &old_actions[0]);
    if (e) return e;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | restart_flag(SIGBUS);
    e = set_action(SIGBUS, &sa, &old_actions[1]);
    if (e) {
        sigaction(SIGSEGV, &old_actions[0], NULL);
        return e;
    }
    vms__trace_note_restorer(SIGSEGV);
    atomic_store(&installed, 1);
    return 0;
}

bool vms__guard_installed(void)
{
    return atomic_load(&installed) != 0;
}

bool vms__guard_thread_is_task(void)
{
    return self.task_thread;
}

size_t vms__guard_overflows(void)
{
    return atomic_load_explicit(&overflow_count, memory_order_relaxed);
}

/* async-signal-safe */
void vms__guard_rearm(const stack_t *ss)
{
    int e = vms__os_sigaltstack(ss, NULL);
    if (VMS_UNLIKELY(e)) vms__oops_rearm_failed(e);
}

void vms__guard_late_overflow(const vms_oops *oops)
{
    atomic_fetch_add(&overflow_count, 1);
    if (oops) vms__oops_call_hook(oops);
}

size_t vms__guard_tainted(void)
{
    return vms__oops_tainted();
}
