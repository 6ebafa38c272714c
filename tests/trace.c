/*
 * trace.c - units of trace.c: symbol lookup without malloc (a static and a global
 * function, a C library function), the unsafe-name list, and the stack walks (frame
 * pointers, libunwind, and the hybrid of both that reports use) through a signal frame
 * finding a recursing function.
 */
#include "island.h"
#include "test.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <ucontext.h>
#ifdef TST_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* The walkers read the frames of these; noinline and a use of the result keep every
 * level a real frame. */
__attribute__((noinline)) static int island_static_fn(int x)
{
    return x * 3 + 1;
}

__attribute__((noinline)) int island_global_fn(int x)
{
    return x * 5 + 2;
}

static void load(void)
{
    ASSERT_GT(vms__trace_load(), 0);
}

static void check_symbol(uintptr_t fn, const char *want)
{
    struct vms__sym s;
    ASSERT_EQ(vms__trace_symbolize(fn + 2, &s), 2);
    ASSERT_NOT_NULL(s.name);
    if (strcmp(s.name, want) != 0) TST_FAIL("symbol %s, want %s", s.name, want);
    ASSERT_UEQ(s.start, fn);
    ASSERT_GT(s.size, 2);
    ASSERT_NOT_NULL(s.object);
    ASSERT_STR_CONTAINS(s.object, "test_trace");
    ASSERT(!s.in_libc);
}

TEST(symbolize_static_function)
{
    load();
    check_symbol((uintptr_t)island_static_fn, "island_static_fn");
    ASSERT_EQ(island_static_fn(1), 4);
}

TEST(symbolize_global_function)
{
    load();
    check_symbol((uintptr_t)island_global_fn, "island_global_fn");
    ASSERT_EQ(island_global_fn(1), 7);
}

TEST(symbolize_libc_function)
{
    load();
    struct vms__sym s;
    uintptr_t fn = (uintptr_t)&pthread_self;
    ASSERT_EQ(vms__trace_symbolize(fn, &s), 2);
    ASSERT_STR_CONTAINS(s.name, "pthread_self");
    ASSERT_UEQ(s.start, fn);
    ASSERT(s.in_libc);
    ASSERT_STR_CONTAINS(s.object, "libc.so");
}

TEST(symbolize_unknown)
{
    load();
    struct vms__sym s;
    ASSERT_EQ(vms__trace_symbolize(16, &s), 0);
    ASSERT_NULL(s.name);
    ASSERT_NULL(s.object);
    int on_stack;
    ASSERT_EQ(vms__trace_symbolize((uintptr_t)&on_stack, &s), 0);
}

/* A file whose symbol string table does not end in a NUL, and ends the file (whose size is
 * a multiple of the page size): its last name runs to the end of the mapping. Such a name
 * is not used (its symbol is not found); names before it are. Before, the name was
 * handed out unterminated and a report read on past the mapping ("fault while
 * reporting"). An ET_DYN file with one PT_LOAD segment and .symtab with two functions,
 * mapped here so that symbolizing an address in it adopts it. */
#define BAD_STRS "\0fn_ok\0bad_unterminated"
static char bad_elf_path[64];

static void write_bad_elf(size_t page)
{
    char *f = calloc(1, page);
    ASSERT_NOT_NULL(f);
    Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
    memcpy(eh->e_ident, ELFMAG, SELFMAG);
    eh->e_ident[EI_CLASS] = ELFCLASS64;
    eh->e_ident[EI_DATA] = ELFDATA2LSB;
    eh->e_ident[EI_VERSION] = EV_CURRENT;
    eh->e_type = ET_DYN;
    eh->e_version = EV_CURRENT;
    eh->e_ehsize = sizeof *eh;
    eh->e_phoff = 64;
    eh->e_phentsize = sizeof(Elf64_Phdr);
    eh->e_phnum = 1;
    eh->e_shoff = 128;
    eh->e_shentsize = sizeof(Elf64_Shdr);
    eh->e_shnum = 3;
    Elf64_Phdr *ph = (Elf64_Phdr *)(f + 64);
    ph->p_type = PT_LOAD;
    ph->p_flags = PF_R | PF_X;
    ph->p_filesz = ph->p_memsz = page;
    ph->p_align = page;
    size_t strsz = sizeof BAD_STRS - 1, stroff = page - strsz;   /* no NUL at its end */
    Elf64_Shdr *sh = (Elf64_Shdr *)(f + 128);
    sh[1].sh_type = SHT_SYMTAB;
    sh[1].sh_offset = 128 + 3 * sizeof(Elf64_Shdr);
    sh[1].sh_size = 3 * sizeof(Elf64_Sym);
    sh[1].sh_entsize = sizeof(Elf64_Sym);
    sh[1].sh_link = 2;
    sh[2].sh_type = SHT_STRTAB;
    sh[2].sh_offset = stroff;
    sh[2].sh_size = strsz;
    Elf64_Sym *sym = (Elf64_Sym *)(f + sh[1].sh_offset);
    for (int i = 1; i <= 2; i++) {
        sym[i].st_info = ELF64_ST_INFO(STB_GLOBAL, STT_FUNC);
        sym[i].st_shndx = 1;
        sym[i].st_value = 0x400 + (Elf64_Addr)(i - 1) * 0x100;
        sym[i].st_size = 0x100;
    }
    sym[1].st_name = 1;                           /* "fn_ok" */
    sym[2].st_name = 7;                           /* "bad_unterminated", the file's end */
    memcpy(f + stroff, BAD_STRS, strsz);
    snprintf(bad_elf_path, sizeof bad_elf_path, "/tmp/vmstack-badstrtab-XXXXXX");
    int fd = mkstemp(bad_elf_path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, f, page), (ssize_t)page);
    close(fd);
    free(f);
}

