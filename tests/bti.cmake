# aarch64: a library built with -mbranch-protection=standard keeps its BTI and PAC
# marking. The linker ANDs the GNU property notes of all its inputs, so the context
# switch's object (assembled with CMAKE_ASM_FLAGS, which do not hold the C flags) must
# carry the note itself. Checked on a relocatable link of that object, as the library
# has it, with a C object built with branch protection. This file is also the test's
# script (cmake -P, with CC, READELF, OUT and OBJECTS set).
if(CMAKE_SCRIPT_MODE_FILE)
  list(LENGTH OBJECTS n)
  if(n LESS 2)
    message(FATAL_ERROR "bti: want the probe and switch.S's object, got '${OBJECTS}'")
  endif()
  execute_process(COMMAND ${CC} -r -nostdlib -o ${OUT} ${OBJECTS} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "bti: the relocatable link failed (${rc})")
  endif()
  execute_process(COMMAND ${READELF} -n ${OUT} OUTPUT_VARIABLE notes RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0 OR NOT notes MATCHES "AArch64 feature: BTI, PAC")
    message(FATAL_ERROR "bti: ${OBJECTS} linked together lose BTI/PAC marking:\n${notes}")
  endif()
  return()
endif()
if(VMSTACK_ARCH STREQUAL "aarch64")
  add_library(vms_test_bti_probe OBJECT bti_probe.c)
  target_compile_options(vms_test_bti_probe PRIVATE -mbranch-protection=standard)
  add_test(NAME bti.switch_keeps_branch_protection COMMAND ${CMAKE_COMMAND}
    -DCC=${CMAKE_C_COMPILER} -DREADELF=${CMAKE_READELF}
    -DOUT=${CMAKE_CURRENT_BINARY_DIR}/bti_probe_linked.o
    "-DOBJECTS=$<TARGET_OBJECTS:vms_test_bti_probe>;$<FILTER:$<TARGET_OBJECTS:vmstack_objects>,INCLUDE,switch\\.S\\.o$>"
    -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(bti.switch_keeps_branch_protection PROPERTIES LABELS "unit;cross")
endif()
