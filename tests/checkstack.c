/*
 * checkstack.c - `vmstack checkstack` run as a subprocess on inputs with known frames
 * and call graphs (tests/checkstack/ sources compiled by gcc, see checkstack.cmake). Every
 * expected number is read from the .su files gcc wrote, never guessed; the depth of a
 * path must equal the sum of its frames exactly. Malformed inputs must give exit 2 and
 * a message naming the file (and line, for text formats); nothing may crash.
 */
#include "test.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>

static char out[1 << 16];

/* ---- temporary files ------------------------------------------------------------------
 * Everything a case writes goes below one folder of its process, made at first use in
 * CS_INPUTS (or in $CS_TMPDIR when set: temporary_files_are_removed) and removed with
 * all it holds when the process exits, also after a failed assert (TST_FAIL exits).
 * Only a case killed by a signal (a ctest timeout) leaves it behind. */
static char tmp_root[2048];
static pid_t tmp_owner;

/* Removes name below dirfd and all it holds, a level at a time through openat (paths
 * longer than PATH_MAX, links not followed). Best effort: what cannot go stays. Whether
 * name is gone. */
static bool remove_tree_at(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return unlinkat(dirfd, name, 0) == 0;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return false;
    }
    for (int removed = 1; removed; ) {   /* again until a pass removes nothing */
        removed = 0;
        rewinddir(d);
        struct dirent *e;
        while ((e = readdir(d))) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
            /* Counted only when gone: what stays is seen again at every pass. */
            bool gone;
            if (e->d_type == DT_DIR) gone = remove_tree_at(fd, e->d_name);
            else if (unlinkat(fd, e->d_name, 0) == 0) gone = true;
            else gone = errno == EISDIR && remove_tree_at(fd, e->d_name);
            removed |= gone;
        }
    }
    closedir(d);
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0;
}

static void remove_tmp(void)
{
    if (tmp_root[0] && getpid() == tmp_owner) (void)remove_tree_at(AT_FDCWD, tmp_root);
}

/* The process's temporary folder (made at first use). */
static const char *tmp_dir(void)
{
    if (!tmp_root[0]) {
        const char *parent = getenv("CS_TMPDIR");
        if (!parent || !*parent) {
            parent = CS_INPUTS;
            mkdir(CS_INPUTS, 0777);
        }
        snprintf(tmp_root, sizeof tmp_root, "%s/tmp-XXXXXX", parent);
        if (!mkdtemp(tmp_root)) {
            int e = errno;
            tmp_root[0] = '\0';
            TST_FAIL("mkdtemp in %s: %s", parent, strerror(e));
        }
        tmp_owner = getpid();
        atexit(remove_tmp);
    }
    return tmp_root;
}

/* A folder dir/name below the temporary folder, made here; the path in a static buffer
 * (rotated). */
static const char *tmp_subdir(const char *name)
{
    static char bufs[2][4096];
    static int k;
    char *p = bufs[k++ % 2];
    snprintf(p, sizeof bufs[0], "%s/%s", tmp_dir(), name);
    if (mkdir(p, 0700) != 0) TST_FAIL("mkdir %s: %s", p, strerror(errno));
    return p;
}

static void exec_child(void *arg)
{
    char **argv = arg;
#ifdef CS_EMULATOR
    /* The cross build: the programs are the target's, run through the emulator
     * (CMAKE_CROSSCOMPILING_EMULATOR), as binfmt_misc would if the host had it. */
    const char *emu[] = { CS_EMULATOR };
    char *all[48];
    size_t n = 0;
    for (size_t i = 0; i < sizeof emu / sizeof emu[0]; i++) all[n++] = (char *)emu[i];
    for (char **a = argv; *a && n < 47; a++) all[n++] = *a;
    all[n] = NULL;
    execvp(all[0], all);
    fprintf(stderr, "exec %s: %s\n", all[0], strerror(errno));
#else
    execv(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
#endif
    _exit(127);
}

/* Runs prog with the NULL-terminated arguments; returns its exit code, output in out. */
static int run_prog(const char *prog, ...)
{
    char *argv[32];
    int n = 0;
    va_list ap;
    argv[n++] = (char *)prog;
    va_start(ap, prog);
    while (n < 31 && (argv[n] = va_arg(ap, char *)) != NULL) n++;
    va_end(ap);
    argv[n] = NULL;
    int st = tst_fork(exec_child, argv, out, sizeof out);
    if (!WIFEXITED(st)) TST_FAIL("%s died by signal %d; output:\n%s", prog, WTERMSIG(st), out);
    return WEXITSTATUS(st);
}
#define run(...) run_prog(CS_CLI, __VA_ARGS__, (char *)NULL)

static void need_gcc(void)
{
    if (!CS_HAVE_GCC)
        SKIP("test inputs need gcc's -fstack-usage and -fcallgraph-info=su; the compiler is not gcc");
}

/* A path under the compiled inputs, e.g. in("native/chain.su"). Rotates 8 buffers so
 * that several can be passed in one call. */
static const char *in(const char *rel)
{
    static char bufs[8][4096];
    static int k;
    char *b = bufs[k++ % 8];
    snprintf(b, sizeof bufs[0], "%s/%s", CS_INPUTS, rel);
    return b;
}

/* The frame gcc wrote for fn into the .su file: lines are "file:line:col:fn\tN\tqual". */
static long long su_frame(const char *su, const char *fn)
{
    FILE *f = fopen(su, "r");
    if (!f) TST_FAIL("%s: %s", su, strerror(errno));
    char line[4096];
    long long v = -1;
    size_t fl = strlen(fn);
    while (fgets(line, sizeof line, f)) {
        char *tab = strchr(line, '\t');
        if (!tab || (size_t)(tab - line) <= fl || tab[-(long)fl - 1] != ':' ||
            strncmp(tab - fl, fn, fl) != 0)
            continue;
        v = strtoll(tab + 1, NULL, 10);
    }
    fclose(f);
    if (v < 0) TST_FAIL("%s has no frame for %s", su, fn);
    return v;
}

/* The bytes printed for fn in the frame list ("fn   N" lines), or -1. */
static long long listed_frame(const char *text, const char *fn)
{
    size_t fl = strlen(fn);
    for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
        if (strncmp(l, fn, fl) != 0 || l[fl] != ' ') continue;
        const char *p = l + fl;
        while (*p == ' ') p++;
        return strtoll(p, NULL, 10);
    }
    return -1;
}

/* The red zone the tool adds for the native inputs, which the host's gcc compiled (their
 * objects lie next to their .su/.ci files): x86-64's 128 bytes, none on aarch64. */
static long long red_zone(void)
{
    return !strcmp(CS_ARCH, "x86_64") ? 128 : 0;
}

/* The depth line the tool prints for a path whose frames add up to sum, with rz bytes
 * of red zone: "fn: worst-case depth N bytes[ (S in frames + R red zone)]". */
static const char *depth_line(const char *fn, long long sum, long long rz)
{
    static char b[2][512];
    static int k;
    char *p = b[k++ % 2];
    if (rz)
        snprintf(p, sizeof b[0], "%s: worst-case depth %lld bytes (%lld in frames + %lld red zone)", fn,
                 sum + rz, sum, rz);
    else
        snprintf(p, sizeof b[0], "%s: worst-case depth %lld bytes", fn, sum);
    return p;
}