TEST(symbolize_unterminated_string_table)
{
    load();
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    write_bad_elf(page);
    int fd = open(bad_elf_path, O_RDONLY);
    ASSERT_GE(fd, 0);
    char *m = mmap(NULL, page, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    ASSERT(m != MAP_FAILED);
    vms__trace_report_begin();
    struct vms__sym s;
    int r = vms__trace_symbolize((uintptr_t)m + 0x410, &s);
    int r2 = 0;
    struct vms__sym s2;
    if (r == 2) r2 = vms__trace_symbolize((uintptr_t)m + 0x510, &s2);
    unlink(bad_elf_path);
    ASSERT_EQ(r, 2);
    ASSERT_NOT_NULL(s.name);
    if (strcmp(s.name, "fn_ok") != 0) TST_FAIL("symbol %s, want fn_ok", s.name);
    ASSERT_STR_CONTAINS(s.object, "vmstack-badstrtab-");
    /* The unterminated name: not used, or (never) terminated within the table. */
    if (r2 == 2) {
        ASSERT_NOT_NULL(s2.name);
        ASSERT(memchr(s2.name, 0, sizeof "bad_unterminated" - 1) != NULL);
    } else {
        ASSERT_EQ(r2, 1);
        ASSERT_NULL(s2.name);
    }
    munmap(m, page);
}

TEST(unsafe_names)
{
    const char *unsafe[] = { "malloc", "free", "_int_malloc", "realloc", "calloc",
                             "_IO_file_xsputn", "vfprintf", "printf", "__vfprintf_internal",
                             "fwrite", "dl_iterate_phdr", "_dl_open",
                             /* registers a thread_local's destructor under the
                              * loader's lock */
                             "__cxa_thread_atexit_impl", "__cxa_thread_atexit",
                             /* sanitizer interceptors of the same functions */
                             "__interceptor_snprintf", "___interceptor_malloc" };
    for (size_t i = 0; i < sizeof unsafe / sizeof *unsafe; i++)
        if (!vms__trace_name_unsafe(unsafe[i])) TST_FAIL("%s should be unsafe", unsafe[i]);
    const char *safe[] = { "memcpy", "recurse", "mallocx_user", "freedom", "strlen",
                           "printf_like_helper", "__interceptor_strlen" };
    for (size_t i = 0; i < sizeof safe / sizeof *safe; i++)
        if (vms__trace_name_unsafe(safe[i])) TST_FAIL("%s should be safe", safe[i]);
    ASSERT(!vms__trace_name_unsafe(NULL));
    ASSERT_EQ(vms__trace_name_unsafe("malloc"), VMS__UNSAFE_LIBC);
    /* the C++ runtime's exception allocation: its emergency pool's mutex */
    const char *cxx[] = { "__cxa_allocate_exception", "__cxa_free_exception",
                          "__cxa_allocate_dependent_exception",
                          "__cxa_free_dependent_exception" };
    for (size_t i = 0; i < sizeof cxx / sizeof *cxx; i++)
        if (vms__trace_name_unsafe(cxx[i]) != VMS__UNSAFE_CXX)
            TST_FAIL("%s should be unsafe (C++ runtime)", cxx[i]);
    ASSERT(!vms__trace_name_unsafe("__cxa_begin_catch"));   /* no lock */
    ASSERT(!vms__trace_name_unsafe("__cxa_allocate_exceptional"));
}

/* ---- C++ names ----------------------------------------------------------------- */

#define DEEP_MANGLED "_ZN4cxxt4deepEmm"
#define DEEP_PLAIN "cxxt::deep(unsigned long, unsigned long)"

TEST(demangle_cxx_names)
{
    char b[256];
#ifndef VMSTACK_HAVE_LIBIBERTY
    ASSERT_EQ(vms__trace_demangle(DEEP_MANGLED, SIZE_MAX, b, sizeof b), 0);
    SKIP("built without libiberty (VMSTACK_DEMANGLE): C++ names stay mangled");
#else
    ASSERT_EQ(vms__trace_demangle(DEEP_MANGLED, SIZE_MAX, b, sizeof b), strlen(DEEP_PLAIN));
    ASSERT(strcmp(b, DEEP_PLAIN) == 0);
    ASSERT(vms__trace_demangle("_ZNSt6vectorIiSaIiEE9push_backERKi", SIZE_MAX, b, sizeof b) > 0);
    ASSERT(strcmp(b, "std::vector<int, std::allocator<int> >::push_back(int const&)") == 0);
    /* exactly the room it asks for, and a byte less */
    size_t need = VMS__DEMANGLE_ROOM(strlen(DEEP_MANGLED));
    ASSERT(vms__trace_demangle(DEEP_MANGLED, need, b, sizeof b) > 0);
    ASSERT_EQ(vms__trace_demangle(DEEP_MANGLED, need - 1, b, sizeof b), 0);
    /* cut to fit, with "..." */
    ASSERT_EQ(vms__trace_demangle(DEEP_MANGLED, SIZE_MAX, b, 16), 15);
    ASSERT(strcmp(b, "cxxt::deep(u...") == 0);
    /* not C++ names, or not ones the demangler understands: 0 (printed as they are) */
    const char *no[] = { "main", "_Z", "_Zx", "_ZN4cxxt", "Z1fv", "_GLOBAL__sub_I_x" };
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (vms__trace_demangle(no[i], SIZE_MAX, b, sizeof b) != 0)
            TST_FAIL("%s demangled to \"%s\"", no[i], b);
    ASSERT_EQ(vms__trace_demangle(NULL, SIZE_MAX, b, sizeof b), 0);
#endif
}

#ifdef VMSTACK_HAVE_LIBIBERTY
/* The demangler runs on a painted stack of its own; the bytes it changed are its use. */
#define DM_STACK (1u << 20)
static unsigned char *dm_stack;
static ucontext_t dm_main, dm_ctx;
static const char *dm_name;
static size_t dm_len;

static void dm_run(void)
{
    char b[256];
    dm_len = vms__trace_demangle(dm_name, SIZE_MAX, b, sizeof b);
}

static size_t dm_stack_used(const char *name)
{
    memset(dm_stack, 0xa5, DM_STACK);
    dm_name = name;
    ASSERT_EQ(getcontext(&dm_ctx), 0);
    dm_ctx.uc_stack.ss_sp = dm_stack;
    dm_ctx.uc_stack.ss_size = DM_STACK;
    dm_ctx.uc_link = &dm_main;
    makecontext(&dm_ctx, dm_run, 0);
    ASSERT_EQ(swapcontext(&dm_main, &dm_ctx), 0);
    size_t i = 0;
    while (i < DM_STACK && dm_stack[i] == 0xa5) i++;
    return DM_STACK - i;
}

static char *repeat(const char *head, const char *unit, int n, const char *mid,
                    const char *tail_unit, int m, const char *tail)
{
    size_t len = strlen(head) + strlen(unit) * n + strlen(mid) + strlen(tail_unit) * m +
                 strlen(tail) + 1;
    char *s = malloc(len);
    ASSERT_NOT_NULL(s);
    strcpy(s, head);
    for (int i = 0; i < n; i++) strcat(s, unit);
    strcat(s, mid);
    for (int i = 0; i < m; i++) strcat(s, tail_unit);
    strcat(s, tail);
    return s;
}
#endif

/* VMS__DEMANGLE_ROOM, what a report leaves the demangler of its stack, holds for the
 * names that use the most per byte (measured: chains of const pointers, function
 * pointers, nested templates, nested names, expressions) and for long real ones. */
TEST(demangler_stays_within_its_room)
{
#ifndef VMSTACK_HAVE_LIBIBERTY
    SKIP("built without libiberty (VMSTACK_DEMANGLE)");
#else
    dm_stack = malloc(DM_STACK);
    ASSERT_NOT_NULL(dm_stack);
    static const char *const real[] = {
        "_ZNSt17_Function_handlerIFvvESt5_BindIFM4GameFviEPS2_iEEE9_M_invokeERKSt9_Any_data",
        "_ZNSt8_Rb_treeINSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEEESt4pairIKS5_"
        "St6vectorIiSaIiEEESt10_Select1stISB_ESt4lessIS5_ESaISB_EE8_M_eraseEPSt13_Rb_tree_nodeISB_E",
        "_ZN5boost6fibers9scheduler10wait_untilEPNS0_7contextERKNSt6chrono10time_pointINS4_"
        "3_V212steady_clockENS4_8durationIlSt5ratioILl1ELl1000000000EEEEEERSt11unique_lock"
        "INS0_6detail13spinlock_ttasEE",
        /* the longest name of libLLVM-14, 604 bytes */
        "_ZN15LiveDebugValues16InstrRefBasedLDV21depthFirstVLocAndEmitEjRKN4llvm8DenseMapIPKNS"
        "1_12LexicalScopeEPKNS1_10DILocationENS1_12DenseMapInfoIS5_vEENS1_6detail12DenseMapPai"
        "rIS5_S8_EEEERKNS2_IS5_NS1_8SmallSetINS1_13DebugVariableELj4ESt4lessISI_EEESA_NSC_IS5_"
        "SL_EEEERNS2_IS5_NS1_11SmallPtrSetIPNS1_17MachineBasicBlockELj4EEESA_NSC_IS5_ST_EEEERN"
        "S1_11SmallVectorINSX_ISt4pairISI_NS_8DbgValueEELj8EEELj8EEERSt10unique_ptrIA_S14_IA_N"
        "S_10ValueIDNumESt14default_deleteIS16_EES17_IS1A_EES1D_RNS1_15SmallVectorImplINS_11VL"
        "ocTrackerEEERNS1_15MachineFunctionERNS2_ISI_jNS9_ISI_vEENSC_ISI_jEEEERKNS1_16TargetPa"
        "ssConfigE",
    };
    for (size_t i = 0; i < sizeof real / sizeof *real; i++) {
        size_t used = dm_stack_used(real[i]), len = strlen(real[i]);
        if (!dm_len) TST_FAIL("%s was not demangled", real[i]);
        if (used > VMS__DEMANGLE_ROOM(len))
            TST_FAIL("%zu bytes of stack for a name of %zu: more than %zu", used, len,
                     VMS__DEMANGLE_ROOM(len));
    }
    static const int depths[] = { 10, 50, 150 };
    for (size_t i = 0; i < sizeof depths / sizeof *depths; i++) {
        int d = depths[i];
        char *worst[] = {
            repeat("_Z1f", "PK", d, "i", "", 0, ""),
            repeat("_Z1f", "PFv", d, "", "vE", d, ""),
            repeat("_Z1f", "I1A", d, "", "E", d, "v"),
            repeat("_ZN", "1a", d, "1fEv", "", 0, ""),
            repeat("_Z1fIiEDT", "ng", d, "fp_", "", 0, "ET_"),
            repeat("_Z1f", "A_", d, "i", "", 0, ""),
        };
        for (size_t k = 0; k < sizeof worst / sizeof *worst; k++) {
            size_t used = dm_stack_used(worst[k]), len = strlen(worst[k]);
            if (used > VMS__DEMANGLE_ROOM(len))
                TST_FAIL("%zu bytes of stack for %s (%zu bytes): more than %zu", used,
                         worst[k], len, VMS__DEMANGLE_ROOM(len));
            free(worst[k]);
        }
    }
    free(dm_stack);
#endif
}

/* ---- walks through a signal frame ---------------------------------------------- */

#define MAX_SEEN 256
static uintptr_t seen[MAX_SEEN];
static int nseen;
static int use_unwind;
static uintptr_t stack_lo, stack_hi;
static bool walk_complete;

static bool record(void *ctx, uintptr_t addr)
{
    (void)ctx;
    if (nseen < MAX_SEEN) seen[nseen++] = addr;
    return true;
}

/* The hybrid walk's frames, to compare with libunwind's own (use_unwind == 2). */
static uintptr_t seen_hybrid[MAX_SEEN];
static int nseen_hybrid;
static bool hybrid_complete;

static bool record_hybrid(void *ctx, uintptr_t addr)
{
    (void)ctx;
    if (nseen_hybrid < MAX_SEEN) seen_hybrid[nseen_hybrid++] = addr;
    return true;
}

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    nseen = 0;
    nseen_hybrid = 0;
    if (use_unwind == 2) {
        vms__trace_walk(uc, stack_lo, stack_hi, 0, record_hybrid, NULL, MAX_SEEN,
                        &hybrid_complete);
        vms__trace_walk_unwind(uc, record, NULL, MAX_SEEN, &walk_complete);
    } else if (use_unwind)
        vms__trace_walk_unwind(uc, record, NULL, MAX_SEEN, &walk_complete);
    else
        vms__trace_walk_fp(uc, stack_lo, stack_hi, 0, record, NULL, MAX_SEEN, &walk_complete);
}

