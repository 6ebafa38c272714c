/*
 * cli_demo.c - `vmstack demo` as users run it: exit status and summary numbers (fibers
 * verified = run - killed, killed = the planned overflows, one thread killed), the one
 * oops report shown, and clear errors for bad options. Never asserts on times.
 */
#include "cli_demo_run.h"

static char out[1 << 20];

struct summary { long run, verified, killed, planned, wrong; };

/* Parses a "fibers    ..." or "threads   ..." summary line. */
static struct summary summary_of(const char *what)
{
    const char *l = cli_line(out, what);
    if (!l) TST_FAIL("no \"%s\" line in:\n%s", what, out);
    struct summary s;
    const char *w = strstr(l, "), ");
    if (sscanf(l + strlen(what), " %ld run, %ld verified, %ld killed (%ld planned",
               &s.run, &s.verified, &s.killed, &s.planned) != 4 ||
        !w || sscanf(w, "), %ld wrong", &s.wrong) != 1)
        TST_FAIL("cannot parse: %.120s", l);
    return s;
}

TEST(quiet_500)
{
    const char *args[] = { "demo", "--fibers", "500", "--quiet", NULL };
    int st = cli_run(args, out, sizeof out);
    ASSERT_EXITED(st, 0);
    struct summary f = summary_of("fibers"), t = summary_of("threads");
    ASSERT_EQ(f.run, 500);
    ASSERT_EQ(f.verified, f.run - f.killed);
    ASSERT_EQ(f.killed, 3);           /* the default --overflow */
    ASSERT_EQ(f.planned, 3);
    ASSERT_EQ(f.wrong, 0);
    ASSERT_EQ(t.run, 4);
    ASSERT_EQ(t.killed, 1);
    ASSERT_EQ(t.verified, 3);
    ASSERT_STR_CONTAINS(out, "reports   4 oops reports, oops hook called 4 times");
    ASSERT_STR_CONTAINS(out, "result    OK");
    /* --quiet shows no report. */
    ASSERT_STR_NOT_CONTAINS(out, "Call Trace:");
}

TEST(shows_one_oops)
{
    const char *args[] = { "demo", "--fibers", "300", "--overflow", "5", "--threads", "2",
                           "--seed", "7", "--stack-size", "64k", NULL };
    int st = cli_run(args, out, sizeof out);
    ASSERT_EXITED(st, 0);
    struct summary f = summary_of("fibers"), t = summary_of("threads");
    ASSERT_EQ(f.killed, 5);
    ASSERT_EQ(f.verified, 295);
    ASSERT_EQ(t.killed, 1);
    ASSERT_EQ(t.verified, 1);
    /* Exactly one report is shown, complete: first line, trace of the parser, action. */
    ASSERT_EQ(cli_count(out, "vmstack: stack overflow in fiber \"parser-"), 1);
    ASSERT_EQ(cli_count(out, "vmstack: Call Trace:"), 1);
    ASSERT_STR_CONTAINS(out, "parse_array+0x");
    ASSERT_EQ(cli_count(out, "vmstack: killed fiber \"parser-"), 1);
    ASSERT_STR_CONTAINS(out, "reports   6 oops reports");
    ASSERT_STR_CONTAINS(out, "size 65536");
}

TEST(no_overflow)
{
    const char *args[] = { "demo", "--fibers", "200", "--overflow", "0", "--threads", "3", NULL };
    int st = cli_run(args, out, sizeof out);
    ASSERT_EXITED(st, 0);
    struct summary f = summary_of("fibers"), t = summary_of("threads");
    ASSERT_EQ(f.killed, 0);
    ASSERT_EQ(f.verified, 200);
    ASSERT_EQ(t.killed, 0);
    ASSERT_EQ(t.verified, 3);
    ASSERT_STR_CONTAINS(out, "No oops report was written.");
}

TEST(all_fibers_overflow)
{
    const char *args[] = { "demo", "--fibers", "6", "--overflow", "6", "--threads=0", "--quiet", NULL };
    int st = cli_run(args, out, sizeof out);
    ASSERT_EXITED(st, 0);
    struct summary f = summary_of("fibers");
    ASSERT_EQ(f.killed, 6);
    ASSERT_EQ(f.verified, 0);
}

TEST(bad_options)
{
    const char *bad[][4] = {
        { "demo", "--fibers", "abc", NULL },
        { "demo", "--fibers", "0", NULL },
        { "demo", "--bogus", NULL, NULL },
        { "demo", "--stack-size", "12q", NULL },
        { "demo", "--depth", NULL, NULL },
    };
    const char *want[] = { "--fibers", "--fibers", "unknown option `--bogus`", "--stack-size",
                           "--depth needs a value" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int st = cli_run(bad[i], out, sizeof out);
        ASSERT_EXITED(st, 2);
        ASSERT_STR_CONTAINS(out, "vmstack demo: error: ");
        ASSERT_STR_CONTAINS(out, want[i]);
    }
    const char *more[] = { "demo", "--fibers", "2", "--overflow", "3", NULL };
    ASSERT_EXITED(cli_run(more, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "--overflow cannot exceed --fibers");
}

TEST(help)
{
    const char *args[] = { "demo", "--help", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack demo");
    ASSERT_STR_CONTAINS(out, "--direct");
}
