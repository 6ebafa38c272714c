/*
 * options.c - vms_init and the VMSTACK_* variables: one test per row of the table in
 * src/options.c, precedence (vms_config, then environment, then default), malformed
 * values (warned once, default used) and vms_init's errors. Each case runs in a child,
 * because options are decided once per process.
 */
#include "internal.h"
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <vmstack.h>
#ifdef VMSTACK_VALGRIND
#include <valgrind/valgrind.h>
#endif

struct envcase { const char *var, *value; };

static void show_child(void *arg)
{
    const struct envcase *c = arg;
    /* Only the variable under test: CI runs the suite with VMSTACK_GUARD_METHOD set. */
    const char *vars[] = { "VMSTACK_STACK_SIZE", "VMSTACK_GUARD_SIZE", "VMSTACK_CACHE",
                           "VMSTACK_ON_OVERFLOW", "VMSTACK_PAINT", "VMSTACK_END_CHECK",
                           "VMSTACK_SCRUB", "VMSTACK_GUARD_METHOD" };
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) unsetenv(vars[i]);
    if (c && c->var) setenv(c->var, c->value, 1);
    vms_stack *s = vms_stack_alloc(0);
    vms_stats st;
    vms_get_stats(&st);
    printf("stack=%zu guard=%zu cache=%u overflow=%d fd=%d flags=%u method=%s\n",
           s ? vms_stack_size(s) : 0, vms__opt.guard_size, vms__opt.cache_per_thread,
           vms__opt.on_overflow, vms__opt.report_fd, vms__opt.flags, st.guard_method);
}

/* The defaults a child prints (the guard method depends on the kernel and the build). */
static const char *defaults_line(void)
{
    return "stack=262144 guard=65536 cache=8 overflow=0 fd=2 flags=0 method=";
}

static void run_env(const char *var, const char *value, char *out, size_t n)
{
    struct envcase c = { var, value };
    int st = tst_fork(show_child, &c, out, n);
    ASSERT_EXITED(st, 0);
}

TEST(defaults)
{
    char out[2048];
    run_env(NULL, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, defaults_line());
#ifdef VMSTACK_VMAP
    /* madvise on Linux 6.13+, mprotect before (detected, never assumed). */
    ASSERT(strstr(out, "method=madvise") || strstr(out, "method=mprotect"));
#else
    ASSERT_STR_CONTAINS(out, "method=none");
#endif
}

TEST(env_stack_size)
{
    char out[2048];
    run_env("VMSTACK_STACK_SIZE", "128k", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "stack=131072 ");
    run_env("VMSTACK_STACK_SIZE", "1M", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "stack=1048576 ");
    run_env("VMSTACK_STACK_SIZE", "100000", out, sizeof out);   /* rounded up to its class */
    ASSERT_STR_CONTAINS(out, "stack=131072 ");
}

TEST(env_guard_size)
{
    char out[2048];
    run_env("VMSTACK_GUARD_SIZE", "1m", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "guard=1048576 ");
    run_env("VMSTACK_GUARD_SIZE", "100", out, sizeof out);      /* at least one page */
    ASSERT_STR_CONTAINS(out, "guard=4096 ");
}

TEST(env_cache)
{
    char out[2048];
    run_env("VMSTACK_CACHE", "2", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "cache=2 ");
}

TEST(env_on_overflow)
{
    char out[2048];
    run_env("VMSTACK_ON_OVERFLOW", "abort", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "overflow=1 ");
    run_env("VMSTACK_ON_OVERFLOW", "kill", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "overflow=0 ");
}

TEST(env_paint_and_end_check_and_scrub)
{
    char out[2048];
    run_env("VMSTACK_PAINT", "1", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "flags=1 ");
    run_env("VMSTACK_END_CHECK", "1", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "flags=2 ");
    run_env("VMSTACK_SCRUB", "0", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "flags=8 ");
}

TEST(env_guard_method)
{
#ifndef VMSTACK_VMAP
    SKIP("the direct backend has no guards");
#endif
    char out[2048];
    run_env("VMSTACK_GUARD_METHOD", "mprotect", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "flags=4 method=mprotect");
    run_env("VMSTACK_GUARD_METHOD", "madvise", out, sizeof out);
    ASSERT(strstr(out, "method=madvise") || strstr(out, "method=mprotect"));
}

