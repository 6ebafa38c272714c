/*
 * debug.c - the debug layer: stack painting and high-water marks (VMS_PAINT), the
 * end-of-stack magic (VMS_END_CHECK), the per-size usage histogram, and the kernel-style
 * "used greatest stack depth" line. The user-space CONFIG_DEBUG_STACK_USAGE and
 * STACK_END_MAGIC / CONFIG_SCHED_STACK_END_CHECK.
 *
 * Invariant of painting: from hand-out on, every byte of the painted pages (counted in
 * st->debug from the top, normally just the top page) and every byte of a page that was
 * not resident at hand-out reads as zero until this owner touches it. So the deepest
 * use is found with a few mincore(2) calls from the top down (cost proportional to the
 * depth used) and a scan of a few pages, and handing a stack out costs no system call.
 * Calls only the layers below (os, options, log; stack.c's reap before the histogram
 * is read); called by stack.c and the task layer.
 */
#include "internal.h"
#include "track.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* mincore vectors are read in chunks of this many pages (1 KiB on the C stack covers a
 * 4 MiB stack in one system call; larger stacks take a few). */
#define VEC_CHUNK 1024

/* The histogram, per size class, under hist_lock: a free adds to three figures (the
 * count, a bucket, the greatest depth) that vms_stack_usage must read together. Counted
 * with separate atomics, a reader beside threads that freed stacks saw a count that its
 * buckets did not add up to, or a greatest depth outside every counted bucket. A leaf
 * lock, held for a few stores (the measurement is made before it is taken); fork takes
 * it last (vms__debug_fork_lock). */
static pthread_mutex_t hist_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    size_t stacks, max_used;
    size_t buckets[VMS_USAGE_BUCKETS];
} hist[VMS__CLASSES];
/* The greatest depth reported by a task, per size class. */
static atomic_size_t task_max[VMS__CLASSES];

static size_t page_size(void)
{
    return vms__os_page_size();
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__,
               "first_nonzero finds the lowest byte of a word with ctz (x86-64, aarch64)");

/* The address of the first non-zero byte in [lo, hi), or NULL. lo and hi are 8-byte
 * aligned. Reads with volatile loads: the owner may be running on another thread. Not
 * instrumented by ASan: a suspended task's frames keep their poisoned redzones. */
__attribute__((no_sanitize("address")))
static const char *first_nonzero(const char *lo, const char *hi)
{
    for (const volatile uint64_t *w = (const volatile uint64_t *)(const void *)lo;
         (const char *)w < hi; w++) {
        uint64_t v = *w;
        if (v) return (const char *)w + (__builtin_ctzll(v) >> 3); /* little-endian */
    }
    return NULL;
}

/* st->debug, the painting state of a stack, kept across owners (the arena layer clears
 * it when a slot is first opened: nothing painted, nothing dirty):
 *   bits 0-31   painted pages, counted from the top: resident at hand-out and holding
 *               only paint (zero), so they count as used only where not zero;
 *   bits 32-62  dirty pages, from the top: where the last owner may have left non-zero
 *               bytes (set when the stack is freed, used by the next hand-out);
 *   bit 63      the depth in st->max_used is final (the task ended; nothing runs on the
 *               stack any more), so freeing it need not measure again. */
#define PAINTED_MASK UINT64_C(0xffffffff)
#define DIRTY_SHIFT  32
#define DIRTY_MASK   UINT64_C(0x7fffffff)
#define DEPTH_FINAL  (UINT64_C(1) << 63)

static size_t painted_pages(const struct vms_stack *st)
{
    return (size_t)((uint64_t)st->debug & PAINTED_MASK);
}

static size_t dirty_pages(const struct vms_stack *st)
{
    return (size_t)(((uint64_t)st->debug >> DIRTY_SHIFT) & DIRTY_MASK);
}

static void set_state(struct vms_stack *st, size_t painted, size_t dirty, bool final)
{
    st->debug = (uintptr_t)((uint64_t)painted | ((uint64_t)dirty << DIRTY_SHIFT) |
                            (final ? DEPTH_FINAL : 0));
}

/* Paints st for a new owner, without a system call. With scrubbing (the default) the
 * cache hands out stacks whose pages are all zero and of which at most the top page is
 * resident (cache.c; every page when discarding failed and the cache zeroed them by hand,
 * st->warm == 2), so zero is the paint and nothing needs writing. With VMS_NO_SCRUB
 * the previous owner's bytes are still there, but only within the depth measured when
 * it freed the stack (the dirty pages), and only in the pages the cache kept since
 * (st->warm): those are zeroed, a cost proportional to the previous owner's depth, and
 * they join the painted pages (they stay resident). Pages the cache dropped read as
 * zero already and are left alone: zeroing them faulted them in again, undoing the
 * cache's trimming (16 page faults per 64 KiB-deep stack). */
