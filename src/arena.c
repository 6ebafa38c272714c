/*
 * arena.c - the vmalloc range of vmstack: reserved virtual ranges split into slots.
 *
 * An arena is one reservation of 16 to 256 GiB (smaller where the kernel refuses that much or
 * RLIMIT_AS leaves less room, down to 64 MiB), PROT_NONE
 * and MAP_NORESERVE, aligned to its size, for one size class. It starts with a metadata array (one 64-byte struct vms_stack per slot),
 * then slots of guard + stack, then a trailing guard that is never opened:
 *
 *   lo                                                                          hi
 *   | meta | guard 0 | stack 0 | guard 1 | stack 1 | ... | stack n-1 | trailer... |
 *
 * Slots are opened in batches, in address order: guards first (MADV_GUARD_INSTALL markers,
 * or simply left PROT_NONE with the mprotect method), then read-write. With the madvise
 * method the opened part stays ONE read-write mapping that grows (the guards are markers
 * inside it), so the number of stacks is not limited by vm.max_map_count.
 *
 * Invariants the fault handler relies on: arenas are never unmapped while the process
 * runs; an arena is published in the table (release store) only when fully set up;
 * guards, once installed, stay for the slot's life (they survive MADV_DONTNEED and fork).
 * So vms__arena_where() needs no lock: a table load, two compares and a division.
 */
#include "internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

/* A class's first arena is 16 GiB, room for 52,000 default slots (256 KiB + 64 KiB);
 * each one after it four times its predecessor, up to 256 GiB (838,000 slots): a million
 * stacks take three arenas (16 + 64 + 256 GiB, six mappings). Address space only: x86-64
 * and aarch64 give a process 128 TiB. They start small because emulators pay for
 * reserved space: qemu-user keeps flags for every guest page of every mapping (64 GiB
 * per class cost each test process there 2 s and 2 GiB, 256 GiB four times that; 7.2
 * also walks them all at every exit of a process, forked children included: about 1.5 s
 * of CPU for two 16 GiB first arenas, so the aarch64 cross tests build with 4 GiB ones,
 * VMS__ARENA_FIRST_SHIFT in internal.h).
 * When the kernel refuses so large a reservation
 * (RLIMIT_AS, overcommit policy, Valgrind's address-space manager), smaller arenas are
 * tried; under RLIMIT_AS, none above half the address space left (but never smaller than
 * one slot of the class needs). The smallest is 64 MiB (200 default stacks): ulimit -v
 * is often the machine's RAM, or 1 to 8 GiB on shared hosts, and a program there has
 * a few hundred MiB left after its own mappings, which two 64 MiB arenas (the alternate
 * signal stacks' and the default class's) still fit; smaller ones would cost a table
 * entry and two mappings for a few dozen stacks each.
 *
 * The lookup table has one entry per 4 GiB (a chunk) of the 48-bit user address space
 * (x86-64 and aarch64 without 5-level paging; mmap never returns higher addresses unless
 * asked to). An arena of 4 GiB or more fills the entries it spans; a smaller one is the
 * only arena in its chunk (arena_create moves it to a chunk of its own when the kernel
 * placed it next to another), and the rest of that chunk is other mappings of the
 * program: the lookup takes an address for the arena's only below its end. 65,536
 * entries of zero-filled BSS cost no memory until an arena is published in them. */
#define ARENA_MAX_SHIFT VMS__ARENA_MAX_SHIFT
#define ARENA_FIRST_SHIFT VMS__ARENA_FIRST_SHIFT
#define ARENA_GROWTH_SHIFT 2
#define ARENA_MIN_SHIFT 26
#define TABLE_SHIFT 32
#define CHUNK       ((size_t)1 << TABLE_SHIFT)
#define TABLE_SIZE  ((size_t)1 << (48 - TABLE_SHIFT))
#define MAX_ARENAS  4096
/* A small arena placed in a chunk that already has one is moved: to the start of each
 * of this many chunks below it, then above it, while the kernel's answer is "taken". */
#define PLACE_TRIES 16

