/*
 * guard.c - death tests of the fault handler without the task layer: overflows of a
 * vmstack stack entered with makecontext/swapcontext (on the main thread and on a plain
 * pthread), the main thread's own stack and a foreign thread's; faults that are not ours
 * (NULL, kill(), a queued signal naming a guard address) and chaining to every kind of
 * previous action; vms_handle_fault; wild guard accesses; underflows into the next
 * slot's guard and the trailing guard; report fds that are full, closed, have no
 * reader or are a regular file; a foreign thread named after its setup; the abort policy; the oops hook; a huge frame built with
 * -fstack-clash-protection. Each case crashes a child (tst_fork) and checks its wait
 * status and report.
 */
#include "island.h"
#include "test.h"

#include <alloca.h>
#include <pthread.h>
#include <stdatomic.h>
#include <setjmp.h>
#include <sys/auxv.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <ucontext.h>

static char out[1 << 20];

#if defined(__x86_64__)
#define FIRST_REGISTER "vmstack:  rax 0x"
#else
#define FIRST_REGISTER "vmstack:  x0 0x"
#endif

/* qemu-user (the aarch64 cross tests) adds its own line when the child dies of a
 * signal: the report's last line is the one before it. */
static void drop_emulator_lines(char *s)
{
    char *q = strstr(s, "qemu: uncaught target signal");
    if (q && (q == s || q[-1] == '\n')) *q = '\0';
}

/* The child died of its fault as it would have without vmstack. Under ASan, ASan's own
 * SIGSEGV handler was installed first: the fault reaching it (its report) is the proof
 * that vmstack passed it on. */
static void assert_passed_on(int st)
{
#ifdef __SANITIZE_ADDRESS__
    ASSERT_STR_CONTAINS(out, "AddressSanitizer");
    ASSERT(!WIFEXITED(st) || WEXITSTATUS(st) != 0);
#else
    ASSERT_SIGNALED(st, SIGSEGV);
#endif
}

/* ---- helpers ------------------------------------------------------------------------ */

static void init_with(int on_overflow, int report_fd)
{
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.on_overflow = on_overflow;
    cfg.report_fd = report_fd;
    int e = vms_init(&cfg);
    if (e) {
        fprintf(stderr, "vms_init: %d\n", e);
        _exit(3);
    }
}

static ucontext_t co_ctx, co_back;

/* Runs fn on st with the program's own tiny context switch (ucontext). */
static void run_on(vms_stack *st, void (*fn)(void))
{
    getcontext(&co_ctx);
    co_ctx.uc_stack.ss_sp = vms_stack_base(st);
    co_ctx.uc_stack.ss_size = vms_stack_size(st);
    co_ctx.uc_link = &co_back;
    makecontext(&co_ctx, fn, 0);
    swapcontext(&co_back, &co_ctx);
}

static volatile int sink, never;
/* Faulting addresses go through a volatile pointer: the compiler must not see them. */
static volatile int *volatile bad_ptr;

static void poke(uintptr_t addr)
{
    bad_ptr = (volatile int *)addr;
    *bad_ptr = 1;
}

NOIPA static int island_recurse_down(int n)
{
    volatile char buf[96];
    if (never) return 0;   /* keeps the compiler from calling it endless recursion */
    buf[0] = (char)n;
    sink += buf[0];
    return island_recurse_down(n + 1) + buf[3];
}

/* noipa and the use of the result: a real frame, not a tail call, so that the trace
 * shows it below the recursion. */
NOIPA static void overflow_fn(void)
{
    sink += island_recurse_down(0);
}

/* The lines of s must appear in this order. */
static void assert_in_order(const char *s, const char *const *want, int n)
{
    const char *at = s;
    for (int i = 0; i < n; i++) {
        const char *p = strstr(at, want[i]);
        if (!p) TST_FAIL("expected \"%s\" (after \"%s\") in:\n----\n%s\n----", want[i],
                         i ? want[i - 1] : "the start", s);
        at = p + strlen(want[i]);
    }
}

static void assert_last_line(char *s, const char *want)
{
    drop_emulator_lines(s);
    size_t n = strlen(s), w = strlen(want);
    if (n < w + 1 || strncmp(s + n - w - 1, want, w) != 0 || s[n - 1] != '\n' ||
        (n > w + 1 && s[n - w - 2] != '\n'))
        TST_FAIL("the last line should be \"%s\" in:\n----\n%s\n----", want, s);
}

/* ASan warns once, at a process's first swapcontext ("==PID==WARNING: ASan doesn't fully
 * support makecontext/swapcontext functions ..."), before the report these cases read:
 * that one line is taken out. Any other line of ASan's stays, and fails the case. */
static void drop_swapcontext_warning(char *s)
{
#ifdef TST_ASAN
    static const char w[] = "==WARNING: ASan doesn't fully support makecontext/swapcontext";
    for (char *p = s; (p = strstr(p, w));) {
        char *line = p;
        while (line > s && line[-1] != '\n') line--;
        char *next = strchr(p, '\n');
        next = next ? next + 1 : p + strlen(p);
        memmove(line, next, strlen(next) + 1);
        p = line;
    }
#else
    (void)s;
#endif
}

/* Runs a child; ISLAND_SHOW=1 in the environment prints what it wrote (debugging). */
static int run_child(void (*fn)(void *), void *arg)
{
    int st = tst_fork(fn, arg, out, sizeof out);
    drop_swapcontext_warning(out);
    if (getenv("ISLAND_SHOW")) fprintf(stderr, "---- child output:\n%s----\n", out);
    return st;
}

/* ---- overflow of a vmstack stack without a task -------------------------------------- */

static void overflow_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
}

static void check_overflow_report(char *s)
{
    const char *order[] = {
        "vmstack: stack overflow on thread ", "vmstack:  fault at 0x", " bytes below the stack\n",
        "vmstack:  stack [0x", ") size ", ", guard ", "vmstack:  pc 0x", " sp 0x", " tainted 0\n",
        FIRST_REGISTER, "vmstack: Call Trace:\n", "vmstack:  island_recurse_down+0x",
        " frames of island_recurse_down left out ...\n", "vmstack:  overflow_fn+0x",
        "vmstack: no vmstack fiber or thread runs on this stack",
    };
    assert_in_order(s, order, (int)(sizeof order / sizeof *order));
    ASSERT_EQ(strncmp(s, "vmstack: stack overflow", 23), 0);
    assert_last_line(s, "vmstack: aborting");
}

TEST(overflow_on_vmstack_stack)
{
    need_guards();
    int st = run_child(overflow_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    check_overflow_report(out);
}

static void *thread_overflow(void *arg)
{
    (void)arg;
    int e = vms__guard_thread_init();
    if (e) fprintf(stderr, "thread init: %d\n", e);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
    return NULL;
}

static void thread_overflow_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    pthread_t t;
    pthread_create(&t, NULL, thread_overflow, NULL);
    pthread_join(t, NULL);
}

