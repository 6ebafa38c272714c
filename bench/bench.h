/*
 * bench.h - the benchmark machinery shared by the bench/ programs and `vmstack bench`:
 * a monotonic clock, per-process counters of system calls (perf, raw_syscalls:sys_enter)
 * and page faults (getrusage), interleaved rounds with medians, result rows, the
 * plain-text table and --json, and running a group of cases in a child process whose
 * rows come back through a pipe, and the command line (bench_main). Header-only (static
 * functions and variables, so each program is one translation unit) and valid C and
 * C++, so the C++ Boost benchmark prints the same table.
 * Invariants: a number that was not measured is NAN and printed "n/a" (never invented);
 * every row's vmstack side and baseline side were measured in the same interleaved rounds:
 * in the same process, or (configurations that cannot share one, bench_interleave_procs)
 * in sibling worker processes that take turns.
 */
#ifndef VMSTACK_BENCH_H
#define VMSTACK_BENCH_H

#include <errno.h>
#include <fcntl.h>
#include <linux/perf_event.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmstack.h"

/* The most rounds a case keeps; --rounds is capped to it. */
#define BENCH_MAX_ROUNDS 101
/* The most rows one run prints. */
#define BENCH_MAX_ROWS 64

/* ---- options ------------------------------------------------------------------------- */
struct bench_opts {
    int rounds;          /* recorded rounds per case (median over them) */
    int quick;           /* small sizes, for tests */
    int json;            /* print JSON instead of the table */
    long scale_count;    /* live stacks/fibers in the scale scenarios */
    double ops_factor;   /* multiplies every case's operations per round */
    const char *only;    /* comma-separated group-name prefixes, or NULL for all */
};

/* ---- clock --------------------------------------------------------------------------- */
static inline uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- counters ------------------------------------------------------------------------ */
/* The syscall counter is one perf event per process, opened in the process that
 * measures and only around the windows that count system calls (every group runs in a
 * fresh child, so a child never inherits a parent's counter). It is never open during a
 * timed round: while a raw_syscalls event exists, every system call of the process takes
 * the kernel's tracing path (here about 300 ns more each, twice a getppid), and with
 * inherit=1 every thread created gets a copy of the event (thread create + join took
 * twice as long), so an open counter slows the very operations it counts, the baselines
 * that make more system calls the most. inherit=1 makes threads created while it is open
 * count too, which the thread scenarios need (the kernel adds an exited thread's count
 * to its parent event). The tracefs path is only read: mounting tracefs is the job of
 * whoever runs the benchmark (CI does it as root), never of the benchmark. */
static int bench_sc_fd = -2;              /* -2: closed (or not tried yet); -1: unavailable */
static char bench_sc_why[160] = "not tried";
static int bench_sc_disabled;             /* --no-syscalls: behave as if unavailable */

static inline int bench_syscalls_open(void)
{
    if (bench_sc_fd != -2) return bench_sc_fd;
    bench_sc_fd = -1;
    if (bench_sc_disabled) {
        snprintf(bench_sc_why, sizeof bench_sc_why, "not counted (--no-syscalls)");
        return -1;
    }
    const char *paths[] = { "/sys/kernel/tracing/events/raw_syscalls/sys_enter/id",
                            "/sys/kernel/debug/tracing/events/raw_syscalls/sys_enter/id" };
    long id = -1;
    for (size_t i = 0; i < sizeof paths / sizeof paths[0] && id < 0; i++) {
        FILE *f = fopen(paths[i], "r");
        if (!f) continue;
        if (fscanf(f, "%ld", &id) != 1) id = -1;
        fclose(f);
    }
    if (id < 0) {
        snprintf(bench_sc_why, sizeof bench_sc_why,
                 "raw_syscalls:sys_enter id not readable (is tracefs mounted at /sys/kernel/tracing?)");
        return -1;
    }
    struct perf_event_attr attr;
    memset(&attr, 0, sizeof attr);
    attr.type = PERF_TYPE_TRACEPOINT;
    attr.size = sizeof attr;
    attr.config = (uint64_t)id;
    attr.inherit = 1;
    attr.exclude_hv = 1;
    /* pid 0, cpu -1: this process's threads on any CPU, nothing else. */
    long fd = syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC);
    if (fd < 0) {
        snprintf(bench_sc_why, sizeof bench_sc_why, "perf_event_open(raw_syscalls:sys_enter): %s",
                 strerror(errno));
        return -1;
    }
    bench_sc_fd = (int)fd;
    snprintf(bench_sc_why, sizeof bench_sc_why, "perf tracepoint raw_syscalls:sys_enter");
    return bench_sc_fd;
}

/* Whether this process can count system calls, for the header of the output: opens the
 * counter and closes it again, so that children forked afterwards do not inherit it.
 * Returns the description (the counter's name, or why it is unavailable). */
static inline const char *bench_syscalls_probe(int *ok)
{
    int fd = bench_syscalls_open();
    *ok = fd >= 0;
    if (fd >= 0) close(fd);
    bench_sc_fd = -2;
    return bench_sc_why;
}

/* Closes the counter after a counting window (it stays unavailable if it was). */
static inline void bench_syscalls_close(void)
{
    if (bench_sc_fd >= 0) {
        close(bench_sc_fd);
        bench_sc_fd = -2;
    }
}

/* The syscall count so far, or -1 when the counter is unavailable or closed. */
static inline long long bench_syscalls_read(void)
{
    if (bench_sc_fd < 0) return -1;
    uint64_t v = 0;
    if (read(bench_sc_fd, &v, sizeof v) != (ssize_t)sizeof v) return -1;
    return (long long)v;
}

static inline long bench_faults_read(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_minflt + ru.ru_majflt;
}

/* One measurement window. begin() reads faults, then syscalls, then the clock; end()
 * reads in the opposite order, so only the closing read(2) of the perf counter falls
 * inside the window: bench_overhead measures that cost on an empty window and every
 * window subtracts it. */
struct bench_window { uint64_t ns; long long sc; long flt; };
static struct bench_window bench_overhead;
static int bench_overhead_done;

static inline void bench_begin(struct bench_window *w)
{
    w->flt = bench_faults_read();
    w->sc = bench_syscalls_read();
    w->ns = bench_now_ns();
}

/* Turns w (from bench_begin) into the deltas of the window, overhead removed; sc is -1
 * when the counter is unavailable. */
