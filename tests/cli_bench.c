/*
 * cli_bench.c - `vmstack bench --quick` runs end to end: every group it lists produces
 * judged rows, in the table and in JSON, and a bad option is an error. No time is
 * asserted (these machines are shared): the numbers are the benchmark's business.
 */
#include "cli_demo_run.h"

#include <math.h>

static char out[1 << 20];

/* Under ASan and TSan the baselines are slow, not vmstack: under TSan a 256 KiB
 * malloc+touch+free took 4.4 ms (36 page faults: its allocator maps and clears shadow
 * for each block) and mmap+mprotect+munmap 1.6 ms, so `bench --quick --only stack.warm`
 * took 3 minutes, and two cases ran past their 300 s on the loaded 2-core VM. These
 * cases check the output, not its figures: there they run a fiftieth of the operations. */
#if defined(TST_ASAN) || defined(TST_TSAN)
#define OPS "0.02"
#else
#define OPS "1"
#endif

TEST(quick_json_has_every_group)
{
    const char *list[] = { "bench", "--list", NULL };
    ASSERT_EXITED(cli_run(list, out, sizeof out), 0);
    int groups = 0;
    for (const char *l = out; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l))
        if (*l != '\n' && *l != ' ') groups++;
    ASSERT_GT(groups, 3);
    static char listed[sizeof out];
    memcpy(listed, out, sizeof listed);
    /* 2,000 live stacks in the scale groups, not --quick's 20,000: the mmap+mprotect
     * baseline's two mappings per stack plus ThreadSanitizer's own mappings came near
     * vm.max_map_count, and TSan failed to map its metadata. */
    const char *args[] = { "bench", "--quick", "--ops-factor", OPS, "--json", "--scale-count",
                           "2000", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
    ASSERT_STR_CONTAINS(out, "\"tool\": \"vmstack bench\"");
    ASSERT_STR_CONTAINS(out, "\"quick\": true");
    /* Every group makes at least one row (its name in the row's "group"), or says why it
     * skipped (the overflow groups on the direct backend, which has no guards), and every
     * row is judged (or has no target). */
    int rows = tst_count(out, "{\"id\": ");
    ASSERT_GE(rows, groups);
    for (const char *l = listed; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
        if (*l == '\n' || *l == ' ') continue;
        int len = (int)strcspn(l, " \n");
        char want[96], skipped[96];
        snprintf(want, sizeof want, "\"group\": \"%.*s\"", len, l);
        snprintf(skipped, sizeof skipped, "vmstack bench: %.*s skipped: ", len, l);
        if (!strstr(out, want) && !strstr(out, skipped))
            TST_FAIL("no row of group %.*s in:\n%.4000s", len, l, out);
    }
    ASSERT_EQ(tst_count(out, "\"result\": \"met\"") + tst_count(out, "\"result\": \"MISSED\"") +
                  tst_count(out, "\"result\": \"-\"") + tst_count(out, "\"result\": \"n/a\""),
              rows);
    ASSERT_STR_CONTAINS(out, "{\"id\": \"stack.warm.default.mmap\"");
    ASSERT_STR_CONTAINS(out, "{\"id\": \"stack.scale\"");
#ifdef VMSTACK_VMAP
    ASSERT_STR_CONTAINS(out, "{\"id\": \"fiber.switch.ucontext\"");
    ASSERT_STR_CONTAINS(out, "{\"id\": \"thread.create\"");
    ASSERT_STR_CONTAINS(out, "{\"id\": \"stack.scale.128k\"");
#endif
}

/* The groups come from bench/bench.cmake, which a build without VMSTACK_BUILD_BENCH did
 * not read: its `vmstack bench` had the stack groups alone. Checked with --list, which
 * runs nothing. */
TEST(list_has_every_kind_of_group)
{
    const char *list[] = { "bench", "--list", NULL };
    ASSERT_EXITED(cli_run(list, out, sizeof out), 0);
    ASSERT(cli_line(out, "stack.warm "));
    ASSERT(cli_line(out, "trim.warm "));
    ASSERT(cli_line(out, "trim.none "));
#ifdef VMSTACK_VMAP
    ASSERT(cli_line(out, "fiber.switch "));
    ASSERT(cli_line(out, "thread.create "));
    ASSERT(cli_line(out, "debug."));
#endif
}

