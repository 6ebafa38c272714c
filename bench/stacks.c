/*
 * stacks.c - the stack scenarios (issue 2): warm alloc+free with and without scrubbing,
 * first use of new slots, and a million live stacks, each against malloc/free and
 * against what Boost.Context's protected_fixedsize_stack does (mmap + mprotect of a
 * guard + munmap). Every case touches one byte in the top page of the stack it got, so
 * the memory is real. Each group runs in its own child process (bench_run_child), so
 * vms_init can set that group's configuration; its baselines run in the same child.
 * And vms_trim (trim.*): one trim of 1,024 warm stacks in the shared lists, and one with
 * nothing warm, against madvise(MADV_DONTNEED) of 1,024 mmap'd stacks one call each.
 */
#include "bench.h"
#include "vmstack.h"

#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>

/* The stack every case uses: vmstack's default usable size, and for the mmap baseline
 * vmstack's default guard, so both sides reserve the same address space per stack. */
#define BS_SIZE  ((size_t)256 * 1024)
#define BS_GUARD ((size_t)64 * 1024)

/* Writes one byte just below top (in the top page, where a fresh stack's first frame
 * goes) through a volatile pointer, so neither the write nor the allocation around it
 * can be optimized away. */
static inline void bs_touch_top(void *top)
{
    ((volatile char *)top)[-1] = 1;
}

/* ---- cases ------------------------------------------------------------------------------ */
static void bs_malloc_free(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        char *p = (char *)malloc(BS_SIZE);
        if (!p) bench_die("malloc(%zu) failed", BS_SIZE);
        bs_touch_top(p + BS_SIZE);
        free(p);
    }
}

/* The protected stack: one mapping for guard and stack, the guard made no-access. */
static char *bs_mmap_guarded(void)
{
    char *p = (char *)mmap(NULL, BS_GUARD + BS_SIZE, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return NULL;
    if (mprotect(p, BS_GUARD, PROT_NONE) != 0) {
        int e = errno;
        munmap(p, BS_GUARD + BS_SIZE);
        errno = e;
        return NULL;
    }
    return p;
}

static void bs_mmap_protect_unmap(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        char *p = bs_mmap_guarded();
        if (!p) bench_die("mmap+mprotect: %s", strerror(errno));
        bs_touch_top(p + BS_GUARD + BS_SIZE);
        if (munmap(p, BS_GUARD + BS_SIZE) != 0) bench_die("munmap: %s", strerror(errno));
    }
}

static void bs_vms_alloc_free(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        vms_stack *st = vms_stack_alloc(0);
        if (!st) bench_die("vms_stack_alloc(0): %s", strerror(errno));
        bs_touch_top(vms_stack_top(st));
        vms_stack_free(st);
    }
}

/* Cold cases keep every stack they make, so each operation uses a slot (or a mapping)
 * that was never used before; the group frees them all at the end. */
struct bs_keep {
    void **v;
    long n, cap;
};

static void bs_keep_init(struct bs_keep *k, long cap)
{
    k->v = (void **)calloc((size_t)cap, sizeof *k->v);
    if (!k->v) bench_die("calloc(%ld pointers) failed", cap);
    /* Touch the array now, so its own page faults do not land in a measured window. */
    memset(k->v, 0, (size_t)cap * sizeof *k->v);
    k->n = 0;
    k->cap = cap;
}

static void bs_vms_alloc_keep(void *ctx, long n)
{
    struct bs_keep *k = (struct bs_keep *)ctx;
    for (long i = 0; i < n; i++) {
        if (k->n >= k->cap) bench_die("cold case: more operations than planned");
        vms_stack *st = vms_stack_alloc(0);
        if (!st) bench_die("vms_stack_alloc(0) #%ld: %s", k->n, strerror(errno));
        bs_touch_top(vms_stack_top(st));
        k->v[k->n++] = st;
    }
}

