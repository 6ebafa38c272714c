/*
 * stack.c - the foundation: guarded stacks from the arena, the cache, scrubbing,
 * slot lookup, concurrency, fork and every bad input of vms_stack_*.
 * Runs once with the default guard method and once with VMSTACK_GUARD_METHOD=mprotect
 * (tests/core.cmake), so both methods pass the same assertions.
 */
#include "internal.h"
#include "island.h"
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <ucontext.h>
#include <unistd.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <vmstack.h>
#ifdef VMSTACK_VALGRIND
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
/* The probes pass inaccessible addresses to the kernel on purpose. */
#define PROBE_BEGIN() VALGRIND_DISABLE_ERROR_REPORTING
#define PROBE_END() VALGRIND_ENABLE_ERROR_REPORTING
#else
#define PROBE_BEGIN() ((void)0)
#define PROBE_END() ((void)0)
#endif

#if defined(__SANITIZE_ADDRESS__)
#define TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TEST_ASAN 1
#endif
#endif
#ifdef TEST_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* Signal-free probes: the kernel reads (write(2) from addr) or writes (read(2) into addr)
 * the byte; an inaccessible byte makes the call fail with EFAULT. */
static int can_read(const void *addr)
{
    PROBE_BEGIN();
    int r = vms__os_probe_noaccess(addr);
    PROBE_END();
    if (r < 0) TST_FAIL("probe failed: %d", r);
    return r == 0;
}

static int can_write(void *addr)
{
    int p[2];
    if (pipe(p) != 0) TST_FAIL("pipe");
    char c = 'x';
    if (write(p[1], &c, 1) != 1) TST_FAIL("pipe write");
    PROBE_BEGIN();
    ssize_t r = read(p[0], addr, 1);
    int e = errno;
    PROBE_END();
    close(p[0]);
    close(p[1]);
    if (r < 0 && e != EFAULT) TST_FAIL("read probe: %s", strerror(e));
    return r == 1;
}

static void assert_guarded_below(vms_stack *s)
{
    char *base = vms_stack_base(s);
    size_t guard = vms__opt.guard_size;
    char *probes[] = { base - guard, base - guard / 2, base - 1 };
    for (int i = 0; i < 3; i++) {
        if (can_read(probes[i])) TST_FAIL("guard byte %p below %p is readable", probes[i], base);
        if (can_write(probes[i])) TST_FAIL("guard byte %p below %p is writable", probes[i], base);
    }
}

static void assert_guarded_above(vms_stack *s)
{
    char *top = vms_stack_top(s);
    size_t guard = vms__opt.guard_size;
    char *probes[] = { top, top + guard / 2, top + guard - 1 };
    for (int i = 0; i < 3; i++) {
        if (can_read(probes[i])) TST_FAIL("byte %p above the top %p is readable", probes[i], top);
        if (can_write(probes[i])) TST_FAIL("byte %p above the top %p is writable", probes[i], top);
    }
}

TEST(geometry)
{
    vms_stack *s = vms_stack_alloc(0);
    ASSERT_NOT_NULL(s);
    char *base = vms_stack_base(s), *top = vms_stack_top(s);
    ASSERT_EQ(vms_stack_size(s), 256 * 1024);
    ASSERT_EQ(top - base, (long)vms_stack_size(s));
    ASSERT_EQ((uintptr_t)top % 16, 0);
    ASSERT_EQ((uintptr_t)base % vms__os_page_size(), 0);
    ASSERT_EQ(vms_stack_max_used(s), 0);
    vms_stack_free(s);
}

TEST(usable_range_read_write)
{
    vms_stack *s = vms_stack_alloc(64 * 1024);
    ASSERT_NOT_NULL(s);
    unsigned char *base = vms_stack_base(s);
    size_t n = vms_stack_size(s);
    ASSERT_EQ(n, 64 * 1024);
    for (size_t i = 0; i < n; i++) base[i] = (unsigned char)(i * 7);
    for (size_t i = 0; i < n; i++)
        if (base[i] != (unsigned char)(i * 7)) TST_FAIL("byte %zu changed", i);
    ASSERT(can_read(base) && can_write(base + n - 1));
    vms_stack_free(s);
}

TEST(guards_below_and_above)
{
    need_guards();
    /* Several stacks, in allocation order; each is guarded below by its own guard and
     * above by its neighbour's guard (or the guard of the next, unopened slot). */
    vms_stack *s[40];
    for (int i = 0; i < 40; i++) {
        s[i] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(s[i]);
    }
    for (int i = 0; i < 40; i++) {
        assert_guarded_below(s[i]);
        assert_guarded_above(s[i]);
    }
    /* Guards survive scrubbing (MADV_DONTNEED of the stacks around them). */
    for (int i = 0; i < 40; i++) vms_stack_free(s[i]);
    vms__cache_flush_thread();
    for (int i = 0; i < 40; i++) {
        s[i] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(s[i]);
        assert_guarded_below(s[i]);
        assert_guarded_above(s[i]);
    }
    for (int i = 0; i < 40; i++) vms_stack_free(s[i]);
}

TEST(trailing_guard)
{
    need_guards();
    /* 1 GiB stacks: an arena holds fewer than its size in GiB, so we can open all of them
     * (address space only) and look above the last one. */
    enum { MAX = (1 << (VMS__ARENA_MAX_SHIFT - 30)) + 1 };
    vms_stack *s[MAX];
    int n = 0;
    struct vms__where w;
    for (; n < MAX; n++) {
        s[n] = vms_stack_alloc(VMS_GIB);
        ASSERT_NOT_NULL(s[n]);
        vms__arena_where(vms_stack_top(s[n]), &w);
        if (w.kind == VMS__WHERE_TRAILER) break;
    }
    ASSERT_LT(n, MAX);
    ASSERT_EQ(w.kind, VMS__WHERE_TRAILER);
    ASSERT_PTR_EQ(w.below, vms__stack_record(s[n]));
    assert_guarded_above(s[n]);
    assert_guarded_below(s[n]);
    for (int i = 0; i <= n; i++) vms_stack_free(s[i]);
}

/* Inside every arena, a whole guard above the last slot: what the slots leave over at
 * an arena's end depends on the class, and is less than a guard for some (4 KiB stacks
 * in a 16 GiB arena leave 12 KiB beyond the last whole slot) unless the trailing guard
 * is set aside before the slots are counted. trailing_guard's 1 GiB stacks leave about
 * 1 GiB over, whatever the count. */
TEST(every_class_keeps_a_whole_trailing_guard)
{
    need_guards();
    static const unsigned shifts[] = { 0, 1, 2, 3, 4, 8, 13 };
    for (size_t i = 0; i < sizeof shifts / sizeof shifts[0]; i++) {
        vms_stack *s = vms_stack_alloc(vms__os_page_size() << shifts[i]);
        ASSERT_NOT_NULL(s);
        const struct vms__arena *a = vms__stack_record(s)->arena;
        const char *end = a->slots + (size_t)a->nslots * a->slot_size;
        if (end + a->guard_size > a->hi)
            TST_FAIL("stacks of %zu bytes: %zu bytes above the last slot, the guard is %zu",
                     vms_stack_size(s), (size_t)(a->hi - end), a->guard_size);
        struct vms__where w;
        ASSERT_EQ(vms__arena_where(end + a->guard_size - 1, &w), VMS__WHERE_TRAILER);
        vms_stack_free(s);
    }
}

/* AddressSanitizer builds: whatever a stack's owner left poisoned (redzones of frames
 * that never returned) is clean when the stack is freed, at its edges and inside; for a
 * large stack the whole pages of its shadow are given back instead of written (a 1 GiB
 * stack's 128 MiB of shadow stayed resident, and trailing_guard ran out of memory). */
TEST(asan_shadow_clean_after_free)
{
#ifndef TEST_ASAN
    SKIP("not an AddressSanitizer build");
#else
    const size_t sizes[] = { 256 * VMS_KIB, 4 * VMS_MIB, VMS_GIB };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        vms_stack *s = vms_stack_alloc(sizes[i]);
        ASSERT_NOT_NULL(s);
        char *b = vms_stack_base(s);
        size_t n = vms_stack_size(s);
        __asan_poison_memory_region(b, 64);
        __asan_poison_memory_region(b + n / 2 + 8, 4096);
        __asan_poison_memory_region(b + n - 64, 64);
        ASSERT_PTR_EQ(__asan_region_is_poisoned(b, n), b);
        vms_stack_free(s);
        ASSERT_NULL(__asan_region_is_poisoned(b, n));
    }
#endif
}

/* A class's first arena is 16 GiB (VMS__ARENA_FIRST_SHIFT: 4 GiB in the cross build) and
 * each later one four times the one before, up to 256 GiB (address space only): few
 * reservations for a million stacks, and little reserved space for emulators that pay
 * for it (qemu-user) in a program that needs one arena. 1 GiB stacks fill a 16 GiB arena
 * with 15. */
TEST(later_arenas_are_larger)
{
    need_guards();
#ifdef VMSTACK_VALGRIND
    /* Valgrind refuses reservations this large (the arenas fall back to 16 GiB), and it
     * takes a minute to track sixteen 1 GiB stacks. */
    if (RUNNING_ON_VALGRIND) SKIP("Valgrind refuses 64 GiB reservations");
#endif
    enum { MAX = (1 << (VMS__ARENA_MAX_SHIFT - 30)) + 1 };
    vms_stack *s[MAX];
    struct vms__where w;
    int n = 0;
    struct vms__arena *first = NULL, *second = NULL;
    for (; n < MAX && !second; n++) {
        s[n] = vms_stack_alloc(VMS_GIB);
        ASSERT_NOT_NULL(s[n]);
        ASSERT_EQ(vms__arena_where(vms_stack_base(s[n]), &w), VMS__WHERE_STACK);
        if (!first) first = w.arena;
        else if (w.arena != first) second = w.arena;
    }
    ASSERT_NOT_NULL(second);
    size_t a = (size_t)((char *)first->hi - (char *)first->lo);
    size_t b = (size_t)((char *)second->hi - (char *)second->lo);
    /* Where the kernel refused so much (Valgrind), both are smaller: not this test's case. */
    const size_t want_a = (size_t)1 << VMS__ARENA_FIRST_SHIFT;
    const size_t want_b = (size_t)1 << (VMS__ARENA_FIRST_SHIFT + 2 > VMS__ARENA_MAX_SHIFT
                                            ? VMS__ARENA_MAX_SHIFT
                                            : VMS__ARENA_FIRST_SHIFT + 2);
    if (a < want_a) SKIP("the first arena is %zu GiB here", a / VMS_GIB);
    void *probe = mmap(NULL, want_b, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                       -1, 0);
    if (probe == MAP_FAILED) SKIP("a %zu GiB reservation is refused here", want_b / VMS_GIB);
    munmap(probe, want_b);
    ASSERT_EQ(a, want_a);
    ASSERT_EQ(b, want_b);
    for (int i = 0; i < n; i++) vms_stack_free(s[i]);
}

TEST(slot_lookup)
{
    need_guards();
    vms_stack *a = vms_stack_alloc(0), *b = vms_stack_alloc(0);
    ASSERT_NOT_NULL(a);
    ASSERT_NOT_NULL(b);
    struct vms__where w;
    struct vms_stack *ra = vms__stack_record(a);   /* the handle's slot record */
    ASSERT_NOT_NULL(ra);
    char *base = vms_stack_base(a), *top = vms_stack_top(a);
    ASSERT_EQ(vms__arena_where(base, &w), VMS__WHERE_STACK);
    ASSERT_PTR_EQ(w.st, ra);
    ASSERT_EQ(vms__arena_where(top - 1, &w), VMS__WHERE_STACK);
    ASSERT_PTR_EQ(w.st, ra);
    ASSERT_EQ(vms__arena_where(base - 1, &w), VMS__WHERE_GUARD);
    ASSERT_PTR_EQ(w.st, ra);
    ASSERT_EQ(vms__arena_where(base - vms__opt.guard_size, &w), VMS__WHERE_GUARD);
    ASSERT_PTR_EQ(w.st, ra);
    ASSERT_EQ(vms__arena_where(top, &w), VMS__WHERE_GUARD);
    ASSERT_PTR_EQ(w.below, ra);
    int local;
    ASSERT_EQ(vms__arena_where(&local, &w), VMS__WHERE_NONE);
    ASSERT_EQ(vms__arena_where(NULL, &w), VMS__WHERE_NONE);
    ASSERT_EQ(vms__arena_where((void *)~(uintptr_t)0, &w), VMS__WHERE_NONE);
    ASSERT_PTR_EQ(vms__arena_record(ra), ra);
    ASSERT_NULL(vms__arena_record(base));
    ASSERT_NULL(vms__arena_record((char *)ra + 1));
    ASSERT_NULL(vms__arena_record(&local));
    vms_stack_free(a);
    vms_stack_free(b);
}