static void paint(struct vms_stack *st)
{
    size_t page = page_size(), n = st->size / page;
    if (!(vms__opt.flags & VMS_NO_SCRUB)) {
        /* warm == 2: discarding failed and the cache zeroed every page by hand. */
        set_state(st, st->warm == 2 ? n : 1, 0, false);
        return;
    }
    size_t painted = painted_pages(st), dirty = dirty_pages(st);
    if (dirty > n) dirty = n;
    switch (st->warm) {
    case VMS__WARM_AS_LEFT:
        break;            /* freed straight to a LIFO: every page as the owner left it */
    case 2:
        /* A batch that could not be discarded, zeroed by hand but for the pages it
         * kept (the top one, with the magic the bottom one): every page resident. */
        painted = n;
        break;
    case 1:
        /* A batch dropped every page but the top one and, with the magic, the bottom
         * one (whose bytes beyond the magic count only where not zero, measure()):
         * those hold what the owner left, if it got there. */
        if ((vms__opt.flags & VMS_END_CHECK) && dirty == n && n > 1)
            memset(st->base, 0, page);
        if (dirty > 1) dirty = 1;
        painted = 1;
        break;
    default:
        dirty = 0;        /* dropped whole */
        painted = 1;
        break;
    }
    if (dirty) memset(st->base + st->size - dirty * page, 0, dirty * page);
    if (painted < dirty) painted = dirty;
    if (painted < 1) painted = 1;
    set_state(st, painted, 0, false);
}

void vms__debug_stack_alloc(struct vms_stack *st)
{
    st->max_used = 0;
    if (vms__opt.flags & VMS_PAINT) paint(st);
    if (vms__opt.flags & VMS_END_CHECK) {
        uint64_t *w = (uint64_t *)(void *)st->base;
        w[0] = VMS__END_MAGIC;
        w[1] = VMS__END_MAGIC;
    }
}

/* The high-water mark; -1 when mincore failed (it cannot for a mapped stack). A page
 * below the painted part that is resident now was touched by this owner (it was not
 * resident at hand-out): the deepest such page bounds the depth within one page; within
 * it, the first non-zero byte makes the figure exact for ordinary stack contents. A
 * painted page (and, with the magic, the bottom page) counts only when it holds a
 * non-zero byte, since it was resident before the owner began.
 * whole: every page of the stack is looked at, so a byte written anywhere counts, at a
 * cost that grows with the stack size (one mincore per VEC_CHUNK pages: one call up to
 * 4 MiB); vms_stack_max_used, whose contract is "the deepest use", measures so.
 * Otherwise (the measurement at a task's end or a stack's free, for the histogram and
 * the greatest-depth line) the cost is proportional to the depth used, not to the stack
 * size: the scan goes down from the top in windows that double (a guard plus 16 pages,
 * then twice that ..., one mincore each) and stops once a guard's worth of pages below
 * the deepest touched page (or the deepest painted page, which may hold the owner's
 * zeros) was found untouched. That assumes the stack was used from its top down, as code
 * uses it: a frame that skips more than a guard without touching it would jump the guard
 * as well, which vmstack already asks programs to prevent (-fstack-clash-protection
 * probes every page). */
static long long measure(const struct vms_stack *st, bool whole)
{
    size_t page = page_size(), n = st->size / page;
    size_t p_pages = painted_pages(st);
    size_t painted = p_pages < n ? n - p_pages : 0;   /* first painted page index */
    bool magic = (vms__opt.flags & VMS_END_CHECK) != 0;
    size_t gap = vms__opt.guard_size / page;
    if (gap < 1) gap = 1;
    const char *top = vms__stack_top_of(st);
    unsigned char vec[VEC_CHUNK];
    long long best = 0;
    size_t lowest = n;          /* the deepest page found touched; n: none yet */
    /* The first window covers a guard's worth below a shallow use, so a shallow stack
     * takes one system call. */
    size_t hi = n, w = whole ? VEC_CHUNK : gap + 16;
    while (hi > 0) {
        if (w > VEC_CHUNK) w = VEC_CHUNK;
        size_t lo = hi > w ? hi - w : 0, k = hi - lo;
        if (vms__os_resident_pages(st->base + lo * page, k * page, vec) != 0) return -1;
        for (size_t j = k; j-- > 0;) {
            if (!(vec[j] & 1)) continue;
            size_t p = lo + j;
            const char *plo = st->base + p * page, *phi = plo + page;
            const char *a;
            vms__track_raw_reads_begin();
            if (p >= painted || (magic && p == 0))
                a = first_nonzero(p == 0 && magic ? plo + VMS__END_MAGIC_SIZE : plo, phi);
            else if (!(a = first_nonzero(plo, phi)))
                a = plo;
            vms__track_raw_reads_end();
            if (!a) continue;
            if ((long long)(top - a) > best) best = (long long)(top - a);
            lowest = p;
        }
        /* Stop after a guard's worth of untouched pages below the deepest page the
         * owner may have used: the deepest touched one, or the deepest painted one when
         * that is lower, since a zero the owner wrote into a painted page (a zeroed local
         * array, say) looks like the paint and must not end the scan early. */
        size_t from = lowest < painted ? lowest : painted;
        if (!whole && from >= lo + gap) break;
        hi = lo;
        w *= 2;
    }
    return best;
}

