/*
 * vmstack.h - virtually mapped stacks with guard regions for threads and fibers.
 *
 * This is the only installed header. It is the public contract of ../shared/DESIGN.md:
 * names, types and constant values here never change meaning; structs only grow at the
 * end, and zero in any configuration field means "default".
 *
 * Conventions: functions returning int return 0 (or a non-negative value documented
 * below) or a negative errno value; functions returning a pointer return NULL and set
 * errno. All calls are thread-safe. Nothing needs an explicit init. Signal handlers may
 * call vms_stack_remaining, vms_stack_self, vms_fiber_self, vms_fiber_state,
 * vms_fiber_oops, vms_fiber_stack, the vms_stack_* getters and vms_handle_fault, and no
 * other vmstack call (docs/api.md, Signal handlers).
 */
#ifndef VMSTACK_H
#define VMSTACK_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(VMSTACK_STATIC_DEFINE)
#define VMS_API
#elif defined(__GNUC__)
#define VMS_API __attribute__((visibility("default")))
#else
#define VMS_API
#endif

#define VMSTACK_VERSION_MAJOR 0
#define VMSTACK_VERSION_MINOR 1
#define VMSTACK_VERSION_PATCH 0

/* vms_config.on_overflow */
enum { VMS_KILL_TASK = 0, VMS_ABORT = 1 };

/* vms_config.flags */
enum {
    VMS_PAINT          = 1u << 0, /* track stack usage (vms_stack_max_used) */
    VMS_END_CHECK      = 1u << 1, /* end-of-stack magic word checked at switch and exit */
    VMS_FORCE_MPROTECT = 1u << 2, /* use mprotect guards even where madvise guards work */
    VMS_NO_SCRUB       = 1u << 3  /* vmstack extension: do not zero a reused stack's top
                                     page (faster; a new owner may see old data) */
};

/* vms_oops.kind */
enum { VMS_OVERFLOW = 1, VMS_UNDERFLOW = 2 };

typedef struct vms_config {     /* zero in any field means "default"; fields are only appended */
    size_t   stack_size;        /* usable bytes of a new stack; 0 = default (256 KiB) */
    size_t   guard_size;        /* no-access bytes below each stack; 0 = default (64 KiB) */
    unsigned cache_per_thread;  /* freed stacks kept per thread; 0 = default */
    int      on_overflow;       /* VMS_KILL_TASK (0, default) or VMS_ABORT */
    int      report_fd;         /* where oops reports go; 0 = default, stderr (fd 2) */
    unsigned flags;             /* VMS_PAINT | VMS_END_CHECK | VMS_FORCE_MPROTECT | VMS_NO_SCRUB */
} vms_config;

/* Sets the configuration before first use. -EBUSY once vmstack is in use (the first
 * stack, fiber or thread made, or vms_get_stats or vms_stack_usage, initializes it with
 * defaults and VMSTACK_* variables, vms_stack_usage(NULL, 0) too; vms_set_oops_hook and
 * calls refused for a NULL argument or a stack size above 1 GiB do not),
 * -EINVAL for NULL or a field out of range. */
VMS_API int vms_init(const vms_config *cfg);

/* ---- stacks: usable by any coroutine library ---------------------------------- */
typedef struct vms_stack vms_stack;
VMS_API vms_stack *vms_stack_alloc(size_t size);            /* 0 = default size */
VMS_API void       vms_stack_free(vms_stack *st);           /* NULL is a no-op */
VMS_API void      *vms_stack_base(const vms_stack *st);     /* lowest usable byte */
VMS_API void      *vms_stack_top(const vms_stack *st);      /* initial stack pointer, 16-byte aligned */
VMS_API size_t     vms_stack_size(const vms_stack *st);     /* usable bytes */
VMS_API size_t     vms_stack_max_used(const vms_stack *st); /* high-water mark, bytes */

/* ---- fibers -------------------------------------------------------------------- */
typedef struct vms_fiber vms_fiber;
typedef struct vms_fiber_attr { size_t stack_size; const char *name; } vms_fiber_attr;
enum { VMS_READY = 0, VMS_RUNNING = 1, VMS_SUSPENDED = 2, VMS_DONE = 3, VMS_KILLED = 4 };
VMS_API vms_fiber *vms_fiber_create(void (*fn)(void *), void *arg, const vms_fiber_attr *attr);
/* Runs f until it yields, returns or is killed; returns the new state (>= 0), or -EINVAL
 * for a fiber that cannot be resumed (RUNNING, DONE, KILLED, NULL, or another thread's),
 * or another negative errno (-ENOMEM) when this thread's alternate signal stack cannot
 * be set up at its first resume: a fiber never runs where its overflow could not be
 * caught. */
VMS_API int        vms_fiber_resume(vms_fiber *f);
VMS_API void       vms_fiber_yield(void);
VMS_API vms_fiber *vms_fiber_self(void);            /* NULL outside a fiber */
VMS_API int        vms_fiber_state(const vms_fiber *f);
VMS_API const struct vms_oops *vms_fiber_oops(const vms_fiber *f); /* non-NULL once KILLED */
VMS_API const vms_stack *vms_fiber_stack(const vms_fiber *f);      /* its stack: size, usage */
VMS_API void       vms_fiber_destroy(vms_fiber *f); /* any state but RUNNING */