static volatile int depth_sink;

__attribute__((noinline)) static int island_recurse(int n)
{
    if (n == 0) {
        raise(SIGUSR1);
        return depth_sink;
    }
    int r = island_recurse(n - 1);
    depth_sink += r;
    return r + 1;
}

/* A recursion through a function without a frame pointer (gcc only: clang has no
 * per-function optimize attribute): island_mixed_a keeps one, island_mixed_b does not. */
#ifndef __clang__
__attribute__((noinline)) static int island_mixed_a(int n);
__attribute__((noinline, optimize("omit-frame-pointer"))) static int island_mixed_b(int n)
{
    volatile int local[8];
    local[n & 7] = n;
    int r = island_mixed_a(n - 1);
    return r + local[n & 7];
}

__attribute__((noinline)) static int island_mixed_a(int n)
{
    if (n <= 0) {
        raise(SIGUSR1);
        return depth_sink;
    }
    int r = island_mixed_b(n);
    depth_sink += r;
    return r + 1;
}
#endif

static int count_frames_of(const char *name)
{
    int hits = 0;
    for (int i = 0; i < nseen; i++) {
        struct vms__sym s;
        if (vms__trace_symbolize(i == 0 ? seen[i] : seen[i] - 1, &s) == 2 &&
            strcmp(s.name, name) == 0)
            hits++;
    }
    return hits;
}

