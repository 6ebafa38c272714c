/*
 * restricted.c - vmstack where the system refuses what it uses, as container profiles
 * (Docker, podman), sandboxes and older kernels do. Each case forks a child that installs
 * a seccomp filter (classic BPF, PR_SET_NO_NEW_PRIVS + SECCOMP_MODE_FILTER, no libseccomp)
 * failing one system call vmstack makes with EPERM or ENOSYS, before vmstack's first use,
 * and then runs the same workload: stacks allocated, written, freed and handed out again
 * zeroed, statistics, fibers and vms threads with one overflowing task each (killed alone,
 * the others finish with their results). The documented fallback must be taken
 * (docs/internals.md, "Restricted environments"); where none can exist (no alternate
 * signal stack, no fault handler) the error must be clear and nothing may run unguarded.
 * Low RLIMIT_NOFILE and RLIMIT_AS cases follow: a clear ENOMEM, a report still printed.
 * With the direct backend (-DVMSTACK_VMAP=OFF, no guards) the cases that are not about
 * guards or arenas run the same workload without its overflows and guard probes.
 */
#include "internal.h"
#include "test.h"
#include "task_work.h"
#include "seccomp_filter.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <vmstack.h>

#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#define TST_MADV_GUARD_INSTALL 102
#define TST_PR_SET_VMA 0x53564d41
/* PAGEMAP_SCAN: _IOWR('f', 16, struct pm_scan_arg), the argument 96 bytes (Linux 6.7). */
#define TST_PAGEMAP_SCAN _IOWR('f', 16, char[96])
#define TST_PIDFD_SELF (-10001)

/* The direct backend has no guards: an overflow there runs into the stack below. */
#ifdef VMSTACK_VMAP
#define HAVE_GUARDS 1
#else
#define HAVE_GUARDS 0
#endif

/* Deliberate overflows do not run under ASan (test.h) nor without guards: there the
 * cases check the fallbacks with the same workload, without its overflows. */
#if defined(TST_ASAN) || !HAVE_GUARDS
#define OVERFLOWS 0
#else
#define OVERFLOWS 1
#endif
#define FIBERS_OK (OVERFLOWS ? "fibers ok, 1 killed\n" : "fibers ok, 0 killed\n")

/* ---- the workload ------------------------------------------------------------------- */

#define NSTACKS 64

/* Stacks: written whole, freed (two scrubbing batches), handed out again: every byte a
 * new owner sees is zero, and each stack's guard below and above faults. */
static bool probe_guards = HAVE_GUARDS;   /* needs a pipe: off without descriptors */

/* qemu-user's mincore refuses (ENOMEM) any range with a page the guest cannot read,
 * PROT_NONE included, which the kernel's does not: it checks the range as a buffer
 * the guest passes in. Every range vmstack asks about holds guards, so there the
 * statistics' resident bytes read 0 when PAGEMAP_SCAN is not used (qemu does not
 * pass that ioctl through, and without /proc there is no pagemap to ask). True where
 * mincore fails on a PROT_NONE page. */
