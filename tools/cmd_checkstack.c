/*
 * cmd_checkstack.c - `vmstack checkstack`: the kernel's checkstack.pl idea for user
 * space. Reads ELF files (largest frames, decoded from prologues) and GCC's .su/.ci
 * files or folders of them (frames plus the worst-case depth per entry point over the
 * call graph, plus x86-64's red zone), prints the report and, with --stack-size, says
 * whether it fits.
 * Exit status: 0 fits (or no limit given), 1 a worst case does not fit or is unbounded,
 * 2 usage error or unreadable/malformed input, 3 a depth fits but is only a lower bound
 * (unknown callees, or ELF input's frames fit alone; 0 with --allow-unknown).
 * Independent of the vmstack library.
 */
#include "checkstack.h"
#include "tools.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* checkstack.pl's default: frames under 100 bytes are rarely the problem. */
#define DEFAULT_MIN 100
/* Input files larger than this are refused rather than read: no real .su, .ci or
 * object file comes close, and a mistaken argument (a disk image) should fail fast.
 * The tests' build sets a small one (tests/checkstack.cmake), and can make the read's
 * realloc fail (CS_REALLOC). */
#ifndef CS_MAX_INPUT_BYTES
#define CS_MAX_INPUT_BYTES ((size_t)1 << 31)
#endif
#define MAX_INPUT_BYTES ((size_t)(CS_MAX_INPUT_BYTES))
#ifdef CS_REALLOC
void *CS_REALLOC(void *p, size_t n);
#define realloc CS_REALLOC
#endif
/* Folders are searched this deep, far beyond CMake's CMakeFiles/<target>.dir/...: a
 * bound on scan_dir's recursion (symbolic links to folders are not followed, so a tree
 * this deep is a pathological one, and an error). It was 32, and deeper folders were
 * skipped without a word. */
#define MAX_DEPTH 256
/* x86-64's System V ABI lets a function that calls nothing use 128 bytes below %rsp
 * (the red zone) that no frame size counts; aarch64 has none. */
#define X86_64_RED_ZONE 128
#define EM_X86_64_ 62
#define EM_AARCH64_ 183
/* Unknown callees listed per entry point before "and N more". */
#define MAX_UNKNOWN_LISTED 12

struct opts {
    const char **entries;
    size_t nentries;
    uint64_t stack_size;
    int have_stack_size;
    int allow_unknown;
    uint64_t red_zone;
    int have_red_zone;
    uint64_t min;
};

struct input {
    struct cs_graph g;
    struct cs_frames elf;
    int have_gcc; /* at least one .su or .ci file was read */
    /* Architectures seen: of the ELF inputs, and of the objects next to the .su/.ci
     * files (x.su -> x.o), which the .su/.ci text does not name. */
    unsigned x86_64 : 1, aarch64 : 1, gcc_arch_unknown : 1;
    size_t nfiles;
};

static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmstack checkstack [--entry FN]... [--stack-size N] [--allow-unknown]\n"
            "                          [--red-zone N] [--min N] FILE...\n"
            "\n"
            "FILE is an ELF binary or object (x86-64 or aarch64): its largest stack frames,\n"
            "largest first. Or GCC's .su/.ci files (gcc -fstack-usage -fcallgraph-info=su)\n"
            "or a folder holding them: the frames, then per entry point the worst-case\n"
            "depth over the call graph and the path that reaches it.\n"
            "\n"
            "  --entry FN       entry point to analyse (repeatable; default: every function\n"
            "                   nobody calls, and one of each recursion nobody enters)\n"
            "  --stack-size N   exit 1 if a worst case exceeds N bytes or is unbounded\n"
            "                   (suffixes k, m, g); exit 3 if a depth fits but is only a\n"
            "                   lower bound (it reaches unknown callees or functions without\n"
            "                   a call graph, counted as 0 bytes) or if the frames of\n"
            "                   ELF input fit (it has no call graph: no depth is checked)\n"
            "  --allow-unknown  with --stack-size: exit 0 rather than 3 for such lower bounds\n"
            "  --red-zone N     bytes a leaf may use below the stack pointer, added to each\n"
            "                   depth (default: 128 for x86-64, 0 for aarch64, from the ELF\n"
            "                   input or the objects next to the .su/.ci files; 128 if unknown)\n"
            "  --min N          list frames of at least N bytes (default %d)\n"
            "\n"
            "Exit status: 0 fits, 1 does not fit or unbounded, 2 usage error, bad input\n"
            "or output that could not be written, 3 fits only if the unknown callees do\n"
            "(unproven).\n"
            "See docs/checkstack.md.\n",
            DEFAULT_MIN);
}

