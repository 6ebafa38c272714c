/*
 * cache.c - freed stacks, kept for reuse: a per-thread LIFO in front of a shared free
 * list per size class; scrubbing (a new owner never sees the old owner's data) and
 * trimming (idle stacks give their pages back to the kernel; guards stay).
 *
 * The life of a freed stack (docs/internals.md has the costs):
 *   free  -> its top page is zeroed with memset (it stays resident: the next owner's
 *            first touch costs no page fault) and it joins this thread's "dirty" batch;
 *   batch -> when SCRUB_BATCH stacks are dirty, ONE process_madvise(MADV_DONTNEED) call
 *            drops every page below their top pages (idle stacks keep one page each), and
 *            they become clean: into this thread's LIFO, the rest to the shared list;
 *   alloc -> pops this thread's LIFO; else takes a few from the shared list (one lock);
 *            else opens new slots (arena layer); only when that fails is the dirty
 *            batch scrubbed early.
 * So the steady state of alloc/free of a shallow stack is a memset and a pointer pop,
 * with one system call per SCRUB_BATCH frees and no page fault.
 * With VMS_NO_SCRUB the top page is not zeroed and a freed stack goes straight to the
 * LIFO (zero system calls while the LIFO has room); overflow still goes through the batch
 * so trimming continues.
 * The shared lists keep at most WARM_MAX stacks with a warm top page; beyond that a batch
 * drops whole stacks (warm = 0), so memory held by idle stacks stays bounded. Only a
 * stack whose pages the kernel refused to drop goes past it: resident, counted warm.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One system call scrubs this many stacks: at most 1/32 = 0.03 calls per free. Their
 * lower pages stay resident until the batch runs: at most 32 stacks' worth per thread. */
#define SCRUB_BATCH 32
/* Shared lists keep top pages warm for at most 1,024 stacks (4 MiB with 4 KiB pages). */
#define WARM_MAX 1024

/* A vms_trim's stacks in hand: a list's warm stacks, taken out of it to be dropped
 * without its lock (trim_list), linked by next, until filed back. On the trimming
 * thread's stack, and named in the list's `trims` meanwhile (under its lock), so that the
 * child of a fork made then files them back (vms__cache_fork_child): the child does not
 * have the trimming thread, unless that thread forked itself (a signal handler that
 * interrupted the trim), and then goes on with the trim. */
struct trim_run {
    struct trim_run *next;
    struct vms_stack *head;          /* those not filed back yet */
    pthread_t thread;                /* the trimming thread */
};

struct shared {
    pthread_mutex_t lock;
    struct vms_stack *_Atomic head;  /* written under lock; read without it to peek */
    size_t count;
    size_t nwarm;                    /* of them warm (under lock): shared_warm in a fork
                                        child, which has no thread with a claim */
    struct trim_run *trims;          /* trims with stacks of this list in hand (under
                                        lock); their warm ones are in shared_warm, not in
                                        nwarm */
};
static struct shared shared[VMS__CLASSES];
static pthread_once_t shared_once = PTHREAD_ONCE_INIT;
/* Warm stacks in all shared lists, those a trim has in hand (struct trim_run), and the
 * budget claimed for stacks about to join them (warm_claim). */
static atomic_size_t shared_warm;

/* Per-thread counters instead of shared atomics: the alloc/free fast path makes no
 * locked read-modify-write for statistics. Only the owning thread writes its counters
 * (a load + store: plain moves; puts with a release store, see vms__cache_live);
 * vms_get_stats sums the registered caches. */
/* Every entry of clean and dirty at or beyond its count is NULL once an operation ends:
 * the child of a fork reads the caches of the threads it does not have as the fork
 * found them, and a push stores its count before its entry (gcc does), so a fork can
 * catch a count that already includes an entry not yet written. Left unchanged, such
 * an entry named the stack last popped or flushed from there, free now in a shared list
 * or another cache: the child took it back too, and handed it out twice. NULL, it is
 * skipped (vms__cache_adopt_forsaken). */
struct tcache {
    struct tcache *prev, *nextc;     /* the registry */
    _Atomic unsigned long gets, puts;
    unsigned nclean, ndirty;
    struct vms_stack *dirty[SCRUB_BATCH];
    struct vms_stack *clean[];       /* vms__opt.cache_per_thread entries */
};
static VMS_TLS struct tcache *tc;
/* The thread's exit hook (thread_exit) has run: the thread is ending. A stack it frees
 * after (a destructor of the program's in a later round) goes to the shared lists, as
 * without a cache: glibc calls destructors for at most PTHREAD_DESTRUCTOR_ITERATIONS
 * rounds, and a cache made in the last one was never given back (its stacks lost, and
 * the record with them, at every such thread's exit). */
static VMS_TLS bool tc_ended;
static pthread_key_t tc_key;
/* Whether tc_key was made (shared_init). Without it no thread-exit hook would return a
 * thread's cached stacks: then no thread has a per-thread cache. */
