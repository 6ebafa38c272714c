/*
 * cli_selftest.c - `vmstack selftest` as users run it: every check ok with vmstack's
 * choice of guard method and with each method forced, and clear errors for bad options.
 */
#include "cli_demo_run.h"

static char out[1 << 20];

/* The number of checks the selftest runs (tools/cmd_selftest.c). */
#define CHECKS 7

static void expect_all_ok(const char *method)
{
    ASSERT_EQ(cli_count(out, "ok   "), CHECKS);
    ASSERT_EQ(cli_count(out, "FAIL "), 0);
    ASSERT_STR_CONTAINS(out, "PASSED: 7 of 7 checks passed");
    if (method) {
        char want[64];
        snprintf(want, sizeof want, "  guard method      %s", method);
        ASSERT_STR_CONTAINS(out, want);
    }
}

TEST(default_method)
{
    const char *args[] = { "selftest", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok(NULL);
}

TEST(madvise)
{
    const char *args[] = { "selftest", "--guard-method", "madvise", NULL };
    int st = cli_run(args, out, sizeof out);
    if (cli_line(out, "  guard method      mprotect"))
        SKIP("this kernel has no working MADV_GUARD_INSTALL");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok("madvise");
}

TEST(mprotect)
{
    const char *args[] = { "selftest", "--guard-method=mprotect", "--verbose", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("selftest failed:\n%s", out);
    expect_all_ok("mprotect");
    /* --verbose shows the children's reports. */
    ASSERT_STR_CONTAINS(out, "| vmstack: stack overflow in thread");
    ASSERT_STR_CONTAINS(out, "| vmstack: stack underflow in fiber");
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