static inline void bench_end(struct bench_window *w)
{
    uint64_t ns = bench_now_ns();
    long long sc = bench_syscalls_read();
    long flt = bench_faults_read();
    w->ns = ns - w->ns;
    if (sc < 0 || w->sc < 0) {
        w->sc = -1;
    } else {
        /* Never below zero: the overhead is a minimum, and -1 means "not counted". */
        long long d = sc - w->sc - bench_overhead.sc;
        w->sc = d < 0 ? 0 : d;
    }
    w->flt = flt - w->flt - bench_overhead.flt;
    if (w->flt < 0) w->flt = 0;
}

/* Measures the empty window's own cost with the syscall counter open: the minimum over
 * a few windows (the minimum, because a stray fault or interrupt only ever adds); then
 * closes the counter again, so that timed windows run without it (bench_count_round
 * opens it around each counting window). */
static inline void bench_counters_init(void)
{
    if (bench_overhead_done) return;
    bench_syscalls_open();
    struct bench_window best;
    best.ns = 0; best.sc = -1; best.flt = -1;
    for (int i = 0; i < 9; i++) {
        struct bench_window w;
        bench_begin(&w);
        bench_end(&w);     /* overhead still zero here: raw deltas */
        if (best.sc < 0 || (w.sc >= 0 && w.sc < best.sc)) best.sc = w.sc;
        if (best.flt < 0 || w.flt < best.flt) best.flt = w.flt;
    }
    bench_overhead.sc = best.sc < 0 ? 0 : best.sc;
    bench_overhead.flt = best.flt < 0 ? 0 : best.flt;
    bench_overhead_done = 1;
    bench_syscalls_close();
}

/* ---- cases: interleaved rounds --------------------------------------------------------- */
/* A case runs n operations of one kind; ctx is its own state. */
typedef void (*bench_fn)(void *ctx, long n);

struct bench_case {
    const char *name;
    bench_fn fn;
    void *ctx;
    long n;                              /* operations per round */
    /* Optional, called just outside each measured window of this case (for example to
     * install the signal handler that only this case uses); NULL for none. */
    void (*pre)(void *ctx);
    void (*post)(void *ctx);
    /* results */
    double ns_per_op[BENCH_MAX_ROUNDS];
    int rounds;
    long long sc;                        /* in the counting round; -1: n/a */
    long long sc_ops;                    /* operations of the counting round */
    long long flt;                       /* total over recorded rounds */
    long long ops;                       /* operations of the recorded rounds */
};

static inline void bench_case_init(struct bench_case *c, const char *name, bench_fn fn,
                                   void *ctx, long n)
{
    memset(c, 0, sizeof *c);
    c->name = name;
    c->fn = fn;
    c->ctx = ctx;
    c->n = n < 1 ? 1 : n;
}

static int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double bench_median(const double *v, int n)
{
    if (n <= 0) return NAN;
    double tmp[BENCH_MAX_ROUNDS];
    memcpy(tmp, v, (size_t)n * sizeof *v);
    qsort(tmp, (size_t)n, sizeof *tmp, bench_cmp_double);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

static inline double bench_case_ns(const struct bench_case *c)
{
    return bench_median(c->ns_per_op, c->rounds);
}
static inline double bench_case_sc(const struct bench_case *c)
{
    return c->sc < 0 || c->sc_ops <= 0 ? NAN : (double)c->sc / (double)c->sc_ops;
}
static inline double bench_case_flt(const struct bench_case *c)
{
    return c->ops == 0 ? NAN : (double)c->flt / (double)c->ops;
}

/* The counting round of one case: n more operations with the syscall counter open
 * around them alone (its pre and post hooks outside), after the timed rounds. Returns the
 * system calls they made, or -1 (and runs nothing) when the counter is unavailable. */
static inline long long bench_count_round(struct bench_case *c)
{
    bench_counters_init();
    if (bench_syscalls_open() < 0) return -1;
    if (c->pre) c->pre(c->ctx);
    struct bench_window w;
    bench_begin(&w);
    c->fn(c->ctx, c->n);
    bench_end(&w);
    bench_syscalls_close();
    if (c->post) c->post(c->ctx);
    return w.sc;
}

/* Runs every case for one unrecorded warm-up round (a tenth of its operations), then
 * `rounds` recorded rounds, timed with the syscall counter closed: their medians are the
 * times, and their page faults (getrusage, which slows nothing) the faults. Within a round
 * the cases take turns, starting one later each round, so a slow drift of the machine
 * (frequency, other load) spreads over all cases instead of favouring whichever always
 * runs first. Then one counting round per case (bench_count_round) gives the system
 * calls per operation. */
static inline void bench_interleave(struct bench_case *cs, int ncases, int rounds)
{
    bench_counters_init();
    if (rounds > BENCH_MAX_ROUNDS) rounds = BENCH_MAX_ROUNDS;
    for (int i = 0; i < ncases; i++) {
        if (cs[i].pre) cs[i].pre(cs[i].ctx);
        cs[i].fn(cs[i].ctx, cs[i].n / 10 > 0 ? cs[i].n / 10 : 1);
        if (cs[i].post) cs[i].post(cs[i].ctx);
        cs[i].rounds = 0;
        cs[i].sc = -1;
        cs[i].sc_ops = 0;
        cs[i].flt = 0;
        cs[i].ops = 0;
    }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < ncases; k++) {
            struct bench_case *c = &cs[(r + k) % ncases];
            struct bench_window w;
            if (c->pre) c->pre(c->ctx);
            bench_begin(&w);
            c->fn(c->ctx, c->n);
            bench_end(&w);
            if (c->post) c->post(c->ctx);
            c->ns_per_op[c->rounds++] = (double)w.ns / (double)c->n;
            c->flt += w.flt;
            c->ops += c->n;
        }
    }
    for (int i = 0; i < ncases; i++) {
        cs[i].sc = bench_count_round(&cs[i]);
        cs[i].sc_ops = cs[i].sc < 0 ? 0 : cs[i].n;
    }
}

/* Reports a failed operation of a benchmark (in a child) and ends that child. */
#define bench_die(...)                                                                  \
    do {                                                                                \
        fprintf(stderr, "vmstack bench: error: " __VA_ARGS__);                          \
        fputc('\n', stderr);                                                            \
        fflush(stderr);                                                                 \
        _exit(4);                                                                       \
    } while (0)

static int bench_emit_fd = -1;                   /* the pipe to the parent (in a child) */

