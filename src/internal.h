/*
 * internal.h - what vmstack's source files share, grouped by the file that defines it.
 *
 * Layers (DESIGN.md), lowest first; each calls only the ones below it:
 *   os (os_linux.c) -> arena (arena.c | direct.c) -> cache (cache.c) -> stack.c
 *   -> guard island (guard.c, oops.c, trace.c, sigsafe.c) -> task (fiber.c, thread.c)
 *   -> debug (debug.c) -> tools.
 * Names: vms__<module>_<verb>, hidden from the shared library's symbol table by
 * -fvisibility=hidden. Everything marked "async-signal-safe" may run in the fault
 * handler: it takes no lock, calls no malloc or stdio, and reads only memory that was
 * prepared before any fault could happen.
 */
#ifndef VMSTACK_INTERNAL_H
#define VMSTACK_INTERNAL_H

#include "vmstack.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <ucontext.h>

#define VMS_HIDDEN __attribute__((visibility("hidden")))
#define VMS_TLS    __thread __attribute__((tls_model("initial-exec")))
#define VMS_LIKELY(x)   __builtin_expect(!!(x), 1)
#define VMS_UNLIKELY(x) __builtin_expect(!!(x), 0)
/* On the fault handler's functions that call a noreturn function (the kill's jump to the
 * resumer, and the deaths). ASan (gcc's and clang's) puts a call of
 * __asan_handle_no_return before every such call in instrumented code; on an alternate
 * signal stack that reads the thread's stack bounds with pthread_getattr_np, which
 * mallocs (14 blocks per kill on the main thread) and there opens /proc/self/maps: not
 * async-signal-safe, and with no descriptor left ASan's check of it failed and the
 * process ended (exit status 1) instead of the kill. Code that is not instrumented gets
 * no such call; what that call did that matters (the alternate stack's shadow) the kill
 * does itself (vms__track_signal_stack_left). Nothing in other builds. */
#define VMS_NO_ASAN_NORETURN __attribute__((no_sanitize("address")))

#define VMS_KIB ((size_t)1024)
#define VMS_MIB (VMS_KIB * 1024)
#define VMS_GIB (VMS_MIB * 1024)

/* Defaults (DESIGN.md). The default stack is 256 KiB of address space: 16x the kernel's
 * THREAD_SIZE, enough for typical C library calls with room to spare, and it costs only
 * its touched pages. The 64 KiB guard catches any frame up to 64 KiB that skips pages. */
#define VMS_DEFAULT_STACK_SIZE (256 * VMS_KIB)
#define VMS_DEFAULT_GUARD_SIZE (64 * VMS_KIB)
/* The largest stack a call may ask for; larger sizes are EINVAL. 1 GiB is 128x the main
 * thread's usual 8 MiB limit: anything above is a bug in the caller's arithmetic. */
#define VMS_MAX_STACK_SIZE     VMS_GIB
/* The largest guard: 1 GiB, for the same reason. */
#define VMS_MAX_GUARD_SIZE     VMS_GIB
/* With mprotect guards, the part of vm.max_map_count left to the rest of the program:
 * stack allocation fails with ENOMEM where fewer than max / VMS__MAP_RESERVE_DIV
 * mappings would be left (arena.c; `vmstack info` counts the stacks that fit with it). */
#define VMS__MAP_RESERVE_DIV 16

/* The size of an arena, log2, where the kernel grants it (arena.c). */
#define VMS__ARENA_MAX_SHIFT   38
/* The size of a class's first arena, log2 (arena.c): 16 GiB. A build may make it smaller
 * (CMake's VMSTACK_ARENA_FIRST_SHIFT), not below one 4 GiB chunk of the lookup table, so
 * that the first arena is placed as usual: the aarch64 cross tests take 32, since
 * qemu-user pays at every exit of a process for each page it ever reserved. */
#ifndef VMS__ARENA_FIRST_SHIFT
#define VMS__ARENA_FIRST_SHIFT 34
#endif
#if VMS__ARENA_FIRST_SHIFT < 32 || VMS__ARENA_FIRST_SHIFT > VMS__ARENA_MAX_SHIFT
#error "VMS__ARENA_FIRST_SHIFT (VMSTACK_ARENA_FIRST_SHIFT) must be 32 to 38"
#endif

/* ------------------------------------------------------------------ options.c ---- */
enum { VMS__GUARD_NONE = 0, VMS__GUARD_MADVISE = 1, VMS__GUARD_MPROTECT = 2 };

struct vms__options {
    size_t   stack_size;        /* default usable size, page multiple, a class size */
    size_t   guard_size;        /* page multiple, >= one page */
    unsigned cache_per_thread;  /* clean stacks kept per thread */
    int      on_overflow;       /* VMS_KILL_TASK or VMS_ABORT */
    int      report_fd;         /* resolved: 2 when the user said 0 */
    unsigned flags;             /* VMS_* flags */
    int      guard_request;     /* VMS__GUARD_MADVISE (try it) or VMS__GUARD_MPROTECT (forced) */
    bool     guard_valgrind;    /* mprotect chosen because the process runs under Valgrind */
};
/* Valid once vms__ensure_init() has returned 0; never changes afterwards. */
VMS_HIDDEN extern struct vms__options vms__opt;
/* For commands whose processes each initialize vmstack (`vmstack bench` forks one per
 * group, `vmstack demo --direct` runs vmstack-direct): says now, once, what is wrong
 * with the VMSTACK_* variables, as the first use would, without deciding the options
 * (vms_init still works), and makes this process and those it forks afterwards quiet
 * about them. Nothing is said when vmstack is initialized already (it was said then).
 * cfg (or NULL): the fields the process's vms_init calls will give, so that a warning
 * says their value is used and not the default. set_by (or NULL), for the processes
 * that differ: set_by(flag, ctx) names those that give vms_init a VMS_* flag that cfg
 * does not, completing "using the default, except ..." (NULL when none does). */
VMS_HIDDEN void vms__options_check_env(const vms_config *cfg,
                                       const char *(*set_by)(unsigned flag, void *ctx),
                                       void *ctx);
/* Quiet about the VMSTACK_* variables from now on: for a process started by one that
 * has called vms__options_check_env (vmstack-direct run by `vmstack demo --direct`). */
VMS_HIDDEN void vms__options_env_said(void);
/* Initializes vmstack on first use (options, then the fault handler). Cheap after the
 * first call: one acquire load. Returns 0 or a negative errno. */