TEST(overflow_on_plain_thread)
{
    need_guards();
    int st = run_child(thread_overflow_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    check_overflow_report(out);
}

static void abort_child(void *arg)
{
    (void)arg;
    init_with(VMS_ABORT, 0);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
}

TEST(abort_policy)
{
    need_guards();
    int st = run_child(abort_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow");
    ASSERT_STR_CONTAINS(out, "vmstack: Call Trace:");
    ASSERT_STR_NOT_CONTAINS(out, "nothing can be killed");
    assert_last_line(out, "vmstack: aborting");
}

/* ---- not ours ---------------------------------------------------------------------- */

static void null_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_stack *st = vms_stack_alloc(0);
    (void)st;
    poke(0x10);   /* a field of a NULL struct pointer (UBSan would stop a plain NULL first) */
}

TEST(null_dereference_is_not_ours)
{
    int st = run_child(null_child, NULL);
    assert_passed_on(st);
    /* Every line vmstack writes starts "vmstack:"; the plain word can be in a path that
     * ASan's own report of the fault prints (a checkout in a directory named vmstack). */
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

static void kill_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    kill(getpid(), SIGSEGV);
    sleep(5);
}

TEST(kill_sent_segv_is_passed_on)
{
    int st = run_child(kill_child, NULL);
    assert_passed_on(st);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

/* Queues sig with si_code code and si_addr addr to this thread, as the kernel would send
 * it; false (said in the output) when the kernel refuses. */
static bool queue_to_self(int sig, int code, void *addr)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = sig;
    si.si_code = code;
    si.si_addr = addr;
    if (syscall(SYS_rt_tgsigqueueinfo, getpid(), (pid_t)vms__sigsafe_gettid(), sig, &si) != 0) {
        printf("cannot queue: %s\n", strerror(errno));
        return false;
    }
    return true;
}

/* A program can queue a SIGSEGV naming any address; only si_code tells it from a real
 * fault, and a guard address must not make it ours. */
static void queued_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_stack *st = vms_stack_alloc(0);
    (void)queue_to_self(SIGSEGV, SI_QUEUE, (char *)vms_stack_base(st) - 64);
    sleep(5);
}

TEST(queued_segv_with_guard_address_is_passed_on)
{
    int st = run_child(queued_child, NULL);
    assert_passed_on(st);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

/* qemu-user (the aarch64 cross tests; it gives the guest no vDSO) takes a queued
 * SIGSEGV or SIGBUS with a positive si_code for a fault of its own translated code and
 * ends the process (exit 127) before the guest's handler sees it. */
#define NO_QEMU_QUEUED_FAULTS()                                                         \
    do {                                                                                \
        if (!getauxval(AT_SYSINFO_EHDR))                                                \
            SKIP("qemu-user ends the process at a queued signal with a positive si_code"); \
    } while (0)

/* The kernel's asynchronous SIGBUS (BUS_MCEERR_AO: a hardware memory error found in a
 * page of the process, sent early under PR_MCE_KILL_EARLY; not a fault of the
 * interrupted instruction, so it does not repeat on return) is passed on like a sent
 * signal: with the default action before vmstack, the process dies of it, and no
 * address it names (here one on the main stack, right below sp) is taken for an
 * overflow. rt_tgsigqueueinfo may give a positive si_code only to the caller's own
 * process, which the test is. */
static void mce_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    if (!queue_to_self(SIGBUS, BUS_MCEERR_AO, (char *)__builtin_frame_address(0) - 4096))
        return;
    printf("survived a memory-error SIGBUS\n");
}

/* The same for aarch64's asynchronous tag-check fault (MTE), SEGV_MTEAERR (8 in
 * asm-generic/siginfo.h, for every architecture): reported after the access, it does not
 * repeat on return either. */
static void mte_async_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    if (!queue_to_self(SIGSEGV, 8 /* SEGV_MTEAERR */, NULL)) return;
    printf("survived an asynchronous tag-check fault\n");
}

TEST(asynchronous_tag_check_fault_is_passed_on)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    NO_QEMU_QUEUED_FAULTS();
    int st = run_child(mte_async_child, NULL);
    if (strstr(out, "cannot queue")) SKIP("%s", out);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

TEST(memory_error_sigbus_is_passed_on)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    NO_TSAN("TSan's own SIGBUS handler would be the one it goes to");
    NO_QEMU_QUEUED_FAULTS();
    int st = run_child(mce_child, NULL);
    if (strstr(out, "cannot queue")) SKIP("%s", out);
    ASSERT_SIGNALED(st, SIGBUS);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

static void ign_kill_child(void *arg)
{
    (void)arg;
    signal(SIGSEGV, SIG_IGN);
    init_with(VMS_KILL_TASK, 0);
    kill(getpid(), SIGSEGV);
    printf("survived an ignored kill\n");
}

TEST(kill_sent_segv_ignored_stays_ignored)
{
    int st = run_child(ign_kill_child, NULL);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "survived an ignored kill");
}

/* SIG_IGN set through sa_sigaction with SA_SIGINFO (the field shares its storage with
 * sa_handler) is still SIG_IGN to the kernel: never a handler at address 1. */
static void ign_siginfo_child(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    /* Through void (*)(void), the cast GCC accepts as deliberate. */
    sa.sa_sigaction = (void (*)(int, siginfo_t *, void *))(void (*)(void))SIG_IGN;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGSEGV, &sa, NULL);
    init_with(VMS_KILL_TASK, 0);
    kill(getpid(), SIGSEGV);
    printf("survived an ignored kill\n");
}

TEST(kill_sent_segv_ignored_with_siginfo_flag_stays_ignored)
{
    int st = run_child(ign_siginfo_child, NULL);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "survived an ignored kill");
}

/* ---- SA_RESTART --------------------------------------------------------------------- */

/* A sent SIGSEGV that interrupts a blocking read on another thread: under the program's
 * own SA_RESTART handler the read goes on, as without vmstack; vmstack's handler, which
 * receives it first, did not restart it, so the read failed with EINTR. */
static _Atomic int restart_seen;   /* set by the handler on the reader thread */
static int restart_pipe[2];

static void restart_handler(int sig)
{
    (void)sig;
    restart_seen = 1;
}

static void *restart_reader(void *arg)
{
    (void)arg;
    char c;
    ssize_t n = read(restart_pipe[0], &c, 1);
    return (void *)(intptr_t)(n == 1 ? 1 : -errno);
}

/* Whether thread tid is blocked in read(2): its /proc syscall line starts with read's
 * number. */
static bool in_read(pid_t tid)
{
    char path[64], buf[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/syscall", (int)tid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return false;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return false;
    buf[n] = '\0';
    return strtol(buf, NULL, 10) == SYS_read;
}

static _Atomic pid_t restart_tid;
static void *restart_reader_tid(void *arg)
{
    restart_tid = (pid_t)vms__sigsafe_gettid();
    return restart_reader(arg);
}

static void restart_child(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = restart_handler;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    init_with(VMS_KILL_TASK, 0);
    if (pipe(restart_pipe) != 0) _exit(10);
    pthread_t t;
    pthread_create(&t, NULL, restart_reader_tid, NULL);
    while (!restart_tid || !in_read(restart_tid)) sched_yield();
    pthread_kill(t, SIGSEGV);
    while (!restart_seen) sched_yield();
    if (write(restart_pipe[1], "x", 1) != 1) _exit(11);
    void *r;
    pthread_join(t, &r);
    printf("read: %ld\n", (long)(intptr_t)r);
}

TEST(sent_segv_keeps_the_predecessors_sa_restart)
{
    /* Its /proc shows the system calls qemu makes on the host, not the guest's. */
    if (!getauxval(AT_SYSINFO_EHDR)) SKIP("qemu-user: /proc shows its own system calls");
    int st = run_child(restart_child, NULL);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "read: 1\n");
}