static bool mincore_refuses_prot_none(void)
{
    size_t page = vms__os_page_size();
    void *p = mmap(NULL, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return false;
    unsigned char v;
    bool refused = mincore(p, page, &v) != 0;
    munmap(p, page);
    return refused;
}

static void stacks_work(void)
{
    vms_stack *s[NSTACKS];
    for (int i = 0; i < NSTACKS; i++) {
        s[i] = vms_stack_alloc(64 * 1024);
        if (!s[i]) TST_FAIL("vms_stack_alloc %d: %s", i, strerror(errno));
        char *base = vms_stack_base(s[i]);
        if (probe_guards && vms__os_probe_noaccess(base - 1) != 1)
            TST_FAIL("stack %d: no guard below", i);
        if (probe_guards && vms__os_probe_noaccess(base + vms_stack_size(s[i])) != 1)
            TST_FAIL("stack %d: no guard above", i);
        memset(base, 0xa5, vms_stack_size(s[i]));
    }
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    ASSERT_GE(st.stacks_live, NSTACKS);
    /* NSTACKS stacks of 64 KiB were written whole (not measurable by mincore under
     * qemu-user, which says 0: see mincore_refuses_prot_none). */
    if (vms__os_resident_method() != 1 && mincore_refuses_prot_none())   /* not by scan */
        printf("resident bytes unmeasurable: mincore refuses PROT_NONE pages here\n");
    else
        ASSERT_GE(st.resident_bytes, (size_t)NSTACKS * 64 * 1024);
    printf("guard method %s\n", st.guard_method);
    printf("resident by %s\n", vms__os_resident_method() < 0 ? "mincore" : "pagemap_scan");
    for (int i = 0; i < NSTACKS; i++) vms_stack_free(s[i]);
    for (int i = 0; i < NSTACKS; i++) {
        s[i] = vms_stack_alloc(64 * 1024);
        if (!s[i]) TST_FAIL("vms_stack_alloc again %d: %s", i, strerror(errno));
        const unsigned char *b = vms_stack_base(s[i]);
        for (size_t j = 0; j < vms_stack_size(s[i]); j++)
            if (b[j]) TST_FAIL("stack %d handed out again with 0x%x at byte %zu", i, b[j], j);
    }
    for (int i = 0; i < NSTACKS; i++) vms_stack_free(s[i]);
    ASSERT_EQ(vms_get_stats(&st), 0);
    printf("resident after free %zu\n", st.resident_bytes);
}

#define NFIBERS 16
#define BAD 5

/* 16 fibers, one overflows: resumes return VMS_KILLED for it alone. Returns the first
 * negative resume result instead, for the cases where no fiber may run. */
static int fibers_work(bool overflow)
{
    struct job jobs[NFIBERS];
    vms_fiber *f[NFIBERS];
    for (int i = 0; i < NFIBERS; i++) {
        jobs[i] = (struct job){ i, 0, 0 };
        vms_fiber_attr a = { .stack_size = 64 * 1024, .name = i == BAD ? "bad" : "good" };
        f[i] = vms_fiber_create(overflow && i == BAD ? bad_fiber : good_fiber, &jobs[i], &a);
        if (!f[i]) TST_FAIL("vms_fiber_create %d: %s", i, strerror(errno));
    }
    int killed = 0;
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < NFIBERS; i++) {
            int s = vms_fiber_state(f[i]);
            if (s == VMS_DONE || s == VMS_KILLED) continue;
            s = vms_fiber_resume(f[i]);
            if (s < 0) {
                for (int k = 0; k < NFIBERS; k++) vms_fiber_destroy(f[k]);
                return s;
            }
            if (s == VMS_KILLED) {
                ASSERT_EQ(i, BAD);
                killed++;
            }
        }
    ASSERT_EQ(killed, overflow ? 1 : 0);
    for (int i = 0; i < NFIBERS; i++) {
        if (overflow && i == BAD) continue;
        ASSERT_EQ(jobs[i].done, 1);
        ASSERT_UEQ(jobs[i].result, job_result(i));
    }
    for (int i = 0; i < NFIBERS; i++) vms_fiber_destroy(f[i]);
    printf("fibers ok, %d killed\n", killed);
    return 0;
}

static void *good_thread(void *arg)
{
    volatile unsigned long mine = recurse(0, 40);   /* not sink: threads run at once */
    (void)mine;
    return (void *)((uintptr_t)arg * 7);
}

static void *bad_thread(void *arg)
{
    (void)arg;
    sink += recurse(0, 0);
    return NULL;
}

static void threads_work(bool overflow)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        int e = vms_thread_create(&t[i], NULL, overflow && i == 2 ? bad_thread : good_thread,
                                  (void *)(uintptr_t)(i + 1));
        if (e) TST_FAIL("vms_thread_create %d: %s", i, strerror(-e));
    }
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        ASSERT_EQ(pthread_join(t[i], &r), 0);
        if (overflow && i == 2) ASSERT_PTR_EQ(r, VMS_THREAD_KILLED);
        else ASSERT_UEQ((uintptr_t)r, (uintptr_t)(i + 1) * 7);
    }
    printf("threads ok\n");
}

/* The filter is in place: each rule's call, made with its argument, fails as it says
 * (so a case cannot pass because its filter missed). */
static void assert_refused(const struct rule *r, int n)
{
    for (int i = 0; i < n; i++) {
        long a[6] = { 0, 0, 0, 0, 0, 0 };
        if (r[i].arg >= 0) a[r[i].arg] = (long)(int32_t)r[i].val;
        if (r[i].nr == SYS_madvise) a[0] = 0;   /* an empty range: valid, no effect */
        /* A rule with errno 0 answers "done" without the kernel: shown by a call the
         * kernel refuses (madvise of an unaligned address: EINVAL) that succeeds. */
        if (r[i].err == 0 && r[i].nr == SYS_madvise) {
            a[0] = 1;
            a[1] = (long)vms__os_page_size();
        }
        errno = 0;
        long v = syscall(r[i].nr, a[0], a[1], a[2], a[3], a[4], a[5]);
        if (r[i].err == 0 ? v != 0 : (v != -1 || errno != r[i].err))
            TST_FAIL("system call %ld not refused by the filter: %ld, errno %d", r[i].nr, v, errno);
    }
}

