/*
 * thread.c - vms_thread_create: POSIX threads whose body runs on a vmstack stack.
 *
 * Layer: task. The pthread itself gets a small stack from glibc, which keeps the
 * thread's TLS and TCB and runs only the start routine below; fn runs as a task
 * (VMS__TASK_THREAD, fiber.c) on a guarded vmstack stack through the same context
 * switch as fibers. The vmstack stack is allocated here, on the creating thread, so
 * bad sizes and ENOMEM come back from vms_thread_create; it is freed by the thread once
 * it no longer runs on it. Errors follow DESIGN.md: 0 or a negative errno (pthread_create
 * itself returns positive ones).
 */
#include "internal.h"

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* The glibc stack of a vms thread runs the start routine, the alternate-signal-stack
 * setup and, at exit, TLS and thread-specific-data destructors; fn never runs on it.
 * glibc carves the thread's static TLS and control block out of its top. At exit glibc
 * gives the part of a thread's stack more than PTHREAD_STACK_MIN (16 KiB) below the
 * stack pointer back to the kernel (one madvise call); the stack is sized so that part
 * is empty: OWN_FREE plus the static TLS plus a lower bound of the control block,
 * rounded down to a page, is less than OWN_FREE above the stack pointer at exit (glibc's
 * guard page being below). The call saved pays for the alternate signal stack's
 * sigaltstack: a vms thread makes no more system calls than a default pthread. About
 * 12 KiB are left for the destructors; one that overruns them is reported (guard.c,
 * classify_clib). Pages of 16 KiB or more can round that room away (64 KiB ones, down
 * to a size of 0): there the size is rounded up instead (vms__thread_own_size). Where
 * the static TLS size is not known, OWN_UNKNOWN_TLS, and on EINVAL a larger size where
 * probes show the TLS does not fit (size_after_einval), remembered in own_size.
 * Sanitizer runtimes run much more on it: they get 1 MiB. */
#define OWN_FREE        (16 * VMS_KIB)
#define OWN_TCB_MIN     (2 * VMS_KIB)       /* glibc 2.36's struct pthread: 2.3 KiB */
#define OWN_UNKNOWN_TLS (128 * VMS_KIB)
#if defined(VMSTACK_ASAN) || defined(VMSTACK_TSAN)
#define OWN_MIN (1024 * VMS_KIB)
#else
#define OWN_MIN 0
#endif
#define OWN_STACK_MAX  (64 * VMS_MIB)
/* What the rounding down may leave for the destructors at least: with 4 KiB pages it
 * always leaves more (OWN_FREE less under a page), so it is never rounded up there. */
#define OWN_ROOM_MIN    (12 * VMS_KIB)
static atomic_size_t own_size;
/* The smallest C-library stack size a pthread_create has accepted (0: none yet): any
 * size at least as large fits the static TLS too (glibc's check is a lower bound). */
static atomic_size_t own_fits;

void (*vms__thread_create_hook)(size_t size, bool probe);

void vms__thread_own_reset(size_t own)
{
    atomic_store(&own_size, own);
    atomic_store(&own_fits, 0);
}

static void own_worked(size_t size)
{
    size_t cur = atomic_load_explicit(&own_fits, memory_order_relaxed);
    while ((!cur || size < cur) &&
           !atomic_compare_exchange_weak_explicit(&own_fits, &cur, size, memory_order_relaxed,
                                                  memory_order_relaxed)) {}
}

size_t vms__thread_own_size(size_t tls, size_t page)
{
    size_t want = OWN_FREE + tls + OWN_TCB_MIN;
    size_t size = want & ~(page - 1);
    /* Pages larger than OWN_FREE - OWN_ROOM_MIN (16 KiB, 64 KiB) can round away all the
     * room, down to 0 (one page smaller than want): one page more then, at the price of
     * a possible madvise call at the thread's exit. */
    if (size < tls + OWN_TCB_MIN + OWN_ROOM_MIN) size = (want + page - 1) & ~(page - 1);
    return size;
}

