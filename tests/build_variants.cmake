# build_variants.cmake - the oops report of a user program built against an installed
# vmstack the ways users build (tests/build_variants/overflow.c): optimized with frame
# pointers (PIE, linked with libvmstack.so through pkg-config), with pkg-config's flags
# alone (-O2 and nothing else, as the examples' Build lines), without them, linked with
# libvmstack.a as `pkg-config --static` says (not PIE), and that static program stripped.
# Each variant is compiled (a fraction of a second) and run once. Its report must name
# the faulting function and its callers in order (stripped: name nothing at all, and not
# kill the fiber alone: docs/oops.md, Unsafe kill), collapse
# the recursion, and agree with the vms_oops the program checks ("oops: consistent").
# Without libunwind, the program built without frame pointers (-fomit-frame-pointer after
# pkg-config's -fno-omit-frame-pointer) is not killed alone: the frame-pointer walk
# cannot see its frames (docs/oops.md, Unsafe kill).
#
# Included by tests/CMakeLists.txt it adds the case examples.build_variants (label
# examples). Run with `cmake -P` (script mode) it is the case: -DBUILD=<build dir>
# -DDIR=<scratch prefix> -DSRC=<overflow.c> -DCC=<compiler> -DSTRIP=<strip>
# -DUNWIND=<ON|OFF>.

