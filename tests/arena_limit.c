/*
 * arena_limit.c - arenas under a tight RLIMIT_AS (ulimit -v). Reserving an aligned arena
 * must not need more address space than the arena, even for a moment, and one arena
 * must not take all there is: vmstack needs one per size class in use (the alternate
 * signal stacks' and the program's), each at least 4 GiB. Every case sets the limit in
 * a child.
 */
#include "internal.h"
#include "test.h"

#include <stdint.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <vmstack.h>

#define GIB ((size_t)1 << 30)

static void no_sanitizer(void)
{
#if defined(TST_ASAN) || defined(TST_TSAN)
    /* Their runtimes map memory as they go; under a tight limit they die first. */
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
}

/* Lets the process map `extra` bytes more than it has mapped now. */
static void limit_address_space(size_t extra)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f || fscanf(f, "%lu", &pages) != 1) exit(90);
    fclose(f);
    rlim_t lim = (rlim_t)(pages * vms__os_page_size() + extra);
    struct rlimit r = { lim, lim };
    if (setrlimit(RLIMIT_AS, &r) != 0) exit(91);
}

static void reserve_child(void *arg)
{
    (void)arg;
    limit_address_space(6 * GIB);
    void *p = NULL;
    int e = vms__os_reserve(4 * GIB, 4 * GIB, &p);
    if (e) {
        printf("4 GiB aligned to 4 GiB with 6 GiB of room: %s\n", strerror(-e));
        exit(10);
    }
    if ((uintptr_t)p % (4 * GIB)) exit(11);
    /* Only the 4 GiB are held: 2 GiB more still fit. */
    void *q = NULL;
    if (vms__os_reserve(GIB, vms__os_page_size(), &q) != 0) exit(12);
}

/* An aligned reservation fits where its size does: it never holds size + align (8 GiB
 * here) for a moment, as an over-reservation trimmed afterwards would. */
TEST(aligned_reserve_needs_only_its_size)
{
    no_sanitizer();
    char out[4096];
    tst_run_ok(reserve_child, NULL, out, sizeof out);
}

static void two_classes_child(void *arg)
{
    (void)arg;
    limit_address_space(10 * GIB);
    /* Two arenas: this thread's alternate signal stack's class and the default class. */
    vms_stack *s = vms_stack_alloc(0);
    if (!s) {
        printf("vms_stack_alloc with 10 GiB of room: %s\n", strerror(errno));
        exit(10);
    }
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(11);
    printf("arenas %zu reserved %zu GiB\n", st.arenas, st.reserved_bytes / GIB);
    if (st.arenas != 2) exit(12);
    vms_stack_free(s);
}

/* 10 GiB of room hold the two 4 GiB arenas a first stack needs: neither reservation
 * may need 8 GiB at once, and the first may not take 8 GiB for itself. */
TEST(two_arenas_fit_under_ulimit_v)
{
    need_guards();
    no_sanitizer();
    char out[4096];
    tst_run_ok(two_classes_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "arenas 2 reserved 8 GiB");
}

/* ---- address space exhausted -------------------------------------------------------- */

static const char SECRET[] = "vmstack-secret-0123456789";

/* Stacks of 64 MiB until the address space under the limit is gone: ENOMEM, never a
 * crash; the stacks handed out stay usable; a stack freed then is handed out again
 * (its scrubbing done early: no new slot can be opened), zeroed, and nothing else is. */
