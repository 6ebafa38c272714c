# A library built with branch protection keeps its marking: -mbranch-protection=standard
# (aarch64: BTI and PAC) or -fcf-protection=branch (x86-64: IBT). The linker ANDs the GNU
# property notes of all its inputs, so the context switch's object (assembled with
# CMAKE_ASM_FLAGS, which do not hold the C flags) must carry the note itself. Checked on
# a relocatable link of that object, as the library has it, with a C object built with
# branch protection. This file is also the test's script (cmake -P, with CC, READELF,
# OUT, WANT and OBJECTS set).
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
  if(NOT rc EQUAL 0 OR NOT notes MATCHES "${WANT}")
    message(FATAL_ERROR "bti: ${OBJECTS} linked together lose the marking '${WANT}':\n${notes}")
  endif()
  return()
endif()
if(VMSTACK_ARCH STREQUAL "aarch64")
  set(VMS_BTI_FLAG -mbranch-protection=standard)
  set(VMS_BTI_WANT "AArch64 feature: BTI, PAC")
elseif(VMSTACK_ARCH STREQUAL "x86_64")
  set(VMS_BTI_FLAG -fcf-protection=branch)
  set(VMS_BTI_WANT "x86 feature: IBT")
endif()
if(VMS_BTI_FLAG)
  add_library(vms_test_bti_probe OBJECT bti_probe.c)
  target_compile_options(vms_test_bti_probe PRIVATE ${VMS_BTI_FLAG})
  add_test(NAME bti.switch_keeps_branch_protection COMMAND ${CMAKE_COMMAND}
    -DCC=${CMAKE_C_COMPILER} -DREADELF=${CMAKE_READELF}
    -DOUT=${CMAKE_CURRENT_BINARY_DIR}/bti_probe_linked.o "-DWANT=${VMS_BTI_WANT}"
    "-DOBJECTS=$<TARGET_OBJECTS:vms_test_bti_probe>;$<FILTER:$<TARGET_OBJECTS:vmstack_objects>,INCLUDE,switch\\.S\\.o$>"
    -P ${CMAKE_CURRENT_LIST_FILE})
  set_tests_properties(bti.switch_keeps_branch_protection PROPERTIES LABELS "unit;cross")
endif()
