/*
 * header_iso.c - the installed header compiles on its own in strict ISO C (c99, c11),
 * in POSIX mode and as C++, with every warning an error (tests/header.cmake compiles this
 * file with -fsyntax-only; nothing runs). Only vms_handle_fault needs POSIX's siginfo_t:
 * with VMS_WANT_HANDLE_FAULT (set with _POSIX_C_SOURCE) it must be declared.
 */
#include <vmstack.h>

static void body(void *arg)
{
    (void)arg;
    vms_fiber_yield();
}

int main(void)
{
    static vms_config c;   /* zero: defaults */
    c.flags = VMS_PAINT | VMS_END_CHECK | VMS_NO_SCRUB;
    if (vms_init(&c) != 0) return 1;
    vms_fiber *f = vms_fiber_create(body, 0, 0);
    while (vms_fiber_resume(f) == VMS_SUSPENDED) {}
    vms_fiber_destroy(f);
    vms_stack *st = vms_stack_alloc(0);
    vms_stack_free(st);
    vms_stats s;
    vms_usage u[1];
#ifdef VMS_WANT_HANDLE_FAULT
    int (*handle)(int, siginfo_t *, void *) = vms_handle_fault;
    (void)handle;
#endif
    return vms_get_stats(&s) + vms_stack_usage(u, 1) + (vms_stack_remaining() == 0) +
           (vms_stack_self() != 0) + vms_trim();
}
