/*
 * trace.c - call traces for oops reports: stack walks and symbol lookup without malloc.
 *
 * Part of the async-signal-safe island (layer 4). At install time and at each thread
 * init (normal context) it maps every loaded ELF file read-only and records its symbol
 * tables in a fixed table; the fault handler then walks the interrupted stack (when built
 * with libunwind, libunwind where needed and confirmed frame records elsewhere, else the
 * frame-pointer chain; frame pointers are read only inside the stack's range) and looks
 * addresses up in that table. Invariant: table entries are complete before the
 * release store of their count, never change afterwards, and are never unmapped, so the
 * handler reads them lock-free. An object loaded since (a dlopen after the thread
 * started) is adopted by the handler itself when a frame lies in it: found in
 * /proc/self/maps, its file mapped and its symbols added, with system calls only.
 */
#include "island.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef VMSTACK_HAVE_LIBIBERTY
#include <libiberty/demangle.h>
#endif

#ifdef VMSTACK_HAVE_LIBUNWIND
#define UNW_LOCAL_ONLY
#include <libunwind.h>
#endif

/* Enough for large programs: a typical desktop binary loads 50-150 objects. Objects
 * beyond the table still show as raw addresses. */
#define MAX_OBJECTS 512
#define NAME_MAX_LEN 64
#if UINTPTR_MAX > 0xffffffffu
#define NATIVE_CLASS ELFCLASS64
#else
#define NATIVE_CLASS ELFCLASS32
#endif

struct symtab {
    const ElfW(Sym) *syms;
    size_t nsyms;
    const char *strs;
    size_t strsz;
};

/* Where an object is loaded, from its program headers. */
struct extent {
    uintptr_t bias;                /* dlpi_addr: symbol values are relative to it */
    uintptr_t lo, hi;              /* its loaded segments */
    uintptr_t text_lo, text_hi;    /* its readable and executable segments (0, 0: none) */
    uintptr_t text_off;            /* the file offset of the lowest one (at text_lo) */
};

/* async-signal-safe: adds one program header to e (bias set; e->lo = UINTPTR_MAX and
 * the rest 0 at the start). */
static void extent_add(struct extent *e, const ElfW(Phdr) *ph)
{
    if (ph->p_type != PT_LOAD) return;
    uintptr_t a = e->bias + ph->p_vaddr, b = a + ph->p_memsz;
    if (a < e->lo) e->lo = a;
    if (b > e->hi) e->hi = b;
    if ((ph->p_flags & (PF_R | PF_X)) == (PF_R | PF_X)) {
        if (!e->text_hi || a < e->text_lo) {
            e->text_lo = a;
            e->text_off = ph->p_offset;
        }
        if (b > e->text_hi) e->text_hi = b;
    }
}

struct object {
    uintptr_t bias;                /* dlpi_addr: symbol values are relative to it */
    uintptr_t lo;                  /* the object's loaded segments [lo, hi) */
    _Atomic uintptr_t hi;          /* set to lo when the object was unloaded */
    uintptr_t text_lo, text_hi;    /* its code: readable and executable segments */
    uintptr_t text_off;            /* the file offset mapped at text_lo */
    unsigned long long ino;        /* the inode of the file its symbols come from, or 0 */
    /* The report (report_gen) that last found the object still mapped where the table
     * says (object_mapped). */
    atomic_uint checked;
    struct symtab tab[2];          /* .symtab first (has static functions), .dynsym */
    bool in_libc;
    bool in_loader;
    bool fixed;                    /* never unloaded: the program, the C library, the
                                      loader, the vDSO, vmstack's own object */
    bool program;                  /* the program itself */
    bool read;                     /* its file's section headers were read: a missing
                                      .symtab is known to be missing */
    bool has_vmstack;              /* holds vmstack's code (libvmstack or a program or
                                      library that linked it in statically) */
    char name[NAME_MAX_LEN];       /* basename of the file */
};

static struct object objects[MAX_OBJECTS];
static atomic_int nobjects;
/* Files mapped for their symbols and kept (one mapping each, for vms_get_stats). */
static atomic_size_t views;
static pthread_mutex_t load_lock = PTHREAD_MUTEX_INITIALIZER;
/* Appends to the table come from vms__trace_load (normal context, which waits for this
 * flag) and from the fault handler's adopt (which only tries it: it never waits for a
 * lock that the code it interrupted may hold). */
static atomic_flag table_busy = ATOMIC_FLAG_INIT;

/* async-signal-safe (publish_object, from the fault handler's adopt) */
static const char *base_name(const char *path)
{
    const char *b = path;
    for (const char *p = path; *p; p++)
        if (*p == '/') b = p + 1;
    return b;
}

/* async-signal-safe: checks that one section lies inside the mapped file. */
static bool section_ok(const ElfW(Shdr) *sh, size_t filesz)
{
    return sh->sh_offset <= filesz && sh->sh_size <= filesz - sh->sh_offset;
}

/* async-signal-safe (the fault handler's adopt calls it through publish_object): open,
 * fstat and close are on POSIX's list (made as raw system calls: the C library's open
 * and close are cancellation points, and this runs inside dl_iterate_phdr with the
 * loader's locks held); mmap and munmap are not, but glibc's are plain system calls
 * (no lock, no allocation). Maps path read-only and records its .symtab and
 * .dynsym. A file that is missing, truncated or not a native ELF file simply has no
 * symbols: never an error. */
static void load_symbols(struct object *o, const char *path)
{
    int fd = vms__os_open_nocancel(path, O_RDONLY);
    if (fd < 0) return;
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode) || (size_t)sb.st_size < sizeof(ElfW(Ehdr))) {
        vms__os_close_nocancel(fd);
        return;
    }
    o->ino = (unsigned long long)sb.st_ino;
    size_t filesz = (size_t)sb.st_size;
    const char *map = mmap(NULL, filesz, PROT_READ, MAP_PRIVATE, fd, 0);
    vms__os_close_nocancel(fd);
    if (map == MAP_FAILED) return;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)map;
    bool keep = false;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != NATIVE_CLASS ||
        eh->e_shentsize != sizeof(ElfW(Shdr)) || eh->e_shoff == 0 || eh->e_shoff > filesz ||
        (size_t)eh->e_shnum > (filesz - eh->e_shoff) / sizeof(ElfW(Shdr)))
        goto out;
    const ElfW(Shdr) *sh = (const ElfW(Shdr) *)(map + eh->e_shoff);
    o->read = true;
    for (unsigned i = 0; i < eh->e_shnum; i++) {
        int slot = sh[i].sh_type == SHT_SYMTAB ? 0 : sh[i].sh_type == SHT_DYNSYM ? 1 : -1;
        if (slot < 0 || o->tab[slot].syms || !section_ok(&sh[i], filesz) ||
            sh[i].sh_entsize != sizeof(ElfW(Sym)) || sh[i].sh_link >= eh->e_shnum)
            continue;
        const ElfW(Shdr) *str = &sh[sh[i].sh_link];
        if (str->sh_type != SHT_STRTAB || !section_ok(str, filesz)) continue;
        /* Every name must end before the table does: a malformed table's last string
         * without its NUL would have a report read on past it, out of the mapping when
         * the table ends the file. Names from the unterminated tail are not used (a
         * well-formed table ends in a NUL: nothing to scan). */
        const char *strs = map + str->sh_offset;
        size_t strsz = str->sh_size;
        while (strsz && strs[strsz - 1] != '\0') strsz--;
        if (strsz == 0) continue;
        o->tab[slot].syms = (const ElfW(Sym) *)(map + sh[i].sh_offset);
        o->tab[slot].nsyms = sh[i].sh_size / sizeof(ElfW(Sym));
        o->tab[slot].strs = strs;
        o->tab[slot].strsz = strsz;
        keep = true;
    }
out:
    /* The mapping stays for the process's life when it has symbols: the handler reads it. */
    if (!keep) munmap((void *)map, filesz);
    else atomic_fetch_add_explicit(&views, 1, memory_order_relaxed);
}

size_t vms__trace_views(void)
{
    return atomic_load_explicit(&views, memory_order_relaxed);
}

static atomic_uint report_gen;

/* async-signal-safe: fills objects[n] (the caller holds table_busy) and publishes it:
 * its symbols from file (NULL: none), its name from path's base name. */
