/*
 * direct.c - tests of the direct backend (-DVMSTACK_VMAP=OFF, no guards): stacks are
 * contiguous, an overrun silently corrupts the neighbour below (and the end magic shows
 * it afterwards), and record validation still catches a double free or a foreign
 * pointer. In the default (guarded) build every case skips. Each case runs in a child.
 */
#include "internal.h"
#include "test.h"

#include <sys/mman.h>
#include <sys/syscall.h>

static char out[65536];

static void require_direct(void)
{
    if (strcmp(vms__arena_guard_method(), "none") != 0)
        SKIP("the direct backend is not built in (configure with -DVMSTACK_VMAP=OFF)");
}

static const char *run(void (*fn)(void *), void *arg)
{
    int st = tst_fork(fn, arg, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("child failed (%s %d); its output:\n%s", WIFEXITED(st) ? "exit" : "signal",
                 WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st), out);
    return out;
}

static void init_flags(unsigned flags)
{
    vms_config c;
    memset(&c, 0, sizeof c);
    c.flags = flags;
    ASSERT_EQ(vms_init(&c), 0);
}

#define N 48
static vms_stack *stacks[N];

static int by_base(const void *a, const void *b)
{
    char *x = vms_stack_base(*(vms_stack *const *)a), *y = vms_stack_base(*(vms_stack *const *)b);
    return x < y ? -1 : x > y;
}

/* Allocates N default stacks and returns a pair (*lo, *hi) with lo's top == hi's base. */
static void adjacent_pair(vms_stack **lo, vms_stack **hi)
{
    for (int i = 0; i < N; i++) {
        stacks[i] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(stacks[i]);
    }
    vms_stack *sorted[N];
    memcpy(sorted, stacks, sizeof sorted);
    qsort(sorted, N, sizeof sorted[0], by_base);
    int adjacent = 0;
    *lo = *hi = NULL;
    for (int i = 1; i < N; i++) {
        ASSERT((char *)vms_stack_top(sorted[i - 1]) <= (char *)vms_stack_base(sorted[i]));
        if (vms_stack_top(sorted[i - 1]) == vms_stack_base(sorted[i])) {
            adjacent++;
            if (!*lo) { *lo = sorted[i - 1]; *hi = sorted[i]; }
        }
    }
    /* One block holds 64 default stacks: nearly all are neighbours. */
    ASSERT_GE(adjacent, N / 2);
}

static void contiguous_child(void *arg)
{
    (void)arg;
    vms_stack *lo, *hi;
    adjacent_pair(&lo, &hi);
    /* No byte of any stack is a guard; the whole range is one stack or the other. */
    struct vms__where w;
    char *b = vms_stack_base(hi);
    ASSERT_EQ(vms__arena_where(b, &w), VMS__WHERE_STACK);
    ASSERT_PTR_EQ(w.st, vms__stack_record(hi));
    ASSERT_EQ(vms__arena_where(b - 1, &w), VMS__WHERE_STACK);
    ASSERT_PTR_EQ(w.st, vms__stack_record(lo));
    ASSERT_EQ(vms__arena_where(vms_stack_top(hi), &w) == VMS__WHERE_GUARD, 0);
    int x;
    ASSERT_EQ(vms__arena_where(&x, &w), VMS__WHERE_NONE);
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
    ASSERT(strcmp(s.guard_method, "none") == 0);
    ASSERT_GE(s.stacks_live, N);
    ASSERT_GE(s.reserved_bytes, (size_t)N * 256 * 1024);
    for (int i = 0; i < N; i++) vms_stack_free(stacks[i]);
}

TEST(contiguous)
{
    require_direct();
    run(contiguous_child, NULL);
}

