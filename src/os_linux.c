/*
 * os_linux.c - the os layer: the only file that calls mmap, munmap, mprotect, madvise,
 * process_madvise and sigaltstack on stacks and arenas, and prctl to name mappings
 * (docs/internals.md lists the other files' few calls). Everything above it sees 0 or
 * a negative errno.
 *
 * It also owns two facts about the running kernel: whether MADV_GUARD_INSTALL works
 * (detected once, verified with a signal-free probe, because emulators such as
 * qemu-user 7.2 return 0 without installing anything), and whether process_madvise may
 * act on our own process (Linux 6.13+). Both are decided once and cached.
 * A fault-injection table (VMSTACK_FAULT_INJECTION) lets tests fail any call on purpose.
 */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#if defined(VMSTACK_TSAN)
#include <sanitizer/linux_syscall_hooks.h>   /* vms__os_close_nocancel */
#endif

/* MADV_GUARD_INSTALL: Linux 6.13 (include/uapi/asm-generic/mman-common.h). Debian 12's
 * headers predate it. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
#ifndef MAP_FIXED_NOREPLACE
#define MAP_FIXED_NOREPLACE 0x100000   /* Linux 4.17 */
#endif
#ifndef PR_SET_VMA
#define PR_SET_VMA 0x53564d41
#define PR_SET_VMA_ANON_NAME 0
#endif
/* PIDFD_SELF_THREAD_GROUP (Linux 6.14, include/uapi/linux/pidfd.h): "this process" for
 * process_madvise without opening a pidfd. */
#define VMS_PIDFD_SELF_PROCESS (-10001)
#ifndef SYS_process_madvise
#define SYS_process_madvise 440
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

static atomic_ulong syscalls;

unsigned long vms__os_syscalls(void)
{
    return atomic_load_explicit(&syscalls, memory_order_relaxed);
}

/* async-signal-safe: one relaxed atomic add (vms__os_sigaltstack counts in the fault
 * handler). */
static inline void count_syscall(void)
{
    atomic_fetch_add_explicit(&syscalls, 1, memory_order_relaxed);
}

/* ---- fault injection ------------------------------------------------------------ */
#ifdef VMSTACK_FAULT_INJECTION
static struct {
    atomic_uint countdown; /* 0 = off; 1 = the next call fails */
    atomic_int err;
    atomic_bool always;
} inject[VMS__OP_COUNT];
static atomic_bool inject_any;

void vms__os_inject(int op, unsigned nth, int err, bool always)
{
    if (op < 0 || op >= VMS__OP_COUNT) return;
    atomic_store(&inject[op].err, err);
    atomic_store(&inject[op].always, always);
    atomic_store(&inject[op].countdown, always ? 1 : nth);
    atomic_store(&inject_any, true);
}

void vms__os_inject_clear(void)
{
    for (int i = 0; i < VMS__OP_COUNT; i++) atomic_store(&inject[i].countdown, 0);
    atomic_store(&inject_any, false);
}

/* async-signal-safe: atomics only (vms__os_sigaltstack asks in the fault handler).
 * Returns the injected negative errno for this call of op, or 0. */
static int injected(int op)
{
    if (VMS_LIKELY(!atomic_load_explicit(&inject_any, memory_order_relaxed))) return 0;
    unsigned c = atomic_load(&inject[op].countdown);
    if (c == 0) return 0;
    if (atomic_load(&inject[op].always)) return -atomic_load(&inject[op].err);
    if (atomic_fetch_sub(&inject[op].countdown, 1) == 1) return -atomic_load(&inject[op].err);
    return 0;
}
#else
void vms__os_inject(int op, unsigned nth, int err, bool always)
{
    (void)op; (void)nth; (void)err; (void)always;
}
void vms__os_inject_clear(void) {}
static inline int injected(int op) { (void)op; return 0; }
#endif

int vms__os_injected(int op)
{
    return injected(op);
}

int vms__os_setspecific(pthread_key_t key, const void *value)
{
    int e = injected(VMS__OP_SETSPECIFIC);
    return e ? -e : pthread_setspecific(key, value);
}

/* ---- basics ----------------------------------------------------------------------- */
/* async-signal-safe: a relaxed load once set, and vms__guard_install sets it before it
 * installs the fault handler; a first call (vms_handle_fault before vms_init) asks
 * sysconf(_SC_PAGESIZE), not on POSIX's list, which in glibc returns the loader's copy
 * of AT_PAGESZ (no lock, no allocation). */
