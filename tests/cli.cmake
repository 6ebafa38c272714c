# cli tests of `vmstack demo`, `selftest`, `info` and `bench`: each test program runs the built
# command (its path comes in as VMSTACK_CMD) as a subprocess and checks exit status and
# output. Built only with the command (VMSTACK_BUILD_TOOLS). Also in the aarch64 cross
# build under qemu-user (label cross): the 45 cases take about 2 minutes there, and what
# qemu-user cannot give (RLIMIT_AS, threads in a child forked from a threaded process,
# an arm64 Valgrind) skips, probed.
if(TARGET vmstack_cmd)
  foreach(stem cli_demo cli_selftest cli_info cli_bench)
    vms_test(${stem} LABELS cli cross TIMEOUT 300)
    target_compile_definitions(test_${stem} PRIVATE VMSTACK_CMD="$<TARGET_FILE:vmstack_cmd>")
    add_dependencies(test_${stem} vmstack_cmd)
  endforeach()
  # vmstack-miscount: a test-only build of the command (never installed) whose demo leaves
  # its first oops-hook call uncounted (VMSTACK_DEMO_TEST_MISCOUNT in tools/cmd_demo.c), so
  # that cli_demo can show the summary's count check failing the run. The shipped command
  # has no way to make the counts disagree.
  file(GLOB vms_miscount_sources ${PROJECT_SOURCE_DIR}/tools/cmd_*.c
    ${PROJECT_SOURCE_DIR}/tools/checkstack_*.c)
  add_executable(vmstack_miscount_cmd ${PROJECT_SOURCE_DIR}/tools/vmstack.c
    ${PROJECT_SOURCE_DIR}/tools/selftest_clash.c ${vms_miscount_sources})
  set_target_properties(vmstack_miscount_cmd PROPERTIES OUTPUT_NAME vmstack-miscount)
  target_link_libraries(vmstack_miscount_cmd PRIVATE vmstack_static m)
  target_include_directories(vmstack_miscount_cmd PRIVATE ${PROJECT_SOURCE_DIR}/src
    ${PROJECT_SOURCE_DIR}/bench)
  get_target_property(vms_cmd_defs vmstack_cmd COMPILE_DEFINITIONS)
  target_compile_definitions(vmstack_miscount_cmd PRIVATE ${vms_cmd_defs}
    VMSTACK_DEMO_TEST_MISCOUNT=1)
  target_compile_definitions(test_cli_demo PRIVATE
    VMSTACK_MISCOUNT_CMD="$<TARGET_FILE:vmstack_miscount_cmd>")
  add_dependencies(test_cli_demo vmstack_miscount_cmd)
  # Cross-compiled: the command is a program for the target, which the test (itself run
  # under the emulator) cannot exec directly; it execs the emulator with it instead.
  if(CMAKE_CROSSCOMPILING_EMULATOR)
    set(emu "")
    foreach(word ${CMAKE_CROSSCOMPILING_EMULATOR})
      string(APPEND emu "\"${word}\",")
    endforeach()
    foreach(stem cli_demo cli_selftest cli_info cli_bench)
      target_compile_definitions(test_${stem} PRIVATE "VMSTACK_CMD_EMULATOR=${emu}")
    endforeach()
  endif()
  # A getauxval without AT_MINSIGSTKSZ, preloaded into the command to show what info and
  # selftest say on older kernels. Not with a sanitizer, whose runtime must be the first
  # library loaded.
  if(NOT VMSTACK_SANITIZE)
    add_library(vms_test_noauxv MODULE cli_noauxv.c)
    set_target_properties(vms_test_noauxv PROPERTIES PREFIX "lib" OUTPUT_NAME vms_test_noauxv)
    target_link_libraries(vms_test_noauxv PRIVATE ${CMAKE_DL_LIBS})
    foreach(stem cli_info cli_selftest)
      target_compile_definitions(test_${stem} PRIVATE
        VMSTACK_NOAUXV_LIB="$<TARGET_FILE:vms_test_noauxv>")
      add_dependencies(test_${stem} vms_test_noauxv)
    endforeach()
  endif()
  if(TARGET vmstack_direct_cmd)
    foreach(stem cli_demo cli_info cli_selftest)
      target_compile_definitions(test_${stem} PRIVATE
        VMSTACK_DIRECT_CMD="$<TARGET_FILE:vmstack_direct_cmd>")
      add_dependencies(test_${stem} vmstack_direct_cmd)
    endforeach()
  endif()
endif()
