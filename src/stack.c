/*
 * stack.c - the public stack API (vms_stack_*) and vms_get_stats.
 *
 * A vms_stack handle is the address of its slot record in an arena's metadata array
 * plus a tag (below), so checking that a pointer is one vmstack handed out is O(1)
 * (vms__arena_record), and the record's state word catches a double free even when two
 * threads race to free.
 * Both are memory-safety violations by the caller: a one-line report and abort(), as is
 * freeing the stack of a live fiber or thread (its owner word says so).
 * Everything else that is wrong (NULL, absurd sizes, no memory) is an errno.
 */
#include "internal.h"
#include "island.h"
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

/* Set once a thread has asked the guard layer for its alternate signal stack. Cleared
 * on the forking thread in a fork child, so that the child's first stack allocation
 * frees what the parent's other threads left (below, fork_pending) off the fast path. */
static VMS_TLS bool thread_ready;
static atomic_bool fork_pending;

/* ---- handles ------------------------------------------------------------------------
 *
 * A vms_stack handle is its slot record's address plus the slot's hand-out count modulo
 * HANDLE_TAGS (records are HANDLE_TAGS bytes, aligned to it). The count lives in the
 * record's state word above the slot state and moves on at every hand-out, so a handle
 * kept after its stack was freed and handed out again is stale: a late vms_stack_free
 * is reported as the double free it is, instead of freeing the new owner's stack, and
 * the getters refuse it. Only a slot handed out again a multiple of HANDLE_TAGS times
 * since goes unnoticed. Inside vmstack, records are used directly. */
#define HANDLE_TAGS 64u
_Static_assert(sizeof(struct vms_stack) == HANDLE_TAGS, "a record's bytes are its tags");

static inline uint32_t slot_gen(uint32_t word)
{
    return word >> VMS__SLOT_GEN_SHIFT;
}

/* The handle of rec while its state word is w. */
static inline vms_stack *handle_of(const struct vms_stack *rec, uint32_t w)
{
    return (vms_stack *)((uintptr_t)rec + slot_gen(w) % HANDLE_TAGS);
}

vms_stack *vms__stack_handle(const struct vms_stack *rec)
{
    return rec ? handle_of(rec, atomic_load_explicit(&rec->state, memory_order_relaxed))
               : NULL;
}

/* The record a handle names (NULL: not one vmstack handed out); *tag_ok tells whether
 * the handle is the record's current one. */
static inline __attribute__((always_inline)) struct vms_stack *
handle_record(const vms_stack *h, uint32_t *word, bool *tag_ok)
{
    uintptr_t u = (uintptr_t)h;
    struct vms_stack *rec = vms__arena_record((const void *)(u & ~(uintptr_t)(HANDLE_TAGS - 1)));
    if (!rec) return NULL;
    *word = atomic_load_explicit(&rec->state, memory_order_acquire);
    *tag_ok = slot_gen(*word) % HANDLE_TAGS == u % HANDLE_TAGS;
    return rec;
}

struct vms_stack *vms__stack_record(const vms_stack *h)
{
    uint32_t w;
    bool ok;
    struct vms_stack *rec = h ? handle_record(h, &w, &ok) : NULL;
    return rec && ok && (w & VMS__SLOT_STATE_MASK) == VMS__SLOT_LIVE ? rec : NULL;
}

/* A FREE record the caller owns becomes LIVE, its hand-out count one more; returns the
 * new state word. */
static inline uint32_t slot_set_live(struct vms_stack *st)
{
    uint32_t w = atomic_load_explicit(&st->state, memory_order_relaxed);
    w = ((w & ~(uint32_t)VMS__SLOT_STATE_MASK) + (1u << VMS__SLOT_GEN_SHIFT)) | VMS__SLOT_LIVE;
    atomic_store_explicit(&st->state, w, memory_order_release);
    return w;
}

static inline __attribute__((always_inline)) struct vms_stack *stack_alloc(size_t size,
                                                                            uint32_t *word,
                                                                            bool setup);

VMS__ROOM_TABLE(stack);   /* the bounds of this file's room probes (internal.h) */

/* The handle is made from the state word just stored, not read back. */
VMS_NOCLONE vms_stack *vms_stack_alloc(size_t size)
{
    vms__task_room_probe();   /* a task with too little room left is killed first */
    VMS__ROOM_MARK();
    uint32_t w;
    struct vms_stack *st = stack_alloc(size, &w, true);
    return st ? handle_of(st, w) : NULL;
}

struct vms_stack *vms__stack_alloc(size_t size)
{
    uint32_t w;
    return stack_alloc(size, &w, true);
}

/* setup: the calling thread is given its alternate signal stack first, unless it has
 * one; false for that alternate stack itself (vms__stack_alloc_internal). */
static inline __attribute__((always_inline)) struct vms_stack *stack_alloc(size_t size,
                                                                            uint32_t *word,
                                                                            bool setup)
{
    /* A size no configuration allows is refused before the initialization: a call that
     * makes nothing does not put vmstack in use (vmstack.h). vms_stack_alloc(2 GiB), or a
     * fiber or vms thread asking for it, made vms_init's configuration -EBUSY. */
    if (VMS_UNLIKELY(size > VMS_MAX_STACK_SIZE)) {
        errno = EINVAL;
        return NULL;
    }
    int e = vms__ensure_init();
    if (VMS_UNLIKELY(e)) {
        errno = -e;
        return NULL;
    }
    if (setup && VMS_UNLIKELY(!thread_ready)) {
        /* A thread that allocates stacks may run on them (a coroutine library of its
         * own): it needs an alternate signal stack for an overflow there to be reported
         * rather than kill the process silently. Set first (that stack is allocated
         * inside), and cleared again when it could not be had (ENOMEM at that moment,
         * say): the next allocation tries again, as the task layer does before a
         * thread's first resume. */
        thread_ready = true;
        if (vms__guard_thread_init() != 0) thread_ready = false;
        if (VMS_UNLIKELY(atomic_load_explicit(&fork_pending, memory_order_relaxed)))
            vms__stack_reap();
    }
    if (size == 0) size = vms__opt.stack_size;
    unsigned cls;
    if (VMS_UNLIKELY(vms__arena_class(size, &cls) != 0)) {
        errno = EINVAL;   /* above VMS_MAX_STACK_SIZE (1 GiB), SIZE_MAX included */
        return NULL;
    }
    struct vms_stack *st = vms__cache_get(cls);
    if (VMS_UNLIKELY(!st)) return NULL;   /* errno from the cache or arena layer */
    st->max_used = 0;
    if (VMS_UNLIKELY(vms__opt.flags & (VMS_PAINT | VMS_END_CHECK))) vms__debug_stack_alloc(st);
    atomic_store_explicit(&st->owner, NULL, memory_order_relaxed);
    *word = slot_set_live(st);
    return st;
}