/* The walks below are bounded by the calling thread's own stack. */
static void walk_this_thread_stack(void)
{
    pthread_attr_t attr;
    void *addr;
    size_t size;
    ASSERT_EQ(pthread_getattr_np(pthread_self(), &attr), 0);
    ASSERT_EQ(pthread_attr_getstack(&attr, &addr, &size), 0);
    pthread_attr_destroy(&attr);
    stack_lo = (uintptr_t)addr;
    stack_hi = (uintptr_t)addr + size;
}

static void walk_test_depth(int unwind, int depth)
{
    load();
    walk_this_thread_stack();
    use_unwind = unwind;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    island_recurse(depth);
    ASSERT_GT(nseen, 0);
    /* Every level of the recursion is a frame of island_recurse (the frame-pointer walk
     * may miss the level that raised: raise() keeps no frame pointer). */
    ASSERT_GE(count_frames_of("island_recurse"), depth);
}

static void walk_test(int unwind)
{
    walk_test_depth(unwind, 20);
}

TEST(walk_frame_pointers)
{
    /* TSan's raise() interceptor uses rbp as a plain register: the walk stops in it. */
    NO_TSAN("raise() is TSan's interceptor, which keeps no frame pointer");
    walk_test(0);
}

TEST(walk_libunwind)
{
    if (!vms__trace_have_unwind()) SKIP("built without libunwind");
    walk_test(1);
    /* libunwind sees through the signal frame and raise() down to the handler's
     * interrupted code, so the test's own caller shows up too. */
    ASSERT_GE(count_frames_of("walk_test_depth"), 1);
}

/* aarch64: code built with -mbranch-protection=pac-ret (or =standard) signs its return
 * address (paciasp, with sp as the modifier) before its frame record stores it. On a CPU
 * with pointer authentication (qemu-user's default cpu has it) the walk must strip the
 * signature: signed, a recursion's return addresses name no function and each level's
 * differs, though every level returns to the same call site. */
#if defined(__aarch64__)
__attribute__((noinline, target("branch-protection=pac-ret"))) static int island_signed(int n)
{
    if (n == 0) {
        raise(SIGUSR1);
        return depth_sink;
    }
    int r = island_signed(n - 1);
    depth_sink += r;
    return r + 1;
}
#endif

TEST(walk_frame_pointers_strips_pointer_authentication)
{
#if !defined(__aarch64__)
    SKIP("aarch64's pointer authentication");
#else
    NO_TSAN("raise() is TSan's interceptor, which keeps no frame pointer");
    if (!(getauxval(AT_HWCAP) & HWCAP_PACA)) SKIP("this CPU has no pointer authentication");
    walk_test_depth(0, 1);   /* sets up the handler and the range */
    island_signed(20);
    ASSERT_GE(count_frames_of("island_signed"), 20);
    /* The outermost of them returns to the recursive call site, as the 19 above it do
     * (the innermost one is raise()'s return address, elsewhere in the function). */
    uintptr_t site = 0;
    for (int i = 1; i < nseen; i++) {
        struct vms__sym s;
        if (vms__trace_symbolize(seen[i] - 1, &s) == 2 && strcmp(s.name, "island_signed") == 0)
            site = seen[i];
    }
    int same = 0;
    for (int i = 1; i < nseen; i++) same += seen[i] == site;
    ASSERT_GE(same, 20);
#endif
}

/* A frame-pointer walk from inside the program's own signal handler (running on the
 * same stack) goes through the handler's signal frame into the code it interrupted:
 * that code's pc is a frame, not skipped for the chain of frame pointers alone (a
 * lock-taking function it interrupted must be seen by the unsafe-kill rule). */
