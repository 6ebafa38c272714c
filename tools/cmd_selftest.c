/*
 * cmd_selftest.c - `vmstack selftest`: the kernel's LKDTM idea for user space. Each check
 * provokes one kind of stack accident in a child process of its own (so that a check
 * that is not caught cannot take the selftest down) and confirms that vmstack caught it
 * AND reported it: the child's report, read through a pipe given as report_fd, must have
 * the right first line, a call trace and the action line, and the child must go on
 * running after the offending task was killed. Every child calls vms_init itself; the
 * parent never initializes vmstack, so each child's configuration is its own.
 */
#include "tools.h"
#include "vmstack.h"
#include "internal.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

/* selftest_clash.c, compiled with -fstack-clash-protection where the compiler has it. */
int selftest_big_frame(size_t bytes);
int selftest_clash_protected(void);

/* A child that has not finished after this long is stuck (a deadlock in a handler, a
 * fault repeating forever): SIGALRM ends it and the check fails. */
#define CHILD_TIMEOUT_S 20

/* Exit codes of a check's child. */
enum { CHILD_KILLED = 0,     /* the task was killed and the child carried on */
       CHILD_NOT_CAUGHT = 1, /* the task finished: nothing stopped it */
       CHILD_SETUP = 2,      /* the check could not be set up (message on stderr) */
       CHILD_WRONG = 3 };    /* caught, but the resumer saw something else */

/* ---- the accidents (run in the child) -------------------------------------------------- */

static volatile unsigned long never = ~0ul;   /* keeps recursions formally bounded */
static volatile int sink;

/* Unbounded recursion with a modest frame, like a runaway parser. */
__attribute__((noinline)) static unsigned long recurse(unsigned long n)
{
    volatile char frame[128];
    frame[0] = (char)n;
    if (n == never) return n;
    return recurse(n + 1) + (unsigned long)frame[0];
}

/* Uses the stack down to `left` bytes above the end, then calls fn there. */
__attribute__((noinline)) static void descend_then(size_t left, void (*fn)(void))
{
    volatile char frame[256];
    frame[0] = 0;
    if (vms_stack_remaining() > left) descend_then(left, fn);
    else fn();
    sink = frame[0];
}

static char *my_base(void) { return vms_stack_base(vms_fiber_stack(vms_fiber_self())); }
static char *my_end(void)
{
    const vms_stack *st = vms_fiber_stack(vms_fiber_self());
    return (char *)vms_stack_base(st) + vms_stack_size(st);
}

static void write_below_base(void) { ((volatile char *)my_base())[-16] = 1; }

static void big_frame(void)
{
    /* A frame of the guard's size plus a page from less than a page above the guard:
     * without probes its far end would land below the guard, in whatever is there. */
    sink = selftest_big_frame(vms__opt.guard_size + vms__os_page_size());
}

static void fiber_recurse(void *arg) { (void)arg; sink = (int)recurse(0); }
static void fiber_leading(void *arg) { (void)arg; descend_then(1024, write_below_base); }
static void fiber_trailing(void *arg) { (void)arg; ((volatile char *)my_end())[16] = 1; }
static void fiber_clash(void *arg) { (void)arg; descend_then(2048, big_frame); }
static void fiber_end_magic(void *arg)
{
    (void)arg;
    /* The end magic is the lowest 16 bytes of the stack (VMS__END_MAGIC twice); a
     * linear overflow that stops short of the guard overwrites it first. */
    ((volatile uint64_t *)(void *)my_base())[0] = 0;
    vms_fiber_yield();   /* the switch checks the magic */
}
static void fiber_ok(void *arg) { *(int *)arg = 42; }