/* ---- chaining ------------------------------------------------------------------------ */

static sigjmp_buf chain_jmp;
static volatile int chain_calls;
static void *volatile chain_addr;

static void prev_sigaction(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)uc;
    chain_calls++;
    chain_addr = si->si_addr;
    siglongjmp(chain_jmp, 1);
}

static void prev_handler(int sig)
{
    (void)sig;
    chain_calls++;
    siglongjmp(chain_jmp, 1);
}

static void chain_child(void *arg)
{
    int with_info = arg != NULL;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    if (with_info) {
        sa.sa_sigaction = prev_sigaction;
        sa.sa_flags = SA_SIGINFO;
    } else {
        sa.sa_handler = prev_handler;
    }
    sigaction(SIGSEGV, &sa, NULL);
    init_with(VMS_KILL_TASK, 0);
    vms_stack *st = vms_stack_alloc(0);
    (void)st;
    if (sigsetjmp(chain_jmp, 1) == 0) poke(0x18);
    if (chain_calls != 1) {
        printf("previous handler called %d times\n", chain_calls);
        fflush(stdout);
        _exit(1);
    }
    if (with_info && chain_addr != (void *)(uintptr_t)0x18) {
        printf("si_addr %p\n", chain_addr);
        fflush(stdout);
        _exit(1);
    }
    printf("chained once\n");
    fflush(stdout);
    _exit(42);
}

TEST(chain_to_sa_sigaction)
{
    int st = run_child(chain_child, (void *)1);
    ASSERT_EXITED(st, 42);
    ASSERT_STR_CONTAINS(out, "chained once");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

TEST(chain_to_sa_handler)
{
    int st = run_child(chain_child, NULL);
    ASSERT_EXITED(st, 42);
    ASSERT_STR_CONTAINS(out, "chained once");
}

/* The predecessor runs with its sa_mask blocked, as the kernel would have run it. */
static volatile int chain_usr1_blocked = -1;

static void prev_masked(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    chain_usr1_blocked = sigismember(&cur, SIGUSR1);
    siglongjmp(chain_jmp, 1);
}

static void chain_mask_child(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = prev_masked;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, SIGUSR1);
    sigaction(SIGSEGV, &sa, NULL);
    init_with(VMS_KILL_TASK, 0);
    vms_stack_free(vms_stack_alloc(0));
    if (sigsetjmp(chain_jmp, 1) == 0) poke(0x18);
    printf("SIGUSR1 blocked in the predecessor: %d\n", chain_usr1_blocked);
    fflush(stdout);
    _exit(42);
}

TEST(chain_blocks_the_predecessors_sa_mask)
{
    int st = run_child(chain_mask_child, NULL);
    ASSERT_EXITED(st, 42);
    ASSERT_STR_CONTAINS(out, "SIGUSR1 blocked in the predecessor: 1\n");
}

/* A one-shot predecessor (SA_RESETHAND) gets the first fault that is not ours, as it
 * would without vmstack; vmstack's handler must stay: the overflow after it is still
 * reported. */
static void oneshot_child(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = prev_sigaction;
    sa.sa_flags = SA_SIGINFO | SA_RESETHAND;
    sigaction(SIGSEGV, &sa, NULL);
    init_with(VMS_KILL_TASK, 0);
    vms_stack *st = vms_stack_alloc(0);
    if (sigsetjmp(chain_jmp, 1) == 0) poke(0x18);
    printf("previous handler called %d times\n", chain_calls);
    fflush(stdout);
    run_on(st, overflow_fn);
}

TEST(chain_to_sa_resethand_keeps_catching_overflows)
{
    need_guards();
    int st = run_child(oneshot_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "previous handler called 1 times\n");
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow on thread ");
    assert_last_line(out, "vmstack: aborting");
}

/* An SA_NODEFER predecessor runs with its signal unblocked, as without vmstack: a
 * second fault inside it reaches it again instead of killing the process. */
static volatile int nodefer_depth;

static void nodefer_sigaction(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    if (++nodefer_depth == 1) poke(0x38);   /* faults again, inside the handler */
    siglongjmp(chain_jmp, 1);
}

static void nodefer_child(void *arg)
{
    (void)arg;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = nodefer_sigaction;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &sa, NULL);
    init_with(VMS_KILL_TASK, 0);
    vms_stack_free(vms_stack_alloc(0));
    if (sigsetjmp(chain_jmp, 1) == 0) poke(0x18);
    printf("nested fault handled, depth %d\n", nodefer_depth);
}

TEST(chain_to_sa_nodefer_leaves_the_signal_unblocked)
{
    int st = run_child(nodefer_child, NULL);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "nested fault handled, depth 2\n");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

static void ign_child(void *arg)
{
    (void)arg;
    signal(SIGSEGV, SIG_IGN);
    init_with(VMS_KILL_TASK, 0);
    poke(0x20);
}