TEST(malformed_values_warn_and_use_defaults)
{
    const struct envcase bad[] = {
        { "VMSTACK_STACK_SIZE", "12q" }, { "VMSTACK_STACK_SIZE", "" },
        { "VMSTACK_STACK_SIZE", "99999999999999999999999" }, { "VMSTACK_STACK_SIZE", "2g" },
        { "VMSTACK_GUARD_SIZE", "-1" }, { "VMSTACK_CACHE", "many" },
        { "VMSTACK_ON_OVERFLOW", "explode" }, { "VMSTACK_PAINT", "maybe" },
        { "VMSTACK_GUARD_METHOD", "magic" },
        /* Below or above the limits, and every boolean. */
        { "VMSTACK_STACK_SIZE", "0" }, { "VMSTACK_STACK_SIZE", "1025m" },
        { "VMSTACK_GUARD_SIZE", "0" }, { "VMSTACK_GUARD_SIZE", "1073741825" },
        { "VMSTACK_CACHE", "1025" }, { "VMSTACK_CACHE", "-1" }, { "VMSTACK_CACHE", "1k" },
        { "VMSTACK_ON_OVERFLOW", "KILL" }, { "VMSTACK_END_CHECK", "2" },
        { "VMSTACK_SCRUB", "x" }, { "VMSTACK_GUARD_METHOD", "" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char out[2048];
        run_env(bad[i].var, bad[i].value, out, sizeof out);
        ASSERT_STR_CONTAINS(out, "vmstack: warning:");
        ASSERT_STR_CONTAINS(out, bad[i].var);
        ASSERT_STR_CONTAINS(out, "using the default");
        ASSERT_STR_CONTAINS(out, defaults_line());
        /* Once, not per use. */
        char *w = strstr(out, "vmstack: warning:");
        ASSERT(!strstr(w + 1, "vmstack: warning:"));
    }
    /* The warning says what would be accepted: the limits of a size, every boolean. */
    char out[2048];
    run_env("VMSTACK_STACK_SIZE", "2g", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "is not a size from 1 to 1073741824 bytes");
    run_env("VMSTACK_GUARD_SIZE", "0", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "is not a size from 1 to 1073741824 bytes");
    run_env("VMSTACK_PAINT", "maybe", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "is not 0 or 1 (or no/yes, off/on, false/true)");
}

/* A malformed variable whose field the program gives vms_init: the warning said "using
 * the default", but the program's value is what is used (a vms_config field wins over
 * the environment). It now says so; a field the program leaves 0 still gets the
 * default, and its warning says that. */
static void overridden_child(void *arg)
{
    (void)arg;
    setenv("VMSTACK_CACHE", "many", 1);
    setenv("VMSTACK_STACK_SIZE", "12q", 1);
    setenv("VMSTACK_PAINT", "maybe", 1);
    setenv("VMSTACK_GUARD_SIZE", "0", 1);
    vms_config c = { .stack_size = 512 * 1024, .cache_per_thread = 4, .flags = VMS_PAINT };
    if (vms_init(&c) != 0) exit(10);
    if (vms__opt.cache_per_thread != 4) exit(11);
    if (vms__opt.stack_size != 512 * 1024) exit(12);
    if (!(vms__opt.flags & VMS_PAINT)) exit(13);
    if (vms__opt.guard_size != VMS_DEFAULT_GUARD_SIZE) exit(14);
    exit(0);
}

TEST(malformed_value_overridden_by_vms_init_says_so)
{
    char out[4096];
    int st = tst_fork(overridden_child, NULL, out, sizeof out);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "VMSTACK_CACHE=\"many\" is not a count from 0 to 1024; "
                             "using the value the program gave vms_init\n");
    ASSERT_STR_CONTAINS(out, "VMSTACK_STACK_SIZE=\"12q\" is not a size from 1 to 1073741824 "
                             "bytes (digits with an optional k, m or g suffix, such as 64k); "
                             "using the value the program gave vms_init\n");
    ASSERT_STR_CONTAINS(out, "VMSTACK_PAINT=\"maybe\" is not 0 or 1 (or no/yes, off/on, "
                             "false/true); using the value the program gave vms_init\n");
    ASSERT_STR_CONTAINS(out, "VMSTACK_GUARD_SIZE=\"0\" is not a size from 1 to 1073741824 "
                             "bytes (digits with an optional k, m or g suffix, such as 64k); "
                             "using the default\n");
    ASSERT_EQ(tst_count(out, "using the default"), 1);
}