/* The whole workload after the filter; exits 0 when every part did as it should. */
static void full_child(void *arg)
{
    const struct rule *r = arg;
    int n = 0;
    while (r[n].nr >= 0) n++;
    install_filter(r, n);
    stacks_work();
    ASSERT_EQ(fibers_work(OVERFLOWS), 0);
    threads_work(OVERFLOWS);
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    ASSERT_EQ(st.overflows, 2 * OVERFLOWS);
    ASSERT_EQ(st.stacks_live, 0);
    assert_refused(r, n);
}

static char out[1 << 16];

static const char *run_full(const struct rule *rules)
{
    need_seccomp();
    int st = tst_fork(full_child, (void *)rules, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 20) SKIP("the kernel refused the seccomp filter");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("child failed (%s %d); its output:\n%s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
    ASSERT_STR_CONTAINS(out, FIBERS_OK);
    ASSERT_STR_CONTAINS(out, "threads ok\n");
    ASSERT_EQ(tst_count(out, "vmstack: stack overflow in fiber \"bad\""), OVERFLOWS);
    ASSERT_EQ(tst_count(out, "vmstack: stack overflow in thread"), OVERFLOWS);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: error");
    return out;
}

static bool forced_mprotect(void)
{
    const char *v = getenv("VMSTACK_GUARD_METHOD");
    return v && strcmp(v, "mprotect") == 0;
}

/* The cases about the vmap backend's arenas (reservations, their layout) skip with the
 * direct backend, whose stacks are carved from heap blocks. */
static void need_arenas(void)
{
    if (!HAVE_GUARDS) SKIP("about arenas: the direct backend carves stacks from the heap");
}

/* ---- the cases ------------------------------------------------------------------------ */

/* No filter: the workload itself, as the baseline of the others. */
TEST(baseline)
{
    static const struct rule r[] = { END };
    run_full(r);
}

/* madvise(MADV_GUARD_INSTALL) refused (a profile that allows only known advice, or a
 * kernel before 6.13 through a filter returning ENOSYS): mprotect guards, said so in the
 * statistics. */
/* In the -mprotect variant the method is forced and the madvise probe these cases are
 * about never runs: they would pass whatever it did. */
static void need_the_guard_probe(void)
{
    need_guards();
    if (forced_mprotect()) SKIP("VMSTACK_GUARD_METHOD=mprotect: no madvise guard probe to test");
}

static void guard_refused(int err)
{
    need_the_guard_probe();
    const struct rule r[] = { { SYS_madvise, 2, TST_MADV_GUARD_INSTALL, err }, END };
    run_full(r);
    ASSERT_STR_CONTAINS(out, "guard method mprotect\n");
}
TEST(madvise_guard_eperm) { guard_refused(EPERM); }
TEST(madvise_guard_enosys) { guard_refused(ENOSYS); }

/* madvise(MADV_GUARD_INSTALL) answers 0 and installs nothing, as qemu-user 7.2 does (the
 * filter's errno 0 returns success without the kernel): the guards are verified, not
 * assumed (DESIGN.md), so vmstack finds the probe's guard readable and uses mprotect
 * guards; the workload's stacks are guarded on both sides and its overflows caught. */
TEST(madvise_guard_accepted_without_effect)
{
    need_the_guard_probe();
    const struct rule r[] = { { SYS_madvise, 2, TST_MADV_GUARD_INSTALL, 0 }, END };
    run_full(r);
    ASSERT_STR_CONTAINS(out, "guard method mprotect\n");
}

/* process_madvise refused: freed stacks are discarded range by range. */
static void pmadv_refused(int err)
{
    const struct rule r[] = { { SYS_process_madvise, -1, 0, err }, END };
    run_full(r);
}
TEST(process_madvise_eperm) { pmadv_refused(EPERM); }
TEST(process_madvise_enosys) { pmadv_refused(ENOSYS); }

/* A kernel before 6.14 answers process_madvise on PIDFD_SELF with EBADF; then vmstack
 * opens a pidfd of its own, which the filter refuses: range by range. */
static void pidfd_refused(int err)
{
    const struct rule r[] = { { SYS_process_madvise, 0, (uint32_t)TST_PIDFD_SELF, EBADF },
                              { SYS_pidfd_open, -1, 0, err }, END };
    run_full(r);
}
TEST(pidfd_open_eperm) { pidfd_refused(EPERM); }
TEST(pidfd_open_enosys) { pidfd_refused(ENOSYS); }

/* prctl(PR_SET_VMA) refused: the arenas go unnamed, nothing else changes. */
static void set_vma_refused(int err)
{
    if (!HAVE_GUARDS) SKIP("the direct backend names no mappings (its stacks are on the heap)");
    const struct rule r[] = { { SYS_prctl, 0, TST_PR_SET_VMA, err }, END };
    run_full(r);
}
TEST(prctl_set_vma_eperm) { set_vma_refused(EPERM); }
TEST(prctl_set_vma_enosys) { set_vma_refused(ENOSYS); }

/* ioctl(PAGEMAP_SCAN) refused: resident bytes by mincore (the workload checks them). */
static void pagemap_scan_refused(int err)
{
    const struct rule r[] = { { SYS_ioctl, 1, (uint32_t)TST_PAGEMAP_SCAN, err }, END };
    run_full(r);
    ASSERT_STR_CONTAINS(out, "resident by mincore\n");
}
TEST(pagemap_scan_eperm) { pagemap_scan_refused(EPERM); }
TEST(pagemap_scan_enosys) { pagemap_scan_refused(ENOSYS); }

/* ---- no fallback: the alternate signal stack or the fault handler refused ---------- */

/* What a child does after the filter: 0 runs the workload without overflows and prints
 * what fibers' resumes returned; 1 overflows a fiber; 2 overflows a vms thread. */
struct plain { const struct rule *rules; int what; };

static void plain_child(void *arg)
{
    const struct plain *p = arg;
    int n = 0;
    while (p->rules[n].nr >= 0) n++;
    install_filter(p->rules, n);
    stacks_work();
    if (p->what == 0) {
        printf("fibers resume %d\n", fibers_work(false));
        threads_work(false);
    } else if (p->what == 1) {
        printf("fibers resume %d\n", fibers_work(true));
    } else {
        threads_work(true);
    }
    printf("survived\n");
}

static int run_plain(const struct rule *rules, int what)
{
    need_seccomp();
    struct plain p = { rules, what };
    int st = tst_fork(plain_child, &p, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 20) SKIP("the kernel refused the seccomp filter");
    if (getenv("TASK_SHOW")) fprintf(stderr, "---- child output:\n%s----\n", out);
    return st;
}

/* sigaltstack refused: no fallback exists (a handler cannot run on the stack that
 * overflowed). Stacks work; fibers are never run where their overflow could not be
 * caught (vms_fiber_resume returns the error); vms threads run, and an overflow in one
 * kills the process by SIGSEGV, as without vmstack, never unguarded. One error line for
 * the whole process, however many threads meet the refusal. */
static void sigaltstack_refused(int err)
{
    /* ASan's runtime itself fails a CHECK on sigaltstack in every new thread. */
    NO_ASAN();
    const struct rule r[] = { { SYS_sigaltstack, -1, 0, err }, END };
    int st = run_plain(r, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("child failed:\n%s", out);
    char want[64];
    snprintf(want, sizeof want, "fibers resume %d\n", -err);
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "threads ok\nsurvived\n");
    ASSERT_STR_CONTAINS(out, strerror(err));
    /* Said once, not once or twice per thread (it was: 2 lines for each of 4 threads,
     * and 1 for the main thread). */
    ASSERT_EQ(tst_count(out, "vmstack: error:"), 1);
    ASSERT_EQ(tst_count(out, "vmstack: warning:"), 0);
    ASSERT_STR_CONTAINS(out, "vmstack: error: sigaltstack failed for thread");
    /* Without guards an overflow runs into the stack below instead of faulting. */
    if (!HAVE_GUARDS) return;

    st = run_plain(r, 2);                   /* a vms thread overflows */
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "survived");
    ASSERT_EQ(tst_count(out, "vmstack: error:"), 1);
}
TEST(sigaltstack_eperm) { sigaltstack_refused(EPERM); }
TEST(sigaltstack_enosys) { sigaltstack_refused(ENOSYS); }

