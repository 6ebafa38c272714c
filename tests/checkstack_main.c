/*
 * checkstack_main.c - a stand-alone driver for `vmstack checkstack` built from the
 * checkstack sources alone, so its tests (and fuzzing seeds) need neither the vmstack
 * library nor the rest of the command. `checkstack_cli ARGS` == `vmstack checkstack ARGS`.
 */
#include "tools.h"

#ifdef CS_REALLOC
#include <stdlib.h>
/* checkstack_cli_limits (tests/checkstack.cmake): the command's realloc fails when
 * CS_TEST_REALLOC_FAILS is set in the environment, as on a heap out of room. */
void *CS_REALLOC(void *p, size_t n);
void *CS_REALLOC(void *p, size_t n)
{
    if (getenv("CS_TEST_REALLOC_FAILS")) return NULL;
    return realloc(p, n);
}
#endif

int main(int argc, char **argv)
{
    argv[0] = "checkstack";
    return vms_cmd_checkstack(argc, argv);
}