TEST(elf_big_frame_matches_su)
{
    need_gcc();
    ASSERT_EQ(run("--min", "0", in("native/leaf.o"), in("native/chain.o")), 0);
    long long su = su_frame(in("native/leaf.su"), "big_leaf");
    /* The relation documented in docs/checkstack.md: on x86-64 (and aarch64) the ELF
     * frame is exactly gcc's .su value for static frames (return address included). */
    ASSERT_EQ(listed_frame(out, "big_leaf"), su);
    ASSERT(!strncmp(out, "big_leaf ", 9)); /* largest first */
    ASSERT_EQ(listed_frame(out, "chain_b"), su_frame(in("native/chain.su"), "chain_b"));
    ASSERT_EQ(listed_frame(out, "chain_c"), su_frame(in("native/chain.su"), "chain_c"));
    ASSERT_EQ(listed_frame(out, "chain_a"), su_frame(in("native/chain.su"), "chain_a"));
}

TEST(elf_shared_object_and_stripped)
{
    need_gcc();
    long long su = su_frame(in("pic/leaf.su"), "big_leaf");
    ASSERT_EQ(run("--min", "0", in("pic/leaf.so")), 0);
    ASSERT_EQ(listed_frame(out, "big_leaf"), su);
    /* Stripped: no .symtab, the exported symbols of .dynsym remain. */
    ASSERT_EQ(run("--min", "0", in("pic/leaf-stripped.so")), 0);
    ASSERT_EQ(listed_frame(out, "big_leaf"), su);
}

/* True when the file holds the bytes of s (here: a symbol name in its string table). */
static int file_has(const char *path, const char *s)
{
    FILE *f = fopen(path, "rb");
    if (!f) TST_FAIL("%s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0, sl = strlen(s), r;
    char *buf = malloc(cap);
    ASSERT(buf);
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            ASSERT(buf);
        }
    }
    fclose(f);
    int found = 0;
    for (size_t i = 0; !found && i + sl <= n; i++) found = !memcmp(buf + i, s, sl);
    free(buf);
    return found;
}

/* gcc -O2 splits the unlikely path off into "f.cold", entered by a jump on f's frame.
 * Its push counts in f's .su value; listed as a function of its own it showed a frame
 * with a return address it does not have, and f's frame came out 8 bytes short. */
TEST(elf_cold_parts_fold_into_their_function)
{
    need_gcc();
    if (!file_has(in("o2/cold.o"), "cold_parent.cold"))
        SKIP("this gcc made no cold part of cold_parent at -O2: nothing to fold");
    ASSERT_EQ(run("--min", "0", in("o2/cold.o")), 0);
    ASSERT_EQ(listed_frame(out, "cold_parent"), su_frame(in("o2/cold.su"), "cold_parent"));
    ASSERT_EQ(listed_frame(out, "cold_parent_framed"),
              su_frame(in("o2/cold.su"), "cold_parent_framed"));
    ASSERT(!strstr(out, ".cold"));
}

/* Arguments pushed for a call behind a branch, before the first call, belong to the
 * body: counted in the prologue too, they were added twice (gcc bounds the frame by
 * the largest group of pushed arguments, once). */
TEST(elf_pushed_arguments_after_a_branch_count_once)
{
    need_gcc();
    ASSERT_EQ(run("--min", "0", in("o2/pushargs.o")), 0);
    ASSERT_EQ(listed_frame(out, "pushargs"), su_frame(in("o2/pushargs.su"), "pushargs"));
}

/* A symbol without a size (the C runtime's frame_dummy, register_tm_clones, ...) ends
 * where the next symbol starts: decoded on into the next function, each of them showed
 * that function's frame. The program's only large frame is big_first's. */
TEST(elf_symbols_without_size_end_at_the_next_symbol)
{
    need_gcc();
    if (!file_has(in("exe/prog"), "frame_dummy"))
        SKIP("this toolchain's C runtime has no frame_dummy: no sizeless symbol to check");
    ASSERT_EQ(run("--min", "0", in("exe/prog")), 0);
    long long su = su_frame(in("exe/prog.su"), "big_first");
    ASSERT(su > 2000);
    ASSERT(!strncmp(out, "big_first ", 10)); /* largest first, and alone */
    ASSERT_EQ(listed_frame(out, "big_first"), su);
    /* Every "name  N" line after the first must be small. */
    size_t lines = 0;
    for (const char *l = out; *l;) {
        const char *nl = strchr(l, '\n'), *e = nl ? nl : l + strlen(l), *d = e;
        while (d > l && d[-1] >= '0' && d[-1] <= '9') d--;
        ASSERT(d < e && d > l && d[-1] == ' ');
        if (lines++ > 0 && strtoll(d, NULL, 10) >= 1000)
            TST_FAIL("a second large frame in a program with one:\n%s", out);
        l = nl ? nl + 1 : e;
    }
    ASSERT(lines >= 4);
}

/* An ELF file without functions (data only; a stripped program that exports none, such
 * as /bin/true) has nothing to check: exit 2 with a reason, not an empty success. */
TEST(elf_without_functions_exit_2)
{
    need_gcc();
    ASSERT_EQ(run("--stack-size", "256k", in("data/nofunc.o")), 2);
    ASSERT_STR_CONTAINS(out, "nofunc.o: no function with code in its symbol tables");
}

TEST(folder_skips_empty_su_and_objects)
{
    need_gcc();
    /* gcc writes an empty .su for a source without functions; in a folder that is not
     * an error (named alone it is: see malformed_inputs_exit_2_naming_file_and_line). */
    FILE *f = fopen(in("native/chain.ci"), "rb");
    ASSERT_NOT_NULL(f);
    static char ci[1 << 16];
    size_t n = fread(ci, 1, sizeof ci, f);
    fclose(f);
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", tmp_subdir("folder"));
    char p[4200];
    snprintf(p, sizeof p, "%s/sub", dir);
    ASSERT_EQ(mkdir(p, 0777), 0);
    snprintf(p, sizeof p, "%s/sub/chain.ci", dir);
    f = fopen(p, "wb");
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(fwrite(ci, 1, n, f), n);
    fclose(f);
    snprintf(p, sizeof p, "%s/empty.su", dir);
    f = fopen(p, "wb");
    ASSERT_NOT_NULL(f);
    fclose(f);
    ASSERT_EQ(run("--entry", "chain_a", dir), 0);
    ASSERT_STR_CONTAINS(out, "chain_a: worst-case depth ");
}

/* docs/checkstack.md: a folder gives every .su and .ci file below it; only symlinked
 * folders are not followed (loops). A symlinked file used to be skipped silently, and a
 * folder of links was "no .su or .ci files in this folder". */
TEST(folder_reads_symlinked_files_not_symlinked_folders)
{
    need_gcc();
    char dir[4096], p[4200], q[4200];
    snprintf(dir, sizeof dir, "%s", tmp_subdir("links"));
    snprintf(p, sizeof p, "%s/chain.ci", dir);
    ASSERT_EQ(symlink(in("native/chain.ci"), p), 0);
    snprintf(p, sizeof p, "%s/loop", dir);
    ASSERT_EQ(symlink(dir, p), 0);
    snprintf(q, sizeof q, "%s/native", dir);
    ASSERT_EQ(symlink(in("native"), q), 0);
    ASSERT_EQ(run("--entry", "chain_a", dir), 0);
    ASSERT_STR_CONTAINS(out, "chain_a: worst-case depth ");
    /* Neither the loop nor the linked folder was entered: that one defines big_leaf. */
    ASSERT_STR_CONTAINS(out, "counted as 0 bytes): big_leaf, puts\n");
}