/* The arena of a new stack *s (the caller frees it) and its last opened slot's record,
 * for the cases about the first slot not opened yet; skips when every slot is open. */
static struct vms_stack *last_opened_slot(vms_stack **s, struct vms__arena **arena)
{
    *s = vms_stack_alloc(0);
    ASSERT_NOT_NULL(*s);
    struct vms_stack *rec = vms__stack_record(*s);
    ASSERT_NOT_NULL(rec);
    struct vms__arena *a = *arena = rec->arena;
    uint32_t opened = atomic_load(&a->opened);
    if (opened >= a->nslots) SKIP("every slot of this arena is open");
    return &a->meta[opened - 1];
}

/* The guard of the first slot not opened yet protects the top of the last opened stack:
 * an access there is a guard hit (an underflow of that stack), not an address outside
 * vmstack's, which the fault handler would pass on as not its own. */
TEST(the_guard_above_the_last_opened_slot)
{
    need_guards();
    vms_stack *s;
    struct vms__arena *a;
    struct vms_stack *last = last_opened_slot(&s, &a);
    char *top = last->base + last->size;   /* the first unopened slot's guard */
    struct vms__where w;
    ASSERT_EQ(vms__arena_where(top, &w), VMS__WHERE_GUARD);
    ASSERT_PTR_EQ(w.below, last);
    ASSERT_NULL(w.st);
    ASSERT_EQ(vms__arena_where(top + a->guard_size - 1, &w), VMS__WHERE_GUARD);
    ASSERT_PTR_EQ(w.below, last);
    ASSERT(!can_read(top));   /* can_read: the probe, silenced for Valgrind */
    /* Its stack space, and the slots above it, are nobody's yet. */
    ASSERT_EQ(vms__arena_where(top + a->guard_size, &w), VMS__WHERE_NONE);
    vms_stack_free(s);
}

/* ---- scrubbing: a new owner never sees the previous owner's data ------------------ */
static const char SECRET[] = "vmstack-secret-0123456789";

static void write_secret(vms_stack *s)
{
    char *base = vms_stack_base(s);
    size_t n = vms_stack_size(s);
    /* The top page (always), and one line per page below it (the deep pages). */
    for (size_t off = 0; off < n; off += 1024) memcpy(base + off, SECRET, sizeof SECRET);
    memcpy(base + n - sizeof SECRET, SECRET, sizeof SECRET);
}

static int has_secret(vms_stack *s)
{
    char *base = vms_stack_base(s);
    size_t n = vms_stack_size(s);
#ifdef VMSTACK_VALGRIND
    /* Reading what a previous owner left is the point here, not a bug. */
    (void)VALGRIND_MAKE_MEM_DEFINED(base, n);
#endif
    return memmem(base, n, SECRET, sizeof SECRET - 1) != NULL;
}

static void check_reuse(int nstacks, int rounds)
{
    vms_stack **s = calloc((size_t)nstacks, sizeof *s);
    for (int r = 0; r < rounds; r++) {
        for (int i = 0; i < nstacks; i++) {
            s[i] = vms_stack_alloc(32 * 1024);
            ASSERT_NOT_NULL(s[i]);
            if (has_secret(s[i])) TST_FAIL("round %d: stack %d shows the previous owner's data", r, i);
            write_secret(s[i]);
        }
        for (int i = 0; i < nstacks; i++) vms_stack_free(s[i]);
    }
    free(s);
}

TEST(scrub_thread_cache)
{
    /* Fewer stacks than the per-thread cache: reuse through the LIFO and the batch. */
    check_reuse(3, 50);
}

TEST(scrub_batches)
{
    /* More than a batch: every path of the batch (LIFO and shared list). */
    check_reuse(100, 5);
}

static void *free_all(void *arg)
{
    vms_stack **s = arg;
    for (int i = 0; s[i]; i++) vms_stack_free(s[i]);
    vms__cache_flush_thread();
    return NULL;
}

TEST(scrub_shared_list)
{
    /* Freed on another thread, reused here: through the shared list. */
    vms_stack *s[65] = { 0 };
    for (int i = 0; i < 64; i++) {
        s[i] = vms_stack_alloc(32 * 1024);
        ASSERT_NOT_NULL(s[i]);
        write_secret(s[i]);
    }
    pthread_t t;
    pthread_create(&t, NULL, free_all, s);
    pthread_join(t, NULL);
    for (int i = 0; i < 64; i++) {
        vms_stack *x = vms_stack_alloc(32 * 1024);
        ASSERT_NOT_NULL(x);
        if (has_secret(x)) TST_FAIL("stack %d from the shared list shows old data", i);
    }
}

TEST(scrub_after_trim)
{
    /* Beyond the warm budget of the shared lists whole stacks are dropped: fill them. */
    enum { N = 1500 };
    vms_stack **s = calloc(N + 1, sizeof *s);
    for (int i = 0; i < N; i++) {
        s[i] = vms_stack_alloc(8 * 1024);
        ASSERT_NOT_NULL(s[i]);
        write_secret(s[i]);
    }
    pthread_t t;
    pthread_create(&t, NULL, free_all, s);
    pthread_join(t, NULL);
    for (int i = 0; i < N; i++) {
        s[i] = vms_stack_alloc(8 * 1024);
        ASSERT_NOT_NULL(s[i]);
        if (has_secret(s[i])) TST_FAIL("stack %d shows old data after trimming", i);
    }
    for (int i = 0; i < N; i++) vms_stack_free(s[i]);
    free(s);
}

/* With VMS_END_CHECK the bottom page (the magic's) stays resident across reuse like
 * the top page, so the free zeroes it too: else the next owner would see what the last
 * one left at the deep end of its stack (the magic covers only its first 16 bytes). */
static void scrub_end_check_child(void *arg)
{
    (void)arg;
    vms_config c = { .flags = VMS_END_CHECK };
    if (vms_init(&c) != 0) exit(3);
    check_reuse(3, 50);
    check_reuse(100, 5);
    printf("scrubbed\n");
    exit(0);
}

TEST(scrub_with_end_check)
{
    char out[4096];
    tst_run_ok(scrub_end_check_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "scrubbed\n");
}

static void noscrub_child(void *arg)
{
    (void)arg;
    vms_config c = { .flags = VMS_NO_SCRUB };
    if (vms_init(&c) != 0) exit(3);
    vms_stack *s = vms_stack_alloc(0);
    write_secret(s);
    vms_stack_free(s);
    /* Without scrubbing, the stack comes back (from the LIFO, or after its batch) with
     * its top page as the previous owner left it. */
    for (int i = 0; i < 100; i++) {
        vms_stack *t = vms_stack_alloc(0);
        if (t && has_secret(t)) exit(0);
    }
    exit(4);
}

TEST(no_scrub_really_skips_scrubbing)
{
    /* The scrub tests above could pass vacuously if the secret were never found even
     * when present; with VMS_NO_SCRUB it must be found. */
    char out[4096];
    int st = tst_fork(noscrub_child, NULL, out, sizeof out);
    ASSERT_EXITED(st, 0);
}

/* With VMS_NO_SCRUB a freed stack goes to its thread's LIFO with every page its owner
 * touched. Threads that exit hand their LIFOs to the shared lists, which keep at most
 * WARM_BOUND stacks warm: warm is the top page, as a scrubbing batch leaves a stack, not
 * the owner's whole depth (that kept 62 MiB resident after 200 threads had each freed
 * eight 100 KiB-deep stacks, against 4 MiB with scrubbing). */
enum { DEEP_EXITERS = 32, DEEP_PER_THREAD = 8, DEEP_STACK = 64 * 1024 };
static pthread_barrier_t deep_exit_barrier;

static void *free_deep_stacks_and_exit(void *arg)
{
    (void)arg;
    vms_stack *s[DEEP_PER_THREAD];
    size_t page = vms__os_page_size();
    for (int i = 0; i < DEEP_PER_THREAD; i++) {
        s[i] = vms_stack_alloc(DEEP_STACK);
        if (!s[i]) return (void *)1;
        char *base = vms_stack_base(s[i]);
        for (size_t o = 0; o < vms_stack_size(s[i]); o += page) base[o] = 1;
    }
    /* All stacks taken before any is freed: none is handed out twice. */
    pthread_barrier_wait(&deep_exit_barrier);
    for (int i = 0; i < DEEP_PER_THREAD; i++) vms_stack_free(s[i]);
    return NULL;
}

static void no_scrub_exit_child(void *arg)
{
    (void)arg;
    vms_config c = { .flags = VMS_NO_SCRUB };
    if (vms_init(&c) != 0) exit(3);
    pthread_barrier_init(&deep_exit_barrier, NULL, DEEP_EXITERS);
    pthread_t t[DEEP_EXITERS];
    for (int i = 0; i < DEEP_EXITERS; i++)
        if (pthread_create(&t[i], NULL, free_deep_stacks_and_exit, NULL) != 0) exit(4);
    for (int i = 0; i < DEEP_EXITERS; i++) {
        void *r;
        pthread_join(t[i], &r);
        if (r) exit(5);
    }
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(6);
    size_t page = vms__os_page_size(), stacks = DEEP_EXITERS * DEEP_PER_THREAD;
    size_t pages = st.resident_bytes / page;
    printf("%zu stacks cached, %zu pages resident\n", st.stacks_cached, pages);
    /* Each stack keeps its top page (and its bottom one with VMSTACK_END_CHECK=1); the
     * rest is metadata (a page per 64 records). At their owners' depth they held
     * DEEP_STACK / page pages each (4,096 with 4 KiB pages). */
    size_t keep = (vms__opt.flags & VMS_END_CHECK) ? 2 : 1;
    if (st.stacks_cached < stacks) exit(7);
    if (pages >= keep * stacks + stacks / 2 + 16) exit(8);
    /* They are handed out again as ever. */
    vms_stack *s = vms_stack_alloc(DEEP_STACK);
    if (!s) exit(9);
    ((char *)vms_stack_base(s))[0] = 2;
    ((char *)vms_stack_top(s))[-1] = 2;
    vms_stack_free(s);
    exit(0);
}