static void bs_mmap_keep(void *ctx, long n)
{
    struct bs_keep *k = (struct bs_keep *)ctx;
    for (long i = 0; i < n; i++) {
        if (k->n >= k->cap) bench_die("cold case: more operations than planned");
        char *p = bs_mmap_guarded();
        if (!p) bench_die("mmap+mprotect #%ld: %s", k->n, strerror(errno));
        bs_touch_top(p + BS_GUARD + BS_SIZE);
        k->v[k->n++] = p;
    }
}

/* ---- groups ----------------------------------------------------------------------------- */
static int bs_init(unsigned flags)
{
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.flags = flags;
    int rc = vms_init(&cfg);
    if (rc != 0) bench_die("vms_init(flags 0x%x): %s", flags, strerror(-rc));
    return rc;
}

/* Warm alloc+free with the default configuration against malloc/free and against
 * mmap+mprotect+munmap. Operations per round differ by case (the mmap baseline costs a
 * fault and three system calls per operation); times are per operation. */
static void bs_group_warm(const struct bench_opts *o)
{
    bs_init(0);
    struct bench_case c[3];
    bench_case_init(&c[0], "vmstack", bs_vms_alloc_free, NULL, bench_ops(o, 200000, 20));
    bench_case_init(&c[1], "malloc", bs_malloc_free, NULL, bench_ops(o, 200000, 20));
    bench_case_init(&c[2], "mmap", bs_mmap_protect_unmap, NULL, bench_ops(o, 2000, 10));
    bench_interleave(c, 3, o->rounds);

    struct bench_row r;
    bench_row_time(&r, "stack.warm.default.malloc", "stack alloc+touch+free, default", &c[0],
                   "malloc+touch+free", &c[1], bench_no_target());
    bench_emit(&r);
    struct bench_target t = bench_no_target();
    t.max_ratio = 0.01;   /* >= 100x faster */
    t.max_sc = 0.05;
    t.max_flt = 0;
    bench_row_time(&r, "stack.warm.default.mmap", "stack alloc+touch+free, default", &c[0],
                   "mmap+mprotect+munmap", &c[2], t);
    bench_emit(&r);
}

/* The same with scrubbing off: nothing left to do but list operations. */
static void bs_group_noscrub(const struct bench_opts *o)
{
    bs_init(VMS_NO_SCRUB);
    struct bench_case c[2];
    bench_case_init(&c[0], "vmstack", bs_vms_alloc_free, NULL, bench_ops(o, 200000, 20));
    bench_case_init(&c[1], "malloc", bs_malloc_free, NULL, bench_ops(o, 200000, 20));
    bench_interleave(c, 2, o->rounds);
    struct bench_row r;
    struct bench_target t = bench_no_target();
    t.max_ratio = 1.5;
    t.max_sc = 0;
    t.max_flt = 0;
    bench_row_time(&r, "stack.warm.noscrub.malloc", "stack alloc+touch+free, VMS_NO_SCRUB",
                   &c[0], "malloc+touch+free", &c[1], t);
    bench_emit(&r);
}

/* First use: every operation takes a slot never used before (nothing is freed until
 * the end), against a fresh guarded mapping per stack. */
static void bs_group_cold(const struct bench_opts *o)
{
    bs_init(0);
    /* Two mappings per kept mmap stack: keep every case under 24000 stacks in all, well
     * inside vm.max_map_count (65530 by default), so that the baseline measures mmap and
     * not the limit; more rounds mean fewer operations per round. */
    long n = bench_ops(o, 1000, 10);
    if (n > 24000 / (o->rounds + 2)) n = 24000 / (o->rounds + 2);
    /* warm-up round + recorded rounds + the counting round (bench_interleave) */
    long cap = n / 10 + 1 + n * ((long)o->rounds + 1);
    struct bs_keep kv, km;
    bs_keep_init(&kv, cap);
    bs_keep_init(&km, cap);
    struct bench_case c[2];
    bench_case_init(&c[0], "vmstack", bs_vms_alloc_keep, &kv, n);
    bench_case_init(&c[1], "mmap", bs_mmap_keep, &km, n);
    bench_interleave(c, 2, o->rounds);
    struct bench_row r;
    bench_row_time(&r, "stack.cold", "stack alloc+touch, new slot", &c[0],
                   "mmap+mprotect+touch", &c[1], bench_no_target());
    bench_emit(&r);
    for (long i = 0; i < kv.n; i++) vms_stack_free((vms_stack *)kv.v[i]);
    for (long i = 0; i < km.n; i++) munmap(km.v[i], BS_GUARD + BS_SIZE);
    free(kv.v);
    free(km.v);
}

