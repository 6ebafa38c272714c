/*
 * cmd_demo.c - `vmstack demo`: thousands of fibers and a few threads do recursive work;
 * a few of them get input deep enough to overflow their stacks.
 *
 * Every task parses a generated nested array with a recursive-descent parser and compares
 * its result with a checksum computed beforehand by an independent iterative scanner, so
 * "verified" means the task's own stack held up. The vmapped build shows one oops report
 * as the library wrote it, kills exactly the deep tasks and lets every other task finish.
 * In a direct-backend build (VMSTACK_VMAP=OFF, guard method "none") the same workload
 * runs in a child process and the summary shows what happened without guards instead.
 * Uses only the public API plus vms__parse_size for the --stack-size suffixes.
 */
#include "tools.h"
#include "vmstack.h"
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- options ----------------------------------------------------------------------- */

struct demo_opts {
    long fibers;          /* fibers in all */
    long threads;         /* vmstack threads (vms_thread_create) doing the same work */
    size_t stack_size;    /* usable bytes per stack; 0 = vmstack's default */
    long depth;           /* nesting of a normal task's input */
    long overflow;        /* fibers whose input overflows their stack */
    uint64_t seed;
    bool quiet;
    bool direct;
    bool env_checked;     /* --env-checked: run by `vmstack demo --direct` (see there) */
};

/* The fibers run on this many threads: enough to show fibers staying on their home
 * thread while another thread's fiber is killed, few enough for a 2-core machine. */
#define WORKERS 2

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmstack demo [options]\n"
        "  --fibers N      fibers in all, run on %d threads (default 2000; 1 to 1000000)\n"
        "  --threads N     vmstack threads doing the same work; the last overflows when\n"
        "                  --overflow is not 0 (default 4; 0 to 256)\n"
        "  --stack-size N  bytes per stack, k/m suffix, 16k to 64m, rounded up to a power\n"
        "                  of two (default: vmstack's, 256k)\n"
        "  --depth N       nesting of a normal task's input (default 48; 1 to 100000)\n"
        "  --overflow N    fibers whose input is deep enough to overflow (default 3;\n"
        "                  0 to --fibers)\n"
        "  --seed N        seed of the generated inputs (default 1)\n"
        "  --quiet         no oops report and no explanations: the header and the summary\n"
        "  --direct        run the same on the direct backend (no guards) to show what an\n"
        "                  overflow does there; needs vmstack-direct next to vmstack\n",
        WORKERS);
}

static int bad_option(const char *fmt, const char *arg)
{
    fprintf(stderr, "vmstack demo: error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n(`vmstack demo --help` lists the options)\n");
    return 2;
}

/* A whole decimal number in [lo, hi]; 0 on success. */
static int parse_count(const char *s, long lo, long hi, long *out)
{
    if (!s || *s < '0' || *s > '9') return -1;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* Parses argv into o; returns -1 when done (run), or an exit status. */
static int parse_args(int argc, char **argv, struct demo_opts *o)
{
    bool overflow_given = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) { o->quiet = true; continue; }
        if (!strcmp(a, "--direct")) { o->direct = true; continue; }
        if (!strcmp(a, "--env-checked")) { o->env_checked = true; continue; }
        const char *names[] = { "--fibers", "--threads", "--stack-size", "--depth",
                                "--overflow", "--seed" };
        const char *val = NULL;
        int which = -1;
        for (int k = 0; k < 6 && which < 0; k++) {
            size_t n = strlen(names[k]);
            if (!strcmp(a, names[k])) {
                if (i + 1 >= argc) return bad_option("%s needs a value", a);
                which = k;
                val = argv[++i];
            } else if (!strncmp(a, names[k], n) && a[n] == '=') {
                which = k;
                val = a + n + 1;
            }
        }
        if (which < 0) return bad_option("unknown option `%s`", a);
        long v = 0;
        switch (which) {
        case 0:
            if (parse_count(val, 1, 1000000, &v)) return bad_option("--fibers wants a count from 1 to 1000000, not `%s`", val);
            o->fibers = v;
            break;
        case 1:
            if (parse_count(val, 0, 256, &v)) return bad_option("--threads wants a count from 0 to 256, not `%s`", val);
            o->threads = v;
            break;
        case 2: {
            size_t sz;
            if (vms__parse_size(val, &sz) || sz < 16 * 1024 || sz > 64 * VMS_MIB)
                return bad_option("--stack-size wants a size from 16k to 64m (k or m suffix), not `%s`", val);
            o->stack_size = sz;
            break;
        }
        case 3:
            if (parse_count(val, 1, 100000, &v)) return bad_option("--depth wants a count from 1 to 100000, not `%s`", val);
            o->depth = v;
            break;
        case 4:
            if (parse_count(val, 0, 1000000, &v)) return bad_option("--overflow wants a count from 0 to 1000000, not `%s`", val);
            o->overflow = v;
            overflow_given = true;
            break;
        case 5:
            if (parse_count(val, 0, LONG_MAX, &v)) return bad_option("--seed wants a non-negative number, not `%s`", val);
            o->seed = (uint64_t)v;
            break;
        }
    }
    /* The default (3) is for the default 2000 fibers: fewer fibers, fewer deep ones. */
    if (!overflow_given && o->overflow > o->fibers) o->overflow = o->fibers;
    if (o->overflow > o->fibers)
        return bad_option("--overflow cannot exceed --fibers (%s)", "there are not that many fibers");
    return -1;
}

/* ---- the work: generate, check iteratively, parse recursively ------------------------- */

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

#define H_BASIS 0xcbf29ce484222325u
static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3u + (v >> 17); }
static uint64_t rotl7(uint64_t v) { return (v << 7) | (v >> 57); }
/* parse_value hands a nested array's value to its caller through this function, which
 * keeps that call from being a tail call (the frames stay, as in real parsers); the
 * iterative checker applies it too. */
static uint64_t nested_value(uint64_t array_value) { return mix(0, array_value); }

/* A nested array `depth` levels deep, like [12,[3,[[7],44],5]]: at each level 0-2
 * numbers before and after the nested array. Returns a malloc'd string. */
