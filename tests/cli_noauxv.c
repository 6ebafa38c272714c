/*
 * cli_noauxv.c - preloaded (LD_PRELOAD) into the vmstack command by the cli tests of
 * `vmstack info` and `selftest`: getauxval gives 0 for AT_MINSIGSTKSZ, as the C library
 * does on kernels that do not put it in the auxiliary vector (before Linux 5.14 on x86,
 * 4.18 on arm64), and passes every other type on to the C library's getauxval.
 */
#include <dlfcn.h>
#include <sys/auxv.h>

#ifndef AT_MINSIGSTKSZ
#define AT_MINSIGSTKSZ 51
#endif

unsigned long getauxval(unsigned long type)
{
    static unsigned long (*next)(unsigned long);
    if (type == AT_MINSIGSTKSZ) return 0;
    if (!next) next = (unsigned long (*)(unsigned long))dlsym(RTLD_NEXT, "getauxval");
    return next ? next(type) : 0;
}
