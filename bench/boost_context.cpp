/*
 * boost_context.cpp - vmstack fibers against Boost.Context, in the same process and the
 * same interleaved rounds: switch against jump_fcontext; create + run to completion +
 * destroy against callcc on protected_fixedsize_stack and pooled_fixedsize_stack
 * (default settings and VMS_NO_SCRUB); a million suspended fibers against suspended
 * callcc continuations on protected stacks. C++, so it is its own program
 * (vmstack_bench_boost, built when CMake finds Boost.Context) and not part of `vmstack
 * bench`; it prints the same table and JSON through bench.h.
 */
#include "bench.h"
#include "vmstack.h"

#include <boost/context/continuation.hpp>
#include <boost/context/detail/fcontext.hpp>
#include <boost/context/pooled_fixedsize_stack.hpp>
#include <boost/context/protected_fixedsize_stack.hpp>

#include <cfenv>
#include <cmath>
#include <new>
#include <utility>
#include <vector>

namespace ctx = boost::context;
namespace fc = boost::context::detail;

/* vmstack's default usable stack size; every Boost stack gets the same. */
static const std::size_t BB_SIZE = 256 * 1024;

static void bb_init(unsigned flags)
{
    vms_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.flags = flags;
    int rc = vms_init(&cfg);
    if (rc != 0) bench_die("vms_init(flags 0x%x): %s", flags, strerror(-rc));
}

/* A shallow fiber body: a little work on its stack, kept alive through bench_sink. */
static void bb_shallow(std::uintptr_t arg)
{
    volatile std::uint64_t local[8];
    for (int i = 0; i < 8; i++) local[i] = arg + (std::uint64_t)i;
    bench_sink += local[7];
}

/* ---- switch ----------------------------------------------------------------------------- */
static void bb_vms_yield_loop(void *)
{
    for (;;) vms_fiber_yield();
}

static void bb_vms_switch(void *c, long n)
{
    vms_fiber *f = static_cast<vms_fiber *>(c);
    for (long i = 0; i < n / 2; i++)
        if (vms_fiber_resume(f) != VMS_SUSPENDED) bench_die("switch: resume did not suspend");
}

static void bb_fc_loop(fc::transfer_t t)
{
    for (;;) t = fc::jump_fcontext(t.fctx, nullptr);
}

static void bb_fc_switch(void *c, long n)
{
    fc::fcontext_t *f = static_cast<fc::fcontext_t *>(c);
    for (long i = 0; i < n / 2; i++) *f = fc::jump_fcontext(*f, nullptr).fctx;
}

/* The floating-point exception flags are cleared before each round of this case. */
static void bb_clear_fp_flags(void *)
{
    std::feclearexcept(FE_ALL_EXCEPT);
}

/* jump_fcontext loads the target's whole MXCSR at every switch. Once the two sides'
 * differ in the sticky exception flags alone (the main side did inexact arithmetic, as
 * this program's own bookkeeping does between rounds, and the fiber was made before or
 * does none), every switch changes MXCSR, which costs far more than the rest of the
 * switch on some CPUs (about 56 ns on the project's VM). vmstack loads it only when the
 * control bits differ (docs/api.md). Two Boost cases: as it comes (the flags differ),
 * and its best case, a fiber made and run with the flags cleared (equal); the target is
 * judged on the best case. */
static void bb_group_switch(const struct bench_opts *o)
{
    bb_init(0);
    vms_fiber *f = vms_fiber_create(bb_vms_yield_loop, nullptr, nullptr);
    if (!f) bench_die("vms_fiber_create: %s", strerror(errno));
    ctx::protected_fixedsize_stack salloc(BB_SIZE);
    ctx::stack_context sctx = salloc.allocate();
    fc::fcontext_t fctx = fc::make_fcontext(sctx.sp, sctx.size, bb_fc_loop);
    fctx = fc::jump_fcontext(fctx, nullptr).fctx;   /* now waiting in its loop */
    std::feclearexcept(FE_ALL_EXCEPT);
    ctx::stack_context sctx_eq = salloc.allocate();
    fc::fcontext_t fctx_eq = fc::make_fcontext(sctx_eq.sp, sctx_eq.size, bb_fc_loop);
    fctx_eq = fc::jump_fcontext(fctx_eq, nullptr).fctx;
    struct bench_case c[3];
    bench_case_init(&c[0], "vmstack", bb_vms_switch, f, bench_ops_pairs(o, 2000000, 20));
    bench_case_init(&c[1], "fcontext", bb_fc_switch, &fctx, bench_ops_pairs(o, 2000000, 20));
    bench_case_init(&c[2], "fcontext, flags equal", bb_fc_switch, &fctx_eq,
                    bench_ops_pairs(o, 2000000, 20));
    c[2].pre = bb_clear_fp_flags;
    bench_interleave(c, 3, o->rounds);
    struct bench_row r;
    bench_row_time(&r, "boost.switch.fcontext", "fiber switch (resume+yield / 2)", &c[0],
                   "Boost jump_fcontext, flags differ", &c[1], bench_no_target());
    bench_note(&r, "the exception flags differ between the two sides: every Boost switch "
               "changes MXCSR; vmstack's keeps it");
    bench_emit(&r);
    struct bench_target t = bench_no_target();
    t.max_ratio = 1.0;
    bench_row_time(&r, "boost.switch.fcontext_equal", "fiber switch (resume+yield / 2)",
                   &c[0], "Boost jump_fcontext, flags equal", &c[2], t);
    bench_note(&r, "Boost's best case: its fiber made and run with the flags cleared");
    bench_emit(&r);
    vms_fiber_destroy(f);
    /* The fcontext loops never return; their stacks are released without unwinding them
     * (they hold nothing to destroy). */
    salloc.deallocate(sctx_eq);
    salloc.deallocate(sctx);
}