static bool tc_key_made;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct tcache *registry;
static atomic_ulong retired_gets, retired_puts;   /* of exited threads */
/* The child of fork: the caches of the parent's other threads, which it does not have
 * (vms__cache_fork_child), until their stacks are taken back (under registry_lock). */
static struct tcache *forsaken_caches;

static inline void bump(_Atomic unsigned long *c)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* A free's count: published with a release store (a plain move on x86-64), so that a sum
 * that sees it also sees the count of the stack's allocation (vms__cache_live). */
static inline unsigned long bump_put(_Atomic unsigned long *c)
{
    unsigned long n = atomic_load_explicit(c, memory_order_relaxed) + 1;
    atomic_store_explicit(c, n, memory_order_release);
    return n;
}

static void thread_exit(void *p);

static void shared_init(void)
{
    for (int i = 0; i < VMS__CLASSES; i++) pthread_mutex_init(&shared[i].lock, NULL);
    int e = pthread_key_create(&tc_key, thread_exit);
    tc_key_made = e == 0;
    if (e)
        vms__log_warn("no thread-exit hook for per-thread stack caches (pthread_key_create: "
                      "%s): threads free stacks straight to the shared lists, one system "
                      "call per free; leave a thread-specific-data key for vmstack's "
                      "first use", strerror(e));
}

/* fork (stack.c's handlers): the child must not inherit a lock held by another,
 * vanished, thread. None of these locks is taken while another is held. */
void vms__cache_fork_lock(void)
{
    pthread_once(&shared_once, shared_init);
    unsigned n = vms__arena_classes_used();
    for (unsigned i = 0; i < n; i++) pthread_mutex_lock(&shared[i].lock);
    pthread_mutex_lock(&registry_lock);
}

void vms__cache_fork_unlock(void)
{
    pthread_mutex_unlock(&registry_lock);
    for (unsigned i = vms__arena_classes_used(); i-- > 0;)
        pthread_mutex_unlock(&shared[i].lock);
}

/* The calling thread's cache, made at its first use. Not named tcache_*: a report
 * takes a frame of a function so named for glibc's malloc (trace.c's unsafe names) and
 * would blame the C library's allocator for a fault in vmstack. */
static struct tcache *thread_cache_get(void)
{
    struct tcache *t = tc;
    if (VMS_LIKELY(t)) return t;
    pthread_once(&shared_once, shared_init);
    /* A cache the thread's exit would not give back would lose its stacks. */
    if (VMS_UNLIKELY(!tc_key_made || tc_ended)) return NULL;
    t = calloc(1, sizeof *t + vms__opt.cache_per_thread * sizeof(struct vms_stack *));
    if (!t) return NULL;
    /* Nor one the thread-exit hook cannot find (ENOMEM): no cache then, as without calloc;
     * the next call tries again. */
    if (VMS_UNLIKELY(vms__os_setspecific(tc_key, t) != 0)) {
        free(t);
        return NULL;
    }
    pthread_mutex_lock(&registry_lock);
    t->nextc = registry;
    if (registry) registry->prev = t;
    registry = t;
    pthread_mutex_unlock(&registry_lock);
    tc = t;
    return t;
}

static void shared_push(struct vms_stack *first, struct vms_stack *last, unsigned cls,
                        size_t n, size_t warm)
{
    struct shared *s = &shared[cls];
    pthread_mutex_lock(&s->lock);
    last->next = atomic_load_explicit(&s->head, memory_order_relaxed);
    atomic_store_explicit(&s->head, first, memory_order_relaxed);
    s->count += n;
    s->nwarm += warm;
    /* Counted before the unlock: a thread that takes these stacks subtracts them after
     * its own unlock, so shared_warm never wraps below zero in between. */
    if (warm) atomic_fetch_add_explicit(&shared_warm, warm, memory_order_relaxed);
    pthread_mutex_unlock(&s->lock);
    /* Tests only: another thread may take the stacks from here on. */
    if (VMS_UNLIKELY(vms__cache_push_hook != NULL)) vms__cache_push_hook();
}

/* Takes n off shared_warm, never below 0: in the child of a fork made from a signal
 * handler that interrupted this thread between a claim and its release (or between a
 * list's count and shared_warm's), the count was made again without it. */
static void warm_sub(size_t n)
{
    size_t cur = atomic_load_explicit(&shared_warm, memory_order_relaxed);
    while (n && !atomic_compare_exchange_weak_explicit(&shared_warm, &cur,
                                                       cur > n ? cur - n : 0,
                                                       memory_order_relaxed,
                                                       memory_order_relaxed)) {}
}

/* Pushes one stack to the shared list of its class. */
static void shared_put(struct vms_stack *st)
{
    shared_push(st, st, st->cls, 1, st->warm != 0);
}

