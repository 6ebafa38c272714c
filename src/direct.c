/*
 * direct.c - the "direct" backend (CMake -DVMSTACK_VMAP=OFF), the user-space analogue of
 * CONFIG_VMAP_STACK=n: stacks are carved contiguously out of large heap blocks, with NO
 * guard regions. It implements the arena interface of internal.h in place of arena.c.
 *
 *   block:  | stack 0 | stack 1 | stack 2 | ... | stack n-1 |      (one aligned_alloc)
 *
 * An overrun of stack i runs silently into the top of stack i-1: that is the point of
 * this backend (the comparison the demo and docs/debugging.md make; the end-of-stack
 * magic catches it only after the fact). It also serves platforms without mmap guards.
 * Invariants: blocks and their record arrays are never freed, a block is published
 * (release store) only when complete and `opened` covers only complete records, so
 * vms__arena_record and vms__arena_where read them without locks (async-signal-safe).
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* At most this many blocks in the process. Blocks of a class double in size (up to 64x
 * the first, and BLOCK_SLOTS_MAX stacks), so 1,024 blocks hold about four million
 * default stacks (4,096 in each 1 GiB block from the seventh on). */
#define MAX_BLOCKS 1024
/* The first block of a class holds 16 MiB of stacks (64 default stacks), or one stack
 * when a stack is larger; later blocks double, up to 64 times that (smaller when the
 * heap refuses that much: block_create). */
#define BLOCK_BYTES   (16 * VMS_MIB)
#define BLOCK_GROWTH  6
/* Records per block are bounded so that one record array stays small (256 KiB). */
#define BLOCK_SLOTS_MAX 4096

static struct vms__arena pool[MAX_BLOCKS];
static struct vms__arena *_Atomic blocks[MAX_BLOCKS];
static atomic_size_t nblocks;

/* Per class: the block being carved, how many blocks the class has and, once the heap
 * refused one of its blocks, the stacks the next block starts from (fit; 0: none
 * refused yet), under its lock. */
static struct {
    pthread_mutex_t lock;
    struct vms__arena *current;
    unsigned count;
    size_t fit;
} classes[VMS__CLASSES];
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;
/* Serializes the allocation of pool entries between classes. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

static void classes_init(void)
{
    for (int i = 0; i < VMS__CLASSES; i++) pthread_mutex_init(&classes[i].lock, NULL);
}

/* fork: the class locks, then the pool's (taken inside a class lock), so that the child
 * finds them free. */
void vms__arena_fork_lock(void)
{
    pthread_once(&classes_once, classes_init);
    unsigned n = vms__arena_classes_used();
    for (unsigned i = 0; i < n; i++) pthread_mutex_lock(&classes[i].lock);
    pthread_mutex_lock(&pool_lock);
}

void vms__arena_fork_unlock(void)
{
    pthread_mutex_unlock(&pool_lock);
    for (unsigned i = vms__arena_classes_used(); i-- > 0;)
        pthread_mutex_unlock(&classes[i].lock);
}

const char *vms__arena_guard_method(void)
{
    return "none";
}

