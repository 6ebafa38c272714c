# The async-signal-safe island (issue 3): report formatting, symbols and walks, the
# fault handler's classification, chaining, policies and reports. Death tests fork.
# The units and the kill tests also run in the aarch64 cross build (label cross).
vms_test(oops_format LABELS unit cross)
vms_test(trace LABELS unit cross COMPILE_OPTIONS -fno-omit-frame-pointer -O1)
# -fstack-clash-protection: the huge-frame case must probe its guard page by page.
vms_test(guard LABELS death COMPILE_OPTIONS -fno-omit-frame-pointer -fstack-clash-protection TIMEOUT 180)
vms_test(guard LABELS death VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect TIMEOUT 180)
vms_test(guard_tasks GUARDS LABELS death stress cross COMPILE_OPTIONS -fno-omit-frame-pointer TIMEOUT 300)
vms_test(guard_tasks GUARDS LABELS death stress VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect TIMEOUT 300)