/* Internal stacks live now (they are in the cache layer's count too). */
static atomic_size_t internal_live;

/* vmstack's own stacks (alternate signal stacks) are recycled among themselves, through
 * this pool rather than the cache, so that a thread takes one without setting up a
 * per-thread cache. A pooled stack keeps its "internal" mark and counts in neither
 * stacks_live nor stacks_cached. They are scrubbed all the same: the program's own
 * SA_ONSTACK handlers run on them, and vmstack's reports leave the registers, trace and
 * name of the task they killed there, none of which the next thread may see. A freed
 * one waits among the pool's dirty stacks until POOL_SCRUB_BATCH of them are scrubbed
 * with one system call (vms__os_discard_many); only scrubbed ones are handed out.
 * Beyond INTERNAL_POOL stacks (dirty, clean or being scrubbed), they go to the cache,
 * scrubbed there like any other. */
#define INTERNAL_POOL 64
#define POOL_SCRUB_BATCH 16

#define GRAVE_STACKS 4

struct grave {
    pthread_mutex_t owner;             /* robust; held by the thread until it dies */
    pid_t tid;                         /* its thread, until graves are proven to work */
    struct grave *next;
    unsigned n;
    bool orphan;                       /* its thread is not in this process (fork) */
    struct vms_stack *st[GRAVE_STACKS];
};

/* Graves (below) and the pool share one lock. */
static pthread_mutex_t deferred_lock = PTHREAD_MUTEX_INITIALIZER;
static struct vms_stack *pool[INTERNAL_POOL];   /* under deferred_lock: scrubbed */
static atomic_uint npool;                       /* written under it, peeked without */
static struct vms_stack *pool_dirty[POOL_SCRUB_BATCH];   /* under deferred_lock */
static unsigned npool_dirty, npool_scrubbing;           /* under deferred_lock */
/* Reapers with graves taken off the list whose stacks they are still freeing, and
 * whether the calling thread is one: fork waits for them (under deferred_lock). */
static unsigned reaping;
static VMS_TLS bool reaping_here;
void (*vms__stack_reap_hook)(void);
static struct grave *graves;           /* under deferred_lock */
static atomic_size_t graves_count;     /* graves in it; peeked without the lock */
/* Where the next bounded reap (reap_graves) starts looking: after this grave, or at the
 * list's head when NULL. Under deferred_lock; never a grave off the list. */
static struct grave *reap_mark;
static VMS_TLS struct grave *my_grave;

/* Graves are recycled: a thread's first malloc would set up the C library's allocator
 * state for the thread (an arena, a per-thread cache) and tear it down at its exit,
 * which costs more than the rest of the burial (about 4% of a thread's create + join).
 * GRAVES_SPARE static graves are the first supply; graves beyond them come from malloc
 * and are kept while fewer than GRAVES_SPARE wait unused. */
#define GRAVES_SPARE 64
static struct grave grave_store[GRAVES_SPARE];
static bool grave_store_open;          /* under deferred_lock, as the two below */
static struct grave *grave_spare;
static unsigned grave_nspare;

/* What a thread holds until it ends: its alternate signal stack and, in a vms thread, the
 * stack its body runs on. Nobody else frees them while the thread runs, so in the child
 * of a fork, which has none of the parent's other threads, they would stay live for good
 * (glibc, likewise, takes the stacks of the threads the child does not have back for its
 * own new threads). Each thread that holds any is in `holders`, with what it holds, under
 * deferred_lock; it lets a stack go under the same lock hold that buries it, or before it
 * frees it. fork's child handler moves what the other threads held to `forsaken`, which
 * the child's first reap or first stack allocation frees: a child that only calls exec
 * pays nothing. A thread's record is in its own TLS: unlinked before the thread ends (the
 * burial of the last stack it holds runs in its thread-exit hooks), and read in the child
 * only by the fork handler, before the C library can hand the dead threads' TLS to new
 * threads. */
enum { HOLD_ALT = 0, HOLD_BODY = 1 };
struct holder {
    struct holder *prev, *next;        /* in holders while it holds anything */
    struct vms_stack *st[2];           /* [HOLD_ALT], [HOLD_BODY] */
};
static struct holder *holders;         /* under deferred_lock */
static VMS_TLS struct holder my_hold;
/* The child of fork: stacks the parent's other threads held, linked by their (unused
 * while live) free-list link, to be freed at the next reap; a body stack through the task
 * layer's release function (its owner, a task, must be let go first). */
static struct vms_stack *forsaken;     /* under deferred_lock */
static void (*forsaken_release)(struct vms_stack *);

