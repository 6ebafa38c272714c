# The foundation (issue 2): stacks, arena, cache, options. Both guard methods. All but
# stack also run in the aarch64 cross build (label cross): stack's cases pass or skip
# under qemu-user too, but take ~12 min there (threads), too long for that step.
vms_test(stack LABELS unit memcheck TIMEOUT 300)
vms_test(stack LABELS unit VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect TIMEOUT 300)
vms_test(options LABELS unit memcheck cross)
vms_test(cache_nomem LABELS unit cross)
# The os layer's one-time decisions about the kernel (guard method, process_madvise).
vms_test(os_probe LABELS unit cross)
# Arenas under a tight RLIMIT_AS (ulimit -v).
vms_test(arena_limit LABELS unit cross)
vms_test(cache_nokey LABELS unit cross)
# vms_trim: idle stacks' memory back at once.
vms_test(trim LABELS unit memcheck cross)
vms_test(trim LABELS unit VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect)
# Restricted environments: system calls refused by a seccomp filter, low limits.
vms_test(restricted LABELS unit death cross)
vms_test(restricted LABELS unit death cross VARIANT mprotect ENV VMSTACK_GUARD_METHOD=mprotect)