static struct vms__arena *_Atomic table[TABLE_SIZE];
/* Every arena ever published, in creation order (for stats and iteration). */
static struct vms__arena *_Atomic arenas[MAX_ARENAS];
static atomic_size_t narenas;
/* The largest arena size not refused: after a refusal, later arenas do not retry
 * larger ones while the address space left (vms__os_address_room) is no more than it
 * was then (refused_room). Once it has grown (the program unmapped something, or raised
 * RLIMIT_AS with setrlimit), they do: the limit stayed lowered for good, and with no
 * /proc under ulimit -v 1g, 64 MiB arenas after the limit was lifted ran out of 4 GiB
 * chunks of their own after 29 more (ENOMEM with the address space unlimited). Read
 * and written by arena creations of different classes at once: a mismatched pair costs
 * one refused reservation, or one arena smaller than it could have been. */
static atomic_uint arena_shift = ARENA_MAX_SHIFT;
static atomic_size_t refused_room;

/* Per class: the arena being opened, serialized by its lock. */
static struct {
    pthread_mutex_t lock;
    struct vms__arena *current;
} classes[VMS__CLASSES];
static pthread_once_t classes_once = PTHREAD_ONCE_INIT;

/* The arena records themselves live in a small static pool. Arenas of different classes
 * are created under different class locks: this one serializes taking a pool entry. */
static struct vms__arena pool[MAX_ARENAS];
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;

/* mprotect method only: mappings we made, and the process's total when last counted. */
static atomic_long mprotect_maps;
static atomic_int warned_maps;

static void classes_init(void)
{
    for (int i = 0; i < VMS__CLASSES; i++) pthread_mutex_init(&classes[i].lock, NULL);
}

/* fork: a class lock is held across the system calls that open slots; a child that
 * inherited it locked could never open another slot of that class. The class locks, then
 * the pool's (taken inside a class lock). */
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
    return vms__os_guard_method_name(vms__os_guard_method());
}

static void warn_open_enomem(int method);

/* No arena of even the smallest size for the class (min_size) could be reserved. Said
 * once: under a tight RLIMIT_AS the first allocation of a stack size fails, and ENOMEM
 * alone did not say that the limit, not memory, was short (when arenas were 4 GiB or
 * more, with ulimit -v 8 GiB the alternate signal stacks' arena fit and no program stack
 * could be had, without a word). The kernel's ENOMEM does not say which limit refused:
 * past vm.max_map_count it refuses every new mapping too, with room to spare under any
 * RLIMIT_AS (the warning blamed RLIMIT_AS there, or an exhausted address space without
 * one). So the mappings are counted first: at the limit it is named (the maps file
 * shows the vsyscall page too where there is one, a line more than the kernel counts,
 * never fewer), and RLIMIT_AS as well only where it, too, leaves less than min_size. */
static void warn_no_room(size_t room, bool known, size_t min_size, int method)
{
    static atomic_int warned;
    if (atomic_load(&warned)) return;   /* said: /proc/self/maps not read again */
    size_t min_mib = min_size >> 20;
    bool as_short = room != SIZE_MAX && known && room < min_size;
    long max = vms__os_max_map_count(), now = max > 0 ? vms__os_map_count(0, 0) : -1;
    if (max > 0 && now >= max) {
        char also[96] = "";
        if (as_short)
            snprintf(also, sizeof also, "; RLIMIT_AS (ulimit -v) leaves only %zu MiB too",
                     room >> 20);
        vms__log_warn_once(&warned, "cannot reserve address space for a new arena (%zu MiB, "
                           "the smallest): the process has reached vm.max_map_count (%ld of "
                           "%ld mappings in use%s)%s; raise vm.max_map_count%s: stack "
                           "allocation fails with ENOMEM", min_mib, now, max,
                           method == VMS__GUARD_MPROTECT
                               ? "; mprotect guards cost two mappings per stack" : "",
                           also,
                           method == VMS__GUARD_MPROTECT
                               ? ", or run on Linux 6.13+ with VMSTACK_GUARD_METHOD=madvise"
                               : "");
    } else if (room != SIZE_MAX)
        /* Where neither /proc/self/statm nor trying reservations told the room, it is
         * the limit itself, as if nothing were mapped: said as such, not as what is
         * left. */
        vms__log_warn_once(&warned, "cannot reserve address space for a new arena (%zu MiB, "
                           "the smallest): RLIMIT_AS (ulimit -v) %s %zu MiB%s; every stack "
                           "size in use (the alternate signal stacks' is one) needs an arena "
                           "of its own: stack allocation fails with ENOMEM", min_mib,
                           known ? "leaves" : "is", room >> 20,
                           known ? "" : ", how much of it is in use is unknown "
                                        "(/proc/self/statm unreadable)");
    else
        vms__log_warn_once(&warned, "cannot reserve address space for a new arena (%zu MiB, "
                           "the smallest): the address space is exhausted; stack allocation "
                           "fails with ENOMEM", min_mib);
}