/* Pre: deferred_lock held. The calling thread holds st as kind (NULL: nothing). */
static void hold_set(int kind, struct vms_stack *st)
{
    struct holder *h = &my_hold;
    bool was = h->st[HOLD_ALT] || h->st[HOLD_BODY];
    h->st[kind] = st;
    bool is = h->st[HOLD_ALT] || h->st[HOLD_BODY];
    if (is && !was) {
        h->prev = NULL;
        h->next = holders;
        if (holders) holders->prev = h;
        holders = h;
    } else if (was && !is) {
        if (h->prev) h->prev->next = h->next;
        else holders = h->next;
        if (h->next) h->next->prev = h->prev;
        h->prev = h->next = NULL;
    }
}

/* Pre: deferred_lock held. The calling thread no longer holds st (if it did). */
static void hold_forget(const struct vms_stack *st)
{
    for (int k = HOLD_ALT; k <= HOLD_BODY; k++)
        if (my_hold.st[k] == st) hold_set(k, NULL);
}

void vms__stack_hold(struct vms_stack *alt, struct vms_stack *body,
                     void (*release)(struct vms_stack *))
{
    if (!alt && !body) return;
    pthread_mutex_lock(&deferred_lock);
    if (alt) hold_set(HOLD_ALT, alt);
    if (body) {
        hold_set(HOLD_BODY, body);
        forsaken_release = release;
    }
    pthread_mutex_unlock(&deferred_lock);
}

void vms__stack_unhold(const struct vms_stack *st)
{
    /* This thread's own record: read without the lock, which only it writes. */
    if (!st || (my_hold.st[HOLD_ALT] != st && my_hold.st[HOLD_BODY] != st)) return;
    pthread_mutex_lock(&deferred_lock);
    hold_forget(st);
    pthread_mutex_unlock(&deferred_lock);
}

static bool grave_static(const struct grave *g)
{
    return g >= grave_store && g < grave_store + GRAVES_SPARE;
}

/* Pre: deferred_lock held. */
static struct grave *grave_take(void)
{
    if (!grave_store_open) {
        for (unsigned i = 0; i < GRAVES_SPARE; i++) {
            grave_store[i].next = grave_spare;
            grave_spare = &grave_store[i];
        }
        grave_nspare += GRAVES_SPARE;
        grave_store_open = true;
    }
    struct grave *g = grave_spare;
    if (g) {
        grave_spare = g->next;
        grave_nspare--;
    }
    return g;
}

/* Pre: deferred_lock held; g's mutex is destroyed, or (an orphan) locked by a thread
 * that is gone. An orphan's mutex is never reinitialized: nobody can unlock or destroy
 * it, and ThreadSanitizer would take its next lock for a double lock. A static one stays
 * out of use. */
static void grave_put(struct grave *g)
{
    if (g->orphan || (!grave_static(g) && grave_nspare >= GRAVES_SPARE)) {
        if (!grave_static(g)) free(g);
        return;
    }
    g->next = grave_spare;
    grave_spare = g;
    grave_nspare++;
}

static bool grave_lock_new(struct grave *g);

/* How long a thread waits for a reap in flight on another thread (fork, vms_get_stats,
 * vms_stack_usage). A reap takes microseconds; the bound is for a reaper that cannot
 * finish meanwhile: for fork, one blocked in malloc on a lock that a replacement
 * allocator's own fork handler, run before ours, already holds. Then the child loses
 * that reap's graves (their stacks stay live there) rather than hang; a reader counts
 * them live. */
long vms__stack_reap_wait_ns = 1000000000L;
void (*vms__stack_reap_wait_hook)(void);

/* Pre and post: deferred_lock held. Waits (bounded) until no reap is in flight on
 * another thread: graves a reaper has taken off the list but whose stacks it has not
 * freed yet are in no list that fork or a reader could see. One that interrupted its
 * own reap between two locked steps (a signal handler) does not wait for itself. */
static void reaps_wait_locked(void)
{
    long start = 0;
    while (reaping > (reaping_here ? 1u : 0u)) {
        /* Reaps are short (a few frees): poll rather than keep a condition variable,
         * whose waiters would be phantoms in a fork child, and yield rather than sleep:
         * nanosleep is a cancellation point, and a thread cancelled inside fork would
         * leave the C library's fork lock held. */
        long now = vms__os_now_ns();
        if (!start) start = now;
        else if (now - start > vms__stack_reap_wait_ns) break;
        pthread_mutex_unlock(&deferred_lock);
        if (vms__stack_reap_wait_hook) vms__stack_reap_wait_hook();
        sched_yield();
        pthread_mutex_lock(&deferred_lock);
    }
}

void vms__stack_reap_settled(void)
{
    vms__stack_reap();
    pthread_mutex_lock(&deferred_lock);
    reaps_wait_locked();
    pthread_mutex_unlock(&deferred_lock);
}

/* Before fork, every lock of vmstack, outermost first as the code nests them: the graves'
 * list (once no reap is in flight: graves a reaper has taken but not yet freed would be
 * lost to the child, their stacks live for good), the cache's, the arena's, the symbol
 * table's, the usage histogram's. fork from a signal handler that interrupted vmstack
 * while it held one of these locks deadlocks, as with any library's locks; one that
 * interrupted its own reap between two locked steps does not wait for itself (its child
 * loses those graves). */
void vms__stack_fork_prepare(void)
{
    pthread_mutex_lock(&deferred_lock);
    reaps_wait_locked();
    vms__cache_fork_lock();
    vms__arena_fork_lock();
    vms__trace_fork_lock();
    vms__debug_fork_lock();
}

void vms__stack_fork_parent(void)
{
    vms__debug_fork_unlock();
    vms__trace_fork_unlock(false);
    vms__arena_fork_unlock();
    vms__cache_fork_unlock();
    pthread_mutex_unlock(&deferred_lock);
}

