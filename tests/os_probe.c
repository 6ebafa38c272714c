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
#include <fcntl.h>
#include <sched.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/utsname.h>
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
    NEED_FAULT_INJECTION();
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

/* The probe's pipe cannot be made (no file descriptor left: RLIMIT_NOFILE), which says
 * nothing about the kernel: the allocation that probed fails with ENOMEM, nothing is
 * decided, and once descriptors are back the next allocation probes again, decides
 * madvise and hands out a guarded stack. */
static void probe_without_fds_child(void *arg)
{
    (void)arg;
    struct rlimit old;
    tst_use_up_descriptors(&old);            /* pipe2 fails with EMFILE now */
    errno = 0;
    vms_stack *s = vms_stack_alloc(0);
    int e = errno;
    if (setrlimit(RLIMIT_NOFILE, &old) != 0) exit(13);
    printf("without descriptors: %s\n", s ? "a stack" : strerror(e));
    if (!s) s = vms_stack_alloc(0);
    if (!s) {
        printf("vms_stack_alloc: %s\n", strerror(errno));
        exit(14);
    }
    assert_guarded(s);
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(15);
    printf("method %s\n", st.guard_method);
}

TEST(guard_probe_without_file_descriptors_decides_nothing)
{
    need_madvise_guards();
    char out[4096];
    tst_run_ok(probe_without_fds_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "without descriptors: Cannot allocate memory\n");
    ASSERT_STR_CONTAINS(out, "method madvise\n");
}

/* ---- process_madvise on our own process ------------------------------------------------ */

#include <dirent.h>
#include <sys/mman.h>

/* pidfds open in this process (/proc/self/fd links to anon_inode:[pidfd]). */
static int count_pidfds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        char path[300], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t k = readlink(path, link, sizeof link - 1);
        if (k <= 0) continue;
        link[k] = '\0';
        if (strstr(link, "pidfd")) n++;
    }
    closedir(d);
    return n;
}

enum { RACERS = 8, RACE_PAGES = 4 };
static pthread_barrier_t race_start;

/* Dirties its own pages, then discards them with everyone else at once. */
static void *discard_racer(void *arg)
{
    char *mem = arg;
    size_t len = RACE_PAGES * vms__os_page_size();
    memset(mem, 0x5a, len);
    struct iovec iov[2] = { { mem, len / 2 }, { mem + len / 2, len / 2 } };
    pthread_barrier_wait(&race_start);
    int e = vms__os_discard_many(iov, 2, NULL);
    if (e) return (void *)(intptr_t)e;
    for (size_t i = 0; i < len; i++)
        if (mem[i]) return (void *)(intptr_t)-1000;
    return NULL;
}

/* RACERS threads make the process's first discard_many at once, on a kernel without
 * PIDFD_SELF (injected EBADF): one pidfd must be opened, and every range discarded. */
static void first_discard_race_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_PMADV_SELF, 1, EBADF, true);
    size_t page = vms__os_page_size();
    char *mem = mmap(NULL, RACERS * RACE_PAGES * page, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) exit(9);
    int before = count_pidfds();
    pthread_barrier_init(&race_start, NULL, RACERS);
    pthread_t t[RACERS];
    for (int i = 0; i < RACERS; i++)
        if (pthread_create(&t[i], NULL, discard_racer, mem + (size_t)i * RACE_PAGES * page))
            exit(10);
    for (int i = 0; i < RACERS; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r) {
            printf("racer %d: %ld\n", i, (long)(intptr_t)r);
            exit(11);
        }
    }
    int opened = count_pidfds() - before;
    if (opened > 1) {
        printf("%d pidfds opened by the first discards\n", opened);
        exit(12);
    }
}

TEST(first_discards_race_open_one_pidfd)
{
    NEED_FAULT_INJECTION();
    /* Each round is a new process: the setup happens once per process. */
    for (int round = 0; round < 50; round++) {
        char out[4096];
        int st = tst_fork(first_discard_race_child, NULL, out, sizeof out);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) {
            fprintf(stderr, "round %d:\n%s", round, out);
            ASSERT_EXITED(st, 0);
        }
    }
}

/* len bytes of fresh read-write memory for a child's discards; exits 9 without. */
static char *scratch(size_t len)
{
    char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) exit(9);
    return mem;
}

