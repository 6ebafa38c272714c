/*
 * seccomp_filter.h - a seccomp filter that makes chosen system calls fail, for tests of
 * vmstack where a container profile, a sandbox or an older kernel refuses what it uses
 * (restricted.c, cli_info.c). Classic BPF through prctl: no libseccomp. Install it in a
 * forked child (it cannot be removed), before vmstack's first use.
 */
#ifndef VMSTACK_TESTS_SECCOMP_FILTER_H
#define VMSTACK_TESTS_SECCOMP_FILTER_H

#include "test.h"

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>

#if defined(__x86_64__)
#define TST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define TST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

/* One refused call: system call nr (with argument arg equal to val, when arg >= 0)
 * fails with err. */
struct rule { long nr; int arg; uint32_t val; int err; };

/* Installs a filter refusing rules[0..n): for each, the system call number, then (when
 * the rule names one) the low 32 bits of an argument; a match returns the errno. Every
 * other call is allowed, and so is every call of another architecture's ABI. Exits 20
 * when the kernel refuses the filter. */
static inline void install_filter(const struct rule *rules, int n)
{
#ifdef TST_AUDIT_ARCH
    struct sock_filter f[128];
    int k = 0;
    f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, TST_AUDIT_ARCH, 1, 0);
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    for (int i = 0; i < n; i++) {
        bool arg = rules[i].arg >= 0;
        /* The block: load nr; compare (skip the rest of the block on a mismatch);
         * [load the argument; compare]; return the errno. */
        f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
        f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)rules[i].nr, 0,
                                              arg ? 3 : 1);
        if (arg) {
            /* Little-endian: an argument's low word comes first. */
            f[k++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                                  offsetof(struct seccomp_data, args[0]) +
                                                      8 * (unsigned)rules[i].arg);
            f[k++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, rules[i].val, 0, 1);
        }
        f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                              SECCOMP_RET_ERRNO | ((uint32_t)rules[i].err & SECCOMP_RET_DATA));
    }
    f[k++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = { .len = (unsigned short)k, .filter = f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) exit(20);
    if (prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) exit(20);
#else
    (void)rules;
    (void)n;
    exit(20);
#endif
}

static inline void need_seccomp(void)
{
#ifndef TST_AUDIT_ARCH
    SKIP("no seccomp architecture constant for this target");
#endif
}

/* The end of a rule list. */
#define END { -1, -1, 0, 0 }

#endif