/* Claims up to want of the shared lists' warm budget (WARM_MAX stacks in all) for stacks
 * about to be pushed warm: counts them in shared_warm at once, so that threads deciding
 * at the same moment cannot keep more than WARM_MAX warm together. (A read of the room
 * and an add at the push could: each saw the same room. 300 threads exiting together
 * kept up to 1,691 pages resident for a budget of 1,024 stacks under Valgrind, which
 * switches threads at the discard between the two.) The push counts the stacks again:
 * the caller gives the claim back with warm_release once they are pushed, so that
 * shared_warm is never below the warm stacks in the lists. */
static size_t warm_claim(size_t want)
{
    size_t cur = atomic_load_explicit(&shared_warm, memory_order_relaxed);
    for (;;) {
        size_t room = WARM_MAX > cur ? WARM_MAX - cur : 0;
        size_t take = want < room ? want : room;
        if (!take) return 0;
        if (atomic_compare_exchange_weak_explicit(&shared_warm, &cur, cur + take,
                                                  memory_order_relaxed, memory_order_relaxed))
            return take;
    }
}

static void warm_release(size_t claimed)
{
    warm_sub(claimed);
}

/* Takes up to max stacks of cls from the shared list; returns the chain. */
static struct vms_stack *shared_take(unsigned cls, unsigned max, unsigned *got)
{
    struct shared *s = &shared[cls];
    *got = 0;
    /* A peek without the lock: a stale "empty" only costs a trip to the arena. */
    if (!atomic_load_explicit(&s->head, memory_order_relaxed)) return NULL;
    pthread_mutex_lock(&s->lock);
    struct vms_stack *head = atomic_load_explicit(&s->head, memory_order_relaxed);
    struct vms_stack *p = head, *last = NULL;
    unsigned n = 0;
    size_t warm = 0;
    while (p && n < max) {
        warm += p->warm != 0;
        last = p;
        p = p->next;
        n++;
    }
    atomic_store_explicit(&s->head, p, memory_order_relaxed);
    s->count -= n;
    s->nwarm -= warm;
    pthread_mutex_unlock(&s->lock);
    if (last) last->next = NULL;
    warm_sub(warm);
    *got = n;
    return n ? head : NULL;
}

size_t vms__cache_scrub_ranges(const struct iovec *iov, size_t n, bool *zeroed)
{
    bool refused[SCRUB_BATCH];
    size_t nzeroed = 0;
    for (size_t done = 0; done < n; done += SCRUB_BATCH) {
        size_t k = n - done < SCRUB_BATCH ? n - done : SCRUB_BATCH;
        if (vms__os_discard_many(iov + done, k, refused) == 0) {
            if (zeroed) memset(zeroed + done, 0, k * sizeof *zeroed);
            continue;
        }
        /* The pages of these could not be dropped: zero them by hand rather than ever
         * hand out old data (touches every page: slow, but only when madvise fails). */
        for (size_t i = 0; i < k; i++) {
            if (refused[i]) {
                memset(iov[done + i].iov_base, 0, iov[done + i].iov_len);
                nzeroed++;
            }
            if (zeroed) zeroed[done + i] = refused[i];
        }
    }
    return nzeroed;
}

/* Pre: registry_lock held (or the fork child's handler). Takes t out of the registry,
 * its counts to the exited threads'. */
static void registry_retire(struct tcache *t)
{
    if (t->prev) t->prev->nextc = t->nextc;
    else registry = t->nextc;
    if (t->nextc) t->nextc->prev = t->prev;
    atomic_fetch_add(&retired_gets, atomic_load(&t->gets));
    atomic_fetch_add(&retired_puts, atomic_load(&t->puts));
}

/* The child of fork has the forking thread only. The other threads' caches leave the
 * registry (their counts go to the exited threads'), to be taken back by the child's
 * first reap (vms__cache_adopt_forsaken): lazily, so that a child that only calls exec
 * pays nothing. shared_warm is counted again from the lists: a thread the child does not
 * have may have claimed budget that it would have given back. Then the locks are
 * released. Returns whether caches wait to be taken back. */
bool vms__cache_fork_child(void)
{
    for (struct tcache *t = registry, *next; t; t = next) {
        next = t->nextc;
        if (t == tc) continue;
        registry_retire(t);
        t->prev = NULL;
        t->nextc = forsaken_caches;
        forsaken_caches = t;
    }
    size_t warm = 0;
    pthread_t self = pthread_self();
    for (unsigned i = 0, n = vms__arena_classes_used(); i < n; i++) {
        struct shared *sh = &shared[i];
        /* The stacks a trim on another thread had in hand are filed back as the fork
         * found them: those it had dropped cold (warm is cleared after the discard,
         * which the fork cannot split), the rest warm as they were. A trim of this
         * thread's own (it forked from a signal handler) goes on in the child and files
         * its stacks itself: their budget stays counted. */
        struct trim_run *own = NULL;
        for (struct trim_run *r = sh->trims, *next; r; r = next) {
            next = r->next;
            if (pthread_equal(r->thread, self)) {
                r->next = own;
                own = r;
                /* Each counted, warm or not: all were warm when taken, and the trim
                 * gives back the budget of every one it files cold, those it had
                 * marked cold before the fork too (between its discard and the lock). */
                for (struct vms_stack *st = r->head; st; st = st->next) warm++;
                continue;
            }
            for (struct vms_stack *st = r->head, *sn; st; st = sn) {
                sn = st->next;
                st->next = atomic_load_explicit(&sh->head, memory_order_relaxed);
                atomic_store_explicit(&sh->head, st, memory_order_relaxed);
                sh->count++;
                sh->nwarm += st->warm != 0;
            }
        }
        sh->trims = own;
        warm += sh->nwarm;
    }
    atomic_store_explicit(&shared_warm, warm, memory_order_relaxed);
    bool pending = forsaken_caches != NULL;
    vms__cache_fork_unlock();
    return pending;
}