/* rt_sigaction refused: no fault handler, said once at initialization. Everything runs;
 * an overflow kills the process by SIGSEGV (the default action), never unguarded. */
static void sigaction_refused(int err)
{
    const struct rule r[] = { { SYS_rt_sigaction, -1, 0, err }, END };
    int st = run_plain(r, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("child failed:\n%s", out);
    ASSERT_STR_CONTAINS(out, "fibers ok, 0 killed\nfibers resume 0\nthreads ok\nsurvived\n");
    ASSERT_EQ(tst_count(out, "vmstack: warning: the stack-overflow handler could not be "
                             "installed"), 1);
    ASSERT_STR_CONTAINS(out, strerror(err));
    /* Without guards an overflow runs into the stack below instead of faulting. */
    if (!HAVE_GUARDS) return;
    NO_ASAN();
    for (int what = 1; what <= 2; what++) {  /* a fiber, then a vms thread, overflows */
        st = run_plain(r, what);
        ASSERT_SIGNALED(st, SIGSEGV);
        ASSERT_STR_NOT_CONTAINS(out, "survived");
        ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
    }
}
TEST(sigaction_eperm) { sigaction_refused(EPERM); }
TEST(sigaction_enosys) { sigaction_refused(ENOSYS); }

/* ---- RLIMIT_NOFILE at the descriptors already open -------------------------------- */

/* No descriptor left after vmstack's first use: nothing vmstack does later needs one
 * (discards use PIDFD_SELF or madvise, symbols were loaded at initialization), so fibers
 * and threads overflow and are killed alone, with their reports. */
static void nofile_after_init_child(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);
    ASSERT_NOT_NULL(s);
    vms_stack_free(s);
    struct rlimit old;
    tst_use_up_descriptors(&old);
    ASSERT_EQ(dup(0), -1);
    probe_guards = false;   /* the overflows below show the guards */
    stacks_work();
    ASSERT_EQ(fibers_work(OVERFLOWS), 0);
    threads_work(OVERFLOWS);
}