TEST(elf_sorted_and_min)
{
    need_gcc();
    ASSERT_EQ(run("--min", "0", in("native/leaf.o"), in("native/chain.o"), in("native/recur.o")), 0);
    long long prev = -1;
    int lines = 0;
    for (const char *l = out; *l; l = strchr(l, '\n') + 1) {
        const char *nl = strchr(l, '\n');
        ASSERT(nl);
        const char *sp = nl;
        while (sp > l && sp[-1] != ' ') sp--;
        long long v = strtoll(sp, NULL, 10);
        if (prev >= 0) ASSERT_LE(v, prev);
        prev = v;
        lines++;
    }
    ASSERT_EQ(lines, 1 + 4 + 4); /* every function of the three objects */
    /* The default minimum (100 bytes, like checkstack.pl) hides the small frames. */
    ASSERT_EQ(run(in("native/chain.o"), in("native/leaf.o")), 0);
    ASSERT_LT(su_frame(in("native/chain.su"), "chain_a"), 100);
    ASSERT_EQ(listed_frame(out, "chain_a"), -1);
    ASSERT_EQ(listed_frame(out, "big_leaf"), su_frame(in("native/leaf.su"), "big_leaf"));
    /* --min N keeps exactly the frames of at least N bytes. */
    char min[32];
    snprintf(min, sizeof min, "%lld", su_frame(in("native/leaf.su"), "big_leaf"));
    ASSERT_EQ(run("--min", min, in("native/chain.o"), in("native/leaf.o")), 0);
    ASSERT_EQ(listed_frame(out, "big_leaf"), su_frame(in("native/leaf.su"), "big_leaf"));
    ASSERT_EQ(listed_frame(out, "chain_b"), -1);
}

TEST(chain_depth_is_sum_of_path)
{
    need_gcc();
    ASSERT_EQ(run("--entry", "chain_a", in("native/chain.su"), in("native/chain.ci"),
                  in("native/leaf.ci")), 0);
    long long a = su_frame(in("native/chain.su"), "chain_a");
    long long b = su_frame(in("native/chain.su"), "chain_b");
    long long c = su_frame(in("native/chain.su"), "chain_c");
    long long l = su_frame(in("native/leaf.su"), "big_leaf");
    char want[512];
    /* puts is not in the input: the depth is a lower bound and says so. */
    snprintf(want, sizeof want, "\n%s - a lower bound (1 function below counted as 0 bytes)\n",
             depth_line("chain_a", a + b + c + l, red_zone()));
    ASSERT_STR_CONTAINS(out, want);
    snprintf(want, sizeof want, "\n  chain_a (%lld) -> chain_b (%lld) -> chain_c (%lld) -> big_leaf (%lld)\n",
             a, b, c, l);
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "unknown callees (not defined in the input, counted as 0 bytes): puts\n");
    /* Only the requested entry is reported. */
    ASSERT_STR_NOT_CONTAINS(out, "\nchain_b:");
}

TEST(chain_without_leaf_counts_unknown_as_zero)
{
    need_gcc();
    /* Without leaf.ci, big_leaf is an unknown callee: 0 bytes, and listed as such. */
    ASSERT_EQ(run("--entry", "chain_a", in("native/chain.ci")), 0);
    long long sum = su_frame(in("native/chain.su"), "chain_a") + su_frame(in("native/chain.su"), "chain_b") +
                    su_frame(in("native/chain.su"), "chain_c");
    char want[256];
    snprintf(want, sizeof want, "%s - a lower bound (2 functions below counted as 0 bytes)\n",
             depth_line("chain_a", sum, red_zone()));
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, " (?)\n"); /* the path ends at an unknown callee */
    ASSERT_STR_CONTAINS(out, "counted as 0 bytes): big_leaf, puts\n");
}

TEST(default_entries_are_uncalled_functions)
{
    need_gcc();
    ASSERT_EQ(run(in("native")), 0);
    ASSERT_STR_CONTAINS(out, "\nchain_a: worst-case depth ");
    ASSERT_STR_CONTAINS(out, "\nrec_self: unbounded: ");
    ASSERT_STR_CONTAINS(out, "\nrec_entry: unbounded: ");
    ASSERT_STR_CONTAINS(out, "\ndyn_vla: unbounded: ");
    ASSERT_STR_CONTAINS(out, "\nptr_call: unbounded: ");
    /* Called functions are not entry points. */
    ASSERT_STR_NOT_CONTAINS(out, "\nchain_b:");
    ASSERT_STR_NOT_CONTAINS(out, "\nbig_leaf:");
    ASSERT_STR_NOT_CONTAINS(out, "\nmut_even:");
    ASSERT_STR_NOT_CONTAINS(out, "\nmut_odd:");
    /* The folder gives the same depth as the files named one by one. */
    long long sum = su_frame(in("native/chain.su"), "chain_a") + su_frame(in("native/chain.su"), "chain_b") +
                    su_frame(in("native/chain.su"), "chain_c") + su_frame(in("native/leaf.su"), "big_leaf");
    char want[256];
    snprintf(want, sizeof want, "\n%s - a lower bound (1 function below counted as 0 bytes)\n",
             depth_line("chain_a", sum, red_zone()));
    ASSERT_STR_CONTAINS(out, want);
}

TEST(direct_recursion_is_unbounded)
{
    need_gcc();
    ASSERT_EQ(run("--entry", "rec_self", in("native/recur.ci")), 0);
    ASSERT_STR_CONTAINS(out, "\nrec_self: unbounded: recursion rec_self -> rec_self\n");
    char want[256];
    long long r = su_frame(in("native/recur.su"), "rec_self");
    snprintf(want, sizeof want, "  rec_self (%lld) -> rec_self (%lld) -> ...\n", r, r);
    ASSERT_STR_CONTAINS(out, want);
}

TEST(mutual_recursion_is_unbounded)
{
    need_gcc();
    ASSERT_EQ(run("--entry", "rec_entry", in("native/recur.su"), in("native/recur.ci")), 0);
    ASSERT_STR_CONTAINS(out, "\nrec_entry: unbounded: recursion mut_even -> mut_odd -> mut_even\n");
    char want[256];
    long long e = su_frame(in("native/recur.su"), "mut_even"), o = su_frame(in("native/recur.su"), "mut_odd");
    snprintf(want, sizeof want, "  rec_entry (%lld) -> mut_even (%lld) -> mut_odd (%lld) -> mut_even (%lld) -> ...\n",
             su_frame(in("native/recur.su"), "rec_entry"), e, o, e);
    ASSERT_STR_CONTAINS(out, want);
}

TEST(dynamic_frames_are_unbounded)
{
    need_gcc();
    ASSERT_EQ(run("--entry", "dyn_vla", "--entry", "dyn_alloca", in("native/dyn.ci")), 0);
    ASSERT_STR_CONTAINS(out, "\ndyn_vla: unbounded: dynamic frame (alloca or variable-length array) in dyn_vla\n");
    ASSERT_STR_CONTAINS(out, "\ndyn_alloca: unbounded: dynamic frame (alloca or variable-length array) in dyn_alloca\n");
    char want[128];
    snprintf(want, sizeof want, "  dyn_vla (%lld + dynamic)\n", su_frame(in("native/dyn.su"), "dyn_vla"));
    ASSERT_STR_CONTAINS(out, want);
}

TEST(call_through_pointer_is_unbounded)
{
    need_gcc();
    ASSERT_EQ(run("--entry", "ptr_call", in("native/ptr.ci")), 0);
    ASSERT_STR_CONTAINS(out, "\nptr_call: unbounded: call through a function pointer in ptr_call\n");
    ASSERT_STR_CONTAINS(out, "  ptr_call (");
    ASSERT_STR_CONTAINS(out, ") -> (call through a pointer)\n");
}