static volatile uintptr_t usr2_pc;

__attribute__((noinline)) static void on_usr2(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
#if defined(__x86_64__)
    usr2_pc = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    usr2_pc = (uintptr_t)((ucontext_t *)uc)->uc_mcontext.pc;
#endif
    raise(SIGUSR1);
}

TEST(walk_frame_pointers_through_a_signal_frame)
{
    NO_TSAN("raise() is TSan's interceptor, which keeps no frame pointer");
    vms_stack_free(vms_stack_alloc(0));   /* installs the fault handler */
    load();
    walk_this_thread_stack();
    use_unwind = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    sa.sa_sigaction = on_usr2;
    ASSERT_EQ(sigaction(SIGUSR2, &sa, NULL), 0);
    raise(SIGUSR2);
    /* The handler's own frame record holds its return address, the restorer, and the
     * kernel's context next to it the interrupted pc (x86-64: right above it; aarch64:
     * below the frame record the kernel wrote, which the handler's record points at). */
    ASSERT_GT(nseen, 2);
    int found = 0;
    for (int i = 1; i < nseen; i++) found |= seen[i] == usr2_pc;   /* [0]: the same raise() */
    if (!found) TST_FAIL("the interrupted pc %#lx is not in the walk of %d frames",
                         (unsigned long)usr2_pc, nseen);
}

/* The walk the reports use follows frame pointers through the frames whose unwind rule
 * libunwind confirmed, and must find exactly libunwind's frames: through the signal
 * frame, raise() (no frame pointer), 150 levels of recursion and the callers below. */
TEST(walk_hybrid_matches_libunwind)
{
    if (!vms__trace_have_unwind()) SKIP("built without libunwind");
    walk_test_depth(2, 150);
    ASSERT_GT(nseen, 150);
    ASSERT_EQ(nseen_hybrid, nseen);
    for (int i = 0; i < nseen; i++)
        if (seen_hybrid[i] != seen[i])
            TST_FAIL("frame %d: hybrid walk 0x%lx, libunwind 0x%lx", i,
                     (unsigned long)seen_hybrid[i], (unsigned long)seen[i]);
    ASSERT_EQ(hybrid_complete, walk_complete);
}

/* Frames without a frame pointer between confirmed ones: libunwind takes over for them
 * (restarted at each), and the frames are still exactly libunwind's. */
TEST(walk_hybrid_through_frames_without_frame_pointer)
{
    if (!vms__trace_have_unwind()) SKIP("built without libunwind");
#ifdef __clang__
    SKIP("clang has no per-function omit-frame-pointer");
#else
    walk_test_depth(2, 1);
    island_mixed_a(60);
    ASSERT_GE(count_frames_of("island_mixed_b"), 55);
    ASSERT_EQ(nseen_hybrid, nseen);
    for (int i = 0; i < nseen; i++)
        if (seen_hybrid[i] != seen[i])
            TST_FAIL("frame %d: hybrid walk 0x%lx, libunwind 0x%lx", i,
                     (unsigned long)seen_hybrid[i], (unsigned long)seen[i]);
    ASSERT_EQ(hybrid_complete, walk_complete);
#endif
}

/* Without a stack range to read, the hybrid walk is libunwind's walk. */
TEST(walk_hybrid_without_range_is_libunwind)
{
    if (!vms__trace_have_unwind()) SKIP("built without libunwind");
    walk_test_depth(2, 40);
    ASSERT_EQ(nseen_hybrid, nseen);
    stack_hi = stack_lo;
    use_unwind = 2;
    island_recurse(40);
    ASSERT_EQ(nseen_hybrid, nseen);
    for (int i = 0; i < nseen; i++) ASSERT_UEQ(seen_hybrid[i], seen[i]);
}

/* The frame-pointer walk reads nothing outside [lo, hi), however the frames are spaced
 * (small frames right above lo once made the aarch64 signal-frame check look 4 KiB
 * below them): frames of 96 bytes from the lowest byte of a page with no-access pages
 * on both sides. */
/* A function that faults at its first frame-record store (an overflow usually faults
 * right there: x86-64's push %rbp, aarch64's stp x29, x30) has not written its record
 * yet: the frame pointer still names its caller's record, which holds the caller's
 * caller. The walk takes the caller's return address from [sp] (x86-64) or x30
 * (aarch64); before, the caller was left out. Built as the fault leaves things: pc at
 * that store in prologue_callee, a return address into prologue_caller, and the frame
 * pointer at an outermost record. */
static volatile uintptr_t ret_into_caller;

__attribute__((noinline)) static int prologue_callee(int x)
{
    ret_into_caller = (uintptr_t)__builtin_return_address(0);
    return x + depth_sink;
}

__attribute__((noinline)) static int prologue_caller(int x)
{
    int r = prologue_callee(x);
    depth_sink += r;
    return r + 1;
}

/* The address of prologue_callee's frame-record store, or 0. */
static uintptr_t record_store_of(uintptr_t fn)
{
    for (int i = 0; i < 16; i++) {
#if defined(__x86_64__)
        if (((const unsigned char *)fn)[i] == 0x55) return fn + (uintptr_t)i;   /* push %rbp */
#elif defined(__aarch64__)
        uint32_t insn = ((const uint32_t *)fn)[i] & 0xffc07fffu;
        if (insn == 0xa9807bfdu || insn == 0xa9007bfdu) return fn + 4 * (uintptr_t)i;
#endif
    }
    return 0;
}

static int walk_from_record_store(uintptr_t pc, uintptr_t ret, uintptr_t entry)
{
    uintptr_t cells[8] = { 0 };
    uintptr_t lo = (uintptr_t)cells, hi = (uintptr_t)(cells + 8);
    cells[2] = ret;              /* x86-64: what the call pushed, at sp */
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
#if defined(__x86_64__)
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)pc;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)&cells[2];
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)(uintptr_t)&cells[6];   /* {0, 0}: outermost */
#else
    uc.uc_mcontext.pc = pc;
    uc.uc_mcontext.sp = (uintptr_t)&cells[2];
    uc.uc_mcontext.regs[30] = ret;
    uc.uc_mcontext.regs[29] = (uintptr_t)&cells[6];
