# bench.cmake - the benchmark program bench/vmstack_bench and the cli tests of
# `vmstack bench`. Scenario files join as the library gains the features they measure:
# fibers.c when src/fiber.c is built, threads.c when src/thread.c and src/guard.c are,
# debug_opts.c when src/debug.c is built too.
# The same VMS_BENCH_* definitions go to the `vmstack` command, which compiles the
# scenarios in through tools/cmd_bench.c. bench.cmake also serves as the test's checker:
# run with `cmake -P` (script mode), it runs the command and checks its output.

if(CMAKE_SCRIPT_MODE_FILE)
  # ---- script mode: check `vmstack bench` output -------------------------------------
  cmake_minimum_required(VERSION 3.20)   # policies of the project (IN_LIST, string(JSON))
  # -DVMSTACK=<command> -DMODE=json|table|nosyscalls|boost -DIDS=<id,id,...>
  # -DSCENARIOS=<text,...> -DSANITIZE=<VMSTACK_SANITIZE>; nosyscalls runs the JSON check
  # with --no-syscalls on the stack groups, so the "n/a, never a number" path is tested
  # where perf works too.
  string(REPLACE "," ";" IDS "${IDS}")
  string(REPLACE "," ";" SCENARIOS "${SCENARIOS}")
  set(args bench --quick)
  if(MODE STREQUAL "boost")        # VMSTACK is vmstack_bench_boost here
    set(args --quick --json)
  elseif(MODE STREQUAL "json")
    list(APPEND args --json)
  elseif(MODE STREQUAL "nosyscalls")
    list(APPEND args --json --no-syscalls --only stack)
    set(IDS stack.warm.default.malloc stack.warm.default.mmap stack.warm.noscrub.malloc
      stack.cold stack.scale)
  endif()
  execute_process(COMMAND ${VMSTACK} ${args}
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "vmstack bench --quick exited with ${rc}\nstdout:\n${out}\nstderr:\n${err}")
  endif()
  if(MODE STREQUAL "table")
    foreach(s IN LISTS SCENARIOS)
      string(FIND "${out}" "${s}" at)
      if(at LESS 0)
        message(FATAL_ERROR "row '${s}' missing from the table:\n${out}")
      endif()
    endforeach()
    foreach(s "system calls:" "page faults: getrusage" "ratio" "target" "result")
      string(FIND "${out}" "${s}" at)
      if(at LESS 0)
        message(FATAL_ERROR "'${s}' missing from the table header:\n${out}")
      endif()
    endforeach()
    message(STATUS "table has all ${MODE} rows")
    return()
  endif()
  # JSON: parse it (string(JSON) fails on malformed input) and check every row.
  string(JSON counter ERROR_VARIABLE jerr GET "${out}" syscall_counter)
  if(jerr)
    message(FATAL_ERROR "output is not the expected JSON (${jerr}):\n${out}")
  endif()
  if(MODE STREQUAL "nosyscalls" AND NOT counter STREQUAL "n/a")
    message(FATAL_ERROR "--no-syscalls still reports a counter: ${counter}")
  endif()
  string(JSON nrows LENGTH "${out}" rows)
  set(seen "")
  math(EXPR last "${nrows} - 1")
  foreach(i RANGE ${last})
    string(JSON id GET "${out}" rows ${i} id)
    string(JSON kind GET "${out}" rows ${i} kind)
    string(JSON result GET "${out}" rows ${i} result)
    list(APPEND seen ${id})
    if(NOT result MATCHES "^(met|MISSED|n/a|-)$")
      message(FATAL_ERROR "row ${id}: result '${result}'")
    endif()
    # Every vmstack side has a time; a number that was not measured is null, never 0.
    string(JSON ns GET "${out}" rows ${i} vmstack ns_per_op)
    string(JSON nstype TYPE "${out}" rows ${i} vmstack ns_per_op)
    if(NOT nstype STREQUAL "NUMBER" OR NOT ns GREATER 0)
      message(FATAL_ERROR "row ${id}: vmstack ns_per_op is '${ns}'")
    endif()
    string(JSON sc GET "${out}" rows ${i} vmstack syscalls_per_op)
    string(JSON sctype TYPE "${out}" rows ${i} vmstack syscalls_per_op)
    string(JSON bsctype TYPE "${out}" rows ${i} base syscalls_per_op)
    if(counter STREQUAL "n/a" AND NOT (sctype STREQUAL "NULL" AND bsctype STREQUAL "NULL"))
      message(FATAL_ERROR "row ${id}: syscalls printed without a counter")
    endif()
    # Time rows count system calls in a round of their own; memory rows never do (their
    # one creation loop is timed, and an open counter slows every system call in it).
    if(kind STREQUAL "time" AND NOT counter STREQUAL "n/a" AND NOT sctype STREQUAL "NUMBER")
      message(FATAL_ERROR "row ${id}: syscalls missing although counted by ${counter}")
    endif()
    if(kind STREQUAL "memory" AND NOT (sctype STREQUAL "NULL" AND bsctype STREQUAL "NULL"))
      message(FATAL_ERROR "row ${id}: a memory row reports system calls, counted while timing")
    endif()
    # Invariants that hold at any speed:
    # warm alloc+free with scrubbing off never enters the kernel;
    if(id STREQUAL "stack.warm.noscrub.malloc" AND NOT counter STREQUAL "n/a"
       AND NOT sc EQUAL 0)
      message(FATAL_ERROR "warm alloc+free with VMS_NO_SCRUB made ${sc} syscalls per op")
    endif()
    # the trim rows' baseline makes one madvise per stack, 1,024 per trim; a trim of the
    # 1,024 warm stacks makes one process_madvise per 32 (32 per trim), or where the kernel
    # refuses MADV_DONTNEED through it (before 6.13) one madvise per stack (1,024), and
    # nothing more: the set-up leaves it no ended thread's alternate stack to reap and
    # scrub (33 or 1,025 when it did); a trim that finds nothing warm makes no system
    # call (a list with no warm stack is not walked);
    # neither side takes a page fault (each round's set-up, which faults the stacks' top
    # pages in, is outside the measured window). Not in sanitizer builds, whose hooks may
    # make system calls and faults of their own.
    if(id MATCHES "^trim\\." AND NOT SANITIZE)
      string(JSON bsc GET "${out}" rows ${i} base syscalls_per_op)
      string(JSON vflt GET "${out}" rows ${i} vmstack faults_per_op)
      string(JSON bflt GET "${out}" rows ${i} base faults_per_op)
      if(NOT counter STREQUAL "n/a" AND NOT bsc EQUAL 1024)
        message(FATAL_ERROR "row ${id}: the madvise loop made ${bsc} syscalls per trim, not 1024")
      endif()
      if(id STREQUAL "trim.warm.madvise" AND NOT counter STREQUAL "n/a"
         AND NOT (sc EQUAL 32 OR sc EQUAL 1024))
        message(FATAL_ERROR "row ${id}: a trim of 1,024 warm stacks made ${sc} syscalls, not 32 (one per 32 stacks; 1,024 range by range)")
      endif()
      if(id STREQUAL "trim.none.madvise" AND NOT counter STREQUAL "n/a" AND NOT sc EQUAL 0)
        message(FATAL_ERROR "row ${id}: a trim with nothing warm made ${sc} syscalls")
      endif()
      # Below one per trim, not exactly 0: a stray fault of the host's (NUMA balancing, a
      # swap-in) is no failure, a set-up measured by mistake is about 1,024 per trim.
      if(NOT vflt LESS 1 OR NOT bflt LESS 1)
        message(FATAL_ERROR "row ${id}: page faults in the timed trims (${vflt}, ${bflt}): the set-up was measured")
      endif()
    endif()
    # a fiber switch never enters the kernel, with the end check or without; nor does
    # create+run+destroy without scrubbing and without painting (the paint_depth rows'
    # baseline). Both sides of these rows were counted in worker processes, so this also
    # checks that each worker counts its own system calls. Not in sanitizer builds, whose
    # fiber hooks make system calls of their own when a fiber starts and ends.
    if(id MATCHES "^debug\\.(switch|paint_depth)\\." AND NOT counter STREQUAL "n/a"
       AND NOT SANITIZE)
      string(JSON bsc GET "${out}" rows ${i} base syscalls_per_op)
      if(id MATCHES "^debug\\.switch" AND NOT sc EQUAL 0)
        message(FATAL_ERROR "row ${id}: a switch with VMS_END_CHECK made ${sc} syscalls")
      endif()
      if(NOT bsc EQUAL 0)
        message(FATAL_ERROR "row ${id}: the options-off side made ${bsc} syscalls per op")
      endif()
    endif()
    # the resident fiber-overflow floor keeps its stack's pages from one overflow to the
    # next (its own stack, not the dropping floor's): the recursion's faults (about 60
    # per overflow) never come back, once per round or otherwise.
    if(id STREQUAL "fiber.overflow" AND NOT SANITIZE)
      string(JSON bflt GET "${out}" rows ${i} base faults_per_op)
      if(bflt GREATER 0.5)
        message(FATAL_ERROR "row ${id}: the resident floor took ${bflt} page faults per overflow")
      endif()
    endif()
    # stack.scale.128k's stacks share their arena with the main thread's alternate signal
    # stack, which vms_init makes: counted from before vms_init, never "no mapping". (Arena
    # builds only: stack.scale, which comes first, names the guard method.)
    if(id STREQUAL "stack.scale")
      string(JSON note GET "${out}" rows ${i} note)
      if(note MATCHES "guard method (madvise|mprotect)")
        set(arenas TRUE)
      endif()
    endif()
    if(id STREQUAL "stack.scale.128k" AND arenas)
      string(JSON vmaps GET "${out}" rows ${i} vmstack mappings_added)
      if(vmaps LESS 2)
        message(FATAL_ERROR "row ${id}: its stacks added ${vmaps} mappings")
      endif()
    endif()
    # mmap+mprotect costs two mappings per live stack, and vmstack's madvise guards do not
    # add a mapping per stack.
    if(id MATCHES "^(stack|fiber|boost)\\.scale$")
      string(JSON bcount GET "${out}" rows ${i} base count)
      string(JSON bmaps GET "${out}" rows ${i} base mappings_added)
      string(JSON vcount GET "${out}" rows ${i} vmstack count)
      string(JSON vmaps GET "${out}" rows ${i} vmstack mappings_added)
      string(JSON note GET "${out}" rows ${i} note)
      math(EXPR want "${bcount} * 2 - 8")
      # (Not for boost.scale: Boost's protected_fixedsize_stack ignores a failed mprotect
      # in release builds, so near the limit its stacks have no guard and fewer mappings;
      # the row's note says so.)
      if(NOT id STREQUAL "boost.scale" AND bmaps LESS want)
        message(FATAL_ERROR "baseline: ${bcount} guarded stacks added only ${bmaps} mappings")
      endif()
      # (vmstack's count starts before vms_init; the note says how many vms_init made,
      # views of the loaded objects among them, which vary with the build, not the stacks.)
      set(vinit 0)
      if(note MATCHES "vms_init made ([0-9]+) maps")
        set(vinit ${CMAKE_MATCH_1})
      endif()
      math(EXPR vstacks "${vmaps} - ${vinit}")
      if(note MATCHES "guard method madvise" AND vstacks GREATER 16)
        message(FATAL_ERROR "vmstack: ${vcount} stacks added ${vstacks} mappings with madvise guards (and vms_init ${vinit})")
      endif()
    endif()
  endforeach()
  foreach(id IN LISTS IDS)
    if(NOT id IN_LIST seen)
      message(FATAL_ERROR "row ${id} missing; got: ${seen}")
    endif()
  endforeach()
  message(STATUS "json: ${nrows} rows, syscall counter: ${counter}")
  return()