/* Runs fn in a fiber and expects it to be killed by an overflow of the given kind. */
static int expect_fiber_killed(void (*fn)(void *), size_t stack_size, int kind)
{
    vms_fiber_attr a = { .stack_size = stack_size, .name = "selftest" };
    vms_fiber *f = vms_fiber_create(fn, NULL, &a);
    if (!f) {
        fprintf(stderr, "vms_fiber_create: %s\n", strerror(errno));
        return CHILD_SETUP;
    }
    int st;
    do st = vms_fiber_resume(f); while (st == VMS_SUSPENDED);
    const vms_oops *o = vms_fiber_oops(f);
    int rc = st == VMS_KILLED ? (kind && (!o || o->kind != kind) ? CHILD_WRONG : CHILD_KILLED)
           : st == VMS_DONE ? CHILD_NOT_CAUGHT : CHILD_WRONG;
    vms_fiber_destroy(f);
    /* The rest of the process must still work: a fresh fiber runs to completion. */
    int v = 0;
    vms_fiber *g = vms_fiber_create(fiber_ok, &v, NULL);
    if (rc == CHILD_KILLED && (!g || vms_fiber_resume(g) != VMS_DONE || v != 42)) rc = CHILD_WRONG;
    vms_fiber_destroy(g);
    return rc;
}

static void *thread_recurse(void *arg) { (void)arg; sink = (int)recurse(0); return NULL; }

static int child_fiber_exhaust(void) { return expect_fiber_killed(fiber_recurse, 0, VMS_OVERFLOW); }
static int child_leading(void) { return expect_fiber_killed(fiber_leading, 64 * VMS_KIB, VMS_OVERFLOW); }
static int child_trailing(void) { return expect_fiber_killed(fiber_trailing, 64 * VMS_KIB, VMS_UNDERFLOW); }
static int child_clash(void) { return expect_fiber_killed(fiber_clash, 64 * VMS_KIB, VMS_OVERFLOW); }
static int child_end_magic(void) { return expect_fiber_killed(fiber_end_magic, 64 * VMS_KIB, 0); }

static int child_repeat(void)
{
    /* The handler leaves through a context switch, not a return: unless it restores the
     * signal mask, SIGSEGV stays blocked and the second overflow kills the process. */
    for (int i = 0; i < 3; i++) {
        int rc = expect_fiber_killed(fiber_recurse, 64 * VMS_KIB, VMS_OVERFLOW);
        if (rc != CHILD_KILLED) return rc;
    }
    return CHILD_KILLED;
}

static int child_thread_exhaust(void)
{
    pthread_t t;
    int e = vms_thread_create(&t, NULL, thread_recurse, NULL);
    if (e) {
        fprintf(stderr, "vms_thread_create: %s\n", strerror(e < 0 ? -e : e));
        return CHILD_SETUP;
    }
    void *res = NULL;
    pthread_join(t, &res);
    return res == VMS_THREAD_KILLED ? CHILD_KILLED : CHILD_NOT_CAUGHT;
}

/* ---- the checks ---------------------------------------------------------------------------- */

struct check {
    const char *what;
    int (*child)(void);
    const char *first;    /* the report's first line starts with this */
    const char *action;   /* a line starting with this says what was done */
    bool trace;           /* "Call Trace:" expected (faults; not the end-magic check) */
    int reports;          /* how many reports */
    bool end_check;       /* runs with VMS_END_CHECK */
    const char *(*skip)(void);  /* non-NULL: why this check cannot run here */
};

static const char *clash_skip(void)
{
    return selftest_clash_protected() ? NULL
         : "the compiler that built vmstack has no -fstack-clash-protection";
}

static const struct check checks[] = {
    { "exhaust a fiber stack (unbounded recursion)", child_fiber_exhaust,
      "vmstack: stack overflow in fiber", "vmstack: killed fiber", true, 1, false, NULL },
    { "exhaust a thread stack (vms_thread_create)", child_thread_exhaust,
      "vmstack: stack overflow in thread", "vmstack: killed thread", true, 1, false, NULL },
    { "touch the leading guard (write 16 bytes below the base)", child_leading,
      "vmstack: stack overflow in fiber", "vmstack: killed fiber", true, 1, false, NULL },
    { "touch the trailing guard (write a byte 16 bytes above the top)", child_trailing,
      "vmstack: stack underflow in fiber", "vmstack: killed fiber", true, 1, false, NULL },
    { "jump the guard with a frame of guard + 1 page (stack-clash probes)", child_clash,
      "vmstack: stack overflow in fiber", "vmstack: killed fiber", true, 1, false, clash_skip },
    { "corrupt the end magic (VMS_END_CHECK, found at the next switch)", child_end_magic,
      "vmstack: corrupted stack end detected in fiber", "vmstack: killed fiber", false, 1, true, NULL },
    { "overflow three times on one thread (signal mask restored)", child_repeat,
      "vmstack: stack overflow in fiber", "vmstack: killed fiber", true, 3, false, NULL },
};
#define NCHECKS (sizeof checks / sizeof checks[0])