static void exhaust_child(void *arg)
{
    (void)arg;
    enum { MAX = 1000 };
    static vms_stack *s[MAX];
    vms_stack *warm = vms_stack_alloc(0);    /* initialized: alternate signal stack */
    if (!warm) exit(9);
    limit_address_space(10 * GIB);
    int n = 0;
    for (;;) {
        if (n == MAX) exit(10);              /* never ran out? */
        errno = 0;
        s[n] = vms_stack_alloc(64 * VMS_MIB);
        if (!s[n]) break;
        n++;
    }
    if (errno != ENOMEM) {
        printf("after %d stacks: %s, want ENOMEM\n", n, strerror(errno));
        exit(11);
    }
    if (n < 2) exit(12);
    for (int i = 0; i < n; i++) {           /* each still usable, top and bottom */
        ((volatile char *)vms_stack_top(s[i]))[-1] = 1;
        ((volatile char *)vms_stack_base(s[i]))[0] = 1;
    }
    /* The owner of the last one leaves its data all over it, then frees it. */
    char *base = vms_stack_base(s[n - 1]);
    size_t size = vms_stack_size(s[n - 1]);
    for (size_t off = 0; off < size; off += 64 * 1024) memcpy(base + off, SECRET, sizeof SECRET);
    memcpy(base + size - sizeof SECRET, SECRET, sizeof SECRET);
    vms_stack_free(s[n - 1]);
    vms_stack *again = vms_stack_alloc(64 * VMS_MIB);
    if (!again) {
        printf("a freed stack was not handed out again: %s\n", strerror(errno));
        exit(13);
    }
    if (vms_stack_base(again) != base) exit(14);
    if (memmem(base, size, SECRET, sizeof SECRET - 1)) {
        printf("the freed stack shows its previous owner's data\n");
        exit(15);
    }
    errno = 0;
    if (vms_stack_alloc(64 * VMS_MIB) || errno != ENOMEM) exit(16);
    printf("%d stacks, then ENOMEM; a freed one came back scrubbed\n", n);
}

TEST(address_space_exhausted)
{
    no_sanitizer();
    char out[4096];
    tst_run_ok(exhaust_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "then ENOMEM; a freed one came back scrubbed\n");
}

/* ---- the range below an unaligned reservation is taken ---------------------------------- */

/* The kernel gives an unaligned range and the aligned start below it is someone else's
 * (MAP_FIXED_NOREPLACE fails): the os layer reserves size + align - page instead and
 * cuts it down to an aligned size bytes, leaving the other mapping alone. Exits 77 when
 * the kernel did not place the reservation where it had just placed the same size. */
static void reserve_below_taken_child(void *arg)
{
    (void)arg;
    size_t size = 4 * GIB, align = 4 * GIB, page = vms__os_page_size();
    char *p = mmap(NULL, size, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) exit(10);
    munmap(p, size);
    uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(align - 1);
    if (lo == (uintptr_t)p || lo == 0) exit(77);
    /* A page of the program's at the aligned start below where the arena will go. */
    char *blocker = mmap((void *)lo, page, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
    if (blocker != (char *)lo) exit(11);
    blocker[0] = 42;
    unsigned long calls = vms__os_syscalls();
    void *q = NULL;
    int e = vms__os_reserve(size, align, &q);
    calls = vms__os_syscalls() - calls;
    if (e) {
        printf("vms__os_reserve: %s\n", strerror(-e));
        exit(12);
    }
    /* The first try, its unaligned top given back, the failed try below it, the rest
     * given back, the larger reservation and its trimming, MADV_NOHUGEPAGE, the name. */
    if (calls < 7) exit(77);
    if ((uintptr_t)q % align) exit(13);
    if ((char *)q <= blocker && blocker < (char *)q + size) exit(14);
    if (blocker[0] != 42) exit(15);          /* still there, still the program's */
    /* Exactly [q, q + size): one mapping, no access; the parts of the larger
     * reservation around it were given back (this child maps nothing else without
     * access, so a no-access page next to it would be a leftover). */
    if (vms__os_map_count((uintptr_t)q, (uintptr_t)q + size) != 1) exit(16);
    if (vms__os_probe_noaccess(q) != 1) exit(17);
    unsigned char vec;
    char *around[2] = { (char *)q - page, (char *)q + size };
    for (int i = 0; i < 2; i++)
        if (mincore(around[i], page, &vec) == 0 && vms__os_probe_noaccess(around[i]) == 1)
            exit(18 + i);
    printf("aligned, %lu system calls\n", calls);
}

TEST(aligned_reserve_when_the_range_below_is_taken)
{
    no_sanitizer();
    char out[4096];
    int st = tst_fork(reserve_below_taken_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        SKIP("the kernel placed the reservation elsewhere: the fallback was not reached");
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "aligned, ");
}

/* An alignment larger than the size: the unaligned part of the first try is then larger
 * than the reservation itself, and giving it back from the reservation's top would
 * unmap memory below it (someone else's) and leave part of the range taken below it
 * reserved for good. The result is an aligned range of exactly size bytes all the same,
 * with nothing of vmstack's, no access, left right above it. */
TEST(aligned_reserve_with_an_alignment_above_the_size)
{
    size_t page = vms__os_page_size(), align = 16384 * page;
    for (int i = 0; i < 4; i++) {
        void *q = NULL;
        ASSERT_EQ(vms__os_reserve(page, align, &q), 0);
        ASSERT_EQ((uintptr_t)q % align, 0);
        ASSERT_EQ(vms__os_probe_noaccess(q), 1);
        char *above = (char *)q + page;
        unsigned char vec;
        if (mincore(above, page, &vec) == 0 && vms__os_probe_noaccess(above) == 1)
            TST_FAIL("a no-access page right above the reservation %p: a leftover", q);
        ASSERT_EQ(vms__os_release(q, page), 0);
    }
}

/* ---- no room for even one arena ------------------------------------------------------- */

/* ulimit -v with less than the smallest arena (4 GiB) left, or room for one arena (the
 * alternate signal stacks') and not a second: every allocation fails with ENOMEM, and
 * one warning names RLIMIT_AS. Before it, nothing at all was said with room for one
 * arena, and with less only the alternate stack's "Cannot allocate memory". */
static void no_room_child(void *arg)
{
    size_t room = (size_t)(uintptr_t)arg;
    limit_address_space(room);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        if (vms_stack_alloc(0) || errno != ENOMEM) exit(10);
    }
    vms_stats st;
    if (vms_get_stats(&st) != 0 || st.stacks_live != 0) exit(11);
    printf("ENOMEM, arenas %zu\n", st.arenas);
}