TEST(stack_size_exit_codes)
{
    need_gcc();
    long long sum = su_frame(in("native/chain.su"), "chain_a") + su_frame(in("native/chain.su"), "chain_b") +
                    su_frame(in("native/chain.su"), "chain_c") + su_frame(in("native/leaf.su"), "big_leaf");
    char exact[32], less[32];
    sum += red_zone();
    snprintf(exact, sizeof exact, "%lld", sum);
    snprintf(less, sizeof less, "%lld", sum - 1);
    /* chain_a calls puts, which no input defines: its depth is a lower bound, so a
     * stack it fits is unproven (exit 3), never "fits" (see unknown_callees_unproven). */
    ASSERT_EQ(run("--stack-size", exact, "--entry", "chain_a", "--allow-unknown", in("native")), 0);
    ASSERT_STR_CONTAINS(out, "0 of 1 entry points fit, 1 unproven");
    ASSERT_EQ(run("--stack-size", less, "--entry", "chain_a", in("native")), 1);
    ASSERT_STR_CONTAINS(out, "does NOT fit");
    ASSERT_STR_CONTAINS(out, "0 of 1 entry points fit, 1 does not\n");
    ASSERT_EQ(run("--stack-size", less, "--entry", "chain_a", "--allow-unknown", in("native")), 1);
    ASSERT_EQ(run("--stack-size", "1m", "--entry", "chain_a", in("native")), 3);
    ASSERT_EQ(run("--stack-size=8k", "--entry", "chain_a", in("native")), 3);
    /* A proven depth: big_leaf calls nothing. Exactly its frame fits, one byte less not. */
    char leaf[32], leaf_less[32];
    snprintf(leaf, sizeof leaf, "%lld", su_frame(in("native/leaf.su"), "big_leaf") + red_zone());
    snprintf(leaf_less, sizeof leaf_less, "%lld", su_frame(in("native/leaf.su"), "big_leaf") + red_zone() - 1);
    ASSERT_EQ(run("--stack-size", leaf, "--entry", "big_leaf", in("native")), 0);
    ASSERT_STR_CONTAINS(out, " - fits in --stack-size ");
    ASSERT_STR_CONTAINS(out, "1 of 1 entry points fit\n");
    ASSERT_EQ(run("--stack-size", leaf_less, "--entry", "big_leaf", in("native")), 1);
    /* Unbounded never fits, however large the stack, and --allow-unknown changes nothing. */
    ASSERT_EQ(run("--stack-size", "1g", "--entry", "rec_self", in("native")), 1);
    ASSERT_EQ(run("--stack-size", "1g", "--entry", "rec_self", "--allow-unknown", in("native")), 1);
    ASSERT_EQ(run("--stack-size", "1g", in("native")), 1);
    /* Not fitting outranks unproven; unproven outranks fitting. */
    ASSERT_EQ(run("--stack-size", "1g", "--entry", "chain_a", "--entry", "rec_self", in("native")), 1);
    ASSERT_EQ(run("--stack-size", "1g", "--entry", "chain_a", "--entry", "big_leaf", in("native")), 3);
    ASSERT_STR_CONTAINS(out, "1 of 2 entry points fit, 1 unproven");
    ASSERT_EQ(run("--stack-size", "1g", "--entry", "chain_a", "--entry", "big_leaf", "--allow-unknown",
                  in("native")), 0);
    /* ELF input has no call graph: a single frame larger than the stack does not fit;
     * frames that fit alone prove no depth, so that is unproven (exit 3). */
    ASSERT_EQ(run("--stack-size", "1k", in("native/leaf.o")), 1);
    ASSERT_STR_CONTAINS(out, "big_leaf: frame of ");
    ASSERT_EQ(run("--stack-size", "1k", "--allow-unknown", in("native/leaf.o")), 1);
    ASSERT_EQ(run("--stack-size", "64k", in("native/leaf.o")), 3);
    ASSERT_STR_CONTAINS(out, "--stack-size 65536: UNPROVEN: each frame of the ELF input fits alone; "
                        "ELF input has no call graph, so no depth was checked\n");
    ASSERT_STR_NOT_CONTAINS(out, "entry points fit");
    ASSERT_EQ(run("--stack-size", "64k", "--allow-unknown", in("native/leaf.o")), 0);
    ASSERT_STR_CONTAINS(out, "no depth was checked; allowed by --allow-unknown\n");
    /* With .ci input beside it, a proven depth does not hide the unchecked ELF frames. */
    ASSERT_EQ(run("--stack-size", "64k", in("native/leaf.o"), in("native/leaf.ci")), 3);
    ASSERT_STR_CONTAINS(out, "1 of 1 entry points fit\n");
    ASSERT_EQ(run("--stack-size", "64k", "--allow-unknown", in("native/leaf.o"), in("native/leaf.ci")), 0);
}

TEST(unknown_callees_unproven)
{
    need_gcc();
    /* Without leaf.ci, chain_a reaches big_leaf and puts, counted as 0 bytes: a 1 GiB
     * stack "fits" only if they do. The verdict must say so and the exit must not be 0. */
    long long sum = su_frame(in("native/chain.su"), "chain_a") + su_frame(in("native/chain.su"), "chain_b") +
                    su_frame(in("native/chain.su"), "chain_c");
    ASSERT_EQ(run("--stack-size", "1g", "--entry", "chain_a", in("native/chain.ci")), 3);
    char want[256];
    snprintf(want, sizeof want, "%s - UNPROVEN: fits in --stack-size 1073741824 only if the 2 functions "
             "counted as 0 bytes (below) fit in the remaining %lld bytes\n",
             depth_line("chain_a", sum, red_zone()), 1073741824LL - sum - red_zone());
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_CONTAINS(out, "counted as 0 bytes): big_leaf, puts\n");
    ASSERT_STR_CONTAINS(out, "--stack-size 1073741824: 0 of 1 entry points fit, 1 unproven");
    ASSERT_STR_NOT_CONTAINS(out, " - fits in");
    ASSERT_EQ(run("--stack-size", "1g", "--entry", "chain_a", "--allow-unknown", in("native/chain.ci")), 0);
    ASSERT_STR_CONTAINS(out, "allowed by --allow-unknown");
    /* A function known only from a .su file: its callees are unknown, also unproven. */
    ASSERT_EQ(run("--stack-size", "1g", in("native/leaf.su")), 3);
    ASSERT_STR_CONTAINS(out, "only if the 1 function counted as 0 bytes (below) fits");
    ASSERT_STR_CONTAINS(out, "no call graph (only a .su file; their callees are not counted): big_leaf\n");
    /* With its .ci file the same leaf is proven. */
    ASSERT_EQ(run("--stack-size", "1g", in("native/leaf.ci")), 0);
    ASSERT_STR_CONTAINS(out, "1 of 1 entry points fit\n");
    /* And without --stack-size its depth is a worst case, with no lower-bound remark. */
    ASSERT_EQ(run(in("native/leaf.ci")), 0);
    snprintf(want, sizeof want, "%s\n", depth_line("big_leaf", su_frame(in("native/leaf.su"), "big_leaf"),
                                                    red_zone()));
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_NOT_CONTAINS(out, "lower bound");
}

static const char *write_tmp(const char *name, const void *data, size_t len);

