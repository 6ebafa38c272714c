/*
 * stack.c - the public stack API (vms_stack_*) and vms_get_stats.
 *
 * A vms_stack pointer is the address of its slot record in an arena's metadata array,
 * so checking that a pointer is one vmstack handed out is O(1) (vms__arena_record), and
 * the record's state word catches a double free even when two threads race to free.
 * Both are memory-safety violations by the caller: a one-line report and abort().
 * Everything else that is wrong (NULL, absurd sizes, no memory) is an errno.
 */
#include "internal.h"
#include "track.h"

#include <errno.h>
#include <string.h>

/* Set once a thread has asked the guard layer for its alternate signal stack. */
static VMS_TLS bool thread_ready;

vms_stack *vms_stack_alloc(size_t size)
{
    int e = vms__ensure_init();
    if (VMS_UNLIKELY(e)) {
        errno = -e;
        return NULL;
    }
    if (VMS_UNLIKELY(!thread_ready)) {
        /* A thread that allocates stacks may run on them (a coroutine library of its
         * own): it needs an alternate signal stack for an overflow there to be reported
         * rather than kill the process silently. Set first: that stack comes from here. */
        thread_ready = true;
        (void)vms__guard_thread_init();
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
    atomic_store_explicit(&st->state, VMS__SLOT_LIVE, memory_order_release);
    return st;
}

/* Internal stacks live now (they are in the cache layer's count too). */
static atomic_size_t internal_live;

struct vms_stack *vms__stack_alloc_internal(size_t size)
{
    struct vms_stack *st = vms_stack_alloc(size);
    if (st) {
        st->internal = 1;
        atomic_fetch_add_explicit(&internal_live, 1, memory_order_relaxed);
    }
    return st;
}

void vms_stack_free(vms_stack *st)
{
    if (!st) return;
    struct vms_stack *rec = vms__arena_record(st);
    if (VMS_UNLIKELY(!rec))
        vms__fatal("vms_stack_free: %p is not a stack that vmstack handed out "
                   "(a foreign or corrupted pointer)", (void *)st);
    uint32_t want = VMS__SLOT_LIVE;
    if (VMS_UNLIKELY(!atomic_compare_exchange_strong_explicit(
            &rec->state, &want, VMS__SLOT_FREE, memory_order_acq_rel, memory_order_relaxed)))
        vms__fatal("vms_stack_free: double free of stack %p [%p-%p): it is not in use",
                   (void *)st, (void *)rec->base, (void *)(rec->base + rec->size));
    if (VMS_UNLIKELY(rec->internal)) {
        rec->internal = 0;
        atomic_fetch_sub_explicit(&internal_live, 1, memory_order_relaxed);
    } else if (VMS_UNLIKELY(vms__opt.flags & VMS_PAINT)) {
        vms__debug_stack_free(rec);
    }
    /* ASan: whoever ran on the stack (a coroutine library, a fiber that never finished)
     * may have left redzones poisoned; the cache's scrubbing and the next owner must not
     * trip over them. Nothing in other builds. */
    vms__track_stack_release(rec->base, rec->size);
    vms__cache_put(rec);
}

/* The getters accept only live stacks that vmstack handed out; anything else is
 * EINVAL with a neutral result, never a crash. */
static const struct vms_stack *live_record(const vms_stack *st)
{
    const struct vms_stack *rec = st ? vms__arena_record(st) : NULL;
    if (!rec || atomic_load_explicit(&rec->state, memory_order_acquire) != VMS__SLOT_LIVE) {
        errno = EINVAL;
        return NULL;
    }
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
    return r ? vms__debug_max_used(r) : 0;
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
    size_t live = vms__cache_live();   /* the program's stacks and vmstack's own */
    size_t internal = atomic_load_explicit(&internal_live, memory_order_relaxed);
    out->stacks_live = live > internal ? live - internal : 0;
    size_t opened = 0;   /* slots ever opened: live + cached */
    vms__arena_each(add_opened, &opened);
    out->stacks_cached = opened > live ? opened - live : 0;
    vms__arena_totals(&out->arenas, &out->reserved_bytes, &out->mappings,
                      &out->resident_bytes);
    out->overflows = vms__guard_overflows();
    out->tainted = vms__guard_tainted();
    out->guard_method = vms__arena_guard_method();
    return 0;
}