size_t vms__os_page_size(void)
{
    /* Asked by any thread, also before initialization (vms_thread_create sizes its own
     * stack first): relaxed atomic, a plain load once set; racing first callers store
     * the same value. */
    static atomic_size_t page;
    size_t v = atomic_load_explicit(&page, memory_order_relaxed);
    if (VMS_UNLIKELY(v == 0)) {
        long p = sysconf(_SC_PAGESIZE);
        v = p > 0 ? (size_t)p : 4096;
        atomic_store_explicit(&page, v, memory_order_relaxed);
    }
    return v;
}

/* async-signal-safe: clock_gettime(2) is on POSIX's list. */
long vms__os_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

#define RESERVE_FLAGS (MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)

/* Reserves [want, want + len) if nothing is mapped there (MAP_FIXED_NOREPLACE, Linux
 * 4.17; an older kernel takes the address as a hint, and another answer is undone). */
static bool reserve_at(char *want, size_t len)
{
    count_syscall();
    char *q = mmap(want, len, PROT_NONE, RESERVE_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == want) return true;
    if (q != MAP_FAILED) {
        count_syscall();
        munmap(q, len);
    }
    return false;
}

/* What every arena reservation gets once placed. */
static void reserved(char *p, size_t size)
{
    /* A transparent huge page would make a whole 2 MiB of idle stacks resident at the
     * first touch; stacks want 4 KiB granularity. */
    count_syscall();
    madvise(p, size, MADV_NOHUGEPAGE);
    /* Named [anon:vmstack] in /proc/self/maps where the kernel has CONFIG_ANON_VMA_NAME
     * (Linux 5.17+); harmless failure elsewhere. */
    count_syscall();
    (void)prctl(PR_SET_VMA, PR_SET_VMA_ANON_NAME, (unsigned long)p, size, (unsigned long)"vmstack");
}

int vms__os_reserve(size_t size, size_t align, void **out)
{
    int e = injected(VMS__OP_MMAP);
    if (e) return e;
    size_t page = vms__os_page_size();
    if (size == 0 || (align & (align - 1)) || size + align < size) return -EINVAL;
    if (align < page) align = page;
    /* The arena starts on an align boundary (arena lookup is then one shift). Reserving
     * size + align and cutting the unaligned head and tail away would need up to twice
     * the address space for a moment, and under RLIMIT_AS (ulimit -v) fail where size
     * alone fits. So: exactly size; if it is not aligned, give back its unaligned top
     * and take the same length just below it, the address space held never more than
     * size. Only when that lower part is taken is the over-reservation tried. */
    count_syscall();
    char *p = mmap(NULL, size, PROT_NONE, RESERVE_FLAGS, -1, 0);
    if (p == MAP_FAILED) return -errno;
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(align - 1);
    if (lo != (uintptr_t)p) {
        size_t shift = (uintptr_t)p - lo;
        /* The top given back is shift bytes of p's own only when shift <= size: with an
         * alignment above size it may be larger, and its start would lie below p, in
         * someone else's mapping. Then only the over-reservation serves. */
        bool below = lo && shift <= size;
        if (below) {
            count_syscall();
            munmap(p + size - shift, shift);
        }
        if (below && reserve_at((char *)lo, shift)) {
            p = (char *)lo;
        } else {
            count_syscall();
            munmap(p, below ? size - shift : size);
            size_t len = size + align - page;
            count_syscall();
            p = mmap(NULL, len, PROT_NONE, RESERVE_FLAGS, -1, 0);
            if (p == MAP_FAILED) return -errno;
            uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
            size_t head = a - (uintptr_t)p, tail = len - head - size;
            if (head) { count_syscall(); munmap(p, head); }
            if (tail) { count_syscall(); munmap((char *)a + size, tail); }
            p = (char *)a;
        }
    }
    reserved(p, size);
    *out = p;
    return 0;
}

int vms__os_reserve_at(void *addr, size_t size)
{
    int e = injected(VMS__OP_MMAP);
    if (e) return e;
    count_syscall();
    char *q = mmap(addr, size, PROT_NONE, RESERVE_FLAGS | MAP_FIXED_NOREPLACE, -1, 0);
    if (q == MAP_FAILED) return -errno;
    if (q != addr) {                         /* before 4.17: taken as a hint, placed elsewhere */
        count_syscall();
        munmap(q, size);
        return -EEXIST;
    }
    reserved(q, size);
    return 0;
}

/* No /proc/self/statm: the room under the limit, found by trying. The largest
 * PROT_NONE, MAP_NORESERVE reservation the kernel grants, to a MiB, by bisection
 * between 0 and the limit, each granted one given back at once: about log2 of the limit
 * in MiB reservations (11 for 1 GiB, 15 for 16 GiB), half of them granted and unmapped.
 * Called once per arena, on this path only. While a try holds its range (two system
 * calls), up to the whole room is taken: another thread's mapping in that moment may be
 * refused as if the program were at its limit. Returns SIZE_MAX where a try failed
 * otherwise than the limit does (ENOMEM; EINVAL from Valgrind, which refuses large
 * maps), or by an injected fault: the room is then unknown. */