struct st_opts {
    int method;           /* 0: vmstack's choice, VMS__GUARD_MADVISE, VMS__GUARD_MPROTECT */
    bool verbose;
};

/* Child side: configure vmstack for this check, then run it. Never returns. */
static _Noreturn void child_main(const struct st_opts *o, int fd, const struct check *c)
{
    alarm(CHILD_TIMEOUT_S);
    dup2(fd, 1);
    dup2(fd, 2);
    vms_config cfg = { .report_fd = fd };
    if (o->method == VMS__GUARD_MPROTECT) cfg.flags |= VMS_FORCE_MPROTECT;
    /* vms_config can force mprotect but not madvise: the environment can. */
    if (o->method == VMS__GUARD_MADVISE) setenv("VMSTACK_GUARD_METHOD", "madvise", 1);
    /* The checks are of the kill: VMSTACK_ON_OVERFLOW=abort in the environment would
     * fail every one of them (the header says it was overridden). vms_config cannot ask
     * for the kill over the environment (0 is "the default"). */
    setenv("VMSTACK_ON_OVERFLOW", "kill", 1);
    if (c && c->end_check) cfg.flags |= VMS_END_CHECK;
    int e = vms_init(&cfg);
    if (e) {
        fprintf(stderr, "vms_init: %s\n", strerror(-e));
        fflush(NULL);
        _exit(CHILD_SETUP);
    }
    if (!c) {
        /* The configuration child: what this process ended up with. */
        vms_stats s;
        stack_t ss;
        vms_get_stats(&s);
        memset(&ss, 0, sizeof ss);
        sigaltstack(NULL, &ss);
        printf("method %s\nguard %zu\nstack %zu\naltstack %zu\n", s.guard_method,
               vms__opt.guard_size, vms__opt.stack_size,
               (ss.ss_flags & SS_DISABLE) ? (size_t)0 : ss.ss_size);
        fflush(NULL);
        _exit(0);
    }
    int rc = c->child();
    fflush(NULL);
    _exit(rc);
}

/* Runs one child; returns its wait status and its output (reports and messages). */
static int run_child(const struct st_opts *o, const struct check *c, char *out, size_t cap)
{
    int p[2];
    if (pipe(p) != 0) return -1;
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) { close(p[0]); close(p[1]); return -1; }
    if (pid == 0) {
        close(p[0]);
        child_main(o, p[1], c);
    }
    close(p[1]);
    size_t n = 0;
    for (;;) {
        char buf[4096];
        ssize_t r = read(p[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        for (ssize_t i = 0; i < r && n + 1 < cap; i++) out[n++] = buf[i];
    }
    out[n] = '\0';
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    return status;
}

/* The line of text that starts with prefix, or NULL. */
static const char *find_line(const char *text, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *l = text; l && *l; ) {
        if (!strncmp(l, prefix, n)) return l;
        l = strchr(l, '\n');
        if (l) l++;
    }
    return NULL;
}

static int count_lines(const char *text, const char *prefix)
{
    int k = 0;
    size_t n = strlen(prefix);
    for (const char *l = text; l && *l; ) {
        if (!strncmp(l, prefix, n)) k++;
        l = strchr(l, '\n');
        if (l) l++;
    }
    return k;
}