/* ---- threads on vmstack stacks --------------------------------------------------- */
#ifndef __cplusplus
#define VMS_THREAD_KILLED ((void *)-2)      /* pthread_join's result for a killed thread */
#else    /* the same value, without a C-style cast (g++ -Wold-style-cast) */
#define VMS_THREAD_KILLED (reinterpret_cast<void *>(static_cast<intptr_t>(-2)))
#endif
/* pthread_create, with fn running on a guarded vmstack stack: 0, or a negative errno
 * (pthread_create's own errors negated). *t is an ordinary pthread_t: join, detach and
 * cancel it as any thread. attr's stack size is the vmstack stack's; its other
 * attributes go to pthread_create as set. docs/api.md, Threads. */
VMS_API int vms_thread_create(pthread_t *t, const pthread_attr_t *attr,
                              void *(*fn)(void *), void *arg);

/* ---- the current task ------------------------------------------------------------ */
/* Bytes left below the current stack pointer; SIZE_MAX if not on a vmstack stack. */
VMS_API size_t vms_stack_remaining(void);
/* vmstack extension: the stack the caller runs on (a fiber's, a vms thread's, or one from
 * vms_stack_alloc run by another library), for its bounds; NULL on any other stack. */
VMS_API const vms_stack *vms_stack_self(void);

/* ---- reports ----------------------------------------------------------------------- */
typedef struct vms_oops {
    int    kind;                 /* VMS_OVERFLOW or VMS_UNDERFLOW */
    void  *fault_addr, *pc, *sp;
    void  *stack_base;           /* the overrun stack */
    size_t stack_size;
    size_t overrun;              /* bytes beyond the stack's usable range */
    long   tid;                  /* kernel thread id */
    const char *name;            /* fiber or thread name, or "" */
    int    depth;
    void  *trace[32];            /* return addresses, innermost first */
} vms_oops;
typedef void (*vms_oops_hook)(const vms_oops *oops, void *ctx); /* async-signal context */
VMS_API void vms_set_oops_hook(vms_oops_hook hook, void *ctx);

/* For programs that own SIGSEGV themselves: call from your handler first; returns 0 when
 * the fault was not vmstack's (then handle it yourself), and does not return when it was.
 * Declared where <signal.h> declares siginfo_t (POSIX.1b, which brings SI_USER with it):
 * strict ISO C (-std=c99 without _POSIX_C_SOURCE) has neither, and the rest of this
 * header compiles there too. */
#ifdef SI_USER
VMS_API int vms_handle_fault(int sig, siginfo_t *info, void *uctx);
#endif

typedef struct vms_stats {
    size_t stacks_live, stacks_cached, arenas;
    size_t reserved_bytes, resident_bytes, mappings;
    size_t overflows;
    const char *guard_method;    /* "madvise" or "mprotect" or "none" */
    /* appended by vmstack (not in the first contract): */
    size_t tainted;              /* oopses so far in this process (the kernel's taint) */
} vms_stats;
VMS_API int vms_get_stats(vms_stats *out);

/* ---- stack usage histogram (appended by vmstack's debug layer) ------------------------ */
/* With VMS_PAINT, every stack freed (a fiber's or thread's when the task is destroyed or
 * joined, a raw one at vms_stack_free) adds its high-water mark to the histogram of its
 * size. Bucket i counts the stacks whose depth was at most (page size << i) and, for
 * i > 0, more than (page size << (i - 1)): i is the smallest stack size, as a power of
 * two pages, that would have held that stack. Depths are exact within one page. */
#define VMS_USAGE_BUCKETS 32
typedef struct vms_usage {
    size_t stack_size;                 /* usable bytes of the stacks counted here */
    size_t stacks;                     /* stacks of this size freed while painting */
    size_t max_used;                   /* the greatest depth among them, bytes */
    size_t buckets[VMS_USAGE_BUCKETS]; /* see above */
} vms_usage;
/* Fills out[0..n) with one entry per stack size that has counted stacks, smallest size
 * first, and returns how many sizes have data (which may exceed n: call again with a
 * larger array). out may be NULL when n is 0. -EINVAL for a NULL out with n > 0. All
 * counts are 0 without VMS_PAINT. */
VMS_API int vms_stack_usage(vms_usage *out, size_t n);

/* ---- trimming (appended by vmstack, not in the first contract) ----------------------- */
/* Gives the memory of idle stacks back to the kernel now, rather than at the next batch,
 * as malloc_trim does for the heap: the stacks of threads that have ended, the calling
 * thread's cached stacks (those it freed since its last scrubbing batch, at the depth
 * their owners left them, and its per-thread cache), and the warm top pages of every
 * stack in the shared lists. Other threads' own caches are theirs: each gives back its
 * own at its next batch, its exit or its own vms_trim. Returns 0, or a negative errno
 * when the kernel refused to drop some pages (they stay resident, already scrubbed or
 * as the last owner left them with VMS_NO_SCRUB). Not async-signal-safe. */
VMS_API int vms_trim(void);

#ifdef __cplusplus
}
#endif
#endif /* VMSTACK_H */