/* The child of fork has only the forking thread: every other grave's thread is gone,
 * and no kernel will mark its mutex, so the next reap frees its stacks. The forking
 * thread's own grave (it forked at its exit, after burying a stack: one of them is its
 * alternate signal stack, still installed) is locked again by the child's thread, which
 * has a thread ID and a robust list of its own, and records that ID if it recorded one:
 * the parent thread's ID names no thread here, and a reaper would take the grave for one
 * the kernel forgot to mark. Should the relock fail, the grave leaves the list: its
 * stacks stay buried for good rather than be freed while still in use. The stacks the
 * other threads held (holders, above) are forsaken: freed by the next reap, or by the
 * first stack allocation of any thread (the forking thread's goes through the slow path
 * once more), as are the stacks the other threads had cached (cache.c). */
void vms__stack_fork_child(void)
{
    vms__debug_fork_unlock();
    vms__trace_fork_unlock(true);
    vms__arena_fork_unlock();
    bool caches = vms__cache_fork_child();
    reaping = reaping_here ? 1 : 0;
    for (struct holder *h = holders; h; h = h->next) {
        if (h == &my_hold) continue;
        for (int k = HOLD_ALT; k <= HOLD_BODY; k++) {
            if (!h->st[k]) continue;
            h->st[k]->next = forsaken;
            forsaken = h->st[k];
        }
    }
    bool mine = my_hold.st[HOLD_ALT] || my_hold.st[HOLD_BODY];
    holders = mine ? &my_hold : NULL;
    my_hold.prev = my_hold.next = NULL;
    if (forsaken || caches) {
        atomic_store_explicit(&fork_pending, true, memory_order_relaxed);
        thread_ready = false;
    }
    /* Stacks another thread of the parent was scrubbing are not in the child's pool:
     * lost there (FREE, never handed out). */
    npool_scrubbing = 0;
    for (struct grave *g = graves; g; g = g->next)
        if (g != my_grave) g->orphan = true;
    if (my_grave && grave_lock_new(my_grave)) {
        if (my_grave->tid) my_grave->tid = vms__os_gettid();
    } else if (my_grave) {
        if (reap_mark == my_grave) reap_mark = NULL;
        for (struct grave **p = &graves; *p; p = &(*p)->next) {
            if (*p == my_grave) {
                *p = my_grave->next;
                atomic_fetch_sub_explicit(&graves_count, 1, memory_order_relaxed);
                break;
            }
        }
        my_grave = NULL;
    }
    pthread_mutex_unlock(&deferred_lock);
}

static struct vms_stack *pool_take(unsigned cls)
{
    if (!atomic_load_explicit(&npool, memory_order_relaxed)) return NULL;
    struct vms_stack *st = NULL;
    pthread_mutex_lock(&deferred_lock);
    unsigned n = atomic_load_explicit(&npool, memory_order_relaxed);
    for (unsigned i = n; i-- > 0;) {
        if (pool[i]->cls == cls) {
            st = pool[i];
            pool[i] = pool[n - 1];
            atomic_store_explicit(&npool, n - 1, memory_order_relaxed);
            break;
        }
    }
    pthread_mutex_unlock(&deferred_lock);
    return st;
}

/* Scrubs v[0..n) whole, outside the lock: one system call; zeroed by hand should it
 * fail (they are small: an alternate stack is 64 KiB and the kernel's minimum). */
static void pool_scrub(struct vms_stack **v, unsigned n)
{
    if (n == 0) return;
    struct iovec iov[POOL_SCRUB_BATCH];
    for (unsigned i = 0; i < n; i++) {
        iov[i].iov_base = v[i]->base;
        iov[i].iov_len = v[i]->size;
    }
    (void)vms__cache_scrub_ranges(iov, n, NULL);
}

/* Scrubs batch[0..nbatch), taken off pool_dirty and counted in npool_scrubbing, and puts
 * them in the pool; those that do not fit go to the cache. */
static void pool_keep_scrubbed(struct vms_stack **batch, unsigned nbatch)
{
    pool_scrub(batch, nbatch);
    unsigned kept = 0;
    pthread_mutex_lock(&deferred_lock);
    unsigned n = atomic_load_explicit(&npool, memory_order_relaxed);
    for (; kept < nbatch && n < INTERNAL_POOL; kept++) pool[n++] = batch[kept];
    atomic_store_explicit(&npool, n, memory_order_relaxed);
    /* Only a fork from a signal handler that interrupted the scrubbing can leave this
     * child's count reset and its pool refilled meanwhile: not below zero, and what
     * does not fit goes to the cache. */
    npool_scrubbing -= nbatch < npool_scrubbing ? nbatch : npool_scrubbing;
    pthread_mutex_unlock(&deferred_lock);
    for (; kept < nbatch; kept++) {
        batch[kept]->internal = 0;
        atomic_fetch_sub_explicit(&internal_live, 1, memory_order_relaxed);
        (void)vms__cache_put(batch[kept]);   /* its tick: left to the next free */
    }
}

/* Pre: deferred_lock held. Moves the pool's dirty stacks into batch, to be scrubbed by
 * pool_keep_scrubbed; their places in the pool stay taken meanwhile. Returns how many. */
static unsigned pool_take_dirty(struct vms_stack **batch)
{
    unsigned n = npool_dirty;
    memcpy(batch, pool_dirty, n * sizeof batch[0]);
    npool_dirty = 0;
    npool_scrubbing += n;
    return n;
}

/* Keeps a freed internal stack (state FREE) in the pool, to be handed out once scrubbed
 * (at once with VMS_NO_SCRUB); false when the pool is full. */
