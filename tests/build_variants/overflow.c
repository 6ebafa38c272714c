/*
 * overflow.c - a user program that tests/build_variants.cmake builds against an
 * installed vmstack in several ways (optimization, frame pointers, static link, strip):
 * a fiber recurses until it overruns its stack. vmstack's report goes to stderr; the
 * program checks the vms_oops it gets back against the stack it knows and prints
 * "oops: consistent".
 */
#include <vmstack.h>

#include <stdio.h>
#include <string.h>

static volatile int never, sink;

static __attribute__((noinline)) int deep(int n)
{
    volatile char pad[64];
    if (never) return 0;
    pad[0] = (char)n;
    return deep(n + 1) + pad[0];
}

static __attribute__((noinline)) int outer(int n)
{
    int r = deep(n);
    return r + 1;
}

static void fiber_main(void *arg)
{
    (void)arg;
    sink = outer(sink);
    sink++;
}

int main(void)
{
    vms_fiber *f = vms_fiber_create(fiber_main, NULL, &(vms_fiber_attr){ .name = "variant" });
    if (!f) return 2;
    const vms_stack *st = vms_fiber_stack(f);
    char *base = vms_stack_base(st);
    size_t size = vms_stack_size(st);
    int state = vms_fiber_resume(f);
    const vms_oops *o = vms_fiber_oops(f);
    if (state != VMS_KILLED || !o) {
        printf("not killed: state %d\n", state);
        return 1;
    }
    /* The fault lies below the base by the overrun; the trace starts at the pc. */
    int ok = o->kind == VMS_OVERFLOW && (char *)o->stack_base == base &&
             o->stack_size == size && (char *)o->fault_addr < base &&
             o->overrun == (size_t)(base - (char *)o->fault_addr) && o->depth > 100 &&
             o->trace[0] == o->pc && strcmp(o->name, "variant") == 0;
    printf("oops: %s\n", ok ? "consistent" : "INCONSISTENT");
    vms_fiber_destroy(f);
    return ok ? 0 : 1;
}