/* Claims st, which a thread the fork child does not have had cached, for the child:
 * false unless it is FREE (the fork caught that thread handing it out) and not claimed
 * already (a cache copied by fork in the middle of a change, from a thread that ran on,
 * can name a stack twice, or one another such cache names). A claimed stack reads LIVE,
 * its hand-out count moved on (a handle kept from before names it no more), until it is
 * filed (adopt_batch). */
static bool adopt_claim(struct vms_stack *st)
{
    uint32_t w = atomic_load_explicit(&st->state, memory_order_acquire);
    if ((w & VMS__SLOT_STATE_MASK) != VMS__SLOT_FREE) return false;
    uint32_t mine = ((w & ~(uint32_t)VMS__SLOT_STATE_MASK) + (1u << VMS__SLOT_GEN_SHIFT)) |
                    VMS__SLOT_LIVE;
    return atomic_compare_exchange_strong_explicit(&st->state, &w, mine, memory_order_acq_rel,
                                                   memory_order_relaxed);
}

/* Scrubs v[0..n), claimed stacks, whole (what a thread the child does not have had cached
 * is trusted no more than its dirty stacks: its writes during the fork may or may not be
 * in the child's copy), and files them FREE and cold in the shared lists. */
static void adopt_batch(struct vms_stack **v, size_t n)
{
    if (!n) return;
    struct iovec iov[SCRUB_BATCH] = { { 0 } };   /* all set below; gcc cannot tell */
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = v[i]->base;
        iov[i].iov_len = v[i]->size;
    }
    bool zeroed[SCRUB_BATCH];
    (void)vms__cache_scrub_ranges(iov, n, zeroed);
    for (size_t i = 0; i < n; i++) {
        struct vms_stack *st = v[i];
        /* Cold, unless the kernel refused to drop its pages: zeroed by hand, resident and
         * counted so (past the warm budget, perhaps: docs/internals.md). */
        st->warm = zeroed[i] ? 2 : 0;
        uint32_t w = atomic_load_explicit(&st->state, memory_order_relaxed);
        atomic_store_explicit(&st->state, (w & ~(uint32_t)VMS__SLOT_STATE_MASK) | VMS__SLOT_FREE,
                              memory_order_release);
        shared_put(st);
    }
}

void vms__cache_adopt_forsaken(void)
{
    pthread_mutex_lock(&registry_lock);
    struct tcache *list = forsaken_caches;
    forsaken_caches = NULL;
    pthread_mutex_unlock(&registry_lock);
    struct vms_stack *batch[SCRUB_BATCH];
    size_t n = 0;
    unsigned cap = vms__opt.cache_per_thread;
    while (list) {
        struct tcache *t = list;
        list = t->nextc;
        /* Counts and entries as the fork found them: bounded, each entry a record vmstack
         * handed out or NULL, and checked again. */
        unsigned nc = t->nclean < cap ? t->nclean : cap;
        unsigned nd = t->ndirty < SCRUB_BATCH ? t->ndirty : SCRUB_BATCH;
        for (unsigned i = 0; i < nc + nd; i++) {
            struct vms_stack *st = i < nc ? t->clean[i] : t->dirty[i - nc];
            if (!st || vms__arena_record(st) != st || !adopt_claim(st)) continue;
            batch[n++] = st;
            if (n == SCRUB_BATCH) {
                adopt_batch(batch, n);
                n = 0;
            }
        }
        free(t);
    }
    adopt_batch(batch, n);
}

/* Scrubs v[0..nv) (at most SCRUB_BATCH freed stacks, their top page zeroed by the free
 * unless VMS_NO_SCRUB) with one system call and files them: into t's LIFO while it has
 * room, the rest to the shared lists. Stacks bound for the shared lists beyond WARM_MAX
 * lose their top page too. Every freed stack goes through here, whether its thread has
 * a cache (t, its dirty batch) or not (t NULL, a batch of one): so every stack that
 * joins the shared lists warm from a free has its share of the budget claimed. */