/* Dirties n_pages of mem, discards them as two ranges, and checks they read as zero;
 * returns the system calls that took. */
static unsigned long dirty_and_discard(char *mem, size_t len)
{
    memset(mem, 0x5a, len);
    struct iovec iov[2] = { { mem, len / 2 }, { mem + len / 2, len / 2 } };
    unsigned long before = vms__os_syscalls();
    int e = vms__os_discard_many(iov, 2, NULL);
    unsigned long calls = vms__os_syscalls() - before;
    if (e) {
        printf("discard_many: %s\n", strerror(-e));
        exit(20);
    }
    for (size_t i = 0; i < len; i++)
        if (mem[i]) {
            printf("byte %zu not discarded\n", i);
            exit(21);
        }
    return calls;
}

/* Two discards of two ranges each: prints the system calls of each and the pidfds left
 * open, for the cases that decide how to discard. */
static void print_two_discards(void)
{
    size_t len = 4 * vms__os_page_size();
    char *mem = scratch(len);
    unsigned long first = dirty_and_discard(mem, len);
    unsigned long later = dirty_and_discard(mem, len);
    printf("calls %lu then %lu pidfds %d\n", first, later, count_pidfds());
}

/* Before 6.14 (EBADF for PIDFD_SELF), pidfd_open fails with arg's errno: ENOSYS (no
 * pidfds) decides one madvise per range for good; EMFILE decides nothing, and the next
 * discard opens a pidfd and then makes one call per batch. */
static void pidfd_open_fails_child(void *arg)
{
    int err = (int)(intptr_t)arg;
    vms__os_inject(VMS__OP_PMADV_SELF, 1, EBADF, true);
    vms__os_inject(VMS__OP_PIDFD_OPEN, 1, err, false);
    size_t len = 4 * vms__os_page_size();
    char *mem = scratch(len);
    (void)dirty_and_discard(mem, len);          /* the failed setup: range by range */
    (void)dirty_and_discard(mem, len);          /* EMFILE: set up now */
    unsigned long calls = dirty_and_discard(mem, len);
    printf("calls %lu pidfds %d\n", calls, count_pidfds());
}

TEST(no_pidfd_discards_range_by_range)
{
    NEED_FAULT_INJECTION();
    char out[4096];
    tst_run_ok(pidfd_open_fails_child, (void *)(intptr_t)ENOSYS, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "calls 2 pidfds 0\n");
}

static void probe_child(void *arg)
{
    (void)arg;
    size_t len = 4 * vms__os_page_size();
    char *mem = scratch(len);
    (void)dirty_and_discard(mem, len);
    exit(dirty_and_discard(mem, len) == 1 ? 0 : 1);
}

/* Skips unless process_madvise(MADV_DONTNEED) works on our own process (6.13+). */
static void need_pmadv(void)
{
    NEED_FAULT_INJECTION();
    char out[512];
    int st = tst_fork(probe_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        SKIP("process_madvise(MADV_DONTNEED) on our own process does not work here");
}

TEST(pidfd_open_emfile_decides_nothing)
{
    need_pmadv();
    char out[4096];
    tst_run_ok(pidfd_open_fails_child, (void *)(intptr_t)EMFILE, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "calls 1 pidfds 1\n");
}

/* The kernel's "not this way": process_madvise on PIDFD_SELF refused with err (ENOSYS
 * before 5.10, EPERM from a seccomp filter), once. Decided for good: every later discard
 * is one madvise per range, without asking again (the injection fails only the first
 * call, so asking again would take one call for two ranges here). */
static void self_refused_child(void *arg)
{
    int err = (int)(intptr_t)arg;
    vms__os_inject(VMS__OP_PMADV_SELF, 1, err, false);
    print_two_discards();
}

TEST(process_madvise_enosys_means_range_by_range)
{
    need_pmadv();
    char out[4096];
    tst_run_ok(self_refused_child, (void *)(intptr_t)ENOSYS, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "calls 2 then 2 pidfds 0\n");
}

TEST(process_madvise_eperm_means_range_by_range)
{
    need_pmadv();
    char out[4096];
    tst_run_ok(self_refused_child, (void *)(intptr_t)EPERM, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "calls 2 then 2 pidfds 0\n");
}

/* Linux 5.10 to 6.12 (Debian 12's 6.1 among them): no PIDFD_SELF (EBADF), and
 * process_madvise through a pidfd of our own refuses MADV_DONTNEED (EINVAL). The pidfd
 * is closed again, and every discard is one madvise per range for good: the first
 * takes pidfd_open and two madvise calls, the later ones two calls and no pidfd. */
static void pidfd_refused_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_PMADV_SELF, 1, EBADF, true);
    vms__os_inject(VMS__OP_PMADV_PIDFD, 1, EINVAL, false);
    print_two_discards();
}