TEST(no_scrub_thread_exit_keeps_top_pages_only)
{
    char out[4096];
    int st = tst_fork(no_scrub_exit_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

static void discard_fails_child(void *arg)
{
    (void)arg;
    vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
    check_reuse(40, 3);
    exit(0);
}

TEST(scrub_when_madvise_fails)
{
    char out[4096];
    int st = tst_fork(discard_fails_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) != 0) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

/* ---- a discard the kernel refuses for one stack of a batch ----------------------------
 *
 * MADV_DONTNEED fails (EINVAL) on a range that is mlock'd. A batch whose discard failed
 * zeroed every stack of it by hand and kept them all resident and counted warm, those
 * bound cold beyond the shared lists' warm budget too: one locked stack kept 32 whole
 * stacks resident and the budget exceeded by 32. Only the refused one may be. Here the
 * budget is full first (8 KiB stacks), so the batch's 32 stacks of 64 KiB are all bound
 * cold; the fourth is locked. Exits 77 where mlock is not allowed or mincore
 * sees no resident page (qemu-user). */
enum { REFUSED_SIZE = 64 * 1024, REFUSED_AT = 3, WARM_FULL = 1024 };

/* Exits 60 where mincore fails. */
static size_t resident_in(const void *p, size_t len)
{
    long r = tst_resident_pages(p, len);
    if (r < 0) exit(60);
    return (size_t)r;
}

/* Fills the shared lists' warm budget with 8 KiB stacks; exits 50 to 52 on failure. */
static void fill_budget_small(void)
{
    size_t fill = WARM_FULL + vms__opt.cache_per_thread + 32;
    vms_stack **small = calloc(fill, sizeof *small);
    if (!small) exit(50);
    for (size_t i = 0; i < fill; i++) {
        if (!(small[i] = vms_stack_alloc(8 * 1024))) exit(51);
        ((char *)vms_stack_top(small[i]))[-1] = 1;
    }
    for (size_t i = 0; i < fill; i++) vms_stack_free(small[i]);
    free(small);
    vms__cache_flush();   /* no dirty stack left: the next 32 frees are one batch */
    if (vms__cache_shared_warm() != WARM_FULL) {
        printf("budget not full: %zu warm\n", vms__cache_shared_warm());
        exit(52);
    }
}

/* In a forked child: 32 stacks of REFUSED_SIZE, every page touched, the one at index
 * locked so that the kernel refuses to drop it; exits 53 when an allocation fails, 77
 * when mlock is not allowed. Returns the stacks' usable size. */
static size_t alloc_touched_one_locked(vms_stack **st, char **base, int locked)
{
    size_t size = 0;
    for (int i = 0; i < 32; i++) {
        if (!(st[i] = vms_stack_alloc(REFUSED_SIZE))) exit(53);
        base[i] = vms_stack_base(st[i]);
        size = vms_stack_size(st[i]);
        memset(base[i], 0x5a, size);   /* every page resident */
    }
    if (tst_mlock(base[locked], size) != 0) {
        printf("mlock: %s\n", strerror(errno));
        exit(77);
    }
    return size;
}

static void refused_range_child(void *arg)
{
    (void)arg;
    fill_budget_small();
    vms_stack *st[32];
    char *base[32];
    size_t size = alloc_touched_one_locked(st, base, REFUSED_AT);
    for (int i = 0; i < 32; i++) vms_stack_free(st[i]);
    size_t kept = 0, kept_pages = 0;
    for (int i = 0; i < 32; i++) {
        size_t r = resident_in(base[i], size);
        if (i == REFUSED_AT) kept_pages = r;
        else kept += r != 0;
    }
    size_t counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    printf("locked stack: %zu pages resident; others resident: %zu of 31; warm %zu counted, "
           "%zu in the lists\n", kept_pages, kept, counted, listed);
    if (kept_pages == 0) exit(77);   /* mincore sees no resident page (qemu-user) */
    if (kept_pages != size / vms__os_page_size()) exit(54);   /* locked: all resident */
    if (kept) exit(55);
    if (counted != listed) exit(56);
    if (counted != WARM_FULL + 1) exit(57);   /* the refused one, counted past the budget */
    exit(0);
}

TEST(a_discard_refused_for_one_stack_keeps_only_it)
{
    char out[4096];
    int st = tst_fork(refused_range_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

/* The same at a thread's exit: its LIFO joins the shared lists, here all beyond the full
 * budget and dropped whole, but for the one stack locked after the thread scrubbed its
 * batch. A refusal used to keep all eight warm, counted past the budget. */
static char *exit_base[8];
static size_t exit_size;

static void *lock_one_and_exit(void *arg)
{
    (void)arg;
    vms_stack *st[8];
    for (int i = 0; i < 8; i++) {
        if (!(st[i] = vms_stack_alloc(REFUSED_SIZE))) return (void *)1;
        exit_base[i] = vms_stack_base(st[i]);
        exit_size = vms_stack_size(st[i]);
        memset(exit_base[i], 0x5a, exit_size);
    }
    for (int i = 0; i < 8; i++) vms_stack_free(st[i]);
    vms__cache_flush();   /* scrubbed: into this thread's LIFO, warm */
    if (tst_mlock(exit_base[0], exit_size) != 0) {
        printf("mlock: %s\n", strerror(errno));
        return (void *)2;
    }
    return NULL;
}

static void refused_at_exit_child(void *arg)
{
    (void)arg;
    fill_budget_small();
    vms__cache_flush_thread();   /* this thread's LIFO out of the way */
    pthread_t t;
    void *r = NULL;
    if (pthread_create(&t, NULL, lock_one_and_exit, NULL) != 0) exit(58);
    pthread_join(t, &r);
    if (r == (void *)2) exit(77);
    if (r) exit(59);
    size_t locked = resident_in(exit_base[0], exit_size), kept = 0;
    for (int i = 1; i < 8; i++) kept += resident_in(exit_base[i], exit_size) != 0;
    size_t counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    printf("locked stack: %zu pages resident; others resident: %zu of 7; warm %zu counted, "
           "%zu in the lists\n", locked, kept, counted, listed);
    if (locked == 0) exit(77);   /* mincore sees no resident page (qemu-user) */
    if (locked != exit_size / vms__os_page_size()) exit(54);
    if (kept) exit(55);
    if (counted != listed) exit(56);
    if (counted != WARM_FULL + 1) exit(57);
    exit(0);
}

TEST(a_discard_refused_at_a_thread_exit_keeps_only_it)
{
    char out[4096];
    int st = tst_fork(refused_at_exit_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

/* One stack locked in the middle of a batch of 32 bound cold: the batch's call stops at
 * it. It costs one call more, and the ranges dropped already are not asked again: three
 * calls where process_madvise is used (the ranges before it, it alone, the ranges after
 * it), one madvise per range where not. The os layer's retry used to stop at the refused
 * range too, and the cache then asked again range by range from the first: 50 calls (49
 * range by range). Every other stack ends with no page resident; the locked one is
 * zeroed by hand. */
enum { REFUSED_MID = 16 };

static void refused_mid_child(void *arg)
{
    /* arg: as on a kernel without process_madvise (ENOSYS), range by range. */
    if (arg) vms__os_inject(VMS__OP_PMADV_SELF, 1, ENOSYS, true);
    fill_budget_small();
    /* How this process discards now: two ranges in one call, or one call per range. */
    size_t page = vms__os_page_size();
    char *scratch = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                         -1, 0);
    if (scratch == MAP_FAILED) exit(61);
    struct iovec two[2] = { { scratch, page }, { scratch + page, page } };
    unsigned long before = vms__os_syscalls();
    if (vms__os_discard_many(two, 2, NULL) != 0) exit(62);
    unsigned long per_two = vms__os_syscalls() - before;
    if (per_two != 1 && per_two != 2) exit(63);
    vms_stack *st[32];
    char *base[32];
    size_t size = alloc_touched_one_locked(st, base, REFUSED_MID);
    before = vms__os_syscalls();
    for (int i = 0; i < 32; i++) vms_stack_free(st[i]);
    unsigned long calls = vms__os_syscalls() - before;
    unsigned long want = per_two == 1 ? 3 : 32;
    size_t kept = 0, locked = 0, nonzero = 0;
    for (int i = 0; i < 32; i++) {
        size_t r = resident_in(base[i], size);
        if (i == REFUSED_MID) locked = r;
        else kept += r;
    }
    for (size_t j = 0; j < size; j++) nonzero += base[REFUSED_MID][j] != 0;
    printf("%s: %lu calls for the batch (want %lu); locked stack: %zu pages resident, %zu "
           "bytes not zero; others: %zu pages resident\n",
           per_two == 1 ? "batched" : "range by range", calls, want, locked, nonzero, kept);
    if (locked == 0) exit(77);   /* mincore sees no resident page (qemu-user) */
    if (calls != want) exit(64);
    if (kept) exit(55);
    if (nonzero) exit(65);
    exit(0);
}

TEST(a_refused_range_costs_one_call_more_and_no_range_is_asked_twice)
{
    char out[4096];
    int st = tst_fork(refused_mid_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fputs(out, stderr);
    else fputs(out, stdout);
    ASSERT_EXITED(st, 0);
}

TEST(a_refused_range_costs_one_call_more_range_by_range)
{
    NEED_FAULT_INJECTION();
    char out[4096];
    int st = tst_fork(refused_mid_child, (void *)1, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("%s", out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) fputs(out, stderr);
    else fputs(out, stdout);
    ASSERT_STR_CONTAINS(out, "range by range: ");
    ASSERT_EXITED(st, 0);
}

/* ---- concurrency ------------------------------------------------------------------- */
static void *churn(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    vms_stack *mine[16];
    for (int round = 0; round < 3000; round++) {
        int k = 1 + round % 16;
        for (int i = 0; i < k; i++) {
            mine[i] = vms_stack_alloc(round % 3 ? 0 : 16 * 1024);
            if (!mine[i]) return (void *)1;
            uintptr_t *top = (uintptr_t *)vms_stack_top(mine[i]);
            top[-1] = id << 32 | (uintptr_t)round << 8 | (uintptr_t)i;
        }
        sched_yield();
        for (int i = 0; i < k; i++) {
            uintptr_t *top = (uintptr_t *)vms_stack_top(mine[i]);
            if (top[-1] != (id << 32 | (uintptr_t)round << 8 | (uintptr_t)i)) return (void *)2;
            vms_stack_free(mine[i]);
        }
    }
    return NULL;
}

TEST(threads_never_share_a_stack)
{
    pthread_t t[8];
    for (uintptr_t i = 0; i < 8; i++) pthread_create(&t[i], NULL, churn, (void *)(i + 1));
    for (int i = 0; i < 8; i++) {
        void *r;
        pthread_join(t[i], &r);
        ASSERT_EQ((uintptr_t)r, 0);
    }
}

/* Each stack is claimed by one allocating thread only, also when it was freed by another
 * thread: frees on a thread that did not allocate overflow its 8-stack LIFO into the
 * shared lists, and the next allocations take them from there. Every stack handed out
 * goes into a set of live stacks (by base; a second live owner is a duplicate, seen at
 * the insert whichever thread comes second) and gets a tag at its top, checked by the
 * thread that frees it. The stacks travel between threads through a queue (a mutex of
 * the test's own: it orders the handover, not the allocator). */
enum { CLAIM_THREADS = 6, CLAIM_ROUNDS = 2000, CLAIM_SET = 1 << 14 };
static struct {
    _Atomic uintptr_t base;     /* 0: empty; once set, kept */
    atomic_int live;
} claim_set[CLAIM_SET];
static pthread_mutex_t claim_mu = PTHREAD_MUTEX_INITIALIZER;
static struct { vms_stack *st; uintptr_t tag; } claim_q[CLAIM_THREADS * 16];
static int claim_qn;

/* The set's entry for base, made if there is none; NULL when the set is full. */
static atomic_int *claim_entry(uintptr_t base)
{
    for (size_t i = (base >> 12) * 0x9e3779b1u % CLAIM_SET, n = 0; n < CLAIM_SET;
         n++, i = (i + 1) % CLAIM_SET) {
        uintptr_t cur = atomic_load(&claim_set[i].base);
        if (!cur && atomic_compare_exchange_strong(&claim_set[i].base, &cur, base)) cur = base;
        if (cur == base) return &claim_set[i].live;
    }
    return NULL;
}

static void *claim_churn(void *arg)
{
    uintptr_t id = (uintptr_t)arg;
    for (int round = 0; round < CLAIM_ROUNDS; round++) {
        int k = 1 + (round + (int)id) % 16;
        vms_stack *mine[16];
        uintptr_t tags[16];
        for (int i = 0; i < k; i++) {
            mine[i] = vms_stack_alloc(round % 3 ? 0 : 16 * 1024);
            if (!mine[i]) return (void *)1;
            atomic_int *live = claim_entry((uintptr_t)vms_stack_base(mine[i]));
            if (!live) return (void *)2;
            if (atomic_exchange(live, 1)) return (void *)3;   /* already live: twice out */
            tags[i] = id << 40 | (uintptr_t)round << 8 | (uintptr_t)i;
            ((uintptr_t *)vms_stack_top(mine[i]))[-1] = tags[i];
        }
        sched_yield();
        /* Into the queue; then as many out of it as were put in, mostly another's. */
        pthread_mutex_lock(&claim_mu);
        for (int i = 0; i < k; i++) {
            claim_q[claim_qn].st = mine[i];
            claim_q[claim_qn++].tag = tags[i];
        }
        for (int i = 0; i < k; i++) {
            int j = (int)((id * 7 + (uintptr_t)i * 13 + (uintptr_t)round) % (uintptr_t)claim_qn);
            mine[i] = claim_q[j].st;
            tags[i] = claim_q[j].tag;
            claim_q[j] = claim_q[--claim_qn];
        }
        pthread_mutex_unlock(&claim_mu);
        for (int i = 0; i < k; i++) {
            if (((uintptr_t *)vms_stack_top(mine[i]))[-1] != tags[i]) return (void *)4;
            atomic_int *live = claim_entry((uintptr_t)vms_stack_base(mine[i]));
            if (!live || atomic_exchange(live, 0) != 1) return (void *)5;
            vms_stack_free(mine[i]);
        }
    }
    return NULL;
}

TEST(stacks_freed_on_other_threads_are_claimed_once)
{
    pthread_t t[CLAIM_THREADS];
    for (uintptr_t i = 0; i < CLAIM_THREADS; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, claim_churn, (void *)(i + 1)), 0);
    for (int i = 0; i < CLAIM_THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        /* 1 no stack, 2 set full, 3 handed out twice, 4 tag overwritten, 5 not live */
        ASSERT_EQ((uintptr_t)r, 0);
    }
    ASSERT_EQ(claim_qn, 0);
}

/* ---- fork ---------------------------------------------------------------------------- */
static vms_stack *fork_parent_stack;

static void fork_child(void *arg)
{
    (void)arg;
    /* The inherited stack keeps its data and guards; new stacks work and are guarded. */
    char *top = vms_stack_top(fork_parent_stack);
    if (strcmp(top - 16, "parent-data") != 0) exit(3);
    assert_guarded_below(fork_parent_stack);
    for (int i = 0; i < 200; i++) {
        vms_stack *s = vms_stack_alloc(0);
        if (!s) exit(4);
        assert_guarded_below(s);
        assert_guarded_above(s);
        memset(vms_stack_base(s), 1, vms_stack_size(s));
        vms_stack_free(s);
    }
    vms_stack_free(fork_parent_stack);
    exit(0);
}

TEST(fork_child_inherits_and_allocates)
{
    need_guards();
    fork_parent_stack = vms_stack_alloc(0);
    ASSERT_NOT_NULL(fork_parent_stack);
    strcpy((char *)vms_stack_top(fork_parent_stack) - 16, "parent-data");
    char out[8192];
    int st = tst_fork(fork_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT(strcmp((char *)vms_stack_top(fork_parent_stack) - 16, "parent-data") == 0);
    vms_stack_free(fork_parent_stack);
}

/* fork while another thread holds vmstack's locks (all of them, as a thread opening
 * slots, registering its cache or loading symbols does for a moment; or only the usage
 * histogram's, as a thread freeing a painted stack does): fork waits
 * for them, and the child, whose one thread could never get a lock held by a thread it
 * does not have, uses every one of them. The holder keeps them until the fork has begun
 * (the fork hook says so) and the forking thread sleeps, blocked on one of them; without
 * the wait the child hangs (alarm). (It used to keep them 50 ms after the fork hook,
 * which on a busy machine could end before the fork got to the locks.) */
static sem_t locks_held, child_done;
static atomic_bool fork_began;
static atomic_int fork_tid;

static void note_fork(void)
{
    atomic_store(&fork_tid, tst_gettid());
    atomic_store(&fork_began, true);
}

/* arg: NULL for every lock; else only the usage histogram's, the one lock a thread
 * freeing a stack with VMS_PAINT holds (fork must wait for it alone too). */
static void *hold_locks(void *arg)
{
    bool all = arg == NULL;
    if (all) {
        vms__cache_fork_lock();
        vms__arena_fork_lock();
        vms__trace_fork_lock();
    }
    vms__debug_fork_lock();
    sem_post(&locks_held);
    while (!atomic_load(&fork_began)) sched_yield();
    tst_wait_until_asleep(atomic_load(&fork_tid));
    vms__debug_fork_unlock();
    if (all) {
        vms__trace_fork_unlock(false);
        vms__arena_fork_unlock();
        vms__cache_fork_unlock();
    }
    /* Alive until the child is done: under TSan a child that inherits an ended thread
     * nobody joined reports it as leaked. */
    while (sem_wait(&child_done) != 0) {}
    return NULL;
}

static void use_every_lock(void *arg)
{
    (void)arg;
    vms__fork_hook = NULL;
    alarm(30);
    vms_stats s;
    if (vms_get_stats(&s) != 0) _exit(2);              /* the cache's registry */
    vms_stack *big = vms_stack_alloc(64u << 20);        /* a new class: its arena */
    if (!big) _exit(3);
    vms_stack_free(big);                                /* the class's shared list */
    if (vms__trace_load() <= 0) _exit(4);               /* the symbol table */
    if (vms_stack_usage(NULL, 0) != 0) _exit(5);        /* the usage histogram */
}

static void fork_beside_a_lock_holder(void *which)
{
    vms_stack *st = vms_stack_alloc(0);                 /* initialized, handlers set */
    ASSERT_NOT_NULL(st);
    vms_stack_free(st);
    ASSERT_EQ(sem_init(&locks_held, 0, 0), 0);
    ASSERT_EQ(sem_init(&child_done, 0, 0), 0);
    atomic_store(&fork_began, false);
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, hold_locks, which), 0);
    while (sem_wait(&locks_held) != 0) {}
    vms__fork_hook = note_fork;
    char out[512];
    tst_run_ok(use_every_lock, NULL, out, sizeof out);
    vms__fork_hook = NULL;
    sem_post(&child_done);
    pthread_join(t, NULL);
    sem_destroy(&locks_held);
    sem_destroy(&child_done);
}

TEST(fork_waits_for_a_thread_holding_our_locks)
{
    fork_beside_a_lock_holder(NULL);
}

TEST(fork_waits_for_a_thread_holding_the_histogram_lock)
{
    fork_beside_a_lock_holder("histogram");
}

/* ---- bad input --------------------------------------------------------------------- */
/* A success leaves errno as the program had it, also the first use (initialization,
 * the guard probe, reservations and the mapping name, whose failures on the way are
 * expected: PR_SET_VMA_ANON_NAME without CONFIG_ANON_VMA_NAME, say). */
static void errno_kept_child(void *arg)
{
    (void)arg;
    errno = EDOM;
    vms_stack *a = vms_stack_alloc(0);
    int e1 = errno;
    vms_stack *b = vms_stack_alloc(300 * 1024);           /* a class of its own */
    int e2 = errno;
    vms_stack_free(a);
    vms_stack_free(b);
    int e3 = errno;
    printf("stacks %d %d, errno %d %d %d (EDOM %d)\n", a != NULL, b != NULL, e1, e2, e3, EDOM);
}

TEST(success_leaves_errno_alone)
{
    char out[512];
    tst_run_ok(errno_kept_child, NULL, out, sizeof out);
    char want[96];
    snprintf(want, sizeof want, "stacks 1 1, errno %d %d %d (EDOM %d)\n", EDOM, EDOM, EDOM, EDOM);
    ASSERT_STR_CONTAINS(out, want);
}

TEST(sizes)
{
    errno = 0;
    ASSERT_NULL(vms_stack_alloc(SIZE_MAX));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(vms_stack_alloc(VMS_GIB + 1));
    ASSERT_EQ(errno, EINVAL);
    vms_stack *s = vms_stack_alloc(1);
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(vms_stack_size(s), vms__os_page_size());
    vms_stack_free(s);
    s = vms_stack_alloc(300 * 1024);          /* rounded up to its class */
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(vms_stack_size(s), 512 * 1024);
    vms_stack_free(s);
    s = vms_stack_alloc(0);
    ASSERT_EQ(vms_stack_size(s), 256 * 1024);
    vms_stack_free(s);
}

static void body_never_runs(void *arg)
{
    (void)arg;
}

TEST(null_and_foreign_getters)
{
    vms_stack_free(NULL);
    errno = 0;
    ASSERT_NULL(vms_stack_base(NULL));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(vms_stack_top(NULL));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_EQ(vms_stack_size(NULL), 0);
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_EQ(vms_stack_max_used(NULL), 0);
    ASSERT_EQ(errno, EINVAL);
    char junk[64];
    ASSERT_NULL(vms_stack_base((vms_stack *)junk));
    ASSERT_EQ(vms_stack_size((vms_stack *)junk), 0);
    /* Nothing is read at the pointer: never mapped, the top of the address space, a
     * fiber's handle (in its stack, not a slot record). */
    errno = 0;
    ASSERT_NULL(vms_stack_top((vms_stack *)(uintptr_t)1));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_EQ(vms_stack_size((vms_stack *)UINTPTR_MAX), 0);
    ASSERT_EQ(errno, EINVAL);
    vms_fiber *f = vms_fiber_create(body_never_runs, NULL, NULL);
    ASSERT_NOT_NULL(f);
    errno = 0;
    ASSERT_NULL(vms_stack_base((vms_stack *)(void *)f));
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_EQ(vms_stack_max_used((vms_stack *)(void *)f), 0);
    ASSERT_EQ(errno, EINVAL);
    vms_fiber_destroy(f);
    vms_stack *s = vms_stack_alloc(0);
    vms_stack_free(s);
    errno = 0;
    ASSERT_EQ(vms_stack_size(s), 0);   /* freed: no longer a live stack */
    ASSERT_EQ(errno, EINVAL);
    errno = 0;
    ASSERT_NULL(vms_stack_top(s));
    ASSERT_EQ(errno, EINVAL);
}

static void double_free_child(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);
    vms_stack_free(s);
    vms_stack_free(s);
    exit(0);
}

TEST(double_free_aborts)
{
    char out[4096];
    int st = tst_fork(double_free_child, NULL, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free: double free of stack");
}

/* A handle kept after its stack was freed, while the slot went to new owners 1 to 63
 * times (the cache hands it out again: at once, or after the scrubbing batch): a late
 * free is the double free it is, never a free of the new owner's stack; the getters
 * refuse it; the new owner's stack is untouched. */
static vms_stack *alloc_on(const char *base, unsigned nth)
{
    vms_stack *got = NULL;
    for (unsigned seen = 0, i = 0; seen < nth && i < 100000; i++) {
        vms_stack *s = vms_stack_alloc(0);
        if (!s) return NULL;
        if (vms_stack_base(s) == base && ++seen == nth) got = s;
        else vms_stack_free(s);
    }
    return got;
}

static void stale_free_child(void *arg)
{
    unsigned reuses = (unsigned)(uintptr_t)arg;
    vms_stack *old = vms_stack_alloc(0);
    char *base = vms_stack_base(old);
    vms_stack_free(old);
    vms_stack *now = alloc_on(base, reuses);
    if (!now) exit(10);
    if (now == old) exit(11);
    errno = 0;
    if (vms_stack_base(old) || errno != EINVAL || vms_stack_size(old) != 0 ||
        vms_stack_top(old) || vms_stack_max_used(old) != 0)
        exit(12);
    memset((char *)vms_stack_top(now) - 64, 0x5a, 64);
    printf("live %zu\n", vms_stack_size(now));
    fflush(stdout);
    vms_stack_free(old);
    exit(0);
}

TEST(stale_handle_free_aborts)
{
    for (unsigned reuses = 1; reuses < 64; reuses++) {
        char out[4096];
        int st = tst_fork(stale_free_child, (void *)(uintptr_t)reuses, out, sizeof out);
        if (!WIFSIGNALED(st)) fprintf(stderr, "after %u reuses:\n%s", reuses, out);
        ASSERT_SIGNALED(st, SIGABRT);
        ASSERT_STR_CONTAINS(out, "live 262144\n");
        ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free: double free of stack");
        ASSERT_STR_CONTAINS(out, "its slot handed out again since (this handle is stale), unless");
    }
}

/* Successive owners of one slot get different handles, and each handle names the stack
 * while it lives. */
TEST(handles_of_successive_owners)
{
    vms_stack *first = vms_stack_alloc(0), *prev = first;
    ASSERT_NOT_NULL(first);
    char *base = vms_stack_base(first);
    vms_stack_free(first);
    for (unsigned i = 0; i < 100; i++) {
        vms_stack *s = alloc_on(base, 1);
        ASSERT_NOT_NULL(s);
        ASSERT(s != prev);
        ASSERT_PTR_EQ(vms_stack_base(s), base);
        ASSERT_EQ(vms_stack_size(s), 256 * 1024);
        ASSERT_PTR_EQ(vms_stack_top(s), base + 256 * 1024);
        prev = s;
        vms_stack_free(s);
    }
}

static void foreign_child(void *arg)
{
    void *p = arg;
    if (!p) {
        vms_stack *s = vms_stack_alloc(0);
        p = vms_stack_base(s);   /* a pointer into a stack, not the stack */
    }
    vms_stack_free(p);
    exit(0);
}

TEST(foreign_pointer_aborts)
{
    char out[4096];
    void *heap = malloc(64);
    int st = tst_fork(foreign_child, heap, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free:");
    ASSERT_STR_CONTAINS(out, "is not a stack that vmstack handed out");
    st = tst_fork(foreign_child, NULL, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "is not a stack that vmstack handed out");
    free(heap);
    /* Never read: never mapped, and the top of the address space. */
    void *const unmapped[] = { (void *)(uintptr_t)1, (void *)(uintptr_t)-64 };
    for (size_t i = 0; i < sizeof unmapped / sizeof unmapped[0]; i++) {
        st = tst_fork(foreign_child, unmapped[i], out, sizeof out);
        ASSERT_SIGNALED(st, SIGABRT);
        ASSERT_STR_CONTAINS(out, "is not a stack that vmstack handed out");
    }
}

/* The record just past the last opened slot is in the metadata array (read-write, all
 * zero) but names no stack yet: a pointer to it is as foreign as any other that vmstack
 * never handed out (vms__arena_record's bound is the slots opened, not one more). */
TEST(a_record_past_the_opened_slots_is_foreign)
{
    vms_stack *s;
    struct vms__arena *a;
    struct vms_stack *last = last_opened_slot(&s, &a), *next = last + 1;
    ASSERT_PTR_EQ(vms__arena_record(last), last);
    ASSERT_NULL(vms__arena_record(next));
    errno = 0;
    ASSERT_UEQ(vms_stack_size((vms_stack *)next), 0);
    ASSERT_EQ(errno, EINVAL);
    char out[4096];
    int st = tst_fork(foreign_child, next, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "is not a stack that vmstack handed out");
    vms_stack_free(s);
}

/* A fiber's stack (vms_fiber_stack hands it out, const) goes back with the fiber: freed
 * alone, it would be handed out again while the fiber still lives on it, and a fiber
 * that frees its own would have its frames scrubbed under it. */
static void free_own_stack(void *arg)
{
    (void)arg;
    vms_stack_free((vms_stack *)vms_fiber_stack(vms_fiber_self()));
    printf("still running on a freed stack\n");
}

static void fiber_stack_free_child(void *arg)
{
    if (arg) {
        vms_fiber *f = vms_fiber_create(free_own_stack, NULL, NULL);
        vms_fiber_resume(f);
    } else {
        vms_fiber *f = vms_fiber_create(free_own_stack, NULL, NULL);
        vms_stack_free((vms_stack *)vms_fiber_stack(f));
        printf("freed a fiber's stack\n");
    }
    exit(0);
}

TEST(free_of_a_fiber_stack_aborts)
{
    char out[4096];
    for (int running = 0; running < 2; running++) {
        int st = tst_fork(fiber_stack_free_child, running ? &running : NULL, out, sizeof out);
        ASSERT_SIGNALED(st, SIGABRT);
        ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free: stack ");
        ASSERT_STR_CONTAINS(out, "belongs to a fiber or thread");
        ASSERT_STR_NOT_CONTAINS(out, "freed");
    }
}

/* A vms thread's stack (vms_stack_self names it in the body) goes back when the thread
 * has ended: freed by the program, from the body itself or from another thread while
 * the body runs, it is reported as a task's stack. */
static sem_t thread_free_started, thread_free_release;
static const vms_stack *_Atomic thread_free_stack;

static void *thread_free_body(void *arg)
{
    atomic_store(&thread_free_stack, vms_stack_self());
    if (arg) {
        vms_stack_free((vms_stack *)vms_stack_self());
        printf("freed its own stack\n");
        fflush(stdout);
        return NULL;
    }
    sem_post(&thread_free_started);
    while (sem_wait(&thread_free_release) != 0) {}
    return NULL;
}

static void thread_stack_free_child(void *arg)
{
    pthread_t t;
    sem_init(&thread_free_started, 0, 0);
    sem_init(&thread_free_release, 0, 0);
    if (vms_thread_create(&t, NULL, thread_free_body, arg) != 0) exit(10);
    if (!arg) {
        while (sem_wait(&thread_free_started) != 0) {}
        vms_stack_free((vms_stack *)atomic_load(&thread_free_stack));
        printf("freed a running thread's stack\n");
        fflush(stdout);
        sem_post(&thread_free_release);
    }
    pthread_join(t, NULL);
    exit(0);
}

TEST(free_of_a_threads_stack_aborts)
{
    char out[4096];
    for (int own = 0; own < 2; own++) {
        int st = tst_fork(thread_stack_free_child, own ? &own : NULL, out, sizeof out);
        ASSERT_SIGNALED(st, SIGABRT);
        ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free: stack ");
        ASSERT_STR_CONTAINS(out, "belongs to a fiber or thread; vms_fiber_destroy frees a "
                                 "fiber's stack, the thread's end a vms thread's\n");
        ASSERT_STR_NOT_CONTAINS(out, "freed");
    }
}

/* vms_stack_self in a signal handler on the alternate signal stack vmstack gave the
 * thread names that stack (docs/api.md): it is vmstack's, installed with sigaltstack
 * while the thread lives. Freed by the program, it went to the pool of alternate stacks
 * while the kernel still delivered signals on it (and the handler ran there): another
 * thread could be given the same one, and the error came later, from a reap, as a
 * "double free". The free is refused at once. Also from another thread, with the
 * handle handed over. */
static const vms_stack *alt_self;
static int alt_free_in_handler;

static void alt_self_handler(int sig)
{
    (void)sig;
    alt_self = vms_stack_self();
    if (!alt_self) {
        static const char no[] = "no stack seen in the handler\n";
        (void)!write(1, no, sizeof no - 1);
        _exit(20);
    }
    if (alt_free_in_handler) vms_stack_free((vms_stack *)alt_self);   /* on that stack */
}

static void *alt_free_other(void *arg)
{
    vms_stack_free((vms_stack *)arg);
    return NULL;
}

static void alt_stack_free_child(void *arg)
{
    struct sigaction sa = { .sa_handler = alt_self_handler, .sa_flags = SA_ONSTACK };
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGUSR1, &sa, NULL) != 0) exit(10);
    vms_stack *warm = vms_stack_alloc(0);   /* the thread's alternate stack is set up */
    if (!warm) exit(11);
    /* Under ASan the thread keeps the alternate stack ASan gave it. */
    stack_t ss;
    struct vms__where w;
    if (sigaltstack(NULL, &ss) != 0 || (ss.ss_flags & SS_DISABLE) ||
        vms__arena_where(ss.ss_sp, &w) != VMS__WHERE_STACK)
        exit(30);
    alt_free_in_handler = !arg;
    raise(SIGUSR1);
    if (arg) {
        pthread_t t;
        if (pthread_create(&t, NULL, alt_free_other, (void *)alt_self) != 0) exit(12);
        pthread_join(t, NULL);
    }
    printf("freed the alternate stack\n");
    vms_stats s;
    vms_get_stats(&s);
    exit(0);
}

TEST(free_of_an_alternate_signal_stack_aborts)
{
    need_guards();
    char out[4096];
    for (int other = 0; other < 2; other++) {
        int st = tst_fork(alt_stack_free_child, other ? &other : NULL, out, sizeof out);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 30)
            SKIP("this thread's alternate signal stack is not vmstack's (ASan's own)");
        ASSERT_SIGNALED(st, SIGABRT);
        ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free: stack ");
        ASSERT_STR_CONTAINS(out, "is an alternate signal stack of vmstack's own");
        ASSERT_STR_NOT_CONTAINS(out, "freed the alternate stack");
    }
}

/* A raw stack freed by the code running on it (a coroutine freeing its own stack, then
 * going on or switching away): the next allocation on this thread got it back from the
 * thread's cache and scrubbed its top page, the coroutine's own frames, and the process
 * died later by SIGSEGV with no report (or another thread ran on it). Refused at the free. */
static ucontext_t self_free_main, self_free_co;
static vms_stack *self_free_st;

static void self_free_co_fn(void)
{
    vms_stack_free(self_free_st);
    printf("freed the stack it runs on\n");
}

static void raw_self_free_child(void *arg)
{
    (void)arg;
    self_free_st = vms_stack_alloc(0);
    if (!self_free_st || getcontext(&self_free_co) != 0) exit(10);
    self_free_co.uc_stack.ss_sp = vms_stack_base(self_free_st);
    self_free_co.uc_stack.ss_size = vms_stack_size(self_free_st);
    self_free_co.uc_link = &self_free_main;
    makecontext(&self_free_co, self_free_co_fn, 0);
    if (swapcontext(&self_free_main, &self_free_co) != 0) exit(11);
    exit(0);
}

TEST(free_of_the_stack_the_caller_runs_on_aborts)
{
    char out[4096];
    int st = tst_fork(raw_self_free_child, NULL, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free: stack ");
    ASSERT_STR_CONTAINS(out, "is the stack the caller runs on");
    ASSERT_STR_NOT_CONTAINS(out, "freed the stack it runs on");
}

TEST(largest_size_is_one_gib)
{
    vms_stack *s = vms_stack_alloc(VMS_MAX_STACK_SIZE);   /* address space only */
    ASSERT_NOT_NULL(s);
    ASSERT_EQ(vms_stack_size(s), VMS_MAX_STACK_SIZE);
    char *top = vms_stack_top(s), *base = vms_stack_base(s);
    top[-1] = 1;
    base[0] = 1;
    vms_stack_free(s);
    errno = 0;
    ASSERT_NULL(vms_stack_alloc(VMS_MAX_STACK_SIZE + 1));
    ASSERT_EQ(errno, EINVAL);
}

/* ---- failures underneath: fault injection (VMSTACK_FAULT_INJECTION) -------------------- */
static void inject_child(void *arg)
{
    int op = (int)(intptr_t)arg;
    vms_stack *warm = vms_stack_alloc(0);   /* initialized, sigaltstack allocated */
    if (!warm) exit(10);
    /* A class no one used yet: the next alloc must create an arena and open slots. */
    vms__os_inject(op, 1, ENOMEM, true);
    errno = 0;
    vms_stack *s = vms_stack_alloc(8 * VMS_MIB);
    if (s) exit(11);
    if (errno != ENOMEM) exit(12);
    vms__os_inject_clear();
    s = vms_stack_alloc(8 * VMS_MIB);
    if (!s) exit(13);
    assert_guarded_below(s);
    assert_guarded_above(s);
    exit(0);
}

/* Skips unless this process uses madvise guards. Asked through the library, so that
 * what decides it counts (VMSTACK_GUARD_METHOD, Valgrind): the os layer asked before
 * initialization would only probe the kernel, and keep that answer. */
static void need_madvise_method(void)
{
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    if (strcmp(s.guard_method, "madvise") != 0) SKIP("the madvise method is not in use");
}

TEST(mmap_fails)
{
    need_guards();
    NEED_FAULT_INJECTION();
    char out[4096];
    int st = tst_fork(inject_child, (void *)(intptr_t)VMS__OP_MMAP, out, sizeof out);
    ASSERT_EXITED(st, 0);
}

TEST(mprotect_fails)
{
    need_guards();
    NEED_FAULT_INJECTION();
    char out[4096];
    int st = tst_fork(inject_child, (void *)(intptr_t)VMS__OP_MPROTECT, out, sizeof out);
    ASSERT_EXITED(st, 0);
}

TEST(guard_install_fails)
{
    need_guards();
    NEED_FAULT_INJECTION();
    need_madvise_method();
    char out[4096];
    int st = tst_fork(inject_child, (void *)(intptr_t)VMS__OP_MADV_GUARD, out, sizeof out);
    ASSERT_EXITED(st, 0);
}

static void no_guard_install_child(void *arg)
{
    (void)arg;
    /* A kernel without MADV_GUARD_INSTALL (before 6.13) answers EINVAL: detection must
     * settle on mprotect, and stacks must still be guarded. */
    vms__os_inject(VMS__OP_MADV_GUARD, 1, EINVAL, true);
    vms_stack *s = vms_stack_alloc(0);
    if (!s) exit(10);
    vms_stats st;
    vms_get_stats(&st);
    if (strcmp(st.guard_method, "mprotect") != 0) exit(11);
    assert_guarded_below(s);
    assert_guarded_above(s);
    exit(0);
}

TEST(kernel_without_madv_guard_install)
{
    need_guards();
    NEED_FAULT_INJECTION();
    char out[4096];
    int st = tst_fork(no_guard_install_child, NULL, out, sizeof out);
    ASSERT_EXITED(st, 0);
}

/* madvise guards: the second guard of a batch cannot be installed (ENOMEM). The batch
 * opens only the slot before it, the slot whose guard failed stays reserved (PROT_NONE:
 * it still guards the top of the slot below), and the next batch installs that guard
 * before it opens the slot: no stack is ever handed out without its guard. */
static void partial_guards_child(void *arg)
{
    (void)arg;
    vms_stack *warm = vms_stack_alloc(0);   /* initialized, sigaltstack allocated */
    if (!warm) exit(10);
    /* A class no one used: its first batch installs the guards. */
    vms__os_inject(VMS__OP_MADV_GUARD, 2, ENOMEM, false);
    enum { N = 12 };
    vms_stack *s[N];
    for (int i = 0; i < N; i++) {
        s[i] = vms_stack_alloc(8 * VMS_MIB);
        if (!s[i]) {
            printf("stack %d: %s\n", i, strerror(errno));
            exit(11);
        }
    }
    for (int i = 0; i < N; i++) {
        assert_guarded_below(s[i]);
        assert_guarded_above(s[i]);
    }
    printf("%d stacks guarded\n", N);
}

TEST(guard_install_fails_inside_a_batch)
{
    need_guards();
    NEED_FAULT_INJECTION();
    need_madvise_method();
    char out[4096];
    tst_run_ok(partial_guards_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "12 stacks guarded\n");
}

/* madvise guards: a new class's batch has its guards installed, but making it
 * read-write fails (ENOMEM: the commit limit, RLIMIT_DATA). No stack is handed out, and
 * the next allocation installs the guards again (markers already there) and opens the
 * batch. */
static void batch_open_fails_child(void *arg)
{
    (void)arg;
    vms_stack *warm = vms_stack_alloc(0);
    if (!warm) exit(10);
    /* The arena's metadata is the first mprotect, the batch the second. */
    vms__os_inject(VMS__OP_MPROTECT, 2, ENOMEM, false);
    errno = 0;
    vms_stack *s = vms_stack_alloc(8 * VMS_MIB);
    int e = errno;
    vms__os_inject_clear();
    if (s || e != ENOMEM) {
        printf("%p, %s\n", (void *)s, strerror(e));
        exit(11);
    }
    for (int i = 0; i < 3; i++) {
        s = vms_stack_alloc(8 * VMS_MIB);
        if (!s) exit(12);
        assert_guarded_below(s);
        assert_guarded_above(s);
    }
    printf("opened on the second try\n");
}

TEST(madvise_batch_open_fails)
{
    need_guards();
    NEED_FAULT_INJECTION();
    need_madvise_method();
    char out[4096];
    tst_run_ok(batch_open_fails_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "opened on the second try\n");
    /* Far from vm.max_map_count: the likely cause is said, once. */
    ASSERT_EQ(tst_count(out, "vmstack: warning: mprotect failed with ENOMEM with "), 1);
    ASSERT_STR_CONTAINS(out, "over the commit limit");
}

/* mprotect guards: a new class's arena is made (its metadata opened, the first mprotect)
 * but its first slot cannot be opened (the second). The allocation fails with ENOMEM,
 * the warning is given once, and the next allocation opens the slot. */
static void slot_open_fails_child(void *arg)
{
    (void)arg;
    vms_config c = { .flags = VMS_FORCE_MPROTECT };
    if (vms_init(&c) != 0) exit(10);
    vms_stack *warm = vms_stack_alloc(0);
    if (!warm) exit(11);
    for (int round = 0; round < 2; round++) {
        size_t size = round ? 16 * VMS_MIB : 8 * VMS_MIB;   /* a class no one used */
        vms__os_inject(VMS__OP_MPROTECT, 2, ENOMEM, false);
        errno = 0;
        vms_stack *s = vms_stack_alloc(size);
        int e = errno;
        vms__os_inject_clear();
        if (s || e != ENOMEM) {
            printf("round %d: %p, %s\n", round, (void *)s, strerror(e));
            exit(12);
        }
        s = vms_stack_alloc(size);
        if (!s) exit(13);
        assert_guarded_below(s);
        assert_guarded_above(s);
    }
    printf("both rounds ok\n");
}

TEST(mprotect_slot_open_fails)
{
    need_guards();
    NEED_FAULT_INJECTION();
    char out[8192];
    tst_run_ok(slot_open_fails_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "both rounds ok\n");
    /* The process is far from vm.max_map_count: the warning must not blame it. */
    ASSERT_STR_CONTAINS(out, "vmstack: warning: mprotect failed with ENOMEM with ");
    ASSERT_STR_CONTAINS(out, "mappings in use: out of memory, over the commit limit");
    ASSERT_STR_NOT_CONTAINS(out, "has reached vm.max_map_count");
    const char *w = strstr(out, "mprotect failed");
    ASSERT(!strstr(w + 1, "mprotect failed"));   /* once */
}

/* mprotect guards where /proc/self/maps cannot be read (no file descriptor left; a
 * chroot without /proc): the mappings cannot be counted, and stacks are handed out all
 * the same (the kernel's ENOMEM at the limit still stops them). */
static void budget_without_proc_child(void *arg)
{
    (void)arg;
    struct rlimit old;
    tst_use_up_descriptors(&old);            /* no open() can succeed now */
    if (open("/proc/self/maps", O_RDONLY) >= 0) exit(13);
    vms_config c = { .flags = VMS_FORCE_MPROTECT };
    int ie = vms_init(&c);
    vms_stack *s = vms_stack_alloc(0);
    int e = errno;
    /* A slot's mprotect fails with ENOMEM (fault injection) where the mappings cannot
     * be counted: the warning names vm.max_map_count, the likely cause. */
    vms__os_inject(VMS__OP_MPROTECT, 2, ENOMEM, false);
    errno = 0;
    vms_stack *none = vms_stack_alloc(8 * VMS_MIB);   /* a new class: its arena, its slot */
    int none_err = errno;
    vms__os_inject_clear();
    if (setrlimit(RLIMIT_NOFILE, &old) != 0) exit(14);
    if (ie != 0 || !s) {
        printf("vms_init %d, vms_stack_alloc: %s\n", ie, s ? "ok" : strerror(e));
        exit(15);
    }
#ifdef VMSTACK_FAULT_INJECTION
    if (none || none_err != ENOMEM) exit(16);
#else
    (void)none;
    (void)none_err;
#endif
    assert_guarded_below(s);
    assert_guarded_above(s);
    printf("guarded without /proc\n");
}

TEST(mprotect_budget_without_proc)
{
    need_guards();
    char out[8192];
    tst_run_ok(budget_without_proc_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "guarded without /proc\n");
    /* Nor did the thread's alternate signal stack, the first stack, go without. */
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: error:");
#ifdef VMSTACK_FAULT_INJECTION
    ASSERT_STR_CONTAINS(out, "vmstack: warning: mprotect failed with ENOMEM: the process has "
                             "reached vm.max_map_count");
#endif
}

/* ---- the mapping limit with mprotect guards --------------------------------------- */
static void *map_limit_thread(void *arg)
{
    return arg;
}

static void map_limit_child(void *arg)
{
    (void)arg;
    vms_config c = { .flags = VMS_FORCE_MPROTECT };
    if (vms_init(&c) != 0) exit(10);
    size_t n = 0;
    vms_stack *last = NULL;
    for (;;) {
        vms_stack *s = vms_stack_alloc(1);   /* one page: address space only */
        if (!s) {
            if (errno != ENOMEM) exit(11);
            break;
        }
        last = s;
        if (++n > 200000) exit(12);          /* never reached the limit? */
    }
    if (!last) exit(13);
    assert_guarded_below(last);
    assert_guarded_above(last);
    /* vmstack stopped short of the limit: the rest of the program can still map (a
     * thread's stack, malloc's large blocks). It used to take every mapping there was. */
    long max = vms__os_max_map_count(), now = vms__os_map_count(0, 0);
    printf("stacks before ENOMEM: %zu, mappings %ld of %ld\n", n, now, max);
    if (max > 0 && now > max - max / 32) exit(14);
    pthread_t t;
    if (pthread_create(&t, NULL, map_limit_thread, NULL) != 0) exit(15);
    pthread_join(t, NULL);
    void *big = malloc(64u << 20);            /* an mmap of its own */
    if (!big) exit(16);
    ((volatile char *)big)[0] = 1;
    free(big);
    exit(0);
}

TEST(mprotect_map_limit)
{
    need_guards();
#ifdef VMSTACK_VALGRIND
    /* Tens of thousands of mappings exceed Valgrind's segment table (VG_N_SEGMENTS). */
    if (RUNNING_ON_VALGRIND) SKIP("too many mappings for Valgrind");
#endif
#if defined(__SANITIZE_ADDRESS__)
    /* Incompatible with ASan: exhausting vm.max_map_count also starves ASan's own
     * allocator, which then dies before vmstack can return ENOMEM. */
    SKIP("exhausting vm.max_map_count starves AddressSanitizer's allocator");
#endif
    /* TSan's allocator fails its CHECK for want of a mapping, then hangs reporting it. */
    NO_TSAN("exhausting vm.max_map_count starves the runtime's allocator, which then hangs");
    char out[16384];
    int st = tst_fork(map_limit_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "vmstack: warning:");
    ASSERT_STR_CONTAINS(out, "vm.max_map_count");
    ASSERT_STR_CONTAINS(out, "VMSTACK_GUARD_METHOD=madvise");
    /* Warned once, not once per stack. */
    char *first = strstr(out, "vm.max_map_count");
    ASSERT(first && !strstr(first + 1, "vmstack: warning:"));
    ASSERT_STR_CONTAINS(out, "stacks before ENOMEM:");
}

/* ---- many stacks, few mappings (madvise) ------------------------------------------ */
TEST(many_stacks_few_mappings)
{
    need_guards();
#ifdef VMSTACK_VALGRIND
    /* Tens of thousands of mappings exceed Valgrind's segment table (VG_N_SEGMENTS). */
    if (RUNNING_ON_VALGRIND) SKIP("too many mappings for Valgrind");
#endif
    need_madvise_method();
    enum { N = 100000 };
    vms_stack **s = malloc(N * sizeof *s);
    vms_stats before, after;
    ASSERT_EQ(vms_get_stats(&before), 0);
    for (int i = 0; i < N; i++) {
        s[i] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(s[i]);
        ((char *)vms_stack_top(s[i]))[-1] = 1;
    }
    ASSERT_EQ(vms_get_stats(&after), 0);
    ASSERT_GE(after.stacks_live, before.stacks_live + N);
    /* Every arena is at most two mappings (opened part, reserved rest); the others are
     * the files mapped for call traces. */
    ASSERT_LE(after.mappings, 2 * after.arenas + vms__trace_views());
    ASSERT_GE(after.resident_bytes, (size_t)N * vms__os_page_size());
    for (int i = 0; i < N; i++) vms_stack_free(s[i]);
    free(s);
}

/* Whether madvise(MADV_NOHUGEPAGE) on a mapping of our own shows as "nh" in its smaps
 * VmFlags. qemu-user (7.2, the aarch64 cross tests) answers that madvise with 0 and
 * passes nothing to the kernel: probed with a plain mmap + madvise + smaps program, whose
 * mapping shows "nh" natively and not under qemu-aarch64. */
static bool nohugepage_is_shown(void)
{
    size_t len = (size_t)4 << 20;
    char *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (m == MAP_FAILED) return true;
    bool shown = false;
    FILE *f = madvise(m, len, MADV_NOHUGEPAGE) ? NULL : fopen("/proc/self/smaps", "r");
    char line[512];
    int in = 0;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = (uintptr_t)m >= a && (uintptr_t)m < b;
        else if (in && !strncmp(line, "VmFlags:", 8))
            shown = strstr(line, " nh") != NULL;
    }
    if (f) fclose(f);
    munmap(m, len);
    return shown;
}

TEST(arena_is_not_huge_page_backed)
{
    need_guards();
    vms_stack *s = vms_stack_alloc(0);
    ASSERT_NOT_NULL(s);
    FILE *f = fopen("/proc/self/smaps", "r");
    ASSERT_NOT_NULL(f);
    char line[512];
    uintptr_t p = (uintptr_t)vms_stack_base(s);
    int in = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' '))
            in = p >= a && p < b;
        else if (in && !strncmp(line, "VmFlags:", 8)) {
            found = 1;
            if (!strstr(line, " nh") && !nohugepage_is_shown()) {
                fclose(f);
                vms_stack_free(s);
                SKIP("madvise(MADV_NOHUGEPAGE) succeeds and sets nothing (qemu-user)");
            }
            ASSERT_STR_CONTAINS(line, " nh");
        }
    }
    fclose(f);
    ASSERT(found);
    vms_stack_free(s);
}