/* The point of the backend: an overrun of hi writes over lo's top, silently. */
static void overrun_child(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK);
    vms_stack *lo, *hi;
    adjacent_pair(&lo, &hi);
    char *lo_top = vms_stack_top(lo);
    memset(lo_top - 256, 0x11, 256);             /* lo's owner's live data */
    ASSERT_EQ(vms__debug_end_check(vms__stack_record(hi)), 0);
    /* hi's task runs 128 bytes past its lowest byte: no fault, no signal. */
    char *hb = vms_stack_base(hi);
    memset(hb - 128, 0xee, 128 + 64);
    for (int i = 1; i <= 128; i++) ASSERT_EQ((unsigned char)lo_top[-i], 0xee);
    ASSERT_EQ((unsigned char)lo_top[-129], 0x11);
    /* Only the end magic tells, after the fact. */
    ASSERT_EQ(vms__debug_end_check(vms__stack_record(hi)), -1);
    ASSERT_EQ(vms__debug_end_check(vms__stack_record(lo)), 0);
    fprintf(stderr, "neighbour corrupted silently\n");
}

TEST(overrun_corrupts_neighbour)
{
    require_direct();
    const char *o = run(overrun_child, NULL);
    ASSERT_STR_CONTAINS(o, "neighbour corrupted silently");
}

/* The same with a real fiber, as the demo's --direct run shows it: a fiber goes 256 bytes
 * past the bottom of its stack (an alloca'd buffer, written whole), nothing faults, the
 * raw stack below it loses its top bytes, and the end magic, overwritten on the way
 * down, reports the fiber only at its next switch, the yield that follows. */
__attribute__((noinline, no_sanitize("address")))
static void overrun_by(size_t extra)
{
    /* vms_stack_remaining leaves the magic's 16 bytes out: a buffer of that much plus
     * 16 plus extra, just below this frame, reaches extra bytes below the stack. */
    size_t n = vms_stack_remaining() + 16 + extra;
    char *buf = __builtin_alloca(n);
    memset(buf, 0xee, n);
    __asm__ volatile("" : : "r"(buf) : "memory");
}

static void overrun_fn(void *arg)
{
    (void)arg;
    overrun_by(256);
    vms_fiber_yield();
    fprintf(stderr, "overrunning fiber ran again\n");
}

static void fiber_overrun_child(void *arg)
{
    (void)arg;
    init_flags(VMS_END_CHECK);
    vms_stack *lo = vms_stack_alloc(0);
    ASSERT_NOT_NULL(lo);
    vms_fiber_attr a = { 0, "overrunner" };
    vms_fiber *f = vms_fiber_create(overrun_fn, NULL, &a);
    ASSERT_NOT_NULL(f);
    /* The next slot of the same block (the first allocation opened several). */
    ASSERT_PTR_EQ(vms_stack_base(vms_fiber_stack(f)), vms_stack_top(lo));
    char *lo_top = vms_stack_top(lo);
    memset(lo_top - 8192, 0x11, 8192);           /* lo's owner's data */
    ASSERT_EQ(vms_fiber_resume(f), VMS_KILLED);
    ASSERT_EQ(vms_fiber_state(f), VMS_KILLED);
    /* Nothing faulted, and lo's top was overwritten before anyone noticed. */
    for (int i = 1; i <= 200; i++) ASSERT_EQ((unsigned char)lo_top[-i], 0xee);
    for (int i = 4096; i <= 8192; i++) ASSERT_EQ((unsigned char)lo_top[-i], 0x11);
    vms_fiber_destroy(f);
    fprintf(stderr, "neighbour corrupted silently\n");
}

TEST(fiber_overrun_reported_at_next_switch)
{
    require_direct();
    const char *o = run(fiber_overrun_child, NULL);
    ASSERT_STR_CONTAINS(o, "vmstack: corrupted stack end detected in fiber \"overrunner\" (id ");
    ASSERT_STR_CONTAINS(o, "end word 0xeeeeeeeeeeeeeeee (expected 0x57ac6e9d57ac6e9d)\n");
    ASSERT_STR_CONTAINS(o, "vmstack: killed fiber \"overrunner\" (id ");
    ASSERT_STR_NOT_CONTAINS(o, "ran again");
    ASSERT_STR_CONTAINS(o, "neighbour corrupted silently");
}

static void double_free_child(void *arg)
{
    (void)arg;
    vms_stack *lo, *hi;
    adjacent_pair(&lo, &hi);
    vms_stack_free(hi);
    vms_stack_free(hi);
}