/* ---- cases in sibling processes ------------------------------------------------------- */
/* Configurations that cannot share a process (vms_init is once per process, so VMS_PAINT
 * on and off cannot both run in one) are measured by workers: one child per configuration,
 * forked by the group's process before it uses vmstack. The group's process only conducts:
 * it keeps the rounds interleaved exactly as bench_interleave does, sending each turn to the
 * worker that owns the case and reading the measured window back, so the configurations
 * share one run and the same drift of the machine. A worker waiting for its turn is blocked
 * in read(2) and costs no CPU; every window is measured inside its worker, with that
 * worker's own counters. */
struct bench_procs {
    int nworkers;
    const int *worker_of;        /* worker_of[i]: the worker that runs case i */
    /* In worker w's fresh process, before its cases are made: vms_init and shared state. */
    void (*setup)(int w, void *arg);
    /* In the worker owning case i, after setup: fills *c (bench_case_init). */
    void (*make)(int i, struct bench_case *c, void *arg);
    void *arg;
};

/* One turn's result, worker to conductor (well under PIPE_BUF, so written at once). */
struct bench_proc_msg { int i; long n; uint64_t ns; long long sc; long flt; };

static inline void bench_proc_write(int fd, const void *buf, size_t len)
{
    const char *p = (const char *)buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) bench_die("worker pipe: write: %s", w < 0 ? strerror(errno) : "short");
        p += w;
        len -= (size_t)w;
    }
}

/* Reads exactly len bytes; 0 on success, -1 at end of file (the other side is gone). */
static inline int bench_proc_read(int fd, void *buf, size_t len)
{
    char *p = (char *)buf;
    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* The worker's side: runs the turns it is sent until its command pipe ends. */
static inline void bench_proc_worker(const struct bench_procs *pr, int w, int ncases,
                                     int cmd, int res)
{
    struct bench_case *cs = (struct bench_case *)calloc((size_t)ncases, sizeof *cs);
    if (!cs) bench_die("calloc(%d cases) failed", ncases);
    pr->setup(w, pr->arg);
    for (int i = 0; i < ncases; i++)
        if (pr->worker_of[i] == w) pr->make(i, &cs[i], pr->arg);
    bench_counters_init();
    for (int i = 0; i < ncases; i++) {     /* the unrecorded warm-up, as bench_interleave */
        struct bench_case *c = &cs[i];
        if (pr->worker_of[i] != w) continue;
        if (c->pre) c->pre(c->ctx);
        c->fn(c->ctx, c->n / 10 > 0 ? c->n / 10 : 1);
        if (c->post) c->post(c->ctx);
    }
    struct bench_proc_msg m;
    memset(&m, 0, sizeof m);
    m.i = -1;                              /* ready */
    bench_proc_write(res, &m, sizeof m);
    int t;
    /* Turn t < ncases: a timed round of case t (the counter closed); t >= ncases: the
     * counting round of case t - ncases (bench_count_round). */
    while (bench_proc_read(cmd, &t, sizeof t) == 0) {
        int i = t >= ncases ? t - ncases : t;
        if (t < 0 || i >= ncases || pr->worker_of[i] != w)
            bench_die("worker %d: bad turn %d", w, t);
        struct bench_case *c = &cs[i];
        memset(&m, 0, sizeof m);
        m.i = t;
        m.n = c->n;
        if (t >= ncases) {
            m.sc = bench_count_round(c);
        } else {
            struct bench_window win;
            if (c->pre) c->pre(c->ctx);
            bench_begin(&win);
            c->fn(c->ctx, c->n);
            bench_end(&win);
            if (c->post) c->post(c->ctx);
            m.ns = win.ns;
            m.sc = -1;
            m.flt = win.flt;
        }
        bench_proc_write(res, &m, sizeof m);
    }
    fflush(NULL);
    _exit(0);
}

/* Like bench_interleave, with case i run by worker pr->worker_of[i] (0 <= it <
 * pr->nworkers, at most 8 workers). Call it from a group's process that has not used
 * vmstack (the workers inherit that state). Fills cs[i]'s results; cs[i].name, fn and ctx
 * stay as the caller set them (the worker's own case made by make() is what runs). */
static inline void bench_interleave_procs(struct bench_case *cs, int ncases, int rounds,
                                          const struct bench_procs *pr)
{
    enum { BENCH_MAX_WORKERS = 8 };
    int cmd[BENCH_MAX_WORKERS], res[BENCH_MAX_WORKERS];
    pid_t pid[BENCH_MAX_WORKERS];
    if (pr->nworkers < 1 || pr->nworkers > BENCH_MAX_WORKERS) bench_die("%d workers", pr->nworkers);
    if (rounds > BENCH_MAX_ROUNDS) rounds = BENCH_MAX_ROUNDS;
    /* A dead worker must show up as an error here, not as SIGPIPE killing the group. */
    signal(SIGPIPE, SIG_IGN);
    fflush(NULL);
    for (int w = 0; w < pr->nworkers; w++) {
        int c[2], r[2];
        if (pipe(c) != 0 || pipe(r) != 0) bench_die("pipe: %s", strerror(errno));
        pid[w] = fork();
        if (pid[w] < 0) bench_die("fork: %s", strerror(errno));
        if (pid[w] == 0) {
            /* Only its own pipe ends: a worker holding another's command pipe would keep
             * that worker alive after the conductor is gone, and one holding the rows'
             * pipe would keep the driver waiting. */
            for (int k = 0; k < w; k++) { close(cmd[k]); close(res[k]); }
            close(c[1]);
            close(r[0]);
            if (bench_emit_fd >= 0) close(bench_emit_fd);
            bench_emit_fd = -1;
            bench_sc_fd = -2;
            bench_overhead_done = 0;
            bench_proc_worker(pr, w, ncases, c[0], r[1]);
        }
        close(c[0]);
        close(r[1]);
        cmd[w] = c[1];
        res[w] = r[0];
    }
    struct bench_proc_msg m;
    for (int w = 0; w < pr->nworkers; w++)
        if (bench_proc_read(res[w], &m, sizeof m) != 0 || m.i != -1)
            bench_die("worker %d failed before its first round", w);
    for (int i = 0; i < ncases; i++) {
        cs[i].rounds = 0;
        cs[i].sc = -1;
        cs[i].sc_ops = 0;
        cs[i].flt = 0;
        cs[i].ops = 0;
    }
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < ncases; k++) {
            int i = (r + k) % ncases;
            struct bench_case *c = &cs[i];
            int w = pr->worker_of[i];
            bench_proc_write(cmd[w], &i, sizeof i);
            if (bench_proc_read(res[w], &m, sizeof m) != 0 || m.i != i)
                bench_die("worker %d failed in round %d", w, r + 1);
            c->n = m.n < 1 ? 1 : m.n;
            c->ns_per_op[c->rounds++] = (double)m.ns / (double)c->n;
            c->flt += m.flt;
            c->ops += c->n;
        }
    }
    /* The counting rounds, as bench_interleave's: one per case, in its worker. */
    for (int i = 0; i < ncases; i++) {
        int w = pr->worker_of[i], t = ncases + i;
        bench_proc_write(cmd[w], &t, sizeof t);
        if (bench_proc_read(res[w], &m, sizeof m) != 0 || m.i != t)
            bench_die("worker %d failed in its counting round", w);
        cs[i].sc = m.sc;
        cs[i].sc_ops = m.sc < 0 ? 0 : m.n;
    }
    int failed = 0;
    for (int w = 0; w < pr->nworkers; w++) {
        close(cmd[w]);                    /* end of file: the worker exits */
        close(res[w]);
        int st = 0;
        while (waitpid(pid[w], &st, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) failed = 1;
    }
    if (failed) bench_die("a worker process failed at its end");
}