static char *gen_text(uint64_t seed, long id, long depth)
{
    uint64_t s = seed * 0x9e3779b97f4a7c15u ^ (uint64_t)id;
    size_t cap = (size_t)depth * 32 + 64, n = 0;
    char *t = malloc(cap);
    if (!t) return NULL;
    unsigned char *after = malloc((size_t)depth + 1);
    if (!after) { free(t); return NULL; }
    for (long l = 0; l < depth; l++) {
        uint64_t r = splitmix(&s);
        unsigned before = r % 3;
        after[l] = (unsigned char)((r >> 8) % 3);
        t[n++] = '[';
        if (l == depth - 1) {
            /* The innermost array holds only numbers (1-3 of them). */
            before += 1;
        }
        for (unsigned k = 0; k < before; k++)
            n += (size_t)sprintf(t + n, "%s%u", k ? "," : "", (unsigned)(splitmix(&s) % 100000));
        if (l < depth - 1 && before) t[n++] = ',';
    }
    for (long l = depth - 1; l >= 0; l--) {
        if (l < depth - 1)
            for (unsigned k = 0; k < after[l]; k++)
                n += (size_t)sprintf(t + n, ",%u", (unsigned)(splitmix(&s) % 100000));
        t[n++] = ']';
    }
    t[n] = '\0';
    free(after);
    return t;
}

/* The independent method: one left-to-right scan with an explicit stack of partial
 * checksums (on the heap). Returns false for malformed text. */
