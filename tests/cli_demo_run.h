/*
 * cli_demo_run.h - runs the built `vmstack` command (VMSTACK_CMD, its path, set by
 * tests/cli.cmake) as a subprocess for the cli tests of `vmstack demo` and `selftest`,
 * and picks numbers out of its output. No shell: argv goes straight to execv.
 */
#ifndef VMSTACK_CLI_DEMO_RUN_H
#define VMSTACK_CLI_DEMO_RUN_H

#include "test.h"

#include <stdbool.h>
#include <sys/mount.h>

/* tst_fork's child: becomes the command argv[0] names (VMSTACK_CMD, or another built
 * command). */
static inline void cli_exec(void *argv)
{
    const char *cmd = ((const char *const *)argv)[0];
#ifdef VMSTACK_CMD_EMULATOR
    /* The cross build: through the emulator (CMAKE_CROSSCOMPILING_EMULATOR). */
    const char *emu[] = { VMSTACK_CMD_EMULATOR }, *all[48];
    size_t n = 0;
    for (size_t i = 0; i < sizeof emu / sizeof emu[0]; i++) all[n++] = emu[i];
    for (const char *const *a = argv; *a && n < 47; a++) all[n++] = *a;
    all[n] = NULL;
    execvp(all[0], (char *const *)all);
    cmd = all[0];
#else
    execv(cmd, (char *const *)argv);
#endif
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

/* Writes s to the file at path; false on failure. */
static inline bool cli_write_file(const char *path, const char *s)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    bool ok = write(fd, s, strlen(s)) == (ssize_t)strlen(s);
    return close(fd) == 0 && ok;
}

/* Exit status of a tst_fork child that could not hide files (cli_hide): the test skips. */
#define CLI_CANNOT_HIDE 77

/* In a tst_fork child, before it runs a command: a user and mount namespace of the
 * child's own in which each file of the NULL-terminated list reads as empty (/dev/null
 * bound over it) and each directory of the other list is empty (a tmpfs mounted on it),
 * as in a sandbox that hides them. /proc/self/... names the child, which the command
 * it execs stays. Exits CLI_CANNOT_HIDE where unprivileged user namespaces are not
 * allowed. */
static inline void cli_hide(const char *const *files, const char *const *dirs)
{
    char map[64];
    uid_t uid = getuid();
    gid_t gid = getgid();
    if (unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) _exit(CLI_CANNOT_HIDE);
    cli_write_file("/proc/self/setgroups", "deny");
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)uid);
    if (!cli_write_file("/proc/self/uid_map", map)) _exit(CLI_CANNOT_HIDE);
    snprintf(map, sizeof map, "0 %u 1\n", (unsigned)gid);
    if (!cli_write_file("/proc/self/gid_map", map)) _exit(CLI_CANNOT_HIDE);
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) _exit(CLI_CANNOT_HIDE);
    for (const char *const *f = files; f && *f; f++)
        if (mount("/dev/null", *f, NULL, MS_BIND, NULL) != 0) _exit(CLI_CANNOT_HIDE);
    for (const char *const *d = dirs; d && *d; d++)
        if (mount("none", *d, "tmpfs", 0, NULL) != 0) _exit(CLI_CANNOT_HIDE);
}

#endif
