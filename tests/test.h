/*
 * test.h - the tiny test harness. One test program per .c file; each TEST(name) is its
 * own ctest case (tests/CMakeLists.txt finds them), run as `prog name`; `prog` alone
 * runs every case in order, each in a child process of its own as under ctest (cases
 * share no state: some depend on what a process has done before), and exits 1 if any
 * failed. Asserts print both operands. SKIP(...) exits 77, which ctest reports as
 * skipped. Death tests use tst_fork(): the child's stdout and stderr
 * come back through a pipe, with its wait status.
 */
#ifndef VMSTACK_TEST_H
#define VMSTACK_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

typedef void (*tst_fn)(void);
struct tst_case { const char *name; tst_fn fn; };
static struct tst_case tst_cases[256];
static int tst_ncases;
static const char *tst_current = "";

#define TEST(tname)                                                                 \
    static void test_##tname(void);                                                 \
    __attribute__((constructor)) static void tst_register_##tname(void)             \
    {                                                                               \
        tst_cases[tst_ncases].name = #tname;                                        \
        tst_cases[tst_ncases++].fn = test_##tname;                                  \
    }                                                                               \
    static void test_##tname(void)

#define TST_FAIL(...)                                                               \
    do {                                                                            \
        fprintf(stderr, "%s:%d: %s: ", __FILE__, __LINE__, tst_current);            \
        fprintf(stderr, __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                        \
        exit(1);                                                                    \
    } while (0)

#define SKIP(...)                                                                   \
    do {                                                                            \
        fprintf(stderr, "SKIP %s: ", tst_current);                                  \
        fprintf(stderr, __VA_ARGS__);                                               \
        fputc('\n', stderr);                                                        \
        exit(77);                                                                   \
    } while (0)

#define ASSERT(c)                                                                   \
    do { if (!(c)) TST_FAIL("assertion failed: %s", #c); } while (0)
#define ASSERT_INT_OP(a, op, b)                                                     \
    do {                                                                            \
        long long tst_a = (long long)(a), tst_b = (long long)(b);                   \
        if (!(tst_a op tst_b))                                                      \
            TST_FAIL("%s %s %s: %lld vs %lld", #a, #op, #b, tst_a, tst_b);          \
    } while (0)
#define ASSERT_EQ(a, b) ASSERT_INT_OP(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_INT_OP(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_INT_OP(a, <, b)
#define ASSERT_LE(a, b) ASSERT_INT_OP(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_INT_OP(a, >, b)
#define ASSERT_GE(a, b) ASSERT_INT_OP(a, >=, b)
#define ASSERT_UEQ(a, b)                                                            \
    do {                                                                            \
        unsigned long long tst_a = (unsigned long long)(a), tst_b = (unsigned long long)(b); \
        if (tst_a != tst_b)                                                         \
            TST_FAIL("%s == %s: %llu (0x%llx) vs %llu (0x%llx)", #a, #b, tst_a, tst_a, tst_b, tst_b); \
    } while (0)
#define ASSERT_PTR_EQ(a, b)                                                         \
    do {                                                                            \
        const void *tst_a = (a), *tst_b = (b);                                      \
        if (tst_a != tst_b) TST_FAIL("%s == %s: %p vs %p", #a, #b, tst_a, tst_b);   \
    } while (0)
#define ASSERT_NULL(a)     ASSERT_PTR_EQ(a, NULL)
#define ASSERT_NOT_NULL(a) do { if ((a) == NULL) TST_FAIL("%s is NULL (errno %d)", #a, errno); } while (0)
#define ASSERT_STR_CONTAINS(hay, needle)                                            \
    do {                                                                            \
        const char *tst_h = (hay), *tst_n = (needle);                               \
        if (!tst_h || !strstr(tst_h, tst_n))                                        \
            TST_FAIL("expected \"%s\" in:\n----\n%s\n----", tst_n, tst_h ? tst_h : "(null)"); \
    } while (0)
#define ASSERT_STR_NOT_CONTAINS(hay, needle)                                        \
    do {                                                                            \
        const char *tst_h = (hay), *tst_n = (needle);                               \
        if (tst_h && strstr(tst_h, tst_n))                                          \
            TST_FAIL("did not expect \"%s\" in:\n----\n%s\n----", tst_n, tst_h);    \
    } while (0)

/* A real frame for every call (no inlining, cloning or interprocedural shortcuts), so that
 * deep recursions really recurse and traces show the functions the tests look for. GCC
 * needs noipa; clang has no such attribute and does not need it with noinline. */
#if defined(__clang__)
#define NOIPA __attribute__((noinline))
#else
#define NOIPA __attribute__((noipa))
#endif

/* Deliberate stack overflows and wild writes confuse ASan's own SIGSEGV handler and its
 * shadow of the stacks: such cases only run without it. */
#if defined(__SANITIZE_ADDRESS__)
#define TST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TST_ASAN 1
#endif
#endif
#ifdef TST_ASAN
#define NO_ASAN() SKIP("deliberate stack overflows do not run under ASan")
#endif
#ifndef NO_ASAN
#define NO_ASAN() do {} while (0)
#endif
/* Whether ASan takes SIGSEGV/SIGBUS or gives threads alternate signal stacks of its own,
 * read at run time from ASAN_OPTIONS (the runtime's flags have no public getter; the
 * tests define no __asan_default_options that would set these). 1 unless all of
 * handle_segv, handle_sigbus and use_sigaltstack are 0 there (the last setting of each
 * wins, as in ASan's parser); 0 outside ASan. */
static inline int tst_asan_handles_segv(void)
{
#ifdef TST_ASAN
    static const char *const flags[] = { "handle_segv", "handle_sigbus", "use_sigaltstack" };
    const char *o = getenv("ASAN_OPTIONS");
    for (size_t f = 0; f < sizeof flags / sizeof flags[0]; f++) {
        size_t len = strlen(flags[f]);
        int off = 0;
        for (const char *p = o; p && *p; ) {
            p += strspn(p, " \t\n\r:,");
            if (strncmp(p, flags[f], len) == 0 && p[len] == '=')
                off = strncmp(p + len + 1, "0", 1) == 0 || strncmp(p + len + 1, "false", 5) == 0;
            p += strcspn(p, " \t\n\r:,");
        }
        if (!off) return 1;
    }
    return 0;
#else
    return 0;
#endif
}

/* A case that cannot run under ASan for the reason given (what was seen when it ran),
 * while ASan handles SIGSEGV/SIGBUS or owns the alternate signal stacks: with all of that
 * off (the ASan build's <file>-asan_nosegv.* variants) it runs, and says so for tst_fork. */
static int tst_asan_case_needs_no_segv __attribute__((unused));
#ifdef TST_ASAN
#define NO_ASAN_BECAUSE(why)                                                        \
    do {                                                                            \
        if (tst_asan_handles_segv()) SKIP("under ASan: %s", why);                   \
        tst_asan_case_needs_no_segv = 1;                                            \
    } while (0)
#else
#define NO_ASAN_BECAUSE(why) do {} while (0)
#endif
/* A case that cannot run under ASan even with its SIGSEGV/SIGBUS handling and alternate
 * stacks off (what was seen in the asan_nosegv variant is said). */
#ifdef TST_ASAN
#define NO_ASAN_EVEN_WITHOUT_SEGV(why) SKIP("under ASan (its SIGSEGV handling on or off): %s", why)
#else
#define NO_ASAN_EVEN_WITHOUT_SEGV(why) do {} while (0)
#endif

/* A case that runs under ASan in both runs, with its SIGSEGV/SIGBUS handling and alternate
 * stacks on (the default run) and off (the asan_nosegv variants): ASan's own code on the
 * case's path differs between them (why says how), so that the second run is not the
 * same as the first. */
#ifdef TST_ASAN
#define ASAN_ALSO_WITHOUT_SEGV(why) do { tst_asan_case_needs_no_segv = 1; } while (0)
#else
#define ASAN_ALSO_WITHOUT_SEGV(why) do {} while (0)
#endif

/* For a case that runs the same under ASan whether or not it handles SIGSEGV: skips in the
 * asan_nosegv variants, which run only the cases that need that handling off. tst_fork
 * calls it for every case that does not say NO_ASAN_BECAUSE; a case that forks no child
 * through tst_fork calls it itself. */
static inline void tst_asan_default_run_only(void)
{
#ifdef TST_ASAN
    if (!tst_asan_handles_segv() && !tst_asan_case_needs_no_segv)
        SKIP("ASan's SIGSEGV handling is off (ASAN_OPTIONS) and this case does not need it "
             "off: it runs in the default ASan run");
#endif
}

/* ThreadSanitizer: its runtime gives the main thread a 54 KiB alternate signal stack,
 * which vmstack keeps and warns about (its reporter needs more), and its own SIGSEGV
 * handler becomes the "previous handler" that vmstack chains to for faults that are
 * not its own (it reports the fault and exits 66 instead of dying by the signal). The
 * tests run as the docs tell a program under TSan to run: without either, so vmstack
 * installs alternate stacks of its own size and a foreign fault gets the default
 * action. TSAN_OPTIONS in the environment still overrides these. */
#if defined(__SANITIZE_THREAD__)
#define TST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define TST_TSAN 1
#endif
#endif
#ifdef TST_TSAN
#ifdef __cplusplus
extern "C" {
#endif
const char *__tsan_default_options(void);
#ifdef __cplusplus
}
#endif
const char *__tsan_default_options(void)
{
    return "handle_segv=0:use_sigaltstack=0";
}
/* A case that cannot run under TSan; why is said where it is used. */
#define NO_TSAN(why) SKIP("under TSan: %s", why)
#endif
#ifndef NO_TSAN
#define NO_TSAN(why) do {} while (0)
#endif

/* Tests of guards themselves skip on the direct backend (VMSTACK_VMAP=OFF): it has none by
 * design, and its own tests (tests/direct.c) show what that means. Decided at compile
 * time, so that the parent of a forked child never initializes vmstack by asking. */
static inline void need_guards(void)
{
#ifndef VMSTACK_VMAP
    SKIP("the direct backend has no guards");
#endif
}
#define NEED_GUARD_FAULTS() do { NO_ASAN(); need_guards(); } while (0)

/* Skips a case that forces failures through the os layer's fault injection, in a build
 * without it (-DVMSTACK_FAULT_INJECTION=OFF). */
#ifdef VMSTACK_FAULT_INJECTION
#define NEED_FAULT_INJECTION() do {} while (0)
#else
#define NEED_FAULT_INJECTION() SKIP("built without VMSTACK_FAULT_INJECTION")
#endif

/* How many different pointers v[0..n) holds. */
static inline int tst_distinct(void *const *v, int n)
{
    int d = 0;
    for (int i = 0; i < n; i++) {
        int j = 0;
        while (j < i && v[j] != v[i]) j++;
        d += j == i;
    }
    return d;
}

/* mlock and munlock as system calls: the sanitizers' interceptors of mlock do nothing
 * and return 0 (ASan: "mlock is not supported"), and a locked range is what a case needs
 * (the kernel refuses MADV_DONTNEED on it, EINVAL). 0 or -1 with errno. */
static inline int tst_mlock(const void *p, size_t len)
{
    return (int)syscall(SYS_mlock, p, len);
}

static inline int tst_munlock(const void *p, size_t len)
{
    return (int)syscall(SYS_munlock, p, len);
}

/* The pages of [p, p + len) that mincore(2) says are resident (p page-aligned), or -1
 * with errno where it fails: the caller decides what that means (qemu-user's mincore
 * refuses ranges with a page the guest cannot read, PROT_NONE included). In pieces of
 * 256 pages through a buffer on the stack: no allocation, so a forked child of a
 * threaded parent may call it. */
static inline long tst_resident_pages(const void *p, size_t len)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    unsigned char vec[256];
    long r = 0;
    for (size_t off = 0; off < len; off += sizeof vec * page) {
        size_t n = len - off < sizeof vec * page ? len - off : sizeof vec * page;
        if (mincore((char *)p + off, n, vec) != 0) return -1;
        for (size_t i = 0; i < (n + page - 1) / page; i++) r += vec[i] & 1;
    }
    return r;
}

/* Leaves the process no file descriptor to open (RLIMIT_NOFILE lowered to the lowest
 * free one: open, pipe and dup fail with EMFILE); *old gets the limit to put back with
 * setrlimit. For a child: exits 10 to 12 when it cannot. */
static inline void tst_use_up_descriptors(struct rlimit *old)
{
    if (getrlimit(RLIMIT_NOFILE, old) != 0) exit(10);
    int lowest = dup(0);
    if (lowest < 0) exit(11);
    close(lowest);
    struct rlimit lim = *old;
    lim.rlim_cur = (rlim_t)lowest;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) exit(12);
}

/* Sets RLIMIT_AS (soft and hard) to lim bytes. For a child: exits 91 when setrlimit
 * fails. Returns 0 where the limit did not take: qemu-user answers
 * setrlimit(RLIMIT_AS) with success and sets nothing (the limit would bind its own
 * allocations), and getrlimit then says unlimited. */
static inline int tst_set_address_space(rlim_t lim)
{
    struct rlimit r = { lim, lim };
    if (setrlimit(RLIMIT_AS, &r) != 0) exit(91);
    return getrlimit(RLIMIT_AS, &r) == 0 && r.rlim_cur == lim;
}

/* Lets the process map `extra` bytes more than it has mapped now (RLIMIT_AS, from
 * /proc/self/statm's first field). For a child: exits 90 or 91 when it cannot read or
 * set it. Returns 0 where the limit did not take (qemu-user: tst_set_address_space). */
static inline int tst_limit_address_space(size_t extra)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f || fscanf(f, "%lu", &pages) != 1) exit(90);
    fclose(f);
    return tst_set_address_space((rlim_t)(pages * (size_t)sysconf(_SC_PAGESIZE) + extra));
}

/* The calling thread's kernel thread ID. */
static inline pid_t tst_gettid(void)
{
    return (pid_t)syscall(SYS_gettid);
}

/* Waits until thread tid of this process sleeps in the kernel (state S or D in
 * /proc/self/task/<tid>/stat), as a thread blocked on a mutex that the caller holds
 * does. For a case that must hold a lock until another thread waits for it: a sleep
 * only guesses, and a busy machine can end it before the other thread got there (the
 * case then passes without testing the wait). Returns at once when /proc cannot tell,
 * or when the thread is neither running nor sleeping: then the case tests less, never
 * wrongly. Makes no call into vmstack and allocates nothing. */
static inline void tst_wait_until_asleep(pid_t tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    for (;;) {
        char buf[512];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) return;
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n <= 0) return;
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');     /* the name in parentheses may hold any byte */
        if (!p || p[1] != ' ' || p[2] != 'R') return;
        sched_yield();
    }
}