TEST(no_descriptor_left_after_first_use)
{
    tst_run_ok(nofile_after_init_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, FIBERS_OK);
    ASSERT_STR_CONTAINS(out, "threads ok\n");
    ASSERT_EQ(tst_count(out, "vmstack: stack overflow in "), 2 * OVERFLOWS);
    ASSERT_EQ(tst_count(out, "vmstack: killed "), 2 * OVERFLOWS);
    if (OVERFLOWS) ASSERT_STR_CONTAINS(out, "recurse+");   /* the traces are symbolized */
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: error");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: warning");
}

/* No descriptor left before the first use: the guard check (a write from a guard page
 * into a pipe) cannot run, so no stack is handed out (ENOMEM), and a warning says why,
 * once; with descriptors back, the next allocation checks again and all works. */
static void nofile_before_init_child(void *arg)
{
    (void)arg;
    struct rlimit old;
    tst_use_up_descriptors(&old);
    if (forced_mprotect()) {
        /* No check to make: stacks come without descriptors. */
        vms_stack *s = vms_stack_alloc(0);
        ASSERT_NOT_NULL(s);
        vms_stack_free(s);
        printf("mprotect without a check\n");
        return;
    }
    if (!HAVE_GUARDS) {
        /* The direct backend has no guards to check: all works without descriptors. */
        stacks_work();
        ASSERT_EQ(fibers_work(OVERFLOWS), 0);
        return;
    }
    for (int i = 0; i < 3; i++) {
        errno = 0;
        ASSERT_NULL(vms_stack_alloc(0));
        ASSERT_EQ(errno, ENOMEM);
    }
    vms_fiber *f = vms_fiber_create(good_fiber, NULL, NULL);
    ASSERT_NULL(f);
    ASSERT_EQ(errno, ENOMEM);
    fflush(stdout);
    if (setrlimit(RLIMIT_NOFILE, &old) != 0) exit(13);
    stacks_work();
    ASSERT_EQ(fibers_work(OVERFLOWS), 0);
}

TEST(no_descriptor_left_before_first_use)
{
    tst_run_ok(nofile_before_init_child, NULL, out, sizeof out);
    if (forced_mprotect()) {
        ASSERT_STR_CONTAINS(out, "mprotect without a check\n");
    } else if (!HAVE_GUARDS) {
        /* No guard check to make; only /proc/self/maps cannot be opened to find the
         * main thread's stack. */
        ASSERT_STR_CONTAINS(out, FIBERS_OK);
        ASSERT_EQ(tst_count(out, "vmstack: warning: "), 1);
        ASSERT_STR_CONTAINS(out, "vmstack: warning: the main thread's stack is not in "
                                 "/proc/self/maps");
    } else {
        ASSERT_STR_CONTAINS(out, FIBERS_OK);
        ASSERT_EQ(tst_count(out, "vmstack: warning: could not check whether "
                                 "MADV_GUARD_INSTALL guards work here (Too many open files"), 1);
    }
}

/* ---- no /proc ------------------------------------------------------------------------ */

#include <sched.h>
#include <sys/mount.h>

/* Exit status of a child in which /proc/self/maps opens with /proc hidden (qemu-user). */
#define PROC_MADE_UP 79

/* Exit status of a child whose RLIMIT_AS was not applied: qemu-user answers
 * setrlimit(RLIMIT_AS) with success and sets nothing (the limit would bind its own
 * allocations), and getrlimit then says unlimited. */