/* ---- targets -------------------------------------------------------------------------- */
/* Every field NAN means "no condition". A row meets its target when every condition
 * holds; when a condition's measurement is n/a the result is "n/a", never "met". */
struct bench_target {
    double max_ratio;       /* vmstack time / baseline time */
    double max_sc;          /* vmstack syscalls per op */
    double max_flt;         /* vmstack faults per op */
    double max_maps;        /* mappings added (memory rows) */
    double max_bytes;       /* resident bytes per stack or fiber (memory rows) */
    double max_delta_ns;    /* vmstack time - baseline time, ns per op (an option's cost) */
};

static inline struct bench_target bench_no_target(void)
{
    struct bench_target t;
    t.max_ratio = t.max_sc = t.max_flt = t.max_maps = t.max_bytes = t.max_delta_ns = NAN;
    return t;
}

/* ---- rows ----------------------------------------------------------------------------- */
enum { BENCH_ROW_TIME = 1, BENCH_ROW_MEM = 2 };
enum { BENCH_NO_TARGET = -1, BENCH_MISSED = 0, BENCH_MET = 1, BENCH_UNKNOWN = 2 };

struct bench_side {
    double ns, sc, flt;     /* per operation; NAN when not measured */
    double ns_min, ns_max;  /* fastest and slowest round, to show the noise */
    /* memory rows */
    double count;           /* stacks or fibers actually created */
    double maps;            /* mappings added */
    double rss;             /* resident bytes added, per stack */
    double pte;             /* page-table bytes added (VmPTE), per stack */
};

/* A plain struct with fixed-size strings, so a child can write it to a pipe as is. */
struct bench_row {
    int kind;               /* BENCH_ROW_TIME or BENCH_ROW_MEM */
    char id[48];            /* stable identifier for scripts and tests */
    char group[32];         /* the group that made it (set by bench_run_child) */
    char scenario[64];      /* what vmstack did */
    char baseline[48];      /* what it is compared with */
    char note[192];         /* e.g. where a baseline stopped */
    struct bench_side v, b; /* vmstack, baseline */
    double ratio;           /* v.ns / b.ns (time rows) */
    struct bench_target target;
    char target_text[80];
    int met;                /* BENCH_MET, BENCH_MISSED, BENCH_UNKNOWN or BENCH_NO_TARGET */
    long ops, rounds;       /* operations per recorded round of the vmstack case, rounds */
};

static inline struct bench_side bench_side_none(void)
{
    struct bench_side s;
    s.ns = s.sc = s.flt = s.count = s.maps = s.rss = s.pte = NAN;
    s.ns_min = s.ns_max = NAN;
    return s;
}

static inline struct bench_side bench_side_of(const struct bench_case *c)
{
    struct bench_side s = bench_side_none();
    s.ns = bench_case_ns(c);
    for (int i = 0; i < c->rounds; i++) {
        if (i == 0 || c->ns_per_op[i] < s.ns_min) s.ns_min = c->ns_per_op[i];
        if (i == 0 || c->ns_per_op[i] > s.ns_max) s.ns_max = c->ns_per_op[i];
    }
    s.sc = bench_case_sc(c);
    s.flt = bench_case_flt(c);
    return s;
}

static inline void bench_fmt_num(char *buf, size_t n, double v, int prec)
{
    if (isnan(v)) snprintf(buf, n, "n/a");
    else snprintf(buf, n, "%.*f", prec, v);
}

/* Fills target_text and met from target and the measured sides. */
static inline void bench_row_judge(struct bench_row *r)
{
    const struct bench_target *t = &r->target;
    char *p = r->target_text;
    size_t left = sizeof r->target_text;
    int any = 0, unknown = 0, missed = 0;
    p[0] = '\0';
#define BENCH_COND(limit, value, fmt, scale)                                            \
    if (!isnan(limit)) {                                                                \
        int w_ = snprintf(p, left, "%s" fmt, any ? ", " : "", (limit) * (scale));       \
        if (w_ > 0 && (size_t)w_ < left) { p += w_; left -= (size_t)w_; }               \
        any = 1;                                                                        \
        if (isnan(value)) unknown = 1;                                                  \
        else if ((value) > (limit) + 1e-12) missed = 1;                                 \
    }
    BENCH_COND(t->max_ratio, r->ratio, "ratio<=%gx", 1.0)
    BENCH_COND(t->max_delta_ns, r->v.ns - r->b.ns, "delta<=%gns", 1.0)
    BENCH_COND(t->max_sc, r->v.sc, "sc<=%g", 1.0)
    BENCH_COND(t->max_flt, r->v.flt, "flt<=%g", 1.0)
    BENCH_COND(t->max_maps, r->v.maps, "maps<=%g", 1.0)
    /* Memory per object: what it made resident plus the kernel's page tables for it
     * (the issues' "touched page, page tables and metadata"). */
    BENCH_COND(t->max_bytes, r->v.rss + r->v.pte, "rss+pte<=%gKiB", 1.0 / 1024)
#undef BENCH_COND
    if (!any) { snprintf(r->target_text, sizeof r->target_text, "-"); r->met = BENCH_NO_TARGET; }
    else r->met = missed ? BENCH_MISSED : unknown ? BENCH_UNKNOWN : BENCH_MET;
}

static inline void bench_row_time(struct bench_row *r, const char *id, const char *scenario,
                                  const struct bench_case *v, const char *baseline,
                                  const struct bench_case *b, struct bench_target t)
{
    memset(r, 0, sizeof *r);
    r->kind = BENCH_ROW_TIME;
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->scenario, sizeof r->scenario, "%s", scenario);
    snprintf(r->baseline, sizeof r->baseline, "%s", baseline);
    r->v = bench_side_of(v);
    r->b = b ? bench_side_of(b) : bench_side_none();
    r->ratio = b ? r->v.ns / r->b.ns : NAN;
    r->target = t;
    r->ops = v->n;
    r->rounds = v->rounds;
    bench_row_judge(r);
}