TEST(red_zone_counts_in_depth)
{
    need_gcc();
    long long l = su_frame(in("native/leaf.su"), "big_leaf");
    char exact[32], with_rz[32];
    snprintf(exact, sizeof exact, "%lld", l);
    snprintf(with_rz, sizeof with_rz, "%lld", l + 128);
    /* --red-zone is what is added, whatever the architecture: a stack of exactly the
     * frames is one red zone short. */
    ASSERT_EQ(run("--red-zone", "128", "--stack-size", exact, in("native/leaf.ci")), 1);
    ASSERT_STR_CONTAINS(out, "red zone: 128 bytes (--red-zone), added to each depth\n");
    ASSERT_STR_CONTAINS(out, depth_line("big_leaf", l, 128));
    ASSERT_STR_CONTAINS(out, " - does NOT fit in --stack-size ");
    ASSERT_EQ(run("--red-zone", "128", "--stack-size", with_rz, in("native/leaf.ci")), 0);
    ASSERT_EQ(run("--red-zone=0", "--stack-size", exact, in("native/leaf.ci")), 0);
    ASSERT_STR_CONTAINS(out, "red zone: 0 bytes (--red-zone)\n");
    ASSERT_STR_CONTAINS(out, depth_line("big_leaf", l, 0));
    /* By default, from the object next to the .ci file: the host's gcc made it. */
    ASSERT_EQ(run("--stack-size", exact, in("native/leaf.ci")), red_zone() ? 1 : 0);
    ASSERT_STR_CONTAINS(out, depth_line("big_leaf", l, red_zone()));
    ASSERT_STR_CONTAINS(out, red_zone() ? "red zone: 128 bytes (x86-64)" : "red zone: none (aarch64)");
    /* Without an object next to it the architecture is unknown: x86-64's is assumed,
     * and said. (The same file name in a folder of its own.) */
    FILE *f = fopen(in("native/leaf.ci"), "rb");
    if (!f) TST_FAIL("%s: %s", in("native/leaf.ci"), strerror(errno));
    static char ci[1 << 16];
    size_t n = fread(ci, 1, sizeof ci, f);
    fclose(f);
    const char *alone = write_tmp("leaf.ci", ci, n);
    ASSERT_EQ(run("--stack-size", exact, alone), 1);
    ASSERT_STR_CONTAINS(out, "architecture of some .su/.ci files is unknown (no object next to them), "
                        "x86-64's is assumed");
    ASSERT_STR_CONTAINS(out, depth_line("big_leaf", l, 128));
    /* ELF input: a frame plus the red zone must fit. */
    ASSERT_EQ(run("--stack-size", exact, in("native/leaf.o")), red_zone() ? 1 : 3);
    if (red_zone()) ASSERT_STR_CONTAINS(out, " bytes + 128 red zone does NOT fit in --stack-size ");
    ASSERT_EQ(run("--stack-size", with_rz, in("native/leaf.o")), 3); /* fits alone: no depth */
    /* aarch64 objects next to the .ci files: no red zone. */
    if (CS_HAVE_AARCH64) {
        long long a = su_frame(in("aarch64/leaf.su"), "big_leaf");
        char a_exact[32];
        snprintf(a_exact, sizeof a_exact, "%lld", a);
        ASSERT_EQ(run("--stack-size", a_exact, in("aarch64/leaf.ci")), 0);
        ASSERT_STR_CONTAINS(out, "red zone: none (aarch64)\n");
        ASSERT_STR_CONTAINS(out, depth_line("big_leaf", a, 0));
        ASSERT_EQ(run("--stack-size", a_exact, "--allow-unknown", in("aarch64/leaf.o")), 0);
    }
}

/* Writes len bytes to name in the temporary folder and returns the path (static buffer,
 * rotated). */
static const char *write_tmp(const char *name, const void *data, size_t len)
{
    static char bufs[4][4096];
    static int k;
    char *p = bufs[k++ % 4];
    snprintf(p, sizeof bufs[0], "%s/%s", tmp_dir(), name);
    FILE *f = fopen(p, "wb");
    if (!f) TST_FAIL("%s: %s", p, strerror(errno));
    if (len) ASSERT_EQ(fwrite(data, 1, len, f), len);
    fclose(f);
    return p;
}

TEST(malformed_inputs_exit_2_naming_file_and_line)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/bad/garbage.su", CS_SRC);
    ASSERT_EQ(run(path), 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: ");
    ASSERT_STR_CONTAINS(out, "garbage.su:2: expected three tab-separated fields");
    snprintf(path, sizeof path, "%s/bad/unterminated.ci", CS_SRC);
    ASSERT_EQ(run(path), 2);
    ASSERT_STR_CONTAINS(out, "unterminated.ci:3: unterminated node");
    static const unsigned char junk[] = { 0x13, 0x37, 0, 0xff, '\n', 0x80, 0x7f, 'E', 'L', 'F' };
    ASSERT_EQ(run(write_tmp("junk.su", junk, sizeof junk)), 2);
    ASSERT_STR_CONTAINS(out, "junk.su:1: binary data");
    ASSERT_EQ(run(write_tmp("junk.ci", junk, sizeof junk)), 2);
    ASSERT_STR_CONTAINS(out, "junk.ci:1: binary data");
    ASSERT_EQ(run(write_tmp("junk.o", junk, sizeof junk)), 2);
    ASSERT_STR_CONTAINS(out, "junk.o: not an ELF file");
    ASSERT_EQ(run(write_tmp("empty.su", "", 0)), 2);
    ASSERT_STR_CONTAINS(out, "empty.su:1: empty file");
    ASSERT_EQ(run(write_tmp("empty.ci", "", 0)), 2);
    ASSERT_STR_CONTAINS(out, "empty.ci:1: empty file");
    ASSERT_EQ(run(write_tmp("empty.o", "", 0)), 2);
    ASSERT_STR_CONTAINS(out, "empty.o: not an ELF file");
    static const char badnum[] = "x.c:1:5:f\t16\tstatic\nx.c:2:5:g\t12x\tstatic\n";
    ASSERT_EQ(run(write_tmp("badnum.su", badnum, sizeof badnum - 1)), 2);
    ASSERT_STR_CONTAINS(out, "badnum.su:2: frame size `12x` is not a number of bytes");
    static const char badqual[] = "x.c:1:5:f\t16\tstatic\n\nx.c:3:5:g\t12\tvolatile\n";
    ASSERT_EQ(run(write_tmp("badqual.su", badqual, sizeof badqual - 1)), 2);
    ASSERT_STR_CONTAINS(out, "badqual.su:3: qualifier `volatile`");
    static const char badlabel[] = "graph: { title: \"x.c\"\n\nnode: { title: \"f\" label: \"f\\nx.c:1:5\\nmany bytes (static)\" }\n}\n";
    ASSERT_EQ(run(write_tmp("badlabel.ci", badlabel, sizeof badlabel - 1)), 2);
    ASSERT_STR_CONTAINS(out, "badlabel.ci:3: node \"f\": label's third line");
}

