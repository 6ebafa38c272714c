/* Work shared by the fiber and thread tests that overflow on purpose: a recursion that
 * cannot become a loop, and a well-behaved and an overflowing fiber body. Static, and
 * marked unused: not every test file uses all of them. */
#ifndef VMSTACK_TESTS_TASK_WORK_H
#define VMSTACK_TESTS_TASK_WORK_H

#include "test.h"      /* NOIPA */

#include <vmstack.h>

static volatile int never;
static volatile unsigned long sink;

/* A volatile frame per level and a result that depends on the level below, so the
 * compiler can neither turn it into a loop nor drop it. With limit 0 it never stops
 * (until the guard). The name "recurse" is what tests find in the call traces. */
__attribute__((unused)) static NOIPA unsigned long recurse(unsigned long n, unsigned long limit)
{
    volatile char buf[128];
    buf[n % sizeof buf] = (char)n;
    if (limit && n >= limit) return buf[n % sizeof buf];
    if (never) return 0;
    return recurse(n + 1, limit) + buf[(n * 7) % sizeof buf];
}

struct job {
    int index;
    unsigned long result;
    int done;
};

/* A well-behaved fiber: recursion 40 deep, with yields between rounds. The result is
 * computed from values on its own stack, so a kill that disturbed another stack would
 * show up as a wrong result (expected: job_result(index)). */
__attribute__((unused)) static void good_fiber(void *arg)
{
    struct job *j = arg;
    volatile unsigned long acc = (unsigned long)j->index;
    for (int round = 0; round < 3; round++) {
        acc = acc * 3 + (unsigned long)round;
        sink += recurse(0, 40);
        vms_fiber_yield();
    }
    j->result = acc;
    j->done = 1;
}

/* What good_fiber computes for index i. */
__attribute__((unused)) static unsigned long job_result(int i)
{
    unsigned long acc = (unsigned long)i;
    for (int round = 0; round < 3; round++) acc = acc * 3 + (unsigned long)round;
    return acc;
}

/* Yields once, then overflows: its resumer sees VMS_KILLED. arg is a struct job or NULL. */
__attribute__((unused)) static void bad_fiber(void *arg)
{
    struct job *j = arg;
    vms_fiber_yield();
    sink += recurse(0, 0);          /* overflows */
    if (j) j->done = 1;             /* never reached */
}

#endif