if(CMAKE_SCRIPT_MODE_FILE)
  cmake_minimum_required(VERSION 3.20)

  function(fail why)
    message(FATAL_ERROR "${why}\n---- output ----\n${out}----")
  endfunction()
  include("${CMAKE_CURRENT_LIST_DIR}/script_common.cmake")

  install_package("${BUILD}" "${DIR}")
  foreach(q cflags libs static libdir)
    set(args --${q})
    if(q STREQUAL "static")
      set(args --static --libs)
    elseif(q STREQUAL "libdir")
      set(args --variable=libdir)
    endif()
    execute_process(COMMAND ${PKG_CONFIG} ${args} vmstack RESULT_VARIABLE rc
      OUTPUT_VARIABLE pc_${q} OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      fail("pkg-config ${args} vmstack failed (${rc})")
    endif()
    separate_arguments(pc_${q} UNIX_COMMAND "${pc_${q}}")
  endforeach()
  # The static link: libvmstack.a itself where -lvmstack stands (a -lvmstack would take
  # the shared library, which the build directory also installs).
  list(TRANSFORM pc_static REPLACE "^-lvmstack$" "${pc_libdir}/libvmstack.a")
  set(ENV{LD_LIBRARY_PATH} "${pc_libdir}")

  #   variant(<name> FLAGS <cc flags...> LINK <flags...> [STRIP] EXPECT <0|SIGSEGV>
  #           MATCH <regex...> [NOMATCH <regex...>])
  # MATCH regexes are found in order, each after the previous one's match.
  function(variant name)
    cmake_parse_arguments(V "STRIP" "EXPECT" "FLAGS;LINK;MATCH;NOMATCH" ${ARGN})
    set(exe "${DIR}/overflow-${name}")
    set(cmd ${CC} -Wall -Wextra -Werror ${V_FLAGS} -o "${exe}" "${SRC}" ${V_LINK})
    execute_process(COMMAND ${cmd} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    if(NOT rc EQUAL 0)
      string(REPLACE ";" " " cmd "${cmd}")
      fail("${name}: ${cmd} failed (${rc})")
    endif()
    if(V_STRIP)
      execute_process(COMMAND ${STRIP} "${exe}" RESULT_VARIABLE rc ERROR_VARIABLE out)
      if(NOT rc EQUAL 0)
        fail("${name}: ${STRIP} failed (${rc})")
      endif()
    endif()
    execute_process(COMMAND "${exe}" RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
    set(out "${name}:\n${out}")
    check_output(RC "${rc}" EXPECT "${V_EXPECT}" WHAT "${name}" MATCH ${V_MATCH}
      NOMATCH ${V_NOMATCH})
  endfunction()

  # The report of a kill with every frame named, in order.
  set(named
    "vmstack: stack overflow in fiber \"variant\" \\(id [0-9]+\\) on thread [0-9]+\n"
    "vmstack:  fault at 0x[0-9a-f]+, [0-9]+ bytes below the stack\n"
    "vmstack: Call Trace:\nvmstack:  deep\\+0x[0-9a-f]+/0x[0-9a-f]+ "
    "\nvmstack:  \\.\\.\\. [0-9]+ frames of deep left out \\.\\.\\.\nvmstack:  outer\\+0x"
    "\nvmstack:  fiber_main\\+0x"
    "\nvmstack: killed fiber \"variant\" \\(id [0-9]+\\); other tasks continue\n"
    "oops: consistent\n")
  variant(fp FLAGS -O2 -fno-omit-frame-pointer LINK ${pc_cflags} ${pc_libs} EXPECT 0
    MATCH ${named})
  # As the examples' Build lines build: -O2 and pkg-config's flags, nothing else. A
  # library without libunwind asks for frame pointers in its Cflags.
  variant(plain FLAGS -O2 LINK ${pc_cflags} ${pc_libs} EXPECT 0 MATCH ${named})
  # Frame pointers left out on purpose, after pkg-config's flags.
  if(UNWIND)
    variant(nofp FLAGS -O2 LINK ${pc_cflags} -fomit-frame-pointer ${pc_libs} EXPECT 0
      MATCH ${named})
  else()
    variant(nofp FLAGS -O2 LINK ${pc_cflags} -fomit-frame-pointer ${pc_libs} EXPECT SIGSEGV
      MATCH "vmstack: Call Trace:\nvmstack:  deep\\+0x[0-9a-f]+/0x[0-9a-f]+ .overflow-nofp.\n"
      "vmstack: cannot kill safely: the call trace ends early at deep .overflow-nofp., "
      "\nvmstack: aborting\n" NOMATCH "oops:")
  endif()
  variant(static FLAGS -O2 -fno-omit-frame-pointer -no-pie -fno-pie
    LINK ${pc_cflags} ${pc_static} EXPECT 0 MATCH ${named})
  # strip removes the symbol table: no frame is named (vmstack's own neither, being in
  # the program), none wrongly, and the recursion is still collapsed. An unnamed frame
  # there may be inside vmstack holding a lock: the fiber is not killed alone.
  variant(stripped FLAGS -O2 -fno-omit-frame-pointer -no-pie -fno-pie
    LINK ${pc_cflags} ${pc_static} STRIP EXPECT SIGSEGV
    MATCH "vmstack: Call Trace:\nvmstack:  0x[0-9a-f]+ .overflow-stripped.\n"
    "\nvmstack:  \\.\\.\\. [0-9]+ frames of \\? left out \\.\\.\\.\n"
    "\nvmstack: cannot kill safely: the fault happened inside 0x[0-9a-f]+ .overflow-stripped.: "
    "an object without a symbol table that holds vmstack" "\nvmstack: aborting\n"
    NOMATCH "deep" "outer" "fiber_main" "vms__ctx_trampoline" "oops:" "vmstack: killed")
  file(REMOVE_RECURSE "${DIR}")
  return()
endif()

# Programs that overflow on purpose: not with the direct backend (no guards), nor under
# a sanitizer (the program would need its runtime), nor when cross-compiling (the
# compiler's programs do not run here).
if(NOT VMSTACK_VMAP OR VMSTACK_SANITIZE OR CMAKE_CROSSCOMPILING)
  return()
endif()
add_test(NAME examples.build_variants COMMAND ${CMAKE_COMMAND} -DBUILD=${PROJECT_BINARY_DIR}
  -DDIR=${CMAKE_CURRENT_BINARY_DIR}/build-variants-prefix
  -DSRC=${CMAKE_CURRENT_SOURCE_DIR}/build_variants/overflow.c -DCC=${CMAKE_C_COMPILER}
  -DSTRIP=${CMAKE_STRIP} -DUNWIND=${VMSTACK_HAVE_LIBUNWIND}
  -P ${CMAKE_CURRENT_SOURCE_DIR}/build_variants.cmake)
# One install at a time (install.prefix and examples.installed install too).
set_tests_properties(examples.build_variants PROPERTIES LABELS examples TIMEOUT 120
  RESOURCE_LOCK vmstack_install)