/* Lines of /proc/self/maps (this process's mappings), or -1. */
static inline long tst_count_maps(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    long n = 0;
    int c;
    while ((c = fgetc(f)) != EOF) n += c == '\n';
    fclose(f);
    return n;
}

/* VmRSS of this process in KiB, or -1. */
static inline long tst_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long v = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1) break;
    fclose(f);
    return v;
}

/* How many times needle occurs in hay, not overlapping. */
static inline int tst_count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle)) n++;
    return n;
}

/* Runs fn(arg) in a child process whose stdout and stderr go to a pipe; returns the
 * child's wait status and fills out (NUL-terminated, truncated to outsz). The child
 * exits 0 when fn returns. */
static inline int tst_fork(void (*fn)(void *), void *arg, char *out, size_t outsz)
{
    /* With ASan's SIGSEGV/SIGBUS handling and alternate stacks off (the asan_nosegv
     * variants), only the cases that skip with them on (NO_ASAN_BECAUSE) fork their
     * children: the others ran the same in the default ASan run. */
    tst_asan_default_run_only();
    int p[2];
    if (pipe(p) != 0) TST_FAIL("pipe: %s", strerror(errno));
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) TST_FAIL("fork: %s", strerror(errno));
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 1);
        dup2(p[1], 2);
        close(p[1]);
        fn(arg);
        fflush(NULL);
        _exit(0);
    }
    close(p[1]);
    size_t n = 0;
    for (;;) {
        char tmp[4096];
        ssize_t r = read(p[0], tmp, sizeof tmp);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++)
            if (n + 1 < outsz) out[n++] = tmp[i];
    }
    if (outsz) out[n] = '\0';
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