TEST(table_of_one_group)
{
    const char *args[] = { "bench", "--quick", "--ops-factor", OPS, "--only", "stack.warm", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
    ASSERT_STR_CONTAINS(out, "median of 5 interleaved rounds per case");
    ASSERT_STR_CONTAINS(out, "stack alloc+touch+free, default");
    ASSERT_STR_CONTAINS(out, "mmap+mprotect+munmap");
    ASSERT_STR_NOT_CONTAINS(out, "fiber switch");
}

/* Clears every VMSTACK_* variable of this test process (the bench inherits them). */
static void clear_vmstack_env(void)
{
    extern char **environ;
    for (int again = 1; again; ) {
        again = 0;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "VMSTACK_", 8)) continue;
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
            unsetenv(name);
            again = 1;
            break;
        }
    }
}

/* The number after `"key": ` in text, or NAN when it is missing or null. */
static double json_num(const char *text, const char *key)
{
    char want[64];
    snprintf(want, sizeof want, "\"%s\": ", key);
    const char *p = strstr(text, want);
    if (!p || !strncmp(p + strlen(want), "null", 4)) return NAN;
    return strtod(p + strlen(want), NULL);
}

/* The vms_trim rows (trim.warm, trim.none): one trim per round of the warm row (each
 * round has its own set-up, outside the window), a time per trim on both sides, and
 * in the note the time per stack (trim.warm) or the baseline's per madvise only
 * (trim.none, whose trim touches no stack). `--only trim` runs both and nothing else. No time is
 * judged here; bench/bench.cmake checks their counts. */