TEST(stats_count_live_and_cached)
{
    vms_stats a, b;
    ASSERT_EQ(vms_get_stats(NULL), -EINVAL);
    ASSERT_EQ(vms_get_stats(&a), 0);
    vms_stack *s[10];
    for (int i = 0; i < 10; i++) s[i] = vms_stack_alloc(0);
    ASSERT_EQ(vms_get_stats(&b), 0);
    ASSERT_EQ(b.stacks_live, a.stacks_live + 10);
    for (int i = 0; i < 10; i++) vms_stack_free(s[i]);
    ASSERT_EQ(vms_get_stats(&b), 0);
    ASSERT_EQ(b.stacks_live, a.stacks_live);
    ASSERT_GE(b.stacks_cached, 10);
    ASSERT_GE(b.arenas, 1);
    ASSERT(b.mappings >= 1);
#ifdef VMSTACK_VMAP
    ASSERT_GE(b.reserved_bytes, b.arenas * ((size_t)1 << 32));   /* 4 GiB or more each */
    ASSERT(!strcmp(b.guard_method, "madvise") || !strcmp(b.guard_method, "mprotect"));
#else
    /* The direct backend's heap blocks: 16 MiB of stacks or more each here (smaller only
     * where the heap refuses that much: direct.c). */
    ASSERT_GE(b.reserved_bytes, b.arenas * 16 * VMS_MIB);
    ASSERT(!strcmp(b.guard_method, "none"));
#endif
}