/* ---- create + run + destroy ------------------------------------------------------------- */
static void bb_vms_fiber_fn(void *arg)
{
    bb_shallow((std::uintptr_t)arg);
}

static void bb_vms_create(void *, long n)
{
    for (long i = 0; i < n; i++) {
        vms_fiber *f = vms_fiber_create(bb_vms_fiber_fn, (void *)(std::uintptr_t)i, nullptr);
        if (!f) bench_die("vms_fiber_create: %s", strerror(errno));
        int st = vms_fiber_resume(f);
        if (st != VMS_DONE) bench_die("create: fiber ended in state %d, not DONE", st);
        vms_fiber_destroy(f);
    }
}

template <class Alloc> static void bb_callcc(Alloc &salloc, long n)
{
    for (long i = 0; i < n; i++) {
        ctx::continuation c = ctx::callcc(std::allocator_arg, salloc,
                                          [i](ctx::continuation &&caller) {
                                              bb_shallow((std::uintptr_t)i);
                                              return std::move(caller);
                                          });
        if (c) bench_die("callcc: the continuation did not complete");
    }
}

static void bb_callcc_protected(void *c, long n)
{
    bb_callcc(*static_cast<ctx::protected_fixedsize_stack *>(c), n);
}

static void bb_callcc_pooled(void *c, long n)
{
    bb_callcc(*static_cast<ctx::pooled_fixedsize_stack *>(c), n);
}

static void bb_group_create(const struct bench_opts *o, unsigned flags)
{
    bb_init(flags);
    ctx::protected_fixedsize_stack prot(BB_SIZE);
    ctx::pooled_fixedsize_stack pool(BB_SIZE);
    struct bench_case c[3];
    bench_case_init(&c[0], "vmstack", bb_vms_create, nullptr, bench_ops(o, 200000, 20));
    bench_case_init(&c[1], "pooled", bb_callcc_pooled, &pool, bench_ops(o, 200000, 20));
    bench_case_init(&c[2], "protected", bb_callcc_protected, &prot, bench_ops(o, 2000, 10));
    bool noscrub = flags & VMS_NO_SCRUB;
    bench_interleave(c, noscrub ? 2 : 3, o->rounds);
    const char *what = noscrub ? "fiber create+run+destroy, VMS_NO_SCRUB"
                               : "fiber create+run+destroy, default";
    struct bench_row r;
    struct bench_target t = bench_no_target();
    t.max_ratio = noscrub ? 1.0 : 3.0;
    bench_row_time(&r, noscrub ? "boost.create.noscrub.pooled" : "boost.create.default.pooled",
                   what, &c[0], "callcc, pooled_fixedsize", &c[1], t);
    bench_emit(&r);
    if (!noscrub) {
        t = bench_no_target();
        t.max_ratio = 0.01;   /* >= 100x faster */
        t.max_sc = 0.05;
        t.max_flt = 0;
        bench_row_time(&r, "boost.create.default.protected", what, &c[0],
                       "callcc, protected_fixedsize", &c[2], t);
        bench_emit(&r);
    }
}

static void bb_group_create_default(const struct bench_opts *o) { bb_group_create(o, 0); }
static void bb_group_create_noscrub(const struct bench_opts *o) { bb_group_create(o, VMS_NO_SCRUB); }

/* ---- a million suspended fibers ------------------------------------------------------------ */
static void bb_vms_suspend(void *arg)
{
    bb_shallow((std::uintptr_t)arg);
    vms_fiber_yield();
}