static void scrub_file(struct tcache *t, struct vms_stack **v, unsigned nv)
{
    size_t page = vms__os_page_size();
    struct iovec iov[SCRUB_BATCH];
    unsigned of[SCRUB_BATCH];        /* the stack of each range */
    size_t n = 0;
    unsigned room = t ? vms__opt.cache_per_thread - t->nclean : 0;
    /* The stacks beyond the LIFO's room go to the shared lists: warm only within the
     * budget claimed for them. */
    size_t claimed = warm_claim(nv > room ? nv - room : 0);
    size_t warm_budget = claimed;
    /* With VMS_END_CHECK the bottom page holds the magic word, rewritten at every
     * hand-out: it stays resident too (zeroed at free), so a hand-out costs no fault. */
    size_t skip_bottom = (vms__opt.flags & VMS_END_CHECK) ? page : 0;
    for (unsigned i = 0; i < nv; i++) {
        struct vms_stack *st = v[i];
        bool keep_warm = i < room || warm_budget > 0;
        if (i >= room && warm_budget > 0) warm_budget--;
        size_t keep = (keep_warm ? page : 0) + (keep_warm ? skip_bottom : 0);
        size_t len = st->size > keep ? st->size - keep : 0;
        st->warm = keep_warm && st->size >= page;
        if (len) {
            iov[n].iov_base = st->base + (keep_warm ? skip_bottom : 0);
            iov[n].iov_len = len;
            of[n++] = i;
        }
    }
    bool zeroed[SCRUB_BATCH];
    if (vms__cache_scrub_ranges(iov, n, zeroed)) {
        /* Those whose pages the kernel refused to drop, zeroed by hand: resident, which
         * the debug layer's painting must not take for used, and counted warm by the
         * push, also beyond the budget (the only way past it: docs/internals.md). */
        for (size_t j = 0; j < n; j++)
            if (zeroed[j]) v[of[j]]->warm = 2;
    }
    for (unsigned i = 0; i < nv; i++) {
        struct vms_stack *st = v[i];
        /* Off the batch before it is filed: a fork during this loop must not find it
         * both in a shared list and in the batch, whose stacks the child claims
         * (vms__cache_adopt_forsaken) and would file a second time, to be handed out
         * twice. In between, the child finds it nowhere: lost to the child only. The
         * store is visible before the stack is in a list (the list's lock). */
        v[i] = NULL;
        if (t && t->nclean < vms__opt.cache_per_thread) t->clean[t->nclean++] = st;
        else shared_put(st);
    }
    warm_release(claimed);
}

/* Scrubs this thread's dirty batch and files its stacks (scrub_file). */
static void scrub_batch(struct tcache *t)
{
    scrub_file(t, t->dirty, t->ndirty);
    t->ndirty = 0;
}

/* Returns st, about to be handed out: a direct-backend slot whose heap block could not be
 * discarded is zeroed whole now, at its first hand-out (resident from here on, which
 * painting must not take for used: warm 2). The vmap backend's slots are never
 * VMS__WARM_UNZEROED: nothing to check on its allocation path. */
static inline struct vms_stack *hand_out(struct vms_stack *st)
{
#ifndef VMSTACK_VMAP
    if (VMS_UNLIKELY(st->warm == VMS__WARM_UNZEROED)) {
        memset(st->base, 0, st->size);
        st->warm = 2;
    }
#endif
    return st;
}

/* New slots of cls, a few at once so that opening is amortized: the first is returned,
 * the others wait in the shared list, not in a thread's LIFO (the LIFO is for recycled
 * stacks with a warm top page, and a class used once, a thread's alternate signal stack
 * say, must not occupy it). NULL when no slot could be opened. */
static struct vms_stack *open_fresh(unsigned cls, unsigned want)
{
    struct vms_stack *fresh[16];
    unsigned n = want < 16 ? want : 16;
    int r = vms__arena_open(cls, fresh, n);
    if (r <= 0) return NULL;
    if (r > 1) {
        size_t warm = fresh[r - 1]->warm != 0;
        for (int i = 1; i + 1 < r; i++) {
            fresh[i]->next = fresh[i + 1];
            warm += fresh[i]->warm != 0;
        }
        shared_push(fresh[1], fresh[r - 1], cls, (size_t)r - 1, warm);
    }
    return fresh[0];
}

/* For a thread without a per-thread cache (calloc or pthread_setspecific failed, or no
 * thread-exit hook): one stack from the shared list, else new slots. Counted with the exited threads' gets, as
 * vms__cache_put counts such a thread's frees with their puts. */
static struct vms_stack *get_without_cache(unsigned cls)
{
    unsigned got;
    struct vms_stack *st = shared_take(cls, 1, &got);
    if (!st) st = open_fresh(cls, vms__opt.cache_per_thread / 2 + 1);
    if (!st) {
        errno = ENOMEM;
        return NULL;
    }
    atomic_fetch_add(&retired_gets, 1);
    return hand_out(st);
}