/* tst_fork for a child that must succeed: fails with the child's output unless it exited
 * 0, skips when the child skipped; returns out for further checks. */
static inline const char *tst_run_ok(void (*fn)(void *), void *arg, char *out, size_t outsz)
{
    int st = tst_fork(fn, arg, out, outsz);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        /* The child skipped (SKIP): so does the case, with the child's reason. */
        fputs(out, stderr);
        exit(77);
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("child failed (%s %d); its output:\n%s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
    return out;
}

static inline void *tst_probe_thread_idle(void *arg)
{
    __atomic_store_n((int *)arg, 1, __ATOMIC_RELEASE);
    for (;;) pause();
    return arg;
}

static inline void *tst_probe_thread_ends(void *arg)
{
    return arg;
}

/* tst_fork's child for tst_thread_after_fork_works: starts a thread, forks, and exits
 * with the status of the grandchild, which starts and joins a thread of its own. The
 * fork waits until the thread runs: forked while it was still starting, under ASan
 * (whose thread start holds the runtime's locks, which gcc 12's runtime does not take
 * around a fork), the grandchild's pthread_create waited for good now and then under
 * load (thread.fork_while_threads_run timed out). */
static inline void tst_thread_after_fork_child(void *arg)
{
    (void)arg;
    pthread_t t, u;
    static int started;
    if (pthread_create(&t, NULL, tst_probe_thread_idle, &started) != 0) _exit(10);
    while (!__atomic_load_n(&started, __ATOMIC_ACQUIRE)) sched_yield();
    pid_t pid = fork();
    if (pid < 0) _exit(11);
    if (pid == 0) _exit(pthread_create(&u, NULL, tst_probe_thread_ends, NULL) != 0 ||
                        pthread_join(u, NULL) != 0 ? 12 : 0);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 13);
}

