/*
 * cmd_info.c - `vmstack info`: what this system and this build give vmstack.
 *
 * Page size, the guard method the kernel supports (detected and verified, as the library
 * does), transparent huge pages, vm.max_map_count and the current mapping count, the
 * defaults in effect (after VMSTACK_* variables) and the build options.
 */
#include "internal.h"
#include "island.h"
#include "tools.h"

#include <stdio.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/utsname.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

static void size_line(const char *what, size_t v)
{
    if (v >= VMS_MIB && v % VMS_MIB == 0) printf("  %-26s %zu MiB (%zu bytes)\n", what, v / VMS_MIB, v);
    else if (v >= VMS_KIB && v % VMS_KIB == 0) printf("  %-26s %zu KiB (%zu bytes)\n", what, v / VMS_KIB, v);
    else printf("  %-26s %zu bytes\n", what, v);
}

/* The bracketed mode of the THP sysfs file ("always [madvise] never"), or NULL when it
 * cannot be read (a kernel without THP, a sandbox). */
static const char *thp_mode(char *buf, size_t n)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return NULL;
    if (!fgets(buf, (int)n, f)) buf[0] = '\0';
    fclose(f);
    char *l = strchr(buf, '['), *r = l ? strchr(l, ']') : NULL;
    if (!l || !r) return NULL;
    *r = '\0';
    return l + 1;
}

int vms_cmd_info(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            printf("usage: vmstack info\n\nPrints the page size, the guard method this kernel "
                   "supports, vm.max_map_count,\nthe defaults in effect (VMSTACK_* variables "
                   "included) and the build options.\n");
            return 0;
        }
        fprintf(stderr, "vmstack: error: info: unknown option `%s`\n", argv[i]);
        return 2;
    }
    int e = vms__ensure_init();
    if (e) {
        fprintf(stderr, "vmstack: error: info: initialization failed: %s\n", strerror(-e));
        return 1;
    }
    struct utsname u;
    uname(&u);
    char thp[256];
    int method = vms__os_guard_method();
    long maxmap = vms__os_max_map_count();
    long maps = vms__os_map_count(0, 0);
    unsigned long minsig = getauxval(AT_MINSIGSTKSZ);

    printf("vmstack %s (%s)\n", VMSTACK_VERSION_STRING, VMSTACK_ARCH_STRING);
    printf("system:\n");
    printf("  %-26s %s %s\n", "kernel", u.sysname, u.release);
    size_line("page size", vms__os_page_size());
    /* Undecided (a negative errno): the check itself failed here (no file descriptor
     * for its pipe, no memory), which says nothing about the kernel. It was shown as
     * "none (MADV_GUARD_INSTALL missing or not effective here)". */
    if (method < 0) {
        printf("  %-26s undecided: the check of MADV_GUARD_INSTALL failed (%s); no stack "
               "is handed out until it succeeds\n", "guard method", strerror(-method));
    } else {
        printf("  %-26s %s%s\n", "guard method", vms__os_guard_method_name(method),
               method == VMS__GUARD_MADVISE
                   ? " (MADV_GUARD_INSTALL, verified: no mapping per guard)"
                   : vms__opt.guard_valgrind
                       ? " (chosen under Valgrind, which does not know madvise guards; "
                         "VMSTACK_GUARD_METHOD=madvise overrides; two mappings per stack)"
                   : vms__opt.guard_request == VMS__GUARD_MPROTECT
                       ? " (forced by configuration; two mappings per stack)"
                       : " (MADV_GUARD_INSTALL missing or not effective here; two mappings per stack)");
    }
    /* Not installed: sigaction refused (a seccomp profile); vms_init warned and went on. */
    printf("  %-26s %s\n", "overflow handler",
           vms__guard_installed()
               ? "installed (SIGSEGV and SIGBUS)"
               : "not installed (sigaction refused): a stack overflow kills the process by "
                 "SIGSEGV, unreported");
    const char *mode = thp_mode(thp, sizeof thp);
    if (mode)
        printf("  %-26s %s (vmstack arenas are MADV_NOHUGEPAGE)\n", "transparent huge pages", mode);
    else
        printf("  %-26s unknown (cannot read /sys/kernel/mm/transparent_hugepage/enabled);\n"
               "  %-26s vmstack arenas are MADV_NOHUGEPAGE\n", "transparent huge pages", "");
    /* Unreadable files (a sandbox, a /proc without sysctls) are said to be, not shown as
     * -1 or a negative errno; every process has mappings, so 0 means unread too. */
    if (maxmap > 0) printf("  %-26s %ld\n", "vm.max_map_count", maxmap);
    else printf("  %-26s unknown (cannot read /proc/sys/vm/max_map_count)\n", "vm.max_map_count");
    if (maps > 0) printf("  %-26s %ld\n", "mappings in this process", maps);
    else printf("  %-26s unknown (cannot read /proc/self/maps)\n", "mappings in this process");
