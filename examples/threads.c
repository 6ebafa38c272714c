/*
 * threads.c - vmstack example: POSIX threads on guarded stacks; one overflows and is
 * killed alone.
 *
 * vms_thread_create is pthread_create whose thread body runs on a vmstack stack. Four
 * threads each compute 1 + 2 + ... + n with a recursive function, a thousand times
 * over; the thread named "deep" gets an n far too large for its 128 KiB stack. It runs
 * into the guard, vmstack writes an oops report to stderr and ends that thread alone:
 * pthread_join gives VMS_THREAD_KILLED for it, the other threads' results as usual.
 *
 * Build:  cc -O2 -pthread -o threads threads.c $(pkg-config --cflags --libs vmstack)
 * Exit:   0 when exactly "deep" was killed and every other thread's result is right.
 * Needs the default, guarded vmstack: a library built with -DVMSTACK_VMAP=OFF has no
 * guards, and this program refuses to overflow a stack there.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE             /* pthread_setname_np */
#endif
#include <vmstack.h>

#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define NTHREADS   4
#define REPEAT     1000
#define STACK_SIZE (128 * 1024) /* pthread_attr_setstacksize takes no less than
                                   PTHREAD_STACK_MIN: 128 KiB on aarch64 */

struct job {
    const char *name;           /* at most 15 characters: the kernel's limit */
    unsigned long n;
};

/* 1 + 2 + ... + n, one stack frame per number. Each level keeps its n in a volatile
 * array on its own stack and reads it back after the recursive call, so every level has
 * a real frame of about 100 bytes and the compiler cannot turn the recursion into a loop. */
static __attribute__((noinline)) unsigned long sum_to(unsigned long n)
{
    volatile unsigned long frame[8];
    frame[0] = n;
    if (n == 0) return 0;
    return sum_to(n - 1) + frame[0];
}

/* The thread body, on its vmstack stack. Its result goes back through pthread_join. */
static void *job_main(void *arg)
{
    const struct job *j = arg;
    /* The name the thread gives itself labels it in oops reports. */
    pthread_setname_np(pthread_self(), j->name);
    unsigned long total = 0;
    for (int i = 0; i < REPEAT; i++) total += sum_to(j->n);
    return (void *)(uintptr_t)total;
}

int main(void)
{
    /* Our lines go to stdout, vmstack's report straight to stderr (write(2)): line
     * buffering keeps them in order when both go to the same pipe or file. */
    setvbuf(stdout, NULL, _IOLBF, 0);

    /* A deliberate overflow is only safe where there is a guard to catch it. */
    vms_stats stats;
    if (vms_get_stats(&stats) != 0) {
        fprintf(stderr, "threads: vms_get_stats failed\n");
        return 1;
    }
    if (strcmp(stats.guard_method, "none") == 0) {
        fprintf(stderr, "threads: this vmstack has no guard pages (direct backend): "
                        "not overflowing a stack on purpose\n");
        return 1;
    }

    /* The deep thread's n needs about 1 GB of stack: 10 million frames. The others need
     * at most 200 frames, 20 to 40 KiB (more without optimization or with sanitizers). */
    static const struct job jobs[NTHREADS] = {
        { "sum-50", 50 }, { "sum-100", 100 }, { "deep", 10 * 1000 * 1000 },
        { "sum-200", 200 },
    };

    /* The stack size of the attributes becomes the size of the vmstack stack. Other
     * attributes (detach state, scheduling, ...) pass through to pthread_create. */
    pthread_attr_t attr;
    if (pthread_attr_init(&attr) != 0 || pthread_attr_setstacksize(&attr, STACK_SIZE) != 0) {
        fprintf(stderr, "threads: pthread_attr_setstacksize failed\n");
        return 1;
    }
    pthread_t threads[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        /* Unlike pthread_create, vms_thread_create returns a negative errno value. */
        int e = vms_thread_create(&threads[i], &attr, job_main, (void *)&jobs[i]);
        if (e != 0) {
            fprintf(stderr, "threads: vms_thread_create(%s): %s\n", jobs[i].name,
                    strerror(-e));
            return 1;
        }
    }
    pthread_attr_destroy(&attr);

    /* Join them all. A killed thread's join result is VMS_THREAD_KILLED. */
    int ok = 1;
    for (int i = 0; i < NTHREADS; i++) {
        void *result;
        int e = pthread_join(threads[i], &result);
        if (e != 0) {
            fprintf(stderr, "threads: pthread_join(%s): %s\n", jobs[i].name, strerror(e));
            return 1;
        }
        if (strcmp(jobs[i].name, "deep") == 0) {
            if (result == VMS_THREAD_KILLED) {
                printf("thread %s: killed by stack overflow (join gave VMS_THREAD_KILLED)\n",
                       jobs[i].name);
            } else {
                printf("thread %s: expected a kill, join gave %p\n", jobs[i].name, result);
                ok = 0;
            }
            continue;
        }
        uintptr_t want = REPEAT * (jobs[i].n * (jobs[i].n + 1) / 2);
        if (result == VMS_THREAD_KILLED || (uintptr_t)result != want) {
            printf("thread %s: WRONG: join gave %p, expected %lu\n", jobs[i].name, result,
                   (unsigned long)want);
            ok = 0;
            continue;
        }
        printf("thread %s: done, result %lu (expected %lu)\n", jobs[i].name,
               (unsigned long)(uintptr_t)result, (unsigned long)want);
    }

    /* The ended threads' stacks go back to vmstack (at the latest here). */
    if (vms_get_stats(&stats) != 0 || stats.overflows != 1 || stats.stacks_live != 0) {
        printf("unexpected statistics: %zu overflows, %zu live stacks\n",
               stats.overflows, stats.stacks_live);
        ok = 0;
    }
    printf("%s\n", ok ? "threads: OK: one thread killed, the others finished correctly"
                      : "threads: FAILED");
    return ok ? 0 : 1;
}