/* The files mapped for call traces are vmstack's mappings too: this test program has a
 * symbol table (.symtab), so at least its own file is mapped, and the stats count it
 * beside the arenas (it left them out). */
TEST(stats_mappings_count_the_trace_views)
{
    vms_stack *s = vms_stack_alloc(0);
    ASSERT_NOT_NULL(s);
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    size_t arenas, reserved, arena_maps, resident;
    vms__arena_totals(&arenas, &reserved, &arena_maps, &resident);
    ASSERT_GE(vms__trace_views(), 1);
    ASSERT_GE(arena_maps, 1);
    ASSERT_EQ(st.mappings, arena_maps + vms__trace_views());
    vms_stack_free(s);
}

/* vms_stats counts the program's stacks: vmstack's own alternate signal stacks (one per
 * thread that uses vmstack, the first thread's included) are not in stacks_live. */
static void *alloc_free_on_thread(void *arg)
{
    (void)arg;
    vms_stack *s = vms_stack_alloc(0);   /* this thread gets its alternate stack here */
    vms_stack_free(s);
    vms_stats st;
    vms_get_stats(&st);
    return (void *)st.stacks_live;
}

static void live_count_child(void *arg)
{
    (void)arg;
    vms_stats st;
    if (vms_get_stats(&st) != 0 || st.stacks_live != 0) exit(10);
    vms_stack *s[5];
    for (int i = 0; i < 5; i++) s[i] = vms_stack_alloc(0);
    vms_get_stats(&st);
    if (st.stacks_live != 5) exit(11);
    for (int i = 0; i < 5; i++) vms_stack_free(s[i]);
    vms_get_stats(&st);
    if (st.stacks_live != 0) exit(12);
    pthread_t t;
    void *r;
    pthread_create(&t, NULL, alloc_free_on_thread, NULL);
    pthread_join(t, &r);
    if ((uintptr_t)r != 0) exit(13);
    exit(0);
}

