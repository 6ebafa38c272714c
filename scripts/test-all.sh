#!/usr/bin/env bash
# The whole test suite, as CI runs it (`make test` and .ci/run call this):
#   deps -> gcc build (-Werror) + every test -> the same tests with mprotect guards forced
#   -> clang build (-Werror) + tests -> ASan+UBSan build + tests -> TSan build + tests
#   -> the direct backend (VMSTACK_VMAP=OFF) + tests -> a Release build (-O3: its own
#   warnings, e.g. -Wformat-truncation; built, not run) -> aarch64 cross build under
#   qemu-user (label cross)
#   -> Valgrind memcheck (label memcheck) -> the contract check -> a bounded fuzz run.
# Every step runs even when an earlier one failed; the exit status is non-zero if any did.
# Set VMSTACK_STEPS="gcc asan" (for example) to run only some steps.
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
steps=${VMSTACK_STEPS:-"deps gcc mprotect clang asan tsan direct release cross memcheck contract fuzz"}
jobs=${JOBS:-2}
failed=()
passed=0
total_pass=0
total_fail=0

note() { printf '\n==== %s ====\n' "$*"; }

# Adds the counts of the last ctest summary line in log to the totals.
count_ctest() {
  local line
  line=$(grep -E 'tests passed, [0-9]+ tests? failed out of [0-9]+' "$1" | tail -1)
  if [ -n "$line" ]; then
    local f n
    f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    n=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\2/' <<<"$line")
    total_fail=$((total_fail + f))
    total_pass=$((total_pass + n - f))
  fi
}

# ctest wrapper: runs, echoes, and adds its counts to the totals.
run_ctest() {
  local dir=$1; shift
  local log
  log=$(mktemp)
  (cd "$dir" && ctest --output-on-failure -j"$jobs" "$@") 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  count_ctest "$log"
  rm -f "$log"
  return "$rc"
}

configure_build() {
  local dir=$1; shift
  cmake -S "$root" -B "$dir" -DVMSTACK_WERROR=ON "$@" >/dev/null && cmake --build "$dir" -j"$jobs" 2>&1 | grep -E "warning|error|Error" ; return "${PIPESTATUS[0]}"
}

step() {
  local name=$1; shift
  case " $steps " in *" $name "*) ;; *) return 0 ;; esac
  note "$name"
  local t0=$SECONDS
  if "$@"; then
    passed=$((passed + 1))
    echo "---- $name: ok ($((SECONDS - t0)) s)"
  else
    failed+=("$name")
    echo "---- $name: FAILED ($((SECONDS - t0)) s)"
  fi
}

s_deps()     { bash scripts/deps.sh; }
s_gcc()      { CC=gcc configure_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo && run_ctest build; }
s_mprotect() { VMSTACK_GUARD_METHOD=mprotect run_ctest build -L "unit|death|examples" -E '^[a-z_]+-mprotect\.'; }
s_clang()    { CC=clang CXX=clang++ configure_build out/clang -DCMAKE_BUILD_TYPE=Debug && run_ctest out/clang -L "unit|death|examples"; }
s_asan()     { CC=gcc configure_build out/asan -DCMAKE_BUILD_TYPE=Debug -DVMSTACK_SANITIZE=address,undefined \
                 -DVMSTACK_BUILD_BENCH=OFF && ASAN_OPTIONS=detect_leaks=0 run_ctest out/asan -L "unit|death|cli|examples"; }
s_tsan()     { CC=clang CXX=clang++ configure_build out/tsan -DCMAKE_BUILD_TYPE=Debug -DVMSTACK_SANITIZE=thread \
                 -DVMSTACK_BUILD_BENCH=OFF && run_ctest out/tsan -L "unit|death|cli|examples"; }
s_direct()   { CC=gcc configure_build out/direct -DVMSTACK_VMAP=OFF -DVMSTACK_BUILD_BENCH=OFF && run_ctest out/direct -L "unit|death|cli|examples"; }
s_release()  { CC=gcc configure_build out/release -DCMAKE_BUILD_TYPE=Release; }
s_cross()    { local log rc; log=$(mktemp); JOBS=$jobs bash scripts/cross-aarch64.sh 2>&1 | tee "$log"; rc=${PIPESTATUS[0]}
               count_ctest "$log"; rm -f "$log"; return "$rc"; }
s_memcheck() { CC=gcc configure_build out/valgrind -DCMAKE_BUILD_TYPE=Debug -DVMSTACK_VALGRIND=ON -DVMSTACK_LIBUNWIND=OFF \
                 -DVMSTACK_BUILD_BENCH=OFF "-DVMSTACK_TEST_WRAPPER=valgrind;-q;--error-exitcode=99;--leak-check=no" \
               && run_ctest out/valgrind -L memcheck; }
s_contract() { if [ -x ../shared/contract/check ]; then ../shared/contract/check "$root"; else echo "no ../shared/contract/check here"; fi; }
s_fuzz()     { if [ -x scripts/fuzz.sh ]; then bash scripts/fuzz.sh; else echo "no fuzz script yet"; fi; }

step deps s_deps
step gcc s_gcc
step mprotect s_mprotect
step clang s_clang
step asan s_asan
step tsan s_tsan
step direct s_direct
step release s_release
step cross s_cross
step memcheck s_memcheck
step contract s_contract
step fuzz s_fuzz

note "summary"
echo "steps passed: $passed; failed: ${failed[*]:-none}"
echo "tests: $total_pass passed, $total_fail failed"
[ ${#failed[@]} -eq 0 ]
