/*
 * guard.c - the fault handler of the async-signal-safe island (layer 4 of DESIGN.md).
 *
 * Owns the SIGSEGV/SIGBUS handler, the previously installed actions it chains to, the
 * per-thread alternate signal stacks, and the overflow and taint counters. First
 * version: installs the handler and the alternate stacks and passes every fault on to
 * the previous action; classification and reports grow on top of this.
 * Invariant: the previous actions are written once, before the handler is installed,
 * and only read afterwards.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/auxv.h>

static struct sigaction old_segv, old_bus;
static atomic_int installed;
static atomic_size_t overflow_count, taint_count;
static _Atomic(vms_oops_hook) oops_hook;
static void *_Atomic oops_hook_ctx;

static VMS_TLS int thread_ready;

/* async-signal-safe: hands a fault that is not ours to the action installed before. */
static void chain(int sig, siginfo_t *si, void *uc)
{
    const struct sigaction *old = sig == SIGBUS ? &old_bus : &old_segv;
    if (old->sa_flags & SA_SIGINFO) {
        old->sa_sigaction(sig, si, uc);
        return;
    }
    if (old->sa_handler == SIG_DFL || old->sa_handler == SIG_IGN) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(sig, &dfl, NULL);
        if (si->si_code <= 0) raise(sig);
        return;
    }
    old->sa_handler(sig);
}

int vms_handle_fault(int sig, siginfo_t *info, void *uctx)
{
    (void)sig; (void)info; (void)uctx;
    return 0;
}

/* async-signal-safe: the installed handler. */
static void on_fault(int sig, siginfo_t *si, void *uc)
{
    int saved = errno;
    if (!vms_handle_fault(sig, si, uc)) chain(sig, si, uc);
    errno = saved;
}

int vms__guard_thread_init(void)
{
    if (thread_ready) return 0;
    thread_ready = 1;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return 0;
    size_t min = getauxval(AT_MINSIGSTKSZ);
    if (min < (size_t)MINSIGSTKSZ) min = (size_t)MINSIGSTKSZ;
    vms_stack *st = vms_stack_alloc(min + 64 * VMS_KIB);
    if (!st) return -errno;
    stack_t ss = { .ss_sp = vms_stack_base(st), .ss_size = vms_stack_size(st), .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) {
        int err = errno;
        vms_stack_free(st);
        return -err;
    }
    return 0;
}

int vms__guard_install(void)
{
    int expected = 0;
    if (atomic_compare_exchange_strong(&installed, &expected, 1)) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_fault;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGSEGV, &sa, &old_segv) != 0 || sigaction(SIGBUS, &sa, &old_bus) != 0)
            return -errno;
    }
    return vms__guard_thread_init();
}

size_t vms__guard_overflows(void) { return atomic_load(&overflow_count); }
size_t vms__guard_tainted(void) { return atomic_load(&taint_count); }

void vms_set_oops_hook(vms_oops_hook hook, void *ctx)
{
    atomic_store(&oops_hook_ctx, ctx);
    atomic_store(&oops_hook, hook);
}
