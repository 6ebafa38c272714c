/*
 * selftest_clash.c - the one function of `vmstack selftest` that must be compiled with
 * -fstack-clash-protection (tools/demo.cmake sets it for this file alone).
 *
 * A frame larger than the guard would step over it; with stack-clash protection the
 * compiler touches every page on the way down, so the first touch lands in the guard
 * and vmstack catches it. The selftest checks that this works on this system.
 */
#include <alloca.h>
#include <stddef.h>

int selftest_big_frame(size_t bytes);
int selftest_clash_protected(void);

/* 1 when this file was compiled with -fstack-clash-protection (tools/demo.cmake). */
int selftest_clash_protected(void)
{
#ifdef VMSTACK_CLASH_PROTECTION
    return 1;
#else
    return 0;
#endif
}

/* Allocates `bytes` on the stack and writes its lowest byte (the far side of the
 * guard when bytes exceeds the room left). Returns what it read back. */
__attribute__((noinline)) int selftest_big_frame(size_t bytes)
{
    volatile char *p = alloca(bytes);
    p[0] = 1;
    return p[0];
}