TEST(double_free)
{
    require_direct();
    int st = tst_fork(double_free_child, NULL, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "vmstack: error: vms_stack_free: double free");
}

static void foreign_child(void *arg)
{
    (void)arg;
    vms_stack *st = vms_stack_alloc(0);
    ASSERT_NOT_NULL(st);
    /* A pointer into a record array that is not a record's start, then a heap pointer. */
    if (arg) vms_stack_free((vms_stack *)((char *)st + 8));
    static char fake[64];
    vms_stack_free((vms_stack *)fake);
}

TEST(foreign_pointer)
{
    require_direct();
    int st = tst_fork(foreign_child, NULL, out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "is not a stack that vmstack handed out");
    /* Inside a record: the record's handle with another tag (stack.c), which is what a
     * stale handle looks like. */
    st = tst_fork(foreign_child, "misaligned", out, sizeof out);
    ASSERT_SIGNALED(st, SIGABRT);
    ASSERT_STR_CONTAINS(out, "this handle is stale), unless 0x");
    ASSERT_STR_CONTAINS(out, "is a corrupted pointer");
}

/* Many stacks of several sizes: more blocks, no overlap, all records valid, reuse. */
static void many_child(void *arg)
{
    (void)arg;
    init_flags(VMS_PAINT);
    enum { M = 600 };
    static vms_stack *s[M];
    for (int i = 0; i < M; i++) {
        s[i] = vms_stack_alloc((size_t)(i % 3 + 1) * 128 * 1024);
        ASSERT_NOT_NULL(s[i]);
        char *top = vms_stack_top(s[i]);
        top[-1] = (char)(i % 255 + 1);  /* non-zero: see docs/debugging.md */
        ASSERT_EQ(vms_stack_max_used(s[i]), 1);
    }
    for (int i = 0; i < M; i++) {
        ASSERT_EQ(((char *)vms_stack_top(s[i]))[-1], (char)(i % 255 + 1));
        struct vms__where w;
        ASSERT_EQ(vms__arena_where(vms_stack_base(s[i]), &w), VMS__WHERE_STACK);
        ASSERT_PTR_EQ(w.st, vms__stack_record(s[i]));
    }
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    ASSERT_GE(st.arenas, 3);
    for (int i = 0; i < M; i++) vms_stack_free(s[i]);
    for (int i = 0; i < M; i++) {
        s[i] = vms_stack_alloc(0);
        ASSERT_NOT_NULL(s[i]);
        ASSERT_EQ(vms_stack_max_used(s[i]), 0);   /* scrubbed: no old data */
        ASSERT_EQ(((char *)vms_stack_top(s[i]))[-1], 0);
    }
    for (int i = 0; i < M; i++) vms_stack_free(s[i]);
}

TEST(many_stacks)
{
    require_direct();
    run(many_child, NULL);
}

/* The direct backend keeps at most 1,024 blocks (direct.c, MAX_BLOCKS). Stacks of
 * 1 GiB, one per block (address space only: glibc maps each lazily), until ENOMEM: it
 * comes when the table is full (vms_get_stats counts 1,024 blocks), the block that did
 * not fit is given back, and a freed stack is handed out again. */
static void block_limit_child(void *arg)
{
    (void)arg;
    static vms_stack *s[1100];
    int n = 0;
    for (;;) {
        if (n == 1100) exit(10);
        errno = 0;
        s[n] = vms_stack_alloc(VMS_MAX_STACK_SIZE);
        if (!s[n]) break;
        n++;
    }
    int e = errno;
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(11);
    printf("%d stacks of 1 GiB, then %s; %zu blocks\n", n, strerror(e), st.arenas);
    if (e != ENOMEM || st.arenas != 1024) exit(12);
    char *base = vms_stack_base(s[n - 1]);
    vms_stack_free(s[n - 1]);
    vms_stack *again = vms_stack_alloc(VMS_MAX_STACK_SIZE);
    if (!again || vms_stack_base(again) != base) exit(13);
    ((volatile char *)vms_stack_top(again))[-1] = 1;
}

