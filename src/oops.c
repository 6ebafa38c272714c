/*
 * oops.c - the oops report: kernel-style lines describing a stack overflow, written to
 * vms__opt.report_fd with one write(2) per line (format documented in docs/oops.md).
 *
 * Part of the async-signal-safe island (layer 4): runs in the fault handler on the
 * alternate signal stack. Owns the report lock (one reporting thread at a time, so the
 * lines of concurrent oopses never interleave), the taint counter, the oops hook, and
 * the unsafe-kill decision. Invariants: the report lock is always released before the
 * caller acts (kill or die), and every wait here is bounded: the lock by a timeout and a
 * check that its owner still exists, each line's write by poll(2) with a timeout.
 */
#include "island.h"

#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A line that cannot be written within this time ends the report: a reader that does
 * not read (a full pipe) must not hold the faulting thread and, through the report lock,
 * every other faulting thread. */
#define WRITE_TIMEOUT_MS 500
/* How long a thread waits for another thread's report to finish before writing its own
 * anyway (with a call trace by frame pointers only: see vms__oops_report). A report
 * takes milliseconds; only a reporter stuck far beyond its own write timeouts can hold
 * the lock this long. */
#define LOCK_WAIT_MS 20000
/* Frames kept from the innermost end of the walk, and from the far end. */
#define HEAD_FRAMES 64
#define AFTER_FRAMES 24
#define TAIL_FRAMES 16
/* A walk stops after this many frames (about 1.5 s of libunwind here, much less with
 * frame pointers): a 128 MiB stack of 32-byte frames. A longer walk would keep the
 * faulting thread in the handler too long; a walk stopped early leaves the frames below
 * unseen, so the task is not killed alone (an unseen frame could hold a lock). */
#define MAX_WALK_FRAMES 4000000

static atomic_size_t taint_count;
static atomic_long report_owner;      /* kernel tid of the reporting thread, 0 = free */
static atomic_ulong report_takes;     /* times report_lock took it (a waiter's clock) */

/* The hook and its argument, read by reports as one pair without a lock: a hook is
 * never called with another hook's ctx, and once vms_set_oops_hook has returned the
 * hook it replaced is running nowhere (its ctx may be freed), save in a call on the
 * setting thread itself (a hook that sets the hook cannot wait for its own end).
 *
 * hook_readers[i] counts the reports that took hook_recs[i] and have not returned from
 * its hook; hook_mine[i] is this thread's share of them. A report counts itself in on
 * the current record and checks that it is still current (else it counts itself out
 * and tries again: a set came in between); it counts itself out when its hook returns.
 * vms_set_oops_hook fills the record that is not current once no report of another
 * thread holds it, makes it current, and then waits until no report of another thread
 * holds the one it replaced. It holds hook_lock only while no report holds the record
 * it fills, never while it waits for a hook: fork takes hook_lock, and a hook may fork. */
struct hook_rec { vms_oops_hook hook; void *ctx; };
static struct hook_rec hook_recs[2];
static _Atomic(struct hook_rec *) hook_current = &hook_recs[0];
static atomic_int hook_readers[2];
static VMS_TLS int hook_mine[2];
static atomic_flag hook_lock = ATOMIC_FLAG_INIT;

void (*vms__oops_hook_read_hook)(void);
void (*vms__oops_wait_hook)(void);

/* Reports of other threads that hold hook_recs[i]. */
static int hook_others(int i)
{
    return atomic_load(&hook_readers[i]) - hook_mine[i];
}

static void hook_lock_take(void)
{
    while (atomic_flag_test_and_set_explicit(&hook_lock, memory_order_acquire)) sched_yield();
}

/* Not for signal handlers other than the oops hook: yields while another thread sets
 * the hook and while reports of other threads run the hook being replaced. */
void vms_set_oops_hook(vms_oops_hook hook, void *ctx)
{
    int old;
    for (;;) {
        hook_lock_take();
        old = atomic_load_explicit(&hook_current, memory_order_relaxed) == &hook_recs[0] ? 0 : 1;
        /* Sequentially consistent with the reports' count and check: a report that took
         * the record being filled while it was current is counted here until its hook
         * returns. This thread's own are past their reads of it. */
        if (hook_others(1 - old) <= 0) break;
        atomic_flag_clear_explicit(&hook_lock, memory_order_release);
        if (vms__oops_wait_hook) vms__oops_wait_hook();
        sched_yield();
    }
    struct hook_rec *next = &hook_recs[1 - old];
    next->hook = hook;
    next->ctx = ctx;
    atomic_store(&hook_current, next);
    atomic_flag_clear_explicit(&hook_lock, memory_order_release);
    while (hook_others(old) > 0) {
        if (vms__oops_wait_hook) vms__oops_wait_hook();
        sched_yield();
    }
}

static bool fork_took_report;   /* written by the forking thread between its handlers */
long vms__oops_fork_wait_ms = LOCK_WAIT_MS;

/* fork also waits for a report in flight on another thread and holds the report lock
 * until the fork is done: a report takes locks that are not vmstack's while it walks
 * the stack (libunwind's cache lock, the C library's dl_iterate_phdr lock), and a child
 * made meanwhile inherited them held by a thread it does not have: its own first report
 * hung in libunwind (seen in a soak forking from several threads while others
 * overflowed). The wait is bounded as a reporter's wait for another report is (a
 * reporter stuck in the program's oops hook must not hang fork for good); after it, or
 * when this thread is the reporter (fork from the oops hook), the fork goes on without
 * the lock and the child takes it over from the vanished owner, as before. Taken after
 * every other lock of vmstack: a report needs none of them, so the wait ends. Polls with
 * sched_yield, as the wait for a reap does: nanosleep is a cancellation point. */
static void fork_report_lock(void)
{
    long tid = vms__sigsafe_gettid();
    long start = -1;
    unsigned long seen = atomic_load(&report_takes);
    fork_took_report = false;
    for (;;) {
        long owner = 0;
        if (atomic_compare_exchange_strong(&report_owner, &owner, tid)) {
            fork_took_report = true;
            return;
        }
        if (owner == tid) return;
        /* Like a report's, the wait is for one report: in a storm behind a slow hook,
         * counted over all of them, it ran out and the fork went on inside a report. */
        unsigned long takes = atomic_load(&report_takes);
        if (takes != seen) {
            seen = takes;
            start = -1;
        }
        if (syscall(SYS_tgkill, (long)getpid(), owner, 0) < 0 && errno == ESRCH) {
            if (atomic_compare_exchange_strong(&report_owner, &owner, tid)) {
                fork_took_report = true;
                return;
            }
            continue;
        }
        long now = vms__os_now_ns() / 1000000L;
        if (start < 0) start = now;
        else if (now - start > vms__oops_fork_wait_ms) return;
        if (vms__oops_wait_hook) vms__oops_wait_hook();
        sched_yield();
    }
}

