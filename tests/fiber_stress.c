/*
 * fiber_stress.c - many fibers alive at once: 100,000 fibers on small stacks, each
 * yielding many times with state on its own stack, every result verified; and a long
 * create/resume/destroy churn that must leave the stack count where it started.
 */
#include "test.h"
#include "internal.h"

#include <stdint.h>

#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer counts each fiber as a thread and stops at 8,128 of them. */
#define NFIBERS 4000
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define NFIBERS 4000
#endif
#endif
#ifndef NFIBERS
#define NFIBERS 100000
#endif
#define YIELDS  20

struct slot { uint64_t id, result; };
static struct slot *slots;
static volatile uint64_t mix = 0x9e3779b97f4a7c15ull;

/* Each fiber keeps its running value on its own stack (a volatile local), so a switch
 * that mixed up stacks or registers between fibers shows up as a wrong result. */
static void body(void *arg)
{
    struct slot *s = arg;
    volatile uint64_t acc = s->id;
    for (int i = 0; i < YIELDS; i++) {
        acc = acc * 31 + (uint64_t)i + mix;
        vms_fiber_yield();
    }
    s->result = acc;
}

static uint64_t expected(uint64_t id)
{
    uint64_t acc = id;
    for (int i = 0; i < YIELDS; i++) acc = acc * 31 + (uint64_t)i + mix;
    return acc;
}

/* 100,000 fibers (4,000 under TSan; a third of vm.max_map_count with mprotect guards). */
TEST(hundred_thousand_alive)
{
    /* With mprotect guards (older kernels, or VMSTACK_GUARD_METHOD=mprotect) every
     * opened stack is a mapping of its own: 100,000 exceed the default vm.max_map_count
     * of 65,530 (ENOMEM at the limit, after a warning: tested in arena_limit). There the
     * case runs as many fibers as a third of the limit allows. */
    vms_stats st;
    ASSERT_EQ(vms_get_stats(&st), 0);
    int nfibers = NFIBERS;
    if (strcmp(st.guard_method, "mprotect") == 0) {
        long max = 65530;
        FILE *mm = fopen("/proc/sys/vm/max_map_count", "r");
        if (mm) {
            if (fscanf(mm, "%ld", &max) != 1) max = 65530;
            fclose(mm);
        }
        if (max / 3 < nfibers) nfibers = (int)(max / 3);
        fprintf(stderr, "mprotect guards: %d fibers\n", nfibers);
    }
    slots = calloc((size_t)nfibers, sizeof *slots);
    vms_fiber **f = calloc((size_t)nfibers, sizeof *f);
    ASSERT_NOT_NULL(slots);
    ASSERT_NOT_NULL(f);
    vms_fiber_attr attr = { .stack_size = 16 * 1024, .name = "stress" };
    for (int i = 0; i < nfibers; i++) {
        slots[i].id = (uint64_t)i * 7919u + 1;
        f[i] = vms_fiber_create(body, &slots[i], &attr);
        if (!f[i]) TST_FAIL("fiber %d: create failed: %s", i, strerror(errno));
    }
    ASSERT_EQ(vms_get_stats(&st), 0);
    ASSERT_GE(st.stacks_live, (size_t)nfibers);
    /* Round robin: every fiber is suspended with live state while all others run. */
    for (int round = 0; round <= YIELDS; round++) {
        int want = round < YIELDS ? VMS_SUSPENDED : VMS_DONE;
        for (int i = 0; i < nfibers; i++) {
            int s = vms_fiber_resume(f[i]);
            if (s != want) TST_FAIL("fiber %d round %d: state %d, want %d", i, round, s, want);
        }
    }
    for (int i = 0; i < nfibers; i++) {
        if (slots[i].result != expected(slots[i].id))
            TST_FAIL("fiber %d: result %llu, want %llu", i,
                     (unsigned long long)slots[i].result,
                     (unsigned long long)expected(slots[i].id));
        vms_fiber_destroy(f[i]);
    }
    free(f);
    free(slots);
}

static void body_short(void *arg)
{
    (*(int *)arg)++;
    vms_fiber_yield();
    (*(int *)arg)++;
}

TEST(churn_returns_every_stack)
{
    vms_stats before, after;
    ASSERT_EQ(vms_get_stats(&before), 0);
    int n = 0;
    for (int i = 0; i < 200000; i++) {
        vms_fiber *f = vms_fiber_create(body_short, &n, NULL);
        if (!f) TST_FAIL("create %d: %s", i, strerror(errno));
        ASSERT_EQ(vms_fiber_resume(f), VMS_SUSPENDED);
        if (i % 2) ASSERT_EQ(vms_fiber_resume(f), VMS_DONE);
        vms_fiber_destroy(f);
    }
    ASSERT_EQ(n, 200000 + 100000);
    ASSERT_EQ(vms_get_stats(&after), 0);
    ASSERT_EQ(after.stacks_live, before.stacks_live);
}