static size_t probe_room(size_t limit)
{
    size_t fits = 0, fails = (limit >> 20) + 1;   /* in MiB */
    while (fails - fits > 1) {
        size_t mid = fits + (fails - fits) / 2, len = mid << 20;
        int e = injected(VMS__OP_MMAP);
        void *p = MAP_FAILED;
        if (!e) {
            count_syscall();
            p = mmap(NULL, len, PROT_NONE, RESERVE_FLAGS, -1, 0);
            if (p == MAP_FAILED) e = -errno;
        }
        if (e == -ENOMEM || e == -EINVAL) {
            fails = mid;
        } else if (e) {
            return SIZE_MAX;
        } else {
            count_syscall();
            munmap(p, len);
            fits = mid;
        }
    }
    return fits << 20;
}

size_t vms__os_address_room(bool *known)
{
    struct rlimit r;
    *known = true;
    count_syscall();
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
    size_t limit = r.rlim_cur > SIZE_MAX ? SIZE_MAX : (size_t)r.rlim_cur;
    /* statm's first field: the address space in use, in pages (VmSize). Without it (no
     * /proc) the room is found by trying reservations; where even that fails, the use
     * is unknown, and the limit, only an upper bound of the room, is returned. */
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "rce");
    bool read = f && fscanf(f, "%lu", &pages) == 1;
    if (f) fclose(f);
    if (!read) {
        size_t room = probe_room(limit);
        if (room != SIZE_MAX) return room;
        *known = false;
        return limit;
    }
    size_t used = (size_t)pages * vms__os_page_size();
    return limit > used ? limit - used : 0;
}

int vms__os_release(void *addr, size_t size)
{
    count_syscall();
    return munmap(addr, size) == 0 ? 0 : -errno;
}

int vms__os_open(void *addr, size_t size)
{
    int e = injected(VMS__OP_MPROTECT);
    if (e) return e;
    count_syscall();
    return mprotect(addr, size, PROT_READ | PROT_WRITE) == 0 ? 0 : -errno;
}

/* -> PROT_NONE: the guard of the mprotect method (vms__os_guard). */
static int os_close(void *addr, size_t size)
{
    int e = injected(VMS__OP_MPROTECT);
    if (e) return e;
    count_syscall();
    return mprotect(addr, size, PROT_NONE) == 0 ? 0 : -errno;
}

int vms__os_guard(void *addr, size_t size, int method)
{
    if (method == VMS__GUARD_MADVISE) {
        int e = injected(VMS__OP_MADV_GUARD);   /* an injected errno is read as the kernel's */
        if (!e) {
            count_syscall();
            if (madvise(addr, size, MADV_GUARD_INSTALL) == 0) return 0;
            e = -errno;
        }
        /* EINVAL: the kernel does not know the advice (before 6.13); ENOSYS/EPERM:
         * a seccomp filter or sandbox forbids it. All mean "use mprotect". Anything
         * else (ENOMEM, EAGAIN) is a failure of this call only. */
        if (e == -EINVAL || e == -ENOSYS || e == -EPERM) return -EOPNOTSUPP;
        return e;
    }
    return os_close(addr, size);
}

int vms__os_discard_foreign(void *addr, size_t size)
{
    return madvise(addr, size, MADV_DONTNEED) == 0 ? 0 : -errno;
}

int vms__os_discard(void *addr, size_t size)
{
    int e = injected(VMS__OP_MADV_DISCARD);
    if (e) return e;
    count_syscall();
    return vms__os_discard_foreign(addr, size);
}

/* process_madvise(2) on our own process, decided by the first call that gets to try:
 * PMADV_UNKNOWN until then; PMADV_PROBING while one thread tries (the others discard
 * range by range meanwhile: correct, only slower); then PMADV_SELF (PIDFD_SELF, 6.14+),
 * PMADV_PIDFD (a pidfd of our own, 6.13), or PMADV_NO (one madvise per range). Only
 * the prober writes pmadv_fd, before it publishes PMADV_PIDFD with a release store, so
 * two first callers never both open a pidfd, and nobody reads one half-set up. */
enum { PMADV_NO = -1, PMADV_UNKNOWN = 0, PMADV_PROBING, PMADV_SELF, PMADV_PIDFD };
static atomic_int pmadv_state;
static atomic_int pmadv_fd = -1;
/* Probes in a row that could not decide, their batch's first range refused alone too
 * (below). After PMADV_UNDECIDED_MAX of them the process discards range by range for
 * good: where every range is refused (mlockall) through a pidfd (5.10 to 6.13), each
 * batch's probe cost a pidfd_open, a close and two calls more, for the process's life.
 * A probe that decides ends the probing, so the count is never read again (a fork
 * child that must decide again starts it from 0: vms__os_fork_child, below). */
