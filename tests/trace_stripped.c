/*
 * trace_stripped.c - linked stripped (no .symtab; vms_* are not in its .dynsym either),
 * with vmstack linked in statically: the unsafe-kill rule cannot tell vmstack's frames
 * from the program's by name, so an overflow in an unnamed frame of this program is not
 * the task's alone to die of.
 */
#include "test.h"
#include "island.h"

#include <alloca.h>

static volatile unsigned long sink;
static long edge_leave;

static NOIPA void alloc_at_the_edge(void)
{
    vms_stack *s = vms_stack_alloc(0);
    sink += (unsigned long)(uintptr_t)s;
    vms_stack_free(s);
}

static void alloc_edge_fiber(void *arg)
{
    (void)arg;
    size_t rem = vms_stack_remaining();
    volatile char *p = alloca(rem - (size_t)(edge_leave + 64));
    p[0] = 1;
    sink += (unsigned long)p[0];
    alloc_at_the_edge();
}

static void alloc_edge_child(void *arg)
{
    edge_leave = *(long *)arg;
    vms_stack_free(vms_stack_alloc(0));
    vms_fiber *f = vms_fiber_create(alloc_edge_fiber, NULL, NULL);
    if (!f) _exit(3);
    int st = vms_fiber_resume(f);
    fflush(stdout);
    _exit(st == VMS_KILLED ? 4 : st == VMS_DONE ? 5 : 6);
}

/* An overflow inside vms_stack_alloc (which may hold vmstack's locks) near the end of a
 * fiber's stack, at every position from 96 bytes past the end to 512 bytes before it:
 * no fiber is killed alone, since no frame of this program has a name; the report says
 * why. Before, the frames inside vms_stack_alloc had no name, were taken for the
 * program's, and the fiber was killed alone (as in a stripped static program inside
 * malloc: then the C library's locks). */
TEST(overflow_in_a_stripped_program_holding_vmstack_aborts)
{
    NEED_GUARD_FAULTS();
    /* As fiber_kill's overflow_inside_vms_stack_alloc_aborts: under TSan the child hung
     * (an overflow inside the runtime, reached from vms_stack_alloc's atomics). */
    NO_TSAN("an overflow inside the runtime's locked code hangs the handler's atomics");
    static char out[64 * 1024];
    struct vms__sym s;
    vms__trace_load();
    if (vms__trace_symbolize((uintptr_t)&alloc_edge_child, &s) == 2)
        SKIP("the program has symbols: not stripped by this toolchain");
    int aborted = 0;
    for (long leave = -96; leave <= 512; leave += 8) {
        int st = tst_fork(alloc_edge_child, &leave, out, sizeof out);
        if (WIFEXITED(st) && WEXITSTATUS(st) == 5) continue;   /* enough room */
        ASSERT_STR_CONTAINS(out, "vmstack: stack overflow in fiber");
        ASSERT_STR_NOT_CONTAINS(out, "vmstack: killed");
        ASSERT_STR_CONTAINS(out, "vmstack: cannot kill safely: the fault happened inside 0x");
        ASSERT_STR_CONTAINS(out, "an object without a symbol table that holds vmstack");
        ASSERT_STR_CONTAINS(out, "(keep the symbol table: strip --strip-debug, or link "
                                 "libvmstack.so)");
        ASSERT_STR_CONTAINS(out, "vmstack: aborting\n");
        ASSERT_SIGNALED(st, SIGSEGV);
        aborted++;
    }
    ASSERT_GT(aborted, 0);
}
