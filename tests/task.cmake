# The task layer (issue: context switch, fibers, threads). Fiber tests also run under
# qemu-user in the aarch64 cross build (label cross, scripts/cross-aarch64.sh).
vms_test(fiber LABELS unit cross memcheck)
target_link_libraries(test_fiber PRIVATE m)   # fesetround/fegetround
# Under ASan also with fake stacks (gcc's runtime has them off by default, newer clang's
# on): a fiber's locals then live on ASan's fake stack, not on the fiber's. The ENV
# replaces the caller's ASAN_OPTIONS, hence CI's detect_leaks=0 here too.
if(VMSTACK_SANITIZE MATCHES "address")
  vms_test(fiber LABELS unit VARIANT fakestack
           ENV ASAN_OPTIONS=detect_leaks=0:detect_stack_use_after_return=1)
endif()
vms_test(fiber_stress LABELS stress TIMEOUT 600)
vms_test(thread LABELS unit memcheck cross)
vms_test(thread_stress LABELS stress TIMEOUT 600)
# No vmstack call is a cancellation point (loads the plugin of island.cmake: a new object).
vms_test(thread_cancel LABELS unit)
target_compile_definitions(test_thread_cancel PRIVATE PLUGIN_PATH="$<TARGET_FILE:vms_test_plugin>")
target_link_libraries(test_thread_cancel PRIVATE ${CMAKE_DL_LIBS})
add_dependencies(test_thread_cancel vms_test_plugin)
# The kill paths with the fault handler (children die on purpose; both guard methods).
vms_test(fiber_kill LABELS death cross TIMEOUT 300)
vms_test(fiber_kill LABELS death VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect TIMEOUT 300)
vms_test(thread_tls LABELS unit memcheck cross)
vms_test(thread_tls_medium LABELS unit cross)
# What a fork child inherits from a parent with other threads and tasks (both methods).
vms_test(fork LABELS unit cross)
vms_test(fork LABELS unit VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect)
# ASan's view of tasks (src/track.h) on unusual paths: its fake stacks (the cases skip
# in the other builds).
vms_test(track LABELS unit memcheck cross)
# Which calls a signal handler may make (docs/api.md, Signal handlers), from handlers that
# interrupt fibers switching, raw stacks allocated and freed, and a vms thread.
vms_test(signal_safe LABELS unit)