/* Allocates, clears and publishes a new block for cls. Caller holds the class lock. */
static int block_create(unsigned cls, struct vms__arena **out)
{
    size_t page = vms__os_page_size();
    size_t size = vms__arena_class_size(cls);
    unsigned growth = classes[cls].count < BLOCK_GROWTH ? classes[cls].count : BLOCK_GROWTH;
    size_t nslots = (BLOCK_BYTES << growth) / size;
    if (nslots == 0) nslots = 1;
    if (nslots > BLOCK_SLOTS_MAX) nslots = BLOCK_SLOTS_MAX;
    /* A block the heap cannot give (RLIMIT_AS, the overcommit policy) may still be had
     * smaller: halved down to one stack, so that ENOMEM means no room for a stack, not
     * no room for the class's next (up to 1 GiB) block. Once a block was refused, the
     * next starts from the size that fitted last (fit) rather than its full size, which
     * near the limit cost up to 12 refused requests per block: at most one per block
     * then, as a block taken at fit's size without a refusal lets the next try twice
     * that, up to the full size again (the room may have grown). */
    size_t fit = classes[cls].fit;
    if (fit && nslots > fit) nslots = fit;
    bool refused = false;
    size_t len;
    char *mem;
    for (;;) {
        len = nslots * size;
        mem = aligned_alloc(page, len);
        if (mem || nslots == 1) break;
        refused = true;
        nslots /= 2;
    }
    if (!mem) {
        classes[cls].fit = 1;
        return -ENOMEM;
    }
    if (refused) classes[cls].fit = nslots;
    else if (fit) classes[cls].fit = nslots == fit ? fit * 2 : 0;
    struct vms_stack *meta = aligned_alloc(64, nslots * sizeof(struct vms_stack));
    if (!meta) goto free_mem;
    memset(meta, 0, nslots * sizeof(struct vms_stack));
    /* Heap memory may have been used before: give its pages back so that every stack
     * starts zero and non-resident, as the arena interface promises (and the cache's
     * scrubbing and the debug layer's painting rely on). A transparent huge page would
     * make 2 MiB resident at a stack's first touch. Should the discard fail, the block
     * is not zeroed here (up to 1 GiB, every page made resident): its slots are opened
     * VMS__WARM_UNZEROED, and the cache zeroes each stack at its first hand-out. */
    (void)vms__os_no_huge_pages(mem, len);
    bool unzeroed = vms__os_discard(mem, len) != 0;

    pthread_mutex_lock(&pool_lock);
    size_t n = atomic_load_explicit(&nblocks, memory_order_relaxed);
    if (n >= MAX_BLOCKS) {
        pthread_mutex_unlock(&pool_lock);
        goto free_meta;
    }
    struct vms__arena *a = &pool[n];
    memset(a, 0, sizeof *a);
    a->lo = mem;
    a->hi = mem + len;
    a->slots = mem;
    a->slot_size = size;
    a->guard_size = 0;
    a->nslots = (uint32_t)nslots;
    atomic_store_explicit(&a->opened, 0, memory_order_relaxed);
    a->cls = cls;
    a->unzeroed = unzeroed;
    a->meta = meta;
    atomic_store_explicit(&blocks[n], a, memory_order_release);
    atomic_store_explicit(&nblocks, n + 1, memory_order_release);
    pthread_mutex_unlock(&pool_lock);
    classes[cls].count++;
    *out = a;
    return 0;

free_meta:
    free(meta);
free_mem:
    free(mem);
    return -ENOMEM;
}

static int open_locked(unsigned cls, struct vms_stack **out, unsigned want);

int vms__arena_open(unsigned cls, struct vms_stack **out, unsigned want)
{
    if (cls >= VMS__CLASSES || want == 0) return -EINVAL;
    /* As the vmap backend's: calls that fail on the way to a success (MADV_NOHUGEPAGE
     * where the kernel has no transparent huge pages: EINVAL; a discard that fails, made
     * up for by zeroing at hand-out) leave errno set; it is the caller's again on return, failures
     * come back as the result (a successful vms_stack_alloc leaves errno alone). */
    int saved = errno;
    int r = open_locked(cls, out, want);
    errno = saved;
    return r;
}