static void publish_object(int n, const struct extent *e, const char *path, const char *file)
{
    struct object *o = &objects[n];
    memset(o, 0, sizeof *o);
    o->bias = e->bias;
    o->lo = e->lo;
    o->text_lo = e->text_lo;
    o->text_hi = e->text_hi;
    o->text_off = e->text_off;
    atomic_store_explicit(&o->hi, e->hi, memory_order_relaxed);
    /* Found mapped now: for the report that may be adopting it, it is. */
    atomic_store_explicit(&o->checked, atomic_load_explicit(&report_gen, memory_order_relaxed),
                          memory_order_relaxed);
    if (file) load_symbols(o, file);
    const char *b = base_name(path);
    size_t len = vms__sigsafe_strlen(b);
    if (len >= NAME_MAX_LEN) len = NAME_MAX_LEN - 1;
    memcpy(o->name, b, len);
    o->name[len] = '\0';
    o->in_libc = vms__sigsafe_prefix(o->name, "libc.so") || vms__sigsafe_prefix(o->name, "libc-");
    /* glibc's ld-linux-<arch>.so.N, ld64.so.N or ld.so.N; musl's ld-musl-<arch>.so.1. Its
     * internal functions (lazy binding's _dl_fixup, say) have no symbol in a stripped
     * loader: the object alone tells. */
    o->in_loader = vms__sigsafe_prefix(o->name, "ld-linux") ||
                   vms__sigsafe_prefix(o->name, "ld64.so") ||
                   vms__sigsafe_prefix(o->name, "ld.so") ||
                   vms__sigsafe_prefix(o->name, "ld-musl");
    /* The program (no name), the vDSO (no file) and the objects the process cannot run
     * without stay where they are; any other object may be unloaded (dlclose), and its
     * addresses given to another object or to anonymous memory. */
    uintptr_t self = (uintptr_t)&vms__trace_load;
    o->program = file && vms__sigsafe_streq(file, "/proc/self/exe");
    o->has_vmstack = self >= e->lo && self < e->hi;
    o->fixed = !file || o->program || o->in_libc || o->in_loader || !e->text_hi ||
               o->has_vmstack;
    atomic_store_explicit(&nobjects, n + 1, memory_order_release);
}

/* The loader's counts of objects loaded and unloaded (dlpi_adds, dlpi_subs) at the last
 * complete load: while they stay the same, nothing changed and a load stops at the
 * first object. Written under load_lock. */
static unsigned long long last_adds, last_subs;
static bool loaded;

struct load_ctx {
    bool first;                 /* the first object of this iteration */
    bool counted;               /* the loader reports dlpi_adds and dlpi_subs */
    unsigned long long adds, subs;
};

static int add_object(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct load_ctx *ctx = arg;
    if (ctx->first) {
        ctx->first = false;
        ctx->counted = size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs;
        if (ctx->counted) {
            ctx->adds = info->dlpi_adds;
            ctx->subs = info->dlpi_subs;
            if (loaded && ctx->adds == last_adds && ctx->subs == last_subs)
                return 1;   /* nothing was loaded or unloaded since */
        }
    }
    struct extent e = { .bias = info->dlpi_addr, .lo = UINTPTR_MAX };
    for (int i = 0; i < info->dlpi_phnum; i++) extent_add(&e, &info->dlpi_phdr[i]);
    uintptr_t lo = e.lo, hi = e.hi;
    if (lo >= hi) return 0;
    int n = atomic_load_explicit(&nobjects, memory_order_relaxed);
    for (int i = 0; i < n; i++) {
        uintptr_t ohi = atomic_load_explicit(&objects[i].hi, memory_order_relaxed);
        if (objects[i].lo == lo && ohi == hi && objects[i].bias == info->dlpi_addr)
            return 0;   /* known */
        /* An older object overlapping this one was unloaded (dlclose) and its
         * addresses reused: it no longer answers for them. Its file stays mapped. */
        if (objects[i].lo < hi && lo < ohi)
            atomic_store_explicit(&objects[i].hi, objects[i].lo, memory_order_relaxed);
    }
    if (n >= MAX_OBJECTS) return 1;
    const char *path = info->dlpi_name;
    char exe[4096];
    const char *file = path;
    if (!path || !*path) {
        /* The main program has an empty name; its file is /proc/self/exe. */
        ssize_t r = readlink("/proc/self/exe", exe, sizeof exe - 1);
        exe[r > 0 ? r : 0] = '\0';
        path = r > 0 ? exe : "";
        file = r > 0 ? "/proc/self/exe" : NULL;
    } else if (strncmp(path, "linux-vdso", 10) == 0 || strncmp(path, "linux-gate", 10) == 0) {
        file = NULL;   /* the vDSO has no file */
    }
    /* Any other name is a path (relative ones are resolved from the current directory,
     * which may have changed: then no symbols). */
    publish_object(n, &e, path, file);
    return 0;
}

void vms__trace_fork_lock(void)
{
    pthread_mutex_lock(&load_lock);
}

void vms__trace_fork_unlock(bool child)
{
    /* In the child, a fault handler that was adopting an object on another thread is
     * gone with its thread: its flag would stall every later load. */
    if (child) atomic_flag_clear_explicit(&table_busy, memory_order_release);
    pthread_mutex_unlock(&load_lock);
}

int vms__trace_load(void)
{
    pthread_mutex_lock(&load_lock);
    while (atomic_flag_test_and_set_explicit(&table_busy, memory_order_acquire))
        sched_yield();   /* a fault handler is adopting an object: briefly */
    struct load_ctx ctx = { .first = true, .counted = false, .adds = 0, .subs = 0 };
    bool again = loaded;
    dl_iterate_phdr(add_object, &ctx);
    atomic_flag_clear_explicit(&table_busy, memory_order_release);
    /* A table that filled up stops early too: it is never complete, so it is read again
     * in full next time. */
    int n = atomic_load_explicit(&nobjects, memory_order_relaxed);
    loaded = ctx.counted && n < MAX_OBJECTS;
    last_adds = ctx.adds;
    last_subs = ctx.subs;
#ifdef VMSTACK_HAVE_LIBUNWIND
    /* A per-thread cache would keep concurrent reports on different threads from
     * sharing (and locking) one cache. Only a libunwind configured with
     * --enable-per-thread-cache has one: Debian 12's 1.6.2 is not, and takes the
     * request for UNW_CACHE_GLOBAL (seen in its unw_set_caching_policy), whose lock it
     * takes with every signal blocked. Set once: setting it flushes the cache. */
    if (!again) unw_set_caching_policy(unw_local_addr_space, UNW_CACHE_PER_THREAD);
#else
    (void)again;
#endif
    pthread_mutex_unlock(&load_lock);
    return atomic_load(&nobjects);
}

/* async-signal-safe: the best function symbol of one table covering off. */
static const ElfW(Sym) *find_in(const struct symtab *t, uintptr_t off)
{
    const ElfW(Sym) *best = NULL;
    for (size_t i = 0; i < t->nsyms; i++) {
        const ElfW(Sym) *s = &t->syms[i];
        int type = ELF64_ST_TYPE(s->st_info);
        if ((type != STT_FUNC && type != STT_GNU_IFUNC) || s->st_shndx == SHN_UNDEF ||
            s->st_name >= t->strsz)
            continue;
        if (off < s->st_value || off - s->st_value >= s->st_size) continue;
        /* Aliases cover the same range; prefer the global name (malloc over
         * __libc_malloc is not guaranteed, but a GLOBAL over a LOCAL alias reads best). */
        if (!best || s->st_value > best->st_value ||
            (s->st_value == best->st_value && ELF64_ST_BIND(s->st_info) == STB_GLOBAL &&
             ELF64_ST_BIND(best->st_info) != STB_GLOBAL))
            best = s;
    }
    return best;
}

/* ---- adopting an object from the fault handler ------------------------------------ */

/* Per report (vms__trace_report_begin starts one): address ranges found in no
 * file-backed object (anonymous memory, JIT code, an address nothing maps), not looked
 * up again, and a bound on /proc/self/maps scans, so a long trace through code that no
 * file describes costs a few scans, not one per frame. Reports are one at a time (the
 * report lock); the atomics only keep a report whose lock was taken over harmless. */
#define NO_OBJECT_RANGES 16
#define ADOPT_SCANS_MAX 16
#define MAPS_PATH_MAX 512
static struct { _Atomic uintptr_t lo, hi; } no_object[NO_OBJECT_RANGES];
static atomic_uint no_objects, adopt_scans, check_scans;