struct vms_stack *vms__cache_get(unsigned cls)
{
    struct tcache *t = thread_cache_get();
    if (VMS_UNLIKELY(!t)) return get_without_cache(cls);
    /* The LIFO, most recent first; stacks of another class are skipped (rare). */
    for (unsigned i = t->nclean; i-- > 0;) {
        struct vms_stack *st = t->clean[i];
        if (VMS_LIKELY(st->cls == cls)) {
            t->clean[i] = t->clean[--t->nclean];
            t->clean[t->nclean] = NULL;   /* see struct tcache */
            bump(&t->gets);
            return hand_out(st);
        }
    }
    /* The shared list: a few at once, so the lock is taken once per several allocs, but
     * no more than the LIFO has room for besides the one handed out: the rest went back
     * to the list warm, with no claim on the budget, which another thread could fill in
     * between (tested). So a warm stack leaves a list for a LIFO or an owner only, and
     * the budget is claimed where a stack is made warm: at a free. */
    unsigned want = vms__opt.cache_per_thread / 2 + 1, got;
    unsigned room = vms__opt.cache_per_thread - t->nclean;
    struct vms_stack *chain = shared_take(cls, want <= room ? want : room + 1, &got);
    if (!chain) {
        /* New slots. They cost address space only until touched; this thread's dirty
         * batch is not scrubbed early, which keeps the steady state at one system call
         * per SCRUB_BATCH frees (the slots opened meanwhile are bounded by the batch
         * size). */
        struct vms_stack *st = open_fresh(cls, want);
        if (!st) {
            if (t->ndirty) {
                /* Out of slots: the dirty batch is all we have. */
                scrub_batch(t);
                return vms__cache_get(cls);
            }
            /* Whatever failed underneath (mmap, mprotect at vm.max_map_count, a guard
             * that could not be installed), no stack is handed out: ENOMEM. */
            errno = ENOMEM;
            return NULL;
        }
        bump(&t->gets);
        return hand_out(st);
    }
    struct vms_stack *st = chain;
    chain = chain->next;
    while (chain) {
        struct vms_stack *next = chain->next;
        t->clean[t->nclean++] = chain;   /* room for it: taken so */
        chain = next;
    }
    bump(&t->gets);
    return hand_out(st);
}

bool vms__cache_put(struct vms_stack *st)
{
    struct tcache *t = thread_cache_get();
    /* Every SCRUB_BATCH-th free of this thread is a moment for the caller's periodic
     * work (stack.c reaps ended threads' stacks then); counted by frees rather than by
     * batches, which VMS_NO_SCRUB and a LIFO with room may never run. A thread without
     * a cache counts with the exited threads. */
    bool tick = (VMS_UNLIKELY(!t) ? atomic_fetch_add(&retired_puts, 1) + 1
                                  : bump_put(&t->puts)) % SCRUB_BATCH == 0;
    if (vms__opt.flags & VMS_NO_SCRUB) {
        if (VMS_LIKELY(t != NULL) && VMS_LIKELY(t->nclean < vms__opt.cache_per_thread)) {
            /* Resident as the owner left it, whatever a batch or a trim made of it
             * before: counts as warm, and painting repaints the owner's pages. */
            st->warm = VMS__WARM_AS_LEFT;
            t->clean[t->nclean++] = st;
            return tick;
        }
    } else {
        /* The top page: zeroed by hand, so it stays resident for the next owner; with
         * VMS_END_CHECK the bottom page (the magic's, resident) as well. */
        size_t page = vms__os_page_size();
        size_t n = st->size < page ? st->size : page;
        memset(st->base + st->size - n, 0, n);
        if ((vms__opt.flags & VMS_END_CHECK) && st->size > page) memset(st->base, 0, page);
    }
    if (VMS_UNLIKELY(!t)) {
        /* No per-thread cache (no key, or calloc or pthread_setspecific failed): a batch
         * of one, to the shared list, warm only within the budget like any batch. */
        scrub_file(NULL, &st, 1);
        return tick;
    }
    t->dirty[t->ndirty++] = st;
    if (t->ndirty == SCRUB_BATCH) scrub_batch(t);
    return tick;
}

void vms__cache_drop_pages(struct vms_stack *st)
{
    size_t page = vms__os_page_size();
    if (st->size > page) (void)vms__os_discard(st->base, st->size - page);
}

void vms__cache_flush(void)
{
    struct tcache *t = tc;
    if (t && t->ndirty) scrub_batch(t);
}

/* The sums of every thread's frees and allocations, under registry_lock. */
static unsigned long sum_puts(void)
{
    unsigned long n = atomic_load(&retired_puts);
    for (struct tcache *t = registry; t; t = t->nextc)
        n += atomic_load_explicit(&t->puts, memory_order_acquire);
    return n;
}

static unsigned long sum_gets(void)
{
    unsigned long n = atomic_load(&retired_gets);
    for (struct tcache *t = registry; t; t = t->nextc)
        n += atomic_load_explicit(&t->gets, memory_order_acquire);
    return n;
}