TEST(chain_to_sig_ign_dies)
{
    int st = run_child(ign_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

/* ---- vms_handle_fault from the program's own handler --------------------------------- */

static void own_handler(int sig, siginfo_t *si, void *uc)
{
    if (vms_handle_fault(sig, si, uc)) {
        static const char msg[] = "own handler: vms_handle_fault returned non-zero\n";
        write(2, msg, sizeof msg - 1);
        _exit(8);
    }
    static const char msg[] = "own handler: not vmstack's\n";
    write(2, msg, sizeof msg - 1);
    _exit(7);
}

static void own_handler_child(void *arg)
{
    init_with(VMS_KILL_TASK, 0);
    vms_stack *st = vms_stack_alloc(0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = own_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;   /* vmstack gave this thread an alternate stack */
    sigaction(SIGSEGV, &sa, NULL);
    if (arg) run_on(st, overflow_fn);
    else poke(0x30);
}

/* What a program's handler may pass on without looking: no siginfo or context, another
 * signal, a signal sent by a program. Not vmstack's: 0, errno as it was. */
TEST(handle_fault_bad_arguments_return_zero)
{
    tst_asan_default_run_only();   /* the same with ASan's SIGSEGV handling off */
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    siginfo_t si;
    memset(&si, 0, sizeof si);
    si.si_signo = SIGSEGV;
    si.si_code = SEGV_MAPERR;
    si.si_addr = (void *)0x10;
    ASSERT_EQ(vms_handle_fault(SIGSEGV, &si, &uc), 0);   /* before vmstack is in use */
    vms_stack *st = vms_stack_alloc(0);           /* an arena, so guards exist */
    ASSERT_NOT_NULL(st);
    si.si_addr = (char *)vms_stack_base(st) - 1;  /* in its guard */
    errno = 1234;
    ASSERT_EQ(vms_handle_fault(SIGSEGV, NULL, NULL), 0);
    ASSERT_EQ(vms_handle_fault(SIGSEGV, NULL, &uc), 0);
    ASSERT_EQ(vms_handle_fault(SIGSEGV, &si, NULL), 0);
    ASSERT_EQ(vms_handle_fault(0, &si, &uc), 0);
    ASSERT_EQ(vms_handle_fault(SIGILL, &si, &uc), 0);
    si.si_code = SI_USER;
    ASSERT_EQ(vms_handle_fault(SIGSEGV, &si, &uc), 0);
    si.si_code = SI_QUEUE;
    ASSERT_EQ(vms_handle_fault(SIGBUS, &si, &uc), 0);
    ASSERT_EQ(errno, 1234);
    vms_stack_free(st);
}

TEST(handle_fault_not_ours_returns_zero)
{
    int st = run_child(own_handler_child, NULL);
    ASSERT_EXITED(st, 7);
    ASSERT_STR_CONTAINS(out, "own handler: not vmstack's");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

TEST(handle_fault_ours_does_not_return)
{
    need_guards();
    int st = run_child(own_handler_child, (void *)1);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow");
    ASSERT_STR_CONTAINS(out, "island_recurse_down");
    ASSERT_STR_NOT_CONTAINS(out, "own handler");
    assert_last_line(out, "vmstack: aborting");
}

/* ---- wild accesses and underflows ----------------------------------------------------- */

static vms_stack *victim;
static char *volatile target;

NOIPA static void touch_target(void)
{
    *target = 1;
}

static void wild_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_stack *a = vms_stack_alloc(0);
    /* A victim that is not a's upper neighbour: a write into the guard right above a's
     * top from a's stack would be a's underflow, not a wild access. */
    size_t guard = vms__opt.guard_size;
    for (int i = 0; i < 4; i++) {
        victim = vms_stack_alloc(0);
        if ((char *)vms_stack_base(a) + vms_stack_size(a) + guard != (char *)vms_stack_base(victim))
            break;
    }
    target = (char *)vms_stack_base(victim) - 100;   /* the victim's own guard */
    run_on(a, touch_target);
}

TEST(wild_guard_access_is_not_blamed)
{
    need_guards();
    int st = run_child(wild_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_EQ(strncmp(out, "vmstack: wild guard access on thread ", 37), 0);
    ASSERT_STR_CONTAINS(out, ", 100 bytes below the stack\n");
    ASSERT_STR_CONTAINS(out, "is not blamed");
    ASSERT_STR_CONTAINS(out, "vmstack:  touch_target+0x");
    ASSERT_STR_NOT_CONTAINS(out, "stack overflow");
    assert_last_line(out, "vmstack: aborting");
}

static void wild_from_main_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    victim = vms_stack_alloc(0);
    target = (char *)vms_stack_base(victim) - 1;
    touch_target();
}

TEST(wild_guard_access_from_main_stack)
{
    need_guards();
    int st = run_child(wild_from_main_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: wild guard access");
    ASSERT_STR_CONTAINS(out, ", 1 bytes below the stack\n");
    assert_last_line(out, "vmstack: aborting");
}

static void underflow_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_stack *a = vms_stack_alloc(0);
    target = (char *)vms_stack_base(a) + vms_stack_size(a) + 64;
    run_on(a, touch_target);
}

TEST(underflow_into_next_slot_guard)
{
    need_guards();
    int st = run_child(underflow_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_EQ(strncmp(out, "vmstack: stack underflow on thread ", 35), 0);
    ASSERT_STR_CONTAINS(out, ", 65 bytes above the stack\n");
    ASSERT_STR_CONTAINS(out, "vmstack:  touch_target+0x");
    assert_last_line(out, "vmstack: aborting");
}

static void trailer_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    struct vms__where w;
    /* 1 GiB stacks: an arena holds fewer than its size in GiB. */
    for (int n = 0; n <= 1 << (VMS__ARENA_MAX_SHIFT - 30); n++) {
        vms_stack *s = vms_stack_alloc(VMS_GIB);
        if (!s) break;
        vms__arena_where(vms_stack_top(s), &w);
        if (w.kind == VMS__WHERE_TRAILER) {
            target = (char *)vms_stack_base(s) + vms_stack_size(s) + 8;
            printf("last slot found\n");
            fflush(stdout);
            run_on(s, touch_target);
        }
    }
    printf("no trailing guard found\n");
}

TEST(underflow_into_trailing_guard)
{
    need_guards();
    int st = run_child(trailer_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "last slot found\nvmstack: stack underflow on thread ");
    ASSERT_STR_CONTAINS(out, ", 9 bytes above the stack\n");
    assert_last_line(out, "vmstack: aborting");
}

/* The oops of an underflow says so (vms_oops.kind), with the overrun of the report's
 * line. */
static void kind_hook(const vms_oops *o, void *ctx)
{
    (void)ctx;
    struct vms__line l;
    vms__line_reset(&l);
    vms__line_str(&l, "hook: kind ");
    vms__line_str(&l, o->kind == VMS_UNDERFLOW ? "underflow" : o->kind == VMS_OVERFLOW ? "overflow" : "?");
    vms__line_str(&l, " overrun ");
    vms__line_udec(&l, o->overrun);
    size_t n = vms__line_finish(&l);
    write(2, l.buf, n);
}

static void underflow_hook_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_set_oops_hook(kind_hook, NULL);
    vms_stack *a = vms_stack_alloc(0);
    target = (char *)vms_stack_base(a) + vms_stack_size(a) + 64;
    run_on(a, touch_target);
}

TEST(underflow_oops_kind_is_underflow)
{
    need_guards();
    int st = run_child(underflow_hook_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, ", 65 bytes above the stack\n");
    ASSERT_STR_CONTAINS(out, "hook: kind underflow overrun 65\n");
    assert_last_line(out, "vmstack: aborting");
}

/* An underflow with sp exactly at the stack's top, one past its highest byte (the sp of
 * an empty stack): that address is also the lowest byte of the guard above, but the
 * stack below it is the one that underflowed, and the report describes that one; the
 * stack above is not blamed. */
static uintptr_t volatile top_sp;

NOIPA static void write_above_top(void)
{
#if defined(__x86_64__)
    __asm__ volatile("mov %%rsp, %%rbx\n\t"
                     "mov %[sp], %%rsp\n\t"
                     "movb $1, 64(%%rsp)\n\t"
                     "mov %%rbx, %%rsp"
                     : : [sp] "r"(top_sp) : "rbx", "memory");
#elif defined(__aarch64__)
    __asm__ volatile("mov x9, sp\n\t"
                     "mov sp, %[sp]\n\t"
                     "mov w10, #1\n\t"
                     "strb w10, [sp, #64]\n\t"
                     "mov sp, x9"
                     : : [sp] "r"(top_sp) : "x9", "x10", "memory");
#endif
}

static vms_stack *top_stack;

static void underflow_at_top_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    top_stack = vms_stack_alloc(0);
    vms_stack *above = vms_stack_alloc(0);   /* the next slot, opened (if it is next) */
    (void)above;
    top_sp = (uintptr_t)vms_stack_base(top_stack) + vms_stack_size(top_stack);
    printf("stack [%p-%p)\n", vms_stack_base(top_stack), (void *)top_sp);
    fflush(stdout);
    run_on(top_stack, write_above_top);
}

TEST(underflow_with_sp_at_the_top_blames_the_stack_below)
{
    need_guards();
    int st = run_child(underflow_at_top_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    char want[128];
    void *lo, *hi;
    ASSERT_EQ(sscanf(out, "stack [%p-%p)", &lo, &hi), 2);
    snprintf(want, sizeof want, "vmstack:  stack [%p-%p) size ", lo, hi);
    ASSERT_STR_CONTAINS(out, "\nvmstack: stack underflow on thread ");
    ASSERT_STR_CONTAINS(out, ", 65 bytes above the stack\n");
    ASSERT_STR_CONTAINS(out, want);
    assert_last_line(out, "vmstack: aborting");
}

/* ---- report fds that do not take the report ------------------------------------------- */

static void full_pipe_child(void *arg)
{
    (void)arg;
    int p[2];
    if (pipe(p) != 0) _exit(3);
    int fl = fcntl(p[1], F_GETFL);
    fcntl(p[1], F_SETFL, fl | O_NONBLOCK);
    char junk[4096];
    memset(junk, 'j', sizeof junk);
    while (write(p[1], junk, sizeof junk) > 0) {}
    fcntl(p[1], F_SETFL, fl);   /* blocking, full, and nobody reads */
    init_with(VMS_KILL_TASK, p[1]);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
}

TEST(report_fd_full_pipe_does_not_hang)
{
    need_guards();
    int st = run_child(full_pipe_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

/* Closed after vms_init (which refuses a descriptor that is not open): the report is
 * lost, and the process still dies by the overflow's signal. */
static void closed_fd_child(void *arg)
{
    (void)arg;
    int fd = open("/dev/null", O_WRONLY);
    init_with(VMS_KILL_TASK, fd);
    close(fd);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
}

TEST(report_fd_closed)
{
    need_guards();
    int st = run_child(closed_fd_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
}

static void no_reader_child(void *arg)
{
    (void)arg;
    int p[2];
    if (pipe(p) != 0) _exit(3);
    close(p[0]);
    init_with(VMS_KILL_TASK, p[1]);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
}

TEST(report_fd_without_reader_no_sigpipe)
{
    need_guards();
    int st = run_child(no_reader_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);   /* not SIGPIPE */
}

/* ---- the oops hook ------------------------------------------------------------------- */

static vms_stack *hooked;

static void check_hook(const vms_oops *o, void *ctx)
{
    struct vms__line l;
    vms__line_reset(&l);
    vms__line_str(&l, "hook:");
    uintptr_t base = (uintptr_t)vms_stack_base(hooked);
    bool ok = ctx == (void *)&hooked && o->kind == VMS_OVERFLOW &&
              (uintptr_t)o->fault_addr < base && (uintptr_t)o->fault_addr + 4096 >= base &&
              o->stack_base == (void *)base && o->stack_size == vms_stack_size(hooked) &&
              o->overrun == base - (uintptr_t)o->fault_addr && o->depth > 100 &&
              o->trace[0] == o->pc && o->tid == vms__sigsafe_gettid() && o->name &&
              o->name[0] == '\0';
    vms__line_str(&l, ok ? " fields ok" : " fields WRONG");
    struct vms__sym s;
    if (vms__trace_symbolize((uintptr_t)o->trace[5] - 1, &s) == 2) {
        vms__line_str(&l, " trace[5] ");
        vms__line_str(&l, s.name);
    }
    size_t n = vms__line_finish(&l);
    write(2, l.buf, n);
}

static void hook_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_set_oops_hook(check_hook, &hooked);
    hooked = vms_stack_alloc(0);
    run_on(hooked, overflow_fn);
}

TEST(oops_hook_gets_filled_oops_before_action)
{
    need_guards();
    int st = run_child(hook_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    const char *order[] = { "vmstack: Call Trace:", "hook: fields ok trace[5] island_recurse_down\n",
                            "vmstack: aborting" };
    assert_in_order(out, order, 3);
}

/* fork while another thread sets the hook: the child must not inherit the hook's lock
 * held (its own vms_set_oops_hook would spin for good). A thread that does nothing but
 * set the hook holds that lock most of the time, so nearly every fork lands in it. */
static atomic_int hook_setter_stop;

static void quiet_hook(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
}

static void *hook_setter(void *arg)
{
    while (!atomic_load(&hook_setter_stop)) vms_set_oops_hook(quiet_hook, arg);
    return arg;
}

TEST(fork_while_another_thread_sets_the_oops_hook)
{
    tst_asan_default_run_only();   /* the same with ASan's SIGSEGV handling off */
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hook_setter, NULL), 0);
    int hung = 0;
    for (int i = 0; i < 10; i++) {
        pid_t pid = fork();
        ASSERT(pid >= 0);
        if (pid == 0) {
            alarm(60);   /* a hang guard, not a time limit: far above any run on a loaded VM */
            vms_set_oops_hook(NULL, NULL);
            _exit(0);
        }
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {}
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) hung++;
    }
    atomic_store(&hook_setter_stop, 1);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    vms_set_oops_hook(NULL, NULL);
    if (hung) TST_FAIL("%d children of 10 did not return from vms_set_oops_hook", hung);
}

/* ---- the main thread and foreign threads ----------------------------------------------- */

NOIPA static void main_overflow_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    sink += island_recurse_down(0);
}

TEST(main_thread_overflow)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    int st = run_child(main_overflow_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    const char *order[] = { "vmstack: stack overflow in main thread (tid ", "vmstack:  fault at 0x",
                            "vmstack: Call Trace:\n", "vmstack:  island_recurse_down+0x",
                            " frames of island_recurse_down left out ...\n",
                            "vmstack:  main_overflow_child+0x" };
    assert_in_order(out, order, 6);
    ASSERT_EQ(strncmp(out, "vmstack: stack overflow in main thread", 38), 0);
    assert_last_line(out, "vmstack: aborting");
}

NOIPA static void recursing_handler(int sig)
{
    (void)sig;
    sink += island_recurse_down(0);
}

static void handler_overflow_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    signal(SIGUSR1, recursing_handler);   /* runs on the main stack, not on the alt stack */
    raise(SIGUSR1);
}

