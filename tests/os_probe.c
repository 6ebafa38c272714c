/*
 * os_probe.c - what the os layer decides once about the kernel: the guard method
 * (MADV_GUARD_INSTALL or mprotect) and how to discard many ranges (process_madvise on
 * our own process). A failure that says nothing about the kernel (ENOMEM, EAGAIN) must
 * fail one operation, not decide for the process's life; a decision taken by racing
 * threads must be taken once. Every case runs in a child: the decisions are per process.
 */
#include "internal.h"
#include "test.h"

#include <pthread.h>
#include <stdint.h>
#include <vmstack.h>

static bool guard_madvise_forced_off(void)
{
    const char *v = getenv("VMSTACK_GUARD_METHOD");
    return v && strcmp(v, "mprotect") == 0;
}

static void method_child(void *arg)
{
    (void)arg;
    exit(vms__os_guard_method());
}

/* Skips unless this kernel has working madvise guards and nothing forces mprotect. Asked
 * in a child of its own: the answer is kept for the process's life. */
static void need_madvise_guards(void)
{
    need_guards();
#ifndef VMSTACK_FAULT_INJECTION
    SKIP("built without VMSTACK_FAULT_INJECTION");
#endif
    if (guard_madvise_forced_off()) SKIP("VMSTACK_GUARD_METHOD=mprotect");
    char out[256];
    int st = tst_fork(method_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != VMS__GUARD_MADVISE)
        SKIP("MADV_GUARD_INSTALL does not work here");
}

static void assert_guarded(vms_stack *s)
{
    char *base = vms_stack_base(s), *top = (char *)base + vms_stack_size(s);
    if (vms__os_probe_noaccess(base - 1) != 1) TST_FAIL("the byte below %p is accessible", base);
    if (vms__os_probe_noaccess(top) != 1) TST_FAIL("the byte at the top %p is accessible", top);
    if (vms__os_probe_noaccess(base) != 0) TST_FAIL("the stack's first byte %p is not", base);
}

/* ---- the guard method ----------------------------------------------------------------- */

/* The first MADV_GUARD_INSTALL (the detection's probe) fails with err; then stacks are
 * allocated as usual. Prints the method in use. */
static void guard_probe_fails_child(void *arg)
{
    int err = (int)(intptr_t)arg;
    vms__os_inject(VMS__OP_MADV_GUARD, 1, err, false);
    /* Initialization takes this thread's alternate signal stack first: that is the
     * operation that meets the failed probe (an error line says so). Under ASan the
     * thread keeps the runtime's, and this first allocation is the one that fails. */
    vms_stack *s = vms_stack_alloc(0);
    if (!s && errno == ENOMEM) s = vms_stack_alloc(0);
    if (!s) {
        printf("vms_stack_alloc: %s\n", strerror(errno));
        exit(10);
    }
    assert_guarded(s);
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(11);
    printf("method %s\n", st.guard_method);
    vms_stack_free(s);
}

static void guard_probe_fails(int err, const char *want)
{
    need_madvise_guards();
    char out[4096];
    int st = tst_fork(guard_probe_fails_child, (void *)(intptr_t)err, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    char line[64];
    snprintf(line, sizeof line, "method %s\n", want);
    ASSERT_STR_CONTAINS(out, line);
}

/* ENOMEM or EAGAIN from the probe's madvise is this call's failure, not the kernel's
 * answer: the method stays undecided, and the next arena's probe settles on madvise. */
TEST(guard_probe_enomem_decides_nothing)
{
    guard_probe_fails(ENOMEM, "madvise");
}

TEST(guard_probe_eagain_decides_nothing)
{
    guard_probe_fails(EAGAIN, "madvise");
}

/* EINVAL (a kernel before 6.13), ENOSYS and EPERM (seccomp, a sandbox) are the kernel's
 * answer: mprotect for good. */
TEST(guard_probe_eperm_means_mprotect)
{
    guard_probe_fails(EPERM, "mprotect");
}

TEST(guard_probe_enosys_means_mprotect)
{
    guard_probe_fails(ENOSYS, "mprotect");
}

/* Asked directly: the failed probe is the caller's error, and the next call probes
 * again and decides. */
static void undecided_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_MADV_GUARD, 1, ENOMEM, false);
    int m = vms__os_guard_method();
    if (m != -ENOMEM) {
        printf("first: %d, want %d\n", m, -ENOMEM);
        exit(10);
    }
    m = vms__os_guard_method();
    if (m != VMS__GUARD_MADVISE) {
        printf("second: %d, want %d\n", m, VMS__GUARD_MADVISE);
        exit(11);
    }
}

TEST(guard_probe_failure_fails_the_one_call)
{
    need_madvise_guards();
    char out[4096];
    tst_run_ok(undecided_child, NULL, out, sizeof out);
}