TEST(stacks_live_counts_only_the_programs_stacks)
{
    char out[4096];
    int st = tst_fork(live_count_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}

/* vms_get_stats counts the stacks handed out and not freed from each thread's counts of
 * its allocations and frees, summed over the threads. A stack allocated on one thread
 * and freed on another is counted by both: a sum that read the allocating thread's count
 * before the allocation and the freeing thread's after the free counted the free
 * without the allocation, and stacks_live fell below the stacks that stayed live all
 * along (to 0 once the reader was descheduled between the two, while the others went
 * on). Here STATS_KEPT stacks stay live while one thread allocates stacks and another
 * frees them, with threads between the two in the list the sum walks; every reading
 * must count the kept stacks. */
enum { STATS_KEPT = 8, STATS_BETWEEN = 64, STATS_READS = 2000 };
static vms_stack *_Atomic stats_mail;
static atomic_int stats_stop;
static sem_t stats_ready, stats_release;

static void *stats_freer(void *arg)
{
    (void)arg;
    vms_stack_free(vms_stack_alloc(0));   /* counted from now on, after the reader's */
    sem_post(&stats_ready);
    unsigned idle = 0;
    while (!atomic_load(&stats_stop)) {
        vms_stack *s = atomic_exchange(&stats_mail, NULL);
        if (s) vms_stack_free(s);
        else if (++idle % 64 == 0) sched_yield();
    }
    vms_stack_free(atomic_exchange(&stats_mail, NULL));
    return NULL;
}

static void *stats_between(void *arg)
{
    (void)arg;
    vms_stack_free(vms_stack_alloc(0));
    sem_post(&stats_ready);
    while (sem_wait(&stats_release) != 0) {}
    return NULL;
}

static void *stats_allocator(void *arg)
{
    (void)arg;
    unsigned idle = 0;
    while (!atomic_load(&stats_stop)) {
        if (atomic_load(&stats_mail)) {
            if (++idle % 64 == 0) sched_yield();
            continue;
        }
        vms_stack *s = vms_stack_alloc(0);
        if (!s) return (void *)1;
        atomic_store(&stats_mail, s);
    }
    return NULL;
}

TEST(stats_count_stacks_freed_by_another_thread)
{
    vms_stack *kept[STATS_KEPT];
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    size_t base = st.stacks_live;
    for (int i = 0; i < STATS_KEPT; i++) ASSERT_NOT_NULL(kept[i] = vms_stack_alloc(0));
    sem_init(&stats_ready, 0, 0);
    sem_init(&stats_release, 0, 0);
    pthread_t freer, alloc, between[STATS_BETWEEN];
    ASSERT_EQ(pthread_create(&freer, NULL, stats_freer, NULL), 0);
    while (sem_wait(&stats_ready) != 0) {}
    for (int i = 0; i < STATS_BETWEEN; i++) {
        ASSERT_EQ(pthread_create(&between[i], NULL, stats_between, NULL), 0);
        while (sem_wait(&stats_ready) != 0) {}
    }
    ASSERT_EQ(pthread_create(&alloc, NULL, stats_allocator, NULL), 0);
    size_t low = SIZE_MAX, high = 0;
    for (int i = 0; i < STATS_READS; i++) {
        ASSERT_EQ(vms_get_stats(&st), 0);
        if (st.stacks_live < low) low = st.stacks_live;
        if (st.stacks_live > high) high = st.stacks_live;
    }
    atomic_store(&stats_stop, 1);
    void *r;
    ASSERT_EQ(pthread_join(alloc, &r), 0);
    ASSERT_NULL(r);
    ASSERT_EQ(pthread_join(freer, NULL), 0);
    for (int i = 0; i < STATS_BETWEEN; i++) sem_post(&stats_release);
    for (int i = 0; i < STATS_BETWEEN; i++) ASSERT_EQ(pthread_join(between[i], NULL), 0);
    printf("stacks_live between %zu and %zu, %d kept\n", low, high, STATS_KEPT);
    ASSERT_GE(low, base + STATS_KEPT);
    for (int i = 0; i < STATS_KEPT; i++) vms_stack_free(kept[i]);
    ASSERT_EQ(vms_get_stats(&st), 0);
    ASSERT_EQ(st.stacks_live, base);
}

/* Arenas of different classes are created under different class locks: two threads
 * opening the first slots of two new classes at once must not share one arena record. */
enum { NEW_CLASS_THREADS = 8 };
static pthread_barrier_t new_class_barrier;

static void *alloc_new_class(void *arg)
{
    size_t size = (size_t)vms__os_page_size() << (uintptr_t)arg;
    pthread_barrier_wait(&new_class_barrier);
    return vms_stack_alloc(size);
}

static void new_classes_child(void *arg)
{
    (void)arg;
    vms_stack *warm = vms_stack_alloc(0);   /* initialized; the default class's arena */
    if (!warm) exit(10);
    pthread_barrier_init(&new_class_barrier, NULL, NEW_CLASS_THREADS);
    pthread_t t[NEW_CLASS_THREADS];
    vms_stack *s[NEW_CLASS_THREADS];
    /* Classes 0..7 (4 KiB to 512 KiB with 4 KiB pages) but not the default's (256 KiB). */
    uintptr_t cls[NEW_CLASS_THREADS];
    unsigned def = 0;
    if (vms__arena_class(vms__opt.stack_size, &def) != 0) exit(12);
    for (uintptr_t i = 0, c = 0; i < NEW_CLASS_THREADS; c++)
        if (c != def) cls[i++] = c;
    for (int i = 0; i < NEW_CLASS_THREADS; i++)
        pthread_create(&t[i], NULL, alloc_new_class, (void *)cls[i]);
    for (int i = 0; i < NEW_CLASS_THREADS; i++) {
        pthread_join(t[i], (void **)&s[i]);
        if (!s[i]) exit(11);
    }
    for (int i = 0; i < NEW_CLASS_THREADS; i++) {
        size_t want = (size_t)vms__os_page_size() << cls[i];
        if (vms_stack_size(s[i]) != want) {
            printf("stack %d: size %zu, want %zu\n", i, vms_stack_size(s[i]), want);
            exit(12);
        }
        struct vms__where w;
        if (vms__arena_where(vms_stack_base(s[i]), &w) != VMS__WHERE_STACK ||
            w.st != vms__stack_record(s[i]) || w.arena->cls != cls[i]) {
            printf("stack %d (class %u): the arena lookup finds kind %d, record %p, class %u\n",
                   i, (unsigned)cls[i], w.kind, (void *)w.st, w.arena ? w.arena->cls : 99u);
            exit(13);
        }
        assert_guarded_below(s[i]);
        assert_guarded_above(s[i]);
    }
    vms_stats st;
    vms_get_stats(&st);
    /* The default class's, the alternate signal stacks' (maybe one of the eight), and one
     * per new class. */
    if (st.arenas < NEW_CLASS_THREADS + 1) {
        printf("arenas %zu, want at least %d\n", st.arenas, NEW_CLASS_THREADS + 1);
        exit(14);
    }
    exit(0);
}

TEST(new_classes_in_parallel_get_their_own_arenas)
{
    need_guards();
    for (int round = 0; round < 20; round++) {
        char out[4096];
        int st = tst_fork(new_classes_child, NULL, out, sizeof out);
        if (!WIFEXITED(st) || WEXITSTATUS(st)) fprintf(stderr, "round %d:\n%s", round, out);
        ASSERT_EXITED(st, 0);
    }
}

/* The first uses of vmstack on two threads at once (initialization on one, a vms thread
 * on the other, which sizes its own stack before initializing): no data race, which
 * ThreadSanitizer reports (the cached page size was a plain variable). Run as the first
 * use in its process, as ctest runs every case. */
static pthread_barrier_t first_use_barrier;

static void *first_use_stats(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&first_use_barrier);
    vms_stats st;
    return (void *)(intptr_t)vms_get_stats(&st);
}