TEST(block_limit)
{
    require_direct();
    run(block_limit_child, NULL);
    ASSERT_STR_CONTAINS(out, ", then Cannot allocate memory; 1024 blocks\n");
}

/* madvise of this program's: MADV_NOHUGEPAGE fails with EINVAL when nohuge_fails is set,
 * as on a kernel without transparent huge pages (the backend asks it of every new heap
 * block); everything else goes to the kernel. */
static volatile int nohuge_fails;

int madvise(void *addr, size_t len, int advice)
{
    if (nohuge_fails && advice == MADV_NOHUGEPAGE) {
        errno = EINVAL;
        return -1;
    }
    return (int)syscall(SYS_madvise, addr, len, advice);
}

/* A successful allocation leaves errno as the program had it, also when it opened a
 * new block on the way and a call made there failed (the vmap backend's promise,
 * stack.success_leaves_errno_alone). */
static void errno_kept_child(void *arg)
{
    (void)arg;
    nohuge_fails = 1;
    errno = EDOM;
    vms_stack *a = vms_stack_alloc(0);
    int e1 = errno;
    vms_stack *b = vms_stack_alloc(300 * 1024);   /* a class of its own: a new block */
    int e2 = errno;
    printf("stacks %d %d, errno %d %d (EDOM %d)\n", a != NULL, b != NULL, e1, e2, EDOM);
    vms_stack_free(a);
    vms_stack_free(b);
}

TEST(success_leaves_errno_alone)
{
    require_direct();
    const char *o = run(errno_kept_child, NULL);
    char want[96];
    snprintf(want, sizeof want, "stacks 1 1, errno %d %d (EDOM %d)\n", EDOM, EDOM, EDOM);
    ASSERT_STR_CONTAINS(o, want);
}

/* Under ulimit -v a block of the size its class has grown to may not fit when smaller
 * ones still do: the backend then takes a smaller block, down to one stack, so that
 * ENOMEM comes only when not even one stack is left to have. Before, the first refused
 * block ended the class's allocations: with 600 MiB of room, default stacks ran out
 * after 496 MiB of blocks (16 + 32 + 64 + 128 + 256: the next, 512 MiB, was refused)
 * with about 100 MiB still free. */
static void room_used_child(void *arg)
{
    (void)arg;
    vms_stack *warm = vms_stack_alloc(0);    /* initialized: alternate signal stack */
    if (!warm) exit(9);
    if (!tst_limit_address_space(600 * VMS_MIB))
        exit(77);
    enum { MAX = 4096 };
    static vms_stack *s[MAX];
    int n = 0;
    for (;;) {
        if (n == MAX) exit(10);
        errno = 0;
        s[n] = vms_stack_alloc(0);
        if (!s[n]) break;
        n++;
    }
    int e = errno;
    /* Not even 1 MiB is left to map (a default stack's block is 256 KiB). */
    void *m = mmap(NULL, VMS_MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    printf("%d stacks, then %s; 1 MiB more %s\n", n, strerror(e),
           m == MAP_FAILED ? "refused" : "mapped");
    for (int i = 0; i < n; i++) ((volatile char *)vms_stack_top(s[i]))[-1] = 1;
}

TEST(smaller_blocks_when_a_large_one_does_not_fit)
{
    require_direct();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
    int st = tst_fork(room_used_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77)
        SKIP("setrlimit(RLIMIT_AS) succeeded and set nothing (qemu-user)");
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, " stacks, then Cannot allocate memory; 1 MiB more refused\n");
}

/* vms_thread_create without room for the stack: -ENOMEM and no thread, as on the vmap
 * backend (thread.no_memory_is_enomem, whose mmap injection cannot fail the heap);
 * with room again, a thread starts. The limit is set soft, under an unlimited hard one,
 * so that it can be lifted. */
static void *echo_arg(void *arg) { return arg; }