static bool pool_put(struct vms_stack *st)
{
    bool no_scrub = vms__opt.flags & VMS_NO_SCRUB;
    struct vms_stack *batch[POOL_SCRUB_BATCH];
    unsigned nbatch = 0;
    pthread_mutex_lock(&deferred_lock);
    unsigned n = atomic_load_explicit(&npool, memory_order_relaxed);
    if (n + npool_dirty + npool_scrubbing >= INTERNAL_POOL) {
        pthread_mutex_unlock(&deferred_lock);
        return false;
    }
    if (no_scrub) {
        pool[n] = st;
        atomic_store_explicit(&npool, n + 1, memory_order_relaxed);
    } else {
        pool_dirty[npool_dirty++] = st;
        if (npool_dirty == POOL_SCRUB_BATCH) nbatch = pool_take_dirty(batch);
    }
    pthread_mutex_unlock(&deferred_lock);
    if (nbatch) pool_keep_scrubbed(batch, nbatch);
    return true;
}

/* vms_trim: the pool's dirty stacks scrubbed now rather than with the 16th. */
static void pool_flush(void)
{
    struct vms_stack *batch[POOL_SCRUB_BATCH];
    pthread_mutex_lock(&deferred_lock);
    unsigned nbatch = pool_take_dirty(batch);
    pthread_mutex_unlock(&deferred_lock);
    if (nbatch) pool_keep_scrubbed(batch, nbatch);
}

struct vms_stack *vms__stack_alloc_internal(size_t size, bool reap)
{
    unsigned cls;
    struct vms_stack *st = NULL;
    if (vms__arena_class(size, &cls) == 0 && !(st = pool_take(cls)) && reap) {
        /* A thread starting: the alternate stacks of threads that have ended are the
         * ones it can take (a program that runs fibers on threads of its own never
         * calls vms_thread_create or vms_get_stats, the other reapers). */
        vms__stack_reap();
        st = pool_take(cls);
    }
    if (st) {
        st->max_used = 0;
        atomic_store_explicit(&st->owner, NULL, memory_order_relaxed);
        (void)slot_set_live(st);
        return st;
    }
    uint32_t w;
    st = stack_alloc(size, &w, false);   /* the alternate stack being set up, say */
    if (st) {
        st->internal = 1;
        atomic_fetch_add_explicit(&internal_live, 1, memory_order_release);
    }
    return st;
}

static inline __attribute__((always_inline)) void stack_free(struct vms_stack *rec,
                                                             const vms_stack *h, uint32_t w,
                                                             bool raw);
static void reap_from_free(void);

VMS_NOCLONE void vms_stack_free(vms_stack *st)
{
    vms__task_room_probe();   /* a task with too little room left is killed first */
    VMS__ROOM_MARK();
    if (!st) return;
    uint32_t w;
    bool tag_ok;
    struct vms_stack *rec = handle_record(st, &w, &tag_ok);
    if (VMS_UNLIKELY(!rec))
        vms__fatal("vms_stack_free: %p is not a stack that vmstack handed out "
                   "(a foreign or corrupted pointer)", (void *)st);
    if (VMS_UNLIKELY(!tag_ok))
        vms__fatal("vms_stack_free: double free of stack %p [%p-%p): it was freed, and "
                   "its slot handed out again since (this handle is stale), unless %p "
                   "is a corrupted pointer", (void *)st, (void *)rec->base,
                   (void *)(rec->base + rec->size), (void *)st);
    stack_free(rec, st, w, true);
}

void vms__stack_free(struct vms_stack *rec)
{
    uint32_t w = atomic_load_explicit(&rec->state, memory_order_acquire);
    stack_free(rec, handle_of(rec, w), w, false);
}

/* Frees rec, named h by the caller, whose state word was w. raw: the program's
 * vms_stack_free (a task's stack or vmstack's own goes through vms__stack_free). */
static inline __attribute__((always_inline)) void stack_free(struct vms_stack *rec,
                                                             const vms_stack *h, uint32_t w,
                                                             bool raw)
{
    const void *st = h;
    /* A fiber's or thread's stack (vms_fiber_stack hands it out, const) holds the task's
     * record and, while it runs, its frames: it goes back with the task. */
    if (VMS_UNLIKELY(atomic_load_explicit(&rec->owner, memory_order_relaxed)))
        vms__fatal("vms_stack_free: stack %p [%p-%p) belongs to a fiber or thread; "
                   "vms_fiber_destroy frees a fiber's stack, the thread's end a vms "
                   "thread's", st, (void *)rec->base, (void *)(rec->base + rec->size));
    if (raw) {
        /* A thread's alternate signal stack (vms_stack_self names it in a signal handler
         * running there) stays installed while the thread lives: freed, it would go to the
         * pool, and another thread could get the one the kernel still delivers signals on. */
        if (VMS_UNLIKELY(rec->internal) &&
            (w & VMS__SLOT_STATE_MASK) == VMS__SLOT_LIVE)
            vms__fatal("vms_stack_free: stack %p [%p-%p) is an alternate signal stack of "
                       "vmstack's own (vms_stack_self in a signal handler names it); vmstack "
                       "frees it when its thread ends", st, (void *)rec->base,
                       (void *)(rec->base + rec->size));
        /* The coroutine running on it freeing its own stack: its frames would be scrubbed
         * under it, or the stack handed to another owner while it still runs there. */
        const char *sp = vms__current_sp();
        if (VMS_UNLIKELY(sp >= rec->base && sp <= vms__stack_top_of(rec)))
            vms__fatal("vms_stack_free: stack %p [%p-%p) is the stack the caller runs on "
                       "(sp %p): switch away from it first", st, (void *)rec->base,
                       (void *)(rec->base + rec->size), (const void *)sp);
    }
    uint32_t want = (w & ~(uint32_t)VMS__SLOT_STATE_MASK) | VMS__SLOT_LIVE;
    if (VMS_UNLIKELY(!atomic_compare_exchange_strong_explicit(
            &rec->state, &want, (want & ~(uint32_t)VMS__SLOT_STATE_MASK) | VMS__SLOT_FREE,
            memory_order_acq_rel, memory_order_relaxed)))
        vms__fatal("vms_stack_free: double free of stack %p [%p-%p): it is not in use",
                   st, (void *)rec->base, (void *)(rec->base + rec->size));
    /* ASan: whoever ran on the stack (a coroutine library, a fiber that never finished)
     * may have left redzones poisoned; the cache's scrubbing and the next owner must not
     * trip over them. Nothing in other builds. */
    vms__track_stack_release(rec->base, rec->size);
    if (VMS_UNLIKELY(rec->internal)) {
        if (pool_put(rec)) return;
        rec->internal = 0;
        atomic_fetch_sub_explicit(&internal_live, 1, memory_order_relaxed);
        if (VMS_UNLIKELY(vms__opt.flags & VMS_PAINT)) vms__debug_stack_reclaim(rec);
    } else if (VMS_UNLIKELY(vms__opt.flags & VMS_PAINT)) {
        vms__debug_stack_free(rec, raw);
    }
    /* Every 32nd free of this thread, the stacks of threads that have ended go back too
     * (reap_from_free, below): a program that only runs fibers after its vms threads
     * have ended and been joined would otherwise keep their stacks at the depth they
     * left them. The peek at graves_count is all it costs while no grave waits. */
    if (VMS_UNLIKELY(vms__cache_put(rec)) &&
        VMS_UNLIKELY(atomic_load_explicit(&graves_count, memory_order_relaxed)))
        reap_from_free();
}

