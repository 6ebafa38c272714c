/*
 * vmstack.c - the `vmstack` command: dispatches to one subcommand per cmd_<sub>.c file.
 */
#include "tools.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
    int failed;   /* its exit status when it could not do its work (see finish) */
} cmds[] = {
    { "info", vms_cmd_info, "page size, guard method, mapping limit, defaults, build options", 1 },
    { "demo", vms_cmd_demo, "fibers and threads doing recursive work; one overflows: the oops, the rest finish", 1 },
    { "bench", vms_cmd_bench, "benchmark table: vmstack against baselines in the same run (--json)", 1 },
    { "checkstack", vms_cmd_checkstack, "largest stack frames of a binary; worst-case depth from .su/.ci files", 2 },
    { "selftest", vms_cmd_selftest, "check in child processes that overflows are caught on this system", 1 },
};

/* Output that could not be written (a full disk, a closed descriptor) is a failure: the
 * command exited 0 over a truncated `bench --json` or checkstack report. Then rc becomes
 * the command's failure status: 1, or checkstack's 2 (unreadable input), which wins over
 * its 1 and 3 as its docs say; a failure status already there otherwise stands. */
static int finish(int rc, int failed)
{
    int flushed = fflush(stdout), e = errno;
    if (flushed == 0 && !ferror(stdout)) return rc;
    /* errno is the flush's; an earlier write's failure left only the error flag. */
    fprintf(stderr, "vmstack: error: cannot write the output: %s\n",
            flushed != 0 ? strerror(e) : "a write to standard output failed");
    return rc == 0 || failed == 2 ? failed : rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: vmstack <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        fprintf(f, "  %-11s %s\n", cmds[i].name, cmds[i].help);
    fprintf(f, "  %-11s %s\n", "help", "this text; `vmstack help <command>` (or `<command> --help`): its options");
}

static int unknown(const char *name)
{
    fprintf(stderr, "vmstack: error: unknown command `%s`\n", name);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "help") && argc >= 3) {
        /* `vmstack help CMD` is `vmstack CMD --help`. */
        if (argc > 3) {
            fprintf(stderr, "vmstack: error: help takes one command, not %d\n", argc - 2);
            return 2;
        }
        for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
            if (strcmp(argv[2], cmds[i].name) != 0) continue;
            char *sub[] = { argv[2], (char *)"--help", NULL };
            return finish(cmds[i].fn(2, sub), cmds[i].failed);
        }
        if (!strcmp(argv[2], "help") || !strcmp(argv[2], "--help") || !strcmp(argv[2], "-h")) {
            /* help is listed with the commands: its help is this text (`help --help` too,
             * as every command takes --help). */
            usage(stdout);
            return finish(0, 1);
        }
        return unknown(argv[2]);
    }
    if (argc < 2 || !strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : finish(0, 1);
    }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        if (strcmp(argv[1], cmds[i].name) != 0) continue;
        return finish(cmds[i].fn(argc - 1, argv + 1), cmds[i].failed);
    }
    return unknown(argv[1]);
}