/* Reserves size bytes (below 4 GiB) at the start of a chunk without an arena, near chunk
 * `taken` (which has one): the PLACE_TRIES chunks below it first, then those above.
 * 0, -ENOMEM when none was free, or the kernel's errno (-ENOMEM under RLIMIT_AS). The
 * caller checks the chunk again under the pool lock. */
static int reserve_in_own_chunk(uintptr_t taken, size_t size, void **out)
{
    for (int dir = -1; dir <= 1; dir += 2) {
        for (uintptr_t k = 1; k <= PLACE_TRIES; k++) {
            uintptr_t c = dir < 0 ? taken - k : taken + k;
            if (dir < 0 && k >= taken) break;          /* not chunk 0: NULL's */
            if (c >= TABLE_SIZE) break;
            if (atomic_load_explicit(&table[c], memory_order_relaxed)) continue;
            /* The start: the kernel hands out addresses from the top down, so the rest
             * of the chunk stays free for the program's mappings above the arena. */
            char *at = (char *)(c << TABLE_SHIFT);
            int e = vms__os_reserve_at(at, size);
            if (e == 0) {
                *out = at;
                return 0;
            }
            if (e != -EEXIST) return e;
        }
    }
    return -ENOMEM;
}

/* Creates and publishes a new arena for cls. Caller holds the class lock. */
static int arena_create(unsigned cls, struct vms__arena **out)
{
    if (atomic_load(&narenas) >= MAX_ARENAS) return -ENOMEM;
    /* Decided before anything is reserved: a probe that failed (ENOMEM, say) fails this
     * arena, and the next one asks again. */
    int method = vms__os_guard_method();
    if (method < 0) {
        /* Said once: otherwise nothing tells a program why every allocation fails with
         * ENOMEM (the alternate signal stack's error line said "Cannot allocate memory"
         * for a process that had run out of file descriptors). */
        static atomic_int warned;
        vms__log_warn_once(&warned, "could not check whether MADV_GUARD_INSTALL guards "
                           "work here (%s%s): no stack is handed out until the check "
                           "succeeds; each allocation tries it again", strerror(-method),
                           method == -EMFILE || method == -ENFILE
                               ? ": the check writes from a guard page into a pipe, and no "
                                 "file descriptor was left for it"
                               : "");
        return method;
    }
    size_t page = vms__os_page_size();
    size_t guard = vms__opt.guard_size;
    size_t stack = vms__arena_class_size(cls);
    size_t slot = guard + stack;

    void *lo = NULL;
    size_t size = 0;
    int e = -ENOMEM;
    /* The smallest arena this class can use: one slot, the metadata, the trailer. */
    unsigned least = ARENA_MIN_SHIFT;
    while (least < ARENA_MAX_SHIFT &&
           ((size_t)1 << least) < slot + guard + page + sizeof(struct vms_stack))
        least++;
    /* Under RLIMIT_AS (ulimit -v) an arena takes at most half the address space left
     * (but never less than the class's smallest arena): the first arena would otherwise
     * take the largest size that fits and leave the other size classes, and the program,
     * without room. */
    bool room_known;
    size_t room = vms__os_address_room(&room_known);   /* the limit, where use is unknown */
    unsigned start = atomic_load(&arena_shift);
    bool lifted = start < ARENA_MAX_SHIFT && room > atomic_load(&refused_room);
    if (lifted) start = ARENA_MAX_SHIFT;   /* more room than at the refusal: try again */
    struct vms__arena *prev = classes[cls].current;
    unsigned want = prev ? (unsigned)__builtin_ctzl((size_t)(prev->hi - prev->lo)) +
                           ARENA_GROWTH_SHIFT
                         : ARENA_FIRST_SHIFT;
    if (start > want) start = want;
    if (start < least) start = least;
    while (start > least && ((size_t)1 << start) > room / 2) start--;
    for (unsigned shift = start; shift >= least; shift--) {
        size = (size_t)1 << shift;
        e = vms__os_reserve(size, size, &lo);
        if (e == 0) {
            if (shift < start) {                       /* larger was refused */
                atomic_store(&refused_room, room);
                atomic_store(&arena_shift, shift);
            } else if (lifted) {
                atomic_store(&arena_shift, ARENA_MAX_SHIFT);
            }
            break;
        }
        /* ENOMEM from the kernel; EINVAL from Valgrind, which refuses large maps. */
        if (e != -ENOMEM && e != -EINVAL) break;
    }
    if (e) {
        if (e == -EINVAL) e = -ENOMEM;
        if (e == -ENOMEM) warn_no_room(room, room_known, (size_t)1 << least, method);
        return e;
    }
    uintptr_t first = (uintptr_t)lo >> TABLE_SHIFT, last = ((uintptr_t)lo + size - 1) >> TABLE_SHIFT;
    if (last >= TABLE_SIZE) {
        /* Above 48 bits (5-level paging with a high hint): not representable. */
        vms__os_release(lo, size);
        return -ENOMEM;
    }
    /* An arena below 4 GiB must be the only one in its chunk. The kernel places mappings
     * next to each other, so a second small arena usually lands in the first one's
     * chunk: it is moved. Checked, and published, under the pool lock, which serializes
     * publication between classes. An arena of 4 GiB or more fills its chunks, so no
     * other arena can be in them. */
    pthread_mutex_lock(&pool_lock);
    for (unsigned moves = 0; size < CHUNK && atomic_load_explicit(&table[first],
                                                                   memory_order_relaxed);) {
        pthread_mutex_unlock(&pool_lock);
        vms__os_release(lo, size);
        e = moves++ < PLACE_TRIES ? reserve_in_own_chunk(first, size, &lo) : -ENOMEM;
        if (e) {
            if (e == -ENOMEM) warn_no_room(room, room_known, (size_t)1 << least, method);
            return e;
        }
        first = last = (uintptr_t)lo >> TABLE_SHIFT;
        pthread_mutex_lock(&pool_lock);
    }
    /* Leave at least one guard of never-opened space at the end (the trailing guard). */
    size_t usable = size - guard - page;
    size_t nslots = usable / (slot + sizeof(struct vms_stack));
    if (nslots > UINT32_MAX) nslots = UINT32_MAX;
    size_t meta = (nslots * sizeof(struct vms_stack) + page - 1) & ~(page - 1);
    /* The metadata array is read-write from the start (MAP_NORESERVE: no commit charge,
     * pages appear as records are first written). With the madvise method it merges with
     * the opened slots into one mapping. */
    e = vms__os_open(lo, meta);
    if (e) {
        pthread_mutex_unlock(&pool_lock);
        vms__os_release(lo, size);
        /* At vm.max_map_count the reservation may still fit (the kernel refuses a new
         * mapping only beyond the limit, and none that merges with a neighbour), this
         * split not: said as for the slots' opening (it went unsaid). */
        if (e == -ENOMEM) warn_open_enomem(method);
        return e;
    }
    size_t n = atomic_load(&narenas);
    if (n >= MAX_ARENAS) {
        pthread_mutex_unlock(&pool_lock);
        vms__os_release(lo, size);
        return -ENOMEM;
    }
    struct vms__arena *a = &pool[n];
    memset(a, 0, sizeof *a);
    a->lo = lo;
    a->hi = (char *)lo + size;
    a->slots = (char *)lo + meta;
    a->slot_size = slot;
    a->guard_size = guard;
    a->nslots = (uint32_t)nslots;
    a->cls = cls;
    a->meta = lo;
    atomic_store_explicit(&a->opened, 0, memory_order_relaxed);
    atomic_store_explicit(&arenas[n], a, memory_order_release);
    for (uintptr_t i = first; i <= last; i++)
        atomic_store_explicit(&table[i], a, memory_order_release);
    atomic_store_explicit(&narenas, n + 1, memory_order_release);
    pthread_mutex_unlock(&pool_lock);
    if (method == VMS__GUARD_MPROTECT) atomic_fetch_add(&mprotect_maps, 2);
    *out = a;
    return 0;
}