#endif
    nseen = 0;
    vms__trace_walk_fp(&uc, lo, hi, entry, record, NULL, MAX_SEEN, &walk_complete);
    return nseen;
}

TEST(walk_frame_pointers_from_a_prologue)
{
    load();
    ASSERT_GT(prologue_caller(1), 0);
    ASSERT(ret_into_caller != 0);
    uintptr_t pc = record_store_of((uintptr_t)prologue_callee);
    if (!pc) SKIP("prologue_callee does not start by storing its frame record here");
    /* The caller shows, and the walk still reaches the outermost record (prologue_caller
     * keeps a frame record: the outermost one may be its caller's). */
    uintptr_t entry = 0;
    ASSERT_EQ(walk_from_record_store(pc, ret_into_caller, entry), 2);
    ASSERT_UEQ(seen[0], pc);
    ASSERT_UEQ(seen[1], ret_into_caller);
    ASSERT(walk_complete);
    struct vms__sym sym;
    ASSERT_EQ(vms__trace_symbolize(seen[1] - 1, &sym), 2);
    ASSERT(strcmp(sym.name, "prologue_caller") == 0);
    /* Not code (a saved register, say): left out. (A function's first byte can pass
     * for a return address: a function that ends with a call to a noreturn function,
     * as ASan builds have, is directly followed by the next one.) */
    ASSERT_EQ(walk_from_record_store(pc, (uintptr_t)&ret_into_caller, entry), 1);
    /* At the next instruction (x86-64: mov %rsp, %rbp; aarch64: mov x29, sp) the record
     * is written: the walk takes it as it is, with no extra frame. */
#if defined(__x86_64__)
    uintptr_t next = pc + 1;
#else
    uintptr_t next = pc + 4;
#endif
    ASSERT_EQ(walk_from_record_store(next, ret_into_caller, entry), 1);
}

/* Code without frame records between a fault and the task's first frame leaves the
 * frame pointer at the task's outermost record: a walk that reads that record first
 * has seen none of the frames in between, unless the faulting function is the task's
 * entry or keeps a frame record itself (then the record is its caller's, or its own as
 * the first function). Built as a fault leaves things: the pc inside a function, the
 * frame pointer at an outermost record {0, 0} at the top of the range. */
#ifndef __clang__
__attribute__((noinline, optimize("omit-frame-pointer"))) static int island_no_record(int x)
{
    volatile int v[4];
    v[x & 3] = x;
    return v[x & 3] + depth_sink;
}
#endif

static int walk_from_outermost(uintptr_t pc, uintptr_t entry)
{
    uintptr_t cells[8] = { 0 };
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
#if defined(__x86_64__)
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)pc;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)&cells[0];
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)(uintptr_t)&cells[6];
#else
    uc.uc_mcontext.pc = pc;
    uc.uc_mcontext.sp = (uintptr_t)&cells[0];
    uc.uc_mcontext.regs[29] = (uintptr_t)&cells[6];
#endif
    nseen = 0;
    vms__trace_walk_fp(&uc, (uintptr_t)cells, (uintptr_t)(cells + 8), entry, record, NULL,
                       MAX_SEEN, &walk_complete);
    return nseen;
}

TEST(walk_frame_pointers_past_code_without_records_is_not_complete)
{
    load();
    /* A function with a frame record: the outermost record can be its caller's. */
    ASSERT_GT(prologue_caller(1), 0);
    ASSERT_EQ(walk_from_outermost((uintptr_t)prologue_caller + 1, 0), 1);
    ASSERT(walk_complete);
#ifdef __clang__
    SKIP("a function without a frame record needs gcc's optimize attribute");
#else
    uintptr_t pc = (uintptr_t)island_no_record + 1;
    ASSERT_EQ(island_no_record(1), 1 + depth_sink);
    ASSERT_EQ(walk_from_outermost(pc, 0), 1);
    ASSERT(!walk_complete);
    ASSERT_EQ(walk_from_outermost(pc, (uintptr_t)prologue_caller), 1);
    ASSERT(!walk_complete);
    /* The task's entry itself: nothing lies between. */
    ASSERT_EQ(walk_from_outermost(pc, (uintptr_t)island_no_record), 1);
    ASSERT(walk_complete);
#endif
}

/* Further up the chain: the record that points at the task's outermost one must be the
 * task's first function's, which returns into the trampoline (vms__ctx_trampoline_ret).
 * One that returns elsewhere was written by a function whose caller keeps no frame
 * record: the frames from that caller to the task's start are skipped. Built: the pc
 * in prologue_caller, its record returning to ret and pointing at {0, 0}. */
static int walk_to_outermost(uintptr_t ret, uintptr_t entry)
{
    uintptr_t cells[8] = { 0 };
    cells[2] = (uintptr_t)&cells[6];
    cells[3] = ret;
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    uintptr_t pc = (uintptr_t)prologue_caller + 8;
#if defined(__x86_64__)
    uc.uc_mcontext.gregs[REG_RIP] = (greg_t)pc;
    uc.uc_mcontext.gregs[REG_RSP] = (greg_t)(uintptr_t)&cells[0];
    uc.uc_mcontext.gregs[REG_RBP] = (greg_t)(uintptr_t)&cells[2];
#else
    uc.uc_mcontext.pc = pc;
    uc.uc_mcontext.sp = (uintptr_t)&cells[0];
    uc.uc_mcontext.regs[29] = (uintptr_t)&cells[2];
#endif
    nseen = 0;
    vms__trace_walk_fp(&uc, (uintptr_t)cells, (uintptr_t)(cells + 8), entry, record, NULL,
                       MAX_SEEN, &walk_complete);
    return nseen;
}