TEST(truncated_and_corrupt_elf_exit_2)
{
    need_gcc();
    FILE *f = fopen(in("native/chain.o"), "rb");
    ASSERT_NOT_NULL(f);
    static unsigned char obj[1 << 16];
    size_t n = fread(obj, 1, sizeof obj, f);
    fclose(f);
    ASSERT_GT(n, 1000);
    /* Section headers sit at the end of a gcc object: cutting the file loses them. */
    ASSERT_EQ(run(write_tmp("trunc.o", obj, n - 100)), 2);
    ASSERT_STR_CONTAINS(out, "trunc.o: truncated ELF");
    ASSERT_EQ(run(write_tmp("header.o", obj, 40)), 2);
    ASSERT_STR_CONTAINS(out, "header.o: truncated ELF");
    /* Every prefix of the object: exit 0 or 2 with a message, never a crash. */
    for (size_t cut = 0; cut < n; cut += 97) {
        int rc = run(write_tmp("prefix.o", obj, cut));
        if (rc != 2) TST_FAIL("prefix of %zu bytes: exit %d\n%s", cut, rc, out);
        ASSERT_STR_CONTAINS(out, "prefix.o: ");
    }
    /* A 32-bit or big-endian file is refused by name. */
    obj[4] = 1;
    ASSERT_EQ(run(write_tmp("elf32.o", obj, n)), 2);
    ASSERT_STR_CONTAINS(out, "elf32.o: 32-bit ELF is not supported");
    obj[4] = 2;
    obj[5] = 2;
    ASSERT_EQ(run(write_tmp("be.o", obj, n)), 2);
    ASSERT_STR_CONTAINS(out, "be.o: big-endian ELF is not supported");
}

TEST(usage_errors_exit_2)
{
    ASSERT_EQ(run("/nonexistent/x.su"), 2);
    ASSERT_STR_CONTAINS(out, "/nonexistent/x.su: No such file or directory");
    const char *p = write_tmp("placeholder.txt", "x", 1);
    char dir[4096];
    snprintf(dir, sizeof dir, "%.*s", (int)(strrchr(p, '/') - p), p);
    ASSERT_EQ(run(dir), 2);
    ASSERT_STR_CONTAINS(out, "no .su or .ci files in this folder");
    ASSERT_EQ(run_prog(CS_CLI, (char *)NULL), 2);
    ASSERT_STR_CONTAINS(out, "no FILE given");
    ASSERT_EQ(run("--bogus", "x.su"), 2);
    ASSERT_STR_CONTAINS(out, "unknown option `--bogus`");
    ASSERT_EQ(run("--stack-size", "12q", "x.su"), 2);
    ASSERT_STR_CONTAINS(out, "--stack-size `12q` is not a size");
    ASSERT_EQ(run("--red-zone", "-1", "x.su"), 2);
    ASSERT_STR_CONTAINS(out, "--red-zone `-1` is not a size");
    ASSERT_EQ(run("--stack-size", "99999999999999999999", "x.su"), 2);
    ASSERT_EQ(run("--stack-size", "18446744073709551616", "x.su"), 2);   /* 2^64 */
    ASSERT_STR_CONTAINS(out, "is not a size");
    /* 2^64 - 1 is a size: the run gets as far as the missing file. */
    ASSERT_EQ(run("--stack-size", "18446744073709551615", "/nonexistent/x.su"), 2);
    ASSERT_STR_CONTAINS(out, "/nonexistent/x.su: No such file or directory");
    ASSERT_EQ(run("--stack-size"), 2);
    ASSERT_STR_CONTAINS(out, "--stack-size needs a value");
    ASSERT_EQ(run("--help"), 0);
    ASSERT_STR_CONTAINS(out, "usage: vmstack checkstack");
    if (!CS_HAVE_GCC) return;
    ASSERT_EQ(run("--entry", "no_such_fn", in("native")), 2);
    ASSERT_STR_CONTAINS(out, "--entry no_such_fn: no such function");
    ASSERT_EQ(run("--entry", "big_leaf", in("native/leaf.o")), 2);
    ASSERT_STR_CONTAINS(out, "--entry needs .su/.ci input");
}

/* A FIFO named like an input, or next to a .su file as its object: refused or passed
 * over, not waited on. open() without O_NONBLOCK waited for a writer for good, so the
 * command hung, and this case with it (ctest's time-out fails it; no time limit here). */
/* A symbolic link named as an input (.su, .ci) that leads nowhere, dangling or in a loop
 * of links, hides an input: an error naming it, exit 2, as an unreadable file is. Such
 * links were passed over without a word, and the rest of the folder "fit". A dangling
 * link under another name is no input whatever it pointed to (links to folders are not
 * followed): passed over. */
TEST(folder_dangling_or_looping_link_is_an_error)
{
    static const char line[] = "x.c:1:5:f\t16\tstatic\n";
    const char *dir = tmp_subdir("dangling");
    char p[4200], q[4200], want[4400];
    snprintf(p, sizeof p, "%s/f.su", dir);
    FILE *f = fopen(p, "w");
    ASSERT_NOT_NULL(f);
    fputs(line, f);
    fclose(f);
    snprintf(p, sizeof p, "%s/notes.txt", dir);
    ASSERT_EQ(symlink("no-such-file.txt", p), 0);
    ASSERT_EQ(run("--stack-size", "1k", "--allow-unknown", dir), 0);
    ASSERT_STR_CONTAINS(out, "f: worst-case depth ");
    ASSERT_STR_NOT_CONTAINS(out, "notes.txt");
    /* dangling */
    snprintf(p, sizeof p, "%s/gone.su", dir);
    ASSERT_EQ(symlink("no-such-file.su", p), 0);
    ASSERT_EQ(run("--stack-size", "1k", "--allow-unknown", dir), 2);
    snprintf(want, sizeof want, "vmstack: error: %s: a symbolic link that cannot be followed: %s\n",
             p, strerror(ENOENT));
    ASSERT_STR_CONTAINS(out, want);
    ASSERT_STR_NOT_CONTAINS(out, "worst-case depth");
    ASSERT_EQ(unlink(p), 0);
    /* a loop of two links */
    snprintf(p, sizeof p, "%s/a.ci", dir);
    snprintf(q, sizeof q, "%s/b.ci", dir);
    ASSERT_EQ(symlink("b.ci", p), 0);
    ASSERT_EQ(symlink("a.ci", q), 0);
    ASSERT_EQ(run("--stack-size", "1k", "--allow-unknown", dir), 2);
    snprintf(want, sizeof want, "vmstack: error: %s: a symbolic link that cannot be followed: %s\n",
             p, strerror(ELOOP));
    ASSERT_STR_CONTAINS(out, want);
    /* named alone, as before: the message of any file that cannot be opened */
    ASSERT_EQ(run(p), 2);
    ASSERT_STR_CONTAINS(out, strerror(ELOOP));
}

/* tst_fork's child: the test process's temporary folder made in arg, filled (a file, a
 * link, a folder 300 deep), then an exit that passes or, with CS_FAIL set, fails an
 * assert. */
static void tmp_child(void *arg)
{
    tmp_root[0] = '\0';   /* the parent's is not this process's */
    setenv("CS_TMPDIR", arg, 1);
    write_tmp("x.su", "x.c:1:5:f\t16\tstatic\n", 20);
    char link[4200], dir[8192];
    snprintf(link, sizeof link, "%s/loop", tmp_dir());
    if (symlink(tmp_dir(), link) != 0) _exit(10);
    size_t len = (size_t)snprintf(dir, sizeof dir, "%s", tmp_dir());
    for (int i = 0; i < 300; i++) {
        len += (size_t)snprintf(dir + len, sizeof dir - len, "/d");
        if (len >= sizeof dir - 16 || mkdir(dir, 0700) != 0) _exit(11);
    }
    printf("made %s\n", tmp_dir());
    if (getenv("CS_FAIL")) TST_FAIL("failing on purpose");
    exit(0);
}

static int entries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d) TST_FAIL("%s: %s", dir, strerror(errno));
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* The cases leave nothing in the build tree: their temporary folders (one of them 300
 * deep) were left in CS_INPUTS by every run, passed or failed. */