enum { PMADV_UNDECIDED_MAX = 4 };
static atomic_uint pmadv_undecided;

/* One process_madvise(MADV_DONTNEED) of iov[0..n) through target: the bytes discarded
 * (the kernel stops at the first range it refuses and counts the whole ranges before
 * it), or a negative errno when it refused the first range or the call itself. */
static long pmadv_call(int target, const struct iovec *iov, size_t n)
{
    int e = injected(target == VMS_PIDFD_SELF_PROCESS ? VMS__OP_PMADV_SELF : VMS__OP_PMADV_PIDFD);
    if (e) return e;
    count_syscall();
    long r = syscall(SYS_process_madvise, target, iov, n, MADV_DONTNEED, 0);
    return r < 0 ? -errno : r;
}

/* Errors that are the kernel's answer "not this way" rather than this call's failure:
 * ENOSYS (before 5.10), EINVAL (MADV_DONTNEED through process_madvise before 6.13),
 * EPERM (seccomp, a sandbox), and for PIDFD_SELF EBADF/ESRCH (before 6.14). */
static bool pmadv_refused(int e)
{
    return e == -ENOSYS || e == -EINVAL || e == -EPERM || e == -EBADF || e == -ESRCH;
}

/* The first call's try, by the one thread that moved the state to PMADV_PROBING: the
 * cheap form first, then (before 6.14) a pidfd of our own. Decides, or returns the
 * state to PMADV_UNKNOWN after a failure that says nothing about the kernel (ENOMEM,
 * EMFILE for the pidfd): the next call tries again. Returns pmadv_call's result, or the
 * bytes of iov[0] when the probe dropped it alone; *err0 gets the error of iov[0] when
 * the probe tried it alone and the kernel refused it. */
static long pmadv_probe(const struct iovec *iov, size_t n, int *err0)
{
    if (vms__os_under_valgrind()) {
        /* Valgrind 3.19 (Debian 12) fails process_madvise with ENOSYS after printing a
         * warning that asks users to report a bug: range by range, without the noise. */
        atomic_store_explicit(&pmadv_state, PMADV_NO, memory_order_release);
        return -ENOSYS;
    }
    int state = PMADV_UNKNOWN;
    long e = pmadv_call(VMS_PIDFD_SELF_PROCESS, iov, n);
    if (e >= 0) {
        state = PMADV_SELF;
    } else if (e == -EBADF || e == -ESRCH) {
        int fd = injected(VMS__OP_PIDFD_OPEN);
        if (!fd) {
            count_syscall();
            fd = (int)syscall(SYS_pidfd_open, getpid(), 0);
            if (fd < 0) fd = -errno;
        }
        if (fd >= 0) {
            /* Kept where a fork child's handler finds it, should we be forked now. */
            atomic_store_explicit(&pmadv_fd, fd, memory_order_relaxed);
            e = pmadv_call(fd, iov, n);
            if (e >= 0) {
                state = PMADV_PIDFD;
            } else {
                atomic_store_explicit(&pmadv_fd, -1, memory_order_relaxed);
                vms__os_close_nocancel(fd);
                if (pmadv_refused((int)e)) state = PMADV_NO;
            }
        } else if (fd == -ENOSYS) {
            state = PMADV_NO;   /* before 5.3: no pidfd_open, nor process_madvise */
        }
    } else if (pmadv_refused((int)e)) {
        state = PMADV_NO;
    }
    if (e == -EINVAL) {
        /* The kernel's "not this advice" (5.10 to 6.12), or the first range refused (an
         * mlock'd one: the call stops there, and with nothing done returns its error).
         * That range alone tells: refused too, nothing is decided (the next batch asks
         * again; it was the process's first batch that chose range by range for good),
         * PMADV_UNDECIDED_MAX times in a row at most; dropped, the advice was refused. */
        int e0 = vms__os_discard(iov[0].iov_base, iov[0].iov_len);
        if (e0) {
            *err0 = e0;
            if (atomic_fetch_add_explicit(&pmadv_undecided, 1, memory_order_relaxed) + 1 <
                PMADV_UNDECIDED_MAX)
                state = PMADV_UNKNOWN;
        } else {
            e = (long)iov[0].iov_len;
        }
    }
    atomic_store_explicit(&pmadv_state, state, memory_order_release);
    return e;
}