/* mprotect method: every opened slot splits a mapping in two. At vm.max_map_count the
 * kernel fails every new mapping of the process, not only vmstack's: malloc's large
 * blocks, thread stacks, dlopen. So vmstack warns once at nine tenths of the limit and
 * stops opening slots where fewer than a sixteenth of it would be left to the rest of
 * the program: stack allocation fails with ENOMEM there (freed stacks are still handed
 * out again). Counting reads /proc/self/maps, so it is done again only after a tenth of
 * the remaining budget, or, after a refusal, once REFUSED_RECHECK_MS have passed (the
 * program may have unmapped something meanwhile). Returns how many of `adding` slots
 * may be opened. */
#define REFUSED_RECHECK_MS 100
static unsigned check_map_budget(unsigned adding)
{
    static atomic_long next_check, refused_ms = -1;
    long ours = atomic_load(&mprotect_maps) + 2L * adding;
    long refused = atomic_load(&refused_ms);
    if (refused >= 0 && vms__os_now_ns() / 1000000L - refused < REFUSED_RECHECK_MS) return 0;
    if (refused < 0 && ours < atomic_load(&next_check)) return adding;
    long max = vms__os_max_map_count();
    long now = vms__os_map_count(0, 0);
    if (max <= 0 || now < 0) {
        atomic_store(&refused_ms, -1);
        atomic_store(&next_check, ours + 4096);
        return adding;
    }
    if (now + 2L * adding >= max - max / 10)
        vms__log_warn_once(&warned_maps,
            "%ld of vm.max_map_count=%ld mappings in use: mprotect guards cost two mappings "
            "per stack, and stack allocation fails with ENOMEM when fewer than %ld would be "
            "left to the rest of the program; raise vm.max_map_count, or run on Linux 6.13+ "
            "with VMSTACK_GUARD_METHOD=madvise (one mapping per arena)",
            now, max, max / VMS__MAP_RESERVE_DIV);
    long room = (max - max / VMS__MAP_RESERVE_DIV - now) / 2;   /* slots that still fit */
    if (room <= 0) {
        atomic_store(&refused_ms, vms__os_now_ns() / 1000000L);
        return 0;
    }
    atomic_store(&refused_ms, -1);
    long left = 2 * room;
    atomic_store(&next_check, atomic_load(&mprotect_maps) + (left > 40 ? left / 10 : 2));
    return room < (long)adding ? (unsigned)room : adding;
}

