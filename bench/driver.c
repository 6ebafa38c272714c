/*
 * driver.c - the command line shared by `vmstack bench` and bench/vmstack_bench: parses
 * options, runs every selected group in its own child process (bench_run_child) and
 * prints one table or one JSON document. The driver itself never calls vmstack, so each
 * child starts with vmstack unused and may configure it with vms_init.
 * Exit status: 0 when every group ran (a MISSED target is a result, not an error), 1 when
 * a group failed, 2 for bad usage.
 */
#include "bench.h"

struct bench_table { const struct bench_group *g; int n; };

/* The groups built into this binary, in the order they run and print. */
static int bench_tables(struct bench_table *t)
{
    int n = 0;
    t[n].g = bench_stack_groups; t[n++].n = bench_stack_ngroups;
#ifdef VMS_BENCH_FIBERS
    t[n].g = bench_fiber_groups; t[n++].n = bench_fiber_ngroups;
#endif
#ifdef VMS_BENCH_THREADS
    t[n].g = bench_thread_groups; t[n++].n = bench_thread_ngroups;
#endif
    return n;
}

static void bench_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [--quick] [--json] [--rounds N] [--only GROUP[,GROUP...]]\n"
            "       %*s [--scale-count N] [--ops-factor F] [--list]\n"
            "Measures vmstack against its baselines in the same process, interleaved in\n"
            "rounds; prints medians, ratios, system calls and page faults per operation.\n"
            "  --quick          a few seconds in all (for tests): fewer rounds and operations\n"
            "  --json           one JSON document instead of the table\n"
            "  --rounds N       recorded rounds per case (default 11, quick 5; max %d)\n"
            "  --only LIST      run only groups whose name starts with one of LIST (see --list)\n"
            "  --scale-count N  live stacks in the scale scenarios (default 1000000, quick 20000)\n"
            "  --ops-factor F   multiply the operations per round of every case (default 1)\n"
            "  --list           list the groups and exit\n",
            prog, (int)strlen(prog), "", BENCH_MAX_ROUNDS);
}

static int bench_parse_long(const char *opt, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "vmstack bench: error: %s wants a number from %ld to %ld, got '%s'\n",
                opt, lo, hi, s ? s : "(nothing)");
        return -1;
    }
    *out = v;
    return 0;
}

int vms_bench_main(int argc, char **argv, const char *prog)
{
    struct bench_opts o;
    memset(&o, 0, sizeof o);
    o.ops_factor = 1;
    long rounds = 0, scale = 0;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--quick")) o.quick = 1;
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--list")) list = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { bench_usage(stdout, prog); return 0; }
        else if (!strcmp(a, "--rounds")) {
            if (bench_parse_long(a, next, 1, BENCH_MAX_ROUNDS, &rounds)) return 2;
            i++;
        } else if (!strcmp(a, "--scale-count")) {
            if (bench_parse_long(a, next, 1, 10000000, &scale)) return 2;
            i++;
        } else if (!strcmp(a, "--only")) {
            if (!next || !*next) {
                fprintf(stderr, "vmstack bench: error: --only wants a group list (see --list)\n");
                return 2;
            }
            o.only = next;
            i++;
        } else if (!strcmp(a, "--ops-factor")) {
            char *end;
            double f = next ? strtod(next, &end) : 0;
            if (!next || end == next || *end || !(f > 0 && f <= 100)) {
                fprintf(stderr, "vmstack bench: error: --ops-factor wants a number in (0, 100], got '%s'\n",
                        next ? next : "(nothing)");
                return 2;
            }
            o.ops_factor = f;
            i++;
        } else {
            fprintf(stderr, "vmstack bench: error: unknown option '%s'\n", a);
            bench_usage(stderr, prog);
            return 2;
        }
    }
    o.rounds = rounds ? (int)rounds : o.quick ? 5 : 11;
    o.scale_count = scale ? scale : o.quick ? 20000 : 1000000;

    struct bench_table t[3];
    int nt = bench_tables(t);
    if (list) {
        for (int i = 0; i < nt; i++)
            for (int j = 0; j < t[i].n; j++) printf("%-16s %s\n", t[i].g[j].name, t[i].g[j].what);
        return 0;
    }
    int selected = 0;
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < t[i].n; j++) selected += bench_selected(&o, t[i].g[j].name);
    if (!selected) {
        fprintf(stderr, "vmstack bench: error: --only %s matches no group (see --list)\n", o.only);
        return 2;
    }

    int sc_ok = 0;
    char counter[sizeof bench_sc_why];
    snprintf(counter, sizeof counter, "%s", bench_syscalls_probe(&sc_ok));
    int progress = isatty(2) && !o.json;
    int failed = 0;
    for (int i = 0; i < nt; i++) {
        for (int j = 0; j < t[i].n; j++) {
            const struct bench_group *g = &t[i].g[j];
            if (!bench_selected(&o, g->name)) continue;
            if (progress) fprintf(stderr, "vmstack bench: running %s ...\n", g->name);
            uint64_t t0 = bench_now_ns();
            if (bench_run_child(g->name, g->run, &o) != 0) failed = 1;
            if (progress)
                fprintf(stderr, "vmstack bench: %s took %.1f s\n", g->name,
                        (double)(bench_now_ns() - t0) / 1e9);
        }
    }

    if (o.json) {
        bench_print_json(stdout, bench_rows, bench_nrows, &o, prog,
                         sc_ok ? counter : "n/a");
    } else {
        char header[512];
        snprintf(header, sizeof header,
                 "%s: median of %d interleaved rounds per case, same process as its baseline\n"
                 "system calls: %s%s%s; page faults: getrusage minflt+majflt\n",
                 prog, o.rounds, sc_ok ? "" : "n/a (", counter, sc_ok ? "" : ")");
        bench_print_table(stdout, bench_rows, bench_nrows, header);
    }
    fflush(stdout);
    return failed;
}
