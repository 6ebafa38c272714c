#!/bin/sh
# fuzz.sh - builds the libFuzzer targets of `vmstack checkstack` (fuzz/) with clang and
# runs each for a bounded number of inputs; exits non-zero when one finds a crash, a
# leak, a sanitizer report or an input that runs over 120 s (the reproducer is left in
# the build directory).
#
#   scripts/fuzz.sh                   RUNS=200000 per target, build in build-fuzz
#   RUNS=1000000 BUILD_DIR=/tmp/f scripts/fuzz.sh
#   MAX_TIME=60 scripts/fuzz.sh       stop each target after 60 s as well
#
# Seeds: fuzz/seeds/<format>/, plus objects, shared objects and .su/.ci files compiled
# from tests/checkstack/*.c when gcc is installed, and aarch64 objects (cross gcc or
# clang --target). Needs clang and libFuzzer (Debian:
# clang-14, libclang-rt-14-dev).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$root/build-fuzz}
runs=${RUNS:-200000}
cc=${FUZZ_CC:-clang}

CC=$cc cmake -S "$root" -B "$build" -DVMSTACK_BUILD_FUZZ=ON -DVMSTACK_BUILD_TESTS=OFF \
    -DVMSTACK_BUILD_BENCH=OFF -DVMSTACK_BUILD_TOOLS=OFF -DVMSTACK_BUILD_EXAMPLES=OFF >/dev/null
cmake --build "$build" -j2 --target fuzz_checkstack_su fuzz_checkstack_ci fuzz_checkstack_elf \
    fuzz_checkstack_gcc

# Seeds compiled from the test inputs: real gcc output for every format; for the gcc
# target (a folder's .ci and .su together) the .ci text, a NUL byte, the .su text.
gen="$build/fuzz-seeds"
mkdir -p "$gen/su" "$gen/ci" "$gen/elf" "$gen/gcc"
for src in "$root"/tests/checkstack/*.c; do
    n=$(basename "$src" .c)
    if command -v gcc >/dev/null 2>&1 &&
        gcc -O1 -fstack-usage -fcallgraph-info=su -c "$src" -o "$gen/elf/$n.o" 2>/dev/null; then
        mv "$gen/elf/$n.su" "$gen/su/" 2>/dev/null || true
        mv "$gen/elf/$n.ci" "$gen/ci/" 2>/dev/null || true
        if [ -f "$gen/ci/$n.ci" ] && [ -f "$gen/su/$n.su" ]; then
            { cat "$gen/ci/$n.ci"; printf '\0'; cat "$gen/su/$n.su"; } > "$gen/gcc/$n"
        fi
        # A shared object: symbol values are addresses, not section offsets.
        gcc -O1 -shared -fPIC "$src" -o "$gen/elf/$n.so" 2>/dev/null || true
    fi
    # aarch64 code for its prologue decoder: the cross gcc, or clang's own backend.
    if command -v aarch64-linux-gnu-gcc >/dev/null 2>&1; then
        aarch64-linux-gnu-gcc -O1 -c "$src" -o "$gen/elf/$n-a64.o" 2>/dev/null || true
    else
        "$cc" --target=aarch64-linux-gnu -O1 -c "$src" -o "$gen/elf/$n-a64.o" 2>/dev/null || true
    fi
done

status=0
for t in su ci elf gcc; do
    corpus="$build/fuzz-corpus/$t"
    mkdir -p "$corpus"
    seeds="$gen/$t"
    [ -d "$root/fuzz/seeds/$t" ] && seeds="$seeds $root/fuzz/seeds/$t"
    echo "fuzz.sh: fuzz_checkstack_$t, $runs runs"
    # The first folder collects new inputs; the others are read-only seeds.
    # shellcheck disable=SC2086
    if ! (cd "$build" && "$build/fuzz/fuzz_checkstack_$t" -runs="$runs" \
            ${MAX_TIME:+-max_total_time=$MAX_TIME} -max_len=65536 -timeout=120 \
            -print_final_stats=1 \
            "$corpus" $seeds); then
        echo "fuzz.sh: fuzz_checkstack_$t FAILED (reproducer in $build)" >&2
        status=1
    fi
done
exit $status