size_t vms__debug_max_used(const struct vms_stack *st, bool whole)
{
    if (!(vms__opt.flags & VMS_PAINT)) return 0;
    if ((uint64_t)st->debug & DEPTH_FINAL) return st->max_used;
    long long d = measure(st, whole);
    return d < 0 ? st->max_used : (size_t)d;
}

static unsigned bucket_of(size_t depth)
{
    size_t page = page_size();
    size_t pages = (depth + page - 1) / page;
    if (pages <= 1) return 0;
    unsigned b = 64u - (unsigned)__builtin_clzll((unsigned long long)(pages - 1));
    return b < VMS_USAGE_BUCKETS ? b : VMS_USAGE_BUCKETS - 1;
}

/* Raises *m to v; returns true when v was a new maximum. */
static bool raise_max(atomic_size_t *m, size_t v)
{
    size_t cur = atomic_load_explicit(m, memory_order_relaxed);
    while (v > cur)
        if (atomic_compare_exchange_weak_explicit(m, &cur, v, memory_order_relaxed,
                                                  memory_order_relaxed))
            return true;
    return false;
}

/* Records the depth of st's use at its free in st->max_used and how many pages from the
 * top the next hand-out must repaint (with VMS_NO_SCRUB); returns the depth. whole: as
 * measure's. */
static size_t settle(struct vms_stack *st, bool whole)
{
    size_t page = page_size(), n = st->size / page;
    size_t d;
    size_t dirty;
    if ((uint64_t)st->debug & DEPTH_FINAL) {
        d = st->max_used;
        dirty = (d + page - 1) / page;
    } else {
        long long m = measure(st, whole);
        d = m < 0 ? st->max_used : (size_t)m;
        dirty = m < 0 ? n : (d + page - 1) / page;   /* unknown: all of it */
    }
    /* Remembered for the next hand-out (VMS_NO_SCRUB repaints just that much). */
    set_state(st, painted_pages(st), dirty, false);
    st->max_used = d;
    return d;
}

void vms__debug_stack_free(struct vms_stack *st, bool raw)
{
    if (!(vms__opt.flags & VMS_PAINT) || st->cls >= VMS__CLASSES) return;
    /* A raw stack, which nothing obliges to be used from the top down (its program
     * writes where it likes), is looked at whole, as vms_stack_max_used looks at it:
     * the histogram gets the high-water mark that call gave, and with VMS_NO_SCRUB the
     * next owner's painting zeroes every page this one wrote. The top-down scan missed
     * a byte written below more than a guard of untouched pages: the histogram counted
     * a stack vms_stack_max_used had found 150,000 bytes deep as unused, and with
     * VMS_NO_SCRUB the next owner, which had touched nothing, got that depth. A task's
     * stack is used by code, from its top down (measure()'s stop rule). */
    size_t d = settle(st, raw);
    unsigned b = bucket_of(d);
    pthread_mutex_lock(&hist_lock);
    hist[st->cls].stacks++;
    if (VMS_UNLIKELY(vms__debug_hist_hook != NULL)) vms__debug_hist_hook();
    hist[st->cls].buckets[b]++;
    if (d > hist[st->cls].max_used) hist[st->cls].max_used = d;
    pthread_mutex_unlock(&hist_lock);
}

void (*vms__debug_hist_hook)(void);

void vms__debug_fork_lock(void)
{
    pthread_mutex_lock(&hist_lock);
}

void vms__debug_fork_unlock(void)
{
    pthread_mutex_unlock(&hist_lock);
}

void vms__debug_stack_reclaim(struct vms_stack *st)
{
    if ((vms__opt.flags & VMS_PAINT) && st->cls < VMS__CLASSES) (void)settle(st, false);
}

int vms_stack_usage(vms_usage *out, size_t n)
{
    if (!out && n > 0) return -EINVAL;
    int e = vms__ensure_init();
    if (e) return e;
    /* A joined thread's stack is freed (and its depth counted) only by a reap: reaped
     * first, and a reap in flight on another thread waited for, as vms_get_stats does,
     * so that threads joined before the call count. */
    vms__stack_reap_settled();
    int count = 0;
    pthread_mutex_lock(&hist_lock);
    for (unsigned c = 0; c < VMS__CLASSES; c++) {
        if (!hist[c].stacks) continue;
        if ((size_t)count < n) {
            vms_usage *u = &out[count];
            memset(u, 0, sizeof *u);
            u->stack_size = vms__arena_class_size(c);
            u->stacks = hist[c].stacks;
            u->max_used = hist[c].max_used;
            memcpy(u->buckets, hist[c].buckets, sizeof u->buckets);
        }
        count++;
    }
    pthread_mutex_unlock(&hist_lock);
    return count;
}

