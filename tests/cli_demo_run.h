/*
 * cli_demo_run.h - runs the built `vmstack` command (VMSTACK_CMD, its path, set by
 * tests/cli.cmake) as a subprocess for the cli tests of `vmstack demo` and `selftest`,
 * and picks numbers out of its output. No shell: argv goes straight to execv.
 */
#ifndef VMSTACK_CLI_DEMO_RUN_H
#define VMSTACK_CLI_DEMO_RUN_H

#include "test.h"

/* tst_fork's child: becomes the command argv[0] names (VMSTACK_CMD, or another built
 * command). */
static inline void cli_exec(void *argv)
{
    const char *cmd = ((const char *const *)argv)[0];
    execv(cmd, (char *const *)argv);
    fprintf(stderr, "cannot run %s: %s\n", cmd, strerror(errno));
    _exit(127);
}

/* Runs VMSTACK_CMD with args (NULL-terminated, without argv[0]); stdout and stderr both
 * go to out. Returns the wait status. */
static inline int cli_run(const char *const *args, char *out, size_t cap)
{
    const char *argv[32];
    int n = 0;
    argv[n++] = VMSTACK_CMD;
    for (; args[n - 1] && n < 31; n++) argv[n] = args[n - 1];
    argv[n] = NULL;
    return tst_fork(cli_exec, (void *)argv, out, cap);
}

/* The line of out that starts with prefix (NULL when there is none). */
static inline const char *cli_line(const char *out, const char *prefix)
{
    size_t n = strlen(prefix);
    for (const char *l = out; l && *l; ) {
        if (!strncmp(l, prefix, n)) return l;
        l = strchr(l, '\n');
        if (l) l++;
    }
    return NULL;
}

/* How many lines of out start with prefix. */
static inline int cli_count(const char *out, const char *prefix)
{
    int k = 0;
    size_t n = strlen(prefix);
    for (const char *l = out; l && *l; ) {
        if (!strncmp(l, prefix, n)) k++;
        l = strchr(l, '\n');
        if (l) l++;
    }
    return k;
}

#endif
