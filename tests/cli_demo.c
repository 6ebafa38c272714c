/*
 * cli_demo.c - `vmstack demo` as users run it: exit status and summary numbers (fibers
 * verified = run - killed, killed = the planned overflows, one thread killed), the one
 * oops report shown, and clear errors for bad options. Never asserts on times.
 */
#include "cli_demo_run.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>

static char out[1 << 20];

/* The guarded behaviour needs the vmapped backend; a VMSTACK_VMAP=OFF build runs the
 * direct-mode tests below instead. */
static void need_vmap(void)
{
#ifndef VMSTACK_VMAP
    SKIP("this build has the direct backend (VMSTACK_VMAP=OFF): no guards");
#endif
}

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
    need_vmap();
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
    /* With madvise guards 500 stacks take a handful of mappings, not two per stack. */
    const char *m = cli_line(out, "mappings  ");
    long maps = -1;
    ASSERT_NOT_NULL(m);
    ASSERT_EQ(sscanf(m, "mappings  %ld used by vmstack", &maps), 1);
    if (cli_line(out, "stacks    256.0 KiB usable each; guards: madvise")) ASSERT_LT(maps, 64);
    else ASSERT_GT(maps, 500);
}

TEST(shows_one_oops)
{
    need_vmap();
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

/* VMSTACK_ON_OVERFLOW=abort, exported for the user's own programs, ended the demo at its
 * first planned overflow by SIGSEGV with nothing shown: the demo runs with the kill and
 * says the variable was not used. */
TEST(abort_in_the_environment_is_not_used)
{
    need_vmap();
    setenv("VMSTACK_ON_OVERFLOW", "abort", 1);
    const char *args[] = { "demo", "--fibers", "100", "--overflow", "2", "--threads", "2", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    struct summary f = summary_of("fibers"), t = summary_of("threads");
    ASSERT_EQ(f.killed, 2);
    ASSERT_EQ(f.verified, 98);
    ASSERT_EQ(t.killed, 1);
    ASSERT_STR_CONTAINS(out, "overflow  kill the task: the demo shows the kill "
                             "(VMSTACK_ON_OVERFLOW=abort in the\n          environment is not used here)");
    setenv("VMSTACK_ON_OVERFLOW", "kill", 1);
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    ASSERT(!cli_line(out, "overflow  "));
}

/* A malformed VMSTACK_* variable is reported once per run: `--direct` said it twice,
 * once for the guarded run and once more from vmstack-direct. */
TEST(malformed_variable_is_warned_about_once)
{
    setenv("VMSTACK_CACHE", "bogus", 1);
    const char *warning = "vmstack: warning: VMSTACK_CACHE=\"bogus\" is not a count";
    const char *args[] = { "demo", "--fibers", "100", "--quiet", NULL };
    int st = cli_run(args, out, sizeof out);
    unsetenv("VMSTACK_CACHE");
    if (!WIFEXITED(st) || WEXITSTATUS(st) > 1) TST_FAIL("want exit 0 or 1:\n%s", out);
    ASSERT_EQ(cli_count(out, warning), 1);
#if defined(VMSTACK_VMAP) && defined(VMSTACK_DIRECT_CMD) && !defined(VMSTACK_CMD_EMULATOR)
    setenv("VMSTACK_CACHE", "bogus", 1);
    const char *direct[] = { "demo", "--direct", "--fibers", "300", "--quiet", NULL };
    st = cli_run(direct, out, sizeof out);
    unsetenv("VMSTACK_CACHE");
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "The same without guards (vmstack-direct):");
    ASSERT_EQ(cli_count(out, warning), 1);
#endif
}

/* The warning about a malformed VMSTACK_STACK_SIZE, said once for the run before the
 * demo's vms_init, says what is used: the size given with --stack-size, which the demo
 * gives vms_init; it said "using the default". */
TEST(malformed_stack_size_with_stack_size_option_says_the_option_is_used)
{
    setenv("VMSTACK_STACK_SIZE", "bogus", 1);
    const char *args[] = { "demo", "--fibers", "100", "--stack-size", "64k", "--quiet", NULL };
    int st = cli_run(args, out, sizeof out);
    unsetenv("VMSTACK_STACK_SIZE");
    if (!WIFEXITED(st) || WEXITSTATUS(st) > 1) TST_FAIL("want exit 0 or 1:\n%s", out);
    ASSERT_EQ(cli_count(out, "vmstack: warning: VMSTACK_STACK_SIZE=\"bogus\" is not a size"), 1);
    ASSERT_STR_CONTAINS(out, "; using the value the program gave vms_init\n");
    ASSERT_STR_NOT_CONTAINS(out, "; using the default");
    const char *plain[] = { "demo", "--fibers", "100", "--quiet", NULL };
    setenv("VMSTACK_STACK_SIZE", "bogus", 1);
    st = cli_run(plain, out, sizeof out);
    unsetenv("VMSTACK_STACK_SIZE");
    if (!WIFEXITED(st) || WEXITSTATUS(st) > 1) TST_FAIL("want exit 0 or 1:\n%s", out);
    ASSERT_STR_CONTAINS(out, "; using the default\n");
}

TEST(no_overflow)
{
    need_vmap();
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
    need_vmap();
    const char *args[] = { "demo", "--fibers", "6", "--overflow", "6", "--threads=0", "--quiet", NULL };
    int st = cli_run(args, out, sizeof out);
    ASSERT_EXITED(st, 0);
    struct summary f = summary_of("fibers");
    ASSERT_EQ(f.killed, 6);
    ASSERT_EQ(f.verified, 0);
}

/* The summary checks that every kill was counted the same three ways (reports on the
 * pipe, oops-hook calls, vms_get_stats overflows) and fails the run when they disagree.
 * vmstack-miscount, a test-only build of the command, leaves its first hook call
 * uncounted: the check must fire, with the figures, and the exit status must be 1. */
TEST(counts_that_disagree_fail_the_run)
{
    need_vmap();
#ifndef VMSTACK_MISCOUNT_CMD
    SKIP("the test-only vmstack-miscount command is not built");
#else
    const char *argv[] = { VMSTACK_MISCOUNT_CMD, "demo", "--fibers", "20", "--overflow", "2",
                           "--threads=0", "--quiet", NULL };
    int st = tst_fork(cli_exec, (void *)argv, out, sizeof out);
    ASSERT_EXITED(st, 1);
    struct summary f = summary_of("fibers");
    ASSERT_EQ(f.killed, 2);
    ASSERT_EQ(f.wrong, 0);
    ASSERT_STR_CONTAINS(out, "reports   2 oops reports, oops hook called 1 time, vms_get_stats overflows 2");
    ASSERT_STR_CONTAINS(out, "result    FAILED: 2 killed, but 2 reports, 1 hook calls, 2 overflows counted");
#endif
}

/* The default --overflow (3) follows a smaller --fibers instead of refusing it; an
 * explicit one that does not fit is still refused (bad_options). Counts of one are
 * singular. */
TEST(one_fiber_takes_the_default_overflow_down)
{
    need_vmap();
    const char *args[] = { "demo", "--fibers", "1", "--threads", "0", "--quiet", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    struct summary f = summary_of("fibers");
    ASSERT_EQ(f.run, 1);
    ASSERT_EQ(f.killed, 1);
    ASSERT_EQ(f.verified, 0);
    ASSERT_STR_CONTAINS(out, "(1 planned overflow), 0 wrong");
    ASSERT_STR_CONTAINS(out, "reports   1 oops report, oops hook called 1 time,");
}

/* A size printed by the demo ("8.5 KiB", "16.6 MiB"), in KiB. */
static double kib_of(const char *s)
{
    double v = 0;
    char unit[4] = "";
    if (sscanf(s, "%lf %3s", &v, unit) != 2) TST_FAIL("not a size: %.40s", s);
    if (!strcmp(unit, "MiB")) return v * 1024;
    if (!strcmp(unit, "GiB")) return v * 1024 * 1024;
    if (strcmp(unit, "KiB") != 0) TST_FAIL("not a size: %.40s", s);
    return v;
}

/* The memory line divides the growth of the resident set by the fibers alive at their
 * deepest point. The killed fibers' stacks, touched down to the guard, used to stay
 * resident (the fibers were destroyed in the second pass) and were counted in the growth
 * but not in the divisor: with half of 200 fibers deep, 266 KiB "per fiber" for fibers
 * that use a few KiB each, and "for 200 stacks" of 100 live ones. */
TEST(memory_per_fiber_counts_only_live_fibers)
{
    need_vmap();
    const char *args[] = { "demo", "--fibers", "200", "--overflow", "100", "--threads", "0",
                           "--quiet", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    const char *m = cli_line(out, "memory    ");
    ASSERT_NOT_NULL(m);
    const char *live = strstr(m, " live fibers"), *stacks = strstr(m, "vmstack resident ");
    ASSERT(live && stacks);
    while (live > m && live[-1] != ' ') live--;
    ASSERT_EQ(atol(live), 100);
    stacks = strstr(stacks, " for ");
    ASSERT_NOT_NULL(stacks);
    ASSERT_EQ(atol(stacks + 5), 100);
    /* A normal fiber holds 48 levels of the parser and its record, a few KiB (about 67
     * with ASan's shadow and fake stacks); with the killed ones' 256 KiB each counted it
     * was over 256. Not under TSan: its shadow of the killed fibers' stacks (about 0.8 MiB
     * each) stays resident when vmstack gives the stacks' pages back. */
#ifndef TST_TSAN
    ASSERT_LT(kib_of(m + strlen("memory    ")), 128.0);
#endif
}

/* What a fiber costs includes the page tables that map its pages (about 0.6 KiB of the
 * 8-9 KiB of a default fiber, as the benchmarks count memory per stack), which are not
 * in the resident set: the memory line adds their growth to the RSS delta before it
 * divides. It used to give the RSS delta alone as the fibers' cost. */
TEST(memory_per_fiber_includes_page_tables)
{
    need_vmap();
    const char *args[] = { "demo", "--fibers", "500", "--threads", "0", "--quiet", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    const char *m = cli_line(out, "memory    ");
    ASSERT_NOT_NULL(m);
    const char *rss = strstr(m, "(RSS delta "), *pt = strstr(m, " + page tables "),
               *live = strstr(m, "\n          / ");
    if (!rss || !pt || !live) TST_FAIL("no RSS delta + page tables / live fibers in:\n%.300s", m);
    double per = kib_of(m + strlen("memory    ")), r = kib_of(rss + strlen("(RSS delta ")),
           p = kib_of(pt + strlen(" + page tables "));
    long n = atol(live + strlen("\n          / "));
    ASSERT_EQ(n, 497);
    /* 500 stacks span 160 MiB of address space: at least one page-table page per 2 MiB. */
    ASSERT_GT(p, 0.0);
    /* The printed figures are rounded to one decimal of their unit. */
    double want = (r + p) / (double)n;
    if (per < want * 0.97 - 0.1 || per > want * 1.03 + 0.1)
        TST_FAIL("%.2f KiB per fiber, but (%.1f + %.1f) / %ld = %.2f KiB", per, r, p, n, want);
}

/* Exit status of small_address_space_exec where the limit did not take. */
#define AS_LIMIT_IGNORED 76

/* tst_fork's child: `vmstack demo --fibers 10` with 64 MiB of address space: the
 * program's own mappings (16 MiB on x86-64) leave less than an arena of stacks needs
 * (64 MiB at the least; it was 4 GiB, and 4 GiB of limit served here before). Exits
 * AS_LIMIT_IGNORED where setrlimit sets nothing (qemu-user, tst_set_address_space). */
static __attribute__((unused)) void small_address_space_exec(void *arg)
{
    (void)arg;
    if (!tst_set_address_space(64ul << 20)) _exit(AS_LIMIT_IGNORED);
    const char *argv[] = { VMSTACK_CMD, "demo", "--fibers", "10", NULL };
    cli_exec((void *)argv);
}

/* The deep inputs' depth comes from a calibration fiber that measures the stack a level
 * takes. When that fiber could not be made, the demo went on with 64 bytes per level,
 * and its header said "at 64 bytes per level that is 1.25 times their stack" as if it
 * had measured it: now it stops and says why. */
TEST(calibration_failure_is_an_error_not_a_guess)
{
    need_vmap();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("a sanitizer's runtime needs more address space than the limit this test sets");
#else
    int st = tst_fork(small_address_space_exec, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == AS_LIMIT_IGNORED)
        SKIP("setrlimit(RLIMIT_AS) succeeded and set nothing (qemu-user)");
    if (strstr(out, "vms_init:")) SKIP("vmstack does not initialize in 64 MiB of address space here");
    ASSERT_EXITED(st, 1);
    ASSERT_STR_CONTAINS(out, "vmstack demo: error: cannot measure the stack a nesting level "
                             "takes (on a calibration fiber): vms_fiber_create: ");
    ASSERT_STR_NOT_CONTAINS(out, "bytes per\nlevel");
    ASSERT_STR_NOT_CONTAINS(out, "result ");
#endif
}

/* tst_fork's child: a demo whose options each make sense but which together would need
 * terabytes: 1,000,000 fibers holding 100,000 levels of 64 MiB stacks. Outside the
 * sanitizers (whose runtimes need more address space) with RLIMIT_AS at 12 GiB, so that
 * a demo that tried anyway would fail its allocations instead of filling the machine. */
static void too_big_exec(void *arg)
{
    (void)arg;
#if !defined(TST_ASAN) && !defined(TST_TSAN)
    struct rlimit rl = { 12ul << 30, 12ul << 30 };
    if (setrlimit(RLIMIT_AS, &rl) != 0) _exit(126);
#endif
    const char *argv[] = { VMSTACK_CMD, "demo", "--fibers", "1000000", "--depth", "100000",
                           "--stack-size", "64m", "--quiet", NULL };
    cli_exec((void *)argv);
}

/* Such a run started making its inputs and stacks and ended in the OOM killer, or a
 * thrashing machine (--fibers 1000000 --overflow 1000000 wants 41 GiB): now the demo
 * estimates its peak first and refuses, with exit 2, what the machine cannot give it. */
TEST(more_memory_than_the_machine_has_is_refused)
{
    need_vmap();
    int st = tst_fork(too_big_exec, NULL, out, sizeof out);
    if (strstr(out, "vms_init:") || strstr(out, "cannot measure the stack"))
        SKIP("vmstack cannot make a 64 MiB stack in 12 GiB of address space here");
    ASSERT_EXITED(st, 2);
    ASSERT_STR_CONTAINS(out, "vmstack demo: error: --fibers 1000000 at --depth 100000 (and 4 "
                             "deep inputs of ");
    ASSERT_STR_CONTAINS(out, " TiB of memory, more than the ");
    ASSERT_STR_CONTAINS(out, "; lower --fibers, --depth or --overflow");
    ASSERT_STR_NOT_CONTAINS(out, "result ");
}

/* The header and the memory and mappings lines said "1 fibers on 2 threads, then 1
 * vmstack threads", "/ 1 live fibers", "for 1 stacks"; a single fiber runs on one of the
 * two worker threads. */
TEST(one_fiber_and_one_thread_are_singular_everywhere)
{
    need_vmap();
    const char *args[] = { "demo", "--fibers", "1", "--overflow", "0", "--threads", "1",
                           "--quiet", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "vmstack demo: 1 fiber on 1 thread, then 1 vmstack thread; seed 1\n");
    ASSERT_STR_CONTAINS(out, "\n          / 1 live fiber; vmstack resident ");
    ASSERT_STR_CONTAINS(out, " for 1 stack\n");
    ASSERT_STR_CONTAINS(out, "mappings  ");
    ASSERT_STR_CONTAINS(out, " used by vmstack for 1 live stack; ");
}

/* tst_fork's child: the demo where /proc/sys/vm/max_map_count and /proc/self/maps read
 * as empty (a sandbox). */
static void hidden_proc_exec(void *arg)
{
    (void)arg;
    static const char *const files[] = { "/proc/sys/vm/max_map_count", "/proc/self/maps", NULL };
    cli_hide(files, NULL);
    const char *argv[] = { VMSTACK_CMD, "demo", "--fibers", "20", "--quiet", NULL };
    cli_exec((void *)argv);
}

/* The mappings line said "vm.max_map_count is -1" where that file cannot be read, and
 * counted only vmstack's views for call traces as its mappings where /proc/self/maps
 * cannot be read (vms_stats.mappings counts its lines). */
TEST(unreadable_proc_files_are_unknown)
{
    need_vmap();
    int st = tst_fork(hidden_proc_exec, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == CLI_CANNOT_HIDE)
        SKIP("no user and mount namespace to hide /proc files in");
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "\nmappings  unknown (cannot read /proc/self/maps); vm.max_map_count "
                             "is unknown\n          (cannot read /proc/sys/vm/max_map_count)\n");
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
    /* One past each end of the ranges --help and docs/demo.md give, and values that are
     * not plain decimal counts. */
    const char *edges[][3] = {
        { "--fibers", "1000001", "--fibers wants a count from 1 to 1000000" },
        { "--fibers", "1e3", "--fibers wants a count" },
        { "--fibers", "+5", "--fibers wants a count" },
        { "--fibers=", "", "--fibers wants a count" },
        { "--threads", "257", "--threads wants a count from 0 to 256" },
        { "--threads", "-1", "--threads wants a count" },
        { "--depth", "0", "--depth wants a count from 1 to 100000" },
        { "--depth", "100001", "--depth wants a count from 1 to 100000" },
        { "--overflow", "-1", "--overflow wants a count" },
        { "--stack-size", "15k", "--stack-size wants a size from 16k to 64m" },
        { "--stack-size", "65m", "--stack-size wants a size from 16k to 64m" },
        { "--stack-size", "18446744073709551616", "--stack-size wants a size" },
        { "--seed", "9223372036854775808", "--seed wants a non-negative number" },
    };
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        char joined[64];
        const char *a[4] = { "demo", edges[i][0], edges[i][1], NULL };
        if (!strcmp(edges[i][0], "--fibers=")) {
            snprintf(joined, sizeof joined, "%s%s", edges[i][0], edges[i][1]);
            a[1] = joined;
            a[2] = NULL;
        }
        ASSERT_EXITED(cli_run(a, out, sizeof out), 2);
        ASSERT_STR_CONTAINS(out, edges[i][2]);
    }
    const char *more[] = { "demo", "--fibers", "2", "--overflow", "3", NULL };
    ASSERT_EXITED(cli_run(more, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "--overflow cannot exceed --fibers");
    /* Options that are each valid but do not fit together. */
    const char *deep[] = { "demo", "--fibers", "4", "--depth", "5000", "--stack-size", "64k", NULL };
    ASSERT_EXITED(cli_run(deep, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack demo: error: --depth 5000 needs about");
}

TEST(help)
{
    const char *args[] = { "demo", "--help", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack demo");
    ASSERT_STR_CONTAINS(out, "--direct");
}

/* Copies the file at from to to, executable. */
static void copy_exe(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *o = fopen(to, "wb");
    if (!in || !o) TST_FAIL("copy %s to %s: %s", from, to, strerror(errno));
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) ASSERT_EQ(fwrite(buf, 1, n, o), n);
    fclose(in);
    ASSERT_EQ(fclose(o), 0);
    ASSERT_EQ(chmod(to, 0755), 0);
}

#ifdef VMSTACK_CMD_EMULATOR
/* The cross build: makes the file at path a script that runs the program at target
 * through the emulator, with the script's arguments. The command under test, itself run
 * by the emulator, execs its vmstack-direct as a program of the host; the host's kernel
 * runs the script as it would run the target program through binfmt_misc, which this
 * host may not have. */
static __attribute__((unused)) void emulated_program(const char *path, const char *target)
{
    const char *emu[] = { VMSTACK_CMD_EMULATOR };
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs("#!/bin/sh\nexec", f);
    for (size_t i = 0; i < sizeof emu / sizeof emu[0]; i++) {
        ASSERT(!strchr(emu[i], '\''));
        fprintf(f, " '%s'", emu[i]);
    }
    ASSERT(!strchr(target, '\''));
    fprintf(f, " '%s' \"$@\"\n", target);
    ASSERT_EQ(fclose(f), 0);
    ASSERT_EQ(chmod(path, 0755), 0);
}
#endif

/* docs/demo.md: `--direct` exits 2 when vmstack-direct is not next to vmstack or cannot
 * be run. A vmstack-direct that exec refused (not a program) used to give exit 1, the
 * status of a direct run that failed. */
TEST(direct_missing_or_unrunnable_exits_2)
{
    need_vmap();
    char dir[] = "/tmp/vmstack-cli-demo-XXXXXX", cmd[64], direct[64];
    ASSERT_NOT_NULL(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s/vmstack", dir);
    snprintf(direct, sizeof direct, "%s/vmstack-direct", dir);
    copy_exe(VMSTACK_CMD, cmd);
    const char *argv[] = { cmd, "demo", "--direct", "--fibers", "50", "--quiet", NULL };
    ASSERT_EXITED(tst_fork(cli_exec, (void *)argv, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack demo: error: --direct needs ");
    /* The guarded run's summary, buffered on a pipe, comes before the error. */
    const char *result = strstr(out, "\nresult "), *error = strstr(out, "vmstack demo: error:");
    ASSERT(result && result < error);
    FILE *f = fopen(direct, "wb");
    ASSERT_NOT_NULL(f);
    fputs("not a program\n", f);
    fclose(f);
    ASSERT_EQ(chmod(direct, 0755), 0);
    ASSERT_EXITED(tst_fork(cli_exec, (void *)argv, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack demo: error: cannot run ");
    unlink(direct);
    unlink(cmd);
    rmdir(dir);
}

/* Checks the direct-mode part of out: deep fibers that went past their stacks with no
 * oops, each with its victim named. */
static __attribute__((unused)) void expect_direct_summary(void)
{
    ASSERT_STR_CONTAINS(out, "guards: none (the direct backend");
    /* Three deep fibers are planned; how many ran before the damage killed the process
     * varies from run to run (a victim's corrupted record or frames stop it). */
    ASSERT_GE(cli_count(out, "deep      parser-"), 1);
    ASSERT_LE(cli_count(out, "deep      parser-"), 3);
    ASSERT_GE(cli_count(out, "  victim  "), 1);
    ASSERT_STR_CONTAINS(out, "past the end of its stack");
    ASSERT(cli_line(out, "result    DAMAGED") || cli_line(out, "result    no damage this time"));
    ASSERT(cli_line(out, "process   "));
    /* No guard, so no oops: nothing stopped the deep fibers at their first bad access. */
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
}

TEST(direct_comparison)
{
#if defined(VMSTACK_VMAP) && defined(VMSTACK_DIRECT_CMD)
#ifdef VMSTACK_CMD_EMULATOR
    /* The command beside a vmstack-direct that runs the real one through the emulator. */
    char dir[] = "/tmp/vmstack-cli-demo-XXXXXX", cmd[64], direct_cmd[64];
    ASSERT_NOT_NULL(mkdtemp(dir));
    snprintf(cmd, sizeof cmd, "%s/vmstack", dir);
    snprintf(direct_cmd, sizeof direct_cmd, "%s/vmstack-direct", dir);
    copy_exe(VMSTACK_CMD, cmd);
    emulated_program(direct_cmd, VMSTACK_DIRECT_CMD);
    const char *argv[] = { cmd, "demo", "--direct", "--fibers", "300", "--quiet", NULL };
    int st = tst_fork(cli_exec, (void *)argv, out, sizeof out);
    unlink(direct_cmd);
    unlink(cmd);
    rmdir(dir);
#else
    const char *args[] = { "demo", "--direct", "--fibers", "300", "--quiet", NULL };
    int st = cli_run(args, out, sizeof out);
#endif
    ASSERT_EXITED(st, 0);
    /* First the guarded run, verified, then the same without guards. */
    ASSERT_STR_CONTAINS(out, "result    OK: every normal task verified");
    const char *direct = strstr(out, "The same without guards (vmstack-direct):");
    ASSERT_NOT_NULL(direct);
    if (!tst_thread_after_fork_works())
        SKIP("the direct run starts threads in a child forked from a process with threads, "
             "which this emulator (qemu-user 7.2) cannot do");
    memmove(out, direct, strlen(direct) + 1);
    expect_direct_summary();
#elif defined(VMSTACK_VMAP)
    SKIP("vmstack-direct is not built here (a sanitizer build)");
#else
    /* The direct build runs the direct mode by default; it exits 1 when it showed damage. */
    const char *args[] = { "demo", "--fibers", "300", "--quiet", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) > 1) TST_FAIL("want exit 0 or 1:\n%s", out);
    expect_direct_summary();
#endif
}