TEST(temporary_files_are_removed)
{
    char parent[4096];
    snprintf(parent, sizeof parent, "%s", tmp_subdir("parent"));
    unsetenv("CS_FAIL");
    int st = tst_fork(tmp_child, parent, out, sizeof out);
    ASSERT_EXITED(st, 0);
    ASSERT_STR_CONTAINS(out, "made ");
    ASSERT_EQ(entries(parent), 0);
    setenv("CS_FAIL", "1", 1);
    st = tst_fork(tmp_child, parent, out, sizeof out);
    unsetenv("CS_FAIL");
    ASSERT_EXITED(st, 1);
    ASSERT_STR_CONTAINS(out, "failing on purpose");
    ASSERT_EQ(entries(parent), 0);
}

/* tst_fork's child: its temporary folder made in arg holds an entry it cannot remove (a
 * file in a folder it may not write: as an unprivileged user, nobody when run as root),
 * then it exits. Best effort: the removal leaves that and ends. It went through the
 * folder again and again for good, the entry counted as removed at every pass. */
static void stuck_child(void *arg)
{
    if (geteuid() == 0 && (chown(arg, 65534, 65534) != 0 || setgid(65534) != 0 ||
                           setuid(65534) != 0))
        _exit(20);
    tmp_root[0] = '\0';   /* the parent's is not this process's */
    setenv("CS_TMPDIR", arg, 1);
    const char *dir = tmp_subdir("keep");
    char p[4200];
    snprintf(p, sizeof p, "%s/f", dir);
    FILE *f = fopen(p, "w");
    if (!f) _exit(21);
    fclose(f);
    if (chmod(dir, 0500) != 0) _exit(22);
    if (unlink(p) == 0) _exit(23);   /* removable after all (a capability kept) */
    printf("made %s\n", tmp_dir());
    exit(0);
}

TEST(temporary_files_that_cannot_be_removed_do_not_hang_the_exit)
{
    /* In /tmp, not the build tree: nobody must reach it, and a tree below a private
     * folder (a clone in a mkdtemp folder, or in /root) is out of nobody's reach. */
    char parent[] = "/tmp/vmstack-checkstack-XXXXXX", keep[4300];
    if (!mkdtemp(parent)) SKIP("mkdtemp in /tmp: %s", strerror(errno));
    int st = tst_fork(stuck_child, parent, out, sizeof out);
    if (WIFEXITED(st) && WEXITSTATUS(st) >= 20 && WEXITSTATUS(st) <= 23) {
        (void)remove_tree_at(AT_FDCWD, parent);
        SKIP("cannot make an entry this process cannot remove (exit %d)", WEXITSTATUS(st));
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st)) fputs(out, stderr);
    ASSERT_EXITED(st, 0);   /* a hang here: ctest's time-out fails it */
    ASSERT_STR_CONTAINS(out, "made ");
    /* What stayed: made writable again, and removed with its parent. */
    ASSERT_EQ(entries(parent), 1);
    const char *made = strstr(out, "made ") + 5;
    snprintf(keep, sizeof keep, "%.*s/keep", (int)strcspn(made, "\n"), made);
    ASSERT_EQ(chmod(keep, 0700), 0);
    ASSERT(remove_tree_at(AT_FDCWD, parent));
}

TEST(fifo_inputs_do_not_hang)
{
    const char *p = write_tmp("placeholder.txt", "x", 1);
    char fifo[4096], su[4096];
    snprintf(fifo, sizeof fifo, "%.*s/pipe.su", (int)(strrchr(p, '/') - p), p);
    unlink(fifo);
    if (mkfifo(fifo, 0600) != 0) SKIP("mkfifo %s: %s", fifo, strerror(errno));
    int rc = run(fifo);
    ASSERT_EQ(rc, 2);
    ASSERT_STR_CONTAINS(out, "pipe.su: not a regular file");
    /* x.o next to x.su tells the architecture; a FIFO there tells nothing. */
    static const char su_line[] = "x.c:1:5:f\t16\tstatic\n";
    snprintf(su, sizeof su, "%s", write_tmp("sib.su", su_line, sizeof su_line - 1));
    snprintf(fifo, sizeof fifo, "%.*s/sib.o", (int)(strrchr(p, '/') - p), p);
    unlink(fifo);
    ASSERT_EQ(mkfifo(fifo, 0600), 0);
    rc = run(su);
    ASSERT_EQ(rc, 0);
    ASSERT_STR_CONTAINS(out, "the architecture of some .su/.ci files is unknown");
    ASSERT_STR_CONTAINS(out, "f: worst-case depth ");
}

/* Every .su/.ci file below a folder is read, or the run fails: a folder nested deeper
 * than the search went (32 levels) was skipped without a word, and the rest "fit". */
TEST(folder_deeper_than_the_search_is_an_error)
{
    static const char line[] = "x.c:1:5:f\t16\tstatic\n";
    const char *top = write_tmp("deep-top.su", line, sizeof line - 1);
    char dir[8192], path[8192 + 32];
    snprintf(dir, sizeof dir, "%.*s/deep", (int)(strrchr(top, '/') - top), top);
    ASSERT_EQ(mkdir(dir, 0700), 0);
    snprintf(path, sizeof path, "%s/top.su", dir);
    FILE *f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs("x.c:1:5:top\t16\tstatic\n", f);
    fclose(f);
    /* 40 levels: read whole (the bound is 256). */
    size_t len = strlen(dir);
    for (int i = 0; i < 40; i++) {
        len += (size_t)snprintf(dir + len, sizeof dir - len, "/d");
        ASSERT_EQ(mkdir(dir, 0700), 0);
    }
    snprintf(path, sizeof path, "%s/bottom.su", dir);
    f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs("x.c:1:5:bottom\t16\tstatic\n", f);
    fclose(f);
    char root[8192];
    snprintf(root, sizeof root, "%.*s/deep", (int)(strrchr(top, '/') - top), top);
    ASSERT_EQ(run("--min", "0", root), 0);
    ASSERT_STR_CONTAINS(out, "bottom: worst-case depth ");
    /* 300 levels: said, exit 2. */
    for (int i = 40; i < 300; i++) {
        len += (size_t)snprintf(dir + len, sizeof dir - len, "/d");
        ASSERT(len < sizeof dir - 16);
        ASSERT_EQ(mkdir(dir, 0700), 0);
    }
    snprintf(path, sizeof path, "%s/bottom2.su", dir);
    f = fopen(path, "w");
    ASSERT_NOT_NULL(f);
    fputs("x.c:1:5:bottom2\t16\tstatic\n", f);
    fclose(f);
    ASSERT_EQ(run("--min", "0", root), 2);
    ASSERT_STR_CONTAINS(out, "folders nested more than 256 deep below the folder given");
}

/* A folder whose path grows past PATH_MAX (long names, 22 levels: far within the depth
 * bound) cannot be looked at by its path: said, exit 2. lstat's ENAMETOOLONG made the
 * search pass it over without a word, and the run answered from the other files (here
 * "unproven", 3, with bottom's 9999-byte frame never read). Made with mkdirat, which
 * takes the same long path a level at a time. */