TEST(process_madvise_through_a_pidfd_refused)
{
    need_pmadv();
    char out[4096];
    tst_run_ok(pidfd_refused_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "calls 3 then 2 pidfds 0\n");
}

/* The process's first batch starts with a range the kernel refuses (an mlock'd one):
 * process_madvise does nothing and answers EINVAL, as kernels 5.10 to 6.12 answer for
 * the advice. That range alone tells the two apart: refused too, nothing is decided,
 * and the next batch of two is one call. Before, that first batch chose one madvise per
 * range for the process's life. */
static void first_range_locked_child(void *arg)
{
    (void)arg;
    size_t page = vms__os_page_size();
    char *mem = scratch(4 * page);
    memset(mem, 0x5a, 2 * page);
    if (tst_mlock(mem, page) != 0) {
        printf("mlock: %s\n", strerror(errno));
        exit(77);
    }
    struct iovec iov[2] = { { mem, page }, { mem + page, page } };
    bool refused[2];
    int e = vms__os_discard_many(iov, 2, refused);
    size_t nonzero = 0;
    for (size_t i = page; i < 2 * page; i++) nonzero += mem[i] != 0;
    printf("first: %s, refused %d %d, %zu bytes not dropped\n", strerror(-e), refused[0],
           refused[1], nonzero);
    printf("then %lu call(s)\n", dirty_and_discard(mem + 2 * page, 2 * page));
}

TEST(a_refused_first_range_decides_nothing)
{
    need_pmadv();
    char out[4096];
    int st = tst_fork(first_range_locked_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "first: Invalid argument, refused 1 0, 0 bytes not dropped\n");
    ASSERT_STR_CONTAINS(out, "then 1 call(s)\n");
}

/* Every range of a batch refused (a process that locks all its memory: mlockall): each
 * call for the rest stops at its first range. After two such, one call per range: 34
 * calls for 32 ranges (the batch's, the first range's, one more for the rest, then one
 * per range), not 63 (a call for the rest after each refused range). */
enum { ALL_LOCKED = 32 };

static void all_locked_child(void *arg)
{
    (void)arg;
    size_t page = vms__os_page_size();
    char *mem = scratch((ALL_LOCKED + 4) * page);
    (void)dirty_and_discard(mem + ALL_LOCKED * page, 4 * page);   /* decided */
    memset(mem, 0x5a, ALL_LOCKED * page);
    if (tst_mlock(mem, ALL_LOCKED * page) != 0) {
        printf("mlock: %s\n", strerror(errno));
        exit(77);
    }
    struct iovec iov[ALL_LOCKED];
    bool refused[ALL_LOCKED];
    for (int i = 0; i < ALL_LOCKED; i++) iov[i] = (struct iovec){ mem + i * page, page };
    unsigned long before = vms__os_syscalls();
    int e = vms__os_discard_many(iov, ALL_LOCKED, refused);
    unsigned long calls = vms__os_syscalls() - before;
    int nrefused = 0;
    for (int i = 0; i < ALL_LOCKED; i++) nrefused += refused[i];
    printf("%s, %d of %d refused, %lu calls\n", strerror(-e), nrefused, ALL_LOCKED, calls);
    if (calls > ALL_LOCKED + 2) exit(20);
}