TEST(walk_frame_pointers_to_the_top_from_another_record_is_not_complete)
{
    load();
    ASSERT_GT(prologue_caller(1), 0);
    uintptr_t site = (uintptr_t)vms__ctx_trampoline_ret, entry = (uintptr_t)prologue_caller;
    ASSERT_EQ(walk_to_outermost(site, entry), 2);
    ASSERT(walk_complete);
    /* Returns into prologue_caller, not into the trampoline. */
    ASSERT_EQ(walk_to_outermost(ret_into_caller, entry), 2);
    ASSERT_UEQ(seen[1], ret_into_caller);
    ASSERT(!walk_complete);
    /* Not a task's stack (no entry): its chain may end anywhere. */
    ASSERT_EQ(walk_to_outermost(ret_into_caller, 0), 2);
    ASSERT(walk_complete);
}

/* A context interrupted at a made-up pc with its frame pointer at fp. */
static void fp_context(ucontext_t *uc, uintptr_t fp)
{
    memset(uc, 0, sizeof *uc);
#if defined(__x86_64__)
    uc->uc_mcontext.gregs[REG_RIP] = 0x7000f000;
    uc->uc_mcontext.gregs[REG_RBP] = (greg_t)fp;
#else
    uc->uc_mcontext.pc = 0x7000f000;
    uc->uc_mcontext.regs[29] = fp;
#endif
}