/* The C-library stack size for this process (see above). */
static size_t own_stack_size(void)
{
    size_t size = OWN_UNKNOWN_TLS;
    /* glibc's own answer, as the sanitizers ask it (GLIBC_PRIVATE, in every glibc). */
    void (*tls_info)(size_t *, size_t *);
    *(void **)&tls_info = dlvsym(RTLD_DEFAULT, "_dl_get_tls_static_info", "GLIBC_PRIVATE");
    if (tls_info) {
        size_t tls = 0, align = 0;
        tls_info(&tls, &align);
        if (tls < OWN_STACK_MAX) size = vms__thread_own_size(tls, vms__os_page_size());
    }
    long min = sysconf(_SC_THREAD_STACK_MIN);
    if (min > 0 && (size_t)min > size) size = (size_t)min;
    return size > OWN_MIN ? size : OWN_MIN;
}

static void *thread_start(void *p)
{
    return vms__task_thread_run(p);
}

static int create(pthread_t *t, const pthread_attr_t *a, struct vms__task *task, size_t size)
{
    if (VMS_UNLIKELY(vms__thread_create_hook != NULL)) vms__thread_create_hook(size, false);
    return pthread_create(t, a, thread_start, task);
}

static void *probe_start(void *p)
{
    return p;
}

/* Whether the C library starts a thread whose attributes are the defaults but for a
 * stack of size bytes: 0 (it ran and was joined), EINVAL (the size does not fit its
 * static TLS), or another error number (cannot tell). */
static int size_probe(size_t size)
{
    pthread_attr_t pa;
    pthread_t pt;
    int e = pthread_attr_init(&pa);
    if (e) return e;
    if (VMS_UNLIKELY(vms__thread_create_hook != NULL)) vms__thread_create_hook(size, true);
    if (!(e = pthread_attr_setstacksize(&pa, size)))
        e = pthread_create(&pt, &pa, probe_start, NULL);
    pthread_attr_destroy(&pa);
    if (!e) pthread_join(pt, NULL);
    return e;
}

/* pthread_create said EINVAL for a C-library stack of own bytes and the caller's other
 * attributes: the size to try instead, or 0 when the size is not what it refused. glibc
 * says EINVAL both for a stack too small for its static TLS (before any mmap or clone)
 * and for attributes of the caller's: a priority out of its policy's range (after the
 * stack's mmap), an affinity naming no CPU it can use (after the clone). Trying larger
 * sizes blindly, up to 64 MiB and more, cost 7 failed calls, each an mmap of the size
 * tried (and a clone), before the caller's EINVAL came back. So: a size that has worked
 * before fits (EINVAL is the attributes'); else probe threads with default attributes
 * tell: one that starts at own means the same; one that does not is retried with 4x the
 * size until one starts, or a size of OWN_STACK_MAX or more did not. Probes that cannot tell (EAGAIN: no thread
 * to spare) leave the caller's EINVAL. At most one failed attempt of the caller's thread
 * and one probe thread started per process (a probe that fails for its size makes no
 * thread); the search for a size at most once while none is known to fit. */
static size_t size_after_einval(size_t own)
{
    size_t fits = atomic_load_explicit(&own_fits, memory_order_relaxed);
    if (fits && own >= fits) return 0;
    size_t size = own;
    int e;
    while ((e = size_probe(size)) == EINVAL && size < OWN_STACK_MAX) size *= 4;
    if (e) return 0;
    own_worked(size);
    return size == own ? 0 : size;
}

/* Reads what vmstack takes from the caller's attributes: the requested stack size in
 * *stack_size (0: the default). 0 or a positive errno; a caller-supplied stack is
 * refused with EINVAL. */