/* Judges one check from the child's status and output; writes why into why. */
static bool judge(const struct check *c, int status, const char *out, char *why, size_t cap)
{
    const char *first = find_line(out, "vmstack: stack ");
    const char *end = find_line(out, "vmstack: corrupted stack end");
    if (!first || (end && end < first)) first = end;
    if (status < 0) { snprintf(why, cap, "could not start a child process"); return false; }
    if (WIFSIGNALED(status)) {
        snprintf(why, cap, "the child died of signal %d (%s)%s", WTERMSIG(status),
                 strsignal(WTERMSIG(status)),
                 WTERMSIG(status) == SIGALRM ? ": it hung" : first ? ": the kill did not contain it"
                                                               : ": not caught");
        return false;
    }
    int rc = WEXITSTATUS(status);
    if (rc == CHILD_SETUP) { snprintf(why, cap, "setup failed"); return false; }
    if (rc == CHILD_NOT_CAUGHT) { snprintf(why, cap, "not caught: the task finished normally"); return false; }
    if (rc != CHILD_KILLED) { snprintf(why, cap, "caught, but the resumer saw the wrong outcome (exit %d)", rc); return false; }
    if (!first) { snprintf(why, cap, "killed, but no report was written"); return false; }
    if (strncmp(first, c->first, strlen(c->first)) != 0) {
        const char *nl = strchr(first, '\n');
        snprintf(why, cap, "report starts \"%.*s\", wanted \"%s\"",
                 (int)(nl ? nl - first : (long)strlen(first)), first, c->first);
        return false;
    }
    if (c->trace && !find_line(first, "vmstack: Call Trace:")) {
        snprintf(why, cap, "the report has no \"Call Trace:\"");
        return false;
    }
    if (!find_line(first, c->action)) {
        snprintf(why, cap, "the report has no \"%s\" line", c->action);
        return false;
    }
    int nrep = count_lines(out, c->first);
    if (nrep != c->reports) {
        snprintf(why, cap, "%d reports, wanted %d", nrep, c->reports);
        return false;
    }
    snprintf(why, cap, "caught, reported%s, %s", c->trace ? " with a call trace" : "",
             c->action + strlen("vmstack: "));
    return true;
}

static void print_indented(const char *text)
{
    for (const char *l = text; *l; ) {
        const char *nl = strchr(l, '\n');
        int len = nl ? (int)(nl - l) : (int)strlen(l);
        printf("       | %.*s\n", len, l);
        l = nl ? nl + 1 : l + len;
    }
}

/* The bracketed choice of a sysfs multiple-choice file such as "always [madvise] never". */
static void sysfs_choice(const char *path, char *out, size_t cap)
{
    snprintf(out, cap, "unknown");
    FILE *f = fopen(path, "r");
    if (!f) return;
    char line[256];
    if (fgets(line, sizeof line, f)) {
        char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b) snprintf(out, cap, "%.*s", (int)(b - a - 1), a + 1);
    }
    fclose(f);
}

static long read_long(const char *path)
{
    FILE *f = fopen(path, "r");
    long v = -1;
    if (f) {
        if (fscanf(f, "%ld", &v) != 1) v = -1;
        fclose(f);
    }
    return v;
}

static void usage(FILE *f)
{
    fprintf(f,
        "usage: vmstack selftest [--guard-method madvise|mprotect] [--verbose]\n"
        "  In child processes, provoke each kind of stack accident and check that vmstack\n"
        "  catches and reports it on this system. Exits 1 if any check fails.\n"
        "  --guard-method M  madvise (MADV_GUARD_INSTALL, the default where the kernel has\n"
        "                    it) or mprotect (VMS_FORCE_MPROTECT)\n"
        "  --verbose         show each child's report\n");
}