static void *first_use_body(void *arg)
{
    return arg;
}

TEST(first_use_on_two_threads_at_once)
{
    pthread_barrier_init(&first_use_barrier, NULL, 2);
    pthread_t t, v;
    pthread_create(&t, NULL, first_use_stats, NULL);
    pthread_barrier_wait(&first_use_barrier);
    ASSERT_EQ(vms_thread_create(&v, NULL, first_use_body, (void *)7), 0);
    void *r;
    pthread_join(v, &r);
    ASSERT_EQ((intptr_t)r, 7);
    pthread_join(t, &r);
    ASSERT_EQ((intptr_t)r, 0);
}

/* Threads that exit together hand their LIFOs to the shared lists: the shared lists' warm
 * pages stay bounded (1,024 stacks) however many threads did so. */
enum { EXITING_THREADS = 300, WARM_BOUND = 1024 };
static pthread_barrier_t exit_barrier;

static void *fill_lifo_and_exit(void *arg)
{
    (void)arg;
    vms_stack *s[8];
    for (int i = 0; i < 8; i++) {
        s[i] = vms_stack_alloc(8 * 1024);
        if (!s[i]) return (void *)1;
        ((char *)vms_stack_top(s[i]))[-1] = 1;
    }
    for (int i = 0; i < 8; i++) vms_stack_free(s[i]);
    pthread_barrier_wait(&exit_barrier);   /* all LIFOs full, then all exit */
    return NULL;
}