static void bb_group_scale(const struct bench_opts *o)
{
    struct bench_row r;
    long count = bench_scale_row(&r, o, "boost.scale", "suspended fibers",
                                 "callcc, protected_fixedsize");

    std::vector<vms_fiber *> fibers((std::size_t)count, nullptr);   /* touched: zeroed */
    long made = 0;
    int err = 0;
    /* Before vms_init: its arena (the main thread's alternate signal stack) is vmstack's
     * mapping too. vms_init itself is outside the timed window. */
    struct bench_mem m0 = bench_mem_now();
    bb_init(0);
    long init_maps = bench_map_count();
    struct bench_window w;
    bench_begin(&w);
    for (; made < count; made++) {
        vms_fiber *f = vms_fiber_create(bb_vms_suspend, nullptr, nullptr);
        if (!f) { err = errno; break; }
        if (vms_fiber_resume(f) != VMS_SUSPENDED) bench_die("scale: fiber did not suspend");
        fibers[(std::size_t)made] = f;
    }
    bench_end(&w);
    struct bench_mem m1 = bench_mem_now();
    bench_mem_side(&r.v, m0, m1, made);
    if (made > 0) {
        r.v.ns = (double)w.ns / (double)made;
        r.v.sc = w.sc < 0 ? NAN : (double)w.sc / (double)made;
        r.v.flt = (double)w.flt / (double)made;
    }
    if (m0.maps >= 0 && init_maps >= 0)
        bench_note(&r, "vms_init made %ld maps", init_maps - m0.maps);
    if (err) bench_note(&r, "vmstack stopped at %ld: %s", made, strerror(err));
    for (long i = 0; i < made; i++) vms_fiber_destroy(fibers[(std::size_t)i]);
    std::vector<vms_fiber *>().swap(fibers);

    /* Baseline: continuations suspended inside their function, until count or until the
     * allocator throws (mmap refused at the mapping limit). Note that Boost ignores a
     * failed mprotect in release builds (BOOST_ASSERT only), so the last stacks before
     * the limit may have no guard. */
    /* Constructed (empty), so the array is resident before the first snapshot, as the
     * vmstack side's is: reserve() alone would leave its pages to be faulted in, and
     * counted, inside the baseline's window. */
    std::vector<ctx::continuation> conts((std::size_t)count);
    ctx::protected_fixedsize_stack prot(BB_SIZE);
    made = 0;
    bool stopped = false;
    struct bench_mem m2 = bench_mem_now();
    bench_begin(&w);
    try {
        for (; made < count; made++) {
            conts[(std::size_t)made] = ctx::callcc(std::allocator_arg, prot,
                                           [](ctx::continuation &&caller) {
                                               bb_shallow(1);
                                               caller = caller.resume();
                                               return std::move(caller);
                                           });
        }
    } catch (const std::bad_alloc &) {
        stopped = true;
    }
    bench_end(&w);
    struct bench_mem m3 = bench_mem_now();
    bench_mem_side(&r.b, m2, m3, made);
    if (made > 0) {
        r.b.ns = (double)w.ns / (double)made;
        r.b.sc = w.sc < 0 ? NAN : (double)w.sc / (double)made;
        r.b.flt = (double)w.flt / (double)made;
    }
    bench_note(&r, "baseline %s %ld%s", stopped ? "stopped at" : "reached", made,
               stopped ? ": std::bad_alloc" : " (no limit hit)");
    /* A guarded stack is two mappings (guard and stack); far fewer means mprotect failed
     * and Boost went on without a guard (its check is a BOOST_ASSERT only), and the
     * unguarded stacks merged into one another. */
    if (!std::isnan(r.b.maps) && r.b.maps < 2.0 * (double)made - 8)
        bench_note(&r, "only %.0f mappings for %ld Boost stacks: mprotect failed and many have no guard",
                   r.b.maps, made);
    /* Destroying a suspended continuation unwinds its stack and frees it. */
    conts.clear();
    vms_stats stats;
    if (vms_get_stats(&stats) == 0 && stats.guard_method)
        bench_note(&r, "guard method %s", stats.guard_method);
    r.target = bench_no_target();
    r.target.max_maps = 16;
    r.target.max_bytes = 4.5 * 1024;
    bench_row_judge(&r);
    bench_emit(&r);
}

static const struct bench_group bb_groups[] = {
    { "boost.switch", "switch (resume+yield / 2) vs Boost jump_fcontext", bb_group_switch, 0 },
    { "boost.create", "create+run+destroy, default, vs callcc on pooled and protected stacks",
      bb_group_create_default, 0 },
    { "boost.noscrub", "create+run+destroy with VMS_NO_SCRUB vs callcc on pooled stacks",
      bb_group_create_noscrub, VMS_NO_SCRUB },
    { "boost.scale", "suspended fibers vs suspended callcc continuations (protected stacks)",
      bb_group_scale, 0 },
};

int main(int argc, char **argv)
{
    struct bench_table t;
    t.g = bb_groups;
    t.n = (int)(sizeof bb_groups / sizeof bb_groups[0]);
    return bench_main(argc, argv, "vmstack_bench_boost", &t, 1);
}