static void init_child(void *arg)
{
    (void)arg;
    setenv("VMSTACK_STACK_SIZE", "64k", 1);
    setenv("VMSTACK_GUARD_SIZE", "8k", 1);
    vms_config c = { .stack_size = 512 * 1024, .report_fd = 1 };
    if (vms_init(&c) != 0) exit(10);
    /* A config field wins over the environment; the environment over the default. */
    if (vms__opt.stack_size != 512 * 1024) exit(11);
    if (vms__opt.guard_size != 8 * 1024) exit(12);
    if (vms__opt.report_fd != 1) exit(13);
    /* Second init: busy. */
    if (vms_init(&c) != -EBUSY) exit(14);
    exit(0);
}

TEST(init_precedence_and_busy)
{
    char out[2048];
    ASSERT_EXITED(tst_fork(init_child, NULL, out, sizeof out), 0);
}

static void init_after_use_child(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);
    vms_stack_free(s);
    vms_config c = { 0 };
    exit(vms_init(&c) == -EBUSY ? 0 : 1);
}

TEST(init_after_first_use_is_busy)
{
    char out[2048];
    ASSERT_EXITED(tst_fork(init_after_use_child, NULL, out, sizeof out), 0);
}

/* vms_stack_usage(NULL, 0) is a call that counts, not one refused for its NULL: it puts
 * vmstack in use as any vms_stack_usage does (vmstack.h). */
static void usage_count_child(void *arg)
{
    (void)arg;
    if (vms_stack_usage(NULL, 0) < 0) exit(2);
    vms_config c = { 0 };
    exit(vms_init(&c) == -EBUSY ? 0 : 1);
}

TEST(usage_count_call_puts_vmstack_in_use)
{
    char out[2048];
    ASSERT_EXITED(tst_fork(usage_count_child, NULL, out, sizeof out), 0);
}

/* vmstack.h: only a stack, fiber or thread made, vms_get_stats or vms_stack_usage puts
 * vmstack in use; a hook set first, and calls refused for a NULL argument, leave
 * vms_init its say. */
static void hook_then_init_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
}

static void *hook_then_init_thread(void *arg)
{
    return arg;
}

static void init_after_hook_child(void *arg)
{
    (void)arg;
    vms_set_oops_hook(hook_then_init_hook, NULL);
    (void)vms_fiber_self();
    (void)vms_stack_remaining();
    vms_stack_free(NULL);
    vms_fiber_destroy(NULL);
    (void)vms_fiber_resume(NULL);
    (void)vms_get_stats(NULL);
    (void)vms_stack_usage(NULL, 1);
    /* The other calls refused for a NULL argument, and the getters (a lookup). */
    (void)vms_fiber_create(NULL, NULL, NULL);
    pthread_t t;
    (void)vms_thread_create(NULL, NULL, hook_then_init_thread, NULL);
    (void)vms_thread_create(&t, NULL, NULL, NULL);
    (void)vms_fiber_state(NULL);
    (void)vms_fiber_oops(NULL);
    (void)vms_fiber_stack(NULL);
    (void)vms_stack_base(NULL);
    (void)vms_stack_top(NULL);
    (void)vms_stack_size(NULL);
    (void)vms_stack_max_used(NULL);
    (void)vms_stack_self();
    (void)vms_handle_fault(SIGSEGV, NULL, NULL);
    if (vms_trim() != 0) exit(3);   /* before first use: nothing to do (docs/api.md) */
    vms_config c = { .stack_size = 64 * 1024 };
    if (vms_init(&c) != 0) exit(1);
    vms_stack *s = vms_stack_alloc(0);
    exit(s && vms_stack_size(s) == 64 * 1024 ? 0 : 2);
}

TEST(init_after_hook_and_null_calls)
{
    char out[2048];
    ASSERT_EXITED(tst_fork(init_after_hook_child, NULL, out, sizeof out), 0);
}

/* Calls refused for a stack size above the limit make nothing: vmstack stays unused and
 * vms_init configures it (they initialized it, and vms_init said -EBUSY). */
static void *never_runs(void *arg)
{
    return arg;
}

static void fiber_never_runs(void *arg)
{
    (void)arg;
}