/* Parses "N", "Nk", "Nm" or "Ng" (1024-based) without overflow. */
static int parse_size(const char *s, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        uint64_t d = (uint64_t)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) return -1;
        v = v * 10 + d;
    }
    unsigned shift = 0;
    if (*p == 'k' || *p == 'K') shift = 10;
    else if (*p == 'm' || *p == 'M') shift = 20;
    else if (*p == 'g' || *p == 'G') shift = 30;
    if (shift) p++;
    if (*p) return -1;
    if (shift && v > (UINT64_MAX >> shift)) return -1;
    *out = v << shift;
    return 0;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Reads a whole regular file. Returns 0, or -1 with the reason printed. Opened with
 * O_NONBLOCK, which changes nothing for a regular file: a FIFO named like an input
 * (x.su) made open() wait for a writer for good, before the check below could refuse it. */
static int read_file(const char *path, unsigned char **data, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) {
        fprintf(stderr, "vmstack: error: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "vmstack: error: %s: not a regular file\n", path);
        close(fd);
        return -1;
    }
    if ((uint64_t)st.st_size > MAX_INPUT_BYTES) {
        fprintf(stderr, "vmstack: error: %s: %lld bytes is too large for an object or "
                "stack-usage file\n", path, (long long)st.st_size);
        close(fd);
        return -1;
    }
    /* At most MAX_INPUT_BYTES + 1 bytes are read: one more than the limit tells a file
     * that grew past it while read (or whose size fstat does not know, as /proc's). */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    unsigned char *buf = malloc(cap);
    if (!buf) {
        fprintf(stderr, "vmstack: error: %s: out of memory\n", path);
        close(fd);
        return -1;
    }
    /* Read until EOF rather than trusting st_size: the file may change under us. Cut
     * short, the rest of the file would be missing without a word (a .su file's last
     * functions, an ELF file's symbols), so a file grown past the limit, or a buffer
     * that cannot grow, is an error. */
    for (;;) {
        if (n == cap) {
            if (cap > MAX_INPUT_BYTES) {
                fprintf(stderr, "vmstack: error: %s: grew past %zu bytes while read: too "
                        "large for an object or stack-usage file\n", path, MAX_INPUT_BYTES);
                free(buf);
                close(fd);
                return -1;
            }
            size_t ncap = cap > MAX_INPUT_BYTES / 2 ? MAX_INPUT_BYTES + 1 : cap * 2;
            unsigned char *nb = realloc(buf, ncap);
            if (!nb) {
                fprintf(stderr, "vmstack: error: %s: out of memory after %zu bytes read "
                        "(%zu more asked)\n", path, n, ncap - cap);
                free(buf);
                close(fd);
                return -1;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            fprintf(stderr, "vmstack: error: %s: %s\n", path, strerror(errno));
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    *data = buf;
    *len = n;
    return 0;
}

/* Notes the architecture of an ELF file's header (e_machine, little endian). */
static int note_machine(struct input *in, const unsigned char *h, size_t len)
{
    if (len < 20 || memcmp(h, "\177ELF", 4) != 0 || h[5] != 1) return 0;
    unsigned m = h[18] | (unsigned)h[19] << 8;
    if (m == EM_X86_64_) in->x86_64 = 1;
    else if (m == EM_AARCH64_) in->aarch64 = 1;
    else return 0;
    return 1;
}

/* A .su/.ci file does not say its architecture; gcc writes it next to the object
 * (x.su and x.o; x.c.su and x.c.o under CMake), whose header does. */
static void note_sibling_machine(struct input *in, const char *path)
{
    size_t l = strlen(path);
    char *o = malloc(l + 1);
    unsigned char h[20];
    int found = 0;
    if (o && l > 3) {
        memcpy(o, path, l - 3);
        memcpy(o + l - 3, ".o", 3);
        /* Not waiting for a writer if x.o is a FIFO, and reading only a regular file. */
        int fd = open(o, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
        struct stat st;
        if (fd >= 0) {
            found = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
                    read(fd, h, sizeof h) == (ssize_t)sizeof h && note_machine(in, h, sizeof h);
            close(fd);
        }
    }
    free(o);
    if (!found) in->gcc_arch_unknown = 1;
}

/* Parses one file by its content (ELF magic) or its name (.su, .ci). */
static int parse_file(struct input *in, const char *path)
{
    unsigned char *data = NULL;
    size_t len = 0;
    char err[1024] = "";
    int rc;
    if (read_file(path, &data, &len) != 0) return -1;
    if (ends_with(path, ".su")) {
        rc = cs_parse_su(&in->g, (const char *)data, len, path, err, sizeof err);
        in->have_gcc = 1;
        note_sibling_machine(in, path);
    } else if (ends_with(path, ".ci")) {
        rc = cs_parse_ci(&in->g, (const char *)data, len, path, err, sizeof err);
        in->have_gcc = 1;
        note_sibling_machine(in, path);
    } else if (len >= 4 && !memcmp(data, "\177ELF", 4)) {
        size_t before = in->elf.n;
        rc = cs_parse_elf(&in->elf, data, len, path, err, sizeof err);
        if (rc == 0) note_machine(in, data, len);
        /* Nothing to check is not "everything fits": as for an empty folder. */
        if (rc == 0 && in->elf.n == before) {
            snprintf(err, sizeof err, "%s: no function with code in its symbol tables (a "
                     "stripped program keeps only the functions it exports)", path);
            rc = -1;
        }
    } else if (len >= 8 && !memcmp(data, "!<arch>\n", 8)) {
        snprintf(err, sizeof err, "%s: an ar archive: extract its objects first (ar x) and "
                 "pass them", path);
        rc = -1;
    } else {
        snprintf(err, sizeof err, "%s: not an ELF file, and not a .su or .ci file "
                 "(gcc -fstack-usage / -fcallgraph-info=su output must keep its suffix)", path);
        rc = -1;
    }
    free(data);
    if (rc != 0) {
        fprintf(stderr, "vmstack: error: %s\n", err);
        return -1;
    }
    in->nfiles++;
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Collects the .su and .ci files below dir (sorted, so the output does not depend on
 * the directory order) and parses them. Symbolic links to folders are not followed:
 * they could form loops; symbolic links to files are read like the files, and one
 * named .su or .ci that leads nowhere (dangling, or a loop of links) is an error. Empty
 * .su files are skipped here: gcc writes them for sources without functions. */
static int scan_dir(struct input *in, const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "vmstack: error: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) { rc = -1; break; }
            names = nn;
        }
        size_t l = strlen(dir) + strlen(e->d_name) + 2;
        if (!(names[n] = malloc(l))) { rc = -1; break; }
        snprintf(names[n++], l, "%s/%s", dir, e->d_name);
    }
    closedir(d);
    if (rc != 0) fprintf(stderr, "vmstack: error: %s: out of memory\n", dir);
    if (n) qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n && rc == 0; i++) {
        struct stat st;
        if (lstat(names[i], &st) != 0) {
            if (errno == ENOENT) continue;   /* removed since it was listed */
            /* Said, not skipped, as a folder past MAX_DEPTH is: a path longer than
             * PATH_MAX (ENAMETOOLONG, long names a few dozen levels down) or an entry
             * that cannot be looked at hid its files, and the rest "fit". */
            fprintf(stderr, "vmstack: error: %s: %s\n", names[i], strerror(errno));
            rc = -1;
            break;
        }
        if (S_ISLNK(st.st_mode)) {
            if (stat(names[i], &st) != 0) {
                /* A dangling link, or one in a loop of links: said when it is named as
                 * an input, as an unreadable .su file is (it hid one, and the rest
                 * "fit"). Under another name it is no input whatever it pointed to
                 * (links to folders are not followed), and is passed over. */
                if (!ends_with(names[i], ".su") && !ends_with(names[i], ".ci")) continue;
                fprintf(stderr, "vmstack: error: %s: a symbolic link that cannot be "
                        "followed: %s\n", names[i], strerror(errno));
                rc = -1;
                break;
            }
            if (S_ISDIR(st.st_mode)) continue;
        }
        if (S_ISDIR(st.st_mode)) {
            /* Said, not skipped: the analysis would miss the files down there, and its
             * "fits" would not be about every file below the folder given. */
            if (depth >= MAX_DEPTH) {
                fprintf(stderr, "vmstack: error: %s: folders nested more than %d deep below "
                        "the folder given; pass a deeper folder itself\n", names[i], MAX_DEPTH);
                rc = -1;
            } else {
                rc = scan_dir(in, names[i], depth + 1);
            }
        } else if (S_ISREG(st.st_mode) && (ends_with(names[i], ".su") || ends_with(names[i], ".ci"))) {
            if (st.st_size == 0 && ends_with(names[i], ".su")) continue;
            rc = parse_file(in, names[i]);
        }
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return rc;
}

static int cmp_frame(const void *a, const void *b)
{
    const struct cs_frame *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes > y->bytes ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* Prints every frame of at least opt->min bytes, largest first. */
static int print_frames(struct input *in, const struct opts *o)
{
    struct cs_frames all = { 0 };
    size_t need = in->elf.n + in->g.n;
    if (need == 0) return 0;
    all.v = malloc(need * sizeof *all.v);
    if (!all.v) return -1;
    for (size_t i = 0; i < in->elf.n; i++)
        if (in->elf.v[i].bytes >= o->min) all.v[all.n++] = in->elf.v[i];
    for (size_t i = 0; i < in->g.n; i++) {
        struct cs_func *f = &in->g.f[i];
        if (f->has_frame && f->frame >= o->min)
            all.v[all.n++] = (struct cs_frame){ .name = f->name, .bytes = f->frame };
    }
    qsort(all.v, all.n, sizeof *all.v, cmp_frame);
    int width = 0;
    for (size_t i = 0; i < all.n; i++) {
        size_t l = strlen(all.v[i].name);
        if ((int)l > width) width = l > 60 ? 60 : (int)l;
    }
    for (size_t i = 0; i < all.n; i++)
        printf("%-*s  %llu\n", width, all.v[i].name, (unsigned long long)all.v[i].bytes);
    free(all.v); /* the names belong to the inputs */
    return 0;
}

/* Prints the worst path from f: "  main (48) -> parse (112) -> leaf (1024)". An
 * unbounded path ends at its cause: the recursion, the dynamic frame or the pointer. */
static void print_path(const struct cs_graph *g, size_t f, size_t *cycle)
{
    printf("  ");
    for (size_t v = f, steps = 0; v != SIZE_MAX && steps <= g->n; v = g->f[v].next, steps++) {
        const struct cs_func *x = &g->f[v];
        if (v != f) printf(" -> ");
        if (!x->has_frame) printf("%s (?)", x->name);
        else if (x->dynamic && !x->bounded) printf("%s (%llu + dynamic)", x->name, (unsigned long long)x->frame);
        else printf("%s (%llu)", x->name, (unsigned long long)x->frame);
        if (x->why != CS_BOUNDED && x->culprit == v) {
            if (x->why == CS_RECURSION) {
                /* Once around the cycle, back to where it started, then "...". */
                size_t len = cs_graph_cycle(g, v, cycle);
                for (size_t k = 1; k <= len; k++) {
                    const struct cs_func *y = &g->f[cycle[k % len]];
                    printf(" -> %s (%llu)", y->name, (unsigned long long)y->frame);
                }
                printf(" -> ...");
            } else if (x->why == CS_INDIRECT) {
                printf(" -> (call through a pointer)");
            }
            break;
        }
    }
    printf("\n");
}

/* Counts the functions the entry reaches whose stack use is not in the depth: those
 * the input does not define and those known only from a .su file (their callees). */
static size_t count_unknown(const struct cs_graph *g, size_t entry, size_t *queue, unsigned char *seen)
{
    size_t qh = 0, qt = 0, n = 0;
    memset(seen, 0, g->n);
    queue[qt++] = entry;
    seen[entry] = 1;
    while (qh < qt) {
        size_t v = queue[qh++];
        const struct cs_func *x = &g->f[v];
        if (!x->is_indirect && (!x->has_frame || !x->has_graph)) n++;
        for (size_t e = 0; e < x->ncallees; e++) {
            size_t w = x->callees[e];
            if (!seen[w]) {
                seen[w] = 1;
                queue[qt++] = w;
            }
        }
    }
    return n;
}

/* Lists what the entry can reach that the input does not define, and notes on
 * dynamic-but-bounded frames and functions without a call graph. */
static int print_notes(const struct cs_graph *g, size_t entry, size_t *queue, unsigned char *seen)
{
    size_t qh = 0, qt = 0, nunk = 0, nbounded = 0, nograph = 0;
    memset(seen, 0, g->n);
    queue[qt++] = entry;
    seen[entry] = 1;
    while (qh < qt) {
        size_t v = queue[qh++];
        for (size_t e = 0; e < g->f[v].ncallees; e++) {
            size_t w = g->f[v].callees[e];
            if (!seen[w]) {
                seen[w] = 1;
                queue[qt++] = w;
            }
        }
    }
    for (size_t i = 0; i < qt; i++) {
        const struct cs_func *x = &g->f[queue[i]];
        if (x->is_indirect) continue;
        if (!x->has_frame) nunk++;
        else if (x->dynamic && x->bounded) nbounded++;
        if (x->has_frame && !x->has_graph) nograph++;
    }
    /* Sort the reachable set by name for stable, readable lists. */
    const char **names = malloc((qt ? qt : 1) * sizeof *names);
    if (!names) return -1;
    struct { const char *label; size_t count; int kind; } lists[] = {
        { "unknown callees (not defined in the input, counted as 0 bytes)", nunk, 0 },
        { "dynamic but bounded frames (GCC's bound is used)", nbounded, 1 },
        { "no call graph (only a .su file; their callees are not counted)", nograph, 2 },
    };
    for (size_t l = 0; l < sizeof lists / sizeof lists[0]; l++) {
        if (!lists[l].count) continue;
        size_t k = 0;
        for (size_t i = 0; i < qt; i++) {
            const struct cs_func *x = &g->f[queue[i]];
            if (x->is_indirect) continue;
            if ((lists[l].kind == 0 && !x->has_frame) ||
                (lists[l].kind == 1 && x->has_frame && x->dynamic && x->bounded) ||
                (lists[l].kind == 2 && x->has_frame && !x->has_graph))
                names[k++] = x->name;
        }
        qsort(names, k, sizeof *names, cmp_str);
        printf("  %s: ", lists[l].label);
        for (size_t i = 0; i < k && i < MAX_UNKNOWN_LISTED; i++)
            printf("%s%s", i ? ", " : "", names[i]);
        if (k > MAX_UNKNOWN_LISTED) printf(" and %zu more", k - MAX_UNKNOWN_LISTED);
        printf("\n");
    }
    free(names);
    return 0;
}

/* Verdicts of report_entry() with --stack-size. */
enum { FITS = 0, NOT_FIT = 1, UNPROVEN = 2 };

/* Prints one entry's result; returns NOT_FIT when it does not fit in --stack-size (or
 * is unbounded), UNPROVEN when its depth fits but is a lower bound (nunknown functions
 * on its paths are counted as 0 bytes), FITS otherwise. */
static int report_entry(const struct cs_graph *g, size_t f, const struct opts *o,
                        size_t nunknown, size_t *cycle)
{
    const struct cs_func *x = &g->f[f];
    int bad = FITS;
    if (x->why == CS_BOUNDED) {
        uint64_t depth = cs_add_sat(x->depth, o->red_zone);
        printf("%s: worst-case depth %llu bytes", x->name, (unsigned long long)depth);
        if (o->red_zone)
            printf(" (%llu in frames + %llu red zone)", (unsigned long long)x->depth,
                   (unsigned long long)o->red_zone);
        if (o->have_stack_size) {
            unsigned long long n = (unsigned long long)o->stack_size;
            if (depth > o->stack_size) {
                bad = NOT_FIT;
                printf(" - does NOT fit in --stack-size %llu\n", n);
            } else if (nunknown) {
                /* A lower bound that fits proves nothing: say what it depends on. */
                bad = UNPROVEN;
                printf(" - UNPROVEN: fits in --stack-size %llu only if the %zu function%s "
                       "counted as 0 bytes (below) fit%s in the remaining %llu bytes\n", n, nunknown,
                       nunknown == 1 ? "" : "s", nunknown == 1 ? "s" : "",
                       n - (unsigned long long)depth);
            } else {
                printf(" - fits in --stack-size %llu\n", n);
            }
        } else if (nunknown) {
            /* Without --stack-size there is no verdict, but the figure is not a worst case. */
            printf(" - a lower bound (%zu function%s below counted as 0 bytes)\n", nunknown,
                   nunknown == 1 ? "" : "s");
        } else {
            printf("\n");
        }
    } else {
        const struct cs_func *c = &g->f[x->culprit];
        printf("%s: unbounded: ", x->name);
        if (x->why == CS_RECURSION) {
            size_t len = cs_graph_cycle(g, x->culprit, cycle);
            printf("recursion ");
            for (size_t k = 0; k <= len; k++)
                printf("%s%s", k ? " -> " : "", g->f[cycle[k % len]].name);
            printf("\n");
        } else if (x->why == CS_DYNAMIC) {
            printf("dynamic frame (alloca or variable-length array) in %s\n", c->name);
        } else {
            printf("call through a function pointer in %s\n", c->name);
        }
        bad = o->have_stack_size ? NOT_FIT : FITS;
    }
    print_path(g, f, cycle);
    return bad;
}

static int analyse(struct input *in, const struct opts *o)
{
    struct cs_graph *g = &in->g;
    if (cs_graph_analyze(g) != 0) {
        fprintf(stderr, "vmstack: error: out of memory\n");
        return 2;
    }
    size_t *list = malloc((g->n ? g->n : 1) * sizeof *list);
    size_t *queue = malloc((g->n ? g->n : 1) * sizeof *queue);
    unsigned char *seen = malloc(g->n ? g->n : 1);
    unsigned char *first_in_scc = calloc(g->n ? g->n : 1, 1);
    int rc = 2;
    size_t n = 0;
    if (!list || !queue || !seen || !first_in_scc) {
        fprintf(stderr, "vmstack: error: out of memory\n");
        goto out;
    }
    if (o->nentries) {
        /* A name may match several functions (statics of different files); each
         * function is reported once however often it is named. */
        memset(seen, 0, g->n);
        for (size_t e = 0; e < o->nentries; e++) {
            size_t found = 0;
            for (size_t i = 0; i < g->n; i++) {
                if (!g->f[i].has_frame) continue;
                if (strcmp(g->f[i].key, o->entries[e]) && strcmp(g->f[i].name, o->entries[e]))
                    continue;
                found++;
                if (!seen[i]) list[n++] = i;
                seen[i] = 1;
            }
            if (!found) {
                fprintf(stderr, "vmstack: error: --entry %s: no such function in the .su/.ci "
                        "input (a function needs a frame size to be an entry point)\n", o->entries[e]);
                goto out;
            }
        }
    } else {
        /* Entry points: functions nobody else calls. A recursion nobody enters from
         * outside has no such function, so its first member stands for it. */
        unsigned char *entered = seen; /* by component: called from outside it */
        memset(entered, 0, g->n);
        for (size_t i = 0; i < g->n; i++)
            for (size_t e = 0; e < g->f[i].ncallees; e++) {
                size_t w = g->f[i].callees[e];
                if (g->f[w].scc != g->f[i].scc) entered[g->f[w].scc] = 1;
            }
        memset(queue, 0xff, g->n * sizeof *queue); /* component -> first member */
        for (size_t i = 0; i < g->n; i++) {
            size_t s = g->f[i].scc;
            if (g->f[i].has_frame && queue[s] == SIZE_MAX) {
                queue[s] = i;
                first_in_scc[i] = 1;
            }
        }
        for (size_t i = 0; i < g->n; i++)
            if (first_in_scc[i] && !entered[g->f[i].scc]) list[n++] = i;
    }
    if (n == 0) {
        printf("\nno entry points: no function with a frame size in the input\n");
        rc = o->have_stack_size ? 1 : 0;
        goto out;
    }
    size_t nbad = 0, nunproven = 0;
    printf("\n");
    if (o->have_red_zone)
        printf("red zone: %llu bytes (--red-zone)%s\n", (unsigned long long)o->red_zone,
               o->red_zone ? ", added to each depth" : "");
    else if (o->red_zone && !in->gcc_arch_unknown)
        printf("red zone: %llu bytes (x86-64), added to each depth\n", (unsigned long long)o->red_zone);
    else if (o->red_zone)
        printf("red zone: %llu bytes, added to each depth: the architecture of some .su/.ci files "
               "is unknown (no object next to them), x86-64's is assumed; --red-zone 0 if it has "
               "none (aarch64)\n", (unsigned long long)o->red_zone);
    else
        printf("red zone: none (aarch64)\n");
    for (size_t i = 0; i < n; i++) {
        size_t nunk = count_unknown(g, list[i], queue, seen);
        int v = report_entry(g, list[i], o, nunk, queue);
        nbad += v == NOT_FIT;
        nunproven += v == UNPROVEN;
        if (print_notes(g, list[i], queue, seen) != 0) {
            fprintf(stderr, "vmstack: error: out of memory\n");
            goto out;
        }
    }
    if (o->have_stack_size) {
        printf("\n--stack-size %llu: %zu of %zu entry points fit", (unsigned long long)o->stack_size,
               n - nbad - nunproven, n);
        if (nunproven)
            printf(", %zu unproven (lower bounds: they reach functions counted as 0 bytes%s)",
                   nunproven, o->allow_unknown ? "; allowed by --allow-unknown" : "");
        if (nbad) printf(", %zu do%s not", nbad, nbad == 1 ? "es" : "");
        printf("\n");
    }
    rc = nbad ? 1 : nunproven && !o->allow_unknown ? 3 : 0;
out:
    free(list);
    free(queue);
    free(seen);
    free(first_in_scc);
    return rc;
}

/* A function defined in several .ci files with different frames or places: the
 * alternatives of a build (two backends, several programs in one folder). The analysis
 * keeps the largest frame and all calls, which is safe; the user should know. */
static void warn_redefined(const struct cs_graph *g)
{
    size_t n = 0;
    for (size_t i = 0; i < g->n; i++) {
        if (!g->f[i].redefined) continue;
        if (n++ < MAX_UNKNOWN_LISTED)
            fprintf(stderr, "vmstack: warning: %s is defined more than once (first at %s); using "
                    "the largest frame (%llu bytes) and the calls of every definition\n",
                    g->f[i].name, g->f[i].loc ? g->f[i].loc : "?", (unsigned long long)g->f[i].frame);
    }
    if (n > MAX_UNKNOWN_LISTED)
        fprintf(stderr, "vmstack: warning: and %zu more functions defined more than once\n",
                n - MAX_UNKNOWN_LISTED);
    if (n)
        fprintf(stderr, "vmstack: warning: pass the .su/.ci files of one program to avoid mixing "
                "alternatives\n");
}

int vms_cmd_checkstack(int argc, char **argv)
{
    struct opts o = { .min = DEFAULT_MIN };
    struct input in = { 0 };
    const char **files = calloc((size_t)argc + 1, sizeof *files);
    o.entries = calloc((size_t)argc + 1, sizeof *o.entries);
    size_t nfiles = 0;
    int rc = 2, only_files = 0;
    if (!files || !o.entries) {
        fprintf(stderr, "vmstack: error: out of memory\n");
        goto out;
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (only_files || a[0] != '-' || !a[1]) {
            files[nfiles++] = a;
            continue;
        }
        if (!strcmp(a, "--")) {
            only_files = 1;
            continue;
        }
        if (!strcmp(a, "--allow-unknown")) {
            o.allow_unknown = 1;
            continue;
        }
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            rc = 0;
            goto out;
        }
        const char *opt_names[] = { "--entry", "--stack-size", "--min", "--red-zone" };
        int which = -1;
        for (int k = 0; k < 4; k++) {
            size_t l = strlen(opt_names[k]);
            if (!strncmp(a, opt_names[k], l) && (a[l] == '\0' || a[l] == '=')) {
                which = k;
                val = a[l] == '=' ? a + l + 1 : NULL;
            }
        }
        if (which < 0) {
            fprintf(stderr, "vmstack: error: checkstack: unknown option `%s`\n", a);
            usage(stderr);
            goto out;
        }
        if (!val) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vmstack: error: checkstack: %s needs a value\n", opt_names[which]);
                goto out;
            }
            val = argv[++i];
        }
        if (which == 0) {
            if (!*val) {
                fprintf(stderr, "vmstack: error: checkstack: --entry needs a function name\n");
                goto out;
            }
            o.entries[o.nentries++] = val;
        } else {
            uint64_t v;
            if (parse_size(val, &v) != 0) {
                fprintf(stderr, "vmstack: error: checkstack: %s `%s` is not a size in bytes "
                        "(digits with an optional k, m or g suffix)\n", opt_names[which], val);
                goto out;
            }
            if (which == 1) {
                o.stack_size = v;
                o.have_stack_size = 1;
            } else if (which == 2) {
                o.min = v;
            } else {
                o.red_zone = v;
                o.have_red_zone = 1;
            }
        }
    }
    if (nfiles == 0) {
        fprintf(stderr, "vmstack: error: checkstack: no FILE given\n");
        usage(stderr);
        goto out;
    }
    for (size_t i = 0; i < nfiles; i++) {
        struct stat st;
        if (stat(files[i], &st) != 0) {
            fprintf(stderr, "vmstack: error: %s: %s\n", files[i], strerror(errno));
            goto out;
        }
        if (S_ISDIR(st.st_mode)) {
            size_t before = in.nfiles;
            if (scan_dir(&in, files[i], 0) != 0) goto out;
            if (in.nfiles == before) {
                fprintf(stderr, "vmstack: error: %s: no .su or .ci files in this folder "
                        "(compile with gcc -fstack-usage -fcallgraph-info=su)\n", files[i]);
                goto out;
            }
            in.have_gcc = 1;
        } else if (parse_file(&in, files[i]) != 0) {
            goto out;
        }
    }
    if (o.nentries && !in.have_gcc) {
        fprintf(stderr, "vmstack: error: checkstack: --entry needs .su/.ci input; an ELF file "
                "gives frame sizes only\n");
        goto out;
    }
    /* The .su lines must be merged before the frame list, which shows graph nodes. */
    if (in.have_gcc) {
        char err[1024] = "";
        if (cs_graph_merge_su(&in.g, err, sizeof err) != 0) {
            fprintf(stderr, "vmstack: error: %s\n", err);
            goto out;
        }
        warn_redefined(&in.g);
    }
    if (print_frames(&in, &o) != 0) {
        fprintf(stderr, "vmstack: error: out of memory\n");
        goto out;
    }
    /* The red zone: x86-64's when any input is (or may be) x86-64, none when all are
     * known to be aarch64. */
    if (!o.have_red_zone)
        o.red_zone = in.x86_64 || (in.have_gcc && in.gcc_arch_unknown) ? X86_64_RED_ZONE : 0;
    rc = 0;
    if (in.have_gcc) rc = analyse(&in, &o);
    if (o.have_stack_size && rc != 2) {
        /* An ELF file has no call graph, but one frame larger than the stack certainly
         * does not fit. Frames that fit alone prove nothing about depth: say so. */
        size_t nbig = 0;
        for (size_t i = 0; i < in.elf.n; i++) {
            if (cs_add_sat(in.elf.v[i].bytes, o.red_zone) <= o.stack_size) continue;
            printf("%s: frame of %llu bytes", in.elf.v[i].name, (unsigned long long)in.elf.v[i].bytes);
            if (o.red_zone) printf(" + %llu red zone", (unsigned long long)o.red_zone);
            printf(" does NOT fit in --stack-size %llu\n", (unsigned long long)o.stack_size);
            nbig++;
            rc = 1;
        }
        if (in.elf.n && !nbig) {
            /* The largest frame is only a lower bound of the depth: unproven, as a
             * depth that reaches functions counted as 0 bytes is (exit 3). */
            printf("--stack-size %llu: UNPROVEN: each frame of the ELF input fits alone; ELF "
                   "input has no call graph, so no depth was checked%s\n",
                   (unsigned long long)o.stack_size,
                   o.allow_unknown ? "; allowed by --allow-unknown" : "");
            if (rc == 0 && !o.allow_unknown) rc = 3;
        }
    }
out:
    fflush(stdout);
    cs_graph_free(&in.g);
    cs_frames_free(&in.elf);
    free(files);
    free(o.entries);
    return rc;
}