/* fork: a child made while another thread held hook_lock would wait for good in its
 * next vms_set_oops_hook; the forking thread takes it (held for a few instructions at a
 * time). So would a child made while another thread's report held a record: that thread
 * is not in the child, whose counts start again from the forking thread's own (a fork
 * from the oops hook, or from a handler that interrupted this thread's report). */
void vms__oops_fork_lock(void)
{
    hook_lock_take();
    fork_report_lock();
}

void vms__oops_fork_unlock(bool child)
{
    if (fork_took_report) atomic_store(&report_owner, 0);
    fork_took_report = false;
    if (child)
        for (int i = 0; i < 2; i++) atomic_store(&hook_readers[i], hook_mine[i]);
    atomic_flag_clear_explicit(&hook_lock, memory_order_release);
}

/* async-signal-safe: atomic operations, loads and thread-local (initial-exec) counts
 * around the hook; no lock, no wait. It retries only when vms_set_oops_hook switched
 * the record between its two loads of the current one. */
void vms__oops_call_hook(const vms_oops *oops)
{
    struct hook_rec *r;
    int i;
    for (;;) {
        r = atomic_load(&hook_current);
        i = (int)(r - hook_recs);
        atomic_fetch_add(&hook_readers[i], 1);
        if (atomic_load(&hook_current) == r) break;
        atomic_fetch_sub(&hook_readers[i], 1);
    }
    hook_mine[i]++;
    vms_oops_hook hook = r->hook;
    if (vms__oops_hook_read_hook) vms__oops_hook_read_hook();
    void *ctx = r->ctx;
    if (hook) hook(oops, ctx);
    hook_mine[i]--;
    atomic_fetch_sub_explicit(&hook_readers[i], 1, memory_order_release);
}

size_t vms__oops_tainted(void)
{
    return atomic_load_explicit(&taint_count, memory_order_relaxed);
}

/* ---- the report lock ----------------------------------------------------------- */

long vms__oops_lock_wait_ms = LOCK_WAIT_MS;

/* What report_lock did: took the lock (the caller releases it), found it held by this
 * thread already (a fault inside the report), or gave up waiting for another thread's
 * report, which may be stuck holding locks the walk would need (see vms__oops_report). */
enum { LOCK_TAKEN, LOCK_MINE, LOCK_WAITED_OUT };

/* async-signal-safe: an owner that no longer exists (it died, or this is a child forked
 * during a report) is replaced. *owner_out is the owner waited for (LOCK_WAITED_OUT).
 * The wait is for one report: it starts again whenever the lock changes hands. Counted
 * over every report ahead, it ran out in a storm of overflows behind a slow oops hook
 * (or under Valgrind) while no report was stuck at all: the last reporters said that a
 * report "did not end", walked by frame pointers only, and wrote their reports without
 * the lock, line by line into each other's. */
static int report_lock(long tid, long *owner_out)
{
    unsigned long seen = atomic_load(&report_takes);
    for (long waited = 0;; waited++) {
        long owner = 0;
        if (atomic_compare_exchange_strong(&report_owner, &owner, tid)) {
            atomic_fetch_add(&report_takes, 1);
            return LOCK_TAKEN;
        }
        if (owner == tid) return LOCK_MINE;
        unsigned long takes = atomic_load(&report_takes);
        if (takes != seen) {   /* another report (of the same thread, maybe) since */
            seen = takes;
            waited = 0;
        }
        if (syscall(SYS_tgkill, (long)getpid(), owner, 0) < 0 && errno == ESRCH) {
            if (atomic_compare_exchange_strong(&report_owner, &owner, tid)) {
                atomic_fetch_add(&report_takes, 1);
                return LOCK_TAKEN;
            }
            continue;
        }
        if (waited >= vms__oops_lock_wait_ms) {
            if (owner_out) *owner_out = owner;
            return LOCK_WAITED_OUT;
        }
        vms__sigsafe_sleep_ms(1);
    }
}

/* async-signal-safe */
static void report_unlock(int how)
{
    if (how == LOCK_TAKEN) atomic_store(&report_owner, 0);
}

/* ---- output -------------------------------------------------------------------- */

struct out {
    int fd;
    int mode;                   /* VMS__FD_*, from vms__sigsafe_fd_mode */
    bool dead;                  /* a write failed or timed out: drop the rest */
    bool pipe_blocked;          /* SIGPIPE is blocked for the writes (ps is valid) */
    struct vms__sigpipe_state ps;
    struct vms__line line;
    uintptr_t stack_lo;         /* the lowest byte of the stack we run on: 0 unknown,
                                 * 1 not looked up yet (name_words) */
};

/* async-signal-safe: starts the output to the report fd. SIGPIPE is blocked only for
 * an fd that can raise it: a regular file or /dev/null cannot, and saves the two or
 * three system calls of blocking and unblocking it. */
static void out_open(struct out *o)
{
    o->fd = vms__opt.report_fd > 0 ? vms__opt.report_fd : 2;
    o->mode = vms__sigsafe_fd_mode(o->fd);
    o->dead = o->mode < 0;
    o->pipe_blocked = !o->dead && o->mode != VMS__FD_DIRECT;
    o->stack_lo = 1;
    if (o->pipe_blocked) vms__sigsafe_block_sigpipe(&o->ps);
}

/* async-signal-safe */
static void out_close(struct out *o)
{
    if (o->pipe_blocked) vms__sigsafe_unblock_sigpipe(&o->ps);
}

/* async-signal-safe: starts a line with the "vmstack: " prefix. */
static struct vms__line *start(struct out *o)
{
    vms__line_reset(&o->line);
    vms__line_str(&o->line, "vmstack: ");
    return &o->line;
}

/* async-signal-safe: writes the line with one write(2). */
static void emit(struct out *o)
{
    size_t n = vms__line_finish(&o->line);
    if (o->dead) return;
    if (vms__sigsafe_write_mode(o->fd, o->mode, o->line.buf, n, WRITE_TIMEOUT_MS) != 0)
        o->dead = true;
}