static void init_after_refused_sizes_child(void *arg)
{
    (void)arg;
    errno = 0;
    if (vms_stack_alloc(VMS_MAX_STACK_SIZE + 1) || errno != EINVAL) exit(1);
    vms_fiber_attr fa = { .stack_size = VMS_MAX_STACK_SIZE + 1 };
    errno = 0;
    if (vms_fiber_create(fiber_never_runs, NULL, &fa) || errno != EINVAL) exit(2);
    pthread_attr_t ta;
    if (pthread_attr_init(&ta) != 0) exit(3);
    if (pthread_attr_setstacksize(&ta, VMS_MAX_STACK_SIZE + VMS_MIB) != 0) exit(4);
    pthread_t t;
    if (vms_thread_create(&t, &ta, never_runs, NULL) != -EINVAL) exit(5);
    pthread_attr_destroy(&ta);
    vms_config c = { .stack_size = 64 * 1024 };
    int e = vms_init(&c);
    if (e != 0) {
        printf("vms_init after the refused calls: %d\n", e);
        exit(6);
    }
    vms_stack *s = vms_stack_alloc(0);
    exit(s && vms_stack_size(s) == 64 * 1024 ? 0 : 7);
}

TEST(init_after_refused_sizes)
{
    char out[2048];
    int st = tst_fork(init_after_refused_sizes_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("child: %s %d; output:\n%s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
}

static void bad_init_child(void *arg)
{
    (void)arg;
    if (vms_init(NULL) != -EINVAL) exit(10);
    vms_config c = { .stack_size = SIZE_MAX };
    if (vms_init(&c) != -EINVAL) exit(11);
    c = (vms_config){ .guard_size = (size_t)2 << 30 };
    if (vms_init(&c) != -EINVAL) exit(12);
    c = (vms_config){ .on_overflow = 7 };
    if (vms_init(&c) != -EINVAL) exit(13);
    c = (vms_config){ .report_fd = -3 };
    if (vms_init(&c) != -EINVAL) exit(14);
    c = (vms_config){ .flags = 1u << 20 };
    if (vms_init(&c) != -EINVAL) exit(15);
    c = (vms_config){ .cache_per_thread = 100000 };
    if (vms_init(&c) != -EINVAL) exit(16);
    /* One past each limit. */
    c = (vms_config){ .stack_size = VMS_MAX_STACK_SIZE + 1 };
    if (vms_init(&c) != -EINVAL) exit(18);
    c = (vms_config){ .guard_size = VMS_MAX_GUARD_SIZE + 1 };
    if (vms_init(&c) != -EINVAL) exit(19);
    c = (vms_config){ .cache_per_thread = 1025 };
    if (vms_init(&c) != -EINVAL) exit(20);
    c = (vms_config){ .on_overflow = -1 };
    if (vms_init(&c) != -EINVAL) exit(21);
    c = (vms_config){ .flags = VMS_NO_SCRUB << 1 };
    if (vms_init(&c) != -EINVAL) exit(22);
    /* A report_fd that is not open, or open only for reading: reports would be lost. */
    int fd = open("/dev/null", O_WRONLY);
    close(fd);
    c = (vms_config){ .report_fd = fd };
    if (vms_init(&c) != -EINVAL) exit(23);
    fd = open("/dev/null", O_RDONLY);
    c = (vms_config){ .report_fd = fd };
    if (vms_init(&c) != -EINVAL) exit(24);
    close(fd);
    /* Rejected calls leave vmstack uninitialized: a good one still works. */
    c = (vms_config){ .flags = VMS_PAINT };
    if (vms_init(&c) != 0) exit(17);
    exit(0);
}

TEST(init_rejects_bad_config)
{
    char out[2048];
    ASSERT_EXITED(tst_fork(bad_init_child, NULL, out, sizeof out), 0);
}

TEST(parse_size)
{
    size_t v;
    ASSERT_EQ(vms__parse_size("0", &v), 0); ASSERT_EQ(v, 0);
    ASSERT_EQ(vms__parse_size("4096", &v), 0); ASSERT_EQ(v, 4096);
    ASSERT_EQ(vms__parse_size("64k", &v), 0); ASSERT_EQ(v, 65536);
    ASSERT_EQ(vms__parse_size("64KiB", &v), 0); ASSERT_EQ(v, 65536);
    ASSERT_EQ(vms__parse_size("2m", &v), 0); ASSERT_EQ(v, 2 << 20);
    ASSERT_EQ(vms__parse_size("1G", &v), 0); ASSERT_EQ(v, 1 << 30);
    ASSERT_EQ(vms__parse_size("", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size("k", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size("12x", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size("1kk", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size("64ki", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size("64kib", &v), 0); ASSERT_EQ(v, 65536);
    ASSERT_EQ(vms__parse_size("64kB", &v), 0); ASSERT_EQ(v, 65536);
    ASSERT_EQ(vms__parse_size("64i", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size(" 1", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size("99999999999999999999g", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size("17179869184g", &v), -EINVAL);
    ASSERT_EQ(vms__parse_size(NULL, &v), -EINVAL);
}

/* The largest values vms_init takes: a 1 GiB stack below a 1 GiB guard (address space
 * only) is allocated, runs a fiber and is freed. */
static void limits_body(void *arg)
{
    *(volatile int *)arg = 1;
}

static void init_limits_child(void *arg)
{
    (void)arg;
    vms_config c = { .stack_size = VMS_MAX_STACK_SIZE, .guard_size = VMS_MAX_GUARD_SIZE,
                     .cache_per_thread = 1024 };
    if (vms_init(&c) != 0) exit(10);
    if (vms__opt.stack_size != VMS_MAX_STACK_SIZE || vms__opt.guard_size != VMS_MAX_GUARD_SIZE)
        exit(11);
    int ran = 0;
    vms_fiber *f = vms_fiber_create(limits_body, &ran, NULL);
    if (!f) exit(12);
    if (vms_stack_size(vms_fiber_stack(f)) != VMS_MAX_STACK_SIZE) exit(13);
    if (vms_fiber_resume(f) != VMS_DONE || !ran) exit(14);
    vms_fiber_destroy(f);
    exit(0);
}

TEST(init_accepts_the_limits)
{
#ifdef VMSTACK_VALGRIND
    /* A 1 GiB stack below 1 GiB guards (the alternate stacks' too) took Valgrind 45 s to
     * over 100 s alone on a 2-core machine, and past its time limit when the machine was
     * busy; every other step runs this case. */
    if (RUNNING_ON_VALGRIND) SKIP("1 GiB stacks and guards take Valgrind minutes");
#endif
    char out[2048];
    int st = tst_fork(init_limits_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("child: %s %d; output:\n%s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
}

/* fork while another thread is initializing vmstack: the child must not inherit the init
 * lock held by that thread (its first vmstack call would wait for it for good). fork
 * waits for the initialization. The hook holds the initializing thread inside it until
 * the fork has begun (the fork hook says so) and the forking thread sleeps, blocked on
 * the init lock, so that without that wait the child is made in between. (It used to
 * hold it 100 ms, which on a busy machine could end before the fork had begun: then the
 * case tested nothing.) */
static atomic_int init_entered, fork_began, fork_tid;

static void note_fork(void)
{
    atomic_store(&fork_tid, tst_gettid());
    atomic_store(&fork_began, 1);
}

static void slow_init(void)
{
    atomic_store(&init_entered, 1);
    while (!atomic_load(&fork_began)) sched_yield();
    tst_wait_until_asleep(atomic_load(&fork_tid));
}

static sem_t init_child_done;

static void *first_user(void *arg)
{
    vms_stack *s = vms_stack_alloc(0);
    vms_stack_free(s);
    /* Alive until the child is done: under TSan a child that inherits an ended thread
     * nobody joined reports it as leaked. */
    while (sem_wait(&init_child_done) != 0) {}
    return s ? arg : NULL;
}

static void fork_during_init_child(void *arg)
{
    (void)arg;
    vms__init_hook = slow_init;
    if (sem_init(&init_child_done, 0, 0) != 0) exit(15);
    pthread_t t;
    if (pthread_create(&t, NULL, first_user, &init_entered) != 0) exit(10);
    while (!atomic_load(&init_entered)) sched_yield();
    vms__fork_hook = note_fork;
    pid_t pid = fork();
    if (pid < 0) exit(11);
    if (pid == 0) {
        vms__fork_hook = NULL;
        alarm(60);   /* a hang guard, not a time limit: far above any run on a loaded VM */
        vms_stack *s = vms_stack_alloc(0);
        if (!s) _exit(2);
        vms_stack_free(s);
        _exit(0);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    sem_post(&init_child_done);
    void *r = NULL;
    if (pthread_join(t, &r) != 0 || r != &init_entered) exit(12);
    if (WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM) {
        printf("the child hung in its first vmstack call\n");
        exit(13);
    }
    exit(WIFEXITED(st) ? WEXITSTATUS(st) : 14);
}

TEST(fork_during_another_threads_init_leaves_the_child_working)
{
    char out[2048];
    int st = tst_fork(fork_during_init_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("child: %s %d; output:\n%s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
}
