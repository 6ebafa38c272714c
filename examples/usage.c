/*
 * usage.c - vmstack example: how much stack do my tasks use?
 *
 * With the VMS_PAINT flag (or VMSTACK_PAINT=1 in the environment) vmstack tracks how
 * deep every stack was used (docs/debugging.md):
 *   - vms_stack_max_used(st): the deepest use of a stack so far, within one page;
 *   - a "used greatest stack depth" line on stderr when a task ends deeper than any
 *     earlier one of its stack size, as the kernel's CONFIG_DEBUG_STACK_USAGE prints;
 *   - vms_stack_usage(): per stack size, a histogram of the depths of the stacks freed,
 *     which answers "what stack_size would my fibers need?".
 * vms_stack_remaining() tells running code how much stack is left, so that a recursion
 * can stop cleanly before it reaches the guard.
 *
 * This program runs four fibers that compute 1 + 2 + ... + n recursively, with n = 10,
 * 100, 500 and 10 million. The recursion gives up (returns -1) when fewer than 32 KiB
 * of stack are left, which only the last fiber reaches. It prints each fiber's deepest
 * use, then the histogram.
 *
 * Build:  cc -O2 -o usage usage.c $(pkg-config --cflags --libs vmstack)
 * Exit:   0 when the results and the measured depths are consistent, 1 otherwise.
 */
#include <vmstack.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define NFIBERS 4
#define RESERVE (32 * 1024)     /* stop recursing with this much stack left */

struct job {
    const char *name;
    long n;
    long result;                /* 1 + ... + n, or -1 when the stack ran low */
    long levels;                /* how deep the recursion went */
    size_t min_left;            /* the least vms_stack_remaining() seen */
};

/* 1 + 2 + ... + n, one stack frame of about 100 bytes per number (the volatile array is
 * read after the call, so the recursion cannot become a loop); -1 instead of running
 * into the guard when fewer than RESERVE bytes of stack are left. */
static __attribute__((noinline)) long sum_checked(long n, struct job *j)
{
    volatile long frame[8];
    frame[0] = n;
    size_t left = vms_stack_remaining();     /* no system call: a subtraction */
    if (left < j->min_left) j->min_left = left;
    if (left < RESERVE) return -1;
    j->levels++;
    if (n == 0) return 0;
    long below = sum_checked(n - 1, j);
    if (below < 0) return -1;
    return below + frame[0];
}

static void job_main(void *arg)
{
    struct job *j = arg;
    j->result = sum_checked(j->n, j);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);   /* in order with vmstack's lines on stderr */

    /* Painting is decided once, at the first use of vmstack: vms_init must come first
     * (it returns -EBUSY after any other vmstack call). Zero fields keep the defaults. */
    int e = vms_init(&(vms_config){ .flags = VMS_PAINT });
    if (e != 0) {
        fprintf(stderr, "usage: vms_init: %s\n", strerror(-e));
        return 1;
    }

    struct job jobs[NFIBERS] = {
        { .name = "sum-10", .n = 10 },   { .name = "sum-100", .n = 100 },
        { .name = "sum-500", .n = 500 }, { .name = "too-deep", .n = 10 * 1000 * 1000 },
    };
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t stack_size = 0, deepest = 0;
    int ok = 1;
    for (int i = 0; i < NFIBERS; i++) {
        struct job *j = &jobs[i];
        j->min_left = (size_t)-1;
        /* Default attributes but the name: a stack of the default size (256 KiB). */
        vms_fiber *f = vms_fiber_create(job_main, j, &(vms_fiber_attr){ .name = j->name });
        if (!f) {
            perror("usage: vms_fiber_create");
            return 1;
        }
        if (vms_fiber_resume(f) != VMS_DONE) {
            fprintf(stderr, "usage: fiber %s did not finish\n", j->name);
            return 1;
        }
        /* The fiber is done but not destroyed: its stack still holds the marks. */
        const vms_stack *st = vms_fiber_stack(f);
        size_t used = vms_stack_max_used(st);
        stack_size = vms_stack_size(st);
        if (used > deepest) deepest = used;
        printf("fiber %-8s n = %-8ld %s after %5ld levels: deepest use %6zu of %zu bytes\n",
               j->name, j->n, j->result < 0 ? "gave up" : "done   ", j->levels, used,
               stack_size);

        /* What we expect: the right sum where the stack sufficed, and a depth that
         * agrees with what vms_stack_remaining() said at the deepest point (within the
         * page of precision, and one more for the frames around the measurement). */
        long want = j->n <= 500 ? j->n * (j->n + 1) / 2 : -1;
        size_t by_remaining = stack_size - j->min_left;
        if (j->result != want || used == 0 || used > stack_size ||
            used + 2 * page < by_remaining || used > by_remaining + 2 * page) {
            printf("  UNEXPECTED: result %ld (expected %ld), "
                   "depth by vms_stack_remaining %zu\n", j->result, want, by_remaining);
            ok = 0;
        }
        /* Destroying the fiber frees its stack, which adds its depth to the histogram. */
        vms_fiber_destroy(f);
    }

    /* The histogram: one entry per stack size with data, smallest size first. Bucket b
     * counts the stacks whose depth fitted in (page << b) bytes. */
    vms_usage u[8];
    int n = vms_stack_usage(u, 8);
    if (n < 0) {
        fprintf(stderr, "usage: vms_stack_usage: %s\n", strerror(-n));
        return 1;
    }
    int found = 0;
    for (int i = 0; i < n && i < 8; i++) {
        printf("%zu-byte stacks: %zu freed, deepest %zu bytes\n",
               u[i].stack_size, u[i].stacks, u[i].max_used);
        for (int b = 0; b < VMS_USAGE_BUCKETS; b++)
            if (u[i].buckets[b])
                printf("  fits in %7zu bytes: %zu\n", page << b, u[i].buckets[b]);
        if (u[i].stack_size == stack_size) {
            found = 1;
            if (u[i].stacks != NFIBERS || u[i].max_used + page < deepest) {
                printf("  UNEXPECTED: %d fibers ran, the deepest used %zu bytes\n", NFIBERS,
                       deepest);
                ok = 0;
            }
        }
    }
    if (!found) {
        printf("UNEXPECTED: no histogram for %zu-byte stacks\n", stack_size);
        ok = 0;
    }
    printf("%s\n", ok ? "usage: OK" : "usage: FAILED");
    return ok ? 0 : 1;
}