/* async-signal-safe: one line, outside any report (the kill's report is complete; no
 * report lock: one write(2)). */
void vms__oops_rearm_failed(int err)
{
    struct out o;
    out_open(&o);
    struct vms__line *l = start(&o);
    vms__line_str(l, "error: thread ");
    vms__line_dec(l, vms__sigsafe_gettid());
    vms__line_str(l, ": its alternate signal stack (the program's, SS_AUTODISARM) could not "
                     "be enabled again after the kill (sigaltstack: errno ");
    vms__line_dec(l, -err);
    vms__line_str(l, "): a later stack overflow on this thread kills the process "
                     "unreported");
    emit(&o);
    out_close(&o);
}

/* async-signal-safe: the report's end after a fault raised while writing it (the
 * thread holds the report lock already: report_lock lets it go on). */
void vms__oops_nested(int sig, uintptr_t addr, uintptr_t pc)
{
    struct out o;
    out_open(&o);
    int taken = report_lock(vms__sigsafe_gettid(), NULL);
    struct vms__line *l = start(&o);
    vms__line_str(l, "fault while reporting: ");
    vms__line_str(l, sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    vms__line_str(l, " at ");
    vms__line_hex(l, addr, 1);
    vms__line_str(l, " (pc ");
    vms__line_hex(l, pc, 1);
    vms__line_str(l, "): the report above is cut short");
    emit(&o);
    vms__line_str(start(&o), "aborting");
    emit(&o);
    report_unlock(taken);
    out_close(&o);
}

/* ---- call trace collection ------------------------------------------------------- */

/* The frames of a walk, kept without allocation: the innermost HEAD_FRAMES, and after
 * them either the end of a recursion found in the head (collapsed into one line) and
 * the frames past it, or the outermost TAIL_FRAMES. */
#define RUN_SITES 8
struct frames {
    uintptr_t head[HEAD_FRAMES];
    int nhead;
    int run_start, run_shown;   /* the recursion starts at head[run_start]; the frames
                                   before run_shown are printed, the rest collapsed */
    int run_end;                /* one past its last frame in the head: the frames from
                                   there on (its callers) are printed after it */
    uintptr_t sites[RUN_SITES]; /* the recursion's return addresses */
    int nsites;                 /* 0: no recursion found */
    bool run_open;              /* the walk is still inside the recursion */
    long run_more;              /* frames of the recursion beyond the head */
    uintptr_t after[AFTER_FRAMES];
    int nafter;
    uintptr_t tail[TAIL_FRAMES];
    long ntail;                 /* frames pushed into the tail ring */
    long total;
    vms_oops *oops;
    bool unsafe_found;          /* a left-out frame is in a lock-taking libc function */
    int unsafe_kind;            /* ... or unnamed in an object that holds the C library
                                   or vmstack (vms__trace_unnamed_inside), else 0 */
    struct vms__sym culprit;
    uintptr_t culprit_at;       /* its frame's address */
    uintptr_t unnamed_seen[2];  /* the last return addresses checked for that */
};

/* async-signal-safe */
static bool is_site(const struct frames *f, uintptr_t addr)
{
    for (int i = 0; i < f->nsites; i++)
        if (f->sites[i] == addr) return true;
    return false;
}

/* async-signal-safe: whether head[j] is a return address seen before it, from head[s] on. */
static bool head_repeats(const struct frames *f, int s, int j)
{
    for (int k = s; k < j; k++)
        if (f->head[k] == f->head[j]) return true;
    return false;
}

/* async-signal-safe: finds a recursion in a full head. It starts at a return address
 * that comes back later in the head (the first such among the first 16 frames: frames
 * before it, such as the non-recursive callees of its innermost level, are not part of
 * it and are printed as they are) and ends at the last return address that repeats one
 * of it (the frames after that, its callers when it ended inside the head, are printed
 * after the collapsed line). Its frames return to at most RUN_SITES distinct call sites,
 * each seen three times on average (a return address that repeats is a re-entry). This
 * covers plain and mutual recursion, and recursion through several call sites of one
 * function. The printed part runs until every call site was seen once. */
static void find_run(struct frames *f)
{
    /* From 1: the first frame is the faulting pc, never a return address. */
    for (int s = 1; s <= 16 && s < f->nhead; s++) {
        int end = 0;
        for (int j = s + 1; j < f->nhead; j++)
            if (head_repeats(f, s, j)) end = j + 1;
        if (!end) continue;
        /* head[s] itself must come back: else the run starts later. */
        bool back = false;
        for (int j = s + 1; j < end && !back; j++) back = f->head[j] == f->head[s];
        if (!back) continue;
        f->nsites = 0;
        int shown = s;
        bool ok = true;
        for (int j = s; j < end && ok; j++) {
            if (is_site(f, f->head[j])) continue;
            if (f->nsites == RUN_SITES) ok = false;
            else {
                f->sites[f->nsites++] = f->head[j];
                shown = j + 1;
            }
        }
        if (ok && end - s >= 3 * f->nsites) {
            f->run_start = s;
            f->run_shown = shown;
            f->run_end = end;
            f->run_open = end == f->nhead;
            return;
        }
    }
    f->nsites = 0;
}

/* async-signal-safe: one frame's function takes a process-wide lock. */
static bool frame_unsafe(uintptr_t addr, bool exact, struct vms__sym *s)
{
    return vms__trace_symbolize(exact ? addr : addr - 1, s) == 2 &&
           vms__trace_name_unsafe(s->name) != 0;
}

/* async-signal-safe: the walk's per-frame callback. Frames that will not be kept (past
 * the head, not repeats of its recursion) are checked for the unsafe-kill decision as
 * they pass, when they are in the C library (cheap: an address range compare first). */
static bool collect(void *ctx, uintptr_t addr)
{
    struct frames *f = ctx;
    long i = f->total++;
    if (i < 32) f->oops->trace[i] = (void *)addr;
    if (f->nhead < HEAD_FRAMES) {
        f->head[f->nhead++] = addr;
        if (f->nhead == HEAD_FRAMES) find_run(f);
        return true;
    }
    if (f->run_open) {
        if (is_site(f, addr)) {
            f->run_more++;
            return true;
        }
        f->run_open = false;
    }
    if (!f->unsafe_found && vms__trace_in_loader(addr - 1)) {
        vms__trace_symbolize(addr - 1, &f->culprit);
        f->unsafe_found = true;
    } else if (!f->unsafe_found && vms__trace_in_libc(addr - 1) &&
               frame_unsafe(addr, false, &f->culprit)) {
        f->unsafe_found = true;
    } else if (!f->unsafe_found && addr != f->unnamed_seen[0] && addr != f->unnamed_seen[1]) {
        f->unnamed_seen[1] = f->unnamed_seen[0];
        f->unnamed_seen[0] = addr;
        if ((f->unsafe_kind = vms__trace_unnamed_inside(addr - 1)) != 0) {
            vms__trace_symbolize(addr - 1, &f->culprit);
            f->culprit_at = addr;
            f->unsafe_found = true;
        }
    }
    if (f->nsites && f->nafter < AFTER_FRAMES) {
        f->after[f->nafter++] = addr;
        return true;
    }
    f->tail[f->ntail++ % TAIL_FRAMES] = addr;
    return true;
}

/* async-signal-safe: the lowest byte of the stack the report runs on, which bounds what
 * the demangler may use of it: the thread's alternate signal stack (the fault handler's)
 * or a vmstack stack (a report at a task's end), else 0. Looked up at the first C++ name
 * of a report: one system call, none in reports without one. */
static uintptr_t report_stack_lo(void)
{
    uintptr_t here = (uintptr_t)__builtin_frame_address(0);
    stack_t ss;
    if (vms__os_sigaltstack(NULL, &ss) == 0 && (ss.ss_flags & SS_ONSTACK) &&
        here > (uintptr_t)ss.ss_sp && here - (uintptr_t)ss.ss_sp < ss.ss_size)
        return (uintptr_t)ss.ss_sp;
    struct vms__where w;
    if (vms__arena_where((const void *)here, &w) == VMS__WHERE_STACK && w.st)
        return (uintptr_t)w.st->base;
    return 0;
}

/* The longest demangled name shown; a longer one is cut with "...". */
#define DEMANGLED_MAX 256
/* The least of a name a frame line shows, however long what follows it. */
#define NAME_MIN 32

/* async-signal-safe: a function's name, as C++ source spells it when it is a C++ name
 * the demangler can handle in the stack room left (docs/oops.md), else as it is; at
 * most max characters of it, a longer one cut to end in "...", so that what the caller
 * appends after it still fits the line. */
static void name_words(struct out *o, struct vms__line *l, const char *name, size_t max)
{
    char buf[DEMANGLED_MAX];
    const char *p = name;
    if (name[0] == '_' && name[1] == 'Z') {
        if (o->stack_lo == 1) o->stack_lo = report_stack_lo();
        uintptr_t below = (uintptr_t)buf;
        size_t room = o->stack_lo && below > o->stack_lo ? below - o->stack_lo : 0;
        if (vms__trace_demangle(name, room, buf, sizeof buf)) p = buf;
    }
    if (max < 4) max = 4;
    if (vms__sigsafe_strlen(p) <= max) {
        vms__line_str(l, p);
    } else {
        vms__line_strn(l, p, max - 3);
        vms__line_str(l, "...");
    }
}

/* async-signal-safe: the characters vms__line_hex(l, v, 1) appends. */
static size_t hex_len(uintptr_t v)
{
    size_t n = 3;
    while (v >>= 4) n++;
    return n;
}

/* async-signal-safe: how much of a name fits in l when reserve characters must follow
 * it (at least NAME_MIN: then the line's own cut takes the end). */
static size_t name_room(const struct vms__line *l, size_t reserve)
{
    size_t used = l->len + reserve;
    return used + NAME_MIN < VMS__LINE_MAX ? VMS__LINE_MAX - used : NAME_MIN;
}

/* async-signal-safe: one Call Trace line, "name+0xoff/0xsize [object]". The innermost
 * frame's address is exact; the others are return addresses, looked up one byte back
 * so that a call ending its function still names that function. A name too long for
 * the line is cut, never what follows it: every frame keeps its offset, size and
 * object. */
static void frame_line(struct out *o, uintptr_t addr, bool exact)
{
    struct vms__line *l = start(o);
    struct vms__sym s;
    int r = vms__trace_symbolize(exact ? addr : addr - 1, &s);
    vms__line_char(l, ' ');
    if (r == 2) {
        size_t suffix = 1 + hex_len(addr - s.start) + 1 + hex_len(s.size) +
                        3 + vms__sigsafe_strlen(s.object ? s.object : "(null)");
        name_words(o, l, s.name, name_room(l, suffix));
        vms__line_char(l, '+');
        vms__line_hex(l, addr - s.start, 1);
        vms__line_char(l, '/');
        vms__line_hex(l, s.size, 1);
    } else {
        vms__line_hex(l, addr, 1);
    }
    if (r >= 1) {
        vms__line_str(l, " [");
        vms__line_str(l, s.object);
        vms__line_char(l, ']');
    }
    emit(o);
}

/* async-signal-safe: "... N frames left out ..." or "... N frames of a/b left out ...",
 * naming the distinct functions of the recursion's call sites. */
static void left_out_line(struct out *o, long n, const struct frames *f)
{
    struct vms__line *l = start(o);
    vms__line_str(l, " ... ");
    vms__line_dec(l, n);
    vms__line_str(l, n == 1 ? " frame" : " frames");
    if (f) {
        vms__line_str(l, " of ");
        const char *seen[RUN_SITES];
        int nseen = 0;
        for (int i = f->run_start; i < f->run_shown; i++) {
            struct vms__sym s;
            const char *name = vms__trace_symbolize(f->head[i] - 1, &s) == 2 ? s.name : "?";
            bool dup = false;
            for (int j = 0; j < nseen; j++) dup |= vms__sigsafe_streq(seen[j], name);
            if (dup || nseen == RUN_SITES) continue;
            seen[nseen++] = name;
        }
        /* Each name leaves room for the ones after it ("/" and at least NAME_MIN each)
         * and for " left out ...": RUN_SITES of them fit a line. */
        for (int j = 0; j < nseen; j++) {
            if (j) vms__line_char(l, '/');
            size_t later = (size_t)(nseen - 1 - j) * (1 + NAME_MIN);
            name_words(o, l, seen[j], name_room(l, later + sizeof " left out ..." - 1));
        }
    }
    vms__line_str(l, " left out ...");
    emit(o);
}

/* async-signal-safe */
static void trace_lines(struct out *o, const struct frames *f)
{
    int shown = f->nsites ? f->run_shown : f->nhead;
    for (int i = 0; i < shown; i++) frame_line(o, f->head[i], i == 0);
    if (f->nsites) {
        left_out_line(o, (long)(f->run_end - shown) + f->run_more, f);
        for (int i = f->run_end; i < f->nhead; i++) frame_line(o, f->head[i], false);
        for (int i = 0; i < f->nafter; i++) frame_line(o, f->after[i], false);
    }
    if (f->ntail > 0) {
        long kept = f->ntail < TAIL_FRAMES ? f->ntail : TAIL_FRAMES;
        if (f->ntail > kept) left_out_line(o, f->ntail - kept, NULL);
        for (long i = f->ntail - kept; i < f->ntail; i++)
            frame_line(o, f->tail[i % TAIL_FRAMES], false);
    }
}

/* ---- unsafe kill --------------------------------------------------------------- */

/* async-signal-safe: whether the symbol belongs to vmstack itself (its functions are
 * all prefixed vms_; in the shared library, its object is libvmstack). */
static bool is_vmstack(const struct vms__sym *s)
{
    return (s->name && vms__sigsafe_prefix(s->name, "vms_")) ||
           (s->object && vms__sigsafe_prefix(s->object, "libvmstack"));
}

/* async-signal-safe: whether the program's call into vmstack at s (the outermost
 * vmstack frame above the program's code) can hold no lock of vmstack's: the getters,
 * vms_stack_self, and vms_stack_remaining, which a program calls to check its depth
 * near the end of its stack, where an overflow inside the call is likely. What they call
 * inside vmstack (the arena lookup) takes no lock either: it serves the fault handler. */
static bool lock_free_entry(const struct vms__sym *s)
{
    static const char *const names[] = {
        "vms_stack_remaining", "vms_stack_self", "vms_fiber_self", "vms_fiber_state",
        "vms_fiber_oops", "vms_fiber_stack", "vms_stack_base", "vms_stack_top",
        "vms_stack_size",
    };
    if (!s->name) return false;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (vms__sigsafe_streq(s->name, names[i])) return true;
    return false;
}

/* async-signal-safe: whether name is fn or a compiler's clone of it (fn.constprop.0,
 * fn.isra.0, ...; not fn.cold, a part of it that can do more). */
static bool clone_of(const char *name, const char *fn)
{
    if (!vms__sigsafe_prefix(name, fn)) return false;
    const char *rest = name + vms__sigsafe_strlen(fn);
    return *rest == '\0' || (*rest == '.' && !vms__sigsafe_streq(rest, ".cold"));
}

/* async-signal-safe: whether a switch entry the program called (entry, the outermost
 * of vmstack's frames; frame, the innermost) holds no lock of vmstack's at the fault.
 * vms_fiber_yield takes none, nor does anything it calls but the end magic's report
 * (a vms_ function of its own: then frame is not entry); nor does vms_fiber_resume but
 * through its slow part, vms__fiber_resume_slow. That takes none in its own code, but
 * its callees do (a thread's first set-up, under pthread_once), and in a static build
 * those are static functions without a vms_ name, not seen as vmstack's: so in the slow
 * part only a fault in its own code counts (at_fault: frame is the faulting one). A
 * fiber that calls them at the very end of its stack overflows in their prologue or the
 * switch's call, and a signal handler that interrupted a yield may overflow there. */
static bool lock_free_switch(const struct vms__sym *entry, const struct vms__sym *frame,
                             bool at_fault)
{
    if (!entry->name || !frame->name) return false;
    /* The tools' switch hooks (track.h: nothing, or a sanitizer's or Valgrind's
     * notification; out of line when unoptimized) are part of the switch. */
    bool own = frame->start == entry->start || vms__sigsafe_prefix(frame->name, "vms__track_");
    if (vms__sigsafe_streq(entry->name, "vms_fiber_yield")) return own;
    /* The resume's own static helpers (the record check, unoptimized) take no lock. */
    if (vms__sigsafe_streq(entry->name, "vms_fiber_resume") && own) return true;
    /* The slow part keeps a compiler's clone suffix (.constprop.0), and a resume
     * tail-jumps to it, leaving no frame of its own: then it is the entry. */
    return at_fault &&
           (vms__sigsafe_streq(entry->name, "vms_fiber_resume") ||
            clone_of(entry->name, "vms__fiber_resume_slow")) &&
           clone_of(frame->name, "vms__fiber_resume_slow");
}

/* The room probes' tables (internal.h, VMS__ROOM_PROBE, VMS__ROOM_TABLE): 32-bit
 * offsets, each from its own place to a probe's load or mark, one table for each file
 * that has probes. */
#if defined(VMSTACK_VMAP) && (defined(__x86_64__) || defined(__aarch64__))
extern const int32_t vms__room_probes_fiber[] VMS_HIDDEN, vms__room_probes_fiber_end[] VMS_HIDDEN,
    vms__room_probes_stack[] VMS_HIDDEN, vms__room_probes_stack_end[] VMS_HIDDEN;
#endif

/* async-signal-safe (reads a read-only table): whether pc, in the vmstack function s,
 * lies at or before one of its room probes: the function has taken nothing yet, the
 * fault is its prologue's, its sanitizer entry hook's, or the probe's own. Only the
 * probes inside s's range count (a duplicated probe makes two entries there; pc at or
 * before either is before the function took anything). unsafe_reason lets this excuse
 * the whole run of vmstack frames, not only the innermost: right as long as the outer
 * vmstack frames of a probing function hold no lock either, which holds today (their
 * callers: the program, for the public entries; vms_stack_alloc and vms_stack_free
 * before their mark, for vms__task_room_probe; vms_fiber_resume's lock-free fast path,
 * for vms__fiber_resume_slow). No vmstack code may call a probing function with a
 * lock held, or this must check the outer frames too. */
static bool before_room_probe(const struct vms__sym *s, uintptr_t pc)
{
#if defined(VMSTACK_VMAP) && (defined(__x86_64__) || defined(__aarch64__))
    static const int32_t *const tables[][2] = {
        { vms__room_probes_fiber, vms__room_probes_fiber_end },
        { vms__room_probes_stack, vms__room_probes_stack_end },
    };
    if (!s->size) return false;
    for (size_t i = 0; i < sizeof tables / sizeof tables[0]; i++)
        for (const int32_t *e = tables[i][0]; e < tables[i][1]; e++) {
            uintptr_t probe = (uintptr_t)e + (uintptr_t)(intptr_t)*e;
            if (probe >= s->start && probe - s->start < s->size && pc <= probe) return true;
        }
#else
    (void)s; (void)pc;
#endif
    return false;
}

/* async-signal-safe: the i-th kept frame of the walk, innermost first (head, the frames
 * after a collapsed recursion, then the outermost ones); false past the end. */
static bool kept_frame(const struct frames *f, long i, uintptr_t *addr)
{
    if (i < f->nhead) {
        *addr = f->head[i];
        return true;
    }
    i -= f->nhead;
    if (i < f->nafter) {
        *addr = f->after[i];
        return true;
    }
    i -= f->nafter;
    long kept = f->ntail < TAIL_FRAMES ? f->ntail : TAIL_FRAMES;
    if (i >= kept) return false;
    *addr = f->tail[(f->ntail - kept + i) % TAIL_FRAMES];
    return true;
}

/* async-signal-safe: why killing only the task could deadlock the others, or NULL.
 * Any frame of the faulting stack inside a C library function that takes a
 * process-wide lock (the allocator, stdio, the loader's entry points) means that
 * function has not returned and may hold it, and so may any frame in the dynamic loader
 * itself (lazy binding marks the thread as inside the loader's global scope, which
 * dlclose waits for): the kept frames are searched here, the others were checked as
 * they passed (collect). A vmstack function counts when the program's code is below
 * it (the program called into vmstack, which may hold one of its locks); vmstack's own
 * frames at the bottom of every task (the entry trampoline) hold none. */
static const char *unsafe_reason(const struct frames *f, struct vms__sym *culprit,
                                 uintptr_t *culprit_at)
{
    static const char libc_why[] =
        "the C library may hold a process-wide lock there (its allocator, stdio, the "
        "loaded objects' list, exit handlers or the environment)";
    static const char cxx_why[] =
        "the C++ runtime may hold a process-wide lock there (its emergency pool of "
        "exception objects)";
    static const char loader_why[] =
        "the dynamic loader may hold its lock or have the thread marked inside it";
    static const char static_libc_why[] =
        "a program without a symbol table that holds the C library (a static program): "
        "a lock of the C library's or vmstack's held there cannot be ruled out (keep the "
        "symbol table: strip --strip-debug)";
    static const char static_vms_why[] =
        "an object without a symbol table that holds vmstack (linked in statically): one "
        "of vmstack's locks held there cannot be ruled out (keep the symbol table: strip "
        "--strip-debug, or link libvmstack.so)";
    bool in_vmstack = false, frame_at_fault = false, frame_probed = false;
    struct vms__sym vms_frame, vms_entry = { 0 };
    uintptr_t addr, prev = 0;
    for (long i = 0; kept_frame(f, i, &addr); i++) {
        /* A return address equal to the one before (a recursion kept in the head) gets
         * the same answer: skip the lookup. */
        if (i >= 2 && addr == prev) continue;
        prev = addr;
        struct vms__sym s;
        int r = vms__trace_symbolize(i == 0 ? addr : addr - 1, &s);
        if (r >= 1 && s.in_loader) {
            *culprit = s;
            return loader_why;
        }
        int kind = r == 2 ? vms__trace_name_unsafe(s.name) : 0;
        if (kind) {
            *culprit = s;
            return kind == VMS__UNSAFE_CXX ? cxx_why : libc_why;
        }
        kind = r == 1 ? vms__trace_unnamed_inside(i == 0 ? addr : addr - 1) : 0;
        if (kind) {
            *culprit = s;
            *culprit_at = addr;
            return kind == VMS__UNSAFE_VMSTACK ? static_vms_why : static_libc_why;
        }
        /* Without libunwind the frame-pointer walk cannot see through the C library
         * (built without frame pointers): an unnamed C library function at the fault
         * may be the allocator's internals. */
        if (i == 0 && r == 1 && s.in_libc && !vms__trace_have_unwind()) {
            *culprit = s;
            return "the fault is in an unnamed C library function that may hold a lock";
        }
        if (r >= 1 && is_vmstack(&s)) {
            if (!in_vmstack) {
                vms_frame = s;
                frame_at_fault = i == 0;
                frame_probed = before_room_probe(&s, i == 0 ? addr : addr - 1);
            }
            vms_entry = s;
            in_vmstack = true;
        } else if ((r == 0 || !s.in_libc) && in_vmstack) {
            if (frame_probed || lock_free_entry(&vms_entry) ||
                lock_free_switch(&vms_entry, &vms_frame, frame_at_fault)) {
                in_vmstack = false;   /* the program called a lock-free function */
                continue;
            }
            *culprit = vms_frame;
            return "vmstack itself may hold one of its locks";
        }
    }
    if (f->unsafe_found) {
        *culprit = f->culprit;
        if (f->unsafe_kind) {
            *culprit_at = f->culprit_at;
            return f->unsafe_kind == VMS__UNSAFE_VMSTACK ? static_vms_why : static_libc_why;
        }
        return f->culprit.in_loader ? loader_why : libc_why;
    }
    return NULL;
}

/* ---- the report ---------------------------------------------------------------- */

/* async-signal-safe: "name [object]", or the address when the symbol is unknown; a
 * name too long for the line is cut to leave room for its object and for the after
 * characters the caller appends. */
static void sym_words(struct out *o, struct vms__line *l, const struct vms__sym *s,
                      uintptr_t addr, size_t after)
{
    size_t object = s->object ? 3 + vms__sigsafe_strlen(s->object) : 0;
    if (s->name) name_words(o, l, s->name, name_room(l, object + after));
    else vms__line_hex(l, addr, 1);
    if (s->object) {
        vms__line_str(l, " [");
        vms__line_str(l, s->object);
        vms__line_char(l, ']');
    }
}

/* async-signal-safe: the general registers, four to a line. */
static void register_lines(struct out *o, const ucontext_t *uc)
{
#if defined(__x86_64__)
    static const struct { const char *name; int reg; } regs[] = {
        {"rax", REG_RAX}, {"rbx", REG_RBX}, {"rcx", REG_RCX}, {"rdx", REG_RDX},
        {"rsi", REG_RSI}, {"rdi", REG_RDI}, {"rbp", REG_RBP}, {"rsp", REG_RSP},
        {"r8", REG_R8},   {"r9", REG_R9},   {"r10", REG_R10}, {"r11", REG_R11},
        {"r12", REG_R12}, {"r13", REG_R13}, {"r14", REG_R14}, {"r15", REG_R15},
        {"rip", REG_RIP}, {"eflags", REG_EFL},
    };
    const int n = (int)(sizeof regs / sizeof *regs);
    for (int i = 0; i < n; i += 4) {
        struct vms__line *l = start(o);
        for (int j = i; j < i + 4 && j < n; j++) {
            vms__line_char(l, ' ');
            vms__line_str(l, regs[j].name);
            vms__line_char(l, ' ');
            vms__line_hex(l, (uintptr_t)uc->uc_mcontext.gregs[regs[j].reg], 16);
        }
        emit(o);
    }
#elif defined(__aarch64__)
    static const char *const names[] = {
        "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7", "x8", "x9", "x10",
        "x11", "x12", "x13", "x14", "x15", "x16", "x17", "x18", "x19", "x20",
        "x21", "x22", "x23", "x24", "x25", "x26", "x27", "x28", "x29", "x30",
    };
    for (int i = 0; i < 31; i += 4) {
        struct vms__line *l = start(o);
        for (int j = i; j < i + 4 && j < 31; j++) {
            vms__line_char(l, ' ');
            vms__line_str(l, names[j]);
            vms__line_char(l, ' ');
            vms__line_hex(l, (uintptr_t)uc->uc_mcontext.regs[j], 16);
        }
        if (i + 4 > 31) {
            vms__line_str(l, " pstate ");
            vms__line_hex(l, (uintptr_t)uc->uc_mcontext.pstate, 16);
        }
        emit(o);
    }
#else
    (void)o; (void)uc;
#endif
}

/* async-signal-safe: ` "name" (id N)` for a task. */
static void task_words(struct vms__line *l, const struct vms__fault *f)
{
    vms__line_str(l, f->task.kind == VMS__TASK_FIBER ? "fiber \"" : "thread \"");
    vms__line_name(l, f->task.name);
    vms__line_str(l, "\" (id ");
    vms__line_udec(l, f->task.id);
    vms__line_char(l, ')');
}

/* async-signal-safe: the first line. */
static void first_line(struct out *o, const struct vms__fault *f)
{
    struct vms__line *l = start(o);
    switch (f->kind) {
    case VMS__FAULT_WILD:
        vms__line_str(l, "wild guard access on thread ");
        vms__line_dec(l, f->tid);
        vms__line_str(l, ": the stack pointer is not next to the guard it hit");
        break;
    case VMS__FAULT_MAIN:
        vms__line_str(l, "stack overflow in main thread (tid ");
        vms__line_dec(l, f->tid);
        vms__line_char(l, ')');
        break;
    case VMS__FAULT_THREAD:
        vms__line_str(l, "stack overflow in thread \"");
        vms__line_name(l, f->name);
        vms__line_str(l, "\" (tid ");
        vms__line_dec(l, f->tid);
        vms__line_str(l, "), not a vmstack thread");
        break;
    case VMS__FAULT_CLIB:
        vms__line_str(l, "stack overflow in thread \"");
        vms__line_name(l, f->name);
        vms__line_str(l, "\" (tid ");
        vms__line_dec(l, f->tid);
        vms__line_str(l, ") on its C library stack, outside its body (thread start, or "
                         "TLS and thread-specific-data destructors at exit)");
        break;
    default:
        vms__line_str(l, f->kind == VMS__FAULT_UNDERFLOW ? "stack underflow " : "stack overflow ");
        if (f->have_task) {
            vms__line_str(l, "in ");
            task_words(l, f);
            vms__line_str(l, " on thread ");
            vms__line_dec(l, f->tid);
        } else {
            vms__line_str(l, "on thread ");
            vms__line_dec(l, f->tid);
            vms__line_str(l, " (the stack is not a vmstack task's)");
        }
        break;
    }
    emit(o);
}

/* async-signal-safe: how far beyond the stack the fault is (0 inside it). */
static size_t fault_overrun(const struct vms__fault *f)
{
    return f->addr < f->lo ? f->lo - f->addr : f->addr >= f->hi ? f->addr - f->hi + 1 : 0;
}

/* async-signal-safe: the lines after the first: the fault address, the stack, pc and sp. */
static void where_lines(struct out *o, const struct vms__fault *f, size_t tainted)
{
    struct vms__line *l = start(o);
    vms__line_str(l, " fault at ");
    vms__line_hex(l, f->addr, 1);
    if (f->addr >= f->lo && f->addr < f->hi) {
        /* The main thread's or a foreign thread's stack could not grow down to it (the
         * mapping below, or a limit that changed since vmstack looked). */
        vms__line_str(l, ", inside the stack's range, where it could not grow");
    } else {
        vms__line_str(l, ", ");
        vms__line_udec(l, fault_overrun(f));
        vms__line_str(l, f->addr < f->lo ? " bytes below the stack" : " bytes above the stack");
    }
    if (f->frame) vms__line_str(l, " (the kernel could not write a signal frame there: at most this far)");
    emit(o);

    l = start(o);
    vms__line_str(l, " stack [");
    vms__line_hex(l, f->lo, 1);
    vms__line_char(l, '-');
    vms__line_hex(l, f->hi, 1);
    vms__line_str(l, ") size ");
    vms__line_udec(l, f->hi - f->lo);
    vms__line_str(l, ", guard ");
    vms__line_udec(l, f->guard);
    if (f->kind == VMS__FAULT_WILD) {
        vms__line_str(l, "; its owner");
        if (f->have_task) {
            vms__line_str(l, " (not the faulting ");
            task_words(l, f);
            vms__line_char(l, ')');
        }
        vms__line_str(l, " is not blamed");
    }
    emit(o);

    l = start(o);
    vms__line_str(l, " pc ");
    vms__line_hex(l, f->pc, 1);
    vms__line_str(l, " sp ");
    vms__line_hex(l, f->sp, 1);
    vms__line_str(l, " tainted ");
    vms__line_udec(l, tainted);
    emit(o);
}

/* async-signal-safe: a report without registers and call trace, which uses a few hundred
 * bytes of stack (no walk, no symbols, no hook): the fault happened where the full
 * report would run off the thread's own alternate stack, into whatever memory lies
 * below it. */
void vms__oops_report_no_room(const struct vms__fault *f, size_t room, size_t size,
                              size_t need)
{
    struct out o;
    out_open(&o);
    int taken = report_lock(f->tid, NULL);
    size_t tainted = atomic_fetch_add(&taint_count, 1);
    first_line(&o, f);
    where_lines(&o, f, tainted);
    struct vms__line *l = start(&o);
    vms__line_str(l, " no room for the report: the thread's own alternate signal stack has ");
    vms__line_udec(l, room);
    vms__line_str(l, " of its ");
    vms__line_udec(l, size);
    vms__line_str(l, " bytes left, a report needs ");
    vms__line_udec(l, need);
    vms__line_str(l, ", and nothing vmstack knows of guards the memory below it");
    emit(&o);
    vms__line_str(start(&o), "aborting");
    emit(&o);
    report_unlock(taken);
    out_close(&o);
}

/* async-signal-safe: the report, in the order of docs/oops.md. */
int vms__oops_report(struct vms__fault *f, vms_oops *oops)
{
    memset(oops, 0, sizeof *oops);
    bool below = f->addr < f->lo;
    oops->kind = f->kind == VMS__FAULT_UNDERFLOW || (f->kind == VMS__FAULT_WILD && !below)
                     ? VMS_UNDERFLOW : VMS_OVERFLOW;
    oops->fault_addr = (void *)f->addr;
    oops->pc = (void *)f->pc;
    oops->sp = (void *)f->sp;
    oops->stack_base = (void *)f->lo;
    oops->stack_size = f->hi - f->lo;
    oops->overrun = fault_overrun(f);
    oops->tid = f->tid;
    oops->name = f->have_task ? (f->task.name ? f->task.name : "") : (f->name ? f->name : "");

    struct out o;
    out_open(&o);
    long stuck = 0;
    int taken = report_lock(f->tid, &stuck);
    /* Counted once the lock is this report's: in a storm, "tainted N" then says how many
     * reports came before this one in the output (counted before the lock, the second
     * report written said 51 in a storm of 64 threads, and the first could say 1). */
    size_t tainted = atomic_fetch_add(&taint_count, 1);
    vms__trace_report_begin();

    /* The walk comes first: the unsafe-kill decision needs it, and its frames fill
     * oops->trace. After a wait for another report that did not end, the walk follows
     * frame pointers only: that report may be stuck inside libunwind holding its cache
     * lock (waiting for the loader's lock, which this thread may hold: a fault inside a
     * dl_iterate_phdr callback, such as libunwind's own, or libgcc's C++ exception
     * unwinding before glibc 2.35 gave it _dl_find_object), and libunwind's
     * walk here would wait for that lock for good. The frame-pointer walk takes no lock;
     * where it cannot see every frame, the task is not killed alone. */
    struct frames frames;   /* about 1 KiB of the alternate stack */
    struct frames *fr = &frames;
    memset(fr, 0, sizeof *fr);
    fr->oops = oops;
    bool complete = false;
    uintptr_t entry = f->have_task ? f->task.entry : 0;
    if (taken == LOCK_WAITED_OUT)
        vms__trace_walk_fp(f->uc, f->walk_lo, f->walk_hi, entry, collect, fr,
                           MAX_WALK_FRAMES, &complete);
    else
        vms__trace_walk(f->uc, f->walk_lo, f->walk_hi, entry, collect, fr, MAX_WALK_FRAMES,
                        &complete);
    oops->depth = fr->total > 0x7fffffffL ? 0x7fffffff : (int)fr->total;

    first_line(&o, f);
    where_lines(&o, f, tainted);
    struct vms__line *l;
    register_lines(&o, f->uc);
    if (taken == LOCK_WAITED_OUT) {
        l = start(&o);
        vms__line_str(l, " the report of thread ");
        vms__line_dec(l, stuck);
        vms__line_str(l, " did not end within ");
        vms__line_dec(l, vms__oops_lock_wait_ms);
        vms__line_str(l, " ms: call trace by frame pointers only");
        emit(&o);
    }
    vms__line_str(start(&o), "Call Trace:");
    emit(&o);
    trace_lines(&o, fr);

    if (f->action == VMS__ACT_KILL) {
        struct vms__sym culprit;
        uintptr_t culprit_at = f->pc;   /* shown when the culprit has no name */
        const char *why = unsafe_reason(fr, &culprit, &culprit_at);
        if (why) {
            l = start(&o);
            vms__line_str(l, "cannot kill safely: the fault happened inside ");
            sym_words(&o, l, &culprit, culprit_at, 2 + vms__sigsafe_strlen(why));
            vms__line_str(l, ": ");
            vms__line_str(l, why);
            emit(&o);
            f->action = VMS__ACT_ABORT;
        } else if (!complete && fr->nhead > 0) {
            /* Frames the walk could not see (code without frame pointers, such as the
             * C library, under the frame-pointer walk) may include a lock holder. */
            uintptr_t at = fr->ntail > 0 ? fr->tail[(fr->ntail - 1) % TAIL_FRAMES]
                         : fr->nafter > 0 ? fr->after[fr->nafter - 1]
                         : fr->head[fr->nhead - 1];
            vms__trace_symbolize(fr->total > 1 ? at - 1 : at, &culprit);
            l = start(&o);
            if (fr->total >= MAX_WALK_FRAMES) {
                vms__line_str(l, "cannot kill safely: the call trace was cut after ");
                vms__line_dec(l, fr->total);
                vms__line_str(l, " frames, so a lock held below them cannot be ruled out");
            } else {
                vms__line_str(l, "cannot kill safely: the call trace ends early at ");
                static const char rest[] = ", so a lock held below it cannot be ruled out";
                sym_words(&o, l, &culprit, at, sizeof rest - 1);
                vms__line_str(l, rest);
            }
            emit(&o);
            f->action = VMS__ACT_ABORT;
        }
    } else if (f->why_no_kill) {
        vms__line_str(start(&o), f->why_no_kill);
        emit(&o);
    }

    vms__oops_call_hook(oops);

    l = start(&o);
    if (f->action == VMS__ACT_KILL) {
        vms__line_str(l, "killed ");
        task_words(l, f);
        vms__line_str(l, "; other tasks continue");
    } else {
        vms__line_str(l, "aborting");
    }
    emit(&o);

    report_unlock(taken);
    out_close(&o);
    return f->action;
}
