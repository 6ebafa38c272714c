/*
 * arena_limit.c - arenas under a tight RLIMIT_AS (ulimit -v). Reserving an aligned arena
 * must not need more address space than the arena, even for a moment, and one arena
 * must not take all there is: vmstack needs one per size class in use (the alternate
 * signal stacks' and the program's), each at least 64 MiB. Every case sets the limit in
 * a child.
 */
#include "internal.h"
#include "test.h"
#include "task_work.h"

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

/* Lets the process map `extra` bytes more than it has mapped now; no case here can run
 * where the limit does not take (qemu-user). */
static void limit_address_space(size_t extra)
{
    if (!tst_limit_address_space(extra))
        SKIP("setrlimit(RLIMIT_AS) succeeded and set nothing (qemu-user)");
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

/* 10 GiB of room hold the two arenas a first stack needs: the first may not take 8 GiB
 * for itself (it takes 4 GiB, at most half the room), and neither reservation may need
 * twice its size at once. The second takes 2 GiB, half the room then left. */
TEST(two_arenas_fit_under_ulimit_v)
{
    need_guards();
    no_sanitizer();
    char out[4096];
    tst_run_ok(two_classes_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "arenas 2 reserved 6 GiB");
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
    char mark = 42;
    if (blocker != (char *)lo) {
        /* lo is mapped already: under qemu-user (7.2) the program's own text is there,
         * right below the range given, and qemu takes MAP_FIXED_NOREPLACE for a hint,
         * mapping elsewhere instead of failing with EEXIST (probed: a page asked for
         * at the program's first address came back at another address, no error).
         * The page already there is then the one below; it must be readable here. */
        if (blocker != MAP_FAILED) munmap(blocker, page);
        unsigned char v;
        if (mincore((void *)lo, page, &v) != 0 || vms__os_probe_noaccess((void *)lo) != 0)
            exit(11);
        blocker = (char *)lo;
        mark = blocker[0];
    } else {
        blocker[0] = mark;
    }
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
    if (blocker[0] != mark) exit(15);        /* still there, still the program's */
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
        SKIP("the kernel (or qemu-user, which picks guest addresses itself) placed the "
             "reservation elsewhere: the fallback was not reached");
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

/* ulimit -v with less than the smallest arena (64 MiB) left, or room for one arena (the
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
    static const size_t rooms[] = { 32 * VMS_MIB, 96 * VMS_MIB };
    for (int i = 0; i < 2; i++) {
        char out[8192];
        tst_run_ok(no_room_child, (void *)(uintptr_t)rooms[i], out, sizeof out);
        ASSERT_STR_CONTAINS(out, i == 0 ? "ENOMEM, arenas 0\n" : "ENOMEM, arenas 1\n");
        ASSERT_EQ(tst_count(out, "vmstack: warning: cannot reserve address space for a new "
                                 "arena (64 MiB, the smallest): RLIMIT_AS (ulimit -v) "
                                 "leaves "), 1);
    }
}

/* ---- vm.max_map_count reached ----------------------------------------------------------- */

/* Splits one read-only reservation page by page until the kernel refuses a split at
 * vm.max_map_count, for the children below. Exits 77 where the limit is unreadable, too
 * large to reach in a test, or not reached. */
static void split_to_the_map_limit(void)
{
    long max = vms__os_max_map_count();
    if (max <= 0 || max > 300000) exit(77);
    size_t page = vms__os_page_size(), n = 2 * (size_t)max + 2;
    char *p = mmap(NULL, n * page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) exit(77);
    size_t split = 0;
    for (size_t i = 0; i < n; i += 2, split++)
        if (mprotect(p + i * page, page, PROT_NONE) != 0) break;
    if (split < 1000) exit(77);
}

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
    split_to_the_map_limit();
    /* qemu-user (7.2) refuses the reservation itself here: at the limit, where the
     * kernel still gives one more mapping, its mmap of a guest range fails with ENOMEM
     * (probed: after the same splitting, a new 64 MiB PROT_NONE mmap succeeds natively
     * and fails under qemu-aarch64). The arena is then never reached. */
    char *one = mmap(NULL, 64 * VMS_MIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                     -1, 0);
    if (one == MAP_FAILED) exit(78);
    munmap(one, 64 * VMS_MIB);
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
    if (WIFEXITED(st) && WEXITSTATUS(st) == 78)
        SKIP("at vm.max_map_count no new mapping at all (qemu-user refuses what the kernel gives)");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("child failed (status 0x%x):\n%s", st, out);
    ASSERT_STR_CONTAINS(out, "ENOMEM at the mapping limit\n");
    ASSERT_EQ(tst_count(out, "vmstack: warning: "), 1);
    ASSERT_STR_CONTAINS(out, "the process has reached vm.max_map_count");
}

/* Past vm.max_map_count the kernel refuses every new mapping (mmap with ENOMEM, as under
 * RLIMIT_AS): a stack of a size not used before then gets no arena at all. The warning
 * blamed RLIMIT_AS where a limit was set ("RLIMIT_AS (ulimit -v) leaves 16384 MiB"), and
 * an exhausted address space where none was, both with room to spare; it names
 * vm.max_map_count. arg: 1 to set an RLIMIT_AS with 16 GiB of room first, 2 to leave
 * 32 MiB under it at the end (less than the arena needs: then both are named). Exits
 * 77 where the limit is unreadable or too large to reach in a test, 78 where the
 * emulator refuses new mappings before the kernel would (qemu-user, see map_limit_child),
 * 79 where the kernel kept granting mappings past the limit. */
static void map_limit_no_arena_child(void *arg)
{
    vms_stack *warm = vms_stack_alloc(0);   /* initialized, the default size's arena made */
    if (!warm) exit(9);
    vms_stack_free(warm);
    if (arg == (void *)1) limit_address_space(16 * GIB);
    split_to_the_map_limit();
    /* The split stops at the limit, where a new mapping is still granted (the kernel
     * refuses one only beyond it): take those, each unlike its neighbours so that none
     * merges, until the kernel refuses. */
    int taken = 0;
    for (;; taken++) {
        if (taken == 64) exit(79);
        char *one = mmap(NULL, vms__os_page_size(), taken % 2 ? PROT_READ : PROT_NONE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (one == MAP_FAILED) break;
    }
    if (taken == 0) exit(78);
    if (arg == (void *)2) limit_address_space(32 * VMS_MIB);
    for (int i = 0; i < 3; i++) {
        errno = 0;
        if (vms_stack_alloc(VMS_MIB) || errno != ENOMEM) exit(10);
    }
    printf("ENOMEM for a new arena past the mapping limit\n");
}

/* The guard method this process's stacks get (its children inherit the environment). */
static const char *guard_method(void)
{
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    return st.guard_method;
}

static void map_limit_no_arena(uintptr_t with_limit)
{
    need_guards();
    no_sanitizer();
    const char *method = guard_method();
    char out[8192];
    int st = tst_fork(map_limit_no_arena_child, (void *)with_limit, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) {
        fputs(out, stderr);   /* a SKIP of the child's (RLIMIT_AS not applied) says why */
        if (!strstr(out, "SKIP")) SKIP("vm.max_map_count unreadable or too large");
        exit(77);
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 78)
        SKIP("at vm.max_map_count no new mapping at all (qemu-user refuses what the kernel gives)");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 79)
        SKIP("the kernel granted 64 mappings past vm.max_map_count");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("child failed (status 0x%x):\n%s", st, out);
    ASSERT_STR_CONTAINS(out, "ENOMEM for a new arena past the mapping limit\n");
    ASSERT_EQ(tst_count(out, "vmstack: warning: "), 1);
    ASSERT_STR_CONTAINS(out, "vmstack: warning: cannot reserve address space for a new arena "
                             "(64 MiB, the smallest): the process has reached vm.max_map_count (");
    ASSERT_STR_CONTAINS(out, " mappings in use");
    ASSERT_STR_NOT_CONTAINS(out, "exhausted");
    if (with_limit == 2)
        ASSERT_STR_CONTAINS(out, "; RLIMIT_AS (ulimit -v) leaves only ");
    else
        ASSERT_STR_NOT_CONTAINS(out, "RLIMIT_AS");
    /* The advice follows the guard method: mprotect guards take two mappings a stack. */
    bool mprotect_guards = !strcmp(method, "mprotect");
    if (mprotect_guards) {
        ASSERT_STR_CONTAINS(out, " mappings in use; mprotect guards cost two mappings per stack)");
        ASSERT_STR_CONTAINS(out, "; raise vm.max_map_count, or run on Linux 6.13+ with "
                                 "VMSTACK_GUARD_METHOD=madvise: stack allocation fails with ENOMEM\n");
    } else {
        ASSERT_STR_NOT_CONTAINS(out, "mprotect guards");
        ASSERT_STR_CONTAINS(out, "; raise vm.max_map_count: stack allocation fails with ENOMEM\n");
    }
}

TEST(map_limit_refusing_an_arena_names_it) { map_limit_no_arena(0); }
TEST(map_limit_refusing_an_arena_under_ulimit_v_names_it) { map_limit_no_arena(1); }
TEST(map_limit_and_ulimit_v_refusing_an_arena_names_both) { map_limit_no_arena(2); }

/* ---- arenas below 4 GiB ----------------------------------------------------------------- */

/* With less room than two 4 GiB arenas (ulimit -v 1 to 8 GiB, as on shared hosts), arenas
 * are smaller, down to 64 MiB, each alone in its 4 GiB lookup-table entry. Before, no
 * program stack could be had there at all. */


struct count { size_t arenas, reserved, layout, largest; };

static void count_arena(struct vms__arena *a, void *ctx)
{
    struct count *c = ctx;
    size_t size = (size_t)(a->hi - a->lo);
    c->arenas++;
    c->reserved += size;
    if (size > c->largest) c->largest = size;
    /* The read-write part (metadata and opened slots) and the reserved rest with the
     * trailing guard; with mprotect guards a stack and a guard per opened slot. */
    c->layout += 2 + (strcmp(vms__arena_guard_method(), "mprotect") == 0
                          ? 2 * (size_t)atomic_load(&a->opened) : 0);
}

/* The statistics against the arenas themselves: live stacks, arenas, reserved bytes and
 * the mappings the layout makes (read by vmstack from /proc/self/maps). */
static void check_stats(size_t live)
{
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(30);
    struct count c = { 0, 0, 0, 0 };
    vms__arena_each(count_arena, &c);
    if (st.stacks_live != live || st.arenas != c.arenas || st.reserved_bytes != c.reserved ||
        st.mappings != c.layout + vms__trace_views()) {
        printf("stats: live %zu (want %zu), arenas %zu (%zu), reserved %zu (%zu), "
               "mappings %zu (%zu)\n", st.stacks_live, live, st.arenas, c.arenas,
               st.reserved_bytes, c.reserved, st.mappings, c.layout + vms__trace_views());
        exit(31);
    }
    if (c.largest >= 4 * GIB) exit(32);
}

/* The whole life of stacks of two sizes under the limit: allocated, written whole with
 * their guards in place, freed and handed out again zeroed; 16 fibers, one of which
 * overflows and is killed alone; the statistics exact throughout; then default stacks
 * until the address space is gone: ENOMEM, and a stack freed then comes back. */
static void small_arenas_child(void *arg)
{
    limit_address_space((size_t)(uintptr_t)arg);
    enum { N = 64, FIBERS = 16, BAD = 5 };
    static const size_t sizes[2] = { 0, 64 * 1024 };
    static vms_stack *s[2][N];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N; i++) {
            s[k][i] = vms_stack_alloc(sizes[k]);
            if (!s[k][i]) {
                printf("vms_stack_alloc(%zu) %d: %s\n", sizes[k], i, strerror(errno));
                exit(10);
            }
            char *base = vms_stack_base(s[k][i]);
            if (vms__os_probe_noaccess(base - 1) != 1 ||
                vms__os_probe_noaccess(base + vms_stack_size(s[k][i])) != 1)
                exit(11);
            memset(base, 0xa5, vms_stack_size(s[k][i]));
        }
    check_stats(2 * N);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N; i++) vms_stack_free(s[k][i]);
    check_stats(0);
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N; i++) {
            s[k][i] = vms_stack_alloc(sizes[k]);
            if (!s[k][i]) exit(12);
            const unsigned char *b = vms_stack_base(s[k][i]);
            for (size_t j = 0; j < vms_stack_size(s[k][i]); j++)
                if (b[j]) {
                    printf("a stack handed out again with 0x%x at byte %zu\n", b[j], j);
                    exit(13);
                }
        }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < N; i++) vms_stack_free(s[k][i]);

    struct job jobs[FIBERS];
    vms_fiber *f[FIBERS];
    for (int i = 0; i < FIBERS; i++) {
        jobs[i] = (struct job){ i, 0, 0 };
        vms_fiber_attr a = { .stack_size = 64 * 1024, .name = i == BAD ? "bad" : "good" };
        f[i] = vms_fiber_create(i == BAD ? bad_fiber : good_fiber, &jobs[i], &a);
        if (!f[i]) exit(14);
    }
    int killed = 0;
    for (int round = 0; round < 5; round++)
        for (int i = 0; i < FIBERS; i++) {
            int st = vms_fiber_state(f[i]);
            if (st == VMS_DONE || st == VMS_KILLED) continue;
            st = vms_fiber_resume(f[i]);
            if (st < 0) exit(15);
            if (st == VMS_KILLED) killed += i == BAD ? 1 : 100;
        }
    for (int i = 0; i < FIBERS; i++) {
        if (i != BAD && (!jobs[i].done || jobs[i].result != job_result(i))) exit(16);
        vms_fiber_destroy(f[i]);
    }
    printf("fibers ok, %d killed\n", killed);
    fflush(stdout);

    static vms_stack *all[1 << 16];
    size_t n = 0;
    for (;;) {
        if (n == sizeof all / sizeof all[0]) exit(17);   /* never ran out? */
        errno = 0;
        all[n] = vms_stack_alloc(0);
        if (!all[n]) break;
        ((volatile char *)vms_stack_top(all[n]))[-1] = 1;
        n++;
    }
    if (errno != ENOMEM) exit(18);
    check_stats(n);
    vms_stack_free(all[n - 1]);
    if (!(all[n - 1] = vms_stack_alloc(0))) exit(19);
    errno = 0;
    if (vms_stack_alloc(0) || errno != ENOMEM) exit(20);
    check_stats(n);
    printf("%zu default stacks, then ENOMEM\n", n);
}