static bool check_text(const char *t, uint64_t *out)
{
    size_t cap = 64, top = 0;
    uint64_t *h = malloc(cap * sizeof *h), *cnt = malloc(cap * sizeof *cnt);
    bool ok = h && cnt;
    uint64_t result = 0;
    for (const char *p = t; ok && *p; ) {
        if (*p == '[') {
            if (top == cap) {
                cap *= 2;
                uint64_t *h2 = realloc(h, cap * sizeof *h), *c2 = h2 ? realloc(cnt, cap * sizeof *cnt) : NULL;
                if (h2) h = h2;
                if (c2) cnt = c2;
                if (!h2 || !c2) { ok = false; break; }
            }
            h[top] = H_BASIS;
            cnt[top++] = 0;
            p++;
        } else if (*p >= '0' && *p <= '9') {
            uint64_t v = 0;
            while (*p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
            if (!top) { ok = false; break; }
            h[top - 1] = mix(h[top - 1], v);
            cnt[top - 1]++;
        } else if (*p == ']') {
            if (!top) { ok = false; break; }
            top--;
            uint64_t v = nested_value(rotl7(mix(h[top], cnt[top])));
            if (top) { h[top - 1] = mix(h[top - 1], v); cnt[top - 1]++; }
            else result = v;
            p++;
        } else if (*p == ',') {
            p++;
        } else {
            ok = false;
        }
    }
    free(h);
    free(cnt);
    if (ok) *out = result;
    return ok && top == 0;
}

struct parse {
    const char *p;
    long level;
    long yield_at;        /* a fiber yields once at this nesting level; 0: never */
    bool bad;
    size_t remaining[4];  /* vms_stack_remaining() at levels 1-3 (calibration) */
};

static uint64_t parse_value(struct parse *ps);

/* The recursion: parse_array and parse_value call each other once per nesting level.
 * noinline keeps both frames (and both names in the oops's call trace). */
__attribute__((noinline)) static uint64_t parse_array(struct parse *ps)
{
    long level = ++ps->level;
    if (level < 4) ps->remaining[level] = vms_stack_remaining();
    if (level == ps->yield_at) vms_fiber_yield();
    ps->p++;   /* '[' */
    uint64_t h = H_BASIS, n = 0;
    while (*ps->p != ']') {
        h = mix(h, parse_value(ps));
        n++;
        if (*ps->p == ',') ps->p++;
        else if (*ps->p != ']') { ps->bad = true; return 0; }
    }
    ps->p++;
    ps->level--;
    return rotl7(mix(h, n));
}

__attribute__((noinline)) static uint64_t parse_value(struct parse *ps)
{
    if (*ps->p == '[') return nested_value(parse_array(ps));
    /* Collect the digits first, as a tokenizer would: the buffer also gives the frame a
     * realistic size. */
    char digits[24];
    size_t n = 0;
    while (*ps->p >= '0' && *ps->p <= '9' && n < sizeof digits - 1) digits[n++] = *ps->p++;
    if (n == 0) { ps->bad = true; return 0; }
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v * 10 + (uint64_t)(digits[i] - '0');
    return v;
}

/* ---- jobs -------------------------------------------------------------------------- */

enum { JOB_NOT_RUN = 0, JOB_DONE, JOB_KILLED, JOB_FAILED };

/* One task's input and outcome. The array lives in MAP_SHARED memory so that a child
 * process (direct mode) can fill in outcomes the parent reads even after a crash. */
struct job {
    long id;
    bool deep;
    bool parse_bad;
    long yield_at;        /* a fiber yields once at this level (its deepest); 0: never */
    int outcome;          /* JOB_* */
    int oops_kind;        /* vms_fiber_oops()->kind for a killed fiber */
    char *text;
    uint64_t expect, got;
    uintptr_t lo, hi;     /* the fiber's stack [lo, hi), for the direct-mode analysis */
    long started;         /* order of its first resume (1, 2, ...), 0: never resumed */
    vms_fiber *fiber;     /* worker-private */
};

static void run_parse(struct job *j, long yield_at)
{
    struct parse ps = { .p = j->text, .yield_at = yield_at };
    j->got = parse_value(&ps);
    j->parse_bad = ps.bad;
}

static void fiber_main(void *arg)
{
    struct job *j = arg;
    /* Normal fibers yield once at their deepest point, so that all of them hold their
     * deepest stacks at the same time when memory is measured. */
    run_parse(j, j->yield_at);
}

/* ---- oops reports: shown once, counted always ------------------------------------------ */

/* The library writes reports to report_fd, one line per write(2). A reader thread
 * drains the pipe (so a report never blocks the faulting thread), keeps the first
 * complete report and counts the others by their first lines. A marker line written by
 * the main thread lets it wait until everything written before is read. */
struct reports {
    int rfd, wfd;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char first[32768];
    size_t first_len;
    int first_state;       /* 0: none yet, 1: inside the first, 2: complete */
    long count;            /* reports seen (first lines) */
    long end_checks;       /* of which "corrupted stack end" */
    char first_end_check[256];
    long marks_seen;
    long marks_sent;
    bool no_sync;          /* direct mode: the writer is a child process */
};

static struct reports rep;
static atomic_long hook_calls;

/* async-signal-safe: runs in the fault handler; one atomic increment. */
static void count_oops(const vms_oops *oops, void *ctx)
{
    (void)oops; (void)ctx;
#ifdef VMSTACK_DEMO_TEST_MISCOUNT
    /* Only in the test-only build of the command (tests/cli.cmake, never installed):
     * the first call goes uncounted, so that cli_demo's miscount test sees the summary's
     * count check fire. */
    static atomic_int skipped;
    if (!atomic_exchange_explicit(&skipped, 1, memory_order_relaxed)) return;
#endif
    atomic_fetch_add_explicit(&hook_calls, 1, memory_order_relaxed);
}

static bool starts(const char *s, const char *prefix) { return !strncmp(s, prefix, strlen(prefix)); }

static void report_line(char *line)
{
    bool start = starts(line, "vmstack: stack overflow") || starts(line, "vmstack: stack underflow") ||
                 starts(line, "vmstack: corrupted stack end");
    pthread_mutex_lock(&rep.mu);
    if (start) {
        rep.count++;
        if (starts(line, "vmstack: corrupted stack end")) {
            if (!rep.end_checks++) {
                size_t n = strnlen(line, sizeof rep.first_end_check - 1);
                memcpy(rep.first_end_check, line, n);
                rep.first_end_check[n] = '\0';
            }
        }
        if (rep.first_state == 0) rep.first_state = 1;
    }
    if (rep.first_state == 1) {
        size_t n = strlen(line);
        if (rep.first_len + n + 2 < sizeof rep.first) {
            memcpy(rep.first + rep.first_len, line, n);
            rep.first_len += n;
            rep.first[rep.first_len++] = '\n';
            rep.first[rep.first_len] = '\0';
        }
        if (starts(line, "vmstack: killed") || strstr(line, "aborting")) rep.first_state = 2;
    }
    pthread_mutex_unlock(&rep.mu);
}

static void *report_reader(void *arg)
{
    (void)arg;
    char buf[4096], line[1024];
    size_t ln = 0;
    for (;;) {
        ssize_t r = read(rep.rfd, buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return NULL;
        for (ssize_t i = 0; i < r; i++) {
            if (buf[i] != '\n') {
                if (ln + 1 < sizeof line) line[ln++] = buf[i];
                continue;
            }
            line[ln] = '\0';
            ln = 0;
            if (!strcmp(line, "\001quit")) return NULL;
            if (!strcmp(line, "\001mark")) {
                pthread_mutex_lock(&rep.mu);
                rep.marks_seen++;
                pthread_cond_broadcast(&rep.cv);
                pthread_mutex_unlock(&rep.mu);
                continue;
            }
            report_line(line);
        }
    }
}

static int reports_start(void)
{
    int p[2];
    if (pipe(p) != 0) return -errno;
    rep.rfd = p[0];
    rep.wfd = p[1];
    pthread_mutex_init(&rep.mu, NULL);
    pthread_cond_init(&rep.cv, NULL);
    int e = pthread_create(&rep.thread, NULL, report_reader, NULL);
    return -e;
}

/* Waits until the reader has seen every report written so far. */
static void reports_sync(void)
{
    if (rep.no_sync) return;
    pthread_mutex_lock(&rep.mu);
    long want = ++rep.marks_sent;
    pthread_mutex_unlock(&rep.mu);
    if (write(rep.wfd, "\001mark\n", 6) != 6) return;
    pthread_mutex_lock(&rep.mu);
    while (rep.marks_seen < want) pthread_cond_wait(&rep.cv, &rep.mu);
    pthread_mutex_unlock(&rep.mu);
}

#ifdef VMSTACK_VMAP
static void reports_stop(void)
{
    if (write(rep.wfd, "\001quit\n", 6) == 6) pthread_join(rep.thread, NULL);
}
#endif

/* ---- fibers on worker threads -------------------------------------------------------- */

struct worker {
    int index;
    struct job *jobs;
    long njobs;
    size_t stack_size;
    pthread_barrier_t *barrier;
    pthread_mutex_t *deep_lock;
    long *resuming;       /* id + 1 of the job being resumed, 0: none (shared memory) */
    atomic_long *resumes; /* first resumes so far, across the workers */
    long create_failed;
    int create_errno;     /* errno of the first failed vms_fiber_create */
    long resume_failed;
    int resume_err;       /* error of the first failed vms_fiber_resume */
};

/* Resumes j's fiber once. A deep fiber's run is serialized with the other deep fibers'
 * (by the worker, not by the fiber, which may be killed) so that two reports never
 * interleave line by line in the output; kills themselves need no such help. */
static void resume_job(struct worker *w, struct job *j)
{
    if (j->deep) pthread_mutex_lock(w->deep_lock);
    *w->resuming = j->id + 1;
    if (!j->started) j->started = atomic_fetch_add(w->resumes, 1) + 1;
    int st = vms_fiber_resume(j->fiber);
    *w->resuming = 0;
    if (j->deep) pthread_mutex_unlock(w->deep_lock);
    if (st == VMS_DONE) {
        j->outcome = JOB_DONE;
    } else if (st == VMS_KILLED) {
        const vms_oops *o = vms_fiber_oops(j->fiber);
        j->outcome = JOB_KILLED;
        j->oops_kind = o ? o->kind : 0;
    } else if (st < 0) {
        j->outcome = JOB_FAILED;
        if (!w->resume_failed++) w->resume_err = -st;
    }
}

/* After a failed resume the worker stops: the library said why (no alternate signal
 * stack, say), and every other resume on this thread would fail the same way. */
static void give_up(struct worker *w)
{
    for (long i = 0; i < w->njobs; i++) {
        struct job *j = &w->jobs[i];
        if (j->outcome != JOB_NOT_RUN) continue;
        j->outcome = JOB_FAILED;
        w->resume_failed++;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[32];
    for (long i = 0; i < w->njobs; i++) {
        struct job *j = &w->jobs[i];
        snprintf(name, sizeof name, "parser-%ld", j->id);
        vms_fiber_attr attr = { .stack_size = w->stack_size, .name = name };
        j->fiber = vms_fiber_create(fiber_main, j, &attr);
        if (!j->fiber) {
            /* Out of memory or mappings: the rest would fail the same way. */
            w->create_errno = errno;
            w->create_failed = w->njobs - i;
            for (long k = i; k < w->njobs; k++) w->jobs[k].outcome = JOB_FAILED;
            break;
        }
        const vms_stack *st = vms_fiber_stack(j->fiber);
        j->lo = (uintptr_t)vms_stack_base(st);
        j->hi = j->lo + vms_stack_size(st);
    }
    /* Pass 1: every fiber descends to its deepest point and yields there (a deep one is
     * killed on the way down). Then the main thread measures memory. A fiber that ended
     * (killed) is destroyed at once, which gives its stack's pages back: the memory
     * measured is then that of the live fibers, which it is divided by. */
    for (long i = 0; i < w->njobs && !w->resume_failed; i++) {
        struct job *j = &w->jobs[i];
        if (!j->fiber) continue;
        resume_job(w, j);
        if (j->outcome == JOB_NOT_RUN) continue;
        vms_fiber_destroy(j->fiber);
        j->fiber = NULL;
    }
    if (w->resume_failed) give_up(w);
    pthread_barrier_wait(w->barrier);
    pthread_barrier_wait(w->barrier);
    /* Pass 2: everything still suspended finishes. */
    for (long i = 0; i < w->njobs; i++) {
        struct job *j = &w->jobs[i];
        while (j->fiber && j->outcome == JOB_NOT_RUN) resume_job(w, j);
        if (w->resume_failed) give_up(w);
        if (j->fiber) vms_fiber_destroy(j->fiber);
        j->fiber = NULL;
    }
    return NULL;
}

/* ---- threads ------------------------------------------------------------------------- */

static void *thread_main(void *arg)
{
    struct job *j = arg;
    run_parse(j, 0);
    return j;
}

/* ---- measurements -------------------------------------------------------------------- */

/* A "Name:   value kB" field of /proc/self/status (VmRSS, VmPTE) in bytes, or -1. */
static long long status_bytes(const char *field)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    size_t n = strlen(field);
    long long kb = -1;
    while (kb < 0 && fgets(line, sizeof line, f))
        if (!strncmp(line, field, n) && line[n] == ':' && sscanf(line + n + 1, "%lld", &kb) != 1)
            kb = -1;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

#ifdef VMSTACK_VMAP
static long max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = -1;
        fclose(f);
    }
    return v;
}

/* Whether /proc/self/maps has anything to read. */
static bool maps_readable(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    int c = f ? fgetc(f) : EOF;
    if (f) fclose(f);
    return c != EOF;
}
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void human(char *buf, size_t n, double bytes)
{
    if (bytes >= 1024.0 * 1024 * 1024 * 1024)
        snprintf(buf, n, "%.1f TiB", bytes / (1024.0 * 1024 * 1024 * 1024));
    else if (bytes >= 1024.0 * 1024 * 1024) snprintf(buf, n, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
    else if (bytes >= 1024.0 * 1024) snprintf(buf, n, "%.1f MiB", bytes / (1024.0 * 1024));
    else snprintf(buf, n, "%.1f KiB", bytes / 1024.0);
}

static void calibrate_main(void *arg)
{
    struct parse *ps = arg;
    parse_value(ps);
}

/* Bytes of stack one nesting level costs (a parse_array and a parse_value frame),
 * measured on a fiber, and that fiber's usable stack size. 0 when unmeasurable, with
 * the reason in why. */
static size_t bytes_per_level(size_t stack_size, size_t *usable, char *why, size_t cap)
{
    struct parse ps = { .p = "[[[[1]]]]" };
    vms_fiber_attr a = { .stack_size = stack_size, .name = "calibrate" };
    vms_fiber *f = vms_fiber_create(calibrate_main, &ps, &a);
    if (!f) {
        snprintf(why, cap, "vms_fiber_create: %s", strerror(errno));
        return 0;
    }
    *usable = vms_stack_size(vms_fiber_stack(f));
    int st = vms_fiber_resume(f);
    vms_fiber_destroy(f);
    if (st != VMS_DONE) {
        snprintf(why, cap, "vms_fiber_resume gave %d, not VMS_DONE", st);
        return 0;
    }
    if (ps.remaining[1] == SIZE_MAX || ps.remaining[1] <= ps.remaining[2]) {
        snprintf(why, cap, "vms_stack_remaining gave %zu at level 1 and %zu at level 2",
                 ps.remaining[1], ps.remaining[2]);
        return 0;
    }
    return ps.remaining[1] - ps.remaining[2];
}

/* ---- the run --------------------------------------------------------------------------- */

struct totals {
    long run, verified, killed, killed_deep, deep, wrong, failed, deep_survived;
    long killed_not_overflow, deep_right;
};

static void tally(const struct job *jobs, long n, struct totals *t)
{
    memset(t, 0, sizeof *t);
    for (long i = 0; i < n; i++) {
        const struct job *j = &jobs[i];
        t->deep += j->deep;
        if (j->outcome == JOB_NOT_RUN || j->outcome == JOB_FAILED) { t->failed++; continue; }
        t->run++;
        if (j->outcome == JOB_KILLED) {
            t->killed++;
            t->killed_deep += j->deep;
            if (j->oops_kind != VMS_OVERFLOW) t->killed_not_overflow++;
        } else if (!j->parse_bad && j->got == j->expect) {
            if (j->deep) { t->deep_survived++; t->deep_right++; }
            else t->verified++;
        } else {
            if (j->deep) t->deep_survived++;
            else t->wrong++;
        }
    }
}

/* Everything one run measured, for the summary. */
struct run {
    struct demo_opts o;
    struct job *jobs;           /* o.fibers fiber jobs, then o.threads thread jobs */
    size_t stack_usable, per_level;
    long deep_depth;
    double wall;
    long long rss_before, rss_peak;  /* VmRSS */
    long long pte_before, pte_peak;  /* VmPTE: the page tables, not in the RSS */
    vms_stats peak, end;
    long live_at_peak;
    long create_failed;
    int create_errno;
    long resume_failed;
    int resume_err;
    long threads_started;
    long resuming[WORKERS];     /* see struct worker */
    atomic_long resumes;
    bool thread_phase;          /* the vmstack threads are running */
    char env_overflow[64];      /* VMSTACK_ON_OVERFLOW of the environment, when not used */
};

static struct job *jobs_alloc(long n)
{
    void *p = mmap(NULL, (size_t)n * sizeof(struct job), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Marks `overflow` of n jobs deep: one in each of `overflow` equal runs of jobs, at a
 * seeded position, so both workers get some and the choice changes with --seed. */
static void pick_deep(struct job *jobs, long n, long overflow, uint64_t seed)
{
    uint64_t s = seed ^ 0x5eed;
    for (long k = 0; k < overflow; k++) {
        long lo = k * n / overflow, hi = (k + 1) * n / overflow;
        jobs[lo + (long)(splitmix(&s) % (uint64_t)(hi - lo))].deep = true;
    }
}

static int make_inputs(struct run *r)
{
    long total = r->o.fibers + r->o.threads;
    for (long i = 0; i < total; i++) {
        struct job *j = &r->jobs[i];
        j->id = i;
        j->text = gen_text(r->o.seed, i, j->deep ? r->deep_depth : r->o.depth);
        j->yield_at = j->deep || i >= r->o.fibers ? 0 : r->o.depth;
        if (!j->text || !check_text(j->text, &j->expect)) {
            fprintf(stderr, "vmstack demo: error: cannot generate input %ld (out of memory?)\n", i);
            return -1;
        }
    }
    return 0;
}

/* MemAvailable of /proc/meminfo (what can be had without swapping), or the machine's
 * memory when that cannot be read; 0 when neither is known. */
static double memory_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    long long kb = -1;
    if (f) {
        char line[256];
        while (kb < 0 && fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %lld kB", &kb) != 1) kb = -1;
        fclose(f);
    }
    if (kb >= 0) return (double)kb * 1024;
    double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    return ram > 0 ? ram : 0;
}

/* The memory an input `depth` levels deep holds: gen_text's buffer, all of it for a
 * small one (malloc carves it out of pages it touches), the written part (about 14
 * bytes a level) for one large enough to get pages of its own. */
static double text_bytes(long depth)
{
    double cap = (double)depth * 32 + 64;
    return cap < 128 * 1024 ? cap + 16 : 14.0 * (double)depth;
}

/* About how much memory the run holds at its peak, once r->per_level and r->deep_depth
 * are known: every input and the job array, and the larger of the two phases. In the
 * fibers' phase every normal fiber holds its deepest stack (its frames and its record,
 * in whole pages) and the page tables that map it, and at most two deep stacks are
 * resident (the deep runs are serialized, and a killed fiber's pages are given back
 * when it is destroyed); in the threads' phase, each thread's stack. Used only to refuse
 * runs that cannot fit, so it need not be exact. */
static double memory_needed(const struct run *r)
{
    double page = (double)vms__os_page_size();
    double deep_jobs = (double)(r->o.overflow + (r->o.threads && r->o.overflow));
    double jobs = (double)(r->o.fibers + r->o.threads);
    double inputs = jobs * (double)sizeof(struct job) + (jobs - deep_jobs) * text_bytes(r->o.depth) +
                    deep_jobs * text_bytes(r->deep_depth);
    double held = (double)r->o.depth * (double)r->per_level + 1024;   /* frames + record */
    held = (double)(long long)((held + page - 1) / page) * page;
    /* A page-table page maps page/8 pages, and a page of the level above maps page/8
     * of those; slots are stack + guard apart. */
    double slot = (double)(r->stack_usable + vms__opt.guard_size), span = page / 8 * page;
    double pt = (slot >= span ? page : page * slot / span) +
                (slot >= span * (page / 8) ? page : page * slot / (span * (page / 8)));
    double fibers = (double)(r->o.fibers - r->o.overflow) * (held + pt) +
                    (r->o.overflow ? 2.0 : 0.0) * (double)r->stack_usable;
    double threads = (double)r->o.threads * held +
                     (r->o.threads && r->o.overflow ? (double)r->stack_usable : 0);
    return inputs + (fibers > threads ? fibers : threads);
}

/* Runs the fibers, then the threads; fills r. Returns 0, -1 after a message when the run
 * could not be set up, or 2 after a message when the options do not fit together. */
static int run_workload(struct run *r, bool end_check)
{
    vms_config cfg = { .stack_size = r->o.stack_size, .report_fd = rep.wfd,
                       .flags = end_check ? VMS_END_CHECK : 0 };
    int e = vms_init(&cfg);
    if (e) {
        fprintf(stderr, "vmstack demo: error: vms_init: %s\n", strerror(-e));
        return -1;
    }
    vms_set_oops_hook(count_oops, NULL);

    /* A deep input needs 1.25 stacks: whatever the frame sizes of this build. */
    /* Without the measurement the deep inputs' depth, and the header's "bytes per
     * level", would be guesses. */
    char why[128];
    r->per_level = bytes_per_level(r->o.stack_size, &r->stack_usable, why, sizeof why);
    if (!r->per_level) {
        fprintf(stderr, "vmstack demo: error: cannot measure the stack a nesting level takes "
                "(on a calibration fiber): %s\n", why);
        return -1;
    }
    r->deep_depth = (long)(r->stack_usable + r->stack_usable / 4) / (long)r->per_level + 16;
    /* A normal input must fit with room to spare (the C library and the switch need some
     * too), or every task would overflow and the demo would show nothing. */
    if ((size_t)r->o.depth * r->per_level > r->stack_usable / 4 * 3) {
        fprintf(stderr, "vmstack demo: error: --depth %ld needs about %zu bytes of stack, more than "
                "3/4 of the %zu-byte stacks; lower --depth or raise --stack-size\n",
                r->o.depth, (size_t)r->o.depth * r->per_level, r->stack_usable);
        return 2;
    }

    /* Options that each make sense can together need more memory than the machine has,
     * and such a run would end in the OOM killer (or a thrashing machine) instead of a
     * message. */
    double need = memory_needed(r), avail = memory_available();
    if (avail > 0 && need > avail) {
        char a[32], b[32];
        human(a, sizeof a, need);
        human(b, sizeof b, avail);
        fprintf(stderr, "vmstack demo: error: --fibers %ld at --depth %ld (and %ld deep inputs of %ld "
                "levels) need about %s of memory, more than the %s available on this machine "
                "(MemAvailable); lower --fibers, --depth or --overflow\n", r->o.fibers, r->o.depth,
                r->o.overflow + (r->o.threads && r->o.overflow), r->deep_depth, a, b);
        return 2;
    }

    pick_deep(r->jobs, r->o.fibers, r->o.overflow, r->o.seed);
    if (r->o.threads && r->o.overflow) r->jobs[r->o.fibers + r->o.threads - 1].deep = true;
    if (make_inputs(r)) return -1;

    /* Fibers: WORKERS threads, each creating and running its share. */
    pthread_barrier_t barrier;
    pthread_mutex_t deep_lock = PTHREAD_MUTEX_INITIALIZER;
    pthread_barrier_init(&barrier, NULL, WORKERS + 1);
    struct worker w[WORKERS];
    pthread_t th[WORKERS];
    r->rss_before = status_bytes("VmRSS");
    r->pte_before = status_bytes("VmPTE");
    double t0 = now();
    for (int k = 0; k < WORKERS; k++) {
        long lo = k * r->o.fibers / WORKERS, hi = (k + 1) * r->o.fibers / WORKERS;
        w[k] = (struct worker){ .index = k, .jobs = r->jobs + lo, .njobs = hi - lo,
                                .stack_size = r->o.stack_size, .barrier = &barrier,
                                .deep_lock = &deep_lock, .resuming = &r->resuming[k],
                                .resumes = &r->resumes };
        e = pthread_create(&th[k], NULL, worker_main, &w[k]);
        if (e) {
            fprintf(stderr, "vmstack demo: error: pthread_create: %s\n", strerror(e));
            exit(1);
        }
    }
    pthread_barrier_wait(&barrier);
    /* Every fiber that is still alive is suspended at its deepest point now. */
    r->rss_peak = status_bytes("VmRSS");
    r->pte_peak = status_bytes("VmPTE");
    vms_get_stats(&r->peak);
    r->live_at_peak = 0;
    for (long i = 0; i < r->o.fibers; i++)
        r->live_at_peak += r->jobs[i].fiber && r->jobs[i].outcome == JOB_NOT_RUN;
    pthread_barrier_wait(&barrier);
    for (int k = 0; k < WORKERS; k++) {
        pthread_join(th[k], NULL);
        if (w[k].create_failed && !r->create_failed) r->create_errno = w[k].create_errno;
        r->create_failed += w[k].create_failed;
        if (w[k].resume_failed && !r->resume_failed) r->resume_err = w[k].resume_err;
        r->resume_failed += w[k].resume_failed;
    }
    r->wall = now() - t0;
    pthread_barrier_destroy(&barrier);

    /* Threads: each parses its input on its own vmstack stack; the last may be deep. */
    r->thread_phase = true;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    if (r->o.stack_size) pthread_attr_setstacksize(&attr, r->o.stack_size);
    pthread_t *tt = calloc((size_t)r->o.threads + 1, sizeof *tt);
    for (long i = 0; tt && i < r->o.threads; i++) {
        struct job *j = &r->jobs[r->o.fibers + i];
        e = vms_thread_create(&tt[i], &attr, thread_main, j);
        if (e) {
            fprintf(stderr, "vmstack demo: error: vms_thread_create: %s\n", strerror(e < 0 ? -e : e));
            j->outcome = JOB_FAILED;
            continue;
        }
        r->threads_started++;
    }
    for (long i = 0; tt && i < r->o.threads; i++) {
        struct job *j = &r->jobs[r->o.fibers + i];
        if (j->outcome == JOB_FAILED) continue;
        void *res = NULL;
        pthread_join(tt[i], &res);
        if (res == VMS_THREAD_KILLED) { j->outcome = JOB_KILLED; j->oops_kind = VMS_OVERFLOW; }
        else j->outcome = JOB_DONE;
    }
    free(tt);
    pthread_attr_destroy(&attr);
    reports_sync();
    vms_get_stats(&r->end);
    return 0;
}

/* ---- output ---------------------------------------------------------------------------- */

/* The plural ending for a count. */
static const char *plural(long n) { return n == 1 ? "" : "s"; }

static void print_header(const struct run *r, const char *method)
{
    char ss[32];
    human(ss, sizeof ss, (double)r->stack_usable);
    /* The fibers are shared out among the workers: a single fiber runs on one of them. */
    long on = r->o.fibers < WORKERS ? r->o.fibers : WORKERS;
    printf("vmstack demo: %ld fiber%s on %ld thread%s, then %ld vmstack thread%s; seed %" PRIu64 "\n"
           "stacks    %s usable each; guards: %s\n", r->o.fibers, plural(r->o.fibers), on,
           plural(on), r->o.threads, plural(r->o.threads), r->o.seed, ss, method);
    if (r->env_overflow[0])
        printf("overflow  kill the task: the demo shows the kill (VMSTACK_ON_OVERFLOW=%s in the\n"
               "          environment is not used here)\n", r->env_overflow);
    if (r->o.quiet) return;
    printf("Each task parses a generated nested array %ld levels deep with a recursive-descent\n"
           "parser and compares the result with a checksum computed beforehand by an\n"
           "iterative scanner. %ld fiber%s%s get input %ld levels deep: at %zu bytes per\n"
           "level that is 1.25 times their stack.\n\n",
           r->o.depth, r->o.overflow, plural(r->o.overflow),
           r->o.threads && r->o.overflow ? " and 1 thread" : "", r->deep_depth, r->per_level);
}

#ifdef VMSTACK_VMAP
/* The vmapped (guarded) summary. Returns the exit status. */
static int print_guarded(const struct run *r)
{
    struct totals f, t;
    tally(r->jobs, r->o.fibers, &f);
    tally(r->jobs + r->o.fibers, r->o.threads, &t);
    print_header(r, r->end.guard_method ? r->end.guard_method : "?");

    pthread_mutex_lock(&rep.mu);
    if (!r->o.quiet) {
        if (rep.first_len) {
            printf("The first overflow, as vmstack reported it (%ld more report%s counted, not shown):\n\n%s\n",
                   rep.count - 1, rep.count - 1 == 1 ? "" : "s", rep.first);
        } else {
            printf("No oops report was written.\n\n");
        }
    }
    long reports = rep.count;
    pthread_mutex_unlock(&rep.mu);

    char a[32], b[32], c[32];
    printf("fibers    %ld run, %ld verified, %ld killed (%ld planned overflow%s), %ld wrong\n",
           f.run, f.verified, f.killed, f.deep, plural(f.deep), f.wrong);
    printf("threads   %ld run, %ld verified, %ld killed (%ld planned overflow%s), %ld wrong\n",
           t.run, t.verified, t.killed, t.deep, plural(t.deep), t.wrong);
    long hooks = atomic_load(&hook_calls);
    printf("reports   %ld oops report%s, oops hook called %ld time%s, vms_get_stats overflows %zu\n",
           reports, plural(reports), hooks, plural(hooks), r->end.overflows);
    printf("time      %.2f s wall for the fibers (create, run, destroy)\n", r->wall);
    if (r->live_at_peak > 0 && r->rss_before >= 0 && r->rss_peak >= 0 && r->pte_before >= 0 &&
        r->pte_peak >= 0) {
        /* What the fibers cost the machine: their resident pages and the page tables
         * that map them (as the benchmarks count memory per stack). */
        double rss = (double)(r->rss_peak - r->rss_before), pte = (double)(r->pte_peak - r->pte_before);
        char d[32];
        human(a, sizeof a, (rss + pte) / (double)r->live_at_peak);
        human(b, sizeof b, rss);
        human(d, sizeof d, pte);
        human(c, sizeof c, (double)r->peak.resident_bytes);
        printf("memory    %s per fiber at its deepest point: (RSS delta %s + page tables %s)\n"
               "          / %ld live fiber%s; vmstack resident %s for %zu stack%s\n",
               a, b, d, r->live_at_peak, plural(r->live_at_peak), c, r->peak.stacks_live,
               plural((long)r->peak.stacks_live));
    }
    if (r->create_failed)
        printf("error     %ld fibers could not be created: %s\n", r->create_failed,
               strerror(r->create_errno));
    if (r->resume_failed)
        printf("error     %ld fibers could not be run: %s\n", r->resume_failed,
               strerror(r->resume_err));
    /* vms_stats.mappings counts lines of /proc/self/maps: where that cannot be read (a
     * sandbox), it is what the arenas' layout predicts, an estimate: not printed as a
     * measurement. */
    long maxmap = max_map_count();
    char limit[64];
    if (maxmap > 0) snprintf(limit, sizeof limit, "%ld", maxmap);
    else snprintf(limit, sizeof limit, "unknown\n          (cannot read /proc/sys/vm/max_map_count)");
    if (maps_readable())
        printf("mappings  %zu used by vmstack for %zu live stack%s; vm.max_map_count is %s\n",
               r->peak.mappings, r->peak.stacks_live, plural((long)r->peak.stacks_live), limit);
    else
        printf("mappings  unknown (cannot read /proc/self/maps); vm.max_map_count is %s\n", limit);

    bool ok = f.verified == f.run - f.killed && f.killed == f.deep && f.killed_deep == f.deep &&
              f.killed_not_overflow == 0 && f.failed == 0 && f.wrong == 0 &&
              t.verified == t.run - t.killed && t.killed == t.deep && t.killed_deep == t.deep &&
              t.failed == 0 && t.wrong == 0;
    /* Every kill is reported once, to the pipe, to the hook and in the stats. */
    long killed = f.killed + t.killed;
    bool counted = reports == killed && hooks == killed && r->end.overflows == (size_t)killed;
    if (ok && counted)
        printf("result    OK: every normal task verified, exactly the deep ones were killed\n");
    else if (ok)
        printf("result    FAILED: %ld killed, but %ld reports, %ld hook calls, %zu overflows "
               "counted\n", killed, reports, hooks, r->end.overflows);
    else
        printf("result    FAILED: %ld+%ld wrong, %ld+%ld killed of %ld+%ld deep, %ld+%ld not run\n",
               f.wrong, t.wrong, f.killed, t.killed, f.deep, t.deep, f.failed, t.failed);
    return ok && counted ? 0 : 1;
}

#endif

/* ---- direct mode: the same workload without guards ------------------------------------- */

#ifndef VMSTACK_VMAP
/* A direct run that has not ended after this long is stuck in damaged code. */
#define DIRECT_TIMEOUT_S 120

/* In a direct-backend build the workload runs in a child process: without guards an
 * overflow may crash it anywhere, and the parent still reads every finished job's
 * outcome from the shared job array and every report from the pipe. */
static int run_direct(struct run *r)
{
    if (reports_start()) {
        fprintf(stderr, "vmstack demo: error: pipe: %s\n", strerror(errno));
        return 1;
    }
    rep.no_sync = true;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "vmstack demo: error: fork: %s\n", strerror(errno));
        return 1;
    }
    if (pid == 0) {
        close(rep.rfd);
        /* Damaged stacks can also make code loop forever: SIGALRM ends such a run. */
        alarm(DIRECT_TIMEOUT_S);
        int e = run_workload(r, true);
        fflush(NULL);
        _exit(e == 2 ? 4 : e ? 3 : 0);
    }
    /* The reader sees end of file once the child (the last writer) is gone. */
    close(rep.wfd);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    pthread_join(rep.thread, NULL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 3) return 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 4) return 2;

    struct totals f, t;
    tally(r->jobs, r->o.fibers, &f);
    tally(r->jobs + r->o.fibers, r->o.threads, &t);
    print_header(r, "none (the direct backend, like CONFIG_VMAP_STACK=n)");
    long finished = 0;
    for (long i = 0; i < r->o.fibers; i++) finished += r->jobs[i].outcome != JOB_NOT_RUN;
    long crashed_in = -1;   /* the job being resumed when the child died */
    for (int k = 0; k < WORKERS; k++)
        if (r->resuming[k]) crashed_in = r->resuming[k] - 1;

    /* What each deep fiber did: how far past its end it went and whose stack is there
     * (direct.c carves stacks contiguously: the one below ends where this one begins). */
    size_t overrun = (size_t)r->deep_depth * r->per_level > r->stack_usable
                   ? (size_t)r->deep_depth * r->per_level - r->stack_usable : 0;
    char ov[32];
    human(ov, sizeof ov, (double)overrun);
    long shown = 0;
    for (long i = 0; i < r->o.fibers && shown < 3; i++) {
        const struct job *d = &r->jobs[i];
        if (!d->deep || !d->lo) continue;
        shown++;
        printf("deep      parser-%ld went %s past the end of its stack ", d->id, ov);
        if (d->outcome == JOB_NOT_RUN)
            printf("and never came back (the process died first)\n");
        else if (d->outcome == JOB_KILLED)
            printf("and was killed afterwards\n"
                   "          by the end check, at its next switch or exit\n");
        else
            printf("and returned a %s result:\n          no fault, no report\n",
                   !d->parse_bad && d->got == d->expect ? "right" : "WRONG");
        bool any = false;
        for (long v = 0; v < r->o.fibers; v++) {
            const struct job *n = &r->jobs[v];
            if (v == i || !n->lo || n->hi <= d->lo - overrun || n->lo >= d->lo) continue;
            any = true;
            printf("  victim  parser-%ld, whose stack lies below it: ", n->id);
            if (n->outcome == JOB_DONE && !n->parse_bad && n->got == n->expect)
                printf("finished right, %s\n", n->started > d->started
                       ? "as it started\n          after the damage and built its frames over it"
                       : "the damage missed\n          its live frames");
            else if (n->outcome == JOB_DONE)
                printf("finished with a WRONG result and no error\n");
            else if (n->outcome == JOB_KILLED)
                printf("killed by the end check, for damage it did not do\n");
            else if (n->id == crashed_in)
                printf("the process CRASHED when it was next resumed\n");
            else
                printf("never finished (the process died first)\n");
        }
        if (!any) printf("  victim  whatever lies below its block of stacks\n");
    }
    if (f.wrong + t.wrong)
        printf("others    %ld normal tasks finished with a WRONG result and no error\n", f.wrong + t.wrong);
    pthread_mutex_lock(&rep.mu);
    if (rep.end_checks) {
        /* The report line is long: break it before the stack's range. */
        const char *line = rep.first_end_check, *cut = strstr(line, ": stack [");
        int head = cut ? (int)(cut - line) + 1 : (int)strlen(line);
        printf("end check %ld report%s, each at a switch or exit after the damage was done:\n"
               "          %.*s\n", rep.end_checks, plural(rep.end_checks), head, line);
        if (cut) printf("          %s\n", cut + 2);
    }
    else
        printf("end check no report: the end-of-stack word was not checked or still looked intact\n");
    pthread_mutex_unlock(&rep.mu);
    if (WIFSIGNALED(status)) {
        printf("process   died of signal %d (%s) with %ld of %ld fibers finished,\n          ",
               WTERMSIG(status), strsignal(WTERMSIG(status)), finished, r->o.fibers);
        if (WTERMSIG(status) == SIGALRM)
            printf("after %d s: it hung\n", DIRECT_TIMEOUT_S);
        else if (crashed_in >= 0)
            printf("while resuming parser-%ld: far from the cause\n", crashed_in);
        else if (r->thread_phase)
            printf("while the vmstack threads ran\n");
        else
            printf("outside any fiber\n");
    } else {
        printf("process   exited normally (status %d) with %ld of %ld fibers finished\n",
               WIFEXITED(status) ? WEXITSTATUS(status) : -1, finished, r->o.fibers);
    }
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0 && f.wrong + t.wrong == 0 &&
              f.killed == f.deep && f.killed_deep == f.deep && t.killed == t.deep &&
              f.failed + t.failed == 0;
    printf("result    %s\n", ok ? "no damage this time (try another --seed)"
                                : "DAMAGED: with guards (`vmstack demo`) each deep task is stopped at\n"
                                  "          its first access to the guard and every other task verifies");
    return ok ? 0 : 1;
}
#endif

#ifdef VMSTACK_VMAP
/* In the vmapped build, --direct runs vmstack-direct (the same command built on the
 * direct backend, see tools/demo.cmake) from the folder of this executable. */
static int run_direct_binary(int argc, char **argv)
{
    fflush(stdout);   /* what the demo printed comes before any error below */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 32);
    if (n <= 0) {
        fprintf(stderr, "vmstack demo: error: --direct: cannot find this executable: %s\n", strerror(errno));
        return 2;
    }
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    strcpy(slash ? slash + 1 : self, "vmstack-direct");
    if (access(self, X_OK) != 0) {
        fprintf(stderr, "vmstack demo: error: --direct needs %s (the vmstack command built on the\n"
                "direct backend; the CMake build makes it next to vmstack)\n", self);
        return 2;
    }
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args) return 2;
    int k = 0;
    args[k++] = self;
    args[k++] = "demo";
    args[k++] = "--quiet";         /* the explanation was printed above */
    args[k++] = "--env-checked";   /* and the VMSTACK_* variables' warnings */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--direct") != 0 && strcmp(argv[i], "--quiet") != 0 &&
            strcmp(argv[i], "--env-checked") != 0)
            args[k++] = argv[i];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execv(self, args);
        fprintf(stderr, "vmstack demo: error: cannot run %s: %s\n", self, strerror(errno));
        _exit(127);   /* as a shell says "cannot run"; vmstack-direct exits 0-2 */
    }
    free(args);
    int status = 0;
    if (pid < 0) return 2;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127) return 2;
    /* It exits 1 when it showed damage, which is what it is for. */
    return WIFEXITED(status) && WEXITSTATUS(status) <= 1 ? 0 : 1;
}
#endif