endif()

# ---- configure mode ---------------------------------------------------------------------
# vmstack_bench.c includes driver.c and the scenario files (one translation unit, as
# tools/cmd_bench.c does); the compiler's dependency scan tracks the included files.
set(VMS_BENCH_DEFS "")
# Row ids and scenario texts every run must print (checked by the cli tests).
set(VMS_BENCH_IDS stack.warm.default.malloc stack.warm.default.mmap stack.warm.noscrub.malloc
  stack.cold stack.scale trim.warm.madvise trim.none.madvise)
set(VMS_BENCH_SCENARIOS "stack alloc+touch+free, default" "stack alloc+touch+free, VMS_NO_SCRUB"
  "stack alloc+touch, new slot" "live stacks, top page touched" "trim, 1,024 warm stacks"
  "trim, nothing warm")
if("src/fiber.c" IN_LIST VMSTACK_SOURCES AND EXISTS ${CMAKE_CURRENT_LIST_DIR}/fibers.c)
  list(APPEND VMS_BENCH_DEFS VMS_BENCH_FIBERS=1)
  list(APPEND VMS_BENCH_IDS fiber.switch.ucontext fiber.create.default.pooled
    fiber.create.default.protected fiber.create.noscrub.pooled fiber.scale)
  list(APPEND VMS_BENCH_SCENARIOS "fiber switch (resume+yield / 2)"
    "fiber create+run+destroy, default" "fiber create+run+destroy, VMS_NO_SCRUB"
    "suspended fibers")