/* How many of iov[0..n) one process_madvise drops, from the first: all of them, those
 * before the range it stopped at, or 0 (it stopped at the first, failed, or is not to be
 * used: decided so, or another thread is deciding). *err0: iov[0]'s error when the first
 * call's probe tried it alone, or an injected failure (0 otherwise). */
static size_t discard_batch(const struct iovec *iov, size_t n, int *err0)
{
    *err0 = 0;
    if (n < 2) return 0;   /* one range: a madvise costs the same */
    /* An injected failure is this call's, which stands for its first range: refused,
     * as a madvise of it would be (a count-down injection must fail the nth discard,
     * not be spent on a batch whose ranges are then dropped one by one). */
    int inj = injected(VMS__OP_MADV_DISCARD);
    if (inj) {
        *err0 = inj;
        return 0;
    }
    int state = atomic_load_explicit(&pmadv_state, memory_order_acquire);
    long r;
    if (VMS_UNLIKELY(state == PMADV_UNKNOWN) &&
        atomic_compare_exchange_strong(&pmadv_state, &state, PMADV_PROBING)) {
        r = pmadv_probe(iov, n, err0);
    } else if (state == PMADV_SELF || state == PMADV_PIDFD) {
        int target = state == PMADV_SELF
                         ? VMS_PIDFD_SELF_PROCESS
                         : atomic_load_explicit(&pmadv_fd, memory_order_relaxed);
        r = pmadv_call(target, iov, n);
    } else {
        return 0;
    }
    if (r <= 0) return 0;
    /* The kernel advances over whole ranges only: r is the length of the ranges done. */
    size_t done = 0, bytes = (size_t)r;
    while (done < n && iov[done].iov_len <= bytes) bytes -= iov[done++].iov_len;
    return done;
}

int vms__os_discard_many(const struct iovec *iov, size_t n, bool *refused)
{
    /* The kernel caps one call at UIO_MAXIOV (1024) ranges; callers batch less. */
    if (refused) memset(refused, 0, n * sizeof *refused);
    int first = 0;
    unsigned missed = 0;   /* calls for the rest in a row that dropped no range */
    for (size_t i = 0; i < n; i++) {
        /* One call for the ranges from i on; then the range it stopped at, alone (for
         * its error, and in case its failure was of the moment), and the rest in one
         * call again: no range is asked twice but the one a call stopped at. After two
         * such calls in a row stopped at their first range, refused alone too, range by
         * range until one is dropped: where every range is refused (mlockall) a batch
         * costs n + 2 calls, not 2n. Range by range where process_madvise is not used. */
        int e = 0;
        if (missed < 2) {
            size_t done = discard_batch(iov + i, n - i, &e);
            i += done;
            if (i == n) break;
            missed = done ? 0 : missed + 1;
        }
        if (!e) e = vms__os_discard(iov[i].iov_base, iov[i].iov_len);
        if (!e) {
            missed = 0;
            continue;
        }
        if (refused) refused[i] = true;
        if (!first) first = e;
    }
    return first;
}

/* A fork child shares nothing with the parent's pidfd target: the pidfd names the
 * parent, and a discard through it would drop the parent's pages. Forget it so the
 * child decides again; so does a child forked while another thread was probing (that
 * thread is not in the child to finish). Called by options.c's child handler, before
 * any fork handler of the program's. */
void vms__os_fork_child(void)
{
    int fd = atomic_load(&pmadv_fd);
    if (fd >= 0) {
        vms__os_close_nocancel(fd);
        atomic_store(&pmadv_fd, -1);
    }
    int state = atomic_load(&pmadv_state);
    if (state == PMADV_PIDFD || state == PMADV_PROBING) atomic_store(&pmadv_state, PMADV_UNKNOWN);
    if (atomic_load(&pmadv_state) == PMADV_UNKNOWN) atomic_store(&pmadv_undecided, 0);
}


/* async-signal-safe: one system call. */
int vms__os_sigaltstack(const stack_t *ss, stack_t *old)
{
    int e = injected(VMS__OP_SIGALTSTACK);
    if (e) return e;
    count_syscall();
    return sigaltstack(ss, old) == 0 ? 0 : -errno;
}

int vms__os_robust_list_works(void)
{
    /* The C library registered the calling thread's robust-futex list at its start; a
     * kernel that keeps it answers with it. qemu-user answers ENOSYS (it cannot walk a
     * guest's list at thread exit), as may a sandbox that filters the call. */
    int e = injected(VMS__OP_ROBUST_MUTEX);
    if (e) return e;
    void *head = NULL;
    size_t len = 0;
    count_syscall();
    if (syscall(SYS_get_robust_list, 0, &head, &len) != 0) return -errno;
    return head ? 0 : -ENOENT;
}