/* async-signal-safe */
void vms__trace_report_begin(void)
{
    atomic_store_explicit(&no_objects, 0, memory_order_relaxed);
    atomic_store_explicit(&adopt_scans, 0, memory_order_relaxed);
    atomic_store_explicit(&check_scans, 0, memory_order_relaxed);
    atomic_fetch_add_explicit(&report_gen, 1, memory_order_relaxed);
}

/* async-signal-safe: remembers [lo, hi) as no object's, while there is room. */
static void no_object_add(uintptr_t lo, uintptr_t hi)
{
    unsigned i = atomic_fetch_add_explicit(&no_objects, 1, memory_order_relaxed);
    if (i >= NO_OBJECT_RANGES) return;
    atomic_store_explicit(&no_object[i].lo, lo, memory_order_relaxed);
    atomic_store_explicit(&no_object[i].hi, hi, memory_order_release);
}

/* async-signal-safe */
static bool in_no_object(uintptr_t addr)
{
    unsigned n = atomic_load_explicit(&no_objects, memory_order_relaxed);
    if (n > NO_OBJECT_RANGES) n = NO_OBJECT_RANGES;
    for (unsigned i = 0; i < n; i++) {
        uintptr_t hi = atomic_load_explicit(&no_object[i].hi, memory_order_acquire);
        if (addr < hi && addr >= atomic_load_explicit(&no_object[i].lo, memory_order_relaxed))
            return true;
    }
    return false;
}

struct maps_hit {
    uintptr_t addr;                  /* what is looked for */
    uintptr_t base;                  /* the latest file mapping at file offset 0 */
    uintptr_t base_end;              /* ... and its end */
    uintptr_t lo, hi;                /* the mapping that holds addr */
    bool found;
    bool file;                       /* it is base_path, mapped from offset base */
    char base_path[MAPS_PATH_MAX];
};

/* async-signal-safe: one mapping; stops at the one holding hit->addr. */
static bool maps_line(const struct vms__map *m, void *ctx)
{
    struct maps_hit *hit = ctx;
    bool is_file = m->path_len > 0 && m->path[0] == '/' && m->path_len < MAPS_PATH_MAX;
    if (is_file && m->offset == 0) {
        hit->base = m->lo;
        hit->base_end = m->hi;
        memcpy(hit->base_path, m->path, m->path_len);
        hit->base_path[m->path_len] = '\0';
    }
    if (hit->addr < m->lo || hit->addr >= m->hi) return true;
    hit->found = true;
    hit->lo = m->lo;
    hit->hi = m->hi;
    hit->file = is_file && hit->base && memcmp(hit->base_path, m->path, m->path_len) == 0 &&
                hit->base_path[m->path_len] == '\0';
    return false;
}

/* async-signal-safe: finds the mapping of addr in /proc/self/maps. */
static bool maps_find(uintptr_t addr, struct maps_hit *hit)
{
    memset(hit, 0, sizeof *hit);
    hit->addr = addr;
    return vms__sigsafe_maps_each(maps_line, hit) && hit->found;
}

/* async-signal-safe: the load bias and extent [lo, hi) of the ELF object whose first
 * page is mapped at [base, base_end), from its program headers in memory, as the loader
 * would report them (dl_iterate_phdr). */
static bool object_extent(uintptr_t base, uintptr_t base_end, struct extent *e)
{
    if (base_end - base < sizeof(ElfW(Ehdr))) return false;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != NATIVE_CLASS ||
        eh->e_phentsize != sizeof(ElfW(Phdr)) || eh->e_phoff > base_end - base ||
        (size_t)eh->e_phnum > (base_end - base - eh->e_phoff) / sizeof(ElfW(Phdr)))
        return false;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(base + eh->e_phoff);
    size_t page = vms__os_page_size();
    bool first = true;
    memset(e, 0, sizeof *e);
    e->lo = UINTPTR_MAX;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type != PT_LOAD) continue;
        if (first) {
            e->bias = eh->e_type == ET_DYN ? base - (ph[i].p_vaddr & ~(uintptr_t)(page - 1)) : 0;
            first = false;
        }
        extent_add(e, &ph[i]);
    }
    return !first && e->lo < e->hi;
}

static const struct object *object_of(uintptr_t addr);

/* async-signal-safe: adds the object holding addr to the table, when a file maps it
 * (an object loaded after the last vms__trace_load). Gives up, leaving the address
 * unnamed, when another thread is writing the table, when addr lies in memory no file
 * describes, or after ADOPT_SCANS_MAX scans in this report. */
static bool adopt(uintptr_t addr)
{
    if (in_no_object(addr)) return false;
    if (atomic_fetch_add_explicit(&adopt_scans, 1, memory_order_relaxed) >= ADOPT_SCANS_MAX)
        return false;
    struct maps_hit hit;
    struct extent e;
    if (!maps_find(addr, &hit)) {
        size_t page = vms__os_page_size();
        no_object_add(addr & ~(uintptr_t)(page - 1), (addr | (page - 1)) + 1);
        return false;
    }
    if (!hit.file || !object_extent(hit.base, hit.base_end, &e) || addr < e.lo || addr >= e.hi) {
        no_object_add(hit.lo, hit.hi);
        return false;
    }
    if (atomic_flag_test_and_set_explicit(&table_busy, memory_order_acquire)) return false;
    int n = atomic_load_explicit(&nobjects, memory_order_relaxed);
    bool added = false;
    /* Another thread's report may have adopted it meanwhile. */
    if (n < MAX_OBJECTS && !object_of(addr)) {
        publish_object(n, &e, hit.base_path, hit.base_path);
        added = true;
    }
    atomic_flag_clear_explicit(&table_busy, memory_order_release);
    return added;
}

struct text_check {
    const struct object *o;
    bool found, same;
};

/* async-signal-safe: the mapping that holds the object's first code byte. */
static bool text_line(const struct vms__map *m, void *ctx)
{
    struct text_check *c = ctx;
    uintptr_t at = c->o->text_lo;
    if (at < m->lo || at >= m->hi) return true;
    c->found = true;
    c->same = m->path_len > 0 && m->path[0] == '/' && (!c->o->ino || m->inode == c->o->ino) &&
              m->offset + (at - m->lo) == c->o->text_off;
    return false;
}

/* async-signal-safe: whether an object that can be unloaded is still mapped where the
 * table says: its first code byte mapped from its file (the inode its symbols were read
 * from) at the offset its program headers give. Once dlclose unmapped it, that memory
 * is nothing's, or anonymous (JIT code), or another object's (a plugin reloaded, or
 * another one loaded in its place before any thread start told vmstack): without the
 * check, its addresses were named after the unloaded object's functions, and its code
 * was read where nothing is mapped. One /proc/self/maps scan per object per report (at
 * most CHECK_SCANS_MAX; past them, and without a readable /proc, the table is trusted).
 * An object found gone leaves the table as dlclose leaves it (hi = lo) for good. */
#define CHECK_SCANS_MAX 16
static bool object_mapped(struct object *o)
{
    unsigned gen = atomic_load_explicit(&report_gen, memory_order_relaxed);
    if (o->fixed || atomic_load_explicit(&o->checked, memory_order_relaxed) == gen) return true;
    if (atomic_fetch_add_explicit(&check_scans, 1, memory_order_relaxed) >= CHECK_SCANS_MAX)
        return true;
    struct text_check c = { o, false, false };
    if (vms__sigsafe_maps_each(text_line, &c) && !(c.found && c.same)) {
        atomic_store_explicit(&o->hi, o->lo, memory_order_relaxed);
        return false;
    }
    atomic_store_explicit(&o->checked, gen, memory_order_relaxed);
    return true;
}

