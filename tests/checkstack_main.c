/*
 * checkstack_main.c - a stand-alone driver for `vmstack checkstack` built from the
 * checkstack sources alone, so its tests (and fuzzing seeds) need neither the vmstack
 * library nor the rest of the command. `checkstack_cli ARGS` == `vmstack checkstack ARGS`.
 */
#include "tools.h"

int main(int argc, char **argv)
{
    argv[0] = "checkstack";
    return vms_cmd_checkstack(argc, argv);
}