#define AS_LIMIT_IGNORED 76

/* Runs fn in a child that hides /proc (and maybe lowers RLIMIT_AS) and returns with the
 * child's output in `out` if it exited 0; skips where the environment cannot be made. */
static void run_without_proc(void (*fn)(void *))
{
    int st = tst_fork(fn, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("no mount namespace to hide /proc in");
    if (WIFEXITED(st) && WEXITSTATUS(st) == PROC_MADE_UP)
        SKIP("/proc/self/maps opens without /proc: qemu-user makes it up");
    if (WIFEXITED(st) && WEXITSTATUS(st) == AS_LIMIT_IGNORED)
        SKIP("setrlimit(RLIMIT_AS) succeeded and set nothing (qemu-user)");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("child failed (status 0x%x):\n%s", st, out);
}

/* In a user and mount namespace of the child's own, an empty tmpfs over /proc, as in a
 * container without it. Exits 77 where that cannot be done. */
static void hide_proc(void)
{
    if (unshare(CLONE_NEWNS) != 0) {
        char map[64];
        uid_t uid = getuid();
        gid_t gid = getgid();
        if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) exit(77);
        int fd = open("/proc/self/setgroups", O_WRONLY);
        if (fd >= 0) {
            (void)!write(fd, "deny", 4);
            close(fd);
        }
        snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
        fd = open("/proc/self/uid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0) exit(77);
        close(fd);
        snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
        fd = open("/proc/self/gid_map", O_WRONLY);
        if (fd < 0 || write(fd, map, strlen(map)) < 0) exit(77);
        close(fd);
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) exit(77);
    if (mount("none", "/proc", "tmpfs", 0, NULL) != 0) exit(77);
    if (access("/proc/self/maps", F_OK) == 0) exit(78);
    /* qemu-user makes up /proc/self/maps itself (from its own view of the guest's
     * memory, without PROT_NONE ranges) whatever is mounted on /proc: there the process
     * is never without it, and the arenas' mappings are not counted from their layout. */
    FILE *f = fopen("/proc/self/maps", "re");
    if (f) {
        fclose(f);
        exit(PROC_MADE_UP);
    }
}

/* Without /proc: stacks, statistics (the mappings counted from the arenas' layout),
 * fibers and threads killed alone with their reports; an overflow of the main thread,
 * whose stack vmstack finds only in /proc/self/maps, dies by SIGSEGV, said once at
 * initialization. */
static void no_proc_child(void *arg)
{
    bool main_overflow = arg != NULL;
    hide_proc();
    probe_guards = HAVE_GUARDS;
    stacks_work();
    vms_stack *s[NSTACKS];
    for (int i = 0; i < NSTACKS; i++) ASSERT_NOT_NULL(s[i] = vms_stack_alloc(64 * 1024));
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    ASSERT_GE(st.arenas, 1);   /* 2 but under ASan: its alternate stacks are its own */
    /* An arena's opened part and its reserved rest, and with mprotect guards a stack
     * and a guard per opened slot (it said 0 and the ELF files' views). The direct
     * backend's blocks are in the heap's mappings: not counted from a layout. */
    size_t arena_maps = st.mappings - vms__trace_views();   /* less the ELF files' */
    if (HAVE_GUARDS) ASSERT_GE(arena_maps, 2 * st.arenas);
    if (strcmp(st.guard_method, "mprotect") == 0) ASSERT_GE(arena_maps, 2 * NSTACKS);
    for (int i = 0; i < NSTACKS; i++) vms_stack_free(s[i]);
    ASSERT_EQ(fibers_work(OVERFLOWS), 0);
    threads_work(OVERFLOWS);
    fflush(stdout);
    if (main_overflow) {
        sink += recurse(0, 0);
        printf("survived\n");
    }
}

TEST(no_proc)
{
    run_without_proc(no_proc_child);
    ASSERT_STR_CONTAINS(out, FIBERS_OK);
    ASSERT_STR_CONTAINS(out, "threads ok\n");
    ASSERT_EQ(tst_count(out, "vmstack: stack overflow in "), 2 * OVERFLOWS);
    ASSERT_EQ(tst_count(out, "vmstack: warning: the main thread's stack is not in "
                             "/proc/self/maps"), 1);
    /* Without guards an overflow runs into the stack below instead of faulting. */
    if (!HAVE_GUARDS) return;
    NO_ASAN();

    int st = tst_fork(no_proc_child, (void *)1, out, sizeof out);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "survived");
    ASSERT_EQ(tst_count(out, "vmstack: stack overflow in "), 2);   /* the fiber's, the thread's */
    ASSERT_EQ(tst_count(out, "vmstack: warning: the main thread's stack is not in "
                             "/proc/self/maps"), 1);
}