TEST(every_range_refused_costs_one_call_per_range_after_two_misses)
{
    need_pmadv();
    char out[4096];
    int st = tst_fork(all_locked_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    fputs(out, stderr);
    ASSERT_STR_CONTAINS(out, "Invalid argument, 32 of 32 refused, ");
    ASSERT_EXITED(st, 0);
}

/* The same where the advice goes through a pidfd of our own (no PIDFD_SELF: EBADF) and
 * every range is locked: there the kernel's EINVAL for the first range is also what
 * 5.10 to 6.12 answer for the advice, and that range alone refused too decides nothing.
 * A few batches may probe again; then one madvise per range for good (32 calls for 32
 * ranges), not a pidfd_open, a close and two calls more in every batch for the
 * process's life. */
static void all_locked_pidfd_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_PMADV_SELF, 1, EBADF, true);
    vms__os_inject(VMS__OP_PMADV_PIDFD, 1, EINVAL, true);
    size_t page = vms__os_page_size();
    char *mem = scratch(ALL_LOCKED * page);
    memset(mem, 0x5a, ALL_LOCKED * page);
    if (tst_mlock(mem, ALL_LOCKED * page) != 0) {
        printf("mlock: %s\n", strerror(errno));
        exit(77);
    }
    struct iovec iov[ALL_LOCKED];
    for (int i = 0; i < ALL_LOCKED; i++) iov[i] = (struct iovec){ mem + i * page, page };
    unsigned long calls = 0;
    for (int batch = 0; batch < 6; batch++) {
        unsigned long before = vms__os_syscalls();
        int e = vms__os_discard_many(iov, ALL_LOCKED, NULL);
        calls = vms__os_syscalls() - before;
        printf("batch %d: %s, %lu calls\n", batch, strerror(-e), calls);
    }
    printf("last batch: %lu calls\n", calls);
}

TEST(every_range_refused_through_a_pidfd_decides_range_by_range)
{
    need_pmadv();
    char out[4096];
    int st = tst_fork(all_locked_pidfd_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "batch 5: Invalid argument, ");
    ASSERT_STR_CONTAINS(out, "last batch: 32 calls\n");
}

/* A fork child must not discard through the parent's pidfd: that would drop the
 * parent's pages (kernels since 6.13 refuse MADV_DONTNEED on another process, so there
 * every discard would cost a failed call and then one madvise per range). It decides
 * again, for itself: one call per batch through a pidfd of its own. */
static void discard_in_fork_child(void *arg)
{
    (void)dirty_and_discard(arg, 4 * vms__os_page_size());
    unsigned long calls = dirty_and_discard(arg, 4 * vms__os_page_size());
    if (calls != 1) {
        printf("a discard of two ranges took %lu calls\n", calls);
        exit(12);
    }
}

static void pidfd_fork_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_PMADV_SELF, 1, EBADF, true);
    size_t len = 4 * vms__os_page_size();
    char *mem = scratch(2 * len);
    (void)dirty_and_discard(mem + len, len);    /* decided: our own pidfd */
    memset(mem, 0x77, len);
    char out[512];
    int st = tst_fork(discard_in_fork_child, mem, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        printf("fork child: %s", out);
        exit(10);
    }
    for (size_t i = 0; i < len; i++)
        if (mem[i] != 0x77) {
            printf("the fork child discarded the parent's byte %zu\n", i);
            exit(11);
        }
}

TEST(fork_child_discards_its_own_pages)
{
    need_pmadv();
    char out[4096];
    tst_run_ok(pidfd_fork_child, NULL, out, sizeof out);
}

/* The LD_PRELOAD half of the Valgrind test: Valgrind's preloads are named by file name
 * in a ':' or space separated list; other libraries, or the word elsewhere in a path,
 * are not Valgrind. */
TEST(valgrind_preload_is_recognized)
{
    ASSERT(vms__os_valgrind_preload("/usr/libexec/valgrind/vgpreload_core-amd64-linux.so:"
                                    "/usr/libexec/valgrind/vgpreload_memcheck-amd64-linux.so"));
    ASSERT(vms__os_valgrind_preload("libfoo.so vgpreload_memcheck-arm64-linux.so"));
    ASSERT(vms__os_valgrind_preload("libfoo.so::/x/vgpreload_helgrind-amd64-linux.so"));
    ASSERT(!vms__os_valgrind_preload(NULL));
    ASSERT(!vms__os_valgrind_preload(""));
    ASSERT(!vms__os_valgrind_preload(":: "));
    ASSERT(!vms__os_valgrind_preload("/usr/lib/libjemalloc.so.2"));
    ASSERT(!vms__os_valgrind_preload("/opt/vgpreload_x/libfoo.so"));
    ASSERT(!vms__os_valgrind_preload("/lib/libvgpreload_core.so"));
    ASSERT(!vms__os_valgrind_preload("vgpreload"));
}