endif()
if("src/thread.c" IN_LIST VMSTACK_SOURCES AND "src/guard.c" IN_LIST VMSTACK_SOURCES
   AND EXISTS ${CMAKE_CURRENT_LIST_DIR}/threads.c)
  list(APPEND VMS_BENCH_DEFS VMS_BENCH_THREADS=1)
  list(APPEND VMS_BENCH_IDS thread.create)
  list(APPEND VMS_BENCH_SCENARIOS "thread create+join")
  # The overflow rows need guards: the direct backend has none and skips them.
  if(VMSTACK_VMAP)
    list(APPEND VMS_BENCH_IDS thread.overflow)
    list(APPEND VMS_BENCH_SCENARIOS "thread overflow: oops+kill+join")
  endif()
  if(VMSTACK_VMAP AND VMS_BENCH_DEFS MATCHES "VMS_BENCH_FIBERS")
    list(APPEND VMS_BENCH_IDS fiber.overflow fiber.overflow.dropped)
    list(APPEND VMS_BENCH_SCENARIOS "fiber overflow: oops+kill+destroy")
  endif()
endif()
# The debug options' costs (debug_opts.c; not debug.c, which src/debug.c would shadow on
# tools/' include path) need fibers and the debug layer.
if("src/debug.c" IN_LIST VMSTACK_SOURCES AND VMS_BENCH_DEFS MATCHES "VMS_BENCH_FIBERS"
   AND EXISTS ${CMAKE_CURRENT_LIST_DIR}/debug_opts.c)
  list(APPEND VMS_BENCH_DEFS VMS_BENCH_DEBUG=1)
  list(APPEND VMS_BENCH_IDS debug.switch.endcheck debug.create.paint debug.create.endcheck
    debug.paint_depth.256k.4k debug.paint_depth.256k.64k debug.paint_depth.256k.192k
    debug.paint_depth.4m.4k debug.paint_depth.4m.64k debug.paint_depth.4m.192k)
  list(APPEND VMS_BENCH_SCENARIOS "fiber switch, VMS_END_CHECK" "create+run+destroy, VMS_PAINT"
    "create+run+destroy, VMS_END_CHECK" "VMS_PAINT, 256 KiB stack, 192 KiB deep"
    "VMS_PAINT, 4 MiB stack, 4 KiB deep")
