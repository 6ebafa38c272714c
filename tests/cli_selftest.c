/*
 * cli_selftest.c - `vmstack selftest` as users run it: every check ok with vmstack's
 * choice of guard method and with each method forced, and clear errors for bad options.
 */
#include "cli_demo_run.h"

static char out[1 << 20];

static void need_vmap(void)
{
#ifndef VMSTACK_VMAP
    SKIP("this build has the direct backend (VMSTACK_VMAP=OFF): no guards");
#endif
}

/* The number of checks the selftest runs (tools/cmd_selftest.c). */
#define CHECKS 7

static void expect_all_ok(const char *method)
{
    /* A check may be skipped only for a reason outside vmstack (the compiler). */
    ASSERT_EQ(cli_count(out, "ok   ") + cli_count(out, "skip jump the guard"), CHECKS);
    ASSERT_EQ(cli_count(out, "FAIL "), 0);
    ASSERT_STR_CONTAINS(out, "PASSED: ");
    if (method) {
        char want[64];
        snprintf(want, sizeof want, "  guard method      %s", method);
        ASSERT_STR_CONTAINS(out, want);
    }
}

TEST(default_method)
{
    need_vmap();
    const char *args[] = { "selftest", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok(NULL);
}

TEST(madvise)
{
    need_vmap();
    const char *args[] = { "selftest", "--guard-method", "madvise", NULL };
    int st = cli_run(args, out, sizeof out);
    if (cli_line(out, "  guard method      mprotect"))
        SKIP("this kernel has no working MADV_GUARD_INSTALL");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok("madvise");
}

TEST(mprotect)
{
    need_vmap();
    const char *args[] = { "selftest", "--guard-method=mprotect", "--verbose", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok("mprotect");
    /* --verbose shows the children's reports. */
    ASSERT_STR_CONTAINS(out, "| vmstack: stack overflow in thread");
    ASSERT_STR_CONTAINS(out, "| vmstack: stack underflow in fiber");
}

/* A malformed VMSTACK_* variable is reported and the default used (DESIGN.md): the
 * selftest goes on, and says so once. It used to read the configuration child's output
 * from its first byte, found the warning there and stopped with "vmstack does not
 * initialize here". */
static void malformed_env_exec(void *arg)
{
    (void)arg;
    setenv("VMSTACK_CACHE", "many", 1);
    const char *argv[] = { VMSTACK_CMD, "selftest", NULL };
    cli_exec((void *)argv);
}

TEST(malformed_variable_warns_and_runs)
{
    need_vmap();
    int st = tst_fork(malformed_env_exec, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok(NULL);
    ASSERT_EQ(cli_count(out, "vmstack: warning: VMSTACK_CACHE=\"many\" is not a count"), 1);
}

/* The environment of a program that runs with VMSTACK_ON_OVERFLOW=abort and mprotect
 * guards: the checks still test the kill (they all failed, the child aborting), and the
 * header says where the method came from instead of "vmstack's choice". */
static void abort_env_exec(void *arg)
{
    (void)arg;
    setenv("VMSTACK_ON_OVERFLOW", "abort", 1);
    setenv("VMSTACK_GUARD_METHOD", "mprotect", 1);
    const char *argv[] = { VMSTACK_CMD, "selftest", NULL };
    cli_exec((void *)argv);
}

TEST(abort_in_the_environment_still_checks_the_kill)
{
    need_vmap();
    int st = tst_fork(abort_env_exec, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok("mprotect (VMSTACK_GUARD_METHOD in the environment)");
    ASSERT_STR_CONTAINS(out, "  on overflow       kill, for the checks "
                             "(VMSTACK_ON_OVERFLOW=abort in the environment is not used here)");
}

/* tst_fork's child: the selftest where /proc/sys/vm/max_map_count reads as empty, with
 * a getauxval that has no AT_MINSIGSTKSZ (as before Linux 5.14 on x86) where the build
 * has one to preload. */
static void unknowns_exec(void *arg)
{
    (void)arg;
    static const char *const files[] = { "/proc/sys/vm/max_map_count", NULL };
    cli_hide(files, NULL);
#ifdef VMSTACK_NOAUXV_LIB
    setenv("LD_PRELOAD", VMSTACK_NOAUXV_LIB, 1);
#endif
    const char *argv[] = { VMSTACK_CMD, "selftest", NULL };
    cli_exec((void *)argv);
}

/* The header said "vm.max_map_count -1" and "AT_MINSIGSTKSZ 0" for what it could not
 * find; the checks do not depend on either. */
TEST(unknowns_in_the_header_are_said_to_be)
{
    need_vmap();
    int st = tst_fork(unknowns_exec, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == CLI_CANNOT_HIDE)
        SKIP("no user and mount namespace to hide /proc files in");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok(NULL);
    ASSERT_STR_CONTAINS(out, ", vm.max_map_count unknown\n");
#ifdef VMSTACK_NOAUXV_LIB
    ASSERT_STR_CONTAINS(out, " bytes (AT_MINSIGSTKSZ not given by this kernel)\n");
#endif
}

TEST(bad_options)
{
    const char *a[] = { "selftest", "--guard-method", "mmap", NULL };
    ASSERT_EXITED(cli_run(a, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack selftest: error: --guard-method wants madvise or mprotect");
    const char *b[] = { "selftest", "--frobnicate", NULL };
    ASSERT_EXITED(cli_run(b, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "unknown option `--frobnicate`");
    const char *c[] = { "selftest", "--guard-method", NULL };
    ASSERT_EXITED(cli_run(c, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "needs a value");
}

/* tst_fork's child: `vmstack-direct selftest`, the command built on the direct backend. */
static __attribute__((unused)) void direct_exec(void *arg)
{
    (void)arg;
#ifdef VMSTACK_DIRECT_CMD
    const char *argv[] = { VMSTACK_DIRECT_CMD, "selftest", NULL };
    cli_exec((void *)argv);
#endif
}

/* Without guards the selftest must say so and fail: a selftest that passes everywhere
 * would not be testing anything. Every check but the end-magic one (which needs no
 * guard) must fail, each for not being caught. A guarded build runs vmstack-direct, the
 * same command on the direct backend, where it has one. */
TEST(direct_build_fails)
{
#if defined(VMSTACK_VMAP) && !defined(VMSTACK_DIRECT_CMD)
    SKIP("this build has guards and no vmstack-direct (a sanitizer build); see the other cases");
#else
#ifdef VMSTACK_VMAP
    int st = tst_fork(direct_exec, NULL, out, sizeof out);
#else
    const char *args[] = { "selftest", NULL };
    int st = cli_run(args, out, sizeof out);
#endif
    ASSERT_EXITED(st, 1);
    ASSERT_STR_CONTAINS(out, "  guard method      none");
    /* No guard is claimed below the stacks (it said 65536 bytes, the configured size). */
    ASSERT_STR_CONTAINS(out, "  guard, stack      none below the stacks, ");
    ASSERT_STR_NOT_CONTAINS(out, "bytes below each stack");
    int skipped = cli_count(out, "skip jump the guard");
    ASSERT_EQ(cli_count(out, "FAIL "), CHECKS - 1 - skipped);
    ASSERT_EQ(cli_count(out, "ok   corrupt the end magic"), 1);
    ASSERT_EQ(cli_count(out, "ok   "), 1);
    /* Each for not being caught: the task finished, or the fault was no guard's and the
     * child died of it. */
    for (const char *l = cli_line(out, "FAIL "); l; l = cli_line(l + 1, "FAIL ")) {
        const char *nl = strchr(l, '\n');
        const char *nc = strstr(l, "not caught");
        if (!nc || (nl && nc > nl)) TST_FAIL("a check failed otherwise: %.*s", (int)(nl ? nl - l : 100), l);
    }
    ASSERT_STR_CONTAINS(out, "FAILED: 1 of ");
#endif
}