TEST(main_thread_overflow_in_signal_handler)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    /* TSan installs every handler with all signals blocked: the fault kills the process. */
    NO_TSAN("the handler runs with SIGSEGV blocked, so the overflow kills the process unreported");
    int st = run_child(handler_overflow_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    const char *order[] = { "vmstack: stack overflow in main thread", "vmstack: Call Trace:\n",
                            "island_recurse_down", "recursing_handler+0x" };
    assert_in_order(out, order, 4);
    assert_last_line(out, "vmstack: aborting");
}

NOIPA static void *foreign_thread(void *arg)
{
    (void)arg;
    vms__guard_thread_init();
    sink += island_recurse_down(0);
    return NULL;
}

static void foreign_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    pthread_t t;
    pthread_create(&t, &attr, foreign_thread, NULL);
    pthread_setname_np(t, "foreigner");
    pthread_join(t, NULL);
}

TEST(foreign_thread_overflow)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    int st = run_child(foreign_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    const char *order[] = { "vmstack: stack overflow in thread \"", "\" (tid ", "), not a vmstack thread\n",
                            "vmstack: Call Trace:\n", "island_recurse_down", "foreign_thread+0x" };
    assert_in_order(out, order, 6);
    assert_last_line(out, "vmstack: aborting");
}

/* The name in the report is the thread's name when it overflowed (read by the handler,
 * not at thread init). */
