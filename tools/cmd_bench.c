/*
 * cmd_bench.c - `vmstack bench`: the benchmark table (vmstack against baselines in the
 * same run) or --json. The scenarios live in bench/ and are compiled into this file
 * (bench/ is on the include path), so the command works whether or not the bench/
 * programs are built; bench/bench.cmake adds VMS_BENCH_FIBERS / _THREADS / _DEBUG here
 * when the library has fibers and threads. The Boost comparison is C++ and lives only in
 * bench/boost_context (docs/benchmarks.md).
 */
#include "tools.h"

#include "driver.c"
#include "stacks.c"
#ifdef VMS_BENCH_FIBERS
#include "fibers.c"
#endif
#ifdef VMS_BENCH_THREADS
#include "threads.c"
#endif
#ifdef VMS_BENCH_DEBUG
#include "debug_opts.c"
#endif

int vms_cmd_bench(int argc, char **argv)
{
    return vms_bench_main(argc, argv, "vmstack bench");
}
