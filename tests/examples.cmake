# examples.cmake - the programs of examples/ as tests (label examples), so that they
# cannot rot: each case runs one example and checks its exit status and the key lines of
# its output (our own lines on stdout and vmstack's report on stderr, merged in the order
# written), and examples.installed builds every example against an installed package
# with nothing but pkg-config's flags.
#
# Included by tests/CMakeLists.txt it adds the cases (when examples/ is built:
# VMSTACK_BUILD_EXAMPLES). Run with `cmake -P` (script mode) it is one case:
#   -DCASE=<file>   a file written at configure time that sets PROG (the program and its
#                   arguments, after the emulator or the test wrapper), EXPECT (an exit
#                   status, or SIGSEGV), MATCH (regular expressions, each to be found
#                   after the previous one's match) and NOMATCH (never to be found);
#   -DBUILD=<build dir> -DDIR=<scratch prefix> -DSRC=<examples/> -DCC=<compiler>
#   -DCFLAGS=<extra flags, a list> [-DRUNNER=<emulator, a list>]   install into DIR,
#                   build each example there with the command of its ` * Build:` line
#                   (its `cc` the compiler given, its `$(pkg-config --cflags --libs
#                   vmstack)` pkg-config's answer) and -Wall -Wextra -Werror, and
#                   compile it once more as strict C11 (-std=c11 -Wpedantic), then run
#                   usage.c's program (through RUNNER: qemu-user in the cross build)
#                   and, with -DOVERFLOWS=ON (guards), those of fibers.c, threads.c and
#                   own_handler.c, which must kill only the task that overflowed.

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_minimum_required(VERSION 3.20)

  # Fails the case with what the program wrote.
  function(fail why)
    message(FATAL_ERROR "${why}\n---- output ----\n${out}----")
  endfunction()
  include("${CMAKE_CURRENT_LIST_DIR}/script_common.cmake")

  # Runs cmd... and checks exit status and output against EXPECT, MATCH and NOMATCH.
  function(run_and_check)
    execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    set(out "${out}" PARENT_SCOPE)
    check_output(RC "${rc}" EXPECT "${EXPECT}" MATCH ${MATCH} NOMATCH ${NOMATCH})
  endfunction()

  if(DEFINED CASE)
    include("${CASE}")
    run_and_check(${PROG})
    return()
  endif()

  # ---- examples.installed -------------------------------------------------------------
  install_package("${BUILD}" "${DIR}")
  foreach(query "--cflags;--libs" "--cflags" "--variable=libdir")
    execute_process(COMMAND ${PKG_CONFIG} ${query} vmstack RESULT_VARIABLE rc
      OUTPUT_VARIABLE pc_out OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      fail("pkg-config ${query} vmstack failed (${rc})")
    endif()
    if(query MATCHES "libdir")
      set(pc_libdir "${pc_out}")
    elseif(query MATCHES "libs")
      set(pc_flags "${pc_out}")
    else()
      separate_arguments(pc_cflags UNIX_COMMAND "${pc_out}")
    endif()
  endforeach()
  # Each example is copied and built with the command of its own ` * Build:  cc ...` line,
  # as a user would: the compiler's default language mode, no _GNU_SOURCE or other
  # definition of the project's; warnings as errors.
  file(GLOB sources "${SRC}/*.c")
  file(MAKE_DIRECTORY "${DIR}/examples")
  foreach(src ${sources})
    get_filename_component(name "${src}" NAME)
    file(COPY "${src}" DESTINATION "${DIR}/examples")
    file(STRINGS "${src}" line REGEX "^ \\* Build: +cc ")
    set(subst "$(pkg-config --cflags --libs vmstack)")
    string(FIND "${line}" "${subst}" at)
    if(NOT line MATCHES "^ \\* Build: +cc (.* ${name} .*)$" OR at LESS 0)
      fail("${name}: no ` * Build:  cc ... ${name} ${subst}` line: `${line}`")
    endif()
    string(REPLACE "${subst}" "${pc_flags}" args "${CMAKE_MATCH_1}")
    separate_arguments(args UNIX_COMMAND "${args}")
    set(cmd ${CC} ${CFLAGS} -Wall -Wextra -Werror ${args})
    execute_process(COMMAND ${cmd} WORKING_DIRECTORY "${DIR}/examples"
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      string(REPLACE ";" " " cmd "${cmd}")
      fail("${cmd} failed (${rc})")
    endif()
    # A program that copies it may build in strict ISO C: each example asks for the
    # POSIX or GNU interfaces it uses itself.
    set(cmd ${CC} ${CFLAGS} -std=c11 -Wall -Wextra -Wpedantic -Werror -fsyntax-only
        ${pc_cflags} ${name})
    execute_process(COMMAND ${cmd} WORKING_DIRECTORY "${DIR}/examples"
      RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      string(REPLACE ";" " " cmd "${cmd}")
      fail("${cmd} failed (${rc})")
    endif()
  endforeach()
  if(NOT EXISTS "${DIR}/examples/usage")
    message(FATAL_ERROR "no usage.c in ${SRC}, or its Build line does not make `usage`")
  endif()
  # usage.c runs in every build (it needs no guard and overflows nothing). The installed
  # libvmstack.so is found through LD_LIBRARY_PATH, as for any library outside the
  # loader's paths.
  set(ENV{LD_LIBRARY_PATH} "${pc_libdir}")
  set(EXPECT 0)
  set(MATCH "usage: OK")
  run_and_check(${RUNNER} "${DIR}/examples/usage")
  # The examples that overflow on purpose, where there are guards (OVERFLOWS): built as
  # their Build lines say (-O2, no frame-pointer flag of the user's own), each must
  # still kill only the task that overflowed, with or without libunwind in the library.
  if(OVERFLOWS)
    foreach(name fibers threads own_handler)
      set(MATCH "vmstack: killed (fiber|thread) \"[a-z]+\" \\(id [0-9]+\\); other tasks continue\n"
                "${name}: OK")
      set(NOMATCH "vmstack: aborting")
      run_and_check(${RUNNER} "${DIR}/examples/${name}")
    endforeach()
  endif()
  file(REMOVE_RECURSE "${DIR}")
  return()
endif()

if(NOT TARGET example_fibers)
  return()    # examples/ is not built (VMSTACK_BUILD_EXAMPLES=OFF)
endif()

set(VMS_EXAMPLES_SCRIPT ${CMAKE_CURRENT_LIST_FILE})

#   vms_example(<case> PROG <example> [ARGS <args...>] EXPECT <status|SIGSEGV>
#               MATCH <regex...> [NOMATCH <regex...>] [OVERFLOWS] [LABELS <labels...>])
# Adds the case examples.<case> (labels examples, cross and LABELS). OVERFLOWS marks an
# example that overflows a stack on purpose: registered but disabled on the direct
# backend (no guards: the overflow would corrupt memory) and under ASan (deliberate
# overflows do not run there: tests/test.h). A regex must not hold an unmatched `[`, not
# even as `\\[` (use `.`): CMake does not split a list at a `;` that follows one.
function(vms_example case)
  cmake_parse_arguments(E "OVERFLOWS" "PROG;EXPECT" "ARGS;MATCH;NOMATCH;LABELS" ${ARGN})
  # The prefix that tests/CMakeLists.txt's cases get: the test wrapper (valgrind), or
  # the cross-compiling emulator (qemu-user).
  set(prefix ${VMSTACK_TEST_WRAPPER})
  if(NOT prefix AND CMAKE_CROSSCOMPILING_EMULATOR)
    set(prefix ${CMAKE_CROSSCOMPILING_EMULATOR})
  endif()
  set(text "set(PROG")
  foreach(a ${prefix} "$<TARGET_FILE:example_${E_PROG}>" ${E_ARGS})
    string(APPEND text " [==[${a}]==]")
  endforeach()
  string(APPEND text ")\nset(EXPECT ${E_EXPECT})\nset(MATCH")
  foreach(re ${E_MATCH})
    string(APPEND text " [==[${re}]==]")
  endforeach()
  string(APPEND text ")\nset(NOMATCH")
  foreach(re ${E_NOMATCH})
    string(APPEND text " [==[${re}]==]")
  endforeach()
  string(APPEND text ")\n")
  set(file ${CMAKE_CURRENT_BINARY_DIR}/examples/${case}.cmake)
  file(GENERATE OUTPUT ${file} CONTENT "${text}")
  add_test(NAME examples.${case} COMMAND ${CMAKE_COMMAND} -DCASE=${file} -P ${VMS_EXAMPLES_SCRIPT})
  set(timeout 120)
  if(VMSTACK_TEST_WRAPPER)
    set(timeout 300)
  endif()
  # Every case also runs in the aarch64 cross build under qemu-user (label cross).
  set_tests_properties(examples.${case} PROPERTIES TIMEOUT ${timeout}
    LABELS "examples;cross;${E_LABELS}")
  if(VMSTACK_SANITIZE MATCHES "thread")
    # As docs/debugging.md tells a program under TSan to run (tests/test.h does the same).
    set_tests_properties(examples.${case} PROPERTIES
      ENVIRONMENT "TSAN_OPTIONS=handle_segv=0:use_sigaltstack=0")
  endif()
  if(E_OVERFLOWS AND (NOT VMSTACK_VMAP OR VMSTACK_SANITIZE MATCHES "address"))
    set_tests_properties(examples.${case} PROPERTIES DISABLED TRUE)
  endif()
endfunction()

# Fibers: the deep one is killed with a report, the others finish with right results.
vms_example(fibers PROG fibers EXPECT 0 OVERFLOWS LABELS memcheck MATCH
  "vmstack: stack overflow in fiber \"deep\" \\(id [0-9]+\\) on thread [0-9]+\n"
  "vmstack: Call Trace:\n"
  "vmstack: killed fiber \"deep\" \\(id [0-9]+\\); other tasks continue\n"
  "fiber deep was killed; the scheduler goes on\n"
  "fiber sum-20: done, result 630 \\(expected 630\\)\n"
  "fiber deep: killed: stack overflow [0-9]+ bytes below its 65536-byte stack"
  "fiber sum-100: done, result 15150 \\(expected 15150\\)\n"
  "fibers: OK")
# Threads: the deep one is killed, pthread_join says so; the others are right.
vms_example(threads PROG threads EXPECT 0 OVERFLOWS LABELS memcheck MATCH
  "vmstack: stack overflow in thread \"deep\" \\(id [0-9]+\\) on thread [0-9]+\n"
  "vmstack: killed thread \"deep\" \\(id [0-9]+\\); other tasks continue\n"
  "thread deep: killed by stack overflow \\(join gave VMS_THREAD_KILLED\\)\n"
  "thread sum-200: done, result 20100000 \\(expected 20100000\\)\n"
  "threads: OK")
# The program's own handler passes the overflow to vmstack (the hook runs before the
# report's last line) and handles a NULL dereference itself.
vms_example(own_handler PROG own_handler EXPECT 0 OVERFLOWS MATCH
  "vmstack: stack overflow in fiber \"recurse\""
  "own_handler: hook: recurse overran its stack by [0-9]+ bytes\n"
  "vmstack: killed fiber \"recurse\" \\(id [0-9]+\\); other tasks continue\n"
  "overflow: fiber state VMS_KILLED, my handler called 1 time\\(s\\), hook called 1 time\\(s\\)\n"
  "own_handler: my handler: a SIGSEGV that is not a stack overflow; exiting with status 3\n"
  "NULL dereference in a child: my handler got it"
  "own_handler: OK")
# A ucontext coroutine on a vms_stack_alloc stack; overflowing it reports and kills
# the process (no task owns the stack). The plain walk also runs under Valgrind
# (memcheck step), as do fibers, threads and usage; own_handler does not: its child's
# deliberate NULL write is a memcheck error, so it exits with Valgrind's error status.
vms_example(coroutine_stack PROG coroutine_stack EXPECT 0 LABELS memcheck MATCH
  "generator on a 65536-byte vmstack stack"
  "walk: 100000 keys in order; at its deepest, [0-9]+ of 65536 stack bytes were left\n"
  "coroutine_stack: OK")
vms_example(coroutine_stack_overflow PROG coroutine_stack ARGS --overflow EXPECT SIGSEGV
  OVERFLOWS MATCH
  "vmstack: stack overflow on thread [0-9]+ \\(the stack is not a vmstack task's\\)\n"
  "vmstack:  stack .0x[0-9a-f]+-0x[0-9a-f]+\\) size 65536, guard [0-9]+\n"
  "vmstack: no vmstack fiber or thread runs on this stack: nothing can be killed alone\n"
  "vmstack: aborting\n"
  NOMATCH "coroutine_stack: OK")
# Painting: the greatest-depth lines, vms_stack_max_used, the histogram.
vms_example(usage PROG usage EXPECT 0 LABELS memcheck MATCH
  "vmstack: fiber \"sum-10\" \\(id [0-9]+\\) used greatest stack depth: [0-9]+ bytes, [0-9]+ bytes left\n"
  "fiber sum-10 +n = 10 +done +after +11 levels"
  "fiber too-deep +n = 10000000 gave up after +[0-9]+ levels"
  "262144-byte stacks: 4 freed, deepest [0-9]+ bytes\n"
  "usage: OK")

# The examples built against an installed package, as a user builds them. Sanitizer
# builds give the compiler their -fsanitize flags: an instrumented library needs an
# instrumented program. One install at a time (install.prefix installs too, and every
# install rewrites the build directory's install_manifest.txt).
set(VMS_EXAMPLES_CFLAGS)
if(VMSTACK_SANITIZE)
  set(VMS_EXAMPLES_CFLAGS -fsanitize=${VMSTACK_SANITIZE})
endif()
string(REPLACE ";" "\\;" VMS_EXAMPLES_CFLAGS "${VMS_EXAMPLES_CFLAGS}")
# In the cross build the example is an aarch64 program: it runs under the emulator, as
# the other cases do (and with them, label cross).
string(REPLACE ";" "\\;" VMS_EXAMPLES_RUNNER "${CMAKE_CROSSCOMPILING_EMULATOR}")
# The examples that overflow run where the in-tree cases with OVERFLOWS run.
set(VMS_EXAMPLES_OVERFLOWS ON)
if(NOT VMSTACK_VMAP OR VMSTACK_SANITIZE MATCHES "address")
  set(VMS_EXAMPLES_OVERFLOWS OFF)
endif()
add_test(NAME examples.installed COMMAND ${CMAKE_COMMAND} -DBUILD=${PROJECT_BINARY_DIR}
  -DDIR=${CMAKE_CURRENT_BINARY_DIR}/examples-prefix -DSRC=${PROJECT_SOURCE_DIR}/examples
  -DCC=${CMAKE_C_COMPILER} "-DCFLAGS=${VMS_EXAMPLES_CFLAGS}"
  -DOVERFLOWS=${VMS_EXAMPLES_OVERFLOWS}
  "-DRUNNER=${VMS_EXAMPLES_RUNNER}" -P ${VMS_EXAMPLES_SCRIPT})
set_tests_properties(examples.installed PROPERTIES LABELS "examples;cross" TIMEOUT 300
  RESOURCE_LOCK vmstack_install)
if(VMSTACK_SANITIZE MATCHES "thread")
  set_tests_properties(examples.installed PROPERTIES
    ENVIRONMENT "TSAN_OPTIONS=handle_segv=0:use_sigaltstack=0")
endif()
