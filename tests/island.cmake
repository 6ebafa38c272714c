# The async-signal-safe island (issue 3): report formatting, symbols and walks, the
# fault handler's classification, chaining, policies and reports. Death tests fork.
# The units and the kill tests also run in the aarch64 cross build (label cross).
vms_test(oops_format LABELS unit cross)
vms_test(trace LABELS unit cross COMPILE_OPTIONS -fno-omit-frame-pointer -O1)
# -fstack-clash-protection: the huge-frame cases must probe their guard page by page.
# aarch64's gcc probes for a 64 KiB guard unless told otherwise, and one case has a guard
# of one page: told so here.
set(VMS_CLASH_OPTIONS -fstack-clash-protection)
if(VMSTACK_ARCH STREQUAL "aarch64" AND CMAKE_C_COMPILER_ID STREQUAL "GNU")
  list(APPEND VMS_CLASH_OPTIONS --param=stack-clash-protection-guard-size=12
       --param=stack-clash-protection-probe-interval=12)
endif()
vms_test(guard LABELS death cross COMPILE_OPTIONS -fno-omit-frame-pointer ${VMS_CLASH_OPTIONS} TIMEOUT 180)
vms_test(guard LABELS death VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect TIMEOUT 180)
vms_test(guard_tasks GUARDS LABELS death stress cross COMPILE_OPTIONS -fno-omit-frame-pointer TIMEOUT 300)
vms_test(guard_tasks GUARDS LABELS death stress VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect TIMEOUT 300)
# The ASan build: the cases that skip there because ASan's SIGSEGV/SIGBUS handler takes the
# fault first or its own alternate signal stacks stand in for vmstack's (NO_ASAN_BECAUSE in
# tests/test.h) run again with those off, as a program under test would run them: vmstack's
# handler is the one under test. The other cases skip in these variants (tst_fork reads
# ASAN_OPTIONS): they ran the same in the default run, but for those that say
# ASAN_ALSO_WITHOUT_SEGV (ASan's own code on their path differs between the runs).
# detect_leaks=0 as in CI's asan step (ENV replaces the caller's ASAN_OPTIONS).
if(VMSTACK_SANITIZE MATCHES "address")
  set(VMS_ASAN_NOSEGV ASAN_OPTIONS=detect_leaks=0:handle_segv=0:handle_sigbus=0:use_sigaltstack=0)
  vms_test(guard LABELS death VARIANT asan_nosegv ENV ${VMS_ASAN_NOSEGV} TIMEOUT 180)
  vms_test(guard_tasks GUARDS LABELS death stress VARIANT asan_nosegv ENV ${VMS_ASAN_NOSEGV} TIMEOUT 300)
endif()
# A shared object loaded with dlopen after vmstack started: the handler names its frames.
add_library(vms_test_plugin MODULE plugin.c)
set_target_properties(vms_test_plugin PROPERTIES PREFIX "lib" OUTPUT_NAME vms_test_plugin)
target_compile_options(vms_test_plugin PRIVATE -fno-omit-frame-pointer -O1)
# The same code under another name: loaded where the first one was after its dlclose.
add_library(vms_test_plugin2 MODULE plugin.c)
set_target_properties(vms_test_plugin2 PROPERTIES PREFIX "lib" OUTPUT_NAME vms_test_plugin2)
target_compile_options(vms_test_plugin2 PRIVATE -fno-omit-frame-pointer -O1)
target_compile_definitions(vms_test_plugin2 PRIVATE plugin_recurse=plugin2_recurse)
vms_test(trace_dlopen GUARDS LABELS death cross COMPILE_OPTIONS -fno-omit-frame-pointer)
target_compile_definitions(test_trace_dlopen PRIVATE PLUGIN_PATH="$<TARGET_FILE:vms_test_plugin>"
  PLUGIN2_PATH="$<TARGET_FILE:vms_test_plugin2>")
target_link_libraries(test_trace_dlopen PRIVATE ${CMAKE_DL_LIBS})
add_dependencies(test_trace_dlopen vms_test_plugin vms_test_plugin2)
# Overflow storms: many tasks overflowing at once, behind a slow hook, in a loop.
vms_test(storm GUARDS LABELS death stress COMPILE_OPTIONS -fno-omit-frame-pointer TIMEOUT 300)
vms_test(storm GUARDS LABELS death stress VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect TIMEOUT 300)
# A program stripped of its symbol table, vmstack linked in: the unsafe-kill rule.
vms_test(trace_stripped GUARDS LABELS death cross)
target_link_options(test_trace_stripped PRIVATE -s)