/* ---- stacks freed once their thread has ended ---------------------------------------
 *
 * An exiting thread cannot hand back a stack the kernel may still use for it: its
 * alternate signal stack, installed until the thread is gone (a signal may arrive while
 * the C library finishes the thread). Disabling it first would cost a sigaltstack call
 * per thread. Instead such stacks wait in the thread's grave: a robust mutex that the
 * thread locks and holds until it dies. The kernel marks the mutex "owner died" as the
 * thread ends (it walks the thread's robust-futex list at exit, before it clears the
 * thread ID that pthread_join waits for), so the next pthread_mutex_trylock by anyone
 * returns EOWNERDEAD: then the thread runs no more code and its stacks are freed. No
 * system call on either side. vms_thread_create, vms_get_stats and vms_stack_usage reap
 * the graves, so after pthread_join the statistics no longer count the thread's stacks;
 * so do stack frees, a few graves every 32nd free of a thread (reap_from_free), so that
 * a program that only runs fibers after its threads have ended gets their memory back
 * too. Where robust
 * mutexes do not work (qemu-user lets the C library create them but keeps no robust
 * list), callers free the usual way. */

/* Graves waiting: beyond GRAVES_MAX (threads ending faster than anyone reaps), threads
 * free their stacks the usual way, so graves never hold an unbounded amount. */
#define GRAVES_MAX 4096
/* 0: not known yet; 1: robust mutexes work; -1: they do not (checked once). */
static atomic_int graves_work;
/* A grave was seen open (EOWNERDEAD): the kernel does mark dead owners here. Until then
 * every grave records its thread, so that a grave whose thread is gone while its mutex
 * is still locked shows a kernel that keeps robust lists but never walks them. */
static atomic_bool graves_proven;

/* Whether a dead thread's robust mutex will be marked: the C library must have robust
 * mutexes, and the kernel must keep the thread's robust list. qemu-user, for one, lets
 * the C library create robust mutexes but never marks them: graves would never open. */
static bool graves_supported(void)
{
    int w = atomic_load_explicit(&graves_work, memory_order_relaxed);
    if (w == 0) {
        w = vms__os_robust_list_works() == 0 ? 1 : -1;
        atomic_store_explicit(&graves_work, w, memory_order_relaxed);
    }
    return w > 0;
}

/* (Re)initializes g's robust mutex and locks it for the calling thread: false when the
 * C library refuses (then graves_work says no when it refused robust mutexes). */
static bool grave_lock_new(struct grave *g)
{
    memset(&g->owner, 0, sizeof g->owner);
    pthread_mutexattr_t a;
    int e = pthread_mutexattr_init(&a);
    if (e == 0) {
        /* Fault injection: a mutex that is not robust is never marked, as on a kernel
         * that keeps the robust list but never walks it. */
        if (!vms__os_injected(VMS__OP_ROBUST_WALK))
            e = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
        if (e == 0) e = pthread_mutex_init(&g->owner, &a);
        pthread_mutexattr_destroy(&a);
    }
    if (e == 0 && (e = pthread_mutex_lock(&g->owner)) != 0) pthread_mutex_destroy(&g->owner);
    if (e == ENOTSUP || e == ENOSYS || e == EINVAL) atomic_store(&graves_work, -1);
    return e == 0;
}

/* A new grave for the calling thread, its mutex locked; NULL when there is none to be
 * had (then graves_work says no when the C library refused robust mutexes). */
static struct grave *grave_new(void)
{
    pthread_mutex_lock(&deferred_lock);
    struct grave *g = grave_take();
    pthread_mutex_unlock(&deferred_lock);
    if (!g && !(g = malloc(sizeof *g))) return NULL;
    memset(g, 0, sizeof *g);
    if (!grave_lock_new(g)) {
        pthread_mutex_lock(&deferred_lock);
        grave_put(g);
        pthread_mutex_unlock(&deferred_lock);
        return NULL;
    }
    if (!atomic_load_explicit(&graves_proven, memory_order_relaxed)) g->tid = vms__os_gettid();
    return g;
}