/* async-signal-safe: the object of the published table that holds addr, or NULL. */
static const struct object *object_of(uintptr_t addr)
{
    int n = atomic_load_explicit(&nobjects, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (addr >= objects[i].lo &&
            addr < atomic_load_explicit(&objects[i].hi, memory_order_relaxed) &&
            object_mapped(&objects[i]))
            return &objects[i];
    return NULL;
}

/* async-signal-safe: reads the table published before (acquire load); an address in
 * no known object may adopt one (system calls only, no lock waited for). */
int vms__trace_symbolize(uintptr_t addr, struct vms__sym *out)
{
    memset(out, 0, sizeof *out);
    const struct object *o = object_of(addr);
    if (!o && adopt(addr)) o = object_of(addr);
    if (!o) return 0;
    out->object = o->name;
    out->in_libc = o->in_libc;
    out->in_loader = o->in_loader;
    for (int t = 0; t < 2; t++) {
        const ElfW(Sym) *s = find_in(&o->tab[t], addr - o->bias);
        if (s) {
            out->name = o->tab[t].strs + s->st_name;
            out->start = o->bias + s->st_value;
            out->size = s->st_size;
            return 2;
        }
    }
    return 1;
}

/* async-signal-safe */
bool vms__trace_in_libc(uintptr_t addr)
{
    const struct object *o = object_of(addr);
    return o && o->in_libc;
}

/* async-signal-safe */
bool vms__trace_in_loader(uintptr_t addr)
{
    const struct object *o = object_of(addr);
    return o && o->in_loader;
}

/* async-signal-safe: see island.h. The unsafe-kill rule knows the C library's and
 * vmstack's lock-taking functions by name; a program or library stripped of its
 * .symtab names none of the C library's (a static program has no .dynsym either) nor
 * vmstack's when it linked them in: an overflow inside malloc or vms_stack_alloc
 * there killed the task alone, possibly holding the allocator's or vmstack's lock
 * (tested: 16 of 269 stack positions at a malloc call in a stripped static program). A
 * frame in libvmstack.so is known by its object's name (is_vmstack in oops.c). */
int vms__trace_unnamed_inside(uintptr_t addr)
{
    const struct object *o = object_of(addr);
    /* A file that could not be read (no /proc, no descriptor left) tells nothing either
     * way: as before, its frames are the program's. */
    if (!o || !o->read || o->tab[0].syms) return 0;
    for (int t = 0; t < 2; t++)
        if (find_in(&o->tab[t], addr - o->bias)) return 0;
    if (o->program) {
        bool libc_apart = false;   /* the C library is an object of its own */
        int n = atomic_load_explicit(&nobjects, memory_order_acquire);
        for (int i = 0; i < n && !libc_apart; i++) libc_apart = objects[i].in_libc;
        if (!libc_apart) return VMS__UNSAFE_LIBC;
    }
    if (o->has_vmstack && !vms__sigsafe_prefix(o->name, "libvmstack")) return VMS__UNSAFE_VMSTACK;
    return 0;
}

/* async-signal-safe: a return address read from a frame record (or given by libunwind)
 * without its pointer authentication code. Code built with -mbranch-protection=pac-ret
 * or =standard signs x30 (paciasp) before its prologue stores it, so on a CPU with
 * FEAT_PAuth (Armv8.3; qemu-user's default cpu has it) the saved value carries a
 * signature in its upper bits: unstripped, it names no function, lies in no object (the
 * C library's lock-taking functions go unseen by the unsafe-kill rule) and differs for
 * every frame of a recursion. xpaclri clears those bits by the CPU's own address size
 * and tagging rules (the kernel's mask is readable only through ptrace); it lies in the
 * hint space, a no-op on a CPU without FEAT_PAuth. x86-64 signs nothing. */
static inline uintptr_t strip_pac(uintptr_t addr)
{
#if defined(__aarch64__)
    register uintptr_t x30 __asm__("x30") = addr;
    __asm__("hint #7" : "+r"(x30));   /* xpaclri: x30 without its signature */
    return x30;
#else
    return addr;
#endif
}

/* async-signal-safe: whether addr lies in the code (a readable and executable segment)
 * of an object of the table. */
static bool in_code(uintptr_t addr)
{
    const struct object *o = object_of(addr);
    return o && addr >= o->text_lo && addr < o->text_hi;
}

/* async-signal-safe: whether ret follows a call instruction (read only inside code). */
static bool after_call(uintptr_t ret)
{
#if defined(__x86_64__)
    if (!in_code(ret - 1) || !in_code(ret - 7)) return false;
    const unsigned char *b = (const unsigned char *)ret;
    if (b[-5] == 0xe8) return true;                           /* call rel32 */
    /* call ff /2 (ModRM reg field 2): register (2 bytes, 3 with a REX prefix), memory
     * with a byte displacement or SIB (3-4), RIP-relative or a 32-bit displacement (6-7). */
    static const signed char at[] = { -2, -3, -4, -6, -7 };
    for (unsigned i = 0; i < sizeof at; i++)
        if (b[at[i]] == 0xff && ((b[at[i] + 1] >> 3) & 7) == 2) return true;
    return false;
#elif defined(__aarch64__)
    if ((ret & 3) || !in_code(ret - 4)) return false;
    uint32_t insn = *(const uint32_t *)(ret - 4);
    return (insn & 0xfc000000u) == 0x94000000u ||             /* bl */
           (insn & 0xfffffc1fu) == 0xd63f0000u ||             /* blr */
           (insn & 0xfefff800u) == 0xd63f0800u;               /* blraa, blrab, ...z */
#else
    (void)ret;
    return false;
#endif
}

/* The frame-pointer readers below load words of the faulting stack that the compiler
 * never stored as such: in a program built with AddressSanitizer a frame pointer or a
 * guessed record may point into a local array's redzone, and an instrumented load there
 * is reported by ASan (and ends the process) in the middle of the oops. They are not
 * instrumented, as libunwind's own reads are not. */
#define STACK_READER __attribute__((no_sanitize("address")))

/* async-signal-safe: the return address of a function that faulted while storing its
 * frame record, or 0. An overflow usually faults right there, at the function's first
 * store below the stack: x86-64's `push %rbp`, aarch64's `stp x29, x30, [sp, ...]`. Its
 * record is not written yet, so the frame pointer still names its caller's record, whose
 * return address is the caller's caller's: without this, the walk leaves the caller out.
 * The return address is at [sp] on x86-64 (the call pushed it) and in x30 on aarch64.
 * Instructions are read only inside the code of a known object, and the address is taken
 * only when it follows a call there. */
STACK_READER
static uintptr_t prologue_return(const ucontext_t *uc, uintptr_t pc, uintptr_t lo, uintptr_t hi)
{
    if (!in_code(pc)) return 0;
#if defined(__x86_64__)
    if (*(const unsigned char *)pc != 0x55) return 0;           /* push %rbp */
    uintptr_t sp = (uintptr_t)uc->uc_mcontext.gregs[REG_RSP];
    if (sp < lo || sp >= hi || hi - sp < sizeof(uintptr_t) || (sp & (sizeof(uintptr_t) - 1)))
        return 0;
    uintptr_t ret = *(const uintptr_t *)sp;
#elif defined(__aarch64__)
    (void)lo;
    (void)hi;
    if (pc & 3) return 0;
    /* stp x29, x30, [sp, #imm]! (pre-index) or [sp, #imm] (signed offset) */
    uint32_t insn = *(const uint32_t *)pc & 0xffc07fffu;
    if (insn != 0xa9807bfdu && insn != 0xa9007bfdu) return 0;
    uintptr_t ret = strip_pac((uintptr_t)uc->uc_mcontext.regs[30]);
#else
    (void)uc; (void)lo; (void)hi;
    uintptr_t ret = 0;
#endif
    return ret >= 4096 && in_code(ret) && after_call(ret) ? ret : 0;
}

/* async-signal-safe: walks the frame-pointer chain. Every read is checked against
 * [lo, hi) first, and frames must move strictly towards hi, so a corrupted chain ends
 * the walk instead of faulting or looping. The walk is complete when it reaches the
 * outermost frame: a saved frame pointer of 0 (vmstack's context switch starts every
 * task with one) in a frame at the very top of the stack, where a task's entry
 * function keeps its frame. A 0 found deeper is a register value saved by code that
 * uses the frame-pointer register for data (the C library), not the chain's end. */
#define OUTERMOST_FRAME_SLACK 64
/* The return addresses the kernel gives signal handlers (their restorers), 0 until
 * vms__trace_note_restorer. x86-64: glibc's __restore_rt, the sa_restorer of every
 * handler it installs. aarch64: glibc sets no sa_restorer there, and the kernel returns
 * to the vDSO's __kernel_rt_sigreturn (arch/arm64/kernel/signal.c, setup_return). A
 * frame record whose return address is a restorer belongs to a signal handler called
 * by the kernel, and the kernel's ucontext next to it leads to the interrupted code,
 * which the chain of saved frame pointers alone would skip (and with it a lock-taking
 * function the handler interrupted). */
#define RESTORERS 2
static _Atomic uintptr_t sig_restorers[RESTORERS];

/* async-signal-safe */
static bool is_restorer(uintptr_t addr)
{
    for (int i = 0; i < RESTORERS; i++)
        if (addr && atomic_load_explicit(&sig_restorers[i], memory_order_relaxed) == addr)
            return true;
    return false;
}

void vms__trace_add_restorer(uintptr_t addr)
{
    for (int i = 0; addr && i < RESTORERS; i++) {
        uintptr_t cur = 0;
        if (atomic_compare_exchange_strong(&sig_restorers[i], &cur, addr) || cur == addr)
            return;
    }
}

/* The dynamic symbol table of the vDSO as the kernel maps it (AT_SYSINFO_EHDR): found
 * through its program headers, as the kernel's tools/testing/selftests/vDSO/parse_vdso.c
 * does (its dynamic section holds addresses relative to the image, never relocated by
 * the loader). The number of symbols comes from DT_HASH (its nchain) or, without one,
 * from DT_GNU_HASH (one past the highest symbol any bucket's chain reaches). */
struct vdso_syms {
    uintptr_t bias;
    const ElfW(Sym) *syms;
    size_t nsyms;
    const char *strs;
    size_t strsz;
};

/* Normal context (at install), as vdso_syms and vms__trace_vdso_symbol. */
static size_t gnu_hash_count(const uint32_t *h)
{
    uint32_t nbuckets = h[0], symoffset = h[1], bloom_size = h[2];
    const uint32_t *buckets = h + 4 + bloom_size * (sizeof(ElfW(Addr)) / 4);
    const uint32_t *chain = buckets + nbuckets;
    uint32_t last = 0;
    for (uint32_t b = 0; b < nbuckets; b++)
        if (buckets[b] > last) last = buckets[b];
    if (last < symoffset) return symoffset;
    while (!(chain[last - symoffset] & 1)) last++;
    return (size_t)last + 1;
}

static bool vdso_syms(struct vdso_syms *v, int hash)
{
    memset(v, 0, sizeof *v);
    uintptr_t base = (uintptr_t)getauxval(AT_SYSINFO_EHDR);
    if (!base) return false;
    const ElfW(Ehdr) *eh = (const ElfW(Ehdr) *)base;
    if (memcmp(eh->e_ident, ELFMAG, SELFMAG) != 0 || eh->e_ident[EI_CLASS] != NATIVE_CLASS ||
        eh->e_phentsize != sizeof(ElfW(Phdr)))
        return false;
    const ElfW(Phdr) *ph = (const ElfW(Phdr) *)(base + eh->e_phoff);
    const ElfW(Dyn) *dyn = NULL;
    bool have_load = false;
    for (unsigned i = 0; i < eh->e_phnum; i++) {
        if (ph[i].p_type == PT_LOAD && !have_load) {
            v->bias = base + ph[i].p_offset - ph[i].p_vaddr;
            have_load = true;
        } else if (ph[i].p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(base + ph[i].p_offset);
        }
    }
    if (!have_load || !dyn) return false;
    const uint32_t *sysv = NULL, *gnu = NULL;
    for (; dyn->d_tag != DT_NULL; dyn++) {
        uintptr_t a = v->bias + dyn->d_un.d_ptr;
        switch (dyn->d_tag) {
        case DT_SYMTAB: v->syms = (const ElfW(Sym) *)a; break;
        case DT_STRTAB: v->strs = (const char *)a; break;
        case DT_STRSZ: v->strsz = dyn->d_un.d_val; break;
        case DT_HASH: sysv = (const uint32_t *)a; break;
        case DT_GNU_HASH: gnu = (const uint32_t *)a; break;
        default: break;
        }
    }
    if (hash == DT_GNU_HASH) sysv = NULL;
    if (hash == DT_HASH) gnu = NULL;
    if (!v->syms || !v->strs || (!sysv && !gnu)) return false;
    while (v->strsz && v->strs[v->strsz - 1] != '\0') v->strsz--;   /* as load_symbols */
    v->nsyms = sysv ? sysv[1] : gnu_hash_count(gnu);
    return true;
}

uintptr_t vms__trace_vdso_symbol(const char *name, int hash)
{
    struct vdso_syms v;
    if (!vdso_syms(&v, hash)) return 0;
    for (size_t i = 0; i < v.nsyms; i++) {
        const ElfW(Sym) *s = &v.syms[i];
        if (s->st_shndx == SHN_UNDEF || s->st_name >= v.strsz || !s->st_value) continue;
        if (strcmp(v.strs + s->st_name, name) == 0) return v.bias + s->st_value;
    }
    return 0;
}

void vms__trace_note_restorer(int sig)
{
#if defined(__x86_64__)
    struct sigaction cur;
    if (sigaction(sig, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO))
        vms__trace_add_restorer((uintptr_t)cur.sa_restorer);
#elif defined(__aarch64__)
    (void)sig;
    /* 0 where there is no vDSO (qemu-user 7.2 has none: its trampoline is a page of
     * its own); the frame is then recognized by its layout alone (signal_frame_fp). */
    vms__trace_add_restorer(vms__trace_vdso_symbol("__kernel_rt_sigreturn", 0));
#else
    (void)sig;
#endif
}

#if defined(__aarch64__)
/* arm64's signal frame (arch/arm64/kernel/signal.c: get_sigframe, setup_sigframe,
 * setup_return; the same since Linux 4.12, and before that without extra space),
 * from the handler's first stack pointer upwards, 16-byte aligned:
 *
 *   | siginfo_t (128) | ucontext_t (4560) | extra space (SVE, SME) | {fp, lr} | ... sp
 *
 * The last piece is a frame record holding the interrupted x29 and x30; the handler
 * starts with x29 = its address and x30 = the restorer, so the handler's own frame
 * record is {that record, restorer}. The extra space exists only when the records of
 * uc_mcontext.__reserved (fpsimd, esr, sve, ...) do not fit there: an EXTRA_MAGIC record
 * then points at it (datap, size), right behind the records, and it ends at the frame
 * record. qemu-user (7.2) builds the same frame without extra space. */
#define A64_EXTRA_MAGIC 0x45585401u
#define A64_RECORDS_SIZE 4096u   /* sizeof uc_mcontext.__reserved */

/* async-signal-safe: whether the ucontext at u, inside [lo, hi), is the one the kernel
 * wrote below the frame record at rec (rec[0], rec[1]: the interrupted x29 and x30):
 * the flags and link it sets (0, NULL), those registers, an interrupted sp above the
 * record, and a well-formed list of records that ends the frame exactly at rec (through
 * the extra space, when there is one). */
STACK_READER
static bool a64_sigframe_at(uintptr_t u, uintptr_t rec, uintptr_t hi)
{
    const uintptr_t *r = (const uintptr_t *)rec;
    const ucontext_t *uc = (const ucontext_t *)u;
    if (uc->uc_mcontext.regs[29] != r[0] || uc->uc_mcontext.regs[30] != r[1] ||
        uc->uc_flags != 0 || uc->uc_link != NULL || uc->uc_mcontext.sp < rec + 16 ||
        uc->uc_mcontext.sp > hi)
        return false;
    uintptr_t p = (uintptr_t)uc->uc_mcontext.__reserved;
    uintptr_t end = p + A64_RECORDS_SIZE;
    while (end - p >= 8) {
        const uint32_t *head = (const uint32_t *)p;   /* magic, size */
        if (head[0] == 0) return head[1] == 0 && u + sizeof(ucontext_t) == rec;
        if (head[1] < 16 || (head[1] & 15) || head[1] > end - p) return false;
        if (head[0] == A64_EXTRA_MAGIC) {
            /* struct extra_context: head, datap, size; its data right behind it and
             * the terminator that follows it, and it ends at the frame record. */
            uintptr_t datap = *(const uint64_t *)(p + 8);
            uint32_t size = *(const uint32_t *)(p + 16);
            return datap == p + head[1] + 16 && datap + size == rec && size <= rec - u;
        }
        p += head[1];
    }
    return false;
}
#endif

/* async-signal-safe: the frame record at fp returns to a signal restorer, or has the
 * layout of one that does: the interrupted pc and frame pointer from the kernel's
 * ucontext next to it, when the whole frame lies inside [lo, hi) with the interrupted
 * stack pointer above it. */
STACK_READER
static bool signal_frame_fp(uintptr_t fp, uintptr_t next, uintptr_t ret, uintptr_t hi,
                            uintptr_t *pc, uintptr_t *next_fp)
{
#if defined(__x86_64__)
    (void)next;
    uintptr_t at = fp + 2 * sizeof(uintptr_t);
    if (!is_restorer(ret) || at > hi ||
        hi - at < offsetof(ucontext_t, uc_mcontext) + sizeof(mcontext_t))
        return false;
    const ucontext_t *uc = (const ucontext_t *)at;
    if ((uintptr_t)uc->uc_mcontext.gregs[REG_RSP] <= at) return false;
    *pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    *next_fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
    return true;
#elif defined(__aarch64__)
    /* next: the kernel's frame record; the frame lies between fp's record and it. */
    const uintptr_t lowest = fp + 16 + sizeof(siginfo_t);   /* the first ucontext place */
    if ((next & 15) || next < lowest || next > hi || hi - next < 16 ||
        next - lowest < sizeof(ucontext_t))
        return false;
    uintptr_t u = next - sizeof(ucontext_t);
    bool found = a64_sigframe_at(u, next, hi);
    /* A frame with extra space has its ucontext further down, at a distance its
     * records tell but nothing above it does: searched for, 16 bytes at a time, only
     * below a known restorer (a frame record of any large frame could look like one). */
    if (!found && is_restorer(ret)) {
        while (!found && u - lowest >= 16) {
            u -= 16;
            found = a64_sigframe_at(u, next, hi);
        }
    }
    if (!found) return false;
    const ucontext_t *uc = (const ucontext_t *)u;
    *pc = (uintptr_t)uc->uc_mcontext.pc;
    *next_fp = (uintptr_t)uc->uc_mcontext.regs[29];
    return true;
#else
    (void)fp; (void)next; (void)ret; (void)hi; (void)pc; (void)next_fp;
    return false;
#endif
}

/* async-signal-safe: the record {0, 0} that starts every task's frame-pointer chain,
 * at the very top of [lo, hi). */
STACK_READER
static bool outermost_record(uintptr_t fp, uintptr_t lo, uintptr_t hi)
{
    if (fp < lo || fp >= hi || hi - fp < 2 * sizeof(uintptr_t) ||
        hi - fp > OUTERMOST_FRAME_SLACK || (fp & (sizeof(uintptr_t) - 1)))
        return false;
    const uintptr_t *frame = (const uintptr_t *)fp;
    return frame[0] == 0 && frame[1] == 0;
}

/* async-signal-safe: whether the function starting at start keeps a frame record (was
 * built with frame pointers): it begins, after a landing pad, by storing the caller's
 * frame pointer and pointing the frame pointer at it (x86-64: push %rbp; mov %rsp,%rbp;
 * aarch64: stp x29, x30, [sp, #-N]!; mov x29, sp). Code is read only inside a known
 * object's code. Other prologues (aarch64's for frames above 512 bytes) count as none. */
static bool keeps_frame_record(uintptr_t start)
{
#if defined(__x86_64__)
    if (!in_code(start) || !in_code(start + 7)) return false;
    const unsigned char *b = (const unsigned char *)start;
    if (b[0] == 0xf3 && b[1] == 0x0f && b[2] == 0x1e && b[3] == 0xfa) b += 4;   /* endbr64 */
    return b[0] == 0x55 && b[1] == 0x48 && b[2] == 0x89 && b[3] == 0xe5;
#elif defined(__aarch64__)
    if ((start & 3) || !in_code(start) || !in_code(start + 8)) return false;
    const uint32_t *insn = (const uint32_t *)start;
    if (insn[0] == 0xd503245fu || insn[0] == 0xd503233fu) insn++;   /* bti c, paciasp */
    return (insn[0] & 0xffc07fffu) == 0xa9807bfdu && insn[1] == 0x910003fdu;
#else
    (void)start;
    return false;
#endif
}

/* async-signal-safe: whether the frame record at the top of a task's stack, the first
 * the walk reads, can be the own record of the function at addr (exact: the pc; else a
 * return address, looked up one byte back): that function is the task's entry (at
 * entry; 0: not known), or keeps a frame record (the entry may have tail-called it).
 * Either is known only from symbols. */
static bool owns_top_record(uintptr_t addr, bool exact, uintptr_t entry)
{
    struct vms__sym a, e;
    if (vms__trace_symbolize(exact ? addr : addr - 1, &a) != 2) return false;
    return (entry && vms__trace_symbolize(entry, &e) == 2 && a.start == e.start) ||
           keeps_frame_record(a.start);
}

/* async-signal-safe: the frame-pointer walk described above OUTERMOST_FRAME_SLACK.
 * The chain skips code without frame records (its frames are simply not seen). A walk
 * whose first record is one of the task's two outermost ones (the record {0, 0}, or the
 * task's first function's, which points at it) has skipped everything between the
 * fault and the task's first function, unless the faulting function is that first
 * function: code built without frame pointers leaves the frame pointer where the task
 * started it. Such a walk goes on only when the last frame before that record (the pc,
 * or the caller of a function faulting in its prologue) can own it (owns_top_record;
 * entry: the task's entry function, 0 when not known: not a task's stack); else it ends
 * there, not complete. Further up, the record that points at the outermost one must
 * return into the trampoline (vms__ctx_trampoline_ret): one that returns elsewhere was
 * written by a function called from code without frame records, whose frames the chain
 * skips on its way to the top; the walk is then not complete either. */
STACK_READER
int vms__trace_walk_fp(const ucontext_t *uc, uintptr_t lo, uintptr_t hi, uintptr_t entry,
                       vms__frame_fn fn, void *ctx, int max, bool *complete)
{
#if defined(__x86_64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.gregs[REG_RIP];
    uintptr_t fp = (uintptr_t)uc->uc_mcontext.gregs[REG_RBP];
#elif defined(__aarch64__)
    uintptr_t pc = (uintptr_t)uc->uc_mcontext.pc;
    uintptr_t fp = (uintptr_t)uc->uc_mcontext.regs[29];
#else
#error "vmstack: no frame-pointer walk for this architecture"
#endif
    bool done = false, first = true, skipped = false;
    uintptr_t top_site = (uintptr_t)vms__ctx_trampoline_ret;
    int n = 0;
    if (max > 0 && (n = 1, fn(ctx, pc))) {
        uintptr_t caller = prologue_return(uc, pc, lo, hi);
        if (caller && n < max) {
            n++;
            if (!fn(ctx, caller)) goto out;
        }
        while (n < max) {
            if (fp < lo || fp >= hi || hi - fp < 2 * sizeof(uintptr_t) ||
                (fp & (sizeof(uintptr_t) - 1)))
                break;
            const uintptr_t *frame = (const uintptr_t *)fp;
            uintptr_t next = frame[0], ret = strip_pac(frame[1]);
            bool outermost = next == 0 && hi - fp <= OUTERMOST_FRAME_SLACK;
            bool to_top = outermost_record(next, lo, hi);
            if (first && ((outermost && ret == 0) || to_top)) {
                skipped = caller ? !owns_top_record(caller, false, entry)
                                 : !owns_top_record(pc, true, entry);
                if (skipped) break;   /* the trace ends where it lost the frames */
            }
            first = false;
            /* A record that points at the task's outermost one but does not return into
             * the trampoline: its caller (ret's function) and whatever lies between it
             * and the task's start keep no frame record. */
            if (to_top && entry && ret != top_site) skipped = true;
            if (ret < 4096) {
                done = outermost && ret == 0;
                break;
            }
            n++;
            if (!fn(ctx, ret)) break;
            uintptr_t spc;
            if (signal_frame_fp(fp, next, ret, hi, &spc, &next)) {
                /* The interrupted code: its pc, then its frame pointer's chain. */
                if (n >= max) break;
                n++;
                if (!fn(ctx, spc)) break;
                if (next <= fp) break;
                fp = next;
                continue;
            }
            if (next == 0) {
                done = outermost;
                break;
            }
            if (next <= fp) break;
            fp = next;
        }
    }
out:
    if (complete) *complete = done && !skipped;
    return n;
}

/* async-signal-safe: libunwind's local unwinder is documented signal-safe
 * (unw_init_local(3), unw_step(3) and unw_get_reg(3) of 1.6.2, Debian 12's): it takes
 * its locks (the unwind cache, its memory pool, and glibc's dl_iterate_phdr lock, which
 * is recursive) with every signal blocked, so a handler never interrupts their holder
 * on its own thread (a fault there kills the process: the kernel does not deliver a
 * blocked SIGSEGV), and it validates addresses with mincore and a pipe it reads and
 * writes (read is a cancellation point: the fault handler disables cancellation). It
 * reads the unwind tables of the objects, and UNW_INIT_SIGNAL_FRAME tells it that the
 * first pc is exact (the faulting instruction), not a return address. The walk is
 * complete when unw_step reports the outermost frame (0), not an error. */
int vms__trace_walk_unwind(const ucontext_t *uc, vms__frame_fn fn, void *ctx, int max,
                           bool *complete)
{
    bool done = false;
    int n = 0;
#ifdef VMSTACK_HAVE_LIBUNWIND
    unw_cursor_t cur;
    if (max > 0 &&
        unw_init_local2(&cur, (unw_context_t *)(uintptr_t)uc, UNW_INIT_SIGNAL_FRAME) >= 0) {
        for (;;) {
            unw_word_t ip = 0;
            if (unw_get_reg(&cur, UNW_REG_IP, &ip) < 0 || ip == 0) break;
            n++;
            if (!fn(ctx, strip_pac((uintptr_t)ip)) || n >= max) break;
            int r = unw_step(&cur);
            if (r <= 0) {
                done = r == 0;
                break;
            }
        }
    }
#else
    (void)uc; (void)fn; (void)ctx; (void)max;
#endif
    if (complete) *complete = done;
    return n;
}

/* async-signal-safe: a constant of the build. */
bool vms__trace_have_unwind(void)
{
#ifdef VMSTACK_HAVE_LIBUNWIND
    return true;
#else
    return false;
#endif
}

#ifdef VMSTACK_HAVE_LIBUNWIND
/* The hybrid walk. libunwind costs a few system calls per frame (it blocks all signals
 * around its lookup of each frame's unwind table, and validates every new stack page
 * with mincore and a pipe write), which for the thousands of frames of an overflowing
 * recursion is most of the report's cost. But a frame's unwind rule depends only on its
 * pc: when libunwind, stepping from frames at one return address, twice finds the
 * classic frame record (the caller's frame pointer and the return address stored at the
 * frame pointer, the caller's sp a fixed distance above it), every other frame at that
 * return address unwinds the same way, and the walk follows the frame pointer there
 * itself, reading only the stack's known range. Any other frame goes to libunwind,
 * restarted at that frame when the walk was following frame pointers. */
#define FP_RULES 16
struct fp_rule {
    uintptr_t ip;       /* a return address */
    uintptr_t delta;    /* the caller's sp minus this frame's frame pointer */
    int seen;           /* frames that confirmed it; -1: it did not hold once */
};

#if defined(__x86_64__)
#define UNW_FP_REG UNW_X86_64_RBP
#elif defined(__aarch64__)
#define UNW_FP_REG UNW_AARCH64_X29
#endif

/* async-signal-safe: the frame record at fp, when it lies inside [lo, hi). */
STACK_READER
static bool fp_record(uintptr_t fp, uintptr_t lo, uintptr_t hi, uintptr_t *next_fp,
                      uintptr_t *ret)
{
    if (fp < lo || fp >= hi || hi - fp < 2 * sizeof(uintptr_t) ||
        (fp & (sizeof(uintptr_t) - 1)))
        return false;
    const uintptr_t *frame = (const uintptr_t *)fp;
    *next_fp = frame[0];
    *ret = strip_pac(frame[1]);
    return true;
}

/* async-signal-safe: the rule for return address ip, or NULL. */
static struct fp_rule *rule_of(struct fp_rule *rules, int n, uintptr_t ip)
{
    for (int i = 0; i < n; i++)
        if (rules[i].ip == ip) return &rules[i];
    return NULL;
}

/* async-signal-safe: records what libunwind's step from the frame (ip, sp, fp) to its
 * caller (cip, csp, cfp) says about frames at ip. */
static void learn(struct fp_rule *rules, int *n, uintptr_t ip, uintptr_t sp, uintptr_t fp,
                  uintptr_t cip, uintptr_t csp, uintptr_t cfp, uintptr_t lo, uintptr_t hi)
{
    uintptr_t next_fp, ret;
    bool record = fp >= sp && csp > fp && fp_record(fp, lo, hi, &next_fp, &ret) &&
                  next_fp == cfp && ret == cip;
    struct fp_rule *r = rule_of(rules, *n, ip);
    if (!r) {
        if (!record || *n == FP_RULES) return;
        r = &rules[(*n)++];
        r->ip = ip;
        r->delta = csp - fp;
        r->seen = 0;
    }
    if (r->seen < 0) return;
    if (record && csp - fp == r->delta) r->seen++;
    else r->seen = -1;   /* not a plain frame record after all: libunwind only */
}

/* async-signal-safe: a context describing the frame (ip, sp, fp) of the same stack, for
 * restarting libunwind there. The other registers keep the interrupted values: the
 * unwind rules of the frames above use only the pc, sp and frame pointer, and libunwind
 * validates every read it makes from them. Only the registers are copied: the kernel's
 * ucontext behind uc is smaller than the C library's ucontext_t. */
static void retarget(ucontext_t *dst, const ucontext_t *uc, uintptr_t ip, uintptr_t sp,
                     uintptr_t fp)
{
    memset(dst, 0, sizeof *dst);
    dst->uc_mcontext = uc->uc_mcontext;
#if defined(__x86_64__)
    dst->uc_mcontext.gregs[REG_RIP] = (greg_t)ip;
    dst->uc_mcontext.gregs[REG_RSP] = (greg_t)sp;
    dst->uc_mcontext.gregs[REG_RBP] = (greg_t)fp;
#elif defined(__aarch64__)
    dst->uc_mcontext.pc = ip;
    dst->uc_mcontext.sp = sp;
    dst->uc_mcontext.regs[29] = fp;
#endif
}

/* async-signal-safe: whether libunwind has unwind information for the frame at ip, the
 * cursor's, which it is about to step from. Without it (JIT code in anonymous memory,
 * hand-written assembly without CFI, an object unloaded since its frame was entered)
 * libunwind 1.6.2 guesses a frame-pointer chain: the frame it steps to may be wrong (a
 * stack address taken for the return address of a frame in an unloaded object, the
 * frames below it left out), and when a guess fails its own plausibility check (a
 * frame pointer more than 16 KiB above the last CFA: after 65 frames of a JIT recursion
 * of 272-byte frames) it ends the walk with 0, as at a declared end, every frame below
 * unseen. So the walk ends at such a frame, not complete, and the report says where:
 * before, it showed the guessed frames as found, counted the walk complete, and the
 * task was killed alone past frames that might hold a lock. unw_get_proc_info is
 * the lookup unw_step makes (signal-safe likewise); for a frame without unwind
 * information it still succeeds, with a made-up range [ip, ip + 1) and no
 * unwind_info. */
static bool has_unwind_info(unw_cursor_t *cur, uintptr_t ip)
{
    unw_proc_info_t pi;
    return unw_get_proc_info(cur, &pi) == 0 &&
           !(pi.start_ip == ip && pi.end_ip == ip + 1 && !pi.unwind_info);
}

/* async-signal-safe: see above. Returns the frames passed to fn, as the other walks. */
static int walk_hybrid(const ucontext_t *uc, uintptr_t lo, uintptr_t hi, vms__frame_fn fn,
                       void *ctx, int max, bool *complete)
{
    struct fp_rule rules[FP_RULES];
    int nrules = 0, n = 0;
    bool done = false, in_cursor = true;
    unw_cursor_t cur;
    ucontext_t there;
    uintptr_t ip = 0, sp = 0, fp = 0;
    if (max <= 0 ||
        unw_init_local2(&cur, (unw_context_t *)(uintptr_t)uc, UNW_INIT_SIGNAL_FRAME) < 0)
        goto out;
    for (;;) {
        if (in_cursor) {
            unw_word_t v[3] = { 0, 0, 0 };
            if (unw_get_reg(&cur, UNW_REG_IP, &v[0]) < 0 ||
                unw_get_reg(&cur, UNW_REG_SP, &v[1]) < 0 ||
                unw_get_reg(&cur, UNW_FP_REG, &v[2]) < 0)
                break;
            ip = strip_pac((uintptr_t)v[0]);
            sp = (uintptr_t)v[1];
            fp = (uintptr_t)v[2];
        }
        if (ip == 0) break;
        n++;
        if (!fn(ctx, ip) || n >= max) break;
        /* The first frame's pc is exact, not a return address: libunwind steps it. */
        struct fp_rule *r = n > 1 ? rule_of(rules, nrules, ip) : NULL;
        uintptr_t next_fp, ret;
        if (r && r->seen >= 2 && fp >= sp && fp_record(fp, lo, hi, &next_fp, &ret)) {
            sp = fp + r->delta;
            fp = next_fp;
            ip = ret;
            in_cursor = false;
            continue;
        }
        if (!in_cursor) {
            retarget(&there, uc, ip, sp, fp);
            if (unw_init_local2(&cur, (unw_context_t *)&there, 0) < 0) break;
            in_cursor = true;
        }
        /* A signal restorer (aarch64's is in the vDSO) libunwind recognizes by its code
         * and steps exactly, information or not. Known by address, not by asking
         * libunwind, which would read the code at ip: unmapped, for a frame of an
         * unloaded object. */
        if (!is_restorer(ip) && !has_unwind_info(&cur, ip))
            break;   /* the trace ends here, not complete */
        int s = unw_step(&cur);
        if (s <= 0) {
            done = s == 0;
            break;
        }
        if (n > 1) {
            unw_word_t v[3] = { 0, 0, 0 };
            if (unw_get_reg(&cur, UNW_REG_IP, &v[0]) == 0 &&
                unw_get_reg(&cur, UNW_REG_SP, &v[1]) == 0 &&
                unw_get_reg(&cur, UNW_FP_REG, &v[2]) == 0)
                learn(rules, &nrules, ip, sp, fp, strip_pac((uintptr_t)v[0]),
                      (uintptr_t)v[1], (uintptr_t)v[2], lo, hi);
        }
    }
out:
    if (complete) *complete = done;
    return n;
}
#endif

/* async-signal-safe */
int vms__trace_walk(const ucontext_t *uc, uintptr_t lo, uintptr_t hi, uintptr_t entry,
                    vms__frame_fn fn, void *ctx, int max, bool *complete)
{
#ifdef VMSTACK_HAVE_LIBUNWIND
    (void)entry;
    return walk_hybrid(uc, lo, hi, fn, ctx, max, complete);
#else
    return vms__trace_walk_fp(uc, lo, hi, entry, fn, ctx, max, complete);
#endif
}

/* Functions that take process-wide locks: the C library's allocator, stdio (FILE locks
 * and the list of open files), the dynamic loader, atexit and the environment. A task
 * stopped inside one of them may hold such a lock, and killing only the task would
 * leave it held forever. Exact names first, then name prefixes. */
static const char *const unsafe_names[] = {
    "malloc", "free", "calloc", "realloc", "reallocarray", "memalign", "posix_memalign",
    "aligned_alloc", "valloc", "pvalloc", "cfree", "malloc_trim", "malloc_stats",
    "malloc_info", "mallinfo", "mallinfo2", "malloc_consolidate", "sysmalloc", "systrim",
    "arena_get2", "printf", "fprintf", "vprintf", "vfprintf", "dprintf", "vdprintf",
    "sprintf", "vsprintf", "snprintf", "vsnprintf", "asprintf", "vasprintf", "wprintf",
    "fwprintf", "vfwprintf", "scanf", "fscanf", "sscanf", "vfscanf", "vscanf", "vsscanf",
    "puts", "fputs", "fputc", "putc", "putchar", "fwrite", "fread", "fgets", "fgetc",
    "getc", "getchar", "ungetc", "fflush", "fopen", "fopen64", "fdopen", "fclose",
    "freopen", "fseek", "fseeko", "ftell", "ftello", "rewind", "setvbuf", "setbuf",
    "getline", "getdelim", "perror", "open_memstream", "fmemopen", "popen", "pclose",
    "dlopen", "dlclose", "dlsym", "dlvsym", "dladdr", "dladdr1", "dl_iterate_phdr",
    "dlerror", "exit", "atexit", "on_exit", "setenv", "unsetenv", "putenv", "clearenv",
    "syslog", "vsyslog", "openlog", "closelog", "fork", "strdup", "strndup",
};

/* The C++ runtime's allocation of exception objects: when malloc fails, libstdc++ takes
 * them from its emergency pool under the pool's mutex, in a function its stripped
 * library does not name (possibly inlined), so its callers count. */
static const char *const cxx_unsafe_names[] = {
    "__cxa_allocate_exception", "__cxa_free_exception",
    "__cxa_allocate_dependent_exception", "__cxa_free_dependent_exception",
};
static const char *const unsafe_prefixes[] = {
    "_IO_", "__GI__IO_", "_int_", "__libc_malloc", "__libc_free", "__libc_calloc",
    "__libc_realloc", "__libc_memalign", "__libc_valloc", "__libc_pvalloc", "__malloc_",
    "tcache_", "__vf", "__vsn", "__vsp", "__vas", "__printf", "__fprintf", "__sprintf",
    "__snprintf", "__vprintf", "__isoc99_", "__isoc23_", "_dl_", "__libc_dl", "__cxa_atexit",
    "__cxa_thread_atexit", "__cxa_finalize", "__new_fopen", "__fopen_internal", "__strdup",
};

/* Sanitizer runtimes intercept these functions under their own names
 * (__interceptor_malloc; ___interceptor_ in newer LLVM): the function inside is the
 * same. */
static const char *const interceptor_prefixes[] = { "___interceptor_", "__interceptor_" };

/* async-signal-safe */
int vms__trace_name_unsafe(const char *name)
{
    if (!name) return 0;
    for (size_t i = 0; i < sizeof interceptor_prefixes / sizeof *interceptor_prefixes; i++)
        if (vms__sigsafe_prefix(name, interceptor_prefixes[i])) {
            name += vms__sigsafe_strlen(interceptor_prefixes[i]);
            break;
        }
    for (size_t i = 0; i < sizeof unsafe_names / sizeof *unsafe_names; i++)
        if (vms__sigsafe_streq(name, unsafe_names[i])) return VMS__UNSAFE_LIBC;
    for (size_t i = 0; i < sizeof unsafe_prefixes / sizeof *unsafe_prefixes; i++)
        if (vms__sigsafe_prefix(name, unsafe_prefixes[i])) return VMS__UNSAFE_LIBC;
    for (size_t i = 0; i < sizeof cxx_unsafe_names / sizeof *cxx_unsafe_names; i++)
        if (vms__sigsafe_streq(name, cxx_unsafe_names[i])) return VMS__UNSAFE_CXX;
    return 0;
}

/* ---- C++ names -------------------------------------------------------------------- */

#ifdef VMSTACK_HAVE_LIBIBERTY
struct demangled {
    char *out;
    size_t cap, len;
    bool cut;
};

/* async-signal-safe: the demangler's output callback, a piece at a time. */
static void demangled_piece(const char *s, size_t n, void *opaque)
{
    struct demangled *d = opaque;
    for (size_t i = 0; i < n; i++) {
        if (d->len + 1 >= d->cap) {
            d->cut = true;
            return;
        }
        d->out[d->len++] = s[i];
    }
}
#endif

/* async-signal-safe: libiberty's cplus_demangle_v3_callback allocates nothing (its work
 * arrays are variable-length arrays on the stack, hence the room check) and takes no
 * lock; it formats numbers (template arguments, lambda counters) with sprintf into a
 * buffer of its own, which in glibc takes no lock and allocates nothing for them. */
size_t vms__trace_demangle(const char *name, size_t room, char *out, size_t cap)
{
#ifdef VMSTACK_HAVE_LIBIBERTY
    if (!name || name[0] != '_' || name[1] != 'Z' || cap < 8) return 0;
    size_t len = vms__sigsafe_strlen(name);
    if (room < VMS__DEMANGLE_ROOM(len)) return 0;
    struct demangled d = { out, cap, 0, false };
    if (!cplus_demangle_v3_callback(name, DMGL_PARAMS | DMGL_TYPES, demangled_piece, &d) ||
        d.len == 0)
        return 0;
    if (d.cut) {
        d.len = cap - 4;
        memcpy(out + d.len, "...", 3);
        d.len += 3;
    }
    out[d.len] = '\0';
    return d.len;
#else
    (void)name;
    (void)room;
    (void)out;
    (void)cap;
    return 0;
#endif
}