/* Without /proc the arenas' mappings are counted from their layout. A full arena is two
 * mappings as any other: its opened part and its trailing guard, which is never opened
 * (it was counted as one). Arenas fill quickly under ulimit -v, where they are small:
 * default stacks until ENOMEM with 1 GiB of room fill the arenas made. */
struct layout { size_t arenas, full, maps; };

static void count_layout(struct vms__arena *a, void *ctx)
{
    struct layout *l = ctx;
    uint32_t opened = atomic_load(&a->opened);
    l->arenas++;
    l->full += opened == a->nslots;
    l->maps += 2 + (strcmp(vms__arena_guard_method(), "mprotect") == 0 ? 2 * (size_t)opened : 0);
}

static void largest_arena(struct vms__arena *a, void *ctx)
{
    size_t *largest = ctx;
    if ((size_t)(a->hi - a->lo) > *largest) *largest = (size_t)(a->hi - a->lo);
}

/* Lets the child map `extra` bytes more than it has mapped now (read before /proc is
 * hidden). */
static void limit_address_space(size_t extra)
{
    if (!tst_limit_address_space(extra)) exit(AS_LIMIT_IGNORED);
}

static void no_proc_full_arenas_child(void *arg)
{
    (void)arg;
    limit_address_space((size_t)1 << 30);
    hide_proc();
    static vms_stack *s[1 << 14];
    size_t n = 0;
    while (n < sizeof s / sizeof s[0] && (s[n] = vms_stack_alloc(0))) n++;
    if (n == sizeof s / sizeof s[0] || errno != ENOMEM) exit(10);
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    ASSERT_EQ(st.stacks_live, n);
    struct layout l = { 0, 0, 0 };
    vms__arena_each(count_layout, &l);
    ASSERT_GE(l.full, 1);
    ASSERT_EQ(st.arenas, l.arenas);
    ASSERT_EQ(st.mappings - vms__trace_views(), l.maps);
    printf("%zu stacks, %zu arenas (%zu full), %zu mappings\n", n, l.arenas, l.full, l.maps);
}

TEST(no_proc_full_arenas_are_two_mappings)
{
    need_arenas();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
    run_without_proc(no_proc_full_arenas_child);
    ASSERT_STR_CONTAINS(out, " full), ");
}

/* Without /proc the address space in use is unknown, and the room under ulimit -v is
 * found by trying reservations. With less room than the smallest arena, the warning
 * gives the room found (it said the whole limit was left, "leaves 1234 MiB" with 32 MiB
 * free, an unreadable /proc/self/statm read as nothing mapped). Where the tries fail
 * otherwise than the limit makes them (arg: an injected EPERM on the first), the room
 * is unknown: the warning gives the limit and says so. */
static void no_proc_rlimit_as_child(void *arg)
{
    bool unknown = arg != NULL;
    limit_address_space(32 * VMS_MIB);
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0) exit(92);
    rlim_t lim = r.rlim_cur;
    hide_proc();
    if (unknown) {
        (void)vms__arena_guard_method();   /* decided first: its check reserves too */
        vms__os_inject(VMS__OP_MMAP, 1, EPERM, false);
    }
    for (int i = 0; i < 3; i++) {
        errno = 0;
        if (vms_stack_alloc(0) || errno != ENOMEM) exit(10);
    }
    printf("ENOMEM; limit %zu MiB\n", (size_t)(lim >> 20));
}

TEST(no_proc_rlimit_as_room_found_by_trying)
{
    need_arenas();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
    run_without_proc(no_proc_rlimit_as_child);
    ASSERT_STR_CONTAINS(out, "ENOMEM; limit ");
    static const char said[] = "vmstack: warning: cannot reserve address space for a new "
                               "arena (64 MiB, the smallest): RLIMIT_AS (ulimit -v) leaves ";
    ASSERT_EQ(tst_count(out, said), 1);
    size_t left = (size_t)strtoul(strstr(out, said) + strlen(said), NULL, 10);
    ASSERT_LE(left, 32);
    ASSERT_STR_NOT_CONTAINS(out, "unknown");
}