static const char *bench_met_text(int met)
{
    switch (met) {
    case BENCH_MET: return "met";
    case BENCH_MISSED: return "MISSED";
    case BENCH_UNKNOWN: return "n/a";
    default: return "-";
    }
}

/* ---- emitting rows from a child ------------------------------------------------------- */
static struct bench_row bench_rows[BENCH_MAX_ROWS];
static int bench_nrows;

/* Sends a finished row to the parent (from a child), or keeps it (in-process runs). */
static inline void bench_emit(const struct bench_row *r)
{
    if (bench_emit_fd >= 0) {
        const char *p = (const char *)r;
        size_t left = sizeof *r;
        while (left > 0) {
            ssize_t w = write(bench_emit_fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) { perror("vmstack bench: write to parent"); _exit(3); }
            p += w;
            left -= (size_t)w;
        }
        return;
    }
    if (bench_nrows < BENCH_MAX_ROWS) bench_rows[bench_nrows++] = *r;
}

/* Runs fn(opts) in a fresh child process (a process that has not used vmstack yet, so
 * the child may call vms_init) and collects the rows it emits. Returns 0, or -1 when the
 * child failed (its exit status is described on stderr; the rows it sent still count). */
static inline int bench_run_child(const char *group, void (*fn)(const struct bench_opts *),
                                  const struct bench_opts *o)
{
    int p[2];
    if (pipe(p) != 0) { perror("vmstack bench: pipe"); return -1; }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { perror("vmstack bench: fork"); close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        close(p[0]);
        bench_emit_fd = p[1];
        bench_sc_fd = -2;                 /* open this process's own counter */
        bench_overhead_done = 0;
        fn(o);
        fflush(NULL);
        _exit(0);
    }
    close(p[1]);
    struct bench_row r;
    size_t got = 0;
    for (;;) {
        ssize_t n = read(p[0], (char *)&r + got, sizeof r - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        got += (size_t)n;
        if (got == sizeof r) {
            snprintf(r.group, sizeof r.group, "%s", group);
            if (bench_nrows < BENCH_MAX_ROWS) bench_rows[bench_nrows++] = r;
            got = 0;
        }
    }
    close(p[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return 0;
    if (WIFSIGNALED(st))
        fprintf(stderr, "vmstack bench: error: group %s died by signal %d (%s)\n", group,
                WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        fprintf(stderr, "vmstack bench: error: group %s exited with status %d\n", group,
                WEXITSTATUS(st));
    return -1;
}

/* ---- output ------------------------------------------------------------------------- */
static inline void bench_print_table(FILE *f, const struct bench_row *rows, int n,
                                     const char *header)
{
    char a[6][32];
    int first = 1;
    for (int i = 0; i < n; i++) {
        const struct bench_row *r = &rows[i];
        if (r->kind != BENCH_ROW_TIME) continue;
        if (first) {
            fprintf(f, "%s\n", header);
            fprintf(f, "%-38s %10s %7s %7s | %-32s %10s %7s %7s | %8s  %-32s %s\n",
                    "scenario (time per op)", "vmstack ns", "sc/op", "flt/op",
                    "baseline", "ns", "sc/op", "flt/op", "ratio", "target", "result");
            first = 0;
        }
        bench_fmt_num(a[0], sizeof a[0], r->v.ns, 1);
        bench_fmt_num(a[1], sizeof a[1], r->v.sc, 3);
        bench_fmt_num(a[2], sizeof a[2], r->v.flt, 3);
        bench_fmt_num(a[3], sizeof a[3], r->b.ns, 1);
        bench_fmt_num(a[4], sizeof a[4], r->b.sc, 3);
        bench_fmt_num(a[5], sizeof a[5], r->b.flt, 3);
        char ratio[32];
        if (isnan(r->ratio)) snprintf(ratio, sizeof ratio, "n/a");
        else snprintf(ratio, sizeof ratio, "%.3gx", r->ratio);
        fprintf(f, "%-38s %10s %7s %7s | %-32s %10s %7s %7s | %8s  %-32s %s\n", r->scenario,
                a[0], a[1], a[2], r->baseline[0] ? r->baseline : "-", a[3], a[4], a[5],
                ratio, r->target_text, bench_met_text(r->met));
        if (r->note[0]) fprintf(f, "    note: %s\n", r->note);
    }
    first = 1;
    for (int i = 0; i < n; i++) {
        const struct bench_row *r = &rows[i];
        if (r->kind != BENCH_ROW_MEM) continue;
        if (first) {
            fprintf(f, "\n%-38s %9s %6s %9s %9s | %-32s %9s %6s %9s %9s | %-26s %s\n",
                    "scenario (memory)", "count", "maps+", "rss/each", "pte/each",
                    "baseline", "count", "maps+", "rss/each", "pte/each", "target", "result");
            first = 0;
        }
        char c[10][32];
        bench_fmt_num(c[0], sizeof c[0], r->v.count, 0);
        bench_fmt_num(c[1], sizeof c[1], r->v.maps, 0);
        bench_fmt_num(c[2], sizeof c[2], r->v.rss, 0);
        bench_fmt_num(c[3], sizeof c[3], r->v.pte, 0);
        bench_fmt_num(c[4], sizeof c[4], r->b.count, 0);
        bench_fmt_num(c[5], sizeof c[5], r->b.maps, 0);
        bench_fmt_num(c[6], sizeof c[6], r->b.rss, 0);
        bench_fmt_num(c[7], sizeof c[7], r->b.pte, 0);
        fprintf(f, "%-38s %9s %6s %9s %9s | %-32s %9s %6s %9s %9s | %-26s %s\n", r->scenario,
                c[0], c[1], c[2], c[3], r->baseline[0] ? r->baseline : "-", c[4], c[5], c[6],
                c[7], r->target_text, bench_met_text(r->met));
        bench_fmt_num(c[8], sizeof c[8], r->v.ns, 0);
        bench_fmt_num(c[9], sizeof c[9], r->b.ns, 0);
        fprintf(f, "    create+touch ns/each: vmstack %s, baseline %s%s%s\n", c[8], c[9],
                r->note[0] ? "; " : "", r->note);
    }
}

static inline void bench_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
        else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
        else fputc(ch, f);
    }
    fputc('"', f);
}

static inline void bench_json_num(FILE *f, const char *key, double v, int comma)
{
    fprintf(f, "\"%s\": ", key);
    if (isnan(v) || isinf(v)) fprintf(f, "null");
    else fprintf(f, "%.6g", v);
    if (comma) fprintf(f, ", ");
}

static inline void bench_json_side(FILE *f, const char *key, const struct bench_side *s, int mem)
{
    fprintf(f, "\"%s\": {", key);
    bench_json_num(f, "ns_per_op", s->ns, 1);
    bench_json_num(f, "ns_per_op_min", s->ns_min, 1);
    bench_json_num(f, "ns_per_op_max", s->ns_max, 1);
    bench_json_num(f, "syscalls_per_op", s->sc, 1);
    bench_json_num(f, "faults_per_op", s->flt, mem);
    if (mem) {
        bench_json_num(f, "count", s->count, 1);
        bench_json_num(f, "mappings_added", s->maps, 1);
        bench_json_num(f, "rss_bytes_each", s->rss, 1);
        bench_json_num(f, "pte_bytes_each", s->pte, 0);
    }
    fprintf(f, "}");
}

/* The VMSTACK_* variables of the environment, which every group's process inherits and
 * the library reads at its first use: a run with VMSTACK_PAINT=1 exported measures
 * painting, and the table must say so. Calls fn(entry, ctx) for each "NAME=value". */
extern char **environ;
static inline int bench_env_each(void (*fn)(const char *entry, void *ctx), void *ctx)
{
    int n = 0;
    for (char **e = environ; e && *e; e++) {
        if (strncmp(*e, "VMSTACK_", 8)) continue;
        if (fn) fn(*e, ctx);
        n++;
    }
    return n;
}

struct bench_env_out { FILE *f; int n; };

static inline void bench_env_json(const char *entry, void *ctx)
{
    struct bench_env_out *o = (struct bench_env_out *)ctx;
    if (o->n++) fprintf(o->f, ", ");
    bench_json_str(o->f, entry);
}

static inline void bench_env_text(const char *entry, void *ctx)
{
    fprintf(((struct bench_env_out *)ctx)->f, " %s", entry);
}

static inline void bench_print_json(FILE *f, const struct bench_row *rows, int n,
                                    const struct bench_opts *o, const char *tool,
                                    const char *syscall_counter)
{
    fprintf(f, "{\n  \"tool\": ");
    bench_json_str(f, tool);
    fprintf(f, ",\n  \"rounds\": %d, \"quick\": %s, \"syscall_counter\": ", o->rounds,
            o->quick ? "true" : "false");
    bench_json_str(f, syscall_counter);
    fprintf(f, ",\n  \"environment\": [");
    struct bench_env_out eo = { f, 0 };
    bench_env_each(bench_env_json, &eo);
    fprintf(f, "]");
    fprintf(f, ",\n  \"rows\": [\n");
    for (int i = 0; i < n; i++) {
        const struct bench_row *r = &rows[i];
        int mem = r->kind == BENCH_ROW_MEM;
        fprintf(f, "    {\"id\": ");
        bench_json_str(f, r->id);
        fprintf(f, ", \"group\": ");
        bench_json_str(f, r->group);
        fprintf(f, ", \"kind\": \"%s\", \"scenario\": ", mem ? "memory" : "time");
        bench_json_str(f, r->scenario);
        fprintf(f, ", \"baseline\": ");
        bench_json_str(f, r->baseline);
        fprintf(f, ", \"note\": ");
        bench_json_str(f, r->note);
        fprintf(f, ",\n     ");
        bench_json_side(f, "vmstack", &r->v, mem);
        fprintf(f, ",\n     ");
        bench_json_side(f, "base", &r->b, mem);
        fprintf(f, ",\n     ");
        bench_json_num(f, "ratio", r->ratio, 1);
        fprintf(f, "\"ops_per_round\": %ld, \"rounds\": %ld, \"target\": ", r->ops, r->rounds);
        bench_json_str(f, r->target_text);
        fprintf(f, ", \"result\": ");
        bench_json_str(f, bench_met_text(r->met));
        fprintf(f, "}%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  ]\n}\n");
}

/* ---- groups ---------------------------------------------------------------------------- */
/* A group is a set of cases measured together (interleaved) in one fresh child process;
 * it emits its rows with bench_emit. --only selects groups by name prefix. */
struct bench_group {
    const char *name;
    const char *what;
    void (*run)(const struct bench_opts *o);
    /* The VMS_* flags some of the group's processes give vms_init (0: none), which a
     * malformed variable for them does not change there: its warning names the group. */
    unsigned sets;
};

/* A list of groups (one per scenario file). */
struct bench_table { const struct bench_group *g; int n; };

/* The group tables, one per scenario file (stacks.c, fibers.c, threads.c, debug_opts.c),
 * and the driver (driver.c) that `vmstack bench` and bench/vmstack_bench run. */
#ifdef __cplusplus
extern "C" {
#endif
extern const struct bench_group bench_stack_groups[];
extern const int bench_stack_ngroups;
extern const struct bench_group bench_fiber_groups[];
extern const int bench_fiber_ngroups;
extern const struct bench_group bench_thread_groups[];
extern const int bench_thread_ngroups;
extern const struct bench_group bench_debug_groups[];
extern const int bench_debug_ngroups;
int vms_bench_main(int argc, char **argv, const char *prog);
#ifdef __cplusplus
}
#endif

/* ---- small helpers for scenarios ------------------------------------------------------- */
/* Results are summed into this, so the compiler cannot drop the work that made them. */
static volatile uint64_t bench_sink;

/* Lines of /proc/self/maps: the number of mappings, or -1. */
static inline long bench_map_count(void)
{
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    long lines = 0;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) lines += buf[i] == '\n';
    }
    close(fd);
    return lines;
}

/* A "Name:   value kB" field of /proc/self/status in bytes, or -1. */
static inline long long bench_status_kb(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    size_t len = strlen(field);
    long long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, field, len) == 0 && line[len] == ':') {
            v = strtoll(line + len + 1, NULL, 10) * 1024;
            break;
        }
    }
    fclose(f);
    return v;
}