static void small_arenas(size_t room)
{
    need_guards();
    no_sanitizer();   /* and with it ASan, under which no deliberate overflow runs */
    char out[16384];
    tst_run_ok(small_arenas_child, (void *)(uintptr_t)room, out, sizeof out);
    fputs(out, stdout);
    ASSERT_STR_CONTAINS(out, "fibers ok, 1 killed\n");
    ASSERT_EQ(tst_count(out, "vmstack: stack overflow in fiber \"bad\""), 1);
    ASSERT_STR_CONTAINS(out, "default stacks, then ENOMEM\n");
    ASSERT_EQ(tst_count(out, "vmstack: warning: cannot reserve address space for a new "
                             "arena (64 MiB, the smallest): RLIMIT_AS (ulimit -v) leaves "), 1);
    ASSERT_STR_NOT_CONTAINS(out, "vmstack: error");
}

TEST(small_arenas_under_ulimit_v_1g) { small_arenas(GIB); }
TEST(small_arenas_under_ulimit_v_4g) { small_arenas(4 * GIB); }

/* Above a small arena's end, in its 4 GiB chunk, the addresses are the program's: a
 * mapping placed there is not vmstack's. The arena is filled first: a fault above a full
 * arena's end was taken for one in its trailing guard, and reported. arg: "free" or
 * "fault"; anything else checks the lookup alone. */