NOIPA static void *renamed_thread(void *arg)
{
    (void)arg;
    vms__guard_thread_init();
    pthread_setname_np(pthread_self(), "renamed-late");
    sink += island_recurse_down(0);
    return NULL;
}

static void renamed_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    pthread_t t;
    pthread_create(&t, &attr, renamed_thread, NULL);
    pthread_join(t, NULL);
}

TEST(foreign_thread_named_at_the_fault)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    int st = run_child(renamed_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in thread \"renamed-late\" (tid ");
    assert_last_line(out, "vmstack: aborting");
}

/* A handler the program installed before vmstack gets the overflows of stacks that are
 * not vmstack's (the main thread's, a foreign thread's) as it would without vmstack:
 * no report (DESIGN.md, "Not ours"). A crash reporter, or a runtime that recovers from
 * its main stack's overflow, keeps working. */
static void program_overflow_handler(int sig, siginfo_t *si, void *uc)
{
    (void)si;
    (void)uc;
    static const char msg[] = "program handler: overflow\n";
    write(2, msg, sizeof msg - 1);
    _exit(sig == SIGSEGV ? 42 : 43);
}

static void install_program_handler(int extra_flags)
{
    /* The program's own alternate stack, as such a program has: vmstack keeps it. */
    static char alt[512 * 1024];
    stack_t ss = { .ss_sp = alt, .ss_size = sizeof alt, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) _exit(4);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = program_overflow_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | extra_flags;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
}

static void main_overflow_to_program_child(void *arg)
{
    (void)arg;
    install_program_handler(0);
    init_with(VMS_KILL_TASK, 0);
    vms_stack_free(vms_stack_alloc(0));   /* vmstack is in use */
    sink += island_recurse_down(0);
}

TEST(main_thread_overflow_goes_to_the_programs_earlier_handler)
{
    int st = run_child(main_overflow_to_program_child, NULL);
    ASSERT_EXITED(st, 42);
    ASSERT_STR_CONTAINS(out, "program handler: overflow\n");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
}

static void foreign_to_program_child(void *arg)
{
    (void)arg;
    install_program_handler(0);
    init_with(VMS_KILL_TASK, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 512 * 1024);
    pthread_t t;
    pthread_create(&t, &attr, foreign_thread, NULL);   /* runs on vmstack's alternate stack */
    pthread_join(t, NULL);
}

TEST(foreign_thread_overflow_goes_to_the_programs_earlier_handler)
{
    int st = run_child(foreign_to_program_child, NULL);
    ASSERT_EXITED(st, 42);
    ASSERT_STR_CONTAINS(out, "program handler: overflow\n");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
}

/* An SA_RESETHAND handler gets the first fault; the kernel would then have put SIG_DFL
 * in its place, so the repeated fault kills the process, and vmstack reports it. */
static void program_once_handler(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    static const char msg[] = "program handler: once\n";
    write(2, msg, sizeof msg - 1);
}

static void main_overflow_resethand_child(void *arg)
{
    (void)arg;
    install_program_handler(SA_RESETHAND);
    struct sigaction sa;
    sigaction(SIGSEGV, NULL, &sa);
    sa.sa_sigaction = program_once_handler;
    sigaction(SIGSEGV, &sa, NULL);
    init_with(VMS_KILL_TASK, 0);
    vms_stack_free(vms_stack_alloc(0));
    sink += island_recurse_down(0);
}

TEST(main_thread_overflow_after_a_spent_sa_resethand_handler_is_reported)
{
    int st = run_child(main_overflow_resethand_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    const char *order[] = { "program handler: once\n", "vmstack: stack overflow in main thread (tid ",
                            "vmstack: Call Trace:\n", "island_recurse_down" };
    assert_in_order(out, order, 4);
    assert_last_line(out, "vmstack: aborting");
}

/* vms_handle_fault in a handler installed after vmstack: the main thread's overflow is
 * not vmstack's, so 0, and the program handles it. */
static void main_overflow_own_handler_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_stack_free(vms_stack_alloc(0));
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = own_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;   /* vmstack gave this thread an alternate stack */
    sigaction(SIGSEGV, &sa, NULL);
    sink += island_recurse_down(0);
}

TEST(handle_fault_main_thread_overflow_returns_zero)
{
    int st = run_child(main_overflow_own_handler_child, NULL);
    ASSERT_EXITED(st, 7);
    ASSERT_STR_CONTAINS(out, "own handler: not vmstack's\n");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
}

/* A report to a regular file (written without poll and without blocking SIGPIPE) is the
 * same report. */
static int file_fd = -1;

static void file_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, file_fd);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
}

TEST(report_to_regular_file)
{
    need_guards();
    FILE *tmp = tmpfile();
    ASSERT_NOT_NULL(tmp);
    file_fd = fileno(tmp);
    int st = run_child(file_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT(strstr(out, "vmstack:") == NULL);   /* nothing on stderr */
    static char rep[1 << 16];
    ssize_t n = pread(file_fd, rep, sizeof rep - 1, 0);
    ASSERT_GT(n, 0);
    rep[n] = '\0';
    check_overflow_report(rep);
    fclose(tmp);
}

/* ---- a frame larger than the guard ------------------------------------------------------ */

static size_t guard_size;
static vms_stack *huge_stack, *below_stack;

NOIPA static void huge_frame(void)
{
    /* Built with -fstack-clash-protection (tests/island.cmake): the allocation is
     * probed page by page, so the first probe below the stack hits the guard instead
     * of jumping over it into the neighbour. */
    volatile char *p = alloca(guard_size + 4096);
    p[0] = 1;
    sink += p[0];
}

NOIPA static void huge_fn(void)
{
    /* Come close to the bottom first (leaving 2 KiB), so that the next frame, larger
     * than the guard, would end below it without probes; this allocation is probed too,
     * and stays inside the stack. */
    volatile char *pad = alloca(vms_stack_size(huge_stack) - 2 * 1024);
    pad[0] = 0;
    huge_frame();
    sink += pad[0];
}

static void check_neighbour(const vms_oops *o, void *ctx)
{
    (void)o;
    (void)ctx;
    const unsigned char *p = (const unsigned char *)vms_stack_base(below_stack);
    size_t n = vms_stack_size(below_stack);
    bool intact = true;
    for (size_t i = 0; i < n; i++) intact &= p[i] == 0xa5;
    const char *msg = intact ? "hook: neighbour intact\n" : "hook: neighbour CORRUPTED\n";
    write(2, msg, strlen(msg));
}

static void huge_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    guard_size = vms__opt.guard_size;
    /* Find two stacks where one sits right below the other's guard. */
    vms_stack *s[16];
    for (int i = 0; i < 16; i++) s[i] = vms_stack_alloc(0);
    for (int i = 0; i < 16 && !huge_stack; i++)
        for (int j = 0; j < 16; j++)
            if ((char *)vms_stack_base(s[j]) + vms_stack_size(s[j]) + guard_size ==
                (char *)vms_stack_base(s[i])) {
                huge_stack = s[i];
                below_stack = s[j];
                break;
            }
    if (!huge_stack) {
        printf("no neighbours\n");
        fflush(stdout);
        _exit(4);
    }
    memset(vms_stack_base(below_stack), 0xa5, vms_stack_size(below_stack));
    vms_set_oops_hook(check_neighbour, NULL);
    run_on(huge_stack, huge_fn);
}