/* Residency, over 4,196 pages: touched pages on both sides of mincore's 4,096-page step
 * and at the very end count, untouched and discarded ones do not, the shared zero page
 * does (as mincore counts it). The same whichever way the count is taken. */
static void check_resident_counts(void)
{
    size_t page = vms__os_page_size(), pages = 4096 + 100;
    char *p = mmap(NULL, pages * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + pages * page)), 0);
    size_t touch[] = { 0, 4095, 4096, pages - 1 };
    for (size_t i = 0; i < 4; i++) p[touch[i] * page] = 1;
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + pages * page)), (long long)(4 * page));
    /* A range that starts and ends inside: only what it covers. */
    ASSERT_EQ(vms__os_resident((uintptr_t)(p + page), (uintptr_t)(p + 4096 * page)), (long long)page);
    ASSERT_EQ(madvise(p + 4095 * page, 2 * page, MADV_DONTNEED), 0);
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + pages * page)), (long long)(2 * page));
    /* Read, never written: the shared zero page, present. */
    (void)((volatile char *)p)[10 * page];
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + pages * page)), (long long)(3 * page));
    munmap(p, pages * page);
}

/* Whether an ioctl of /proc/self/pagemap reaches the kernel. qemu-user (7.2, the aarch64
 * cross tests) passes through only the ioctls it knows, PAGEMAP_SCAN not among them,
 * and answers the others ENOSYS: probed with a program that makes one PAGEMAP_SCAN call,
 * which counts pages natively on Linux 6.18 and gets ENOSYS under qemu-aarch64. A
 * kernel says ENOTTY (before 6.7) or EINVAL (this zeroed argument), never ENOSYS. */
static bool pagemap_ioctl_reaches_the_kernel(void)
{
    int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return true;
    uint64_t arg[12] = { 0 };   /* struct pm_scan_arg, size 0: refused by the kernel */
    bool through = ioctl(fd, _IOWR('f', 16, uint64_t[12]), arg) == 0 || errno != ENOSYS;
    close(fd);
    return through;
}

/* Linux 6.7 or later, its ioctls not hidden by an emulator: PAGEMAP_SCAN is there. */
static bool kernel_has_pagemap_scan(void)
{
    struct utsname u;
    int major = 0, minor = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &major, &minor) != 2) return false;
    return (major > 6 || (major == 6 && minor >= 7)) && pagemap_ioctl_reaches_the_kernel();
}

TEST(resident_counts_touched_pages)
{
    check_resident_counts();
    /* This kernel's PAGEMAP_SCAN was used, or it has none. */
    ASSERT_EQ(vms__os_resident_method(), kernel_has_pagemap_scan() ? 1 : -1);
}

TEST(resident_by_mincore_when_pagemap_scan_is_refused)
{
    vms__os_inject(VMS__OP_PAGEMAP_SCAN, 1, ENOTTY, true);   /* a kernel before 6.7 */
    check_resident_counts();
    ASSERT_EQ(vms__os_resident_method(), -1);
    vms__os_inject_clear();
    /* Decided once: mincore from now on, and unmapped memory is an error, not a count. */
    size_t page = vms__os_page_size();
    char *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    munmap(p, page);
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + page)), -ENOMEM);
    ASSERT_EQ(vms__os_resident_method(), -1);
}

TEST(resident_after_a_passing_pagemap_scan_failure)
{
    if (!kernel_has_pagemap_scan())
        SKIP("no PAGEMAP_SCAN: Linux before 6.7, or qemu-user, which does not pass it on");
    size_t page = vms__os_page_size();
    char *p = mmap(NULL, 8 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    p[page] = p[5 * page] = 1;
    /* Out of descriptors once: this count is mincore's, and the next tries again. */
    vms__os_inject(VMS__OP_PAGEMAP_SCAN, 1, EMFILE, false);
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + 8 * page)), (long long)(2 * page));
    ASSERT_EQ(vms__os_resident_method(), 0);
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + 8 * page)), (long long)(2 * page));
    ASSERT_EQ(vms__os_resident_method(), 1);
    /* Once it worked, a failure falls back for that call only. */
    vms__os_inject(VMS__OP_PAGEMAP_SCAN, 1, ENOTTY, false);
    ASSERT_EQ(vms__os_resident((uintptr_t)p, (uintptr_t)(p + 8 * page)), (long long)(2 * page));
    ASSERT_EQ(vms__os_resident_method(), 1);
    munmap(p, 8 * page);
}