static void above_end_child(void *arg)
{
    const char *what = arg;
    limit_address_space(GIB);
    vms_stack *first = vms_stack_alloc(0);   /* two arenas: the alternate stacks' too */
    if (!first) exit(10);
    /* One of the two ends inside its chunk: a small arena moved to a chunk of its own
     * starts it; one the kernel placed ends where the other starts, or above it. */
    struct vms__arena *pick[2] = { NULL, NULL };
    size_t chunk = 4 * GIB;
    size_t npick = 0;
    struct vms__where w;
    if (vms__arena_where(vms_stack_base(first), &w) != VMS__WHERE_STACK) exit(11);
    pick[npick++] = w.arena;
    /* The alternate stack's arena: the other one. */
    stack_t ss;
    if (sigaltstack(NULL, &ss) != 0 || vms__arena_where(ss.ss_sp, &w) != VMS__WHERE_STACK)
        exit(12);
    pick[npick++] = w.arena;
    struct vms__arena *a = NULL;
    for (size_t i = 0; i < npick; i++)
        if ((size_t)(pick[i]->hi - pick[i]->lo) < chunk && (uintptr_t)pick[i]->hi % chunk)
            a = pick[i];
    if (!a) exit(13);
    size_t size = vms__arena_class_size(a->cls);
    for (uint32_t i = 0; i <= a->nslots && atomic_load(&a->opened) < a->nslots; i++)
        if (!vms_stack_alloc(size)) exit(14);
    if (atomic_load(&a->opened) != a->nslots) {
        printf("class %u size %zu: %u of %u slots opened\n", a->cls, size,
               atomic_load(&a->opened), a->nslots);
        exit(15);
    }
    /* A page of the program's at or above the end, as low as is free. */
    size_t page = vms__os_page_size();
    char *p = NULL;
    for (char *at = a->hi; (uintptr_t)at % chunk; at += 16 * page) {
        p = mmap(at, page, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        if (p == at) break;
        if (p != MAP_FAILED) munmap(p, page);
        p = NULL;
    }
    if (!p) exit(16);
    if (((uintptr_t)p >> 32) != ((uintptr_t)a->lo >> 32)) exit(17);
    if (vms__arena_where(a->hi - 1, &w) != VMS__WHERE_TRAILER || w.arena != a) exit(18);
    if (vms__arena_where(p, &w) != VMS__WHERE_NONE || vms__arena_record(p)) {
        printf("%p, above the arena [%p, %p), taken for vmstack's\n", (void *)p,
               (void *)a->lo, (void *)a->hi);
        exit(19);
    }
    printf("above the end: not vmstack's\n");
    fflush(stdout);
    if (!strcmp(what, "free")) {
        if (mprotect(p, page, PROT_READ | PROT_WRITE) != 0) exit(20);
        vms_stack_free((vms_stack *)p);
        exit(21);
    }
    if (!strcmp(what, "fault")) {
        *(volatile char *)p = 1;
        exit(22);
    }
}

TEST(above_a_small_arenas_end_is_not_ours)
{
    need_guards();
    no_sanitizer();
    char out[8192];
    tst_run_ok(above_end_child, "where", out, sizeof out);
    ASSERT_STR_CONTAINS(out, "above the end: not vmstack's\n");

    int st = tst_fork(above_end_child, "free", out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "above the end: not vmstack's\n");
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free:");
    ASSERT_STR_CONTAINS(out, "is not a stack that vmstack handed out");

    /* The fault is passed on: the default action, and not a word from vmstack. */
    st = tst_fork(above_end_child, "fault", out, sizeof out);
    ASSERT_SIGNALED(st, SIGSEGV);
    ASSERT_STR_CONTAINS(out, "above the end: not vmstack's\n");
    ASSERT_STR_NOT_CONTAINS(out, "vmstack:");
}

/* ---- arena sizes grow again when the room does ----------------------------------------- */

/* Lowers RLIMIT_AS's soft limit to `extra` bytes more than is mapped now, the hard limit
 * left as it is, so that the child can raise it again; no case here can run where the
 * limit does not take (qemu-user). */
static void limit_soft(size_t extra)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f || fscanf(f, "%lu", &pages) != 1) exit(90);
    fclose(f);
    struct rlimit r;
    if (getrlimit(RLIMIT_AS, &r) != 0) exit(91);
    rlim_t lim = (rlim_t)(pages * vms__os_page_size() + extra);
    if (r.rlim_max != RLIM_INFINITY) exit(77);   /* the case raises it to unlimited */
    r.rlim_cur = lim;
    if (setrlimit(RLIMIT_AS, &r) != 0) exit(91);
    if (getrlimit(RLIMIT_AS, &r) != 0 || r.rlim_cur != lim)
        SKIP("setrlimit(RLIMIT_AS) succeeded and set nothing (qemu-user)");
}