TEST(huge_frame_caught_in_own_guard)
{
    need_guards();
    NO_ASAN_EVEN_WITHOUT_SEGV("huge_frame's first call of an ASan runtime function binds it lazily: "
                    "the probe faults in the loader's resolver, and the trace the case "
                    "reads has no huge_frame (passes with LD_BIND_NOW=1)");
    int st = run_child(huge_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    const char *order[] = { "vmstack: stack overflow on thread ", "vmstack: Call Trace:\n",
                            "vmstack:  huge_frame+0x", "hook: neighbour intact\n",
                            "vmstack: aborting\n" };
    assert_in_order(out, order, 5);
}

/* The same in a fiber on the first slot of an arena, with a guard of one page: the probed
 * frame leaves sp below the guard and so below the arena, where no stack is. It was
 * reported as a wild guard access and the process aborted; it is the fiber's overflow. */
NOIPA static void huge_fiber_fn(void *arg)
{
    (void)arg;
    volatile char *pad = alloca(vms_stack_remaining() - 2 * 1024);
    pad[0] = 0;
    huge_frame();
    sink += pad[0];
}

static void huge_fiber_child(void *arg)
{
    (void)arg;
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.guard_size = 4096;
    if (vms_init(&cfg) != 0) _exit(3);
    guard_size = vms__opt.guard_size;
    /* 32 KiB: a size class of its own in this process, so the stack is its arena's first. */
    vms_fiber_attr a = { .stack_size = 32 * 1024, .name = "huge" };
    vms_fiber *f = vms_fiber_create(huge_fiber_fn, NULL, &a);
    if (!f) _exit(4);
    const vms_stack *st = vms_fiber_stack(f);
    struct vms__where w;
    if (vms__arena_where((const char *)vms_stack_base(st) - 1, &w) != VMS__WHERE_GUARD || w.below) {
        printf("not the first slot\n");
        fflush(stdout);
        _exit(5);
    }
    int r = vms_fiber_resume(f);
    printf("resume %d\n", r);
    fflush(stdout);
    vms_fiber_destroy(f);
    _exit(r == VMS_KILLED ? 0 : 6);
}

TEST(huge_frame_in_a_fiber_below_an_arena)
{
    need_guards();
    NO_ASAN_EVEN_WITHOUT_SEGV("the first call of an ASan runtime function binds it lazily: "
                              "the loader's resolver overflows at the stack's end, where "
                              "vmstack rightly does not kill");
    int st = run_child(huge_fiber_child, NULL);
    ASSERT_EXITED(st, 0);
    const char *order[] = { "vmstack: stack overflow in fiber \"huge\"", "vmstack: Call Trace:\n",
                            "vmstack:  huge_frame+0x", "vmstack: killed fiber \"huge\"",
                            "resume 4\n" };
    assert_in_order(out, order, 5);
}

/* With a guard of one page, a frame that crosses the stack's base and writes its lowest
 * local first faults with sp inside the guard (its lowest page, the only one): the
 * fiber's overflow, killed alone. Fibers start at several depths, so that one of them
 * meets the guard that way rather than by a push with sp still in the stack; the hook
 * says where sp was. */

static size_t page_guard;

NOIPA static int page_guard_dig(int n)
{
    volatile char buf[1024];
    buf[0] = (char)n;
    if (never) return 0;
    return page_guard_dig(n + 1) + buf[0];
}

static void page_guard_fn(void *arg)
{
    volatile char *pad = alloca((size_t)(uintptr_t)arg);
    pad[0] = 0;
    sink += page_guard_dig(0) + pad[0];
}

static void page_guard_hook(const vms_oops *o, void *ctx)
{
    (void)ctx;
    uintptr_t sp = (uintptr_t)o->sp, base = (uintptr_t)o->stack_base;
    const char *msg = sp < base && sp + page_guard >= base ? "hook: sp in the guard\n"
                                                      : "hook: sp elsewhere\n";
    write(2, msg, strlen(msg));
}

static void page_guard_child(void *arg)
{
    (void)arg;
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.guard_size = (size_t)sysconf(_SC_PAGESIZE);
    if (vms_init(&cfg) != 0) _exit(3);
    page_guard = vms__opt.guard_size;
    if (page_guard != cfg.guard_size) _exit(4);
    vms_set_oops_hook(page_guard_hook, NULL);
    for (size_t pad = 16; pad <= 1024; pad += 112) {
        vms_fiber *f = vms_fiber_create(page_guard_fn, (void *)(uintptr_t)pad, NULL);
        if (!f) _exit(5);
        int r = vms_fiber_resume(f);
        printf("pad %zu: %s\n", pad, r == VMS_KILLED ? "killed" : "not killed");
        fflush(stdout);
        vms_fiber_destroy(f);
    }
}

TEST(overflow_with_sp_in_a_one_page_guard_kills_the_fiber)
{
    need_guards();
    int st = run_child(page_guard_child, NULL);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "hook: sp in the guard\n");
    ASSERT_STR_NOT_CONTAINS(out, "not killed");
    ASSERT_STR_NOT_CONTAINS(out, "aborting");
    ASSERT_STR_NOT_CONTAINS(out, "wild guard access");
}

/* ---- a failing sigaltstack -------------------------------------------------------------- */

static void *altstack_fails_thread(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_SIGALTSTACK, 1, ENOMEM, true);
    int e = vms__guard_thread_init();
    int e2 = vms__guard_thread_init();        /* asked again: said once per thread */
    vms__os_inject_clear();
    int again = vms__guard_thread_init();
    printf("first %d, %d then %d\n", e, e2, again);
    fflush(stdout);
    return NULL;
}

static void altstack_fails_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    pthread_t t;
    pthread_create(&t, NULL, altstack_fails_thread, NULL);
    pthread_join(t, NULL);
}

TEST(sigaltstack_failure_is_a_clear_error)
{
    int st = run_child(altstack_fails_child, NULL);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: error: sigaltstack failed for thread ");
    ASSERT_STR_CONTAINS(out, "a stack overflow on a thread without one cannot be reported");
    ASSERT_EQ(tst_count(out, "sigaltstack failed"), 1);
    char want[64];
    snprintf(want, sizeof want, "first %d, %d then 0\n", -ENOMEM, -ENOMEM);
    ASSERT_STR_CONTAINS(out, want);
}

/* Each distinct cause is said once for the process: a thread refused for a reason
 * already said says nothing, one refused for another reason says it. It was once for
 * everything: after a first thread's ENOMEM, a later thread's EINVAL said nothing. */
static void *altstack_fails_with(void *arg)
{
    vms__os_inject(VMS__OP_SIGALTSTACK, 1, (int)(intptr_t)arg, true);
    int e = vms__guard_thread_init();
    int e2 = vms__guard_thread_init();       /* asked again by the same thread */
    vms__os_inject_clear();
    printf("thread %d %d\n", e, e2);
    fflush(stdout);
    return NULL;
}

static void altstack_causes_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    static const int errs[] = { ENOMEM, ENOMEM, EINVAL, ENOMEM, EINVAL };
    for (int i = 0; i < 5; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, altstack_fails_with, (void *)(intptr_t)errs[i]) != 0)
            _exit(10);
        pthread_join(t, NULL);
    }
}