/* Making slots read-write (mprotect) failed with ENOMEM. At vm.max_map_count, or short
 * of it: then the kernel refused to commit the memory (mm/mprotect.c: RLIMIT_DATA, or
 * with vm.overcommit_memory=2 the commit charge of the whole range), and naming the
 * mapping limit would send the user the wrong way. Near the limit the advice depends on
 * the method: mprotect guards take two mappings per stack, madvise guards two per
 * arena (so the rest of the program took the others). Said once each. */
static void warn_open_enomem(int method)
{
    static atomic_int warned_commit, warned_limit;
    long max = vms__os_max_map_count(), now = vms__os_map_count(0, 0);
    if (max > 0 && now >= 0 && now < max - max / VMS__MAP_RESERVE_DIV) {
        vms__log_warn_once(&warned_commit,
            "mprotect failed with ENOMEM with %ld of vm.max_map_count=%ld mappings in use: "
            "out of memory, over the commit limit (vm.overcommit_memory=2 charges a stack's "
            "whole size when it is opened) or over RLIMIT_DATA (ulimit -d)", now, max);
    } else if (method == VMS__GUARD_MPROTECT) {
        vms__log_warn_once(&warned_maps,
            "mprotect failed with ENOMEM: the process has reached vm.max_map_count "
            "(mprotect guards cost two mappings per stack); raise vm.max_map_count, or "
            "run on Linux 6.13+ with VMSTACK_GUARD_METHOD=madvise");
    } else {
        vms__log_warn_once(&warned_limit,
            "mprotect failed with ENOMEM: the process has reached vm.max_map_count "
            "(%ld of %ld mappings in use; vmstack's arenas take two each); raise "
            "vm.max_map_count", now, max);
    }
}

/* Opens slots [first, first + k) of a: guards, then read-write. Returns how many were
 * opened (all or a prefix), or a negative errno when none. Caller holds the class lock. */
