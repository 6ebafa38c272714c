/*
 * vmstack_bench.c - the stand-alone benchmark program: the same groups and options as
 * `vmstack bench`, for running without the command or under a profiler. Like
 * tools/cmd_bench.c it compiles the driver and the scenario files as one translation
 * unit (bench.h keeps its state in static variables of the unit).
 */
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

int main(int argc, char **argv)
{
    return vms_bench_main(argc, argv, "vmstack_bench");
}
