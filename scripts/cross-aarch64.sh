#!/usr/bin/env bash
# Builds vmstack for aarch64 with cmake/aarch64-linux-gnu.cmake in build-aarch64/ and
# runs the tests labelled `cross` (the context switch, fibers, overflow kills) under
# qemu-user. Needs Debian's gcc-aarch64-linux-gnu and qemu-user. libunwind is off: the
# host's libunwind is not an aarch64 library; the frame-pointer walk is used instead.
# Arenas start at 4 GiB here (VMSTACK_ARENA_FIRST_SHIFT=32, not 16 GiB): qemu-user 7.2
# walks the flags of every guest page a process ever reserved at each exit (its plugin
# exit hook flushes the translation cache), and with two 16 GiB arenas that cost every
# test process and forked child about 1.5 s of CPU.
# The cases run JOBS (default 2) at a time, as in scripts/test-all.sh.
# Usage: scripts/cross-aarch64.sh [extra ctest arguments]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build="$src/build-aarch64"
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || {
        echo "cross-aarch64: $tool not found (Debian: apt-get install gcc-aarch64-linux-gnu qemu-user)" >&2
        exit 1
    }
done
cmake -S "$src" -B "$build" \
    -DCMAKE_TOOLCHAIN_FILE="$src/cmake/aarch64-linux-gnu.cmake" \
    -DVMSTACK_LIBUNWIND=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo -DVMSTACK_ARENA_FIRST_SHIFT=32
cmake --build "$build" -j"$(nproc)"
cd "$build"
ctest -L cross -j"${JOBS:-2}" --output-on-failure "$@"