TEST(trim_rows_report_per_trim_and_per_stack)
{
    clear_vmstack_env();
    const char *args[] = { "bench", "--quick", "--json", "--rounds", "3", "--ops-factor", OPS,
                           "--only", "trim", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
    ASSERT_EQ(tst_count(out, "{\"id\": "), 2);
    const char *ids[] = { "{\"id\": \"trim.warm.madvise\"", "{\"id\": \"trim.none.madvise\"" };
    const char *scen[] = { "\"scenario\": \"trim, 1,024 warm stacks\"",
                           "\"scenario\": \"trim, nothing warm\"" };
    for (int i = 0; i < 2; i++) {
        const char *row = strstr(out, ids[i]);
        if (!row) TST_FAIL("no row %s in:\n%.4000s", ids[i], out);
        const char *end = strstr(row, "\"result\": ");
        ASSERT(end);
        char text[2048];
        snprintf(text, sizeof text, "%.*s", (int)(end - row), row);
        ASSERT_STR_CONTAINS(text, scen[i]);
        /* trim.none's trim touches no stack: no time per stack of vmstack's. */
        if (i == 0) ASSERT_STR_CONTAINS(text, "\"note\": \"per stack: vmstack ");
        else ASSERT_STR_CONTAINS(text, "\"note\": \"per madvise: baseline ");
        if (i == 1) ASSERT_STR_NOT_CONTAINS(text, "per stack: vmstack");
        const char *base = strstr(text, "\"base\": {");
        ASSERT(base);
        double vns = json_num(text, "ns_per_op"), bns = json_num(base, "ns_per_op");
        if (!(vns > 0) || !(bns > 0)) TST_FAIL("%s: ns per trim %g, baseline %g", ids[i], vns, bns);
        ASSERT(json_num(text, "rounds") == 3);
        if (i == 0) ASSERT(json_num(text, "ops_per_round") == 1);
        ASSERT(json_num(text, "faults_per_op") >= 0 && json_num(base, "faults_per_op") >= 0);
        double bsc = json_num(base, "syscalls_per_op");
        ASSERT(isnan(bsc) == !strstr(out, "\"syscall_counter\": \"perf"));
#if !defined(TST_ASAN) && !defined(TST_TSAN)   /* their interceptors' calls aside */
        if (!isnan(bsc)) ASSERT(bsc == 1024);     /* one madvise per stack */
        /* The warm trim: one process_madvise per 32 stacks, or one madvise per stack
         * where the kernel cannot batch; nothing else (no ended thread's alternate stack
         * left by the set-up: 33 or 1,025). */
        double vsc = json_num(text, "syscalls_per_op");
        if (i == 0 && !isnan(vsc)) ASSERT(vsc == 32 || vsc == 1024);
#endif
    }
    const char *table[] = { "bench", "--quick", "--rounds", "1", "--ops-factor", OPS,
                            "--no-syscalls", "--only", "trim.warm", NULL };
    st = cli_run(table, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
    ASSERT(cli_line(out, "trim, 1,024 warm stacks "));
    ASSERT_STR_CONTAINS(out, "madvise x1024, top page each");
    ASSERT_STR_NOT_CONTAINS(out, "trim, nothing warm");
}

/* The library reads VMSTACK_* variables, so a run with, say, VMSTACK_PAINT=1 exported
 * measures painting: the table and the JSON name them, and say nothing without them. */
TEST(environment_is_named)
{
    clear_vmstack_env();
    const char *table[] = { "bench", "--quick", "--ops-factor", OPS, "--only", "stack.warm",
                            "--rounds", "1", NULL };
    const char *json[] = { "bench", "--quick", "--ops-factor", OPS, "--only", "stack.warm",
                           "--rounds", "1", "--json", NULL };
    ASSERT_EXITED(cli_run(table, out, sizeof out), 0);
    ASSERT(!cli_line(out, "environment:"));
    ASSERT_EXITED(cli_run(json, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "\"environment\": [],");

    setenv("VMSTACK_CACHE", "4", 1);
    setenv("VMSTACK_SCRUB", "0", 1);
    ASSERT_EXITED(cli_run(table, out, sizeof out), 0);
    const char *l = cli_line(out, "environment:");
    ASSERT(l);
    ASSERT_STR_CONTAINS(l, " VMSTACK_CACHE=4");
    ASSERT_STR_CONTAINS(l, " VMSTACK_SCRUB=0");
    ASSERT_STR_CONTAINS(l, "(rows measure this configuration; targets are for the defaults)\n");
    ASSERT_EXITED(cli_run(json, out, sizeof out), 0);
    ASSERT(strstr(out, "\"environment\": [\"VMSTACK_CACHE=4\", \"VMSTACK_SCRUB=0\"]") ||
           strstr(out, "\"environment\": [\"VMSTACK_SCRUB=0\", \"VMSTACK_CACHE=4\"]"));
}

/* A malformed VMSTACK_* variable is reported once per run: each group's process (and
 * each sibling process of the debug groups) said it again, five times for the stack
 * groups alone. */
TEST(malformed_variable_is_warned_about_once)
{
    clear_vmstack_env();
    setenv("VMSTACK_CACHE", "bogus", 1);
#ifdef VMSTACK_VMAP
    const char *only = "stack,debug.switch";
#else
    const char *only = "stack";
#endif
    const char *args[] = { "bench", "--quick", "--ops-factor", OPS, "--rounds", "1",
                           "--scale-count", "2000", "--only", only, NULL };
    int st = cli_run(args, out, sizeof out);
    unsetenv("VMSTACK_CACHE");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
    ASSERT_STR_CONTAINS(out, "stack alloc+touch+free, default");
    ASSERT_EQ(cli_count(out, "vmstack: warning: VMSTACK_CACHE=\"bogus\" is not a count"), 1);
}

/* A malformed boolean said "using the default" although some groups give vms_init that
 * flag themselves (the debug.* groups VMS_PAINT and VMS_END_CHECK, the noscrub groups
 * VMS_NO_SCRUB), where the variable changes nothing: the warning names the selected
 * groups that do, and only those. */
TEST(malformed_flag_names_the_groups_that_set_it)
{
    clear_vmstack_env();
    setenv("VMSTACK_PAINT", "bogus", 1);
    setenv("VMSTACK_END_CHECK", "bogus", 1);
    setenv("VMSTACK_SCRUB", "bogus", 1);
#ifdef VMSTACK_VMAP
    const char *only = "stack.warm,stack.noscrub,debug.switch,debug.create";
#else
    const char *only = "stack.warm,stack.noscrub";
#endif
    const char *args[] = { "bench", "--quick", "--ops-factor", OPS, "--rounds", "1",
                           "--only", only, NULL };
    int st = cli_run(args, out, sizeof out);
    static char out2[sizeof out];
    const char *args2[] = { "bench", "--quick", "--ops-factor", OPS, "--rounds", "1",
                            "--only", "stack.warm", NULL };
    int st2 = cli_run(args2, out2, sizeof out2);
    unsetenv("VMSTACK_PAINT");
    unsetenv("VMSTACK_END_CHECK");
    unsetenv("VMSTACK_SCRUB");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
    if (!WIFEXITED(st2) || WEXITSTATUS(st2) != 0) TST_FAIL("bench failed:\n%.4000s", out2);
    const char *bad = "is not 0 or 1 (or no/yes, off/on, false/true); using the default";
    char want[512];
    snprintf(want, sizeof want, "VMSTACK_SCRUB=\"bogus\" %s, except in the processes of "
             "stack.noscrub that set VMS_NO_SCRUB themselves\n", bad);
    ASSERT_STR_CONTAINS(out, want);
#ifdef VMSTACK_VMAP
    snprintf(want, sizeof want, "VMSTACK_PAINT=\"bogus\" %s, except in the processes of "
             "debug.create that set VMS_PAINT themselves\n", bad);
    ASSERT_STR_CONTAINS(out, want);
    snprintf(want, sizeof want, "VMSTACK_END_CHECK=\"bogus\" %s, except in the processes of "
             "debug.switch and debug.create that set VMS_END_CHECK themselves\n", bad);
    ASSERT_STR_CONTAINS(out, want);
#else
    snprintf(want, sizeof want, "VMSTACK_PAINT=\"bogus\" %s\n", bad);
    ASSERT_STR_CONTAINS(out, want);
#endif
    /* No selected group sets any: the default everywhere. */
    const char *names[] = { "VMSTACK_PAINT", "VMSTACK_END_CHECK", "VMSTACK_SCRUB" };
    for (int i = 0; i < 3; i++) {
        snprintf(want, sizeof want, "vmstack: warning: %s=\"bogus\" %s\n", names[i], bad);
        ASSERT_STR_CONTAINS(out2, want);
    }
    ASSERT_STR_NOT_CONTAINS(out2, "except");
}

/* The overflow groups measure the kill: with VMSTACK_ON_OVERFLOW=abort exported they died
 * by SIGSEGV, reported as "died by signal 11"; now the error names the variable. */
TEST(overflow_groups_refuse_abort_from_the_environment)
{
#ifdef VMSTACK_VMAP
    clear_vmstack_env();
    setenv("VMSTACK_ON_OVERFLOW", "abort", 1);
    const char *args[] = { "bench", "--quick", "--ops-factor", OPS, "--rounds", "1", "--only",
                           "thread.overflow", NULL };
    ASSERT_EXITED(cli_run(args, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "vmstack bench: error: thread.overflow measures the kill of the task "
                             "that overflows: VMSTACK_ON_OVERFLOW=abort in the environment");
    ASSERT_STR_NOT_CONTAINS(out, "signal 11");
#else
    SKIP("no overflow groups without guards (direct backend)");
#endif
}

/* The header said "same process as its baseline" over the debug.* rows too, whose sides
 * run in sibling processes (baselines marked "own process"): it now says so when such a
 * row is in the table, and only then. */
TEST(header_names_sibling_processes)
{
#ifdef VMSTACK_VMAP
    clear_vmstack_env();
    const char *dbg[] = { "bench", "--quick", "--ops-factor", OPS, "--rounds", "1", "--only",
                          "debug.switch", NULL };
    ASSERT_EXITED(cli_run(dbg, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "same process as its baseline (a baseline marked \"own process\": "
                             "a sibling process, same rounds)\n");
    ASSERT_STR_CONTAINS(out, "(own process)");
    const char *st[] = { "bench", "--quick", "--ops-factor", OPS, "--rounds", "1", "--only",
                         "stack.warm", NULL };
    ASSERT_EXITED(cli_run(st, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "same process as its baseline\n");
#else
    SKIP("no debug.* groups without guards (direct backend)");
#endif
}

/* A switch case runs n / 2 resume+yield pairs and divides its time by n: an odd n (from
 * --ops-factor) ran one switch fewer than it divided by, and n = 1 ran none at all and
 * reported the clock's cost as a switch. The switch rows' operations are even. */
TEST(switch_rows_run_whole_pairs)
{
#ifdef VMSTACK_VMAP
    clear_vmstack_env();
    /* 2,000,000 / 20 (quick) x 0.00003 = 3 operations, and 1 with 0.000003. */
    const char *factors[] = { "0.00003", "0.000003" };
    for (int k = 0; k < 2; k++) {
        const char *args[] = { "bench", "--quick", "--json", "--rounds", "1", "--ops-factor",
                               factors[k], "--only", "fiber.switch,debug.switch", NULL };
        int st = cli_run(args, out, sizeof out);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
        const char *ids[] = { "{\"id\": \"fiber.switch.ucontext\"",
                              "{\"id\": \"debug.switch.endcheck\"" };
        for (int i = 0; i < 2; i++) {
            const char *row = strstr(out, ids[i]);
            if (!row) TST_FAIL("no row %s in:\n%.4000s", ids[i], out);
            const char *ops = strstr(row, "\"ops_per_round\": ");
            ASSERT(ops);
            long n = strtol(ops + strlen("\"ops_per_round\": "), NULL, 10);
            if (n < 2 || n % 2)
                TST_FAIL("%s: %ld switches per round (factor %s)", ids[i], n, factors[k]);
        }
    }
#else
    SKIP("no fibers without guards (direct backend)");
#endif
}

/* The switch row's note sends the reader to the jump_fcontext comparison: it named
 * "bench/boost_context", which is neither a program nor a file (the source is
 * bench/boost_context.cpp, the program vmstack_bench_boost). */
TEST(switch_note_names_the_boost_program)
{
#ifdef VMSTACK_VMAP
    clear_vmstack_env();
    const char *args[] = { "bench", "--quick", "--json", "--rounds", "1", "--ops-factor",
                           "0.00003", "--no-syscalls", "--only", "fiber.switch", NULL };
    int st = cli_run(args, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("bench failed:\n%.4000s", out);
    const char *row = strstr(out, "{\"id\": \"fiber.switch.ucontext\"");
    if (!row) TST_FAIL("no row fiber.switch.ucontext in:\n%.4000s", out);
    const char *note = strstr(row, "\"note\": \"");
    ASSERT(note);
    const char *end = strchr(note + 9, '"');
    ASSERT(end);
    char text[256];
    snprintf(text, sizeof text, "%.*s", (int)(end - note - 9), note + 9);
    ASSERT_STR_CONTAINS(text, "vmstack_bench_boost");
    ASSERT_STR_CONTAINS(text, "bench/boost_context.cpp");
#else
    SKIP("no fibers without guards (direct backend)");
#endif
}

TEST(bad_options)
{
    const char *a[] = { "bench", "--only", "nosuch", NULL };
    ASSERT_EXITED(cli_run(a, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack bench: error: --only nosuch matches no group");
    /* One misspelt group among good ones is an error too, naming it: it was dropped
     * and only the others ran. (Nothing runs: the check comes first; without it, the
     * least the options allow.) */
    const char *d[] = { "bench", "--quick", "--rounds", "1", "--ops-factor", "0.001",
                        "--no-syscalls", "--only", "stack.warm,fiber.swich", NULL };
    ASSERT_EXITED(cli_run(d, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack bench: error: --only fiber.swich matches no group");
    const char *b[] = { "bench", "--rounds", "0", NULL };
    ASSERT_EXITED(cli_run(b, out, sizeof out), 2);
    const char *c[] = { "bench", "--frobnicate", NULL };
    ASSERT_EXITED(cli_run(c, out, sizeof out), 2);
    /* --name=value as the other commands take it (it was "unknown option"); the value is
     * checked as the separate one is, and a flag takes none. */
    const char *e[] = { "bench", "--rounds=0", NULL };
    ASSERT_EXITED(cli_run(e, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack bench: error: --rounds wants a number from 1 to");
    const char *f[] = { "bench", "--only=nosuch", NULL };
    ASSERT_EXITED(cli_run(f, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack bench: error: --only nosuch matches no group");
    const char *g[] = { "bench", "--json=1", NULL };
    ASSERT_EXITED(cli_run(g, out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack bench: error: --json takes no value");
    const char *h[] = { "bench", "--rounds=3", "--scale-count=10", "--ops-factor=2",
                        "--only=stack.warm", "--list", NULL };
    ASSERT_EXITED(cli_run(h, out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "stack.warm");
}
