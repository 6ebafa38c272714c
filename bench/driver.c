/*
 * driver.c - vms_bench_main: the groups built into `vmstack bench` and bench/vmstack_bench
 * (stacks always; fibers, threads and the debug options when the library has them,
 * VMS_BENCH_* from bench/bench.cmake), handed to bench_main (bench.h). Both programs compile this file and
 * the scenario files as one translation unit, because bench.h keeps its state (the rows,
 * the pipe to the parent, the counters) in static variables of the unit.
 */
#include "bench.h"

/* The groups built into this binary, in the order they run and print. */
static int bench_tables(struct bench_table *t)
{
    int n = 0;
    t[n].g = bench_stack_groups; t[n++].n = bench_stack_ngroups;
#ifdef VMS_BENCH_FIBERS
    t[n].g = bench_fiber_groups; t[n++].n = bench_fiber_ngroups;
#endif
#ifdef VMS_BENCH_THREADS
    t[n].g = bench_thread_groups; t[n++].n = bench_thread_ngroups;
#endif
#ifdef VMS_BENCH_DEBUG
    t[n].g = bench_debug_groups; t[n++].n = bench_debug_ngroups;
#endif
    return n;
}

int vms_bench_main(int argc, char **argv, const char *prog)
{
    struct bench_table t[4];
    int nt = bench_tables(t);
    return bench_main(argc, argv, prog, t, nt);
}