/* ---- file I/O that is never a cancellation point -------------------------------------
 * The C library's open, read, write and close are cancellation points (POSIX; glibc acts
 * on a pending deferred request in each). vmstack calls them while it holds locks: its
 * initialization's, the symbol loader's (inside dl_iterate_phdr, which holds the C
 * library's own loader lock), an arena class's. A thread with a pending deferred
 * cancellation that called vmstack ended there, with those locks held for good: every
 * later first use, thread start, stack allocation of that class, dlopen or C++ throw
 * waited for ever. So vmstack makes these calls as plain system calls, and no vmstack
 * function is a cancellation point (docs/api.md); its stdio reads of /proc open their
 * files with glibc's "c" mode flag (fopen(3): open and later reads not cancellation
 * points; fclose never is one in glibc). */

/* async-signal-safe: openat(2) as a raw system call. A descriptor, or a negative errno. */
int vms__os_open_nocancel(const char *path, int flags)
{
    long fd = syscall(SYS_openat, AT_FDCWD, path, flags | O_CLOEXEC, 0);
    return fd < 0 ? -errno : (int)fd;
}

/* async-signal-safe: read(2) as a raw system call. Bytes read, or a negative errno. */
ssize_t vms__os_read_nocancel(int fd, void *buf, size_t n)
{
    long r = syscall(SYS_read, fd, buf, n);
    return r < 0 ? -errno : (ssize_t)r;
}

/* async-signal-safe: write(2) as a raw system call. Bytes written, or a negative errno. */
ssize_t vms__os_write_nocancel(int fd, const void *buf, size_t n)
{
    long r = syscall(SYS_write, fd, buf, n);
    return r < 0 ? -errno : (ssize_t)r;
}

/* async-signal-safe: close(2) as a raw system call (Linux frees the descriptor even when
 * it reports an error: never retried). ThreadSanitizer does not see raw system calls: it
 * is told of the close through its syscall hooks, so that it forgets the descriptor's
 * number; else the next thread given that number (a pipe2 of its own, with no
 * happens-before in between) was reported as racing with this one. */
void vms__os_close_nocancel(int fd)
{
    int saved = errno;
#if defined(VMSTACK_TSAN)
    __sanitizer_syscall_pre_close(fd);
#endif
    long r = syscall(SYS_close, fd);
#if defined(VMSTACK_TSAN)
    __sanitizer_syscall_post_close(r, fd);
#endif
    (void)r;
    errno = saved;
}

pid_t vms__os_gettid(void)
{
    count_syscall();
    return (pid_t)syscall(SYS_gettid);
}

bool vms__os_thread_alive(pid_t tid)
{
    count_syscall();
    pid_t pid = getpid();
    count_syscall();
    return syscall(SYS_tgkill, pid, tid, 0) == 0 || errno != ESRCH;
}

int vms__os_probe_noaccess(const void *addr)
{
    /* write(2) copies from addr in the kernel: an inaccessible page makes it fail with
     * EFAULT instead of raising a signal. /dev/null would not read the buffer, so use a
     * pipe. */
    int p[2];
    count_syscall();
    if (pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0) return -errno;
    count_syscall();
    ssize_t r = vms__os_write_nocancel(p[1], addr, 1);
    vms__os_close_nocancel(p[0]);
    vms__os_close_nocancel(p[1]);
    if (r == 1) return 0;
    if (r == -EFAULT) return 1;
    return r < 0 ? (int)r : -EIO;
}

static atomic_int guard_method; /* VMS__GUARD_*, 0 = not decided */

/* Decides whether madvise guards work here: install one on a scratch reservation, open
 * the rest read-write, and check with the probe that the guard page is not readable
 * while its neighbour is. VMS__GUARD_MADVISE or VMS__GUARD_MPROTECT when the kernel
 * answered (EINVAL, ENOSYS or EPERM for the advice, or a guard that does not fault);
 * a negative errno when something else failed (ENOMEM, EAGAIN, EMFILE for the probe's
 * pipe, ...): that says nothing about the kernel, and the next caller asks again. */
static int detect_guard_method(void)
{
    size_t page = vms__os_page_size();
    void *p;
    int e = vms__os_reserve(2 * page, page, &p);
    if (e) return e;
    int method = vms__os_guard(p, page, VMS__GUARD_MADVISE);
    if (method == -EOPNOTSUPP) {
        method = VMS__GUARD_MPROTECT;           /* the kernel lacks it, or forbids it */
    } else if (method == 0 && (method = vms__os_open(p, 2 * page)) == 0) {
        int lo = vms__os_probe_noaccess(p), hi = vms__os_probe_noaccess((char *)p + page);
        if (lo < 0) method = lo;
        else if (hi < 0) method = hi;
        /* Accepted without effect (qemu-user 7.2): as if the kernel lacked it. */
        else method = lo == 1 && hi == 0 ? VMS__GUARD_MADVISE : VMS__GUARD_MPROTECT;
    }
    vms__os_release(p, 2 * page);
    return method;
}