TEST(thread_exits_keep_the_warm_budget)
{
    pthread_barrier_init(&exit_barrier, NULL, EXITING_THREADS);
    pthread_t t[EXITING_THREADS];
    for (int i = 0; i < EXITING_THREADS; i++)
        ASSERT_EQ(pthread_create(&t[i], NULL, fill_lifo_and_exit, NULL), 0);
    for (int i = 0; i < EXITING_THREADS; i++) {
        void *r;
        pthread_join(t[i], &r);
        ASSERT_NULL(r);
    }
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    /* 2,400 stacks were warm in the LIFOs: at most WARM_BOUND of them stay so, plus the
     * metadata pages and the alternate signal stacks: about 80 pages (1,103-1,115 in all,
     * natively and under Valgrind). Without the bound the shared lists kept about 2,010.
     * The allowance was 768 pages: threads exiting at the same moment each saw the same
     * room left in the budget and kept it all warm, which under Valgrind (it switches
     * threads at the system call between the two) came to 1,469-1,691 pages in all, near
     * that allowance (the next case checks the budget's sharing exactly). */
    size_t pages = st.resident_bytes / vms__os_page_size();
    ASSERT_LT(pages, WARM_BOUND + 256);
}

/* Two threads exiting at the same moment share what is left of the warm budget: one has
 * decided which of its stacks stay warm but not pushed them yet (held in the flush hook)
 * while the other exits. Each used to read the room left and count its warm stacks only
 * as it pushed them, so both kept that room warm. */
enum { WARM_ROOM = 4 };
static sem_t filled, filler_may_exit;
static atomic_int held_in_flush, other_exited;
static _Thread_local bool hold_my_flush;

static void hold_flush(void)
{
    if (!hold_my_flush) return;
    atomic_store(&held_in_flush, 1);
    while (!atomic_load(&other_exited)) sched_yield();
}

/* Frees warm stacks one at a time (each scrubbed at once: past its LIFO, into the shared
 * lists) until the budget is WARM_ROOM short, and stays alive (its LIFO out of the shared
 * lists, the rest of its stacks taken) until told. */
static void *fill_warm_budget(void *arg)
{
    (void)arg;
    size_t n = WARM_BOUND + 2 * vms__opt.cache_per_thread + 32, i = 0;
    vms_stack **v = calloc(n, sizeof *v);
    if (!v) {
        sem_post(&filled);
        return (void *)1;
    }
    for (size_t k = 0; k < n; k++) {
        v[k] = vms_stack_alloc(8 * 1024);
        if (!v[k]) {
            sem_post(&filled);   /* the case fails: the budget is not WARM_ROOM short */
            return (void *)2;
        }
        ((char *)vms_stack_top(v[k]))[-1] = 1;
    }
    while (i < n && vms__cache_shared_warm() < WARM_BOUND - WARM_ROOM) {
        vms_stack_free(v[i++]);
        vms__cache_flush();
    }
    sem_post(&filled);
    while (sem_wait(&filler_may_exit) != 0) {}
    while (i < n) vms_stack_free(v[i++]);
    free(v);
    return NULL;
}

/* Ends with eight warm stacks (of another class than the filler's) in its LIFO, which
 * its exit hands to the shared lists; arg: held in the flush hook. */
static void *exit_with_warm_stacks(void *arg)
{
    hold_my_flush = arg != NULL;
    vms_stack *s[8];
    for (int i = 0; i < 8; i++) {
        s[i] = vms_stack_alloc(16 * 1024);
        if (!s[i]) return (void *)1;
        ((char *)vms_stack_top(s[i]))[-1] = 1;
    }
    for (int i = 0; i < 8; i++) vms_stack_free(s[i]);
    return NULL;
}

TEST(threads_exiting_together_share_the_warm_budget)
{
    vms_stack *first = vms_stack_alloc(0);               /* initialized */
    ASSERT_NOT_NULL(first);
    vms_stack_free(first);
    ASSERT_LT(vms__cache_shared_warm(), (size_t)WARM_BOUND - WARM_ROOM);
    ASSERT_EQ(sem_init(&filled, 0, 0), 0);
    ASSERT_EQ(sem_init(&filler_may_exit, 0, 0), 0);
    pthread_t f, a, b;
    ASSERT_EQ(pthread_create(&f, NULL, fill_warm_budget, NULL), 0);
    while (sem_wait(&filled) != 0) {}
    ASSERT_EQ(vms__cache_shared_warm(), WARM_BOUND - WARM_ROOM);
    vms__cache_flush_hook = hold_flush;
    ASSERT_EQ(pthread_create(&a, NULL, exit_with_warm_stacks, (void *)1), 0);
    while (!atomic_load(&held_in_flush)) sched_yield();
    void *r = NULL;
    ASSERT_EQ(pthread_create(&b, NULL, exit_with_warm_stacks, NULL), 0);
    ASSERT_EQ(pthread_join(b, &r), 0);
    ASSERT_NULL(r);
    atomic_store(&other_exited, 1);
    ASSERT_EQ(pthread_join(a, &r), 0);
    ASSERT_NULL(r);
    vms__cache_flush_hook = NULL;
    /* WARM_ROOM of the sixteen stay warm, not WARM_ROOM of each thread's eight. */
    ASSERT_EQ(vms__cache_shared_warm(), WARM_BOUND);
    sem_post(&filler_may_exit);
    ASSERT_EQ(pthread_join(f, &r), 0);
    ASSERT_NULL(r);
    ASSERT_EQ(vms__cache_shared_warm(), WARM_BOUND);
}

/* An allocation that finds its LIFO full (of stacks of other sizes) takes from the shared
 * list only the stack it hands out: a few taken at once, the rest went back to the list
 * warm, with no claim on the budget, which another thread may have filled meanwhile (its
 * room was freed by the take). Here the shared lists hold WARM_BOUND warm stacks; the
 * push hook holds the allocating thread at its first push while another thread frees warm
 * stacks into the room; the lists then held WARM_BOUND + 3 (LIFOs of 8: 5 taken). */
static pthread_t repush_thread;
static sem_t refill_go, refill_done;
static atomic_int repush_held;

/* Set before the other thread starts and cleared after it is joined: never written
 * while it may read it (TSan). Holds the first push of repush_thread only. */
static void refill_in_push(void)
{
    if (!pthread_equal(pthread_self(), repush_thread)) return;
    if (atomic_exchange(&repush_held, 1)) return;
    sem_post(&refill_go);
    while (sem_wait(&refill_done) != 0) {}
}

/* Allocates n stacks of size, uses their top page, frees them and scrubs its batch. */
static void *alloc_touch_free(size_t n, size_t size)
{
    vms_stack **v = calloc(n, sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = vms_stack_alloc(size);
        if (!v[i]) return NULL;
        ((char *)vms_stack_top(v[i]))[-1] = 1;
    }
    for (size_t i = 0; i < n; i++) vms_stack_free(v[i]);
    vms__cache_flush();
    free(v);
    return (void *)1;
}

/* Files 40 warm 8 KiB stacks on top of their shared list, then fills the rest of the
 * warm budget with 64 KiB ones, and stays alive (its LIFO out of the lists) until told. */
static sem_t budget_filled, filler_may_end;

static void *fill_budget_8k_on_top(void *arg)
{
    (void)arg;
    void *r = alloc_touch_free(40, 8 * 1024);
    if (r) r = alloc_touch_free(WARM_BOUND + 2 * vms__opt.cache_per_thread + 32, 64 * 1024);
    sem_post(&budget_filled);
    while (sem_wait(&filler_may_end) != 0) {}
    return r;
}

static void *refill_32k(void *arg)
{
    (void)arg;
    size_t n = 2 * vms__opt.cache_per_thread + 8, size = 32 * 1024;
    vms_stack **v = calloc(n, sizeof *v);
    if (!v) return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i] = vms_stack_alloc(size);
        if (!v[i]) return NULL;
        ((char *)vms_stack_top(v[i]))[-1] = 1;
    }
    while (sem_wait(&refill_go) != 0) {}
    for (size_t i = 0; i < n; i++) vms_stack_free(v[i]);
    vms__cache_flush();
    free(v);
    sem_post(&refill_done);
    return (void *)1;
}

static void full_lifo_take_child(void *arg)
{
    (void)arg;
    sem_init(&refill_go, 0, 0);
    sem_init(&refill_done, 0, 0);
    pthread_t f, h;
    void *r = NULL;
    sem_init(&budget_filled, 0, 0);
    sem_init(&filler_may_end, 0, 0);
    if (pthread_create(&f, NULL, fill_budget_8k_on_top, NULL) != 0) exit(10);
    while (sem_wait(&budget_filled) != 0) {}
    printf("filled: %zu warm\n", vms__cache_shared_warm_listed());
    if (vms__cache_shared_warm_listed() != WARM_BOUND) exit(12);
    /* This thread's LIFO full of 16 KiB stacks. */
    if (!alloc_touch_free(2 * vms__opt.cache_per_thread, 16 * 1024)) exit(13);
    repush_thread = pthread_self();
    vms__cache_push_hook = refill_in_push;
    if (pthread_create(&h, NULL, refill_32k, NULL) != 0) exit(14);
    vms_stack *s = vms_stack_alloc(8 * 1024);
    if (!s) exit(15);
    int none = 0;   /* nothing pushed (and nothing will be: 2): the other thread frees now */
    if (atomic_compare_exchange_strong(&repush_held, &none, 2)) {
        sem_post(&refill_go);
        while (sem_wait(&refill_done) != 0) {}
    }
    pthread_join(h, &r);
    vms__cache_push_hook = NULL;
    if (!r) exit(16);
    size_t counted = vms__cache_shared_warm(), listed = vms__cache_shared_warm_listed();
    printf("held in a push: %s; %zu warm counted, %zu in the lists\n",
           atomic_load(&repush_held) == 1 ? "yes" : "no", counted, listed);
    if (listed > WARM_BOUND || counted > WARM_BOUND) exit(17);
    if (counted != listed) exit(18);
    vms_stack_free(s);
    sem_post(&filler_may_end);
    pthread_join(f, &r);
    if (!r) exit(11);
}

TEST(an_allocation_past_a_full_lifo_keeps_the_warm_budget)
{
    char out[4096];
    int st = tst_fork(full_lifo_take_child, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
}