/* The vmstack side of a scale row: count live stacks of size bytes (0: the default),
 * one page touched in each, into k; what they added goes into r->v. vmstack is unused
 * until here: the first snapshot is taken before vms_init, whose arena (the one that
 * holds the main thread's alternate signal stack, and the 128 KiB stacks after it) is
 * vmstack's mapping too. vms_init itself is outside the timed window. */
static void bs_scale_vms(struct bench_row *r, struct bs_keep *k, long count, size_t size)
{
    struct bench_mem m0 = bench_mem_now();
    bs_init(0);
    long init_maps = bench_map_count();
    struct bench_window w;
    bench_begin(&w);
    int err = 0;
    for (long i = 0; i < count; i++) {
        vms_stack *st = vms_stack_alloc(size);
        if (!st) { err = errno; break; }
        bs_touch_top(vms_stack_top(st));
        k->v[k->n++] = st;
    }
    bench_end(&w);
    struct bench_mem m1 = bench_mem_now();
    bench_mem_side(&r->v, m0, m1, k->n);
    if (k->n > 0) {
        r->v.ns = (double)w.ns / (double)k->n;
        r->v.sc = w.sc < 0 ? NAN : (double)w.sc / (double)k->n;
        r->v.flt = (double)w.flt / (double)k->n;
    }
    if (m0.maps >= 0 && init_maps >= 0)
        bench_note(r, "vms_init made %ld maps", init_maps - m0.maps);
    if (err)
        bench_note(r, "vmstack stopped at %ld: %s", k->n, strerror(err));
    for (long i = 0; i < k->n; i++) vms_stack_free((vms_stack *)k->v[i]);
    k->n = 0;
}

/* Many live stacks, one page touched in each: the mappings and memory they add. The
 * baseline stops where the kernel refuses (vm.max_map_count: two mappings per stack);
 * everything is freed before the group ends. */
static void bs_group_scale(const struct bench_opts *o)
{
    struct bench_row r;
    long count = bench_scale_row(&r, o, "stack.scale", "live stacks, top page touched",
                                 "mmap+mprotect each");

    struct bs_keep k;
    bs_keep_init(&k, count);
    bs_scale_vms(&r, &k, count, 0);
    struct bench_window w;
    int err;

    /* The baseline reuses the (already touched) pointer array. */
    struct bench_mem m2 = bench_mem_now();
    bench_begin(&w);
    err = 0;
    for (long i = 0; i < count; i++) {
        char *p = bs_mmap_guarded();
        if (!p) { err = errno; break; }
        bs_touch_top(p + BS_GUARD + BS_SIZE);
        k.v[k.n++] = p;
    }
    bench_end(&w);
    struct bench_mem m3 = bench_mem_now();
    bench_mem_side(&r.b, m2, m3, k.n);
    if (k.n > 0) {
        r.b.ns = (double)w.ns / (double)k.n;
        r.b.sc = w.sc < 0 ? NAN : (double)w.sc / (double)k.n;
        r.b.flt = (double)w.flt / (double)k.n;
    }
    if (err)
        bench_note(&r, "baseline stopped at %ld: %s", k.n, strerror(err));
    else
        bench_note(&r, "baseline reached %ld (no limit hit)", k.n);
    for (long i = 0; i < k.n; i++) munmap(k.v[i], BS_GUARD + BS_SIZE);
    free(k.v);

    vms_stats stats;
    if (vms_get_stats(&stats) == 0 && stats.guard_method)
        bench_note(&r, "guard method %s", stats.guard_method);
    r.target = bench_no_target();
    r.target.max_maps = 16;
    r.target.max_bytes = 4.5 * 1024;
    bench_row_judge(&r);
    bench_emit(&r);
}