int vms__stack_free_at_exit(struct vms_stack *st)
{
    if (!st) return 0;
    int e = 0;
    struct grave *g = my_grave;
    bool fresh = !g || g->n == GRAVE_STACKS;   /* g->n: written by this thread only */
    if (!graves_supported())
        e = -ENOTSUP;
    else if (fresh && atomic_load_explicit(&graves_count, memory_order_relaxed) >= GRAVES_MAX)
        e = -EAGAIN;
    /* A new grave is locked before the list lock is taken: its thread always takes the
     * two in that order, and everyone else takes the list lock and only tries a grave
     * (no cycle, also for ThreadSanitizer's deadlock detector). */
    else if (fresh && !(g = grave_new()))
        e = -ENOTSUP;
    if (e) {
        vms__stack_unhold(st);   /* the caller frees it (or leaks it) now */
        return e;
    }
    pthread_mutex_lock(&deferred_lock);
    hold_forget(st);
    if (fresh) {
        g->next = graves;
        graves = g;
        my_grave = g;
        atomic_fetch_add_explicit(&graves_count, 1, memory_order_relaxed);
    }
    g->st[g->n++] = st;
    pthread_mutex_unlock(&deferred_lock);
    return 0;
}

bool vms__stack_graves_proven(void)
{
    return atomic_load_explicit(&graves_proven, memory_order_relaxed);
}

/* The child of fork: frees the stacks the parent's other threads held, and takes back
 * the ones they had cached (cache.c). Counted as a reap in flight, which a fork waits
 * for: a grandchild forked meanwhile would lose what is taken off the list. */
static __attribute__((noinline, cold)) void reap_forsaken(void)
{
    pthread_mutex_lock(&deferred_lock);
    bool go = atomic_load_explicit(&fork_pending, memory_order_relaxed);
    struct vms_stack *lost = forsaken;
    void (*release)(struct vms_stack *) = forsaken_release;
    forsaken = NULL;
    atomic_store_explicit(&fork_pending, false, memory_order_relaxed);
    if (go) {
        reaping++;
        reaping_here = true;
    }
    pthread_mutex_unlock(&deferred_lock);
    if (!go) return;
    while (lost) {
        struct vms_stack *st = lost;
        lost = st->next;
        st->next = NULL;
        /* A vms thread's body: its task lets it go (a body whose thread had let go of
         * it already, on its way to its grave, has no owner and is freed here). */
        if (atomic_load_explicit(&st->owner, memory_order_relaxed)) {
            if (release) release(st);   /* never NULL for a body held with an owner */
        } else {
            vms__stack_free(st);
        }
    }
    vms__cache_adopt_forsaken();
    pthread_mutex_lock(&deferred_lock);
    reaping--;
    reaping_here = false;
    pthread_mutex_unlock(&deferred_lock);
}

/* A reap from the free path looks at REAP_LOOK graves of the list at most, and frees
 * the stacks of REAP_TAKE of them at most (two stacks each for a vms thread: its body's
 * and its alternate stack): a free that happens to reap costs a bounded amount (about a
 * batch's system call, and one for the alternate stacks' pool), however many graves
 * wait. The list is newest first; a grave whose thread has not quite ended yet is passed
 * over and seen again by a later reap. Each bounded reap goes on where the last one
 * stopped (reap_mark), and starts at the head again once it has reached the end: graves
 * whose threads live on (a thread without an exit hook buries its alternate stack at its
 * start) cannot hide the older ones behind them, however many they are. */
#define REAP_LOOK 64
#define REAP_TAKE 16

/* Frees the stacks of the graves whose threads have ended: all of them, or, bounded (the
 * free path), as many as REAP_LOOK and REAP_TAKE allow, and only when the graves' lock
 * is free at once. Returns whether it freed any. */
static bool reap_graves(bool bounded)
{
    struct grave *dead = NULL;
    if (!bounded) pthread_mutex_lock(&deferred_lock);
    else if (pthread_mutex_trylock(&deferred_lock) != 0) return false;
    unsigned looked = 0, taken = 0;
    /* prev: the grave whose link p is (NULL: the head). A full reap starts at the head;
     * a bounded one after the mark, which it never takes off the list. */
    struct grave *prev = bounded ? reap_mark : NULL;
    reap_mark = NULL;
    for (struct grave **p = prev ? &prev->next : &graves; *p;) {
        if (bounded && (looked == REAP_LOOK || taken == REAP_TAKE)) {
            reap_mark = prev;
            break;
        }
        looked++;
        struct grave *g = *p;
        bool gone = g->orphan;
        if (!gone && g != my_grave) {
            int e = pthread_mutex_trylock(&g->owner);
            if (e == EBUSY && g->tid && !vms__os_thread_alive(g->tid) &&
                (e = pthread_mutex_trylock(&g->owner)) == EBUSY) {
                /* Its thread is gone (asked after the first try, and tried again since),
                 * yet its mutex was never marked: this kernel keeps robust lists but does
                 * not walk them. No more graves; this one's stacks are free to go. */
                atomic_store(&graves_work, -1);
                g->orphan = true;              /* its mutex stays locked: not destroyed */
                gone = true;
            }
            if (e == EOWNERDEAD) {
                pthread_mutex_consistent(&g->owner);
                pthread_mutex_unlock(&g->owner);
                atomic_store_explicit(&graves_proven, true, memory_order_relaxed);
                gone = true;
            } else if (e == 0) {
                pthread_mutex_unlock(&g->owner);   /* never happens: nobody unlocks it */
                gone = true;
            } else if (e == ENOTRECOVERABLE) {
                gone = true;                       /* its owner died too */
            }
        }
        if (!gone) {
            prev = g;
            p = &g->next;
            continue;
        }
        *p = g->next;
        g->next = dead;
        dead = g;
        taken++;
        atomic_fetch_sub_explicit(&graves_count, 1, memory_order_relaxed);
    }
    if (dead) {
        reaping++;
        reaping_here = true;
    }
    pthread_mutex_unlock(&deferred_lock);
    if (!dead) return false;
    if (vms__stack_reap_hook) vms__stack_reap_hook();
    /* Outside the lock: an internal stack's vms__stack_free takes it (the pool). */
    for (struct grave *g = dead; g; g = g->next) {
        for (unsigned i = 0; i < g->n; i++) vms__stack_free(g->st[i]);
        if (!g->orphan) pthread_mutex_destroy(&g->owner);
    }
    pthread_mutex_lock(&deferred_lock);
    while (dead) {
        struct grave *g = dead;
        dead = g->next;
        grave_put(g);
    }
    reaping--;
    reaping_here = false;
    pthread_mutex_unlock(&deferred_lock);
    return true;
}