/* ---- report lines ------------------------------------------------------------------ */

/* One write(2) of the whole line to the report fd, retried on EINTR and partial writes. */
static void report_line(const char *buf, size_t len)
{
    int saved = errno;
    for (size_t off = 0; off < len;) {
        ssize_t w = vms__os_write_nocancel(vms__opt.report_fd, buf + off, len - off);
        if (w == -EINTR) continue;   /* not write(2)'s wrapper: never a cancellation point */
        if (w <= 0) break;
        off += (size_t)w;
    }
    errno = saved;
}

/* "fiber "name" (id N)" or "thread "name" (id N)". */
static void describe(const struct vms__task_info *ti, char *buf, size_t sz)
{
    char name[VMS__CLEAN_NAME];
    vms__clean_name(ti->name, name);
    snprintf(buf, sz, "%s \"%s\" (id %lu)", ti->kind == VMS__TASK_THREAD ? "thread" : "fiber",
             name, ti->id);
}

void vms__debug_task_end(const struct vms__task_info *ti)
{
    if (!(vms__opt.flags & VMS_PAINT) || !ti || !ti->stack) return;
    const struct vms_stack *st = ti->stack;
    if (st->cls >= VMS__CLASSES) return;
    size_t d = vms__debug_max_used(st, false);
    /* The task has ended: its depth is final, and freeing the stack reuses it. The
     * record is ours (the task layer hands it over before freeing it). */
    struct vms_stack *w = (struct vms_stack *)st;
    w->max_used = d;
    w->debug = (uintptr_t)((uint64_t)w->debug | DEPTH_FINAL);
    if (!raise_max(&task_max[st->cls], d)) return;
    char who[128], line[256];
    describe(ti, who, sizeof who);
    /* Left: what the task could still have used, as vms_stack_remaining counts it (the
     * end magic's bytes are not the task's). */
    size_t usable = st->size - vms__debug_end_reserve();
    int len = snprintf(line, sizeof line,
                       "vmstack: %s used greatest stack depth: %zu bytes, %zu bytes left\n",
                       who, d, usable > d ? usable - d : 0);
    if (len > 0) report_line(line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
}

void vms__debug_end_corrupted(const struct vms__task_info *ti, const struct vms_stack *st,
                              const vms_oops *oops)
{
    char who[128], line[384];
    if (ti) {
        describe(ti, who + 3, sizeof who - 3);
        memcpy(who, "in ", 3);
    } else {
        snprintf(who, sizeof who, "in a stack");
    }
    const volatile uint64_t *w = (const volatile uint64_t *)(const void *)st->base;
    uint64_t word = w[0] != VMS__END_MAGIC ? w[0] : w[1];
    int len = snprintf(line, sizeof line,
                       "vmstack: corrupted stack end detected %s on thread %ld: stack "
                       "[%p-%p) end word 0x%016llx (expected 0x%016llx)\n",
                       who, (long)syscall(SYS_gettid), (void *)st->base,
                       (void *)vms__stack_top_of(st), (unsigned long long)word,
                       (unsigned long long)VMS__END_MAGIC);
    if (len > 0) report_line(line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    /* An overflow found late, but an overflow: counted, and the hook sees it before the
     * task is killed or the process dies, as after an oops. */
    vms__guard_late_overflow(oops);
    /* A vms thread's body that forked is the child's main thread: not killed alone,
     * as an overflow there is not. */
    bool main_thread = ti && vms__guard_is_fork_main(ti, (long)syscall(SYS_gettid));
    if (main_thread) {
        int n = snprintf(line, sizeof line, "vmstack: %s\n", vms__guard_fork_main_why);
        if (n > 0) report_line(line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
    if (vms__opt.on_overflow == VMS_ABORT || main_thread) {
        static const char msg[] = "vmstack: aborting\n";
        report_line(msg, sizeof msg - 1);
        /* Die by SIGSEGV as an overflow does, so that core dumps and exit statuses look
         * the same: the default action, unblocked, then the signal. */
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        sigaction(SIGSEGV, &dfl, NULL);
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGSEGV);
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        raise(SIGSEGV);
        abort();
    }
    if (ti) {
        describe(ti, who, sizeof who);
        len = snprintf(line, sizeof line, "vmstack: killed %s; other tasks continue\n", who);
        if (len > 0) report_line(line, (size_t)len < sizeof line ? (size_t)len : sizeof line - 1);
    }
}