static int attr_stack(const pthread_attr_t *src, size_t *stack_size)
{
    /* When no stack was given, glibc's pthread_attr_getstack reports NULL minus the
     * size (its stack address is the top); other C libraries say NULL. No real stack
     * ends at address 0, so either means "none". (pthread_attr_getstackaddr would say
     * it directly but is deprecated, with a warning at every link.) */
    void *addr = NULL;
    size_t size = 0;
    int e = pthread_attr_getstack(src, &addr, &size);
    if (e) return e;
    if (addr && (uintptr_t)addr + size != 0)
        return EINVAL;                /* a caller-supplied stack: vmstack provides its own */

    /* glibc reports its default (RLIMIT_STACK, usually 8 MiB) when no size was set;
     * that means "default", which for vmstack is its own default stack size. */
    pthread_attr_t def;
    size_t def_size = 0;
    if (pthread_getattr_default_np(&def) == 0) {
        pthread_attr_getstacksize(&def, &def_size);
        pthread_attr_destroy(&def);
    }
    e = pthread_attr_getstacksize(src, &size);
    if (e) return e;
    *stack_size = size == def_size ? 0 : size;
    return 0;
}

int vms_thread_create(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                      void *arg)
{
    if (!t || !fn) return -EINVAL;
    /* pthread_create gets the caller's attributes whole, in a copy of the object whose
     * stack size becomes the small C-library stack's. Copied attribute by attribute,
     * through the getters, they were not the same: a getter cannot tell a value set to
     * the default from one never set, and pthread_create tells them apart (with
     * PTHREAD_EXPLICIT_SCHED, a policy or priority never set is the creator's, not
     * SCHED_OTHER's and 0), and an affinity wider than a cpu_set_t did not fit the
     * getter and was dropped. glibc's pthread_attr_t holds its values and a pointer to
     * an extension (affinity, signal mask) that the copy shares: pthread_create only
     * reads it and pthread_attr_setstacksize writes one field of the copy's own, so the
     * copy is never destroyed, which would free the caller's extension. */
    pthread_attr_t a;
    size_t stack_size = 0;
    int e;
    if (attr) {
        if ((e = attr_stack(attr, &stack_size))) return -e;
        memcpy(&a, attr, sizeof a);
    } else if ((e = pthread_getattr_default_np(&a))) {
        /* Without attributes pthread_create takes the process's defaults
         * (pthread_setattr_default_np: detach state, guard size, scheduling), not
         * those of pthread_attr_init: so does a vms thread. */
        return -e;
    }

    size_t own = atomic_load_explicit(&own_size, memory_order_relaxed);
    if (!own) {
        own = own_stack_size();
        size_t none = 0;
        atomic_compare_exchange_strong(&own_size, &none, own);
    }
    if ((e = pthread_attr_setstacksize(&a, own))) goto destroy_attr;

    struct vms__task *task = vms__task_thread_new(fn, arg, stack_size);
    if (!task) {
        e = errno;
        goto destroy_attr;
    }
    size_t tried = own;
    e = create(t, &a, task, own);
    if (VMS_UNLIKELY(e == EINVAL)) {
        /* Maybe the static TLS does not fit after all: a larger size if so. */
        size_t more = size_after_einval(own);
        if (more && pthread_attr_setstacksize(&a, more) == 0) {
            own = more;
            e = create(t, &a, task, own);
        }
    }
    if (e == 0 && VMS_UNLIKELY(!atomic_load_explicit(&own_fits, memory_order_relaxed)))
        own_worked(own);
    if (e == 0 && own != tried) {
        /* Remembered as a maximum: a smaller size another thread found is not enough. */
        size_t cur = atomic_load_explicit(&own_size, memory_order_relaxed);
        while (cur < own && !atomic_compare_exchange_weak(&own_size, &cur, own)) {}
    }
    if (e) vms__task_thread_discard(task);
destroy_attr:
    if (!attr) pthread_attr_destroy(&a);   /* a copy of the caller's is not ours to */
    /* The stacks of vms threads that have ended go back to the cache (their scrub with
     * them): after pthread_create, so that on a second CPU the new thread starts
     * meanwhile. Its stack came from the cache's clean stacks, never from these. */
    vms__stack_reap();
    return -e;
}