VMS_HIDDEN int vms__ensure_init(void);
/* Whether vmstack has been initialized (vms__ensure_init or vms_init succeeded). */
VMS_HIDDEN bool vms__initialized(void);
/* Parses a size with an optional k/m/g suffix. 0 on success, -EINVAL when malformed. */
VMS_HIDDEN int vms__parse_size(const char *s, size_t *out);

/* ---------------------------------------------------------------------- log.c ---- */
/* "vmstack: error: ..." / "vmstack: warning: ..." on stderr, one write(2) per message.
 * Not async-signal-safe (uses vsnprintf); never call from the fault handler. */
VMS_HIDDEN void vms__log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
VMS_HIDDEN void vms__log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Each warning once per process: *once is a flag owned by the caller. */
VMS_HIDDEN void vms__log_warn_once(atomic_int *once, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A task name for a quoted one-line message: control characters and '"' become '?' (so a
 * name can neither end the line nor forge one), cut to VMS__CLEAN_NAME - 1 bytes. The
 * fault handler's reports do the same with vms__line_name. */
#define VMS__CLEAN_NAME 64
VMS_HIDDEN void vms__clean_name(const char *name, char out[VMS__CLEAN_NAME]);
/* Reports a memory-safety violation by the caller and aborts (SIGABRT). */
VMS_HIDDEN _Noreturn void vms__fatal(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---------------------------------------------------------------- os_linux.c ---- */
/* The only file that calls mmap, munmap, mprotect, madvise, process_madvise and
 * sigaltstack on stacks and arenas, and prctl to name mappings (trace.c maps ELF files
 * read-only; fiber.c and guard.c read thread names with prctl). Every function returns
 * 0 or a negative errno. */
/* async-signal-safe once set (vms__guard_install sets it before installing the handler). */
VMS_HIDDEN size_t vms__os_page_size(void);
/* async-signal-safe: open (O_CLOEXEC added), read, write and close as raw system calls,
 * never cancellation points (the C library's are: a pending cancellation would end the
 * thread inside vmstack with its locks held). A descriptor or byte count, or a negative
 * errno; close keeps errno. */
VMS_HIDDEN int vms__os_open_nocancel(const char *path, int flags);
VMS_HIDDEN ssize_t vms__os_read_nocancel(int fd, void *buf, size_t n);
VMS_HIDDEN ssize_t vms__os_write_nocancel(int fd, const void *buf, size_t n);
VMS_HIDDEN void vms__os_close_nocancel(int fd);
/* async-signal-safe: CLOCK_MONOTONIC in nanoseconds, for the bounded waits. */
VMS_HIDDEN long vms__os_now_ns(void);
/* Reserves size bytes aligned to align (a power of two), PROT_NONE, MAP_NORESERVE,
 * MADV_NOHUGEPAGE, named [anon:vmstack] where the kernel can name mappings. Holds no
 * more than size bytes of address space at any moment (RLIMIT_AS), unless the range
 * below an unaligned first try is taken, or align is above size: then size + align for
 * a moment. */
VMS_HIDDEN int vms__os_reserve(size_t size, size_t align, void **out);
/* Reserves exactly [addr, addr + size) (MAP_FIXED_NOREPLACE): 0, -EEXIST where any of it
 * is mapped already, or the kernel's errno (-ENOMEM under RLIMIT_AS). */
VMS_HIDDEN int vms__os_reserve_at(void *addr, size_t size);
/* Address space the process may still map under RLIMIT_AS (ulimit -v): the limit less
 * what is mapped now (/proc/self/statm), or without /proc the largest reservation the
 * kernel grants, found by trying (a dozen or two system calls); SIZE_MAX without a
 * limit. *known is false where neither could tell (a try failed otherwise than the
 * limit makes it fail): then the limit itself, an upper bound. */
VMS_HIDDEN size_t vms__os_address_room(bool *known);
VMS_HIDDEN int vms__os_release(void *addr, size_t size);          /* munmap */
VMS_HIDDEN int vms__os_open(void *addr, size_t size);             /* -> read-write */
/* Installs a guard with the given method (VMS__GUARD_MADVISE, or _MPROTECT: the range
 * made PROT_NONE again). For the madvise method, returns -EOPNOTSUPP when the kernel
 * lacks MADV_GUARD_INSTALL. */
VMS_HIDDEN int vms__os_guard(void *addr, size_t size, int method);
/* Gives the pages back (MADV_DONTNEED): they read as zero afterwards; guards stay. */
VMS_HIDDEN int vms__os_discard(void *addr, size_t size);
/* The same, for memory that is not vmstack's (a sanitizer's shadow): no fault injection,
 * not counted among vmstack's system calls. */
VMS_HIDDEN int vms__os_discard_foreign(void *addr, size_t size);
/* The same for n ranges (n <= 1024): one system call where the kernel allows
 * process_madvise on its own process (Linux 6.13+), one madvise per range otherwise.
 * A range the kernel refuses (an mlock'd one: EINVAL) does not stop the others: the call
 * stops at it, it is tried alone once, and the ranges after it go in one call again, so
 * no range dropped is asked again. refused[i] (when refused is not NULL) says which were
 * refused; returns the first refusal's error, or 0. */
VMS_HIDDEN int vms__os_discard_many(const struct iovec *iov, size_t n, bool *refused);
/* 1 when addr cannot be read by the kernel (write(2) from it fails with EFAULT), 0 when
 * it can, negative errno when the probe itself failed. Signal-free. */
VMS_HIDDEN int vms__os_probe_noaccess(const void *addr);
/* The guard method this process uses: detects MADV_GUARD_INSTALL once (install on a
 * scratch reservation, verify with a probe) unless mprotect is forced. A negative errno
 * while undecided: the probe failed for a reason that says nothing about the kernel
 * (ENOMEM, EAGAIN, ...); the caller's operation fails and the next caller asks again. */
VMS_HIDDEN int vms__os_guard_method(void);
VMS_HIDDEN const char *vms__os_guard_method_name(int method);
/* True when this process runs under Valgrind: its client request (RUNNING_ON_VALGRIND)
 * where valgrind.h was found at configure time, or Valgrind's preload libraries in
 * LD_PRELOAD (Valgrind removes them from the environment of the programs a program
 * under it starts). Valgrind does not know madvise guards (docs/api.md, "Tools"). */
VMS_HIDDEN bool vms__os_under_valgrind(void);
/* The preload test of vms__os_under_valgrind: an entry of an LD_PRELOAD value (':' or
 * space separated; NULL for none) whose file name starts with "vgpreload_". */
VMS_HIDDEN bool vms__os_valgrind_preload(const char *ld_preload);
/* vm.max_map_count, or -1 when unreadable. */
VMS_HIDDEN long vms__os_max_map_count(void);
/* Number of mappings of this process (lines of /proc/self/maps); with lo < hi, only
 * those that overlap [lo, hi). Negative errno when /proc is not readable. */
VMS_HIDDEN long vms__os_map_count(uintptr_t lo, uintptr_t hi);
/* The same for the mappings that overlap any of n ranges [r[i][0], r[i][1]), in one
 * read of /proc/self/maps; n == 0 counts them all. */
VMS_HIDDEN long vms__os_map_count_ranges(const uintptr_t (*r)[2], size_t n);
/* Resident bytes of [lo, hi) (page-aligned lo, mapped throughout): a page counts when it
 * is in memory, the shared zero page included. From the kernel's PAGEMAP_SCAN (Linux
 * 6.7), else from mincore in 16 MiB steps. Negative errno when neither can tell (mincore
 * fails for unmapped memory; PAGEMAP_SCAN counts none there). */
VMS_HIDDEN long long vms__os_resident(uintptr_t lo, uintptr_t hi);
/* How vms__os_resident counts: 1 by PAGEMAP_SCAN, -1 by mincore (refused, or under
 * Valgrind), 0 not decided yet (no call so far). */
VMS_HIDDEN int vms__os_resident_method(void);
/* Whether the kernel keeps the calling thread's robust-futex list (and so marks a
 * robust mutex "owner died" when its thread ends): 0 or a negative errno. One system
 * call; fault injection: VMS__OP_ROBUST_MUTEX. */
VMS_HIDDEN int vms__os_robust_list_works(void);
/* The calling thread's kernel ID (one system call). */
VMS_HIDDEN pid_t vms__os_gettid(void);
/* Whether a thread of this process with kernel ID tid exists (tgkill with signal 0;
 * two system calls). A thread that ended may have had its ID reused: then true. */
VMS_HIDDEN bool vms__os_thread_alive(pid_t tid);
/* async-signal-safe: sigaltstack(2) with fault injection (VMS__OP_SIGALTSTACK). */
VMS_HIDDEN int vms__os_sigaltstack(const stack_t *ss, stack_t *old);
/* mincore(2) on [addr, addr + len) (addr page-aligned): vec[i] & 1 when page i is
 * resident. 0 or a negative errno. For the debug layer and vms__os_resident's count. */
VMS_HIDDEN int vms__os_resident_pages(const void *addr, size_t len, unsigned char *vec);
/* madvise(MADV_NOHUGEPAGE) on memory mapped by someone else (the direct backend's heap
 * blocks). 0 or a negative errno; failure is harmless. */
VMS_HIDDEN int vms__os_no_huge_pages(void *addr, size_t len);
/* System calls made by the os layer so far (for benchmarks and tests). */
VMS_HIDDEN unsigned long vms__os_syscalls(void);

/* Fault injection (compiled in with VMSTACK_FAULT_INJECTION): make the nth next call
 * (1 = the next one) of an operation fail with err, or with "always" every call. */
enum { VMS__OP_MMAP, VMS__OP_MPROTECT, VMS__OP_MADV_GUARD, VMS__OP_MADV_DISCARD,
       VMS__OP_SIGALTSTACK, VMS__OP_ROBUST_MUTEX, VMS__OP_ROBUST_WALK,
       VMS__OP_PMADV_SELF,   /* process_madvise on PIDFD_SELF (before 6.14: EBADF) */
       VMS__OP_PIDFD_OPEN,   /* pidfd_open (the target of process_madvise before 6.14) */
       VMS__OP_PMADV_PIDFD,  /* process_madvise through that pidfd (5.10-6.12: EINVAL) */
       VMS__OP_SIGACTION,
       VMS__OP_PAGEMAP_SCAN, /* residency by PAGEMAP_SCAN (before 6.7: ENOTTY) */
       VMS__OP_SETSPECIFIC,  /* pthread_setspecific (ENOMEM: no second-level block) */
       VMS__OP_COUNT };
VMS_HIDDEN void vms__os_inject(int op, unsigned nth, int err, bool always);
VMS_HIDDEN void vms__os_inject_clear(void);
/* The injected negative errno for this call of op, or 0, for failures the os layer does
 * not make itself (VMS__OP_ROBUST_WALK: a kernel that keeps the robust list but never
 * walks it, so a dead thread's robust mutex is never marked; VMS__OP_SIGACTION: the
 * fault handler's installation, guard.c). */
VMS_HIDDEN int vms__os_injected(int op);
/* pthread_setspecific with fault injection (VMS__OP_SETSPECIFIC): 0 or its error number.
 * glibc's fails (ENOMEM) when a key beyond the first 32 needs a per-thread block that
 * calloc cannot give; every caller has a way to go on without the value. */
VMS_HIDDEN int vms__os_setspecific(pthread_key_t key, const void *value);

/* ------------------------------------------------------------- arena.c, direct.c -- */
/* A size class per power of two from one page to VMS_MAX_STACK_SIZE. */
#define VMS__CLASSES 32

enum { VMS__SLOT_UNUSED = 0, VMS__SLOT_FREE = 1, VMS__SLOT_LIVE = 2 };
/* A slot record's state word: the VMS__SLOT_* state in its low byte, above it how many
 * times the slot was handed out (mod 2^24), which the public handle carries (stack.c). */
#define VMS__SLOT_STATE_MASK 0xffu
#define VMS__SLOT_GEN_SHIFT 8
#define VMS__SLOT_STATE(st) \
    (atomic_load_explicit(&(st)->state, memory_order_acquire) & VMS__SLOT_STATE_MASK)

/* One record per slot, in the metadata array at the start of its arena. Records are
 * never freed, so a vms_stack pointer stays dereferenceable for the process's life
 * (the fault handler and the double-free check rely on that). 64 bytes: one cache line,
 * so threads freeing neighbouring stacks do not share a line. */
struct vms_stack {
    _Atomic uint32_t state;       /* VMS__SLOT_* | hand-outs << VMS__SLOT_GEN_SHIFT */
    uint8_t  cls;                 /* size class */
    uint8_t  tasks;               /* task layer: tasks placed on it so far (mod 256) */
    uint8_t  warm;                /* 1: top page resident and zero; 0: all discarded;
                                     2: all resident and zero (zeroed by hand); with
                                     VMS_NO_SCRUB the top page (with the magic, the
                                     bottom one too) holds what the last owner left,
                                     and 3: freed straight to the LIFO, nothing
                                     discarded since (VMS__WARM_AS_LEFT); 4: never
                                     handed out, holding what the heap left
                                     (VMS__WARM_UNZEROED) */
    uint8_t  internal;            /* 1: vmstack's own (an alternate signal stack) */
    struct vms_stack *next;       /* free-list link (cache layer) */
    char    *base;                /* lowest usable byte */
    size_t   size;                /* usable bytes */
    struct vms__arena *arena;
    void *_Atomic owner;          /* the task running on it (task layer), or NULL */
    size_t   max_used;            /* debug layer: high-water mark of the last owner */
    uintptr_t debug;              /* debug layer: painting state */
};
/* st->warm of a stack freed with VMS_NO_SCRUB straight into a thread's LIFO: every page
 * as its last owner left it (the debug layer's painting repaints what it used). */
#define VMS__WARM_AS_LEFT 3
/* st->warm of a direct-backend slot whose heap block could not be discarded: its bytes
 * are what the heap left there (resident or not), and the cache zeroes it whole at its
 * first hand-out (warm 2 from then on), so that a block's failed discard costs a memset
 * of the stacks handed out, not of the whole block (up to 1 GiB, all made resident).
 * Counted warm until then, like any stack that may hold resident pages. */
#define VMS__WARM_UNZEROED 4
_Static_assert(sizeof(struct vms_stack) <= 64, "a slot record fits one cache line");
_Static_assert(VMS__CLASSES <= 256, "a size class fits the slot record's byte");

/* The record of a slot opened for the first time (both backends): FREE, cold (nothing
 * resident), usable bytes [base, base + size). The caller publishes it. */
static inline void vms__slot_record_init(struct vms_stack *st, unsigned cls,
                                         struct vms__arena *a, char *base, size_t size)
{
    st->cls = (uint8_t)cls;
    st->tasks = 0;
    st->warm = 0;
    st->internal = 0;
    st->next = NULL;
    st->base = base;
    st->size = size;
    st->arena = a;
    atomic_store_explicit(&st->owner, NULL, memory_order_relaxed);
    st->max_used = 0;
    st->debug = 0;
    atomic_store_explicit(&st->state, VMS__SLOT_FREE, memory_order_relaxed);
}

struct vms__arena {
    char    *lo, *hi;             /* the whole reservation (aligned) */
    char    *slots;               /* first slot (its guard first) */
    size_t   slot_size;           /* guard + class size */
    size_t   guard_size;
    uint32_t nslots;              /* slots that fit */
    _Atomic uint32_t opened;      /* slots opened so far (guards installed, read-write) */
    unsigned cls;
    bool     unzeroed;            /* direct backend: not discarded (VMS__WARM_UNZEROED) */
    struct vms_stack *meta;       /* nslots records */
};

/* Where an address is, for the fault handler and for tests. */
enum { VMS__WHERE_NONE = 0,  /* not in any arena's slots */
       VMS__WHERE_STACK,     /* a usable byte of st */
       VMS__WHERE_GUARD,     /* the guard below st (NULL above the last opened slot)
                                and above below (NULL for slot 0) */
       VMS__WHERE_TRAILER }; /* the trailing guard above the arena's last slot: below */
struct vms__where {
    int kind;
    struct vms__arena *arena;
    struct vms_stack *st;         /* the slot the address is in (NULL for TRAILER) */
    struct vms_stack *below;      /* the slot under the guard, whose top it protects */
};
/* async-signal-safe: O(1), no locks, no allocation. Returns kind. */
VMS_HIDDEN int vms__arena_where(const void *addr, struct vms__where *out);
/* The record for a pointer handed out as a vms_stack, or NULL for any other pointer.
 * async-signal-safe. */
VMS_HIDDEN struct vms_stack *vms__arena_record(const void *p);
/* Class of a usable size (page-rounded, then up to a power of two); -EINVAL beyond
 * VMS_MAX_STACK_SIZE. The same classes for both backends (arena.c, direct.c). */
static inline int vms__arena_class(size_t size, unsigned *cls)
{
    if (size == 0 || size > VMS_MAX_STACK_SIZE) return -EINVAL;
    unsigned shift = (unsigned)__builtin_ctzl(vms__os_page_size());
    size_t pages = (size - 1) >> shift;   /* whole pages beyond the first */
    unsigned c = pages ? (unsigned)(64 - __builtin_clzl(pages)) : 0;
    if (c >= VMS__CLASSES) return -EINVAL;
    *cls = c;
    return 0;
}
/* The usable size of class cls's stacks. */
static inline size_t vms__arena_class_size(unsigned cls)
{
    return (size_t)1 << ((unsigned)__builtin_ctzl(vms__os_page_size()) + cls);
}
/* Opens up to want new slots of class cls (guards first, then read-write) and returns
 * their records in out[] (state FREE, all pages zero, not resident; or, direct backend
 * when discarding its heap block failed, warm = VMS__WARM_UNZEROED: the cache zeroes
 * each at its first hand-out). Returns how many,
 * or a negative errno (-ENOMEM: address space or mapping limit) when none. Caller holds
 * no lock; the arena layer serializes. */
VMS_HIDDEN int vms__arena_open(unsigned cls, struct vms_stack **out, unsigned want);
/* trace.c: the loaded objects' files mapped read-only for the symbols of call traces (one
 * mapping each, kept for the process's life). */
VMS_HIDDEN size_t vms__trace_views(void);
/* Totals for vms_get_stats. */
VMS_HIDDEN void vms__arena_totals(size_t *arenas, size_t *reserved, size_t *mappings,
                                  size_t *resident);
/* Calls fn for every arena published so far (safe at any time, lock-free). */
VMS_HIDDEN void vms__arena_each(void (*fn)(struct vms__arena *a, void *ctx), void *ctx);
/* "madvise", "mprotect" or "none" (direct backend). */
VMS_HIDDEN const char *vms__arena_guard_method(void);
/* fork: takes every lock of the arena layer (an arena being opened is finished first)
 * and releases them, in the parent and in the child. */
VMS_HIDDEN void vms__arena_fork_lock(void);
VMS_HIDDEN void vms__arena_fork_unlock(void);
/* The number of size classes a stack can have (VMS_MAX_STACK_SIZE's is the last): the
 * fork handlers lock only theirs, fewer than VMS__CLASSES (ThreadSanitizer follows at
 * most 64 locks held at once). */
static inline unsigned vms__arena_classes_used(void)
{
    unsigned cls = VMS__CLASSES - 1;
    (void)vms__arena_class(VMS_MAX_STACK_SIZE, &cls);
    return cls + 1;
}

/* ------------------------------------------------------------------- cache.c ---- */
/* Per-thread LIFO of clean stacks in front of a shared free list per class; scrubbing
 * and trimming. See docs/internals.md. */
VMS_HIDDEN struct vms_stack *vms__cache_get(unsigned cls);  /* NULL + errno */
/* Files st (state already FREE). Returns true at every 32nd free of the calling thread
 * (every 32nd of the threads without a cache, together): a moment for work the caller
 * does now and then (stack.c reaps ended threads' stacks), no lock of the cache held. */
VMS_HIDDEN bool vms__cache_put(struct vms_stack *st);
/* Scrubs this thread's dirty stacks now instead of at its next batch: after the free of a
 * stack known to be resident to its end (a killed fiber's). */
VMS_HIDDEN void vms__cache_flush(void);
/* Gives st's pages below its top page back to the kernel, without filing st anywhere
 * (its scrubbing stays due when it is freed): for a stack that stays taken until its
 * thread has ended, a killed thread's. A failure is ignored: the scrubbing remains. */
VMS_HIDDEN void vms__cache_drop_pages(struct vms_stack *st);
/* Scrubs the ranges with one system call per 32 (vms__os_discard_many: a refused range
 * costs one call more, the others are not asked again), and zeroes by hand those the
 * kernel refused (their pages stay resident: zeroed[i], when
 * zeroed is not NULL). Returns how many were zeroed by hand. */
VMS_HIDDEN size_t vms__cache_scrub_ranges(const struct iovec *iov, size_t n, bool *zeroed);
VMS_HIDDEN size_t vms__cache_live(void);                    /* stacks handed out, not freed */
/* Returns this thread's cached stacks to the shared lists (thread exit, tests). */
VMS_HIDDEN void vms__cache_flush_thread(void);
/* vms_trim's part: vms__cache_flush_thread, then every shared list's warm stacks dropped
 * whole (taken out of the list, dropped without its lock, filed back cold). 0, or the
 * error of the first discard that failed (its pages stay resident). */
VMS_HIDDEN int vms__cache_trim(void);
/* Tests only: the shared lists' count of warm stacks (with budget claimed for stacks
 * about to join them, and the warm stacks a vms_trim has in hand), bounded by 1,024
 * besides those whose discard the kernel refused; the warm stacks in the lists, counted
 * by list; and a hook called by vms__cache_flush_thread between deciding which stacks
 * stay warm and pushing them. */
VMS_HIDDEN size_t vms__cache_shared_warm(void);
VMS_HIDDEN size_t vms__cache_shared_warm_listed(void);
VMS_HIDDEN extern void (*vms__cache_flush_hook)(void);
/* Tests only: called by a push to the shared lists after their lock is released, when
 * another thread can already take the stacks pushed. */
VMS_HIDDEN extern void (*vms__cache_push_hook)(void);
/* Tests only: called by vms_trim for each shared list (cls) with warm stacks, once they
 * are out of the list and its lock released, before their pages are dropped. */
VMS_HIDDEN extern void (*vms__cache_trim_hook)(unsigned cls);
/* Tests only: called by vms_trim after each batch of a list's stacks in hand was dropped
 * (and marked cold), before it is filed back under the list's lock. */
VMS_HIDDEN extern void (*vms__cache_trim_dropped_hook)(unsigned cls);
/* Tests only: the calling thread's LIFO as a fork catches it in a push that has stored
 * its count and not yet its entry (torn: the count one more, the entry untouched), and
 * back (!torn: the count one less, that entry still unwritten). False when the thread
 * has no cache, its LIFO no room, or (!torn) its last entry was written. */
VMS_HIDDEN bool vms__cache_lifo_tear(bool torn);
/* fork: takes every lock of the cache (shared lists, thread registry) and releases them.
 * In the child, vms__cache_fork_child releases them after setting the caches of the
 * threads the child does not have aside (true when there were any), which
 * vms__cache_adopt_forsaken, called by the child's first reap, takes back. */
VMS_HIDDEN void vms__cache_fork_lock(void);
VMS_HIDDEN void vms__cache_fork_unlock(void);
VMS_HIDDEN bool vms__cache_fork_child(void);
VMS_HIDDEN void vms__cache_adopt_forsaken(void);

/* ------------------------------------------------------------------- stack.c ---- */
/* vms_stack_alloc and vms_stack_free inside vmstack, on slot records: the public
 * functions take and give handles (the record's address plus a tag, stack.c), which
 * vms__stack_handle and vms__stack_record convert (the latter: NULL unless h is the
 * current handle of a live stack). */
VMS_HIDDEN struct vms_stack *vms__stack_alloc(size_t size);   /* NULL + errno */
VMS_HIDDEN void vms__stack_free(struct vms_stack *st);
VMS_HIDDEN vms_stack *vms__stack_handle(const struct vms_stack *st);
VMS_HIDDEN struct vms_stack *vms__stack_record(const vms_stack *h);
/* vms_stack_alloc for vmstack's own use (alternate signal stacks): not counted in
 * vms_stats.stacks_live nor in the usage histogram, which describe the program's stacks.
 * Taken from a pool of such stacks; when it is empty and reap is true, the stacks of
 * threads that have ended are reaped first (into the caller's cache). Freed with
 * vms__stack_free. */
VMS_HIDDEN struct vms_stack *vms__stack_alloc_internal(size_t size, bool reap);
/* Frees st once the calling thread has ended (its alternate signal stack, which stays
 * installed until then; a stack the thread no longer runs on, to spare its exit the
 * scrubbing system call): 0, or a negative errno when the C library cannot tell
 * (robust mutexes that do not work, as under qemu-user): then free it the usual way.
 * Either way the thread no longer holds st (vms__stack_hold). */
VMS_HIDDEN int vms__stack_free_at_exit(struct vms_stack *st);
/* Frees the stacks of threads that have ended (vms_thread_create, vms_get_stats,
 * vms_stack_usage); in the child of a fork, first those that the parent's other threads
 * held or cached. Stack frees also reap, a few graves at a time, every 32nd free of a
 * thread while graves wait (stack.c, reap_from_free). */
VMS_HIDDEN void vms__stack_reap(void);
/* vms__stack_reap, then waits (bounded) for a reap in flight on another thread: after
 * it, every thread joined before the call has its stacks freed (vms_get_stats,
 * vms_stack_usage). Not for hot paths. */
VMS_HIDDEN void vms__stack_reap_settled(void);
/* The calling thread holds alt (its alternate signal stack) and body (a vms thread's
 * body stack, whose owner task release lets go of it and frees it), either NULL, until
 * it buries them (vms__stack_free_at_exit) or lets them go (vms__stack_unhold): in the
 * child of a fork, what the parent's other threads held is freed. */
VMS_HIDDEN void vms__stack_hold(struct vms_stack *alt, struct vms_stack *body,
                                void (*release)(struct vms_stack *));
VMS_HIDDEN void vms__stack_unhold(const struct vms_stack *st);
/* Tests only: graves waiting to be reaped (read without a reap). */
VMS_HIDDEN size_t vms__stack_graves(void);
/* Whether a grave was seen opened by the kernel in this process (tests). */
VMS_HIDDEN bool vms__stack_graves_proven(void);
/* vmstack's fork handlers (options.c registers them at load and calls these once vmstack
 * is initialized, under its init lock): before fork every lock of vmstack is taken, in
 * the order the code nests them, after a reap in progress has finished, so that the
 * child's one thread finds them free and no stack in flight. */
VMS_HIDDEN void vms__stack_fork_prepare(void);
VMS_HIDDEN void vms__stack_fork_parent(void);
VMS_HIDDEN void vms__stack_fork_child(void);
/* The child's part of the fiber layer (which fibers ran on threads the fork left behind)
 * and of the os layer (the pidfd names the parent): called by options.c's child handler
 * whether or not vmstack is initialized. */
VMS_HIDDEN void vms__fiber_fork_child(void);
VMS_HIDDEN void vms__os_fork_child(void);
/* Tests only: when set, called by the thread that initializes vmstack, under its init
 * lock, before anything is set up. */
VMS_HIDDEN extern void (*vms__init_hook)(void);
/* Tests only: when set, called by the forking thread first thing in fork's prepare
 * handler, before it takes any lock: a test can tell that a fork has begun. */
VMS_HIDDEN extern void (*vms__fork_hook)(void);
/* Tests only: when set, called by a reaper between taking graves off the list and
 * freeing their stacks. */
VMS_HIDDEN extern void (*vms__stack_reap_hook)(void);
/* Tests only: when set, called by a thread (forking, or in vms_get_stats or
 * vms_stack_usage) before each yield of its wait for a reap in flight on another thread. */
VMS_HIDDEN extern void (*vms__stack_reap_wait_hook)(void);
/* How long a thread waits for a reap in flight on another thread (1 s); a test that
 * holds a reaper on purpose while a thread waits for it raises it. */
VMS_HIDDEN extern long vms__stack_reap_wait_ns;
/* Stack geometry helpers for the task layer. */
static inline char *vms__stack_top_of(const struct vms_stack *st) { return st->base + st->size; }

/* async-signal-safe: the caller's stack pointer. */
static inline __attribute__((always_inline)) char *vms__current_sp(void)
{
    char *sp;
#if defined(__x86_64__)
    __asm__ volatile("movq %%rsp, %0" : "=r"(sp));
#elif defined(__aarch64__)
    __asm__ volatile("mov %0, sp" : "=r"(sp));
#else
    sp = __builtin_frame_address(0);
#endif
    return sp;
}

/* Room probes, at the entry of the calls whose slow parts take vmstack's locks or
 * allocate (a fiber's creation and destroy, a resume's slow part, a stack's alloc and
 * free): the running task (base: its stack's lowest byte, NULL on a stack of no task)
 * with less than VMS__PROBE_ROOM bytes left faults here, at its guard's top byte, before
 * the call has taken anything, and is killed as at any overflow of its stack. Without
 * the probe it overflowed inside the call, where a fault is not killed alone (vmstack
 * "may hold one of its locks": oops.c) and the process aborted. The room is what those
 * calls' deepest paths need below their entry (measured: tests/guard_tasks.c,
 * slow_calls_at_the_end_of_the_stack_kill_only_the_fiber sweeps it: vms_stack_alloc
 * with nothing cached, and the destroys, took up to 2.1 KiB with gcc -O2 and clang -O0),
 * about twice that; the sanitizers' frames are larger.
 * Each probe's load (and each VMS__ROOM_MARK) records its address in the section
 * .rodata.vms_room_probes, as a 32-bit offset from the entry itself (no dynamic
 * relocation, the section stays read-only), under a numeric local label: a compiler
 * that duplicates the asm (unrolled, cloned or tail-duplicated code) makes two entries,
 * both true, where a named label would be defined twice. oops.c walks each file's table
 * (VMS__ROOM_TABLE: bounds of our own, not the linker's __start_/__stop_ symbols, which
 * GNU ld 2.40 exports from the shared library even when referenced hidden): the fault
 * handler's unsafe-kill rule takes a fault in a vmstack function at or before one of
 * its probes (the prologue, the sanitizers' entry hooks, the probe) for one that holds
 * no lock, and so the callers of such a function must hold none either. Branchless
 * (cmov/csel), so that the load sits in the function's first block, after nothing but
 * its prologue. VMS_NOCLONE keeps the probing functions whole, under their own symbol
 * (oops.c compares the pc with the entries inside the faulting function's range). The
 * direct backend has no guard. */
#if defined(VMSTACK_ASAN) || defined(VMSTACK_TSAN)
#define VMS__PROBE_ROOM (8 * 1024)
#else
#define VMS__PROBE_ROOM (4 * 1024)   /* measured: up to 2.1 KiB (gcc -O2, clang -O0) */
#endif
#ifdef __clang__
#define VMS_NOCLONE __attribute__((noinline))
#else
#define VMS_NOCLONE __attribute__((noinline, noclone))
#endif
#define VMS__PROBE_RECORD                                                              \
    "\t.pushsection .rodata.vms_room_probes,\"a\"\n\t.subsection 1\n\t.balign 4\n"      \
    "\t.long 1b - .\n\t.popsection\n"
/* At file scope, once in each file with probes or marks (fiber.c, stack.c): the hidden
 * bounds vms__room_probes_<tag> and vms__room_probes_<tag>_end of that file's entries
 * (subsections 0 and 2 of its section, around the entries' subsection 1: the assembler
 * orders them so whatever order the compiler emits the functions in). */
#define VMS__ROOM_TABLE_ASM(tag)                                                       \
    __asm__("\t.pushsection .rodata.vms_room_probes,\"a\"\n"                          \
            "\t.subsection 0\n\t.balign 4\n"                                          \
            "\t.globl vms__room_probes_" #tag "\n\t.hidden vms__room_probes_" #tag "\n" \
            "vms__room_probes_" #tag ":\n"                                              \
            "\t.subsection 2\n"                                                         \
            "\t.globl vms__room_probes_" #tag "_end\n"                                  \
            "\t.hidden vms__room_probes_" #tag "_end\n"                                 \
            "vms__room_probes_" #tag "_end:\n"                                          \
            "\t.popsection\n")
#if defined(VMSTACK_VMAP) && defined(__x86_64__)
#define VMS__ROOM_PROBE(base)                                                           \
    do {                                                                               \
        uintptr_t b_ = (uintptr_t)(base), a_, t_;                                     \
        int c_;                                                                        \
        __asm__ volatile("mov %%rsp, %[a]\n\t"                                         \
                         "lea %c[room](%%rsp), %[t]\n\t"                               \
                         "cmp %[b], %[t]\n\t"                                          \
                         "cmovb %[g], %[a]\n"                                          \
                         "1:\tmovzbl (%[a]), %[c]\n" VMS__PROBE_RECORD                 \
                         : [a] "=&r"(a_), [t] "=&r"(t_), [c] "=r"(c_)                  \
                         : [b] "r"(b_), [g] "r"(b_ - 1), [room] "i"(-VMS__PROBE_ROOM)  \
                         : "memory", "cc");                                            \
    } while (0)
#define VMS__ROOM_MARK() __asm__ volatile("1:\n" VMS__PROBE_RECORD ::: "memory")
#define VMS__ROOM_TABLE(tag) VMS__ROOM_TABLE_ASM(tag)
#elif defined(VMSTACK_VMAP) && defined(__aarch64__)
#define VMS__ROOM_PROBE(base)                                                           \
    do {                                                                               \
        uintptr_t b_ = (uintptr_t)(base), a_, t_;                                     \
        int c_;                                                                        \
        __asm__ volatile("mov %[a], sp\n\t"                                            \
                         "sub %[t], %[a], #%[room]\n\t"                                \
                         "cmp %[t], %[b]\n\t"                                          \
                         "csel %[a], %[g], %[a], lo\n"                                 \
                         "1:\tldrb %w[c], [%[a]]\n" VMS__PROBE_RECORD                  \
                         : [a] "=&r"(a_), [t] "=&r"(t_), [c] "=r"(c_)                  \
                         : [b] "r"(b_), [g] "r"(b_ - 1), [room] "i"(VMS__PROBE_ROOM)   \
                         : "memory", "cc");                                            \
    } while (0)
#define VMS__ROOM_MARK() __asm__ volatile("1:\n" VMS__PROBE_RECORD ::: "memory")
#define VMS__ROOM_TABLE(tag) VMS__ROOM_TABLE_ASM(tag)
#else
#define VMS__ROOM_PROBE(base) ((void)(base))
#define VMS__ROOM_MARK() ((void)0)
#define VMS__ROOM_TABLE(tag) struct vms__room_table_##tag##_unused
#endif
/* For code that cannot read the running task (stack.c's entries): the probe in a
 * function of its own (fiber.c), followed by VMS__ROOM_MARK in the caller, which marks
 * the end of what runs before it there (the prologue and that call). */
VMS_HIDDEN void vms__task_room_probe(void);

/* --------------------------------------------------- guard.c (signal island) ---- */
/* vms__guard_install: installs the SIGSEGV/SIGBUS handler and reads what it needs (the
 * main stack's range, symbol tables), once, before vmstack is marked initialized.
 * vms__guard_thread_init: an alternate signal stack for the calling thread (once per
 * thread, freed at thread exit); called after initialization for the first thread, by
 * vms_stack_alloc on a thread's first allocation, and by the task layer. */
VMS_HIDDEN int vms__guard_install(void);
VMS_HIDDEN int vms__guard_thread_init(void);
/* The same for a thread vmstack created, called first thing by its start routine (no
 * program code ran on it yet: a cheaper setup, see guard.c). alt: an alternate stack of
 * vms__guard_alt_size() bytes its creator took for it (vms__stack_alloc_internal), or
 * NULL; it is the thread's now, installed or freed. */
VMS_HIDDEN int vms__guard_task_thread_init(struct vms_stack *alt);
/* The size of the alternate signal stack a thread gets. */
VMS_HIDDEN size_t vms__guard_alt_size(void);
/* The calling thread's alternate signal stack if it is vmstack's and freed at the
 * thread's exit by the guard layer, else NULL. */
VMS_HIDDEN struct vms_stack *vms__guard_thread_alt(void);
VMS_HIDDEN size_t vms__guard_overflows(void);
/* An overflow found otherwise than by a fault (the end magic): counts it and passes oops,
 * unless NULL, to the oops hook. Not async-signal-safe. */
VMS_HIDDEN void vms__guard_late_overflow(const vms_oops *oops);
struct vms__task_info;
/* async-signal-safe: whether the task ti, running on thread tid, is a vms thread that
 * is the process's main thread (its body forked): never killed alone, for the reason
 * vms__guard_fork_main_why gives. */
VMS_HIDDEN bool vms__guard_is_fork_main(const struct vms__task_info *ti, long tid);
VMS_HIDDEN extern const char vms__guard_fork_main_why[];
VMS_HIDDEN size_t vms__guard_tainted(void);
/* async-signal-safe: enables again an SS_AUTODISARM alternate stack that a kill left
 * disabled (ss as the kernel reported it to the fault handler). Should sigaltstack fail,
 * a line on the report fd says that a later overflow on this thread cannot be reported:
 * the kernel has no stack to deliver its SIGSEGV on. */
VMS_HIDDEN void vms__guard_rearm(const stack_t *ss);

/* ------------------------------------------------------- fiber.c (task layer) ---- */
enum { VMS__TASK_FIBER = 1, VMS__TASK_THREAD = 2 };
struct vms__task_info {
    int kind;                     /* VMS__TASK_FIBER or VMS__TASK_THREAD */
    const char *name;             /* "" when unnamed */
    unsigned long id;
    const struct vms_stack *stack;
    uintptr_t entry;              /* the function it runs (the fiber's or thread's fn) */
};
/* The return address of every task's first function: the instruction after the entry
 * trampoline's call (arch/<arch>/switch.S). */
VMS_HIDDEN extern const char vms__ctx_trampoline_ret[];
/* async-signal-safe: describes the task running on this thread; -1 when the thread is
 * not running a vmstack task. */
VMS_HIDDEN int vms__task_current(struct vms__task_info *out);
/* async-signal-safe: from the fault handler, on the alternate signal stack. Records the
 * oops in the current task, marks it KILLED, sets the signal mask to *mask (the one the
 * resumer goes on with; NULL: left as it is) and switches to the task's resumer, which
 * sees VMS_KILLED (a fiber) or returns VMS_THREAD_KILLED (a thread). rearm, unless NULL,
 * is the alternate stack to put back once off it (SS_AUTODISARM: the kernel disabled it
 * for the handler, and only sigreturn, which a kill skips, would enable it again).
 * cancel is the thread's cancellation state to put back on the resumer's stack (the
 * handler disabled it; a killed thread's at its end). Never returns. */
/* async-signal-safe: for the fault handler: makes current again a fiber of this thread
 * whose stack st is, caught between its yield (or end) making its resumer current and
 * the switch away; false when st is no such fiber's (fiber.c). */
VMS_HIDDEN bool vms__task_reclaim_leaving(struct vms_stack *st);
VMS_HIDDEN _Noreturn void vms__task_kill_current(const vms_oops *oops, const sigset_t *mask,
                                                 const stack_t *rearm, int cancel);
/* For thread.c: a thread task is prepared on the creating thread (so that a bad size or
 * ENOMEM is reported by vms_thread_create itself; NULL + errno), run on the new pthread
 * (returns fn's result, or VMS_THREAD_KILLED; frees the task and its stack), or
 * discarded when pthread_create failed. */
struct vms__task;
VMS_HIDDEN struct vms__task *vms__task_thread_new(void *(*fn)(void *), void *arg,
                                                  size_t stack_size);
VMS_HIDDEN void *vms__task_thread_run(struct vms__task *t);
VMS_HIDDEN void vms__task_thread_discard(struct vms__task *t);
/* Tests: called by a vms thread as it ends, after its body, while vms__task_thread_run
 * gives its stack back. */
VMS_HIDDEN extern void (*vms__task_thread_end_hook)(void);
/* thread.c: the size of a vms thread's C-library stack for a static TLS of tls bytes
 * with pages of page bytes (a power of two), before the C library's minimum: a multiple
 * of page that leaves the thread's exit no pages to give back and its destructors room.
 * Pure; a function of its own so that tests can give any page size. */
VMS_HIDDEN size_t vms__thread_own_size(size_t tls, size_t page);
/* Tests: called before every pthread_create of vms_thread_create, with the C-library
 * stack size: for the caller's thread (probe false), or for a probe thread with default
 * attributes (true) that tells whether an EINVAL was about the size. */
VMS_HIDDEN extern void (*vms__thread_create_hook)(size_t size, bool probe);
/* Tests: the C-library stack size of later vms threads as if found (0: found again at
 * the next), and no size known to have worked. */
VMS_HIDDEN void vms__thread_own_reset(size_t own);

/* ------------------------------------------------------------------- debug.c ---- */
/* Painting, high-water marks, end-of-stack magic, the usage histogram (docs/debugging.md).
 * The end magic: VMS__END_MAGIC in both 8-byte words of the lowest 16 bytes of a stack
 * (16, so that the usable part above stays 16-byte aligned), written at hand-out. */
#define VMS__END_MAGIC      UINT64_C(0x57ac6e9d57ac6e9d)  /* the kernel's STACK_END_MAGIC, twice */
#define VMS__END_MAGIC_SIZE 16
/* Called by vms_stack_alloc for every stack handed out: paints (VMS_PAINT) and writes the
 * end magic (VMS_END_CHECK). */
VMS_HIDDEN void vms__debug_stack_alloc(struct vms_stack *st);
/* Called by vms_stack_free (after the state change, before the cache): adds the stack's
 * final depth to the usage histogram (VMS_PAINT). raw: freed by the program's
 * vms_stack_free (not a task's stack): measured whole, as vms_stack_max_used does. */
VMS_HIDDEN void vms__debug_stack_free(struct vms_stack *st, bool raw);
/* Tests only: when set, called by a free with VMS_PAINT between its first and second
 * update of the histogram, under the histogram's lock. */
VMS_HIDDEN extern void (*vms__debug_hist_hook)(void);
/* fork (stack.c's handlers, last): the histogram's lock, taken and released. */
VMS_HIDDEN void vms__debug_fork_lock(void);
VMS_HIDDEN void vms__debug_fork_unlock(void);
/* Called by vms_stack_free when one of vmstack's own stacks (an alternate signal stack,
 * used by signal handlers) leaves them for the cache: with VMS_PAINT, records how deep it
 * was used, so that the next owner's painting covers it (VMS_NO_SCRUB), without counting
 * it in the histogram. */
VMS_HIDDEN void vms__debug_stack_reclaim(struct vms_stack *st);
/* The deepest use since hand-out, within one page; 0 without VMS_PAINT. whole: every
 * page is looked at (vms_stack_max_used); otherwise the scan assumes use from the top
 * down and stops a guard's worth of untouched pages below it (cost by depth). */
VMS_HIDDEN size_t vms__debug_max_used(const struct vms_stack *st, bool whole);
/* Task layer, when a fiber or thread ends (before it frees the stack): with VMS_PAINT,
 * writes "vmstack: fiber "x" (id N) used greatest stack depth: U bytes, L bytes left"
 * to the report fd when U is a new maximum for the stack's size. */
VMS_HIDDEN void vms__debug_task_end(const struct vms__task_info *ti);
/* Task layer, at every switch and at task exit: 0 when the end magic is intact (or
 * VMS_END_CHECK is off), -1 when it was overwritten. Two loads and a compare, inline. */
static inline int vms__debug_end_check(const struct vms_stack *st)
{
    if (VMS_LIKELY(!(vms__opt.flags & VMS_END_CHECK))) return 0;
    const volatile uint64_t *w = (const volatile uint64_t *)(const void *)st->base;
    return VMS_LIKELY(((w[0] ^ VMS__END_MAGIC) | (w[1] ^ VMS__END_MAGIC)) == 0) ? 0 : -1;
}
/* Task layer, when vms__debug_end_check() said -1: writes
 * "vmstack: corrupted stack end detected in fiber "x" (id N) on thread T: stack [lo-hi)
 * end word 0x... (expected 0x...)" and applies the overflow policy: VMS_ABORT dies by
 * SIGSEGV here; VMS_KILL_TASK writes the "killed" line and returns, and the caller then
 * kills the task. Like an overflow it counts in vms_stats.overflows and is passed to the
 * oops hook (oops: the task's, filled in by the caller; NULL without a task). ti may be
 * NULL (a raw stack). Not async-signal-safe. */
VMS_HIDDEN void vms__debug_end_corrupted(const struct vms__task_info *ti,
                                         const struct vms_stack *st, const vms_oops *oops);
/* Bytes at the bottom of every stack that a task must not use: VMS__END_MAGIC_SIZE with
 * VMS_END_CHECK, else 0 (for vms_stack_remaining). */
static inline size_t vms__debug_end_reserve(void)
{
    return (vms__opt.flags & VMS_END_CHECK) ? VMS__END_MAGIC_SIZE : 0;
}

#endif /* VMSTACK_INTERNAL_H */