int vms_cmd_selftest(int argc, char **argv)
{
    struct st_opts o = { 0 };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *m = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); return 0; }
        if (!strcmp(a, "--verbose") || !strcmp(a, "-v")) { o.verbose = true; continue; }
        if (!strcmp(a, "--guard-method")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vmstack selftest: error: --guard-method needs a value (madvise or mprotect)\n");
                return 2;
            }
            m = argv[++i];
        } else if (!strncmp(a, "--guard-method=", 15)) {
            m = a + 15;
        } else {
            fprintf(stderr, "vmstack selftest: error: unknown option `%s`\n", a);
            usage(stderr);
            return 2;
        }
        if (!strcmp(m, "madvise")) o.method = VMS__GUARD_MADVISE;
        else if (!strcmp(m, "mprotect")) o.method = VMS__GUARD_MPROTECT;
        else {
            fprintf(stderr, "vmstack selftest: error: --guard-method wants madvise or mprotect, not `%s`\n", m);
            return 2;
        }
    }

    /* The configuration, as a child process sees it. */
    static char out[65536];
    char method[32] = "?", thp[32];
    size_t guard = 0, stack = 0, alt = 0;
    int status = run_child(&o, NULL, out, sizeof out);
    /* Warnings (a malformed VMSTACK_* variable) come before the configuration lines;
     * the parent never initializes vmstack, so they are passed on from here, once. */
    const char *cfg = find_line(out, "method ");
    if (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || !cfg ||
        sscanf(cfg, "method %31s guard %zu stack %zu altstack %zu", method, &guard, &stack, &alt) != 4) {
        fprintf(stderr, "vmstack selftest: error: vmstack does not initialize here:\n%s", out);
        return 1;
    }
    fprintf(stderr, "%.*s", (int)(cfg - out), out);
    const char *env_method = getenv("VMSTACK_GUARD_METHOD");
    const char *env_overflow = getenv("VMSTACK_ON_OVERFLOW");
    struct utsname u;
    uname(&u);
    sysfs_choice("/sys/kernel/mm/transparent_hugepage/enabled", thp, sizeof thp);
    printf("vmstack selftest on Linux %s %s\n", u.release, u.machine);
    printf("  guard method      %s%s\n", method,
           !strcmp(method, "none")
               ? " (the direct backend, VMSTACK_VMAP=OFF: no guards, so the checks below fail)"
           : o.method == VMS__GUARD_MADVISE && strcmp(method, "madvise") != 0
               ? " (madvise was asked for: this kernel cannot install or verify madvise guards)"
               : o.method ? " (as asked)"
               : env_method ? " (VMSTACK_GUARD_METHOD in the environment)"
                            : " (vmstack's choice)");
    if (env_overflow && strcmp(env_overflow, "kill") != 0)
        printf("  on overflow       kill, for the checks (VMSTACK_ON_OVERFLOW=%s in the "
               "environment is not used here)\n", env_overflow);
    if (!strcmp(method, "none"))   /* the guard size is configured, but nothing is there */
        printf("  guard, stack      none below the stacks, %zu bytes default stack\n", stack);
    else
        printf("  guard, stack      %zu bytes below each stack, %zu bytes default stack\n",
               guard, stack);
    unsigned long minsig = getauxval(AT_MINSIGSTKSZ);
    long maxmap = read_long("/proc/sys/vm/max_map_count");
    char minsig_s[48], maxmap_s[32];
    if (minsig) snprintf(minsig_s, sizeof minsig_s, "%lu", minsig);
    else snprintf(minsig_s, sizeof minsig_s, "not given by this kernel");
    if (maxmap > 0) snprintf(maxmap_s, sizeof maxmap_s, "%ld", maxmap);
    else snprintf(maxmap_s, sizeof maxmap_s, "unknown");
    printf("  sigaltstack       %zu bytes (AT_MINSIGSTKSZ %s)\n", alt, minsig_s);
    printf("  transparent huge pages  %s, vm.max_map_count %s\n", thp, maxmap_s);

    int failed = 0, skipped = 0;
    for (size_t i = 0; i < NCHECKS; i++) {
        const struct check *c = &checks[i];
        char why[512];
        const char *skip = c->skip ? c->skip() : NULL;
        if (skip) {
            printf("skip %s: %s\n", c->what, skip);
            skipped++;
            continue;
        }
        status = run_child(&o, c, out, sizeof out);
        bool ok = judge(c, status, out, why, sizeof why);
        failed += !ok;
        printf("%-4s %s: %s\n", ok ? "ok" : "FAIL", c->what, why);
        if ((o.verbose || !ok) && *out) print_indented(out);
        fflush(stdout);
    }
    printf("%s: %zu of %zu checks passed", failed ? "FAILED" : "PASSED",
           NCHECKS - (size_t)(failed + skipped), NCHECKS);
    if (skipped) printf(", %d skipped", skipped);
    printf("\n");
    return failed ? 1 : 0;
}
