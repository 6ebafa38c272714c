/*
 * cli_info.c - `vmstack info` as users run it: what it says about this system matches
 * what the test finds itself (page size, vm.max_map_count, the guard method the library
 * chose here), the defaults follow the VMSTACK_* variables, and bad options are errors.
 */
#include "cli_demo_run.h"
#include "seccomp_filter.h"

#include <vmstack.h>

#include <sys/auxv.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

static char out[1 << 16];

/* tst_fork's child: clears every VMSTACK_* variable it inherited (a CI step may set
 * one), sets the NULL-terminated "NAME=value" list, then runs `vmstack info` with args. */
struct info_run {
    const char *const *env;
    const char *const *args;
    const char *valgrind;   /* run `vmstack info` under this valgrind, or NULL */
    const char *cmd;        /* the command to run: NULL for VMSTACK_CMD */
};

static void info_exec(void *arg)
{
    const struct info_run *r = arg;
    extern char **environ;
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            if (strncmp(*e, "VMSTACK_", 8) != 0) continue;
            char name[128];
            size_t n = strcspn(*e, "=");
            snprintf(name, sizeof name, "%.*s", (int)n, *e);
            unsetenv(name);
            again = 1;
            break;
        }
    }
    for (const char *const *e = r->env; e && *e; e++) putenv((char *)*e);
    if (r->valgrind) {
        const char *argv[] = { r->valgrind, "-q", "--error-exitcode=99", VMSTACK_CMD, "info",
                               NULL };
        execv(r->valgrind, (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", r->valgrind, strerror(errno));
        _exit(127);
    }
    const char *argv[8] = { r->cmd ? r->cmd : VMSTACK_CMD, "info" };
    int n = 2;
    for (const char *const *a = r->args; a && *a && n < 7; a++) argv[n++] = *a;
    argv[n] = NULL;
    cli_exec((void *)argv);
}

static int info(const char *const *env, const char *const *args)
{
    struct info_run r = { env, args, NULL, NULL };
    return tst_fork(info_exec, &r, out, sizeof out);
}

/* Guards, and no sanitizer runtime (which refuses to run under Valgrind). */
#if defined(VMSTACK_VMAP) && !defined(TST_ASAN) && !defined(TST_TSAN)
#define VALGRIND_RUNS_INFO 1
/* `vmstack info` under valgrind (found in PATH) with env: the wait status, or -1 when
 * there is no valgrind. */
static int info_under_valgrind(const char *const *env)
{
    static char path[4096];
    const char *p = getenv("PATH");
    for (path[0] = '\0'; p && *p && !path[0];) {
        size_t n = strcspn(p, ":");
        snprintf(path, sizeof path, "%.*s/valgrind", (int)n, p);
        if (access(path, X_OK) != 0) path[0] = '\0';
        p += n + (p[n] == ':');
    }
    if (!path[0]) return -1;
    struct info_run r = { env, NULL, path, NULL };
    return tst_fork(info_exec, &r, out, sizeof out);
}
#endif

/* The value after the label of a "  label   value" line, or a failure. */
static const char *value_of(const char *label)
{
    char prefix[64];
    snprintf(prefix, sizeof prefix, "  %s ", label);
    const char *l = cli_line(out, prefix);
    if (!l) TST_FAIL("no \"%s\" line in:\n%s", label, out);
    l += strlen(prefix);
    while (*l == ' ') l++;
    return l;
}

static void assert_value(const char *label, const char *want)
{
    const char *v = value_of(label);
    if (strncmp(v, want, strlen(want)) != 0)
        TST_FAIL("\"%s\" is \"%.60s\", wanted \"%s\"", label, v, want);
}

TEST(reports_this_system)
{
    const char *env[] = { NULL };
    int st = info(env, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info failed:\n%s", out);
    char want[64];
    snprintf(want, sizeof want, "%ld KiB (%ld bytes)", sysconf(_SC_PAGESIZE) / 1024,
             sysconf(_SC_PAGESIZE));
    assert_value("page size", want);
    FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
    long maxmap = -1;
    if (f) {
        if (fscanf(f, "%ld", &maxmap) != 1) maxmap = -1;
        fclose(f);
    }
    if (maxmap > 0) {
        snprintf(want, sizeof want, "%ld\n", maxmap);
        assert_value("vm.max_map_count", want);
    }
    ASSERT_GT(atol(value_of("mappings in this process")), 0);
    /* The method the library picks here, in this process, is the one info reports
     * (unless this process was told to force one). */
    vms_stats s;
    ASSERT_EQ(vms_get_stats(&s), 0);
#ifdef VMSTACK_VMAP
    if (!getenv("VMSTACK_GUARD_METHOD")) assert_value("guard method", s.guard_method);
    const char *m = value_of("guard method");
    ASSERT(!strncmp(m, "madvise (", 9) || !strncmp(m, "mprotect (", 10));
    ASSERT_NULL(cli_line(out, "  guards used "));
    assert_value("VMSTACK_VMAP", "ON");
#else
    assert_value("guards used", "none: this build is the direct backend");
    assert_value("VMSTACK_VMAP", "OFF");
#endif
    assert_value("overflow handler", "installed (SIGSEGV and SIGBUS)\n");
    /* The contract's defaults. */
    assert_value("stack size", "256 KiB (262144 bytes)");
    assert_value("guard size", "64 KiB (65536 bytes)");
    assert_value("on overflow", "kill the task");
    assert_value("scrub reused stacks", "yes");
    assert_value("stack painting", "off");
    assert_value("end-of-stack check", "off");
}

TEST(follows_the_environment)
{
    const char *env[] = { "VMSTACK_STACK_SIZE=100k", "VMSTACK_GUARD_SIZE=5000",
                          "VMSTACK_CACHE=3", "VMSTACK_ON_OVERFLOW=abort", "VMSTACK_SCRUB=0",
                          "VMSTACK_PAINT=1", "VMSTACK_END_CHECK=yes", NULL };
    int st = info(env, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info failed:\n%s", out);
    /* Sizes as the library rounds them: the stack to its class, the guard to pages. */
    assert_value("stack size", "128 KiB (131072 bytes)");
    char want[64];
    long page = sysconf(_SC_PAGESIZE);
    long guard = (5000 + page - 1) / page * page;
    snprintf(want, sizeof want, "(%ld bytes)", guard);
    ASSERT_STR_CONTAINS(value_of("guard size"), want);
    assert_value("cached stacks per thread", "3\n");
    assert_value("on overflow", "abort");
    assert_value("scrub reused stacks", "no");
    assert_value("stack painting", "on");
    assert_value("end-of-stack check", "on");
}

TEST(malformed_variable_warns_and_keeps_the_default)
{
    const char *env[] = { "VMSTACK_STACK_SIZE=lots", NULL };
    int st = info(env, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info failed:\n%s", out);
    ASSERT_STR_CONTAINS(out, "VMSTACK_STACK_SIZE=\"lots\" is not a size");
    assert_value("stack size", "256 KiB (262144 bytes)");
}

TEST(forced_mprotect)
{
#ifndef VMSTACK_VMAP
    SKIP("this build has the direct backend (VMSTACK_VMAP=OFF): no guard method is used");
#else
    const char *env[] = { "VMSTACK_GUARD_METHOD=mprotect", NULL };
    int st = info(env, NULL);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info failed:\n%s", out);
    assert_value("guard method", "mprotect (forced by configuration; two mappings per stack)");
    /* The limit the mprotect method runs into, in stacks: the mappings left below
     * vm.max_map_count, less the sixteenth the library leaves to the rest of the
     * program (it was not subtracted: "about 973" with vm.max_map_count=2000, where 910
     * stacks could be had), two per stack. */
    long max = atol(value_of("vm.max_map_count")), maps = atol(value_of("mappings in this process"));
    ASSERT_GT(max, 0);
    ASSERT_GT(maps, 0);
    ASSERT_EQ(atol(value_of("stacks before the limit") + strlen("about ")),
              (max - max / 16 - maps) / 2);
#endif
}

/* Valgrind takes madvise guards for readable memory (its leak check then reads them all,
 * fault by fault): under it the library chooses mprotect guards, unless the environment
 * asks for madvise. */
TEST(valgrind_gets_mprotect_guards)
{
#ifndef VMSTACK_VMAP
    SKIP("this build has the direct backend (VMSTACK_VMAP=OFF): no guard method is used");
#elif defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("a sanitizer's runtime refuses to run under Valgrind");
#else
    int st = info_under_valgrind(NULL);
    if (st == -1) SKIP("valgrind is not installed (CI installs it)");
    /* The aarch64 cross build: the host's valgrind finds the command's platform in its
     * ELF header and has no tool for it. */
    const char *no_tool = strstr(out, "valgrind: failed to start tool ");
    if (no_tool && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        SKIP("this valgrind cannot run the command: %.*s", (int)strcspn(no_tool, "\n"), no_tool);
    if (strstr(out, "debuginfo reader"))    /* clang 14's DWARF 5, under Valgrind 3.19 */
        SKIP("this Valgrind cannot read the debug information of this build");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info under valgrind failed:\n%s", out);
    assert_value("guard method", "mprotect (chosen under Valgrind, which does not know "
                                 "madvise guards; VMSTACK_GUARD_METHOD=madvise overrides;");
    /* The tool is built as the library is: a build without Valgrind's hooks says so. */
    const char *warning = "vmstack: warning: running under Valgrind, but this vmstack was "
                          "built without -DVMSTACK_VALGRIND=ON";
    if (strstr(value_of("VMSTACK_VALGRIND"), "OFF")) ASSERT_STR_CONTAINS(out, warning);
    else ASSERT(!strstr(out, warning));
    const char *env[] = { "VMSTACK_GUARD_METHOD=madvise", NULL };
    st = info_under_valgrind(env);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info under valgrind failed:\n%s", out);
    const char *m = value_of("guard method");
    ASSERT(!strncmp(m, "madvise (", 9) || !strncmp(m, "mprotect (MADV_GUARD_INSTALL missing", 36));
#endif
}

TEST(options)
{
    const char *help[] = { "--help", NULL };
    ASSERT_EXITED(info(NULL, help), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack info\n");
    const char *bad[] = { "--frobnicate", NULL };
    ASSERT_EXITED(info(NULL, bad), 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: info: unknown option `--frobnicate`");
}

/* tst_fork's child: `vmstack info` where /proc/sys/vm/max_map_count and /proc/self/maps
 * read as empty and /sys/kernel/mm/transparent_hugepage is empty, with the environment
 * given (NULL-terminated "NAME=value" list). */
static void hidden_proc_exec(void *env)
{
    static const char *const files[] = { "/proc/sys/vm/max_map_count", "/proc/self/maps", NULL };
    static const char *const dirs[] = { "/sys/kernel/mm/transparent_hugepage", NULL };
    cli_hide(files, dirs);
    struct info_run r = { env, NULL, NULL, NULL };
    info_exec(&r);
}

/* Where /proc or /sys cannot be read (a sandbox), info said "vm.max_map_count -1" and
 * "mappings in this process 0" (a negative errno when the file could not be opened), and
 * with mprotect guards "stacks limited by address space, not by vm.max_map_count": the
 * opposite of the truth. It says what it could not read. */
TEST(unreadable_proc_files_are_unknown)
{
    const char *env[] = { "VMSTACK_GUARD_METHOD=mprotect", NULL };
    int st = tst_fork(hidden_proc_exec, (void *)env, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == CLI_CANNOT_HIDE)
        SKIP("no user and mount namespace to hide /proc files in");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info failed:\n%s", out);
    assert_value("vm.max_map_count", "unknown (cannot read /proc/sys/vm/max_map_count)\n");
    assert_value("mappings in this process", "unknown (cannot read /proc/self/maps)\n");
    assert_value("transparent huge pages",
                 "unknown (cannot read /sys/kernel/mm/transparent_hugepage/enabled);\n");
#ifdef VMSTACK_VMAP
    assert_value("stacks", "limited by vm.max_map_count (two mappings each), unknown here\n");
    ASSERT_NULL(cli_line(out, "  stacks before the limit"));
#endif
}

/* tst_fork's child: `vmstack info` with mprotect guards where vm.max_map_count reads as
 * 16 (a file bound over /proc/sys/vm/max_map_count), fewer than the mappings any
 * process has. */
static __attribute__((unused)) void low_map_limit_exec(void *arg)
{
    (void)arg;
    cli_hide(NULL, NULL);
    char path[] = "/tmp/vmstack-maxmap-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0 || write(fd, "16\n", 3) != 3) _exit(CLI_CANNOT_HIDE);
    close(fd);
    int e = mount(path, "/proc/sys/vm/max_map_count", NULL, MS_BIND, NULL);
    unlink(path);
    if (e != 0) _exit(CLI_CANNOT_HIDE);
    const char *env[] = { "VMSTACK_GUARD_METHOD=mprotect", NULL };
    struct info_run r = { env, NULL, NULL, NULL };
    info_exec(&r);
}

/* With more mappings of its own than vm.max_map_count less the part left to the rest of
 * the program, info would say "about -17" stacks: it says 0. */
TEST(stacks_before_the_limit_never_negative)
{
#ifndef VMSTACK_VMAP
    SKIP("this build has the direct backend (VMSTACK_VMAP=OFF): no guard method is used");
#else
    int st = tst_fork(low_map_limit_exec, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == CLI_CANNOT_HIDE)
        SKIP("no user and mount namespace to fake vm.max_map_count in");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) TST_FAIL("info failed:\n%s", out);
    assert_value("vm.max_map_count", "16\n");
    ASSERT_GT(atol(value_of("mappings in this process")), 16);
    assert_value("stacks before the limit", "about 0 (two mappings each; 1 mappings are left");
#endif
}

/* tst_fork's child: `vmstack info` with a getauxval that has no AT_MINSIGSTKSZ. */
static __attribute__((unused)) void noauxv_exec(void *arg)
{
    (void)arg;
#ifdef VMSTACK_NOAUXV_LIB
    setenv("LD_PRELOAD", VMSTACK_NOAUXV_LIB, 1);
#endif
    struct info_run r = { NULL, NULL, NULL, NULL };
    info_exec(&r);
}

/* Before Linux 5.14 (x86) the kernel gives no AT_MINSIGSTKSZ, and getauxval gives 0:
 * info said "AT_MINSIGSTKSZ 0 bytes". Here the value the kernel gives is shown, and a
 * getauxval without it (preloaded) stands for an older kernel. */
TEST(minsigstksz_is_the_kernel_s_or_not_given)
{
    ASSERT_EXITED(info(NULL, NULL), 0);
    unsigned long v = getauxval(AT_MINSIGSTKSZ);
    char want[64];
    if (v) snprintf(want, sizeof want, "%lu bytes\n", v);
    else snprintf(want, sizeof want, "not given by this kernel");
    assert_value("AT_MINSIGSTKSZ", want);
#ifndef VMSTACK_NOAUXV_LIB
    SKIP("no preloadable getauxval in this build (sanitizer builds)");
#else
    ASSERT_EXITED(tst_fork(noauxv_exec, NULL, out, sizeof out), 0);
    assert_value("AT_MINSIGSTKSZ", "not given by this kernel (getauxval gives 0)\n");
#endif
}

/* A build configured with -DVMSTACK_DEMANGLE=OFF said "libiberty was not found at
 * configure time", found or not: it now names the option. */
TEST(cxx_names_line_says_why)
{
    ASSERT_EXITED(info(NULL, NULL), 0);
#if defined(VMSTACK_HAVE_LIBIBERTY)
    assert_value("C++ names in call traces", "demangled (libiberty)\n");
#elif defined(VMSTACK_DEMANGLE_OFF)
    assert_value("C++ names in call traces", "mangled (VMSTACK_DEMANGLE=OFF)\n");
#else
    assert_value("C++ names in call traces",
                 "mangled (libiberty was not found at configure time)\n");
#endif
}

/* vmstack-direct (the command on the direct backend, for `vmstack demo --direct`) is
 * built from the library's sources with its own definitions: it detects Valgrind as the
 * library does (it said "LD_PRELOAD only" where valgrind.h was found). */
TEST(direct_command_has_the_same_build_options)
{
#ifndef VMSTACK_DIRECT_CMD
    SKIP("no vmstack-direct in this build");
#else
    static const char *const labels[] = { "Valgrind detection", "VMSTACK_FAULT_INJECTION",
                                          "call traces" };
    char want[3][256];
    ASSERT_EXITED(info(NULL, NULL), 0);
    for (int i = 0; i < 3; i++) {
        const char *v = value_of(labels[i]);
        snprintf(want[i], sizeof want[i], "%.*s", (int)strcspn(v, "\n"), v);
    }
    struct info_run r = { NULL, NULL, NULL, VMSTACK_DIRECT_CMD };
    ASSERT_EXITED(tst_fork(info_exec, &r, out, sizeof out), 0);
    assert_value("guards used", "none: this build is the direct backend");
    for (int i = 0; i < 3; i++) assert_value(labels[i], want[i]);
#endif
}

/* `vmstack help CMD` is `vmstack CMD --help`; an unknown CMD is a usage error. */
static void help_exec(void *arg)
{
    const char *argv[] = { VMSTACK_CMD, "help", arg, NULL };
    cli_exec((void *)argv);
}

#ifndef VMSTACK_CMD_EMULATOR
/* Copies the program src to dst as root's, group nogroup (65534), mode set-group-ID: run
 * by root it gets AT_SECURE. 0, or an errno. */
static int setgid_copy(const char *src, const char *dst)
{
    int in = open(src, O_RDONLY | O_CLOEXEC), e = 0;
    if (in < 0) return errno;
    int o = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0700);
    if (o < 0) { e = errno; close(in); return e; }
    char buf[1 << 16];
    for (ssize_t n; (n = read(in, buf, sizeof buf)) != 0;) {
        if (n < 0 || write(o, buf, (size_t)n) != n) { e = errno ? errno : EIO; break; }
    }
    close(in);
    if (close(o) != 0 && !e) e = errno;
    /* chown clears the set-ID bits, so the mode comes after it. */
    if (!e && (chown(dst, 0, 65534) != 0 || chmod(dst, 02755) != 0)) e = errno;
    return e;
}

#endif

/* In a set-user-ID or set-group-ID program the VMSTACK_* variables come from a user with
 * fewer privileges than the program (who could turn scrubbing off): they are ignored with
 * a warning that does not echo the value. A set-group-ID copy of the command, run by root
 * with the group nogroup, is such a program; `id` copied the same way shows first that
 * the kernel honours the bit there (not on a nosuid mount, nor under no_new_privs). */
TEST(variables_are_ignored_in_a_set_group_id_program)
{
#ifdef VMSTACK_CMD_EMULATOR
    /* The emulator is what runs, and the bit of the command's file does not reach it. */
    SKIP("the command runs under the emulator");
#else
    if (geteuid() != 0) SKIP("needs root to make a set-group-ID copy of the command");
    char dir[] = "/tmp/vmstack-setgid-XXXXXX", id[64], cmd[64];
    ASSERT(mkdtemp(dir) != NULL);
    snprintf(id, sizeof id, "%s/id", dir);
    snprintf(cmd, sizeof cmd, "%s/vmstack", dir);
    struct statvfs sv;
    int e = statvfs(dir, &sv) != 0 ? errno : (sv.f_flag & ST_NOSUID) ? -1 : 0;
    if (!e) e = setgid_copy("/usr/bin/id", id);
    if (!e) e = setgid_copy(VMSTACK_CMD, cmd);
    int st = -1;
    if (!e) {
        const char *argv[] = { id, NULL };
        st = tst_fork(cli_exec, (void *)argv, out, sizeof out);
    }
    bool secure = !e && WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(out, "egid=65534");
    if (secure) {
        static const char *const env[] = { "VMSTACK_SCRUB=0", "VMSTACK_STACK_SIZE=1m",
                                           "VMSTACK_CACHE=\x1b[31mred", NULL };
        struct info_run r = { env, NULL, NULL, cmd };
        st = tst_fork(info_exec, &r, out, sizeof out);
    }
    unlink(id);
    unlink(cmd);
    rmdir(dir);
    if (e == -1) SKIP("%s is on a nosuid mount", dir);
    if (e) SKIP("cannot make a set-group-ID copy in %s: %s", dir, strerror(e));
    if (!secure) SKIP("the set-group-ID bit has no effect here (no_new_privs?): %s", out);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "defaults (VMSTACK_* variables ignored: secure execution):\n");
    ASSERT_STR_CONTAINS(out, "vmstack: warning: VMSTACK_SCRUB is ignored: this program runs "
                             "with privileges its user does not have");
    ASSERT_STR_CONTAINS(out, "vmstack: warning: VMSTACK_STACK_SIZE is ignored");
    ASSERT_STR_CONTAINS(out, "vmstack: warning: VMSTACK_CACHE is ignored");
    ASSERT_STR_NOT_CONTAINS(out, "\x1b[31m");
    assert_value("scrub reused stacks", "yes\n");
    assert_value("stack size", "256 KiB (262144 bytes)\n");
    assert_value("cached stacks per thread", "8\n");
#endif
}

TEST(help_of_a_command)
{
    ASSERT_EXITED(tst_fork(help_exec, (void *)"info", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack info\n");
    ASSERT_STR_NOT_CONTAINS(out, "commands:");
    ASSERT_EXITED(tst_fork(help_exec, (void *)"bench", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack bench");
    /* help is listed among the commands, so it has help too (it was "unknown command"). */
    ASSERT_EXITED(tst_fork(help_exec, (void *)"help", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack <command> [options]\n");
    ASSERT_STR_NOT_CONTAINS(out, "error");
    /* ... and takes --help like every command (it was "unknown command `--help`"). */
    ASSERT_EXITED(tst_fork(help_exec, (void *)"--help", out, sizeof out), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack <command> [options]\n");
    ASSERT_STR_NOT_CONTAINS(out, "error");
    ASSERT_EXITED(tst_fork(help_exec, (void *)"frobnicate", out, sizeof out), 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: unknown command `frobnicate`");
}

/* tst_fork's child: the command with args (NULL-terminated, after argv[0]) writing its
 * standard output to device; stderr stays the test's pipe. */
struct full_run {
    const char *device;
    const char *const *args;
};

static void full_exec(void *arg)
{
    const struct full_run *r = arg;
    int fd = open(r->device, O_WRONLY);
    if (fd < 0 || dup2(fd, 1) != 1) _exit(13);
    close(fd);
    const char *argv[8] = { VMSTACK_CMD };
    int n = 1;
    for (const char *const *a = r->args; *a && n < 7; a++) argv[n++] = *a;
    argv[n] = NULL;
    cli_exec((void *)argv);
}

/* Output that cannot be written is a failure, said on stderr: every command exited 0
 * with its output lost (a truncated `bench --json` or checkstack report on a full disk). */
TEST(output_that_cannot_be_written_fails)
{
    if (access("/dev/full", W_OK) != 0) SKIP("no /dev/full here");
    const char *info_args[] = { "info", NULL }, *help_args[] = { "help", NULL },
               *list_args[] = { "bench", "--list", NULL };
    struct full_run r = { "/dev/full", info_args };
    ASSERT_EXITED(tst_fork(full_exec, &r, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "vmstack: error: cannot write the output: No space left on device\n");
    r.args = help_args;
    ASSERT_EXITED(tst_fork(full_exec, &r, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "vmstack: error: cannot write the output: ");
    r.args = list_args;
    ASSERT_EXITED(tst_fork(full_exec, &r, out, sizeof out), 1);
    ASSERT_STR_CONTAINS(out, "vmstack: error: cannot write the output: ");
    /* Usage errors keep their own status: their text goes to stderr. */
    const char *bad_args[] = { "info", "--bogus", NULL };
    r = (struct full_run){ "/dev/full", bad_args };
    ASSERT_EXITED(tst_fork(full_exec, &r, out, sizeof out), 2);
    ASSERT_STR_NOT_CONTAINS(out, "cannot write the output");
}

/* tst_fork's child: `vmstack info` with one file descriptor left (enough for the
 * dynamic loader, which opens one library at a time; not for the guard check's pipe). */
static void one_descriptor_exec(void *arg)
{
    (void)arg;
    struct rlimit lim;
    int lowest = dup(0);
    if (lowest < 0 || getrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(13);
    close(lowest);
    lim.rlim_cur = (rlim_t)lowest + 1;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(14);
    struct info_run r = { NULL, NULL, NULL, NULL };
    info_exec(&r);
}

/* Where the guard check could not run (its pipe: no file descriptor), info said "guard
 * method none (MADV_GUARD_INSTALL missing or not effective here; two mappings per
 * stack)" and "stacks limited by address space": about a kernel that has madvise
 * guards, while no stack could be allocated at all. It says the check failed, and why. */
TEST(guard_check_without_descriptors_is_undecided)
{
#ifndef VMSTACK_VMAP
    SKIP("the direct backend makes no guard check");
#endif
    int st = tst_fork(one_descriptor_exec, NULL, out, sizeof out);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("info failed (status 0x%x):\n%s", st, out);
    assert_value("guard method", "undecided: the check of MADV_GUARD_INSTALL failed (Too many "
                                 "open files); no stack is handed out until it succeeds\n");
    assert_value("stacks", "none until the guard check succeeds\n");
#if !defined(TST_ASAN) && !defined(TST_TSAN)
    /* The main thread's alternate signal stack is the allocation that meets the failed
     * check (under a sanitizer it keeps the runtime's, and info allocates nothing). */
    ASSERT_EQ(tst_count(out, "vmstack: warning: could not check whether MADV_GUARD_INSTALL "
                             "guards work here (Too many open files: the check writes from a "
                             "guard page into a pipe, and no file descriptor was left for it)"), 1);
#endif
}

/* rt_sigaction refused (a seccomp profile): vms_init warns and goes on without a fault
 * handler, and info said nothing about it: a system where every overflow kills the
 * process unreported looked like any other. */
static void sigaction_refused_exec(void *arg)
{
    (void)arg;
    const struct rule r[] = { { SYS_rt_sigaction, -1, 0, EPERM } };
    install_filter(r, 1);
    struct info_run run = { NULL, NULL, NULL, NULL };
    info_exec(&run);
}

TEST(sigaction_refused_says_no_overflow_handler)
{
    need_seccomp();
#if defined(TST_ASAN) || defined(TST_TSAN)
    SKIP("a sanitizer's runtime installs its own handlers at start-up, and stops when it "
         "cannot");
#endif
    int st = tst_fork(sigaction_refused_exec, NULL, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) == 20) SKIP("the kernel refused the seccomp filter");
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        TST_FAIL("info failed (status 0x%x):\n%s", st, out);
    assert_value("overflow handler", "not installed (sigaction refused): a stack overflow "
                                     "kills the process by SIGSEGV, unreported\n");
    ASSERT_EQ(tst_count(out, "vmstack: warning: the stack-overflow handler could not be "
                             "installed (Operation not permitted)"), 1);
}
