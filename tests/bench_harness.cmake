# The benchmark machinery (bench/bench.h, header-only, shared by `vmstack bench` and the
# bench/ programs): medians, ratios, targets and what its counters count. Built in every
# configuration, whether or not the bench/ programs are (VMSTACK_BUILD_BENCH).
vms_test(bench_harness LABELS unit cross)
target_include_directories(test_bench_harness PRIVATE ${PROJECT_SOURCE_DIR}/bench)
target_link_libraries(test_bench_harness PRIVATE m)