void vms__stack_reap(void)
{
    /* Also decides, once, whether graves work (a system call): here, in the creator of
     * threads, rather than in the first thread to end. Graves made before they were
     * found not to work are still reaped, as their threads are seen gone. */
    (void)graves_supported();
    if (VMS_UNLIKELY(atomic_load_explicit(&fork_pending, memory_order_relaxed))) reap_forsaken();
    if (!atomic_load_explicit(&graves_count, memory_order_relaxed)) return;
    (void)reap_graves(false);
}

/* The free path's reap (stack_free, every 32nd free of a thread while graves wait). Safe
 * wherever a stack is freed:
 * - inside a reap (its frees, or a signal handler that interrupted one between its
 *   locked steps): reaping_here says so, and nothing is done; a nested reap would also
 *   clear the outer one's reaping_here, and fork would no longer wait for its graves;
 * - with the graves' lock held by anyone (this thread included: a signal handler that
 *   interrupted a burial, the pool, a reap's locked step): the lock is only tried, never
 *   waited for, so no lock order is added and nothing deadlocks; the next tick tries
 *   again. No caller of stack_free holds a lock of vmstack's (the cache's, the arena's,
 *   the histogram's are all released before the stack is filed), and the frees inside
 *   the reap take only the locks any free takes, after the graves' lock is released;
 * - fork: counted in `reaping`, which the prepare handler waits for, as any reap;
 * - in the child of a fork: the graves of the parent's other threads are orphans, freed
 *   here as by any reap; what they held or cached is left to the child's first stack
 *   allocation or full reap, which frees it anyway (off this path: it scrubs up to all
 *   the caches the parent's threads had).
 * No system call while the graves' lock is held (a grave is opened by trylock, in user
 * space, once the kernel has marked it), except tgkill for a locked grave until a grave
 * was seen open (the first threads of a process only).
 * The stacks reaped are scrubbed at once (this thread's dirty batch, one system call):
 * left to the batch, they could wait there at their threads' depth for good, as with
 * VMS_NO_SCRUB, where frees go to the per-thread LIFO while it has room and the batch
 * may never fill (tested). */
static __attribute__((noinline, cold)) void reap_from_free(void)
{
    if (reaping_here) return;
    if (reap_graves(true)) vms__cache_flush();
}

int vms_trim(void)
{
    /* Before first use nothing is cached: nothing to initialize vmstack for. */
    if (!vms__initialized()) return 0;
    vms__stack_reap();   /* ended threads' stacks: into this thread's batch, the pool */
    pool_flush();
    return vms__cache_trim();
}

size_t vms__stack_graves(void)
{
    return atomic_load_explicit(&graves_count, memory_order_relaxed);
}

/* The getters accept only live stacks through their current handle; anything else (a
 * freed stack, a stale handle, a pointer vmstack never handed out) is EINVAL with a
 * neutral result, never a crash. */
static const struct vms_stack *live_record(const vms_stack *st)
{
    const struct vms_stack *rec = vms__stack_record(st);
    if (!rec) errno = EINVAL;
    return rec;
}

void *vms_stack_base(const vms_stack *st)
{
    const struct vms_stack *r = live_record(st);
    return r ? r->base : NULL;
}

void *vms_stack_top(const vms_stack *st)
{
    const struct vms_stack *r = live_record(st);
    return r ? vms__stack_top_of(r) : NULL;
}

size_t vms_stack_size(const vms_stack *st)
{
    const struct vms_stack *r = live_record(st);
    return r ? r->size : 0;
}

size_t vms_stack_max_used(const vms_stack *st)
{
    const struct vms_stack *r = live_record(st);
    return r ? vms__debug_max_used(r, true) : 0;
}

static void add_opened(struct vms__arena *a, void *ctx)
{
    *(size_t *)ctx += atomic_load_explicit(&a->opened, memory_order_acquire);
}

int vms_get_stats(vms_stats *out)
{
    if (!out) return -EINVAL;
    int e = vms__ensure_init();
    if (e) return e;
    memset(out, 0, sizeof *out);
    /* Threads that have ended no longer count: also those whose stacks a reap on
     * another thread has taken off the graves' list but not yet freed. */
    vms__stack_reap_settled();
    /* vmstack's own stacks are subtracted, counted before and after the sum and the
     * smaller taken: one counted (release, below) after its allocation was counted is
     * seen by the count before only if its allocation is in the sum; one given back is
     * uncounted before its free is counted, so the count after has it whenever the sum
     * has the free. Either alone undercounted by one while a thread set up its
     * alternate stack (stack.stats_count_stacks_freed_by_another_thread, under TSan). */
    size_t before = atomic_load_explicit(&internal_live, memory_order_acquire);
    size_t live = vms__cache_live();   /* the program's stacks and vmstack's own */
    size_t after = atomic_load_explicit(&internal_live, memory_order_acquire);
    size_t internal = before < after ? before : after;
    out->stacks_live = live > internal ? live - internal : 0;
    size_t opened = 0;   /* slots ever opened: live + cached */
    vms__arena_each(add_opened, &opened);
    out->stacks_cached = opened > live ? opened - live : 0;
    vms__arena_totals(&out->arenas, &out->reserved_bytes, &out->mappings,
                      &out->resident_bytes);
    out->mappings += vms__trace_views();   /* vmstack's mappings, not only its arenas' */
    out->overflows = vms__guard_overflows();
    out->tainted = vms__guard_tainted();
    out->guard_method = vms__arena_guard_method();
    return 0;
}
