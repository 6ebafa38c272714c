# C++ on vmstack fibers and threads (tests/cxx.cc; docs/api.md, "C++"): exceptions,
# thread_local, pthread_exit and cancellation through C++ frames, kills of C++ code.
# Only where a C++ compiler for the library's own target is found: the aarch64 cross
# build uses aarch64-linux-gnu-g++ when it is installed (cmake/aarch64-linux-gnu.cmake;
# label cross); a C++ compiler for another target (the host's c++, say) cannot link
# with the library, so the cases are left out then, as without any C++ compiler. With sanitizers the
# C++ compiler must also be the C compiler's (their runtimes do not mix: the clang and
# TSan steps of scripts/test-all.sh set CXX=clang++).
include(CheckLanguage)
check_language(CXX)
set(VMS_CXX_TESTS OFF)
if(CMAKE_CXX_COMPILER)
  execute_process(COMMAND ${CMAKE_C_COMPILER} -dumpmachine OUTPUT_VARIABLE vms_c_target
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  execute_process(COMMAND ${CMAKE_CXX_COMPILER} -dumpmachine OUTPUT_VARIABLE vms_cxx_target
                  OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  # The architecture: gcc says x86_64-linux-gnu, clang x86_64-pc-linux-gnu.
  string(REGEX REPLACE "-.*" "" vms_c_arch "${vms_c_target}")
  string(REGEX REPLACE "-.*" "" vms_cxx_arch "${vms_cxx_target}")
  if(vms_c_arch AND vms_c_arch STREQUAL vms_cxx_arch)
    enable_language(CXX)
    if(VMSTACK_SANITIZE AND NOT CMAKE_CXX_COMPILER_ID STREQUAL CMAKE_C_COMPILER_ID)
      message(STATUS "  tests: no C++ tests (sanitizers with ${CMAKE_C_COMPILER_ID} C but ${CMAKE_CXX_COMPILER_ID} C++)")
    else()
      set(VMS_CXX_TESTS ON)
    endif()
  else()
    message(STATUS "  tests: no C++ tests (${CMAKE_CXX_COMPILER} targets ${vms_cxx_target}, the library ${vms_c_target})")
  endif()
endif()
if(VMS_CXX_TESTS)
  vms_test(cxx EXT cc LABELS unit death memcheck cross)
  set_target_properties(test_cxx PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
  if(CMAKE_CROSSCOMPILING_EMULATOR)
    target_compile_definitions(test_cxx PRIVATE TST_EMULATED=1)   # fewer children
  endif()
  vms_test(cxx EXT cc LABELS death VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect)
endif()