/* Mappings overlapping any of several ranges, from one read of /proc/self/maps: a
 * reservation split into five by two read-write holes counts five, a range of it only
 * what it overlaps, two ranges their union, and no range every mapping. */
TEST(map_count_ranges)
{
    size_t page = vms__os_page_size();
    char *p = mmap(NULL, 16 * page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    ASSERT(p != MAP_FAILED);
    ASSERT_EQ(mprotect(p + 4 * page, page, PROT_READ | PROT_WRITE), 0);
    ASSERT_EQ(mprotect(p + 10 * page, page, PROT_READ | PROT_WRITE), 0);
    uintptr_t lo = (uintptr_t)p, hi = (uintptr_t)(p + 16 * page);
    ASSERT_EQ(vms__os_map_count(lo, hi), 5);
    const uintptr_t one[1][2] = { { lo, lo + 5 * page } };       /* [0,4) and [4,5) */
    ASSERT_EQ(vms__os_map_count_ranges(one, 1), 2);
    const uintptr_t two[2][2] = { { lo, lo + page }, { lo + 10 * page, lo + 12 * page } };
    ASSERT_EQ(vms__os_map_count_ranges(two, 2), 3);
    long all = vms__os_map_count_ranges(NULL, 0);
    ASSERT_GE(all, 5);
    ASSERT_EQ(all, vms__os_map_count(0, 0));
    munmap(p, 16 * page);
}

/* ---- descriptors as ThreadSanitizer sees them ------------------------------------------
 *
 * The probe's pipe is closed with a raw close(2) (no cancellation point), which TSan does
 * not intercept: it kept the descriptors' numbers as written by the closing thread, and
 * another thread's pipe2 given the same numbers, with no happens-before in between (two
 * threads starting vmstack at once), was reported as a data race (seen in
 * stack.first_use_on_two_threads_at_once). vmstack now tells TSan of its raw closes. */
static atomic_int probed;
static char probe_buf[64];

static void *probe_then_flag(void *arg)
{
    (void)arg;
    int r = vms__os_probe_noaccess(probe_buf);
    atomic_store_explicit(&probed, r == 0 ? 1 : 2, memory_order_relaxed);
    return NULL;
}

TEST(descriptors_closed_by_one_thread_reused_by_another)
{
#ifndef TST_TSAN
    SKIP("only ThreadSanitizer follows descriptors");
#endif
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, probe_then_flag, NULL), 0);
    /* Relaxed loads: no happens-before with the other thread's pipe and close. */
    while (!atomic_load_explicit(&probed, memory_order_relaxed)) sched_yield();
    ASSERT_EQ(vms__os_probe_noaccess(probe_buf), 0);   /* the same numbers again */
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_EQ(atomic_load(&probed), 1);
    /* A race report makes TSan end the process with 66. */
}

/* The fault-injection hook's "the nth next discard fails" (vms__os_inject with a count,
 * not always) holds for a batch too: the batch's one call stands for its first range,
 * which comes back refused with the injected error. The batch took the injected failure
 * as "not batched" and dropped every range alone: the failure the test asked for never
 * happened, and vms__os_discard_many said 0. */
TEST(an_injected_nth_discard_failure_refuses_a_range)
{
    NEED_FAULT_INJECTION();
    size_t page = vms__os_page_size();
    char *mem = scratch(2 * page);
    memset(mem, 0x5a, 2 * page);
    struct iovec iov[2] = { { mem, page }, { mem + page, page } };
    bool refused[2] = { false, false };
    vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, false);
    int e = vms__os_discard_many(iov, 2, refused);
    vms__os_inject_clear();
    ASSERT_EQ(e, -EIO);
    ASSERT(refused[0]);
    ASSERT(!refused[1]);
    size_t nonzero = 0;
    for (size_t i = page; i < 2 * page; i++) nonzero += mem[i] != 0;
    ASSERT_EQ(nonzero, 0);
    munmap(mem, 2 * page);
}
