# cli tests of `vmstack demo`, `selftest`, `info` and `bench`: each test program runs the built
# command (its path comes in as VMSTACK_CMD) as a subprocess and checks exit status and
# output. Built only with the command (VMSTACK_BUILD_TOOLS).
if(TARGET vmstack_cmd)
  foreach(stem cli_demo cli_selftest cli_info cli_bench)
    vms_test(${stem} LABELS cli TIMEOUT 300)
    target_compile_definitions(test_${stem} PRIVATE VMSTACK_CMD="$<TARGET_FILE:vmstack_cmd>")
    add_dependencies(test_${stem} vmstack_cmd)
  endforeach()
  if(TARGET vmstack_direct_cmd)
    foreach(stem cli_demo cli_info)
      target_compile_definitions(test_${stem} PRIVATE
        VMSTACK_DIRECT_CMD="$<TARGET_FILE:vmstack_direct_cmd>")
      add_dependencies(test_${stem} vmstack_direct_cmd)
    endforeach()
  endif()
endif()