/* The same at 128 KiB stacks, not the default: what the memory per stack is made of. A
 * 4 KiB page-table page serves 2 MiB of address space, so each stack pays for its slot's
 * share (stack + guard): 640 B at the default 256 + 64 KiB, 384 B at 128 + 64 KiB. The
 * target is judged as at the default size, to show the size at which it holds. */
static void bs_group_scale_small(const struct bench_opts *o)
{
    struct bench_row r;
    long count = bench_scale_row(&r, o, "stack.scale.128k", "live 128 KiB stacks, top page",
                                 "none: 128 KiB is not the default");
    struct bs_keep k;
    bs_keep_init(&k, count);
    bs_scale_vms(&r, &k, count, 128 * 1024);
    free(k.v);
    r.target = bench_no_target();
    r.target.max_maps = 16;
    r.target.max_bytes = 4.5 * 1024;
    bench_row_judge(&r);
    bench_emit(&r);
}

/* ---- vms_trim ----------------------------------------------------------------------------- */
/* The shared lists keep at most this many warm stacks (docs/api.md, "Giving memory back
 * now: vms_trim"; WARM_MAX in src/cache.c): the most one trim finds. */
#define BT_STACKS 1024

/* src/cache.c (internal; both programs that include this file link the static library):
 * the warm stacks in the shared lists, counted under their locks. The set-up checks with
 * it that a round starts from the state its row names. */
size_t vms__cache_shared_warm_listed(void);
/* src/stack.c (internal too): graves, the ended (or ending) threads' stacks that wait for
 * a reap. */
size_t vms__stack_graves(void);

static vms_stack *bt_stacks[BT_STACKS];

/* The set-up thread's own alternate signal stack (vmstack's size class for its own, 512
 * KiB: more than its reporter needs, so no warning). A thread that has one when it first
 * uses vmstack keeps it, and vmstack gives it none of its own. Without it the thread's
 * alternate stack (vmstack's) would wait, once the thread has ended, for the next reap:
 * the timed vms_trim's, which would also scrub it (one process_madvise more, 33 calls
 * per trim, and the time of scrubbing 512 KiB). One thread at a time uses it (joined
 * before the next is made). A thread that has one already (a sanitizer runtime's, which
 * the runtime unmaps at the thread's exit, whichever is installed then) keeps that one:
 * vmstack does too. */
#define BT_ALT_SIZE ((size_t)512 * 1024)
static char *bt_alt;

/* Another thread's frees: it allocates BT_STACKS stacks, touches each one's top page as a
 * first frame does, frees them all and ends. Its frees scrub them in batches of 32 (top
 * pages kept) into its LIFO and the shared lists, and its exit moves its LIFO to the
 * shared lists: all BT_STACKS are warm there, none in this thread's cache, and nothing
 * else waits for a trim (the thread's alternate stack is its own, above). */
static void *bt_free_thread(void *arg)
{
    (void)arg;
    stack_t cur;
    if (sigaltstack(NULL, &cur) != 0) bench_die("sigaltstack: %s", strerror(errno));
    if (cur.ss_flags & SS_DISABLE) {   /* else a sanitizer runtime's, which it frees itself */
        stack_t ss = { .ss_sp = bt_alt, .ss_size = BT_ALT_SIZE, .ss_flags = 0 };
        if (sigaltstack(&ss, NULL) != 0) bench_die("sigaltstack: %s", strerror(errno));
    }
    for (int i = 0; i < BT_STACKS; i++) {
        bt_stacks[i] = vms_stack_alloc(0);
        if (!bt_stacks[i]) bench_die("vms_stack_alloc(0) #%d: %s", i, strerror(errno));
        bs_touch_top(vms_stack_top(bt_stacks[i]));
    }
    for (int i = 0; i < BT_STACKS; i++) vms_stack_free(bt_stacks[i]);
    return NULL;
}