/* Whether a process forked from one with threads can start a thread, tried in a child.
 * qemu-user 7.2 (the aarch64 cross tests) cannot: the emulator fails an assertion of its
 * own (in qemu_plugin_vcpu_init_hook, then cpu_exec) and the child exits 127. For cases
 * that must skip there, with this reason, rather than guess qemu from a missing vDSO. */
static inline int tst_thread_after_fork_works(void)
{
    char o[4096];
    int st = tst_fork(tst_thread_after_fork_child, NULL, o, sizeof o);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

#define ASSERT_EXITED(status, code)                                                 \
    do {                                                                            \
        int tst_s = (status);                                                       \
        if (!WIFEXITED(tst_s) || WEXITSTATUS(tst_s) != (code))                      \
            TST_FAIL("child: want exit %d, got %s %d", (code),                      \
                     WIFEXITED(tst_s) ? "exit" : "signal",                          \
                     WIFEXITED(tst_s) ? WEXITSTATUS(tst_s) : WTERMSIG(tst_s));      \
    } while (0)
#define ASSERT_SIGNALED(status, sig)                                                \
    do {                                                                            \
        int tst_s = (status);                                                       \
        if (!WIFSIGNALED(tst_s) || WTERMSIG(tst_s) != (sig))                        \
            TST_FAIL("child: want signal %d, got %s %d", (sig),                     \
                     WIFEXITED(tst_s) ? "exit" : "signal",                          \
                     WIFEXITED(tst_s) ? WEXITSTATUS(tst_s) : WTERMSIG(tst_s));      \
    } while (0)

int main(int argc, char **argv)
{
    int ran = 0, failed = 0;
    for (int i = 0; i < tst_ncases; i++) {
        if (argc > 1 && strcmp(argv[1], tst_cases[i].name) != 0) continue;
        tst_current = tst_cases[i].name;
        ran++;
        if (argc > 1) {
            tst_cases[i].fn();
            fprintf(stderr, "ok %s\n", tst_cases[i].name);
            continue;
        }
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) TST_FAIL("fork: %s", strerror(errno));
        if (pid == 0) {
            tst_cases[i].fn();
            fprintf(stderr, "ok %s\n", tst_cases[i].name);
            exit(0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(st) || (WEXITSTATUS(st) != 0 && WEXITSTATUS(st) != 77)) {
            fprintf(stderr, "FAILED %s\n", tst_cases[i].name);
            failed++;
        }
    }
    if (argc > 1 && ran == 0) {
        fprintf(stderr, "no test named %s\n", argv[1]);
        return 2;
    }
    return failed ? 1 : 0;
}

#endif /* VMSTACK_TEST_H */
