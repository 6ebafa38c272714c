/*
 * own_handler.c - vmstack example: a program with its own SIGSEGV handler, and an oops
 * hook.
 *
 * vmstack installs a SIGSEGV handler when it is first used. A program that installs
 * its own afterwards replaces it, and must pass every fault to vms_handle_fault first:
 * that call does not return when the fault hit a vmstack guard (the task is killed),
 * and returns 0 when it did not, so the program handles the fault itself.
 *
 * This program
 *   1. sets an oops hook (vms_set_oops_hook): vmstack calls it during every report;
 *   2. installs its own SIGSEGV handler, which chains to vms_handle_fault;
 *   3. runs a fiber that overflows its stack: the handler hands the fault to vmstack,
 *      which reports it, calls the hook and kills the fiber; main() goes on;
 *   4. in a child process, dereferences a NULL pointer: not vmstack's fault, so
 *      vms_handle_fault returns 0 and the handler does what the program wants (here:
 *      a message and exit status 3).
 *
 * Build:  cc -O2 -o own_handler own_handler.c $(pkg-config --cflags --libs vmstack)
 * Exit:   0 when both faults went where they should. Needs the default, guarded
 *         vmstack (not one built with -DVMSTACK_VMAP=OFF).
 */
#if !defined(_GNU_SOURCE) && !defined(_XOPEN_SOURCE)
#define _XOPEN_SOURCE 700       /* siginfo_t, SA_ONSTACK, fork: also with -std=c11 */
#endif
#include <vmstack.h>

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- the oops hook ------------------------------------------------------------------ */

/* What the hook saw. It runs inside a signal handler, so it only stores to memory and
 * calls write(2): no printf, no malloc, no locks. */
struct hook_log {
    atomic_int calls;
    size_t overrun;
};

/* Appends the string s to p; returns the new end. Async-signal-safe: strlen and memcpy
 * are (POSIX.1-2008 TC2), as is write. */
static char *put_str(char *p, const char *s)
{
    size_t n = strlen(s);
    memcpy(p, s, n);
    return p + n;
}

/* Appends the decimal digits of v to p; returns the new end. Async-signal-safe. */
static char *put_number(char *p, size_t v)
{
    char digits[24];
    int n = 0;
    do digits[n++] = (char)('0' + v % 10); while ((v /= 10) != 0);
    while (n > 0) *p++ = digits[--n];
    return p;
}

/* Called by vmstack with the filled vms_oops, on the faulting thread's alternate signal
 * stack, after the Call Trace and before the report's last line. */
static void on_oops(const vms_oops *oops, void *ctx)
{
    struct hook_log *seen = ctx;
    seen->overrun = oops->overrun;
    atomic_fetch_add(&seen->calls, 1);

    /* One line, one write: "own_handler: hook: NAME overran its stack by N bytes". */
    char line[160], *p = line;       /* names are at most 47 bytes: it fits */
    p = put_str(p, "own_handler: hook: ");
    p = put_str(p, oops->name);
    p = put_str(p, " overran its stack by ");
    p = put_number(p, oops->overrun);
    p = put_str(p, " bytes\n");
    ssize_t unused = write(STDERR_FILENO, line, (size_t)(p - line));
    (void)unused;
}

/* ---- the program's own SIGSEGV handler --------------------------------------------- */

static volatile sig_atomic_t handler_calls;

static void on_segv(int sig, siginfo_t *info, void *uc)
{
    handler_calls++;
    /* vmstack first: does not return when the fault hit one of its guards. */
    if (vms_handle_fault(sig, info, uc) == 0) {
        /* Not a vmstack guard: the program's own handling. */
        static const char msg[] = "own_handler: my handler: a SIGSEGV that is not a stack "
                                  "overflow; exiting with status 3\n";
        ssize_t unused = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)unused;
        _exit(3);
    }
}

/* ---- the two faults ----------------------------------------------------------------- */

/* A recursion without end, one real frame per level (the volatile array), and not a
 * loop (the array is read after the call). */
static volatile int never;
static __attribute__((noinline)) unsigned long recurse(unsigned long n)
{
    volatile unsigned long frame[8];
    frame[0] = n;
    if (never) return 0;
    return recurse(n + 1) + frame[0];
}

static void overflowing_fiber(void *arg)
{
    *(volatile unsigned long *)arg = recurse(0);   /* never stored: the fiber dies */
}

static int *volatile null_pointer;   /* volatile: the compiler must not see the NULL */

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* in order with the report on stderr */

    /* Any first call initializes vmstack, which installs its handler then. vms_init is
     * that call here (with the defaults: report on stderr, kill the task). */
    int e = vms_init(&(vms_config){ 0 });
    if (e != 0) {
        fprintf(stderr, "own_handler: vms_init: %s\n", strerror(-e));
        return 1;
    }
    vms_stats stats;
    if (vms_get_stats(&stats) != 0 || strcmp(stats.guard_method, "none") == 0) {
        fprintf(stderr, "own_handler: this vmstack has no guard pages (direct backend)\n");
        return 1;
    }

    /* 1. The hook and its context: ctx must stay valid until the hook is replaced. */
    static struct hook_log seen;
    vms_set_oops_hook(on_oops, &seen);

    /* 2. Our handler, after vmstack's, replaces it. SA_ONSTACK is required: a thread
     * whose stack overflowed has no stack left to run a handler on. vmstack gave this
     * thread an alternate signal stack when it initialized (and gives one to every
     * thread that runs a fiber); see docs/oops.md for its size. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0) {
        perror("own_handler: sigaction");
        return 1;
    }

    /* 3. A fiber that overflows. */
    unsigned long result = 0;
    vms_fiber_attr attr = { .stack_size = 64 * 1024, .name = "recurse" };
    vms_fiber *f = vms_fiber_create(overflowing_fiber, &result, &attr);
    if (!f) {
        perror("own_handler: vms_fiber_create");
        return 1;
    }
    int state = vms_fiber_resume(f);
    const vms_oops *oops = vms_fiber_oops(f);
    int ok = state == VMS_KILLED && oops && handler_calls == 1 &&
             atomic_load(&seen.calls) == 1 && seen.overrun == oops->overrun;
    printf("overflow: fiber state %s, my handler called %d time(s), hook called %d time(s)\n",
           state == VMS_KILLED ? "VMS_KILLED" : "not killed", (int)handler_calls,
           atomic_load(&seen.calls));
    vms_fiber_destroy(f);

    /* The hook can be removed again. When vms_set_oops_hook returns, the old hook runs
     * nowhere, so its ctx could be freed now. */
    vms_set_oops_hook(NULL, NULL);

    /* 4. A fault that is not vmstack's, in a child: our handler ends that process. */
    pid_t pid = fork();
    if (pid < 0) {
        perror("own_handler: fork");
        return 1;
    }
    if (pid == 0) {
        *null_pointer = 1;
        _exit(0);                     /* not reached */
    }
    int status;
    if (waitpid(pid, &status, 0) != pid) {
        perror("own_handler: waitpid");
        return 1;
    }
    int child_ok = WIFEXITED(status) && WEXITSTATUS(status) == 3;
    printf("NULL dereference in a child: %s\n",
           child_ok ? "my handler got it and exited with status 3"
                    : "UNEXPECTED wait status");
    ok = ok && child_ok;

    printf("%s\n", ok ? "own_handler: OK" : "own_handler: FAILED");
    return ok ? 0 : 1;
}