int vms_cmd_demo(int argc, char **argv)
{
    struct run *r = mmap(NULL, sizeof *r, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) {
        fprintf(stderr, "vmstack demo: error: out of memory\n");
        return 1;
    }
    r->o = (struct demo_opts){ .fibers = 2000, .threads = 4, .depth = 48, .overflow = 3, .seed = 1 };
    int st = parse_args(argc, argv, &r->o);
    if (st >= 0) return st;
    /* The demo is of the kill: VMSTACK_ON_OVERFLOW=abort, exported for the user's own
     * programs, would end it at the first planned overflow with no summary. vms_config
     * cannot ask for the kill over the environment (0 is "the default"), so the
     * environment is changed, and the header says so. */
    const char *ov = getenv("VMSTACK_ON_OVERFLOW");
    if (ov && strcmp(ov, "kill") != 0) {
        snprintf(r->env_overflow, sizeof r->env_overflow, "%s", ov);
        setenv("VMSTACK_ON_OVERFLOW", "kill", 1);
    }
    /* What is wrong with the variables is said once for the run: here, and neither by
     * the processes that run the workload nor by vmstack-direct (--direct), which gets
     * --env-checked. */
    if (r->o.env_checked) {
        vms__options_env_said();
    } else {
        /* run_workload's vms_init gives the stack size (--stack-size, 0 when not). */
        vms_config given = { .stack_size = r->o.stack_size };
        vms__options_check_env(&given, NULL, NULL);
    }
    r->jobs = jobs_alloc(r->o.fibers + r->o.threads);
    if (!r->jobs) {
        fprintf(stderr, "vmstack demo: error: out of memory for %ld jobs\n", r->o.fibers);
        return 1;
    }
#ifdef VMSTACK_VMAP
    if (reports_start()) {
        fprintf(stderr, "vmstack demo: error: pipe: %s\n", strerror(errno));
        return 1;
    }
    st = run_workload(r, false);
    if (st) return st < 0 ? 1 : st;
    st = print_guarded(r);
    reports_stop();
    for (long i = 0; i < r->o.fibers + r->o.threads; i++) free(r->jobs[i].text);
    if (r->o.direct) {
        printf("\nThe same without guards (vmstack-direct):\n\n");
        int d = run_direct_binary(argc, argv);
        if (d == 2) return 2;
        if (st == 0) st = d;
    }
    return st;
#else
    return run_direct(r);
#endif
}
