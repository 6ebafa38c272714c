/*
 * arena_limit.c - arenas under a tight RLIMIT_AS (ulimit -v). Reserving an aligned arena
 * must not need more address space than the arena, even for a moment, and one arena
 * must not take all there is: vmstack needs one per size class in use (the alternate
 * signal stacks' and the program's), each at least 4 GiB. Every case sets the limit in
 * a child.
 */
#include "internal.h"
#include "test.h"

#include <stdint.h>
#include <sys/resource.h>
#include <vmstack.h>

#define GIB ((size_t)1 << 30)

static void no_sanitizer(void)
{
#if defined(TST_ASAN) || defined(TST_TSAN)
    /* Their runtimes map memory as they go; under a tight limit they die first. */
    SKIP("the sanitizer's runtime needs address space of its own");
#endif
}

/* Lets the process map `extra` bytes more than it has mapped now. */
static void limit_address_space(size_t extra)
{
    unsigned long pages = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (!f || fscanf(f, "%lu", &pages) != 1) exit(90);
    fclose(f);
    rlim_t lim = (rlim_t)(pages * vms__os_page_size() + extra);
    struct rlimit r = { lim, lim };
    if (setrlimit(RLIMIT_AS, &r) != 0) exit(91);
}

static void reserve_child(void *arg)
{
    (void)arg;
    limit_address_space(6 * GIB);
    void *p = NULL;
    int e = vms__os_reserve(4 * GIB, 4 * GIB, &p);
    if (e) {
        printf("4 GiB aligned to 4 GiB with 6 GiB of room: %s\n", strerror(-e));
        exit(10);
    }
    if ((uintptr_t)p % (4 * GIB)) exit(11);
    /* Only the 4 GiB are held: 2 GiB more still fit. */
    void *q = NULL;
    if (vms__os_reserve(GIB, vms__os_page_size(), &q) != 0) exit(12);
}

/* An aligned reservation fits where its size does: it never holds size + align (8 GiB
 * here) for a moment, as an over-reservation trimmed afterwards would. */
TEST(aligned_reserve_needs_only_its_size)
{
    no_sanitizer();
    char out[4096];
    tst_run_ok(reserve_child, NULL, out, sizeof out);
}

static void two_classes_child(void *arg)
{
    (void)arg;
    limit_address_space(10 * GIB);
    /* Two arenas: this thread's alternate signal stack's class and the default class. */
    vms_stack *s = vms_stack_alloc(0);
    if (!s) {
        printf("vms_stack_alloc with 10 GiB of room: %s\n", strerror(errno));
        exit(10);
    }
    vms_stats st;
    if (vms_get_stats(&st) != 0) exit(11);
    printf("arenas %zu reserved %zu GiB\n", st.arenas, st.reserved_bytes / GIB);
    if (st.arenas != 2) exit(12);
    vms_stack_free(s);
}

/* 10 GiB of room hold the two 4 GiB arenas a first stack needs: neither reservation
 * may need 8 GiB at once, and the first may not take 8 GiB for itself. */
TEST(two_arenas_fit_under_ulimit_v)
{
    need_guards();
    no_sanitizer();
    char out[4096];
    tst_run_ok(two_classes_child, NULL, out, sizeof out);
    ASSERT_STR_CONTAINS(out, "arenas 2 reserved 8 GiB");
}