static int open_locked(unsigned cls, struct vms_stack **out, unsigned want)
{
    pthread_once(&classes_once, classes_init);
    pthread_mutex_lock(&classes[cls].lock);
    int e = 0;
    struct vms__arena *a = classes[cls].current;
    if (!a || atomic_load(&a->opened) >= a->nslots) {
        e = block_create(cls, &a);
        if (e) goto out;
        classes[cls].current = a;
    }
    uint32_t first = atomic_load(&a->opened);
    unsigned k = want;
    if (k > a->nslots - first) k = a->nslots - first;
    for (unsigned i = 0; i < k; i++) {
        struct vms_stack *st = &a->meta[first + i];
        vms__slot_record_init(st, cls, a, a->slots + (size_t)(first + i) * a->slot_size,
                              a->slot_size);
        /* What the heap left: zeroed by the cache when first handed out. */
        if (a->unzeroed) st->warm = VMS__WARM_UNZEROED;
        out[i] = st;
    }
    /* Publish: records are complete before `opened` covers them. */
    atomic_store_explicit(&a->opened, first + k, memory_order_release);
    pthread_mutex_unlock(&classes[cls].lock);
    return (int)k;
out:
    pthread_mutex_unlock(&classes[cls].lock);
    return e;
}

/* async-signal-safe: a scan of the published blocks (a few dozen in practice), no locks. */
int vms__arena_where(const void *addr, struct vms__where *out)
{
    memset(out, 0, sizeof *out);
    const char *c = addr;
    size_t n = atomic_load_explicit(&nblocks, memory_order_acquire);
    for (size_t b = 0; b < n; b++) {
        struct vms__arena *a = atomic_load_explicit(&blocks[b], memory_order_acquire);
        if (!a || c < a->lo || c >= a->hi) continue;
        uint32_t opened = atomic_load_explicit(&a->opened, memory_order_acquire);
        size_t i = (size_t)(c - a->slots) / a->slot_size;
        out->arena = a;
        if (i >= opened) return out->kind = VMS__WHERE_NONE;
        out->st = &a->meta[i];
        /* No guards: every byte of an opened slot is its stack. */
        return out->kind = VMS__WHERE_STACK;
    }
    return out->kind = VMS__WHERE_NONE;
}

/* async-signal-safe: the same scan over the record arrays. */
struct vms_stack *vms__arena_record(const void *p)
{
    const char *c = p;
    size_t n = atomic_load_explicit(&nblocks, memory_order_acquire);
    for (size_t b = 0; b < n; b++) {
        struct vms__arena *a = atomic_load_explicit(&blocks[b], memory_order_acquire);
        if (!a) continue;
        const char *m = (const char *)a->meta;
        if (c < m || c >= m + (size_t)a->nslots * sizeof(struct vms_stack)) continue;
        size_t off = (size_t)(c - m);
        if (off % sizeof(struct vms_stack)) return NULL;
        size_t i = off / sizeof(struct vms_stack);
        if (i >= atomic_load_explicit(&a->opened, memory_order_acquire)) return NULL;
        return &a->meta[i];
    }
    return NULL;
}

void vms__arena_each(void (*fn)(struct vms__arena *a, void *ctx), void *ctx)
{
    size_t n = atomic_load_explicit(&nblocks, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        struct vms__arena *a = atomic_load_explicit(&blocks[i], memory_order_acquire);
        if (a) fn(a, ctx);
    }
}

struct totals { size_t reserved, mappings, resident; };

static void add_totals(struct vms__arena *a, void *ctx)
{
    struct totals *t = ctx;
    t->reserved += (size_t)(a->hi - a->lo);
    long m = vms__os_map_count((uintptr_t)a->lo, (uintptr_t)a->hi);
    if (m > 0) t->mappings += (size_t)m;
    /* mincore: the block shares its mapping with the rest of the heap, so the mapping's
     * own figures would count too much. */
    long long r = vms__os_resident((uintptr_t)a->lo, (uintptr_t)a->hi);
    if (r > 0) t->resident += (size_t)r;
}

void vms__arena_totals(size_t *narena, size_t *reserved, size_t *mappings, size_t *resident)
{
    struct totals t = { 0, 0, 0 };
    vms__arena_each(add_totals, &t);
    *narena = atomic_load(&nblocks);
    *reserved = t.reserved;
    *mappings = t.mappings;
    *resident = t.resident;
}