/* Stacks handed out and not freed: the sum of the threads' allocations less the sum of
 * their frees. A stack allocated on one thread and freed on another is counted by both,
 * and the counts are read one after the other while the threads go on: read in the
 * same pass, the allocating thread's count from before an allocation and the freeing
 * thread's from after its free made the stack freed and never allocated (stacks_live
 * fell below the stacks live all along, to 0 when the reader was descheduled between
 * the two). So the frees are summed first: a free's count is stored (release) after its
 * stack was seen LIVE (the state word's acquire load in vms_stack_free), which its
 * allocation stored (release) after counting it, so every free summed has its
 * allocation in the later sum of allocations. When no free was counted while the
 * allocations were summed (the frees summed again are the same: each count only grows),
 * the result is exact at some moment of the call; after LIVE_RETRIES tries it is at least the
 * stacks live throughout the call, and may include stacks allocated and freed during it.
 * The retired counts are read under the lock too: a thread that retires its cache moves
 * its counts from the registry to them under it. */
#define LIVE_RETRIES 8
size_t vms__cache_live(void)
{
    pthread_mutex_lock(&registry_lock);
    unsigned long puts = sum_puts(), gets;
    for (int i = 1;; i++) {
        gets = sum_gets();   /* after puts, always */
        unsigned long again = sum_puts();
        if (again == puts || i == LIVE_RETRIES) break;
        puts = again;
    }
    pthread_mutex_unlock(&registry_lock);
    return gets >= puts ? gets - puts : 0;
}

/* Drops every page of the warm stacks among v[0..n) beyond the shared lists' warm budget,
 * before they join the shared lists (a thread's LIFO, at its exit): as a batch bound for
 * the shared lists does, so that threads exiting together do not hold WARM_MAX warm pages
 * each. Those that stay warm keep their top page only (with VMS_END_CHECK, the bottom one
 * too), as a batch leaves them: with VMS_NO_SCRUB a stack freed straight into the LIFO
 * still holds every page its owner touched (VMS__WARM_AS_LEFT), and kept so, the budget
 * bounded the stacks, not their pages (1,024 stacks at their owners' full depth). Their
 * bytes are zero or the last owner's already: should a discard fail, they just stay as
 * they were. Returns the budget claimed, for warm_release once they are pushed. */
static size_t trim_for_shared(struct vms_stack **v, unsigned n)
{
    size_t page = vms__os_page_size();
    size_t skip_bottom = (vms__opt.flags & VMS_END_CHECK) ? page : 0;
    size_t nwarm = 0;
    for (unsigned i = 0; i < n; i++) nwarm += v[i]->warm != 0;
    size_t claimed = warm_claim(nwarm);
    size_t budget = claimed;
    struct iovec iov[SCRUB_BATCH];
    struct vms_stack *trimmed[SCRUB_BATCH];
    uint8_t now_warm[SCRUB_BATCH];
    size_t k = 0;
    for (unsigned i = 0; i <= n; i++) {
        if (i < n) {
            struct vms_stack *st = v[i];
            if (!st->warm) continue;
            if (budget) {
                budget--;
                /* Stays warm: only a stack as its owner left it has pages below the
                 * top one to drop. */
                size_t keep = page + skip_bottom;
                if (st->warm != VMS__WARM_AS_LEFT || st->size <= keep) continue;
                iov[k].iov_base = st->base + skip_bottom;
                iov[k].iov_len = st->size - keep;
                now_warm[k] = 1;
            } else {
                iov[k].iov_base = st->base;
                iov[k].iov_len = st->size;
                now_warm[k] = 0;
            }
            trimmed[k++] = st;
        }
        if (k == SCRUB_BATCH || (i == n && k)) {
            bool refused[SCRUB_BATCH];
            (void)vms__os_discard_many(iov, k, refused);
            for (size_t j = 0; j < k; j++)
                if (!refused[j]) trimmed[j]->warm = now_warm[j];
            k = 0;
        }
    }
    return claimed;
}

void (*vms__cache_flush_hook)(void);
void (*vms__cache_push_hook)(void);
void (*vms__cache_trim_hook)(unsigned cls);
void (*vms__cache_trim_dropped_hook)(unsigned cls);

bool vms__cache_lifo_tear(bool torn)
{
    struct tcache *t = tc;
    if (!t) return false;
    if (torn) {
        if (t->nclean >= vms__opt.cache_per_thread) return false;
        t->nclean++;
    } else {
        if (!t->nclean || t->clean[t->nclean - 1]) return false;
        t->nclean--;
    }
    return true;
}

size_t vms__cache_shared_warm(void)
{
    return atomic_load(&shared_warm);
}

size_t vms__cache_shared_warm_listed(void)
{
    pthread_once(&shared_once, shared_init);
    size_t n = 0;
    for (unsigned i = 0, c = vms__arena_classes_used(); i < c; i++) {
        pthread_mutex_lock(&shared[i].lock);
        n += shared[i].nwarm;
        pthread_mutex_unlock(&shared[i].lock);
    }
    return n;
}