static void thread_no_room_child(void *arg)
{
    (void)arg;
    pthread_t t;
    void *r = NULL;
    if (vms_thread_create(&t, NULL, echo_arg, NULL) != 0 || pthread_join(t, NULL) != 0)
        exit(9);                                  /* initialized, alternate stacks made */
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f || fscanf(f, "%lu", &pages) != 1) exit(10);
    fclose(f);
    struct rlimit lim;
    if (getrlimit(RLIMIT_AS, &lim) != 0 || lim.rlim_max != RLIM_INFINITY) exit(77);
    lim.rlim_cur = pages * (rlim_t)sysconf(_SC_PAGESIZE) + 2 * VMS_MIB;
    if (setrlimit(RLIMIT_AS, &lim) != 0) exit(11);
    pthread_attr_t a;
    pthread_attr_init(&a);
    /* A class no one used: a new block, larger than a glibc thread arena's 64 MiB heap
     * (a smaller one may come from the address space the earlier thread's arena holds
     * already, which the limit does not refuse). */
    pthread_attr_setstacksize(&a, 128 * VMS_MIB);
    int e = vms_thread_create(&t, &a, echo_arg, (void *)0x1234);
    lim.rlim_cur = RLIM_INFINITY;
    if (setrlimit(RLIMIT_AS, &lim) != 0) exit(12);
    int e2 = vms_thread_create(&t, &a, echo_arg, (void *)0x1234);
    if (e2 == 0 && pthread_join(t, &r) != 0) exit(13);
    printf("no room: %d (-ENOMEM %d); room again: %d, result %p\n", e, -ENOMEM, e2, r);
}