TEST(walk_frame_pointers_reads_only_the_range)
{
    long pg = sysconf(_SC_PAGESIZE);
    char *m = mmap(NULL, 3 * (size_t)pg, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT(m != MAP_FAILED);
    ASSERT_EQ(mprotect(m, (size_t)pg, PROT_NONE), 0);
    ASSERT_EQ(mprotect(m + 2 * pg, (size_t)pg, PROT_NONE), 0);
    uintptr_t lo = (uintptr_t)m + (uintptr_t)pg, hi = lo + (uintptr_t)pg;
    int frames = 0;
    for (uintptr_t f = lo; f + 16 <= hi; f += 96) {
        uintptr_t next = f + 96 + 16 <= hi ? f + 96 : 0;
        ((uintptr_t *)f)[0] = next;
        ((uintptr_t *)f)[1] = next ? 0x7000a000 + 16 * (uintptr_t)frames : 0;
        frames++;
    }
    ucontext_t uc;
    fp_context(&uc, lo);
    nseen = 0;
    vms__trace_walk_fp(&uc, lo, hi, 0, record, NULL, MAX_SEEN, &walk_complete);
    ASSERT_EQ(nseen, frames);   /* the pc, then every return address but the last 0 */
    ASSERT_UEQ(seen[1], 0x7000a000);
    munmap(m, 3 * (size_t)pg);
}

/* In a program built with ASan, a frame pointer may point into a local array's redzone
 * (code without frame pointers uses the register for data) or at a frame whose redzones
 * are still poisoned: the walk's reads of the stack are not instrumented, so a report
 * goes on rather than end in an ASan error (it did, in an -O1 program's overflow). */
TEST(walk_frame_pointers_reads_poisoned_words)
{
#ifndef TST_ASAN
    SKIP("only an ASan build instruments the walk's reads");
#else
    static uintptr_t cells[32] __attribute__((aligned(64)));
    memset(cells, 0, sizeof cells);
    cells[0] = (uintptr_t)&cells[8];      /* a record, then the outermost one */
    cells[1] = 0x7000a000;
    uintptr_t lo = (uintptr_t)cells, hi = (uintptr_t)(cells + 32);
    ucontext_t uc;
    fp_context(&uc, lo);
    __asan_poison_memory_region(cells, sizeof cells);
    nseen = 0;
    vms__trace_walk_fp(&uc, lo, hi, 0, record, NULL, MAX_SEEN, &walk_complete);
    __asan_unpoison_memory_region(cells, sizeof cells);
    ASSERT_EQ(nseen, 2);                  /* the pc and the record's return address */
    ASSERT_UEQ(seen[1], 0x7000a000);
#endif
}

/* aarch64: a signal frame with extra space (the kernel adds it when the SVE or SME
 * records do not fit in uc_mcontext.__reserved; qemu-user never does), built by hand as
 * arch/arm64/kernel/signal.c lays it out: siginfo, ucontext (fpsimd record, extra_context
 * record pointing right behind its terminator), the extra space up to the kernel's frame
 * record {interrupted x29, x30}. The handler's frame record points at that record and
 * returns to the restorer. The walk must find the interrupted pc there. */
#if defined(__aarch64__)
#define FAKE_STACK (32 * 1024)
static _Alignas(16) unsigned char fake_stack[FAKE_STACK];
static const uintptr_t fake_restorer = 0x7000f000, fake_handler_pc = 0x7000a000,
                       fake_pc = 0x7000b000, fake_lr = 0x7000c004, fake_ret = 0x7000d008;

/* Lays the frame out in fake_stack; extra_off is added to the extra space's size as
 * the extra_context record states it (0: as the kernel writes it). Returns the
 * handler's frame pointer. */
static uintptr_t fake_signal_frame(uint32_t extra_off)
{
    memset(fake_stack, 0, sizeof fake_stack);
    uintptr_t hi = (uintptr_t)fake_stack + FAKE_STACK;
    uintptr_t outer = hi - 16;                         /* the interrupted code's record */
    ((uintptr_t *)outer)[0] = 0;
    ((uintptr_t *)outer)[1] = fake_ret;
    uintptr_t rec = outer - 64;                         /* the kernel's frame record */
    ((uintptr_t *)rec)[0] = outer;
    ((uintptr_t *)rec)[1] = fake_lr;
    uintptr_t u = rec - sizeof(ucontext_t) - 4096;     /* 4 KiB of extra space */
    ucontext_t *uc = (ucontext_t *)u;
    uc->uc_mcontext.regs[29] = outer;
    uc->uc_mcontext.regs[30] = fake_lr;
    uc->uc_mcontext.pc = fake_pc;
    uc->uc_mcontext.sp = rec + 32;
    uint32_t *r = (uint32_t *)uc->uc_mcontext.__reserved;
    r[0] = 0x46508001;                                  /* FPSIMD_MAGIC */
    r[1] = 528;
    r += 528 / 4;
    r[0] = 0x45585401;                                  /* EXTRA_MAGIC */
    r[1] = 32;
    uintptr_t datap = (uintptr_t)r + 32 + 16;           /* behind the terminator */
    memcpy(&r[2], &datap, 8);
    uint32_t size = (uint32_t)(rec - datap) + extra_off;
    memcpy(&r[4], &size, 4);
    uintptr_t fp = u - sizeof(siginfo_t) - 96;          /* the handler's frame record */
    ((uintptr_t *)fp)[0] = rec;
    ((uintptr_t *)fp)[1] = fake_restorer;
    return fp;
}

static void walk_fake(uintptr_t fp)
{
    ucontext_t uc;
    memset(&uc, 0, sizeof uc);
    uc.uc_mcontext.pc = fake_handler_pc;
    uc.uc_mcontext.regs[29] = fp;
    nseen = 0;
    vms__trace_walk_fp(&uc, (uintptr_t)fake_stack, (uintptr_t)fake_stack + FAKE_STACK, 0,
                       record, NULL, MAX_SEEN, &walk_complete);
}
#endif

TEST(walk_frame_pointers_through_a_signal_frame_with_extra_space)
{
#if !defined(__aarch64__)
    SKIP("aarch64's signal frame");
#else
    vms__trace_add_restorer(fake_restorer);
    walk_fake(fake_signal_frame(0));
    ASSERT_EQ(nseen, 4);
    ASSERT_UEQ(seen[0], fake_handler_pc);
    ASSERT_UEQ(seen[1], fake_restorer);
    ASSERT_UEQ(seen[2], fake_pc);
    ASSERT_UEQ(seen[3], fake_ret);
    ASSERT(walk_complete);
#endif
}

/* The same frame is not taken for a signal frame when its extra space does not end at
 * the kernel's frame record, or when it does not return to a known restorer (only then
 * is the ucontext searched for below the usual place). */
TEST(walk_frame_pointers_checks_the_signal_frame)
{
#if !defined(__aarch64__)
    SKIP("aarch64's signal frame");
#else
    walk_fake(fake_signal_frame(0));
    for (int i = 0; i < nseen; i++) ASSERT(seen[i] != fake_pc);
    ASSERT_GE(nseen, 3);
    ASSERT_UEQ(seen[2], fake_lr);   /* the kernel's frame record, read as a plain one */
    vms__trace_add_restorer(fake_restorer);
    walk_fake(fake_signal_frame(16));
    for (int i = 0; i < nseen; i++) ASSERT(seen[i] != fake_pc);
#endif
}

/* The vDSO's symbols are found through its dynamic section, counted by either hash
 * table, as the C library's loader finds them. aarch64 needs __kernel_rt_sigreturn. */
TEST(vdso_symbol_as_the_loader_finds_it)
{
    if (!getauxval(AT_SYSINFO_EHDR)) SKIP("no vDSO (qemu-user 7.2 has none)");
#if defined(__x86_64__)
    const char *name = "__vdso_clock_gettime";
#else
    const char *name = "__kernel_clock_gettime";
#endif
    void *h = dlopen("linux-vdso.so.1", RTLD_LAZY | RTLD_NOLOAD);
    if (!h) SKIP("the loader does not name the vDSO: %s", dlerror());
    uintptr_t want = (uintptr_t)dlsym(h, name);
    ASSERT_NE(want, 0);
    ASSERT_UEQ(vms__trace_vdso_symbol(name, 0), want);
    ASSERT_UEQ(vms__trace_vdso_symbol("no_such_vdso_symbol", 0), 0);
    uintptr_t sysv = vms__trace_vdso_symbol(name, DT_HASH);
    uintptr_t gnu = vms__trace_vdso_symbol(name, DT_GNU_HASH);
    if (!sysv && !gnu) TST_FAIL("neither hash table finds %s", name);
    if (sysv) ASSERT_UEQ(sysv, want);
    if (gnu) ASSERT_UEQ(gnu, want);
#if defined(__aarch64__)
    ASSERT_NE(vms__trace_vdso_symbol("__kernel_rt_sigreturn", 0), 0);
#endif
}

TEST(walk_respects_bounds)
{
    load();
    /* A range that holds none of the frames: only the pc is reported. */
    stack_lo = 4096;
    stack_hi = 8192;
    use_unwind = 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_usr1;
    sa.sa_flags = SA_SIGINFO;
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    island_recurse(5);
    ASSERT_EQ(nseen, 1);
    ASSERT(!walk_complete);
}

/* ---- objects loaded later --------------------------------------------------------- */


TEST(objects_loaded_later_found_at_next_load)
{
    load();
    int known = vms__trace_load();
    /* libresolv: part of every glibc installation, and not loaded by this program. */
    if (dlopen("libresolv.so.2", RTLD_NOW | RTLD_NOLOAD)) SKIP("libresolv is already loaded");
    void *h = dlopen("libresolv.so.2", RTLD_NOW);
    if (!h) SKIP("no libresolv.so.2: %s", dlerror());
    void *fn = dlsym(h, "__b64_ntop");
    if (!fn) SKIP("libresolv has no __b64_ntop");
    struct vms__sym s;
    ASSERT_EQ(vms__trace_load(), known + 1);   /* what the next thread init does */
    ASSERT_EQ(vms__trace_symbolize((uintptr_t)fn + 1, &s), 2);
    ASSERT_STR_CONTAINS(s.name, "b64_ntop");
    ASSERT_UEQ(s.start, (uintptr_t)fn);
    ASSERT_STR_CONTAINS(s.object, "libresolv.so");
}