TEST(folder_past_path_max_is_an_error)
{
    static const char line[] = "x.c:1:5:top\t16\tstatic\n";
    const char *top = write_tmp("long-top.su", line, sizeof line - 1);   /* the folder's */
    char root[4096], name[201];
    snprintf(root, sizeof root, "%.*s/long", (int)(strrchr(top, '/') - top), top);
    ASSERT_EQ(mkdir(root, 0700), 0);
    memset(name, 'd', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    enum { LEVELS = 22 };                     /* 22 * 201 bytes: more than 4096 */
    int fd[LEVELS + 1];
    fd[0] = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT(fd[0] >= 0);
    ASSERT_EQ(renameat(AT_FDCWD, top, fd[0], "top.su"), 0);   /* read: the rest "fit" */
    for (int i = 0; i < LEVELS; i++) {
        ASSERT_EQ(mkdirat(fd[i], name, 0700), 0);
        fd[i + 1] = openat(fd[i], name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        ASSERT(fd[i + 1] >= 0);
    }
    int f = openat(fd[LEVELS], "bottom.su", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT(f >= 0);
    static const char bottom[] = "x.c:1:5:bottom\t9999\tstatic\n";
    ASSERT_EQ(write(f, bottom, sizeof bottom - 1), (ssize_t)(sizeof bottom - 1));
    close(f);
    int rc = run("--stack-size", "1k", root);
    /* Taken down before any assertion can fail. */
    unlinkat(fd[LEVELS], "bottom.su", 0);
    unlinkat(fd[0], "top.su", 0);
    for (int i = LEVELS; i > 0; i--) {
        close(fd[i]);
        unlinkat(fd[i - 1], name, AT_REMOVEDIR);
    }
    close(fd[0]);
    rmdir(root);
    ASSERT_EQ(rc, 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: ");
    ASSERT_STR_CONTAINS(out, ": File name too long\n");
}

/* tst_fork's child: `vmstack checkstack --stack-size 1k FILE` writing its report to
 * /dev/full. */
static void full_child(void *arg)
{
    int fd = open("/dev/full", O_WRONLY);
    if (fd < 0 || dup2(fd, 1) != 1) _exit(13);
    close(fd);
    char *argv[] = { (char *)CS_VMSTACK, (char *)"checkstack", (char *)"--stack-size",
                     (char *)"1k", arg, NULL };
    exec_child(argv);
}

/* A report that cannot be written is exit 2, as an unreadable input is, whatever the
 * result: the command exited 0 ("fits") with the report lost on a full disk. */
TEST(report_that_cannot_be_written_exits_2)
{
    if (!CS_VMSTACK[0]) SKIP("the vmstack command is not built (VMSTACK_BUILD_TOOLS=OFF)");
    if (access("/dev/full", W_OK) != 0) SKIP("no /dev/full here");
    static const char small[] = "x.c:1:5:f\t16\tstatic\n", large[] = "x.c:1:5:f\t4096\tstatic\n";
    char path[4096];
    snprintf(path, sizeof path, "%s", write_tmp("small.su", small, sizeof small - 1));
    int st = tst_fork(full_child, path, out, sizeof out);
    ASSERT_EXITED(st, 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: cannot write the output: ");
    /* Not 1 either, which would say the stack is too small. */
    snprintf(path, sizeof path, "%s", write_tmp("large.su", large, sizeof large - 1));
    st = tst_fork(full_child, path, out, sizeof out);
    ASSERT_EXITED(st, 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: cannot write the output: ");
}

TEST(aarch64_elf_matches_su)
{
    need_gcc();
    if (!CS_HAVE_AARCH64) SKIP("aarch64-linux-gnu-gcc not found: no aarch64 test object");
    ASSERT_EQ(run("--min", "0", in("aarch64/leaf.o"), in("aarch64/chain.o")), 0);
    /* On aarch64 the return address is in x30, saved by the prologue's stp: the ELF
     * frame equals the .su value too. */
    ASSERT_EQ(listed_frame(out, "big_leaf"), su_frame(in("aarch64/leaf.su"), "big_leaf"));
    ASSERT_EQ(listed_frame(out, "chain_a"), su_frame(in("aarch64/chain.su"), "chain_a"));
    ASSERT_EQ(listed_frame(out, "chain_b"), su_frame(in("aarch64/chain.su"), "chain_b"));
    ASSERT_EQ(listed_frame(out, "chain_c"), su_frame(in("aarch64/chain.su"), "chain_c"));
    ASSERT_EQ(listed_frame(out, "chain_small"), su_frame(in("aarch64/chain.su"), "chain_small"));
}

TEST(vmstack_command_dispatches)
{
    need_gcc();
    if (!CS_VMSTACK[0]) SKIP("the vmstack command is not built (VMSTACK_BUILD_TOOLS=OFF)");
    ASSERT_EQ(run("--entry", "chain_a", in("native")), 0);
    static char want[sizeof out];
    memcpy(want, out, sizeof out);
    ASSERT_EQ(run_prog(CS_VMSTACK, "checkstack", "--entry", "chain_a", in("native"), (char *)NULL), 0);
    ASSERT(!strcmp(out, want));
    ASSERT_STR_CONTAINS(out, "chain_a: worst-case depth ");
}

/* An input read to its end, never cut short without a word: the rest of a .su file (its
 * last functions) or an ELF file (its symbols) would be missing from the report. The
 * command built with a 4 KiB limit (checkstack_cli_limits) stands for the real 2 GiB
 * one. A file of exactly the limit is read whole; one fstat says is larger is refused
 * before it is read, as before; one that grows past the limit while read (a /proc file,
 * whose size fstat gives as 0, grows so) and one whose buffer cannot grow (realloc
 * failing) are errors, exit 2. Before, both were cut where the reading stopped and
 * handed on as the whole file ("not an ELF file" here, for its first bytes). */
TEST(input_cut_short_while_read_is_an_error)
{
    char su[4096 + 64];
    size_t n = 0;
    for (int i = 0; i < 169; i++)
        n += (size_t)snprintf(su + n, sizeof su - n, "x.c:1:5:f%04d\t16\tstatic\n", i);
    n += (size_t)snprintf(su + n, sizeof su - n, "x.c:1:5:ggggggggggggggggggggg\t16\tstatic\n");
    ASSERT_EQ(n, 4096);
    char path[4096];
    snprintf(path, sizeof path, "%s", write_tmp("limit.su", su, n));
    ASSERT_EQ(run_prog(CS_CLI_LIMITS, "--min", "0", path, (char *)NULL), 0);
    ASSERT_STR_CONTAINS(out, "ggggggggggggggggggggg");
    su[n++] = '\n';
    snprintf(path, sizeof path, "%s", write_tmp("over.su", su, n));
    ASSERT_EQ(run_prog(CS_CLI_LIMITS, path, (char *)NULL), 2);
    ASSERT_STR_CONTAINS(out, ": 4097 bytes is too large for an object or stack-usage file\n");

    ASSERT_EQ(run_prog(CS_CLI_LIMITS, "/proc/self/smaps", (char *)NULL), 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: /proc/self/smaps: grew past 4096 bytes while "
                        "read: too large for an object or stack-usage file\n");
    ASSERT_STR_NOT_CONTAINS(out, "not an ELF file");

    ASSERT_EQ(setenv("CS_TEST_REALLOC_FAILS", "1", 1), 0);
    int code = run_prog(CS_CLI_LIMITS, "/proc/self/status", (char *)NULL);
    unsetenv("CS_TEST_REALLOC_FAILS");
    ASSERT_EQ(code, 2);
    ASSERT_STR_CONTAINS(out, "vmstack: error: /proc/self/status: out of memory after 1 bytes "
                        "read (1 more asked)\n");
    ASSERT_STR_NOT_CONTAINS(out, "not an ELF file");
}