TEST(no_proc_rlimit_as_use_unknown)
{
    need_arenas();
    NEED_FAULT_INJECTION();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
    int st = tst_fork(no_proc_rlimit_as_child, (void *)1, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("no mount namespace to hide /proc in");
    if (WIFEXITED(st) && (WEXITSTATUS(st) == PROC_MADE_UP || WEXITSTATUS(st) == AS_LIMIT_IGNORED))
        SKIP("qemu-user: /proc/self/maps made up, or RLIMIT_AS not applied");
    ASSERT_EXITED(st, 0);
    const char *l = strstr(out, "ENOMEM; limit ");
    ASSERT_NOT_NULL(l);
    char want[200];
    snprintf(want, sizeof want, "vmstack: warning: cannot reserve address space for a new "
             "arena (64 MiB, the smallest): RLIMIT_AS (ulimit -v) is %zu MiB, how much of "
             "it is in use is unknown (/proc/self/statm unreadable)",
             (size_t)strtoul(l + strlen("ENOMEM; limit "), NULL, 10));
    ASSERT_EQ(tst_count(out, want), 1);
    ASSERT_STR_NOT_CONTAINS(out, " leaves ");
}

/* Without /proc an arena takes at most half the room found, as with it: it was sized
 * from the limit, and with 4 GiB mapped by the program and 1.5 GiB left, the largest
 * size that fitted was taken (1 GiB for the alternate signal stacks, 256 MiB for the
 * program's default stacks). */
static void no_proc_half_the_room_child(void *arg)
{
    (void)arg;
    size_t big = (size_t)4 << 30;
    if (mmap(NULL, big, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0) ==
        MAP_FAILED)
        exit(9);
    limit_address_space(3 * ((size_t)1 << 29));
    hide_proc();
    vms_stack *s = vms_stack_alloc(0);
    if (!s) exit(10);
    struct layout l = { 0, 0, 0 };
    vms__arena_each(count_layout, &l);
    size_t largest = 0;
    vms__arena_each(largest_arena, &largest);
    printf("%zu arenas, the largest %zu MiB\n", l.arenas, largest >> 20);
    if (largest > 3 * ((size_t)1 << 28)) exit(11);   /* more than half of 1.5 GiB */
}

TEST(no_proc_arena_takes_at_most_half_the_room)
{
    need_arenas();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
    run_without_proc(no_proc_half_the_room_child);
    fputs(out, stdout);
    ASSERT_STR_CONTAINS(out, " arenas, the largest ");
}

/* Without /proc under ulimit -v the first arenas are refused at larger sizes before a
 * smaller one fits. The program then raises the limit (setrlimit): later arenas grow
 * again. The smallest size a refusal had left stayed the largest tried for good: after
 * the limit was lifted, 64 MiB arenas, each alone in a 4 GiB lookup-table entry, ran out
 * of entries near the first after 29 more (5,916 stacks, then ENOMEM, with the address
 * space unlimited). */
#define MORE_STACKS 10000
static void no_proc_raised_limit_child(void *arg)
{
    (void)arg;
    /* The soft limit only: the hard one stays, so the child can raise it again. */
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f || fscanf(f, "%lu", &pages) != 1) exit(90);
    fclose(f);
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_max != RLIM_INFINITY) exit(91);
    rlim_t lim = (rlim_t)(pages * vms__os_page_size() + ((size_t)1 << 30));
    r.rlim_cur = lim;
    if (setrlimit(RLIMIT_AS, &r) != 0) exit(91);
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur != lim) exit(AS_LIMIT_IGNORED);
    hide_proc();
    size_t n = 0;
    while (vms_stack_alloc(0)) n++;
    if (errno != ENOMEM || n == 0) exit(10);
    r.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_AS, &r) != 0) exit(11);
    vms_stack *s = NULL;
    for (int i = 0; i < MORE_STACKS; i++)
        if (!(s = vms_stack_alloc(0))) {
            printf("%zu stacks under the limit; after it was lifted, %d: %s\n", n, i,
                   strerror(errno));
            exit(12);
        }
    struct vms__where w;
    if (vms__arena_where(vms_stack_base(s), &w) != VMS__WHERE_STACK) exit(13);
    size_t size = (size_t)(w.arena->hi - w.arena->lo);
    printf("%zu stacks under the limit, %d more after it was lifted, the last in an arena "
           "of %zu MiB\n", n, MORE_STACKS, size >> 20);
    /* 256 MiB, 1 GiB, then 4 GiB (13,000 default stacks) hold them. */
    if (size < ((size_t)4 << 30)) exit(14);
}

TEST(no_proc_arenas_grow_again_after_the_limit_is_raised)
{
    need_arenas();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_max != RLIM_INFINITY)
        SKIP("RLIMIT_AS has a hard limit: the case raises the soft one to unlimited");
    run_without_proc(no_proc_raised_limit_child);
    fputs(out, stdout);
    ASSERT_STR_CONTAINS(out, " more after it was lifted, the last in an arena of ");
}