endif()

if(TARGET vmstack_cmd AND VMS_BENCH_DEFS)
  target_compile_definitions(vmstack_cmd PRIVATE ${VMS_BENCH_DEFS})
endif()
# Without VMSTACK_BUILD_BENCH the top level includes this file for the definitions above
# alone: `vmstack bench` has every group whether or not the bench/ programs are built.
if(NOT VMSTACK_BUILD_BENCH)
  return()
endif()

add_executable(vmstack_bench vmstack_bench.c)
target_link_libraries(vmstack_bench PRIVATE vmstack_static m)
target_include_directories(vmstack_bench PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
if(VMS_BENCH_DEFS)
  target_compile_definitions(vmstack_bench PRIVATE ${VMS_BENCH_DEFS})
endif()

# The Boost comparison (C++, its own program; not part of `vmstack bench`): only when
# the library has fibers and CMake finds Boost.Context (Debian: libboost-context-dev).
# CXX is enabled here, for this one target, so that the C library never needs a C++
# compiler.
include(CheckLanguage)
if("src/fiber.c" IN_LIST VMSTACK_SOURCES)
  check_language(CXX)
  if(CMAKE_CXX_COMPILER)
    enable_language(CXX)
    find_package(Boost QUIET COMPONENTS context)
  endif()
  if(CMAKE_CXX_COMPILER AND Boost_FOUND AND TARGET Boost::context)
    add_executable(vmstack_bench_boost boost_context.cpp)
    set_target_properties(vmstack_bench_boost PROPERTIES CXX_STANDARD 14 CXX_STANDARD_REQUIRED ON)
    target_link_libraries(vmstack_bench_boost PRIVATE vmstack_static Boost::context)
    target_include_directories(vmstack_bench_boost PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
    message(STATUS "  bench: vmstack_bench_boost (Boost.Context ${Boost_VERSION})")
    if(VMSTACK_BUILD_TESTS AND NOT CMAKE_CROSSCOMPILING)   # as for bench.cli_* below
      add_test(NAME bench.cli_boost COMMAND ${CMAKE_COMMAND}
        -DVMSTACK=$<TARGET_FILE:vmstack_bench_boost> -DMODE=boost
        "-DIDS=boost.switch.fcontext,boost.switch.fcontext_equal,boost.create.default.pooled,boost.create.default.protected,boost.create.noscrub.pooled,boost.scale"
        -P ${CMAKE_CURRENT_LIST_FILE})
      set_tests_properties(bench.cli_boost PROPERTIES LABELS cli TIMEOUT 300)
    endif()
  else()
    message(STATUS "  bench: Boost.Context not found, vmstack_bench_boost not built")
  endif()
endif()

# Not in a cross build (the aarch64 one under qemu-user): the checker runs the command
# as a program of the host, and under an emulator the invariants it checks (0 system
# calls for a warm VMS_NO_SCRUB alloc+free, say) would be the emulator's, not vmstack's.
if(VMSTACK_BUILD_TESTS AND TARGET vmstack_cmd AND NOT CMAKE_CROSSCOMPILING)
  # The lists travel as one comma-separated argument each (a ';' would split it).
  string(REPLACE ";" "," ids "${VMS_BENCH_IDS}")
  string(REPLACE ";" "," scenarios "${VMS_BENCH_SCENARIOS}")
  foreach(mode json table nosyscalls)
    add_test(NAME bench.cli_${mode} COMMAND ${CMAKE_COMMAND}
      -DVMSTACK=$<TARGET_FILE:vmstack_cmd> -DMODE=${mode}
      "-DIDS=${ids}" "-DSCENARIOS=${scenarios}" "-DSANITIZE=${VMSTACK_SANITIZE}"
      -P ${CMAKE_CURRENT_LIST_FILE})
    set_tests_properties(bench.cli_${mode} PROPERTIES LABELS cli TIMEOUT 300)
  endforeach()
endif()