void vms__cache_flush_thread(void)
{
    struct tcache *t = tc;
    if (!t) return;
    if (t->ndirty) scrub_batch(t);
    size_t claimed = trim_for_shared(t->clean, t->nclean);
    if (vms__cache_flush_hook) vms__cache_flush_hook();
    while (t->nclean) {
        struct vms_stack *st = t->clean[--t->nclean];
        t->clean[t->nclean] = NULL;   /* before st is in a list: see struct tcache */
        shared_put(st);
    }
    warm_release(claimed);
}

/* Drops v[0..k) whole with one system call: how many stay warm (those the kernel
 * refused to drop, the first refusal's error in *err unless it holds one already). */
static size_t cool_batch(const struct iovec *iov, struct vms_stack **v, size_t k, int *err)
{
    bool refused[SCRUB_BATCH];
    int e = vms__os_discard_many(iov, k, refused);
    if (e && !*err) *err = e;
    size_t warm = 0;
    for (size_t j = 0; j < k; j++) {
        if (refused[j]) warm++;
        else v[j]->warm = 0;
    }
    return warm;
}

/* Trims one shared list without holding its lock over the system calls: its warm stacks
 * are taken out of the list under the lock (pointer work only), dropped SCRUB_BATCH per
 * system call with the lock released, and each batch filed back (cold, or warm as it was
 * should the discard fail) under the lock once dropped. Meanwhile a thread that
 * allocates or frees that size does not wait (it finds the list without the stacks in
 * hand: the cold ones, or none, and may open new slots), and a fork does not either: the
 * stacks in hand are listed in the list's `trims`, which the child files back
 * (vms__cache_fork_child). The budget those stacks hold (shared_warm) is given back only
 * once they are filed cold: until their pages are dropped they are still resident. */
static void trim_list(unsigned cls, int *err)
{
    struct shared *sh = &shared[cls];
    struct trim_run run = { .next = NULL, .head = NULL, .thread = pthread_self() };
    pthread_mutex_lock(&sh->lock);
    size_t nwarm = sh->nwarm;
    if (nwarm) {
        /* The warm stacks out, in their order; the walk stops at the last of them. */
        struct vms_stack *st = atomic_load_explicit(&sh->head, memory_order_relaxed);
        struct vms_stack *prev = NULL, **to = &run.head;
        size_t seen = 0;
        while (st && seen < nwarm) {
            struct vms_stack *next = st->next;
            if (st->warm) {
                if (prev) prev->next = next;
                else atomic_store_explicit(&sh->head, next, memory_order_relaxed);
                *to = st;
                to = &st->next;
                seen++;
            } else {
                prev = st;
            }
            st = next;
        }
        *to = NULL;
        sh->count -= seen;
        sh->nwarm -= seen;
        /* Listed only with stacks in hand: a run left listed after its return would
         * point into a frame that is gone. */
        if (seen) {
            run.next = sh->trims;
            sh->trims = &run;
        }
    }
    pthread_mutex_unlock(&sh->lock);
    if (!run.head) return;
    /* Tests only: the stacks are in hand, the lock released. */
    if (VMS_UNLIKELY(vms__cache_trim_hook != NULL)) vms__cache_trim_hook(cls);
    while (run.head) {
        struct iovec iov[SCRUB_BATCH];
        struct vms_stack *v[SCRUB_BATCH];
        size_t k = 0;
        /* Only this thread changes the links of the stacks in hand (a fork child reads
         * them as the fork found them). */
        for (struct vms_stack *st = run.head; st && k < SCRUB_BATCH; st = st->next) {
            iov[k].iov_base = st->base;
            iov[k].iov_len = st->size;
            v[k++] = st;
        }
        size_t still = cool_batch(iov, v, k, err);
        /* Tests only: the batch dropped and marked cold, not yet filed back. */
        if (VMS_UNLIKELY(vms__cache_trim_dropped_hook != NULL)) vms__cache_trim_dropped_hook(cls);
        pthread_mutex_lock(&sh->lock);
        run.head = v[k - 1]->next;
        v[k - 1]->next = atomic_load_explicit(&sh->head, memory_order_relaxed);
        atomic_store_explicit(&sh->head, v[0], memory_order_relaxed);
        sh->count += k;
        sh->nwarm += still;
        if (!run.head) {
            struct trim_run **p = &sh->trims;
            while (*p != &run) p = &(*p)->next;
            *p = run.next;
        }
        pthread_mutex_unlock(&sh->lock);
        /* After the unlock, as shared_take's: the stacks dropped hold no budget now. */
        warm_sub(k - still);
    }
}

int vms__cache_trim(void)
{
    vms__cache_flush_thread();
    pthread_once(&shared_once, shared_init);
    int err = 0;
    for (unsigned cls = 0, c = vms__arena_classes_used(); cls < c; cls++) trim_list(cls, &err);
    return err;
}

static void thread_exit(void *p)
{
    (void)p;
    tc_ended = true;
    vms__cache_flush_thread();
    struct tcache *t = tc;
    if (!t) return;
    pthread_mutex_lock(&registry_lock);
    registry_retire(t);
    pthread_mutex_unlock(&registry_lock);
    tc = NULL;
    free(t);
}