TEST(no_room_for_an_arena_is_said_once)
{
    need_guards();
    no_sanitizer();
    static const size_t rooms[] = { GIB, 4 * GIB + GIB / 2 };
    for (int i = 0; i < 2; i++) {
        char out[8192];
        tst_run_ok(no_room_child, (void *)(uintptr_t)rooms[i], out, sizeof out);
        ASSERT_STR_CONTAINS(out, i == 0 ? "ENOMEM, arenas 0\n" : "ENOMEM, arenas 1\n");
        ASSERT_EQ(tst_count(out, "vmstack: warning: cannot reserve address space for a new "
                                 "arena (4096 MiB, the smallest): RLIMIT_AS (ulimit -v) "
                                 "leaves "), 1);
    }
}

/* ---- vm.max_map_count reached ----------------------------------------------------------- */

/* The process has used up vm.max_map_count with mappings of its own (one range split by
 * mprotect into single pages). A stack of a size not used before needs a new arena: its
 * reservation still fits (the kernel refuses a new mapping only beyond the limit, or it
 * merges with a neighbour), the split that makes its metadata read-write does not.
 * ENOMEM, and one warning names vm.max_map_count; before, nothing was said. Exits 77
 * where the limit is unreadable or too large to reach in a test. */
static void map_limit_child(void *arg)
{
    (void)arg;
    vms_stack *warm = vms_stack_alloc(0);   /* initialized, the default size's arena made */
    if (!warm) exit(9);
    vms_stack_free(warm);
    long max = vms__os_max_map_count();
    if (max <= 0 || max > 300000) exit(77);
    size_t page = vms__os_page_size(), n = 2 * (size_t)max + 2;
    char *p = mmap(NULL, n * page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) exit(77);
    size_t split = 0;
    for (size_t i = 0; i < n; i += 2, split++)
        if (mprotect(p + i * page, page, PROT_NONE) != 0) break;
    if (split < 1000) exit(77);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        if (vms_stack_alloc(VMS_MIB) || errno != ENOMEM) exit(10);
    }
    printf("ENOMEM at the mapping limit\n");
}

TEST(map_limit_reached_is_said_once)
{
    need_guards();
    no_sanitizer();
    char out[8192];
    int st = tst_fork(map_limit_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("vm.max_map_count unreadable or too large");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("child failed (status 0x%x):\n%s", st, out);
    ASSERT_STR_CONTAINS(out, "ENOMEM at the mapping limit\n");
    ASSERT_EQ(tst_count(out, "vmstack: warning: "), 1);
    ASSERT_STR_CONTAINS(out, "the process has reached vm.max_map_count");
}
