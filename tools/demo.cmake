# `vmstack demo` and `vmstack selftest`: extra sources of the vmstack command.
#
# selftest_clash.c holds the selftest's large-frame function; it alone is compiled with
# -fstack-clash-protection, so that the selftest checks that such probes hit the guard
# (the other files keep the flags of the rest of the build).
# A compiler without the flag still builds it, and the selftest then skips that check.
include(CheckCCompilerFlag)
check_c_compiler_flag(-fstack-clash-protection VMSTACK_HAVE_STACK_CLASH_PROTECTION)
target_sources(vmstack_cmd PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/selftest_clash.c)
if(VMSTACK_HAVE_STACK_CLASH_PROTECTION)
  set_source_files_properties(${CMAKE_CURRENT_SOURCE_DIR}/selftest_clash.c PROPERTIES
    COMPILE_OPTIONS "-fstack-clash-protection"
    COMPILE_DEFINITIONS "VMSTACK_CLASH_PROTECTION=1")
endif()

# vmstack-direct: the same command on the direct backend (the library's sources with
# src/direct.c in place of src/arena.c, as -DVMSTACK_VMAP=OFF builds them), so that
# `vmstack demo --direct` can show the same workload without guards next to the guarded
# run: the backend is compiled in, so one executable cannot switch at run time.
# Sanitizer builds skip it (an overflow without guards is exactly what they report).
if(VMSTACK_VMAP AND NOT VMSTACK_SANITIZE)
  set(VMS_DIRECT_SOURCES)
  foreach(f ${VMSTACK_SOURCES})
    if(NOT f STREQUAL "src/arena.c")
      list(APPEND VMS_DIRECT_SOURCES ${PROJECT_SOURCE_DIR}/${f})
    endif()
  endforeach()
  list(APPEND VMS_DIRECT_SOURCES ${PROJECT_SOURCE_DIR}/src/direct.c)
  add_executable(vmstack_direct_cmd ${CMAKE_CURRENT_SOURCE_DIR}/vmstack.c ${VMS_CMD_SOURCES}
    ${CMAKE_CURRENT_SOURCE_DIR}/selftest_clash.c ${VMS_DIRECT_SOURCES})
  set_target_properties(vmstack_direct_cmd PROPERTIES OUTPUT_NAME vmstack-direct
    C_VISIBILITY_PRESET hidden)
  target_include_directories(vmstack_direct_cmd PRIVATE ${PROJECT_SOURCE_DIR}/include
    ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/bench)
  if(VMSTACK_HAVE_LIBUNWIND)
    target_include_directories(vmstack_direct_cmd PRIVATE ${LIBUNWIND_INCLUDE_DIR})
  endif()
  target_compile_definitions(vmstack_direct_cmd PRIVATE
    VMSTACK_STATIC_DEFINE
    VMSTACK_VERSION_STRING="${PROJECT_VERSION}"
    VMSTACK_ARCH_STRING="${VMSTACK_ARCH}"
    VMSTACK_BUILD_TYPE_STRING="${CMAKE_BUILD_TYPE}"
    VMSTACK_SANITIZE_STRING="${VMSTACK_SANITIZE}"
    VMSTACK_C_COMPILER_STRING="${CMAKE_C_COMPILER_ID} ${CMAKE_C_COMPILER_VERSION}"
    $<$<BOOL:${VMSTACK_HAVE_LIBUNWIND}>:VMSTACK_HAVE_LIBUNWIND=1>
    $<$<BOOL:${VMSTACK_VALGRIND}>:VMSTACK_VALGRIND=1>
    $<$<BOOL:${VMSTACK_HAVE_VALGRIND_H}>:VMSTACK_HAVE_VALGRIND_H=1>
    $<$<BOOL:${VMSTACK_HAVE_LIBIBERTY}>:VMSTACK_HAVE_LIBIBERTY=1>
    $<$<STREQUAL:${VMSTACK_DEMANGLE},OFF>:VMSTACK_DEMANGLE_OFF=1>
    $<$<BOOL:${VMSTACK_FAULT_INJECTION}>:VMSTACK_FAULT_INJECTION=1>)
  if(VMSTACK_HAVE_LIBIBERTY)
    target_include_directories(vmstack_direct_cmd PRIVATE ${LIBIBERTY_INCLUDE_DIR})
    target_link_libraries(vmstack_direct_cmd PRIVATE ${LIBIBERTY_LIBRARY})
  endif()
  if(VMSTACK_VALGRIND OR VMSTACK_HAVE_VALGRIND_H)
    target_include_directories(vmstack_direct_cmd PRIVATE ${VALGRIND_INCLUDE_DIR})
  endif()
  target_link_libraries(vmstack_direct_cmd PRIVATE ${VMSTACK_LINK_LIBS} m)
  install(TARGETS vmstack_direct_cmd RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()