/* Mappings, RSS and page tables of this process at one moment. */
struct bench_mem { long maps; long long rss, pte; };
static inline struct bench_mem bench_mem_now(void)
{
    struct bench_mem m;
    m.maps = bench_map_count();
    m.rss = bench_status_kb("VmRSS");
    m.pte = bench_status_kb("VmPTE");
    return m;
}

/* Fills the memory fields of s from two snapshots around creating count objects. */
static inline void bench_mem_side(struct bench_side *s, struct bench_mem before,
                                  struct bench_mem after, long count)
{
    s->count = (double)count;
    s->maps = before.maps < 0 || after.maps < 0 ? NAN : (double)(after.maps - before.maps);
    s->rss = before.rss < 0 || after.rss < 0 || count <= 0 ? NAN
             : (double)(after.rss - before.rss) / (double)count;
    s->pte = before.pte < 0 || after.pte < 0 || count <= 0 ? NAN
             : (double)(after.pte - before.pte) / (double)count;
}

/* The number of objects a scale scenario may create: count, or fewer when count objects
 * of about `each` resident bytes would take more than half of MemAvailable, so that a
 * large --scale-count never leaves the machine without memory. Says so in note. */
static inline long bench_scale_limit(long count, double each, char *note, size_t notesz)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return count;
    char line[256];
    long long avail = -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "MemAvailable:", 13) == 0) avail = strtoll(line + 13, NULL, 10) * 1024;
    fclose(f);
    if (avail <= 0 || (double)count * each <= (double)avail / 2) return count;
    long lim = (long)((double)avail / 2 / each);
    if (lim < 1) lim = 1;
    snprintf(note, notesz, "limited to %ld of %ld by MemAvailable", lim, count);
    return lim;
}