static int open_slots(struct vms__arena *a, uint32_t first, unsigned k)
{
    int method = vms__os_guard_method();   /* decided: a's arena_create asked first */
    if (method < 0) return method;
    char *s0 = a->slots + (size_t)first * a->slot_size;
    if (method == VMS__GUARD_MADVISE) {
        /* Guards go in while the range is still PROT_NONE: at no moment is a guard
         * region accessible. */
        unsigned done = 0;
        int e = 0;
        for (; done < k; done++) {
            e = vms__os_guard(s0 + (size_t)done * a->slot_size, a->guard_size, method);
            if (e) break;
        }
        if (done == 0) return e;
        e = vms__os_open(s0, (size_t)done * a->slot_size);
        if (e == -ENOMEM) warn_open_enomem(method);
        if (e) return e;
        return (int)done;
    }
    /* mprotect: the guards are the PROT_NONE gaps left between opened stacks. */
    k = check_map_budget(k);
    if (k == 0) return -ENOMEM;
    unsigned done = 0;
    int e = 0;
    for (; done < k; done++) {
        e = vms__os_open(s0 + (size_t)done * a->slot_size + a->guard_size,
                         a->slot_size - a->guard_size);
        if (e) break;
        atomic_fetch_add(&mprotect_maps, 2);
    }
    if (done == 0) {
        if (e == -ENOMEM) warn_open_enomem(method);
        return e;
    }
    return (int)done;
}

static int open_locked(unsigned cls, struct vms_stack **out, unsigned want);

int vms__arena_open(unsigned cls, struct vms_stack **out, unsigned want)
{
    if (cls >= VMS__CLASSES || want == 0) return -EINVAL;
    /* The system calls below may fail on the way to a success (an aligned reservation
     * tried first, the mapping name where the kernel has none, the guard probe's EFAULT):
     * errno is the caller's again on return; failures come back as the result. */
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
        e = arena_create(cls, &a);
        if (e) goto out;
        classes[cls].current = a;
    }
    uint32_t first = atomic_load(&a->opened);
    unsigned k = want;
    if (k > a->nslots - first) k = a->nslots - first;
    int n = open_slots(a, first, k);
    if (n < 0) {
        e = n;
        goto out;
    }
    for (int i = 0; i < n; i++) {
        struct vms_stack *st = &a->meta[first + (uint32_t)i];
        vms__slot_record_init(st, cls, a,
                              a->slots + (size_t)(first + (uint32_t)i) * a->slot_size +
                                  a->guard_size,
                              a->slot_size - a->guard_size);
        out[i] = st;
    }
    /* Publish: records are complete before `opened` covers them. */
    atomic_store_explicit(&a->opened, first + (uint32_t)n, memory_order_release);
    pthread_mutex_unlock(&classes[cls].lock);
    return n;
out:
    pthread_mutex_unlock(&classes[cls].lock);
    return e;
}

/* async-signal-safe: table load, arithmetic. */
static struct vms__arena *arena_of(const void *addr)
{
    uintptr_t i = (uintptr_t)addr >> TABLE_SHIFT;
    if (i >= TABLE_SIZE) return NULL;
    /* An entry covers 4 GiB and names at most one arena: an arena of 4 GiB or more is
     * aligned to its size, a smaller one is alone in its chunk. The smaller one does not
     * fill it: above its end, the addresses are other mappings of the program's (below
     * its start too: the callers compare with the start of what they look for). */
    struct vms__arena *a = atomic_load_explicit(&table[i], memory_order_acquire);
    if (a && (const char *)addr >= a->hi) return NULL;
    return a;
}

