/*
 * vmstack_bench.c - the stand-alone benchmark program: the same groups and options as
 * `vmstack bench` (driver.c), for running without the command or under a profiler.
 */
#include "bench.h"

int main(int argc, char **argv)
{
    return vms_bench_main(argc, argv, "vmstack_bench");
}