/* Starts the row of a scale scenario (memory per object, one round): its id, what
 * vmstack and the baseline do; the scenario names the object count, and the count is
 * bench_scale_limit's (a touched stack page, its page-table share and the records:
 * about 6 KiB each). Readies the counters: faults only, the syscall counter stays closed
 * (the creation loop is the row's one timed window, and an open counter would slow every
 * system call in it), so memory rows report no system calls. Returns the count. */
static inline long bench_scale_row(struct bench_row *r, const struct bench_opts *o,
                                   const char *id, const char *what, const char *baseline)
{
    memset(r, 0, sizeof *r);
    long count = bench_scale_limit(o->scale_count, 6144, r->note, sizeof r->note);
    r->kind = BENCH_ROW_MEM;
    snprintf(r->id, sizeof r->id, "%s", id);
    snprintf(r->scenario, sizeof r->scenario, "%ld %s", count, what);
    snprintf(r->baseline, sizeof r->baseline, "%s", baseline);
    r->v = bench_side_none();
    r->b = bench_side_none();
    r->ratio = NAN;
    r->ops = count;
    r->rounds = 1;
    bench_counters_init();
    return count;
}

/* Appends a clause to a row's note, separated by "; ". */
static inline void bench_note(struct bench_row *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void bench_note(struct bench_row *r, const char *fmt, ...)
{
    size_t len = strlen(r->note);
    if (len > 0 && len + 2 < sizeof r->note) {
        memcpy(r->note + len, "; ", 3);
        len += 2;
    }
    if (len + 1 >= sizeof r->note) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->note + len, sizeof r->note - len, fmt, ap);
    va_end(ap);
}