/* async-signal-safe: O(1), no locks, no allocation. */
int vms__arena_where(const void *addr, struct vms__where *out)
{
    memset(out, 0, sizeof *out);
    struct vms__arena *a = arena_of(addr);
    if (!a || (const char *)addr < a->slots) return out->kind = VMS__WHERE_NONE;
    uint32_t opened = atomic_load_explicit(&a->opened, memory_order_acquire);
    size_t off = (size_t)((const char *)addr - a->slots);
    size_t i = off / a->slot_size, in = off % a->slot_size;
    out->arena = a;
    if (i >= a->nslots) {
        /* The trailing guard: above the last slot. */
        out->below = opened == a->nslots ? &a->meta[a->nslots - 1] : NULL;
        return out->kind = VMS__WHERE_TRAILER;
    }
    if (i > opened) return out->kind = VMS__WHERE_NONE; /* deep in unopened space */
    if (in < a->guard_size) {
        /* The guard of slot i: below stack i, above stack i - 1. The guard of the first
         * unopened slot still protects the top of the last opened stack. */
        out->st = i < opened ? &a->meta[i] : NULL;
        out->below = i > 0 ? &a->meta[i - 1] : NULL;
        return out->kind = VMS__WHERE_GUARD;
    }
    if (i == opened) return out->kind = VMS__WHERE_NONE; /* unopened stack space */
    out->st = &a->meta[i];
    return out->kind = VMS__WHERE_STACK;
}

/* async-signal-safe. */
struct vms_stack *vms__arena_record(const void *p)
{
    struct vms__arena *a = arena_of(p);
    if (!a) return NULL;
    const char *c = p, *m = (const char *)a->meta;
    if (c < m) return NULL;
    size_t off = (size_t)(c - m);
    if (off % sizeof(struct vms_stack)) return NULL;
    size_t i = off / sizeof(struct vms_stack);
    if (i >= atomic_load_explicit(&a->opened, memory_order_acquire)) return NULL;
    return &a->meta[i];
}

void vms__arena_each(void (*fn)(struct vms__arena *a, void *ctx), void *ctx)
{
    size_t n = atomic_load_explicit(&narenas, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        struct vms__arena *a = atomic_load_explicit(&arenas[i], memory_order_acquire);
        if (a) fn(a, ctx);
    }
}

/* Statistics, read off the kernel's tables: not on any hot path, but a program may call
 * vms_get_stats often. The resident part is measured with mincore over what was ever
 * opened (metadata and opened slots; the rest was never touched); the mappings with one
 * read of /proc/self/maps for up to TOTALS_BATCH arenas (65,000 lines near
 * vm.max_map_count with mprotect guards). /proc/self/smaps gave both, at 0.6 s a call
 * for 30,000 stacks with mprotect guards. */
#define TOTALS_BATCH 64
struct totals {
    size_t reserved, mappings, resident;
    uintptr_t ranges[TOTALS_BATCH][2];
    size_t n;
    size_t layout;   /* the batch's mappings as the arenas' layout makes them */
};

/* The arenas' mappings are counted in /proc/self/maps, which also sees merges and
 * splits the layout does not predict. Where it cannot be read (no /proc in a container,
 * a sandbox), the count is the layout's: statistics said 0 mappings for 2,000 mprotect
 * stacks, which hold 4,000. */
static void count_mappings(struct totals *t)
{
    long m = vms__os_map_count_ranges((const uintptr_t (*)[2])t->ranges, t->n);
    t->mappings += m >= 0 ? (size_t)m : t->layout;
    t->n = 0;
    t->layout = 0;
}

static void add_totals(struct vms__arena *a, void *ctx)
{
    struct totals *t = ctx;
    t->reserved += (size_t)(a->hi - a->lo);
    size_t opened = atomic_load_explicit(&a->opened, memory_order_acquire);
    long long r = vms__os_resident((uintptr_t)a->lo, (uintptr_t)(a->slots + opened * a->slot_size));
    if (r > 0) t->resident += (size_t)r;
    /* The read-write part (metadata and opened slots) and the reserved rest, which a
     * full arena keeps too (its trailing guard is never opened); with mprotect guards
     * each opened slot adds its stack and the guard below it. */
    t->layout += 2 + (vms__os_guard_method() == VMS__GUARD_MPROTECT ? 2 * (size_t)opened : 0);
    t->ranges[t->n][0] = (uintptr_t)a->lo;
    t->ranges[t->n][1] = (uintptr_t)a->hi;
    if (++t->n == TOTALS_BATCH) count_mappings(t);
}

void vms__arena_totals(size_t *narena, size_t *reserved, size_t *mappings, size_t *resident)
{
    struct totals t;
    memset(&t, 0, sizeof t);
    vms__arena_each(add_totals, &t);
    if (t.n) count_mappings(&t);
    *narena = atomic_load(&narenas);
    *reserved = t.reserved;
    *mappings = t.mappings;
    *resident = t.resident;
}