int vms__os_guard_method(void)
{
    int m = atomic_load_explicit(&guard_method, memory_order_acquire);
    if (VMS_LIKELY(m)) return m;
    m = vms__opt.guard_request == VMS__GUARD_MPROTECT ? VMS__GUARD_MPROTECT
                                                      : detect_guard_method();
    if (m < 0) return m;   /* undecided: this caller's operation fails, the next asks again */
    int expected = 0;
    if (!atomic_compare_exchange_strong(&guard_method, &expected, m)) m = expected;
    return m;
}

const char *vms__os_guard_method_name(int method)
{
    switch (method) {
    case VMS__GUARD_MADVISE: return "madvise";
    case VMS__GUARD_MPROTECT: return "mprotect";
    default: return "none";
    }
}

#if defined(VMSTACK_HAVE_VALGRIND_H)
#include <valgrind/valgrind.h>
#endif

bool vms__os_valgrind_preload(const char *ld_preload)
{
    static const char mark[] = "vgpreload_";
    for (const char *s = ld_preload; s && *s;) {
        size_t n = strcspn(s, ": ");
        const char *name = s;                       /* the file name of entry [s, s + n) */
        for (const char *c = s; c < s + n; c++)
            if (*c == '/') name = c + 1;
        if ((size_t)(s + n - name) >= sizeof mark - 1 && !memcmp(name, mark, sizeof mark - 1))
            return true;
        s += n;
        s += strspn(s, ": ");
    }
    return false;
}

bool vms__os_under_valgrind(void)
{
#if defined(VMSTACK_HAVE_VALGRIND_H)
    if (RUNNING_ON_VALGRIND) return true;
#endif
    return vms__os_valgrind_preload(getenv("LD_PRELOAD"));
}

/* ---- residency (debug layer, direct backend) ------------------------------------------ */
/* mincore(2): vec[i] bit 0 is set when page i of [addr, addr + len) is resident, which
 * for anonymous memory means "touched since the last MADV_DONTNEED" (a read maps the
 * shared zero page and counts too). addr is page-aligned; vec has len / page entries. */
int vms__os_resident_pages(const void *addr, size_t len, unsigned char *vec)
{
    count_syscall();
    return mincore((void *)addr, len, vec) == 0 ? 0 : -errno;
}

/* MADV_NOHUGEPAGE on memory the os layer did not map itself (the direct backend's heap
 * blocks): a transparent huge page would make 2 MiB resident at a stack's first touch. */
int vms__os_no_huge_pages(void *addr, size_t len)
{
    count_syscall();
    return madvise(addr, len, MADV_NOHUGEPAGE) == 0 ? 0 : -errno;
}

/* ---- /proc readers (not on any hot path) --------------------------------------------- */
long vms__os_max_map_count(void)
{
    FILE *f = fopen("/proc/sys/vm/max_map_count", "rce");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

/* The start and end of a maps line ("lo-hi perms ..."), parsed by hand: the file can
 * have 65,000 lines (mprotect guards near vm.max_map_count), and sscanf per line cost
 * more than the kernel's formatting of them. False for a malformed line. */
static bool maps_range(const char *line, uintptr_t *lo, uintptr_t *hi)
{
    char *end;
    errno = 0;
    unsigned long a = strtoul(line, &end, 16);
    if (end == line || *end != '-') return false;
    const char *h = end + 1;
    unsigned long b = strtoul(h, &end, 16);
    if (end == h || errno) return false;
    *lo = a;
    *hi = b;
    return true;
}

long vms__os_map_count_ranges(const uintptr_t (*ranges)[2], size_t n)
{
    FILE *f = fopen("/proc/self/maps", "rce");
    if (!f) return -errno;
    long count = 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        /* A line longer than the buffer continues: count each mapping once. */
        bool complete = len > 0 && line[len - 1] == '\n';
        uintptr_t a, b;
        if (maps_range(line, &a, &b)) {
            bool in = n == 0;
            for (size_t i = 0; i < n && !in; i++) in = a < ranges[i][1] && b > ranges[i][0];
            count += in;
        }
        while (!complete && fgets(line, sizeof line, f)) {
            len = strlen(line);
            complete = len > 0 && line[len - 1] == '\n';
        }
    }
    fclose(f);
    return count;
}

long vms__os_map_count(uintptr_t lo, uintptr_t hi)
{
    const uintptr_t r[1][2] = { { lo, hi } };
    return vms__os_map_count_ranges(r, lo < hi ? 1 : 0);
}

