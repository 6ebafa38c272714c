/*
 * tools.h - what the vmstack command's files share: one entry point per subcommand.
 * Each cmd_<sub>.c defines vms_cmd_<sub>(argc, argv) where argv[0] is the subcommand;
 * it returns the process exit status.
 */
#ifndef VMSTACK_TOOLS_H
#define VMSTACK_TOOLS_H

int vms_cmd_info(int argc, char **argv);
int vms_cmd_demo(int argc, char **argv);
int vms_cmd_bench(int argc, char **argv);
int vms_cmd_checkstack(int argc, char **argv);
int vms_cmd_selftest(int argc, char **argv);

#endif