TEST(thread_without_memory_is_enomem)
{
    require_direct();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
    int st = tst_fork(thread_no_room_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("RLIMIT_AS has a hard limit here");
    ASSERT_EXITED(st, 0);
    char want[96];
    snprintf(want, sizeof want, "no room: %d (-ENOMEM %d); room again: 0, result 0x1234\n",
             -ENOMEM, -ENOMEM);
    ASSERT_STR_CONTAINS(out, want);
}

/* aligned_alloc of this program's: with block_limit set, a page-aligned request (a
 * block of stacks; the record arrays are 64-byte aligned) larger than it is refused, as
 * a heap near its limit refuses; each request is counted. Everything else goes to
 * posix_memalign. */
static size_t block_limit;
static unsigned blocks_refused, blocks_given;
/* Set: a block comes filled with 0x5a, as heap memory used before may (every page made
 * resident). */
static int old_heap_data;

void *aligned_alloc(size_t align, size_t size)
{
    if (block_limit && align >= 4096) {
        if (size > block_limit) {
            blocks_refused++;
            errno = ENOMEM;
            return NULL;
        }
        blocks_given++;
    }
    void *p = NULL;
    int e = posix_memalign(&p, align, size);
    if (e) {
        errno = e;
        return NULL;
    }
    if (old_heap_data && align >= 4096) memset(p, 0x5a, size);
    return p;
}

/* Near the heap's limit a class's blocks are refused at the size they would grow to and
 * taken smaller (smaller_blocks_when_a_large_one_does_not_fit). Once one was refused,
 * the next block of the class starts from the size that last fitted: at most one refused
 * request per later block. Before, each new block started at its full size again (up to
 * 256 MiB) and halved down: 4 to 8 refused requests per block here, 150 for 20 blocks. */
static void refused_once_child(void *arg)
{
    (void)arg;
    vms_stack_free(vms_stack_alloc(0));   /* initialized: alternate signal stack */
    enum { M = 20 * 16 };                  /* 20 blocks of 16 stacks of 64 KiB */
    static vms_stack *s[M];
    block_limit = VMS_MIB;
    for (int i = 0; i < M; i++) {
        s[i] = vms_stack_alloc(64 * 1024);  /* a class no one used yet */
        if (!s[i]) exit(10);
        if (i == 0 && blocks_given != 1) exit(11);
        if (i == 0) printf("first block: %u refused\n", blocks_refused);
    }
    block_limit = 0;
    printf("%u blocks, %u refused\n", blocks_given, blocks_refused);
    for (int i = 0; i < M; i++) vms_stack_free(s[i]);
}

TEST(a_refused_block_size_is_not_tried_again_for_each_block)
{
    require_direct();
    const char *o = run(refused_once_child, NULL);
    unsigned first, blocks, refused;
    const char *p = strstr(o, "first block: ");
    ASSERT_NOT_NULL(p);
    ASSERT_EQ(sscanf(p, "first block: %u refused\n%u blocks, %u refused", &first, &blocks,
                     &refused), 3);
    /* 16 MiB, 8, 4 and 2 refused before 1 MiB fitted; 16 stacks per block after it. */
    fprintf(stderr, "%u blocks, %u requests refused (%u for the first)\n", blocks, refused,
            first);
    ASSERT_GE(first, 1);
    ASSERT_GE(blocks, 20);
    ASSERT_LE(refused - first, blocks - 1);
}

/* A new block whose discard fails (injected EIO, as under a filter that refuses madvise)
 * was zeroed whole by hand: 16 MiB here (up to 1 GiB), every page made resident, for the
 * one stack asked for. Now each stack is zeroed at its first hand-out: the block's pages
 * outside the two stacks handed out stay as the heap gave them (fresh from mmap: not
 * resident), and the stacks handed out read zero also where the heap left old bytes
 * (arg: the block comes filled with 0x5a). */
static void unzeroed_block_child(void *arg)
{
    vms_stack_free(vms_stack_alloc(0));   /* initialized: alternate signal stack */
    old_heap_data = arg != NULL;
    vms__os_inject(VMS__OP_MADV_DISCARD, 1, EIO, true);
    vms_stack *s[2];
    for (int i = 0; i < 2; i++)
        if (!(s[i] = vms_stack_alloc(64 * 1024))) exit(10);   /* a class no one used */
    vms__os_inject_clear();
    old_heap_data = 0;
    struct vms__where w;
    if (vms__arena_where(vms_stack_base(s[0]), &w) != VMS__WHERE_STACK) exit(11);
    if (vms__arena_where(vms_stack_base(s[1]), &w) != VMS__WHERE_STACK) exit(12);
    char *lo = w.arena->lo, *hi = w.arena->hi;
    size_t page = vms__os_page_size(), n = (size_t)(hi - lo) / page;
    unsigned char *vec = malloc(n);
    if (!vec || mincore(lo, (size_t)(hi - lo), vec) != 0) exit(13);
    size_t resident = 0, outside = 0, nonzero = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(vec[i] & 1)) continue;
        resident++;
        char *p = lo + i * page;
        bool in = false;
        for (int k = 0; k < 2; k++)
            in |= p >= (char *)vms_stack_base(s[k]) && p < (char *)vms_stack_top(s[k]);
        outside += !in;
    }
    for (int k = 0; k < 2; k++)
        for (size_t j = 0; j < vms_stack_size(s[k]); j++)
            nonzero += ((char *)vms_stack_base(s[k]))[j] != 0;
    printf("block of %zu pages: %zu resident, %zu outside the 2 stacks handed out; %zu bytes "
           "of theirs not zero\n", n, resident, outside, nonzero);
    if (resident == 0) exit(77);   /* mincore sees no resident page (qemu-user) */
    for (int k = 0; k < 2; k++) vms_stack_free(s[k]);
}

TEST(a_block_not_discarded_is_not_zeroed_whole)
{
    require_direct();
    NEED_FAULT_INJECTION();
    int st = tst_fork(unzeroed_block_child, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("mincore sees no resident page");
    fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, ", 0 outside the 2 stacks handed out; 0 bytes of theirs not zero\n");
}

TEST(a_block_not_discarded_hands_out_zeroed_stacks)
{
    require_direct();
    NEED_FAULT_INJECTION();
    int st = tst_fork(unzeroed_block_child, (void *)1, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 77) SKIP("mincore sees no resident page");
    fputs(out, stderr);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, " bytes of theirs not zero\n");
    ASSERT_STR_CONTAINS(out, "; 0 bytes of theirs not zero\n");
}