/* PAGEMAP_SCAN (Linux 6.7, include/uapi/linux/fs.h; Debian 12's headers lack it): one
 * ioctl on /proc/self/pagemap lists the present pages of a range as runs. It counts what
 * mincore counts, about 4.5x faster, as it hands back runs instead of a byte per page
 * (vms_get_stats, best of 5 calls, with 300,000 touched default stacks: 0.19 s against
 * 0.89 s by mincore; docs/api.md). */
struct vms__page_region { uint64_t start, end, categories; };
struct vms__pm_scan_arg {
    uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
    uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define VMS_PAGEMAP_SCAN _IOWR('f', 16, struct vms__pm_scan_arg)
#define VMS_PAGE_IS_PRESENT (1ULL << 3)

enum { SCAN_UNKNOWN = 0, SCAN_YES = 1, SCAN_NO = -1 };
static atomic_int scan_state;

int vms__os_resident_method(void)
{
    return atomic_load_explicit(&scan_state, memory_order_relaxed);
}

/* Resident bytes of [lo, hi) by PAGEMAP_SCAN, or a negative errno. */
static long long resident_scan(uintptr_t lo, uintptr_t hi)
{
    int e = injected(VMS__OP_PAGEMAP_SCAN);
    if (e) return e;
    count_syscall();
    int fd = vms__os_open_nocancel("/proc/self/pagemap", O_RDONLY);
    if (fd < 0) return fd;
    struct vms__page_region vec[128];   /* 3 KiB: the caller may be on a small stack */
    long long total = 0;
    for (uint64_t p = lo; p < hi;) {
        struct vms__pm_scan_arg a;
        memset(&a, 0, sizeof a);
        a.size = sizeof a;
        a.start = p;
        a.end = hi;
        a.vec = (uintptr_t)vec;
        a.vec_len = sizeof vec / sizeof vec[0];
        a.category_mask = VMS_PAGE_IS_PRESENT;
        a.return_mask = VMS_PAGE_IS_PRESENT;
        count_syscall();
        long n = ioctl(fd, VMS_PAGEMAP_SCAN, &a);
        if (n < 0 || a.walk_end <= p) {
            total = n < 0 ? -errno : -EIO;   /* no progress: never loop for ever */
            break;
        }
        for (long i = 0; i < n; i++) total += (long long)(vec[i].end - vec[i].start);
        p = a.walk_end;
    }
    count_syscall();
    vms__os_close_nocancel(fd);
    return total;
}

/* Errors that say "no PAGEMAP_SCAN here" rather than "not this time": ENOTTY (before
 * 6.7), EINVAL (an older layout of the argument), ENOENT, EACCES and EPERM (no /proc, or
 * a sandbox), ENOSYS. */
static bool scan_refused(long long e)
{
    return e == -ENOTTY || e == -EINVAL || e == -ENOENT || e == -EACCES || e == -EPERM ||
           e == -ENOSYS;
}

/* Resident bytes of [lo, hi) by mincore, in 16 MiB steps, or a negative errno. */
static long long resident_mincore(uintptr_t lo, uintptr_t hi)
{
    size_t page = vms__os_page_size();
    unsigned char vec[4096];            /* 16 MiB of 4 KiB pages per call */
    long long total = 0;
    for (uintptr_t p = lo; p < hi;) {
        size_t pages = (hi - p + page - 1) / page;
        size_t k = pages < sizeof vec ? pages : sizeof vec;
        int e = vms__os_resident_pages((const void *)p, k * page, vec);
        if (e) return e;
        for (size_t j = 0; j < k; j++) total += vec[j] & 1;
        p += k * page;
    }
    return total * (long long)page;
}

long long vms__os_resident(uintptr_t lo, uintptr_t hi)
{
    int state = atomic_load_explicit(&scan_state, memory_order_relaxed);
    if (state == SCAN_UNKNOWN && vms__os_under_valgrind()) {
        /* Valgrind does not know the ioctl: it warns, and memcheck takes the regions
         * the kernel wrote for undefined. */
        atomic_store_explicit(&scan_state, SCAN_NO, memory_order_relaxed);
        state = SCAN_NO;
    }
    if (state != SCAN_NO) {
        long long r = resident_scan(lo, hi);
        if (r >= 0) {
            if (state == SCAN_UNKNOWN)
                atomic_store_explicit(&scan_state, SCAN_YES, memory_order_relaxed);
            return r;
        }
        /* Refused on the first try: mincore from now on. Any other failure (ENOMEM,
         * EMFILE): mincore this time. */
        if (state == SCAN_UNKNOWN && scan_refused(r))
            atomic_store_explicit(&scan_state, SCAN_NO, memory_order_relaxed);
    }
    return resident_mincore(lo, hi);
}