TEST(sigaltstack_failure_said_once_per_cause)
{
    NEED_FAULT_INJECTION();
    int st = run_child(altstack_causes_child, NULL);
    ASSERT_EXITED(st, 0);
    char want[96];
    snprintf(want, sizeof want, "thread %d %d\n", -ENOMEM, -ENOMEM);
    ASSERT_EQ(tst_count(out, want), 3);
    snprintf(want, sizeof want, "thread %d %d\n", -EINVAL, -EINVAL);
    ASSERT_EQ(tst_count(out, want), 2);
    ASSERT_EQ(tst_count(out, "vmstack: error: sigaltstack failed for thread "), 2);
    snprintf(want, sizeof want, " (%s): a stack overflow on a thread", strerror(ENOMEM));
    ASSERT_EQ(tst_count(out, want), 1);
    snprintf(want, sizeof want, " (%s): a stack overflow on a thread", strerror(EINVAL));
    ASSERT_EQ(tst_count(out, want), 1);
}

/* The first vms_stack_alloc of a thread also gives it its alternate signal stack. When
 * that fails (no memory at that moment: the error line says overflows on the thread
 * cannot be reported), a later vms_stack_alloc that succeeds must try again: this
 * thread runs its own coroutines on raw stacks, and their overflows are to be reported.
 * It used to mark the thread ready at the first try, so the thread never got one and
 * such an overflow killed the process unreported. */
static void first_alloc_fails_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_MMAP, 1, ENOMEM, true);
    init_with(VMS_KILL_TASK, 0);             /* its alternate stack fails here */
    errno = 0;
    vms_stack *st = vms_stack_alloc(0);
    int e = errno;
    vms__os_inject_clear();
    printf("first: %s\n", st ? "a stack" : strerror(e));
    fflush(stdout);
    if (!st) st = vms_stack_alloc(0);
    if (!st) exit(10);
    run_on(st, overflow_fn);
    printf("survived\n");
}

TEST(first_allocation_failure_leaves_later_overflows_reported)
{
    NEED_FAULT_INJECTION();
    need_guards();
    NO_ASAN_BECAUSE("ASan gives every thread its own alternate signal stack, not vmstack's, "
                    "so none fails to be allocated");
    int st = run_child(first_alloc_fails_child, NULL);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: error: no alternate signal stack for thread ");
    ASSERT_STR_CONTAINS(out, "first: Cannot allocate memory\n");
    ASSERT_STR_CONTAINS(out, "vmstack: stack overflow");
    ASSERT_STR_CONTAINS(out, "vmstack: aborting");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
}

/* ---- a failing sigaction ------------------------------------------------------------------- */

/* The handler is installed for both signals or for neither: when sigaction fails (the
 * first call, SIGSEGV's, or the second, SIGBUS's), the warning says overflows will not
 * be reported, both actions are the ones from before, vmstack does not count itself
 * installed, and an overflow dies by SIGSEGV unreported, as the warning said. */
static void install_fails_child(void *arg)
{
    unsigned nth = (unsigned)(uintptr_t)arg;
    struct sigaction segv0, bus0, segv, bus;
    sigaction(SIGSEGV, NULL, &segv0);
    sigaction(SIGBUS, NULL, &bus0);
    vms__os_inject(VMS__OP_SIGACTION, nth, EINVAL, false);
    init_with(VMS_KILL_TASK, 0);
    vms__os_inject_clear();
    sigaction(SIGSEGV, NULL, &segv);
    sigaction(SIGBUS, NULL, &bus);
    printf("installed %d, SIGSEGV %s, SIGBUS %s\n", vms__guard_installed(),
           segv.sa_handler == segv0.sa_handler ? "as before" : "changed",
           bus.sa_handler == bus0.sa_handler ? "as before" : "changed");
    fflush(stdout);
    vms_stack *st = vms_stack_alloc(0);
    run_on(st, overflow_fn);
    printf("survived\n");
}

static void install_fails(unsigned nth)
{
    NEED_FAULT_INJECTION();
    need_guards();
    NO_ASAN_BECAUSE("vmstack's handler is not installed here: ASan's own takes the "
                    "overflow, reports it and exits 1");
    int st = run_child(install_fails_child, (void *)(uintptr_t)nth);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "vmstack: warning: the stack-overflow handler could not be "
                             "installed (Invalid argument): overflows will not be reported");
    ASSERT_STR_CONTAINS(out, "installed 0, SIGSEGV as before, SIGBUS as before\n");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: stack overflow");
    ASSERT_STR_NOT_CONTAINS(out, "survived");
}

TEST(sigaction_failure_for_sigsegv_installs_nothing)
{
    install_fails(1);
}

TEST(sigaction_failure_for_sigbus_installs_nothing)
{
    install_fails(2);
}

/* ---- a child forked after vmstack started ------------------------------------------------ */

static void forked_main_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    vms_stack *st = vms_stack_alloc(0);   /* vmstack is in use before the fork */
    (void)st;
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        sink += island_recurse_down(0);
        _exit(0);
    }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
    printf("grandchild %s %d\n", WIFSIGNALED(status) ? "signal" : "exit",
           WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
}

TEST(main_thread_overflow_in_forked_child)
{
    NO_ASAN_BECAUSE("ASan's own handler, installed before vmstack's, takes the fault "
                    "vmstack passes on, reports it and exits 1");
    int st = run_child(forked_main_child, NULL);
    ASSERT_EXITED(st, 0);
    const char *order[] = { "vmstack: stack overflow in main thread (tid ", "vmstack: Call Trace:\n",
                            "island_recurse_down", "vmstack: aborting\n", "grandchild signal 11\n" };
    assert_in_order(out, order, 5);
}

/* ---- a thread that brings its own alternate stack ------------------------------------------ */

static void *own_altstack_thread(void *arg)
{
    (void)arg;
    static char small[16 * 1024];
    stack_t ss = { .ss_sp = small, .ss_size = sizeof small, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) return (void *)1;
    int e = vms__guard_thread_init();
    stack_t now;
    sigaltstack(NULL, &now);
    printf("init %d, kept %s\n", e, now.ss_sp == small ? "yes" : "no");
    fflush(stdout);
    return NULL;
}

static void own_altstack_child(void *arg)
{
    (void)arg;
    init_with(VMS_KILL_TASK, 0);
    pthread_t t;
    pthread_create(&t, NULL, own_altstack_thread, NULL);
    pthread_join(t, NULL);
}

TEST(own_small_altstack_is_kept_with_a_warning)
{
    /* ASan owns every thread's alternate stack and unmaps it at thread exit: replacing
     * it breaks ASan, and vmstack does not warn about ASan's. */
    NO_ASAN_BECAUSE("ASan owns every thread's alternate stack and unmaps it at thread exit: "
                    "replacing it breaks ASan (its CHECK fails)");
    NO_ASAN_EVEN_WITHOUT_SEGV("vmstack does not warn about a thread's own alternate stack "
                              "in a sanitizer build (src/guard.c): kept, no warning");
    NO_TSAN("vmstack does not warn about alternate stacks under the sanitizers");
    int st = run_child(own_altstack_child, NULL);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "init 0, kept yes\n");
    ASSERT_STR_CONTAINS(out, "vmstack: warning: a thread's own alternate signal stack (16384 bytes) "
                             "is smaller than vmstack's reporter needs");
}
