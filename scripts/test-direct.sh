#!/usr/bin/env bash
# The direct backend (CMake -DVMSTACK_VMAP=OFF, like the kernel's CONFIG_VMAP_STACK=n):
# configure build-direct, build everything, run the whole test suite. Tests that need
# guard regions skip (exit 77) when vms__arena_guard_method() is "none"; every other test
# must pass. Exit status: non-zero when the configure, the build or any test failed.
#   VMSTACK_WERROR=OFF  build without -Werror      JOBS=N  parallel build and ctest jobs
#   extra arguments go to ctest (for example -L unit or -R '^direct')
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=${JOBS:-2}
cmake -S . -B build-direct -DVMSTACK_VMAP=OFF -DVMSTACK_WERROR="${VMSTACK_WERROR:-ON}"
cmake --build build-direct -j"$jobs"
cd build-direct
ctest --output-on-failure -j"$jobs" "$@"