/* Whether group name g is selected by o->only (comma-separated prefixes). */
static inline int bench_selected(const struct bench_opts *o, const char *g)
{
    if (!o->only || !*o->only) return 1;
    const char *p = o->only;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0 && strncmp(g, p, len) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

/* Operations per round for a case: base (default run) or base/quick_div (--quick),
 * times --ops-factor, at least 1. */
static inline long bench_ops(const struct bench_opts *o, long base, long quick_div)
{
    double n = (double)base * (o->quick ? 1.0 / (double)quick_div : 1.0) * o->ops_factor;
    return n < 1 ? 1 : (long)n;
}

/* The same for a case that runs its operations in pairs (a resume + yield pair is two
 * switches, and its time is divided by the switches): rounded up to an even number, so
 * that the n / 2 pairs it runs are n operations (an odd n, from --ops-factor, ran one
 * switch fewer than it divided by, and n = 1 ran none). */
static inline long bench_ops_pairs(const struct bench_opts *o, long base, long quick_div)
{
    long n = bench_ops(o, base, quick_div);
    return n + (n & 1);
}

/* ---- the command line ------------------------------------------------------------------ */
static inline void bench_usage(FILE *f, const char *prog)
{
    fprintf(f,
            "usage: %s [--quick] [--json] [--rounds N] [--only GROUP[,GROUP...]]\n"
            "       %*s [--scale-count N] [--ops-factor F] [--no-syscalls] [--list]\n"
            "Measures vmstack against its baselines in the same process, interleaved in\n"
            "rounds; prints medians, ratios, system calls and page faults per operation.\n"
            "  --quick          a few seconds in all (for tests): fewer rounds and operations\n"
            "  --json           one JSON document instead of the table\n"
            "  --rounds N       recorded rounds per case (default 11, quick 5; max %d)\n"
            "  --only LIST      run only groups whose name starts with one of LIST (see --list)\n"
            "  --scale-count N  live stacks or fibers in the scale scenarios (default 1000000, quick 20000)\n"
            "  --ops-factor F   multiply the operations per round of every case (default 1)\n"
            "  --no-syscalls    do not count system calls (print n/a, as without perf)\n"
            "  --list           list the groups and exit\n"
            "An option's value may also follow an `=` (--rounds=21).\n",
            prog, (int)strlen(prog), "", BENCH_MAX_ROUNDS);
}

static inline int bench_parse_long(const char *opt, const char *s, long lo, long hi, long *out)
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

/* The whole command line: parses options, runs every selected group of the tables in
 * its own child, prints the table or JSON. Returns the exit status (0 when every group
 * ran, a MISSED target being a result and not an error; 1 when a group failed; 2 for bad
 * usage). The caller must not have used vmstack: each child starts with it unused. */
/* src/options.c (internal; both programs that include this file link the static
 * library): says what is wrong with the VMSTACK_* variables once, for the whole run,
 * and keeps the group processes forked afterwards from saying it again each. */
struct vms_config;
#ifdef __cplusplus
extern "C"
#endif
void vms__options_check_env(const struct vms_config *cfg,
                            const char *(*set_by)(unsigned flag, void *ctx), void *ctx);

/* For vms__options_check_env: the selected groups that set flag themselves (bench_group's
 * sets), as "in the processes of A, B and C that set VMS_X themselves", or NULL. */
struct bench_set_by_ctx {
    const struct bench_opts *o;
    const struct bench_table *t;
    int nt;
    char text[512];
};

static inline const char *bench_set_by(unsigned flag, void *ctx)
{
    struct bench_set_by_ctx *c = (struct bench_set_by_ctx *)ctx;
    const char *name = flag == VMS_PAINT ? "VMS_PAINT" : flag == VMS_END_CHECK ? "VMS_END_CHECK"
                     : flag == VMS_NO_SCRUB ? "VMS_NO_SCRUB" : "that flag";
    const char *g[32];
    int n = 0;
    for (int i = 0; i < c->nt; i++)
        for (int j = 0; j < c->t[i].n; j++)
            if ((c->t[i].g[j].sets & flag) && bench_selected(c->o, c->t[i].g[j].name) &&
                n < (int)(sizeof g / sizeof g[0]))
                g[n++] = c->t[i].g[j].name;
    if (!n) return NULL;
    size_t len = (size_t)snprintf(c->text, sizeof c->text, "in the processes of");
    for (int k = 0; k < n && len < sizeof c->text; k++)
        len += (size_t)snprintf(c->text + len, sizeof c->text - len, "%s %s",
                                k == 0 ? "" : k + 1 < n ? "," : " and", g[k]);
    if (len < sizeof c->text)
        snprintf(c->text + len, sizeof c->text - len, " that set %s themselves", name);
    return c->text;
}

static inline int bench_main(int argc, char **argv, const char *prog,
                             const struct bench_table *t, int nt)
{
    struct bench_opts o;
    memset(&o, 0, sizeof o);
    o.ops_factor = 1;
    long rounds = 0, scale = 0;
    int list = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        /* --name=value, as the other commands take it: the value is in a, not next. */
        char name[32];
        const char *eq = strchr(a, '=');
        int inl = !strncmp(a, "--", 2) && eq && (size_t)(eq - a) < sizeof name;
        if (inl) {
            memcpy(name, a, (size_t)(eq - a));
            name[eq - a] = '\0';
            a = name;
            next = eq + 1;
            if (!strcmp(a, "--quick") || !strcmp(a, "--json") || !strcmp(a, "--list") ||
                !strcmp(a, "--no-syscalls") || !strcmp(a, "--help")) {
                fprintf(stderr, "vmstack bench: error: %s takes no value\n", a);
                return 2;
            }
        }
        if (!strcmp(a, "--quick")) o.quick = 1;
        else if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--list")) list = 1;
        else if (!strcmp(a, "--no-syscalls")) bench_sc_disabled = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { bench_usage(stdout, prog); return 0; }
        else if (!strcmp(a, "--rounds")) {
            if (bench_parse_long(a, next, 1, BENCH_MAX_ROUNDS, &rounds)) return 2;
            i += !inl;
        } else if (!strcmp(a, "--scale-count")) {
            if (bench_parse_long(a, next, 1, 10000000, &scale)) return 2;
            i += !inl;
        } else if (!strcmp(a, "--only")) {
            if (!next || !*next) {
                fprintf(stderr, "vmstack bench: error: --only wants a group list (see --list)\n");
                return 2;
            }
            o.only = next;
            i += !inl;
        } else if (!strcmp(a, "--ops-factor")) {
            char *end;
            double f = next ? strtod(next, &end) : 0;
            if (!next || end == next || *end || !(f > 0 && f <= 100)) {
                fprintf(stderr, "vmstack bench: error: --ops-factor wants a number in (0, 100], got '%s'\n",
                        next ? next : "(nothing)");
                return 2;
            }
            o.ops_factor = f;
            i += !inl;
        } else {
            fprintf(stderr, "vmstack bench: error: unknown option '%s'\n", a);
            bench_usage(stderr, prog);
            return 2;
        }
    }
    o.rounds = rounds ? (int)rounds : o.quick ? 5 : 11;
    o.scale_count = scale ? scale : o.quick ? 20000 : 1000000;

    if (list) {
        for (int i = 0; i < nt; i++)
            for (int j = 0; j < t[i].n; j++) printf("%-18s %s\n", t[i].g[j].name, t[i].g[j].what);
        return 0;
    }
    /* Each prefix of --only must name a group: a misspelt one among others
     * (`--only stack.warm,fiber.swich`) was dropped without a word, and the run
     * printed only the rest. */
    for (const char *p = o.only; p && *p;) {
        size_t len = strcspn(p, ",");
        int found = len == 0;   /* an empty item (`a,,b`) selects nothing: no error */
        for (int i = 0; i < nt && !found; i++)
            for (int j = 0; j < t[i].n && !found; j++) found = !strncmp(t[i].g[j].name, p, len);
        if (!found) {
            fprintf(stderr, "vmstack bench: error: --only %.*s matches no group (see --list)\n",
                    (int)len, p);
            return 2;
        }
        p += len + (p[len] == ',');
    }
    int selected = 0;
    for (int i = 0; i < nt; i++)
        for (int j = 0; j < t[i].n; j++) selected += bench_selected(&o, t[i].g[j].name);
    if (!selected) {
        fprintf(stderr, "vmstack bench: error: --only %s matches no group (see --list)\n", o.only);
        return 2;
    }

    /* Before the first group's process is forked. */
    struct bench_set_by_ctx set_by = { &o, t, nt, "" };
    vms__options_check_env(NULL, bench_set_by, &set_by);
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
        /* The debug.* rows compare configurations that cannot share a process: their
         * sides run in sibling processes, in the same rounds, and say "(own process)". */
        int siblings = 0;
        for (int i = 0; i < bench_nrows; i++)
            siblings |= strstr(bench_rows[i].baseline, "(own process)") != NULL;
        char header[1024];
        snprintf(header, sizeof header,
                 "%s: median of %d interleaved rounds per case, same process as its baseline%s\n"
                 "system calls: %s%s%s; page faults: getrusage minflt+majflt\n",
                 prog, o.rounds,
                 siblings ? " (a baseline marked \"own process\": a sibling process, same rounds)" : "",
                 sc_ok ? "" : "n/a (", counter,
                 sc_ok ? ", in one more round per case after the timed ones (never open while "
                         "timing: it slows every system call)" : ")");
        if (bench_env_each(NULL, NULL)) {
            size_t len = strlen(header);
            FILE *h = fmemopen(header + len, sizeof header - len, "w");
            if (h) {
                struct bench_env_out eo = { h, 0 };
                fprintf(h, "environment:");
                bench_env_each(bench_env_text, &eo);
                fprintf(h, " (rows measure this configuration; targets are for the defaults)\n");
                fclose(h);
            }
        }
        bench_print_table(stdout, bench_rows, bench_nrows, header);
    }
    fflush(stdout);
    return failed;
}

#endif /* VMSTACK_BENCH_H */