#ifndef VMSTACK_VMAP
    /* The line above says what the kernel supports; this build uses none of it. */
    printf("  %-26s none: this build is the direct backend (VMSTACK_VMAP=OFF), whose "
           "stacks have no guards\n", "guards used");
    printf("  %-26s carved from heap blocks, limited by memory\n", "stacks");
#else
    if (method == VMS__GUARD_MPROTECT && maxmap > 0 && maps > 0)
        /* Less the part vmstack leaves to the rest of the program: it said "about 973"
         * with vm.max_map_count=2000, where 910 stacks could be had. */
        printf("  %-26s about %ld (two mappings each; %ld mappings are left to the rest "
               "of the program)\n", "stacks before the limit",
               /* none, not a negative count, once the program's own mappings pass it */
               maxmap - maxmap / VMS__MAP_RESERVE_DIV - maps > 0
                   ? (maxmap - maxmap / VMS__MAP_RESERVE_DIV - maps) / 2 : 0,
               maxmap / VMS__MAP_RESERVE_DIV);
    else if (method == VMS__GUARD_MPROTECT)
        printf("  %-26s limited by vm.max_map_count (two mappings each), unknown here\n",
               "stacks");
    else if (method < 0)
        printf("  %-26s none until the guard check succeeds\n", "stacks");
    else
        printf("  %-26s limited by address space, not by vm.max_map_count\n", "stacks");
#endif
    /* The kernel puts it in the auxiliary vector since Linux 4.18 on arm64, 5.14 on x86. */
    if (minsig) printf("  %-26s %lu bytes\n", "AT_MINSIGSTKSZ", minsig);
    else printf("  %-26s not given by this kernel (getauxval gives 0)\n", "AT_MINSIGSTKSZ");
    /* The library ignores the variables in a secure-execution process (options.c). */
    printf("defaults (%s):\n", getauxval(AT_SECURE) ? "VMSTACK_* variables ignored: secure execution"
                                                    : "after VMSTACK_* variables");
    size_line("stack size", vms__opt.stack_size);
    size_line("guard size", vms__opt.guard_size);
    printf("  %-26s %u\n", "cached stacks per thread", vms__opt.cache_per_thread);
    printf("  %-26s %s\n", "on overflow", vms__opt.on_overflow == VMS_ABORT ? "abort" : "kill the task");
    printf("  %-26s %s\n", "scrub reused stacks", vms__opt.flags & VMS_NO_SCRUB ? "no" : "yes");
    printf("  %-26s %s\n", "stack painting", vms__opt.flags & VMS_PAINT ? "on" : "off");
    printf("  %-26s %s\n", "end-of-stack check", vms__opt.flags & VMS_END_CHECK ? "on" : "off");
    size_line("largest stack", VMS_MAX_STACK_SIZE);
    printf("build:\n");
    printf("  %-26s %s\n", "VMSTACK_VMAP",
#ifdef VMSTACK_VMAP
           "ON (guarded, virtually mapped stacks)"
#else
           "OFF (direct backend: contiguous stacks, no guards)"
#endif
    );
    printf("  %-26s %s\n", "call traces",
#ifdef VMSTACK_HAVE_LIBUNWIND
           "libunwind"
#else
           "frame-pointer walk"
#endif
    );
    printf("  %-26s %s\n", "C++ names in call traces",
#if defined(VMSTACK_HAVE_LIBIBERTY)
           "demangled (libiberty)"
#elif defined(VMSTACK_DEMANGLE_OFF)
           "mangled (VMSTACK_DEMANGLE=OFF)"
#else
           "mangled (libiberty was not found at configure time)"
#endif
    );
    printf("  %-26s %s\n", "VMSTACK_SANITIZE", VMSTACK_SANITIZE_STRING[0] ? VMSTACK_SANITIZE_STRING : "(none)");
    printf("  %-26s %s\n", "VMSTACK_VALGRIND",
#ifdef VMSTACK_VALGRIND
           "ON"
#else
           "OFF"
#endif
    );
    printf("  %-26s %s\n", "Valgrind detection",
#ifdef VMSTACK_HAVE_VALGRIND_H
           "RUNNING_ON_VALGRIND and LD_PRELOAD"
#else
           "LD_PRELOAD only (valgrind.h was not found at configure time)"
#endif
    );
    printf("  %-26s %s\n", "VMSTACK_FAULT_INJECTION",
#ifdef VMSTACK_FAULT_INJECTION
           "ON"
#else
           "OFF"
#endif
    );
    printf("  %-26s %s, %s\n", "compiler, build type", VMSTACK_C_COMPILER_STRING, VMSTACK_BUILD_TYPE_STRING);
    return 0;
}