/* The size of the arena that holds s. */
static size_t arena_size_of(vms_stack *s)
{
    struct vms__where w;
    if (!s || vms__arena_where(vms_stack_base(s), &w) != VMS__WHERE_STACK) exit(20);
    return (size_t)(w.arena->hi - w.arena->lo);
}

/* A reservation refused, then more room: the next arena is sized from the room again.
 * The refusal is forced (an injected ENOMEM, as when another thread mapped memory
 * between vmstack's reading of the room and its reservation); the room then grows by
 * a raised limit (arg "raise") or by a mapping of the program's given back ("unmap").
 * The smaller size a refusal made stayed the largest tried for good: 512 MiB arenas
 * with the address space unlimited. Both guard methods: VMSTACK_GUARD_METHOD comes in
 * the environment of the case's second child. */
static void grow_again_child(void *arg)
{
    bool raise = !strcmp(arg, "raise");
    vms_stack *warm = vms_stack_alloc(0);   /* initialized: two arenas made */
    if (!warm) exit(9);
    limit_soft((raise ? 2 * GIB : 3 * GIB) + 64 * VMS_MIB);
    char *big = NULL;
    if (!raise) {
        big = mmap(NULL, GIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (big == MAP_FAILED) exit(10);
    }
    /* 2 GiB and 64 MiB of room: a class's first arena would take 1 GiB; it is refused,
     * 512 MiB is reserved instead. */
    vms__os_inject(VMS__OP_MMAP, 1, ENOMEM, false);
    size_t first = arena_size_of(vms_stack_alloc(64 * 1024));
    vms__os_inject_clear();
    if (first != GIB / 2) {
        printf("the arena after a refused 1 GiB: %zu MiB\n", first >> 20);
        exit(11);
    }
    if (raise) {
        struct rlimit r;
        if (getrlimit(RLIMIT_AS, &r) != 0) exit(12);
        r.rlim_cur = RLIM_INFINITY;
        if (setrlimit(RLIMIT_AS, &r) != 0) exit(13);
    } else if (munmap(big, GIB) != 0) {
        exit(14);
    }
    /* A class not used before: its first arena. Unlimited, 16 GiB (4 GiB in the cross
     * build: VMS__ARENA_FIRST_SHIFT); with about 2.5 GiB of room (3 GiB, less the
     * 512 MiB arena), 1 GiB. */
    size_t next = arena_size_of(vms_stack_alloc(128 * 1024));
    size_t want = raise ? (size_t)1 << VMS__ARENA_FIRST_SHIFT : GIB;
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(15);
    printf("%s guards: arena after the refusal %zu MiB, after the room grew %zu MiB "
           "(want %zu)\n", st.guard_method, first >> 20, next >> 20, want >> 20);
    if (next != want) exit(16);
}

static void grow_again(const char *how)
{
    need_guards();
    no_sanitizer();
    NEED_FAULT_INJECTION();
    for (int mprotect_method = 0; mprotect_method < 2; mprotect_method++) {
        char out[4096];
        if (mprotect_method) setenv("VMSTACK_GUARD_METHOD", "mprotect", 1);
        int st = tst_fork(grow_again_child, (void *)how, out, sizeof out);
        if (mprotect_method) unsetenv("VMSTACK_GUARD_METHOD");
        fputs(out, stdout);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
            SKIP("RLIMIT_AS has a hard limit (the case raises the soft one to unlimited), "
                 "or it was not applied (qemu-user)");
        ASSERT_EXITED(st, 0);
        ASSERT_STR_CONTAINS(out, mprotect_method ? "mprotect guards: " : " guards: ");
    }
}

TEST(arenas_grow_again_after_the_limit_is_raised) { grow_again("raise"); }
TEST(arenas_grow_again_after_a_mapping_is_freed) { grow_again("unmap"); }
