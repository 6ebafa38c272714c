/*
 * header_iso.c - the installed header compiles on its own in strict ISO C (c89 to c17),
 * in POSIX mode and as C++ (c++98 to c++20), with every warning an error, with gcc and
 * clang (tests/header.cmake compiles this file with -fsyntax-only; nothing runs). Only
 * vms_handle_fault needs POSIX's siginfo_t: with VMS_WANT_HANDLE_FAULT (set with
 * _POSIX_C_SOURCE) it must be declared.
 *
 * This file is itself C89 and warning-free C++ (declarations first, NULL for null
 * pointers, no casts): what a user's code would be. It names every public name, and
 * checks at compile time the constants and the field order that ../shared/DESIGN.md
 * fixes (a negative array size fails: C89 has no static assertion).
 */
#include <vmstack.h>

#define VMS_CHECK(name, cond) typedef char vms_check_##name[(cond) ? 1 : -1]

VMS_CHECK(kill_task, VMS_KILL_TASK == 0);
VMS_CHECK(abort, VMS_ABORT == 1);
VMS_CHECK(paint, VMS_PAINT == 1);
VMS_CHECK(end_check, VMS_END_CHECK == 2);
VMS_CHECK(force_mprotect, VMS_FORCE_MPROTECT == 4);
VMS_CHECK(no_scrub, VMS_NO_SCRUB == 8);
VMS_CHECK(overflow, VMS_OVERFLOW == 1);
VMS_CHECK(underflow, VMS_UNDERFLOW == 2);
VMS_CHECK(ready, VMS_READY == 0);
VMS_CHECK(running, VMS_RUNNING == 1);
VMS_CHECK(suspended, VMS_SUSPENDED == 2);
VMS_CHECK(done, VMS_DONE == 3);
VMS_CHECK(killed, VMS_KILLED == 4);
VMS_CHECK(buckets, VMS_USAGE_BUCKETS == 32);
VMS_CHECK(version, VMSTACK_VERSION_MAJOR >= 0 && VMSTACK_VERSION_MINOR >= 0 &&
                   VMSTACK_VERSION_PATCH >= 0);
/* Fields in the contract's order (they are only ever appended). */
VMS_CHECK(config_order, offsetof(vms_config, stack_size) == 0 &&
          offsetof(vms_config, guard_size) > offsetof(vms_config, stack_size) &&
          offsetof(vms_config, cache_per_thread) > offsetof(vms_config, guard_size) &&
          offsetof(vms_config, on_overflow) > offsetof(vms_config, cache_per_thread) &&
          offsetof(vms_config, report_fd) > offsetof(vms_config, on_overflow) &&
          offsetof(vms_config, flags) > offsetof(vms_config, report_fd));
VMS_CHECK(attr_order, offsetof(vms_fiber_attr, stack_size) == 0 &&
          offsetof(vms_fiber_attr, name) > offsetof(vms_fiber_attr, stack_size));
VMS_CHECK(oops_order, offsetof(vms_oops, kind) == 0 &&
          offsetof(vms_oops, fault_addr) > offsetof(vms_oops, kind) &&
          offsetof(vms_oops, pc) > offsetof(vms_oops, fault_addr) &&
          offsetof(vms_oops, sp) > offsetof(vms_oops, pc) &&
          offsetof(vms_oops, stack_base) > offsetof(vms_oops, sp) &&
          offsetof(vms_oops, stack_size) > offsetof(vms_oops, stack_base) &&
          offsetof(vms_oops, overrun) > offsetof(vms_oops, stack_size) &&
          offsetof(vms_oops, tid) > offsetof(vms_oops, overrun) &&
          offsetof(vms_oops, name) > offsetof(vms_oops, tid) &&
          offsetof(vms_oops, depth) > offsetof(vms_oops, name) &&
          offsetof(vms_oops, trace) > offsetof(vms_oops, depth) &&
          sizeof(vms_oops) - offsetof(vms_oops, trace) >= 32 * sizeof(void *));
VMS_CHECK(stats_order, offsetof(vms_stats, stacks_live) == 0 &&
          offsetof(vms_stats, stacks_cached) > offsetof(vms_stats, stacks_live) &&
          offsetof(vms_stats, arenas) > offsetof(vms_stats, stacks_cached) &&
          offsetof(vms_stats, reserved_bytes) > offsetof(vms_stats, arenas) &&
          offsetof(vms_stats, resident_bytes) > offsetof(vms_stats, reserved_bytes) &&
          offsetof(vms_stats, mappings) > offsetof(vms_stats, resident_bytes) &&
          offsetof(vms_stats, overflows) > offsetof(vms_stats, mappings) &&
          offsetof(vms_stats, guard_method) > offsetof(vms_stats, overflows) &&
          offsetof(vms_stats, tainted) > offsetof(vms_stats, guard_method));

static void body(void *arg)
{
    (void)arg;
    vms_fiber_yield();
}

static void *thread_body(void *arg)
{
    return arg;
}

static void hook(const vms_oops *oops, void *ctx)
{
    (void)oops;
    (void)ctx;
}

int main(void)
{
    static vms_config c;   /* zero: defaults */
    static vms_fiber_attr a;
    vms_fiber *f;
    vms_stack *st;
    const vms_stack *fst;
    const vms_oops *oops;
    vms_stats s;
    vms_usage u[1];
    pthread_t t;
    void *res = NULL;
    int state;
#ifdef VMS_WANT_HANDLE_FAULT
    int (*handle)(int, siginfo_t *, void *) = vms_handle_fault;
    (void)handle;
#endif

    c.on_overflow = VMS_KILL_TASK;
    c.flags = VMS_PAINT | VMS_END_CHECK | VMS_NO_SCRUB;
    if (vms_init(&c) != 0) return 1;
    vms_set_oops_hook(hook, NULL);
    a.name = "iso";
    f = vms_fiber_create(body, NULL, &a);
    while ((state = vms_fiber_resume(f)) == VMS_SUSPENDED) {}
    oops = vms_fiber_oops(f);
    if (state == VMS_KILLED && oops && oops->kind == VMS_OVERFLOW) return 2;
    fst = vms_fiber_stack(f);
    if (vms_fiber_self() != NULL || vms_fiber_state(f) != VMS_DONE ||
        vms_stack_max_used(fst) > vms_stack_size(fst))
        return 3;
    vms_fiber_destroy(f);
    st = vms_stack_alloc(0);
    if (vms_stack_base(st) == vms_stack_top(st)) return 4;
    vms_stack_free(st);
    if (vms_thread_create(&t, NULL, thread_body, NULL) != 0 || pthread_join(t, &res) != 0 ||
        res == VMS_THREAD_KILLED)
        return 5;
    return vms_get_stats(&s) + vms_stack_usage(u, 1) + (vms_stack_remaining() == 0) +
           (vms_stack_self() != NULL) + vms_trim();
}