static void bt_make_warm(void)
{
    if (!bt_alt) {
        bt_alt = (char *)mmap(NULL, BT_ALT_SIZE, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (bt_alt == MAP_FAILED) bench_die("mmap: %s", strerror(errno));
    }
    pthread_t t;
    int rc = pthread_create(&t, NULL, bt_free_thread, NULL);
    if (rc != 0) bench_die("pthread_create: %s", strerror(rc));
    pthread_join(t, NULL);
}

/* The set-up of a warm round (the case's pre hook: never timed, never counted). */
static void bt_warm_pre(void *ctx)
{
    (void)ctx;
    bt_make_warm();
    size_t w = vms__cache_shared_warm_listed();
    if (w != BT_STACKS) bench_die("trim set-up: %zu warm stacks in the shared lists, not %d", w, BT_STACKS);
    size_t g = vms__stack_graves();
    if (g != 0) bench_die("trim set-up: %zu graves wait for a reap (the trim's), not none", g);
}

/* The check of an idle round: what the last trim left, nothing warm. */
static void bt_none_pre(void *ctx)
{
    (void)ctx;
    size_t w = vms__cache_shared_warm_listed();
    if (w != 0) bench_die("trim set-up: %zu warm stacks in the shared lists, not none", w);
}

static void bt_trim(void *ctx, long n)
{
    (void)ctx;
    for (long i = 0; i < n; i++) {
        int rc = vms_trim();
        if (rc != 0) bench_die("vms_trim: %s", strerror(-rc));
    }
}

/* The baseline: what a program keeping its own pool of BT_STACKS mmap'd stacks writes for
 * the same effect, one madvise(MADV_DONTNEED) per stack over its usable part (the range
 * vmstack drops per stack), not knowing which were touched. */
struct bt_pool { char *p[BT_STACKS]; };

static void bt_pool_init(struct bt_pool *b)
{
    for (int i = 0; i < BT_STACKS; i++) {
        b->p[i] = bs_mmap_guarded();
        if (!b->p[i]) bench_die("mmap+mprotect #%d: %s", i, strerror(errno));
    }
}

static void bt_pool_free(struct bt_pool *b)
{
    for (int i = 0; i < BT_STACKS; i++) munmap(b->p[i], BS_GUARD + BS_SIZE);
}

/* Each stack's top page touched, as the other thread's stacks left theirs (not timed). */
static void bt_pool_touch(void *ctx)
{
    struct bt_pool *b = (struct bt_pool *)ctx;
    for (int i = 0; i < BT_STACKS; i++) bs_touch_top(b->p[i] + BS_GUARD + BS_SIZE);
}

static void bt_pool_drop(void *ctx, long n)
{
    struct bt_pool *b = (struct bt_pool *)ctx;
    for (long k = 0; k < n; k++)
        for (int i = 0; i < BT_STACKS; i++)
            if (madvise(b->p[i] + BS_GUARD, BS_SIZE, MADV_DONTNEED) != 0)
                bench_die("madvise(MADV_DONTNEED): %s", strerror(errno));
}

/* The note of trim.warm: the time per stack of both sides (each drops 1,024). */
static void bt_note(struct bench_row *r)
{
    char v[32], b[32];
    bench_fmt_num(v, sizeof v, r->v.ns / BT_STACKS, 1);
    bench_fmt_num(b, sizeof b, r->b.ns / BT_STACKS, 1);
    bench_note(r, "per stack: vmstack %s ns, baseline %s ns", v, b);
}

/* The note of trim.none: the baseline's time per madvise only; a trim with nothing warm
 * touches no stack, so its time divided by 1,024 would be no cost of anything. */
static void bt_note_none(struct bench_row *r)
{
    char b[32];
    bench_fmt_num(b, sizeof b, r->b.ns / BT_STACKS, 1);
    bench_note(r, "per madvise: baseline %s ns; vmstack touches no stack (no per-stack figure)", b);
}

/* One vms_trim finding 1,024 warm stacks in the shared lists, which another thread's
 * frees put there before each round (not timed), against dropping 1,024 mmap'd stacks'
 * touched top pages by hand. One trim per round: each needs its own set-up. */
static void bt_group_warm(const struct bench_opts *o)
{
    (void)o;
    bs_init(0);
    struct bt_pool *pool = (struct bt_pool *)calloc(1, sizeof *pool);
    if (!pool) bench_die("calloc failed");
    bt_pool_init(pool);
    struct bench_case c[2];
    bench_case_init(&c[0], "vmstack", bt_trim, NULL, 1);
    c[0].pre = bt_warm_pre;
    bench_case_init(&c[1], "madvise", bt_pool_drop, pool, 1);
    c[1].pre = bt_pool_touch;
    bench_interleave(c, 2, o->rounds);
    struct bench_row r;
    bench_row_time(&r, "trim.warm.madvise", "trim, 1,024 warm stacks", &c[0],
                   "madvise x1024, top page each", &c[1], bench_no_target());
    bt_note(&r);
    bench_note(&r, "one trim per round, after another thread freed 1,024 touched stacks");
    bench_emit(&r);
    bt_pool_free(pool);
    free(pool);
}

/* vms_trim with nothing warm: the shared lists hold the 1,024 stacks a trim left cold,
 * and nothing else is cached. Against the same hand-written loop over 1,024 mmap'd stacks
 * with nothing resident (a pool that does not track which stacks were touched). */
static void bt_group_none(const struct bench_opts *o)
{
    bs_init(0);
    bt_make_warm();
    int rc = vms_trim();
    if (rc != 0) bench_die("vms_trim: %s", strerror(-rc));
    struct bt_pool *pool = (struct bt_pool *)calloc(1, sizeof *pool);
    if (!pool) bench_die("calloc failed");
    bt_pool_init(pool);
    struct bench_case c[2];
    bench_case_init(&c[0], "vmstack", bt_trim, NULL, bench_ops(o, 2000, 10));
    c[0].pre = bt_none_pre;
    bench_case_init(&c[1], "madvise", bt_pool_drop, pool, bench_ops(o, 10, 10));
    bench_interleave(c, 2, o->rounds);
    struct bench_row r;
    bench_row_time(&r, "trim.none.madvise", "trim, nothing warm", &c[0],
                   "madvise x1024, none resident", &c[1], bench_no_target());
    bt_note_none(&r);
    bench_emit(&r);
    bt_pool_free(pool);
    free(pool);
}

const struct bench_group bench_stack_groups[] = {
    { "stack.warm", "alloc+touch+free, default settings, vs malloc and mmap+mprotect+munmap",
      bs_group_warm, 0 },
    { "stack.noscrub", "alloc+touch+free with VMS_NO_SCRUB, vs malloc", bs_group_noscrub,
      VMS_NO_SCRUB },
    { "stack.cold", "first use of new slots vs new mmap+mprotect stacks", bs_group_cold, 0 },
    { "stack.scale", "live stacks: mappings and memory added, vs mmap+mprotect each",
      bs_group_scale, 0 },
    { "stack.scale.128k", "live 128 KiB stacks (not the default): mappings and memory added",
      bs_group_scale_small, 0 },
    { "trim.warm", "vms_trim of 1,024 warm stacks vs madvise(MADV_DONTNEED) of 1,024 mmap'd stacks",
      bt_group_warm, 0 },
    { "trim.none", "vms_trim with nothing warm vs the same madvise loop, nothing resident",
      bt_group_none, 0 },
};
const int bench_stack_ngroups = (int)(sizeof bench_stack_groups / sizeof bench_stack_groups[0]);
